//! The shared multi-instance store: KCL-compatible DynamoDB lease tables
//! (<https://docs.aws.amazon.com/streams/latest/dev/kcl-dynamoDB.html>, docs/leases.md).

mod item;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType,
    TableStatus,
};

use crate::{
    BoxError, Checkpoint, ChildShard, Error, Lease, LeaseRef, LeaseStore, NewLease, SequenceNumber,
};
use item::{
    CHECKPOINT, CHECKPOINT_OWNER, CHECKPOINT_SUB, CHILD_SHARD_IDS, Item, LEASE_COUNTER, LEASE_KEY,
    LEASE_OWNER, OWNER_SWITCHES, PENDING_CHECKPOINT, Update, number, string,
};

/// Attempts per request (the first plus retries) before [`Error::Transient`].
const MAX_ATTEMPTS: u32 = 3;

/// Backoff before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Per-attempt timeout used when the client's configuration has none: three attempts stay well
/// inside the default 10 s failover time.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long [`DynamoDbStore::open_table`] waits for a new table to become `ACTIVE`.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// DynamoDB error codes that mean "try again later" (the rest of 4xx is final).
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
];

/// [`LeaseStore`] on KCL-compatible DynamoDB tables, shared by every poller instance.
///
/// # Tables
/// Mapping `m` keeps its leases in table `<prefix>-<m>` (HASH key `leaseKey` = shard id,
/// `PAY_PER_REQUEST`), items with Java KCL's attribute names and types (see `item.rs`), so
/// KCL tooling can read them. The trait passes a mapping UUID with every call and the poller
/// shares one store across mappings, hence a prefix rather than one table name per store. A
/// table is created (if the store may) by the first [`LeaseStore::create_if_absent`] for its
/// mapping, or eagerly by [`DynamoDbStore::open_table`]; reading a mapping whose table does
/// not exist yet lists no leases, and a write to it is [`Error::Lost`] (the lease is missing).
///
/// # Writes
/// Every mutation is one `UpdateItem` conditioned on `leaseCounter = c` (and `leaseOwner = me`
/// except for `take`) that sets `leaseCounter = c + 1` and returns the new item. `checkpoint` and
/// `take` first read the item with a consistent `GetItem`: the counter condition guarantees that
/// nothing changed between that read and the write, so refusing a backward checkpoint or an
/// unfinished parent on the read is safe. `end_shard` creates the child leases
/// (`PutItem` + `attribute_not_exists`) *before* marking the parent `SHARD_END`; if the final
/// write is then refused, the children exist anyway, exactly as a shard sync would have created
/// them, which is harmless.
///
/// # Retries and the spurious-failure check
/// The SDK's own retries are turned off: a retried conditional write whose first attempt was
/// applied would fail its condition, and the store could not tell that from a lost lease. The
/// store retries instead (3 attempts, exponential backoff) and remembers, per lease, a write
/// whose outcome is unknown (timeout, 5xx, throttling, connection failure). When a condition
/// then fails — in the same call or in the caller's next call with the same counter — it reads
/// the item back: if it shows exactly the effect of this write (owner, `c + 1`, and the
/// checkpoint for `checkpoint`/`end_shard`), the write was ours and succeeds.
/// Without such an unknown outcome a failed condition is always [`Error::Lost`], so a plain
/// stale counter is never mistaken for success. Errors still transient after the last attempt
/// are [`Error::Transient`]; the caller retries with the same counter.
///
/// Each request attempt times out after 2 s unless the client's configuration sets its own
/// attempt timeout, so a hung connection cannot hold a renewal for long.
#[derive(Debug)]
pub struct DynamoDbStore {
    /// The caller's client with SDK retries disabled (see above).
    client: Client,
    table_prefix: String,
    create_if_missing: bool,
    /// Tables known to exist and be `ACTIVE`.
    ready: Mutex<HashSet<String>>,
    /// Writes whose outcome is unknown: (table, lease key) → (owner, expected counter).
    unsure: Mutex<HashMap<(String, String), (String, u64)>>,
}

