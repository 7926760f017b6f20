//! Scripted responses: which records fail, and what the function returns.
//!
//! Pure apart from the per-rule `times` budgets, which are atomics so concurrent invocations of one
//! function share them.

use std::sync::atomic::{AtomicU64, Ordering};

use regex::Regex;
use serde_json::{Value, json};

use super::config::{FailureMode, FunctionConfig, RuleAction};
use super::event::{Event, Shape};

/// A function's rules, compiled.
#[derive(Debug)]
pub(crate) struct RuleSet {
    rules: Vec<CompiledRule>,
    /// Invocations each rule has applied in, for `times`.
    used: Vec<AtomicU64>,
    mode: FailureMode,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    contains: Option<String>,
    regex: Option<Regex>,
    action: Action,
    times: Option<u64>,
}

#[derive(Debug, Clone)]
enum Action {
    Fail,
    Respond(String),
    Timeout,
}

/// What the function does with an event, before latency and random errors are applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Returns `body`; `failed` are the record ids listed in `batchItemFailures`.
    Return { body: Value, failed: Vec<String> },
    /// Returns a rule's literal text; `failed` are records failed by other rules.
    Respond { text: String, failed: Vec<String> },
    /// Raises an unhandled error.
    Raise { message: String },
    /// Runs into the function timeout.
    Timeout,
}

impl RuleSet {
    /// Compiles the function's rules. Errors only on an invalid regex, which validation reports first.
    pub(crate) fn compile(config: &FunctionConfig) -> Result<RuleSet, regex::Error> {
        let rules = config
            .rules
            .iter()
            .map(|rule| {
                Ok(CompiledRule {
                    contains: rule.body_contains.clone(),
                    regex: rule.body_matches.as_deref().map(Regex::new).transpose()?,
                    action: match rule.action {
                        RuleAction::Fail => Action::Fail,
                        RuleAction::Respond => {
                            Action::Respond(rule.response.clone().unwrap_or_default())
                        }
                        RuleAction::Timeout => Action::Timeout,
                    },
                    times: rule.times,
                })
            })
            .collect::<Result<Vec<_>, regex::Error>>()?;
        Ok(RuleSet::new(rules, config.failure_mode))
    }

    fn new(rules: Vec<CompiledRule>, mode: FailureMode) -> RuleSet {
        let used = rules.iter().map(|_| AtomicU64::new(0)).collect();
        RuleSet { rules, used, mode }
    }

    /// The same rules with unused budgets, for another function.
    pub(crate) fn fresh(&self) -> RuleSet {
        RuleSet::new(self.rules.clone(), self.mode)
    }

    /// Restores every `times` budget.
    pub(crate) fn reset(&self) {
        for used in &self.used {
            used.store(0, Ordering::Relaxed);
        }
    }

    /// Applies the rules to every record (first matching rule wins per record) and decides the
    /// response. Precedence: a timeout, then a raised error, then a literal response, then the
    /// normal return; a timeout or an exception ends the invocation before any response is written.
    pub(crate) fn evaluate(&self, event: &Event) -> Verdict {
        // Per invocation: whether each rule with a budget got one (claimed on its first match).
        let mut claims: Vec<Option<bool>> = vec![None; self.rules.len()];
        let mut failed = Vec::new();
        let mut raise = None;
        let mut respond = None;
        let mut timeout = false;
        for record in &event.records {
            let Some(i) = self.first_match(&record.body, &mut claims) else {
                continue;
            };
            match &self.rules[i].action {
                Action::Timeout => timeout = true,
                Action::Respond(text) => {
                    respond.get_or_insert(text);
                }
                Action::Fail => match &record.id {
                    Some(id) if event.is_batch() => failed.push(id.clone()),
                    _ => {
                        let what = if event.is_batch() {
                            "a record without id"
                        } else {
                            "the payload"
                        };
                        raise.get_or_insert_with(|| format!("{what} matched rules[{i}]"));
                    }
                },
            }
        }
        if timeout {
            return Verdict::Timeout;
        }
        if raise.is_none() && self.mode == FailureMode::Error && !failed.is_empty() {
            raise = Some(format!("failed records: {}", failed.join(", ")));
        }
        if let Some(message) = raise {
            return Verdict::Raise { message };
        }
        if let Some(text) = respond {
            return Verdict::Respond {
                text: text.clone(),
                failed,
            };
        }
        Verdict::Return {
            body: self.return_body(event, &failed),
            failed,
        }
    }

