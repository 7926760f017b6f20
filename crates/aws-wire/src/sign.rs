//! SigV4 on a request built by the caller.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use http::Request;

use crate::{CredentialsCache, Error};

/// Signs requests for one service in one region.
#[derive(Debug)]
pub struct Signer {
    /// The signing name (`lambda`, `sqs`, `kinesis`, …).
    service: &'static str,
    region: String,
    credentials: CredentialsCache,
}

impl Signer {
    pub fn new(
        service: &'static str,
        region: impl Into<String>,
        credentials: SharedCredentialsProvider,
    ) -> Signer {
        Signer {
            service,
            region: region.into(),
            credentials: CredentialsCache::new(credentials),
        }
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The current credentials; a caller asks once at start-up so that missing credentials fail
    /// there and not on every request.
    pub async fn credentials(&self) -> Result<Credentials, Error> {
        self.credentials.get().await
    }

    /// Adds the SigV4 headers (`Authorization`, `X-Amz-Date`, `X-Amz-Security-Token`) to `request`,
    /// signed now. `uri` is the request's URI as text (the caller keeps it, so it is not formatted
    /// per request) and `body` its body.
    pub async fn sign<B>(&self, request: &mut Request<B>, uri: &str, body: &[u8]) -> Result<(), Error> {
        let credentials = self.credentials.get().await?;
        self.sign_with(request, uri, body, &credentials, SystemTime::now())
    }

    /// [`Signer::sign`] with given credentials and time.
    pub fn sign_with<B>(
        &self,
        request: &mut Request<B>,
        uri: &str,
        body: &[u8],
        credentials: &Credentials,
        time: SystemTime,
    ) -> Result<(), Error> {
        let identity = credentials.clone().into();
        let params = SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Error::Signing(e.to_string()))?
            .into();
        let headers = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let signable = SignableRequest::new(
            request.method().as_str(),
            uri,
            headers,
            SignableBody::Bytes(body),
        )
        .map_err(|e| Error::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| Error::Signing(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// The `get-vanilla` case of AWS's SigV4 test suite (service `service`, region `us-east-1`,
    /// 2015-08-30T12:36:00Z), whose signature AWS publishes.
    /// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>
    #[test]
    fn the_aws_test_suite_vanilla_request_signs_as_published() {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let signer = Signer::new("service", "us-east-1", SharedCredentialsProvider::new(credentials.clone()));
        let mut request = Request::get("https://example.amazonaws.com/")
            .header("host", "example.amazonaws.com")
            .body(())
            .unwrap();
        let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        signer
            .sign_with(&mut request, "https://example.amazonaws.com/", b"", &credentials, time)
            .unwrap();
        assert_eq!(
            request.headers()["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(request.headers()["x-amz-date"], "20150830T123600Z");
    }
}
