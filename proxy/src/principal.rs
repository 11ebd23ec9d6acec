//! [`Principal`]: who is calling, as every later stage (authorization, limits, audit) sees it.
//!
//! The shape follows the Cedar entity model (`docs/policies.md`): a principal is one of `User`,
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
    /// A browser session (`authentication.sessions`): the access token Palisade holds for it,
    /// verified like a bearer JWT.
    Session,
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
            Self::Session => "session",
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
    /// The delegation chain of an RFC 8693 token (`act` claim), immediate actor first: the
    /// `sub` of `act`, then of `act.act`, and so on. Empty when the caller acts for itself.
    pub actors: Vec<String>,
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
            actors: Vec::new(),
        }
    }

    /// The immediate actor (RFC 8693 `act.sub`) when the caller acts for someone else.
    pub fn actor(&self) -> Option<&str> {
        self.actors.first().map(String::as_str)
    }

    /// The Cedar entity uid as text: `User::"https://issuer|alice"`.
    pub fn entity_uid(&self) -> String {
        // Written straight into one buffer (no copy of the id into a JSON value, no formatting
        // machinery): it is built several times per request (identity header, limit key).
        let ty = self.kind.entity_type();
        let mut out = Vec::with_capacity(ty.len() + self.id.len() + 4);
        out.extend_from_slice(ty.as_bytes());
        out.extend_from_slice(b"::");
        serde_json::to_writer(&mut out, self.id.as_str()).expect("a string always serializes");
        String::from_utf8(out).expect("JSON text is UTF-8")
    }

    /// The entity uid as an HTTP header value: [`Self::entity_uid`] with every non-ASCII
    /// character written as a JSON `\uXXXX` escape, so the header is plain ASCII and the quoted
    /// part still parses as the JSON string of the id.
    pub fn entity_uid_header(&self) -> String {
        let uid = self.entity_uid();
        if uid.is_ascii() {
            return uid;
        }
        let mut out = String::with_capacity(uid.len() + 16);
        for c in uid.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out
    }

    /// Checks that every attribute can be forwarded and decided on unambiguously (see
    /// `docs/authentication.md`, "What the upstream receives"): no control characters anywhere;
    /// each role and the tenant an [identity token](is_identity_token). A principal that fails
    /// is refused (401), never forwarded: its identity headers would be malformed or ambiguous.
    pub fn check_attributes(&self) -> Result<(), AttributeError> {
        let free_text = std::iter::once(("id", self.id.as_str()))
            .chain(self.email.as_deref().map(|e| ("email", e)))
            .chain(self.groups.iter().map(|g| ("groups", g.as_str())))
            .chain(self.scopes.iter().map(|s| ("scopes", s.as_str())))
            .chain(self.actors.iter().map(|a| ("act", a.as_str())));
        for (attribute, value) in free_text {
            if value.chars().any(char::is_control) {
                return Err(AttributeError { attribute });
            }
        }
        if self.roles.iter().any(|r| !is_identity_token(r)) {
            return Err(AttributeError { attribute: "roles" });
        }
        if self
            .tenant
            .as_deref()
            .is_some_and(|t| !is_identity_token(t))
        {
            return Err(AttributeError {
                attribute: "tenant",
            });
        }
        Ok(())
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

/// Longest role or tenant accepted, in bytes.
pub const MAX_IDENTITY_TOKEN: usize = 256;

/// Whether `value` is an identity token, the only shape a role or a tenant may take: 1 to
/// [`MAX_IDENTITY_TOKEN`] bytes of ASCII letters, digits and `- . _ : / @ + = ~ |`. No comma, space,
/// quote, semicolon or control character, so `X-Palisade-Roles: a,b` always means the two roles
/// `a` and `b`, and every reader splits it the same way.
pub fn is_identity_token(value: &str) -> bool {
    (1..=MAX_IDENTITY_TOKEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:/@+=~|".contains(&b))
}

/// A principal attribute that cannot be forwarded (the credential is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the credential's `{attribute}` holds a value Palisade cannot forward unambiguously")]
pub struct AttributeError {
    /// The offending attribute: `id`, `email`, `groups`, `scopes`, `act`, `roles` or `tenant`.
    pub attribute: &'static str,
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
    fn control_characters_and_ambiguous_roles_or_tenants_are_refused() {
        let ok = || {
            let mut p = Principal::new(PrincipalKind::User, "https://idp|alice", AuthMethod::Jwt);
            p.roles = vec!["realm:user".into(), "org/admin".into(), "a_b-c.d".into()];
            p.tenant = Some("acme-01".into());
            p.email = Some("Alice Ünïcode <a@x.test>".into());
            p.scopes = vec!["agents:run".into()];
            p
        };
        assert_eq!(ok().check_attributes(), Ok(()));
        let refused = |f: &dyn Fn(&mut Principal)| {
            let mut p = ok();
            f(&mut p);
            p.check_attributes().unwrap_err().attribute
        };
        assert_eq!(
            refused(&|p| p.tenant = Some("acme\r\nx-evil: 1".into())),
            "tenant"
        );
        assert_eq!(refused(&|p| p.tenant = Some("Acme Corp".into())), "tenant");
        assert_eq!(refused(&|p| p.tenant = Some("café".into())), "tenant");
        assert_eq!(refused(&|p| p.tenant = Some(String::new())), "tenant");
        assert_eq!(refused(&|p| p.roles.push("user,admin".into())), "roles");
        assert_eq!(refused(&|p| p.roles.push("power user".into())), "roles");
        assert_eq!(refused(&|p| p.roles.push("x".repeat(257))), "roles");
        assert_eq!(refused(&|p| p.id.push('\n')), "id");
        assert_eq!(refused(&|p| p.email = Some("a@x\u{7f}".into())), "email");
        assert_eq!(refused(&|p| p.groups.push("g\u{85}".into())), "groups");
        assert_eq!(refused(&|p| p.scopes.push("s\0".into())), "scopes");
    }

    #[test]
    fn the_principal_header_is_ascii_and_its_id_still_json() {
        let p = Principal::new(PrincipalKind::User, "iss|jörg😀\"x", AuthMethod::Jwt);
        let header = p.entity_uid_header();
        assert!(header.is_ascii());
        assert_eq!(header, r#"User::"iss|j\u00f6rg\ud83d\ude00\"x""#);
        let quoted = header.strip_prefix("User::").unwrap();
        assert_eq!(serde_json::from_str::<String>(quoted).unwrap(), p.id);
        let plain = Principal::new(PrincipalKind::ApiKey, "k1", AuthMethod::ApiKey);
        assert_eq!(plain.entity_uid_header(), plain.entity_uid());
    }

    #[test]
    fn normalize_sorts_and_dedups_sets() {
        let mut p = Principal::new(PrincipalKind::ApiKey, "k1", AuthMethod::ApiKey);
        p.roles = vec!["user".into(), "admin".into(), "user".into()];
        assert_eq!(p.normalize().roles, ["admin", "user"]);
    }
}
