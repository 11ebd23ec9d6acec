//! MCP authorization: `tools/call` decided per tool (with the 2026-07-28 routing headers required
//! to agree with the body), and `tools/list` / `tools/call` filtered against a real MCP server
//! (the `mcp` package from PyPI) in both response flavours and both client modes.

use std::net::SocketAddr;
use std::time::Duration;

use palisade_e2e::issuer::Issuer;
use palisade_e2e::{client, eventually, TestProxy};
use serde_json::{json, Value};

use super::{post, repo_policies, seed_stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_calls_are_decided_and_headers_must_match_the_body() {
    let s = seed_stack().await;
    let user = s.issuer.role("user");
    let call = |name: &str| json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": {}}});
    let (status, body) = post(&s.proxy, "/mcp-echo", &user, &call("search_docs")).await;
    assert_eq!(status, 200);
    let echoed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        echoed["headers"]["transfer-encoding"], "chunked",
        "a held body goes on chunked"
    );

    let (status, body) = post(&s.proxy, "/mcp-echo", &user, &call("write_file")).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        json!({"jsonrpc": "2.0", "id": 7, "error": {
        "code": -32030, "message": "access denied",
        "data": {"code": "FORBIDDEN", "request_id": json["error"]["data"]["request_id"]}}})
    );

    // The 2026-07-28 transport's routing headers must agree with the body (a `search_docs` call).
    for (method_h, name_h, expected) in [
        ("tools/list", "search_docs", 400),
        ("tools/call", "write_file", 400),
        ("tools/call", "search_docs", 200),
    ] {
        let resp = client()
            .post(s.proxy.url("/mcp-echo"))
            .bearer_auth(&user)
            .header("mcp-method", method_h)
            .header("mcp-name", name_h)
            .json(&call("search_docs"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected, "{method_h} {name_h}");
        if expected == 400 {
            let json: Value = resp.json().await.unwrap();
            assert_eq!(json["id"], 7, "{method_h} {name_h}");
            assert_eq!(json["error"]["code"], -32600, "{method_h} {name_h}");
        }
    }
}

// ---- MCP against a real server -------------------------------------------------------------

const MCP_SERVER: &str = r#"
import sys
from mcp.server import MCPServer

port, json_response = int(sys.argv[1]), sys.argv[2] == "json"
mcp = MCPServer("palisade-e2e")

@mcp.tool()
def search_docs(query: str) -> str:
    """Search the documentation."""
    return f"results for {query}"

@mcp.tool()
def read_file(path: str) -> str:
    """Read a file."""
    return f"contents of {path}"

@mcp.tool()
def write_file(path: str, content: str) -> str:
    """Write a file."""
    return f"wrote {len(content)} bytes to {path}"

mcp.run(transport="streamable-http", host="127.0.0.1", port=port,
        json_response=json_response, stateless_http=True)
"#;

const MCP_CLIENT: &str = r#"
import asyncio, json, sys
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

url, token, mode = sys.argv[1], sys.argv[2], sys.argv[3]

async def main():
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10)
    out = {}
    async with Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        for name, args in [("search_docs", {"query": "cedar"}), ("read_file", {"path": "/srv/a.txt"}),
                           ("read_file", {"path": "/etc/shadow"}), ("write_file", {"path": "/tmp/x", "content": "hi"})]:
            key = f"{name} {args.get('path', args.get('query'))}"
            try:
                r = await client.call_tool(name, args)
                out[key] = "error" if r.is_error else r.content[0].text
            except Exception as e:
                out[key] = f"refused {getattr(getattr(e, 'error', None), 'code', None)}"
    print(json.dumps(out, sort_keys=True))

asyncio.run(main())
"#;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_list_and_call_are_filtered_against_a_real_mcp_server() {
    // tests/run.sh always installs it; a bare `cargo test` without it says so loudly.
    let python = palisade_e2e::peers::python();
    let scripts = tempfile::tempdir().unwrap();
    std::fs::write(scripts.path().join("server.py"), MCP_SERVER).unwrap();
    std::fs::write(scripts.path().join("client.py"), MCP_CLIENT).unwrap();
    // (role, what the client reports, expected): the client lists the tools, then calls each.
    let refused = json!("refused -32030");
    let expectations = [
        ("user", "tools", json!(["search_docs"])),
        ("user", "search_docs cedar", json!("results for cedar")),
        ("user", "read_file /srv/a.txt", refused.clone()),
        ("user", "write_file /tmp/x", refused.clone()),
        ("developer", "tools", json!(["read_file", "search_docs"])),
        (
            "developer",
            "read_file /srv/a.txt",
            json!("contents of /srv/a.txt"),
        ),
        // ABAC on arguments: system paths are refused whatever the role.
        ("developer", "read_file /etc/shadow", refused.clone()),
        ("developer", "write_file /tmp/x", refused),
    ];
    for flavour in ["json", "sse"] {
        let port = palisade_e2e::free_port();
        let _server = Child(
            std::process::Command::new(&python)
                .arg(scripts.path().join("server.py"))
                .arg(port.to_string())
                .arg(flavour)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let up = eventually(Duration::from_secs(20), || {
            std::net::TcpStream::connect(addr).ok()
        })
        .await;
        assert!(up.is_some(), "the MCP server did not start");

        let issuer = Issuer::new();
        let seed = repo_policies();
        let proxy = TestProxy::new()
            .upstream("mcp", addr)
            .route("mcp", "/mcp", "mcp", "protocol: mcp")
            .top_yaml(
                &issuer.yaml_with_sets("  reload_interval: 100ms\n", &[("main", &seed, "enforce")]),
            )
            .start();
        let url = proxy.url("/mcp");
        for mode in ["legacy", "auto"] {
            let run = |role: &str| {
                let out = std::process::Command::new(&python)
                    .arg(scripts.path().join("client.py"))
                    .args([url.as_str(), issuer.role(role).as_str(), mode])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "client failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                serde_json::from_slice::<Value>(&out.stdout).unwrap()
            };
            let (user, developer) = (run("user"), run("developer"));
            for (role, key, expected) in &expectations {
                let got = if *role == "user" { &user } else { &developer };
                assert_eq!(
                    &got[key], expected,
                    "{flavour} {mode} {role} `{key}`: {got}"
                );
            }
        }
    }
}
