//! `examples/supabase`: the example's `palisade.yaml` with an HS256 secret generated at test time
//! (read from `SUPABASE_JWT_SECRET`, as the file says), Supabase-shaped tokens minted here and by
//! the example's `mint_token.py`, and Edge-Function identity headers from trusted and untrusted
//! networks.

use std::io::Read;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use palisade_e2e::{client, error_code, upstream};
use palisade_proxy::server::Running;
use serde_json::{json, Value};

use crate::example_proxy::{self, RUN_INPUT};
use crate::peer::workspace;

/// The example's issuer (its project ref is a placeholder).
const ISS: &str = "https://abcdefghijklmnop.supabase.co/auth/v1";

/// A random 64-hex-character secret, put into `SUPABASE_JWT_SECRET` once per test process (the
/// config reads it from there; every test in the process shares it).
fn secret() -> &'static str {
    static SECRET: OnceLock<String> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut raw = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .unwrap();
        let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        std::env::set_var("SUPABASE_JWT_SECRET", &secret);
        secret
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A session token as Supabase Auth issues it to a signed-in user; `app_metadata` as given.
fn session_claims(sub: &str, app_metadata: Value) -> Value {
    let now = now();
    json!({
        "iss": ISS, "aud": "authenticated", "sub": sub, "email": format!("{sub}@example.com"),
        "phone": "", "role": "authenticated", "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": format!("session-{sub}"), "is_anonymous": false,
        "app_metadata": app_metadata, "user_metadata": {"role": "admin"},
        "iat": now, "exp": now + 3600,
    })
}

