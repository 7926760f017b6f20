//! Command-line interface: one `Cli` with a subcommand per tool.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use prom_http::MetricsAddr;

use crate::cost::Architecture;
use crate::scenario::units::{parse_duration, parse_rate, parse_stages};
use crate::scenario::{InvocationTypeName, Model, Overrides, PayloadOrder, StageConfig};
use crate::simulate::{FailureMode, Latency, Stall};
use crate::store::{JOB_INDEX_ENV, Location, check_label};

/// A Lambda-aware load generator and function simulator.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr: text, or one JSON object per line (for log shippers in CI).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LOADGEN_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a simulated Lambda function over the Invoke API (for tests and the quickstart).
    Simulate(SimulateArgs),
    /// Generate load from a scenario file, a URL or flags. Exit code 0: thresholds passed; 1: a
    /// threshold was breached (or aborted the run); 2: error (bad scenario, no credentials); 3: no
    /// request succeeded; 4: the generator could not hold its schedule (see --allow-dropped); 130:
    /// stopped by Ctrl-C or SIGTERM.
    Run(Box<RunArgs>),
    /// Combine .hlog interval logs (e.g. from several machines) into one report, exactly.
    Merge(MergeArgs),
    /// Step concurrency (closed model, the default) or rate (open model) until throttles appear or
    /// a threshold breaks, and report the knee. Exit code 0: at least one step held; 1: the first
    /// step already failed; 2: error; 130: stopped by Ctrl-C or SIGTERM.
    Sweep(Box<SweepArgs>),
}

/// Flags of `loadgen sweep`: those of `loadgen run` (the target, the requests, the thresholds),
/// whose load flags are replaced by the steps.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The steps, in order: concurrency values (closed model) or rates (open model: `50`, `50/s`,
    /// `3000/m`), e.g. `--steps 5,10,20,40`.
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub steps: Vec<String>,
    /// How long each step runs.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub step_duration: Duration,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `loadgen run`'s first argument: a scenario file, or the target URL as oha, hey and vegeta take
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Scenario(PathBuf),
    Url(String),
}

impl Input {
    fn parse(text: &str) -> Result<Input, String> {
        Ok(
            if text.starts_with("http://") || text.starts_with("https://") {
                Input::Url(text.to_owned())
            } else {
                Input::Scenario(PathBuf::from(text))
            },
        )
    }
}

/// oha's `-c` and `-n` defaults, for a URL run without load flags.
const OHA_CONCURRENCY: u32 = 50;
const OHA_REQUESTS: u64 = 200;

/// `--stages`: one value holding every stage (clap would read `Option<Vec<_>>` as a repeated flag).
#[derive(Debug, Clone, PartialEq)]
pub struct Stages(pub Vec<StageConfig>);

