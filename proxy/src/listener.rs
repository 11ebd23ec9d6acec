//! Who is on the other end of a public listener: the client behind trusted reverse proxies
//! ([`Edge`]) and the identity in a client certificate ([`mtls`]); and what a connection may
//! cost before its request is read ([`conn`]: head deadline, per-address cap); the TLS material
//! that reloads on change ([`tls`]). The listeners
//! themselves are built by `server.rs`.

pub mod conn;
pub mod forwarded;
mod head_end;
pub mod mtls;
pub mod spec;
pub mod tls;

pub use forwarded::Edge;
