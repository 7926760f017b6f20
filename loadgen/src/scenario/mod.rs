//! Load scenarios: the TOML format (`scenarios/*.toml`), command-line overrides, and validation
//! into a [`Plan`], the checked form the engine runs.
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
//! stages = [{ duration = "10s", target = 100 }, { duration = "30s", target = 100 }]
//!
//! [[requests]]
//! payload = '{"orderId": "{{uuid}}"}'
//! ```
//!
//! Every validation error names its field (`load.stages[1].duration: must be above zero`). The
//! format is documented in docs/loadgen.md.

mod template;
mod threshold;

use std::path::{Path, PathBuf};
use std::time::Duration;

use lambda_invoke::InvocationType;
use serde::Deserialize;

pub use template::{Context, Template};
pub use threshold::{Threshold, ThresholdResult};

use crate::Error;
use crate::run::{ClosedSchedule, OpenSchedule, Profile, Schedule, Stage};
use crate::simulate::{duration_str, option_duration_str};

/// Largest closed-model concurrency: far above what one machine sustains, low enough that every
/// count fits comfortably.
const MAX_CONCURRENCY: f64 = 100_000.0;
/// Run length when only `max_requests` bounds the run.
const UNBOUNDED: Duration = Duration::from_secs(365 * 24 * 3600);

/// A scenario file as written. Every field is optional so that flags can fill in or replace
/// parts; [`Plan::new`] checks the result.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in reports; defaults to the file name without extension.
    pub name: Option<String>,
    /// Seeds the payload randomness. Unset: seeded by the OS.
    pub seed: Option<u64>,
    /// Pass/fail criteria (see [`Threshold`]); a breach makes `loadgen run` exit with 1.
    #[serde(default)]
    pub thresholds: Vec<String>,
    /// Length of the reporting intervals (progress, `.hlog`, CSV, plots). Default 1 s.
    #[serde(default, with = "option_duration_str")]
    pub interval: Option<Duration>,
    #[serde(default)]
    pub target: TargetConfig,
    #[serde(default)]
    pub load: LoadConfig,
    /// The request mix; each request picks one entry by weight. Default: one `{}` payload.
    #[serde(default)]
    pub requests: Vec<RequestConfig>,
}

/// `[target]`: where requests go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Lambda Invoke API target: function name, ARN, or `name:qualifier`.
    pub function: Option<String>,
    /// Plain HTTP target: the event is POSTed to this URL.
    pub url: Option<String>,
    /// Lambda endpoint override (a simulator, LocalStack, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// AWS region; default from the environment/profile, else `us-east-1`.
    pub region: Option<String>,
    /// Per-request timeout; a request without an answer by then is a `timeout`. Default 30 s.
    #[serde(default, with = "option_duration_str")]
    pub timeout: Option<Duration>,
    /// Ask for `LogType=Tail` and count cold starts from the `REPORT` line's `Init Duration`.
    #[serde(default)]
    pub log_tail: bool,
}

/// `[load]`: the load model and its profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// `open` (arrival rate) or `closed` (concurrency). Implied by `rate` or `concurrency`.
    pub model: Option<Model>,
    /// Open model, constant: requests per second.
    pub rate: Option<f64>,
    /// Closed model, constant: requests in flight.
    pub concurrency: Option<u32>,
    /// Length of a constant load; with `stages`, cuts the run short.
    #[serde(default, with = "option_duration_str")]
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
    #[serde(default, with = "option_duration_str")]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    #[serde(with = "duration_str")]
    pub duration: Duration,
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
    /// Payload template (see [`Template`]).
    pub payload: Option<String>,
    /// Payload template read from a file, relative to the scenario file.
    pub payload_file: Option<PathBuf>,
}

/// `X-Amz-Invocation-Type` as written in scenarios and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
pub enum InvocationTypeName {
    #[value(name = "RequestResponse")]
    RequestResponse,
    #[value(name = "Event")]
    Event,
    #[value(name = "DryRun")]
    DryRun,
}

impl From<InvocationTypeName> for InvocationType {
    fn from(name: InvocationTypeName) -> InvocationType {
        match name {
            InvocationTypeName::RequestResponse => InvocationType::RequestResponse,
            InvocationTypeName::Event => InvocationType::Event,
            InvocationTypeName::DryRun => InvocationType::DryRun,
        }
    }
}

