//! `poller replay`: invoke the function again with the records of a stream mapping's discarded
//! batches.
//!
//! A stream mapping's on-failure destination receives only where the discarded batch is
//! (`KinesisBatchInfo` / `DDBStreamBatchInfo`: shard, first and last sequence number, batch size),
//! not the records (<https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html>,
//! <https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html>). While the
//! records are still in the stream's retention, this reads them back from the first one
//! (`AT_SEQUENCE_NUMBER`) to the last, keeps those the original batch held (the mapping's filters,
//! and with `ParallelizationFactor` the lane of the first record's key) and invokes the function
//! with exactly that batch, framed as the stream path frames it. AWS has no such operation.
//!
//! The on-failure records come from an SQS queue (received, then deleted once their range was
//! replayed or has expired; kept when it failed again), from S3 objects under a prefix (only
//! read), from files or from stdin. SNS topics cannot be read back.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use esm_events::envelope::Envelope;
use esm_events::response::BatchResponse;
use esm_stream::{Lanes, SequenceNumber};
use lambda_invoke::{InvocationType, Target};
use serde::Serialize;
use serde_json::Value;

use crate::arn::{ArnParts, SourceArn};
use crate::backoff::Backoff;
use crate::cli::ReplayArgs;
use crate::config::{Mapping, SourceSettings};
use crate::filter_cmd::Output;
use crate::stream::source::{Position, ReadError, StreamRecord, StreamSource};

/// Exit status when some range failed again, expired, or was not an on-failure record.
pub const EXIT_NOT_ALL_REPLAYED: u8 = 1;
/// Exit status when nothing could be replayed: bad mapping, unreadable source of records.
pub const EXIT_CANNOT_RUN: u8 = 2;

/// How long received SQS messages stay invisible while this run holds them: Lambda's longest
/// function timeout, so a replay that invokes a slow function still settles them before they
/// reappear.
const SQS_HOLD: Duration = Duration::from_secs(15 * 60);
/// Attempts for a call that failed in a way that passes (throttle, network): reads and invokes.
const ATTEMPTS: u32 = 5;

/// Where a discarded batch is in its shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRange {
    pub shard_id: String,
    pub start: SequenceNumber,
    pub end: SequenceNumber,
    pub batch_size: u64,
}

/// Why an on-failure record is not replayed by this mapping.
#[derive(Debug, PartialEq, Eq)]
pub enum NotOurs {
    /// It is for another stream (a destination several mappings share): left alone.
    OtherStream(String),
    /// It is not an on-failure record of a stream mapping.
    Invalid(String),
}

/// The batch info of an on-failure record (the SQS message body or SNS `Message`, or the S3
/// object, which adds `payload`) for the stream `stream_arn`.
pub fn batch_range(record: &str, stream_arn: &str) -> Result<BatchRange, NotOurs> {
    let invalid = |m: String| NotOurs::Invalid(m);
    let value: Value =
        serde_json::from_str(record).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let info = value
        .get("KinesisBatchInfo")
        .or_else(|| value.get("DDBStreamBatchInfo"))
        .ok_or_else(|| {
            invalid("not an on-failure record of a stream mapping: no KinesisBatchInfo or DDBStreamBatchInfo".to_owned())
        })?;
    let text = |key: &str| {
        info.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("batch info has no {key}")))
    };
    let arn = text("streamArn")?;
    if arn != stream_arn {
        return Err(NotOurs::OtherStream(format!(
            "the record is for {arn}, the mapping reads {stream_arn}"
        )));
    }
    let sequence = |key: &str| {
        text(key).and_then(|s| SequenceNumber::parse(s).map_err(|e| invalid(format!("{key}: {e}"))))
    };
    Ok(BatchRange {
        shard_id: text("shardId")?.to_owned(),
        start: sequence("startSequenceNumber")?,
        end: sequence("endSequenceNumber")?,
        batch_size: info
            .get("batchSize")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid("batch info has no batchSize".to_owned()))?,
    })
}

/// Where the on-failure records are read from (`--from`).
#[derive(Debug, PartialEq, Eq)]
pub enum Origin {
    /// An SQS queue, by its ARN.
    Sqs(ArnParts),
    /// S3 objects whose keys start with `prefix`.
    S3 { bucket: String, prefix: String },
    /// One record per line on stdin.
    Stdin,
}

