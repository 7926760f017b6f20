use super::*;

fn errors(json: &str) -> Vec<String> {
    match load(json) {
        Ok(_) => panic!("expected errors for {json}"),
        Err(e) => e.errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect(),
    }
}

const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:orders";

#[test]
fn sqs_defaults_follow_aws() {
    let m = load(&format!(r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"fn"}}"#)).unwrap();
    assert_eq!(m.batch_size, 10);
    assert_eq!(m.batching_window, Duration::ZERO);
    assert!(m.enabled);
    assert!(!m.report_batch_item_failures);
    assert!(m.filters.is_empty());
    assert_eq!(m.settings, SourceSettings::Sqs(SqsSettings { maximum_concurrency: None }));
}

#[test]
fn uuid_is_stable_without_one_in_the_file() {
    let json = format!(r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"fn"}}"#);
    assert_eq!(load(&json).unwrap().uuid, load(&json).unwrap().uuid);
    let given = format!(r#"{{"UUID":"abc","EventSourceArn":"{QUEUE}","FunctionName":"fn"}}"#);
    assert_eq!(load(&given).unwrap().uuid, "abc");
}

#[test]
fn full_sqs_definition_is_accepted() {
    let m = load(&format!(
        r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"arn:aws:lambda:us-east-1:123456789012:function:fn",
            "Enabled":true,"BatchSize":100,"MaximumBatchingWindowInSeconds":5,
            "FunctionResponseTypes":["ReportBatchItemFailures"],
            "ScalingConfig":{{"MaximumConcurrency":4}},
            "FilterCriteria":{{"Filters":[{{"Pattern":"{{\"body\":{{\"kind\":[\"order\"]}}}}"}}]}},
            "Tags":{{"team":"a"}},"MetricsConfig":{{"Metrics":["EventCount"]}}}}"#
    ))
    .unwrap();
    assert_eq!(m.batch_size, 100);
    assert_eq!(m.batching_window, Duration::from_secs(5));
    assert!(m.report_batch_item_failures);
    assert!(!m.filters.is_empty());
    assert_eq!(m.settings, SourceSettings::Sqs(SqsSettings { maximum_concurrency: Some(4) }));
    assert_eq!(m.ignored_keys, vec!["Tags", "MetricsConfig"]);
}

#[test]
fn get_response_shape_is_accepted() {
    let m = load(&format!(
        r#"{{"UUID":"u-1","BatchSize":10,"EventSourceArn":"{QUEUE}",
            "EventSourceMappingArn":"arn:aws:lambda:us-east-1:123456789012:event-source-mapping:u-1",
            "FunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:fn","FunctionResponseTypes":[],
            "LastModified":1700000000.0,"MaximumBatchingWindowInSeconds":0,"State":"Enabled",
            "StateTransitionReason":"USER_INITIATED"}}"#
    ))
    .unwrap();
    assert_eq!(m.function_name, "arn:aws:lambda:us-east-1:123456789012:function:fn");
    assert_eq!(m.uuid, "u-1");
}

#[test]
fn unknown_key_is_named() {
    let e = errors(&format!(r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"f","BatchSzie":5}}"#));
    assert!(e[0].contains("BatchSzie"), "{e:?}");
}

#[test]
fn type_error_names_the_field() {
    let e = errors(&format!(r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"f","BatchSize":"ten"}}"#));
    assert!(e[0].starts_with("BatchSize: invalid type"), "{e:?}");
    let e = errors(r#"{"FilterCriteria":{"Filters":[{"Patern":"{}"}]}}"#);
    assert!(e[0].starts_with("FilterCriteria.Filters[0].Patern: unknown field `Patern`, expected `Pattern`"), "{e:?}");
}

#[test]
fn malformed_json_is_reported_with_position() {
    let e = errors("{\"EventSourceArn\": ");
    assert!(e[0].contains("line 1"), "{e:?}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = errors(&format!(
        r#"{{"EventSourceArn":"{QUEUE}","BatchSize":20000,"MaximumBatchingWindowInSeconds":301,
            "FunctionResponseTypes":["Nope"],"StartingPosition":"LATEST"}}"#
    ));
    let joined = e.join("\n");
    for needle in [
        "FunctionName: is required",
        "BatchSize: must be between 1 and 10000, got 20000",
        "MaximumBatchingWindowInSeconds: must be between 0 and 300, got 301",
        "FunctionResponseTypes: unknown value \"Nope\"",
        "StartingPosition: is not supported for SQS event sources",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
    }
}

