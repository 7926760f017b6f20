//! Invoke a function: through the Lambda Invoke API (SigV4-signed, any endpoint) or by a plain HTTP POST.
//!
//! Both targets answer with the same [`Response`] or [`Error`], classified the way an event source mapping
//! and a load generator need them:
//!
//! * the function ran and returned normally → [`Response`] with `function_error: None`;
//! * the function ran and failed (unhandled error, timeout) → [`Response`] with `function_error: Some(..)`:
//!   AWS answers 200 for these too, and the body is the error object;
//! * the function did not run → [`Error`]: a throttle (429, with its `Reason`), a service error (5xx), a
//!   client error (4xx: function not found, payload too large, …), or a transport failure/timeout.
//!
//! The SDK's own retries are switched off: the caller decides what to retry (a poller backs off on
//! throttles without counting an attempt; a load generator must see every throttle).

use std::time::Duration;

use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use base64::Engine as _;

/// How the function is invoked (`X-Amz-Invocation-Type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InvocationType {
    /// Synchronous: the response carries the function's result.
    #[default]
    RequestResponse,
    /// Asynchronous: Lambda queues the event and answers 202.
    Event,
    /// Validate parameters and permissions only: 204.
    DryRun,
}

impl InvocationType {
    /// The header value AWS uses.
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationType::RequestResponse => "RequestResponse",
            InvocationType::Event => "Event",
            InvocationType::DryRun => "DryRun",
        }
    }
}

/// What a target answered when the invoke reached the function (or, for `Event`/`DryRun`, was accepted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// HTTP status: 200 (RequestResponse), 202 (Event), 204 (DryRun).
    pub status: u16,
    /// `X-Amz-Function-Error` (e.g. `Unhandled`): the function ran and failed; `payload` is the error object.
    pub function_error: Option<String>,
    /// The function's result (or error object), as bytes.
    pub payload: Vec<u8>,
    /// `X-Amz-Executed-Version`, when the target reports it.
    pub executed_version: Option<String>,
    /// The decoded `X-Amz-Log-Result` (last 4 KB of the log), when a tail was asked for.
    pub log_tail: Option<String>,
}

/// Why an invoke did not reach the function.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 429 TooManyRequestsException. `reason` is the `Reason` AWS gives (e.g.
    /// `ReservedFunctionConcurrentInvocationLimitExceeded`).
    #[error("throttled ({})", reason.as_deref().unwrap_or("no reason given"))]
    Throttled {
        reason: Option<String>,
        retry_after: Option<Duration>,
    },
    /// 5xx from the service: the function did not run; worth retrying.
    #[error("service error {status}: {code}: {message}")]
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// Any other 4xx (ResourceNotFoundException, RequestTooLargeException, …): retrying the same
    /// request will not help until something is changed.
    #[error("rejected {status}: {code}: {message}")]
    Client {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer: connection refused, reset, or the request timed out.
    #[error("transport error: {0}")]
    Transport(String),
}

impl Error {
    /// True for errors that say nothing about the request itself, so the same invoke may succeed later.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Error::Client { .. })
    }
}

/// Where invocations go.
#[derive(Clone, Debug)]
pub enum Target {
    /// The Lambda Invoke API.
    Lambda(LambdaTarget),
    /// A plain HTTP endpoint that takes the event as the POST body.
    Http(HttpTarget),
}

impl Target {
    /// Invoke once. Never retries.
    pub async fn invoke(
        &self,
        payload: Vec<u8>,
        invocation_type: InvocationType,
        log_tail: bool,
    ) -> Result<Response, Error> {
        match self {
            Target::Lambda(t) => t.invoke(payload, invocation_type, log_tail).await,
            Target::Http(t) => t.invoke(payload).await,
        }
    }

    /// A short description for logs: the function name or the URL.
    pub fn describe(&self) -> String {
        match self {
            Target::Lambda(t) => match &t.qualifier {
                Some(q) => format!("lambda:{}:{q}", t.function_name),
                None => format!("lambda:{}", t.function_name),
            },
            Target::Http(t) => t.url.clone(),
        }
    }
}

/// A function behind the Lambda Invoke API.
#[derive(Clone, Debug)]
pub struct LambdaTarget {
    client: aws_sdk_lambda::Client,
    function_name: String,
    qualifier: Option<String>,
}

