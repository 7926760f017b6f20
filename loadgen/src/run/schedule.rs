//! Arrival schedules: when the engine sends its next request.
//!
//! The engine has one loop; what differs between load models is only the answer to "what now?",
//! given the time since the start and the number of requests in flight. [`Schedule`] is that
//! answer, and the two models implement it:
//!
//! * [`OpenSchedule`] (arrival rate): send times follow the rate profile whatever the target does,
//!   so a slow target cannot slow the generator down. Latency is measured from the *scheduled* send
//!   time (coordinated-omission correction), and a request that has to wait for a free slot is
//!   sent late and counted as such.
//! * [`ClosedSchedule`] (concurrency): a new request goes out as soon as fewer than the profile's
//!   concurrency are in flight.
//!
//! A run ends at its duration whatever the generator managed: an open-model arrival still unsent
//! then is *dropped* (k6's `dropped_iterations`), not sent late after the end. [`Shortfall`]
//! counts those and the arrivals that had to wait for a free slot, the generator's own limits.
//!
//! Everything here is pure (time is an argument), so it is tested without clocks or sockets.

use std::time::{Duration, Instant};

/// What the engine does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Send one request now. `scheduled` is the time it is due: at or before now, or, in the open
    /// model, up to [`SEND_AHEAD`] after ([`latency`] says from when the request is timed).
    Send { scheduled: Duration },
    /// Nothing to send now. Ask again at `until`, or when a request completes (`None`: only then).
    Wait { until: Option<Duration> },
    /// The schedule is over: send nothing more.
    Done,
}

/// A load model, as the engine sees it.
pub trait Schedule: Send {
    /// What to do at `now` (time since the run started) with `in_flight` requests outstanding.
    /// After [`Next::Send`] the engine counts one more request in flight and asks again.
    fn next(&mut self, now: Duration, in_flight: usize) -> Next;

    /// Planned length of the run.
    fn duration(&self) -> Duration;

    /// What the schedule could not keep to so far.
    fn shortfall(&self) -> Shortfall {
        Shortfall::default()
    }
}

/// Where the generator fell short of its schedule: its own saturation, not the target's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shortfall {
    /// Arrivals due before the end of the run that were never sent.
    pub dropped: u64,
    /// Arrivals that found `max_in_flight` requests outstanding and waited for one to finish.
    pub waited_for_slot: u64,
}

/// One stage: the profile's value moves linearly to `target` over `duration` (k6's `stages`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: f64,
}

/// A piecewise-linear function of time: requests per second (open model) or concurrency (closed
/// model). It starts at `start` and each stage ramps linearly from the previous value to its target;
/// a stage whose target equals the previous value holds it constant.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    start: f64,
    stages: Vec<Stage>,
}

/// A stage in absolute seconds, the form the arithmetic below works on.
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: f64,
    len: f64,
    from: f64,
    to: f64,
}

impl Segment {
    fn end(&self) -> f64 {
        self.start + self.len
    }

    fn value_at(&self, t: f64) -> f64 {
        if self.len == 0.0 {
            return self.to;
        }
        self.from + (self.to - self.from) * ((t - self.start) / self.len)
    }

    /// The integral of the value over the segment (the number of arrivals for a rate).
    fn area(&self) -> f64 {
        (self.from + self.to) / 2.0 * self.len
    }
}

impl Profile {
    /// A profile starting at `start`. Values must be finite and non-negative (the scenario
    /// validation checks this and names the field).
    pub fn new(start: f64, stages: Vec<Stage>) -> Profile {
        debug_assert!(start.is_finite() && start >= 0.0);
        debug_assert!(
            stages
                .iter()
                .all(|s| s.target.is_finite() && s.target >= 0.0)
        );
        Profile { start, stages }
    }

    /// `value` for `duration`.
    pub fn constant(value: f64, duration: Duration) -> Profile {
        Profile::new(
            value,
            vec![Stage {
                duration,
                target: value,
            }],
        )
    }

    /// Total length of the stages.
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The value at `t`, or `None` at and after the end.
    pub fn value_at(&self, t: Duration) -> Option<f64> {
        let t = t.as_secs_f64();
        self.segments().find(|s| t < s.end()).map(|s| s.value_at(t))
    }

