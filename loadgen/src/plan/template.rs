//! Payload templates: the request body with `{{placeholders}}` filled in for each request.
//!
//! | placeholder | value |
//! |---|---|
//! | `{{seq}}` | the request's number in the run, from 0 |
//! | `{{uuid}}` | a random UUID (v4) |
//! | `{{timestamp_ms}}` | Unix time in milliseconds when the request is built |
//! | `{{random_int MIN MAX}}` | a random integer, both bounds inclusive |
//! | `{{random_string LEN}}` | LEN random letters and digits |
//!
//! Parsed once, rendered per request into a reused buffer. Random values come from the run's
//! RNG, so a seeded scenario sends the same bodies. A template can also stand for a payloads
//! file ([`Template::pick`]): each rendering is then the file's next payload.

use std::fmt::Write as _;

use rand::Rng;
use rand::distr::{Alphanumeric, SampleString};

use super::Payloads;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Seq,
    Uuid,
    TimestampMs,
    RandomInt(i64, i64),
    RandomString(usize),
    /// The next payload of a file.
    Pick(Payloads),
}

/// What a placeholder can refer to besides randomness.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub seq: u64,
    pub unix_ms: u64,
}

const KNOWN: &str = "seq, uuid, timestamp_ms, random_int MIN MAX, random_string LEN";

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "`{{{{` at byte {} is never closed",
                    text.len() - rest.len() + open
                )
            })?;
            parts.push(placeholder(after[..close].trim())?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// A template whose every rendering is the next of `payloads`.
    pub fn pick(payloads: Payloads) -> Template {
        Template {
            parts: vec![Part::Pick(payloads)],
        }
    }

    /// Renders into `out` (cleared first).
    pub fn render<R: Rng + ?Sized>(&self, context: Context, rng: &mut R, out: &mut String) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Text(text) => {
                    out.push_str(text);
                    Ok(())
                }
                Part::Seq => write!(out, "{}", context.seq),
                Part::Uuid => write!(
                    out,
                    "{}",
                    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
                ),
                Part::TimestampMs => write!(out, "{}", context.unix_ms),
                Part::RandomInt(min, max) => write!(out, "{}", rng.random_range(*min..=*max)),
                Part::RandomString(len) => {
                    Alphanumeric.append_string(rng, out, *len);
                    Ok(())
                }
                Part::Pick(payloads) => {
                    out.push_str(payloads.next(rng));
                    Ok(())
                }
            }
            .expect("writing to a String cannot fail");
        }
    }
}

fn placeholder(spec: &str) -> Result<Part, String> {
    let mut words = spec.split_whitespace();
    let name = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let int = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("`{{{{{spec}}}}}`: `{s}` is not an integer"))
    };
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("`{{{{{spec}}}}}`: `{name}` takes {n} argument(s)"))
        }
    };
    match name {
        "seq" => arity(0).map(|()| Part::Seq),
        "uuid" => arity(0).map(|()| Part::Uuid),
        "timestamp_ms" => arity(0).map(|()| Part::TimestampMs),
        "random_int" => {
            arity(2)?;
            let (min, max) = (int(args[0])?, int(args[1])?);
            if min > max {
                return Err(format!("`{{{{{spec}}}}}`: MIN is larger than MAX"));
            }
            Ok(Part::RandomInt(min, max))
        }
        "random_string" => {
            arity(1)?;
            let len = usize::try_from(int(args[0])?)
                .map_err(|_| format!("`{{{{{spec}}}}}`: LEN must not be negative"))?;
            Ok(Part::RandomString(len))
        }
        _ => Err(format!(
            "unknown placeholder `{{{{{spec}}}}}` (known: {KNOWN})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn render(template: &str, seq: u64, seed: u64) -> String {
        let mut out = String::new();
        let context = Context {
            seq,
            unix_ms: 1_700_000_000_123,
        };
        Template::parse(template).unwrap().render(
            context,
            &mut StdRng::seed_from_u64(seed),
            &mut out,
        );
        out
    }

    #[test]
    fn text_without_placeholders_is_kept() {
        assert_eq!(render(r#"{"a": {"b": 1}}"#, 0, 0), r#"{"a": {"b": 1}}"#);
        assert_eq!(render("", 0, 0), "");
    }

    #[test]
    fn placeholders_are_filled() {
        let out = render(
            r#"{"n": {{seq}}, "t": {{ timestamp_ms }}, "id": "{{uuid}}", "v": {{random_int 5 5}}, "s": "{{random_string 8}}"}"#,
            41,
            7,
        );
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["n"], 41);
        assert_eq!(value["t"], 1_700_000_000_123u64);
        assert_eq!(value["v"], 5);
        let id = uuid::Uuid::parse_str(value["id"].as_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 4);
        let s = value["s"].as_str().unwrap();
        assert_eq!(s.len(), 8);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn random_values_follow_the_seed_and_bounds() {
        let t = "{{uuid}} {{random_int -3 3}}";
        assert_eq!(render(t, 0, 1), render(t, 0, 1));
        assert_ne!(render(t, 0, 1), render(t, 0, 2));
        let template = Template::parse("{{random_int -3 3}}").unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let mut out = String::new();
        let context = Context { seq: 0, unix_ms: 0 };
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            template.render(context, &mut rng, &mut out);
            seen.insert(out.parse::<i64>().unwrap());
        }
        assert_eq!(seen, (-3..=3).collect());
    }

    #[test]
    fn bad_templates_are_explained() {
        let err = |t: &str| Template::parse(t).unwrap_err();
        assert!(err("{{nope}}").contains("unknown placeholder `{{nope}}`"));
        assert!(err("a {{seq").contains("never closed"));
        assert!(err("{{random_int 1}}").contains("takes 2 argument(s)"));
        assert!(err("{{random_int 9 1}}").contains("MIN is larger"));
        assert!(err("{{random_string x}}").contains("not an integer"));
        assert!(err("{{seq 1}}").contains("takes 0"));
    }
}
