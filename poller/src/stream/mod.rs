//! Kinesis and DynamoDB Streams mappings (docs/aws-reference.md#stream-ordering,
//! #stream-error-handling, #tumbling-windows).
//!
//! A [`StreamMapping`] keeps a lease per shard in the checkpoint store (SQLite by default, see
//! `esm-checkpoint`), discovers shards periodically and runs a [`shard::ShardWorker`] for every lease it
//! can take: a child shard only once its parents have reached SHARD_END, so records are processed in
//! order across resharding. Each worker reads its shard, filters and batches records, delivers batches
//! with AWS's error handling ([`deliver`]) and checkpoints only records that are final.

pub mod destination;
mod deliver;
pub mod dynamodb;
mod get_records;
pub mod kinesis;
mod shard;
pub mod source;
pub mod store;
mod supervise;
mod window;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use esm_checkpoint::{Checkpoint, LeaseRef, LeaseStore, LeaseTaker, NewLease, TakerConfig};
use esm_events::envelope::{Envelope, MAX_PAYLOAD_BYTES};
use esm_stream::RetryConfig;
use lambda_invoke::Target;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::arn::SourceArn;
use crate::config::{Mapping, SourceSettings, StartingPosition};
use crate::error::Error;
use crate::health::MappingState;
use crate::stats::Counters;
use destination::Destination;
use shard::{Exit, HeldLease, ShardWorker, sleep_until_opt};
use source::{ShardInfo, StreamSource};
use store::Store;
use supervise::Restarts;
use crate::panic::panic_message;

/// How often shards are listed to find new ones (a shard that ends triggers a listing at once).
const SHARD_SYNC_INTERVAL: Duration = Duration::from_secs(10);

/// What every shard worker of a mapping shares.
pub(crate) struct StreamCtx {
    uuid: String,
    source: StreamSource,
    target: Target,
    filters: esm_filter::Filters,
    batch_size: usize,
    batching_window: Duration,
    retry: RetryConfig,
    parallelization_factor: u32,
    tumbling_window: Option<Duration>,
    destination: Option<Destination>,
    store: Arc<Store>,
    /// This process's lease owner id.
    owner: String,
    /// Lease expiry and renewal timing (shared stores).
    taker_config: TakerConfig,
    counters: Arc<Counters>,
    function_arn: String,
    /// The mapping's `StartingPositionTimestamp` in epoch milliseconds, for `AT_TIMESTAMP`
    /// leases that do not carry their own time (written by KCL).
    starting_timestamp: Option<i64>,
    /// Poll interval of a caught-up shard: Lambda's base rate (Kinesis 1/s, DynamoDB Streams 4/s).
    idle_poll: Duration,
    cancel: CancellationToken,
    /// The drain deadline: batches still in flight are dropped unfinished (read again after a restart).
    abandon: CancellationToken,
}

impl StreamCtx {
    /// Budget for the records of one `{"Records":[...]}` payload: the 6 MB cap less the envelope,
    /// counting one separator per record (callers add it to each record's size).
    fn max_record_bytes(&self) -> usize {
        max_record_bytes()
    }
}

/// Budget for the records of one `{"Records":[...]}` payload (see [`StreamCtx::max_record_bytes`]).
pub(crate) fn max_record_bytes() -> usize {
    MAX_PAYLOAD_BYTES - Envelope::records().payload_len([])
}

/// The shard workers of a mapping and what supervising them needs.
#[derive(Default)]
struct Workers {
    /// Worker tasks and their lease renewers (which end with [`Exit::Renewer`]).
    set: JoinSet<(String, Exit)>,
    /// Shards with a worker.
    running: HashSet<String>,
    /// What a worker task is, by task id, so a panic can be traced to its shard.
    tasks: HashMap<tokio::task::Id, WorkerTask>,
    restarts: Restarts,
}

struct WorkerTask {
    shard_id: String,
    held: Arc<HeldLease>,
    started: tokio::time::Instant,
}

/// One running Kinesis or DynamoDB Streams mapping.
pub struct StreamMapping {
    ctx: Arc<StreamCtx>,
    /// Lease checkpoint for shards found when the mapping has no leases yet.
    initial: Checkpoint,
    /// The last lease read failed for good and marked the mapping failed.
    leases_unreadable: AtomicBool,
}

