//! Scale runs against one real control plane, on SQLite or PostgreSQL:
//! *fan-out*, many simulated agents (each registered, each holding its own
//! breakpoint stream) while breakpoints are set through the CLI; and
//! *ingest*, concurrent uploaders sending snapshot batches as fast as the
//! control plane acknowledges them. Loopback only, bounded in agents, time
//! and batches. The `scale` binary runs them and prints the figures.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyhole_proto::bearer::BearerToken;
use keyhole_proto::redaction::RedactionList;
use keyhole_proto::v1::agent_service_client::AgentServiceClient;
use keyhole_proto::v1::{
    CaptureLimits, ProbeSite, RegisterRequest, Snapshot, StackFrame, UploadSnapshotsRequest,
    WatchBreakpointsRequest,
};
use tempfile::TempDir;
use tokio::sync::{mpsc, Semaphore};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::{break_set_args, Server, TestDatabase};

type AgentClient = AgentServiceClient<InterceptedService<Channel, BearerToken>>;

/// Registrations in flight at once while the simulated fleet connects.
const CONCURRENT_REGISTRATIONS: usize = 64;
/// How long the whole fleet may take to register and open its streams.
const FLEET_STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a round waits for every agent to receive its breakpoint.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause between two fan-out rounds.
const ROUND_PAUSE: Duration = Duration::from_secs(1);
/// The probe every simulated agent registers.
const FLEET_PROBE: &str = "fleet.handle";

/// Where the control plane keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// SQLite in a fresh data directory (the default of `keyhole server`).
    Sqlite,
    /// A fresh database on the test PostgreSQL (`KEYHOLE_TEST_DATABASE_URL`).
    Postgres,
}

impl Storage {
    pub fn name(self) -> &'static str {
        match self {
            Storage::Sqlite => "SQLite",
            Storage::Postgres => "PostgreSQL",
        }
    }
}

/// A control plane of its own, with its data; everything goes when dropped.
pub struct ControlPlane {
    pub server: Server,
    // Dropped after the server: the database last, once nothing uses it.
    _dir: TempDir,
    _database: Option<TestDatabase>,
}

impl ControlPlane {
    pub fn start(storage: Storage) -> ControlPlane {
        let dir = tempfile::tempdir().expect("a data directory");
        let database = (storage == Storage::Postgres).then(TestDatabase::create);
        let server = match &database {
            Some(database) => Server::start_with(dir.path(), "127.0.0.1:0", &["--database", &database.url]),
            None => Server::start(dir.path()),
        };
        ControlPlane {
            server,
            _dir: dir,
            _database: database,
        }
    }

    /// CPU time the server process has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        let pid = serving(&self.server.data_dir)?;
        cpu_time(&format!("/proc/{pid}/stat"))
    }
}

/// The pid of the `keyhole server` whose data directory is `data_dir`.
fn serving(data_dir: &Path) -> Option<u32> {
    let wanted = data_dir.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let mut args = cmdline.split(|b| *b == 0);
        let is_server = args.clone().nth(1) == Some(b"server".as_slice());
        (is_server && args.any(|arg| arg == wanted)).then_some(pid)
    })
}

/// User and system CPU time of the process whose `stat` file is `path`.
fn cpu_time(path: &str) -> Option<Duration> {
    crate::load::cpu::stat_times(path).map(crate::load::cpu::CpuTimes::total)
}

/// CPU time this process has used so far.
pub fn own_cpu_time() -> Option<Duration> {
    cpu_time("/proc/self/stat")
}

/// The whole machine's CPU time so far, from `/proc/stat`: busy, waiting
/// for I/O, and in all, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    pub busy: u64,
    pub iowait: u64,
    pub total: u64,
}

