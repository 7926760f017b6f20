//! Source endpoint outages: a TCP proxy ([`e2e::proxy::Proxy`]) between a `poller run` process and
//! the emulator is cut while records arrive, then restored. Failed reads must be visible (logged,
//! rate-limited), reads must resume within the documented bound, and nothing may be lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::proxy::Proxy;
use e2e::{Kinesis, PollerProcess, Sqs, endpoint, eventually, processed_bodies, processed_kinesis_data, simulator};
use e2e::{sqs_mapping, stream_mapping, unique};

/// docs/stream-processing.md: after a Kinesis endpoint recovers, reads resume within this long (at
/// most 1 s of reader backoff, plus the SDK's standard retry of the call in progress, ≤ 1 s + 2 s,
/// plus the 1 s poll interval of a caught-up shard).
const KINESIS_RECOVERY_BOUND: Duration = Duration::from_secs(5);

/// Added to the bound for this machine's load: the records still have to be read, invoked and seen.
const LOAD_MARGIN: Duration = Duration::from_secs(5);

/// Failed connections to wait for while the proxy is cut: enough for the reader's backoff to reach
/// its cap and stay there for several retries (each failed SDK call makes three attempts, each a
/// connection).
const FAILED_CONNECTIONS: usize = 45;

/// Records of `data` values, keyed by position so they spread over the shards.
fn records(prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("{prefix}-key-{i}"), format!("{prefix}-{i}"))).collect()
}

/// How many times each value was processed.
fn counts(values: Vec<String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    counts
}

/// Kinesis becomes unreachable for longer than the reader's longest backoff while records are written.
/// The poller never waits longer than the documented bound between two attempts (so it notices the
/// endpoint is back within the bound, whenever the outage ends); once it is back the records are
/// delivered within the bound, each once; the failed reads were logged as warnings without flooding
/// the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_reads_resume_within_the_bound_after_an_outage() {
    let kinesis = Kinesis::new().await;
    let name = unique("outage");
    let arn = kinesis.create_stream(&name, 1).await;
    let sim = simulator(Default::default()).await;
    let proxy = Proxy::start(&endpoint()).await;
    let mapping = stream_mapping(&arn, "outage-fn", r#""StartingPosition":"TRIM_HORIZON","BatchSize":10"#);
    let process = PollerProcess::new(&mapping, &sim.url());
    let log_path = process.dir.join("stderr.log");
    let mut child = process
        .command(&[])
        .env("AWS_ENDPOINT_URL_KINESIS", proxy.url())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("poller starts");

    let before = records("before", 5);
    kinesis.put(&name, &before).await;
    eventually(Duration::from_secs(60), "records before the outage processed", || async {
        processed_kinesis_data(&sim.invocations()).len() >= before.len()
    })
    .await;

    proxy.cut();
    let cut_at = Instant::now();
    eventually(Duration::from_secs(120), "the poller's reads fail while Kinesis is cut", || async {
        proxy.refused() >= FAILED_CONNECTIONS
    })
    .await;
    let during = records("during", 10);
    kinesis.put(&name, &during).await;
    let outage = cut_at.elapsed();
    let longest_wait = proxy.longest_gap_between_refusals();
    proxy.restore();
    let restored_at = Instant::now();
    eventually(KINESIS_RECOVERY_BOUND + LOAD_MARGIN, "records written during the outage delivered", || async {
        let seen = counts(processed_kinesis_data(&sim.invocations()));
        during.iter().all(|(_, data)| seen.contains_key(data))
    })
    .await;
    eprintln!("outage of {outage:?}; delivered {:?} after recovery", restored_at.elapsed());
    assert!(
        longest_wait <= KINESIS_RECOVERY_BOUND,
        "{longest_wait:?} between two attempts while Kinesis was down; at most {KINESIS_RECOVERY_BOUND:?} expected"
    );

    child.kill().expect("kill");
    child.wait().expect("exit");
    let seen = counts(processed_kinesis_data(&sim.invocations()));
    for (_, data) in before.iter().chain(&during) {
        assert_eq!(seen.get(data), Some(&1), "{data} processed once: {seen:?}");
    }
    let log = std::fs::read_to_string(&log_path).expect("log");
    let warnings = log.lines().filter(|l| l.contains("WARN") && l.contains("read failed")).count();
    assert!(warnings >= 1, "failed reads are warnings:\n{log}");
    // One warning when the streak begins, then at most one every 10 s.
    let most = 2 + outage.as_secs() as usize / 10;
    assert!(warnings <= most, "{warnings} warnings in {outage:?}, at most {most} expected:\n{log}");
}

