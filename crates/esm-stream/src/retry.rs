//! The per-batch error-handling state machine of a stream event source mapping.
//!
//! One [`BatchRetry`] takes one batch (the records of one lane's batch, in shard order) from its
//! first invoke to the point where every record is final. While it runs, the lane is blocked:
//! that is AWS's in-order guarantee ("the shard is blocked until the batch succeeds or is
//! discarded"). The caller drives it:
//!
//! ```text
//! loop {
//!     match machine.next_action(now_millis) {
//!         Action::Invoke(range)    => { let outcome = invoke(&records[range]); machine.on_outcome(outcome) }
//!         Action::Backoff(delay)   => sleep(delay),
//!         Action::Discard(discard) => send_on_failure_record(&discard),   // before checkpointing
//!         Action::Checkpoint { records, .. } => mark_final(&records[records]),
//!         Action::Done             => break,
//!     }
//! }
//! ```
//!
//! # Rules (sources: docs/aws-reference.md#stream-error-handling,
//! #stream-retries-observed-on-aws)
//!
//! * **Retry budget.** A record set that keeps failing as a whole is invoked
//!   `1 + MaximumRetryAttempts` times, then discarded with `RetryAttemptsExhausted` and
//!   `approximateInvokeCount` = the number of invocations of that set (observed: MaxRetry 1 → 2,
//!   3 → 4). `-1` retries forever (until the record age limit, if any).
//! * **Full failures** are [`Outcome::FunctionError`] (`responseContext.functionError` =
//!   `"Unhandled"`), [`Outcome::InvalidResponse`] and a partial-batch response that names the
//!   *first* record of the invoked range (both: `functionError: null`, the function returned
//!   normally).
//! * **Throttles and service errors** ([`Outcome::Throttled`], [`Outcome::ServiceError`]) never
//!   reached the function: no attempt is counted, nothing is split; the same range is retried
//!   after an exponential [`Backoff`].
//! * **Record age** is checked before *every* invoke: the leading records of the range older
//!   than `MaximumRecordAgeInSeconds` are discarded alone with `RecordAgeExceeded`, no response
//!   context, and `approximateInvokeCount` = invocations of the range so far, at least 1
//!   (observed: 1 when never invoked, 8 after 8 failed invokes); the fresh remainder continues.
//!   Only a leading run is discarded because the checkpoint can only move over a prefix; arrival
//!   times are in shard order in practice.
//! * **Partial batch response** (`ReportBatchItemFailures`): everything before the *lowest*
//!   failed sequence number is final; the range is retried from that record on with a **fresh**
//!   retry budget (observed: a 6-record test where record 6 failed was invoked 5 times, once in
//!   its batch and then 1 + MaxRetry 3 times alone, `approximateInvokeCount` 4). An identifier
//!   that is not a sequence number of the invoked range makes the response invalid (observed:
//!   `123` → full failure). Without the setting the response is ignored (success).
//! * **Bisect** (`BisectBatchOnFunctionError`): a [`Outcome::FunctionError`] on a range of two or
//!   more records splits it into a first half of `ceil(n/2)` records and a second half, processed
//!   in that order; a one-record range is retried instead. See "Bisect and the retry budget".
//!   Invalid responses are *not* bisected: AWS itself reports them with `functionError: null`,
//!   i.e. not as function errors.
//!
//! # Bisect and the retry budget
//!
//! AWS says splitting "does not count towards the retry quota" and documents nothing else. We
//! count an attempt only for a failure that leads to a *retry of the same record set*; a failure
//! that leads to a split is the split, not an attempt. Each half inherits the attempts already
//! counted on its parent (non-zero only if the parent had been retried whole first, e.g. after
//! an invalid response) and starts its own invoke count at 0. The consequence: an innocent record
//! is never discarded because it shared a batch with a poison record, and the poison record is
//! discarded alone after `1 + MaximumRetryAttempts` invokes of it alone. With a batch of 8 records
//! `r0..r7`, `r5` poisoned, MaxRetry 2 (ranges are record indices, end exclusive):
//!
//! | # | invoke | outcome | next |
//! |---|--------|---------|------|
//! | 1 | 0..8 | error | split into 0..4, 4..8 |
//! | 2 | 0..4 | ok | checkpoint 0..4 |
//! | 3 | 4..8 | error | split into 4..6, 6..8 |
//! | 4 | 4..6 | error | split into 4..5, 5..6 |
//! | 5 | 4..5 | ok | checkpoint 4..5 |
//! | 6 | 5..6 | error | attempt 1, retry |
//! | 7 | 5..6 | error | attempt 2, retry |
//! | 8 | 5..6 | error | attempt 3 > 1 + 2: discard 5..6 (count 3), checkpoint 5..6 |
//! | 9 | 6..8 | ok | checkpoint 6..8, done |
//!
//! (Had halves inherited an attempt per split instead, invoke 4 would already exhaust MaxRetry 2
//! and discard the innocent `r4` together with `r5`.)

