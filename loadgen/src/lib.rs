//! `loadgen`: a Lambda-aware load generator and the function simulator it is tested against.
//!
//! The binary is a thin wrapper around [`run`], so integration tests run the real entry point in
//! process. The simulator is also a library: see [`simulate`].

pub mod cli;
mod error;
pub mod simulate;

use std::process::ExitCode;

pub use cli::Cli;
pub use error::Error;

/// Runs the subcommand `cli` names.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Simulate(args) => simulate::run(args).await,
    }
}
