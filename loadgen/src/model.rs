//! The value types every layer shares: outcomes, load profiles, samples, intervals and the
//! measurements of a run.
//!
//! They are defined next to the engine code that fills them (`run/outcome.rs`,
//! `run/schedule.rs`, `run/stats.rs`: pure code that imports nothing above itself). Every other
//! layer takes them from here, so that the plan, the reports and the sinks depend on these values
//! and not on the engine; the engine in turn depends only on the plan and on this module. The
//! layering is checked by `tests::layers_import_only_downwards` in `lib.rs`.

pub use crate::run::outcome::{Outcome, ReportLine};
pub use crate::run::schedule::{Profile, Stage};
pub use crate::run::stats::{
    Details, FunctionUsage, Interval, IntervalRow, Measurements, OutcomeHistograms, Recorder,
    Sample, SendStats, UNIT_PER_MS, histogram,
};
pub(crate) use crate::run::stats::{MAX_DETAILS, OTHER_DETAIL};

use hdrhistogram::Histogram;

/// The value at `percentile` (0 to 100) of `h`, by nearest rank: the smallest recorded value
/// (its highest equivalent, as HdrHistogram reports percentiles) with at least that share of
/// the counts at or below it. `0` gives the minimum. An empty histogram gives 0.
///
/// Every output (summary, JSON, CSV, HTML, thresholds) takes percentiles from here, so `p99.9`
/// is the same number everywhere. `Histogram::value_at_percentile(99.9)` is not: it computes
/// `99.9 / 100 = 0.9990000000000001`, which makes the 99.9th of 1000 values the 1000th, while
/// `value_at_quantile(0.999)` gives the 999th. The rank here is rounded to 6 decimals before
/// it is rounded up, so such float noise cannot move it.
pub fn value_at_percentile(h: &Histogram<u64>, percentile: f64) -> u64 {
    let total = h.len();
    if total == 0 {
        return 0;
    }
    if percentile <= 0.0 {
        return h.min();
    }
    let exact = percentile.min(100.0) / 100.0 * total as f64;
    let rank = ((exact * 1e6).round() / 1e6).ceil().max(1.0) as u64;
    let mut seen = 0;
    for v in h.iter_recorded() {
        seen += v.count_at_value();
        if seen >= rank {
            return h.highest_equivalent(v.value_iterated_to());
        }
    }
    h.max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank_without_float_noise() {
        let mut h = histogram();
        for ms in 1..=1000u64 {
            h.record(ms * 1000).unwrap();
        }
        let at = |p: f64| value_at_percentile(&h, p) / 1000;
        // The library's own answers differ for the same percentile:
        assert_ne!(h.value_at_percentile(99.9), h.value_at_quantile(0.999));
        assert_eq!(at(99.9), 999);
        assert_eq!(at(50.0), 500);
        assert_eq!(at(99.0), 990);
        assert_eq!(at(99.95), 1000);
        assert_eq!(at(100.0), 1000);
        assert_eq!(at(0.0), 1);
        assert_eq!(at(0.01), 1);
        assert_eq!(value_at_percentile(&histogram(), 99.0), 0);
    }
}
