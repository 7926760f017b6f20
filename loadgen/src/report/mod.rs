//! The engine's sinks and the outputs: the interval sinks that run along (`.hlog` writer, progress
//! bar, [`AbortOnFail`]), and one [`Report`] model built from [`Measurements`], rendered as a
//! human summary, JSON, CSV, JUnit XML and HTML. They take the [`model`](crate::model) types and
//! the plan's thresholds, never the command line.
//!
//! Rendering is pure (model in, text out); [`write_files`] is the only I/O.

mod abort;
mod csv;
mod hlog;
mod html;
mod junit;
mod progress;
mod sweep;
mod text;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use hdrhistogram::Histogram;
use serde::Serialize;

pub use abort::AbortOnFail;
pub use hlog::{HlogWriter, LogReader, RawInterval};
pub use progress::Progress;
pub use sweep::{Knee, SWEEP_FILES, Step, Sweep, go_on_after, write_sweep};

use crate::Error;
use crate::cost::{Cost, Prices};
use crate::model::{
    FunctionUsage, IntervalRow, Measurements, Outcome, UNIT_PER_MS, value_at_percentile,
};
use crate::plan::{Threshold, ThresholdResult};
use crate::run::destination::EndToEnd;

/// The `.hlog` file's name in `--out-dir`.
pub const HLOG_FILE: &str = "latency.hlog";

/// Version of the JSON layout (`loadgen/report.schema.json`); raised on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Percentiles listed in the distribution (JSON `percentiles`, `percentiles.csv`, the plot).
const DISTRIBUTION: [f64; 24] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.5, 98.0,
    99.0, 99.5, 99.75, 99.9, 99.95, 99.99, 99.999, 100.0,
];

/// What a report says about the run beyond the measurements.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub name: String,
    /// `lambda:NAME` or the URL; unknown for merged logs.
    pub target: Option<String>,
    /// `open` or `closed`; unknown for merged logs.
    pub model: Option<String>,
    pub started_at: Option<SystemTime>,
    /// Stopped before the schedule ended: by Ctrl-C, or by `abort_on_fail`.
    pub interrupted: bool,
    /// The threshold that stopped the run (`abort_on_fail`).
    pub aborted_by: Option<String>,
    /// Input files of `loadgen merge`.
    pub merged_from: Vec<String>,
    /// Prices for the cost of the `REPORT` lines (default: x86_64's).
    pub prices: Prices,
    /// What the destination queue said about the `Event` invocations (`destination_queue`).
    pub end_to_end: Option<EndToEnd>,
}

/// The whole report; its JSON form is described by `loadgen/report.schema.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: String,
    pub name: String,
    pub target: Option<String>,
    pub model: Option<String>,
    /// RFC 3339, UTC.
    pub started_at: Option<String>,
    pub duration_s: f64,
    pub interrupted: bool,
    /// The threshold that stopped the run early (`abort_on_fail`); `interrupted` is then true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted_by: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    pub requests: u64,
    /// Completed requests per second over the whole run.
    pub throughput_rps: f64,
    /// All six outcomes, zeros included.
    pub outcomes: BTreeMap<Outcome, OutcomeReport>,
    /// Latency of all requests from their scheduled send time; `None` when nothing completed.
    pub latency_ms: Option<LatencySummary>,
    /// The same per outcome, for outcomes that occurred.
    pub latency_by_outcome_ms: BTreeMap<Outcome, LatencySummary>,
    /// Latency from the actual send time (not corrected for coordinated omission).
    pub service_time_ms: Option<LatencySummary>,
    pub sending: Option<SendingReport>,
    pub cold_starts: Option<ColdStartReport>,
    /// What the `REPORT` lines say: billing, memory, cost and service overhead; `None` without
    /// `log_tail`.
    pub function: Option<FunctionReport>,
    /// `Event` invocations matched to their destination records; absent without
    /// `destination_queue`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_to_end: Option<EndToEndReport>,
    pub thresholds: Vec<ThresholdResult>,
    /// Every threshold passed (true when there are none).
    pub passed: bool,
    /// The latency distribution of all requests.
    pub percentiles: Vec<PercentilePoint>,
    /// Histogram of all latencies in (up to) [`BUCKETS`] buckets, log-spaced for wide ranges.
    pub histogram: Vec<HistogramBucket>,
    pub intervals: Vec<IntervalRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeReport {
    pub count: u64,
    /// Share of all requests (0 when there were none).
    pub rate: f64,
    /// Counts by throttle reason, error type, HTTP status, or error text.
    pub details: BTreeMap<String, u64>,
}

