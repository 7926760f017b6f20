//! Per-request payloads from a file (`payloads_file`, `--payloads`): JSON Lines or CSV, used in
//! file order or at random.
//!
//! * JSON Lines (`.jsonl`, `.ndjson`): each non-blank line is one payload, sent as written. Each
//!   must be valid JSON; an error names the line.
//! * CSV (`.csv`): the first row names the columns, and each further row is sent as a JSON object
//!   of those names to the row's values (strings, as CSV has no types).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;
use serde_json::{Map, Value};

use crate::scenario::PayloadOrder;

/// The payloads of one file and where the next one comes from.
#[derive(Debug, Clone)]
pub struct Payloads {
    items: Arc<[String]>,
    order: PayloadOrder,
    /// Round-robin position. Shared by clones of a plan, atomic only so the template stays `Sync`:
    /// the engine renders from one task.
    next: Arc<AtomicUsize>,
}

impl PartialEq for Payloads {
    fn eq(&self, other: &Payloads) -> bool {
        self.items == other.items && self.order == other.order
    }
}

impl Payloads {
    /// Parses `bytes` read from `path`; the extension picks the format.
    pub fn parse(path: &Path, bytes: &[u8], order: PayloadOrder) -> Result<Payloads, String> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let items = match extension.as_deref() {
            Some("jsonl" | "ndjson") => json_lines(bytes)?,
            Some("csv") => csv_rows(bytes)?,
            _ => {
                return Err(format!(
                    "{}: unknown format; name it .jsonl, .ndjson or .csv",
                    path.display()
                ));
            }
        };
        if items.is_empty() {
            return Err(format!("{}: no payloads in the file", path.display()));
        }
        Ok(Payloads::new(items, order))
    }

    pub fn new(items: Vec<String>, order: PayloadOrder) -> Payloads {
        assert!(!items.is_empty(), "at least one payload");
        Payloads {
            items: items.into(),
            order,
            next: Arc::default(),
        }
    }

    /// The next payload: in file order, or drawn from `rng` (repeatable with a seed).
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> &str {
        let i = match self.order {
            PayloadOrder::RoundRobin => {
                self.next.fetch_add(1, Ordering::Relaxed) % self.items.len()
            }
            PayloadOrder::Random => rng.random_range(0..self.items.len()),
        };
        &self.items[i]
    }
}

fn json_lines(bytes: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str::<serde::de::IgnoredAny>(line)
                .map(|_| line.trim().to_owned())
                .map_err(|e| format!("line {}: not JSON: {e}", i + 1))
        })
        .collect()
}

fn csv_rows(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut reader = csv::Reader::from_reader(bytes);
    let columns = reader
        .headers()
        .map_err(|e| format!("header row: {e}"))?
        .clone();
    reader
        .records()
        .map(|record| {
            let record = record.map_err(|e| match e.position() {
                Some(at) => format!("line {}: {e}", at.line()),
                None => e.to_string(),
            })?;
            let object: Map<String, Value> = columns
                .iter()
                .zip(record.iter())
                .map(|(column, value)| (column.to_owned(), Value::String(value.to_owned())))
                .collect();
            Ok(Value::Object(object).to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn draw(payloads: &Payloads, seed: u64, n: usize) -> Vec<String> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| payloads.next(&mut rng).to_owned()).collect()
    }

    #[test]
    fn json_lines_in_file_order() {
        let text = b"{\"id\": 1}\n\n{\"id\": 2}\r\n[3]\n";
        let payloads =
            Payloads::parse(Path::new("p.jsonl"), text, PayloadOrder::RoundRobin).unwrap();
        assert_eq!(
            draw(&payloads, 0, 5),
            [
                "{\"id\": 1}",
                "{\"id\": 2}",
                "[3]",
                "{\"id\": 1}",
                "{\"id\": 2}"
            ]
        );
    }

    #[test]
    fn random_order_follows_the_seed_and_uses_every_entry() {
        let items: Vec<String> = (0..5).map(|i| format!("{{\"i\":{i}}}")).collect();
        let a = Payloads::new(items.clone(), PayloadOrder::Random);
        let b = Payloads::new(items.clone(), PayloadOrder::Random);
        let drawn = draw(&a, 42, 200);
        assert_eq!(drawn, draw(&b, 42, 200));
        assert_ne!(drawn, draw(&b, 43, 200));
        let seen: std::collections::BTreeSet<_> = drawn.into_iter().collect();
        assert_eq!(seen, items.into_iter().collect());
    }

    #[test]
    fn csv_rows_become_json_objects() {
        let text = b"orderId,note\n17,\"a, quoted\"\"one\"\"\"\n18,plain\n";
        let payloads = Payloads::parse(Path::new("o.CSV"), text, PayloadOrder::RoundRobin).unwrap();
        let drawn = draw(&payloads, 0, 2);
        let rows: Vec<Value> = drawn
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect();
        assert_eq!(
            rows[0],
            serde_json::json!({"orderId": "17", "note": "a, quoted\"one\""})
        );
        assert_eq!(
            rows[1],
            serde_json::json!({"orderId": "18", "note": "plain"})
        );
    }

    #[test]
    fn errors_name_the_line_or_the_format() {
        let err = |name: &str, text: &[u8]| {
            Payloads::parse(Path::new(name), text, PayloadOrder::RoundRobin).unwrap_err()
        };
        assert!(err("p.jsonl", b"{}\n{nope\n").starts_with("line 2: not JSON"));
        assert!(err("p.csv", b"a,b\n1,2\n3\n").starts_with("line 3:"));
        assert!(err("p.txt", b"{}").contains("unknown format"));
        assert!(err("p.jsonl", b"\n\n").contains("no payloads"));
    }
}
