//! Kinesis and DynamoDB Streams mappings end to end: moto as the stream and the destinations, the
//! function simulator as the function, the poller in-process (or as a process, for kill -9).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use e2e::{
    Kinesis, PollerProcess, RunningPoller, Sqs, eventually, kinesis_data, processed_kinesis_data, records, simulator,
    stream_mapping, unique,
};
use loadgen::simulate::{FailureMode, FunctionConfig, Invocation, Latency, Rule, RuleAction, SimHandle};

fn poison_rule() -> Rule {
    Rule {
        body_contains: Some("poison".to_owned()),
        action: RuleAction::Fail,
        ..Rule::default()
    }
}

fn sorted(mut invocations: Vec<Invocation>) -> Vec<Invocation> {
    invocations.sort_by_key(|i| i.seq);
    invocations
}

/// A poller in process for one stream mapping of `arn` to `function`, `extra` its other fields.
fn start(arn: &str, function: &str, extra: &str, sim: &SimHandle) -> RunningPoller {
    RunningPoller::start(&[stream_mapping(arn, function, extra)], &sim.url(), None)
}

/// Waits, up to `within`, until the function has processed at least `n` records.
async fn until_processed(sim: &SimHandle, n: usize, within: Duration) {
    eventually(within, &format!("{n} records processed"), || async {
        processed_kinesis_data(&sim.invocations()).len() >= n
    })
    .await;
}

fn messages(n: usize, key: impl Fn(usize) -> String, data: impl Fn(usize) -> String) -> Vec<(String, String)> {
    (0..n).map(|i| (key(i), data(i))).collect()
}

/// Records of a one-shard stream are delivered in order, exactly once, in batches of BatchSize.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kinesis_records_are_delivered_in_order() {
    let kinesis = Kinesis::new().await;
    let name = unique("orders");
    let arn = kinesis.create_stream(&name, 1).await;
    kinesis.put(&name, &messages(25, |i| format!("k{}", i % 3), |i| format!("r{i:02}"))).await;
    let sim = simulator(FunctionConfig::default()).await;
    let poller = start(&arn, "kin-fn", r#""StartingPosition":"TRIM_HORIZON","BatchSize":10"#, &sim);
    until_processed(&sim, 25, Duration::from_secs(30)).await;
    let reports = poller.stop().await;
    let invocations = sorted(sim.invocations());
    let expected: Vec<String> = (0..25).map(|i| format!("r{i:02}")).collect();
    assert_eq!(processed_kinesis_data(&invocations), expected);
    assert_eq!(invocations.iter().map(|i| records(i).len()).collect::<Vec<_>>(), [10, 10, 5]);
    assert!(reports[0].counters.checkpoints >= 1, "{}", reports[0].counters);
}

