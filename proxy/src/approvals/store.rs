//! Where approvals live: in process ([`Table`], behind a short lock that is never held across an
//! await) or in Redis ([`super::redis::RedisApprovals`], shared by replicas and surviving
//! restarts). Both implement the same four atomic steps:
//!
//! - **open** a call's approval: the existing one for the same [`super::record::call_key`]
//!   (pending, or decided but not yet collected), else a new one — unless the global or the
//!   principal's cap is reached;
//! - **decide** a pending one (approve / deny) — never a decided or expired one;
//! - **take** the outcome for the held request: still pending, or the outcome (collected once:
//!   a grant admits one call), a pending one past its deadline becoming a timeout;
//! - **list** the pending ones.

use std::collections::HashMap;

use super::record::{Approval, Status};

/// How long a decided or timed-out approval stays listed for `get` after its deadline.
pub const RETAIN_MS: u64 = 60_000;

/// What opening found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// A new approval (announce it).
    Created(Approval),
    /// The call's approval already exists (pending, or decided and not yet collected).
    Existing(Approval),
    /// A cap is reached: `total` (all principals) or the principal's.
    Full {
        /// Whether the global cap (rather than the principal's) was hit.
        total: bool,
    },
}

/// What deciding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Decided now.
    Done(Approval),
    /// Already decided (or timed out): unchanged.
    Settled(Approval),
    /// No such approval.
    Missing,
}

/// What taking found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Still waiting.
    Pending(Approval),
    /// The outcome, collected by this caller.
    Outcome(Approval),
    /// Collected by another request, or gone.
    Gone,
}

/// The in-process store.
#[derive(Debug, Default)]
pub struct Table {
    by_id: HashMap<String, Approval>,
    by_key: HashMap<String, String>,
}

impl Table {
    /// Opens the approval of `fresh`'s call (see the module docs).
    pub fn open(&mut self, fresh: Approval, max: usize, per_principal: usize, now: u64) -> Opened {
        self.purge(now);
        if let Some(existing) = self
            .by_key
            .get(&fresh.key)
            .and_then(|id| self.by_id.get(id))
        {
            let open = existing.is_pending(now)
                || (!existing.consumed
                    && matches!(existing.status, Status::Approved | Status::Denied)
                    && now < existing.expires_at);
            if open {
                return Opened::Existing(existing.clone());
            }
        }
        let pending = self.by_id.values().filter(|a| a.is_pending(now));
        let (mut total, mut mine) = (0, 0);
        for a in pending {
            total += 1;
            mine += usize::from(a.principal_tag == fresh.principal_tag);
        }
        if total >= max {
            return Opened::Full { total: true };
        }
        if mine >= per_principal {
            return Opened::Full { total: false };
        }
        self.by_key.insert(fresh.key.clone(), fresh.id.clone());
        self.by_id.insert(fresh.id.clone(), fresh.clone());
        Opened::Created(fresh)
    }

    /// Decides approval `id` (pending only) as `status` by `approver`; a grant or denial stays
    /// collectable for `hold_ms`.
    pub fn decide(
        &mut self,
        id: &str,
        status: Status,
        approver: &str,
        reason: Option<&str>,
        hold_ms: u64,
        now: u64,
    ) -> Decided {
        let Some(a) = self.by_id.get_mut(id) else {
            return Decided::Missing;
        };
        expire(a, now);
        if a.status != Status::Pending {
            return Decided::Settled(a.clone());
        }
        a.status = status;
        a.approver = Some(approver.to_string());
        a.reason = reason.map(str::to_string);
        a.decided_at = Some(now);
        a.expires_at = now.saturating_add(hold_ms);
        Decided::Done(a.clone())
    }

    /// Takes the outcome of approval `id` for the request holding it.
    pub fn take(&mut self, id: &str, now: u64) -> Taken {
        let Some(a) = self.by_id.get_mut(id) else {
            return Taken::Gone;
        };
        if a.consumed {
            return Taken::Gone;
        }
        expire(a, now);
        if a.status == Status::Pending {
            return Taken::Pending(a.clone());
        }
        a.consumed = true;
        let taken = a.clone();
        if self.by_key.get(&taken.key) == Some(&taken.id) {
            self.by_key.remove(&taken.key);
        }
        Taken::Outcome(taken)
    }

