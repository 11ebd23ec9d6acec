//! Policy analysis over a finite model of requests: "who can do this?" ([`who_can`]) and
//! "what does this change make more or less permissive?" ([`diff`]).
//!
//! Both evaluate exhaustively, with the real Cedar authorizer and the same request
//! construction as the proxy ([`PolicySet::decide`]), over a [`Domain`]: every principal
//! shape the policies can tell apart — principal type, role, tenant, MFA, scopes, source
//! network, HTTP method and time of day — for every action and resource the schema and the
//! tool catalog define. The values come from the policies themselves (the roles, tenants,
//! scopes, CIDRs and methods they name) plus one value none of them names ("other" tenant,
//! an outside address); a dimension no policy reads is not enumerated. See
//! `docs/policy-studio.md` for the model's limits and why this is exhaustive evaluation rather
//! than an SMT encoding.
//!
//! ```no_run
//! use palisade_proxy::authz::{analysis, Mode, PolicySet, Resource};
//! let set = PolicySet::load("main", "policies".as_ref(), Mode::Enforce).unwrap();
//! let resource = Resource::parse("Tool::\"run_shell\"").unwrap();
//! let answer = analysis::who_can(&set, "call_tool", &resource).unwrap();
//! for row in &answer.rows {
//!     println!("{:?} by {:?}", row.shape, row.policies);
//! }
//! ```

mod diff;
mod domain;
mod facts;
mod table;
mod whocan;

#[cfg(test)]
mod tests;

pub use diff::{diff, Change, Direction, PolicyDiff};
pub(crate) use domain::protocol_of;
pub use domain::{Domain, Network, ShapeValues, TimeSample, DIMENSIONS};
pub use facts::PolicyFacts;
pub use table::{Cell, Row};
pub use whocan::{who_can, WhoCan, WhoCanRow};

use super::PolicySet;

/// What `sets` together read and name.
pub fn facts_of(sets: &[&PolicySet]) -> PolicyFacts {
    let mut facts = PolicyFacts::default();
    for set in sets {
        facts.add_set(set);
    }
    facts
}

/// The domain requests for `action` are drawn from, over what any of `sets` reads and names.
pub fn domain_of(sets: &[&PolicySet], action: &str) -> Domain {
    Domain::from_facts(&facts_of(sets).for_action(action))
}
