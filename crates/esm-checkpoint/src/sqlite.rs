//! The embedded single-instance store: SQLite (bundled) in WAL mode.
//!
//! Durability (docs/aws-reference.md#sqlite): `journal_mode=WAL` + `synchronous=FULL` fsyncs the WAL
//! on every commit, so an acknowledged checkpoint survives a process crash *and* a power loss;
//! a crash never corrupts the file (SQLite's atomic commit). Every write is one
//! `BEGIN IMMEDIATE` transaction that reads the row, checks the fencing conditions and updates
//! it, so the check and the write are atomic. `busy_timeout` (5 s) covers a reader such as the
//! `sqlite3` CLI holding the file briefly.
//!
//! Checkpoints are group-committed ([`crate::group`]): those of several shards that are pending
//! while a commit is on disk are written together by the next transaction, one fsync for all. Each
//! keeps its own fence check (the row is read, and updated only if owner and counter still match),
//! so a fenced-out checkpoint is refused alone; each caller is answered only once the commit that
//! holds its checkpoint has returned, i.e. is on disk. A failed transaction fails its whole group,
//! none of which was written, and every caller may retry with the same counter.
//!
//! Exclusivity: [`SqliteStore::open`] takes an exclusive advisory lock (`flock` via
//! `File::try_lock`) on a sibling `<file>.lock` and keeps it while the store lives. A second
//! poller process pointed at the same file fails fast with [`Error::Locked`] instead of
//! fighting over leases; the OS releases the lock when the process dies, even on SIGKILL.
//! (A process spawned while the store is open holds a copy of the lock descriptor from fork to
//! exec, so reopening in the same process right after a drop can briefly see `Locked`.)
//!
//! Table `leases`, primary key `(mapping_uuid, lease_key)`, columns mirroring the KCL
//! attributes (§8.2): `lease_owner`, `lease_counter`, `checkpoint` (sentinel or sequence number
//! text), `checkpoint_sub`, `owner_switches`, `parent_shard_ids` / `child_shard_ids`
//! (comma-separated), `pending_checkpoint` (KCL's two-phase checkpoint; not used yet, kept NULL
//! so exports to a KCL table stay one-to-one), `starting_timestamp` (the pinned time of an
//! `AT_TIMESTAMP` checkpoint, epoch ms; added in schema version 2) and `updated_at` (epoch ms of
//! the last write, diagnostic only; no decision reads it).

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params,
};
use tokio::sync::oneshot;

use crate::group::GroupQueue;
use crate::{
    BoxError, Checkpoint, ChildShard, Error, Lease, LeaseRef, LeaseStore, NewLease, SequenceNumber,
};

/// How long a write waits for another connection's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema version stored in `PRAGMA user_version`, for future migrations.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS leases (
    mapping_uuid       TEXT    NOT NULL,
    lease_key          TEXT    NOT NULL,
    lease_owner        TEXT,
    lease_counter      INTEGER NOT NULL,
    checkpoint         TEXT    NOT NULL,
    checkpoint_sub     INTEGER NOT NULL DEFAULT 0,
    owner_switches     INTEGER NOT NULL DEFAULT 0,
    parent_shard_ids   TEXT    NOT NULL DEFAULT '',
    child_shard_ids    TEXT    NOT NULL DEFAULT '',
    pending_checkpoint TEXT,
    starting_timestamp INTEGER,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (mapping_uuid, lease_key)
) WITHOUT ROWID;
";

const SELECT_COLUMNS: &str = "lease_key, lease_owner, lease_counter, checkpoint, checkpoint_sub, \
                              owner_switches, parent_shard_ids, child_shard_ids, starting_timestamp";

