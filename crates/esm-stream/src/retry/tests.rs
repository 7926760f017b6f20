use super::*;
use proptest::prelude::*;

fn seq(i: usize) -> SequenceNumber {
    // Shaped like real Kinesis numbers (56 digits) so comparisons go beyond u128.
    SequenceNumber::parse(&format!(
        "4960118965842235937883629852182763847532018901230{i:07}"
    ))
    .unwrap()
}

fn batch(n: usize, arrival_millis: i64) -> Vec<BatchRecord> {
    (0..n)
        .map(|i| BatchRecord {
            sequence_number: seq(i),
            arrival_millis,
        })
        .collect()
}

fn config(bisect: bool, max_retry: i64, max_age_secs: i64, rbif: bool) -> RetryConfig {
    RetryConfig::from_api(bisect, max_retry, max_age_secs, rbif).unwrap()
}

/// Everything a run did, in order.
#[derive(Debug, Default)]
struct Run {
    invokes: Vec<(Range<usize>, Outcome)>,
    discards: Vec<Discard>,
    checkpoints: Vec<Range<usize>>,
    backoffs: Vec<Duration>,
    /// All actions in order, for sequencing checks.
    actions: Vec<Action>,
}

/// Drives `machine` to `Done`. Each invoke advances the clock by `invoke_millis`, each backoff by
/// its delay. `function` answers for the invoked range.
fn drive(
    machine: &mut BatchRetry,
    start_millis: i64,
    invoke_millis: i64,
    mut function: impl FnMut(&Range<usize>) -> Outcome,
) -> Run {
    let mut run = Run::default();
    let mut now = start_millis;
    for _ in 0..100_000 {
        let action = machine.next_action(now);
        run.actions.push(action.clone());
        match action {
            Action::Invoke(range) => {
                let outcome = function(&range);
                now += invoke_millis;
                run.invokes.push((range, outcome.clone()));
                machine.on_outcome(outcome);
            }
            Action::Backoff(delay) => {
                now += delay.as_millis() as i64;
                run.backoffs.push(delay);
            }
            Action::Discard(discard) => run.discards.push(discard),
            Action::Checkpoint {
                records,
                sequence_number,
            } => {
                assert_eq!(
                    sequence_number,
                    machine.records()[records.end - 1].sequence_number
                );
                run.checkpoints.push(records);
            }
            Action::Done => return run,
        }
    }
    panic!("machine did not finish: {run:?}");
}

fn ranges(run: &Run) -> Vec<Range<usize>> {
    run.invokes.iter().map(|(r, _)| r.clone()).collect()
}

fn unhandled() -> Option<ResponseContext> {
    Some(ResponseContext {
        status_code: 200,
        function_error: Some("Unhandled"),
    })
}

fn response_null() -> Option<ResponseContext> {
    Some(ResponseContext {
        status_code: 200,
        function_error: None,
    })
}

#[test]
fn config_is_validated_like_the_api() {
    assert_eq!(
        RetryConfig::from_api(false, -2, -1, false),
        Err(Error::MaximumRetryAttempts(-2))
    );
    assert_eq!(
        RetryConfig::from_api(false, 10_001, -1, false),
        Err(Error::MaximumRetryAttempts(10_001))
    );
    assert_eq!(
        RetryConfig::from_api(false, 0, 59, false),
        Err(Error::MaximumRecordAge(59))
    );
    assert_eq!(
        RetryConfig::from_api(false, 0, 0, false),
        Err(Error::MaximumRecordAge(0))
    );
    assert_eq!(
        RetryConfig::from_api(false, 0, 604_801, false),
        Err(Error::MaximumRecordAge(604_801))
    );
    let c = config(true, -1, -1, true);
    assert_eq!(
        (c.maximum_retry_attempts, c.maximum_record_age),
        (None, None)
    );
    let c = config(false, 10_000, 604_800, false);
    assert_eq!(c.maximum_retry_attempts, Some(10_000));
    assert_eq!(c.maximum_record_age, Some(Duration::from_secs(604_800)));
}

