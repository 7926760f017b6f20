//! What a stream mapping delivers across restarts of the poller: a restart is not a new mapping, so it
//! resumes where the mapping's position was fixed, even before any record was processed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use e2e::{Kinesis, RunningPoller, eventually, processed_kinesis_data, simulator, stream_mapping, unique};
use loadgen::simulate::{FunctionConfig, Invocation};

fn sorted(mut invocations: Vec<Invocation>) -> Vec<Invocation> {
    invocations.sort_by_key(|i| i.seq);
    invocations
}

/// The `(lease_key, checkpoint)` rows of a running poller's checkpoint file (none if it has no
/// file or table yet). SQLite in WAL mode lets this read-only reader in beside the poller.
fn leases(state_dir: &Path) -> Vec<(String, String)> {
    use rusqlite::{Connection, OpenFlags};
    let Ok(connection) =
        Connection::open_with_flags(state_dir.join("checkpoints.sqlite"), OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut statement) = connection.prepare("SELECT lease_key, checkpoint FROM leases") else {
        return Vec::new();
    };
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Start the mapping, wait until it has created its shard's lease (its position is fixed then), and
/// stop it cleanly before any record was written.
async fn start_and_stop_before_any_record(mapping: &str, lambda_url: &str, state_dir: &Path) {
    let poller = RunningPoller::start_in(&[mapping.to_owned()], lambda_url, None, state_dir.to_owned());
    eventually(Duration::from_secs(60), "the shard's lease is created", || async { !leases(state_dir).is_empty() })
        .await;
    let reports = poller.stop().await;
    assert_eq!(reports[0].counters.invocations, 0, "nothing to deliver yet");
}

fn state_dir() -> PathBuf {
    std::env::temp_dir().join(unique("poller-state"))
}

/// StartingPosition LATEST, Kinesis: stopped before any record arrived, then restarted. The three records
/// written while it was stopped and the two written after the restart are all delivered: the position
/// was pinned at the first start (AT_TIMESTAMP in the lease), not taken again at the tip.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kinesis_latest_restart_loses_nothing_written_after_the_first_start() {
    let kinesis = Kinesis::new().await;
    let name = unique("latest-restart");
    let arn = kinesis.create_stream(&name, 1).await;
    let sim = simulator(FunctionConfig::default()).await;
    let mapping = stream_mapping(&arn, "latest-restart-fn", r#""StartingPosition":"LATEST""#);
    let dir = state_dir();
    start_and_stop_before_any_record(&mapping, &sim.url(), &dir).await;
    assert_eq!(leases(&dir), [("shardId-000000000000".to_owned(), "AT_TIMESTAMP".to_owned())]);

    let records = |prefix: &str, n: usize| -> Vec<(String, String)> {
        (0..n).map(|i| ("k".to_owned(), format!("{prefix}{i}"))).collect()
    };
    kinesis.put(&name, &records("stopped", 3)).await;
    let poller = RunningPoller::start_in(&[mapping], &sim.url(), None, dir);
    kinesis.put(&name, &records("restarted", 2)).await;
    eventually(Duration::from_secs(60), "the records written after the restart", || async {
        processed_kinesis_data(&sim.invocations()).iter().filter(|d| d.starts_with("restarted")).count() >= 2
    })
    .await;
    poller.stop().await;
    let processed = processed_kinesis_data(&sorted(sim.invocations()));
    assert_eq!(processed, ["stopped0", "stopped1", "stopped2", "restarted0", "restarted1"]);
}

/// The same for DynamoDB Streams, which has no AT_TIMESTAMP iterator: the shard is read from
/// TRIM_HORIZON and what was written before the pinned second is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_latest_restart_loses_nothing_written_after_the_first_start() {
    let client = aws_sdk_dynamodb::Client::new(&e2e::sdk_config().await);
    let table = unique("latest-restart");
    let stream_arn = e2e::create_table_with_stream(&client, &table).await;
    let put = |pk: String| {
        let client = client.clone();
        let table = table.clone();
        async move {
            client.put_item().table_name(table).item("pk", AttributeValue::S(pk)).send().await.expect("PutItem");
        }
    };
    // Written before the mapping exists, in an earlier second than its first start (two seconds
    // apart, whether the stream's creation time is truncated or rounded to the second).
    put("early".to_owned()).await;
    let sim = simulator(FunctionConfig::default()).await;
    let mapping = stream_mapping(&stream_arn, "latest-restart-ddb-fn", r#""StartingPosition":"LATEST""#);
    let dir = state_dir();
    let early_second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    eventually(Duration::from_secs(10), "two seconds later", || async {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() > early_second + 1
    })
    .await;
    start_and_stop_before_any_record(&mapping, &sim.url(), &dir).await;

    for i in 0..3 {
        put(format!("stopped{i}")).await;
    }
    let poller = RunningPoller::start_in(&[mapping], &sim.url(), None, dir);
    for i in 0..2 {
        put(format!("restarted{i}")).await;
    }
    eventually(Duration::from_secs(60), "the records written after the restart", || async {
        e2e::processed_dynamodb(&sim.invocations()).iter().filter(|d| d.contains("restarted")).count() >= 2
    })
    .await;
    poller.stop().await;
    let processed = e2e::processed_dynamodb(&sorted(sim.invocations()));
    assert_eq!(
        processed,
        ["stopped0", "stopped1", "stopped2", "restarted0", "restarted1"].map(|pk| format!("INSERT:{pk}")),
        "the record written before the first start is skipped, nothing after it"
    );
}

/// Run SQL on a running poller's checkpoint file (beside the poller: WAL mode, busy timeout).
fn sql(state_dir: &Path, statement: &str) {
    let connection = rusqlite::Connection::open(state_dir.join("checkpoints.sqlite")).expect("checkpoint file");
    connection.busy_timeout(Duration::from_secs(10)).unwrap();
    connection.execute_batch(statement).expect(statement);
}

/// A shard worker that stops on an error (here its checkpoint writes fail: an SQLite trigger refuses
/// them) is counted as a worker failure and started again after a backoff, from its stored
/// checkpoint: the record whose checkpoint failed is delivered again, and once the store accepts
/// writes the shard continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_shard_worker_is_restarted_from_its_checkpoint() {
    let kinesis = Kinesis::new().await;
    let name = unique("worker-restart");
    let arn = kinesis.create_stream(&name, 1).await;
    let sim = simulator(FunctionConfig::default()).await;
    let mapping = stream_mapping(&arn, "worker-restart-fn", r#""StartingPosition":"TRIM_HORIZON""#);
    let dir = state_dir();
    let put = |data: &str| {
        let (kinesis, name, record) = (kinesis.clone(), name.clone(), [("k".to_owned(), data.to_owned())]);
        async move {
            kinesis.put(&name, &record).await;
        }
    };
    let delivered = |data: &str| processed_kinesis_data(&sim.invocations()).iter().filter(|d| *d == data).count();

    put("a").await;
    let poller = RunningPoller::start_in(&[mapping], &sim.url(), None, dir.clone());
    eventually(Duration::from_secs(60), "a is checkpointed", || async {
        leases(&dir).iter().any(|(_, checkpoint)| checkpoint.bytes().all(|b| b.is_ascii_digit()))
    })
    .await;
    sql(
        &dir,
        "CREATE TRIGGER refuse_checkpoints BEFORE UPDATE OF checkpoint ON leases
         BEGIN SELECT RAISE(ABORT, 'checkpoint writes refused by the test'); END;",
    );
    put("b").await;
    eventually(Duration::from_secs(60), "b delivered again by a restarted worker", || async { delivered("b") >= 2 })
        .await;
    sql(&dir, "DROP TRIGGER refuse_checkpoints;");
    put("c").await;
    eventually(Duration::from_secs(90), "c delivered once the store accepts checkpoints", || async {
        delivered("c") >= 1
    })
    .await;
    let reports = poller.stop().await;
    assert_eq!(delivered("a"), 1);
    let b_starts: Vec<f64> = sorted(sim.invocations())
        .iter()
        .filter(|i| processed_kinesis_data(std::slice::from_ref(*i)) == ["b"])
        .map(|i| i.received_at_ms)
        .collect();
    assert!(b_starts[1] - b_starts[0] >= 1000.0, "restarted after the 1 s backoff: {b_starts:?}");
    assert!(reports[0].counters.worker_failures >= 1, "{}", reports[0].counters);
}
