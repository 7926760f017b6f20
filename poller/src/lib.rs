//! `poller`: a self-hosted AWS Lambda event source mapping engine.
//!
//! A mapping file in the `CreateEventSourceMapping` JSON shape ([`config`]) says what to read and which
//! function to invoke; [`Poller`] runs mappings until cancelled. Each source kind has its own module
//! ([`sqs`]); batching ([`batch`]) and the other decisions are pure modules tested without I/O.

mod answer;
pub mod arn;
mod backoff;
pub mod batch;
pub mod cli;
pub mod config;
mod dry_run;
pub mod error;
pub mod filter_cmd;
pub mod health;
mod panic;
pub mod logging;
pub mod metrics;
pub mod redrive;
pub mod replay;
pub mod sqs;
pub mod stream;
pub mod stats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::error::Error;
use crate::config::{Mapping, SourceSettings};
use crate::health::{HealthSnapshot, MappingHealth, MappingState};
use crate::stats::Snapshot;

/// Where and how mappings invoke their functions, and where the AWS APIs are.
#[derive(Clone, Debug)]
pub struct Options {
    /// POST events to this URL (`{function}` replaced by the function name) instead of the Invoke API.
    pub http_url: Option<String>,
    /// Endpoint of the Lambda Invoke API.
    pub lambda_endpoint_url: Option<String>,
    /// Endpoint for every AWS service.
    pub endpoint_url: Option<String>,
    /// Region for clients whose region is not given by an ARN.
    pub region: Option<String>,
    /// Longest one invoke may take, if given (else [`lambda_invoke::DEFAULT_INVOKE_TIMEOUT`]). For an HTTP
    /// target it is also the function's timeout that SQS visibility timeouts are checked against.
    pub invoke_timeout: Option<Duration>,
    /// Where stream checkpoints are kept (`checkpoints.sqlite` inside).
    pub state_dir: PathBuf,
    /// `invokeIdentityArn` of Kinesis records: the function's execution role.
    pub invoke_identity_arn: Option<String>,
    /// Serve Prometheus metrics (`GET /metrics`) here; `None`: no server.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Share stream shards with other pollers through DynamoDB lease tables named `PREFIX-<mapping
    /// UUID>` (KCL-style); `None`: the embedded SQLite store in `state_dir` (this process only).
    pub lease_table: Option<String>,
    /// A lease not renewed for this long may be taken by another poller (shared lease tables).
    pub lease_failover: Duration,
    /// How the process drains, reports readiness and reacts to a failed mapping.
    pub lifecycle: Lifecycle,
    /// Assume this IAM role with STS for every AWS call; `None`: the default credential chain's identity.
    pub assume_role: Option<AssumeRole>,
    /// What SQS mappings do when the function throttles or Lambda fails before it runs.
    pub sqs_throttle: sqs::throttle::ThrottleMode,
}

/// An IAM role the poller assumes (`--role-arn`), with the default credential chain's identity as the
/// source credentials. The temporary credentials are cached and refreshed before they expire.
#[derive(Clone, Debug)]
pub struct AssumeRole {
    pub role_arn: String,
    /// `RoleSessionName`: what CloudTrail shows as the session of the calls.
    pub session_name: String,
    /// `ExternalId`, if the role's trust policy requires one.
    pub external_id: Option<String>,
}

impl AssumeRole {
    /// STS is called in the configured region, or in us-east-1 (where the global STS endpoint is)
    /// when no region is set, because the poller takes most regions from ARNs.
    async fn provider(&self, base: &aws_config::SdkConfig) -> aws_config::sts::AssumeRoleProvider {
        let mut builder = aws_config::sts::AssumeRoleProvider::builder(&self.role_arn)
            .session_name(&self.session_name)
            .configure(base);
        if base.region().is_none() {
            builder = builder.region(aws_config::Region::from_static("us-east-1"));
        }
        if let Some(id) = &self.external_id {
            builder = builder.external_id(id);
        }
        builder.build().await
    }
}

