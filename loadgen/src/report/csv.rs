//! CSV files: one row per interval, and the percentile distribution.

use std::fmt::Write as _;

use super::Report;
use crate::model::Outcome;

/// `intervals.csv`: time series for spreadsheets and plotting tools. Empty cells: no data.
pub(super) fn intervals(r: &Report) -> String {
    let mut out = String::from("start_s,duration_s,requests,rps");
    for outcome in Outcome::ALL {
        out.push(',');
        out.push_str(outcome.as_str());
    }
    out.push_str(",late,p50_ms,p90_ms,p99_ms,max_ms\n");
    for row in &r.intervals {
        let cell = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
        let late = row.late.map(|l| l.to_string()).unwrap_or_default();
        write!(
            out,
            "{:.3},{:.3},{},{:.3}",
            row.start_s, row.duration_s, row.requests, row.rps
        )
        .expect("writing to a String cannot fail");
        for outcome in Outcome::ALL {
            write!(out, ",{}", row.outcomes.get(&outcome).copied().unwrap_or(0))
                .expect("writing to a String cannot fail");
        }
        writeln!(
            out,
            ",{late},{},{},{},{}",
            cell(row.p50_ms),
            cell(row.p90_ms),
            cell(row.p99_ms),
            cell(row.max_ms)
        )
        .expect("writing to a String cannot fail");
    }
    out
}

/// `percentiles.csv`: the latency distribution of all requests, and with `log_tail` the service
/// overhead's (service time − the function's `Duration` and `Init Duration`) beside it; with a
/// destination queue, the `Event` invocations' enqueue and end-to-end latencies.
pub(super) fn percentiles(r: &Report) -> String {
    let overhead = r.function.as_ref().map(|f| &f.overhead_percentiles);
    let end_to_end = r.end_to_end.as_ref().map(|e| &e.percentiles);
    let mut out = String::from("percentile,latency_ms");
    if overhead.is_some() {
        out.push_str(",overhead_ms");
    }
    if end_to_end.is_some() {
        out.push_str(",enqueue_ms,end_to_end_ms");
    }
    out.push('\n');
    for (i, p) in r.percentiles.iter().enumerate() {
        write!(out, "{},{:.3}", p.percentile, p.latency_ms)
            .expect("writing to a String cannot fail");
        if let Some(overhead) = overhead {
            // Empty when no invocation returned a REPORT line.
            let cell = overhead
                .get(i)
                .map(|o| format!("{:.3}", o.latency_ms))
                .unwrap_or_default();
            write!(out, ",{cell}").expect("writing to a String cannot fail");
        }
        if let Some(points) = end_to_end {
            // Empty when no invocation was accepted, or none completed.
            let cell = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
            let point = points.iter().find(|e| e.percentile == p.percentile);
            write!(
                out,
                ",{},{}",
                cell(point.and_then(|e| e.enqueue_ms)),
                cell(point.and_then(|e| e.end_to_end_ms))
            )
            .expect("writing to a String cannot fail");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::RunInfo;
    use super::*;
    use crate::model::{Recorder, ReportLine, Sample};

    fn report() -> Report {
        let mut recorder = Recorder::new(Duration::from_millis(10), false);
        recorder.record(&Sample {
            outcome: Outcome::Throttle,
            detail: None,
            latency: Duration::from_millis(2),
            service_time: Duration::from_millis(2),
            send_lag: Duration::from_millis(20),
            report: None,
        });
        recorder.rotate(Duration::from_secs(1));
        recorder.rotate(Duration::from_secs(2));
        Report::new(
            RunInfo::default(),
            &recorder.finish(Duration::from_secs(2)),
            &[],
        )
    }

    #[test]
    fn interval_rows_have_a_column_per_outcome() {
        let text = intervals(&report());
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(
            lines[0],
            "start_s,duration_s,requests,rps,success,function_error,throttle,http_error,timeout,transport_error,late,p50_ms,p90_ms,p99_ms,max_ms"
        );
        let first: Vec<_> = lines[1].split(',').collect();
        assert_eq!(
            first[..11],
            [
                "0.000", "1.000", "1", "1.000", "0", "0", "1", "0", "0", "0", "1"
            ]
        );
        assert!(first[11].starts_with("2.00"));
        // An interval without requests leaves the latency cells empty.
        assert!(lines[2].ends_with(",0,,,,"), "{}", lines[2]);
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn percentile_rows() {
        let text = percentiles(&report());
        assert!(text.starts_with("percentile,latency_ms\n0,2.00"), "{text}");
        assert!(text.trim_end().ends_with(&format!(
            "100,{:.3}",
            report().percentiles.last().unwrap().latency_ms
        )));
    }

    #[test]
    fn overhead_is_a_column_beside_latency_with_log_tails() {
        let mut recorder = Recorder::new(Duration::from_millis(10), true);
        for ms in 1..=100u64 {
            // The client waited 5 ms more than the function ran.
            recorder.record(&Sample {
                report: Some(ReportLine {
                    duration: Duration::from_millis(ms),
                    billed_duration: Duration::from_millis(ms),
                    memory_size_mb: 128,
                    max_memory_used_mb: 64,
                    init_duration: None,
                }),
                ..Sample::timed(Outcome::Success, ms + 5)
            });
        }
        recorder.rotate(Duration::from_secs(1));
        let report = Report::new(
            RunInfo::default(),
            &recorder.finish(Duration::from_secs(1)),
            &[],
        );
        let text = percentiles(&report);
        assert!(
            text.starts_with("percentile,latency_ms,overhead_ms\n"),
            "{text}"
        );
        for line in text.lines().skip(1) {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), 3, "{line}");
            // 5 ms, within the histogram's 0.1 % resolution.
            assert!(cells[2].starts_with("5.00"), "{line}");
        }
    }
}
