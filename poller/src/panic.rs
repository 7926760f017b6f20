//! Reading why a task panicked, for the logs and `/readyz` of the supervisors that restart or fail it
//! (SQS lanes, shard workers, whole mappings).

/// The message of a panic payload (`panic!` with a literal or a formatted message).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        let literal = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
        assert_eq!(panic_message(literal.as_ref()), "boom");
        let formatted = std::panic::catch_unwind(|| panic!("shard {}", 7)).unwrap_err();
        assert_eq!(panic_message(formatted.as_ref()), "shard 7");
        assert_eq!(panic_message(&5u8), "panic");
    }
}
