//! The Kinesis and DynamoDB Streams sources against moto: shards and their lineage, every iterator
//! position, and records in the exact shape the function receives. Each test makes its own stream.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ScalarAttributeType};
use aws_sdk_kinesis::primitives::Blob;
use e2e::{create_keyed_table_with_stream, sdk_config, unique};
use poller::arn::SourceArn;
use poller::stream::source::{Position, ReadError, ShardInfo, StreamRecord, StreamSource};
use serde_json::{Value, json};

/// A mapping without `FilterCriteria`: every record passes.
fn no_filters() -> esm_filter::Filters {
    esm_filter::Filters::compile(esm_filter::Source::Kinesis, &[]).expect("no filters")
}

/// The role written into Kinesis records.
const ROLE: &str = "arn:aws:iam::123456789012:role/lambda-role";
/// Kinesis splits the 128-bit hash key space evenly: with 2 shards the second starts here.
const HALF: &str = "170141183460469231731687303715884105728";
/// A hash key in the first and one in the second half.
const LOW: &str = "1";
const HIGH: &str = "170141183460469231731687303715884105729";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

async fn connect(arn: &str) -> StreamSource {
    let source = SourceArn::parse(arn).expect("stream ARN");
    StreamSource::connect(&sdk_config().await, &source, ROLE)
        .await
        .unwrap_or_else(|e| panic!("connect to {arn}: {e}"))
}

fn shard(id: &str, parents: &[&str]) -> ShardInfo {
    ShardInfo {
        shard_id: id.to_owned(),
        parent_shard_ids: parents.iter().map(|p| p.to_string()).collect(),
    }
}

/// Read `shard` from `position` until a page comes back empty (an open shard's tip) or the shard ends.
/// Returns the records and whether the shard ended (`next_iterator` None).
async fn read_all(source: &StreamSource, shard_id: &str, position: Position, page: usize) -> (Vec<StreamRecord>, bool) {
    let mut iterator = source.iterator(shard_id, &position).await.expect("GetShardIterator");
    let mut records = Vec::new();
    for _ in 0..100 {
        let read = source.read(shard_id, &iterator, page, &no_filters()).await.expect("GetRecords");
        let empty = read.records.is_empty();
        records.extend(read.records);
        match read.next_iterator {
            None => return (records, true),
            Some(_) if empty => return (records, false),
            Some(next) => iterator = next,
        }
    }
    panic!("{shard_id}: still reading after 100 pages");
}

fn json(record: &StreamRecord) -> Value {
    serde_json::from_slice(&record.json).expect("record JSON")
}

/// The raw text of a numeric timestamp field, checked to be epoch seconds with 1–3 fractional digits,
/// and the same instant as `arrival_ms` (which was taken in `[before_ms, after_ms]`).
fn check_timestamp(record: &StreamRecord, field: &str, before_ms: i64, after_ms: i64) -> Value {
    let text = String::from_utf8(record.json.to_vec()).expect("UTF-8");
    let key = format!("\"{field}\":");
    let start = text.find(&key).unwrap_or_else(|| panic!("{field} in {text}")) + key.len();
    let number = &text[start..start + text[start..].find([',', '}']).expect("number ends")];
    let (whole, fraction) = number.split_once('.').unwrap_or_else(|| panic!("{field} {number} has a fraction"));
    assert!(whole.len() == 10 && whole.bytes().all(|b| b.is_ascii_digit()), "{field} {number}: epoch seconds");
    assert!((1..=3).contains(&fraction.len()), "{field} {number}: at most millisecond precision");
    let seconds: f64 = number.parse().expect("number");
    assert_eq!((seconds * 1000.0).round() as i64, record.arrival_ms, "{field} {number}");
    assert!(
        (before_ms - 1..=after_ms + 1).contains(&record.arrival_ms),
        "{field} {number} not in [{before_ms}, {after_ms}] ms"
    );
    serde_json::from_str(number).expect("number")
}

// ----- Kinesis -----

struct Kinesis {
    client: aws_sdk_kinesis::Client,
    name: String,
    arn: String,
}

impl Kinesis {
    async fn create(shards: i32) -> Kinesis {
        let client = aws_sdk_kinesis::Client::new(&sdk_config().await);
        let name = unique("stream");
        client
            .create_stream()
            .stream_name(&name)
            .shard_count(shards)
            .send()
            .await
            .expect("CreateStream");
        let summary = client
            .describe_stream_summary()
            .stream_name(&name)
            .send()
            .await
            .expect("DescribeStreamSummary")
            .stream_description_summary
            .expect("summary");
        Kinesis {
            client,
            name,
            arn: summary.stream_arn,
        }
    }

