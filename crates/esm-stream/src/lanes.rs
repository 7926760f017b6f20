//! `ParallelizationFactor`: concurrent batches from one shard, ordered per partition key.
//!
//! AWS: up to N (1..=10) batches of one shard are in flight, and Lambda "still ensures in-order
//! processing at the partition-key level" (docs/aws-reference.md#stream-ordering). We hash each record's
//! partition key to one of N lanes; a lane is a FIFO queue with at most one batch in flight, so
//! two records with the same key are always invoked in shard order, and a failing batch (retries,
//! bisect) blocks only its own lane.
//!
//! The hash is 64-bit FNV-1a of the key bytes, modulo N. It is fixed here (not `std`'s
//! `DefaultHasher`, whose algorithm may change between Rust releases) so a key maps to the same
//! lane in every process and version. For DynamoDB Streams the caller passes a canonical byte
//! encoding of the item's `Keys`.
//!
//! The shard checkpoint across lanes is the job of [`crate::Frontier`].

use std::collections::VecDeque;

use crate::Error;

/// Upper bound of `ParallelizationFactor` accepted by AWS.
pub const MAX_PARALLELIZATION_FACTOR: u32 = 10;

/// Per-shard lane queues. `T` is whatever the poller keeps per record.
#[derive(Debug)]
pub struct Lanes<T> {
    lanes: Vec<Lane<T>>,
}

#[derive(Debug)]
struct Lane<T> {
    queue: VecDeque<T>,
    busy: bool,
}

impl<T> Lanes<T> {
    /// `parallelization_factor` lanes; errors unless it is 1..=10.
    pub fn new(parallelization_factor: u32) -> Result<Self, Error> {
        if !(1..=MAX_PARALLELIZATION_FACTOR).contains(&parallelization_factor) {
            return Err(Error::ParallelizationFactor(parallelization_factor));
        }
        let lanes = (0..parallelization_factor)
            .map(|_| Lane {
                queue: VecDeque::new(),
                busy: false,
            })
            .collect();
        Ok(Lanes { lanes })
    }

    /// Number of lanes (the parallelization factor).
    pub fn lane_count(&self) -> usize {
        self.lanes.len()
    }

    /// The lane of a partition key. Stable across processes and releases.
    pub fn lane_for(&self, partition_key: &[u8]) -> usize {
        (fnv1a64(partition_key) % self.lanes.len() as u64) as usize
    }

    /// Queues a record (in shard order) on its key's lane and returns the lane.
    pub fn push(&mut self, partition_key: &[u8], record: T) -> usize {
        let lane = self.lane_for(partition_key);
        self.lanes[lane].queue.push_back(record);
        lane
    }

    /// Starts the next batch of `lane`: up to `max_records` records whose summed `size_of` stays
    /// within `max_bytes` (always at least one record, so an oversized record still moves).
    /// Returns `None` if the lane already has a batch in flight or nothing is queued.
    ///
    /// # Panics
    /// If `lane >= lane_count()` or `max_records == 0`.
    pub fn take_batch(
        &mut self,
        lane: usize,
        max_records: usize,
        max_bytes: usize,
        size_of: impl Fn(&T) -> usize,
    ) -> Option<Vec<T>> {
        assert!(max_records > 0, "max_records must be positive");
        let lane = &mut self.lanes[lane];
        if lane.busy || lane.queue.is_empty() {
            return None;
        }
        let mut count = 0;
        let mut bytes = 0usize;
        for record in &lane.queue {
            let size = size_of(record);
            if count == max_records || (count > 0 && bytes.saturating_add(size) > max_bytes) {
                break;
            }
            bytes = bytes.saturating_add(size);
            count += 1;
        }
        lane.busy = true;
        Some(lane.queue.drain(..count).collect())
    }

    /// Marks the batch of `lane` as finished (succeeded or discarded), so the lane can start the
    /// next one.
    ///
    /// # Panics
    /// If the lane has no batch in flight: that is a bookkeeping bug in the caller.
    pub fn finish_batch(&mut self, lane: usize) {
        let lane = &mut self.lanes[lane];
        assert!(
            lane.busy,
            "finish_batch on a lane without a batch in flight"
        );
        lane.busy = false;
    }

    /// Lanes that have queued records and no batch in flight, in lane order.
    pub fn ready_lanes(&self) -> impl Iterator<Item = usize> + '_ {
        self.lanes
            .iter()
            .enumerate()
            .filter(|(_, lane)| !lane.busy && !lane.queue.is_empty())
            .map(|(index, _)| index)
    }

    /// The records queued on `lane`, oldest first (to look at before taking a batch).
    ///
    /// # Panics
    /// If `lane >= lane_count()`.
    pub fn queue(&self, lane: usize) -> impl Iterator<Item = &T> + '_ {
        self.lanes[lane].queue.iter()
    }

    /// Records queued (not yet in a batch) over all lanes; the poller's read-ahead bound.
    pub fn queued(&self) -> usize {
        self.lanes.iter().map(|lane| lane.queue.len()).sum()
    }

    /// True when nothing is queued and no batch is in flight (e.g. before ending a shard).
    pub fn is_idle(&self) -> bool {
        self.lanes
            .iter()
            .all(|lane| !lane.busy && lane.queue.is_empty())
    }
}