    /// Cuts the profile at `end` (a `--duration` shorter than the stages); a longer `end` changes
    /// nothing. The stage cut in two keeps its slope.
    pub fn truncate(&mut self, end: Duration) {
        let mut elapsed = Duration::ZERO;
        let mut from = self.start;
        let mut kept = Vec::new();
        for stage in &self.stages {
            if elapsed + stage.duration <= end {
                kept.push(*stage);
            } else {
                let part = end - elapsed;
                let fraction = part.as_secs_f64() / stage.duration.as_secs_f64();
                kept.push(Stage {
                    duration: part,
                    target: from + (stage.target - from) * fraction,
                });
                break;
            }
            elapsed += stage.duration;
            from = stage.target;
        }
        kept.retain(|s| !s.duration.is_zero());
        self.stages = kept;
    }

    /// The first time at or after `from` when the value is at least `level`, if before the end.
    fn first_time_at_least(&self, level: f64, from: Duration) -> Option<Duration> {
        let from = from.as_secs_f64();
        for s in self.segments().filter(|s| s.end() > from) {
            let t0 = from.max(s.start);
            if s.value_at(t0) >= level {
                return Some(secs(t0));
            }
            if s.to >= level {
                // Rising segment that crosses `level`: solve the linear interpolation.
                let t = s.start + (level - s.from) / (s.to - s.from) * s.len;
                return Some(secs(t.clamp(t0, s.end())));
            }
        }
        None
    }

    fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        let mut start = 0.0;
        let mut from = self.start;
        self.stages.iter().map(move |stage| {
            let len = stage.duration.as_secs_f64();
            let segment = Segment {
                start,
                len,
                from,
                to: stage.target,
            };
            start += len;
            from = stage.target;
            segment
        })
    }
}

fn secs(t: f64) -> Duration {
    Duration::from_secs_f64(t.max(0.0))
}

/// Send times for a rate profile: the n-th request (from 0) is due when the integral of the rate
/// reaches n. A constant rate r gives n / r; a ramp spreads requests exactly as the rate rises.
///
/// Times are computed one at a time, so a long run keeps no list of them.
#[derive(Debug, Clone)]
pub struct ArrivalTimes {
    segments: Vec<Segment>,
    /// Index of the segment the next arrival is searched from.
    segment: usize,
    /// Arrivals due before `segments[segment]` starts (the integral up to there).
    before: f64,
    /// Index of the next arrival.
    index: u64,
}

impl ArrivalTimes {
    pub fn new(rate: &Profile) -> ArrivalTimes {
        ArrivalTimes {
            segments: rate.segments().collect(),
            segment: 0,
            before: 0.0,
            index: 0,
        }
    }
}

impl Iterator for ArrivalTimes {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // u64 -> f64 is exact up to 2^53 arrivals, far beyond any run.
        let n = self.index as f64;
        while let Some(s) = self.segments.get(self.segment) {
            let area = s.area();
            if n < self.before + area {
                // Solve from·x + a·x² = c for the offset x into the segment, with a = slope / 2.
                // The rationalised root 2c / (from + √(from² + 4ac)) holds for rising, falling and
                // flat segments alike (no division by a).
                let c = n - self.before;
                let a = (s.to - s.from) / (2.0 * s.len);
                let root = (s.from * s.from + 4.0 * a * c).max(0.0).sqrt();
                let x = if c == 0.0 {
                    0.0
                } else {
                    2.0 * c / (s.from + root)
                };
                self.index += 1;
                return Some(secs(s.start + x.min(s.len)));
            }
            self.before += area;
            self.segment += 1;
        }
        None
    }
}

/// How long before it is due the open model may send a request.
///
/// The engine waits on tokio's timer, which has 1 ms slots: a sleep ends at the first slot
/// boundary at or after its deadline, and the driver, parked for whole milliseconds, can notice
/// that boundary up to another millisecond later. Waking `SEND_AHEAD` before the next arrival and
/// sending everything due within `SEND_AHEAD` of the wake-up therefore sends no request late
/// (unless the runtime is busy), with one wake-up for all the arrivals of a millisecond or two
/// instead of one precise wake-up per request, which cost two thread wake-ups per send. A
/// request sent early is timed from when it went out ([`latency`]), so its latency stays what the
/// wire sees; only the arrival process is shifted, by less than `SEND_AHEAD`.
pub(crate) const SEND_AHEAD: Duration = Duration::from_millis(2);

/// The latency of a request due at `scheduled`, sent at `sent` and answered at `done` (times
/// since the run started). A request sent late is timed from when it was due: the delay was the
/// target's or the generator's doing, and a user arriving then would have waited for it
/// (coordinated-omission correction). One sent early (within [`SEND_AHEAD`]) is timed from when
/// it went out, since nothing waited before that.
pub(crate) fn latency(scheduled: Duration, sent: Duration, done: Duration) -> Duration {
    done.saturating_sub(scheduled.min(sent))
}

