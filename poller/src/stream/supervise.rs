//! When a failed shard worker may start again.
//!
//! A shard worker that panics or stops on an error it cannot get past (the lease store refused a
//! write) must not leave its shard unread: the mapping starts it again from its stored checkpoint,
//! after a per-shard backoff so a persistent fault does not spin. The delay doubles from 1 s to
//! 60 s with each failure in a row; a worker that ran longer than the longest delay before failing
//! starts the count again, as does a worker that ends normally.

use std::collections::HashMap;
use std::time::Duration;

use esm_stream::retry::Backoff;
use tokio::time::Instant;

/// Restart delays of failed shard workers.
const RESTART_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

/// Per-shard restart bookkeeping of one mapping.
#[derive(Debug, Default)]
pub(super) struct Restarts {
    shards: HashMap<String, Failures>,
}

#[derive(Debug)]
struct Failures {
    in_a_row: u32,
    not_before: Instant,
}

impl Restarts {
    /// The worker of `shard_id` failed at `now` after running for `ran_for`; returns how long it
    /// waits before it may start again.
    pub(super) fn failed(&mut self, shard_id: &str, ran_for: Duration, now: Instant) -> Duration {
        let entry = self.shards.entry(shard_id.to_owned()).or_insert(Failures {
            in_a_row: 0,
            not_before: now,
        });
        entry.in_a_row = if ran_for >= RESTART_BACKOFF.max { 1 } else { entry.in_a_row + 1 };
        let delay = RESTART_BACKOFF.delay(entry.in_a_row);
        entry.not_before = now + delay;
        delay
    }

    /// The worker of `shard_id` ended without failing.
    pub(super) fn ended(&mut self, shard_id: &str) {
        self.shards.remove(shard_id);
    }

    /// May a worker for `shard_id` start at `now`?
    pub(super) fn may_start(&self, shard_id: &str, now: Instant) -> bool {
        self.shards.get(shard_id).is_none_or(|f| now >= f.not_before)
    }

    /// The earliest time a waiting shard may start again, if one is waiting.
    pub(super) fn next_due(&self, now: Instant) -> Option<Instant> {
        self.shards.values().map(|f| f.not_before).filter(|t| *t > now).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn failures_in_a_row_back_off_to_a_minute() {
        let mut restarts = Restarts::default();
        let t0 = Instant::now();
        assert!(restarts.may_start("a", t0));
        let delays: Vec<u64> = (0..8).map(|_| restarts.failed("a", S, t0).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert!(!restarts.may_start("a", t0 + 59 * S));
        assert!(restarts.may_start("a", t0 + 60 * S));
        assert!(restarts.may_start("b", t0), "other shards are not held back");
        assert_eq!(restarts.next_due(t0), Some(t0 + 60 * S));
        assert_eq!(restarts.next_due(t0 + 60 * S), None, "nothing waits any more");
    }

    #[test]
    fn a_long_run_or_a_normal_end_starts_the_count_again() {
        let mut restarts = Restarts::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            restarts.failed("a", S, t0);
        }
        assert_eq!(restarts.failed("a", 60 * S, t0), S, "ran a minute: first failure again");
        restarts.failed("a", S, t0);
        restarts.ended("a");
        assert!(restarts.may_start("a", t0));
        assert_eq!(restarts.failed("a", S, t0), S);
    }
}
