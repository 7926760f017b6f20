//! `poller replay` against moto and the simulator: batches the poller discarded (on-failure records
//! in an SQS queue or in S3) are read back from the Kinesis stream and sent to the function again,
//! with the original batch boundaries.

use std::time::Duration;

use base64::Engine as _;
use e2e::{
    Kinesis, RunningPoller, Sqs, endpoint, eventually, poller_binary, processed_kinesis_data,
    records, sdk_config, simulator, stream_mapping, unique,
};
use loadgen::simulate::{FailureMode, FunctionConfig, Invocation, Rule, RuleAction, SimHandle};

/// What a `poller replay` run printed and how it exited.
struct Run {
    stdout: String,
    stderr: String,
    code: i32,
}

impl Run {
    /// The `--output json` report.
    fn report(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", self.stdout, self.stderr))
    }

    /// The outcome of every range in the report, in its order.
    fn outcomes(&self) -> Vec<String> {
        self.report()["ranges"]
            .as_array()
            .expect("ranges")
            .iter()
            .map(|r| r["outcome"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Run `poller replay` for `mapping` with `args`, invoking the function at `function_url`.
fn replay(mapping: &str, function_url: &str, args: &[&str], stdin: &str) -> Run {
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
        .args(["--lambda-endpoint-url", function_url])
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
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
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().expect("exit code"),
    }
}

/// A function that fails (unhandled error) every invocation holding a record with "poison".
async fn failing_function() -> SimHandle {
    simulator(FunctionConfig {
        failure_mode: FailureMode::Error,
        rules: vec![Rule {
            body_contains: Some("poison".to_owned()),
            action: RuleAction::Fail,
            ..Rule::default()
        }],
        ..FunctionConfig::default()
    })
    .await
}

/// The Kinesis sequence numbers of each invocation, in invocation order.
fn batches(invocations: &[Invocation]) -> Vec<Vec<String>> {
    batches_at(invocations, "/kinesis/sequenceNumber")
}

/// The sequence numbers (at JSON `pointer` in each record) of each invocation, in invocation order.
fn batches_at(invocations: &[Invocation], pointer: &str) -> Vec<Vec<String>> {
    let mut invocations = invocations.to_vec();
    invocations.sort_by_key(|i| i.seq);
    invocations
        .iter()
        .map(|i| {
            records(i)
                .iter()
                .map(|r| {
                    r.pointer(pointer)
                        .and_then(|s| s.as_str())
                        .unwrap()
                        .to_owned()
                })
                .collect()
        })
        .collect()
}

/// A one-shard stream with six records, r0..r5, where r1 and r5 are poison; a mapping to it with
/// batches of two, no retries and `destination` as its on-failure destination, run by the poller
/// with the failing function until batches [r0, r1] and [r4, r5] have been discarded. Returns the
/// mapping, the function, and the discarded batches as the function got them.
async fn discard_two_batches(
    destination: &str,
    discarded: impl AsyncFn() -> bool,
) -> (String, SimHandle, Vec<Vec<String>>) {
    let kinesis = Kinesis::new().await;
    let name = unique("replay");
    let arn = kinesis.create_stream(&name, 1).await;
    let data: Vec<(String, String)> = ["r0", "r1 poison", "r2", "r3", "r4", "r5 poison"]
        .iter()
        .map(|d| ("k".to_owned(), d.to_string()))
        .collect();
    kinesis.put(&name, &data).await;
    let extra = format!(
        r#""StartingPosition":"TRIM_HORIZON","BatchSize":2,"MaximumRetryAttempts":0,
           "DestinationConfig":{{"OnFailure":{{"Destination":"{destination}"}}}}"#
    );
    let mapping = stream_mapping(&arn, "replay-fn", &extra);
    let function = failing_function().await;
    let poller = RunningPoller::start(std::slice::from_ref(&mapping), &function.url(), None);
    eventually(
        Duration::from_secs(60),
        "two batches discarded, one delivered",
        || async {
            processed_kinesis_data(&function.invocations()).len() >= 2 && discarded().await
        },
    )
    .await;
    let report = poller.stop().await;
    assert_eq!(
        report[0].counters.on_failure_delivered, 4,
        "{}",
        report[0].counters
    );
    let failed: Vec<Vec<String>> = batches(
        &function
            .invocations()
            .into_iter()
            .filter(|i| i.records_ok.is_empty())
            .collect::<Vec<_>>(),
    );
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().all(|b| b.len() == 2), "{failed:?}");
    function.reset();
    (mapping, function, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_from_an_sqs_queue_sends_the_discarded_batches_again() {
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("on-failure"), &[]).await;
    let (mapping, failing, discarded) =
        discard_two_batches(&queue.arn, async || sqs.depth(&queue).await >= 2).await;

    // The function still fails: both ranges fail again and stay in the queue, visible at once.
    let run = replay(
        &mapping,
        &failing.url(),
        &["--from", &queue.arn, "--output", "json"],
        "",
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outcomes(), ["failed", "failed"], "{}", run.stdout);
    let reason = run.report()["ranges"][0]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.starts_with("function error (Unhandled)"), "{reason}");
    assert_eq!(
        batches(&failing.invocations()),
        discarded,
        "the same batches, in shard order"
    );
    assert_eq!(sqs.depth(&queue).await, 2);

    // Fixed: the batches are replayed with the same boundaries. With --keep their messages stay
    // (visible at once), without it they are deleted.
    let fixed = simulator(FunctionConfig::default()).await;
    let run = replay(&mapping, &fixed.url(), &["--keep", "--output", "json"], "");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outcomes(), ["replayed", "replayed"], "{}", run.stdout);
    assert_eq!(batches(&fixed.invocations()), discarded);
    assert_eq!(sqs.depth(&queue).await, 2, "--keep deletes nothing");
    fixed.reset();
    let run = replay(&mapping, &fixed.url(), &["--output", "json"], "");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outcomes(), ["replayed", "replayed"], "{}", run.stdout);
    assert_eq!(run.report()["totals"]["replayed"], 2);
    assert_eq!(batches(&fixed.invocations()), discarded);
    let event = &fixed.invocations()[0].payload;
    assert_eq!(
        event.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["Records"]
    );
    assert_eq!(event["Records"][0]["eventSource"], "aws:kinesis");
    assert_eq!(sqs.depth(&queue).await, 0, "replayed ranges are deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_from_s3_reads_the_objects_under_the_mapping_prefix() {
    let s3 = aws_sdk_s3::Client::new(&sdk_config().await);
    let bucket = unique("replay");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    let objects = async || {
        let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
        listed.contents().len()
    };
    let (mapping, _, discarded) =
        discard_two_batches(&format!("arn:aws:s3:::{bucket}"), async || {
            objects().await >= 2
        })
        .await;

    let fixed = simulator(FunctionConfig::default()).await;
    // The mapping's destination is the default source of on-failure records.
    let run = replay(&mapping, &fixed.url(), &[], "");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.ends_with("2 replayed, 0 failed, 0 expired\n"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("replayed shardId-000000000000 "))
            .count(),
        2
    );
    assert_eq!(batches(&fixed.invocations()), discarded);
    assert_eq!(objects().await, 2, "S3 objects are only read");
}

