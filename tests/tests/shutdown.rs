//! How `poller run` stops, with the real binary against moto and the function simulator: the drain
//! deadline (`--shutdown-timeout`) abandons work that cannot finish without losing it, a repeated
//! SIGTERM does not cut the drain short, a half-open HTTP client does not hold the exit, and a
//! mapping that cannot run makes the exit status non-zero unless `--keep-going` lets the others run.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use e2e::process::{Poller, send_signal};
use e2e::{Kinesis, Queue, Sqs, eventually, processed_bodies, processed_kinesis_data, simulator, sqs_mapping, stream_mapping, unique};
use loadgen::simulate::{FunctionConfig, Invocation, Latency};
use tokio::io::AsyncWriteExt;

/// The drain deadline the tests give the poller.
const SHUTDOWN_TIMEOUT: &str = "2s";

/// How long the poller may take to exit after SIGTERM when the drain deadline is 2 s: the deadline,
/// the 5 s the code gives mappings to settle after it, and a wide margin for a loaded machine. Far
/// below the slow function's run time, which a poller without a deadline would wait for.
const EXIT_WITHIN: Duration = Duration::from_secs(45);

/// Like [`EXIT_WITHIN`] for the default drain deadline of 25 s.
const DEFAULT_EXIT_WITHIN: Duration = Duration::from_secs(75);

/// Deadline for conditions that take a few polls on a loaded machine.
const WAIT: Duration = Duration::from_secs(90);

/// A function that takes far longer than any deadline of these tests.
fn slow_function() -> FunctionConfig {
    FunctionConfig {
        latency: Latency::Fixed(Duration::from_secs(600)),
        timeout: Duration::from_secs(900),
        ..FunctionConfig::default()
    }
}