    /// Approval `id`, whatever its status.
    pub fn get(&self, id: &str) -> Option<Approval> {
        self.by_id.get(id).cloned()
    }

    /// The pending approvals, oldest first.
    pub fn list(&self, now: u64) -> Vec<Approval> {
        let mut out: Vec<Approval> = self
            .by_id
            .values()
            .filter(|a| a.is_pending(now))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        out
    }

    /// Forgets approvals past their deadline by more than [`RETAIN_MS`] (the table is bounded
    /// by the caps plus what expired within that window).
    fn purge(&mut self, now: u64) {
        self.by_id
            .retain(|_, a| now < a.expires_at.saturating_add(RETAIN_MS));
        let ids = &self.by_id;
        self.by_key.retain(|_, id| ids.contains_key(id));
    }
}

/// A pending approval past its deadline becomes a timeout.
fn expire(a: &mut Approval, now: u64) {
    if a.status == Status::Pending && now >= a.expires_at {
        a.status = Status::Timeout;
        a.decided_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(id: &str, key: &str, who: &str, now: u64) -> Approval {
        Approval {
            id: id.into(),
            key: key.into(),
            principal: format!("User::\"{who}\""),
            principal_tag: who.into(),
            action: "call_tool".into(),
            resource: "Tool::\"run_shell\"".into(),
            arguments_digest: "d".into(),
            request_id: "r".into(),
            route: "mcp".into(),
            created_at: now,
            expires_at: now + 1000,
            status: Status::Pending,
            approver: None,
            reason: None,
            decided_at: None,
            consumed: false,
        }
    }

    #[test]
    fn the_same_call_finds_its_approval_and_a_grant_admits_one_call() {
        let mut t = Table::default();
        assert!(matches!(
            t.open(approval("1", "k", "a", 0), 10, 10, 0),
            Opened::Created(_)
        ));
        assert!(
            matches!(t.open(approval("2", "k", "a", 5), 10, 10, 5), Opened::Existing(a) if a.id == "1")
        );
        assert!(matches!(t.take("1", 10), Taken::Pending(_)));
        assert!(matches!(
            t.decide("1", Status::Approved, "User::\"b\"", Some("ok"), 500, 20),
            Decided::Done(_)
        ));
        assert!(matches!(
            t.decide("1", Status::Denied, "User::\"b\"", None, 500, 21),
            Decided::Settled(_)
        ));
        // Decided but not collected: a retry still finds it.
        assert!(
            matches!(t.open(approval("3", "k", "a", 30), 10, 10, 30), Opened::Existing(a) if a.id == "1")
        );
        assert!(matches!(t.take("1", 40), Taken::Outcome(a) if a.status == Status::Approved));
        assert_eq!(t.take("1", 41), Taken::Gone, "collected once");
        // Collected: the next identical call needs its own approval.
        assert!(
            matches!(t.open(approval("4", "k", "a", 50), 10, 10, 50), Opened::Created(a) if a.id == "4")
        );
    }

    #[test]
    fn caps_hold_and_a_deadline_makes_a_timeout() {
        let mut t = Table::default();
        assert!(matches!(
            t.open(approval("1", "k1", "a", 0), 2, 1, 0),
            Opened::Created(_)
        ));
        assert_eq!(
            t.open(approval("2", "k2", "a", 0), 2, 1, 0),
            Opened::Full { total: false }
        );
        assert!(matches!(
            t.open(approval("3", "k3", "b", 0), 2, 1, 0),
            Opened::Created(_)
        ));
        assert_eq!(
            t.open(approval("4", "k4", "c", 0), 2, 1, 0),
            Opened::Full { total: true }
        );
        assert_eq!(t.list(0).len(), 2);
        assert!(
            matches!(t.decide("1", Status::Approved, "x", None, 10, 1000), Decided::Settled(a) if a.status == Status::Timeout)
        );
        assert!(matches!(t.take("3", 1000), Taken::Outcome(a) if a.status == Status::Timeout));
        assert!(t.list(1000).is_empty());
        // Long past the deadline, the table forgets them.
        assert!(matches!(
            t.open(
                approval("5", "k5", "a", 1000 + RETAIN_MS + 1000),
                2,
                1,
                1000 + RETAIN_MS + 1000
            ),
            Opened::Created(_)
        ));
        assert!(t.get("1").is_none());
    }
}