/// How the process drains, reports readiness and reacts to a failed mapping (docs/operations.md).
#[derive(Clone, Debug)]
pub struct Lifecycle {
    /// After shutdown begins, in-flight batches get this long to finish; then they are abandoned:
    /// SQS messages are made visible again, stream checkpoints cover only what completed.
    pub shutdown_timeout: Duration,
    /// `/readyz`: a mapping whose polls, or invoke requests, have failed without a success for
    /// longer than this is not ready.
    pub ready_stale_after: Duration,
    /// A mapping that fails (at start or later) does not stop the others.
    pub keep_going: bool,
}

impl Default for Lifecycle {
    /// 25 s to drain: within the 30 s Kubernetes waits after SIGTERM before SIGKILL
    /// (`terminationGracePeriodSeconds`), leaving time to settle what is abandoned. 60 s for
    /// readiness: three times SQS's longest long poll (20 s), and many stream poll intervals.
    fn default() -> Lifecycle {
        Lifecycle {
            shutdown_timeout: Duration::from_secs(25),
            ready_stale_after: Duration::from_secs(60),
            keep_going: false,
        }
    }
}

/// After the drain deadline, mappings get this long to settle what they abandon (make SQS messages
/// visible, write checkpoints, release leases) before their tasks are aborted.
const SETTLE_GRACE: Duration = Duration::from_secs(5);

/// How often the supervisor looks for mappings a source marked `Failed` while still running.
const FAILURE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What one mapping did while the poller ran, and how it ended.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MappingReport {
    pub uuid: String,
    pub event_source_arn: String,
    pub function_name: String,
    pub counters: Snapshot,
    pub health: HealthSnapshot,
}

/// The mapping files `path` names: the file itself, or every `*.json` file in the directory, sorted by
/// name so the order (and the first of two clashing files) does not depend on the file system.
pub fn mapping_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let read_error = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_error)? {
        let file = entry.map_err(read_error)?.path();
        if file.extension().is_some_and(|e| e == "json") && !file.is_dir() {
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(Error::NoMappingFiles { dir: path.to_owned() });
    }
    files.sort();
    Ok(files)
}

/// Read and validate one mapping file: its mapping, or every mapping of a list-event-source-mappings
/// output. `${VAR}` references are resolved from the environment.
pub fn load_mapping_file(path: &Path) -> Result<Vec<Mapping>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    config::decode(&bytes)
        .and_then(|text| config::load_document(text, &config::env_var))
        .map_err(|source| Error::Config {
            path: path.to_owned(),
            source,
        })
}

/// Every mapping in `paths` (files or directories) with its file, and every problem, each naming its
/// file: a path without mapping files, an unreadable or invalid file, and two mappings with one UUID
/// (they would share checkpoints and leases).
pub fn load_mappings(paths: &[PathBuf]) -> (Vec<(PathBuf, Mapping)>, Vec<Error>) {
    let mut errors = Vec::new();
    let mut mappings: Vec<(PathBuf, Mapping)> = Vec::new();
    for path in paths {
        let files = mapping_files(path).unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        });
        for file in files {
            let loaded = load_mapping_file(&file).unwrap_or_else(|e| {
                errors.push(e);
                Vec::new()
            });
            for m in loaded {
                if let Some((first, _)) = mappings.iter().find(|(_, seen)| seen.uuid == m.uuid) {
                    errors.push(Error::DuplicateMapping {
                        uuid: m.uuid.clone(),
                        first: first.clone(),
                        second: file.clone(),
                    });
                }
                mappings.push((file.clone(), m));
            }
        }
    }
    (mappings, errors)
}

/// The shared AWS configuration: default credential chain (or a role assumed with it), optional region
/// and endpoint overrides.
pub async fn sdk_config(options: &Options) -> aws_config::SdkConfig {
    let loader = || {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &options.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &options.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader
    };
    let base = loader().load().await;
    match &options.assume_role {
        None => base,
        Some(role) => loader().credentials_provider(role.provider(&base).await).load().await,
    }
}

/// A set of mappings to run.
pub struct Poller {
    mappings: Vec<Mapping>,
    options: Options,
    metrics: Arc<stats::Metrics>,
}

