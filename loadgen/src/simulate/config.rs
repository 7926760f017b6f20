//! Simulator configuration: serde types, TOML loading with `[default]` inheritance, validation.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::event_invoke::EventInvokeConfig;
use super::timing::{Latency, Stall, duration_str, option_duration_str};
use crate::Error;

/// The whole simulator configuration.
///
/// In a TOML file, every `[functions.NAME]` table starts as a copy of `[default]` and overrides it
/// key by key (a `rules` list or a `stall` table replaces the default's as a whole). In Rust the
/// structs are complete values: build named functions with `FunctionConfig { .., ..base.clone() }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Seeds every random draw (latency, cold start, error rate), so runs are repeatable for one
    /// build. Each function derives its own stream from this seed and its name. Unset: seeded by the OS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Keep a log of every invocation (payload included), served at `GET /_sim/invocations`.
    /// Off by default so memory stays flat under load; counters are always kept.
    #[serde(default)]
    pub record: bool,
    /// Behaviour of functions that are not declared in `functions`, and the base that declared
    /// functions inherit from in a TOML file.
    #[serde(default)]
    pub default: FunctionConfig,
    /// Declared functions. When this is empty, any function name is served with `default`;
    /// otherwise an undeclared name gets `404 ResourceNotFoundException`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub functions: BTreeMap<String, FunctionConfig>,
}

/// The behaviour of one simulated function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionConfig {
    /// Execution time of each invocation (see [`Latency`] for the forms). Default `fixed:0s`.
    pub latency: Latency,
    /// Init duration added when an invocation needs a new execution environment. Default `fixed:0s`
    /// (cold starts are still counted and reported).
    pub cold_start: Latency,
    /// Idle environments older than this are dropped, so the next invocation is cold again.
    /// Unset: kept forever.
    #[serde(with = "option_duration_str", skip_serializing_if = "Option::is_none")]
    pub idle_expiry: Option<Duration>,
    /// Function timeout. An invocation whose latency exceeds it stops here with `Sandbox.Timedout`.
    /// Default 3 s, Lambda's default.
    #[serde(with = "duration_str")]
    pub timeout: Duration,
    /// Fraction (0.0 to 1.0) of invocations that raise an unhandled error.
    pub error_rate: f64,
    /// Maximum concurrent executions; more get `429 TooManyRequestsException`. `0` throttles every
    /// invocation, as on Lambda. Unset: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_concurrency: Option<u32>,
    /// Value of the `Retry-After` header on throttles, in seconds. Unset: no header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u32>,
    /// Memory size shown in the `REPORT` log line. Default 128.
    pub memory_size_mb: u32,
    /// Periodic stall (see [`Stall`]). Unset: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall: Option<Stall>,
    /// How records failed by a `fail` rule are reported.
    pub failure_mode: FailureMode,
    /// Scripted per-record behaviour, first match wins for each record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// What happens to `Event` invocations: retries, event age, destinations.
    pub event_invoke: EventInvokeConfig,
}

impl Default for FunctionConfig {
    fn default() -> Self {
        FunctionConfig {
            latency: Latency::ZERO,
            cold_start: Latency::ZERO,
            idle_expiry: None,
            timeout: Duration::from_secs(3),
            error_rate: 0.0,
            reserved_concurrency: None,
            retry_after_secs: None,
            memory_size_mb: 128,
            stall: None,
            failure_mode: FailureMode::default(),
            rules: Vec::new(),
            event_invoke: EventInvokeConfig::default(),
        }
    }
}

/// How a function reports the records its rules fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// Return `{"batchItemFailures":[{"itemIdentifier":ID}, ...]}` with status 200, as a function
    /// written for `ReportBatchItemFailures` does.
    #[default]
    BatchItemFailures,
    /// Raise an unhandled error for the whole invocation.
    Error,
}

/// One scripted rule. It matches a record when every condition given holds (a rule without
/// conditions matches every record). For events without `Records`, the whole payload is one
/// record without an id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The record body contains this substring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// The record body matches this regular expression (`regex` crate syntax, unanchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_matches: Option<String>,
    /// What a match does.
    #[serde(default)]
    pub action: RuleAction,
    /// The literal response text for `action = "respond"`. Sent as is, so it may be invalid JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// The rule applies in at most this many invocations, then is ignored (e.g. "fail twice, then
    /// succeed" for retry tests). Unset: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    /// The record fails, reported according to the function's [`FailureMode`].
    #[default]
    Fail,
    /// The invocation returns the rule's `response` text with status 200.
    Respond,
    /// The invocation runs until the function timeout and fails with `Sandbox.Timedout`.
    Timeout,
}

