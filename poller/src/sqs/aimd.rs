//! How many invocations of an SQS mapping may be in flight at once while its function throttles:
//! additive increase, multiplicative decrease (AIMD), the rule TCP uses to find a link's capacity
//! without knowing it.
//!
//! Lambda lowers an SQS mapping's concurrency when the function throttles
//! (<https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html>) but does not say by how
//! much. Here a throttle halves the limit (from the number of invocations actually in flight, so a
//! limit far above what ran comes down at once), and every window of successes raises it by one, so
//! the mapping settles just under the function's real capacity (its reserved concurrency, or what
//! the account has left) instead of retrying far above it.
//!
//! Pure: the caller passes the time and says what happened.

use std::time::Instant;

/// The lowest limit: one invocation keeps probing, so that capacity coming back is seen.
pub const FLOOR: u32 = 1;
/// Fewest successes that raise the limit by one. Above this, a window is one success per unit of
/// limit (one "round" of every slot), as in TCP's congestion avoidance. The minimum keeps a small
/// limit (2, 3) from probing the level that just throttled after only two or three invocations.
pub const MIN_WINDOW: u32 = 10;

/// The limit and the invocations counted against it.
#[derive(Debug)]
pub struct Aimd {
    limit: u32,
    max: u32,
    in_flight: u32,
    /// Successes since the limit last changed.
    successes: u32,
    /// When the limit was last lowered: throttles of invocations sent before it answered the old
    /// limit, and must not lower it again (one decrease per round, as in TCP).
    lowered_at: Option<Instant>,
}

impl Aimd {
    /// A limit starting at `max`, the mapping's most concurrent batches: until the function
    /// throttles, the lane scaler alone decides.
    pub fn new(max: u32) -> Aimd {
        let max = max.max(FLOOR);
        Aimd {
            limit: max,
            max,
            in_flight: 0,
            successes: 0,
            lowered_at: None,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Invocations in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Start an invocation if the limit allows it; true when it may go.
    pub fn try_start(&mut self) -> bool {
        if self.in_flight < self.limit {
            self.in_flight += 1;
            true
        } else {
            false
        }
    }

    /// An invocation started at `sent_at` was throttled (it is still counted in flight; call
    /// [`Aimd::end`] after). Halves the limit, rounding up, from the smaller of the limit and what
    /// is in flight, unless it was already lowered after this invocation was sent. Returns whether
    /// the limit changed.
    pub fn throttled(&mut self, sent_at: Instant, now: Instant) -> bool {
        if self.lowered_at.is_some_and(|at| sent_at < at) {
            return false;
        }
        let before = self.limit;
        self.limit = self.limit.min(self.in_flight).div_ceil(2).clamp(FLOOR, self.max);
        self.successes = 0;
        self.lowered_at = Some(now);
        self.limit != before
    }

    /// An invocation reached the function (whether or not the function succeeded: it ran, so there
    /// was capacity). Every window of such successes raises the limit by one, up to the maximum.
    /// Returns whether the limit changed.
    pub fn succeeded(&mut self) -> bool {
        if self.limit >= self.max {
            return false;
        }
        self.successes += 1;
        if self.successes < self.limit.max(MIN_WINDOW) {
            return false;
        }
        self.successes = 0;
        self.limit += 1;
        true
    }

    /// An invocation ended (whatever the outcome): its slot is free.
    pub fn end(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn start(aimd: &mut Aimd, n: u32) {
        for _ in 0..n {
            assert!(aimd.try_start());
        }
    }

    #[test]
    fn a_throttle_halves_what_was_in_flight() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(1000);
        start(&mut aimd, 8);
        assert!(aimd.throttled(t0, t0));
        assert_eq!(aimd.limit(), 4, "from the 8 in flight, not from 1000");
        // 5 in flight: odd counts round up.
        let mut aimd = Aimd::new(10);
        start(&mut aimd, 5);
        aimd.throttled(t0, t0);
        assert_eq!(aimd.limit(), 3);
    }

    #[test]
    fn throttles_of_one_round_lower_the_limit_once() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut aimd = Aimd::new(100);
        start(&mut aimd, 8);
        // Eight invocations sent at t0 all come back throttled.
        assert!(aimd.throttled(at(0), at(10)));
        for _ in 0..7 {
            assert!(!aimd.throttled(at(0), at(11)), "sent before the decrease");
        }
        assert_eq!(aimd.limit(), 4);
        // An invocation sent after the decrease that is throttled again lowers it again.
        assert!(aimd.throttled(at(20), at(30)));
        assert_eq!(aimd.limit(), 2);
    }

    #[test]
    fn only_limit_invocations_start() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(4);
        start(&mut aimd, 4);
        assert!(!aimd.try_start());
        aimd.throttled(t0, t0);
        aimd.end();
        assert_eq!((aimd.limit(), aimd.in_flight()), (2, 3));
        assert!(!aimd.try_start(), "3 in flight, limit 2");
        aimd.end();
        aimd.end();
        assert!(aimd.try_start());
    }

