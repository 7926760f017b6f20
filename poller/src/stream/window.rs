//! Tumbling windows (`TumblingWindowInSeconds`, docs/aws-reference.md#tumbling-windows): records are grouped into
//! epoch-aligned windows by arrival time; each invocation carries the window, the state the function
//! returned last, and the shard; when a window closes (a later record, the clock once caught up, or the
//! shard's end) a final invocation with no records and `isFinalInvokeForWindow: true` is made, retried
//! until it succeeds. Only then are the window's records checkpointed, so the state is never lost
//! with its records already past the checkpoint. One batch at a time per shard (the window state is
//! sequential), whatever the `ParallelizationFactor`.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use esm_events::envelope::{Envelope, TumblingWindow};
use esm_stream::window::MAX_STATE_BYTES;
use esm_stream::{Frontier, SequenceNumber, ShardPosition, Window, WindowStep, WindowTracker};
use lambda_invoke::InvocationType;
use serde_json::{Map, Value};

use super::deliver::{Framing, deliver, now_millis};
use super::shard::{Exit, Reader, ShardWorker, start_position};
use super::source::StreamRecord;
use crate::backoff::Backoff;
use crate::stats::Counters;

type State = Map<String, Value>;

pub(super) async fn run(mut worker: ShardWorker) -> Exit {
    let ctx = worker.ctx.clone();
    let shard_id = worker.lease.lease_key.clone();
    let seconds = ctx.tumbling_window.map_or(0, |w| w.as_secs()) as u32;
    let mut tracker: WindowTracker<State> = WindowTracker::new(seconds).expect("validated TumblingWindowInSeconds");
    let (position, checkpoint) = start_position(&ctx, &worker.start);
    let mut frontier = Frontier::new(checkpoint);
    let mut reader = Reader::new(&ctx, shard_id.clone(), position);
    let mut pending: VecDeque<StreamRecord> = VecDeque::new();
    // Delivered records of the open window: final (checkpointable) only after its final invoke.
    let mut delivered: Vec<SequenceNumber> = Vec::new();
    let read_ahead = (ctx.batch_size * 2).clamp(100, 20_000);
    // When the last read was sent: a caught-up read proves the shard read up to then.
    let mut last_read_at = now_millis();

    loop {
        if ctx.cancel.is_cancelled() {
            if let Err(exit) = worker.checkpoint(&mut frontier).await {
                return exit;
            }
            return worker.release().await;
        }
        let arrivals: Vec<i64> = pending.iter().map(|r| r.arrival_ms).collect();
        let position = if reader.done && pending.is_empty() {
            ShardPosition::Ended
        } else if reader.caught_up {
            ShardPosition::CaughtUp {
                read_at_millis: last_read_at,
            }
        } else {
            ShardPosition::Reading
        };
        match tracker.next_step(&arrivals, position) {
            WindowStep::Invoke { window, records } => {
                let batch = take_batch(&mut pending, records, ctx.batch_size, tracker.state());
                let framing = Framing::Window(window_event(&ctx, &shard_id, window, tracker.state(), false, false));
                let (final_count, framing) = tokio::select! {
                    delivered = deliver(&ctx, &shard_id, &batch, framing) => delivered,
                    _ = worker.held.lost.cancelled() => return Exit::Lost,
                    _ = ctx.abandon.cancelled() => {
                        ctx.counters.health.abandoned(batch.len());
                        return abandon(&mut worker, &mut frontier).await;
                    }
                };
                if final_count < batch.len() {
                    return worker.release().await;
                }
                if let Framing::Window(event) = framing {
                    let bytes = serde_json::to_vec(&event.state).map_or(0, |b| b.len());
                    tracker.on_batch_response(event.state, bytes);
                }
                if let Some(last) = batch.last() {
                    tracker.on_records_final(last.sequence_number.clone());
                }
                delivered.extend(batch.into_iter().map(|r| r.sequence_number));
            }
            WindowStep::FinalInvoke { window, terminated_early } => {
                let event = window_event(&ctx, &shard_id, window, tracker.state(), true, terminated_early);
                let invoked = tokio::select! {
                    ok = final_invoke(&ctx, event) => ok,
                    _ = worker.held.lost.cancelled() => return Exit::Lost,
                    _ = ctx.abandon.cancelled() => return abandon(&mut worker, &mut frontier).await,
                };
                if !invoked {
                    return worker.release().await;
                }
                tracker.on_final_success();
                for seq in delivered.drain(..) {
                    frontier.complete(&seq).expect("tracked record");
                }
                if let Err(exit) = worker.checkpoint(&mut frontier).await {
                    return exit;
                }
            }
            WindowStep::Wait => {
                if reader.done && pending.is_empty() {
                    return worker.end(&mut frontier).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(reader.ready_at), if !reader.done && pending.len() < read_ahead => {
                        last_read_at = now_millis();
                        let Ok(records) = reader.read(&ctx, &mut frontier, read_ahead).await else {
                            return worker.release().await;
                        };
                        pending.extend(records);
                        if delivered.is_empty()
                            && let Err(exit) = worker.checkpoint(&mut frontier).await
                        {
                            return exit;
                        }
                    }
                    _ = ctx.cancel.cancelled() => {}
                    _ = worker.held.lost.cancelled() => return Exit::Lost,
                }
            }
        }
    }
}