impl Poller {
    pub fn new(mappings: Vec<Mapping>, options: Options) -> Poller {
        Poller {
            mappings,
            options,
            metrics: Arc::new(stats::Metrics::new()),
        }
    }

    /// The metrics registry every mapping of this poller reports to (served at `--metrics-addr`).
    pub fn metrics(&self) -> Arc<stats::Metrics> {
        self.metrics.clone()
    }

    /// Connect every enabled mapping, then run them until `cancel` fires or a mapping fails; then drain
    /// (docs/operations.md): in-flight batches get `shutdown_timeout` to finish, and what has not
    /// finished by then is abandoned safely (SQS messages made visible again, stream checkpoints only
    /// for what completed, leases released). Fails, after stopping what it started, if a source or
    /// target cannot be set up, unless `keep_going` (then that mapping's report says `Failed`).
    pub async fn run(self, cancel: CancellationToken) -> Result<Vec<MappingReport>, Error> {
        let sdk = sdk_config(&self.options).await;
        let mut store: Option<Arc<stream::store::Store>> = None;
        let owner = format!("{}:{}:{}", hostname(), std::process::id(), uuid::Uuid::new_v4().simple());
        let Poller { mappings, options, metrics } = self;
        let lifecycle = options.lifecycle.clone();
        // `stop` starts the drain: the caller's cancel, or a failed mapping. `abandon` ends it.
        let stop = cancel.child_token();
        let abandon = CancellationToken::new();
        // Every mapping is registered (as `starting`) before `/readyz` answers, so that a probe never
        // sees a process whose mappings have not started as ready.
        let mappings: Vec<_> = mappings
            .into_iter()
            .map(|mapping| (Arc::new(metrics.mapping(stats::MappingLabels::of(&mapping))), mapping))
            .collect();
        let server_stop = CancellationToken::new();
        let server = match options.metrics_addr {
            Some(addr) => {
                let (bound, task) = metrics::serve(addr, metrics.clone(), lifecycle.ready_stale_after, server_stop.clone())
                    .await
                    .map_err(|source| Error::Metrics { addr, source })?;
                tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
                Some(task)
            }
            None => None,
        };
        let mut supervisor = Supervisor::default();
        let mut start_error = None;
        for (counters, mapping) in mappings {
            if !mapping.enabled {
                counters.health.set_state(MappingState::Disabled);
                tracing::info!(uuid = %mapping.uuid, source = %mapping.source, "mapping is disabled (Enabled: false); not polling");
                continue;
            }
            if !mapping.ignored_keys.is_empty() {
                tracing::warn!(uuid = %mapping.uuid, keys = ?mapping.ignored_keys, "keys accepted but without effect here");
            }
            let (uuid, source) = (mapping.uuid.clone(), mapping.source.to_string());
            supervisor.reports.push((uuid.clone(), source, mapping.function_name.clone(), counters.clone()));
            let started = async {
                let target = target(&options, &sdk, &mapping.function_name)?;
                let task: futures::future::BoxFuture<'static, ()> = match &mapping.settings {
                    SourceSettings::Sqs(_) => {
                        let m = sqs::SqsMapping::connect(mapping, &sdk, target, counters.clone()).await?;
                        let m = m.abandon_on(abandon.clone()).throttle_mode(options.sqs_throttle);
                        Box::pin(Arc::new(m).run(stop.clone()))
                    }
                    SourceSettings::Stream(_) => {
                        let store = match &store {
                            Some(store) => store.clone(),
                            None => store.insert(open_store(&options, &sdk)?).clone(),
                        };
                        let deps = stream::StreamDeps {
                            sdk: &sdk,
                            target,
                            counters: counters.clone(),
                            store,
                            owner: owner.clone(),
                            taker_config: esm_checkpoint::TakerConfig {
                                failover: options.lease_failover,
                                ..Default::default()
                            },
                            invoke_identity_arn: options.invoke_identity_arn.clone(),
                            cancel: stop.clone(),
                            abandon: abandon.clone(),
                        };
                        Box::pin(stream::StreamMapping::connect(mapping, deps).await?.run())
                    }
                };
                Ok::<_, Error>(task)
            }
            .await;
            match started {
                Ok(task) => {
                    counters.health.set_state(MappingState::Running);
                    supervisor.spawn(counters.health.clone(), task);
                }
                Err(e) => {
                    counters.health.set_state(MappingState::Failed(e.to_string()));
                    if !lifecycle.keep_going {
                        // The caller reports it, once.
                        start_error = Some(e);
                        stop.cancel();
                        break;
                    }
                    tracing::error!(uuid = %uuid, error = %e, "mapping cannot start; the others go on (--keep-going)");
                }
            }
        }
        supervisor.run(&stop, &abandon, &lifecycle).await;
        server_stop.cancel();
        if let Some(Err(e)) = match server {
            Some(task) => Some(task.await),
            None => None,
        } {
            tracing::error!(error = %e, "metrics server failed");
        }
        match start_error {
            Some(e) => Err(e),
            None => Ok(supervisor.reports()),
        }
    }
}

