//! SQS mappings (standard and FIFO), with AWS's semantics
//! (<https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html>):
//!
//! * Lanes long-poll the queue (up to 10 messages a receive, 20 s waits) and each assembles one batch at a
//!   time (`BatchSize`, batching window, 6 MB), invokes the function synchronously, then deletes what
//!   succeeded. The number of lanes follows [`scaling`]: at most `ScalingConfig.MaximumConcurrency`.
//! * Messages no filter matches are deleted at once, as AWS does.
//! * A failed batch deletes nothing; its messages reappear after the visibility timeout and the queue's
//!   redrive policy moves them to the dead-letter queue after `maxReceiveCount` receives. The poller never
//!   moves messages itself.
//! * With `ReportBatchItemFailures`, every message not listed in `batchItemFailures` is deleted; an
//!   invalid response fails the whole batch.
//! * FIFO: SQS never hands out a message group while messages of it are in flight, so one batch per group
//!   is in flight at a time and a failed group waits for its own retries while other groups go on. As on
//!   AWS, a partial batch response is taken at its word: a FIFO function should report the failed message
//!   *and every later message of its group*
//!   (<https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html>); what it does not report is deleted.
//! * FIFO and the 6 MB cap: messages received but held back for the next batch belong to the same
//!   in-order unit as the batch before them. When that batch fails (wholly or partly), the held-back
//!   messages of the failed groups are made visible again instead of being invoked, so the group comes
//!   back in order: SQS does not hand them out before the failed messages, which are still in flight.
//! * Throttles and service errors do not reach the function. By default ([`throttle`]) the batch is held
//!   (its messages kept invisible, so no receive is spent) and retried with backoff, for up to
//!   `--sqs-throttle-max-hold`, while the concurrent invocations follow an AIMD limit ([`aimd`]). With
//!   `--sqs-throttle-mode aws` the invoke is retried for up to one visibility timeout, then the messages
//!   are let go to reappear, as on AWS.
//! * The queue's visibility timeout must be at least the function's timeout, as AWS requires when a
//!   mapping is created; it is checked at start and every [`VISIBILITY_RECHECK`] while running.
//! * A lane that fails is restarted ([`lanes`]); the messages it held are made visible at once.

pub mod aimd;
pub(crate) mod client;
mod lanes;
pub(crate) mod record;
pub mod scaling;
pub mod throttle;
pub(crate) mod visibility;

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;
use bytes::Bytes;
use esm_events::envelope::{Envelope, MAX_PAYLOAD_BYTES};
use esm_events::response::BatchResponse;
use lambda_invoke::{InvocationType, Target};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::arn::ArnParts;
use crate::backoff::Backoff;
use crate::batch::{Batcher, Limits};
use crate::config::{Mapping, SourceSettings};
use crate::error::Error;
use crate::health::MappingState;
use crate::stats::Counters;
use client::{Message, Received, SqsClient};
use lanes::{Ended, Lanes};
use scaling::Scaler;
use throttle::{Gate, Next, ThrottleMode};
use visibility::Held;

/// Longest long-poll SQS allows.
const MAX_WAIT_SECONDS: u64 = 20;
/// Most messages one ReceiveMessage returns.
const MAX_RECEIVE: usize = 10;
/// How often a running mapping reads the queue's visibility timeout again.
pub const VISIBILITY_RECHECK: Duration = Duration::from_secs(10);
/// Lambda's smallest function timeout, assumed for an HTTP target given no `--invoke-timeout`
/// (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html>).
const MIN_FUNCTION_TIMEOUT: Duration = Duration::from_secs(1);
/// Attempts at deleting a message whose processing is done.
const DELETE_ATTEMPTS: u32 = 4;

/// A received message waiting in a batch.
#[derive(Debug)]
struct Pending {
    /// The record as it appears in the event, serialized once.
    json: Vec<u8>,
    message_id: String,
    /// Shared with [`Held`], which keeps it while the message is held.
    receipt_handle: Arc<str>,
    /// `MessageGroupId` (FIFO queues).
    group: Option<String>,
}

