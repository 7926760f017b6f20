//! `poller replay` against moto: an on-failure record written by the poller's SQS destination is
//! turned back into the records of the discarded batch, read again from the Kinesis stream.

use base64::Engine as _;
use e2e::{Kinesis, Sqs, endpoint, poller_binary, sdk_config, stream_mapping, unique};
use esm_events::failure::{FailureCondition, StreamBatchInfo, StreamFailureRecord, StreamKind};
use poller::stream::destination::Destination;

/// Run `poller replay` for `mapping` with `stdin`; (stdout, stderr, success).
fn replay(mapping: &str, stdin: &str) -> (String, String, bool) {
    use std::io::Write;
    let dir = std::env::temp_dir().join(unique("replay"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mapping.json");
    std::fs::write(&file, mapping).unwrap();
    let mut child = std::process::Command::new(poller_binary())
        .arg("replay")
        .arg("--mapping")
        .arg(&file)
        .args(["--endpoint-url", &endpoint(), "--region", "us-east-1"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("poller runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[tokio::test]
async fn replay_reads_back_the_records_of_a_discarded_kinesis_batch() {
    let kinesis = Kinesis::new().await;
    let name = unique("replay");
    let stream_arn = kinesis.create_stream(&name, 1).await;
    let data: Vec<(String, String)> = (0..5)
        .map(|i| ("k".to_owned(), format!("record-{i}")))
        .collect();
    let sequences = kinesis.put(&name, &data).await;

    // The on-failure record of a batch of records 1..=3, as the poller's SQS destination writes it.
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("on-failure"), &[]).await;
    let record = StreamFailureRecord {
        stream: StreamKind::Kinesis,
        request_id: uuid::Uuid::new_v4().to_string(),
        function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f".to_owned(),
        condition: FailureCondition::RecordAgeExceeded,
        approximate_invoke_count: 1,
        timestamp_ms: 1_700_000_000_000,
        batch: StreamBatchInfo {
            shard_id: "shardId-000000000000".to_owned(),
            start_sequence_number: sequences[1].clone(),
            end_sequence_number: sequences[3].clone(),
            approximate_arrival_of_first_record_ms: 1_700_000_000_000,
            approximate_arrival_of_last_record_ms: 1_700_000_000_000,
            batch_size: 3,
            stream_arn: stream_arn.clone(),
        },
    };
    let destination = Destination::connect(&sdk_config().await, &queue.arn)
        .await
        .expect("connect");
    destination
        .deliver(&record, b"", &uuid::Uuid::new_v4().to_string())
        .await
        .expect("deliver");
    // SendMessage has returned: the message is in the queue.
    let bodies: Vec<String> = sqs
        .drain(&queue)
        .await
        .iter()
        .map(|m| m.body().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(bodies.len(), 1, "one on-failure record");

    let mapping = stream_mapping(&stream_arn, "f", r#""StartingPosition":"TRIM_HORIZON""#);
    let (stdout, stderr, ok) = replay(&mapping, &format!("{}\n", bodies[0]));
    assert!(ok, "{stderr}");
    let event: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one event");
    let records = event["Records"].as_array().expect("Records");
    let decoded: Vec<String> = records
        .iter()
        .map(|r| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(r["kinesis"]["data"].as_str().unwrap())
                .unwrap();
            String::from_utf8(bytes).unwrap()
        })
        .collect();
    assert_eq!(decoded, ["record-1", "record-2", "record-3"]);
    let replayed: Vec<&str> = records
        .iter()
        .map(|r| r["kinesis"]["sequenceNumber"].as_str().unwrap())
        .collect();
    assert_eq!(
        replayed,
        sequences[1..=3]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert!(
        records
            .iter()
            .all(|r| r["eventSourceARN"] == stream_arn.as_str())
    );

    // A batch that claims more records than the range holds is reported, naming the input line.
    let short = bodies[0].replace("\"batchSize\":3", "\"batchSize\":4");
    let (stdout, stderr, ok) = replay(&mapping, &format!("{short}\n"));
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("stdin:1: found 3 of the batch's 4 records"),
        "{stderr}"
    );
}
