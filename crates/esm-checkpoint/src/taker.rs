//! Which leases to take: KCL 2.x's lease taker (docs/leases.md) as pure
//! logic over [`LeaseStore::list`](crate::LeaseStore::list) results and the caller's clock.
//!
//! Expiry needs no synchronised clocks: every scan records, on *this* process's monotonic
//! clock, when each lease's counter was last seen to change. A lease whose counter has not
//! moved for [`TakerConfig::failover`] is expired, whoever owns it. That works with any store,
//! because the holder's renewals bump the counter.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use crate::{Checkpoint, Lease};

/// Timing and stealing knobs, KCL's defaults (`LeaseManagementConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakerConfig {
    /// A lease whose counter has not changed for this long is expired (KCL `failoverTimeMillis`).
    pub failover: Duration,
    /// Safety margin of the renew interval (KCL `epsilonMillis`).
    pub epsilon: Duration,
    /// Most leases stolen per scan (KCL `maxLeasesToStealAtOneTime`).
    pub max_steals: usize,
}

impl Default for TakerConfig {
    fn default() -> Self {
        TakerConfig {
            failover: Duration::from_secs(10),
            epsilon: Duration::from_millis(25),
            max_steals: 1,
        }
    }
}

impl TakerConfig {
    /// How often a holder renews each lease: `failover / 3 − epsilon` (3.308 s by default), so
    /// two renewals can fail before peers see the lease expire.
    pub fn renew_interval(&self) -> Duration {
        (self.failover / 3).saturating_sub(self.epsilon)
    }

    /// How often to list the leases and run [`LeaseTaker::plan`]: `(failover + epsilon) × 2`
    /// (20.05 s by default), so an expiry is seen within two scans.
    pub fn scan_interval(&self) -> Duration {
        (self.failover + self.epsilon) * 2
    }

    /// Leases unrenewed for this long (`3 × failover`) are taken first, whatever the target.
    fn very_old(&self) -> Duration {
        self.failover * 3
    }
}

/// A lease to take with [`LeaseStore::take`](crate::LeaseStore::take) and the counter to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    /// The shard id.
    pub lease_key: String,
    /// The counter seen in the scan.
    pub counter: u64,
}

/// One worker's view of one mapping's leases across scans.
#[derive(Debug)]
pub struct LeaseTaker {
    worker: String,
    config: TakerConfig,
    /// Per lease key: the last counter seen and when it last changed (`None`: never seen
    /// renewed, i.e. first seen without an owner).
    seen: HashMap<String, (u64, Option<Instant>)>,
}

impl LeaseTaker {
    /// A taker for `worker` (this process's lease owner id).
    pub fn new(worker: impl Into<String>, config: TakerConfig) -> Self {
        LeaseTaker {
            worker: worker.into(),
            config,
            seen: HashMap::new(),
        }
    }

