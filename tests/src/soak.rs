//! The soak scenario (docs/soak.md): the real `poller` binary runs one SQS mapping against moto while a
//! producer sends at a constant rate, and every interval the poller's memory, latency and backlog are
//! sampled. At the end the samples must be flat: a leak, a growing queue or creeping latency shows up
//! as a difference between the first and the last third of the run, long before it would crash
//! anything. `scripts/soak.sh` runs it for hours in nightly CI; `tests/tests/soak.rs` runs ~30 s of it.
//!
//! The analysis ([`flatness_checks`], [`completion_checks`], [`windows`]) and the parsers are pure
//! functions of the samples; [`run`] does the I/O.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use loadgen::simulate::{FunctionConfig, Latency, SimConfig, Simulator};
use tokio::io::AsyncReadExt as _;

use crate::{Queue, Sqs};

/// The function name of the mapping (the simulator serves any name).
const FUNCTION: &str = "soak-fn";

/// Samples of the steady phase the analysis needs at least: two per third.
const MIN_STEADY_SAMPLES: usize = 6;

// ---------------------------------------------------------------------------------------------------
// Configuration

/// Thresholds of the checks. The defaults and the reasoning behind them are in docs/soak.md.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// RSS may grow by this much between the first and the last third whatever the baseline:
    /// allocator arenas and caches settle in small steps long after the warm-up.
    pub rss_growth_floor_kib: u64,
    /// … or by this fraction of the first third's median, whichever is larger.
    pub rss_growth_ratio: f64,
    /// A latency (message age, invocation duration) may end at most this many times its start …
    pub latency_growth_ratio: f64,
    /// … plus this slack for message age, which moves in steps of a receive round trip,
    pub message_age_slack_ms: f64,
    /// … and this slack for the mean invocation round trip.
    pub duration_slack_ms: f64,
    /// The queue may hold at most this many seconds of traffic at any sample after warm-up.
    pub backlog_secs: f64,
    /// The producer must have sent at least this fraction of the target rate, or the run did not load
    /// the poller as intended (an overloaded emulator) and proves nothing.
    pub min_load_ratio: f64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            rss_growth_floor_kib: 2 * 1024,
            rss_growth_ratio: 0.05,
            latency_growth_ratio: 1.5,
            message_age_slack_ms: 100.0,
            duration_slack_ms: 10.0,
            backlog_secs: 5.0,
            min_load_ratio: 0.9,
        }
    }
}

/// One soak run.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long the producer sends (the load phase; draining and shutdown come after).
    pub duration: Duration,
    /// Time between samples.
    pub interval: Duration,
    /// Samples before this are not analysed: lanes scale up, connection pools and allocator arenas fill.
    pub warmup: Duration,
    /// Messages per second the producer sends.
    pub rate: u32,
    /// Execution time of the simulated function.
    pub function_latency: Latency,
    /// After the load phase, how long the poller gets to process everything that was sent.
    pub drain_timeout: Duration,
    pub limits: Limits,
    /// The `poller` binary to run.
    pub poller_bin: PathBuf,
    /// Where samples, checks and the poller's log and report are written (created).
    pub out_dir: PathBuf,
}

/// The highest rate a run accepts: a soak checks flatness under steady load, not the emulator's limit.
pub const MAX_RATE: u32 = 1_000;

impl Config {
    /// A run of `duration` at 100 messages per second, with the interval and warm-up scaled to the
    /// duration: about 60 samples (1 to 5 s apart) and a warm-up of a sixth of the run (5 s to 2 min).
    pub fn new(duration: Duration, poller_bin: PathBuf, out_dir: PathBuf) -> Config {
        Config {
            duration,
            interval: (duration / 60).clamp(Duration::from_secs(1), Duration::from_secs(5)),
            warmup: (duration / 6).clamp(Duration::from_secs(5), Duration::from_secs(120)),
            rate: 100,
            function_latency: Latency::Uniform {
                min: Duration::from_millis(2),
                max: Duration::from_millis(8),
            },
            drain_timeout: Duration::from_secs(60),
            limits: Limits::default(),
            poller_bin,
            out_dir,
        }
    }

    /// The mapping under test: bounded concurrency, so the number of lanes (and with it memory) settles
    /// during warm-up instead of following the backlog up to 1,000 lanes.
    fn mapping(&self, queue: &Queue) -> String {
        crate::sqs_mapping(
            queue,
            FUNCTION,
            r#""BatchSize":10,"ScalingConfig":{"MaximumConcurrency":5}"#,
        )
    }
}

/// `30m`, `90s`, `2h`, `1h30m`, or plain seconds: the duration argument of `soak` and `scripts/soak.sh`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    if let Ok(secs) = text.parse::<u64>() {
        return (secs > 0).then(|| Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(number.parse::<u64>().ok()?.checked_mul(unit)?)?;
        number.clear();
    }
    (number.is_empty() && total > 0).then(|| Duration::from_secs(total))
}

