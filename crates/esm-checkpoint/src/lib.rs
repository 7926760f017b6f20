//! Durable leases and checkpoints for stream event source mappings.
//!
//! One lease per shard and mapping, shaped like a row of the KCL lease table
//! (docs/aws-reference.md#lease-table): an owner, a **lease counter** used as a fencing token, the
//! checkpoint, and the parent/child shard links. Every mutation names the counter its caller
//! last saw; the store applies it only if the lease still has that counter (and, except for
//! `take`, that owner), bumps the counter and returns the new value. Anything else is
//! [`Error::Lost`]: another worker (or an earlier generation of this one) changed the lease, so
//! the caller must stop processing the shard without checkpointing.
//!
//! Rules the store enforces, whatever the backend:
//! * checkpoints never move backwards (numeric sequence order, then sub-sequence number;
//!   `SHARD_END` is final);
//! * a lease whose parent lease exists and has not reached `SHARD_END` cannot be taken, so
//!   children are never processed before their parents (a missing parent lease does not block);
//! * ending a shard records its children and creates their leases (at `TRIM_HORIZON`) in the
//!   same step.
//!
//! # Stores
//! * [`SqliteStore`]: embedded, for one poller process (an exclusive file lock keeps others
//!   out), so every lease is this process's.
//! * `DynamoDbStore` (feature `dynamodb`): one KCL-compatible DynamoDB table per mapping,
//!   shared by several poller processes, which split the shards between them.
//!
//! # Async API
//! [`LeaseStore`] is an `async` trait (native `async fn` in traits, futures `Send`) because the
//! poller is tokio-based and DynamoDB is naturally async. [`SqliteStore`] runs its blocking
//! SQLite calls on tokio's blocking pool (`spawn_blocking`), so it must be used inside a tokio
//! runtime. Generic code uses `S: LeaseStore` (the trait is not object-safe).
//!
//! # Intended use
//! One task per held lease owns the counter and serialises renew and checkpoint calls for it
//! (like KCL's per-lease lock), checkpointing only records that are final. After
//! [`Error::Transient`], retry with the **same** counter: a store that cannot know whether its
//! write was applied recognises its own write on the retry.
//!
//! # Several instances: expiry without synchronised clocks
//! No store records *when* a lease was renewed; a renewal just bumps the counter. Each worker
//! lists the leases periodically and notes, on its own monotonic clock, when it last saw each
//! counter change; a lease whose counter has not moved for the failover time (10 s) is expired
//! and may be taken with the counter seen (docs/aws-reference.md#lease-taking). [`LeaseTaker`] implements
//! this and KCL 2.x's balancing rule as pure logic over [`LeaseStore::list`] results, so it
//! works with any store; holders renew every [`TakerConfig::renew_interval`]. The full protocol
//! and the poller's checklist are in `docs/leases.md`.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;

pub use esm_stream::SequenceNumber;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(feature = "dynamodb")]
mod dynamodb;
mod group;
mod sqlite;
mod taker;

#[cfg(feature = "dynamodb")]
pub use dynamodb::DynamoDbStore;
pub use sqlite::SqliteStore;
pub use taker::{LeaseTaker, Take, TakerConfig};

/// A lease's checkpoint: a KCL sentinel or a position in the shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// `TRIM_HORIZON`: start at the oldest record (also every child shard's start).
    TrimHorizon,
    /// `LATEST`: start after the newest record.
    Latest,
    /// `AT_TIMESTAMP`: start at the records that arrived at or after this time (epoch
    /// milliseconds). The time is pinned when the lease is created (the mapping's
    /// `StartingPositionTimestamp`, or the first start of a `LATEST` mapping) and stored beside
    /// the KCL sentinel, so every restart resumes from the same place. `None` for a lease
    /// written by KCL, which keeps the time in its application's configuration instead.
    AtTimestamp(Option<i64>),
    /// Everything up to and including this record is final.
    Sequence {
        /// The record's sequence number.
        sequence_number: SequenceNumber,
        /// Position inside a KPL-aggregated record (0 otherwise).
        sub_sequence_number: u64,
    },
    /// `SHARD_END`: the shard is closed and fully processed.
    ShardEnd,
}

impl Checkpoint {
    /// The KCL `checkpoint` attribute value (sentinel name or sequence number).
    pub fn kcl_value(&self) -> &str {
        match self {
            Checkpoint::TrimHorizon => "TRIM_HORIZON",
            Checkpoint::Latest => "LATEST",
            Checkpoint::AtTimestamp(_) => "AT_TIMESTAMP",
            Checkpoint::Sequence {
                sequence_number, ..
            } => sequence_number.as_str(),
            Checkpoint::ShardEnd => "SHARD_END",
        }
    }

    /// The KCL `checkpointSubSequenceNumber` attribute value.
    pub fn sub_sequence_number(&self) -> u64 {
        match self {
            Checkpoint::Sequence {
                sub_sequence_number,
                ..
            } => *sub_sequence_number,
            _ => 0,
        }
    }

