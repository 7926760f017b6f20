//! A plain HTTP endpoint as a function.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};
use http::{Method, Request, Uri};
use http_body_util::Full;

use crate::{DEFAULT_INVOKE_TIMEOUT, Error, MAX_RESPONSE_BYTES, Response, UNHANDLED, excerpt, parse_retry_after};

/// A plain HTTP endpoint: the event is POSTed as `application/json` (a load generator may choose
/// another method and headers with [`HttpTarget::with_request`]).
///
/// Status mapping (documented in docs/decisions.md): 2xx → the function returned normally, the body is
/// its response; 3xx → an invoke error (redirects are not followed: the event goes to the configured URL
/// only); 429 → throttle; 502/503/504 → service error (the function did not run); any other status →
/// function error (`Unhandled`), the body is the error. A body is read up to [`MAX_RESPONSE_BYTES`]: a
/// longer success body is the function error Lambda gives for it, a longer error body is cut.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    /// The URL as given, for messages.
    pub(crate) url: String,
    /// The URL parsed once, not on every invoke.
    uri: Uri,
    /// The timeout given at creation, if any.
    pub(crate) timeout: Option<Duration>,
    method: Method,
    /// Sent with every request; `Content-Type: application/json` unless replaced.
    headers: HeaderMap,
    pool: aws_wire::Pool,
}

impl HttpTarget {
    /// A target POSTing to `url`, each request bounded by `timeout` ([`DEFAULT_INVOKE_TIMEOUT`] if none).
    /// Fails if `url` is not an absolute http or https URL.
    pub fn new(url: impl Into<String>, timeout: Option<Duration>) -> Result<Self, Error> {
        let url = url.into();
        const EXPECTED: &str = "expected http:// or https:// and a host";
        let invalid = |reason: String| Error::Transport(format!("invalid URL {url:?}: {reason}"));
        let uri: Uri = url.parse().map_err(|e| invalid(format!("{e}; {EXPECTED}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(invalid(EXPECTED.to_owned()));
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // Set once here rather than formatted by the pool on every request.
        if let Some(host) = aws_wire::host(&uri) {
            headers.insert(HOST, host);
        }
        Ok(HttpTarget {
            url,
            uri,
            timeout,
            method: Method::POST,
            headers,
            pool: aws_wire::pool(),
        })
    }

    /// The same target on an [`aws_wire::arrival_timing_pool`]: each answer's arrival is the
    /// kernel's receive time stamp (for a load generator's [`aws_wire::timed`]).
    pub fn with_arrival_times(mut self) -> Self {
        self.pool = aws_wire::arrival_timing_pool();
        self
    }

    /// The same target sending `method` with `headers` (each replacing a default header of the same
    /// name). An invalid method or header is an [`Error::Transport`] naming it.
    pub fn with_request(mut self, method: &str, headers: &[(String, String)]) -> Result<Self, Error> {
        self.method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::Transport(format!("`{method}` is not an HTTP method")))?;
        for (name, value) in headers {
            let bad = || Error::Transport(format!("invalid HTTP header `{name}: {value}`"));
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let value = HeaderValue::from_str(value).map_err(|_| bad())?;
            self.headers.insert(name, value);
        }
        Ok(self)
    }

    pub(crate) async fn invoke(&self, payload: Bytes) -> Result<Response, Error> {
        let mut request = Request::new(Full::new(payload));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let timeout = self.timeout.unwrap_or(DEFAULT_INVOKE_TIMEOUT);
        let answer = crate::send(&self.pool, request, Some(timeout)).await?;
        http_answer(&self.url, answer.status, &answer.headers, Vec::from(answer.body), answer.total)
    }
}

/// Classifies a plain HTTP endpoint's answer by the status mapping of [`HttpTarget`]. `body` is what
/// was read of it, at most [`MAX_RESPONSE_BYTES`]; `total` is how many bytes the endpoint sent (more
/// than the limit when reading stopped there).
pub fn http_answer(
    url: &str,
    status: u16,
    headers: &HeaderMap,
    body: Vec<u8>,
    total: usize,
) -> Result<Response, Error> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let retry_after = header(RETRY_AFTER).as_deref().and_then(parse_retry_after);
    if (300..=399).contains(&status) {
        let location = header(LOCATION).unwrap_or_else(|| "none".to_owned());
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
            payload: crate::response_too_large(total),
            executed_version: None,
            log_tail: None,
            request_id: None,
        }),
        200..=299 => Ok(Response {
            status,
            function_error: None,
            payload: body,
            executed_version: None,
            log_tail: None,
            request_id: None,
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
            request_id: None,
        }),
    }
}

/// The `Reason` of a 429 body shaped like Lambda's (`{"Reason": "..."}`), if any.
fn throttle_reason(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("Reason")?.as_str().map(str::to_owned)
}
