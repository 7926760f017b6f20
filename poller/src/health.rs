//! What each mapping's tasks report about their own health, for `/readyz` and the exit status.
//!
//! Workers record facts as they happen (a poll that succeeded or failed, an invoke that reached the
//! function or did not, a worker that failed and was restarted, a mapping that stopped on a fatal
//! error); readers take a [`HealthSnapshot`] and decide from it with [`readiness`], a pure function.
//! Recording is a few atomic stores, cheap enough for every poll.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a mapping is in its life.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum MappingState {
    /// Connecting its source and target.
    Starting,
    /// Connected and polling.
    Running,
    /// `Enabled: false` or `State: Disabled`: not polled, on purpose.
    Disabled,
    /// Still running, but making no progress until something outside is repaired (a corrupt lease
    /// row, say): not ready, yet not a reason to stop the process, since the repair needs no restart.
    Degraded(String),
    /// Stopped on an error it cannot recover from.
    Failed(String),
    /// Stopped after shutdown.
    Stopped,
}

/// One mapping's health, shared by its tasks.
#[derive(Debug)]
pub struct MappingHealth {
    pub uuid: String,
    state: Mutex<MappingState>,
    /// Epoch milliseconds of the last successful poll (receive or GetRecords, empty or not); 0: never.
    last_poll_ms: AtomicU64,
    /// Epoch milliseconds of the last invoke that reached the function (it ran, successfully or not).
    last_invoke_ms: AtomicU64,
    /// Workers (SQS lanes, shard workers) that failed and were restarted.
    worker_failures: AtomicU64,
    /// The last worker failure, for the readiness body.
    last_failure: Mutex<Option<String>>,
    /// Epoch milliseconds of the first failed poll since the last successful one; 0: polls succeed.
    polls_failing_since_ms: AtomicU64,
    /// The last poll error, for the readiness body.
    last_poll_error: Mutex<Option<String>>,
    /// Epoch milliseconds of the first invoke request that did not reach the function (transport
    /// error, 5xx, throttle) since the last one that did; 0: invokes reach the function.
    invokes_failing_since_ms: AtomicU64,
    /// Records in hand abandoned at the drain deadline (delivered again later, never lost).
    abandoned: AtomicU64,
}

/// A point-in-time copy of a [`MappingHealth`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HealthSnapshot {
    pub uuid: String,
    #[serde(flatten)]
    pub state: MappingState,
    pub last_poll_ms: Option<u64>,
    pub last_invoke_ms: Option<u64>,
    pub worker_failures: u64,
    pub last_failure: Option<String>,
    pub polls_failing_since_ms: Option<u64>,
    pub last_poll_error: Option<String>,
    pub invokes_failing_since_ms: Option<u64>,
    pub abandoned: u64,
}

impl MappingHealth {
    pub fn new(uuid: impl Into<String>) -> MappingHealth {
        MappingHealth {
            uuid: uuid.into(),
            state: Mutex::new(MappingState::Starting),
            last_poll_ms: AtomicU64::new(0),
            last_invoke_ms: AtomicU64::new(0),
            worker_failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            polls_failing_since_ms: AtomicU64::new(0),
            last_poll_error: Mutex::new(None),
            invokes_failing_since_ms: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> MappingState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_state(&self, state: MappingState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// A poll of the source succeeded.
    pub fn polled(&self) {
        self.last_poll_ms.store(now_ms(), Ordering::Relaxed);
        self.polls_failing_since_ms.store(0, Ordering::Relaxed);
    }

    /// A poll of the source failed (it is retried).
    pub fn poll_failed(&self, error: impl Into<String>) {
        failing(&self.polls_failing_since_ms);
        *self.last_poll_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.into());
    }

    /// An invoke reached the function.
    pub fn invoked(&self) {
        self.last_invoke_ms.store(now_ms(), Ordering::Relaxed);
        self.invokes_failing_since_ms.store(0, Ordering::Relaxed);
    }

    /// An invoke request did not reach the function.
    pub fn invoke_failed(&self) {
        failing(&self.invokes_failing_since_ms);
    }

    /// `records` in hand were let go unprocessed at the drain deadline.
    pub fn abandoned(&self, records: usize) {
        self.abandoned.fetch_add(records as u64, Ordering::Relaxed);
    }

    /// A worker failed (and is being restarted).
    pub fn worker_failed(&self, reason: impl Into<String>) {
        self.worker_failures.fetch_add(1, Ordering::Relaxed);
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.into());
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let at = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|&ms| ms > 0);
        HealthSnapshot {
            uuid: self.uuid.clone(),
            state: self.state.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            last_poll_ms: at(&self.last_poll_ms),
            last_invoke_ms: at(&self.last_invoke_ms),
            worker_failures: self.worker_failures.load(Ordering::Relaxed),
            last_failure: self.last_failure.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            polls_failing_since_ms: at(&self.polls_failing_since_ms),
            last_poll_error: self.last_poll_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            invokes_failing_since_ms: at(&self.invokes_failing_since_ms),
            abandoned: self.abandoned.load(Ordering::Relaxed),
        }
    }
}

