//! The records behind the golden fixtures, built the way a poller builds them (plain values, epoch
//! milliseconds, raw bytes). Shared by the golden and compatibility tests.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use esm_events::dynamodb::{DynamoDbRecord, EventName, Item, StreamViewType, UserIdentity};
use esm_events::envelope::Envelope;
use esm_events::kinesis::KinesisRecord;
use esm_events::sqs::{SqsAttributes, SqsMessageAttribute, SqsRecord};
use serde::Serialize;
use serde_json::json;

/// Serializes each record once and joins them, as the poller does.
pub fn records_event<T: Serialize>(records: &[T]) -> Vec<u8> {
    let serialized: Vec<Vec<u8>> = records
        .iter()
        .map(|record| serde_json::to_vec(record).unwrap())
        .collect();
    Envelope::records().payload(&serialized)
}

pub fn sqs_standard_records() -> Vec<SqsRecord<'static>> {
    let queue = "arn:aws:sqs:us-east-2:123456789012:my-queue";
    vec![
        SqsRecord {
            message_id: "059f36b4-87a3-44ab-83d2-661975830a7d".into(),
            receipt_handle: "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...".into(),
            body: "Test message.".into(),
            attributes: SqsAttributes {
                approximate_receive_count: "1".into(),
                sent_timestamp: "1545082649183".into(),
                sender_id: "AIDAIENQZJOLO23YVJ4VO".into(),
                approximate_first_receive_timestamp: "1545082649185".into(),
                ..SqsAttributes::default()
            },
            message_attributes: vec![],
            md5_of_message_attributes: None,
            md5_of_body: "e4e68fb7bd0e697a0ae8f1bb342846b3".into(),
            event_source_arn: queue.into(),
            aws_region: "us-east-2".into(),
        },
        SqsRecord {
            message_id: "2e1424d4-f796-459a-8184-9c92662be6da".into(),
            receipt_handle: "AQEBzWwaftRI0KuVm4tP+/7q1rGgNqicHq...".into(),
            body: r#"{"foo": "bar"}"#.into(),
            attributes: SqsAttributes {
                dead_letter_queue_source_arn: Some(
                    "arn:aws:sqs:us-east-2:123456789012:my-source-queue".into(),
                ),
                approximate_receive_count: "3".into(),
                aws_trace_header: Some(
                    "Root=1-65250495-30b227ef4ea882e709192510;Parent=6b522ce06cfce549;Sampled=0"
                        .into(),
                ),
                sent_timestamp: "1545082650636".into(),
                sender_id: "AIDAIENQZJOLO23YVJ4VO".into(),
                approximate_first_receive_timestamp: "1545082650649".into(),
                ..SqsAttributes::default()
            },
            message_attributes: vec![
                (
                    "City".into(),
                    SqsMessageAttribute::string("String", "Any City"),
                ),
                (
                    "Population".into(),
                    SqsMessageAttribute::string("Number", "1250800"),
                ),
                (
                    "Greeting".into(),
                    SqsMessageAttribute::binary("Binary", *b"Hello, World!"),
                ),
                (
                    "Ratio".into(),
                    SqsMessageAttribute::string("Number.float", "0.5"),
                ),
            ],
            md5_of_message_attributes: Some("00484c68e2b2e5c58d0fd8d4e37fd26b".into()),
            md5_of_body: "9bb58f26192e4ba00f01e2e7b136bbd8".into(),
            event_source_arn: queue.into(),
            aws_region: "us-east-2".into(),
        },
    ]
}

pub fn sqs_fifo_records() -> Vec<SqsRecord<'static>> {
    vec![SqsRecord {
        message_id: "11d6ee51-4cc7-4302-9e22-7cd8afdaadf5".into(),
        receipt_handle: "AQEBBX8nesZEXmkhsmZeyIE8iQAMig7qw...".into(),
        body: "Test message.".into(),
        attributes: SqsAttributes {
            approximate_receive_count: "1".into(),
            sent_timestamp: "1573251510774".into(),
            sequence_number: Some("18849496460467696128".into()),
            message_group_id: Some("1".into()),
            sender_id: "AIDAIO23YVJENQZJOL4VO".into(),
            message_deduplication_id: Some("1".into()),
            approximate_first_receive_timestamp: "1573251510774".into(),
            ..SqsAttributes::default()
        },
        message_attributes: vec![],
        md5_of_message_attributes: None,
        md5_of_body: "e4e68fb7bd0e697a0ae8f1bb342846b3".into(),
        event_source_arn: "arn:aws:sqs:us-east-2:123456789012:fifo.fifo".into(),
        aws_region: "us-east-2".into(),
    }]
}