/// The drain deadline came during an invocation: checkpoint what is final (the window's records only
/// after its final invocation) and release the lease; the rest is read again after a restart.
async fn abandon(worker: &mut ShardWorker, frontier: &mut Frontier) -> Exit {
    match worker.checkpoint(frontier).await {
        Ok(()) => worker.release().await,
        Err(exit) => exit,
    }
}

/// Up to `BatchSize` of the first `in_window` pending records, within the payload cap (the state rides
/// in the same payload).
fn take_batch(pending: &mut VecDeque<StreamRecord>, in_window: usize, batch_size: usize, state: Option<&State>) -> Vec<StreamRecord> {
    let state_bytes = state.and_then(|s| serde_json::to_vec(s).ok()).map_or(2, |b| b.len());
    // The window envelope's fixed part is well under 1 KB.
    let budget = esm_events::envelope::MAX_PAYLOAD_BYTES - state_bytes.min(MAX_STATE_BYTES) - 1024;
    let mut count = 0;
    let mut bytes = 0;
    for record in pending.iter().take(in_window.min(batch_size)) {
        if count > 0 && bytes + record.json.len() + 1 > budget {
            break;
        }
        bytes += record.json.len() + 1;
        count += 1;
    }
    pending.drain(..count.max(1).min(pending.len())).collect()
}

fn window_event(
    ctx: &super::StreamCtx,
    shard_id: &str,
    window: Window,
    state: Option<&State>,
    is_final: bool,
    terminated_early: bool,
) -> TumblingWindow {
    TumblingWindow {
        start_ms: window.start_millis,
        end_ms: window.end_millis,
        state: state.cloned().unwrap_or_default(),
        shard_id: shard_id.to_owned(),
        event_source_arn: ctx.source.arn().arn.clone(),
        is_final_invoke_for_window: is_final,
        is_window_terminated_early: terminated_early,
    }
}

/// The window's final invocation, retried with backoff until the function returns a valid window
/// response (AWS: "if it fails, processing of the shard stops until it succeeds"). False on shutdown.
async fn final_invoke(ctx: &super::StreamCtx, event: TumblingWindow) -> bool {
    // Bytes: each attempt shares the payload instead of copying it.
    let payload = Bytes::from(
        Envelope::tumbling_window(&event)
            .expect("window bounds are valid timestamps")
            .payload::<&[u8]>(&[]),
    );
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let result = ctx
            .counters
            .track_invoke(ctx.target.invoke(payload.clone(), InvocationType::RequestResponse, false))
            .await;
        let ok = match &result {
            Ok(r) if r.function_error.is_none() => {
                Counters::add(&ctx.counters.invocations, 1);
                esm_events::response::parse_window_response(&r.payload, None).is_ok()
            }
            Ok(_) => {
                Counters::add(&ctx.counters.invocations, 1);
                Counters::add(&ctx.counters.failed_invocations, 1);
                false
            }
            Err(lambda_invoke::Error::Throttled { .. }) => {
                Counters::add(&ctx.counters.throttles, 1);
                false
            }
            Err(_) => {
                Counters::add(&ctx.counters.invoke_errors, 1);
                false
            }
        };
        if ok {
            return true;
        }
        tracing::warn!(uuid = %ctx.uuid, shard_id = %event.shard_id, "final window invocation failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = ctx.cancel.cancelled() => return false,
        }
    }
}