/// The running mappings' tasks, and what to do when one ends or fails.
#[derive(Default)]
struct Supervisor {
    tasks: JoinSet<()>,
    health: HashMap<tokio::task::Id, Arc<MappingHealth>>,
    /// Every enabled mapping, started or not: uuid, source, function, counters.
    reports: Vec<(String, String, String, Arc<stats::Counters>)>,
}

impl Supervisor {
    fn spawn(&mut self, health: Arc<MappingHealth>, task: futures::future::BoxFuture<'static, ()>) {
        let handle = self.tasks.spawn(task);
        self.health.insert(handle.id(), health);
    }

    /// Run until every mapping has stopped. A mapping that ends before `stop`, or that its source
    /// marks `Failed`, is failed; unless `keep_going`, that starts the drain of the others. Once
    /// `stop` fires, in-flight work gets `shutdown_timeout`; then `abandon` fires, and tasks still
    /// running after [`SETTLE_GRACE`] more are aborted.
    async fn run(&mut self, stop: &CancellationToken, abandon: &CancellationToken, lifecycle: &Lifecycle) {
        let mut drain_deadline: Option<Instant> = None;
        let mut abort_at: Option<Instant> = None;
        let mut check = tokio::time::interval(FAILURE_CHECK_INTERVAL);
        while !self.tasks.is_empty() {
            tokio::select! {
                Some(joined) = self.tasks.join_next_with_id() => {
                    let (id, ended) = match joined {
                        Ok((id, ())) => (id, None),
                        Err(e) => (e.id(), Some(e)),
                    };
                    let health = self.health.remove(&id).expect("every task is registered");
                    let reason = match ended {
                        Some(e) if e.is_panic() => Some(format!("the mapping's task panicked: {}", panic::panic_message(e.into_panic().as_ref()))),
                        Some(_) => None, // aborted after the drain deadline: it stopped
                        None if !stop.is_cancelled() => Some("the mapping stopped on its own".to_owned()),
                        None => None,
                    };
                    match (health.state(), reason) {
                        (MappingState::Failed(_), _) => {}
                        (_, Some(reason)) => health.set_state(MappingState::Failed(reason)),
                        (_, None) => health.set_state(MappingState::Stopped),
                    }
                    self.on_failures(stop, lifecycle);
                }
                _ = check.tick() => self.on_failures(stop, lifecycle),
                _ = stop.cancelled(), if drain_deadline.is_none() => {
                    tracing::info!(timeout = ?lifecycle.shutdown_timeout, "shutting down: finishing in-flight batches");
                    drain_deadline = Some(Instant::now() + lifecycle.shutdown_timeout);
                }
                _ = sleep_until_opt(drain_deadline), if abort_at.is_none() => {
                    tracing::warn!(timeout = ?lifecycle.shutdown_timeout, "drain deadline reached: abandoning in-flight batches");
                    abandon.cancel();
                    abort_at = Some(Instant::now() + SETTLE_GRACE);
                }
                _ = sleep_until_opt(abort_at) => {
                    tracing::error!(mappings = self.tasks.len(), grace = ?SETTLE_GRACE,
                        "mappings did not stop after the drain deadline; aborting them");
                    self.tasks.abort_all();
                    abort_at = None;
                }
            }
        }
        let abandoned: u64 = self.reports.iter().map(|r| r.3.health.snapshot().abandoned).sum();
        if abandon.is_cancelled() {
            tracing::warn!(abandoned, timeout = ?lifecycle.shutdown_timeout,
                "drained until the deadline: {abandoned} records abandoned unprocessed (SQS messages made visible \
                 again, stream records read again from the last checkpoint); none lost");
        }
    }

