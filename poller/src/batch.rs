//! Batch assembly: when a gathered set of records becomes one invocation.
//!
//! AWS invokes when any of three limits is reached (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventsourcemapping.html#invocation-eventsourcemapping-batching>): `BatchSize` records, the
//! batching window, or a payload that would pass 6 MB. This module holds that decision and nothing else —
//! no I/O, time is passed in — so it can be tested exhaustively.
//!
//! The window opens with the first record of a batch (not when the previous invoke ended): a batch that
//! waits for nothing is never delayed, and a trickle of records is still grouped. With a window of 0 the
//! batch is ready as soon as it holds a record, so one poll makes one invocation, as on AWS.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use esm_events::envelope::Envelope;

/// The three limits of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `BatchSize`.
    pub max_records: usize,
    /// Payload cap in bytes (6 MB for a synchronous invoke).
    pub max_payload_bytes: usize,
    /// `MaximumBatchingWindowInSeconds`.
    pub window: Duration,
    /// The JSON around the records, which counts toward the payload cap.
    pub envelope: Envelope,
}

/// Records being gathered for one invocation, each with its encoded length.
#[derive(Debug)]
pub struct Batcher<T> {
    limits: Limits,
    items: Vec<T>,
    /// Sum of the encoded lengths of `items`, kept as records come so that checking the payload cap is
    /// O(1) per record (a 10,000-record batch would otherwise add up its lengths 10,000 times).
    bytes: usize,
    opened_at: Option<Instant>,
    /// A record was refused for size: the batch cannot take more.
    full: bool,
}

impl<T> Batcher<T> {
    pub fn new(limits: Limits) -> Self {
        Batcher {
            limits,
            items: Vec::new(),
            bytes: 0,
            opened_at: None,
            full: false,
        }
    }

    /// The payload length this batch plus one more record of `len` bytes would have.
    fn payload_len_with(&self, len: usize) -> usize {
        self.limits.envelope.payload_len_of(self.items.len() + 1, self.bytes + len)
    }

    /// Add a record of `encoded_len` bytes. Gives it back when it would break the record or payload limit;
    /// it then belongs to the next batch. An empty batch takes any record, so a record larger than the
    /// cap is still delivered (and the invoke reports the size error, as on AWS).
    pub fn push(&mut self, item: T, encoded_len: usize, now: Instant) -> Result<(), T> {
        if !self.items.is_empty()
            && (self.items.len() >= self.limits.max_records
                || self.payload_len_with(encoded_len) > self.limits.max_payload_bytes)
        {
            self.full = true;
            return Err(item);
        }
        self.opened_at.get_or_insert(now);
        self.items.push(item);
        self.bytes += encoded_len;
        Ok(())
    }

