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
//!
//! Nothing a target answers can make the caller misbehave: a response body is read up to
//! [`MAX_RESPONSE_BYTES`] and no further (Lambda's own limit for a synchronous response; more is a
//! function error, as on Lambda), `Retry-After` is clamped to [`MAX_RETRY_AFTER`], redirects are not
//! followed, and error texts carry at most an [`excerpt`] of a body.

use std::time::Duration;

use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_smithy_types::body::SdkBody;
use base64::Engine as _;

/// Most bytes of a function's response that are read. Lambda's synchronous invocation response limit is
/// 6 MB; when a function returns more, Lambda answers with a `Function.ResponseSizeTooLarge` function error
/// naming this number of bytes (<https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>).
pub const MAX_RESPONSE_BYTES: usize = 6_291_556;

/// Longest `Retry-After` honoured. A throttled invoke holds its records while it waits, and a target can
/// ask for any delay (even 2^64 seconds): longer waits are cut to this; a caller that cannot wait that long
/// falls back to its own retry policy.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A bound for one invoke when no timeout is given: Lambda's maximum function timeout, 15 minutes (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html>).
pub const DEFAULT_INVOKE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Bytes of a body kept in error texts and logs.
const EXCERPT_BYTES: usize = 1024;

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

/// What Lambda's `GetFunctionConfiguration` says about a function, as far as an event source mapping
/// needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionConfiguration {
    /// The function's ARN.
    pub function_arn: Option<String>,
    /// The function's timeout (`Timeout`, whole seconds).
    pub timeout: Duration,
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

    /// The function's timeout: from `GetFunctionConfiguration` for a Lambda function; for an HTTP target,
    /// the request timeout given to [`HttpTarget::new`], or `None` when none was given.
    pub async fn function_timeout(&self) -> Result<Option<Duration>, Error> {
        match self {
            Target::Lambda(t) => Ok(Some(t.configuration().await?.timeout)),
            Target::Http(t) => Ok(t.timeout),
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
        let builder = builder.interceptor(ResponseSizeLimit);
        let (function_name, qualifier) = split_qualifier(&function_name.into());
        LambdaTarget {
            client: aws_sdk_lambda::Client::from_conf(builder.build()),
            function_name,
            qualifier,
        }
    }

    /// The function's configuration (`GetFunctionConfiguration`), for checks before invoking it.
    pub async fn configuration(&self) -> Result<FunctionConfiguration, Error> {
        let out = self
            .client
            .get_function_configuration()
            .function_name(&self.function_name)
            .set_qualifier(self.qualifier.clone())
            .send()
            .await
            .map_err(|err| match err {
                SdkError::ServiceError(ctx) => {
                    let status = ctx.raw().status().as_u16();
                    service_error(status, &ctx.into_err())
                }
                other => Error::Transport(aws_smithy_types::error::display::DisplayErrorContext(other).to_string()),
            })?;
        // Lambda's documented default when a function is created without one.
        let seconds = out.timeout().unwrap_or(3);
        Ok(FunctionConfiguration {
            function_arn: out.function_arn().map(str::to_owned),
            timeout: Duration::from_secs(u64::try_from(seconds).unwrap_or(0)),
        })
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
            Ok(out) => {
                Ok(Response {
                    status: u16::try_from(out.status_code()).unwrap_or(200),
                    function_error: out.function_error().map(str::to_owned),
                    payload: out.payload().map(|b| b.as_ref().to_vec()).unwrap_or_default(),
                    executed_version: out.executed_version().map(str::to_owned),
                    log_tail: out.log_result().map(decode_log),
                })
            }
            // The body passed the limit while being read (no Content-Length said so beforehand).
            Err(err) if caused_by::<http_body_util::LengthLimitError>(&err) => Ok(Response {
                status: 200,
                function_error: Some(UNHANDLED.to_owned()),
                payload: response_too_large(MAX_RESPONSE_BYTES + 1),
                executed_version: None,
                log_tail: None,
            }),
            Err(err) => Err(classify_sdk_error(err)),
        }
    }
}

/// True if `T` is somewhere in the chain of sources of `err`.
fn caused_by<T: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.is::<T>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// `X-Amz-Function-Error` of a function that failed without handling the error.
pub const UNHANDLED: &str = "Unhandled";

/// The error object Lambda returns for a function response over the limit, `len` bytes long (at least;
/// the rest was not read).
pub fn response_too_large(len: usize) -> Vec<u8> {
    serde_json::json!({
        "errorMessage": format!(
            "Response payload size ({len} bytes) exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
        ),
        "errorType": "Function.ResponseSizeTooLarge",
    })
    .to_string()
    .into_bytes()
}

/// Keeps an Invoke API response larger than [`MAX_RESPONSE_BYTES`] from being read. One announced larger
/// (`Content-Length`) is replaced, before the SDK reads it, by the function error Lambda itself returns
/// for such a response (an error answer that large becomes a short one); any other body is read through a
/// limit, and passing it ends the read with an error that becomes the same function error.
#[derive(Debug)]
struct ResponseSizeLimit;