    /// Unless `keep_going`, a failed mapping stops the others.
    fn on_failures(&self, stop: &CancellationToken, lifecycle: &Lifecycle) {
        if lifecycle.keep_going || stop.is_cancelled() {
            return;
        }
        for (uuid, .., counters) in &self.reports {
            if let MappingState::Failed(reason) = counters.health.state() {
                tracing::error!(%uuid, %reason, "mapping failed; stopping the others (--keep-going lets them run)");
                stop.cancel();
                return;
            }
        }
    }

    fn reports(&self) -> Vec<MappingReport> {
        self.reports
            .iter()
            .map(|(uuid, event_source_arn, function_name, counters)| MappingReport {
                uuid: uuid.clone(),
                event_source_arn: event_source_arn.clone(),
                function_name: function_name.clone(),
                counters: counters.snapshot(),
                health: counters.health.snapshot(),
            })
            .collect()
    }
}

/// Sleep until `deadline`; forever if there is none.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The lease store: DynamoDB lease tables shared with other pollers, or the SQLite file in the state
/// directory (created if needed, and locked: a second poller on the same directory fails here).
fn open_store(options: &Options, sdk: &aws_config::SdkConfig) -> Result<Arc<stream::store::Store>, Error> {
    use stream::store::Store;
    if let Some(prefix) = &options.lease_table {
        let client = aws_sdk_dynamodb::Client::new(sdk);
        return Ok(Arc::new(Store::DynamoDb(esm_checkpoint::DynamoDbStore::new(&client, prefix.clone(), true))));
    }
    let state_dir = &options.state_dir;
    std::fs::create_dir_all(state_dir).map_err(|source| Error::Read {
        path: state_dir.to_owned(),
        source,
    })?;
    let path = state_dir.join("checkpoints.sqlite");
    esm_checkpoint::SqliteStore::open(&path)
        .map(|s| Arc::new(Store::Sqlite(s)))
        .map_err(|e| Error::Source(format!("checkpoint store {}: {e}", path.display())))
}

/// This machine's name for lease owner ids (diagnostic only).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The invoke target for a function: HTTP POST if a URL is configured, else the Lambda Invoke API.
fn target(options: &Options, sdk: &aws_config::SdkConfig, function_name: &str) -> Result<lambda_invoke::Target, Error> {
    invoke_target(
        options.http_url.as_deref(),
        options.lambda_endpoint_url.as_deref(),
        options.invoke_timeout,
        sdk,
        function_name,
    )
}

/// [`target`] from its parts, for the tools that invoke without a [`Poller`] (`poller replay`).
pub(crate) fn invoke_target(
    http_url: Option<&str>,
    lambda_endpoint_url: Option<&str>,
    invoke_timeout: Option<Duration>,
    sdk: &aws_config::SdkConfig,
    function_name: &str,
) -> Result<lambda_invoke::Target, Error> {
        Ok(match http_url {
            Some(url) => lambda_invoke::Target::Http(lambda_invoke::HttpTarget::new(
                url.replace("{function}", function_name),
                invoke_timeout,
            )?),
            None => lambda_invoke::Target::Lambda(lambda_invoke::LambdaTarget::new(
                sdk,
                function_name,
                lambda_endpoint_url,
                Some(invoke_timeout.unwrap_or(lambda_invoke::DEFAULT_INVOKE_TIMEOUT)),
            )),
        })
}

