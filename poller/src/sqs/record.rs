//! From an SQS `Message` (SDK type) to the record Lambda puts in the event.

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName as Name};
use esm_events::sqs::{SqsAttributes, SqsMessageAttribute, SqsRecord};

use crate::arn::ArnParts;

/// The event record for `message` read from `queue`.
///
/// Message attributes are ordered by name: the SDK hands them over as a hash map, and SQS itself orders
/// them by name when it computes `MD5OfMessageAttributes`.
pub(crate) fn to_record(message: &Message, queue: &ArnParts) -> SqsRecord {
    let attr = |name: Name| {
        message
            .attributes()
            .and_then(|a| a.get(&name))
            .cloned()
    };
    let mut message_attributes: Vec<(String, SqsMessageAttribute)> = message
        .message_attributes()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            let data_type = value.data_type();
            let attribute = match value.binary_value() {
                Some(bytes) => SqsMessageAttribute::binary(data_type, bytes.as_ref()),
                None => SqsMessageAttribute::string(data_type, value.string_value().unwrap_or_default()),
            };
            (name.clone(), attribute)
        })
        .collect();
    message_attributes.sort_by(|a, b| a.0.cmp(&b.0));
    SqsRecord {
        message_id: message.message_id().unwrap_or_default().to_owned(),
        receipt_handle: message.receipt_handle().unwrap_or_default().to_owned(),
        body: message.body().unwrap_or_default().to_owned(),
        attributes: SqsAttributes {
            dead_letter_queue_source_arn: attr(Name::DeadLetterQueueSourceArn),
            approximate_receive_count: attr(Name::ApproximateReceiveCount).unwrap_or_default(),
            aws_trace_header: attr(Name::AwsTraceHeader),
            sent_timestamp: attr(Name::SentTimestamp).unwrap_or_default(),
            sequence_number: attr(Name::SequenceNumber),
            message_group_id: attr(Name::MessageGroupId),
            sender_id: attr(Name::SenderId).unwrap_or_default(),
            message_deduplication_id: attr(Name::MessageDeduplicationId),
            approximate_first_receive_timestamp: attr(Name::ApproximateFirstReceiveTimestamp)
                .unwrap_or_default(),
        },
        message_attributes,
        md5_of_message_attributes: message.md5_of_message_attributes().map(str::to_owned),
        md5_of_body: message.md5_of_body().unwrap_or_default().to_owned(),
        event_source_arn: queue.arn.clone(),
        aws_region: queue.region.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::MessageAttributeValue;

    #[test]
    fn maps_every_field_in_aws_shape() {
        let message = Message::builder()
            .message_id("m-1")
            .receipt_handle("rh")
            .body("{\"a\":1}")
            .md5_of_body("abc")
            .md5_of_message_attributes("def")
            .attributes(Name::ApproximateReceiveCount, "2")
            .attributes(Name::SentTimestamp, "1545082649183")
            .attributes(Name::SenderId, "AIDA")
            .attributes(Name::ApproximateFirstReceiveTimestamp, "1545082649185")
            .attributes(Name::MessageGroupId, "g")
            .message_attributes(
                "z",
                MessageAttributeValue::builder().data_type("Number").string_value("6").build().unwrap(),
            )
            .message_attributes(
                "a",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(b"hi".to_vec()))
                    .build()
                    .unwrap(),
            )
            .build();
        let queue = crate::arn::SourceArn::parse("arn:aws:sqs:us-east-2:123456789012:q.fifo").unwrap();
        let json = serde_json::to_string(&to_record(&message, queue.parts())).unwrap();
        assert_eq!(
            json,
            r#"{"messageId":"m-1","receiptHandle":"rh","body":"{\"a\":1}","attributes":{"ApproximateReceiveCount":"2","SentTimestamp":"1545082649183","MessageGroupId":"g","SenderId":"AIDA","ApproximateFirstReceiveTimestamp":"1545082649185"},"messageAttributes":{"a":{"binaryValue":"aGk=","stringListValues":[],"binaryListValues":[],"dataType":"Binary"},"z":{"stringValue":"6","stringListValues":[],"binaryListValues":[],"dataType":"Number"}},"md5OfMessageAttributes":"def","md5OfBody":"abc","eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-2:123456789012:q.fifo","awsRegion":"us-east-2"}"#
        );
    }
}