/// Everything a stream mapping needs besides its definition.
pub struct StreamDeps<'a> {
    pub sdk: &'a aws_config::SdkConfig,
    pub target: Target,
    pub counters: Arc<Counters>,
    pub store: Arc<Store>,
    pub owner: String,
    pub taker_config: TakerConfig,
    pub invoke_identity_arn: Option<String>,
    pub cancel: CancellationToken,
    /// Fires at the drain deadline, after `cancel`: in-flight batches are given up, checkpoints cover
    /// only what completed, and leases are released.
    pub abandon: CancellationToken,
}

impl StreamMapping {
    /// Check the stream (and destination) exist and prepare the mapping.
    pub async fn connect(mapping: Mapping, deps: StreamDeps<'_>) -> Result<StreamMapping, Error> {
        let SourceSettings::Stream(settings) = &mapping.settings else {
            unreachable!("StreamMapping::connect is only called for stream mappings");
        };
        let arn = mapping.source.parts();
        let function_arn = function_arn(&mapping.function_name, &arn.region, &arn.account);
        let role = deps.invoke_identity_arn.clone().unwrap_or_else(|| {
            format!("arn:aws:iam::{}:role/{}-role", arn.account, short_name(&mapping.function_name))
        });
        let source = StreamSource::connect(deps.sdk, &mapping.source, &role).await?;
        deps.store
            .open(&mapping.uuid)
            .await
            .map_err(|e| Error::Source(format!("lease store for mapping {}: {e}", mapping.uuid)))?;
        let destination = match &settings.on_failure_destination {
            Some(dest) => Some(Destination::connect(deps.sdk, dest).await?),
            None => None,
        };
        let (initial, starting_timestamp) = match settings.starting_position {
            StartingPosition::TrimHorizon => (Checkpoint::TrimHorizon, None),
            StartingPosition::Latest => (Checkpoint::Latest, None),
            StartingPosition::AtTimestamp(t) => {
                let millis = (t * 1000.0).round() as i64;
                (Checkpoint::AtTimestamp(Some(millis)), Some(millis))
            }
        };
        let idle_poll = match mapping.source {
            SourceArn::DynamoDbStream(_) => Duration::from_millis(250),
            _ => Duration::from_secs(1),
        };
        let ctx = StreamCtx {
            uuid: mapping.uuid.clone(),
            source,
            target: deps.target,
            filters: mapping.filters,
            batch_size: mapping.batch_size as usize,
            batching_window: mapping.batching_window,
            retry: RetryConfig {
                bisect_on_function_error: settings.bisect_batch_on_function_error,
                maximum_retry_attempts: settings.maximum_retry_attempts,
                maximum_record_age: settings.maximum_record_age,
                report_batch_item_failures: mapping.report_batch_item_failures,
                throttle_backoff: Default::default(),
            },
            parallelization_factor: settings.parallelization_factor,
            tumbling_window: settings.tumbling_window,
            destination,
            store: deps.store,
            owner: deps.owner,
            taker_config: deps.taker_config,
            counters: deps.counters,
            function_arn,
            starting_timestamp,
            idle_poll,
            cancel: deps.cancel,
            abandon: deps.abandon,
        };
        Ok(StreamMapping {
            ctx: Arc::new(ctx),
            initial,
            leases_unreadable: AtomicBool::new(false),
        })
    }

