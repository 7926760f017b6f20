//! The engine: it takes a [`Plan`](crate::plan::Plan) and a [`Target`], sends the load, and hands intervals to
//! [`IntervalSink`]s and the finished [`Run`] to its caller. It knows nothing of the command line
//! or of the report formats.
//!
//! Layout: pure logic in `schedule` (arrival schedules, stage interpolation), `outcome`
//! (classification, REPORT lines), `stats` (histograms) and `mix` (request weights); I/O in
//! `engine` (the one send loop) and in this module (targets). The value types are shared with
//! the other layers through [`crate::model`]. Decisions are written down in docs/loadgen.md.

mod client;
pub mod destination;
mod engine;
mod mix;
pub(crate) mod outcome;
pub(crate) mod schedule;
pub(crate) mod stats;


pub use client::{Client, target_for};
pub use engine::{IntervalSink, Run, execute};
pub use mix::Mix;
pub use outcome::{Classified, Outcome, ReportLine, classify};
pub use schedule::{
    ArrivalTimes, ClosedSchedule, Next, OpenSchedule, Profile, Schedule, Shortfall, Stage,
};
pub use stats::{
    Details, FunctionUsage, Interval, IntervalRow, Measurements, OutcomeHistograms, Recorder,
    Sample, SendStats, UNIT_PER_MS, histogram,
};

use crate::plan::LoadPlan;
use crate::scenario::Model;

impl LoadPlan {
    /// The arrival schedule the engine follows.
    pub fn schedule(&self) -> Box<dyn Schedule> {
        match self.model {
            Model::Open => Box::new(OpenSchedule::new(&self.profile, self.max_in_flight)),
            Model::Closed => Box::new(ClosedSchedule::new(self.profile.clone())),
        }
    }
}

/// Both sinks of a run: progress bar and `.hlog`.
impl<A: IntervalSink, B: IntervalSink> IntervalSink for (A, B) {
    fn interval(&mut self, interval: &Interval) {
        self.0.interval(interval);
        self.1.interval(interval);
    }
}

impl<S: IntervalSink> IntervalSink for Option<S> {
    fn interval(&mut self, interval: &Interval) {
        if let Some(sink) = self {
            sink.interval(interval);
        }
    }
}
