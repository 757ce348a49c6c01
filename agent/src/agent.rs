//! The agent itself: configuration, the builder, the process-wide running
//! instance that probes consult, and the handle that shuts it down.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use keyhole_proto::redaction::RedactionList;
use keyhole_proto::tls::ClientTlsError;
use keyhole_proto::token::SessionVerifier;
use keyhole_proto::v1::VerificationKey;
use tokio::sync::{oneshot, watch};
use tonic::transport::Endpoint;

use crate::budget::RateLimit;
use crate::callsite::{self, CALLSITES};
use crate::install::Installed;
use crate::queue::{snapshot_queue, SnapshotQueue, SnapshotReceiver};
use crate::session::{SessionError, TrustedSession, VerifiedTokens};

/// Where the agent looks for the control plane unless told otherwise.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:7070";
/// Snapshots waiting for upload, at most.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1_000;
/// Bytes of snapshots accepted and not yet acknowledged, at most.
pub const DEFAULT_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// How long `shutdown` may spend flushing.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Environment variables read by [`AgentBuilder::with_default_env`].
pub const ENV_ADDRESS: &str = "KEYHOLE_ADDR";
pub const ENV_TOKEN: &str = "KEYHOLE_TOKEN";
pub const ENV_SERVICE: &str = "KEYHOLE_SERVICE";
pub const ENV_CA_FILE: &str = "KEYHOLE_CA_FILE";

/// Everything the agent is configured with.
#[derive(Clone)]
pub struct AgentConfig {
    pub address: String,
    /// The CA certificate (PEM) that signed the control plane's certificate,
    /// for an `https://` address; without it, the system's trusted roots.
    pub ca_file: Option<PathBuf>,
    pub token: String,
    pub service: String,
    pub instance_id: String,
    pub version: String,
    pub labels: HashMap<String, String>,
    pub queue_capacity: usize,
    pub queue_bytes: usize,
    pub global_rate_per_sec: f64,
    pub redact: Vec<String>,
    pub unredact: Vec<String>,
    pub shutdown_deadline: Duration,
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("address", &self.address)
            .field("ca_file", &self.ca_file)
            .field("token", &"<redacted>")
            .field("service", &self.service)
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

/// Why the agent did not start.
#[derive(Debug)]
pub enum AgentError {
    MissingService,
    MissingToken,
    InvalidAddress(String),
    /// The CA file cannot be used, or TLS cannot be set up for the address.
    Tls(ClientTlsError),
    AlreadyRunning,
    Thread(std::io::Error),
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::MissingService => {
                write!(f, "no service name: call .service(\"name\") or set {ENV_SERVICE}")
            }
            AgentError::MissingToken => write!(
                f,
                "no agent token: call .token(..) or set {ENV_TOKEN} (create one with `keyhole token create --role agent`)"
            ),
            AgentError::InvalidAddress(address) => write!(
                f,
                "control plane address {address:?} is not a URL like {DEFAULT_ADDRESS}; set {ENV_ADDRESS}"
            ),
            AgentError::Tls(e @ ClientTlsError::CaFileWithoutHttps { .. }) => {
                write!(f, "{e}; use an https:// address, or no CA file for http://")
            }
            AgentError::Tls(e) => write!(
                f,
                "{e}; call .ca_file(..) or set {ENV_CA_FILE} to the CA certificate (PEM) that signed the control plane's certificate"
            ),
            AgentError::AlreadyRunning => f.write_str("a keyhole agent is already running in this process"),
            AgentError::Thread(e) => write!(f, "cannot start the agent's thread: {e}"),
        }
    }
}

impl std::error::Error for AgentError {}

/// Builds and starts the agent.
///
/// ```no_run
/// # async fn run() -> Result<(), keyhole::AgentError> {
/// let agent = keyhole::Agent::builder().service("shop").with_default_env().init()?;
/// // ... serve requests ...
/// agent.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AgentBuilder {
    config: AgentConfig,
}

