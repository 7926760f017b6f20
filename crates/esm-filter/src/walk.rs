//! Turning a record into the flat list of leaves the patterns name.
//!
//! Only paths some key names (or that lead to one) are visited. Record fields are walked in the
//! already-parsed `serde_json::Value`; the data held as text (the SQS body, the decoded Kinesis
//! data) is parsed in a streaming pass that materialises only the named leaves, borrowing their
//! strings from the input, and skips everything else without allocating.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::engine::{DataKind, Engine, PathInfo, View};
use crate::Member;
use crate::matcher::Leaf;
use crate::number::Num;

/// One leaf of the event that some key names.
#[derive(Debug)]
pub(crate) struct Field<'a> {
    pub(crate) path: u32,
    pub(crate) leaf: Leaf<'a>,
    /// The `(array, element)` pairs enclosing this leaf, as a range of `Flat::members`.
    members: (u32, u32),
}

/// The named leaves of one record, grouped by path.
pub(crate) struct Flat<'a> {
    fields: Vec<Field<'a>>,
    members: Vec<(u32, u32)>,
    /// Field indices grouped by path; `offsets[p]..offsets[p + 1]` is path `p`'s group.
    order: Vec<u32>,
    offsets: Vec<u32>,
}

impl<'a> Flat<'a> {
    pub(crate) fn fields_of(&self, path: u32) -> impl Iterator<Item = &Field<'a>> {
        let range = self.offsets[path as usize] as usize..self.offsets[path as usize + 1] as usize;
        self.order[range].iter().map(|&i| &self.fields[i as usize])
    }

    pub(crate) fn members_of(&self, field: &Field<'_>) -> &[(u32, u32)] {
        &self.members[field.members.0 as usize..field.members.1 as usize]
    }
}

/// Nesting beyond this is not walked (serde_json itself refuses to parse deeper documents).
const MAX_DEPTH: usize = 256;

pub(crate) struct Flattener<'e, 'a> {
    engine: &'e Engine,
    path: String,
    fields: Vec<Field<'a>>,
    members: Vec<(u32, u32)>,
    /// The arrays enclosing the current position.
    stack: Vec<(u32, u32)>,
    next_array: u32,
    depth: usize,
    data_kind: DataKind,
}

impl<'e, 'a> Flattener<'e, 'a> {
    pub(crate) fn new(engine: &'e Engine) -> Self {
        Flattener {
            engine,
            path: String::with_capacity(64),
            fields: Vec::new(),
            members: Vec::new(),
            stack: Vec::new(),
            next_array: 0,
            depth: 0,
            data_kind: DataKind::Missing,
        }
    }

    /// Walks one record; `kinesis_data` is the decoded `kinesis.data`, when there is any.
    pub(crate) fn record(&mut self, record: &'a Value, kinesis_data: Option<&'a [u8]>) {
        let Value::Object(top) = record else { return };
        let view = self.engine.view();
        for (key, value) in top {
            match (view, key.as_str(), value) {
                (View::Kinesis, "kinesis", Value::Object(inner)) => self.kinesis(inner, kinesis_data),
                (View::Sqs, "body", Value::String(body)) => self.text_data(key, body.as_bytes(), Some(body)),
                (View::DynamoDb, "dynamodb", _) => {
                    self.data_kind = if value.is_object() { DataKind::Json } else { DataKind::Text };
                    self.member(key, value);
                }
                _ => self.member(key, value),
            }
        }
    }

    /// Kinesis: the `kinesis` members sit at the top level, `data` holds decoded JSON.
    fn kinesis(&mut self, inner: &'a Map<String, Value>, data: Option<&'a [u8]>) {
        for (key, value) in inner {
            match (key.as_str(), value) {
                // Undecodable base64 counts as non-JSON data; the base64 text itself is never a leaf.
                ("data", Value::String(_)) => self.text_data(key, data.unwrap_or_default(), None),
                _ => self.member(key, value),
            }
        }
    }