/// SQLite-backed [`LeaseStore`] for a single poller instance.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
    /// Checkpoints waiting for the next group commit.
    checkpoints: Arc<Mutex<GroupQueue<CheckpointRequest>>>,
    /// Held for the store's lifetime; dropping the last clone releases the lock.
    _lock: Arc<File>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`. Blocking: call it at start-up or from
    /// `spawn_blocking`. Fails with [`Error::Locked`] if another process has it open.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let lock = lock_file(path)?;
        let connection = Connection::open(path).map_err(storage)?;
        let journal_mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(storage)?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Storage(
                format!("cannot enable WAL (journal_mode={journal_mode})").into(),
            ));
        }
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(storage)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(storage)?;
        connection.execute_batch(SCHEMA).map_err(storage)?;
        // Version 1 files have no `starting_timestamp` column.
        let has_starting_timestamp: bool = connection
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('leases') WHERE name = 'starting_timestamp'",
                [],
                |row| row.get::<_, i64>(0).map(|n| n > 0),
            )
            .map_err(storage)?;
        if !has_starting_timestamp {
            connection
                .execute_batch("ALTER TABLE leases ADD COLUMN starting_timestamp INTEGER")
                .map_err(storage)?;
        }
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(storage)?;
        Ok(SqliteStore {
            connection: Arc::new(Mutex::new(connection)),
            checkpoints: Arc::default(),
            _lock: Arc::new(lock),
        })
    }

    /// Runs `f` on the connection in tokio's blocking pool.
    async fn with_connection<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            // A panic inside an earlier closure rolled its transaction back when the
            // `Transaction` dropped; the connection itself is still sound.
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut connection)
        })
        .await
        .map_err(|join| Error::Storage(Box::new(join)))?
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction, committing if it returns `Ok`.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.with_connection(move |connection| {
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(storage)?;
            let value = f(&tx)?;
            tx.commit().map_err(storage)?;
            Ok(value)
        })
        .await
    }

    /// Bumps the counter of a lease `owner` holds at `expected_counter`, setting `extra` columns
    /// too (renew: none; release: no owner).
    async fn fenced_bump(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
        extra: &'static str,
    ) -> Result<u64, Error> {
        let (lease, owner) = (lease.clone(), owner.to_owned());
        self.write(move |tx| {
            let row = Self::fenced(tx, &lease, &owner, expected_counter)?;
            bump(tx, &lease, row.counter, extra)
        })
        .await
    }

    /// Checks the fence of `lease` inside `tx` and returns the current row.
    fn fenced(
        tx: &Transaction<'_>,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
    ) -> Result<Lease, Error> {
        match load(tx, lease)? {
            Some(row) if holds(&row, owner, expected_counter) => Ok(row),
            _ => Err(Error::Lost),
        }
    }
}

impl LeaseStore for SqliteStore {
    async fn list(&self, mapping_uuid: &str) -> Result<Vec<Lease>, Error> {
        let mapping_uuid = mapping_uuid.to_owned();
        self.with_connection(move |connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {SELECT_COLUMNS} FROM leases WHERE mapping_uuid = ?1 ORDER BY lease_key"
                ))
                .map_err(storage)?;
            let rows = statement
                .query_map(params![mapping_uuid], read_row)
                .map_err(storage)?;
            rows.map(|row| row.map_err(storage)?).collect()
        })
        .await
    }

    async fn create_if_absent(&self, mapping_uuid: &str, lease: NewLease) -> Result<bool, Error> {
        let mapping_uuid = mapping_uuid.to_owned();
        self.write(move |tx| {
            insert_if_absent(
                tx,
                &mapping_uuid,
                &lease.lease_key,
                &lease.checkpoint,
                &lease.parent_shard_ids,
            )
        })
        .await
    }

    async fn take(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
    ) -> Result<Lease, Error> {
        let (lease, owner) = (lease.clone(), owner.to_owned());
        self.write(move |tx| {
            let row = load(tx, &lease)?.ok_or(Error::Lost)?;
            if row.counter != expected_counter {
                return Err(Error::Lost);
            }
            for parent in &row.parent_shard_ids {
                let parent_ref = LeaseRef::new(lease.mapping_uuid.clone(), parent.clone());
                if load(tx, &parent_ref)?.is_some_and(|p| p.checkpoint != Checkpoint::ShardEnd) {
                    return Err(Error::ParentNotEnded(parent.clone()));
                }
            }
            let switched = row.owner.as_deref() != Some(owner.as_str());
            let taken = Lease {
                owner: Some(owner),
                counter: row.counter + 1,
                owner_switches_since_checkpoint: row.owner_switches_since_checkpoint + u64::from(switched),
                ..row
            };
            tx.execute(
                "UPDATE leases SET lease_owner = ?3, lease_counter = ?4, owner_switches = ?5, updated_at = ?6
                 WHERE mapping_uuid = ?1 AND lease_key = ?2",
                params![
                    lease.mapping_uuid,
                    lease.lease_key,
                    taken.owner,
                    to_sql(taken.counter),
                    to_sql(taken.owner_switches_since_checkpoint),
                    now_millis()
                ],
            )
            .map_err(storage)?;
            Ok(taken)
        })
        .await
    }

    async fn renew(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
    ) -> Result<u64, Error> {
        self.fenced_bump(lease, owner, expected_counter, "").await
    }

    async fn checkpoint(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
        sequence_number: &SequenceNumber,
        sub_sequence_number: u64,
    ) -> Result<u64, Error> {
        let (reply, answer) = oneshot::channel();
        let request = CheckpointRequest {
            lease: lease.clone(),
            owner: owner.to_owned(),
            expected_counter,
            requested: Checkpoint::Sequence {
                sequence_number: sequence_number.clone(),
                sub_sequence_number,
            },
            reply,
        };
        let start = self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner).push(request);
        if start {
            let committer = Committer {
                connection: Arc::clone(&self.connection),
                queue: Arc::clone(&self.checkpoints),
                stopped: false,
            };
            // Dropped unrun if the runtime is shutting down: `Committer`'s drop then fails the queue.
            drop(tokio::task::spawn_blocking(move || committer.run()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(Error::Storage("the checkpoint writer stopped before answering".into())))
    }

    async fn end_shard(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
        children: &[ChildShard],
    ) -> Result<u64, Error> {
        let (lease, owner, children) = (lease.clone(), owner.to_owned(), children.to_vec());
        self.write(move |tx| {
            let row = Self::fenced(tx, &lease, &owner, expected_counter)?;
            for child in &children {
                insert_if_absent(
                    tx,
                    &lease.mapping_uuid,
                    &child.lease_key,
                    &Checkpoint::TrimHorizon,
                    &child.parent_shard_ids,
                )?;
            }
            let child_ids: Vec<String> = children.into_iter().map(|c| c.lease_key).collect();
            tx.execute(
                "UPDATE leases SET checkpoint = ?3, checkpoint_sub = 0, child_shard_ids = ?4,
                                   pending_checkpoint = NULL
                 WHERE mapping_uuid = ?1 AND lease_key = ?2",
                params![
                    lease.mapping_uuid,
                    lease.lease_key,
                    Checkpoint::ShardEnd.kcl_value(),
                    join_ids(&child_ids)?
                ],
            )
            .map_err(storage)?;
            bump(tx, &lease, row.counter, "")
        })
        .await
    }

    async fn release(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
    ) -> Result<u64, Error> {
        self.fenced_bump(lease, owner, expected_counter, ", lease_owner = NULL")
            .await
    }
}

/// A checkpoint waiting for the next group commit.
#[derive(Debug)]
struct CheckpointRequest {
    lease: LeaseRef,
    owner: String,
    expected_counter: u64,
    requested: Checkpoint,
    reply: oneshot::Sender<Result<u64, Error>>,
}

/// The one running writer of queued checkpoints (on the blocking pool), from the request that found
/// none running until the queue is empty.
struct Committer {
    connection: Arc<Mutex<Connection>>,
    queue: Arc<Mutex<GroupQueue<CheckpointRequest>>>,
    /// True once the queue told it to stop; otherwise its drop fails what is queued.
    stopped: bool,
}

impl Committer {
    fn run(mut self) {
        loop {
            // The connection first, the group second: what queues up while another write holds the
            // connection joins this group.
            let mut connection = self.connection.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(group) = self.queue.lock().unwrap_or_else(PoisonError::into_inner).take() else {
                self.stopped = true;
                return;
            };
            let answers = commit_group(&mut connection, &group);
            drop(connection);
            for (request, answer) in group.into_iter().zip(answers) {
                // The caller may have gone (its future dropped); the checkpoint stands either way.
                drop(request.reply.send(answer));
            }
        }
    }
}

impl Drop for Committer {
    /// A panic (or a task dropped unrun) must not leave the queue waiting for this committer:
    /// the queued callers get an error (their reply senders drop) and the next request starts anew.
    fn drop(&mut self) {
        if !self.stopped {
            drop(self.queue.lock().unwrap_or_else(PoisonError::into_inner).abandon());
        }
    }
}

/// Writes `group` in one transaction, one answer per request in order. A refusal (fence, order,
/// corrupt row) writes nothing and concerns its request alone; a storage failure rolls the whole
/// transaction back and is every request's answer.
fn commit_group(connection: &mut Connection, group: &[CheckpointRequest]) -> Vec<Result<u64, Error>> {
    let written = (|| {
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let answers = group
            .iter()
            .map(|request| apply_checkpoint(&tx, request))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        tx.commit()?;
        Ok(answers)
    })();
    written.unwrap_or_else(|error: rusqlite::Error| {
        let error = Arc::new(error);
        group
            .iter()
            .map(|_| Err(storage_error(is_busy(&error), Box::new(Arc::clone(&error)))))
            .collect()
    })
}

/// One checkpoint inside a group's transaction: the fence, then the order, then the write. The
/// outer error is SQLite's (fails the group), the inner one this request's answer.
fn apply_checkpoint(tx: &Transaction<'_>, request: &CheckpointRequest) -> rusqlite::Result<Result<u64, Error>> {
    let row = match load_row(tx, &request.lease)? {
        Some(Ok(row)) if holds(&row, &request.owner, request.expected_counter) => row,
        Some(Err(corrupt)) => return Ok(Err(corrupt)),
        _ => return Ok(Err(Error::Lost)),
    };
    if row.checkpoint.is_after(&request.requested) {
        return Ok(Err(Error::CheckpointBackwards {
            current: row.checkpoint,
            requested: request.requested.clone(),
        }));
    }
    // One cached statement that also bumps the counter: a busy shard writes one per batch.
    let next = row.counter + 1;
    tx.prepare_cached(
        "UPDATE leases SET checkpoint = ?3, checkpoint_sub = ?4, owner_switches = 0,
                           pending_checkpoint = NULL, lease_counter = ?5, updated_at = ?6
         WHERE mapping_uuid = ?1 AND lease_key = ?2",
    )?
    .execute(params![
        request.lease.mapping_uuid,
        request.lease.lease_key,
        request.requested.kcl_value(),
        to_sql(request.requested.sub_sequence_number()),
        to_sql(next),
        now_millis()
    ])?;
    Ok(Ok(next))
}

/// The fence: `row` is still `owner`'s at the counter it last saw.
fn holds(row: &Lease, owner: &str, expected_counter: u64) -> bool {
    row.counter == expected_counter && row.owner.as_deref() == Some(owner)
}

/// Sets the counter to `counter + 1` (plus `extra` assignments) and returns it.
fn bump(tx: &Transaction<'_>, lease: &LeaseRef, counter: u64, extra: &str) -> Result<u64, Error> {
    let next = counter + 1;
    tx.prepare_cached(&format!(
        "UPDATE leases SET lease_counter = ?3, updated_at = ?4{extra}
         WHERE mapping_uuid = ?1 AND lease_key = ?2"
    ))
    .and_then(|mut statement| {
        statement.execute(params![
            lease.mapping_uuid,
            lease.lease_key,
            to_sql(next),
            now_millis()
        ])
    })
    .map_err(storage)?;
    Ok(next)
}

fn insert_if_absent(
    tx: &Transaction<'_>,
    mapping_uuid: &str,
    lease_key: &str,
    checkpoint: &Checkpoint,
    parent_shard_ids: &[String],
) -> Result<bool, Error> {
    validate_key(lease_key)?;
    let inserted = tx
        .execute(
            "INSERT INTO leases (mapping_uuid, lease_key, lease_owner, lease_counter, checkpoint,
                                 checkpoint_sub, owner_switches, parent_shard_ids, updated_at,
                                 starting_timestamp)
             VALUES (?1, ?2, NULL, 0, ?3, ?4, 0, ?5, ?6, ?7)
             ON CONFLICT (mapping_uuid, lease_key) DO NOTHING",
            params![
                mapping_uuid,
                lease_key,
                checkpoint.kcl_value(),
                to_sql(checkpoint.sub_sequence_number()),
                join_ids(parent_shard_ids)?,
                now_millis(),
                checkpoint.starting_timestamp_millis()
            ],
        )
        .map_err(storage)?;
    Ok(inserted == 1)
}

fn load(tx: &Transaction<'_>, lease: &LeaseRef) -> Result<Option<Lease>, Error> {
    load_row(tx, lease).map_err(storage)?.transpose()
}

/// The row of `lease`, if any; the outer error is SQLite's, the inner one a malformed value.
fn load_row(tx: &Transaction<'_>, lease: &LeaseRef) -> rusqlite::Result<Option<Result<Lease, Error>>> {
    tx.prepare_cached(&format!("SELECT {SELECT_COLUMNS} FROM leases WHERE mapping_uuid = ?1 AND lease_key = ?2"))
        .and_then(|mut statement| statement.query_row(params![lease.mapping_uuid, lease.lease_key], read_row))
        .optional()
}

/// Decodes a row; the outer error is SQLite's, the inner one a malformed value.
fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Lease, Error>> {
    let lease_key: String = row.get(0)?;
    let checkpoint_text: String = row.get(3)?;
    let checkpoint_sub: i64 = row.get(4)?;
    let parents: String = row.get(6)?;
    let children: String = row.get(7)?;
    let counter: i64 = row.get(2)?;
    let switches: i64 = row.get(5)?;
    let owner: Option<String> = row.get(1)?;
    let starting_timestamp: Option<i64> = row.get(8)?;
    let corrupt =
        |what: &str| Error::Storage(format!("corrupt lease {lease_key:?}: {what}").into());
    let decoded = (|| -> Result<Lease, Error> {
        Ok(Lease {
            checkpoint: Checkpoint::from_stored(
                &checkpoint_text,
                from_sql(checkpoint_sub).ok_or_else(|| corrupt("checkpoint_sub"))?,
                starting_timestamp,
            )
            .map_err(|e| corrupt(&e.to_string()))?,
            counter: from_sql(counter).ok_or_else(|| corrupt("lease_counter"))?,
            owner_switches_since_checkpoint: from_sql(switches)
                .ok_or_else(|| corrupt("owner_switches"))?,
            parent_shard_ids: split_ids(&parents),
            child_shard_ids: split_ids(&children),
            owner,
            lease_key: lease_key.clone(),
        })
    })();
    Ok(decoded)
}

fn validate_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.contains(',') {
        return Err(Error::InvalidLeaseKey(key.to_owned()));
    }
    Ok(())
}

fn join_ids(ids: &[String]) -> Result<String, Error> {
    ids.iter().try_for_each(|id| validate_key(id))?;
    Ok(ids.join(","))
}

fn split_ids(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

/// SQLite integers are i64; counters and sub-sequence numbers never get near 2^63.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql(value: i64) -> Option<u64> {
    u64::try_from(value).ok()
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Classifies SQLite errors: lock contention is transient, the rest is not.
fn storage(error: rusqlite::Error) -> Error {
    let busy = is_busy(&error);
    storage_error(busy, Box::new(error))
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn storage_error(busy: bool, error: BoxError) -> Error {
    if busy {
        Error::Transient(error)
    } else {
        Error::Storage(error)
    }
}

/// Takes the exclusive lock on `<path>.lock`.
fn lock_file(path: &Path) -> Result<File, Error> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::Storage(Box::new(e)))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Locked(lock_path)),
        Err(TryLockError::Error(e)) => Err(Error::Storage(Box::new(e))),
    }
}

#[cfg(test)]
mod tests;
