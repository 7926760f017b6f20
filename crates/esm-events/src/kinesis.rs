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

/// Writes the Kinesis records of one shard of one mapping with the bytes [`KinesisRecord`]'s
/// `Serialize` gives, faster: what every record of the shard shares (the keys and constants, the
/// shard id in `eventID`, the role, the region and the stream ARN) is escaped once, here, and a
/// record only adds its partition key, sequence number, data and arrival time.
#[derive(Debug, Clone)]
pub struct KinesisRecordWriter {
    /// `"…","eventID":"<shard id>:` as it follows `approximateArrivalTimestamp`'s value.
    middle: Vec<u8>,
    /// `","eventName":…,"eventSourceARN":"<stream ARN>"}` after the `eventID`'s sequence number.
    tail: Vec<u8>,
}

const HEAD: &[u8] = br#"{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"#;

impl KinesisRecordWriter {
    /// A writer for records of `shard_id` read for a mapping with this role, region and stream.
    pub fn new(shard_id: &str, invoke_identity_arn: &str, aws_region: &str, event_source_arn: &str) -> Self {
        let mut middle = br#"},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"#.to_vec();
        // `"<shard id>` without its closing quote: the sequence number and the quote follow.
        escaped(&mut middle, shard_id);
        middle.pop();
        middle.push(b':');
        let mut tail = br#"","eventName":"aws:kinesis:record","invokeIdentityArn":"#.to_vec();
        escaped(&mut tail, invoke_identity_arn);
        tail.extend_from_slice(br#","awsRegion":"#);
        escaped(&mut tail, aws_region);
        tail.extend_from_slice(br#","eventSourceARN":"#);
        escaped(&mut tail, event_source_arn);
        tail.push(b'}');
        KinesisRecordWriter { middle, tail }
    }

    /// Appends `record`'s JSON to `out`. `record`'s shard id, role, region and stream ARN must be
    /// the ones the writer was made with.
    pub fn write(&self, record: &KinesisRecord<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(HEAD);
        escaped(out, record.partition_key);
        out.extend_from_slice(br#","sequenceNumber":"#);
        escaped(out, record.sequence_number);
        out.extend_from_slice(br#","data":"#);
        escaped(out, record.data);
        out.extend_from_slice(br#","approximateArrivalTimestamp":"#);
        serde_json::to_writer(&mut *out, &EpochSeconds(record.approximate_arrival_ms)).expect("a number writes to a Vec");
        out.extend_from_slice(&self.middle);
        if record.sequence_number.bytes().all(|b| b.is_ascii_digit()) {
            // Every Kinesis sequence number: nothing to escape.
            out.extend_from_slice(record.sequence_number.as_bytes());
        } else {
            let start = out.len();
            escaped(out, record.sequence_number);
            // Without the quotes: the text continues the `eventID` string.
            out.pop();
            out.remove(start);
        }
        out.extend_from_slice(&self.tail);
    }
}

/// `text` as a JSON string, quotes included, escaped as serde_json escapes it.
fn escaped(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(out, text).expect("a string writes to a Vec");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(shard_id: &'a str, partition_key: &'a str, sequence_number: &'a str, data: &'a str, millis: i64) -> KinesisRecord<'a> {
        KinesisRecord {
            shard_id,
            partition_key,
            sequence_number,
            data,
            approximate_arrival_ms: millis,
            invoke_identity_arn: "arn:aws:iam::123456789012:role/lambda-role",
            aws_region: "us-east-2",
            event_source_arn: "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
        }
    }

    #[test]
    fn the_writer_writes_the_documented_record() {
        let record = record(
            "shardId-000000000006",
            "1",
            "49590338271490256608559692538361571095921575989136588898",
            "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
            1_545_084_650_987,
        );
        let writer = KinesisRecordWriter::new(record.shard_id, record.invoke_identity_arn, record.aws_region, record.event_source_arn);
        let mut out = b"[".to_vec();
        writer.write(&record, &mut out);
        assert_eq!(out[1..], serde_json::to_vec(&record).unwrap()[..]);
        assert_eq!(
            String::from_utf8(out[1..].to_vec()).unwrap(),
            r#"{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"1","sequenceNumber":"49590338271490256608559692538361571095921575989136588898","data":"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==","approximateArrivalTimestamp":1545084650.987},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588898","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/lambda-role","awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"}"#
        );
    }

    proptest::proptest! {
        /// Byte for byte what `Serialize` writes, for any text in any field (quotes, backslashes,
        /// control characters, non-ASCII) and any millisecond.
        #[test]
        fn the_writer_writes_what_serialize_writes(
            shard in r#"[a-z\\"\x01é:-]{0,8}"#,
            key in r#"[a-z\\"\x1fé\x7f]{0,8}"#,
            seq in proptest::prop_oneof!["[0-9]{1,56}", r#"[0-9a"\\\n]{0,6}"#],
            data in r#"[A-Za-z0-9+/="\\]{0,12}"#,
            millis in -62_135_596_800_000i64..253_402_300_799_999,
            role in r#"[a-z:/"]{0,8}"#,
            region in r#"[a-z\\-]{0,6}"#,
            arn in r#"[a-z:/\x{2028}]{0,8}"#,
        ) {
            let record = KinesisRecord {
                shard_id: &shard,
                partition_key: &key,
                sequence_number: &seq,
                data: &data,
                approximate_arrival_ms: millis,
                invoke_identity_arn: &role,
                aws_region: &region,
                event_source_arn: &arn,
            };
            let writer = KinesisRecordWriter::new(&shard, &role, &region, &arn);
            let mut out = Vec::new();
            writer.write(&record, &mut out);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&record).unwrap());
        }
    }
}
