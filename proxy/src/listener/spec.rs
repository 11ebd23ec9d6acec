//! The `edge:` section of `palisade.yaml`: how the public listeners treat the connections they
//! accept — which peers are proxies whose forwarding headers name the real client.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::FieldError;

/// The client edge of every public listener.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// Networks (CIDRs or bare addresses) of reverse proxies / load balancers in front of
    /// Palisade. Only a TCP peer in one of them has its forwarding header read: the client is the
    /// rightmost address in the header that is not itself a trusted proxy, and that address is
    /// what authorization (`context.ip`), rate limits, anonymous principals and the audit record
    /// see. A request from a trusted proxy without a usable header is refused (400). From any
    /// other peer the header is ignored and replaced upstream. Default: none (the TCP peer is
    /// always the client).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header the trusted proxies write: `x-forwarded-for` or `forwarded` (RFC 7239, its
    /// `for=` parameters). Only that one is read, so a client cannot smuggle an address in the
    /// other one through a proxy that passes it on untouched. Default: `x-forwarded-for`.
    #[serde(default)]
    pub client_ip_header: ClientIpHeader,
}

/// Which forwarding header names the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

/// Validates the `edge` section, pushing every problem with its field path.
pub fn validate(spec: &EdgeSpec, errors: &mut Vec<FieldError>) {
    for (i, net) in spec.trusted_proxies.iter().enumerate() {
        if parse_net(net).is_none() {
            errors.push(FieldError {
                path: format!("edge.trusted_proxies[{i}]"),
                message: format!("{net:?} is not a CIDR (`10.0.0.0/8`) or an IP address"),
            });
        }
    }
}

/// A CIDR, or a bare address as a /32 or /128.
pub fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}
