//! Store-agnostic scenario suite: every [`LeaseStore`] must pass [`run_all`].
//!
//! Compiled for this crate's tests and, with the `conformance` feature, for other crates that
//! test a store (the DynamoDB store runs it in `tests/tests/lease_table.rs`). Failures panic
//! with a message naming the scenario.
//!
//! Each scenario works on its own mapping UUID, so one backing storage serves them all.

use std::future::Future;

use crate::{Checkpoint, ChildShard, Error, Lease, LeaseRef, LeaseStore, NewLease, SequenceNumber};

const WORKER_A: &str = "worker-a";
const WORKER_B: &str = "worker-b";

/// Runs every scenario. `open` must return a handle on the **same** storage each time (empty at
/// the first call); at most one handle is alive at a time, and the durability scenario drops one
/// and opens the next to check that data written through the first is still there.
pub async fn run_all<S, F, Fut>(mut open: F)
where
    S: LeaseStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    create_is_idempotent(&open().await).await;
    take_renew_and_steal_are_fenced(&open().await).await;
    checkpoints_never_move_backwards(&open().await).await;
    shard_end_creates_children_that_wait_for_all_parents(&open().await).await;
    release_frees_the_lease(&open().await).await;
    durable_across_reopen(&mut open).await;
}

fn seq(text: &str) -> SequenceNumber {
    SequenceNumber::parse(text).expect("valid sequence number")
}

fn new_lease(key: &str, checkpoint: Checkpoint, parents: &[&str]) -> NewLease {
    NewLease {
        lease_key: key.to_owned(),
        checkpoint,
        parent_shard_ids: parents.iter().map(|p| (*p).to_owned()).collect(),
    }
}

async fn get<S: LeaseStore>(store: &S, lease: &LeaseRef) -> Option<Lease> {
    let leases = store.list(&lease.mapping_uuid).await.expect("list");
    leases.into_iter().find(|l| l.lease_key == lease.lease_key)
}

fn assert_lost<T: std::fmt::Debug>(scenario: &str, result: Result<T, Error>) {
    assert!(
        matches!(result, Err(Error::Lost)),
        "{scenario}: expected Lost, got {result:?}"
    );
}

/// Creating twice keeps the first lease; listing is per mapping and ordered by key.
pub async fn create_is_idempotent<S: LeaseStore>(store: &S) {
    let mapping = "conformance-create";
    let created = store
        .create_if_absent(
            mapping,
            new_lease("shardId-000000000001", Checkpoint::Latest, &[]),
        )
        .await
        .expect("create");
    assert!(created, "create: first create must report creation");
    let again = store
        .create_if_absent(
            mapping,
            new_lease("shardId-000000000001", Checkpoint::TrimHorizon, &["x"]),
        )
        .await
        .expect("create again");
    assert!(!again, "create: second create must be a no-op");
    store
        .create_if_absent(
            mapping,
            new_lease("shardId-000000000000", Checkpoint::AtTimestamp(Some(1_764_086_780_123)), &[]),
        )
        .await
        .expect("create second shard");
    let leases = store.list(mapping).await.expect("list");
    assert_eq!(
        leases,
        vec![
            Lease {
                lease_key: "shardId-000000000000".into(),
                owner: None,
                counter: 0,
                checkpoint: Checkpoint::AtTimestamp(Some(1_764_086_780_123)),
                owner_switches_since_checkpoint: 0,
                parent_shard_ids: vec![],
                child_shard_ids: vec![],
            },
            Lease {
                lease_key: "shardId-000000000001".into(),
                owner: None,
                counter: 0,
                checkpoint: Checkpoint::Latest,
                owner_switches_since_checkpoint: 0,
                parent_shard_ids: vec![],
                child_shard_ids: vec![],
            },
        ],
        "create: listing"
    );
    assert!(
        store
            .list("conformance-create-other")
            .await
            .expect("list")
            .is_empty(),
        "create: mappings are separate"
    );
    let bad = store
        .create_if_absent(mapping, new_lease("a,b", Checkpoint::Latest, &[]))
        .await;
    assert!(
        matches!(bad, Err(Error::InvalidLeaseKey(_))),
        "create: comma in key must be refused, got {bad:?}"
    );
}