impl DynamoDbStore {
    /// A store keeping mapping `m`'s leases in table `<table_prefix>-<m>`, created on demand
    /// (`PAY_PER_REQUEST`) when `create_if_missing`. No request is made here.
    pub fn new(client: &Client, table_prefix: impl Into<String>, create_if_missing: bool) -> Self {
        let config = client.config();
        let timeouts = match config.timeout_config() {
            Some(timeouts) if timeouts.operation_attempt_timeout().is_some() => timeouts.clone(),
            Some(timeouts) => (timeouts.to_builder())
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
            None => (TimeoutConfig::builder())
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        };
        let config = config
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts)
            .build();
        DynamoDbStore {
            client: Client::from_conf(config),
            table_prefix: table_prefix.into(),
            create_if_missing,
            ready: Mutex::new(HashSet::new()),
            unsure: Mutex::new(HashMap::new()),
        }
    }

    /// The table holding `mapping_uuid`'s leases.
    pub fn table_name(&self, mapping_uuid: &str) -> String {
        format!("{}-{mapping_uuid}", self.table_prefix)
    }

    /// Makes sure `mapping_uuid`'s table exists (creating it if the store may) with the KCL key
    /// schema and is `ACTIVE`; returns its name. Optional: `create_if_absent` does it too, but
    /// calling it when a mapping starts surfaces a missing table or permission at once.
    pub async fn open_table(&self, mapping_uuid: &str) -> Result<String, Error> {
        let table = self.table_name(mapping_uuid);
        if lock(&self.ready).contains(&table) {
            return Ok(table);
        }
        let described = retrying(|| self.client.describe_table().table_name(&table).send()).await;
        match described.result {
            Ok(output) => {
                let description = output.table();
                check_key_schema(
                    &table,
                    description.map_or(&[], |d| d.key_schema()),
                    description.map_or(&[], |d| d.attribute_definitions()),
                )?;
                if description.and_then(|d| d.table_status()) != Some(&TableStatus::Active) {
                    self.wait_active(&table).await?;
                }
            }
            Err(Failure::NotFound) if self.create_if_missing => {
                self.create_table(&table).await?;
                self.wait_active(&table).await?;
            }
            Err(Failure::NotFound) => {
                return Err(Error::Storage(
                    format!("lease table {table} does not exist").into(),
                ));
            }
            Err(failure) => return Err(failure.into_error()),
        }
        lock(&self.ready).insert(table.clone());
        Ok(table)
    }

    async fn create_table(&self, table: &str) -> Result<(), Error> {
        let key = KeySchemaElement::builder()
            .attribute_name(LEASE_KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| Error::Storage(Box::new(e)))?;
        let attribute = AttributeDefinition::builder()
            .attribute_name(LEASE_KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| Error::Storage(Box::new(e)))?;
        let created = retrying(|| {
            self.client
                .create_table()
                .table_name(table)
                .key_schema(key.clone())
                .attribute_definitions(attribute.clone())
                .billing_mode(BillingMode::PayPerRequest)
                .send()
        })
        .await;
        match created.result {
            // `ResourceInUse`: another instance is creating it; wait for it like for ours.
            Ok(_) | Err(Failure::InUse) => Ok(()),
            Err(failure) => Err(failure.into_error()),
        }
    }

    async fn wait_active(&self, table: &str) -> Result<(), Error> {
        self.client
            .wait_until_table_exists()
            .table_name(table)
            .wait(TABLE_ACTIVE_TIMEOUT)
            .await
            .map(drop)
            .map_err(|e| Error::Transient(Box::new(e)))
    }

    /// Consistent read of one lease; `None` if it (or its table) does not exist.
    async fn get(&self, table: &str, lease_key: &str) -> Result<Option<Lease>, Error> {
        let read = retrying(|| {
            self.client
                .get_item()
                .table_name(table)
                .key(LEASE_KEY, string(lease_key))
                .consistent_read(true)
                .send()
        })
        .await;
        match read.result {
            Ok(output) => match output.item {
                Some(found) => item::decode(table, &found),
                None => Ok(None),
            },
            Err(Failure::NotFound) => Ok(None),
            Err(failure) => Err(failure.into_error()),
        }
    }

    /// `PutItem` unless the key exists; returns whether it was created.
    async fn put_if_absent(&self, table: &str, new: Item) -> Result<bool, Error> {
        let put = retrying(|| {
            self.client
                .put_item()
                .table_name(table)
                .set_item(Some(new.clone()))
                .condition_expression("attribute_not_exists(#key)")
                .expression_attribute_names("#key", LEASE_KEY)
                .send()
        })
        .await;
        match put.result {
            Ok(_) => Ok(true),
            // Also the answer when an earlier attempt of this very put was applied.
            Err(Failure::ConditionFailed) => Ok(false),
            Err(Failure::NotFound) => {
                // The table was deleted under us: look it up again next time.
                lock(&self.ready).remove(table);
                Err(Error::Transient(
                    format!("lease table {table} disappeared").into(),
                ))
            }
            Err(failure) => Err(failure.into_error()),
        }
    }

    /// Applies `update` (which must carry the counter condition) to `lease` and returns the
    /// lease as written. A failed condition is [`Error::Lost`] unless it was our own earlier
    /// attempt (see the type docs).
    async fn fenced_update(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected: u64,
        write: Write<'_>,
        update: Update,
    ) -> Result<Lease, Error> {
        let table = self.table_name(&lease.mapping_uuid);
        let update = update.set(LEASE_COUNTER, number(expected + 1));
        let request = update.apply(
            self.client
                .update_item()
                .table_name(&table)
                .key(LEASE_KEY, string(&lease.lease_key))
                .return_values(ReturnValue::AllNew),
        );
        let sent = retrying(|| request.clone().send()).await;
        if sent.unsure {
            self.remember_unsure(&table, &lease.lease_key, owner, expected);
        }
        match sent.result {
            Ok(output) => {
                self.forget_unsure(&table, &lease.lease_key);
                let written = output.attributes.unwrap_or_default();
                item::decode(&table, &written)?.ok_or_else(|| {
                    Error::Storage(format!("{table}: {} is not a lease", lease.lease_key).into())
                })
            }
            Err(Failure::ConditionFailed | Failure::NotFound) => {
                if !self.is_unsure(&table, &lease.lease_key, owner, expected) {
                    return Err(Error::Lost);
                }
                // On a read error the unknown outcome stays remembered for the next call.
                let current = self.get(&table, &lease.lease_key).await?;
                self.settle(&table, &lease.lease_key, owner, expected, write, current)
            }
            Err(failure) => Err(failure.into_error()),
        }
    }

    /// The lease (`current`, as just read) did not have counter `expected` (and owner):
    /// [`Error::Lost`], unless an earlier write of ours at `expected` had an unknown outcome
    /// and `current` shows `write` applied.
    fn settle(
        &self,
        table: &str,
        lease_key: &str,
        owner: &str,
        expected: u64,
        write: Write<'_>,
        current: Option<Lease>,
    ) -> Result<Lease, Error> {
        if !self.is_unsure(table, lease_key, owner, expected) {
            return Err(Error::Lost);
        }
        self.forget_unsure(table, lease_key);
        match current {
            Some(lease) if write.applied(&lease, owner, expected) => Ok(lease),
            _ => Err(Error::Lost),
        }
    }

    fn is_unsure(&self, table: &str, lease_key: &str, owner: &str, expected: u64) -> bool {
        lock(&self.unsure).get(&(table.to_owned(), lease_key.to_owned()))
            == Some(&(owner.to_owned(), expected))
    }

    fn remember_unsure(&self, table: &str, lease_key: &str, owner: &str, expected: u64) {
        lock(&self.unsure).insert(
            (table.to_owned(), lease_key.to_owned()),
            (owner.to_owned(), expected),
        );
    }

    fn forget_unsure(&self, table: &str, lease_key: &str) {
        lock(&self.unsure).remove(&(table.to_owned(), lease_key.to_owned()));
    }

    /// Reads a lease for a read-modify-write and checks the fence: `Ok(lease)` if it has
    /// `expected` (and `owner`, when given), else what [`Self::settle`] says, as `Err(result)`.
    async fn read_fenced(
        &self,
        lease: &LeaseRef,
        owner: &str,
        check_owner: bool,
        expected: u64,
        write: Write<'_>,
    ) -> Result<Lease, Result<Lease, Error>> {
        let table = self.table_name(&lease.mapping_uuid);
        let current = self.get(&table, &lease.lease_key).await.map_err(Err)?;
        match current {
            Some(current)
                if current.counter == expected
                    && (!check_owner || current.owner.as_deref() == Some(owner)) =>
            {
                Ok(current)
            }
            other => Err(self.settle(&table, &lease.lease_key, owner, expected, write, other)),
        }
    }
}

