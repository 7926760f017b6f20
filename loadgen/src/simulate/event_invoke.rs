//! Lambda's asynchronous invocation (`X-Amz-Invocation-Type: Event`): the settings
//! `PutFunctionEventInvokeConfig` takes, what happens after each attempt, and the invocation record
//! sent to a destination. Pure; the simulator runs the attempts and sends the records.
//!
//! Lambda queues the event and answers 202. Then, as documented
//! (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html>):
//! * a function error (timeouts included) is retried `MaximumRetryAttempts` times (0 to 2,
//!   default 2), about one minute before the second attempt and two minutes before the third;
//! * a throttle returns the event to the queue, retried with a backoff from 1 second up to
//!   5 minutes, without counting as a retry attempt, until the event is older than
//!   `MaximumEventAgeInSeconds` (60 to 21600, default 21600);
//! * the outcome goes to the on-success destination (`Success`) or the on-failure one
//!   (`RetriesExhausted`, `EventAgeExceeded`) as an invocation record
//!   (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html>).
//!
//! A function with reserved concurrency 0 never runs: Lambda sends the event to the on-failure
//! destination at once with condition `ZeroReservedConcurrency` and `approximateInvokeCount` 0
//! (observed), which the simulator does too.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::timing::duration_str;

/// The settings of `PutFunctionEventInvokeConfig`, plus the waits Lambda does not let one set
/// (so that tests need not wait minutes). TOML: `[default.event_invoke]` or
/// `[functions.NAME.event_invoke]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventInvokeConfig {
    /// `MaximumRetryAttempts`: retries after a function error, 0 to 2. Default 2.
    pub maximum_retry_attempts: u32,
    /// `MaximumEventAgeInSeconds`: an event older than this is discarded (to the on-failure
    /// destination as `EventAgeExceeded`) instead of being tried again. Default 6 h. Any value
    /// above zero is accepted (Lambda's range is 60 s to 6 h) so that tests can reach it.
    #[serde(with = "duration_str")]
    pub maximum_event_age: Duration,
    /// Wait before retry N after a function error (the last entry repeats). Default
    /// `["1m", "2m"]`, Lambda's.
    #[serde(with = "duration_list")]
    pub retry_delays: Vec<Duration>,
    /// Time an event spends in Lambda's queue before its first attempt. Default 0.
    #[serde(with = "duration_str")]
    pub queue_delay: Duration,
    /// `DestinationConfig.OnSuccess.Destination`: an SQS queue URL or ARN (an ARN resolves against
    /// the simulator's SQS endpoint, `AWS_ENDPOINT_URL_SQS` or `AWS_ENDPOINT_URL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    /// `DestinationConfig.OnFailure.Destination`, likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
}

impl Default for EventInvokeConfig {
    fn default() -> Self {
        EventInvokeConfig {
            maximum_retry_attempts: 2,
            maximum_event_age: Duration::from_secs(21_600),
            retry_delays: vec![Duration::from_secs(60), Duration::from_secs(120)],
            queue_delay: Duration::ZERO,
            on_success: None,
            on_failure: None,
        }
    }
}

impl EventInvokeConfig {
    /// Returns the offending field name and the problem.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.maximum_retry_attempts > 2 {
            return Err((
                "maximum_retry_attempts",
                format!(
                    "must be between 0 and 2, got {}",
                    self.maximum_retry_attempts
                ),
            ));
        }
        if self.maximum_event_age.is_zero() {
            return Err(("maximum_event_age", "must be above zero".to_owned()));
        }
        if self.retry_delays.is_empty() {
            return Err(("retry_delays", "must list at least one delay".to_owned()));
        }
        Ok(())
    }

    /// What to do with an event after an attempt that went as `attempt`: `attempts` attempts were
    /// made so far (throttles included), `runs` of them ran the function, and the event is `age`
    /// old now.
    pub(crate) fn next(&self, attempt: Attempt, runs: u32, attempts: u32, age: Duration) -> Next {
        let retry = |delay: Duration| {
            // An event that would be too old by its next attempt is discarded now: Lambda checks
            // the age when it takes the event from the queue again.
            if age.saturating_add(delay) > self.maximum_event_age {
                Next::Discard(Condition::EventAgeExceeded)
            } else {
                Next::Retry(delay)
            }
        };
        match attempt {
            Attempt::Succeeded => Next::Discard(Condition::Success),
            Attempt::ZeroConcurrency => Next::Discard(Condition::ZeroReservedConcurrency),
            Attempt::Failed if runs > self.maximum_retry_attempts => {
                Next::Discard(Condition::RetriesExhausted)
            }
            Attempt::Failed => {
                let index = usize::try_from(runs - 1).unwrap_or(usize::MAX);
                let delay = self.retry_delays[index.min(self.retry_delays.len() - 1)];
                retry(delay)
            }
            Attempt::Throttled => retry(throttle_backoff(attempts.saturating_sub(runs))),
        }
    }
}

