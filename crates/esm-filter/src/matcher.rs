//! Value matchers: one element of a pattern's value list, and how it judges one event leaf.
//!
//! Parsing mirrors aws/event-ruler's `JsonRuleCompiler.processMatchExpression`, including its
//! error texts, because those are the reasons AWS gives for rejecting a pattern.

use std::borrow::Cow;

use crate::ip::IpRange;
use crate::node::Node;
use crate::number::{self, Num};
use crate::text::{Anchor, Caseless, Wildcard};

/// A leaf value of the event, as the matchers see it.
/// Strings are borrowed from the record (or its decoded data) unless JSON escapes forced a copy.
#[derive(Debug, Clone)]
pub(crate) enum Leaf<'a> {
    Str(Cow<'a, str>),
    /// The number and, if it lies in the numeric domain, its micro-unit value.
    Num(Num, Option<i64>),
    Bool(bool),
    Null,
}

impl Leaf<'_> {
    pub(crate) fn number(n: Num) -> Leaf<'static> {
        Leaf::Num(n, number::comparable(n))
    }
}

/// One entry of a field's value list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Term {
    /// `{"exists": false}`: satisfied by the field's absence, never by a value.
    Absent,
    Match(Matcher),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Matcher {
    Str(String),
    /// A plain number: equal by value (Ruler matches it both as text and numerically).
    Number(Num),
    Bool(bool),
    Null,
    /// `cidr`, or a plain string that is an IP address literal.
    Ip(IpRange),
    Prefix(String),
    Suffix(String),
    Caseless(Caseless, Anchor),
    Wildcard(Wildcard),
    /// `numeric`; bounds in micro-units, `true` = inclusive.
    Numeric { low: Option<(i64, bool)>, high: Option<(i64, bool)> },
    /// `{"exists": true}`: any leaf value, `null` included.
    Exists,
    AnythingBut(Exclusion),
}

/// What an `anything-but` rules out. Values of another type are never ruled out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Exclusion {
    Strings(Vec<String>),
    Numbers(Vec<i64>),
    Caseless(Vec<Caseless>),
    Prefixes(Vec<String>),
    Suffixes(Vec<String>),
    Wildcards(Vec<Wildcard>),
}

impl Matcher {
    pub(crate) fn matches(&self, leaf: &Leaf<'_>) -> bool {
        match (self, leaf) {
            (Matcher::Exists, _) => true,
            (Matcher::AnythingBut(excluded), leaf) => !excluded.excludes(leaf),
            (Matcher::Str(s), Leaf::Str(v)) => s == v,
            (Matcher::Number(n), Leaf::Num(v, _)) => number::same_value(*n, *v),
            (Matcher::Bool(b), Leaf::Bool(v)) => b == v,
            (Matcher::Null, Leaf::Null) => true,
            (Matcher::Ip(range), Leaf::Str(v)) => range.contains(v),
            (Matcher::Prefix(p), Leaf::Str(v)) => v.starts_with(p.as_str()),
            (Matcher::Suffix(s), Leaf::Str(v)) => v.ends_with(s.as_str()),
            (Matcher::Caseless(c, anchor), Leaf::Str(v)) => c.matches(v, *anchor),
            (Matcher::Wildcard(w), Leaf::Str(v)) => w.matches(v),
            (Matcher::Numeric { low, high }, Leaf::Num(_, Some(x))) => {
                low.is_none_or(|(b, inclusive)| if inclusive { *x >= b } else { *x > b })
                    && high.is_none_or(|(t, inclusive)| if inclusive { *x <= t } else { *x < t })
            }
            _ => false,
        }
    }
}

impl Exclusion {
    fn excludes(&self, leaf: &Leaf<'_>) -> bool {
        match (self, leaf) {
            (Exclusion::Numbers(set), Leaf::Num(_, Some(x))) => set.contains(x),
            (Exclusion::Strings(set), Leaf::Str(v)) => set.iter().any(|s| s == v),
            (Exclusion::Caseless(set), Leaf::Str(v)) => set.iter().any(|c| c.matches(v, Anchor::Whole)),
            (Exclusion::Prefixes(set), Leaf::Str(v)) => set.iter().any(|p| v.starts_with(p.as_str())),
            (Exclusion::Suffixes(set), Leaf::Str(v)) => set.iter().any(|s| v.ends_with(s.as_str())),
            (Exclusion::Wildcards(set), Leaf::Str(v)) => set.iter().any(|w| w.matches(v)),
            _ => false,
        }
    }
}

