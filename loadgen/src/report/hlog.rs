//! HdrHistogram interval logs (`.hlog`): written while a run goes, read back by `loadgen merge`.
//!
//! Each interval gets one untagged histogram of all outcomes (what HdrHistogram's standard tools
//! such as HistogramLogAnalyzer read by default) and one histogram per outcome that occurred,
//! tagged with the outcome name (`Tag=throttle`). Values are microseconds; histograms are V2 with
//! Deflate, which stores every count exactly, so merging logs loses nothing.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

use crate::Error;
use crate::model::{Interval, Outcome};
use crate::run::IntervalSink;

/// The Java `HistogramLogWriter` legend line, for tools that expect it.
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";

/// Streams intervals to a `.hlog` file. Write errors are kept and returned by
/// [`HlogWriter::finish`], so a full disk does not stop the run itself.
pub struct HlogWriter {
    path: PathBuf,
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    error: Option<String>,
}

impl HlogWriter {
    /// Creates the file and writes the header: `StartTime` and `BaseTime` are `started_at`, so
    /// interval time stamps are offsets from the start of the run.
    pub fn create(path: &Path, started_at: SystemTime, comment: &str) -> Result<HlogWriter, Error> {
        let write_error = |e: std::io::Error| Error::Write {
            path: path.to_owned(),
            error: e.to_string(),
        };
        let file = File::create(path).map_err(write_error)?;
        let mut writer = HlogWriter {
            path: path.to_owned(),
            out: BufWriter::new(file),
            serializer: V2DeflateSerializer::new(),
            error: None,
        };
        IntervalLogWriterBuilder::new()
            .add_comment(comment)
            .add_comment("Latency values are in microseconds (Interval_Max too).")
            .with_start_time(started_at)
            .with_base_time(started_at)
            .begin_log_with(&mut writer.out, &mut writer.serializer)
            .map_err(write_error)?;
        writer
            .out
            .write_all(LEGEND.as_bytes())
            .map_err(write_error)?;
        Ok(writer)
    }

    fn write(&mut self, interval: &Interval) -> Result<(), String> {
        // A builder without headers writes nothing itself; it only hands out the writer.
        let mut log = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)
            .map_err(|e| e.to_string())?;
        let (start, length) = (interval.start, interval.length);
        log.write_histogram(&interval.latency.all(), start, length, None)
            .map_err(|e| e.to_string())?;
        for outcome in Outcome::ALL {
            let histogram = interval.latency.get(outcome);
            if !histogram.is_empty() {
                log.write_histogram(histogram, start, length, Tag::new(outcome.as_str()))
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Flushes the file; reports the first write error of the run, if any.
    pub fn finish(mut self) -> Result<(), Error> {
        let flushed = self.out.flush().map_err(|e| e.to_string());
        match self.error.take().map_or(flushed, Err) {
            Ok(()) => Ok(()),
            Err(error) => Err(Error::Write {
                path: self.path,
                error,
            }),
        }
    }
}

impl IntervalSink for HlogWriter {
    fn interval(&mut self, interval: &Interval) {
        if self.error.is_none()
            && let Err(e) = self.write(interval)
        {
            self.error = Some(e);
        }
    }
}

/// One interval histogram from a log, not yet decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct RawInterval<'a> {
    pub tag: Option<&'a str>,
    /// Since the Unix epoch (or since whatever zero a log without `BaseTime`/`StartTime` uses).
    pub start: Duration,
    pub length: Duration,
    encoded: &'a str,
}

impl RawInterval<'_> {
    /// Decodes the histogram.
    pub fn decode(&self, deserializer: &mut Deserializer) -> Result<Histogram<u64>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.encoded)
            .map_err(|e| format!("bad base64: {e}"))?;
        deserializer
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("bad histogram: {e:?}"))
    }
}

/// Reads the intervals of a log in file order, with absolute start times.
///
/// Time stamps follow the Java `HistogramLogReader`: with `BaseTime` they are offsets from it;
/// with only `StartTime`, offsets if they are more than a year smaller than it, absolute
/// otherwise; with neither, absolute.
pub struct LogReader<'a> {
    entries: IntervalLogIterator<'a>,
    base_time: Option<Duration>,
    start_time: Option<Duration>,
}

