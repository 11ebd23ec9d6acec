//! `bench-pingora`: the floor under Palisade — pingora's HTTP proxy with nothing in it, for
//! `tests/bench/instructions.sh` (docs/performance.md, "Instructions per request").
//!
//! ```text
//! bench-pingora --port P --upstream HOST:PORT [--threads N]
//! ```
//!
//! Every request goes to the one upstream over pingora's keep-alive pool, with pingora's
//! defaults and no hook but `upstream_peer`: no routing, no headers added or removed, no
//! logging. What Palisade's bare route costs above this is Palisade's own work; what this costs
//! above nginx is pingora's.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

struct Minimal {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Minimal {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora_core::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = None;
    let mut upstream = None;
    let mut threads = 1usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => port = Some(value()?.parse::<u16>()?),
            "--upstream" => upstream = Some(value()?.parse::<SocketAddr>()?),
            "--threads" => threads = value()?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let (port, upstream) = match (port, upstream) {
        (Some(p), Some(u)) => (p, u),
        _ => return Err("usage: bench-pingora --port P --upstream HOST:PORT [--threads N]".into()),
    };
    let conf = ServerConf {
        threads: threads.max(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service =
        pingora_proxy::http_proxy_service(&server.configuration, Minimal { upstream });
    service.add_tcp(&format!("127.0.0.1:{port}"));
    server.add_service(service);
    server.run_forever()
}
