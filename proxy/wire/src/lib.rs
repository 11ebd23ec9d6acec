//! Wire types shared by the Palisade proxy and the reference orchestrator.
//!
//! Modules, all synchronous and allocation-conscious so they can sit on the proxy's hot path:
//!
//! - [`sse`]: an incremental Server-Sent-Events parser ([`sse::SseParser`]) that turns arbitrary
//!   byte chunks into [`sse::SseItem`]s without buffering more than the current event, and a
//!   framer ([`sse::SseEvent::encode`]) that re-emits events with LF framing. The proxy uses it to
//!   inspect a streamed response event by event; the orchestrator uses the framer.
//! - [`agui`]: serde types for the AG-UI protocol: the request body ([`agui::RunAgentInput`]) and
//!   the event stream ([`agui::Event`]), plus [`agui::run_error_frame`], the frame the proxy sends
//!   to end a stream it has to cut short.
//! - [`trace`]: the W3C `traceparent` header ([`trace::TraceParent`]).
//! - `outbound` (feature `outbound`): the certificate authorities both binaries' outbound clients
//!   trust.
//! - `jwks` (feature `jwks`): an issuer's key set and the fetched, cached, refreshed key store
//!   the proxy verifies tokens with and the orchestrator verifies the proxy's assertions with.
//!
//! ```
//! use palisade_wire::agui::Event;
//! use palisade_wire::sse::{SseItem, SseParser};
//!
//! let frame = Event::TextMessageEnd { message_id: "m1".into() }.to_sse_bytes();
//! let mut parser = SseParser::new();
//! let items: Vec<_> = parser.feed(&frame).collect();
//! let Some(Ok(SseItem::Event(event))) = items.first() else { panic!("one event expected") };
//! let parsed = Event::from_sse_data(event.data.as_deref().unwrap_or_default()).unwrap();
//! assert_eq!(parsed.type_name(), "TEXT_MESSAGE_END");
//! ```

pub mod agui;
#[cfg(feature = "jwks")]
pub mod jwks;
#[cfg(feature = "outbound")]
pub mod outbound;
pub mod sse;
pub mod trace;