impl SimConfig {
    /// Parses a TOML document, applies `[default]` inheritance and validates.
    pub fn from_toml(text: &str) -> Result<SimConfig, Error> {
        Self::parse_toml(text)
            .map_err(|e| e.at(Path::new("<string>")))?
            .validated()
    }

    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<SimConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::ReadConfig {
            path: path.to_owned(),
            error,
        })?;
        Self::parse_toml(&text).map_err(|e| e.at(path))?.validated()
    }

    fn parse_toml(text: &str) -> Result<SimConfig, TomlError> {
        // First pass on the text as written, so schema errors point at the line and key. Named
        // functions are partial tables here, which the field defaults accept.
        toml::from_str::<SimConfig>(text)?;
        let mut doc: toml::Table = toml::from_str(text)?;
        inherit_default(&mut doc);
        Ok(toml::Value::Table(doc).try_into()?)
    }

    fn validated(self) -> Result<SimConfig, Error> {
        self.validate()?;
        Ok(self)
    }

    /// Checks every value; the error names the field, e.g. `functions.orders.rules[0].body_matches`.
    pub fn validate(&self) -> Result<(), Error> {
        self.default.validate("default")?;
        for (name, function) in &self.functions {
            let path = format!("functions.{name}");
            validate_function_name(name).map_err(|m| Error::config(&path, m))?;
            function.validate(&path)?;
        }
        Ok(())
    }

    /// The default and every declared function, for settings that apply to all of them (CLI flags).
    pub fn all_functions_mut(&mut self) -> impl Iterator<Item = &mut FunctionConfig> {
        std::iter::once(&mut self.default).chain(self.functions.values_mut())
    }
}

impl FunctionConfig {
    /// Checks every value; `path` prefixes field names in errors.
    pub fn validate(&self, path: &str) -> Result<(), Error> {
        let field = |name: &str| format!("{path}.{name}");
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(Error::config(
                field("error_rate"),
                format!("must be between 0.0 and 1.0, got {}", self.error_rate),
            ));
        }
        if self.timeout.is_zero() {
            return Err(Error::config(field("timeout"), "must be above zero"));
        }
        if !(128..=10_240).contains(&self.memory_size_mb) {
            return Err(Error::config(
                field("memory_size_mb"),
                format!("must be between 128 and 10240, got {}", self.memory_size_mb),
            ));
        }
        if let Some(stall) = &self.stall {
            stall
                .validate()
                .map_err(|m| Error::config(field("stall"), m))?;
        }
        self.event_invoke
            .validate()
            .map_err(|(name, m)| Error::config(field(&format!("event_invoke.{name}")), m))?;
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate()
                .map_err(|(name, m)| Error::config(field(&format!("rules[{i}].{name}")), m))?;
        }
        Ok(())
    }
}

