//! Timestamp renderings used on the wire, all from integer epoch milliseconds.
//!
//! Callers pass milliseconds so the crate stays free of clocks; every rendering here is exact.

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use crate::Error;

/// `2019-11-14T00:38:06.021Z`: on-failure record `timestamp`, Kinesis arrival times.
const MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
/// `2019-11-14T00:13:19Z`: DynamoDB arrival times, tumbling-window bounds.
const SECONDS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
/// `2019/11/14/2019-11-14T00.38.06`: the date part of an S3 on-failure object key.
const S3_KEY: &[FormatItem<'static>] =
    format_description!("[year]/[month]/[day]/[year]-[month]-[day]T[hour].[minute].[second]");

fn datetime(millis: i64) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        // A negative year would need a sign, which RFC 3339 does not allow.
        .filter(|datetime| datetime.year() >= 0)
        .ok_or(Error::TimestampOutOfRange { millis })
}

fn format(millis: i64, description: &[FormatItem<'_>]) -> Result<String, Error> {
    datetime(millis)?
        .format(description)
        .map_err(|_| Error::TimestampOutOfRange { millis })
}

/// RFC 3339 in UTC with exactly three fractional digits.
pub(crate) fn rfc3339_millis(millis: i64) -> Result<String, Error> {
    format(millis, MILLIS)
}

/// RFC 3339 in UTC truncated to whole seconds (toward the past, so a bound never moves later).
pub(crate) fn rfc3339_seconds(millis: i64) -> Result<String, Error> {
    format(millis, SECONDS)
}

/// `YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS` in UTC, the time part of an S3 on-failure object key.
pub(crate) fn s3_key_time(millis: i64) -> Result<String, Error> {
    format(millis, S3_KEY)
}

/// Epoch seconds as a JSON number with a millisecond fraction: `1545084650.987`, `1764086780.0`.
///
/// Written through `f64`, and still exact: `millis as f64` is exact below 2^53, the division is
/// correctly rounded, and serde_json prints the shortest decimal that reads back as the same
/// `f64`. For any value with at most 15 significant digits (every millisecond timestamp up to year
/// 9999) that shortest decimal is the value itself with trailing zeros dropped, keeping one digit
/// after the point. A property test checks this against integer arithmetic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EpochSeconds(pub(crate) i64);

impl Serialize for EpochSeconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Exact, as argued above.
        let seconds = self.0 as f64 / 1000.0;
        serializer.serialize_f64(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The decimal text of `millis / 1000` computed with integers only.
    fn exact_seconds_text(millis: i64) -> String {
        let whole = millis.div_euclid(1000);
        let frac = millis.rem_euclid(1000);
        let digits = format!("{frac:03}");
        let trimmed = digits.trim_end_matches('0');
        if trimmed.is_empty() {
            format!("{whole}.0")
        } else {
            format!("{whole}.{trimmed}")
        }
    }

    #[test]
    fn epoch_seconds_examples_from_aws() {
        let render = |ms| serde_json::to_string(&EpochSeconds(ms)).unwrap();
        assert_eq!(render(1_545_084_650_987), "1545084650.987");
        assert_eq!(render(1_764_086_780_000), "1764086780.0");
        assert_eq!(render(1_700_321_084_470), "1700321084.47");
        assert_eq!(render(1_607_497_475_001), "1607497475.001");
    }

    proptest! {
        // Up to 9999-12-31T23:59:59.999Z.
        #[test]
        fn epoch_seconds_has_no_float_noise(millis in 0i64..=253_402_300_799_999) {
            let rendered = serde_json::to_string(&EpochSeconds(millis)).unwrap();
            prop_assert_eq!(rendered, exact_seconds_text(millis));
        }
    }

    #[test]
    fn rfc3339_renderings() {
        let ms = 1_573_692_286_021; // 2019-11-14T00:44:46.021Z
        assert_eq!(rfc3339_millis(ms).unwrap(), "2019-11-14T00:44:46.021Z");
        assert_eq!(rfc3339_seconds(ms).unwrap(), "2019-11-14T00:44:46Z");
        assert_eq!(s3_key_time(ms).unwrap(), "2019/11/14/2019-11-14T00.44.46");
        assert_eq!(rfc3339_millis(0).unwrap(), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn seconds_truncate_toward_the_past() {
        assert_eq!(rfc3339_seconds(999).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_seconds(-1).unwrap(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        for millis in [i64::MAX, i64::MIN, -62_167_219_200_001] {
            assert!(matches!(
                rfc3339_millis(millis),
                Err(Error::TimestampOutOfRange { millis: m }) if m == millis
            ));
        }
    }
}