// ---------------------------------------------------------------------------------------------------
// Samples and parsing

/// What one sample saw. Counters are cumulative since the poller started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the load started.
    pub elapsed_s: f64,
    /// The poller's resident set size (`VmRSS`).
    pub rss_kib: u64,
    /// Messages in the queue, visible or in flight.
    pub queue_depth: u64,
    /// Messages the producer has sent.
    pub sent: u64,
    /// `poller_polled_events_total`.
    pub polled: u64,
    /// `poller_invoked_events_total`.
    pub invoked: u64,
    /// `poller_deleted_events_total`.
    pub deleted: u64,
    /// Invocations that failed or never reached the function: `poller_errors_total` +
    /// `poller_invoke_request_errors_total` + `poller_throttles_total`. The soak function never fails.
    pub failures: u64,
    /// `poller_message_age_milliseconds`: age of the oldest message of the last receive.
    pub message_age_ms: f64,
    /// `poller_invocation_duration_seconds_sum`.
    pub duration_sum_s: f64,
    /// `poller_invocation_duration_seconds_count`.
    pub duration_count: u64,
}

impl Sample {
    pub const CSV_HEADER: &str = "elapsed_s,rss_kib,queue_depth,sent,polled,invoked,deleted,failures,\
                                  message_age_ms,duration_sum_s,duration_count";

    pub fn csv_row(&self) -> String {
        format!(
            "{:.3},{},{},{},{},{},{},{},{},{},{}",
            self.elapsed_s,
            self.rss_kib,
            self.queue_depth,
            self.sent,
            self.polled,
            self.invoked,
            self.deleted,
            self.failures,
            self.message_age_ms,
            self.duration_sum_s,
            self.duration_count
        )
    }

    /// Fill the poller's fields from a scrape. A missing series is an error, not a zero: a renamed
    /// metric must not make a check pass vacuously.
    pub fn set_metrics(&mut self, scrape: &Exposition) -> anyhow::Result<()> {
        self.polled = scrape.get("poller_polled_events_total")? as u64;
        self.invoked = scrape.get("poller_invoked_events_total")? as u64;
        self.deleted = scrape.get("poller_deleted_events_total")? as u64;
        self.failures = (scrape.get("poller_errors_total")?
            + scrape.get("poller_invoke_request_errors_total")?
            + scrape.get("poller_throttles_total")?) as u64;
        self.message_age_ms = scrape.get("poller_message_age_milliseconds")?;
        self.duration_sum_s = scrape.get("poller_invocation_duration_seconds_sum")?;
        self.duration_count = scrape.get("poller_invocation_duration_seconds_count")? as u64;
        Ok(())
    }
}

/// A Prometheus text exposition, each sample name's values summed over its series (labels dropped:
/// the soak poller runs one mapping).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition(std::collections::BTreeMap<String, f64>);

impl Exposition {
    pub fn parse(text: &str) -> anyhow::Result<Exposition> {
        let mut values = std::collections::BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            // Label values may contain spaces, the value never does.
            let (series, value) = line
                .rsplit_once(' ')
                .with_context(|| format!("sample line: {line}"))?;
            let name = series.split('{').next().unwrap_or(series);
            let value: f64 = value
                .parse()
                .with_context(|| format!("sample value: {line}"))?;
            *values.entry(name.to_owned()).or_default() += value;
        }
        Ok(Exposition(values))
    }

    pub fn get(&self, name: &str) -> anyhow::Result<f64> {
        self.0
            .get(name)
            .copied()
            .with_context(|| format!("no `{name}` in the scrape"))
    }
}

/// `VmRSS` of a `/proc/PID/status` text, in KiB.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------------
// Analysis

/// The result of one check, printed as a row of the summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub observed: String,
    pub limit: String,
}

/// Median; `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Mean invocation round trip between consecutive samples, in ms (intervals without invocations skipped).
fn interval_durations_ms(samples: &[Sample]) -> Vec<f64> {
    samples
        .windows(2)
        .filter_map(|w| {
            let count = w[1].duration_count.checked_sub(w[0].duration_count)?;
            (count > 0)
                .then(|| (w[1].duration_sum_s - w[0].duration_sum_s) * 1_000.0 / count as f64)
        })
        .collect()
}

