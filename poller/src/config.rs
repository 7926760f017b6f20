//! Mapping definitions: the `CreateEventSourceMapping` JSON shape, parsed and validated.
//!
//! The file a user runs is exactly what `aws lambda create-event-source-mapping --cli-input-json` takes
//! (PascalCase keys). The output of `get-event-source-mapping` is accepted too: its read-only keys (`UUID`,
//! `State`, `FunctionArn`, …) are understood or ignored, so a mapping can be exported from AWS and run here;
//! so is the output of `list-event-source-mappings` (`{"EventSourceMappings":[…]}`), several mappings in one
//! file. String values may use `${VAR}` / `${VAR:-default}` ([`interpolate`]).
//!
//! Parsing happens in steps, like ripgrep's low/high arguments: the document is read as one JSON value
//! (nothing may follow it), its strings are interpolated, then [`RawMapping`] mirrors the AWS shape
//! (unknown keys rejected, with the key named), and [`RawMapping::validate`] checks every field against the
//! AWS ranges and rules and resolves defaults per source into a [`Mapping`]. Validation reports every
//! problem at once, each naming its field.

pub mod interpolate;

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::Value;

use crate::arn::SourceArn;

/// `FilterCriteria` as in the API.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RawFilterCriteria {
    #[serde(default)]
    pub filters: Option<Vec<RawFilter>>,
}

/// One `FilterCriteria.Filters[]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RawFilter {
    /// The pattern: a JSON document *inside a string*, as the API takes it. An object is accepted too
    /// (the console and some tools show it parsed) and re-serialised.
    pub pattern: Option<serde_json::Value>,
}

/// `DestinationConfig` as in the API.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RawDestinationConfig {
    pub on_failure: Option<RawDestination>,
    pub on_success: Option<RawDestination>,
}

/// `OnFailure` / `OnSuccess`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RawDestination {
    pub destination: Option<String>,
}

/// `ScalingConfig` as in the API.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RawScalingConfig {
    pub maximum_concurrency: Option<i64>,
}

/// The `CreateEventSourceMapping` request (and the read-only keys of its response), field for field.
///
/// Numbers are read as `i64` so that an out-of-range value is reported by validation with the AWS range,
/// not as a JSON type error.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RawMapping {
    pub event_source_arn: Option<String>,
    pub function_name: Option<String>,
    pub enabled: Option<bool>,
    pub batch_size: Option<i64>,
    pub maximum_batching_window_in_seconds: Option<i64>,
    pub filter_criteria: Option<RawFilterCriteria>,
    pub function_response_types: Option<Vec<String>>,
    pub scaling_config: Option<RawScalingConfig>,
    pub starting_position: Option<String>,
    /// Epoch seconds (number) or an ISO 8601 string, as the CLI accepts.
    pub starting_position_timestamp: Option<serde_json::Value>,
    pub parallelization_factor: Option<i64>,
    pub bisect_batch_on_function_error: Option<bool>,
    pub maximum_retry_attempts: Option<i64>,
    pub maximum_record_age_in_seconds: Option<i64>,
    pub destination_config: Option<RawDestinationConfig>,
    pub tumbling_window_in_seconds: Option<i64>,

    // Accepted and without effect on a self-hosted poller (warned about by `validate`).
    pub tags: Option<serde_json::Value>,
    #[serde(rename = "KMSKeyArn")]
    pub kms_key_arn: Option<serde_json::Value>,
    pub metrics_config: Option<serde_json::Value>,
    pub logging_config: Option<serde_json::Value>,
    pub provisioned_poller_config: Option<serde_json::Value>,

    // Keys of other source types (Kafka, MQ, DocumentDB): rejected by `validate` with a clear message.
    pub topics: Option<serde_json::Value>,
    pub queues: Option<serde_json::Value>,
    pub source_access_configurations: Option<serde_json::Value>,
    pub self_managed_event_source: Option<serde_json::Value>,
    pub self_managed_kafka_event_source_config: Option<serde_json::Value>,
    pub amazon_managed_kafka_event_source_config: Option<serde_json::Value>,
    #[serde(rename = "DocumentDBEventSourceConfig")]
    pub document_db_event_source_config: Option<serde_json::Value>,

    // Read-only keys of a `GetEventSourceMapping` response.
    #[serde(rename = "UUID")]
    pub uuid: Option<String>,
    pub function_arn: Option<String>,
    pub event_source_mapping_arn: Option<serde_json::Value>,
    pub last_modified: Option<serde_json::Value>,
    pub last_processing_result: Option<serde_json::Value>,
    /// `Disabled` / `Disabling` (and `Deleting`) keep an exported mapping from polling, as on AWS.
    pub state: Option<String>,
    pub state_transition_reason: Option<serde_json::Value>,
    pub filter_criteria_error: Option<serde_json::Value>,
}