/// Values given on the command line; each replaces the scenario's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Switches to a plain HTTP target.
    pub target_url: Option<String>,
    /// Switches to a Lambda target.
    pub function: Option<String>,
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub timeout: Option<Duration>,
    pub log_tail: bool,
    /// Replaces the load with a constant open-model rate.
    pub rate: Option<f64>,
    /// Replaces the load with a constant closed-model concurrency.
    pub concurrency: Option<u32>,
    pub duration: Option<Duration>,
    pub max_requests: Option<u64>,
    pub max_in_flight: Option<usize>,
    /// Replaces the request mix with this one payload.
    pub payload: Option<String>,
    /// Applies to every request of the mix.
    pub invocation_type: Option<InvocationTypeName>,
    /// Added to the scenario's.
    pub thresholds: Vec<String>,
    pub interval: Option<Duration>,
    pub seed: Option<u64>,
}

impl Scenario {
    /// Reads and parses a scenario file (validation is [`Plan::new`]'s). The name defaults to the
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
        set(&mut target.endpoint_url, &o.endpoint_url);
        set(&mut target.region, &o.region);
        set(&mut target.timeout, &o.timeout);
        target.log_tail |= o.log_tail;

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
        set(&mut load.duration, &o.duration);
        set(&mut load.max_requests, &o.max_requests);
        set(&mut load.max_in_flight, &o.max_in_flight);

        if let Some(payload) = &o.payload {
            self.requests = vec![RequestConfig {
                payload: Some(payload.clone()),
                ..RequestConfig::default()
            }];
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
        set(&mut self.interval, &o.interval);
        set(&mut self.seed, &o.seed);
    }
}

fn set<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
    if value.is_some() {
        slot.clone_from(value);
    }
}