/// Parse `--from` (or the mapping's on-failure destination); `uuid` gives the default S3 prefix,
/// `aws/lambda/<uuid>/`, under which the stream path writes its objects.
pub fn origin(text: &str, uuid: &str) -> Result<Origin, String> {
    if text == "-" {
        return Ok(Origin::Stdin);
    }
    if let Some(rest) = text.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "{text}: no bucket name; expected s3://BUCKET/PREFIX"
            ));
        }
        return Ok(Origin::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        });
    }
    if let Some(bucket) = text.strip_prefix("arn:aws:s3:::") {
        return Ok(Origin::S3 {
            bucket: bucket.to_owned(),
            prefix: format!("aws/lambda/{uuid}/"),
        });
    }
    if text.starts_with("arn:aws:sns:") {
        return Err(format!(
            "{text}: an SNS topic cannot be read back; subscribe an SQS queue to it (or use an SQS or \
             S3 on-failure destination) and replay from there"
        ));
    }
    match SourceArn::parse(text) {
        Ok(SourceArn::Sqs(queue)) => Ok(Origin::Sqs(queue)),
        _ => Err(format!(
            "{text}: expected an SQS queue ARN, s3://BUCKET/PREFIX, an S3 bucket ARN or - (stdin)"
        )),
    }
}

/// One on-failure record as read, with where it came from.
struct Found {
    /// SQS message id, S3 key, file name or `stdin:LINE`, for the report.
    origin: String,
    body: String,
    /// The SQS receipt handle, to settle the message.
    receipt_handle: Option<String>,
}

/// What happened to one on-failure record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome", content = "reason")]
pub enum Outcome {
    /// The function was invoked with the batch and succeeded.
    Replayed,
    /// `--dry-run`: the batch was found and printed.
    Found,
    /// The function failed again (or could not be invoked, or the shard could not be read).
    Failed(String),
    /// The records are no longer (all) in the stream.
    Expired(String),
    /// For another stream: left alone.
    Skipped(String),
    /// Not an on-failure record of a stream mapping.
    Invalid(String),
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Outcome::Replayed => "replayed",
            Outcome::Found => "found",
            Outcome::Failed(_) => "failed",
            Outcome::Expired(_) => "expired",
            Outcome::Skipped(_) => "skipped",
            Outcome::Invalid(_) => "invalid",
        }
    }

    /// Is the on-failure record done with (deleted from an SQS queue unless `--keep`)?
    fn settled(&self) -> bool {
        matches!(self, Outcome::Replayed | Outcome::Expired(_))
    }
}

/// One line of the report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_sequence_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_sequence_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_size: Option<u64>,
    #[serde(flatten)]
    outcome: Outcome,
}

/// Which records of a shard, read from a range's first record onward, form the discarded batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Selection {
    /// Exactly the batch: `batch_size` records, in shard order (indices into the records read).
    Batch(Vec<usize>),
    /// Records of the batch are gone from the stream.
    Expired(String),
    /// More records than the batch held: the mapping's filters or `ParallelizationFactor` changed
    /// since.
    Mismatch(String),
}

/// The batch `range` names among `read`: records read in order from `range.start`
/// (`AT_SEQUENCE_NUMBER`), up to the shard's tip or past `range.end`. A batch held the records of
/// one lane (the first record's, see [`Lanes::lane_for`]) that passed the filters (`passes`), in
/// shard order, so these are taken between start and end.
pub fn select(
    range: &BatchRange,
    read: &[StreamRecord],
    lanes: &Lanes<()>,
    passes: impl Fn(&StreamRecord) -> bool,
) -> Selection {
    let Some(first) = read.first().filter(|r| r.sequence_number == range.start) else {
        let oldest = read.first().map_or_else(
            || "the shard holds no later record".to_owned(),
            |r| format!("the next is {}", r.sequence_number),
        );
        return Selection::Expired(format!(
            "record {} is no longer in {} ({oldest})",
            range.start, range.shard_id
        ));
    };
    let lane = lanes.lane_for(&first.partition_key);
    let batch: Vec<usize> = read
        .iter()
        .enumerate()
        .take_while(|(_, r)| r.sequence_number <= range.end)
        .filter(|(_, r)| lanes.lane_for(&r.partition_key) == lane && passes(r))
        .map(|(i, _)| i)
        .collect();
    let found = batch.len() as u64;
    if found < range.batch_size {
        Selection::Expired(format!(
            "found {found} of the batch's {} records in {} (the rest are past the stream's retention)",
            range.batch_size, range.shard_id
        ))
    } else if found > range.batch_size {
        Selection::Mismatch(format!(
            "{} to {} holds {found} records the mapping would batch together, the batch had {}: were \
             its FilterCriteria or ParallelizationFactor changed since?",
            range.start, range.end, range.batch_size
        ))
    } else {
        Selection::Batch(batch)
    }
}

