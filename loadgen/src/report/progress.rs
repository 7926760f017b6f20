//! The progress bar shown while a run goes: elapsed time against the planned length (or requests
//! against `max_requests`), with the last interval's throughput and p99 and the errors so far.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::model::{Interval, Outcome, UNIT_PER_MS};
use crate::run::IntervalSink;

#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    /// Counting requests (`max_requests` without a planned length) instead of seconds.
    by_requests: bool,
    completed: u64,
    errors: u64,
}

/// Whether to draw: only for a person watching (stderr is a terminal) who did not opt out.
/// Otherwise the bar would fill CI logs and pipes with control sequences.
pub(crate) fn visible(stderr_is_terminal: bool, disabled: bool) -> bool {
    stderr_is_terminal && !disabled
}

impl Progress {
    /// `planned`: the run's length; `requests`: the request limit of a run that only it bounds,
    /// shown instead of the time.
    pub fn new(planned: Duration, requests: Option<u64>, disabled: bool) -> Progress {
        let by_requests = requests.is_some();
        let length = requests.unwrap_or_else(|| planned.as_secs().max(1));
        let bar = if visible(std::io::stderr().is_terminal(), disabled) {
            let unit = if by_requests { "requests" } else { "s" };
            let bar = ProgressBar::new(length);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner}} {{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}}"
                ))
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress {
            bar,
            by_requests,
            completed: 0,
            errors: 0,
        }
    }

    #[cfg(test)]
    fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Removes the bar, so the summary starts on a clean line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl IntervalSink for Progress {
    fn interval(&mut self, interval: &Interval) {
        let requests = interval.latency.total();
        self.completed += requests;
        self.errors += requests - interval.latency.count(Outcome::Success);
        let position = if self.by_requests {
            self.completed
        } else {
            (interval.start + interval.length).as_secs()
        };
        self.bar.set_position(position);
        let secs = interval.length.as_secs_f64();
        let rps = if secs > 0.0 {
            requests as f64 / secs
        } else {
            0.0
        };
        let all = interval.latency.all();
        let p99 = all.value_at_quantile(0.99) as f64 / UNIT_PER_MS;
        self.bar.set_message(format!(
            "{rps:.0}/s · p99 {p99:.1} ms · {} done · {} not successful",
            self.completed, self.errors
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_only_on_a_terminal_when_not_disabled() {
        assert!(visible(true, false));
        assert!(!visible(false, false));
        assert!(!visible(true, true));
    }

    #[test]
    fn hidden_when_stderr_is_not_a_terminal() {
        let progress = Progress::new(Duration::from_secs(5), None, false);
        assert_eq!(progress.is_hidden(), !std::io::stderr().is_terminal());
        assert!(Progress::new(Duration::from_secs(5), None, true).is_hidden());
    }
}