/// The `poller` command line.
pub async fn main(cli: cli::Cli) -> ExitCode {
    match cli.command {
        cli::Command::Validate { files } => validate(&files),
        cli::Command::Run(args) => run(*args).await,
        cli::Command::Filter { mapping, records, output } => filter_cmd::run(&mapping, &records, output),
        cli::Command::Redrive(args) => redrive::run(args).await,
        cli::Command::Replay(args) => match one_mapping(&args.mapping, "replay") {
            Some(m) => replay::run(m, args).await,
            None => ExitCode::from(replay::EXIT_CANNOT_RUN),
        },
    }
}

/// The one mapping of `path` for the tool `command`, or `None` after printing why not.
fn one_mapping(path: &Path, command: &str) -> Option<Mapping> {
    let (mut mappings, errors) = load_mappings(&[path.to_owned()]);
    for e in &errors {
        eprintln!("{e}");
    }
    if errors.is_empty() && mappings.len() != 1 {
        eprintln!("{}: holds {} mappings; `poller {command}` takes one", path.display(), mappings.len());
    }
    (errors.is_empty() && mappings.len() == 1).then(|| mappings.remove(0).1)
}

fn validate(paths: &[PathBuf]) -> ExitCode {
    let (mappings, errors) = load_mappings(paths);
    for (file, m) in mappings {
        println!(
            "{}: ok: {} → {} (BatchSize {}, window {}s{}{}{})",
            file.display(),
            m.source,
            m.function_name,
            m.batch_size,
            m.batching_window.as_secs(),
            if m.filters.is_empty() { "" } else { ", filtered" },
            if m.report_batch_item_failures { ", ReportBatchItemFailures" } else { "" },
            if m.enabled { "" } else { ", disabled" },
        )
    }
    for e in &errors {
        eprintln!("{e}");
    }
    if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

async fn run(args: cli::RunArgs) -> ExitCode {
    let (mappings, errors) = load_mappings(&args.mappings);
    if !errors.is_empty() {
        for e in errors {
            eprintln!("{e}");
        }
        return ExitCode::from(1);
    }
    let mappings = mappings.into_iter().map(|(_, m)| m).collect();
    let options = Options {
        http_url: args.invoke.http_url,
        lambda_endpoint_url: args.invoke.lambda_endpoint_url,
        endpoint_url: args.endpoint_url,
        region: args.region,
        invoke_timeout: args.invoke.invoke_timeout,
        state_dir: args.state_dir,
        invoke_identity_arn: args.invoke.invoke_identity_arn,
        metrics_addr: args.metrics_addr.0,
        lease_table: args.lease_table,
        lease_failover: args.lease_failover,
        lifecycle: Lifecycle {
            shutdown_timeout: args.shutdown_timeout,
            ready_stale_after: args.ready_stale_after,
            keep_going: args.keep_going,
        },
        assume_role: args.role_arn.map(|role_arn| AssumeRole {
            role_arn,
            session_name: args.role_session_name,
            external_id: args.external_id,
        }),
        sqs_throttle: args.sqs_throttle_mode.with_max_hold(args.sqs_throttle_max_hold),
    };
    if args.dry_run {
        return dry_run::run(mappings, &options, args.dry_run_limit).await;
    }
    let keep_going = options.lifecycle.keep_going;
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));
    match Poller::new(mappings, options).run(cancel).await {
        Ok(reports) => {
            for r in &reports {
                println!("mapping {} ({} → {}): {}", r.uuid, r.event_source_arn, r.function_name, r.counters);
            }
            let failed = failures(&reports);
            for (uuid, reason) in &failed {
                eprintln!("poller: mapping {uuid} failed: {reason}");
            }
            ExitCode::from(exit_status(reports.len(), failed.len(), keep_going))
        }
        Err(e) => {
            // Said once: as a log record in the chosen format (a JSON log stays one object per line),
            // or on stderr as is when the log level hides errors (`RUST_LOG=off`).
            if tracing::enabled!(tracing::Level::ERROR) {
                tracing::error!("{e}");
            } else {
                eprintln!("poller: {e}");
            }
            ExitCode::from(2)
        }
    }
}

