//! Command-line arguments. Everything that describes *what* a mapping does lives in the mapping file (the
//! AWS shape); the flags here only say *where* things are (endpoints, region) and how the process runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
pub use prom_http::MetricsAddr;

/// A self-hosted AWS Lambda event source mapping engine: polls SQS, filters and batches records, invokes
/// a function, and handles failures as AWS does.
#[derive(Debug, Parser)]
#[command(name = "poller", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "POLLER_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run event source mappings until SIGTERM or Ctrl-C, then finish in-flight batches (within
    /// --shutdown-timeout) and exit.
    Run(Box<RunArgs>),
    /// Check mapping files (CreateEventSourceMapping JSON) and print what each resolves to.
    Validate {
        /// Mapping files, or directories of `*.json` mapping files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show which records a mapping's FilterCriteria keeps, and by which filter. Records are given as
    /// files or, without files, on stdin one per line: a record as in the event's `Records` array, a
    /// whole `{"Records":[…]}` event, or the raw payload (SQS body, Kinesis data, DynamoDB `dynamodb`).
    Filter {
        /// The mapping file (CreateEventSourceMapping JSON) whose FilterCriteria to apply.
        #[arg(long = "mapping", short = 'm')]
        mapping: PathBuf,
        /// Files each holding one record, event or raw payload (default: stdin, one per line).
        records: Vec<PathBuf>,
        /// `json` prints one JSON object per record, for scripts.
        #[arg(long, value_enum, default_value_t = crate::filter_cmd::Output::Text)]
        output: crate::filter_cmd::Output,
    },
    /// Move messages from an SQS mapping's dead-letter queue back to its source queue: each is sent
    /// with its body and message attributes (FIFO: its group, deduplicated by its message id) and
    /// deleted from the dead-letter queue only after the send succeeded.
    Redrive(RedriveArgs),
    /// Invoke the function again with the records of a stream mapping's discarded batches: each
    /// on-failure record names a shard and a sequence number range; the records still in the stream
    /// are read back and sent as the same batch. Exit 0 if every range was replayed, 1 if any failed
    /// again, expired from the stream or was not an on-failure record, 2 if nothing could be read.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A mapping file in the CreateEventSourceMapping JSON shape (as `aws lambda
    /// create-event-source-mapping --cli-input-json` takes, or the output of get-event-source-mapping or
    /// list-event-source-mappings), or a directory of `*.json` mapping files. Repeat for several.
    #[arg(long = "mapping", short = 'm', required = true)]
    pub mappings: Vec<PathBuf>,
    #[command(flatten)]
    pub invoke: InvokeArgs,
    /// Endpoint for every AWS service (an emulator such as moto). The SDK's AWS_ENDPOINT_URL and
    /// AWS_ENDPOINT_URL_<SERVICE> variables work too.
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// AWS region for clients whose region is not given by an ARN.
    #[arg(long)]
    pub region: Option<String>,
    /// Directory for durable state: stream checkpoints (`checkpoints.sqlite`). One poller per directory.
    #[arg(long, default_value = ".poller", env = "POLLER_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Share Kinesis/DynamoDB Streams shards with other pollers through KCL-style DynamoDB lease tables
    /// named PREFIX-<mapping UUID> (created if missing). Default: the SQLite store in --state-dir.
    #[arg(long, value_name = "PREFIX", env = "POLLER_LEASE_TABLE")]
    pub lease_table: Option<String>,
    /// With --lease-table: a lease not renewed for this long is taken over by another poller.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_failover: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (port 0 picks a free port; `off` disables).
    #[arg(long, default_value = crate::metrics::DEFAULT_ADDR, env = "POLLER_METRICS_ADDR")]
    pub metrics_addr: MetricsAddr,
    /// Assume this IAM role (STS AssumeRole) for every AWS call: sources, lease tables, destinations and
    /// the Lambda Invoke API. The default credential chain supplies the identity that assumes it.
    #[arg(long, value_name = "ARN", env = "POLLER_ROLE_ARN")]
    pub role_arn: Option<String>,
    /// With --role-arn: the role session name, shown in CloudTrail.
    #[arg(long, value_name = "NAME", default_value = "poller", env = "POLLER_ROLE_SESSION_NAME", requires = "role_arn")]
    pub role_session_name: String,
    /// With --role-arn: the external ID the role's trust policy requires.
    #[arg(long, value_name = "ID", env = "POLLER_EXTERNAL_ID", requires = "role_arn")]
    pub external_id: Option<String>,
    // Process lifecycle (docs/operations.md).
    /// On SIGTERM or Ctrl-C, in-flight batches get this long to finish; what has not finished then is
    /// abandoned without loss (SQS messages made visible again, stream checkpoints only for what
    /// completed) and the process exits. The default fits Kubernetes' 30 s grace period.
    #[arg(long, default_value = "25s", value_parser = humantime::parse_duration, env = "POLLER_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Duration,
    /// GET /readyz answers 503 for a mapping whose polls of the source, or invoke requests, have
    /// failed without a success for longer than this.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub ready_stale_after: Duration,
    /// Keep running the other mappings when one cannot start or fails; the process then exits 0
    /// after a shutdown if any mapping went on. Default: a failed mapping stops the process, exit 1.
    #[arg(long)]
    pub keep_going: bool,
    /// Read each mapping's source once and print the batches it would send, invoking nothing: SQS
    /// messages are made visible again at once (never deleted), stream checkpoints are neither read
    /// nor written. Ends when the queue answers empty or every shard is read to its tip.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: read at most enough records for this many batches per mapping (per shard
    /// for streams).
    #[arg(long, value_name = "N", default_value_t = 10, requires = "dry_run")]
    pub dry_run_limit: usize,
    /// SQS: what a throttle or a Lambda service error (the function did not run) does. `hold` keeps the
    /// messages invisible and retries, lowering the concurrency, so that only function errors count
    /// toward the queue's maxReceiveCount; `aws` retries for one visibility timeout and then lets the
    /// messages reappear, each time spending a receive, as AWS does (docs/decisions.md).
    #[arg(long, value_enum, default_value_t = SqsThrottleMode::Hold, env = "POLLER_SQS_THROTTLE_MODE")]
    pub sqs_throttle_mode: SqsThrottleMode,
    /// With `--sqs-throttle-mode hold`: after this long without reaching the function a batch is let go
    /// as on AWS (counted in poller_sqs_throttle_releases_total). At most 12h, SQS's visibility limit.
    #[arg(long, default_value = "15m", value_parser = parse_max_hold, env = "POLLER_SQS_THROTTLE_MAX_HOLD")]
    pub sqs_throttle_max_hold: Duration,
}

