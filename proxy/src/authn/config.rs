//! The `authentication:` section of `palisade.yaml`.

pub use crate::route::AuthRequirement;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// How requests prove who they are. With no issuer, no API keys and no trusted gateway
/// configured, every route that requires authentication answers 401.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthnSpec {
    /// JWT issuers (OIDC providers or shared-secret issuers). Default: none.
    #[serde(default)]
    pub issuers: Vec<IssuerSpec>,
    /// A development issuer whose ES256 key is generated at start; `palisade dev` prints a token
    /// from it. Never enable in production. Default: absent (off).
    #[serde(default)]
    pub dev_issuer: Option<DevIssuerSpec>,
    /// API keys (`pk_<id>_<secret>` in `Authorization: Bearer` or `X-API-Key`). Default: absent.
    #[serde(default)]
    pub api_keys: Option<ApiKeysSpec>,
    /// Identity headers set by an edge gateway, trusted only from the listed networks. Default:
    /// absent (such headers are always removed).
    #[serde(default)]
    pub trusted_headers: Option<TrustedHeadersSpec>,
    /// Verified-token cache, so a repeated token costs a lookup instead of a signature check.
    #[serde(default)]
    pub token_cache: TokenCacheSpec,
    /// Largest accepted credential (token) in bytes; longer ones get 401. Default: `8192`.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// The `X-Palisade-Assertion` JWT signed for the upstream.
    #[serde(default)]
    pub assertion: AssertionSpec,
    /// Where revoked token ids are shared between replicas. Default: in-process only.
    #[serde(default)]
    pub revocation: RevocationSpec,
    /// PEM bundle of CAs trusted for JWKS and OIDC discovery fetches (an IdP behind a private
    /// CA), besides the built-in web roots and the system store (`SSL_CERT_FILE` /
    /// `SSL_CERT_DIR` when set). Default: absent.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Browser sign-in (OIDC authorization code + PKCE) and the session cookie that routes with
    /// `auth: session` accept (docs/authentication.md#browser-sessions). Default: absent (off).
    #[serde(default)]
    pub sessions: Option<super::session::config::SessionsSpec>,
}

/// Shared revocation list.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationSpec {
    /// `redis://host:port` of a standalone Redis holding the shared list. Default: absent
    /// (revocations stay in this process).
    #[serde(default)]
    #[serde(serialize_with = "crate::redact::opt_url")]
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster instead of `redis_url`. Default: none.
    #[serde(default)]
    #[serde(serialize_with = "crate::redact::urls")]
    pub redis_cluster: Vec<String>,
    /// The Redis sorted set (jti → expiry). Default: `palisade:revoked`.
    #[serde(default = "default_revocation_key")]
    pub key: String,
    /// How often each replica pulls the shared list. Default: `1s`.
    #[serde(default = "default_sync_interval", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub sync_interval: Duration,
    /// File holding the bearer token the admin API (`GET`/`POST /revocations` on the admin
    /// listener) requires; created with a random token (mode `0600`) when missing. A leading
    /// `{tmp}` is the OS temp dir. `palisade tokens revoke --token-file` reads the same file.
    /// Default: absent (the admin API refuses every call with 403).
    #[serde(default)]
    pub admin_token_file: Option<String>,
}

impl Default for RevocationSpec {
    fn default() -> Self {
        yaml_serde::from_str("{}").expect("an empty revocation section is valid")
    }
}

fn default_revocation_key() -> String {
    "palisade:revoked".into()
}
fn default_sync_interval() -> Duration {
    Duration::from_secs(1)
}

impl Default for AuthnSpec {
    fn default() -> Self {
        // The serde defaults are the one source of truth for every field's default.
        yaml_serde::from_str("{}").expect("an empty authentication section is valid")
    }
}

