//! One shard, from its lease to its end: read in order, filter, batch per lane, deliver, checkpoint.
//!
//! Records are read ahead (bounded) into [`Lanes`] by partition key: with `ParallelizationFactor` N up to
//! N batches of the shard are in flight, one per lane, so records with the same key stay in order. A
//! record becomes *final* when it is delivered, discarded after failure handling, or filtered out; the
//! [`Frontier`] turns final records into the checkpoint (the end of the longest final prefix), which is
//! written to the lease store. The checkpoint is therefore never ahead of what the function processed.

use std::sync::Arc;
use std::time::Duration;

use esm_checkpoint::{Checkpoint, ChildShard, LeaseRef, LeaseStore};
use esm_stream::{Frontier, Lanes, SequenceNumber};
use governor::{Quota, RateLimiter};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::deliver::{Framing, deliver};
use super::source::{Position, ReadError, StreamRecord};
use super::{StreamCtx, window};
use crate::backoff::{Backoff, FailureStreak, Report};
use crate::stats::Counters;

/// Why a shard worker stopped.
#[derive(Debug)]
pub(super) enum Exit {
    /// The shard is closed and every record is final; its lease is at SHARD_END.
    Ended,
    /// Shutdown, or the shard disappeared; the lease was released where possible.
    Stopped,
    /// Another poller took the lease: stopped without writing anything more.
    Lost,
    /// An error the worker cannot get past (the lease store refused a write): the supervisor
    /// restarts the shard after a backoff, from its stored checkpoint.
    Failed(String),
    /// Not a worker: a lease renewer ended (its worker reports separately).
    Renewer,
}

/// A shard worker: holds the lease for as long as it runs.
pub(super) struct ShardWorker {
    pub(super) ctx: Arc<StreamCtx>,
    pub(super) lease: LeaseRef,
    pub(super) held: Arc<HeldLease>,
    pub(super) start: Checkpoint,
}

/// A lease this process holds. Its counter (the fencing token) is behind one lock, so the worker's
/// checkpoints and the renewer's heartbeats never race (KCL's per-lease lock). With a shared store the
/// renewer cancels `lost` when the lease is taken by another process, or when it could not renew it for
/// the failover time (then peers may take it: stop before they do).
pub(super) struct HeldLease {
    counter: tokio::sync::Mutex<u64>,
    pub(super) lost: tokio_util::sync::CancellationToken,
}