impl aws_sdk_lambda::config::Intercept for ResponseSizeLimit {
    fn name(&self) -> &'static str {
        "ResponseSizeLimit"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_lambda::config::interceptors::BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &aws_sdk_lambda::config::RuntimeComponents,
        _cfg: &mut aws_sdk_lambda::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let response = context.response_mut();
        let announced = response
            .headers()
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if announced <= MAX_RESPONSE_BYTES {
            // Without Content-Length (or if it lies), stop reading at the limit all the same.
            let body = std::mem::replace(response.body_mut(), SdkBody::taken());
            *response.body_mut() =
                body.map(|b| SdkBody::from_body_1_x(http_body_util::Limited::new(b, MAX_RESPONSE_BYTES)));
            return Ok(());
        }
        let body = if response.status().is_success() {
            response.headers_mut().insert("x-amz-function-error", UNHANDLED);
            response_too_large(announced)
        } else {
            format!(r#"{{"message":"error response of {announced} bytes not read"}}"#).into_bytes()
        };
        response.headers_mut().insert("content-length", body.len().to_string());
        *response.body_mut() = SdkBody::from(body);
        Ok(())
    }
}

/// `name:qualifier` → (`name`, `qualifier`). A full ARN `arn:aws:lambda:r:a:function:name[:qualifier]` keeps
/// its qualifier in place: Lambda accepts qualified ARNs as `FunctionName`.
pub fn split_qualifier(name: &str) -> (String, Option<String>) {
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

/// The decoded `X-Amz-Log-Result` (base64), or the value itself if it is not base64.
pub fn decode_log(b64: &str) -> String {
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
                    retry_after: t.retry_after_seconds().and_then(parse_retry_after),
                };
            }
            service_error(status, &err)
        }
        other => Error::Transport(aws_smithy_types::error::display::DisplayErrorContext(other).to_string()),
    }
}

/// An error answer of the Lambda API, by status: 429 throttle, 5xx service error, other client error.
fn service_error(status: u16, err: &impl aws_sdk_lambda::error::ProvideErrorMetadata) -> Error {
    let code = err.code().unwrap_or("Unknown").to_owned();
    let message = excerpt(err.message().unwrap_or_default().as_bytes());
    if status == 429 {
        Error::Throttled {
            reason: None,
            retry_after: None,
        }
    } else if status >= 500 {
        Error::Service { status, code, message }
    } else {
        Error::Client { status, code, message }
    }
}

/// A `Retry-After` value in seconds (Lambda sends whole seconds; fractions are accepted), clamped to
/// [`MAX_RETRY_AFTER`]. `None` for anything else (an HTTP date, garbage, a negative number): the caller
/// then uses its own backoff.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64())))
}

/// At most the first 1 KB of `body` as text, followed by its total length when it was cut: for logs and
/// error messages, which must stay short whatever a function returns.
pub fn excerpt(body: &[u8]) -> String {
    if body.len() <= EXCERPT_BYTES {
        return String::from_utf8_lossy(body).into_owned();
    }
    format!(
        "{}… ({} bytes in all)",
        String::from_utf8_lossy(&body[..EXCERPT_BYTES]),
        body.len()
    )
}

/// A plain HTTP endpoint: the event is POSTed as `application/json` (a load generator may choose
/// another method and headers with [`HttpTarget::with_request`]).
///
/// Status mapping (documented in docs/invoke-targets.md): 2xx → the function returned normally, the body is
/// its response; 3xx → an invoke error (redirects are not followed: the event goes to the configured URL
/// only); 429 → throttle; 502/503/504 → service error (the function did not run); any other status →
/// function error (`Unhandled`), the body is the error. A body is read up to [`MAX_RESPONSE_BYTES`]: a
/// longer success body is the function error Lambda gives for it, a longer error body is cut.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    client: reqwest::Client,
    /// The URL as given, for messages.
    url: String,
    /// The URL parsed once, not on every invoke.
    parsed: reqwest::Url,
    /// The timeout given at creation, if any.
    timeout: Option<Duration>,
    method: reqwest::Method,
    /// Sent with every request; `Content-Type: application/json` unless replaced.
    headers: reqwest::header::HeaderMap,
}