/// What replaying needs: the stream, the function, and how the mapping batches.
struct Replayer {
    source: StreamSource,
    target: Target,
    mapping: Mapping,
    lanes: Lanes<()>,
    dry_run: bool,
}

impl Replayer {
    /// Replay one range.
    async fn replay(&self, range: &BatchRange) -> Outcome {
        let read = match self.read(range).await {
            Ok(read) => read,
            Err(ReadError::Trimmed(e) | ReadError::NotFound(e)) => {
                return Outcome::Expired(format!("{}: {e}", range.shard_id));
            }
            Err(e) => return Outcome::Failed(format!("reading {}: {e}", range.shard_id)),
        };
        let batch: Vec<&StreamRecord> = match select(range, &read, &self.lanes, |r| r.passes) {
            Selection::Batch(indices) => indices.into_iter().map(|i| &read[i]).collect(),
            Selection::Expired(why) => return Outcome::Expired(why),
            Selection::Mismatch(why) => return Outcome::Failed(why),
        };
        let json: Vec<&[u8]> = batch.iter().map(|r| &r.json[..]).collect();
        let payload = Envelope::records().payload(&json);
        if self.dry_run {
            println!("{}", String::from_utf8_lossy(&payload));
            return Outcome::Found;
        }
        match self.invoke(Bytes::from(payload), &batch).await {
            Ok(()) => Outcome::Replayed,
            Err(e) => Outcome::Failed(e),
        }
    }

    /// The shard from `range.start` (AT_SEQUENCE_NUMBER) until past `range.end`, its end, or its tip.
    async fn read(&self, range: &BatchRange) -> Result<Vec<StreamRecord>, ReadError> {
        let position = Position::AtSequence(range.start.as_str().to_owned());
        let mut iterator = Some(retry(|| self.source.iterator(&range.shard_id, &position)).await?);
        let mut records = Vec::new();
        while let Some(it) = iterator.take() {
            let page = retry(|| {
                self.source
                    .read(&range.shard_id, &it, self.source.max_page(), &self.mapping.filters)
            })
            .await?;
            let caught_up = page.records.is_empty() && page.millis_behind.is_none_or(|ms| ms == 0);
            let past_end = page
                .records
                .last()
                .is_some_and(|r| r.sequence_number > range.end);
            records.extend(page.records);
            if past_end || caught_up {
                break;
            }
            iterator = page.next_iterator;
        }
        Ok(records)
    }

    /// Invoke the function with `batch` as the stream path does (synchronously, `{"Records":[…]}`).
    /// Throttles and errors that did not reach the function are retried; a function error, an
    /// invalid response or (with ReportBatchItemFailures) failed items fail the replay.
    async fn invoke(&self, payload: Bytes, batch: &[&StreamRecord]) -> Result<(), String> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut attempt = 1;
        let response = loop {
            match self
                .target
                .invoke(payload.clone(), InvocationType::RequestResponse, false)
                .await
            {
                Ok(response) => break response,
                // At least once, as on the stream path: a timeout may follow a run of the function.
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "invoke did not reach the function; retrying");
                    attempt += 1;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(format!("invoke failed: {e}")),
            }
        };
        if let Some(kind) = &response.function_error {
            return Err(format!(
                "function error ({kind}): {}",
                String::from_utf8_lossy(&response.payload)
            ));
        }
        if !self.mapping.report_batch_item_failures {
            return Ok(());
        }
        let ids: HashSet<&str> = batch.iter().map(|r| r.sequence_number.as_str()).collect();
        match esm_events::response::parse_batch_response(&response.payload, |id| ids.contains(id)) {
            BatchResponse::Success => Ok(()),
            BatchResponse::Partial(failed) => Err(format!(
                "the function reported {} of {} records failed: {}",
                failed.len(),
                batch.len(),
                failed.join(" ")
            )),
            BatchResponse::Invalid(reason) => Err(format!("invalid batch response: {reason}")),
        }
    }
}

