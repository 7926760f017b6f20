//! Kinesis GetRecords sent directly: the one call a busy shard makes several times a second.
//!
//! Through the AWS SDK, most of a GetRecords call's CPU went to its per-call machinery and to
//! deserializing every record into owned SDK types (a `Blob` decoded from base64 that the event
//! then encodes again, a `DateTime`, a `String` per field). Here the request is built from parts
//! prepared once, signed with `aws-wire` (SigV4 as the SDK signs it), and the answer is parsed with
//! serde straight from its body, borrowing every string: a record's base64 `Data` goes into the
//! event as it came, never decoded. The other, rare calls (ListShards, GetShardIterator, …) stay
//! on the SDK.
//!
//! The protocol is AWS JSON 1.1: `POST /`, `X-Amz-Target: Kinesis_20131202.GetRecords`.
//! <https://docs.aws.amazon.com/kinesis/latest/APIReference/API_GetRecords.html>
//! <https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html>

use std::borrow::Cow;

use aws_sdk_kinesis::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

use super::source::{ReadError, classify};
use crate::answer::Text;
use crate::arn::ArnParts;
use crate::error::Error;

const TARGET: &str = "x-amz-target";
const ERROR_TYPE: &str = "x-amzn-errortype";

/// Largest answer read: a GetRecords call returns at most 10 MiB of data, which base64 makes
/// 13.4 MiB, plus each record's other fields.
const MAX_ANSWER: usize = 32 << 20;

/// GetRecords for one stream, through one connection pool.
#[derive(Debug)]
pub(super) struct GetRecords {
    pool: aws_wire::Pool,
    signer: aws_wire::Signer,
    uri: Uri,
    /// `uri` as text, for signing.
    uri_text: String,
    stream_arn: String,
}

/// The request body, members in the SDK's order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Input<'a> {
    shard_iterator: &'a str,
    limit: i32,
    #[serde(rename = "StreamARN")]
    stream_arn: &'a str,
}

impl GetRecords {
    /// GetRecords at the endpoint the SDK would use for this stream (the configured endpoint URL,
    /// else Kinesis's account-specific data endpoint), signed with the SDK's credentials.
    pub(super) async fn new(sdk: &aws_config::SdkConfig, stream: &ArnParts) -> Result<GetRecords, Error> {
        let failed = |what: &str, e: &dyn std::fmt::Display| Error::Source(format!("{}: {what}: {e}", stream.arn));
        let params = Params::builder()
            .region(&stream.region)
            .use_fips(sdk.use_fips().unwrap_or(false))
            .use_dual_stack(sdk.use_dual_stack().unwrap_or(false))
            .set_endpoint(aws_wire::configured_endpoint(sdk, "Kinesis"))
            .stream_arn(&stream.arn)
            .operation_type("data")
            .build()
            .map_err(|e| failed("Kinesis endpoint", &e))?;
        // Through the trait: the resolver's inherent method of that name is private.
        let endpoint = ResolveEndpoint::resolve_endpoint(&DefaultResolver::new(), &params)
            .await
            .map_err(|e| failed("Kinesis endpoint", &e))?;
        let uri_text = format!("{}/", endpoint.url().trim_end_matches('/'));
        let uri = uri_text.parse().map_err(|e| failed("Kinesis endpoint", &e))?;
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| Error::Source(format!("{}: no AWS credentials provider", stream.arn)))?;
        Ok(GetRecords {
            pool: aws_wire::pool(),
            signer: aws_wire::Signer::new("kinesis", &stream.region, credentials),
            uri,
            uri_text,
            stream_arn: stream.arn.clone(),
        })
    }

    /// The request as the SDK builds it, unsigned, and its body.
    fn request(&self, iterator: &str, limit: i32) -> (Request<Full<Bytes>>, Bytes) {
        let input = Input { shard_iterator: iterator, limit, stream_arn: &self.stream_arn };
        let body = Bytes::from(serde_json::to_vec(&input).expect("strings and a number serialize"));
        let mut request = Request::new(Full::new(body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
        headers.insert(HeaderName::from_static(TARGET), HeaderValue::from_static("Kinesis_20131202.GetRecords"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        (request, body)
    }

    /// One call; the body of a successful answer, to be read with [`parse`].
    pub(super) async fn call(&self, iterator: &str, limit: i32) -> Result<Bytes, ReadError> {
        let (mut request, body) = self.request(iterator, limit);
        let other = |e: aws_wire::Error| ReadError::Other(format!("GetRecords: {e}"));
        self.signer.sign(&mut request, &self.uri_text, &body).await.map_err(other)?;
        let answer = aws_wire::send(&self.pool, request, MAX_ANSWER).await.map_err(other)?;
        if answer.cut(MAX_ANSWER) {
            return Err(ReadError::Other(format!(
                "GetRecords: the answer ({} bytes) is longer than {MAX_ANSWER} bytes",
                answer.total
            )));
        }
        if answer.status == 200 {
            Ok(answer.body)
        } else {
            Err(error(answer.status, &answer.headers, &answer.body))
        }
    }
}

/// A GetRecords answer, borrowing from its body.
/// <https://docs.aws.amazon.com/kinesis/latest/APIReference/API_GetRecords.html#API_GetRecords_ResponseSyntax>
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Answer<'a> {
    #[serde(borrow, default)]
    pub(super) records: Vec<WireRecord<'a>>,
    /// Absent once a closed shard has been read to its end.
    pub(super) next_shard_iterator: Option<String>,
    pub(super) millis_behind_latest: Option<i64>,
}

/// One record of a GetRecords answer. Its strings borrow from the body unless they hold JSON
/// escapes.
/// <https://docs.aws.amazon.com/kinesis/latest/APIReference/API_Record.html>
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireRecord<'a> {
    #[serde(borrow)]
    pub(super) sequence_number: Cow<'a, str>,
    /// Epoch seconds with a fraction, a JSON number (`1.545084650987E9`).
    pub(super) approximate_arrival_timestamp: Option<f64>,
    /// Base64, as the event carries it.
    #[serde(borrow)]
    pub(super) data: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) partition_key: Option<Text<'a>>,
}