#[test]
fn sqs_batch_window_rule_uses_the_aws_message() {
    let e = errors(&format!(r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"f","BatchSize":11}}"#));
    assert_eq!(
        e,
        vec!["MaximumBatchingWindowInSeconds: Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10"]
    );
}

#[test]
fn fifo_limits() {
    let fifo = "arn:aws:sqs:us-east-1:123456789012:orders.fifo";
    let e = errors(&format!(r#"{{"EventSourceArn":"{fifo}","FunctionName":"f","BatchSize":11}}"#));
    assert_eq!(e, vec!["BatchSize: must be between 1 and 10 for a FIFO queue, got 11"]);
    let e = errors(&format!(
        r#"{{"EventSourceArn":"{fifo}","FunctionName":"f","MaximumBatchingWindowInSeconds":1}}"#
    ));
    assert!(e[0].contains("not supported for FIFO"), "{e:?}");
}

#[test]
fn sqs_rejects_destinations_and_scaling_range() {
    let e = errors(&format!(
        r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"f","ScalingConfig":{{"MaximumConcurrency":1}},
            "DestinationConfig":{{"OnFailure":{{"Destination":"arn:aws:sqs:us-east-1:1:dlq"}}}}}}"#
    ));
    assert!(e.iter().any(|m| m.starts_with("ScalingConfig.MaximumConcurrency: must be between 2 and 1000")));
    assert!(e.iter().any(|m| m.starts_with("DestinationConfig: is not supported for SQS")));
}

#[test]
fn bad_filter_is_rejected_naming_the_filter() {
    let e = errors(&format!(
        r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"f",
            "FilterCriteria":{{"Filters":[{{"Pattern":"{{\"body\":{{\"a\":[\"x\"]}}}}"}},{{"Pattern":"{{\"eventSource\":\"aws:sqs\"}}"}}]}}}}"#
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("Filters[1]"), "{e:?}");
}

#[test]
fn kafka_keys_are_rejected() {
    let e = errors(&format!(r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"f","Topics":["t"]}}"#));
    assert!(e[0].starts_with("Topics: belongs to Kafka"), "{e:?}");
}

#[test]
fn stream_defaults_and_rules() {
    let kinesis = "arn:aws:kinesis:us-east-1:123456789012:stream/s";
    let m = load(&format!(r#"{{"EventSourceArn":"{kinesis}","FunctionName":"f","StartingPosition":"TRIM_HORIZON"}}"#))
        .unwrap();
    assert_eq!(m.batch_size, 100);
    let SourceSettings::Stream(s) = m.settings else { panic!("stream settings") };
    assert_eq!(s.starting_position, StartingPosition::TrimHorizon);
    assert_eq!(s.parallelization_factor, 1);
    assert_eq!(s.maximum_retry_attempts, None);
    assert_eq!(s.maximum_record_age, None);
    assert_eq!(s.tumbling_window, None);

    let e = errors(&format!(
        r#"{{"EventSourceArn":"{kinesis}","FunctionName":"f","MaximumRecordAgeInSeconds":59,
            "ParallelizationFactor":11,"ScalingConfig":{{"MaximumConcurrency":2}},
            "DestinationConfig":{{"OnFailure":{{"Destination":"arn:aws:lambda:us-east-1:1:function:x"}}}}}}"#
    ));
    let joined = e.join("\n");
    for needle in [
        "StartingPosition: is required",
        "MaximumRecordAgeInSeconds: must be -1 (no limit) or between 60 and 604800, got 59",
        "ParallelizationFactor: must be between 1 and 10, got 11",
        "ScalingConfig: is not supported for Kinesis and DynamoDB Streams",
        "DestinationConfig.OnFailure.Destination:",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
    }
}

