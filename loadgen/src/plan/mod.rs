//! The plan: a scenario checked and resolved into what the engine runs (target, load profile,
//! request mix, thresholds). Building one reads payload files but does no network I/O, so a plan
//! can be made and inspected in a unit test; the engine ([`crate::run::execute`]) takes nothing
//! else.
//!
//! Every validation error names its field (`load.stages[1].duration: must be above zero`).

mod payloads;
mod template;
mod threshold;

use std::path::Path;
use std::time::Duration;

use lambda_invoke::InvocationType;

pub use payloads::Payloads;
pub use template::{Context, Template};
pub use threshold::{Threshold, ThresholdResult};

use crate::Error;
use crate::cost::Prices;
use crate::model::{Profile, Stage};
use crate::scenario::{
    InvocationTypeName, LoadConfig, Model, PricingConfig, RequestConfig, Scenario, TargetConfig,
};

impl From<InvocationTypeName> for InvocationType {
    fn from(name: InvocationTypeName) -> InvocationType {
        match name {
            InvocationTypeName::RequestResponse => InvocationType::RequestResponse,
            InvocationTypeName::Event => InvocationType::Event,
            InvocationTypeName::DryRun => InvocationType::DryRun,
        }
    }
}

/// Largest closed-model concurrency: far above what one machine sustains, low enough that every
/// count fits comfortably.
const MAX_CONCURRENCY: f64 = 100_000.0;
/// Run length when only `max_requests` bounds the run.
const UNBOUNDED: Duration = Duration::from_secs(365 * 24 * 3600);

/// A validated scenario: what the engine runs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub target: TargetPlan,
    pub load: LoadPlan,
    pub requests: Vec<RequestPlan>,
    pub thresholds: Vec<Threshold>,
    /// Stop the run when a threshold fails (k6's `abortOnFail`).
    pub abort_on_fail: bool,
    pub interval: Duration,
    pub seed: Option<u64>,
    /// For the cost estimate of the `REPORT` lines.
    pub prices: Prices,
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
        method: String,
        /// Sent with every request, in this order.
        headers: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetPlan {
    pub kind: TargetKind,
    pub timeout: Duration,
    pub log_tail: bool,
    /// Where `Event` invocations' destination records are collected.
    pub destination: Option<DestinationPlan>,
}

/// The destination queue of `Event` invocations and how long to wait for their records.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationPlan {
    pub queue_url: String,
    /// After the last request: records not in by then are reported "not completed".
    pub grace: Duration,
}

