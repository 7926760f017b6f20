//! End to end for `Event` invocations. Lambda's 202 only says the event was queued; when it has
//! run, Lambda sends an invocation record to the function's destination, carrying the request id
//! of the 202 (`requestContext.requestId`) and the time the invocation finished (`timestamp`).
//! After the run, the records are collected from the destination queue and matched to the
//! requests sent, for the end-to-end latency: send → `timestamp`.
//! <https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html>
//!
//! `timestamp` rather than the time a record is received: the record waits in the queue until
//! it is collected (after the run), so only `timestamp` says when the function finished. It has
//! millisecond resolution, so the send time is taken in whole milliseconds too: the difference is
//! then never below the true duration's whole milliseconds. It is Lambda's clock against the
//! generator's, so it assumes both keep time (NTP); a record stamped before its send counts as 0.
//!
//! The matching is pure ([`Matcher`]); [`collect`] polls the queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use lambda_invoke::Response;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::stats::histogram;
use crate::Error;
use crate::plan::DestinationPlan;
use crate::sqs::{Message, Sqs};

/// An `Event` invocation Lambda accepted (202).
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// `X-Amzn-RequestId` of the 202.
    pub request_id: String,
    /// Wall-clock time the request went out.
    pub sent_at: SystemTime,
    /// Send → 202.
    pub enqueue: Duration,
}

impl Accepted {
    /// The accepted invocation `response` answers, sent at `sent_at` and answered after
    /// `enqueue`; `None` unless it is a 202 with a request id.
    pub fn of(response: &Response, sent_at: SystemTime, enqueue: Duration) -> Option<Accepted> {
        (response.status == 202).then_some(())?;
        Some(Accepted {
            request_id: response.request_id.clone()?,
            sent_at,
            enqueue,
        })
    }
}

/// The members of an invocation record used here.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub request_id: String,
    /// `Success`, `RetriesExhausted`, `EventAgeExceeded`, ….
    pub condition: String,
    /// When the invocation finished.
    pub timestamp: SystemTime,
}

impl Record {
    /// Reads an SQS message body; `None` when it is not an invocation record.
    pub fn parse(body: &str) -> Option<Record> {
        let value: Value = serde_json::from_str(body).ok()?;
        let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
        Some(Record {
            request_id: text("/requestContext/requestId")?.to_owned(),
            condition: text("/requestContext/condition")?.to_owned(),
            timestamp: humantime::parse_rfc3339(text("/timestamp")?).ok()?,
        })
    }
}

/// What the destination queue said about a run's `Event` invocations.
#[derive(Debug, Clone, PartialEq)]
pub struct EndToEnd {
    pub queue_url: String,
    /// Invocations accepted (202 with a request id).
    pub accepted: u64,
    /// Of those, matched to a record.
    pub completed: u64,
    /// Accepted, but no record arrived within the grace period.
    pub not_completed: u64,
    /// Matched records by `requestContext.condition`.
    pub conditions: BTreeMap<String, u64>,
    /// Records seen again for a request already matched (SQS delivers at least once).
    pub duplicates: u64,
    /// Messages that are no record of this run (left in the queue).
    pub foreign: u64,
    /// Send → 202, of every accepted invocation (µs).
    pub enqueue: Histogram<u64>,
    /// Send → the record's `timestamp`, of every matched invocation (µs).
    pub end_to_end: Histogram<u64>,
}

/// Matches records to accepted invocations.
#[derive(Debug)]
pub struct Matcher {
    pending: HashMap<String, Accepted>,
    matched: HashSet<String>,
    result: EndToEnd,
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A record of this run (first or duplicate): delete it.
    Ours,
    /// Something else: leave it for whoever it belongs to.
    Foreign,
}

impl Matcher {
    pub fn new(queue_url: &str, accepted: Vec<Accepted>) -> Matcher {
        let mut enqueue = histogram();
        for a in &accepted {
            enqueue.saturating_record(micros(a.enqueue));
        }
        Matcher {
            result: EndToEnd {
                queue_url: queue_url.to_owned(),
                accepted: accepted.len() as u64,
                completed: 0,
                not_completed: 0,
                conditions: BTreeMap::new(),
                duplicates: 0,
                foreign: 0,
                enqueue,
                end_to_end: histogram(),
            },
            pending: accepted
                .into_iter()
                .map(|a| (a.request_id.clone(), a))
                .collect(),
            matched: HashSet::new(),
        }
    }

