//! A record read from its JSON text keeping only what the patterns can see.
//!
//! The poller holds each record as the JSON the function receives. Parsing all of it into a
//! `serde_json::Value` to match it costs an allocation per field, most of them for fields no
//! pattern names. The walk (`walk.rs`) only descends into top-level members whose path some
//! pattern names (or leads to), plus the source's data key, so the others can be skipped while
//! parsing: the pruned record matches exactly as the whole one does.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::engine::{Engine, View};

/// `json` parsed, keeping at the top level (and, for Kinesis, inside `kinesis`) only the members
/// the engine may look at; `None` when `json` is not a JSON object.
pub(crate) fn pruned(engine: &Engine, json: &[u8]) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let map = Members { engine, lifted: false }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    map.map(Value::Object)
}

/// An object's members, pruned; `None` for anything but an object. `lifted`: the members of
/// Kinesis's `kinesis` object, which the patterns address at the top level.
struct Members<'e> {
    engine: &'e Engine,
    lifted: bool,
}

impl Members<'_> {
    /// How a member is kept.
    fn keep(&self, key: &str) -> Keep {
        let view = self.engine.view();
        let named = self.engine.lookup(key).is_some();
        match (view, self.lifted, key) {
            (View::Kinesis, false, "kinesis") => Keep::Lifted,
            (View::Sqs, false, "body") | (View::Kinesis, true, "data") if self.engine.uses_data() || named => Keep::Whole,
            // Whether it is an object decides what the record's data is, named or not.
            (View::DynamoDb, false, "dynamodb") if !named => Keep::Kind,
            _ if named => Keep::Whole,
            _ => Keep::Skip,
        }
    }
}

enum Keep {
    Whole,
    Skip,
    /// Kinesis's `kinesis` object: pruned in turn.
    Lifted,
    /// Only whether it is an object.
    Kind,
}

impl<'de> DeserializeSeed<'de> for Members<'_> {
    type Value = Option<Map<String, Value>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = Option<Map<String, Value>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let value = match self.keep(&key) {
                Keep::Skip => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                Keep::Whole => map.next_value::<Value>()?,
                Keep::Lifted => map.next_value_seed(Lifted(self.engine))?,
                Keep::Kind => map.next_value_seed(Kind)?,
            };
            kept.insert(key.into_owned(), value);
        }
        Ok(Some(kept))
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Kinesis's `kinesis` member: an object is pruned (its members sit at the top level for the
/// patterns); anything else is kept whole, as the walk then treats it as an ordinary member.
struct Lifted<'e>(&'e Engine);

impl<'de> DeserializeSeed<'de> for Lifted<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Lifted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Value, M::Error> {
        let members = Members { engine: self.0, lifted: true }.visit_map(map)?;
        Ok(Value::Object(members.unwrap_or_default()))
    }

    fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Value, S::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A member only its kind matters for: an empty object for an object, `null` for anything else.
struct Kind;

impl<'de> DeserializeSeed<'de> for Kind {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Kind {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Value, M::Error> {
        IgnoredAny::deserialize(MapAccessDeserializer::new(map))?;
        Ok(Value::Object(Map::new()))
    }

    fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Value, S::Error> {
        IgnoredAny::deserialize(SeqAccessDeserializer::new(seq))?;
        Ok(Value::Null)
    }

    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}
