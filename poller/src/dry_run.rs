//! `poller run --dry-run`: read each mapping's source once and print the batches the function
//! would get, invoking nothing and changing nothing that lasts.
//!
//! AWS has no dry run for event source mappings. This one reads as the real path does and batches
//! with the same code ([`Batcher`] for SQS, [`Lanes`] for streams, the same filters and payload
//! cap), with two departures so that the source is left as it was:
//!
//! * SQS: messages are received, then made visible again at once (`ChangeMessageVisibility` 0);
//!   nothing is deleted, not even what the filters drop (AWS deletes those). Each receive counts
//!   toward the queue's `maxReceiveCount`, as any receive does
//!   (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html>).
//! * Streams: shards are read from the mapping's `StartingPosition`, without taking a lease or
//!   reading or writing a checkpoint, each on its own (no parent-before-child order).
//!
//! A pass ends when the queue answers empty or every shard is read to its tip, or when enough
//! records for `limit` batches were read (per mapping for SQS, per shard for streams).

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use esm_events::envelope::{Envelope, MAX_PAYLOAD_BYTES};
use esm_stream::Lanes;

use crate::Options;
use crate::arn::SourceArn;
use crate::batch::{Batcher, Limits};
use crate::config::{Mapping, SourceSettings, StartingPosition, StreamSettings};
use crate::sqs::client::Received;
use crate::stream::source::{Position, StreamRecord, StreamSource};

/// How long received SQS messages stay invisible while the pass reads the queue; all are made
/// visible again when it ends.
const SQS_HOLD: Duration = Duration::from_secs(30);

/// A batch the function would get.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Planned {
    /// The shard (streams).
    pub shard_id: Option<String>,
    /// SQS messageId, Kinesis sequence number or DynamoDB eventID, in order.
    pub ids: Vec<String>,
    /// The invocation payload's size.
    pub payload_bytes: usize,
}

/// What one pass over a mapping's source found.
#[derive(Debug, Default)]
struct Pass {
    batches: Vec<Planned>,
    /// Records no filter matched, by id.
    dropped: Vec<String>,
    read: usize,
}

/// `poller run --dry-run`: exit 0 if every mapping's source was read, 1 otherwise.
pub(crate) async fn run(mappings: Vec<Mapping>, options: &Options, limit: usize) -> ExitCode {
    let sdk = crate::sdk_config(options).await;
    let mut status = ExitCode::SUCCESS;
    for mapping in mappings {
        println!(
            "mapping {} ({} → {}), dry run:",
            mapping.uuid, mapping.source, mapping.function_name
        );
        if !mapping.enabled {
            println!("  disabled (Enabled: false): not read");
            continue;
        }
        let pass = match &mapping.settings {
            SourceSettings::Sqs(_) => sqs_pass(&mapping, &sdk, limit).await,
            SourceSettings::Stream(settings) => {
                stream_pass(&mapping, settings, &sdk, options, limit).await
            }
        };
        match pass {
            Ok(pass) => print!("{}", describe(&pass)),
            Err(e) => {
                eprintln!("poller: mapping {}: {e}", mapping.uuid);
                status = ExitCode::from(1);
            }
        }
    }
    status
}

/// The text of a pass: a line per batch, the dropped records, the totals.
fn describe(pass: &Pass) -> String {
    let mut text = String::new();
    for (n, b) in pass.batches.iter().enumerate() {
        let shard = b
            .shard_id
            .as_ref()
            .map(|s| format!(" [{s}]"))
            .unwrap_or_default();
        text += &format!(
            "  batch {}{shard}: {} records, {} bytes: {}\n",
            n + 1,
            b.ids.len(),
            b.payload_bytes,
            b.ids.join(" ")
        );
    }
    if !pass.dropped.is_empty() {
        text += &format!(
            "  dropped by filters (no filter of FilterCriteria matched): {}\n",
            pass.dropped.join(" ")
        );
    }
    let batched: usize = pass.batches.iter().map(|b| b.ids.len()).sum();
    text += &format!(
        "  read {} records: {} batches of {batched} records, {} dropped by filters; nothing invoked\n",
        pass.read,
        pass.batches.len(),
        pass.dropped.len()
    );
    text
}

