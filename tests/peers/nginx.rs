//! nginx in front of Palisade, with the SSE settings documented in `docs/operations.md`: the test
//! runs the real nginx on `examples/nginx-front/nginx.conf` (only its two addresses replaced by
//! free ports) in front of Palisade loaded from `examples/nginx-front/palisade.yaml`, and times
//! every event from the moment the upstream emits it to the moment the client reads it.
//!
//! nginx comes from `PALISADE_NGINX`, else `nginx` on `PATH`, else `/usr/sbin/nginx`
//! (`tests/run.sh` installs the Debian package); a missing nginx fails the test saying so.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_e2e::sse_client::{self, Received};
use palisade_e2e::upstream::{self, SseScript};
use palisade_e2e::{client, error_code};
use palisade_proxy::server::Running;

use crate::example_proxy;
use crate::peer::{agui_client, workspace};

/// The addresses in the example's files that the test replaces with free ports.
const EXAMPLE_PALISADE: &str = "server 127.0.0.1:8080;";
const EXAMPLE_LISTEN: &str = "listen 127.0.0.1:8088;";

/// The nginx binary, or a panic saying how to get one.
fn nginx_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PALISADE_NGINX") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "nginx is not installed: `apt-get install nginx` (bash tests/run.sh does) or set \
             PALISADE_NGINX to its path"
        )
    })
}

/// `examples/nginx-front/nginx.conf`.
fn example_conf() -> String {
    std::fs::read_to_string(workspace().join("examples/nginx-front/nginx.conf")).unwrap()
}

/// A running nginx master process with its own prefix directory; stopped on drop.
struct Nginx {
    child: Child,
    /// Where nginx listens.
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx on `conf` with the example's addresses pointed at `palisade` and a free port.
    fn start(conf: &str, palisade: SocketAddr) -> Nginx {
        Self::start_listening(conf, palisade, "")
    }

    /// [`Nginx::start`], with `listen_extra` appended to the `listen` directive (`" ssl http2;
    /// ssl_certificate …"`).
    fn start_listening(conf: &str, palisade: SocketAddr, listen_extra: &str) -> Nginx {
        assert!(
            conf.contains(EXAMPLE_PALISADE) && conf.contains(EXAMPLE_LISTEN),
            "examples/nginx-front/nginx.conf no longer has `{EXAMPLE_PALISADE}` and \
             `{EXAMPLE_LISTEN}`; update this test with it"
        );
        // The port is picked before nginx binds it, so another process may take it first: then
        // nginx exits with "address in use" and we try another.
        let mut failures = Vec::new();
        for _ in 0..5 {
            match Self::try_start(conf, palisade, listen_extra) {
                Ok(nginx) => return nginx,
                Err(report) => failures.push(report),
            }
        }
        panic!("nginx did not start:\n{}", failures.join("\n---\n"));
    }