/// One problem with a mapping definition: the field (a JSON path) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Everything wrong with a mapping definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where a stream mapping starts reading a shard that has no checkpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StartingPosition {
    TrimHorizon,
    Latest,
    /// Epoch seconds.
    AtTimestamp(f64),
}

/// Settings that only stream (Kinesis, DynamoDB) mappings have.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamSettings {
    pub starting_position: StartingPosition,
    pub parallelization_factor: u32,
    pub bisect_batch_on_function_error: bool,
    /// `None` = retry until the record expires (`-1`).
    pub maximum_retry_attempts: Option<u32>,
    /// `None` = no age limit (`-1`).
    pub maximum_record_age: Option<Duration>,
    pub on_failure_destination: Option<String>,
    /// `None` = no tumbling window (`0`).
    pub tumbling_window: Option<Duration>,
}

/// Settings that only SQS mappings have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsSettings {
    /// `ScalingConfig.MaximumConcurrency`: at most this many batches in flight.
    pub maximum_concurrency: Option<u32>,
}

/// Per-source settings.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceSettings {
    Sqs(SqsSettings),
    Stream(StreamSettings),
}

/// A validated mapping with every default resolved.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// The mapping's id: `UUID` from the file, else derived from source and function so that it is stable
    /// across restarts (checkpoints are keyed by it).
    pub uuid: String,
    pub function_name: String,
    pub enabled: bool,
    pub source: SourceArn,
    pub batch_size: u32,
    pub batching_window: Duration,
    pub filters: esm_filter::Filters,
    pub report_batch_item_failures: bool,
    pub settings: SourceSettings,
    /// Keys that were accepted but have no effect here, for a warning.
    pub ignored_keys: Vec<&'static str>,
}

/// What every "not a mapping" error says the file should hold.
const EXPECTED_DOCUMENT: &str = "expected a JSON object (a CreateEventSourceMapping request or the output of \
     get-event-source-mapping or list-event-source-mappings)";

fn document_error(message: impl Into<String>) -> ConfigError {
    ConfigError {
        errors: vec![FieldError {
            field: "(document)".to_owned(),
            message: message.into(),
        }],
    }
}