impl HttpTarget {
    /// A target POSTing to `url`, each request bounded by `timeout` ([`DEFAULT_INVOKE_TIMEOUT`] if none).
    /// Fails if `url` is not an absolute http or https URL.
    pub fn new(url: impl Into<String>, timeout: Option<Duration>) -> Result<Self, Error> {
        let url = url.into();
        let invalid = |reason: &dyn std::fmt::Display| Error::Transport(format!("invalid URL {url:?}: {reason}"));
        let parsed = reqwest::Url::parse(&url).map_err(|e| invalid(&e))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(&"the scheme must be http or https"));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout.unwrap_or(DEFAULT_INVOKE_TIMEOUT))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Transport(e.to_string()))?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        Ok(HttpTarget {
            client,
            url,
            parsed,
            timeout,
            method: reqwest::Method::POST,
            headers,
        })
    }

    /// The same target sending `method` with `headers` (each replacing a default header of the same
    /// name). An invalid method or header is an [`Error::Transport`] naming it.
    pub fn with_request(mut self, method: &str, headers: &[(String, String)]) -> Result<Self, Error> {
        self.method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::Transport(format!("`{method}` is not an HTTP method")))?;
        for (name, value) in headers {
            let bad = || Error::Transport(format!("invalid HTTP header `{name}: {value}`"));
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| bad())?;
            self.headers.insert(name, value);
        }
        Ok(self)
    }

    async fn invoke(&self, payload: Vec<u8>) -> Result<Response, Error> {
        let mut resp = self
            .client
            .request(self.method.clone(), self.parsed.clone())
            .headers(self.headers.clone())
            .body(payload)
            .send()
            .await
            .map_err(|e| Error::Transport(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        let mut total = 0usize;
        while let Some(chunk) = resp.chunk().await.map_err(|e| Error::Transport(error_chain(&e)))? {
            total = total.saturating_add(chunk.len());
            if total > MAX_RESPONSE_BYTES {
                // Stop reading: dropping the response closes the connection.
                break;
            }
            body.extend_from_slice(&chunk);
        }
        http_answer(&self.url, status, &headers, body, total)
    }
}

/// Classifies a plain HTTP endpoint's answer by the status mapping of [`HttpTarget`]. `body` is what
/// was read of it, at most [`MAX_RESPONSE_BYTES`]; `total` is how many bytes the endpoint sent (more
/// than the limit when reading stopped there). Public for clients that send the request themselves.
pub fn http_answer(
    url: &str,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: Vec<u8>,
    total: usize,
) -> Result<Response, Error> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let retry_after = header(reqwest::header::RETRY_AFTER).as_deref().and_then(parse_retry_after);
    if (300..=399).contains(&status) {
        let location = header(reqwest::header::LOCATION).unwrap_or_else(|| "none".to_owned());
        return Err(Error::Client {
            status,
            code: "Redirect".to_owned(),
            message: format!(
                "{url} answered with a redirect (Location: {}); redirects are not followed: set the URL the \
                 function is served at",
                excerpt(location.as_bytes())
            ),
        });
    }
    let too_large = total > MAX_RESPONSE_BYTES;
    match status {
        200..=299 if too_large => Ok(Response {
            status,
            function_error: Some(UNHANDLED.to_owned()),
            payload: response_too_large(total),
            executed_version: None,
            log_tail: None,
        }),
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
            message: excerpt(&body),
        }),
        _ => Ok(Response {
            status,
            function_error: Some(UNHANDLED.to_owned()),
            payload: body,
            executed_version: None,
            log_tail: None,
        }),
    }
}

/// The `Reason` of a 429 body shaped like Lambda's (`{"Reason": "..."}`), if any.
fn throttle_reason(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("Reason")?.as_str().map(str::to_owned)
}

/// Full error text including sources (reqwest and hyper hide the interesting part, e.g. `Too many
/// open files`, in `source()`).
pub use aws_wire::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_clamped_and_garbage_ignored() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("18446744073709551615"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("1e300"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("inf"), Some(MAX_RETRY_AFTER));
        for bad in ["-1", "NaN", "", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn excerpt_keeps_short_bodies_and_cuts_long_ones() {
        assert_eq!(excerpt(b"short"), "short");
        let long = vec![b'x'; 16 * 1024 * 1024];
        let text = excerpt(&long);
        assert!(text.len() < 1100, "{} bytes", text.len());
        assert!(text.ends_with("(16777216 bytes in all)"), "{}", &text[1000..]);
    }

    #[test]
    fn oversized_response_is_lambdas_function_error() {
        let body: serde_json::Value = serde_json::from_slice(&response_too_large(7_000_000)).unwrap();
        assert_eq!(body["errorType"], "Function.ResponseSizeTooLarge");
        assert_eq!(
            body["errorMessage"],
            "Response payload size (7000000 bytes) exceeded maximum allowed payload size (6291556 bytes)."
        );
    }

    #[test]
    fn http_target_url_is_checked_once_at_creation() {
        let err = HttpTarget::new("/http/fn", None).unwrap_err();
        assert_eq!(err.to_string(), r#"transport error: invalid URL "/http/fn": relative URL without a base"#);
        let err = HttpTarget::new("localhost:9001/http/fn", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"transport error: invalid URL "localhost:9001/http/fn": the scheme must be http or https"#
        );
        let target = HttpTarget::new("http://127.0.0.1:9001/http/fn", None).unwrap();
        assert_eq!(Target::Http(target).describe(), "http://127.0.0.1:9001/http/fn");
    }
}
