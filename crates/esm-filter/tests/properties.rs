//! Property tests: algebraic laws of the pattern language, and robustness on arbitrary input.

use base64::Engine as _;
use esm_filter::{Filters, Member, Pattern, Source};
use proptest::prelude::*;
use serde_json::{Value, json};

fn pattern(p: &Value) -> Pattern {
    Pattern::compile(&p.to_string()).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Short strings over a small alphabet, so that equalities and prefixes actually happen.
fn word() -> impl Strategy<Value = String> {
    "[abAB*]{0,4}"
}

/// Any JSON value, nested a few levels, with keys drawn from a small set.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-1_000_000i64..1_000_000).prop_map(|n| json!(n as f64 / 1000.0)),
        "[a-z0-9 .:/{}\"\\[\\]]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (prop::sample::select(vec!["a", "b", "body", "data", "kinesis", "dynamodb", "NewImage", "S", "x.y"]), inner),
                0..5
            )
            .prop_map(|members| Value::Object(members.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// A fixed set of patterns touching every operator, for the robustness properties.
const PATTERNS: &[&str] = &[
    r#"{"a":["x",1,true,null],"b":{"S":[{"prefix":"a"},{"suffix":"b"}]}}"#,
    r#"{"a":[{"anything-but":["x","y"]}],"b":[{"numeric":[">",0,"<=",5]}]}"#,
    r#"{"$or":[{"a":[{"exists":false}]},{"b":{"a":[{"exists":true}]}}]}"#,
    r#"{"a":[{"wildcard":"*a*b"},{"equals-ignore-case":"AB"},{"cidr":"10.0.0.0/8"}]}"#,
    r#"{"x.y":[{"anything-but":{"prefix":"a"}}],"a":{"b":[{"anything-but":{"wildcard":"a*"}}]}}"#,
];
const SQS_PATTERNS: &[&str] =
    &[r#"{"body":{"a":["x"],"b":[{"exists":false}]}}"#, r#"{"body":[{"prefix":"a"}]}"#, r#"{"a":["x"]}"#];
const KINESIS_PATTERNS: &[&str] = &[r#"{"data":{"a":[{"numeric":["<",3]}]},"partitionKey":["1"]}"#, r#"{"a":["x"]}"#];
const DDB_PATTERNS: &[&str] = &[r#"{"dynamodb":{"NewImage":{"a":{"S":["x"]}}}}"#, r#"{"a":[{"exists":true}]}"#];

/// Reference glob matcher (dynamic programming) to check the wildcard operator against.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let mut dp = vec![vec![false; t.len() + 1]; p.len() + 1];
    dp[0][0] = true;
    for i in 1..=p.len() {
        dp[i][0] = dp[i - 1][0] && p[i - 1] == '*';
        for j in 1..=t.len() {
            dp[i][j] = if p[i - 1] == '*' { dp[i - 1][j] || dp[i][j - 1] } else { dp[i - 1][j - 1] && p[i - 1] == t[j - 1] };
        }
    }
    dp[p.len()][t.len()]
}

proptest! {
    #[test]
    fn anything_but_strings_negates_equality(excluded in prop::collection::vec(word(), 1..4), value in word()) {
        let event = json!({"f": value});
        let equal = pattern(&json!({"f": excluded.clone()})).matches(&event);
        let but = pattern(&json!({"f": [{"anything-but": excluded}]})).matches(&event);
        prop_assert_eq!(but, !equal);
    }

    #[test]
    fn anything_but_numbers_negates_equality(excluded in prop::collection::vec(-2000i64..2000, 1..4), value in -2000i64..2000) {
        let as_decimal = |n: i64| json!(n as f64 / 100.0);
        let event = json!({"f": as_decimal(value)});
        let list: Vec<Value> = excluded.iter().map(|&n| as_decimal(n)).collect();
        let equal = pattern(&json!({"f": list.clone()})).matches(&event);
        let but = pattern(&json!({"f": [{"anything-but": list}]})).matches(&event);
        prop_assert_eq!(but, !equal);
    }

    #[test]
    fn anything_but_prefix_suffix_ignore_case_negate(op in prop::sample::select(vec!["prefix", "suffix", "equals-ignore-case", "wildcard"]),
                                                     operand in "[abAB]{1,3}", value in word()) {
        let event = json!({"f": value});
        let plain = pattern(&json!({"f": [{op: operand.clone()}]})).matches(&event);
        let but = pattern(&json!({"f": [{"anything-but": {op: operand}}]})).matches(&event);
        prop_assert_eq!(but, !plain);
    }

    #[test]
    fn filters_are_the_or_of_their_patterns(chosen in prop::collection::vec(0..PATTERNS.len(), 1..5), event in json_value()) {
        let patterns: Vec<&str> = chosen.iter().map(|&i| PATTERNS[i]).collect();
        let together = Filters::compile(Source::DynamoDb, &patterns).unwrap().matches(&event);
        let any = patterns.iter().any(|p| Filters::compile(Source::DynamoDb, &[p]).unwrap().matches(&event));
        prop_assert_eq!(together, any);
    }

    #[test]
    fn numeric_range_agrees_with_decimal_comparison(low in -100_000i64..100_000, width in 1i64..100_000, x in -200_000i64..200_000,
                                                    low_inclusive: bool, high_inclusive: bool) {
        // Bounds and value with two decimals: exact in the engine's micro-unit domain.
        let high = low + width;
        let d = |n: i64| json!(n as f64 / 100.0);
        let ops = (if low_inclusive { ">=" } else { ">" }, if high_inclusive { "<=" } else { "<" });
        let p = pattern(&json!({"n": [{"numeric": [ops.0, d(low), ops.1, d(high)]}]}));
        let above = if low_inclusive { x >= low } else { x > low };
        let below = if high_inclusive { x <= high } else { x < high };
        prop_assert_eq!(p.matches(&json!({"n": d(x)})), above && below);
    }

    #[test]
    fn wildcard_agrees_with_reference_glob(w in "(\\*?[ab]){0,5}\\*?", text in "[ab]{0,8}") {
        let p = pattern(&json!({"f": [{"wildcard": w.clone()}]}));
        prop_assert_eq!(p.matches(&json!({"f": text.clone()})), glob(&w, &text));
    }

    #[test]
    fn matching_the_json_text_agrees_with_matching_the_value(event in json_value(), body in json_value(), body_is_text: bool) {
        let body = if body_is_text { body.as_str().unwrap_or("text").to_owned() } else { body.to_string() };
        let data = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
        let cases = [
            (Source::Sqs, SQS_PATTERNS, json!({"body": body, "a": event.clone()})),
            (Source::Sqs, PATTERNS, event.clone()),
            (Source::Kinesis, KINESIS_PATTERNS, json!({"kinesis": {"partitionKey": "1", "data": data}, "a": event.clone()})),
            (Source::Kinesis, KINESIS_PATTERNS, json!({"kinesis": event.clone(), "data": event.clone()})),
            (Source::DynamoDb, DDB_PATTERNS, json!({"dynamodb": event.clone(), "a": event.clone()})),
            (Source::DynamoDb, PATTERNS, event.clone()),
        ];
        for (source, patterns, record) in cases {
            let filters = Filters::compile(source, patterns).unwrap();
            prop_assert_eq!(filters.matches_json(record.to_string().as_bytes()), filters.matches(&record), "{:?} {}", source, record);
        }
    }

    #[test]
    fn matching_kinesis_members_agrees_with_matching_the_record(
        key in word(),
        body in json_value(),
        body_is_text: bool,
        bad_base64: bool,
        millis in 0i64..10_000_000_000_000,
        region in prop::sample::select(vec!["us-east-1", "eu-west-1"]),
    ) {
        let body = if body_is_text { body.as_str().unwrap_or("text").to_owned() } else { body.to_string() };
        let data = if bad_base64 { format!("{body}!") } else { base64::engine::general_purpose::STANDARD.encode(body.as_bytes()) };
        let arrival = millis as f64 / 1000.0;
        let sequence = format!("4959{millis}");
        let event_id = format!("shardId-000000000000:{sequence}");
        let record = json!({
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": key, "sequenceNumber": sequence, "data": data,
                        "approximateArrivalTimestamp": arrival},
            "eventSource": "aws:kinesis", "eventID": event_id, "awsRegion": region,
        });
        let members = [
            ("kinesisSchemaVersion", Member::Str("1.0")),
            ("partitionKey", Member::Str(&key)),
            ("sequenceNumber", Member::Str(&sequence)),
            ("approximateArrivalTimestamp", Member::Float(arrival)),
            ("eventSource", Member::Str("aws:kinesis")),
            ("eventID", Member::Str(&event_id)),
            ("awsRegion", Member::Str(region)),
        ];
        let patterns: &[&[&str]] = &[
            KINESIS_PATTERNS,
            PATTERNS,
            &[r#"{"approximateArrivalTimestamp":[{"numeric":[">",1000000000]}],"awsRegion":["eu-west-1"]}"#],
            &[r#"{"eventID":[{"prefix":"shardId-000000000000:49591"}]}"#, r#"{"partitionKey":[{"wildcard":"a*"}]}"#],
            &[r#"{"data":{"a":[{"exists":false}]},"kinesisSchemaVersion":["1.0"]}"#],
            &[],
        ];
        for patterns in patterns {
            let filters = Filters::compile(Source::Kinesis, patterns).unwrap();
            prop_assert_eq!(filters.matches_kinesis(&data, &members), filters.matches(&record), "{:?} {}", patterns, record);
        }
    }

    #[test]
    fn matching_never_panics(event in json_value(), body in json_value(), body_is_text: bool) {
        for source in [Source::Sqs, Source::Kinesis, Source::DynamoDb] {
            let filters = Filters::compile(source, PATTERNS).unwrap();
            filters.matches(&event);
        }
        let body = if body_is_text { body.as_str().unwrap_or("text").to_owned() } else { body.to_string() };
        let sqs = json!({"body": body, "a": event.clone()});
        Filters::compile(Source::Sqs, SQS_PATTERNS).unwrap().matches(&sqs);
        let data = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
        let kinesis = json!({"kinesis": {"partitionKey": "1", "data": data}, "a": event.clone()});
        Filters::compile(Source::Kinesis, KINESIS_PATTERNS).unwrap().matches(&kinesis);
        let kinesis_raw = json!({"kinesis": event.clone(), "data": event.clone()});
        Filters::compile(Source::Kinesis, KINESIS_PATTERNS).unwrap().matches(&kinesis_raw);
        let ddb = json!({"dynamodb": event.clone(), "a": event});
        Filters::compile(Source::DynamoDb, DDB_PATTERNS).unwrap().matches(&ddb);
    }

    #[test]
    fn compiling_never_panics(p in json_value(), text in "\\PC{0,40}") {
        for source in [Source::Sqs, Source::Kinesis, Source::DynamoDb] {
            if let Ok(filters) = Filters::compile(source, &[&p.to_string()]) {
                filters.matches(&p);
            }
        }
        if let Ok(compiled) = Pattern::compile(&text) {
            compiled.matches(&Value::String(text));
        }
    }
}
