//! Mapping files end to end: what `aws lambda get-event-source-mapping` and `list-event-source-mappings`
//! print, with `${VAR}` references, run unchanged by the `poller` binary from a directory (moto as SQS, the
//! function simulator as the function).

use std::time::Duration;

use e2e::{Sqs, eventually, poller_binary, processed_bodies, simulator, unique};
use loadgen::simulate::FunctionConfig;

fn bodies(kind: &str, n: usize) -> Vec<(String, Option<String>)> {
    (0..n).map(|i| (format!(r#"{{"kind":"{kind}","n":{i}}}"#), None)).collect()
}

/// A disabled mapping exported with get-event-source-mapping (`State: "Disabled"`, no `Enabled` key) never
/// receives a message, while the enabled mapping of a list-event-source-mappings file next to it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_disabled_mapping_is_not_polled() {
    let sqs = Sqs::new().await;
    let stage = unique("stage");
    let paused = sqs.create_queue(&format!("paused-{stage}"), &[]).await;
    let orders = sqs.create_queue(&format!("orders-{stage}"), &[]).await;
    let n = 20;
    sqs.send(&paused, &bodies("paused", n)).await;
    sqs.send(&orders, &bodies("orders", n)).await;
    let sim = simulator(FunctionConfig::default()).await;

    // The queue names come from the environment, as one file would serve several stages.
    let templated = |queue: &e2e::Queue| queue.arn.replace(&stage, "${POLLER_E2E_STAGE}");
    let dir = std::env::temp_dir().join(unique("mapping-files"));
    std::fs::create_dir_all(&dir).unwrap();
    // Sorted first: without the State rule this mapping would start polling before the other.
    let uuid = uuid_for("paused");
    std::fs::write(
        dir.join("a-paused.json"),
        format!(
            r#"{{
    "UUID": "{uuid}",
    "BatchSize": 10,
    "MaximumBatchingWindowInSeconds": 0,
    "EventSourceArn": "{}",
    "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:paused-fn",
    "LastModified": 1700000000.0,
    "State": "Disabled",
    "StateTransitionReason": "USER_INITIATED",
    "FunctionResponseTypes": [],
    "EventSourceMappingArn": "arn:aws:lambda:us-east-1:123456789012:event-source-mapping:{uuid}"
}}
"#,
            templated(&paused)
        ),
    )
    .unwrap();
    let uuid = uuid_for("orders");
    std::fs::write(
        dir.join("b-orders.json"),
        format!(
            r#"{{"EventSourceMappings": [{{
    "UUID": "{uuid}", "BatchSize": 10, "MaximumBatchingWindowInSeconds": 0, "EventSourceArn": "{}",
    "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:orders-fn", "LastModified": 1700000000.0,
    "State": "Enabled", "StateTransitionReason": "USER_INITIATED", "FunctionResponseTypes": []
}}]}}
"#,
            templated(&orders)
        ),
    )
    .unwrap();

    let mut poller = std::process::Command::new(poller_binary())
        .args(["run", "--mapping"])
        .arg(&dir)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--lambda-endpoint-url", &sim.url(), "--metrics-addr", "off"])
        .env("POLLER_E2E_STAGE", &stage)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("poller starts");
    eventually(Duration::from_secs(120), "every message of the enabled mapping processed", || async {
        processed_bodies(&sim.invocations()).len() >= n
    })
    .await;
    poller.kill().expect("stop the poller");
    poller.wait().unwrap();

    let processed = processed_bodies(&sim.invocations());
    assert!(processed.iter().all(|b| b.contains("orders")), "the disabled mapping invoked: {processed:?}");
    // Never received: each message is still there, and this is its first receive.
    let left = sqs.drain(&paused).await;
    assert_eq!(left.len(), n, "the disabled queue keeps its messages");
    for m in &left {
        let receives = m
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount))
            .map(String::as_str);
        assert_eq!(receives, Some("1"), "a message of the disabled queue was received before: {m:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A UUID in the 36-character form AWS gives mappings, distinct per test run.
fn uuid_for(name: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, unique(name).as_bytes()).to_string()
}