/// When a request went out and when its answer came back, as times since the run's `start`: the
/// socket's ([`aws_wire::Exchange`]: the request's first write, the answer's last read) when an
/// answer was read, else the request task's own `(sent, done)` (a timeout or a transport error,
/// where nothing came back). The socket's times leave out the task hand-offs between the
/// request's task and hyper's connection task on both sides, which on a busy generator core
/// are its own queueing, not the target's latency.
pub(crate) fn exchange_times(
    start: Instant,
    task: (Duration, Duration),
    wire: Option<aws_wire::Exchange>,
) -> (Duration, Duration) {
    wire.map_or(task, |wire| {
        (
            wire.sent.saturating_duration_since(start),
            wire.received.saturating_duration_since(start),
        )
    })
}

/// The open model: requests are due at [`ArrivalTimes`], at most `max_in_flight` at once, and
/// go out at most [`SEND_AHEAD`] early. A request that finds no free slot waits for one and goes
/// out late, still timed from when it was due. At the end of the run, whatever is still unsent is
/// dropped.
#[derive(Debug, Clone)]
pub struct OpenSchedule {
    times: ArrivalTimes,
    pending: Option<Duration>,
    /// The pending arrival has already been counted as waiting for a slot.
    pending_waited: bool,
    max_in_flight: usize,
    duration: Duration,
    shortfall: Shortfall,
}

impl OpenSchedule {
    pub fn new(rate: &Profile, max_in_flight: usize) -> OpenSchedule {
        let mut times = ArrivalTimes::new(rate);
        OpenSchedule {
            pending: times.next(),
            pending_waited: false,
            times,
            max_in_flight,
            duration: rate.duration(),
            shortfall: Shortfall::default(),
        }
    }
}

impl Schedule for OpenSchedule {
    fn next(&mut self, now: Duration, in_flight: usize) -> Next {
        let Some(due) = self.pending else {
            return Next::Done;
        };
        if now >= self.duration {
            // Counting walks the remaining arrivals once: fast, and exact where a closed form
            // would have to round the integral of the rate.
            self.shortfall.dropped += 1 + self.times.by_ref().count() as u64;
            self.pending = None;
            return Next::Done;
        }
        if due > now + SEND_AHEAD {
            return Next::Wait {
                until: Some(due - SEND_AHEAD),
            };
        }
        if in_flight >= self.max_in_flight {
            if !self.pending_waited {
                self.pending_waited = true;
                self.shortfall.waited_for_slot += 1;
            }
            // Wake at the end at the latest, to drop what is left.
            return Next::Wait {
                until: Some(self.duration),
            };
        }
        self.pending = self.times.next();
        self.pending_waited = false;
        Next::Send { scheduled: due }
    }

    fn duration(&self) -> Duration {
        self.duration
    }

    fn shortfall(&self) -> Shortfall {
        self.shortfall
    }
}

/// The closed model: keeps the profile's concurrency (rounded down) in flight. A request is due
/// when a slot frees up, so its latency is its service time: a closed model cannot see the
/// requests a stalled target kept it from sending (use the open model for that).
#[derive(Debug, Clone)]
pub struct ClosedSchedule {
    concurrency: Profile,
}

impl ClosedSchedule {
    pub fn new(concurrency: Profile) -> ClosedSchedule {
        ClosedSchedule { concurrency }
    }
}

impl Schedule for ClosedSchedule {
    fn next(&mut self, now: Duration, in_flight: usize) -> Next {
        let Some(level) = self.concurrency.value_at(now) else {
            return Next::Done;
        };
        // Concurrency is a count: 2.7 workers are 2. (Profiles are validated to stay far below
        // usize::MAX, so the cast does not saturate.)
        if in_flight < level.floor() as usize {
            return Next::Send { scheduled: now };
        }
        // Wake up when the ramp allows one more, or at the end to finish; a completion also wakes
        // the engine. At least 1 ms ahead, so rounding never makes the engine spin.
        let wanted = (in_flight + 1) as f64;
        let until = self
            .concurrency
            .first_time_at_least(wanted, now)
            .unwrap_or(self.concurrency.duration())
            .max(now + Duration::from_millis(1));
        Next::Wait { until: Some(until) }
    }

    fn duration(&self) -> Duration {
        self.concurrency.duration()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn stage(secs: f64, target: f64) -> Stage {
        Stage {
            duration: s(secs),
            target,
        }
    }

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(1)
    }