    /// Push from the front of `queue` until it is empty or the batch refuses a record.
    pub fn fill_from(&mut self, queue: &mut VecDeque<(T, usize)>, now: Instant) {
        while let Some((item, len)) = queue.pop_front() {
            if let Err(item) = self.push(item, len, now) {
                queue.push_front((item, len));
                return;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many more records the batch may take by count.
    pub fn room(&self) -> usize {
        if self.full {
            0
        } else {
            self.limits.max_records.saturating_sub(self.items.len())
        }
    }

    /// When the window closes, if the batch has opened.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.limits.window)
    }

    /// True when the batch must be invoked now.
    pub fn is_ready(&self, now: Instant) -> bool {
        !self.items.is_empty()
            && (self.room() == 0 || self.deadline().is_some_and(|d| now >= d))
    }

    /// Hand the records over and start a new, empty batch.
    pub fn take(&mut self) -> Vec<T> {
        self.bytes = 0;
        self.opened_at = None;
        self.full = false;
        std::mem::take(&mut self.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(max_records: usize, max_payload_bytes: usize, window_ms: u64) -> Limits {
        Limits {
            max_records,
            max_payload_bytes,
            window: Duration::from_millis(window_ms),
            envelope: Envelope::records(),
        }
    }

    #[test]
    fn window_zero_is_ready_with_one_record() {
        let now = Instant::now();
        let mut b = Batcher::new(limits(10, 1000, 0));
        assert!(!b.is_ready(now));
        b.push(1, 10, now).unwrap();
        assert!(b.is_ready(now));
    }

    #[test]
    fn window_opens_with_the_first_record() {
        let t0 = Instant::now();
        let mut b = Batcher::new(limits(10, 1000, 500));
        assert_eq!(b.deadline(), None);
        b.push(1, 10, t0 + Duration::from_millis(100)).unwrap();
        assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(600)));
        assert!(!b.is_ready(t0 + Duration::from_millis(599)));
        assert!(b.is_ready(t0 + Duration::from_millis(600)));
    }

    #[test]
    fn count_limit_makes_it_ready_and_refuses_more() {
        let now = Instant::now();
        let mut b = Batcher::new(limits(2, 1000, 10_000));
        b.push(1, 1, now).unwrap();
        assert_eq!(b.room(), 1);
        b.push(2, 1, now).unwrap();
        assert!(b.is_ready(now));
        assert_eq!(b.push(3, 1, now), Err(3));
        assert_eq!(b.take(), vec![1, 2]);
        assert!(b.is_empty());
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn payload_cap_counts_the_envelope() {
        let now = Instant::now();
        // Two records of 10 bytes: payload = envelope + 20 + one comma.
        let two = Envelope::records().payload_len([10, 10]);
        let mut b = Batcher::new(limits(100, two, 10_000));
        b.push('a', 10, now).unwrap();
        b.push('b', 10, now).unwrap();
        assert_eq!(b.push('c', 1, now), Err('c'));
        assert!(b.is_ready(now), "a refused record closes the batch");
    }

    #[test]
    fn oversized_record_still_goes_alone() {
        let now = Instant::now();
        let mut b = Batcher::new(limits(10, 100, 10_000));
        b.push("big", 500, now).unwrap();
        assert_eq!(b.push("next", 1, now), Err("next"));
    }

    #[test]
    fn fill_from_keeps_the_refused_record_first() {
        let now = Instant::now();
        let mut b = Batcher::new(limits(2, 1000, 0));
        let mut q: VecDeque<(u8, usize)> = [(1, 1), (2, 1), (3, 1)].into_iter().collect();
        b.fill_from(&mut q, now);
        assert_eq!(b.take(), vec![1, 2]);
        assert_eq!(q.into_iter().map(|(i, _)| i).collect::<Vec<_>>(), vec![3]);
    }

    proptest! {
        /// Whatever the record sizes, a batch never breaks a limit unless it holds a single record, takes
        /// every record it can, and feeding records through batches loses and reorders nothing.
        #[test]
        fn batches_respect_limits_and_keep_order(
            sizes in proptest::collection::vec(1usize..400, 0..200),
            max_records in 1usize..20,
            cap in 50usize..2000,
        ) {
            let now = Instant::now();
            let mut q: VecDeque<(usize, usize)> = sizes.iter().copied().enumerate().collect();
            let mut b = Batcher::new(limits(max_records, cap, 0));
            let mut seen = Vec::new();
            while !q.is_empty() {
                b.fill_from(&mut q, now);
                let batch = b.take();
                prop_assert!(!batch.is_empty());
                // And it is full: the next record would have broken a limit.
                if let Some(&(next, _)) = q.front() {
                    let with_next = batch.iter().chain([&next]).map(|&i| sizes[i]);
                    prop_assert!(
                        batch.len() == max_records || Envelope::records().payload_len(with_next) > cap
                    );
                }
                if batch.len() > 1 {
                    prop_assert!(batch.len() <= max_records);
                    prop_assert!(Envelope::records().payload_len(batch.iter().map(|&i| sizes[i])) <= cap);
                }
                seen.extend(batch);
            }
            prop_assert_eq!(seen, (0..sizes.len()).collect::<Vec<_>>());
        }
    }
}
