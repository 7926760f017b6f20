//! Pass/fail criteria in k6's style: `p99 < 300ms`, `throttle_rate < 1%`, `error_rate < 0.01`.
//!
//! Grammar: `METRIC OP VALUE` with OP one of `<`, `<=`, `>`, `>=`, `==`, `!=`.
//!
//! | metric | meaning | value |
//! |---|---|---|
//! | `p99`, `p99.9`, `p(95)`, `med`, `avg`/`mean`, `min`, `max` | latency of all requests, from the scheduled send time | duration (`300ms`, `1.5s`, `800us`) or a number of ms |
//! | `success.p99`, `throttle.max`, … | the same for one outcome | as above |
//! | `error_rate` | share of requests that did not succeed | fraction (`0.01`) or percentage (`1%`) |
//! | `success_rate`, `throttle_rate`, `function_error_rate`, `http_error_rate`, `timeout_rate`, `transport_error_rate` | share of one outcome | as above |
//! | `late_rate` | share of requests sent later than `late_after` | as above |
//! | `cold_start_rate` | share of requests whose log tail shows a cold start | as above |
//! | `rps` | completed requests per second | number |
//! | `requests`, `success_count`, `throttle_count`, … | counts | number |
//!
//! A metric that was not measured (no requests, `late_rate` on merged logs, `cold_start_rate`
//! without `log_tail`) fails its threshold: a CI gate must not pass on missing data.

use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::model::{Measurements, Outcome, UNIT_PER_MS, value_at_percentile};