    /// Discover shards and run their workers until shutdown; returns once every worker has stopped
    /// (in-flight batches finished, checkpoints written, leases released).
    pub async fn run(self) {
        let ctx = &self.ctx;
        tracing::info!(uuid = %ctx.uuid, stream = %ctx.source.arn().arn, function = %ctx.target.describe(), "stream mapping started");
        let mut workers = Workers::default();
        let mut taker = ctx.store.is_shared().then(|| LeaseTaker::new(ctx.owner.clone(), ctx.taker_config.clone()));
        let sync_interval = match &taker {
            Some(_) => SHARD_SYNC_INTERVAL.min(ctx.taker_config.scan_interval()),
            None => SHARD_SYNC_INTERVAL,
        };
        loop {
            if !ctx.cancel.is_cancelled() {
                match ctx.source.list_shards().await {
                    Ok(shards) => {
                        // A poller holding no shard reads none: the stream answering is its poll,
                        // for readiness. Shard workers report their own reads.
                        if workers.running.is_empty() {
                            ctx.counters.health.polled();
                        }
                        self.start_workers(&shards, &mut workers, taker.as_mut()).await
                    }
                    Err(e) => {
                        tracing::warn!(uuid = %ctx.uuid, error = %e, "listing shards failed; will retry");
                        ctx.counters.health.poll_failed(e.to_string());
                    }
                }
            }
            let restart_due = workers.restarts.next_due(tokio::time::Instant::now());
            tokio::select! {
                Some(joined) = workers.set.join_next_with_id() => {
                    let (id, outcome) = match joined {
                        Ok((id, (_, exit))) => (id, Ok(exit)),
                        Err(e) => {
                            let id = e.id();
                            let reason = if e.is_panic() {
                                format!("panicked: {}", panic_message(e.into_panic().as_ref()))
                            } else {
                                "cancelled".to_owned()
                            };
                            (id, Err(reason))
                        }
                    };
                    if let Some(task) = workers.tasks.remove(&id) {
                        self.worker_stopped(&mut workers, task, outcome);
                    }
                    if ctx.cancel.is_cancelled() && workers.set.is_empty() {
                        break;
                    }
                }
                _ = tokio::time::sleep(sync_interval), if !ctx.cancel.is_cancelled() => {}
                _ = sleep_until_opt(restart_due), if !ctx.cancel.is_cancelled() => {}
                _ = ctx.cancel.cancelled(), if !ctx.cancel.is_cancelled() => {}
                else => break,
            }
            if ctx.cancel.is_cancelled() && workers.set.is_empty() {
                break;
            }
        }
        tracing::info!(uuid = %ctx.uuid, "stream mapping stopped");
    }

    /// A worker task ended with `outcome` (its exit, or why the task died). A failed worker
    /// (panic, or [`Exit::Failed`]) is counted and its shard started again after a backoff, from
    /// its stored checkpoint; the next shard sync retakes the lease.
    fn worker_stopped(&self, workers: &mut Workers, task: WorkerTask, outcome: Result<Exit, String>) {
        let ctx = &self.ctx;
        let shard_id = task.shard_id;
        workers.running.remove(&shard_id);
        ctx.counters.shard_stopped(&shard_id);
        let reason = match outcome {
            Ok(Exit::Failed(reason)) | Err(reason) => reason,
            Ok(exit) => {
                workers.restarts.ended(&shard_id);
                tracing::debug!(uuid = %ctx.uuid, shard_id, ?exit, "shard worker stopped");
                return;
            }
        };
        // A task that died did not stop its lease renewer.
        task.held.lost.cancel();
        let now = tokio::time::Instant::now();
        let delay = workers.restarts.failed(&shard_id, now - task.started, now);
        tracing::error!(uuid = %ctx.uuid, shard_id, %reason, ?delay, "shard worker failed; restarting it after a backoff");
        ctx.counters.worker_failed(format!("shard {shard_id}: {reason}"));
    }

    /// The mapping's leases; `None` if the store cannot be read now. Until it can, no shard is taken
    /// or handed over, so a failure is never quiet: it is counted, and one that retrying cannot fix
    /// (a corrupt lease, a permission) is logged as an error and marks the mapping degraded on
    /// `/readyz` until a read succeeds again.
    async fn leases(&self) -> Option<Vec<esm_checkpoint::Lease>> {
        let ctx = &self.ctx;
        match ctx.store.list(&ctx.uuid).await {
            Ok(leases) => {
                if self.leases_unreadable.swap(false, Ordering::Relaxed) {
                    tracing::info!(uuid = %ctx.uuid, "lease table readable again");
                    ctx.counters.health.set_state(MappingState::Running);
                }
                Some(leases)
            }
            Err(e) if e.is_transient() => {
                Counters::add(&ctx.counters.lease_table_errors, 1);
                tracing::warn!(uuid = %ctx.uuid, error = %e, "reading leases failed; retrying at the next shard sync");
                None
            }
            Err(e) => {
                Counters::add(&ctx.counters.lease_table_errors, 1);
                tracing::error!(uuid = %ctx.uuid, error = %e,
                    "reading leases failed; no shard is taken until the lease table is fixed");
                self.leases_unreadable.store(true, Ordering::Relaxed);
                ctx.counters.health.set_state(MappingState::Degraded(format!("reading leases failed: {e}")));
                None
            }
        }
    }