/// `call` until it succeeds or fails in a way retrying cannot fix, at most [`ATTEMPTS`] times.
async fn retry<T, F, Fut>(mut call: F) -> Result<T, ReadError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ReadError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut attempt = 1;
    loop {
        match call().await {
            Err(ReadError::Throttled(_) | ReadError::ExpiredIterator | ReadError::Other(_))
                if attempt < ATTEMPTS =>
            {
                attempt += 1;
                tokio::time::sleep(backoff.next_delay()).await;
            }
            result => return result,
        }
    }
}

/// Where the records come from, connected.
enum Records {
    Sqs {
        client: aws_sdk_sqs::Client,
        queue_url: String,
    },
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
    },
    Stdin,
    Files(Vec<PathBuf>),
}

impl Records {
    async fn connect(origin: Origin, sdk: &aws_config::SdkConfig) -> Result<Records, String> {
        Ok(match origin {
            Origin::Sqs(queue) => {
                let client = aws_sdk_sqs::Client::from_conf(
                    aws_sdk_sqs::config::Builder::from(sdk)
                        .region(aws_sdk_sqs::config::Region::new(queue.region.clone()))
                        .build(),
                );
                let queue_url = crate::sqs::queue_url(&client, &queue)
                    .await
                    .map_err(|e| e.to_string())?;
                Records::Sqs { client, queue_url }
            }
            Origin::S3 { bucket, prefix } => Records::S3 {
                client: aws_sdk_s3::Client::new(sdk),
                bucket,
                prefix,
            },
            Origin::Stdin => Records::Stdin,
        })
    }