    /// Takes one message body.
    pub fn offer(&mut self, body: &str) -> Verdict {
        let Some(record) = Record::parse(body) else {
            self.result.foreign += 1;
            return Verdict::Foreign;
        };
        if let Some(accepted) = self.pending.remove(&record.request_id) {
            let r = &mut self.result;
            r.completed += 1;
            *r.conditions.entry(record.condition).or_default() += 1;
            r.end_to_end.saturating_record(
                end_to_end(accepted.sent_at, record.timestamp).as_micros() as u64,
            );
            self.matched.insert(record.request_id);
            Verdict::Ours
        } else if self.matched.contains(&record.request_id) {
            self.result.duplicates += 1;
            Verdict::Ours
        } else {
            self.result.foreign += 1;
            Verdict::Foreign
        }
    }

    /// Every accepted invocation has its record.
    pub fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn finish(mut self) -> EndToEnd {
        self.result.not_completed = self.pending.len() as u64;
        self.result
    }
}

/// Send → finish, both in whole milliseconds since the epoch (the record's resolution); 0 when the
/// record is stamped before the send (clock skew).
fn end_to_end(sent_at: SystemTime, finished: SystemTime) -> Duration {
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    };
    let diff = ms(finished).saturating_sub(ms(sent_at));
    Duration::from_millis(u64::try_from(diff).unwrap_or(u64::MAX))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// ReceiveMessage calls in flight at once. One call returns at most ten messages, so one caller
/// alone would take minutes over the records of a run of many thousands of `Event` invocations.
const RECEIVERS: usize = 8;

/// Collects the records of `accepted` from the destination queue (ReceiveMessage long polls,
/// DeleteMessageBatch of this run's records) until every one is in, `grace` has passed since now,
/// or `stop` is cancelled (then after one look at the queue). `region` signs the calls (else the
/// environment's, else `us-east-1`).
pub async fn collect(
    plan: &DestinationPlan,
    region: Option<&str>,
    accepted: Vec<Accepted>,
    stop: &CancellationToken,
) -> Result<EndToEnd, Error> {
    let deadline = Instant::now() + plan.grace;
    let mut matcher = Matcher::new(&plan.queue_url, accepted);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let region = region
        .map(str::to_owned)
        .or_else(|| sdk.region().map(|r| r.to_string()))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let sqs = Sqs::new(&sdk, &region)
        .map_err(|e| Error::Target(format!("target.destination_queue: {e}")))?;
    // One call first, alone: a queue that cannot be read at all is the user's to fix.
    let first = sqs
        .receive(&plan.queue_url, 0)
        .await
        .map_err(|e| Error::Target(format!("target.destination_queue {}: {e}", plan.queue_url)))?;
    let ours = take(&mut matcher, &first);
    delete(&sqs, &plan.queue_url, &ours).await;
    if matcher.is_done() {
        return Ok(matcher.finish());
    }
    let shared = Arc::new(Receivers {
        sqs,
        queue_url: plan.queue_url.clone(),
        matcher: Mutex::new(matcher),
        done: stop.child_token(),
        deadline,
    });
    let mut receivers = JoinSet::new();
    for _ in 0..RECEIVERS {
        receivers.spawn(Arc::clone(&shared).receive());
    }
    // A receiver only ends by returning (a panic is passed on).
    while let Some(joined) = receivers.join_next().await {
        joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
    let shared = Arc::into_inner(shared).expect("every receiver has ended");
    Ok(shared
        .matcher
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .finish())
}

/// What the receivers share.
struct Receivers {
    sqs: Sqs,
    queue_url: String,
    matcher: Mutex<Matcher>,
    /// Cancelled when every record is in (or on `stop`), so that receivers in a long poll stop
    /// at once.
    done: CancellationToken,
    deadline: Instant,
}

impl Receivers {
    /// Receives and deletes until every record is in or the deadline passes.
    async fn receive(self: Arc<Self>) {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.done.is_cancelled() {
                return;
            }
            let received = tokio::select! {
                received = self.sqs.receive(&self.queue_url, left.as_secs()) => received,
                () = self.done.cancelled() => return,
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!(error = %e, "destination queue: ReceiveMessage failed; trying again");
                    crate::timer::sleep_until(Instant::now() + Duration::from_secs(1).min(left))
                        .await;
                    continue;
                }
            };
            let ours = {
                let mut matcher = self.matcher.lock().unwrap_or_else(|p| p.into_inner());
                let ours = take(&mut matcher, &messages);
                if matcher.is_done() {
                    self.done.cancel();
                }
                ours
            };
            delete(&self.sqs, &self.queue_url, &ours).await;
        }
    }
}