    /// Kinesis members given one by one ([`crate::Filters::matches_kinesis`]), as [`Self::kinesis`]
    /// walks them from the record's JSON: top-level leaves, and `data` decoded.
    pub(crate) fn kinesis_members(&mut self, members: &[(&'a str, Member<'a>)], data: Option<&'a [u8]>) {
        for &(key, member) in members {
            if let Some(info) = self.engine.lookup(key) {
                let leaf = match member {
                    Member::Str(s) => Leaf::Str(Cow::Borrowed(s)),
                    Member::Float(f) => Leaf::number(Num::Float(f)),
                };
                self.push(info, leaf);
            }
        }
        self.text_data("data", data.unwrap_or_default(), None);
    }

    /// Data carried as text: matched as JSON when it is a JSON object, else as the `text` leaf
    /// (when the source allows text patterns at all).
    fn text_data(&mut self, key: &str, bytes: &'a [u8], text: Option<&'a str>) {
        if !self.engine.uses_data() {
            return; // no pattern names the data key: don't even parse it
        }
        let mark = self.enter(key);
        if let Some(info) = self.engine.lookup(&self.path) {
            let (fields, members) = (self.fields.len(), self.members.len());
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let is_object = ObjectSeed { flat: self, info }.deserialize(&mut de).unwrap_or(false) && de.end().is_ok();
            if is_object {
                self.data_kind = DataKind::Json;
            } else {
                self.fields.truncate(fields);
                self.members.truncate(members);
                self.data_kind = DataKind::Text;
                if let Some(text) = text {
                    self.push(info, Leaf::Str(Cow::Borrowed(text)));
                }
            }
        }
        self.path.truncate(mark);
    }

    /// Appends `key` to the path; returns the length to truncate back to.
    fn enter(&mut self, key: &str) -> usize {
        let mark = self.path.len();
        if mark > 0 {
            self.path.push('.');
        }
        self.path.push_str(key);
        mark
    }

    fn member(&mut self, key: &str, value: &'a Value) {
        let mark = self.enter(key);
        if let Some(info) = self.engine.lookup(&self.path) {
            self.value(info, value);
        }
        self.path.truncate(mark);
    }

    fn value(&mut self, info: PathInfo, value: &'a Value) {
        if self.depth >= MAX_DEPTH {
            return;
        }
        let leaf = match value {
            Value::Object(map) => {
                if info.is_prefix {
                    self.depth += 1;
                    for (key, child) in map {
                        self.member(key, child);
                    }
                    self.depth -= 1;
                }
                return;
            }
            Value::Array(items) => {
                let id = self.new_array();
                self.depth += 1;
                for (index, item) in items.iter().enumerate() {
                    self.stack.push((id, index as u32));
                    self.value(info, item);
                    self.stack.pop();
                }
                self.depth -= 1;
                return;
            }
            Value::String(s) => Leaf::Str(Cow::Borrowed(s)),
            Value::Number(n) => Leaf::number(Num::from(n)),
            Value::Bool(b) => Leaf::Bool(*b),
            Value::Null => Leaf::Null,
        };
        self.push(info, leaf);
    }

    fn new_array(&mut self) -> u32 {
        self.next_array += 1;
        self.next_array
    }

    fn push(&mut self, info: PathInfo, leaf: Leaf<'a>) {
        if let Some(path) = info.id {
            let start = self.members.len() as u32;
            self.members.extend_from_slice(&self.stack);
            self.fields.push(Field { path, leaf, members: (start, self.members.len() as u32) });
        }
    }

