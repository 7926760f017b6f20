//! SQS mappings end to end: moto server as SQS, the function simulator as the function, the poller
//! in-process. Each test builds its own queues.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use e2e::{RunningPoller, Sqs, eventually, processed_bodies, records, simulator, sqs_mapping, unique};
use loadgen::simulate::{Endpoint, FunctionConfig, InvocationResult, Latency, Rule, RuleAction};

fn fail_when(body_contains: &str, times: Option<u64>) -> Rule {
    Rule {
        body_contains: Some(body_contains.to_owned()),
        action: RuleAction::Fail,
        times,
        ..Rule::default()
    }
}

fn ms(n: u64) -> Latency {
    Latency::Fixed(Duration::from_millis(n))
}

/// 1,000 messages, 1 % poison: every good message is processed exactly once and every poison message
/// ends in the dead-letter queue through the queue's redrive policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_messages_with_one_percent_poison() {
    let sqs = Sqs::new().await;
    let (queue, dlq) = sqs.create_queue_with_dlq(&unique("orders"), 4, 2).await;
    let bodies: Vec<(String, Option<String>)> = (0..1000)
        .map(|i| {
            let kind = if i % 100 == 7 { "poison" } else { "good" };
            (format!(r#"{{"n":{i},"kind":"{kind}"}}"#), None)
        })
        .collect();
    sqs.send(&queue, &bodies).await;

    let sim = simulator(FunctionConfig {
        latency: ms(2),
        rules: vec![fail_when("poison", None)],
        ..FunctionConfig::default()
    })
    .await;
    let poller = RunningPoller::start(
        &[sqs_mapping(&queue, "orders-fn", r#""BatchSize":10,"FunctionResponseTypes":["ReportBatchItemFailures"]"#)],
        &sim.url(),
        None,
    );
    eventually(Duration::from_secs(180), "queue drained and 10 messages in the DLQ", || async {
        sqs.depth(&queue).await == 0 && sqs.depth(&dlq).await == 10
    })
    .await;
    let reports = poller.stop().await;

    let processed = processed_bodies(&sim.invocations());
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for body in &processed {
        *counts.entry(body.as_str()).or_default() += 1;
    }
    let good: Vec<&str> = bodies.iter().map(|(b, _)| b.as_str()).filter(|b| b.contains("good")).collect();
    assert_eq!(good.len(), 990);
    for body in &good {
        // On failure, show every delivery of the message: receive count, when and in which invocation.
        let deliveries = || -> Vec<String> {
            sim.invocations()
                .iter()
                .flat_map(|inv| {
                    records(inv).into_iter().filter(|r| r["body"] == **body).map(move |r| {
                        format!(
                            "seq {} at {} ms: receive count {}, first received {}, {:?}",
                            inv.seq,
                            inv.received_at_ms,
                            r["attributes"]["ApproximateReceiveCount"],
                            r["attributes"]["ApproximateFirstReceiveTimestamp"],
                            inv.result
                        )
                    })
                })
                .collect()
        };
        assert_eq!(counts.get(body), Some(&1), "good message {body} processed once: {:#?}", deliveries());
    }
    assert!(processed.iter().all(|b| b.contains("good")), "no poison message ever succeeded");

    let in_dlq: HashSet<String> = sqs
        .drain(&dlq)
        .await
        .into_iter()
        .map(|m| m.body.unwrap_or_default())
        .collect();
    let poison: HashSet<String> =
        bodies.iter().map(|(b, _)| b.clone()).filter(|b| b.contains("poison")).collect();
    assert_eq!(in_dlq, poison);

    let c = reports[0].counters;
    assert_eq!(c.deleted, 990, "{c}");
    assert!(c.polled >= 1000 + 10, "poison messages are received at least twice: {c}");
    assert_eq!(c.filtered_out, 0);
}

/// A FIFO queue: within each message group, messages are processed in order, exactly once, while
/// groups run concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifo_keeps_order_within_each_group() {
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&format!("{}.fifo", unique("fifo")), &[]).await;
    let mut messages = Vec::new();
    for i in 0..30 {
        for g in ["a", "b", "c", "d", "e"] {
            messages.push((format!("{g}-{i:02}"), Some(g.to_owned())));
        }
    }
    sqs.send(&queue, &messages).await;
    let sim = simulator(FunctionConfig {
        latency: Latency::Uniform {
            min: Duration::from_millis(1),
            max: Duration::from_millis(8),
        },
        ..FunctionConfig::default()
    })
    .await;
    let poller = RunningPoller::start(&[sqs_mapping(&queue, "fifo-fn", r#""BatchSize":10"#)], &sim.url(), None);
    eventually(Duration::from_secs(60), "150 FIFO messages processed", || async {
        processed_bodies(&sim.invocations()).len() >= 150
    })
    .await;
    poller.stop().await;

    let mut invocations = sim.invocations();
    invocations.sort_by_key(|i| i.seq);
    let processed = processed_bodies(&invocations);
    assert_eq!(processed.len(), 150, "each message exactly once");
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for body in processed {
        by_group.entry(body[..1].to_owned()).or_default().push(body);
    }
    for (group, bodies) in by_group {
        let expected: Vec<String> = (0..30).map(|i| format!("{group}-{i:02}")).collect();
        assert_eq!(bodies, expected, "group {group} in order");
    }
    // Every record carries the FIFO attributes.
    let first = &records(&invocations[0])[0];
    for key in ["SequenceNumber", "MessageGroupId", "MessageDeduplicationId"] {
        assert!(first["attributes"][key].is_string(), "FIFO attribute {key} in {first}");
    }
}

/// A FIFO group whose head message keeps failing is blocked until the redrive policy removes that
/// message; the other groups go on meanwhile, and the blocked group resumes in order afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifo_failed_group_blocks_only_itself() {
    // The poison message is seen twice, a visibility timeout apart, before the DLQ takes it, so
    // the test lasts about three of them. 6 s, not less: a heartbeat that a loaded machine delays
    // past the timeout lets SQS deliver the message again (at-least-once), which this test, about
    // blocking and order, must not count.
    let visibility = Duration::from_secs(6);
    let sqs = Sqs::new().await;
    let (queue, dlq) = sqs
        .create_queue_with_dlq(&format!("{}.fifo", unique("blk")), visibility.as_secs() as u32, 2)
        .await;
    let mut messages = vec![("p-00 poison".to_owned(), Some("p".to_owned()))];
    messages.extend((1..5).map(|i| (format!("p-{i:02}"), Some("p".to_owned()))));
    for i in 0..10 {
        for g in ["a", "b", "c"] {
            messages.push((format!("{g}-{i:02}"), Some(g.to_owned())));
        }
    }
    sqs.send(&queue, &messages).await;
    let sim = simulator(FunctionConfig {
        rules: vec![fail_when("poison", None)],
        // Within the queue's visibility timeout, as AWS requires.
        timeout: visibility,
        ..FunctionConfig::default()
    })
    .await;
    let poller = RunningPoller::start(
        &[sqs_mapping(&queue, "fifo-fn", r#""BatchSize":1,"FunctionResponseTypes":["ReportBatchItemFailures"]"#)],
        &sim.url(),
        None,
    );
    eventually(visibility * 15, "34 messages processed and the poison one in the DLQ", || async {
        processed_bodies(&sim.invocations()).len() >= 34 && sqs.depth(&dlq).await == 1
    })
    .await;
    poller.stop().await;

    let mut invocations = sim.invocations();
    invocations.sort_by_key(|i| i.seq);
    let processed = processed_bodies(&invocations);
    assert_eq!(processed.len(), 34);
    // While p was blocked (between its head's first failure and p-01), every other group went on.
    // How far each got depends on the machine's speed, not on the poller, so the test asks for
    // progress, not completion.
    let first_poison = invocations
        .iter()
        .position(|i| records(i).iter().any(|r| r["body"] == "p-00 poison"))
        .expect("the poison message was delivered");
    let blocked = &invocations[first_poison..];
    let unblocked_at = blocked
        .iter()
        .position(|i| records(i).iter().any(|r| r["body"] == "p-01"))
        .expect("p-01 delivered");
    for g in ["a", "b", "c"] {
        assert!(
            blocked[..unblocked_at]
                .iter()
                .any(|i| records(i).iter().any(|r| r["body"].as_str().is_some_and(|b| b.starts_with(g)))),
            "group {g} made progress while p was blocked: {processed:?}"
        );
        let group: Vec<&String> = processed.iter().filter(|b| b.starts_with(g)).collect();
        let expected: Vec<String> = (0..10).map(|i| format!("{g}-{i:02}")).collect();
        assert_eq!(group, expected.iter().collect::<Vec<_>>(), "group {g} in order");
    }
    let p: Vec<&String> = processed.iter().filter(|b| b.starts_with("p-")).collect();
    assert_eq!(p, ["p-01", "p-02", "p-03", "p-04"]);
    let poison_attempts = invocations
        .iter()
        .filter(|i| records(i).iter().any(|r| r["body"] == "p-00 poison"))
        .count();
    assert_eq!(poison_attempts, 2, "maxReceiveCount 2: two deliveries, then the DLQ");
    assert_eq!(sqs.drain(&dlq).await[0].body(), Some("p-00 poison"));
}

/// ReportBatchItemFailures: the messages not listed are deleted; the listed ones come back after the
/// visibility timeout with ApproximateReceiveCount 2. An invalid response fails the whole batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_batch_response_is_honoured() {
    let sqs = Sqs::new().await;
    let queue = sqs
        .create_queue(&unique("partial"), &[(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "2".into())])
        .await;
    let bodies: Vec<(String, Option<String>)> = (0..10)
        .map(|i| (if i == 3 || i == 7 { format!("m{i} fail-me") } else { format!("m{i}") }, None))
        .collect();
    sqs.send(&queue, &bodies).await;
    let sim = simulator(FunctionConfig {
        rules: vec![fail_when("fail-me", Some(1))],
        timeout: Duration::from_secs(2),
        ..FunctionConfig::default()
    })
    .await;
    let poller = RunningPoller::start(
        &[sqs_mapping(
            &queue,
            "partial-fn",
            r#""BatchSize":10,"MaximumBatchingWindowInSeconds":1,"FunctionResponseTypes":["ReportBatchItemFailures"]"#,
        )],
        &sim.url(),
        None,
    );
    eventually(Duration::from_secs(30), "all 10 messages processed", || async {
        processed_bodies(&sim.invocations()).len() >= 10
    })
    .await;
    eventually(Duration::from_secs(10), "queue empty", || async { sqs.depth(&queue).await == 0 }).await;
    poller.stop().await;

    let mut invocations = sim.invocations();
    invocations.sort_by_key(|i| i.seq);
    assert_eq!(records(&invocations[0]).len(), 10, "one batch of 10 within the 1 s window");
    let InvocationResult::Partial { failed } = &invocations[0].result else {
        panic!("first invocation reports failures: {:?}", invocations[0].result)
    };
    assert_eq!(failed.len(), 2);
    let retried: Vec<serde_json::Value> = invocations[1..].iter().flat_map(records).collect();
    let retried_bodies: HashSet<&str> = retried.iter().filter_map(|r| r["body"].as_str()).collect();
    assert_eq!(retried_bodies, HashSet::from(["m3 fail-me", "m7 fail-me"]), "only the failed ones return");
    for r in &retried {
        assert_eq!(r["attributes"]["ApproximateReceiveCount"], "2");
    }
    let gap = invocations[1].received_at_ms - invocations[0].received_at_ms;
    assert!(gap >= 1500.0, "retry waited for the visibility timeout ({gap} ms)");
    assert_eq!(processed_bodies(&invocations).len(), 10);
}

/// A response AWS considers invalid (`itemIdentifier` missing) fails the whole batch: nothing is
/// deleted and every message is delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_partial_response_fails_the_whole_batch() {
    let sqs = Sqs::new().await;
    let queue = sqs
        .create_queue(&unique("invalid"), &[(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "1".into())])
        .await;
    let bodies: Vec<(String, Option<String>)> = (0..4).map(|i| (format!("m{i}"), None)).collect();
    sqs.send(&queue, &bodies).await;
    let sim = simulator(FunctionConfig {
        rules: vec![Rule {
            action: RuleAction::Respond,
            response: Some(r#"{"batchItemFailures":[{"foo":"notvalid"}]}"#.to_owned()),
            times: Some(1),
            ..Rule::default()
        }],
        timeout: Duration::from_secs(1),
        ..FunctionConfig::default()
    })
    .await;
    let poller = RunningPoller::start(
        &[sqs_mapping(
            &queue,
            "invalid-fn",
            r#""BatchSize":4,"MaximumBatchingWindowInSeconds":1,"FunctionResponseTypes":["ReportBatchItemFailures"]"#,
        )],
        &sim.url(),
        None,
    );
    eventually(Duration::from_secs(30), "queue empty after the retry", || async {
        sqs.depth(&queue).await == 0 && processed_bodies(&sim.invocations()).len() >= 4
    })
    .await;
    let reports = poller.stop().await;
    let mut invocations = sim.invocations();
    invocations.sort_by_key(|i| i.seq);
    assert_eq!(invocations[0].result, InvocationResult::Responded);
    let second: Vec<serde_json::Value> = invocations[1..].iter().flat_map(records).collect();
    assert_eq!(second.len(), 4, "all four delivered again");
    assert!(second.iter().all(|r| r["attributes"]["ApproximateReceiveCount"] == "2"));
    assert_eq!(reports[0].counters.failed_invocations, 1);
}

/// FilterCriteria: only matching messages reach the function; the others are deleted from the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filtered_out_messages_are_deleted_not_invoked() {
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("filter"), &[]).await;
    let mut bodies: Vec<(String, Option<String>)> = Vec::new();
    for i in 0..5 {
        bodies.push((format!(r#"{{"type":"order","n":{i}}}"#), None));
        bodies.push((format!(r#"{{"type":"ping","n":{i}}}"#), None));
    }
    bodies.push(("plain text order".to_owned(), None));
    sqs.send(&queue, &bodies).await;
    let sim = simulator(FunctionConfig::default()).await;
    let pattern = serde_json::to_string(r#"{"body":{"type":["order"]}}"#).unwrap();
    let poller = RunningPoller::start(
        &[sqs_mapping(&queue, "filter-fn", &format!(r#""FilterCriteria":{{"Filters":[{{"Pattern":{pattern}}}]}}"#))],
        &sim.url(),
        None,
    );
    eventually(Duration::from_secs(30), "queue empty", || async { sqs.depth(&queue).await == 0 }).await;
    eventually(Duration::from_secs(10), "5 orders processed", || async {
        processed_bodies(&sim.invocations()).len() >= 5
    })
    .await;
    let reports = poller.stop().await;
    let processed = processed_bodies(&sim.invocations());
    assert_eq!(processed.len(), 5);
    assert!(processed.iter().all(|b| b.contains(r#""type":"order""#)), "{processed:?}");
    let c = reports[0].counters;
    assert_eq!((c.filtered_out, c.deleted, c.invoked), (6, 11, 5), "{c}");
}

/// The record a function receives has AWS's exact shape: key order, string attributes, camelCase
/// message attributes, the body's MD5, the queue ARN and region.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivered_record_has_the_aws_shape() {
    use aws_sdk_sqs::types::MessageAttributeValue;
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("shape"), &[]).await;
    sqs.client
        .send_message()
        .queue_url(&queue.url)
        .message_body("Test message.")
        .message_attributes(
            "count",
            MessageAttributeValue::builder().data_type("Number").string_value("6").build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    let sim = simulator(FunctionConfig::default()).await;
    let poller = RunningPoller::start(&[sqs_mapping(&queue, "shape-fn", "")], &sim.url(), None);
    eventually(Duration::from_secs(30), "one invocation", || async { !sim.invocations().is_empty() }).await;
    poller.stop().await;

    let payload = &sim.invocations()[0].payload;
    let object = payload.as_object().unwrap();
    assert_eq!(object.keys().collect::<Vec<_>>(), ["Records"]);
    let record = &records(&sim.invocations()[0])[0];
    let keys: Vec<&str> = record.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "messageId", "receiptHandle", "body", "attributes", "messageAttributes",
            "md5OfMessageAttributes", "md5OfBody", "eventSource", "eventSourceARN", "awsRegion"
        ]
    );
    assert_eq!(record["body"], "Test message.");
    // The same body and digest as the record in the AWS documentation's SQS event example.
    assert_eq!(record["md5OfBody"], "e4e68fb7bd0e697a0ae8f1bb342846b3", "MD5 of the body");
    assert_eq!(record["eventSource"], "aws:sqs");
    assert_eq!(record["eventSourceARN"], queue.arn.as_str());
    assert_eq!(record["awsRegion"], "us-east-1");
    let attributes = record["attributes"].as_object().unwrap();
    assert_eq!(
        attributes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"]
    );
    assert!(attributes.values().all(|v| v.is_string()), "attribute values are strings");
    assert_eq!(attributes["ApproximateReceiveCount"], "1");
    assert_eq!(
        record["messageAttributes"]["count"],
        serde_json::json!({"stringValue":"6","stringListValues":[],"binaryListValues":[],"dataType":"Number"})
    );
    assert!(record["md5OfMessageAttributes"].as_str().is_some_and(|s| s.len() == 32));
}

/// The plain HTTP target: the event is POSTed to a URL; a 5xx-free 200 response means success.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_target_receives_the_event() {
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("http"), &[]).await;
    sqs.send(&queue, &(0..20).map(|i| (format!("h{i}"), None)).collect::<Vec<_>>()).await;
    let sim = simulator(FunctionConfig::default()).await;
    let poller = RunningPoller::start(
        &[sqs_mapping(&queue, "http-fn", "")],
        "http://127.0.0.1:9", // the Lambda endpoint must not be used
        Some(format!("{}/http/{{function}}", sim.url())),
    );
    eventually(Duration::from_secs(30), "20 messages processed", || async {
        processed_bodies(&sim.invocations()).len() >= 20
    })
    .await;
    eventually(Duration::from_secs(10), "queue empty", || async { sqs.depth(&queue).await == 0 }).await;
    poller.stop().await;
    let invocations = sim.invocations();
    assert!(invocations.iter().all(|i| i.endpoint == Endpoint::Http && i.function == "http-fn"));
    assert_eq!(processed_bodies(&invocations).len(), 20);
}

/// A function with reserved concurrency 1 throttles the mapping's concurrent batches; throttled
/// invokes are retried with backoff and every message is still processed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttles_are_retried_without_losing_messages() {
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("throttle"), &[]).await;
    let bodies: Vec<(String, Option<String>)> = (0..60).map(|i| (format!("t{i}"), None)).collect();
    sqs.send(&queue, &bodies).await;
    let sim = simulator(FunctionConfig {
        latency: ms(30),
        reserved_concurrency: Some(1),
        ..FunctionConfig::default()
    })
    .await;
    let poller = RunningPoller::start(&[sqs_mapping(&queue, "busy-fn", r#""BatchSize":2"#)], &sim.url(), None);
    eventually(Duration::from_secs(60), "60 messages processed", || async {
        processed_bodies(&sim.invocations()).len() >= 60
    })
    .await;
    eventually(Duration::from_secs(10), "queue empty", || async { sqs.depth(&queue).await == 0 }).await;
    let reports = poller.stop().await;
    let processed: HashSet<String> = processed_bodies(&sim.invocations()).into_iter().collect();
    assert_eq!(processed.len(), 60);
    assert_eq!(processed_bodies(&sim.invocations()).len(), 60, "no duplicates");
    assert!(reports[0].counters.throttles > 0, "the simulator throttled: {}", reports[0].counters);
    assert_eq!(sim.stats().functions["busy-fn"].throttles, reports[0].counters.throttles);
}

/// Shutdown finishes the batch in flight: the slow invocation completes and its messages are deleted
/// before `run` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_in_flight_batches() {
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("drain"), &[]).await;
    sqs.send(&queue, &(0..5).map(|i| (format!("d{i}"), None)).collect::<Vec<_>>()).await;
    let sim = simulator(FunctionConfig {
        latency: ms(1500),
        ..FunctionConfig::default()
    })
    .await;
    let poller = RunningPoller::start(&[sqs_mapping(&queue, "slow-fn", r#""BatchSize":5"#)], &sim.url(), None);
    eventually(Duration::from_secs(30), "an invocation in flight", || async {
        sim.stats().functions.get("slow-fn").is_some_and(|f| f.concurrency > 0)
    })
    .await;
    let reports = poller.stop().await;
    assert_eq!(reports[0].counters.invoked, 5);
    assert_eq!(reports[0].counters.deleted, 5, "the in-flight batch was settled before exit");
    assert_eq!(sqs.depth(&queue).await, 0);
}

/// A queue that does not exist stops the poller before it polls, with AWS's error text.
#[tokio::test]
async fn missing_queue_is_reported_with_the_aws_message() {
    let queue = e2e::Queue {
        name: "nope".into(),
        url: String::new(),
        arn: format!("arn:aws:sqs:us-east-1:123456789012:{}", unique("missing")),
    };
    let poller = RunningPoller::start(&[sqs_mapping(&queue, "f", "")], "http://127.0.0.1:9", None);
    let err = poller.result().await.expect_err("missing queue fails");
    assert!(
        err.to_string().contains("AWS.SimpleQueueService.NonExistentQueue"),
        "{err}"
    );
}

/// A batch held longer than the queue's visibility timeout (a 1 s batching window, then a function that
/// runs 1.8 s of its 2 s timeout, against a 2 s visibility timeout) is kept invisible by heartbeats: the
/// messages are not delivered a second time while the function still works on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn visibility_is_extended_while_a_batch_runs() {
    let sqs = Sqs::new().await;
    let queue = sqs
        .create_queue(&unique("slow"), &[(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "2".into())])
        .await;
    sqs.send(&queue, &(0..3).map(|i| (format!("s{i}"), None)).collect::<Vec<_>>()).await;
    let sim = simulator(FunctionConfig {
        latency: ms(1800),
        timeout: Duration::from_secs(2),
        ..FunctionConfig::default()
    })
    .await;
    // BatchSize 4 with 3 messages: the batch waits for the whole window.
    let poller = RunningPoller::start(&[sqs_mapping(&queue, "slow-fn", r#""BatchSize":4,"MaximumBatchingWindowInSeconds":1"#)], &sim.url(), None);
    eventually(Duration::from_secs(30), "the slow batch processed", || async {
        processed_bodies(&sim.invocations()).len() >= 3
    })
    .await;
    eventually(Duration::from_secs(10), "queue empty", || async { sqs.depth(&queue).await == 0 }).await;
    let reports = poller.stop().await;
    assert_eq!(sim.invocations().len(), 1, "one invocation: the messages never reappeared while held");
    assert_eq!(reports[0].counters.deleted, 3);
}

/// The 6 MB invocation payload cap: messages that would pass it go to the next batch, even within
/// BatchSize and the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_stay_under_the_six_megabyte_payload_cap() {
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("big"), &[]).await;
    for i in 0..30 {
        // One at a time: a SendMessageBatch request is limited to 1 MiB.
        let body = format!("{i:02}{}", "x".repeat(240_000));
        sqs.client.send_message().queue_url(&queue.url).message_body(body).send().await.unwrap();
    }
    let sim = simulator(FunctionConfig::default()).await;
    let poller = RunningPoller::start(
        &[sqs_mapping(&queue, "big-fn", r#""BatchSize":100,"MaximumBatchingWindowInSeconds":3,"ScalingConfig":{"MaximumConcurrency":2}"#)],
        &sim.url(),
        None,
    );
    eventually(Duration::from_secs(60), "30 large messages processed", || async {
        processed_bodies(&sim.invocations()).len() >= 30
    })
    .await;
    poller.stop().await;
    let invocations = sim.invocations();
    for inv in &invocations {
        let size = serde_json::to_vec(&inv.payload).unwrap().len();
        assert!(size <= 6_291_456, "payload of {size} bytes");
        assert!(inv.result == InvocationResult::Success, "{:?}", inv.result);
    }
    assert!(invocations.len() >= 2, "7+ MB of messages needs at least two invocations");
    assert_eq!(processed_bodies(&invocations).len(), 30);
}

/// FIFO past the 6 MB cap: one receive of ten ~900 KB messages of one group makes a batch of six and
/// holds four back. When the six fail, the four must not overtake them: the group is processed in order,
/// each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifo_messages_held_back_by_the_payload_cap_wait_for_the_failed_batch() {
    let sqs = Sqs::new().await;
    let queue = sqs
        .create_queue(
            &format!("{}.fifo", unique("capfifo")),
            &[(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "4".into())],
        )
        .await;
    let bodies: Vec<String> = (0..10).map(|i| format!("m{i:02} {}", "x".repeat(900_000))).collect();
    for (i, body) in bodies.iter().enumerate() {
        sqs.client
            .send_message()
            .queue_url(&queue.url)
            .message_body(body)
            .message_group_id("g")
            .message_deduplication_id(i.to_string())
            .send()
            .await
            .expect("SendMessage");
    }
    let sim = simulator(FunctionConfig {
        failure_mode: loadgen::simulate::FailureMode::Error,
        rules: vec![fail_when("m00 ", Some(1))],
        timeout: Duration::from_secs(4),
        ..FunctionConfig::default()
    })
    .await;
    let poller = RunningPoller::start(&[sqs_mapping(&queue, "capfifo-fn", r#""BatchSize":10"#)], &sim.url(), None);
    eventually(Duration::from_secs(120), "10 large FIFO messages processed", || async {
        processed_bodies(&sim.invocations()).len() >= 10
    })
    .await;
    eventually(Duration::from_secs(30), "queue empty", || async { sqs.depth(&queue).await == 0 }).await;
    poller.stop().await;

    let mut invocations = sim.invocations();
    invocations.sort_by_key(|i| i.seq);
    let first: Vec<String> = records(&invocations[0]).iter().map(|r| r["body"].as_str().unwrap()[..3].to_owned()).collect();
    assert_eq!(first, ["m00", "m01", "m02", "m03", "m04", "m05"], "the cap splits the receive after six");
    assert_ne!(invocations[0].result, InvocationResult::Success, "the first batch failed");
    let processed: Vec<String> = processed_bodies(&invocations).iter().map(|b| b[..3].to_owned()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("m{i:02}")).collect();
    assert_eq!(processed, expected, "in order, each once");
}

/// AWS refuses an SQS mapping whose queue's visibility timeout is shorter than the function's timeout, in
/// these words: Lambda target (GetFunctionConfiguration) and HTTP target (--invoke-timeout) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn visibility_timeout_shorter_than_the_function_timeout_is_refused() {
    let sqs = Sqs::new().await;
    let zero = sqs
        .create_queue(&unique("vt0"), &[(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "0".into())])
        .await;
    sqs.send(&zero, &[("never invoked".to_owned(), None)]).await;
    let sim = simulator(FunctionConfig {
        timeout: Duration::from_secs(7),
        ..FunctionConfig::default()
    })
    .await;
    let err = RunningPoller::start(&[sqs_mapping(&zero, "vt-fn", "")], &sim.url(), None)
        .result()
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!("{}: Queue visibility timeout: 0 seconds is less than Function timeout: 7 seconds", zero.arn)
    );

    let ten = sqs
        .create_queue(&unique("vt10"), &[(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "10".into())])
        .await;
    // RunningPoller gives the HTTP target --invoke-timeout 30s.
    let err = RunningPoller::start(&[sqs_mapping(&ten, "vt-fn", "")], "http://127.0.0.1:9", Some(format!("{}/http/vt-fn", sim.url())))
        .result()
        .await
        .expect_err("refused");
    assert!(
        err.to_string().ends_with("Queue visibility timeout: 10 seconds is less than Function timeout: 30 seconds"),
        "{err}"
    );
    assert!(sim.invocations().is_empty(), "nothing was invoked");
}

/// A visibility timeout lowered below the function's timeout while the mapping runs stops the mapping,
/// marked failed with AWS's wording, within a re-check period.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn visibility_timeout_lowered_while_running_stops_the_mapping() {
    use aws_sdk_sqs::types::QueueAttributeName;
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("vtlow"), &[(QueueAttributeName::VisibilityTimeout, "5".into())]).await;
    sqs.send(&queue, &[("first".to_owned(), None)]).await;
    let sim = simulator(FunctionConfig::default()).await;
    let mapping = poller::config::load(&sqs_mapping(&queue, "vtlow-fn", "")).expect("valid mapping");
    let metrics = poller::stats::Metrics::new();
    let counters = std::sync::Arc::new(metrics.mapping(poller::stats::MappingLabels::of(&mapping)));
    let sdk = e2e::sdk_config().await;
    let target = lambda_invoke::Target::Lambda(lambda_invoke::LambdaTarget::new(
        &sdk,
        "vtlow-fn",
        Some(&sim.url()),
        Some(Duration::from_secs(30)),
    ));
    let m = poller::sqs::SqsMapping::connect(mapping, &sdk, target, counters.clone()).await.expect("5 s ≥ 3 s");
    let cancel = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(std::sync::Arc::new(m).run(cancel.clone()));
    eventually(Duration::from_secs(30), "the first message processed", || async {
        processed_bodies(&sim.invocations()).len() == 1
    })
    .await;

    sqs.client
        .set_queue_attributes()
        .queue_url(&queue.url)
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .expect("SetQueueAttributes");
    // The mapping stops by itself (nobody cancels it) within a re-check period and a generous margin.
    tokio::time::timeout(poller::sqs::VISIBILITY_RECHECK * 6, run)
        .await
        .expect("the mapping stopped itself")
        .expect("mapping task");
    assert_eq!(
        counters.health.snapshot().state,
        poller::health::MappingState::Failed(
            "Queue visibility timeout: 1 seconds is less than Function timeout: 3 seconds".to_owned()
        )
    );
    cancel.cancel();
}

/// BatchSize 1 with a backlog: AWS scales on the backlog whatever the batch size, so the mapping goes
/// past the five lanes it starts with.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_size_one_scales_past_five_concurrent_invocations() {
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("scale1"), &[]).await;
    let bodies: Vec<(String, Option<String>)> = (0..300).map(|i| (format!("s{i}"), None)).collect();
    sqs.send(&queue, &bodies).await;
    let sim = simulator(FunctionConfig {
        latency: ms(400),
        ..FunctionConfig::default()
    })
    .await;
    let poller = RunningPoller::start(&[sqs_mapping(&queue, "scale1-fn", r#""BatchSize":1"#)], &sim.url(), None);
    let mut peak = 0;
    eventually(Duration::from_secs(60), "more than 5 concurrent invocations", || {
        let now = sim.stats().functions.get("scale1-fn").map_or(0, |f| f.concurrency);
        peak = peak.max(now);
        async move { now > 5 }
    })
    .await;
    eventually(Duration::from_secs(120), "queue drained", || async { sqs.depth(&queue).await == 0 }).await;
    poller.stop().await;
    let processed: HashSet<String> = processed_bodies(&sim.invocations()).into_iter().collect();
    assert_eq!(processed.len(), 300, "peak {peak}");
}

/// The `poller` binary with the HTTP target and no `--invoke-timeout`: Lambda's minimum function timeout,
/// 1 s, is assumed, so a visibility timeout of 0 is refused and a queue of 1 s runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_target_without_invoke_timeout_assumes_the_minimum_function_timeout() {
    use aws_sdk_sqs::types::QueueAttributeName;
    let sqs = Sqs::new().await;
    let sim = simulator(FunctionConfig::default()).await;
    let http_url = format!("{}/http/{{function}}", sim.url());

    let zero = sqs.create_queue(&unique("http-vt0"), &[(QueueAttributeName::VisibilityTimeout, "0".into())]).await;
    let refused = e2e::PollerProcess::new(&sqs_mapping(&zero, "vt-fn", ""), "http://127.0.0.1:9");
    let out = tokio::process::Command::new(e2e::poller_binary())
        .args(["run", "--mapping"])
        .arg(refused.dir.join("mapping.json"))
        .arg("--state-dir")
        .arg(refused.dir.join("state"))
        .args(["--metrics-addr", "127.0.0.1:0", "--http-url", &http_url])
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("poller runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Queue visibility timeout: 0 seconds is less than Function timeout: 1 seconds"),
        "{stderr}"
    );

    let one = sqs.create_queue(&unique("http-vt1"), &[(QueueAttributeName::VisibilityTimeout, "1".into())]).await;
    sqs.send(&one, &[("through http".to_owned(), None)]).await;
    let mut running = e2e::PollerProcess::new(&sqs_mapping(&one, "vt-fn", ""), "http://127.0.0.1:9").spawn(&["--http-url", &http_url]);
    eventually(Duration::from_secs(60), "the message processed over HTTP", || async {
        processed_bodies(&sim.invocations()) == ["through http"]
    })
    .await;
    running.kill().expect("stop the poller");
    running.wait().expect("poller exits");
}
