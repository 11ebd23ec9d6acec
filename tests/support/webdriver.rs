//! A small W3C WebDriver client over `reqwest`, and `chromedriver` started on a free loopback
//! port, for the browser tests (headless Chromium). The test fails — it is never skipped — when
//! `chromedriver` or Chromium is missing.
//!
//! ```no_run
//! # async fn demo() {
//! use palisade_e2e::webdriver::{Browser, ChromeDriver};
//! let driver = ChromeDriver::start();
//! let browser = Browser::open(&driver).await;
//! browser.goto("http://127.0.0.1:9901/admin/studio").await;
//! let title = browser.find("h1").await.text().await;
//! browser.close().await;
//! # }
//! ```

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The element reference key of the W3C protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running `chromedriver`, killed on drop.
pub struct ChromeDriver {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl ChromeDriver {
    /// Starts `chromedriver` (from `PATH`, or `$CHROMEDRIVER`) on a free loopback port and
    /// waits until it is ready. Panics with how to install it when it is missing.
    pub fn start() -> Self {
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{binary}` ({e}): the browser tests need Chromium and its \
                     WebDriver — install them with `apt-get install -y chromium chromium-driver` \
                     (tests/run.sh does), or point $CHROMEDRIVER at chromedriver"
                )
            });
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session (headless Chromium).
pub struct Browser {
    http: reqwest::Client,
    session: String,
}

/// An element of the page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Browser {
    /// Opens a headless Chromium window of 1440 × 1800 pixels (tall enough for element
    /// screenshots of whole panels: Chromium clips them to the viewport).
    pub async fn open(driver: &ChromeDriver) -> Self {
        let http = crate::client_builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        // --no-sandbox: Chromium refuses its sandbox as root (test containers run as root);
        // the only page it opens is our own, on loopback.
        let args = [
            "--no-sandbox",
            "--headless=new",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1440,1800",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--lang=en-US",
        ];
        let mut options = json!({ "args": args });
        if let Some(binary) = chromium_binary() {
            options["binary"] = json!(binary);
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options}}});
        let resp: Value = http
            .post(format!("{}/session", driver.url))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("JSON");
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| {
                panic!("chromedriver could not start Chromium (is `chromium` installed?): {resp}")
            })
            .to_string();
        Self {
            http,
            session: format!("{}/session/{session}", driver.url),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// A WebDriver command; `Err` carries the driver's error (`"<error>: <message>"`).
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| format!("not JSON: {e}"))?;
        if let Some(error) = resp["value"]["error"].as_str() {
            return Err(format!("{error}: {}", resp["value"]["message"]));
        }
        Ok(resp["value"].clone())
    }

    /// Clicks the first element matching `selector`, finding it again when the page replaced
    /// it between the find and the click (a re-rendered list or form: "stale element
    /// reference"), for 20 s at most.
    pub async fn click_on(&self, selector: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let element = self.find(selector).await;
            let path = format!("/element/{}/click", element.id);
            match self
                .try_call(reqwest::Method::POST, &path, Some(json!({})))
                .await
            {
                Ok(_) => return,
                Err(e) if e.starts_with("stale element reference") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("WebDriver click on {selector}: {e}"),
            }
        }
    }

    /// Navigates to `url`.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The first element matching the CSS `selector` (panics when there is none).
    pub async fn find(&self, selector: &str) -> Element<'_> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": selector})),
            )
            .await;
        Element {
            browser: self,
            id: v[ELEMENT].as_str().expect("element id").to_string(),
        }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits until `script` returns something other than `null`/`false` (20 s at most),
    /// and returns it; panics with `what` otherwise.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.execute(script, json!([])).await;
            if !v.is_null() && v != json!(false) {
                return v;
            }
            if Instant::now() > deadline {
                let body = self
                    .execute("return document.body.innerText.slice(0, 4000);", json!([]))
                    .await;
                panic!("timed out waiting for {what}; the page reads:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        decode_png(&v)
    }

    /// Ends the session (closes Chromium).
    pub async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

impl Element<'_> {
    /// Clicks it.
    pub async fn click(&self) {
        let path = format!("/element/{}/click", self.id);
        self.browser
            .call(reqwest::Method::POST, &path, Some(json!({})))
            .await;
    }

    /// Types `text` into it (WebDriver key codes such as `\u{E003}`, backspace, work).
    pub async fn send_keys(&self, text: &str) {
        let path = format!("/element/{}/value", self.id);
        self.browser
            .call(reqwest::Method::POST, &path, Some(json!({ "text": text })))
            .await;
    }

    /// Its rendered text.
    pub async fn text(&self) -> String {
        let path = format!("/element/{}/text", self.id);
        let v = self.browser.call(reqwest::Method::GET, &path, None).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// A PNG of the element (scrolled into view).
    pub async fn screenshot(&self) -> Vec<u8> {
        let path = format!("/element/{}/screenshot", self.id);
        let v = self.browser.call(reqwest::Method::GET, &path, None).await;
        decode_png(&v)
    }
}

fn decode_png(v: &Value) -> Vec<u8> {
    let png = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("base64 screenshot"))
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    png
}

/// The Chromium executable when it is not where chromedriver looks by default (Debian's
/// `/usr/bin/chromium` is a wrapper script; the binary is under `/usr/lib/chromium`).
fn chromium_binary() -> Option<String> {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return Some(path);
    }
    ["/usr/lib/chromium/chromium"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}
