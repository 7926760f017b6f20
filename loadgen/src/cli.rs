//! Command-line interface: one `Cli` with a subcommand per tool.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use prom_http::MetricsAddr;

use crate::scenario::InvocationTypeName;
use crate::simulate::{FailureMode, Latency, Stall};

/// A Lambda-aware load generator and function simulator.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr: text, or one JSON object per line (for log shippers in CI).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LOADGEN_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a simulated Lambda function over the Invoke API (for tests and the quickstart).
    Simulate(SimulateArgs),
    /// Generate load from a scenario file or flags. Exit code 0: thresholds passed; 1: a threshold
    /// was breached; 2: error (bad scenario, no credentials); 3: the generator could not hold its
    /// schedule (see --allow-dropped).
    Run(RunArgs),
    /// Combine .hlog interval logs (e.g. from several machines) into one report, exactly.
    Merge(MergeArgs),
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| e.to_string())
}

/// Flags of `loadgen run`. Each flag replaces the scenario's value (see docs/loadgen.md).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario file (TOML, see scenarios/). Without one, the flags describe the whole run.
    #[arg(value_name = "SCENARIO")]
    pub scenario: Option<PathBuf>,
    /// Directory for report.json, report.html, latency.hlog, intervals.csv, percentiles.csv and
    /// junit.xml (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Plain HTTP target: POST each payload to URL.
    #[arg(long, value_name = "URL", conflicts_with = "function")]
    pub target_url: Option<String>,
    /// Lambda target: function name, ARN, or name:qualifier.
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
    /// Lambda endpoint override, e.g. the simulator's URL.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region for signing.
    #[arg(long)]
    pub region: Option<String>,
    /// Open model: constant arrival rate (requests per second); replaces the scenario's load.
    #[arg(long, value_name = "PER_SECOND", conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Closed model: constant concurrency; replaces the scenario's load.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// Length of a constant load, or where to cut a staged one (`30s`, `5m`).
    #[arg(long, value_parser = duration)]
    pub duration: Option<Duration>,
    /// Stop after N requests.
    #[arg(long, value_name = "N")]
    pub requests: Option<u64>,
    /// Open model: most requests in flight at once.
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Exit 0 even when the generator could not hold its schedule (arrivals dropped at the end,
    /// requests that failed for lack of file descriptors or ports); otherwise that exits with 3.
    #[arg(long)]
    pub allow_dropped: bool,
    /// Payload template; replaces the scenario's request mix.
    #[arg(long, value_name = "TEMPLATE")]
    pub payload: Option<String>,
    /// Invocation type for every request (Lambda targets).
    #[arg(long, value_enum)]
    pub invocation_type: Option<InvocationTypeName>,
    /// Ask for LogType=Tail and count cold starts (Lambda targets).
    #[arg(long)]
    pub log_tail: bool,
    /// Per-request timeout.
    #[arg(long, value_parser = duration)]
    pub timeout: Option<Duration>,
    /// Threshold such as `p99 < 300ms` or `throttle_rate < 1%` (repeatable; added to the
    /// scenario's).
    #[arg(long = "threshold", value_name = "EXPR")]
    pub thresholds: Vec<String>,
    /// Reporting interval.
    #[arg(long, value_parser = duration)]
    pub interval: Option<Duration>,
    /// Seed for payload randomness.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Never draw the progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics while the run goes (port 0 picks a free
    /// port; `off` disables). Default 127.0.0.1:9465, and only if it is free: a second run on the
    /// same machine goes on without metrics. An address given here must bind.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<MetricsAddr>,
}

/// Flags of `loadgen merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Interval logs written by `loadgen run --out-dir` (latency.hlog) or other HdrHistogram tools.
    #[arg(required = true, value_name = "HLOG")]
    pub logs: Vec<PathBuf>,
    /// Directory for the merged latency.hlog and the report files.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Interval grid of the merged log; default the first log's interval.
    #[arg(long, value_parser = duration)]
    pub interval: Option<Duration>,
    /// Threshold to check on the merged data (repeatable); a breach exits with 1.
    #[arg(long = "threshold", value_name = "EXPR")]
    pub thresholds: Vec<String>,
    /// Name shown in the report.
    #[arg(long, default_value = "merged")]
    pub name: String,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `loadgen simulate`. Flags that shape behaviour override the config file for the
/// default and every declared function.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// TOML config file (see docs/simulator.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free one. The actual address is printed on stdout as
    /// `listening on http://ADDR`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9001")]
    pub bind: SocketAddr,
    /// Latency distribution: `20ms`, `uniform:5ms..50ms`, `normal:20ms,5ms`, `lognormal:20ms,5ms`.
    #[arg(long, value_name = "DIST")]
    pub latency: Option<Latency>,
    /// Fraction of invocations (0.0 to 1.0) that raise an unhandled error.
    #[arg(long, value_name = "FRACTION")]
    pub error_rate: Option<f64>,
    /// Concurrent executions allowed; more get 429 TooManyRequestsException.
    #[arg(long, value_name = "N")]
    pub reserved_concurrency: Option<u32>,
    /// Fail records whose body contains TEXT (repeatable; added after the configured rules).
    #[arg(long, value_name = "TEXT")]
    pub fail_body_contains: Vec<String>,
    /// How failed records are reported.
    #[arg(long, value_enum)]
    pub failure_mode: Option<FailureMode>,
    /// Init duration of cold starts, as a latency distribution.
    #[arg(long, value_name = "DIST")]
    pub cold_start: Option<Latency>,
    /// Periodic stall `DURATION/EVERY`, e.g. `1s/10s`: requests arriving in the stall wait it out.
    #[arg(long, value_name = "DURATION/EVERY")]
    pub stall: Option<Stall>,
    /// Seed for all random draws, for repeatable runs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Record every invocation (served at GET /_sim/invocations).
    #[arg(long)]
    pub record: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}
