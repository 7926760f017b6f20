//! What a mapping did, counted. Names follow the CloudWatch event-source-mapping metrics
//! (`PolledEventCount`, `FilteredOutEventCount`, `InvokedEventCount`, `FailedInvokeEventCount`,
//! `DeletedEventCount`) so that the summary and, later, the Prometheus metrics read like AWS's.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Live counters of one mapping, shared by its tasks.
        #[derive(Debug, Default)]
        pub struct Counters { $( $(#[$doc])* pub $name: AtomicU64, )* }

        /// A point-in-time copy of [`Counters`].
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct Snapshot { $( $(#[$doc])* pub $name: u64, )* }

        impl Counters {
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }

        impl fmt::Display for Snapshot {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut first = true;
                $(
                    if !first { f.write_str(" ")?; }
                    first = false;
                    write!(f, "{}={}", stringify!($name), self.$name)?;
                )*
                let _ = first;
                Ok(())
            }
        }
    };
}

counters! {
    /// Records read from the source.
    polled,
    /// Records dropped because no filter matched (SQS: deleted).
    filtered_out,
    /// Records sent to the function (each attempt counts).
    invoked,
    /// Invocations made (each attempt counts).
    invocations,
    /// Invocations in which the function failed: error, timeout, or an invalid partial-batch response.
    failed_invocations,
    /// Records the function did not process successfully in an invocation.
    failed_invoke_records,
    /// Invocations answered with 429.
    throttles,
    /// Invocations that did not reach the function for another reason (5xx, transport, 4xx).
    invoke_errors,
    /// Messages deleted from the queue (processed or filtered out).
    deleted,
    /// Stream records given up on (retries exhausted or too old), sent to the on-failure destination
    /// if there is one.
    dropped,
    /// Stream records reported to the on-failure destination.
    on_failure_delivered,
    /// Checkpoints written (streams).
    checkpoints,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}
