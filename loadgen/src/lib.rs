//! `loadgen`: a Lambda-aware load generator and the function simulator it is tested against.
//!
//! The binary is a thin wrapper around [`run()`], so integration tests run the real entry point in
//! process. The parts are libraries too: [`scenario`] (scenario files, thresholds), [`run`](mod@run)
//! (the engine), [`report`] (outputs), [`merge`](mod@merge) (combining `.hlog` files),
//! [`metrics`] (Prometheus) and [`simulate`] (the function simulator).

pub mod cli;
mod error;
pub mod merge;
pub mod metrics;
pub mod report;
pub mod run;
pub mod scenario;
pub mod simulate;
mod timer;

use std::process::ExitCode;

pub use cli::Cli;
pub use error::Error;

/// Runs the subcommand `cli` names.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Simulate(args) => simulate::run(args).await,
        cli::Command::Run(args) => run::command(args).await,
        cli::Command::Merge(args) => merge::command(args),
    }
}
