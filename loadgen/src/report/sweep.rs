//! `loadgen sweep`: one result per step of concurrency (closed model) or rate (open model), the
//! rule that ends a sweep, the knee, and the sweep's outputs (summary, `sweep.json`, `sweep.csv`,
//! `sweep.html`).
//!
//! Pure: a step's result is computed from its [`Measurements`]; the command runs the steps.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::html::{Series, line_chart};
use super::junit::escape;
use super::{LatencySummary, PercentilePoint, distribution};
use crate::Error;
use crate::model::{Measurements, Outcome};
use crate::plan::{Threshold, ThresholdResult};

/// What one step measured.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Concurrency (closed model) or requests per second (open model).
    pub value: f64,
    pub requests: u64,
    pub rps: f64,
    pub throttles: u64,
    pub throttle_rate: f64,
    /// Throttles by `Reason` (reserved concurrency, account limit, burst).
    pub throttle_reasons: BTreeMap<String, u64>,
    /// Share of requests that did not succeed, throttles included.
    pub error_rate: f64,
    /// Latency of all requests of the step.
    pub latency_ms: Option<LatencySummary>,
    /// The step's latency distribution (its own histogram).
    pub percentiles: Vec<PercentilePoint>,
    pub thresholds: Vec<ThresholdResult>,
    /// No throttle, every threshold passed, and at least one request succeeded.
    pub held: bool,
    /// The step's latency histogram (all outcomes), µs.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

impl Step {
    pub fn new(value: f64, m: &Measurements, thresholds: &[Threshold]) -> Step {
        let all = m.latency.all();
        let requests = all.len();
        let share = |n: u64| {
            if requests == 0 {
                0.0
            } else {
                n as f64 / requests as f64
            }
        };
        let throttles = m.latency.count(Outcome::Throttle);
        let successes = m.latency.count(Outcome::Success);
        let thresholds: Vec<ThresholdResult> = thresholds.iter().map(|t| t.evaluate(m)).collect();
        let secs = m.elapsed.as_secs_f64();
        Step {
            value,
            requests,
            rps: if secs > 0.0 {
                requests as f64 / secs
            } else {
                0.0
            },
            throttles,
            throttle_rate: share(throttles),
            throttle_reasons: m
                .details
                .get(&Outcome::Throttle)
                .cloned()
                .unwrap_or_default(),
            error_rate: share(requests - successes),
            latency_ms: LatencySummary::of(&all),
            percentiles: distribution(&all),
            held: throttles == 0 && successes > 0 && thresholds.iter().all(|t| t.passed),
            thresholds,
            histogram: all,
        }
    }

    /// Why the step did not hold, for people; `None` when it held.
    pub fn failure(&self) -> Option<String> {
        if self.held {
            return None;
        }
        let mut causes = Vec::new();
        if self.throttles > 0 {
            let reasons: Vec<String> = self
                .throttle_reasons
                .iter()
                .map(|(reason, n)| format!("{reason} ×{n}"))
                .collect();
            causes.push(format!("throttled ({})", reasons.join(", ")));
        }
        for t in self.thresholds.iter().filter(|t| !t.passed) {
            causes.push(format!("{} breached ({})", t.expression, t.value_text()));
        }
        if causes.is_empty() {
            causes.push("no request succeeded".to_owned());
        }
        Some(causes.join("; "))
    }
}

/// Where the sweep stopped: the highest step that held, and the first that did not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Knee {
    /// The highest value that held its thresholds without a throttle; `None` if the first step
    /// failed.
    pub held: Option<f64>,
    /// The first value that did not hold; `None` if every step held (the knee is beyond the
    /// sweep).
    pub failed_at: Option<f64>,
    /// Why it did not hold.
    pub failure: Option<String>,
    /// Throttles by `Reason` at `failed_at`.
    pub throttle_reasons: BTreeMap<String, u64>,
}

impl Knee {
    /// The knee of `steps`, in the order they ran. A sweep stops at its first failed step, so the
    /// steps before it all held.
    pub fn of(steps: &[Step]) -> Knee {
        let first_failed = steps.iter().position(|s| !s.held);
        let held = steps[..first_failed.unwrap_or(steps.len())]
            .last()
            .map(|s| s.value);
        let failed = first_failed.map(|i| &steps[i]);
        Knee {
            held,
            failed_at: failed.map(|s| s.value),
            failure: failed.and_then(Step::failure),
            throttle_reasons: failed
                .map(|s| s.throttle_reasons.clone())
                .unwrap_or_default(),
        }
    }
}

/// Whether a sweep goes on after `step`: it stops at the first step that throttles or breaks a
/// threshold, since every higher step would only load a target that is already past its limit.
pub fn go_on_after(step: &Step) -> bool {
    step.held
}

