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
//! Nothing is retried: the caller decides what to retry (a poller backs off on throttles without
//! counting an attempt; a load generator must see every throttle).
//!
//! Both targets send through `aws-wire` (one hyper pool per target, a request built from parts
//! prepared once, SigV4 signed directly for the Invoke API), not through reqwest or the AWS SDK: per
//! call, the SDK's interceptor chain, endpoint and identity resolution and body copies cost several
//! times the CPU of the request itself (docs/benchmarks.md), and an event source mapping and a load
//! generator both make one call per batch or request. The SDK is kept for `GetFunctionConfiguration`,
//! called once at start-up.
//!
//! Nothing a target answers can make the caller misbehave: a response body is read up to
//! [`MAX_RESPONSE_BYTES`] and no further (Lambda's own limit for a synchronous response; more is a
//! function error, as on Lambda), `Retry-After` is clamped to [`MAX_RETRY_AFTER`], redirects are not
//! followed, and error texts carry at most an [`excerpt`] of a body.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;

mod http_target;
mod invoke_api;

pub use http_target::{HttpTarget, http_answer};
pub use invoke_api::LambdaTarget;

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
    /// `X-Amzn-RequestId`: for an `Event` invocation, the id its destination record carries as
    /// `requestContext.requestId`. `None` from a plain HTTP target.
    pub request_id: Option<String>,
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
    /// No answer: connection refused or reset, an invalid request.
    #[error("transport error: {0}")]
    Transport(String),
    /// No answer within the request's timeout. Its own variant so that a caller that counts
    /// outcomes (a load generator) can tell a slow function from a broken connection.
    #[error("transport error: no answer within {0:?}")]
    Timeout(Duration),
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
    /// Invoke once. Never retries. A caller that may send the same payload again passes `Bytes`,
    /// whose clones share it.
    pub async fn invoke(
        &self,
        payload: impl Into<Bytes>,
        invocation_type: InvocationType,
        log_tail: bool,
    ) -> Result<Response, Error> {
        match self {
            Target::Lambda(t) => t.invoke(payload.into(), invocation_type, log_tail).await,
            Target::Http(t) => t.invoke(payload.into()).await,
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

/// Sends `request` through `pool` and reads at most [`MAX_RESPONSE_BYTES`] of the answer, the
/// whole exchange (connecting, sending, reading the body) bounded by `timeout` if given.
async fn send(
    pool: &aws_wire::Pool,
    request: ::http::Request<http_body_util::Full<bytes::Bytes>>,
    timeout: Option<Duration>,
) -> Result<aws_wire::Answer, Error> {
    let exchange = aws_wire::send(pool, request, MAX_RESPONSE_BYTES);
    let answer = match timeout {
        Some(limit) => tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| Error::Timeout(limit))?,
        None => exchange.await,
    };
    answer.map_err(|e| Error::Transport(e.to_string()))
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
        let expected = "expected http:// or https:// and a host";
        for (url, problem) in [
            ("/http/fn", expected.to_owned()),
            ("ftp://127.0.0.1/fn", expected.to_owned()),
            ("localhost:9001/http/fn", format!("invalid format; {expected}")),
            ("http://127.0.0.1:9001/a b", format!("invalid uri character; {expected}")),
        ] {
            let err = HttpTarget::new(url, None).unwrap_err();
            assert_eq!(err.to_string(), format!("transport error: invalid URL {url:?}: {problem}"));
        }
        let target = HttpTarget::new("http://127.0.0.1:9001/http/fn", None).unwrap();
        assert_eq!(Target::Http(target).describe(), "http://127.0.0.1:9001/http/fn");
    }

    /// A server on 127.0.0.1 that accepts connections and never answers.
    async fn silent_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        url
    }

    fn sdk_config(region: Option<&'static str>) -> aws_config::SdkConfig {
        let credentials = aws_credential_types::Credentials::new("AKID", "SECRET", None, None, "test");
        let mut config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(credentials));
        config.set_region(region.map(aws_config::Region::from_static));
        config.build()
    }

    #[tokio::test]
    async fn both_targets_give_up_on_a_silent_function_at_their_timeout() {
        let url = silent_server().await;
        let timeout = Some(Duration::from_millis(200));
        let targets = [
            Target::Http(HttpTarget::new(format!("{url}/fn"), timeout).unwrap()),
            Target::Lambda(LambdaTarget::new(&sdk_config(Some("us-east-1")), "fn", Some(&url), timeout)),
        ];
        for target in targets {
            let err = target.invoke(b"{}".to_vec(), InvocationType::RequestResponse, false).await.unwrap_err();
            assert!(matches!(err, Error::Timeout(limit) if limit == Duration::from_millis(200)), "{}: {err:?}", target.describe());
            assert_eq!(err.to_string(), "transport error: no answer within 200ms", "{}", target.describe());
        }
    }

    #[tokio::test]
    async fn a_lambda_target_that_cannot_sign_says_why_before_the_first_invoke() {
        let target = LambdaTarget::new(&sdk_config(None), "fn", Some("http://127.0.0.1:9"), None);
        let err = target.check().await.unwrap_err();
        assert!(err.to_string().contains("no AWS region configured"), "{err}");
        let invoked = Target::Lambda(target).invoke(b"{}".to_vec(), InvocationType::Event, false).await;
        assert!(matches!(&invoked, Err(Error::Transport(text)) if text.contains("no AWS region")), "{invoked:?}");
        let ready = LambdaTarget::new(&sdk_config(Some("eu-west-1")), "fn", None, None);
        ready.check().await.unwrap();
    }
}
