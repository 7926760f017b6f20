//! The human summary printed at the end of a run.

use std::fmt::Write as _;

use super::{LatencySummary, Report};
use crate::model::Outcome;

/// Widest bar of the latency histogram, in characters.
const BAR: f64 = 40.0;

pub(super) fn summary(r: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; `w!` keeps the lines below readable.
    macro_rules! w {
        ($($arg:tt)*) => { writeln!(out, $($arg)*).expect("writing to a String cannot fail") };
    }

    let mut title = vec![r.name.clone()];
    title.extend(r.target.clone());
    title.extend(r.model.as_ref().map(|m| format!("{m} model")));
    w!("loadgen · {}", title.join(" · "));
    let mut line = format!(
        "  {} requests in {:.1} s ({:.1}/s)",
        r.requests, r.duration_s, r.throughput_rps
    );
    if r.interrupted {
        line.push_str(" · interrupted");
    }
    w!("{line}");
    if let Some(s) = &r.sending {
        let lag = s.lag_ms.as_ref().map_or(0.0, |l| l.p99);
        w!(
            "  sent late: {} ({:.2} %, later than {} ms) · send lag p99 {:.2} ms",
            s.late,
            s.late_rate * 100.0,
            s.late_after_ms,
            lag
        );
        if !s.held_schedule || s.waited_for_slot > 0 {
            w!(
                "  generator saturated: {} dropped (unsent at the end) · {} waited for a slot (max_in_flight)",
                s.dropped,
                s.waited_for_slot,
            );
        }
        for (cause, count) in &s.generator_errors {
            w!("  generator error: {count} × out of {cause}");
        }
    }
    if !r.merged_from.is_empty() {
        w!("  merged from: {}", r.merged_from.join(", "));
    }

    w!("");
    w!("  {:<16} {:>10} {:>9}", "outcome", "count", "rate");
    for (outcome, o) in &r.outcomes {
        if o.count == 0 && *outcome != Outcome::Success {
            continue;
        }
        w!(
            "  {:<16} {:>10} {:>7.2} %",
            outcome.as_str(),
            o.count,
            o.rate * 100.0
        );
        for (detail, count) in &o.details {
            w!("  {:<16} {:>10}   {detail}", "", count);
        }
    }

    w!("");
    w!(
        "  {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)",
        "min",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "mean"
    );
    let row = |label: &str, s: &LatencySummary| {
        format!(
            "  {:<16} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            label, s.min, s.p50, s.p90, s.p99, s.p99_9, s.max, s.mean
        )
    };
    match &r.latency_ms {
        Some(all) => w!("{}", row("all", all)),
        None => w!("  (no requests completed)"),
    }
    for (outcome, s) in &r.latency_by_outcome_ms {
        w!("{}", row(outcome.as_str(), s));
    }
    if let Some(s) = &r.service_time_ms {
        w!("{}", row("service time", s));
    }
    let function = r.function.as_ref();
    if let Some(s) = function.and_then(|f| f.duration_ms.as_ref()) {
        w!("{}", row("duration (fn)", s));
    }
    if let Some(s) = function.and_then(|f| f.overhead_ms.as_ref()) {
        w!("{}", row("overhead", s));
    }
    w!(
        "  Latency counts from each request's scheduled send time (its actual send if earlier); service time from its actual send."
    );
    if function.is_some_and(|f| f.invocations > 0) {
        w!(
            "  Duration is the function's own (REPORT line); overhead is service time minus Duration and Init Duration."
        );
    }
    if let Some(e) = &r.end_to_end {
        w!("");
        w!(
            "  Event invocations: {} accepted · {} completed · {} not completed (destination {})",
            e.accepted,
            e.completed,
            e.not_completed,
            e.queue_url
        );
        let conditions: Vec<String> = e.conditions.iter().map(|(c, n)| format!("{c} {n}")).collect();
        if !conditions.is_empty() {
            w!("  by condition: {}", conditions.join(" · "));
        }
        if e.duplicates > 0 || e.foreign > 0 {
            w!("  duplicate records: {} · other messages left in the queue: {}", e.duplicates, e.foreign);
        }
        if let Some(s) = &e.enqueue_ms {
            w!("{}", row("enqueue (202)", s));
        }
        if let Some(s) = &e.end_to_end_ms {
            w!("{}", row("end to end", s));
        }
        w!("  Enqueue is send → 202; end to end is send → the destination record's timestamp (the function's completion, ms resolution).");
    }

    if !r.histogram.is_empty() {
        w!("");
        w!("  latency histogram (ms, all outcomes)");
        let peak = r
            .histogram
            .iter()
            .map(|b| b.count)
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        for b in &r.histogram {
            let width = (b.count as f64 / peak * BAR).ceil() as usize;
            w!(
                "  {:>10.2} – {:<10.2} {:<40} {}",
                b.from_ms,
                b.to_ms,
                "■".repeat(width),
                b.count
            );
        }
    }

    if let Some(c) = &r.cold_starts {
        w!("");
        let init = c
            .init_duration_ms
            .as_ref()
            .map(|s| format!(" · init duration p50 {:.1} ms, max {:.1} ms", s.p50, s.max))
            .unwrap_or_default();
        w!("  cold starts: {} ({:.2} %){init}", c.count, c.rate * 100.0);
    }

    if let Some(f) = function {
        w!("");
        w!("  function (REPORT lines of {} invocations)", f.invocations);
        w!(
            "    billed {} ms · {:.6} GB-s · memory: at most {} of {} MB used ({:.1} %)",
            f.billed_duration_ms,
            f.billed_gb_seconds,
            f.max_memory_used_mb,
            f.memory_size_mb,
            f.memory_used_ratio * 100.0
        );
        let p = &f.prices;
        let per_million = f
            .cost
            .per_million_invocations
            .map(|c| format!(" · ${c:.4} per million invocations"))
            .unwrap_or_default();
        w!(
            "    cost at {} prices (${} per GB-s, ${} per million requests): ${:.6} for the run{per_million}",
            p.architecture,
            p.gb_second,
            p.per_million_requests,
            f.cost.total,
        );
    }

    if !r.thresholds.is_empty() {
        w!("");
        w!("  thresholds");
        for t in &r.thresholds {
            let mark = if t.passed { "✓" } else { "✗" };
            w!("  {mark} {:<30} {}", t.expression, t.value_text());
        }
        w!(
            "  {}",
            if r.passed {
                "all thresholds passed"
            } else {
                "THRESHOLDS BREACHED"
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::RunInfo;
    use super::*;
    use crate::model::{Recorder, ReportLine, Sample};
    use crate::plan::Threshold;

    #[test]
    fn summary_shows_outcomes_percentiles_histogram_and_thresholds() {
        let mut recorder = Recorder::new(Duration::from_millis(10), true);
        for ms in 1..=200u64 {
            let throttled = ms % 50 == 0;
            recorder.record(&Sample {
                outcome: if throttled {
                    Outcome::Throttle
                } else {
                    Outcome::Success
                },
                detail: throttled
                    .then(|| "ReservedFunctionConcurrentInvocationLimitExceeded".to_owned()),
                latency: Duration::from_millis(ms),
                service_time: Duration::from_millis(ms),
                send_lag: Duration::ZERO,
                report: (ms == 1).then(|| ReportLine::cold(Duration::from_millis(150))),
            });
        }
        recorder.rotate(Duration::from_secs(2));
        let m = recorder.finish(Duration::from_secs(2));
        let thresholds = [
            Threshold::parse("p99 < 300ms").unwrap(),
            Threshold::parse("throttle_rate < 1%").unwrap(),
        ];
        let info = RunInfo {
            name: "demo".into(),
            target: Some("lambda:f".into()),
            model: Some("open".into()),
            ..RunInfo::default()
        };
        let report = Report::new(info, &m, &thresholds);
        let text = report.summary();
        assert!(
            text.starts_with("loadgen · demo · lambda:f · open model\n"),
            "{text}"
        );
        assert!(text.contains("200 requests in 2.0 s (100.0/s)"), "{text}");
        assert!(
            text.contains("throttle                  4    2.00 %"),
            "{text}"
        );
        assert!(text.contains("ReservedFunctionConcurrentInvocationLimitExceeded"));
        // Outcomes that did not occur are left out.
        assert!(!text.contains("timeout"), "{text}");
        assert!(text.contains("latency histogram"));
        assert!(text.contains('■'));
        assert!(text.contains("cold starts: 1 (0.50 %)"), "{text}");
        // The one REPORT line: billed 151 ms at 128 MB.
        assert!(
            text.contains("function (REPORT lines of 1 invocations)"),
            "{text}"
        );
        assert!(
            text.contains(
                "billed 151 ms · 0.018875 GB-s · memory: at most 64 of 128 MB used (50.0 %)"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "cost at x86_64 prices ($0.0000166667 per GB-s, $0.2 per million requests)"
            ),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("overhead ")),
            "{text}"
        );
        assert!(text.contains("✓ p99 < 300ms"), "{text}");
        assert!(text.contains("✗ throttle_rate < 1%"), "{text}");
        assert!(text.contains("THRESHOLDS BREACHED"));
        // One histogram line per bucket, counts adding up to all requests.
        let total: u64 = report.histogram.iter().map(|b| b.count).sum();
        assert_eq!(total, 200);
    }
}
