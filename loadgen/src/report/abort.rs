//! `abort_on_fail` (k6's `abortOnFail`): a sink that checks the thresholds at the end of every
//! interval and stops the run when one fails.
//!
//! Only what intervals carry is known during the run: latencies by outcome, late sends and the
//! elapsed time. A threshold on anything else (cold starts) is not measured yet and cannot abort;
//! it is judged at the end like every threshold. See
//! <https://grafana.com/docs/k6/latest/using-k6/thresholds/#abort-a-test-when-a-threshold-is-crossed>.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::model::{Interval, Measurements, Outcome, OutcomeHistograms, SendStats, histogram};
use crate::plan::{Plan, Threshold};
use crate::run::IntervalSink;

/// Totals so far, and the stop token to cancel.
#[derive(Debug)]
pub struct AbortOnFail {
    thresholds: Vec<Threshold>,
    so_far: Measurements,
    stop: CancellationToken,
    tripped: Option<String>,
}

impl AbortOnFail {
    pub fn new(plan: &Plan, stop: CancellationToken) -> AbortOnFail {
        AbortOnFail {
            thresholds: plan.thresholds.clone(),
            so_far: Measurements {
                latency: OutcomeHistograms::default(),
                service_time: None,
                send: Some(SendStats {
                    late: 0,
                    late_after: plan.load.late_after,
                    lag: histogram(),
                    dropped: 0,
                    waited_for_slot: 0,
                    generator_errors: Default::default(),
                }),
                cold_starts: None,
                function: None,
                details: Default::default(),
                elapsed: Duration::ZERO,
                intervals: Vec::new(),
            },
            stop,
            tripped: None,
        }
    }

    /// The threshold that stopped the run, if one did.
    pub fn tripped(self) -> Option<String> {
        self.tripped
    }
}

impl IntervalSink for AbortOnFail {
    fn interval(&mut self, interval: &Interval) {
        for (outcome, h) in Outcome::ALL.iter().map(|&o| (o, interval.latency.get(o))) {
            self.so_far
                .latency
                .get_mut(outcome)
                .add(h)
                .expect("same bounds");
        }
        if let Some(send) = &mut self.so_far.send {
            send.late += interval.late;
        }
        self.so_far.elapsed = interval.start + interval.length;
        if self.tripped.is_some() {
            return;
        }
        if let Some(t) = self
            .thresholds
            .iter()
            .find(|t| t.breached_so_far(&self.so_far))
        {
            self.tripped = Some(t.to_string());
            self.stop.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::{Recorder, Sample};
    use crate::scenario::Scenario;

    fn plan(thresholds: &str) -> Plan {
        let scenario: Scenario = toml::from_str(&format!(
            "thresholds = {thresholds}\n[target]\nurl = \"http://127.0.0.1:1/\"\n[load]\nrate = 1\nduration = 10\n"
        ))
        .unwrap();
        Plan::new(scenario, Path::new(".")).unwrap()
    }

    /// Records `samples` (outcome, latency in ms) and feeds the interval ending at `at` seconds.
    fn feed(sink: &mut AbortOnFail, recorder: &mut Recorder, at: u64, samples: &[(Outcome, u64)]) {
        for &(outcome, ms) in samples {
            recorder.record(&Sample {
                outcome,
                detail: None,
                latency: Duration::from_millis(ms),
                service_time: Duration::from_millis(ms),
                send_lag: Duration::ZERO,
                report: None,
            });
        }
        sink.interval(recorder.rotate(Duration::from_secs(at)));
    }

    #[test]
    fn stops_the_run_at_the_first_failing_interval() {
        let stop = CancellationToken::new();
        let mut sink = AbortOnFail::new(
            &plan(r#"["requests > 1000", "p99 < 100ms", "error_rate < 50%"]"#),
            stop.clone(),
        );
        let mut recorder = Recorder::new(Duration::from_millis(10), false);
        feed(&mut sink, &mut recorder, 1, &[(Outcome::Success, 10); 10]);
        // `requests > 1000` is not reached yet, but counts only grow: no abort on it.
        assert!(!stop.is_cancelled());
        // Errors, but below half of all requests so far.
        feed(&mut sink, &mut recorder, 2, &[(Outcome::Throttle, 10); 9]);
        assert!(!stop.is_cancelled());
        feed(&mut sink, &mut recorder, 3, &[(Outcome::Success, 500); 5]);
        assert!(stop.is_cancelled());
        assert_eq!(sink.tripped().as_deref(), Some("p99 < 100ms"));
    }

    #[test]
    fn nothing_measured_yet_does_not_abort() {
        let stop = CancellationToken::new();
        let mut sink = AbortOnFail::new(
            &plan(r#"["p99 < 100ms", "cold_start_rate < 1%"]"#),
            stop.clone(),
        );
        let mut recorder = Recorder::new(Duration::from_millis(10), false);
        feed(&mut sink, &mut recorder, 1, &[]);
        feed(&mut sink, &mut recorder, 2, &[(Outcome::Success, 5)]);
        assert!(!stop.is_cancelled());
        assert_eq!(sink.tripped(), None);
    }
}
