//! A function behind the Lambda Invoke API, signed and sent directly.
//!
//! The request is the one the SDK builds (`POST /2015-03-31/functions/{FunctionName}/invocations`,
//! `?Qualifier=`, `X-Amz-Invocation-Type`, `X-Amz-Log-Type`, `application/octet-stream`), signed with
//! SigV4 as the SDK signs it for Lambda; a test checks both against the SDK's, byte for byte. Telemetry
//! headers the SDK adds (`amz-sdk-invocation-id`, `x-amz-user-agent`) are not sent. The answer is read
//! as the SDK's restJson1 parser reads it. <https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html>

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_lambda::error::SdkError;
use aws_wire::{Pool, Signer};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::Full;

use crate::{
    Error, FunctionConfiguration, InvocationType, MAX_RESPONSE_BYTES, Response, UNHANDLED, decode_log, excerpt,
    parse_retry_after, response_too_large, split_qualifier,
};

/// A function behind the Lambda Invoke API.
#[derive(Clone, Debug)]
pub struct LambdaTarget {
    /// For `GetFunctionConfiguration`, called once at start-up.
    client: aws_sdk_lambda::Client,
    pub(crate) function_name: String,
    pub(crate) qualifier: Option<String>,
    /// Bounds one invoke end to end, if given.
    timeout: Option<Duration>,
    /// What every invoke is built from, or why there is none (no region, an invalid endpoint): then
    /// every invoke fails with that reason, as every SDK call would.
    direct: Result<Arc<Direct>, String>,
}

/// The parts of an Invoke API request prepared once.
#[derive(Debug)]
struct Direct {
    /// The full URI as text, for signing (which reads the host from it).
    uri_text: String,
    uri: Uri,
    /// The `Host` header, signed and sent.
    host: HeaderValue,
    signer: Signer,
    pool: Pool,
}

const INVOCATION_TYPE: HeaderName = HeaderName::from_static("x-amz-invocation-type");
const LOG_TYPE: HeaderName = HeaderName::from_static("x-amz-log-type");

impl LambdaTarget {
    /// A target for `function_name` (name, ARN or partial ARN, optionally with `:qualifier`), using the
    /// shared AWS configuration (region, credentials). The endpoint is `endpoint_url` if given, else the
    /// one the SDK would use: `AWS_ENDPOINT_URL_LAMBDA`, the profile's, `AWS_ENDPOINT_URL`, else the
    /// region's. `timeout` bounds one invoke end to end; set it above the function's own timeout.
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
        let direct = Direct::new(sdk_config, endpoint_url, &function_name, qualifier.as_deref()).map(Arc::new);
        LambdaTarget {
            client: aws_sdk_lambda::Client::from_conf(builder.build()),
            function_name,
            qualifier,
            timeout,
            direct,
        }
    }

    /// The same target on an [`aws_wire::arrival_timing_pool`]: each answer's arrival is the
    /// kernel's receive time stamp (for a load generator's [`aws_wire::timed`]). For a target just
    /// made: its clones share the pool they were made with.
    pub fn with_arrival_times(mut self) -> Self {
        if let Ok(direct) = &mut self.direct
            && let Some(direct) = Arc::get_mut(direct)
        {
            direct.pool = aws_wire::arrival_timing_pool();
        }
        self
    }

    /// Fails, with the reason, if no invoke can succeed whatever the function does: no region, an
    /// invalid endpoint, no credentials. For a caller that wants to stop at start-up rather than count
    /// every invoke as a transport error.
    pub async fn check(&self) -> Result<(), Error> {
        let direct = self.direct()?;
        direct.signer.credentials().await.map_err(|e| Error::Transport(e.to_string()))?;
        Ok(())
    }

    fn direct(&self) -> Result<&Direct, Error> {
        self.direct.as_deref().map_err(|reason| Error::Transport(reason.clone()))
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
                    let err = ctx.into_err();
                    use aws_sdk_lambda::error::ProvideErrorMetadata;
                    let code = err.code().unwrap_or("Unknown").to_owned();
                    let message = excerpt(err.message().unwrap_or_default().as_bytes());
                    status_error(status, code, message)
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

    pub(crate) async fn invoke(
        &self,
        payload: Bytes,
        invocation_type: InvocationType,
        log_tail: bool,
    ) -> Result<Response, Error> {
        let direct = self.direct()?;
        let mut request = direct.request(payload.clone(), invocation_type, log_tail);
        direct
            .signer
            .sign(&mut request, &direct.uri_text, &payload)
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let answer = crate::send(&direct.pool, request, self.timeout).await?;
        invoke_answer(answer.status, &answer.headers, Vec::from(answer.body), answer.total)
    }
}

