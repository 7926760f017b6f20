//! SQS mappings and a throttling function: moto server as SQS, the function simulator as the function
//! (its reserved concurrency changed mid-test as `PutFunctionConcurrency` would), the poller in-process.
//!
//! On AWS a throttled batch is retried for one visibility timeout and then let go, which spends a
//! receive: with a redrive policy, messages the function never saw land in the dead-letter queue. The
//! default `hold` mode keeps them instead; `aws` mode keeps AWS's behaviour.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e::{Queue, Sqs, eventually, processed_bodies, records, simulator, sqs_mapping, unique};
use loadgen::simulate::{FunctionConfig, Latency, SimHandle};
use poller::sqs::throttle::ThrottleMode;
use tokio_util::sync::CancellationToken;

/// The queue's visibility timeout: the simulator's functions time out after 3 s, and AWS refuses a
/// shorter visibility timeout than the function's.
const VISIBILITY_TIMEOUT: u32 = 3;
/// The redrive policy's maxReceiveCount, as in the issue: on AWS a throttled message is in the
/// dead-letter queue after (2 + 1) visibility timeouts.
const MAX_RECEIVE_COUNT: u32 = 2;

/// A poller running one mapping in this process with the given throttle mode.
struct Running {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<Vec<poller::MappingReport>, poller::Error>>,
}

impl Running {
    fn start(mapping: &str, sim: &SimHandle, mode: ThrottleMode) -> Running {
        let options = poller::Options {
            lambda_endpoint_url: Some(sim.url()),
            sqs_throttle: mode,
            ..e2e::options(std::env::temp_dir().join(unique("poller-state")))
        };
        let mapping = poller::config::load(mapping).expect("valid mapping");
        let cancel = CancellationToken::new();
        let task = tokio::spawn(poller::Poller::new(vec![mapping], options).run(cancel.clone()));
        Running { cancel, task }
    }

    async fn stop(self) -> poller::stats::Snapshot {
        self.cancel.cancel();
        let reports = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("poller stops within 60 s")
            .expect("poller task did not panic")
            .expect("poller ran");
        reports[0].counters
    }
}

fn ms(n: u64) -> Latency {
    Latency::Fixed(Duration::from_millis(n))
}

fn bodies(prefix: &str, n: usize) -> Vec<(String, Option<String>)> {
    (0..n).map(|i| (format!("{prefix}-{i:04}"), None)).collect()
}

/// A function with reserved concurrency 0: every invocation is throttled.
async fn throttled_function() -> SimHandle {
    simulator(FunctionConfig {
        reserved_concurrency: Some(0),
        ..FunctionConfig::default()
    })
    .await
}

/// Wait past the moment AWS would have moved a throttled message to the dead-letter queue:
/// `maxReceiveCount + 1` visibility timeouts after the poller started, with the function throttling.
async fn wait_past_the_aws_redrive(sim: &SimHandle, function: &str, started: tokio::time::Instant) {
    let aws_redrive = Duration::from_secs(u64::from(VISIBILITY_TIMEOUT * (MAX_RECEIVE_COUNT + 1)));
    eventually(Duration::from_secs(120), "the function throttled past the AWS redrive time", || async {
        started.elapsed() > aws_redrive && sim.stats().functions.get(function).is_some_and(|f| f.throttles > 0)
    })
    .await;
}

