//! The generator's client: each request is built from parts prepared once (the parsed URI, the
//! fixed headers), sent through hyper directly, and for the Invoke API signed with aws-sigv4 on
//! that pre-built request.
//!
//! Why not the AWS SDK or reqwest, which `lambda-invoke` uses for the poller: per request, the SDK
//! runs its interceptor chain, endpoint resolution, retry and identity machinery and copies the
//! body into its own type; reqwest parses the URL and builds a header map. Measured against oha
//! (docs/benchmarks.md), the SDK path cost four times oha's CPU per request and reqwest nearly
//! twice. A load generator's CPU per request is its ceiling, so it takes the direct path; the
//! answers are classified exactly as `lambda-invoke` classifies them (the same [`Response`] and
//! [`Error`]), so outcomes do not depend on the path.
//!
//! The signature is SigV4 with the settings the SDK uses for Lambda (aws-sigv4's defaults:
//! double percent-encoding, normalised path, no `x-amz-content-sha256` header, session token
//! signed), over the same URI and headers the SDK sends; a test checks it is byte-identical to the
//! SDK's. Telemetry headers the SDK adds (`amz-sdk-invocation-id`, `x-amz-user-agent`) are not
//! sent. <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-signing-request.html>

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_wire::{Pool, Signer};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::Full;
use lambda_invoke::{Error, InvocationType, MAX_RESPONSE_BYTES, Response, Target};

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region};

use crate::Error as LoadgenError;
use crate::plan::{TargetKind, TargetPlan};

/// Where the engine's requests go.
#[derive(Debug)]
pub struct Client(Kind);

#[derive(Debug)]
enum Kind {
    /// A plain HTTP endpoint, POSTed directly.
    Http(Box<Endpoint>),
    /// The Lambda Invoke API, signed directly.
    Lambda(Box<Lambda>),
    /// A `lambda-invoke` target as built elsewhere (an SDK client or an HTTP target with its own
    /// method and headers, whose configuration the engine cannot see into).
    Target(Box<Target>),
}

impl From<Target> for Client {
    fn from(target: Target) -> Client {
        Client(Kind::Target(Box::new(target)))
    }
}

impl Client {
    /// The client for `plan`'s target. A Lambda target loads the AWS configuration (region: the
    /// plan's, else the environment's, else `us-east-1`; the endpoint: the plan's, else
    /// `AWS_ENDPOINT_URL_LAMBDA` / `AWS_ENDPOINT_URL` or the profile's, else the one the SDK's own
    /// resolver gives) and resolves credentials once, so that a run without credentials fails
    /// here instead of counting every request as a transport error.
    pub async fn for_plan(plan: &TargetPlan) -> Result<Client, LoadgenError> {
        let (function, endpoint_url, region) = match &plan.kind {
            TargetKind::Http {
                url,
                method,
                headers,
            } => return Endpoint::new(url, method, headers).map(|e| Client(Kind::Http(Box::new(e)))),
            TargetKind::Lambda {
                function,
                endpoint_url,
                region,
            } => (function, endpoint_url, region),
        };
        let region = RegionProviderChain::first_try(region.clone().map(Region::new))
            .or_default_provider()
            .or_else(Region::from_static("us-east-1"));
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .load()
            .await;
        let region = sdk.region().map_or("us-east-1", Region::as_ref).to_owned();
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| LoadgenError::Target("no AWS credentials provider".to_owned()))?;
        let lambda = Lambda::new(
            &lambda_endpoint(&sdk, endpoint_url.as_deref(), &region).await?,
            function,
            &region,
            provider,
        )?;
        lambda
            .signer
            .credentials()
            .await
            .map_err(|e| LoadgenError::Target(e.to_string()))?;
        Ok(Client(Kind::Lambda(Box::new(lambda))))
    }

    /// Invokes once; never retries.
    pub async fn invoke(
        &self,
        payload: Vec<u8>,
        invocation_type: InvocationType,
        log_tail: bool,
    ) -> Result<Response, Error> {
        match &self.0 {
            Kind::Http(endpoint) => endpoint.invoke(Bytes::from(payload)).await,
            Kind::Lambda(lambda) => {
                lambda
                    .invoke(Bytes::from(payload), invocation_type, log_tail)
                    .await
            }
            Kind::Target(target) => target.invoke(payload, invocation_type, log_tail).await,
        }
    }
}

