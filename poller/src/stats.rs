//! What a mapping did, counted and measured. Names follow CloudWatch's Lambda and event-source-mapping
//! metrics (`PolledEventCount`, `InvokedEventCount`, `Invocations`, `Duration`, `IteratorAge`, …; the
//! table is in docs/metrics.md) so that the exit summary and the Prometheus metrics read like AWS's.
//!
//! Every value lives in exactly one place: a `prometheus-client` metric. [`Counters`] made by
//! [`Metrics::mapping`] hold the series of the registry labelled with the mapping, so what the mapping
//! counts is what `GET /metrics` shows ([`crate::metrics`] serves it); [`Counters::default`] makes
//! unregistered ones.

use std::fmt;
use std::future::Future;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::config::Mapping;
use crate::health::{Health, MappingHealth};

/// Every metric name starts with this, then `_`.
const PREFIX: &str = "poller";

/// The metrics of one poller process: a registry with every family registered. Families without
/// series (no mapping yet) are not exported.
#[derive(Debug)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    families: Families,
    health: Health,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let families = Families::register(&mut registry);
        Metrics {
            registry: std::sync::Arc::new(registry),
            families,
            health: Health::default(),
        }
    }

    /// The counters of one mapping: its series in every family, created at zero. Asking again with
    /// the same labels gives counters sharing the same series.
    pub fn mapping(&self, labels: MappingLabels) -> Counters {
        let health = self.health.mapping(&labels.mapping);
        self.families.mapping(labels, health)
    }

    /// Every mapping's health, for `/readyz`.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The registry, shared, to serve it.
    pub fn shared_registry(&self) -> std::sync::Arc<Registry> {
        self.registry.clone()
    }

    /// The registry, to encode it.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The labels of a mapping's series, the dimensions CloudWatch would use.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MappingLabels {
    /// The mapping's UUID (CloudWatch `EventSourceMappingUUID`).
    pub mapping: String,
    /// The event source ARN.
    pub source: String,
    /// The function name as the mapping gives it (CloudWatch `FunctionName`).
    pub function: String,
}

impl MappingLabels {
    pub fn of(mapping: &Mapping) -> MappingLabels {
        MappingLabels {
            mapping: mapping.uuid.clone(),
            source: mapping.source.to_string(),
            function: mapping.function_name.clone(),
        }
    }
}

/// The labels of a per-shard series (streams).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    #[prometheus(flatten)]
    pub mapping: MappingLabels,
    /// The shard id.
    pub shard: String,
}

/// Declares the counters once: the fields of [`Counters`] and [`Snapshot`], and the registry family
/// of each, named `poller_<metric>_total` with the field's doc comment as its help text.
macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident => $metric:literal, )*) => {
        /// Live counters and measures of one mapping, shared by its tasks.
        #[derive(Debug)]
        pub struct Counters {
            $( $(#[doc = $doc])* pub $name: Counter, )*
            measures: Measures,
            /// What the mapping's tasks report for `/readyz` (not a metric).
            pub health: std::sync::Arc<MappingHealth>,
        }

        /// A point-in-time copy of the counters of [`Counters`].
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct Snapshot { $( $(#[doc = $doc])* pub $name: u64, )* }

        impl Counters {
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $( $name: self.$name.get(), )* }
            }
        }

        impl Default for Counters {
            /// Counters outside any registry (nothing exports them).
            fn default() -> Counters {
                Counters {
                    $( $name: Counter::default(), )*
                    measures: Measures::default(),
                    health: std::sync::Arc::new(MappingHealth::new("")),
                }
            }
        }

        impl fmt::Display for Snapshot {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let fields = [$( (stringify!($name), self.$name), )*];
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{name}={value}")?;
                }
                Ok(())
            }
        }

        /// The registry's families: one series per mapping (and per shard for the iterator age).
        #[derive(Debug)]
        struct Families {
            $( $name: Family<MappingLabels, Counter>, )*
            measures: MeasureFamilies,
        }

        impl Families {
            /// Create every family and register it in `registry`.
            fn register(registry: &mut Registry) -> Families {
                $(
                    let $name = Family::default();
                    registry.register($metric, help(&[$($doc),*]), $name.clone());
                )*
                Families { $( $name, )* measures: MeasureFamilies::register(registry) }
            }

            /// The series of one mapping (created at zero if new).
            fn mapping(&self, labels: MappingLabels, health: std::sync::Arc<MappingHealth>) -> Counters {
                Counters {
                    $( $name: self.$name.get_or_create_owned(&labels), )*
                    measures: self.measures.mapping(labels),
                    health,
                }
            }
        }
    };
}

