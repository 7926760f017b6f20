//! Exponential backoff with full jitter, for retries that do not count as attempts (throttles, service
//! errors, failed polls), and the streak of failures that such retries report.

use std::time::{Duration, Instant};

/// Delays that double from `base` up to `cap`, each drawn uniformly from `[0, current]` ("full jitter",
/// so that many lanes throttled together do not retry together).
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            current: base,
        }
    }

    /// The next delay.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.current;
        self.current = (self.current * 2).min(self.cap);
        ceiling.mul_f64(rand::random::<f64>()).max(self.base / 2)
    }

    /// Back to the first delay, after a success.
    pub(crate) fn reset(&mut self) {
        self.current = self.base;
    }
}

/// How loudly to report one failure of a streak (see [`FailureStreak`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Report {
    /// Not logged: the streak was reported less than [`FailureStreak::every`] ago.
    Quiet,
    /// A warning: the streak is new, or still young.
    Warn,
    /// An error: failures have persisted for [`FailureStreak::persistent`].
    Error,
}

/// Consecutive failures of one kind of call (a shard's reads), so that they are visible without
/// flooding the log: the first failure of a streak is a warning, later ones are reported at most
/// once per `every`, as errors once the streak has lasted `persistent`. A success ends the streak.
#[derive(Clone, Debug)]
pub(crate) struct FailureStreak {
    every: Duration,
    persistent: Duration,
    /// Failures in the streak, when it began, and when it was last reported.
    current: Option<(u64, Instant, Instant)>,
}

impl FailureStreak {
    pub(crate) fn new(every: Duration, persistent: Duration) -> FailureStreak {
        FailureStreak {
            every,
            persistent,
            current: None,
        }
    }

    /// A failure at `now`: how to report it.
    pub(crate) fn failed(&mut self, now: Instant) -> Report {
        let Some((count, began, reported)) = &mut self.current else {
            self.current = Some((1, now, now));
            return Report::Warn;
        };
        *count += 1;
        if now.saturating_duration_since(*reported) < self.every {
            return Report::Quiet;
        }
        *reported = now;
        if now.saturating_duration_since(*began) >= self.persistent {
            Report::Error
        } else {
            Report::Warn
        }
    }

    /// A success: ends the streak, returning its failure count and duration if there was one.
    pub(crate) fn succeeded(&mut self, now: Instant) -> Option<(u64, Duration)> {
        let (count, began, _) = self.current.take()?;
        Some((count, now.saturating_duration_since(began)))
    }

    /// Failures in the current streak (0 when there is none).
    pub(crate) fn count(&self) -> u64 {
        self.current.map_or(0, |(count, _, _)| count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_warns_once_then_is_rate_limited_and_escalates() {
        let (every, persistent) = (Duration::from_secs(10), Duration::from_secs(60));
        let mut streak = FailureStreak::new(every, persistent);
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(streak.failed(at(0)), Report::Warn, "the first failure is always seen");
        assert_eq!(streak.failed(at(1)), Report::Quiet);
        assert_eq!(streak.failed(at(9)), Report::Quiet);
        assert_eq!(streak.failed(at(10)), Report::Warn, "once per `every`");
        assert_eq!(streak.failed(at(15)), Report::Quiet);
        assert_eq!(streak.failed(at(60)), Report::Error, "persisting for `persistent`");
        assert_eq!(streak.failed(at(61)), Report::Quiet, "errors are rate-limited too");
        assert_eq!(streak.count(), 7);
        assert_eq!(streak.succeeded(at(62)), Some((7, Duration::from_secs(62))));
        assert_eq!(streak.succeeded(at(63)), None, "no streak, nothing to report");
        assert_eq!(streak.count(), 0);
        assert_eq!(streak.failed(at(64)), Report::Warn, "a new streak warns at once");
    }

    #[test]
    fn delays_grow_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(50) && *d <= Duration::from_secs(1)));
        assert_eq!(b.current, Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
