//! Human approvals: a call that a policy permits only with `@approval("required")` (an MCP
//! `tools/call`, an A2A send) is held until an approver approves or denies it, or its deadline
//! passes (default deny). See `docs/approvals.md`.
//!
//! - [`stage::ApprovalsStage`] is the pipeline stage: `on_message` finds the call that needs an
//!   approval (asking the enforcing policy set which permits decided it), `on_hold` holds the
//!   request until the outcome and refuses it with `APPROVAL_DENIED`, `APPROVAL_TIMEOUT`,
//!   `APPROVAL_QUEUE_FULL` or `APPROVAL_UNAVAILABLE`.
//! - [`Approvals`] is the long-lived service the stage and the admin API share: the store (in
//!   process, or Redis shared by replicas and surviving restarts), the caps, the webhook that
//!   announces each pending approval, the audit records of each step.
//! - The admin API (`crate::admin::approvals`) lists and decides them (admin token plus the
//!   approver's own credential, checked with Cedar's `approve` action); the
//!   `palisade approvals` CLI calls it.

pub mod record;
pub mod redis;
pub mod spec;
pub mod stage;
pub mod store;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{IntCounterVec, Opts};
use tokio::sync::Notify;

use crate::audit::record::{AuditApproval, AuditRecord, RecordFacts};
use crate::audit::Auditor;
use crate::authn::Authenticator;
use crate::authz::Authz;
use crate::error::ProxyError;
use crate::principal::Principal;
use record::{now_ms, Approval, Status};
use spec::Settings;
use store::{Decided, Opened, Table, Taken};

pub use spec::ApprovalsSpec;

/// Where approvals are kept.
enum Backend {
    Memory(Mutex<Table>),
    Redis(redis::RedisApprovals),
}

/// The approval service shared by the stage (holding calls) and the admin API (deciding them).
pub struct Approvals {
    settings: Settings,
    backend: Backend,
    /// Woken on every decision made by this process (a decision made on another replica is
    /// seen by polling, `approvals.redis.poll_interval`).
    decided: Notify,
    webhook: Option<webhook::Webhook>,
    /// `palisade_approvals_total{outcome}`.
    outcomes: IntCounterVec,
    /// Requests held now in this process (identical calls share an approval but each holds a
    /// connection): at most `max_pending` of them.
    holding: std::sync::atomic::AtomicUsize,
    pub(crate) authz: Option<Arc<Authz>>,
    pub(crate) authn: Arc<Authenticator>,
    pub(crate) audit: Arc<Auditor>,
}

/// What a held call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The approval (`None` when none could be opened).
    pub approval: Option<Approval>,
    /// `Ok` when approved; else the refusal.
    pub result: Result<(), ProxyError>,
}

/// The call a request waits on.
#[derive(Debug, Clone)]
pub struct Call {
    /// The principal (entity uid).
    pub principal: String,
    /// The Cedar action.
    pub action: &'static str,
    /// The Cedar resource (uid text).
    pub resource: String,
    /// Digest of the canonical arguments.
    pub arguments_digest: String,
    /// `X-Request-Id`.
    pub request_id: String,
    /// The route.
    pub route: String,
}