/// Parse a mapping document: one mapping object, or the output of `list-event-source-mappings`
/// (`{"EventSourceMappings":[…]}`, optionally with its `NextMarker`). `${VAR}` references in string values
/// are resolved with `lookup`. Each mapping comes with the prefix its errors carry (`""`, or
/// `EventSourceMappings[i].`).
pub fn parse_document(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, RawMapping)>, ConfigError> {
    // Editors on Windows save UTF-8 with a byte-order mark; it carries no meaning in JSON (RFC 8259 §8.1).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(document_error(format!("the file is empty; {EXPECTED_DOCUMENT}")));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Value::deserialize(&mut de).map_err(|e| document_error(e.to_string()))?;
    // A second object (or anything else) after the first would otherwise be ignored without a word.
    de.end().map_err(|e| {
        document_error(format!(
            "{e}: a mapping file holds one JSON object; for several mappings use the output of \
             list-event-source-mappings or one file per mapping in a directory"
        ))
    })?;
    let Value::Object(mut object) = value else {
        return Err(document_error(format!("{EXPECTED_DOCUMENT}, got {}", kind(&value))));
    };
    let Some(list) = object.remove("EventSourceMappings") else {
        return Ok(vec![(String::new(), parse_one(Value::Object(object), "", lookup)?)]);
    };
    let mut problems = Problems::default();
    for key in object.keys().filter(|k| *k != "NextMarker") {
        problems.add(
            key.as_str(),
            "unknown field next to `EventSourceMappings`; the output of list-event-source-mappings has only \
             `EventSourceMappings` and `NextMarker`",
        );
    }
    let items = match list {
        Value::Array(items) if items.is_empty() => {
            problems.add("EventSourceMappings", "is empty: there is no mapping to run");
            Vec::new()
        }
        Value::Array(items) => items,
        other => {
            problems.add("EventSourceMappings", format!("must be an array of mappings, got {}", kind(&other)));
            Vec::new()
        }
    };
    let mut mappings = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let prefix = format!("EventSourceMappings[{i}].");
        match parse_one(item, &prefix, lookup) {
            Ok(raw) => mappings.push((prefix, raw)),
            Err(e) => problems.0.extend(e.errors),
        }
    }
    if problems.0.is_empty() { Ok(mappings) } else { Err(ConfigError { errors: problems.0 }) }
}

/// One mapping object: interpolate its strings, then read it into the AWS shape, naming the key of any
/// type error (prefixed with `prefix`).
fn parse_one(mut value: Value, prefix: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<RawMapping, ConfigError> {
    let field = |path: &str| format!("{prefix}{path}");
    if !value.is_object() {
        return Err(ConfigError {
            errors: vec![FieldError {
                field: prefix.trim_end_matches('.').to_owned(),
                message: format!("{EXPECTED_DOCUMENT}, got {}", kind(&value)),
            }],
        });
    }
    let mut problems = Problems::default();
    interpolate_strings(&mut value, &mut String::new(), lookup, &mut |path, e| {
        problems.add(field(path), e.to_string());
    });
    if !problems.0.is_empty() {
        return Err(ConfigError { errors: problems.0 });
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        ConfigError {
            errors: vec![FieldError {
                field: if path == "." { field("(document)") } else { field(&path) },
                message: err.into_inner().to_string(),
            }],
        }
    })
}

