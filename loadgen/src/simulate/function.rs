//! One simulated function at run time: its environments, random stream, rules and counters.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::config::FunctionConfig;
use super::event::Event;
use super::lock;
use super::pool::{Lease, Pool};
use super::recording::{Counters, FunctionStats, InvocationResult};
use super::rules::{RuleSet, Verdict};
use super::wire;

#[derive(Debug)]
pub(crate) struct Function {
    config: FunctionConfig,
    rules: RuleSet,
    rng: Mutex<StdRng>,
    pool: Mutex<Pool>,
    counters: Counters,
}

/// One finished invocation, from the function's side.
#[derive(Debug)]
pub(crate) struct Execution {
    pub(crate) result: InvocationResult,
    /// The response body text: the returned value, a rule's literal text, or the error object.
    pub(crate) body: String,
    /// Stall wait plus execution time, as in the `REPORT` line's `Duration`: measured, not the
    /// time drawn, so that the simulator is a ground truth for what a load generator measures.
    pub(crate) duration: Duration,
    /// Stall wait plus the latency drawn (or the timeout): what `duration` was to be.
    pub(crate) planned: Duration,
    /// Present exactly on cold starts.
    pub(crate) init_duration: Option<Duration>,
    /// Ids of ESM records processed successfully.
    pub(crate) records_ok: Vec<String>,
}

impl Execution {
    /// The handler raised (or timed out): `X-Amz-Function-Error: Unhandled`.
    pub(crate) fn is_error(&self) -> bool {
        matches!(self.result, InvocationResult::Error { .. })
    }
}

impl Function {
    /// `seed` is the simulator's; each function mixes in its name so functions with equal
    /// settings do not draw identical latencies.
    pub(crate) fn new(
        name: &str,
        config: FunctionConfig,
        rules: RuleSet,
        seed: Option<u64>,
    ) -> Function {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed ^ fnv1a(name.as_bytes())),
            None => StdRng::from_os_rng(),
        };
        Function {
            pool: Mutex::new(Pool::new(config.reserved_concurrency, config.idle_expiry)),
            config,
            rules,
            rng: Mutex::new(rng),
            counters: Counters::default(),
        }
    }

    pub(crate) fn config(&self) -> &FunctionConfig {
        &self.config
    }

    /// Changes the reserved concurrency while running (`None`: unlimited).
    pub(crate) fn set_reserved_concurrency(&self, limit: Option<u32>) {
        lock(&self.pool).set_limit(limit);
    }

    /// Reserved concurrency 0: the function cannot run at all.
    pub(crate) fn is_disabled(&self) -> bool {
        lock(&self.pool).limit() == Some(0)
    }

    /// Takes an execution environment, or counts a throttle and returns `None`.
    pub(crate) fn admit(&self) -> Option<Lease> {
        let lease = lock(&self.pool).acquire(Instant::now());
        if lease.is_none() {
            Counters::add(&self.counters.throttles, 1);
        }
        lease
    }

    /// Runs one invocation on `lease`'s environment: decides the outcome, sleeps for init, stall
    /// and latency, then returns the environment and counts. `since_start` is the arrival time
    /// relative to the simulator's start, for the stall schedule.
    ///
    /// The sleep ends at a deadline taken when the invocation starts, so the time spent deciding
    /// is part of the drawn duration rather than added to it, and the [`timer`](crate::timer)
    /// keeps to it within a fraction of a millisecond (tokio's timer adds up to 1 ms). The
    /// duration reported is the one measured.
    pub(crate) async fn run(
        &self,
        lease: Lease,
        payload: &Value,
        request_id: &str,
        since_start: Duration,
    ) -> Execution {
        let began = Instant::now();
        let config = &self.config;
        let event = Event::parse(payload);
        let verdict = self.rules.evaluate(&event);
        let (latency, init_duration, random_error) = {
            let mut rng = lock(&self.rng);
            let latency = config.latency.sample(&mut *rng);
            let init = lease.cold.then(|| config.cold_start.sample(&mut *rng));
            let random_error = config.error_rate > 0.0 && rng.random::<f64>() < config.error_rate;
            (latency, init, random_error)
        };
        let stall = config
            .stall
            .map_or(Duration::ZERO, |stall| stall.wait(since_start));
        let mut planned = stall.saturating_add(latency);
        let verdict = if planned > config.timeout {
            Verdict::Timeout
        } else {
            verdict
        };
        let timed_out = verdict == Verdict::Timeout;
        if timed_out {
            planned = config.timeout;
        }

        let init = init_duration.unwrap_or_default();
        let ends = began
            .checked_add(init.saturating_add(planned))
            .unwrap_or_else(far_future);
        crate::timer::sleep_until(ends).await;
        let duration = began.elapsed().saturating_sub(init);

        let (result, body, failed) = outcome(verdict, random_error, config, request_id);
        let records_ok: Vec<String> = match result {
            InvocationResult::Error { .. } => Vec::new(),
            _ => event
                .records
                .iter()
                .filter_map(|r| r.id.clone())
                .filter(|id| !failed.contains(id))
                .collect(),
        };

        {
            let mut pool = lock(&self.pool);
            if timed_out {
                pool.discard(lease)
            } else {
                pool.release(lease, Instant::now())
            }
        }
        let c = &self.counters;
        Counters::add(&c.invocations, 1);
        Counters::add(&c.cold_starts, u64::from(init_duration.is_some()));
        Counters::add(
            &c.errors,
            u64::from(matches!(result, InvocationResult::Error { .. })),
        );
        Counters::add(&c.timeouts, u64::from(timed_out));
        if event.is_batch() {
            let ok = records_ok.len() as u64;
            Counters::add(&c.records_ok, ok);
            Counters::add(&c.records_failed, event.records.len() as u64 - ok);
        }
        Execution {
            result,
            body,
            duration,
            planned,
            init_duration,
            records_ok,
        }
    }

    pub(crate) fn stats(&self) -> FunctionStats {
        let pool = lock(&self.pool);
        self.counters.snapshot(pool.busy(), pool.environments())
    }

    /// Clears counters, environments (the next invocations are cold, also when one was still running)
    /// and rule budgets.
    pub(crate) fn reset(&self) {
        self.counters.reset();
        lock(&self.pool).retire_all();
        self.rules.reset();
    }
}

