//! What became of one request: its outcome class, and what its log tail's `REPORT` line says
//! (duration, billed duration, memory, cold start).
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
/// HTTP status), plus the `REPORT` line when a log tail came back.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    pub outcome: Outcome,
    pub detail: Option<String>,
    pub report: Option<ReportLine>,
}

/// Classifies what the target answered.
///
/// A 2xx response with `X-Amz-Function-Error` is a function error (the Invoke API answers 200 for
/// those). A non-2xx response can only come from a plain HTTP target (`lambda-invoke` passes its
/// status through): it is an HTTP error counted by status, because a generic endpoint's 500 says
/// nothing about a function.
pub fn classify(result: &Result<Response, InvokeError>) -> Classified {
    let (outcome, detail, report) = match result {
        Ok(response) => {
            let report = response.log_tail.as_deref().and_then(ReportLine::find);
            if !(200..300).contains(&response.status) {
                (
                    Outcome::HttpError,
                    Some(response.status.to_string()),
                    report,
                )
            } else if let Some(kind) = &response.function_error {
                (Outcome::FunctionError, Some(kind.clone()), report)
            } else {
                (Outcome::Success, None, report)
            }
        }
        Err(error) => match error {
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
            InvokeError::Timeout(_) => (Outcome::Timeout, None, None),
        },
    };
    Classified {
        outcome,
        detail,
        report,
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

/// A Lambda `REPORT` log line: what the function reports about one invocation, and what it is
/// billed for.
///
/// ```text
/// REPORT RequestId: 3604209a-…\tDuration: 395.99 ms\tBilled Duration: 662 ms\tMemory Size: 512 MB\tMax Memory Used: 301 MB\tInit Duration: 265.72 ms\t
/// ```
///
/// Format: <https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html>. Values
/// are decimals (durations in ms with two decimals, memory in whole MB). Fields the load generator
/// does not use (X-Ray's `XRAY TraceId`, SnapStart's `Restore Duration`) are skipped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportLine {
    /// The invoke phase: from the handler's start to its end (init not included).
    pub duration: Duration,
    /// What the invocation is billed for: `Duration` (plus `Init Duration` on a cold start, since
    /// Lambda bills the INIT phase of every function from 1 August 2025) rounded up to 1 ms.
    pub billed_duration: Duration,
    pub memory_size_mb: u32,
    pub max_memory_used_mb: u32,
    /// Present exactly on cold starts.
    pub init_duration: Option<Duration>,
}

impl ReportLine {
    /// The last `REPORT` line in a log tail (a tail is the end of the log, so an earlier line
    /// belongs to nothing else here). `None` when there is none, or when it lacks one of the four
    /// fields every `REPORT` line has (a truncated tail): a partial line would skew the billing.
    pub fn find(log: &str) -> Option<ReportLine> {
        let line = log.lines().rev().find(|l| l.starts_with("REPORT "))?;
        let (mut duration, mut billed, mut memory, mut used, mut init) =
            (None, None, None, None, None);
        for field in line.split('\t') {
            let Some((key, value)) = field.split_once(':') else {
                continue;
            };
            match key.trim() {
                "Duration" => duration = parse_ms(value),
                "Billed Duration" => billed = parse_ms(value),
                "Memory Size" => memory = parse_mb(value),
                "Max Memory Used" => used = parse_mb(value),
                "Init Duration" => init = parse_ms(value),
                _ => {}
            }
        }
        Some(ReportLine {
            duration: duration?,
            billed_duration: billed?,
            memory_size_mb: memory?,
            max_memory_used_mb: used?,
            init_duration: init,
        })
    }

    /// Billed duration × memory size, in MB·ms: an integer, so a run's total is exact.
    pub fn billed_mb_ms(&self) -> u128 {
        self.billed_duration.as_millis() * u128::from(self.memory_size_mb)
    }
}

#[cfg(test)]
impl ReportLine {
    /// A cold start of `init` (tests of the recorders, metrics and reports).
    pub(crate) fn cold(init: Duration) -> ReportLine {
        ReportLine {
            duration: Duration::from_millis(1),
            billed_duration: Duration::from_millis(1) + init,
            memory_size_mb: 128,
            max_memory_used_mb: 64,
            init_duration: Some(init),
        }
    }
}

/// `" 12.34 ms"` → 12.34 ms.
fn parse_ms(value: &str) -> Option<Duration> {
    let number = value.trim().strip_suffix("ms")?.trim();
    let ms: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(ms / 1e3).ok()
}

/// `" 128 MB"` → 128.
fn parse_mb(value: &str) -> Option<u32> {
    value.trim().strip_suffix("MB")?.trim().parse().ok()
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
            request_id: None,
        }
    }

    fn outcome(result: Result<Response, InvokeError>) -> (Outcome, Option<String>) {
        let c = classify(&result);
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
        let timed_out = InvokeError::Timeout(Duration::from_secs(1));
        assert_eq!(outcome(Err(timed_out)).0, Outcome::Timeout);
    }

    const COLD: &str = "START RequestId: 1 Version: $LATEST\nEND RequestId: 1\nREPORT RequestId: 1\tDuration: 12.34 ms\tBilled Duration: 193 ms\tMemory Size: 128 MB\tMax Memory Used: 64 MB\tInit Duration: 180.56 ms\t\n";
    const WARM: &str = "START RequestId: 2 Version: $LATEST\nEND RequestId: 2\nREPORT RequestId: 2\tDuration: 3.00 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\tMax Memory Used: 64 MB\t";

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1e3)
    }

    /// `REPORT` lines as Lambda wrote them, cold and warm, with and without X-Ray.
    #[test]
    fn real_report_lines_are_parsed_whole() {
        // A cold start after 1 August 2025: Billed Duration = ceil(Duration + Init Duration).
        let cold = ReportLine::find(
            "REPORT RequestId: bf5f58db-ef7d-4cb2-b3c6-266eba1bbedb\tDuration: 395.99 ms\t\
             Billed Duration: 662 ms\tMemory Size: 512 MB\tMax Memory Used: 301 MB\t\
             Init Duration: 265.72 ms\t",
        )
        .unwrap();
        assert_eq!(
            cold,
            ReportLine {
                duration: ms(395.99),
                billed_duration: Duration::from_millis(662),
                memory_size_mb: 512,
                max_memory_used_mb: 301,
                init_duration: Some(ms(265.72)),
            }
        );
        assert_eq!(cold.billed_mb_ms(), 662 * 512);
        let warm = ReportLine::find(
            "START RequestId: f949935c-0f0e-4718-9976-9df42585adb5 Version: $LATEST\n\
             END RequestId: f949935c-0f0e-4718-9976-9df42585adb5\n\
             REPORT RequestId: f949935c-0f0e-4718-9976-9df42585adb5\tDuration: 2.05 ms\t\
             Billed Duration: 3 ms\tMemory Size: 1152 MB\tMax Memory Used: 76 MB\t\n",
        )
        .unwrap();
        assert_eq!(warm.duration, ms(2.05));
        assert_eq!(warm.billed_duration, Duration::from_millis(3));
        assert_eq!((warm.memory_size_mb, warm.max_memory_used_mb), (1152, 76));
        assert_eq!(warm.init_duration, None);
        // With active tracing, X-Ray's fields follow on a line of their own.
        let traced = ReportLine::find(
            "REPORT RequestId: 1\tDuration: 128.83 ms\tBilled Duration: 296 ms\tMemory Size: 128 MB\t\
             Max Memory Used: 74 MB\tInit Duration: 166.62 ms\t\n\
             XRAY TraceId: 1-5d9d007f-0a8c7fd02xmpl480aed55ef0\tSegmentId: 3d752xmpl1bbe37e\tSampled: true\t\n",
        )
        .unwrap();
        assert_eq!(traced.init_duration, Some(ms(166.62)));
        assert_eq!(traced.max_memory_used_mb, 74);
    }

    #[test]
    fn a_partial_or_missing_report_line_is_none() {
        assert_eq!(ReportLine::find("START RequestId: 1\n"), None);
        // A tail cut before the memory fields.
        assert_eq!(
            ReportLine::find("REPORT RequestId: 1\tDuration: 3.00 ms\tBilled Duration: 3 ms\t"),
            None
        );
        assert_eq!(
            ReportLine::find(
                "REPORT RequestId: 1\tDuration: fast\tBilled Duration: 3 ms\tMemory Size: 128 MB\tMax Memory Used: 64 MB\t"
            ),
            None
        );
    }

    #[test]
    fn report_lines_come_from_the_log_tail() {
        let cold = classify(&Ok(response(200, None, Some(COLD))));
        let report = cold.report.unwrap();
        assert_eq!(report.init_duration, Some(ms(180.56)));
        assert_eq!(report.duration, ms(12.34));
        assert_eq!(report.billed_duration, Duration::from_millis(193));
        let warm = classify(&Ok(response(200, None, Some(WARM))));
        assert_eq!(warm.report.unwrap().init_duration, None);
        // A function error has a REPORT line too, and can be a cold start.
        let failed = classify(&Ok(response(200, Some("Unhandled"), Some(COLD))));
        assert!(failed.report.unwrap().init_duration.is_some());
        assert_eq!(classify(&Ok(response(200, None, None))).report, None);
    }

    #[test]
    fn outcome_names_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
            assert_eq!(Outcome::ALL[o.index()], o);
        }
    }
}
