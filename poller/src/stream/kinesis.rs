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
use bytes::Bytes;
use esm_events::kinesis::{KinesisRecord, KinesisRecordWriter};
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
///
/// The records that pass are written one after the other into one buffer, sized for them
/// beforehand, and each record's JSON is its slice of it: one allocation per page rather than one
/// per record (records live until their batch is delivered, so freeing them one by one in bursts
/// of a page is what the allocator paid for).
pub fn page(
    body: &Bytes,
    shard_id: &str,
    stream: &ArnParts,
    invoke_identity_arn: &str,
    filters: &Filters,
) -> Result<Page, ReadError> {
    let answer = get_records::parse(body)?;
    // The filters decide first, from the record's members, so the buffer can be sized for exactly
    // the records that pass.
    // Vectors sized for the page up front: collecting an iterator of `Result`s into a vector cannot
    // know its length, and grows it by reallocation and copy.
    let mut event_id = String::new();
    let mut events = Vec::with_capacity(answer.records.len());
    for record in &answer.records {
        let event = event_record(record, shard_id, stream, invoke_identity_arn)?;
        let passes = passes(&event, filters, &mut event_id);
        events.push((event, passes));
    }
    let fixed = json_fixed_len(shard_id, stream, invoke_identity_arn);
    let size: usize = events
        .iter()
        .filter(|(_, passes)| *passes)
        .map(|(event, _)| fixed + json_variable_len(event))
        .sum();
    let mut buffer = Vec::with_capacity(size);
    let mut ends = Vec::with_capacity(events.len());
    let writer = KinesisRecordWriter::new(shard_id, invoke_identity_arn, &stream.region, &stream.arn);
    for (event, passes) in &events {
        if *passes {
            writer.write(event, &mut buffer);
        }
        ends.push(buffer.len());
    }
    let buffer = Bytes::from(buffer);
    let mut start = 0;
    let mut records = Vec::with_capacity(events.len());
    for ((event, passes), end) in events.iter().zip(ends) {
        records.push(StreamRecord {
            sequence_number: sequence_number(event.sequence_number)?,
            arrival_ms: event.approximate_arrival_ms,
            // The key only chooses the record's lane: shared with the body, not copied.
            partition_key: shared(body, event.partition_key),
            passes: *passes,
            json: buffer.slice(start..end),
        });
        start = end;
    }
    Ok(Page {
        records,
        // Kinesis leaves NextShardIterator out once a closed shard has been read to its end.
        next_iterator: answer.next_shard_iterator,
        millis_behind: answer.millis_behind_latest,
    })
}

/// `text` as a `Bytes` sharing `body`'s buffer when it is a part of it, else (it held JSON escapes,
/// so it was unescaped into a string of its own) a copy.
fn shared(body: &Bytes, text: &str) -> Bytes {
    let (within, part) = (body.as_ptr_range(), text.as_bytes().as_ptr_range());
    if within.start <= part.start && part.end <= within.end {
        body.slice_ref(text.as_bytes())
    } else {
        Bytes::copy_from_slice(text.as_bytes())
    }
}

/// One record as the function receives it, borrowing from the answer and the mapping.
fn event_record<'a>(
    record: &'a WireRecord<'_>,
    shard_id: &'a str,
    stream: &'a ArnParts,
    invoke_identity_arn: &'a str,
) -> Result<KinesisRecord<'a>, ReadError> {
    let malformed = |what: &str| {
        ReadError::Other(format!(
            "record {} of {shard_id} has no {what}",
            record.sequence_number
        ))
    };
    let partition_key = record.partition_key.as_ref().map(|key| &*key.0).ok_or_else(|| malformed("PartitionKey"))?;
    let arrival = record
        .approximate_arrival_timestamp
        .ok_or_else(|| malformed("ApproximateArrivalTimestamp"))?;
    // Through a DateTime as the SDK reads it, so the millisecond is the one it gave.
    let arrival_ms = epoch_millis(&DateTime::from_secs_f64(arrival))?;
    Ok(KinesisRecord {
        shard_id,
        partition_key,
        sequence_number: &record.sequence_number,
        data: &record.data,
        approximate_arrival_ms: arrival_ms,
        invoke_identity_arn,
        aws_region: &stream.region,
        event_source_arn: &stream.arn,
    })
}

/// The length of a record's JSON less its data, sequence number (twice) and partition key: the
/// constant members, the mapping's ARNs, region and shard id (escapes aside: a capacity, not a
/// limit).
fn json_fixed_len(shard_id: &str, stream: &ArnParts, invoke_identity_arn: &str) -> usize {
    JSON_CONSTANT + shard_id.len() + stream.region.len() + stream.arn.len() + invoke_identity_arn.len()
}

/// What a record adds to [`json_fixed_len`]; the timestamp is at most 24 characters.
fn json_variable_len(event: &KinesisRecord<'_>) -> usize {
    event.data.len() + 2 * event.sequence_number.len() + event.partition_key.len() + 24
}

/// The characters of a Kinesis record's JSON that are the same in every record: its keys,
/// constant values, quotes and punctuation (`{"kinesis":{"kinesisSchemaVersion":"1.0",…`).
const JSON_CONSTANT: usize = 275;

