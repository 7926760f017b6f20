//! The `FilterCriteria` engine of AWS Lambda event source mappings.
//!
//! An event source mapping may carry up to ten filter patterns (five by default on AWS). A record
//! is delivered when it matches at least one of them; the poller deletes (SQS) or skips (streams)
//! the others. Patterns use EventBridge's pattern language, and this crate follows the engine
//! behind it, aws/event-ruler, down to its quirks (dot-joined paths, array-consistent matching,
//! numbers compared by value in `[-5e9, 5e9]` with six decimals). Per source the record is
//! presented the way Lambda presents it to the patterns:
//!
//! * **SQS**: the record as received; `body` is matched as JSON when it parses as a JSON object,
//!   as a string otherwise. A pattern that treats `body` as JSON never matches a text body, and
//!   one that treats it as text never matches a JSON body.
//! * **Kinesis**: the members of the record's `kinesis` object (`partitionKey`, `data`, …) sit at
//!   the top level beside `eventSource`, `awsRegion` and the other record fields; `data` is
//!   base64-decoded and matched as JSON. A `data` pattern that is not an object is rejected.
//! * **DynamoDB**: the record as received; `dynamodb` images are matched in DynamoDB JSON, type
//!   keys included (`{"dynamodb":{"NewImage":{"id":{"S":["1"]}}}}`).
//!
//! Patterns are compiled once; [`Filters::matches`] only reads the record, parses or decodes the
//! data key only when some pattern names it, and never panics. See `docs/filters.md` for the
//! semantics and the sources behind every decision.
//!
//! ```
//! use esm_filter::{Filters, Source};
//!
//! let filters = Filters::compile(Source::Sqs, &[r#"{"body":{"RequestCode":["AAAA"]}}"#]).unwrap();
//! let record = serde_json::json!({"messageId": "1", "body": r#"{"RequestCode":"AAAA"}"#});
//! assert!(filters.matches(&record));
//! let text = serde_json::json!({"messageId": "2", "body": "RequestCode AAAA"});
//! assert!(!filters.matches(&text)); // a JSON pattern never matches a plain-text body
//! ```

mod compile;
mod engine;
mod ip;
mod matcher;
mod node;
mod number;
mod prune;
mod text;
mod walk;

use std::sync::Arc;

use serde_json::Value;

use crate::engine::{Engine, View};

/// A member of a Kinesis record handed to [`Filters::matches_kinesis`] as it appears in the
/// record's JSON: a string, or a number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Member<'a> {
    Str(&'a str),
    /// A JSON number with a fraction (`approximateArrivalTimestamp`), as serde_json reads
    /// `1545084650.987` or `1764086780.0`.
    Float(f64),
}

/// Filters per event source mapping that AWS accepts at most (5 by default, 10 with a quota
/// increase). We accept 10 so that every definition that runs on AWS runs here unchanged.
pub const MAX_FILTERS: usize = 10;

/// Longest `Pattern` AWS accepts, in characters.
pub const MAX_PATTERN_CHARS: usize = 4096;

/// The kind of event source a mapping reads; it decides how records are presented to patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Sqs,
    Kinesis,
    DynamoDb,
}

/// Why a `FilterCriteria` was rejected. AWS answers every one of these with
/// `InvalidParameterValueException: Invalid filter pattern definition.`; we also say which
/// filter and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("FilterCriteria.Filters: {count} filters exceed the limit of {max} per event source mapping")]
    TooManyFilters { count: usize, max: usize },
    #[error("FilterCriteria.Filters[{index}].Pattern: invalid filter pattern definition: {reason}")]
    InvalidPattern { index: usize, reason: String },
}

/// A compiled `FilterCriteria`. Cheap to clone (shared), `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Filters {
    engine: Arc<Engine>,
}

impl Filters {
    /// `patterns` are the `FilterCriteria.Filters[].Pattern` strings, in order. At most
    /// [`MAX_FILTERS`]; an empty list means no filtering.
    pub fn compile(source: Source, patterns: &[&str]) -> Result<Filters, Error> {
        Filters::compile_with_limit(source, patterns, MAX_FILTERS)
    }

