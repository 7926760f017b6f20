//! Keeping held messages invisible.
//!
//! A message is hidden for the queue's visibility timeout (VT) from the moment it is received. A batch can
//! be held longer than that: a batching window of up to 300 s, a slow function, throttle retries. AWS
//! stretches the effective timeout for this
//! (<https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html>); we extend each held message with
//! `ChangeMessageVisibility` before it would reappear, for as long as the poller holds it. When the poller
//! lets go of a failed message it simply stops extending it, so the message reappears within one VT, as
//! it would on AWS, and the queue's redrive policy counts the receive.
//!
//! Each held message remembers the lane (task) that holds it, so that the messages of a lane that failed
//! can be found and made visible again at once ([`Held::release_lane`], [`reveal`]) instead of staying
//! hidden for a visibility timeout that nobody extends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::Id as LaneId;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::SqsClient;

/// One held message: when it would become visible, and the lane holding it.
#[derive(Clone, Copy, Debug)]
struct Hold {
    visible_at: Instant,
    lane: Option<LaneId>,
}

/// Held messages by receipt handle. Hashed with foldhash rather than SipHash: a receipt handle is
/// long (hundreds of characters) and hashed on every hold and release, and it comes from SQS, not
/// from someone who could choose keys to collide (3 % of the poller's instructions per record on
/// the SQS benchmark; docs/benchmarks.md, "SQS: seventh round").
type Holds = HashMap<Arc<str>, Hold, foldhash::fast::RandomState>;

/// The messages a mapping holds, by receipt handle.
#[derive(Clone, Debug)]
pub(super) struct Held {
    visible_at: Arc<Mutex<Holds>>,
    timeout: Duration,
}

impl Held {
    pub(super) fn new(timeout: Duration) -> Held {
        Held {
            visible_at: Arc::default(),
            timeout,
        }
    }

    /// Start holding a message received at `received_at`, for the lane (task) calling this.
    pub(super) fn hold(&self, receipt_handle: &Arc<str>, received_at: Instant) {
        let hold = Hold {
            visible_at: received_at + self.timeout,
            lane: tokio::task::try_id(),
        };
        self.lock().insert(Arc::clone(receipt_handle), hold);
    }

    /// Stop holding every message `lane` held (it failed); returns their receipt handles.
    pub(super) fn release_lane(&self, lane: LaneId) -> Vec<Arc<str>> {
        let mut map = self.lock();
        let handles: Vec<Arc<str>> =
            map.iter().filter(|(_, h)| h.lane == Some(lane)).map(|(handle, _)| handle.clone()).collect();
        for handle in &handles {
            map.remove(handle);
        }
        handles
    }

    /// Stop holding messages (deleted, or left to reappear).
    pub(super) fn release<'a>(&self, receipt_handles: impl IntoIterator<Item = &'a str>) {
        let mut map = self.lock();
        for h in receipt_handles {
            map.remove(h);
        }
    }

    /// How many messages are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Holds> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts/removes).
        self.visible_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How often to look for messages to extend: often enough that a message is extended at least twice
    /// per timeout, never busier than 5 per second.
    fn tick(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// Receipt handles whose invisibility ends within half a timeout plus a tick; marks them extended.
    fn due(&self, now: Instant) -> Vec<Arc<str>> {
        let horizon = now + self.timeout / 2 + self.tick();
        let mut map = self.lock();
        let mut due = Vec::new();
        for (handle, hold) in map.iter_mut() {
            if hold.visible_at <= horizon {
                hold.visible_at = now + self.timeout;
                due.push(handle.clone());
            }
        }
        due
    }

    /// Extend held messages until `cancel` fires.
    pub(super) async fn run(self, client: Arc<SqsClient>, cancel: CancellationToken) {
        if self.timeout.is_zero() {
            tracing::warn!("queue visibility timeout is 0: held messages cannot be kept invisible");
            return;
        }
        let timeout_secs = i32::try_from(self.timeout.as_secs()).unwrap_or(i32::MAX);
        let mut ticker = tokio::time::interval(self.tick());
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = cancel.cancelled() => return,
            }
            let due = self.due(Instant::now());
            change_visibility(&client, &due, timeout_secs, "extending message visibility").await;
        }
    }
}

/// Make messages visible again now (`ChangeMessageVisibility` 0), in the order given: messages the poller
/// received but will not invoke (their lane failed, or an earlier FIFO message of their group failed).
pub(crate) async fn reveal(client: &SqsClient, receipt_handles: &[impl AsRef<str>]) {
    change_visibility(client, receipt_handles, 0, "releasing messages").await;
}

/// `ChangeMessageVisibilityBatch` for `receipt_handles`, 10 per call. Failures are logged only: a message
/// whose visibility was not changed still reappears when its current timeout ends.
async fn change_visibility(client: &SqsClient, receipt_handles: &[impl AsRef<str>], timeout_secs: i32, what: &str) {
    for chunk in receipt_handles.chunks(10) {
        match client.change_visibility_batch(chunk, timeout_secs).await {
            Ok(out) if !out.failed.is_empty() => {
                // Usually a message deleted meanwhile: nothing to do.
                tracing::debug!(failed = out.failed.len(), "{what}: some visibility changes failed");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "{what} failed (ChangeMessageVisibilityBatch); the messages reappear when their visibility timeout ends"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_only_messages_close_to_reappearing() {
        let held = Held::new(Duration::from_secs(30));
        let t0 = Instant::now();
        held.hold(&"old".into(), t0);
        held.hold(&"new".into(), t0 + Duration::from_secs(20));
        // At t0+5: "old" reappears at +30, horizon is 5+15+5=25 → not due yet.
        assert!(held.due(t0 + Duration::from_secs(5)).is_empty());
        // At t0+12: horizon 32 → "old" due, "new" (at 50) not.
        assert_eq!(held.due(t0 + Duration::from_secs(12)), vec![Arc::from("old")]);
        // Just extended: not due again right away.
        assert!(held.due(t0 + Duration::from_secs(13)).is_empty());
        held.release(["old", "new"]);
        assert_eq!(held.len(), 0);
    }

    #[tokio::test]
    async fn a_failed_lanes_messages_are_found_by_its_task_id() {
        let held = Held::new(Duration::from_secs(30));
        let lane = {
            let held = held.clone();
            tokio::spawn(async move {
                held.hold(&"a".into(), Instant::now());
                held.hold(&"b".into(), Instant::now());
                tokio::task::id()
            })
        }
        .await
        .unwrap();
        held.hold(&"other lane".into(), Instant::now());
        let mut released = held.release_lane(lane);
        released.sort();
        assert_eq!(released, [Arc::from("a"), Arc::from("b")]);
        assert_eq!(held.len(), 1, "the other lane's message is still held");
        assert!(held.release_lane(lane).is_empty());
    }

    #[test]
    fn tick_is_bounded() {
        assert_eq!(Held::new(Duration::from_secs(1)).tick(), Duration::from_millis(250));
        assert_eq!(Held::new(Duration::from_secs(0)).tick(), Duration::from_millis(200));
        assert_eq!(Held::new(Duration::from_secs(43200)).tick(), Duration::from_secs(5));
    }
}
