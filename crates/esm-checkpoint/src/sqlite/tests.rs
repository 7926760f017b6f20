use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use super::*;
use crate::conformance;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// Opens `path`, retrying briefly while it is `Locked`. Needed only when reopening in the same
/// process: `checkpoints_survive_sigkill` runs in parallel and spawns processes, and a process
/// being spawned holds a copy of every open descriptor (our lock file's included) from its fork
/// until its exec, which keeps the `flock` alive for a moment after we drop the store.
fn reopen(path: &Path) -> SqliteStore {
    for _ in 0..200 {
        match SqliteStore::open(path) {
            Err(Error::Locked(_)) => std::thread::sleep(Duration::from_millis(10)),
            other => return other.expect("open"),
        }
    }
    panic!("{} stayed locked", path.display());
}

#[tokio::test]
async fn sqlite_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.db");
    conformance::run_all(|| {
        let path = path.clone();
        async move { reopen(&path) }
    })
    .await;
}

#[test]
fn durability_pragmas_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("leases.db")).unwrap();
    let connection = store.connection.lock().unwrap();
    let pragma = |name: &str| -> String {
        connection
            .query_row(&format!("PRAGMA {name}"), [], |row| {
                row.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| format!("{v:?}"))
            .unwrap()
    };
    assert_eq!(pragma("journal_mode"), r#"Text("wal")"#);
    assert_eq!(pragma("synchronous"), "Integer(2)", "FULL");
    assert_eq!(pragma("busy_timeout"), "Integer(5000)");
    assert_eq!(pragma("user_version"), "Integer(2)");
}

/// A version 1 file (no `starting_timestamp` column) keeps its leases and gains the column.
#[tokio::test]
async fn a_version_1_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.db");
    let v1 = SCHEMA.replace("    starting_timestamp INTEGER,\n", "");
    assert_ne!(v1, SCHEMA);
    {
        let connection = Connection::open(&path).unwrap();
        connection.execute_batch(&v1).unwrap();
        connection
            .execute(
                "INSERT INTO leases (mapping_uuid, lease_key, lease_counter, checkpoint, updated_at)
                 VALUES ('m', 'shardId-000000000000', 3, 'AT_TIMESTAMP', 0)",
                [],
            )
            .unwrap();
        connection.pragma_update(None, "user_version", 1).unwrap();
    }
    let store = reopen(&path);
    let leases = store.list("m").await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].checkpoint, Checkpoint::AtTimestamp(None));
    let pinned = Checkpoint::AtTimestamp(Some(1_764_086_780_123));
    let lease = NewLease {
        lease_key: "shardId-000000000001".into(),
        checkpoint: pinned.clone(),
        parent_shard_ids: vec![],
    };
    assert!(store.create_if_absent("m", lease).await.unwrap());
    assert_eq!(store.list("m").await.unwrap()[1].checkpoint, pinned);
}

#[test]
fn a_second_open_is_refused_while_the_store_lives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.db");
    let first = SqliteStore::open(&path).unwrap();
    let clone = first.clone();
    let refused = SqliteStore::open(&path);
    assert!(
        matches!(&refused, Err(Error::Locked(lock)) if lock.ends_with("leases.db.lock")),
        "got {refused:?}"
    );
    drop(first);
    assert!(
        matches!(SqliteStore::open(&path), Err(Error::Locked(_))),
        "a clone keeps the lock"
    );
    drop(clone);
    reopen(&path); // the lock was released with the last handle
}

#[test]
fn busy_database_errors_are_transient() {
    let busy =
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
    assert!(storage(busy).is_transient());
    assert!(!storage(rusqlite::Error::QueryReturnedNoRows).is_transient());
}

#[test]
fn malformed_rows_are_reported_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .connection
        .lock()
        .unwrap()
        .execute(
            "INSERT INTO leases (mapping_uuid, lease_key, lease_counter, checkpoint, updated_at)
             VALUES ('m', 'shardId-000000000000', 0, 'not-a-number', 0)",
            [],
        )
        .unwrap();
    let listed = runtime().block_on(store.list("m"));
    assert!(
        matches!(&listed, Err(Error::Storage(e)) if e.to_string().contains("corrupt lease")),
        "got {listed:?}"
    );
}

