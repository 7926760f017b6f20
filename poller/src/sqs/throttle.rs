//! What an SQS mapping does when an invoke does not reach the function: a throttle (429), a Lambda
//! service error (5xx), a transport failure.
//!
//! On AWS, Lambda retries a throttled batch with backoff until the messages' visibility timeout
//! ends, then lets them go (<https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html>).
//! Each time they come back counts as a receive, so with a redrive policy a message the function
//! never saw lands in the dead-letter queue after `maxReceiveCount` visibility timeouts
//! (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html>):
//! reserved concurrency 0 during a deployment, or a function at its concurrency limit, moves valid
//! messages to the DLQ. That is [`ThrottleMode::Aws`].
//!
//! [`ThrottleMode::Hold`], the default, keeps such a batch instead: its messages stay invisible (the
//! heartbeat extends them, so no receive is spent) and the invoke is retried with backoff for up to
//! `max_hold`; only function errors count toward `maxReceiveCount`. A batch held that long is let go
//! as on AWS and counted (`poller_sqs_throttle_releases_total`). Meanwhile the mapping's concurrent
//! invocations follow an AIMD limit ([`super::aimd`]) through a [`Gate`], so a function at its
//! capacity is not hammered with retries.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::aimd::Aimd;

/// How long a throttled batch is held at most, by default: long enough to ride out a deployment
/// that sets reserved concurrency to 0, or a burst of other functions using the account's
/// concurrency, yet short against the queue's retention (4 days by default, at least 1 minute).
pub const DEFAULT_MAX_HOLD: Duration = Duration::from_secs(15 * 60);
/// SQS refuses to extend a message's visibility beyond 12 hours from its receive
/// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html>):
/// no batch can be held longer.
pub const MAX_HOLD_LIMIT: Duration = Duration::from_secs(12 * 60 * 60);

/// How throttles and service errors are handled (`poller run --sqs-throttle-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleMode {
    /// As AWS: retry for up to one visibility timeout, then let the messages go (a receive spent).
    Aws,
    /// Hold the messages and retry for up to `max_hold` (then let go, as AWS), with AIMD concurrency.
    Hold { max_hold: Duration },
}

impl Default for ThrottleMode {
    fn default() -> ThrottleMode {
        ThrottleMode::Hold {
            max_hold: DEFAULT_MAX_HOLD,
        }
    }
}

/// What to do after an invoke that did not reach the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait the delay, then invoke again.
    Retry,
    /// Stop: the messages reappear when their visibility timeout ends, which counts a receive.
    LetGo,
    /// Held as long as allowed: let go as [`Next::LetGo`], and count the release.
    Release,
    /// Shutting down while holding: make the messages visible again at once.
    Abandon,
}

/// In hold mode, the longest wait between attempts of a held batch, whatever the target's
/// `Retry-After` says: the AIMD limit already slows the mapping down, and a held batch must use
/// freed capacity within seconds, not sit out a hostile or mistaken `Retry-After` (up to 300 s)
/// with its messages invisible.
pub const HOLD_RETRY_CEILING: Duration = Duration::from_secs(5);

impl ThrottleMode {
    /// How long to wait before the next attempt after `error`: the target's `Retry-After` if it gave
    /// one (in hold mode at most [`HOLD_RETRY_CEILING`]), else the next step of `backoff`.
    pub(crate) fn retry_delay(self, error: &lambda_invoke::Error, backoff: &mut crate::backoff::Backoff) -> Duration {
        match (self, error) {
            (ThrottleMode::Hold { .. }, lambda_invoke::Error::Throttled { retry_after: Some(d), .. }) => {
                (*d).min(HOLD_RETRY_CEILING)
            }
            (ThrottleMode::Aws, lambda_invoke::Error::Throttled { retry_after: Some(d), .. }) => *d,
            _ => backoff.next_delay(),
        }
    }

    /// After `error`, with the batch's first attempt `held_for` ago once the next delay is waited.
    pub fn next(
        self,
        error: &lambda_invoke::Error,
        held_for: Duration,
        visibility_timeout: Duration,
        shutting_down: bool,
    ) -> Next {
        if !error.is_retryable() {
            return Next::LetGo;
        }
        let did_not_run = matches!(error, lambda_invoke::Error::Throttled { .. } | lambda_invoke::Error::Service { .. });
        match self {
            ThrottleMode::Hold { max_hold } if did_not_run => {
                if shutting_down {
                    Next::Abandon
                } else if held_for > max_hold {
                    Next::Release
                } else {
                    Next::Retry
                }
            }
            // A transport failure may come after the function ran (a timeout): not held.
            _ if !shutting_down && held_for < visibility_timeout => Next::Retry,
            _ => Next::LetGo,
        }
    }
}

/// The AIMD limit shared by a mapping's lanes: an invoke waits for a slot ([`Gate::enter`]) and
/// reports how it went ([`Permit::finish`]).
#[derive(Debug)]
pub(super) struct Gate {
    aimd: Mutex<Aimd>,
    /// Signalled when a slot frees or the limit rises.
    freed: Notify,
}

