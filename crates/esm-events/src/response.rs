//! Reading a function's response body after a successful (status 200, no `X-Amz-Function-Error`)
//! invocation.
//!
//! Only meaningful when the mapping has `FunctionResponseTypes: ["ReportBatchItemFailures"]`;
//! without it AWS ignores the body and a returned invocation is a full success. Function errors are
//! decided by the caller from the invoke result, before the body is looked at.
//!
//! The rules (AWS documentation plus what real AWS did in recorded tests; details and sources in
//! `docs/event-shapes.md`):
//!
//! * **Success**: empty body, `null`, `""`, `[]`, `{}`, `{"batchItemFailures":[]}`,
//!   `{"batchItemFailures":null}`, any object without `batchItemFailures` (key match is exact and
//!   case-sensitive). Extra keys anywhere are ignored.
//! * **Partial**: every entry of `batchItemFailures` is an object whose `itemIdentifier` is a
//!   non-empty string naming a record of the batch (message id for SQS, sequence number for
//!   streams). Identifiers are returned in response order without duplicates.
//! * **Invalid** (the whole batch failed, as if the function had thrown): the body is not JSON; it
//!   is JSON but not an object (other than the empty forms above); `batchItemFailures` is neither
//!   an array nor `null`; an entry is not an object; an `itemIdentifier` is missing, `null`, not a
//!   string, empty, or not in the batch. One bad entry invalidates the whole response.
//!
//! Parsing goes through `serde_json::Value` on purpose: typed response structs reject `{}`, `null`
//! and null lists, which AWS treats as success.

use std::collections::HashSet;
use std::fmt;

use serde_json::{Map, Value};

/// How the mapping must treat a batch after the function returned normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchResponse {
    /// Every record succeeded: delete the messages / checkpoint past the batch.
    Success,
    /// These records failed (at least one; response order; no duplicates). SQS keeps them and
    /// deletes the rest; streams checkpoint before the lowest failed sequence number and retry
    /// from there.
    Partial(Vec<String>),
    /// The response is malformed, which AWS treats as a failure of the whole batch.
    Invalid(InvalidResponse),
}

/// Why a response body failed the whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidResponse {
    /// The body is not JSON (the parser's message, for logs).
    InvalidJson(String),
    /// The body is JSON but not an object, and not one of the accepted empty forms.
    NotAnObject,
    /// `batchItemFailures` is neither an array nor `null`.
    FailuresNotArray,
    /// Entry `index` of `batchItemFailures` is not an object.
    ItemNotObject {
        /// Position in `batchItemFailures`.
        index: usize,
    },
    /// Entry `index` has no `itemIdentifier` key.
    IdentifierMissing {
        /// Position in `batchItemFailures`.
        index: usize,
    },
    /// Entry `index` has `"itemIdentifier": null`.
    IdentifierNull {
        /// Position in `batchItemFailures`.
        index: usize,
    },
    /// Entry `index` has an `itemIdentifier` that is not a string (numbers are not coerced).
    IdentifierNotString {
        /// Position in `batchItemFailures`.
        index: usize,
    },
    /// Entry `index` has `"itemIdentifier": ""`.
    IdentifierEmpty {
        /// Position in `batchItemFailures`.
        index: usize,
    },
    /// Entry `index` names a record that is not in the batch.
    UnknownIdentifier {
        /// Position in `batchItemFailures`.
        index: usize,
        /// The identifier as returned.
        identifier: String,
    },
    /// A tumbling-window response has no `state` (or `"state": null`).
    StateMissing,
    /// A tumbling-window response has a `state` that is not an object.
    StateNotObject,
}

impl fmt::Display for InvalidResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidJson(message) => write!(f, "response is not valid JSON: {message}"),
            Self::NotAnObject => f.write_str("response is not a JSON object"),
            Self::FailuresNotArray => f.write_str("batchItemFailures is not an array"),
            Self::ItemNotObject { index } => {
                write!(f, "batchItemFailures[{index}] is not an object")
            }
            Self::IdentifierMissing { index } => {
                write!(f, "batchItemFailures[{index}] has no itemIdentifier")
            }
            Self::IdentifierNull { index } => {
                write!(f, "batchItemFailures[{index}].itemIdentifier is null")
            }
            Self::IdentifierNotString { index } => {
                write!(
                    f,
                    "batchItemFailures[{index}].itemIdentifier is not a string"
                )
            }
            Self::IdentifierEmpty { index } => {
                write!(f, "batchItemFailures[{index}].itemIdentifier is empty")
            }
            Self::UnknownIdentifier { index, identifier } => write!(
                f,
                "batchItemFailures[{index}].itemIdentifier {identifier:?} is not in the batch"
            ),
            Self::StateMissing => f.write_str("tumbling-window response has no state"),
            Self::StateNotObject => f.write_str("tumbling-window response state is not an object"),
        }
    }
}

