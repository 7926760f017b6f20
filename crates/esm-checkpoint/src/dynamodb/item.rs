//! The KCL lease item (<https://docs.aws.amazon.com/streams/latest/dev/kcl-dynamoDB.html>):
//! attribute names and types, encoding, decoding, and the conditional `UpdateItem` expressions
//! built from them.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::{Checkpoint, Error, Lease};

/// A DynamoDB item.
pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) const LEASE_KEY: &str = "leaseKey";
pub(super) const LEASE_OWNER: &str = "leaseOwner";
pub(super) const LEASE_COUNTER: &str = "leaseCounter";
pub(super) const CHECKPOINT: &str = "checkpoint";
pub(super) const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
pub(super) const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
/// Singular name, string-set value (KCL's naming).
pub(super) const PARENT_SHARD_IDS: &str = "parentShardId";
pub(super) const CHILD_SHARD_IDS: &str = "childShardIds";
/// Not KCL's: the pinned time (epoch ms, a number) of an `AT_TIMESTAMP` checkpoint. KCL ignores
/// attributes it does not know and keeps its own time in its configuration.
pub(super) const STARTING_TIMESTAMP: &str = "startingTimestamp";
/// KCL 3.x graceful hand-off marker: the previous owner while a transfer is in progress.
pub(super) const CHECKPOINT_OWNER: &str = "checkpointOwner";
/// KCL 3.5 single-table format: `LEASE` or another entity kind; absent means a lease.
pub(super) const ENTITY_TYPE: &str = "entityType";
pub(super) const LEASE_ENTITY: &str = "LEASE";
/// KCL's two-phase checkpoint; every real checkpoint clears it.
pub(super) const PENDING_CHECKPOINT: [&str; 3] = [
    "pendingCheckpoint",
    "pendingCheckpointSubSequenceNumber",
    "pendingCheckpointState",
];

/// A DynamoDB number.
pub(super) fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A DynamoDB string.
pub(super) fn string(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// A string set, or `None` when empty (DynamoDB has no empty sets, so the attribute is omitted).
pub(super) fn string_set(ids: &[String]) -> Option<AttributeValue> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    (!ids.is_empty()).then_some(AttributeValue::Ss(ids))
}

/// A new, free lease at counter 0, as KCL's shard syncer writes it.
pub(super) fn new_item(lease_key: &str, checkpoint: &Checkpoint, parents: &[String]) -> Item {
    let mut item = Item::from([
        (LEASE_KEY.to_owned(), string(lease_key)),
        (LEASE_COUNTER.to_owned(), number(0)),
        (CHECKPOINT.to_owned(), string(checkpoint.kcl_value())),
        (
            CHECKPOINT_SUB.to_owned(),
            number(checkpoint.sub_sequence_number()),
        ),
        (OWNER_SWITCHES.to_owned(), number(0)),
        (ENTITY_TYPE.to_owned(), string(LEASE_ENTITY)),
    ]);
    if let Some(parents) = string_set(parents) {
        item.insert(PARENT_SHARD_IDS.to_owned(), parents);
    }
    if let Some(millis) = checkpoint.starting_timestamp_millis() {
        item.insert(STARTING_TIMESTAMP.to_owned(), AttributeValue::N(millis.to_string()));
    }
    item
}

