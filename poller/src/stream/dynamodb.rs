//! DynamoDB Streams: shards, iterators and GetRecords, records converted to the event shape.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::config::Region;
use aws_sdk_dynamodbstreams::error::DisplayErrorContext;
use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Record, ShardIteratorType};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use esm_events::dynamodb::{DynamoDbRecord, EventName, Item, StreamViewType, UserIdentity};
use serde_json::Value;

use super::source::{Page, Position, ReadError, ShardInfo, StreamRecord, epoch_millis, read_error, sequence_number};
use crate::arn::ArnParts;
use crate::error::Error;

/// Most records one GetRecords call may return.
const MAX_GET_RECORDS: usize = 1_000;

/// A connected DynamoDB stream.
#[derive(Clone, Debug)]
pub struct DynamoDbSource {
    client: Client,
    arn: ArnParts,
}

impl DynamoDbSource {
    /// A client for the stream's region (endpoint overrides come from `sdk`), after checking that the
    /// stream exists, so a mapping for a missing stream fails at start with AWS's words.
    pub async fn connect(sdk: &aws_config::SdkConfig, arn: &ArnParts) -> Result<Self, Error> {
        let client = Client::from_conf(
            aws_sdk_dynamodbstreams::config::Builder::from(sdk)
                .region(Region::new(arn.region.clone()))
                .build(),
        );
        client
            .describe_stream()
            .stream_arn(&arn.arn)
            // One shard is enough to learn that the stream exists.
            .limit(1)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) {
                    Error::Source(format!("Stream not found: {}", arn.arn))
                } else {
                    Error::Source(format!("{}: DescribeStream failed: {}", arn.arn, DisplayErrorContext(&e)))
                }
            })?;
        Ok(Self {
            client,
            arn: arn.clone(),
        })
    }

    /// Every shard DescribeStream knows (open and closed, within the 24 h retention), page by page.
    pub async fn list_shards(&self) -> Result<Vec<ShardInfo>, ReadError> {
        let mut shards = Vec::new();
        let mut exclusive_start: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_stream()
                .stream_arn(&self.arn.arn)
                .set_exclusive_start_shard_id(exclusive_start.take())
                .send()
                .await
                .map_err(|e| read_error(&e))?;
            let Some(description) = out.stream_description else {
                return Err(ReadError::Other("DescribeStream returned no stream description".to_owned()));
            };
            // A shard without an id cannot be read; the API always sends one.
            shards.extend(description.shards().iter().filter_map(|shard| {
                Some(ShardInfo {
                    shard_id: shard.shard_id()?.to_owned(),
                    parent_shard_ids: shard.parent_shard_id().map(str::to_owned).into_iter().collect(),
                })
            }));
            match description.last_evaluated_shard_id {
                Some(last) => exclusive_start = Some(last),
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
            Position::AfterSequence(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            Position::AtSequence(sequence) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .sequence_number(sequence),
            // DynamoDB Streams has no AT_TIMESTAMP iterator (and mappings cannot ask for one, as on
            // AWS); a LATEST mapping's pinned start is read from the oldest record, and the reader
            // skips what came before the pinned time.
            Position::AtTimestamp(_) => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let out = request.send().await.map_err(|e| read_error(&e))?;
        out.shard_iterator
            .ok_or_else(|| ReadError::Other(format!("GetShardIterator for {shard_id} returned no iterator")))
    }

    /// One GetRecords call of up to `limit` records (at most 1,000, DynamoDB Streams' maximum),
    /// each marked with whether it passes `filters`.
    pub async fn read(
        &self,
        shard_id: &str,
        iterator: &str,
        limit: usize,
        filters: &esm_filter::Filters,
    ) -> Result<Page, ReadError> {
        let limit = limit.clamp(1, MAX_GET_RECORDS) as i32;
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await
            .map_err(|e| read_error(&e))?;
        let records = out
            .records()
            .iter()
            .map(|record| {
                let mut record = stream_record(record, shard_id, &self.arn)?;
                record.passes = filters.matches_json(&record.json);
                Ok(record)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            records,
            // DynamoDB Streams leaves NextShardIterator out once a closed shard has been read to its end.
            next_iterator: out.next_shard_iterator,
            // DynamoDB Streams does not say how far behind a read is.
            millis_behind: None,
        })
    }

    /// The stream's ARN.
    pub fn arn(&self) -> &ArnParts {
        &self.arn
    }
}

/// One record as the function receives it, serialized once, with what the worker orders and ages it by.
///
/// The fields AWS always sends are required: a record without them cannot be delivered faithfully, so
/// it is an error (the worker retries and reports it) rather than a guess.
fn stream_record(record: &Record, shard_id: &str, stream: &ArnParts) -> Result<StreamRecord, ReadError> {
    let change = record
        .dynamodb()
        .ok_or_else(|| ReadError::Other(format!("a record of {shard_id} has no dynamodb section")))?;
    let sequence = change
        .sequence_number()
        .ok_or_else(|| ReadError::Other(format!("a record of {shard_id} has no SequenceNumber")))?;
    let malformed = |what: &str| ReadError::Other(format!("record {sequence} of {shard_id}: {what}"));

    let event_name = match record.event_name() {
        Some(OperationType::Insert) => EventName::Insert,
        Some(OperationType::Modify) => EventName::Modify,
        Some(OperationType::Remove) => EventName::Remove,
        other => return Err(malformed(&format!("unknown eventName {other:?}"))),
    };
    let stream_view_type = match change.stream_view_type() {
        Some(aws_sdk_dynamodbstreams::types::StreamViewType::KeysOnly) => StreamViewType::KeysOnly,
        Some(aws_sdk_dynamodbstreams::types::StreamViewType::NewImage) => StreamViewType::NewImage,
        Some(aws_sdk_dynamodbstreams::types::StreamViewType::OldImage) => StreamViewType::OldImage,
        Some(aws_sdk_dynamodbstreams::types::StreamViewType::NewAndOldImages) => StreamViewType::NewAndOldImages,
        other => return Err(malformed(&format!("unknown StreamViewType {other:?}"))),
    };
    let created = change
        .approximate_creation_date_time()
        .ok_or_else(|| malformed("no ApproximateCreationDateTime"))?;
    let arrival_ms = epoch_millis(created)?;
    let keys = item_json(change.keys().ok_or_else(|| malformed("no Keys"))?).map_err(|e| malformed(&e))?;
    let image = |image: Option<&HashMap<String, AttributeValue>>| image.map(item_json).transpose();
    let new_image = image(change.new_image()).map_err(|e| malformed(&e))?;
    let old_image = image(change.old_image()).map_err(|e| malformed(&e))?;
    // DynamoDB sets userIdentity only for Time to Live deletions; pass on whatever it says.
    let user_identity = record.user_identity().and_then(|identity| {
        Some(UserIdentity {
            kind: identity.r#type()?.to_owned(),
            principal_id: identity.principal_id()?.to_owned(),
        })
    });
    // The serialized keys name the item: its changes share a lane and stay in order.
    let partition_key = serde_json::to_vec(&keys).map_err(|e| malformed(&e.to_string()))?;

    let event = DynamoDbRecord {
        event_id: record.event_id().ok_or_else(|| malformed("no eventID"))?.to_owned(),
        event_name,
        aws_region: record.aws_region().unwrap_or(&stream.region).to_owned(),
        approximate_creation_ms: arrival_ms,
        keys,
        new_image,
        old_image,
        sequence_number: sequence.to_owned(),
        size_bytes: u64::try_from(change.size_bytes().unwrap_or_default()).unwrap_or_default(),
        stream_view_type,
        event_source_arn: stream.arn.clone(),
        user_identity,
    };
    let json = serde_json::to_vec(&event).map_err(|e| malformed(&e.to_string()))?.into();
    Ok(StreamRecord {
        sequence_number: sequence_number(sequence)?,
        arrival_ms,
        partition_key: partition_key.into(),
        passes: true,
        json,
    })
}

/// An item (or its keys) in DynamoDB JSON, attributes sorted by name.
///
/// Sorted because the SDK hands attributes over in a `HashMap`, which has lost the order AWS sent:
/// sorting makes the output the same on every run, and the serialized keys of one item always equal
/// (they are the record's ordering key).
fn item_json(item: &HashMap<String, AttributeValue>) -> Result<Item, String> {
    let mut attributes: Vec<(&String, &AttributeValue)> = item.iter().collect();
    attributes.sort_by(|a, b| a.0.cmp(b.0));
    attributes
        .into_iter()
        .map(|(name, value)| Ok((name.clone(), attribute_json(value)?)))
        .collect()
}

/// One attribute value in DynamoDB JSON, the form DynamoDB Streams sends on the wire and Lambda passes
/// on: `{"S":"x"}`, numbers as strings (`{"N":"1.50"}`, kept exactly), binary as standard base64.
fn attribute_json(value: &AttributeValue) -> Result<Value, String> {
    let base64 = |blob: &aws_smithy_types::Blob| Value::String(STANDARD.encode(blob.as_ref()));
    let strings = |values: &[String]| Value::Array(values.iter().cloned().map(Value::String).collect());
    let (type_name, json) = match value {
        AttributeValue::S(s) => ("S", Value::String(s.clone())),
        AttributeValue::N(n) => ("N", Value::String(n.clone())),
        AttributeValue::B(b) => ("B", base64(b)),
        AttributeValue::Ss(values) => ("SS", strings(values)),
        AttributeValue::Ns(values) => ("NS", strings(values)),
        AttributeValue::Bs(values) => ("BS", Value::Array(values.iter().map(base64).collect())),
        AttributeValue::M(map) => ("M", Value::Object(item_json(map)?)),
        AttributeValue::L(list) => ("L", Value::Array(list.iter().map(attribute_json).collect::<Result<_, _>>()?)),
        AttributeValue::Null(null) => ("NULL", Value::Bool(*null)),
        AttributeValue::Bool(b) => ("BOOL", Value::Bool(*b)),
        // A type added to DynamoDB after this SDK: it cannot be passed on faithfully.
        _ => return Err("an attribute of a type this build does not know".to_owned()),
    };
    Ok(Value::Object([(type_name.to_owned(), json)].into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::types::{Identity, StreamRecord as SdkStreamRecord};
    use aws_smithy_types::{Blob, DateTime};
    use serde_json::json;

    fn stream() -> ArnParts {
        ArnParts {
            arn: "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2015-06-27T00:48:05.899".to_owned(),
            region: "us-east-1".to_owned(),
            account: "123456789012".to_owned(),
            name: "T".to_owned(),
        }
    }

    fn s(text: &str) -> AttributeValue {
        AttributeValue::S(text.to_owned())
    }

    #[test]
    fn every_attribute_type_in_dynamodb_json() {
        let value = AttributeValue::M(HashMap::from([
            ("s".to_owned(), s("x")),
            ("n".to_owned(), AttributeValue::N("1.50".to_owned())),
            ("b".to_owned(), AttributeValue::B(Blob::new(vec![0, 1, 255]))),
            ("ss".to_owned(), AttributeValue::Ss(vec!["b".to_owned(), "a".to_owned()])),
            ("ns".to_owned(), AttributeValue::Ns(vec!["2".to_owned(), "-1e3".to_owned()])),
            ("bs".to_owned(), AttributeValue::Bs(vec![Blob::new(b"hi".to_vec()), Blob::new(Vec::new())])),
            ("l".to_owned(), AttributeValue::L(vec![s("y"), AttributeValue::Null(true), AttributeValue::Bool(false)])),
            ("m".to_owned(), AttributeValue::M(HashMap::from([("z".to_owned(), s("1")), ("a".to_owned(), s("2"))]))),
        ]));
        let json = attribute_json(&value).unwrap();
        assert_eq!(
            json.to_string(),
            r#"{"M":{"b":{"B":"AAH/"},"bs":{"BS":["aGk=",""]},"l":{"L":[{"S":"y"},{"NULL":true},{"BOOL":false}]},"m":{"M":{"a":{"S":"2"},"z":{"S":"1"}}},"n":{"N":"1.50"},"ns":{"NS":["2","-1e3"]},"s":{"S":"x"},"ss":{"SS":["b","a"]}}}"#
        );
    }

    fn record(event: OperationType, change: SdkStreamRecord) -> Record {
        Record::builder()
            .event_id("c4ca4238a0b923820dcc509a6f75849b")
            .event_name(event)
            .event_version("1.1")
            .event_source("aws:dynamodb")
            .aws_region("us-east-1")
            .dynamodb(change)
            .build()
    }

    fn change() -> aws_sdk_dynamodbstreams::types::builders::StreamRecordBuilder {
        SdkStreamRecord::builder()
            .approximate_creation_date_time(DateTime::from_secs(1_764_086_780))
            .keys("Id", AttributeValue::N("101".to_owned()))
            .sequence_number("4421584500000000017450439091")
            .size_bytes(26)
            .stream_view_type(aws_sdk_dynamodbstreams::types::StreamViewType::NewAndOldImages)
    }

    #[test]
    fn converts_an_insert_to_the_event_shape() {
        let insert = record(
            OperationType::Insert,
            change()
                .new_image("Message", s("New item!"))
                .new_image("Id", AttributeValue::N("101".to_owned()))
                .build(),
        );
        let out = stream_record(&insert, "shardId-1", &stream()).unwrap();
        assert_eq!(
            String::from_utf8(out.json.to_vec()).unwrap(),
            r#"{"eventID":"c4ca4238a0b923820dcc509a6f75849b","eventName":"INSERT","eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":"us-east-1","dynamodb":{"ApproximateCreationDateTime":1764086780.0,"Keys":{"Id":{"N":"101"}},"NewImage":{"Id":{"N":"101"},"Message":{"S":"New item!"}},"SequenceNumber":"4421584500000000017450439091","SizeBytes":26,"StreamViewType":"NEW_AND_OLD_IMAGES"},"eventSourceARN":"arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2015-06-27T00:48:05.899"}"#
        );
        assert_eq!(out.arrival_ms, 1_764_086_780_000);
        assert_eq!(out.partition_key, &br#"{"Id":{"N":"101"}}"#[..]);
        assert_eq!(out.sequence_number.as_str(), "4421584500000000017450439091");
    }

    #[test]
    fn a_ttl_delete_carries_its_user_identity() {
        let mut remove = record(
            OperationType::Remove,
            change().old_image("Id", AttributeValue::N("101".to_owned())).build(),
        );
        remove.user_identity = Some(
            Identity::builder()
                .r#type("Service")
                .principal_id("dynamodb.amazonaws.com")
                .build(),
        );
        let out = stream_record(&remove, "shardId-1", &stream()).unwrap();
        let json: Value = serde_json::from_slice(&out.json).unwrap();
        assert_eq!(json["eventName"], "REMOVE");
        assert_eq!(json["userIdentity"], json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"}));
        assert_eq!(json["dynamodb"]["OldImage"], json!({"Id": {"N": "101"}}));
        assert!(json["dynamodb"].get("NewImage").is_none());
    }

    #[test]
    fn the_region_falls_back_to_the_stream_arn() {
        let mut insert = record(OperationType::Insert, change().build());
        insert.aws_region = None;
        let out = stream_record(&insert, "shardId-1", &stream()).unwrap();
        let json: Value = serde_json::from_slice(&out.json).unwrap();
        assert_eq!(json["awsRegion"], "us-east-1");
    }

    #[test]
    fn a_record_missing_what_aws_always_sends_is_an_error_not_a_panic() {
        let no_keys = record(
            OperationType::Insert,
            SdkStreamRecord::builder()
                .approximate_creation_date_time(DateTime::from_secs(1))
                .sequence_number("1")
                .stream_view_type(aws_sdk_dynamodbstreams::types::StreamViewType::KeysOnly)
                .build(),
        );
        let err = stream_record(&no_keys, "shardId-1", &stream()).unwrap_err();
        assert!(matches!(&err, ReadError::Other(m) if m.contains("no Keys")), "{err}");
        let no_change = Record::builder().event_name(OperationType::Insert).build();
        assert!(matches!(stream_record(&no_change, "shardId-1", &stream()), Err(ReadError::Other(_))));
    }
}