/// The whole sweep; `sweep.json` is its JSON form.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub name: String,
    pub target: String,
    /// `closed` (steps are concurrency) or `open` (steps are requests per second).
    pub model: String,
    pub step_duration_s: f64,
    pub steps: Vec<Step>,
    pub knee: Knee,
    /// Stopped by Ctrl-C or SIGTERM before the sweep ended.
    pub interrupted: bool,
}

impl Sweep {
    /// The axis the steps are on.
    fn unit(&self) -> &'static str {
        if self.model == "open" {
            "rate (requests/s)"
        } else {
            "concurrency"
        }
    }

    /// The summary printed at the end: one row per step, then the knee.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        macro_rules! w {
            ($($arg:tt)*) => { writeln!(out, $($arg)*).expect("writing to a String cannot fail") };
        }
        w!(
            "loadgen sweep · {} · {} · {} model, {:.0} s per step",
            self.name,
            self.target,
            self.model,
            self.step_duration_s
        );
        w!("");
        w!(
            "  {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}  result",
            self.unit().split(' ').next().unwrap_or_default(),
            "requests",
            "rps",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "throttled",
            "errors"
        );
        for s in &self.steps {
            let (p50, p90, p99) = s
                .latency_ms
                .as_ref()
                .map_or((f64::NAN, f64::NAN, f64::NAN), |l| (l.p50, l.p90, l.p99));
            w!(
                "  {:>12} {:>9} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>8.2} % {:>7.2} %  {}",
                s.value,
                s.requests,
                s.rps,
                p50,
                p90,
                p99,
                s.throttle_rate * 100.0,
                s.error_rate * 100.0,
                s.failure().unwrap_or_else(|| "held".to_owned())
            );
        }
        w!("");
        let k = &self.knee;
        match k.held {
            Some(v) => w!("  knee: {} {v} held", self.unit()),
            None => w!("  knee: not found, the first step did not hold"),
        }
        match (k.failed_at, &k.failure) {
            (Some(v), Some(why)) => w!("  at {v}: {why}"),
            _ => w!("  every step held: the limit is beyond the last step"),
        }
        if self.interrupted {
            w!("  interrupted before the sweep ended");
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the sweep serialises")
    }

    /// `sweep.csv`: one row per step.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "value,requests,rps,p50_ms,p90_ms,p99_ms,max_ms,throttles,throttle_rate,error_rate,held\n",
        );
        for s in &self.steps {
            let cell = |f: fn(&LatencySummary) -> f64| {
                s.latency_ms
                    .as_ref()
                    .map(|l| format!("{:.3}", f(l)))
                    .unwrap_or_default()
            };
            writeln!(
                out,
                "{},{},{:.3},{},{},{},{},{},{:.6},{:.6},{}",
                s.value,
                s.requests,
                s.rps,
                cell(|l| l.p50),
                cell(|l| l.p90),
                cell(|l| l.p99),
                cell(|l| l.max),
                s.throttles,
                s.throttle_rate,
                s.error_rate,
                s.held
            )
            .expect("writing to a String cannot fail");
        }
        out
    }

    /// `sweep.html`: latency percentiles and the throttle rate against the step value, the
    /// summary, and the knee.
    pub fn html(&self) -> String {
        type Pick = fn(&LatencySummary) -> f64;
        let picks: [(&str, Pick); 3] = [("p50", |l| l.p50), ("p90", |l| l.p90), ("p99", |l| l.p99)];
        let latency: Vec<Series> = picks
            .iter()
            .map(|(label, pick)| Series {
                label: (*label).to_owned(),
                points: self
                    .steps
                    .iter()
                    .filter_map(|s| s.latency_ms.as_ref().map(|l| (s.value, pick(l))))
                    .collect(),
            })
            .collect();
        let throttles = [Series {
            label: "throttle rate (%)".to_owned(),
            points: self
                .steps
                .iter()
                .map(|s| (s.value, s.throttle_rate * 100.0))
                .collect(),
        }];
        let title = escape(&self.name);
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>loadgen sweep: {title}</title>\n<style>body{{font-family:sans-serif;\
             max-width:1000px;margin:2em auto;color:#222}}pre{{background:#f6f6f6;padding:1em;\
             overflow:auto}}.legend span{{margin-right:1.5em;white-space:nowrap}}.legend i{{\
             display:inline-block;width:1.6em;height:.25em;margin-right:.4em;\
             vertical-align:middle}}</style>\n</head>\n<body>\n<h1>loadgen sweep: {title}</h1>\n\
             <h2>Latency against {unit}</h2>\n{}<h2>Throttle rate against {unit}</h2>\n{}\
             <h2>Summary</h2>\n<pre>{}</pre>\n</body>\n</html>\n",
            line_chart(&latency, self.unit(), "latency (ms, log scale)", true, None),
            line_chart(&throttles, self.unit(), "throttled (%)", false, None),
            escape(&self.summary()),
            unit = escape(self.unit()),
        )
    }
}