#[test]
fn at_timestamp_accepts_epoch_and_iso() {
    let kinesis = "arn:aws:kinesis:us-east-1:123456789012:stream/s";
    for (ts, want) in [("1700000000", 1_700_000_000.0), ("\"2023-11-14T22:13:20Z\"", 1_700_000_000.0)] {
        let m = load(&format!(
            r#"{{"EventSourceArn":"{kinesis}","FunctionName":"f","StartingPosition":"AT_TIMESTAMP","StartingPositionTimestamp":{ts}}}"#
        ))
        .unwrap();
        let SourceSettings::Stream(s) = m.settings else { panic!() };
        assert_eq!(s.starting_position, StartingPosition::AtTimestamp(want));
    }
    let ddb = "arn:aws:dynamodb:us-east-1:123456789012:table/Tab/stream/2024-01-01T00:00:00.000";
    let e = errors(&format!(r#"{{"EventSourceArn":"{ddb}","FunctionName":"f","StartingPosition":"AT_TIMESTAMP"}}"#));
    assert_eq!(e, vec![format!("StartingPosition: Unsupported starting position for arn type: {ddb}")]);
}

const KINESIS: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/s";

fn no_env(_: &str) -> Option<String> {
    None
}

fn document_errors(text: &str) -> Vec<String> {
    match load_document(text, &no_env) {
        Ok(m) => panic!("expected errors for {text}, got {} mappings", m.len()),
        Err(e) => e.errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect(),
    }
}

/// The output of `aws lambda get-event-source-mapping` for a disabled mapping, as AWS prints it.
fn exported(state: &str) -> String {
    format!(
        r#"{{"UUID":"a1b2c3d4-5678-90ab-cdef-11111EXAMPLE","BatchSize":10,"MaximumBatchingWindowInSeconds":0,
            "EventSourceArn":"{QUEUE}","FunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:fn",
            "LastModified":1700000000.0,"State":"{state}","StateTransitionReason":"USER_INITIATED",
            "FunctionResponseTypes":[],
            "EventSourceMappingArn":"arn:aws:lambda:us-east-1:123456789012:event-source-mapping:a1b2c3d4-5678-90ab-cdef-11111EXAMPLE"}}"#
    )
}

