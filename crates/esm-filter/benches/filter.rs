//! Filter throughput on ~1 KB SQS records with a JSON body, for 1, 10 and 100 patterns.
//!
//! Patterns mix the operators real mappings use (exact, prefix, suffix, numeric ranges,
//! anything-but, exists, wildcard, equals-ignore-case, cidr, `$or`), mostly on the body, a few on
//! record metadata. Records vary so that some match and most don't, as in a filtered queue.
//! One iteration = one `Filters::matches` call on one record (compiled once, outside the loop).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use esm_filter::{Filters, Source};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Duration;

fn pattern(i: usize) -> String {
    let p = match i % 6 {
        0 => json!({"body": {"type": [format!("order_created_{i}")], "amount": [{"numeric": [">", i * 10, "<=", 100_000]}]}}),
        1 => json!({"body": {"customer": {"tier": [{"anything-but": [format!("free_{i}"), "trial"]}]}, "region": [{"prefix": format!("eu-{}", i % 3)}]}}),
        2 => json!({"body": {"items": {"sku": [{"wildcard": format!("SKU-{}*-X", i % 50)}]}}}),
        3 => json!({"body": {"customer": {"email": [{"suffix": format!("@example{i}.com")}]}}, "attributes": {"ApproximateReceiveCount": [{"exists": true}]}}),
        4 => json!({"body": {"status": [{"equals-ignore-case": format!("SHIPPED{}", i % 4)}], "origin": {"ip": [{"cidr": format!("10.{}.0.0/16", i % 256)}]}}}),
        _ => json!({"eventSource": ["aws:sqs"], "$or": [{"body": {"priority": [{"numeric": [">=", 5]}]}}, {"body": {"flags": {"express": [true]}}}]}),
    };
    p.to_string()
}

/// A ~1 KB SQS record; `n` varies the body so different patterns match different records.
fn record(n: usize) -> Value {
    let pick = |options: &[&'static str]| options[n % options.len()];
    let body = json!({
        "type": format!("order_created_{}", n % 120),
        "orderId": format!("o-{n:08}-9f1c2e7a-4b0d-4c1e-9a55-2f6b8d3e1a77"),
        "amount": (n * 37) % 5000,
        "currency": "EUR",
        "region": pick(&["eu-0", "eu-1", "us-1"]),
        "status": pick(&["shipped0", "PENDING", "Shipped2", "cancelled"]),
        "priority": n % 7,
        "flags": {"express": n.is_multiple_of(5), "gift": false},
        "origin": {"ip": format!("10.{}.{}.{}", n % 256, (n / 3) % 256, n % 200), "channel": "web"},
        "customer": {
            "id": format!("c-{n:06}"), "tier": pick(&["free_1", "gold", "trial", "silver"]),
            "email": format!("user{n}@example{}.com", n % 120),
            "address": {"street": "1 Long Street Name", "city": "Berlin", "zip": "10115", "country": "DE"}
        },
        "items": [
            {"sku": format!("SKU-{}-A-X", n % 50), "qty": 1, "price": 19.99},
            {"sku": format!("SKU-{}-B-Y", (n + 7) % 50), "qty": 2, "price": 5.25},
            {"sku": "SKU-99-Z-X", "qty": 1, "price": 100.0}
        ],
        "notes": "Leave at the door if nobody answers; ring twice. Fragile items inside."
    });
    json!({
        "messageId": format!("059f36b4-87a3-44ab-83d2-{n:012}"),
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0aYwE4Ee2TVBKgNsFMQpoTJMXYQT5FZ1k6vZGQeqkw0JquK",
        "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183",
                       "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1545082649185"},
        "messageAttributes": {},
        "md5OfMessageAttributes": null,
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
        "awsRegion": "us-east-2"
    })
}

fn bench(c: &mut Criterion) {
    let records: Vec<Value> = (0..256).map(record).collect();
    let mut group = c.benchmark_group("sqs_1kb_record");
    group.throughput(Throughput::Elements(1));
    for count in [1usize, 10, 100] {
        let texts: Vec<String> = (0..count).map(pattern).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let filters = Filters::compile_with_limit(Source::Sqs, &refs, count).unwrap();
        let matched = records.iter().filter(|r| filters.matches(r)).count();
        println!("{count} patterns: {matched} of {} records match", records.len());
        let mut next = records.iter().cycle();
        group.bench_with_input(BenchmarkId::new("patterns", count), &filters, |b, f| {
            b.iter(|| black_box(f.matches(black_box(next.next().unwrap()))))
        });
    }
    // The same records with a metadata-only pattern: the body is never parsed.
    let metadata_only = Filters::compile(Source::Sqs, &[r#"{"attributes":{"ApproximateReceiveCount":["1"]}}"#]).unwrap();
    let mut next = records.iter().cycle();
    group.bench_function("metadata_only", |b| b.iter(|| black_box(metadata_only.matches(black_box(next.next().unwrap())))));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
