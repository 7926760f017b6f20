//! One SQS message as Lambda delivers it inside `{"Records":[...]}`.
//!
//! ```json
//! {"messageId":"059f36b4-87a3-44ab-83d2-661975830a7d","receiptHandle":"AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
//!  "body":"Test message.",
//!  "attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"1545082649183",
//!                "SenderId":"AIDAIENQZJOLO23YVJ4VO","ApproximateFirstReceiveTimestamp":"1545082649185"},
//!  "messageAttributes":{},"md5OfMessageAttributes":null,"md5OfBody":"e4e68fb7bd0e697a0ae8f1bb342846b3",
//!  "eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-2:123456789012:my-queue","awsRegion":"us-east-2"}
//! ```

use std::borrow::Cow;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::encoding::Base64;
use crate::json_str::JsonStr;

/// One message of an SQS invocation event.
///
/// Serializes with AWS's key order: `messageId`, `receiptHandle`, `body`, `attributes`,
/// `messageAttributes`, `md5OfMessageAttributes`, `md5OfBody`, `eventSource` (always `"aws:sqs"`),
/// `eventSourceARN`, `awsRegion`.
///
/// Its text borrows where it can (`Cow`): a poller builds it from the ReceiveMessage answer it has
/// just read and serializes it at once, so the message's fields need not be copied out of that
/// answer first, nor the queue's ARN and region into every record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsRecord<'a> {
    /// `MessageId` from ReceiveMessage; also the `itemIdentifier` of partial batch responses.
    pub message_id: Cow<'a, str>,
    /// `ReceiptHandle` of this receive.
    pub receipt_handle: JsonStr<'a>,
    /// The message body, passed through verbatim: read as a [`JsonStr`], its JSON string is copied
    /// into the event as read when that is what serde_json would write for it.
    pub body: JsonStr<'a>,
    /// The message system attributes.
    pub attributes: SqsAttributes<'a>,
    /// Message attributes in the order SQS returned them.
    pub message_attributes: Vec<(String, SqsMessageAttribute)>,
    /// `MD5OfMessageAttributes`; `None` is written as `null` (what AWS sent in most recordings).
    pub md5_of_message_attributes: Option<Cow<'a, str>>,
    /// `MD5OfBody`.
    pub md5_of_body: Cow<'a, str>,
    /// The queue ARN.
    pub event_source_arn: Cow<'a, str>,
    /// The queue's region, e.g. `us-east-2`.
    pub aws_region: Cow<'a, str>,
}

impl Serialize for SqsRecord<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            message_id: &'a str,
            receipt_handle: &'a JsonStr<'a>,
            body: &'a JsonStr<'a>,
            attributes: &'a SqsAttributes<'a>,
            message_attributes: MessageAttributes<'a>,
            md5_of_message_attributes: Option<&'a str>,
            md5_of_body: &'a str,
            event_source: &'static str,
            #[serde(rename = "eventSourceARN")]
            event_source_arn: &'a str,
            aws_region: &'a str,
        }
        Wire {
            message_id: &self.message_id,
            receipt_handle: &self.receipt_handle,
            body: &self.body,
            attributes: &self.attributes,
            message_attributes: MessageAttributes(&self.message_attributes),
            md5_of_message_attributes: self.md5_of_message_attributes.as_deref(),
            md5_of_body: &self.md5_of_body,
            event_source: "aws:sqs",
            event_source_arn: &self.event_source_arn,
            aws_region: &self.aws_region,
        }
        .serialize(serializer)
    }
}

/// The attribute list as a JSON object, keeping SQS's order.
struct MessageAttributes<'a>(&'a [(String, SqsMessageAttribute)]);

impl Serialize for MessageAttributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, attribute) in self.0 {
            map.serialize_entry(name, attribute)?;
        }
        map.end()
    }
}

