//! `Event` invocations end to end against moto's SQS (scripts/test.sh starts moto and exports
//! `AWS_ENDPOINT_URL_SQS` and dummy credentials): the simulator answers 202, runs the function as
//! Lambda does (retries included) and sends invocation records to the function's destinations;
//! `loadgen run --destination-queue` matches them to the requests it sent by request id.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_sqs::config::{Credentials, Region};
use loadgen::simulate::{EventInvokeConfig, FunctionConfig, SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_loadgen");
/// moto's account.
const ACCOUNT: &str = "123456789012";

/// moto's SQS, as scripts/test.sh exports it.
fn sqs() -> aws_sdk_sqs::Client {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SQS")
        .expect("AWS_ENDPOINT_URL_SQS is unset: run under scripts/test.sh, which starts moto");
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A new queue: its name and URL.
async fn new_queue(sqs: &aws_sdk_sqs::Client, role: &str) -> (String, String) {
    let name = format!("loadgen-async-{role}-{}", uuid::Uuid::new_v4().simple());
    let url = sqs.create_queue().queue_name(&name).send().await.unwrap();
    (name, url.queue_url.unwrap())
}

/// A simulator serving one function, `name`, as `config` says; invocations are recorded.
async fn simulator(name: &str, config: FunctionConfig) -> SimHandle {
    let config = SimConfig {
        record: true,
        functions: BTreeMap::from([(name.to_owned(), config)]),
        ..SimConfig::default()
    };
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// `loadgen run` of `requests` Event invocations of `function` at the simulator, collecting on
/// `queue_url` for at most `grace` after the run.
async fn loadgen_events(
    sim: &SimHandle,
    function: &str,
    requests: u32,
    queue_url: &str,
    grace: &str,
) -> std::process::Output {
    let requests = requests.to_string();
    let endpoint = sim.url();
    tokio::process::Command::new(BIN)
        .args([
            "run",
            "--function",
            function,
            "--endpoint-url",
            &endpoint,
            "--invocation-type",
            "Event",
            "--rate",
            "50",
            "--requests",
            &requests,
            "--destination-queue",
            queue_url,
            "--destination-grace",
            grace,
            "--metrics-addr",
            "off",
            "--no-progress",
            "--json",
        ])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

/// [`loadgen_events`] with a generous grace (the run stops as soon as every record is in), which
/// must succeed; returns the JSON report.
async fn run_events(sim: &SimHandle, function: &str, requests: u32, queue_url: &str) -> Value {
    let output = loadgen_events(sim, function, requests, queue_url, "120s").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

async fn queue_is_empty(sqs: &aws_sdk_sqs::Client, url: &str) -> bool {
    let received = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    received.messages.unwrap_or_default().is_empty()
}

/// Every Event invocation of a 20 ms function with an on-success queue is matched: end to end is
/// at least the function's duration, and beyond the 202.
#[tokio::test(flavor = "multi_thread")]
async fn every_event_invocation_is_matched_to_its_success_record() {
    let sqs = sqs();
    let (name, url) = new_queue(&sqs, "ok").await;
    let function = FunctionConfig {
        latency: "20ms".parse().unwrap(),
        event_invoke: EventInvokeConfig {
            // The ARN form, resolved against AWS_ENDPOINT_URL_SQS.
            on_success: Some(format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")),
            ..EventInvokeConfig::default()
        },
        ..FunctionConfig::default()
    };
    let sim = simulator("async-ok", function).await;
    let n = 40;
    let report = run_events(&sim, "async-ok", n, &url).await;

    assert_eq!(report["outcomes"]["success"]["count"], n, "{report:#}");
    let e = &report["end_to_end"];
    assert_eq!(e["accepted"], n, "{e:#}");
    assert_eq!(e["completed"], n, "{e:#}");
    assert_eq!(e["not_completed"], 0, "{e:#}");
    assert_eq!(e["conditions"], json!({"Success": n}), "{e:#}");
    assert_eq!(e["enqueue_ms"]["count"], n);
    assert_eq!(e["end_to_end_ms"]["count"], n);
    let ms = |v: &Value| v.as_f64().unwrap();
    // Whole milliseconds on both sides, so never below the drawn 20 ms.
    assert!(ms(&e["end_to_end_ms"]["min"]) >= 20.0, "{e:#}");
    assert!(
        ms(&e["end_to_end_ms"]["p50"]) >= ms(&e["enqueue_ms"]["p50"]),
        "{e:#}"
    );
    assert!(
        ms(&e["end_to_end_ms"]["max"]) >= ms(&e["enqueue_ms"]["min"]),
        "{e:#}"
    );
    // The simulator ran each one once; loadgen deleted the records it matched.
    assert_eq!(sim.stats().functions["async-ok"].invocations, u64::from(n));
    assert!(queue_is_empty(&sqs, &url).await);
    sim.shutdown().await.unwrap();
}

/// A function that always fails, with one retry after 10 ms, sends `RetriesExhausted` records in
/// AWS's shape to its on-failure queue: invoked twice, the 202's request id, the event, and the
/// last error. `loadgen run` counts them by condition.
#[tokio::test(flavor = "multi_thread")]
async fn failed_events_exhaust_their_retries_onto_the_failure_queue() {
    let sqs = sqs();
    let (_, ok_url) = new_queue(&sqs, "unused").await;
    let (_, failed_url) = new_queue(&sqs, "failed").await;
    let function = FunctionConfig {
        error_rate: 1.0,
        event_invoke: EventInvokeConfig {
            maximum_retry_attempts: 1,
            retry_delays: vec![Duration::from_millis(10)],
            on_success: Some(ok_url.clone()),
            on_failure: Some(failed_url.clone()),
            ..EventInvokeConfig::default()
        },
        ..FunctionConfig::default()
    };
    let sim = simulator("async-fail", function).await;

    // One invocation by hand: the record as a consumer of the queue sees it.
    let payload = json!({"order": 7});
    let request_id = invoke_event(&sim, "async-fail", &payload).await;
    let record = next_record(&sqs, &failed_url).await;
    let context = &record["requestContext"];
    assert_eq!(context["requestId"], request_id.as_str(), "{record:#}");
    assert_eq!(context["condition"], "RetriesExhausted");
    assert_eq!(context["approximateInvokeCount"], 2);
    assert_eq!(
        context["functionArn"],
        format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:async-fail:$LATEST")
    );
    assert_eq!(record["version"], "1.0");
    assert!(humantime::parse_rfc3339(record["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(record["requestPayload"], payload);
    assert_eq!(
        record["responseContext"],
        json!({"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"})
    );
    assert_eq!(record["responsePayload"]["errorType"], "SimulatedError");
    let runs = sim
        .invocations()
        .iter()
        .filter(|i| i.request_id == request_id)
        .count();
    assert_eq!(runs, 2);

    // Through loadgen: every one of them ends RetriesExhausted.
    let n = 10;
    let report = run_events(&sim, "async-fail", n, &failed_url).await;
    let e = &report["end_to_end"];
    assert_eq!(e["completed"], n, "{e:#}");
    assert_eq!(e["not_completed"], 0, "{e:#}");
    assert_eq!(e["conditions"], json!({"RetriesExhausted": n}), "{e:#}");
    // The record read by hand above was deleted; nothing else is in the queue.
    assert_eq!(e["foreign"], 0, "{e:#}");
    // Nothing succeeded, so the on-success queue stayed empty.
    assert!(queue_is_empty(&sqs, &ok_url).await);
    sim.shutdown().await.unwrap();
}

/// Receives one message from `url` (long polls until one arrives) as JSON.
async fn next_record(sqs: &aws_sdk_sqs::Client, url: &str) -> Value {
    loop {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .wait_time_seconds(20)
            .send()
            .await
            .unwrap();
        if let Some(message) = received.messages.unwrap_or_default().into_iter().next() {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            break serde_json::from_str(message.body().unwrap()).unwrap();
        }
    }
}

/// An `Event` invocation and its request id.
async fn invoke_event(sim: &SimHandle, function: &str, payload: &Value) -> String {
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/2015-03-31/functions/{function}/invocations",
            sim.url()
        ))
        .header("X-Amz-Invocation-Type", "Event")
        .json(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    answer.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A throttle is no retry attempt: with reserved concurrency 1 and a function of 2 s, the second
/// of two events is throttled, goes back to the queue and runs when the first is done (Lambda's
/// backoff from 1 s), and both succeed with one invocation each. With reserved concurrency 0 the
/// function never runs: the event goes to the on-failure queue at once as
/// `ZeroReservedConcurrency`, invoked 0 times, without response members.
#[tokio::test(flavor = "multi_thread")]
async fn throttled_events_wait_for_a_free_environment_and_zero_concurrency_fails_at_once() {
    let sqs = sqs();
    let (_, ok_url) = new_queue(&sqs, "ok").await;
    let (_, failed_url) = new_queue(&sqs, "failed").await;
    let function = FunctionConfig {
        latency: "2s".parse().unwrap(),
        timeout: Duration::from_secs(10),
        reserved_concurrency: Some(1),
        event_invoke: EventInvokeConfig {
            on_success: Some(ok_url.clone()),
            on_failure: Some(failed_url.clone()),
            ..EventInvokeConfig::default()
        },
        ..FunctionConfig::default()
    };
    let sim = simulator("busy", function).await;
    let first = invoke_event(&sim, "busy", &json!({"n": 1})).await;
    let second = invoke_event(&sim, "busy", &json!({"n": 2})).await;
    let mut succeeded = BTreeMap::new();
    for _ in 0..2 {
        let record = next_record(&sqs, &ok_url).await;
        let context = &record["requestContext"];
        assert_eq!(context["condition"], "Success", "{record:#}");
        assert_eq!(context["approximateInvokeCount"], 1, "{record:#}");
        assert_eq!(
            record["responseContext"],
            json!({"statusCode": 200, "executedVersion": "$LATEST"})
        );
        succeeded.insert(
            context["requestId"].as_str().unwrap().to_owned(),
            record["requestPayload"].clone(),
        );
    }
    assert_eq!(
        succeeded,
        BTreeMap::from([(first, json!({"n": 1})), (second, json!({"n": 2}))])
    );
    let stats = &sim.stats().functions["busy"];
    assert_eq!(stats.invocations, 2);
    assert!(stats.throttles >= 1, "{stats:?}");

    assert!(sim.set_reserved_concurrency("busy", Some(0)));
    let disabled = invoke_event(&sim, "busy", &json!({"n": 3})).await;
    let record = next_record(&sqs, &failed_url).await;
    assert_eq!(record["requestContext"]["requestId"], disabled.as_str());
    assert_eq!(
        record["requestContext"]["condition"],
        "ZeroReservedConcurrency"
    );
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 0);
    assert_eq!(record["requestPayload"], json!({"n": 3}));
    assert!(record.get("responseContext").is_none(), "{record:#}");
    assert!(record.get("responsePayload").is_none(), "{record:#}");
    sim.shutdown().await.unwrap();
}

/// Invocations whose record never comes are reported "not completed" once the grace period after
/// the run is over; a queue that cannot be read fails the run and names it.
#[tokio::test(flavor = "multi_thread")]
async fn missing_records_are_not_completed_and_a_missing_queue_is_an_error() {
    let sqs = sqs();
    let (_, url) = new_queue(&sqs, "silent").await;
    // No destination: the function runs, no record is ever sent.
    let sim = simulator("silent", FunctionConfig::default()).await;
    let n = 5;
    let output = loadgen_events(&sim, "silent", n, &url, "2s").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let e = &report["end_to_end"];
    assert_eq!(e["accepted"], n, "{e:#}");
    assert_eq!(e["completed"], 0, "{e:#}");
    assert_eq!(e["not_completed"], n, "{e:#}");
    assert_eq!(e["end_to_end_ms"], Value::Null, "{e:#}");

    let missing = url.replace("loadgen-async-silent", "loadgen-async-missing");
    let output = loadgen_events(&sim, "silent", 1, &missing, "2s").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("target.destination_queue {missing}")),
        "{stderr}"
    );
    sim.shutdown().await.unwrap();
}

/// An event that would be older than `maximum_event_age` by its next attempt is discarded:
/// `EventAgeExceeded` on the on-failure queue, invoked once, with the failed attempt's response.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_too_old_for_its_retry_is_discarded() {
    let sqs = sqs();
    let (_, failed_url) = new_queue(&sqs, "aged").await;
    let function = FunctionConfig {
        error_rate: 1.0,
        event_invoke: EventInvokeConfig {
            maximum_event_age: Duration::from_millis(50),
            retry_delays: vec![Duration::from_secs(60)],
            on_failure: Some(failed_url.clone()),
            ..EventInvokeConfig::default()
        },
        ..FunctionConfig::default()
    };
    let sim = simulator("aged", function).await;
    let request_id = invoke_event(&sim, "aged", &json!({"n": 1})).await;
    let record = next_record(&sqs, &failed_url).await;
    let context = &record["requestContext"];
    assert_eq!(context["requestId"], request_id.as_str(), "{record:#}");
    assert_eq!(context["condition"], "EventAgeExceeded");
    assert_eq!(context["approximateInvokeCount"], 1);
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    assert_eq!(sim.stats().functions["aged"].invocations, 1);
    sim.shutdown().await.unwrap();
}

/// Ctrl-C during the collection (the run's stop token) ends it after one look at the queue: what
/// is not in by then is not completed, without waiting out the grace period.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_collection_ends_without_waiting_for_the_grace_period() {
    use loadgen::plan::DestinationPlan;
    use loadgen::run::destination::{Accepted, collect};
    use tokio_util::sync::CancellationToken;

    let sqs = sqs();
    let (_, url) = new_queue(&sqs, "stopped").await;
    let grace = Duration::from_secs(600);
    let plan = DestinationPlan {
        queue_url: url,
        grace,
    };
    let accepted = vec![Accepted {
        request_id: "never-completed".to_owned(),
        sent_at: std::time::SystemTime::now(),
        enqueue: Duration::from_millis(1),
    }];
    let stop = CancellationToken::new();
    stop.cancel();
    let started = std::time::Instant::now();
    let result = collect(&plan, Some("us-east-1"), accepted, &stop)
        .await
        .unwrap();
    assert!(started.elapsed() < grace / 2, "{:?}", started.elapsed());
    assert_eq!(
        (result.accepted, result.completed, result.not_completed),
        (1, 0, 1)
    );
}
