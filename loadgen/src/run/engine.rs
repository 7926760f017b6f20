//! The engine: one loop for every load model. It asks the [`Schedule`] what to do, sends requests
//! as tasks, and records what they report. The loop owns all statistics, so nothing is locked.
//!
//! The engine waits on tokio's timer alone: one wake-up sends every open-model arrival due
//! within [`SEND_AHEAD`](super::schedule::SEND_AHEAD) of it, so no request goes out late because of the timer's 1 ms slots,
//! and an early one is timed from when it went out ([`latency`]). Sending stops at the end of the
//! schedule whatever the generator managed (what was not sent is dropped), and the requests in
//! flight then get their timeout to finish: a run lasts at most its duration plus the target
//! timeout.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lambda_invoke::InvocationType;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::Client;
use super::destination::Accepted;
use super::mix::Mix;
use super::outcome::{classify, generator_limit};
use super::schedule::{Next, Schedule, exchange_times, latency};
use super::stats::{Interval, Measurements, Recorder, Sample};
use crate::metrics::RunMetrics;
use crate::plan::{Context, Plan};

/// Receives each interval as it closes (the `.hlog` writer, the progress bar).
pub trait IntervalSink {
    fn interval(&mut self, interval: &Interval);
}

/// For runs that only want the totals.
impl IntervalSink for () {
    fn interval(&mut self, _: &Interval) {}
}

/// What a run produced.
#[derive(Debug)]
pub struct Run {
    /// Wall-clock start, for reports and `.hlog` time stamps.
    pub started_at: SystemTime,
    pub measurements: Measurements,
    /// Requests sent (all of them completed: the engine waits for every one).
    pub sent: u64,
    /// `stop` was cancelled before the schedule ended (Ctrl-C).
    pub interrupted: bool,
    /// The `Event` invocations Lambda accepted, when the plan has a destination queue to match
    /// them on.
    pub accepted: Vec<Accepted>,
}

/// What became of a request.
enum Done {
    /// It reached the target (or timed out on the way): a sample, the invocation type it was
    /// sent with (for the metrics' label), and the accepted `Event` to match on the destination.
    Completed(Sample, InvocationType, Option<Accepted>),
    /// It failed in the generator's own machine, for this cause.
    GeneratorError(&'static str),
}

impl Done {
    /// Records the request, which `in_flight` no longer counts.
    fn record(
        self,
        recorder: &mut Recorder,
        metrics: &mut RunMetrics,
        in_flight: usize,
        accepted: &mut Vec<Accepted>,
    ) {
        match self {
            Done::Completed(sample, invocation_type, event) => {
                recorder.record(&sample);
                metrics.completed(&sample, invocation_type, in_flight);
                accepted.extend(event);
            }
            Done::GeneratorError(cause) => recorder.generator_error(cause),
        }
    }
}

/// Runs `plan` against `target` until the schedule ends, `max_requests` are sent, or `stop` is
/// cancelled; then waits for the requests in flight. The target bounds each request with its own
/// timeout ([`target_for`](super::client::target_for) gives it the plan's), one timer per request
/// rather than a second one here; its [`Timeout`](lambda_invoke::Error::Timeout) is the
/// [`Outcome::Timeout`](super::outcome::Outcome::Timeout) outcome.
/// `metrics` count along, live ([`RunMetrics::new`] for a run that exports none).
pub async fn execute(
    plan: &Plan,
    target: impl Into<Client>,
    stop: &CancellationToken,
    sink: &mut (dyn IntervalSink + Send),
    metrics: &mut RunMetrics,
) -> Run {
    let mut schedule: Box<dyn Schedule> = plan.load.schedule();
    let mut sender = Sender {
        target: Arc::new(target.into()),
        plan,
        mix: Mix::new(plan.requests.iter().map(|r| r.weight)),
        rng: match plan.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        },
        body: String::new(),
        start: Instant::now(),
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut recorder = Recorder::new(plan.load.late_after, plan.target.log_tail);
    let started_at = SystemTime::now();
    let start = sender.start;
    let mut in_flight = 0usize;
    let mut sent = 0u64;
    let mut accepted = Vec::new();
    let mut next_tick = plan.interval;
    let mut sending = true;
    // One timer, replaced only when the wake-up time changes (a closed model at full
    // concurrency waits for the same tick request after request).
    let sleep = tokio::time::sleep_until((start + next_tick).into());
    tokio::pin!(sleep);
    // Likewise one registration for the stop signal. Once it fires, `sending` turns false below
    // and the branch is never polled again.
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    metrics.target(plan.load.profile.value_at(Duration::ZERO));
    loop {
        // Completions first: they free slots for the decision below.
        while let Ok(result) = done_rx.try_recv() {
            in_flight -= 1;
            result.record(&mut recorder, metrics, in_flight, &mut accepted);
        }
        let now = start.elapsed();
        while now >= next_tick {
            sink.interval(recorder.rotate(next_tick));
            next_tick += plan.interval;
            metrics.target(plan.load.profile.value_at(now).filter(|_| sending));
        }
        let limit_reached = plan.load.max_requests.is_some_and(|max| sent >= max);
        let next = if sending && !stop.is_cancelled() && !limit_reached {
            schedule.next(now, in_flight)
        } else {
            Next::Done
        };
        let until = match next {
            Next::Send { scheduled } => {
                sender.send(sent, scheduled, done_tx.clone());
                sent += 1;
                in_flight += 1;
                metrics.sent(in_flight);
                continue;
            }
            Next::Wait { until } => until,
            Next::Done => {
                sending = false;
                metrics.target(None);
                if in_flight == 0 {
                    break;
                }
                None
            }
        };
        let wake = (start + until.map_or(next_tick, |until| until.min(next_tick))).into();
        if sleep.deadline() != wake {
            sleep.as_mut().reset(wake);
        }
        tokio::select! {
            biased;
            Some(result) = done_rx.recv() => {
                in_flight -= 1;
                result.record(&mut recorder, metrics, in_flight, &mut accepted);
            }
            () = &mut sleep => {}
            () = &mut cancelled, if sending => {}
        }
    }
    let elapsed = start.elapsed();
    recorder.shortfall(schedule.shortfall());
    sink.interval(recorder.rotate(elapsed));
    Run {
        started_at,
        measurements: recorder.finish(elapsed),
        sent,
        interrupted: stop.is_cancelled(),
        accepted,
    }
}

/// Builds requests and starts them as tasks.
struct Sender<'a> {
    target: Arc<Client>,
    plan: &'a Plan,
    mix: Mix,
    rng: StdRng,
    /// Reused buffer for rendering payloads.
    body: String,
    start: Instant,
}

