//! Sleeps with sub-millisecond precision, for the simulator's service times.
//!
//! tokio's timer wheel has 1 ms slots and rounds every deadline up to the next slot, so a 20 ms
//! sleep ends 20–21 ms later (plus the wake-up): a simulated 20 ms function would answer in 21, a
//! 5 % error in the ground truth the generator is checked against. (The generator itself waits
//! on tokio's timer and sends up to `run::schedule::SEND_AHEAD` early instead.)
//!
//! Here a sleep waits on tokio's timer until [`COARSE_MARGIN`] before its deadline (cheap, many
//! sleepers), then hands the last stretch to one shared thread that sleeps on a
//! condition variable with a timeout: the kernel's high-resolution timer, precise to its timer
//! slack (50 µs by default on Linux), without spinning a core.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long before its deadline a sleep leaves tokio's timer for the precise one. tokio fires at
/// most one slot (1 ms) after the time asked for, so 2 ms leaves a millisecond for a busy
/// runtime to get there.
pub(crate) const COARSE_MARGIN: Duration = Duration::from_millis(2);

/// Sleeps until `deadline`, ending within the kernel's timer slack of it (unless the runtime is
/// too busy to run the task then).
pub(crate) fn sleep_until(deadline: Instant) -> Sleep {
    let coarse = deadline
        .checked_sub(COARSE_MARGIN)
        .filter(|&early| early > Instant::now())
        .map(|early| Box::pin(tokio::time::sleep_until(early.into())));
    Sleep {
        deadline,
        coarse,
        slot: None,
    }
}

/// The future of [`sleep_until`].
#[derive(Debug)]
pub(crate) struct Sleep {
    deadline: Instant,
    /// The tokio sleep for the stretch before [`COARSE_MARGIN`]; `None` once over (or not needed).
    coarse: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The precise timer's entry, once registered.
    slot: Option<Arc<Slot>>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(coarse) = &mut self.coarse {
            if coarse.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.coarse = None;
        }
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        match &self.slot {
            None => {
                let slot = Arc::new(Slot {
                    fired: AtomicBool::new(false),
                    waker: Mutex::new(Some(cx.waker().clone())),
                });
                timer().register(self.deadline, Arc::clone(&slot));
                self.slot = Some(slot);
                Poll::Pending
            }
            Some(slot) => {
                *lock(&slot.waker) = Some(cx.waker().clone());
                // Fired between the check above and storing the waker: it woke the old one.
                if slot.fired.load(Ordering::Acquire) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

/// What the timer thread and one sleep share.
#[derive(Debug)]
struct Slot {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

#[derive(Debug)]
struct Entry {
    deadline: Instant,
    slot: Arc<Slot>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.deadline.cmp(&other.deadline)
    }
}

/// The precise timer: deadlines within [`COARSE_MARGIN`], earliest first, and the thread that
/// fires them. A dropped sleep's entry stays until its deadline (at most the margin) and then
/// wakes nobody.
#[derive(Debug, Default)]
struct Timer {
    due: Mutex<BinaryHeap<Reverse<Entry>>>,
    changed: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::default());
        std::thread::Builder::new()
            .name("loadgen-timer".to_owned())
            .spawn(move || timer.run())
            .expect("cannot start the timer thread");
        timer
    })
}

impl Timer {
    fn register(&self, deadline: Instant, slot: Arc<Slot>) {
        let mut due = lock(&self.due);
        let earliest = due.peek().is_none_or(|Reverse(e)| deadline < e.deadline);
        due.push(Reverse(Entry { deadline, slot }));
        drop(due);
        if earliest {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut fired = Vec::new();
        let mut due = lock(&self.due);
        loop {
            let now = Instant::now();
            while let Some(Reverse(entry)) = due.peek()
                && entry.deadline <= now
            {
                let Some(Reverse(entry)) = due.pop() else {
                    break;
                };
                fired.push(entry.slot);
            }
            if !fired.is_empty() {
                // Wake outside the lock, so that sleeps registering meanwhile do not wait.
                drop(due);
                for slot in fired.drain(..) {
                    slot.fired.store(true, Ordering::Release);
                    if let Some(waker) = lock(&slot.waker).take() {
                        waker.wake();
                    }
                }
                due = lock(&self.due);
                continue;
            }
            due = match due.peek() {
                None => self.changed.wait(due).unwrap_or_else(|e| e.into_inner()),
                Some(Reverse(next)) => {
                    let wait = next.deadline.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(due, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Never early, whatever the deadline: in the coarse range, at the boundary, inside the margin,
    /// and already past.
    #[tokio::test]
    async fn a_sleep_never_ends_before_its_deadline() {
        for micros in [0, 1, 300, 1_999, 2_000, 2_001, 2_500, 7_300] {
            let deadline = Instant::now() + Duration::from_micros(micros);
            sleep_until(deadline).await;
            assert!(Instant::now() >= deadline, "woke early for {micros} µs");
        }
        let past = Instant::now();
        sleep_until(past).await;
    }

    /// Many sleeps at once, deadlines in any order, each woken at or after its own deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sleeps_each_wake_after_their_own_deadline() {
        let start = Instant::now();
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                // A scrambled order of deadlines over 0–5 ms.
                let deadline = start + Duration::from_micros((i * 7_919) % 5_000);
                tokio::spawn(async move {
                    sleep_until(deadline).await;
                    Instant::now() >= deadline
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap());
        }
    }
}
