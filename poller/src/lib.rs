//! `poller`: a self-hosted AWS Lambda event source mapping engine.
//!
//! A mapping file in the `CreateEventSourceMapping` JSON shape ([`config`]) says what to read and which
//! function to invoke; [`Poller`] runs mappings until cancelled. Each source kind has its own module
//! ([`sqs`]); batching ([`batch`]) and the other decisions are pure modules tested without I/O.

pub mod arn;
mod backoff;
pub mod batch;
pub mod cli;
pub mod config;
pub mod error;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod sqs;
pub mod stream;
pub mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use crate::error::Error;
use crate::config::{Mapping, SourceSettings};
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
    /// Longest one invoke may take.
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
    /// Assume this IAM role with STS for every AWS call; `None`: the default credential chain's identity.
    pub assume_role: Option<AssumeRole>,
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

/// What one mapping did while the poller ran.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MappingReport {
    pub uuid: String,
    pub event_source_arn: String,
    pub function_name: String,
    pub counters: Snapshot,
}

/// Read and validate a mapping file.
pub fn load_mapping(path: &Path) -> Result<Mapping, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    config::load(&text).map_err(|source| Error::Config {
        path: path.to_owned(),
        source,
    })
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

    /// Connect every enabled mapping, then run them until `cancel` fires; in-flight batches are finished
    /// before this returns. Fails before polling anything if a source or target cannot be set up.
    pub async fn run(self, cancel: CancellationToken) -> Result<Vec<MappingReport>, Error> {
        let sdk = sdk_config(&self.options).await;
        let mut running = Vec::new();
        let mut reports = Vec::new();
        let mut store: Option<Arc<stream::store::Store>> = None;
        let owner = format!("{}:{}:{}", hostname(), std::process::id(), uuid::Uuid::new_v4().simple());
        let Poller { mappings, options, metrics } = self;
        let server_stop = CancellationToken::new();
        let server = match options.metrics_addr {
            Some(addr) => {
                let (bound, task) = metrics::serve(addr, metrics.clone(), server_stop.clone())
                    .await
                    .map_err(|source| Error::Metrics { addr, source })?;
                tracing::info!(addr = %bound, "serving Prometheus metrics at /metrics");
                Some(task)
            }
            None => None,
        };
        for mapping in mappings {
            let counters = Arc::new(metrics.mapping(stats::MappingLabels::of(&mapping)));
            let report = (
                mapping.uuid.clone(),
                mapping.source.to_string(),
                mapping.function_name.clone(),
                counters.clone(),
            );
            if !mapping.enabled {
                counters.health.set_state(health::MappingState::Disabled);
                tracing::info!(uuid = %mapping.uuid, source = %mapping.source, "mapping is disabled (Enabled: false); not polling");
                continue;
            }
            if !mapping.ignored_keys.is_empty() {
                tracing::warn!(uuid = %mapping.uuid, keys = ?mapping.ignored_keys, "keys accepted but without effect here");
            }
            let target = target(&options, &sdk, &mapping.function_name)?;
            match &mapping.settings {
                SourceSettings::Sqs(_) => {
                    let m = sqs::SqsMapping::connect(mapping, &sdk, target, counters.clone()).await?;
                    counters.health.set_state(health::MappingState::Running);
                    running.push(tokio::spawn(Arc::new(m).run(cancel.clone())));
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
                        cancel: cancel.clone(),
                    };
                    let m = stream::StreamMapping::connect(mapping, deps).await?;
                    counters.health.set_state(health::MappingState::Running);
                    running.push(tokio::spawn(m.run()));
                }
            }
            reports.push(report);
        }
        for task in running {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "mapping task failed");
            }
        }
        server_stop.cancel();
        if let Some(Err(e)) = match server {
            Some(task) => Some(task.await),
            None => None,
        } {
            tracing::error!(error = %e, "metrics server failed");
        }
        Ok(reports
            .into_iter()
            .map(|(uuid, event_source_arn, function_name, counters)| MappingReport {
                uuid,
                event_source_arn,
                function_name,
                counters: counters.snapshot(),
            })
            .collect())
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
        Ok(match &options.http_url {
            Some(url) => lambda_invoke::Target::Http(lambda_invoke::HttpTarget::new(
                url.replace("{function}", function_name),
                options.invoke_timeout,
            )?),
            None => lambda_invoke::Target::Lambda(lambda_invoke::LambdaTarget::new(
                sdk,
                function_name,
                options.lambda_endpoint_url.as_deref(),
                options.invoke_timeout,
            )),
        })
}

/// The `poller` command line.
pub async fn main(cli: cli::Cli) -> ExitCode {
    match cli.command {
        cli::Command::Validate { files } => validate(&files),
        cli::Command::Run(args) => run(*args).await,
    }
}

fn validate(files: &[std::path::PathBuf]) -> ExitCode {
    let mut ok = true;
    for path in files {
        match load_mapping(path) {
            Ok(m) => println!(
                "{}: ok: {} → {} (BatchSize {}, window {}s{}{})",
                path.display(),
                m.source,
                m.function_name,
                m.batch_size,
                m.batching_window.as_secs(),
                if m.filters.is_empty() { "" } else { ", filtered" },
                if m.report_batch_item_failures { ", ReportBatchItemFailures" } else { "" },
            ),
            Err(e) => {
                ok = false;
                eprintln!("{e}");
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

async fn run(args: cli::RunArgs) -> ExitCode {
    let mut mappings = Vec::new();
    for path in &args.mappings {
        match load_mapping(path) {
            Ok(m) => mappings.push(m),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    }
    let options = Options {
        http_url: args.http_url,
        lambda_endpoint_url: args.lambda_endpoint_url,
        endpoint_url: args.endpoint_url,
        region: args.region,
        invoke_timeout: Some(args.invoke_timeout),
        state_dir: args.state_dir,
        invoke_identity_arn: args.invoke_identity_arn,
        metrics_addr: args.metrics_addr.0,
        lease_table: args.lease_table,
        lease_failover: args.lease_failover,
        assume_role: args.role_arn.map(|role_arn| AssumeRole {
            role_arn,
            session_name: args.role_session_name,
            external_id: args.external_id,
        }),
    };
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));
    match Poller::new(mappings, options).run(cancel).await {
        Ok(reports) => {
            for r in reports {
                println!("mapping {} ({} → {}): {}", r.uuid, r.event_source_arn, r.function_name, r.counters);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("poller: {e}");
            ExitCode::from(2)
        }
    }
}

/// First SIGTERM/SIGINT: graceful shutdown (finish in-flight batches). Second: exit at once.
async fn shutdown_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    for round in 0..2 {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if round == 0 {
            tracing::info!("shutting down: finishing in-flight batches (signal again to exit now)");
            cancel.cancel();
        } else {
            tracing::warn!("second signal: exiting without finishing in-flight batches");
            std::process::exit(130);
        }
    }
}
