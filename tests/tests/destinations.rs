//! On-failure destinations of stream mappings against moto: what arrives in an SQS queue, through an
//! SNS topic, and in an S3 bucket, compared field by field with hand-written expectations, and the
//! errors for destinations that do not exist or disappear.

use std::time::Duration;

use aws_sdk_sqs::types::Message;
use e2e::{Queue, Sqs, sdk_config, unique};
use esm_events::failure::{
    FailureCondition, ResponseContext, StreamBatchInfo, StreamFailureRecord, StreamKind,
};
use poller::stream::destination::Destination;
use serde_json::{Value, json};

/// Moto's account.
const ACCOUNT: &str = "123456789012";
const KINESIS_START: &str = "49601189658422359378836298521827638475320189012309704722";
const KINESIS_END: &str = "49601189658422359378836298522902373528957594348623495186";

/// Kinesis, two records, retries exhausted after 4 invocations that threw.
fn kinesis_retries_exhausted() -> StreamFailureRecord {
    StreamFailureRecord {
        stream: StreamKind::Kinesis,
        request_id: "c9b8fa9f-5a7f-4f0e-af9c-0c604cde93a5".to_owned(),
        function_arn: format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:orders"),
        condition: FailureCondition::RetryAttemptsExhausted(ResponseContext {
            status_code: 200,
            executed_version: "$LATEST".to_owned(),
            function_error: Some("Unhandled".to_owned()),
        }),
        approximate_invoke_count: 4,
        timestamp_ms: 1_573_691_886_021, // 2019-11-14T00:38:06.021Z
        batch: StreamBatchInfo {
            shard_id: "shardId-000000000001".to_owned(),
            start_sequence_number: KINESIS_START.to_owned(),
            end_sequence_number: KINESIS_END.to_owned(),
            approximate_arrival_of_first_record_ms: 1_573_691_884_835,
            approximate_arrival_of_last_record_ms: 1_573_691_885_580,
            batch_size: 2,
            stream_arn: format!("arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/orders"),
        },
    }
}

/// What AWS writes for [`kinesis_retries_exhausted`], in wire order (serde_json keeps insertion order
/// in this workspace, so serializing this gives the exact expected text).
fn kinesis_retries_exhausted_json() -> Value {
    json!({
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-4f0e-af9c-0c604cde93a5",
            "functionArn": format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:orders"),
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 4
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": KINESIS_START,
            "endSequenceNumber": KINESIS_END,
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": 2,
            "streamArn": format!("arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/orders")
        }
    })
}

/// DynamoDB Streams, 3 records older than MaximumRecordAgeInSeconds, never invoked.
fn dynamodb_record_age_exceeded() -> StreamFailureRecord {
    StreamFailureRecord {
        stream: StreamKind::DynamoDb,
        request_id: "0f6b1c9e-2d1e-4a55-9a3e-5b1f1c2d3e4f".to_owned(),
        function_arn: format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:audit"),
        condition: FailureCondition::RecordAgeExceeded,
        approximate_invoke_count: 1,
        timestamp_ms: 1_764_088_399_123, // 2025-11-25T16:33:19.123Z
        batch: StreamBatchInfo {
            shard_id: "shardId-00000001764088000000-864758bb".to_owned(),
            start_sequence_number: "100000000000000000001".to_owned(),
            end_sequence_number: "300000000000000000003".to_owned(),
            approximate_arrival_of_first_record_ms: 1_764_088_390_987,
            approximate_arrival_of_last_record_ms: 1_764_088_391_001,
            batch_size: 3,
            stream_arn: format!(
                "arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/audit/stream/2025-11-25T16:00:00.000"
            ),
        },
    }
}

/// What AWS writes for [`dynamodb_record_age_exceeded`]: no `responseContext`, arrival times
/// truncated to whole seconds.
fn dynamodb_record_age_exceeded_json() -> Value {
    json!({
        "requestContext": {
            "requestId": "0f6b1c9e-2d1e-4a55-9a3e-5b1f1c2d3e4f",
            "functionArn": format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:audit"),
            "condition": "RecordAgeExceeded",
            "approximateInvokeCount": 1
        },
        "version": "1.0",
        "timestamp": "2025-11-25T16:33:19.123Z",
        "DDBStreamBatchInfo": {
            "shardId": "shardId-00000001764088000000-864758bb",
            "startSequenceNumber": "100000000000000000001",
            "endSequenceNumber": "300000000000000000003",
            "approximateArrivalOfFirstRecord": "2025-11-25T16:33:10Z",
            "approximateArrivalOfLastRecord": "2025-11-25T16:33:11Z",
            "batchSize": 3,
            "streamArn": format!("arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/audit/stream/2025-11-25T16:00:00.000")
        }
    })
}

