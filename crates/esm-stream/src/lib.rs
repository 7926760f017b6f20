//! Pure decision logic for Kinesis Data Streams and DynamoDB Streams event source mappings.
//!
//! Nothing in this crate does I/O, spawns tasks or reads a clock: time comes in as values (epoch
//! milliseconds, [`std::time::Duration`]) so every rule can be tested exhaustively and replayed.
//! The poller owns the loops; these types only answer "what next?".
//!
//! * [`seq`]: [`SequenceNumber`], compared numerically (Kinesis numbers do not fit in a `u128`).
//! * [`lanes`]: `ParallelizationFactor` — records of one shard spread over up to 10 lanes by
//!   partition key, one batch in flight per lane.
//! * [`frontier`]: the shard checkpoint when batches of different lanes complete out of order.
//! * [`retry`]: the per-batch error-handling state machine (retries, bisect, record age, partial
//!   batch responses, throttle backoff).
//! * [`window`]: `TumblingWindowInSeconds` decisions (window assignment, final invokes, early
//!   termination, shard end).
//!
//! The rules, their sources and the choices made where AWS is silent are written down in
//! `docs/stream-processing.md`.

pub mod frontier;
pub mod lanes;
pub mod retry;
pub mod seq;
pub mod window;

pub use frontier::Frontier;
pub use lanes::Lanes;
pub use retry::{Action, BatchRecord, BatchRetry, Outcome, RetryConfig};
pub use seq::SequenceNumber;
pub use window::{ShardPosition, Window, WindowStep, WindowTracker};

/// Everything that can go wrong in this crate: invalid configuration values and protocol misuse
/// that depends on data (out-of-order sequence numbers and the like).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A sequence number must be a non-empty string of ASCII digits.
    #[error("invalid sequence number {0:?}: expected decimal digits")]
    InvalidSequenceNumber(String),
    /// `ParallelizationFactor` must be 1..=10.
    #[error("ParallelizationFactor must be between 1 and 10, got {0}")]
    ParallelizationFactor(u32),
    /// `MaximumRetryAttempts` must be -1 (infinite) or 0..=10000.
    #[error("MaximumRetryAttempts must be -1 or between 0 and 10000, got {0}")]
    MaximumRetryAttempts(i64),
    /// `MaximumRecordAgeInSeconds` must be -1 (infinite) or 60..=604800.
    #[error("MaximumRecordAgeInSeconds must be -1 or between 60 and 604800, got {0}")]
    MaximumRecordAge(i64),
    /// `TumblingWindowInSeconds` must be 1..=900 (0 means "no window" and is not a tracker).
    #[error("TumblingWindowInSeconds must be between 1 and 900, got {0}")]
    TumblingWindow(u32),
    /// A batch handed to [`BatchRetry`] had no records.
    #[error("a batch must contain at least one record")]
    EmptyBatch,
    /// Records must arrive in strictly increasing sequence-number order (shard order).
    #[error("sequence number {next} does not follow {previous}")]
    SequenceNotIncreasing {
        /// The last sequence number accepted.
        previous: SequenceNumber,
        /// The offending one.
        next: SequenceNumber,
    },
    /// A sequence number was completed that is not in flight.
    #[error("sequence number {0} is not in flight")]
    UnknownSequence(SequenceNumber),
}
