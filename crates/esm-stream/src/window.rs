//! `TumblingWindowInSeconds`: per-shard aggregation windows (docs/aws-reference.md#tumbling-windows).
//!
//! AWS behaviour this models:
//! * Windows are per shard and come from record arrival time; we align them to the epoch:
//!   `start = floor(t / N) * N`, `end = start + N` (AWS's example window `07:04:00–07:06:00`
//!   for N = 120 s is aligned that way).
//! * Every invoke in a window carries the `state` the function returned last in that window
//!   (none at the start: the event then has `"state": {}`).
//! * When the window closes, one more synchronous invoke with `isFinalInvokeForWindow: true`
//!   lets the function act on the aggregate. Only after it succeeds is the window's last record
//!   checkpointed and the state dropped; while it fails, the shard waits.
//! * A state over 1 MB ends the window early (`isWindowTerminatedEarly: true`); the same window
//!   then continues with fresh state. Shard end closes the window.
//!
//! Decisions where AWS is silent (also in `docs/stream-processing.md`):
//! * The final invoke carries **no records** (`"Records": []`); its state is the complete
//!   aggregate. An early-termination final invoke sets both flags.
//! * A window closes once the shard has been read past its end: (a) the next pending record
//!   belongs to a later window, or (b) nothing is pending and a read that returned everything
//!   available was *made* at least [`ARRIVAL_SKEW_MILLIS`] after the window end, or (c) the
//!   shard ended (flags: final, not terminated early — nothing of the window can follow in this
//!   shard). A record stamped in the window's last moment can become readable a little later
//!   (the stamp is approximate, and it is the service's clock while the read time is ours), so
//!   a read made right at the window end does not prove the window complete. While catching up
//!   on old records, windows close on (a) only, never by time.
//! * A record whose arrival time falls in an earlier window than the open one (arrival
//!   timestamps are approximate), or in a window already closed, joins the open window (or the
//!   next one): closed windows never reopen, so each window gets exactly one final invoke.
//! * "1 MB" is 1,048,576 bytes of the serialized state; exactly 1 MiB is still allowed.
//! * Checkpoints are deferred to the final invoke: records of an open window are final for the
//!   retry machine but the shard checkpoint moves only when the window's final invoke succeeds,
//!   because the aggregate lives only in memory — after a restart the window is rebuilt from
//!   the previous checkpoint (at-least-once). A windowed mapping therefore processes one batch
//!   at a time per shard (no parallelization lanes).

use crate::{Error, SequenceNumber};

/// Largest `TumblingWindowInSeconds`.
pub const MAX_TUMBLING_WINDOW_SECS: u32 = 900;

/// State size above which the window is terminated early.
pub const MAX_STATE_BYTES: usize = 1_048_576;

/// How long after a window's end a caught-up read must be made before the window may close by
/// time: how late a record stamped inside the window may still become readable (propagation,
/// whole-second DynamoDB stamps, clock skew between the service and the poller).
pub const ARRIVAL_SKEW_MILLIS: i64 = 2_000;

/// A window `[start_millis, end_millis)` in epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// Inclusive start (`window.start` in the event).
    pub start_millis: i64,
    /// Exclusive end (`window.end` in the event).
    pub end_millis: i64,
}

/// How far the reader is in the shard, as far as closing windows is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardPosition {
    /// More records may be available right now (catching up, or not known yet).
    Reading,
    /// The last read returned everything available (e.g. `MillisBehindLatest` = 0); it was made
    /// (sent) at `read_at_millis`, epoch milliseconds.
    CaughtUp {
        /// When that read was sent.
        read_at_millis: i64,
    },
    /// The shard is closed and fully read.
    Ended,
}

