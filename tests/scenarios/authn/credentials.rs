//! Credentials other than a JWT: API keys from the keys file (as `x-api-key` or bearer), identity
//! headers from a trusted edge, and mTLS client certificates (optional and required).

use palisade_e2e::upstream;
use palisade_e2e::{client, Proxy, TestProxy};
use palisade_proxy::authn::apikey;
use serde_json::Value;

use super::{call, code, guarded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_from_the_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    let (mut record, token) = apikey::generate("ci-bot");
    record.roles = vec!["agent_operator".into()];
    let id = record.id.clone();
    let (mut revoked, revoked_token) = apikey::generate("old-bot");
    revoked.revoked = true;
    apikey::KeysFile {
        keys: vec![record, revoked],
    }
    .save(&file)
    .unwrap();
    let echo = upstream::echo().await;
    let proxy = guarded(
        &echo,
        &format!("  api_keys: {{file: \"{}\"}}\n", file.display()),
    );

    for with_header in [true, false] {
        let req = client().get(proxy.url("/"));
        let req = if with_header {
            req.header("x-api-key", &token)
        } else {
            req.bearer_auth(&token)
        };
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "x-api-key: {with_header}");
        let echoed: Value = resp.json().await.unwrap();
        assert_eq!(
            echoed["headers"]["x-palisade-principal"],
            format!("ApiKey::\"{id}\"")
        );
        assert_eq!(echoed["headers"]["x-palisade-roles"], "agent_operator");
        assert!(echoed["headers"].get("x-api-key").is_none());
    }
    let (status, body) = call(&proxy, "/", Some(&revoked_token)).await;
    assert_eq!((status, code(&body).as_str()), (401, "TOKEN_REVOKED"));
    let mut wrong = token.clone();
    wrong.push('x');
    assert_eq!(call(&proxy, "/", Some(&wrong)).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_identity_headers_only_from_trusted_networks() {
    let echo = upstream::echo().await;
    let build = |from: &str| {
        guarded(
            &echo,
            &format!("  trusted_headers: {{from: [\"{from}\"]}}\n"),
        )
    };
    let send = |proxy: &Proxy| {
        client()
            .get(proxy.url("/"))
            .header("x-user-id", "u-42")
            .header("x-user-role", "admin")
            .header("x-user-email", "u42@edge.test")
            .send()
    };
    let trusted = build("127.0.0.0/8");
    let resp = send(&trusted).await.unwrap();
    assert_eq!(resp.status(), 200);
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(
        echoed["headers"]["x-palisade-principal"],
        "User::\"edge|u-42\""
    );
    assert_eq!(echoed["headers"]["x-palisade-roles"], "admin");

    let untrusted = build("10.0.0.0/8");
    let resp = send(&untrusted).await.unwrap();
    assert_eq!(
        resp.status(),
        401,
        "spoofed edge headers from an untrusted peer are not an identity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_client_certificates_identify_services() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec![]).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "billing-agent");
    client_params.subject_alt_names.push(SanType::URI(
        "spiffe://acme.test/sa/billing".try_into().unwrap(),
    ));
    let client_cert = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (cert, key, ca_file) = (
        write("s.pem", server.pem()),
        write("s.key", server_key.serialize_pem()),
        write("ca.pem", ca.pem()),
    );
    let echo = upstream::echo().await;
    let start = |require: bool| {
        TestProxy::new()
            .listener_yaml(&format!(
                "    tls: {{cert: \"{cert}\", key: \"{key}\", client_ca: \"{ca_file}\", require_client_cert: {require}}}\n"
            ))
            .upstream("echo", echo.addr)
            .route("private", "/", "echo", "auth: required")
            .start()
    };
    let root = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let identity = reqwest::Identity::from_pem(
        format!("{}{}", client_cert.pem(), client_key.serialize_pem()).as_bytes(),
    )
    .unwrap();
    // GET / over TLS, presenting the client certificate or not.
    let get = |proxy: &Proxy, with_cert: bool| {
        let mut builder = palisade_e2e::client_builder()
            .add_root_certificate(root.clone())
            .resolve("localhost", proxy.addr());
        if with_cert {
            builder = builder.identity(identity.clone());
        }
        let url = format!("https://localhost:{}/", proxy.addr().port());
        builder.build().unwrap().get(url).send()
    };

    let optional = start(false);
    let resp = get(&optional, true).await.unwrap();
    assert_eq!(resp.status(), 200);
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(
        echoed["headers"]["x-palisade-principal"],
        "Service::\"spiffe://acme.test/sa/billing\""
    );
    let resp = get(&optional, false).await.unwrap();
    assert_eq!(resp.status(), 401, "no certificate, no other credential");

    let required = start(true);
    assert!(
        get(&required, false).await.is_err(),
        "handshake refused without a certificate"
    );
    assert_eq!(get(&required, true).await.unwrap().status(), 200);
}
