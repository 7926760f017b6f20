//! SQS mappings (standard and FIFO), with AWS's semantics (esm-semantics.md §2.2, §3.4–3.6, §7.1):
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
//!   *and every later message of its group* (esm-semantics.md §3.5); what it does not report is deleted.
//! * Throttles and service errors do not reach the function: the invoke is retried with backoff for up to
//!   one visibility timeout, then the messages are let go to reappear.

mod record;
pub mod scaling;
mod visibility;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName,
    QueueAttributeName,
};
use esm_events::envelope::{Envelope, MAX_PAYLOAD_BYTES};
use esm_events::response::BatchResponse;
use lambda_invoke::{InvocationType, Target};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::arn::ArnParts;
use crate::backoff::Backoff;
use crate::batch::{Batcher, Limits};
use crate::config::{Mapping, SourceSettings};
use crate::error::Error;
use crate::stats::Counters;
use scaling::Scaler;
use visibility::Held;

/// Longest long-poll SQS allows.
const MAX_WAIT_SECONDS: u64 = 20;
/// Most messages one ReceiveMessage returns.
const MAX_RECEIVE: usize = 10;

/// A received message waiting in a batch.
#[derive(Debug)]
struct Pending {
    /// The record as it appears in the event, serialized once.
    json: Vec<u8>,
    message_id: String,
    receipt_handle: String,
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
    client: aws_sdk_sqs::Client,
    queue_url: String,
    visibility_timeout: Duration,
    target: Target,
    filters: esm_filter::Filters,
    report_batch_item_failures: bool,
    limits: Limits,
    counters: Arc<Counters>,
    held: Held,
    scaler: Mutex<Scaler>,
    /// Fires at the drain deadline: batches still being invoked are let go (see [`Self::abandon_on`]).
    abandon: CancellationToken,
}