    /// Records a scan made at `now` (all leases of the mapping) and returns the leases to take,
    /// in order; a `take` that fails with `Lost` only means another worker was faster.
    ///
    /// KCL 2.x rule: leases that are finished (`SHARD_END`) or wait for an unfinished parent
    /// are left out. `target = ceil(leases / workers)` (1 when there are more workers than
    /// leases), where workers are the owners of unexpired leases plus this one. Leases
    /// unrenewed for `3 × failover` are taken first regardless of the target, then other
    /// available (unowned or expired, ours included) leases up to the target. Only when nothing is available
    /// and this worker is below target does it steal from the most loaded worker:
    /// `min(needed, surplus, max_steals)` if that worker is above target, 1 if it is exactly at
    /// target and more than one is needed.
    pub fn plan(&mut self, leases: &[Lease], now: Instant) -> Vec<Take> {
        self.observe(leases, now);
        let by_key: HashMap<&str, &Lease> =
            leases.iter().map(|l| (l.lease_key.as_str(), l)).collect();
        let unfinished = |key: &String| {
            by_key
                .get(key.as_str())
                .is_some_and(|l| l.checkpoint != Checkpoint::ShardEnd)
        };
        let active: Vec<&Lease> = leases
            .iter()
            .filter(|l| l.checkpoint != Checkpoint::ShardEnd)
            .filter(|l| !l.parent_shard_ids.iter().any(unfinished))
            .collect();
        if active.is_empty() {
            return Vec::new();
        }

        // Our own expired leases are available too: their worker stopped when it could not renew
        // for the failover time (a lease store outage), and nobody else may have taken them since.
        let (mut available, held): (Vec<&Lease>, Vec<&Lease>) =
            active.iter().partition(|l| self.is_available(l, now));
        let mut counts: HashMap<&str, usize> = HashMap::from([(self.worker.as_str(), 0)]);
        for owner in held.iter().filter_map(|l| l.owner.as_deref()) {
            *counts.entry(owner).or_default() += 1;
        }
        // At least 1, since `active` is not empty.
        let target = active.len().div_ceil(counts.len());
        let my_count = counts[self.worker.as_str()];

        // A per-worker pseudo-random order, so racing workers go for different leases first.
        available.sort_by_key(|l| self.order(&l.lease_key));
        let (very_old, others): (Vec<&Lease>, Vec<&Lease>) =
            available.iter().partition(|l| self.is_very_old(l, now));
        let mut takes: Vec<&Lease> = very_old;
        let needed = target.saturating_sub(my_count + takes.len());
        takes.extend(others.into_iter().take(needed));

        if available.is_empty() && my_count < target {
            takes.extend(self.steals(&held, &counts, target, target - my_count));
        }
        takes
            .into_iter()
            .map(|l| Take {
                lease_key: l.lease_key.clone(),
                counter: l.counter,
            })
            .collect()
    }