/// Batches of `records` (id, event record JSON) in order, as an SQS lane makes them: up to
/// `BatchSize` records and the 6 MB payload cap, at most `limit` batches.
fn sqs_batches(records: Vec<(String, Vec<u8>)>, batch_size: usize, limit: usize) -> Vec<Planned> {
    let limits = Limits {
        max_records: batch_size,
        max_payload_bytes: MAX_PAYLOAD_BYTES,
        window: Duration::ZERO,
        envelope: Envelope::records(),
    };
    let now = std::time::Instant::now();
    let mut batcher = Batcher::new(limits.clone());
    let mut batches: Vec<Vec<(String, usize)>> = Vec::new();
    for (id, json) in records {
        if let Err(item) = batcher.push((id, json.len()), json.len(), now) {
            batches.push(batcher.take());
            batcher
                .push(item.clone(), item.1, now)
                .expect("an empty batch takes any record");
        }
    }
    if !batcher.is_empty() {
        batches.push(batcher.take());
    }
    batches
        .into_iter()
        .take(limit)
        .map(|batch| Planned {
            shard_id: None,
            payload_bytes: limits
                .envelope
                .payload_len(batch.iter().map(|(_, len)| *len)),
            ids: batch.into_iter().map(|(id, _)| id).collect(),
        })
        .collect()
}

async fn sqs_pass(
    mapping: &Mapping,
    sdk: &aws_config::SdkConfig,
    limit: usize,
) -> Result<Pass, String> {
    let queue = mapping.source.parts();
    let client = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .region(aws_sdk_sqs::config::Region::new(queue.region.clone()))
            .build(),
    );
    let queue_url = crate::sqs::queue_url(&client, queue)
        .await
        .map_err(|e| e.to_string())?;
    let wire = crate::sqs::client::SqsClient::new(sdk, &queue.region, queue_url).await?;
    let wanted = limit.saturating_mul(mapping.batch_size as usize);
    let mut held = Vec::new();
    let mut seen = HashSet::new();
    let mut pass = Pass::default();
    let mut kept = Vec::new();
    let received = loop {
        if seen.len() >= wanted {
            break Ok(());
        }
        // A long poll (WaitTimeSeconds > 0) asks every SQS server, so an empty answer means an
        // empty queue; a short poll samples some servers and can answer empty while messages wait
        // (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html>).
        let answer = wire.receive(10, 1, Some(SQS_HOLD)).await;
        let messages = match Received::messages_of(&answer) {
            Ok(messages) => messages,
            Err(e) => break Err(format!("ReceiveMessage failed: {e}")),
        };
        if messages.is_empty() {
            break Ok(());
        }
        for message in messages {
            held.push(message.receipt_handle.as_str().into_owned());
            let record = crate::sqs::record::to_record(message, queue);
            if !seen.insert(record.message_id.to_string()) {
                continue;
            }
            pass.read += 1;
            let value = serde_json::to_value(&record).expect("records serialize");
            if !mapping.filters.is_empty() && !mapping.filters.matches(&value) {
                pass.dropped.push(record.message_id.into_owned());
                continue;
            }
            kept.push((
                record.message_id.to_string(),
                serde_json::to_vec(&record).expect("records serialize"),
            ));
        }
    };
    // Released whatever happened, so the pass leaves the queue as it was.
    crate::sqs::visibility::reveal(&wire, &held).await;
    received?;
    pass.batches = sqs_batches(kept, mapping.batch_size as usize, limit);
    Ok(pass)
}

