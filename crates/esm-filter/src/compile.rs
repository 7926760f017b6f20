//! Pattern text → branches of flattened field conditions.
//!
//! A port of aws/event-ruler's `JsonRuleCompiler`: nested objects become dot-joined paths
//! (`{"a":{"b":[1]}}` and `{"a.b":[1]}` are the same rule), a later occurrence of a path replaces
//! an earlier one, and every `$or` forks the branches built so far. A pattern matches when any
//! branch matches; a branch matches when all its fields do.

use crate::matcher::{Term, parse_term};
use crate::node::Node;

/// One `$or` branch: `(path, value list)` in first-seen order, paths unique.
pub(crate) type Branch = Vec<(String, Vec<Term>)>;

/// The members of a pattern object, in order.
type Members = [(String, Node)];

/// Upper bound on branches per pattern. Each `$or` multiplies the branch count, so a 4 KB pattern
/// could otherwise ask for billions; Ruler has no such guard and would simply run out of memory.
const MAX_BRANCHES: usize = 1024;

/// Names that may not be fields inside an `$or` object (Ruler's reserved words).
const RESERVED_IN_OR: &[&str] = &[
    "exactly",
    "equals-ignore-case",
    "prefix",
    "suffix",
    "anything-but",
    "exists",
    "wildcard",
    "numeric",
    "cidr",
    "=",
    "<",
    "<=",
    ">",
    ">=",
    "regex",
    "not-wildcard",
    "not-equals-ignore-case",
    "date-after",
    "date-on-or-after",
    "date-before",
    "date-on-or-before",
    "in-date-range",
    "ip-address-in-range",
    "ip-address-not-in-range",
];

/// Parses and compiles one pattern. The error is the reason, in Ruler's words where it has any.
pub(crate) fn compile(text: &str) -> Result<Vec<Branch>, String> {
    let node: Node = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let Node::Object(members) = node else {
        return Err("Filter is not an object".into());
    };
    let mut branches = Vec::new();
    let mut path = Vec::new();
    parse_object(&mut branches, &mut path, &members, false)?;
    Ok(branches)
}

fn parse_object<'a>(
    branches: &mut Vec<Branch>,
    path: &mut Vec<&'a str>,
    members: &'a Members,
    inside_or: bool,
) -> Result<(), String> {
    if members.is_empty() {
        return Err("Empty objects are not allowed".into());
    }
    for (name, value) in members {
        if name == "$or" {
            if let Some(alternatives) = or_alternatives(value)? {
                fork(branches, path, &alternatives)?;
                continue;
            }
            // Otherwise Ruler keeps its legacy reading: "$or" is an ordinary field name.
        } else if inside_or && RESERVED_IN_OR.contains(&name.as_str()) {
            return Err(format!("{name} is Ruler reserved fieldName which cannot be used inside $or."));
        }
        match value {
            Node::Object(inner) => {
                path.push(name);
                parse_object(branches, path, inner, inside_or)?;
                path.pop();
            }
            Node::Array(items) => put(branches, joined(path, name), items)?,
            _ => return Err(format!("\"{name}\" must be an object or an array")),
        }
    }
    Ok(())
}

/// The objects of a real `$or` (an array of objects); `None` when Ruler would read `$or` as a
/// plain field name (an object, or an array of match values).
fn or_alternatives(value: &Node) -> Result<Option<Vec<&Members>>, String> {
    let Node::Array(items) = value else { return Ok(None) };
    let objects: Vec<&Members> = items
        .iter()
        .filter_map(|item| match item {
            Node::Object(members) => Some(members.as_slice()),
            _ => None,
        })
        .collect();
    if objects.is_empty() || objects.len() != items.len() {
        return Ok(None);
    }
    if objects.len() < 2 {
        return Err("There must have at least 2 Objects in $or relationship.".into());
    }
    Ok(Some(objects))
}

