//! From a received SQS message to the record Lambda puts in the event.

use std::borrow::Cow;

use base64::Engine;
use esm_events::sqs::{SqsAttributes, SqsMessageAttribute, SqsRecord};

use crate::arn::ArnParts;
use crate::sqs::client::Message;

/// The event record for `message` read from `queue`.
///
/// Message attributes are ordered by name, as SQS orders them when it computes
/// `MD5OfMessageAttributes`. A binary value that is not base64 (SQS always sends base64) is kept
/// as its text's bytes rather than dropped.
pub(crate) fn to_record<'a>(message: Message<'a>, queue: &'a ArnParts) -> SqsRecord<'a> {
    let message_attributes = message
        .message_attributes
        .into_iter()
        .map(|(name, value)| {
            let attribute = match value.binary_value {
                Some(text) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(&text)
                        .unwrap_or_else(|_| text.into_bytes());
                    SqsMessageAttribute::binary(value.data_type, bytes)
                }
                None => SqsMessageAttribute::string(value.data_type, value.string_value.unwrap_or_default()),
            };
            (name, attribute)
        })
        .collect();
    let a = message.attributes;
    SqsRecord {
        message_id: message.message_id,
        receipt_handle: message.receipt_handle,
        body: message.body,
        attributes: SqsAttributes {
            dead_letter_queue_source_arn: a.dead_letter_queue_source_arn,
            approximate_receive_count: a.approximate_receive_count.unwrap_or_default(),
            aws_trace_header: a.aws_trace_header,
            sent_timestamp: a.sent_timestamp.unwrap_or_default(),
            sequence_number: a.sequence_number,
            message_group_id: a.message_group_id,
            sender_id: a.sender_id.unwrap_or_default(),
            message_deduplication_id: a.message_deduplication_id,
            approximate_first_receive_timestamp: a.approximate_first_receive_timestamp.unwrap_or_default(),
        },
        message_attributes,
        md5_of_message_attributes: message.md5_of_message_attributes,
        md5_of_body: message.md5_of_body,
        event_source_arn: Cow::Borrowed(&queue.arn),
        aws_region: Cow::Borrowed(&queue.region),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_field_in_aws_shape() {
        let message: Message = serde_json::from_str(
            r#"{"MessageId":"m-1","ReceiptHandle":"rh","MD5OfBody":"abc","Body":"{\"a\":1}",
                "Attributes":{"SenderId":"AIDA","SentTimestamp":"1545082649183","ApproximateReceiveCount":"2",
                  "ApproximateFirstReceiveTimestamp":"1545082649185","MessageGroupId":"g","Unknown":"x"},
                "MD5OfMessageAttributes":"def",
                "MessageAttributes":{"z":{"StringValue":"6","DataType":"Number"},"a":{"BinaryValue":"aGk=","DataType":"Binary"}}}"#,
        )
        .unwrap();
        let queue = crate::arn::SourceArn::parse("arn:aws:sqs:us-east-2:123456789012:q.fifo").unwrap();
        let json = serde_json::to_string(&to_record(message, queue.parts())).unwrap();
        assert_eq!(
            json,
            r#"{"messageId":"m-1","receiptHandle":"rh","body":"{\"a\":1}","attributes":{"ApproximateReceiveCount":"2","SentTimestamp":"1545082649183","MessageGroupId":"g","SenderId":"AIDA","ApproximateFirstReceiveTimestamp":"1545082649185"},"messageAttributes":{"a":{"binaryValue":"aGk=","stringListValues":[],"binaryListValues":[],"dataType":"Binary"},"z":{"stringValue":"6","stringListValues":[],"binaryListValues":[],"dataType":"Number"}},"md5OfMessageAttributes":"def","md5OfBody":"abc","eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-2:123456789012:q.fifo","awsRegion":"us-east-2"}"#
        );
    }

    /// moto's answer for a standard queue, as recorded, becomes the event record of Lambda's shape.
    #[test]
    fn a_recorded_answer_becomes_the_event_record() {
        let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sqs/testdata/receive-standard.json")).unwrap();
        let answer = crate::sqs::client::Received::from(bytes::Bytes::from(body));
        let message = answer.messages().unwrap().remove(0);
        let queue = crate::arn::SourceArn::parse("arn:aws:sqs:us-east-1:123456789012:rec").unwrap();
        let record = serde_json::to_value(to_record(message, queue.parts())).unwrap();
        assert_eq!(record["body"], "{\"a\":\"é\\n\"}");
        assert_eq!(record["attributes"]["SentTimestamp"], "1796062455456");
        assert_eq!(record["messageAttributes"]["b"]["binaryValue"], "aGk=");
        assert_eq!(record["messageAttributes"]["z"]["stringValue"], "6");
        assert_eq!(record["md5OfMessageAttributes"], "ad5ccff041817c64baa06072818a49f2");
    }
}
