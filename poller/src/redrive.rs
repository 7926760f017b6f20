//! `poller redrive`: move messages from an SQS mapping's dead-letter queue back to its source queue.
//!
//! Each message is received from the dead-letter queue, sent to the source queue with the same body
//! and message attributes (FIFO: the same `MessageGroupId`, and the original message id as
//! `MessageDeduplicationId`, so that sending one again after a failed delete is deduplicated by SQS),
//! and deleted from the dead-letter queue only once the send succeeded. Nothing is ever deleted that
//! is not in the source queue.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use governor::{Quota, RateLimiter};

use crate::Error;
use crate::arn::{ArnParts, SourceArn};
use crate::config::Mapping;
use crate::sqs::queue_url;

/// How long received messages stay invisible in the dead-letter queue while they are sent and
/// deleted, or listed by a dry run: long enough for a batch under load, short enough that messages a
/// crashed redrive left behind are soon visible again.
const HOLD: Duration = Duration::from_secs(30);

/// What to move and how fast.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The dead-letter queue; default: the source queue's `RedrivePolicy.deadLetterTargetArn`.
    pub from: Option<String>,
    /// Stop after taking this many messages from the dead-letter queue.
    pub count: Option<u64>,
    /// Messages per second.
    pub rate: Option<NonZeroU32>,
    /// Only list what would move; leave both queues as they were.
    pub dry_run: bool,
}

/// What a redrive did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// In the source queue and deleted from the dead-letter queue (dry run: would move).
    pub moved: u64,
    /// Not sent (still in the dead-letter queue, visible again after the hold), or sent but not
    /// deleted from the dead-letter queue (then in both).
    pub failed: u64,
}

/// The dead-letter queue ARN in a queue's `RedrivePolicy` attribute
/// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SetQueueAttributes.html>).
pub fn dead_letter_target(redrive_policy: &str) -> Result<String, String> {
    let policy: serde_json::Value = serde_json::from_str(redrive_policy)
        .map_err(|e| format!("RedrivePolicy is not JSON: {e}"))?;
    policy
        .get("deadLetterTargetArn")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "RedrivePolicy has no deadLetterTargetArn".to_owned())
}

/// How many messages to ask for next: at most 10 (the SQS batch limit), the rest of `--count`, and
/// the rate's burst so that one batch never waits for more than the limiter can grant.
pub fn next_batch(taken: u64, plan: &Plan) -> u32 {
    let left = plan.count.map_or(10, |c| c.saturating_sub(taken).min(10)) as u32;
    plan.rate.map_or(left, |r| left.min(r.get()))
}

/// The `SendMessageBatch` entry that puts `message` back into the source queue.
fn send_entry(
    id: usize,
    message: &Message,
    fifo: bool,
) -> Result<SendMessageBatchRequestEntry, String> {
    let message_id = message.message_id().unwrap_or_default();
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(id.to_string())
        .message_body(message.body().unwrap_or_default())
        .set_message_attributes(message.message_attributes().cloned());
    if fifo {
        let group = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .ok_or_else(|| format!("message {message_id} has no MessageGroupId"))?;
        entry = entry
            .message_group_id(group)
            .message_deduplication_id(message_id);
    }
    entry.build().map_err(|e| e.to_string())
}

fn client(sdk: &aws_config::SdkConfig, queue: &ArnParts) -> Client {
    Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .region(aws_sdk_sqs::config::Region::new(queue.region.clone()))
            .build(),
    )
}