/// `-H "Name: value"`, as curl and oha take it.
fn header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}`: expected `NAME: VALUE`"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

/// Flags of `loadgen run`. Each flag replaces the scenario's value (see docs/loadgen.md). The
/// one-letter flags are oha's (`-n -c -z -q -m -H -d -D -t -j`); each long flag that existed
/// before them still works.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario file (TOML, see scenarios/), or a target URL (`http://…`, as with oha). Without a
    /// scenario, the flags describe the whole run.
    #[arg(value_name = "SCENARIO|URL", value_parser = Input::parse)]
    pub input: Option<Input>,
    /// Directory for report.json, report.html, latency.hlog, intervals.csv, percentiles.csv and
    /// junit.xml (created if missing), or an S3 prefix `s3://BUCKET/PREFIX` (files written locally,
    /// uploaded at the end; the bucket is checked writable before the run starts).
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX", value_parser = Location::parse)]
    pub out_dir: Option<Location>,
    /// Worker label of a distributed run: the files go to OUT_DIR/NAME/. Default for an S3
    /// --out-dir: the host name. A Kubernetes Indexed Job sets JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "NAME", env = JOB_INDEX_ENV, value_parser = check_label)]
    pub worker: Option<String>,
    /// Plain HTTP target (the same as giving the URL as the first argument).
    #[arg(long, value_name = "URL", conflicts_with = "function")]
    pub target_url: Option<String>,
    /// Lambda target: function name, ARN, or name:qualifier.
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
    /// HTTP method for an HTTP target (default POST).
    #[arg(short = 'm', long, value_name = "METHOD")]
    pub method: Option<String>,
    /// HTTP header for an HTTP target, `NAME: VALUE` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = header)]
    pub headers: Vec<(String, String)>,
    /// Lambda endpoint override, e.g. the simulator's URL.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region for signing.
    #[arg(long)]
    pub region: Option<String>,
    /// Open model: constant arrival rate, `50`, `50/s` or `3000/m`; replaces the scenario's load.
    /// With `-c`, `-c` caps the requests in flight (as oha's `-q` with `-c`).
    #[arg(short = 'q', long, value_name = "RATE", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Closed model: constant concurrency; replaces the scenario's load. With `-q` or `--stages`
    /// (open model): the most requests in flight.
    #[arg(short = 'c', long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// Ramps replacing the scenario's load: `DURATION:TARGET,…`, e.g. `30s:100,1m:500,30s:0`
    /// (rates, or concurrencies with `--model closed`).
    #[arg(long, value_name = "STAGES", value_parser = |s: &str| parse_stages(s).map(Stages),
          conflicts_with = "rate")]
    pub stages: Option<Stages>,
    /// Load model for `--stages` or a scenario's stages.
    #[arg(long, value_parser = ["open", "closed"])]
    pub model: Option<String>,
    /// Length of a constant load, or where to cut a staged one (`30` seconds, `30s`, `5m`).
    #[arg(short = 'z', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after N requests.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// Open model: most requests in flight at once.
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Exit 0 even when the generator could not hold its schedule (arrivals dropped at the end,
    /// requests that failed for lack of file descriptors or ports); otherwise that exits with 4.
    #[arg(long)]
    pub allow_dropped: bool,
    /// Payload template (the request body); replaces the scenario's request mix.
    #[arg(short = 'd', long, visible_alias = "body", value_name = "TEMPLATE")]
    pub payload: Option<String>,
    /// Payload template read from FILE; replaces the scenario's request mix.
    #[arg(short = 'D', long, visible_alias = "body-file", value_name = "FILE",
          conflicts_with_all = ["payload", "payloads"])]
    pub payload_file: Option<PathBuf>,
    /// One payload per request from a JSON Lines (.jsonl, .ndjson) or CSV (.csv) file; replaces
    /// the scenario's request mix.
    #[arg(long, value_name = "FILE", conflicts_with = "payload")]
    pub payloads: Option<PathBuf>,
    /// Order of the payloads file's entries: round-robin or random (seeded by --seed).
    #[arg(long, value_parser = ["round-robin", "random"])]
    pub payload_order: Option<String>,
    /// Invocation type for every request (Lambda targets).
    #[arg(long, value_parser = ["RequestResponse", "Event", "DryRun"])]
    pub invocation_type: Option<String>,
    /// Ask for LogType=Tail and count cold starts (Lambda targets).
    #[arg(long)]
    pub log_tail: bool,
    /// The function's SQS destination (queue URL): match Event invocations to their destination
    /// records and report end-to-end latency beside the enqueue latency.
    #[arg(long, value_name = "URL")]
    pub destination_queue: Option<String>,
    /// How long after the last request to keep collecting destination records (default 5m).
    #[arg(long, value_parser = parse_duration)]
    pub destination_grace: Option<Duration>,
    /// Per-request timeout (`30` seconds, `30s`, `500ms`).
    #[arg(short = 't', long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Threshold such as `p99 < 300ms` or `throttle_rate < 1%` (repeatable; added to the
    /// scenario's).
    #[arg(long = "threshold", value_name = "EXPR")]
    pub thresholds: Vec<String>,
    /// Stop the run as soon as a threshold fails (checked at the end of every interval), as k6's
    /// abortOnFail.
    #[arg(long)]
    pub abort_on_fail: bool,
    /// Reporting interval.
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Seed for payload randomness.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The function's architecture for the cost estimate: x86_64 or arm64 (picks the default
    /// price per GB-second).
    #[arg(long)]
    pub architecture: Option<Architecture>,
    /// USD per GB-second of billed duration, for the cost estimate.
    #[arg(long, value_name = "USD")]
    pub price_gb_second: Option<f64>,
    /// USD per million requests, for the cost estimate.
    #[arg(long, value_name = "USD")]
    pub price_per_million_requests: Option<f64>,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Never draw the progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics while the run goes (port 0 picks a free
    /// port; `off` disables). Default 127.0.0.1:9465, and only if it is free: a second run on the
    /// same machine goes on without metrics. An address given here must bind.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<MetricsAddr>,
}

