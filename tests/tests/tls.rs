//! TLS end to end: a `keyhole server` given a certificate from a test CA made
//! here, the CLI and a real agent reaching it over `https://` with that CA,
//! clients that do not trust it refused with one line, and the web UI over
//! https on the same port.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyhole::{Agent, AgentError, TrustedSession};
use keyhole_tests::{break_set_args, keyhole_bin, wait_until, CliRun, Server, PUSH_TIMEOUT};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A test CA, a server certificate it signed for `localhost` and
/// `127.0.0.1`, and a second CA that signed nothing, as PEM files.
struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    fn new() -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let ca = certificate_authority("Keyhole test CA");
        let other_ca = certificate_authority("Some other CA");
        let server_key = KeyPair::generate().unwrap();
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        server.distinguished_name.push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &ca).unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.pem", ca.pem());
        write("other-ca.pem", other_ca.pem());
        write("server.pem", server_cert.pem());
        write("server.key", server_key.serialize_pem());
        write("unrelated.key", KeyPair::generate().unwrap().serialize_pem());
        write("not-pem.txt", "this is not a certificate\n".to_owned());
        TestPki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `--tls-cert` and `--tls-key` arguments of `keyhole server`.
    fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path("server.pem").display().to_string(),
            "--tls-key".into(),
            self.path("server.key").display().to_string(),
        ]
    }

    /// A server over TLS with its data in `data_dir`.
    fn start_server(&self, data_dir: &Path) -> Server {
        let args = self.server_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start_with(data_dir, "127.0.0.1:0", &args);
        assert!(
            server.addr.starts_with("https://127.0.0.1:"),
            "the server announces https: {}",
            server.addr
        );
        server
    }
}

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Runs the CLI against `addr` with `token`, `env` added to its environment.
fn cli_at(addr: &str, token: &str, env: &[(&str, &Path)], args: &[&str]) -> CliRun {
    let output = Command::new(keyhole_bin())
        .args(args)
        .env("KEYHOLE_ADDR", addr)
        .env("KEYHOLE_TOKEN", token)
        .env_remove("KEYHOLE_CA_FILE")
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run keyhole");
    finished(output)
}

