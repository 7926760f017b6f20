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
    let ddb = "arn:aws:dynamodb:us-east-1:1:table/T/stream/L";
    let e = errors(&format!(r#"{{"EventSourceArn":"{ddb}","FunctionName":"f","StartingPosition":"AT_TIMESTAMP"}}"#));
    assert!(e[0].contains("not supported for DynamoDB"), "{e:?}");
}