/// Message system attributes, all strings as SQS returns them (timestamps are epoch-millisecond
/// strings).
///
/// Field order is the wire order, taken from AWS documentation examples and captured events:
/// `DeadLetterQueueSourceArn`?, `ApproximateReceiveCount`, `AWSTraceHeader`?, `SentTimestamp`,
/// `SequenceNumber`?, `MessageGroupId`?, `SenderId`, `MessageDeduplicationId`?,
/// `ApproximateFirstReceiveTimestamp`. Absent optional attributes are omitted, not `null`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SqsAttributes<'a> {
    /// Set when the message was moved here by a redrive policy.
    #[serde(
        rename = "DeadLetterQueueSourceArn",
        skip_serializing_if = "Option::is_none"
    )]
    pub dead_letter_queue_source_arn: Option<Cow<'a, str>>,
    /// Receives so far, including this one.
    #[serde(rename = "ApproximateReceiveCount")]
    pub approximate_receive_count: Cow<'a, str>,
    /// X-Ray trace header, when the sender was traced.
    #[serde(rename = "AWSTraceHeader", skip_serializing_if = "Option::is_none")]
    pub aws_trace_header: Option<Cow<'a, str>>,
    /// Epoch milliseconds, as a string.
    #[serde(rename = "SentTimestamp")]
    pub sent_timestamp: Cow<'a, str>,
    /// FIFO queues only.
    #[serde(rename = "SequenceNumber", skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<Cow<'a, str>>,
    /// FIFO queues, and standard queues used as fair queues.
    #[serde(rename = "MessageGroupId", skip_serializing_if = "Option::is_none")]
    pub message_group_id: Option<Cow<'a, str>>,
    /// IAM user or role id of the sender.
    #[serde(rename = "SenderId")]
    pub sender_id: Cow<'a, str>,
    /// FIFO queues only.
    #[serde(
        rename = "MessageDeduplicationId",
        skip_serializing_if = "Option::is_none"
    )]
    pub message_deduplication_id: Option<Cow<'a, str>>,
    /// Epoch milliseconds, as a string.
    #[serde(rename = "ApproximateFirstReceiveTimestamp")]
    pub approximate_first_receive_timestamp: Cow<'a, str>,
}

/// One message attribute, with the camelCase keys Lambda uses (unlike the SQS API).
///
/// Serializes as `{"stringValue":"6","stringListValues":[],"binaryListValues":[],"dataType":"Number"}`,
/// or with `binaryValue` (standard base64) in place of `stringValue` for binary attributes. The
/// list members are always empty: SQS reserves them and never fills them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsMessageAttribute {
    /// `String`, `Number`, `Binary`, optionally with a custom suffix (`Number.float`).
    pub data_type: String,
    /// The value; its variant decides between `stringValue` and `binaryValue`.
    pub value: SqsAttributeValue,
}

/// The value of a message attribute, as SQS returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqsAttributeValue {
    /// `StringValue`, used by `String*` and `Number*` data types.
    String(String),
    /// `BinaryValue` as raw bytes, used by `Binary*` data types.
    Binary(Vec<u8>),
}

impl SqsMessageAttribute {
    /// A `String` or `Number` attribute (or a custom subtype of either).
    pub fn string(data_type: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            data_type: data_type.into(),
            value: SqsAttributeValue::String(value.into()),
        }
    }

    /// A `Binary` attribute (or a custom subtype), from its raw bytes.
    pub fn binary(data_type: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            data_type: data_type.into(),
            value: SqsAttributeValue::Binary(value.into()),
        }
    }
}

impl Serialize for SqsMessageAttribute {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let empty: [&str; 0] = [];
        let mut map = serializer.serialize_map(Some(4))?;
        match &self.value {
            SqsAttributeValue::String(value) => map.serialize_entry("stringValue", value)?,
            SqsAttributeValue::Binary(bytes) => {
                map.serialize_entry("binaryValue", &Base64(bytes))?
            }
        }
        map.serialize_entry("stringListValues", &empty)?;
        map.serialize_entry("binaryListValues", &empty)?;
        map.serialize_entry("dataType", &self.data_type)?;
        map.end()
    }
}
