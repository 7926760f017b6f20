//! The Kubernetes probes of `poller run`, end to end against moto and the function simulator:
//! `/healthz` answers while the process runs; `/readyz` is 200 only while every mapping is connected
//! and neither its source nor its function has been failing for longer than `--ready-stale-after`,
//! and becomes 200 again once they are back.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use e2e::process::Poller;
use e2e::{Sqs, eventually, processed_bodies, simulator, sqs_mapping, unique};
use loadgen::simulate::{FunctionConfig, SimConfig, Simulator};

/// Small enough for a quick test, large against the poller's retry delays (≤ 10 s between polls).
const STALE_AFTER: &str = "2s";

/// Deadline for conditions that take a few polls on a loaded machine.
const WAIT: Duration = Duration::from_secs(90);

/// Poll `/readyz` until it answers 200 (`ready`) or 503; returns that body. Panics with the last
/// answer after [`WAIT`].
async fn wait_ready(poller: &Poller, ready: bool, what: &str) -> serde_json::Value {
    let want = if ready { 200 } else { 503 };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = poller.readyz().await;
        match answer {
            Some((status, body)) if status == want => return body,
            _ if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {WAIT:?} waiting for {what}; last /readyz: {answer:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_the_source_queue_deleted_and_recreated() {
    let sqs = Sqs::new().await;
    let name = unique("ready-src");
    let attributes = [(QueueAttributeName::VisibilityTimeout, "30".to_owned())];
    let queue = sqs.create_queue(&name, &attributes).await;
    let sim = simulator(FunctionConfig::default()).await;
    let mapping = sqs_mapping(&queue, "ready-fn", "");
    let uuid = poller::config::load(&mapping).expect("valid").uuid;
    let poller = Poller::start(&[mapping], &sim.url(), &["--ready-stale-after", STALE_AFTER]);

    let body = wait_ready(&poller, true, "ready once connected").await;
    assert_eq!(body["ready"], true);
    assert_eq!(body["mappings"][0]["uuid"], uuid.as_str());
    assert_eq!(body["mappings"][0]["state"], "running");
    let (status, live) = poller.get("/healthz").await.expect("/healthz answers");
    assert_eq!((status, live.as_str()), (200, r#"{"status":"ok"}"#));

    sqs.client.delete_queue().queue_url(&queue.url).send().await.expect("DeleteQueue");
    let body = wait_ready(&poller, false, "not ready once polls failed for the bound").await;
    let why = body["mappings"][0]["not_ready"].as_str().unwrap_or_default();
    assert!(why.contains("polls of the source have failed"), "{body}");
    assert_eq!(body["mappings"][0]["state"], "running", "a deleted queue is not fatal: {body}");
    let (status, _) = poller.get("/healthz").await.expect("/healthz answers");
    assert_eq!(status, 200, "alive while not ready");

    let queue = sqs.create_queue(&name, &attributes).await;
    wait_ready(&poller, true, "ready again once the queue is back").await;
    sqs.send(&queue, &[("after".to_owned(), None)]).await;
    eventually(WAIT, "the message sent after recovery processed", || async {
        processed_bodies(&sim.invocations()) == ["after"]
    })
    .await;

    poller.signal("TERM");
    let (status, _, stderr) = poller.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_the_function_gone_and_back() {
    let sqs = Sqs::new().await;
    let queue = sqs
        .create_queue(&unique("ready-fn"), &[(QueueAttributeName::VisibilityTimeout, "60".to_owned())])
        .await;
    let sim = simulator(FunctionConfig::default()).await;
    let addr = sim.addr();
    let poller = Poller::start(
        &[sqs_mapping(&queue, "gone-fn", r#""BatchSize":1"#)],
        &sim.url(),
        &["--ready-stale-after", STALE_AFTER],
    );
    wait_ready(&poller, true, "ready once connected").await;

    // The function's endpoint stops answering; a message makes the poller try to invoke it, and
    // it keeps retrying within the visibility timeout.
    sim.shutdown().await.expect("simulator stops");
    sqs.send(&queue, &[("while-gone".to_owned(), None)]).await;
    let body = wait_ready(&poller, false, "not ready once invokes failed for the bound").await;
    let why = body["mappings"][0]["not_ready"].as_str().unwrap_or_default();
    assert!(why.contains("invoke requests have not reached the function"), "{body}");

    // Back on the same address: the retried invoke reaches it, and the mapping is ready again.
    let config = SimConfig {
        record: true,
        ..Default::default()
    };
    let sim = Simulator::start(config, addr).await.expect("simulator restarts on its address");
    wait_ready(&poller, true, "ready again once the function answers").await;
    eventually(WAIT, "the message processed by the function once back, and deleted", || async {
        processed_bodies(&sim.invocations()) == ["while-gone"] && sqs.depth(&queue).await == 0
    })
    .await;

    poller.signal("TERM");
    let (status, _, stderr) = poller.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}\n{stderr}");
}