/// SQS becomes unreachable while messages are sent; receives fail (visibly) and resume once it is
/// back, and every message is processed exactly once. A receive cut off mid-way may have taken messages
/// whose answer never arrived: as on SQS, they come back after the visibility timeout, so the deadline
/// allows for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_receives_resume_after_an_outage_without_losing_a_message() {
    const VISIBILITY_TIMEOUT_SECS: u32 = 10;
    let sqs = Sqs::new().await;
    let queue = sqs
        .create_queue(
            &unique("outage"),
            &[(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, VISIBILITY_TIMEOUT_SECS.to_string())],
        )
        .await;
    let sim = simulator(Default::default()).await;
    let proxy = Proxy::start(&endpoint()).await;
    let mapping = sqs_mapping(&queue, "outage-fn", r#""BatchSize":10"#);
    let process = PollerProcess::new(&mapping, &sim.url());
    let log_path = process.dir.join("stderr.log");
    let mut child = process
        .command(&[])
        .env("AWS_ENDPOINT_URL_SQS", proxy.url())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("poller starts");

    let message = |prefix: &str, i: usize| (format!("{prefix}-{i}"), None);
    let before: Vec<(String, Option<String>)> = (0..10).map(|i| message("before", i)).collect();
    sqs.send(&queue, &before).await;
    // Processed and deleted: a delete cut off by the outage would bring a message back a second time.
    eventually(Duration::from_secs(60), "messages before the outage processed and deleted", || async {
        processed_bodies(&sim.invocations()).len() >= before.len() && sqs.depth(&queue).await == 0
    })
    .await;

    proxy.cut();
    eventually(Duration::from_secs(120), "failed receives logged while SQS is cut", || async {
        std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains("ReceiveMessage failed"))
    })
    .await;
    let during: Vec<(String, Option<String>)> = (0..30).map(|i| message("during", i)).collect();
    sqs.send(&queue, &during).await;
    proxy.restore();
    let deadline = Duration::from_secs(2 * u64::from(VISIBILITY_TIMEOUT_SECS) + 60);
    eventually(deadline, "every message processed and deleted", || async {
        let seen = counts(processed_bodies(&sim.invocations()));
        during.iter().all(|(body, _)| seen.contains_key(body)) && sqs.depth(&queue).await == 0
    })
    .await;

    child.kill().expect("kill");
    child.wait().expect("exit");
    let seen = counts(processed_bodies(&sim.invocations()));
    for (body, _) in before.iter().chain(&during) {
        assert_eq!(seen.get(body), Some(&1), "{body} processed once: {seen:?}");
    }
}

/// A one-shard stream mapping run by one `poller run --lease-table` process whose DynamoDB calls go
/// through a [`Proxy`], started and given records that are processed and checkpointed (a checkpoint
/// lost in an outage would bring them back).
struct LeaseOutage {
    kinesis: Kinesis,
    stream: String,
    sim: loadgen::simulate::SimHandle,
    proxy: Proxy,
    child: std::process::Child,
    log_path: std::path::PathBuf,
    before: Vec<(String, String)>,
    _process: PollerProcess,
}