impl HeldLease {
    pub(super) fn new(counter: u64) -> Arc<HeldLease> {
        Arc::new(HeldLease {
            counter: tokio::sync::Mutex::new(counter),
            lost: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Renew `lease` every `renew_interval` until the worker stops or the lease is lost.
    pub(super) async fn renew(self: Arc<Self>, ctx: Arc<StreamCtx>, lease: LeaseRef) {
        let config = &ctx.taker_config;
        let mut last_success = Instant::now();
        let mut ticker = tokio::time::interval(config.renew_interval());
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.lost.cancelled() => return,
            }
            let mut counter = self.counter.lock().await;
            match ctx.store.renew(&lease, &ctx.owner, *counter).await {
                Ok(next) => {
                    *counter = next;
                    last_success = Instant::now();
                }
                Err(esm_checkpoint::Error::Lost) => {
                    tracing::warn!(uuid = %ctx.uuid, shard_id = %lease.lease_key, "lease taken by another poller; stopping the shard");
                    Counters::add(&ctx.counters.leases_lost, 1);
                    self.lost.cancel();
                    return;
                }
                Err(e) if last_success.elapsed() >= config.failover => {
                    tracing::error!(uuid = %ctx.uuid, shard_id = %lease.lease_key, error = %e,
                        "lease not renewed for the failover time; stopping the shard before a peer takes it");
                    Counters::add(&ctx.counters.leases_lost, 1);
                    self.lost.cancel();
                    return;
                }
                Err(e) => tracing::warn!(uuid = %ctx.uuid, shard_id = %lease.lease_key, error = %e, "renewing the lease failed; retrying"),
            }
        }
    }
}

/// Lane bookkeeping the [`Lanes`] type leaves to us: how many records wait and since when.
#[derive(Clone, Copy, Default)]
struct LaneClock {
    queued: usize,
    opened_at: Option<Instant>,
}

impl ShardWorker {
    pub(super) async fn run(mut self) -> Exit {
        let ctx = self.ctx.clone();
        let shard_id = self.lease.lease_key.clone();
        if ctx.tumbling_window.is_some() {
            return window::run(self).await;
        }
        let (position, checkpoint) = match &self.start {
            Checkpoint::ShardEnd => return Exit::Ended,
            start => start_position(&ctx, start),
        };
        let mut frontier = Frontier::new(checkpoint);
        let mut lanes: Lanes<StreamRecord> =
            Lanes::new(ctx.parallelization_factor).expect("validated ParallelizationFactor");
        let mut clocks = vec![LaneClock::default(); lanes.lane_count()];
        let mut in_flight: JoinSet<(usize, Vec<StreamRecord>, usize)> = JoinSet::new();
        let read_ahead = (ctx.batch_size * lanes.lane_count() * 2).clamp(100, 20_000);
        // Records delivered but not checkpointed (what a crash delivers again) stay within one
        // batch per lane (plus the one record the checkpoint waits for, see dispatch_allowance).
        let redelivery_budget = ctx.batch_size * lanes.lane_count();
        let mut reader = Reader::new(&ctx, shard_id.clone(), position);

        loop {
            // Start every batch that is ready.
            let now = Instant::now();
            let ready: Vec<usize> = lanes.ready_lanes().collect();
            for lane in ready {
                let clock = clocks[lane];
                let max_records = if ctx.cancel.is_cancelled() {
                    // Shutting down: deliver only the queued records a finished batch of another
                    // lane waits for, so the last checkpoint covers every batch that finished.
                    let queue = lanes.queue(lane).take(ctx.batch_size);
                    queue.take_while(|r| frontier.precedes_dispatched(&r.sequence_number)).count()
                } else {
                    let due = clock.queued >= ctx.batch_size
                        || reader.done
                        || clock.opened_at.is_some_and(|t| now >= t + ctx.batching_window);
                    if due { ctx.batch_size } else { 0 }
                };
                let Some(head) = lanes.queue(lane).next().filter(|_| max_records > 0) else {
                    continue;
                };
                let allowed =
                    frontier.dispatch_allowance(&head.sequence_number, max_records.min(clock.queued), redelivery_budget);
                if allowed == 0 {
                    continue;
                }
                let max_bytes = ctx.max_record_bytes();
                if let Some(batch) = lanes.take_batch(lane, allowed, max_bytes, |r| r.json.len() + 1) {
                    for record in &batch {
                        frontier.dispatch(&record.sequence_number).expect("tracked record");
                    }
                    let left = clock.queued - batch.len();
                    clocks[lane] = LaneClock {
                        queued: left,
                        opened_at: (left > 0).then_some(now),
                    };
                    let (ctx, shard) = (ctx.clone(), shard_id.clone());
                    in_flight.spawn(async move {
                        let (final_count, _) = deliver(&ctx, &shard, &batch, Framing::Records).await;
                        (lane, batch, final_count)
                    });
                }
            }

            if reader.done && lanes.is_idle() && in_flight.is_empty() {
                return self.end(&mut frontier).await;
            }
            if ctx.cancel.is_cancelled() && in_flight.is_empty() {
                if let Err(exit) = self.checkpoint(&mut frontier).await {
                    return exit;
                }
                return self.release().await;
            }

            let can_read = !reader.done && !ctx.cancel.is_cancelled() && lanes.queued() < read_ahead;
            // The next batching window to close, among lanes that could start a batch.
            let window_deadline = lanes
                .ready_lanes()
                .filter_map(|lane| clocks[lane].opened_at)
                .min()
                .map(|t| t + ctx.batching_window)
                .filter(|_| !ctx.cancel.is_cancelled());
            tokio::select! {
                Some(joined) = in_flight.join_next() => {
                    let (lane, batch, final_count) = joined.expect("batch task");
                    for record in &batch[..final_count] {
                        frontier.complete(&record.sequence_number).expect("tracked record");
                    }
                    // Shutdown interrupted the batch (it was retrying): the rest is delivered again
                    // after a restart. Its lane stays blocked, so no later record of its keys goes
                    // first; the other batches in flight finish and are checkpointed.
                    if final_count == batch.len() {
                        lanes.finish_batch(lane);
                    }
                    if let Err(exit) = self.checkpoint(&mut frontier).await {
                        return exit;
                    }
                }
                _ = tokio::time::sleep_until(reader.ready_at), if can_read => {
                    let Ok(records) = reader.read(&ctx, &mut frontier, read_ahead).await else {
                        return self.release().await;
                    };
                    for mut record in records {
                        // The key only chooses the lane: moved out rather than copied.
                        let key = std::mem::take(&mut record.partition_key);
                        let lane = lanes.push(&key, record);
                        let clock = &mut clocks[lane];
                        clock.queued += 1;
                        clock.opened_at.get_or_insert(Instant::now());
                    }
                    if lanes.is_idle() && in_flight.is_empty()
                        && let Err(exit) = self.checkpoint(&mut frontier).await
                    {
                        return exit;
                    }
                }
                _ = sleep_until_opt(window_deadline) => {}
                _ = ctx.cancel.cancelled(), if !ctx.cancel.is_cancelled() => {}
                _ = self.held.lost.cancelled() => {
                    in_flight.abort_all();
                    return Exit::Lost;
                }
                _ = ctx.abandon.cancelled() => {
                    // The drain deadline: batches in flight are dropped unfinished; the checkpoint
                    // covers only completed ones, so they are read again after a restart.
                    ctx.counters.health.abandoned(frontier.pending().saturating_sub(lanes.queued()));
                    in_flight.abort_all();
                    if let Err(exit) = self.checkpoint(&mut frontier).await {
                        return exit;
                    }
                    return self.release().await;
                }
            }
        }
    }