impl LambdaTarget {
    /// A target for `function_name` (name, ARN or partial ARN, optionally with `:qualifier`), using the
    /// shared AWS configuration. `endpoint_url` overrides the Lambda endpoint (the SDK also honours
    /// `AWS_ENDPOINT_URL_LAMBDA` and `AWS_ENDPOINT_URL`). `timeout` bounds one invoke end to end; set it
    /// above the function's own timeout.
    pub fn new(
        sdk_config: &aws_config::SdkConfig,
        function_name: impl Into<String>,
        endpoint_url: Option<&str>,
        timeout: Option<Duration>,
    ) -> Self {
        let mut builder = aws_sdk_lambda::config::Builder::from(sdk_config)
            .retry_config(aws_config::retry::RetryConfig::disabled());
        if let Some(url) = endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if let Some(timeout) = timeout {
            builder = builder.timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(timeout)
                    .build(),
            );
        }
        let (function_name, qualifier) = split_qualifier(&function_name.into());
        LambdaTarget {
            client: aws_sdk_lambda::Client::from_conf(builder.build()),
            function_name,
            qualifier,
        }
    }

    async fn invoke(
        &self,
        payload: Vec<u8>,
        invocation_type: InvocationType,
        log_tail: bool,
    ) -> Result<Response, Error> {
        use aws_sdk_lambda::types::{InvocationType as SdkType, LogType};
        let result = self
            .client
            .invoke()
            .function_name(&self.function_name)
            .set_qualifier(self.qualifier.clone())
            .invocation_type(SdkType::from(invocation_type.as_str()))
            .log_type(if log_tail { LogType::Tail } else { LogType::None })
            .payload(Blob::new(payload))
            .send()
            .await;
        match result {
            Ok(out) => Ok(Response {
                status: u16::try_from(out.status_code()).unwrap_or(200),
                function_error: out.function_error().map(str::to_owned),
                payload: out.payload().map(|b| b.as_ref().to_vec()).unwrap_or_default(),
                executed_version: out.executed_version().map(str::to_owned),
                log_tail: out.log_result().map(decode_log),
            }),
            Err(err) => Err(classify_sdk_error(err)),
        }
    }
}

/// `name:qualifier` → (`name`, `qualifier`). A full ARN `arn:aws:lambda:r:a:function:name[:qualifier]` keeps
/// its qualifier in place: Lambda accepts qualified ARNs as `FunctionName`.
fn split_qualifier(name: &str) -> (String, Option<String>) {
    if name.starts_with("arn:") {
        return (name.to_owned(), None);
    }
    // Partial ARN `account:function:name[:qualifier]` is passed through as well.
    if name.contains(":function:") {
        return (name.to_owned(), None);
    }
    match name.split_once(':') {
        Some((n, q)) => (n.to_owned(), Some(q.to_owned())),
        None => (name.to_owned(), None),
    }
}

fn decode_log(b64: &str) -> String {
    match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => b64.to_owned(),
    }
}

fn classify_sdk_error(err: SdkError<InvokeError>) -> Error {
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let err = ctx.into_err();
            if let InvokeError::TooManyRequestsException(t) = &err {
                return Error::Throttled {
                    reason: t.reason().map(|r| r.as_str().to_owned()),
                    retry_after: t
                        .retry_after_seconds()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(Duration::from_secs),
                };
            }
            let meta = aws_sdk_lambda::error::ProvideErrorMetadata::meta(&err);
            let code = meta.code().unwrap_or("Unknown").to_owned();
            let message = meta.message().unwrap_or_default().to_owned();
            if status == 429 {
                Error::Throttled {
                    reason: None,
                    retry_after: None,
                }
            } else if status >= 500 {
                Error::Service {
                    status,
                    code,
                    message,
                }
            } else {
                Error::Client {
                    status,
                    code,
                    message,
                }
            }
        }
        other => Error::Transport(aws_smithy_types::error::display::DisplayErrorContext(other).to_string()),
    }
}

/// A plain HTTP endpoint: the event is POSTed as `application/json`.
///
/// Status mapping (documented in docs/invoke-targets.md): 2xx → the function returned normally, the body is
/// its response; 429 → throttle; 502/503/504 → service error (the function did not run); any other status →
/// function error (`Unhandled`), the body is the error.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    client: reqwest::Client,
    url: String,
}

impl HttpTarget {
    /// A target POSTing to `url`, each request bounded by `timeout` if given.
    pub fn new(url: impl Into<String>, timeout: Option<Duration>) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(t) = timeout {
            builder = builder.timeout(t);
        }
        let client = builder.build().map_err(|e| Error::Transport(e.to_string()))?;
        Ok(HttpTarget {
            client,
            url: url.into(),
        })
    }

    async fn invoke(&self, payload: Vec<u8>) -> Result<Response, Error> {
        let resp = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(payload)
            .send()
            .await
            .map_err(|e| Error::Transport(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::Transport(error_chain(&e)))?
            .to_vec();
        match status {
            200..=299 => Ok(Response {
                status,
                function_error: None,
                payload: body,
                executed_version: None,
                log_tail: None,
            }),
            429 => Err(Error::Throttled {
                reason: throttle_reason(&body),
                retry_after,
            }),
            502..=504 => Err(Error::Service {
                status,
                code: "HttpStatus".to_owned(),
                message: String::from_utf8_lossy(&body).into_owned(),
            }),
            _ => Ok(Response {
                status,
                function_error: Some("Unhandled".to_owned()),
                payload: body,
                executed_version: None,
                log_tail: None,
            }),
        }
    }
}

/// The `Reason` of a 429 body shaped like Lambda's (`{"Reason": "..."}`), if any.
fn throttle_reason(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("Reason")?.as_str().map(str::to_owned)
}

/// Full error text including sources (reqwest hides the interesting part in `source()`).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
