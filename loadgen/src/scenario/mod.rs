//! Load scenarios as written: the TOML format (`scenarios/*.toml`) and the command-line values
//! that replace parts of it. Plain serde structs, no validation (that is
//! [`Plan::new`](crate::plan::Plan::new)'s) and no command-line parser (the CLI turns its flags
//! into [`Overrides`]).
//!
//! ```toml
//! name = "checkout"
//! thresholds = ["p99 < 300ms", "throttle_rate < 1%"]
//!
//! [target]
//! function = "checkout"                     # or: url = "http://127.0.0.1:9001/http/checkout"
//! endpoint_url = "http://127.0.0.1:9001"
//!
//! [load]
//! model = "open"
//! stages = [{ duration = "10s", target = 100 }, { duration = "30s", target = "6000/m" }]
//!
//! [[requests]]
//! payload = '{"orderId": "{{uuid}}"}'
//! ```
//!
//! Durations and rates take the forms of [`units`]. The format is documented in docs/loadgen.md.

pub mod units;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::Error;
use crate::cost::Architecture;

/// A scenario file as written. Every field is optional so that flags can fill in or replace
/// parts; [`Plan::new`](crate::plan::Plan::new) checks the result.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in reports; defaults to the file name without extension.
    pub name: Option<String>,
    /// Seeds the payload randomness. Unset: seeded by the OS.
    pub seed: Option<u64>,
    /// Pass/fail criteria (see [`Threshold`](crate::plan::Threshold)); a breach makes
    /// `loadgen run` exit with 1.
    #[serde(default)]
    pub thresholds: Vec<String>,
    /// Stop the run as soon as a threshold fails, as k6's `abortOnFail` does.
    #[serde(default)]
    pub abort_on_fail: bool,
    /// Length of the reporting intervals (progress, `.hlog`, CSV, plots). Default 1 s.
    #[serde(default, deserialize_with = "units::option_duration")]
    pub interval: Option<Duration>,
    #[serde(default)]
    pub target: TargetConfig,
    #[serde(default)]
    pub load: LoadConfig,
    /// The request mix; each request picks one entry by weight. Default: one `{}` payload.
    #[serde(default)]
    pub requests: Vec<RequestConfig>,
    /// Prices for the cost estimate (from the `REPORT` lines, so with `target.log_tail`).
    #[serde(default)]
    pub pricing: PricingConfig,
}

/// `[pricing]`: what a GB-second and a request cost. Unset prices are Lambda's published ones for
/// the `architecture` (see [`crate::cost`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// `x86_64` (default) or `arm64`, as the function's `Architectures` says.
    pub architecture: Option<Architecture>,
    /// USD per GB-second of billed duration.
    pub gb_second: Option<f64>,
    /// USD per million requests.
    pub per_million_requests: Option<f64>,
}

/// `[target]`: where requests go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Lambda Invoke API target: function name, ARN, or `name:qualifier`.
    pub function: Option<String>,
    /// Plain HTTP target: each payload is sent to this URL.
    pub url: Option<String>,
    /// HTTP method for a `url` target. Default `POST`.
    pub method: Option<String>,
    /// Extra HTTP headers for a `url` target (`Content-Type: application/json` unless set here).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Lambda endpoint override (a simulator, LocalStack, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// AWS region; default from the environment/profile, else `us-east-1`.
    pub region: Option<String>,
    /// Per-request timeout; a request without an answer by then is a `timeout`. Default 30 s.
    #[serde(default, deserialize_with = "units::option_duration")]
    pub timeout: Option<Duration>,
    /// Ask for `LogType=Tail` and count cold starts from the `REPORT` line's `Init Duration`.
    #[serde(default)]
    pub log_tail: bool,
    /// The function's on-success (or on-failure) SQS destination, a queue URL: `Event`
    /// invocations are matched to their destination records by request id, for the end-to-end
    /// latency (send → the function's completion).
    pub destination_queue: Option<String>,
    /// How long after the last request to keep collecting destination records. Default 5 min
    /// (Lambda's default retries of a failing event take about 3).
    #[serde(default, deserialize_with = "units::option_duration")]
    pub destination_grace: Option<Duration>,
}