    /// The pinned time of an `AT_TIMESTAMP` checkpoint (stored beside the KCL attributes).
    pub fn starting_timestamp_millis(&self) -> Option<i64> {
        match self {
            Checkpoint::AtTimestamp(millis) => *millis,
            _ => None,
        }
    }

    /// The checkpoint read from the KCL attribute pair and the stored pinned time (which only an
    /// `AT_TIMESTAMP` checkpoint keeps).
    pub fn from_stored(value: &str, sub_sequence_number: u64, starting_timestamp_millis: Option<i64>) -> Result<Self, esm_stream::Error> {
        Ok(match Checkpoint::from_kcl(value, sub_sequence_number)? {
            Checkpoint::AtTimestamp(_) => Checkpoint::AtTimestamp(starting_timestamp_millis),
            other => other,
        })
    }

    /// Parses the KCL attribute pair back (an `AT_TIMESTAMP` without its time).
    pub fn from_kcl(value: &str, sub_sequence_number: u64) -> Result<Self, esm_stream::Error> {
        Ok(match value {
            "TRIM_HORIZON" => Checkpoint::TrimHorizon,
            "LATEST" => Checkpoint::Latest,
            "AT_TIMESTAMP" => Checkpoint::AtTimestamp(None),
            "SHARD_END" => Checkpoint::ShardEnd,
            number => Checkpoint::Sequence {
                sequence_number: SequenceNumber::parse(number)?,
                sub_sequence_number,
            },
        })
    }

    /// Progress rank: start sentinels, then positions, then `SHARD_END`.
    fn rank(&self) -> u8 {
        match self {
            Checkpoint::TrimHorizon | Checkpoint::Latest | Checkpoint::AtTimestamp(_) => 0,
            Checkpoint::Sequence { .. } => 1,
            Checkpoint::ShardEnd => 2,
        }
    }

    /// True if moving from `self` to `next` would go backwards. Start sentinels are all "before
    /// any record"; positions compare by sequence number, then sub-sequence number.
    pub fn is_after(&self, next: &Checkpoint) -> bool {
        match (self, next) {
            (
                Checkpoint::Sequence {
                    sequence_number: a,
                    sub_sequence_number: sa,
                },
                Checkpoint::Sequence {
                    sequence_number: b,
                    sub_sequence_number: sb,
                },
            ) => (a, sa) > (b, sb),
            _ => self.rank() > next.rank(),
        }
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.sub_sequence_number(), self.starting_timestamp_millis()) {
            (_, Some(millis)) => write!(f, "{}@{millis}", self.kcl_value()),
            (0, None) => f.write_str(self.kcl_value()),
            (sub, None) => write!(f, "{}/{sub}", self.kcl_value()),
        }
    }
}

/// One lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The shard id (KCL single-stream `leaseKey`).
    pub lease_key: String,
    /// Worker holding the lease; `None` when free.
    pub owner: Option<String>,
    /// The fencing token: bumped by every mutation.
    pub counter: u64,
    /// Progress in the shard.
    pub checkpoint: Checkpoint,
    /// Owner changes since the last checkpoint (diagnostic, as in KCL).
    pub owner_switches_since_checkpoint: u64,
    /// Parent shards (a split has one, a merge two).
    pub parent_shard_ids: Vec<String>,
    /// Children, written when the shard ends.
    pub child_shard_ids: Vec<String>,
}

/// A lease to create (shard discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLease {
    /// The shard id.
    pub lease_key: String,
    /// Initial position: the mapping's starting position, `TRIM_HORIZON` for children.
    pub checkpoint: Checkpoint,
    /// Parent shards.
    pub parent_shard_ids: Vec<String>,
}

/// A child shard reported at the end of its parent (Kinesis `ChildShards`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildShard {
    /// The child's shard id.
    pub lease_key: String,
    /// All its parents (two for a merge).
    pub parent_shard_ids: Vec<String>,
}

/// Which lease: mapping and shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    /// The event source mapping's UUID.
    pub mapping_uuid: String,
    /// The shard id.
    pub lease_key: String,
}

impl LeaseRef {
    /// Convenience constructor.
    pub fn new(mapping_uuid: impl Into<String>, lease_key: impl Into<String>) -> Self {
        LeaseRef {
            mapping_uuid: mapping_uuid.into(),
            lease_key: lease_key.into(),
        }
    }
}