/// Interpolate every string inside `value`; `path` is the JSON path of `value` (`FilterCriteria.Filters[0]`).
fn interpolate_strings(
    value: &mut Value,
    path: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
    report: &mut dyn FnMut(&str, interpolate::InterpolateError),
) {
    let len = path.len();
    match value {
        Value::String(s) => match interpolate::interpolate(s, lookup) {
            Ok(done) => *s = done,
            Err(e) => report(path, e),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push_str(&format!("[{i}]"));
                interpolate_strings(item, path, lookup, report);
                path.truncate(len);
            }
        }
        Value::Object(members) => {
            for (key, member) in members.iter_mut() {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                interpolate_strings(member, path, lookup, report);
                path.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// "null", "an array", … for messages about a value of the wrong JSON type.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The text of a mapping file: UTF-8 (JSON's encoding, RFC 8259 §8.1). UTF-16, which Windows PowerShell's `>`
/// writes, is named rather than reported as a byte offset.
pub fn decode(bytes: &[u8]) -> Result<&str, ConfigError> {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err(document_error(
            "the file is UTF-16 (Windows PowerShell's `>` writes it); save it as UTF-8, e.g. with `Out-File -Encoding utf8`",
        ));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        document_error(format!("the file is not UTF-8: invalid byte at offset {}", e.valid_up_to()))
    })
}

/// Parse and validate every mapping of a document; each error names its field, prefixed with
/// `EventSourceMappings[i].` in a list.
pub fn load_document(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Mapping>, ConfigError> {
    let mut errors = Vec::new();
    let mut mappings = Vec::new();
    for (prefix, raw) in parse_document(text, lookup)? {
        match raw.validate() {
            Ok(m) => mappings.push(m),
            Err(e) => errors.extend(e.errors.into_iter().map(|mut e| {
                e.field.insert_str(0, &prefix);
                e
            })),
        }
    }
    if errors.is_empty() { Ok(mappings) } else { Err(ConfigError { errors }) }
}

/// The process environment, for `${VAR}` references.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parse and validate one mapping (`${VAR}` from the process environment).
pub fn load(json: &str) -> Result<Mapping, ConfigError> {
    let mut mappings = load_document(json, &env_var)?;
    if mappings.len() != 1 {
        return Err(document_error(format!("holds {} mappings where one is expected", mappings.len())));
    }
    Ok(mappings.remove(0))
}

/// Collects field errors while validating.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Check `value` (if given) lies in `min..=max`; return it or `default`.
    fn range(&mut self, field: &str, value: Option<i64>, min: i64, max: i64, default: i64) -> i64 {
        match value {
            Some(v) if v < min || v > max => {
                self.add(field, format!("must be between {min} and {max}, got {v}"));
                default
            }
            Some(v) => v,
            None => default,
        }
    }

    /// Report a stream-only or SQS-only key given for the wrong source.
    fn not_for<T>(&mut self, field: &str, value: &Option<T>, source: &str) {
        if value.is_some() {
            self.add(field, format!("is not supported for {source} event sources"));
        }
    }
}

impl RawMapping {
    /// Check every field against the AWS rules and resolve defaults.
    pub fn validate(self) -> Result<Mapping, ConfigError> {
        let mut p = Problems::default();

        for (field, value) in [
            ("Topics", &self.topics),
            ("Queues", &self.queues),
            ("SourceAccessConfigurations", &self.source_access_configurations),
            ("SelfManagedEventSource", &self.self_managed_event_source),
            ("SelfManagedKafkaEventSourceConfig", &self.self_managed_kafka_event_source_config),
            ("AmazonManagedKafkaEventSourceConfig", &self.amazon_managed_kafka_event_source_config),
            ("DocumentDBEventSourceConfig", &self.document_db_event_source_config),
        ] {
            if value.is_some() {
                p.add(
                    field,
                    "belongs to Kafka, MQ or DocumentDB sources, which poller does not support \
                     (it reads SQS, Kinesis and DynamoDB Streams)",
                );
            }
        }
        let ignored_keys: Vec<&'static str> = [
            ("Tags", self.tags.is_some()),
            ("KMSKeyArn", self.kms_key_arn.is_some()),
            ("MetricsConfig", self.metrics_config.is_some()),
            ("LoggingConfig", self.logging_config.is_some()),
            ("ProvisionedPollerConfig", self.provisioned_poller_config.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();

        let mut function = |name: &String, field: &str, member: &str| {
            if let Err(e) = crate::arn::check_function_name(name, member) {
                p.add(field, e);
            }
            name.clone()
        };
        let function_name = match (&self.function_name, &self.function_arn) {
            (Some(name), _) => function(name, "FunctionName", "functionName"),
            (None, Some(arn)) => function(arn, "FunctionArn", "functionArn"),
            (None, None) => {
                p.add("FunctionName", "is required");
                String::new()
            }
        };
        let enabled = self.enabled(&mut p);

        let source = match &self.event_source_arn {
            None => {
                p.add("EventSourceArn", "is required");
                None
            }
            Some(arn) => match SourceArn::parse(arn) {
                Ok(s) => Some(s),
                Err(e) => {
                    p.add("EventSourceArn", e);
                    None
                }
            },
        };

        let report_batch_item_failures = match self.function_response_types.as_deref() {
            None | Some([]) => false,
            Some([t]) if t == "ReportBatchItemFailures" => true,
            Some([t]) => {
                p.add(
                    "FunctionResponseTypes",
                    format!("unknown value {t:?}; the only allowed value is \"ReportBatchItemFailures\""),
                );
                false
            }
            Some(more) => {
                p.add("FunctionResponseTypes", format!("takes at most 1 item, got {}", more.len()));
                false
            }
        };

        let window = p.range(
            "MaximumBatchingWindowInSeconds",
            self.maximum_batching_window_in_seconds,
            0,
            300,
            0,
        );

        let Some(source) = source else {
            return Err(ConfigError { errors: p.0 });
        };

        let filter_source = match &source {
            SourceArn::Sqs(_) => esm_filter::Source::Sqs,
            SourceArn::Kinesis(_) => esm_filter::Source::Kinesis,
            SourceArn::DynamoDbStream(_) => esm_filter::Source::DynamoDb,
        };
        let filters = self.compile_filters(filter_source, &mut p);

        let (batch_size, settings) = match &source {
            SourceArn::Sqs(_) => {
                let fifo = source.is_fifo_queue();
                let max_batch = if fifo { 10 } else { 10_000 };
                let batch_size = match self.batch_size {
                    Some(v) if fifo && v > 10 => {
                        p.add("BatchSize", format!("must be between 1 and 10 for a FIFO queue, got {v}"));
                        10
                    }
                    v => p.range("BatchSize", v, 1, max_batch, 10),
                };
                if fifo && window > 0 {
                    p.add(
                        "MaximumBatchingWindowInSeconds",
                        "is not supported for FIFO queues; leave it unset or 0",
                    );
                } else if batch_size > 10 && window == 0 {
                    // AWS's message for this rule, word for word (an InvalidParameterValueException).
                    p.add(
                        "MaximumBatchingWindowInSeconds",
                        "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
                    );
                }
                for (field, present) in [
                    ("StartingPosition", self.starting_position.is_some()),
                    ("StartingPositionTimestamp", self.starting_position_timestamp.is_some()),
                    ("ParallelizationFactor", self.parallelization_factor.is_some()),
                    ("BisectBatchOnFunctionError", self.bisect_batch_on_function_error.is_some()),
                    ("MaximumRetryAttempts", self.maximum_retry_attempts.is_some()),
                    ("MaximumRecordAgeInSeconds", self.maximum_record_age_in_seconds.is_some()),
                    ("TumblingWindowInSeconds", self.tumbling_window_in_seconds.is_some()),
                ] {
                    p.not_for(field, &present.then_some(()), "SQS");
                }
                if self.destination_config.as_ref().is_some_and(|d| {
                    d.on_failure.as_ref().is_some_and(|f| f.destination.is_some()) || d.on_success.is_some()
                }) {
                    p.add(
                        "DestinationConfig",
                        "is not supported for SQS event sources: failed messages go to the queue's \
                         redrive policy (dead-letter queue)",
                    );
                }
                let maximum_concurrency = self
                    .scaling_config
                    .as_ref()
                    .and_then(|s| s.maximum_concurrency)
                    .map(|v| p.range("ScalingConfig.MaximumConcurrency", Some(v), 2, 1000, 2) as u32);
                (batch_size, SourceSettings::Sqs(SqsSettings { maximum_concurrency }))
            }
            SourceArn::Kinesis(_) | SourceArn::DynamoDbStream(_) => {
                let batch_size = p.range("BatchSize", self.batch_size, 1, 10_000, 100);
                p.not_for("ScalingConfig", &self.scaling_config, "Kinesis and DynamoDB Streams");
                (batch_size, SourceSettings::Stream(self.stream_settings(&source, &mut p)))
            }
        };

        if !p.0.is_empty() {
            return Err(ConfigError { errors: p.0 });
        }
        let uuid = self.uuid.clone().unwrap_or_else(|| {
            uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_URL,
                format!("{}|{}", source, function_name).as_bytes(),
            )
            .to_string()
        });
        Ok(Mapping {
            uuid,
            function_name,
            enabled,
            source,
            batch_size: batch_size as u32,
            batching_window: Duration::from_secs(window as u64),
            filters: filters.expect("filters compiled when there are no problems"),
            report_batch_item_failures,
            settings,
            ignored_keys,
        })
    }

    /// `Enabled`, or for an exported mapping its `State`: AWS reports `Enabled: false` as `Disabled` (or
    /// `Disabling` while it stops), and a mapping being deleted does not poll either.
    fn enabled(&self, p: &mut Problems) -> bool {
        const STATES: &str = "Creating, Enabling, Enabled, Disabling, Disabled, Updating or Deleting";
        let from_state = match self.state.as_deref() {
            None => None,
            Some("Creating" | "Enabling" | "Enabled" | "Updating") => Some(true),
            Some("Disabling" | "Disabled" | "Deleting") => Some(false),
            Some(other) => {
                p.add("State", format!("unknown state {other:?}; AWS reports {STATES}"));
                None
            }
        };
        match (self.enabled, from_state) {
            (Some(enabled), Some(running)) if enabled != running => {
                p.add(
                    "State",
                    format!(
                        "{:?} contradicts Enabled: {enabled}; keep one of them",
                        self.state.as_deref().unwrap_or_default()
                    ),
                );
                enabled
            }
            (Some(enabled), _) => enabled,
            (None, state) => state.unwrap_or(true),
        }
    }

    fn compile_filters(
        &self,
        source: esm_filter::Source,
        p: &mut Problems,
    ) -> Option<esm_filter::Filters> {
        let filters = self
            .filter_criteria
            .as_ref()
            .and_then(|c| c.filters.clone())
            .unwrap_or_default();
        let mut patterns = Vec::with_capacity(filters.len());
        for (i, f) in filters.iter().enumerate() {
            match &f.pattern {
                Some(serde_json::Value::String(s)) => patterns.push(s.clone()),
                Some(v @ serde_json::Value::Object(_)) => patterns.push(v.to_string()),
                Some(_) => p.add(
                    format!("FilterCriteria.Filters[{i}].Pattern"),
                    "must be a JSON pattern in a string",
                ),
                None => p.add(format!("FilterCriteria.Filters[{i}].Pattern"), "is required"),
            }
        }
        if patterns.len() != filters.len() {
            return None;
        }
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        match esm_filter::Filters::compile(source, &refs) {
            Ok(f) => Some(f),
            Err(e) => {
                // The filter engine's message already names `FilterCriteria.Filters[i].Pattern`.
                p.add("FilterCriteria", e.to_string());
                None
            }
        }
    }

    /// The starting position rules, with AWS's messages where it has them (as recorded from AWS in
    /// <https://github.com/localstack/localstack/blob/main/tests/aws/services/lambda_/event_source_mapping/test_api.snapshot.json>
    /// and quoted in <https://github.com/awsdocs/aws-cloudformation-user-guide/pull/334>).
    fn stream_settings(&self, source: &SourceArn, p: &mut Problems) -> StreamSettings {
        let is_ddb = matches!(source, SourceArn::DynamoDbStream(_));
        let starting_position = match self.starting_position.as_deref() {
            None => {
                p.add("StartingPosition", "is required for Kinesis and DynamoDB Streams event sources");
                StartingPosition::Latest
            }
            Some("TRIM_HORIZON") => StartingPosition::TrimHorizon,
            Some("LATEST") => StartingPosition::Latest,
            Some("AT_TIMESTAMP") if is_ddb => {
                p.add("StartingPosition", format!("Unsupported starting position for arn type: {source}"));
                StartingPosition::Latest
            }
            Some("AT_TIMESTAMP") => match &self.starting_position_timestamp {
                Some(ts) => match parse_timestamp(ts) {
                    Ok(secs) if secs > now_secs() => {
                        // The rule as the API reference states it ("StartingPositionTimestamp cannot be in
                        // the future"): a Kinesis iterator at a future time would silently act as LATEST.
                        p.add("StartingPositionTimestamp", "StartingPositionTimestamp cannot be in the future.");
                        StartingPosition::Latest
                    }
                    Ok(secs) => StartingPosition::AtTimestamp(secs),
                    Err(e) => {
                        p.add("StartingPositionTimestamp", e);
                        StartingPosition::Latest
                    }
                },
                None => {
                    p.add("StartingPositionTimestamp", "Need to specify a timestamp");
                    StartingPosition::Latest
                }
            },
            Some(other) => {
                p.add(
                    "StartingPosition",
                    crate::arn::validation_exception(
                        other,
                        "startingPosition",
                        &["satisfy enum value set: [LATEST, AT_TIMESTAMP, TRIM_HORIZON]".to_owned()],
                    ),
                );
                StartingPosition::Latest
            }
        };
        if self.starting_position_timestamp.is_some()
            && !matches!(starting_position, StartingPosition::AtTimestamp(_))
            && self.starting_position.as_deref() != Some("AT_TIMESTAMP")
        {
            p.add("StartingPositionTimestamp", "Timestamp only valid with StartingPosition AT_TIMESTAMP");
        }
        let parallelization_factor = p.range("ParallelizationFactor", self.parallelization_factor, 1, 10, 1);
        let retries = p.range("MaximumRetryAttempts", self.maximum_retry_attempts, -1, 10_000, -1);
        let age = match self.maximum_record_age_in_seconds {
            Some(v) if v != -1 && !(60..=604_800).contains(&v) => {
                p.add(
                    "MaximumRecordAgeInSeconds",
                    format!("must be -1 (no limit) or between 60 and 604800, got {v}"),
                );
                -1
            }
            v => v.unwrap_or(-1),
        };
        let tumbling = p.range("TumblingWindowInSeconds", self.tumbling_window_in_seconds, 0, 900, 0);
        let on_failure_destination = self.destination_config.as_ref().and_then(|d| {
            if d.on_success.is_some() {
                p.add("DestinationConfig.OnSuccess", "is not supported for event source mappings");
            }
            let dest = d.on_failure.as_ref()?.destination.clone()?;
            let service = dest.split(':').nth(2).unwrap_or_default();
            if !dest.starts_with("arn:") || !["sqs", "sns", "s3"].contains(&service) {
                p.add(
                    "DestinationConfig.OnFailure.Destination",
                    format!("{dest:?} must be the ARN of an SQS queue, an SNS topic or an S3 bucket"),
                );
            }
            Some(dest)
        });
        StreamSettings {
            starting_position,
            parallelization_factor: parallelization_factor as u32,
            bisect_batch_on_function_error: self.bisect_batch_on_function_error.unwrap_or(false),
            maximum_retry_attempts: u32::try_from(retries).ok(),
            maximum_record_age: u64::try_from(age).ok().map(Duration::from_secs),
            on_failure_destination,
            tumbling_window: (tumbling > 0).then(|| Duration::from_secs(tumbling as u64)),
        }
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `StartingPositionTimestamp`: epoch seconds, or an RFC 3339 / ISO 8601 date-time string.
fn parse_timestamp(value: &serde_json::Value) -> Result<f64, String> {
    match value {
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a valid timestamp")),
        serde_json::Value::String(s) => {
            let with_zone = if s.ends_with('Z') || s.rfind(['+', '-']).is_some_and(|i| i > 10) {
                s.clone()
            } else {
                format!("{s}Z")
            };
            time::OffsetDateTime::parse(&with_zone, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
                .map_err(|e| format!("{s:?} is not an ISO 8601 date-time: {e}"))
        }
        other => Err(format!("must be epoch seconds or an ISO 8601 string, got {other}")),
    }
}

#[cfg(test)]
mod tests;
