//! What became of one request: its outcome class, and the cold start its log tail reports.
//!
//! Pure: classification works on the `lambda-invoke` result, so every branch is tested without a
//! target.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lambda_invoke::{Error as InvokeError, Response};
use serde::{Deserialize, Serialize};

/// Outcome classes, each with its own latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The function ran and returned normally (Invoke API 200/202/204, or HTTP 2xx).
    Success,
    /// The function ran and failed: `X-Amz-Function-Error` (unhandled error, `Sandbox.Timedout`).
    FunctionError,
    /// 429: throttled, counted by its `Reason`.
    Throttle,
    /// Any other HTTP error status (4xx, 5xx), counted by status and error code.
    HttpError,
    /// No answer within the request timeout.
    Timeout,
    /// No HTTP answer at all: connection refused or reset, signing failure, ….
    TransportError,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Success,
        Outcome::FunctionError,
        Outcome::Throttle,
        Outcome::HttpError,
        Outcome::Timeout,
        Outcome::TransportError,
    ];

    /// The name used in reports, thresholds (`throttle_rate`) and `.hlog` tags.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::FunctionError => "function_error",
            Outcome::Throttle => "throttle",
            Outcome::HttpError => "http_error",
            Outcome::Timeout => "timeout",
            Outcome::TransportError => "transport_error",
        }
    }

    /// Position in [`Outcome::ALL`], for per-outcome arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown outcome `{s}`"))
    }
}

/// A classified result: the class and a detail to count it by (throttle reason, error type or
/// HTTP status), plus the init duration when the log tail shows a cold start.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    pub outcome: Outcome,
    pub detail: Option<String>,
    pub init_duration: Option<Duration>,
}

/// Classifies what the target answered; `None` means the request timed out.
///
/// A 2xx response with `X-Amz-Function-Error` is a function error (the Invoke API answers 200 for
/// those). A non-2xx response can only come from a plain HTTP target (`lambda-invoke` passes its
/// status through): it is an HTTP error counted by status, because a generic endpoint's 500 says
/// nothing about a function.
pub fn classify(result: Option<&Result<Response, InvokeError>>) -> Classified {
    let (outcome, detail, init_duration) = match result {
        None => (Outcome::Timeout, None, None),
        Some(Ok(response)) => {
            let init = response
                .log_tail
                .as_deref()
                .and_then(ReportLine::find)
                .and_then(|r| r.init_duration);
            if !(200..300).contains(&response.status) {
                (Outcome::HttpError, Some(response.status.to_string()), init)
            } else if let Some(kind) = &response.function_error {
                (Outcome::FunctionError, Some(kind.clone()), init)
            } else {
                (Outcome::Success, None, init)
            }
        }
        Some(Err(error)) => match error {
            InvokeError::Throttled { reason, .. } => (
                Outcome::Throttle,
                Some(reason.clone().unwrap_or_else(|| "(no reason)".to_owned())),
                None,
            ),
            InvokeError::Service { status, code, .. }
            | InvokeError::Client { status, code, .. } => {
                (Outcome::HttpError, Some(format!("{status} {code}")), None)
            }
            InvokeError::Transport(message) => {
                (Outcome::TransportError, Some(message.clone()), None)
            }
        },
    };
    Classified {
        outcome,
        detail,
        init_duration,
    }
}

/// OS errors that say the generator's own machine ran out of something, by the text the Rust
/// standard library gives them (`… (os error N)`, Linux numbers): the request never left, so it is
/// the generator's saturation, not a transport error of the target.
const GENERATOR_LIMITS: [(&str, &str); 3] = [
    (
        "(os error 24)",
        "file descriptors (EMFILE: raise `ulimit -n` or lower max_in_flight)",
    ),
    (
        "(os error 23)",
        "file descriptors (ENFILE: the system's table is full)",
    ),
    (
        "(os error 99)",
        "local ports (EADDRNOTAVAIL: lower max_in_flight or reuse connections)",
    ),
];

/// The generator limit `result` ran into, if it failed in the generator's machine rather than on
/// the way to or in the target.
pub(crate) fn generator_limit(result: &Result<Response, InvokeError>) -> Option<&'static str> {
    let Err(InvokeError::Transport(message)) = result else {
        return None;
    };
    GENERATOR_LIMITS
        .iter()
        .find(|(code, _)| message.contains(code))
        .map(|&(_, cause)| cause)
}

/// The fields of a Lambda `REPORT` log line that the load generator uses.
///
/// ```text
/// REPORT RequestId: 3604209a-…\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 64 MB\tInit Duration: 180.56 ms\t
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ReportLine {
    pub duration: Option<Duration>,
    /// Present exactly on cold starts.
    pub init_duration: Option<Duration>,
}

impl ReportLine {
    /// The last `REPORT` line in a log tail (a tail is the end of the log, so an earlier line
    /// belongs to nothing else here).
    pub fn find(log: &str) -> Option<ReportLine> {
        let line = log.lines().rev().find(|l| l.starts_with("REPORT "))?;
        let mut report = ReportLine {
            duration: None,
            init_duration: None,
        };
        for field in line.split('\t') {
            let Some((key, value)) = field.split_once(':') else {
                continue;
            };
            let slot = match key.trim() {
                "Duration" => &mut report.duration,
                "Init Duration" => &mut report.init_duration,
                _ => continue,
            };
            *slot = parse_ms(value);
        }
        Some(report)
    }
}