/// Take bumps the counter and sets the owner; any mutation with a stale counter or by a
/// non-owner is `Lost`; a steal with the current counter wins and fences the old owner out.
pub async fn take_renew_and_steal_are_fenced<S: LeaseStore>(store: &S) {
    let scenario = "take/renew";
    let mapping = "conformance-take";
    let lease = LeaseRef::new(mapping, "shardId-000000000000");
    store
        .create_if_absent(
            mapping,
            new_lease(&lease.lease_key, Checkpoint::TrimHorizon, &[]),
        )
        .await
        .expect("create");

    let taken = store.take(&lease, WORKER_A, 0).await.expect("take");
    assert_eq!(
        (
            taken.owner.as_deref(),
            taken.counter,
            taken.owner_switches_since_checkpoint
        ),
        (Some(WORKER_A), 1, 1)
    );
    assert_eq!(
        taken.checkpoint,
        Checkpoint::TrimHorizon,
        "{scenario}: take returns the checkpoint"
    );
    assert_eq!(
        get(store, &lease).await.as_ref(),
        Some(&taken),
        "{scenario}: take returns the stored lease"
    );
    assert_lost(scenario, store.take(&lease, WORKER_B, 0).await);

    assert_eq!(store.renew(&lease, WORKER_A, 1).await.expect("renew"), 2);
    assert_lost(scenario, store.renew(&lease, WORKER_A, 1).await);
    assert_lost(scenario, store.renew(&lease, WORKER_B, 2).await);

    // Worker B saw counter 2 and steals.
    let stolen = store.take(&lease, WORKER_B, 2).await.expect("steal");
    assert_eq!(
        (
            stolen.owner.as_deref(),
            stolen.counter,
            stolen.owner_switches_since_checkpoint
        ),
        (Some(WORKER_B), 3, 2)
    );
    assert_lost(scenario, store.renew(&lease, WORKER_A, 2).await);
    assert_lost(
        scenario,
        store.checkpoint(&lease, WORKER_A, 2, &seq("5"), 0).await,
    );
    assert_lost(
        scenario,
        store.checkpoint(&lease, WORKER_A, 3, &seq("5"), 0).await,
    );
    assert_lost(scenario, store.release(&lease, WORKER_A, 3).await);
    assert_lost(scenario, store.end_shard(&lease, WORKER_A, 3, &[]).await);

    // Re-taking one's own lease is not an owner switch.
    let retaken = store.take(&lease, WORKER_B, 3).await.expect("retake");
    assert_eq!(
        (retaken.counter, retaken.owner_switches_since_checkpoint),
        (4, 2)
    );

    let missing = LeaseRef::new(mapping, "shardId-999999999999");
    assert_lost(scenario, store.take(&missing, WORKER_A, 0).await);
    assert_lost(scenario, store.renew(&missing, WORKER_A, 0).await);
    assert_lost(
        scenario,
        store
            .checkpoint(
                &LeaseRef::new("conformance-other", &*lease.lease_key),
                WORKER_B,
                4,
                &seq("1"),
                0,
            )
            .await,
    );
}

