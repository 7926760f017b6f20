//! `poller filter`: which records a mapping's `FilterCriteria` keeps, and by which filter.
//!
//! Records are presented to the patterns exactly as the poller presents them while polling: one
//! element of the event's `Records` array, passed to [`esm_filter::Filters::matches`], which applies
//! the per-source view (SQS `body` parsed as JSON when it is an object, Kinesis `data` base64-decoded,
//! DynamoDB images in DynamoDB JSON). Input that is not in the record shape is taken as the raw
//! payload (SQS body, Kinesis data, DynamoDB `dynamodb` object) and wrapped into a record the way
//! the source would deliver it.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::arn::SourceArn;
use crate::config::{self, Mapping};

/// Output format of `poller filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// One filter of the mapping: its pattern text, compiled alone so that a match can name it.
struct Filter {
    pattern: String,
    compiled: esm_filter::Filters,
}

/// What the mapping decides for one record.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Kept by the first filter (index and pattern) that matches; `None` when the mapping has no filters.
    Kept(Option<(usize, String)>),
    Dropped,
}

/// The mapping's filters, one by one, for the mapping's source.
pub struct Criteria {
    source: SourceArn,
    filters: Vec<Filter>,
}

impl Criteria {
    /// The filters of `mapping`, whose raw definition is `raw` (the file's only mapping).
    fn new(mapping: &Mapping, raw: &config::RawMapping) -> Criteria {
        let source = match mapping.source {
            SourceArn::Sqs(_) => esm_filter::Source::Sqs,
            SourceArn::Kinesis(_) => esm_filter::Source::Kinesis,
            SourceArn::DynamoDbStream(_) => esm_filter::Source::DynamoDb,
        };
        let filters = raw
            .filter_criteria
            .iter()
            .flat_map(|c| c.filters.iter().flatten())
            .filter_map(|f| match &f.pattern {
                Some(Value::String(s)) => Some(s.clone()),
                Some(v) => Some(v.to_string()),
                None => None,
            })
            .map(|pattern| Filter {
                compiled: esm_filter::Filters::compile(source, &[&pattern])
                    .expect("each pattern compiles: the mapping validated"),
                pattern,
            })
            .collect();
        Criteria {
            source: mapping.source.clone(),
            filters,
        }
    }

    /// The verdict for one record in the event's record shape.
    pub fn judge(&self, record: &Value) -> Verdict {
        if self.filters.is_empty() {
            return Verdict::Kept(None);
        }
        match self.filters.iter().position(|f| f.compiled.matches(record)) {
            Some(i) => Verdict::Kept(Some((i, self.filters[i].pattern.clone()))),
            None => Verdict::Dropped,
        }
    }

    /// The records `input` stands for: the elements of a `{"Records":[…]}` event of this source, a
    /// record of this source as it appears in such an event (its `eventSource` is the source's),
    /// or else a raw payload wrapped into a record. Recognizing only this source's records keeps
    /// payloads that look like events of other services (an S3 notification in an SQS body) raw.
    pub fn records(&self, input: &str) -> Result<Vec<Value>, String> {
        let event_source = match self.source {
            SourceArn::Sqs(_) => "aws:sqs",
            SourceArn::Kinesis(_) => "aws:kinesis",
            SourceArn::DynamoDbStream(_) => "aws:dynamodb",
        };
        let ours = |v: &Value| v.get("eventSource").and_then(Value::as_str) == Some(event_source);
        let parsed: Option<Value> = serde_json::from_str(input).ok();
        if let Some(value) = &parsed {
            if ours(value) {
                return Ok(vec![value.clone()]);
            }
            if let Some(Value::Array(records)) = value.get("Records")
                && !records.is_empty()
                && records.iter().all(ours)
            {
                return Ok(records.clone());
            }
        }
        let parts = self.source.parts();
        Ok(vec![match &self.source {
            SourceArn::Sqs(_) => json!({
                "messageId": "00000000-0000-0000-0000-000000000000",
                "body": input,
                "attributes": {},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": parts.arn,
                "awsRegion": parts.region,
            }),
            SourceArn::Kinesis(_) => json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "",
                    "sequenceNumber": "0",
                    "data": base64::engine::general_purpose::STANDARD.encode(input),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventName": "aws:kinesis:record",
                "eventSourceARN": parts.arn,
                "awsRegion": parts.region,
            }),
            SourceArn::DynamoDbStream(_) => match parsed {
                Some(dynamodb @ Value::Object(_)) => json!({
                    "eventName": "INSERT",
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "dynamodb": dynamodb,
                    "eventSourceARN": parts.arn,
                    "awsRegion": parts.region,
                }),
                _ => {
                    return Err("expected a JSON object: a DynamoDB Streams record, a {\"Records\":[…]} event \
                                or a record's `dynamodb` object"
                        .to_owned());
                }
            },
        }])
    }
}