/// How an invocation of a batch ended, for settling the messages.
enum Outcome {
    /// Delete everything.
    Success,
    /// Delete everything but these message ids.
    Partial(Vec<String>),
    /// Delete nothing: the function failed, answered invalidly, or could not be invoked.
    Failed,
    /// Delete nothing and make the messages visible again at once: the drain deadline came first.
    Abandoned,
}

/// One running SQS mapping.
pub struct SqsMapping {
    uuid: String,
    queue: ArnParts,
    fifo: bool,
    /// For the calls made once in a while (the queue's attributes).
    client: aws_sdk_sqs::Client,
    /// For the calls made per batch: receive, delete, visibility changes.
    wire: Arc<SqsClient>,
    queue_url: String,
    visibility_timeout: Duration,
    function_timeout: Duration,
    target: Target,
    filters: esm_filter::Filters,
    report_batch_item_failures: bool,
    limits: Limits,
    counters: Arc<Counters>,
    held: Held,
    scaler: Mutex<Scaler>,
    throttle: ThrottleMode,
    /// The AIMD limit on concurrent invocations ([`ThrottleMode::Hold`] only).
    gate: Option<Gate>,
    /// Fires at the drain deadline: batches still being invoked are let go (see [`Self::abandon_on`]).
    abandon: CancellationToken,
}

/// The URL of `queue`, by name and owner account. A missing queue fails with AWS's words for a mapping
/// whose queue does not exist.
pub(crate) async fn queue_url(client: &aws_sdk_sqs::Client, queue: &ArnParts) -> Result<String, Error> {
    client
        .get_queue_url()
        .queue_name(&queue.name)
        .queue_owner_aws_account_id(&queue.account)
        .send()
        .await
        .map(|out| out.queue_url().unwrap_or_default().to_owned())
        .map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_queue_does_not_exist()) {
                Error::Source(format!(
                    "{}: Error occurred while ReceiveMessage. SQS Error Code: \
                     AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue does not exist.",
                    queue.arn
                ))
            } else {
                Error::Source(format!("{}: GetQueueUrl failed: {}", queue.arn, DisplayErrorContext(&e)))
            }
        })
}

