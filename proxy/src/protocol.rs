//! Protocol awareness: the wire dialects a route can speak (AG-UI, MCP, A2A over JSON-RPC), SSE
//! framing, and the one parse of each request body and response event that every inspector
//! reads.
//!
//! The wire types live in the small `palisade-wire` crate, shared with the orchestrator and
//! fuzzed on their own; this module adds what the data plane does with them.

pub mod a2a;
pub mod agui;
pub mod event;
pub mod json;
pub mod jsonrpc;
pub mod kind;
pub mod mcp;
pub mod message;
pub mod relay;

pub use kind::RouteProtocol;
pub use palisade_wire::sse;