/// One JWT issuer.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    /// The exact `iss` claim value. Required.
    pub issuer: String,
    /// Accepted `aud` values; a token must carry one of them. Default: none (any audience) —
    /// set it in production.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Allowed signature algorithms, e.g. `[RS256, ES256]`. HMAC algorithms are only allowed with
    /// `secret_env`, public-key algorithms only with a key source. `none` is never accepted.
    /// Default: `[RS256]` for key sources, `[HS256]` for `secret_env`.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Where the verification keys come from: exactly one of `discovery: true`, `jwks_url`,
    /// `jwks_file`, `secret_env`. Required.
    pub keys: KeySourceSpec,
    /// Clock skew allowed on `exp` and `nbf`. Default: `30s`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub leeway: Duration,
    /// Claims that must be present (besides `exp`, always required). Default: `[sub]`.
    #[serde(default = "default_required_claims")]
    pub required_claims: Vec<String>,
    /// How claims map to the principal's attributes.
    #[serde(default)]
    pub claims: ClaimMappingSpec,
    /// How long fetched keys are used before a background refresh. Default: `10m`.
    #[serde(default = "default_jwks_ttl", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub jwks_ttl: Duration,
    /// Minimum time between key fetches triggered by an unknown `kid`. Default: `30s`.
    #[serde(default = "default_refetch_interval", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub refetch_min_interval: Duration,
    /// `/readyz` stays 503 until this issuer's keys loaded once. Default: `true`.
    #[serde(default = "default_true")]
    pub required_for_readiness: bool,
}

/// Where an issuer's keys come from: set exactly one field.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySourceSpec {
    /// OIDC discovery: `<issuer>/.well-known/openid-configuration` → `jwks_uri`. Default: `false`.
    #[serde(default)]
    pub discovery: bool,
    /// A JWKS URL (`https://…/.well-known/jwks.json`), fetched at start and on the refresh
    /// interval. Default: absent.
    #[serde(default)]
    #[serde(serialize_with = "crate::redact::opt_url")]
    pub jwks_url: Option<String>,
    /// A local JWKS file (re-read on the refresh interval). Default: absent.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// Name of an environment variable holding the HMAC secret (e.g. Supabase's legacy JWT
    /// secret), at least 32 bytes. The secret itself never goes in the file. `palisade validate
    /// --no-env` notes an unset variable instead of failing. Default: absent.
    #[serde(default)]
    pub secret_env: Option<String>,
}

impl KeySourceSpec {
    /// How many sources are set (valid: exactly one).
    pub fn count(&self) -> usize {
        usize::from(self.discovery)
            + usize::from(self.jwks_url.is_some())
            + usize::from(self.jwks_file.is_some())
            + usize::from(self.secret_env.is_some())
    }
}

/// Claim paths for principal attributes. A path is a top-level claim name (which may contain
/// dots, like Auth0's `https://example.com/roles`) or a dotted path into nested objects
/// (`realm_access.roles`). Each attribute takes the first path that is present.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimMappingSpec {
    /// Role claims; values from every listed path are merged. Default: `[roles, role]`.
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
    /// Tenant claim. Default: `[tenant, tenant_id]`.
    #[serde(default = "default_tenant")]
    pub tenant: Vec<String>,
    /// Group claims. Default: `[groups]`.
    #[serde(default = "default_groups")]
    pub groups: Vec<String>,
    /// E-mail claim. Default: `[email]`.
    #[serde(default = "default_email")]
    pub email: Vec<String>,
    /// Scope claims (space-separated strings or lists). Default: `[scope, scp]`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// `amr` values that mean multi-factor. Default: `[mfa, otp, hwk, swk, sms]`.
    #[serde(default = "default_mfa_amr")]
    pub mfa_amr: Vec<String>,
}

impl Default for ClaimMappingSpec {
    fn default() -> Self {
        Self {
            roles: default_roles(),
            tenant: default_tenant(),
            groups: default_groups(),
            email: default_email(),
            scopes: default_scopes(),
            mfa_amr: default_mfa_amr(),
        }
    }
}

/// The development issuer.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DevIssuerSpec {
    /// The `iss` of dev tokens. Default: `palisade-dev`.
    #[serde(default = "default_dev_issuer")]
    pub issuer: String,
    /// Roles in the printed token. Default: `[admin]`.
    #[serde(default = "default_dev_roles")]
    pub roles: Vec<String>,
    /// Tenant in the printed token. Default: `dev`.
    #[serde(default = "default_dev_tenant")]
    pub tenant: String,
    /// Lifetime of the printed token. Default: `12h`.
    #[serde(default = "default_dev_ttl", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub token_ttl: Duration,
}

/// API keys.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysSpec {
    /// YAML file of hashed keys, managed with `palisade keys create|list|revoke -f FILE` and
    /// re-read when it changes. Default: absent. Set `file`, a Redis store, or both.
    #[serde(default)]
    pub file: Option<String>,
    /// `redis://host:port` of a standalone Redis holding hashed keys shared by all replicas
    /// (`palisade keys … --redis URL`). Default: absent.
    #[serde(default)]
    #[serde(serialize_with = "crate::redact::opt_url")]
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster instead of `redis_url`. Default: none.
    #[serde(default)]
    #[serde(serialize_with = "crate::redact::urls")]
    pub redis_cluster: Vec<String>,
    /// The Redis hash holding the keys. Default: `palisade:apikeys`.
    #[serde(default = "default_apikeys_key")]
    pub redis_key: String,
}

