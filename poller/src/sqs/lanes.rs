//! The lanes of an SQS mapping, supervised: a lane never dies for good.
//!
//! A lane that fails (a panic is the only way a lane future ends abnormally) is reported with its task id,
//! so that the caller can release the messages it held at once, count the failure and restart it; the
//! restart waits a backoff delay so that a lane failing on every batch does not spin.

use std::future::Future;
use std::time::Duration;

use tokio::task::{Id as LaneId, JoinError, JoinSet};

use crate::backoff::Backoff;

/// How a lane ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// It returned: shutdown, or fewer lanes wanted.
    Normally,
    /// It panicked (or was aborted): `lane` is its task id, `reason` the panic message.
    Failed { lane: LaneId, reason: String },
}

/// Running lanes and the backoff for restarting failed ones.
pub(super) struct Lanes {
    set: JoinSet<()>,
    restarts: Backoff,
}

impl Lanes {
    pub(super) fn new() -> Lanes {
        Lanes {
            set: JoinSet::new(),
            restarts: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
        }
    }

    pub(super) fn spawn(&mut self, lane: impl Future<Output = ()> + Send + 'static) {
        self.set.spawn(lane);
    }

    /// Start `lane` in place of one that failed, after the next backoff delay. Returns the delay.
    pub(super) fn restart(&mut self, lane: impl Future<Output = ()> + Send + 'static) -> Duration {
        let delay = self.restarts.next_delay();
        self.set.spawn(async move {
            tokio::time::sleep(delay).await;
            lane.await
        });
        delay
    }

    /// The next lane to end; `None` when none is left.
    pub(super) async fn next(&mut self) -> Option<Ended> {
        Some(match self.set.join_next_with_id().await? {
            Ok(_) => Ended::Normally,
            Err(e) => Ended::Failed {
                lane: e.id(),
                reason: failure_reason(e),
            },
        })
    }
}

/// "lane panicked: MESSAGE", or why else the task ended.
fn failure_reason(e: JoinError) -> String {
    if !e.is_panic() {
        return format!("lane ended: {e}");
    }
    format!("lane panicked: {}", crate::panic::panic_message(e.into_panic().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_panicking_lane_is_reported_with_its_id_and_restarted() {
        let runs = Arc::new(AtomicU32::new(0));
        let (id_tx, mut id_rx) = tokio::sync::mpsc::unbounded_channel();
        let lane = {
            let runs = runs.clone();
            move || {
                let runs = runs.clone();
                let id_tx = id_tx.clone();
                async move {
                    id_tx.send(tokio::task::id()).unwrap();
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("overflow when adding durations");
                    }
                }
            }
        };
        let mut lanes = Lanes::new();
        lanes.spawn(lane());
        let first_id = id_rx.recv().await.unwrap();
        assert_eq!(
            lanes.next().await,
            Some(Ended::Failed {
                lane: first_id,
                reason: "lane panicked: overflow when adding durations".to_owned()
            })
        );
        let delay = lanes.restart(lane());
        assert!(delay <= Duration::from_millis(500), "{delay:?}");
        assert_eq!(lanes.next().await, Some(Ended::Normally), "the restarted lane ran to its end");
        assert_ne!(id_rx.recv().await.unwrap(), first_id, "a new task");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(lanes.next().await, None);
    }

    #[tokio::test]
    async fn a_formatted_panic_message_is_kept() {
        let mut lanes = Lanes::new();
        lanes.spawn(async { panic!("bad {}", 42) });
        let Some(Ended::Failed { reason, .. }) = lanes.next().await else { panic!("expected a failure") };
        assert_eq!(reason, "lane panicked: bad 42");
    }
}