/// Reads a successful answer's body.
pub(super) fn parse(body: &[u8]) -> Result<Answer<'_>, ReadError> {
    crate::answer::from_json(body).map_err(|e| ReadError::Other(format!("GetRecords: unreadable answer: {e}")))
}

/// A failed call's error, classified by its code the way the SDK finds it for AWS JSON: the
/// `X-Amzn-Errortype` header, else the body's `__type` or `code`, with any `namespace#` prefix
/// and `:…` suffix removed.
/// <https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html#operation-error-serialization>
fn error(status: u16, headers: &HeaderMap, body: &[u8]) -> ReadError {
    #[derive(Deserialize, Default)]
    struct ErrorBody<'a> {
        #[serde(rename = "__type", borrow)]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        code: Option<Cow<'a, str>>,
        #[serde(alias = "Message", borrow)]
        message: Option<Cow<'a, str>>,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = headers
        .get(ERROR_TYPE)
        .and_then(|v| v.to_str().ok())
        .or(parsed.kind.as_deref())
        .or(parsed.code.as_deref())
        .map(aws_wire::error_code)
        .filter(|code| !code.is_empty());
    let detail = match (code, parsed.message.as_deref()) {
        (Some(code), Some(message)) => format!("GetRecords: {code}: {message}"),
        (Some(code), None) => format!("GetRecords: {code}"),
        (None, _) => format!("GetRecords: HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])),
    };
    classify(code, detail)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use aws_credential_types::Credentials;
    use aws_sdk_kinesis::config::{BehaviorVersion, Region};
    use aws_smithy_async::time::StaticTimeSource;
    use aws_wire::testing::{assert_signature_is_sdks, capture_server, signed_headers, signed_headers_without_user_agent};

    use super::*;

    /// A GetRecords answer moto 5.2.5 sent (two records, a JSON and a text payload; the iterator
    /// shortened).
    const MOTO_ANSWER: &str = r#"{"Records": [{"Data": "eyJ0eXBlIjoiY2xpY2siLCJuIjowfQ==", "PartitionKey": "k0", "SequenceNumber": "49669438063416064786393932137567476497598416364466176002", "ApproximateArrivalTimestamp": 1764520465.382963}, {"Data": "aGVsbG8=", "PartitionKey": "k1", "SequenceNumber": "49669438063416064786393932137568685423418030993640882178", "ApproximateArrivalTimestamp": 1764520465.383121}], "MillisBehindLatest": 0, "NextShardIterator": "AAAAAAAAAAGmZnkX0zNd+XYdCsUmRl5TsHYrDu0Iw9HFPVxNhQ=="}"#;

    #[test]
    fn an_answer_is_read_borrowing_its_strings() {
        let answer = parse(MOTO_ANSWER.as_bytes()).unwrap();
        assert_eq!(answer.records.len(), 2);
        let first = &answer.records[0];
        assert!(matches!(first.data, Cow::Borrowed("eyJ0eXBlIjoiY2xpY2siLCJuIjowfQ==")));
        assert!(matches!(first.sequence_number, Cow::Borrowed(_)));
        assert!(matches!(first.partition_key, Some(Text(Cow::Borrowed("k0")))));
        assert_eq!(first.approximate_arrival_timestamp, Some(1764520465.382963));
        assert_eq!(answer.millis_behind_latest, Some(0));
        assert_eq!(answer.next_shard_iterator.as_deref(), Some("AAAAAAAAAAGmZnkX0zNd+XYdCsUmRl5TsHYrDu0Iw9HFPVxNhQ=="));
    }

    #[test]
    fn an_answer_as_aws_writes_it_is_read() {
        // AWS's own example: scientific notation, EncryptionType, no NextShardIterator (the end of
        // a closed shard), an escaped slash in the data.
        let body = r#"{"MillisBehindLatest":2100,"Records":[{"Data":"XzxkYXRhPl8w\/w==","PartitionKey":"partitionKey","ApproximateArrivalTimestamp":1.441215410867E9,"SequenceNumber":"21269319989652663814458848515492872193","EncryptionType":"NONE"}]}"#;
        let answer = parse(body.as_bytes()).unwrap();
        assert_eq!(answer.records[0].data, "XzxkYXRhPl8w/w==");
        assert_eq!(answer.records[0].approximate_arrival_timestamp, Some(1_441_215_410.867));
        assert_eq!(answer.next_shard_iterator, None);
        let empty = parse(br#"{"Records":[],"NextShardIterator":"it","MillisBehindLatest":0}"#).unwrap();
        assert!(empty.records.is_empty());
    }

    #[test]
    fn an_unreadable_answer_is_an_error_naming_the_call() {
        let err = parse(b"<html>").unwrap_err();
        assert!(matches!(&err, ReadError::Other(m) if m.starts_with("GetRecords: unreadable answer")), "{err}");
    }

    #[test]
    fn errors_are_classified_by_their_code() {
        let headers = HeaderMap::new();
        let kind = |status, headers: &HeaderMap, body: &str| match error(status, headers, body.as_bytes()) {
            ReadError::Throttled(m) => format!("throttled {m}"),
            ReadError::ExpiredIterator => "expired".to_owned(),
            ReadError::Trimmed(m) => format!("trimmed {m}"),
            ReadError::NotFound(m) => format!("not found {m}"),
            ReadError::Other(m) => format!("other {m}"),
        };
        // As moto and AWS send them.
        assert_eq!(
            kind(400, &headers, r#"{"__type": "ExpiredIteratorException", "message": "Iterator expired"}"#),
            "expired"
        );
        assert_eq!(
            kind(400, &headers, r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard"}"#),
            "throttled GetRecords: ProvisionedThroughputExceededException: Rate exceeded for shard"
        );
        assert_eq!(
            kind(400, &headers, r#"{"__type":"com.amazonaws.kinesis#ResourceNotFoundException","Message":"Stream s not found"}"#),
            "not found GetRecords: ResourceNotFoundException: Stream s not found"
        );
        let mut typed = HeaderMap::new();
        typed.insert(ERROR_TYPE, HeaderValue::from_static("KMSThrottlingException:http://internal.amazon.com/coral/"));
        assert_eq!(kind(400, &typed, "{}"), "throttled GetRecords: KMSThrottlingException");
        assert_eq!(kind(500, &headers, "Internal Server Error"), "other GetRecords: HTTP 500: Internal Server Error");
        assert_eq!(
            kind(500, &headers, r#"{"__type":"InternalFailure"}"#),
            "other GetRecords: InternalFailure"
        );
    }

    /// The SDK signs telemetry headers of its own (`amz-sdk-invocation-id`, `amz-sdk-request`,
    /// `x-amz-user-agent`) that the direct call does not send, so the comparison is in two steps:
    /// (1) the direct call builds the SDK's request (method, path, body, every header Kinesis reads);
    /// (2) given the SDK's exact headers, its signer produces the SDK's `Authorization` byte for byte,
    /// at the same time with the same (session) credentials.
    #[tokio::test]
    async fn the_request_and_its_signature_are_the_sdks() {
        let (endpoint, captured) = capture_server(
            200,
            &[("content-type", "application/x-amz-json-1.1")],
            r#"{"Records":[],"NextShardIterator":"next","MillisBehindLatest":0}"#,
        )
        .await;
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let credentials = aws_wire::testing::credentials();
        let stream = ArnParts {
            arn: "arn:aws:kinesis:eu-west-1:123456789012:stream/orders".to_owned(),
            region: "eu-west-1".to_owned(),
            account: "123456789012".to_owned(),
            name: "orders".to_owned(),
        };
        let iterator = "AAAAAAAAAAGmZnkX0zNd+XYdCsUmRl5TsHYrDu0Iw9HFPVxNhQ==";
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(credentials.clone())
            .endpoint_url(&endpoint)
            .time_source(StaticTimeSource::new(time))
            .build();
        aws_sdk_kinesis::Client::from_conf(config)
            .get_records()
            .stream_arn(&stream.arn)
            .shard_iterator(iterator)
            .limit(500)
            .send()
            .await
            .unwrap();
        let captured = captured.lock().unwrap().pop().unwrap();
        let (uri, sdk_headers, sdk_body) = (&captured.uri, &captured.headers, &captured.body);

        // (1) The same request.
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(credentials.clone()))
            .endpoint_url(&endpoint)
            .build();
        let direct = GetRecords::new(&sdk, &stream).await.unwrap();
        let (ours, body) = direct.request(iterator, 500);
        assert_eq!(body, *sdk_body);
        assert_eq!(*ours.method(), Method::POST);
        assert_eq!(ours.uri().path_and_query(), uri.path_and_query());
        for name in ["content-type", "x-amz-target", "content-length"] {
            assert_eq!(ours.headers().get(name), sdk_headers.get(name), "{name}");
        }

        // (2) The same signature over the headers the SDK signed.
        assert_signature_is_sdks(&direct.signer, &direct.uri_text, &captured, &credentials);

        // And the direct call's own request signs the same headers, less the SDK's user agent.
        let (mut ours, body) = direct.request(iterator, 500);
        direct.signer.sign_with(&mut ours, &direct.uri_text, &body, &credentials, time).unwrap();
        assert_eq!(signed_headers(ours.headers()), signed_headers_without_user_agent(sdk_headers));

        // And it is answered.
        let answer = direct.call(iterator, 500).await.unwrap();
        assert_eq!(parse(&answer).unwrap().next_shard_iterator.as_deref(), Some("next"));
    }

    #[tokio::test]
    async fn without_an_endpoint_url_the_sdks_account_endpoint_is_used() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new("AKID", "SECRET", None, None, "test")))
            .build();
        let stream = ArnParts {
            arn: "arn:aws:kinesis:eu-west-1:123456789012:stream/orders".to_owned(),
            region: "eu-west-1".to_owned(),
            account: "123456789012".to_owned(),
            name: "orders".to_owned(),
        };
        let direct = GetRecords::new(&sdk, &stream).await.unwrap();
        assert_eq!(direct.uri_text, "https://123456789012.data-kinesis.eu-west-1.amazonaws.com/");
    }
}
