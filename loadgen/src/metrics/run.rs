//! What `loadgen run` exports while it runs: requests by outcome, errors and throttles by detail,
//! the latency histogram, requests in flight, late sends, cold starts and the target the load
//! profile asks for.
//!
//! The engine loop is the only writer (it owns the run's statistics), so the detail cap below is
//! exact. Memory is fixed: label values come from small fixed sets (outcomes, invocation types)
//! or are capped like the report's details ([`MAX_DETAILS`]).

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use lambda_invoke::InvocationType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::model::{MAX_DETAILS, OTHER_DETAIL, Outcome, Sample};
use crate::plan::Plan;
use crate::scenario::Model;

/// The metrics of one run. [`RunMetrics::new`] makes them; [`RunMetrics::register`] exports them
/// (unregistered metrics count for nobody, which is what `--metrics-addr off` gets).
#[derive(Debug)]
pub struct RunMetrics {
    invocations: Family<InvocationLabels, Counter>,
    errors: Capped<ErrorLabels>,
    request_errors: Capped<RequestErrorLabels>,
    throttles: Capped<ThrottleLabels>,
    duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    concurrent: Gauge,
    late_sends: Counter,
    /// `None` without log tails: no cold start is seen, and a zero would claim there were none.
    cold_starts: Option<Counter>,
    model: Model,
    /// The profile's value now: requests per second (open) or in flight (closed).
    target: Gauge<f64, AtomicU64>,
    late_after: Duration,
}

/// `loadgen_invocations_total`: every completed request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    outcome: &'static str,
    invocation_type: &'static str,
}

/// `loadgen_errors_total`: function errors by `X-Amz-Function-Error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: String,
}

/// `loadgen_invoke_request_errors_total`: requests the function did not answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestErrorLabels {
    outcome: &'static str,
    error: String,
}

/// `loadgen_throttles_total`: 429s by `Reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThrottleLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

impl RunMetrics {
    /// The metrics of a run of `plan`. The request counters of every outcome and of the plan's
    /// invocation types exist from the start, at zero, so a rate sees the first requests.
    pub fn new(plan: &Plan) -> RunMetrics {
        let metrics = RunMetrics {
            invocations: Family::default(),
            errors: Capped::default(),
            request_errors: Capped::default(),
            throttles: Capped::default(),
            duration: Family::new_with_constructor(duration_histogram),
            concurrent: Gauge::default(),
            late_sends: Counter::default(),
            cold_starts: plan.target.log_tail.then(Counter::default),
            model: plan.load.model,
            target: Gauge::default(),
            late_after: plan.load.late_after,
        };
        for request in &plan.requests {
            for outcome in Outcome::ALL {
                let labels = invocation(outcome, request.invocation_type);
                drop(metrics.invocations.get_or_create(&labels));
            }
        }
        metrics
    }

    /// Adds every metric to `registry`, named `loadgen_…`. The target gauge is the model's:
    /// `loadgen_target_rate` (open) or `loadgen_target_concurrency` (closed).
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("loadgen");
        registry.register(
            "invocations",
            "Requests completed, by outcome and invocation type (CloudWatch Invocations: \
             outcomes success and function_error)",
            self.invocations.clone(),
        );
        registry.register(
            "errors",
            "Invocations in which the function failed, by X-Amz-Function-Error (CloudWatch Errors)",
            self.errors.family.clone(),
        );
        registry.register(
            "invoke_request_errors",
            "Requests the function did not answer: HTTP errors by status and code, timeouts, \
             transport errors by message (no CloudWatch equivalent)",
            self.request_errors.family.clone(),
        );
        registry.register(
            "throttles",
            "Requests answered with 429, by Reason (CloudWatch Throttles)",
            self.throttles.family.clone(),
        );
        registry.register_with_unit(
            "duration",
            "Latency from the scheduled send (or the actual one, if earlier) to completion, \
             coordinated-omission corrected, by outcome (CloudWatch Duration, as the caller sees it)",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "concurrent_executions",
            "Requests in flight (CloudWatch ConcurrentExecutions, as the caller drives it)",
            self.concurrent.clone(),
        );
        registry.register(
            "late_sends",
            "Requests sent later than late_after behind their schedule",
            self.late_sends.clone(),
        );
        if let Some(cold_starts) = &self.cold_starts {
            registry.register(
                "cold_starts",
                "Invocations whose log tail reports an Init Duration",
                cold_starts.clone(),
            );
        }
        let (name, help) = match self.model {
            Model::Open => (
                "target_rate",
                "Open model: the arrival rate the load profile asks for now, requests per second",
            ),
            Model::Closed => (
                "target_concurrency",
                "Closed model: the concurrency the load profile asks for now",
            ),
        };
        registry.register(name, help, self.target.clone());
    }

    /// A request went out; `in_flight` are open now.
    pub(crate) fn sent(&self, in_flight: usize) {
        self.concurrent.set(gauge_value(in_flight));
    }

    /// A request ended as `sample` says; `in_flight` are still open. Counted as the run's
    /// [`Recorder`](crate::model::Recorder) counts it: the same latency, late rule and outcome.
    pub(crate) fn completed(
        &mut self,
        sample: &Sample,
        invocation_type: InvocationType,
        in_flight: usize,
    ) {
        self.concurrent.set(gauge_value(in_flight));
        let outcome = sample.outcome.as_str();
        self.invocations
            .get_or_create(&invocation(sample.outcome, invocation_type))
            .inc();
        self.duration
            .get_or_create(&OutcomeLabels { outcome })
            .observe(sample.latency.as_secs_f64());
        if sample.send_lag > self.late_after {
            self.late_sends.inc();
        }
        if let (Some(cold_starts), Some(_)) = (&self.cold_starts, sample.init_duration()) {
            cold_starts.inc();
        }
        let detail = sample.detail.as_deref().unwrap_or_default();
        match sample.outcome {
            Outcome::Success => {}
            Outcome::FunctionError => self.errors.count(detail, |error| ErrorLabels { error }),
            Outcome::Throttle => self
                .throttles
                .count(detail, |reason| ThrottleLabels { reason }),
            Outcome::HttpError | Outcome::Timeout | Outcome::TransportError => {
                self.request_errors
                    .count(detail, |error| RequestErrorLabels { outcome, error });
            }
        }
    }

    /// The load profile asks for `value` now; `None` once the run stops sending.
    pub(crate) fn target(&self, value: Option<f64>) {
        self.target.set(value.unwrap_or_default());
    }
}

