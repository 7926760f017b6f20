//! The Lambda Invoke API on the wire: names, limits, error bodies and the log tail.
//!
//! Error responses follow the restJson1 protocol as the AWS SDKs read it: the error code comes from
//! the `X-Amzn-ErrorType` header (a body `code`/`__type` field is only the fallback), the message
//! from `message`/`Message`, and the exception's own members (`Type`, `Reason`) from the body.
//! Bodies copy what Lambda sends, e.g. the observed throttle body.

use std::time::Duration;

use serde_json::json;

use super::recording::InvocationType;

pub(crate) const INVOCATION_TYPE: &str = "x-amz-invocation-type";
pub(crate) const LOG_TYPE: &str = "x-amz-log-type";
pub(crate) const LOG_RESULT: &str = "x-amz-log-result";
pub(crate) const EXECUTED_VERSION: &str = "x-amz-executed-version";
pub(crate) const FUNCTION_ERROR: &str = "x-amz-function-error";
pub(crate) const ERROR_TYPE: &str = "x-amzn-errortype";
pub(crate) const REQUEST_ID: &str = "x-amzn-requestid";

/// Largest synchronous request payload (6 MB).
pub(crate) const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
/// Largest asynchronous (`Event`) request payload (1 MB; it was 256 KB before 2025).
pub(crate) const MAX_ASYNC_PAYLOAD: usize = 1024 * 1024;

/// `X-Amz-Function-Error` value for errors raised by the handler.
pub(crate) const UNHANDLED: &str = "Unhandled";
/// `errorType` of errors the simulator injects (error rate, fail rules).
pub(crate) const SIMULATED_ERROR: &str = "SimulatedError";
/// `errorType` of timeouts, as Lambda reports them since 2025.
pub(crate) const TIMEOUT_ERROR: &str = "Sandbox.Timedout";

/// What `X-Amz-Invocation-Type` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requested {
    Run(InvocationType),
    DryRun,
}

impl Requested {
    /// Reads the header value; a missing header means `RequestResponse`.
    pub(crate) fn from_header(value: Option<&str>) -> Option<Requested> {
        match value {
            None | Some("RequestResponse") => Some(Requested::Run(InvocationType::RequestResponse)),
            Some("Event") => Some(Requested::Run(InvocationType::Event)),
            Some("DryRun") => Some(Requested::DryRun),
            Some(_) => None,
        }
    }
}

/// Splits a `FunctionName` path parameter into name and qualifier. Lambda accepts a name
/// (`my-fn`), a name with qualifier (`my-fn:prod`), a partial ARN (`123456789012:function:my-fn`)
/// and a full ARN (`arn:aws:lambda:us-east-1:123456789012:function:my-fn:3`).
pub(crate) fn split_function_name(raw: &str) -> (&str, Option<&str>) {
    let name = raw.rsplit_once(":function:").map_or(raw, |(_, rest)| rest);
    match name.split_once(':') {
        Some((name, qualifier)) => (name, Some(qualifier)),
        None => (name, None),
    }
}

/// `X-Amz-Executed-Version`: a numeric qualifier is a version and runs as itself; anything else (no
/// qualifier, `$LATEST`, an alias) runs `$LATEST`, since the simulator has no alias table.
pub(crate) fn executed_version(qualifier: Option<&str>) -> &str {
    match qualifier {
        Some(q) if !q.is_empty() && q.bytes().all(|b| b.is_ascii_digit()) => q,
        _ => "$LATEST",
    }
}

/// A client error body: `{"Type":"User","message":…}` (Lambda capitalises `Message` for some
/// exceptions; the SDK reads both).
pub(crate) fn user_error_body(message_key: &str, message: &str) -> String {
    let mut body = serde_json::Map::new();
    body.insert("Type".to_owned(), json!("User"));
    body.insert(message_key.to_owned(), json!(message));
    serde_json::Value::Object(body).to_string()
}

/// The throttle body Lambda sends for an exceeded reserved concurrency (observed).
pub(crate) fn throttle_body() -> String {
    json!({
        "Type": "User",
        "message": "Rate Exceeded.",
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
    })
    .to_string()
}