    fn try_start(conf: &str, palisade: SocketAddr, listen_extra: &str) -> Result<Nginx, String> {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", palisade_e2e::free_port())
            .parse()
            .unwrap();
        let conf = conf
            .replace(EXAMPLE_PALISADE, &format!("server {palisade};"))
            .replace(EXAMPLE_LISTEN, &format!("listen {addr}{listen_extra};"));
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        // As root, nginx workers would switch to `nobody`, which cannot enter this 0700 prefix
        // directory; keep them as the directory's owner instead.
        let mut globals = String::from("daemon off;");
        if std::fs::metadata(dir.path()).unwrap().uid() == 0 {
            globals.push_str(" user root;");
        }
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .args(["-e", "stderr", "-g", &globals])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nginx: {e}"));
        let mut nginx = Nginx { child, addr, dir };
        // Ready when nginx has written its pid file (it does so after binding its listeners)
        // and still runs: a connect alone could reach whoever else holds the port.
        let pid_file = nginx.dir.path().join("nginx.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(exited) = nginx.child.try_wait().unwrap() {
                return Err(format!("nginx exited ({exited}):\n{}", nginx.stderr()));
            }
            let pid_written = std::fs::read_to_string(&pid_file)
                .is_ok_and(|p| p.trim() == nginx.child.id().to_string());
            if pid_written && TcpStream::connect(addr).is_ok() {
                return Ok(nginx);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "nginx did not start listening on {addr}:\n{}",
                    nginx.stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers too (a SIGKILLed master would orphan them).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Palisade from `examples/nginx-front/palisade.yaml`, on free ports, its upstream at `agent`.
fn palisade(agent: SocketAddr) -> Running {
    example_proxy::start(
        "nginx-front",
        &[(
            "PALISADE_UPSTREAMS__ORCHESTRATOR__ADDRESS",
            agent.to_string(),
        )],
    )
}

/// A POST of an empty AG-UI run to `url` with `token`, asking for an event stream.
fn agui_post(client: &reqwest::Client, url: String, token: &str) -> reqwest::RequestBuilder {
    client
        .post(url)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .body(r#"{"threadId":"t","runId":"r","messages":[],"tools":[],"context":[],"state":{},"forwardedProps":{}}"#)
}

/// Streams one AG-UI run through `nginx` with a token.
async fn run_through(nginx: &Nginx, token: &str) -> Received {
    let resp = agui_post(&client(), nginx.url("/agent"), token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", nginx.stderr());
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    sse_client::read(resp, None, Duration::from_secs(30)).await
}

/// Per payload event: how long after its emission the client read it, and whether it was read
/// before the next one was emitted.
fn lags(got: &Received, emitted: &[Instant]) -> Vec<(Duration, bool)> {
    // events[0] is RUN_STARTED; payload `i` is events[1 + i].
    emitted
        .iter()
        .enumerate()
        .map(|(i, at)| {
            let arrival = got.events[1 + i].at;
            let before_next = emitted.get(i + 1).is_none_or(|next| arrival < *next);
            (arrival.saturating_duration_since(*at), before_next)
        })
        .collect()
}

const EVENTS: usize = 20;
const INTERVAL: Duration = Duration::from_millis(50);

async fn agui_upstream() -> upstream::SseUpstream {
    upstream::sse(SseScript {
        count: EVENTS,
        interval: INTERVAL,
        agui: true,
        ..SseScript::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_one_by_one_through_nginx_and_palisade() {
    let up = agui_upstream().await;
    let proxy = palisade(up.addr);
    let token = proxy
        .authn
        .dev_token()
        .expect("the example has a dev issuer");
    let nginx = Nginx::start(&example_conf(), proxy.listeners[0]);

    let got = run_through(&nginx, &token).await;
    let types = got.types();
    assert_eq!(types.len(), EVENTS + 2, "{types:?}");
    assert_eq!(types.first().unwrap(), "RUN_STARTED");
    assert_eq!(types.last().unwrap(), "RUN_FINISHED");
    let emitted = up.emitted.lock().unwrap().clone();
    assert_eq!(emitted.len(), EVENTS);
    let lags = lags(&got, &emitted);
    let mut sorted: Vec<Duration> = lags.iter().map(|(l, _)| *l).collect();
    sorted.sort();
    let (median, worst) = (sorted[EVENTS / 2], sorted[EVENTS - 1]);
    eprintln!(
        "client <- nginx <- palisade <- upstream, {EVENTS} events {INTERVAL:?} apart: median lag \
         {median:?}, worst {worst:?}"
    );
    // A buffering hop holds back (nearly) every event — the control below sees all 20 held.
    // A 2-core CI machine running the suite in parallel can stall one or two events on its
    // own, so those are tolerated; the median must still be far below the spacing.
    let late: Vec<String> = lags
        .iter()
        .enumerate()
        .filter(|(_, (lag, before_next))| !before_next || *lag >= Duration::from_millis(40))
        .map(|(i, (lag, _))| format!("event {i}: {lag:?}"))
        .collect();
    assert!(
        late.len() <= 2,
        "events held back until the next was emitted (or 40 ms late): {late:?}"
    );
    assert!(median < Duration::from_millis(10), "median lag {median:?}");
}

/// The control, showing the timing test above can fail: nginx buffering the response (and
/// ignoring Palisade's `X-Accel-Buffering: no`) with gzip on for event streams holds the stream
/// back until it ends. Measured with nginx 1.22 and a fast client, either setting alone still
/// let every event through at once (gzip flushes on each chunk of an unbuffered response, and a
/// buffered response is written out as it arrives while the client keeps up); the documented
/// settings turn both off so neither depends on the other or on the client's speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffering_and_gzip_on_hold_the_stream_back() {
    let conf = example_conf();
    assert!(conf.contains("gzip off;") && conf.contains("proxy_buffering off;"));
    let gzip = conf
        .replace(
            "gzip off;",
            "gzip on; gzip_types text/event-stream; gzip_min_length 0;",
        )
        .replace(
            "proxy_buffering off;",
            "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;",
        );
    let up = agui_upstream().await;
    let proxy = palisade(up.addr);
    let token = proxy.authn.dev_token().unwrap();
    let nginx = Nginx::start(&gzip, proxy.listeners[0]);

    let mut resp = agui_post(&client(), nginx.url("/agent"), &token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut first_bytes = None;
    let mut total = 0;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        first_bytes.get_or_insert_with(Instant::now);
        total += chunk.len();
    }
    let emitted = up.emitted.lock().unwrap().clone();
    assert_eq!(emitted.len(), EVENTS);
    assert!(total > 0);
    let first_bytes = first_bytes.unwrap();
    assert!(
        first_bytes > emitted[EVENTS - 1],
        "with gzip on, nothing should reach the client before the last event was emitted; the \
         first bytes came {:?} after the first event",
        first_bytes.saturating_duration_since(emitted[0])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palisade_errors_pass_through_nginx_unchanged() {
    let up = agui_upstream().await;
    let proxy = palisade(up.addr);
    let nginx = Nginx::start(&example_conf(), proxy.listeners[0]);
    let resp = client()
        .post(nginx.url("/agent"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(error_code(&resp.bytes().await.unwrap()), "UNAUTHENTICATED");
}

/// The location block in `docs/operations.md` is the example's, line for line.
#[test]
fn documented_nginx_settings_are_the_examples() {
    let doc = std::fs::read_to_string(workspace().join("docs/operations.md")).unwrap();
    let block = doc
        .split("```nginx\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/operations.md has an ```nginx block");
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split('#').next().unwrap().trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let documented = lines(block);
    let example = lines(&example_conf());
    let found = example
        .windows(documented.len())
        .any(|window| window == documented.as_slice());
    assert!(
        found,
        "docs/operations.md's nginx block is not a part of examples/nginx-front/nginx.conf:\n{}",
        documented.join("\n")
    );
    for setting in ["proxy_buffering off;", "proxy_http_version 1.1;"] {
        assert!(documented.iter().any(|l| l == setting), "{setting} missing");
    }
}

/// A well-formed AG-UI run (what the official client validates): a text message of `words`
/// words, one every [`INTERVAL`].
async fn agui_agent(words: usize) -> SocketAddr {
    use axum::body::Body;
    use axum::response::Response;
    let router = axum::Router::new().fallback(move || async move {
        let events = futures::stream::unfold(0usize, move |step| async move {
            let event = match step {
                0 => r#"{"type":"RUN_STARTED","threadId":"t","runId":"r"}"#.to_string(),
                1 => r#"{"type":"TEXT_MESSAGE_START","messageId":"m","role":"assistant"}"#
                    .to_string(),
                n if n < words + 2 => {
                    tokio::time::sleep(INTERVAL).await;
                    format!(r#"{{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":"w{n} "}}"#)
                }
                n if n == words + 2 => r#"{"type":"TEXT_MESSAGE_END","messageId":"m"}"#.to_string(),
                n if n == words + 3 => {
                    r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r"}"#.to_string()
                }
                _ => return None,
            };
            let frame = bytes::Bytes::from(format!("data: {event}\n\n"));
            Some((Ok::<_, std::convert::Infallible>(frame), step + 1))
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(events))
            .unwrap()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    addr
}

/// The official AG-UI client (`@ag-ui/client` HttpAgent) through nginx and Palisade: the run
/// completes and the client applies the words as far apart as the agent wrote them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_agui_client_streams_through_nginx() {
    const WORDS: usize = 10;
    let agent = agui_agent(WORDS).await;
    let proxy = palisade(agent);
    let token = proxy.authn.dev_token().unwrap();
    let nginx = Nginx::start(&example_conf(), proxy.listeners[0]);
    let input = serde_json::json!({
        "threadId": "t", "runId": "r", "state": {}, "tools": [], "context": [],
        "forwardedProps": {},
        "messages": [{"id": "u1", "role": "user", "content": "hello"}],
    });
    let run = agui_client(&nginx.url("/agent"), Some(&token), &input).await;
    run.assert_complete("through nginx");
    let types = run.types();
    let content_at = run.applied_at("TEXT_MESSAGE_CONTENT");
    assert_eq!(content_at.len(), WORDS, "{types:?}");
    let gaps: Vec<f64> = content_at.windows(2).map(|w| w[1] - w[0]).collect();
    // Written 50 ms apart; a buffering hop would deliver them in one burst (gaps ~0). One
    // stalled word on a busy machine makes one short gap; that much is tolerated.
    let bursts = gaps.iter().filter(|g| **g < 25.0).count();
    assert!(
        bursts <= 2,
        "the client applied words in bursts (ms between them): {gaps:?}"
    );
}

/// TLS and HTTP/2 at nginx (what fronts usually add), HTTP/1.1 to Palisade: events still arrive
/// one by one over the client's h2 stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_one_by_one_over_tls_and_http2_at_nginx() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let up = agui_upstream().await;
    let proxy = palisade(up.addr);
    let token = proxy.authn.dev_token().unwrap();
    // `listen … ssl http2` works on nginx 1.22 (Debian 12) and, deprecated, on later versions.
    let tls = format!(
        " ssl http2;\n        ssl_certificate {};\n        ssl_certificate_key {}",
        cert_path.display(),
        key_path.display()
    );
    let nginx = Nginx::start_listening(&example_conf(), proxy.listeners[0], &tls);

    let h2 = palisade_e2e::client_builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", nginx.addr)
        .build()
        .unwrap();
    let resp = agui_post(
        &h2,
        format!("https://localhost:{}/agent", nginx.addr.port()),
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "{}", nginx.stderr());
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let got = sse_client::read(resp, None, Duration::from_secs(30)).await;
    assert_eq!(got.events.len(), EVENTS + 2);
    let emitted = up.emitted.lock().unwrap().clone();
    let held_back = lags(&got, &emitted)
        .iter()
        .filter(|(_, before_next)| !before_next)
        .count();
    assert!(
        held_back <= 2,
        "{held_back} of {EVENTS} events were held back"
    );
}