fn invocation(outcome: Outcome, invocation_type: InvocationType) -> InvocationLabels {
    InvocationLabels {
        outcome: outcome.as_str(),
        invocation_type: invocation_type.as_str(),
    }
}

/// A counter family labelled by a detail the target chose (an error message, a reason), with at
/// most [`MAX_DETAILS`] of them: a target that puts request ids into its error messages cannot
/// grow the label sets. Later details are counted as [`OTHER_DETAIL`].
#[derive(Debug)]
struct Capped<S> {
    family: Family<S, Counter>,
    /// The label sets counted under their own detail.
    kept: HashSet<S>,
}

impl<S: Clone + Hash + Eq> Default for Capped<S> {
    fn default() -> Capped<S> {
        Capped {
            family: Family::default(),
            kept: HashSet::new(),
        }
    }
}

impl<S: Clone + Hash + Eq> Capped<S> {
    /// Counts one under the labels `labels` makes of `detail`, or of `(other)`.
    fn count(&mut self, detail: &str, labels: impl Fn(String) -> S) {
        let exact = labels(detail.to_owned());
        let labels = if self.kept.contains(&exact) {
            exact
        } else if self.kept.len() < MAX_DETAILS {
            self.kept.insert(exact.clone());
            exact
        } else {
            labels(OTHER_DETAIL.to_owned())
        };
        self.family.get_or_create(&labels).inc();
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Buckets from 0.5 ms doubling up to ~17 min: a local simulator answers in well under a
/// millisecond, a Lambda function may run 15 minutes. The report's HdrHistograms stay the exact
/// record (0.1 %); these are for watching a run live.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 22))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::metrics::{Format, encode};
    use crate::model::ReportLine;
    use crate::scenario::Scenario;

    fn plan(toml_text: &str) -> Plan {
        let scenario: Scenario = toml::from_str(toml_text).unwrap();
        Plan::new(scenario, Path::new(".")).unwrap()
    }

    const OPEN: &str = r#"
        [target]
        function = "f"
        log_tail = true
        [load]
        rate = 10
        duration = "1s"
        late_after = "10ms"
    "#;

    fn sample(outcome: Outcome, detail: Option<&str>) -> Sample {
        Sample {
            outcome,
            detail: detail.map(str::to_owned),
            latency: Duration::from_millis(3),
            service_time: Duration::from_millis(2),
            send_lag: Duration::ZERO,
            report: None,
        }
    }

    fn exported(metrics: &RunMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        encode(&registry, Format::Prometheus)
    }

    /// The value of the sample line `series` (name and labels exactly as encoded).
    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn request_counters_exist_at_zero_for_the_plans_invocation_types() {
        let text = exported(&RunMetrics::new(&plan(OPEN)));
        for outcome in Outcome::ALL {
            let series = format!(
                r#"loadgen_invocations_total{{outcome="{outcome}",invocation_type="RequestResponse"}}"#
            );
            assert_eq!(value(&text, &series), 0.0);
        }
        assert!(!text.contains(r#"invocation_type="Event""#), "{text}");
        assert!(
            !text.contains("loadgen_duration_seconds_count"),
            "no sample, no histogram"
        );
    }

    #[test]
    fn a_sample_counts_as_the_recorder_counts_it() {
        let mut metrics = RunMetrics::new(&plan(OPEN));
        metrics.sent(1);
        metrics.sent(2);
        let mut late_cold = sample(Outcome::Success, None);
        late_cold.send_lag = Duration::from_millis(11);
        late_cold.report = Some(ReportLine::cold(Duration::from_millis(200)));
        metrics.completed(&late_cold, InvocationType::RequestResponse, 1);
        let mut on_time = sample(Outcome::FunctionError, Some("Unhandled"));
        on_time.send_lag = Duration::from_millis(10);
        metrics.completed(&on_time, InvocationType::Event, 0);
        let text = exported(&metrics);
        let expected = [
            (
                r#"loadgen_invocations_total{outcome="success",invocation_type="RequestResponse"}"#,
                1.0,
            ),
            (
                r#"loadgen_invocations_total{outcome="function_error",invocation_type="Event"}"#,
                1.0,
            ),
            (r#"loadgen_errors_total{error="Unhandled"}"#, 1.0),
            (r#"loadgen_duration_seconds_count{outcome="success"}"#, 1.0),
            (r#"loadgen_duration_seconds_sum{outcome="success"}"#, 0.003),
            (
                r#"loadgen_duration_seconds_bucket{outcome="success",le="0.004"}"#,
                1.0,
            ),
            (
                r#"loadgen_duration_seconds_bucket{outcome="success",le="0.002"}"#,
                0.0,
            ),
            ("loadgen_late_sends_total", 1.0),
            ("loadgen_cold_starts_total", 1.0),
            ("loadgen_concurrent_executions", 0.0),
            ("loadgen_target_rate", 0.0),
        ];
        for (series, want) in expected {
            assert_eq!(value(&text, series), want, "{series}");
        }
        assert!(!text.contains("loadgen_target_concurrency"), "{text}");
    }

    #[test]
    fn throttles_and_request_errors_are_counted_by_detail() {
        let mut metrics = RunMetrics::new(&plan(OPEN));
        let reason = "ReservedFunctionConcurrentInvocationLimitExceeded";
        for _ in 0..2 {
            metrics.completed(
                &sample(Outcome::Throttle, Some(reason)),
                InvocationType::RequestResponse,
                0,
            );
        }
        for (outcome, detail) in [
            (Outcome::HttpError, Some("404 ResourceNotFoundException")),
            (Outcome::Timeout, None),
            (Outcome::TransportError, Some("connection refused")),
        ] {
            metrics.completed(&sample(outcome, detail), InvocationType::RequestResponse, 0);
        }
        let text = exported(&metrics);
        assert_eq!(
            value(
                &text,
                &format!(r#"loadgen_throttles_total{{reason="{reason}"}}"#)
            ),
            2.0
        );
        for series in [
            r#"loadgen_invoke_request_errors_total{outcome="http_error",error="404 ResourceNotFoundException"}"#,
            r#"loadgen_invoke_request_errors_total{outcome="timeout",error=""}"#,
            r#"loadgen_invoke_request_errors_total{outcome="transport_error",error="connection refused"}"#,
        ] {
            assert_eq!(value(&text, series), 1.0, "{series}");
        }
    }

    #[test]
    fn details_beyond_the_cap_are_counted_as_other() {
        let mut metrics = RunMetrics::new(&plan(OPEN));
        let transport = |message: String| sample(Outcome::TransportError, Some(&message));
        for i in 0..(MAX_DETAILS + 5) {
            metrics.completed(
                &transport(format!("reset by peer, id {i}")),
                InvocationType::RequestResponse,
                0,
            );
        }
        // A detail seen before the cap keeps its own series.
        metrics.completed(
            &transport("reset by peer, id 0".to_owned()),
            InvocationType::RequestResponse,
            0,
        );
        let text = exported(&metrics);
        let series = text
            .lines()
            .filter(|l| l.starts_with("loadgen_invoke_request_errors_total{"))
            .count();
        assert_eq!(series, MAX_DETAILS + 1);
        let error = |e: &str| {
            value(
                &text,
                &format!(
                    r#"loadgen_invoke_request_errors_total{{outcome="transport_error",error="{e}"}}"#
                ),
            )
        };
        assert_eq!(error("(other)"), 5.0);
        assert_eq!(error("reset by peer, id 0"), 2.0);
    }

    #[test]
    fn the_target_gauge_is_the_models() {
        let closed = plan(
            "[target]\nurl = \"http://127.0.0.1:1/\"\n[load]\nconcurrency = 4\nduration = \"1s\"\n",
        );
        let metrics = RunMetrics::new(&closed);
        metrics.target(Some(4.0));
        let text = exported(&metrics);
        assert_eq!(value(&text, "loadgen_target_concurrency"), 4.0);
        assert!(!text.contains("loadgen_target_rate"), "{text}");
        assert!(
            !text.contains("loadgen_cold_starts"),
            "not measured without log tails"
        );
        metrics.target(None);
        assert_eq!(
            value(&exported(&metrics), "loadgen_target_concurrency"),
            0.0
        );
    }
}
