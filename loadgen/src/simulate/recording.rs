//! What the simulator observed: always-on counters and the opt-in invocation log.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Counters of every function, as served at `GET /_sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub functions: BTreeMap<String, FunctionStats>,
}

/// Counters of one function since start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionStats {
    /// Invocations that ran (throttles and `DryRun` excluded), `Event` ones included.
    pub invocations: u64,
    /// Invocations that raised an unhandled error, timeouts included.
    pub errors: u64,
    /// Of `errors`, those that timed out.
    pub timeouts: u64,
    /// Invocations refused with 429 (for `Event`: attempts throttled, retried later as Lambda does).
    pub throttles: u64,
    /// Invocations that created an execution environment.
    pub cold_starts: u64,
    /// Records of ESM events the function processed successfully.
    pub records_ok: u64,
    /// Records of ESM events reported failed, or in an invocation that failed as a whole.
    pub records_failed: u64,
    /// Gauge: invocations running now (not cleared by a reset).
    pub concurrency: u32,
    /// Gauge: execution environments that exist now, busy or idle.
    pub environments: u32,
}

/// The monotonic counters of [`FunctionStats`], updated lock-free on the hot path.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) invocations: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) throttles: AtomicU64,
    pub(crate) cold_starts: AtomicU64,
    pub(crate) records_ok: AtomicU64,
    pub(crate) records_failed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn all(&self) -> [&AtomicU64; 7] {
        [
            &self.invocations,
            &self.errors,
            &self.timeouts,
            &self.throttles,
            &self.cold_starts,
            &self.records_ok,
            &self.records_failed,
        ]
    }

    pub(crate) fn reset(&self) {
        for counter in self.all() {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// A snapshot, with the pool gauges filled in by the caller.
    pub(crate) fn snapshot(&self, concurrency: u32, environments: u32) -> FunctionStats {
        let [
            invocations,
            errors,
            timeouts,
            throttles,
            cold_starts,
            records_ok,
            records_failed,
        ] = self.all().map(|c| c.load(Ordering::Relaxed));
        FunctionStats {
            invocations,
            errors,
            timeouts,
            throttles,
            cold_starts,
            records_ok,
            records_failed,
            concurrency,
            environments,
        }
    }
}

/// One invocation, as recorded when `record = true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    /// Order of completion, from 1.
    pub seq: u64,
    /// The function name (ARNs and `:qualifier` suffixes stripped).
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    pub invocation_type: InvocationType,
    /// Which route was called.
    pub endpoint: Endpoint,
    /// The `X-Amzn-RequestId` of the response, also in the log tail.
    pub request_id: String,
    /// Wall-clock arrival time, milliseconds since the Unix epoch.
    pub received_at_unix_ms: u64,
    /// Arrival, milliseconds since the simulator started (monotonic).
    pub received_at_ms: f64,
    /// The request payload as parsed JSON.
    pub payload: Value,
    pub result: InvocationResult,
    /// The response body text (empty for throttles).
    pub response: String,
    pub cold_start: bool,
    /// Billed-style duration: stall wait plus execution, without init, as measured.
    pub duration_ms: f64,
    /// What the invocation was to take: the stall wait plus the latency drawn (or the timeout).
    /// `duration_ms` is this plus whatever the machine added.
    pub planned_ms: f64,
    /// Init duration, on cold starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_duration_ms: Option<f64>,
    /// Ids of records the function processed successfully (ESM events only).
    pub records_ok: Vec<String>,
}

/// How an invocation ended, from the function's side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InvocationResult {
    /// Returned normally with no failed records.
    Success,
    /// Returned `batchItemFailures` listing these ids.
    Partial { failed: Vec<String> },
    /// Returned a rule's literal response.
    Responded,
    /// Raised an error (`Sandbox.Timedout` for timeouts).
    Error {
        error_type: String,
        error_message: String,
    },
    /// Refused with 429; the function did not run.
    Throttled,
}

/// `X-Amz-Invocation-Type` values that run the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvocationType {
    RequestResponse,
    Event,
}

/// The route an invocation came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /2015-03-31/functions/{name}/invocations`
    Invoke,
    /// `POST /http/{name}`
    Http,
}

/// The opt-in invocation log.
#[derive(Debug)]
pub(crate) struct Recorder {
    enabled: bool,
    log: Mutex<Vec<Invocation>>,
}

impl Recorder {
    pub(crate) fn new(enabled: bool) -> Recorder {
        Recorder {
            enabled,
            log: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Appends `invocation`, numbering it. Does nothing when recording is off.
    pub(crate) fn push(&self, mut invocation: Invocation) {
        if !self.enabled {
            return;
        }
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        invocation.seq = log.len() as u64 + 1;
        log.push(invocation);
    }

    pub(crate) fn all(&self) -> Vec<Invocation> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn clear(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
