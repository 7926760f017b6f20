//! One Kinesis Data Streams record as Lambda delivers it inside `{"Records":[...]}`.
//!
//! ```json
//! {"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"1",
//!             "sequenceNumber":"49590338271490256608559692538361571095921575989136588898",
//!             "data":"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==","approximateArrivalTimestamp":1545084650.987},
//!  "eventSource":"aws:kinesis","eventVersion":"1.0",
//!  "eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
//!  "eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/lambda-role",
//!  "awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"}
//! ```

use serde::{Serialize, Serializer};

use crate::timestamp::EpochSeconds;

/// One Kinesis record of an invocation event, borrowing every field from the GetRecords answer and
/// the mapping (nothing is copied per record before it is written).
///
/// Constants (`kinesisSchemaVersion` `"1.0"`, `eventSource` `"aws:kinesis"`, `eventVersion`
/// `"1.0"`, `eventName` `"aws:kinesis:record"`) are filled in on serialization; `eventID` is
/// `<shard_id>:<sequence_number>`. `encryptionType` is not written (AWS omits it for unencrypted
/// streams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KinesisRecord<'a> {
    /// The shard the record was read from, e.g. `shardId-000000000006`.
    pub shard_id: &'a str,
    /// The record's partition key.
    pub partition_key: &'a str,
    /// The record's sequence number; also the `itemIdentifier` of partial batch responses.
    pub sequence_number: &'a str,
    /// The record's data as GetRecords returned it: standard (padded) base64. The event carries
    /// the same text, so it is written as is, never decoded and encoded again.
    /// <https://docs.aws.amazon.com/kinesis/latest/APIReference/API_Record.html>
    pub data: &'a str,
    /// `ApproximateArrivalTimestamp` in epoch milliseconds; written as epoch seconds, a JSON number.
    pub approximate_arrival_ms: i64,
    /// The mapping's execution role ARN.
    pub invoke_identity_arn: &'a str,
    /// The stream's region.
    pub aws_region: &'a str,
    /// The stream ARN (also when the mapping reads through an enhanced fan-out consumer).
    pub event_source_arn: &'a str,
}

impl Serialize for KinesisRecord<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Payload<'a> {
            kinesis_schema_version: &'static str,
            partition_key: &'a str,
            sequence_number: &'a str,
            data: &'a str,
            approximate_arrival_timestamp: EpochSeconds,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            kinesis: Payload<'a>,
            event_source: &'static str,
            event_version: &'static str,
            #[serde(rename = "eventID")]
            event_id: EventId<'a>,
            event_name: &'static str,
            invoke_identity_arn: &'a str,
            aws_region: &'a str,
            #[serde(rename = "eventSourceARN")]
            event_source_arn: &'a str,
        }
        Wire {
            kinesis: Payload {
                kinesis_schema_version: "1.0",
                partition_key: self.partition_key,
                sequence_number: self.sequence_number,
                data: self.data,
                approximate_arrival_timestamp: EpochSeconds(self.approximate_arrival_ms),
            },
            event_source: "aws:kinesis",
            event_version: "1.0",
            event_id: EventId {
                shard_id: self.shard_id,
                sequence_number: self.sequence_number,
            },
            event_name: "aws:kinesis:record",
            invoke_identity_arn: self.invoke_identity_arn,
            aws_region: self.aws_region,
            event_source_arn: self.event_source_arn,
        }
        .serialize(serializer)
    }
}

/// `<shardId>:<sequenceNumber>`, written without building the string first.
struct EventId<'a> {
    shard_id: &'a str,
    sequence_number: &'a str,
}

impl Serialize for EventId<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}:{}", self.shard_id, self.sequence_number))
    }
}
