//! The matching engine: compiled branches over flattened event fields.
//!
//! Like aws/event-ruler, an event is seen as a list of leaf fields named by dot-joined paths.
//! Arrays are "crushed" (their elements share the array's path), but a match must be *array
//! consistent*: two fields that sit in different elements of the same array can't satisfy one
//! branch together. `exists: false` holds when no field of that path is consistent with the
//! fields matched so far, keys being taken in sorted order as Ruler's state machine does.
//!
//! Per event, `walk` collects the leaves some pattern names (a set of path prefixes prunes the
//! rest of the record), then each branch is searched over them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use base64::Engine as _;
use serde_json::Value;

use crate::compile::{self, Branch};
use crate::matcher::{Matcher, Term};
use crate::Member;
use crate::walk::{Flat, Flattener};

/// How a record is presented to the patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// The JSON as given (EventBridge semantics).
    Plain,
    /// `body` is matched as JSON when it parses as a JSON object, as a string otherwise.
    Sqs,
    /// The `kinesis` object's members are lifted to the top level; `data` is base64-decoded and
    /// matched as JSON (only JSON objects are filterable).
    Kinesis,
    /// `dynamodb` must be addressed as an object (DynamoDB JSON, type keys included).
    DynamoDb,
}

impl View {
    /// The record's data key, whose pattern format is checked against the record's data.
    pub(crate) fn data_key(self) -> Option<&'static str> {
        match self {
            View::Plain => None,
            View::Sqs => Some("body"),
            View::Kinesis => Some("data"),
            View::DynamoDb => Some("dynamodb"),
        }
    }
}

/// How a branch addresses the data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataUse {
    None,
    /// The data key itself carries a value list: the data must be plain text.
    Text,
    /// Paths below the data key: the data must be a JSON object.
    Json,
    /// Both: no record can satisfy it.
    Both,
}

/// The record's data, as far as the format check is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataKind {
    Missing,
    Text,
    Json,
}

#[derive(Debug)]
struct Key {
    path: u32,
    matchers: Vec<Matcher>,
    /// `{"exists": false}` was among the terms.
    absent_ok: bool,
}

#[derive(Debug)]
struct CompiledBranch {
    /// Sorted by path text.
    keys: Vec<Key>,
    data_use: DataUse,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PathInfo {
    /// Set when a key names exactly this path.
    pub(crate) id: Option<u32>,
    /// Set when some key's path continues below this one.
    pub(crate) is_prefix: bool,
}

#[derive(Debug)]
pub(crate) struct Engine {
    view: View,
    paths: HashMap<Box<str>, PathInfo, BuildHasherDefault<Fnv>>,
    /// Bit `n` is set when some path is `n` bytes long (bit 63: 63 or more): a name whose length
    /// no path has is not looked up. Kinesis records are matched from eleven members a pattern
    /// rarely names, so most lookups end here.
    path_lengths: u64,
    path_count: usize,
    branches: Vec<CompiledBranch>,
    /// Whether any branch looks at the data key (else we never decode or parse it).
    uses_data: bool,
}

impl Engine {
    /// Compiles patterns into one engine (their branches are OR'ed). The error carries the
    /// index of the offending pattern and the reason.
    pub(crate) fn compile(view: View, patterns: &[&str]) -> Result<Engine, (usize, String)> {
        let mut engine = Engine {
            view,
            paths: HashMap::default(),
            path_lengths: 0,
            path_count: 0,
            branches: Vec::new(),
            uses_data: false,
        };
        for (index, text) in patterns.iter().enumerate() {
            let branches = compile::compile(text).map_err(|reason| (index, reason))?;
            for branch in branches {
                let compiled = engine.add_branch(branch);
                if compiled.data_use != DataUse::None {
                    engine.uses_data = true;
                }
                if let Some(key) = view.data_key()
                    && view != View::Sqs
                    && matches!(compiled.data_use, DataUse::Text | DataUse::Both)
                {
                    return Err((index, format!("\"{key}\" must be an object: {key} is filtered as JSON")));
                }
                engine.branches.push(compiled);
            }
        }
        Ok(engine)
    }