/// The invocation event of the Kinesis batch, as the function received it.
fn kinesis_payload() -> String {
    let record = |seq: &str, data: &str, arrival: f64| {
        json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "order-7",
                "sequenceNumber": seq,
                "data": data,
                "approximateArrivalTimestamp": arrival
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("shardId-000000000001:{seq}"),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": format!("arn:aws:iam::{ACCOUNT}:role/orders"),
            "awsRegion": "us-east-1",
            "eventSourceARN": format!("arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/orders")
        })
    };
    json!({"Records": [
        record(KINESIS_START, "eyJuIjoxfQ==", 1_573_691_884.835),
        record(KINESIS_END, "eyJuIjoyfQ==", 1_573_691_885.58),
    ]})
    .to_string()
}

/// Everything `queue` receives until it has given `n` messages (SNS fan-out may land a moment after
/// Publish returns), plus whatever arrives shortly after, so that extra messages are seen.
async fn receive(sqs: &Sqs, queue: &Queue, n: usize) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut messages = Vec::new();
    while messages.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {n} message(s) in {}",
            queue.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        messages.extend(sqs.drain(queue).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    messages.extend(sqs.drain(queue).await);
    messages
}

async fn sns_client() -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(&sdk_config().await)
}

async fn s3_client() -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::new(&sdk_config().await)
}

async fn create_bucket(s3: &aws_sdk_s3::Client) -> String {
    let bucket = unique("failures");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    bucket
}

#[tokio::test]
async fn sqs_destination_receives_the_record_as_the_message_body() {
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("on-failure"), &[]).await;
    let destination = Destination::connect(&sdk_config().await, &queue.arn)
        .await
        .expect("connect");
    assert_eq!(destination.arn(), queue.arn);

    let record = kinesis_retries_exhausted();
    destination
        .deliver(
            &record,
            kinesis_payload().as_bytes(),
            &uuid::Uuid::new_v4().to_string(),
        )
        .await
        .expect("deliver");

    let messages = receive(&sqs, &queue, 1).await;
    assert_eq!(messages.len(), 1, "exactly one message per discarded batch");
    let body = messages[0].body().expect("body");
    assert_eq!(
        body,
        kinesis_retries_exhausted_json().to_string(),
        "body in wire order, compact"
    );
    assert!(!body.contains("payload"), "SQS records carry no payload");
}

#[tokio::test]
async fn sqs_destination_in_another_region_is_reached_through_its_arn() {
    let sdk = sdk_config().await;
    let west = Sqs {
        client: aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .region(aws_sdk_sqs::config::Region::new("us-west-2"))
                .build(),
        ),
    };
    let queue = west.create_queue(&unique("west"), &[]).await;
    assert!(
        queue.arn.starts_with("arn:aws:sqs:us-west-2:"),
        "{}",
        queue.arn
    );

    // The shared configuration says us-east-1; the ARN's region must win.
    let destination = Destination::connect(&sdk, &queue.arn)
        .await
        .expect("connect");
    let record = dynamodb_record_age_exceeded();
    destination
        .deliver(&record, b"{}", "f89f8514-cdd9-4602-9e1f-01a5b77d449b")
        .await
        .expect("deliver");

    let messages = receive(&west, &queue, 1).await;
    assert_eq!(
        messages[0].body(),
        Some(dynamodb_record_age_exceeded_json().to_string().as_str())
    );
}

