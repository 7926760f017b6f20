//! String operators whose semantics need more than `==`: ignore-case and wildcard.

/// Text compared without regard to case, the way Ruler does it: every pattern character may
/// appear in the event as its lower-case or its upper-case form (Unicode default mappings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caseless {
    /// All-ASCII pattern: ASCII case folding is then exactly Ruler's rule, and much faster.
    Ascii(String),
    /// Per pattern character, the accepted spellings (one or two distinct strings).
    Unicode(Vec<Vec<String>>),
}

/// Where the caseless text must sit in the event string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    Whole,
    Start,
    End,
}

impl Caseless {
    pub(crate) fn new(pattern: &str) -> Caseless {
        if pattern.is_ascii() {
            return Caseless::Ascii(pattern.to_owned());
        }
        let alternatives = pattern
            .chars()
            .map(|c| {
                let lower: String = c.to_lowercase().collect();
                let upper: String = c.to_uppercase().collect();
                if lower == upper { vec![lower] } else { vec![lower, upper] }
            })
            .collect();
        Caseless::Unicode(alternatives)
    }

    pub(crate) fn matches(&self, value: &str, anchor: Anchor) -> bool {
        match self {
            Caseless::Ascii(p) => {
                let (p, v) = (p.as_bytes(), value.as_bytes());
                match anchor {
                    Anchor::Whole => v.eq_ignore_ascii_case(p),
                    Anchor::Start => v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p),
                    Anchor::End => v.len() >= p.len() && v[v.len() - p.len()..].eq_ignore_ascii_case(p),
                }
            }
            Caseless::Unicode(alts) => match anchor {
                Anchor::Whole => forward(alts, value, true),
                Anchor::Start => forward(alts, value, false),
                Anchor::End => backward(alts, value),
            },
        }
    }
}

fn forward(alts: &[Vec<String>], value: &str, whole: bool) -> bool {
    match alts.split_first() {
        None => !whole || value.is_empty(),
        Some((choices, rest)) => choices
            .iter()
            .any(|c| value.strip_prefix(c.as_str()).is_some_and(|r| forward(rest, r, whole))),
    }
}

fn backward(alts: &[Vec<String>], value: &str) -> bool {
    match alts.split_last() {
        None => true,
        Some((choices, rest)) => choices
            .iter()
            .any(|c| value.strip_suffix(c.as_str()).is_some_and(|r| backward(rest, r))),
    }
}

/// A `wildcard` pattern: `*` matches any run of characters (including none); `\*` and `\\`
/// stand for a literal star and backslash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wildcard {
    /// The literal pieces between the stars; one more than the number of stars.
    pieces: Vec<String>,
}

impl Wildcard {
    /// Parses with Ruler's rules: consecutive stars and any other escape are errors.
    pub(crate) fn parse(pattern: &str) -> Result<Wildcard, String> {
        let mut pieces = vec![String::new()];
        let mut previous_was_star = false;
        let mut chars = pattern.chars().enumerate();
        while let Some((pos, c)) = chars.next() {
            match c {
                '*' if previous_was_star => {
                    return Err(format!("Consecutive wildcard characters at pos {pos}"));
                }
                '*' => {
                    pieces.push(String::new());
                    previous_was_star = true;
                    continue;
                }
                '\\' => match chars.next() {
                    Some((_, escaped @ ('*' | '\\'))) => last(&mut pieces).push(escaped),
                    _ => return Err(format!("Invalid escape character at pos {pos}")),
                },
                other => last(&mut pieces).push(other),
            }
            previous_was_star = false;
        }
        Ok(Wildcard { pieces })
    }

    pub(crate) fn matches(&self, value: &str) -> bool {
        let (first, rest) = self.pieces.split_first().expect("at least one piece");
        let Some((last, middle)) = rest.split_last() else {
            return value == first;
        };
        let Some(value) = value.strip_prefix(first.as_str()) else { return false };
        let Some(mut value) = value.strip_suffix(last.as_str()) else { return false };
        // Leftmost placement of each middle piece is optimal for star-only globs.
        for piece in middle {
            match value.find(piece.as_str()) {
                Some(at) => value = &value[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

fn last(pieces: &mut [String]) -> &mut String {
    pieces.last_mut().expect("at least one piece")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caseless_ascii_and_unicode() {
        let c = Caseless::new("EventB");
        assert!(c.matches("eventbridge", Anchor::Start));
        assert!(c.matches("EVENTB", Anchor::Whole));
        assert!(!c.matches("eventc", Anchor::Start));
        let u = Caseless::new("Ärger");
        assert!(u.matches("äRGER", Anchor::Whole));
        assert!(u.matches("großer ÄRGER", Anchor::End));
        assert!(!u.matches("arger", Anchor::Whole));
    }

    #[test]
    fn wildcard_semantics() {
        let w = Wildcard::parse("*/lib/*").unwrap();
        assert!(w.matches("/usr/lib/x"));
        assert!(w.matches("/lib/"));
        assert!(!w.matches("/usr/bin/x"));
        let w = Wildcard::parse("a*b*c").unwrap();
        assert!(w.matches("abc"));
        assert!(w.matches("aXbYbZc"));
        assert!(!w.matches("acb"));
        assert!(!w.matches("ab"));
        let w = Wildcard::parse("ab*ba").unwrap();
        assert!(!w.matches("aba"), "prefix and suffix must not overlap");
        let w = Wildcard::parse(r"a\*b").unwrap();
        assert!(w.matches("a*b"));
        assert!(!w.matches("axb"));
    }

    #[test]
    fn wildcard_errors() {
        assert!(Wildcard::parse("a**b").unwrap_err().starts_with("Consecutive wildcard"));
        assert!(Wildcard::parse(r"a\b").unwrap_err().starts_with("Invalid escape"));
        assert!(Wildcard::parse("a\\").unwrap_err().starts_with("Invalid escape"));
    }
}
