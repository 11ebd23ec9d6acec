//! Fuzzes the JWT claim mapping: verified claims (any JSON) → `Principal`
//! (`palisade_proxy::authn::claims::principal_from_claims`) → the identity the proxy forwards.
//!
//! Beyond "never panics": the principal is `User::"<iss>|<sub>"`, its sets are sorted and
//! without duplicates, a space-separated `scp` claim yields each of its scopes, and its Cedar uid
//! quotes the id as a JSON string (parses back to it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_proxy::authn::claims::principal_from_claims;
use palisade_proxy::authn::config::ClaimMappingSpec;
use palisade_proxy::authn::PrincipalKind;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(claims) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let mut map = ClaimMappingSpec::default();
    // Namespaced (Auth0), nested (Keycloak) and space-separated (OAuth scope) forms.
    map.roles
        .extend(["https://example.com/roles", "realm_access.roles", "a.b.c"].map(String::from));
    map.tenant.push("org.id".into());
    map.scopes.push("scp".into());
    let p = principal_from_claims("https://issuer.example", &claims, &map);
    assert_eq!(p.kind, PrincipalKind::User);
    let sub = claims["sub"].as_str().unwrap_or("");
    assert_eq!(p.id, format!("https://issuer.example|{sub}"));
    for set in [&p.roles, &p.groups, &p.scopes] {
        assert!(
            set.windows(2).all(|w| w[0] < w[1]),
            "{set:?} not sorted and unique"
        );
    }
    if let Some(Value::String(scp)) = claims.get("scp") {
        for scope in scp.split_whitespace() {
            assert!(p.scopes.iter().any(|s| s == scope), "{scope:?} lost");
        }
    }
    let uid = p.entity_uid();
    let quoted = uid.strip_prefix("User::").expect("a User uid");
    assert_eq!(
        serde_json::from_str::<String>(quoted).ok().as_deref(),
        Some(p.id.as_str())
    );
    // The forwarded identity headers are built from these values; building them must not panic
    // whatever the claims held (invalid header bytes are refused, not crashed on).
    let _ = http::HeaderValue::from_str(&uid);
    let _ = http::HeaderValue::from_str(&p.roles.join(","));
    if let Some(t) = &p.tenant {
        let _ = http::HeaderValue::from_str(t);
    }
});
