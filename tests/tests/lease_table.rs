//! The shared DynamoDB lease store (`esm_checkpoint::DynamoDbStore`) against moto's DynamoDB:
//! the store-agnostic conformance suite, KCL's item shape in both directions, and the race of
//! two workers taking the same lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::{AttributeValue, BillingMode};
use e2e::{eventually, sdk_config, unique};
use esm_checkpoint::{
    Checkpoint, ChildShard, DynamoDbStore, Error, LeaseRef, LeaseStore, NewLease, SequenceNumber, conformance,
};

async fn client() -> Client {
    Client::new(&sdk_config().await)
}

fn new_lease(key: &str, checkpoint: Checkpoint, parents: &[&str]) -> NewLease {
    NewLease {
        lease_key: key.to_owned(),
        checkpoint,
        parent_shard_ids: parents.iter().map(|p| (*p).to_owned()).collect(),
    }
}

async fn raw_item(client: &Client, table: &str, key: &str) -> HashMap<String, AttributeValue> {
    client
        .get_item()
        .table_name(table)
        .key("leaseKey", AttributeValue::S(key.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("item exists")
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn ss(values: &[&str]) -> AttributeValue {
    AttributeValue::Ss(values.iter().map(|v| (*v).to_owned()).collect())
}

#[tokio::test]
async fn dynamodb_store_passes_the_conformance_suite() {
    let client = client().await;
    let prefix = unique("conformance");
    conformance::run_all(|| {
        // A fresh handle (own caches) on the same tables each time.
        let store = DynamoDbStore::new(&client, prefix.clone(), true);
        async move { store }
    })
    .await;
}

/// What the store writes is what Java KCL writes: names, and types (`parentShardId` and
/// `childShardIds` as SS, counters as N), in a `PAY_PER_REQUEST` table keyed by `leaseKey`.
#[tokio::test]
async fn items_have_kcl_names_and_types() {
    let client = client().await;
    let store = DynamoDbStore::new(&client, unique("kcl-shape"), true);
    let mapping = "4f2a6a4e-0000-4000-8000-000000000001";
    let table = store.table_name(mapping);
    let (parent, child_a, child_b) = ("shardId-000000000001", "shardId-000000000002", "shardId-000000000003");
    store
        .create_if_absent(
            mapping,
            new_lease(parent, Checkpoint::TrimHorizon, &["shardId-000000000000"]),
        )
        .await
        .expect("create");

    let description = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("DescribeTable");
    let description = description.table.expect("table");
    let key = &description.key_schema()[0];
    assert_eq!((key.attribute_name(), key.key_type().as_str()), ("leaseKey", "HASH"));
    assert_eq!(
        description.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );

    let created = raw_item(&client, &table, parent).await;
    assert_eq!(
        created,
        HashMap::from([
            ("leaseKey".to_owned(), s(parent)),
            ("leaseCounter".to_owned(), n(0)),
            ("checkpoint".to_owned(), s("TRIM_HORIZON")),
            ("checkpointSubSequenceNumber".to_owned(), n(0)),
            ("ownerSwitchesSinceCheckpoint".to_owned(), n(0)),
            ("parentShardId".to_owned(), ss(&["shardId-000000000000"])),
            ("entityType".to_owned(), s("LEASE")),
        ])
    );

    let lease = LeaseRef::new(mapping, parent);
    let counter = store.take(&lease, "host:1:a", 0).await.expect("take").counter;
    let counter = store
        .checkpoint(
            &lease,
            "host:1:a",
            counter,
            &SequenceNumber::parse("4960118965842235937883").unwrap(),
            2,
        )
        .await
        .expect("checkpoint");
    let taken = raw_item(&client, &table, parent).await;
    assert_eq!(taken["leaseOwner"], s("host:1:a"));
    assert_eq!(taken["leaseCounter"], n(2));
    assert_eq!(taken["checkpoint"], s("4960118965842235937883"));
    assert_eq!(taken["checkpointSubSequenceNumber"], n(2));
    assert_eq!(taken["ownerSwitchesSinceCheckpoint"], n(0));

    let children: Vec<ChildShard> = [child_a, child_b]
        .iter()
        .map(|key| ChildShard {
            lease_key: (*key).to_owned(),
            parent_shard_ids: vec![parent.to_owned()],
        })
        .collect();
    store
        .end_shard(&lease, "host:1:a", counter, &children)
        .await
        .expect("end shard");
    let ended = raw_item(&client, &table, parent).await;
    assert_eq!(ended["checkpoint"], s("SHARD_END"));
    assert_eq!(ended["childShardIds"], ss(&[child_a, child_b]));
    assert_eq!(ended["leaseCounter"], n(3));
    let child = raw_item(&client, &table, child_a).await;
    assert_eq!(child["parentShardId"], ss(&[parent]));
    assert_eq!(child["checkpoint"], s("TRIM_HORIZON"));
    assert!(!child.contains_key("leaseOwner"));

    store
        .take(&LeaseRef::new(mapping, child_a), "host:1:a", 0)
        .await
        .expect("take child");
    let released = store
        .release(&LeaseRef::new(mapping, child_a), "host:1:a", 1)
        .await
        .expect("release");
    assert_eq!(released, 2);
    let child = raw_item(&client, &table, child_a).await;
    assert!(
        !child.contains_key("leaseOwner"),
        "release removes the owner: {child:?}"
    );
}

/// Items written by Java KCL (no `entityType`, extra attributes, a pending checkpoint) are read
/// and fenced like ours; other KCL 3.5 entity kinds in the same table are skipped.
#[tokio::test]
async fn reads_and_writes_kcl_items() {
    let client = client().await;
    let store = DynamoDbStore::new(&client, unique("kcl-read"), true);
    let mapping = "4f2a6a4e-0000-4000-8000-000000000002";
    let table = store.open_table(mapping).await.expect("open table");
    let kcl_item = HashMap::from([
        ("leaseKey".to_owned(), s("shardId-000000000005")),
        ("leaseOwner".to_owned(), s("java-worker")),
        ("leaseCounter".to_owned(), n(41)),
        ("checkpoint".to_owned(), s("100")),
        ("checkpointSubSequenceNumber".to_owned(), n(0)),
        ("ownerSwitchesSinceCheckpoint".to_owned(), n(1)),
        ("pendingCheckpoint".to_owned(), s("150")),
        ("startingHashKey".to_owned(), s("0")),
        ("endingHashKey".to_owned(), s("340282366920938463463374607431768211455")),
        (
            "parentShardId".to_owned(),
            ss(&["shardId-000000000001", "shardId-000000000002"]),
        ),
    ]);
    let metrics = HashMap::from([
        ("leaseKey".to_owned(), s("java-worker")),
        ("entityType".to_owned(), s("WORKER_METRIC_STATS")),
    ]);
    for item in [kcl_item, metrics] {
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .expect("PutItem");
    }

    let leases = store.list(mapping).await.expect("list");
    assert_eq!(leases.len(), 1, "only leases are listed: {leases:?}");
    let lease = &leases[0];
    assert_eq!(
        (
            lease.lease_key.as_str(),
            lease.owner.as_deref(),
            lease.counter,
            lease.checkpoint.kcl_value()
        ),
        ("shardId-000000000005", Some("java-worker"), 41, "100")
    );
    assert_eq!(lease.parent_shard_ids, ["shardId-000000000001", "shardId-000000000002"]);

    // Steal it (its parents have no lease), then checkpoint: the pending checkpoint is cleared.
    let lease_ref = LeaseRef::new(mapping, "shardId-000000000005");
    let stolen = store.take(&lease_ref, "rust-worker", 41).await.expect("steal");
    assert_eq!((stolen.counter, stolen.owner_switches_since_checkpoint), (42, 2));
    store
        .checkpoint(&lease_ref, "rust-worker", 42, &SequenceNumber::parse("120").unwrap(), 0)
        .await
        .expect("checkpoint");
    let item = raw_item(&client, &table, "shardId-000000000005").await;
    assert!(!item.contains_key("pendingCheckpoint"), "{item:?}");
    assert_eq!(
        item["endingHashKey"],
        s("340282366920938463463374607431768211455"),
        "unknown attributes are kept"
    );
    assert_eq!(item["leaseCounter"], n(43));
}

/// Workers race to take the same lease with the same counter: exactly one wins, the others get
/// `Lost`, and the table names the winner with one write. Many rounds with several racers, each
/// its own client (its own connections, so the requests reach the server on different threads):
/// a conditional write that is not atomic lets two racers win now and then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_takes_have_exactly_one_winner() {
    const ROUNDS: usize = 50;
    const RACERS: usize = 4;
    let prefix = unique("race");
    let mut stores = Vec::new();
    for _ in 0..RACERS {
        // Separate processes' worth of state: separate clients, separate stores.
        stores.push(Arc::new(DynamoDbStore::new(&client().await, prefix.clone(), true)));
    }
    let mapping = "4f2a6a4e-0000-4000-8000-000000000003";
    for round in 0..ROUNDS {
        let key = format!("shardId-{round:012}");
        stores[0]
            .create_if_absent(mapping, new_lease(&key, Checkpoint::Latest, &[]))
            .await
            .expect("create");
        let lease = LeaseRef::new(mapping, key.as_str());
        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        let racers: Vec<_> = (stores.iter().enumerate())
            .map(|(i, store)| {
                let (store, lease, start) = (store.clone(), lease.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store.take(&lease, &format!("worker-{i}"), 0).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            match racer.await.expect("racer task") {
                Ok(won) => winners.push(won),
                Err(Error::Lost) => {}
                Err(other) => panic!("round {round}: unexpected error {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: expected exactly one winner, got {winners:?}");
        let winner = &winners[0];
        assert_eq!(winner.counter, 1);
        let stored = stores[RACERS - 1]
            .list(mapping)
            .await
            .expect("list")
            .into_iter()
            .find(|l| l.lease_key == key)
            .expect("lease");
        assert_eq!(stored.owner, winner.owner, "round {round}");
        assert_eq!(stored.counter, 1, "round {round}: one write only");
    }
}

/// Without `create_if_missing`, a mapping without a table has no leases and cannot get any.
#[tokio::test]
async fn missing_table_is_not_created_unless_allowed() {
    let client = client().await;
    let store = DynamoDbStore::new(&client, unique("no-create"), false);
    let mapping = "4f2a6a4e-0000-4000-8000-000000000004";
    assert!(store.list(mapping).await.expect("list").is_empty());
    let created = store
        .create_if_absent(mapping, new_lease("shardId-000000000000", Checkpoint::Latest, &[]))
        .await;
    assert!(matches!(created, Err(Error::Storage(_))), "got {created:?}");
    let renewed = store
        .renew(&LeaseRef::new(mapping, "shardId-000000000000"), "w", 0)
        .await;
    assert!(matches!(renewed, Err(Error::Lost)), "got {renewed:?}");
    let tables = client.list_tables().send().await.expect("ListTables");
    assert!(!tables.table_names().contains(&store.table_name(mapping)));
}

/// Turns the service's answers to the next `n` `UpdateItem` requests into 500 errors *after* the
/// service applied them: an unknown outcome, as after a timeout or a dropped connection.
/// Requests must be sequential (the flag links a request to its response).
#[derive(Debug, Clone, Default)]
struct LoseUpdateAnswers(Arc<LoseState>);

#[derive(Debug, Default)]
struct LoseState {
    remaining: AtomicU32,
    sending_update: AtomicBool,
}

impl LoseUpdateAnswers {
    fn lose_next(&self, n: u32) {
        self.0.remaining.store(n, Ordering::SeqCst);
    }
}

impl Intercept for LoseUpdateAnswers {
    fn name(&self) -> &'static str {
        "LoseUpdateAnswers"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let target = context.request().headers().get("x-amz-target").unwrap_or_default();
        self.0
            .sending_update
            .store(target.ends_with(".UpdateItem"), Ordering::SeqCst);
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let lose = self.0.sending_update.load(Ordering::SeqCst)
            && self
                .0
                .remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if lose {
            let response = context.response_mut();
            *response.status_mut() = 500.try_into().expect("valid status");
            response.headers_mut().remove("x-amzn-errortype");
            *response.body_mut() = r#"{"__type":"InternalServerError","message":"answer lost"}"#.into();
        }
        Ok(())
    }
}

/// A write that was applied but whose answer was lost is retried; the retry's failed condition
/// is recognised as our own write, within the call or in the
/// caller's next call with the same counter. A stale counter without such a write stays `Lost`.
#[tokio::test]
async fn applied_writes_with_lost_answers_are_recognised() {
    let lose = LoseUpdateAnswers::default();
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config().await)
        .interceptor(lose.clone())
        .build();
    let store = DynamoDbStore::new(&Client::from_conf(config), unique("unsure"), true);
    let mapping = "4f2a6a4e-0000-4000-8000-000000000005";
    let lease = LeaseRef::new(mapping, "shardId-000000000000");
    store
        .create_if_absent(mapping, new_lease(&lease.lease_key, Checkpoint::TrimHorizon, &[]))
        .await
        .expect("create");
    assert_eq!(store.take(&lease, "w", 0).await.expect("take").counter, 1);

    lose.lose_next(1);
    assert_eq!(
        store
            .renew(&lease, "w", 1)
            .await
            .expect("renew despite the lost answer"),
        2
    );

    // Every attempt's answer is lost: transient for now, then the caller's retry succeeds.
    let seven = SequenceNumber::parse("7").unwrap();
    lose.lose_next(u32::MAX);
    let unknown = store.checkpoint(&lease, "w", 2, &seven, 0).await;
    assert!(matches!(unknown, Err(Error::Transient(_))), "got {unknown:?}");
    lose.lose_next(0);
    assert_eq!(
        store
            .checkpoint(&lease, "w", 2, &seven, 0)
            .await
            .expect("retried checkpoint"),
        3
    );

    let stored = store.list(mapping).await.expect("list").remove(0);
    assert_eq!(
        (stored.counter, stored.checkpoint.kcl_value()),
        (3, "7"),
        "each write applied once"
    );
    let stale = store.renew(&lease, "w", 2).await;
    assert!(
        matches!(stale, Err(Error::Lost)),
        "a stale counter is lost, got {stale:?}"
    );

    lose.lose_next(1);
    assert_eq!(
        store
            .release(&lease, "w", 3)
            .await
            .expect("release despite the lost answer"),
        4
    );
}

/// The value of counter `family` (e.g. `poller_lease_table_errors_total`) in `metrics`, 0 if absent.
fn counter(metrics: &poller::stats::Metrics, family: &str) -> f64 {
    let text = poller::metrics::encode(metrics, poller::metrics::Format::OpenMetrics);
    (text.lines())
        .filter(|line| line.starts_with(&format!("{family}{{")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A poller in this process sharing a mapping's shards through lease tables, with its metrics.
struct SharedPoller {
    metrics: Arc<poller::stats::Metrics>,
    cancel: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<Vec<poller::MappingReport>, poller::Error>>,
}

impl SharedPoller {
    /// Runs `mapping` with lease tables named `prefix-<uuid>`, invoking the Lambda API at `lambda_url`.
    fn start(mapping: &str, lambda_url: &str, prefix: &str) -> SharedPoller {
        let mapping = poller::config::load(mapping).expect("mapping");
        let options = poller::Options {
            lambda_endpoint_url: Some(lambda_url.to_owned()),
            lease_table: Some(prefix.to_owned()),
            // Short, so that lease scans (every 2 × failover) come quickly.
            lease_failover: Duration::from_secs(2),
            ..e2e::options(std::env::temp_dir().join(unique("poller-state")))
        };
        let instance = poller::Poller::new(vec![mapping], options);
        let metrics = instance.metrics();
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(instance.run(cancel.clone()));
        SharedPoller { metrics, cancel, task }
    }

    /// The mapping's state on `/readyz` (`None` until the poller has registered it).
    fn state(&self) -> Option<poller::health::MappingState> {
        self.metrics.health().snapshot().into_iter().next().map(|health| health.state)
    }

    /// Graceful shutdown.
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("poller stops")
            .expect("poller task")
            .expect("poller ran");
    }
}

/// A lease row without `leaseCounter` can never be taken (no conditional write matches it), and one
/// without a readable checkpoint has no safe place to start. Either is a corrupt row: the mapping is
/// failed on `/readyz` with the table, the row and the attribute, the failed reads are counted, and
/// once the row is repaired the mapping runs again and processes the shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_lease_row_fails_the_mapping_visibly_until_repaired() {
    let client = client().await;
    let kinesis = e2e::Kinesis::new().await;
    let name = unique("corrupt");
    let arn = kinesis.create_stream(&name, 1).await;
    let records: Vec<(String, String)> = (0..3).map(|i| (format!("k{i}"), format!("c{i}"))).collect();
    kinesis.put(&name, &records).await;
    let shard = "shardId-000000000000";
    let mapping = e2e::stream_mapping(&arn, "corrupt-fn", r#""StartingPosition":"TRIM_HORIZON""#);
    let uuid = poller::config::load(&mapping).expect("mapping").uuid;
    let prefix = unique("corrupt-leases");
    let table = DynamoDbStore::new(&client, prefix.clone(), true)
        .open_table(&uuid)
        .await
        .expect("lease table");
    for (attribute, problem) in [("leaseCounter", "leaseCounter is missing"), ("checkpoint", "checkpoint is missing")] {
        let mut row = HashMap::from([
            ("leaseKey".to_owned(), s(shard)),
            ("leaseCounter".to_owned(), n(0)),
            ("checkpoint".to_owned(), s("TRIM_HORIZON")),
        ]);
        row.remove(attribute);
        client.put_item().table_name(&table).set_item(Some(row)).send().await.expect("PutItem");
        let sim = e2e::simulator(Default::default()).await;
        let running = SharedPoller::start(&mapping, &sim.url(), &prefix);

        let failed = || match running.state() {
            Some(poller::health::MappingState::Degraded(reason)) => Some(reason),
            _ => None,
        };
        eventually(Duration::from_secs(60), "the mapping is degraded on /readyz", || async { failed().is_some() }).await;
        let reason = failed().expect("failed");
        assert!(
            reason.contains(&table) && reason.contains(shard) && reason.contains(problem),
            "the reason names the table, the row and the problem: {reason}"
        );
        assert!(counter(&running.metrics, "poller_lease_table_errors_total") >= 1.0, "the failed read is counted");
        assert!(sim.invocations().is_empty(), "nothing runs from a corrupt lease");

        let repaired = HashMap::from([
            ("leaseKey".to_owned(), s(shard)),
            ("leaseCounter".to_owned(), n(0)),
            ("checkpoint".to_owned(), s("TRIM_HORIZON")),
        ]);
        client.put_item().table_name(&table).set_item(Some(repaired)).send().await.expect("PutItem");
        eventually(Duration::from_secs(60), "the repaired shard is processed", || async {
            e2e::processed_kinesis_data(&sim.invocations()).len() >= records.len()
        })
        .await;
        assert_eq!(
            running.state(),
            Some(poller::health::MappingState::Running),
            "running again once the table reads"
        );
        running.stop().await;
        client
            .delete_item()
            .table_name(&table)
            .key("leaseKey", s(shard))
            .send()
            .await
            .expect("DeleteItem");
    }
}

/// A lease table whose key is not KCL's (HASH `leaseKey` of type S) cannot hold leases: the poller
/// refuses to start, naming the table, what its key is and what it must be.
#[tokio::test]
async fn a_lease_table_of_the_wrong_layout_fails_the_start() {
    use aws_sdk_dynamodb::types::{AttributeDefinition, KeySchemaElement, KeyType, ScalarAttributeType};
    let client = client().await;
    let kinesis = e2e::Kinesis::new().await;
    let arn = kinesis.create_stream(&unique("layout"), 1).await;
    let mapping = e2e::stream_mapping(&arn, "layout-fn", r#""StartingPosition":"TRIM_HORIZON""#);
    let uuid = poller::config::load(&mapping).expect("mapping").uuid;
    for (key, kind, found) in [
        ("id", ScalarAttributeType::S, "HASH id (S)"),
        ("leaseKey", ScalarAttributeType::N, "HASH leaseKey (N)"),
    ] {
        let prefix = unique("layout-leases");
        let table = format!("{prefix}-{uuid}");
        client
            .create_table()
            .table_name(&table)
            .attribute_definitions(
                AttributeDefinition::builder().attribute_name(key).attribute_type(kind).build().expect("attribute"),
            )
            .key_schema(KeySchemaElement::builder().attribute_name(key).key_type(KeyType::Hash).build().expect("key"))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("CreateTable");
        let process = e2e::PollerProcess::new(&mapping, "http://127.0.0.1:9");
        let child = process
            .command(&["--lease-table", prefix.as_str()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("poller starts");
        let pid = child.id().to_string();
        let exited = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await;
        let Ok(exited) = exited else {
            std::process::Command::new("kill").args(["-KILL", &pid]).status().ok();
            panic!("the poller started on table {table} ({found}) instead of failing");
        };
        let output = exited.expect("wait").expect("poller output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "the start fails: {stderr}");
        assert!(
            stderr.contains(&table) && stderr.contains(found) && stderr.contains("HASH leaseKey (S)"),
            "the error names the table, its key and the expected one: {stderr}"
        );
    }
}
