//! Histogram bookkeeping: latency per outcome for the whole run and per interval.
//!
//! Memory is fixed: histograms have fixed bounds and are reused from one interval to the next, and
//! details are capped, so a run of a day holds what a run of a minute holds, plus one summary row
//! per interval.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::outcome::{Outcome, ReportLine};
use super::schedule::Shortfall;

/// Values are microseconds.
pub const UNIT_PER_MS: f64 = 1_000.0;
/// The largest value a histogram holds: one hour. Longer values are recorded as one hour.
const HIGHEST_US: u64 = 3_600_000_000;
/// Three significant digits: 0.1 % resolution at any magnitude.
const SIGFIG: u8 = 3;
/// Distinct details (throttle reasons, error codes, …) kept per outcome; more are counted as
/// [`OTHER_DETAIL`], so a target that puts ids into its error messages cannot grow memory. The
/// Prometheus label sets are capped the same way.
pub(crate) const MAX_DETAILS: usize = 32;
/// What details beyond [`MAX_DETAILS`] are counted as.
pub(crate) const OTHER_DETAIL: &str = "(other)";

/// A histogram with the bounds every loadgen histogram has (so they add up exactly).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, SIGFIG).expect("constant bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One finished request, as the engine reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub outcome: Outcome,
    /// Throttle reason, function error type, HTTP status and code, or transport error text.
    pub detail: Option<String>,
    /// From the scheduled send time to completion: what a user arriving on schedule waited
    /// (coordinated-omission corrected).
    pub latency: Duration,
    /// From the actual send to completion: what the target took.
    pub service_time: Duration,
    /// How late the request went out (actual send − scheduled send).
    pub send_lag: Duration,
    /// The log tail's `REPORT` line (`RequestResponse` invocations with `log_tail`).
    pub report: Option<ReportLine>,
}

impl Sample {
    /// Init duration, when the log tail shows a cold start.
    pub fn init_duration(&self) -> Option<Duration> {
        self.report.and_then(|r| r.init_duration)
    }
}

#[cfg(test)]
impl Sample {
    /// A sample that took `latency_ms`, sent on time (tests of the recorders and reports).
    pub(crate) fn timed(outcome: Outcome, latency_ms: u64) -> Sample {
        Sample {
            outcome,
            detail: None,
            latency: Duration::from_millis(latency_ms),
            service_time: Duration::from_millis(latency_ms),
            send_lag: Duration::ZERO,
            report: None,
        }
    }
}

/// One latency histogram per outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeHistograms([Histogram<u64>; Outcome::ALL.len()]);

impl Default for OutcomeHistograms {
    fn default() -> Self {
        OutcomeHistograms(std::array::from_fn(|_| histogram()))
    }
}

impl OutcomeHistograms {
    pub fn get(&self, outcome: Outcome) -> &Histogram<u64> {
        &self.0[outcome.index()]
    }

    pub fn get_mut(&mut self, outcome: Outcome) -> &mut Histogram<u64> {
        &mut self.0[outcome.index()]
    }

    /// Number of requests with `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.get(outcome).len()
    }

    /// Number of requests.
    pub fn total(&self) -> u64 {
        self.0.iter().map(Histogram::len).sum()
    }

    /// All outcomes in one histogram.
    pub fn all(&self) -> Histogram<u64> {
        let mut all = histogram();
        for h in &self.0 {
            all.add(h).expect("same bounds");
        }
        all
    }

    /// Empties every histogram, keeping their memory.
    pub fn reset(&mut self) {
        self.0.iter_mut().for_each(Histogram::reset);
    }
}

/// Counts per detail, per outcome (e.g. throttles by `Reason`).
pub type Details = BTreeMap<Outcome, BTreeMap<String, u64>>;

/// The requests that completed in one interval of the run.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Offset from the start of the run.
    pub start: Duration,
    pub length: Duration,
    pub latency: OutcomeHistograms,
    /// Requests sent later than the tolerance.
    pub late: u64,
}