impl LeaseStore for DynamoDbStore {
    async fn list(&self, mapping_uuid: &str) -> Result<Vec<Lease>, Error> {
        let table = self.table_name(mapping_uuid);
        let mut leases = Vec::new();
        let mut start_key: Option<Item> = None;
        loop {
            let page = retrying(|| {
                self.client
                    .scan()
                    .table_name(&table)
                    .consistent_read(true)
                    .set_exclusive_start_key(start_key.clone())
                    .send()
            })
            .await;
            let page = match page.result {
                Ok(page) => page,
                Err(Failure::NotFound) => return Ok(Vec::new()),
                Err(failure) => return Err(failure.into_error()),
            };
            for found in page.items() {
                leases.extend(item::decode(&table, found)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => break,
            }
        }
        leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
        Ok(leases)
    }

    async fn create_if_absent(&self, mapping_uuid: &str, lease: NewLease) -> Result<bool, Error> {
        validate_key(&lease.lease_key)?;
        lease
            .parent_shard_ids
            .iter()
            .try_for_each(|id| validate_key(id))?;
        let table = self.open_table(mapping_uuid).await?;
        let new = item::new_item(&lease.lease_key, &lease.checkpoint, &lease.parent_shard_ids);
        self.put_if_absent(&table, new).await
    }

    async fn take(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
    ) -> Result<Lease, Error> {
        let current = match self
            .read_fenced(lease, owner, false, expected_counter, Write::Take)
            .await
        {
            Ok(current) => current,
            Err(result) => return result,
        };
        let table = self.table_name(&lease.mapping_uuid);
        for parent in &current.parent_shard_ids {
            if self
                .get(&table, parent)
                .await?
                .is_some_and(|p| p.checkpoint != Checkpoint::ShardEnd)
            {
                return Err(Error::ParentNotEnded(parent.clone()));
            }
        }
        // Safe to compute from the read: the counter condition fails if the owner changed since.
        let switched = current.owner.as_deref() != Some(owner);
        let switches = current.owner_switches_since_checkpoint + u64::from(switched);
        let update = Update::default()
            .set(LEASE_OWNER, string(owner))
            .set(OWNER_SWITCHES, number(switches))
            .remove(CHECKPOINT_OWNER)
            .require(LEASE_COUNTER, number(expected_counter));
        self.fenced_update(lease, owner, expected_counter, Write::Take, update)
            .await
    }

    async fn renew(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
    ) -> Result<u64, Error> {
        // A KCL 3.x leader's graceful hand-off sets `checkpointOwner`; we do not implement the
        // hand-off, so the renewal fails and the lease is given up.
        let update = owner_fence(owner, expected_counter).require_absent(CHECKPOINT_OWNER);
        self.fenced_update(lease, owner, expected_counter, Write::Renew, update)
            .await
            .map(|lease| lease.counter)
    }

    async fn checkpoint(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
        sequence_number: &SequenceNumber,
        sub_sequence_number: u64,
    ) -> Result<u64, Error> {
        let requested = Checkpoint::Sequence {
            sequence_number: sequence_number.clone(),
            sub_sequence_number,
        };
        let write = Write::Checkpoint(&requested);
        let current = match self
            .read_fenced(lease, owner, true, expected_counter, write)
            .await
        {
            Ok(current) => current,
            Err(result) => return result.map(|lease| lease.counter),
        };
        if current.checkpoint.is_after(&requested) {
            return Err(Error::CheckpointBackwards {
                current: current.checkpoint,
                requested,
            });
        }
        let mut update = owner_fence(owner, expected_counter)
            .set(CHECKPOINT, string(requested.kcl_value()))
            .set(CHECKPOINT_SUB, number(sub_sequence_number))
            .set(OWNER_SWITCHES, number(0));
        for pending in PENDING_CHECKPOINT {
            update = update.remove(pending);
        }
        self.fenced_update(lease, owner, expected_counter, write, update)
            .await
            .map(|lease| lease.counter)
    }

    async fn end_shard(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
        children: &[ChildShard],
    ) -> Result<u64, Error> {
        for child in children {
            validate_key(&child.lease_key)?;
            child
                .parent_shard_ids
                .iter()
                .try_for_each(|id| validate_key(id))?;
        }
        if !children.is_empty() {
            let table = self.open_table(&lease.mapping_uuid).await?;
            for child in children {
                let new = item::new_item(
                    &child.lease_key,
                    &Checkpoint::TrimHorizon,
                    &child.parent_shard_ids,
                );
                self.put_if_absent(&table, new).await?;
            }
        }
        let child_ids: Vec<String> = children.iter().map(|c| c.lease_key.clone()).collect();
        let mut update = owner_fence(owner, expected_counter)
            .set(CHECKPOINT, string(Checkpoint::ShardEnd.kcl_value()))
            .set(CHECKPOINT_SUB, number(0));
        if let Some(ids) = item::string_set(&child_ids) {
            update = update.set(CHILD_SHARD_IDS, ids);
        }
        for pending in PENDING_CHECKPOINT {
            update = update.remove(pending);
        }
        self.fenced_update(lease, owner, expected_counter, Write::EndShard, update)
            .await
            .map(|lease| lease.counter)
    }

    async fn release(
        &self,
        lease: &LeaseRef,
        owner: &str,
        expected_counter: u64,
    ) -> Result<u64, Error> {
        let update = owner_fence(owner, expected_counter).remove(LEASE_OWNER);
        self.fenced_update(lease, owner, expected_counter, Write::Release, update)
            .await
            .map(|lease| lease.counter)
    }
}

/// The condition every write by the holder carries: `leaseCounter = c AND leaseOwner = me`.
fn owner_fence(owner: &str, expected: u64) -> Update {
    Update::default()
        .require(LEASE_COUNTER, number(expected))
        .require(LEASE_OWNER, string(owner))
}

/// Which write was attempted, to recognise its effect when the outcome was unknown.
#[derive(Debug, Clone, Copy)]
enum Write<'a> {
    Take,
    Renew,
    Checkpoint(&'a Checkpoint),
    EndShard,
    Release,
}

impl Write<'_> {
    /// Does `lease` show this write, made by `owner` at counter `expected`, as applied? Only
    /// `owner` writes `owner` into a lease, so owner and `expected + 1` identify our own write;
    /// the checkpoint tells a checkpoint or shard end apart from another write at the same
    /// counter.
    fn applied(self, lease: &Lease, owner: &str, expected: u64) -> bool {
        let ours = lease.owner.as_deref() == Some(owner);
        lease.counter == expected + 1
            && match self {
                Write::Take | Write::Renew => ours,
                Write::Checkpoint(checkpoint) => ours && lease.checkpoint == *checkpoint,
                Write::EndShard => ours && lease.checkpoint == Checkpoint::ShardEnd,
                Write::Release => lease.owner.is_none(),
            }
    }
}