#[test]
fn batch_must_be_non_empty_and_ordered() {
    let c = config(false, 0, -1, false);
    assert_eq!(
        BatchRetry::new(c.clone(), vec![]).unwrap_err(),
        Error::EmptyBatch
    );
    let mut records = batch(3, 0);
    records.swap(1, 2);
    assert!(matches!(
        BatchRetry::new(c, records),
        Err(Error::SequenceNotIncreasing { .. })
    ));
}

#[test]
fn success_checkpoints_the_whole_batch() {
    let mut m = BatchRetry::new(config(false, 0, -1, false), batch(4, 0)).unwrap();
    let run = drive(&mut m, 0, 10, |_| Outcome::Success);
    assert_eq!(ranges(&run), vec![0..4]);
    assert_eq!(run.checkpoints, vec![0..4]);
    assert!(run.discards.is_empty());
    assert_eq!(m.next_action(0), Action::Done, "Done is sticky");
}

/// Observed: MaximumRetryAttempts 1 → invoked twice, `approximateInvokeCount` 2, "Unhandled".
#[test]
fn function_errors_exhaust_after_one_plus_max_retries() {
    let mut m = BatchRetry::new(config(false, 1, -1, false), batch(3, 0)).unwrap();
    let run = drive(&mut m, 0, 10, |_| Outcome::FunctionError);
    assert_eq!(ranges(&run), vec![0..3, 0..3]);
    assert_eq!(
        run.discards,
        vec![Discard {
            records: 0..3,
            condition: DiscardCondition::RetryAttemptsExhausted,
            approximate_invoke_count: 2,
            response: unhandled(),
        }]
    );
    assert_eq!(run.checkpoints, vec![0..3]);
    // The destination record is sent before the checkpoint moves past the records.
    let discard_at = run
        .actions
        .iter()
        .position(|a| matches!(a, Action::Discard(_)))
        .unwrap();
    let checkpoint_at = run
        .actions
        .iter()
        .position(|a| matches!(a, Action::Checkpoint { .. }))
        .unwrap();
    assert!(discard_at < checkpoint_at);
}

/// Observed: BatchSize 1, MaxRetry 2, invalid partial responses → 3 invokes, count 3,
/// `functionError: null`.
#[test]
fn invalid_responses_are_full_failures_with_null_function_error() {
    let mut m = BatchRetry::new(config(true, 2, -1, true), batch(1, 0)).unwrap();
    let run = drive(&mut m, 0, 10, |_| Outcome::InvalidResponse);
    assert_eq!(ranges(&run), vec![0..1, 0..1, 0..1]);
    assert_eq!(run.discards.len(), 1);
    assert_eq!(run.discards[0].approximate_invoke_count, 3);
    assert_eq!(run.discards[0].response, response_null());
}

#[test]
fn max_retry_zero_discards_after_the_first_failure() {
    let mut m = BatchRetry::new(config(false, 0, -1, false), batch(2, 0)).unwrap();
    let run = drive(&mut m, 0, 10, |_| Outcome::FunctionError);
    assert_eq!(ranges(&run), vec![0..2]);
    assert_eq!(run.discards[0].approximate_invoke_count, 1);
}

/// Observed (Kinesis and DDB, BatchSize 3, MaxRetry 3, RBIF): records 1–6, record 6 always
/// reported failed. In its batch [4,5,6] → checkpoint after 5; then 6 alone 4 more times
/// (fresh budget, 1 + 3), discarded with count 4 and `functionError: null`.
#[test]
fn partial_failure_checkpoints_before_lowest_and_restarts_the_budget() {
    let mut m = BatchRetry::new(config(false, 3, -1, true), batch(3, 0)).unwrap();
    let run = drive(&mut m, 0, 10, |range| {
        if range.contains(&2) {
            Outcome::PartialFailure(vec![seq(2)])
        } else {
            Outcome::Success
        }
    });
    assert_eq!(ranges(&run), vec![0..3, 2..3, 2..3, 2..3, 2..3]);
    assert_eq!(run.checkpoints, vec![0..2, 2..3]);
    assert_eq!(
        run.discards,
        vec![Discard {
            records: 2..3,
            condition: DiscardCondition::RetryAttemptsExhausted,
            approximate_invoke_count: 4,
            response: response_null(),
        }]
    );
}

