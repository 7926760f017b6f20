//! The SQS calls made for every batch (ReceiveMessage, DeleteMessageBatch,
//! ChangeMessageVisibilityBatch), sent without the SDK.
//!
//! Measured in the poller (docs/benchmarks.md), the SDK's fixed cost per call (interceptors,
//! endpoint and identity resolution, type-erased configuration) was most of the CPU an SQS mapping
//! spent, far more than signing or parsing. These three calls are therefore sent as the SDK sends
//! them, from parts prepared once: the AWS JSON 1.0 protocol with the query-compatibility header
//! `x-amzn-query-mode: true` ([`aws_wire::JsonService`]), the same JSON body, signed with SigV4 for
//! `sqs`.
//! Answers are parsed straight into what the poller uses. Calls made once per mapping or per
//! redrive (GetQueueUrl, GetQueueAttributes, SendMessage) keep the SDK.
//! <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-making-api-requests-json.html>
//!
//! Like the SDK's standard retry mode, a call that got no answer, a 5xx or a throttling error is
//! made again, three attempts in all with jittered exponential backoff from 1 s, before the caller
//! sees the error. <https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html>

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use aws_wire::JsonService;
use bytes::Bytes;
use esm_events::json_str::JsonStr;
use serde::{Deserialize, Serialize};

use crate::answer::Text;
use crate::backoff::Backoff;

/// Largest answer read: ten messages of at most 1 MiB each, escaped in JSON (at most three
/// bytes of JSON per byte of text), with their attributes.
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// A request body's usual largest size: a batch call's ten receipt handles (SQS's are up to
/// about 1 KB) and the queue URL.
const REQUEST_BYTES: usize = 4096;
/// Attempts per call, as the SDK's standard retry mode makes.
const ATTEMPTS: u32 = 3;

const X_AMZN_QUERY_ERROR: &str = "x-amzn-query-error";

/// One queue's per-batch calls.
#[derive(Debug)]
pub(crate) struct SqsClient {
    queue_url: String,
    service: JsonService,
}

/// A message as ReceiveMessage returns it, its text borrowed from the answer ([`Received`]) where
/// the JSON has no escapes: most fields are copied once, into the event, not twice.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Message<'a> {
    #[serde(borrow)]
    pub message_id: Cow<'a, str>,
    /// Kept as read, like the body: a long string, copied into the event.
    #[serde(borrow)]
    pub receipt_handle: JsonStr<'a>,
    #[serde(rename = "MD5OfBody", borrow)]
    pub md5_of_body: Cow<'a, str>,
    /// Kept as read when it can be copied into the event unchanged ([`JsonStr`]).
    #[serde(borrow)]
    pub body: JsonStr<'a>,
    #[serde(default, borrow)]
    pub attributes: Attributes<'a>,
    #[serde(rename = "MD5OfMessageAttributes", default, borrow, deserialize_with = "borrowed")]
    pub md5_of_message_attributes: Option<Cow<'a, str>>,
    /// By name: SQS orders them so when it computes `MD5OfMessageAttributes`, and so does the event.
    #[serde(default)]
    pub message_attributes: BTreeMap<String, MessageAttribute>,
}

/// The system attributes Lambda puts in the event (the others are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Attributes<'a> {
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub dead_letter_queue_source_arn: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub approximate_receive_count: Option<Cow<'a, str>>,
    #[serde(rename = "AWSTraceHeader", default, borrow, deserialize_with = "borrowed")]
    pub aws_trace_header: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub sent_timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub sequence_number: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub message_group_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub sender_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub message_deduplication_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub approximate_first_receive_timestamp: Option<Cow<'a, str>>,
}

/// An optional text field borrowed from the answer where it can be ([`Text`]).
fn borrowed<'de: 'a, 'a, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<Text>::deserialize(deserializer)?.map(|text| text.0))
}

/// A message attribute; `BinaryValue` is base64 in the JSON protocol.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct MessageAttribute {
    pub data_type: String,
    pub string_value: Option<String>,
    pub binary_value: Option<String>,
}

/// What a batch call did per entry; entry ids are the indexes of the receipt handles given.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BatchResult {
    /// One per entry done (only counted: an entry either succeeded or failed).
    #[serde(default)]
    pub successful: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    pub failed: Vec<BatchFailure>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BatchFailure {
    pub id: String,
    /// The request was at fault (an invalid receipt handle): another attempt would fail too.
    pub sender_fault: bool,
    pub code: String,
    pub message: Option<String>,
}

/// Why a call failed, after its attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CallError {
    /// No answer (connection refused or reset, signing or credentials failed).
    NoAnswer(String),
    /// SQS answered with an error: its code (the query-compatible one, such as
    /// `AWS.SimpleQueueService.NonExistentQueue`, when SQS sends it) and message.
    Service { status: u16, code: String, message: String },
    /// A 2xx answer that is not the expected JSON.
    Unreadable(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NoAnswer(reason) => write!(f, "no answer: {reason}"),
            CallError::Service { status, code, message } => write!(f, "{code}: {message} (HTTP {status})"),
            CallError::Unreadable(reason) => write!(f, "unreadable answer: {reason}"),
        }
    }
}

