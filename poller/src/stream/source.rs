//! Reading a stream: the operations a shard worker needs, the same for Kinesis and DynamoDB Streams.
//!
//! Each source module (`kinesis`, `dynamodb`) implements these methods with the same signatures on its
//! own type; [`StreamSource`] dispatches. Records come back already in the exact shape the function
//! receives (serialized once, esm-events), with what the worker needs beside it.

use bytes::Bytes;
use esm_stream::seq::SequenceNumber;

use super::{dynamodb::DynamoDbSource, kinesis::KinesisSource};
use crate::arn::ArnParts;
use crate::error::Error;

/// One shard and its lineage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    /// Parent shard ids (one after a split, two after a merge, none for an original shard).
    pub parent_shard_ids: Vec<String>,
}

/// Where to start reading a shard.
#[derive(Clone, Debug, PartialEq)]
pub enum Position {
    TrimHorizon,
    Latest,
    /// Epoch seconds (Kinesis only).
    AtTimestamp(f64),
    /// Just after a checkpointed record.
    AfterSequence(String),
    /// At a record: `poller replay` reads a discarded batch from its first record.
    AtSequence(String),
}

/// One record read from a shard.
#[derive(Clone, Debug)]
pub struct StreamRecord {
    pub sequence_number: SequenceNumber,
    /// Approximate arrival (Kinesis) or creation (DynamoDB) time, epoch milliseconds.
    pub arrival_ms: i64,
    /// What orders records: the Kinesis partition key; for DynamoDB the item's key attributes (as
    /// serialized JSON), so changes to one item stay in order.
    pub partition_key: Bytes,
    /// Whether the record passes the filters it was read with; they see it exactly as the function
    /// would.
    pub passes: bool,
    /// The record exactly as it appears in the event's `Records` array. Kinesis records that do not
    /// pass the filters are never delivered, so never written: theirs is empty. A Kinesis page's
    /// records share one buffer; each holds its slice.
    pub json: Bytes,
}

/// One GetRecords answer.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<StreamRecord>,
    /// `None` once a closed shard has been read to its end.
    pub next_iterator: Option<String>,
    /// How far behind the tip of the shard this page is (Kinesis `MillisBehindLatest`), if known.
    pub millis_behind: Option<i64>,
}

/// Why a read failed, by what the worker does about it.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// ProvisionedThroughputExceeded / LimitExceeded / throttling: back off and retry the same call.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The iterator is older than its lifetime (Kinesis 5 min, DynamoDB 15 min): get a new one.
    #[error("shard iterator expired")]
    ExpiredIterator,
    /// The position asked for is no longer in the stream (TrimmedDataAccessException, or an
    /// AT/AFTER_SEQUENCE_NUMBER past retention): restart from TRIM_HORIZON.
    #[error("data trimmed: {0}")]
    Trimmed(String),
    /// The shard or stream is gone.
    #[error("not found: {0}")]
    NotFound(String),
    /// Anything else (network, 5xx): back off and retry.
    #[error("{0}")]
    Other(String),
}

/// A Kinesis data stream or a DynamoDB stream.
#[derive(Clone, Debug)]
pub enum StreamSource {
    Kinesis(KinesisSource),
    DynamoDb(DynamoDbSource),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            StreamSource::Kinesis($s) => $e,
            StreamSource::DynamoDb($s) => $e,
        }
    };
}

impl StreamSource {
    /// Connect to the stream of `arn`; fails with `Stream not found: <arn>` (AWS's text) if it does
    /// not exist. `invoke_identity_arn` goes into Kinesis records (`invokeIdentityArn`).
    pub async fn connect(
        sdk: &aws_config::SdkConfig,
        source: &crate::arn::SourceArn,
        invoke_identity_arn: &str,
    ) -> Result<StreamSource, Error> {
        match source {
            crate::arn::SourceArn::Kinesis(arn) => {
                Ok(StreamSource::Kinesis(KinesisSource::connect(sdk, arn, invoke_identity_arn).await?))
            }
            crate::arn::SourceArn::DynamoDbStream(arn) => {
                Ok(StreamSource::DynamoDb(DynamoDbSource::connect(sdk, arn).await?))
            }
            crate::arn::SourceArn::Sqs(_) => unreachable!("SQS is not a stream"),
        }
    }

    /// Every shard of the stream, open or closed, with its parents.
    pub async fn list_shards(&self) -> Result<Vec<ShardInfo>, ReadError> {
        dispatch!(self, s => s.list_shards().await)
    }

    /// A shard iterator at `position`.
    pub async fn iterator(&self, shard_id: &str, position: &Position) -> Result<String, ReadError> {
        dispatch!(self, s => s.iterator(shard_id, position).await)
    }

    /// Up to `limit` records from `iterator`, each marked with whether it passes `filters`.
    pub async fn read(
        &self,
        shard_id: &str,
        iterator: &str,
        limit: usize,
        filters: &esm_filter::Filters,
    ) -> Result<Page, ReadError> {
        dispatch!(self, s => s.read(shard_id, iterator, limit, filters).await)
    }

    /// The stream's ARN as written into events and failure records.
    pub fn arn(&self) -> &ArnParts {
        dispatch!(self, s => s.arn())
    }

