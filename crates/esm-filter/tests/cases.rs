//! Table-driven behaviour tests: every line of `cases.jsonl` is one case.
//!
//! A case has a `name`, a `source` (`sqs`, `kinesis`, `dynamodb`, or `eventbridge` for a plain
//! [`Pattern`] without an event-source view), a `pattern` (JSON, or a string taken verbatim as the
//! pattern text) or a list of `patterns`, and either a `record` with the expected `match`, or the
//! `error` text the rejection reason must contain.
//!
//! To keep the file readable, record data may be written decoded: an SQS `body` or Kinesis
//! `kinesis.data` of the form `{"$json": value}` is serialised (and for Kinesis base64-encoded),
//! and a Kinesis `{"$text": "..."}` is base64-encoded. Sources of the cases are the AWS Lambda and
//! EventBridge documentation, the aws/event-ruler README, and AWS behaviour recorded in
//! `docs/aws-reference.md#filtering-observed-on-aws`; see `docs/filters.md`.

use base64::Engine as _;
use esm_filter::{Error, Filters, Pattern, Source};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    source: String,
    #[serde(default)]
    pattern: Option<Value>,
    #[serde(default)]
    patterns: Option<Vec<Value>>,
    #[serde(default)]
    record: Option<Value>,
    #[serde(rename = "match", default)]
    expected: Option<bool>,
    #[serde(default)]
    error: Option<String>,
}

enum Compiled {
    Filters(Filters),
    Pattern(Pattern),
}

impl Compiled {
    fn matches(&self, record: &Value) -> bool {
        match self {
            Compiled::Filters(f) => {
                let whole = f.matches(record);
                // The poller's path, reading the record from its JSON text, agrees on every case.
                assert_eq!(f.matches_json(record.to_string().as_bytes()), whole, "matches_json on {record}");
                whole
            }
            Compiled::Pattern(p) => p.matches(record),
        }
    }
}

fn pattern_text(value: &Value) -> String {
    match value {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

fn compile(case: &Case) -> Result<Compiled, Error> {
    let texts: Vec<String> = match (&case.pattern, &case.patterns) {
        (Some(p), None) => vec![pattern_text(p)],
        (None, Some(ps)) => ps.iter().map(pattern_text).collect(),
        _ => panic!("{}: give exactly one of pattern / patterns", case.name),
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let source = match case.source.as_str() {
        "sqs" => Source::Sqs,
        "kinesis" => Source::Kinesis,
        "dynamodb" => Source::DynamoDb,
        "eventbridge" => {
            assert_eq!(refs.len(), 1, "{}: eventbridge cases take one pattern", case.name);
            return Pattern::compile(refs[0]).map(Compiled::Pattern);
        }
        other => panic!("{}: unknown source {other}", case.name),
    };
    Filters::compile(source, &refs).map(Compiled::Filters)
}

/// Expands the `$json` / `$text` shorthands into the wire form the function would receive.
fn wire_record(source: &str, mut record: Value) -> Value {
    let b64 = |bytes: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    let slot = match source {
        "sqs" => record.get_mut("body"),
        "kinesis" => record.get_mut("kinesis").and_then(|k| k.get_mut("data")),
        _ => None,
    };
    if let Some(slot) = slot {
        let replacement = match (slot.get("$json"), slot.get("$text")) {
            (Some(json), _) if source == "sqs" => Some(Value::String(json.to_string())),
            (Some(json), _) => Some(b64(json.to_string().as_bytes())),
            (None, Some(Value::String(text))) => Some(b64(text.as_bytes())),
            _ => None,
        };
        if let Some(replacement) = replacement {
            *slot = replacement;
        }
    }
    record
}

fn load() -> Vec<Case> {
    include_str!("cases.jsonl")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(i, line)| serde_json::from_str(line).unwrap_or_else(|e| panic!("cases.jsonl line {}: {e}", i + 1)))
        .collect()
}

#[test]
fn all_cases() {
    let cases = load();
    let mut failures = Vec::new();
    for case in &cases {
        match (compile(case), &case.error, case.expected) {
            (Ok(compiled), None, Some(expected)) => {
                let record = wire_record(&case.source, case.record.clone().expect("record"));
                let got = compiled.matches(&record);
                if got != expected {
                    failures.push(format!("{}: expected match={expected}, got {got}", case.name));
                }
            }
            (Err(err), Some(wanted), None) => {
                if !err.to_string().contains(wanted.as_str()) {
                    failures.push(format!("{}: error {err:?} does not contain {wanted:?}", case.name));
                }
            }
            (Ok(_), Some(wanted), _) => failures.push(format!("{}: compiled, expected error {wanted:?}", case.name)),
            (Err(err), None, _) => failures.push(format!("{}: unexpected error {err}", case.name)),
            (Ok(_), None, None) => failures.push(format!("{}: neither match nor error given", case.name)),
            (Err(_), Some(_), Some(_)) => failures.push(format!("{}: both match and error given", case.name)),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn case_names_are_unique() {
    let cases = load();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len());
}
