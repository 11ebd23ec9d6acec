//! Request-path canonicalization: one reading of a path, computed once, that routing, route
//! rules, the Cedar `context.path` and the upstream rewrite all use (docs/security.md, principle
//! "paths are canonicalized once").
//!
//! [`canonicalize`] takes the raw request target (origin form, `/…[?query]`) and returns a
//! [`CanonicalPath`] or a [`PathError`] (a refusal: the request gets `400 INVALID_REQUEST`). The
//! steps, in order, per segment and then over the whole path:
//!
//! 1. The query (from the first `?`) is split off and kept byte for byte; nothing below touches
//!    it.
//! 2. Refused outright: a raw or encoded `\` (`%5C`), a raw or encoded control character
//!    (`%00`–`%1F`, `%7F`), an encoded `/` (`%2F`, whatever its case), a `%` not followed by two
//!    hex digits, a raw `#`, and a target that does not start with `/`.
//! 3. `;` path parameters are removed: each segment is cut at its first raw `;`
//!    (`/ops;v=1/admin` → `/ops/admin`, `/a/..;x/b` → `/a/../b` → `/b`). Policy: Palisade never
//!    routes on `;` parameters, and the upstream receives the path without them. An encoded
//!    `%3B` is data and stays.
//! 4. Percent-escapes of unreserved characters (`A–Z a–z 0–9 - . _ ~`) are decoded
//!    (`%61dmin` → `admin`, `%2E%2E` → `..`); every other escape is kept, with upper-case hex
//!    (`%3b` → `%3B`). Raw bytes that may not appear in a path (space, `"`, `<`, `>`, `[`, `]`,
//!    `^`, `` ` ``, `{`, `|`, `}`, non-ASCII) are percent-encoded (upper-case hex).
//! 5. Dot segments are removed (RFC 3986 §5.2.4): `.` disappears, `..` removes the segment
//!    before it. A `..` that would climb above `/` is refused ([`PathError::AboveRoot`]), not
//!    clamped: no well-behaved client sends one.
//! 6. Empty segments are dropped (`//ops//admin` → `/ops/admin`); a trailing `/` is kept
//!    (`/ops/` and `/ops` stay different paths, as they are for most upstreams), and a path
//!    ending in a dot segment ends in `/` (`/a/b/..` → `/a/`).
//!
//! **Matching is case-sensitive**, like nginx and Envoy: `/Ops/admin` is not `/ops/admin`, and
//! nothing here changes the case of a path character (only of escape hex digits). A route rule
//! that must hold for any case has to be written for each case the upstream accepts — or the
//! upstream must be case-sensitive too (most are).
//!
//! The output never contains `//`, `/./` or `/../`, never ends in `/.` or `/..`, and
//! `canonicalize(canonical) == canonical` (property tests below; fuzzed in `proxy/fuzz`).
//!
//! [`normalize_fs_path`] is the same dot-segment and duplicate-slash logic for *filesystem*
//! paths found in tool arguments (no percent-decoding, `;` is an ordinary character, and `..`
//! stops at `/` as the kernel does): docs/policies.md, "Path arguments".

use std::borrow::Cow;
use std::fmt::Write as _;

/// A canonical request target: the path (see the module docs) and the untouched query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalPath {
    path: String,
    query: Option<String>,
}

impl CanonicalPath {
    /// The canonical path, always starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query after `?`, exactly as received (`Some("")` for a bare `?`).
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Path and query joined again (`/a/b?x=1`), the form to forward upstream.
    pub fn request_target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Why a path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The target does not start with `/` (and is not empty).
    #[error("the request target must start with `/`")]
    NotOriginForm,
    /// `%2F`: an encoded `/` would make a segment boundary that some upstreams decode and
    /// others do not.
    #[error("encoded `/` (%2F) in the path")]
    EncodedSlash,
    /// `\` or `%5C`: some upstreams treat it as a separator.
    #[error("backslash in the path")]
    Backslash,
    /// A raw or encoded control character (0x00–0x1F, 0x7F).
    #[error("control character in the path")]
    ControlChar,
    /// `%` not followed by two hex digits, at this byte offset of the raw target.
    #[error("invalid percent-escape at byte {0}")]
    InvalidEscape(usize),
    /// A raw `#`: a fragment never belongs in a request target.
    #[error("`#` in the request target")]
    Fragment,
    /// A `..` segment that would climb above `/`.
    #[error("`..` above the root of the path")]
    AboveRoot,
}