/// Reserved concurrency 0, then raised: the messages are held while the function throttles, far longer
/// than it takes AWS to move them to the dead-letter queue, and are delivered, once each and on their
/// first receive, as soon as the function has capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_through_zero_concurrency_then_delivered() {
    let sqs = Sqs::new().await;
    let (queue, dlq) = sqs.create_queue_with_dlq(&unique("hold"), VISIBILITY_TIMEOUT, MAX_RECEIVE_COUNT).await;
    let sent = bodies("hold", 25);
    sqs.send(&queue, &sent).await;
    let sim = throttled_function().await;
    let started = tokio::time::Instant::now();
    let poller = Running::start(&sqs_mapping(&queue, "held-fn", r#""BatchSize":10"#), &sim, ThrottleMode::default());
    wait_past_the_aws_redrive(&sim, "held-fn", started).await;
    assert_eq!(sqs.depth(&dlq).await, 0, "nothing in the dead-letter queue");
    assert_eq!(sqs.depth(&queue).await, 25, "every message still in the queue");
    assert_eq!(sim.stats().functions["held-fn"].invocations, 0, "the function never ran");

    assert!(sim.set_reserved_concurrency("held-fn", Some(2)));
    let expected: BTreeSet<String> = sent.iter().map(|(b, _)| b.clone()).collect();
    eventually(Duration::from_secs(120), "every message processed", || async {
        processed_bodies(&sim.invocations()).into_iter().collect::<BTreeSet<_>>() == expected
    })
    .await;
    eventually(Duration::from_secs(60), "queue empty", || async { sqs.depth(&queue).await == 0 }).await;
    let counters = poller.stop().await;
    assert_eq!(processed_bodies(&sim.invocations()).len(), 25, "no duplicates");
    assert_eq!(sqs.depth(&dlq).await, 0, "nothing in the dead-letter queue");
    for invocation in sim.invocations() {
        for record in records(&invocation) {
            assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1", "no receive spent: {record}");
        }
    }
    assert!(counters.throttles > 0, "{counters}");
    assert_eq!(counters.throttle_releases, 0, "{counters}");
}

/// `--sqs-throttle-mode aws`: AWS's behaviour, the "throttle → DLQ trap". The function never runs and
/// every message lands in the dead-letter queue after maxReceiveCount visibility timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_mode_moves_throttled_messages_to_the_dlq() {
    let sqs = Sqs::new().await;
    let (queue, dlq) = sqs.create_queue_with_dlq(&unique("awsmode"), VISIBILITY_TIMEOUT, MAX_RECEIVE_COUNT).await;
    sqs.send(&queue, &bodies("aws", 5)).await;
    let sim = throttled_function().await;
    let poller = Running::start(&sqs_mapping(&queue, "aws-fn", r#""BatchSize":10"#), &sim, ThrottleMode::Aws);
    eventually(Duration::from_secs(120), "every message in the dead-letter queue", || async {
        sqs.depth(&dlq).await == 5
    })
    .await;
    let counters = poller.stop().await;
    assert_eq!(sim.stats().functions["aws-fn"].invocations, 0, "the function never ran");
    assert!(counters.throttles > 0, "{counters}");
    assert_eq!(counters.throttle_releases, 0, "not hold mode: {counters}");
}

/// The hold has a bound: a batch the function does not take for `max_hold` is let go as on AWS (its
/// receive spent), counted in `throttle_releases`, and so reaches the dead-letter queue in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_held_too_long_is_released_and_counted() {
    let sqs = Sqs::new().await;
    let (queue, dlq) = sqs.create_queue_with_dlq(&unique("bound"), VISIBILITY_TIMEOUT, MAX_RECEIVE_COUNT).await;
    sqs.send(&queue, &bodies("bound", 4)).await;
    let sim = throttled_function().await;
    let mode = ThrottleMode::Hold {
        max_hold: Duration::from_secs(2),
    };
    let poller = Running::start(&sqs_mapping(&queue, "bound-fn", r#""BatchSize":10"#), &sim, mode);
    eventually(Duration::from_secs(180), "every message in the dead-letter queue", || async {
        sqs.depth(&dlq).await == 4
    })
    .await;
    let counters = poller.stop().await;
    assert_eq!(sim.stats().functions["bound-fn"].invocations, 0, "the function never ran");
    // Each message was received maxReceiveCount times, and each receive ended in a release.
    assert!(
        counters.throttle_releases >= u64::from(4 * MAX_RECEIVE_COUNT),
        "every receive ended in a counted release: {counters}"
    );
}

/// Reserved concurrency 2 and a backlog: the mapping's concurrency comes down to the function's capacity
/// and stays there, so throttles are a small fraction of the invocations (on AWS's scaling, five and more
/// concurrent batches keep hitting the limit); no message is lost, duplicated or dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_settles_at_the_functions_capacity() {
    let sqs = Sqs::new().await;
    let (queue, dlq) = sqs.create_queue_with_dlq(&unique("settle"), VISIBILITY_TIMEOUT, MAX_RECEIVE_COUNT).await;
    let sent = bodies("settle", 300);
    sqs.send(&queue, &sent).await;
    let sim = simulator(FunctionConfig {
        latency: ms(50),
        reserved_concurrency: Some(2),
        ..FunctionConfig::default()
    })
    .await;
    let poller = Running::start(&sqs_mapping(&queue, "settle-fn", r#""BatchSize":1"#), &sim, ThrottleMode::default());
    eventually(Duration::from_secs(240), "300 messages processed", || async {
        processed_bodies(&sim.invocations()).len() >= 300
    })
    .await;
    eventually(Duration::from_secs(60), "queue empty", || async { sqs.depth(&queue).await == 0 }).await;
    let counters = poller.stop().await;
    let processed = processed_bodies(&sim.invocations());
    assert_eq!(processed.len(), 300, "no duplicates");
    assert_eq!(processed.into_iter().collect::<BTreeSet<_>>().len(), 300);
    assert_eq!(sqs.depth(&dlq).await, 0, "nothing in the dead-letter queue");
    let stats = &sim.stats().functions["settle-fn"];
    assert!(
        stats.throttles * 4 < stats.invocations,
        "the concurrency settled: {} throttles for {} invocations ({counters})",
        stats.throttles,
        stats.invocations
    );
    assert_eq!(counters.throttles, stats.throttles);
}

/// FIFO: held batches keep their group's order. Two groups, the function throttled, then given
/// capacity: each group is processed in the order sent, each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifo_groups_keep_their_order_while_held() {
    let sqs = Sqs::new().await;
    let (queue, dlq): (Queue, Queue) = sqs
        .create_queue_with_dlq(&format!("{}.fifo", unique("holdfifo")), VISIBILITY_TIMEOUT, MAX_RECEIVE_COUNT)
        .await;
    let sent: Vec<(String, Option<String>)> =
        (0..30).map(|i| (format!("g{}-{i:03}", i % 2), Some(format!("g{}", i % 2)))).collect();
    sqs.send(&queue, &sent).await;
    let sim = throttled_function().await;
    let started = tokio::time::Instant::now();
    let poller = Running::start(&sqs_mapping(&queue, "fifo-fn", r#""BatchSize":4"#), &sim, ThrottleMode::default());
    wait_past_the_aws_redrive(&sim, "fifo-fn", started).await;
    assert!(sim.set_reserved_concurrency("fifo-fn", Some(1)));
    eventually(Duration::from_secs(180), "every message processed", || async {
        processed_bodies(&sim.invocations()).len() >= 30
    })
    .await;
    eventually(Duration::from_secs(60), "queue empty", || async { sqs.depth(&queue).await == 0 }).await;
    poller.stop().await;
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for body in processed_bodies(&sim.invocations()) {
        by_group.entry(body[..2].to_owned()).or_default().push(body);
    }
    for (group, got) in &by_group {
        let want: Vec<String> = sent.iter().map(|(b, _)| b.clone()).filter(|b| b.starts_with(group.as_str())).collect();
        assert_eq!(got, &want, "group {group} in order, once each");
    }
    assert_eq!(sqs.depth(&dlq).await, 0, "nothing in the dead-letter queue");
}