/// Batches of one shard's records (in shard order) as its worker makes them: one lane per
/// partition key hash, up to `BatchSize` records and the payload cap, at most `limit` batches.
fn stream_batches(
    shard_id: &str,
    records: Vec<(String, StreamRecord)>,
    batch_size: usize,
    lanes: u32,
    limit: usize,
) -> Vec<Planned> {
    let mut lanes: Lanes<(String, StreamRecord)> =
        Lanes::new(lanes).expect("validated ParallelizationFactor");
    for (id, record) in records {
        let key = record.partition_key.clone();
        lanes.push(&key, (id, record));
    }
    let max_bytes = crate::stream::max_record_bytes();
    let mut batches = Vec::new();
    while !lanes.is_idle() && batches.len() < limit {
        let ready: Vec<usize> = lanes.ready_lanes().collect();
        for lane in ready {
            if let Some(batch) =
                lanes.take_batch(lane, batch_size, max_bytes, |(_, r)| r.json.len() + 1)
            {
                lanes.finish_batch(lane);
                batches.push(Planned {
                    shard_id: Some(shard_id.to_owned()),
                    payload_bytes: Envelope::records()
                        .payload_len(batch.iter().map(|(_, r)| r.json.len())),
                    ids: batch.into_iter().map(|(id, _)| id).collect(),
                });
            }
        }
    }
    batches.truncate(limit);
    batches
}

async fn stream_pass(
    mapping: &Mapping,
    settings: &StreamSettings,
    sdk: &aws_config::SdkConfig,
    options: &Options,
    limit: usize,
) -> Result<Pass, String> {
    let arn = mapping.source.parts();
    let role = options.invoke_identity_arn.clone().unwrap_or_else(|| {
        format!(
            "arn:aws:iam::{}:role/{}-role",
            arn.account,
            crate::stream::short_name(&mapping.function_name)
        )
    });
    let source = StreamSource::connect(sdk, &mapping.source, &role)
        .await
        .map_err(|e| e.to_string())?;
    let position = match settings.starting_position {
        StartingPosition::TrimHorizon => Position::TrimHorizon,
        StartingPosition::Latest => Position::Latest,
        StartingPosition::AtTimestamp(seconds) => Position::AtTimestamp(seconds),
    };
    let dynamodb = matches!(mapping.source, SourceArn::DynamoDbStream(_));
    let wanted = limit.saturating_mul(mapping.batch_size as usize);
    let mut pass = Pass::default();
    let shards = source
        .list_shards()
        .await
        .map_err(|e| format!("listing shards: {e}"))?;
    for shard in shards {
        let shard_id = shard.shard_id;
        let mut iterator = Some(
            source
                .iterator(&shard_id, &position)
                .await
                .map_err(|e| format!("{shard_id}: {e}"))?,
        );
        let mut kept = Vec::new();
        let mut read = 0;
        while let Some(it) = iterator.take() {
            let page = source
                .read(&shard_id, &it, source.max_page(), &mapping.filters)
                .await
                .map_err(|e| format!("{shard_id}: {e}"))?;
            let caught_up = page.records.is_empty() && page.millis_behind.is_none_or(|ms| ms == 0);
            for record in page.records {
                read += 1;
                let id = record_id(&record, dynamodb);
                if record.passes {
                    kept.push((id, record));
                } else {
                    pass.dropped.push(id);
                }
            }
            if caught_up || read >= wanted {
                break;
            }
            iterator = page.next_iterator;
        }
        pass.read += read;
        pass.batches.extend(stream_batches(
            &shard_id,
            kept,
            mapping.batch_size as usize,
            settings.parallelization_factor,
            limit,
        ));
    }
    Ok(pass)
}