/// Lambda's backoff for a throttled event after `throttles` throttles in a row: 1 s, doubling,
/// at most 5 minutes.
fn throttle_backoff(throttles: u32) -> Duration {
    let exponent = throttles.saturating_sub(1).min(16);
    Duration::from_secs(1 << exponent).min(Duration::from_secs(300))
}

/// How one attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    Succeeded,
    /// The function raised or timed out.
    Failed,
    /// No environment free within the reserved concurrency.
    Throttled,
    /// Reserved concurrency 0: the function can never run.
    ZeroConcurrency,
}

/// What becomes of the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try again after this wait.
    Retry(Duration),
    /// Done: send the record to the matching destination, if one is set.
    Discard(Condition),
}

/// `requestContext.condition` of an invocation record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
    ZeroReservedConcurrency,
}

impl Condition {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
            Condition::ZeroReservedConcurrency => "ZeroReservedConcurrency",
        }
    }

    pub(crate) fn is_success(self) -> bool {
        self == Condition::Success
    }
}

/// The last run of the function, for `responseContext` and `responsePayload`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LastRun {
    pub(crate) executed_version: String,
    /// `Unhandled` when the function raised.
    pub(crate) function_error: Option<&'static str>,
    /// The response body text (the error object on a failure).
    pub(crate) body: String,
}

/// An invocation record as Lambda sends it to an SQS destination: `timestamp` is when the
/// invocation finished (millisecond resolution), `approximateInvokeCount` how many times the
/// function ran, and the response members exist only when it ran at all.
/// <https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html>
pub(crate) fn record(
    finished: SystemTime,
    request_id: &str,
    function_arn: &str,
    condition: Condition,
    invoke_count: u32,
    request_payload: &Value,
    last: Option<&LastRun>,
) -> Value {
    let mut record = json!({
        "version": "1.0",
        "timestamp": humantime::format_rfc3339_millis(finished).to_string(),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition.as_str(),
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": request_payload,
    });
    if let Some(last) = last {
        let mut response = json!({"statusCode": 200, "executedVersion": last.executed_version});
        if let Some(error) = last.function_error {
            response["functionError"] = json!(error);
        }
        record["responseContext"] = response;
        // The function's result as JSON, or as a string when it is not JSON (as Lambda does).
        record["responsePayload"] =
            serde_json::from_str(&last.body).unwrap_or_else(|_| Value::String(last.body.clone()));
    }
    record
}