fn hs256(claims: &Value, secret: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The example behind an echo upstream; edge headers trusted from `trusted_from` (the
/// example's own `10.0.0.0/8` when `None`).
async fn fixture(trusted_from: Option<&str>) -> (Running, upstream::Upstream) {
    secret();
    let echo = upstream::echo().await;
    // `trusted_headers` has no `PALISADE_*` override; edit the file's line instead.
    let edits: Vec<(&str, String)> = trusted_from
        .map(|net| ("from: [10.0.0.0/8]", format!("from: [\"{net}\"]")))
        .into_iter()
        .collect();
    let proxy = example_proxy::start_edited(
        "supabase",
        &edits,
        &[("PALISADE_UPSTREAMS__AGENT__ADDRESS", echo.addr.to_string())],
    );
    example_proxy::wait_ready(&proxy).await;
    (proxy, echo)
}

/// POSTs a run to `/agent` with `headers`; the status and the JSON body (the echo, or an error).
async fn call(proxy: &Running, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = client()
        .post(example_proxy::url(proxy, "/agent"))
        .header("content-type", "application/json")
        .body(RUN_INPUT);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn bearer(proxy: &Running, token: &str) -> (u16, Value) {
    call(proxy, &[("authorization", &format!("Bearer {token}"))]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tokens_map_app_metadata_roles_and_tenant() {
    let (proxy, _echo) = fixture(None).await;
    let token = hs256(
        &session_claims(
            "u-1",
            json!({"provider": "email", "role": "developer", "tenant": "acme"}),
        ),
        secret(),
    );
    let (status, echo) = bearer(&proxy, &token).await;
    assert_eq!(status, 200, "{echo}");
    let headers = &echo["headers"];
    assert_eq!(
        headers["x-palisade-principal"],
        format!("User::\"{ISS}|u-1\"")
    );
    let roles: Vec<&str> = headers["x-palisade-roles"]
        .as_str()
        .unwrap()
        .split(',')
        .collect();
    assert!(roles.contains(&"developer"), "{roles:?}");
    assert!(
        !roles.contains(&"admin"),
        "user_metadata (user-editable) must not grant roles: {roles:?}"
    );
    assert_eq!(headers["x-palisade-tenant"], "acme");
    assert!(
        headers.get("authorization").is_none(),
        "the Supabase token is not forwarded"
    );

    // A list in app_metadata.roles works too.
    let token = hs256(
        &session_claims("u-2", json!({"roles": ["viewer", "user"]})),
        secret(),
    );
    let (status, echo) = bearer(&proxy, &token).await;
    assert_eq!(status, 200, "{echo}");
    assert!(echo["headers"]["x-palisade-roles"]
        .as_str()
        .unwrap()
        .contains("user"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_without_a_role_and_foreign_tokens_are_refused() {
    let (proxy, _echo) = fixture(None).await;
    // Signed in, but no Palisade role: authenticated, not authorized.
    let no_role = hs256(
        &session_claims("u-3", json!({"provider": "email"})),
        secret(),
    );
    let (status, body) = bearer(&proxy, &no_role).await;
    assert_eq!((status, error_code_of(&body)), (403, "FORBIDDEN".into()));

    let now = now();
    let refused = [
        (
            "another secret",
            hs256(
                &session_claims("u-4", json!({"role": "admin"})),
                "another-secret-that-is-long-enough-0123456789",
            ),
        ),
        (
            "the anon key",
            hs256(
                &json!({"iss": "supabase", "ref": "abcdefghijklmnop", "role": "anon", "iat": now, "exp": now + 3600}),
                secret(),
            ),
        ),
        (
            "a service-role key",
            hs256(
                &json!({"iss": "supabase", "ref": "abcdefghijklmnop", "role": "service_role", "iat": now, "exp": now + 3600}),
                secret(),
            ),
        ),
        ("another project", {
            let mut claims = session_claims("u-5", json!({"role": "admin"}));
            claims["iss"] = json!("https://otherproject00000.supabase.co/auth/v1");
            hs256(&claims, secret())
        }),
        ("an expired session", {
            let mut claims = session_claims("u-6", json!({"role": "admin"}));
            claims["exp"] = json!(now - 600);
            hs256(&claims, secret())
        }),
    ];
    for (what, token) in refused {
        let (status, body) = bearer(&proxy, &token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(
            ["UNAUTHENTICATED", "TOKEN_EXPIRED"].contains(&error_code_of(&body).as_str()),
            "{what}: {body}"
        );
    }
}

fn error_code_of(body: &Value) -> String {
    error_code(body.to_string().as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_function_headers_only_from_trusted_networks() {
    let edge = [
        ("x-user-id", "7d3c9a4e"),
        ("x-user-email", "edge@example.com"),
        ("x-user-role", "developer"),
        ("x-user-tenant", "acme"),
    ];
    // The example as shipped trusts 10.0.0.0/8; this test's requests come from loopback.
    let (proxy, _echo) = fixture(None).await;
    let (status, body) = call(&proxy, &edge).await;
    assert_eq!(
        (status, error_code_of(&body)),
        (401, "UNAUTHENTICATED".into())
    );

    // The same file with the edge function's network being loopback.
    let (proxy, _echo) = fixture(Some("127.0.0.1/32")).await;
    let (status, echo) = call(&proxy, &edge).await;
    assert_eq!(status, 200, "{echo}");
    let headers = &echo["headers"];
    assert_eq!(headers["x-palisade-principal"], "User::\"edge|7d3c9a4e\"");
    assert_eq!(headers["x-palisade-roles"], "developer");
    assert_eq!(headers["x-palisade-tenant"], "acme");

    // Session tokens keep working on the same proxy.
    let token = hs256(&session_claims("u-7", json!({"role": "user"})), secret());
    let (status, echo) = bearer(&proxy, &token).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(
        echo["headers"]["x-palisade-principal"],
        format!("User::\"{ISS}|u-7\"")
    );
}

/// The example's `mint_token.py` (what its README runs) makes tokens this config accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_mint_script_makes_accepted_tokens() {
    let (proxy, _echo) = fixture(None).await;
    let mint = |args: &[&str]| -> String {
        let out = Command::new("python3")
            .arg(workspace().join("examples/supabase/mint_token.py"))
            .args(args)
            .env("SUPABASE_JWT_SECRET", secret())
            .output()
            .unwrap_or_else(|e| {
                panic!("python3 is needed for examples/supabase/mint_token.py: {e}")
            });
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (status, echo) = bearer(&proxy, &mint(&["--role", "developer", "--tenant", "acme"])).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["headers"]["x-palisade-tenant"], "acme");
    let (status, _) = bearer(&proxy, &mint(&[])).await;
    assert_eq!(status, 403);
    let (status, _) = bearer(&proxy, &mint(&["--anon"])).await;
    assert_eq!(status, 401);
}