#[tokio::test]
async fn sns_destination_publishes_a_notification_whose_message_is_the_record() {
    let sns = sns_client().await;
    let topic_arn = sns
        .create_topic()
        .name(unique("on-failure"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("topic arn");
    let sqs = Sqs::new().await;
    let subscriber = sqs.create_queue(&unique("subscriber"), &[]).await;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&subscriber.arn)
        .send()
        .await
        .expect("Subscribe");

    let destination = Destination::connect(&sdk_config().await, &topic_arn)
        .await
        .expect("connect");
    let record = dynamodb_record_age_exceeded();
    destination
        .deliver(
            &record,
            b"{\"Records\":[]}",
            "f89f8514-cdd9-4602-9e1f-01a5b77d449b",
        )
        .await
        .expect("deliver");

    let messages = receive(&sqs, &subscriber, 1).await;
    assert_eq!(
        messages.len(),
        1,
        "exactly one notification per discarded batch"
    );
    let notification: Value =
        serde_json::from_str(messages[0].body().expect("body")).expect("notification JSON");
    assert_eq!(notification["Type"], "Notification");
    assert_eq!(notification["TopicArn"], topic_arn.as_str());
    assert!(
        notification["MessageId"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{notification}"
    );
    // The Message is the record as text, byte for byte; no responseContext for RecordAgeExceeded.
    assert_eq!(
        notification["Message"],
        dynamodb_record_age_exceeded_json().to_string()
    );
}

#[tokio::test]
async fn s3_destination_writes_one_object_with_the_payload_under_the_mapping_prefix() {
    let s3 = s3_client().await;
    let bucket = create_bucket(&s3).await;
    let destination = Destination::connect(&sdk_config().await, &format!("arn:aws:s3:::{bucket}"))
        .await
        .expect("connect");

    let mapping_uuid = uuid::Uuid::new_v4().to_string();
    let payload = kinesis_payload();
    destination
        .deliver(
            &kinesis_retries_exhausted(),
            payload.as_bytes(),
            &mapping_uuid,
        )
        .await
        .expect("deliver");

    // The day folder comes from the record's timestamp (2019-11-14), not from the clock.
    let prefix = format!("aws/lambda/{mapping_uuid}/shardId-000000000001/2019/11/14/");
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(&prefix)
        .send()
        .await
        .expect("ListObjectsV2");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        keys.len(),
        1,
        "exactly one object per discarded batch: {keys:?}"
    );
    let name = keys[0].strip_prefix(&prefix).expect("key under the prefix");
    let object_uuid = name
        .strip_prefix("2019-11-14T00.38.06-")
        .unwrap_or_else(|| panic!("object name starts with the record time: {name}"));
    let object_uuid = uuid::Uuid::parse_str(object_uuid).expect("object name ends with a UUID");
    assert_eq!(object_uuid.get_version_num(), 4, "a random UUID");

    let object = s3
        .get_object()
        .bucket(&bucket)
        .key(keys[0])
        .send()
        .await
        .expect("GetObject");
    assert_eq!(object.content_type(), Some("application/json"));
    let body = String::from_utf8(object.body.collect().await.expect("object body").to_vec())
        .expect("UTF-8");
    let mut expected = kinesis_retries_exhausted_json();
    expected["payload"] = Value::String(payload.clone());
    assert_eq!(
        body,
        expected.to_string(),
        "record members in wire order, then payload"
    );
    let parsed: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        parsed["payload"].as_str(),
        Some(payload.as_str()),
        "payload holds the event byte for byte"
    );
}

#[tokio::test]
async fn destinations_that_do_not_exist_fail_at_connect_naming_the_arn() {
    let sdk = sdk_config().await;
    for arn in [
        format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{}", unique("missing")),
        format!("arn:aws:sns:us-east-1:{ACCOUNT}:{}", unique("missing")),
        format!("arn:aws:s3:::{}", unique("missing")),
    ] {
        match Destination::connect(&sdk, &arn).await {
            Err(poller::Error::Source(message)) => assert!(
                message.contains(&arn) && message.contains("does not exist"),
                "{arn}: {message}"
            ),
            other => panic!("{arn}: expected Error::Source, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn malformed_or_unsupported_destination_arns_are_rejected_before_any_call() {
    let sdk = sdk_config().await;
    for arn in [
        "not-an-arn".to_owned(),
        format!("arn:aws:sqs:us-east-1:{ACCOUNT}:dlq.fifo"),
        format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:f"),
    ] {
        let err = Destination::connect(&sdk, &arn).await.expect_err(&arn);
        assert!(
            matches!(&err, poller::Error::Source(m) if m.contains(&arn)),
            "{arn}: {err}"
        );
    }
}

#[tokio::test]
async fn delivery_to_a_destination_deleted_after_start_fails_permanently() {
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("deleted"), &[]).await;
    let s3 = s3_client().await;
    let bucket = create_bucket(&s3).await;
    let sdk = sdk_config().await;
    let to_queue = Destination::connect(&sdk, &queue.arn)
        .await
        .expect("connect queue");
    let to_bucket = Destination::connect(&sdk, &format!("arn:aws:s3:::{bucket}"))
        .await
        .expect("connect bucket");

    sqs.client
        .delete_queue()
        .queue_url(&queue.url)
        .send()
        .await
        .expect("DeleteQueue");
    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("DeleteBucket");

    let record = kinesis_retries_exhausted();
    for destination in [&to_queue, &to_bucket] {
        let err = destination
            .deliver(
                &record,
                kinesis_payload().as_bytes(),
                "f89f8514-cdd9-4602-9e1f-01a5b77d449b",
            )
            .await
            .expect_err("the destination is gone");
        assert!(!err.is_retryable(), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(destination.arn()) && message.contains("permanent"),
            "{message}"
        );
    }
}