    /// PutRecord to the shard owning `hash_key`; returns the record's shard and sequence number.
    async fn put(&self, partition_key: &str, hash_key: &str, data: &[u8]) -> (String, String) {
        let out = self
            .client
            .put_record()
            .stream_name(&self.name)
            .partition_key(partition_key)
            .explicit_hash_key(hash_key)
            .data(Blob::new(data.to_vec()))
            .send()
            .await
            .expect("PutRecord");
        (out.shard_id, out.sequence_number)
    }

    fn event(&self, shard_id: &str, partition_key: &str, sequence: &str, data: &[u8], arrival: Value) -> String {
        use base64::Engine;
        json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": partition_key,
                "sequenceNumber": sequence,
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "approximateArrivalTimestamp": arrival,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("{shard_id}:{sequence}"),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": ROLE,
            "awsRegion": "us-east-1",
            "eventSourceARN": self.arn,
        })
        .to_string()
    }
}

fn sequences(records: &[StreamRecord]) -> Vec<&str> {
    records.iter().map(|r| r.sequence_number.as_str()).collect()
}

#[tokio::test]
async fn a_missing_stream_fails_with_aws_words() {
    let sdk = sdk_config().await;
    for arn in [
        format!("arn:aws:kinesis:us-east-1:123456789012:stream/{}", unique("missing")),
        format!("arn:aws:dynamodb:us-east-1:123456789012:table/{}/stream/2024-01-01T00:00:00.000", unique("missing")),
    ] {
        let source = SourceArn::parse(&arn).expect("ARN");
        let err = StreamSource::connect(&sdk, &source, ROLE).await.expect_err("stream is missing");
        assert!(matches!(err, poller::Error::Source(_)), "{err:?}");
        assert_eq!(err.to_string(), format!("Stream not found: {arn}"));
    }
}

#[tokio::test]
async fn kinesis_records_in_order_and_in_the_event_shape() {
    let stream = Kinesis::create(2).await;
    let before = now_ms();
    let first = [("key-a", b"first".to_vec()), ("key-b", vec![0, 159, 146, 150]), ("key-a", b"{\"n\":3}".to_vec())];
    let mut put = Vec::new();
    for (key, data) in &first {
        put.push(stream.put(key, LOW, data).await);
    }
    let other = stream.put("key-c", HIGH, b"other shard").await;
    let after = now_ms();

    let source = connect(&stream.arn).await;
    assert_eq!(source.arn().arn, stream.arn);
    assert_eq!(
        source.list_shards().await.expect("ListShards"),
        [shard("shardId-000000000000", &[]), shard("shardId-000000000001", &[])]
    );

    let shard0 = "shardId-000000000000";
    let iterator = source.iterator(shard0, &Position::TrimHorizon).await.expect("iterator");
    let page = source.read(shard0, &iterator, 100, &no_filters()).await.expect("GetRecords");
    assert!(page.next_iterator.is_some(), "an open shard always has a next iterator");
    assert!(page.millis_behind.is_some());
    assert_eq!(sequences(&page.records), put.iter().map(|(_, seq)| seq.as_str()).collect::<Vec<_>>());
    for (record, ((key, data), (shard_id, sequence))) in page.records.iter().zip(first.iter().zip(&put)) {
        assert_eq!(shard_id, shard0);
        let arrival = check_timestamp(record, "approximateArrivalTimestamp", before, after);
        let text = String::from_utf8(record.json.to_vec()).expect("UTF-8");
        assert_eq!(text, stream.event(shard0, key, sequence, data, arrival));
        assert_eq!(record.partition_key, key.as_bytes());
    }

    // A small limit pages through the same records.
    let (paged, ended) = read_all(&source, shard0, Position::TrimHorizon, 1).await;
    assert!(!ended);
    assert_eq!(sequences(&paged), sequences(&page.records));

    let (records, _) = read_all(&source, "shardId-000000000001", Position::TrimHorizon, 100).await;
    assert_eq!(sequences(&records), [other.1.as_str()]);
    assert_eq!(json(&records[0])["eventID"], format!("shardId-000000000001:{}", other.1));

    let missing = source.iterator("shardId-000000000099", &Position::TrimHorizon).await;
    assert!(matches!(missing, Err(ReadError::NotFound(_))), "{missing:?}");
}

#[tokio::test]
async fn kinesis_latest_skips_what_came_before() {
    let stream = Kinesis::create(1).await;
    stream.put("k", LOW, b"before").await;
    let source = connect(&stream.arn).await;
    let iterator = source.iterator("shardId-000000000000", &Position::Latest).await.expect("iterator");
    let (_, after) = stream.put("k", LOW, b"after").await;
    let page = source.read("shardId-000000000000", &iterator, 100, &no_filters()).await.expect("GetRecords");
    assert_eq!(sequences(&page.records), [after.as_str()]);
}

