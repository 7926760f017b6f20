//! The soak scenario (docs/soak.md): the real `poller` binary runs an SQS mapping and a Kinesis mapping
//! against moto while two producers send at constant rates, and every interval the poller's memory,
//! latency and backlog are sampled. At the end the samples must be flat: a leak, a growing queue or
//! creeping latency shows up as a difference between the first and the last third of the run, long
//! before it would crash anything. `scripts/soak.sh` runs it for hours in nightly CI; `tests/tests/soak.rs` runs ~30 s of it.
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

use crate::{Kinesis, Queue, Sqs};

/// The function name of the SQS mapping (the simulator serves any name).
const FUNCTION: &str = "soak-fn";
/// The function name of the Kinesis mapping: its own, so its counters are its own.
const STREAM_FUNCTION: &str = "soak-stream-fn";

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
    /// … and this slack for the mean invocation round trip,
    pub duration_slack_ms: f64,
    /// … and this slack for a stream's iterator age. A healthy shard's iterator age is a sawtooth
    /// between 0 and about a second: the poller reads each shard once per second, and the phase of
    /// its reads drifts against the producer's ticks (42 → 290 ms over 24 s in the short soak, with
    /// no record behind).
    pub iterator_age_slack_ms: f64,
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
            iterator_age_slack_ms: 1_000.0,
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
    /// Records per second the stream producer puts on the Kinesis stream; 0: no Kinesis mapping.
    pub stream_rate: u32,
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
            stream_rate: 50,
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

    /// The stream mapping: one shard read from its start, batches of up to 100 records.
    fn stream_mapping(&self, stream_arn: &str) -> String {
        crate::stream_mapping(
            stream_arn,
            STREAM_FUNCTION,
            r#""StartingPosition":"TRIM_HORIZON","BatchSize":100"#,
        )
    }
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
    /// Records the stream producer has put.
    pub stream_sent: u64,
    /// `poller_invoked_events_total` of the stream mapping.
    pub stream_invoked: u64,
    /// `poller_iterator_age_milliseconds` of the stream mapping; `None` before its first batch.
    pub iterator_age_ms: Option<f64>,
}

impl Sample {
    pub const CSV_HEADER: &str = "elapsed_s,rss_kib,queue_depth,sent,polled,invoked,deleted,failures,\
                                  message_age_ms,duration_sum_s,duration_count,stream_sent,\
                                  stream_invoked,iterator_age_ms";

    pub fn csv_row(&self) -> String {
        format!(
            "{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{}",
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
            self.duration_count,
            self.stream_sent,
            self.stream_invoked,
            self.iterator_age_ms
                .map_or(String::new(), |age| age.to_string()),
        )
    }

    /// Fill the poller's fields from a scrape: the SQS mapping's, the failures of both, and with
    /// `stream` the stream mapping's. A missing series is an error, not a zero: a renamed metric must
    /// not make a check pass vacuously. The one exception is the iterator age, a per-shard gauge that
    /// appears with the shard's first batch; the stream checks fail when it never does.
    pub fn set_metrics(&mut self, scrape: &Exposition, stream: bool) -> anyhow::Result<()> {
        let sqs = |name: &str| scrape.get_for(name, FUNCTION);
        self.polled = sqs("poller_polled_events_total")? as u64;
        self.invoked = sqs("poller_invoked_events_total")? as u64;
        self.deleted = sqs("poller_deleted_events_total")? as u64;
        self.failures = (scrape.get("poller_errors_total")?
            + scrape.get("poller_invoke_request_errors_total")?
            + scrape.get("poller_throttles_total")?) as u64;
        self.message_age_ms = sqs("poller_message_age_milliseconds")?;
        self.duration_sum_s = sqs("poller_invocation_duration_seconds_sum")?;
        self.duration_count = sqs("poller_invocation_duration_seconds_count")? as u64;
        if stream {
            self.stream_invoked =
                scrape.get_for("poller_invoked_events_total", STREAM_FUNCTION)? as u64;
            self.iterator_age_ms = scrape
                .get_for("poller_iterator_age_milliseconds", STREAM_FUNCTION)
                .ok();
        }
        Ok(())
    }
}

/// A Prometheus text exposition: each sample name's series with their label text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition(std::collections::BTreeMap<String, Vec<(String, f64)>>);

