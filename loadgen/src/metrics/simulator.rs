//! What `loadgen simulate` exports: the function's side of the Lambda metrics (invocations that
//! ran, errors, throttles, concurrency, cold starts), one series per function.
//!
//! The simulator's counters ([`Stats`], also at `GET /_sim/stats`) are the only copy: a collector
//! reads them at each scrape, so nothing is counted twice. `POST /_sim/reset` sets them back to
//! zero, which Prometheus sees as a counter reset, like a restart.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::simulate::{FunctionStats, Simulator};

/// The counters: name (`loadgen_simulator_<name>_total`), help (with its final period, which
/// the registry adds to registered metrics but not to a collector's), value.
type CounterOf = (&'static str, &'static str, fn(&FunctionStats) -> u64);
/// The gauges: name (`loadgen_simulator_<name>`), help, value.
type GaugeOf = (&'static str, &'static str, fn(&FunctionStats) -> u32);

const COUNTERS: [CounterOf; 7] = [
    (
        "invocations",
        "Invocations that ran, Event ones included; throttles and DryRun excluded (CloudWatch \
         Invocations).",
        |s| s.invocations,
    ),
    (
        "errors",
        "Invocations that raised an unhandled error, timeouts included (CloudWatch Errors).",
        |s| s.errors,
    ),
    (
        "timeouts",
        "Invocations that timed out (Sandbox.Timedout), also counted as errors.",
        |s| s.timeouts,
    ),
    (
        "throttles",
        "Invocations refused with 429 for the reserved concurrency (CloudWatch Throttles).",
        |s| s.throttles,
    ),
    (
        "cold_starts",
        "Invocations that created an execution environment and paid its init duration.",
        |s| s.cold_starts,
    ),
    (
        "ok_records",
        "Records of event source mapping events the function processed successfully.",
        |s| s.records_ok,
    ),
    (
        "failed_records",
        "Records of event source mapping events reported failed, or in an invocation that failed.",
        |s| s.records_failed,
    ),
];

const GAUGES: [GaugeOf; 2] = [
    (
        "concurrent_executions",
        "Invocations running now (CloudWatch ConcurrentExecutions).",
        |s| s.concurrency,
    ),
    (
        "environments",
        "Execution environments that exist now, busy or idle.",
        |s| s.environments,
    ),
];

/// A registry with the simulator's metrics, named `loadgen_simulator_…`, labelled `function`.
pub(crate) fn simulator_registry(sim: Arc<Simulator>) -> Registry {
    let mut registry = Registry::with_prefix("loadgen_simulator");
    registry.register_collector(Box::new(Functions(sim)));
    registry
}

/// Reads the simulator's counters at scrape time.
#[derive(Debug)]
struct Functions(Arc<Simulator>);

impl Collector for Functions {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        for (name, help, value) in COUNTERS {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (function, s) in &stats.functions {
                let labels = [("function", function.as_str())];
                ConstCounter::new(value(s)).encode(metric.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in GAUGES {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (function, s) in &stats.functions {
                let labels = [("function", function.as_str())];
                ConstGauge::new(i64::from(value(s))).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