use std::ops::Range;
use std::time::Duration;

use crate::{Error, SequenceNumber};

/// Largest `MaximumRetryAttempts` AWS accepts.
pub const MAX_RETRY_ATTEMPTS: i64 = 10_000;
/// Smallest finite `MaximumRecordAgeInSeconds` AWS accepts.
pub const MIN_RECORD_AGE_SECS: i64 = 60;
/// Largest finite `MaximumRecordAgeInSeconds` AWS accepts (7 days).
pub const MAX_RECORD_AGE_SECS: i64 = 604_800;

/// The `responseContext.functionError` value for thrown errors and timeouts.
pub const FUNCTION_ERROR_UNHANDLED: &str = "Unhandled";

/// Error-handling settings of a stream mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// `BisectBatchOnFunctionError`.
    pub bisect_on_function_error: bool,
    /// `MaximumRetryAttempts`; `None` = `-1` = retry until the record expires.
    pub maximum_retry_attempts: Option<u32>,
    /// `MaximumRecordAgeInSeconds`; `None` = `-1` = no limit (stream retention applies).
    pub maximum_record_age: Option<Duration>,
    /// `FunctionResponseTypes` contains `ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
    /// Delays between retries after throttles and service errors.
    pub throttle_backoff: Backoff,
}

impl RetryConfig {
    /// Builds a config from the API values (`-1` = infinite), validating ranges like AWS does.
    pub fn from_api(
        bisect_on_function_error: bool,
        maximum_retry_attempts: i64,
        maximum_record_age_secs: i64,
        report_batch_item_failures: bool,
    ) -> Result<Self, Error> {
        let maximum_retry_attempts = match maximum_retry_attempts {
            -1 => None,
            n @ 0..=MAX_RETRY_ATTEMPTS => Some(n as u32),
            n => return Err(Error::MaximumRetryAttempts(n)),
        };
        let maximum_record_age = match maximum_record_age_secs {
            -1 => None,
            n @ MIN_RECORD_AGE_SECS..=MAX_RECORD_AGE_SECS => Some(Duration::from_secs(n as u64)),
            n => return Err(Error::MaximumRecordAge(n)),
        };
        Ok(RetryConfig {
            bisect_on_function_error,
            maximum_retry_attempts,
            maximum_record_age,
            report_batch_item_failures,
            throttle_backoff: Backoff::default(),
        })
    }
}