impl Rule {
    /// Returns the offending field name and the problem.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(pattern) = &self.body_matches {
            regex::Regex::new(pattern)
                .map_err(|e| ("body_matches", format!("invalid regex: {e}")))?;
        }
        match (self.action, &self.response) {
            (RuleAction::Respond, None) => {
                return Err((
                    "response",
                    "is required when action = \"respond\"".to_owned(),
                ));
            }
            (RuleAction::Fail | RuleAction::Timeout, Some(_)) => {
                return Err((
                    "response",
                    "is only allowed when action = \"respond\"".to_owned(),
                ));
            }
            _ => {}
        }
        if self.times == Some(0) {
            return Err((
                "times",
                "must be at least 1 (remove the rule to disable it)".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Lambda's function-name rule; `:` in particular would clash with qualifiers and ARNs.
fn validate_function_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if name.is_empty() || name.len() > 64 || !valid_chars {
        return Err(
            "function names are 1 to 64 characters of letters, digits, '-' and '_'".to_owned(),
        );
    }
    Ok(())
}

/// Makes every `[functions.X]` table a copy of `[default]` overridden by X's own keys.
fn inherit_default(doc: &mut toml::Table) {
    let Some(toml::Value::Table(default)) = doc.get("default").cloned() else {
        return;
    };
    let Some(toml::Value::Table(functions)) = doc.get_mut("functions") else {
        return;
    };
    for (_, function) in functions.iter_mut() {
        if let toml::Value::Table(own) = function {
            let mut merged = default.clone();
            merged.extend(std::mem::take(own));
            *own = merged;
        }
    }
}

/// A TOML error before the file name is known.
struct TomlError(toml::de::Error);

impl From<toml::de::Error> for TomlError {
    fn from(e: toml::de::Error) -> Self {
        TomlError(e)
    }
}

impl TomlError {
    fn at(self, path: &Path) -> Error {
        Error::ParseConfig {
            path: path.to_owned(),
            error: Box::new(self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_error(text: &str) -> String {
        SimConfig::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_document_is_the_default() {
        assert_eq!(SimConfig::from_toml("").unwrap(), SimConfig::default());
    }

    #[test]
    fn named_functions_inherit_from_default_key_by_key() {
        let config = SimConfig::from_toml(
            r#"
            seed = 42
            [default]
            latency = "uniform:5ms..10ms"
            reserved_concurrency = 3
            rules = [{ body_contains = "poison" }]

            [functions.orders]
            reserved_concurrency = 1

            [functions.payments]
            rules = []
            failure_mode = "error"
            "#,
        )
        .unwrap();
        let orders = &config.functions["orders"];
        assert_eq!(orders.latency, "uniform:5ms..10ms".parse().unwrap());
        assert_eq!(orders.reserved_concurrency, Some(1));
        assert_eq!(orders.rules.len(), 1);
        let payments = &config.functions["payments"];
        assert_eq!(payments.reserved_concurrency, Some(3));
        assert!(payments.rules.is_empty());
        assert_eq!(payments.failure_mode, FailureMode::Error);
        assert_eq!(config.seed, Some(42));
    }

    #[test]
    fn validation_errors_name_the_field() {
        assert_eq!(
            config_error("[default]\nerror_rate = 1.5"),
            "invalid configuration: default.error_rate: must be between 0.0 and 1.0, got 1.5"
        );
        assert_eq!(
            config_error("[functions.f]\nrules = [{ body_matches = \"(\" }]")
                .split(": invalid regex")
                .next()
                .unwrap(),
            "invalid configuration: functions.f.rules[0].body_matches"
        );
        assert_eq!(
            config_error("[functions.f]\nrules = [{ action = \"respond\" }]"),
            "invalid configuration: functions.f.rules[0].response: is required when action = \"respond\""
        );
        assert_eq!(
            config_error("[functions.f]\nrules = [{ response = \"x\" }]"),
            "invalid configuration: functions.f.rules[0].response: is only allowed when action = \"respond\""
        );
        assert!(
            config_error("[functions.\"a:b\"]")
                .starts_with("invalid configuration: functions.a:b: ")
        );
        assert!(
            config_error("[default]\ntimeout = \"0s\"")
                .contains("default.timeout: must be above zero")
        );
        assert!(config_error("[default]\nmemory_size_mb = 64").contains("default.memory_size_mb"));
        assert!(
            config_error("[default]\nstall = { duration = \"2s\", every = \"1s\" }")
                .contains("default.stall: duration must be shorter than every")
        );
        assert_eq!(
            config_error("[functions.f.event_invoke]\nmaximum_retry_attempts = 3"),
            "invalid configuration: functions.f.event_invoke.maximum_retry_attempts: must be between 0 and 2, got 3"
        );
    }

    #[test]
    fn event_invoke_settings_read_from_toml() {
        let config = SimConfig::from_toml(
            r#"
            [functions.f.event_invoke]
            maximum_retry_attempts = 1
            retry_delays = ["10ms"]
            queue_delay = "5ms"
            on_failure = "arn:aws:sqs:us-east-1:123456789012:failed"
            "#,
        )
        .unwrap();
        let event_invoke = &config.functions["f"].event_invoke;
        assert_eq!(event_invoke.maximum_retry_attempts, 1);
        assert_eq!(event_invoke.retry_delays, [Duration::from_millis(10)]);
        assert_eq!(event_invoke.queue_delay, Duration::from_millis(5));
        assert_eq!(event_invoke.maximum_event_age, Duration::from_secs(21_600));
        assert_eq!(event_invoke.on_success, None);
        let text = toml::to_string(&config).unwrap();
        assert_eq!(SimConfig::from_toml(&text).unwrap(), config);
    }

    #[test]
    fn schema_errors_point_at_the_key() {
        let unknown = config_error("[default]\nlatencyy = \"1ms\"");
        assert!(unknown.contains("unknown field `latencyy`"), "{unknown}");
        assert!(unknown.contains("line 2"), "{unknown}");
        let bad_latency = config_error("[functions.f]\nlatency = \"gamma:1ms\"");
        assert!(
            bad_latency.contains("unknown distribution `gamma`"),
            "{bad_latency}"
        );
        assert!(bad_latency.contains("latency = "), "{bad_latency}");
    }

    #[test]
    fn serialises_back_to_equivalent_toml() {
        let config = SimConfig::from_toml(
            r#"
            record = true
            [default]
            latency = "lognormal:20ms,5ms"
            idle_expiry = "5m"
            stall = { duration = "1s", every = "10s" }
            rules = [{ body_matches = "^x", action = "respond", response = "garbage", times = 2 }]
            "#,
        )
        .unwrap();
        let text = toml::to_string(&config).unwrap();
        assert_eq!(SimConfig::from_toml(&text).unwrap(), config);
    }
}
