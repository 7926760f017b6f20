//! `${VAR}` and `${VAR:-default}` in the string values of a mapping file, so one file serves several
//! environments (account ids, regions, queue names). `$$` is a literal `$`; any other `$` is kept as is
//! (filter patterns use keys such as `$or`). The syntax is the shell's and Docker Compose's: `:-` takes the
//! default when the variable is unset *or empty*.
//!
//! Only string values are interpolated, after the JSON is parsed: a value can never break the JSON around
//! it, and an error names the field it is in.

/// Why a string could not be interpolated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${NAME}` without a default, and `NAME` is not set.
    Unset(String),
    /// `${` without its closing `}`.
    Unterminated,
    /// `${...}` whose name is not `[A-Za-z_][A-Za-z0-9_]*`.
    BadName(String),
}

impl std::fmt::Display for InterpolateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpolateError::Unset(name) => write!(
                f,
                "environment variable {name} is not set (set it, or give a default: ${{{name}:-value}})"
            ),
            InterpolateError::Unterminated => f.write_str("`${` without a closing `}` (write `$$` for a literal `$`)"),
            InterpolateError::BadName(name) => write!(
                f,
                "`${{{name}}}`: a variable name is letters, digits and `_`, not starting with a digit \
                 (write `$$` for a literal `$`)"
            ),
        }
    }
}

/// Replace every `${NAME}` / `${NAME:-default}` in `text` using `lookup`, and `$$` by `$`.
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(InterpolateError::Unterminated)?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_name(name) {
                return Err(InterpolateError::BadName(inner.to_owned()));
            }
            match (lookup(name).filter(|v| default.is_none() || !v.is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(InterpolateError::Unset(name.to_owned())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "REGION" => Some("eu-west-1".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, InterpolateError> {
        interpolate(text, &env)
    }

    #[test]
    fn replaces_variables_and_defaults() {
        assert_eq!(run("arn:aws:sqs:${REGION}:1:q").unwrap(), "arn:aws:sqs:eu-west-1:1:q");
        assert_eq!(run("${ACCOUNT:-123456789012}").unwrap(), "123456789012");
        assert_eq!(run("${REGION:-us-east-1}").unwrap(), "eu-west-1");
        // `:-` also replaces an empty value, as in the shell; `${EMPTY}` alone is the empty string.
        assert_eq!(run("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(run("a${EMPTY}b").unwrap(), "ab");
        assert_eq!(run("${A:-}x").unwrap(), "x");
    }

    #[test]
    fn dollar_escapes_and_lone_dollars() {
        assert_eq!(run("$${REGION}").unwrap(), "${REGION}");
        assert_eq!(run("{\"$or\":[1]} costs $5 $").unwrap(), "{\"$or\":[1]} costs $5 $");
        assert_eq!(run("$$$$").unwrap(), "$$");
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(run("x${ACCOUNT}y"), Err(InterpolateError::Unset("ACCOUNT".into())));
        assert_eq!(run("${REGION"), Err(InterpolateError::Unterminated));
        assert_eq!(run("${1X}"), Err(InterpolateError::BadName("1X".into())));
        assert_eq!(run("${}"), Err(InterpolateError::BadName(String::new())));
        assert!(InterpolateError::Unset("ACCOUNT".into()).to_string().contains("ACCOUNT is not set"));
    }

    proptest::proptest! {
        /// Text without `$` is returned unchanged; escaping every `$` as `$$` round-trips any text.
        #[test]
        fn escaped_text_round_trips(text in ".*") {
            let escaped = text.replace('$', "$$");
            proptest::prop_assert_eq!(run(&escaped).unwrap(), text);
        }
    }
}
