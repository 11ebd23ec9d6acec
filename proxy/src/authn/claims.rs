//! Claim mapping: from a verified JWT's claims to the [`Principal`]'s attributes.

use serde_json::Value;

use super::config::ClaimMappingSpec;
use crate::principal::{AuthMethod, Principal, PrincipalKind};

/// Looks `path` up in `claims`: first as one top-level name (Auth0's namespaced
/// `https://example.com/roles`), then as a dotted path (`resource_access.app.roles`).
pub fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |node, key| node.get(key))
}

/// Strings from a claim that is a string (split on spaces when `split_spaces`) or a list.
fn strings(value: &Value, split_spaces: bool) -> Vec<String> {
    match value {
        Value::String(s) if split_spaces => s.split_whitespace().map(str::to_string).collect(),
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn first_string(claims: &Value, paths: &[String]) -> Option<String> {
    paths
        .iter()
        .find_map(|p| lookup(claims, p).and_then(Value::as_str))
        .map(str::to_string)
}

fn merged(claims: &Value, paths: &[String], split_spaces: bool) -> Vec<String> {
    paths
        .iter()
        .filter_map(|p| lookup(claims, p))
        .flat_map(|v| strings(v, split_spaces))
        .collect()
}

/// Most actors read from nested `act` claims; deeper ones are ignored (only the immediate
/// actor reaches policies, the chain is for audit and logs).
const MAX_ACTORS: usize = 8;

/// The RFC 8693 delegation chain of an `act` claim, immediate actor first: `act.sub`, then
/// `act.act.sub`… An `act` without a string `sub` ends the chain.
fn actors(act: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = act;
    while let Some(sub) = cur.get("sub").and_then(Value::as_str) {
        if out.len() == MAX_ACTORS {
            break;
        }
        out.push(sub.to_string());
        cur = &cur["act"];
    }
    out
}

/// Builds the `User::"<iss>|<sub>"` principal from verified claims.
pub fn principal_from_claims(issuer: &str, claims: &Value, map: &ClaimMappingSpec) -> Principal {
    let sub = claims["sub"].as_str().unwrap_or("");
    let mut p = Principal::new(
        PrincipalKind::User,
        format!("{issuer}|{sub}"),
        AuthMethod::Jwt,
    );
    p.email = first_string(claims, &map.email);
    p.tenant = first_string(claims, &map.tenant);
    p.roles = merged(claims, &map.roles, false);
    p.groups = merged(claims, &map.groups, false);
    p.scopes = merged(claims, &map.scopes, true);
    // `amr` entries are strings (RFC 8176) or, from Supabase, objects with a `method`; Supabase
    // also states the assurance level reached as `aal` ("aal2" = a second factor was used).
    p.mfa = claims["amr"].as_array().is_some_and(|amr| {
        amr.iter()
            .filter_map(|m| m.as_str().or_else(|| m["method"].as_str()))
            .any(|m| map.mfa_amr.iter().any(|x| x == m))
    }) || claims["aal"].as_str() == Some("aal2");
    p.actors = actors(&claims["act"]);
    p.token_id = claims["jti"].as_str().map(str::to_string);
    p.expires_at = claims["exp"].as_u64().map(super::unix_time);
    p.normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Found by the `claims_principal` fuzz target: an `exp` past what `SystemTime` holds
    /// panicked instead of meaning "not yet".
    #[test]
    fn an_exp_beyond_any_date_is_far_future_not_a_panic() {
        for exp in [u64::MAX, 11_101_111_111_980_000_000, 253_402_300_800] {
            let p = principal_from_claims("iss", &json!({"sub": "a", "exp": exp}), &map(&[]));
            let at = p.expires_at.expect("an expiry");
            assert_eq!(at, crate::authn::unix_time(253_402_300_799), "exp {exp}");
            assert!(at > std::time::SystemTime::now());
        }
        let p = principal_from_claims("iss", &json!({"sub": "a", "exp": 1_700_000_000}), &map(&[]));
        assert_eq!(p.expires_at, Some(crate::authn::unix_time(1_700_000_000)));
    }

    fn map(roles: &[&str]) -> ClaimMappingSpec {
        ClaimMappingSpec {
            roles: roles.iter().map(|s| s.to_string()).collect(),
            ..ClaimMappingSpec::default()
        }
    }

    #[test]
    fn the_act_claim_becomes_the_delegation_chain() {
        let claims =
            json!({"sub": "alice", "act": {"sub": "agent-y", "act": {"sub": "orchestrator"}}});
        let p = principal_from_claims("iss", &claims, &map(&[]));
        assert_eq!(p.actors, ["agent-y", "orchestrator"]);
        assert_eq!(p.actor(), Some("agent-y"));
        let plain = principal_from_claims("iss", &json!({"sub": "alice"}), &map(&[]));
        assert_eq!(plain.actor(), None);
        let odd =
            principal_from_claims("iss", &json!({"sub": "a", "act": {"iss": "x"}}), &map(&[]));
        assert!(
            odd.actors.is_empty(),
            "an `act` without `sub` names no actor"
        );
        let mut deep = json!({"sub": "last"});
        for i in 0..20 {
            deep = json!({"sub": format!("a{i}"), "act": deep});
        }
        let p = principal_from_claims("iss", &json!({"sub": "u", "act": deep}), &map(&[]));
        assert_eq!(p.actors.len(), MAX_ACTORS);
    }

    #[test]
    fn keycloak_realm_and_client_roles_merge() {
        let claims = json!({
            "sub": "u1", "email": "a@acme.test", "tenant": "acme",
            "realm_access": {"roles": ["user", "developer"]},
            "resource_access": {"palisade": {"roles": ["agent_operator"]}, "other": {"roles": ["x"]}},
            "scope": "openid agents:run", "amr": ["pwd", "otp"], "jti": "j1", "exp": 2000000000
        });
        let p = principal_from_claims(
            "https://kc/realms/r",
            &claims,
            &map(&["realm_access.roles", "resource_access.palisade.roles"]),
        );
        assert_eq!(p.id, "https://kc/realms/r|u1");
        assert_eq!(p.roles, ["agent_operator", "developer", "user"]);
        assert_eq!(p.scopes, ["agents:run", "openid"]);
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        assert_eq!(p.email.as_deref(), Some("a@acme.test"));
        assert!(p.mfa);
        assert_eq!(p.token_id.as_deref(), Some("j1"));
    }

    #[test]
    fn supabase_and_auth0_shapes() {
        let supabase =
            json!({"sub": "s", "role": "authenticated", "app_metadata": {"role": "admin"}});
        let p = principal_from_claims("sb", &supabase, &map(&["app_metadata.role", "role"]));
        assert_eq!(p.roles, ["admin", "authenticated"]);
        assert!(!p.mfa);
        // Supabase after a second factor: `amr` objects and `aal2`.
        let mfa = json!({"sub": "s", "aal": "aal2",
            "amr": [{"method": "password", "timestamp": 1}, {"method": "totp", "timestamp": 2}]});
        assert!(principal_from_claims("sb", &mfa, &map(&[])).mfa);
        let otp_object = json!({"sub": "s", "amr": [{"method": "otp", "timestamp": 1}]});
        assert!(principal_from_claims("sb", &otp_object, &map(&[])).mfa);
        let password_only =
            json!({"sub": "s", "aal": "aal1", "amr": [{"method": "password", "timestamp": 1}]});
        assert!(!principal_from_claims("sb", &password_only, &map(&[])).mfa);

        let auth0 = json!({"sub": "a", "https://palisade.dev/roles": ["viewer"], "scp": ["read"]});
        let p = principal_from_claims("a0", &auth0, &map(&["https://palisade.dev/roles"]));
        assert_eq!(p.roles, ["viewer"]);
        assert_eq!(p.scopes, ["read"]);
    }
}
