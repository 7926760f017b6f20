//! `loadgen merge`: combines the `.hlog` files of runs on several machines into one report.
//!
//! Histograms add up exactly (V2 serialization keeps every count), so the merged percentiles are
//! those of all requests together, not an average of percentiles. Intervals are put on one time
//! grid starting at the earliest interval of any file: each file interval goes into the grid
//! interval its start falls in. Totals do not depend on the grid.
//!
//! Logs are streamed in time order (one interval per file at a time), so memory does not grow
//! with their length.

use std::iter::Peekable;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::Deserializer;

use crate::Error;
use crate::model::{Interval, IntervalRow, Measurements, Outcome, OutcomeHistograms};
use crate::report::{HlogWriter, LogReader, RawInterval};
use crate::run::IntervalSink;

/// The result of a merge.
#[derive(Debug)]
pub struct Merged {
    pub measurements: Measurements,
    /// Start of the earliest interval.
    pub started_at: SystemTime,
    /// What each input contributed, in the order of the inputs.
    pub inputs: Vec<InputTotals>,
}

/// One input's share of a merge: a worker's own count and rate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InputTotals {
    pub requests: u64,
    /// From the start of its first interval to the end of its last.
    pub span: Duration,
}

impl InputTotals {
    /// Requests per second over the input's own span (0 for an empty one).
    pub fn rate(&self) -> f64 {
        let secs = self.span.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }
}

/// The workers' rates added up: the aggregate rate while they all ran. It equals the merged
/// report's rate (all requests over the union of the spans) only when the workers ran over the
/// same span; workers started apart stretch the union, not the load they offered together.
pub fn sum_of_rates(inputs: &[InputTotals]) -> f64 {
    inputs.iter().map(InputTotals::rate).sum()
}

/// One input log being read.
struct Input<'a> {
    path: &'a Path,
    entries: Peekable<LogReader<'a>>,
    /// The log has per-outcome tags (a loadgen log): its untagged histograms repeat them and are
    /// skipped. A log without them (another tool's) has only untagged histograms, taken as
    /// successes.
    tagged: bool,
}

impl<'a> Input<'a> {
    fn new(path: &'a Path, text: &'a [u8]) -> Result<Input<'a>, Error> {
        let mut tagged = false;
        for entry in LogReader::new(text) {
            let entry = entry.map_err(|offset| parse_error(path, offset))?;
            if entry.tag.is_some_and(|t| t.parse::<Outcome>().is_ok()) {
                tagged = true;
                break;
            }
        }
        Ok(Input {
            path,
            entries: LogReader::new(text).peekable(),
            tagged,
        })
    }

    /// The outcome an interval counts for, or `None` to skip it.
    fn outcome(&self, entry: &RawInterval<'_>) -> Option<Outcome> {
        counts_as(self.tagged, entry)
    }

    /// Start of the next interval that counts, skipping the others.
    fn peek_start(&mut self) -> Result<Option<Duration>, Error> {
        loop {
            let entry = match self.entries.peek() {
                None => return Ok(None),
                Some(Err(offset)) => return Err(parse_error(self.path, *offset)),
                Some(Ok(entry)) => entry,
            };
            if counts_as(self.tagged, entry).is_some() {
                return Ok(Some(entry.start));
            }
            self.entries.next();
        }
    }
}

/// See [`Input::tagged`].
fn counts_as(tagged: bool, entry: &RawInterval<'_>) -> Option<Outcome> {
    match (tagged, entry.tag) {
        (true, Some(tag)) => tag.parse().ok(),
        (false, None) => Some(Outcome::Success),
        _ => None,
    }
}

fn parse_error(path: &Path, offset: usize) -> Error {
    Error::ReadLog {
        path: path.to_owned(),
        message: format!("not an interval log line at byte {offset}"),
    }
}