/// BisectBatchOnFunctionError isolates a poison record: the batch is halved until the record is alone,
/// it is retried 1 + MaximumRetryAttempts times, discarded with an on-failure record, and every other
/// record is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bisect_isolates_a_poison_record_and_reports_it() {
    let kinesis = Kinesis::new().await;
    let sqs = Sqs::new().await;
    let name = unique("bisect");
    let arn = kinesis.create_stream(&name, 1).await;
    let dlq = sqs.create_queue(&unique("bisect-dlq"), &[]).await;
    let seqs = kinesis
        .put(&name, &messages(8, |_| "same-key".to_owned(), |i| if i == 5 { "r5 poison".to_owned() } else { format!("r{i}") }))
        .await;
    let sim = simulator(FunctionConfig {
        failure_mode: FailureMode::Error,
        rules: vec![poison_rule()],
        ..FunctionConfig::default()
    })
    .await;
    let extra = format!(
        r#""StartingPosition":"TRIM_HORIZON","BatchSize":8,"BisectBatchOnFunctionError":true,
           "MaximumRetryAttempts":2,"DestinationConfig":{{"OnFailure":{{"Destination":"{}"}}}}"#,
        dlq.arn
    );
    let poller = start(&arn, "bisect-fn", &extra, &sim);
    eventually(Duration::from_secs(60), "7 records processed and one failure record", || async {
        processed_kinesis_data(&sim.invocations()).len() >= 7 && sqs.depth(&dlq).await >= 1
    })
    .await;
    let reports = poller.stop().await;

    let invocations = sorted(sim.invocations());
    let sizes: Vec<usize> = invocations.iter().map(|i| records(i).len()).collect();
    assert_eq!(sizes, [8, 4, 4, 2, 1, 1, 1, 1, 2], "halves until the poison record is alone");
    let alone: Vec<&Invocation> = invocations.iter().filter(|i| kinesis_data(i) == ["r5 poison"]).collect();
    assert_eq!(alone.len(), 3, "1 + MaximumRetryAttempts invocations of the poison record alone");
    let processed = processed_kinesis_data(&invocations);
    assert_eq!(processed, ["r0", "r1", "r2", "r3", "r4", "r6", "r7"]);

    let dead = sqs.drain(&dlq).await;
    assert_eq!(dead.len(), 1);
    let body = dead[0].body().unwrap();
    let record: serde_json::Value = serde_json::from_str(body).unwrap();
    let keys: Vec<&str> = record.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["requestContext", "responseContext", "version", "timestamp", "KinesisBatchInfo"]);
    let rc = &record["requestContext"];
    assert!(uuid::Uuid::parse_str(rc["requestId"].as_str().unwrap()).is_ok());
    assert_eq!(rc["functionArn"], "arn:aws:lambda:us-east-1:123456789012:function:bisect-fn");
    assert_eq!(rc["condition"], "RetryAttemptsExhausted");
    assert_eq!(rc["approximateInvokeCount"], 3);
    assert_eq!(
        record["responseContext"],
        serde_json::json!({"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"})
    );
    assert_eq!(record["version"], "1.0");
    let ts = record["timestamp"].as_str().unwrap();
    assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "ms precision: {ts}");
    let info = &record["KinesisBatchInfo"];
    assert_eq!(info["shardId"], "shardId-000000000000");
    assert_eq!(info["startSequenceNumber"], seqs[5].as_str());
    assert_eq!(info["endSequenceNumber"], seqs[5].as_str());
    assert_eq!(info["batchSize"], 1);
    assert_eq!(info["streamArn"], arn.as_str());
    for key in ["approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord"] {
        let t = info[key].as_str().unwrap();
        assert!(t.len() == 24 && t.ends_with('Z'), "{key}: {t}");
    }
    let c = reports[0].counters;
    assert_eq!((c.dropped, c.on_failure_delivered), (1, 1), "{c}");
}

/// Without bisect a failing batch is invoked 1 + MaximumRetryAttempts times, on AWS's retry schedule,
/// then discarded; the shard is blocked meanwhile and continues afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_count_is_one_plus_maximum_retry_attempts() {
    let kinesis = Kinesis::new().await;
    let sqs = Sqs::new().await;
    let name = unique("retry");
    let arn = kinesis.create_stream(&name, 1).await;
    let dlq = sqs.create_queue(&unique("retry-dlq"), &[]).await;
    kinesis.put(&name, &messages(3, |_| "k".into(), |i| ["a", "b poison", "c"][i].to_owned())).await;
    let sim = simulator(FunctionConfig {
        failure_mode: FailureMode::Error,
        rules: vec![poison_rule()],
        ..FunctionConfig::default()
    })
    .await;
    let extra = format!(
        r#""StartingPosition":"TRIM_HORIZON","BatchSize":1,"MaximumRetryAttempts":3,
           "DestinationConfig":{{"OnFailure":{{"Destination":"{}"}}}}"#,
        dlq.arn
    );
    let poller = start(&arn, "retry-fn", &extra, &sim);
    until_processed(&sim, 2, Duration::from_secs(60)).await;
    eventually(Duration::from_secs(10), "failure record", || async { sqs.depth(&dlq).await >= 1 }).await;
    poller.stop().await;
    let invocations = sorted(sim.invocations());
    let order: Vec<String> = invocations.iter().flat_map(kinesis_data).collect();
    assert_eq!(order, ["a", "b poison", "b poison", "b poison", "b poison", "c"]);
    // AWS's retry schedule (8 invokes in the first minute): retries wait 2, 4 and 8 s.
    let starts: Vec<f64> = invocations
        .iter()
        .filter(|i| kinesis_data(i) == ["b poison"])
        .map(|i| i.received_at_ms)
        .collect();
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, min) in gaps.iter().zip([2000.0, 4000.0, 8000.0]) {
        assert!(*gap >= min, "retry gaps {gaps:?} ms: each at least 2, 4, 8 s");
    }
    let record: serde_json::Value = serde_json::from_str(sqs.drain(&dlq).await[0].body().unwrap()).unwrap();
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 4);
    assert_eq!(record["KinesisBatchInfo"]["batchSize"], 1);
}

