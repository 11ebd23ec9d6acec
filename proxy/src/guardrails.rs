//! Guardrails: request validation, prompt-injection and PII detection, and streaming output
//! filtering (see `docs/guardrails.md`).
//!
//! Every rule that fires leaves a [`Finding`] in the request context (`RequestCtx::guardrails`);
//! findings carry the rule id, where it fired and what was done — never the matched content — so
//! the audit record and metrics can list them safely.

pub mod finding;

pub use finding::{Finding, FindingAction, Findings};