impl Gate {
    pub(super) fn new(max: u32) -> Gate {
        Gate {
            aimd: Mutex::new(Aimd::new(max)),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Aimd> {
        // Every update is a few integer assignments: a panic cannot leave it half-done.
        self.aimd.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait until one more invocation may be in flight.
    pub(super) async fn enter(&self) -> Permit<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a slot freed in between is not missed.
            freed.as_mut().enable();
            if self.lock().try_start() {
                return Permit {
                    gate: self,
                    sent_at: Instant::now(),
                };
            }
            freed.await;
        }
    }
}

/// One invocation's slot; freed when dropped.
#[derive(Debug)]
pub(super) struct Permit<'a> {
    gate: &'a Gate,
    sent_at: Instant,
}

impl Permit<'_> {
    /// The invocation ended with `result`: a throttle lowers the limit, an invocation that reached
    /// the function (failed or not) counts toward raising it. Returns the new limit if it changed.
    pub(super) fn finish<T>(self, result: &Result<T, lambda_invoke::Error>) -> Option<u32> {
        let mut aimd = self.gate.lock();
        let changed = match result {
            Ok(_) => aimd.succeeded(),
            Err(lambda_invoke::Error::Throttled { .. }) => aimd.throttled(self.sent_at, Instant::now()),
            Err(_) => false,
        };
        changed.then(|| aimd.limit())
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.gate.lock().end();
        self.gate.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_batch_waits_at_most_the_ceiling_whatever_retry_after_says() {
        let throttled = |secs| lambda_invoke::Error::Throttled {
            reason: None,
            retry_after: Some(Duration::from_secs(secs)),
        };
        let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let hold = ThrottleMode::default();
        assert_eq!(hold.retry_delay(&throttled(300), &mut backoff), HOLD_RETRY_CEILING);
        assert_eq!(hold.retry_delay(&throttled(2), &mut backoff), Duration::from_secs(2));
        assert_eq!(ThrottleMode::Aws.retry_delay(&throttled(300), &mut backoff), Duration::from_secs(300));
        let drawn = hold.retry_delay(&throttle(), &mut backoff);
        assert!(drawn <= Duration::from_millis(100), "no Retry-After: the first backoff step, {drawn:?}");
    }

    fn throttle() -> lambda_invoke::Error {
        lambda_invoke::Error::Throttled {
            reason: Some("ReservedFunctionConcurrentInvocationLimitExceeded".into()),
            retry_after: None,
        }
    }

    fn service() -> lambda_invoke::Error {
        lambda_invoke::Error::Service {
            status: 502,
            code: "ResourceNotReadyException".into(),
            message: String::new(),
        }
    }

    #[test]
    fn aws_mode_retries_for_one_visibility_timeout() {
        let vt = Duration::from_secs(30);
        let s = Duration::from_secs;
        for error in [throttle(), service(), lambda_invoke::Error::Transport("reset".into())] {
            assert_eq!(ThrottleMode::Aws.next(&error, s(29), vt, false), Next::Retry);
            assert_eq!(ThrottleMode::Aws.next(&error, s(30), vt, false), Next::LetGo, "{error}");
            assert_eq!(ThrottleMode::Aws.next(&error, s(1), vt, true), Next::LetGo, "shutting down");
        }
    }

    #[test]
    fn hold_mode_holds_what_did_not_run_up_to_the_bound() {
        let vt = Duration::from_secs(3);
        let mode = ThrottleMode::Hold {
            max_hold: Duration::from_secs(60),
        };
        for error in [throttle(), service()] {
            assert_eq!(mode.next(&error, Duration::from_secs(59), vt, false), Next::Retry, "past the VT: {error}");
            assert_eq!(mode.next(&error, Duration::from_secs(61), vt, false), Next::Release);
            assert_eq!(mode.next(&error, Duration::from_secs(1), vt, true), Next::Abandon);
        }
        // A transport failure may come after the function ran: handled as on AWS.
        let transport = lambda_invoke::Error::Transport("timed out".into());
        assert_eq!(mode.next(&transport, Duration::from_secs(2), vt, false), Next::Retry);
        assert_eq!(mode.next(&transport, Duration::from_secs(4), vt, false), Next::LetGo);
    }

    #[test]
    fn client_errors_are_never_retried() {
        let rejected = lambda_invoke::Error::Client {
            status: 413,
            code: "RequestTooLargeException".into(),
            message: String::new(),
        };
        for mode in [ThrottleMode::Aws, ThrottleMode::default()] {
            assert_eq!(mode.next(&rejected, Duration::ZERO, Duration::from_secs(30), false), Next::LetGo);
        }
    }

    #[tokio::test]
    async fn the_gate_admits_up_to_the_limit_and_wakes_waiters() {
        let gate = std::sync::Arc::new(Gate::new(2));
        let a = gate.enter().await;
        let b = gate.enter().await;
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let permit = gate.enter().await;
                drop(permit);
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "two in flight, limit 2");
        // A throttle with two in flight lowers the limit to 1; freeing b leaves a alone in flight.
        assert_eq!(b.finish::<()>(&Err(throttle())), Some(1));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "limit 1, a still in flight");
        drop(a);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the waiter enters once a slot frees")
            .unwrap();
    }
}
