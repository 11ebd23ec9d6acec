//! End-to-end scenarios: the whole proxy in-process on port 0 in front of real upstreams on
//! port 0. One test binary, one module per concern.

mod admin;
mod approvals;
mod audit;
mod authn;
mod authz;
mod connections;
mod cors;
mod errors;
mod forwarding;
mod guardrails;
mod h2;
mod hostile;
mod integrity;
mod oidc;
mod oidc_harness;
mod orchestrator;
mod orchestrator_state;
mod ratelimit;
mod reload;
mod sessions;
mod shutdown;
mod streaming;
mod tracing;
