//! The running simulator: function registry, invocation dispatch, recording, and the handle.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::{FunctionConfig, SimConfig};
use super::event_invoke::{self, Attempt, Condition, LastRun, Next};
use super::function::{Execution, Function};
use super::pool::Lease;
use super::recording::{Endpoint, Invocation, InvocationResult, InvocationType, Recorder, Stats};
use super::rules::RuleSet;
use super::{http, lock, wire};
use crate::Error;
use crate::sqs::Sqs;

/// The simulator's shared state. Start one with [`Simulator::start`]; the returned [`SimHandle`]
/// observes and stops it.
#[derive(Debug)]
pub struct Simulator {
    config: SimConfig,
    /// Compiled `default.rules`, copied for each undeclared function.
    default_rules: RuleSet,
    functions: Mutex<BTreeMap<String, Arc<Function>>>,
    started: Instant,
    recorder: Recorder,
    /// Running invocations, so shutdown can wait for `Event` ones still in the background.
    tasks: TaskTracker,
    /// Cancelled at shutdown: `Event` invocations waiting for a retry are dropped then.
    stopping: CancellationToken,
    /// Sends destination records; present when a function has a destination.
    sqs: Option<Sqs>,
}

/// One invocation request, after the HTTP layer parsed it.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) function_name: String,
    pub(crate) function: Arc<Function>,
    pub(crate) qualifier: Option<String>,
    pub(crate) endpoint: Endpoint,
    pub(crate) request_id: String,
    pub(crate) payload: Value,
}

/// The reserved concurrency was exceeded; the function did not run.
#[derive(Debug)]
pub(crate) struct Throttled;

/// When an invocation arrived.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    unix_ms: u64,
    since_start: Duration,
}

