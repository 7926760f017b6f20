//! The soak scenario (docs/soak.md): `scripts/soak.sh DURATION` starts moto and runs this. Runs the
//! real `poller` binary built next to this one on an SQS queue and a Kinesis stream at constant rates
//! for DURATION, samples its memory and latency, and checks that they stay flat.
//!
//! Exit code 0: every check passed; 1: a check failed; 2: the scenario could not run (or bad
//! arguments, as clap reports them).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use e2e::soak::{self, Config, Limits, MAX_RATE};

/// Run the poller under constant SQS and Kinesis load for DURATION and check that its memory,
/// latency and backlog stay flat and that nothing is lost (docs/soak.md). Writes samples.csv,
/// checks.json, junit.xml, summary.txt and the poller's log to --out.
#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// How long the producers send: `30m`, `90s`, `1h 30m` (humantime).
    #[arg(value_parser = humantime::parse_duration)]
    duration: Duration,
    /// SQS messages per second.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RATE)))]
    rate: u32,
    /// Kinesis records per second on the stream mapping; 0 leaves the stream mapping out.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_RATE)))]
    stream_rate: u32,
    /// Output directory (default: out/soak-<unix time> in the repository).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Time between samples (default: DURATION / 60, within 1 s..5 s).
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Samples before this are not analysed (default: DURATION / 6, within 5 s..2 min).
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// After the load, how long the poller gets to process everything that was sent.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The thresholds of the checks (`e2e::soak::Limits`; why these defaults: docs/soak.md).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Limits")]
struct LimitArgs {
    /// RSS may grow by this much between the first and the last third, whatever the baseline.
    #[arg(long, default_value = "2MiB", value_name = "MiB", value_parser = parse_mib)]
    max_rss_growth: u64,
    /// … or by this fraction of the first third's RSS, whichever is larger.
    #[arg(long, default_value_t = Limits::default().rss_growth_ratio, value_name = "RATIO")]
    max_rss_growth_ratio: f64,
    /// A latency (message age, invoke duration, iterator age) may end at most this many times its
    /// start …
    #[arg(long, default_value_t = Limits::default().latency_growth_ratio, value_name = "RATIO")]
    max_latency_growth: f64,
    /// … plus this slack for message age,
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    age_slack: Duration,
    /// … and this slack for the mean invoke duration,
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    duration_slack: Duration,
    /// … and this slack for the stream's iterator age (a shard read once per second jitters by up
    /// to a second).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    iterator_age_slack: Duration,
    /// The queue may hold, and the stream may lag, at most this much traffic at any sample.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    max_backlog: Duration,
    /// The producers must reach at least this fraction of their rates, or the run proves nothing.
    #[arg(long, default_value_t = Limits::default().min_load_ratio, value_name = "RATIO")]
    min_load_ratio: f64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            rss_growth_floor_kib: self.max_rss_growth,
            rss_growth_ratio: self.max_rss_growth_ratio,
            latency_growth_ratio: self.max_latency_growth,
            message_age_slack_ms: self.age_slack.as_secs_f64() * 1e3,
            duration_slack_ms: self.duration_slack.as_secs_f64() * 1e3,
            iterator_age_slack_ms: self.iterator_age_slack.as_secs_f64() * 1e3,
            backlog_secs: self.max_backlog.as_secs_f64(),
            min_load_ratio: self.min_load_ratio,
        }
    }
}

/// `2MiB`, `512KiB` or a plain number of MiB → KiB.
fn parse_mib(text: &str) -> Result<u64, String> {
    let (number, kib_per_unit) = if let Some(n) = text.strip_suffix("KiB") {
        (n, 1.0)
    } else {
        (text.strip_suffix("MiB").unwrap_or(text), 1024.0)
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok((n * kib_per_unit).round() as u64),
        _ => Err(format!("`{text}` is not a size (2MiB, 512KiB)")),
    }
}