/// The account id in the ARNs the simulator makes up.
const ACCOUNT: &str = "123456789012";

/// The unqualified ARN the simulator gives function `name`.
pub(crate) fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}")
}

/// A `GetFunctionConfiguration` answer (`FunctionConfiguration`) for a simulated function: its timeout
/// and memory size as configured, the rest fixed but in Lambda's shape.
pub(crate) fn function_configuration(
    name: &str,
    qualifier: Option<&str>,
    config: &super::config::FunctionConfig,
) -> serde_json::Value {
    let version = executed_version(qualifier);
    let arn = function_arn(name);
    let function_arn = match qualifier {
        Some(q) => format!("{arn}:{q}"),
        None => arn,
    };
    json!({
        "FunctionName": name,
        "FunctionArn": function_arn,
        "Runtime": "provided.al2023",
        "Role": format!("arn:aws:iam::{ACCOUNT}:role/{name}-role"),
        "Handler": "bootstrap",
        "CodeSize": 0,
        "Description": "loadgen simulate",
        // Lambda's Timeout is whole seconds; a sub-second simulator timeout reads as 1.
        "Timeout": config.timeout.as_secs_f64().ceil().max(1.0) as u64,
        "MemorySize": config.memory_size_mb,
        "LastModified": "2024-01-01T00:00:00.000+0000",
        "CodeSha256": "",
        "Version": version,
        "TracingConfig": { "Mode": "PassThrough" },
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": { "Size": 512 },
    })
}

/// The body of a function error.
pub(crate) fn function_error_body(error_type: &str, error_message: &str) -> String {
    json!({ "errorType": error_type, "errorMessage": error_message }).to_string()
}

/// The `errorMessage` of a timed-out invocation.
pub(crate) fn timeout_message(request_id: &str, timeout: Duration) -> String {
    format!(
        "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
        timeout.as_secs_f64()
    )
}

/// What the `REPORT` line says about one invocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Report<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) version: &'a str,
    pub(crate) duration: Duration,
    pub(crate) memory_size_mb: u32,
    /// Present exactly on cold starts.
    pub(crate) init_duration: Option<Duration>,
}

/// Simulated memory use in the `REPORT` line; the simulator uses no real function memory.
const MAX_MEMORY_USED_MB: u32 = 64;

/// `Billed Duration`: `Duration` plus `Init Duration` on a cold start, rounded up to the next
/// millisecond (at least 1). Lambda bills in 1 ms increments
/// (<https://aws.amazon.com/lambda/pricing/>), and since 1 August 2025 it bills the INIT phase of
/// every function, managed runtimes included
/// (<https://aws.amazon.com/blogs/compute/aws-lambda-standardizes-billing-for-init-phase/>): a
/// cold start's line reads `Duration: 395.99 ms  Billed Duration: 662 ms  …  Init Duration:
/// 265.72 ms`.
pub(crate) fn billed_ms(duration: Duration, init_duration: Option<Duration>) -> u128 {
    let nanos = duration
        .saturating_add(init_duration.unwrap_or_default())
        .as_nanos();
    nanos.div_ceil(1_000_000).max(1)
}