impl Default for AgentBuilder {
    fn default() -> Self {
        Self {
            config: AgentConfig {
                address: DEFAULT_ADDRESS.to_owned(),
                ca_file: None,
                token: String::new(),
                service: String::new(),
                instance_id: default_instance_id(),
                version: String::new(),
                labels: HashMap::new(),
                queue_capacity: DEFAULT_QUEUE_CAPACITY,
                queue_bytes: DEFAULT_QUEUE_BYTES,
                global_rate_per_sec: keyhole_proto::limits::DEFAULT_GLOBAL_RATE_PER_SEC,
                redact: Vec::new(),
                unredact: Vec::new(),
                shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
            },
        }
    }
}

fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{host}-{}", std::process::id())
}

impl AgentBuilder {
    /// The service name probes are listed under.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.config.service = name.into();
        self
    }

    /// The control plane's address (default `http://127.0.0.1:7070`);
    /// `https://` when it serves TLS.
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.config.address = address.into();
        self
    }

    /// The CA certificate (a PEM file) that signed the control plane's
    /// certificate, for an `https://` address. Without one, the agent trusts
    /// the system's root certificates. The file is read by [`init`](Self::init),
    /// which fails if it cannot be used.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), keyhole::AgentError> {
    /// let agent = keyhole::Agent::builder()
    ///     .service("shop")
    ///     .address("https://keyhole.internal:7070")
    ///     .ca_file("/etc/keyhole/ca.pem")
    ///     .with_default_env()
    ///     .init()?;
    /// # Ok(()) }
    /// ```
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.ca_file = Some(path.into());
        self
    }

    /// An API token with the `agent` role.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = token.into();
        self
    }

    /// This process's id among the service's instances (default host name and pid).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.config.instance_id = id.into();
        self
    }

    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.config.version = version.into();
        self
    }

    /// A label breakpoints can select instances by.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.labels.insert(key.into(), value.into());
        self
    }

    /// Snapshots waiting for upload, at most.
    pub fn queue_capacity(mut self, snapshots: usize) -> Self {
        self.config.queue_capacity = snapshots;
        self
    }

    /// Bytes of snapshots accepted and not yet acknowledged, at most.
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.config.queue_bytes = bytes;
        self
    }

    /// Snapshots per second for the whole process, over all breakpoints.
    pub fn global_rate(mut self, per_second: f64) -> Self {
        self.config.global_rate_per_sec = per_second;
        self
    }

    /// Also redact fields, keys and variables with this name.
    pub fn redact(mut self, name: impl Into<String>) -> Self {
        self.config.redact.push(name.into());
        self
    }

    /// Do not redact this name even though it is on the default list.
    pub fn unredact(mut self, name: impl Into<String>) -> Self {
        self.config.unredact.push(name.into());
        self
    }

    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.config.shutdown_deadline = deadline;
        self
    }

    /// Takes `KEYHOLE_ADDR`, `KEYHOLE_TOKEN`, `KEYHOLE_SERVICE` and
    /// `KEYHOLE_CA_FILE` from the environment where they are set (later
    /// builder calls still win).
    pub fn with_default_env(mut self) -> Self {
        let read = |name| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(address) = read(ENV_ADDRESS) {
            self.config.address = address;
        }
        if let Some(token) = read(ENV_TOKEN) {
            self.config.token = token;
        }
        if let Some(service) = read(ENV_SERVICE) {
            self.config.service = service;
        }
        if let Some(ca_file) = read(ENV_CA_FILE) {
            self.config.ca_file = Some(ca_file.into());
        }
        self
    }

    /// Starts the agent on its own thread. Probes capture once it has
    /// registered and received breakpoints.
    pub fn init(self) -> Result<Agent, AgentError> {
        let (core, receiver) = self.claim()?;
        let (stop, stopped) = watch::channel(false);
        let (done, finished) = oneshot::channel();
        let thread_core = core.clone();
        let spawned = std::thread::Builder::new()
            .name("keyhole-agent".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                let report = match runtime {
                    Ok(runtime) => runtime.block_on(crate::connection::run(thread_core, receiver, stopped)),
                    Err(e) => {
                        tracing::error!(error = %e, "keyhole: cannot start the agent's runtime");
                        ShutdownReport::default()
                    }
                };
                let _ = done.send(report);
            });
        if let Err(e) = spawned {
            RUNNING.store(None);
            crate::session::forget_remembered_sessions();
            return Err(AgentError::Thread(e));
        }
        let (_, duplicate_labels) = callsite::catalogue();
        Ok(Agent {
            core,
            stop,
            finished: Some(finished),
            duplicate_labels,
        })
    }

    /// An agent with no connection whose queue the caller drains: for
    /// benchmarks and tests of the capture path.
    #[doc(hidden)]
    pub fn init_offline(self) -> Result<crate::testing::OfflineAgent, AgentError> {
        let (core, receiver) = self.claim()?;
        Ok(crate::testing::OfflineAgent::new(core, receiver))
    }

    /// Checks the configuration and makes this the process's running agent.
    fn claim(self) -> Result<(Arc<AgentCore>, SnapshotReceiver), AgentError> {
        let config = self.config;
        if config.service.trim().is_empty() {
            return Err(AgentError::MissingService);
        }
        if config.token.trim().is_empty() {
            return Err(AgentError::MissingToken);
        }
        let endpoint = crate::connection::endpoint(&config)?;
        let (queue, receiver) = snapshot_queue(config.queue_capacity, config.queue_bytes);
        let (_, duplicate_labels) = callsite::catalogue();
        for label in &duplicate_labels {
            tracing::warn!(
                label,
                "keyhole: more than one probe! uses this label; they share breakpoints"
            );
        }
        let core = Arc::new(AgentCore {
            redaction: RedactionList::with_changes(&config.redact, &config.unredact),
            global_rate: RateLimit::new(config.global_rate_per_sec, burst_of(config.global_rate_per_sec)),
            queue,
            verifier: ArcSwap::from_pointee(SessionVerifier::default()),
            sessions: VerifiedTokens::default(),
            snapshot_prefix: random_prefix(),
            next_snapshot: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            installed: Mutex::new(Installed::default()),
            endpoint,
            config,
        });
        // Only one agent per process: probes are process-wide.
        let previous = RUNNING.compare_and_swap(&None::<Arc<AgentCore>>, Some(core.clone()));
        if previous.is_some() {
            return Err(AgentError::AlreadyRunning);
        }
        Ok((core, receiver))
    }
}