fn fork<'a>(
    branches: &mut Vec<Branch>,
    path: &mut Vec<&'a str>,
    alternatives: &[&'a Members],
) -> Result<(), String> {
    let current = std::mem::take(branches);
    for alternative in alternatives {
        let mut forked = if current.is_empty() { vec![Branch::new()] } else { current.clone() };
        parse_object(&mut forked, path, alternative, true)?;
        branches.extend(forked);
        if branches.len() > MAX_BRANCHES {
            return Err(format!("Rule is too complex: more than {MAX_BRANCHES} $or combinations"));
        }
    }
    Ok(())
}

fn put(branches: &mut Vec<Branch>, name: String, items: &[Node]) -> Result<(), String> {
    let terms = items.iter().map(parse_term).collect::<Result<Vec<_>, _>>()?;
    if terms.is_empty() {
        return Err("Empty arrays are not allowed".into());
    }
    if branches.is_empty() {
        branches.push(Branch::new());
    }
    for branch in branches.iter_mut() {
        match branch.iter_mut().find(|(path, _)| *path == name) {
            Some(slot) => slot.1 = terms.clone(),
            None => branch.push((name.clone(), terms.clone())),
        }
    }
    Ok(())
}

fn joined(path: &[&str], name: &str) -> String {
    let mut out = String::new();
    for step in path {
        out.push_str(step);
        out.push('.');
    }
    out.push_str(name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(text: &str) -> Vec<Vec<String>> {
        compile(text).unwrap().into_iter().map(|b| b.into_iter().map(|(p, _)| p).collect()).collect()
    }

    #[test]
    fn nested_objects_flatten_to_dot_paths() {
        assert_eq!(paths(r#"{"a":{"b":{"c":[1]}},"d":[2]}"#), [["a.b.c", "d"]]);
    }

    #[test]
    fn or_forks_branches_including_fields_after_it() {
        let got = paths(r#"{"s":[1],"$or":[{"m":[1]},{"n":[1],"t":[1]}],"z":[1]}"#);
        assert_eq!(got, [vec!["s", "m", "z"], vec!["s", "n", "t", "z"]]);
    }

    #[test]
    fn duplicate_paths_last_wins_but_objects_merge() {
        let branches = compile(r#"{"a":{"b":[1]},"a":{"c":[2]},"a.b":[3]}"#).unwrap();
        assert_eq!(branches.len(), 1);
        let (paths, values): (Vec<_>, Vec<_>) = branches[0].iter().cloned().unzip();
        assert_eq!(paths, ["a.b", "a.c"]);
        let three: Node = Node::Number(3.into());
        assert_eq!(values[0], vec![parse_term(&three).unwrap()]);
    }

    #[test]
    fn structural_errors() {
        let err = |t: &str| compile(t).unwrap_err();
        assert_eq!(err(r#"{"eventSource":"aws:sqs"}"#), r#""eventSource" must be an object or an array"#);
        assert_eq!(err(r#"{"eventSource":[]}"#), "Empty arrays are not allowed");
        assert_eq!(err("{}"), "Empty objects are not allowed");
        assert_eq!(err("null"), "Filter is not an object");
        assert_eq!(err(r#"["a"]"#), "Filter is not an object");
        assert!(err(r#"[{"eventName": ["INSERT"=123}]"#).starts_with("malformed JSON"));
        assert_eq!(err(r#"{"$or":[{"a":[1]}]}"#), "There must have at least 2 Objects in $or relationship.");
        assert_eq!(
            err(r#"{"$or":[{"prefix":[1]},{"b":[1]}]}"#),
            "prefix is Ruler reserved fieldName which cannot be used inside $or."
        );
    }

    #[test]
    fn legacy_or_field_names() {
        assert_eq!(paths(r#"{"$or":{"a":[1]}}"#), [["$or.a"]]);
        assert_eq!(paths(r#"{"$or":["x","y"]}"#), [["$or"]]);
    }

    #[test]
    fn or_explosion_is_bounded() {
        let one = r#""$or":[{"a":[1]},{"b":[1]}]"#;
        let mut text = String::from("{");
        for depth in 0..11 {
            text.push_str(&format!(r#""k{depth}":{{{one}}},"#));
        }
        text.push_str(r#""z":[1]}"#);
        assert!(compile(&text).unwrap_err().contains("too complex"));
    }
}
