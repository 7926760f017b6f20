//! Group commit: the bookkeeping, without the database.
//!
//! Requests that arrive while a commit is running wait in a [`GroupQueue`]; when that commit is
//! done, the one committer takes them all and writes them in one transaction, so a single fsync
//! makes the whole group durable. No request waits for a timer: the first one starts a committer at
//! once, and a group is simply whatever queued up while the previous commit was on disk.
//!
//! The queue guarantees, whatever the interleaving of [`push`](GroupQueue::push) and
//! [`take`](GroupQueue::take):
//! * at most one committer runs at a time (the one `push` told to start, until `take` tells it to
//!   stop);
//! * no request is left behind: a `push` that starts no committer found one running, and that
//!   committer calls `take` again before it stops, under the same lock;
//! * requests are taken in the order they were pushed.

use std::mem;

/// Requests waiting for the next commit, and whether a committer is running.
#[derive(Debug)]
pub(crate) struct GroupQueue<T> {
    pending: Vec<T>,
    committing: bool,
}

impl<T> Default for GroupQueue<T> {
    fn default() -> Self {
        GroupQueue {
            pending: Vec::new(),
            committing: false,
        }
    }
}

impl<T> GroupQueue<T> {
    /// Queues `request`. Returns true when no committer is running: the caller must start one.
    #[must_use = "a true return means the caller must start the committer"]
    pub(crate) fn push(&mut self, request: T) -> bool {
        self.pending.push(request);
        !mem::replace(&mut self.committing, true)
    }

    /// The committer's next group: everything queued, oldest first. `None` when nothing is queued;
    /// the committer must then stop, and the next `push` starts another.
    pub(crate) fn take(&mut self) -> Option<Vec<T>> {
        if self.pending.is_empty() {
            self.committing = false;
            return None;
        }
        Some(mem::take(&mut self.pending))
    }

    /// The committer died (a panic): the queued requests are handed back to be failed, and the
    /// next `push` starts a new committer instead of waiting for this one forever.
    pub(crate) fn abandon(&mut self) -> Vec<T> {
        self.committing = false;
        mem::take(&mut self.pending)
    }

    /// How many requests wait for the next commit.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_push_starts_a_committer_and_later_ones_join_its_next_group() {
        let mut queue = GroupQueue::default();
        assert!(queue.push(1), "nothing running: start one");
        assert_eq!(queue.take(), Some(vec![1]));
        // While group [1] is being committed, three more arrive: no second committer.
        assert!(!queue.push(2));
        assert!(!queue.push(3));
        assert!(!queue.push(4));
        assert_eq!(queue.take(), Some(vec![2, 3, 4]), "one group, in arrival order");
        assert_eq!(queue.take(), None, "nothing left: the committer stops");
        assert!(queue.push(5), "stopped: the next request starts a committer again");
    }

    #[test]
    fn an_abandoned_queue_hands_back_its_requests_and_restarts() {
        let mut queue = GroupQueue::default();
        assert!(queue.push(1));
        assert_eq!(queue.take(), Some(vec![1]));
        assert!(!queue.push(2));
        assert_eq!(queue.abandon(), vec![2]);
        assert!(queue.push(3), "the dead committer is not waited for");
        assert_eq!(queue.take(), Some(vec![3]));
    }

    /// Every interleaving of pushes and a committer's takes (driven by the bits of `schedule`):
    /// every request is taken exactly once, in order, and a committer is started exactly when none
    /// is running.
    #[test]
    fn no_request_is_lost_or_taken_twice_in_any_interleaving() {
        for schedule in 0u32..(1 << 12) {
            let mut queue = GroupQueue::default();
            let (mut running, mut next, mut taken) = (false, 0, Vec::new());
            for step in 0..12 {
                if schedule & (1 << step) != 0 {
                    let start = queue.push(next);
                    assert_eq!(start, !running, "schedule {schedule:b}: start exactly when idle");
                    running |= start;
                    next += 1;
                } else if running {
                    match queue.take() {
                        Some(group) => taken.extend(group),
                        None => running = false,
                    }
                }
            }
            // The committer drains what is left before it stops.
            while running {
                match queue.take() {
                    Some(group) => taken.extend(group),
                    None => running = false,
                }
            }
            assert_eq!(taken, (0..next).collect::<Vec<_>>(), "schedule {schedule:b}");
            assert_eq!(queue.len(), 0);
        }
    }
}
