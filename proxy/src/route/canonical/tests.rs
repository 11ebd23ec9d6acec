//! Table and property tests of path canonicalization.

use proptest::prelude::*;

use super::*;

fn path(raw: &str) -> String {
    match canonicalize(raw) {
        Ok(c) => c.path().to_string(),
        Err(e) => panic!("{raw:?} refused: {e}"),
    }
}

#[test]
fn the_bypasses_of_issue_14_all_read_as_ops_admin() {
    for raw in [
        "/ops/./admin/x",
        "/ops/x/../admin/x",
        "/ops/%61dmin/x",
        "/ops/%61%64%6D%69%6E/x",
        "/ops/%2e/admin/x",
        "/ops/x/%2E%2E/admin/x",
        "//ops//admin/x",
        "/ops;v=1/admin/x",
        "/ops/admin;jsessionid=1/x",
        "/ops/x/..;/admin/x",
        "/ops/;x/admin/x",
    ] {
        assert_eq!(path(raw), "/ops/admin/x", "{raw}");
    }
    assert_eq!(path("//ops//admin"), "/ops/admin");
    assert_eq!(path("/ops;v=1/admin"), "/ops/admin");
}

#[test]
fn encoded_slash_backslash_controls_and_bad_escapes_are_refused() {
    let refused = |raw: &str| canonicalize(raw).expect_err(raw);
    assert_eq!(refused("/ops%2fadmin"), PathError::EncodedSlash);
    assert_eq!(refused("/ops%2Fadmin"), PathError::EncodedSlash);
    assert_eq!(refused("/ops;a=%2F/admin"), PathError::EncodedSlash);
    assert_eq!(refused("/ops\\admin"), PathError::Backslash);
    assert_eq!(refused("/ops%5cadmin"), PathError::Backslash);
    assert_eq!(refused("/ops%00admin"), PathError::ControlChar);
    assert_eq!(refused("/ops\tadmin"), PathError::ControlChar);
    assert_eq!(refused("/ops%7F"), PathError::ControlChar);
    assert_eq!(refused("/ops%zz"), PathError::InvalidEscape(4));
    assert_eq!(refused("/ops%4"), PathError::InvalidEscape(4));
    assert_eq!(refused("/a/b%"), PathError::InvalidEscape(4));
    assert_eq!(refused("/ops#frag"), PathError::Fragment);
    assert_eq!(refused("ops/admin"), PathError::NotOriginForm);
    assert_eq!(refused("*"), PathError::NotOriginForm);
}

#[test]
fn dot_dot_above_the_root_is_refused_not_clamped() {
    assert_eq!(canonicalize("/.."), Err(PathError::AboveRoot));
    assert_eq!(canonicalize("/../ops/admin"), Err(PathError::AboveRoot));
    assert_eq!(canonicalize("/a/../../ops"), Err(PathError::AboveRoot));
    assert_eq!(canonicalize("/%2e%2e/ops"), Err(PathError::AboveRoot));
    assert_eq!(path("/a/../ops"), "/ops");
}

#[test]
fn escapes_other_than_unreserved_stay_encoded_with_upper_case_hex() {
    assert_eq!(path("/a%3bb"), "/a%3Bb");
    assert_eq!(path("/a%3Fb"), "/a%3Fb");
    assert_eq!(path("/%25%7e%41"), "/%25~A");
    assert_eq!(path("/caf%c3%a9"), "/caf%C3%A9");
    assert_eq!(path("/café"), "/caf%C3%A9");
    assert_eq!(path("/a b/{x}|y"), "/a%20b/%7Bx%7D%7Cy");
    assert_eq!(path("/a:b@c!$&'()*+,="), "/a:b@c!$&'()*+,=");
}

#[test]
fn matching_stays_case_sensitive() {
    assert_eq!(path("/Ops/ADMIN"), "/Ops/ADMIN");
    assert_ne!(path("/Ops/admin"), path("/ops/admin"));
}

