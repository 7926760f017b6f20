//! Event source ARNs: which service a mapping reads from, and the names the API calls need.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// A parsed `EventSourceArn`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceArn {
    /// `arn:aws:sqs:REGION:ACCOUNT:QUEUE` (a `.fifo` suffix marks a FIFO queue).
    Sqs(ArnParts),
    /// `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`.
    Kinesis(ArnParts),
    /// `arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL`.
    DynamoDbStream(ArnParts),
}

/// The pieces of an ARN that the poller uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArnParts {
    /// The whole ARN as given.
    pub arn: String,
    pub region: String,
    pub account: String,
    /// Queue name, stream name, or table name.
    pub name: String,
}

/// AWS's pattern for `EventSourceArn` (the `Arn` shape of the Lambda API), matched against the whole value.
/// <https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html>
pub const ARN_PATTERN: &str = r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)";

/// AWS's pattern for `FunctionName` (the `NamespacedFunctionName` shape): a name, `name:qualifier`, a
/// partial ARN (`ACCOUNT:function:name`) or a full ARN, with an optional version or alias.
pub const FUNCTION_NAME_PATTERN: &str = r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?";

/// `FunctionName` may be 1 to 256 characters (the whole ARN)…
const FUNCTION_NAME_MAX: usize = 256;
/// …and the function's own name at most 64 ("If you specify only the function name, it's limited to 64
/// characters in length").
const FUNCTION_OWN_NAME_MAX: usize = 64;

static ARN_RE: LazyLock<Regex> = LazyLock::new(|| whole(ARN_PATTERN));
static FUNCTION_NAME_RE: LazyLock<Regex> = LazyLock::new(|| whole(FUNCTION_NAME_PATTERN));
/// A DynamoDB stream label is the ISO 8601 time the stream was enabled (`2015-06-27T00:48:05.899`).
static STREAM_LABEL_RE: LazyLock<Regex> =
    LazyLock::new(|| whole(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?"));

/// AWS patterns are matched against the whole value.
fn whole(pattern: &str) -> Regex {
    Regex::new(&format!("^(?:{pattern})$")).expect("AWS pattern compiles")
}

/// A failed model constraint in the words of AWS's `ValidationException`, e.g. `1 validation error
/// detected: Value 'x y' at 'functionName' failed to satisfy constraint: Member must satisfy regular
/// expression pattern: …`.
pub(crate) fn validation_exception(value: &str, member: &str, constraints: &[String]) -> String {
    let n = constraints.len();
    let plural = if n == 1 { "error" } else { "errors" };
    let each: Vec<String> = constraints
        .iter()
        .map(|c| format!("Value '{value}' at '{member}' failed to satisfy constraint: Member must {c}"))
        .collect();
    format!("{n} validation {plural} detected: {}", each.join("; "))
}

/// Check a `FunctionName` as Lambda does: AWS's length and pattern constraints (`member` is the API
/// member named in the message, `functionName`), then the 64-character limit on the function's own name.
pub fn check_function_name(name: &str, member: &str) -> Result<(), String> {
    let mut failed = Vec::new();
    if name.is_empty() {
        failed.push("have length greater than or equal to 1".to_owned());
    }
    if name.len() > FUNCTION_NAME_MAX {
        failed.push(format!("have length less than or equal to {FUNCTION_NAME_MAX}"));
    }
    let captures = FUNCTION_NAME_RE.captures(name);
    if captures.is_none() {
        failed.push(format!("satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}"));
    }
    if !failed.is_empty() {
        return Err(validation_exception(name, member, &failed));
    }
    // Group 11 of the pattern is the function's own name.
    let own = captures.and_then(|c| c.get(11)).map_or("", |m| m.as_str());
    if own.len() > FUNCTION_OWN_NAME_MAX {
        return Err(format!(
            "the function name {own:?} is {} characters; a Lambda function name is at most {FUNCTION_OWN_NAME_MAX}",
            own.len()
        ));
    }
    Ok(())
}

impl SourceArn {
    /// Parse an event source ARN: AWS's pattern for ARNs first (with AWS's message), then the resource
    /// names each service allows; the error says what is wrong in words a user can act on.
    pub fn parse(arn: &str) -> Result<SourceArn, String> {
        if !ARN_RE.is_match(arn) {
            return Err(validation_exception(
                arn,
                "eventSourceArn",
                &[format!("satisfy regular expression pattern: {ARN_PATTERN}")],
            ));
        }
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [_, _partition, service, region, account, resource] = parts[..] else {
            unreachable!("the ARN pattern has six colon-separated parts");
        };
        if region.is_empty() || account.is_empty() {
            return Err(format!("{arn:?}: the region and account parts must not be empty"));
        }
        let parts = |name: &str| ArnParts {
            arn: arn.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
        };
        match service {
            "sqs" => {
                check_queue_name(resource).map_err(|e| format!("{arn:?}: {e}"))?;
                Ok(SourceArn::Sqs(parts(resource)))
            }
            "kinesis" => match resource.split('/').collect::<Vec<_>>()[..] {
                ["stream", name] => {
                    check_stream_name(name).map_err(|e| format!("{arn:?}: {e}"))?;
                    Ok(SourceArn::Kinesis(parts(name)))
                }
                ["stream", _, "consumer", ..] => Err(format!(
                    "{arn:?}: enhanced fan-out consumer ARNs are not supported; use the stream ARN"
                )),
                _ => Err(format!("{arn:?}: the Kinesis resource must be stream/NAME")),
            },
            "dynamodb" => match resource.split('/').collect::<Vec<_>>()[..] {
                ["table", table, "stream", label] => {
                    check_table_name(table).map_err(|e| format!("{arn:?}: {e}"))?;
                    if !STREAM_LABEL_RE.is_match(label) {
                        return Err(format!(
                            "{arn:?}: the stream label {label:?} is not the ISO 8601 time the stream was \
                             enabled (such as 2015-06-27T00:48:05.899); copy the table's LatestStreamArn"
                        ));
                    }
                    Ok(SourceArn::DynamoDbStream(parts(table)))
                }
                _ => Err(format!(
                    "{arn:?}: a DynamoDB event source must be a stream ARN (table/TABLE/stream/LABEL)"
                )),
            },
            other => Err(format!(
                "{arn:?}: service {other:?} is not supported; use an SQS queue, a Kinesis stream or a DynamoDB stream"
            )),
        }
    }

    /// The parts common to all sources.
    pub fn parts(&self) -> &ArnParts {
        match self {
            SourceArn::Sqs(p) | SourceArn::Kinesis(p) | SourceArn::DynamoDbStream(p) => p,
        }
    }

    /// True for an SQS FIFO queue.
    pub fn is_fifo_queue(&self) -> bool {
        matches!(self, SourceArn::Sqs(p) if p.name.ends_with(".fifo"))
    }
}

impl fmt::Display for SourceArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parts().arn)
    }
}

