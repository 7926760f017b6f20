//! Execution environments of one function: who is busy, who is idle, what counts as a cold start.
//!
//! Pure accounting; the caller passes the current time and holds the lock.

use std::time::{Duration, Instant};

/// The environments of one function.
#[derive(Debug)]
pub(crate) struct Pool {
    /// Maximum busy environments (reserved concurrency); `None` = unlimited.
    limit: Option<u32>,
    /// Idle environments older than this are dropped when the pool is next used.
    idle_expiry: Option<Duration>,
    /// Idle environments, oldest first. Reuse takes the most recent one, as Lambda tends to, so
    /// the warm set shrinks back after a burst and expiry can reclaim the rest.
    idle: Vec<IdleEnv>,
    busy: u32,
    next_id: u64,
    /// Environments with an id up to this one were retired by [`Pool::retire_all`] while busy: they
    /// are dropped when their invocation ends instead of becoming idle.
    retired_up_to: u64,
}

#[derive(Debug, Clone, Copy)]
struct IdleEnv {
    id: u64,
    since: Instant,
}

/// An environment handed to one invocation. Give it back with [`Pool::release`] or [`Pool::discard`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) env_id: u64,
    /// A new environment: the invocation pays the init duration.
    pub(crate) cold: bool,
}

impl Pool {
    pub(crate) fn new(limit: Option<u32>, idle_expiry: Option<Duration>) -> Pool {
        Pool {
            limit,
            idle_expiry,
            idle: Vec::new(),
            busy: 0,
            next_id: 0,
            retired_up_to: 0,
        }
    }

    /// Takes an idle environment or creates one; `None` means the concurrency limit is reached
    /// (a throttle).
    pub(crate) fn acquire(&mut self, now: Instant) -> Option<Lease> {
        self.expire(now);
        if self.limit.is_some_and(|limit| self.busy >= limit) {
            return None;
        }
        self.busy += 1;
        if let Some(env) = self.idle.pop() {
            return Some(Lease {
                env_id: env.id,
                cold: false,
            });
        }
        self.next_id += 1;
        Some(Lease {
            env_id: self.next_id,
            cold: true,
        })
    }

    /// A new concurrency limit (Lambda's `PutFunctionConcurrency`): invocations running above it
    /// finish, new ones are throttled until fewer are busy.
    pub(crate) fn set_limit(&mut self, limit: Option<u32>) {
        self.limit = limit;
    }

    /// The invocation finished; the environment becomes idle, unless it was retired meanwhile.
    pub(crate) fn release(&mut self, lease: Lease, now: Instant) {
        self.busy -= 1;
        if lease.env_id <= self.retired_up_to {
            return;
        }
        self.idle.push(IdleEnv {
            id: lease.env_id,
            since: now,
        });
    }

    /// The invocation finished and its environment is gone (Lambda recycles an environment whose
    /// invocation timed out), so the next invocation is cold.
    pub(crate) fn discard(&mut self, _lease: Lease) {
        self.busy -= 1;
    }

    /// Drops every environment: idle ones now, busy ones when their invocation ends, so that every
    /// invocation that starts afterwards is cold (as after a function update, when Lambda lets
    /// in-flight invocations finish on the old environments and starts new ones).
    pub(crate) fn retire_all(&mut self) {
        self.idle.clear();
        self.retired_up_to = self.next_id;
    }

    /// Environments running an invocation now.
    /// The concurrency limit now.
    pub(crate) fn limit(&self) -> Option<u32> {
        self.limit
    }

    pub(crate) fn busy(&self) -> u32 {
        self.busy
    }

    /// Environments that exist now, busy or idle.
    pub(crate) fn environments(&self) -> u32 {
        self.busy + self.idle.len() as u32
    }

