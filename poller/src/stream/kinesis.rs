//! Kinesis Data Streams: shards, iterators and GetRecords, records converted to the event shape.
//!
//! Every call names the stream by ARN rather than by name: the ARN carries the account, so a mapping
//! reads the stream it names even when the credentials belong to another account (resource policies).
//! GetRecords, the call a busy shard makes several times a second, is sent directly
//! ([`super::get_records`]); the others go through the SDK.

use std::sync::Arc;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::Region;
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_types::DateTime;
use esm_events::kinesis::KinesisRecord;
use esm_filter::{Filters, Member};

use super::get_records::{self, GetRecords, WireRecord};
use super::source::{Page, Position, ReadError, ShardInfo, StreamRecord, epoch_millis, read_error, sequence_number};
use crate::arn::ArnParts;
use crate::error::Error;

/// Most records one GetRecords call may return.
const MAX_GET_RECORDS: usize = 10_000;

/// A connected Kinesis data stream.
#[derive(Clone, Debug)]
pub struct KinesisSource {
    client: Client,
    get_records: Arc<GetRecords>,
    arn: ArnParts,
    /// The mapping's execution role, written into every record (`invokeIdentityArn`).
    invoke_identity_arn: String,
}

impl KinesisSource {
    /// A client for the stream's region (endpoint overrides come from `sdk`), after checking that the
    /// stream exists, so a mapping for a missing stream fails at start with AWS's words.
    pub async fn connect(sdk: &aws_config::SdkConfig, arn: &ArnParts, invoke_identity_arn: &str) -> Result<Self, Error> {
        let client = Client::from_conf(
            aws_sdk_kinesis::config::Builder::from(sdk)
                .region(Region::new(arn.region.clone()))
                .build(),
        );
        client
            .describe_stream_summary()
            .stream_arn(&arn.arn)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) {
                    Error::Source(format!("Stream not found: {}", arn.arn))
                } else {
                    Error::Source(format!("{}: DescribeStreamSummary failed: {}", arn.arn, DisplayErrorContext(&e)))
                }
            })?;
        Ok(Self {
            client,
            get_records: Arc::new(GetRecords::new(sdk, arn).await?),
            arn: arn.clone(),
            invoke_identity_arn: invoke_identity_arn.to_owned(),
        })
    }

    /// Every shard ListShards knows (open and closed, within retention), page by page.
    pub async fn list_shards(&self) -> Result<Vec<ShardInfo>, ReadError> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let request = match next_token.take() {
                // The token names the stream; ListShards rejects a stream name beside it.
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_arn(&self.arn.arn),
            };
            let out = request.send().await.map_err(|e| read_error(&e))?;
            shards.extend(out.shards().iter().map(|shard| ShardInfo {
                shard_id: shard.shard_id().to_owned(),
                parent_shard_ids: [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                    .into_iter()
                    .flatten()
                    .map(str::to_owned)
                    .collect(),
            }));
            match out.next_token {
                Some(token) => next_token = Some(token),
                None => return Ok(shards),
            }
        }
    }

    /// GetShardIterator at `position`.
    pub async fn iterator(&self, shard_id: &str, position: &Position) -> Result<String, ReadError> {
        let request = self.client.get_shard_iterator().stream_arn(&self.arn.arn).shard_id(shard_id);
        let request = match position {
            Position::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Position::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            Position::AtTimestamp(seconds) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_secs_f64(*seconds)),
            Position::AfterSequence(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence),
            Position::AtSequence(sequence) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(sequence),
        };
        let out = request.send().await.map_err(|e| read_error(&e))?;
        out.shard_iterator
            .ok_or_else(|| ReadError::Other(format!("GetShardIterator for {shard_id} returned no iterator")))
    }

    /// One GetRecords call of up to `limit` records (at most 10,000, Kinesis's maximum), each
    /// marked with whether it passes `filters`.
    pub async fn read(&self, shard_id: &str, iterator: &str, limit: usize, filters: &Filters) -> Result<Page, ReadError> {
        let limit = limit.clamp(1, MAX_GET_RECORDS) as i32;
        let body = self.get_records.call(iterator, limit).await?;
        page(&body, shard_id, &self.arn, &self.invoke_identity_arn, filters)
    }

    /// The stream's ARN.
    pub fn arn(&self) -> &ArnParts {
        &self.arn
    }
}