    fn add_branch(&mut self, branch: Branch) -> CompiledBranch {
        let mut keys = Vec::with_capacity(branch.len());
        let mut sorted = branch;
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut data_use = DataUse::None;
        for (path, terms) in sorted {
            data_use = combine(data_use, self.view.data_key().map_or(DataUse::None, |k| classify(&path, k)));
            let mut matchers = Vec::with_capacity(terms.len());
            let mut absent_ok = false;
            for term in terms {
                match term {
                    Term::Absent => absent_ok = true,
                    Term::Match(m) => matchers.push(m),
                }
            }
            keys.push(Key { path: self.intern(&path), matchers, absent_ok });
        }
        CompiledBranch { keys, data_use }
    }

    fn intern(&mut self, path: &str) -> u32 {
        for (at, _) in path.match_indices('.') {
            self.paths.entry(path[..at].into()).or_default().is_prefix = true;
            self.path_lengths |= length_bit(at);
        }
        self.path_lengths |= length_bit(path.len());
        let next = self.path_count as u32;
        let info = self.paths.entry(path.into()).or_default();
        *info.id.get_or_insert_with(|| {
            self.path_count += 1;
            next
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.branches.is_empty()
    }

    pub(crate) fn matches(&self, record: &Value) -> bool {
        // Decoded Kinesis data must outlive the fields that borrow from it.
        let decoded = if self.uses_data && self.view == View::Kinesis { decode_kinesis_data(record) } else { None };
        let mut flattener = Flattener::new(self);
        flattener.record(record, decoded.as_deref());
        let (event, kind) = flattener.finish();
        self.any_branch(&event, kind)
    }

    /// [`Engine::matches`] on a Kinesis record given as its (lifted) members and base64 data.
    pub(crate) fn matches_kinesis(&self, data: &str, members: &[(&str, Member<'_>)]) -> bool {
        let matches = |decoded: Option<&[u8]>| {
            let mut flattener = Flattener::new(self);
            flattener.kinesis_members(members, decoded);
            let (event, kind) = flattener.finish();
            self.any_branch(&event, kind)
        };
        if !self.uses_data {
            return matches(None);
        }
        DECODED.with_borrow_mut(|buffer| {
            buffer.clear();
            let decoded = base64::engine::general_purpose::STANDARD.decode_vec(data, buffer).is_ok();
            let matched = matches(decoded.then_some(buffer.as_slice()));
            if buffer.capacity() > MAX_KEPT_DECODED {
                *buffer = Vec::new();
            }
            matched
        })
    }

    /// Whether some branch matches the record's named leaves.
    fn any_branch(&self, event: &Flat<'_>, kind: DataKind) -> bool {
        let mut membership = Vec::new();
        self.branches.iter().any(|branch| {
            let format_ok = match branch.data_use {
                DataUse::None => true,
                DataUse::Text => kind == DataKind::Text,
                DataUse::Json => kind == DataKind::Json,
                DataUse::Both => false,
            };
            membership.clear();
            format_ok && search(&branch.keys, event, &mut membership)
        })
    }

    pub(crate) fn view(&self) -> View {
        self.view
    }

    pub(crate) fn uses_data(&self) -> bool {
        self.uses_data
    }

    pub(crate) fn path_count(&self) -> usize {
        self.path_count
    }

    pub(crate) fn lookup(&self, path: &str) -> Option<PathInfo> {
        if self.path_lengths & length_bit(path.len()) == 0 {
            return None;
        }
        self.paths.get(path).copied()
    }
}

thread_local! {
    /// The decoded `data` of the Kinesis record being matched, reused from record to record: a page
    /// is hundreds of records, and a vector of its own for each was a zero-filled allocation
    /// (`calloc`) and a free per record.
    static DECODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A larger buffer (a record's data is at most 1 MiB) is given back after the record rather than
/// kept by the thread.
const MAX_KEPT_DECODED: usize = 64 << 10;

/// A path length's bit in [`Engine::path_lengths`].
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// The bytes behind `kinesis.data`, if it is valid base64.
fn decode_kinesis_data(record: &Value) -> Option<Vec<u8>> {
    let encoded = record.get("kinesis")?.get("data")?.as_str()?;
    base64::engine::general_purpose::STANDARD.decode(encoded).ok()
}

fn classify(path: &str, data_key: &str) -> DataUse {
    match path.strip_prefix(data_key) {
        Some("") => DataUse::Text,
        Some(rest) if rest.starts_with('.') => DataUse::Json,
        _ => DataUse::None,
    }
}

fn combine(a: DataUse, b: DataUse) -> DataUse {
    match (a, b) {
        (x, DataUse::None) | (DataUse::None, x) => x,
        (x, y) if x == y => x,
        _ => DataUse::Both,
    }
}

/// Whether the keys can all be satisfied, array-consistently, given the array elements already
/// committed to in `membership`.
fn search(keys: &[Key], event: &Flat<'_>, membership: &mut Vec<(u32, u32)>) -> bool {
    let Some((key, rest)) = keys.split_first() else { return true };
    if key.absent_ok
        && !event.fields_of(key.path).any(|f| consistent(membership, event.members_of(f)))
        && search(rest, event, membership)
    {
        return true;
    }
    for field in event.fields_of(key.path) {
        let members = event.members_of(field);
        if !consistent(membership, members) || !key.matchers.iter().any(|m| m.matches(&field.leaf)) {
            continue;
        }
        let mark = membership.len();
        for member in members {
            if !membership[..mark].contains(member) {
                membership.push(*member);
            }
        }
        let adds_nothing = membership.len() == mark;
        if search(rest, event, membership) {
            return true;
        }
        membership.truncate(mark);
        if adds_nothing {
            // Any other field can only add constraints, so it can't succeed where this failed.
            return false;
        }
    }
    false
}

fn consistent(membership: &[(u32, u32)], members: &[(u32, u32)]) -> bool {
    members
        .iter()
        .all(|(array, element)| membership.iter().all(|(a, e)| a != array || e == element))
}

/// FNV-1a: path keys are short, and SipHash's DoS resistance buys nothing for our own patterns.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoded-data buffer is shared from record to record: each record is still matched on its
    /// own data alone, whatever the length or validity of the one before.
    #[test]
    fn each_kinesis_record_is_matched_on_its_own_data() {
        let engine = Engine::compile(View::Kinesis, &[r#"{"data":{"type":["click"]}}"#, r#"{"data":{"tags":["a"]}}"#]).unwrap();
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let large = format!(r#"{{"type":"click","pad":"{}"}}"#, "x".repeat(MAX_KEPT_DECODED));
        for (data, expected) in [
            (encode(r#"{"type":"click","pad":"a long record before a short one"}"#), true),
            (encode(r#"{"type":"view"}"#), false),
            ("not base64!".to_owned(), false),
            (encode(&large), true),
            (encode(r#"{"type":"click"}"#), true),
            (encode("click"), false),
            (encode(r#"{"tags":[["z"],"a"]}"#), true),
            (encode(r#"{"tags":["b",["c"]]}"#), false),
            (encode(r#"{"tags":"a"}"#), true),
            (encode(r#"{"tags":[]}"#), false),
        ] {
            assert_eq!(engine.matches_kinesis(&data, &[]), expected, "{}", &data[..data.len().min(40)]);
        }
        DECODED.with_borrow(|buffer| assert!(buffer.capacity() <= MAX_KEPT_DECODED, "a large buffer is not kept"));
    }

    #[test]
    fn the_length_check_hides_no_path_and_skips_other_lengths() {
        let long = "k".repeat(70);
        let pattern = format!(r#"{{"data":{{"type":["click"],"{long}":[1]}},"eventName":["x"],"a":{{"b":{{"c":[1]}}}}}}"#);
        let engine = Engine::compile(View::Kinesis, &[&pattern]).unwrap();
        for path in engine.paths.keys() {
            assert!(engine.lookup(path).is_some(), "{path}");
        }
        assert!(engine.lookup(&format!("data.{}", "x".repeat(80))).is_none(), "long, not a path");
        assert_eq!(engine.lookup("partitionKey").map(|_| ()), None);
        assert_eq!(engine.path_lengths & length_bit("partitionKey".len()), 0, "no path of that length");
    }
}
