//! Delivering one batch of a shard: invoke, and drive the error-handling state machine
//! ([`esm_stream::BatchRetry`]: retries, bisect, record age, partial responses) until every record is
//! final — delivered, or discarded with an on-failure record sent.

use std::time::Duration;

use esm_events::envelope::{Envelope, TumblingWindow};
use esm_events::failure::{FailureCondition, ResponseContext, StreamBatchInfo, StreamFailureRecord};
use esm_events::response::BatchResponse;
use esm_stream::retry::{Backoff as RetryBackoff, Discard, DiscardCondition};
use esm_stream::{Action, BatchRecord, BatchRetry, Outcome, SequenceNumber};
use lambda_invoke::InvocationType;

use super::StreamCtx;
use super::source::StreamRecord;
use crate::backoff::Backoff;
use crate::stats::Counters;

/// Epoch milliseconds now.
pub(super) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// What the last invocation that reached the function answered, for the failure record.
struct LastResponse {
    status: u16,
    executed_version: String,
}

/// How the invocations of a batch are framed and their responses read.
pub(super) enum Framing {
    /// `{"Records":[...]}`; the response may be a partial batch response.
    Records,
    /// The tumbling-window event; `state` is replaced by what each successful invocation returns.
    Window(TumblingWindow),
}

impl Framing {
    fn envelope(&self) -> Envelope {
        match self {
            Framing::Records => Envelope::records(),
            Framing::Window(window) => Envelope::tumbling_window(window).expect("window bounds are valid timestamps"),
        }
    }
}

/// Deliver `records` (one lane's batch, in shard order). Returns how many leading records are final
/// (all of them, unless shutdown interrupted the batch: the rest is delivered again after a restart,
/// never skipped) and the framing, with the window state the function returned last.
pub(super) async fn deliver(
    ctx: &StreamCtx,
    shard_id: &str,
    records: &[StreamRecord],
    mut framing: Framing,
) -> (usize, Framing) {
    let batch: Vec<BatchRecord> = records
        .iter()
        .map(|r| BatchRecord {
            sequence_number: r.sequence_number.clone(),
            arrival_millis: r.arrival_ms,
        })
        .collect();
    let mut machine = BatchRetry::new(ctx.retry.clone(), batch)
        .expect("records of a shard come in increasing sequence order");
    let mut last = LastResponse {
        status: 200,
        executed_version: "$LATEST".to_owned(),
    };
    // Failed invokes in a row: the next invoke waits for AWS's retry schedule.
    let mut failures = 0;
    let mut invoked = false;
    let mut final_end = 0;
    loop {
        match machine.next_action(now_millis()) {
            // Shutdown stops retries, not a batch that was handed out: its first invoke is made.
            Action::Invoke(_) if ctx.cancel.is_cancelled() && invoked => return (final_end, framing),
            Action::Invoke(range) => {
                if failures > 0 && !sleep_unless_cancelled(ctx, RetryBackoff::FUNCTION_ERROR.delay(failures)).await {
                    return (final_end, framing);
                }
                let slice = &records[range];
                let outcome = invoke(ctx, slice, &mut framing, &mut last).await;
                invoked = true;
                match outcome {
                    Outcome::FunctionError | Outcome::InvalidResponse | Outcome::PartialFailure(_) => failures += 1,
                    // Throttles and service errors have their own backoff (Action::Backoff).
                    Outcome::Throttled | Outcome::ServiceError => {}
                    Outcome::Success => failures = 0,
                }
                machine.on_outcome(outcome);
            }
            Action::Backoff(delay) => {
                // Full jitter over the machine's exponential delay.
                let delay = delay.mul_f64(0.5 + rand::random::<f64>() / 2.0);
                if !sleep_unless_cancelled(ctx, delay).await {
                    return (final_end, framing);
                }
            }
            Action::Discard(discard) => {
                let discarded = &records[discard.records.clone()];
                if !send_on_failure(ctx, shard_id, discarded, &discard, &last).await {
                    return (final_end, framing);
                }
            }
            Action::Checkpoint { records, .. } => final_end = records.end,
            Action::Done => {
                if let Some(last) = records.last() {
                    ctx.counters.batch_done(shard_id, last.arrival_ms);
                }
                return (records.len(), framing);
            }
        }
    }
}

/// Sleep; false if shutdown began first.
async fn sleep_unless_cancelled(ctx: &StreamCtx, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = ctx.cancel.cancelled() => false,
    }
}