impl SqsMapping {
    /// Look the queue up and prepare the mapping. Fails, with AWS's wording, if the queue does not exist or
    /// its visibility timeout is shorter than the function's timeout.
    pub async fn connect(
        mapping: Mapping,
        sdk_config: &aws_config::SdkConfig,
        target: Target,
        counters: Arc<Counters>,
    ) -> Result<SqsMapping, Error> {
        let SourceSettings::Sqs(settings) = &mapping.settings else {
            unreachable!("SqsMapping::connect is only called for SQS mappings");
        };
        let queue = mapping.source.parts().clone();
        let client = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk_config)
                .region(aws_sdk_sqs::config::Region::new(queue.region.clone()))
                .build(),
        );
        let queue_url = queue_url(&client, &queue).await?;
        let visibility_timeout = read_visibility_timeout(&client, &queue_url)
            .await
            .map_err(|e| Error::Source(format!("{}: {e}", queue.arn)))?;
        let wire = SqsClient::new(sdk_config, &queue.region, queue_url.clone())
            .await
            .map_err(|e| Error::Source(format!("{}: {e}", queue.arn)))?;
        let function_timeout = function_timeout(&target).await?;
        check_visibility_timeout(visibility_timeout, function_timeout)
            .map_err(|e| Error::Source(format!("{}: {e}", queue.arn)))?;
        Ok(SqsMapping {
            uuid: mapping.uuid.clone(),
            fifo: mapping.source.is_fifo_queue(),
            queue,
            client,
            wire: Arc::new(wire),
            queue_url,
            visibility_timeout,
            function_timeout,
            target,
            filters: mapping.filters,
            report_batch_item_failures: mapping.report_batch_item_failures,
            limits: Limits {
                max_records: mapping.batch_size as usize,
                max_payload_bytes: MAX_PAYLOAD_BYTES,
                window: mapping.batching_window,
                envelope: Envelope::records(),
            },
            counters,
            held: Held::new(visibility_timeout),
            scaler: Mutex::new(Scaler::new(settings.maximum_concurrency, std::time::Instant::now())),
            throttle: ThrottleMode::Aws,
            gate: None,
            abandon: CancellationToken::new(),
        }
        .throttle_mode(ThrottleMode::default()))
    }

    /// How throttles and service errors are handled (default: [`ThrottleMode::Hold`]).
    pub fn throttle_mode(mut self, mode: ThrottleMode) -> SqsMapping {
        self.gate = match mode {
            ThrottleMode::Aws => None,
            ThrottleMode::Hold { .. } => Some(Gate::new(self.scaler().max())),
        };
        self.throttle = mode;
        self
    }

    /// When `abandon` fires (the drain deadline, after `cancel` of [`Self::run`]), invocations still
    /// running are given up and their messages made visible again at once (ChangeMessageVisibility 0),
    /// so that another poller, or this one after a restart, receives them without waiting for the
    /// visibility timeout. Without it, `run` waits for every invocation to end.
    pub fn abandon_on(mut self, abandon: CancellationToken) -> SqsMapping {
        self.abandon = abandon;
        self
    }

    /// Poll and invoke until `cancel` fires (or the queue's visibility timeout becomes too short), then
    /// finish the batches in hand and return.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        tracing::info!(
            uuid = %self.uuid, queue = %self.queue.arn, fifo = self.fifo, function = %self.target.describe(),
            visibility_timeout_s = self.visibility_timeout.as_secs(), "SQS mapping started"
        );
        // This mapping's own stop, also fired by the visibility check.
        let cancel = cancel.child_token();
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(self.held.clone().run(self.wire.clone(), heartbeat_stop.clone()));
        let watch = tokio::spawn(self.clone().watch_visibility_timeout(cancel.clone()));
        let (grow_tx, mut grow_rx) = mpsc::unbounded_channel();
        let mut lanes = Lanes::new();
        for _ in 0..self.scaler().lanes() {
            lanes.spawn(self.clone().lane(cancel.clone(), grow_tx.clone()));
        }
        loop {
            tokio::select! {
                Some(()) = grow_rx.recv() => {
                    lanes.spawn(self.clone().lane(cancel.clone(), grow_tx.clone()));
                }
                ended = lanes.next() => match ended {
                    None => break,
                    Some(Ended::Normally) => {}
                    Some(Ended::Failed { lane, reason }) => {
                        let handles = self.held.release_lane(lane);
                        tracing::error!(uuid = %self.uuid, %reason, released = handles.len(),
                            "SQS lane failed; its messages are made visible again and the lane restarts");
                        self.counters.worker_failed(reason);
                        visibility::reveal(&self.wire, &handles).await;
                        if !cancel.is_cancelled() {
                            lanes.restart(self.clone().lane(cancel.clone(), grow_tx.clone()));
                        }
                    }
                },
            }
        }
        cancel.cancel();
        heartbeat_stop.cancel();
        for (task, result) in [("visibility heartbeat", heartbeat.await), ("visibility check", watch.await)] {
            if let Err(e) = result {
                tracing::error!(uuid = %self.uuid, error = %e, "{task} failed");
            }
        }
        tracing::info!(uuid = %self.uuid, "SQS mapping stopped");
    }

    /// Read the queue's visibility timeout every [`VISIBILITY_RECHECK`]; when it has become shorter than
    /// the function's timeout, stop the mapping (`stop`) and mark it failed with AWS's wording: from then
    /// on a batch could reappear and run twice while the function still works on it.
    async fn watch_visibility_timeout(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(VISIBILITY_RECHECK) => {}
                _ = stop.cancelled() => return,
            }
            let timeout = match read_visibility_timeout(&self.client, &self.queue_url).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(uuid = %self.uuid, error = %e, "cannot re-check the visibility timeout");
                    continue;
                }
            };
            if let Err(reason) = check_visibility_timeout(timeout, self.function_timeout) {
                tracing::error!(uuid = %self.uuid, queue = %self.queue.arn, %reason,
                    "the queue's visibility timeout changed: mapping stopped (fix the queue, then restart)");
                self.counters.health.set_state(MappingState::Failed(reason));
                stop.cancel();
                return;
            }
        }
    }

    fn scaler(&self) -> std::sync::MutexGuard<'_, Scaler> {
        self.scaler.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One lane: gather a batch, invoke, settle; repeat. Stops on shutdown once it holds nothing, or when
    /// the scaler says there are more lanes than work.
    async fn lane(self: Arc<Self>, cancel: CancellationToken, grow: mpsc::UnboundedSender<()>) {
        let mut carry = VecDeque::new();
        loop {
            let batch = self.gather(&mut carry, &cancel, &grow).await;
            if batch.is_empty() {
                if cancel.is_cancelled() || self.scaler().on_slack() {
                    return;
                }
                continue;
            }
            let (throttled, failed_groups) = self.process(batch, &cancel).await;
            if !failed_groups.is_empty() {
                self.release_failed_groups(&mut carry, &failed_groups).await;
            }
            // AWS mode retires a throttled lane; hold mode keeps as many lanes as the AIMD limit.
            let retire = match self.gate {
                None => throttled && carry.is_empty() && self.scaler().on_slack(),
                Some(_) => carry.is_empty() && self.scaler().on_batch_done(),
            };
            if retire {
                return;
            }
        }
    }

    /// FIFO: messages held back for the next batch that belong to a group whose batch failed must not
    /// overtake the failed messages. They are made visible again, in order; SQS hands them out after the
    /// failed ones, which are still in flight until their visibility timeout ends.
    async fn release_failed_groups(&self, carry: &mut VecDeque<(Pending, usize)>, failed_groups: &HashSet<String>) {
        let (released, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(carry)
            .into_iter()
            .partition(|(p, _)| p.group.as_ref().is_some_and(|g| failed_groups.contains(g)));
        *carry = kept;
        if released.is_empty() {
            return;
        }
        let handles: Vec<Arc<str>> = released.into_iter().map(|(p, _)| p.receipt_handle).collect();
        tracing::debug!(uuid = %self.uuid, messages = handles.len(), "released held-back messages of failed FIFO groups");
        self.held.release(handles.iter().map(AsRef::as_ref));
        visibility::reveal(&self.wire, &handles).await;
    }

    /// Gather records until the batch is ready. Returns an empty batch when the queue had nothing.
    /// Received messages that do not fit stay in `carry` for the next batch.
    async fn gather(
        &self,
        carry: &mut VecDeque<(Pending, usize)>,
        cancel: &CancellationToken,
        grow: &mpsc::UnboundedSender<()>,
    ) -> Vec<Pending> {
        let mut batcher = Batcher::new(self.limits.clone());
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        batcher.fill_from(carry, std::time::Instant::now());
        while !batcher.is_ready(std::time::Instant::now()) && carry.is_empty() && !cancel.is_cancelled() {
            let wait = match batcher.deadline() {
                None => MAX_WAIT_SECONDS,
                Some(deadline) => deadline
                    .saturating_duration_since(std::time::Instant::now())
                    .as_secs_f64()
                    .ceil() as u64,
            }
            .min(MAX_WAIT_SECONDS);
            let want = batcher.room().min(MAX_RECEIVE);
            // SQS starts a message's visibility timeout somewhere between this instant and the answer: count
            // from the earliest, so the heartbeat is never late however long the answer takes to arrive.
            let sent_at = Instant::now();
            let answer = tokio::select! {
                r = self.wire.receive(want, wait, None) => r,
                _ = cancel.cancelled() => break,
            };
            let messages = match Received::messages_of(&answer).map_err(|e| format!("ReceiveMessage failed: {e}")) {
                Ok(m) => {
                    backoff.reset();
                    self.counters.health.polled();
                    m
                }
                Err(e) => {
                    tracing::warn!(uuid = %self.uuid, error = %e, "ReceiveMessage failed; retrying");
                    self.counters.health.poll_failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => continue,
                        _ = cancel.cancelled() => break,
                    }
                }
            };
            if messages.is_empty() && batcher.is_empty() {
                break;
            }
            if self.scaler().on_receive(want, messages.len(), std::time::Instant::now()) {
                // Fails only while `run` is returning, when no lane is wanted any more.
                grow.send(()).ok();
            }
            tracing::debug!(uuid = %self.uuid, received = messages.len(), batch = batcher.len(), "received");
            Counters::add(&self.counters.polled, messages.len());
            self.counters
                .received(messages.iter().filter_map(|m| m.attributes.sent_timestamp.as_deref()?.parse().ok()));
            self.admit(messages, sent_at, carry).await;
            batcher.fill_from(carry, std::time::Instant::now());
        }
        batcher.take()
    }

    /// Hold received messages, drop (delete) those no filter matches, queue the rest for batching.
    async fn admit(&self, messages: Vec<Message<'_>>, received_at: Instant, carry: &mut VecDeque<(Pending, usize)>) {
        let mut filtered_out = Vec::new();
        // Each record is written here, then copied out at its exact length: one allocation per
        // record instead of a vector grown (and copied) several times while it is written.
        let mut scratch = Vec::new();
        for message in messages {
            let record = record::to_record(message, &self.queue);
            let receipt_handle: Arc<str> = Arc::from(record.receipt_handle.as_str());
            self.held.hold(&receipt_handle, received_at);
            if !self.filters.is_empty()
                && !self.filters.matches(&serde_json::to_value(&record).expect("records serialize"))
            {
                filtered_out.push(receipt_handle);
                continue;
            }
            scratch.clear();
            serde_json::to_writer(&mut scratch, &record).expect("records serialize");
            let json = scratch.clone();
            let len = json.len();
            carry.push_back((
                Pending {
                    json,
                    message_id: record.message_id.into_owned(),
                    receipt_handle,
                    group: record.attributes.message_group_id.map(Cow::into_owned),
                },
                len,
            ));
        }
        if !filtered_out.is_empty() {
            Counters::add(&self.counters.filtered_out, filtered_out.len());
            let handles: Vec<&str> = filtered_out.iter().map(|h| h.as_ref()).collect();
            self.delete(&handles).await;
        }
    }

    /// Invoke the function with `batch` and settle its messages. Returns whether the function throttled,
    /// and the message groups of the messages that failed (FIFO).
    async fn process(&self, batch: Vec<Pending>, cancel: &CancellationToken) -> (bool, HashSet<String>) {
        tracing::debug!(uuid = %self.uuid, records = batch.len(), "invoking");
        let records: Vec<&[u8]> = batch.iter().map(|p| p.json.as_slice()).collect();
        // Bytes: each attempt (throttle retries) shares the payload instead of copying it.
        let payload = Bytes::from(self.limits.envelope.payload(&records));
        let ids: HashSet<&str> = batch.iter().map(|p| p.message_id.as_str()).collect();
        let started = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut throttled = false;
        let outcome = loop {
            let invoked = tokio::select! {
                biased;
                _ = self.abandon.cancelled() => break Outcome::Abandoned,
                invoked = self.invoke(payload.clone()) => invoked,
            };
            match invoked {
                Ok(response) => {
                    Counters::add(&self.counters.invocations, 1);
                    Counters::add(&self.counters.invoked, batch.len());
                    break self.read_response(&response, &ids);
                }
                Err(e) => {
                    if matches!(e, lambda_invoke::Error::Throttled { .. }) {
                        throttled = true;
                        Counters::add(&self.counters.throttles, 1);
                    } else {
                        Counters::add(&self.counters.invoke_errors, 1);
                    }
                    let delay = self.throttle.retry_delay(&e, &mut backoff);
                    let held_for = started.elapsed().saturating_add(delay);
                    match self.throttle.next(&e, held_for, self.visibility_timeout, cancel.is_cancelled()) {
                        Next::Retry => {
                            tracing::debug!(uuid = %self.uuid, error = %e, ?delay, "invoke did not reach the function; retrying");
                            tokio::select! {
                                biased;
                                _ = self.abandon.cancelled() => break Outcome::Abandoned,
                                _ = tokio::time::sleep(delay) => continue,
                            }
                        }
                        Next::LetGo => {
                            tracing::warn!(uuid = %self.uuid, error = %e, messages = batch.len(),
                                "invoke failed; messages will reappear after the visibility timeout");
                            break Outcome::Failed;
                        }
                        Next::Release => {
                            Counters::add(&self.counters.throttle_releases, batch.len());
                            tracing::warn!(uuid = %self.uuid, error = %e, messages = batch.len(), held_s = started.elapsed().as_secs(),
                                "the function did not run for the longest hold (--sqs-throttle-max-hold); messages will reappear after the visibility timeout");
                            break Outcome::Failed;
                        }
                        Next::Abandon => break Outcome::Abandoned,
                    }
                }
            }
        };
        let failed_groups = self.settle(batch, outcome).await;
        (throttled, failed_groups)
    }

    /// One invoke request, within the AIMD limit in hold mode.
    async fn invoke(&self, payload: Bytes) -> Result<lambda_invoke::Response, lambda_invoke::Error> {
        let permit = match &self.gate {
            Some(gate) => Some(gate.enter().await),
            None => None,
        };
        let result = self
            .counters
            .track_invoke(self.target.invoke(payload, InvocationType::RequestResponse, false))
            .await;
        if let Some(limit) = permit.and_then(|p| p.finish(&result)) {
            tracing::debug!(uuid = %self.uuid, limit, "concurrency limit changed");
            self.scaler().set_ceiling(limit);
        }
        result
    }

    fn read_response(&self, response: &lambda_invoke::Response, ids: &HashSet<&str>) -> Outcome {
        if let Some(kind) = &response.function_error {
            Counters::add(&self.counters.failed_invocations, 1);
            tracing::info!(uuid = %self.uuid, function_error = %kind,
                body = %lambda_invoke::excerpt(&response.payload), "function failed; batch not deleted");
            return Outcome::Failed;
        }
        if !self.report_batch_item_failures {
            return Outcome::Success;
        }
        match esm_events::response::parse_batch_response(&response.payload, |id| ids.contains(id)) {
            BatchResponse::Success => Outcome::Success,
            BatchResponse::Partial(failed) => Outcome::Partial(failed),
            BatchResponse::Invalid(reason) => {
                Counters::add(&self.counters.failed_invocations, 1);
                tracing::warn!(uuid = %self.uuid, %reason, "invalid partial batch response; whole batch failed");
                Outcome::Failed
            }
        }
    }

    /// Delete what succeeded; let the rest go so that it reappears after the visibility timeout (at once
    /// if abandoned). Returns the groups of the messages let go.
    async fn settle(&self, batch: Vec<Pending>, outcome: Outcome) -> HashSet<String> {
        let keep: HashSet<&str> = match &outcome {
            Outcome::Abandoned => return self.make_visible(&batch).await,
            Outcome::Success => HashSet::new(),
            Outcome::Failed => batch.iter().map(|p| p.message_id.as_str()).collect(),
            Outcome::Partial(failed) => failed.iter().map(String::as_str).collect(),
        };
        let (kept, done): (Vec<&Pending>, Vec<&Pending>) =
            batch.iter().partition(|p| keep.contains(p.message_id.as_str()));
        Counters::add(&self.counters.failed_invoke_records, kept.len());
        self.held.release(kept.iter().map(|p| &*p.receipt_handle));
        let receipts: Vec<&str> = done.iter().map(|p| &*p.receipt_handle).collect();
        self.delete(&receipts).await;
        kept.iter().filter_map(|p| p.group.clone()).collect()
    }

    /// Stop holding an abandoned batch and make its messages visible again at once
    /// (ChangeMessageVisibility 0). Returns their groups, so that held-back FIFO messages of the same
    /// groups are let go too.
    async fn make_visible(&self, batch: &[Pending]) -> HashSet<String> {
        self.held.release(batch.iter().map(|p| &*p.receipt_handle));
        self.counters.health.abandoned(batch.len());
        let handles: Vec<Arc<str>> = batch.iter().map(|p| p.receipt_handle.clone()).collect();
        visibility::reveal(&self.wire, &handles).await;
        batch.iter().filter_map(|p| p.group.clone()).collect()
    }

    /// Delete messages by receipt handle, 10 per call, and stop holding them. A delete that fails for a
    /// reason worth retrying (the call failed, or SQS reports its own fault) is retried while the message
    /// is still held, so that a processed message is not delivered again for a passing error.
    async fn delete(&self, receipt_handles: &[&str]) {
        for chunk in receipt_handles.chunks(10) {
            let mut pending = chunk.to_vec();
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
            for attempt in 1..=DELETE_ATTEMPTS {
                let last = attempt == DELETE_ATTEMPTS;
                pending = self.delete_once(&pending, last).await;
                if pending.is_empty() || last {
                    break;
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
            self.held.release(chunk.iter().copied());
        }
    }

    /// One `DeleteMessageBatch`; returns the receipt handles worth another attempt.
    async fn delete_once<'a>(&self, handles: &[&'a str], last: bool) -> Vec<&'a str> {
        let out = match self.wire.delete_batch(handles).await {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(uuid = %self.uuid, error = %e, last,
                    "DeleteMessageBatch failed{}", if last { "; the messages will be delivered again" } else { "; retrying" });
                return handles.to_vec();
            }
        };
        Counters::add(&self.counters.deleted, out.successful.len());
        let mut retry = Vec::new();
        for failed in &out.failed {
            let again = !failed.sender_fault && !last;
            tracing::warn!(uuid = %self.uuid, code = %failed.code, message = ?failed.message, retrying = again,
                "DeleteMessageBatch entry failed");
            if let Some(handle) = failed.id.parse::<usize>().ok().and_then(|i| handles.get(i)).filter(|_| again) {
                retry.push(*handle);
            }
        }
        retry
    }
}