/// Why a request failed, as far as the lease protocol cares.
#[derive(Debug)]
enum Failure {
    /// `ConditionalCheckFailedException`.
    ConditionFailed,
    /// `ResourceNotFoundException`: the table does not exist (or is still being created).
    NotFound,
    /// `ResourceInUseException` (CreateTable of a table that exists).
    InUse,
    /// Throttling, 5xx, timeout, connection failure: the request may or may not have been applied.
    Transient(BoxError),
    /// Anything else (validation, permissions, ...).
    Other(BoxError),
}

impl Failure {
    fn classify<E>(error: SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &error {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                match service.err().code() {
                    Some("ConditionalCheckFailedException") => Failure::ConditionFailed,
                    Some("ResourceNotFoundException") => Failure::NotFound,
                    Some("ResourceInUseException") => Failure::InUse,
                    Some(code) if TRANSIENT_CODES.contains(&code) => {
                        Failure::Transient(Box::new(error))
                    }
                    _ if status >= 500 => Failure::Transient(Box::new(error)),
                    _ => Failure::Other(Box::new(error)),
                }
            }
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
                Failure::Transient(Box::new(error))
            }
            SdkError::DispatchFailure(dispatch) if dispatch.is_io() || dispatch.is_timeout() => {
                Failure::Transient(Box::new(error))
            }
            _ => Failure::Other(Box::new(error)),
        }
    }

    /// The store error where no special meaning applies: a failed condition or a missing table
    /// means the lease is not what the caller expected.
    fn into_error(self) -> Error {
        match self {
            Failure::ConditionFailed | Failure::NotFound => Error::Lost,
            Failure::Transient(e) => Error::Transient(e),
            Failure::InUse => Error::Storage("resource in use".into()),
            Failure::Other(e) => Error::Storage(e),
        }
    }
}