/// What to do next for a windowed shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowStep {
    /// Invoke with the first `records` pending records (the caller may take fewer, e.g. to
    /// respect `BatchSize`), this window, the current [`WindowTracker::state`] and both flags
    /// false.
    Invoke {
        /// The window all these records belong to.
        window: Window,
        /// How many leading pending records belong to it.
        records: usize,
    },
    /// Invoke with no records, the current state, `isFinalInvokeForWindow: true`, and
    /// `isWindowTerminatedEarly` = `terminated_early`. Repeat until it succeeds, then call
    /// [`WindowTracker::on_final_success`].
    FinalInvoke {
        /// The window being closed.
        window: Window,
        /// The state outgrew [`MAX_STATE_BYTES`]; the window continues with fresh state.
        terminated_early: bool,
    },
    /// Nothing to do until the next read: it may bring records, or (caught up, made late enough
    /// after the window end) let the open window close.
    Wait,
}

/// Window bookkeeping for one shard; `S` is the function's `state` (e.g. a JSON value).
#[derive(Debug, Clone)]
pub struct WindowTracker<S> {
    size_millis: i64,
    open: Option<OpenWindow<S>>,
    /// End of the last window closed: records stamped before it join a later window.
    closed_until: Option<i64>,
}

#[derive(Debug, Clone)]
struct OpenWindow<S> {
    window: Window,
    state: Option<S>,
    terminate_early: bool,
    /// Last record of this window that is final; checkpointed by the final invoke.
    last_final: Option<SequenceNumber>,
}

impl<S> WindowTracker<S> {
    /// A tracker for windows of `tumbling_window_secs` (1..=900) seconds.
    pub fn new(tumbling_window_secs: u32) -> Result<Self, Error> {
        if !(1..=MAX_TUMBLING_WINDOW_SECS).contains(&tumbling_window_secs) {
            return Err(Error::TumblingWindow(tumbling_window_secs));
        }
        Ok(WindowTracker {
            size_millis: i64::from(tumbling_window_secs) * 1000,
            open: None,
            closed_until: None,
        })
    }

    /// The epoch-aligned window containing `arrival_millis`.
    pub fn window_of(&self, arrival_millis: i64) -> Window {
        let start_millis = arrival_millis.div_euclid(self.size_millis) * self.size_millis;
        Window {
            start_millis,
            end_millis: start_millis + self.size_millis,
        }
    }

    /// The open window, if any.
    pub fn current(&self) -> Option<Window> {
        self.open.as_ref().map(|open| open.window)
    }

    /// The state to send with the next invoke (`None` = `{}`).
    pub fn state(&self) -> Option<&S> {
        self.open.as_ref().and_then(|open| open.state.as_ref())
    }

    /// Decides the next step. `pending_arrivals` are the arrival times of the records read but
    /// not yet invoked, in shard order.
    pub fn next_step(&mut self, pending_arrivals: &[i64], position: ShardPosition) -> WindowStep {
        let Some(open) = &self.open else {
            let Some(&first) = pending_arrivals.first() else {
                return WindowStep::Wait;
            };
            // A record of a closed window (read late) opens the next one instead.
            let window = self.window_of(self.closed_until.map_or(first, |end| first.max(end)));
            self.open = Some(OpenWindow {
                window,
                state: None,
                terminate_early: false,
                last_final: None,
            });
            return WindowStep::Invoke {
                window,
                records: self.records_in(window, pending_arrivals),
            };
        };
        let window = open.window;
        if open.terminate_early {
            return WindowStep::FinalInvoke {
                window,
                terminated_early: true,
            };
        }
        let close = WindowStep::FinalInvoke {
            window,
            terminated_early: false,
        };
        match (self.records_in(window, pending_arrivals), position) {
            (0, _) if !pending_arrivals.is_empty() => close,
            (0, ShardPosition::Ended) => close,
            (0, ShardPosition::CaughtUp { read_at_millis })
                if read_at_millis >= window.end_millis + ARRIVAL_SKEW_MILLIS =>
            {
                close
            }
            (0, ShardPosition::CaughtUp { .. } | ShardPosition::Reading) => WindowStep::Wait,
            (records, _) => WindowStep::Invoke { window, records },
        }
    }