#[test]
fn partial_failure_uses_the_lowest_of_unordered_identifiers() {
    let mut m = BatchRetry::new(config(false, 0, -1, true), batch(6, 0)).unwrap();
    let mut calls = 0;
    let run = drive(&mut m, 0, 10, |_| {
        calls += 1;
        if calls == 1 {
            Outcome::PartialFailure(vec![seq(4), seq(2), seq(5)])
        } else {
            Outcome::Success
        }
    });
    assert_eq!(ranges(&run), vec![0..6, 2..6]);
    assert_eq!(run.checkpoints, vec![0..2, 2..6]);
}

#[test]
fn partial_failure_naming_the_first_record_counts_as_an_attempt() {
    let mut m = BatchRetry::new(config(false, 1, -1, true), batch(3, 0)).unwrap();
    let run = drive(&mut m, 0, 10, |_| Outcome::PartialFailure(vec![seq(0)]));
    assert_eq!(ranges(&run), vec![0..3, 0..3]);
    assert_eq!(run.discards[0].records, 0..3);
    assert_eq!(run.discards[0].response, response_null());
}

/// Observed: an identifier that is not in the batch (`123`) makes the response a full failure.
#[test]
fn partial_failure_with_a_foreign_identifier_is_invalid() {
    let mut m = BatchRetry::new(config(false, 1, -1, true), batch(3, 0)).unwrap();
    let foreign = SequenceNumber::parse("123").unwrap();
    let run = drive(&mut m, 0, 10, |_| {
        Outcome::PartialFailure(vec![seq(1), foreign.clone()])
    });
    assert_eq!(ranges(&run), vec![0..3, 0..3]);
    assert_eq!(run.discards[0].records, 0..3);
}

#[test]
fn partial_failure_outside_the_invoked_range_is_invalid() {
    // Record 3 is in the batch but not in the invoked half.
    let mut m = BatchRetry::new(config(true, 0, -1, true), batch(4, 0)).unwrap();
    let mut calls = 0;
    let run = drive(&mut m, 0, 10, |_| {
        calls += 1;
        match calls {
            1 => Outcome::FunctionError,
            2 => Outcome::PartialFailure(vec![seq(3)]),
            _ => Outcome::Success,
        }
    });
    assert_eq!(ranges(&run), vec![0..4, 0..2, 2..4]);
    assert_eq!(run.discards[0].records, 0..2);
}

#[test]
fn empty_partial_failure_list_is_success() {
    let mut m = BatchRetry::new(config(false, 0, -1, true), batch(2, 0)).unwrap();
    let run = drive(&mut m, 0, 10, |_| Outcome::PartialFailure(vec![]));
    assert_eq!(ranges(&run), vec![0..2]);
    assert!(run.discards.is_empty());
}

#[test]
fn partial_failure_is_ignored_without_report_batch_item_failures() {
    let mut m = BatchRetry::new(config(false, 0, -1, false), batch(2, 0)).unwrap();
    let run = drive(&mut m, 0, 10, |_| Outcome::PartialFailure(vec![seq(1)]));
    assert_eq!(ranges(&run), vec![0..2]);
    assert_eq!(run.checkpoints, vec![0..2]);
    assert!(run.discards.is_empty());
}