impl Exposition {
    pub fn parse(text: &str) -> anyhow::Result<Exposition> {
        let mut values: std::collections::BTreeMap<String, Vec<(String, f64)>> =
            std::collections::BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            // Label values may contain spaces, the value never does.
            let (series, value) = line
                .rsplit_once(' ')
                .with_context(|| format!("sample line: {line}"))?;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let value: f64 = value
                .parse()
                .with_context(|| format!("sample value: {line}"))?;
            values
                .entry(name.to_owned())
                .or_default()
                .push((labels.trim_end_matches('}').to_owned(), value));
        }
        Ok(Exposition(values))
    }

    /// The sum of `name`'s series.
    pub fn get(&self, name: &str) -> anyhow::Result<f64> {
        self.sum(name, |_| true)
    }

    /// The sum of `name`'s series labelled `function="FUNCTION"` (the mapping's function).
    pub fn get_for(&self, name: &str, function: &str) -> anyhow::Result<f64> {
        let label = format!("function=\"{function}\"");
        self.sum(name, |labels| {
            labels.split(',').any(|pair| pair.trim() == label)
        })
        .with_context(|| format!("for function {function}"))
    }

    fn sum(&self, name: &str, keep: impl Fn(&str) -> bool) -> anyhow::Result<f64> {
        let values: Vec<f64> = self
            .0
            .get(name)
            .into_iter()
            .flatten()
            .filter(|(labels, _)| keep(labels))
            .map(|(_, value)| *value)
            .collect();
        anyhow::ensure!(!values.is_empty(), "no `{name}` in the scrape");
        Ok(values.iter().sum())
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
/// steady phase. `rate` is the SQS producer's target in messages per second, `stream_rate` the
/// stream producer's in records per second (0: no stream mapping, no stream checks).
pub fn flatness_checks(
    samples: &[Sample],
    warmup: Duration,
    rate: u32,
    stream_rate: u32,
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

    let mut checks = vec![memory, age, duration, backlog, load];
    if stream_rate > 0 {
        checks.extend(stream_checks(&steady, stream_rate, limits));
    }
    checks
}

/// The stream mapping's checks over the steady samples: its iterator age (how far behind the shard's
/// tip the last batch was) stays below the backlog limit and does not creep up, and the producer held
/// its rate.
fn stream_checks(steady: &[Sample], stream_rate: u32, limits: &Limits) -> Vec<Check> {
    let ages: Vec<f64> = steady.iter().filter_map(|s| s.iterator_age_ms).collect();
    let age_limit_ms = limits.backlog_secs * 1_000.0;
    let keeps_up = match ages.iter().copied().reduce(f64::max) {
        Some(max) => Check {
            name: "stream keeps up",
            passed: max <= age_limit_ms,
            observed: format!("iterator age ≤ {max:.0} ms after warm-up"),
            limit: format!("≤ {age_limit_ms:.0} ms ({} s)", limits.backlog_secs),
        },
        None => Check {
            name: "stream keeps up",
            passed: false,
            observed: "no iterator age after warm-up (no batch finished)".to_owned(),
            limit: format!("≤ {age_limit_ms:.0} ms ({} s)", limits.backlog_secs),
        },
    };
    let third = ages.len() / 3;
    let lag = match (median(&ages[..third]), median(&ages[ages.len() - third..])) {
        (Some(first), Some(last)) => not_rising(
            "stream lag flat",
            first,
            last,
            limits.latency_growth_ratio,
            limits.iterator_age_slack_ms,
        ),
        _ => Check {
            name: "stream lag flat",
            passed: false,
            observed: format!("{} iterator ages after warm-up", ages.len()),
            limit: "≥ 3".to_owned(),
        },
    };
    let (start, end) = (&steady[0], &steady[steady.len() - 1]);
    let span = end.elapsed_s - start.elapsed_s;
    let sent_rate = (end.stream_sent - start.stream_sent) as f64 / span;
    let invoked_rate = end.stream_invoked.saturating_sub(start.stream_invoked) as f64 / span;
    let load_limit = stream_rate as f64 * limits.min_load_ratio;
    let load = Check {
        name: "stream load held",
        passed: sent_rate >= load_limit,
        observed: format!("put {sent_rate:.1}/s, invoked {invoked_rate:.1}/s after warm-up"),
        limit: format!("put ≥ {load_limit:.0}/s (target {stream_rate}/s)"),
    };
    vec![keeps_up, lag, load]
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
    /// Records the stream producer put.
    pub stream_sent: u64,
    /// Stream records the function processed successfully (simulator counter).
    pub stream_records_ok: u64,
    /// Stream records the function reported failed (simulator counter).
    pub stream_records_failed: u64,
}

/// Nothing lost, nothing failed, a clean stop. SQS and Kinesis mappings deliver at least once, so more
/// processed or deleted than sent is a duplicate (reported), not a loss; less is a loss. `stream`: the
/// run had a stream mapping, whose records are checked too.
pub fn completion_checks(outcome: &Outcome, stream: bool) -> Vec<Check> {
    let Outcome {
        sent,
        depth,
        deleted,
        records_ok,
        records_failed,
        failures,
        exit_code,
        stream_sent,
        stream_records_ok,
        stream_records_failed,
    } = *outcome;
    let mut checks = vec![
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
            passed: failures == 0 && records_failed == 0 && stream_records_failed == 0,
            observed: format!(
                "{failures} failed invocations, {} failed records",
                records_failed + stream_records_failed
            ),
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
    ];
    if stream {
        checks.push(Check {
            name: "no record lost",
            passed: stream_records_ok >= stream_sent,
            observed: format!(
                "put {stream_sent}, processed {stream_records_ok} ({} duplicates)",
                stream_records_ok.saturating_sub(stream_sent)
            ),
            limit: "processed ≥ put".to_owned(),
        });
    }
    checks
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
    pub stream_sent_per_s: f64,
    /// Median iterator age of the stream mapping; `None` without one.
    pub iterator_age_ms: Option<f64>,
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
                stream_sent_per_s: end.stream_sent.saturating_sub(before.stream_sent) as f64 / span,
                iterator_age_ms: median(
                    &stretch
                        .iter()
                        .filter_map(|s| s.iterator_age_ms)
                        .collect::<Vec<_>>(),
                ),
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
            "{:>8} {:>9} {:>10} {:>9} {:>9} {:>13} {:>12} {:>9} {:>12}",
            "until s",
            "sent/s",
            "deleted/s",
            "max depth",
            "RSS MiB",
            "msg age ms",
            "invoke ms",
            "put/s",
            "iter age ms"
        )];
        for w in windows(&self.samples, 12) {
            let duration = w.duration_ms.map_or("-".to_owned(), |d| format!("{d:.1}"));
            let age = w
                .iterator_age_ms
                .map_or("-".to_owned(), |a| format!("{a:.0}"));
            lines.push(format!(
                "{:>8.0} {:>9.1} {:>10.1} {:>9} {:>9.1} {:>13.0} {:>12} {:>9.1} {:>12}",
                w.until_s,
                w.sent_per_s,
                w.deleted_per_s,
                w.max_depth,
                mib(w.rss_kib),
                w.message_age_ms,
                duration,
                w.stream_sent_per_s,
                age
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

    /// JUnit XML: one test case per check, a failure for each failed one, so CI shows a drift as a
    /// failed test by its name.
    pub fn junit(&self, time: Duration) -> anyhow::Result<String> {
        use quick_junit::{NonSuccessKind, Report as JUnit, TestCase, TestCaseStatus, TestSuite};
        let mut suite = TestSuite::new("soak");
        suite.set_time(time);
        for check in &self.checks {
            let status = if check.passed {
                TestCaseStatus::success()
            } else {
                let mut failure = TestCaseStatus::non_success(NonSuccessKind::Failure);
                failure.set_message(format!("{} (limit {})", check.observed, check.limit));
                failure
            };
            let mut case = TestCase::new(check.name, status);
            case.set_classname("soak")
                .set_system_out(format!("{}   [{}]", check.observed, check.limit));
            suite.add_test_case(case);
        }
        let mut report = JUnit::new("soak");
        report.set_time(time).add_test_suite(suite);
        Ok(report.to_string()?)
    }

    fn checks_json(&self, config: &Config) -> serde_json::Value {
        let Limits {
            rss_growth_floor_kib,
            rss_growth_ratio,
            latency_growth_ratio,
            message_age_slack_ms,
            duration_slack_ms,
            iterator_age_slack_ms,
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
                "stream_rate_per_s": config.stream_rate,
                "function_latency": config.function_latency.to_string(),
            },
            "limits": {
                "rss_growth_floor_kib": rss_growth_floor_kib,
                "rss_growth_ratio": rss_growth_ratio,
                "latency_growth_ratio": latency_growth_ratio,
                "message_age_slack_ms": message_age_slack_ms,
                "duration_slack_ms": duration_slack_ms,
                "iterator_age_slack_ms": iterator_age_slack_ms,
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
                "stream_sent": self.outcome.stream_sent,
                "stream_records_ok": self.outcome.stream_records_ok,
                "stream_records_failed": self.outcome.stream_records_failed,
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
/// `checks.json`, `junit.xml`, `summary.txt`, `mapping.json` (and `stream-mapping.json`), `poller.log`
/// (stderr) and `poller-report.txt` (stdout) to `config.out_dir`. Errors are failures to run the
/// scenario at all; failed checks are in the report.
pub async fn run(config: &Config) -> anyhow::Result<Report> {
    anyhow::ensure!(
        config.rate > 0 && config.rate <= MAX_RATE,
        "rate must be 1..={MAX_RATE} messages/s"
    );
    anyhow::ensure!(
        config.stream_rate <= MAX_RATE,
        "stream rate must be 0..={MAX_RATE} records/s"
    );
    std::fs::create_dir_all(&config.out_dir)
        .with_context(|| format!("creating {}", config.out_dir.display()))?;
    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&crate::unique("soak"), &[]).await;
    let with_stream = config.stream_rate > 0;
    let kinesis = Kinesis::new().await;
    let stream_name = crate::unique("soak");
    let stream_arn = if with_stream {
        Some(kinesis.create_stream(&stream_name, 1).await)
    } else {
        None
    };
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
    let mut poller = spawn_poller(
        config,
        &queue,
        stream_arn.as_deref(),
        &sim.url(),
        metrics_addr,
    )?;
    let pid = poller.id().context("poller pid")?;
    let scraper = Scraper::new(metrics_addr)?;
    wait_for_metrics(&scraper, &mut poller).await?;

    let mut csv = std::fs::File::create(config.out_dir.join("samples.csv"))?;
    writeln!(csv, "{}", Sample::CSV_HEADER)?;
    let sent = Arc::new(AtomicU64::new(0));
    let stream_sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + config.duration;
    let producer = {
        let (sqs, queue) = (sqs.clone(), queue.clone());
        tokio::spawn(produce(config.rate, until, sent.clone(), move |bodies| {
            let (sqs, queue) = (sqs.clone(), queue.clone());
            async move {
                let messages: Vec<(String, Option<String>)> =
                    bodies.into_iter().map(|b| (b, None)).collect();
                sqs.send(&queue, &messages).await;
            }
        }))
    };
    let stream_producer = with_stream.then(|| {
        let (kinesis, stream) = (kinesis.clone(), stream_name.clone());
        tokio::spawn(produce(
            config.stream_rate,
            until,
            stream_sent.clone(),
            move |bodies| put_records(kinesis.clone(), stream.clone(), bodies),
        ))
    });
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
            stream_sent: stream_sent.load(Ordering::Relaxed),
            ..Sample::default()
        };
        sample.set_metrics(&scraper.scrape().await?, with_stream)?;
        writeln!(csv, "{}", sample.csv_row())?;
        samples.push(sample);
    }
    producer.await.context("producer")?;
    if let Some(stream_producer) = stream_producer {
        stream_producer.await.context("stream producer")?;
    }
    let sent = sent.load(Ordering::Relaxed);
    let stream_sent = stream_sent.load(Ordering::Relaxed);

    // Drain: everything sent is processed (and from the queue deleted), or the time is up.
    let drain_deadline = Instant::now() + config.drain_timeout;
    let mut outcome = loop {
        let mut last = Sample::default();
        last.set_metrics(&scraper.scrape().await?, with_stream)?;
        let stats = sim.stats();
        let of = |function: &str| stats.functions.get(function).cloned().unwrap_or_default();
        let (sqs_fn, stream_fn) = (of(FUNCTION), of(STREAM_FUNCTION));
        let outcome = Outcome {
            sent,
            depth: sqs.depth(&queue).await,
            deleted: last.deleted,
            records_ok: sqs_fn.records_ok,
            records_failed: sqs_fn.records_failed,
            failures: last.failures,
            exit_code: None,
            stream_sent,
            stream_records_ok: stream_fn.records_ok,
            stream_records_failed: stream_fn.records_failed,
        };
        let drained = outcome.depth == 0
            && outcome.deleted >= sent
            && outcome.records_ok >= sent
            && outcome.stream_records_ok >= stream_sent;
        if drained || Instant::now() >= drain_deadline {
            break outcome;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    outcome.exit_code = stop_poller(&mut poller, &config.out_dir).await?;
    sim.shutdown().await?;

    let mut checks = flatness_checks(
        &samples,
        config.warmup,
        config.rate,
        config.stream_rate,
        &config.limits,
    );
    checks.extend(completion_checks(&outcome, with_stream));
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
    std::fs::write(
        config.out_dir.join("junit.xml"),
        report.junit(started.elapsed())?,
    )?;
    std::fs::write(config.out_dir.join("summary.txt"), report.summary())?;
    Ok(report)
}

/// Send `rate` bodies per second until `until`, in batches of up to 10 (one `send` per tick). Sends
/// overlap (up to `MAX_SENDS_IN_FLIGHT`), so a slow emulator round trip on a loaded machine does not
/// lower the rate; a tick with every send slot busy is skipped, not made up for: the rate stays
/// bounded, and the "load held" checks report the shortfall. `sent` counts completed sends.
async fn produce<F, Fut>(rate: u32, until: Instant, sent: Arc<AtomicU64>, send: F)
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    const MAX_SENDS_IN_FLIGHT: usize = 16;
    let batch = rate.min(10);
    let mut ticks =
        tokio::time::interval(Duration::from_secs_f64(f64::from(batch) / f64::from(rate)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Fixed-size bodies, so the work per message does not drift over the run.
    let padding = "x".repeat(200);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SENDS_IN_FLIGHT));
    let mut sends = tokio::task::JoinSet::new();
    let mut next = 0u64;
    while Instant::now() < until {
        ticks.tick().await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let bodies: Vec<String> = (next..next + u64::from(batch))
            .map(|n| format!(r#"{{"soak":{n:010},"pad":"{padding}"}}"#))
            .collect();
        next += u64::from(batch);
        let count = bodies.len() as u64;
        let (done, sent) = (send(bodies), sent.clone());
        sends.spawn(async move {
            done.await;
            sent.fetch_add(count, Ordering::Relaxed);
            drop(slot);
        });
    }
    while let Some(done) = sends.join_next().await {
        done.expect("a send task panicked");
    }
}

/// One `PutRecords` call; every record must be accepted (a partial failure would be a lost record
/// the soak blamed on the poller).
async fn put_records(kinesis: Kinesis, stream: String, bodies: Vec<String>) {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let entries = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            PutRecordsRequestEntry::builder()
                .partition_key(i.to_string())
                .data(Blob::new(body.into_bytes()))
                .build()
                .expect("partition key and data are set")
        })
        .collect::<Vec<_>>();
    let out = kinesis
        .client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(
        out.failed_record_count.unwrap_or(0),
        0,
        "PutRecords: {out:?}"
    );
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
    stream_arn: Option<&str>,
    lambda_url: &str,
    metrics_addr: std::net::SocketAddr,
) -> anyhow::Result<tokio::process::Child> {
    let mapping = config.out_dir.join("mapping.json");
    std::fs::write(&mapping, config.mapping(queue))?;
    let mut command = tokio::process::Command::new(&config.poller_bin);
    command.args(["run", "--mapping"]).arg(&mapping);
    if let Some(arn) = stream_arn {
        let stream_mapping = config.out_dir.join("stream-mapping.json");
        std::fs::write(&stream_mapping, config.stream_mapping(arn))?;
        command.arg("--mapping").arg(&stream_mapping);
    }
    let log = std::fs::File::create(config.out_dir.join("poller.log"))?;
    command
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
                    ..Sample::default()
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
        let checks = flatness_checks(&samples, WARMUP, 100, 0, &Limits::default());
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
        let checks = flatness_checks(&leak, WARMUP, 100, 0, &Limits::default());
        assert!(!check(&checks, "memory flat").passed);

        // One allocator step of 8 MiB in the middle third: the thirds' medians are equal.
        let step = run_of(35, |i| (if i == 17 { 38_000 } else { 30_000 }, 100.0));
        assert!(
            check(
                &flatness_checks(&step, WARMUP, 100, 0, &Limits::default()),
                "memory flat"
            )
            .passed
        );

        // A large baseline: 5% of 100 MiB allows 5 MiB growth, more than the floor.
        let big = run_of(35, |i| (100 * 1024 + if i > 23 { 4_608 } else { 0 }, 100.0));
        assert!(
            check(
                &flatness_checks(&big, WARMUP, 100, 0, &Limits::default()),
                "memory flat"
            )
            .passed
        );
    }

    #[test]
    fn creeping_message_age_fails_and_outliers_do_not() {
        // +30 ms per second: 385 → 985 ms between the thirds' medians.
        let creep = run_of(35, |i| (30_000, 100.0 + i as f64 * 30.0));
        let checks = flatness_checks(&creep, WARMUP, 100, 0, &Limits::default());
        let age = check(&checks, "message age flat");
        assert!(!age.passed, "{age:?}");

        // Two 2 s outliers in the last third: the median ignores them.
        let spikes = run_of(35, |i| {
            (30_000, if i > 25 && i % 4 == 0 { 2_000.0 } else { 100.0 })
        });
        assert!(
            check(
                &flatness_checks(&spikes, WARMUP, 100, 0, &Limits::default()),
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
        let checks = flatness_checks(&samples, WARMUP, 100, 0, &Limits::default());
        let duration = check(&checks, "invoke duration flat");
        assert!(!duration.passed, "{duration:?}");
        assert!(duration.observed.starts_with("6.0 → 30.0"), "{duration:?}");
    }

    #[test]
    fn backlog_and_load_shortfall_fail() {
        let mut samples = run_of(35, |_| (30_000, 100.0));
        samples[30].queue_depth = 501;
        let checks = flatness_checks(&samples, WARMUP, 100, 0, &Limits::default());
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
        let load = flatness_checks(&slow, WARMUP, 100, 0, &Limits::default());
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
                &flatness_checks(&samples, WARMUP, 100, 0, &Limits::default()),
                "memory flat"
            )
            .passed
        );

        let short = run_of(10, |_| (30_000, 100.0));
        let checks = flatness_checks(&short, WARMUP, 100, 0, &Limits::default());
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
            stream_sent: 500,
            stream_records_ok: 500,
            stream_records_failed: 0,
        };
        let checks = completion_checks(&ok, true);
        assert!(checks.iter().all(|c| c.passed), "{checks:?}");
        assert!(
            check(&checks, "no message lost")
                .observed
                .contains("(2 duplicates)")
        );

        let lost = completion_checks(
            &Outcome {
                records_ok: 999,
                ..ok.clone()
            },
            true,
        );
        assert!(!check(&lost, "no message lost").passed);
        let left = completion_checks(
            &Outcome {
                depth: 1,
                ..ok.clone()
            },
            true,
        );
        assert!(!check(&left, "no message lost").passed);
        let failed = completion_checks(
            &Outcome {
                records_failed: 1,
                ..ok.clone()
            },
            true,
        );
        assert!(!check(&failed, "no failures").passed);
        let killed = completion_checks(
            &Outcome {
                exit_code: None,
                ..ok.clone()
            },
            true,
        );
        assert!(!check(&killed, "clean exit").passed);
        let error = completion_checks(
            &Outcome {
                exit_code: Some(2),
                ..ok
            },
            true,
        );
        assert_eq!(
            check(&error, "clean exit").observed,
            "exit code 2 after SIGTERM"
        );
    }

    /// `run_of` with a stream mapping: 50 records/s put, the shard `age(i)` ms behind.
    fn stream_run(n: usize, age: impl Fn(usize) -> Option<f64>) -> Vec<Sample> {
        run_of(n, |_| (30_000, 100.0))
            .into_iter()
            .enumerate()
            .map(|(i, s)| Sample {
                stream_sent: i as u64 * 50,
                stream_invoked: i as u64 * 50,
                iterator_age_ms: age(i),
                ..s
            })
            .collect()
    }

    #[test]
    fn stream_checks_cover_lag_its_trend_and_the_load() {
        let limits = Limits::default();
        let flat = flatness_checks(
            &stream_run(35, |i| Some(900.0 + (i % 3) as f64 * 100.0)),
            WARMUP,
            100,
            50,
            &limits,
        );
        assert_eq!(flat.len(), 8);
        for c in &flat {
            assert!(c.passed, "{c:?}");
        }
        // Without a stream mapping there are no stream checks.
        assert_eq!(
            flatness_checks(&stream_run(35, |_| None), WARMUP, 100, 0, &limits).len(),
            5
        );

        // A shard falling 6 s behind once: more than 5 s of traffic.
        let behind = stream_run(35, |i| Some(if i == 30 { 6_000.0 } else { 900.0 }));
        let checks = flatness_checks(&behind, WARMUP, 100, 50, &limits);
        assert!(!check(&checks, "stream keeps up").passed);
        assert!(
            check(&checks, "stream lag flat").passed,
            "one outlier is not a trend"
        );

        // +100 ms per second: the lag creeps up.
        let creep = stream_run(35, |i| Some(200.0 + i as f64 * 100.0));
        let checks = flatness_checks(&creep, WARMUP, 100, 50, &limits);
        assert!(!check(&checks, "stream lag flat").passed);

        // No batch ever finished: no iterator age, which fails instead of passing vacuously.
        let silent = flatness_checks(&stream_run(35, |_| None), WARMUP, 100, 50, &limits);
        assert!(!check(&silent, "stream keeps up").passed);
        assert!(!check(&silent, "stream lag flat").passed);

        // 50 records/s put against a target of 100.
        let short = flatness_checks(&stream_run(35, |_| Some(900.0)), WARMUP, 100, 100, &limits);
        let load = check(&short, "stream load held");
        assert!(!load.passed);
        assert!(load.observed.starts_with("put 50.0/s"), "{load:?}");
    }

    #[test]
    fn a_lost_stream_record_or_a_failed_one_fails() {
        let ok = Outcome {
            sent: 10,
            deleted: 10,
            records_ok: 10,
            exit_code: Some(0),
            stream_sent: 500,
            stream_records_ok: 500,
            ..Outcome::default()
        };
        assert!(completion_checks(&ok, true).iter().all(|c| c.passed));
        let lost = completion_checks(
            &Outcome {
                stream_records_ok: 499,
                ..ok.clone()
            },
            true,
        );
        let record = check(&lost, "no record lost");
        assert!(!record.passed);
        assert_eq!(record.observed, "put 500, processed 499 (0 duplicates)");
        let failed = completion_checks(
            &Outcome {
                stream_records_failed: 1,
                ..ok.clone()
            },
            true,
        );
        assert!(!check(&failed, "no failures").passed);
        // Without a stream mapping its records are not checked.
        assert!(
            completion_checks(&ok, false)
                .iter()
                .all(|c| c.name != "no record lost")
        );
    }

    #[test]
    fn junit_has_a_test_case_per_check_and_a_failure_per_failed_one() {
        let report = Report {
            samples: Vec::new(),
            checks: vec![
                Check {
                    name: "memory flat",
                    passed: true,
                    observed: "+0.1 MiB".into(),
                    limit: "≤ +2.0 MiB".into(),
                },
                Check {
                    name: "stream keeps up",
                    passed: false,
                    observed: "iterator age ≤ 6000 ms".into(),
                    limit: "≤ 5000 ms".into(),
                },
            ],
            outcome: Outcome::default(),
            out_dir: PathBuf::new(),
        };
        let xml = report.junit(Duration::from_secs(90)).expect("serialises");
        assert!(
            xml.contains(r#"<testsuite name="soak" tests="2" skipped="0" errors="0" failures="1""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase name="memory flat" classname="soak""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<failure message="iterator age ≤ 6000 ms (limit ≤ 5000 ms)"/>"#),
            "{xml}"
        );
        assert_eq!(xml.matches("<failure").count(), 1);
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
            sample.set_metrics(&scrape, false).is_err(),
            "a scrape without every series is an error"
        );
        // Series of one mapping, by its function label.
        assert_eq!(
            scrape
                .get_for("poller_deleted_events_total", "f")
                .expect("present"),
            7.0
        );
        assert_eq!(
            scrape
                .get_for("poller_deleted_events_total", "a b")
                .expect("present"),
            3.0
        );
        assert!(scrape.get_for("poller_deleted_events_total", "g").is_err());
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