impl SqsMapping {
    /// Look the queue up and prepare the mapping. Fails, with AWS's wording, if the queue does not exist.
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
        let queue_url = client
            .get_queue_url()
            .queue_name(&queue.name)
            .queue_owner_aws_account_id(&queue.account)
            .send()
            .await
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
            })?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        let attributes = client
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| Error::Source(format!("{}: GetQueueAttributes failed: {}", queue.arn, DisplayErrorContext(&e))))?;
        let visibility_timeout = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(30));
        Ok(SqsMapping {
            uuid: mapping.uuid.clone(),
            fifo: mapping.source.is_fifo_queue(),
            queue,
            client,
            queue_url,
            visibility_timeout,
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
            abandon: CancellationToken::new(),
        })
    }

    /// When `abandon` fires (the drain deadline, after `cancel` of [`Self::run`]), invocations still
    /// running are given up and their messages made visible again at once (ChangeMessageVisibility 0),
    /// so that another poller, or this one after a restart, receives them without waiting for the
    /// visibility timeout. Without it, `run` waits for every invocation to end.
    pub fn abandon_on(mut self, abandon: CancellationToken) -> SqsMapping {
        self.abandon = abandon;
        self
    }

    /// Poll and invoke until `cancel` fires, then finish the batches in hand and return.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        tracing::info!(
            uuid = %self.uuid, queue = %self.queue.arn, fifo = self.fifo, function = %self.target.describe(),
            visibility_timeout_s = self.visibility_timeout.as_secs(), "SQS mapping started"
        );
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(self.held.clone().run(
            self.client.clone(),
            self.queue_url.clone(),
            heartbeat_stop.clone(),
        ));
        let (grow_tx, mut grow_rx) = mpsc::unbounded_channel();
        let mut lanes = JoinSet::new();
        for _ in 0..self.scaler().lanes() {
            lanes.spawn(self.clone().lane(cancel.clone(), grow_tx.clone()));
        }
        loop {
            tokio::select! {
                Some(()) = grow_rx.recv() => {
                    lanes.spawn(self.clone().lane(cancel.clone(), grow_tx.clone()));
                }
                joined = lanes.join_next() => match joined {
                    None => break,
                    Some(Err(e)) => tracing::error!(uuid = %self.uuid, error = %e, "SQS lane failed"),
                    Some(Ok(())) => {}
                },
            }
        }
        heartbeat_stop.cancel();
        if let Err(e) = heartbeat.await {
            tracing::error!(uuid = %self.uuid, error = %e, "visibility heartbeat failed");
        }
        tracing::info!(uuid = %self.uuid, "SQS mapping stopped");
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
            let throttled = self.process(batch, &cancel).await;
            if throttled && carry.is_empty() && self.scaler().on_slack() {
                return;
            }
        }
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
            let received = tokio::select! {
                r = self.receive(want, wait) => r,
                _ = cancel.cancelled() => break,
            };
            let messages = match received {
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
            if messages.len() == MAX_RECEIVE && self.scaler().on_backlog(std::time::Instant::now()) {
                // Fails only while `run` is returning, when no lane is wanted any more.
                grow.send(()).ok();
            }
            tracing::debug!(uuid = %self.uuid, received = messages.len(), batch = batcher.len(), "received");
            Counters::add(&self.counters.polled, messages.len());
            self.counters.received(messages.iter().filter_map(|m| {
                m.attributes()?.get(&MessageSystemAttributeName::SentTimestamp)?.parse().ok()
            }));
            self.admit(messages, carry).await;
            batcher.fill_from(carry, std::time::Instant::now());
        }
        batcher.take()
    }

    async fn receive(&self, max: usize, wait_seconds: u64) -> Result<Vec<Message>, String> {
        self.client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(wait_seconds as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map(|out| out.messages.unwrap_or_default())
            .map_err(|e| DisplayErrorContext(&e).to_string())
    }

    /// Hold received messages, drop (delete) those no filter matches, queue the rest for batching.
    async fn admit(&self, messages: Vec<Message>, carry: &mut VecDeque<(Pending, usize)>) {
        let received_at = Instant::now();
        let mut filtered_out = Vec::new();
        for message in &messages {
            let record = record::to_record(message, &self.queue);
            self.held.hold(&record.receipt_handle, received_at);
            if !self.filters.is_empty()
                && !self.filters.matches(&serde_json::to_value(&record).expect("records serialize"))
            {
                filtered_out.push(record.receipt_handle);
                continue;
            }
            let json = serde_json::to_vec(&record).expect("records serialize");
            let len = json.len();
            carry.push_back((
                Pending {
                    json,
                    message_id: record.message_id,
                    receipt_handle: record.receipt_handle,
                },
                len,
            ));
        }
        if !filtered_out.is_empty() {
            Counters::add(&self.counters.filtered_out, filtered_out.len());
            self.delete(&filtered_out).await;
        }
    }

    /// Invoke the function with `batch` and settle its messages. Returns true if the function throttled.
    async fn process(&self, batch: Vec<Pending>, cancel: &CancellationToken) -> bool {
        tracing::debug!(uuid = %self.uuid, records = batch.len(), "invoking");
        let records: Vec<&[u8]> = batch.iter().map(|p| p.json.as_slice()).collect();
        let payload = self.limits.envelope.payload(&records);
        let ids: HashSet<&str> = batch.iter().map(|p| p.message_id.as_str()).collect();
        let started = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut throttled = false;
        let outcome = loop {
            let invoked = tokio::select! {
                biased;
                _ = self.abandon.cancelled() => break Outcome::Abandoned,
                invoked = self
                    .counters
                    .track_invoke(self.target.invoke(payload.clone(), InvocationType::RequestResponse, false)) => invoked,
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
                    let delay = match &e {
                        lambda_invoke::Error::Throttled { retry_after: Some(d), .. } => *d,
                        _ => backoff.next_delay(),
                    };
                    if e.is_retryable()
                        && !cancel.is_cancelled()
                        && started.elapsed() + delay < self.visibility_timeout
                    {
                        tracing::debug!(uuid = %self.uuid, error = %e, ?delay, "invoke did not reach the function; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    tracing::warn!(uuid = %self.uuid, error = %e, messages = batch.len(),
                        "invoke failed; messages will reappear after the visibility timeout");
                    break Outcome::Failed;
                }
            }
        };
        self.settle(batch, outcome).await;
        throttled
    }

    fn read_response(&self, response: &lambda_invoke::Response, ids: &HashSet<&str>) -> Outcome {
        if let Some(kind) = &response.function_error {
            Counters::add(&self.counters.failed_invocations, 1);
            tracing::info!(uuid = %self.uuid, function_error = %kind,
                body = %String::from_utf8_lossy(&response.payload), "function failed; batch not deleted");
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

    /// Delete what succeeded; let the rest go so that it reappears after the visibility timeout (at
    /// once if abandoned).
    async fn settle(&self, batch: Vec<Pending>, outcome: Outcome) {
        let keep: HashSet<&str> = match &outcome {
            Outcome::Abandoned => return self.make_visible(&batch).await,
            Outcome::Success => HashSet::new(),
            Outcome::Failed => batch.iter().map(|p| p.message_id.as_str()).collect(),
            Outcome::Partial(failed) => failed.iter().map(String::as_str).collect(),
        };
        let (kept, done): (Vec<&Pending>, Vec<&Pending>) =
            batch.iter().partition(|p| keep.contains(p.message_id.as_str()));
        Counters::add(&self.counters.failed_invoke_records, kept.len());
        self.held.release(kept.iter().map(|p| p.receipt_handle.as_str()));
        let receipts: Vec<String> = done.iter().map(|p| p.receipt_handle.clone()).collect();
        self.delete(&receipts).await;
    }

    /// Stop holding an abandoned batch and make its messages visible again at once
    /// (ChangeMessageVisibility 0), 10 per call. A message this fails for reappears after its
    /// visibility timeout instead.
    async fn make_visible(&self, batch: &[Pending]) {
        self.held.release(batch.iter().map(|p| p.receipt_handle.as_str()));
        self.counters.health.abandoned(batch.len());
        for chunk in batch.chunks(10) {
            let entries = chunk.iter().enumerate().map(|(i, pending)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&pending.receipt_handle)
                    .visibility_timeout(0)
                    .build()
                    .expect("id and receipt handle are set")
            });
            let changed = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries.collect()))
                .send()
                .await;
            match changed {
                Ok(out) if out.failed().is_empty() => {}
                Ok(out) => tracing::warn!(uuid = %self.uuid, failed = out.failed().len(),
                    "ChangeMessageVisibilityBatch entries failed; those messages reappear after the visibility timeout"),
                Err(e) => tracing::warn!(uuid = %self.uuid, error = %DisplayErrorContext(&e),
                    "ChangeMessageVisibilityBatch failed; the messages reappear after the visibility timeout"),
            }
        }
    }

    /// Delete messages by receipt handle, 10 per call, and stop holding them.
    async fn delete(&self, receipt_handles: &[String]) {
        for chunk in receipt_handles.chunks(10) {
            let entries = chunk.iter().enumerate().map(|(i, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .expect("id and receipt handle are set")
            });
            match self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries.collect()))
                .send()
                .await
            {
                Ok(out) => {
                    Counters::add(&self.counters.deleted, out.successful().len());
                    for failed in out.failed() {
                        tracing::warn!(uuid = %self.uuid, code = failed.code(), message = ?failed.message(),
                            "DeleteMessageBatch entry failed; the message will be delivered again");
                    }
                }
                Err(e) => tracing::warn!(uuid = %self.uuid, error = %DisplayErrorContext(&e),
                    "DeleteMessageBatch failed; the messages will be delivered again"),
            }
            self.held.release(chunk.iter().map(String::as_str));
        }
    }
}