#[test]
fn exported_state_decides_whether_the_mapping_polls() {
    for (state, enabled) in [
        ("Disabled", false),
        ("Disabling", false),
        ("Deleting", false),
        ("Enabled", true),
        ("Enabling", true),
        ("Creating", true),
        ("Updating", true),
    ] {
        assert_eq!(load(&exported(state)).unwrap().enabled, enabled, "{state}");
    }
    let disabled = load(&format!(r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"f","Enabled":false}}"#)).unwrap();
    assert!(!disabled.enabled);
    let e = errors(&exported("Paused"));
    assert!(e[0].starts_with("State: unknown state \"Paused\""), "{e:?}");
    let e = errors(&exported("Disabled").replacen('{', r#"{"Enabled":true,"#, 1));
    assert_eq!(e, vec!["State: \"Disabled\" contradicts Enabled: true; keep one of them"]);
}

#[test]
fn list_output_holds_several_mappings() {
    let list = format!(
        r#"{{"EventSourceMappings":[{},{{"EventSourceArn":"{KINESIS}","FunctionName":"g","StartingPosition":"LATEST"}}],
            "NextMarker":"m"}}"#,
        exported("Disabled")
    );
    let mappings = load_document(&list, &no_env).unwrap();
    assert_eq!(mappings.len(), 2);
    assert!(!mappings[0].enabled);
    assert!(mappings[1].enabled);
    assert!(matches!(mappings[1].source, SourceArn::Kinesis(_)));
    // `load` wants exactly one.
    assert!(load(&list).unwrap_err().to_string().contains("holds 2 mappings where one is expected"));

    // Errors name the mapping by its index; shape errors of every item come before validation.
    let e = document_errors(&format!(
        r#"{{"EventSourceMappings":[{{"EventSourceArn":"{QUEUE}","FunctionName":"f","BatchSzie":1}}, 7]}}"#
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("EventSourceMappings[0].BatchSzie: unknown field"), "{e:?}");
    assert!(e[1].starts_with("EventSourceMappings[1]: expected a JSON object"), "{e:?}");
    let e = document_errors(&format!(
        r#"{{"EventSourceMappings":[{{"EventSourceArn":"{QUEUE}","FunctionName":"f"}},
            {{"EventSourceArn":"{QUEUE}","FunctionName":"f","BatchSize":0}}]}}"#
    ));
    assert_eq!(e, vec!["EventSourceMappings[1].BatchSize: must be between 1 and 10000, got 0"]);
    assert_eq!(
        document_errors(r#"{"EventSourceMappings":[]}"#),
        vec!["EventSourceMappings: is empty: there is no mapping to run"]
    );
    assert!(document_errors(r#"{"EventSourceMappings":[],"Extra":1}"#)[0].starts_with("Extra: unknown field"));
}

#[test]
fn trailing_content_and_non_objects_are_rejected() {
    let one = format!(r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"f"}}"#);
    for trailing in [format!("{one} {one}"), format!("{one}\nxyz"), format!("{one},")] {
        let e = document_errors(&trailing);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("(document): trailing characters at line"), "{e:?}");
        assert!(e[0].contains("a mapping file holds one JSON object"), "{e:?}");
    }
    let expected = "expected a JSON object (a CreateEventSourceMapping request or the output of \
                    get-event-source-mapping or list-event-source-mappings)";
    for (text, got) in [("null", "null"), ("[]", "an array"), (&format!("[{one}]"), "an array"), ("\"x\"", "a string"), ("12", "a number")] {
        assert_eq!(document_errors(text), vec![format!("(document): {expected}, got {got}")], "{text}");
    }
    for empty in ["", " \n\t", "\u{feff}"] {
        assert_eq!(document_errors(empty), vec![format!("(document): the file is empty; {expected}")]);
    }
    // A byte-order mark before the object is skipped.
    assert_eq!(load_document(&format!("\u{feff}{one}\n"), &no_env).unwrap().len(), 1);
}

#[test]
fn variables_are_interpolated_in_strings() {
    let env = |name: &str| match name {
        "ACCOUNT" => Some("123456789012".to_owned()),
        "STAGE" => Some("prod".to_owned()),
        _ => None,
    };
    let text = r#"{"EventSourceArn":"arn:aws:sqs:${REGION:-eu-west-1}:${ACCOUNT}:orders-${STAGE}",
        "FunctionName":"orders-${STAGE}",
        "FilterCriteria":{"Filters":[{"Pattern":"{\"body\":{\"price\":[{\"prefix\":\"$$\"}]}}"}]}}"#;
    let m = load_document(text, &env).unwrap().remove(0);
    assert_eq!(m.source.to_string(), "arn:aws:sqs:eu-west-1:123456789012:orders-prod");
    assert_eq!(m.function_name, "orders-prod");
    assert!(!m.filters.is_empty());

    let e = match load_document(text, &no_env) {
        Err(e) => e.errors,
        Ok(_) => panic!("ACCOUNT and STAGE are unset"),
    };
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["EventSourceArn", "FunctionName"]);
    assert!(e[0].message.starts_with("environment variable ACCOUNT is not set"), "{e:?}");
    assert!(e[1].message.starts_with("environment variable STAGE is not set"), "{e:?}");
    let e = document_errors(r#"{"EventSourceMappings":[{"FunctionName":"f","FilterCriteria":{"Filters":[{"Pattern":"${X"}]}}]}"#);
    assert!(e[0].starts_with("EventSourceMappings[0].FilterCriteria.Filters[0].Pattern: `${` without a closing `}`"), "{e:?}");
}

