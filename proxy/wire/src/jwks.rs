//! An issuer's verification keys, shared by the proxy (every configured issuer) and the
//! orchestrator (the proxy's assertion keys).
//!
//! - [`KeySet`]: a parsed JWKS by `kid`. Keys it cannot use (`use: enc`, unknown `kty`) are
//!   skipped instead of failing the whole set; a JWK's `alg` pins the key to that algorithm; a
//!   token without `kid` matches only a set holding exactly one key.
//! - [`KeyStore`]: the keys of one [`KeySource`] (OIDC discovery, JWKS URL, JWKS file, or fixed),
//!   read lock-free and swapped atomically on refresh. A failed fetch keeps the last keys
//!   serving; an unknown `kid` refetches at most once per `refetch_min_interval`, and concurrent
//!   callers share one fetch. [`KeyStore::on_refresh`] reports every fetch's outcome (the proxy
//!   counts them in its metrics).
//!
//! ```
//! use palisade_wire::jwks::KeyStore;
//! use palisade_wire::jwks::KeySet;
//!
//! let store = KeyStore::fixed(KeySet::hmac(b"secret"));
//! assert!(store.is_loaded());
//! assert!(store.current().get(None).is_some(), "a single key serves tokens without kid");
//! ```

mod set;
mod store;

pub use set::{KeySet, VerifyKey};
pub use store::{KeySource, KeyStore};

#[cfg(test)]
mod tests;
