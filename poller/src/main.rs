use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = poller::cli::Cli::parse();
    poller::logging::init(cli.log_format);
    poller::main(cli).await
}