impl Direct {
    fn new(
        sdk: &aws_config::SdkConfig,
        given: Option<&str>,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<Direct, String> {
        let region = sdk
            .region()
            .ok_or("no AWS region configured (AWS_REGION or the profile's `region`)")?
            .to_string();
        let credentials = sdk.credentials_provider().ok_or("no AWS credentials provider")?;
        let endpoint = endpoint(sdk, given, &region)?;
        let mut uri_text = format!(
            "{}/2015-03-31/functions/{}/invocations",
            endpoint.trim_end_matches('/'),
            aws_smithy_http::label::fmt_string(name, aws_smithy_http::label::EncodingStrategy::Default)
        );
        if let Some(qualifier) = qualifier {
            uri_text.push_str("?Qualifier=");
            uri_text.push_str(&aws_smithy_http::query::fmt_string(qualifier));
        }
        let uri: Uri = uri_text
            .parse()
            .map_err(|e| format!("Lambda endpoint `{endpoint}`: {e}"))?;
        let host = aws_wire::host(&uri).ok_or_else(|| format!("Lambda endpoint `{endpoint}`: no host"))?;
        Ok(Direct {
            uri_text,
            uri,
            host,
            signer: Signer::new("lambda", region, credentials),
            pool: aws_wire::pool(),
        })
    }

    /// The request as the SDK builds it, unsigned.
    fn request(&self, payload: Bytes, invocation_type: InvocationType, log_tail: bool) -> Request<Full<Bytes>> {
        let length = payload.len();
        let mut request = Request::new(Full::new(payload));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        // Room for these five and the signature's three, so that signing does not grow the map.
        let headers = request.headers_mut();
        *headers = HeaderMap::with_capacity(8);
        headers.insert(HOST, self.host.clone());
        headers.insert(INVOCATION_TYPE, HeaderValue::from_static(invocation_type.as_str()));
        headers.insert(LOG_TYPE, HeaderValue::from_static(if log_tail { "Tail" } else { "None" }));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        request
    }
}

/// The Invoke API's endpoint (scheme and authority), found where the SDK looks for it: `given`, the
/// configured endpoint (<https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html>),
/// else the SDK's own resolver for the region (FIPS and dual-stack as configured).
fn endpoint(sdk: &aws_config::SdkConfig, given: Option<&str>, region: &str) -> Result<String, String> {
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
        .map_err(|e| format!("Lambda endpoint: {e}"))?;
    // The SDK's resolver computes the endpoint without waiting on anything: its future is ready
    // when made, and is polled once here so that building a target stays synchronous.
    let resolver = DefaultResolver::new();
    let mut future = std::pin::pin!(resolver.resolve_endpoint(&params));
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(Ok(endpoint)) => Ok(endpoint.url().to_owned()),
        std::task::Poll::Ready(Err(e)) => Err(format!("Lambda endpoint: {e}")),
        std::task::Poll::Pending => Err("Lambda endpoint: the resolver did not answer at once".to_owned()),
    }
}

