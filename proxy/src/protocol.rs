//! Protocol awareness: SSE framing and AG-UI streams (MCP and A2A arrive with later stages).
//!
//! The wire types live in the small `palisade-wire` crate, shared with the orchestrator and
//! fuzzed on their own; this module adds what the data plane does with them.

pub mod relay;

pub use palisade_wire::{agui, sse};
