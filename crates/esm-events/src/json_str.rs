//! A string read from JSON that is written back into JSON as it was read, when that is byte for byte
//! what serde_json would write.
//!
//! A poller copies each SQS message body from the ReceiveMessage answer into the event. Decoding the
//! body's JSON string (a new allocation when it has escapes, as any JSON body has: `\"`) and encoding
//! it again for the event costs a pass over its bytes each way. When the string's escapes are the
//! ones serde_json itself writes, encoding the decoded text gives back the very bytes read, so they
//! are copied instead, and the event's bytes do not change.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON string, as text or as the JSON token it was read as (quotes and escapes included).
///
/// Read from JSON (with serde_json only), it keeps the token when serde_json would write the
/// decoded text as that same token, and decodes it otherwise (an escape serde_json does not write:
/// `\/`, `\u00e9`, upper-case hex). Either way it serializes to the bytes serde_json writes for its
/// text, and compares by text.
#[derive(Debug, Clone)]
pub enum JsonStr<'a> {
    /// The text.
    Text(Cow<'a, str>),
    /// A JSON string token whose escapes are all as serde_json writes them.
    Token(&'a RawValue),
}

impl JsonStr<'_> {
    /// The text: borrowed unless it has escapes to decode.
    pub fn as_str(&self) -> Cow<'_, str> {
        match self {
            JsonStr::Text(text) => Cow::Borrowed(text),
            JsonStr::Token(token) => {
                let content = unquote(token.get());
                if memchr::memchr(b'\\', content.as_bytes()).is_none() {
                    Cow::Borrowed(content)
                } else {
                    // A token is only kept after it was read as a string, so it decodes.
                    Cow::Owned(serde_json::from_str(token.get()).expect("a JSON string token decodes"))
                }
            }
        }
    }
}

/// The content of a JSON string token, between its quotes.
fn unquote(token: &str) -> &str {
    &token[1..token.len() - 1]
}

/// Whether the escapes in a JSON string's content are exactly those serde_json writes: `\"`, `\\`,
/// `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00xx` (lower-case hex) for the other control characters.
/// serde_json writes every other character as itself (`/`, DEL, and non-ASCII included).
fn escapes_as_serde_json(content: &[u8]) -> bool {
    let mut rest = content;
    while let Some(at) = memchr::memchr(b'\\', rest) {
        let escape = &rest[at + 1..];
        let length = match escape {
            [b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't', ..] => 1,
            [b'u', b'0', b'0', high @ (b'0' | b'1'), low @ (b'0'..=b'9' | b'a'..=b'f'), ..] => {
                let code = (high - b'0') << 4 | if low.is_ascii_digit() { low - b'0' } else { low - b'a' + 10 };
                // These five have a short form, which serde_json writes instead.
                if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                    return false;
                }
                5
            }
            _ => return false,
        };
        rest = &escape[length..];
    }
    true
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonStr<'a>, D::Error> {
        let token = <&'de RawValue>::deserialize(deserializer)?;
        let json = token.get();
        if !json.starts_with('"') {
            return Err(serde::de::Error::invalid_type(serde::de::Unexpected::Other(json), &"a string"));
        }
        if escapes_as_serde_json(unquote(json).as_bytes()) {
            Ok(JsonStr::Token(token))
        } else {
            serde_json::from_str(json).map(JsonStr::Text).map_err(serde::de::Error::custom)
        }
    }
}

impl Serialize for JsonStr<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            JsonStr::Text(text) => serializer.serialize_str(text),
            JsonStr::Token(token) => token.serialize(serializer),
        }
    }
}

impl PartialEq for JsonStr<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for JsonStr<'_> {}

impl<'a> From<&'a str> for JsonStr<'a> {
    fn from(text: &'a str) -> JsonStr<'a> {
        JsonStr::Text(Cow::Borrowed(text))
    }
}

impl From<String> for JsonStr<'_> {
    fn from(text: String) -> Self {
        JsonStr::Text(Cow::Owned(text))
    }
}

impl<'a> From<Cow<'a, str>> for JsonStr<'a> {
    fn from(text: Cow<'a, str>) -> JsonStr<'a> {
        JsonStr::Text(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(json: &str) -> JsonStr<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_body_with_quotes_is_kept_as_read() {
        let json = r#""{\"type\": \"order_created\", \"tab\": \"\t\", \"nul\": \"\u0000\"}""#;
        let body = read(json);
        assert!(matches!(body, JsonStr::Token(_)), "{body:?}");
        assert_eq!(serde_json::to_string(&body).unwrap(), json);
        assert_eq!(body.as_str(), "{\"type\": \"order_created\", \"tab\": \"\t\", \"nul\": \"\0\"}");
        let plain = read(r#""AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a""#);
        assert!(matches!(plain.as_str(), Cow::Borrowed("AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a")), "{plain:?}");
    }

    #[test]
    fn escapes_serde_json_does_not_write_are_decoded() {
        for (json, text) in [
            (r#""a\/b""#, "a/b"),
            (r#""caf\u00e9""#, "café"),
            (r#""\u001F""#, "\u{1f}"),
            (r#""\u000a""#, "\n"),
            (r#""\ud83d\ude00""#, "😀"),
        ] {
            let value = read(json);
            assert!(matches!(value, JsonStr::Text(Cow::Owned(_))), "{json}: {value:?}");
            assert_eq!(value.as_str(), text);
            assert_eq!(serde_json::to_string(&value).unwrap(), serde_json::to_string(text).unwrap());
        }
    }

    #[test]
    fn only_strings_are_read() {
        for json in ["1", "null", "{}", "[\"a\"]"] {
            assert!(serde_json::from_str::<JsonStr>(json).is_err(), "{json}");
        }
        assert!(serde_json::from_str::<JsonStr>(r#""\ud800""#).is_err(), "a lone surrogate is not text");
    }

    /// Any character, written as itself or escaped in any of the ways JSON allows.
    fn spelled(c: char) -> impl Strategy<Value = String> {
        let mut ways = vec![Just(unquote(&serde_json::to_string(&c.to_string()).unwrap()).to_owned()).boxed()];
        let mut units = [0u16; 2];
        let utf16: String = c.encode_utf16(&mut units).iter().map(|u| format!("\\u{u:04x}")).collect();
        ways.push(Just(utf16.clone()).boxed());
        ways.push(Just(utf16.to_uppercase().replace("\\U", "\\u")).boxed());
        if c == '/' {
            ways.push(Just("\\/".to_owned()).boxed());
        }
        proptest::strategy::Union::new(ways)
    }

    proptest! {
        /// Whatever escapes the string was read with, it is written as serde_json writes its text.
        #[test]
        fn it_is_written_as_serde_json_writes_its_text(
            spelled in proptest::collection::vec(
                prop_oneof![any::<char>(), proptest::char::range('\0', '\x7f')].prop_flat_map(|c| (Just(c), spelled(c))),
                0..40,
            )
        ) {
            let text: String = spelled.iter().map(|(c, _)| *c).collect();
            let json = format!("\"{}\"", spelled.iter().map(|(_, s)| s.as_str()).collect::<String>());
            let value = read(&json);
            prop_assert_eq!(value.as_str(), text.as_str());
            prop_assert_eq!(serde_json::to_string(&value).unwrap(), serde_json::to_string(&text).unwrap());
            prop_assert_eq!(serde_json::to_value(&value).unwrap(), serde_json::Value::String(text));
        }
    }
}