/// Offers `messages` to `matcher`; returns the receipt handles of this run's records.
fn take(matcher: &mut Matcher, messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| matcher.offer(&m.body) == Verdict::Ours)
        .map(|m| m.receipt_handle.clone())
        .collect()
}

/// Deletes this run's records. Those not deleted come back and count as duplicates.
async fn delete(sqs: &Sqs, queue_url: &str, receipt_handles: &[String]) {
    if receipt_handles.is_empty() {
        return;
    }
    let handles: Vec<&str> = receipt_handles.iter().map(String::as_str).collect();
    if let Err(e) = sqs.delete_batch(queue_url, &handles).await {
        tracing::warn!(error = %e, "destination queue: DeleteMessageBatch failed");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_micros(ms * 1000 + 700)
    }

    fn accepted(id: &str, sent_ms: u64, enqueue_ms: u64) -> Accepted {
        Accepted {
            request_id: id.to_owned(),
            sent_at: at(sent_ms),
            enqueue: Duration::from_millis(enqueue_ms),
        }
    }

    fn record(id: &str, condition: &str, finished: &str) -> String {
        json!({
            "version": "1.0",
            "timestamp": finished,
            "requestContext": {"requestId": id, "functionArn": "arn", "condition": condition, "approximateInvokeCount": 1},
            "requestPayload": {},
        })
        .to_string()
    }

    #[test]
    fn records_match_by_request_id_and_time_from_send_to_timestamp() {
        // Sent at 1 000 ms (and 0.7 ms) after the epoch.
        let mut m = Matcher::new(
            "q",
            vec![
                accepted("a", 1_000, 2),
                accepted("b", 1_000, 3),
                accepted("c", 1_000, 4),
            ],
        );
        assert_eq!(
            m.offer(&record("a", "Success", "1970-01-01T00:00:01.020Z")),
            Verdict::Ours
        );
        assert_eq!(
            m.offer(&record("b", "RetriesExhausted", "1970-01-01T00:00:03.000Z")),
            Verdict::Ours
        );
        assert_eq!(
            m.offer(&record("a", "Success", "1970-01-01T00:00:01.020Z")),
            Verdict::Ours
        );
        assert_eq!(
            m.offer(&record("z", "Success", "1970-01-01T00:00:01.020Z")),
            Verdict::Foreign
        );
        assert_eq!(m.offer("not a record"), Verdict::Foreign);
        assert!(!m.is_done());
        let r = m.finish();
        assert_eq!((r.accepted, r.completed, r.not_completed), (3, 2, 1));
        assert_eq!((r.duplicates, r.foreign), (1, 2));
        assert_eq!(
            r.conditions,
            BTreeMap::from([
                ("RetriesExhausted".to_owned(), 1),
                ("Success".to_owned(), 1)
            ])
        );
        assert_eq!(r.enqueue.len(), 3);
        assert_eq!(r.end_to_end.len(), 2);
        // 1 000.7 → 1 020: counted in whole ms, 20 ms (never below the true 19.3 ms' whole ms).
        assert_eq!(r.end_to_end.min(), 20_000);
        // 1 000.7 → 3 000: 2 000 ms.
        assert!(r.end_to_end.equivalent(r.end_to_end.max(), 2_000_000));
    }

    #[test]
    fn a_record_stamped_before_its_send_counts_as_zero() {
        assert_eq!(end_to_end(at(1_000), at(990)), Duration::ZERO);
        assert_eq!(end_to_end(at(1_000), at(1_000)), Duration::ZERO);
    }

    #[test]
    fn only_a_202_with_a_request_id_is_accepted() {
        let response = |status, id: Option<&str>| Response {
            status,
            function_error: None,
            payload: Vec::new(),
            executed_version: None,
            log_tail: None,
            request_id: id.map(str::to_owned),
        };
        let sent = at(5);
        let enqueue = Duration::from_millis(1);
        assert_eq!(
            Accepted::of(&response(202, Some("r")), sent, enqueue),
            Some(Accepted {
                request_id: "r".to_owned(),
                sent_at: sent,
                enqueue
            })
        );
        assert_eq!(Accepted::of(&response(202, None), sent, enqueue), None);
        assert_eq!(Accepted::of(&response(200, Some("r")), sent, enqueue), None);
    }
}