const ONE_KEY: &str = "Only one key allowed in match expression";
const TOO_MANY: &str = "Too many elements in numeric expression";

/// Parses one element of a field's value list.
pub(crate) fn parse_term(node: &Node) -> Result<Term, String> {
    let matcher = match node {
        Node::String(s) => IpRange::single(s).map_or_else(|| Matcher::Str(s.clone()), Matcher::Ip),
        Node::Number(n) => Matcher::Number(Num::from(n)),
        Node::Bool(b) => Matcher::Bool(*b),
        Node::Null => Matcher::Null,
        Node::Object(members) => return parse_expression(members),
        Node::Array(_) => return Err("Match value must be String, number, true, false, or null".into()),
    };
    Ok(Term::Match(matcher))
}

/// `{ "<operator>": <operand> }`.
fn parse_expression(members: &[(String, Node)]) -> Result<Term, String> {
    let Some(((name, operand), extra)) = members.split_first() else {
        return Err("Match expression name not found".into());
    };
    let extra_message = match name.as_str() {
        "numeric" | "anything-but" => TOO_MANY,
        _ => ONE_KEY,
    };
    let term = match name.as_str() {
        "exactly" => Term::Match(Matcher::Str(string(operand, "exact match pattern must be a string")?)),
        "prefix" => Term::Match(anchored(operand, "prefix", Anchor::Start)?),
        "suffix" => Term::Match(anchored(operand, "suffix", Anchor::End)?),
        "equals-ignore-case" => {
            let text = string(operand, "equals-ignore-case match pattern must be a string")?;
            Term::Match(Matcher::Caseless(Caseless::new(&text), Anchor::Whole))
        }
        "wildcard" => {
            let text = string(operand, "wildcard match pattern must be a string")?;
            Term::Match(Matcher::Wildcard(Wildcard::parse(&text)?))
        }
        "numeric" => Term::Match(parse_numeric(operand)?),
        "anything-but" => Term::Match(Matcher::AnythingBut(parse_anything_but(operand)?)),
        "cidr" => {
            // Ruler's message for a non-string CIDR really says "prefix".
            let text = string(operand, "prefix match pattern must be a string")?;
            Term::Match(Matcher::Ip(IpRange::cidr(&text)?))
        }
        "exists" => match operand {
            Node::Bool(true) => Term::Match(Matcher::Exists),
            Node::Bool(false) => Term::Absent,
            _ => return Err("exists match pattern must be either true or false.".into()),
        },
        other => return Err(format!("Unrecognized match type {other}")),
    };
    if !extra.is_empty() {
        return Err(extra_message.into());
    }
    Ok(term)
}

fn string(node: &Node, message: &str) -> Result<String, String> {
    match node {
        Node::String(s) => Ok(s.clone()),
        _ => Err(message.into()),
    }
}

/// `prefix` / `suffix`: a string, or `{"equals-ignore-case": "<string>"}`.
fn anchored(operand: &Node, op: &str, anchor: Anchor) -> Result<Matcher, String> {
    match operand {
        Node::String(s) if anchor == Anchor::Start => Ok(Matcher::Prefix(s.clone())),
        Node::String(s) => Ok(Matcher::Suffix(s.clone())),
        Node::Object(members) => {
            let capitalised = if anchor == Anchor::Start { "Prefix" } else { "Suffix" };
            let Some(((name, inner), extra)) = members.split_first() else {
                return Err(format!("{capitalised} expression name not found"));
            };
            if name != "equals-ignore-case" {
                return Err(format!("Unsupported {op} pattern: {name}"));
            }
            let text = string(inner, "equals-ignore-case match pattern must be a string")?;
            if !extra.is_empty() {
                return Err(ONE_KEY.into());
            }
            Ok(Matcher::Caseless(Caseless::new(&text), anchor))
        }
        _ => Err(format!("{op} match pattern must be a string")),
    }
}