/// A request's final outcome, and whether an earlier attempt's outcome was unknown.
struct Sent<T> {
    result: Result<T, Failure>,
    unsure: bool,
}

/// Sends a request up to [`MAX_ATTEMPTS`] times, retrying transient failures with backoff.
async fn retrying<T, E, F, Fut>(mut send: F) -> Sent<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    let mut unsure = false;
    for attempt in 1..=MAX_ATTEMPTS {
        match send().await.map_err(Failure::classify) {
            Err(Failure::Transient(error)) => {
                unsure = true;
                if attempt == MAX_ATTEMPTS {
                    return Sent {
                        result: Err(Failure::Transient(error)),
                        unsure,
                    };
                }
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            result => return Sent { result, unsure },
        }
    }
    unreachable!("the last attempt returns")
}

/// The table must have exactly KCL's key: HASH `leaseKey` of type S. Any other layout (another
/// key name, a range key, a numeric key) makes every lease read or write fail, so it is refused
/// when the table is opened, with what was found and what is expected.
fn check_key_schema(
    table: &str,
    key_schema: &[KeySchemaElement],
    attributes: &[AttributeDefinition],
) -> Result<(), Error> {
    let type_of = |name: &str| {
        (attributes.iter())
            .find(|a| a.attribute_name() == name)
            .map(|a| a.attribute_type().as_str())
    };
    if let [key] = key_schema
        && key.attribute_name() == LEASE_KEY
        && *key.key_type() == KeyType::Hash
        && type_of(LEASE_KEY).is_none_or(|t| t == ScalarAttributeType::S.as_str())
    {
        return Ok(());
    }
    let found: Vec<String> = (key_schema.iter())
        .map(|k| {
            let kind = type_of(k.attribute_name()).unwrap_or("?");
            format!("{} {} ({kind})", k.key_type().as_str(), k.attribute_name())
        })
        .collect();
    Err(Error::Storage(
        format!(
            "table {table} is not a lease table: its key schema is [{}], a lease table has exactly \
             HASH {LEASE_KEY} (S); use another table prefix or remove the table",
            found.join(", ")
        )
        .into(),
    ))
}