    /// Leases to steal from the most loaded other worker (ties broken by name).
    fn steals<'a>(
        &self,
        held: &[&'a Lease],
        counts: &HashMap<&str, usize>,
        target: usize,
        needed: usize,
    ) -> Vec<&'a Lease> {
        let Some((victim, &count)) = counts
            .iter()
            .filter(|(owner, _)| **owner != self.worker)
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        else {
            return Vec::new();
        };
        let steal = if count > target {
            needed.min(count - target).min(self.config.max_steals)
        } else if count == target && needed > 1 {
            1.min(self.config.max_steals)
        } else {
            0
        };
        let mut victims: Vec<&Lease> = (held.iter().copied())
            .filter(|l| l.owner.as_deref() == Some(*victim))
            .collect();
        victims.sort_by_key(|l| self.order(&l.lease_key));
        victims.truncate(steal);
        victims
    }

    /// Updates when each counter last changed; forgets leases that are gone.
    fn observe(&mut self, leases: &[Lease], now: Instant) {
        let mut seen = HashMap::with_capacity(leases.len());
        for lease in leases {
            let changed_at = match self.seen.get(&lease.lease_key) {
                Some(&(counter, changed_at)) if counter == lease.counter => changed_at,
                Some(_) => Some(now),
                // First sight: renewed now if owned, never if free (KCL).
                None => lease.owner.is_some().then_some(now),
            };
            seen.insert(lease.lease_key.clone(), (lease.counter, changed_at));
        }
        self.seen = seen;
    }

    fn unrenewed_for_more_than(&self, lease: &Lease, limit: Duration, now: Instant) -> bool {
        match self.seen.get(&lease.lease_key) {
            Some((_, Some(changed_at))) => now.saturating_duration_since(*changed_at) > limit,
            _ => true,
        }
    }

    /// Free, or expired on our clock.
    fn is_available(&self, lease: &Lease, now: Instant) -> bool {
        lease.owner.is_none() || self.unrenewed_for_more_than(lease, self.config.failover, now)
    }

    fn is_very_old(&self, lease: &Lease, now: Instant) -> bool {
        self.unrenewed_for_more_than(lease, self.config.very_old(), now)
    }

    fn order(&self, lease_key: &str) -> u64 {
        let mut hasher = DefaultHasher::new();
        (self.worker.as_str(), lease_key).hash(&mut hasher);
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "me";

    fn lease(key: &str, owner: Option<&str>, counter: u64) -> Lease {
        Lease {
            lease_key: key.to_owned(),
            owner: owner.map(str::to_owned),
            counter,
            checkpoint: Checkpoint::TrimHorizon,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids: vec![],
            child_shard_ids: vec![],
        }
    }

    /// `n` leases `s0..`, owned as given (`None` = free), all at counter 1.
    fn leases(owners: &[Option<&str>]) -> Vec<Lease> {
        (owners.iter().enumerate())
            .map(|(i, owner)| lease(&format!("s{i}"), *owner, 1))
            .collect()
    }

    fn keys(takes: &[Take]) -> Vec<&str> {
        let mut keys: Vec<&str> = takes.iter().map(|t| t.lease_key.as_str()).collect();
        keys.sort();
        keys
    }

    fn bump(leases: &mut [Lease], owner: &str) {
        for lease in leases
            .iter_mut()
            .filter(|l| l.owner.as_deref() == Some(owner))
        {
            lease.counter += 1;
        }
    }

    #[test]
    fn default_intervals_match_kcl() {
        let config = TakerConfig::default();
        assert_eq!(config.renew_interval(), Duration::from_nanos(3_308_333_333));
        assert_eq!(config.scan_interval(), Duration::from_millis(20_050));
    }

    #[test]
    fn a_lone_worker_takes_every_free_lease_with_the_counter_it_saw() {
        let mut taker = LeaseTaker::new(ME, TakerConfig::default());
        let mut all = leases(&[None, None, None]);
        all[1].counter = 7;
        let takes = taker.plan(&all, Instant::now());
        assert_eq!(keys(&takes), ["s0", "s1", "s2"]);
        assert!(takes.contains(&Take {
            lease_key: "s1".into(),
            counter: 7
        }));
    }

    #[test]
    fn free_leases_are_taken_up_to_the_target() {
        let config = TakerConfig::default();
        let mut taker = LeaseTaker::new(ME, config.clone());
        let start = Instant::now();
        // Two workers, four leases, two held (and renewed) by the other, two just released.
        let mut all = leases(&[Some("other"), Some("other"), Some("x"), Some("x")]);
        taker.plan(&all, start);
        for lease in &mut all[2..] {
            lease.owner = None;
            lease.counter += 1;
        }
        let takes = taker.plan(&all, start + Duration::from_secs(1));
        assert_eq!(keys(&takes), ["s2", "s3"], "target = ceil(4 / 2) = 2");
        for lease in &mut all[2..] {
            lease.owner = Some(ME.into());
        }
        assert!(
            taker.plan(&all, start + Duration::from_secs(2)).is_empty(),
            "at target"
        );
    }

    #[test]
    fn leases_expire_only_when_their_counter_stops_moving_on_our_clock() {
        let config = TakerConfig::default();
        let mut taker = LeaseTaker::new(ME, config.clone());
        let start = Instant::now();
        let mut all = leases(&[Some("dead"), Some("alive"), Some(ME)]);
        assert!(
            taker.plan(&all, start).is_empty(),
            "owned leases are fresh when first seen"
        );
        assert!(
            taker.plan(&all, start + config.failover).is_empty(),
            "not expired before the failover time has passed"
        );
        bump(&mut all, "alive");
        bump(&mut all, ME);
        let takes = taker.plan(&all, start + config.failover + Duration::from_millis(1));
        assert_eq!(
            keys(&takes),
            ["s0"],
            "only the lease whose counter stood still"
        );
        assert_eq!(takes[0].counter, 1);
    }

    #[test]
    fn our_own_expired_leases_are_taken_back() {
        let config = TakerConfig::default();
        let mut taker = LeaseTaker::new(ME, config.clone());
        let start = Instant::now();
        // Our renewals failed (the store was unreachable) and the worker fenced itself; no peer
        // took the lease meanwhile.
        let all = leases(&[Some(ME), Some("other")]);
        assert!(taker.plan(&all, start).is_empty(), "both held, both fresh");
        let mut renewed = all.clone();
        bump(&mut renewed, "other");
        let takes = taker.plan(&renewed, start + config.failover + Duration::from_millis(1));
        assert_eq!(
            takes,
            [Take {
                lease_key: "s0".into(),
                counter: 1
            }],
            "ours, expired, with the counter seen"
        );
    }

    #[test]
    fn very_old_leases_are_taken_beyond_the_target() {
        let config = TakerConfig::default();
        let mut taker = LeaseTaker::new(ME, config.clone());
        let start = Instant::now();
        // Three workers' worth of leases; "dead" stopped renewing its three long ago.
        let mut all = leases(&[
            Some("dead"),
            Some("dead"),
            Some("dead"),
            Some("live"),
            Some("live"),
            Some(ME),
        ]);
        taker.plan(&all, start);
        bump(&mut all, "live");
        bump(&mut all, ME);
        let takes = taker.plan(&all, start + config.failover * 3 + Duration::from_millis(1));
        assert_eq!(
            keys(&takes),
            ["s0", "s1", "s2"],
            "all very old leases, although the target is 3 and we hold 1"
        );
    }

    #[test]
    fn expired_leases_are_taken_up_to_the_target_only() {
        let config = TakerConfig::default();
        let mut taker = LeaseTaker::new(ME, config.clone());
        let start = Instant::now();
        let mut all = leases(&[Some("dead"), Some("dead"), Some("dead"), Some("live")]);
        taker.plan(&all, start);
        bump(&mut all, "live");
        // Workers: live and me (dead's leases are expired) → target 2.
        let takes = taker.plan(&all, start + config.failover * 2);
        assert_eq!(takes.len(), 2, "{takes:?}");
    }

    #[test]
    fn steals_one_from_the_most_loaded_worker_only_when_nothing_is_available() {
        let mut taker = LeaseTaker::new(ME, TakerConfig::default());
        let now = Instant::now();
        let all = leases(&[
            Some("big"),
            Some("big"),
            Some("big"),
            Some("small"),
            Some(ME),
        ]);
        // Workers 3, target ceil(5 / 3) = 2: "big" has a surplus of 1, we need 1.
        let takes = taker.plan(&all, now);
        assert_eq!(takes.len(), 1);
        assert!(
            ["s0", "s1", "s2"].contains(&takes[0].lease_key.as_str()),
            "{takes:?}"
        );

        let mut with_free = all.clone();
        with_free.push(lease("s5", None, 0));
        let takes = LeaseTaker::new(ME, TakerConfig::default()).plan(&with_free, now);
        assert_eq!(keys(&takes), ["s5"], "a free lease instead of a steal");

        let balanced = leases(&[Some("a"), Some("a"), Some("b"), Some(ME)]);
        let takes = LeaseTaker::new(ME, TakerConfig::default()).plan(&balanced, now);
        assert!(
            takes.is_empty(),
            "we need 1 and the busiest is at target: {takes:?}"
        );

        let newcomer = leases(&[Some("a"), Some("a"), Some("a"), Some("a")]);
        let takes = LeaseTaker::new(ME, TakerConfig::default()).plan(&newcomer, now);
        assert_eq!(takes.len(), 1, "max_steals caps a surplus of 2");
    }

    #[test]
    fn finished_leases_and_children_of_unfinished_parents_are_left_alone() {
        let mut taker = LeaseTaker::new(ME, TakerConfig::default());
        let mut parent = lease("parent", Some("other"), 1);
        let mut child = lease("child", None, 0);
        child.parent_shard_ids = vec!["parent".into(), "gone".into()];
        let takes = taker.plan(&[parent.clone(), child.clone()], Instant::now());
        assert!(takes.is_empty(), "child waits, parent is held: {takes:?}");
        parent.checkpoint = Checkpoint::ShardEnd;
        let takes = taker.plan(&[parent, child], Instant::now());
        assert_eq!(keys(&takes), ["child"], "a finished parent is not taken");
    }
}