/// Move (or with `dry_run`, list) messages from the mapping's dead-letter queue to its source queue.
/// Progress goes to stderr, one line per message listed or batch moved.
pub async fn redrive(
    mapping: &Mapping,
    plan: &Plan,
    sdk: &aws_config::SdkConfig,
) -> Result<Summary, Error> {
    let SourceArn::Sqs(source) = &mapping.source else {
        return Err(Error::Source(format!(
            "{}: redrive moves messages between SQS queues; this mapping reads a stream",
            mapping.source.parts().arn
        )));
    };
    let source_client = client(sdk, source);
    let source_url = queue_url(&source_client, source).await?;
    let dlq_arn = match &plan.from {
        Some(arn) => arn.clone(),
        None => {
            let policy = source_client
                .get_queue_attributes()
                .queue_url(&source_url)
                .attribute_names(QueueAttributeName::RedrivePolicy)
                .send()
                .await
                .map_err(|e| Error::Source(format!("{}: GetQueueAttributes failed: {}", source.arn, DisplayErrorContext(&e))))?
                .attributes
                .and_then(|mut a| a.remove(&QueueAttributeName::RedrivePolicy))
                .ok_or_else(|| {
                    Error::Source(format!("{}: the queue has no RedrivePolicy; name the dead-letter queue with --from", source.arn))
                })?;
            dead_letter_target(&policy)
                .map_err(|e| Error::Source(format!("{}: {e}", source.arn)))?
        }
    };
    let dlq = match SourceArn::parse(&dlq_arn) {
        Ok(SourceArn::Sqs(parts)) => parts,
        Ok(_) => {
            return Err(Error::Source(format!(
                "--from {dlq_arn}: not an SQS queue ARN"
            )));
        }
        Err(e) => return Err(Error::Source(format!("--from {dlq_arn}: {e}"))),
    };
    let fifo = mapping.source.is_fifo_queue();
    if fifo != dlq.name.ends_with(".fifo") {
        return Err(Error::Source(format!(
            "{}: a dead-letter queue must be of the source queue's type (FIFO or standard), {} is not",
            dlq.arn, source.arn
        )));
    }
    let dlq_client = client(sdk, &dlq);
    let dlq_url = queue_url(&dlq_client, &dlq).await?;
    let limiter = plan.rate.map(|r| RateLimiter::direct(Quota::per_second(r)));

    let mut summary = Summary::default();
    // Messages this run has already taken: a dry run sees them again only if the hold expired, a
    // real run only if their send failed; either way the run is over.
    let mut seen: HashSet<String> = HashSet::new();
    // Dry run: receipt handles to make visible again at the end.
    let mut held: Vec<String> = Vec::new();
    let result = loop {
        let want = next_batch(summary.moved + summary.failed, plan);
        let Some(want) = NonZeroU32::new(want) else {
            break Ok(());
        };
        // Wait before receiving, so that messages are held only while they are moved.
        if let Some(limiter) = &limiter {
            limiter
                .until_n_ready(want)
                .await
                .expect("a batch never exceeds the rate's burst");
        }
        let received = dlq_client
            .receive_message()
            .queue_url(&dlq_url)
            .max_number_of_messages(want.get() as i32)
            // A long poll (WaitTimeSeconds > 0) asks every SQS server, so an empty answer means an
            // empty queue; a short poll samples some servers and may answer empty while messages remain
            // (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html>).
            .wait_time_seconds(1)
            .visibility_timeout(HOLD.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                break Err(Error::Source(format!(
                    "{}: ReceiveMessage failed: {}",
                    dlq.arn,
                    DisplayErrorContext(&e)
                )));
            }
        };
        let fresh: Vec<Message> = messages
            .into_iter()
            .filter(|m| seen.insert(m.message_id().unwrap_or_default().to_owned()))
            .collect();
        if fresh.is_empty() {
            break Ok(());
        }
        if plan.dry_run {
            for m in &fresh {
                eprintln!(
                    "would move {} ({} bytes)",
                    m.message_id().unwrap_or_default(),
                    m.body().unwrap_or_default().len()
                );
                held.extend(m.receipt_handle().map(str::to_owned));
            }
            summary.moved += fresh.len() as u64;
            continue;
        }
        let (moved, failed) = move_batch(
            &dlq_client,
            &dlq_url,
            &source_client,
            &source_url,
            &fresh,
            fifo,
        )
        .await;
        summary.moved += moved;
        summary.failed += failed;
        eprintln!(
            "moved {} of {} (total moved {}, failed {})",
            moved,
            fresh.len(),
            summary.moved,
            summary.failed
        );
    };
    // A dry run leaves the dead-letter queue as it was: its messages visible again at once.
    for chunk in held.chunks(10) {
        let entries = chunk.iter().enumerate().map(|(i, handle)| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(handle)
                .visibility_timeout(0)
                .build()
                .expect("id and receipt handle are set")
        });
        let out = dlq_client
            .change_message_visibility_batch()
            .queue_url(&dlq_url)
            .set_entries(Some(entries.collect()))
            .send()
            .await;
        match out {
            Ok(out) if out.failed().is_empty() => {}
            Ok(out) => eprintln!(
                "{}: {} messages stay invisible until their hold of {HOLD:?} ends",
                dlq.arn,
                out.failed().len()
            ),
            Err(e) => eprintln!(
                "{}: ChangeMessageVisibilityBatch failed ({}); messages are visible again after {HOLD:?}",
                dlq.arn,
                DisplayErrorContext(&e)
            ),
        }
    }
    result.map(|()| summary)
}