/// Exponential backoff: `initial`, then doubling, never above `max`.
///
/// Default 500 ms doubling to 30 s (0.5, 1, 2, 4, 8, 16, 30, 30 … s). AWS does not document its
/// throttle retry timing; these numbers keep a throttled shard responsive (a throttle usually
/// clears when other invocations finish) without hammering the function's concurrency limit.
/// The delays are deterministic; the poller should add jitter so many shards throttled together
/// do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first throttle.
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// Delays between invocations of a batch the function failed (function error, invalid
    /// response, partial batch failure, each half of a bisected batch): 2 s doubling to 10 s, so
    /// invokes start at 0, 2, 6, 14, 24, 34, 44, 54 s — 8 invokes in the first minute, the count
    /// AWS was recorded making (`MaximumRetryAttempts` -1, `MaximumRecordAgeInSeconds` 60: the
    /// failure record says `approximateInvokeCount` 8). AWS documents no timing, only that a
    /// failing batch is retried until it succeeds or is discarded
    /// (<https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html>). The
    /// delays are deterministic: they must add up to AWS's count, and a failing lane retries
    /// alone, so there is no herd to spread.
    pub const FUNCTION_ERROR: Backoff = Backoff {
        initial: Duration::from_secs(2),
        max: Duration::from_secs(10),
    };

    /// Delay before retry number `failures` (1 = after the first failure).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// What the machine needs to know about one record of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    /// The record's sequence number.
    pub sequence_number: SequenceNumber,
    /// `ApproximateArrivalTimestamp` (Kinesis) / `ApproximateCreationDateTime` (DynamoDB), in
    /// epoch milliseconds.
    pub arrival_millis: i64,
}

/// The result of one invoke, as classified by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function returned normally and reported no failure (any of the success shapes).
    Success,
    /// `X-Amz-Function-Error` was set: thrown error, timeout, runtime crash.
    FunctionError,
    /// A well-formed `batchItemFailures` list: the sequence numbers the function reported as
    /// failed. Identifiers that are not in the invoked range make the response invalid.
    PartialFailure(Vec<SequenceNumber>),
    /// The function returned normally but the response is unusable (malformed
    /// `batchItemFailures`; a tumbling-window response without `state`).
    InvalidResponse,
    /// Invoke refused with a throttle (429): the function did not run.
    Throttled,
    /// Invoke failed before the function ran (Lambda 5xx, network).
    ServiceError,
}

/// Why records were discarded (`requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscardCondition {
    /// `RetryAttemptsExhausted`.
    RetryAttemptsExhausted,
    /// `RecordAgeExceeded`.
    RecordAgeExceeded,
}

impl DiscardCondition {
    /// The wire value for the on-failure record.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscardCondition::RetryAttemptsExhausted => "RetryAttemptsExhausted",
            DiscardCondition::RecordAgeExceeded => "RecordAgeExceeded",
        }
    }
}

/// `responseContext` of an on-failure record (`executedVersion` is the caller's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseContext {
    /// Always 200: stream invokes that reached the function returned 200.
    pub status_code: u16,
    /// `Some("Unhandled")` after a function error, `None` (JSON `null`) after invalid or
    /// partial responses.
    pub function_error: Option<&'static str>,
}

/// Records given up on; the caller sends the on-failure record, then the machine checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discard {
    /// Indices into the batch, contiguous, reported once.
    pub records: Range<usize>,
    /// `requestContext.condition`.
    pub condition: DiscardCondition,
    /// `requestContext.approximateInvokeCount`.
    pub approximate_invoke_count: u32,
    /// `responseContext`; `None` for `RecordAgeExceeded` (AWS omits the key).
    pub response: Option<ResponseContext>,
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Invoke the function with these records (indices into the batch), then report
    /// [`BatchRetry::on_outcome`].
    Invoke(Range<usize>),
    /// Wait this long, then ask again.
    Backoff(Duration),
    /// Send an on-failure record for these records. A [`Action::Checkpoint`] covering them
    /// follows.
    Discard(Discard),
    /// `records` (indices into the batch) are now final: delivered or discarded. They always
    /// continue where the previous checkpoint ended; `sequence_number` is that of the last one.
    Checkpoint {
        /// Records newly final.
        records: Range<usize>,
        /// Sequence number of `records.end - 1`.
        sequence_number: SequenceNumber,
    },
    /// Every record is final.
    Done,
}