counters! {
    /// Records read from the source (CloudWatch PolledEventCount).
    polled => "polled_events",
    /// Records dropped because no filter matched; SQS deletes them (FilteredOutEventCount).
    filtered_out => "filtered_out_events",
    /// Records sent to the function, each attempt counting (InvokedEventCount).
    invoked => "invoked_events",
    /// Invocations that reached the function, each attempt counting (Invocations).
    invocations => "invocations",
    /// Invocations in which the function failed: error, timeout, or an invalid partial-batch
    /// response (Errors).
    failed_invocations => "errors",
    /// Records the function did not process successfully in an invocation (FailedInvokeEventCount).
    failed_invoke_records => "failed_invoke_events",
    /// Invoke requests answered with 429 (Throttles).
    throttles => "throttles",
    /// Invoke requests that did not reach the function for another reason: 5xx, transport, 4xx
    /// (no CloudWatch equivalent).
    invoke_errors => "invoke_request_errors",
    /// SQS messages deleted from the queue, processed or filtered out (DeletedEventCount).
    deleted => "deleted_events",
    /// Stream records given up on, retries exhausted or too old, sent to the on-failure destination
    /// if there is one (DroppedEventCount).
    dropped => "dropped_events",
    /// Stream records reported to the on-failure destination (OnFailureDestinationDeliveredEventCount).
    on_failure_delivered => "on_failure_destination_delivered_events",
    /// Stream checkpoints written (no CloudWatch equivalent).
    checkpoints => "checkpoints",
    /// Shard leases this poller took: at start, after another poller's expired, or stolen to balance
    /// a fleet (`--lease-table`).
    lease_takes => "lease_takes",
    /// Shard leases this poller lost: taken by another poller, or not renewed for the failover time.
    leases_lost => "leases_lost",
    /// SQS lanes and shard workers that failed and were restarted (no CloudWatch equivalent).
    worker_failures => "worker_failures",
    /// Reads of the lease table that failed: unreachable, not readable, or holding a corrupt lease.
    /// While they fail no shard is taken or handed over (no CloudWatch equivalent).
    lease_table_errors => "lease_table_errors",
    /// Stream reads (GetShardIterator, GetRecords) that failed and are retried after a backoff:
    /// throttled, endpoint unreachable, 5xx (no CloudWatch equivalent).
    read_errors => "stream_read_errors",
    /// SQS messages let go after the longest hold because the function did not run (throttled,
    /// service errors) for that long; they reappear and count a receive (no CloudWatch equivalent).
    throttle_releases => "sqs_throttle_releases",
}

impl Counters {
    pub fn add(counter: &Counter, n: usize) {
        counter.inc_by(n as u64);
    }

    /// Make one invoke request: it is in flight (ConcurrentExecutions) until it ends or is dropped,
    /// and if it reached the function (`Ok`: the function ran, successfully or not) its round trip is
    /// observed as its Duration. Throttled and failed requests did not run the function, so, as on
    /// Lambda, they have no duration.
    pub async fn track_invoke<T, E>(&self, request: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let in_flight = InFlight::start(&self.measures.in_flight);
        let started = Instant::now();
        let result = request.await;
        if result.is_ok() {
            self.measures.duration.observe(started.elapsed().as_secs_f64());
            self.health.invoked();
        } else {
            self.health.invoke_failed();
        }
        drop(in_flight);
        result
    }

    /// A lane or shard worker failed for `reason` and is being restarted: counted, and shown by
    /// `/readyz`.
    pub fn worker_failed(&self, reason: impl Into<String>) {
        self.worker_failures.inc();
        self.health.worker_failed(reason);
    }

    /// A stream batch of `shard` is final: its last record arrived in the stream at
    /// `last_arrival_ms` (epoch milliseconds). Sets the shard's IteratorAge.
    pub fn batch_done(&self, shard: &str, last_arrival_ms: i64) {
        self.measures
            .iterator_age
            .get_or_create(&self.measures.shard(shard))
            .set(age_millis(now_millis(), [last_arrival_ms]).unwrap_or_default());
    }

    /// This process stopped working on `shard` (ended, lease lost or released): its iterator age is
    /// no longer ours to report, and a stale value would keep a dashboard's maximum up.
    pub fn shard_stopped(&self, shard: &str) {
        self.measures.iterator_age.remove(&self.measures.shard(shard));
    }