    fn first_match(&self, body: &str, claims: &mut [Option<bool>]) -> Option<usize> {
        (0..self.rules.len()).find(|&i| {
            let rule = &self.rules[i];
            let matches = rule.contains.as_deref().is_none_or(|s| body.contains(s))
                && rule.regex.as_ref().is_none_or(|r| r.is_match(body));
            matches && *claims[i].get_or_insert_with(|| self.claim(i))
        })
    }

    fn claim(&self, i: usize) -> bool {
        let Some(times) = self.rules[i].times else {
            return true;
        };
        self.used[i]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used < times).then_some(used + 1)
            })
            .is_ok()
    }

    /// What a function written for this event returns when it completes.
    fn return_body(&self, event: &Event, failed: &[String]) -> Value {
        let items: Vec<Value> = failed
            .iter()
            .map(|id| json!({ "itemIdentifier": id }))
            .collect();
        let report_items = self.mode == FailureMode::BatchItemFailures;
        match event.shape {
            Shape::Plain => Value::Null,
            Shape::Batch if report_items => json!({ "batchItemFailures": items }),
            Shape::Batch => Value::Null,
            Shape::Window { previous_count } => {
                let count = previous_count + event.records.len() as u64;
                let mut body = json!({ "state": { "count": count } });
                if report_items {
                    body["batchItemFailures"] = Value::Array(items);
                }
                body
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::simulate::config::Rule;

    fn rules(mode: FailureMode, rules: Vec<Rule>) -> RuleSet {
        RuleSet::compile(&FunctionConfig {
            failure_mode: mode,
            rules,
            ..FunctionConfig::default()
        })
        .unwrap()
    }

    fn fail_if_contains(s: &str) -> Rule {
        Rule {
            body_contains: Some(s.to_owned()),
            ..Rule::default()
        }
    }

    fn sqs(bodies: &[&str]) -> Event {
        let records: Vec<Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| json!({"messageId": format!("m{i}"), "body": b}))
            .collect();
        Event::parse(&json!({ "Records": records }))
    }

    fn returned(failed: &[&str]) -> Verdict {
        let items: Vec<Value> = failed
            .iter()
            .map(|id| json!({"itemIdentifier": id}))
            .collect();
        Verdict::Return {
            body: json!({"batchItemFailures": items}),
            failed: failed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn batch_item_failures_list_matching_records() {
        let set = rules(
            FailureMode::BatchItemFailures,
            vec![fail_if_contains("poison")],
        );
        assert_eq!(
            set.evaluate(&sqs(&["ok", "poison pill", "ok", "more poison"])),
            returned(&["m1", "m3"])
        );
        assert_eq!(set.evaluate(&sqs(&["ok"])), returned(&[]));
    }

    #[test]
    fn error_mode_raises_for_the_whole_invocation() {
        let set = rules(FailureMode::Error, vec![fail_if_contains("poison")]);
        assert_eq!(
            set.evaluate(&sqs(&["poison", "ok", "poison"])),
            Verdict::Raise {
                message: "failed records: m0, m2".to_owned()
            }
        );
        assert_eq!(
            set.evaluate(&sqs(&["ok"])),
            Verdict::Return {
                body: Value::Null,
                failed: vec![]
            }
        );
    }

    #[test]
    fn substring_and_regex_must_both_hold() {
        let rule = Rule {
            body_contains: Some("order".to_owned()),
            body_matches: Some(r"^order-\d+$".to_owned()),
            ..Rule::default()
        };
        let set = rules(FailureMode::BatchItemFailures, vec![rule]);
        assert_eq!(
            set.evaluate(&sqs(&["order-12", "order-x", "invoice-3"])),
            returned(&["m0"])
        );
    }

    #[test]
    fn first_matching_rule_wins_per_record() {
        let respond = Rule {
            body_contains: Some("special".to_owned()),
            action: RuleAction::Respond,
            response: Some("{\"batchItemFailures\":[{\"foo\":1}]}".to_owned()),
            ..Rule::default()
        };
        // "special poison" hits the respond rule first; the plain "poison" record still fails.
        let set = rules(
            FailureMode::BatchItemFailures,
            vec![respond, fail_if_contains("poison")],
        );
        assert_eq!(
            set.evaluate(&sqs(&["special poison", "poison"])),
            Verdict::Respond {
                text: "{\"batchItemFailures\":[{\"foo\":1}]}".to_owned(),
                failed: vec!["m1".to_owned()],
            }
        );
    }

    #[test]
    fn timeout_beats_everything() {
        let timeout = Rule {
            body_contains: Some("slow".to_owned()),
            action: RuleAction::Timeout,
            ..Rule::default()
        };
        let set = rules(
            FailureMode::Error,
            vec![timeout, fail_if_contains("poison")],
        );
        assert_eq!(set.evaluate(&sqs(&["poison", "slow"])), Verdict::Timeout);
    }

    #[test]
    fn rule_without_conditions_matches_everything() {
        let set = rules(FailureMode::BatchItemFailures, vec![Rule::default()]);
        assert_eq!(set.evaluate(&sqs(&["a", "b"])), returned(&["m0", "m1"]));
    }

    #[test]
    fn plain_payload_failure_raises_in_either_mode() {
        let set = rules(
            FailureMode::BatchItemFailures,
            vec![fail_if_contains("boom")],
        );
        assert_eq!(
            set.evaluate(&Event::parse(&json!({"op": "boom"}))),
            Verdict::Raise {
                message: "the payload matched rules[0]".to_owned()
            }
        );
        assert_eq!(
            set.evaluate(&Event::parse(&json!({"op": "fine"}))),
            Verdict::Return {
                body: Value::Null,
                failed: vec![]
            }
        );
    }

    #[test]
    fn times_limits_the_invocations_a_rule_applies_in() {
        let rule = Rule {
            times: Some(2),
            ..fail_if_contains("poison")
        };
        let set = rules(FailureMode::BatchItemFailures, vec![rule]);
        // Two matching records in one invocation use one unit of the budget.
        assert_eq!(
            set.evaluate(&sqs(&["poison", "poison"])),
            returned(&["m0", "m1"])
        );
        assert_eq!(set.evaluate(&sqs(&["ok"])), returned(&[]));
        assert_eq!(set.evaluate(&sqs(&["poison"])), returned(&["m0"]));
        assert_eq!(set.evaluate(&sqs(&["poison"])), returned(&[]));
        // A fresh copy (another function) and a reset both start over.
        assert_eq!(set.fresh().evaluate(&sqs(&["poison"])), returned(&["m0"]));
        set.reset();
        assert_eq!(set.evaluate(&sqs(&["poison"])), returned(&["m0"]));
    }

    #[test]
    fn tumbling_window_carries_the_count() {
        let event = |count: u64, bodies: &[&str]| {
            let records: Vec<Value> = bodies
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    use base64::Engine as _;
                    let data = base64::engine::general_purpose::STANDARD.encode(b);
                    json!({"kinesis": {"sequenceNumber": i.to_string(), "data": data}})
                })
                .collect();
            Event::parse(&json!({"Records": records, "window": {}, "state": {"count": count}}))
        };
        let set = rules(
            FailureMode::BatchItemFailures,
            vec![fail_if_contains("poison")],
        );
        assert_eq!(
            set.evaluate(&event(5, &["a", "poison", "c"])),
            Verdict::Return {
                body: json!({"state": {"count": 8}, "batchItemFailures": [{"itemIdentifier": "1"}]}),
                failed: vec!["1".to_owned()],
            }
        );
        let error_mode = rules(FailureMode::Error, vec![]);
        assert_eq!(
            error_mode.evaluate(&event(0, &["a"])),
            Verdict::Return {
                body: json!({"state": {"count": 1}}),
                failed: vec![]
            }
        );
    }
}