/// The Invoke API's endpoint, found where the SDK looks for it (the same order as
/// `aws_sdk_lambda::Config::from(&SdkConfig)`, then its default resolver).
async fn lambda_endpoint(
    sdk: &aws_config::SdkConfig,
    given: Option<&str>,
    region: &str,
) -> Result<String, LoadgenError> {
    use aws_sdk_lambda::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
    let url = given
        .map(str::to_owned)
        .or_else(|| aws_wire::configured_endpoint(sdk, "Lambda"));
    let params = Params::builder()
        .region(region)
        .use_fips(sdk.use_fips().unwrap_or(false))
        .use_dual_stack(sdk.use_dual_stack().unwrap_or(false))
        .set_endpoint(url)
        .build()
        .map_err(|e| LoadgenError::Target(format!("Lambda endpoint: {e}")))?;
    let endpoint = DefaultResolver::new()
        .resolve_endpoint(&params)
        .await
        .map_err(|e| LoadgenError::Target(format!("Lambda endpoint: {e}")))?;
    Ok(endpoint.url().to_owned())
}

fn pool() -> Result<Pool, LoadgenError> {
    aws_wire::pool().map_err(|e| LoadgenError::Target(e.to_string()))
}

/// A plain HTTP endpoint: the URL, method and headers parsed once.
#[derive(Debug)]
struct Endpoint {
    url: String,
    uri: Uri,
    method: Method,
    /// Sent with every request; `Content-Type: application/json` unless replaced.
    headers: HeaderMap,
    pool: Pool,
}

impl Endpoint {
    fn new(url: &str, method: &str, headers: &[(String, String)]) -> Result<Endpoint, LoadgenError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| LoadgenError::Target(format!("target.url `{url}`: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(LoadgenError::Target(format!(
                "target.url `{url}`: expected http:// or https:// and a host"
            )));
        }
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| LoadgenError::Target(format!("target.method `{method}` is not an HTTP method")))?;
        let mut map = HeaderMap::new();
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            let bad = || LoadgenError::Target(format!("target.headers: invalid HTTP header `{name}: {value}`"));
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let value = HeaderValue::from_str(value).map_err(|_| bad())?;
            map.insert(name, value);
        }
        Ok(Endpoint {
            url: url.to_owned(),
            uri,
            method,
            headers: map,
            pool: pool()?,
        })
    }

    async fn invoke(&self, payload: Bytes) -> Result<Response, Error> {
        let mut request = Request::new(Full::new(payload));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let (status, headers, body, total) = send(&self.pool, request).await?;
        lambda_invoke::http_answer(&self.url, status, &headers, body, total)
    }
}

/// Sends `request` and reads at most [`MAX_RESPONSE_BYTES`] of the answer: the status, the
/// headers, what was read and how long the body was.
async fn send(pool: &Pool, request: Request<Full<Bytes>>) -> Result<(u16, HeaderMap, Vec<u8>, usize), Error> {
    let answer = aws_wire::send(pool, request, MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| Error::Transport(e.to_string()))?;
    Ok((answer.status, answer.headers, Vec::from(answer.body), answer.total))
}

/// A function behind the Invoke API: `POST /2015-03-31/functions/{name}/invocations`, signed.
#[derive(Debug)]
struct Lambda {
    /// The full URI as a string, for signing (which reads the host from it).
    uri_text: String,
    uri: Uri,
    signer: Signer,
    pool: Pool,
}

const INVOCATION_TYPE: HeaderName = HeaderName::from_static("x-amz-invocation-type");
const LOG_TYPE: HeaderName = HeaderName::from_static("x-amz-log-type");

