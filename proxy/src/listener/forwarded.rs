//! Who the client is behind trusted reverse proxies: `X-Forwarded-For` / `Forwarded` read only
//! from configured networks, with the rightmost-untrusted rule, and the forwarding headers sent
//! upstream accordingly (see `docs/configuration.md`, "Behind a reverse proxy").
//!
//! The pipeline calls [`Edge::client_ip`] once per request (the address authorization, limits and
//! audit see) and [`Edge::forward_headers`] when it builds the upstream request.

use std::net::IpAddr;

use http::header::{HeaderName, FORWARDED, VIA};
use ipnet::IpNet;
use pingora_core::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora_http::RequestHeader;

use super::spec::{parse_net, ClientIpHeader, EdgeSpec};
use crate::error::ProxyError;

/// Longest forwarding chain read, in entries; a longer one is refused.
const MAX_CHAIN: usize = 32;

/// `X-Forwarded-For`.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Real-IP`.
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers a relaying proxy adds (any one of them marks a request as relayed). Typed names: a
/// lookup by `&str` parses the name on every call, and these are looked up on every request.
const FORWARDING_HEADERS: [HeaderName; 4] = [X_FORWARDED_FOR, FORWARDED, X_REAL_IP, VIA];

/// The trusted-proxy settings of the public listeners.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    trusted: Vec<IpNet>,
    header: ClientIpHeader,
}

impl Edge {
    /// From a validated spec.
    pub fn new(spec: &EdgeSpec) -> Self {
        Self {
            trusted: spec
                .trusted_proxies
                .iter()
                .filter_map(|n| parse_net(n))
                .collect(),
            header: spec.client_ip_header,
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Whether `peer` (the TCP peer) is a trusted proxy.
    pub fn peer_is_trusted(&self, peer: Option<&PeerAddr>) -> bool {
        peer_ip(peer).is_some_and(|ip| self.is_trusted(ip))
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted proxy, the rightmost
    /// address of the configured forwarding header that is not a trusted proxy (the leftmost
    /// when every one is). A trusted peer's request without a usable header is refused: the
    /// proxy is not the client, and taking it for one would put every client behind it in one
    /// rate-limit bucket and make them all "loopback" to policies.
    pub fn client_ip(
        &self,
        peer: Option<&PeerAddr>,
        req: &RequestHeader,
    ) -> Result<Option<IpAddr>, ProxyError> {
        let Some(peer) = peer_ip(peer) else {
            return Ok(None);
        };
        if !self.is_trusted(peer) {
            warn_once_if_proxied(peer, req);
            return Ok(Some(peer));
        }
        let chain = self.chain(req).map_err(|why| {
            ProxyError::InvalidRequest(format!("{why} from a trusted proxy ({peer})"))
        })?;
        let mut client = None;
        for entry in chain.iter().rev() {
            client = Some(*entry);
            if !self.is_trusted(*entry) {
                break;
            }
        }
        client.map(Some).ok_or_else(|| {
            ProxyError::InvalidRequest(format!(
                "a trusted proxy ({peer}) sent no {}",
                self.header_name()
            ))
        })
    }

    /// Whether the request shows a hop Palisade does not vouch for: it carries a forwarding
    /// header (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`, `Via`) and the TCP peer is not a
    /// trusted proxy — a reverse proxy nobody listed in `edge.trusted_proxies` (the client
    /// address is then that proxy's), or a client that wrote the header itself. Cedar sees it as
    /// `context.forwarded`, so an address rule such as the seed `admin-ip-allowlist` does not
    /// take an unlisted proxy on loopback for a local caller.
    pub fn relayed_untrusted(&self, peer: Option<&PeerAddr>, req: &RequestHeader) -> bool {
        !self.peer_is_trusted(peer)
            && FORWARDING_HEADERS
                .iter()
                .any(|h| req.headers.contains_key(h))
    }

    fn header_name(&self) -> &'static str {
        match self.header {
            ClientIpHeader::XForwardedFor => "x-forwarded-for",
            ClientIpHeader::Forwarded => "forwarded",
        }
    }

    /// The addresses of the configured header, left to right (every header line, in order).
    fn chain(&self, req: &RequestHeader) -> Result<Vec<IpAddr>, &'static str> {
        let mut chain = Vec::new();
        for line in req.headers.get_all(self.header_name()) {
            let line = line.to_str().map_err(|_| "a non-ASCII forwarding header")?;
            for element in line.split(',') {
                let element = element.trim();
                if element.is_empty() {
                    continue;
                }
                let node = match self.header {
                    ClientIpHeader::XForwardedFor => element,
                    ClientIpHeader::Forwarded => {
                        forwarded_for(element).ok_or("a `Forwarded` element without `for=`")?
                    }
                };
                chain.push(parse_node(node).ok_or("an unparseable forwarding address")?);
                if chain.len() > MAX_CHAIN {
                    return Err("a forwarding chain over 32 entries");
                }
            }
        }
        Ok(chain)
    }

    /// Rewrites the forwarding headers of an upstream request already built by the pipeline's
    /// `forward` (which appended the peer to `X-Forwarded-For` and set `X-Forwarded-Proto` from
    /// the listener): a trusted proxy's configured header and `X-Forwarded-Proto` are kept; from
    /// anyone else `X-Forwarded-For` is the peer alone and `Forwarded` / `X-Real-IP` are removed,
    /// so no client-written address reaches the upstream.
    pub fn forward_headers(
        &self,
        upstream: &mut RequestHeader,
        original: &RequestHeader,
        peer: Option<&PeerAddr>,
    ) -> pingora_core::Result<()> {
        let trusted = self.peer_is_trusted(peer);
        if trusted {
            let proto = original
                .headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| v == "http" || v == "https");
            if let Some(proto) = proto {
                upstream.insert_header("x-forwarded-proto", proto)?;
            }
        }
        // The TCP peer is this hop's entry: appended to the chain a trusted proxy wrote, else the
        // whole chain (a client's own `X-Forwarded-For` is not passed on).
        match peer_ip(peer) {
            Some(ip) => {
                let prior = original
                    .headers
                    .get(X_FORWARDED_FOR)
                    .and_then(|v| v.to_str().ok())
                    .filter(|_| trusted && self.header == ClientIpHeader::XForwardedFor);
                let chain = match prior {
                    Some(prior) => format!("{prior}, {ip}"),
                    None => crate::text::ip_text(ip),
                };
                upstream.insert_header("x-forwarded-for", chain)?;
            }
            None => {
                upstream.remove_header(&X_FORWARDED_FOR);
            }
        }
        if !(trusted && self.header == ClientIpHeader::Forwarded) {
            upstream.remove_header("forwarded");
        }
        if !trusted {
            upstream.remove_header("x-real-ip");
        }
        Ok(())
    }
}