impl RunArgs {
    /// The scenario file, if one was given.
    pub fn scenario(&self) -> Option<&Path> {
        match &self.input {
            Some(Input::Scenario(path)) => Some(path),
            _ => None,
        }
    }

    /// What the flags replace in the scenario. oha's habits are translated here: a URL argument
    /// is an HTTP target, run as oha would without load flags (`-c 50`, and `-n 200` unless `-z`
    /// is given), and `-c` next to an open-model load caps the requests in flight. Relative file
    /// paths are taken from the working directory, not the scenario's.
    pub fn overrides(&self) -> Overrides {
        let url = match &self.input {
            Some(Input::Url(url)) => Some(url.clone()),
            _ => None,
        };
        let open = self.rate.is_some() || self.stages.is_some();
        let oha_defaults = url.is_some() && !open && self.concurrency.is_none();
        let (concurrency, max_in_flight) = match self.concurrency {
            Some(c) if open => (None, self.max_in_flight.or(usize::try_from(c).ok())),
            None if oha_defaults => (Some(OHA_CONCURRENCY), self.max_in_flight),
            c => (c, self.max_in_flight),
        };
        let max_requests = match self.requests {
            None if oha_defaults && self.duration.is_none() => Some(OHA_REQUESTS),
            n => n,
        };
        let from_here = |path: &PathBuf| std::path::absolute(path).unwrap_or_else(|_| path.clone());
        Overrides {
            target_url: self.target_url.clone().or(url),
            method: self.method.clone(),
            headers: self.headers.clone(),
            function: self.function.clone(),
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            timeout: self.timeout,
            log_tail: self.log_tail,
            destination_queue: self.destination_queue.clone(),
            destination_grace: self.destination_grace,
            rate: self.rate,
            concurrency,
            stages: self.stages.clone().map(|Stages(stages)| stages),
            model: self.model.as_deref().map(|m| match m {
                "closed" => Model::Closed,
                _ => Model::Open,
            }),
            duration: self.duration,
            max_requests,
            max_in_flight,
            payload: self.payload.clone(),
            payload_file: self.payload_file.as_ref().map(from_here),
            payloads_file: self.payloads.as_ref().map(from_here),
            payload_order: self.payload_order.as_deref().map(|o| match o {
                "random" => PayloadOrder::Random,
                _ => PayloadOrder::RoundRobin,
            }),
            invocation_type: self.invocation_type.as_deref().map(|t| match t {
                "Event" => InvocationTypeName::Event,
                "DryRun" => InvocationTypeName::DryRun,
                _ => InvocationTypeName::RequestResponse,
            }),
            thresholds: self.thresholds.clone(),
            abort_on_fail: self.abort_on_fail,
            interval: self.interval,
            seed: self.seed,
            architecture: self.architecture,
            price_gb_second: self.price_gb_second,
            price_per_million_requests: self.price_per_million_requests,
        }
    }
}

/// Flags of `loadgen merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Interval logs written by `loadgen run --out-dir` (latency.hlog) or other HdrHistogram
    /// tools; or directories and S3 prefixes (`s3://BUCKET/PREFIX`), whose latency.hlog and
    /// WORKER/latency.hlog files are all merged.
    #[arg(required = true, value_name = "HLOG|DIR|s3://BUCKET/PREFIX", value_parser = Location::parse)]
    pub logs: Vec<Location>,
    /// Directory or S3 prefix for the merged latency.hlog and the report files.
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX", value_parser = Location::parse)]
    pub out_dir: Option<Location>,
    /// Interval grid of the merged log; default the first log's interval.
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Threshold to check on the merged data (repeatable); a breach exits with 1.
    #[arg(long = "threshold", value_name = "EXPR")]
    pub thresholds: Vec<String>,
    /// Name shown in the report.
    #[arg(long, default_value = "merged")]
    pub name: String,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `loadgen simulate`. Flags that shape behaviour override the config file for the
