//! A JWT issuer the proxy under test trusts: ES256 tokens signed with a key generated per
//! issuer, its JWKS written to a temporary file, and the `authentication:` /
//! `authorization:` YAML that trusts it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use palisade_proxy::authn::signer::Signer;
use serde_json::{json, Value};

use crate::peers::workspace;

/// `iss` of the test tokens.
pub const ISS: &str = "https://idp.test";

/// A test issuer; its JWKS file lives as long as it does.
pub struct Issuer {
    signer: Signer,
    dir: tempfile::TempDir,
}

impl Default for Issuer {
    fn default() -> Self {
        Self::new()
    }
}

impl Issuer {
    /// A new issuer with a fresh key, its JWKS written to a temporary file.
    pub fn new() -> Self {
        let signer = Signer::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let jwks = serde_json::to_string(&signer.jwks()).unwrap();
        std::fs::write(dir.path().join("jwks.json"), jwks).unwrap();
        Self { signer, dir }
    }

    /// A token for `sub` with `roles` (audience `palisade`, valid 5 minutes); `extra` adds or
    /// overrides claims.
    pub fn token(&self, sub: &str, roles: &[&str], extra: Value) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({
            "iss": ISS, "sub": sub, "aud": "palisade", "iat": now, "exp": now + 300,
            "jti": format!("{sub}-{now}"), "roles": roles,
        });
        for (k, v) in extra.as_object().expect("extra claims are an object") {
            claims[k] = v.clone();
        }
        self.signer.sign(&claims).unwrap()
    }

    /// A token whose subject and only role are `role`.
    pub fn role(&self, role: &str) -> String {
        self.token(role, &[role], json!({}))
    }

    /// `authentication:` trusting this issuer (ES256, audience `palisade`, roles from the
    /// `roles` claim), as top-level YAML.
    pub fn authentication_yaml(&self) -> String {
        format!(
            "authentication:\n  issuers:\n    - issuer: {ISS}\n      audiences: [palisade]\n      \
             algorithms: [ES256]\n      keys: {{jwks_file: \"{}\"}}\n      claims: {{roles: [roles]}}\n",
            self.dir.path().join("jwks.json").display()
        )
    }

    /// [`Issuer::authentication_yaml`] plus `authorization:` enforcing the seed policies in
    /// `policies/` as the set `main`.
    pub fn yaml(&self) -> String {
        self.yaml_with_sets("", &[("main", &workspace().join("policies"), "enforce")])
    }

    /// [`Issuer::authentication_yaml`] plus `authorization:` with `settings` (pre-indented
    /// lines such as `  reload_interval: 100ms\n`, or empty) and the policy `sets`
    /// (`(name, path, mode)`).
    pub fn yaml_with_sets(&self, settings: &str, sets: &[(&str, &Path, &str)]) -> String {
        let mut y = self.authentication_yaml();
        y.push_str("authorization:\n");
        y.push_str(settings);
        y.push_str("  policy_sets:\n");
        for (name, path, mode) in sets {
            y.push_str(&format!(
                "    - name: {name}\n      path: \"{}\"\n      mode: {mode}\n",
                path.display()
            ));
        }
        y
    }
}
