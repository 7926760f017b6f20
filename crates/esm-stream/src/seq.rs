//! Stream sequence numbers.
//!
//! Kinesis sequence numbers are decimal strings of up to 129 digits (API pattern
//! `0|([1-9]\d{0,128})`); real ones are 56 digits long today, i.e. about 186 bits, so they do
//! **not** fit in a `u128` (39 digits). DynamoDB Streams numbers are 21–40 digits. We therefore
//! keep the original string and compare numerically without parsing: strip leading zeros, then a
//! longer number is larger, and equal lengths compare lexicographically (ASCII digits sort like
//! their values). This is the same rule `kcl-rust` uses for its monotonic checkpoint guard.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use crate::Error;

/// A validated, numerically ordered stream sequence number.
///
/// `Eq`, `Ord` and `Hash` all follow the numeric value, so `"007"` equals `"7"`; [`as_str`]
/// returns the text exactly as received (what must be echoed back to AWS and to functions).
///
/// Cloning is cheap (the text is shared): the worker keeps each number in its checkpoint frontier,
/// its batch and its position in the shard.
///
/// [`as_str`]: SequenceNumber::as_str
#[derive(Clone)]
pub struct SequenceNumber(Arc<str>);

impl SequenceNumber {
    /// Validates `text` (non-empty, ASCII digits only).
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidSequenceNumber(text.to_owned()));
        }
        Ok(SequenceNumber(Arc::from(text)))
    }

    /// The sequence number as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without leading zeros (`"0"` becomes `""`), the canonical form used for
    /// comparison and hashing.
    fn significant(&self) -> &str {
        self.0.trim_start_matches('0')
    }
}

impl FromStr for SequenceNumber {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        SequenceNumber::parse(text)
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.significant(), other.significant());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for SequenceNumber {
    fn eq(&self, other: &Self) -> bool {
        self.significant() == other.significant()
    }
}

impl Eq for SequenceNumber {}

impl Hash for SequenceNumber {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.significant().hash(state);
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SequenceNumber({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).unwrap()
    }

    #[test]
    fn rejects_non_digits() {
        for bad in ["", "-1", "1.0", " 1", "12a", "１"] {
            assert_eq!(
                SequenceNumber::parse(bad),
                Err(Error::InvalidSequenceNumber(bad.to_owned()))
            );
        }
    }

    #[test]
    fn numeric_not_lexicographic() {
        assert!(seq("9") < seq("10"));
        assert!(seq("100") > seq("99"));
        assert_eq!(seq("007"), seq("7"));
        assert_eq!(seq("0"), seq("000"));
        assert!(seq("0") < seq("1"));
        assert_eq!(seq("007").as_str(), "007");
    }

    #[test]
    fn real_kinesis_numbers_beyond_u128() {
        // From the Lambda developer guide's on-failure record; both are 56 digits.
        let start = seq("49601189658422359378836298521827638475320189012309704722");
        let end = seq("49601189658422359378836298522902373528957594348623495186");
        assert!(start.as_str().parse::<u128>().is_err());
        assert!(start < end);
    }

    proptest! {
        #[test]
        fn order_matches_u128(a in any::<u128>(), b in any::<u128>(), za in 0usize..3, zb in 0usize..3) {
            let sa = seq(&format!("{}{a}", "0".repeat(za)));
            let sb = seq(&format!("{}{b}", "0".repeat(zb)));
            prop_assert_eq!(sa.cmp(&sb), a.cmp(&b));
            prop_assert_eq!(sa == sb, a == b);
        }

        #[test]
        fn order_of_long_numbers_is_total(a in "[1-9][0-9]{0,128}", b in "[1-9][0-9]{0,128}") {
            let (sa, sb) = (seq(&a), seq(&b));
            prop_assert_eq!(sa.cmp(&sb), sb.cmp(&sa).reverse());
            prop_assert_eq!(sa.cmp(&sb) == Ordering::Equal, a == b);
        }
    }
}