/// Decodes a lease item of `table`; `None` for other KCL 3.5 entity kinds (worker metrics, leader
/// lock), which share the table and must be skipped. Attributes KCL writes but this crate does not
/// model (hash keys, throughput, pending checkpoint) are ignored; missing optional numbers read as
/// 0. `leaseKey`, `leaseCounter` and `checkpoint` are required: without a counter no conditional
/// write can ever match, and without a checkpoint there is no safe place to start, so such a row
/// is [`Error::Storage`] naming the table, the row and the attribute rather than a lease that can
/// never be taken.
pub(super) fn decode(table: &str, item: &Item) -> Result<Option<Lease>, Error> {
    if let Some(entity) = item.get(ENTITY_TYPE)
        && entity.as_s().map(String::as_str) != Ok(LEASE_ENTITY)
    {
        return Ok(None);
    }
    let corrupt = |lease_key: &str, what: String| {
        Error::Storage(format!("lease table {table}: corrupt lease {lease_key:?}: {what}").into())
    };
    let lease_key = match item.get(LEASE_KEY) {
        Some(AttributeValue::S(key)) => key.clone(),
        other => return Err(corrupt("?", found(LEASE_KEY, other, "a string (S)"))),
    };
    let corrupt = |what: String| corrupt(&lease_key, what);
    let counter = match item.get(LEASE_COUNTER) {
        None => return Err(corrupt(found(LEASE_COUNTER, None, "a number (N)"))),
        Some(_) => optional_number(item, LEASE_COUNTER).map_err(&corrupt)?,
    };
    let checkpoint_text = match item.get(CHECKPOINT) {
        Some(AttributeValue::S(text)) => text.clone(),
        other => return Err(corrupt(found(CHECKPOINT, other, "a string (S)"))),
    };
    let sub = optional_number(item, CHECKPOINT_SUB).map_err(&corrupt)?;
    let starting_timestamp = match item.get(STARTING_TIMESTAMP) {
        None => None,
        Some(AttributeValue::N(text)) => Some(
            text.parse::<i64>()
                .map_err(|_| corrupt(format!("{STARTING_TIMESTAMP} is {text:?}")))?,
        ),
        Some(other) => return Err(corrupt(format!("{STARTING_TIMESTAMP} is {other:?}"))),
    };
    let checkpoint = Checkpoint::from_stored(&checkpoint_text, sub, starting_timestamp)
        .map_err(|e| corrupt(format!("{CHECKPOINT} {checkpoint_text:?}: {e}")))?;
    Ok(Some(Lease {
        owner: match item.get(LEASE_OWNER) {
            None | Some(AttributeValue::Null(_)) => None,
            Some(AttributeValue::S(owner)) => Some(owner.clone()),
            other => return Err(corrupt(found(LEASE_OWNER, other, "a string (S)"))),
        },
        counter,
        checkpoint,
        owner_switches_since_checkpoint: optional_number(item, OWNER_SWITCHES).map_err(&corrupt)?,
        parent_shard_ids: optional_set(item, PARENT_SHARD_IDS).map_err(&corrupt)?,
        child_shard_ids: optional_set(item, CHILD_SHARD_IDS).map_err(&corrupt)?,
        lease_key,
    }))
}

/// "`name` is missing" or "`name` is <value>", and what it should be.
fn found(name: &str, value: Option<&AttributeValue>, expected: &str) -> String {
    match value {
        None => format!("{name} is missing (expected {expected})"),
        Some(value) => format!("{name} is {value:?} (expected {expected})"),
    }
}

fn optional_number(item: &Item, name: &str) -> Result<u64, String> {
    match item.get(name) {
        None => Ok(0),
        Some(AttributeValue::N(text)) => text
            .parse()
            .map_err(|_| format!("{name} is {text:?} (expected a whole number)")),
        other => Err(found(name, other, "a number (N)")),
    }
}

fn optional_set(item: &Item, name: &str) -> Result<Vec<String>, String> {
    match item.get(name) {
        None => Ok(Vec::new()),
        Some(AttributeValue::Ss(ids)) => {
            let mut ids = ids.clone();
            ids.sort();
            Ok(ids)
        }
        other => Err(found(name, other, "a string set (SS)")),
    }
}