/// Send `messages` to the source queue, then delete from the dead-letter queue exactly those whose
/// send succeeded. Returns (moved, failed).
async fn move_batch(
    dlq_client: &Client,
    dlq_url: &str,
    source_client: &Client,
    source_url: &str,
    messages: &[Message],
    fifo: bool,
) -> (u64, u64) {
    let mut entries = Vec::with_capacity(messages.len());
    let mut failed = 0;
    for (i, m) in messages.iter().enumerate() {
        match send_entry(i, m, fifo) {
            Ok(e) => entries.push(e),
            Err(e) => {
                eprintln!("not moved: {e}");
                failed += 1;
            }
        }
    }
    if entries.is_empty() {
        return (0, failed);
    }
    let sent: Vec<usize> = match source_client
        .send_message_batch()
        .queue_url(source_url)
        .set_entries(Some(entries.clone()))
        .send()
        .await
    {
        Ok(out) => {
            let failures: HashMap<&str, &str> = out
                .failed()
                .iter()
                .map(|f| (f.id(), f.message().unwrap_or(f.code())))
                .collect();
            for (id, why) in &failures {
                eprintln!(
                    "not moved: {}: {why}",
                    messages[id.parse::<usize>().expect("our ids are indexes")]
                        .message_id()
                        .unwrap_or_default()
                );
            }
            entries
                .iter()
                .map(|e| e.id())
                .filter(|id| !failures.contains_key(id))
                .map(|id| id.parse().expect("our ids are indexes"))
                .collect()
        }
        Err(e) => {
            eprintln!(
                "not moved: SendMessageBatch failed: {}",
                DisplayErrorContext(&e)
            );
            Vec::new()
        }
    };
    failed += (entries.len() - sent.len()) as u64;
    if sent.is_empty() {
        return (0, failed);
    }
    let deletes = sent.iter().map(|&i| {
        DeleteMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .receipt_handle(messages[i].receipt_handle().unwrap_or_default())
            .build()
            .expect("id and receipt handle are set")
    });
    let not_deleted = match dlq_client
        .delete_message_batch()
        .queue_url(dlq_url)
        .set_entries(Some(deletes.collect()))
        .send()
        .await
    {
        Ok(out) => out.failed().len(),
        Err(e) => {
            eprintln!("DeleteMessageBatch failed: {}", DisplayErrorContext(&e));
            sent.len()
        }
    };
    if not_deleted > 0 {
        eprintln!(
            "{not_deleted} messages are in the source queue and still in the dead-letter queue"
        );
    }
    (
        (sent.len() - not_deleted) as u64,
        failed + not_deleted as u64,
    )
}

/// `poller redrive`: print the counts; exit 0 when nothing failed, 1 otherwise or on bad input.
pub async fn run(args: crate::cli::RedriveArgs) -> std::process::ExitCode {
    let Some(mapping) = crate::one_mapping(&args.mapping, "redrive") else {
        return std::process::ExitCode::from(1);
    };
    let plan = Plan {
        from: args.from,
        count: args.count,
        rate: args.rate,
        dry_run: args.dry_run,
    };
    match redrive(&mapping, &plan, &args.aws.sdk_config().await).await {
        Ok(summary) => {
            let verb = if plan.dry_run { "would move" } else { "moved" };
            println!("{verb} {}, failed {}", summary.moved, summary.failed);
            std::process::ExitCode::from(u8::from(summary.failed > 0))
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(count: Option<u64>, rate: Option<u32>) -> Plan {
        Plan {
            from: None,
            count,
            rate: rate.and_then(NonZeroU32::new),
            dry_run: false,
        }
    }

    #[test]
    fn batches_respect_the_sqs_limit_the_count_and_the_rate() {
        assert_eq!(next_batch(0, &plan(None, None)), 10);
        assert_eq!(next_batch(7, &plan(Some(12), None)), 5);
        assert_eq!(next_batch(12, &plan(Some(12), None)), 0);
        assert_eq!(next_batch(0, &plan(None, Some(3))), 3);
        assert_eq!(next_batch(0, &plan(Some(2), Some(3))), 2);
    }

    #[test]
    fn dead_letter_target_comes_from_the_redrive_policy() {
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:dlq","maxReceiveCount":"3"}"#;
        assert_eq!(
            dead_letter_target(policy).unwrap(),
            "arn:aws:sqs:us-east-1:123456789012:dlq"
        );
        assert!(
            dead_letter_target(r#"{"maxReceiveCount":"3"}"#)
                .unwrap_err()
                .contains("deadLetterTargetArn")
        );
        assert!(dead_letter_target("nope").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn fifo_entries_keep_the_group_and_deduplicate_by_the_original_message_id() {
        let message = Message::builder()
            .message_id("m-1")
            .body("b")
            .attributes(MessageSystemAttributeName::MessageGroupId, "g")
            .build();
        let entry = send_entry(0, &message, true).unwrap();
        assert_eq!(entry.message_group_id(), Some("g"));
        assert_eq!(entry.message_deduplication_id(), Some("m-1"));
        let no_group = Message::builder().message_id("m-2").body("b").build();
        assert!(
            send_entry(0, &no_group, true)
                .unwrap_err()
                .contains("MessageGroupId")
        );
        assert_eq!(
            send_entry(0, &no_group, false).unwrap().message_group_id(),
            None
        );
    }
}
