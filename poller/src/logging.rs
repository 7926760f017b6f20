//! Structured logs on stderr: human-readable text by default, one JSON object per line with `--log-format
//! json`. The level comes from `RUST_LOG` (default `info`). Records, bodies and credentials are never logged
//! at `info` or above. Text logs are coloured only when stderr is a terminal: a log file or a collector
//! must not receive escape codes.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
