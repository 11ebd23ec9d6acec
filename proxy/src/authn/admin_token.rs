//! The bearer token of the admin API (`/revocations` on the admin listener).
//!
//! Revoking tokens is an administrative act: being able to reach the admin listener (anything on
//! loopback, e.g. an agent tool making HTTP calls) is not enough. The token lives in a file named
//! by `authentication.revocation.admin_token_file`; when the file is missing at start Palisade
//! creates it (mode `0600`) with a fresh random token, so `palisade tokens revoke` on the same
//! host reads it from there. Without the setting the admin API refuses every call.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token accepted from a file written by hand, in bytes.
pub const MIN_TOKEN_BYTES: usize = 32;

/// The admin API's token, kept only as its SHA-256 digest.
pub struct AdminToken {
    digest: [u8; 32],
    /// Where the token came from (for messages).
    pub path: PathBuf,
}

impl AdminToken {
    /// Reads the token from `path` (a leading `{tmp}` is the OS temp dir), creating the file with
    /// a random token when it does not exist.
    pub fn load_or_create(path: &str) -> anyhow::Result<Self> {
        let path = crate::audit::resolve_path(path);
        let token = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path)?,
            Err(e) => anyhow::bail!("reading the admin token file {}: {e}", path.display()),
        };
        let token = token.trim();
        if token.len() < MIN_TOKEN_BYTES {
            anyhow::bail!(
                "the admin token in {} is shorter than {MIN_TOKEN_BYTES} bytes",
                path.display()
            );
        }
        Ok(Self {
            digest: Sha256::digest(token.as_bytes()).into(),
            path,
        })
    }

    /// Whether `authorization` (the request's `Authorization` header) is `Bearer <the token>`.
    /// Compares digests in constant time, so neither the token nor its length leaks.
    pub fn verify(&self, authorization: Option<&str>) -> bool {
        let Some((scheme, token)) = authorization.and_then(|v| v.split_once(' ')) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        scheme.eq_ignore_ascii_case("bearer") && bool::from(digest[..].ct_eq(&self.digest[..]))
    }
}

/// Reads the token for a client of the admin API (`palisade tokens revoke`): the file's content,
/// trimmed.
pub fn read(path: &str) -> anyhow::Result<String> {
    let path = crate::audit::resolve_path(path);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading the admin token file {}: {e}", path.display()))?;
    Ok(text.trim().to_string())
}

/// Creates `path` with a random 256-bit token, readable by its owner only. When another process
/// created it first, reads theirs.
fn create(path: &Path) -> anyhow::Result<String> {
    use rand::RngCore;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{token}\n").as_bytes())?;
            tracing::info!(path = %path.display(), "created the admin API token file");
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(path)?)
        }
        Err(e) => anyhow::bail!("creating the admin token file {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_owner_only_and_verified_in_constant_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/admin-token");
        let path_str = path.to_str().unwrap();
        let first = AdminToken::load_or_create(path_str).unwrap();
        let token = read(path_str).unwrap();
        assert_eq!(token.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A second start reads the same token.
        let second = AdminToken::load_or_create(path_str).unwrap();
        for t in [&first, &second] {
            assert!(t.verify(Some(&format!("Bearer {token}"))));
            assert!(t.verify(Some(&format!("bearer {token}"))));
            assert!(!t.verify(Some(&format!("Basic {token}"))));
            assert!(!t.verify(Some(&format!("Bearer {token}x"))));
            assert!(!t.verify(Some("Bearer ")));
            assert!(!t.verify(None));
        }
    }

    #[test]
    fn short_tokens_written_by_hand_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "secret\n").unwrap();
        assert!(AdminToken::load_or_create(path.to_str().unwrap()).is_err());
    }
}
