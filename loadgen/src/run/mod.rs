//! The engine: it takes a [`Plan`](crate::plan::Plan) and a [`Target`], sends the load, and hands intervals to
//! [`IntervalSink`]s and the finished [`Run`] to its caller. It knows nothing of the command line
//! or of the report formats.
//!
//! Layout: pure logic in `schedule` (arrival schedules, stage interpolation), `outcome`
//! (classification, REPORT lines), `stats` (histograms) and `mix` (request weights); I/O in
//! `engine` (the one send loop) and in this module (targets). The value types are shared with
//! the other layers through [`crate::model`]. Decisions are written down in docs/loadgen.md.

mod engine;
mod mix;
pub(crate) mod outcome;
pub(crate) mod schedule;
pub(crate) mod stats;

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_lambda::config::ProvideCredentials;
use lambda_invoke::{HttpTarget, LambdaTarget, Target};

pub use engine::{IntervalSink, Run, execute};
pub use mix::Mix;
pub use outcome::{Classified, Outcome, ReportLine, classify};
pub use schedule::{ArrivalTimes, ClosedSchedule, Next, OpenSchedule, Profile, Schedule, Stage};
pub use stats::{
    Details, Interval, IntervalRow, Measurements, OutcomeHistograms, Recorder, Sample, SendStats,
    UNIT_PER_MS, histogram,
};

use crate::Error;
use crate::plan::{LoadPlan, TargetKind, TargetPlan};
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

/// Builds the invoke target `plan` names. A Lambda target loads the AWS configuration (region:
/// the plan's, else the environment's, else `us-east-1`) and resolves credentials once, so a run
/// without credentials fails here instead of counting every request as a transport error.
pub async fn target(plan: &TargetPlan) -> Result<Target, Error> {
    match &plan.kind {
        TargetKind::Http {
            url,
            method,
            headers,
        } => HttpTarget::new(url.clone(), None)
            .and_then(|t| t.with_request(method, headers))
            .map(Target::Http)
            .map_err(|e| Error::Target(e.to_string())),
        TargetKind::Lambda {
            function,
            endpoint_url,
            region,
        } => {
            let region = RegionProviderChain::first_try(region.clone().map(Region::new))
                .or_default_provider()
                .or_else(Region::from_static("us-east-1"));
            let sdk = aws_config::defaults(BehaviorVersion::latest())
                .region(region)
                .load()
                .await;
            let credentials = sdk
                .credentials_provider()
                .ok_or_else(|| Error::Target("no AWS credentials provider".to_owned()))?;
            credentials
                .provide_credentials()
                .await
                .map_err(|e| Error::Target(format!("no AWS credentials: {e}")))?;
            Ok(Target::Lambda(LambdaTarget::new(
                &sdk,
                function.clone(),
                endpoint_url.as_deref(),
                None,
            )))
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
