//! Time behaviour of a simulated function: latency distributions and periodic stalls.
//!
//! Pure logic: sampling takes the RNG as an argument and the stall takes the elapsed time, so both are
//! tested without clocks or sockets.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A latency distribution, written as a string in config files and flags.
///
/// | form | meaning |
/// |---|---|
/// | `20ms` or `fixed:20ms` | always 20 ms |
/// | `uniform:5ms..50ms` | uniform between the bounds (inclusive) |
/// | `normal:20ms,5ms` | normal with mean and standard deviation, negative samples clipped to 0 |
/// | `lognormal:20ms,5ms` | log-normal whose *own* mean and standard deviation are the given values |
///
/// The log-normal takes the mean and deviation of the latencies themselves (not of the underlying
/// normal) because that is what people measure and write down.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Latency {
    Fixed(Duration),
    Uniform { min: Duration, max: Duration },
    Normal { mean: Duration, stddev: Duration },
    LogNormal { mean: Duration, stddev: Duration },
}

impl Latency {
    /// The zero latency, the default.
    pub const ZERO: Latency = Latency::Fixed(Duration::ZERO);

    /// Draws one latency.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => {
                Duration::from_nanos(rng.random_range(nanos(min)..=nanos(max)))
            }
            Latency::Normal { mean, stddev } => {
                let x = mean.as_secs_f64() + stddev.as_secs_f64() * standard_normal(rng);
                seconds(x.max(0.0))
            }
            Latency::LogNormal { mean, stddev } => {
                let (m, s) = (mean.as_secs_f64(), stddev.as_secs_f64());
                // Parameters of the underlying normal that give the requested mean and deviation.
                let sigma2 = (1.0 + (s * s) / (m * m)).ln();
                let mu = m.ln() - sigma2 / 2.0;
                seconds((mu + sigma2.sqrt() * standard_normal(rng)).exp())
            }
        }
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency::ZERO
    }
}

/// Seconds to a duration, saturating: a far tail draw must not panic.
fn seconds(x: f64) -> Duration {
    Duration::try_from_secs_f64(x).unwrap_or(Duration::MAX)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One standard normal sample (Box–Muller). Written out to avoid a dependency for five lines.
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // `random` is in [0, 1); 1 - u is in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl FromStr for Latency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let Some((kind, args)) = s.split_once(':') else {
            return Ok(Latency::Fixed(parse_duration(s)?));
        };
        let pair = |sep: &str| -> Result<(Duration, Duration), String> {
            let (a, b) = args
                .split_once(sep)
                .ok_or_else(|| format!("`{s}`: expected two durations separated by `{sep}`"))?;
            Ok((parse_duration(a)?, parse_duration(b)?))
        };
        match kind {
            "fixed" => Ok(Latency::Fixed(parse_duration(args)?)),
            "uniform" => {
                let (min, max) = pair("..")?;
                if min > max {
                    return Err(format!("`{s}`: the minimum is larger than the maximum"));
                }
                Ok(Latency::Uniform { min, max })
            }
            "normal" => {
                let (mean, stddev) = pair(",")?;
                Ok(Latency::Normal { mean, stddev })
            }
            "lognormal" => {
                let (mean, stddev) = pair(",")?;
                if mean.is_zero() {
                    return Err(format!("`{s}`: a log-normal needs a mean above zero"));
                }
                Ok(Latency::LogNormal { mean, stddev })
            }
            other => Err(format!(
                "`{s}`: unknown distribution `{other}` (expected fixed, uniform, normal or lognormal)"
            )),
        }
    }
}

impl TryFrom<String> for Latency {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Latency> for String {
    fn from(l: Latency) -> String {
        l.to_string()
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = humantime::format_duration;
        match *self {
            Latency::Fixed(x) => write!(f, "fixed:{}", d(x)),
            Latency::Uniform { min, max } => write!(f, "uniform:{}..{}", d(min), d(max)),
            Latency::Normal { mean, stddev } => write!(f, "normal:{},{}", d(mean), d(stddev)),
            Latency::LogNormal { mean, stddev } => write!(f, "lognormal:{},{}", d(mean), d(stddev)),
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("`{}`: {e}", s.trim()))
}

/// A periodic stall: in every period of length `every`, the last `duration` is a stall window, and
/// a request that arrives inside it waits until the window ends before it runs.
///
/// Placing the window at the end of the period means a freshly started simulator first runs
/// normally, and the first stall starts at `every - duration`. This models a function whose
/// downstream freezes (GC pause, failover), which a load generator must not hide by slowing its own
/// send rate (coordinated omission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stall {
    /// How long each stall lasts.
    #[serde(with = "duration_str")]
    pub duration: Duration,
    /// The period: one stall per `every`.
    #[serde(with = "duration_str")]
    pub every: Duration,
}

impl Stall {
    /// How long a request arriving `since_start` after the simulator started must wait.
    pub fn wait(&self, since_start: Duration) -> Duration {
        let every = nanos(self.every);
        if every == 0 {
            return Duration::ZERO;
        }
        let phase = nanos(since_start) % every;
        let stall_start = every.saturating_sub(nanos(self.duration));
        if phase >= stall_start {
            Duration::from_nanos(every - phase)
        } else {
            Duration::ZERO
        }
    }

    /// Checks the stall fits in its period.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.every.is_zero() {
            return Err("every must be above zero".to_owned());
        }
        if self.duration >= self.every {
            return Err("duration must be shorter than every".to_owned());
        }
        Ok(())
    }
}

