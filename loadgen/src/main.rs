use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = loadgen::Cli::parse();
    // Logs go to stderr: stdout carries machine-read output (`listening on ...`, summaries, JSON).
    // Colours only for a terminal, so CI logs and pipes get plain text. Payloads, credentials and
    // signatures are never logged.
    let logs = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        loadgen::cli::LogFormat::Text => logs.init(),
        loadgen::cli::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    // Run on a worker thread, not on the main thread that `#[tokio::main]` blocks: the load
    // generator's engine loop then shares threads with the request tasks it spawns, instead of
    // waking the main thread across threads for every request.
    let task = tokio::spawn(loadgen::run(cli));
    let result = task
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