/// Checkpoints compare numerically (then by sub-sequence number), equal is allowed, backwards
/// is refused without changing the lease, and a checkpoint resets the owner-switch count.
pub async fn checkpoints_never_move_backwards<S: LeaseStore>(store: &S) {
    let mapping = "conformance-checkpoint";
    let lease = LeaseRef::new(mapping, "shardId-000000000000");
    store
        .create_if_absent(
            mapping,
            new_lease(&lease.lease_key, Checkpoint::TrimHorizon, &[]),
        )
        .await
        .expect("create");
    let mut counter = store.take(&lease, WORKER_A, 0).await.expect("take").counter;
    let checkpoint = async |counter: u64, sequence: &SequenceNumber, sub_sequence: u64| {
        store
            .checkpoint(&lease, WORKER_A, counter, sequence, sub_sequence)
            .await
    };

    counter = checkpoint(counter, &seq("9"), 0).await.expect("9");
    counter = checkpoint(counter, &seq("10"), 0)
        .await
        .expect("10 after 9");
    let back = checkpoint(counter, &seq("9"), 0).await;
    assert!(
        matches!(&back, Err(Error::CheckpointBackwards { current, .. }) if current.kcl_value() == "10"),
        "checkpoint: 9 after 10 must be refused, got {back:?}"
    );
    counter = checkpoint(counter, &seq("10"), 0)
        .await
        .expect("same again, counter unchanged by the refusal");
    counter = checkpoint(counter, &seq("10"), 3)
        .await
        .expect("sub-sequence forward");
    let back = checkpoint(counter, &seq("10"), 1).await;
    assert!(
        matches!(back, Err(Error::CheckpointBackwards { .. })),
        "checkpoint: sub-sequence backwards, got {back:?}"
    );
    let long = seq("49601189658422359378836298521827638475320189012309704722");
    counter = checkpoint(counter, &long, 0)
        .await
        .expect("56-digit number");

    // A steal counts an owner switch; the next checkpoint resets it.
    let stolen = store.take(&lease, WORKER_B, counter).await.expect("steal");
    assert_eq!(
        stolen.owner_switches_since_checkpoint, 1,
        "checkpoint: switches counted since the last checkpoint"
    );
    assert_eq!(
        stolen.checkpoint,
        Checkpoint::Sequence {
            sequence_number: long.clone(),
            sub_sequence_number: 0
        }
    );
    let next = seq("49601189658422359378836298521827638475320189012309704723");
    store
        .checkpoint(&lease, WORKER_B, stolen.counter, &next, 0)
        .await
        .expect("forward");
    let stored = get(store, &lease).await.expect("lease");
    assert_eq!(
        stored.owner_switches_since_checkpoint, 0,
        "checkpoint resets owner switches"
    );
    assert_eq!(stored.checkpoint.kcl_value(), next.as_str());
}

/// Ending a shard writes `SHARD_END` and the child ids, creates the children at
/// `TRIM_HORIZON`; a child cannot be taken until every existing parent has ended (merge), a
/// missing parent does not block, and nothing can be checkpointed after `SHARD_END`.
pub async fn shard_end_creates_children_that_wait_for_all_parents<S: LeaseStore>(store: &S) {
    let scenario = "shard end";
    let mapping = "conformance-shard-end";
    let (p1, p2, merged) = (
        "shardId-000000000001",
        "shardId-000000000002",
        "shardId-000000000003",
    );
    for parent in [p1, p2] {
        store
            .create_if_absent(mapping, new_lease(parent, Checkpoint::TrimHorizon, &[]))
            .await
            .expect("create parent");
    }
    let p1_ref = LeaseRef::new(mapping, p1);
    let p2_ref = LeaseRef::new(mapping, p2);
    let child_ref = LeaseRef::new(mapping, merged);
    let c1 = store
        .take(&p1_ref, WORKER_A, 0)
        .await
        .expect("take p1")
        .counter;
    let c2 = store
        .take(&p2_ref, WORKER_B, 0)
        .await
        .expect("take p2")
        .counter;

    let child = ChildShard {
        lease_key: merged.into(),
        parent_shard_ids: vec![p1.into(), p2.into()],
    };
    let c1 = store
        .end_shard(&p1_ref, WORKER_A, c1, std::slice::from_ref(&child))
        .await
        .expect("end p1");
    let p1_lease = get(store, &p1_ref).await.expect("p1");
    assert_eq!(p1_lease.checkpoint, Checkpoint::ShardEnd);
    assert_eq!(p1_lease.child_shard_ids, vec![merged.to_owned()]);
    let created = get(store, &child_ref)
        .await
        .expect("child created by end_shard");
    assert_eq!(
        (
            created.checkpoint.clone(),
            created.owner.clone(),
            created.counter
        ),
        (Checkpoint::TrimHorizon, None, 0)
    );
    assert_eq!(created.parent_shard_ids, vec![p1.to_owned(), p2.to_owned()]);

    let blocked = store.take(&child_ref, WORKER_A, 0).await;
    assert!(
        matches!(&blocked, Err(Error::ParentNotEnded(parent)) if parent == p2),
        "{scenario}: child must wait for the second parent, got {blocked:?}"
    );
    let after_end = store.checkpoint(&p1_ref, WORKER_A, c1, &seq("1"), 0).await;
    assert!(
        matches!(after_end, Err(Error::CheckpointBackwards { .. })),
        "{scenario}: SHARD_END is final, got {after_end:?}"
    );

    // The second parent reports the same child; the existing child lease is left alone.
    store
        .end_shard(&p2_ref, WORKER_B, c2, &[child])
        .await
        .expect("end p2");
    let taken = store
        .take(&child_ref, WORKER_A, 0)
        .await
        .expect("child takeable after both parents ended");
    assert_eq!(taken.counter, 1);

    // A split: one parent, two children.
    let split_children: Vec<ChildShard> = ["shardId-000000000004", "shardId-000000000005"]
        .iter()
        .map(|key| ChildShard {
            lease_key: (*key).into(),
            parent_shard_ids: vec![merged.into()],
        })
        .collect();
    store
        .end_shard(&child_ref, WORKER_A, taken.counter, &split_children)
        .await
        .expect("end merged");
    for split in &split_children {
        store
            .take(&LeaseRef::new(mapping, &*split.lease_key), WORKER_B, 0)
            .await
            .expect("split child takeable");
    }

    // A child whose parent lease no longer exists (deleted, or never seen) is not blocked.
    store
        .create_if_absent(
            mapping,
            new_lease(
                "shardId-000000000009",
                Checkpoint::TrimHorizon,
                &["shardId-gone"],
            ),
        )
        .await
        .expect("create orphan");
    store
        .take(&LeaseRef::new(mapping, "shardId-000000000009"), WORKER_A, 0)
        .await
        .expect("orphan takeable");
}