/// `["=", n]`, `[">" | ">=", n]`, `["<" | "<=", n]`, `[">" | ">=", n, "<" | "<=", m]`.
fn parse_numeric(operand: &Node) -> Result<Matcher, String> {
    let Node::Array(items) = operand else {
        return Err("Value of numeric must be an array.".into());
    };
    let mut items = items.iter();
    let op = match items.next() {
        Some(Node::String(op)) => op.as_str(),
        Some(other) => return Err(format!("Invalid member in numeric match: {}", token_text(other))),
        None => return Err("Invalid member in numeric match: ]".into()),
    };
    let value = numeric_operand(items.next(), op)?;
    let (low, high) = match op {
        "=" => (Some((value, true)), Some((value, true))),
        "<" => (None, Some((value, false))),
        "<=" => (None, Some((value, true))),
        ">" | ">=" => {
            let low = Some((value, op == ">="));
            match items.next() {
                None => return Ok(Matcher::Numeric { low, high: None }),
                Some(Node::String(top_op)) => {
                    let inclusive = match top_op.as_str() {
                        "<" => false,
                        "<=" => true,
                        other => return Err(format!("Bad numeric range operator: {other}")),
                    };
                    let top = numeric_operand(items.next(), top_op)?;
                    if items.next().is_some() {
                        return Err("Too many terms in numeric range expression".into());
                    }
                    if top <= value {
                        return Err("Bottom must be less than top".into());
                    }
                    return Ok(Matcher::Numeric { low, high: Some((top, inclusive)) });
                }
                Some(other) => return Err(format!("Bad value in numeric range: {}", token_text(other))),
            }
        }
        other => return Err(format!("Unrecognized numeric range operator: {other}")),
    };
    if items.next().is_some() {
        return Err(TOO_MANY.into());
    }
    Ok(Matcher::Numeric { low, high })
}

fn numeric_operand(node: Option<&Node>, op: &str) -> Result<i64, String> {
    match node {
        Some(Node::Number(n)) => number::operand(Num::from(n)),
        _ => Err(format!("Value of {} must be numeric", if op == "=" { "equals" } else { op })),
    }
}

/// Roughly what Jackson's `getText()` shows for a token in Ruler's messages.
fn token_text(node: &Node) -> String {
    match node {
        Node::String(s) => s.clone(),
        Node::Number(n) => n.to_string(),
        Node::Array(_) => "[".into(),
        Node::Object(_) => "{".into(),
        other => other.describe().into(),
    }
}

fn parse_anything_but(operand: &Node) -> Result<Exclusion, String> {
    const VALUE_KIND: &str = "Value of anything-but must be an array or single string/number value.";
    match operand {
        Node::String(s) => Ok(Exclusion::Strings(vec![s.clone()])),
        Node::Number(n) => Ok(Exclusion::Numbers(vec![number::operand(Num::from(n))?])),
        Node::Array(items) => plain_list(items),
        Node::Object(members) => {
            let Some(((op, inner), extra)) = members.split_first() else {
                return Err("Anything-But expression name not found".into());
            };
            let (kind_error, empty_error) = match op.as_str() {
                "equals-ignore-case" => {
                    ("Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported.", false)
                }
                "prefix" | "suffix" => ("prefix/suffix match pattern must be a string", true),
                "wildcard" => ("wildcard match pattern must be a string", false),
                other => return Err(format!("Unsupported anything-but pattern: {other}")),
            };
            let texts: Vec<&str> = match inner {
                Node::String(s) => vec![s.as_str()],
                Node::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Node::String(s) => Ok(s.as_str()),
                        _ => Err(kind_error.to_owned()),
                    })
                    .collect::<Result<_, _>>()?,
                Node::Number(_) => return Err(kind_error.into()),
                _ => return Err(VALUE_KIND.into()),
            };
            if empty_error && texts.iter().any(|t| t.is_empty()) {
                return Err("Null prefix/suffix not allowed".into());
            }
            if !extra.is_empty() {
                return Err(TOO_MANY.into());
            }
            let owned = || texts.iter().map(|t| (*t).to_owned()).collect();
            Ok(match op.as_str() {
                "equals-ignore-case" => Exclusion::Caseless(texts.iter().map(|t| Caseless::new(t)).collect()),
                "prefix" => Exclusion::Prefixes(owned()),
                "suffix" => Exclusion::Suffixes(owned()),
                _ => Exclusion::Wildcards(texts.iter().map(|t| Wildcard::parse(t)).collect::<Result<_, _>>()?),
            })
        }
        Node::Null | Node::Bool(_) => Err(VALUE_KIND.into()),
    }
}