    #[test]
    fn profile_interpolates_between_stage_targets() {
        let p = Profile::new(
            0.0,
            vec![stage(10.0, 100.0), stage(5.0, 100.0), stage(5.0, 0.0)],
        );
        assert_eq!(p.duration(), s(20.0));
        assert_eq!(p.value_at(s(0.0)), Some(0.0));
        assert_eq!(p.value_at(s(2.5)), Some(25.0));
        assert_eq!(p.value_at(s(12.0)), Some(100.0));
        assert_eq!(p.value_at(s(17.5)), Some(50.0));
        assert_eq!(p.value_at(s(20.0)), None);
    }

    #[test]
    fn truncate_cuts_inside_a_stage_and_keeps_its_slope() {
        let mut p = Profile::new(0.0, vec![stage(10.0, 100.0), stage(10.0, 100.0)]);
        p.truncate(s(5.0));
        assert_eq!(p, Profile::new(0.0, vec![stage(5.0, 50.0)]));
        let mut q = Profile::constant(10.0, s(3.0));
        q.truncate(s(60.0));
        assert_eq!(q, Profile::constant(10.0, s(3.0)));
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let times: Vec<_> = ArrivalTimes::new(&Profile::constant(4.0, s(1.0))).collect();
        let expected = [0.0, 0.25, 0.5, 0.75].map(s);
        assert_eq!(times.len(), 4);
        assert!(
            times.iter().zip(expected).all(|(a, b)| close(*a, b)),
            "{times:?}"
        );
    }

    #[test]
    fn linear_ramp_follows_the_square_root() {
        // Rate 0 -> 100/s over 10 s: the integral is 5 t², so arrival n is at sqrt(n / 5).
        let times: Vec<_> =
            ArrivalTimes::new(&Profile::new(0.0, vec![stage(10.0, 100.0)])).collect();
        assert_eq!(times.len(), 500);
        for (n, t) in times.iter().enumerate() {
            assert!(
                close(*t, s((n as f64 / 5.0).sqrt())),
                "arrival {n} at {t:?}"
            );
        }
    }

    #[test]
    fn zero_rate_stage_sends_nothing() {
        let p = Profile::new(0.0, vec![stage(5.0, 0.0), stage(1.0, 2.0)]);
        let times: Vec<_> = ArrivalTimes::new(&p).collect();
        // Ramp 0 -> 2/s over the last second: one arrival (the integral is 1), at its start.
        assert_eq!(times, vec![s(5.0)]);
    }

    #[test]
    fn open_schedule_waits_for_the_due_time_then_for_a_slot() {
        let mut open = OpenSchedule::new(&Profile::constant(10.0, s(1.0)), 2);
        assert_eq!(open.next(s(0.0), 0), Next::Send { scheduled: s(0.0) });
        assert_eq!(
            open.next(s(0.05), 1),
            Next::Wait {
                until: Some(s(0.1) - SEND_AHEAD)
            }
        );
        // Due, but both slots are taken: wait for a completion (or the end, to drop the rest).
        assert_eq!(
            open.next(s(0.1), 2),
            Next::Wait {
                until: Some(s(1.0))
            }
        );
        assert_eq!(
            open.next(s(0.2), 2),
            Next::Wait {
                until: Some(s(1.0))
            }
        );
        assert_eq!(open.shortfall().waited_for_slot, 1);
        // Late send: still timed from the scheduled 0.1 s, and the next ones follow on time.
        let Next::Send { scheduled } = open.next(s(0.35), 1) else {
            panic!()
        };
        assert!(close(scheduled, s(0.1)));
        let Next::Send { scheduled } = open.next(s(0.35), 1) else {
            panic!()
        };
        assert!(close(scheduled, s(0.2)));
    }

    #[test]
    fn open_schedule_sends_what_is_due_within_the_send_ahead_window_at_once() {
        // 5,000/s: one arrival every 200 µs. Woken at 1 ms, the engine sends the arrivals due up
        // to 3 ms (16 of them) in one go, then sleeps until 2 ms before the next one.
        let mut open = OpenSchedule::new(&Profile::constant(5000.0, s(1.0)), usize::MAX);
        let now = s(0.001);
        let mut batch = Vec::new();
        while let Next::Send { scheduled } = open.next(now, batch.len()) {
            batch.push(scheduled);
        }
        assert_eq!(batch.len(), 16);
        assert!(close(*batch.last().unwrap(), now + SEND_AHEAD));
        let Next::Wait { until: Some(until) } = open.next(now, batch.len()) else {
            panic!("expected a timed wait")
        };
        assert!(close(until + SEND_AHEAD, s(0.0032)), "{until:?}");
    }

