//! The canonical JSON of an [`AuditRecord`], written for the writer thread without serde's
//! per-key work.
//!
//! `serde_json` escapes every key at run time and scans every string byte by byte through its
//! escape table; [`write`] writes the keys as literals and copies a string whole when no byte
//! of it needs escaping (the usual case), and leaves the rest — numbers, nested parts, strings
//! that do need escaping — to `serde_json` itself, so the bytes are the same. The derived
//! `Serialize` stays the definition: debug builds compare every sealed line with it, and a unit
//! test does for a record with every part filled. A field added to [`AuditRecord`] goes here
//! too, in the same (byte) order.

use serde::Serialize;

use super::AuditRecord;

/// Appends the record's JSON to `out`, as `serde_json::to_writer` would write it, and returns
/// the offset in `out` of `,"method":` — where `hash`, absent while the record is sealed, goes.
pub fn write(r: &AuditRecord, out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(b"{\"action\":");
    opt_string(out, r.action.as_deref());
    if let Some(approval) = &r.approval {
        out.extend_from_slice(b",\"approval\":");
        value(out, approval);
    }
    out.extend_from_slice(b",\"bytes_in\":");
    value(out, &r.bytes_in);
    out.extend_from_slice(b",\"bytes_out\":");
    value(out, &r.bytes_out);
    out.extend_from_slice(b",\"client_ip\":");
    opt_string(out, r.client_ip.as_deref());
    out.extend_from_slice(b",\"config_hash\":");
    string(out, &r.config_hash);
    out.extend_from_slice(b",\"decision\":");
    value(out, &r.decision);
    out.extend_from_slice(b",\"duration_ms\":");
    value(out, &r.duration_ms);
    out.extend_from_slice(b",\"error_code\":");
    opt_string(out, r.error_code);
    out.extend_from_slice(b",\"guardrails\":");
    value(out, &r.guardrails);
    if let Some(hash) = &r.hash {
        out.extend_from_slice(b",\"hash\":");
        string(out, hash);
    }
    let method_at = out.len();
    out.extend_from_slice(b",\"method\":");
    string(out, &r.method);
    out.extend_from_slice(b",\"path\":");
    string(out, &r.path);
    out.extend_from_slice(b",\"prev_hash\":");
    string(out, &r.prev_hash);
    out.extend_from_slice(b",\"principal\":");
    value(out, &r.principal);
    out.extend_from_slice(b",\"rate_limit\":");
    string(out, r.rate_limit);
    out.extend_from_slice(b",\"reason\":");
    string(out, r.reason);
    out.extend_from_slice(b",\"request_id\":");
    string(out, &r.request_id);
    out.extend_from_slice(b",\"resource\":");
    opt_string(out, r.resource.as_deref());
    out.extend_from_slice(b",\"route\":");
    opt_string(out, r.route.as_deref());
    out.extend_from_slice(b",\"seq\":");
    value(out, &r.seq);
    out.extend_from_slice(b",\"status\":");
    value(out, &r.status);
    out.extend_from_slice(b",\"stream\":");
    value(out, &r.stream);
    out.extend_from_slice(b",\"timestamp\":");
    string(out, &r.timestamp);
    out.extend_from_slice(b",\"tool_calls\":");
    value(out, &r.tool_calls);
    if !r.tool_integrity.is_empty() {
        out.extend_from_slice(b",\"tool_integrity\":");
        value(out, &r.tool_integrity);
    }
    out.extend_from_slice(b",\"trace_id\":");
    string(out, &r.trace_id);
    out.extend_from_slice(b",\"upstream_status\":");
    value(out, &r.upstream_status);
    out.push(b'}');
    method_at
}

/// A JSON string: copied whole between quotes when no byte needs escaping (a control character,
/// `"` or `\`; serde_json escapes nothing else), else written by serde_json.
fn string(out: &mut Vec<u8>, s: &str) {
    // A fold without an early exit: the compiler checks many bytes at once.
    let escapes = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escapes {
        value(out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Anything else, written by serde_json.
fn value(out: &mut Vec<u8>, v: &(impl Serialize + ?Sized)) {
    // Writing into a Vec cannot fail, and these types have no map keys that are not strings.
    let _ = serde_json::to_writer(&mut *out, v);
}