/// An error status of the Lambda API as an [`Error`]: 429 throttle, 5xx service error, other client
/// error.
fn status_error(status: u16, code: String, message: String) -> Error {
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

/// Classifies an Invoke API answer as the SDK does: 2xx is the function's response
/// (`X-Amz-Function-Error`, `X-Amz-Log-Result`, `X-Amz-Executed-Version`; a body over
/// [`MAX_RESPONSE_BYTES`] is Lambda's `Function.ResponseSizeTooLarge`); an error status is a throttle
/// (429 `TooManyRequestsException`, with the body's `Reason` and the `Retry-After` header), a service
/// error (5xx) or a client error, with the error code from `X-Amzn-ErrorType` or the body's
/// `code`/`__type`, as the SDK's restJson1 parser reads it.
fn invoke_answer(status: u16, headers: &HeaderMap, body: Vec<u8>, total: usize) -> Result<Response, Error> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if (200..300).contains(&status) {
        if total > MAX_RESPONSE_BYTES {
            return Ok(Response {
                status,
                function_error: Some(UNHANDLED.to_owned()),
                payload: response_too_large(total),
                executed_version: None,
                log_tail: None,
                request_id: header("x-amzn-requestid").map(str::to_owned),
            });
        }
        return Ok(Response {
            status,
            function_error: header("x-amz-function-error").map(str::to_owned),
            payload: body,
            executed_version: header("x-amz-executed-version").map(str::to_owned),
            log_tail: header("x-amz-log-result").map(decode_log),
            request_id: header("x-amzn-requestid").map(str::to_owned),
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
        .map(|raw| aws_wire::error_code(&raw).to_owned());
    if status == 429 && code.as_deref() == Some("TooManyRequestsException") {
        return Err(Error::Throttled {
            reason: field(&["Reason"]),
            retry_after: header("retry-after").and_then(parse_retry_after),
        });
    }
    let code = code.unwrap_or_else(|| "Unknown".to_owned());
    let message = if total > MAX_RESPONSE_BYTES {
        format!("error response of {total} bytes not read")
    } else {
        excerpt(field(&["message", "Message", "errorMessage"]).unwrap_or_default().as_bytes())
    };
    Err(status_error(status, code, message))
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
            aws_wire::error_code("TooManyRequestsException:http://internal.amazon.com/coral/"),
            "TooManyRequestsException"
        );
        assert_eq!(
            aws_wire::error_code("aws.lambda#ResourceNotFoundException"),
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
    use std::time::{Duration, UNIX_EPOCH};

    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_wire::testing::{
        assert_signature_is_sdks, capture_server, signed_headers, signed_headers_without_user_agent,
    };

    use aws_sdk_lambda::config::{BehaviorVersion, Region};
    use aws_sdk_lambda::primitives::Blob;
    use aws_sdk_lambda::types::{InvocationType as SdkType, LogType};
    use aws_smithy_async::time::StaticTimeSource;

    use super::*;

    /// The SDK signs telemetry headers of its own (`amz-sdk-invocation-id`, `amz-sdk-request`,
    /// `x-amz-user-agent`) that the direct path does not send, so the comparison is in two
    /// steps: (1) the direct path builds the SDK's request (method, path, query, every header
    /// Lambda reads); (2) given the SDK's exact headers, its signer produces the SDK's
    /// `Authorization` byte for byte, at the same time with the same (session) credentials.
    #[tokio::test]
    async fn the_request_and_its_signature_are_the_sdks() {
        let (endpoint, captured) = capture_server(200, &[], "{}").await;
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let credentials = aws_wire::testing::credentials();
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
        let captured = captured.lock().unwrap().pop().unwrap();
        let (uri, sdk_headers) = (&captured.uri, &captured.headers);
        assert_eq!(captured.body.as_ref(), payload);

        // (1) The same request.
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(credentials.clone()))
            .build();
        let target = |name: &str| LambdaTarget::new(&sdk, name, Some(&endpoint), None).direct.unwrap();
        let lambda = target("arn:aws:lambda:eu-west-1:123456789012:function:orders");
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
            "host",
            "x-amz-invocation-type",
            "x-amz-log-type",
            "content-type",
            "content-length",
        ] {
            assert_eq!(ours.headers().get(name), sdk_headers.get(name), "{name}");
        }
        assert_eq!(target("orders:live").uri.query(), uri.query());

        // (2) The same signature over the headers the SDK signed (it adds `amz-sdk-*` after
        // signing).
        let uri_text = format!("{endpoint}{}", uri.path_and_query().unwrap());
        assert_signature_is_sdks(&lambda.signer, &uri_text, &captured, &credentials);

        // And the direct path's own request signs the same headers, less the SDK's user agent.
        let mut ours = ours;
        lambda
            .signer
            .sign_with(&mut ours, &lambda.uri_text, payload, &credentials, time)
            .unwrap();
        assert_eq!(
            signed_headers(ours.headers()),
            signed_headers_without_user_agent(sdk_headers)
        );
    }
}
