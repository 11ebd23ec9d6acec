//! `examples/keycloak`: the example's `palisade.yaml` with its issuer pointed at a real OpenID
//! provider on a free port (`tests/oidc`, RSA keys generated at start, served through discovery
//! and a JWKS URL), and Keycloak-shaped tokens minted at test time: realm roles
//! (`realm_access.roles`) and the `palisade` client's roles (`resource_access.palisade.roles`)
//! become Palisade roles that the seed Cedar policies decide on.

use palisade_e2e::oidc::{decode_unverified, Idp, TokenRequest};
use palisade_e2e::{client, error_code, upstream};
use palisade_proxy::server::Running;
use serde_json::{json, Value};

use crate::example_proxy::{self, RUN_INPUT};

/// The example behind an echo upstream, trusting `idp` in place of the Keycloak realm.
async fn fixture(idp: &Idp) -> (Running, upstream::Upstream) {
    let echo = upstream::echo().await;
    let proxy = example_proxy::start_edited(
        "keycloak",
        &[(
            "https://keycloak.example.com/realms/agents",
            idp.issuer.clone(),
        )],
        &[("PALISADE_UPSTREAMS__AGENT__ADDRESS", echo.addr.to_string())],
    );
    example_proxy::wait_ready(&proxy).await;
    (proxy, echo)
}

/// A token of the `bare` client (registered claims only) with these Keycloak claims added.
async fn keycloak_token(idp: &Idp, realm_roles: &[&str], resource_access: Value) -> String {
    let request = TokenRequest::new()
        .claim("realm_access", json!({ "roles": realm_roles }))
        .claim("resource_access", resource_access)
        .claim("tenant", "acme")
        .claim("preferred_username", "alice");
    idp.token_with("bare", &request).await
}

async fn run(proxy: &Running, token: &str) -> (u16, Value) {
    let resp = client()
        .post(example_proxy::url(proxy, "/agent"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(RUN_INPUT)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn roles(echo: &Value) -> Vec<String> {
    echo["headers"]["x-palisade-roles"]
        .as_str()
        .unwrap_or("")
        .split(',')
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realm_roles_map_to_palisade_roles() {
    let idp = Idp::start().await;
    let (proxy, _echo) = fixture(&idp).await;

    let token = keycloak_token(
        &idp,
        &["developer", "default-roles-agents", "offline_access"],
        json!({"account": {"roles": ["manage-account", "view-profile"]}}),
    )
    .await;
    assert_eq!(decode_unverified(&token).header["alg"], "RS256");
    let (status, echo) = run(&proxy, &token).await;
    assert_eq!(status, 200, "{echo}");
    let roles = roles(&echo);
    assert!(roles.contains(&"developer".to_string()), "{roles:?}");
    assert!(
        !roles.contains(&"manage-account".to_string()),
        "roles of other clients are not read: {roles:?}"
    );
    let headers = &echo["headers"];
    assert_eq!(
        headers["x-palisade-principal"],
        format!("User::\"{}|bare\"", idp.issuer)
    );
    assert_eq!(headers["x-palisade-tenant"], "acme");

    // A read-only realm role may not run agents.
    let viewer = keycloak_token(&idp, &["viewer", "default-roles-agents"], json!({})).await;
    let (status, body) = run(&proxy, &viewer).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(body.to_string().as_bytes()), "FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palisade_client_roles_count_and_other_clients_do_not() {
    let idp = Idp::start().await;
    let (proxy, _echo) = fixture(&idp).await;

    // No realm roles; `agent_operator` as a role of the `palisade` client.
    let operator = keycloak_token(
        &idp,
        &[],
        json!({"palisade": {"roles": ["agent_operator"]}, "account": {"roles": ["view-profile"]}}),
    )
    .await;
    let (status, echo) = run(&proxy, &operator).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(roles(&echo), vec!["agent_operator".to_string()]);

    // `admin` as a role of another client is not a Palisade role.
    let elsewhere = keycloak_token(
        &idp,
        &["default-roles-agents"],
        json!({"realm-management": {"roles": ["admin"]}}),
    )
    .await;
    let (status, body) = run(&proxy, &elsewhere).await;
    assert_eq!(status, 403, "{body}");

    // The IdP's own Keycloak-shaped client token (realm + client roles of `developer`).
    let (status, echo) = run(&proxy, &idp.token("developer").await).await;
    assert_eq!(status, 200, "{echo}");
    assert!(roles(&echo).contains(&"developer".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_for_another_audience_or_unsigned_are_refused() {
    let idp = Idp::start().await;
    let (proxy, _echo) = fixture(&idp).await;
    // Keycloak's default audience is `account`; the example requires `palisade`.
    let account = idp
        .token_with("developer", &TokenRequest::new().audience("account"))
        .await;
    let (status, body) = run(&proxy, &account).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(body.to_string().as_bytes()), "UNAUTHENTICATED");
    // The same claims with the signature cut off.
    let token = idp.token("developer").await;
    let unsigned = format!("{}.", token.rsplit_once('.').unwrap().0);
    let (status, _) = run(&proxy, &unsigned).await;
    assert_eq!(status, 401);
}

/// The same config with the realm's keys exported to a file (`keys: {jwks_file: …}`, for
/// deployments that cannot reach Keycloak at start): realm roles still map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realm_keys_from_an_exported_jwks_file() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, idp.jwks().await.to_string()).unwrap();
    let echo = upstream::echo().await;
    let proxy = example_proxy::start_edited(
        "keycloak",
        &[
            (
                "https://keycloak.example.com/realms/agents",
                idp.issuer.clone(),
            ),
            (
                "keys: {discovery: true}",
                format!("keys: {{jwks_file: \"{}\"}}", jwks.display()),
            ),
        ],
        &[("PALISADE_UPSTREAMS__AGENT__ADDRESS", echo.addr.to_string())],
    );
    example_proxy::wait_ready(&proxy).await;
    let token = keycloak_token(&idp, &["user"], json!({})).await;
    let (status, echo) = run(&proxy, &token).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(roles(&echo), vec!["user".to_string()]);
}
