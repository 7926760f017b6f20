//! The shard checkpoint when records complete out of order.
//!
//! Records are read from a shard in order and handed to lanes ([`crate::Lanes`]); with a
//! parallelization factor above 1, a later record can finish before an earlier one. The
//! checkpoint may only name a record when **every** earlier record of the shard is final
//! (delivered, filtered out, or discarded after failure handling), otherwise a restart from the
//! checkpoint would skip the unfinished one. A [`Frontier`] tracks exactly that: the highest
//! sequence number whose whole prefix is final.
//!
//! Cost: `track` is O(1); `complete` and `dispatch` find the record in O(1) when it is among the few
//! after the one found last or was tracked last (the shard worker's usual order), else in O(log n);
//! advancing is amortised O(1).
//!
//! # What a crash delivers again
//! A restart resumes after the checkpoint, so every record handed to the function (*dispatched*)
//! that the checkpoint does not cover yet is delivered again: those in flight, and those whose
//! batch finished while an earlier record was still unfinished. The frontier counts them
//! ([`Frontier::exposed`]) so the worker can hold new batches back once they reach a budget
//! ([`Frontier::dispatch_allowance`]): with `ParallelizationFactor` lanes of `BatchSize` records, a
//! slow or retrying lane then cannot let the other lanes run arbitrarily far ahead of the
//! checkpoint. And on a clean shutdown, [`Frontier::precedes_dispatched`] names the queued
//! records that must still be delivered so the checkpoint can cover every finished batch.

use std::collections::VecDeque;

use crate::{Error, SequenceNumber};

/// Records looked at from the last one found before a binary search.
const HINT_SCAN: usize = 4;

/// Checkpoint tracker for one shard.
#[derive(Debug, Clone)]
pub struct Frontier {
    /// Tracked records not yet behind the checkpoint, in shard order.
    pending: VecDeque<Entry>,
    /// Highest sequence number whose prefix is final (the value to store).
    checkpoint: Option<SequenceNumber>,
    /// Last tracked sequence number, to enforce shard order.
    last: Option<SequenceNumber>,
    /// Dispatched records in `pending`.
    exposed: usize,
    /// Highest sequence number dispatched so far.
    last_dispatched: Option<SequenceNumber>,
    /// Where the record after the one found last is, counted from the first record ever tracked:
    /// records are mostly dispatched and completed in shard order, so the next lookup is usually
    /// there, without a binary search over 56-digit numbers.
    next_hint: usize,
    /// Records popped from the front of `pending` so far, to turn `next_hint` into an index.
    popped: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    sequence_number: SequenceNumber,
    /// Handed to the function.
    dispatched: bool,
    /// Delivered, discarded or filtered out.
    done: bool,
}

impl Frontier {
    /// A tracker for a shard read from just after `checkpoint` (`None` when reading from a
    /// sentinel position such as `TRIM_HORIZON`).
    pub fn new(checkpoint: Option<SequenceNumber>) -> Self {
        Frontier {
            pending: VecDeque::new(),
            last: checkpoint.clone(),
            checkpoint,
            exposed: 0,
            last_dispatched: None,
            next_hint: 0,
            popped: 0,
        }
    }

    /// Registers a record read from the shard. Sequence numbers must strictly increase (and be
    /// above the starting checkpoint).
    pub fn track(&mut self, sequence_number: SequenceNumber) -> Result<(), Error> {
        if let Some(previous) = &self.last
            && sequence_number <= *previous
        {
            return Err(Error::SequenceNotIncreasing {
                previous: previous.clone(),
                next: sequence_number,
            });
        }
        self.last = Some(sequence_number.clone());
        self.pending.push_back(Entry {
            sequence_number,
            dispatched: false,
            done: false,
        });
        Ok(())
    }

    /// Marks a tracked record final. Returns the new checkpoint if it moved.
    ///
    /// Completing a record twice is an error ([`Error::UnknownSequence`]), as is completing one
    /// that was never tracked: both mean the caller lost track of a record.
    pub fn complete(
        &mut self,
        sequence_number: &SequenceNumber,
    ) -> Result<Option<SequenceNumber>, Error> {
        let entry = self.entry(sequence_number)?;
        if entry.done {
            return Err(Error::UnknownSequence(sequence_number.clone()));
        }
        entry.done = true;
        let mut advanced = None;
        while self.pending.front().is_some_and(|e| e.done) {
            let entry = self.pending.pop_front().expect("front exists");
            self.popped += 1;
            if entry.dispatched {
                self.exposed -= 1;
            }
            advanced = Some(entry.sequence_number);
        }
        if advanced.is_some() {
            self.checkpoint = advanced.clone();
        }
        Ok(advanced)
    }