/// The flag form `DURATION/EVERY`, e.g. `1s/10s`.
impl FromStr for Stall {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (duration, every) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected DURATION/EVERY, e.g. 1s/10s"))?;
        let stall = Stall {
            duration: parse_duration(duration)?,
            every: parse_duration(every)?,
        };
        stall.validate()?;
        Ok(stall)
    }
}

/// Serde for durations as human-readable strings (`"250ms"`, `"3s"`), so config files carry units.
pub(crate) mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// [`duration_str`] for optional durations.
pub(crate) mod option_duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration_str::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| super::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_every_form() {
        assert_eq!("20ms".parse::<Latency>().unwrap(), Latency::Fixed(ms(20)));
        assert_eq!(
            "fixed:1s".parse::<Latency>().unwrap(),
            Latency::Fixed(ms(1000))
        );
        assert_eq!(
            "uniform:5ms..50ms".parse::<Latency>().unwrap(),
            Latency::Uniform {
                min: ms(5),
                max: ms(50)
            }
        );
        assert_eq!(
            "normal: 20ms, 5ms".parse::<Latency>().unwrap(),
            Latency::Normal {
                mean: ms(20),
                stddev: ms(5)
            }
        );
        assert_eq!(
            "lognormal:20ms,5ms".parse::<Latency>().unwrap(),
            Latency::LogNormal {
                mean: ms(20),
                stddev: ms(5)
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "fixed:20ms",
            "uniform:5ms..1s 500ms",
            "normal:20ms,5ms",
            "lognormal:2s,1s",
        ] {
            let l: Latency = s.parse().unwrap();
            assert_eq!(l.to_string(), s);
            assert_eq!(l.to_string().parse::<Latency>().unwrap(), l);
        }
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        let err = |s: &str| s.parse::<Latency>().unwrap_err();
        assert!(
            err("gamma:1ms,2ms").contains("unknown distribution `gamma`"),
            "{}",
            err("gamma:1ms,2ms")
        );
        assert!(err("uniform:50ms..5ms").contains("minimum is larger"));
        assert!(err("uniform:5ms-50ms").contains("separated by `..`"));
        assert!(err("lognormal:0ms,1ms").contains("mean above zero"));
        assert!(err("fast").contains("`fast`"));
    }

    fn stats(latency: Latency, n: usize) -> (f64, f64, f64, f64) {
        let mut rng = StdRng::seed_from_u64(7);
        let xs: Vec<f64> = (0..n)
            .map(|_| latency.sample(&mut rng).as_secs_f64() * 1e3)
            .collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (mean, var.sqrt(), min, max)
    }

    #[test]
    fn uniform_stays_in_bounds_with_the_right_mean() {
        let (mean, sd, min, max) = stats("uniform:10ms..30ms".parse().unwrap(), 20_000);
        assert!(min >= 10.0 && max <= 30.0, "{min}..{max}");
        assert!((mean - 20.0).abs() < 0.2, "mean {mean}");
        // The deviation of U(a, b) is (b - a) / sqrt(12).
        assert!((sd - 20.0 / 12f64.sqrt()).abs() < 0.15, "sd {sd}");
    }

    #[test]
    fn normal_has_the_requested_moments() {
        let (mean, sd, min, _) = stats("normal:50ms,5ms".parse().unwrap(), 20_000);
        assert!((mean - 50.0).abs() < 0.2, "mean {mean}");
        assert!((sd - 5.0).abs() < 0.15, "sd {sd}");
        assert!(min >= 0.0);
    }

    #[test]
    fn normal_clips_at_zero() {
        let (_, _, min, _) = stats("normal:1ms,5ms".parse().unwrap(), 2_000);
        assert_eq!(min, 0.0);
    }

    #[test]
    fn lognormal_has_the_requested_moments_and_a_right_tail() {
        let (mean, sd, min, max) = stats("lognormal:20ms,5ms".parse().unwrap(), 50_000);
        assert!((mean - 20.0).abs() < 0.2, "mean {mean}");
        assert!((sd - 5.0).abs() < 0.25, "sd {sd}");
        assert!(min > 0.0);
        // Right-skewed: the maximum is further from the mean than the minimum.
        assert!(max - mean > mean - min, "min {min} max {max}");
    }

    #[test]
    fn extreme_parameters_saturate_instead_of_panicking() {
        let (_, _, _, max) = stats("lognormal:1ns,10000000h".parse().unwrap(), 100);
        assert!(max.is_finite());
    }

    #[test]
    fn same_seed_same_samples() {
        let l: Latency = "lognormal:20ms,5ms".parse().unwrap();
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..5).map(|_| l.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn stall_window_is_the_end_of_each_period() {
        let stall: Stall = "1s/10s".parse().unwrap();
        assert_eq!(stall.wait(ms(0)), Duration::ZERO);
        assert_eq!(stall.wait(ms(8_999)), Duration::ZERO);
        assert_eq!(stall.wait(ms(9_000)), ms(1_000));
        assert_eq!(stall.wait(ms(9_750)), ms(250));
        assert_eq!(stall.wait(ms(10_000)), Duration::ZERO);
        assert_eq!(stall.wait(ms(29_500)), ms(500));
    }

    #[test]
    fn stall_must_fit_its_period() {
        assert!(
            "10s/10s"
                .parse::<Stall>()
                .unwrap_err()
                .contains("duration must be shorter than every")
        );
        assert!("1s/0s".parse::<Stall>().unwrap_err().contains("above zero"));
        assert!(
            "1s".parse::<Stall>()
                .unwrap_err()
                .contains("DURATION/EVERY")
        );
    }
}
