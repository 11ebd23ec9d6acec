//! [`Principal`]: who is calling, as every later stage (authorization, limits, audit) sees it.
//!
//! The shape follows the Cedar entity model in `DESIGN.md`: a principal is one of `User`,
//! `ApiKey`, `Service` or `Anonymous`, with attributes (`email`, `tenant`, `roles`, `groups`,
//! `scopes`, `mfa`, `auth_method`) and parents (`Role::"<role>"` per role, `Tenant::"<id>"`).

use std::time::SystemTime;

/// The Cedar entity type of a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// A person or agent with a verified JWT: id `"<iss>|<sub>"`.
    User,
    /// An API key: id = the key id.
    ApiKey,
    /// A workload authenticated by mTLS: id = SPIFFE URI SAN or certificate CN.
    Service,
    /// No credentials, on a route that allows it: id = the client IP.
    Anonymous,
}

impl PrincipalKind {
    /// The Cedar entity type name (`User`, `ApiKey`, `Service`, `Anonymous`).
    pub fn entity_type(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::ApiKey => "ApiKey",
            Self::Service => "Service",
            Self::Anonymous => "Anonymous",
        }
    }
}

/// How the principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A JWT from a configured issuer.
    Jwt,
    /// An API key.
    ApiKey,
    /// A client certificate.
    Mtls,
    /// Identity headers from a trusted edge gateway.
    TrustedHeader,
    /// None (anonymous route).
    Anonymous,
}

impl AuthMethod {
    /// The `auth_method` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::Mtls => "mtls",
            Self::TrustedHeader => "trusted_header",
            Self::Anonymous => "anonymous",
        }
    }
}

/// An authenticated (or explicitly anonymous) caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Entity type.
    pub kind: PrincipalKind,
    /// Entity id (see [`PrincipalKind`]).
    pub id: String,
    /// E-mail, when the credential carries one.
    pub email: Option<String>,
    /// Tenant id, when the credential carries one (parent `Tenant::"<id>"`).
    pub tenant: Option<String>,
    /// Roles (parents `Role::"<role>"`), sorted and deduplicated.
    pub roles: Vec<String>,
    /// Groups, sorted and deduplicated.
    pub groups: Vec<String>,
    /// OAuth scopes, sorted and deduplicated.
    pub scopes: Vec<String>,
    /// Whether multi-factor authentication was used (`amr` contains `mfa`/`otp`/`hwk`…).
    pub mfa: bool,
    /// How the principal authenticated.
    pub auth_method: AuthMethod,
    /// The token's `jti`, for revocation and audit.
    pub token_id: Option<String>,
    /// When the credential stops being valid.
    pub expires_at: Option<SystemTime>,
    /// Rate-limit tier (API keys), when set.
    pub limit_tier: Option<String>,
}

impl Principal {
    /// A principal of `kind` with id `id` and no attributes.
    pub fn new(kind: PrincipalKind, id: impl Into<String>, auth_method: AuthMethod) -> Self {
        Self {
            kind,
            id: id.into(),
            email: None,
            tenant: None,
            roles: Vec::new(),
            groups: Vec::new(),
            scopes: Vec::new(),
            mfa: false,
            auth_method,
            token_id: None,
            expires_at: None,
            limit_tier: None,
        }
    }

    /// The Cedar entity uid as text: `User::"https://issuer|alice"`.
    pub fn entity_uid(&self) -> String {
        format!(
            "{}::{}",
            self.kind.entity_type(),
            serde_json::Value::String(self.id.clone())
        )
    }

    /// Sorts and deduplicates the set-valued attributes.
    pub fn normalize(mut self) -> Self {
        for set in [&mut self.roles, &mut self.groups, &mut self.scopes] {
            set.sort();
            set.dedup();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_uid_quotes_the_id() {
        let p = Principal::new(PrincipalKind::User, "https://idp|a\"b", AuthMethod::Jwt);
        assert_eq!(p.entity_uid(), r#"User::"https://idp|a\"b""#);
    }

    #[test]
    fn normalize_sorts_and_dedups_sets() {
        let mut p = Principal::new(PrincipalKind::ApiKey, "k1", AuthMethod::ApiKey);
        p.roles = vec!["user".into(), "admin".into(), "user".into()];
        assert_eq!(p.normalize().roles, ["admin", "user"]);
    }
}