#[tokio::test]
async fn kinesis_after_sequence_number_resumes_after_the_checkpoint() {
    let stream = Kinesis::create(1).await;
    let (_, one) = stream.put("k", LOW, b"1").await;
    let (_, two) = stream.put("k", LOW, b"2").await;
    let (_, three) = stream.put("k", LOW, b"3").await;
    let source = connect(&stream.arn).await;
    let (records, _) = read_all(&source, "shardId-000000000000", Position::AfterSequence(one), 100).await;
    assert_eq!(sequences(&records), [two.as_str(), three.as_str()]);
}

#[tokio::test]
async fn kinesis_at_timestamp_starts_at_the_first_record_at_or_after_it() {
    let stream = Kinesis::create(1).await;
    let start = now_ms() as f64 / 1000.0 - 1.0;
    let (_, early) = stream.put("k", LOW, b"early").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cut = now_ms() as f64 / 1000.0;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, late) = stream.put("k", LOW, b"late").await;
    let source = connect(&stream.arn).await;
    let (records, _) = read_all(&source, "shardId-000000000000", Position::AtTimestamp(cut), 100).await;
    assert_eq!(sequences(&records), [late.as_str()]);
    let (records, _) = read_all(&source, "shardId-000000000000", Position::AtTimestamp(start), 100).await;
    assert_eq!(sequences(&records), [early.as_str(), late.as_str()]);
}

/// Needs the Kinesis fix in scripts/moto_server.py: moto moves a split shard's records into its children
/// and never ends a closed shard.
#[tokio::test]
async fn kinesis_split_and_merge_show_lineage_and_the_parent_ends() {
    let stream = Kinesis::create(1).await;
    let parent = "shardId-000000000000";
    let mut before_split = Vec::new();
    for (i, hash_key) in [LOW, HIGH, LOW].into_iter().enumerate() {
        before_split.push(stream.put(&format!("k{i}"), hash_key, format!("r{i}").as_bytes()).await.1);
    }
    stream
        .client
        .split_shard()
        .stream_name(&stream.name)
        .shard_to_split(parent)
        .new_starting_hash_key(HALF)
        .send()
        .await
        .expect("SplitShard");
    let (child, after_split) = stream.put("k9", HIGH, b"after split").await;

    let source = connect(&stream.arn).await;
    assert_eq!(
        source.list_shards().await.expect("ListShards"),
        [
            shard(parent, &[]),
            shard("shardId-000000000001", &[parent]),
            shard("shardId-000000000002", &[parent]),
        ]
    );
    // The closed parent keeps its records and ends once they are read, page by page.
    let (records, ended) = read_all(&source, parent, Position::TrimHorizon, 2).await;
    assert_eq!(sequences(&records), before_split.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ended, "the parent shard returns no next iterator after its last record");
    assert_eq!(child, "shardId-000000000002");
    let (records, ended) = read_all(&source, &child, Position::TrimHorizon, 100).await;
    assert_eq!((sequences(&records), ended), (vec![after_split.as_str()], false));

    stream
        .client
        .merge_shards()
        .stream_name(&stream.name)
        .shard_to_merge("shardId-000000000001")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await
        .expect("MergeShards");
    let shards = source.list_shards().await.expect("ListShards");
    assert_eq!(
        shards.last(),
        Some(&shard("shardId-000000000003", &["shardId-000000000001", "shardId-000000000002"]))
    );
}

// ----- DynamoDB Streams -----

struct Table {
    client: aws_sdk_dynamodb::Client,
    name: String,
    stream_arn: String,
}

impl Table {
    /// A table keyed by `pk` (S) and `sk` (N) with a NEW_AND_OLD_IMAGES stream.
    async fn create() -> Table {
        let client = aws_sdk_dynamodb::Client::new(&sdk_config().await);
        let name = unique("table");
        let keys = [("pk", ScalarAttributeType::S, KeyType::Hash), ("sk", ScalarAttributeType::N, KeyType::Range)];
        let stream_arn = create_keyed_table_with_stream(&client, &name, &keys).await;
        Table { client, name, stream_arn }
    }