/// A conditional `UpdateItem`: `SET` and `REMOVE` clauses and an `AND` of conditions. Every
/// attribute name goes through a `#name` placeholder, so reserved words are never an issue.
#[derive(Debug, Default, Clone)]
pub(super) struct Update {
    set: Vec<(&'static str, AttributeValue)>,
    remove: Vec<&'static str>,
    equals: Vec<(&'static str, AttributeValue)>,
    absent: Vec<&'static str>,
}

impl Update {
    /// `SET name = value`.
    pub(super) fn set(mut self, name: &'static str, value: AttributeValue) -> Self {
        self.set.push((name, value));
        self
    }

    /// `REMOVE name`.
    pub(super) fn remove(mut self, name: &'static str) -> Self {
        self.remove.push(name);
        self
    }

    /// Condition `name = value`.
    pub(super) fn require(mut self, name: &'static str, value: AttributeValue) -> Self {
        self.equals.push((name, value));
        self
    }

    /// Condition `attribute_not_exists(name)`.
    pub(super) fn require_absent(mut self, name: &'static str) -> Self {
        self.absent.push(name);
        self
    }

    /// The update expression.
    fn update_expression(&self) -> String {
        let mut expression = String::new();
        if !self.set.is_empty() {
            let assignments: Vec<String> = (self.set.iter().enumerate())
                .map(|(i, (name, _))| format!("#{name} = :s{i}"))
                .collect();
            expression = format!("SET {}", assignments.join(", "));
        }
        if !self.remove.is_empty() {
            let names: Vec<String> = self.remove.iter().map(|name| format!("#{name}")).collect();
            expression = format!("{expression} REMOVE {}", names.join(", "));
        }
        expression.trim_start().to_owned()
    }

    /// The condition expression.
    fn condition_expression(&self) -> String {
        let equals =
            (self.equals.iter().enumerate()).map(|(i, (name, _))| format!("#{name} = :c{i}"));
        let absent = (self.absent.iter()).map(|name| format!("attribute_not_exists(#{name})"));
        equals.chain(absent).collect::<Vec<_>>().join(" AND ")
    }

    /// Adds the expressions, names and values to `request`.
    pub(super) fn apply(self, mut request: UpdateItemFluentBuilder) -> UpdateItemFluentBuilder {
        request = request
            .update_expression(self.update_expression())
            .condition_expression(self.condition_expression());
        let names = (self.set.iter().map(|(name, _)| *name))
            .chain(self.remove.iter().copied())
            .chain(self.equals.iter().map(|(name, _)| *name))
            .chain(self.absent.iter().copied());
        for name in names {
            request = request.expression_attribute_names(format!("#{name}"), name);
        }
        let set_values =
            (self.set.into_iter().enumerate()).map(|(i, (_, v))| (format!(":s{i}"), v));
        let condition_values =
            (self.equals.into_iter().enumerate()).map(|(i, (_, v))| (format!(":c{i}"), v));
        for (placeholder, value) in set_values.chain(condition_values) {
            request = request.expression_attribute_values(placeholder, value);
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SequenceNumber;

    #[test]
    fn new_item_has_kcl_names_and_types() {
        let item = new_item(
            "shardId-000000000002",
            &Checkpoint::TrimHorizon,
            &["shardId-000000000001".into(), "shardId-000000000000".into()],
        );
        assert_eq!(item[LEASE_KEY], string("shardId-000000000002"));
        assert_eq!(item[LEASE_COUNTER], AttributeValue::N("0".into()));
        assert_eq!(item[CHECKPOINT], string("TRIM_HORIZON"));
        assert_eq!(item[CHECKPOINT_SUB], AttributeValue::N("0".into()));
        assert_eq!(item[OWNER_SWITCHES], AttributeValue::N("0".into()));
        assert_eq!(
            item[PARENT_SHARD_IDS],
            AttributeValue::Ss(vec![
                "shardId-000000000000".into(),
                "shardId-000000000001".into()
            ])
        );
        assert_eq!(item[ENTITY_TYPE], string("LEASE"));
        assert!(!item.contains_key(LEASE_OWNER));
        assert!(
            !new_item("s", &Checkpoint::Latest, &[]).contains_key(PARENT_SHARD_IDS),
            "empty sets are omitted"
        );
    }

    #[test]
    fn decodes_what_kcl_writes() {
        // A Java KCL 2.x item: no entityType, extra attributes, the pendingCheckpointState quirk.
        let item = Item::from([
            (LEASE_KEY.into(), string("shardId-000000000007")),
            (LEASE_OWNER.into(), string("host:1:abc")),
            (LEASE_COUNTER.into(), AttributeValue::N("42".into())),
            (
                CHECKPOINT.into(),
                string("49601189658422359378836298521827638475320189012309704722"),
            ),
            (CHECKPOINT_SUB.into(), AttributeValue::N("3".into())),
            (OWNER_SWITCHES.into(), AttributeValue::N("2".into())),
            (
                PARENT_SHARD_IDS.into(),
                AttributeValue::Ss(vec!["shardId-000000000001".into()]),
            ),
            ("startingHashKey".into(), string("0")),
            (
                "pendingCheckpointState".into(),
                AttributeValue::N("3".into()),
            ),
        ]);
        let lease = decode("t", &item).unwrap().expect("a lease");
        assert_eq!(
            lease,
            Lease {
                lease_key: "shardId-000000000007".into(),
                owner: Some("host:1:abc".into()),
                counter: 42,
                checkpoint: Checkpoint::Sequence {
                    sequence_number: SequenceNumber::parse(
                        "49601189658422359378836298521827638475320189012309704722"
                    )
                    .unwrap(),
                    sub_sequence_number: 3,
                },
                owner_switches_since_checkpoint: 2,
                parent_shard_ids: vec!["shardId-000000000001".into()],
                child_shard_ids: vec![],
            }
        );
        let pinned = Checkpoint::AtTimestamp(Some(1_764_086_780_123));
        let item = new_item("k", &pinned, &[]);
        assert_eq!(
            item[STARTING_TIMESTAMP],
            AttributeValue::N("1764086780123".into())
        );
        assert_eq!(item[CHECKPOINT], string("AT_TIMESTAMP"), "KCL's sentinel");
        let round_trip = decode("t", &item).unwrap().unwrap();
        assert_eq!((round_trip.counter, round_trip.checkpoint), (0, pinned));
    }

    #[test]
    fn skips_other_entities_and_reports_corruption() {
        let metrics = Item::from([
            (LEASE_KEY.into(), string("worker-1")),
            (ENTITY_TYPE.into(), string("WORKER_METRIC_STATS")),
        ]);
        assert_eq!(decode("t", &metrics).unwrap(), None);
        let refused = |change: fn(&mut Item), problem: &str| {
            let mut item = new_item("shardId-1", &Checkpoint::Latest, &[]);
            change(&mut item);
            let message = match decode("leases-m", &item) {
                Err(Error::Storage(e)) => e.to_string(),
                other => panic!("{item:?} decoded as {other:?}"),
            };
            assert!(
                message.contains("lease table leases-m")
                    && message.contains("\"shardId-1\"")
                    && message.contains(problem),
                "{message:?} should name the table, the row and {problem:?}"
            );
        };
        refused(|i| drop(i.insert(LEASE_COUNTER.into(), string("1"))), "leaseCounter is S(\"1\")");
        refused(|i| drop(i.remove(LEASE_COUNTER)), "leaseCounter is missing");
        refused(|i| drop(i.insert(LEASE_COUNTER.into(), AttributeValue::N("x".into()))), "leaseCounter is \"x\"");
        refused(|i| drop(i.remove(CHECKPOINT)), "checkpoint is missing");
        refused(|i| drop(i.insert(CHECKPOINT.into(), string("NOPE"))), "checkpoint \"NOPE\"");
        refused(|i| drop(i.insert(PARENT_SHARD_IDS.into(), string("p"))), "parentShardId is S(\"p\")");
        let no_key = decode("leases-m", &Item::from([(CHECKPOINT.into(), string("LATEST"))]));
        assert!(
            matches!(&no_key, Err(Error::Storage(e)) if e.to_string().contains("leaseKey is missing")),
            "{no_key:?}"
        );
    }

    #[test]
    fn update_expressions_use_placeholders() {
        let update = Update::default()
            .set(LEASE_COUNTER, number(2))
            .set(CHECKPOINT, string("5"))
            .remove(LEASE_OWNER)
            .remove(CHECKPOINT_OWNER)
            .require(LEASE_COUNTER, number(1))
            .require(LEASE_OWNER, string("me"))
            .require_absent(CHECKPOINT_OWNER);
        assert_eq!(
            update.update_expression(),
            "SET #leaseCounter = :s0, #checkpoint = :s1 REMOVE #leaseOwner, #checkpointOwner"
        );
        assert_eq!(
            update.condition_expression(),
            "#leaseCounter = :c0 AND #leaseOwner = :c1 AND attribute_not_exists(#checkpointOwner)"
        );
        let remove_only = Update::default()
            .remove(LEASE_OWNER)
            .require(LEASE_COUNTER, number(1));
        assert_eq!(remove_only.update_expression(), "REMOVE #leaseOwner");
        assert_eq!(remove_only.condition_expression(), "#leaseCounter = :c0");
    }
}