/// Files a sweep writes to `--out-dir`.
pub const SWEEP_FILES: [&str; 3] = ["sweep.json", "sweep.csv", "sweep.html"];

/// Writes [`SWEEP_FILES`] into `dir`.
pub fn write_sweep(dir: &Path, sweep: &Sweep) -> Result<(), Error> {
    for (name, content) in SWEEP_FILES
        .iter()
        .zip([sweep.to_json(), sweep.csv(), sweep.html()])
    {
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

    /// A step of `n` requests of `ms` each, `throttled` of them throttled for `reason`.
    fn step(value: f64, ms: u64, throttled: u64, thresholds: &[Threshold]) -> Step {
        let mut r = Recorder::new(Duration::from_millis(10), false);
        for _ in 0..100 {
            r.record(&Sample::timed(Outcome::Success, ms));
        }
        for _ in 0..throttled {
            let mut s = Sample::timed(Outcome::Throttle, 1);
            s.detail = Some("ReservedFunctionConcurrentInvocationLimitExceeded".to_owned());
            r.record(&s);
        }
        r.rotate(Duration::from_secs(1));
        Step::new(value, &r.finish(Duration::from_secs(1)), thresholds)
    }

    #[test]
    fn the_knee_is_the_last_step_before_the_first_that_failed() {
        let steps = [
            step(2.0, 20, 0, &[]),
            step(4.0, 20, 0, &[]),
            step(8.0, 20, 7, &[]),
        ];
        assert!(steps[1].held && !steps[2].held);
        assert!(!go_on_after(&steps[2]));
        let knee = Knee::of(&steps);
        assert_eq!(knee.held, Some(4.0));
        assert_eq!(knee.failed_at, Some(8.0));
        assert_eq!(
            knee.throttle_reasons["ReservedFunctionConcurrentInvocationLimitExceeded"],
            7
        );
        assert_eq!(
            knee.failure.as_deref(),
            Some("throttled (ReservedFunctionConcurrentInvocationLimitExceeded ×7)")
        );
    }

    #[test]
    fn a_breached_threshold_ends_the_sweep_too() {
        let p99 = [Threshold::parse("p99 < 100ms").unwrap()];
        let steps = [step(10.0, 50, 0, &p99), step(20.0, 150, 0, &p99)];
        let knee = Knee::of(&steps);
        assert_eq!((knee.held, knee.failed_at), (Some(10.0), Some(20.0)));
        assert!(
            knee.failure
                .as_deref()
                .unwrap()
                .starts_with("p99 < 100ms breached (150"),
            "{knee:?}"
        );
        assert!(knee.throttle_reasons.is_empty());
        // The first step failing leaves no knee; every step holding leaves no failure.
        assert_eq!(Knee::of(&steps[1..]).held, None);
        assert_eq!(Knee::of(&steps[..1]).failed_at, None);
    }

    #[test]
    fn outputs_have_a_row_per_step_and_two_plots() {
        let sweep = Sweep {
            name: "s".into(),
            target: "lambda:f".into(),
            model: "closed".into(),
            step_duration_s: 1.0,
            steps: vec![step(2.0, 20, 0, &[]), step(4.0, 30, 5, &[])],
            knee: Knee {
                held: Some(2.0),
                failed_at: Some(4.0),
                failure: Some("throttled".into()),
                throttle_reasons: BTreeMap::new(),
            },
            interrupted: false,
        };
        let text = sweep.summary();
        assert!(text.contains("knee: concurrency 2 held"), "{text}");
        assert!(text.contains("at 4: throttled"), "{text}");
        let csv = sweep.csv();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(csv.lines().nth(2).unwrap().starts_with("4,105,"), "{csv}");
        assert!(csv.ends_with(",false\n"));
        let html = sweep.html();
        assert_eq!(html.matches("<svg").count(), 2, "{html}");
        assert!(html.contains("></i>p99</span>") && html.contains("throttle rate (%)"));
        let json: serde_json::Value = serde_json::from_str(&sweep.to_json()).unwrap();
        assert_eq!(json["steps"].as_array().unwrap().len(), 2);
        assert_eq!(json["knee"]["held"], 2.0);
        assert_eq!(
            json["steps"][1]["throttle_reasons"]["ReservedFunctionConcurrentInvocationLimitExceeded"],
            5
        );
    }
}