impl Lambda {
    /// `function` as the SDK takes it (name, ARN or `name:qualifier`), at `endpoint` (scheme and
    /// authority, e.g. `https://lambda.eu-west-1.amazonaws.com`), signed for `region`.
    fn new(
        endpoint: &str,
        function: &str,
        region: &str,
        credentials: SharedCredentialsProvider,
    ) -> Result<Lambda, LoadgenError> {
        let (name, qualifier) = lambda_invoke::split_qualifier(function);
        let mut uri_text = format!(
            "{}/2015-03-31/functions/{}/invocations",
            endpoint.trim_end_matches('/'),
            aws_smithy_http::label::fmt_string(
                &name,
                aws_smithy_http::label::EncodingStrategy::Default
            )
        );
        if let Some(qualifier) = qualifier {
            uri_text.push_str("?Qualifier=");
            uri_text.push_str(&aws_smithy_http::query::fmt_string(&qualifier));
        }
        let uri = uri_text
            .parse()
            .map_err(|e| LoadgenError::Target(format!("target.endpoint_url `{endpoint}`: {e}")))?;
        Ok(Lambda {
            uri_text,
            uri,
            signer: Signer::new("lambda", region, credentials),
            pool: pool()?,
        })
    }

    /// The request as the SDK builds it, unsigned.
    fn request(
        &self,
        payload: Bytes,
        invocation_type: InvocationType,
        log_tail: bool,
    ) -> Request<Full<Bytes>> {
        let length = payload.len();
        let mut request = Request::new(Full::new(payload));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(
            INVOCATION_TYPE,
            HeaderValue::from_static(invocation_type.as_str()),
        );
        headers.insert(
            LOG_TYPE,
            HeaderValue::from_static(if log_tail { "Tail" } else { "None" }),
        );
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        request
    }

    async fn invoke(
        &self,
        payload: Bytes,
        invocation_type: InvocationType,
        log_tail: bool,
    ) -> Result<Response, Error> {
        let body = payload.clone();
        let mut request = self.request(payload, invocation_type, log_tail);
        self.signer
            .sign(&mut request, &self.uri_text, &body)
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let (status, headers, body, total) = send(&self.pool, request).await?;
        invoke_answer(status, &headers, body, total)
    }
}

/// Classifies an Invoke API answer as `lambda-invoke` does through the SDK: 2xx is the function's
/// response (`X-Amz-Function-Error`, `X-Amz-Log-Result`, `X-Amz-Executed-Version`); an error
/// status is a throttle (429, with the body's `Reason` and the `Retry-After` header), a service
/// error (5xx) or a client error, with the error code from `X-Amzn-ErrorType` or the body's
/// `__type`/`code`, as the SDK's restJson1 parser reads it.
/// <https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html>
fn invoke_answer(
    status: u16,
    headers: &HeaderMap,
    body: Vec<u8>,
    total: usize,
) -> Result<Response, Error> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if (200..300).contains(&status) {
        if total > MAX_RESPONSE_BYTES {
            return Ok(Response {
                status,
                function_error: Some(lambda_invoke::UNHANDLED.to_owned()),
                payload: lambda_invoke::response_too_large(total),
                executed_version: None,
                log_tail: None,
            });
        }
        return Ok(Response {
            status,
            function_error: header("x-amz-function-error").map(str::to_owned),
            payload: body,
            executed_version: header("x-amz-executed-version").map(str::to_owned),
            log_tail: header("x-amz-log-result").map(lambda_invoke::decode_log),
        });
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| json.get(*n).and_then(|v| v.as_str()))
            .map(str::to_owned)
    };
    let code = header("x-amzn-errortype")
        .map(str::to_owned)
        .or_else(|| field(&["code", "__type"]))
        .map(|raw| sanitize_error_code(&raw).to_owned());
    if status == 429 {
        let known = code.as_deref() == Some("TooManyRequestsException");
        return Err(Error::Throttled {
            reason: if known { field(&["Reason"]) } else { None },
            retry_after: if known {
                header("retry-after").and_then(lambda_invoke::parse_retry_after)
            } else {
                None
            },
        });
    }
    let code = code.unwrap_or_else(|| "Unknown".to_owned());
    let message = if total > MAX_RESPONSE_BYTES {
        format!("error response of {total} bytes not read")
    } else {
        lambda_invoke::excerpt(
            field(&["message", "Message", "errorMessage"])
                .unwrap_or_default()
                .as_bytes(),
        )
    };
    if status >= 500 {
        Err(Error::Service {
            status,
            code,
            message,
        })
    } else {
        Err(Error::Client {
            status,
            code,
            message,
        })
    }
}

