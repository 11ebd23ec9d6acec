//! The orchestrator's state and delegation against the real things: the session store on a SQLite
//! file and on a PostgreSQL server started by the test, idempotency keys in a real `redis-server`,
//! the A2A client against a real `a2a-sdk` agent (with a gateway in front answering `503` once),
//! and — through the proxy — run status after the fact, an idempotent repeat and a delegation;
//! the store's migrations, retention and TLS to PostgreSQL.

mod a2a;
mod backends;
mod peers;
mod store_schema;
mod through_proxy;