impl Simulator {
    /// Validates `config`, binds `bind` (port 0 picks a free port) and serves until the handle is
    /// shut down or dropped.
    pub async fn start(config: SimConfig, bind: SocketAddr) -> Result<SimHandle, Error> {
        let mut sim = Simulator::new(config)?;
        sim.sqs = destinations_client(&sim.config).await?;
        let sim = Arc::new(sim);
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|error| Error::Bind { addr: bind, error })?;
        let addr = listener
            .local_addr()
            .map_err(|error| Error::Bind { addr: bind, error })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = axum::serve(listener, http::router(Arc::clone(&sim)))
            .with_graceful_shutdown(async move {
                // Resolves on send or when the handle (and so the sender) is dropped.
                stopped.await.ok();
            })
            .into_future();
        Ok(SimHandle {
            addr,
            sim,
            stop,
            server: tokio::spawn(server),
        })
    }

    fn new(config: SimConfig) -> Result<Simulator, Error> {
        config.validate()?;
        let compile = |path: String, function: &FunctionConfig| {
            RuleSet::compile(function).map_err(|e| Error::config(path, e.to_string()))
        };
        let default_rules = compile("default.rules".to_owned(), &config.default)?;
        let mut functions = BTreeMap::new();
        for (name, function) in &config.functions {
            let rules = compile(format!("functions.{name}.rules"), function)?;
            functions.insert(
                name.clone(),
                Arc::new(Function::new(name, function.clone(), rules, config.seed)),
            );
        }
        Ok(Simulator {
            default_rules,
            functions: Mutex::new(functions),
            started: Instant::now(),
            recorder: Recorder::new(config.record),
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
            sqs: None,
            config,
        })
    }

    /// The function called `name`. Without declared functions every name exists (created on first
    /// use with the default behaviour); with them, only the declared ones.
    pub(crate) fn function(&self, name: &str) -> Option<Arc<Function>> {
        let mut functions = lock(&self.functions);
        if let Some(function) = functions.get(name) {
            return Some(Arc::clone(function));
        }
        if !self.config.functions.is_empty() {
            return None;
        }
        let function = Function::new(
            name,
            self.config.default.clone(),
            self.default_rules.fresh(),
            self.config.seed,
        );
        Some(Arc::clone(
            functions
                .entry(name.to_owned())
                .or_insert(Arc::new(function)),
        ))
    }

    /// Runs a synchronous invocation and waits for it. The execution is a task of its own, so a
    /// client that hangs up does not cut it short (as on Lambda) and the environment is returned.
    pub(crate) async fn invoke(self: &Arc<Self>, call: Call) -> Result<Execution, Throttled> {
        let task = self
            .spawn(call, InvocationType::RequestResponse)
            .ok_or(Throttled)?;
        // The task is never aborted, so an error here is a panic: pass it on.
        Ok(task
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())))
    }

    /// Accepts an `Event` invocation and runs it in the background as Lambda does: after the
    /// configured queue delay, with retries after function errors and throttles, then a record to
    /// the on-success or on-failure destination ([`event_invoke`]).
    pub(crate) fn invoke_event(self: &Arc<Self>, call: Call) {
        let sim = Arc::clone(self);
        self.tasks.spawn(async move { sim.run_event(&call).await });
    }

    /// Waits until `until`; false when the simulator shuts down first. Shutdown drops the events
    /// still waiting for an attempt (the simulator keeps no queue on disk), but lets a running
    /// attempt finish.
    async fn wait(&self, until: Instant) -> bool {
        tokio::select! {
            () = crate::timer::sleep_until(until) => true,
            () = self.stopping.cancelled() => false,
        }
    }

    /// The attempts of one `Event` invocation and its destination record.
    async fn run_event(self: &Arc<Self>, call: &Call) {
        let accepted = Instant::now();
        let config = &call.function.config().event_invoke;
        // Without a queue delay the first attempt starts at once, shutdown or not: the event was
        // accepted.
        if !config.queue_delay.is_zero() && !self.wait(accepted + config.queue_delay).await {
            return;
        }
        let (mut attempts, mut runs) = (0u32, 0u32);
        let mut last: Option<LastRun> = None;
        let condition = loop {
            attempts += 1;
            let attempt = match self.admit(call, InvocationType::Event) {
                None if call.function.is_disabled() => Attempt::ZeroConcurrency,
                None => Attempt::Throttled,
                Some((lease, arrival)) => {
                    runs += 1;
                    let execution = self.execute(call, InvocationType::Event, lease, arrival).await;
                    let failed = execution.is_error();
                    last = Some(LastRun {
                        executed_version: wire::executed_version(call.qualifier.as_deref()).to_owned(),
                        function_error: failed.then_some(wire::UNHANDLED),
                        body: execution.body,
                    });
                    if failed { Attempt::Failed } else { Attempt::Succeeded }
                }
            };
            match config.next(attempt, runs, attempts, accepted.elapsed()) {
                Next::Retry(delay) => {
                    if !self.wait(Instant::now() + delay).await {
                        tracing::debug!(request_id = %call.request_id, "Event invocation dropped at shutdown");
                        return;
                    }
                }
                Next::Discard(condition) => break condition,
            }
        };
        self.deliver(call, condition, runs, last.as_ref()).await;
    }

    /// Sends the invocation record to the destination `condition` calls for, if one is set.
    async fn deliver(&self, call: &Call, condition: Condition, runs: u32, last: Option<&LastRun>) {
        let config = &call.function.config().event_invoke;
        let destination = if condition.is_success() {
            &config.on_success
        } else {
            &config.on_failure
        };
        let (Some(destination), Some(sqs)) = (destination, &self.sqs) else {
            return;
        };
        let version = wire::executed_version(call.qualifier.as_deref());
        let function_arn = format!("{}:{version}", wire::function_arn(&call.function_name));
        let record = event_invoke::record(
            SystemTime::now(),
            &call.request_id,
            &function_arn,
            condition,
            runs,
            &call.payload,
            last,
        );
        // Checked at start, so the queue resolves.
        let sent = match sqs.queue_url(destination) {
            Ok(url) => sqs.send_message(&url, &record.to_string()).await,
            Err(e) => Err(e),
        };
        // Lambda counts these in the `DestinationDeliveryFailures` metric and drops the record.
        if let Err(error) = sent {
            tracing::warn!(function = %call.function_name, request_id = %call.request_id, %destination, %error, "destination record not delivered");
        }
    }

    fn spawn(
        self: &Arc<Self>,
        call: Call,
        invocation_type: InvocationType,
    ) -> Option<JoinHandle<Execution>> {
        let (lease, arrival) = self.admit(&call, invocation_type)?;
        let sim = Arc::clone(self);
        Some(self.tasks.spawn(async move {
            sim.execute(&call, invocation_type, lease, arrival).await
        }))
    }

    /// Takes an execution environment for `call`, or records a throttle and returns `None`.
    fn admit(&self, call: &Call, invocation_type: InvocationType) -> Option<(Lease, Arrival)> {
        let arrival = self.arrival();
        let Some(lease) = call.function.admit() else {
            self.record(call, invocation_type, arrival, None);
            return None;
        };
        Some((lease, arrival))
    }

    /// Runs `call` on `lease`'s environment and records it.
    async fn execute(
        &self,
        call: &Call,
        invocation_type: InvocationType,
        lease: Lease,
        arrival: Arrival,
    ) -> Execution {
        let execution = call.function.run(lease, &call.payload, &call.request_id, arrival.since_start).await;
        tracing::debug!(function = %call.function_name, request_id = %call.request_id, result = ?execution.result, "invocation");
        self.record(call, invocation_type, arrival, Some(&execution));
        execution
    }

    fn arrival(&self) -> Arrival {
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Arrival {
            unix_ms: u64::try_from(unix.as_millis()).unwrap_or(u64::MAX),
            since_start: self.started.elapsed(),
        }
    }

    /// Appends to the invocation log when recording is on; `execution` is `None` for a throttle.
    fn record(
        &self,
        call: &Call,
        invocation_type: InvocationType,
        arrival: Arrival,
        execution: Option<&Execution>,
    ) {
        if !self.recorder.enabled() {
            return;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let (result, response, (duration_ms, planned_ms), init_duration_ms, records_ok) =
            match execution {
                None => (
                    InvocationResult::Throttled,
                    String::new(),
                    (0.0, 0.0),
                    None,
                    Vec::new(),
                ),
                Some(e) => (
                    e.result.clone(),
                    e.body.clone(),
                    (ms(e.duration), ms(e.planned)),
                    e.init_duration.map(ms),
                    e.records_ok.clone(),
                ),
            };
        self.recorder.push(Invocation {
            seq: 0,
            function: call.function_name.clone(),
            qualifier: call.qualifier.clone(),
            invocation_type,
            endpoint: call.endpoint,
            request_id: call.request_id.clone(),
            received_at_unix_ms: arrival.unix_ms,
            received_at_ms: ms(arrival.since_start),
            payload: call.payload.clone(),
            result,
            response,
            cold_start: init_duration_ms.is_some(),
            duration_ms,
            planned_ms,
            init_duration_ms,
            records_ok,
        });
    }

    pub(crate) fn invocations(&self) -> Vec<Invocation> {
        self.recorder.all()
    }

    pub(crate) fn stats(&self) -> Stats {
        let functions = lock(&self.functions);
        Stats {
            functions: functions
                .iter()
                .map(|(name, f)| (name.clone(), f.stats()))
                .collect(),
        }
    }

    /// Clears the invocation log, the counters, idle environments and rule budgets.
    pub(crate) fn reset(&self) {
        self.recorder.clear();
        for function in lock(&self.functions).values() {
            function.reset();
        }
    }
}