/// A GetRecords answer's body as a page of records in the event's shape, each marked with whether
/// it passes `filters`.
pub fn page(
    body: &[u8],
    shard_id: &str,
    stream: &ArnParts,
    invoke_identity_arn: &str,
    filters: &Filters,
) -> Result<Page, ReadError> {
    let answer = get_records::parse(body)?;
    let records = answer
        .records
        .iter()
        .map(|record| stream_record(record, shard_id, stream, invoke_identity_arn, filters))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page {
        records,
        // Kinesis leaves NextShardIterator out once a closed shard has been read to its end.
        next_iterator: answer.next_shard_iterator,
        millis_behind: answer.millis_behind_latest,
    })
}

/// One record as the function receives it, serialized once, with what the worker orders and ages it by.
/// The filters see the record's fields before it is written: one they drop is never written.
fn stream_record(
    record: &WireRecord<'_>,
    shard_id: &str,
    stream: &ArnParts,
    invoke_identity_arn: &str,
    filters: &Filters,
) -> Result<StreamRecord, ReadError> {
    let malformed = |what: &str| {
        ReadError::Other(format!(
            "record {} of {shard_id} has no {what}",
            record.sequence_number
        ))
    };
    let partition_key = record.partition_key.as_deref().ok_or_else(|| malformed("PartitionKey"))?;
    let arrival = record
        .approximate_arrival_timestamp
        .ok_or_else(|| malformed("ApproximateArrivalTimestamp"))?;
    // Through a DateTime as the SDK reads it, so the millisecond is the one it gave.
    let arrival_ms = epoch_millis(&DateTime::from_secs_f64(arrival))?;
    let event = KinesisRecord {
        shard_id,
        partition_key,
        sequence_number: &record.sequence_number,
        data: &record.data,
        approximate_arrival_ms: arrival_ms,
        invoke_identity_arn,
        aws_region: &stream.region,
        event_source_arn: &stream.arn,
    };
    let passes = passes(&event, filters);
    let mut json = Vec::new();
    if passes {
        // Sized for the record at once rather than grown from serde_json's 128 bytes.
        json.reserve(JSON_OVERHEAD + event.data.len() + 2 * event.sequence_number.len() + event.partition_key.len());
        serde_json::to_writer(&mut json, &event)
            .map_err(|e| ReadError::Other(format!("record {} of {shard_id}: {e}", record.sequence_number)))?;
    }
    Ok(StreamRecord {
        sequence_number: sequence_number(&record.sequence_number)?,
        arrival_ms,
        partition_key: partition_key.as_bytes().to_vec(),
        passes,
        json,
    })
}

/// A record's JSON less its data, sequence number (twice) and partition key: the constant members
/// and the mapping's ARNs, region and shard id, generously.
const JSON_OVERHEAD: usize = 512;

