//! What each mapping's tasks report about their own health, for `/readyz` and the exit status.
//!
//! Workers record facts as they happen (a poll that succeeded, an invoke that reached the function, a
//! worker that failed and was restarted, a mapping that stopped on a fatal error); readers take a
//! [`HealthSnapshot`] and decide from it. Recording is a few atomic stores, cheap enough for every poll.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

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
        }
    }

    pub fn set_state(&self, state: MappingState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// A poll of the source succeeded.
    pub fn polled(&self) {
        self.last_poll_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// An invoke reached the function.
    pub fn invoked(&self) {
        self.last_invoke_ms.store(now_ms(), Ordering::Relaxed);
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

fn now_ms() -> u64 {
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
}
