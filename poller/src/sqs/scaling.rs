//! How many polling lanes an SQS mapping runs: one lane = one batch in flight.
//!
//! AWS starts 5 concurrent batches when messages appear, adds up to 300 per minute
//! while messages remain, caps at 1,000 per mapping (or `ScalingConfig.MaximumConcurrency`), and drops
//! back toward 2 when traffic is low; throttles and errors lower concurrency
//! (<https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html>). This module makes those
//! decisions; lanes report what they saw. Time is passed in.
//!
//! The backlog signal is a receive that returned every message it asked for: the queue had at least that
//! many. It holds for every `BatchSize` — a lane with `BatchSize` 1 asks for one message at a time, so
//! "a full receive of 10" would never happen there and such a mapping would stay at 5 lanes.
//!
//! When the function throttles, the concurrency limit of [`super::aimd`] is the ceiling: lanes beyond
//! it stop once their batch is done, and no lane is added above it, so the mapping does not receive
//! (and hold) more messages than the function can take.

use std::time::Instant;

/// Lanes a mapping starts with (AWS starts five pollers).
pub const INITIAL_LANES: u32 = 5;
/// Lanes an idle mapping keeps.
pub const MIN_LANES: u32 = 2;
/// AWS's ceiling on concurrent batches per SQS mapping.
pub const MAX_LANES: u32 = 1000;
/// Scale-up rate: 300 new lanes per minute.
const LANES_PER_SECOND: f64 = 300.0 / 60.0;

/// The lane count and the budget for adding more.
#[derive(Debug)]
pub struct Scaler {
    lanes: u32,
    min: u32,
    max: u32,
    /// At most `max`: the AIMD limit while the function throttles.
    ceiling: u32,
    tokens: f64,
    refilled_at: Instant,
}

impl Scaler {
    /// A scaler for a mapping whose concurrency is capped at `maximum_concurrency` (or [`MAX_LANES`]).
    /// Returns it with the lane count to start with.
    pub fn new(maximum_concurrency: Option<u32>, now: Instant) -> Scaler {
        let max = maximum_concurrency.unwrap_or(MAX_LANES).max(1);
        Scaler {
            lanes: INITIAL_LANES.min(max),
            min: MIN_LANES.min(max),
            max,
            ceiling: max,
            tokens: 0.0,
            refilled_at: now,
        }
    }

    /// Lanes currently wanted.
    pub fn lanes(&self) -> u32 {
        self.lanes
    }

    /// Most lanes the mapping may run (`ScalingConfig.MaximumConcurrency`, or [`MAX_LANES`]).
    pub fn max(&self) -> u32 {
        self.max
    }

    /// The function's capacity as far as it is known (the AIMD limit): no lane is added above it.
    pub fn set_ceiling(&mut self, limit: u32) {
        self.ceiling = limit.min(self.max);
    }

    /// A lane is done with its batch. True when that lane should stop: more lanes run than the
    /// ceiling allows (never fewer than the idle floor are kept).
    pub fn on_batch_done(&mut self) -> bool {
        if self.lanes > self.ceiling.max(self.min) {
            self.lanes -= 1;
            true
        } else {
            false
        }
    }

    /// A receive asked for `asked` messages and got `got`. True when one more lane should start.
    pub fn on_receive(&mut self, asked: usize, got: usize, now: Instant) -> bool {
        got > 0 && got >= asked && self.on_backlog(now)
    }