    #[test]
    fn latency_counts_from_the_due_time_when_late_and_from_the_send_when_early() {
        let (due, done) = (s(1.0), s(1.020));
        // Late by 5 ms: the user who arrived at 1.0 s waited 20 ms.
        assert_eq!(latency(due, s(1.005), done), s(0.020));
        // On time.
        assert_eq!(latency(due, due, done), s(0.020));
        // Sent 1 ms early: the wire saw 21 ms, and so does the report.
        assert_eq!(latency(due, s(0.999), done), s(0.021));
    }

    #[test]
    fn an_answered_request_is_timed_at_the_socket() {
        let start = Instant::now();
        let task = (s(1.0), s(1.030));
        // The request's first byte went out 4 ms after its task began; the answer's last byte was
        // read 3 ms before the task saw it.
        let wire = aws_wire::Exchange {
            sent: start + s(1.004),
            received: start + s(1.027),
        };
        assert_eq!(
            exchange_times(start, task, Some(wire)),
            (s(1.004), s(1.027))
        );
        // No answer read (a timeout): the task's own times.
        assert_eq!(exchange_times(start, task, None), task);
    }

    #[test]
    fn open_schedule_ends_after_the_last_arrival() {
        let mut open = OpenSchedule::new(&Profile::constant(1.0, s(2.0)), 10);
        assert!(matches!(open.next(s(0.0), 0), Next::Send { .. }));
        assert!(matches!(open.next(s(1.0), 0), Next::Send { .. }));
        assert_eq!(open.next(s(1.5), 0), Next::Done);
    }

    #[test]
    fn arrivals_unsent_at_the_end_are_dropped() {
        // 100/s for 1 s, every slot taken from 0.5 s on: the 50 arrivals from 0.5 s to 1 s are
        // dropped at the end instead of being sent after it.
        let mut open = OpenSchedule::new(&Profile::constant(100.0, s(1.0)), 50);
        for n in 0..50 {
            assert!(matches!(open.next(s(0.5), n), Next::Send { .. }));
        }
        assert!(matches!(open.next(s(0.5), 50), Next::Wait { .. }));
        assert_eq!(open.next(s(1.0), 50), Next::Done);
        assert_eq!(
            open.shortfall(),
            Shortfall {
                dropped: 50,
                waited_for_slot: 1
            }
        );
        // Asked again, the count stays.
        assert_eq!(open.next(s(1.5), 0), Next::Done);
        assert_eq!(open.shortfall().dropped, 50);
    }

    #[test]
    fn a_generator_too_slow_for_the_rate_drops_the_rest_at_the_end() {
        // The engine only gets round to asking at 0.3 s and 1 s: what it sends in between goes
        // out late, the rest is dropped, and nothing is sent at or after the end.
        let mut open = OpenSchedule::new(&Profile::constant(1000.0, s(1.0)), usize::MAX);
        let mut sent = 0;
        while let Next::Send { scheduled } = open.next(s(0.3), 0) {
            assert!(scheduled <= s(0.3) + SEND_AHEAD);
            sent += 1;
        }
        assert_eq!(open.next(s(1.0), 0), Next::Done);
        assert_eq!(sent + open.shortfall().dropped, 1000);
        assert_eq!(open.shortfall().waited_for_slot, 0);
    }

    #[test]
    fn closed_schedule_fills_up_to_the_concurrency() {
        let mut closed = ClosedSchedule::new(Profile::constant(2.0, s(10.0)));
        assert_eq!(closed.next(s(1.0), 0), Next::Send { scheduled: s(1.0) });
        assert_eq!(closed.next(s(1.0), 1), Next::Send { scheduled: s(1.0) });
        // Full: wait for a completion (or the end of the run).
        assert_eq!(
            closed.next(s(1.0), 2),
            Next::Wait {
                until: Some(s(10.0))
            }
        );
        assert_eq!(closed.next(s(10.0), 0), Next::Done);
    }