/// `data` is the base64 text GetRecords returns ("Hello, this is a test." and "This is only a test."
/// in AWS's example).
fn kinesis_record(sequence_number: &'static str, data: &'static str, arrival_ms: i64) -> KinesisRecord<'static> {
    KinesisRecord {
        shard_id: "shardId-000000000006",
        partition_key: "1",
        sequence_number,
        data,
        approximate_arrival_ms: arrival_ms,
        invoke_identity_arn: "arn:aws:iam::123456789012:role/lambda-role",
        aws_region: "us-east-2",
        event_source_arn: "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
    }
}

pub fn kinesis_records() -> Vec<KinesisRecord<'static>> {
    vec![
        kinesis_record(
            "49590338271490256608559692538361571095921575989136588898",
            "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
            1_545_084_650_987,
        ),
        kinesis_record(
            "49590338271490256608559692540925702759324208523137515618",
            "VGhpcyBpcyBvbmx5IGEgdGVzdC4=",
            1_545_084_711_160,
        ),
    ]
}

/// The record of the AWS tumbling-window example (another role and region).
pub fn kinesis_window_record() -> KinesisRecord<'static> {
    KinesisRecord {
        invoke_identity_arn: "arn:aws:iam::123456789012:role/lambda-kinesis-role",
        aws_region: "us-east-1",
        event_source_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream",
        ..kinesis_record(
            "49590338271490256608559692538361571095921575989136588898",
            "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
            1_607_497_475_000,
        )
    }
}

fn item(value: serde_json::Value) -> Item {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

pub fn dynamodb_records() -> Vec<DynamoDbRecord> {
    let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/ExampleTableWithStream/stream/2015-06-27T00:48:05.899";
    let record = |event_id: &str, event_name, ms, sequence: &str, size| DynamoDbRecord {
        event_id: event_id.into(),
        event_name,
        aws_region: "us-east-1".into(),
        approximate_creation_ms: ms,
        keys: item(json!({"Id": {"N": "101"}})),
        new_image: None,
        old_image: None,
        sequence_number: sequence.into(),
        size_bytes: size,
        stream_view_type: StreamViewType::NewAndOldImages,
        event_source_arn: arn.into(),
        user_identity: None,
    };
    vec![
        DynamoDbRecord {
            new_image: Some(item(json!({
                "Message": {"S": "New item!"},
                "Id": {"N": "101"},
                "Blob": {"B": "Zm9vYmFy"}
            }))),
            ..record(
                "c4ca4238a0b923820dcc509a6f75849b",
                EventName::Insert,
                1_764_086_780_000,
                "4421584500000000017450439091",
                26,
            )
        },
        DynamoDbRecord {
            new_image: Some(item(json!({
                "Message": {"S": "This item has changed"},
                "Id": {"N": "101"}
            }))),
            old_image: Some(item(
                json!({"Message": {"S": "New item!"}, "Id": {"N": "101"}}),
            )),
            ..record(
                "c81e728d9d4c2f636f067f89cc14862c",
                EventName::Modify,
                1_764_086_781_000,
                "4421584500000000017450439092",
                59,
            )
        },
        DynamoDbRecord {
            old_image: Some(item(json!({
                "Message": {"S": "This item has changed"},
                "Id": {"N": "101"}
            }))),
            user_identity: Some(UserIdentity::ttl_delete()),
            ..record(
                "eccbc87e4b5ce2fe28308fd9f2a7baf3",
                EventName::Remove,
                1_764_086_782_000,
                "4421584500000000017450439093",
                38,
            )
        },
    ]
}