/// Merges `logs` (path and contents). `interval`: the grid; default the first interval's length.
/// `out`: where to write the merged `.hlog`.
pub fn merge(
    logs: &[(PathBuf, Vec<u8>)],
    interval: Option<Duration>,
    out: Option<&Path>,
) -> Result<Merged, Error> {
    let mut inputs = logs
        .iter()
        .map(|(path, text)| Input::new(path, text))
        .collect::<Result<Vec<_>, _>>()?;
    let mut deserializer = Deserializer::new();

    // The grid starts at the earliest interval; its step is the first interval's length.
    let mut first: Option<(Duration, Duration)> = None;
    for input in &mut inputs {
        if let Some(start) = input.peek_start()?
            && first.is_none_or(|(s, _)| start < s)
        {
            let Some(Ok(entry)) = input.entries.peek() else {
                unreachable!("peeked above")
            };
            first = Some((start, entry.length));
        }
    }
    let (origin, first_length) = first.ok_or_else(|| Error::ReadLog {
        path: logs.first().map(|(p, _)| p.clone()).unwrap_or_default(),
        message: "no interval histograms in the input".to_owned(),
    })?;
    let step = interval.unwrap_or(first_length);
    if step.is_zero() {
        return Err(Error::config("--interval", "must be above zero"));
    }

    let started_at = SystemTime::UNIX_EPOCH + origin;
    let mut writer = out
        .map(|path| {
            let names: Vec<String> = logs.iter().map(|(p, _)| p.display().to_string()).collect();
            HlogWriter::create(
                path,
                started_at,
                &format!("loadgen merge of {}", names.join(", ")),
            )
        })
        .transpose()?;
    let mut totals = OutcomeHistograms::default();
    let mut grid = Interval {
        start: Duration::ZERO,
        length: step,
        latency: OutcomeHistograms::default(),
        late: 0,
    };
    let mut current: Option<u64> = None;
    let mut rows = Vec::new();
    let mut end = origin;
    // Per input: requests, and the start of its first interval and end of its last.
    let mut own: Vec<(u64, Option<(Duration, Duration)>)> = vec![(0, None); inputs.len()];
    let mut flush = |grid: &mut Interval, rows: &mut Vec<IntervalRow>| {
        writer.interval(grid);
        rows.push(IntervalRow::new(
            grid.start,
            grid.length,
            &grid.latency,
            None,
        ));
        grid.latency.reset();
    };

    loop {
        // The input whose next interval starts first.
        let mut next: Option<(usize, Duration)> = None;
        for (i, input) in inputs.iter_mut().enumerate() {
            if let Some(start) = input.peek_start()?
                && next.is_none_or(|(_, s)| start < s)
            {
                next = Some((i, start));
            }
        }
        let Some((i, _)) = next else { break };
        let input = &mut inputs[i];
        let Some(Ok(entry)) = input.entries.next() else {
            unreachable!("peeked above")
        };
        let outcome = input.outcome(&entry).expect("peek_start skips the others");
        let histogram = entry
            .decode(&mut deserializer)
            .map_err(|message| Error::ReadLog {
                path: input.path.to_owned(),
                message,
            })?;

        // Intervals out of order (not written by loadgen) join the current grid interval.
        let cell = (entry.start.saturating_sub(origin).as_secs_f64() / step.as_secs_f64()) as u64;
        match current {
            Some(c) if cell > c => {
                flush(&mut grid, &mut rows);
                current = Some(cell);
            }
            None => current = Some(cell),
            Some(_) => {}
        }
        grid.start = step * u32::try_from(current.unwrap_or(0)).unwrap_or(u32::MAX);
        let add = |target: &mut OutcomeHistograms| {
            target
                .get_mut(outcome)
                .add(&histogram)
                .map_err(|e| Error::ReadLog {
                    path: input.path.to_owned(),
                    message: format!("histogram does not fit loadgen's range (1 µs to 1 h): {e:?}"),
                })
        };
        add(&mut grid.latency)?;
        add(&mut totals)?;
        let entry_end = entry.start + entry.length;
        end = end.max(entry_end);
        let (requests, span) = &mut own[i];
        *requests += histogram.len();
        *span = Some(span.map_or((entry.start, entry_end), |(first, last)| {
            (first.min(entry.start), last.max(entry_end))
        }));
    }
    if current.is_some() {
        flush(&mut grid, &mut rows);
    }
    if let Some(writer) = writer {
        writer.finish()?;
    }
    Ok(Merged {
        measurements: Measurements {
            latency: totals,
            service_time: None,
            send: None,
            cold_starts: None,
            function: None,
            details: Default::default(),
            elapsed: end - origin,
            intervals: rows,
        },
        started_at,
        inputs: own
            .into_iter()
            .map(|(requests, span)| InputTotals {
                requests,
                span: span.map_or(Duration::ZERO, |(first, last)| last - first),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Recorder, Sample};

    /// Writes a log of `seconds` one-second intervals starting at `start_unix`; returns it with
    /// the run's totals.
    fn log(
        dir: &Path,
        name: &str,
        start_unix: u64,
        seconds: u64,
        scale: u64,
    ) -> (PathBuf, OutcomeHistograms) {
        let path = dir.join(name);
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(start_unix);
        let mut writer = HlogWriter::create(&path, started, name).unwrap();
        let mut recorder = Recorder::new(Duration::from_millis(10), false);
        for s in 0..seconds {
            for i in 1..=100 {
                recorder.record(&Sample::timed(Outcome::Success, i * scale + s));
            }
            recorder.record(&Sample::timed(Outcome::Throttle, scale));
            writer.interval(recorder.rotate(Duration::from_secs(s + 1)));
        }
        writer.finish().unwrap();
        (path, recorder.finish(Duration::from_secs(seconds)).latency)
    }

    fn read(paths: &[&Path]) -> Vec<(PathBuf, Vec<u8>)> {
        paths
            .iter()
            .map(|p| (p.to_path_buf(), std::fs::read(p).unwrap()))
            .collect()
    }

    #[test]
    fn totals_are_the_exact_sum_of_the_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let (a, totals_a) = log(dir.path(), "a.hlog", 1_700_000_000, 3, 1);
        let (b, totals_b) = log(dir.path(), "b.hlog", 1_700_000_001, 3, 7);
        let out = dir.path().join("merged.hlog");
        let merged = merge(&read(&[&a, &b]), None, Some(&out)).unwrap();
        let m = &merged.measurements;
        for outcome in Outcome::ALL {
            let mut expected = totals_a.get(outcome).clone();
            expected.add(totals_b.get(outcome)).unwrap();
            assert_eq!(m.latency.get(outcome), &expected, "{outcome}");
        }
        assert_eq!(m.latency.total(), 2 * 3 * 101);
        // a covers seconds 0-3 of the grid, b seconds 1-4.
        assert_eq!(m.elapsed, Duration::from_secs(4));
        let counts: Vec<u64> = m.intervals.iter().map(|r| r.requests).collect();
        assert_eq!(counts, [101, 202, 202, 101]);
        assert_eq!(
            merged.started_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        // Each input keeps its own count and span; their rates add up.
        let own = InputTotals {
            requests: 3 * 101,
            span: Duration::from_secs(3),
        };
        assert_eq!(merged.inputs, [own, own]);
        assert_eq!(sum_of_rates(&merged.inputs), 2.0 * 101.0);

        // The merged log merges again to the same totals.
        let again = merge(&read(&[&out]), None, None).unwrap();
        assert_eq!(again.measurements.latency, m.latency);
        assert_eq!(again.measurements.intervals, m.intervals);
    }

    #[test]
    fn a_coarser_grid_keeps_the_totals() {
        let dir = tempfile::tempdir().unwrap();
        let (a, totals) = log(dir.path(), "a.hlog", 1_700_000_000, 4, 3);
        let merged = merge(&read(&[&a]), Some(Duration::from_secs(2)), None).unwrap();
        assert_eq!(merged.measurements.latency, totals);
        let counts: Vec<u64> = merged
            .measurements
            .intervals
            .iter()
            .map(|r| r.requests)
            .collect();
        assert_eq!(counts, [202, 202]);
    }

    #[test]
    fn untagged_logs_from_other_tools_count_as_successes() {
        let text = b"#[BaseTime: 1600000000.000 (seconds since epoch)]\n".to_vec();
        let dir = tempfile::tempdir().unwrap();
        let (tagged, totals) = log(dir.path(), "a.hlog", 1_600_000_000, 1, 1);
        // Keep only the untagged line of a loadgen log: what a tool without tags writes.
        let content = std::fs::read_to_string(&tagged).unwrap();
        let untagged: String = content
            .lines()
            .filter(|l| !l.starts_with("Tag=") && !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let path = dir.path().join("plain.hlog");
        std::fs::write(&path, [text, untagged.into_bytes()].concat()).unwrap();
        let merged = merge(&read(&[&path]), None, None).unwrap();
        assert_eq!(
            merged.measurements.latency.count(Outcome::Success),
            totals.total()
        );
        assert_eq!(merged.measurements.latency.count(Outcome::Throttle), 0);
    }

    #[test]
    fn bad_input_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.hlog");
        std::fs::write(&path, "garbage\n").unwrap();
        let error = merge(&read(&[&path]), None, None).unwrap_err().to_string();
        assert!(
            error.contains("bad.hlog") && error.contains("byte 0"),
            "{error}"
        );
        let empty = dir.path().join("empty.hlog");
        std::fs::write(&empty, "#nothing\n").unwrap();
        let error = merge(&read(&[&empty]), None, None).unwrap_err().to_string();
        assert!(error.contains("no interval histograms"), "{error}");
    }
}
