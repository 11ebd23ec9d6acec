//! The bundled orchestrator in-process behind a test proxy: its listener is bound first (so the
//! proxy's upstream can point at it), then it serves a config that verifies the assertions the
//! proxy signs.

use std::net::SocketAddr;

use palisade_orchestrator::{Orchestrator, OrchestratorConfig};

use crate::Proxy;

/// An orchestrator's loopback listener on port 0, not serving yet.
pub struct Listener {
    listener: tokio::net::TcpListener,
    /// The address it will serve on.
    pub addr: SocketAddr,
}

impl Listener {
    /// Binds `127.0.0.1:0`.
    pub async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        Self { listener, addr }
    }

    /// A default config for this address that writes a word every `word_delay_ms` and fetches
    /// the JWKS of `proxy`'s assertion key from its admin listener.
    pub fn config(&self, word_delay_ms: u64, proxy: &Proxy) -> OrchestratorConfig {
        let mut cfg = OrchestratorConfig {
            listen: self.addr,
            word_delay: std::time::Duration::from_millis(word_delay_ms),
            ..OrchestratorConfig::default()
        };
        cfg.identity.jwks_url = proxy.admin_url("/.well-known/jwks.json");
        cfg
    }

    /// Serves `cfg` on this listener until the test's runtime ends.
    pub fn serve(self, cfg: OrchestratorConfig) {
        tokio::spawn(Orchestrator::new(cfg).serve(self.listener, std::future::pending()));
    }
}
