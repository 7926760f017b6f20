//! The crate's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors returned by the `loadgen` library.
///
/// Variants follow what the caller does about them: a config error is the user's to fix (the message
/// names the offending field), the others are environment problems. The message includes the
/// underlying error, which is therefore not also exposed as `source()` (it would print twice).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is invalid. `field` is its dotted path, e.g. `functions.orders.error_rate`.
    #[error("invalid configuration: {field}: {message}")]
    Config { field: String, message: String },

    /// The config (or scenario) file could not be read.
    #[error("cannot read config file {path}: {error}")]
    ReadConfig {
        path: PathBuf,
        error: std::io::Error,
    },

    /// The config file is not valid TOML or does not match the schema. The TOML error shows the
    /// offending key and line.
    #[error("cannot parse config file {path}: {error}")]
    ParseConfig {
        path: PathBuf,
        error: Box<toml::de::Error>,
    },

    /// The listening socket could not be bound.
    #[error("cannot bind {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },

    /// The HTTP server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),

    /// The invoke target could not be set up (e.g. no AWS credentials).
    #[error("cannot set up the target: {0}")]
    Target(String),

    /// An output file could not be written.
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: String },

    /// An input `.hlog` file could not be read or parsed.
    #[error("cannot read interval log {path}: {message}")]
    ReadLog { path: PathBuf, message: String },
}

impl Error {
    /// Shorthand for [`Error::Config`].
    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}
