//! The exact JSON that AWS Lambda event source mappings (ESMs) exchange with functions.
//!
//! A self-hosted ESM is only a drop-in replacement if functions cannot tell it from AWS. This crate
//! holds everything on that boundary, as pure data and pure functions (no I/O, no AWS SDK):
//!
//! * [`sqs`], [`kinesis`], [`dynamodb`]: one record of the invocation event, serialized with the key
//!   order, key set and value types AWS uses (`Serialize` only; these are outputs).
//! * [`envelope`]: joins records that were serialized once into `{"Records":[...]}` (or the
//!   tumbling-window event) and predicts the payload size exactly, so batches can respect the
//!   6 MB invoke limit before anything is copied.
//! * [`response`]: how a function's response body is read: success, partial batch failure, or an
//!   invalid response that fails the whole batch. Parsed from `serde_json::Value` with AWS's
//!   lenient rules, never through typed structs that would reject what AWS accepts.
//! * [`failure`]: the on-failure destination record for stream mappings (SQS/SNS body, S3 object
//!   body and key).
//! * [`json_str`]: a string read from JSON and written back as read when that changes no byte (an
//!   SQS message's body and receipt handle, passed from the ReceiveMessage answer into the event).
//!
//! Constructors take plain Rust values (strings, `i64` epoch milliseconds, bytes) so callers can fill
//! them from whatever SDK types they hold. Every choice not settled by AWS documentation or
//! recordings is written down, with sources, in `docs/event-shapes.md`.

pub mod dynamodb;
pub mod envelope;
pub mod failure;
pub mod json_str;
pub mod kinesis;
pub mod response;
pub mod sqs;

mod encoding;
mod timestamp;

/// Errors from rendering events and failure records.
///
/// Records themselves serialize infallibly; only values that need calendar formatting (RFC 3339
/// timestamps, S3 object keys) or caller-supplied raw JSON can be rejected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The timestamp cannot be written in the four-digit-year RFC 3339 form AWS uses.
    #[error("timestamp {millis} ms since the Unix epoch is outside years 0000-9999")]
    TimestampOutOfRange {
        /// The offending value, in milliseconds since the Unix epoch.
        millis: i64,
    },
    /// The invocation payload handed in for an S3 on-failure record is not UTF-8.
    #[error("invocation payload is not UTF-8 JSON")]
    PayloadNotUtf8,
    /// serde_json refused to serialize a value.
    #[error("JSON serialization failed: {0}")]
    Json(#[from] serde_json::Error),
}