impl TargetPlan {
    /// For reports: `lambda:NAME` or the URL.
    pub fn describe(&self) -> String {
        match &self.kind {
            TargetKind::Lambda { function, .. } => format!("lambda:{function}"),
            TargetKind::Http { url, method, .. } if method != "POST" => format!("{method} {url}"),
            TargetKind::Http { url, .. } => url.clone(),
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
}

#[derive(Debug, Clone)]
pub struct RequestPlan {
    pub name: String,
    pub weight: u32,
    pub invocation_type: InvocationType,
    pub template: Template,
}

impl Plan {
    /// Validates `scenario`; `payload_file`s and `payloads_file`s are read relative to `base_dir`.
    pub fn new(scenario: Scenario, base_dir: &Path) -> Result<Plan, Error> {
        let target = target_plan(&scenario.target)?;
        let load = load_plan(&scenario.load)?;
        let requests = request_plans(&scenario.requests, &target, base_dir)?;
        if target.destination.is_some()
            && !requests
                .iter()
                .any(|r| r.invocation_type == InvocationType::Event)
        {
            return Err(Error::config(
                "target.destination_queue",
                "only `Event` invocations have destination records: set `invocation_type = \"Event\"` \
                 on a request (or pass --invocation-type Event)",
            ));
        }
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
        let prices = prices(&scenario.pricing)?;
        Ok(Plan {
            name: scenario.name.unwrap_or_else(|| "ad-hoc".to_owned()),
            target,
            load,
            requests,
            thresholds,
            abort_on_fail: scenario.abort_on_fail,
            interval,
            seed: scenario.seed,
            prices,
        })
    }
}

/// The prices to estimate the cost with: the published ones for the architecture, unless set.
fn prices(p: &PricingConfig) -> Result<Prices, Error> {
    let defaults = Prices::of(p.architecture.unwrap_or_default());
    let price = |field: &str, value: Option<f64>, default: f64| match value {
        Some(v) if !(v.is_finite() && v >= 0.0) => Err(Error::config(
            format!("pricing.{field}"),
            format!("must be a price in USD (a number ≥ 0), got {v}"),
        )),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    Ok(Prices {
        architecture: defaults.architecture,
        gb_second: price("gb_second", p.gb_second, defaults.gb_second)?,
        per_million_requests: price(
            "per_million_requests",
            p.per_million_requests,
            defaults.per_million_requests,
        )?,
    })
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
            let http_only = [
                ("method", t.method.is_some()),
                ("headers", !t.headers.is_empty()),
            ];
            if let Some((field, _)) = http_only.iter().find(|(_, set)| *set) {
                return Err(Error::config(
                    format!("target.{field}"),
                    "only applies to HTTP targets (`url`), not to `function`",
                ));
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
                ("destination_queue", t.destination_queue.is_some()),
            ];
            if let Some((field, _)) = lambda_only.iter().find(|(_, set)| *set) {
                return Err(Error::config(
                    format!("target.{field}"),
                    "only applies to Lambda targets (`function`), not to `url`",
                ));
            }
            let method = t.method.clone().unwrap_or_else(|| "POST".to_owned());
            if !is_token(&method) {
                return Err(Error::config(
                    "target.method",
                    format!("`{method}` is not an HTTP method"),
                ));
            }
            let mut headers = Vec::with_capacity(t.headers.len());
            for (name, value) in &t.headers {
                if !is_token(name) {
                    return Err(Error::config(
                        format!("target.headers.{name}"),
                        format!("`{name}` is not a header name"),
                    ));
                }
                if value.contains(['\r', '\n']) {
                    return Err(Error::config(
                        format!("target.headers.{name}"),
                        "a header value must not contain a line break",
                    ));
                }
                headers.push((name.clone(), value.clone()));
            }
            TargetKind::Http {
                url: url.clone(),
                method,
                headers,
            }
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
    let destination = match &t.destination_queue {
        Some(queue_url) => {
            check_url("target.destination_queue", queue_url)?;
            Some(DestinationPlan {
                queue_url: queue_url.clone(),
                grace: t.destination_grace.unwrap_or(Duration::from_secs(300)),
            })
        }
        None if t.destination_grace.is_some() => {
            return Err(Error::config(
                "target.destination_grace",
                "only applies with `destination_queue`",
            ));
        }
        None => None,
    };
    Ok(TargetPlan {
        kind,
        timeout,
        log_tail: t.log_tail,
        destination,
    })
}

/// An RFC 9110 token: what a method or a header name may consist of.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
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
    // A request without a body is what GET and HEAD send; everything else gets an empty event.
    let default_body = match &target.kind {
        TargetKind::Http { method, .. } if method == "GET" || method == "HEAD" => "",
        _ => "{}",
    };
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
            let sources = [
                ("payload", r.payload.is_some()),
                ("payload_file", r.payload_file.is_some()),
                ("payloads_file", r.payloads_file.is_some()),
            ];
            let mut given = sources
                .iter()
                .filter(|(_, set)| *set)
                .map(|(name, _)| *name);
            if let (Some(first), Some(second)) = (given.next(), given.next()) {
                return Err(Error::config(
                    field(first),
                    format!("set either `{first}` or `{second}`, not both"),
                ));
            }
            if r.payload_order.is_some() && r.payloads_file.is_none() {
                return Err(Error::config(
                    field("payload_order"),
                    "only applies with `payloads_file`",
                ));
            }
            let read = |file: &Path, name: &str| {
                let path = base_dir.join(file);
                std::fs::read(&path)
                    .map(|bytes| (path.clone(), bytes))
                    .map_err(|e| {
                        Error::config(field(name), format!("cannot read {}: {e}", path.display()))
                    })
            };
            let template = match (&r.payload, &r.payload_file, &r.payloads_file) {
                (_, _, Some(file)) => {
                    let (path, bytes) = read(file, "payloads_file")?;
                    let payloads =
                        Payloads::parse(&path, &bytes, r.payload_order.unwrap_or_default())
                            .map_err(|e| Error::config(field("payloads_file"), e))?;
                    Template::pick(payloads)
                }
                (_, Some(file), _) => {
                    let (path, bytes) = read(file, "payload_file")?;
                    let text = String::from_utf8(bytes).map_err(|_| {
                        Error::config(
                            field("payload_file"),
                            format!("{} is not UTF-8", path.display()),
                        )
                    })?;
                    Template::parse(&text).map_err(|e| Error::config(field("payload_file"), e))?
                }
                (text, None, None) => Template::parse(text.as_deref().unwrap_or(default_body))
                    .map_err(|e| Error::config(field("payload"), e))?,
            };
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
    use crate::scenario::Overrides;

    fn plan(toml_text: &str) -> Result<Plan, Error> {
        let scenario: Scenario = toml::from_str(toml_text).expect("valid TOML");
        Plan::new(scenario, Path::new("."))
    }

    fn error(toml_text: &str) -> String {
        plan(toml_text).unwrap_err().to_string()
    }

    const HTTP: &str = "[target]\nurl = \"http://127.0.0.1:1/http/f\"\n";

    #[test]
    fn a_destination_queue_needs_event_invocations_of_a_lambda_target() {
        const LOAD: &str = "[load]\nrate = 1\nduration = 1\n";
        const QUEUE: &str = "destination_queue = \"http://127.0.0.1:5000/123456789012/done\"\n";
        let event = "[[requests]]\ninvocation_type = \"Event\"\n";
        let p = plan(&format!(
            "[target]\nfunction = \"f\"\n{QUEUE}destination_grace = \"30s\"\n{LOAD}{event}"
        ))
        .unwrap();
        assert_eq!(
            p.target.destination,
            Some(DestinationPlan {
                queue_url: "http://127.0.0.1:5000/123456789012/done".to_owned(),
                grace: Duration::from_secs(30),
            })
        );
        let default_grace = plan(&format!("[target]\nfunction = \"f\"\n{QUEUE}{LOAD}{event}")).unwrap();
        assert_eq!(default_grace.target.destination.unwrap().grace, Duration::from_secs(300));
        assert_eq!(
            error(&format!("[target]\nfunction = \"f\"\n{QUEUE}{LOAD}")),
            "invalid configuration: target.destination_queue: only `Event` invocations have destination \
             records: set `invocation_type = \"Event\"` on a request (or pass --invocation-type Event)"
        );
        assert!(error(&format!("{HTTP}{QUEUE}{LOAD}")).contains("target.destination_queue: only applies to Lambda targets"));
        assert!(
            error(&format!("[target]\nfunction = \"f\"\ndestination_queue = \"done\"\n{LOAD}{event}"))
                .contains("target.destination_queue: `done` is not an http:// or https:// URL")
        );
        assert!(
            error(&format!("[target]\nfunction = \"f\"\ndestination_grace = \"1s\"\n{LOAD}{event}"))
                .contains("target.destination_grace: only applies with `destination_queue`")
        );
    }

    #[test]
    fn prices_default_to_the_architectures_and_are_checked() {
        const BASE: &str = "[target]\nfunction = \"f\"\n[load]\nrate = 1\nduration = 1\n";
        let x86 = plan(BASE).unwrap().prices;
        assert_eq!(x86, crate::cost::Prices::default());
        let arm = plan(&format!("{BASE}[pricing]\narchitecture = \"arm64\"\n"))
            .unwrap()
            .prices;
        assert_eq!(arm.gb_second, 0.000_013_333_4);
        assert_eq!(arm.per_million_requests, 0.20);
        let set = plan(&format!(
            "{BASE}[pricing]\narchitecture = \"arm64\"\ngb_second = 0.00001\nper_million_requests = 0.25\n"
        ))
        .unwrap()
        .prices;
        assert_eq!((set.gb_second, set.per_million_requests), (0.00001, 0.25));
        assert!(
            error(&format!("{BASE}[pricing]\ngb_second = -1.0\n"))
                .contains("pricing.gb_second: must be a price in USD"),
        );
        let bad =
            toml::from_str::<Scenario>(&format!("{BASE}[pricing]\narchitecture = \"aarch64\"\n"))
                .unwrap_err();
        assert!(
            bad.to_string().contains("unknown variant `aarch64`"),
            "{bad}"
        );
    }

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

    /// Rates and durations take the command line's forms in a file too.
    #[test]
    fn rate_and_duration_forms_in_a_scenario() {
        let p = plan(&format!(
            "interval = 0.5\n{HTTP}timeout = 2\n[load]\nrate = \"3000/m\"\nduration = 30\nlate_after = \"5ms\"\n"
        ))
        .unwrap();
        assert_eq!(
            p.load.profile,
            Profile::constant(50.0, Duration::from_secs(30))
        );
        assert_eq!(p.interval, Duration::from_millis(500));
        assert_eq!(p.target.timeout, Duration::from_secs(2));
        assert_eq!(p.load.late_after, Duration::from_millis(5));
        let p = plan(&format!(
            "{HTTP}[load]\nmodel = \"open\"\nstages = [{{ duration = 10, target = \"600/m\" }}, {{ duration = \"1m\", target = 20 }}]\n"
        ))
        .unwrap();
        let stages = [
            Stage {
                duration: Duration::from_secs(10),
                target: 10.0,
            },
            Stage {
                duration: Duration::from_secs(60),
                target: 20.0,
            },
        ];
        assert_eq!(p.load.profile, Profile::new(0.0, stages.to_vec()));
        // Caught while parsing, so the message also has the line and the key.
        let text = format!("{HTTP}[load]\nrate = \"fast\"\nduration = 1\n");
        let message = toml::from_str::<Scenario>(&text).unwrap_err().to_string();
        assert!(message.contains("`fast` is not a rate"), "{message}");
        assert!(message.contains("line 4"), "{message}");
    }

    /// `--stages` replaces a scenario's constant load, in the open model unless told otherwise.
    #[test]
    fn stages_from_the_command_line_replace_the_load() {
        let stages = crate::scenario::units::parse_stages("30s:100,1m:500,30s:0").unwrap();
        let mut s: Scenario = toml::from_str(&format!(
            "{HTTP}[load]\nconcurrency = 5\nduration = \"1m\"\n"
        ))
        .unwrap();
        s.apply(&Overrides {
            stages: Some(stages),
            ..Overrides::default()
        });
        let p = Plan::new(s, Path::new(".")).unwrap();
        assert_eq!(p.load.model, Model::Open);
        assert_eq!(p.load.profile.duration(), Duration::from_secs(120));
        assert_eq!(
            p.load.profile.value_at(Duration::from_secs(60)),
            Some(300.0)
        );
    }

    #[test]
    fn http_method_headers_and_payloads_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.jsonl"), "{\"a\": 1}\n{\"a\": 2}\n").unwrap();
        let p = Plan::new(
            toml::from_str(&format!(
                "{HTTP}method = \"PUT\"\nheaders = {{ X-Api-Key = \"k\" }}\n[load]\nrate = 1\nduration = 1\n\
                 [[requests]]\npayloads_file = \"p.jsonl\"\npayload_order = \"random\"\n"
            ))
            .unwrap(),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            p.target.kind,
            TargetKind::Http {
                url: "http://127.0.0.1:1/http/f".into(),
                method: "PUT".into(),
                headers: vec![("X-Api-Key".into(), "k".into())],
            }
        );
        assert_eq!(p.target.describe(), "PUT http://127.0.0.1:1/http/f");
        assert_eq!(
            p.requests[0].template,
            Template::pick(Payloads::new(
                vec!["{\"a\": 1}".into(), "{\"a\": 2}".into()],
                crate::scenario::PayloadOrder::Random
            ))
        );
        // GET sends no body unless one is given.
        let p = plan(&format!(
            "{HTTP}method = \"GET\"\n[load]\nrate = 1\nduration = 1\n"
        ))
        .unwrap();
        assert_eq!(p.requests[0].template, Template::parse("").unwrap());
        for (text, expected) in [
            (
                format!("{HTTP}method = \"P UT\"\n"),
                "target.method: `P UT` is not an HTTP method",
            ),
            (
                format!("{HTTP}headers = {{ \"a b\" = \"x\" }}\n"),
                "target.headers.a b: `a b` is not a header name",
            ),
            (
                "[target]\nfunction = \"f\"\nmethod = \"GET\"\n".to_owned(),
                "target.method: only applies to HTTP targets",
            ),
            (
                format!("{HTTP}[[requests]]\npayload = \"x\"\npayloads_file = \"p.jsonl\"\n"),
                "requests[0].payload: set either `payload` or `payloads_file`",
            ),
            (
                format!("{HTTP}[[requests]]\npayload_order = \"random\"\n"),
                "requests[0].payload_order: only applies with `payloads_file`",
            ),
            (
                format!("{HTTP}[[requests]]\npayloads_file = \"/nonexistent.jsonl\"\n"),
                "requests[0].payloads_file: cannot read",
            ),
        ] {
            let message = error(&format!("{text}[load]\nrate = 1\nduration = 1\n"));
            assert!(message.contains(expected), "{text}\n=> {message}");
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
                url: "http://127.0.0.1:1/".into(),
                method: "POST".into(),
                headers: Vec::new(),
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