/// Mark the start of a run of failures, unless one is already running.
fn failing(since_ms: &AtomicU64) {
    since_ms
        .compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed)
        .ok();
}

/// The `/readyz` answer: ready when every mapping is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub mappings: Vec<MappingReadiness>,
}

/// One mapping's health and whether it counts as ready.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MappingReadiness {
    #[serde(flatten)]
    pub health: HealthSnapshot,
    pub ready: bool,
    /// Why not, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready: Option<String>,
}

/// Is the process ready? Every enabled mapping must have connected its source and target
/// (`Running`) and not be stuck: its polls of the source, or its invoke requests, must not have been
/// failing without a success for longer than `stale_after`. Disabled mappings do not count.
///
/// No mappings at all is not ready: the listener answers before the mappings are registered, and a
/// probe in that moment must not see a process that has not started anything as ready.
///
/// Failures, not silence, make a mapping stuck: a long poll may wait 20 s for nothing, and a batch
/// may keep a worker from polling for as long as the function runs (up to 15 minutes), so the time
/// since the last successful poll or invoke says nothing by itself.
pub fn readiness(mappings: Vec<HealthSnapshot>, now_ms: u64, stale_after: Duration) -> Readiness {
    let mappings: Vec<MappingReadiness> = mappings
        .into_iter()
        .map(|health| {
            let not_ready = not_ready(&health, now_ms, stale_after);
            MappingReadiness {
                ready: not_ready.is_none(),
                not_ready,
                health,
            }
        })
        .collect();
    Readiness {
        ready: !mappings.is_empty() && mappings.iter().all(|m| m.ready),
        mappings,
    }
}

fn not_ready(health: &HealthSnapshot, now_ms: u64, stale_after: Duration) -> Option<String> {
    let failing_for = |since: Option<u64>| {
        since
            .map(|since| Duration::from_millis(now_ms.saturating_sub(since)))
            .filter(|&d| d > stale_after)
    };
    match &health.state {
        MappingState::Disabled => None,
        MappingState::Starting => Some("connecting its source and target".to_owned()),
        MappingState::Stopped => Some("stopped".to_owned()),
        MappingState::Failed(reason) => Some(format!("failed: {reason}")),
        MappingState::Degraded(reason) => Some(format!("degraded: {reason}")),
        MappingState::Running => {
            let mut reasons = Vec::new();
            if let Some(d) = failing_for(health.polls_failing_since_ms) {
                reasons.push(format!(
                    "polls of the source have failed for {}s (limit {}s): {}",
                    d.as_secs(),
                    stale_after.as_secs(),
                    health.last_poll_error.as_deref().unwrap_or("unknown error")
                ));
            }
            if let Some(d) = failing_for(health.invokes_failing_since_ms) {
                reasons.push(format!(
                    "invoke requests have not reached the function for {}s (limit {}s)",
                    d.as_secs(),
                    stale_after.as_secs()
                ));
            }
            (!reasons.is_empty()).then(|| reasons.join("; "))
        }
    }
}

/// Every mapping's health in one process, in the order the mappings were given.
#[derive(Debug, Default)]
pub struct Health {
    mappings: Mutex<Vec<Arc<MappingHealth>>>,
}

impl Health {
    /// The health of mapping `uuid`: the same handle when asked again.
    pub fn mapping(&self, uuid: &str) -> Arc<MappingHealth> {
        let mut mappings = self.mappings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = mappings.iter().find(|m| m.uuid == uuid) {
            return found.clone();
        }
        let new = Arc::new(MappingHealth::new(uuid));
        mappings.push(new.clone());
        new
    }