/// The documented example: 8 records, record 5 poisoned, bisect, MaxRetry 2.
#[test]
fn bisect_isolates_a_poison_record() {
    let mut m = BatchRetry::new(config(true, 2, -1, false), batch(8, 0)).unwrap();
    let run = drive(&mut m, 0, 10, |range| {
        if range.contains(&5) {
            Outcome::FunctionError
        } else {
            Outcome::Success
        }
    });
    assert_eq!(
        ranges(&run),
        vec![0..8, 0..4, 4..8, 4..6, 4..5, 5..6, 5..6, 5..6, 6..8]
    );
    assert_eq!(
        run.discards,
        vec![Discard {
            records: 5..6,
            condition: DiscardCondition::RetryAttemptsExhausted,
            approximate_invoke_count: 3,
            response: unhandled(),
        }]
    );
    assert_eq!(run.checkpoints, vec![0..4, 4..5, 5..6, 6..8]);
}

#[test]
fn bisect_works_with_max_retry_zero() {
    let mut m = BatchRetry::new(config(true, 0, -1, false), batch(8, 0)).unwrap();
    let run = drive(&mut m, 0, 10, |range| {
        if range.contains(&5) {
            Outcome::FunctionError
        } else {
            Outcome::Success
        }
    });
    assert_eq!(ranges(&run), vec![0..8, 0..4, 4..8, 4..6, 4..5, 5..6, 6..8]);
    assert_eq!(run.discards.len(), 1);
    assert_eq!(
        (
            run.discards[0].records.clone(),
            run.discards[0].approximate_invoke_count
        ),
        (5..6, 1)
    );
}

#[test]
fn bisect_first_half_is_the_larger_one() {
    let mut m = BatchRetry::new(config(true, 0, -1, false), batch(5, 0)).unwrap();
    let mut calls = 0;
    let run = drive(&mut m, 0, 10, |_| {
        calls += 1;
        if calls == 1 {
            Outcome::FunctionError
        } else {
            Outcome::Success
        }
    });
    assert_eq!(ranges(&run), vec![0..5, 0..3, 3..5]);
}

#[test]
fn bisect_does_not_split_invalid_responses() {
    let mut m = BatchRetry::new(config(true, 1, -1, true), batch(4, 0)).unwrap();
    let run = drive(&mut m, 0, 10, |_| Outcome::InvalidResponse);
    assert_eq!(ranges(&run), vec![0..4, 0..4]);
    assert_eq!(run.discards[0].records, 0..4);
}

/// A range retried whole (invalid response) and then split hands its counted attempts to its
/// halves; the discard count is that of the exact range discarded.
#[test]
fn bisect_halves_inherit_counted_attempts() {
    let mut m = BatchRetry::new(config(true, 1, -1, true), batch(4, 0)).unwrap();
    let mut calls = 0;
    let run = drive(&mut m, 0, 10, |range| {
        calls += 1;
        match calls {
            1 => Outcome::InvalidResponse, // 0..4 attempt 1
            2 => Outcome::FunctionError,   // 0..4 split: halves start at attempt 1
            _ if range.contains(&0) => Outcome::FunctionError,
            _ => Outcome::Success,
        }
    });
    // 0..2 fails → split (not counted); 0..1 fails → attempt 2 > 1 → discarded after 1 invoke.
    assert_eq!(ranges(&run), vec![0..4, 0..4, 0..2, 0..1, 1..2, 2..4]);
    assert_eq!(run.discards.len(), 1);
    assert_eq!(
        (
            run.discards[0].records.clone(),
            run.discards[0].approximate_invoke_count
        ),
        (0..1, 1)
    );
}

#[test]
fn throttles_back_off_and_do_not_count() {
    let mut m = BatchRetry::new(config(true, 0, -1, false), batch(4, 0)).unwrap();
    let mut calls = 0;
    let run = drive(&mut m, 0, 10, |_| {
        calls += 1;
        match calls {
            1..=4 => Outcome::Throttled,
            5 => Outcome::ServiceError,
            _ => Outcome::Success,
        }
    });
    assert_eq!(ranges(&run), vec![0..4; 6], "no split, no discard");
    let secs: Vec<f64> = run.backoffs.iter().map(Duration::as_secs_f64).collect();
    assert_eq!(secs, vec![0.5, 1.0, 2.0, 4.0, 8.0]);
    assert!(run.discards.is_empty());
}

