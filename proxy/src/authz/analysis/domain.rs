//! The finite model the analysis enumerates: principal shapes (eight dimensions) and the
//! actions × resources the schema and the catalog define.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use super::PolicyFacts;
use crate::authz::{AuthzRequest, Decision, PolicySet, RequestFacts, Resource, ResourceKind};
use crate::principal::{AuthMethod, Principal, PrincipalKind};

/// The dimensions of a principal shape, in [`ShapeValues`] order.
pub const DIMENSIONS: [&str; 8] = [
    "type", "role", "tenant", "mfa", "scopes", "network", "method", "time",
];

/// A source network: a representative address, labelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    /// `loopback`, the CIDR a policy names, `outside`, or `forwarded`.
    pub label: String,
    /// The address requests from it carry.
    pub ip: IpAddr,
    /// Relayed by a proxy not in `edge.trusted_proxies`.
    pub forwarded: bool,
}

/// A point in time requests are made at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeSample {
    /// `weekday 10:00`, `weekday 22:00`, `weekend 10:00`.
    pub label: &'static str,
    /// RFC 3339.
    pub at: &'static str,
}

/// The most principal shapes one analysis decides per action (each is one Cedar decision per
/// resource, ~10 µs): far above any real policy set's model (the seed policies' is in the
/// hundreds), low enough that a policy text sent to the studio cannot tie up a core for long.
pub const MAX_SHAPES: u128 = 50_000;

/// The values of each dimension.
#[derive(Debug, Clone, Serialize)]
pub struct Domain {
    /// Principal types (`Anonymous` only ever with no role, tenant, MFA or scopes). When no
    /// policy tells the authenticated types apart, `User` stands for all three.
    pub kinds: Vec<&'static str>,
    /// Whether some policy tells principal types apart.
    pub kinds_read: bool,
    /// Roles: `None` is no role at all.
    pub roles: Vec<Option<String>>,
    /// Tenants: `None` is none; the last named one is a tenant no policy names.
    pub tenants: Vec<Option<String>>,
    /// MFA used or not.
    pub mfa: Vec<bool>,
    /// Scope sets: none, and every scope a policy or the catalog names.
    pub scopes: Vec<Vec<String>>,
    /// Source networks.
    pub networks: Vec<Network>,
    /// HTTP methods.
    pub methods: Vec<String>,
    /// Times.
    pub times: Vec<TimeSample>,
    /// Action id → the resources it is asked about.
    #[serde(skip)]
    pub targets: Vec<(String, Vec<Resource>)>,
}

/// One principal shape: an index into each dimension of the [`Domain`].
pub type ShapeValues = [usize; 8];

const OUTSIDE: [[u8; 4]; 3] = [[203, 0, 113, 10], [198, 51, 100, 10], [192, 0, 2, 10]];

impl Domain {
    /// The domain over what `facts` reads and names.
    pub fn from_facts(facts: &PolicyFacts) -> Self {
        let principal_types = ["User", "ApiKey", "Service", "Anonymous"];
        let kinds_read = facts.reads("principal.auth_method")
            || principal_types
                .iter()
                .any(|t| facts.reads(&format!("is:{t}")) || facts.reads(&format!("entity:{t}")));
        let kinds = if kinds_read {
            principal_types.to_vec()
        } else {
            vec!["User", "Anonymous"]
        };

        let mut role_names: BTreeSet<&str> = facts.entity_ids("Role").collect();
        role_names.extend(facts.literals("roles"));
        let mut roles = vec![None];
        roles.extend(role_names.into_iter().map(|r| Some(r.to_string())));

        let mut tenant_names: BTreeSet<&str> = facts.entity_ids("Tenant").collect();
        tenant_names.extend(facts.literals("tenant"));
        tenant_names.extend(facts.tool_tenants.iter().map(String::as_str));
        let mut tenants = vec![None];
        if facts.reads("entity:Tenant")
            || facts.reads("principal.tenant")
            || facts.reads("resource.tenant")
        {
            let mut other = "other".to_string();
            while tenant_names.contains(other.as_str()) {
                other.push('_');
            }
            tenants.extend(tenant_names.iter().map(|t| Some(t.to_string())));
            tenants.push(Some(other));
        }

        let mfa = if facts.reads("principal.mfa") || facts.reads("context.mfa") {
            vec![false, true]
        } else {
            vec![false]
        };

        let mut all_scopes: BTreeSet<String> = facts.literals("scopes").map(String::from).collect();
        all_scopes.extend(facts.tool_credentials.iter().cloned());
        let mut scopes = vec![Vec::new()];
        if !all_scopes.is_empty() && facts.reads("principal.scopes") {
            scopes.push(all_scopes.into_iter().collect());
        }

        let networks = networks(facts);

        let methods = if facts.reads("context.method") {
            let mut m: BTreeSet<String> = ["GET".to_string(), "POST".to_string()].into();
            m.extend(facts.literals("method").map(String::from));
            // POST first: the method of agent, MCP and A2A requests.
            let mut v = vec!["POST".to_string()];
            v.extend(m.into_iter().filter(|x| x != "POST"));
            v
        } else {
            vec!["POST".into()]
        };

        let times = if ["context.time", "context.hour", "context.weekday"]
            .iter()
            .any(|a| facts.reads(a))
        {
            vec![
                TimeSample {
                    label: "weekday 10:00",
                    at: "2026-01-06T10:00:00Z",
                },
                TimeSample {
                    label: "weekday 22:00",
                    at: "2026-01-06T22:00:00Z",
                },
                TimeSample {
                    label: "weekend 10:00",
                    at: "2026-01-10T10:00:00Z",
                },
            ]
        } else {
            vec![TimeSample {
                label: "weekday 10:00",
                at: "2026-01-06T10:00:00Z",
            }]
        };

        let targets = facts
            .actions
            .iter()
            .map(|(action, types)| {
                let resources = types
                    .iter()
                    .flat_map(|ty| resources_of(facts, ty))
                    .collect();
                (action.clone(), resources)
            })
            .collect();

        Self {
            kinds,
            kinds_read,
            roles,
            tenants,
            mfa,
            scopes,
            networks,
            methods,
            times,
            targets,
        }
    }