/// default and every declared function.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// TOML config file (see docs/simulator.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free one. The actual address is printed on stdout as
    /// `listening on http://ADDR`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9001")]
    pub bind: SocketAddr,
    /// Latency distribution: `20ms`, `uniform:5ms..50ms`, `normal:20ms,5ms`, `lognormal:20ms,5ms`.
    #[arg(long, value_name = "DIST")]
    pub latency: Option<Latency>,
    /// Fraction of invocations (0.0 to 1.0) that raise an unhandled error.
    #[arg(long, value_name = "FRACTION")]
    pub error_rate: Option<f64>,
    /// Concurrent executions allowed; more get 429 TooManyRequestsException.
    #[arg(long, value_name = "N")]
    pub reserved_concurrency: Option<u32>,
    /// Fail records whose body contains TEXT (repeatable; added after the configured rules).
    #[arg(long, value_name = "TEXT")]
    pub fail_body_contains: Vec<String>,
    /// How failed records are reported.
    #[arg(long, value_enum)]
    pub failure_mode: Option<FailureMode>,
    /// Init duration of cold starts, as a latency distribution.
    #[arg(long, value_name = "DIST")]
    pub cold_start: Option<Latency>,
    /// Periodic stall `DURATION/EVERY`, e.g. `1s/10s`: requests arriving in the stall wait it out.
    #[arg(long, value_name = "DURATION/EVERY")]
    pub stall: Option<Stall>,
    /// Event invocations: SQS queue (URL or ARN) for the records of those that succeed.
    #[arg(long, value_name = "QUEUE")]
    pub on_success: Option<String>,
    /// Event invocations: SQS queue (URL or ARN) for the records of those that fail for good.
    #[arg(long, value_name = "QUEUE")]
    pub on_failure: Option<String>,
    /// Event invocations: retries after a function error (0 to 2; Lambda's default 2).
    #[arg(long, value_name = "N")]
    pub maximum_retry_attempts: Option<u32>,
    /// Event invocations: wait before each retry after a function error (repeatable; the last
    /// repeats; Lambda's: 1m, then 2m).
    #[arg(long = "retry-delay", value_name = "DURATION", value_parser = parse_duration)]
    pub retry_delays: Vec<Duration>,
    /// Seed for all random draws, for repeatable runs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Record every invocation (served at GET /_sim/invocations).
    #[arg(long)]
    pub record: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let argv = ["loadgen", "run"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(args) => *args,
            other => panic!("{other:?}"),
        }
    }

    fn error(args: &[&str]) -> String {
        let argv = ["loadgen", "run"].iter().chain(args);
        Cli::try_parse_from(argv).unwrap_err().to_string()
    }

    /// oha's one-letter flags, each next to the long flag it stands for.
    #[test]
    fn oha_flags_and_their_long_forms() {
        let short = run_args(&[
            "http://127.0.0.1:1/x",
            "-n",
            "100",
            "-z",
            "30",
            "-q",
            "3000/m",
            "-m",
            "PUT",
            "-H",
            "X-Api-Key: k1",
            "-H",
            "Accept:text/plain",
            "-d",
            "{}",
            "-t",
            "2s",
            "-j",
        ]);
        let long = run_args(&[
            "--target-url",
            "http://127.0.0.1:1/x",
            "--requests",
            "100",
            "--duration",
            "30s",
            "--rate",
            "50/s",
            "--method",
            "PUT",
            "--header",
            "X-Api-Key: k1",
            "--header",
            "Accept:text/plain",
            "--payload",
            "{}",
            "--timeout",
            "2000ms",
            "--json",
        ]);
        for args in [&short, &long] {
            let o = args.overrides();
            assert_eq!(o.target_url.as_deref(), Some("http://127.0.0.1:1/x"));
            assert_eq!(o.max_requests, Some(100));
            assert_eq!(o.duration, Some(Duration::from_secs(30)));
            assert_eq!(o.rate, Some(50.0));
            assert_eq!(o.method.as_deref(), Some("PUT"));
            assert_eq!(
                o.headers,
                [
                    ("X-Api-Key".to_owned(), "k1".to_owned()),
                    ("Accept".to_owned(), "text/plain".to_owned())
                ]
            );
            assert_eq!(o.payload.as_deref(), Some("{}"));
            assert_eq!(o.timeout, Some(Duration::from_secs(2)));
            assert!(args.json);
            assert_eq!(args.scenario(), None);
        }
        assert_eq!(run_args(&["--body", "x"]).payload.as_deref(), Some("x"));
        let file = run_args(&["-D", "body.json"]).overrides();
        assert!(file.payload_file.unwrap().is_absolute());
        assert!(run_args(&["--body-file", "b.json"]).payload_file.is_some());
    }

    #[test]
    fn a_url_without_load_flags_runs_as_oha_would() {
        let o = run_args(&["http://127.0.0.1:1/"]).overrides();
        assert_eq!((o.concurrency, o.max_requests), (Some(50), Some(200)));
        let o = run_args(&["http://127.0.0.1:1/", "-z", "10s"]).overrides();
        assert_eq!((o.concurrency, o.max_requests), (Some(50), None));
        let o = run_args(&["http://127.0.0.1:1/", "-q", "10", "-n", "5"]).overrides();
        assert_eq!((o.concurrency, o.max_requests), (None, Some(5)));
        // A scenario keeps its own load.
        let o = run_args(&["s.toml"]).overrides();
        assert_eq!((o.concurrency, o.max_requests), (None, None));
    }

    #[test]
    fn a_first_argument_is_a_scenario_unless_it_is_a_url() {
        let args = run_args(&["scenarios/smoke-http.toml"]);
        assert_eq!(
            args.scenario(),
            Some(Path::new("scenarios/smoke-http.toml"))
        );
        assert_eq!(args.overrides().target_url, None);
        let args = run_args(&["https://example.test/"]);
        assert_eq!(args.scenario(), None);
        assert_eq!(
            args.overrides().target_url.as_deref(),
            Some("https://example.test/")
        );
    }

    /// `-c` is the concurrency of a closed model, and caps the requests in flight of an open one
    /// (oha's `-c` with `-q`).
    #[test]
    fn concurrency_alone_or_next_to_a_rate() {
        let o = run_args(&["-c", "8"]).overrides();
        assert_eq!(
            (o.concurrency, o.max_in_flight, o.rate),
            (Some(8), None, None)
        );
        let o = run_args(&["-c", "8", "-q", "100"]).overrides();
        assert_eq!(
            (o.concurrency, o.max_in_flight, o.rate),
            (None, Some(8), Some(100.0))
        );
        let o = run_args(&["-c", "8", "--stages", "10s:100"]).overrides();
        assert_eq!((o.concurrency, o.max_in_flight), (None, Some(8)));
    }

    #[test]
    fn stages_payloads_and_abort_flags() {
        let o = run_args(&[
            "--stages",
            "30s:100,1m:500,30s:0",
            "--model",
            "open",
            "--payloads",
            "p.jsonl",
            "--payload-order",
            "random",
            "--abort-on-fail",
            "--threshold",
            "p99 < 1s",
        ])
        .overrides();
        let stages = o.stages.unwrap();
        assert_eq!(stages.len(), 3);
        assert_eq!(
            (stages[1].duration, stages[1].target),
            (Duration::from_secs(60), 500.0)
        );
        assert_eq!(o.model, Some(Model::Open));
        assert!(o.payloads_file.unwrap().ends_with("p.jsonl"));
        assert_eq!(o.payload_order, Some(PayloadOrder::Random));
        assert!(o.abort_on_fail);
        assert_eq!(o.thresholds, ["p99 < 1s"]);
    }

    #[test]
    fn destination_flags() {
        let o = run_args(&[
            "--destination-queue",
            "http://127.0.0.1:1/123456789012/done",
            "--destination-grace",
            "30s",
        ])
        .overrides();
        assert_eq!(
            o.destination_queue.as_deref(),
            Some("http://127.0.0.1:1/123456789012/done")
        );
        assert_eq!(o.destination_grace, Some(Duration::from_secs(30)));
    }

    #[test]
    fn bad_values_name_the_token() {
        assert!(error(&["-q", "fast"]).contains("`fast` is not a rate"));
        assert!(error(&["-z", "5 parsecs"]).contains("`5 parsecs` is not a duration"));
        assert!(error(&["--stages", "30s:100,1m"]).contains("stage 2 `1m`"));
        assert!(error(&["-H", "no-colon"]).contains("`no-colon`: expected `NAME: VALUE`"));
        assert!(error(&["--stages", "1s:1", "-q", "5"]).contains("cannot be used with"));
    }
}