    /// Write the frontier's checkpoint if it moved. The error is how the worker must stop: the
    /// lease was lost, or the store refused the write.
    pub(super) async fn checkpoint(&mut self, frontier: &mut Frontier) -> Result<(), Exit> {
        let Some(seq) = frontier.checkpoint().cloned() else {
            return Ok(());
        };
        if matches!(&self.start, Checkpoint::Sequence { sequence_number, .. } if *sequence_number == seq) {
            return Ok(());
        }
        loop {
            // The lease's lock is held for one attempt, not across the retries: while the store is
            // unreachable the renewer must get its turn, fail, and after the failover time cancel
            // `lost`, which is what ends this loop (a peer may take the lease by then).
            {
                let mut counter = self.held.counter.lock().await;
                if self.held.lost.is_cancelled() {
                    return Err(Exit::Lost);
                }
                match self.ctx.store.checkpoint(&self.lease, &self.ctx.owner, *counter, &seq, 0).await {
                    Ok(next) => {
                        *counter = next;
                        self.start = Checkpoint::Sequence {
                            sequence_number: seq,
                            sub_sequence_number: 0,
                        };
                        Counters::add(&self.ctx.counters.checkpoints, 1);
                        return Ok(());
                    }
                    Err(e) if e.is_transient() => {}
                    Err(esm_checkpoint::Error::Lost) => return Err(Exit::Lost),
                    Err(e) => return Err(Exit::Failed(format!("checkpoint failed: {e}"))),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every record of a closed shard is final: write the last checkpoint, then SHARD_END with the
    /// children, whose leases are created at TRIM_HORIZON.
    pub(super) async fn end(&mut self, frontier: &mut Frontier) -> Exit {
        if let Err(exit) = self.checkpoint(frontier).await {
            return exit;
        }
        let children: Vec<ChildShard> = loop {
            match self.ctx.source.list_shards().await {
                Ok(shards) => {
                    break shards
                        .into_iter()
                        .filter(|s| s.parent_shard_ids.contains(&self.lease.lease_key))
                        .map(|s| ChildShard {
                            lease_key: s.shard_id,
                            parent_shard_ids: s.parent_shard_ids,
                        })
                        .collect();
                }
                Err(e) if !self.ctx.cancel.is_cancelled() => {
                    tracing::warn!(uuid = %self.ctx.uuid, error = %e, "listing shards failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => return self.release().await,
            }
        };
        let ended = {
            let mut counter = self.held.counter.lock().await;
            let result = self.ctx.store.end_shard(&self.lease, &self.ctx.owner, *counter, &children).await;
            if let Ok(next) = &result {
                *counter = *next;
            }
            result
        };
        match ended {
            Ok(_) => {
                tracing::info!(uuid = %self.ctx.uuid, shard_id = %self.lease.lease_key, "shard ended");
                self.release().await;
                Exit::Ended
            }
            Err(esm_checkpoint::Error::Lost) => Exit::Lost,
            Err(e) => Exit::Failed(format!("ending the shard failed: {e}")),
        }
    }

    /// Give the lease up so a restart (or another poller) takes it at once.
    pub(super) async fn release(&mut self) -> Exit {
        if self.held.lost.is_cancelled() {
            return Exit::Lost;
        }
        let counter = *self.held.counter.lock().await;
        if let Err(e) = self.ctx.store.release(&self.lease, &self.ctx.owner, counter).await {
            tracing::warn!(uuid = %self.ctx.uuid, shard_id = %self.lease.lease_key, error = %e, "releasing the lease failed");
        }
        Exit::Stopped
    }
}

/// Where to read from for a lease's checkpoint, and the sequence number already final (if any).
pub(super) fn start_position(ctx: &StreamCtx, start: &Checkpoint) -> (Position, Option<SequenceNumber>) {
    match start {
        Checkpoint::TrimHorizon => (Position::TrimHorizon, None),
        Checkpoint::Latest => (Position::Latest, None),
        Checkpoint::AtTimestamp(millis) => {
            let millis = millis.or(ctx.starting_timestamp).unwrap_or_default();
            (Position::AtTimestamp(millis as f64 / 1000.0), None)
        }
        Checkpoint::Sequence { sequence_number, .. } => (
            Position::AfterSequence(sequence_number.as_str().to_owned()),
            Some(sequence_number.clone()),
        ),
        Checkpoint::ShardEnd => unreachable!("ended shards are not started"),
    }
}

/// Reads one shard in order: iterators, pacing (the shard's read limit, Lambda's base poll rate when
/// caught up), errors and retries. Every record read is tracked in the frontier; records no filter
/// matches are final at once (skipped, and checkpointed with the rest).
pub(super) struct Reader {
    shard_id: String,
    position: Position,
    /// Reading from `AT_TIMESTAMP`: records that arrived before this second (epoch ms) are skipped
    /// like filtered ones. DynamoDB Streams has no `AT_TIMESTAMP` iterator, so its shards are read
    /// from `TRIM_HORIZON` and this does the work; its creation times have whole-second precision,
    /// so records of the pinned second itself are kept: some may have been written just before it,
    /// none written after it is skipped. For Kinesis the iterator already starts there.
    skip_before_ms: Option<i64>,
    iterator: Option<String>,
    limiter: governor::DefaultDirectRateLimiter,
    backoff: Backoff,
    /// Failed reads since the last good one, for reporting.
    failures: FailureStreak,
    /// When the next read may start.
    pub(super) ready_at: Instant,
    /// The shard is closed and read to its end.
    pub(super) done: bool,
    /// The last read returned everything available.
    pub(super) caught_up: bool,
}

/// The shard is gone; stop working on it.
pub(super) struct Gone;

/// First backoff after a failed read (throttled, endpoint unreachable, 5xx).
const READ_BACKOFF_FIRST: Duration = Duration::from_millis(200);

/// Longest backoff between failed reads. Kept short so that reads resume within a few seconds of an
/// endpoint recovering (docs/stream-processing.md gives the bound); a shard allows 5 reads a second,
/// and the rate limiter keeps retries within that.
const READ_BACKOFF_CAP: Duration = Duration::from_secs(1);

/// A streak of failed reads is logged at most this often per shard.
const READ_FAILURE_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Reads failing for this long are logged as errors.
const READ_FAILURE_PERSISTENT: Duration = Duration::from_secs(60);

impl Reader {
    pub(super) fn new(ctx: &StreamCtx, shard_id: String, position: Position) -> Reader {
        let per_second = std::num::NonZeroU32::new(ctx.source.reads_per_second()).expect("non-zero");
        let skip_before_ms = match position {
            Position::AtTimestamp(seconds) => Some(seconds.floor() as i64 * 1000),
            _ => None,
        };
        Reader {
            shard_id,
            position,
            skip_before_ms,
            iterator: None,
            limiter: RateLimiter::direct(Quota::per_second(per_second)),
            backoff: Backoff::new(READ_BACKOFF_FIRST, READ_BACKOFF_CAP),
            failures: FailureStreak::new(READ_FAILURE_REPORT_EVERY, READ_FAILURE_PERSISTENT),
            ready_at: Instant::now(),
            done: false,
            caught_up: false,
        }
    }

    /// One GetRecords call (after getting an iterator if needed). Returns the records that passed
    /// the filters; on a retryable error, none, with `ready_at` pushed back.
    pub(super) async fn read(
        &mut self,
        ctx: &StreamCtx,
        frontier: &mut Frontier,
        limit: usize,
    ) -> Result<Vec<StreamRecord>, Gone> {
        self.limiter.until_ready().await;
        let iterator = match self.iterator.take() {
            Some(it) => it,
            None => match ctx.source.iterator(&self.shard_id, &self.position).await {
                Ok(it) => it,
                Err(e) => return self.failed(ctx, e).map(|()| Vec::new()),
            },
        };
        let page = match ctx.source.read(&self.shard_id, &iterator, limit.min(ctx.source.max_page()), &ctx.filters).await {
            Ok(page) => page,
            Err(e) => return self.failed(ctx, e).map(|()| Vec::new()),
        };
        self.backoff.reset();
        if let Some((failures, lasted)) = self.failures.succeeded(Instant::now().into_std()) {
            tracing::info!(uuid = %ctx.uuid, shard_id = %self.shard_id, failures, ?lasted, "reads resumed");
        }
        ctx.counters.health.polled();
        Counters::add(&ctx.counters.polled, page.records.len());
        self.caught_up = page.records.is_empty() || page.millis_behind == Some(0);
        let mut matched = Vec::with_capacity(page.records.len());
        let mut last_tracked = None;
        for record in page.records {
            if frontier.track(record.sequence_number.clone()).is_err() {
                // Not after the last record tracked: read again after the iterator was renewed.
                continue;
            }
            last_tracked = Some(record.sequence_number.clone());
            if self.skip_before_ms.is_some_and(|start| record.arrival_ms < start) {
                frontier.complete(&record.sequence_number).expect("just tracked");
            } else if record.passes {
                matched.push(record);
            } else {
                Counters::add(&ctx.counters.filtered_out, 1);
                frontier.complete(&record.sequence_number).expect("just tracked");
            }
        }
        if let Some(last) = last_tracked {
            self.position = Position::AfterSequence(last.as_str().to_owned());
        }
        match page.next_iterator {
            Some(next) => {
                self.iterator = Some(next);
                // Caught up: poll at the base rate. Behind: read again at once (the rate limiter
                // keeps us within the shard's read limit).
                self.ready_at = Instant::now() + if self.caught_up { ctx.idle_poll } else { Duration::ZERO };
            }
            None => self.done = true,
        }
        Ok(matched)
    }

    /// What a read error means: try again later (Ok), or stop (the shard is gone). Failed reads are
    /// counted and logged, rate-limited per shard: a warning when a streak begins, then at most
    /// every [`READ_FAILURE_REPORT_EVERY`], as errors once it has lasted [`READ_FAILURE_PERSISTENT`].
    fn failed(&mut self, ctx: &StreamCtx, error: ReadError) -> Result<(), Gone> {
        let shard_id = &self.shard_id;
        match error {
            ReadError::ExpiredIterator => {
                // Routine after a long pause: a fresh iterator from the same position.
                tracing::debug!(uuid = %ctx.uuid, shard_id, %error, "getting a new iterator");
                self.ready_at = Instant::now() + self.backoff.next_delay();
                Ok(())
            }
            ReadError::Throttled(_) | ReadError::Other(_) => {
                Counters::add(&ctx.counters.read_errors, 1);
                ctx.counters.health.poll_failed(error.to_string());
                let delay = self.backoff.next_delay();
                let failures = self.failures.count() + 1;
                match self.failures.failed(Instant::now().into_std()) {
                    Report::Quiet => tracing::debug!(uuid = %ctx.uuid, shard_id, %error, failures, "read failed; retrying"),
                    Report::Warn => tracing::warn!(uuid = %ctx.uuid, shard_id, %error, failures, ?delay, "read failed; retrying"),
                    Report::Error => tracing::error!(uuid = %ctx.uuid, shard_id, %error, failures, ?delay,
                        "reads keep failing; the shard makes no progress until they succeed"),
                }
                self.ready_at = Instant::now() + delay;
                Ok(())
            }
            ReadError::Trimmed(_) => {
                tracing::warn!(uuid = %ctx.uuid, shard_id, %error,
                    "records expired from the stream before they were processed; continuing at TRIM_HORIZON");
                self.position = Position::TrimHorizon;
                Ok(())
            }
            ReadError::NotFound(_) => {
                tracing::warn!(uuid = %ctx.uuid, shard_id, %error, "shard is gone; stopping");
                Err(Gone)
            }
        }
    }
}

pub(super) async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