/// The invocation's result, response body and failed record ids. A timeout, then a random error,
/// win over what the rules decided.
fn outcome(
    verdict: Verdict,
    random_error: bool,
    config: &FunctionConfig,
    request_id: &str,
) -> (InvocationResult, String, Vec<String>) {
    let error = |error_type: &str, message: String| {
        let body = wire::function_error_body(error_type, &message);
        let error_type = error_type.to_owned();
        let result = InvocationResult::Error {
            error_type,
            error_message: message,
        };
        (result, body, Vec::new())
    };
    match verdict {
        Verdict::Timeout => error(
            wire::TIMEOUT_ERROR,
            wire::timeout_message(request_id, config.timeout),
        ),
        _ if random_error => error(
            wire::SIMULATED_ERROR,
            format!("simulated failure (error_rate {})", config.error_rate),
        ),
        Verdict::Raise { message } => error(wire::SIMULATED_ERROR, message),
        Verdict::Respond { text, failed } => (InvocationResult::Responded, text, failed),
        Verdict::Return { body, failed } if failed.is_empty() => {
            (InvocationResult::Success, body.to_string(), failed)
        }
        Verdict::Return { body, failed } => (
            InvocationResult::Partial {
                failed: failed.clone(),
            },
            body.to_string(),
            failed,
        ),
    }
}

/// A deadline no run reaches, for durations too long to add to an `Instant`.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// FNV-1a: a stable hash (unlike `std`'s randomised one) to derive per-function seeds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::simulate::timing::Latency;

    fn function(latency: Duration) -> Function {
        let config = FunctionConfig {
            latency: Latency::Fixed(latency),
            ..FunctionConfig::default()
        };
        let rules = RuleSet::compile(&config).unwrap();
        Function::new("f", config, rules, Some(1))
    }

    /// The duration recorded is the time the invocation took, not the time drawn: when the
    /// runtime is kept from ending the sleep on time (here by blocking its only thread for
    /// longer than the drawn 20 ms), the record shows the real time, bounded by an independent
    /// measurement around the call.
    #[tokio::test(flavor = "current_thread")]
    async fn the_recorded_duration_is_the_time_measured() {
        let drawn = Duration::from_millis(20);
        let blocked = Duration::from_millis(60);
        let f = function(drawn);
        let lease = f.admit().unwrap();
        let payload = json!({});
        let outer = Instant::now();
        let run = f.run(lease, &payload, "id", Duration::ZERO);
        let blocker = async {
            // Once the invocation sleeps, hold the thread.
            tokio::task::yield_now().await;
            std::thread::sleep(blocked);
        };
        let (execution, ()) = tokio::join!(run, blocker);
        let measured = outer.elapsed();
        assert!(
            execution.duration >= blocked,
            "recorded {:?}, blocked for {blocked:?}",
            execution.duration
        );
        assert!(
            execution.duration <= measured,
            "recorded {:?}, measured {measured:?}",
            execution.duration
        );
    }

    /// Left alone, an invocation takes at least the time drawn and the record says so.
    #[tokio::test]
    async fn an_invocation_never_ends_before_its_drawn_duration() {
        let drawn = Duration::from_millis(20);
        let f = function(drawn);
        for _ in 0..5 {
            let outer = Instant::now();
            let execution = f
                .run(f.admit().unwrap(), &json!({}), "id", Duration::ZERO)
                .await;
            assert!(execution.duration >= drawn, "{:?}", execution.duration);
            assert!(execution.duration <= outer.elapsed());
        }
    }
}
