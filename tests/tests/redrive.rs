//! `poller redrive` against moto: messages go from a mapping's dead-letter queue back to its source
//! queue with bodies and attributes intact, a dry run changes nothing, `--count` and `--rate` are honoured.

use std::collections::BTreeSet;

use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use e2e::{Queue, Sqs, endpoint, poller_binary, sqs_mapping, unique};

/// Put `n` messages into `queue` (the dead-letter queue), each with a string and a binary attribute;
/// FIFO messages go to groups `g0` and `g1` alternately.
async fn fill(sqs: &Sqs, queue: &Queue, n: usize) -> BTreeSet<String> {
    let fifo = queue.name.ends_with(".fifo");
    let mut bodies = BTreeSet::new();
    let entries = (0..n).map(|i| {
        let body = format!("order-{i}");
        bodies.insert(body.clone());
        let mut e = SendMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .message_body(body)
            .message_attributes(
                "kind",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(format!("k{i}"))
                    .build()
                    .unwrap(),
            )
            .message_attributes(
                "raw",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(vec![i as u8, 0xff].into())
                    .build()
                    .unwrap(),
            );
        if fifo {
            e = e
                .message_group_id(format!("g{}", i % 2))
                .message_deduplication_id(format!("d{i}"));
        }
        e.build().unwrap()
    });
    sqs.send_entries(queue, entries.collect()).await;
    bodies
}

/// Run `poller redrive` for `queue`'s mapping with `args`; its stdout (the final count) and whether it succeeded.
fn redrive(queue: &Queue, args: &[&str]) -> (String, bool) {
    let dir = tempfile_dir();
    let mapping = dir.join("mapping.json");
    std::fs::write(&mapping, sqs_mapping(queue, "orders-fn", "")).unwrap();
    let out = std::process::Command::new(poller_binary())
        .arg("redrive")
        .arg("--mapping")
        .arg(&mapping)
        .args(["--endpoint-url", &endpoint(), "--region", "us-east-1"])
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("poller runs");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    (stdout, out.status.success())
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("redrive"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// (body, kind attribute, raw attribute, group) of every message drained from `queue`.
async fn drained(sqs: &Sqs, queue: &Queue) -> BTreeSet<(String, String, Vec<u8>, Option<String>)> {
    // `drain` asks for system attributes only; ask again for message attributes.
    let mut all = BTreeSet::new();
    loop {
        let out = sqs
            .client
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return all;
        }
        for m in messages {
            let attrs = m.message_attributes().cloned().unwrap_or_default();
            all.insert((
                m.body().unwrap_or_default().to_owned(),
                attrs
                    .get("kind")
                    .and_then(|a| a.string_value())
                    .unwrap_or_default()
                    .to_owned(),
                attrs
                    .get("raw")
                    .and_then(|a| a.binary_value())
                    .map(|b| b.as_ref().to_vec())
                    .unwrap_or_default(),
                m.attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned(),
            ));
            sqs.client
                .delete_message()
                .queue_url(&queue.url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// What `fill` put in, as `drained` reads it back.
fn expected(n: usize, fifo: bool) -> BTreeSet<(String, String, Vec<u8>, Option<String>)> {
    (0..n)
        .map(|i| {
            (
                format!("order-{i}"),
                format!("k{i}"),
                vec![i as u8, 0xff],
                fifo.then(|| format!("g{}", i % 2)),
            )
        })
        .collect()
}

#[tokio::test]
async fn redrive_moves_every_message_back_with_body_and_attributes() {
    let sqs = Sqs::new().await;
    let (queue, dlq) = sqs.create_queue_with_dlq(&unique("redrive"), 30, 3).await;
    fill(&sqs, &dlq, 13).await;
    let (stdout, ok) = redrive(&queue, &[]);
    assert!(ok, "{stdout}");
    assert_eq!(stdout, "moved 13, failed 0");
    assert_eq!(drained(&sqs, &queue).await, expected(13, false));
    assert_eq!(sqs.depth(&dlq).await, 0, "the dead-letter queue is empty");
}

#[tokio::test]
async fn fifo_redrive_keeps_message_groups() {
    let sqs = Sqs::new().await;
    let (queue, dlq) = sqs
        .create_queue_with_dlq(&format!("{}.fifo", unique("redrive")), 30, 3)
        .await;
    fill(&sqs, &dlq, 6).await;
    let (stdout, ok) = redrive(&queue, &["--from", &dlq.arn, "--rate", "4/s"]);
    assert!(ok, "{stdout}");
    assert_eq!(stdout, "moved 6, failed 0");
    assert_eq!(drained(&sqs, &queue).await, expected(6, true));
    assert_eq!(sqs.depth(&dlq).await, 0);
}

#[tokio::test]
async fn dry_run_leaves_both_queues_as_they_were() {
    let sqs = Sqs::new().await;
    let (queue, dlq) = sqs.create_queue_with_dlq(&unique("redrive"), 30, 3).await;
    fill(&sqs, &dlq, 12).await;
    let (stdout, ok) = redrive(&queue, &["--dry-run"]);
    assert!(ok, "{stdout}");
    assert_eq!(stdout, "would move 12, failed 0");
    assert_eq!(
        sqs.depth(&queue).await,
        0,
        "nothing was sent to the source queue"
    );
    // Every message is visible again at once (the dry run's hold is 30 s): one drain gets them all.
    assert_eq!(drained(&sqs, &dlq).await, expected(12, false));
}

#[tokio::test]
async fn count_limits_how_many_move() {
    let sqs = Sqs::new().await;
    let (queue, dlq) = sqs.create_queue_with_dlq(&unique("redrive"), 30, 3).await;
    fill(&sqs, &dlq, 7).await;
    let (stdout, ok) = redrive(&queue, &["--count", "3"]);
    assert!(ok, "{stdout}");
    assert_eq!(stdout, "moved 3, failed 0");
    let moved = drained(&sqs, &queue).await;
    assert_eq!(moved.len(), 3);
    let left = drained(&sqs, &dlq).await;
    assert_eq!(left.len(), 4);
    assert_eq!(
        moved.union(&left).cloned().collect::<BTreeSet<_>>(),
        expected(7, false),
        "each message in exactly one queue"
    );
}

/// `--rate 2/s`: the limiter grants two messages at once, then one every 500 ms, so six messages
/// cannot all have moved in less than 2 s, however fast the queues answer.
#[tokio::test]
async fn rate_limits_how_fast_messages_move() {
    let sqs = Sqs::new().await;
    let (queue, dlq) = sqs.create_queue_with_dlq(&unique("redrive"), 30, 3).await;
    fill(&sqs, &dlq, 6).await;
    let started = std::time::Instant::now();
    let (stdout, ok) = redrive(&queue, &["--rate", "2/s"]);
    let took = started.elapsed();
    assert!(ok, "{stdout}");
    assert_eq!(stdout, "moved 6, failed 0");
    assert!(took >= std::time::Duration::from_secs(2), "six messages at 2/s took {took:?}");
    assert_eq!(drained(&sqs, &queue).await, expected(6, false));
}
