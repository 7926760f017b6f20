//! Rates, durations and ramps as people write them, on the command line and in scenario files
//! alike, in the forms oha, hey, vegeta and k6 users already type.
//!
//! * Duration: a bare number of seconds (`30`, `0.5`) or a humantime duration (`30s`, `5m`,
//!   `1h 30m`, `250ms`).
//! * Rate (requests per second): a bare number (`50`), or `COUNT/PERIOD` as in vegeta: `50/s`,
//!   `3000/m`, `10/5s`. A period without a number means one of it.
//! * Stages (k6's ramps): `DURATION:TARGET,…`, e.g. `30s:100,1m:500,30s:0`.
//!
//! Every error quotes the token that is wrong.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::StageConfig;

/// Parses a duration: a bare number of seconds or a humantime duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("`{text}`: a duration must be a non-negative number of seconds"));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write `30` (seconds), `30s`, `5m` or `250ms`")
    })
}

/// Parses a rate into requests per second: `50`, `50/s`, `3000/m`, `10/5s`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let bad = |why: &str| format!("`{text}` is not a rate ({why}); write `50`, `50/s` or `3000/m`");
    let (count, period) = match text.split_once('/') {
        Some((count, period)) => (count.trim(), Some(period.trim())),
        None => (text, None),
    };
    // The range is the plan's to check, so that its error names the field (`load.rate`).
    let count: f64 = count
        .parse()
        .ok()
        .filter(|c: &f64| c.is_finite())
        .ok_or_else(|| bad(&format!("`{count}` is not a number")))?;
    let Some(period) = period else {
        return Ok(count);
    };
    // `/s` means `/1s`: humantime needs the number.
    let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
        humantime::parse_duration(period)
    } else {
        humantime::parse_duration(&format!("1{period}"))
    }
    .map_err(|_| bad(&format!("unknown period `{period}`")))?;
    if period.is_zero() {
        return Err(bad("the period must be above zero"));
    }
    Ok(count / period.as_secs_f64())
}

/// Parses `--stages`: `DURATION:TARGET` pairs separated by commas.
pub fn parse_stages(text: &str) -> Result<Vec<StageConfig>, String> {
    text.split(',')
        .enumerate()
        .map(|(i, token)| {
            let token = token.trim();
            let (duration, target) = token.split_once(':').ok_or_else(|| {
                format!(
                    "stage {} `{token}`: expected DURATION:TARGET, e.g. `30s:100`",
                    i + 1
                )
            })?;
            let duration =
                parse_duration(duration).map_err(|e| format!("stage {} duration {e}", i + 1))?;
            let target = parse_rate(target).map_err(|e| format!("stage {} target {e}", i + 1))?;
            Ok(StageConfig { duration, target })
        })
        .collect()
}

/// A number, or a string in one of the forms above, in a TOML file.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(f64),
    Text(String),
}

impl NumberOrText {
    fn read<T>(self, parse: fn(&str) -> Result<T, String>) -> Result<T, String> {
        match self {
            NumberOrText::Number(n) => parse(&n.to_string()),
            NumberOrText::Text(text) => parse(&text),
        }
    }
}

/// `#[serde(deserialize_with)]` for a required duration (`30`, `"30s"`).
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    NumberOrText::deserialize(d)?
        .read(parse_duration)
        .map_err(de::Error::custom)
}

/// `#[serde(deserialize_with)]` for an optional duration.
pub(crate) fn option_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    Option::<NumberOrText>::deserialize(d)?
        .map(|v| v.read(parse_duration).map_err(de::Error::custom))
        .transpose()
}

/// `#[serde(deserialize_with)]` for a rate or a stage target (`50`, `"3000/m"`).
pub(crate) fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    NumberOrText::deserialize(d)?
        .read(parse_rate)
        .map_err(de::Error::custom)
}

/// `#[serde(deserialize_with)]` for an optional rate.
pub(crate) fn option_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<NumberOrText>::deserialize(d)?
        .map(|v| v.read(parse_rate).map_err(de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_form() {
        let cases = [
            ("30", 30_000),
            ("0.5", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("250ms", 250),
            ("1h 30m", 5_400_000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in ["-1", "5 parsecs", "", "s30"] {
            let message = parse_duration(bad).unwrap_err();
            assert!(message.contains(&format!("`{bad}`")), "{message}");
        }
    }

    #[test]
    fn rates_in_every_form() {
        let cases = [
            ("50", 50.0),
            ("50/s", 50.0),
            ("3000/m", 50.0),
            ("3600/h", 1.0),
            ("10/5s", 2.0),
            ("1/500ms", 2.0),
            ("0.5", 0.5),
            ("-5", -5.0),
        ];
        for (text, per_second) in cases {
            assert_eq!(parse_rate(text), Ok(per_second), "{text}");
        }
        for (bad, names) in [
            ("fast", "`fast`"),
            ("50/fortnight", "`fortnight`"),
            ("50/0s", "above zero"),
            ("x/s", "`x`"),
        ] {
            let message = parse_rate(bad).unwrap_err();
            assert!(message.contains(names), "{bad}: {message}");
            assert!(message.contains(&format!("`{bad}`")), "{bad}: {message}");
        }
    }

    #[test]
    fn stages_from_the_command_line() {
        let stages = parse_stages("30s:100, 1m:500,30:0").unwrap();
        let pairs: Vec<_> = stages.iter().map(|s| (s.duration, s.target)).collect();
        assert_eq!(
            pairs,
            [
                (Duration::from_secs(30), 100.0),
                (Duration::from_secs(60), 500.0),
                (Duration::from_secs(30), 0.0),
            ]
        );
        assert_eq!(parse_stages("1m:3000/m").unwrap()[0].target, 50.0);
        let message = parse_stages("30s:100,1m500").unwrap_err();
        assert!(message.contains("stage 2 `1m500`"), "{message}");
        let message = parse_stages("30s:100,1x:5").unwrap_err();
        assert!(message.contains("stage 2 duration `1x`"), "{message}");
        let message = parse_stages("30s:lots").unwrap_err();
        assert!(message.contains("stage 1 target `lots`"), "{message}");
    }
}