impl<'a> LogReader<'a> {
    pub fn new(text: &'a [u8]) -> LogReader<'a> {
        LogReader {
            entries: IntervalLogIterator::new(text),
            base_time: None,
            start_time: None,
        }
    }

    fn absolute(&self, stamp: Duration) -> Duration {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        match (self.base_time, self.start_time) {
            (Some(base), _) => base + stamp,
            (None, Some(start)) if stamp + YEAR < start => start + stamp,
            _ => stamp,
        }
    }
}

impl<'a> Iterator for LogReader<'a> {
    /// An error is the byte offset where parsing failed.
    type Item = Result<RawInterval<'a>, usize>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.entries.next()? {
                Ok(LogEntry::BaseTime(t)) => self.base_time = Some(t),
                Ok(LogEntry::StartTime(t)) => self.start_time = Some(t),
                Ok(LogEntry::Interval(h)) => {
                    return Some(Ok(RawInterval {
                        tag: h.tag().map(|t| t.as_str()),
                        start: self.absolute(h.start_timestamp()),
                        length: h.duration(),
                        encoded: h.encoded_histogram(),
                    }));
                }
                Err(hdrhistogram::serialization::interval_log::LogIteratorError::ParseError {
                    offset,
                }) => return Some(Err(offset)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Recorder, Sample};

    #[test]
    fn written_intervals_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.hlog");
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut writer = HlogWriter::create(&path, started, "loadgen test").unwrap();
        let mut recorder = Recorder::new(Duration::from_millis(10), false);
        for ms in 1..=100 {
            recorder.record(&Sample::timed(Outcome::Success, ms));
        }
        recorder.record(&Sample::timed(Outcome::Throttle, 2));
        writer.interval(recorder.rotate(Duration::from_secs(1)));
        recorder.record(&Sample::timed(Outcome::Timeout, 3000));
        writer.interval(recorder.rotate(Duration::from_millis(1500)));
        writer.finish().unwrap();
        let totals = recorder.finish(Duration::from_millis(1500)).latency;

        let text = std::fs::read(&path).unwrap();
        let header = String::from_utf8_lossy(&text);
        assert!(header.starts_with("#loadgen test\n"), "{header}");
        assert!(header.contains("\"StartTimestamp\""));
        let entries: Vec<_> = LogReader::new(&text).map(Result::unwrap).collect();
        let tags: Vec<_> = entries.iter().map(|e| e.tag).collect();
        assert_eq!(
            tags,
            [
                None,
                Some("success"),
                Some("throttle"),
                None,
                Some("timeout")
            ]
        );
        let base = Duration::from_secs(1_700_000_000);
        assert_eq!(
            (entries[0].start, entries[0].length),
            (base, Duration::from_secs(1))
        );
        assert_eq!(entries[3].start, base + Duration::from_secs(1));
        assert_eq!(entries[3].length, Duration::from_millis(500));

        let mut deserializer = Deserializer::new();
        let decode = |i: usize, d: &mut Deserializer| entries[i].decode(d).unwrap();
        assert_eq!(&decode(1, &mut deserializer), totals.get(Outcome::Success));
        assert_eq!(&decode(2, &mut deserializer), totals.get(Outcome::Throttle));
        assert_eq!(&decode(4, &mut deserializer), totals.get(Outcome::Timeout));
        assert_eq!(decode(0, &mut deserializer).len(), 101);
    }

    #[test]
    fn time_stamps_follow_the_java_rules() {
        let line = "0.500,1.000,1.0,HISTFAAAABx4nJNpmSzMwMDAxAABzFCaEUoz2X+AsQEmFAJB\n";
        let read = |header: &str| {
            let text = format!("{header}{line}");
            LogReader::new(text.as_bytes())
                .next()
                .unwrap()
                .unwrap()
                .start
        };
        let half = Duration::from_millis(500);
        let t = Duration::from_secs(1_600_000_000);
        assert_eq!(read(""), half);
        assert_eq!(
            read("#[BaseTime: 1600000000.000 (seconds since epoch)]\n"),
            t + half
        );
        assert_eq!(
            read("#[StartTime: 1600000000.000 (seconds since epoch)]\n"),
            t + half
        );
    }

    #[test]
    fn parse_errors_give_the_offset() {
        let text = b"#comment\nnot a log line\n";
        assert_eq!(LogReader::new(text).next(), Some(Err(9)));
    }
}