impl LeaseOutage {
    async fn start(label: &str, failover: &str) -> LeaseOutage {
        let kinesis = Kinesis::new().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&e2e::sdk_config().await);
        let stream = unique(label);
        let arn = kinesis.create_stream(&stream, 1).await;
        let sim = simulator(Default::default()).await;
        let proxy = Proxy::start(&endpoint()).await;
        let mapping = stream_mapping(&arn, &format!("{label}-fn"), r#""StartingPosition":"TRIM_HORIZON""#);
        let uuid = poller::config::load(&mapping).expect("mapping").uuid;
        let prefix = unique(&format!("{label}-leases"));
        let table = format!("{prefix}-{uuid}");
        let process = PollerProcess::new(&mapping, &sim.url());
        let log_path = process.dir.join("stderr.log");
        let child = process
            .command(&["--lease-table", prefix.as_str(), "--lease-failover", failover])
            .env("AWS_ENDPOINT_URL_DYNAMODB", proxy.url())
            .stderr(std::fs::File::create(&log_path).expect("log file"))
            .spawn()
            .expect("poller starts");
        let before = records("before", 5);
        let sequence_numbers = kinesis.put(&stream, &before).await;
        let last = sequence_numbers.last().expect("records").clone();
        eventually(Duration::from_secs(60), "records before the outage checkpointed", || async {
            let item = dynamodb
                .get_item()
                .table_name(&table)
                .key("leaseKey", aws_sdk_dynamodb::types::AttributeValue::S("shardId-000000000000".into()))
                .consistent_read(true)
                .send()
                .await;
            item.ok()
                .and_then(|out| out.item)
                .and_then(|item| item.get("checkpoint")?.as_s().ok().cloned())
                .is_some_and(|checkpoint| checkpoint == last)
        })
        .await;
        LeaseOutage { kinesis, stream, sim, proxy, child, log_path, before, _process: process }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn processed(&self) -> BTreeMap<String, usize> {
        counts(processed_kinesis_data(&self.sim.invocations()))
    }

    /// Waits for the log to say the shard stopped because its lease could not be renewed.
    async fn wait_for_the_shard_to_stop(&self) {
        eventually(Duration::from_secs(120), "the shard stopped for want of renewals", || async {
            let log = self.log();
            log.contains("lease not renewed for the failover time") && log.contains("reading leases failed")
        })
        .await;
    }

    /// Waits until every record of `records` was processed.
    async fn wait_for(&self, records: &[(String, String)], what: &str) {
        eventually(Duration::from_secs(60), what, || async {
            let seen = self.processed();
            records.iter().all(|(_, data)| seen.contains_key(data))
        })
        .await;
    }

    fn stop(mut self) -> BTreeMap<String, usize> {
        self.child.kill().expect("kill");
        self.child.wait().expect("exit");
        self.processed()
    }
}

/// The lease table (DynamoDB) becomes unreachable for longer than the lease failover time: the only
/// poller cannot renew its lease, stops the shard before a peer could take it, and warns that lease
/// reads fail. Once DynamoDB is back it takes its own expired lease back and processes the records
/// written meanwhile, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_table_outage_stops_the_shard_and_it_resumes_after() {
    let outage = LeaseOutage::start("lease-outage", "2s").await;
    outage.proxy.cut();
    outage.wait_for_the_shard_to_stop().await;
    let during = records("during", 5);
    outage.kinesis.put(&outage.stream, &during).await;
    outage.proxy.restore();
    outage.wait_for(&during, "records written during the outage processed").await;
    let before = outage.before.clone();
    let seen = outage.stop();
    for (_, data) in before.iter().chain(&during) {
        assert_eq!(seen.get(data), Some(&1), "{data} processed once: {seen:?}");
    }
}

/// Records arrive while the lease table is unreachable, so a checkpoint is retried during the
/// outage: theirs once they are delivered (Kinesis is up), or the one still waiting for its answer
/// when the table went away (the shard then delivers nothing until it stops). Retrying it must not
/// keep the lease's renewer from running: the shard still stops once the lease is not renewed for
/// the failover time (before, the checkpoint held the lease's lock across its retries, the renewer
/// waited for it, and the shard never stopped while a peer could take its lease). Once DynamoDB is
/// back the shard resumes from its last checkpoint: the records written during the outage are
/// processed (at least once: delivered ones come again), those before it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_the_lease_table_cannot_take_does_not_keep_the_shard_from_stopping() {
    // A failover long enough that the records below are delivered, and their checkpoint is being
    // retried, well before the renewer's failures reach it.
    let outage = LeaseOutage::start("checkpoint-outage", "10s").await;
    outage.proxy.cut();
    let during = records("during", 5);
    outage.kinesis.put(&outage.stream, &during).await;
    outage.wait_for_the_shard_to_stop().await;
    outage.proxy.restore();
    let after = records("after", 5);
    outage.kinesis.put(&outage.stream, &after).await;
    outage.wait_for(&during, "records written during the outage processed").await;
    outage.wait_for(&after, "records written after the outage processed").await;
    let before = outage.before.clone();
    let seen = outage.stop();
    for (_, data) in &before {
        assert_eq!(seen.get(data), Some(&1), "{data} processed once: {seen:?}");
    }
    for (_, data) in during.iter().chain(&after) {
        assert!(seen.get(data).is_some_and(|&n| n >= 1), "{data} processed: {seen:?}");
    }
}
