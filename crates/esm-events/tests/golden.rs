//! Golden fixtures: what we send must match the AWS shapes in `tests/fixtures/` byte for byte
//! (key order, key set, number and string rendering), not just as parsed JSON.
//!
//! The fixtures are pretty-printed for review; [`minify`] drops the whitespace between tokens so
//! the comparison with our compact output stays textual.

mod common;

use std::path::Path;

use esm_events::envelope::{Envelope, TumblingWindow};
use esm_events::failure::{
    FailureCondition, ResponseContext, StreamBatchInfo, StreamFailureRecord, StreamKind,
};
use serde_json::{Map, Value};

/// The fixture text without insignificant whitespace.
fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// Asserts that `ours` is textually the fixture, and (for a readable failure) structurally too.
fn assert_matches_fixture(ours: &[u8], fixture: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    let text = std::fs::read_to_string(&path).unwrap();
    let ours = std::str::from_utf8(ours).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let actual: Value = serde_json::from_str(ours).unwrap();
    assert_eq!(actual, expected, "{fixture}: different JSON");
    assert_eq!(
        ours,
        minify(&text),
        "{fixture}: same JSON, different text (order or rendering)"
    );
}

#[test]
fn minify_keeps_strings_intact() {
    assert_eq!(
        minify("{ \"a b\" : [ 1 ,\n \"c\\\" d\" ] }"),
        r#"{"a b":[1,"c\" d"]}"#
    );
}

#[test]
fn sqs_standard_event() {
    assert_matches_fixture(
        &common::records_event(&common::sqs_standard_records()),
        "sqs_standard.json",
    );
}

#[test]
fn sqs_fifo_event() {
    assert_matches_fixture(
        &common::records_event(&common::sqs_fifo_records()),
        "sqs_fifo.json",
    );
}

#[test]
fn kinesis_event() {
    assert_matches_fixture(
        &common::records_event(&common::kinesis_records()),
        "kinesis.json",
    );
}

#[test]
fn dynamodb_event() {
    assert_matches_fixture(
        &common::records_event(&common::dynamodb_records()),
        "dynamodb.json",
    );
}

#[test]
fn kinesis_tumbling_window_event() {
    let mut state = Map::new();
    state.insert("1".into(), Value::from(282));
    state.insert("2".into(), Value::from(715));
    let envelope = Envelope::tumbling_window(&TumblingWindow {
        start_ms: 1_607_497_440_000,
        end_ms: 1_607_497_560_000,
        state,
        shard_id: "shardId-000000000006".into(),
        event_source_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream".into(),
        is_final_invoke_for_window: false,
        is_window_terminated_early: false,
    })
    .unwrap();
    let record = serde_json::to_vec(&common::kinesis_window_record()).unwrap();
    assert_matches_fixture(&envelope.payload(&[record]), "kinesis_tumbling_window.json");
}

fn unhandled() -> ResponseContext {
    ResponseContext {
        status_code: 200,
        executed_version: "$LATEST".into(),
        function_error: Some("Unhandled".into()),
    }
}

fn kinesis_failure() -> StreamFailureRecord {
    StreamFailureRecord {
        stream: StreamKind::Kinesis,
        request_id: "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5".into(),
        function_arn: "arn:aws:lambda:us-east-2:123456789012:function:myfunction".into(),
        condition: FailureCondition::RetryAttemptsExhausted(unhandled()),
        approximate_invoke_count: 1,
        timestamp_ms: 1_573_691_886_021,
        batch: StreamBatchInfo {
            shard_id: "shardId-000000000001".into(),
            start_sequence_number: "49601189658422359378836298521827638475320189012309704722"
                .into(),
            end_sequence_number: "49601189658422359378836298522902373528957594348623495186".into(),
            approximate_arrival_of_first_record_ms: 1_573_691_884_835,
            approximate_arrival_of_last_record_ms: 1_573_691_885_580,
            batch_size: 500,
            stream_arn: "arn:aws:kinesis:us-east-2:123456789012:stream/mystream".into(),
        },
    }
}

