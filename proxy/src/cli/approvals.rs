//! `palisade approvals list | show ID | approve ID | deny ID [--reason TEXT]`: human approvals on
//! a running proxy, through its admin API (`docs/approvals.md`, "Deciding").
//!
//! Deciding sends two credentials: the admin token (the admin API's) and the approver's own
//! (`--approver-token`, default `$PALISADE_TOKEN`), which the proxy verifies like a data-plane
//! credential and checks with Cedar's `approve` action.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::admin::AdminClientArgs;

/// Human approvals of held calls.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List the pending approvals (JSON).
    List {
        #[command(flatten)]
        admin: AdminClientArgs,
    },
    /// Show one approval, whatever its status (JSON).
    Show {
        /// The approval's id.
        id: String,
        #[command(flatten)]
        admin: AdminClientArgs,
    },
    /// Approve a held call: it proceeds (once).
    Approve(DecideArgs),
    /// Deny a held call: the caller gets `APPROVAL_DENIED` (with the reason, if given).
    Deny(DecideArgs),
}

/// What deciding needs.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The approval's id (`palisade approvals list`).
    id: String,
    /// Why (at most 500 characters; shown to the caller on a denial, kept in the audit trail).
    #[arg(long)]
    reason: Option<String>,
    /// The approver's own credential (a JWT or an API key). It must not be the requester's,
    /// and the policies must permit it `approve` on the call.
    #[arg(long, env = "PALISADE_TOKEN", hide_env_values = true)]
    approver_token: String,
    #[command(flatten)]
    admin: AdminClientArgs,
}

/// Runs an approvals command; prints the answer's JSON on stdout.
pub fn run(cmd: ApprovalsCommand) -> ExitCode {
    let (admin, path, decision) = match cmd {
        ApprovalsCommand::List { admin } => (admin, "/admin/approvals".to_string(), None),
        ApprovalsCommand::Show { id, admin } => (admin, format!("/admin/approvals/{id}"), None),
        ApprovalsCommand::Approve(d) => (
            d.admin,
            format!("/admin/approvals/{}/approve", d.id),
            Some((d.approver_token, d.reason)),
        ),
        ApprovalsCommand::Deny(d) => (
            d.admin,
            format!("/admin/approvals/{}/deny", d.id),
            Some((d.approver_token, d.reason)),
        ),
    };
    admin.call("approvals", &path, |client, url| match decision {
        Some((approver, reason)) => client
            .post(url)
            .header("x-palisade-approver", format!("Bearer {approver}"))
            .json(&serde_json::json!({ "reason": reason })),
        None => client.get(url),
    })
}