/// `aws.protocoltests.restjson#FooError:http://…` → `FooError`, as the SDK reads error codes.
fn sanitize_error_code(raw: &str) -> &str {
    let code = raw.split(':').next().unwrap_or(raw);
    code.rsplit('#').next().unwrap_or(code)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn error_codes_are_read_as_the_sdk_reads_them() {
        assert_eq!(
            sanitize_error_code("TooManyRequestsException:http://internal.amazon.com/coral/"),
            "TooManyRequestsException"
        );
        assert_eq!(
            sanitize_error_code("aws.lambda#ResourceNotFoundException"),
            "ResourceNotFoundException"
        );
        let throttled = invoke_answer(
            429,
            &headers(&[
                ("x-amzn-errortype", "TooManyRequestsException"),
                ("retry-after", "2"),
            ]),
            br#"{"Type":"User","message":"Rate exceeded","Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}"#.to_vec(),
            0,
        );
        let Err(Error::Throttled {
            reason,
            retry_after,
        }) = throttled
        else {
            panic!("{throttled:?}")
        };
        assert_eq!(
            reason.as_deref(),
            Some("ReservedFunctionConcurrentInvocationLimitExceeded")
        );
        assert_eq!(retry_after, Some(Duration::from_secs(2)));
        let missing = invoke_answer(
            404,
            &HeaderMap::new(),
            br#"{"__type":"ResourceNotFoundException","message":"Function not found"}"#.to_vec(),
            0,
        );
        let Err(Error::Client {
            status,
            code,
            message,
        }) = missing
        else {
            panic!("{missing:?}")
        };
        assert_eq!(
            (status, code.as_str(), message.as_str()),
            (404, "ResourceNotFoundException", "Function not found")
        );
        let service = invoke_answer(503, &HeaderMap::new(), b"<html>".to_vec(), 0);
        assert!(
            matches!(service, Err(Error::Service { status: 503, ref code, .. }) if code == "Unknown")
        );
    }

    #[test]
    fn a_function_response_over_the_limit_is_lambdas_function_error() {
        let answer = invoke_answer(200, &HeaderMap::new(), Vec::new(), MAX_RESPONSE_BYTES + 10);
        let response = answer.unwrap();
        assert_eq!(response.function_error.as_deref(), Some("Unhandled"));
        assert!(
            String::from_utf8_lossy(&response.payload).contains("Function.ResponseSizeTooLarge")
        );
    }
}

