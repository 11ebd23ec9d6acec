//! A2A delegation: send a task to a remote A2A agent and wait for its answer.
//!
//! [`A2aClient::send`] posts one user message over JSON-RPC, as A2A 1.0 `SendMessage` (header
//! `A2A-Version: 1.0`) or A2A 0.3 `message/send`. With [`A2aProtocol::Auto`] (the default) it
//! speaks 1.0 first and falls back to 0.3 when the agent answers "method not found" or "version
//! not supported", remembering the answer per agent URL.
//!
//! Connect errors, per-attempt timeouts and `502`/`503`/`504` are retried with exponential
//! backoff (`initial_backoff`, doubling, capped at `max_backoff`, jittered between half and
//! all of that; a `Retry-After` in seconds stretches the wait up to the cap), at most `max_retries` times and never past
//! `total_timeout`. Every attempt carries the same `messageId`. The
//! outcome is always an [`A2aOutcome`], never a panic or an error type: `Completed` with the
//! agent's text, or `Failed` with a status the model and the run record can show —
//! `ERROR_TIMEOUT` (the last attempt or the overall deadline timed out), `ERROR_MAX_RETRIES`
//! (retries exhausted on connect errors or 5xx gateways), `ERROR_REMOTE` (the agent answered
//! with an error, a failed/rejected/canceled task, or something that is not A2A).
//!
//! ```no_run
//! # async fn example() {
//! use palisade_orchestrator::a2a::{A2aClient, A2aConfig, A2aOutcome};
//!
//! let client = A2aClient::new(&A2aConfig::default(), &palisade_orchestrator::tls::Trust::default()).unwrap();
//! let url = "http://127.0.0.1:9999/".parse().unwrap();
//! match client.send(&url, "summarise the incident").await {
//!     A2aOutcome::Completed { text, .. } => println!("{text}"),
//!     A2aOutcome::Failed { status, detail, .. } => eprintln!("{status}: {detail}"),
//! }
//! # }
//! ```

mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use wire::{parse_answer, send_body, Answer, Version};

/// `ERROR_TIMEOUT`: the last attempt, or the overall deadline, timed out.
pub const ERROR_TIMEOUT: &str = "ERROR_TIMEOUT";
/// `ERROR_MAX_RETRIES`: every attempt failed with a connect error or a 502/503/504.
pub const ERROR_MAX_RETRIES: &str = "ERROR_MAX_RETRIES";
/// `ERROR_REMOTE`: the agent answered, with an error or a failed task.
pub const ERROR_REMOTE: &str = "ERROR_REMOTE";

/// Which A2A protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum A2aProtocol {
    /// 1.0 first, 0.3 when the agent does not know 1.0. The default.
    #[default]
    Auto,
    /// A2A 1.0 `SendMessage` only.
    V1,
    /// A2A 0.3 `message/send` only.
    V0_3,
}

/// Delegation settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct A2aConfig {
    /// Remote agents the delegation tool may call, by name: name → JSON-RPC endpoint URL
    /// (typically a proxy route, so the proxy's policies apply). Default none.
    pub agents: BTreeMap<String, String>,
    /// Protocol version. Default `auto`.
    pub protocol: A2aProtocol,
    /// Retries after the first attempt (on connect errors, timeouts, 502/503/504). Default `3`.
    pub max_retries: u32,
    /// Wait before the first retry; doubles each retry. Default `200ms`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub initial_backoff: Duration,
    /// Longest wait between retries. Default `5s`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_backoff: Duration,
    /// Randomise each wait between half and all of it ("equal jitter"), so callers that failed
    /// together spread their retries. Default `true`.
    pub jitter: bool,
    /// Time limit of one attempt (connect to last byte). Default `30s`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub attempt_timeout: Duration,
    /// Time limit of the whole delegation including retries and backoff. Default `2m`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub total_timeout: Duration,
    /// Name of an environment variable holding a bearer token sent as `Authorization` (for
    /// example the orchestrator's own API key at the proxy). Default none.
    pub bearer_token_env: Option<String>,
}

impl Default for A2aConfig {
    fn default() -> Self {
        Self {
            agents: BTreeMap::new(),
            protocol: A2aProtocol::Auto,
            max_retries: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            jitter: true,
            attempt_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(120),
            bearer_token_env: None,
        }
    }
}

/// How a delegation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum A2aOutcome {
    /// The agent answered with a task in a non-failed state (usually `completed`) or a message.
    Completed {
        /// The task's id (`None` when the agent answered with a direct message).
        task_id: Option<String>,
        /// The conversation id the agent gave, if any.
        context_id: Option<String>,
        /// The task state, lower snake case: `completed`, `input_required`, `working`, ….
        state: String,
        /// The agent's text (artifacts, else status message, else message parts).
        text: String,
        /// Attempts made (1 when the first succeeded).
        attempts: u32,
    },
    /// The delegation failed.
    Failed {
        /// [`ERROR_TIMEOUT`], [`ERROR_MAX_RETRIES`] or [`ERROR_REMOTE`].
        status: &'static str,
        /// What happened, for the model and the logs.
        detail: String,
        /// Attempts made.
        attempts: u32,
    },
}