    /// Leading pending records that belong to `window` (late ones included).
    fn records_in(&self, window: Window, pending_arrivals: &[i64]) -> usize {
        pending_arrivals
            .iter()
            .take_while(|&&arrival| self.window_of(arrival).start_millis <= window.start_millis)
            .count()
    }

    /// Stores the `state` of a (non-final) invoke response, `state_bytes` being its serialized
    /// size. A state above [`MAX_STATE_BYTES`] makes the next step an early final invoke.
    ///
    /// # Panics
    /// If no window is open.
    pub fn on_batch_response(&mut self, state: S, state_bytes: usize) {
        let open = self
            .open
            .as_mut()
            .expect("on_batch_response without an open window");
        open.state = Some(state);
        if state_bytes > MAX_STATE_BYTES {
            open.terminate_early = true;
        }
    }

    /// Records up to `sequence_number` (of the open window) are final — delivered or
    /// discarded. Their checkpoint waits for the window's final invoke.
    ///
    /// # Panics
    /// If no window is open.
    pub fn on_records_final(&mut self, sequence_number: SequenceNumber) {
        let open = self
            .open
            .as_mut()
            .expect("on_records_final without an open window");
        open.last_final = Some(sequence_number);
    }

    /// The final invoke succeeded: drops the state and returns the sequence number to
    /// checkpoint (`None` if no record of the window became final since the last checkpoint).
    /// After an early termination the same window stays open with fresh state.
    ///
    /// # Panics
    /// If no window is open.
    pub fn on_final_success(&mut self) -> Option<SequenceNumber> {
        let open = self
            .open
            .as_mut()
            .expect("on_final_success without an open window");
        let checkpoint = open.last_final.take();
        if open.terminate_early {
            open.terminate_early = false;
            open.state = None;
        } else {
            self.closed_until = Some(open.window.end_millis);
            self.open = None;
        }
        checkpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seq(n: usize) -> SequenceNumber {
        SequenceNumber::parse(&n.to_string()).unwrap()
    }

    /// 2020-12-09T07:04:35Z, the arrival time in AWS's tumbling-window example event.
    const EXAMPLE_ARRIVAL: i64 = 1_607_497_475_000;
    /// 2020-12-09T07:04:00Z and 07:06:00Z, the example's window.
    const EXAMPLE_START: i64 = 1_607_497_440_000;
    const EXAMPLE_END: i64 = 1_607_497_560_000;

    #[test]
    fn window_size_is_validated() {
        assert_eq!(
            WindowTracker::<()>::new(0).unwrap_err(),
            Error::TumblingWindow(0)
        );
        assert_eq!(
            WindowTracker::<()>::new(901).unwrap_err(),
            Error::TumblingWindow(901)
        );
        assert!(WindowTracker::<()>::new(1).is_ok() && WindowTracker::<()>::new(900).is_ok());
    }

    #[test]
    fn windows_are_epoch_aligned() {
        let tracker = WindowTracker::<()>::new(120).unwrap();
        let expected = Window {
            start_millis: EXAMPLE_START,
            end_millis: EXAMPLE_END,
        };
        assert_eq!(tracker.window_of(EXAMPLE_ARRIVAL), expected);
        assert_eq!(
            tracker.window_of(EXAMPLE_START),
            expected,
            "start is inclusive"
        );
        assert_eq!(
            tracker.window_of(EXAMPLE_END).start_millis,
            EXAMPLE_END,
            "end is exclusive"
        );
        assert_eq!(
            tracker.window_of(-1),
            Window {
                start_millis: -120_000,
                end_millis: 0
            }
        );
    }

    #[test]
    fn a_later_record_closes_the_window_with_a_final_invoke() {
        let mut tracker = WindowTracker::<&str>::new(120).unwrap();
        let w1 = tracker.window_of(EXAMPLE_ARRIVAL);
        let pending = [EXAMPLE_ARRIVAL, EXAMPLE_ARRIVAL + 1, EXAMPLE_END + 5];
        assert_eq!(
            tracker.next_step(&pending, ShardPosition::Reading),
            WindowStep::Invoke {
                window: w1,
                records: 2
            }
        );
        assert_eq!(tracker.state(), None, "fresh state at window start");
        tracker.on_batch_response("s1", 10);
        tracker.on_records_final(seq(2));
        assert_eq!(tracker.state(), Some(&"s1"));
        // The first two were invoked; the next record is in the following window.
        let final_step = WindowStep::FinalInvoke {
            window: w1,
            terminated_early: false,
        };
        assert_eq!(
            tracker.next_step(&pending[2..], ShardPosition::Reading),
            final_step
        );
        // A failed final invoke is simply repeated: the shard is blocked.
        assert_eq!(
            tracker.next_step(&pending[2..], ShardPosition::Reading),
            final_step
        );
        assert_eq!(tracker.on_final_success(), Some(seq(2)));
        assert_eq!(tracker.current(), None);
        let w2 = tracker.window_of(EXAMPLE_END + 5);
        assert_eq!(
            tracker.next_step(&pending[2..], ShardPosition::Reading),
            WindowStep::Invoke {
                window: w2,
                records: 1
            }
        );
        assert_eq!(tracker.state(), None, "state does not carry over");
    }

    fn caught_up(read_at_millis: i64) -> ShardPosition {
        ShardPosition::CaughtUp { read_at_millis }
    }

    #[test]
    fn a_caught_up_window_closes_after_a_read_made_past_its_end_and_the_skew() {
        let mut tracker = WindowTracker::<()>::new(120).unwrap();
        let w = tracker.window_of(EXAMPLE_ARRIVAL);
        tracker.next_step(&[EXAMPLE_ARRIVAL], caught_up(EXAMPLE_ARRIVAL));
        assert_eq!(
            tracker.next_step(&[], ShardPosition::Reading),
            WindowStep::Wait
        );
        let closable = EXAMPLE_END + ARRIVAL_SKEW_MILLIS;
        for read_at in [EXAMPLE_END - 1, EXAMPLE_END, closable - 1] {
            assert_eq!(
                tracker.next_step(&[], caught_up(read_at)),
                WindowStep::Wait,
                "a read made at {read_at} may have missed a late record of the window"
            );
        }
        assert_eq!(
            tracker.next_step(&[], caught_up(closable)),
            WindowStep::FinalInvoke {
                window: w,
                terminated_early: false
            }
        );
        assert_eq!(
            tracker.on_final_success(),
            None,
            "no record was reported final"
        );
    }

    /// The reported bug: a record stamped in the window's last second but read after the window's
    /// final invoke reopened the window with empty state and got a second final invoke. It now joins
    /// the next window; the closed one is never invoked again.
    #[test]
    fn a_record_of_a_closed_window_read_late_joins_the_next_window() {
        let mut tracker = WindowTracker::<u32>::new(10).unwrap();
        let w1 = tracker.window_of(0);
        let w2 = tracker.window_of(10_000);
        assert_eq!(
            tracker.next_step(&[1_000], ShardPosition::Reading),
            WindowStep::Invoke { window: w1, records: 1 }
        );
        tracker.on_batch_response(10, 8);
        tracker.on_records_final(seq(1));
        assert!(matches!(
            tracker.next_step(&[], caught_up(12_000)),
            WindowStep::FinalInvoke { .. }
        ));
        tracker.on_final_success();
        // Stamped 9.9 s (window 1), read after window 1 closed.
        assert_eq!(
            tracker.next_step(&[9_900], ShardPosition::Reading),
            WindowStep::Invoke { window: w2, records: 1 }
        );
        assert_eq!(tracker.state(), None);
    }

    #[test]
    fn catching_up_never_closes_by_the_clock() {
        let mut tracker = WindowTracker::<()>::new(60).unwrap();
        tracker.next_step(&[0], ShardPosition::Reading);
        assert_eq!(
            tracker.next_step(&[], ShardPosition::Reading),
            WindowStep::Wait
        );
    }

    #[test]
    fn oversized_state_terminates_the_window_early_and_it_continues_fresh() {
        let mut tracker = WindowTracker::<u32>::new(120).unwrap();
        let w = tracker.window_of(EXAMPLE_ARRIVAL);
        tracker.next_step(&[EXAMPLE_ARRIVAL], ShardPosition::Reading);
        tracker.on_batch_response(1, MAX_STATE_BYTES);
        tracker.on_records_final(seq(1));
        assert!(
            matches!(
                tracker.next_step(&[EXAMPLE_ARRIVAL], ShardPosition::Reading),
                WindowStep::Invoke { .. }
            ),
            "exactly 1 MiB is allowed"
        );
        tracker.on_batch_response(2, MAX_STATE_BYTES + 1);
        tracker.on_records_final(seq(2));
        let early = WindowStep::FinalInvoke {
            window: w,
            terminated_early: true,
        };
        assert_eq!(
            tracker.next_step(&[EXAMPLE_ARRIVAL], ShardPosition::Reading),
            early
        );
        assert_eq!(
            tracker.state(),
            Some(&2),
            "the final invoke carries the oversized state"
        );
        assert_eq!(tracker.on_final_success(), Some(seq(2)));
        assert_eq!(tracker.current(), Some(w), "same window continues");
        assert_eq!(tracker.state(), None, "with fresh state");
        assert_eq!(
            tracker.next_step(&[EXAMPLE_ARRIVAL], ShardPosition::Reading),
            WindowStep::Invoke {
                window: w,
                records: 1
            }
        );
    }

    #[test]
    fn shard_end_closes_the_window() {
        let mut tracker = WindowTracker::<()>::new(900).unwrap();
        let w = tracker.window_of(EXAMPLE_ARRIVAL);
        tracker.next_step(&[EXAMPLE_ARRIVAL], ShardPosition::Reading);
        tracker.on_records_final(seq(7));
        assert_eq!(
            tracker.next_step(&[], ShardPosition::Ended),
            WindowStep::FinalInvoke {
                window: w,
                terminated_early: false
            }
        );
        assert_eq!(tracker.on_final_success(), Some(seq(7)));
        assert_eq!(
            tracker.next_step(&[], ShardPosition::Ended),
            WindowStep::Wait
        );
    }

    #[test]
    fn late_records_join_the_open_window() {
        let mut tracker = WindowTracker::<()>::new(60).unwrap();
        let w = tracker.window_of(120_000);
        assert_eq!(
            tracker.next_step(
                &[120_000, 59_000, 121_000, 180_000],
                ShardPosition::Reading
            ),
            WindowStep::Invoke {
                window: w,
                records: 3
            }
        );
    }

    proptest! {
        /// Records become readable up to `ARRIVAL_SKEW_MILLIS` after their stamp (in shard order);
        /// the reader polls every 250 ms and is caught up after each read. Every window gets exactly
        /// one final invoke, and its state has counted every record stamped in it.
        #[test]
        fn each_window_gets_one_final_invoke_covering_its_records(
            gaps in proptest::collection::vec(0i64..3_000, 1..60),
            delays in proptest::collection::vec(0i64..=ARRIVAL_SKEW_MILLIS, 60),
            size in 1u32..=10,
        ) {
            let arrivals: Vec<i64> = gaps.iter().scan(0i64, |t, g| { *t += g; Some(*t) }).collect();
            let mut visible_at = Vec::with_capacity(arrivals.len());
            for (i, arrival) in arrivals.iter().enumerate() {
                let at = arrival + delays[i];
                visible_at.push(visible_at.last().map_or(at, |&prev: &i64| prev.max(at)));
            }
            let mut tracker = WindowTracker::<u32>::new(size).unwrap();
            let (mut read, mut next) = (0, 0); // records read; first pending
            let mut finals: Vec<(Window, u32)> = Vec::new();
            let end = visible_at.last().unwrap() + 2 * i64::from(size) * 1000 + 2 * ARRIVAL_SKEW_MILLIS;
            let mut now = 0;
            while now <= end {
                while read < arrivals.len() && visible_at[read] <= now {
                    read += 1;
                }
                loop {
                    match tracker.next_step(&arrivals[next..read], caught_up(now)) {
                        WindowStep::Invoke { records, .. } => {
                            let counted = tracker.state().copied().unwrap_or(0);
                            next += records;
                            tracker.on_batch_response(counted + records as u32, 8);
                            tracker.on_records_final(seq(next - 1));
                        }
                        WindowStep::FinalInvoke { window, .. } => {
                            finals.push((window, tracker.state().copied().unwrap_or(0)));
                            tracker.on_final_success();
                        }
                        WindowStep::Wait => break,
                    }
                }
                now += 250;
            }
            prop_assert_eq!(next, arrivals.len());
            let mut windows: Vec<Window> = arrivals.iter().map(|a| tracker.window_of(*a)).collect();
            windows.dedup();
            let expected: Vec<(Window, u32)> = windows
                .iter()
                .map(|w| (*w, arrivals.iter().filter(|a| tracker.window_of(**a) == *w).count() as u32))
                .collect();
            prop_assert_eq!(finals, expected);
        }

        /// Over any arrival pattern and batch caps: records are invoked once, in order, each
        /// with its own window; every window gets exactly one final invoke after its last
        /// record and before the next window's first; checkpoints are the windows' last records.
        #[test]
        fn windows_partition_the_shard(
            gaps in proptest::collection::vec(0i64..90_000, 1..80),
            caps in proptest::collection::vec(1usize..6, 1..20),
            size in 1u32..=120,
        ) {
            let arrivals: Vec<i64> = gaps.iter().scan(0i64, |t, g| { *t += g; Some(*t) }).collect();
            let mut tracker = WindowTracker::<usize>::new(size).unwrap();
            let mut next = 0; // first pending record
            let mut caps = caps.iter().cycle();
            let mut finals: Vec<Window> = Vec::new();
            let mut checkpoints = Vec::new();
            let mut invoked_windows = Vec::new();
            for _ in 0..10_000 {
                match tracker.next_step(&arrivals[next..], ShardPosition::Ended) {
                    WindowStep::Invoke { window, records } => {
                        prop_assert!(records >= 1);
                        let take = records.min(*caps.next().unwrap());
                        for &arrival in &arrivals[next..next + take] {
                            prop_assert_eq!(tracker.window_of(arrival), window);
                            invoked_windows.push(window);
                        }
                        next += take;
                        tracker.on_batch_response(next, 8);
                        tracker.on_records_final(seq(next - 1));
                    }
                    WindowStep::FinalInvoke { window, terminated_early } => {
                        prop_assert!(!terminated_early);
                        prop_assert_eq!(tracker.state(), Some(&next));
                        finals.push(window);
                        checkpoints.push(tracker.on_final_success().unwrap());
                    }
                    WindowStep::Wait => break,
                }
            }
            prop_assert_eq!(next, arrivals.len());
            let mut distinct = invoked_windows.clone();
            distinct.dedup();
            prop_assert_eq!(&finals, &distinct, "one final per window, in order");
            let expected: Vec<SequenceNumber> = distinct.iter()
                .map(|w| seq(invoked_windows.iter().rposition(|x| x == w).unwrap()))
                .collect();
            prop_assert_eq!(checkpoints, expected);
        }
    }
}