    /// Marks a tracked record as handed to the function. Dispatching a record twice, or one
    /// that is final or was never tracked, is an error ([`Error::UnknownSequence`]).
    pub fn dispatch(&mut self, sequence_number: &SequenceNumber) -> Result<(), Error> {
        let entry = self.entry(sequence_number)?;
        if entry.dispatched || entry.done {
            return Err(Error::UnknownSequence(sequence_number.clone()));
        }
        entry.dispatched = true;
        self.exposed += 1;
        if self.last_dispatched.as_ref().is_none_or(|last| sequence_number > last) {
            self.last_dispatched = Some(sequence_number.clone());
        }
        Ok(())
    }

    /// Records handed to the function that the checkpoint does not cover: what a crash now
    /// would deliver again.
    pub fn exposed(&self) -> usize {
        self.exposed
    }

    /// The first record that is not final: the one the checkpoint waits for.
    pub fn oldest_unfinished(&self) -> Option<&SequenceNumber> {
        self.pending.front().map(|e| &e.sequence_number)
    }

    /// How many of the `wanted` records of a batch starting at `first` may be dispatched now,
    /// keeping what a crash would deliver again within `budget`: all of them if they fit; else
    /// one if `first` is the record the checkpoint waits for (without it the checkpoint could
    /// never move again), else none. So [`Frontier::exposed`] never exceeds `budget + 1`.
    pub fn dispatch_allowance(&self, first: &SequenceNumber, wanted: usize, budget: usize) -> usize {
        if self.exposed + wanted <= budget {
            wanted
        } else if self.oldest_unfinished() == Some(first) {
            1
        } else {
            0
        }
    }

    /// True if a later record has been dispatched: until this one is final, the checkpoint
    /// cannot cover that later one (on shutdown, deliver this one too).
    pub fn precedes_dispatched(&self, sequence_number: &SequenceNumber) -> bool {
        self.last_dispatched.as_ref().is_some_and(|last| sequence_number < last)
    }

    fn entry(&mut self, sequence_number: &SequenceNumber) -> Result<&mut Entry, Error> {
        let is_at = |i: usize| self.pending.get(i).is_some_and(|e| e.sequence_number == *sequence_number);
        // A few records on from the last one found (others in between went to other lanes or
        // were filtered out), else the last one tracked.
        let hint = self.next_hint.saturating_sub(self.popped);
        let found = (hint..hint + HINT_SCAN)
            .find(|&i| is_at(i))
            .or_else(|| self.pending.len().checked_sub(1).filter(|&i| is_at(i)));
        let index = match found {
            Some(index) => index,
            None => self
                .pending
                .binary_search_by(|e| e.sequence_number.cmp(sequence_number))
                .map_err(|_| Error::UnknownSequence(sequence_number.clone()))?,
        };
        self.next_hint = self.popped + index + 1;
        Ok(&mut self.pending[index])
    }

    /// The highest sequence number such that it and every earlier record are final.
    pub fn checkpoint(&self) -> Option<&SequenceNumber> {
        self.checkpoint.as_ref()
    }