    /// Every on-failure record. SQS: received until the queue answers empty, each held invisible
    /// for [`SQS_HOLD`] (a message seen twice, after its hold lapsed, is taken once).
    async fn read_all(&self) -> Result<Vec<Found>, String> {
        use aws_sdk_sqs::error::DisplayErrorContext;
        match self {
            Records::Sqs { client, queue_url } => {
                let mut found = Vec::new();
                let mut seen = HashSet::new();
                loop {
                    // A long poll (WaitTimeSeconds > 0) asks every SQS server, so an empty answer means an
                    // empty queue; a short poll samples some servers and can answer empty while messages wait
                    // (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html>).
                    let messages = client
                        .receive_message()
                        .queue_url(queue_url)
                        .max_number_of_messages(10)
                        .wait_time_seconds(1)
                        .visibility_timeout(SQS_HOLD.as_secs() as i32)
                        .send()
                        .await
                        .map_err(|e| {
                            format!(
                                "{queue_url}: ReceiveMessage failed: {}",
                                DisplayErrorContext(&e)
                            )
                        })?
                        .messages
                        .unwrap_or_default();
                    if messages.is_empty() {
                        return Ok(found);
                    }
                    for m in messages {
                        let id = m.message_id.unwrap_or_default();
                        if seen.insert(id.clone()) {
                            found.push(Found {
                                origin: format!("sqs message {id}"),
                                body: m.body.unwrap_or_default(),
                                receipt_handle: m.receipt_handle,
                            });
                        }
                    }
                }
            }
            Records::S3 {
                client,
                bucket,
                prefix,
            } => {
                let mut found = Vec::new();
                let mut pages = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| {
                        format!(
                            "s3://{bucket}/{prefix}: ListObjectsV2 failed: {}",
                            DisplayErrorContext(&e)
                        )
                    })?;
                    for object in page.contents() {
                        let key = object.key().unwrap_or_default();
                        let body = client
                            .get_object()
                            .bucket(bucket)
                            .key(key)
                            .send()
                            .await
                            .map_err(|e| {
                                format!(
                                    "s3://{bucket}/{key}: GetObject failed: {}",
                                    DisplayErrorContext(&e)
                                )
                            })?
                            .body
                            .collect()
                            .await
                            .map_err(|e| format!("s3://{bucket}/{key}: {e}"))?
                            .into_bytes();
                        found.push(Found {
                            origin: format!("s3://{bucket}/{key}"),
                            body: String::from_utf8_lossy(&body).into_owned(),
                            receipt_handle: None,
                        });
                    }
                }
                Ok(found)
            }
            Records::Stdin => {
                let text =
                    std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?;
                Ok(text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                    .map(|(n, l)| Found {
                        origin: format!("stdin:{}", n + 1),
                        body: l.to_owned(),
                        receipt_handle: None,
                    })
                    .collect())
            }
            Records::Files(paths) => paths
                .iter()
                .map(|path| {
                    std::fs::read_to_string(path)
                        .map(|body| Found {
                            origin: path.display().to_string(),
                            body,
                            receipt_handle: None,
                        })
                        .map_err(|e| format!("{}: {e}", path.display()))
                })
                .collect(),
        }
    }

    /// SQS: delete the message of a record (`delete`), or make it visible again at once for the
    /// next run. Failures are reported; the message then reappears after its hold.
    async fn settle(&self, found: &Found, delete: bool) {
        let (Records::Sqs { client, queue_url }, Some(handle)) = (self, &found.receipt_handle)
        else {
            return;
        };
        let result = if delete {
            client
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(handle)
                .send()
                .await
                .map(drop)
                .map_err(|e| {
                    format!(
                        "DeleteMessage: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    )
                })
        } else {
            client
                .change_message_visibility()
                .queue_url(queue_url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .map(drop)
                .map_err(|e| {
                    format!(
                        "ChangeMessageVisibility: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    )
                })
        };
        if let Err(e) = result {
            eprintln!("{}: {e}", found.origin);
        }
    }
}

/// `poller replay`.
pub async fn run(mapping: Mapping, args: ReplayArgs) -> ExitCode {
    match replay(mapping, args).await {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("poller replay: {e}");
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}

async fn replay(mapping: Mapping, args: ReplayArgs) -> Result<u8, String> {
    let SourceSettings::Stream(settings) = &mapping.settings else {
        return Err(format!(
            "{}: {} is not a Kinesis or DynamoDB stream; for an SQS mapping's dead-letter queue use `poller redrive`",
            args.mapping.display(),
            mapping.source
        ));
    };
    let sdk = args.aws.sdk_config().await;
    let records = if !args.records.is_empty() {
        Records::Files(args.records.clone())
    } else {
        let from = args.from.clone().or_else(|| settings.on_failure_destination.clone()).ok_or_else(|| {
            format!(
                "{}: the mapping has no DestinationConfig.OnFailure.Destination; name the on-failure records with --from or as files",
                args.mapping.display()
            )
        })?;
        Records::connect(origin(&from, &mapping.uuid)?, &sdk).await?
    };
    let arn = mapping.source.parts().clone();
    let role = args.invoke.invoke_identity_arn.clone().unwrap_or_else(|| {
        format!(
            "arn:aws:iam::{}:role/{}-role",
            arn.account,
            crate::stream::short_name(&mapping.function_name)
        )
    });
    let source = StreamSource::connect(&sdk, &mapping.source, &role)
        .await
        .map_err(|e| e.to_string())?;
    let target = crate::invoke_target(
        args.invoke.http_url.as_deref(),
        args.invoke.lambda_endpoint_url.as_deref(),
        args.invoke.invoke_timeout,
        &sdk,
        &mapping.function_name,
    )
    .map_err(|e| e.to_string())?;
    let lanes = Lanes::new(settings.parallelization_factor).map_err(|e| e.to_string())?;
    let replayer = Replayer {
        source,
        target,
        mapping,
        lanes,
        dry_run: args.dry_run,
    };

    let found = records.read_all().await?;
    let mut parsed: Vec<(Found, Result<BatchRange, NotOurs>)> = found
        .into_iter()
        .map(|f| {
            let range = batch_range(&f.body, &arn.arn);
            (f, range)
        })
        .collect();
    // In shard order, so the function sees a shard's batches in the order it first did.
    parsed.sort_by(|(_, a), (_, b)| match (a, b) {
        (Ok(a), Ok(b)) => (&a.shard_id, &a.start).cmp(&(&b.shard_id, &b.start)),
        (a, b) => a.is_err().cmp(&b.is_err()),
    });
    let mut lines = Vec::new();
    for (found, range) in parsed {
        let outcome = match &range {
            Ok(range) => replayer.replay(range).await,
            Err(NotOurs::OtherStream(why)) => Outcome::Skipped(why.clone()),
            Err(NotOurs::Invalid(why)) => Outcome::Invalid(why.clone()),
        };
        // A dry run's outcomes are `Found` or not settled: it never deletes.
        let delete = outcome.settled() && !args.keep;
        records.settle(&found, delete).await;
        let range = range.ok();
        lines.push(Line {
            source: found.origin,
            shard_id: range.as_ref().map(|r| r.shard_id.clone()),
            start_sequence_number: range.as_ref().map(|r| r.start.as_str().to_owned()),
            end_sequence_number: range.as_ref().map(|r| r.end.as_str().to_owned()),
            batch_size: range.as_ref().map(|r| r.batch_size),
            outcome,
        });
    }
    let report = report(&lines, args.output);
    if args.dry_run {
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    let all_done = lines.iter().all(|l| {
        matches!(
            l.outcome,
            Outcome::Replayed | Outcome::Found | Outcome::Skipped(_)
        )
    });
    Ok(if all_done { 0 } else { EXIT_NOT_ALL_REPLAYED })
}

/// The report: a line per on-failure record and the totals, or one JSON document.
fn report(lines: &[Line], output: Output) -> String {
    let mut totals: Vec<(&str, usize)> = [
        "replayed", "found", "failed", "expired", "skipped", "invalid",
    ]
    .into_iter()
    .map(|name| {
        (
            name,
            lines.iter().filter(|l| l.outcome.name() == name).count(),
        )
    })
    .collect();
    totals.retain(|(name, n)| *n > 0 || matches!(*name, "replayed" | "failed" | "expired"));
    match output {
        Output::Json => {
            let totals: serde_json::Map<String, Value> = totals
                .iter()
                .map(|(name, n)| (name.to_string(), Value::from(*n)))
                .collect();
            format!(
                "{}\n",
                serde_json::json!({ "ranges": lines, "totals": totals })
            )
        }
        Output::Text => {
            let mut text = String::new();
            for l in lines {
                let what = match (
                    &l.shard_id,
                    &l.start_sequence_number,
                    &l.end_sequence_number,
                    l.batch_size,
                ) {
                    (Some(shard), Some(start), Some(end), Some(n)) => {
                        format!("{shard} {start}..{end} ({n} records)")
                    }
                    _ => String::new(),
                };
                let reason = match &l.outcome {
                    Outcome::Failed(r)
                    | Outcome::Expired(r)
                    | Outcome::Skipped(r)
                    | Outcome::Invalid(r) => format!(": {r}"),
                    Outcome::Replayed | Outcome::Found => String::new(),
                };
                text += &format!("{} {what} [{}]{reason}\n", l.outcome.name(), l.source);
            }
            let totals: Vec<String> = totals
                .iter()
                .map(|(name, n)| format!("{n} {name}"))
                .collect();
            text += &format!("{}\n", totals.join(", "));
            text
        }
    }
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
        assert!(matches!(
            batch_range(&record("KinesisBatchInfo"), "arn:aws:kinesis:us-east-1:1:stream/other"),
            Err(NotOurs::OtherStream(why)) if why.contains("the mapping reads")
        ));
        assert!(
            matches!(batch_range("{}", ARN), Err(NotOurs::Invalid(why)) if why.contains("KinesisBatchInfo"))
        );
        assert!(
            matches!(batch_range("x", ARN), Err(NotOurs::Invalid(why)) if why.contains("not JSON"))
        );
    }

    #[test]
    fn origins_name_a_queue_a_bucket_or_stdin_and_never_sns() {
        let uuid = "11111111-2222-3333-4444-555555555555";
        assert!(
            matches!(origin("arn:aws:sqs:eu-west-1:123456789012:failed", uuid), Ok(Origin::Sqs(q)) if q.region == "eu-west-1")
        );
        assert_eq!(
            origin("s3://bucket/aws/lambda/x/", uuid),
            Ok(Origin::S3 {
                bucket: "bucket".to_owned(),
                prefix: "aws/lambda/x/".to_owned()
            })
        );
        assert_eq!(
            origin("s3://bucket", uuid),
            Ok(Origin::S3 {
                bucket: "bucket".to_owned(),
                prefix: String::new()
            })
        );
        assert_eq!(
            origin("arn:aws:s3:::bucket", uuid),
            Ok(Origin::S3 {
                bucket: "bucket".to_owned(),
                prefix: format!("aws/lambda/{uuid}/")
            })
        );
        assert_eq!(origin("-", uuid), Ok(Origin::Stdin));
        assert!(
            origin("arn:aws:sns:us-east-1:123456789012:t", uuid)
                .unwrap_err()
                .contains("cannot be read back")
        );
        assert!(origin("s3:///x", uuid).unwrap_err().contains("no bucket"));
        assert!(
            origin("queue", uuid)
                .unwrap_err()
                .contains("expected an SQS queue ARN")
        );
    }

    /// A record with sequence number `seq` and partition key `key`.
    fn record(seq: u64, key: &str) -> StreamRecord {
        StreamRecord {
            sequence_number: SequenceNumber::parse(&seq.to_string()).unwrap(),
            arrival_ms: 0,
            partition_key: key.as_bytes().to_vec().into(),
            passes: true,
            json: format!(r#"{{"key":"{key}"}}"#).into_bytes().into(),
        }
    }

    fn range(start: u64, end: u64, batch_size: u64) -> BatchRange {
        BatchRange {
            shard_id: "shardId-000000000000".to_owned(),
            start: SequenceNumber::parse(&start.to_string()).unwrap(),
            end: SequenceNumber::parse(&end.to_string()).unwrap(),
            batch_size,
        }
    }

    #[test]
    fn the_batch_is_the_range_of_the_first_records_lane_that_passes_the_filters() {
        let one_lane = Lanes::new(1).unwrap();
        let read: Vec<StreamRecord> = (10..=15).map(|s| record(s, "k")).collect();
        assert_eq!(
            select(&range(10, 12, 3), &read, &one_lane, |_| true),
            Selection::Batch(vec![0, 1, 2])
        );
        // Record 11 was filtered out when the batch was made.
        let not_11 = |r: &StreamRecord| r.sequence_number.as_str() != "11";
        assert_eq!(
            select(&range(10, 13, 3), &read, &one_lane, not_11),
            Selection::Batch(vec![0, 2, 3])
        );

        // Two lanes: keys of the other lane in between were in another batch.
        let lanes = Lanes::new(2).unwrap();
        let other = (0..100)
            .map(|i| format!("k{i}"))
            .find(|k| lanes.lane_for(k.as_bytes()) != lanes.lane_for(b"a"))
            .unwrap();
        let read = vec![
            record(10, "a"),
            record(11, &other),
            record(12, "a"),
            record(13, &other),
        ];
        assert_eq!(
            select(&range(10, 12, 2), &read, &lanes, |_| true),
            Selection::Batch(vec![0, 2])
        );
        assert!(matches!(
            select(&range(10, 12, 2), &read, &one_lane, |_| true),
            Selection::Mismatch(_)
        ));
    }

    #[test]
    fn a_batch_whose_records_are_gone_has_expired() {
        let lanes = Lanes::new(1).unwrap();
        // AT_SEQUENCE_NUMBER of a trimmed record starts at the oldest one left.
        let read: Vec<StreamRecord> = (12..=15).map(|s| record(s, "k")).collect();
        assert!(matches!(select(&range(10, 13, 4), &read, &lanes, |_| true),
            Selection::Expired(why) if why.contains("record 10 is no longer in shardId-000000000000 (the next is 12)")));
        assert!(matches!(select(&range(10, 13, 4), &[], &lanes, |_| true),
            Selection::Expired(why) if why.contains("no later record")));
        // The first record is there but the batch is incomplete.
        let read: Vec<StreamRecord> = [10, 13].into_iter().map(|s| record(s, "k")).collect();
        assert!(matches!(select(&range(10, 13, 4), &read, &lanes, |_| true),
            Selection::Expired(why) if why.contains("found 2 of the batch's 4 records")));
    }

    #[test]
    fn settled_records_are_the_replayed_and_the_expired() {
        assert!(Outcome::Replayed.settled());
        assert!(Outcome::Expired(String::new()).settled());
        for kept in [
            Outcome::Failed(String::new()),
            Outcome::Found,
            Outcome::Skipped(String::new()),
            Outcome::Invalid(String::new()),
        ] {
            assert!(!kept.settled(), "{kept:?}");
        }
    }
}