#[test]
fn trailing_slashes_and_the_root() {
    assert_eq!(path(""), "/");
    assert_eq!(path("/"), "/");
    assert_eq!(path("//"), "/");
    assert_eq!(path("/."), "/");
    assert_eq!(path("/ops/"), "/ops/");
    assert_eq!(path("/ops"), "/ops");
    assert_eq!(path("/ops//"), "/ops/");
    assert_eq!(path("/a/b/.."), "/a/");
    assert_eq!(path("/a/b/."), "/a/b/");
    assert_eq!(path("/a/./b"), "/a/b");
}

#[test]
fn the_query_is_kept_untouched_and_separate() {
    let c = canonicalize("/ops/./admin?x=%2F..%2f&y=/../#z").unwrap();
    assert_eq!(c.path(), "/ops/admin");
    assert_eq!(c.query(), Some("x=%2F..%2f&y=/../#z"));
    assert_eq!(c.request_target(), "/ops/admin?x=%2F..%2f&y=/../#z");
    assert_eq!(canonicalize("/a?").unwrap().query(), Some(""));
    assert_eq!(canonicalize("/a").unwrap().query(), None);
    assert_eq!(canonicalize("?q").unwrap().path(), "/");
}

#[test]
fn filesystem_paths_lose_dot_segments_and_duplicate_slashes() {
    let n = |p: &str| normalize_fs_path(p).into_owned();
    assert_eq!(n("//etc/passwd"), "/etc/passwd");
    assert_eq!(n("/tmp/../etc/passwd"), "/etc/passwd");
    assert_eq!(n("/tmp/./../../../etc//shadow"), "/etc/shadow");
    assert_eq!(n("/../etc"), "/etc");
    assert_eq!(n("/etc/x/.."), "/etc/");
    assert_eq!(
        n("/proc/self/root/etc/passwd"),
        "/proc/self/root/etc/passwd"
    );
    assert_eq!(n("data/../../etc"), "../etc");
    assert_eq!(n("./a"), "a");
    assert_eq!(n("."), ".");
    assert_eq!(n(""), "");
    // Not a URL: nothing is decoded, `;` is part of a name.
    assert_eq!(n("/a%2e%2e/b;c"), "/a%2e%2e/b;c");
    assert!(matches!(normalize_fs_path("/data/x.txt"), Cow::Borrowed(_)));
}

fn path_like() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("/./".to_string()),
        Just("/../".to_string()),
        Just(";".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just("%61".to_string()),
        Just("%3b".to_string()),
        Just("%25".to_string()),
        Just("%2f".to_string()),
        Just("%".to_string()),
        Just("?".to_string()),
        "[a-zA-Z0-9._~!$&'()*+,=:@ {}|^-]{1,4}",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(atom, 0..16).prop_map(|atoms| format!("/{}", atoms.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn canonical_paths_are_a_fixed_point(raw in path_like()) {
        if let Ok(c) = canonicalize(&raw) {
            let p = c.path();
            prop_assert!(p.starts_with('/'));
            prop_assert!(!p.contains("//"), "{p}");
            prop_assert!(!p.contains("/./"), "{p}");
            prop_assert!(!p.contains("/../"), "{p}");
            prop_assert!(!p.ends_with("/.") && !p.ends_with("/.."), "{p}");
            prop_assert!(!p.contains(';') && !p.contains('?'), "{p}");
            prop_assert!(p.is_ascii(), "{p}");
            let again = canonicalize(p).map_err(|e| TestCaseError::fail(format!("{p}: {e}")))?;
            prop_assert_eq!(again.path(), p);
            prop_assert_eq!(canonicalize(&c.request_target()).unwrap(), c);
        }
    }

    #[test]
    fn filesystem_normalization_is_a_fixed_point(raw in path_like()) {
        let once = normalize_fs_path(&raw).into_owned();
        prop_assert!(!once.contains("//") && !once.contains("/./"), "{once}");
        if once.starts_with('/') {
            prop_assert!(!once.contains("/../") && !once.ends_with("/.."), "{once}");
        }
        prop_assert_eq!(normalize_fs_path(&once).into_owned(), once.clone());
    }
}
