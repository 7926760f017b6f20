//! Compatibility with `aws_lambda_events`, the event types most Rust Lambda functions use.
//!
//! Our events must deserialize into its `SqsEvent`, `KinesisEvent` and `dynamodb::Event` with the
//! values a function would read, and the responses such functions build from its response types
//! must be classified the way AWS classifies them. The crate is a dev-dependency only; it never
//! produces or parses our wire JSON (see docs/event-shapes.md).

mod common;

use std::collections::HashSet;

use aws_lambda_events::dynamodb;
use aws_lambda_events::kinesis::{KinesisEvent, KinesisTimeWindowEvent};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_lambda_events::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use esm_events::envelope::{Envelope, TumblingWindow};
use esm_events::response::{BatchResponse, parse_batch_response};
use serde_json::{Map, Value, json};

#[test]
fn sqs_event_reads_back_through_aws_lambda_events() {
    let records = common::sqs_standard_records();
    let event: SqsEvent = serde_json::from_slice(&common::records_event(&records)).unwrap();
    assert_eq!(event.records.len(), records.len());

    let plain = &event.records[0];
    assert_eq!(
        plain.message_id.as_deref(),
        Some(records[0].message_id.as_ref())
    );
    assert_eq!(plain.body.as_deref(), Some("Test message."));
    assert_eq!(plain.md5_of_message_attributes, None);
    assert_eq!(plain.event_source.as_deref(), Some("aws:sqs"));
    assert_eq!(plain.attributes["ApproximateReceiveCount"], "1");
    assert!(plain.message_attributes.is_empty());

    let rich = &event.records[1];
    assert_eq!(rich.body.as_deref(), Some(r#"{"foo": "bar"}"#));
    assert_eq!(
        rich.attributes["DeadLetterQueueSourceArn"],
        "arn:aws:sqs:us-east-2:123456789012:my-source-queue"
    );
    assert_eq!(rich.attributes.len(), 6);
    let population = &rich.message_attributes["Population"];
    assert_eq!(population.string_value.as_deref(), Some("1250800"));
    assert_eq!(population.data_type.as_deref(), Some("Number"));
    assert!(population.binary_value.is_none());
    let greeting = &rich.message_attributes["Greeting"];
    assert_eq!(greeting.binary_value.as_ref().unwrap().0, b"Hello, World!");
    assert!(greeting.string_value.is_none());
    assert!(greeting.string_list_values.is_empty() && greeting.binary_list_values.is_empty());
}

#[test]
fn fifo_attributes_read_back() {
    let event: SqsEvent =
        serde_json::from_slice(&common::records_event(&common::sqs_fifo_records())).unwrap();
    let attributes = &event.records[0].attributes;
    assert_eq!(attributes["MessageGroupId"], "1");
    assert_eq!(attributes["SequenceNumber"], "18849496460467696128");
    assert_eq!(attributes["MessageDeduplicationId"], "1");
}

#[test]
fn kinesis_event_reads_back_through_aws_lambda_events() {
    let records = common::kinesis_records();
    let event: KinesisEvent = serde_json::from_slice(&common::records_event(&records)).unwrap();
    let data: [&[u8]; 2] = [b"Hello, this is a test.", b"This is only a test."];
    for ((theirs, ours), data) in event.records.iter().zip(&records).zip(data) {
        // The base64 text passed through decodes to the record's bytes.
        assert_eq!(theirs.kinesis.data.0, data);
        assert_eq!(theirs.kinesis.sequence_number, ours.sequence_number);
        assert_eq!(theirs.kinesis.partition_key, ours.partition_key);
        let arrival = theirs.kinesis.approximate_arrival_timestamp.0;
        assert_eq!(
            arrival.timestamp(),
            ours.approximate_arrival_ms.div_euclid(1000)
        );
        assert_eq!(
            theirs.event_id.as_deref(),
            Some(format!("{}:{}", ours.shard_id, ours.sequence_number).as_str())
        );
        assert_eq!(
            theirs.event_source_arn.as_deref(),
            Some(ours.event_source_arn)
        );
    }
    // Milliseconds survive when the fraction has three significant digits. aws_lambda_events 1.2.1
    // reads the digits after the point as a millisecond count (`.16` becomes 16 ms, not 160 ms)
    // whatever the sender wrote, since it re-prints the parsed f64; see docs/event-shapes.md.
    let arrival = event.records[0].kinesis.approximate_arrival_timestamp.0;
    assert_eq!(arrival.timestamp_millis(), 1_545_084_650_987);
}

#[test]
fn kinesis_tumbling_window_event_reads_back() {
    // aws_lambda_events types the window state as string-to-string, so this uses string values.
    let mut state = Map::new();
    state.insert("count".into(), Value::from("3"));
    let envelope = Envelope::tumbling_window(&TumblingWindow {
        start_ms: 1_607_497_440_000,
        end_ms: 1_607_497_560_000,
        state,
        shard_id: "shardId-000000000006".into(),
        event_source_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream".into(),
        is_final_invoke_for_window: true,
        is_window_terminated_early: false,
    })
    .unwrap();
    let record = serde_json::to_vec(&common::kinesis_window_record()).unwrap();
    let event: KinesisTimeWindowEvent =
        serde_json::from_slice(&envelope.payload(&[record])).unwrap();
    let window = &event.time_window_properties;
    assert_eq!(window.window.start.timestamp_millis(), 1_607_497_440_000);
    assert_eq!(window.window.end.timestamp_millis(), 1_607_497_560_000);
    assert_eq!(window.state["count"], "3");
    assert_eq!(window.shard_id.as_deref(), Some("shardId-000000000006"));
    assert!(window.is_final_invoke_for_window);
    assert_eq!(event.kinesis_event.records.len(), 1);
}

#[test]
fn dynamodb_event_reads_back_through_aws_lambda_events() {
    let records = common::dynamodb_records();
    let event: dynamodb::Event = serde_json::from_slice(&common::records_event(&records)).unwrap();
    for (theirs, ours) in event.records.iter().zip(&records) {
        assert_eq!(theirs.event_id, ours.event_id);
        assert_eq!(
            theirs
                .change
                .approximate_creation_date_time
                .timestamp_millis(),
            ours.approximate_creation_ms
        );
        assert_eq!(
            theirs.change.sequence_number.as_deref(),
            Some(ours.sequence_number.as_str())
        );
        assert_eq!(
            theirs.change.size_bytes,
            i64::try_from(ours.size_bytes).unwrap()
        );
        assert_eq!(
            serde_json::to_value(&theirs.change.keys).unwrap(),
            json!({"Id": {"N": "101"}})
        );
    }
    assert_eq!(event.records[0].event_name, "INSERT");
    assert_eq!(event.records[1].event_name, "MODIFY");
    let new_image = serde_json::to_value(&event.records[1].change.new_image).unwrap();
    assert_eq!(new_image["Message"], json!({"S": "This item has changed"}));
    assert!(event.records[0].change.old_image.is_empty());
    let ttl = event.records[2].user_identity.as_ref().unwrap();
    assert_eq!(
        (ttl.type_.as_str(), ttl.principal_id.as_str()),
        ("Service", "dynamodb.amazonaws.com")
    );
}

/// What a Rust function built with aws_lambda_events returns, as our parser reads it.
#[test]
fn responses_built_with_aws_lambda_events_are_classified_like_aws() {
    let ids: HashSet<&str> = ["m-1", "m-2"].into();
    let in_batch = |id: &str| ids.contains(id);

    let mut failure = BatchItemFailure::default();
    failure.item_identifier = "m-2".into();
    let mut sqs = SqsBatchResponse::default();
    sqs.batch_item_failures.push(failure);
    let body = serde_json::to_vec(&sqs).unwrap();
    assert_eq!(
        parse_batch_response(&body, in_batch),
        BatchResponse::Partial(vec!["m-2".into()])
    );

    let body = serde_json::to_vec(&SqsBatchResponse::default()).unwrap();
    assert_eq!(
        parse_batch_response(&body, in_batch),
        BatchResponse::Success
    );

    // streams::*BatchItemFailure allows a missing identifier, which AWS rejects as a whole-batch
    // failure; it serializes as null.
    let mut kinesis = KinesisEventResponse::default();
    kinesis
        .batch_item_failures
        .push(KinesisBatchItemFailure::default());
    let body = serde_json::to_vec(&kinesis).unwrap();
    assert!(matches!(
        parse_batch_response(&body, in_batch),
        BatchResponse::Invalid(_)
    ));
}