fn finished(output: Output) -> CliRun {
    CliRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `keyhole server` with `args`, expecting it to refuse to start.
fn server_refusing(data_dir: &Path, args: &[&str]) -> CliRun {
    let mut child = Command::new(keyhole_bin())
        .arg("server")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_remove("KEYHOLE_TLS_CERT")
        .env_remove("KEYHOLE_TLS_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keyhole server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("keyhole server {args:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    finished(child.wait_with_output().unwrap())
}

#[test]
fn the_cli_reaches_a_tls_server_only_when_it_trusts_the_ca_that_signed_it() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let server = pki.start_server(dir.path());
    let ca = pki.path("ca.pem");
    let token = &server.admin_token;

    let listed = server.cli(&["services", "list", "--ca-file", ca.to_str().unwrap()]);
    assert!(listed.ok().contains("no services"), "{listed:?}");
    let by_env = cli_at(
        &server.addr,
        token,
        &[("KEYHOLE_CA_FILE", &ca)],
        &["session", "list"],
    );
    by_env.ok();

    let untrusted = server.cli(&["services", "list"]);
    // Not the system's roots either (or none on this system): one line, the way out named.
    untrusted.refused(&["certificate", "--ca-file", "KEYHOLE_CA_FILE"]);

    let other_ca = pki.path("other-ca.pem");
    let other = server.cli(&["services", "list", "--ca-file", other_ca.to_str().unwrap()]);
    other.refused(&["the CA file", other_ca.to_str().unwrap(), "does not validate"]);

    let missing = pki.path("missing.pem");
    let unreadable = server.cli(&["services", "list", "--ca-file", missing.to_str().unwrap()]);
    unreadable.refused(&["cannot read the CA file", missing.to_str().unwrap()]);
    let not_pem = pki.path("not-pem.txt");
    let invalid = server.cli(&["services", "list", "--ca-file", not_pem.to_str().unwrap()]);
    invalid.refused(&[not_pem.to_str().unwrap(), "holds no PEM certificate"]);

    let plain_addr = server.addr.replacen("https://", "http://", 1);
    let plain = cli_at(&plain_addr, token, &[], &["services", "list"]);
    plain.refused(&[&plain_addr, "https://"]);
    let ca_over_plain = cli_at(
        &plain_addr,
        token,
        &[("KEYHOLE_CA_FILE", &ca)],
        &["services", "list"],
    );
    ca_over_plain.refused(&["not https://"]);
}

#[test]
fn the_server_refuses_to_start_with_tls_files_it_cannot_use_and_names_them() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| pki.path(name).display().to_string();
    let (cert, key) = (path("server.pem"), path("server.key"));

    let alone = server_refusing(dir.path(), &["--tls-cert", &cert]);
    assert_eq!(alone.code, 2, "a usage error: {alone:#?}");
    assert!(alone.stderr.contains("--tls-key"), "{alone:#?}");
    let alone = server_refusing(dir.path(), &["--tls-key", &key]);
    assert_eq!(alone.code, 2, "a usage error: {alone:#?}");
    assert!(alone.stderr.contains("--tls-cert"), "{alone:#?}");

    let missing = path("missing.pem");
    let unreadable = server_refusing(dir.path(), &["--tls-cert", &missing, "--tls-key", &key]);
    unreadable.refused(&["cannot read the TLS certificate", &missing]);
    let not_pem = path("not-pem.txt");
    let no_cert = server_refusing(dir.path(), &["--tls-cert", &not_pem, "--tls-key", &key]);
    no_cert.refused(&[&not_pem, "holds no PEM certificate"]);
    let no_key = server_refusing(dir.path(), &["--tls-cert", &cert, "--tls-key", &not_pem]);
    no_key.refused(&[&not_pem, "holds no PEM private key"]);
    let unrelated = path("unrelated.key");
    let mismatched = server_refusing(dir.path(), &["--tls-cert", &cert, "--tls-key", &unrelated]);
    mismatched.refused(&[&cert, &unrelated]);
    assert!(
        !dir.path().join("admin.token").exists(),
        "nothing is created before the certificate is checked"
    );
}

/// A TLS client trusting the test CA and offering `alpn`, connected to `server`.
async fn tls_connect(
    pki: &TestPki,
    server: &Server,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let ca = CertificateDer::from_pem_file(pki.path("ca.pem")).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ca).unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(server.addr.trim_start_matches("https://"))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("the TLS handshake succeeds with the test CA")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_answers_over_https_on_the_grpc_port_with_h2_and_http1_offered_and_signs_in_with_a_secure_cookie(
) {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let server = pki.start_server(dir.path());

    let h2 = tls_connect(&pki, &server, &[b"h2", b"http/1.1"]).await;
    assert_eq!(
        h2.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "gRPC gets HTTP/2"
    );
    drop(h2);

    for page in ["/healthz", "/login"] {
        let mut http1 = tls_connect(&pki, &server, &[b"http/1.1"]).await;
        assert_eq!(http1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let request = format!("GET {page} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        http1.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        // The server may close without a TLS close_notify; what was read is kept.
        let _ = http1.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{page}: {answer}");
        let expected = if page == "/healthz" {
            "ok"
        } else {
            "name=\"token\""
        };
        assert!(answer.contains(expected), "{page}: {answer}");
    }

    let mut http1 = tls_connect(&pki, &server, &[b"http/1.1"]).await;
    let form = format!("token={}", server.admin_token);
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    http1.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = http1.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    let cookie = answer
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("signing in sets the cookie: {answer}"));
    assert!(
        cookie.contains("keyhole_token=") && cookie.contains("; Secure"),
        "over TLS the sign-in cookie is Secure: {cookie}"
    );
}

#[inline(never)]
fn pay(order_id: u64, amount_cents: u64) {
    keyhole::probe!("tls.pay", order_id, amount_cents);
}

#[test]
fn an_agent_over_tls_registers_receives_a_breakpoint_and_uploads_its_snapshot() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let server = pki.start_server(dir.path());
    let ca = pki.path("ca.pem");
    let ca_arg = ca.to_str().unwrap();
    let with_ca = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend(["--ca-file", ca_arg, "-o", "json"]);
        server.cli(&args).json()
    };

    let agent_token = with_ca(&["token", "create", "--role", "agent"])["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = Agent::builder()
        .service("payments")
        .address(server.addr.clone())
        .ca_file(&ca)
        .token(agent_token)
        .instance_id("payments-tls")
        .init()
        .expect("the agent starts");
    assert!(
        wait_until(PUSH_TIMEOUT, || agent.has_session_keys()),
        "the agent registers over TLS"
    );
    let opened = with_ca(&["session", "open", "--name", "tls"]);
    let session_id = opened["id"].as_str().unwrap();
    let session = TrustedSession::from_token(opened["token"].as_str().unwrap()).expect("token verifies");
    let breakpoint = with_ca(&break_set_args("payments", "tls.pay", session_id, &[]))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        wait_until(PUSH_TIMEOUT, || agent
            .installed_breakpoints()
            .contains(&breakpoint)),
        "the breakpoint reaches the agent over TLS"
    );

    {
        let _session = session.attach();
        pay(7, 4_200);
    }
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(agent.shutdown());
    assert_eq!(report.uploaded, 1, "the snapshot went up over TLS: {report:?}");

    let listed = with_ca(&["snapshots", "list", "--session", session_id]);
    let snapshots = listed.as_array().unwrap();
    assert_eq!(snapshots.len(), 1, "{listed:#}");
    assert_eq!(snapshots[0]["breakpoint_id"], breakpoint.as_str());
}

#[test]
fn an_agent_refuses_at_init_a_ca_file_it_cannot_use() {
    let pki = TestPki::new();
    let start = |address: &str, ca: &Path| {
        Agent::builder()
            .service("payments")
            .token("kh_0000_ffff")
            .address(address)
            .ca_file(ca)
            .init()
            .map(drop)
            .unwrap_err()
    };
    let missing = pki.path("missing.pem");
    let error = start("https://127.0.0.1:1", &missing);
    assert!(matches!(error, AgentError::Tls(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(missing.to_str().unwrap()), "{message}");
    assert!(message.contains("KEYHOLE_CA_FILE"), "{message}");

    let not_pem = pki.path("not-pem.txt");
    let message = start("https://127.0.0.1:1", &not_pem).to_string();
    assert!(message.contains("holds no PEM certificate"), "{message}");

    let message = start("http://127.0.0.1:1", &pki.path("ca.pem")).to_string();
    assert!(message.contains("not https://"), "{message}");
}