/// The id a stream record is known by: DynamoDB's `eventID`, Kinesis's sequence number.
fn record_id(record: &StreamRecord, dynamodb: bool) -> String {
    let event_id = || {
        let value: serde_json::Value = serde_json::from_slice(&record.json).ok()?;
        value.get("eventID")?.as_str().map(str::to_owned)
    };
    match dynamodb.then(event_id).flatten() {
        Some(id) => id,
        None => record.sequence_number.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use esm_stream::SequenceNumber;

    #[test]
    fn sqs_batches_follow_batch_size_and_the_limit() {
        let records: Vec<(String, Vec<u8>)> =
            (0..7).map(|i| (format!("m{i}"), vec![b'x'; 10])).collect();
        let batches = sqs_batches(records.clone(), 3, 10);
        let ids: Vec<Vec<&str>> = batches
            .iter()
            .map(|b| b.ids.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            ids,
            [vec!["m0", "m1", "m2"], vec!["m3", "m4", "m5"], vec!["m6"]]
        );
        assert_eq!(
            batches[2].payload_bytes,
            Envelope::records().payload_len([10])
        );
        assert_eq!(sqs_batches(records, 3, 2).len(), 2);
        // A record that would pass the payload cap starts the next batch.
        let big = vec![
            ("a".to_owned(), vec![b'x'; 4 << 20]),
            ("b".to_owned(), vec![b'x'; 4 << 20]),
        ];
        assert_eq!(sqs_batches(big, 10, 10).len(), 2);
    }

    fn record(seq: u64, key: &str) -> (String, StreamRecord) {
        let record = StreamRecord {
            sequence_number: SequenceNumber::parse(&seq.to_string()).unwrap(),
            arrival_ms: 0,
            partition_key: key.as_bytes().to_vec().into(),
            passes: true,
            json: b"{}"[..].into(),
        };
        (seq.to_string(), record)
    }

    #[test]
    fn stream_batches_keep_each_key_in_its_lane() {
        let one = stream_batches("s", (1..=5).map(|s| record(s, "k")).collect(), 2, 1, 10);
        let ids: Vec<Vec<&str>> = one
            .iter()
            .map(|b| b.ids.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(ids, [vec!["1", "2"], vec!["3", "4"], vec!["5"]]);
        assert!(one.iter().all(|b| b.shard_id.as_deref() == Some("s")));
        assert_eq!(
            stream_batches("s", (1..=5).map(|s| record(s, "k")).collect(), 2, 1, 1).len(),
            1
        );

        let lanes: Lanes<()> = Lanes::new(2).unwrap();
        let other = (0..100)
            .map(|i| format!("k{i}"))
            .find(|k| lanes.lane_for(k.as_bytes()) != lanes.lane_for(b"a"))
            .unwrap();
        let records = vec![
            record(1, "a"),
            record(2, &other),
            record(3, "a"),
            record(4, &other),
        ];
        let mut ids: Vec<Vec<String>> = stream_batches("s", records, 10, 2, 10)
            .into_iter()
            .map(|b| b.ids)
            .collect();
        ids.sort();
        assert_eq!(ids, [vec!["1", "3"], vec!["2", "4"]]);
    }

    #[test]
    fn dynamodb_records_are_named_by_event_id_kinesis_records_by_sequence_number() {
        let (_, mut r) = record(42, "k");
        r.json = br#"{"eventID":"e-1","dynamodb":{"SequenceNumber":"42"}}"#[..].into();
        assert_eq!(record_id(&r, true), "e-1");
        assert_eq!(record_id(&r, false), "42");
    }

    #[test]
    fn the_text_lists_batches_and_dropped_records() {
        let pass = Pass {
            batches: vec![Planned {
                shard_id: Some("shardId-0".to_owned()),
                ids: vec!["1".to_owned(), "2".to_owned()],
                payload_bytes: 40,
            }],
            dropped: vec!["3".to_owned()],
            read: 3,
        };
        assert_eq!(
            describe(&pass),
            "  batch 1 [shardId-0]: 2 records, 40 bytes: 1 2\n  \
             dropped by filters (no filter of FilterCriteria matched): 3\n  \
             read 3 records: 1 batches of 2 records, 1 dropped by filters; nothing invoked\n"
        );
    }
}