/// ReportBatchItemFailures on a stream: the checkpoint moves to just before the lowest failed record,
/// which is retried with a fresh budget (the recorded AWS case: 6 records, BatchSize 3, the 6th failing,
/// MaximumRetryAttempts 3 → it is invoked 5 times, approximateInvokeCount 4, functionError null).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_batch_response_on_a_stream() {
    let kinesis = Kinesis::new().await;
    let sqs = Sqs::new().await;
    let name = unique("rbif");
    let arn = kinesis.create_stream(&name, 1).await;
    let dlq = sqs.create_queue(&unique("rbif-dlq"), &[]).await;
    kinesis.put(&name, &messages(6, |_| "k".into(), |i| if i == 5 { "r5 poison".into() } else { format!("r{i}") })).await;
    let sim = simulator(FunctionConfig {
        rules: vec![poison_rule()],
        ..FunctionConfig::default()
    })
    .await;
    let extra = format!(
        r#""StartingPosition":"TRIM_HORIZON","BatchSize":3,"MaximumRetryAttempts":3,
           "FunctionResponseTypes":["ReportBatchItemFailures"],
           "DestinationConfig":{{"OnFailure":{{"Destination":"{}"}}}}"#,
        dlq.arn
    );
    let poller = start(&arn, "rbif-fn", &extra, &sim);
    eventually(Duration::from_secs(60), "failure record", || async { sqs.depth(&dlq).await >= 1 }).await;
    poller.stop().await;
    let invocations = sorted(sim.invocations());
    let poison_invokes = invocations.iter().filter(|i| kinesis_data(i).contains(&"r5 poison".to_owned())).count();
    assert_eq!(poison_invokes, 5);
    assert_eq!(processed_kinesis_data(&invocations), ["r0", "r1", "r2", "r3", "r4"]);
    let record: serde_json::Value = serde_json::from_str(sqs.drain(&dlq).await[0].body().unwrap()).unwrap();
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 4);
    assert_eq!(record["responseContext"]["functionError"], serde_json::Value::Null);
    assert_eq!(record["KinesisBatchInfo"]["batchSize"], 1);
}