    fn expire(&mut self, now: Instant) {
        if let Some(expiry) = self.idle_expiry {
            self.idle
                .retain(|env| now.duration_since(env.since) < expiry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_use_is_cold_reuse_is_warm() {
        let now = Instant::now();
        let mut pool = Pool::new(None, None);
        let a = pool.acquire(now).unwrap();
        assert_eq!(
            a,
            Lease {
                env_id: 1,
                cold: true
            }
        );
        pool.release(a, now);
        assert_eq!(
            pool.acquire(now).unwrap(),
            Lease {
                env_id: 1,
                cold: false
            }
        );
    }

    #[test]
    fn concurrent_invocations_each_get_an_environment() {
        let now = Instant::now();
        let mut pool = Pool::new(None, None);
        let leases: Vec<Lease> = (0..3).map(|_| pool.acquire(now).unwrap()).collect();
        assert!(leases.iter().all(|l| l.cold));
        assert_eq!((pool.busy(), pool.environments()), (3, 3));
        for lease in leases {
            pool.release(lease, now);
        }
        assert_eq!((pool.busy(), pool.environments()), (0, 3));
        // The most recently released environment is reused first.
        assert_eq!(
            pool.acquire(now).unwrap(),
            Lease {
                env_id: 3,
                cold: false
            }
        );
    }

    #[test]
    fn limit_throttles_only_while_busy() {
        let now = Instant::now();
        let mut pool = Pool::new(Some(2), None);
        let a = pool.acquire(now).unwrap();
        let _b = pool.acquire(now).unwrap();
        assert_eq!(pool.acquire(now), None);
        pool.release(a, now);
        assert_eq!(
            pool.acquire(now).unwrap(),
            Lease {
                env_id: 1,
                cold: false
            }
        );
    }

    #[test]
    fn a_changed_limit_applies_to_the_next_invocation() {
        let now = Instant::now();
        let mut pool = Pool::new(Some(0), None);
        assert_eq!(pool.acquire(now), None);
        pool.set_limit(Some(1));
        let a = pool.acquire(now).unwrap();
        assert_eq!(pool.acquire(now), None);
        pool.set_limit(Some(0));
        pool.release(a, now);
        assert_eq!(pool.acquire(now), None);
    }

    #[test]
    fn zero_limit_throttles_everything() {
        assert_eq!(Pool::new(Some(0), None).acquire(Instant::now()), None);
    }

    #[test]
    fn idle_environments_expire() {
        let start = Instant::now();
        let mut pool = Pool::new(None, Some(Duration::from_secs(60)));
        let a = pool.acquire(start).unwrap();
        pool.release(a, start);
        let warm = pool.acquire(start + Duration::from_secs(59)).unwrap();
        assert!(!warm.cold);
        pool.release(warm, start + Duration::from_secs(59));
        let cold = pool.acquire(start + Duration::from_secs(119)).unwrap();
        assert_eq!(
            cold,
            Lease {
                env_id: 2,
                cold: true
            }
        );
        assert_eq!(pool.environments(), 1);
    }

    #[test]
    fn discarded_and_cleared_environments_are_not_reused() {
        let now = Instant::now();
        let mut pool = Pool::new(None, None);
        let a = pool.acquire(now).unwrap();
        pool.discard(a);
        let b = pool.acquire(now).unwrap();
        assert_eq!(
            b,
            Lease {
                env_id: 2,
                cold: true
            }
        );
        pool.release(b, now);
        pool.retire_all();
        assert_eq!(
            pool.acquire(now).unwrap(),
            Lease {
                env_id: 3,
                cold: true
            }
        );
    }

    #[test]
    fn environments_busy_when_retired_are_not_reused() {
        let now = Instant::now();
        let mut pool = Pool::new(None, None);
        let busy = pool.acquire(now).unwrap();
        pool.retire_all();
        pool.release(busy, now);
        assert_eq!(pool.environments(), 0);
        assert!(pool.acquire(now).unwrap().cold, "the environment busy at retirement is gone");
    }
}