fn bodies(n: usize, prefix: &str) -> Vec<(String, Option<String>)> {
    (0..n).map(|i| (format!("{prefix}{i:02}"), None)).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_batches_past_the_drain_deadline_are_made_visible_and_processed_after_restart() {
    let sqs = Sqs::new().await;
    // Far longer than the test: only ChangeMessageVisibility 0 brings abandoned messages back in time.
    let queue = sqs
        .create_queue(&unique("drain"), &[(QueueAttributeName::VisibilityTimeout, "900".to_owned())])
        .await;
    let sent = bodies(4, "m");
    sqs.send(&queue, &sent).await;
    let slow = simulator(slow_function()).await;
    let mapping = sqs_mapping(&queue, "slow-fn", r#""BatchSize":10"#);
    // The default deadline (25 s): long polls dropped at the signal end on the server within 20 s,
    // before the abandoned messages are made visible, so none of them can take those messages.
    let first = Poller::start(std::slice::from_ref(&mapping), &slow.url(), &[]);
    eventually(WAIT, "a batch in flight", || async {
        slow.stats().functions.get("slow-fn").is_some_and(|f| f.concurrency > 0)
    })
    .await;

    let signalled = Instant::now();
    first.signal("TERM");
    let (status, report, stderr) = first.wait(DEFAULT_EXIT_WITHIN);
    let took = signalled.elapsed();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stderr.contains("records abandoned"), "the log says what was abandoned:\n{stderr}");
    assert!(!stderr.contains(" 0 records abandoned"), "the batch in flight was abandoned:\n{stderr}");
    assert!(!stderr.contains("did not stop after the drain deadline"), "settled, not aborted:\n{stderr}");
    assert!(report.contains("deleted=0"), "nothing processed, nothing deleted: {report}");
    eprintln!("exited {took:?} after SIGTERM");

    // Every message, those abandoned in flight included, is processed after a restart, long before
    // the visibility timeout would have let them reappear; none twice.
    let fast = simulator(FunctionConfig::default()).await;
    let second = Poller::start(&[mapping], &fast.url(), &[]);
    eventually(WAIT, "every message processed after the restart", || async {
        processed_bodies(&fast.invocations()).len() >= sent.len() && sqs.depth(&queue).await == 0
    })
    .await;
    let expected: Vec<String> = sent.iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(sorted(processed_bodies(&fast.invocations())), expected, "each message once");
    second.signal("TERM");
    let (status, _, stderr) = second.wait(EXIT_WITHIN);
    assert!(status.success(), "{status}\n{stderr}");
}

fn by_seq(mut invocations: Vec<Invocation>) -> Vec<Invocation> {
    invocations.sort_by_key(|i| i.seq);
    invocations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kinesis_batches_past_the_drain_deadline_are_read_again_after_restart() {
    kinesis_drain(r#""StartingPosition":"TRIM_HORIZON","BatchSize":5"#).await;
}

/// The same with a tumbling window, whose shard worker runs its own loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kinesis_window_batches_past_the_drain_deadline_are_read_again_after_restart() {
    kinesis_drain(r#""StartingPosition":"TRIM_HORIZON","BatchSize":5,"TumblingWindowInSeconds":60"#).await;
}

/// A Kinesis mapping (`keys`) whose function outlasts the drain deadline: the poller exits in time,
/// checkpoints nothing that did not complete, and a restart delivers every record once, in order.
async fn kinesis_drain(keys: &str) {
    let kinesis = Kinesis::new().await;
    let name = unique("drain");
    let arn = kinesis.create_stream(&name, 1).await;
    let data: Vec<String> = (0..10).map(|i| format!("k{i:02}")).collect();
    let records: Vec<(String, String)> = data.iter().map(|d| ("key".to_owned(), d.clone())).collect();
    kinesis.put(&name, &records).await;
    let mapping = stream_mapping(&arn, "slow-fn", keys);
    let dir = std::env::temp_dir().join(unique("poller-drain"));

    let slow = simulator(slow_function()).await;
    let first = Poller::start_in(dir.clone(), std::slice::from_ref(&mapping), &slow.url(), &["--shutdown-timeout", SHUTDOWN_TIMEOUT]);
    eventually(WAIT, "a batch in flight", || async {
        slow.stats().functions.get("slow-fn").is_some_and(|f| f.concurrency > 0)
    })
    .await;
    first.signal("TERM");
    let (status, report, stderr) = first.wait(EXIT_WITHIN);
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stderr.contains("records abandoned"), "the log says what was abandoned:\n{stderr}");
    assert!(!stderr.contains(" 0 records abandoned"), "the batch in flight was abandoned:\n{stderr}");
    assert!(!stderr.contains("did not stop after the drain deadline"), "settled, not aborted:\n{stderr}");
    assert!(report.contains("checkpoints=0"), "nothing completed, nothing checkpointed: {report}");

    // The same state directory: the lease was released and the checkpoint is where it was, so the
    // abandoned batch is delivered again, and every record once, in order.
    let fast = simulator(FunctionConfig::default()).await;
    let second = Poller::start_in(dir, &[mapping], &fast.url(), &[]);
    eventually(WAIT, "every record processed after the restart", || async {
        processed_kinesis_data(&fast.invocations()).len() >= data.len()
    })
    .await;
    assert_eq!(processed_kinesis_data(&by_seq(fast.invocations())), data, "in order, each once");
    second.signal("TERM");
    let (status, _, stderr) = second.wait(EXIT_WITHIN);
    assert!(status.success(), "{status}\n{stderr}");
}

/// GNU `timeout` forwards its SIGTERM to the poller and again to its process group, and an operator
/// may signal once more: the drain started by the first SIGTERM still finishes the batch in flight,
/// and the exit status is 0 (`--preserve-status` passes the poller's on).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_sigterms_do_not_cut_the_drain_short() {
    let sqs = Sqs::new().await;
    let queue = sqs
        .create_queue(&unique("term2"), &[(QueueAttributeName::VisibilityTimeout, "120".to_owned())])
        .await;
    sqs.send(&queue, &bodies(3, "t")).await;
    let sim = simulator(FunctionConfig {
        latency: Latency::Fixed(Duration::from_secs(3)),
        ..FunctionConfig::default()
    })
    .await;
    let dir = std::env::temp_dir().join(unique("poller-term2"));
    let poller = Poller::start_under(
        &["timeout", "--preserve-status", "600"],
        dir,
        &[sqs_mapping(&queue, "term-fn", r#""BatchSize":10"#)],
        &sim.url(),
        &[],
    );
    eventually(WAIT, "a batch in flight", || async {
        sim.stats().functions.get("term-fn").is_some_and(|f| f.concurrency > 0)
    })
    .await;
    let poller_pid = child_of(poller.child.id());
    poller.signal("TERM");
    eventually(WAIT, "the drain started", || async { poller.stderr().contains("shutting down") }).await;
    send_signal(poller_pid, "TERM");

    let (status, _, stderr) = poller.wait(EXIT_WITHIN);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let processed = processed_bodies(&sim.invocations());
    assert!(!processed.is_empty(), "the batch in flight finished");
    assert_eq!(
        sqs.depth(&queue).await,
        3 - processed.len() as u64,
        "what was processed was deleted, nothing else was held: {processed:?}"
    );
}

/// The only child process of `pid`.
fn child_of(pid: u32) -> u32 {
    let out = std::process::Command::new("pgrep").args(["-P", &pid.to_string()]).output().expect("pgrep");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| panic!("one child of {pid}: {text:?}"))
}

/// A client that sends half a request to the metrics port and waits: SIGTERM still stops the poller
/// (the server closes the connection instead of waiting for the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_half_open_metrics_client_does_not_hold_the_exit() {
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("half"), &[]).await;
    let sim = simulator(FunctionConfig::default()).await;
    let poller = Poller::start(&[sqs_mapping(&queue, "half-fn", "")], &sim.url(), &["--shutdown-timeout", SHUTDOWN_TIMEOUT]);
    eventually(WAIT, "the poller ready", || async { poller.readyz().await.is_some_and(|(s, _)| s == 200) }).await;
    let mut half_open = tokio::net::TcpStream::connect(poller.addr).await.expect("connects");
    half_open.write_all(b"GET /metrics HTTP/1.1\r\nHost: poller\r\n").await.expect("half a request");

    poller.signal("TERM");
    let (status, _, stderr) = poller.wait(EXIT_WITHIN);
    assert!(status.success(), "{status}\n{stderr}");
    drop(half_open);
}