impl Approvals {
    /// The service over validated `settings`; registers its metric in `registry`.
    pub fn new(
        settings: Settings,
        registry: &prometheus::Registry,
        authz: Option<Arc<Authz>>,
        authn: Arc<Authenticator>,
        audit: Arc<Auditor>,
    ) -> anyhow::Result<Self> {
        let backend = match &settings.redis {
            Some(r) => Backend::Redis(redis::RedisApprovals::new(r)?),
            None => Backend::Memory(Mutex::new(Table::default())),
        };
        let outcomes = IntCounterVec::new(
            Opts::new(
                "palisade_approvals_total",
                "Human approvals by outcome: requested, approved, denied, timeout, queue_full, \
                 unavailable.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(outcomes.clone()))?;
        let webhook = settings
            .webhook
            .as_ref()
            .map(webhook::Webhook::new)
            .transpose()?;
        Ok(Self {
            settings,
            backend,
            decided: Notify::new(),
            webhook,
            outcomes,
            holding: std::sync::atomic::AtomicUsize::new(0),
            authz,
            authn,
            audit,
        })
    }

    /// Whether approvals survive a restart and are shared (Redis).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// Holds `call` until its approval is decided or times out. `who` is the requester (for
    /// the audit record of a new approval).
    pub async fn hold(&self, call: &Call, who: Option<&Principal>) -> Outcome {
        use std::sync::atomic::Ordering;
        let held = self.holding.fetch_add(1, Ordering::AcqRel);
        let _release = Release(&self.holding);
        if held >= self.settings.max_pending {
            return self.refused(
                None,
                ProxyError::ApprovalQueueFull("the proxy's limit of held requests is reached"),
            );
        }
        // A grant collected by an identical concurrent call leaves this one to ask anew; a
        // bounded number of times.
        for _ in 0..3 {
            let opened = match self.open(call).await {
                Ok(opened) => opened,
                Err(e) => return self.refused(None, e),
            };
            let approval = match opened {
                Opened::Full { total } => {
                    let which = if total {
                        "the proxy's limit is reached"
                    } else {
                        "this principal's limit is reached"
                    };
                    return self.refused(None, ProxyError::ApprovalQueueFull(which));
                }
                Opened::Existing(a) => a,
                Opened::Created(a) => {
                    self.outcomes.with_label_values(&["requested"]).inc();
                    tracing::info!(approval.id = %a.id, approval.principal = %a.principal,
                        approval.resource = %a.resource, request_id = %a.request_id,
                        "approval requested");
                    self.audit_event(&a, "requested", who).await;
                    if let Some(w) = &self.webhook {
                        w.announce(&a);
                    }
                    a
                }
            };
            match self.wait(&approval.id).await {
                Ok(Some(done)) => return self.settled(done),
                Ok(None) => continue,
                Err(e) => return self.refused(Some(approval), e),
            }
        }
        self.refused(None, ProxyError::ApprovalTimeout)
    }

    async fn open(&self, call: &Call) -> Result<Opened, ProxyError> {
        let now = now_ms();
        let principal_tag =
            record::digest(&serde_json::Value::String(call.principal.clone()))[..32].to_string();
        let fresh = Approval {
            id: uuid::Uuid::new_v4().to_string(),
            key: record::call_key(
                &call.principal,
                call.action,
                &call.resource,
                &call.route,
                &call.arguments_digest,
            ),
            principal: call.principal.clone(),
            principal_tag,
            action: call.action.to_string(),
            resource: call.resource.clone(),
            arguments_digest: call.arguments_digest.clone(),
            request_id: call.request_id.clone(),
            route: call.route.clone(),
            created_at: now,
            expires_at: now.saturating_add(self.timeout_ms()),
            status: Status::Pending,
            approver: None,
            reason: None,
            decided_at: None,
            consumed: false,
        };
        let (max, mine) = (
            self.settings.max_pending,
            self.settings.max_pending_per_principal,
        );
        match &self.backend {
            Backend::Memory(t) => Ok(t.lock().open(fresh, max, mine, now)),
            Backend::Redis(r) => r.open(&fresh, max, mine, now).await.map_err(down),
        }
    }

    /// Waits for the outcome of approval `id`: `None` when another request collected it.
    async fn wait(&self, id: &str) -> Result<Option<Approval>, ProxyError> {
        let poll = self
            .settings
            .redis
            .as_ref()
            .map_or(Duration::from_secs(3600), |r| r.poll_interval);
        loop {
            // Registered before looking, so a decision between the look and the wait wakes it.
            let woken = self.decided.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = now_ms();
            let pending = match self.take(id, now).await? {
                Taken::Outcome(a) => return Ok(Some(a)),
                Taken::Gone => return Ok(None),
                Taken::Pending(a) => a,
            };
            let until_deadline = Duration::from_millis(pending.expires_at.saturating_sub(now));
            tokio::select! {
                () = &mut woken => {}
                () = tokio::time::sleep(until_deadline.min(poll)) => {}
            }
        }
    }

    async fn take(&self, id: &str, now: u64) -> Result<Taken, ProxyError> {
        match &self.backend {
            Backend::Memory(t) => Ok(t.lock().take(id, now)),
            Backend::Redis(r) => r.take(id, now).await.map_err(down),
        }
    }

    fn settled(&self, a: Approval) -> Outcome {
        self.outcomes.with_label_values(&[a.status.as_str()]).inc();
        tracing::info!(approval.id = %a.id, approval.outcome = a.status.as_str(),
            approval.approver = ?a.approver, request_id = %a.request_id, "approval settled");
        let result = match a.status {
            Status::Approved => Ok(()),
            Status::Denied => Err(ProxyError::ApprovalDenied {
                reason: a.reason.clone(),
            }),
            Status::Timeout | Status::Pending => Err(ProxyError::ApprovalTimeout),
        };
        Outcome {
            approval: Some(a),
            result,
        }
    }

    fn refused(&self, approval: Option<Approval>, err: ProxyError) -> Outcome {
        let label = match &err {
            ProxyError::ApprovalQueueFull(_) => "queue_full",
            ProxyError::ApprovalTimeout => "timeout",
            _ => "unavailable",
        };
        self.outcomes.with_label_values(&[label]).inc();
        Outcome {
            approval,
            result: Err(err),
        }
    }

    /// Decides approval `id` as `approver`; `Ok(None)` when there is no such approval.
    pub async fn decide(
        &self,
        id: &str,
        approve: bool,
        approver: &str,
        reason: Option<&str>,
    ) -> Result<Decided, ProxyError> {
        let status = if approve {
            Status::Approved
        } else {
            Status::Denied
        };
        let (hold, now) = (self.timeout_ms(), now_ms());
        let decided = match &self.backend {
            Backend::Memory(t) => t.lock().decide(id, status, approver, reason, hold, now),
            Backend::Redis(r) => r
                .decide(id, status.as_str(), approver, reason, hold, now)
                .await
                .map_err(down)?,
        };
        self.decided.notify_waiters();
        Ok(decided)
    }

    /// Approval `id`, whatever its status.
    pub async fn get(&self, id: &str) -> Result<Option<Approval>, ProxyError> {
        match &self.backend {
            Backend::Memory(t) => Ok(t.lock().get(id)),
            Backend::Redis(r) => r.get(id, now_ms()).await.map_err(down),
        }
    }

    /// The pending approvals, oldest first.
    pub async fn list(&self) -> Result<Vec<Approval>, ProxyError> {
        let now = now_ms();
        match &self.backend {
            Backend::Memory(t) => Ok(t.lock().list(now)),
            Backend::Redis(r) => r.list(now).await.map_err(down),
        }
    }

    /// Announces every pending approval again (at start, when they are kept in Redis: the
    /// approvals of a previous run are not lost to approvers).
    pub async fn reannounce(&self) {
        let Some(w) = &self.webhook else { return };
        match self.list().await {
            Ok(pending) => {
                for a in &pending {
                    w.announce(a);
                }
                if !pending.is_empty() {
                    tracing::info!(count = pending.len(), "pending approvals announced again");
                }
            }
            Err(e) => tracing::warn!(error = %e, "pending approvals could not be listed"),
        }
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.settings.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Writes the audit record of one step of `a` (`requested`, or an approver's decision)
    /// that no request record carries; `who` is the requester or the approver.
    pub(crate) async fn audit_event(
        &self,
        a: &Approval,
        outcome: &'static str,
        who: Option<&Principal>,
    ) {
        if !self.audit.is_enabled() {
            return;
        }
        let path = format!("/admin/approvals/{}", a.id);
        let mut record = AuditRecord::new(RecordFacts {
            request_id: &a.request_id,
            trace_id: "",
            principal: who,
            client_ip: None,
            config_hash: "",
            method: "APPROVAL",
            path: &path,
            route: Some(&a.route),
            status: 0,
            upstream_status: None,
            bytes_in: 0,
            bytes_out: 0,
            started: std::time::Instant::now(),
            stream: None,
            error: None,
            reason: "ok",
        });
        record.action = Some(format!("Action::{:?}", a.action));
        record.resource = Some(a.resource.clone());
        record.approval = Some(AuditApproval {
            approver: a.approver.clone(),
            id: a.id.clone(),
            outcome,
            reason: a.reason.clone(),
            requester: a.principal.clone(),
        });
        self.audit.submit(record).await;
    }
}

/// Counts a held request out when it ends, however it ends.
struct Release<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A store failure: logged, and the call refused.
fn down(e: redis::StoreDown) -> ProxyError {
    tracing::warn!(error = %e, "approval store unavailable: held call refused");
    ProxyError::ApprovalUnavailable
}