impl A2aOutcome {
    /// The outcome as a tool result for the model:
    /// `{"status":"completed","taskId":…,"state":…,"text":…}` or
    /// `{"status":"ERROR_…","error":…,"attempts":n}`.
    pub fn to_tool_result(&self) -> Value {
        match self {
            Self::Completed {
                task_id,
                context_id,
                state,
                text,
                attempts,
            } => json!({
                "status": "completed", "taskId": task_id, "contextId": context_id,
                "state": state, "text": text, "attempts": attempts,
            }),
            Self::Failed {
                status,
                detail,
                attempts,
            } => json!({"status": status, "error": detail, "attempts": attempts}),
        }
    }
}

/// A client configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum A2aConfigError {
    /// An entry of `agents` is not an http(s) URL.
    #[error("a2a.agents.{name}: {url:?} is not an http(s) URL")]
    AgentUrl {
        /// The agent's name.
        name: String,
        /// The URL given.
        url: String,
    },
    /// The HTTP client could not be built.
    #[error("a2a http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Sends messages to A2A agents with retries. Cheap to share (`Arc`) across runs.
#[derive(Debug)]
pub struct A2aClient {
    http: reqwest::Client,
    cfg: A2aConfig,
    agents: BTreeMap<String, Url>,
    /// Versions learnt per agent URL in `auto` mode.
    learnt: Mutex<HashMap<String, Version>>,
    next_id: AtomicU64,
}

/// Why one attempt failed.
enum AttemptError {
    /// Worth retrying; `timeout` says whether it was a timeout.
    Retryable {
        detail: String,
        timeout: bool,
        /// The server's `Retry-After` (delta-seconds), if it sent one.
        retry_after: Option<Duration>,
    },
    /// Not worth retrying.
    Fatal(String),
}

