//! Where leases and checkpoints live: an embedded SQLite file (one poller process) or a KCL-style
//! DynamoDB lease table shared by several poller processes (`--lease-table`). The two stores behave
//! alike (one conformance suite); they differ in who else may hold a lease, which is what
//! [`Store::is_shared`] tells the coordinator.

use esm_checkpoint::{
    ChildShard, DynamoDbStore, Error, Lease, LeaseRef, LeaseStore, NewLease, SequenceNumber, SqliteStore,
};

/// The lease store of this poller.
pub enum Store {
    Sqlite(SqliteStore),
    DynamoDb(DynamoDbStore),
}

impl Store {
    /// True when other processes may hold leases of the same mappings, so leases must be renewed,
    /// taken only by plan, and can be lost.
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::DynamoDb(_))
    }

    /// Make sure the mapping's lease table exists (DynamoDB); nothing to do for SQLite.
    pub async fn open(&self, mapping_uuid: &str) -> Result<(), Error> {
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::DynamoDb(store) => store.open_table(mapping_uuid).await.map(drop),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            Store::DynamoDb($s) => $e,
        }
    };
}

impl LeaseStore for Store {
    async fn list(&self, mapping_uuid: &str) -> Result<Vec<Lease>, Error> {
        dispatch!(self, s => s.list(mapping_uuid).await)
    }

    async fn create_if_absent(&self, mapping_uuid: &str, lease: NewLease) -> Result<bool, Error> {
        dispatch!(self, s => s.create_if_absent(mapping_uuid, lease).await)
    }

    async fn take(&self, lease: &LeaseRef, owner: &str, expected_counter: u64) -> Result<Lease, Error> {
        dispatch!(self, s => s.take(lease, owner, expected_counter).await)
    }

    async fn renew(&self, lease: &LeaseRef, owner: &str, expected_counter: u64) -> Result<u64, Error> {
        dispatch!(self, s => s.renew(lease, owner, expected_counter).await)
    }

    async fn checkpoint(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
        sequence_number: &SequenceNumber,
        sub_sequence_number: u64,
    ) -> Result<u64, Error> {
        dispatch!(self, s => s.checkpoint(lease, owner, expected_counter, sequence_number, sub_sequence_number).await)
    }

    async fn end_shard(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
        children: &[ChildShard],
    ) -> Result<u64, Error> {
        dispatch!(self, s => s.end_shard(lease, owner, expected_counter, children).await)
    }

    async fn release(&self, lease: &LeaseRef, owner: &str, expected_counter: u64) -> Result<u64, Error> {
        dispatch!(self, s => s.release(lease, owner, expected_counter).await)
    }
}