impl MachineCpu {
    pub fn now() -> Option<MachineCpu> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|line| line.starts_with("cpu "))?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|n| n.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = ticks.iter().take(8).sum();
        let (idle, iowait) = (*ticks.get(3)?, *ticks.get(4)?);
        Some(MachineCpu {
            busy: total - idle - iowait,
            iowait,
            total,
        })
    }

    /// The share of the time since `earlier` the machine's cores were busy, and waiting for I/O.
    pub fn since(&self, earlier: &MachineCpu) -> (f64, f64) {
        let total = self.total.saturating_sub(earlier.total).max(1) as f64;
        (
            self.busy.saturating_sub(earlier.busy) as f64 / total,
            self.iowait.saturating_sub(earlier.iowait) as f64 / total,
        )
    }
}

/// p50, p99 and the maximum of a set of durations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    pub fn of(mut samples: Vec<Duration>) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
        Percentiles {
            count: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: samples[samples.len() - 1],
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

/// A gRPC channel to the control plane.
async fn channel(server: &Server) -> Result<Channel, String> {
    Channel::from_shared(server.addr.clone())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", server.addr))
}

fn client(channel: Channel, token: &str) -> AgentClient {
    AgentServiceClient::with_interceptor(channel, BearerToken::new(token).expect("token"))
}

/// Registers `instance` of `service` with one probe; returns its agent id.
async fn register(client: &mut AgentClient, service: &str, instance: &str) -> Result<String, String> {
    let request = RegisterRequest {
        service: service.into(),
        instance_id: instance.into(),
        probes: vec![ProbeSite {
            label: FLEET_PROBE.into(),
            file: "src/handler.rs".into(),
            line: 42,
            module: "fleet::handler".into(),
            variables: vec!["order".into(), "total".into()],
        }],
        ..Default::default()
    };
    let registered = client
        .register(request)
        .await
        .map_err(|status| format!("register {instance}: {}", status.message()))?;
    Ok(registered.into_inner().agent_id)
}

/// What a fan-out run is.
#[derive(Debug, Clone, Copy)]
pub struct FanoutPlan {
    pub storage: Storage,
    pub agents: usize,
    /// Agents sharing one HTTP/2 connection (each still registers and holds its own stream).
    pub agents_per_channel: usize,
    /// Breakpoints set one after another, each timed to every agent.
    pub rounds: usize,
}

/// One breakpoint set through the CLI, and when each agent had it.
#[derive(Debug, Clone)]
pub struct FanoutRound {
    /// How long `keyhole break set` took to return.
    pub cli: Duration,
    /// From the CLI's start to each agent's receipt of a set holding the breakpoint.
    pub receipt: Percentiles,
    /// Agents that did not receive it within the round's timeout.
    pub missing: usize,
}

/// What a fan-out run measured.
#[derive(Debug, Clone)]
pub struct FanoutReport {
    /// How long the fleet took to register and receive its first set.
    pub fleet_startup: Duration,
    pub rounds: Vec<FanoutRound>,
    /// Every agent's receipt over every round.
    pub all: Percentiles,
}

/// A set one simulated agent received: which agent, when, and the breakpoint ids in it.
type Receipt = (usize, Instant, Vec<String>);

/// Runs the fan-out: `plan.agents` simulated agents connect to a fresh
/// control plane, then `plan.rounds` breakpoints are set through the CLI.
pub fn fanout(plan: FanoutPlan) -> Result<FanoutReport, String> {
    let plane = ControlPlane::start(plan.storage);
    let server = &plane.server;
    let token = server.token("agent");
    let session = server
        .cli(&["session", "open", "--name", "scale", "-o", "json"])
        .json();
    let session_id = session["id"].as_str().ok_or("no session id")?.to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    let started = Instant::now();
    let (receipts_tx, mut receipts) = mpsc::unbounded_channel::<Receipt>();
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<Result<(), String>>();
    runtime.block_on(async {
        let channels = plan.agents.div_ceil(plan.agents_per_channel.max(1));
        let mut shared = Vec::with_capacity(channels);
        for _ in 0..channels {
            shared.push(channel(server).await?);
        }
        let registrations = Arc::new(Semaphore::new(CONCURRENT_REGISTRATIONS));
        for index in 0..plan.agents {
            let client = client(shared[index % channels].clone(), &token);
            let (receipts, ready) = (receipts_tx.clone(), ready_tx.clone());
            let registrations = registrations.clone();
            tokio::spawn(async move {
                let permit = registrations.acquire_owned().await;
                let followed = follow(client, index, &receipts).await;
                drop(permit);
                match followed {
                    Ok(mut sets) => {
                        let _ = ready.send(Ok(()));
                        while let Ok(Some(set)) = sets.message().await {
                            let ids = set.breakpoints.into_iter().map(|b| b.id).collect();
                            if receipts.send((index, Instant::now(), ids)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            });
        }
        let deadline = tokio::time::Instant::now() + FLEET_STARTUP_TIMEOUT;
        for connected in 0..plan.agents {
            match tokio::time::timeout_at(deadline, ready.recv()).await {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(e))) => return Err(e),
                _ => return Err(format!("{connected} of {} agents connected in time", plan.agents)),
            }
        }
        Ok::<(), String>(())
    })?;
    let fleet_startup = started.elapsed();

    let mut rounds = Vec::with_capacity(plan.rounds);
    let mut all = Vec::with_capacity(plan.agents * plan.rounds);
    for _ in 0..plan.rounds {
        std::thread::sleep(ROUND_PAUSE);
        let mut args = break_set_args("fleet", FLEET_PROBE, &session_id, &["--max-hits", "1"]);
        args.extend(["-o", "json"]);
        let set_at = Instant::now();
        let created = server.cli(&args).json();
        let cli = set_at.elapsed();
        let breakpoint = created["id"].as_str().ok_or("no breakpoint id")?.to_owned();
        let latencies = runtime.block_on(receipts_of(&mut receipts, &breakpoint, plan.agents, set_at));
        all.extend_from_slice(&latencies);
        rounds.push(FanoutRound {
            cli,
            missing: plan.agents - latencies.len(),
            receipt: Percentiles::of(latencies),
        });
    }
    drop(receipts);
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(FanoutReport {
        fleet_startup,
        rounds,
        all: Percentiles::of(all),
    })
}

/// Registers agent `index` and opens its breakpoint stream; returns the
/// stream once its first (current) set arrived.
async fn follow(
    mut client: AgentClient,
    index: usize,
    receipts: &mpsc::UnboundedSender<Receipt>,
) -> Result<tonic::Streaming<keyhole_proto::v1::BreakpointSet>, String> {
    let agent_id = register(&mut client, "fleet", &format!("fleet-{index:04}")).await?;
    let request = WatchBreakpointsRequest {
        agent_id,
        known_version: 0,
    };
    let mut sets = client
        .watch_breakpoints(request)
        .await
        .map_err(|status| format!("watch: {}", status.message()))?
        .into_inner();
    let first = sets
        .message()
        .await
        .map_err(|status| format!("watch: {}", status.message()))?
        .ok_or("the stream closed before its first set")?;
    let ids = first.breakpoints.into_iter().map(|b| b.id).collect();
    let _ = receipts.send((index, Instant::now(), ids));
    Ok(sets)
}

/// How long after `set_at` each agent received a set holding `breakpoint`.
async fn receipts_of(
    receipts: &mut mpsc::UnboundedReceiver<Receipt>,
    breakpoint: &str,
    agents: usize,
    set_at: Instant,
) -> Vec<Duration> {
    let mut seen = HashSet::with_capacity(agents);
    let mut latencies = Vec::with_capacity(agents);
    let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
    while seen.len() < agents {
        let Ok(Some((index, at, ids))) = tokio::time::timeout_at(deadline, receipts.recv()).await else {
            break;
        };
        if ids.iter().any(|id| id == breakpoint) && seen.insert(index) {
            latencies.push(at.saturating_duration_since(set_at));
        }
    }
    latencies
}

/// What an ingest run is.
#[derive(Debug, Clone, Copy)]
pub struct IngestPlan {
    pub storage: Storage,
    /// Concurrent uploaders, each an agent on a connection of its own.
    pub uploaders: usize,
    /// Snapshots per `UploadSnapshots` call.
    pub batch: usize,
    pub duration: Duration,
}

/// What an ingest run measured.
#[derive(Debug, Clone)]
pub struct IngestReport {
    pub stored: u64,
    pub duplicates: u64,
    pub failed_batches: u64,
    pub elapsed: Duration,
    /// Snapshots stored per second, per whole second of the run.
    pub per_second: Vec<u64>,
    pub batch_latency: Percentiles,
    /// About how many bytes one snapshot takes on the wire.
    pub snapshot_bytes: usize,
    /// CPU time the server and this process (the uploaders) used during the run.
    pub server_cpu: Option<Duration>,
    pub uploaders_cpu: Option<Duration>,
    /// The share of the machine's CPU time that was busy, and waiting for I/O, during the run
    /// (everything on the machine: the database and other people's work too).
    pub machine_busy: Option<(f64, f64)>,
}

impl IngestReport {
    /// Snapshots stored per second over the whole run.
    pub fn rate(&self) -> f64 {
        self.stored as f64 / self.elapsed.as_secs_f64()
    }
}

/// A snapshot as an agent sends it: an order captured by the agent's own
/// capturer with default limits, a 12-frame symbolised stack, trace ids.
pub fn sample_snapshot() -> (Snapshot, usize) {
    #[derive(serde::Serialize)]
    struct Line {
        sku: String,
        qty: u32,
        price_cents: u64,
    }
    #[derive(serde::Serialize)]
    struct Order {
        id: u64,
        customer: String,
        coupon: Option<String>,
        lines: Vec<Line>,
    }
    let order = Order {
        id: 90_210,
        customer: "customer-4711".into(),
        coupon: Some("WINTER25".into()),
        lines: (0..5)
            .map(|n| Line {
                sku: format!("SKU-{n:05}-RED-SHOE"),
                qty: n + 1,
                price_cents: 1999 * u64::from(n + 1),
            })
            .collect(),
    };
    let (limits, redaction) = (CaptureLimits::default(), RedactionList::default());
    let mut capturer = keyhole::capture::Capturer::new(&limits, &redaction);
    capturer.variable("order", |slot| slot.serialize(&order));
    capturer.variable("total", |slot| slot.serialize(&14_993u64));
    let captured_bytes = capturer.bytes_used() as u64;
    let variables = capturer
        .finish()
        .decode()
        .expect("what the agent's capturer writes decodes");
    let stack: Vec<StackFrame> = (0..12)
        .map(|n| StackFrame {
            function: format!("shop::checkout::handlers::apply_discount_{n}"),
            file: "src/checkout/handlers.rs".into(),
            line: 100 + n,
            column: 9,
            address: 0,
        })
        .collect();
    let snapshot = Snapshot {
        breakpoint_id: "bp-0123456789abcdef".into(),
        session_id: "ses-0123456789abcdef".into(),
        probe_label: "checkout.discount".into(),
        file: "src/checkout/handlers.rs".into(),
        line: 42,
        module: "shop::checkout::handlers".into(),
        captured_at_unix_ms: 1_764_000_000_000,
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: "00f067aa0ba902b7".into(),
        captured_bytes,
        variables,
        stack,
        ..Default::default()
    };
    // The variables' encoded size is exact; the rest is strings plus a few bytes of tags and lengths each.
    let text = |s: &str| s.len() + 3;
    let frames: usize = snapshot
        .stack
        .iter()
        .map(|f| text(&f.function) + text(&f.file) + 8)
        .sum();
    let bytes = captured_bytes as usize
        + frames
        + [
            &snapshot.breakpoint_id,
            &snapshot.session_id,
            &snapshot.probe_label,
            &snapshot.file,
            &snapshot.module,
            &snapshot.trace_id,
            &snapshot.span_id,
        ]
        .iter()
        .map(|s| text(s))
        .sum::<usize>()
        + 60;
    (snapshot, bytes)
}

/// Runs the ingest: `plan.uploaders` agents upload batches of
/// `plan.batch` snapshots with fresh ids, each sending its next batch when
/// the last one was acknowledged, for `plan.duration`.
pub fn ingest(plan: IngestPlan) -> Result<IngestReport, String> {
    let plane = ControlPlane::start(plan.storage);
    let token = plane.server.token("agent");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (template, snapshot_bytes) = sample_snapshot();
    let stored = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let mut uploaders = Vec::with_capacity(plan.uploaders);
        for n in 0..plan.uploaders {
            let mut client = client(channel(&plane.server).await?, &token);
            let agent_id = register(&mut client, "ingest", &format!("ingest-{n}")).await?;
            uploaders.push((client, agent_id));
        }
        let (server_cpu, own_cpu, machine) = (plane.cpu_time(), own_cpu_time(), MachineCpu::now());
        let started = Instant::now();
        let deadline = started + plan.duration;
        let sampler = tokio::spawn(sample_every_second(stored.clone(), started, deadline));
        let mut tasks = Vec::with_capacity(plan.uploaders);
        for (n, (client, agent_id)) in uploaders.into_iter().enumerate() {
            let batch = vec![template.clone(); plan.batch];
            let uploader = Uploader {
                client,
                agent_id,
                prefix: format!("{n}"),
                batch,
                stored: stored.clone(),
            };
            tasks.push(tokio::spawn(uploader.run(deadline)));
        }
        let mut report = IngestReport {
            stored: 0,
            duplicates: 0,
            failed_batches: 0,
            elapsed: Duration::ZERO,
            per_second: Vec::new(),
            batch_latency: Percentiles::default(),
            snapshot_bytes,
            server_cpu: None,
            uploaders_cpu: None,
            machine_busy: None,
        };
        let mut latencies = Vec::new();
        for task in tasks {
            let done = task.await.map_err(|e| format!("an uploader failed: {e}"))?;
            report.duplicates += done.duplicates;
            report.failed_batches += done.failed;
            latencies.extend(done.latencies);
        }
        report.elapsed = started.elapsed();
        report.stored = stored.load(Ordering::Relaxed);
        report.per_second = sampler.await.unwrap_or_default();
        report.batch_latency = Percentiles::of(latencies);
        report.server_cpu = plane
            .cpu_time()
            .zip(server_cpu)
            .map(|(after, before)| after - before);
        report.uploaders_cpu = own_cpu_time().zip(own_cpu).map(|(after, before)| after - before);
        report.machine_busy = MachineCpu::now()
            .zip(machine)
            .map(|(after, before)| after.since(&before));
        Ok(report)
    })
}

/// Snapshots stored in each whole second from `started` until `deadline`.
async fn sample_every_second(stored: Arc<AtomicU64>, started: Instant, deadline: Instant) -> Vec<u64> {
    let mut per_second = Vec::new();
    let mut last = 0;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(started + Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    while Instant::now() < deadline {
        tick.tick().await;
        let now = stored.load(Ordering::Relaxed);
        per_second.push(now - last);
        last = now;
    }
    per_second
}

/// One uploader: an agent sending its next batch as soon as the last is acknowledged.
struct Uploader {
    client: AgentClient,
    agent_id: String,
    prefix: String,
    batch: Vec<Snapshot>,
    stored: Arc<AtomicU64>,
}

/// What one uploader saw.
struct Uploaded {
    duplicates: u64,
    failed: u64,
    latencies: Vec<Duration>,
}

impl Uploader {
    async fn run(mut self, deadline: Instant) -> Uploaded {
        let mut done = Uploaded {
            duplicates: 0,
            failed: 0,
            latencies: Vec::new(),
        };
        let mut next_id = 0u64;
        while Instant::now() < deadline {
            for snapshot in &mut self.batch {
                snapshot.id = format!("{}-{next_id}", self.prefix);
                next_id += 1;
            }
            let request = UploadSnapshotsRequest {
                agent_id: self.agent_id.clone(),
                snapshots: self.batch.clone(),
                drops: Vec::new(),
            };
            let sent = Instant::now();
            match self.client.upload_snapshots(request).await {
                Ok(response) => {
                    done.latencies.push(sent.elapsed());
                    let response = response.into_inner();
                    self.stored
                        .fetch_add(u64::from(response.stored), Ordering::Relaxed);
                    done.duplicates += u64::from(response.duplicates);
                }
                Err(status) => {
                    done.failed += 1;
                    eprintln!("upload failed: {}", status.message());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        done
    }
}
