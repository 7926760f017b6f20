//! Signed AWS requests without the SDK's per-call machinery.
//!
//! The AWS SDK runs, for every call, an interceptor chain, endpoint and identity resolution, a
//! retry layer and type-erased configuration lookups; measured in the poller and in loadgen
//! (docs/benchmarks.md), that fixed cost was most of the CPU spent per call, far more than signing
//! or parsing. The calls made once per record batch or per load-test request are therefore sent
//! from parts prepared once:
//!
//! * [`Signer`]: SigV4 for one service and region, with credentials from any provider (the default
//!   chain included) resolved once and again only shortly before they expire ([`CredentialsCache`]);
//! * [`pool`]: a keep-alive pool of hyper HTTP/1.1 connections for `http://` and `https://` (rustls,
//!   the system's roots), lighter per request than hyper-util's pooling client;
//! * [`send`]: sends a request and reads at most a given number of bytes of the answer;
//! * [`timed`]: when that request and its answer met the socket ([`Exchange`]), for a load generator;
//! * [`JsonService`]: calls in the AWS JSON 1.0 protocol (SQS), built and signed as the SDK does.
//!
//! The signature is aws-sigv4's with its default settings, the ones the SDK uses for every service
//! except S3 (double percent-encoding, normalised path, no `x-amz-content-sha256`, session token
//! signed). <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-signing-request.html>

mod credentials;
mod endpoint;
mod json;
#[cfg(target_os = "linux")]
mod rx_stamp;
mod send;
mod sign;
#[cfg(feature = "test-support")]
pub mod testing;

pub use credentials::CredentialsCache;
pub use endpoint::configured_endpoint;
pub use json::JsonService;
pub use send::{Answer, Exchange, Pool, arrival_timing_pool, host, pool, send, timed};
pub use sign::Signer;

/// Why a request was not sent or got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No credentials from the provider chain.
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    /// The request could not be signed (an invalid header value, an invalid URI).
    #[error("signing: {0}")]
    Signing(String),
    /// TLS could not be set up (no usable root certificates).
    #[error("TLS setup: {0}")]
    Tls(String),
    /// No answer: connection refused or reset, or the body could not be read.
    #[error("{0}")]
    Transport(String),
}

/// An error code as the SDKs read it from `X-Amzn-Errortype` or a body's `__type`/`code`: without
/// the namespace before `#` and the URL after `:`
/// (`aws.protocoltests.restjson#FooError:http://internal.amazon.com/…` → `FooError`).
/// <https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html#operation-error-serialization>
pub fn error_code(raw: &str) -> &str {
    let code = raw.split(':').next().unwrap_or(raw);
    code.rsplit('#').next().unwrap_or(code)
}

/// The full text of an error and its sources: hyper and rustls keep the useful part (`Too many
/// open files`, `connection refused`, a certificate problem) in `source()`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_code;

    #[test]
    fn error_codes_lose_their_namespace_and_url() {
        assert_eq!(error_code("TooManyRequestsException:http://internal.amazon.com/coral/"), "TooManyRequestsException");
        assert_eq!(error_code("aws.lambda#ResourceNotFoundException"), "ResourceNotFoundException");
        assert_eq!(error_code("com.amazonaws.sqs#QueueDoesNotExist:http://x"), "QueueDoesNotExist");
        assert_eq!(error_code("ExpiredIteratorException"), "ExpiredIteratorException");
    }
}