impl A2aClient {
    /// A client for `cfg` (validates the agent URLs).
    pub fn new(cfg: &A2aConfig, trust: &crate::tls::Trust) -> Result<Self, A2aConfigError> {
        let mut agents = BTreeMap::new();
        for (name, url) in &cfg.agents {
            let parsed = Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| A2aConfigError::AgentUrl {
                    name: name.clone(),
                    url: url.clone(),
                })?;
            agents.insert(name.clone(), parsed);
        }
        let mut headers = HeaderMap::new();
        if let Some(var) = &cfg.bearer_token_env {
            if let Some(token) = std::env::var(var).ok().filter(|t| !t.is_empty()) {
                if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) {
                    value.set_sensitive(true);
                    headers.insert(reqwest::header::AUTHORIZATION, value);
                }
            } else {
                tracing::warn!(env = %var, "a2a.bearer_token_env is set but the variable is empty");
            }
        }
        let http = trust
            .client_builder()
            .default_headers(headers)
            .connect_timeout(cfg.attempt_timeout.min(Duration::from_secs(10)))
            .build()?;
        Ok(Self {
            http,
            cfg: cfg.clone(),
            agents,
            learnt: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// The configured agents, by name.
    pub fn agents(&self) -> &BTreeMap<String, Url> {
        &self.agents
    }

    /// The URL of the agent called `name`, if configured.
    pub fn agent(&self, name: &str) -> Option<&Url> {
        self.agents.get(name)
    }

    /// Sends `text` to the agent at `agent_url` and waits for its answer (see the module docs).
    pub async fn send(&self, agent_url: &Url, text: &str) -> A2aOutcome {
        self.send_with_headers(agent_url, text, &HeaderMap::new())
            .await
    }

    /// Like [`send`](Self::send), adding `headers` to every attempt (for example a trace context
    /// or the caller's credential).
    pub async fn send_with_headers(
        &self,
        agent_url: &Url,
        text: &str,
        headers: &HeaderMap,
    ) -> A2aOutcome {
        let message_id = uuid::Uuid::new_v4().to_string();
        let deadline = Instant::now() + self.cfg.total_timeout;
        let mut version = self.version_for(agent_url);
        let mut attempts = 0;
        let mut retries = 0;
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = remaining.min(self.cfg.attempt_timeout);
            let failure = match self
                .attempt(agent_url, version, &message_id, text, headers, timeout)
                .await
            {
                Ok(Answer::Reply {
                    task_id,
                    context_id,
                    state,
                    text,
                }) => {
                    if matches!(state.as_str(), "failed" | "rejected" | "canceled") {
                        return fail(
                            ERROR_REMOTE,
                            format!("remote task {state}: {text}"),
                            attempts,
                        );
                    }
                    if self.cfg.protocol == A2aProtocol::Auto {
                        self.learn(agent_url, version);
                    }
                    return A2aOutcome::Completed {
                        task_id,
                        context_id,
                        state,
                        text,
                        attempts,
                    };
                }
                Ok(Answer::RpcError { code, message }) => {
                    // -32601 method not found, -32009 version not supported: an 0.3 agent.
                    let unknown_method = code == -32601 || code == -32009;
                    if unknown_method
                        && version == Version::V1
                        && self.cfg.protocol == A2aProtocol::Auto
                    {
                        tracing::info!(agent = %agent_url, code, "a2a: falling back to 0.3");
                        version = Version::V03;
                        continue;
                    }
                    return fail(
                        ERROR_REMOTE,
                        format!("JSON-RPC error {code}: {message}"),
                        attempts,
                    );
                }
                Err(AttemptError::Fatal(detail)) => return fail(ERROR_REMOTE, detail, attempts),
                Err(AttemptError::Retryable {
                    detail,
                    timeout,
                    retry_after,
                }) => (detail, timeout, retry_after),
            };
            let (detail, timed_out, retry_after) = failure;
            let status = if timed_out {
                ERROR_TIMEOUT
            } else {
                ERROR_MAX_RETRIES
            };
            if retries >= self.cfg.max_retries {
                return fail(
                    status,
                    format!("after {attempts} attempts: {detail}"),
                    attempts,
                );
            }
            // A server's Retry-After stretches the wait, within max_backoff.
            let backoff = retry_after
                .map(|ra| ra.min(self.cfg.max_backoff).max(self.backoff(retries)))
                .unwrap_or_else(|| self.backoff(retries));
            if Instant::now() + backoff >= deadline {
                return fail(
                    ERROR_TIMEOUT,
                    format!("deadline reached after {attempts} attempts: {detail}"),
                    attempts,
                );
            }
            tracing::info!(
                agent = %agent_url, attempt = attempts, backoff_ms = backoff.as_millis() as u64,
                error = %detail, "a2a: retrying"
            );
            tokio::time::sleep(backoff).await;
            retries += 1;
        }
    }

    /// The wait before retry number `retry` (0-based): initial × 2^retry, capped.
    ///
    /// With `jitter` (the default) it is "equal jitter": half of it fixed, the other half random,
    /// so replicas whose calls failed together do not retry in lockstep.
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u64.checked_shl(retry.min(32)).unwrap_or(u64::MAX);
        let full = self
            .cfg
            .initial_backoff
            .as_millis()
            .saturating_mul(u128::from(factor))
            .min(self.cfg.max_backoff.as_millis());
        let full = u64::try_from(full).unwrap_or(u64::MAX);
        if !self.cfg.jitter {
            return Duration::from_millis(full);
        }
        let half = full / 2;
        // A v4 UUID is 122 random bits from a fast CSPRNG: enough for a jitter.
        let random = uuid::Uuid::new_v4().as_u64_pair().0 % (full - half + 1);
        Duration::from_millis(half + random)
    }

    fn version_for(&self, url: &Url) -> Version {
        match self.cfg.protocol {
            A2aProtocol::V1 => Version::V1,
            A2aProtocol::V0_3 => Version::V03,
            A2aProtocol::Auto => self
                .learnt
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(url.as_str())
                .copied()
                .unwrap_or(Version::V1),
        }
    }

    fn learn(&self, url: &Url, version: Version) {
        self.learnt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.as_str().to_owned(), version);
    }

    /// One POST; classifies what went wrong.
    async fn attempt(
        &self,
        url: &Url,
        version: Version,
        message_id: &str,
        text: &str,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> Result<Answer, AttemptError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = self
            .http
            .post(url.clone())
            .timeout(timeout)
            .headers(headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .json(&send_body(version, id, message_id, text));
        if version == Version::V1 {
            request = request.header("A2A-Version", "1.0");
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        if matches!(
            status,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        ) {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(AttemptError::Retryable {
                detail: format!("HTTP {status}"),
                timeout: status == StatusCode::GATEWAY_TIMEOUT,
                retry_after,
            });
        }
        let body = response.bytes().await.map_err(transport_error)?;
        let parsed: Result<Value, _> = serde_json::from_slice(&body);
        match parsed {
            // JSON-RPC errors may come with any status (the SDK answers some with 4xx).
            Ok(value) if value.get("jsonrpc").is_some() => {
                parse_answer(version, &value).map_err(AttemptError::Fatal)
            }
            _ => Err(AttemptError::Fatal(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))),
        }
    }
}

fn fail(status: &'static str, detail: String, attempts: u32) -> A2aOutcome {
    tracing::warn!(status, attempts, error = %detail, "a2a delegation failed");
    A2aOutcome::Failed {
        status,
        detail,
        attempts,
    }
}

/// A transport failure: every one is retried (connect refused or reset, a timeout, a connection
/// closed before the answer), since the repeat carries the same `messageId`.
fn transport_error(err: reqwest::Error) -> AttemptError {
    let timeout = err.is_timeout();
    let kind = if timeout {
        "timed out"
    } else if err.is_connect() {
        "connect error"
    } else {
        "transport error"
    };
    // reqwest's Display omits the cause chain; the innermost cause says what really happened.
    let mut cause = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    AttemptError::Retryable {
        detail: format!("{kind}: {cause}"),
        timeout,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests;