/// `[load]`: the load model and its profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// `open` (arrival rate) or `closed` (concurrency). Implied by `rate` or `concurrency`.
    pub model: Option<Model>,
    /// Open model, constant: requests per second (`50`, `"50/s"`, `"3000/m"`).
    #[serde(default, deserialize_with = "units::option_rate")]
    pub rate: Option<f64>,
    /// Closed model, constant: requests in flight.
    pub concurrency: Option<u32>,
    /// Length of a constant load; with `stages`, cuts the run short.
    #[serde(default, deserialize_with = "units::option_duration")]
    pub duration: Option<Duration>,
    /// Value (rate or concurrency) at the start of the first stage. Default 0.
    pub start: Option<f64>,
    /// Ramps: each moves linearly to its `target` over its `duration`.
    #[serde(default)]
    pub stages: Vec<StageConfig>,
    /// Open model: most requests in flight at once. A request due while all are taken waits and
    /// goes out late (its latency still counts from when it was due). Default 1000.
    pub max_in_flight: Option<usize>,
    /// A request sent later than this after its scheduled time counts as late. Default 10 ms.
    #[serde(default, deserialize_with = "units::option_duration")]
    pub late_after: Option<Duration>,
    /// Stop after this many requests.
    pub max_requests: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// Arrival rate: requests go out on schedule whatever the target does.
    Open,
    /// Concurrency: a new request goes out when one completes.
    Closed,
}

impl Model {
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Open => "open",
            Model::Closed => "closed",
        }
    }
}

/// One ramp: from the previous value to `target` over `duration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    #[serde(deserialize_with = "units::duration")]
    pub duration: Duration,
    /// Requests per second (open model; any rate form) or requests in flight (closed model).
    #[serde(deserialize_with = "units::rate")]
    pub target: f64,
}

/// `[[requests]]`: one kind of request in the mix.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    pub name: Option<String>,
    /// Relative share in the mix. Default 1.
    pub weight: Option<u32>,
    /// `RequestResponse` (default), `Event` or `DryRun`; Lambda targets only.
    pub invocation_type: Option<InvocationTypeName>,
    /// Payload template (see [`Template`](crate::plan::Template)).
    pub payload: Option<String>,
    /// Payload template read from a file, relative to the scenario file.
    pub payload_file: Option<PathBuf>,
    /// One payload per request from a file, relative to the scenario file: JSON Lines
    /// (`.jsonl`, `.ndjson`: one JSON document a line) or CSV (`.csv`: a header row, then each
    /// row becomes a JSON object of strings).
    pub payloads_file: Option<PathBuf>,
    /// Order in which `payloads_file` entries are used. Default `round-robin`.
    pub payload_order: Option<PayloadOrder>,
}

/// How requests go through the entries of a `payloads_file`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadOrder {
    /// In file order, starting over at the end.
    #[default]
    RoundRobin,
    /// Uniformly at random from the run's RNG: repeatable with `seed`.
    Random,
}

/// `X-Amz-Invocation-Type` as written in scenarios and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum InvocationTypeName {
    RequestResponse,
    Event,
    DryRun,
}

/// Values given on the command line; each replaces the scenario's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Switches to a plain HTTP target.
    pub target_url: Option<String>,
    pub method: Option<String>,
    /// Added to the scenario's headers (replacing one of the same name).
    pub headers: Vec<(String, String)>,
    /// Switches to a Lambda target.
    pub function: Option<String>,
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub timeout: Option<Duration>,
    pub log_tail: bool,
    pub destination_queue: Option<String>,
    pub destination_grace: Option<Duration>,
    /// Replaces the load with a constant open-model rate.
    pub rate: Option<f64>,
    /// Replaces the load with a constant closed-model concurrency.
    pub concurrency: Option<u32>,
    /// Replaces the load with these ramps.
    pub stages: Option<Vec<StageConfig>>,
    pub model: Option<Model>,
    pub duration: Option<Duration>,
    pub max_requests: Option<u64>,
    pub max_in_flight: Option<usize>,
    /// Replaces the request mix with this one payload.
    pub payload: Option<String>,
    /// Replaces the request mix with this one payload file (a path as given, not relative to
    /// the scenario).
    pub payload_file: Option<PathBuf>,
    /// Replaces the request mix with this payloads file (as given, not relative to the scenario).
    pub payloads_file: Option<PathBuf>,
    /// Applies to every request of the mix.
    pub payload_order: Option<PayloadOrder>,
    /// Applies to every request of the mix.
    pub invocation_type: Option<InvocationTypeName>,
    /// Added to the scenario's.
    pub thresholds: Vec<String>,
    pub abort_on_fail: bool,
    pub interval: Option<Duration>,
    pub seed: Option<u64>,
    pub architecture: Option<Architecture>,
    pub price_gb_second: Option<f64>,
    pub price_per_million_requests: Option<f64>,
}