/// The per-interval figures kept for the whole run (the histograms themselves go to the `.hlog`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalRow {
    pub start_s: f64,
    pub duration_s: f64,
    pub requests: u64,
    /// Completions per second.
    pub rps: f64,
    /// Count per outcome (all six, zeros included).
    pub outcomes: BTreeMap<Outcome, u64>,
    /// Late sends; absent for merged logs, which do not record them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late: Option<u64>,
    /// Latency percentiles of all outcomes, in ms; absent when nothing completed.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl IntervalRow {
    /// Summarises the histograms of one interval.
    pub fn new(
        start: Duration,
        length: Duration,
        latency: &OutcomeHistograms,
        late: Option<u64>,
    ) -> IntervalRow {
        let all = latency.all();
        let requests = all.len();
        let at = |q: f64| (requests > 0).then(|| all.value_at_quantile(q) as f64 / UNIT_PER_MS);
        let secs = length.as_secs_f64();
        IntervalRow {
            start_s: start.as_secs_f64(),
            duration_s: secs,
            requests,
            rps: if secs > 0.0 {
                requests as f64 / secs
            } else {
                0.0
            },
            outcomes: Outcome::ALL
                .iter()
                .map(|&o| (o, latency.count(o)))
                .collect(),
            late,
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            max_ms: (requests > 0).then(|| all.max() as f64 / UNIT_PER_MS),
        }
    }
}

/// Send timing: how well the generator kept to its schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct SendStats {
    /// Requests sent more than `late_after` after their scheduled time.
    pub late: u64,
    pub late_after: Duration,
    pub lag: Histogram<u64>,
    /// Arrivals due before the end of the run that were never sent.
    pub dropped: u64,
    /// Arrivals that waited for a free slot (`max_in_flight` reached).
    pub waited_for_slot: u64,
    /// Requests that failed in the generator's own machine (no file descriptor, no local
    /// port), counted by cause. They never reached the target, so they are no outcome of it.
    pub generator_errors: BTreeMap<String, u64>,
}

impl SendStats {
    /// False when the generator could not send what the schedule asked for: arrivals dropped,
    /// or requests that failed before leaving the machine.
    pub fn held_schedule(&self) -> bool {
        self.dropped == 0 && self.generator_errors.is_empty()
    }
}

/// Everything a report is made from: what a run recorded, or what `merge` read from `.hlog` files
/// (which lack the `Option` parts).
#[derive(Debug, Clone, PartialEq)]
pub struct Measurements {
    /// Latency from the scheduled send time, per outcome.
    pub latency: OutcomeHistograms,
    /// Latency from the actual send time, all outcomes.
    pub service_time: Option<Histogram<u64>>,
    pub send: Option<SendStats>,
    /// Init durations of cold starts; `None` when log tails were not asked for.
    pub cold_starts: Option<Histogram<u64>>,
    /// What the `REPORT` lines say; `None` when log tails were not asked for.
    pub function: Option<FunctionUsage>,
    pub details: Details,
    /// Wall-clock length of the run, draining included.
    pub elapsed: Duration,
    pub intervals: Vec<IntervalRow>,
}

/// The sum of the `REPORT` lines of a run: what the function billed and used, and the service
/// overhead around it.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionUsage {
    /// Invocations with a `REPORT` line.
    pub invocations: u64,
    /// Σ Billed Duration.
    pub billed_ms: u128,
    /// Σ Billed Duration × Memory Size: integers, so the GB-seconds of a run are exact.
    pub billed_mb_ms: u128,
    /// The largest `Memory Size` seen (a function updated during the run shows its largest).
    pub memory_size_mb: u32,
    /// The largest `Max Memory Used` seen.
    pub max_memory_used_mb: u32,
    /// The function's own `Duration`, µs.
    pub duration: Histogram<u64>,
    /// Service time − `Duration` − `Init Duration`, µs: the latency the function's author cannot
    /// fix (network, the Invoke front end, placement). Negative differences (clock granularity)
    /// count as 0.
    pub overhead: Histogram<u64>,
}

impl Default for FunctionUsage {
    fn default() -> Self {
        FunctionUsage {
            invocations: 0,
            billed_ms: 0,
            billed_mb_ms: 0,
            memory_size_mb: 0,
            max_memory_used_mb: 0,
            duration: histogram(),
            overhead: histogram(),
        }
    }
}