impl Args {
    /// The run these flags describe; `default_out` when `--out` is not given.
    fn config(&self, poller_bin: PathBuf, default_out: PathBuf) -> Config {
        let mut config = Config::new(
            self.duration,
            poller_bin,
            self.out.clone().unwrap_or(default_out),
        );
        config.rate = self.rate;
        config.stream_rate = self.stream_rate;
        config.interval = self.interval.unwrap_or(config.interval);
        config.warmup = self.warmup.unwrap_or(config.warmup);
        config.drain_timeout = self.drain_timeout;
        config.limits = self.limits.limits();
        config
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match prepare(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("soak: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!(
        "soak: {} s at {} msg/s (SQS) and {} records/s (Kinesis), sampling every {} s after a {} s \
         warm-up; output in {}",
        config.duration.as_secs(),
        config.rate,
        config.stream_rate,
        config.interval.as_secs_f64(),
        config.warmup.as_secs_f64(),
        config.out_dir.display()
    );
    match soak::run(&config).await {
        Ok(report) => {
            print!("{}", report.summary());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("soak: could not run: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn prepare(args: &Args) -> anyhow::Result<Config> {
    let poller_bin = std::env::current_exe()?.with_file_name("poller");
    anyhow::ensure!(
        poller_bin.exists(),
        "{} not built (scripts/soak.sh builds it)",
        poller_bin.display()
    );
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()?;
    Ok(args.config(poller_bin, repo.join(format!("out/soak-{stamp}"))))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn config(args: &[&str]) -> Config {
        let args = Args::try_parse_from(std::iter::once("soak").chain(args.iter().copied()))
            .expect("valid arguments");
        args.config(PathBuf::from("poller"), PathBuf::from("default-out"))
    }

    #[test]
    fn the_command_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        let c = config(&["30m"]);
        let library = Config::new(
            Duration::from_secs(1_800),
            PathBuf::from("poller"),
            PathBuf::from("default-out"),
        );
        assert_eq!(c.duration, library.duration);
        assert_eq!((c.rate, c.stream_rate), (library.rate, library.stream_rate));
        assert_eq!((c.interval, c.warmup), (library.interval, library.warmup));
        assert_eq!(c.drain_timeout, library.drain_timeout);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.out_dir, PathBuf::from("default-out"));
    }

    #[test]
    fn durations_take_humantime_forms_and_limits_are_flags() {
        assert_eq!(config(&["1h 30m"]).duration, Duration::from_secs(5_400));
        assert_eq!(config(&["90s"]).duration, Duration::from_secs(90));
        let c = config(&[
            "10m",
            "--rate",
            "200",
            "--stream-rate",
            "0",
            "--out",
            "/tmp/s",
            "--interval",
            "2s",
            "--warmup",
            "1m",
            "--drain-timeout",
            "2m",
            "--max-rss-growth",
            "512KiB",
            "--max-rss-growth-ratio",
            "0.1",
            "--max-latency-growth",
            "2",
            "--age-slack",
            "250ms",
            "--duration-slack",
            "20ms",
            "--iterator-age-slack",
            "2s",
            "--max-backlog",
            "10s",
            "--min-load-ratio",
            "0.8",
        ]);
        assert_eq!((c.rate, c.stream_rate), (200, 0));
        assert_eq!(c.out_dir, PathBuf::from("/tmp/s"));
        assert_eq!(
            (c.interval, c.warmup, c.drain_timeout),
            (
                Duration::from_secs(2),
                Duration::from_secs(60),
                Duration::from_secs(120)
            )
        );
        assert_eq!(
            c.limits,
            Limits {
                rss_growth_floor_kib: 512,
                rss_growth_ratio: 0.1,
                latency_growth_ratio: 2.0,
                message_age_slack_ms: 250.0,
                duration_slack_ms: 20.0,
                iterator_age_slack_ms: 2_000.0,
                backlog_secs: 10.0,
                min_load_ratio: 0.8,
            }
        );
    }

    #[test]
    fn bad_arguments_are_clap_errors_naming_the_value() {
        let error = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("soak").chain(args.iter().copied()))
                .expect_err("invalid")
                .to_string()
        };
        assert!(error(&[]).contains("<DURATION>"));
        assert!(error(&["soon"]).contains("'soon'"));
        assert!(error(&["10m", "--rate", "0"]).contains("--rate"));
        assert!(error(&["10m", "--rate", "5000"]).contains("5000"));
        assert!(error(&["10m", "--max-rss-growth", "lots"]).contains("`lots` is not a size"));
        assert!(error(&["10m", "--frequency", "3"]).contains("--frequency"));
        let help = Args::command().render_long_help().to_string();
        assert!(
            help.contains("--max-backlog") && help.contains("Limits"),
            "{help}"
        );
    }
}