/// The direct path against the SDK's: the same request, the same signature.
#[cfg(test)]
mod sdk_equivalence {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, UNIX_EPOCH};

    use aws_credential_types::Credentials;
    use http_body_util::BodyExt;

    use aws_sdk_lambda::config::{BehaviorVersion, Region};
    use aws_sdk_lambda::primitives::Blob;
    use aws_sdk_lambda::types::{InvocationType as SdkType, LogType};
    use aws_smithy_async::time::StaticTimeSource;

    use super::*;

    /// What the capture server saw of the one request it got.
    type Captured = Arc<Mutex<Option<(Uri, HeaderMap, Bytes)>>>;

    /// A server on 127.0.0.1 that keeps the request it gets and answers `200 {}`.
    async fn capture_server() -> (String, Captured) {
        let captured: Captured = Arc::default();
        let keep = Arc::clone(&captured);
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let keep = Arc::clone(&keep);
            async move {
                let (parts, body) = request.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                *keep.lock().unwrap() = Some((parts.uri, parts.headers, body));
                "{}"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, captured)
    }

    /// The SDK signs telemetry headers of its own (`amz-sdk-invocation-id`, `amz-sdk-request`,
    /// `x-amz-user-agent`) that the direct path does not send, so the comparison is in two
    /// steps: (1) the direct path builds the SDK's request (method, path, query, every header
    /// Lambda reads); (2) given the SDK's exact headers, its signer produces the SDK's
    /// `Authorization` byte for byte, at the same time with the same (session) credentials.
    #[tokio::test]
    async fn the_request_and_its_signature_are_the_sdks() {
        let (endpoint, captured) = capture_server().await;
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session/token+=".to_owned()),
            None,
            "test",
        );
        let config = aws_sdk_lambda::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(credentials.clone())
            .endpoint_url(&endpoint)
            .time_source(StaticTimeSource::new(time))
            .build();
        let payload: &[u8] = br#"{"id": 1, "text": "a b/c"}"#;
        aws_sdk_lambda::Client::from_conf(config)
            .invoke()
            .function_name("arn:aws:lambda:eu-west-1:123456789012:function:orders")
            .qualifier("live")
            .invocation_type(SdkType::Event)
            .log_type(LogType::None)
            .payload(Blob::new(payload))
            .send()
            .await
            .unwrap();
        let (uri, sdk_headers, body) = captured.lock().unwrap().take().unwrap();
        assert_eq!(body.as_ref(), payload);

        // (1) The same request.
        let lambda = Lambda::new(
            &endpoint,
            "arn:aws:lambda:eu-west-1:123456789012:function:orders",
            "eu-west-1",
            SharedCredentialsProvider::new(credentials.clone()),
        )
        .unwrap();
        let ours = lambda.request(Bytes::from_static(payload), InvocationType::Event, false);
        // The ARN's colons percent-encoded as the SDK does; the qualifier given separately
        // here, as `name:qualifier` is not split for an ARN.
        assert_eq!(
            ours.uri().path(),
            uri.path(),
            "ours {}, the SDK's {uri}",
            ours.uri()
        );
        for name in [
            "x-amz-invocation-type",
            "x-amz-log-type",
            "content-type",
            "content-length",
        ] {
            assert_eq!(ours.headers().get(name), sdk_headers.get(name), "{name}");
        }
        let qualified = Lambda::new(
            &endpoint,
            "orders:live",
            "eu-west-1",
            SharedCredentialsProvider::new(credentials.clone()),
        )
        .unwrap();
        assert_eq!(qualified.uri.query(), uri.query());

        // (2) The same signature over the headers the SDK signed (it adds `amz-sdk-*` after
        // signing).
        let authorization = sdk_headers["authorization"].to_str().unwrap();
        let signed: Vec<&str> = authorization
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap()
            .split(';')
            .collect();
        let mut resigned = Request::new(());
        *resigned.method_mut() = Method::POST;
        *resigned.uri_mut() = uri.clone();
        for (name, value) in &sdk_headers {
            if signed.contains(&name.as_str())
                && !matches!(name.as_str(), "x-amz-date" | "x-amz-security-token")
            {
                resigned.headers_mut().insert(name, value.clone());
            }
        }
        let uri_text = format!("{endpoint}{}", uri.path_and_query().unwrap());
        lambda
            .signer
            .sign_with(&mut resigned, &uri_text, payload, &credentials, time)
            .unwrap();
        for name in ["authorization", "x-amz-date", "x-amz-security-token"] {
            assert_eq!(
                resigned.headers().get(name),
                sdk_headers.get(name),
                "{name}"
            );
        }

        // And the direct path's own request signs the same headers, less the SDK's user agent.
        let mut ours = ours;
        lambda
            .signer
            .sign_with(&mut ours, &lambda.uri_text, payload, &credentials, time)
            .unwrap();
        let expected: Vec<&str> = signed
            .into_iter()
            .filter(|h| *h != "x-amz-user-agent")
            .collect();
        let authorization = ours.headers()["authorization"].to_str().unwrap();
        assert!(
            authorization.contains(&format!("SignedHeaders={},", expected.join(";"))),
            "{authorization}"
        );
    }
}