/// Release removes the owner and bumps the counter; a stale release is `Lost`; anyone can take
/// the released lease with the new counter.
pub async fn release_frees_the_lease<S: LeaseStore>(store: &S) {
    let scenario = "release";
    let mapping = "conformance-release";
    let lease = LeaseRef::new(mapping, "shardId-000000000000");
    store
        .create_if_absent(
            mapping,
            new_lease(&lease.lease_key, Checkpoint::TrimHorizon, &[]),
        )
        .await
        .expect("create");
    let counter = store.take(&lease, WORKER_A, 0).await.expect("take").counter;
    let counter = store
        .checkpoint(&lease, WORKER_A, counter, &seq("42"), 0)
        .await
        .expect("checkpoint");
    assert_lost(scenario, store.release(&lease, WORKER_B, counter).await);
    let released = store
        .release(&lease, WORKER_A, counter)
        .await
        .expect("release");
    assert_eq!(released, counter + 1);
    let stored = get(store, &lease).await.expect("lease");
    assert_eq!((stored.owner, stored.counter), (None, released));
    assert_lost(scenario, store.release(&lease, WORKER_A, counter).await);
    assert_lost(scenario, store.renew(&lease, WORKER_A, released).await);
    let taken = store
        .take(&lease, WORKER_B, released)
        .await
        .expect("take released");
    assert_eq!(
        taken.checkpoint.kcl_value(),
        "42",
        "{scenario}: progress survives release"
    );
    assert_eq!(taken.owner_switches_since_checkpoint, 1);
}

/// Everything written through one handle is visible through the next.
pub async fn durable_across_reopen<S, F, Fut>(open: &mut F)
where
    S: LeaseStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let mapping = "conformance-durable";
    let lease = LeaseRef::new(mapping, "shardId-000000000000");
    let before = {
        let store = open().await;
        store
            .create_if_absent(
                mapping,
                new_lease(&lease.lease_key, Checkpoint::TrimHorizon, &["p"]),
            )
            .await
            .expect("create");
        let counter = store.take(&lease, WORKER_A, 0).await.expect("take").counter;
        store
            .checkpoint(&lease, WORKER_A, counter, &seq("123"), 7)
            .await
            .expect("checkpoint");
        store.list(mapping).await.expect("list")
    };
    let store = open().await;
    assert_eq!(
        store.list(mapping).await.expect("list after reopen"),
        before,
        "durable: reopen"
    );
    let stored = &before[0];
    assert_eq!(
        stored.checkpoint,
        Checkpoint::Sequence {
            sequence_number: seq("123"),
            sub_sequence_number: 7
        }
    );
    store
        .renew(&lease, WORKER_A, stored.counter)
        .await
        .expect("the holder's counter is still valid");
}