/// Records that match no filter are skipped and checkpointed: a restart does not deliver them again
/// and does not deliver the matching ones again either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filtered_records_are_skipped_and_checkpointed() {
    let kinesis = Kinesis::new().await;
    let name = unique("filter");
    let arn = kinesis.create_stream(&name, 1).await;
    kinesis
        .put(&name, &messages(10, |i| format!("k{i}"), |i| format!(r#"{{"type":"{}","n":{i}}}"#, if i % 2 == 0 { "order" } else { "ping" })))
        .await;
    let sim = simulator(FunctionConfig::default()).await;
    let pattern = serde_json::to_string(r#"{"data":{"type":["order"]}}"#).unwrap();
    let mapping = stream_mapping(
        &arn,
        "filter-fn",
        &format!(r#""StartingPosition":"TRIM_HORIZON","FilterCriteria":{{"Filters":[{{"Pattern":{pattern}}}]}}"#),
    );
    let state = std::env::temp_dir().join(unique("state"));
    let poller = RunningPoller::start_in(std::slice::from_ref(&mapping), &sim.url(), None, state.clone());
    until_processed(&sim, 5, Duration::from_secs(30)).await;
    let reports = poller.stop().await;
    assert_eq!(reports[0].counters.filtered_out, 5);
    let processed = processed_kinesis_data(&sim.invocations());
    assert!(processed.iter().all(|d| d.contains("order")), "{processed:?}");

    // A restart from the same checkpoints delivers nothing old.
    let poller = RunningPoller::start_in(&[mapping], &sim.url(), None, state);
    kinesis.put(&name, &[("k".into(), r#"{"type":"order","n":99}"#.into())]).await;
    until_processed(&sim, 6, Duration::from_secs(30)).await;
    let reports = poller.stop().await;
    assert_eq!(reports[0].counters.polled, 1, "only the new record was read: {}", reports[0].counters);
    assert_eq!(processed_kinesis_data(&sorted(sim.invocations())).last().unwrap(), r#"{"type":"order","n":99}"#);
}

/// ParallelizationFactor: several batches of one shard in flight at once, while records with the same
/// partition key stay in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallelization_factor_keeps_per_key_order() {
    let kinesis = Kinesis::new().await;
    let name = unique("pf");
    let arn = kinesis.create_stream(&name, 1).await;
    kinesis.put(&name, &messages(80, |i| format!("key-{}", i % 8), |i| format!("key-{}:{:02}", i % 8, i / 8))).await;
    let sim = simulator(FunctionConfig {
        latency: Latency::Fixed(Duration::from_millis(150)),
        ..FunctionConfig::default()
    })
    .await;
    let poller = start(&arn, "pf-fn", r#""StartingPosition":"TRIM_HORIZON","BatchSize":5,"ParallelizationFactor":4"#, &sim);
    until_processed(&sim, 80, Duration::from_secs(60)).await;
    poller.stop().await;
    let invocations = sorted(sim.invocations());
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for data in processed_kinesis_data(&invocations) {
        let (key, _) = data.split_once(':').unwrap();
        by_key.entry(key.to_owned()).or_default().push(data);
    }
    assert_eq!(by_key.len(), 8);
    for (key, values) in by_key {
        let expected: Vec<String> = (0..10).map(|n| format!("{key}:{n:02}")).collect();
        assert_eq!(values, expected, "order of {key}");
    }
    // Overlapping invocations prove the parallelism: sorted by arrival, some start before the
    // previous one ended.
    let mut spans: Vec<(f64, f64)> = invocations.iter().map(|i| (i.received_at_ms, i.received_at_ms + i.duration_ms)).collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let overlaps = spans.windows(2).filter(|w| w[1].0 < w[0].1).count();
    assert!(overlaps > 0, "no batches ran in parallel: {spans:?}");
}

/// Resharding: records of the parent shard are all delivered before any record of its children.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parent_shard_before_children() {
    let kinesis = Kinesis::new().await;
    let name = unique("split");
    let arn = kinesis.create_stream(&name, 1).await;
    kinesis.put(&name, &messages(10, |i| format!("k{i}"), |i| format!("parent-{i}"))).await;
    kinesis
        .client
        .split_shard()
        .stream_name(&name)
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .expect("SplitShard");
    kinesis.put(&name, &messages(10, |i| format!("k{i}"), |i| format!("child-{i}"))).await;
    let sim = simulator(FunctionConfig::default()).await;
    let poller = start(&arn, "split-fn", r#""StartingPosition":"TRIM_HORIZON","BatchSize":4"#, &sim);
    until_processed(&sim, 20, Duration::from_secs(60)).await;
    poller.stop().await;
    let processed = processed_kinesis_data(&sorted(sim.invocations()));
    let last_parent = processed.iter().rposition(|d| d.starts_with("parent")).unwrap();
    let first_child = processed.iter().position(|d| d.starts_with("child")).unwrap();
    assert!(last_parent < first_child, "{processed:?}");
    assert_eq!(processed.len(), 20, "each once: {processed:?}");
}

/// kill -9 of the poller in the middle of a stream, then a restart with the same state directory: no
/// record is lost, and only the batch in flight at the kill is delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_then_restart_loses_no_record() {
    let kinesis = Kinesis::new().await;
    let name = unique("crash");
    let arn = kinesis.create_stream(&name, 2).await;
    let total = 200;
    kinesis.put(&name, &messages(total, |i| format!("k{i}"), |i| format!("m{i:03}"))).await;
    let sim = simulator(FunctionConfig {
        latency: Latency::Fixed(Duration::from_millis(40)),
        ..FunctionConfig::default()
    })
    .await;
    let poller = PollerProcess::new(
        &stream_mapping(&arn, "crash-fn", r#""StartingPosition":"TRIM_HORIZON","BatchSize":10"#),
        &sim.url(),
    );
    let mut first = poller.spawn(&[]);
    until_processed(&sim, total / 3, Duration::from_secs(60)).await;
    first.kill().expect("SIGKILL");
    first.wait().unwrap();
    let before_restart = processed_kinesis_data(&sim.invocations()).len();
    assert!(before_restart < total, "killed before the end");

    restart_until_every_record_is_seen(&poller, &sim, total, Duration::from_secs(90)).await;

    let processed = processed_kinesis_data(&sim.invocations());
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for d in &processed {
        *counts.entry(d.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), total, "no record lost");
    let duplicates = processed.len() - total;
    // At most the batch in flight on each shard at the kill (and the one finished but not yet
    // checkpointed) is delivered again.
    assert!(duplicates <= 2 * 2 * 10, "{duplicates} duplicates: the restart resumed from the checkpoint");
}

/// A DynamoDB Streams mapping with an `eventName` filter: INSERTs are delivered with their images,
/// the other changes are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_stream_with_an_event_name_filter() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let client = aws_sdk_dynamodb::Client::new(&e2e::sdk_config().await);
    let table = unique("items");
    let stream_arn = e2e::create_table_with_stream(&client, &table).await;
    for i in 0..5 {
        client
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(format!("item-{i}")))
            .item("n", AttributeValue::N(i.to_string()))
            .send()
            .await
            .unwrap();
    }
    client
        .update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("item-0".into()))
        .update_expression("SET n = :n")
        .expression_attribute_values(":n", AttributeValue::N("100".into()))
        .send()
        .await
        .unwrap();
    client.delete_item().table_name(&table).key("pk", AttributeValue::S("item-1".into())).send().await.unwrap();

    let sim = simulator(FunctionConfig::default()).await;
    let pattern = serde_json::to_string(r#"{"eventName":["INSERT"]}"#).unwrap();
    let extra = format!(
        r#""StartingPosition":"TRIM_HORIZON","BatchSize":2,"FilterCriteria":{{"Filters":[{{"Pattern":{pattern}}}]}}"#
    );
    let poller = start(&stream_arn, "ddb-fn", &extra, &sim);
    eventually(Duration::from_secs(30), "5 inserts processed", || async {
        e2e::processed_dynamodb(&sim.invocations()).len() >= 5
    })
    .await;
    let reports = poller.stop().await;
    let invocations = sorted(sim.invocations());
    let processed = e2e::processed_dynamodb(&invocations);
    assert_eq!(processed, (0..5).map(|i| format!("INSERT:item-{i}")).collect::<Vec<_>>());
    assert_eq!(reports[0].counters.filtered_out, 2, "MODIFY and REMOVE skipped: {}", reports[0].counters);
    let record = &records(&invocations[0])[0];
    assert_eq!(record["eventSource"], "aws:dynamodb");
    assert_eq!(record["eventSourceARN"], stream_arn.as_str());
    assert_eq!(record["dynamodb"]["NewImage"]["n"], serde_json::json!({"N": "0"}));
    assert_eq!(record["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
}

/// Tumbling windows: invocations carry the window and the state the function returned last; the
/// window ends with a final invocation without records whose state has seen every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tumbling_window_passes_state_and_ends_with_a_final_invoke() {
    let kinesis = Kinesis::new().await;
    let name = unique("window");
    let arn = kinesis.create_stream(&name, 1).await;
    kinesis.put(&name, &messages(7, |_| "k".into(), |i| format!("w{i}"))).await;
    let sim = simulator(FunctionConfig::default()).await;
    let poller = start(&arn, "window-fn", r#""StartingPosition":"TRIM_HORIZON","BatchSize":3,"TumblingWindowInSeconds":1"#, &sim);
    let finals = |invocations: &[Invocation]| -> Vec<serde_json::Value> {
        invocations.iter().filter(|i| i.payload["isFinalInvokeForWindow"] == true).map(|i| i.payload.clone()).collect()
    };
    eventually(Duration::from_secs(30), "the window's final invoke", || async {
        let invocations = sim.invocations();
        let counted: i64 = finals(&invocations).iter().map(|p| p["state"]["count"].as_i64().unwrap_or(0)).sum();
        counted >= 7
    })
    .await;
    let reports = poller.stop().await;
    let invocations = sorted(sim.invocations());
    let first = &invocations[0].payload;
    let keys: Vec<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["Records", "window", "state", "shardId", "eventSourceARN", "isFinalInvokeForWindow", "isWindowTerminatedEarly"]
    );
    assert_eq!(first["state"], serde_json::json!({}), "a window starts with empty state");
    assert_eq!(first["shardId"], "shardId-000000000000");
    for p in finals(&invocations) {
        assert_eq!(p["Records"], serde_json::json!([]), "the final invoke has no records");
    }
    // State flows: each non-final invoke in a window sees the count of the records before it.
    let mut seen_in_window: HashMap<String, i64> = HashMap::new();
    for inv in &invocations {
        let window = inv.payload["window"]["start"].as_str().unwrap().to_owned();
        let before = *seen_in_window.get(&window).unwrap_or(&0);
        assert_eq!(inv.payload["state"]["count"].as_i64().unwrap_or(0), before, "{}", inv.payload);
        seen_in_window.insert(window, before + records(inv).len() as i64);
    }
    assert!(reports[0].counters.checkpoints >= 1);
}

/// StartingPosition LATEST: records written before the mapping starts are not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latest_skips_earlier_records() {
    let kinesis = Kinesis::new().await;
    let name = unique("latest");
    let arn = kinesis.create_stream(&name, 1).await;
    kinesis.put(&name, &messages(3, |_| "k".into(), |i| format!("old{i}"))).await;
    let sim = simulator(FunctionConfig::default()).await;
    let poller = start(&arn, "latest-fn", r#""StartingPosition":"LATEST""#, &sim);
    // The worker takes its iterator at the tip some time after start: keep writing until a new record
    // arrives. Whatever was written before that moment must never be delivered.
    let mut n = 0;
    eventually(Duration::from_secs(30), "a new record processed", || {
        n += 1;
        let (kinesis, name, sim) = (kinesis.clone(), name.clone(), &sim);
        async move {
            kinesis.put(&name, &[("k".into(), format!("new{n}"))]).await;
            !processed_kinesis_data(&sim.invocations()).is_empty()
        }
    })
    .await;
    poller.stop().await;
    let processed = processed_kinesis_data(&sorted(sim.invocations()));
    assert!(processed.iter().all(|d| d.starts_with("new")), "{processed:?}");
}

/// SIGTERM: the poller finishes the batch in flight, writes its checkpoint and exits 0 with its report;
/// a restart continues after that batch, so nothing is delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_the_batch_in_flight_and_checkpoints_it() {
    let kinesis = Kinesis::new().await;
    let name = unique("term");
    let arn = kinesis.create_stream(&name, 1).await;
    kinesis.put(&name, &messages(30, |_| "k".into(), |i| format!("t{i:02}"))).await;
    let sim = simulator(FunctionConfig {
        latency: Latency::Fixed(Duration::from_millis(800)),
        ..FunctionConfig::default()
    })
    .await;
    let poller = PollerProcess::new(
        &stream_mapping(&arn, "term-fn", r#""StartingPosition":"TRIM_HORIZON","BatchSize":10"#),
        &sim.url(),
    );
    let first = poller.spawn(&[]);
    eventually(Duration::from_secs(30), "a batch in flight", || async {
        sim.stats().functions.get("term-fn").is_some_and(|f| f.concurrency > 0)
    })
    .await;
    let status = std::process::Command::new("kill").args(["-TERM", &first.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = first.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {:?}", output.status);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("checkpoints="), "the report is printed: {report}");
    let done_before = processed_kinesis_data(&sim.invocations()).len();
    assert!(done_before > 0 && done_before.is_multiple_of(10), "whole batches finished: {done_before}");

    let mut second = poller.spawn(&[]);
    until_processed(&sim, 30, Duration::from_secs(60)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let processed = processed_kinesis_data(&sorted(sim.invocations()));
    let expected: Vec<String> = (0..30).map(|i| format!("t{i:02}")).collect();
    assert_eq!(processed, expected, "in order, nothing twice");
}

/// MaximumRecordAgeInSeconds: a record already older than the limit when it is read is never sent to the
/// function; it is reported alone with RecordAgeExceeded (no responseContext, approximateInvokeCount 1),
/// here to an S3 destination whose object carries the event it would have been; fresh records after it
/// are delivered. (Takes a minute: the smallest age limit AWS accepts is 60 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_past_maximum_record_age_go_to_the_destination() {
    let kinesis = Kinesis::new().await;
    let s3 = aws_sdk_s3::Client::new(&e2e::sdk_config().await);
    let bucket = unique("age");
    s3.create_bucket().bucket(&bucket).send().await.expect("CreateBucket");
    let name = unique("age");
    let arn = kinesis.create_stream(&name, 1).await;
    let stale = kinesis.put(&name, &[("k".into(), "stale".into())]).await;
    tokio::time::sleep(Duration::from_secs(62)).await;
    kinesis.put(&name, &[("k".into(), "fresh".into())]).await;
    let sim = simulator(FunctionConfig::default()).await;
    let extra = format!(
        r#""StartingPosition":"TRIM_HORIZON","BatchSize":10,"MaximumRecordAgeInSeconds":60,"MaximumRetryAttempts":0,
           "DestinationConfig":{{"OnFailure":{{"Destination":"arn:aws:s3:::{bucket}"}}}}"#
    );
    let mapping = stream_mapping(&arn, "age-fn", &extra);
    let uuid = poller::config::load(&mapping).unwrap().uuid;
    let poller = RunningPoller::start(&[mapping], &sim.url(), None);
    eventually(Duration::from_secs(30), "the fresh record processed", || async {
        !processed_kinesis_data(&sim.invocations()).is_empty()
    })
    .await;
    let reports = poller.stop().await;
    assert_eq!(processed_kinesis_data(&sim.invocations()), ["fresh"], "the stale record never reached the function");
    assert_eq!(reports[0].counters.on_failure_delivered, 1);

    let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with(&format!("aws/lambda/{uuid}/shardId-000000000000/")), "{}", keys[0]);
    let object = s3.get_object().bucket(&bucket).key(keys[0]).send().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(body["requestContext"]["condition"], "RecordAgeExceeded");
    assert_eq!(body["requestContext"]["approximateInvokeCount"], 1);
    assert!(body.get("responseContext").is_none(), "no responseContext for RecordAgeExceeded: {body}");
    assert_eq!(body["KinesisBatchInfo"]["startSequenceNumber"], stale[0].as_str());
    assert_eq!(body["KinesisBatchInfo"]["batchSize"], 1);
    let payload: serde_json::Value = serde_json::from_str(body["payload"].as_str().expect("payload is a JSON string")).unwrap();
    assert_eq!(payload["Records"][0]["kinesis"]["sequenceNumber"], stale[0].as_str());
}

/// Start `poller` again and wait until every one of `total` records has been delivered at least
/// once, then stop it.
async fn restart_until_every_record_is_seen(poller: &PollerProcess, sim: &SimHandle, total: usize, within: Duration) {
    let mut second = poller.spawn(&[]);
    eventually(within, "every record processed", || async {
        let seen: std::collections::HashSet<String> = processed_kinesis_data(&sim.invocations()).into_iter().collect();
        seen.len() >= total
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
}

/// Records of `invocations` delivered successfully more than once: how many extra deliveries.
fn redelivered(invocations: &[Invocation]) -> usize {
    let processed = processed_kinesis_data(invocations);
    let distinct: std::collections::HashSet<&String> = processed.iter().collect();
    processed.len() - distinct.len()
}

/// ParallelizationFactor 4: while one lane retries a failing record, the other lanes may not run
/// ahead of the checkpoint by more than a batch each, so a kill -9 then delivers at most
/// ParallelizationFactor × BatchSize (+1) records again, not everything finished behind the stuck one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_with_parallel_lanes_redelivers_at_most_what_was_in_flight() {
    let kinesis = Kinesis::new().await;
    let name = unique("pf-crash");
    let arn = kinesis.create_stream(&name, 1).await;
    let total = 400;
    let data = |i: usize| if i == 5 { format!("r{i:03} poison") } else { format!("r{i:03}") };
    kinesis.put(&name, &messages(total, |i| format!("k{}", i % 16), data)).await;
    // The poison record fails three times (its lane retries for 2 + 4 + 8 s), then succeeds.
    let sim = simulator(FunctionConfig {
        failure_mode: FailureMode::Error,
        rules: vec![Rule {
            times: Some(3),
            ..poison_rule()
        }],
        ..FunctionConfig::default()
    })
    .await;
    let poller = PollerProcess::new(
        &stream_mapping(&arn, "pf-crash-fn", r#""StartingPosition":"TRIM_HORIZON","BatchSize":10,"ParallelizationFactor":4"#),
        &sim.url(),
    );
    let poison_invokes =
        |sim: &loadgen::simulate::SimHandle| sim.invocations().iter().filter(|i| kinesis_data(i).iter().any(|d| d.contains("poison"))).count();
    let mut first = poller.spawn(&[]);
    // Two failures: the stuck lane has been retrying for at least 2 s while the others could run.
    eventually(Duration::from_secs(60), "the poison record failed twice", || async { poison_invokes(&sim) >= 2 }).await;
    first.kill().expect("SIGKILL");
    first.wait().unwrap();
    assert!(poison_invokes(&sim) < 4, "killed while the poison record was still failing");

    restart_until_every_record_is_seen(&poller, &sim, total, Duration::from_secs(120)).await;
    let again = redelivered(&sim.invocations());
    assert!(again <= 4 * 10 + 1, "{again} records delivered again after the kill; at most 41 were exposed");
}

/// ParallelizationFactor 4, SIGTERM: the batches in flight finish, queued records that finished batches
/// of other lanes wait for are delivered too, and the checkpoint covers all of it, so the restart
/// delivers nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_parallel_lanes_redelivers_nothing() {
    let kinesis = Kinesis::new().await;
    let name = unique("pf-term");
    let arn = kinesis.create_stream(&name, 1).await;
    let total = 300;
    // Three records in four share one key: their lane lags behind the others, which finish batches of
    // later records while earlier ones still wait in the hot lane.
    let key = |i: usize| if i.is_multiple_of(4) { format!("k{i}") } else { "hot".to_owned() };
    kinesis.put(&name, &messages(total, key, |i| format!("r{i:03}"))).await;
    let sim = simulator(FunctionConfig {
        latency: Latency::Fixed(Duration::from_millis(300)),
        ..FunctionConfig::default()
    })
    .await;
    let poller = PollerProcess::new(
        &stream_mapping(&arn, "pf-term-fn", r#""StartingPosition":"TRIM_HORIZON","BatchSize":10,"ParallelizationFactor":4"#),
        &sim.url(),
    );
    let first = poller.spawn(&[]);
    eventually(Duration::from_secs(60), "some batches done and more in flight", || async {
        processed_kinesis_data(&sim.invocations()).len() >= 40
            && sim.stats().functions.get("pf-term-fn").is_some_and(|f| f.concurrency > 0)
    })
    .await;
    let status = std::process::Command::new("kill").args(["-TERM", &first.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = first.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {:?}", output.status);
    let done_before = processed_kinesis_data(&sim.invocations()).len();
    assert!(done_before < total, "stopped before the end: {done_before}");

    restart_until_every_record_is_seen(&poller, &sim, total, Duration::from_secs(90)).await;
    assert_eq!(redelivered(&sim.invocations()), 0, "nothing that finished before SIGTERM is delivered again");
}

/// Tumbling windows with records arriving all the time, also in each window's last moments: every
/// window gets exactly one final invoke, and its state has counted every record invoked in that
/// window. (Closing a window as soon as the clock passed its end, on the strength of a read made
/// before the end, missed the records written in between: they reopened the window with empty state
/// and a second final invoke.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_tumbling_window_gets_one_final_invoke_covering_its_records() {
    let kinesis = Kinesis::new().await;
    let name = unique("window-tail");
    let arn = kinesis.create_stream(&name, 1).await;
    let sim = simulator(FunctionConfig::default()).await;
    let poller = start(&arn, "window-tail-fn", r#""StartingPosition":"TRIM_HORIZON","TumblingWindowInSeconds":1"#, &sim);
    // 40 records, one every 100 ms: four windows, each with records up to its last 100 ms.
    let total = 40;
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for i in 0..total {
        pace.tick().await;
        kinesis.put(&name, &[("k".to_owned(), format!("w{i:02}"))]).await;
    }
    let finals = |invocations: &[Invocation]| -> Vec<serde_json::Value> {
        invocations.iter().filter(|i| i.payload["isFinalInvokeForWindow"] == true).map(|i| i.payload.clone()).collect()
    };
    eventually(Duration::from_secs(60), "every record counted by a final invoke", || async {
        let counted: i64 = finals(&sim.invocations()).iter().map(|p| p["state"]["count"].as_i64().unwrap_or(0)).sum();
        counted >= total
    })
    .await;
    poller.stop().await;
    let invocations = sorted(sim.invocations());
    let mut records_per_window: BTreeMap<String, i64> = BTreeMap::new();
    for inv in invocations.iter().filter(|i| i.payload["isFinalInvokeForWindow"] == false) {
        *records_per_window.entry(inv.payload["window"]["start"].as_str().unwrap().to_owned()).or_default() +=
            records(inv).len() as i64;
    }
    let final_counts: Vec<(String, i64)> = finals(&invocations)
        .iter()
        .map(|p| (p["window"]["start"].as_str().unwrap().to_owned(), p["state"]["count"].as_i64().unwrap_or(0)))
        .collect();
    let expected: Vec<(String, i64)> = records_per_window.into_iter().collect();
    assert_eq!(final_counts, expected, "one final invoke per window, in order, counting all its records");
}