impl FunctionUsage {
    /// Adds one invocation's `REPORT` line; `service_time` is what the client waited for it.
    pub fn record(&mut self, report: &ReportLine, service_time: Duration) {
        self.invocations += 1;
        self.billed_ms += report.billed_duration.as_millis();
        self.billed_mb_ms += report.billed_mb_ms();
        self.memory_size_mb = self.memory_size_mb.max(report.memory_size_mb);
        self.max_memory_used_mb = self.max_memory_used_mb.max(report.max_memory_used_mb);
        self.duration.saturating_record(micros(report.duration));
        let function = report
            .duration
            .saturating_add(report.init_duration.unwrap_or_default());
        self.overhead
            .saturating_record(micros(service_time.saturating_sub(function)));
    }

    /// Billed GB-seconds (1 GB = 1024 MB, as Lambda prices memory).
    pub fn billed_gb_seconds(&self) -> f64 {
        self.billed_mb_ms as f64 / 1024.0 / 1000.0
    }
}

/// Records samples into run totals and the current interval.
#[derive(Debug)]
pub struct Recorder {
    late_after: Duration,
    current: Interval,
    /// The interval [`Recorder::rotate`] returned last, kept to reuse its histograms.
    finished: Interval,
    latency: OutcomeHistograms,
    service_time: Histogram<u64>,
    lag: Histogram<u64>,
    late: u64,
    shortfall: Shortfall,
    generator_errors: BTreeMap<String, u64>,
    cold_starts: Option<Histogram<u64>>,
    function: Option<FunctionUsage>,
    details: Details,
    rows: Vec<IntervalRow>,
}

impl Recorder {
    /// `late_after`: sends later than this count as late. `log_tail`: whether samples carry
    /// `REPORT` lines (cold starts, billing).
    pub fn new(late_after: Duration, log_tail: bool) -> Recorder {
        let interval = || Interval {
            start: Duration::ZERO,
            length: Duration::ZERO,
            latency: OutcomeHistograms::default(),
            late: 0,
        };
        Recorder {
            late_after,
            current: interval(),
            finished: interval(),
            latency: OutcomeHistograms::default(),
            service_time: histogram(),
            lag: histogram(),
            late: 0,
            shortfall: Shortfall::default(),
            generator_errors: BTreeMap::new(),
            cold_starts: log_tail.then(histogram),
            function: log_tail.then(FunctionUsage::default),
            details: Details::new(),
            rows: Vec::new(),
        }
    }