/// Whether the record passes the filters, from its members as the event shows them (the filters
/// see the `kinesis` object's members at the top level), without writing its JSON.
fn passes(event: &KinesisRecord<'_>, filters: &Filters) -> bool {
    if filters.is_empty() {
        return true;
    }
    let event_id = format!("{}:{}", event.shard_id, event.sequence_number);
    let members = [
        ("kinesisSchemaVersion", Member::Str("1.0")),
        ("partitionKey", Member::Str(event.partition_key)),
        ("sequenceNumber", Member::Str(event.sequence_number)),
        // As the event writes it: epoch seconds, read back as a float.
        ("approximateArrivalTimestamp", Member::Float(event.approximate_arrival_ms as f64 / 1000.0)),
        ("eventSource", Member::Str("aws:kinesis")),
        ("eventVersion", Member::Str("1.0")),
        ("eventID", Member::Str(&event_id)),
        ("eventName", Member::Str("aws:kinesis:record")),
        ("invokeIdentityArn", Member::Str(event.invoke_identity_arn)),
        ("awsRegion", Member::Str(event.aws_region)),
        ("eventSourceARN", Member::Str(event.event_source_arn)),
    ];
    filters.matches_kinesis(event.data, &members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> ArnParts {
        ArnParts {
            arn: "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream".to_owned(),
            region: "us-east-2".to_owned(),
            account: "123456789012".to_owned(),
            name: "lambda-stream".to_owned(),
        }
    }

    const SEQ: &str = "49590338271490256608559692538361571095921575989136588898";

    fn no_filters() -> Filters {
        Filters::compile(esm_filter::Source::Kinesis, &[]).unwrap()
    }

    #[test]
    fn a_record_the_filters_drop_is_marked_and_not_written() {
        let body = br#"{"Records":[{"SequenceNumber":"1","ApproximateArrivalTimestamp":1.5E9,"Data":"eyJ0eXBlIjoiY2xpY2sifQ==","PartitionKey":"k"},{"SequenceNumber":"2","ApproximateArrivalTimestamp":1.5E9,"Data":"eyJ0eXBlIjoidmlldyJ9","PartitionKey":"k"}],"NextShardIterator":"next"}"#;
        let clicks = Filters::compile(esm_filter::Source::Kinesis, &[r#"{"data":{"type":["click"]}}"#]).unwrap();
        let page = page(body, "shardId-000000000000", &stream(), "role", &clicks).unwrap();
        let [click, view] = &page.records[..] else { panic!("two records") };
        assert!(click.passes && clicks.matches_json(&click.json), "{}", String::from_utf8_lossy(&click.json));
        assert!(!view.passes && view.json.is_empty());
        assert_eq!(view.sequence_number.as_str(), "2", "still there to be checkpointed");
    }

    proptest::proptest! {
        /// The filters decide from the record's members as they decide from its JSON: a pattern on
        /// any member of the event, or on its data, gives the same answer both ways.
        #[test]
        fn filtering_the_members_agrees_with_filtering_the_written_record(
            key in "[ab1]{1,3}",
            data in "[ab{}\":1]{0,12}",
            millis in 0i64..4_102_444_800_000,
            shard in proptest::sample::select(vec!["shardId-000000000000", "shardId-000000000001"]),
            pattern in proptest::sample::select(vec![
                r#"{"kinesisSchemaVersion":["1.0"],"partitionKey":[{"prefix":"a"}]}"#,
                r#"{"sequenceNumber":[{"suffix":"1"}],"eventSource":["aws:kinesis"]}"#,
                r#"{"approximateArrivalTimestamp":[{"numeric":[">=",1500000000.5]}]}"#,
                r#"{"eventID":[{"prefix":"shardId-000000000001:"}],"eventVersion":["1.0"]}"#,
                r#"{"eventName":["aws:kinesis:record"],"invokeIdentityArn":[{"suffix":"role"}]}"#,
                r#"{"awsRegion":["us-east-2"],"eventSourceARN":[{"prefix":"arn:aws:kinesis:"}],"partitionKey":["b"]}"#,
                r#"{"data":{"a":[1,"b"]}}"#,
                r#"{"data":{"b":[{"exists":false}]},"partitionKey":[{"anything-but":"a"}]}"#,
                r#"{"kinesis":{"partitionKey":["a"]}}"#,
            ]),
        ) {
            use base64::Engine as _;
            let seq = format!("{}{}", millis % 7, millis);
            let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
            let body = serde_json::json!({"Records": [{
                "SequenceNumber": seq, "ApproximateArrivalTimestamp": millis as f64 / 1000.0,
                "Data": encoded, "PartitionKey": key,
            }], "NextShardIterator": "next"})
            .to_string();
            let filters = Filters::compile(esm_filter::Source::Kinesis, &[pattern]).unwrap();
            let all = page(body.as_bytes(), shard, &stream(), "arn:aws:iam::123456789012:role/lambda-role", &no_filters()).unwrap();
            let filtered = page(body.as_bytes(), shard, &stream(), "arn:aws:iam::123456789012:role/lambda-role", &filters).unwrap();
            proptest::prop_assert_eq!(filtered.records[0].passes, filters.matches_json(&all.records[0].json), "{}", body);
        }
    }

    #[test]
    fn converts_a_record_to_the_event_shape() {
        let body = format!(
            r#"{{"Records":[{{"SequenceNumber":"{SEQ}","ApproximateArrivalTimestamp":1.545084650987E9,"Data":"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==","PartitionKey":"1"}}],"NextShardIterator":"next","MillisBehindLatest":0}}"#
        );
        let page = page(body.as_bytes(), "shardId-000000000006", &stream(), "arn:aws:iam::123456789012:role/lambda-role", &no_filters()).unwrap();
        let out = &page.records[0];
        assert_eq!(
            String::from_utf8(out.json.clone()).unwrap(),
            r#"{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"1","sequenceNumber":"49590338271490256608559692538361571095921575989136588898","data":"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==","approximateArrivalTimestamp":1545084650.987},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588898","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/lambda-role","awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"}"#
        );
        assert_eq!(out.arrival_ms, 1_545_084_650_987);
        assert_eq!(out.partition_key, b"1");
        assert_eq!(out.sequence_number.as_str(), SEQ);
        assert_eq!((page.next_iterator.as_deref(), page.millis_behind), (Some("next"), Some(0)));
    }

    #[test]
    fn a_record_without_arrival_time_is_an_error_not_a_panic() {
        let body = br#"{"Records":[{"SequenceNumber":"1","Data":"","PartitionKey":"k"}],"NextShardIterator":"next"}"#;
        let err = page(body, "shardId-000000000000", &stream(), "role", &no_filters()).unwrap_err();
        assert!(matches!(&err, ReadError::Other(m) if m.contains("ApproximateArrivalTimestamp")), "{err}");
    }
}