    /// An SQS receive returned messages sent at `sent_timestamps` (epoch milliseconds, the
    /// `SentTimestamp` attribute): the oldest one's age becomes the message age.
    pub fn received(&self, sent_timestamps: impl IntoIterator<Item = i64>) {
        if let Some(age) = age_millis(now_millis(), sent_timestamps) {
            self.measures.message_age.set(age);
        }
    }
}

/// Everything besides the counters: gauges and the duration histogram.
#[derive(Debug)]
struct Measures {
    /// Invoke requests in flight (ConcurrentExecutions).
    in_flight: Gauge,
    /// Round trip of invocations that reached the function, in seconds (Duration).
    duration: Histogram,
    /// SQS: age of the oldest message of the last receive that returned messages, in milliseconds.
    message_age: Gauge,
    /// Streams: per shard, age of the last record of the last batch when it was final (IteratorAge).
    iterator_age: Family<ShardLabels, Gauge>,
    /// The mapping's labels, for the per-shard series.
    labels: MappingLabels,
}

impl Measures {
    fn shard(&self, shard: &str) -> ShardLabels {
        ShardLabels {
            mapping: self.labels.clone(),
            shard: shard.to_owned(),
        }
    }
}

impl Default for Measures {
    fn default() -> Measures {
        Measures {
            in_flight: Gauge::default(),
            duration: duration_histogram(),
            message_age: Gauge::default(),
            iterator_age: Family::default(),
            labels: MappingLabels::default(),
        }
    }
}

/// The families behind [`Measures`].
#[derive(Debug)]
struct MeasureFamilies {
    in_flight: Family<MappingLabels, Gauge>,
    duration: Family<MappingLabels, Histogram, fn() -> Histogram>,
    message_age: Family<MappingLabels, Gauge>,
    iterator_age: Family<ShardLabels, Gauge>,
}

impl MeasureFamilies {
    fn register(registry: &mut Registry) -> MeasureFamilies {
        let families = MeasureFamilies {
            in_flight: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            message_age: Family::default(),
            iterator_age: Family::default(),
        };
        registry.register(
            "concurrent_executions",
            "Invoke requests in flight (CloudWatch ConcurrentExecutions)",
            families.in_flight.clone(),
        );
        registry.register_with_unit(
            "invocation_duration",
            "Round trip of invocations that reached the function (CloudWatch Duration)",
            Unit::Seconds,
            families.duration.clone(),
        );
        registry.register_with_unit(
            "message_age",
            "SQS: age of the oldest message of the last receive that returned messages \
             (SentTimestamp; like SQS ApproximateAgeOfOldestMessage)",
            Unit::Other("milliseconds".to_owned()),
            families.message_age.clone(),
        );
        registry.register_with_unit(
            "iterator_age",
            "Streams: age of the last record of the shard's last batch when processing finished \
             (CloudWatch IteratorAge)",
            Unit::Other("milliseconds".to_owned()),
            families.iterator_age.clone(),
        );
        families
    }

    fn mapping(&self, labels: MappingLabels) -> Measures {
        Measures {
            in_flight: self.in_flight.get_or_create_owned(&labels),
            duration: self.duration.get_or_create_owned(&labels),
            message_age: self.message_age.get_or_create_owned(&labels),
            iterator_age: self.iterator_age.clone(),
            labels,
        }
    }
}

/// Decrements the in-flight gauge when the invoke ends, also when its future is dropped (shutdown
/// aborting a batch).
struct InFlight<'a>(&'a Gauge);

impl<'a> InFlight<'a> {
    fn start(gauge: &'a Gauge) -> InFlight<'a> {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Buckets from 1 ms doubling up to ~17 min: Lambda durations run from 1 ms to the 15-minute timeout.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 21))
}

