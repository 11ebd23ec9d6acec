//! Palisade: a policy sidecar proxy for AI agent runtimes.
//!
//! The data plane is pingora; [`pipeline`] orders a request's stages (routing, identity,
//! authorization, limits, guardrails, forwarding, stream inspection, audit) and every concern
//! lives in its own module behind a small interface. Start a proxy with [`server::start`]; the
//! `palisade` binary is [`cli::main`].

/// The crate version and the git commit it was built from: `0.1.0 (1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PALISADE_GIT_SHA"),
    ")"
);

/// The git commit the binary was built from (12 hex digits, or `unknown`).
pub const GIT_SHA: &str = env!("PALISADE_GIT_SHA");

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod cli;
pub mod config;
pub mod error;
pub mod guardrails;
pub mod integrity;
pub mod lifecycle;
pub mod listener;
pub mod outbound;
pub mod pipeline;
pub mod principal;
pub mod protocol;
pub mod ratelimit;
pub mod redact;
pub mod reload;
pub mod route;
pub mod secrets;
pub mod server;
pub mod settle;
pub mod stage;
pub mod telemetry;
pub mod text;

pub use error::ProxyError;
