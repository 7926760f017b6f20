//! The poller's error type: one variant per kind of failure a caller reacts to differently.

use std::path::PathBuf;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A mapping file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A mapping directory holds no mapping file.
    #[error("{dir}: no *.json mapping files in this directory")]
    NoMappingFiles { dir: PathBuf },
    /// Two mappings have one UUID: they would share checkpoints and leases.
    #[error("{second}: UUID {uuid} is also the UUID of a mapping in {first}; each mapping needs its own")]
    DuplicateMapping {
        uuid: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// A mapping definition is invalid; every problem is listed, each naming its field.
    #[error("{}", prefixed(path, source))]
    Config { path: PathBuf, source: ConfigError },
    /// The event source cannot be used (missing queue, no permission, …), in AWS's words where AWS has them.
    #[error("{0}")]
    Source(String),
    /// The metrics server cannot listen.
    #[error("metrics address {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The invoke target cannot be set up.
    #[error("invoke target: {0}")]
    Target(#[from] lambda_invoke::Error),
}

/// `path: field: message`, one line per problem.
fn prefixed(path: &std::path::Path, errors: &ConfigError) -> String {
    errors
        .errors
        .iter()
        .map(|e| format!("{}: {}: {}", path.display(), e.field, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}