/// Whether the record passes the filters, from its members as the event shows them (the filters
/// see the `kinesis` object's members at the top level), without writing its JSON. `event_id` is
/// scratch space for the `eventID` member, reused from record to record.
fn passes(event: &KinesisRecord<'_>, filters: &Filters, event_id: &mut String) -> bool {
    use std::fmt::Write as _;
    if filters.is_empty() {
        return true;
    }
    event_id.clear();
    write!(event_id, "{}:{}", event.shard_id, event.sequence_number).expect("writing to a String");
    let members = [
        ("kinesisSchemaVersion", Member::Str("1.0")),
        ("partitionKey", Member::Str(event.partition_key)),
        ("sequenceNumber", Member::Str(event.sequence_number)),
        // As the event writes it: epoch seconds, read back as a float.
        ("approximateArrivalTimestamp", Member::Float(event.approximate_arrival_ms as f64 / 1000.0)),
        ("eventSource", Member::Str("aws:kinesis")),
        ("eventVersion", Member::Str("1.0")),
        ("eventID", Member::Str(event_id)),
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
        let page = page(&Bytes::from_static(body), "shardId-000000000000", &stream(), "role", &clicks).unwrap();
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
            let all = page(&Bytes::copy_from_slice(body.as_bytes()), shard, &stream(), "arn:aws:iam::123456789012:role/lambda-role", &no_filters()).unwrap();
            let filtered = page(&Bytes::copy_from_slice(body.as_bytes()), shard, &stream(), "arn:aws:iam::123456789012:role/lambda-role", &filters).unwrap();
            proptest::prop_assert_eq!(filtered.records[0].passes, filters.matches_json(&all.records[0].json), "{}", body);
        }
    }

    #[test]
    fn converts_a_record_to_the_event_shape() {
        let body = format!(
            r#"{{"Records":[{{"SequenceNumber":"{SEQ}","ApproximateArrivalTimestamp":1.545084650987E9,"Data":"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==","PartitionKey":"1"}}],"NextShardIterator":"next","MillisBehindLatest":0}}"#
        );
        let page = page(&Bytes::copy_from_slice(body.as_bytes()), "shardId-000000000006", &stream(), "arn:aws:iam::123456789012:role/lambda-role", &no_filters()).unwrap();
        let out = &page.records[0];
        assert_eq!(
            String::from_utf8(out.json.to_vec()).unwrap(),
            r#"{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"1","sequenceNumber":"49590338271490256608559692538361571095921575989136588898","data":"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==","approximateArrivalTimestamp":1545084650.987},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588898","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/lambda-role","awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"}"#
        );
        assert_eq!(out.arrival_ms, 1_545_084_650_987);
        assert_eq!(out.partition_key, &b"1"[..]);
        assert_eq!(out.sequence_number.as_str(), SEQ);
        assert_eq!((page.next_iterator.as_deref(), page.millis_behind), (Some("next"), Some(0)));
    }

    #[test]
    fn the_page_buffer_is_sized_for_the_records_it_holds() {
        // Without escapes a record's JSON is its predicted length less the timestamp's unused
        // characters: the buffer neither grows nor is much larger than needed.
        let body = format!(
            r#"{{"Records":[{{"SequenceNumber":"{SEQ}","ApproximateArrivalTimestamp":1.545084650987E9,"Data":"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==","PartitionKey":"1"}},{{"SequenceNumber":"{SEQ}1","ApproximateArrivalTimestamp":1.5E9,"Data":"","PartitionKey":"partition-key"}}],"NextShardIterator":"next"}}"#
        );
        let answer = get_records::parse(body.as_bytes()).unwrap();
        let role = "arn:aws:iam::123456789012:role/lambda-role";
        let stream = stream();
        let page = page(&Bytes::copy_from_slice(body.as_bytes()), "shardId-000000000006", &stream, role, &no_filters()).unwrap();
        for (wire, record) in answer.records.iter().zip(&page.records) {
            let event = event_record(wire, "shardId-000000000006", &stream, role).unwrap();
            let predicted = json_fixed_len("shardId-000000000006", &stream, role) + json_variable_len(&event);
            let written = record.json.len();
            assert!(written <= predicted && predicted - written <= 24, "{written} of {predicted}");
        }
    }

    #[test]
    fn a_page_holds_its_records_in_a_vector_of_their_number() {
        let records: Vec<String> = (1..=5)
            .map(|n| format!(r#"{{"SequenceNumber":"{n}","ApproximateArrivalTimestamp":1.5E9,"Data":"","PartitionKey":"k"}}"#))
            .collect();
        let body = format!(r#"{{"Records":[{}],"NextShardIterator":"next"}}"#, records.join(","));
        let page = page(&Bytes::from(body), "shardId-000000000000", &stream(), "role", &no_filters()).unwrap();
        assert_eq!((page.records.len(), page.records.capacity()), (5, 5), "sized once, never grown");
    }

    #[test]
    fn partition_keys_share_the_body_unless_they_were_unescaped() {
        let body = Bytes::from_static(br#"{"Records":[{"SequenceNumber":"1","ApproximateArrivalTimestamp":1.5E9,"Data":"","PartitionKey":"plain"},{"SequenceNumber":"2","ApproximateArrivalTimestamp":1.5E9,"Data":"","PartitionKey":"a\/b"}],"NextShardIterator":"next"}"#);
        let page = page(&body, "shardId-000000000000", &stream(), "role", &no_filters()).unwrap();
        let [plain, escaped] = &page.records[..] else { panic!("two records") };
        assert_eq!((&plain.partition_key[..], &escaped.partition_key[..]), (&b"plain"[..], &b"a/b"[..]));
        let within = |key: &Bytes| body.as_ptr_range().contains(&key.as_ptr());
        assert!(within(&plain.partition_key) && !within(&escaped.partition_key));
    }

    #[test]
    fn a_record_without_arrival_time_is_an_error_not_a_panic() {
        let body = br#"{"Records":[{"SequenceNumber":"1","Data":"","PartitionKey":"k"}],"NextShardIterator":"next"}"#;
        let err = page(&Bytes::from_static(body), "shardId-000000000000", &stream(), "role", &no_filters()).unwrap_err();
        assert!(matches!(&err, ReadError::Other(m) if m.contains("ApproximateArrivalTimestamp")), "{err}");
    }
}