/// Classifies a response body for a mapping with `ReportBatchItemFailures`.
///
/// `in_batch` tells whether an identifier names a record of the invoked batch (SQS message id or
/// stream sequence number), e.g. `|id| ids.contains(id)`.
pub fn parse_batch_response(body: &[u8], in_batch: impl Fn(&str) -> bool) -> BatchResponse {
    let failed = parse_json(body).and_then(|value| match response_object(&value)? {
        Some(object) => failed_items(object, &in_batch),
        None => Ok(Vec::new()),
    });
    match failed {
        Ok(failed) if failed.is_empty() => BatchResponse::Success,
        Ok(failed) => BatchResponse::Partial(failed),
        Err(reason) => BatchResponse::Invalid(reason),
    }
}

/// A valid tumbling-window response.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResponse {
    /// The state to pass to the next invocation of this window.
    pub state: Map<String, Value>,
    /// Records reported as failed (same rules as [`parse_batch_response`]); empty when all
    /// succeeded or when batch item failures are not being read.
    pub failed: Vec<String>,
}

/// Parses the response to a tumbling-window invocation: `{"state":{...},"batchItemFailures":[...]}`.
///
/// `state` must be present and an object, otherwise the invocation counts as failed. Pass
/// `in_batch` when the mapping has `ReportBatchItemFailures` (then `batchItemFailures` is read with
/// the rules of [`parse_batch_response`]), or `None` to ignore it entirely.
pub fn parse_window_response(
    body: &[u8],
    in_batch: Option<&dyn Fn(&str) -> bool>,
) -> Result<WindowResponse, InvalidResponse> {
    let value = parse_json(body)?;
    let object = response_object(&value)?.ok_or(InvalidResponse::StateMissing)?;
    let state = match object.get("state") {
        None | Some(Value::Null) => return Err(InvalidResponse::StateMissing),
        Some(Value::Object(state)) => state.clone(),
        Some(_) => return Err(InvalidResponse::StateNotObject),
    };
    let failed = match in_batch {
        Some(in_batch) => failed_items(object, in_batch)?,
        None => Vec::new(),
    };
    Ok(WindowResponse { state, failed })
}

/// An empty (or whitespace-only) body is what a function that returns nothing produces; it reads
/// as JSON `null`.
fn parse_json(body: &[u8]) -> Result<Value, InvalidResponse> {
    if body.trim_ascii().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|error| InvalidResponse::InvalidJson(error.to_string()))
}

/// The response object, `None` for the forms AWS reads as "no response" (`null`, `""`, `[]`).
fn response_object(value: &Value) -> Result<Option<&Map<String, Value>>, InvalidResponse> {
    match value {
        Value::Object(object) => Ok(Some(object)),
        Value::Null => Ok(None),
        Value::String(text) if text.is_empty() => Ok(None),
        Value::Array(items) if items.is_empty() => Ok(None),
        _ => Err(InvalidResponse::NotAnObject),
    }
}

fn failed_items(
    object: &Map<String, Value>,
    in_batch: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, InvalidResponse> {
    let items = match object.get("batchItemFailures") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(InvalidResponse::FailuresNotArray),
    };
    let mut failed = Vec::with_capacity(items.len());
    let mut seen = HashSet::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::Object(item) = item else {
            return Err(InvalidResponse::ItemNotObject { index });
        };
        let identifier = match item.get("itemIdentifier") {
            None => return Err(InvalidResponse::IdentifierMissing { index }),
            Some(Value::Null) => return Err(InvalidResponse::IdentifierNull { index }),
            Some(Value::String(identifier)) if identifier.is_empty() => {
                return Err(InvalidResponse::IdentifierEmpty { index });
            }
            Some(Value::String(identifier)) => identifier,
            Some(_) => return Err(InvalidResponse::IdentifierNotString { index }),
        };
        if !in_batch(identifier) {
            return Err(InvalidResponse::UnknownIdentifier {
                index,
                identifier: identifier.clone(),
            });
        }
        if seen.insert(identifier.as_str()) {
            failed.push(identifier.clone());
        }
    }
    Ok(failed)
}