impl Sender<'_> {
    /// Starts request number `seq`, due at `scheduled`; its [`Sample`] arrives on `done`.
    fn send(&mut self, seq: u64, scheduled: Duration, done: mpsc::UnboundedSender<Done>) {
        let request = &self.plan.requests[self.mix.next_index()];
        let unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        request
            .template
            .render(Context { seq, unix_ms }, &mut self.rng, &mut self.body);
        let payload = self.body.as_bytes().to_vec();
        let invocation_type = request.invocation_type;
        // Lambda returns a log tail only for synchronous invocations.
        let log_tail =
            self.plan.target.log_tail && invocation_type == InvocationType::RequestResponse;
        let target = Arc::clone(&self.target);
        let start = self.start;
        let matched = self.plan.target.destination.is_some() && invocation_type == InvocationType::Event;
        tokio::spawn(async move {
            let began = start.elapsed();
            let sent_wall = matched.then(SystemTime::now);
            // Boxed: the invoke future is kilobytes (the request, the signing, the answer), and a
            // small task is cheaper to spawn and move.
            let invoke = Box::pin(target.invoke(payload, invocation_type, log_tail));
            let (result, wire) = aws_wire::timed(invoke).await;
            let (sent_at, done_at) = exchange_times(start, (began, start.elapsed()), wire);
            if let Some(cause) = generator_limit(&result) {
                done.send(Done::GeneratorError(cause)).ok();
                return;
            }
            let classified = classify(&result);
            let sample = Sample {
                outcome: classified.outcome,
                detail: classified.detail,
                latency: latency(scheduled, sent_at, done_at),
                service_time: done_at.saturating_sub(sent_at),
                send_lag: sent_at.saturating_sub(scheduled),
                report: classified.report,
            };
            let event = sent_wall.and_then(|sent| Accepted::of(result.as_ref().ok()?, sent, sample.service_time));
            // The receiver is gone only if the run itself was dropped: nobody to report to.
            done.send(Done::Completed(sample, invocation_type, event)).ok();
        });
    }
}