    pub fn record(&mut self, sample: &Sample) {
        let latency = micros(sample.latency);
        self.latency
            .get_mut(sample.outcome)
            .saturating_record(latency);
        self.current
            .latency
            .get_mut(sample.outcome)
            .saturating_record(latency);
        self.service_time
            .saturating_record(micros(sample.service_time));
        self.lag.saturating_record(micros(sample.send_lag));
        if sample.send_lag > self.late_after {
            self.late += 1;
            self.current.late += 1;
        }
        if let (Some(cold), Some(init)) = (&mut self.cold_starts, sample.init_duration()) {
            cold.saturating_record(micros(init));
        }
        if let (Some(function), Some(report)) = (&mut self.function, &sample.report) {
            function.record(report, sample.service_time);
        }
        if let Some(detail) = &sample.detail {
            let counts = self.details.entry(sample.outcome).or_default();
            let key = if counts.len() < MAX_DETAILS || counts.contains_key(detail) {
                detail.as_str()
            } else {
                OTHER_DETAIL
            };
            match counts.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(key.to_owned(), 1);
                }
            }
        }
    }

    /// A request that failed in the generator itself, for `cause`: no sample, since the target
    /// never saw it.
    pub fn generator_error(&mut self, cause: &'static str) {
        *self.generator_errors.entry(cause.to_owned()).or_default() += 1;
    }

    /// What the schedule could not keep to, as it stands at the end of the run.
    pub fn shortfall(&mut self, shortfall: Shortfall) {
        self.shortfall = shortfall;
    }

    /// Requests recorded so far.
    pub fn total(&self) -> u64 {
        self.latency.total()
    }

    /// Ends the current interval at `end` (offset from the start) and starts the next one there.
    /// Returns the finished interval, valid until the next call.
    pub fn rotate(&mut self, end: Duration) -> &Interval {
        std::mem::swap(&mut self.current, &mut self.finished);
        self.current.latency.reset();
        self.current.late = 0;
        self.current.start = end;
        let finished = &mut self.finished;
        finished.length = end.saturating_sub(finished.start);
        self.rows.push(IntervalRow::new(
            finished.start,
            finished.length,
            &finished.latency,
            Some(finished.late),
        ));
        &self.finished
    }

    /// The totals. Call [`Recorder::rotate`] first to close the last interval.
    pub fn finish(self, elapsed: Duration) -> Measurements {
        Measurements {
            latency: self.latency,
            service_time: Some(self.service_time),
            send: Some(SendStats {
                late: self.late,
                late_after: self.late_after,
                lag: self.lag,
                dropped: self.shortfall.dropped,
                waited_for_slot: self.shortfall.waited_for_slot,
                generator_errors: self.generator_errors,
            }),
            cold_starts: self.cold_starts,
            function: self.function,
            details: self.details,
            elapsed,
            intervals: self.rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn samples_go_to_their_outcome_in_totals_and_the_interval() {
        let mut r = Recorder::new(ms(10), false);
        r.record(&Sample::timed(Outcome::Success, 20));
        r.record(&Sample::timed(Outcome::Success, 40));
        r.record(&Sample::timed(Outcome::Throttle, 1));
        let interval = r.rotate(ms(1000));
        assert_eq!(interval.latency.count(Outcome::Success), 2);
        assert_eq!(interval.latency.count(Outcome::Throttle), 1);
        assert_eq!(interval.length, ms(1000));
        r.record(&Sample::timed(Outcome::Timeout, 5000));
        let second = r.rotate(ms(1500));
        assert_eq!((second.start, second.length), (ms(1000), ms(500)));
        assert_eq!(second.latency.total(), 1);
        let m = r.finish(ms(1500));
        assert_eq!(m.latency.total(), 4);
        // Within the histogram's 0.1 % resolution.
        assert!((40_000..40_040).contains(&m.latency.get(Outcome::Success).max()));
        assert_eq!(m.intervals.len(), 2);
        assert_eq!(m.intervals[0].requests, 3);
        assert_eq!(m.intervals[0].rps, 3.0);
        assert_eq!(m.intervals[1].outcomes[&Outcome::Timeout], 1);
        assert_eq!(m.intervals[1].rps, 2.0);
        assert!(m.cold_starts.is_none());
    }

    #[test]
    fn empty_interval_has_no_percentiles() {
        let mut r = Recorder::new(ms(10), false);
        let row = IntervalRow::new(ms(0), ms(1000), &r.rotate(ms(1000)).latency, Some(0));
        assert_eq!((row.requests, row.p99_ms, row.max_ms), (0, None, None));
    }

    #[test]
    fn late_sends_are_counted_and_lag_recorded() {
        let mut r = Recorder::new(ms(10), false);
        let mut late = Sample::timed(Outcome::Success, 100);
        late.send_lag = ms(80);
        let mut on_time = Sample::timed(Outcome::Success, 5);
        on_time.send_lag = ms(2);
        r.record(&late);
        r.record(&on_time);
        assert_eq!(r.rotate(ms(1000)).late, 1);
        let send = r.finish(ms(1000)).send.unwrap();
        assert_eq!(send.late, 1);
        assert_eq!(send.lag.len(), 2);
        assert!(send.lag.max() >= 80_000);
    }

    #[test]
    fn a_shortfall_or_a_generator_error_means_the_schedule_was_not_held() {
        let held = |f: &dyn Fn(&mut Recorder)| {
            let mut r = Recorder::new(ms(10), false);
            r.record(&Sample::timed(Outcome::Success, 1));
            f(&mut r);
            r.finish(ms(1)).send.unwrap().held_schedule()
        };
        assert!(held(&|_| {}));
        // Waiting for a slot makes sends late, which `late` counts; it drops nothing.
        assert!(held(&|r| r.shortfall(Shortfall {
            dropped: 0,
            waited_for_slot: 3
        })));
        assert!(!held(&|r| r.shortfall(Shortfall {
            dropped: 1,
            waited_for_slot: 0
        })));
        assert!(!held(&|r| r.generator_error("file descriptors")));
        let mut r = Recorder::new(ms(10), false);
        r.generator_error("file descriptors");
        r.generator_error("file descriptors");
        let send = r.finish(ms(1)).send.unwrap();
        assert_eq!(send.generator_errors["file descriptors"], 2);
    }

    #[test]
    fn cold_starts_are_recorded_when_measured() {
        let mut r = Recorder::new(ms(10), true);
        let mut cold = Sample::timed(Outcome::Success, 300);
        cold.report = Some(report(40, 290, Some(250)));
        r.record(&cold);
        r.record(&Sample::timed(Outcome::Success, 20));
        let cold_starts = r.finish(ms(1)).cold_starts.unwrap();
        assert_eq!(cold_starts.len(), 1);
        assert_eq!(cold_starts.value_at_quantile(0.5) / 1000, 250);
    }

    fn report(duration_ms: u64, billed_ms: u64, init_ms: Option<u64>) -> ReportLine {
        ReportLine {
            duration: ms(duration_ms),
            billed_duration: ms(billed_ms),
            memory_size_mb: 512,
            max_memory_used_mb: 100,
            init_duration: init_ms.map(ms),
        }
    }

    #[test]
    fn report_lines_add_up_to_billed_gb_seconds_and_overhead() {
        let mut r = Recorder::new(ms(10), true);
        // Warm: 30 ms in the client, 20 ms in the function: 10 ms of overhead.
        let mut warm = Sample::timed(Outcome::Success, 30);
        warm.report = Some(report(20, 21, None));
        r.record(&warm);
        // Cold: 180 ms in the client, 100 ms init + 50 ms duration: 30 ms of overhead.
        let mut cold = Sample::timed(Outcome::FunctionError, 180);
        cold.report = Some(ReportLine {
            max_memory_used_mb: 300,
            ..report(50, 150, Some(100))
        });
        r.record(&cold);
        // No REPORT line (a throttle): not billed.
        r.record(&Sample::timed(Outcome::Throttle, 1));
        let f = r.finish(ms(1)).function.unwrap();
        assert_eq!(f.invocations, 2);
        assert_eq!(f.billed_ms, 171);
        assert_eq!(f.billed_mb_ms, 171 * 512);
        assert_eq!(f.billed_gb_seconds(), 171.0 * 0.5 / 1000.0);
        assert_eq!((f.memory_size_mb, f.max_memory_used_mb), (512, 300));
        assert_eq!(f.overhead.len(), 2);
        assert_eq!(f.overhead.min() / 1000, 10);
        assert_eq!(f.overhead.max() / 1000, 30);
        assert_eq!(f.duration.max() / 1000, 50);
        // Without log tails there is nothing to sum.
        assert!(
            Recorder::new(ms(10), false)
                .finish(ms(1))
                .function
                .is_none()
        );
    }

    #[test]
    fn details_are_counted_and_capped() {
        let mut r = Recorder::new(ms(10), false);
        for i in 0..(MAX_DETAILS + 5) {
            let mut s = Sample::timed(Outcome::TransportError, 1);
            s.detail = Some(format!("error {i}"));
            r.record(&s);
        }
        let mut again = Sample::timed(Outcome::TransportError, 1);
        again.detail = Some("error 0".into());
        r.record(&again);
        let details = &r.finish(ms(1)).details[&Outcome::TransportError];
        assert_eq!(details.len(), MAX_DETAILS + 1);
        assert_eq!(details["error 0"], 2);
        assert_eq!(details["(other)"], 5);
    }

    #[test]
    fn huge_latencies_saturate_instead_of_failing() {
        let mut r = Recorder::new(ms(10), false);
        r.record(&Sample::timed(Outcome::Timeout, 10 * 3_600_000));
        assert_eq!(r.total(), 1);
    }
}