/// A parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    expression: String,
    metric: Metric,
    op: Op,
    /// In the metric's unit: ms for latencies, a fraction for rates.
    limit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Latency {
        outcome: Option<Outcome>,
        stat: Stat,
    },
    ErrorRate,
    OutcomeRate(Outcome),
    LateRate,
    ColdStartRate,
    Rps,
    Requests,
    OutcomeCount(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stat {
    /// Percentile in 0..=100.
    Percentile(f64),
    Mean,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// The verdict on one threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdResult {
    pub expression: String,
    /// The measured value in `unit`; `None` when it could not be measured.
    pub value: Option<f64>,
    /// `ms`, `ratio`, `per_second` or `count`.
    pub unit: &'static str,
    pub passed: bool,
}

impl ThresholdResult {
    /// The measured value for people: `412.3 ms`, `1.67 %`.
    pub fn value_text(&self) -> String {
        match self.value {
            None => "not measured".to_owned(),
            Some(v) => match self.unit {
                "ms" => format!("{v:.2} ms"),
                "ratio" => format!("{:.3} %", v * 100.0),
                "per_second" => format!("{v:.1}/s"),
                _ => format!("{v}"),
            },
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

impl Threshold {
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let expression = text.trim().to_owned();
        let (at, op, len) = ["<=", ">=", "==", "!=", "<", ">"]
            .iter()
            .filter_map(|token| expression.find(token).map(|at| (at, *token)))
            .min_by_key(|(at, token)| (*at, usize::MAX - token.len()))
            .map(|(at, token)| (at, token, token.len()))
            .ok_or_else(|| {
                format!("`{expression}`: expected `METRIC OP VALUE`, e.g. `p99 < 300ms`")
            })?;
        let op_token = op;
        let op = match op {
            "<=" => Op::Le,
            ">=" => Op::Ge,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            _ => Op::Gt,
        };
        let metric =
            parse_metric(expression[..at].trim()).map_err(|e| format!("`{expression}`: {e}"))?;
        let value = expression[at + len..].trim();
        if value.is_empty() {
            return Err(format!("`{expression}`: missing VALUE after `{op_token}`"));
        }
        let limit = match metric {
            Metric::Latency { .. } => parse_ms(value),
            Metric::ErrorRate
            | Metric::OutcomeRate(_)
            | Metric::LateRate
            | Metric::ColdStartRate => parse_ratio(value),
            Metric::Rps | Metric::Requests | Metric::OutcomeCount(_) => parse_number(value),
        }
        .map_err(|e| format!("`{expression}`: {e}"))?;
        Ok(Threshold {
            expression,
            metric,
            op,
            limit,
        })
    }

    pub fn evaluate(&self, m: &Measurements) -> ThresholdResult {
        let value = measure(self.metric, m);
        let passed = value.is_some_and(|v| match self.op {
            Op::Lt => v < self.limit,
            Op::Le => v <= self.limit,
            Op::Gt => v > self.limit,
            Op::Ge => v >= self.limit,
            Op::Eq => v == self.limit,
            Op::Ne => v != self.limit,
        });
        ThresholdResult {
            expression: self.expression.clone(),
            value,
            unit: match self.metric {
                Metric::Latency { .. } => "ms",
                Metric::Rps => "per_second",
                Metric::Requests | Metric::OutcomeCount(_) => "count",
                _ => "ratio",
            },
            passed,
        }
    }
}

impl Threshold {
    /// Whether a run still going has already failed this threshold, for `abort_on_fail`: it is
    /// measured and fails. A count that must reach a floor (`requests > 1000`) is judged only at
    /// the end, since counts only grow.
    pub fn breached_so_far(&self, m: &Measurements) -> bool {
        let floor_on_a_count = matches!(self.metric, Metric::Requests | Metric::OutcomeCount(_))
            && matches!(self.op, Op::Gt | Op::Ge | Op::Eq);
        if floor_on_a_count {
            return false;
        }
        let result = self.evaluate(m);
        result.value.is_some() && !result.passed
    }
}

fn parse_metric(name: &str) -> Result<Metric, String> {
    let unknown = || {
        format!(
            "unknown metric `{name}` (latency: p99, p(99.9), med, avg, min, max, optionally \
             prefixed by an outcome as in success.p99; rates: error_rate, OUTCOME_rate, \
             late_rate, cold_start_rate; rps; requests, OUTCOME_count)"
        )
    };
    if let Some(stat) = parse_stat(name) {
        return Ok(Metric::Latency {
            outcome: None,
            stat,
        });
    }
    if let Some((outcome, stat)) = name.split_once('.')
        && let Ok(outcome) = outcome.parse::<Outcome>()
    {
        let stat = parse_stat(stat).ok_or_else(unknown)?;
        return Ok(Metric::Latency {
            outcome: Some(outcome),
            stat,
        });
    }
    match name {
        "error_rate" => return Ok(Metric::ErrorRate),
        "late_rate" => return Ok(Metric::LateRate),
        "cold_start_rate" => return Ok(Metric::ColdStartRate),
        "rps" => return Ok(Metric::Rps),
        "requests" => return Ok(Metric::Requests),
        _ => {}
    }
    if let Some(outcome) = name.strip_suffix("_rate").and_then(|o| o.parse().ok()) {
        return Ok(Metric::OutcomeRate(outcome));
    }
    if let Some(outcome) = name.strip_suffix("_count").and_then(|o| o.parse().ok()) {
        return Ok(Metric::OutcomeCount(outcome));
    }
    Err(unknown())
}

/// `p99`, `p99.9`, `p(99)`, `med`, `avg`, `mean`, `min`, `max`.
fn parse_stat(name: &str) -> Option<Stat> {
    match name {
        "med" => return Some(Stat::Percentile(50.0)),
        "avg" | "mean" => return Some(Stat::Mean),
        "min" => return Some(Stat::Min),
        "max" => return Some(Stat::Max),
        _ => {}
    }
    let digits = name.strip_prefix('p')?;
    let digits = digits
        .strip_prefix('(')
        .and_then(|d| d.strip_suffix(')'))
        .unwrap_or(digits);
    let percent: f64 = digits.parse().ok()?;
    (0.0..=100.0)
        .contains(&percent)
        .then_some(Stat::Percentile(percent))
}

/// A duration in ms: `300ms`, `1.5s`, `800us`, `2m`, or a bare number of ms (as in k6).
fn parse_ms(value: &str) -> Result<f64, String> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number = parse_number(number).map_err(|_| {
        format!("`{value}` is not a duration (`300ms`, `1.5s`, `800us`, `2m`, or a number of ms)")
    })?;
    let scale = match unit.trim() {
        "" | "ms" => 1.0,
        "us" | "µs" => 1e-3,
        "s" => 1e3,
        "m" => 60e3,
        other => {
            return Err(format!(
                "`{value}`: unknown duration unit `{other}` (us, ms, s, m)"
            ));
        }
    };
    Ok(number * scale)
}

/// A fraction (`0.01`) or a percentage (`1%`).
fn parse_ratio(value: &str) -> Result<f64, String> {
    match value.strip_suffix('%') {
        Some(percent) => parse_number(percent.trim())
            .map(|p| p / 100.0)
            .map_err(|_| format!("`{value}` is not a percentage")),
        None => parse_number(value),
    }
}

fn parse_number(value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("`{value}` is not a number"))
}

fn measure(metric: Metric, m: &Measurements) -> Option<f64> {
    let total = m.latency.total();
    let share = |count: u64| (total > 0).then(|| count as f64 / total as f64);
    match metric {
        Metric::Latency { outcome, stat } => {
            let all;
            let histogram = match outcome {
                Some(o) => m.latency.get(o),
                None => {
                    all = m.latency.all();
                    &all
                }
            };
            latency_stat(histogram, stat)
        }
        Metric::ErrorRate => share(total - m.latency.count(Outcome::Success)),
        Metric::OutcomeRate(o) => share(m.latency.count(o)),
        Metric::LateRate => share(m.send.as_ref()?.late),
        Metric::ColdStartRate => share(m.cold_starts.as_ref()?.len()),
        Metric::Rps => {
            let secs = m.elapsed.as_secs_f64();
            (secs > 0.0).then(|| total as f64 / secs)
        }
        Metric::Requests => Some(total as f64),
        Metric::OutcomeCount(o) => Some(m.latency.count(o) as f64),
    }
}

fn latency_stat(h: &Histogram<u64>, stat: Stat) -> Option<f64> {
    if h.is_empty() {
        return None;
    }
    let value = match stat {
        Stat::Percentile(p) => value_at_percentile(h, p) as f64,
        Stat::Mean => h.mean(),
        Stat::Min => h.min() as f64,
        Stat::Max => h.max() as f64,
    };
    Some(value / UNIT_PER_MS)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{Recorder, Sample};

    /// 100 requests: 98 successes at 1..=98 ms, one throttle and one timeout at 1 s; 50 ms late.
    fn measurements() -> Measurements {
        let mut r = Recorder::new(Duration::from_millis(10), true);
        let sample = |outcome, ms: u64| Sample {
            outcome,
            detail: None,
            latency: Duration::from_millis(ms),
            service_time: Duration::from_millis(ms),
            send_lag: Duration::from_millis(if ms == 50 { 50 } else { 0 }),
            report: None,
        };
        for ms in 1..=98 {
            r.record(&sample(Outcome::Success, ms));
        }
        r.record(&sample(Outcome::Throttle, 1000));
        r.record(&sample(Outcome::Timeout, 1000));
        r.rotate(Duration::from_secs(2));
        r.finish(Duration::from_secs(2))
    }

    fn check(expression: &str) -> ThresholdResult {
        Threshold::parse(expression)
            .unwrap()
            .evaluate(&measurements())
    }

    fn value(expression: &str) -> f64 {
        check(expression).value.unwrap()
    }

    #[test]
    fn latency_thresholds() {
        assert!(check("p50 < 51ms").passed);
        assert!(!check("p50 < 49ms").passed);
        assert!((value("p(50) < 1") - 50.0).abs() < 0.1);
        assert!((value("med < 1") - 50.0).abs() < 0.1);
        assert!(check("p99 >= 1s").passed);
        assert!(check("success.p99 < 100ms").passed);
        assert!((value("success.max < 1") - 98.0).abs() < 0.1);
        assert!((value("min > 0") - 1.0).abs() < 0.01);
        assert!((value("avg < 1") - (98.0 * 99.0 / 2.0 + 2000.0) / 100.0).abs() < 0.1);
        assert!(check("p99.9 <= 1.1s").passed);
        let text = check("p99 < 300ms").value_text();
        assert!(text.starts_with("1000.") && text.ends_with(" ms"), "{text}");
    }

    #[test]
    fn rate_and_count_thresholds() {
        assert_eq!(value("error_rate < 1"), 0.02);
        assert_eq!(value("throttle_rate < 1%"), 0.01);
        assert!(!check("throttle_rate < 1%").passed);
        assert!(check("throttle_rate <= 1%").passed);
        assert!(check("timeout_rate == 0.01").passed);
        assert!(check("success_rate > 0.95").passed);
        assert_eq!(value("late_rate < 1"), 0.01);
        assert_eq!(value("requests > 0"), 100.0);
        assert_eq!(value("rps > 0"), 50.0);
        assert_eq!(value("throttle_count == 1"), 1.0);
        assert!(check("function_error_count == 0").passed);
        assert!(check("cold_start_rate == 0").passed);
        assert_eq!(check("error_rate < 1%").value_text(), "2.000 %");
    }

    #[test]
    fn unmeasured_metrics_fail() {
        let mut m = measurements();
        m.send = None;
        m.cold_starts = None;
        for expression in [
            "late_rate < 1",
            "cold_start_rate < 1",
            "function_error.p99 < 1s",
        ] {
            let result = Threshold::parse(expression).unwrap().evaluate(&m);
            assert_eq!((result.value, result.passed), (None, false), "{expression}");
        }
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let err = |t: &str| Threshold::parse(t).unwrap_err();
        assert!(err("p99 300ms").contains("expected `METRIC OP VALUE`"));
        assert!(err("p101 < 3").contains("unknown metric `p101`"));
        assert!(err("latency < 3").contains("unknown metric"));
        assert!(err("success.p999x < 3").contains("unknown metric"));
        assert!(err("p99 < 3 hours").contains("`3 hours`: unknown duration unit `hours`"));
        assert!(err("error_rate < lots").contains("`lots` is not a number"));
    }

    /// Every error quotes the part of the expression that is wrong, not just the expression.
    #[test]
    fn parse_errors_name_the_bad_token() {
        let cases = [
            ("p99 < fast", "`fast` is not a duration"),
            ("p99 < ms", "`ms` is not a duration"),
            ("p99 << 3", "`< 3` is not a duration"),
            ("p99 <", "missing VALUE after `<`"),
            ("error_rate < x%", "`x%` is not a percentage"),
            ("rps > 1.2.3", "`1.2.3` is not a number"),
            ("p99x < 3", "unknown metric `p99x`"),
        ];
        for (expression, expected) in cases {
            let message = Threshold::parse(expression).unwrap_err();
            assert!(message.contains(expected), "{expression}: {message}");
            assert!(message.starts_with(&format!("`{expression}`")), "{message}");
        }
    }

    #[test]
    fn two_character_operators_win_over_their_prefix() {
        let t = Threshold::parse("p99 <= 2").unwrap();
        assert_eq!((t.op, t.limit), (Op::Le, 2.0));
        let t = Threshold::parse("requests != 0").unwrap();
        assert_eq!(t.op, Op::Ne);
    }
}