/// The queue's `VisibilityTimeout` attribute.
async fn read_visibility_timeout(client: &aws_sdk_sqs::Client, queue_url: &str) -> Result<Duration, String> {
    let attributes = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .map_err(|e| format!("GetQueueAttributes failed: {}", DisplayErrorContext(&e)))?;
    attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .ok_or_else(|| "GetQueueAttributes returned no VisibilityTimeout".to_owned())
}

/// The function's timeout: Lambda's `GetFunctionConfiguration`, or for an HTTP target the `--invoke-timeout`
/// given (Lambda's minimum, 1 s, when none was). A function that does not exist stops the mapping; if the
/// timeout cannot be read for another reason (no permission, endpoint down), the minimum is assumed.
async fn function_timeout(target: &Target) -> Result<Duration, Error> {
    match target.function_timeout().await {
        Ok(timeout) => Ok(timeout.unwrap_or(MIN_FUNCTION_TIMEOUT)),
        Err(lambda_invoke::Error::Client { status: 404, message, .. }) => {
            Err(Error::Source(format!("{}: {message}", target.describe())))
        }
        Err(e) => {
            tracing::warn!(function = %target.describe(), error = %e,
                "cannot read the function's timeout (GetFunctionConfiguration); assuming {}s", MIN_FUNCTION_TIMEOUT.as_secs());
            Ok(MIN_FUNCTION_TIMEOUT)
        }
    }
}

