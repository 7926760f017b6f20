//! The poller's per-record work with an in-memory source and target: what is left of the CPU cost once
//! AWS calls are taken away (docs/benchmarks.md#poller).
//!
//! One iteration is one Kinesis page of 500 records, as GetRecords returns it to a mapping with
//! `BatchSize` 500 and one filter that keeps half of them, taken through the poller's own steps:
//! the GetRecords answer's body → filter and event record JSON ([`kinesis::page`]) → checkpoint
//! tracking → batch and event payload ([`Envelope::payload`]) → the function's answer
//! (`{"batchItemFailures":[]}`) read as a partial batch response → the error-handling state machine
//! ([`BatchRetry`]) → records final, checkpoint moved. Single-threaded: records per second is per core.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use esm_events::envelope::Envelope;
use esm_events::response::{BatchResponse, parse_batch_response};
use esm_filter::{Filters, Source};
use esm_stream::{Action, BatchRecord, BatchRetry, Frontier, Outcome, RetryConfig};
use poller::arn::ArnParts;
use poller::stream::kinesis;

const PAGE: usize = 500;
const SHARD: &str = "shardId-000000000000";
const ROLE: &str = "arn:aws:iam::123456789012:role/bench-role";

/// A GetRecords answer's body as Kinesis writes it: 56-digit sequence numbers, ~60-byte JSON data
/// (base64), half clicks.
fn page() -> Vec<u8> {
    let records: Vec<String> = (0..PAGE)
        .map(|i| {
            let data = format!(r#"{{"type":"{}","n":{i},"page":"/p/{}"}}"#, if i % 2 == 0 { "click" } else { "view" }, i % 97);
            format!(
                r#"{{"SequenceNumber":"4959033827149025660855969253836157109592157598913658{i:04}","ApproximateArrivalTimestamp":{}.{:03},"Data":"{}","PartitionKey":"k{}"}}"#,
                1_764_460_800 + i / 1000,
                i % 1000,
                base64::engine::general_purpose::STANDARD.encode(data),
                i % 64
            )
        })
        .collect();
    format!(r#"{{"Records":[{}],"NextShardIterator":"AAAAAAAAAAGmZnkX0zNd+XYdCsUmRl5TsHYrDu0Iw9HFPVxNhQ==","MillisBehindLatest":0}}"#, records.join(",")).into_bytes()
}

/// One page through the poller's steps; returns the checkpoint it ends at.
fn one_page(body: &Bytes, stream: &ArnParts, filters: &Filters, retry: &RetryConfig) -> String {
    let page = kinesis::page(body, SHARD, stream, ROLE, filters).expect("valid answer");
    let mut frontier = Frontier::new(None);
    let mut matched = Vec::with_capacity(page.records.len());
    for record in page.records {
        frontier.track(record.sequence_number.clone()).expect("in order");
        if record.passes {
            matched.push(record);
        } else {
            frontier.complete(&record.sequence_number).expect("tracked");
        }
    }
    for record in &matched {
        frontier.dispatch(&record.sequence_number).expect("tracked");
    }
    let batch = matched
        .iter()
        .map(|r| BatchRecord { sequence_number: r.sequence_number.clone(), arrival_millis: r.arrival_ms })
        .collect();
    let mut machine = BatchRetry::new(retry.clone(), batch).expect("in order");
    loop {
        match machine.next_action(1_764_460_900_000) {
            Action::Invoke(range) => {
                let json: Vec<&[u8]> = matched[range.clone()].iter().map(|r| &r.json[..]).collect();
                black_box(Envelope::records().payload(&json));
                let in_batch = |id: &str| matched[range.clone()].iter().any(|r| r.sequence_number.as_str() == id);
                let outcome = match parse_batch_response(br#"{"batchItemFailures":[]}"#, in_batch) {
                    BatchResponse::Success => Outcome::Success,
                    other => panic!("unexpected response reading: {other:?}"),
                };
                machine.on_outcome(outcome);
            }
            Action::Done => break,
            Action::Checkpoint { .. } => {}
            other => panic!("unexpected action {other:?}"),
        }
    }
    for record in &matched {
        frontier.complete(&record.sequence_number).expect("tracked");
    }
    frontier.checkpoint().expect("every record final").as_str().to_owned()
}

fn kinesis_page(c: &mut Criterion) {
    let page = Bytes::from(page());
    let stream = ArnParts {
        arn: "arn:aws:kinesis:us-east-1:123456789012:stream/bench".to_owned(),
        region: "us-east-1".to_owned(),
        account: "123456789012".to_owned(),
        name: "bench".to_owned(),
    };
    let filters = Filters::compile(Source::Kinesis, &[r#"{"data":{"type":["click"]}}"#]).expect("valid pattern");
    let retry = RetryConfig::from_api(false, -1, -1, true).expect("valid config");
    assert_eq!(one_page(&page, &stream, &filters, &retry), format!("4959033827149025660855969253836157109592157598913658{:04}", PAGE - 1));
    let none = Filters::compile(Source::Kinesis, &[]).expect("no filters");
    let mut group = c.benchmark_group("kinesis_page");
    group.throughput(Throughput::Elements(PAGE as u64));
    group.bench_function("500_records_one_filter", |b| b.iter(|| one_page(&page, &stream, &filters, &retry)));
    group.bench_function("500_records_no_filter", |b| b.iter(|| one_page(&page, &stream, &none, &retry)));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(30);
    targets = kinesis_page
}
criterion_main!(benches);