/// Serde for lists of durations as human-readable strings (`["1m", "2m"]`).
mod duration_list {
    use std::time::Duration;

    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for d in list {
            seq.serialize_element(&humantime::format_duration(*d).to_string())?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| {
                humantime::parse_duration(s)
                    .map_err(|e| serde::de::Error::custom(format!("`{s}`: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn function_errors_are_retried_after_one_then_two_minutes_by_default() {
        let config = EventInvokeConfig::default();
        assert_eq!(
            config.next(Attempt::Failed, 1, 1, secs(0)),
            Next::Retry(secs(60))
        );
        assert_eq!(
            config.next(Attempt::Failed, 2, 2, secs(61)),
            Next::Retry(secs(120))
        );
        assert_eq!(
            config.next(Attempt::Failed, 3, 3, secs(182)),
            Next::Discard(Condition::RetriesExhausted)
        );
        assert_eq!(
            config.next(Attempt::Succeeded, 2, 2, secs(61)),
            Next::Discard(Condition::Success)
        );
    }

    #[test]
    fn retry_attempts_count_runs_not_throttles() {
        let config = EventInvokeConfig {
            maximum_retry_attempts: 1,
            ..EventInvokeConfig::default()
        };
        // Ran once, throttled twice: one retry left.
        assert_eq!(
            config.next(Attempt::Failed, 1, 3, secs(5)),
            Next::Retry(secs(60))
        );
        assert_eq!(
            config.next(Attempt::Failed, 2, 4, secs(70)),
            Next::Discard(Condition::RetriesExhausted)
        );
        let none = EventInvokeConfig {
            maximum_retry_attempts: 0,
            ..EventInvokeConfig::default()
        };
        assert_eq!(
            none.next(Attempt::Failed, 1, 1, secs(0)),
            Next::Discard(Condition::RetriesExhausted)
        );
    }

    #[test]
    fn throttles_back_off_from_one_second_to_five_minutes() {
        let config = EventInvokeConfig::default();
        let delays: Vec<Next> = (1..=11)
            .map(|n| config.next(Attempt::Throttled, 0, n, secs(0)))
            .collect();
        let expected: Vec<Next> = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
            .into_iter()
            .map(|s| Next::Retry(secs(s)))
            .collect();
        assert_eq!(delays, expected);
    }

    #[test]
    fn an_event_too_old_for_its_next_attempt_is_discarded() {
        let config = EventInvokeConfig {
            maximum_event_age: secs(100),
            ..EventInvokeConfig::default()
        };
        assert_eq!(
            config.next(Attempt::Failed, 1, 1, secs(39)),
            Next::Retry(secs(60))
        );
        assert_eq!(
            config.next(Attempt::Failed, 1, 1, secs(41)),
            Next::Discard(Condition::EventAgeExceeded)
        );
        assert_eq!(
            config.next(Attempt::Throttled, 0, 1, secs(100)),
            Next::Discard(Condition::EventAgeExceeded)
        );
        assert_eq!(
            config.next(Attempt::ZeroConcurrency, 0, 1, secs(0)),
            Next::Discard(Condition::ZeroReservedConcurrency)
        );
    }

    #[test]
    fn the_last_retry_delay_repeats() {
        let config = EventInvokeConfig {
            retry_delays: vec![Duration::from_millis(5)],
            ..EventInvokeConfig::default()
        };
        assert_eq!(
            config.next(Attempt::Failed, 2, 2, secs(0)),
            Next::Retry(Duration::from_millis(5))
        );
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |config: EventInvokeConfig| config.validate().unwrap_err().0;
        assert_eq!(
            bad(EventInvokeConfig {
                maximum_retry_attempts: 3,
                ..EventInvokeConfig::default()
            }),
            "maximum_retry_attempts"
        );
        assert_eq!(
            bad(EventInvokeConfig {
                retry_delays: vec![],
                ..EventInvokeConfig::default()
            }),
            "retry_delays"
        );
        assert_eq!(
            bad(EventInvokeConfig {
                maximum_event_age: Duration::ZERO,
                ..EventInvokeConfig::default()
            }),
            "maximum_event_age"
        );
    }

    /// The example record of AWS's documentation (invocation-async-retain-records), rebuilt from
    /// its parts, is the documented JSON member for member.
    #[test]
    fn the_record_has_the_documented_shape() {
        let finished = humantime::parse_rfc3339("2019-11-14T18:16:05.568Z").unwrap();
        let last = LastRun {
            executed_version: "$LATEST".to_owned(),
            function_error: Some("Unhandled"),
            body: r#"{"errorMessage":"RequestId: e4b46cbf-b738-xmpl-8880-a18cdf61200e Process exited before completing request"}"#
                .to_owned(),
        };
        let record = record(
            finished,
            "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "arn:aws:lambda:us-east-1:123456789012:function:my-function:$LATEST",
            Condition::RetriesExhausted,
            3,
            &json!({"ORDER_IDS": [
                "9e07af03-ce31-4ff3-xmpl-36dce652cb4f",
                "637de236-e7b2-464e-xmpl-baf57f86bb53",
                "a81ddca6-2c35-45c7-xmpl-c3a03a31ed15"
            ]}),
            Some(&last),
        );
        let documented = json!({
            "version": "1.0",
            "timestamp": "2019-11-14T18:16:05.568Z",
            "requestContext": {
                "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:my-function:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3
            },
            "requestPayload": {"ORDER_IDS": [
                "9e07af03-ce31-4ff3-xmpl-36dce652cb4f",
                "637de236-e7b2-464e-xmpl-baf57f86bb53",
                "a81ddca6-2c35-45c7-xmpl-c3a03a31ed15"
            ]},
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled"
            },
            "responsePayload": {
                "errorMessage": "RequestId: e4b46cbf-b738-xmpl-8880-a18cdf61200e Process exited before completing request"
            }
        });
        assert_eq!(record, documented);
        // Member order as documented, too (serde_json keeps insertion order here).
        let keys: Vec<&String> = record.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "version",
                "timestamp",
                "requestContext",
                "requestPayload",
                "responseContext",
                "responsePayload"
            ]
        );
    }

    #[test]
    fn a_success_has_no_function_error_and_a_function_that_never_ran_no_response() {
        let finished = SystemTime::UNIX_EPOCH;
        let last = LastRun {
            executed_version: "$LATEST".to_owned(),
            function_error: None,
            body: "not json".to_owned(),
        };
        let ok = record(
            finished,
            "r",
            "arn",
            Condition::Success,
            1,
            &json!({}),
            Some(&last),
        );
        assert_eq!(
            ok["responseContext"],
            json!({"statusCode": 200, "executedVersion": "$LATEST"})
        );
        assert_eq!(ok["responsePayload"], json!("not json"));
        assert_eq!(ok["timestamp"], json!("1970-01-01T00:00:00.000Z"));
        let never = record(
            finished,
            "r",
            "arn",
            Condition::ZeroReservedConcurrency,
            0,
            &json!({}),
            None,
        );
        assert!(never.get("responseContext").is_none() && never.get("responsePayload").is_none());
        assert_eq!(never["requestContext"]["approximateInvokeCount"], json!(0));
    }
}