/// Why an invoke failed; decides the discard's response context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Function,
    Response,
}

/// A record range still to process, with its retry bookkeeping.
#[derive(Debug, Clone)]
struct Work {
    range: Range<usize>,
    /// Failures counted against the retry budget.
    attempts: u32,
    /// Invocations of exactly this range that reached the function.
    invokes: u32,
}

impl Work {
    fn fresh(range: Range<usize>) -> Self {
        Work {
            range,
            attempts: 0,
            invokes: 0,
        }
    }
}

/// The error-handling state machine for one batch. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct BatchRetry {
    config: RetryConfig,
    records: Vec<BatchRecord>,
    /// Ranges still to process; the last element is the current one. Together they cover
    /// `final_end..records.len()` in order (last element first).
    work: Vec<Work>,
    /// Actions decided but not yet handed out.
    queued: std::collections::VecDeque<Action>,
    /// Set between `Action::Invoke` and `on_outcome`.
    in_flight: bool,
    /// Records `0..final_end` have been checkpointed.
    final_end: usize,
    /// Consecutive throttles / service errors of the current range.
    throttles: u32,
}

impl BatchRetry {
    /// A machine for `records` (non-empty, strictly increasing sequence numbers).
    pub fn new(config: RetryConfig, records: Vec<BatchRecord>) -> Result<Self, Error> {
        if records.is_empty() {
            return Err(Error::EmptyBatch);
        }
        if let Some(pair) = records
            .windows(2)
            .find(|w| w[0].sequence_number >= w[1].sequence_number)
        {
            return Err(Error::SequenceNotIncreasing {
                previous: pair[0].sequence_number.clone(),
                next: pair[1].sequence_number.clone(),
            });
        }
        let work = vec![Work::fresh(0..records.len())];
        Ok(BatchRetry {
            config,
            records,
            work,
            queued: Default::default(),
            in_flight: false,
            final_end: 0,
            throttles: 0,
        })
    }

    /// The batch's records.
    pub fn records(&self) -> &[BatchRecord] {
        &self.records
    }

    /// The next thing to do, at wall-clock time `now_millis` (epoch ms, used for record age).
    ///
    /// # Panics
    /// If the previous [`Action::Invoke`] has not been answered with [`BatchRetry::on_outcome`].
    pub fn next_action(&mut self, now_millis: i64) -> Action {
        assert!(
            !self.in_flight,
            "next_action called before on_outcome of the pending invoke"
        );
        if let Some(action) = self.queued.pop_front() {
            return action;
        }
        let Some(current) = self.work.last_mut() else {
            return Action::Done;
        };
        let expired = match self.config.maximum_record_age {
            Some(max_age) => {
                let max_age_millis = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
                self.records[current.range.clone()]
                    .iter()
                    .take_while(|r| now_millis.saturating_sub(r.arrival_millis) > max_age_millis)
                    .count()
            }
            None => 0,
        };
        if expired > 0 {
            let records = current.range.start..current.range.start + expired;
            let discard = Discard {
                records: records.clone(),
                condition: DiscardCondition::RecordAgeExceeded,
                approximate_invoke_count: current.invokes.max(1),
                response: None,
            };
            // The fresh remainder keeps the range's bookkeeping: nothing new was learned about it.
            current.range.start = records.end;
            if current.range.is_empty() {
                self.work.pop();
            }
            self.queue_checkpoint(records.end);
            return Action::Discard(discard);
        }
        self.in_flight = true;
        Action::Invoke(current.range.clone())
    }