/// A queue name: 1 to 80 characters, letters, digits, `-` and `_`; a FIFO queue's ends in `.fifo`
/// (included in the 80). <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html>
fn check_queue_name(name: &str) -> Result<(), String> {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    if name.is_empty() || name.len() > 80 || base.is_empty() || !base.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
        return Err(format!(
            "the queue name {name:?} is not valid: an SQS queue name is 1 to 80 characters, letters, digits, \
             `-` and `_`, and a FIFO queue's ends in `.fifo`"
        ));
    }
    Ok(())
}

/// A stream name: 1 to 128 characters, letters, digits, `_`, `.` and `-`.
/// <https://docs.aws.amazon.com/kinesis/latest/APIReference/API_CreateStream.html>
fn check_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(format!(
            "the stream name {name:?} is not valid: a Kinesis stream name is 1 to 128 characters, letters, \
             digits, `_`, `.` and `-`"
        ));
    }
    Ok(())
}

/// A table name: 3 to 255 characters, letters, digits, `_`, `.` and `-`.
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CreateTable.html>
fn check_table_name(name: &str) -> Result<(), String> {
    if !(3..=255).contains(&name.len()) || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(format!(
            "the table name {name:?} is not valid: a DynamoDB table name is 3 to 255 characters, letters, \
             digits, `_`, `.` and `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_source_kind() {
        let sqs = SourceArn::parse("arn:aws:sqs:us-east-1:123456789012:orders.fifo").unwrap();
        assert!(sqs.is_fifo_queue());
        assert_eq!(sqs.parts().name, "orders.fifo");
        assert_eq!(sqs.parts().region, "us-east-1");
        let kin = SourceArn::parse("arn:aws:kinesis:eu-west-1:123456789012:stream/clicks.v2_a-b").unwrap();
        assert!(matches!(&kin, SourceArn::Kinesis(p) if p.name == "clicks.v2_a-b"));
        let ddb = SourceArn::parse(
            "arn:aws-us-gov:dynamodb:us-gov-west-1:123456789012:table/Tab/stream/2015-06-27T00:48:05.899",
        )
        .unwrap();
        assert!(matches!(&ddb, SourceArn::DynamoDbStream(p) if p.name == "Tab"));
    }

    #[test]
    fn rejects_with_a_reason() {
        let pattern = "failed to satisfy constraint: Member must satisfy regular expression pattern: arn:";
        for (arn, needle) in [
            ("orders", pattern),
            ("arn:aws:sqs:us-east-1:1:q", pattern),
            ("arn:aws:sqs:US-EAST-1:123456789012:q", pattern),
            ("arn:amazon:sqs:us-east-1:123456789012:q", pattern),
            ("arn:aws:sns:us-east-1:123456789012:topic", "service \"sns\""),
            ("arn:aws:kinesis:us-east-1:123456789012:stream/s/consumer/c:1", "fan-out"),
            ("arn:aws:kinesis:us-east-1:123456789012:stream/a b", "Kinesis stream name"),
            ("arn:aws:kinesis:us-east-1:123456789012:stream/", "Kinesis stream name"),
            ("arn:aws:dynamodb:us-east-1:123456789012:table/T", "stream ARN"),
            ("arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2015-06-27T00:48:05.899", "table name"),
            ("arn:aws:dynamodb:us-east-1:123456789012:table/Tab/stream/latest", "stream label"),
            ("arn:aws:sqs::123456789012:q", "region"),
            ("arn:aws:sqs:us-east-1::q", "region and account"),
            ("arn:aws:sqs:us-east-1:123456789012:a.b", "SQS queue name"),
            ("arn:aws:sqs:us-east-1:123456789012:.fifo", "SQS queue name"),
            ("arn:aws:sqs:us-east-1:123456789012:q/x", "SQS queue name"),
        ] {
            let err = SourceArn::parse(arn).unwrap_err();
            assert!(err.contains(needle), "{arn}: {err}");
        }
        let long = format!("arn:aws:sqs:us-east-1:123456789012:{}", "q".repeat(81));
        assert!(SourceArn::parse(&long).unwrap_err().contains("1 to 80 characters"));
        assert!(SourceArn::parse(&format!("arn:aws:sqs:us-east-1:123456789012:{}.fifo", "q".repeat(75))).is_ok());
    }

    #[test]
    fn aws_pattern_message_is_verbatim() {
        assert_eq!(
            SourceArn::parse("arn:aws:sqs:us-east-1:12345:q").unwrap_err(),
            format!(
                "1 validation error detected: Value 'arn:aws:sqs:us-east-1:12345:q' at 'eventSourceArn' failed to \
                 satisfy constraint: Member must satisfy regular expression pattern: {ARN_PATTERN}"
            )
        );
    }

    #[test]
    fn function_names_follow_the_aws_pattern() {
        for ok in [
            "fn",
            "my-function_1",
            "my.function",
            "fn:PROD",
            "fn:3",
            "fn:$LATEST",
            "123456789012:function:fn",
            "123456789012:fn",
            "us-east-1:123456789012:function:fn",
            "arn:aws:lambda:us-east-1:123456789012:function:fn",
            "arn:aws:lambda:us-east-1:123456789012:function:fn:alias",
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:fn",
            &"f".repeat(64),
        ] {
            assert_eq!(check_function_name(ok, "functionName"), Ok(()), "{ok}");
        }
        for bad in [
            "my function",
            "fn:",
            "fn:a:b",
            "fn/1",
            "arn:aws:lambda:us-east-1:123:function:fn",
            "arn:aws:sqs:us-east-1:123456789012:q",
            "fn:$LATEST.x",
            "fünf",
        ] {
            let e = check_function_name(bad, "functionName").unwrap_err();
            assert_eq!(
                e,
                format!(
                    "1 validation error detected: Value '{bad}' at 'functionName' failed to satisfy constraint: \
                     Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}"
                )
            );
        }
        assert!(check_function_name("", "functionName").unwrap_err().starts_with(
            "2 validation errors detected: Value '' at 'functionName' failed to satisfy constraint: Member must have length greater than or equal to 1; "
        ));
        let long = format!("arn:aws:lambda:us-east-1:123456789012:function:{}", "f".repeat(250));
        assert!(check_function_name(&long, "functionName").unwrap_err().contains("Member must have length less than or equal to 256"));
        let e = check_function_name(&"f".repeat(65), "functionName").unwrap_err();
        assert!(e.contains("is 65 characters; a Lambda function name is at most 64"), "{e}");
    }
}