/// Invoke the function with `records` and translate the answer for the state machine.
async fn invoke(
    ctx: &StreamCtx,
    records: &[StreamRecord],
    framing: &mut Framing,
    last: &mut LastResponse,
) -> Outcome {
    let json: Vec<&[u8]> = records.iter().map(|r| &r.json[..]).collect();
    let payload = framing.envelope().payload(&json);
    match ctx
        .counters
        .track_invoke(ctx.target.invoke(payload, InvocationType::RequestResponse, false))
        .await
    {
        Ok(response) => {
            Counters::add(&ctx.counters.invocations, 1);
            Counters::add(&ctx.counters.invoked, records.len());
            last.status = response.status;
            last.executed_version = response
                .executed_version
                .clone()
                .unwrap_or_else(|| "$LATEST".to_owned());
            if response.function_error.is_some() {
                Counters::add(&ctx.counters.failed_invocations, 1);
                Counters::add(&ctx.counters.failed_invoke_records, records.len());
                return Outcome::FunctionError;
            }
            let in_batch = |id: &str| records.iter().any(|r| r.sequence_number.as_str() == id);
            let read = match framing {
                Framing::Records if !ctx.retry.report_batch_item_failures => Ok(Vec::new()),
                Framing::Records => match esm_events::response::parse_batch_response(&response.payload, in_batch) {
                    BatchResponse::Success => Ok(Vec::new()),
                    BatchResponse::Partial(ids) => Ok(ids),
                    BatchResponse::Invalid(reason) => Err(reason),
                },
                Framing::Window(window) => {
                    let rbif: Option<&dyn Fn(&str) -> bool> =
                        ctx.retry.report_batch_item_failures.then_some(&in_batch);
                    esm_events::response::parse_window_response(&response.payload, rbif).map(|r| {
                        window.state = r.state;
                        r.failed
                    })
                }
            };
            match read {
                Ok(failed) if failed.is_empty() => Outcome::Success,
                Ok(failed) => {
                    Counters::add(&ctx.counters.failed_invoke_records, failed.len());
                    Outcome::PartialFailure(
                        failed.iter().filter_map(|id| SequenceNumber::parse(id).ok()).collect(),
                    )
                }
                Err(reason) => {
                    Counters::add(&ctx.counters.failed_invocations, 1);
                    Counters::add(&ctx.counters.failed_invoke_records, records.len());
                    tracing::warn!(uuid = %ctx.uuid, %reason, "invalid response; whole batch failed");
                    Outcome::InvalidResponse
                }
            }
        }
        Err(lambda_invoke::Error::Throttled { .. }) => {
            Counters::add(&ctx.counters.throttles, 1);
            Outcome::Throttled
        }
        Err(e) => {
            Counters::add(&ctx.counters.invoke_errors, 1);
            tracing::warn!(uuid = %ctx.uuid, error = %e, "invoke did not reach the function; retrying");
            Outcome::ServiceError
        }
    }
}

/// Report discarded records: one on-failure record to the destination, if the mapping has one.
/// Delivery is retried until it succeeds, because the checkpoint moves past the records right after and
/// the record is the only trace of them. False if shutdown began first (the records are then not final).
async fn send_on_failure(
    ctx: &StreamCtx,
    shard_id: &str,
    records: &[StreamRecord],
    discard: &Discard,
    last: &LastResponse,
) -> bool {
    let (Some(first), Some(final_record)) = (records.first(), records.last()) else {
        return true;
    };
    tracing::warn!(
        uuid = %ctx.uuid, shard_id, condition = discard.condition.as_str(), records = records.len(),
        first = %first.sequence_number, last = %final_record.sequence_number, "discarding records"
    );
    let Some(destination) = &ctx.destination else {
        Counters::add(&ctx.counters.dropped, records.len());
        return true;
    };
    let condition = match discard.condition {
        DiscardCondition::RecordAgeExceeded => FailureCondition::RecordAgeExceeded,
        DiscardCondition::RetryAttemptsExhausted => {
            FailureCondition::RetryAttemptsExhausted(ResponseContext {
                status_code: discard.response.map_or(last.status, |r| r.status_code),
                executed_version: last.executed_version.clone(),
                function_error: discard
                    .response
                    .and_then(|r| r.function_error)
                    .map(str::to_owned),
            })
        }
    };
    let record = StreamFailureRecord {
        stream: ctx.source.kind(),
        request_id: uuid::Uuid::new_v4().to_string(),
        function_arn: ctx.function_arn.clone(),
        condition,
        approximate_invoke_count: u64::from(discard.approximate_invoke_count),
        timestamp_ms: now_millis(),
        batch: StreamBatchInfo {
            shard_id: shard_id.to_owned(),
            start_sequence_number: first.sequence_number.as_str().to_owned(),
            end_sequence_number: final_record.sequence_number.as_str().to_owned(),
            approximate_arrival_of_first_record_ms: first.arrival_ms,
            approximate_arrival_of_last_record_ms: final_record.arrival_ms,
            batch_size: records.len() as u64,
            stream_arn: ctx.source.arn().arn.clone(),
        },
    };
    let json: Vec<&[u8]> = records.iter().map(|r| &r.json[..]).collect();
    let payload = Envelope::records().payload(&json);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        match destination.deliver(&record, &payload, &ctx.uuid).await {
            Ok(()) => {
                Counters::add(&ctx.counters.dropped, records.len());
                Counters::add(&ctx.counters.on_failure_delivered, records.len());
                return true;
            }
            Err(e) => {
                tracing::error!(uuid = %ctx.uuid, destination = destination.arn(), error = %e,
                    "on-failure destination delivery failed; retrying");
                if !sleep_unless_cancelled(ctx, backoff.next_delay()).await {
                    return false;
                }
            }
        }
    }
}