#[test]
fn throttle_backoff_resets_after_the_function_ran() {
    let mut m = BatchRetry::new(config(false, -1, -1, false), batch(1, 0)).unwrap();
    let script = [
        Outcome::Throttled,
        Outcome::Throttled,
        Outcome::FunctionError,
        Outcome::Throttled,
        Outcome::Success,
    ];
    let mut outcomes = script.into_iter();
    let run = drive(&mut m, 0, 10, |_| outcomes.next().unwrap());
    assert_eq!(
        run.backoffs,
        vec![
            Duration::from_millis(500),
            Duration::from_secs(1),
            Duration::from_millis(500)
        ]
    );
}

#[test]
fn backoff_is_capped_and_never_overflows() {
    let backoff = Backoff::default();
    assert_eq!(backoff.delay(1), Duration::from_millis(500));
    assert_eq!(backoff.delay(7), Duration::from_secs(30));
    assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(30));
    let huge = Backoff {
        initial: Duration::from_secs(u64::MAX / 2),
        max: Duration::MAX,
    };
    assert_eq!(huge.delay(40), Duration::MAX);
}

/// Observed "expire-before-ingestion": never invoked, count 1, no responseContext.
#[test]
fn records_too_old_before_the_first_invoke_are_discarded_uninvoked() {
    let mut m = BatchRetry::new(config(false, 0, 60, false), batch(1, 0)).unwrap();
    let run = drive(&mut m, 61_000, 10, |_| Outcome::Success);
    assert!(run.invokes.is_empty());
    assert_eq!(
        run.discards,
        vec![Discard {
            records: 0..1,
            condition: DiscardCondition::RecordAgeExceeded,
            approximate_invoke_count: 1,
            response: None,
        }]
    );
    assert_eq!(run.checkpoints, vec![0..1]);
}

#[test]
fn age_limit_is_exclusive() {
    let mut m = BatchRetry::new(config(false, 0, 60, false), batch(1, 0)).unwrap();
    assert_eq!(
        m.next_action(60_000),
        Action::Invoke(0..1),
        "exactly 60 s old is not older than 60 s"
    );
}

/// Observed "discard": BatchSize 10, 1 stale + 5 fresh records → the stale one reported alone
/// (`batchSize 1`, count 1), the 5 fresh ones delivered.
#[test]
fn stale_prefix_is_discarded_and_the_fresh_rest_delivered() {
    let mut records = batch(6, 100_000);
    records[0].arrival_millis = 0;
    let mut m = BatchRetry::new(config(false, 0, 60, false), records).unwrap();
    let run = drive(&mut m, 100_000, 10, |_| Outcome::Success);
    assert_eq!(run.discards.len(), 1);
    assert_eq!(run.discards[0].records, 0..1);
    assert_eq!(run.discards[0].approximate_invoke_count, 1);
    assert_eq!(ranges(&run), vec![1..6]);
    assert_eq!(run.checkpoints, vec![0..1, 1..6]);
}

/// Observed "expire-while-retrying": MaxRetry -1, MaxAge 60, always failing, ~8 invokes in 60 s
/// → RecordAgeExceeded with count 8, no responseContext.
#[test]
fn records_expiring_while_retrying_report_their_invoke_count() {
    let mut m = BatchRetry::new(config(false, -1, 60, false), batch(1, 0)).unwrap();
    let run = drive(&mut m, 0, 8_000, |_| Outcome::FunctionError);
    assert_eq!(
        run.invokes.len(),
        8,
        "invokes at 0, 8, …, 56 s; at 64 s the record is 64 s old"
    );
    assert_eq!(run.discards.len(), 1);
    assert_eq!(
        run.discards[0].condition,
        DiscardCondition::RecordAgeExceeded
    );
    assert_eq!(run.discards[0].approximate_invoke_count, 8);
    assert_eq!(run.discards[0].response, None);
}

