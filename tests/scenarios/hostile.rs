//! The hostile suite: what an attacker who read the code sends, one case or more per class of
//! hole (docs/security.md lists the classes and the principles they break).
//!
//! Every case runs against two proxies in front of the same kind of scripted upstream:
//!
//! - **guarded**: the configuration a user ships — dialect routes (`mcp`, `agui`, `a2a`), the
//!   seed policies of `policies/`, the built-in guardrails. The attack must fail there.
//! - **permissive**: the same paths and upstream, but plain `http` routes, one policy that
//!   permits everything, no guardrails, claims read from claims the tokens don't carry. The
//!   attack must *succeed* there: the calibration that shows each case's check can see the
//!   attack at all (a check that never fires would pass the guarded run for nothing).
//!
//! Requests go out as raw bytes over TCP, so what the proxy receives is exactly what the case
//! says (no client normalizes a path or merges a header on the way).

mod request;
mod response;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use palisade_e2e::issuer::Issuer;
use palisade_e2e::upstream::{ScriptedUpstream, Upstream};
use palisade_e2e::{Proxy, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One proxy and the upstream behind it.
struct Stack {
    proxy: Proxy,
    upstream: Upstream,
}

/// The two stacks of every case, and the issuer whose tokens both trust.
struct Suite {
    guarded: Stack,
    permissive: Stack,
    issuer: Issuer,
    _policies: tempfile::TempDir,
}

/// Which stack a run is against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Config {
    Guarded,
    Permissive,
}

impl Suite {
    fn stack(&self, config: Config) -> &Stack {
        match config {
            Config::Guarded => &self.guarded,
            Config::Permissive => &self.permissive,
        }
    }
}

/// The routes of both stacks: `(name, path prefix, what the guarded stack adds)`. `/evil*`
/// routes lead to the malicious responses of [`response`]; the others to an upstream that
/// records what it receives.
const ROUTES: &[(&str, &str, &str)] = &[
    ("mcp", "/mcp", "protocol: mcp"),
    (
        "agent",
        "/agent",
        "protocol: agui\nauthorization: {agent: assistant}",
    ),
    (
        "a2a",
        "/a2a",
        "protocol: a2a\nauthorization: {agent: assistant}",
    ),
    (
        "evil",
        "/evil/",
        "protocol: agui\nauthorization: {agent: assistant, denied_tool_call: run_error}",
    ),
    ("evil-mcp", "/evil-mcp/", "protocol: mcp"),
    ("evil-http", "/evil-http/", ""),
];

/// A route rule both stacks keep: `/ops/admin…` is the `admin` action (no seed role but
/// `admin` has it); the rest of `/ops` is plain HTTP any role may use.
const OPS: &str =
    "authorization: {rules: [{path_prefix: /ops/admin, action: admin, resource: 'Route::\"ops\"'}]}";

/// The malicious upstream: [`response::script`]'s answers under `/evil*`, and a JSON-RPC
/// result for every other request (what the request cases send is only recorded).
async fn upstream() -> Upstream {
    response::script(ScriptedUpstream::new())
        .respond(
            "/",
            200,
            &[("content-type", "application/json")],
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        )
        .start()
        .await
}

async fn suite() -> Suite {
    let issuer = Issuer::new();
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let permit_all = tempfile::tempdir().unwrap();
    let schema = "palisade.cedarschema";
    std::fs::copy(seed.join(schema), permit_all.path().join(schema)).unwrap();
    std::fs::write(
        permit_all.path().join("all.cedar"),
        "permit (principal, action, resource);\n",
    )
    .unwrap();

    let up = upstream().await;
    let mut guarded = TestProxy::new().upstream("up", up.addr);
    for (name, path, extra) in ROUTES {
        guarded = guarded.route(name, path, "up", extra);
    }
    let guarded = guarded
        .route("ops", "/ops", "up", OPS)
        .top_yaml(&issuer.yaml_with_sets("", &[("main", &seed, "enforce")]))
        .top_yaml("guardrails:\n  default_rule_set: default")
        .start();

    let open_up = upstream().await;
    let mut permissive = TestProxy::new().upstream("up", open_up.addr);
    for (name, path, _) in ROUTES {
        permissive = permissive.route(name, path, "up", "");
    }
    // Roles and tenant from claims no token carries: the claim cases' values are never read.
    let auth = issuer
        .yaml_with_sets("", &[("main", permit_all.path(), "enforce")])
        .replace(
            "claims: {roles: [roles]}",
            "claims: {roles: [x_roles], tenant: [x_tenant]}",
        );
    let permissive = permissive
        .route("ops", "/ops", "up", OPS)
        .top_yaml(&auth)
        .start();
    Suite {
        guarded: Stack {
            proxy: guarded,
            upstream: up,
        },
        permissive: Stack {
            proxy: permissive,
            upstream: open_up,
        },
        issuer,
        _policies: permit_all,
    }
}

/// A response as the client received it: status (0 when none arrived) and the body bytes,
/// de-chunked as far as they go (a stream the proxy ended early is kept up to its end).
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

/// Sends `raw` on a fresh connection and reads until the proxy closes it (bounded: 20 s).
async fn send(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), sock.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the proxy hung on {}",
        String::from_utf8_lossy(raw)
    );
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Answer {
        status,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    }
}

/// The data of a chunked body, as far as it is complete.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            out.push_str(&rest[..rest.len().min(n)]);
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// An HTTP/1.1 request with `Content-Length`, `Connection: close` and the bearer `token`.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str, token: &str) -> Vec<u8> {
    request_bytes(method, path, headers, body.as_bytes(), token)
}

/// [`request`] with a body that need not be text.
fn request_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    token: &str,
) -> Vec<u8> {
    let mut raw =
        format!("{method} {path} HTTP/1.1\r\nhost: palisade.test\r\nconnection: close\r\n");
    if !token.is_empty() {
        raw.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        raw.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    raw
}

#[test]
fn dechunk_reads_complete_and_cut_bodies() {
    assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    assert_eq!(dechunk("3\r\nabc\r\n9\r\nde"), "abcde");
    assert_eq!(dechunk(""), "");
}
