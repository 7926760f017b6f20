//! `poller run --dry-run` against moto and the simulator: the batches are printed, nothing is
//! invoked, SQS messages are all visible again at once, and a stream keeps no checkpoint, so a
//! real run afterwards still delivers everything.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use e2e::{
    Kinesis, PollerProcess, Sqs, eventually, processed_kinesis_data, simulator, sqs_mapping,
    stream_mapping, unique,
};
use loadgen::simulate::FunctionConfig;

/// The batches a dry run printed, as their record ids, and the ids it said the filters dropped.
fn printed(stdout: &str) -> (Vec<Vec<String>>, Vec<String>) {
    let ids = |list: &str| {
        list.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut batches = Vec::new();
    let mut dropped = Vec::new();
    for line in stdout.lines().map(str::trim) {
        if line.starts_with("batch ") {
            let (head, list) = line.split_once(" bytes: ").expect("batch line");
            let count: usize = head
                .split(": ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let list = ids(list);
            assert_eq!(list.len(), count, "{line}");
            batches.push(list);
        } else if let Some(rest) =
            line.strip_prefix("dropped by filters (no filter of FilterCriteria matched): ")
        {
            dropped = ids(rest);
        }
    }
    (batches, dropped)
}

/// Run `poller run --dry-run` for `mapping`; its stdout, after checking it succeeded.
fn dry_run(poller: &PollerProcess) -> String {
    let out = poller
        .command(&["--dry-run"])
        .output()
        .expect("poller runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dry_run_over_sqs_prints_batches_and_leaves_every_message_in_the_queue() {
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("dry-run"), &[]).await;
    let bodies: Vec<(String, Option<String>)> = (0..5)
        .map(|i| {
            (
                format!(
                    r#"{{"type":"{}","n":{i}}}"#,
                    if i == 2 { "skip" } else { "keep" }
                ),
                None,
            )
        })
        .collect();
    sqs.send(&queue, &bodies).await;
    let function = simulator(FunctionConfig::default()).await;
    let mapping = sqs_mapping(
        &queue,
        "dry-fn",
        r#""BatchSize":2,"FilterCriteria":{"Filters":[{"Pattern":"{\"body\":{\"type\":[\"keep\"]}}"}]}"#,
    );
    let poller = PollerProcess::new(&mapping, &function.url());
    let stdout = dry_run(&poller);
    let (batches, dropped) = printed(&stdout);
    assert!(stdout.contains("read 5 records:"), "{stdout}");
    assert!(function.invocations().is_empty(), "nothing invoked");

    // Every message is visible again at once (one receive of the test gets them all, well within
    // the dry run's 30 s hold), received once by the dry run and once now.
    let messages = sqs.drain(&queue).await;
    assert_eq!(messages.len(), 5, "{stdout}");
    let id_of: BTreeMap<String, String> = messages
        .iter()
        .map(|m| {
            (
                m.body().unwrap().to_owned(),
                m.message_id().unwrap().to_owned(),
            )
        })
        .collect();
    for m in &messages {
        let count = &m.attributes().unwrap()[&MessageSystemAttributeName::ApproximateReceiveCount];
        assert_eq!(count, "2", "{m:?}");
    }
    let skip = bodies[2].0.clone();
    assert_eq!(dropped, [id_of[&skip].clone()], "{stdout}");
    assert!(
        batches.iter().all(|b| !b.is_empty() && b.len() <= 2),
        "{stdout}"
    );
    let batched: BTreeSet<String> = batches.into_iter().flatten().collect();
    let kept: BTreeSet<String> = id_of
        .iter()
        .filter(|(body, _)| **body != skip)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(batched, kept, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dry_run_over_kinesis_writes_no_checkpoint() {
    let kinesis = Kinesis::new().await;
    let name = unique("dry-run");
    let arn = kinesis.create_stream(&name, 1).await;
    let data: Vec<(String, String)> = (0..5)
        .map(|i| ("k".to_owned(), format!(r#"{{"keep":{},"n":{i}}}"#, i != 3)))
        .collect();
    let seqs = kinesis.put(&name, &data).await;
    let function = simulator(FunctionConfig::default()).await;
    let mapping = stream_mapping(
        &arn,
        "dry-fn",
        r#""StartingPosition":"TRIM_HORIZON","BatchSize":2,
           "FilterCriteria":{"Filters":[{"Pattern":"{\"data\":{\"keep\":[true]}}"}]}"#,
    );
    let poller = PollerProcess::new(&mapping, &function.url());
    let stdout = dry_run(&poller);
    let (batches, dropped) = printed(&stdout);
    assert_eq!(
        batches,
        [
            vec![seqs[0].clone(), seqs[1].clone()],
            vec![seqs[2].clone(), seqs[4].clone()]
        ],
        "{stdout}"
    );
    assert_eq!(dropped, [seqs[3].clone()], "{stdout}");
    assert!(stdout.contains("[shardId-000000000000]"), "{stdout}");
    assert!(function.invocations().is_empty(), "nothing invoked");
    assert!(
        !poller.dir.join("state").exists(),
        "no checkpoint store was even opened"
    );

    // A real run from the same state directory starts where the mapping does: every kept record.
    let mut run = poller.spawn(&[]);
    eventually(
        Duration::from_secs(60),
        "the four kept records processed",
        || async { processed_kinesis_data(&function.invocations()).len() >= 4 },
    )
    .await;
    run.kill().unwrap();
    run.wait().unwrap();
    let mut processed = processed_kinesis_data(&function.invocations());
    processed.sort();
    processed.dedup();
    let expected: Vec<String> = [0, 1, 2, 4].iter().map(|i| data[*i].1.clone()).collect();
    assert_eq!(processed, expected);
}
