//! The IETF `RateLimit-Policy` and `RateLimit` response headers
//! (draft-ietf-httpapi-ratelimit-headers, structured-field lists):
//!
//! ```text
//! RateLimit-Policy: "per-principal";q=300;w=60, "daily";q=10000;w=86400
//! RateLimit: "per-principal";r=0;t=12, "daily";r=9412;t=40210
//! ```
//!
//! `q` is the quota for this caller (after tier multipliers) per window `w` seconds; `r` the
//! requests left now; `t` the seconds until the counter is full again (a rate) or the window
//! ends (a quota). `Retry-After` (on 429s) is the seconds until one request would pass.

use std::fmt::Write;
use std::time::Duration;

use super::policy::Limit;
pub use crate::error::{ceil_secs, RateLimitHeaders};

/// One limit's state after a check, for the headers.
#[derive(Debug, Clone, Copy)]
pub struct LimitState<'a> {
    /// The limit.
    pub limit: &'a Limit,
    /// Its quota for this caller.
    pub quota: u64,
    /// Requests left.
    pub remaining: u64,
    /// Until full / window end.
    pub reset: Duration,
}

impl RateLimitHeaders {
    /// Renders the states of every limit checked.
    pub fn render(states: &[LimitState<'_>]) -> Self {
        let mut out = Self::default();
        for (i, s) in states.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            // Names are restricted to A-Z a-z 0-9 _ - . at config load: valid sf-strings as is.
            let _ = write!(
                out.policy,
                "{sep}\"{}\";q={};w={}",
                s.limit.name,
                s.quota,
                ceil_secs(s.limit.per).max(1)
            );
            let _ = write!(
                out.state,
                "{sep}\"{}\";r={};t={}",
                s.limit.name,
                s.remaining,
                ceil_secs(s.reset)
            );
        }
        out
    }
}