/// Age in milliseconds, at `now_ms`, of the oldest of `timestamps_ms` (epoch milliseconds); never
/// negative, since clocks of different hosts may disagree a little. None if there are none.
fn age_millis(now_ms: i64, timestamps_ms: impl IntoIterator<Item = i64>) -> Option<i64> {
    timestamps_ms.into_iter().min().map(|oldest| (now_ms - oldest).max(0))
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A help text from doc comment lines: one line, spaces collapsed, no final period (the encoder adds
/// one).
fn help(doc: &[&str]) -> String {
    let text = doc
        .iter()
        .flat_map(|line| line.split_whitespace())
        .collect::<Vec<_>>()
        .join(" ");
    text.trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> MappingLabels {
        MappingLabels {
            mapping: "m-1".to_owned(),
            source: "arn:aws:kinesis:us-east-1:123456789012:stream/s".to_owned(),
            function: "f".to_owned(),
        }
    }

    /// The registry in OpenMetrics text.
    fn exported(metrics: &Metrics) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, metrics.registry()).expect("encode");
        text
    }

    #[test]
    fn counters_of_a_mapping_are_its_series() {
        let metrics = Metrics::new();
        assert_eq!(exported(&metrics), "# EOF\n", "no mapping, no series");
        let counters = metrics.mapping(labels());
        Counters::add(&counters.polled, 7);
        // The same labels share the series: two handles, one count.
        Counters::add(&metrics.mapping(labels()).polled, 1);
        let text = exported(&metrics);
        let series = r#"poller_polled_events_total{mapping="m-1",source="arn:aws:kinesis:us-east-1:123456789012:stream/s",function="f"} 8"#;
        assert!(text.lines().any(|l| l == series), "{text}");
        assert!(
            text.contains("# HELP poller_polled_events Records read from the source (CloudWatch PolledEventCount).\n"),
            "{text}"
        );
        assert_eq!(counters.snapshot().polled, 8);
    }

    #[test]
    fn iterator_age_is_per_shard_and_goes_when_the_shard_stops() {
        let metrics = Metrics::new();
        let counters = metrics.mapping(labels());
        let arrived = now_millis() - 60_000;
        counters.batch_done("shardId-000000000001", arrived);
        let text = exported(&metrics);
        let line = text
            .lines()
            .find(|l| l.starts_with("poller_iterator_age_milliseconds{"))
            .unwrap_or_else(|| panic!("no iterator age in {text}"));
        assert!(
            line.contains(r#"function="f",shard="shardId-000000000001"} "#),
            "{line}"
        );
        let age: i64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("value");
        assert!((60_000..70_000).contains(&age), "{line}");

        counters.shard_stopped("shardId-000000000001");
        assert!(!exported(&metrics).contains("poller_iterator_age"));
    }

    #[test]
    fn help_is_one_line_without_final_period() {
        assert_eq!(
            help(&[" Records given up on,", " retries exhausted."]),
            "Records given up on, retries exhausted"
        );
    }

    #[test]
    fn age_is_that_of_the_oldest_and_never_negative() {
        assert_eq!(age_millis(10_000, [9_000, 7_500, 9_999]), Some(2_500));
        assert_eq!(age_millis(10_000, [10_050]), Some(0));
        assert_eq!(age_millis(10_000, []), None);
    }

    #[test]
    fn snapshot_reads_the_counters() {
        let counters = Counters::default();
        Counters::add(&counters.polled, 3);
        Counters::add(&counters.deleted, 2);
        let snapshot = counters.snapshot();
        assert_eq!((snapshot.polled, snapshot.deleted, snapshot.invoked), (3, 2, 0));
        assert!(
            snapshot.to_string().starts_with("polled=3 filtered_out=0 invoked=0 "),
            "{snapshot}"
        );
    }

    /// The value of the one series of `name` in `text`.
    fn value(text: &str, name: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number")
    }

    #[tokio::test]
    async fn an_invoke_is_in_flight_until_it_ends_and_timed_if_it_ran() {
        let metrics = Metrics::new();
        let counters = metrics.mapping(labels());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let call = counters.track_invoke(async {
            rx.await.expect("released");
            Ok::<_, ()>(())
        });
        let mut call = std::pin::pin!(call);
        assert!(futures::poll!(call.as_mut()).is_pending());
        assert_eq!(value(&exported(&metrics), "poller_concurrent_executions"), 1.0);
        tx.send(()).expect("send");
        call.await.expect("ok");
        let text = exported(&metrics);
        assert_eq!(value(&text, "poller_concurrent_executions"), 0.0);
        assert_eq!(value(&text, "poller_invocation_duration_seconds_count"), 1.0);

        assert!(counters.track_invoke(async { Err::<(), _>("throttled") }).await.is_err());
        let text = exported(&metrics);
        assert_eq!(
            value(&text, "poller_invocation_duration_seconds_count"),
            1.0,
            "a request that did not run has no duration"
        );
    }

    #[tokio::test]
    async fn a_dropped_invoke_is_no_longer_in_flight() {
        let counters = Counters::default();
        {
            let call = counters.track_invoke(std::future::pending::<Result<(), ()>>());
            let mut call = std::pin::pin!(call);
            assert!(futures::poll!(call.as_mut()).is_pending());
            assert_eq!(counters.measures.in_flight.get(), 1);
        }
        assert_eq!(counters.measures.in_flight.get(), 0);
    }
}
