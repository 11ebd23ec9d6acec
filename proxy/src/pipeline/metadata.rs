//! RFC 9728 OAuth protected resource metadata for MCP routes, so MCP clients can discover which
//! authorization servers issue tokens for them.
//!
//! For an MCP route with prefix `/mcp`, the proxy serves
//! `GET /.well-known/oauth-protected-resource/mcp` (and the bare well-known path for the first
//! MCP route), and its 401s carry `WWW-Authenticate: Bearer resource_metadata="…"`.

use serde_json::{json, Value};

use crate::protocol::RouteProtocol;
use crate::route::{Route, RouteTable};

/// The well-known path prefix.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The metadata URL of `route` as seen by a client at `origin` (`https://host:port`).
pub fn metadata_url(origin: &str, route: &Route) -> String {
    format!(
        "{origin}{WELL_KNOWN}{}",
        route.path_prefix.trim_end_matches('/')
    )
}

/// The metadata document for `path`, when it names an MCP route.
pub fn document(
    routes: &RouteTable,
    path: &str,
    origin: &str,
    issuers: &[String],
) -> Option<Value> {
    let rest = path.strip_prefix(WELL_KNOWN)?;
    let mcp = routes
        .routes()
        .iter()
        .filter(|r| r.protocol == RouteProtocol::Mcp);
    let route = if rest.is_empty() || rest == "/" {
        mcp.clone().next()?
    } else {
        mcp.clone()
            .find(|r| r.path_prefix.trim_end_matches('/') == rest.trim_end_matches('/'))?
    };
    Some(json!({
        "resource": format!("{origin}{}", route.path_prefix.trim_end_matches('/')),
        "authorization_servers": issuers,
        "bearer_methods_supported": ["header"],
        "resource_name": route.name,
    }))
}