    /// The named leaves grouped by path, and what the record's data turned out to be.
    pub(crate) fn finish(self) -> (Flat<'a>, DataKind) {
        let count = self.engine.path_count();
        // Filled with `resize` rather than `vec![0; n]`: that is `calloc`, which glibc serves
        // without its per-thread cache, and this runs for every record filtered.
        let mut offsets = zeroed(count + 1);
        for field in &self.fields {
            offsets[field.path as usize + 1] += 1;
        }
        for p in 0..count {
            offsets[p + 1] += offsets[p];
        }
        let mut next = offsets.clone();
        let mut order = zeroed(self.fields.len());
        for (i, field) in self.fields.iter().enumerate() {
            let slot = &mut next[field.path as usize];
            order[*slot as usize] = i as u32;
            *slot += 1;
        }
        let flat = Flat { fields: self.fields, members: self.members, order, offsets };
        (flat, self.data_kind)
    }
}

/// `len` zeros. Not `vec![0; len]`: that asks the allocator for zeroed memory (`calloc`), which
/// glibc serves without its per-thread cache; these vectors are small and made per record, and
/// the hot-path benchmark ran 11 % faster with one filter this way (docs/benchmarks.md).
#[allow(clippy::slow_vector_initialization)]
fn zeroed(len: usize) -> Vec<u32> {
    let mut zeros = Vec::with_capacity(len);
    zeros.resize(len, 0);
    zeros
}

/// The top of text data: walks it when it is an object, answers `false` for anything else.
struct ObjectSeed<'f, 'e, 'a> {
    flat: &'f mut Flattener<'e, 'a>,
    info: PathInfo,
}

impl<'a> DeserializeSeed<'a> for ObjectSeed<'_, '_, 'a> {
    type Value = bool;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for ObjectSeed<'_, '_, 'a> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'a>>(self, map: M) -> Result<bool, M::Error> {
        ValueSeed { flat: self.flat, info: self.info }.visit_map(map)?;
        Ok(true)
    }

    fn visit_seq<S: SeqAccess<'a>>(self, _: S) -> Result<bool, S::Error> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// A value at a named path (or on the way to one), parsed in place.
struct ValueSeed<'f, 'e, 'a> {
    flat: &'f mut Flattener<'e, 'a>,
    info: PathInfo,
}

impl<'a> DeserializeSeed<'a> for ValueSeed<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for ValueSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<M: MapAccess<'a>>(self, mut map: M) -> Result<(), M::Error> {
        let flat = self.flat;
        if !self.info.is_prefix || flat.depth >= MAX_DEPTH {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        flat.depth += 1;
        loop {
            let mark = flat.path.len();
            if map.next_key_seed(KeySeed { path: &mut flat.path })?.is_none() {
                break;
            }
            match flat.engine.lookup(&flat.path) {
                Some(info) => map.next_value_seed(ValueSeed { flat: &mut *flat, info })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            flat.path.truncate(mark);
        }
        flat.depth -= 1;
        Ok(())
    }

    fn visit_seq<S: SeqAccess<'a>>(self, mut seq: S) -> Result<(), S::Error> {
        let flat = self.flat;
        if flat.depth >= MAX_DEPTH {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        let id = flat.new_array();
        flat.depth += 1;
        for index in 0u32.. {
            flat.stack.push((id, index));
            let more = seq.next_element_seed(ValueSeed { flat: &mut *flat, info: self.info })?.is_some();
            flat.stack.pop();
            if !more {
                break;
            }
        }
        flat.depth -= 1;
        Ok(())
    }

    fn visit_borrowed_str<E>(self, v: &'a str) -> Result<(), E> {
        self.flat.push(self.info, Leaf::Str(Cow::Borrowed(v)));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        if self.info.id.is_some() {
            self.flat.push(self.info, Leaf::Str(Cow::Owned(v.to_owned())));
        }
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.flat.push(self.info, Leaf::number(Num::Int(v)));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.flat.push(self.info, Leaf::number(Num::Uint(v)));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.flat.push(self.info, Leaf::number(Num::Float(v)));
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.flat.push(self.info, Leaf::Bool(v));
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.flat.push(self.info, Leaf::Null);
        Ok(())
    }
}

/// An object key, appended to the current path (no copy of the key itself).
struct KeySeed<'p> {
    path: &'p mut String,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<(), E> {
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        Ok(())
    }
}
