//! Command-line interface: one `Cli` with a subcommand per tool.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::simulate::{FailureMode, Latency, Stall};

/// A Lambda-aware load generator and function simulator.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a simulated Lambda function over the Invoke API (for tests and the quickstart).
    Simulate(SimulateArgs),
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