    /// Number of values of each dimension.
    pub fn sizes(&self) -> [usize; 8] {
        [
            self.kinds.len(),
            self.roles.len(),
            self.tenants.len(),
            self.mfa.len(),
            self.scopes.len(),
            self.networks.len(),
            self.methods.len(),
            self.times.len(),
        ]
    }

    /// How many principal shapes [`Domain::shapes`] would list (saturating).
    pub fn shape_count(&self) -> u128 {
        let s = self.sizes().map(|n| n as u128);
        let common = s[5].saturating_mul(s[6]).saturating_mul(s[7]);
        let named = s[1]
            .saturating_mul(s[2])
            .saturating_mul(s[3])
            .saturating_mul(s[4]);
        self.kinds
            .iter()
            .map(|k| match *k {
                "Anonymous" => common,
                _ => common.saturating_mul(named),
            })
            .fold(0u128, u128::saturating_add)
    }

    /// Every principal shape; an anonymous caller has no role, tenant, MFA or scopes. A model
    /// of more than [`MAX_SHAPES`] (policies naming thousands of roles, tenants or methods — a
    /// policy text sent to the studio can) is refused before anything is allocated.
    pub fn shapes(&self) -> Result<Vec<ShapeValues>, String> {
        let count = self.shape_count();
        if count > MAX_SHAPES {
            let s = self.sizes();
            return Err(format!(
                "the model has {count} principal shapes (roles {}, tenants {}, scopes {}, \
                 networks {}, methods {}): more than the {MAX_SHAPES} analysed at once",
                s[1], s[2], s[4], s[5], s[6]
            ));
        }
        let s = self.sizes();
        let mut out = Vec::new();
        for k in 0..s[0] {
            let anonymous = self.kinds[k] == "Anonymous";
            let fixed = |n: usize| if anonymous { 1 } else { n };
            for r in 0..fixed(s[1]) {
                for t in 0..fixed(s[2]) {
                    for m in 0..fixed(s[3]) {
                        for sc in 0..fixed(s[4]) {
                            for n in 0..s[5] {
                                for me in 0..s[6] {
                                    for ti in 0..s[7] {
                                        out.push([k, r, t, m, sc, n, me, ti]);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether dimension `dim` can vary for shapes of this principal type.
    pub fn varies(&self, kind: usize, dim: usize) -> bool {
        !(self.kinds[kind] == "Anonymous" && (1..=4).contains(&dim))
    }

    /// The label of value `i` of dimension `dim`.
    pub fn label(&self, dim: usize, i: usize) -> String {
        match dim {
            0 if !self.kinds_read && self.kinds[i] == "User" => "authenticated".into(),
            0 => self.kinds[i].to_string(),
            1 => self.roles[i].clone().unwrap_or_else(|| "(none)".into()),
            2 => self.tenants[i].clone().unwrap_or_else(|| "(none)".into()),
            3 => if self.mfa[i] { "yes" } else { "no" }.into(),
            4 if self.scopes[i].is_empty() => "(none)".into(),
            4 => self.scopes[i].join(" "),
            5 => self.networks[i].label.clone(),
            6 => self.methods[i].clone(),
            _ => self.times[i].label.into(),
        }
    }

    /// Decides one request: `action` on `resource` by the shape `s`, built and evaluated the
    /// way the proxy does ([`PolicySet::decide`]).
    pub fn decide(
        &self,
        set: &PolicySet,
        action: &str,
        resource: &Resource,
        s: &ShapeValues,
    ) -> Decision {
        let network = &self.networks[s[5]];
        let principal = self.principal(s);
        let time = time::OffsetDateTime::parse(
            self.times[s[7]].at,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let route = match resource.kind {
            ResourceKind::Route => resource.id.clone(),
            _ => "studio".to_string(),
        };
        let facts = RequestFacts {
            method: self.methods[s[6]].clone(),
            path: "/".into(),
            ip: network.ip,
            forwarded: network.forwarded,
            time,
            tls: false,
            request_bytes: 0,
            route,
            protocol: protocol_of(action),
        };
        set.decide(&AuthzRequest {
            principal: principal.as_ref(),
            action,
            resource,
            facts: &facts,
            arguments: None,
        })
    }

    fn principal(&self, s: &ShapeValues) -> Option<Principal> {
        let (kind, id, method) = match self.kinds[s[0]] {
            "Anonymous" => return None,
            "ApiKey" => (PrincipalKind::ApiKey, "studio-key", AuthMethod::ApiKey),
            "Service" => (
                PrincipalKind::Service,
                "spiffe://studio/service",
                AuthMethod::Mtls,
            ),
            _ => (
                PrincipalKind::User,
                "https://idp.studio|user",
                AuthMethod::Jwt,
            ),
        };
        let mut p = Principal::new(kind, id, method);
        p.roles = self.roles[s[1]].iter().cloned().collect();
        p.tenant = self.tenants[s[2]].clone();
        p.mfa = self.mfa[s[3]];
        p.scopes = self.scopes[s[4]].clone();
        Some(p)
    }
}

/// The route protocol a request for `action` arrives on.
pub(crate) fn protocol_of(action: &str) -> &'static str {
    match action {
        "run_agent" | "use_tool" => "agui",
        "call_tool" | "list_tools" => "mcp",
        a if a.starts_with("a2a_") => "a2a",
        _ => "http",
    }
}

/// Resources of type `ty`: the catalogued tools plus one that is not, or the ids policies
/// name plus one they don't.
fn resources_of(facts: &PolicyFacts, ty: &str) -> Vec<Resource> {
    let kind = match ty {
        "Tool" => ResourceKind::Tool,
        "Agent" => ResourceKind::Agent,
        "Route" => ResourceKind::Route,
        "Thread" => ResourceKind::Thread,
        _ => return Vec::new(),
    };
    let mut ids: BTreeSet<String> = facts.entity_ids(ty).map(String::from).collect();
    let mut other = if kind == ResourceKind::Tool {
        ids.extend(facts.tools.iter().cloned());
        "uncatalogued_tool".to_string()
    } else {
        "other".to_string()
    };
    while ids.contains(&other) {
        other.push('_');
    }
    ids.insert(other);
    ids.into_iter().map(|id| Resource::new(kind, id)).collect()
}

/// Loopback, a representative of each address range a policy names, an outside address, and
/// (when a policy reads it) a request relayed by an unlisted proxy.
fn networks(facts: &PolicyFacts) -> Vec<Network> {
    let ranges: Vec<(String, IpAddr, u8)> = facts
        .addresses
        .iter()
        .filter_map(|text| {
            let (addr, len) = match text.split_once('/') {
                Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
                None => {
                    let a = text.parse::<IpAddr>().ok()?;
                    (a, if a.is_ipv4() { 32 } else { 128 })
                }
            };
            Some((text.clone(), addr, len))
        })
        .collect();
    let outside = OUTSIDE
        .iter()
        .map(|o| IpAddr::from(*o))
        .find(|ip| !ranges.iter().any(|(_, a, l)| in_range(*ip, *a, *l)))
        .unwrap_or(IpAddr::from(OUTSIDE[0]));
    let network_read = facts.reads("context.ip") || facts.reads("context.forwarded");
    if !network_read {
        return vec![Network {
            label: "any".into(),
            ip: outside,
            forwarded: false,
        }];
    }
    let mut out = vec![Network {
        label: "loopback".into(),
        ip: IpAddr::from([127, 0, 0, 1]),
        forwarded: false,
    }];
    for (label, addr, len) in &ranges {
        out.push(Network {
            label: label.clone(),
            ip: representative(*addr, *len),
            forwarded: false,
        });
    }
    out.push(Network {
        label: "outside".into(),
        ip: outside,
        forwarded: false,
    });
    if facts.reads("context.forwarded") {
        out.push(Network {
            label: "forwarded".into(),
            ip: IpAddr::from([127, 0, 0, 1]),
            forwarded: true,
        });
    }
    out
}

/// An address inside `addr/len` (the first host, when there is one).
fn representative(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let net = u32::from(a) & mask;
            IpAddr::from(std::net::Ipv4Addr::from(if len <= 30 {
                net | 1
            } else {
                net
            }))
        }
        IpAddr::V6(a) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            let net = u128::from(a) & mask;
            IpAddr::from(std::net::Ipv6Addr::from(if len <= 126 {
                net | 1
            } else {
                net
            }))
        }
    }
}

fn in_range(ip: IpAddr, addr: IpAddr, len: u8) -> bool {
    match (ip, addr) {
        (IpAddr::V4(i), IpAddr::V4(a)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(i) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(i), IpAddr::V6(a)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(i) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}
