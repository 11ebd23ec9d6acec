use std::path::Path;

use super::Trust;

fn ca_pem() -> String {
    rcgen::generate_simple_self_signed(vec!["ca.test".into()])
        .unwrap()
        .cert
        .pem()
}

#[test]
fn default_is_the_web_roots_only() {
    let trust = Trust::default();
    assert!(trust.counts().web > 100, "{:?}", trust.counts());
    assert_eq!(trust.extra_roots(), 0);
    assert_eq!(trust.roots().len(), trust.counts().web);
}

#[test]
fn ca_file_and_ssl_cert_file_add_to_the_web_roots() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, format!("{}{}", ca_pem(), ca_pem())).unwrap();
    let single = dir.path().join("one.pem");
    std::fs::write(&single, ca_pem()).unwrap();
    let env_file = single.display().to_string();
    let trust = Trust::load(Some(("tls.ca_file", &bundle)), |k| {
        (k == "SSL_CERT_FILE").then(|| env_file.clone())
    })
    .unwrap();
    let c = trust.counts();
    assert_eq!((c.system, c.ca_file), (1, 2), "{c:?}");
    assert_eq!(trust.roots().len(), c.web + 3);
    assert_eq!(trust.extra_roots(), 3);
    assert!(trust.summary().contains("ca_file 2"), "{}", trust.summary());
    assert_eq!(
        trust.named_roots().len(),
        3,
        "what the operator named, no web roots"
    );
    let bundled = Trust::load(None, |_| None).unwrap();
    assert!(
        bundled.named_roots().is_empty(),
        "neither the web roots nor the distribution's bundle count as named"
    );
}

#[test]
fn ssl_cert_dir_loads_the_pem_files_in_it_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.pem"), ca_pem()).unwrap();
    std::fs::write(dir.path().join("5ad8a5d6.0"), ca_pem()).unwrap();
    std::fs::write(dir.path().join("README"), "not a certificate\n").unwrap();
    let path = dir.path().display().to_string();
    let trust = Trust::load(None, |k| (k == "SSL_CERT_DIR").then(|| path.clone())).unwrap();
    assert_eq!(trust.counts().system, 2);
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().display().to_string();
    let err = Trust::load(None, |k| (k == "SSL_CERT_DIR").then(|| path.clone())).unwrap_err();
    assert!(
        err.starts_with("SSL_CERT_DIR: ") && err.contains("holds no PEM certificate"),
        "{err}"
    );
}

#[test]
fn a_named_file_that_does_not_load_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = Trust::load(Some(("authentication.ca_file", &missing)), |_| None).unwrap_err();
    assert!(
        err.starts_with("authentication.ca_file: cannot read ") && err.contains("missing.pem"),
        "{err}"
    );
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "no certificates here\n").unwrap();
    let err = Trust::load(Some(("tracing.ca_file", &garbage)), |_| None).unwrap_err();
    assert!(err.contains("holds no PEM certificate"), "{err}");
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = Trust::load(Some(("tracing.ca_file", &broken)), |_| None).unwrap_err();
    assert!(err.starts_with("tracing.ca_file: "), "{err}");
    let env_file = garbage.display().to_string();
    let err = Trust::load(None, |k| (k == "SSL_CERT_FILE").then(|| env_file.clone())).unwrap_err();
    assert!(err.starts_with("SSL_CERT_FILE: "), "{err}");
}

#[test]
fn the_system_bundle_loads_when_no_variable_names_one() {
    // This machine's bundle (Debian's ca-certificates, which the test command's packages pull
    // in) is found the way OpenSSL finds it; an empty variable counts as unset.
    let trust = Trust::load(None, |_| Some(String::new())).unwrap();
    if Path::new("/etc/ssl/certs/ca-certificates.crt").exists()
        && std::env::var_os("SSL_CERT_FILE").is_none()
        && std::env::var_os("SSL_CERT_DIR").is_none()
    {
        assert!(trust.counts().system > 50, "{:?}", trust.counts());
    }
    assert!(trust.counts().web > 100);
}