impl Scenario {
    /// Reads and parses a scenario file (validation is [`Plan::new`](crate::plan::Plan::new)'s). The name defaults to the
    /// file stem.
    pub fn load(path: &Path) -> Result<Scenario, Error> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::ReadConfig {
            path: path.to_owned(),
            error,
        })?;
        let mut scenario: Scenario = toml::from_str(&text).map_err(|error| Error::ParseConfig {
            path: path.to_owned(),
            error: Box::new(error),
        })?;
        if scenario.name.is_none() {
            scenario.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        Ok(scenario)
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, o: &Overrides) {
        let target = &mut self.target;
        if let Some(url) = &o.target_url {
            target.url = Some(url.clone());
            target.function = None;
        }
        if let Some(function) = &o.function {
            target.function = Some(function.clone());
            target.url = None;
        }
        set(&mut target.method, &o.method);
        target.headers.extend(o.headers.iter().cloned());
        set(&mut target.endpoint_url, &o.endpoint_url);
        set(&mut target.region, &o.region);
        set(&mut target.timeout, &o.timeout);
        target.log_tail |= o.log_tail;
        set(&mut target.destination_queue, &o.destination_queue);
        set(&mut target.destination_grace, &o.destination_grace);

        let load = &mut self.load;
        if o.rate.is_some() || o.concurrency.is_some() {
            // A constant load replaces the stages; a duration they had carries over.
            let length = load.duration.or_else(|| {
                (!load.stages.is_empty()).then(|| load.stages.iter().map(|s| s.duration).sum())
            });
            *load = LoadConfig {
                model: None,
                rate: o.rate,
                concurrency: o.concurrency,
                duration: length,
                start: None,
                stages: Vec::new(),
                ..load.clone()
            };
        }
        if let Some(stages) = &o.stages {
            *load = LoadConfig {
                model: o.model.or(load.model).or(Some(Model::Open)),
                rate: None,
                concurrency: None,
                duration: None,
                start: None,
                stages: stages.clone(),
                ..load.clone()
            };
        }
        set(&mut load.model, &o.model);
        set(&mut load.duration, &o.duration);
        set(&mut load.max_requests, &o.max_requests);
        set(&mut load.max_in_flight, &o.max_in_flight);

        let one = [
            (
                o.payload.is_some(),
                RequestConfig {
                    payload: o.payload.clone(),
                    ..RequestConfig::default()
                },
            ),
            (
                o.payload_file.is_some(),
                RequestConfig {
                    payload_file: o.payload_file.clone(),
                    ..RequestConfig::default()
                },
            ),
            (
                o.payloads_file.is_some(),
                RequestConfig {
                    payloads_file: o.payloads_file.clone(),
                    ..RequestConfig::default()
                },
            ),
        ];
        if let Some((_, request)) = one.into_iter().find(|(given, _)| *given) {
            self.requests = vec![request];
        }
        if let Some(order) = o.payload_order {
            for request in &mut self.requests {
                request.payload_order = Some(order);
            }
        }
        if let Some(kind) = o.invocation_type {
            if self.requests.is_empty() {
                self.requests.push(RequestConfig::default());
            }
            for request in &mut self.requests {
                request.invocation_type = Some(kind);
            }
        }
        self.thresholds.extend(o.thresholds.iter().cloned());
        self.abort_on_fail |= o.abort_on_fail;
        set(&mut self.interval, &o.interval);
        set(&mut self.seed, &o.seed);
        set(&mut self.pricing.architecture, &o.architecture);
        set(&mut self.pricing.gb_second, &o.price_gb_second);
        set(
            &mut self.pricing.per_million_requests,
            &o.price_per_million_requests,
        );
    }
}

fn set<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
    if value.is_some() {
        slot.clone_from(value);
    }
}
