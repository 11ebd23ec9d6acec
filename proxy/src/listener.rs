//! Public listeners: one pingora proxy service per configured listener (plain with optional h2c,
//! or TLS via rustls with h2 and HTTP/1.1 negotiated by ALPN).

use std::net::SocketAddr;
use std::sync::Arc;

pub mod forwarded;
pub mod mtls;
pub mod spec;

pub use forwarded::Edge;

use anyhow::Context;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::listening::Service;
use pingora_proxy::HttpProxy;

use crate::config::Listener;
use crate::pipeline::Pipeline;

/// Builds the pingora service for `listener`, bound to `address` (the listener's address with a
/// port-0 request already resolved to a concrete port).
pub fn proxy_service(
    server_conf: &Arc<ServerConf>,
    listener: &Listener,
    address: SocketAddr,
    pipeline: Pipeline,
) -> anyhow::Result<Service<HttpProxy<Pipeline>>> {
    let name = format!("palisade listener {}", listener.name);
    let mut service = pingora_proxy::http_proxy_service_with_name(server_conf, pipeline, &name);
    if let Some(proxy) = service.app_logic_mut() {
        let mut options = HttpServerOptions::default();
        options.h2c = listener.h2c && listener.tls.is_none();
        proxy.server_options = Some(options);
    }
    let addr = address.to_string();
    match &listener.tls {
        Some(tls) => {
            let mut settings = match &tls.client_ca {
                Some(ca) => {
                    let mut s = TlsSettings::with_callbacks(Box::new(mtls::ClientIdentity))?;
                    s.set_certificate_chain_file(&tls.cert)?;
                    s.set_private_key_file(&tls.key)?;
                    s.set_client_cert_verifier(mtls::client_verifier(ca, tls.require_client_cert)?);
                    s
                }
                None => TlsSettings::intermediate(&tls.cert, &tls.key)
                    .with_context(|| format!("TLS settings for listener {}", listener.name))?,
            };
            settings.enable_h2();
            service.add_tls_with_settings(&addr, None, settings);
        }
        None => service.add_tcp(&addr),
    }
    Ok(service)
}

/// Resolves a port-0 address to a free port by binding and releasing it (for tests and ad-hoc
/// runs; pingora binds by address, so the port must be known up front).
pub fn resolve_port(address: SocketAddr) -> std::io::Result<SocketAddr> {
    if address.port() != 0 {
        return Ok(address);
    }
    std::net::TcpListener::bind(address)?.local_addr()
}