/// `last` may be at most `first × ratio + slack`: latency that stays within its noise passes, latency
/// that creeps up fails. The slack keeps a small baseline from turning jitter into a ratio.
fn not_rising(name: &'static str, first: f64, last: f64, ratio: f64, slack_ms: f64) -> Check {
    let limit = first * ratio + slack_ms;
    Check {
        name,
        passed: last <= limit,
        observed: format!("{first:.1} → {last:.1} ms (median, first → last third)"),
        limit: format!("≤ {limit:.1} ms ({ratio}× + {slack_ms} ms)"),
    }
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// The flatness checks: after `warmup`, the first third of the samples against the last third (medians,
/// so a single slow scrape or allocator step does not decide), plus backlog and load over the whole
/// steady phase. `rate` is the producer's target in messages per second.
pub fn flatness_checks(
    samples: &[Sample],
    warmup: Duration,
    rate: u32,
    limits: &Limits,
) -> Vec<Check> {
    let steady: Vec<Sample> = samples
        .iter()
        .filter(|s| s.elapsed_s >= warmup.as_secs_f64())
        .cloned()
        .collect();
    let n = steady.len();
    if n < MIN_STEADY_SAMPLES {
        return vec![Check {
            name: "samples",
            passed: false,
            observed: format!("{n} after warm-up"),
            limit: format!("≥ {MIN_STEADY_SAMPLES}"),
        }];
    }
    let third = n / 3;
    let (first, last) = (&steady[..third], &steady[n - third..]);
    let medians = |window: &[Sample], value: fn(&Sample) -> f64| {
        median(&window.iter().map(value).collect::<Vec<_>>()).unwrap_or_default()
    };

    let (rss_first, rss_last) = (
        medians(first, |s| s.rss_kib as f64),
        medians(last, |s| s.rss_kib as f64),
    );
    let allowed = (limits.rss_growth_floor_kib as f64).max(limits.rss_growth_ratio * rss_first);
    let memory = Check {
        name: "memory flat",
        passed: rss_last - rss_first <= allowed,
        observed: format!(
            "{:+.1} MiB ({:.1} → {:.1} MiB RSS, median, first → last third)",
            mib(rss_last - rss_first),
            mib(rss_first),
            mib(rss_last)
        ),
        limit: format!(
            "≤ +{:.1} MiB (max of {:.1} MiB, {:.0}%)",
            mib(allowed),
            mib(limits.rss_growth_floor_kib as f64),
            limits.rss_growth_ratio * 100.0
        ),
    };

    let age = not_rising(
        "message age flat",
        medians(first, |s| s.message_age_ms),
        medians(last, |s| s.message_age_ms),
        limits.latency_growth_ratio,
        limits.message_age_slack_ms,
    );

    let duration = match (
        median(&interval_durations_ms(first)),
        median(&interval_durations_ms(last)),
    ) {
        (Some(a), Some(b)) => not_rising(
            "invoke duration flat",
            a,
            b,
            limits.latency_growth_ratio,
            limits.duration_slack_ms,
        ),
        _ => Check {
            name: "invoke duration flat",
            passed: false,
            observed: "no invocations in the first or last third".to_owned(),
            limit: "invocations throughout".to_owned(),
        },
    };

    let max_depth = steady
        .iter()
        .map(|s| s.queue_depth)
        .max()
        .unwrap_or_default();
    let depth_limit = rate as f64 * limits.backlog_secs;
    let backlog = Check {
        name: "keeps up",
        passed: max_depth as f64 <= depth_limit,
        observed: format!("queue depth ≤ {max_depth} after warm-up"),
        limit: format!("≤ {depth_limit:.0} ({} s of traffic)", limits.backlog_secs),
    };

    let (start, end) = (&steady[0], &steady[n - 1]);
    let span = end.elapsed_s - start.elapsed_s;
    let sent_rate = (end.sent - start.sent) as f64 / span;
    let deleted_rate = end.deleted.saturating_sub(start.deleted) as f64 / span;
    let load_limit = rate as f64 * limits.min_load_ratio;
    let load = Check {
        name: "load held",
        passed: sent_rate >= load_limit,
        observed: format!("sent {sent_rate:.1}/s, deleted {deleted_rate:.1}/s after warm-up"),
        limit: format!("sent ≥ {load_limit:.0}/s (target {rate}/s)"),
    };

    vec![memory, age, duration, backlog, load]
}

/// How a run ended: counts after draining, and the poller's exit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub sent: u64,
    /// Messages left in the queue after draining.
    pub depth: u64,
    /// `poller_deleted_events_total` after draining.
    pub deleted: u64,
    /// Records the function processed successfully (simulator counter).
    pub records_ok: u64,
    /// Records the function reported failed (simulator counter).
    pub records_failed: u64,
    /// [`Sample::failures`] after draining.
    pub failures: u64,
    /// The poller's exit code after SIGTERM; `None`: killed by a signal or did not stop in time.
    pub exit_code: Option<i32>,
}

/// Nothing lost, nothing failed, a clean stop. SQS delivers at least once, so more processed or deleted
/// than sent is a duplicate (reported), not a loss; less is a loss.
pub fn completion_checks(outcome: &Outcome) -> Vec<Check> {
    let Outcome {
        sent,
        depth,
        deleted,
        records_ok,
        records_failed,
        failures,
        exit_code,
    } = *outcome;
    vec![
        Check {
            name: "no message lost",
            passed: depth == 0 && deleted >= sent && records_ok >= sent,
            observed: format!(
                "sent {sent}, processed {records_ok} ({} duplicates), deleted {deleted}, left {depth}",
                records_ok.saturating_sub(sent)
            ),
            limit: "processed ≥ sent, deleted ≥ sent, left 0".to_owned(),
        },
        Check {
            name: "no failures",
            passed: failures == 0 && records_failed == 0,
            observed: format!("{failures} failed invocations, {records_failed} failed records"),
            limit: "0".to_owned(),
        },
        Check {
            name: "clean exit",
            passed: exit_code == Some(0),
            observed: match exit_code {
                Some(code) => format!("exit code {code} after SIGTERM"),
                None => "killed or not stopped after SIGTERM".to_owned(),
            },
            limit: "exit code 0".to_owned(),
        },
    ]
}