/// Same rule as the SQLite store, so both stores accept the same keys.
fn validate_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.contains(',') {
        return Err(Error::InvalidLeaseKey(key.to_owned()));
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps are updated in single statements; a panic cannot leave them half-done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(owner: Option<&str>, counter: u64, checkpoint: Checkpoint) -> Lease {
        Lease {
            lease_key: "shardId-000000000000".into(),
            owner: owner.map(str::to_owned),
            counter,
            checkpoint,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids: vec![],
            child_shard_ids: vec![],
        }
    }

    #[test]
    fn own_write_is_recognised_by_its_effect() {
        let at_10 = Checkpoint::Sequence {
            sequence_number: SequenceNumber::parse("10").unwrap(),
            sub_sequence_number: 0,
        };
        let renewed = lease(Some("me"), 6, Checkpoint::TrimHorizon);
        assert!(Write::Renew.applied(&renewed, "me", 5));
        assert!(Write::Take.applied(&renewed, "me", 5));
        assert!(
            !Write::Renew.applied(&renewed, "me", 4),
            "counter moved twice"
        );
        assert!(
            !Write::Renew.applied(&renewed, "other", 5),
            "someone else's write"
        );
        assert!(
            !Write::Checkpoint(&at_10).applied(&renewed, "me", 5),
            "a different write at the same counter"
        );
        assert!(Write::Checkpoint(&at_10).applied(&lease(Some("me"), 6, at_10.clone()), "me", 5));
        assert!(!Write::EndShard.applied(&lease(Some("me"), 6, at_10), "me", 5));
        assert!(Write::EndShard.applied(&lease(Some("me"), 6, Checkpoint::ShardEnd), "me", 5));
        assert!(Write::Release.applied(&lease(None, 6, Checkpoint::Latest), "me", 5));
        assert!(!Write::Release.applied(&renewed, "me", 5));
    }

    #[test]
    fn key_schema_must_be_kcl() {
        let key = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .unwrap()
        };
        let attribute = |name: &str, kind: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .unwrap()
        };
        let lease_key = [key("leaseKey", KeyType::Hash)];
        let string_key = [attribute("leaseKey", ScalarAttributeType::S)];
        assert!(check_key_schema("t", &lease_key, &string_key).is_ok());
        let refused = |keys: &[KeySchemaElement], attributes: &[AttributeDefinition]| {
            match check_key_schema("leases-m", keys, attributes) {
                Err(Error::Storage(e)) => e.to_string(),
                other => panic!("{keys:?} {attributes:?}: {other:?}"),
            }
        };
        let message = refused(
            &[key("id", KeyType::Hash)],
            &[attribute("id", ScalarAttributeType::S)],
        );
        assert!(
            message.contains("table leases-m")
                && message.contains("[HASH id (S)]")
                && message.contains("HASH leaseKey (S)"),
            "{message}"
        );
        let numeric = refused(&lease_key, &[attribute("leaseKey", ScalarAttributeType::N)]);
        assert!(numeric.contains("[HASH leaseKey (N)]"), "{numeric}");
        let with_range = [key("leaseKey", KeyType::Hash), key("sk", KeyType::Range)];
        assert!(refused(&with_range, &string_key).contains("RANGE sk"));
        assert!(refused(&[], &[]).contains("[]"));
    }
}