/// The log tail for `X-Amz-Log-Type: Tail` (before base64): `START`, `END` and `REPORT` lines in
/// Lambda's text format
/// (<https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html>): tab-separated
/// fields, each followed by a tab, durations in ms with two decimals. Far below the 4 KB Lambda
/// keeps, so never truncated.
pub(crate) fn log_tail(report: &Report<'_>) -> String {
    let Report {
        request_id,
        version,
        duration,
        memory_size_mb,
        init_duration,
    } = *report;
    let ms = duration.as_secs_f64() * 1e3;
    let billed = billed_ms(duration, init_duration);
    let mut tail = format!(
        "START RequestId: {request_id} Version: {version}\n\
         END RequestId: {request_id}\n\
         REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {billed} ms\t\
         Memory Size: {memory_size_mb} MB\tMax Memory Used: {MAX_MEMORY_USED_MB} MB\t"
    );
    if let Some(init) = init_duration {
        tail.push_str(&format!(
            "Init Duration: {:.2} ms\t",
            init.as_secs_f64() * 1e3
        ));
    }
    tail.push('\n');
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_in_every_form() {
        assert_eq!(split_function_name("my-fn"), ("my-fn", None));
        assert_eq!(split_function_name("my-fn:prod"), ("my-fn", Some("prod")));
        assert_eq!(
            split_function_name("123456789012:function:my-fn"),
            ("my-fn", None)
        );
        assert_eq!(
            split_function_name("arn:aws:lambda:us-east-1:123456789012:function:my-fn:3"),
            ("my-fn", Some("3"))
        );
    }

    #[test]
    fn executed_version_resolves_numbers_only() {
        assert_eq!(executed_version(None), "$LATEST");
        assert_eq!(executed_version(Some("$LATEST")), "$LATEST");
        assert_eq!(executed_version(Some("prod")), "$LATEST");
        assert_eq!(executed_version(Some("12")), "12");
    }

    #[test]
    fn invocation_type_header() {
        assert_eq!(
            Requested::from_header(None),
            Some(Requested::Run(InvocationType::RequestResponse))
        );
        assert_eq!(
            Requested::from_header(Some("Event")),
            Some(Requested::Run(InvocationType::Event))
        );
        assert_eq!(
            Requested::from_header(Some("DryRun")),
            Some(Requested::DryRun)
        );
        assert_eq!(Requested::from_header(Some("event")), None);
    }

    #[test]
    fn report_line_matches_lambda_format() {
        let report = Report {
            request_id: "r1",
            version: "$LATEST",
            duration: Duration::from_micros(12_340),
            memory_size_mb: 128,
            init_duration: None,
        };
        assert_eq!(
            log_tail(&report),
            "START RequestId: r1 Version: $LATEST\nEND RequestId: r1\n\
             REPORT RequestId: r1\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\t\
             Max Memory Used: 64 MB\t\n"
        );
        let cold = Report {
            init_duration: Some(Duration::from_micros(123_450)),
            ..report
        };
        // A cold start is billed for its init too: 12.34 + 123.45 ms → 136 ms.
        assert_eq!(
            log_tail(&cold),
            "START RequestId: r1 Version: $LATEST\nEND RequestId: r1\n\
             REPORT RequestId: r1\tDuration: 12.34 ms\tBilled Duration: 136 ms\tMemory Size: 128 MB\t\
             Max Memory Used: 64 MB\tInit Duration: 123.45 ms\t\n"
        );
    }

    #[test]
    fn billed_duration_rounds_up_to_the_millisecond() {
        let us = Duration::from_micros;
        assert_eq!(billed_ms(us(20_000), None), 20);
        assert_eq!(billed_ms(us(20_001), None), 21);
        assert_eq!(billed_ms(Duration::from_nanos(1), None), 1);
        assert_eq!(billed_ms(Duration::ZERO, None), 1);
        // Lambda's own cold start: 395.99 + 265.72 = 661.71 ms → 662.
        assert_eq!(billed_ms(us(395_990), Some(us(265_720))), 662);
    }

    /// What the simulator writes, loadgen reads back whole.
    #[test]
    fn loadgen_parses_the_simulators_report_line() {
        let tail = log_tail(&Report {
            request_id: "r1",
            version: "$LATEST",
            duration: Duration::from_micros(20_040),
            memory_size_mb: 512,
            init_duration: Some(Duration::from_millis(100)),
        });
        let line = crate::model::ReportLine::find(&tail).unwrap();
        assert_eq!(line.billed_duration, Duration::from_millis(121));
        assert_eq!((line.memory_size_mb, line.max_memory_used_mb), (512, 64));
        assert_eq!(line.init_duration, Some(Duration::from_millis(100)));
        assert!((line.duration.as_secs_f64() * 1e3 - 20.04).abs() < 1e-9);
    }

    #[test]
    fn timeout_message_has_two_decimals() {
        assert_eq!(
            timeout_message("abc", Duration::from_millis(1500)),
            "RequestId: abc Error: Task timed out after 1.50 seconds"
        );
    }
}
