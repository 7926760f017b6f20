//! Calls in the AWS JSON 1.0 protocol (SQS, among others), built and signed as the SDK builds them.
//!
//! Every call is `POST /` to the service endpoint with `X-Amz-Target: <Service>.<Action>`,
//! `Content-Type: application/x-amz-json-1.0` and the request's JSON as the body, signed with SigV4.
//! <https://smithy.io/2.0/aws/protocols/aws-json-1_0-protocol.html>
//! <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-making-api-requests-json.html>
//!
//! The parts every call shares (the endpoint's URI and its text for signing, the `Host` header, the
//! signer, the pool) are prepared once; what a caller does with the answer (retries, error codes)
//! stays its own.

use aws_credential_types::provider::SharedCredentialsProvider;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::Full;

use crate::{Answer, Error, Pool, Signer};

const X_AMZ_TARGET: HeaderName = HeaderName::from_static("x-amz-target");
const X_AMZN_QUERY_MODE: HeaderName = HeaderName::from_static("x-amzn-query-mode");
const JSON_1_0: HeaderValue = HeaderValue::from_static("application/x-amz-json-1.0");

/// One service endpoint spoken to in the AWS JSON 1.0 protocol, signed for one region.
#[derive(Debug)]
pub struct JsonService {
    /// The endpoint with path `/`, and as text for signing.
    uri: Uri,
    uri_text: String,
    /// The `Host` header of every request, formatted once.
    host: HeaderValue,
    signer: Signer,
    pool: Pool,
    query_mode: bool,
}

impl JsonService {
    /// The service at `endpoint` (its root: any path is replaced by `/`), signing as
    /// `signing_name` in `region` with `credentials`. Fails if `endpoint` is no absolute URL.
    pub fn new(
        endpoint: &str,
        signing_name: &'static str,
        region: &str,
        credentials: SharedCredentialsProvider,
    ) -> Result<JsonService, String> {
        let uri: Uri = format!("{}/", endpoint.trim_end_matches('/'))
            .parse()
            .map_err(|e| format!("endpoint `{endpoint}`: {e}"))?;
        let host = crate::host(&uri).ok_or_else(|| format!("endpoint `{endpoint}`: no host"))?;
        Ok(JsonService {
            uri_text: uri.to_string(),
            uri,
            host,
            signer: Signer::new(signing_name, region, credentials),
            pool: crate::pool(),
            query_mode: false,
        })
    }

    /// Also sends `x-amzn-query-mode: true`, as the SDK does for services that moved from the
    /// query protocol to JSON (SQS): the service then names errors by their query-protocol codes
    /// in `x-amzn-query-error` (`AWS.SimpleQueueService.NonExistentQueue;Sender`).
    pub fn query_compatible(mut self) -> JsonService {
        self.query_mode = true;
        self
    }

    /// The endpoint's root URL, ending in `/`.
    pub fn endpoint(&self) -> &str {
        &self.uri_text
    }

    /// The signer, for tests that compare its signatures with the SDK's.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Sends `body` as `action` (`X-Amz-Target`, e.g. `AmazonSQS.ReceiveMessage`) and reads at
    /// most `limit` bytes of the answer, whatever its status.
    pub async fn call(&self, action: &'static str, body: Bytes, limit: usize) -> Result<Answer, Error> {
        let mut request = self.unsigned(action, body.clone());
        self.signer.sign(&mut request, &self.uri_text, &body).await?;
        crate::send(&self.pool, request, limit).await
    }

    fn unsigned(&self, action: &'static str, body: Bytes) -> Request<Full<Bytes>> {
        let length = HeaderValue::from(body.len());
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, JSON_1_0);
        headers.insert(X_AMZ_TARGET, HeaderValue::from_static(action));
        if self.query_mode {
            headers.insert(X_AMZN_QUERY_MODE, HeaderValue::from_static("true"));
        }
        headers.insert(CONTENT_LENGTH, length);
        request
    }
}