/// A stretch of consecutive samples, for the summary table.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// End of the stretch, seconds since the load started.
    pub until_s: f64,
    pub sent_per_s: f64,
    pub deleted_per_s: f64,
    pub max_depth: u64,
    pub rss_kib: f64,
    pub message_age_ms: f64,
    /// Mean invocation round trip; `None` without invocations.
    pub duration_ms: Option<f64>,
}

/// The samples cut into at most `count` stretches of equal length; rates are measured from the last
/// sample before each stretch, medians within it.
pub fn windows(samples: &[Sample], count: usize) -> Vec<Window> {
    if samples.len() < 2 || count == 0 {
        return Vec::new();
    }
    let size = (samples.len() - 1).div_ceil(count);
    (1..samples.len())
        .step_by(size)
        .map(|from| {
            let to = (from + size).min(samples.len());
            let (before, stretch) = (&samples[from - 1], &samples[from..to]);
            let end = &stretch[stretch.len() - 1];
            let span = end.elapsed_s - before.elapsed_s;
            let count = end.duration_count - before.duration_count;
            Window {
                until_s: end.elapsed_s,
                sent_per_s: (end.sent - before.sent) as f64 / span,
                deleted_per_s: end.deleted.saturating_sub(before.deleted) as f64 / span,
                max_depth: stretch
                    .iter()
                    .map(|s| s.queue_depth)
                    .max()
                    .unwrap_or_default(),
                rss_kib: median(&stretch.iter().map(|s| s.rss_kib as f64).collect::<Vec<_>>())
                    .unwrap_or_default(),
                message_age_ms: median(
                    &stretch.iter().map(|s| s.message_age_ms).collect::<Vec<_>>(),
                )
                .unwrap_or_default(),
                duration_ms: (count > 0)
                    .then(|| (end.duration_sum_s - before.duration_sum_s) * 1_000.0 / count as f64),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// The run

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Report {
    pub samples: Vec<Sample>,
    pub checks: Vec<Check>,
    pub outcome: Outcome,
    pub out_dir: PathBuf,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The summary table (12 stretches of the run) and the checks.
    pub fn summary(&self) -> String {
        let mut lines = vec![format!(
            "{:>8} {:>9} {:>10} {:>9} {:>9} {:>13} {:>12}",
            "until s", "sent/s", "deleted/s", "max depth", "RSS MiB", "msg age ms", "invoke ms"
        )];
        for w in windows(&self.samples, 12) {
            let duration = w.duration_ms.map_or("-".to_owned(), |d| format!("{d:.1}"));
            lines.push(format!(
                "{:>8.0} {:>9.1} {:>10.1} {:>9} {:>9.1} {:>13.0} {:>12}",
                w.until_s,
                w.sent_per_s,
                w.deleted_per_s,
                w.max_depth,
                mib(w.rss_kib),
                w.message_age_ms,
                duration
            ));
        }
        lines.push(String::new());
        for c in &self.checks {
            let verdict = if c.passed { "ok  " } else { "FAIL" };
            lines.push(format!(
                "{verdict} {:<21} {}   [{}]",
                c.name, c.observed, c.limit
            ));
        }
        lines.push(format!(
            "\n{} — samples, checks and the poller's log in {}\n",
            if self.passed() {
                "soak passed"
            } else {
                "soak FAILED"
            },
            self.out_dir.display()
        ));
        lines.join("\n")
    }

    fn checks_json(&self, config: &Config) -> serde_json::Value {
        let Limits {
            rss_growth_floor_kib,
            rss_growth_ratio,
            latency_growth_ratio,
            message_age_slack_ms,
            duration_slack_ms,
            backlog_secs,
            min_load_ratio,
        } = config.limits;
        serde_json::json!({
            "passed": self.passed(),
            "config": {
                "duration_s": config.duration.as_secs_f64(),
                "interval_s": config.interval.as_secs_f64(),
                "warmup_s": config.warmup.as_secs_f64(),
                "rate_per_s": config.rate,
                "function_latency": config.function_latency.to_string(),
            },
            "limits": {
                "rss_growth_floor_kib": rss_growth_floor_kib,
                "rss_growth_ratio": rss_growth_ratio,
                "latency_growth_ratio": latency_growth_ratio,
                "message_age_slack_ms": message_age_slack_ms,
                "duration_slack_ms": duration_slack_ms,
                "backlog_secs": backlog_secs,
                "min_load_ratio": min_load_ratio,
            },
            "outcome": {
                "sent": self.outcome.sent,
                "depth": self.outcome.depth,
                "deleted": self.outcome.deleted,
                "records_ok": self.outcome.records_ok,
                "records_failed": self.outcome.records_failed,
                "failures": self.outcome.failures,
                "exit_code": self.outcome.exit_code,
            },
            "checks": self.checks.iter().map(|c| serde_json::json!({
                "name": c.name,
                "passed": c.passed,
                "observed": c.observed,
                "limit": c.limit,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Run the soak against the emulator (`POLLER_TEST_ENDPOINT`): set up, load and sample for
/// `config.duration`, drain, stop the poller with SIGTERM, analyse. Writes `samples.csv` (as it goes),
/// `checks.json`, `summary.txt`, `mapping.json`, `poller.log` (stderr) and `poller-report.txt` (stdout)
/// to `config.out_dir`. Errors are failures to run the scenario at all; failed checks are in the report.
pub async fn run(config: &Config) -> anyhow::Result<Report> {
    anyhow::ensure!(
        config.rate > 0 && config.rate <= MAX_RATE,
        "rate must be 1..={MAX_RATE} messages/s"
    );
    std::fs::create_dir_all(&config.out_dir)
        .with_context(|| format!("creating {}", config.out_dir.display()))?;
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&crate::unique("soak"), &[]).await;
    let sim = Simulator::start(
        SimConfig {
            // The log keeps every payload; counters are all the soak needs, and they stay flat.
            record: false,
            default: FunctionConfig {
                latency: config.function_latency,
                ..FunctionConfig::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;

    let metrics_addr = free_port()?;
    let mut poller = spawn_poller(config, &queue, &sim.url(), metrics_addr)?;
    let pid = poller.id().context("poller pid")?;
    let scraper = Scraper::new(metrics_addr)?;
    wait_for_metrics(&scraper, &mut poller).await?;

    let mut csv = std::fs::File::create(config.out_dir.join("samples.csv"))?;
    writeln!(csv, "{}", Sample::CSV_HEADER)?;
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let producer = tokio::spawn(produce(
        sqs.clone(),
        queue.clone(),
        config.rate,
        started + config.duration,
        sent.clone(),
    ));
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while started.elapsed() < config.duration {
        ticks.tick().await;
        if let Some(status) = poller.try_wait()? {
            bail!(
                "the poller exited during the run ({status}); see {}",
                config.out_dir.join("poller.log").display()
            );
        }
        let mut sample = Sample {
            elapsed_s: started.elapsed().as_secs_f64(),
            rss_kib: rss_kib(pid)?,
            queue_depth: sqs.depth(&queue).await,
            sent: sent.load(Ordering::Relaxed),
            ..Sample::default()
        };
        sample.set_metrics(&scraper.scrape().await?)?;
        writeln!(csv, "{}", sample.csv_row())?;
        samples.push(sample);
    }
    producer.await.context("producer")?;
    let sent = sent.load(Ordering::Relaxed);

    // Drain: everything sent is processed and deleted, or the time is up.
    let drain_deadline = Instant::now() + config.drain_timeout;
    let mut outcome = loop {
        let mut last = Sample::default();
        last.set_metrics(&scraper.scrape().await?)?;
        let stats = sim
            .stats()
            .functions
            .get(FUNCTION)
            .cloned()
            .unwrap_or_default();
        let outcome = Outcome {
            sent,
            depth: sqs.depth(&queue).await,
            deleted: last.deleted,
            records_ok: stats.records_ok,
            records_failed: stats.records_failed,
            failures: last.failures,
            exit_code: None,
        };
        let drained = outcome.depth == 0 && outcome.deleted >= sent && outcome.records_ok >= sent;
        if drained || Instant::now() >= drain_deadline {
            break outcome;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    outcome.exit_code = stop_poller(&mut poller, &config.out_dir).await?;
    sim.shutdown().await?;

    let mut checks = flatness_checks(&samples, config.warmup, config.rate, &config.limits);
    checks.extend(completion_checks(&outcome));
    let report = Report {
        samples,
        checks,
        outcome,
        out_dir: config.out_dir.clone(),
    };
    std::fs::write(
        config.out_dir.join("checks.json"),
        serde_json::to_string_pretty(&report.checks_json(config))?,
    )?;
    std::fs::write(config.out_dir.join("summary.txt"), report.summary())?;
    Ok(report)
}

/// Send `rate` messages per second until `until`, in batches of up to 10 (one `SendMessageBatch` per
/// tick). Sends overlap (up to `MAX_SENDS_IN_FLIGHT`), so a slow emulator round trip on a loaded
/// machine does not lower the rate; a tick with every send slot busy is skipped, not made up for: the
/// rate stays bounded, and the "load held" check reports the shortfall. `sent` counts completed sends.
async fn produce(sqs: Sqs, queue: Queue, rate: u32, until: Instant, sent: Arc<AtomicU64>) {
    const MAX_SENDS_IN_FLIGHT: usize = 16;
    let batch = rate.min(10);
    let mut ticks =
        tokio::time::interval(Duration::from_secs_f64(f64::from(batch) / f64::from(rate)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Fixed-size bodies, so the work per message does not drift over the run.
    let padding = Arc::new("x".repeat(200));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SENDS_IN_FLIGHT));
    let mut sends = tokio::task::JoinSet::new();
    let mut next = 0u64;
    while Instant::now() < until {
        ticks.tick().await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let messages: Vec<(String, Option<String>)> = (next..next + u64::from(batch))
            .map(|n| (format!(r#"{{"soak":{n:010},"pad":"{padding}"}}"#), None))
            .collect();
        next += u64::from(batch);
        let (sqs, queue, sent) = (sqs.clone(), queue.clone(), sent.clone());
        sends.spawn(async move {
            sqs.send(&queue, &messages).await;
            sent.fetch_add(messages.len() as u64, Ordering::Relaxed);
            drop(slot);
        });
    }
    while let Some(done) = sends.join_next().await {
        done.expect("a send task panicked");
    }
}

/// A free port on 127.0.0.1 for `--metrics-addr`. The poller binds it a moment later; the port is
/// known up front, which the scraper needs (port 0 would only be in the poller's log).
fn free_port() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

fn spawn_poller(
    config: &Config,
    queue: &Queue,
    lambda_url: &str,
    metrics_addr: std::net::SocketAddr,
) -> anyhow::Result<tokio::process::Child> {
    let mapping = config.out_dir.join("mapping.json");
    std::fs::write(&mapping, config.mapping(queue))?;
    let log = std::fs::File::create(config.out_dir.join("poller.log"))?;
    tokio::process::Command::new(&config.poller_bin)
        .args(["run", "--mapping"])
        .arg(&mapping)
        .arg("--state-dir")
        .arg(config.out_dir.join("state"))
        .args([
            "--endpoint-url",
            &crate::endpoint(),
            "--region",
            "us-east-1",
        ])
        .args(["--lambda-endpoint-url", lambda_url])
        .args(["--metrics-addr", &metrics_addr.to_string()])
        .env("RUST_LOG", "warn")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        // A run that fails half-way must not leave a poller behind.
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", config.poller_bin.display()))
}

/// Until the poller serves its metrics (it is up and its mapping connected), at most 30 s.
async fn wait_for_metrics(
    scraper: &Scraper,
    poller: &mut tokio::process::Child,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = poller.try_wait()? {
            bail!("the poller exited at start ({status})");
        }
        match scraper.scrape().await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context("the poller's metrics within 30 s"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// SIGTERM, then wait up to 60 s for the exit (the poller finishes in-flight batches first). Saves the
/// exit report the poller prints on stdout. Returns the exit code (`None`: it had to be killed).
async fn stop_poller(
    poller: &mut tokio::process::Child,
    out_dir: &Path,
) -> anyhow::Result<Option<i32>> {
    let pid = poller.id().context("poller pid")?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM {pid}: {status}");
    let mut report = String::new();
    let mut stdout = poller.stdout.take().context("poller stdout")?;
    let exited = tokio::time::timeout(Duration::from_secs(60), async {
        stdout.read_to_string(&mut report).await?;
        poller.wait().await
    })
    .await;
    std::fs::write(out_dir.join("poller-report.txt"), &report)?;
    match exited {
        Ok(status) => Ok(status?.code()),
        Err(_) => {
            poller.kill().await?;
            Ok(None)
        }
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    vm_rss_kib(&status).with_context(|| format!("no VmRSS in {path}"))
}

/// `GET /metrics` of the poller.
struct Scraper {
    client: reqwest::Client,
    url: String,
}

impl Scraper {
    fn new(addr: std::net::SocketAddr) -> anyhow::Result<Scraper> {
        Ok(Scraper {
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()?,
            url: format!("http://{addr}/metrics"),
        })
    }

    async fn scrape(&self) -> anyhow::Result<Exposition> {
        let text = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Exposition::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A steady run: `n` samples 1 s apart at 100 msg/s, everything processed in time, with the
    /// memory and message age each sample gets from `shape(i)`.
    fn run_of(n: usize, shape: impl Fn(usize) -> (u64, f64)) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let (rss_kib, message_age_ms) = shape(i);
                let done = i as u64 * 100;
                Sample {
                    elapsed_s: i as f64,
                    rss_kib,
                    queue_depth: 20 + (i as u64 % 3) * 10,
                    sent: done,
                    polled: done,
                    invoked: done,
                    deleted: done,
                    failures: 0,
                    message_age_ms,
                    duration_sum_s: i as f64 * 10.0 * 0.006,
                    duration_count: i as u64 * 10,
                }
            })
            .collect()
    }

    fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
    }

    const WARMUP: Duration = Duration::from_secs(5);

    #[test]
    fn a_flat_run_passes_every_check() {
        // Noise: RSS wobbles by 1 MiB, message age by ±40 ms.
        let samples = run_of(35, |i| {
            (
                30_000 + (i as u64 % 4) * 256,
                100.0 + (i % 5) as f64 * 20.0 - 40.0,
            )
        });
        let checks = flatness_checks(&samples, WARMUP, 100, &Limits::default());
        assert_eq!(checks.len(), 5);
        for c in &checks {
            assert!(c.passed, "{c:?}");
        }
        assert!(
            check(&checks, "invoke duration flat")
                .observed
                .starts_with("6.0 → 6.0")
        );
    }

    #[test]
    fn a_leak_fails_memory_but_a_single_step_does_not() {
        // 300 KiB per second: the thirds' medians are 20 s apart, ~5.9 MiB, more than the 2 MiB floor.
        let leak = run_of(35, |i| (30_000 + i as u64 * 300, 100.0));
        let checks = flatness_checks(&leak, WARMUP, 100, &Limits::default());
        assert!(!check(&checks, "memory flat").passed);

        // One allocator step of 8 MiB in the middle third: the thirds' medians are equal.
        let step = run_of(35, |i| (if i == 17 { 38_000 } else { 30_000 }, 100.0));
        assert!(
            check(
                &flatness_checks(&step, WARMUP, 100, &Limits::default()),
                "memory flat"
            )
            .passed
        );

        // A large baseline: 5% of 100 MiB allows 5 MiB growth, more than the floor.
        let big = run_of(35, |i| (100 * 1024 + if i > 23 { 4_608 } else { 0 }, 100.0));
        assert!(
            check(
                &flatness_checks(&big, WARMUP, 100, &Limits::default()),
                "memory flat"
            )
            .passed
        );
    }

    #[test]
    fn creeping_message_age_fails_and_outliers_do_not() {
        // +30 ms per second: 385 → 985 ms between the thirds' medians.
        let creep = run_of(35, |i| (30_000, 100.0 + i as f64 * 30.0));
        let checks = flatness_checks(&creep, WARMUP, 100, &Limits::default());
        let age = check(&checks, "message age flat");
        assert!(!age.passed, "{age:?}");

        // Two 2 s outliers in the last third: the median ignores them.
        let spikes = run_of(35, |i| {
            (30_000, if i > 25 && i % 4 == 0 { 2_000.0 } else { 100.0 })
        });
        assert!(
            check(
                &flatness_checks(&spikes, WARMUP, 100, &Limits::default()),
                "message age flat"
            )
            .passed
        );
    }

    #[test]
    fn slower_invocations_fail_the_duration_check() {
        let mut samples = run_of(35, |_| (30_000, 100.0));
        // From sample 24 on, each invocation takes 30 ms instead of 6.
        let base = samples[23].duration_sum_s;
        for (i, sample) in samples.iter_mut().enumerate().skip(24) {
            sample.duration_sum_s = base + (i - 23) as f64 * 10.0 * 0.030;
        }
        let checks = flatness_checks(&samples, WARMUP, 100, &Limits::default());
        let duration = check(&checks, "invoke duration flat");
        assert!(!duration.passed, "{duration:?}");
        assert!(duration.observed.starts_with("6.0 → 30.0"), "{duration:?}");
    }

    #[test]
    fn backlog_and_load_shortfall_fail() {
        let mut samples = run_of(35, |_| (30_000, 100.0));
        samples[30].queue_depth = 501;
        let checks = flatness_checks(&samples, WARMUP, 100, &Limits::default());
        assert!(!check(&checks, "keeps up").passed);
        assert!(check(&checks, "load held").passed);

        // The producer only managed 80 msg/s of the 100 asked for.
        let slow: Vec<Sample> = run_of(35, |_| (30_000, 100.0))
            .into_iter()
            .map(|s| Sample {
                sent: s.sent * 8 / 10,
                ..s
            })
            .collect();
        let load = flatness_checks(&slow, WARMUP, 100, &Limits::default());
        assert!(!check(&load, "load held").passed);
        assert!(
            check(&load, "load held")
                .observed
                .starts_with("sent 80.0/s")
        );
    }

    #[test]
    fn warmup_is_ignored_and_too_few_samples_fail() {
        // RSS doubles during the warm-up, then stays flat.
        let samples = run_of(35, |i| (if i < 5 { 15_000 } else { 30_000 }, 100.0));
        assert!(
            check(
                &flatness_checks(&samples, WARMUP, 100, &Limits::default()),
                "memory flat"
            )
            .passed
        );

        let short = run_of(10, |_| (30_000, 100.0));
        let checks = flatness_checks(&short, WARMUP, 100, &Limits::default());
        assert_eq!(checks.len(), 1);
        assert_eq!(check(&checks, "samples").observed, "5 after warm-up");
        assert!(!checks[0].passed);
    }

    #[test]
    fn completion_requires_every_message_processed_and_a_clean_exit() {
        let ok = Outcome {
            sent: 1_000,
            depth: 0,
            deleted: 1_000,
            records_ok: 1_002,
            records_failed: 0,
            failures: 0,
            exit_code: Some(0),
        };
        let checks = completion_checks(&ok);
        assert!(checks.iter().all(|c| c.passed), "{checks:?}");
        assert!(
            check(&checks, "no message lost")
                .observed
                .contains("(2 duplicates)")
        );

        let lost = completion_checks(&Outcome {
            records_ok: 999,
            ..ok.clone()
        });
        assert!(!check(&lost, "no message lost").passed);
        let left = completion_checks(&Outcome {
            depth: 1,
            ..ok.clone()
        });
        assert!(!check(&left, "no message lost").passed);
        let failed = completion_checks(&Outcome {
            records_failed: 1,
            ..ok.clone()
        });
        assert!(!check(&failed, "no failures").passed);
        let killed = completion_checks(&Outcome {
            exit_code: None,
            ..ok.clone()
        });
        assert!(!check(&killed, "clean exit").passed);
        let error = completion_checks(&Outcome {
            exit_code: Some(2),
            ..ok
        });
        assert_eq!(
            check(&error, "clean exit").observed,
            "exit code 2 after SIGTERM"
        );
    }

    #[test]
    fn windows_summarise_stretches_of_the_run() {
        let samples = run_of(25, |i| (30_000 + i as u64, 100.0));
        let w = windows(&samples, 4);
        assert_eq!(w.len(), 4);
        assert_eq!(w[0].until_s, 6.0);
        assert_eq!(w[3].until_s, 24.0);
        for window in &w {
            assert_eq!(window.sent_per_s, 100.0);
            assert_eq!(window.deleted_per_s, 100.0);
            assert!((window.duration_ms.expect("invocations") - 6.0).abs() < 1e-9);
        }
        assert_eq!(w[0].max_depth, 40);
        assert_eq!(w[0].rss_kib, 30_003.5);
        assert!(windows(&samples[..1], 4).is_empty());
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn exposition_sums_series_and_reports_missing_names() {
        let text = "# HELP poller_deleted_events DeletedEventCount.\n\
                    # TYPE poller_deleted_events counter\n\
                    poller_deleted_events_total{mapping=\"a\",source=\"arn:x\",function=\"f\"} 7\n\
                    poller_deleted_events_total{mapping=\"b\",source=\"arn:y\",function=\"a b\"} 3\n\
                    poller_invocation_duration_seconds_sum{mapping=\"a\"} 0.25\n\
                    poller_message_age_milliseconds 12.5\n\
                    # EOF\n";
        let scrape = Exposition::parse(text).expect("parses");
        assert_eq!(
            scrape.get("poller_deleted_events_total").expect("present"),
            10.0
        );
        assert_eq!(
            scrape
                .get("poller_invocation_duration_seconds_sum")
                .expect("present"),
            0.25
        );
        assert_eq!(
            scrape
                .get("poller_message_age_milliseconds")
                .expect("present"),
            12.5
        );
        let missing = scrape
            .get("poller_polled_events_total")
            .expect_err("absent");
        assert!(missing.to_string().contains("poller_polled_events_total"));
        assert!(Exposition::parse("poller_x{a=\"b\"} not-a-number\n").is_err());

        let mut sample = Sample::default();
        assert!(
            sample.set_metrics(&scrape).is_err(),
            "a scrape without every series is an error"
        );
    }

    #[test]
    fn vm_rss_is_read_from_proc_status() {
        let status =
            "Name:\tpoller\nVmPeak:\t  900000 kB\nVmRSS:\t   31744 kB\nRssAnon:\t   20000 kB\n";
        assert_eq!(vm_rss_kib(status), Some(31_744));
        assert_eq!(vm_rss_kib("Name:\tkthreadd\n"), None);
        // This process has one.
        let own = std::fs::read_to_string("/proc/self/status").expect("procfs");
        assert!(vm_rss_kib(&own).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1_800)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        for bad in ["", "0", "m", "10x", "5m3", "0s", "-5m"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn config_scales_interval_and_warmup_with_the_duration() {
        let short = Config::new(Duration::from_secs(24), PathBuf::new(), PathBuf::new());
        assert_eq!(
            (short.interval, short.warmup),
            (Duration::from_secs(1), Duration::from_secs(5))
        );
        let nightly = Config::new(Duration::from_secs(1_800), PathBuf::new(), PathBuf::new());
        assert_eq!(
            (nightly.interval, nightly.warmup),
            (Duration::from_secs(5), Duration::from_secs(120))
        );
        let ten = Config::new(Duration::from_secs(600), PathBuf::new(), PathBuf::new());
        assert_eq!(
            (ten.interval, ten.warmup),
            (Duration::from_secs(5), Duration::from_secs(100))
        );
    }
}