/// An on-failure record of the stream, for a batch from `start` to `end` of `shard`.
fn on_failure_record(
    stream_arn: &str,
    shard: &str,
    start: &str,
    end: &str,
    batch_size: u64,
) -> String {
    serde_json::json!({
        "requestContext": {"requestId": "r", "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
            "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 1},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "KinesisBatchInfo": {"shardId": shard, "startSequenceNumber": start, "endSequenceNumber": end,
            "approximateArrivalOfFirstRecord": "2026-01-01T00:00:00.000Z",
            "approximateArrivalOfLastRecord": "2026-01-01T00:00:00.000Z",
            "batchSize": batch_size, "streamArn": stream_arn}
    })
    .to_string()
}

/// The decimal number one less than `n` (> 0), however long.
fn one_less(n: &str) -> String {
    let mut digits = n.as_bytes().to_vec();
    for d in digits.iter_mut().rev() {
        if *d == b'0' {
            *d = b'9';
        } else {
            *d -= 1;
            break;
        }
    }
    String::from_utf8(digits).unwrap()
}

/// Ranges whose records are gone are reported expired; `--dry-run` prints the event of a range
/// that is there and invokes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_ranges_are_reported_and_dry_run_prints_the_event() {
    let kinesis = Kinesis::new().await;
    let name = unique("replay");
    let stream_arn = kinesis.create_stream(&name, 1).await;
    let data: Vec<(String, String)> = (0..5)
        .map(|i| ("k".to_owned(), format!("record-{i}")))
        .collect();
    let seqs = kinesis.put(&name, &data).await;
    let mapping = stream_mapping(&stream_arn, "f", r#""StartingPosition":"TRIM_HORIZON""#);
    let function = simulator(FunctionConfig::default()).await;
    let shard = "shardId-000000000000";

    let present = on_failure_record(&stream_arn, shard, &seqs[1], &seqs[3], 3);
    let run = replay(
        &mapping,
        &function.url(),
        &["--from", "-", "--dry-run"],
        &format!("{present}\n"),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let event: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one event");
    let decoded: Vec<String> = event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(r["kinesis"]["data"].as_str().unwrap())
                .unwrap();
            String::from_utf8(bytes).unwrap()
        })
        .collect();
    assert_eq!(decoded, ["record-1", "record-2", "record-3"]);
    assert!(
        run.stderr.contains("found shardId-000000000000"),
        "{}",
        run.stderr
    );
    assert!(
        function.invocations().is_empty(),
        "a dry run invokes nothing"
    );

    // Before the oldest record (the trim horizon moved past it), a shard that is gone, and a batch
    // that had more records than the range still holds.
    let before = one_less(&seqs[0]);
    let before_oldest = on_failure_record(&stream_arn, shard, &before, &seqs[1], 2);
    let gone = on_failure_record(&stream_arn, "shardId-000000000007", &seqs[0], &seqs[1], 2);
    let short = on_failure_record(&stream_arn, shard, &seqs[1], &seqs[3], 4);
    let stdin = format!("{before_oldest}\n{gone}\n{short}\nnot json\n");
    let run = replay(
        &mapping,
        &function.url(),
        &["--from", "-", "--output", "json"],
        &stdin,
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    let by_source = |line: &str| {
        report["ranges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["source"] == line)
            .unwrap_or_else(|| panic!("{line} in {report}"))
            .clone()
    };
    let oldest = by_source("stdin:1");
    assert_eq!(oldest["outcome"], "expired");
    assert!(
        oldest["reason"].as_str().unwrap().contains(&format!(
            "record {before} is no longer in {shard} (the next is {})",
            seqs[0]
        )),
        "{oldest}"
    );
    assert_eq!(by_source("stdin:2")["outcome"], "expired", "{report}");
    let short = by_source("stdin:3");
    assert_eq!(short["outcome"], "expired");
    assert!(
        short["reason"]
            .as_str()
            .unwrap()
            .contains("found 3 of the batch's 4 records"),
        "{short}"
    );
    assert_eq!(by_source("stdin:4")["outcome"], "invalid");
    assert_eq!(report["totals"]["expired"], 3);
    assert!(
        function.invocations().is_empty(),
        "nothing expired is invoked"
    );

    // SNS cannot be read back: said before anything is read.
    let run = replay(
        &mapping,
        &function.url(),
        &["--from", "arn:aws:sns:us-east-1:123456789012:t"],
        "",
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("an SNS topic cannot be read back"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_of_a_dynamodb_stream_batch() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let table = unique("replay");
    let stream_arn = e2e::create_table_with_stream(&dynamodb, &table).await;
    for pk in ["a", "b poison", "c", "d"] {
        dynamodb
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(pk.to_owned()))
            .send()
            .await
            .expect("PutItem");
    }
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("on-failure"), &[]).await;
    let extra = format!(
        r#""StartingPosition":"TRIM_HORIZON","BatchSize":2,"MaximumRetryAttempts":0,
           "DestinationConfig":{{"OnFailure":{{"Destination":"{}"}}}}"#,
        queue.arn
    );
    let mapping = stream_mapping(&stream_arn, "replay-ddb-fn", &extra);
    let failing = failing_function().await;
    let poller = RunningPoller::start(std::slice::from_ref(&mapping), &failing.url(), None);
    eventually(
        Duration::from_secs(60),
        "one batch discarded, one delivered",
        || async {
            e2e::processed_dynamodb(&failing.invocations()).len() >= 2
                && sqs.depth(&queue).await >= 1
        },
    )
    .await;
    poller.stop().await;
    let pointer = "/dynamodb/SequenceNumber";
    let failed: Vec<Invocation> = failing
        .invocations()
        .into_iter()
        .filter(|i| i.records_ok.is_empty())
        .collect();
    let discarded = batches_at(&failed, pointer);
    assert_eq!(discarded.len(), 1, "{discarded:?}");
    assert_eq!(discarded[0].len(), 2, "{discarded:?}");

    let fixed = simulator(FunctionConfig::default()).await;
    let run = replay(&mapping, &fixed.url(), &["--output", "json"], "");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outcomes(), ["replayed"], "{}", run.stdout);
    assert_eq!(batches_at(&fixed.invocations(), pointer), discarded);
    let replayed = &fixed.invocations()[0].payload["Records"];
    assert_eq!(replayed[0]["eventSource"], "aws:dynamodb");
    assert_eq!(replayed[1]["dynamodb"]["Keys"]["pk"]["S"], "b poison");
    assert_eq!(sqs.depth(&queue).await, 0);
}
