//! Test harness for Keyhole's end-to-end tests: starts real `keyhole server`
//! processes on loopback ports with their own data directories, runs the real
//! `keyhole` CLI against them, and connects fake agents over gRPC.

pub mod web_ui;
pub mod webdriver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use keyhole_proto::bearer::BearerToken;
use keyhole_proto::v1::agent_service_client::AgentServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// How long a server may take to start listening.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a test waits for something the server pushes (a breakpoint set,
/// a snapshot) before failing.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The `keyhole` binary: `KEYHOLE_BIN`, or the one cargo built beside this test.
pub fn keyhole_bin() -> PathBuf {
    match std::env::var_os("KEYHOLE_BIN") {
        Some(path) => path.into(),
        None => workspace_bin("keyhole"),
    }
}

/// A binary of this workspace, as cargo built it beside this test.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} does not exist: run the tests with `cargo test --workspace`, which builds it",
        bin.display()
    );
    bin
}

/// A child process that announced `listening on <address>` on stderr.
pub struct Listening {
    pub child: Child,
    pub addr: String,
    pub log: mpsc::Receiver<String>,
}

impl Listening {
    /// Starts `command` and waits for its address; its stderr is echoed with `tag`.
    pub fn spawn(mut command: Command, tag: &'static str) -> Listening {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {tag}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let (lines, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        let addr = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match log.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        break rest.split_whitespace().next().expect("address").to_owned();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("{tag} did not start listening within {STARTUP_TIMEOUT:?}");
                }
            }
        };
        Listening { child, addr, log }
    }

    /// Asks it to stop (SIGTERM) and waits up to `grace`, then kills it.
    pub fn terminate(mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The arguments of `keyhole break set` on `probe` of `service` for `session`, then `extra`.
pub fn break_set_args<'a>(
    service: &'a str,
    probe: &'a str,
    session: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "break",
        "set",
        "--service",
        service,
        "--probe",
        probe,
        "--session",
        session,
    ];
    args.extend_from_slice(extra);
    args
}

/// What one CLI run printed and how it exited.
#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// The run succeeded; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        &self.stdout
    }

    /// The run succeeded and printed JSON; returns it.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("output is not JSON ({e}): {self:#?}"))
    }

    /// The run failed with exit code 1 and one line on stderr containing each of `needles`.
    #[track_caller]
    pub fn refused(&self, needles: &[&str]) {
        assert_eq!(self.code, 1, "expected exit code 1: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        for needle in needles {
            assert!(
                lines[0].contains(needle),
                "stderr does not mention {needle:?}: {self:#?}"
            );
        }
        assert!(
            !self.stderr.contains("Status {"),
            "a debug dump leaked: {self:#?}"
        );
    }
}

/// A running `keyhole server` on a loopback port.
pub struct Server {
    process: Listening,
    pub addr: String,
    pub data_dir: PathBuf,
    pub admin_token: String,
}

impl Server {
    /// Starts a server with its data in `data_dir` (created if needed) on a free loopback port.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_at(data_dir, "127.0.0.1:0")
    }

    /// Starts a server listening on `listen` (`host:port`).
    pub fn start_at(data_dir: &Path, listen: &str) -> Server {
        let mut command = Command::new(keyhole_bin());
        command
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .env("KEYHOLE_LOG", "warn");
        let process = Listening::spawn(command, "server");
        let admin_token = std::fs::read_to_string(data_dir.join("admin.token"))
            .expect("admin token written on first start")
            .trim()
            .to_owned();
        Server {
            addr: process.addr.clone(),
            process,
            data_dir: data_dir.to_owned(),
            admin_token,
        }
    }

    /// Runs the CLI with the admin token.
    pub fn cli(&self, args: &[&str]) -> CliRun {
        self.cli_as(&self.admin_token, args)
    }

    /// Runs the CLI with `token`.
    pub fn cli_as(&self, token: &str, args: &[&str]) -> CliRun {
        let output = Command::new(keyhole_bin())
            .args(args)
            .env("KEYHOLE_ADDR", &self.addr)
            .env("KEYHOLE_TOKEN", token)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .output()
            .expect("run keyhole");
        CliRun {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// A token of `role`, created through the CLI.
    pub fn token(&self, role: &str) -> String {
        let created = self
            .cli(&["token", "create", "--role", role, "--name", role, "-o", "json"])
            .json();
        created["secret"].as_str().expect("secret").to_owned()
    }

    /// A gRPC agent client authenticated with `token`.
    pub async fn agent(&self, token: &str) -> AgentServiceClient<InterceptedService<Channel, BearerToken>> {
        let channel = Channel::from_shared(self.addr.clone())
            .expect("address")
            .connect()
            .await
            .expect("connect to the control plane");
        AgentServiceClient::with_interceptor(channel, BearerToken::new(token).expect("token"))
    }

    /// The `host:port` it listens on.
    pub fn listen_addr(&self) -> &str {
        self.addr.trim_start_matches("http://")
    }

    /// Stops the server with SIGKILL: no chance to flush anything.
    pub fn kill(self) {
        drop(self.process);
    }
}