    async fn put(&self, item: &[(&str, AttributeValue)]) {
        let mut request = self.client.put_item().table_name(&self.name);
        for (name, value) in item {
            request = request.item(*name, value.clone());
        }
        request.send().await.expect("PutItem");
    }
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn n(text: &str) -> AttributeValue {
    AttributeValue::N(text.to_owned())
}

#[tokio::test]
async fn dynamodb_insert_modify_remove_in_the_event_shape() {
    let table = Table::create().await;
    let before = now_ms();
    let key = [("pk", s("user#1")), ("sk", n("1"))];
    let mut inserted = key.to_vec();
    inserted.extend([
        ("name", s("Ann")),
        ("score", n("1.50")),
        ("blob", AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0, 1, 255]))),
        ("tags", AttributeValue::Ss(vec!["b".to_owned(), "a".to_owned()])),
        ("nums", AttributeValue::Ns(vec!["10".to_owned(), "2".to_owned()])),
        ("blobs", AttributeValue::Bs(vec![aws_sdk_dynamodb::primitives::Blob::new(b"hi".to_vec())])),
        ("meta", AttributeValue::M([("z".to_owned(), s("1")), ("a".to_owned(), AttributeValue::Bool(true))].into())),
        ("list", AttributeValue::L(vec![s("x"), AttributeValue::Null(true), n("3")])),
    ]);
    table.put(&inserted).await;
    let mut modified = key.to_vec();
    modified.extend([("name", s("Bea")), ("score", n("2"))]);
    table.put(&modified).await;
    table
        .client
        .delete_item()
        .table_name(&table.name)
        .key("pk", s("user#1"))
        .key("sk", n("1"))
        .send()
        .await
        .expect("DeleteItem");
    let after = now_ms();

    let source = connect(&table.stream_arn).await;
    let shards = source.list_shards().await.expect("DescribeStream");
    let [only] = &shards[..] else { panic!("one shard: {shards:?}") };
    assert!(only.parent_shard_ids.is_empty());
    let (records, ended) = read_all(&source, &only.shard_id, Position::TrimHorizon, 100).await;
    assert!(!ended);
    assert_eq!(records.len(), 3);

    let keys = json!({"pk": {"S": "user#1"}, "sk": {"N": "1"}});
    let new_image = json!({
        "blob": {"B": "AAH/"},
        "blobs": {"BS": ["aGk="]},
        "list": {"L": [{"S": "x"}, {"NULL": true}, {"N": "3"}]},
        "meta": {"M": {"a": {"BOOL": true}, "z": {"S": "1"}}},
        "name": {"S": "Ann"},
        "nums": {"NS": ["10", "2"]},
        "pk": {"S": "user#1"},
        "score": {"N": "1.50"},
        "sk": {"N": "1"},
        "tags": {"SS": ["b", "a"]},
    });
    let modified_image = json!({"name": {"S": "Bea"}, "pk": {"S": "user#1"}, "score": {"N": "2"}, "sk": {"N": "1"}});
    let images = [
        ("INSERT", Some(&new_image), None),
        ("MODIFY", Some(&modified_image), Some(&new_image)),
        ("REMOVE", None, Some(&modified_image)),
    ];
    for (record, (event_name, new, old)) in records.iter().zip(images) {
        let value = json(record);
        let created = check_timestamp(record, "ApproximateCreationDateTime", before, after);
        let event_id = value["eventID"].as_str().expect("eventID");
        assert!(!event_id.is_empty());
        let size_bytes = value["dynamodb"]["SizeBytes"].as_u64().expect("SizeBytes");
        assert!(size_bytes > 0);
        let mut change = json!({"ApproximateCreationDateTime": created, "Keys": keys});
        if let Some(image) = new {
            change["NewImage"] = image.clone();
        }
        if let Some(image) = old {
            change["OldImage"] = image.clone();
        }
        change["SequenceNumber"] = json!(record.sequence_number.as_str());
        change["SizeBytes"] = json!(size_bytes);
        change["StreamViewType"] = json!("NEW_AND_OLD_IMAGES");
        let expected = json!({
            "eventID": event_id,
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": change,
            "eventSourceARN": table.stream_arn,
        });
        assert_eq!(String::from_utf8(record.json.to_vec()).expect("UTF-8"), expected.to_string());
        assert_eq!(record.partition_key, keys.to_string().into_bytes());
    }
    assert!(records.windows(2).all(|w| w[0].sequence_number < w[1].sequence_number));
}

#[tokio::test]
async fn dynamodb_iterators_resume_and_skip() {
    let table = Table::create().await;
    for i in 0..3 {
        table.put(&[("pk", s(&format!("item-{i}"))), ("sk", n("0"))]).await;
    }
    let source = connect(&table.stream_arn).await;
    let shards = source.list_shards().await.expect("DescribeStream");
    let shard_id = &shards[0].shard_id;
    let (all, _) = read_all(&source, shard_id, Position::TrimHorizon, 2).await;
    assert_eq!(all.len(), 3);

    let (rest, _) =
        read_all(&source, shard_id, Position::AfterSequence(all[0].sequence_number.as_str().to_owned()), 100).await;
    assert_eq!(sequences(&rest), sequences(&all[1..]));

    let iterator = source.iterator(shard_id, &Position::Latest).await.expect("iterator");
    table.put(&[("pk", s("item-new")), ("sk", n("0"))]).await;
    let page = source.read(shard_id, &iterator, 100, &no_filters()).await.expect("GetRecords");
    assert_eq!(page.records.len(), 1);
    assert_eq!(json(&page.records[0])["dynamodb"]["Keys"]["pk"], json!({"S": "item-new"}));
    assert_eq!(page.millis_behind, None);
}