/// `" 12.34 ms"` → 12.34 ms.
fn parse_ms(value: &str) -> Option<Duration> {
    let number = value.trim().strip_suffix("ms")?.trim();
    let ms: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(ms / 1e3).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_file_descriptors_is_the_generators_limit() {
        let transport = |m: &str| Err(InvokeError::Transport(m.to_owned()));
        // As reqwest's error chain renders it.
        let emfile = transport(
            "error sending request for url (http://127.0.0.1:9/): client error (Connect): \
             tcp connect error: Too many open files (os error 24)",
        );
        assert!(
            generator_limit(&emfile)
                .unwrap()
                .starts_with("file descriptors")
        );
        let ports = transport("tcp connect error: Cannot assign requested address (os error 99)");
        assert!(generator_limit(&ports).unwrap().starts_with("local ports"));
        // The target's failures stay the target's.
        let refused = transport("tcp connect error: Connection refused (os error 111)");
        assert_eq!(generator_limit(&refused), None);
        assert_eq!(generator_limit(&Ok(response(200, None, None))), None);
        let throttled = Err(InvokeError::Throttled {
            reason: None,
            retry_after: None,
        });
        assert_eq!(generator_limit(&throttled), None);
    }

    fn response(status: u16, function_error: Option<&str>, log_tail: Option<&str>) -> Response {
        Response {
            status,
            function_error: function_error.map(str::to_owned),
            payload: Vec::new(),
            executed_version: None,
            log_tail: log_tail.map(str::to_owned),
        }
    }

    fn outcome(result: Result<Response, InvokeError>) -> (Outcome, Option<String>) {
        let c = classify(Some(&result));
        (c.outcome, c.detail)
    }

    #[test]
    fn responses_are_classified_by_status_and_function_error() {
        assert_eq!(
            outcome(Ok(response(200, None, None))),
            (Outcome::Success, None)
        );
        assert_eq!(
            outcome(Ok(response(202, None, None))),
            (Outcome::Success, None)
        );
        assert_eq!(
            outcome(Ok(response(200, Some("Unhandled"), None))),
            (Outcome::FunctionError, Some("Unhandled".into()))
        );
        // A plain HTTP target's error status (lambda-invoke passes it through as a response).
        assert_eq!(
            outcome(Ok(response(500, Some("Unhandled"), None))),
            (Outcome::HttpError, Some("500".into()))
        );
    }

    #[test]
    fn errors_are_classified_with_their_detail() {
        let throttled = InvokeError::Throttled {
            reason: Some("ReservedFunctionConcurrentInvocationLimitExceeded".into()),
            retry_after: None,
        };
        assert_eq!(
            outcome(Err(throttled)),
            (
                Outcome::Throttle,
                Some("ReservedFunctionConcurrentInvocationLimitExceeded".into())
            )
        );
        let no_reason = InvokeError::Throttled {
            reason: None,
            retry_after: None,
        };
        assert_eq!(outcome(Err(no_reason)).1.as_deref(), Some("(no reason)"));
        let not_found = InvokeError::Client {
            status: 404,
            code: "ResourceNotFoundException".into(),
            message: String::new(),
        };
        assert_eq!(
            outcome(Err(not_found)),
            (
                Outcome::HttpError,
                Some("404 ResourceNotFoundException".into())
            )
        );
        let service = InvokeError::Service {
            status: 503,
            code: "ServiceException".into(),
            message: String::new(),
        };
        assert_eq!(outcome(Err(service)).0, Outcome::HttpError);
        let refused = InvokeError::Transport("connection refused".into());
        assert_eq!(outcome(Err(refused)).0, Outcome::TransportError);
        assert_eq!(classify(None).outcome, Outcome::Timeout);
    }

    const COLD: &str = "START RequestId: 1 Version: $LATEST\nEND RequestId: 1\nREPORT RequestId: 1\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 64 MB\tInit Duration: 180.56 ms\t\n";
    const WARM: &str = "START RequestId: 2 Version: $LATEST\nEND RequestId: 2\nREPORT RequestId: 2\tDuration: 3.00 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\tMax Memory Used: 64 MB\t";

    #[test]
    fn report_line_gives_duration_and_init_duration() {
        let cold = ReportLine::find(COLD).unwrap();
        assert_eq!(cold.duration, Some(Duration::from_micros(12_340)));
        assert_eq!(cold.init_duration, Some(Duration::from_micros(180_560)));
        let warm = ReportLine::find(WARM).unwrap();
        assert_eq!(warm.duration, Some(Duration::from_millis(3)));
        assert_eq!(warm.init_duration, None);
        assert_eq!(ReportLine::find("START RequestId: 1\n"), None);
    }

    #[test]
    fn cold_starts_come_from_the_log_tail() {
        let cold = classify(Some(&Ok(response(200, None, Some(COLD)))));
        assert_eq!(cold.init_duration, Some(Duration::from_micros(180_560)));
        let warm = classify(Some(&Ok(response(200, None, Some(WARM)))));
        assert_eq!(warm.init_duration, None);
        // A function error can be a cold start too.
        let failed = classify(Some(&Ok(response(200, Some("Unhandled"), Some(COLD)))));
        assert!(failed.init_duration.is_some());
    }

    #[test]
    fn outcome_names_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
            assert_eq!(Outcome::ALL[o.index()], o);
        }
    }
}