    /// Create leases for new shards and start a worker for every lease this process should hold: with
    /// the embedded store every unfinished lease; with a shared store only those the [`LeaseTaker`]
    /// plans (free, expired, or stolen to balance the fleet).
    async fn start_workers(&self, shards: &[ShardInfo], workers: &mut Workers, taker: Option<&mut LeaseTaker>) {
        let ctx = &self.ctx;
        let Some(mut leases) = self.leases().await else {
            return;
        };
        let known: HashSet<&str> = leases.iter().map(|l| l.lease_key.as_str()).collect();
        let first_sync = leases.is_empty();
        // A shard that is some other shard's parent is closed.
        let closed: HashSet<&str> = shards
            .iter()
            .flat_map(|s| s.parent_shard_ids.iter().map(String::as_str))
            .collect();
        let listed: HashMap<&str, &ShardInfo> = shards.iter().map(|s| (s.shard_id.as_str(), s)).collect();
        let mut created = false;
        let now = deliver::now_millis();
        for shard in shards.iter().filter(|s| !known.contains(s.shard_id.as_str())) {
            let has_known_parent = shard
                .parent_shard_ids
                .iter()
                .any(|p| known.contains(p.as_str()) || (first_sync && listed.contains_key(p.as_str())));
            let new_shard = NewShard {
                first_sync,
                closed: closed.contains(shard.shard_id.as_str()),
                has_known_parent,
            };
            let checkpoint = lease_start(&self.initial, new_shard, now);
            let lease = NewLease {
                lease_key: shard.shard_id.clone(),
                checkpoint,
                parent_shard_ids: shard.parent_shard_ids.clone(),
            };
            match ctx.store.create_if_absent(&ctx.uuid, lease).await {
                Ok(new) => created |= new,
                Err(e) => tracing::error!(uuid = %ctx.uuid, shard_id = %shard.shard_id, error = %e, "creating a lease failed"),
            }
        }
        if created {
            let Some(with_new) = self.leases().await else {
                return;
            };
            leases = with_new;
        }
        let wanted: Vec<(String, u64)> = match taker {
            Some(taker) => taker
                .plan(&leases, tokio::time::Instant::now().into_std())
                .into_iter()
                .map(|t| (t.lease_key, t.counter))
                .collect(),
            None => leases
                .into_iter()
                .filter(|l| l.checkpoint != Checkpoint::ShardEnd)
                .map(|l| (l.lease_key, l.counter))
                .collect(),
        };
        let now = tokio::time::Instant::now();
        for (lease_key, counter) in wanted {
            if workers.running.contains(&lease_key) || !workers.restarts.may_start(&lease_key, now) {
                continue;
            }
            let lease_ref = LeaseRef::new(ctx.uuid.clone(), lease_key.clone());
            match ctx.store.take(&lease_ref, &ctx.owner, counter).await {
                Ok(taken) => {
                    Counters::add(&ctx.counters.lease_takes, 1);
                    workers.running.insert(lease_key.clone());
                    let held = HeldLease::new(taken.counter);
                    if ctx.store.is_shared() {
                        workers.set.spawn({
                            let (held, ctx, lease) = (held.clone(), self.ctx.clone(), lease_ref.clone());
                            async move {
                                let shard_id = lease.lease_key.clone();
                                held.renew(ctx, lease).await;
                                (shard_id, Exit::Renewer)
                            }
                        });
                    }
                    let worker = ShardWorker {
                        ctx: self.ctx.clone(),
                        lease: lease_ref,
                        held,
                        start: taken.checkpoint,
                    };
                    tracing::info!(uuid = %ctx.uuid, shard_id = %lease_key, start = %worker.start, "shard taken");
                    let task = WorkerTask {
                        shard_id: lease_key.clone(),
                        held: worker.held.clone(),
                        started: tokio::time::Instant::now(),
                    };
                    let handle = workers.set.spawn(async move {
                        let shard_id = worker.lease.lease_key.clone();
                        let held = worker.held.clone();
                        let exit = worker.run().await;
                        // The renewer stops with the worker.
                        held.lost.cancel();
                        (shard_id, exit)
                    });
                    workers.tasks.insert(handle.id(), task);
                }
                Err(esm_checkpoint::Error::ParentNotEnded(parent)) => {
                    tracing::debug!(uuid = %ctx.uuid, shard_id = %lease_key, %parent, "waiting for the parent shard to end");
                }
                Err(esm_checkpoint::Error::Lost) => {
                    tracing::debug!(uuid = %ctx.uuid, shard_id = %lease_key, "another poller took the lease first");
                }
                Err(e) => tracing::warn!(uuid = %ctx.uuid, shard_id = %lease_key, error = %e, "taking the lease failed"),
            }
        }
    }
}

