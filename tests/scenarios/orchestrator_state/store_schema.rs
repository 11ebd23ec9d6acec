//! The session store's schema, retention and TLS against a real PostgreSQL (and retention on a
//! SQLite file too): an old `CREATE IF NOT EXISTS` database upgrades with its data, a newer one is
//! refused, runs are swept by age and count, events are capped per run, and `sslmode` is honoured
//! against a server whose certificate comes from a CA made here.

use std::sync::Arc;
use std::time::Duration;

use palisade_e2e::postgres::{PostgresServer, ServerTls};
use palisade_orchestrator::store::{
    self, RetentionConfig, RunRecord, RunStatus, SessionStore, StoreConfig, StoreError, Swept,
};
use palisade_orchestrator::tls::{TlsConfig, Trust};
use time::OffsetDateTime;

/// The layout the store created before versioned migrations (what a database from that time
/// holds, byte for byte).
const OLD_POSTGRES_LAYOUT: &str = "
CREATE TABLE IF NOT EXISTS palisade_threads (
    thread_id   TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS palisade_runs (
    run_id        TEXT PRIMARY KEY,
    thread_id     TEXT NOT NULL REFERENCES palisade_threads(thread_id),
    principal     TEXT,
    status        TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    finished_at   BIGINT,
    tool_calls    TEXT NOT NULL,
    final_message TEXT,
    error         TEXT,
    events        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS palisade_runs_by_thread ON palisade_runs(thread_id, started_at);
";

async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// The error opening `cfg` (a store that opens is a test failure).
async fn open_err(cfg: &StoreConfig, trust: &Trust) -> StoreError {
    match store::open(cfg, trust).await {
        Ok(_) => panic!("{cfg:?} opened"),
        Err(e) => e,
    }
}

fn no_trust() -> Trust {
    Trust::default()
}

async fn start_pg() -> PostgresServer {
    tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .unwrap()
}

/// A run that started `ago` before `now`, finished, with `events` events.
fn run_at(id: &str, thread: &str, now: OffsetDateTime, ago: Duration) -> RunRecord {
    let mut run = RunRecord::started(id, thread, None);
    run.started_at = now - ago;
    run.events = vec![r#"{"type":"RUN_STARTED"}"#.into()];
    run.finish_with_message("ok");
    run.finished_at = Some(run.started_at + Duration::from_millis(5));
    run
}

/// Age, then count, then empty threads; batches past the delete batch size; the event cap.
async fn retention_conformance(store: Arc<dyn SessionStore>) {
    let now = OffsetDateTime::now_utc();
    let day = Duration::from_secs(86_400);
    // 1,100 runs past 30 days (more than one delete batch), spread over two threads.
    let old: Vec<_> = (0..1_100)
        .map(|i| {
            let store = Arc::clone(&store);
            let thread = if i % 2 == 0 {
                "thread-old"
            } else {
                "thread-mixed"
            };
            let run = run_at(
                &format!("old-{i:04}"),
                thread,
                now,
                day * 31 + Duration::from_secs(i),
            );
            tokio::spawn(async move { store.finish_run(&run).await.unwrap() })
        })
        .collect();
    for task in old {
        task.await.unwrap();
    }
    // Five recent runs, newest first: new-0 a minute ago … new-4 five minutes ago.
    for i in 0..5u64 {
        let thread = if i == 4 { "thread-mixed" } else { "thread-new" };
        let run = run_at(
            &format!("new-{i}"),
            thread,
            now,
            Duration::from_secs(60 * (i + 1)),
        );
        store.finish_run(&run).await.unwrap();
    }
    let retention = RetentionConfig {
        max_age: day * 30,
        max_runs: 3,
        ..RetentionConfig::default()
    };
    let swept = store.sweep(&retention, now).await.unwrap();
    // 1,100 by age, new-3 and new-4 by count; thread-old and thread-mixed are left empty.
    assert_eq!(
        swept,
        Swept {
            runs: 1_102,
            threads: 2
        }
    );
    for gone in ["old-0000", "old-1099", "new-3", "new-4"] {
        assert!(store.run(gone).await.unwrap().is_none(), "{gone}");
    }
    assert!(store.thread("thread-old").await.unwrap().is_none());
    assert!(store.thread("thread-mixed").await.unwrap().is_none());
    let kept = store.thread("thread-new").await.unwrap().unwrap();
    let ids: Vec<_> = kept.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["new-2", "new-1", "new-0"]);
    // Nothing more to do.
    assert_eq!(
        store.sweep(&retention, now).await.unwrap(),
        Swept::default()
    );
    // A run is not an age victim one microsecond before its time.
    let edge = run_at(
        "edge",
        "thread-new",
        now,
        day * 30 - Duration::from_millis(1),
    );
    store.finish_run(&edge).await.unwrap();
    let wide = RetentionConfig {
        max_runs: 100,
        ..retention.clone()
    };
    assert_eq!(store.sweep(&wide, now).await.unwrap(), Swept::default());
    assert!(store.run("edge").await.unwrap().is_some());

    // The event cap (3 in these stores): a longer run keeps its first 3 and says so.
    let mut long = RunRecord::started("long", "thread-new", None);
    long.events = (0..5).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    long.finish_with_message("done");
    store.finish_run(&long).await.unwrap();
    let read = store.run("long").await.unwrap().unwrap();
    assert_eq!(read.events, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
    assert!(read.events_truncated);
    assert_eq!(read.status, RunStatus::Finished);
    assert_eq!(store.max_events_per_run(), 3);
}

fn capped() -> RetentionConfig {
    RetentionConfig {
        max_events_per_run: 3,
        ..RetentionConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_retention_deletes_by_age_and_count_and_caps_events() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::sqlite(dir.path().join("sessions.db")).with_retention(capped());
    retention_conformance(store::open(&cfg, &no_trust()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_retention_deletes_by_age_and_count_and_caps_events() {
    let pg = start_pg().await;
    let cfg = StoreConfig::postgres(pg.url()).with_retention(capped());
    retention_conformance(store::open(&cfg, &no_trust()).await.unwrap()).await;
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_old_layout_upgrades_with_its_data_and_newer_schemas_are_refused() {
    let pg = start_pg().await;
    // A database written by the version before migrations: tables, a thread, a run.
    let db = raw(&pg.url()).await;
    db.batch_execute(OLD_POSTGRES_LAYOUT).await.unwrap();
    db.batch_execute(
        "INSERT INTO palisade_threads VALUES ('t-old', 1700000000000000, 1700000000500000);
         INSERT INTO palisade_runs VALUES ('r-old', 't-old', 'alice', 'finished',
           1700000000000000, 1700000000500000,
           '[{\"id\":\"c1\",\"name\":\"get_time\",\"arguments\":\"{}\",\"result\":\"noon\"}]',
           'It is noon.', NULL, '[\"{\\\"type\\\":\\\"RUN_STARTED\\\"}\"]');",
    )
    .await
    .unwrap();

    // Two replicas start together: one migrates, the other waits on the lock and finds it done.
    let cfg = StoreConfig::postgres(pg.url());
    let trust = no_trust();
    let (a, b) = tokio::join!(store::open(&cfg, &trust), store::open(&cfg, &trust));
    let (sessions, _) = (a.unwrap(), b.unwrap());
    let run = sessions.run("r-old").await.unwrap().expect("old run kept");
    assert_eq!(run.principal.as_deref(), Some("alice"));
    assert_eq!(run.final_message.as_deref(), Some("It is noon."));
    assert_eq!(run.tool_calls[0].result.as_deref(), Some("noon"));
    assert_eq!(run.events, [r#"{"type":"RUN_STARTED"}"#]);
    assert!(!run.events_truncated);
    assert_eq!(run.started_at.unix_timestamp(), 1_700_000_000);
    let versions: Vec<(i64, String)> = db
        .query(
            "SELECT version, name FROM palisade_schema_version ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        versions,
        [(1, "0001_sessions".into()), (2, "0002_retention".into())]
    );
    // New writes use the new column.
    let mut fresh = RunRecord::started("r-new", "t-old", None);
    fresh.finish_with_message("hi");
    sessions.finish_run(&fresh).await.unwrap();
    assert_eq!(
        sessions.thread("t-old").await.unwrap().unwrap().runs.len(),
        2
    );

    // A newer binary migrated the database further: this one refuses to start on it.
    db.execute(
        "INSERT INTO palisade_schema_version VALUES (3, '0003_from_the_future', 0)",
        &[],
    )
    .await
    .unwrap();
    let err = open_err(&cfg, &trust).await;
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 3, known: 2 }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("schema version 3, newer than this binary knows (2)"),
        "{err}"
    );
    drop(pg);
}

/// A CA named `ca_name` and a server certificate for `127.0.0.1` (and `db.test`) signed by it.
struct TestPki {
    ca_pem: String,
    server: ServerTls,
}

fn make_pki(ca_name: &str, hba_first: Vec<String>) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "db.test".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        server: ServerTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            hba_first,
        },
    }
}

fn trusting(dir: &std::path::Path, name: &str, pem: &str) -> Trust {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    palisade_orchestrator::tls::trust(
        &TlsConfig {
            ca_file: Some(path),
        },
        |_| None,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_modes_verify_the_server_against_the_orchestrator_trust() {
    // `scram` logs in with a password (SCRAM with channel binding); everyone else by trust.
    let pki = make_pki(
        "palisade test CA",
        vec!["hostssl all scram 127.0.0.1/32 scram-sha-256".into()],
    );
    let server = pki.server;
    let pg = tokio::task::spawn_blocking(move || PostgresServer::start_tls(&server))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ours = trusting(dir.path(), "ca.pem", &pki.ca_pem);
    let other = trusting(
        dir.path(),
        "other.pem",
        &make_pki("another CA", vec![]).ca_pem,
    );
    let url = |host: &str, mode: &str| {
        format!(
            "host={host} port={} user=palisade dbname=postgres connect_timeout=5 sslmode={mode}",
            pg.port
        )
    };
    let works = |store: Arc<dyn SessionStore>| async move {
        let mut run = RunRecord::started("tls-run", "tls-thread", None);
        run.finish_with_message("over TLS");
        store.finish_run(&run).await.unwrap();
        assert!(store.run("tls-run").await.unwrap().is_some());
    };

    // The server takes TCP over TLS only: with TLS off, every call fails.
    let plain = store::open(&StoreConfig::postgres(url("127.0.0.1", "disable")), &ours)
        .await
        .expect("an unreachable/refusing database does not stop the start");
    let err = plain.run("x").await.unwrap_err().to_string();
    assert!(err.contains("no encryption"), "{err}");

    // verify-full with the CA that issued the certificate, for the host in the URL.
    let full = StoreConfig::postgres(url("127.0.0.1", "verify-full"));
    works(store::open(&full, &ours).await.unwrap()).await;

    // verify-full with another CA: refused at start, and the error says why and where to look.
    let err = open_err(&full, &other).await;
    let text = err.to_string();
    assert!(matches!(err, StoreError::Tls(_)), "{err:?}");
    assert!(text.contains("sslmode=verify-full"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(text.contains("tls.ca_file"), "{text}");
    // … and without any extra CA (web roots only) just the same.
    assert!(matches!(
        store::open(&full, &no_trust()).await,
        Err(StoreError::Tls(_))
    ));

    // The right CA but a host the certificate does not name: verify-full refuses, verify-ca
    // (chain only) accepts. `localhost` reaches the same server.
    let err = open_err(
        &StoreConfig::postgres(url("localhost", "verify-full")),
        &ours,
    )
    .await;
    assert!(
        err.to_string().contains("not valid for name \"localhost\""),
        "{err}"
    );
    works(
        store::open(&StoreConfig::postgres(url("localhost", "verify-ca")), &ours)
            .await
            .unwrap(),
    )
    .await;

    // verify-ca skips the name check, so it trusts only CAs the operator named: with the web
    // roots and the system bundle alone (any public CA would vouch for any server) it is refused.
    let err = open_err(
        &StoreConfig::postgres(url("localhost", "verify-ca")),
        &no_trust(),
    )
    .await;
    assert!(
        err.to_string()
            .contains("sslmode=verify-ca trusts only the CA"),
        "{err}"
    );

    // require and prefer encrypt without checking the certificate (libpq's meaning).
    for mode in ["require", "prefer"] {
        works(
            store::open(&StoreConfig::postgres(url("127.0.0.1", mode)), &other)
                .await
                .unwrap(),
        )
        .await;
    }

    // SCRAM-SHA-256-PLUS: channel binding to the server certificate, required by the client.
    // The role is made with psql over the unix socket (TCP takes TLS only).
    let role = tokio::task::spawn_blocking({
        let dir = pg.dir().to_owned();
        let port = pg.port;
        move || create_scram_role(&dir, port)
    })
    .await
    .unwrap();
    assert!(role, "CREATE ROLE scram over the unix socket");
    let bound = format!(
        "host=127.0.0.1 port={} user=scram password=s3cret dbname=postgres sslmode=verify-full \
         channel_binding=require",
        pg.port
    );
    works(
        store::open(&StoreConfig::postgres(bound), &ours)
            .await
            .unwrap(),
    )
    .await;
    let wrong = format!(
        "host=127.0.0.1 port={} user=scram password=wrong dbname=postgres sslmode=verify-full",
        pg.port
    );
    let late = store::open(&StoreConfig::postgres(wrong), &ours)
        .await
        .unwrap();
    let err = late.run("x").await.unwrap_err().to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    drop(pg);
}

/// Creates the superuser `scram` (password `s3cret`) with `psql` over the server's unix socket
/// in `dir` (trusted by `local all all trust`).
fn create_scram_role(dir: &std::path::Path, port: u16) -> bool {
    let psql = palisade_e2e::postgres::postgres_bin_dir().join("psql");
    let out = std::process::Command::new(psql)
        .args(["-h"])
        .arg(dir)
        .args([
            "-p",
            &port.to_string(),
            "-U",
            "palisade",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE ROLE scram LOGIN SUPERUSER PASSWORD 's3cret'",
        ])
        .output()
        .expect("psql runs");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}