/// AWS refuses an SQS mapping whose queue's visibility timeout is shorter than the function's timeout,
/// with this message (`InvalidParameterValueException`); seconds are whole, a fraction counts as a second.
fn check_visibility_timeout(visibility_timeout: Duration, function_timeout: Duration) -> Result<(), String> {
    let ceil_secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let (queue, function) = (ceil_secs(visibility_timeout), ceil_secs(function_timeout));
    if queue < function {
        Err(format!("Queue visibility timeout: {queue} seconds is less than Function timeout: {function} seconds"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_timeout_must_cover_the_function_timeout() {
        let s = Duration::from_secs;
        assert_eq!(
            check_visibility_timeout(s(30), s(60)),
            Err("Queue visibility timeout: 30 seconds is less than Function timeout: 60 seconds".to_owned())
        );
        assert_eq!(
            check_visibility_timeout(s(0), s(3)),
            Err("Queue visibility timeout: 0 seconds is less than Function timeout: 3 seconds".to_owned())
        );
        assert_eq!(check_visibility_timeout(s(60), s(60)), Ok(()));
        assert_eq!(check_visibility_timeout(s(43200), s(900)), Ok(()));
        assert!(check_visibility_timeout(s(2), Duration::from_millis(2500)).is_err(), "2.5 s counts as 3");
    }
}