/// Canonicalizes a raw origin-form request target (`/path[?query]`); an empty target is `/`.
/// See the module docs for every step.
pub fn canonicalize(raw: &str) -> Result<CanonicalPath, PathError> {
    let (raw_path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (raw, None),
    };
    if raw_path.is_empty() {
        return Ok(CanonicalPath {
            path: "/".into(),
            query,
        });
    }
    if !raw_path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let mut segments: Vec<String> = Vec::new();
    // Whether the last segment seen was empty or a dot segment: the path then ends in `/`.
    let mut trailing_slash = false;
    let mut offset = 1;
    for raw_segment in raw_path[1..].split('/') {
        let start = offset;
        offset += raw_segment.len() + 1;
        let without_params = match raw_segment.find(';') {
            Some(cut) => &raw_segment[..cut],
            None => raw_segment,
        };
        // Invalid bytes after the `;` are refused too: the parameters are dropped, not hidden.
        check_bytes(&raw_segment.as_bytes()[without_params.len()..], start)?;
        let segment = decode_segment(without_params, start)?;
        match segment.as_str() {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(raw_path.len());
    for s in &segments {
        path.push('/');
        path.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        path.push('/');
    }
    Ok(CanonicalPath { path, query })
}

/// Refusals that hold anywhere in the path, `;` parameters included.
fn check_bytes(bytes: &[u8], offset: usize) -> Result<(), PathError> {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                decode_escape(bytes, i, offset)?;
                i += 3;
            }
            b => {
                check_raw(b)?;
                i += 1;
            }
        }
    }
    Ok(())
}

fn check_raw(b: u8) -> Result<(), PathError> {
    match b {
        b'\\' => Err(PathError::Backslash),
        b'#' => Err(PathError::Fragment),
        b if b < 0x20 || b == 0x7f => Err(PathError::ControlChar),
        _ => Ok(()),
    }
}

/// The byte `%XX` at `bytes[i]` stands for, refusing the escapes no path may carry.
fn decode_escape(bytes: &[u8], i: usize, offset: usize) -> Result<u8, PathError> {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
        return Err(PathError::InvalidEscape(offset + i));
    };
    let byte = (hi * 16 + lo) as u8;
    match byte {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::Backslash),
        b if b < 0x20 || b == 0x7f => Err(PathError::ControlChar),
        b => Ok(b),
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Raw bytes a path segment may carry as they are (RFC 3986 `pchar` minus `%` and `;`).
fn is_raw_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

/// Decodes unreserved escapes, upper-cases the others, encodes raw bytes a path may not carry.
fn decode_segment(segment: &str, offset: usize) -> Result<String, PathError> {
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let decoded = decode_escape(bytes, i, offset)?;
            if is_unreserved(decoded) {
                out.push(decoded as char);
            } else {
                let _ = write!(out, "%{decoded:02X}");
            }
            i += 3;
            continue;
        }
        check_raw(b)?;
        if is_raw_pchar(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        i += 1;
    }
    Ok(out)
}

/// Lexical normalization of a filesystem path from a tool argument: duplicate `/` collapsed,
/// `.` segments removed, `..` resolved against the segment before it — stopping at `/` for an
/// absolute path (`/../etc` is `/etc`, as the kernel reads it) and kept as a leading `..` for a
/// relative one. A trailing `/` is kept. Nothing is decoded: `%2e` and `;` are ordinary file name
/// characters. Symbolic links are not (and cannot be) resolved: `/proc/self/root/etc/passwd`
/// stays as it is, so policies refuse `/proc/*/root` themselves.
///
/// Returns the input unchanged (borrowed) when it is already normal.
pub fn normalize_fs_path(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        return Cow::Borrowed(path);
    }
    let absolute = path.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/') {
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                match segments.last() {
                    Some(&"..") | None if !absolute => segments.push(".."),
                    Some(&"..") | None => {}
                    Some(_) => {
                        segments.pop();
                    }
                }
                trailing_slash = true;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&segments.join("/"));
    if trailing_slash && !segments.is_empty() {
        out.push('/');
    }
    if out.is_empty() {
        out.push('.');
    }
    if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests;
