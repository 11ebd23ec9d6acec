//! Authentication: every request gets a [`Principal`] or is refused.
//!
//! Nothing downstream trusts a header the client could have written: identity comes from a
//! verified credential (JWT, API key, client certificate) or from identity headers sent by a
//! configured, trusted edge gateway.

pub mod principal;

pub use principal::{AuthMethod, Principal, PrincipalKind};
