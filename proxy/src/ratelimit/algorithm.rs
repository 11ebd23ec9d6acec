//! The two counting rules, as pure functions of (rule, stored cell, now): GCRA for rates and a
//! fixed epoch-aligned window for quotas. The in-process store runs them as written; the Redis
//! Lua script (`redis.lua`) is a line-by-line port in microseconds.
//!
//! GCRA keeps one number per key, the *theoretical arrival time* (TAT) of the next request if
//! requests came exactly at the sustained rate. With emission interval `T = per / requests` and
//! bucket size `burst`, a request at `now` passes when `max(TAT, now) + T - burst·T <= now`, and
//! then TAT becomes `max(TAT, now) + T`. In any interval of length `t` at most
//! `burst + t / T` requests pass — there is no window edge to burst across.

use super::spec::LimitKind;

/// One limit's parameters for one request (after tier multipliers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Rate or quota.
    pub kind: LimitKind,
    /// Rate: emission interval `T` in ns. Quota: window length in ns.
    pub interval_ns: u64,
    /// Rate: burst (bucket size). Quota: requests per window.
    pub capacity: u64,
}

/// What a store keeps per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Rate: the TAT in ns. Quota: the window index.
    pub value: u64,
    /// Quota: requests counted in the window (unused for rates).
    pub count: u64,
    /// When the cell is equivalent to an absent one (evictable without changing any decision).
    pub expires_at: u64,
}

/// The result of evaluating one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether this rule lets the request pass.
    pub allowed: bool,
    /// Requests left right after this one (0 when refused).
    pub remaining: u64,
    /// ns until the counter is back to full (rate) or the window ends (quota).
    pub reset_ns: u64,
    /// ns until a request would pass again (0 when allowed).
    pub retry_ns: u64,
    /// The cell to store if every rule of the request passes.
    pub next: Cell,
}

/// Evaluates `rule` against the stored `cell` at `now` (ns since the epoch).
pub fn evaluate(rule: Rule, cell: Option<Cell>, now: u64) -> Verdict {
    match rule.kind {
        LimitKind::Rate => gcra(rule, cell, now),
        LimitKind::Quota => quota(rule, cell, now),
    }
}

fn gcra(rule: Rule, cell: Option<Cell>, now: u64) -> Verdict {
    let t = rule.interval_ns.max(1);
    let tat = cell.map_or(now, |c| c.value).max(now);
    let new_tat = tat.saturating_add(t);
    let allow_at = new_tat.saturating_sub(t.saturating_mul(rule.capacity));
    if now < allow_at {
        return Verdict {
            allowed: false,
            remaining: 0,
            reset_ns: tat - now,
            retry_ns: allow_at - now,
            next: Cell {
                value: tat,
                count: 0,
                expires_at: tat,
            },
        };
    }
    let headroom = now
        .saturating_add(t.saturating_mul(rule.capacity))
        .saturating_sub(new_tat);
    Verdict {
        allowed: true,
        remaining: headroom / t,
        reset_ns: new_tat - now,
        retry_ns: 0,
        next: Cell {
            value: new_tat,
            count: 0,
            expires_at: new_tat,
        },
    }
}

fn quota(rule: Rule, cell: Option<Cell>, now: u64) -> Verdict {
    let w = rule.interval_ns.max(1);
    let index = now / w;
    let window_end = index.saturating_add(1).saturating_mul(w);
    let count = cell.filter(|c| c.value == index).map_or(0, |c| c.count);
    let reset_ns = window_end - now;
    if count >= rule.capacity {
        return Verdict {
            allowed: false,
            remaining: 0,
            reset_ns,
            retry_ns: reset_ns,
            next: Cell {
                value: index,
                count,
                expires_at: window_end,
            },
        };
    }
    Verdict {
        allowed: true,
        remaining: rule.capacity - count - 1,
        reset_ns,
        retry_ns: 0,
        next: Cell {
            value: index,
            count: count + 1,
            expires_at: window_end,
        },
    }
}