impl CallError {
    /// Worth another attempt, as the SDK's standard retry mode judges: no answer, a 500, 502, 503 or
    /// 504, or a throttling error.
    fn transient(&self) -> bool {
        match self {
            CallError::NoAnswer(_) => true,
            CallError::Service { status, code, .. } => {
                matches!(status, 500 | 502 | 503 | 504) || is_throttling(code)
            }
            CallError::Unreadable(_) => false,
        }
    }
}

/// SQS's throttling codes (`RequestThrottled`, `ThrottlingException`, with or without the
/// query-compatible `AWS.SimpleQueueService.` prefix), and the SDK's generic ones.
fn is_throttling(code: &str) -> bool {
    let code = code.rsplit('.').next().unwrap_or(code);
    matches!(
        code,
        "RequestThrottled" | "Throttling" | "ThrottlingException" | "ThrottledException" | "TooManyRequestsException"
            | "RequestLimitExceeded" | "SlowDown"
    )
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveMessage<'a> {
    queue_url: &'a str,
    message_system_attribute_names: [&'a str; 1],
    message_attribute_names: [&'a str; 1],
    max_number_of_messages: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility_timeout: Option<i32>,
    wait_time_seconds: i32,
}

/// A ReceiveMessage answer, read whole; its messages borrow from it.
#[derive(Debug)]
pub(crate) struct Received(Bytes);

impl From<Bytes> for Received {
    fn from(body: Bytes) -> Received {
        Received(body)
    }
}

impl Received {
    /// The messages of a ReceiveMessage call's outcome: its answer's, or why there are none (the
    /// call failed, or its answer is not the expected JSON).
    pub(crate) fn messages_of(outcome: &Result<Received, CallError>) -> Result<Vec<Message<'_>>, CallError> {
        outcome.as_ref().map_err(CallError::clone).and_then(Received::messages)
    }

    /// The messages of the answer, in its order.
    pub(crate) fn messages(&self) -> Result<Vec<Message<'_>>, CallError> {
        #[derive(Default, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer<'a> {
            #[serde(default, borrow)]
            messages: Vec<Message<'a>>,
        }
        Ok(parse::<Answer>(&self.0)?.messages)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Batch<'a> {
    queue_url: &'a str,
    entries: Vec<Entry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Entry<'a> {
    /// The entry's index, written as the JSON string the API wants without a `String` per entry.
    #[serde(serialize_with = "as_text")]
    id: usize,
    receipt_handle: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility_timeout: Option<i32>,
}

fn as_text<S: serde::Serializer>(n: &usize, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(n)
}

fn entries<'a>(receipt_handles: impl IntoIterator<Item = &'a str>, visibility_timeout: Option<i32>) -> Vec<Entry<'a>> {
    receipt_handles
        .into_iter()
        .enumerate()
        .map(|(id, receipt_handle)| Entry {
            id,
            receipt_handle,
            visibility_timeout,
        })
        .collect()
}

impl SqsClient {
    /// The client for `queue_url` in `region`, with the endpoint and credentials `sdk` gives the
    /// SDK's SQS client (`AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`, the profile's, else SQS's
    /// default endpoint for the region).
    pub(crate) async fn new(sdk: &aws_config::SdkConfig, region: &str, queue_url: String) -> Result<SqsClient, String> {
        let credentials = sdk
            .credentials_provider()
            .ok_or("no AWS credentials provider is configured")?;
        let endpoint = endpoint(sdk, region).await?;
        SqsClient::at(&endpoint, region, credentials, queue_url)
    }

    fn at(
        endpoint: &str,
        region: &str,
        credentials: aws_credential_types::provider::SharedCredentialsProvider,
        queue_url: String,
    ) -> Result<SqsClient, String> {
        let service = JsonService::new(endpoint, "sqs", region, credentials)
            .map_err(|e| format!("SQS {e}"))?
            .query_compatible();
        Ok(SqsClient { queue_url, service })
    }

    /// ReceiveMessage: up to `max` messages (at most 10) with every system and message attribute,
    /// waiting up to `wait_seconds` (long poll); hidden for `visibility_timeout` rather than the
    /// queue's when given.
    pub(crate) async fn receive(
        &self,
        max: usize,
        wait_seconds: u64,
        visibility_timeout: Option<Duration>,
    ) -> Result<Received, CallError> {
        let body = ReceiveMessage {
            queue_url: &self.queue_url,
            message_system_attribute_names: ["All"],
            message_attribute_names: ["All"],
            max_number_of_messages: max as i32,
            visibility_timeout: visibility_timeout.map(|t| seconds(t.as_secs())),
            wait_time_seconds: seconds(wait_seconds),
        };
        self.call("AmazonSQS.ReceiveMessage", &body).await.map(Received::from)
    }