    /// Tracked records not yet covered by the checkpoint (final or not).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// True when every tracked record is final, i.e. the checkpoint names the last one read.
    pub fn is_drained(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seq(n: u64) -> SequenceNumber {
        SequenceNumber::parse(&n.to_string()).unwrap()
    }

    #[test]
    fn advances_only_over_a_final_prefix() {
        let mut frontier = Frontier::new(None);
        for n in [10, 20, 30, 40] {
            frontier.track(seq(n)).unwrap();
        }
        assert_eq!(frontier.complete(&seq(30)).unwrap(), None);
        assert_eq!(frontier.complete(&seq(20)).unwrap(), None);
        assert_eq!(frontier.checkpoint(), None);
        assert_eq!(frontier.complete(&seq(10)).unwrap(), Some(seq(30)));
        assert_eq!(frontier.checkpoint(), Some(&seq(30)));
        assert_eq!(frontier.pending(), 1);
        assert_eq!(frontier.complete(&seq(40)).unwrap(), Some(seq(40)));
        assert!(frontier.is_drained());
    }

    #[test]
    fn rejects_out_of_order_and_unknown() {
        let mut frontier = Frontier::new(Some(seq(5)));
        assert_eq!(
            frontier.track(seq(5)),
            Err(Error::SequenceNotIncreasing {
                previous: seq(5),
                next: seq(5)
            })
        );
        frontier.track(seq(9)).unwrap();
        assert!(matches!(
            frontier.track(seq(7)),
            Err(Error::SequenceNotIncreasing { .. })
        ));
        assert_eq!(
            frontier.complete(&seq(8)),
            Err(Error::UnknownSequence(seq(8)))
        );
        frontier.track(seq(12)).unwrap();
        frontier.complete(&seq(12)).unwrap();
        assert_eq!(
            frontier.complete(&seq(12)),
            Err(Error::UnknownSequence(seq(12)))
        );
        assert_eq!(
            frontier.checkpoint(),
            Some(&seq(5)),
            "starting checkpoint kept"
        );
    }

    #[test]
    fn counts_what_a_crash_would_deliver_again() {
        let mut frontier = Frontier::new(None);
        for n in 1..=6 {
            frontier.track(seq(n)).unwrap();
        }
        // Lane A takes 1-2, lane B 3-4; 5 is filtered out; 6 waits.
        for n in 1..=4 {
            frontier.dispatch(&seq(n)).unwrap();
        }
        frontier.complete(&seq(5)).unwrap();
        assert_eq!(frontier.exposed(), 4);
        assert_eq!(frontier.dispatch(&seq(5)), Err(Error::UnknownSequence(seq(5))));
        assert_eq!(frontier.dispatch(&seq(4)), Err(Error::UnknownSequence(seq(4))));
        // B finishes first: nothing is checkpointed, 3-4 stay exposed.
        frontier.complete(&seq(3)).unwrap();
        frontier.complete(&seq(4)).unwrap();
        assert_eq!((frontier.exposed(), frontier.checkpoint()), (4, None));
        assert_eq!(frontier.oldest_unfinished(), Some(&seq(1)));
        // With a budget of 4, only record 1 (the head) may start, alone.
        assert_eq!(frontier.dispatch_allowance(&seq(6), 1, 4), 0);
        assert_eq!(frontier.dispatch_allowance(&seq(1), 2, 4), 1);
        assert_eq!(frontier.dispatch_allowance(&seq(6), 1, 5), 1);
        assert!(frontier.precedes_dispatched(&seq(2)) && !frontier.precedes_dispatched(&seq(6)));
        frontier.complete(&seq(1)).unwrap();
        frontier.complete(&seq(2)).unwrap();
        assert_eq!((frontier.exposed(), frontier.checkpoint()), (0, Some(&seq(5))));
        assert_eq!(frontier.oldest_unfinished(), Some(&seq(6)));
    }

    proptest! {
        /// Lanes that dispatch only what `dispatch_allowance` allows never expose more than the
        /// budget plus one record, and always finish (the head record is never held back).
        #[test]
        fn dispatch_budget_bounds_redelivery_without_deadlock(
            lanes_of in proptest::collection::vec(0usize..4, 1..120),
            finish_order in proptest::collection::vec(0usize..4, 1..400),
            batch in 1usize..6,
        ) {
            let budget = 4 * batch;
            let mut frontier = Frontier::new(None);
            let mut queues: Vec<VecDeque<u64>> = vec![VecDeque::new(); 4];
            for (i, lane) in lanes_of.iter().enumerate() {
                frontier.track(seq(i as u64)).unwrap();
                queues[*lane].push_back(i as u64);
            }
            let mut in_flight: Vec<Vec<u64>> = vec![Vec::new(); 4];
            let mut picks = finish_order.iter().cycle();
            for _ in 0..10_000 {
                for lane in 0..4 {
                    let Some(&first) = queues[lane].front() else { continue };
                    let len = frontier.dispatch_allowance(&seq(first), queues[lane].len().min(batch), budget);
                    if in_flight[lane].is_empty() && len > 0 {
                        in_flight[lane] = queues[lane].drain(..len).collect();
                        for n in &in_flight[lane] {
                            frontier.dispatch(&seq(*n)).unwrap();
                        }
                        prop_assert!(frontier.exposed() <= budget + 1);
                    }
                }
                if in_flight.iter().all(Vec::is_empty) {
                    prop_assert!(queues.iter().all(VecDeque::is_empty), "stuck with records queued");
                    break;
                }
                let busy: Vec<usize> = (0..4).filter(|l| !in_flight[*l].is_empty()).collect();
                let lane = busy[picks.next().unwrap() % busy.len()];
                for n in std::mem::take(&mut in_flight[lane]) {
                    frontier.complete(&seq(n)).unwrap();
                }
            }
            prop_assert!(frontier.is_drained());
            prop_assert_eq!(frontier.exposed(), 0);
        }

        /// For any completion order the checkpoint equals the longest final prefix and never
        /// moves backwards.
        #[test]
        fn checkpoint_is_the_longest_final_prefix(
            order in (1usize..60).prop_flat_map(|n| Just((0..n).collect::<Vec<_>>()).prop_shuffle()),
        ) {
            let n = order.len();
            let mut frontier = Frontier::new(None);
            for i in 0..n {
                frontier.track(seq(i as u64 * 3 + 1)).unwrap();
            }
            let mut done = vec![false; n];
            let mut previous: Option<SequenceNumber> = None;
            for i in order {
                let moved = frontier.complete(&seq(i as u64 * 3 + 1)).unwrap();
                done[i] = true;
                let prefix = done.iter().take_while(|d| **d).count();
                let expected = prefix.checked_sub(1).map(|last| seq(last as u64 * 3 + 1));
                prop_assert_eq!(frontier.checkpoint(), expected.as_ref());
                prop_assert_eq!(moved.is_some(), expected != previous);
                prop_assert!(expected >= previous);
                previous = expected;
            }
            prop_assert!(frontier.is_drained());
        }
    }
}
