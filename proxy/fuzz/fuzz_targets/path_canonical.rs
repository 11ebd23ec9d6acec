//! Fuzzes request-path canonicalization (`palisade_proxy::route::canonical`).
//!
//! Beyond "never panics", for every accepted input: the canonical path starts with `/`, has no
//! `//`, `/./`, `/../`, no trailing dot segment, no raw `;` or `?`, is ASCII, and canonicalizes
//! to itself (query included). The filesystem normalization of tool arguments must be a fixed
//! point too, with no dot segment left in an absolute path.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_proxy::route::canonical::{canonicalize, normalize_fs_path};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = canonicalize(raw) {
        let p = c.path();
        assert!(p.starts_with('/'), "{p:?}");
        for bad in ["//", "/./", "/../", ";", "?"] {
            assert!(!p.contains(bad), "{raw:?} -> {p:?} contains {bad:?}");
        }
        assert!(!p.ends_with("/.") && !p.ends_with("/.."), "{p:?}");
        assert!(p.is_ascii(), "{p:?}");
        let again = canonicalize(p).expect("a canonical path is accepted");
        assert_eq!(again.path(), p);
        assert_eq!(canonicalize(&c.request_target()).as_ref(), Ok(&c));
    }
    let once = normalize_fs_path(raw).into_owned();
    assert!(
        !once.contains("//") && !once.contains("/./"),
        "{raw:?} -> {once:?}"
    );
    if once.starts_with('/') {
        assert!(!once.contains("/../") && !once.ends_with("/.."), "{once:?}");
    }
    assert_eq!(normalize_fs_path(&once), once.as_str());
});
