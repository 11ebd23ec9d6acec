//! When a polled file has settled: a change is taken only once two polls in a row read the same
//! bytes. A file caught half-written (`cp`, `echo >`, an editor that writes in place) can still
//! parse — YAML cut between top-level sections, a `.cedar` file cut between policies — and
//! applying it would run, until the next poll, without what was cut off (an audit section, a
//! `forbid`). Used by the config and the policy watchers; SIGHUP still applies at once.

use std::sync::Mutex;

/// What the last poll read that differed from what is applied, by its digest.
#[derive(Debug, Default)]
pub struct Settle<T> {
    pending: Mutex<Option<T>>,
}

impl<T: PartialEq> Settle<T> {
    /// Whether `seen` (a changed file's digest, read by this poll) was read by the previous
    /// poll too; otherwise it is remembered for the next one.
    pub fn settled(&self, seen: T) -> bool {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pending.as_ref() == Some(&seen) {
            *pending = None;
            true
        } else {
            *pending = Some(seen);
            false
        }
    }

    /// Forgets a pending change (the file is back to what is applied).
    pub fn clear(&self) {
        *self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::Settle;

    #[test]
    fn a_change_is_taken_when_two_polls_in_a_row_read_it() {
        let s = Settle::default();
        assert!(!s.settled(1), "first sight: wait one poll");
        assert!(s.settled(1), "the same on the next poll: settled");
        assert!(!s.settled(2), "a new change waits again");
        assert!(!s.settled(3), "still being written: another change");
        assert!(s.settled(3));
        assert!(!s.settled(4));
        s.clear();
        assert!(
            !s.settled(4),
            "cleared: the next sight is a first sight again"
        );
    }
}