    /// DeleteMessageBatch of at most 10 receipt handles.
    pub(crate) async fn delete_batch(&self, receipt_handles: &[&str]) -> Result<BatchResult, CallError> {
        let body = Batch {
            queue_url: &self.queue_url,
            entries: entries(receipt_handles.iter().copied(), None),
        };
        parse(&self.call("AmazonSQS.DeleteMessageBatch", &body).await?)
    }

    /// ChangeMessageVisibilityBatch of at most 10 receipt handles to `timeout_secs`.
    pub(crate) async fn change_visibility_batch(
        &self,
        receipt_handles: &[impl AsRef<str>],
        timeout_secs: i32,
    ) -> Result<BatchResult, CallError> {
        let body = Batch {
            queue_url: &self.queue_url,
            entries: entries(receipt_handles.iter().map(AsRef::as_ref), Some(timeout_secs)),
        };
        parse(&self.call("AmazonSQS.ChangeMessageVisibilityBatch", &body).await?)
    }

    /// One call (`action` is its `X-Amz-Target`), with the SDK's attempts for transient failures;
    /// the body of its 2xx answer.
    async fn call(&self, action: &'static str, body: &impl Serialize) -> Result<Bytes, CallError> {
        // Room for a batch call of ten receipt handles: one allocation, not a vector doubled from
        // empty, and copied, some ten times while it is written.
        let mut bytes = Vec::with_capacity(REQUEST_BYTES);
        serde_json::to_writer(&mut bytes, body).expect("requests serialize");
        let body = Bytes::from(bytes);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(20));
        let mut attempt = 1;
        loop {
            match self.call_once(action, body.clone()).await {
                Err(e) if e.transient() && attempt < ATTEMPTS => {
                    tracing::debug!(action, error = %e, attempt, "SQS call failed; trying again");
                    attempt += 1;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                result => return result,
            }
        }
    }

    async fn call_once(&self, action: &'static str, body: Bytes) -> Result<Bytes, CallError> {
        let answer = self
            .service
            .call(action, body, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| CallError::NoAnswer(e.to_string()))?;
        if answer.cut(MAX_ANSWER_BYTES) {
            return Err(CallError::Unreadable(format!("longer than {MAX_ANSWER_BYTES} bytes")));
        }
        if !(200..300).contains(&answer.status) {
            return Err(service_error(answer.status, &answer.headers, &answer.body));
        }
        Ok(answer.body)
    }
}

/// Whole seconds as the API's integer; larger than any value SQS accepts when out of range.
fn seconds(s: u64) -> i32 {
    i32::try_from(s).unwrap_or(i32::MAX)
}

/// A 2xx answer's body; an empty body is the empty answer.
fn parse<'a, T: Deserialize<'a> + Default>(body: &'a [u8]) -> Result<T, CallError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    crate::answer::from_json(body).map_err(|e| CallError::Unreadable(e.to_string()))
}

/// The error of a non-2xx answer, read as the SDK reads it: the code from `x-amzn-query-error`
/// (`AWS.SimpleQueueService.NonExistentQueue;Sender`) when present, else `X-Amzn-Errortype` or the
/// body's `__type`/`code` without its namespace (`com.amazonaws.sqs#QueueDoesNotExist`); the
/// message from the body's `message` or `Message`.
/// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-json-faqs.html>
fn service_error(status: u16, headers: &http::HeaderMap, body: &[u8]) -> CallError {
    #[derive(Default, Deserialize)]
    struct ErrorBody {
        #[serde(rename = "__type")]
        kind: Option<String>,
        code: Option<String>,
        message: Option<String>,
        #[serde(rename = "Message")]
        message_capitalised: Option<String>,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let code = header(X_AMZN_QUERY_ERROR)
        .and_then(|v| v.split_once(';'))
        .map(|(code, _)| code.to_owned())
        .or_else(|| header("x-amzn-errortype").or(parsed.code.as_deref()).or(parsed.kind.as_deref()).map(|code| aws_wire::error_code(code).to_owned()))
        .unwrap_or_else(|| format!("HTTP {status}"));
    let message = parsed
        .message
        .or(parsed.message_capitalised)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    CallError::Service { status, code, message }
}

/// The endpoint the SDK's SQS client would use: the configured URL if any, else the SDK's own
/// rules for the region (FIPS, dual-stack).
async fn endpoint(sdk: &aws_config::SdkConfig, region: &str) -> Result<String, String> {
    use aws_sdk_sqs::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
    let params = Params::builder()
        .region(region)
        .use_fips(sdk.use_fips().unwrap_or(false))
        .use_dual_stack(sdk.use_dual_stack().unwrap_or(false))
        .set_endpoint(aws_wire::configured_endpoint(sdk, "SQS"))
        .build()
        .map_err(|e| format!("SQS endpoint: {e}"))?;
    let endpoint = DefaultResolver::new()
        .resolve_endpoint(&params)
        .await
        .map_err(|e| format!("SQS endpoint: {e}"))?;
    Ok(endpoint.url().to_owned())
}

#[cfg(test)]
mod tests;