/// Load the only mapping of `path` with the loader `poller validate` uses, so errors read the same.
fn load(path: &Path) -> Result<Criteria, Vec<String>> {
    let (mut mappings, errors) = crate::load_mappings(&[path.to_owned()]);
    if !errors.is_empty() {
        return Err(errors.iter().map(ToString::to_string).collect());
    }
    if mappings.len() != 1 {
        return Err(vec![format!(
            "{}: holds {} mappings; `poller filter` tests one",
            path.display(),
            mappings.len()
        )]);
    }
    let (file, mapping) = mappings.remove(0);
    let text =
        std::fs::read_to_string(&file).map_err(|e| vec![format!("{}: {e}", file.display())])?;
    let raw = config::parse_document(&text, &config::env_var)
        .map_err(|e| vec![format!("{}: {e}", file.display())])?
        .remove(0)
        .1;
    Ok(Criteria::new(&mapping, &raw))
}

/// `poller filter`: print the verdict for each record of each input; exit 1 on bad input.
pub fn run(mapping: &Path, inputs: &[PathBuf], output: Output) -> ExitCode {
    let criteria = match load(mapping) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::from(1);
        }
    };
    // (where the input came from, its text)
    let mut sources: Vec<(String, String)> = Vec::new();
    if inputs.is_empty() {
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            match line {
                Ok(line) if line.trim().is_empty() => {}
                Ok(line) => sources.push((format!("stdin:{}", n + 1), line)),
                Err(e) => {
                    eprintln!("stdin:{}: {e}", n + 1);
                    return ExitCode::from(1);
                }
            }
        }
    } else {
        for path in inputs {
            match std::fs::read_to_string(path) {
                Ok(text) => sources.push((
                    path.display().to_string(),
                    text.trim_end_matches('\n').to_owned(),
                )),
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
        }
    }
    let mut status = ExitCode::SUCCESS;
    for (origin, text) in sources {
        let records = match criteria.records(&text) {
            Ok(records) => records,
            Err(problem) => {
                eprintln!("{origin}: {problem}");
                status = ExitCode::from(1);
                continue;
            }
        };
        let many = records.len() > 1;
        for (i, record) in records.iter().enumerate() {
            let at = if many {
                format!("{origin}: Records[{i}]")
            } else {
                origin.clone()
            };
            let verdict = criteria.judge(record);
            match output {
                Output::Text => match verdict {
                    Verdict::Kept(Some((index, pattern))) => {
                        println!("{at}: kept by filter[{index}] {pattern}")
                    }
                    Verdict::Kept(None) => println!("{at}: kept (no FilterCriteria)"),
                    Verdict::Dropped => println!("{at}: dropped"),
                },
                Output::Json => {
                    let (kept, filter, pattern) = match verdict {
                        Verdict::Kept(Some((index, pattern))) => (true, Some(index), Some(pattern)),
                        Verdict::Kept(None) => (true, None, None),
                        Verdict::Dropped => (false, None, None),
                    };
                    println!(
                        "{}",
                        json!({"input": at, "kept": kept, "filter": filter, "pattern": pattern})
                    );
                }
            }
        }
    }
    status
}