    /// A lane saw a backlog. True when one more lane should start.
    fn on_backlog(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.refilled_at = now;
        // Never bank more than one second of budget: bursts stay at the AWS rate.
        self.tokens = (self.tokens + elapsed * LANES_PER_SECOND).min(LANES_PER_SECOND);
        if self.lanes < self.ceiling && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.lanes += 1;
            true
        } else {
            false
        }
    }

    /// A lane found the queue empty or was throttled. True when that lane should stop.
    pub fn on_slack(&mut self) -> bool {
        if self.lanes > self.min {
            self.lanes -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn starts_with_five_capped_by_maximum_concurrency() {
        let now = Instant::now();
        assert_eq!(Scaler::new(None, now).lanes(), 5);
        assert_eq!(Scaler::new(Some(2), now).lanes(), 2);
    }

    #[test]
    fn grows_at_most_300_per_minute_up_to_the_cap() {
        let t0 = Instant::now();
        let mut s = Scaler::new(Some(20), t0);
        let mut added = 0;
        // Ask 100 times per second for 10 s.
        for i in 1..=1000 {
            if s.on_backlog(t0 + Duration::from_millis(10 * i)) {
                added += 1;
            }
        }
        assert_eq!(s.lanes(), 20, "capped by MaximumConcurrency");
        assert_eq!(added, 15);

        let mut s = Scaler::new(None, t0);
        let mut added = 0;
        for i in 1..=6000 {
            if s.on_backlog(t0 + Duration::from_millis(10 * i)) {
                added += 1;
            }
        }
        // 60 s at 5 lanes/s.
        assert!((295..=300).contains(&added), "added {added}");
    }

    #[test]
    fn any_receive_that_got_all_it_asked_for_is_a_backlog() {
        let t0 = Instant::now();
        let second = |n| t0 + Duration::from_secs(n);
        let mut s = Scaler::new(None, t0);
        assert!(s.on_receive(1, 1, second(1)), "BatchSize 1: one message asked, one got");
        assert!(s.on_receive(10, 10, second(2)));
        assert!(s.on_receive(3, 3, second(3)));
        assert!(!s.on_receive(10, 9, second(4)), "the queue ran out");
        assert!(!s.on_receive(1, 0, second(5)), "empty receive");
        assert_eq!(s.lanes(), 8);
    }

    #[test]
    fn batch_size_one_grows_like_any_other() {
        let t0 = Instant::now();
        let mut s = Scaler::new(None, t0);
        // Receives of one message, 100 per second for 10 s: the rate limit, not the batch size, bounds growth.
        let added = (1..=1000).filter(|i| s.on_receive(1, 1, t0 + Duration::from_millis(10 * i))).count();
        assert!((45..=50).contains(&added), "added {added}");
    }

    #[test]
    fn a_lower_ceiling_stops_lanes_and_growth() {
        let t0 = Instant::now();
        let mut s = Scaler::new(Some(50), t0);
        assert!(s.on_backlog(t0 + Duration::from_secs(1)));
        assert_eq!(s.lanes(), 6);
        s.set_ceiling(3);
        assert!(!s.on_backlog(t0 + Duration::from_secs(2)), "above the ceiling");
        let stopped = (0..10).filter(|_| s.on_batch_done()).count();
        assert_eq!((stopped, s.lanes()), (3, 3));
        s.set_ceiling(1);
        assert_eq!((0..10).filter(|_| s.on_batch_done()).count(), 1, "the idle floor of 2 stays");
        assert_eq!(s.lanes(), 2);
        s.set_ceiling(4);
        assert!(!s.on_batch_done());
        assert!(s.on_backlog(t0 + Duration::from_secs(3)));
        assert!(s.on_backlog(t0 + Duration::from_secs(4)));
        assert!(!s.on_backlog(t0 + Duration::from_secs(5)), "at the ceiling again");
        s.set_ceiling(500);
        assert!(s.on_backlog(t0 + Duration::from_secs(6)), "the ceiling is capped by the maximum, not above it");
        assert_eq!(s.lanes(), 5);
    }

    #[test]
    fn shrinks_to_two_and_no_further() {
        let mut s = Scaler::new(None, Instant::now());
        let stopped = (0..10).filter(|_| s.on_slack()).count();
        assert_eq!(stopped, 3);
        assert_eq!(s.lanes(), 2);
    }
}