/// A mapping whose queue does not exist, and one that works.
async fn good_and_missing() -> (Sqs, Queue, String, String) {
    let sqs = Sqs::new().await;
    let good = sqs.create_queue(&unique("good"), &[]).await;
    let name = unique("missing");
    let missing = Queue {
        url: String::new(),
        arn: format!("arn:aws:sqs:us-east-1:123456789012:{name}"),
        name,
    };
    let (good_mapping, missing_mapping) = (sqs_mapping(&good, "good-fn", ""), sqs_mapping(&missing, "missing-fn", ""));
    (sqs, good, good_mapping, missing_mapping)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mapping_that_cannot_start_stops_the_process() {
    let (_sqs, _good, good, missing) = good_and_missing().await;
    let sim = simulator(FunctionConfig::default()).await;
    let poller = Poller::start(&[good, missing], &sim.url(), &[]);
    let (status, _, stderr) = poller.wait(WAIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("AWS.SimpleQueueService.NonExistentQueue"), "the reason: {stderr}");
}

/// `--keep-going`: the mapping that works runs, `/readyz` names the failed one, and after SIGTERM
/// the process exits 0 with both in its report and the failure on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_going_runs_the_other_mappings() {
    let (sqs, good_queue, good, missing) = good_and_missing().await;
    let missing_uuid = poller::config::load(&missing).expect("valid").uuid;
    let sim = simulator(FunctionConfig::default()).await;
    let poller = Poller::start(&[good, missing], &sim.url(), &["--keep-going"]);
    sqs.send(&good_queue, &[("works".to_owned(), None)]).await;
    eventually(WAIT, "the working mapping processed its message", || async {
        processed_bodies(&sim.invocations()) == ["works"]
    })
    .await;
    // The mappings start one after the other: the missing queue's lookup may still be under way.
    eventually(WAIT, "/readyz names the mapping that could not start", || async {
        poller.readyz().await.is_some_and(|(_, body)| body["mappings"][1]["state"] != "starting")
    })
    .await;
    let (status, body) = poller.readyz().await.expect("/readyz answers");
    assert_eq!(status, 503, "{body}");
    let failed = &body["mappings"][1];
    assert_eq!((failed["uuid"].as_str(), failed["state"].as_str()), (Some(missing_uuid.as_str()), Some("failed")), "{body}");
    assert!(failed["reason"].as_str().is_some_and(|r| r.contains("NonExistentQueue")), "{body}");
    assert_eq!(body["mappings"][0]["ready"], true, "{body}");

    poller.signal("TERM");
    let (status, report, stderr) = poller.wait(EXIT_WITHIN);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(report.lines().filter(|l| l.starts_with("mapping ")).count(), 2, "{report}");
    assert!(stderr.contains(&format!("mapping {missing_uuid} failed")), "{stderr}");
}

/// `--keep-going` with no mapping left running: nothing can go on, so the process exits 1 at once,
/// with its report and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_going_with_every_mapping_failed_exits_1() {
    let (_sqs, _good, _, missing) = good_and_missing().await;
    let sim = simulator(FunctionConfig::default()).await;
    let poller = Poller::start(&[missing], &sim.url(), &["--keep-going"]);
    let (status, report, stderr) = poller.wait(WAIT);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(report.starts_with("mapping "), "the report: {report}");
    assert!(stderr.contains("failed: ") && stderr.contains("NonExistentQueue"), "{stderr}");
}
