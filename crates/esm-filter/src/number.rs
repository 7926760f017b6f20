//! Numbers the way EventBridge's matching engine (aws/event-ruler) sees them.
//!
//! Ruler compares numbers in a fixed-point domain: values in `[-5e9, 5e9]` with at most six
//! decimal places. Inside that domain `numeric` operators work and plain number values compare by
//! value (`[300]` matches `300.0`, recorded against AWS). Outside it, `numeric` never matches an
//! event value and is rejected in a pattern. We hold in-domain numbers as integer micro-units, so
//! every comparison is exact.

use serde_json::Number;

/// A JSON number as serde_json reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl From<&Number> for Num {
    fn from(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i)
        } else if let Some(u) = n.as_u64() {
            Num::Uint(u)
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Uint(u) => u as f64,
            Num::Float(f) => f,
        }
    }

    fn as_i128(self) -> Option<i128> {
        match self {
            Num::Int(i) => Some(i.into()),
            Num::Uint(u) => Some(u.into()),
            Num::Float(_) => None,
        }
    }
}

const MAX_ABS: i64 = 5_000_000_000;
const MICROS: i64 = 1_000_000;

/// The value in micro-units if it lies in Ruler's numeric domain.
pub(crate) fn comparable(n: Num) -> Option<i64> {
    match n {
        Num::Int(i) => (i.unsigned_abs() <= MAX_ABS as u64).then(|| i * MICROS),
        Num::Uint(u) => (u <= MAX_ABS as u64).then(|| u as i64 * MICROS),
        Num::Float(f) => comparable_f64(f),
    }
}

fn comparable_f64(f: f64) -> Option<i64> {
    if !f.is_finite() || f.abs() > MAX_ABS as f64 {
        return None;
    }
    // `micros` is an integer below 2^53, so `micros / 1e6` is the double nearest to the decimal
    // micros·10⁻⁶. It equals `f` exactly when `f` has a decimal form with at most six places.
    let micros = (f * MICROS as f64).round();
    (micros / MICROS as f64 == f).then_some(micros as i64)
}

/// A number used by a `numeric` or `anything-but` operator, with Ruler's error texts.
pub(crate) fn operand(n: Num) -> Result<i64, String> {
    comparable(n).ok_or_else(|| {
        if n.as_f64().abs() > MAX_ABS as f64 {
            "Value must be between -5.0E9 and 5.0E9, inclusive".to_owned()
        } else {
            "Only values upto 6 decimals are supported".to_owned()
        }
    })
}

/// Equality of two JSON numbers by value: integers exactly, everything else as doubles.
///
/// Ruler matches a plain number value both by its text and, inside the numeric domain, by value;
/// without the original text (serde_json keeps none) value equality is the closest faithful rule.
pub(crate) fn same_value(a: Num, b: Num) -> bool {
    match (a.as_i128(), b.as_i128()) {
        (Some(x), Some(y)) => x == y,
        _ => a.as_f64() == b.as_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> Num {
        Num::from(&serde_json::from_str::<Number>(text).unwrap())
    }

    #[test]
    fn domain_edges() {
        assert_eq!(comparable(num("5000000000")), Some(5_000_000_000_000_000));
        assert_eq!(comparable(num("-5e9")), Some(-5_000_000_000_000_000));
        assert_eq!(comparable(num("5000000001")), None);
        assert_eq!(comparable(num("0.000001")), Some(1));
        assert_eq!(comparable(num("0.0000001")), None);
        assert_eq!(comparable(num("3.018e2")), Some(301_800_000));
        assert_eq!(comparable(num("18446744073709551615")), None);
        assert_eq!(comparable(num("-9223372036854775808")), None, "no overflow on i64::MIN");
    }

    #[test]
    fn operand_errors_name_the_rule() {
        assert!(operand(num("1e10")).unwrap_err().contains("between"));
        assert!(operand(num("1.1234567")).unwrap_err().contains("6 decimals"));
    }

    #[test]
    fn value_equality_ignores_notation() {
        assert!(same_value(num("300"), num("300.0")));
        assert!(same_value(num("3.0e2"), num("300")));
        assert!(!same_value(num("300"), num("300.5")));
        assert!(same_value(num("123456789012"), num("123456789012")));
    }
}
