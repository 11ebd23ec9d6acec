//! Who is on the other end of a public listener: the client behind trusted reverse proxies
//! ([`Edge`]) and the identity in a client certificate ([`mtls`]). The listeners themselves are
//! built by `server.rs`.

pub mod forwarded;
pub mod mtls;
pub mod spec;

pub use forwarded::Edge;