/// The function-error retry schedule reproduces the recorded count: an always-failing record with
/// MaxRetry -1 and MaxAge 60 is invoked 8 times before it expires, for any invoke time up to 0.5 s.
#[test]
fn function_error_schedule_gives_aws_count_in_a_minute() {
    let schedule = Backoff::FUNCTION_ERROR;
    let delays: Vec<u64> = (1..=6).map(|n| schedule.delay(n).as_secs()).collect();
    assert_eq!(delays, [2, 4, 8, 10, 10, 10]);
    for invoke_millis in [0, 50, 200, 500] {
        let mut m = BatchRetry::new(config(false, -1, 60, false), batch(1, 0)).unwrap();
        let (mut now, mut failures, mut invokes) = (0i64, 0u32, 0);
        let discard = loop {
            match m.next_action(now) {
                Action::Invoke(_) => {
                    invokes += 1;
                    now += invoke_millis;
                    m.on_outcome(Outcome::FunctionError);
                    failures += 1;
                    now += schedule.delay(failures).as_millis() as i64;
                }
                Action::Discard(discard) => break discard,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(invokes, 8, "invoke time {invoke_millis} ms");
        assert_eq!(discard.condition, DiscardCondition::RecordAgeExceeded);
        assert_eq!(discard.approximate_invoke_count, 8);
    }
}

#[test]
fn age_is_checked_again_after_a_throttle_backoff() {
    let mut m = BatchRetry::new(config(false, -1, 60, false), batch(1, 0)).unwrap();
    let run = drive(&mut m, 59_000, 0, |_| Outcome::Throttled);
    assert_eq!(
        run.invokes.len(),
        2,
        "at 59 s and 59.5 s; 60.5 s is too old"
    );
    assert_eq!(
        run.discards[0].approximate_invoke_count, 1,
        "throttled invokes do not count"
    );
}

#[test]
fn infinite_retries_never_discard() {
    let mut m = BatchRetry::new(config(true, -1, -1, true), batch(2, 0)).unwrap();
    let mut last_ranges = Vec::new();
    for _ in 0..1_000 {
        match m.next_action(0) {
            Action::Invoke(range) => {
                last_ranges.push(range);
                m.on_outcome(Outcome::FunctionError);
            }
            Action::Discard(d) => panic!("discarded with infinite retries: {d:?}"),
            Action::Checkpoint { .. } | Action::Backoff(_) => {}
            Action::Done => panic!("cannot finish while failing"),
        }
    }
    assert_eq!(
        last_ranges.last(),
        Some(&(0..1)),
        "stuck on the first record, in order"
    );
}

#[test]
#[should_panic(expected = "before on_outcome")]
fn asking_twice_without_an_outcome_panics() {
    let mut m = BatchRetry::new(config(false, 0, -1, false), batch(1, 0)).unwrap();
    m.next_action(0);
    m.next_action(0);
}

// ---------------------------------------------------------------------------------------------
// Property tests: a simulated function with poison records, flaky failures and throttles.

#[derive(Debug, Clone)]
struct Scenario {
    config: RetryConfig,
    /// Per record: does the function always fail on it?
    poison: Vec<bool>,
    /// Per record arrival offset (non-decreasing), ms before the batch starts.
    arrivals: Vec<i64>,
    /// Consumed one per invoke: 0..=2 throttle/service error, 3 flaky function error, 4 invalid
    /// response, anything else behave normally.
    noise: Vec<u8>,
    /// Poisoned records are reported via partial batch responses rather than thrown errors.
    partial_reports: bool,
    invoke_millis: i64,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1usize..=24).prop_flat_map(|n| {
        (
            any::<bool>(),
            prop_oneof![Just(-1i64), 0i64..=4],
            prop_oneof![Just(-1i64), 60i64..=200],
            any::<bool>(),
            proptest::collection::vec(proptest::bool::weighted(0.15), n),
            proptest::collection::vec(0i64..30_000, n),
            proptest::collection::vec(0u8..20, 0..64),
            any::<bool>(),
            250i64..5_000,
        )
            .prop_map(
                |(bisect, retry, age, rbif, poison, mut gaps, noise, partial, invoke_millis)| {
                    // Infinite retries with a poison record only end through the age limit.
                    let age = if retry == -1 && age == -1 { 120 } else { age };
                    gaps.sort_unstable_by(|a, b| b.cmp(a)); // older first → non-decreasing arrival
                    Scenario {
                        config: RetryConfig::from_api(bisect, retry, age, rbif).unwrap(),
                        poison,
                        arrivals: gaps.into_iter().map(|g| -g).collect(),
                        noise,
                        partial_reports: partial,
                        invoke_millis,
                    }
                },
            )
    })
}

/// The function's answer for `range`, given the scenario and the next noise value.
fn simulate(s: &Scenario, range: &Range<usize>, noise: Option<u8>) -> Outcome {
    match noise {
        Some(0) => return Outcome::Throttled,
        Some(1 | 2) => return Outcome::ServiceError,
        Some(3) => return Outcome::FunctionError,
        Some(4) => return Outcome::InvalidResponse,
        _ => {}
    }
    let failed: Vec<SequenceNumber> = range.clone().filter(|&i| s.poison[i]).map(seq).collect();
    if failed.is_empty() {
        Outcome::Success
    } else if s.partial_reports && s.config.report_batch_item_failures {
        Outcome::PartialFailure(failed)
    } else {
        Outcome::FunctionError
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn every_record_ends_exactly_once(s in scenario()) {
        let n = s.poison.len();
        let records: Vec<BatchRecord> = s.arrivals.iter().enumerate()
            .map(|(i, &arrival_millis)| BatchRecord { sequence_number: seq(i), arrival_millis })
            .collect();
        let mut m = BatchRetry::new(s.config.clone(), records).unwrap();
        let mut noise = s.noise.iter().copied();
        let run = drive(&mut m, 0, s.invoke_millis, |range| simulate(&s, range, noise.next()));

        // Checkpoints are contiguous from 0 to n: every record becomes final exactly once and
        // the checkpoint never moves backwards.
        let mut end = 0;
        for c in &run.checkpoints {
            prop_assert_eq!(c.start, end);
            prop_assert!(c.end > c.start);
            end = c.end;
        }
        prop_assert_eq!(end, n);

        // Each discard is reported once, is contiguous, and is immediately followed by the
        // checkpoint of exactly its records.
        for (i, action) in run.actions.iter().enumerate() {
            if let Action::Discard(d) = action {
                prop_assert!(!d.records.is_empty());
                match &run.actions[i + 1] {
                    Action::Checkpoint { records, .. } => prop_assert_eq!(records, &d.records),
                    other => prop_assert!(false, "discard followed by {:?}", other),
                }
                prop_assert!(d.approximate_invoke_count >= 1);
                prop_assert_eq!(d.response.is_none(), d.condition == DiscardCondition::RecordAgeExceeded);
            }
        }
        let discarded: Vec<usize> = run.discards.iter().flat_map(|d| d.records.clone()).collect();
        let mut sorted = discarded.clone();
        sorted.dedup();
        prop_assert_eq!(&sorted, &discarded, "a record discarded twice");

        // Every record not discarded was acknowledged by the function: part of a successful
        // invoke, or before the lowest failure of a partial response.
        let mut delivered = vec![false; n];
        for (range, outcome) in &run.invokes {
            match outcome {
                Outcome::Success => range.clone().for_each(|i| delivered[i] = true),
                Outcome::PartialFailure(failed) if !s.config.report_batch_item_failures || failed.is_empty() => {
                    range.clone().for_each(|i| delivered[i] = true)
                }
                Outcome::PartialFailure(failed) => {
                    let lowest = range.clone().find(|&i| failed.contains(&seq(i))).unwrap();
                    (range.start..lowest).for_each(|i| delivered[i] = true)
                }
                _ => {}
            }
        }
        for (i, (&ok, &poison)) in delivered.iter().zip(&s.poison).enumerate() {
            prop_assert!(ok || discarded.contains(&i), "record {} neither delivered nor discarded", i);
            prop_assert!(!(poison && ok), "poison record {} delivered", i);
        }

        // Invokes always start at the first non-final record (in-order processing), and a record
        // set never sees more than 1 + MaximumRetryAttempts consecutive full failures.
        let mut final_end = 0;
        let mut streak: Option<(Range<usize>, u32)> = None;
        for action in &run.actions {
            match action {
                Action::Checkpoint { records, .. } => final_end = records.end,
                Action::Invoke(range) => prop_assert_eq!(range.start, final_end),
                _ => {}
            }
        }
        for (range, outcome) in &run.invokes {
            let full_failure = match outcome {
                Outcome::FunctionError | Outcome::InvalidResponse => true,
                Outcome::PartialFailure(failed) if s.config.report_batch_item_failures => {
                    failed.contains(&seq(range.start))
                }
                _ => false,
            };
            if matches!(outcome, Outcome::Throttled | Outcome::ServiceError) {
                continue;
            }
            streak = match (streak, full_failure) {
                (Some((r, k)), true) if r == *range => Some((r, k + 1)),
                (_, true) => Some((range.clone(), 1)),
                (_, false) => None,
            };
            if let (Some((_, k)), Some(max)) = (&streak, s.config.maximum_retry_attempts) {
                prop_assert!(*k <= max + 1, "{} full failures of {:?}", k, range);
            }
        }

        // Throttle backoffs stay within the policy.
        for delay in &run.backoffs {
            prop_assert!(*delay >= s.config.throttle_backoff.initial && *delay <= s.config.throttle_backoff.max);
        }

        // No record is invoked once it is older than the age limit.
        if let Some(max_age) = s.config.maximum_record_age {
            let mut now = 0i64;
            for action in &run.actions {
                match action {
                    Action::Invoke(range) => {
                        for i in range.clone() {
                            prop_assert!(now - s.arrivals[i] <= max_age.as_millis() as i64);
                        }
                        now += s.invoke_millis;
                    }
                    Action::Backoff(d) => now += d.as_millis() as i64,
                    _ => {}
                }
            }
        }
    }

    /// Without noise, age limits or partial responses, bisect discards exactly the poison
    /// records, each alone after 1 + MaximumRetryAttempts invokes of it alone.
    #[test]
    fn bisect_discards_exactly_the_poison_records(
        poison in proptest::collection::vec(proptest::bool::weighted(0.2), 1..=32),
        retry in 0i64..=3,
    ) {
        let s = Scenario {
            config: config(true, retry, -1, false),
            arrivals: vec![0; poison.len()],
            poison,
            noise: vec![],
            partial_reports: false,
            invoke_millis: 1,
        };
        let mut m = BatchRetry::new(s.config.clone(), batch(s.poison.len(), 0)).unwrap();
        let run = drive(&mut m, 0, 1, |range| simulate(&s, range, None));
        let expected: Vec<Range<usize>> = (0..s.poison.len()).filter(|&i| s.poison[i]).map(|i| i..i + 1).collect();
        let discarded: Vec<Range<usize>> = run.discards.iter().map(|d| d.records.clone()).collect();
        prop_assert_eq!(discarded, expected);
        for d in &run.discards {
            prop_assert_eq!(d.approximate_invoke_count, retry as u32 + 1);
            let alone = run.invokes.iter().filter(|(r, _)| *r == d.records).count();
            prop_assert_eq!(alone, retry as usize + 1);
        }
    }
}
