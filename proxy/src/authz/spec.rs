//! Configuration of authorization, as written in `palisade.yaml` (`authorization:` at the top
//! level, `authorization:` on each route). Validated into the runtime types by
//! [`super::load`] and [`super::RouteAuthz::from_spec`].

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// Top-level `authorization:`: which Cedar policy sets decide, and how.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthzSpec {
    /// Policy sets, each a directory with `*.cedarschema`, `*.cedar` and an optional
    /// `tools.yaml` catalog. At most one may be `enforce`; `shadow` sets decide and record
    /// beside it without ever blocking. Default: none (authorization off; every request passes).
    #[serde(default)]
    pub policy_sets: Vec<PolicySetSpec>,
    /// How often the policy files are checked for changes (SIGHUP reloads at once too).
    /// `0s` turns polling off. Default: `2s`.
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub reload_interval: Duration,
    /// What a step-up challenge asks for when a denied request would be permitted after
    /// multi-factor authentication (RFC 9470; `docs/policies.md`, "Step-up challenges").
    /// Default: no `acr_values`, no `max_age`.
    #[serde(default)]
    pub step_up: StepUpSpec,
}

/// `authorization.step_up`: the RFC 9470 `insufficient_user_authentication` challenge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpSpec {
    /// Authentication context class references that mean MFA at your issuer (e.g.
    /// `[urn:okta:loa:2fa:any]`, Keycloak's `[gold]`), sent as `acr_values="…"`. Default: none
    /// (the challenge is still sent, without `acr_values`).
    #[serde(default)]
    pub acr_values: Vec<String>,
    /// Longest time since the user authenticated that still counts, sent as `max_age=<seconds>`.
    /// Default: absent (not sent).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub max_age: Option<Duration>,
}

/// One policy set.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySetSpec {
    /// Name used in metrics (`policy_set` label), logs and audit. Default: `main`.
    #[serde(default = "default_set_name")]
    pub name: String,
    /// Directory holding the schema (`*.cedarschema`), the policies (`*.cedar`) and the tool
    /// catalog (`tools.yaml`, optional), relative to the working directory; `builtin` names
    /// the seed policies of `policies/` compiled into the binary. Required.
    pub path: String,
    /// `enforce` (a deny refuses the request) or `shadow` (decide, record, never block).
    /// Default: `enforce`.
    #[serde(default)]
    pub mode: ModeSpec,
}

/// Enforcement mode of a policy set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeSpec {
    /// Deny refuses the request.
    #[default]
    Enforce,
    /// Decide and record only.
    Shadow,
}

/// A route's `authorization:`: how its requests map to Cedar actions and resources.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteAuthzSpec {
    /// Rules tried in order; the first whose methods and path match gives the request's action
    /// and resource. Without a match: `run_agent` on `Agent::"<agent>"` for `agui` routes,
    /// `http_request` on `Route::"<route name>"` otherwise. Default: none.
    #[serde(default)]
    pub rules: Vec<AuthzRuleSpec>,
    /// Name of the agent behind the route (`Agent::"<agent>"` for AG-UI runs and A2A methods).
    /// Default: the route name.
    #[serde(default)]
    pub agent: Option<String>,
    /// What an AG-UI stream does with a tool call the caller may not use: `drop` removes the
    /// call's events (and its `MESSAGES_SNAPSHOT` entry), `run_error` ends the run with a
    /// `RUN_ERROR` of code `FORBIDDEN`. Default: `drop`.
    #[serde(default)]
    pub denied_tool_call: DeniedToolCall,
}

/// One request-mapping rule.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthzRuleSpec {
    /// Methods the rule applies to, upper case. Default: any method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path prefix on a segment boundary (`/agent` matches `/agent/x`, not `/agents`).
    /// Default: `/`.
    #[serde(default = "default_path")]
    pub path_prefix: String,
    /// Cedar action id, e.g. `run_agent` (must be an action of the schema). Required.
    pub action: String,
    /// Cedar resource, e.g. `Agent::"assistant"` (its type must suit the action). Required.
    pub resource: String,
}

/// Stream behaviour for denied AG-UI tool calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeniedToolCall {
    /// Remove the call's events from the stream.
    #[default]
    Drop,
    /// End the run with `RUN_ERROR` code `FORBIDDEN`.
    RunError,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_set_name() -> String {
    "main".into()
}
fn default_path() -> String {
    "/".into()
}