#[test]
fn function_name_follows_the_aws_pattern() {
    for name in ["my function", "fn:a:b", "arn:aws:lambda:us-east-1:123:function:fn"] {
        let e = errors(&format!(r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"{name}"}}"#));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(&format!(
                "FunctionName: 1 validation error detected: Value '{name}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: "
            )),
            "{e:?}"
        );
    }
    let e = errors(&exported("Enabled").replace("function:fn", "function:f n"));
    assert!(e[0].starts_with("FunctionArn: 1 validation error detected"), "{e:?}");
    let e = errors(&format!(r#"{{"EventSourceArn":"{QUEUE}","FunctionName":""}}"#));
    assert!(e[0].starts_with("FunctionName: 2 validation errors detected"), "{e:?}");
}

#[test]
fn event_source_arn_parts_are_checked() {
    let e = errors(r#"{"EventSourceArn":"arn:aws:sqs:us-east-1:12345:q","FunctionName":"f"}"#);
    assert!(e[0].starts_with("EventSourceArn: 1 validation error detected: Value 'arn:aws:sqs:us-east-1:12345:q' at 'eventSourceArn'"), "{e:?}");
    let e = errors(r#"{"EventSourceArn":"arn:aws:sqs:us-east-1:123456789012:my.queue","FunctionName":"f"}"#);
    assert!(e[0].contains("SQS queue name is 1 to 80 characters"), "{e:?}");
}

#[test]
fn future_starting_position_timestamp_is_refused() {
    let at = |ts: &str| {
        format!(r#"{{"EventSourceArn":"{KINESIS}","FunctionName":"f","StartingPosition":"AT_TIMESTAMP","StartingPositionTimestamp":{ts}}}"#)
    };
    assert_eq!(
        errors(&at("4102444800")),
        vec!["StartingPositionTimestamp: StartingPositionTimestamp cannot be in the future."]
    );
    assert_eq!(errors(&at("\"2100-01-01T00:00:00Z\"")).len(), 1);
    assert!(load(&at("1700000000")).is_ok());
}

#[test]
fn starting_position_errors_use_the_aws_messages() {
    let e = errors(&format!(r#"{{"EventSourceArn":"{KINESIS}","FunctionName":"f","StartingPosition":"EARLIEST"}}"#));
    assert_eq!(
        e,
        vec!["StartingPosition: 1 validation error detected: Value 'EARLIEST' at 'startingPosition' failed to satisfy \
              constraint: Member must satisfy enum value set: [LATEST, AT_TIMESTAMP, TRIM_HORIZON]"]
    );
    let e = errors(&format!(
        r#"{{"EventSourceArn":"{KINESIS}","FunctionName":"f","StartingPosition":"LATEST","StartingPositionTimestamp":1700000000}}"#
    ));
    assert_eq!(e, vec!["StartingPositionTimestamp: Timestamp only valid with StartingPosition AT_TIMESTAMP"]);
    let e = errors(&format!(r#"{{"EventSourceArn":"{KINESIS}","FunctionName":"f","StartingPosition":"AT_TIMESTAMP"}}"#));
    assert_eq!(e, vec!["StartingPositionTimestamp: Need to specify a timestamp"]);
}

#[test]
fn files_must_be_utf8() {
    let one = format!(r#"{{"EventSourceArn":"{QUEUE}","FunctionName":"f"}}"#);
    assert_eq!(decode(one.as_bytes()).unwrap(), one);
    let utf16: Vec<u8> = [0xff, 0xfe].into_iter().chain(one.encode_utf16().flat_map(u16::to_le_bytes)).collect();
    assert!(decode(&utf16).unwrap_err().to_string().starts_with("(document): the file is UTF-16"));
    assert_eq!(
        decode(b"{\"FunctionName\":\"f\xe9\"}").unwrap_err().to_string(),
        "(document): the file is not UTF-8: invalid byte at offset 18"
    );
}