/// `--sqs-throttle-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SqsThrottleMode {
    Hold,
    Aws,
}

impl SqsThrottleMode {
    pub fn with_max_hold(self, max_hold: Duration) -> crate::sqs::throttle::ThrottleMode {
        match self {
            SqsThrottleMode::Hold => crate::sqs::throttle::ThrottleMode::Hold { max_hold },
            SqsThrottleMode::Aws => crate::sqs::throttle::ThrottleMode::Aws,
        }
    }
}

/// `--sqs-throttle-max-hold`: a duration up to SQS's 12 hours.
fn parse_max_hold(text: &str) -> Result<Duration, String> {
    let limit = crate::sqs::throttle::MAX_HOLD_LIMIT;
    let hold = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if hold > limit {
        return Err(format!(
            "{text} is longer than {}: SQS does not keep a received message invisible longer",
            humantime::format_duration(limit)
        ));
    }
    Ok(hold)
}

/// How the function is invoked, for `run` and `replay`.
#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// Invoke a plain HTTP endpoint instead of the Lambda Invoke API: the event is POSTed as JSON.
    /// `{function}` in the URL is replaced by the mapping's FunctionName.
    #[arg(long, env = "POLLER_HTTP_URL")]
    pub http_url: Option<String>,
    /// Endpoint of the Lambda Invoke API (default: AWS, or AWS_ENDPOINT_URL_LAMBDA / AWS_ENDPOINT_URL).
    #[arg(long, env = "POLLER_LAMBDA_ENDPOINT_URL")]
    pub lambda_endpoint_url: Option<String>,
    /// Longest one invoke may take (default 15m, Lambda's maximum function timeout); set it above the
    /// function's timeout. With --http-url it is the function's timeout: an SQS queue's visibility timeout
    /// must be at least this long (without it, at least 1 s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub invoke_timeout: Option<Duration>,
    /// The function's execution role ARN, written as `invokeIdentityArn` in Kinesis records
    /// (default: arn:aws:iam::ACCOUNT:role/FUNCTION-role).
    #[arg(long)]
    pub invoke_identity_arn: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The Kinesis or DynamoDB Streams mapping file the on-failure records come from.
    #[arg(long = "mapping", short = 'm')]
    pub mapping: PathBuf,
    /// Where the on-failure records are: an SQS queue ARN, `s3://BUCKET/PREFIX` (or an S3 bucket
    /// ARN), or `-` for stdin, one record per line. SNS topics cannot be read back. Default: the
    /// mapping's DestinationConfig.OnFailure.Destination (S3: its `aws/lambda/<UUID>/` prefix).
    #[arg(long, value_name = "DESTINATION")]
    pub from: Option<String>,
    /// Files each holding one on-failure record, instead of --from.
    #[arg(conflicts_with = "from")]
    pub records: Vec<PathBuf>,
    /// Print each range's `{"Records":[…]}` event (one line each) instead of invoking; SQS messages
    /// are left in the queue. The report goes to stderr.
    #[arg(long)]
    pub dry_run: bool,
    /// Leave the SQS messages of replayed and expired ranges in the queue (default: deleted).
    #[arg(long)]
    pub keep: bool,
    /// `json` prints one JSON document with every range and the totals, for scripts.
    #[arg(long, value_enum, default_value_t = crate::filter_cmd::Output::Text)]
    pub output: crate::filter_cmd::Output,
    #[command(flatten)]
    pub invoke: InvokeArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    /// The SQS mapping file (CreateEventSourceMapping JSON) whose source queue receives the messages.
    #[arg(long = "mapping", short = 'm')]
    pub mapping: PathBuf,
    /// The dead-letter queue ARN (default: `deadLetterTargetArn` of the source queue's RedrivePolicy).
    #[arg(long, value_name = "DLQ_ARN")]
    pub from: Option<String>,
    /// Move at most this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Move at most this many messages per second.
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    pub rate: Option<std::num::NonZeroU32>,
    /// Only list what would move; both queues are left as they were.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// Where the AWS APIs are, for the tools that call them.
