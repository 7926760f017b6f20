//! Event source ARNs: which service a mapping reads from, and the names the API calls need.

use std::fmt;

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

impl SourceArn {
    /// Parse an event source ARN; the error says what is wrong in words a user can act on.
    pub fn parse(arn: &str) -> Result<SourceArn, String> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, _partition, service, region, account, resource] = parts[..] else {
            return Err(format!(
                "{arn:?} is not an ARN (expected arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)"
            ));
        };
        if prefix != "arn" {
            return Err(format!("{arn:?} is not an ARN: it must start with \"arn:\""));
        }
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
            "sqs" if !resource.is_empty() && !resource.contains(['/', ':']) => {
                Ok(SourceArn::Sqs(parts(resource)))
            }
            "sqs" => Err(format!("{arn:?}: the SQS resource must be a queue name")),
            "kinesis" => match resource.split('/').collect::<Vec<_>>()[..] {
                ["stream", name] if !name.is_empty() => Ok(SourceArn::Kinesis(parts(name))),
                ["stream", _, "consumer", ..] => Err(format!(
                    "{arn:?}: enhanced fan-out consumer ARNs are not supported; use the stream ARN"
                )),
                _ => Err(format!("{arn:?}: the Kinesis resource must be stream/NAME")),
            },
            "dynamodb" => match resource.split('/').collect::<Vec<_>>()[..] {
                ["table", table, "stream", label] if !table.is_empty() && !label.is_empty() => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_source_kind() {
        let sqs = SourceArn::parse("arn:aws:sqs:us-east-1:123456789012:orders.fifo").unwrap();
        assert!(sqs.is_fifo_queue());
        assert_eq!(sqs.parts().name, "orders.fifo");
        assert_eq!(sqs.parts().region, "us-east-1");
        let kin = SourceArn::parse("arn:aws:kinesis:eu-west-1:1:stream/clicks").unwrap();
        assert!(matches!(&kin, SourceArn::Kinesis(p) if p.name == "clicks"));
        let ddb = SourceArn::parse(
            "arn:aws:dynamodb:us-east-1:1:table/T/stream/2015-06-27T00:48:05.899",
        )
        .unwrap();
        assert!(matches!(&ddb, SourceArn::DynamoDbStream(p) if p.name == "T"));
    }

    #[test]
    fn rejects_with_a_reason() {
        for (arn, needle) in [
            ("orders", "not an ARN"),
            ("arn:aws:sns:us-east-1:1:topic", "service \"sns\""),
            ("arn:aws:kinesis:us-east-1:1:stream/s/consumer/c:1", "fan-out"),
            ("arn:aws:dynamodb:us-east-1:1:table/T", "stream ARN"),
            ("arn:aws:sqs::1:q", "region"),
        ] {
            let err = SourceArn::parse(arn).unwrap_err();
            assert!(err.contains(needle), "{arn}: {err}");
        }
    }
}