    #[test]
    fn successes_raise_the_limit_by_one_per_window() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(30);
        start(&mut aimd, 2);
        aimd.throttled(t0, t0);
        assert_eq!(aimd.limit(), 1);
        // Small limits: MIN_WINDOW successes per step.
        let raised = (0..MIN_WINDOW).filter(|_| aimd.succeeded()).count();
        assert_eq!((raised, aimd.limit()), (1, 2));
        // Above MIN_WINDOW: one success per unit of limit.
        let mut aimd = Aimd::new(100);
        start(&mut aimd, 40);
        aimd.throttled(t0, t0);
        assert_eq!(aimd.limit(), 20);
        assert_eq!((0..19).filter(|_| aimd.succeeded()).count(), 0);
        assert!(aimd.succeeded());
        assert_eq!(aimd.limit(), 21);
    }

    #[test]
    fn zero_capacity_keeps_one_probe() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(5);
        start(&mut aimd, 5);
        for i in 0..10 {
            aimd.throttled(t0 + Duration::from_secs(i), t0 + Duration::from_secs(i));
        }
        assert_eq!(aimd.limit(), FLOOR);
    }

    #[derive(Clone, Debug)]
    enum Event {
        Start,
        Throttle { sent_ago_ms: u64 },
        Success,
        End,
        Wait { ms: u64 },
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::Start),
            (0..500u64).prop_map(|sent_ago_ms| Event::Throttle { sent_ago_ms }),
            Just(Event::Success),
            Just(Event::End),
            (0..200u64).prop_map(|ms| Event::Wait { ms }),
        ]
    }

    proptest! {
        /// Whatever happens: the limit stays within [FLOOR, max], never more invocations start than
        /// the limit allows, a throttle never raises the limit and never lowers it below half (rounded
        /// up) of what it was, and a success raises it by at most one.
        #[test]
        fn limit_stays_bounded_and_moves_by_the_rules(max in 1u32..50, events in proptest::collection::vec(event(), 0..300)) {
            let t0 = Instant::now();
            let mut now = t0 + Duration::from_secs(1);
            let mut aimd = Aimd::new(max);
            for e in events {
                let before = aimd.limit();
                match e {
                    Event::Start => {
                        let in_flight = aimd.in_flight();
                        prop_assert_eq!(aimd.try_start(), in_flight < before, "starts exactly while below the limit");
                    }
                    Event::Throttle { sent_ago_ms } => {
                        let sent_at = now.checked_sub(Duration::from_millis(sent_ago_ms)).unwrap_or(t0);
                        aimd.throttled(sent_at, now);
                        prop_assert!(aimd.limit() <= before);
                        prop_assert!(aimd.limit() >= FLOOR);
                        prop_assert!(aimd.limit() >= before.min(aimd.in_flight()).div_ceil(2).max(FLOOR));
                    }
                    Event::Success => {
                        aimd.succeeded();
                        prop_assert!(aimd.limit() == before || aimd.limit() == before + 1);
                    }
                    Event::End => aimd.end(),
                    Event::Wait { ms } => now += Duration::from_millis(ms),
                }
                prop_assert!((FLOOR..=max).contains(&aimd.limit()), "limit {} max {}", aimd.limit(), max);
            }
        }

        /// With a function whose capacity is `capacity` (more concurrent invocations are throttled), the
        /// limit comes to oscillate just around the capacity: never above capacity + 1 once settled,
        /// and not stuck far below it.
        #[test]
        fn settles_around_the_capacity(capacity in 1u32..40, max in 1u32..200) {
            let t0 = Instant::now();
            let mut aimd = Aimd::new(max);
            let mut settled_max = 0;
            let mut settled_sum = 0u64;
            let rounds = 2000u32;
            for round in 0..rounds {
                let now = t0 + Duration::from_millis(u64::from(round) * 100);
                // One round: fill every slot, the function admits `capacity`, the rest throttle.
                let mut started = 0;
                while aimd.try_start() {
                    started += 1;
                }
                for i in 0..started {
                    if i < capacity {
                        aimd.succeeded();
                    } else {
                        aimd.throttled(now, now + Duration::from_millis(50));
                    }
                }
                for _ in 0..started {
                    aimd.end();
                }
                if round >= rounds / 2 {
                    settled_max = settled_max.max(aimd.limit());
                    settled_sum += u64::from(aimd.limit());
                }
            }
            let target = capacity.min(max);
            prop_assert!(settled_max <= target + 1, "settled max {} for capacity {}", settled_max, target);
            let mean = settled_sum as f64 / f64::from(rounds / 2);
            prop_assert!(mean >= f64::from(target) / 2.0, "mean {} for capacity {}", mean, target);
        }
    }
}