    pub fn snapshot(&self) -> Vec<HealthSnapshot> {
        self.mappings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|m| m.snapshot())
            .collect()
    }
}

/// Epoch milliseconds now, the clock of [`HealthSnapshot`]'s timestamps.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_what_workers_report() {
        let health = Health::default();
        let m = health.mapping("m-1");
        assert_eq!(m.snapshot().state, MappingState::Starting);
        assert_eq!(m.snapshot().last_poll_ms, None);
        m.set_state(MappingState::Running);
        m.polled();
        m.invoked();
        m.worker_failed("lane panicked");
        let s = health.mapping("m-1").snapshot();
        assert_eq!(s.state, MappingState::Running);
        assert!(s.last_poll_ms.is_some() && s.last_invoke_ms.is_some());
        assert_eq!((s.worker_failures, s.last_failure.as_deref()), (1, Some("lane panicked")));
        assert_eq!(health.snapshot().len(), 1, "asking again gives the same handle");
        let json = serde_json::to_value(&s).expect("serializes");
        assert_eq!(json["state"], "running");
    }

    fn running() -> HealthSnapshot {
        let m = MappingHealth::new("m-1");
        m.set_state(MappingState::Running);
        m.snapshot()
    }

    const BOUND: Duration = Duration::from_secs(60);

    #[test]
    fn a_failure_run_starts_at_the_first_failure_and_ends_at_a_success() {
        let m = MappingHealth::new("m-1");
        m.poll_failed("first");
        let since = m.snapshot().polls_failing_since_ms.expect("failing");
        std::thread::sleep(Duration::from_millis(5));
        m.poll_failed("second");
        let s = m.snapshot();
        assert_eq!(s.polls_failing_since_ms, Some(since), "later failures keep the start");
        assert_eq!(s.last_poll_error.as_deref(), Some("second"));
        m.polled();
        assert_eq!(m.snapshot().polls_failing_since_ms, None);
        m.invoke_failed();
        assert!(m.snapshot().invokes_failing_since_ms.is_some());
        m.invoked();
        assert_eq!(m.snapshot().invokes_failing_since_ms, None);
    }

    #[test]
    fn running_mappings_are_ready_until_failures_outlast_the_bound() {
        let now = 1_000_000;
        assert!(readiness(vec![running()], now, BOUND).ready);
        let polls = HealthSnapshot {
            polls_failing_since_ms: Some(now - 60_000),
            last_poll_error: Some("NonExistentQueue".to_owned()),
            ..running()
        };
        assert!(readiness(vec![polls.clone()], now, BOUND).ready, "at the bound: still ready");
        let late = readiness(vec![polls], now + 1_000, BOUND);
        assert!(!late.ready);
        let why = late.mappings[0].not_ready.as_deref().expect("a reason");
        assert!(why.contains("polls of the source have failed for 61s") && why.contains("NonExistentQueue"), "{why}");

        let invokes = HealthSnapshot {
            invokes_failing_since_ms: Some(now - 61_000),
            ..running()
        };
        let r = readiness(vec![invokes], now, BOUND);
        assert!(!r.ready);
        assert!(r.mappings[0].not_ready.as_deref().is_some_and(|w| w.contains("invoke requests")));
    }

    #[test]
    fn states_other_than_running_decide_alone() {
        let now = 1_000_000;
        let of = |state| HealthSnapshot { state, ..running() };
        assert!(readiness(vec![of(MappingState::Disabled)], now, BOUND).ready, "disabled on purpose");
        for state in [
            MappingState::Starting,
            MappingState::Stopped,
            MappingState::Failed("all lanes failed".to_owned()),
        ] {
            assert!(!readiness(vec![of(state.clone())], now, BOUND).ready, "{state:?}");
        }
        let mixed = readiness(vec![running(), of(MappingState::Starting)], now, BOUND);
        assert!(!mixed.ready && mixed.mappings[0].ready && !mixed.mappings[1].ready);
        assert!(!readiness(vec![], now, BOUND).ready, "nothing registered yet: not started");
        let json = serde_json::to_value(readiness(vec![of(MappingState::Failed("x".to_owned()))], now, BOUND)).unwrap();
        assert_eq!(json["mappings"][0]["state"], "failed");
        assert_eq!(json["mappings"][0]["reason"], "x");
        assert_eq!(json["mappings"][0]["not_ready"], "failed: x");
    }
}
