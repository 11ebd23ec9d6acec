//! Identity headers from a trusted edge gateway, accepted only from configured networks.

use std::net::IpAddr;

use ipnet::IpNet;
use pingora_http::RequestHeader;

use super::config::TrustedHeadersSpec;
use crate::principal::{AuthMethod, Principal, PrincipalKind};

/// Trusted-header identification.
pub struct TrustedHeaders {
    nets: Vec<IpNet>,
    spec: TrustedHeadersSpec,
}

impl TrustedHeaders {
    /// From a validated spec (bare addresses count as /32 or /128).
    pub fn new(spec: &TrustedHeadersSpec) -> Self {
        let nets = spec
            .from
            .iter()
            .filter_map(|n| {
                n.parse::<IpNet>()
                    .ok()
                    .or_else(|| n.parse::<IpAddr>().ok().map(IpNet::from))
            })
            .collect();
        Self {
            nets,
            spec: spec.clone(),
        }
    }

    fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// The principal the gateway vouches for, when the request comes from a trusted network and
    /// names a user. From anywhere else the identity headers are removed: they are spoofed.
    pub fn identify(
        &self,
        req: &mut RequestHeader,
        client_ip: Option<IpAddr>,
    ) -> Option<Principal> {
        let trusted = client_ip.is_some_and(|ip| self.nets.iter().any(|n| n.contains(&ip)));
        if !trusted {
            for name in [
                &self.spec.user_header,
                &self.spec.email_header,
                &self.spec.role_header,
                &self.spec.tenant_header,
            ] {
                req.remove_header(name.as_str());
            }
            return None;
        }
        let user = Self::header(req, &self.spec.user_header)?;
        let mut p = Principal::new(
            PrincipalKind::User,
            format!("{}|{user}", self.spec.issuer),
            AuthMethod::TrustedHeader,
        );
        p.email = Self::header(req, &self.spec.email_header).map(str::to_string);
        p.tenant = Self::header(req, &self.spec.tenant_header).map(str::to_string);
        p.roles = Self::header(req, &self.spec.role_header)
            .map(|r| {
                r.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Some(p.normalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TrustedHeadersSpec {
        yaml_serde::from_str("from: [10.0.0.0/8, 127.0.0.2]").unwrap()
    }

    fn req() -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("x-user-id", "u-1").unwrap();
        r.insert_header("x-user-role", "admin, user").unwrap();
        r.insert_header("x-user-email", "u@x.test").unwrap();
        r
    }

    #[test]
    fn accepted_from_trusted_networks_only() {
        let t = TrustedHeaders::new(&spec());
        let p = t
            .identify(&mut req(), Some("10.1.2.3".parse().unwrap()))
            .unwrap();
        assert_eq!(p.id, "edge|u-1");
        assert_eq!(p.roles, ["admin", "user"]);
        assert_eq!(p.auth_method, AuthMethod::TrustedHeader);
        assert!(t
            .identify(&mut req(), Some("127.0.0.2".parse().unwrap()))
            .is_some());

        let mut spoofed = req();
        assert!(t
            .identify(&mut spoofed, Some("192.0.2.1".parse().unwrap()))
            .is_none());
        assert!(
            spoofed.headers.get("x-user-id").is_none(),
            "spoofed headers are removed"
        );
        assert!(spoofed.headers.get("x-user-role").is_none());
    }
}