#[derive(Debug, clap::Args)]
pub struct AwsArgs {
    /// Endpoint for every AWS service (an emulator such as moto).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// AWS region for clients whose region is not given by an ARN.
    #[arg(long)]
    pub region: Option<String>,
}

impl AwsArgs {
    /// The SDK configuration: default credential chain, these overrides.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader.load().await
    }
}

/// `--rate`: messages per second, `N` or `N/s`.
fn parse_rate(text: &str) -> Result<std::num::NonZeroU32, String> {
    text.strip_suffix("/s")
        .unwrap_or(text)
        .parse()
        .map_err(|_| format!("expected a positive number of messages per second such as 10 or 10/s, got {text:?}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_throttle_flags() {
        let args = |extra: &[&str]| {
            let mut argv = vec!["poller", "run", "-m", "m.json"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv)
        };
        let Command::Run(run) = args(&[]).unwrap().command else { panic!("run") };
        assert_eq!(
            run.sqs_throttle_mode.with_max_hold(run.sqs_throttle_max_hold),
            crate::sqs::throttle::ThrottleMode::default()
        );
        let Command::Run(run) = args(&["--sqs-throttle-mode", "aws"]).unwrap().command else { panic!("run") };
        assert_eq!(run.sqs_throttle_mode, SqsThrottleMode::Aws);
        let error = args(&["--sqs-throttle-max-hold", "13h"]).unwrap_err().to_string();
        assert!(error.contains("13h is longer than 12h: SQS does not keep a received message invisible longer"), "{error}");
    }
}
