//! `poller replay`: the records an on-failure record of a stream mapping stands for, read again
//! from the stream and printed as the `{"Records":[…]}` event the function received.
//!
//! A stream mapping's on-failure destination receives only where the discarded batch is
//! (`KinesisBatchInfo` / `DDBStreamBatchInfo`: shard, first and last sequence number), not the
//! records (<https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html>).
//! While they are still in the stream's retention, this reads them back.

use std::path::PathBuf;
use std::process::ExitCode;

use esm_stream::SequenceNumber;
use serde_json::Value;

use crate::config::Mapping;
use crate::stream::source::{Position, StreamSource};

/// Where a discarded batch is in its shard.
#[derive(Debug, PartialEq, Eq)]
pub struct BatchRange {
    pub shard_id: String,
    pub start: SequenceNumber,
    pub end: SequenceNumber,
    pub batch_size: u64,
}

/// The batch info of an on-failure record (as the SQS message body or SNS `Message` holds it, or
/// the S3 object), for the stream `stream_arn`.
pub fn batch_range(record: &str, stream_arn: &str) -> Result<BatchRange, String> {
    let value: Value = serde_json::from_str(record).map_err(|e| format!("not JSON: {e}"))?;
    let info = value
        .get("KinesisBatchInfo")
        .or_else(|| value.get("DDBStreamBatchInfo"))
        .ok_or("not an on-failure record of a stream mapping: no KinesisBatchInfo or DDBStreamBatchInfo")?;
    let text = |key: &str| {
        info.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("batch info has no {key}"))
    };
    let arn = text("streamArn")?;
    if arn != stream_arn {
        return Err(format!(
            "the record is for {arn}, the mapping reads {stream_arn}"
        ));
    }
    let sequence = |key: &str| {
        text(key).and_then(|s| SequenceNumber::parse(s).map_err(|e| format!("{key}: {e}")))
    };
    Ok(BatchRange {
        shard_id: text("shardId")?.to_owned(),
        start: sequence("startSequenceNumber")?,
        end: sequence("endSequenceNumber")?,
        batch_size: info
            .get("batchSize")
            .and_then(Value::as_u64)
            .ok_or("batch info has no batchSize")?,
    })
}

/// Read the records of `range` from its shard: from the trim horizon (GetShardIterator has no
/// position *at* a sequence number in this poller's reader) up to the end sequence number.
async fn read(source: &StreamSource, range: &BatchRange) -> Result<Vec<Value>, String> {
    let mut iterator = Some(
        source
            .iterator(&range.shard_id, &Position::TrimHorizon)
            .await
            .map_err(|e| format!("{}: {e}", range.shard_id))?,
    );
    let mut records = Vec::new();
    while let Some(it) = iterator.take() {
        let page = source
            .read(&range.shard_id, &it, source.max_page())
            .await
            .map_err(|e| format!("{}: {e}", range.shard_id))?;
        let caught_up = page.records.is_empty() && page.millis_behind.is_none_or(|ms| ms == 0);
        for r in page.records {
            if r.sequence_number > range.end {
                return Ok(records);
            }
            if r.sequence_number >= range.start {
                records.push(serde_json::from_slice(&r.json).map_err(|e| e.to_string())?);
            }
        }
        if records.len() as u64 >= range.batch_size || caught_up {
            break;
        }
        iterator = page.next_iterator;
    }
    Ok(records)
}

/// `poller replay`: one `{"Records":[…]}` line per on-failure record; exit 1 on bad input or a
/// batch no longer (completely) in the stream.
pub async fn run(mapping: Mapping, inputs: &[PathBuf], sdk: &aws_config::SdkConfig) -> ExitCode {
    let arn = mapping.source.parts().clone();
    let role = format!(
        "arn:aws:iam::{}:role/{}-role",
        arn.account,
        crate::stream::short_name(&mapping.function_name)
    );
    let source = match StreamSource::connect(sdk, &mapping.source, &role).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let texts: Vec<(String, String)> = if inputs.is_empty() {
        std::io::read_to_string(std::io::stdin())
            .unwrap_or_default()
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| (format!("stdin:{}", n + 1), l.to_owned()))
            .collect()
    } else {
        let mut texts = Vec::new();
        for path in inputs {
            match std::fs::read_to_string(path) {
                Ok(t) => texts.push((path.display().to_string(), t)),
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
        }
        texts
    };
    let mut status = ExitCode::SUCCESS;
    for (origin, text) in texts {
        let outcome = match batch_range(&text, &arn.arn) {
            Ok(range) => read(&source, &range).await.and_then(|records| {
                if records.len() as u64 == range.batch_size {
                    Ok(records)
                } else {
                    Err(format!(
                        "found {} of the batch's {} records in {} (the rest are past the stream's retention)",
                        records.len(),
                        range.batch_size,
                        range.shard_id
                    ))
                }
            }),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(records) => println!("{}", serde_json::json!({ "Records": records })),
            Err(e) => {
                eprintln!("{origin}: {e}");
                status = ExitCode::from(1);
            }
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/s";

    #[test]
    fn batch_range_reads_kinesis_and_dynamodb_batch_info() {
        let record = |key: &str| {
            serde_json::json!({ key: {"shardId": "shardId-000000000000", "startSequenceNumber": "100",
                "endSequenceNumber": "200", "batchSize": 3, "streamArn": ARN}})
            .to_string()
        };
        let range = batch_range(&record("KinesisBatchInfo"), ARN).unwrap();
        assert_eq!(range.shard_id, "shardId-000000000000");
        assert_eq!(
            (range.start.as_str(), range.end.as_str(), range.batch_size),
            ("100", "200", 3)
        );
        assert_eq!(
            batch_range(&record("DDBStreamBatchInfo"), ARN).unwrap(),
            range
        );
        assert!(
            batch_range(
                &record("KinesisBatchInfo"),
                "arn:aws:kinesis:us-east-1:1:stream/other"
            )
            .unwrap_err()
            .contains("the mapping reads")
        );
        assert!(
            batch_range("{}", ARN)
                .unwrap_err()
                .contains("KinesisBatchInfo")
        );
    }
}