/// The SQS client for destination records when a function has a destination (the AWS
/// configuration from the environment: `AWS_ENDPOINT_URL_SQS` or `AWS_ENDPOINT_URL`, region, else
/// `us-east-1`, credentials). Every destination is checked here, so a bad one fails at start with
/// its field named.
async fn destinations_client(config: &SimConfig) -> Result<Option<Sqs>, Error> {
    let functions = std::iter::once(("default".to_owned(), &config.default)).chain(
        config
            .functions
            .iter()
            .map(|(name, f)| (format!("functions.{name}"), f)),
    );
    let destinations: Vec<(String, &String)> = functions
        .flat_map(|(path, f)| {
            let e = &f.event_invoke;
            [("on_success", &e.on_success), ("on_failure", &e.on_failure)]
                .into_iter()
                .filter_map(move |(field, d)| {
                    d.as_ref()
                        .map(|d| (format!("{path}.event_invoke.{field}"), d))
                })
        })
        .collect();
    if destinations.is_empty() {
        return Ok(None);
    }
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let region = sdk.region().map_or("us-east-1", |r| r.as_ref()).to_owned();
    let sqs = Sqs::new(&sdk, &region).map_err(|e| Error::config("event_invoke", e))?;
    for (field, destination) in destinations {
        sqs.queue_url(destination)
            .map_err(|e| Error::config(field, e))?;
    }
    Ok(Some(sqs))
}

/// A running simulator. Dropping the handle stops the server too (gracefully, like
/// [`SimHandle::shutdown`], but without waiting).
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<Simulator>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl SimHandle {
    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base URL for clients (and the AWS SDK's endpoint URL).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The invocation log (empty unless `record = true`), in completion order.
    pub fn invocations(&self) -> Vec<Invocation> {
        self.sim.invocations()
    }

    /// Counters per function.
    pub fn stats(&self) -> Stats {
        self.sim.stats()
    }

    /// Sets the reserved concurrency of function `name` (`None`: unlimited), as Lambda's
    /// `PutFunctionConcurrency` does; `0` throttles every invocation. Returns false when there is
    /// no such function.
    pub fn set_reserved_concurrency(&self, name: &str, limit: Option<u32>) -> bool {
        self.sim.function(name).map(|f| f.set_reserved_concurrency(limit)).is_some()
    }

    /// Same as `POST /_sim/reset`.
    pub fn reset(&self) {
        self.sim.reset();
    }

    /// Stops accepting connections, waits for open requests and background (`Event`) invocations.
    pub async fn shutdown(self) -> Result<(), Error> {
        drop(self.stop);
        let served = self
            .server
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.sim.stopping.cancel();
        self.sim.tasks.close();
        self.sim.tasks.wait().await;
        served.map_err(Error::Serve)
    }
}
