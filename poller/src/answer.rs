//! Reading the JSON answers of the calls sent without the SDK (SQS's per-batch calls, GetRecords).

use std::borrow::Cow;

use serde::Deserialize;

/// A string that borrows from the body unless it holds JSON escapes. serde borrows a `Cow` only
/// when it is a field of its own: inside an `Option` it would always be an owned copy.
#[derive(Debug, Deserialize)]
pub(crate) struct Text<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

/// An answer's JSON body, read into `T`, which may borrow its strings from `body`.
///
/// The body is checked as UTF-8 once, whole, and then read as text: read from bytes, serde_json
/// checks each string it borrows on its own, a second pass over most of the answer
/// (docs/benchmarks.md, "SQS: seventh round").
pub(crate) fn from_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    let text = std::str::from_utf8(body).map_err(serde::de::Error::custom)?;
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_is_not_utf8_is_an_error_not_a_panic() {
        let error = from_json::<serde_json::Value>(b"{\"a\":\"\xff\"}").unwrap_err();
        assert!(error.to_string().contains("invalid utf-8"), "{error}");
        let text: std::collections::HashMap<&str, &str> = from_json(b"{\"a\":\"b\"}").unwrap();
        assert_eq!(text["a"], "b");
    }
}