    #[test]
    fn closed_schedule_wakes_when_the_ramp_allows_one_more() {
        // 0 -> 10 over 10 s: the third slot opens at 3 s.
        let mut closed = ClosedSchedule::new(Profile::new(0.0, vec![stage(10.0, 10.0)]));
        assert_eq!(
            closed.next(s(2.5), 2),
            Next::Wait {
                until: Some(s(3.0))
            }
        );
        assert_eq!(closed.next(s(3.0), 2), Next::Send { scheduled: s(3.0) });
        // Ramping down: over the limit, nothing is sent until the run ends.
        let mut down = ClosedSchedule::new(Profile::new(5.0, vec![stage(4.0, 1.0)]));
        assert_eq!(
            down.next(s(2.0), 4),
            Next::Wait {
                until: Some(s(4.0))
            }
        );
    }

    fn profiles() -> impl Strategy<Value = Profile> {
        (
            0.0..200.0f64,
            prop::collection::vec((1u64..3_000, 0.0..200.0f64), 1..5),
        )
            .prop_map(|(start, stages)| {
                let stages = stages
                    .into_iter()
                    .map(|(ms, target)| Stage {
                        duration: Duration::from_millis(ms),
                        target,
                    })
                    .collect();
                Profile::new(start, stages)
            })
    }

    /// The integral of the rate from 0 to `t`, by summing thin slices (independent of the closed form).
    fn integral(p: &Profile, t: Duration) -> f64 {
        let steps = 20_000;
        let dt = t.as_secs_f64() / steps as f64;
        (0..steps)
            .map(|i| p.value_at(s((i as f64 + 0.5) * dt)).unwrap_or(0.0) * dt)
            .sum()
    }

    proptest! {
        #[test]
        fn arrivals_are_ordered_and_inside_the_run(p in profiles()) {
            let times: Vec<_> = ArrivalTimes::new(&p).collect();
            prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));
            prop_assert!(times.iter().all(|t| *t < p.duration()));
        }

        #[test]
        fn arrivals_match_the_integral_of_the_rate(p in profiles(), fraction in 0.05..1.0f64) {
            // Up to any time t, about ∫₀ᵗ rate requests are due (arrival n is due when the
            // integral reaches n, so the count is the integral rounded up).
            let t = p.duration().mul_f64(fraction);
            let due = ArrivalTimes::new(&p).take_while(|a| *a < t).count() as f64;
            let expected = integral(&p, t);
            prop_assert!((due - expected).abs() <= 1.0 + expected * 1e-3,
                "{due} arrivals before {t:?}, integral {expected}");
        }

        /// Whenever the engine asks (any increasing sequence of wake-ups, any number in
        /// flight), the open model sends nothing more than `SEND_AHEAD` early, sends every
        /// arrival exactly once and in order, and never asks to be woken at or before now (which
        /// would spin the engine) or later than `SEND_AHEAD` before the next arrival.
        #[test]
        fn open_schedule_sends_each_arrival_once_never_too_early_and_never_spins(
            p in profiles(),
            steps in prop::collection::vec((1u64..5_000, 0usize..4), 1..400),
        ) {
            let expected: Vec<_> = ArrivalTimes::new(&p).collect();
            let mut open = OpenSchedule::new(&p, 2);
            let (mut now, mut sent) = (Duration::ZERO, Vec::new());
            for (step_us, in_flight) in steps {
                match open.next(now, in_flight) {
                    Next::Send { scheduled } => {
                        prop_assert!(in_flight < 2);
                        prop_assert!(scheduled <= now + SEND_AHEAD);
                        sent.push(scheduled);
                    }
                    Next::Wait { until: Some(until) } => {
                        prop_assert!(until > now);
                        if in_flight < 2 {
                            prop_assert!(close(until + SEND_AHEAD, expected[sent.len()]));
                        }
                    }
                    Next::Wait { until: None } => prop_assert!(false, "an open wait is timed"),
                    Next::Done => {}
                }
                now += Duration::from_micros(step_us);
            }
            let dropped = open.shortfall().dropped as usize;
            prop_assert_eq!(&sent[..], &expected[..sent.len()]);
            prop_assert!(sent.len() + dropped <= expected.len());
        }

        #[test]
        fn truncation_keeps_values_before_the_cut(p in profiles(), fraction in 0.01..1.0f64) {
            let end = p.duration().mul_f64(fraction);
            let mut cut = p.clone();
            cut.truncate(end);
            prop_assert!(cut.duration().abs_diff(end) < Duration::from_micros(1));
            for i in 0..50 {
                let t = end.mul_f64(i as f64 / 50.0);
                let (a, b) = (p.value_at(t).unwrap(), cut.value_at(t).unwrap());
                prop_assert!((a - b).abs() < 1e-6, "at {t:?}: {a} vs {b}");
            }
        }
    }
}