/// A validated scenario: what the engine runs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub target: TargetPlan,
    pub load: LoadPlan,
    pub requests: Vec<RequestPlan>,
    pub thresholds: Vec<Threshold>,
    pub interval: Duration,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TargetKind {
    Lambda {
        function: String,
        endpoint_url: Option<String>,
        region: Option<String>,
    },
    Http {
        url: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetPlan {
    pub kind: TargetKind,
    pub timeout: Duration,
    pub log_tail: bool,
}

impl TargetPlan {
    /// For reports: `lambda:NAME` or the URL.
    pub fn describe(&self) -> String {
        match &self.kind {
            TargetKind::Lambda { function, .. } => format!("lambda:{function}"),
            TargetKind::Http { url } => url.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    pub model: Model,
    /// Requests per second (open) or requests in flight (closed) over time.
    pub profile: Profile,
    pub max_in_flight: usize,
    pub late_after: Duration,
    pub max_requests: Option<u64>,
}

impl LoadPlan {
    /// Whether only `max_requests` bounds the run (no duration was given).
    pub fn is_open_ended(&self) -> bool {
        self.profile.duration() >= UNBOUNDED
    }

    /// The run's planned length for people: `30s`, `5000 requests`, or `30s or 5000 requests`.
    pub fn describe_length(&self) -> String {
        let duration = humantime::format_duration(self.profile.duration()).to_string();
        match (self.is_open_ended(), self.max_requests) {
            (true, Some(n)) => format!("{n} requests"),
            (false, Some(n)) => format!("{duration} or {n} requests"),
            (_, None) => duration,
        }
    }

    /// The arrival schedule the engine follows.
    pub fn schedule(&self) -> Box<dyn Schedule> {
        match self.model {
            Model::Open => Box::new(OpenSchedule::new(&self.profile, self.max_in_flight)),
            Model::Closed => Box::new(ClosedSchedule::new(self.profile.clone())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestPlan {
    pub name: String,
    pub weight: u32,
    pub invocation_type: InvocationType,
    pub template: Template,
}

impl Plan {
    /// Validates `scenario`; `payload_file`s are read relative to `base_dir`.
    pub fn new(scenario: Scenario, base_dir: &Path) -> Result<Plan, Error> {
        let target = target_plan(&scenario.target)?;
        let load = load_plan(&scenario.load)?;
        let requests = request_plans(&scenario.requests, &target, base_dir)?;
        let thresholds = scenario
            .thresholds
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Threshold::parse(t).map_err(|e| Error::config(format!("thresholds[{i}]"), e))
            })
            .collect::<Result<_, _>>()?;
        let interval = scenario.interval.unwrap_or(Duration::from_secs(1));
        if interval < Duration::from_millis(10) {
            return Err(Error::config("interval", "must be at least 10ms"));
        }
        Ok(Plan {
            name: scenario.name.unwrap_or_else(|| "ad-hoc".to_owned()),
            target,
            load,
            requests,
            thresholds,
            interval,
            seed: scenario.seed,
        })
    }
}

fn target_plan(t: &TargetConfig) -> Result<TargetPlan, Error> {
    let kind = match (&t.function, &t.url) {
        (Some(function), None) => {
            if function.trim().is_empty() {
                return Err(Error::config("target.function", "must not be empty"));
            }
            if let Some(url) = &t.endpoint_url {
                check_url("target.endpoint_url", url)?;
            }
            TargetKind::Lambda {
                function: function.clone(),
                endpoint_url: t.endpoint_url.clone(),
                region: t.region.clone(),
            }
        }
        (None, Some(url)) => {
            check_url("target.url", url)?;
            let lambda_only = [
                ("endpoint_url", t.endpoint_url.is_some()),
                ("region", t.region.is_some()),
                ("log_tail", t.log_tail),
            ];
            if let Some((field, _)) = lambda_only.iter().find(|(_, set)| *set) {
                return Err(Error::config(
                    format!("target.{field}"),
                    "only applies to Lambda targets (`function`), not to `url`",
                ));
            }
            TargetKind::Http { url: url.clone() }
        }
        (Some(_), Some(_)) => {
            return Err(Error::config(
                "target",
                "set either `function` (Lambda Invoke API) or `url` (plain HTTP), not both",
            ));
        }
        (None, None) => {
            return Err(Error::config(
                "target",
                "set `function` (Lambda Invoke API) or `url` (plain HTTP), or pass --function / --target-url",
            ));
        }
    };
    let timeout = t.timeout.unwrap_or(Duration::from_secs(30));
    if timeout.is_zero() {
        return Err(Error::config("target.timeout", "must be above zero"));
    }
    Ok(TargetPlan {
        kind,
        timeout,
        log_tail: t.log_tail,
    })
}

fn check_url(field: &str, url: &str) -> Result<(), Error> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("`{url}` is not an http:// or https:// URL"),
        ))
    }
}

fn load_plan(l: &LoadConfig) -> Result<LoadPlan, Error> {
    let model = match (l.model, l.rate, l.concurrency) {
        (Some(model), _, _) => model,
        (None, Some(_), None) => Model::Open,
        (None, None, Some(_)) => Model::Closed,
        (None, Some(_), Some(_)) => {
            return Err(Error::config(
                "load",
                "set either `rate` (open model) or `concurrency` (closed model), not both",
            ));
        }
        (None, None, None) => {
            return Err(Error::config(
                "load",
                "set `rate` (open model), `concurrency` (closed model), or `model` with `stages`",
            ));
        }
    };
    let (value_field, constant, other_field, other_set) = match model {
        Model::Open => ("rate", l.rate, "concurrency", l.concurrency.is_some()),
        Model::Closed => (
            "concurrency",
            l.concurrency.map(f64::from),
            "rate",
            l.rate.is_some(),
        ),
    };
    if other_set {
        return Err(Error::config(
            format!("load.{other_field}"),
            format!("does not apply to the {} model", model.as_str()),
        ));
    }
    if model == Model::Closed && l.max_in_flight.is_some() {
        return Err(Error::config(
            "load.max_in_flight",
            "only applies to the open model (in the closed model, `concurrency` is the limit)",
        ));
    }
    let limit = match model {
        Model::Open => f64::MAX,
        Model::Closed => MAX_CONCURRENCY,
    };
    let check_value = |field: String, v: f64| {
        if v.is_finite() && (0.0..=limit).contains(&v) {
            Ok(v)
        } else {
            Err(Error::config(
                field,
                format!("must be between 0 and {limit}, got {v}"),
            ))
        }
    };
    let profile = match (constant, l.stages.is_empty()) {
        (Some(value), true) => {
            if l.start.is_some() {
                return Err(Error::config("load.start", "only applies with `stages`"));
            }
            let value = check_value(format!("load.{value_field}"), value)?;
            if value == 0.0 {
                return Err(Error::config(
                    format!("load.{value_field}"),
                    "must be above zero",
                ));
            }
            let duration = match (l.duration, l.max_requests) {
                (Some(d), _) => d,
                (None, Some(_)) => UNBOUNDED,
                (None, None) => {
                    return Err(Error::config(
                        "load.duration",
                        "required with a constant load (or set `max_requests`)",
                    ));
                }
            };
            Profile::constant(value, duration)
        }
        (None, false) => {
            let start = check_value("load.start".to_owned(), l.start.unwrap_or(0.0))?;
            let mut stages = Vec::with_capacity(l.stages.len());
            for (i, s) in l.stages.iter().enumerate() {
                if s.duration.is_zero() {
                    return Err(Error::config(
                        format!("load.stages[{i}].duration"),
                        "must be above zero",
                    ));
                }
                stages.push(Stage {
                    duration: s.duration,
                    target: check_value(format!("load.stages[{i}].target"), s.target)?,
                });
            }
            let mut profile = Profile::new(start, stages);
            if let Some(d) = l.duration {
                profile.truncate(d);
            }
            profile
        }
        (Some(_), false) => {
            return Err(Error::config(
                "load.stages",
                format!("set either `stages` or a constant `{value_field}`, not both"),
            ));
        }
        (None, true) => {
            return Err(Error::config(
                format!("load.{value_field}"),
                format!("required for the {} model (or `stages`)", model.as_str()),
            ));
        }
    };
    if profile.duration().is_zero() {
        return Err(Error::config("load.duration", "must be above zero"));
    }
    let max_in_flight = l.max_in_flight.unwrap_or(1000);
    if max_in_flight == 0 {
        return Err(Error::config("load.max_in_flight", "must be at least 1"));
    }
    if l.max_requests == Some(0) {
        return Err(Error::config("load.max_requests", "must be at least 1"));
    }
    Ok(LoadPlan {
        model,
        profile,
        max_in_flight,
        late_after: l.late_after.unwrap_or(Duration::from_millis(10)),
        max_requests: l.max_requests,
    })
}

fn request_plans(
    requests: &[RequestConfig],
    target: &TargetPlan,
    base_dir: &Path,
) -> Result<Vec<RequestPlan>, Error> {
    if requests.is_empty() {
        return request_plans(&[RequestConfig::default()], target, base_dir);
    }
    let is_http = matches!(target.kind, TargetKind::Http { .. });
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let field = |name: &str| format!("requests[{i}].{name}");
            let weight = r.weight.unwrap_or(1);
            if weight == 0 {
                return Err(Error::config(field("weight"), "must be at least 1"));
            }
            let invocation_type = r
                .invocation_type
                .unwrap_or(InvocationTypeName::RequestResponse);
            if is_http && invocation_type != InvocationTypeName::RequestResponse {
                return Err(Error::config(
                    field("invocation_type"),
                    "only applies to Lambda targets (`function`)",
                ));
            }
            let (text, text_field) = match (&r.payload, &r.payload_file) {
                (Some(text), None) => (text.clone(), field("payload")),
                (None, Some(file)) => {
                    let path = base_dir.join(file);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        Error::config(
                            field("payload_file"),
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?;
                    (text, field("payload_file"))
                }
                (None, None) => ("{}".to_owned(), field("payload")),
                (Some(_), Some(_)) => {
                    return Err(Error::config(
                        field("payload"),
                        "set either `payload` or `payload_file`, not both",
                    ));
                }
            };
            let template = Template::parse(&text).map_err(|e| Error::config(text_field, e))?;
            Ok(RequestPlan {
                name: r.name.clone().unwrap_or_else(|| format!("requests[{i}]")),
                weight,
                invocation_type: invocation_type.into(),
                template,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(toml_text: &str) -> Result<Plan, Error> {
        let scenario: Scenario = toml::from_str(toml_text).expect("valid TOML");
        Plan::new(scenario, Path::new("."))
    }

    fn error(toml_text: &str) -> String {
        plan(toml_text).unwrap_err().to_string()
    }

    const HTTP: &str = "[target]\nurl = \"http://127.0.0.1:1/http/f\"\n";

    #[test]
    fn constant_open_load() {
        let p = plan(&format!("{HTTP}[load]\nrate = 50\nduration = \"2s\"\n")).unwrap();
        assert_eq!(p.load.model, Model::Open);
        assert_eq!(
            p.load.profile,
            Profile::constant(50.0, Duration::from_secs(2))
        );
        assert_eq!(p.load.max_in_flight, 1000);
        assert_eq!(p.load.describe_length(), "2s");
        assert_eq!(p.load.late_after, Duration::from_millis(10));
        assert_eq!(p.target.timeout, Duration::from_secs(30));
        assert_eq!(p.interval, Duration::from_secs(1));
        assert_eq!(p.requests.len(), 1);
        assert_eq!(
            p.requests[0].invocation_type,
            InvocationType::RequestResponse
        );
    }

    #[test]
    fn staged_closed_load_cut_by_duration() {
        let p = plan(&format!(
            "{HTTP}[load]\nmodel = \"closed\"\nstart = 1\nduration = \"15s\"\nstages = [{{ duration = \"10s\", target = 10 }}, {{ duration = \"10s\", target = 10 }}]\n"
        ))
        .unwrap();
        assert_eq!(p.load.model, Model::Closed);
        assert_eq!(p.load.profile.duration(), Duration::from_secs(15));
        assert_eq!(p.load.profile.value_at(Duration::from_secs(5)), Some(5.5));
    }

    #[test]
    fn lambda_target_with_a_weighted_mix() {
        let p = plan(
            "[target]\nfunction = \"orders:live\"\nendpoint_url = \"http://127.0.0.1:9001\"\nregion = \"eu-west-1\"\nlog_tail = true\ntimeout = \"5s\"\n\
             [load]\nconcurrency = 4\nmax_requests = 100\n\
             [[requests]]\nname = \"sync\"\nweight = 3\npayload = '{\"id\": \"{{uuid}}\"}'\n\
             [[requests]]\nweight = 1\ninvocation_type = \"Event\"\n",
        )
        .unwrap();
        assert_eq!(
            p.target.kind,
            TargetKind::Lambda {
                function: "orders:live".into(),
                endpoint_url: Some("http://127.0.0.1:9001".into()),
                region: Some("eu-west-1".into()),
            }
        );
        assert!(p.target.log_tail);
        assert_eq!(p.target.describe(), "lambda:orders:live");
        assert_eq!(p.load.max_requests, Some(100));
        assert!(p.load.is_open_ended());
        assert_eq!(p.load.describe_length(), "100 requests");
        assert_eq!(
            (p.requests[0].name.as_str(), p.requests[0].weight),
            ("sync", 3)
        );
        assert_eq!(p.requests[1].name, "requests[1]");
        assert_eq!(p.requests[1].invocation_type, InvocationType::Event);
    }

    #[test]
    fn errors_name_the_field() {
        let load = "[load]\nrate = 1\nduration = \"1s\"\n";
        let cases = [
            (load.to_string(), "target: set `function`"),
            (HTTP.to_string(), "invalid configuration: load: set `rate`"),
            (
                format!("{HTTP}[load]\nrate = 1\n"),
                "load.duration: required",
            ),
            (
                format!("{HTTP}[load]\nrate = 0\nduration = \"1s\"\n"),
                "load.rate: must be above zero",
            ),
            (
                format!("{HTTP}[load]\nrate = 1\nconcurrency = 2\nduration = \"1s\"\n"),
                "load: set either",
            ),
            (
                format!("{HTTP}[load]\nmodel = \"closed\"\nrate = 1\nduration = \"1s\"\n"),
                "load.rate: does not apply to the closed model",
            ),
            (
                format!("{HTTP}[load]\nconcurrency = 1\nmax_in_flight = 3\nduration = \"1s\"\n"),
                "load.max_in_flight: only applies to the open model",
            ),
            (
                format!(
                    "{HTTP}[load]\nmodel = \"open\"\nstages = [{{ duration = \"0s\", target = 1 }}]\n"
                ),
                "load.stages[0].duration: must be above zero",
            ),
            (
                format!(
                    "{HTTP}[load]\nmodel = \"closed\"\nstages = [{{ duration = \"1s\", target = 1e9 }}]\n"
                ),
                "load.stages[0].target: must be between 0 and 100000",
            ),
            (
                format!("{HTTP}[load]\nmodel = \"open\"\n"),
                "load.rate: required for the open model",
            ),
            (
                format!("{HTTP}{load}[[requests]]\npayload = \"{{{{nope}}}}\"\n"),
                "requests[0].payload: unknown placeholder",
            ),
            (
                format!("{HTTP}{load}[[requests]]\ninvocation_type = \"Event\"\n"),
                "requests[0].invocation_type: only applies to Lambda",
            ),
            (
                format!("{HTTP}{load}[[requests]]\nweight = 0\n"),
                "requests[0].weight: must be at least 1",
            ),
            (
                format!("{HTTP}{load}[[requests]]\npayload_file = \"/nonexistent/p.json\"\n"),
                "requests[0].payload_file: cannot read",
            ),
            (
                format!("{HTTP}region = \"x\"\n{load}"),
                "target.region: only applies to Lambda targets",
            ),
            (
                format!("[target]\nurl = \"ftp://x\"\n{load}"),
                "target.url: `ftp://x` is not an http",
            ),
            (
                format!("[target]\nfunction = \"f\"\nurl = \"http://x\"\n{load}"),
                "target: set either",
            ),
            (
                format!("thresholds = [\"p99 <\"]\n{HTTP}{load}"),
                "thresholds[0]: `p99 <`",
            ),
            (
                format!("interval = \"1ms\"\n{HTTP}{load}"),
                "interval: must be at least 10ms",
            ),
        ];
        for (text, expected) in cases {
            let message = error(&text);
            assert!(
                message.contains(expected),
                "{text}\n=> {message}\nexpected: {expected}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "[load]\nrte = 5\n").unwrap();
        let message = Scenario::load(file.path()).unwrap_err().to_string();
        assert!(message.contains("unknown field `rte`"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn payload_files_are_relative_to_the_scenario() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.json"), "{\"n\": {{seq}}}").unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            format!("{HTTP}[load]\nrate = 1\nduration = \"1s\"\n[[requests]]\npayload_file = \"p.json\"\n"),
        )
        .unwrap();
        let scenario = Scenario::load(&path).unwrap();
        assert_eq!(scenario.name.as_deref(), Some("s"));
        let plan = Plan::new(scenario, dir.path()).unwrap();
        assert_eq!(
            plan.requests[0].template,
            Template::parse("{\"n\": {{seq}}}").unwrap()
        );
    }

    #[test]
    fn overrides_replace_target_load_and_payload() {
        let mut s: Scenario = toml::from_str(
            "thresholds = [\"p99 < 1s\"]\n[target]\nfunction = \"f\"\n[load]\nmodel = \"open\"\nstages = [{ duration = \"3s\", target = 5 }]\n",
        )
        .unwrap();
        s.apply(&Overrides {
            target_url: Some("http://127.0.0.1:1/".into()),
            concurrency: Some(3),
            payload: Some("{\"x\": 1}".into()),
            thresholds: vec!["error_rate < 1%".into()],
            ..Overrides::default()
        });
        let p = Plan::new(s, Path::new(".")).unwrap();
        assert_eq!(
            p.target.kind,
            TargetKind::Http {
                url: "http://127.0.0.1:1/".into()
            }
        );
        assert_eq!(p.load.model, Model::Closed);
        // The stages' length carries over to the constant load.
        assert_eq!(
            p.load.profile,
            Profile::constant(3.0, Duration::from_secs(3))
        );
        assert_eq!(p.thresholds.len(), 2);
        assert_eq!(
            p.requests[0].template,
            Template::parse("{\"x\": 1}").unwrap()
        );

        let mut s: Scenario =
            toml::from_str("[target]\nurl = \"http://x/\"\n[load]\nrate = 5\nduration = \"1m\"\n")
                .unwrap();
        s.apply(&Overrides {
            function: Some("g".into()),
            duration: Some(Duration::from_secs(2)),
            invocation_type: Some(InvocationTypeName::Event),
            ..Overrides::default()
        });
        let p = Plan::new(s, Path::new(".")).unwrap();
        assert!(
            matches!(p.target.kind, TargetKind::Lambda { ref function, .. } if function == "g")
        );
        assert_eq!(p.load.profile.duration(), Duration::from_secs(2));
        assert_eq!(p.requests[0].invocation_type, InvocationType::Event);
    }
}