/// The mappings that failed, with their reasons.
fn failures(reports: &[MappingReport]) -> Vec<(&str, &str)> {
    reports
        .iter()
        .filter_map(|r| match &r.health.state {
            MappingState::Failed(reason) => Some((r.uuid.as_str(), reason.as_str())),
            _ => None,
        })
        .collect()
}

/// `poller run`'s exit status after it ran `enabled` mappings of which `failed` failed: 1 if any failed,
/// unless `keep_going` and at least one other went on until shutdown; else 0. (2 is for a poller that
/// cannot start, 130 for a forced exit.)
fn exit_status(enabled: usize, failed: usize, keep_going: bool) -> u8 {
    let others_went_on = failed < enabled;
    if failed == 0 || (keep_going && others_went_on) { 0 } else { 1 }
}

/// What a signal received during the drain does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repeat {
    /// Nothing: the drain started by the first signal goes on, bounded by `--shutdown-timeout`.
    Ignore,
    /// Exit at once with status 130, abandoning in-flight work to the visibility timeout and the
    /// last checkpoint.
    ExitNow,
}

/// A signal arriving twice within this time is one request: supervisors deliver it to the process
/// and to its process group (GNU `timeout` does), so one request arrives twice.
const REPEAT_GRACE: Duration = Duration::from_secs(1);

/// The rule for a signal received `since_first` after the one that started the drain: SIGTERM is
/// what supervisors send, and they bound the shutdown themselves (Kubernetes sends SIGKILL after
/// its grace period), so a repeated SIGTERM never skips the drain. A repeated SIGINT is a person
/// pressing Ctrl-C again: it exits at once, unless it comes within [`REPEAT_GRACE`] of the first.
fn on_repeat(interrupt: bool, since_first: Duration) -> Repeat {
    if interrupt && since_first >= REPEAT_GRACE { Repeat::ExitNow } else { Repeat::Ignore }
}

