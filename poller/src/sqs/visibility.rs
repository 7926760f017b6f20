//! Keeping held messages invisible.
//!
//! A message is hidden for the queue's visibility timeout (VT) from the moment it is received. A batch can
//! be held longer than that: a batching window of up to 300 s, a slow function, throttle retries. AWS
//! stretches the effective timeout for this (esm-semantics.md §2.2); we extend each held message with
//! `ChangeMessageVisibility` before it would reappear, for as long as the poller holds it. When the poller
//! lets go of a failed message it simply stops extending it, so the message reappears within one VT, as
//! it would on AWS, and the queue's redrive policy counts the receive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The messages a mapping holds: receipt handle → when the message would become visible.
#[derive(Clone, Debug)]
pub(super) struct Held {
    visible_at: Arc<Mutex<HashMap<String, Instant>>>,
    timeout: Duration,
}

impl Held {
    pub(super) fn new(timeout: Duration) -> Held {
        Held {
            visible_at: Arc::default(),
            timeout,
        }
    }

    /// Start holding a message received at `received_at`.
    pub(super) fn hold(&self, receipt_handle: &str, received_at: Instant) {
        self.lock()
            .insert(receipt_handle.to_owned(), received_at + self.timeout);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts/removes).
        self.visible_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How often to look for messages to extend: often enough that a message is extended at least twice
    /// per timeout, never busier than 5 per second.
    fn tick(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// Receipt handles whose invisibility ends within half a timeout plus a tick; marks them extended.
    fn due(&self, now: Instant) -> Vec<String> {
        let horizon = now + self.timeout / 2 + self.tick();
        let mut map = self.lock();
        let mut due = Vec::new();
        for (handle, at) in map.iter_mut() {
            if *at <= horizon {
                *at = now + self.timeout;
                due.push(handle.clone());
            }
        }
        due
    }

    /// Extend held messages until `cancel` fires.
    pub(super) async fn run(
        self,
        client: aws_sdk_sqs::Client,
        queue_url: String,
        cancel: CancellationToken,
    ) {
        if self.timeout.is_zero() {
            tracing::warn!(%queue_url, "queue visibility timeout is 0: held messages cannot be kept invisible");
            return;
        }
        let timeout_secs = i32::try_from(self.timeout.as_secs()).unwrap_or(i32::MAX);
        let mut ticker = tokio::time::interval(self.tick());
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = cancel.cancelled() => return,
            }
            for chunk in self.due(Instant::now()).chunks(10) {
                let entries = chunk.iter().enumerate().map(|(i, handle)| {
                    aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(timeout_secs)
                        .build()
                        .expect("id and receipt handle are set")
                });
                let result = client
                    .change_message_visibility_batch()
                    .queue_url(&queue_url)
                    .set_entries(Some(entries.collect()))
                    .send()
                    .await;
                match result {
                    Ok(out) if !out.failed().is_empty() => {
                        // Usually a message deleted between `due` and the call: nothing to do.
                        tracing::debug!(failed = out.failed().len(), "some visibility extensions failed");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        error = %aws_sdk_sqs::error::DisplayErrorContext(&e),
                        "extending message visibility failed; will retry"
                    ),
                }
            }
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
        held.hold("old", t0);
        held.hold("new", t0 + Duration::from_secs(20));
        // At t0+5: "old" reappears at +30, horizon is 5+15+5=25 → not due yet.
        assert!(held.due(t0 + Duration::from_secs(5)).is_empty());
        // At t0+12: horizon 32 → "old" due, "new" (at 50) not.
        assert_eq!(held.due(t0 + Duration::from_secs(12)), vec!["old".to_owned()]);
        // Just extended: not due again right away.
        assert!(held.due(t0 + Duration::from_secs(13)).is_empty());
        held.release(["old", "new"]);
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn tick_is_bounded() {
        assert_eq!(Held::new(Duration::from_secs(1)).tick(), Duration::from_millis(250));
        assert_eq!(Held::new(Duration::from_secs(0)).tick(), Duration::from_millis(200));
        assert_eq!(Held::new(Duration::from_secs(43200)).tick(), Duration::from_secs(5));
    }
}