/// Boxed backend error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of every [`LeaseStore`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lease is missing, or its counter or owner is not what the caller expected: stop
    /// processing the shard and do not checkpoint.
    #[error("lease lost (missing, or counter/owner changed)")]
    Lost,
    /// The checkpoint would move backwards; the lease is unchanged.
    #[error("checkpoint would move backwards from {current} to {requested}")]
    CheckpointBackwards {
        /// The stored checkpoint.
        current: Checkpoint,
        /// The refused one.
        requested: Checkpoint,
    },
    /// A parent shard's lease exists and has not reached `SHARD_END`; try again later.
    #[error("parent shard {0} has not reached SHARD_END")]
    ParentNotEnded(String),
    /// Lease keys end up in comma-separated lists, so they must be non-empty and comma-free
    /// (real shard ids are `[a-zA-Z0-9_.-]+`).
    #[error("invalid lease key {0:?}")]
    InvalidLeaseKey(String),
    /// Another process holds the store (embedded stores are single-process).
    #[error("lease store {0} is locked by another process")]
    Locked(PathBuf),
    /// A temporary failure (busy database, throttled or unreachable service): retry.
    #[error("transient lease store error: {0}")]
    Transient(#[source] BoxError),
    /// Any other backend failure (I/O, corruption, bug).
    #[error("lease store error: {0}")]
    Storage(#[source] BoxError),
}

impl Error {
    /// True for errors worth retrying with the same arguments.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient(_))
    }
}

/// The lease and checkpoint store. See the crate docs for the fencing rules.
///
/// All mutations except `create_if_absent` take the counter the caller last saw and return the
/// new one; a stale counter, a different owner or a missing lease gives [`Error::Lost`].
pub trait LeaseStore: Send + Sync {
    /// All leases of a mapping, ordered by lease key.
    fn list(&self, mapping_uuid: &str) -> impl Future<Output = Result<Vec<Lease>, Error>> + Send;

    /// Creates a free lease with counter 0 unless one exists. Returns whether it was created
    /// (an existing lease is left untouched).
    fn create_if_absent(
        &self,
        mapping_uuid: &str,
        lease: NewLease,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Takes (or steals) a lease whose counter is `expected_counter`, and returns it as
    /// written, including the checkpoint to resume from. Refused with
    /// [`Error::ParentNotEnded`] while a parent shard is unfinished.
    fn take(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
    ) -> impl Future<Output = Result<Lease, Error>> + Send;

    /// Heartbeat: bumps the counter of a lease `owner` holds.
    fn renew(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Records progress; refused with [`Error::CheckpointBackwards`] if it would move back.
    /// Resets `owner_switches_since_checkpoint`.
    fn checkpoint(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
        sequence_number: &SequenceNumber,
        sub_sequence_number: u64,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Marks the shard `SHARD_END`, records its children and creates their leases
    /// (`TRIM_HORIZON`, free) if absent — in one step. Call once every record is final.
    fn end_shard(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
        children: &[ChildShard],
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Gives the lease up (owner removed) so another worker can take it at once.
    fn release(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
    ) -> impl Future<Output = Result<u64, Error>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: &str, sub: u64) -> Checkpoint {
        Checkpoint::Sequence {
            sequence_number: SequenceNumber::parse(seq).unwrap(),
            sub_sequence_number: sub,
        }
    }

    #[test]
    fn checkpoint_order() {
        assert!(!Checkpoint::TrimHorizon.is_after(&Checkpoint::Latest));
        assert!(!Checkpoint::Latest.is_after(&Checkpoint::TrimHorizon));
        assert!(!Checkpoint::TrimHorizon.is_after(&at("1", 0)));
        assert!(at("1", 0).is_after(&Checkpoint::TrimHorizon));
        assert!(
            at("10", 0).is_after(&at("9", 5)),
            "numeric, not lexicographic"
        );
        assert!(at("10", 2).is_after(&at("10", 1)));
        assert!(!at("10", 2).is_after(&at("10", 2)));
        assert!(
            Checkpoint::ShardEnd.is_after(&at("99999999999999999999999999999999999999999999", 0))
        );
        assert!(!Checkpoint::ShardEnd.is_after(&Checkpoint::ShardEnd));
    }

    #[test]
    fn kcl_round_trip() {
        for checkpoint in [
            Checkpoint::TrimHorizon,
            Checkpoint::Latest,
            Checkpoint::AtTimestamp(Some(1_764_086_780_123)),
            Checkpoint::ShardEnd,
            at(
                "49601189658422359378836298521827638475320189012309704722",
                3,
            ),
        ] {
            let back = Checkpoint::from_stored(
                checkpoint.kcl_value(),
                checkpoint.sub_sequence_number(),
                checkpoint.starting_timestamp_millis(),
            )
            .unwrap();
            assert_eq!(back, checkpoint);
        }
        assert_eq!(
            Checkpoint::from_kcl("AT_TIMESTAMP", 0).unwrap(),
            Checkpoint::AtTimestamp(None),
            "KCL keeps the time elsewhere"
        );
        assert_eq!(
            Checkpoint::from_stored("LATEST", 0, Some(5)).unwrap(),
            Checkpoint::Latest,
            "only AT_TIMESTAMP keeps a time"
        );
        assert_eq!(Checkpoint::AtTimestamp(Some(7)).to_string(), "AT_TIMESTAMP@7");
        assert!(Checkpoint::from_kcl("NOPE", 0).is_err());
        assert_eq!(at("12", 3).to_string(), "12/3");
        assert_eq!(Checkpoint::ShardEnd.to_string(), "SHARD_END");
    }
}