/// 64-bit FNV-1a.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn factor_is_validated() {
        assert_eq!(
            Lanes::<()>::new(0).unwrap_err(),
            Error::ParallelizationFactor(0)
        );
        assert_eq!(
            Lanes::<()>::new(11).unwrap_err(),
            Error::ParallelizationFactor(11)
        );
        assert_eq!(Lanes::<()>::new(10).unwrap().lane_count(), 10);
    }

    #[test]
    fn fnv_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn factor_one_is_a_single_ordered_lane() {
        let mut lanes = Lanes::new(1).unwrap();
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(lanes.push(key.as_bytes(), i), 0);
        }
        assert_eq!(
            lanes.take_batch(0, 10, usize::MAX, |_| 1),
            Some(vec![0, 1, 2])
        );
    }

    #[test]
    fn keys_spread_over_all_lanes() {
        let lanes = Lanes::<()>::new(10).unwrap();
        let mut per_lane = [0u32; 10];
        for i in 0..10_000 {
            per_lane[lanes.lane_for(format!("key-{i}").as_bytes())] += 1;
        }
        // A uniform spread puts 1000 in each; allow a wide margin, this only guards against a
        // broken hash that leaves lanes empty.
        assert!(
            per_lane.iter().all(|&n| (700..1300).contains(&n)),
            "{per_lane:?}"
        );
    }

    #[test]
    fn one_batch_in_flight_per_lane() {
        let mut lanes = Lanes::new(2).unwrap();
        let lane = lanes.push(b"k", 1);
        lanes.push(b"k", 2);
        assert_eq!(lanes.take_batch(lane, 1, usize::MAX, |_| 1), Some(vec![1]));
        assert_eq!(
            lanes.take_batch(lane, 1, usize::MAX, |_| 1),
            None,
            "lane is busy"
        );
        assert_eq!(lanes.ready_lanes().count(), 0);
        lanes.finish_batch(lane);
        assert_eq!(lanes.ready_lanes().collect::<Vec<_>>(), vec![lane]);
        assert_eq!(lanes.take_batch(lane, 1, usize::MAX, |_| 1), Some(vec![2]));
        lanes.finish_batch(lane);
        assert!(lanes.is_idle());
    }

    #[test]
    fn byte_limit_cuts_batches_but_always_takes_one() {
        let mut lanes = Lanes::new(1).unwrap();
        for size in [4usize, 4, 4, 10] {
            lanes.push(b"k", size);
        }
        assert_eq!(lanes.take_batch(0, 10, 9, |s| *s), Some(vec![4, 4]));
        lanes.finish_batch(0);
        assert_eq!(lanes.take_batch(0, 10, 9, |s| *s), Some(vec![4]));
        lanes.finish_batch(0);
        assert_eq!(
            lanes.take_batch(0, 10, 9, |s| *s),
            Some(vec![10]),
            "oversized record alone"
        );
        assert_eq!(lanes.queued(), 0);
    }

    proptest! {
        /// Whatever the batch sizes and the order in which lanes are served, the records of one
        /// key come out in the order they were pushed, and no record is lost or duplicated.
        #[test]
        fn per_key_order_is_preserved(
            factor in 1u32..=10,
            keys in proptest::collection::vec(0u8..20, 0..200),
            batch in 1usize..8,
            picks in proptest::collection::vec(any::<proptest::sample::Index>(), 0..400),
        ) {
            let mut lanes = Lanes::new(factor).unwrap();
            for (position, key) in keys.iter().enumerate() {
                lanes.push(&[*key], (*key, position));
            }
            let mut seen: HashMap<u8, Vec<usize>> = HashMap::new();
            let mut delivered = 0;
            let mut picks = picks.into_iter();
            while !lanes.is_idle() {
                let ready: Vec<usize> = lanes.ready_lanes().collect();
                let lane = match picks.next() {
                    Some(index) => ready[index.index(ready.len())],
                    None => ready[0],
                };
                let records = lanes.take_batch(lane, batch, usize::MAX, |_| 1).unwrap();
                for (key, position) in records {
                    prop_assert_eq!(lanes.lane_for(&[key]), lane);
                    seen.entry(key).or_default().push(position);
                    delivered += 1;
                }
                lanes.finish_batch(lane);
            }
            prop_assert_eq!(delivered, keys.len());
            for positions in seen.values() {
                prop_assert!(positions.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