/// The global budget may be spent in bursts of up to one second's worth.
fn burst_of(per_second: f64) -> u32 {
    if per_second.is_finite() && per_second >= 1.0 {
        per_second.min(f64::from(u32::MAX)) as u32
    } else {
        1
    }
}

fn random_prefix() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Unique enough without the OS generator: time and pid differ between runs.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = ((nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the agent's thread reports when it stops.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Snapshots probes handed to the agent during its life.
    pub accepted: u64,
    /// Snapshots the control plane acknowledged during the agent's life.
    pub uploaded: u64,
    /// Snapshots accepted but not acknowledged when the deadline passed.
    pub unflushed: u64,
}

/// The running agent. Dropping it stops the agent without flushing; call
/// [`Agent::shutdown`] to flush first.
pub struct Agent {
    core: Arc<AgentCore>,
    stop: watch::Sender<bool>,
    finished: Option<oneshot::Receiver<ShutdownReport>>,
    duplicate_labels: Vec<&'static str>,
}

impl Agent {
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// Labels used by more than one `probe!` in this binary.
    pub fn duplicate_labels(&self) -> &[&'static str] {
        &self.duplicate_labels
    }

    /// Ids of the breakpoints installed now.
    pub fn installed_breakpoints(&self) -> Vec<String> {
        self.core.installed().ids()
    }

    /// Bytes of snapshots accepted and not yet acknowledged by the control plane.
    pub fn queued_bytes(&self) -> usize {
        self.core.queue.bytes_in_use()
    }

    /// Whether the agent has received session keys from the control plane.
    pub fn has_session_keys(&self) -> bool {
        !self.core.verifier().is_empty()
    }

    /// Stops capturing, uploads what was accepted (within the shutdown
    /// deadline), and stops the agent's thread.
    pub async fn shutdown(mut self) -> ShutdownReport {
        self.stop_now();
        let report = match self.finished.take() {
            Some(finished) => finished.await.unwrap_or_default(),
            None => ShutdownReport::default(),
        };
        ShutdownReport {
            accepted: self.core.accepted.load(Ordering::Relaxed),
            ..report
        }
    }

    fn stop_now(&self) {
        release(&self.core);
        let _ = self.stop.send(true);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.finished.is_some() {
            self.stop_now();
        }
    }
}

/// The agent's state that probes and the agent's thread share.
pub struct AgentCore {
    pub config: AgentConfig,
    pub redaction: RedactionList,
    pub queue: SnapshotQueue,
    pub global_rate: RateLimit,
    verifier: ArcSwap<SessionVerifier>,
    pub(crate) sessions: VerifiedTokens,
    snapshot_prefix: String,
    next_snapshot: AtomicU64,
    /// Snapshots handed to the queue, ever.
    pub accepted: AtomicU64,
    installed: Mutex<Installed>,
    /// The control plane, with TLS set up for `https://`.
    pub(crate) endpoint: Endpoint,
}

impl AgentCore {
    /// A snapshot id unique across processes: a random prefix and a counter.
    pub fn next_snapshot_id(&self) -> String {
        let n = self.next_snapshot.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.snapshot_prefix)
    }

    pub fn verifier(&self) -> Arc<SessionVerifier> {
        self.verifier.load_full()
    }

    /// The session `token` grants, checked with the current keys (see [`VerifiedTokens::verify`]).
    pub(crate) fn verify_session(&self, token: &str) -> Result<TrustedSession, SessionError> {
        // Borrowed for the check, not cloned: every request that carries a session comes here.
        self.sessions.verify(&self.verifier.load(), token)
    }

    /// Replaces the session keys (they rotate); keeps the old ones if the new
    /// ones are unusable.
    pub fn set_keys(&self, keys: &[VerificationKey]) {
        match SessionVerifier::from_keys(keys) {
            Ok(verifier) => {
                if !self.verifier.load().same_keys(&verifier) {
                    self.verifier.store(Arc::new(verifier));
                    self.sessions.clear();
                }
            }
            Err(e) => tracing::warn!(error = %e, "keyhole: ignoring unusable session keys"),
        }
    }

    /// The installed breakpoints; only the agent's thread changes them.
    pub(crate) fn installed(&self) -> MutexGuard<'_, Installed> {
        self.installed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

static RUNNING: ArcSwapOption<AgentCore> = ArcSwapOption::const_empty();

/// Disarms every probe and stops being the running agent.
pub(crate) fn release(core: &Arc<AgentCore>) {
    for site in CALLSITES.iter() {
        site.install(None);
    }
    RUNNING.compare_and_swap(&Some(core.clone()), None::<Arc<AgentCore>>);
    crate::session::forget_remembered_sessions();
}

/// The running agent, if any.
pub(crate) fn running() -> Option<Arc<AgentCore>> {
    RUNNING.load_full()
}

/// `f` of the running agent, if any, without taking a reference to it: for the request paths.
pub(crate) fn with_running<R>(f: impl FnOnce(&AgentCore) -> R) -> Option<R> {
    RUNNING.load().as_deref().map(f)
}

pub(crate) fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