/// Latency statistics in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub p99_99: f64,
    pub max: f64,
}

impl LatencySummary {
    /// `None` for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Option<LatencySummary> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: f64| us / UNIT_PER_MS;
        let q = |p: f64| ms(value_at_percentile(h, p) as f64);
        Some(LatencySummary {
            count: h.len(),
            min: ms(h.min() as f64),
            mean: ms(h.mean()),
            stdev: ms(h.stdev()),
            p50: q(50.0),
            p75: q(75.0),
            p90: q(90.0),
            p95: q(95.0),
            p99: q(99.0),
            p99_9: q(99.9),
            p99_99: q(99.99),
            max: ms(h.max() as f64),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendingReport {
    /// Requests sent more than `late_after_ms` after their scheduled time.
    pub late: u64,
    pub late_rate: f64,
    pub late_after_ms: f64,
    /// Actual send time − scheduled send time.
    pub lag_ms: Option<LatencySummary>,
    /// Arrivals due before the end of the run that were never sent.
    pub dropped: u64,
    /// Arrivals that waited for a free slot (`max_in_flight` reached).
    pub waited_for_slot: u64,
    /// Requests that failed in the generator's own machine, by cause (not target outcomes).
    pub generator_errors: BTreeMap<String, u64>,
    /// The generator sent what the schedule asked for: nothing dropped, no generator errors.
    pub held_schedule: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColdStartReport {
    pub count: u64,
    /// Share of all requests.
    pub rate: f64,
    /// `Init Duration` from the REPORT lines.
    pub init_duration_ms: Option<LatencySummary>,
}

/// The sum of the `REPORT` lines of the `RequestResponse` invocations, and what they cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionReport {
    /// Invocations with a `REPORT` line (the ones billed and priced here).
    pub invocations: u64,
    /// Σ `Billed Duration`.
    pub billed_duration_ms: u64,
    /// Σ `Billed Duration` × `Memory Size` / 1024 MB/GB.
    pub billed_gb_seconds: f64,
    /// The largest `Memory Size`.
    pub memory_size_mb: u32,
    /// The largest `Max Memory Used`.
    pub max_memory_used_mb: u32,
    /// `max_memory_used_mb` / `memory_size_mb`.
    pub memory_used_ratio: f64,
    /// The function's own `Duration`.
    pub duration_ms: Option<LatencySummary>,
    /// Service time − `Duration` − `Init Duration`: what the function's author cannot fix.
    pub overhead_ms: Option<LatencySummary>,
    /// The overhead's distribution, at the same percentiles as [`Report::percentiles`].
    pub overhead_percentiles: Vec<PercentilePoint>,
    pub prices: Prices,
    /// Estimated cost in USD.
    pub cost: Cost,
}

impl FunctionReport {
    fn new(f: &FunctionUsage, prices: Prices) -> FunctionReport {
        FunctionReport {
            invocations: f.invocations,
            billed_duration_ms: u64::try_from(f.billed_ms).unwrap_or(u64::MAX),
            billed_gb_seconds: f.billed_gb_seconds(),
            memory_size_mb: f.memory_size_mb,
            max_memory_used_mb: f.max_memory_used_mb,
            memory_used_ratio: if f.memory_size_mb == 0 {
                0.0
            } else {
                f64::from(f.max_memory_used_mb) / f64::from(f.memory_size_mb)
            },
            duration_ms: LatencySummary::of(&f.duration),
            overhead_ms: LatencySummary::of(&f.overhead),
            overhead_percentiles: distribution(&f.overhead),
            cost: Cost::of(f, &prices),
            prices,
        }
    }
}

/// `Event` invocations from send to the 202 (enqueue) and to the function's completion (end to
/// end: send → the destination record's `timestamp`), side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndToEndReport {
    pub queue_url: String,
    /// Accepted with a 202 and a request id.
    pub accepted: u64,
    /// Matched to their destination record.
    pub completed: u64,
    /// No record within the grace period.
    pub not_completed: u64,
    /// Matched records by `requestContext.condition` (`Success`, `RetriesExhausted`,
    /// `EventAgeExceeded`, …).
    pub conditions: BTreeMap<String, u64>,
    /// Records seen again for a request already matched (deleted, not counted twice).
    pub duplicates: u64,
    /// Messages that were no record of this run (left in the queue).
    pub foreign: u64,
    pub enqueue_ms: Option<LatencySummary>,
    pub end_to_end_ms: Option<LatencySummary>,
    /// Both distributions at the same percentiles as [`Report::percentiles`].
    pub percentiles: Vec<EndToEndPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndToEndPoint {
    pub percentile: f64,
    pub enqueue_ms: Option<f64>,
    pub end_to_end_ms: Option<f64>,
}

impl EndToEndReport {
    fn new(e: &EndToEnd) -> EndToEndReport {
        let at = |h: &Histogram<u64>, p: f64| {
            (!h.is_empty()).then(|| value_at_percentile(h, p) as f64 / UNIT_PER_MS)
        };
        EndToEndReport {
            queue_url: e.queue_url.clone(),
            accepted: e.accepted,
            completed: e.completed,
            not_completed: e.not_completed,
            conditions: e.conditions.clone(),
            duplicates: e.duplicates,
            foreign: e.foreign,
            enqueue_ms: LatencySummary::of(&e.enqueue),
            end_to_end_ms: LatencySummary::of(&e.end_to_end),
            percentiles: DISTRIBUTION
                .iter()
                .map(|&p| EndToEndPoint {
                    percentile: p,
                    enqueue_ms: at(&e.enqueue, p),
                    end_to_end_ms: at(&e.end_to_end, p),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramBucket {
    pub from_ms: f64,
    pub to_ms: f64,
    pub count: u64,
}

/// Number of buckets in [`Report::histogram`].
pub const BUCKETS: usize = 12;

/// Splits `h` into buckets between its minimum and maximum: log-spaced when the maximum is more
/// than four times the minimum (latency tails are long), linear otherwise.
fn buckets(h: &Histogram<u64>) -> Vec<HistogramBucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let (min, max) = (h.min() as f64, h.max() as f64);
    let log = min > 0.0 && max / min > 4.0;
    let n = if max > min { BUCKETS } else { 1 };
    let edge = |i: usize| {
        let f = i as f64 / n as f64;
        if log {
            min * (max / min).powf(f)
        } else {
            min + (max - min) * f
        }
    };
    let mut result: Vec<HistogramBucket> = (0..n)
        .map(|i| HistogramBucket {
            from_ms: edge(i) / UNIT_PER_MS,
            to_ms: edge(i + 1) / UNIT_PER_MS,
            count: 0,
        })
        .collect();
    for v in h.iter_recorded() {
        let value = h.highest_equivalent(v.value_iterated_to()) as f64 / UNIT_PER_MS;
        let i = result.iter().position(|b| value < b.to_ms).unwrap_or(n - 1);
        result[i].count += v.count_at_value();
    }
    result
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub latency_ms: f64,
}

/// `h` at the [`DISTRIBUTION`] percentiles; empty for an empty histogram.
fn distribution(h: &Histogram<u64>) -> Vec<PercentilePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    DISTRIBUTION
        .iter()
        .map(|&p| PercentilePoint {
            percentile: p,
            latency_ms: value_at_percentile(h, p) as f64 / UNIT_PER_MS,
        })
        .collect()
}

impl Report {
    pub fn new(info: RunInfo, m: &Measurements, thresholds: &[Threshold]) -> Report {
        let all = m.latency.all();
        let requests = all.len();
        let rate = |count: u64| {
            if requests == 0 {
                0.0
            } else {
                count as f64 / requests as f64
            }
        };
        let secs = m.elapsed.as_secs_f64();
        let outcomes = Outcome::ALL
            .iter()
            .map(|&o| {
                let count = m.latency.count(o);
                let details = m.details.get(&o).cloned().unwrap_or_default();
                (
                    o,
                    OutcomeReport {
                        count,
                        rate: rate(count),
                        details,
                    },
                )
            })
            .collect();
        let latency_by_outcome_ms = Outcome::ALL
            .iter()
            .filter_map(|&o| LatencySummary::of(m.latency.get(o)).map(|s| (o, s)))
            .collect();
        let thresholds: Vec<ThresholdResult> = thresholds.iter().map(|t| t.evaluate(m)).collect();
        Report {
            schema_version: SCHEMA_VERSION,
            tool: format!("loadgen {}", env!("CARGO_PKG_VERSION")),
            name: info.name,
            target: info.target,
            model: info.model,
            started_at: info
                .started_at
                .map(|t| humantime::format_rfc3339_millis(t).to_string()),
            duration_s: secs,
            interrupted: info.interrupted,
            aborted_by: info.aborted_by,
            merged_from: info.merged_from,
            requests,
            throughput_rps: if secs > 0.0 {
                requests as f64 / secs
            } else {
                0.0
            },
            outcomes,
            latency_ms: LatencySummary::of(&all),
            latency_by_outcome_ms,
            service_time_ms: m.service_time.as_ref().and_then(LatencySummary::of),
            sending: m.send.as_ref().map(|s| SendingReport {
                late: s.late,
                late_rate: rate(s.late),
                late_after_ms: s.late_after.as_secs_f64() * 1e3,
                lag_ms: LatencySummary::of(&s.lag),
                dropped: s.dropped,
                waited_for_slot: s.waited_for_slot,
                generator_errors: s.generator_errors.clone(),
                held_schedule: s.held_schedule(),
            }),
            cold_starts: m.cold_starts.as_ref().map(|h| ColdStartReport {
                count: h.len(),
                rate: rate(h.len()),
                init_duration_ms: LatencySummary::of(h),
            }),
            function: m
                .function
                .as_ref()
                .map(|f| FunctionReport::new(f, info.prices)),
            end_to_end: info.end_to_end.as_ref().map(EndToEndReport::new),
            passed: thresholds.iter().all(|t| t.passed),
            thresholds,
            percentiles: distribution(&all),
            histogram: buckets(&all),
            intervals: m.intervals.clone(),
        }
    }

    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        text::summary(self)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serialises")
    }
}

/// Output files written to `--out-dir` (besides `latency.hlog`, streamed during the run).
pub const FILES: [&str; 5] = [
    "report.json",
    "intervals.csv",
    "percentiles.csv",
    "junit.xml",
    "report.html",
];

/// Writes [`FILES`] into `dir`.
pub fn write_files(dir: &Path, report: &Report) -> Result<(), Error> {
    let contents = [
        report.to_json(),
        csv::intervals(report),
        csv::percentiles(report),
        junit::render(report),
        html::render(report),
    ];
    for (name, content) in FILES.iter().zip(contents) {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(|e| Error::Write {
            path,
            error: e.to_string(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{Recorder, Sample};

    /// Enqueue and end-to-end latency of `Event` invocations appear side by side in every output:
    /// 4 accepted, 3 matched (end to end 20, 30 and 40 ms), 1 never completed.
    #[test]
    fn end_to_end_is_in_every_output() {
        use crate::run::destination::{Accepted, Matcher};
        let sent = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let accepted = |id: &str| Accepted {
            request_id: id.to_owned(),
            sent_at: sent,
            enqueue: Duration::from_millis(2),
        };
        let mut matcher = Matcher::new(
            "http://q/1/done",
            ["a", "b", "c", "d"].into_iter().map(accepted).collect(),
        );
        for (id, condition, ms) in [("a", "Success", 20), ("b", "Success", 30), ("c", "RetriesExhausted", 40)] {
            let finished = humantime::format_rfc3339_millis(sent + Duration::from_millis(ms));
            let body = serde_json::json!({
                "version": "1.0",
                "timestamp": finished.to_string(),
                "requestContext": {"requestId": id, "condition": condition},
            });
            matcher.offer(&body.to_string());
        }
        let mut recorder = Recorder::new(Duration::from_millis(10), false);
        recorder.record(&Sample::timed(Outcome::Success, 2));
        recorder.rotate(Duration::from_secs(1));
        let info = RunInfo {
            end_to_end: Some(matcher.finish()),
            ..RunInfo::default()
        };
        let report = Report::new(info, &recorder.finish(Duration::from_secs(1)), &[]);

        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let e = &json["end_to_end"];
        assert_eq!((e["accepted"].as_u64(), e["completed"].as_u64(), e["not_completed"].as_u64()), (Some(4), Some(3), Some(1)));
        assert_eq!(e["conditions"], serde_json::json!({"RetriesExhausted": 1, "Success": 2}));
        let max = e["end_to_end_ms"]["max"].as_f64().unwrap();
        assert!((40.0..40.1).contains(&max), "{max}");
        assert!((2.0..2.01).contains(&e["enqueue_ms"]["max"].as_f64().unwrap()));

        let summary = report.summary();
        assert!(summary.contains("4 accepted · 3 completed · 1 not completed"), "{summary}");
        assert!(summary.contains("by condition: RetriesExhausted 1 · Success 2"), "{summary}");
        let row = |label: &str| summary.lines().find(|l| l.trim_start().starts_with(label)).map(str::to_owned);
        let end_to_end = row("end to end").unwrap();
        assert_eq!(end_to_end.split_whitespace().nth(3), Some("20.00"), "{end_to_end}");
        assert!(row("enqueue (202)").unwrap().contains("2.00"));

        let percentiles = csv::percentiles(&report);
        assert!(percentiles.starts_with("percentile,latency_ms,enqueue_ms,end_to_end_ms\n"), "{percentiles}");
        let last = percentiles.lines().last().unwrap();
        assert!(last.starts_with("100,") && last.contains(",2.00") && last.contains(",40.0"), "{last}");

        let html = html::render(&report);
        assert!(html.contains("<td>end to end (send → destination record), ms</td><td>20.00</td>"), "{html}");
        assert!(html.contains("Event end to end (send → destination record)"), "{html}");
    }

    /// 1000 requests of 1 to 1000 ms: p99.9 is the 999th, and every output shows that one value.
    #[test]
    fn p99_9_is_the_same_in_every_output() {
        let mut recorder = Recorder::new(Duration::from_millis(10), false);
        for ms in 1..=1000 {
            recorder.record(&Sample {
                outcome: Outcome::Success,
                detail: None,
                latency: Duration::from_millis(ms),
                service_time: Duration::from_millis(ms),
                send_lag: Duration::ZERO,
                report: None,
            });
        }
        recorder.rotate(Duration::from_secs(1));
        let report = Report::new(
            RunInfo::default(),
            &recorder.finish(Duration::from_secs(1)),
            &[Threshold::parse("p99.9 < 1s").unwrap()],
        );
        let summary = report.latency_ms.as_ref().unwrap();
        let p = summary.p99_9;
        assert!((999.0..1000.0).contains(&p), "{p}");
        assert!(p < summary.max);

        let listed = report
            .percentiles
            .iter()
            .find(|q| q.percentile == 99.9)
            .unwrap();
        assert_eq!(listed.latency_ms, p, "JSON percentiles list");
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(
            json["latency_ms"]["p99_9"].as_f64(),
            Some(p),
            "JSON summary"
        );
        assert!(
            csv::percentiles(&report).contains(&format!("\n99.9,{p:.3}\n")),
            "CSV"
        );
        let all_row = |text: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with("all "))
                .map(|l| l.split_whitespace().nth(5).unwrap().to_owned())
        };
        assert_eq!(
            all_row(&report.summary()),
            Some(format!("{p:.2}")),
            "summary"
        );
        assert_eq!(
            all_row(&html::render(&report)),
            Some(format!("{p:.2}")),
            "HTML"
        );
        assert_eq!(report.thresholds[0].value, Some(p), "threshold");
    }
}
