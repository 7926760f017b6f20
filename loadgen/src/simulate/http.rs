//! HTTP routes: the Lambda Invoke API, the plain HTTP invoke target, `/_sim` inspection and
//! Prometheus metrics (`/metrics`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::Value;

use super::function::Execution;
use super::recording::{Endpoint, InvocationType};
use super::simulator::{Call, Simulator, Throttled};
use super::wire::{self, Report, Requested};
use crate::metrics;

pub(crate) fn router(sim: Arc<Simulator>) -> Router {
    Router::new()
        .route("/2015-03-31/functions/{function}/invocations", post(invoke))
        .route("/2015-03-31/functions/{function}/configuration", get(configuration))
        .route("/http/{function}", post(invoke_http))
        .route(
            "/_sim/invocations",
            get(|State(sim): State<Arc<Simulator>>| async move { Json(sim.invocations()) }),
        )
        .route(
            "/_sim/stats",
            get(|State(sim): State<Arc<Simulator>>| async move { Json(sim.stats()) }),
        )
        .route(
            "/_sim/reset",
            post(|State(sim): State<Arc<Simulator>>| async move {
                sim.reset();
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(Arc::clone(&sim))
        .merge(metrics::router(Arc::new(metrics::simulator_registry(sim))))
}

#[derive(Debug, Deserialize)]
struct InvokeQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

/// `POST /2015-03-31/functions/{function}/invocations`
async fn invoke(
    State(sim): State<Arc<Simulator>>,
    Path(raw_name): Path<String>,
    Query(query): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (name, name_qualifier) = wire::split_function_name(&raw_name);
    let qualifier = query.qualifier.or(name_qualifier.map(str::to_owned));
    let response = async {
        let function = sim.function(name).ok_or_else(|| function_not_found(name))?;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let invocation_type = header(wire::INVOCATION_TYPE);
        let requested = Requested::from_header(invocation_type).ok_or_else(|| {
            let message = format!(
                "1 validation error detected: Value '{}' at 'invocationType' failed to satisfy constraint: \
                 Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
                invocation_type.unwrap_or_default()
            );
            client_error(StatusCode::BAD_REQUEST, "InvalidParameterValueException", "message", &message)
        })?;
        let limit = match requested {
            Requested::Run(InvocationType::Event) => wire::MAX_ASYNC_PAYLOAD,
            _ => wire::MAX_SYNC_PAYLOAD,
        };
        let payload = read_payload(body, limit).await?;
        let call = Call {
            function_name: name.to_owned(),
            function: Arc::clone(&function),
            qualifier: qualifier.clone(),
            endpoint: Endpoint::Invoke,
            request_id: request_id.clone(),
            payload,
        };
        let response = match requested {
            Requested::DryRun => StatusCode::NO_CONTENT.into_response(),
            Requested::Run(InvocationType::Event) => {
                sim.invoke_event(call);
                StatusCode::ACCEPTED.into_response()
            }
            Requested::Run(InvocationType::RequestResponse) => match sim.invoke(call).await {
                Err(Throttled) => throttled(function.config().retry_after_secs),
                Ok(execution) => {
                    let version = wire::executed_version(qualifier.as_deref());
                    let mut response = execution_response(StatusCode::OK, &execution);
                    set_header(&mut response, wire::EXECUTED_VERSION, version);
                    if execution.is_error() {
                        set_header(&mut response, wire::FUNCTION_ERROR, wire::UNHANDLED);
                    }
                    if header(wire::LOG_TYPE) == Some("Tail") {
                        let tail = wire::log_tail(&Report {
                            request_id: &request_id,
                            version,
                            duration: execution.duration,
                            memory_size_mb: function.config().memory_size_mb,
                            init_duration: execution.init_duration,
                        });
                        let encoded = base64::engine::general_purpose::STANDARD.encode(tail);
                        set_header(&mut response, wire::LOG_RESULT, &encoded);
                    }
                    response
                }
            },
        };
        Ok::<_, Response>(response)
    }
    .await;
    with_request_id(response.unwrap_or_else(|error| error), &request_id)
}

/// `GET /2015-03-31/functions/{function}/configuration`: `GetFunctionConfiguration`, with the
/// members an event source mapping reads (`Timeout` above all) in Lambda's shape.
async fn configuration(
    State(sim): State<Arc<Simulator>>,
    Path(raw_name): Path<String>,
    Query(query): Query<InvokeQuery>,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (name, name_qualifier) = wire::split_function_name(&raw_name);
    let qualifier = query.qualifier.as_deref().or(name_qualifier);
    let response = match sim.function(name) {
        None => function_not_found(name),
        Some(function) => json_response(
            StatusCode::OK,
            wire::function_configuration(name, qualifier, function.config()).to_string(),
        ),
    };
    with_request_id(response, &request_id)
}

/// `POST /http/{function}`: the same function behind a plain HTTP endpoint. Success (partial
/// failures included) is 200 with the result, a function error 500 with the error object, a
/// throttle 429.
async fn invoke_http(
    State(sim): State<Arc<Simulator>>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let response = async {
        let function = sim
            .function(&name)
            .ok_or_else(|| function_not_found(&name))?;
        let payload = read_payload(body, wire::MAX_SYNC_PAYLOAD).await?;
        let call = Call {
            function_name: name.clone(),
            function: Arc::clone(&function),
            qualifier: None,
            endpoint: Endpoint::Http,
            request_id: request_id.clone(),
            payload,
        };
        Ok::<_, Response>(match sim.invoke(call).await {
            Err(Throttled) => throttled(function.config().retry_after_secs),
            Ok(execution) if execution.is_error() => {
                execution_response(StatusCode::INTERNAL_SERVER_ERROR, &execution)
            }
            Ok(execution) => execution_response(StatusCode::OK, &execution),
        })
    }
    .await;
    with_request_id(response.unwrap_or_else(|error| error), &request_id)
}

/// Reads the body up to `limit` bytes and parses it as JSON. An empty body is `{}`, as Lambda
/// passes an empty object to a function invoked without payload.
async fn read_payload(body: Body, limit: usize) -> Result<Value, Response> {
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            let message = format!(
                "Request must be smaller than {limit} bytes for the InvokeFunction operation"
            );
            return Err(client_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                "message",
                &message,
            ));
        }
        Err(e) => {
            let message = format!("Could not read request body: {e}");
            return Err(client_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                "message",
                &message,
            ));
        }
    };
    if bytes.is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let message = format!("Could not parse request body into json: {e}");
        client_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "message",
            &message,
        )
    })
}

fn function_not_found(name: &str) -> Response {
    let message = format!("Function not found: {name}");
    client_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        "Message",
        &message,
    )
}

/// An Invoke API client error: the code in `X-Amzn-ErrorType`, the body as Lambda writes it.
fn client_error(
    status: StatusCode,
    error_type: &str,
    message_key: &str,
    message: &str,
) -> Response {
    let mut response = json_response(status, wire::user_error_body(message_key, message));
    set_header(&mut response, wire::ERROR_TYPE, error_type);
    response
}

/// `429 TooManyRequestsException` with `Reason`, which the SDK exposes as `reason()`.
fn throttled(retry_after_secs: Option<u32>) -> Response {
    let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, wire::throttle_body());
    set_header(&mut response, wire::ERROR_TYPE, "TooManyRequestsException");
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn execution_response(status: StatusCode, execution: &Execution) -> Response {
    json_response(status, execution.body.clone())
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    set_header(&mut response, wire::REQUEST_ID, request_id);
    response
}

/// Sets a header whose value the simulator produced (request ids, versions, base64), so it is
/// always a valid header value; a value that is not is left out rather than failing the request.
fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(name), value);
    }
}
