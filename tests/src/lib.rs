//! Test harness for Keyhole's end-to-end tests: starts real `keyhole server`
//! processes on loopback ports with their own data directories, runs the real
//! `keyhole` CLI against them, and connects fake agents over gRPC.

pub mod load;
pub mod proxy;
pub mod scale;
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
        self.stop(grace);
    }

    /// Asks it to stop (SIGTERM) and waits up to `grace` for it to exit.
    fn stop(&mut self, grace: Duration) {
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

/// The two shop services, started from `binary(name)` with agents that report
/// to `server` with `agent_token`: `(inventory, frontend)`, the frontend calling
/// the inventory. Each is listening when this returns (registration is the
/// caller's to await).
pub fn spawn_shop(
    server: &Server,
    agent_token: &str,
    binary: impl Fn(&str) -> PathBuf,
) -> (Listening, Listening) {
    spawn_shop_with(server, agent_token, |name| Command::new(binary(name)))
}

/// [`spawn_shop`], each service started by the command `program(name)` makes (the binary itself, or a
/// tool that runs it), given the services' arguments and environment here.
pub fn spawn_shop_with(
    server: &Server,
    agent_token: &str,
    program: impl Fn(&str) -> Command,
) -> (Listening, Listening) {
    let service = |name: &str, args: &[&str]| {
        let mut command = program(name);
        command
            .args(args)
            .env("KEYHOLE_ADDR", &server.addr)
            .env("KEYHOLE_TOKEN", agent_token)
            .env_remove("KEYHOLE_SERVICE");
        command
    };
    let inventory = Listening::spawn(
        service("shop-inventory", &["--listen", "127.0.0.1:0"]),
        "inventory",
    );
    let frontend = Listening::spawn(
        service(
            "shop-frontend",
            &["--listen", "127.0.0.1:0", "--inventory-url", &inventory.addr],
        ),
        "frontend",
    );
    (inventory, frontend)
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

/// A CLI command left running, read line by line; killed when dropped.
pub struct RunningCli {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl RunningCli {
    /// The next line it prints, if one comes within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }
}

impl Drop for RunningCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `keyhole server` on a loopback port.
pub struct Server {
    process: Listening,
    /// The arguments after `keyhole server`, to start it again with.
    args: Vec<std::ffi::OsString>,
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
        let server = Self::start_with(data_dir, listen, &[]);
        assert!(
            !server.admin_token.is_empty(),
            "admin token written on first start"
        );
        server
    }

    /// Starts a server listening on `listen` with `extra` arguments, e.g.
    /// `["--database", url]`. Its `admin_token` is the one in `data_dir`, or
    /// empty if there is none: a replica joining a database another server
    /// created writes none, so set it to that server's.
    pub fn start_with(data_dir: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut args: Vec<std::ffi::OsString> = vec!["--listen".into(), listen.into(), "--data-dir".into()];
        args.push(data_dir.into());
        args.extend(extra.iter().map(Into::into));
        let process = Self::spawn(&args);
        let admin_token = std::fs::read_to_string(data_dir.join("admin.token"))
            .map(|token| token.trim().to_owned())
            .unwrap_or_default();
        Server {
            addr: process.addr.clone(),
            process,
            args,
            data_dir: data_dir.to_owned(),
            admin_token,
        }
    }

    fn spawn(args: &[std::ffi::OsString]) -> Listening {
        let mut command = Command::new(keyhole_bin());
        command.arg("server").args(args).env("KEYHOLE_LOG", "warn");
        Listening::spawn(command, "server")
    }

    /// Stops it (SIGTERM, then SIGKILL after `grace`) and starts it again with
    /// the same arguments; on `127.0.0.1:0`, it gets a new port.
    pub fn restart(&mut self, grace: Duration) {
        self.process.stop(grace);
        self.process = Self::spawn(&self.args);
        self.addr = self.process.addr.clone();
    }

    /// Runs the CLI with the admin token.
    pub fn cli(&self, args: &[&str]) -> CliRun {
        self.cli_as(&self.admin_token, args)
    }

    /// Runs the CLI with `token`.
    pub fn cli_as(&self, token: &str, args: &[&str]) -> CliRun {
        let output = self.cli_command(token, args).output().expect("run keyhole");
        CliRun {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Starts the CLI with the admin token and leaves it running (e.g.
    /// `snapshots watch`); it is killed when the result is dropped.
    pub fn cli_running(&self, args: &[&str]) -> RunningCli {
        let mut child = self
            .cli_command(&self.admin_token, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start keyhole");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        RunningCli { child, lines }
    }

    /// The CLI with `args`, talking to this server with `token`.
    fn cli_command(&self, token: &str, args: &[&str]) -> Command {
        let mut command = Command::new(keyhole_bin());
        command
            .args(args)
            .env("KEYHOLE_ADDR", &self.addr)
            .env("KEYHOLE_TOKEN", token)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null());
        command
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
        self.addr
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Stops the server with SIGKILL: no chance to flush anything.
    pub fn kill(self) {
        drop(self.process);
    }
}

/// Where tests that need PostgreSQL find it (`.ci/run` sets it).
pub const TEST_DATABASE_ENV: &str = "KEYHOLE_TEST_DATABASE_URL";
/// The test PostgreSQL when the environment names none.
pub const DEFAULT_TEST_DATABASE: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database of its own on the test PostgreSQL server, so tests run in
/// parallel and leave nothing behind: created empty, dropped with this.
pub struct TestDatabase {
    /// Its URL, for `keyhole server --database`.
    pub url: String,
    server_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates `keyhole_test_<random>` on the server `KEYHOLE_TEST_DATABASE_URL` names.
    pub fn create() -> TestDatabase {
        let server_url = std::env::var(TEST_DATABASE_ENV).unwrap_or_else(|_| DEFAULT_TEST_DATABASE.into());
        let name = format!("keyhole_test_{:016x}", random_u64());
        let (head, query) = match server_url.split_once('?') {
            Some((head, query)) => (head, format!("?{query}")),
            None => (server_url.as_str(), String::new()),
        };
        let authority_end = head
            .find("://")
            .and_then(|scheme| head[scheme + 3..].find('/').map(|slash| scheme + 3 + slash))
            .unwrap_or(head.len());
        let url = format!("{}/{name}{query}", &head[..authority_end]);
        run_sql(&server_url, &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| {
            panic!("cannot create a database on the test PostgreSQL at {server_url} ({e}); start it or set {TEST_DATABASE_ENV}")
        });
        TestDatabase {
            url,
            server_url,
            name,
        }
    }

    /// Runs `sql` (one or more statements) in it, like an operator with `psql` would.
    pub fn execute(&self, sql: &str) {
        run_sql(&self.url, sql).unwrap_or_else(|e| panic!("SQL on {} failed ({e}): {sql}", self.name));
    }

    /// Cuts it off like an outage would: new connections to it are refused
    /// and every open one is terminated, until [`TestDatabase::allow_connections`].
    pub fn refuse_connections(&self) {
        let name = &self.name;
        self.execute_on_server(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ));
    }

    /// What every connection to it is doing, one line each (`pg_stat_activity`, with the locks each
    /// waits for), for a failure message: a client stuck on a lock says so here.
    pub fn activity(&self) -> String {
        let sql = format!(
            "SELECT coalesce(string_agg(format('pid %s %s for %s, waiting on %s/%s, blocked by %s: %s', \
             pid, state, now() - state_change, wait_event_type, wait_event, \
             pg_blocking_pids(pid), left(query, 120)), E'\\n' ORDER BY pid), 'no connections') \
             FROM pg_stat_activity WHERE datname = '{}'",
            self.name
        );
        query_text(&self.server_url, &sql).unwrap_or_else(|e| format!("cannot read pg_stat_activity: {e}"))
    }

    /// Ends [`TestDatabase::refuse_connections`].
    pub fn allow_connections(&self) {
        self.execute_on_server(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", self.name));
    }

    /// Runs `sql` on the server's own database, from where this one can be altered.
    fn execute_on_server(&self, sql: &str) {
        run_sql(&self.server_url, sql)
            .unwrap_or_else(|e| panic!("SQL on the test server failed ({e}): {sql}"));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = run_sql(&self.server_url, &drop) {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

/// Runs `sql` on the database at `url`, on a thread and runtime of its own
/// (callers may be inside a runtime, which must not block).
fn run_sql(url: &str, sql: &str) -> Result<(), String> {
    let sql = sql.to_owned();
    with_connection(url, async move |connection| {
        sqlx::raw_sql(&sql).execute(connection).await.map(|_| ())
    })
}

/// The one text value `sql` selects, on the database at `url`.
fn query_text(url: &str, sql: &str) -> Result<String, String> {
    let sql = sql.to_owned();
    with_connection(url, async move |connection| {
        sqlx::query_scalar(&sql).fetch_one(connection).await
    })
}

/// Runs `work` on a connection of its own to the database at `url`, on a thread of its own (the
/// tests that call it may be inside a runtime already), and closes the connection.
fn with_connection<T, F>(url: &str, work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, sqlx::Error> + Send + 'static,
{
    use sqlx::Connection as _;
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let mut connection = sqlx::PgConnection::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            let done = work(&mut connection).await.map_err(|e| e.to_string())?;
            connection.close().await.map_err(|e| e.to_string())?;
            Ok(done)
        })
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_owned())?
}

/// A random number, from the standard library's randomly keyed hasher.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}