/// What decides where a newly found shard's lease starts.
#[derive(Clone, Copy, Debug)]
struct NewShard {
    /// The mapping had no leases yet: this is its first start.
    first_sync: bool,
    /// Some listed shard names it as a parent.
    closed: bool,
    /// One of its parents has a lease (or is listed, on the first start).
    has_known_parent: bool,
}

/// The checkpoint a new shard's lease starts at, for a mapping whose starting position is
/// `initial`, at `now` (epoch ms).
fn lease_start(initial: &Checkpoint, shard: NewShard, now: i64) -> Checkpoint {
    match initial {
        // LATEST: only the open shards are read.
        Checkpoint::Latest if shard.first_sync && shard.closed => Checkpoint::ShardEnd,
        // Children start at their beginning so nothing between parent and child is skipped.
        _ if shard.has_known_parent => Checkpoint::TrimHorizon,
        // The tip is pinned to now and stored as AT_TIMESTAMP: AWS fixes a mapping's position when
        // it is created, and a restart of this process is not a new mapping, so it must resume
        // here, not at a later tip (records written while stopped would be lost).
        Checkpoint::Latest => Checkpoint::AtTimestamp(Some(now)),
        initial => initial.clone(),
    }
}

/// The function's unqualified ARN as AWS writes it in failure records: given as is when it already is an
/// ARN, else built from the mapping's region and account.
fn function_arn(function_name: &str, region: &str, account: &str) -> String {
    if function_name.starts_with("arn:") {
        function_name.to_owned()
    } else {
        format!("arn:aws:lambda:{region}:{account}:function:{}", short_name(function_name))
    }
}

/// The bare function name of a name, `name:qualifier`, partial ARN or ARN.
pub(crate) fn short_name(function_name: &str) -> &str {
    match function_name.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => function_name.split(':').next().unwrap_or(function_name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_and_at_timestamp_leases_start_at_a_pinned_time() {
        let shard = |first_sync, closed, has_known_parent| NewShard {
            first_sync,
            closed,
            has_known_parent,
        };
        let now = 1_764_086_780_123;
        let pinned = Checkpoint::AtTimestamp(Some(now));
        assert_eq!(lease_start(&Checkpoint::Latest, shard(true, false, false), now), pinned);
        assert_eq!(lease_start(&Checkpoint::Latest, shard(true, true, false), now), Checkpoint::ShardEnd);
        assert_eq!(lease_start(&Checkpoint::Latest, shard(true, false, true), now), Checkpoint::TrimHorizon);
        assert_eq!(lease_start(&Checkpoint::Latest, shard(false, false, false), now), pinned, "found later");
        assert_eq!(lease_start(&Checkpoint::Latest, shard(false, false, true), now), Checkpoint::TrimHorizon);
        let at = Checkpoint::AtTimestamp(Some(1_700_000_000_000));
        assert_eq!(lease_start(&at, shard(true, true, false), now), at, "the mapping's own time");
        assert_eq!(lease_start(&at, shard(false, false, true), now), Checkpoint::TrimHorizon);
        let trim = Checkpoint::TrimHorizon;
        assert_eq!(lease_start(&trim, shard(true, true, false), now), trim);
    }

    #[test]
    fn function_arns_and_names() {
        assert_eq!(function_arn("fn", "us-east-1", "123"), "arn:aws:lambda:us-east-1:123:function:fn");
        assert_eq!(function_arn("fn:live", "us-east-1", "123"), "arn:aws:lambda:us-east-1:123:function:fn");
        let arn = "arn:aws:lambda:eu-west-1:9:function:f";
        assert_eq!(function_arn(arn, "us-east-1", "123"), arn);
        assert_eq!(short_name("123:function:f:3"), "f");
    }
}