/// The first SIGTERM or SIGINT starts the drain; later ones follow [`on_repeat`].
async fn shutdown_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down: finishing in-flight batches (Ctrl-C again to exit now)");
    cancel.cancel();
    let first = Instant::now();
    loop {
        let interrupt = tokio::select! {
            _ = term.recv() => false,
            _ = int.recv() => true,
        };
        match on_repeat(interrupt, first.elapsed()) {
            Repeat::Ignore => tracing::info!(interrupt, "signal during shutdown ignored: the drain goes on"),
            Repeat::ExitNow => {
                tracing::warn!("second Ctrl-C: exiting without finishing in-flight batches");
                std::process::exit(130);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_sigterm_never_skips_the_drain() {
        for since in [Duration::ZERO, Duration::from_millis(10), Duration::from_secs(60)] {
            assert_eq!(on_repeat(false, since), Repeat::Ignore, "SIGTERM after {since:?}");
        }
    }

    #[test]
    fn ctrl_c_twice_exits_unless_it_is_the_same_delivery() {
        assert_eq!(on_repeat(true, Duration::from_millis(5)), Repeat::Ignore);
        assert_eq!(on_repeat(true, REPEAT_GRACE), Repeat::ExitNow);
        assert_eq!(on_repeat(true, Duration::from_secs(30)), Repeat::ExitNow);
    }

    /// A supervisor with running mappings `uuids`, their health handles, and its counters' registry.
    fn supervisor(uuids: &[&str]) -> (Supervisor, Vec<Arc<MappingHealth>>) {
        let metrics = stats::Metrics::new();
        let mut supervisor = Supervisor::default();
        let mut health = Vec::new();
        for uuid in uuids {
            let labels = stats::MappingLabels {
                mapping: uuid.to_string(),
                ..Default::default()
            };
            let counters = Arc::new(metrics.mapping(labels));
            counters.health.set_state(MappingState::Running);
            health.push(counters.health.clone());
            supervisor.reports.push((uuid.to_string(), String::new(), String::new(), counters));
        }
        (supervisor, health)
    }

    #[tokio::test]
    async fn a_mapping_that_ends_early_or_panics_fails_and_stops_the_others() {
        let (mut supervisor, health) = supervisor(&["quits", "panics", "waits"]);
        let stop = CancellationToken::new();
        supervisor.spawn(health[0].clone(), Box::pin(async {}));
        supervisor.spawn(health[1].clone(), Box::pin(async { panic!("boom") }));
        let waits = stop.clone();
        supervisor.spawn(health[2].clone(), Box::pin(async move { waits.cancelled().await }));
        let (abandon, lifecycle) = (CancellationToken::new(), Lifecycle::default());
        let run = supervisor.run(&stop, &abandon, &lifecycle);
        tokio::time::timeout(Duration::from_secs(30), run).await.expect("the others are stopped");
        let reports = supervisor.reports();
        assert_eq!(reports[0].health.state, MappingState::Failed("the mapping stopped on its own".to_owned()));
        assert_eq!(reports[1].health.state, MappingState::Failed("the mapping's task panicked: boom".to_owned()));
        assert_eq!(reports[2].health.state, MappingState::Stopped);
        assert_eq!(exit_status(reports.len(), failures(&reports).len(), false), 1);
    }

    #[tokio::test]
    async fn keep_going_lets_the_others_run() {
        let (mut supervisor, health) = supervisor(&["quits", "waits"]);
        let stop = CancellationToken::new();
        supervisor.spawn(health[0].clone(), Box::pin(async {}));
        let waits = stop.clone();
        supervisor.spawn(health[1].clone(), Box::pin(async move { waits.cancelled().await }));
        let lifecycle = Lifecycle {
            keep_going: true,
            ..Lifecycle::default()
        };
        let abandon = CancellationToken::new();
        let run = supervisor.run(&stop, &abandon, &lifecycle);
        let operator = async {
            // The supervisor marks the mapping failed and decides in the same step.
            while !matches!(health[0].state(), MappingState::Failed(_)) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(!stop.is_cancelled(), "the failure did not stop the other mapping");
            stop.cancel();
        };
        tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(run, operator) })
            .await
            .expect("stops on shutdown");
        let reports = supervisor.reports();
        assert_eq!(reports[1].health.state, MappingState::Stopped);
        assert_eq!(exit_status(reports.len(), failures(&reports).len(), true), 0);
    }

    #[tokio::test]
    async fn at_the_drain_deadline_work_is_abandoned_then_aborted() {
        let (mut supervisor, health) = supervisor(&["settles", "stubborn"]);
        let (stop, abandon) = (CancellationToken::new(), CancellationToken::new());
        let abandoned = abandon.clone();
        supervisor.spawn(health[0].clone(), Box::pin(async move { abandoned.cancelled().await }));
        supervisor.spawn(health[1].clone(), Box::pin(std::future::pending()));
        let lifecycle = Lifecycle {
            shutdown_timeout: Duration::from_millis(50),
            ..Lifecycle::default()
        };
        stop.cancel();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(60), supervisor.run(&stop, &abandon, &lifecycle))
            .await
            .expect("a task that ignores the deadline is aborted");
        assert!(abandon.is_cancelled());
        assert!(started.elapsed() >= SETTLE_GRACE, "the stubborn task had its grace");
        let reports = supervisor.reports();
        assert!(reports.iter().all(|r| r.health.state == MappingState::Stopped), "{reports:?}");
    }

    #[test]
    fn a_failed_mapping_fails_the_process_unless_the_others_keep_going() {
        assert_eq!(exit_status(2, 0, false), 0);
        assert_eq!(exit_status(0, 0, false), 0, "only disabled mappings");
        assert_eq!(exit_status(2, 1, false), 1);
        assert_eq!(exit_status(2, 1, true), 0, "--keep-going: the other went on");
        assert_eq!(exit_status(2, 2, true), 1, "--keep-going, but nothing could go on");
        assert_eq!(exit_status(1, 1, true), 1);
    }
}