/// `anything-but: [...]`: all strings or all numbers.
fn plain_list(items: &[Node]) -> Result<Exclusion, String> {
    let mut strings = Vec::new();
    let mut numbers = Vec::new();
    for item in items {
        match item {
            Node::String(s) => strings.push(s.clone()),
            Node::Number(n) => numbers.push(number::operand(Num::from(n))?),
            _ => return Err("Inside anything but list, start|null|boolean is not supported.".into()),
        }
    }
    match (strings.is_empty(), numbers.is_empty()) {
        (false, true) => Ok(Exclusion::Strings(strings)),
        (true, false) => Ok(Exclusion::Numbers(numbers)),
        _ => Err("Inside anything but list, either all values are number or string, mixed type is not supported"
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(json: &str) -> Result<Term, String> {
        parse_term(&serde_json::from_str(json).unwrap())
    }

    fn matcher(json: &str) -> Matcher {
        match term(json).unwrap() {
            Term::Match(m) => m,
            Term::Absent => panic!("absent"),
        }
    }

    #[test]
    fn numeric_bounds() {
        let m = matcher(r#"{"numeric": [">", 10, "<=", 20]}"#);
        let n = |t: &str| Num::from(&serde_json::from_str::<serde_json::Number>(t).unwrap());
        for (value, expected) in [("10", false), ("10.000001", true), ("20", true), ("20.5", false)] {
            assert_eq!(m.matches(&Leaf::number(n(value))), expected, "{value}");
        }
        assert!(!m.matches(&Leaf::Str("15".into())));
    }

    #[test]
    fn numeric_errors() {
        let err = |json: &str| term(json).unwrap_err();
        assert_eq!(err(r#"{"numeric": [">", 0, ">", 0]}"#), "Bad numeric range operator: >");
        assert_eq!(err(r#"{"numeric": [">", 0, "<"]}"#), "Value of < must be numeric");
        assert_eq!(err(r#"{"numeric": ["<", 5, ">", 0]}"#), TOO_MANY);
        assert_eq!(err(r#"{"numeric": [">", 5, "<", 5]}"#), "Bottom must be less than top");
        assert_eq!(err(r#"{"numeric": "> 5"}"#), "Value of numeric must be an array.");
        assert_eq!(err(r#"{"numeric": ["!=", 5]}"#), "Unrecognized numeric range operator: !=");
        assert_eq!(err(r#"{"NUMERIC": ["=", 5]}"#), "Unrecognized match type NUMERIC");
    }

    #[test]
    fn anything_but_errors() {
        let err = |json: &str| term(json).unwrap_err();
        assert!(err(r#"{"anything-but": ["a", 1]}"#).contains("mixed type"));
        assert!(err(r#"{"anything-but": [null]}"#).contains("start|null|boolean"));
        assert_eq!(err(r#"{"anything-but": {"prefix": ""}}"#), "Null prefix/suffix not allowed");
        assert_eq!(err(r#"{"anything-but": {"exists": true}}"#), "Unsupported anything-but pattern: exists");
        assert_eq!(
            err(r#"{"anything-but": {"prefix": {"equals-ignore-case": "x"}}}"#),
            "Value of anything-but must be an array or single string/number value."
        );
        assert_eq!(err(r#"{"anything-but": {"wildcard": 1}}"#), "wildcard match pattern must be a string");
    }
}