    /// Reports the outcome of the last [`Action::Invoke`].
    ///
    /// # Panics
    /// If no invoke is pending.
    pub fn on_outcome(&mut self, outcome: Outcome) {
        assert!(self.in_flight, "on_outcome without a pending invoke");
        self.in_flight = false;
        if matches!(outcome, Outcome::Throttled | Outcome::ServiceError) {
            self.throttles = self.throttles.saturating_add(1);
            self.queued.push_back(Action::Backoff(
                self.config.throttle_backoff.delay(self.throttles),
            ));
            return;
        }
        self.throttles = 0;
        let current = self
            .work
            .last_mut()
            .expect("an invoke implies a current range");
        current.invokes += 1;
        let range = current.range.clone();
        match outcome {
            Outcome::Success => self.succeed(),
            Outcome::PartialFailure(_) if !self.config.report_batch_item_failures => self.succeed(),
            Outcome::PartialFailure(failed) => match self.lowest_failed(&range, &failed) {
                None if failed.is_empty() => self.succeed(),
                None => self.fail(Failure::Response),
                Some(lowest) if lowest == range.start => self.fail(Failure::Response),
                Some(lowest) => {
                    // Everything before the lowest failed record succeeded; the rest is retried
                    // with a fresh budget (observed on AWS, docs/aws-reference.md#stream-retries-observed-on-aws).
                    *self.work.last_mut().expect("current range") = Work::fresh(lowest..range.end);
                    self.queue_checkpoint(lowest);
                }
            },
            Outcome::InvalidResponse => self.fail(Failure::Response),
            Outcome::FunctionError if self.config.bisect_on_function_error && range.len() >= 2 => {
                let parent = self.work.pop().expect("current range");
                let middle = range.start + range.len().div_ceil(2);
                // Second half pushed first: `work` is a stack and the first half runs next.
                for half in [middle..range.end, range.start..middle] {
                    self.work.push(Work {
                        range: half,
                        attempts: parent.attempts,
                        invokes: 0,
                    });
                }
            }
            Outcome::FunctionError => self.fail(Failure::Function),
            Outcome::Throttled | Outcome::ServiceError => unreachable!("handled above"),
        }
    }

    /// Index of the lowest failed record, or `None` if the list is empty or names a record
    /// outside `range` (which makes the whole response invalid).
    fn lowest_failed(&self, range: &Range<usize>, failed: &[SequenceNumber]) -> Option<usize> {
        let invoked = &self.records[range.clone()];
        let mut lowest: Option<usize> = None;
        for sequence_number in failed {
            let offset = invoked
                .binary_search_by(|r| r.sequence_number.cmp(sequence_number))
                .ok()?;
            lowest = Some(lowest.map_or(offset, |l| l.min(offset)));
        }
        lowest.map(|offset| range.start + offset)
    }

    fn succeed(&mut self) {
        let done = self.work.pop().expect("current range");
        self.queue_checkpoint(done.range.end);
    }

    /// A failure counted against the retry budget: retry the same range, or discard it once
    /// `1 + MaximumRetryAttempts` invocations have failed.
    fn fail(&mut self, failure: Failure) {
        let current = self.work.last_mut().expect("current range");
        current.attempts += 1;
        let exhausted = self
            .config
            .maximum_retry_attempts
            .is_some_and(|max| current.attempts > max);
        if !exhausted {
            return;
        }
        let current = self.work.pop().expect("current range");
        self.queued.push_back(Action::Discard(Discard {
            records: current.range.clone(),
            condition: DiscardCondition::RetryAttemptsExhausted,
            approximate_invoke_count: current.invokes,
            response: Some(ResponseContext {
                status_code: 200,
                function_error: match failure {
                    Failure::Function => Some(FUNCTION_ERROR_UNHANDLED),
                    Failure::Response => None,
                },
            }),
        }));
        self.queue_checkpoint(current.range.end);
    }

    /// Queues a checkpoint making records `final_end..end` final.
    fn queue_checkpoint(&mut self, end: usize) {
        let records = self.final_end..end;
        self.final_end = end;
        self.queued.push_back(Action::Checkpoint {
            sequence_number: self.records[end - 1].sequence_number.clone(),
            records,
        });
    }
}

#[cfg(test)]
mod tests;
