//! The shard checkpoint when records complete out of order.
//!
//! Records are read from a shard in order and handed to lanes ([`crate::Lanes`]); with a
//! parallelization factor above 1, a later record can finish before an earlier one. The
//! checkpoint may only name a record when **every** earlier record of the shard is final
//! (delivered, filtered out, or discarded after failure handling), otherwise a restart from the
//! checkpoint would skip the unfinished one. A [`Frontier`] tracks exactly that: the highest
//! sequence number whose whole prefix is final.
//!
//! Cost: `track` is O(1), `complete` is O(log n) to find the record plus amortised O(1) to advance.

use std::collections::VecDeque;

use crate::{Error, SequenceNumber};

/// Checkpoint tracker for one shard.
#[derive(Debug, Clone)]
pub struct Frontier {
    /// Tracked records not yet behind the checkpoint, in shard order, with "is final".
    pending: VecDeque<(SequenceNumber, bool)>,
    /// Highest sequence number whose prefix is final (the value to store).
    checkpoint: Option<SequenceNumber>,
    /// Last tracked sequence number, to enforce shard order.
    last: Option<SequenceNumber>,
}

impl Frontier {
    /// A tracker for a shard read from just after `checkpoint` (`None` when reading from a
    /// sentinel position such as `TRIM_HORIZON`).
    pub fn new(checkpoint: Option<SequenceNumber>) -> Self {
        Frontier {
            pending: VecDeque::new(),
            last: checkpoint.clone(),
            checkpoint,
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
        self.pending.push_back((sequence_number, false));
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
        let index = self
            .pending
            .binary_search_by(|(s, _)| s.cmp(sequence_number))
            .map_err(|_| Error::UnknownSequence(sequence_number.clone()))?;
        let entry = &mut self.pending[index];
        if entry.1 {
            return Err(Error::UnknownSequence(sequence_number.clone()));
        }
        entry.1 = true;
        let mut advanced = None;
        while let Some((_, true)) = self.pending.front() {
            advanced = self.pending.pop_front().map(|(s, _)| s);
        }
        if advanced.is_some() {
            self.checkpoint = advanced.clone();
        }
        Ok(advanced)
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

    proptest! {
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