/// Checkpoints pending at the same moment go into one transaction (one commit, one fsync); none is
/// answered before that commit, and a fenced-out one is refused alone while the others are written.
#[tokio::test]
#[expect(clippy::await_holding_lock, reason = "the test holds the connection so that checkpoints queue up")]
async fn pending_checkpoints_share_one_commit_and_a_fenced_one_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("leases.db")).unwrap();
    let lease = |shard: usize| LeaseRef::new("m", format!("shardId-00000000000{shard}"));
    for shard in 0..4 {
        let new = NewLease {
            lease_key: lease(shard).lease_key,
            checkpoint: Checkpoint::TrimHorizon,
            parent_shard_ids: vec![],
        };
        assert!(store.create_if_absent("m", new).await.unwrap());
        assert_eq!(store.take(&lease(shard), "w", 0).await.unwrap().counter, 1);
    }
    let commits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&commits);
    let mut held = store.connection.lock().unwrap();
    held.commit_hook(Some(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        false
    }))
    .expect("commit hook");
    let sequence_number = SequenceNumber::parse("100").unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|shard| {
            let (store, lease, sequence_number) = (store.clone(), lease(shard), sequence_number.clone());
            // Shard 2 names a counter it no longer holds (another worker took the lease since).
            let counter = if shard == 2 { 0 } else { 1 };
            tokio::spawn(async move { store.checkpoint(&lease, "w", counter, &sequence_number, 0).await })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.checkpoints.lock().unwrap().len() < 4 {
        assert!(std::time::Instant::now() < deadline, "the four checkpoints never queued up");
        tokio::task::yield_now().await;
    }
    assert!(tasks.iter().all(|t| !t.is_finished()), "nothing is answered before its commit");
    drop(held);

    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(commits.load(std::sync::atomic::Ordering::SeqCst), 1, "one commit for the group");
    for (shard, answer) in answers.iter().enumerate() {
        match shard {
            2 => assert!(matches!(answer, Err(Error::Lost)), "fenced out: {answer:?}"),
            _ => assert_eq!(answer.as_ref().ok(), Some(&2), "shard {shard}"),
        }
    }
    let leases = store.list("m").await.unwrap();
    for (shard, stored) in leases.iter().enumerate() {
        let expected = if shard == 2 {
            (Checkpoint::TrimHorizon, 1)
        } else {
            (Checkpoint::Sequence { sequence_number: sequence_number.clone(), sub_sequence_number: 0 }, 2)
        };
        assert_eq!((stored.checkpoint.clone(), stored.counter), expected, "shard {shard}");
    }

    // A checkpoint alone is committed alone, at once.
    let later = SequenceNumber::parse("200").unwrap();
    assert_eq!(store.checkpoint(&lease(0), "w", 2, &later, 0).await.unwrap(), 3);
    assert_eq!(commits.load(std::sync::atomic::Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------------
// Crash test: a child process (this test binary, re-invoked) checkpoints in a loop and prints
// "ack N" after each acknowledged write; the parent SIGKILLs it and checks the file.

const CHILD_ENV: &str = "ESM_CHECKPOINT_CRASH_CHILD_DB";
const CHILD_TEST: &str = "sqlite::tests::crash_child_writer";
const CRASH_MAPPING: &str = "crash";
const CRASH_SHARD: &str = "shardId-000000000000";

fn stored_checkpoint(store: &SqliteStore) -> Option<u64> {
    let leases = runtime().block_on(store.list(CRASH_MAPPING)).expect("list");
    match &leases.first()?.checkpoint {
        Checkpoint::Sequence {
            sequence_number, ..
        } => Some(sequence_number.as_str().parse().expect("numeric")),
        _ => None,
    }
}

/// The writer run by `checkpoints_survive_sigkill`; without its environment variable it returns
/// at once.
#[test]
#[ignore = "helper process of checkpoints_survive_sigkill"]
fn crash_child_writer() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = SqliteStore::open(&path).expect("child open");
    let lease = LeaseRef::new(CRASH_MAPPING, CRASH_SHARD);
    let mut next = stored_checkpoint(&store).map_or(1, |n| n + 1);
    runtime().block_on(async {
        let new = NewLease {
            lease_key: CRASH_SHARD.into(),
            checkpoint: Checkpoint::TrimHorizon,
            parent_shard_ids: vec![],
        };
        store
            .create_if_absent(CRASH_MAPPING, new)
            .await
            .expect("create");
        let current = store.list(CRASH_MAPPING).await.expect("list").remove(0);
        let mut counter = store
            .take(&lease, "crash-writer", current.counter)
            .await
            .expect("take")
            .counter;
        let mut stdout = std::io::stdout();
        loop {
            let sequence_number = SequenceNumber::parse(&next.to_string()).unwrap();
            counter = store
                .checkpoint(&lease, "crash-writer", counter, &sequence_number, 0)
                .await
                .expect("checkpoint");
            writeln!(stdout, "ack {next}")
                .and_then(|()| stdout.flush())
                .expect("stdout");
            next += 1;
        }
    });
}

#[test]
fn checkpoints_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.db");
    let mut previous = 0;
    for kill_after in [20, 37, 55] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                CHILD_TEST,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acks = 0;
        let mut last_ack = previous;
        for line in lines.by_ref() {
            if let Some(n) = line.unwrap().strip_prefix("ack ") {
                last_ack = n.parse().unwrap();
                acks += 1;
                if acks == 1 {
                    let refused = SqliteStore::open(&path);
                    assert!(
                        matches!(refused, Err(Error::Locked(_))),
                        "another process holds it: {refused:?}"
                    );
                }
                if acks == kill_after {
                    break;
                }
            }
        }
        assert_eq!(acks, kill_after, "child stopped before being killed");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        // Acks written before the kill may still sit in the pipe.
        for line in lines {
            if let Some(n) = line.unwrap().strip_prefix("ack ") {
                last_ack = n.parse().unwrap();
            }
        }

        let store =
            SqliteStore::open(&path).expect("reopen after SIGKILL: lock released by the OS");
        let integrity: String = store
            .connection
            .lock()
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
        let stored = stored_checkpoint(&store).expect("a checkpoint was written");
        // Every acknowledged write is durable; at most the one in flight at the kill got in
        // without its ack.
        assert!(
            (last_ack..=last_ack + 1).contains(&stored),
            "stored {stored}, last acknowledged {last_ack}"
        );
        assert!(
            stored >= previous,
            "checkpoint went backwards: {previous} -> {stored}"
        );
        previous = stored;
    }
}
