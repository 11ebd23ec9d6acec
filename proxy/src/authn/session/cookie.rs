//! Sealed cookies: AES-256-GCM under a [`KeyRing`] (one key seals, older ones still open), and
//! the `Cookie` / `Set-Cookie` text of the session and sign-in cookies.
//!
//! A sealed value is `base64url(nonce ‖ ciphertext ‖ tag)`; the cookie's name is the associated
//! data, so a value cut from one cookie never opens as another.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

use super::config::{parse_key, SameSite, SessionCookieSpec};

/// Largest cookie value opened (anything longer is not ours).
const MAX_SEALED: usize = 4096;
const NONCE: usize = 12;

/// The cookie keys: the first seals, every one opens (rotation: the old key stays readable).
pub struct KeyRing {
    keys: Vec<Aes256Gcm>,
}

impl KeyRing {
    /// A ring sealing with `current` and opening with it and `previous`.
    pub fn new(current: [u8; 32], previous: &[[u8; 32]]) -> Self {
        let keys = std::iter::once(&current)
            .chain(previous)
            .map(|k| Aes256Gcm::new(k.into()))
            .collect();
        Self { keys }
    }

    /// Loads the keys `spec` names (a generated one when it names none).
    pub fn load(spec: &SessionCookieSpec) -> anyhow::Result<Self> {
        let read = |file: &str| -> anyhow::Result<[u8; 32]> {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("cookie key {file}: {e}"))?;
            parse_key(&text).map_err(|e| anyhow::anyhow!("cookie key {file}: {e}"))
        };
        let current = match (&spec.key_file, &spec.key_env) {
            (Some(file), _) => read(file)?,
            (None, Some(var)) => {
                let text = std::env::var(var)
                    .map_err(|_| anyhow::anyhow!("environment variable {var} is not set"))?;
                parse_key(&text).map_err(|e| anyhow::anyhow!("${var}: {e}"))?
            }
            (None, None) => {
                tracing::warn!(
                    "authentication.sessions.cookie has no key: one was generated, so sessions \
                     end when this process does and other replicas cannot read them"
                );
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                key
            }
        };
        let previous = spec
            .previous_key_files
            .iter()
            .map(|f| read(f))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self::new(current, &previous))
    }

    /// Seals `plain` for the cookie named `name`.
    pub fn seal(&self, name: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plain,
            aad: name.as_bytes(),
        };
        // Encryption with a valid key and a 12-byte nonce cannot fail.
        let sealed = self.keys[0]
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a value sealed for the cookie named `name` by any key of the ring.
    pub fn open(&self, name: &str, value: &str) -> Option<Vec<u8>> {
        if value.len() > MAX_SEALED {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        if raw.len() < NONCE + 16 {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE);
        self.keys.iter().find_map(|key| {
            key.decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: name.as_bytes(),
                },
            )
            .ok()
        })
    }
}

/// The value of cookie `name` in a request's `Cookie` headers (the first one).
pub fn find<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The request's cookies without those named in `names`, joined into one `Cookie` value, or
/// `None` when none of them was there (the headers stay as they are).
pub fn without(headers: &http::HeaderMap, names: &[&str]) -> Option<String> {
    let pairs: Vec<&str> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let ours = |pair: &&str| names.contains(&pair.split_once('=').map_or(*pair, |(n, _)| n));
    if !pairs.iter().any(ours) {
        return None;
    }
    let kept: Vec<&str> = pairs.into_iter().filter(|p| !ours(p)).collect();
    Some(kept.join("; "))
}

/// The attributes every cookie Palisade sets carries.
#[derive(Debug, Clone, Copy)]
pub struct Attributes {
    /// `Secure` (the listener speaks TLS).
    pub secure: bool,
    /// `SameSite`.
    pub same_site: SameSite,
}

/// `Set-Cookie` text: HttpOnly, `Path=/`, the `SameSite` asked for, `Secure` on TLS; `max_age`
/// `0` deletes it.
pub fn set(name: &str, value: &str, max_age: u64, attrs: Attributes) -> String {
    let same_site = match attrs.same_site {
        SameSite::Lax => "Lax",
        SameSite::Strict => "Strict",
    };
    let secure = if attrs.secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn sealed_values_open_only_under_their_name_and_a_known_key() {
        let old = KeyRing::new([1; 32], &[]);
        let sealed = old.seal("palisade-session", b"sid");
        assert_eq!(old.open("palisade-session", &sealed).unwrap(), b"sid");
        assert!(old.open("palisade-session-login", &sealed).is_none());
        // Rotation: the new ring seals with the new key and still opens the old cookies.
        let rotated = KeyRing::new([2; 32], &[[1; 32]]);
        assert_eq!(rotated.open("palisade-session", &sealed).unwrap(), b"sid");
        assert!(old
            .open("palisade-session", &rotated.seal("palisade-session", b"x"))
            .is_none());
        // A flipped bit, a truncation or garbage never opens.
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert!(rotated
            .open("palisade-session", std::str::from_utf8(&bytes).unwrap())
            .is_none());
        assert!(rotated.open("palisade-session", &sealed[..10]).is_none());
        assert!(rotated.open("palisade-session", "%%%").is_none());
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        assert!(parse_key(&STANDARD.encode([7u8; 32])).is_ok());
        assert!(parse_key(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
        assert!(parse_key(&STANDARD.encode([7u8; 16])).is_err());
        assert!(parse_key("not a key!").is_err());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            "a=1; palisade-session=xyz".parse().unwrap(),
        );
        headers.append(http::header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(find(&headers, "palisade-session"), Some("xyz"));
        assert_eq!(find(&headers, "b"), Some("2"));
        assert_eq!(find(&headers, "palisade"), None);
        assert_eq!(
            without(&headers, &["palisade-session"]).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(without(&headers, &["other"]), None);
        let attrs = Attributes {
            secure: true,
            same_site: SameSite::Strict,
        };
        assert_eq!(
            set("n", "v", 60, attrs),
            "n=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
    }
}