#[test]
fn kinesis_failure_record_for_sqs_and_sns() {
    let json = kinesis_failure().to_json().unwrap();
    assert_matches_fixture(json.as_bytes(), "failure_kinesis_retries_exhausted.json");
}

#[test]
fn dynamodb_failure_record_after_partial_batch_responses() {
    let record = StreamFailureRecord {
        stream: StreamKind::DynamoDb,
        request_id: "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81".into(),
        function_arn: "arn:aws:lambda:us-east-2:123456789012:function:myfunction".into(),
        condition: FailureCondition::RetryAttemptsExhausted(ResponseContext {
            function_error: None,
            ..unhandled()
        }),
        approximate_invoke_count: 4,
        timestamp_ms: 1_573_690_429_717,
        batch: StreamBatchInfo {
            shard_id: "shardId-00000001573689847184-864758bb".into(),
            start_sequence_number: "800000000003126276362".into(),
            end_sequence_number: "800000000003126276362".into(),
            // Milliseconds are dropped: DynamoDB batch info has second precision.
            approximate_arrival_of_first_record_ms: 1_573_690_399_250,
            approximate_arrival_of_last_record_ms: 1_573_690_399_999,
            batch_size: 1,
            stream_arn:
                "arn:aws:dynamodb:us-east-2:123456789012:table/mytable/stream/2019-11-14T00:04:06.388"
                    .into(),
        },
    };
    let json = record.to_json().unwrap();
    assert_matches_fixture(json.as_bytes(), "failure_dynamodb_partial_exhausted.json");
}

#[test]
fn kinesis_failure_record_for_expired_records() {
    let sequence = "49668123937046287271398416352094424040234234525483008002";
    let record = StreamFailureRecord {
        request_id: "d2b1a0e4-6f2c-4a8e-9d61-2f0c3b7e5a19".into(),
        condition: FailureCondition::RecordAgeExceeded,
        timestamp_ms: 1_764_088_532_123,
        batch: StreamBatchInfo {
            shard_id: "shardId-000000000000".into(),
            start_sequence_number: sequence.into(),
            end_sequence_number: sequence.into(),
            approximate_arrival_of_first_record_ms: 1_764_088_390_456,
            approximate_arrival_of_last_record_ms: 1_764_088_390_456,
            batch_size: 1,
            stream_arn: "arn:aws:kinesis:us-east-2:123456789012:stream/mystream".into(),
        },
        ..kinesis_failure()
    };
    let json = record.to_json().unwrap();
    assert_matches_fixture(json.as_bytes(), "failure_kinesis_record_age.json");
}

#[test]
fn kinesis_failure_record_for_s3_embeds_the_payload_as_sent() {
    let records = common::kinesis_records();
    let first = &records[0];
    let payload = common::records_event(&records[..1]);
    let record = StreamFailureRecord {
        condition: FailureCondition::RetryAttemptsExhausted(unhandled()),
        approximate_invoke_count: 2,
        batch: StreamBatchInfo {
            shard_id: first.shard_id.to_owned(),
            start_sequence_number: first.sequence_number.to_owned(),
            end_sequence_number: first.sequence_number.to_owned(),
            approximate_arrival_of_first_record_ms: first.approximate_arrival_ms,
            approximate_arrival_of_last_record_ms: first.approximate_arrival_ms,
            batch_size: 1,
            stream_arn: first.event_source_arn.to_owned(),
        },
        ..kinesis_failure()
    };
    let json = record.to_s3_json(&payload).unwrap();
    assert_matches_fixture(json.as_bytes(), "failure_kinesis_s3.json");

    // The embedded payload is byte-identical to what the function received.
    let body: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        body["payload"].as_str().unwrap().as_bytes(),
        payload.as_slice()
    );
}