    /// [`Filters::compile`] with another limit on the number of patterns (benchmarks and tools
    /// use more than a mapping may have).
    pub fn compile_with_limit(source: Source, patterns: &[&str], max_filters: usize) -> Result<Filters, Error> {
        if patterns.len() > max_filters {
            return Err(Error::TooManyFilters { count: patterns.len(), max: max_filters });
        }
        for (index, pattern) in patterns.iter().enumerate() {
            let chars = pattern.chars().count();
            if chars > MAX_PATTERN_CHARS {
                let reason = format!("pattern is {chars} characters long, the limit is {MAX_PATTERN_CHARS}");
                return Err(Error::InvalidPattern { index, reason });
            }
        }
        let view = match source {
            Source::Sqs => View::Sqs,
            Source::Kinesis => View::Kinesis,
            Source::DynamoDb => View::DynamoDb,
        };
        let engine = Engine::compile(view, patterns).map_err(|(index, reason)| Error::InvalidPattern { index, reason })?;
        Ok(Filters { engine: Arc::new(engine) })
    }

    /// No filters: every record matches.
    pub fn is_empty(&self) -> bool {
        self.engine.is_empty()
    }

    /// Whether the record passes the filters. `record` is one element of the event's `Records`
    /// array exactly as the function receives it (string `body`, base64 `kinesis.data`, …).
    pub fn matches(&self, record: &Value) -> bool {
        self.is_empty() || self.engine.matches(record)
    }

    /// [`Filters::matches`] on a record held as its JSON text, as the poller holds records: members
    /// no pattern can see are skipped while parsing instead of being built and walked past. Text
    /// that is not JSON matches nothing.
    pub fn matches_json(&self, record: &[u8]) -> bool {
        if self.is_empty() {
            return true;
        }
        match prune::pruned(&self.engine, record) {
            Some(pruned) => self.engine.matches(&pruned),
            // Not an object: rare enough to be read whole.
            None => serde_json::from_slice(record).is_ok_and(|value| self.engine.matches(&value)),
        }
    }

    /// [`Filters::matches`] for filters compiled for [`Source::Kinesis`], on a record given as the
    /// members the patterns see (the `kinesis` object's members beside the record's other
    /// top-level members, by name) and its `data` in base64, instead of as JSON. The poller
    /// decides from the GetRecords answer, before writing the record's JSON, so a record no filter
    /// keeps is never written. Agrees with `matches` on the record these members make (tested).
    pub fn matches_kinesis(&self, data: &str, members: &[(&str, Member<'_>)]) -> bool {
        debug_assert_eq!(self.engine.view(), View::Kinesis, "Kinesis filters");
        self.is_empty() || self.engine.matches_kinesis(data, members)
    }
}

/// One EventBridge event pattern applied to plain JSON, without any event-source view: the
/// engine underneath [`Filters`].
#[derive(Debug, Clone)]
pub struct Pattern {
    engine: Arc<Engine>,
}

impl Pattern {
    /// Errors are reported as [`Error::InvalidPattern`] with index 0.
    pub fn compile(pattern: &str) -> Result<Pattern, Error> {
        let engine =
            Engine::compile(View::Plain, &[pattern]).map_err(|(index, reason)| Error::InvalidPattern { index, reason })?;
        Ok(Pattern { engine: Arc::new(engine) })
    }

    pub fn matches(&self, event: &Value) -> bool {
        self.engine.matches(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Filters>();
        assert_send_sync::<Pattern>();
    }

    #[test]
    fn error_names_the_filter() {
        let err = Filters::compile(Source::DynamoDb, &[r#"{"a":[1]}"#, r#"{"eventName":"INSERT"}"#]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"FilterCriteria.Filters[1].Pattern: invalid filter pattern definition: "eventName" must be an object or an array"#
        );
    }

    #[test]
    fn limits() {
        let pattern = r#"{"a":[1]}"#;
        assert!(Filters::compile(Source::Sqs, &[pattern; MAX_FILTERS]).is_ok());
        let err = Filters::compile(Source::Sqs, &[pattern; MAX_FILTERS + 1]).unwrap_err();
        assert_eq!(err, Error::TooManyFilters { count: 11, max: 10 });
        let long = format!(r#"{{"a":["{}"]}}"#, "x".repeat(MAX_PATTERN_CHARS));
        assert!(matches!(
            Filters::compile(Source::Sqs, &[&long]).unwrap_err(),
            Error::InvalidPattern { index: 0, .. }
        ));
        let exact = format!(r#"{{"a":["{}"]}}"#, "x".repeat(MAX_PATTERN_CHARS - 10));
        assert_eq!(exact.chars().count(), MAX_PATTERN_CHARS);
        assert!(Filters::compile(Source::Sqs, &[&exact]).is_ok());
    }

    #[test]
    fn no_filters_match_everything() {
        let filters = Filters::compile(Source::Sqs, &[]).unwrap();
        assert!(filters.is_empty());
        assert!(filters.matches(&Value::Null));
    }
}