/// Logs once per process when a loopback or private peer that is not a trusted proxy sends
/// `X-Forwarded-For`/`Forwarded`: most likely a reverse proxy nobody listed, which makes every
/// client look like it.
fn warn_once_if_proxied(peer: IpAddr, req: &RequestHeader) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    let local = match peer {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    };
    if local
        && FORWARDING_HEADERS
            .iter()
            .any(|h| req.headers.contains_key(h))
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            %peer,
            "a forwarded request from {peer}, which is not in edge.trusted_proxies: its forwarding \
             header is ignored and {peer} counts as the client; if a reverse proxy sits in front \
             of Palisade, list it there (docs/configuration.md, \"Behind a reverse proxy\")"
        );
    }
}

/// The peer's IP, IPv4-mapped IPv6 addresses as IPv4.
fn peer_ip(peer: Option<&PeerAddr>) -> Option<IpAddr> {
    peer.and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical())
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.1;proto=https`), unquoted.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:8080`. `unknown` and obfuscated identifiers are not addresses.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let ip = node
        .parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            node.strip_prefix('[')
                .and_then(|n| n.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(trusted: &[&str], header: ClientIpHeader) -> Edge {
        Edge::new(&EdgeSpec {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            client_ip_header: header,
        })
    }

    fn peer(ip: &str) -> PeerAddr {
        PeerAddr::Inet(std::net::SocketAddr::new(ip.parse().unwrap(), 5000))
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn client(e: &Edge, from: &str, headers: &[(&str, &str)]) -> Result<String, ProxyError> {
        e.client_ip(Some(&peer(from)), &req(headers))
            .map(|ip| ip.unwrap().to_string())
    }

    #[test]
    fn a_hop_nobody_vouches_for_is_marked_relayed() {
        let e = edge(&["10.0.0.0/8"], ClientIpHeader::XForwardedFor);
        let relayed = |from: &str, headers: &[(&str, &str)]| {
            e.relayed_untrusted(Some(&peer(from)), &req(headers))
        };
        // An unlisted proxy on loopback (nginx adds X-Forwarded-For or X-Real-IP, others Via or
        // Forwarded): relayed, whatever the header.
        for h in ["x-forwarded-for", "forwarded", "x-real-ip", "via"] {
            assert!(relayed("127.0.0.1", &[(h, "for=203.0.113.9")]), "{h}");
        }
        // A direct caller: not relayed.
        assert!(!relayed("127.0.0.1", &[("user-agent", "curl")]));
        // A trusted proxy's header is what it vouches for: the client it names is the caller.
        assert!(!relayed("10.1.2.3", &[("x-forwarded-for", "203.0.113.9")]));
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let e = edge(&["127.0.0.1", "10.0.0.0/8"], ClientIpHeader::XForwardedFor);
        let xff = [("x-forwarded-for", "198.51.100.9")];
        assert_eq!(client(&e, "127.0.0.1", &xff).unwrap(), "198.51.100.9");
        assert_eq!(client(&e, "203.0.113.5", &xff).unwrap(), "203.0.113.5");
        let none = edge(&[], ClientIpHeader::XForwardedFor);
        assert_eq!(client(&none, "127.0.0.1", &xff).unwrap(), "127.0.0.1");
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let e = edge(&["127.0.0.1", "10.0.0.0/8"], ClientIpHeader::XForwardedFor);
        // The client wrote `1.1.1.1` itself; nginx appended the real peer, then 10.0.0.2 relayed.
        let spoofed = [("x-forwarded-for", "1.1.1.1, 198.51.100.9, 10.0.0.2")];
        assert_eq!(client(&e, "127.0.0.1", &spoofed).unwrap(), "198.51.100.9");
        // A client on loopback cannot claim loopback through the proxy: the proxy appends it.
        let lines = [
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-for", "203.0.113.7"),
        ];
        assert_eq!(client(&e, "127.0.0.1", &lines).unwrap(), "203.0.113.7");
        // Every hop trusted: the leftmost is the client (a local caller through a local proxy).
        let local = [("x-forwarded-for", "10.1.1.1, 10.0.0.2")];
        assert_eq!(client(&e, "127.0.0.1", &local).unwrap(), "10.1.1.1");
        // Ports, brackets and IPv4-mapped addresses.
        let forms = [("x-forwarded-for", "[2001:db8::7]:443, ::ffff:10.0.0.3")];
        assert_eq!(client(&e, "127.0.0.1", &forms).unwrap(), "2001:db8::7");
        let mapped = [("x-forwarded-for", "192.0.2.44:5555")];
        assert_eq!(
            client(&e, "::ffff:127.0.0.1", &mapped).unwrap(),
            "192.0.2.44"
        );
    }

    #[test]
    fn a_trusted_proxy_must_say_who_its_client_is() {
        let e = edge(&["127.0.0.1"], ClientIpHeader::XForwardedFor);
        for bad in [
            &[][..],
            &[("x-forwarded-for", "")][..],
            &[("x-forwarded-for", "unknown")][..],
            &[("x-forwarded-for", "198.51.100.9, not-an-ip")][..],
        ] {
            let err = client(&e, "127.0.0.1", bad).unwrap_err();
            assert_eq!(err.kind().code, "INVALID_REQUEST", "{bad:?}");
        }
        let long = vec!["10.0.0.1"; 40].join(",");
        assert!(client(&e, "127.0.0.1", &[("x-forwarded-for", &long)]).is_err());
    }

    #[test]
    fn forwarded_is_read_only_when_configured() {
        let e = edge(&["127.0.0.1"], ClientIpHeader::Forwarded);
        let fwd = [(
            "forwarded",
            "for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\"",
        )];
        assert_eq!(client(&e, "127.0.0.1", &fwd).unwrap(), "2001:db8:cafe::17");
        // X-Forwarded-For is not read in this mode, whatever it says.
        let both = [
            ("forwarded", "for=192.0.2.60"),
            ("x-forwarded-for", "1.1.1.1"),
        ];
        assert_eq!(client(&e, "127.0.0.1", &both).unwrap(), "192.0.2.60");
        assert!(client(&e, "127.0.0.1", &[("forwarded", "proto=https")]).is_err());
        assert!(client(&e, "127.0.0.1", &[("forwarded", "for=_hidden")]).is_err());
    }

    #[test]
    fn upstream_headers_keep_only_what_a_trusted_proxy_wrote() {
        let e = edge(&["127.0.0.1"], ClientIpHeader::XForwardedFor);
        let original = req(&[
            ("x-forwarded-for", "198.51.100.9"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.1.1.1"),
            ("x-real-ip", "1.1.1.1"),
        ]);
        let built = || {
            // What the pipeline's `forward` made of it: proto from the listener.
            let mut up = original.clone();
            up.insert_header("x-forwarded-proto", "http").unwrap();
            up
        };
        let mut up = built();
        e.forward_headers(&mut up, &original, Some(&peer("127.0.0.1")))
            .unwrap();
        assert_eq!(up.headers["x-forwarded-for"], "198.51.100.9, 127.0.0.1");
        assert_eq!(up.headers["x-forwarded-proto"], "https");
        assert!(up.headers.get("forwarded").is_none());
        assert_eq!(up.headers["x-real-ip"], "1.1.1.1");

        let mut up = built();
        e.forward_headers(&mut up, &original, Some(&peer("203.0.113.5")))
            .unwrap();
        assert_eq!(up.headers["x-forwarded-for"], "203.0.113.5");
        assert_eq!(up.headers["x-forwarded-proto"], "http");
        assert!(up.headers.get("forwarded").is_none());
        assert!(up.headers.get("x-real-ip").is_none());
    }
}