fn default_apikeys_key() -> String {
    "palisade:apikeys".into()
}

/// Trusted edge-gateway identity headers (the Supabase edge-function pattern).
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustedHeadersSpec {
    /// Networks (CIDR) whose requests may carry identity headers. Required.
    pub from: Vec<String>,
    /// Header with the user id. Default: `x-user-id`.
    #[serde(default = "default_user_header")]
    pub user_header: String,
    /// Header with the e-mail. Default: `x-user-email`.
    #[serde(default = "default_email_header")]
    pub email_header: String,
    /// Header with comma-separated roles. Default: `x-user-role`.
    #[serde(default = "default_role_header")]
    pub role_header: String,
    /// Header with the tenant. Default: `x-user-tenant`.
    #[serde(default = "default_tenant_header")]
    pub tenant_header: String,
    /// Issuer label used in the principal id (`User::"<issuer>|<id>"`). Default: `edge`.
    #[serde(default = "default_edge_issuer")]
    pub issuer: String,
}

/// Verified-token cache.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCacheSpec {
    /// Most tokens kept; `0` turns the cache off. Default: `10000`.
    #[serde(default = "default_cache_entries")]
    pub max_entries: usize,
}

impl Default for TokenCacheSpec {
    fn default() -> Self {
        Self {
            max_entries: default_cache_entries(),
        }
    }
}

/// The signed identity assertion forwarded upstream.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionSpec {
    /// Lifetime of an assertion (at most 60 s). Default: `60s`.
    #[serde(default = "default_assertion_ttl", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ttl: Duration,
    /// `iss` of assertions. Default: `palisade`.
    #[serde(default = "default_assertion_issuer")]
    pub issuer: String,
    /// The signing key: a P-256 private key, PKCS#8 PEM (`palisade assertion-key generate`). Replicas
    /// behind one Service must share it, so an upstream verifies what any of them signed.
    /// Default: a key generated at every start (one replica).
    #[serde(default)]
    pub signing_key_file: Option<String>,
    /// The same as `signing_key_file`, from the named environment variable (the PEM itself).
    /// Default: absent.
    #[serde(default)]
    pub signing_key_env: Option<String>,
    /// Keys published in the JWKS next to the signing key, never used to sign: the next key
    /// before a rotation, the old one after it (docs/deployment.md#one-assertion-key-for-every-replica).
    /// Default: none.
    #[serde(default)]
    pub previous_key_files: Vec<String>,
}

impl Default for AssertionSpec {
    fn default() -> Self {
        Self {
            ttl: default_assertion_ttl(),
            issuer: default_assertion_issuer(),
            signing_key_file: None,
            signing_key_env: None,
            previous_key_files: Vec::new(),
        }
    }
}

fn default_max_token_bytes() -> usize {
    8192
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_required_claims() -> Vec<String> {
    vec!["sub".into()]
}
fn default_jwks_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_refetch_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_true() -> bool {
    true
}
fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
fn default_roles() -> Vec<String> {
    strings(&["roles", "role"])
}
fn default_tenant() -> Vec<String> {
    strings(&["tenant", "tenant_id"])
}
fn default_groups() -> Vec<String> {
    strings(&["groups"])
}
fn default_email() -> Vec<String> {
    strings(&["email"])
}
fn default_scopes() -> Vec<String> {
    strings(&["scope", "scp"])
}
fn default_mfa_amr() -> Vec<String> {
    strings(&["mfa", "otp", "hwk", "swk", "sms"])
}
fn default_dev_issuer() -> String {
    "palisade-dev".into()
}
fn default_dev_roles() -> Vec<String> {
    strings(&["admin"])
}
fn default_dev_tenant() -> String {
    "dev".into()
}
fn default_dev_ttl() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn default_user_header() -> String {
    "x-user-id".into()
}
fn default_email_header() -> String {
    "x-user-email".into()
}
fn default_role_header() -> String {
    "x-user-role".into()
}
fn default_tenant_header() -> String {
    "x-user-tenant".into()
}
fn default_edge_issuer() -> String {
    "edge".into()
}
fn default_cache_entries() -> usize {
    10_000
}
fn default_assertion_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_assertion_issuer() -> String {
    "palisade".into()
}