    /// Kinesis or DynamoDB, for failure records.
    pub fn kind(&self) -> esm_events::failure::StreamKind {
        match self {
            StreamSource::Kinesis(_) => esm_events::failure::StreamKind::Kinesis,
            StreamSource::DynamoDb(_) => esm_events::failure::StreamKind::DynamoDb,
        }
    }

    /// GetRecords calls per second a shard allows (Kinesis 5, DynamoDB Streams 4 as Lambda polls it).
    pub fn reads_per_second(&self) -> u32 {
        match self {
            StreamSource::Kinesis(_) => 5,
            StreamSource::DynamoDb(_) => 4,
        }
    }

    /// Most records one GetRecords may return (Kinesis 10,000, DynamoDB Streams 1,000).
    pub fn max_page(&self) -> usize {
        match self {
            StreamSource::Kinesis(_) => 10_000,
            StreamSource::DynamoDb(_) => 1_000,
        }
    }
}

// What the two sources share: both services use the same error codes, timestamps and sequence numbers.

/// How the worker should react to a failed Kinesis or DynamoDB Streams call, from its AWS error code.
pub(super) fn read_error<E>(error: &E) -> ReadError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error,
{
    let detail = aws_smithy_types::error::display::DisplayErrorContext(error).to_string();
    classify(error.code(), detail)
}

/// [`read_error`] without the SDK types, so the mapping can be tested on its own.
pub(super) fn classify(code: Option<&str>, detail: String) -> ReadError {
    match code {
        Some(
            "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "KMSThrottlingException"
            | "ThrottlingException"
            | "Throttling"
            | "RequestLimitExceeded"
            | "TooManyRequestsException",
        ) => ReadError::Throttled(detail),
        Some("ExpiredIteratorException") => ReadError::ExpiredIterator,
        Some("TrimmedDataAccessException") => ReadError::Trimmed(detail),
        Some("ResourceNotFoundException") => ReadError::NotFound(detail),
        _ => ReadError::Other(detail),
    }
}

/// Epoch milliseconds of a timestamp from the SDK, rounded to the nearest millisecond.
///
/// Rounded, not truncated: the SDK reads the wire's epoch seconds (`1545084650.987`) through an `f64`
/// and truncates to whole nanoseconds, which can land just below the millisecond AWS sent. Values with
/// more precision (emulators send microseconds) round to the nearest millisecond, which is what the
/// event can show anyway; whole seconds (DynamoDB Streams on AWS) stay exact.
pub(super) fn epoch_millis(time: &aws_smithy_types::DateTime) -> Result<i64, ReadError> {
    // `secs` is floored and `subsec_nanos` counts up from it, also before 1970.
    let millis = (time.subsec_nanos() + 500_000) / 1_000_000;
    time.secs()
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(millis)))
        .ok_or_else(|| ReadError::Other(format!("timestamp {time} is out of range")))
}

/// A record's sequence number, which the worker orders and checkpoints by.
pub(super) fn sequence_number(text: &str) -> Result<SequenceNumber, ReadError> {
    SequenceNumber::parse(text).map_err(|e| ReadError::Other(format!("record sequence number: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::DateTime;

    #[test]
    fn error_codes_decide_the_reaction() {
        let kind = |code| match classify(Some(code), "detail".to_owned()) {
            ReadError::Throttled(_) => "throttled",
            ReadError::ExpiredIterator => "expired",
            ReadError::Trimmed(_) => "trimmed",
            ReadError::NotFound(_) => "not found",
            ReadError::Other(_) => "other",
        };
        for code in [
            "ProvisionedThroughputExceededException",
            "LimitExceededException",
            "KMSThrottlingException",
            "ThrottlingException",
        ] {
            assert_eq!(kind(code), "throttled", "{code}");
        }
        assert_eq!(kind("ExpiredIteratorException"), "expired");
        assert_eq!(kind("TrimmedDataAccessException"), "trimmed");
        assert_eq!(kind("ResourceNotFoundException"), "not found");
        assert_eq!(kind("InternalFailure"), "other");
        assert!(matches!(classify(None, "timeout".to_owned()), ReadError::Other(d) if d == "timeout"));
    }

    #[test]
    fn timestamps_round_to_the_millisecond_aws_sent() {
        // The first and last parse to nanoseconds below the millisecond (…650.986999988).
        for millis in [1_545_084_650_987_i64, 1_795_569_370_469, 1_700_321_084_470, 1_607_497_475_001] {
            let parsed = DateTime::from_secs_f64(millis as f64 / 1000.0);
            assert_eq!(epoch_millis(&parsed).unwrap(), millis);
        }
        assert_eq!(epoch_millis(&DateTime::from_secs(1_764_086_780)).unwrap(), 1_764_086_780_000);
        assert_eq!(epoch_millis(&DateTime::from_secs_and_nanos(10, 999_600_000)).unwrap(), 11_000);
        assert_eq!(epoch_millis(&DateTime::from_secs_and_nanos(-1, 250_000_000)).unwrap(), -750);
        assert!(epoch_millis(&DateTime::from_secs(i64::MAX)).is_err());
    }
}
