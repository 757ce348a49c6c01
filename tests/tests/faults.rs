//! Faults between a real agent in this process and real control planes,
//! under traffic that captures: a replica on PostgreSQL killed mid-upload,
//! the network path black-holed and then stalled mid-response by a proxy,
//! and PostgreSQL cutting a replica off. Through each, the host's requests
//! never wait on the agent, the agent stays within its queue bound, and every
//! snapshot it accepted is stored exactly once.
//!
//! One agent runs per process, so these tests take turns. Those on
//! PostgreSQL need the test PostgreSQL (`KEYHOLE_TEST_DATABASE_URL`), each in
//! a database of its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keyhole::{Agent, ShutdownReport, TrustedSession};
use keyhole_tests::proxy::{FaultyPath, PathMode};
use keyhole_tests::{
    break_set_args, wait_until, Server, TestDatabase, DEFAULT_TEST_DATABASE, PUSH_TIMEOUT, TEST_DATABASE_ENV,
};
use serde::Serialize;

/// Only one agent may run in a process.
static ONE_AGENT_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_agent() -> MutexGuard<'static, ()> {
    ONE_AGENT_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The agent's queue bound in these tests: small, so faults fill it within a second or two.
const QUEUE_BYTES: usize = 1024 * 1024;
/// What the process may grow by beyond the queue bound while faults last:
/// what the queue's accounting leaves out. Queued snapshots take about 3.2x
/// their accounted (encoded) size in memory (see the ignored test below), the
/// batch being sent is held twice while it waits for its ack, and the
/// allocator, the connections and the proxy keep buffers. A queue without a
/// bound outgrows it within seconds at the tests' rate of capture (about
/// 2 MB of heap a second).
const MEMORY_MARGIN: usize = 12 * 1024 * 1024;
/// How long a restored path may take to deliver everything queued: the
/// agent's reconnect backoff after a few failures, and the upload itself.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests of the simulated host come in bursts of this many, timed together
/// (a request takes a few microseconds: a burst's time is read more precisely).
const BURST: u32 = 10;
/// The pause between two bursts.
const BURST_PAUSE: Duration = Duration::from_micros(200);
/// Bursts one phase sends at most, whatever its duration.
const MAX_BURSTS_PER_PHASE: usize = 100_000;
/// The slowdown of the handler a fault may cause at most, against the
/// connected baseline, each phase's handler time taken relative to the
/// reference handler measured beside it (see [`Phase::relative_cost`]).
///
/// What this catches is work or waiting moved onto the request's path (a
/// lock held across the agent's network calls, capture before the queue
/// refuses), which costs a multiple of the handler's few microseconds. It is
/// not a benchmark: the median burst runs the same code in every phase (the
/// breakpoints' rates refuse nearly every hit), and on a 2-CPU machine the
/// agent's own thread and the control plane, busy reconnecting or draining a
/// backlog, share the hardware with the timed thread. That alone has moved
/// the ratio by 12-18% between phases of one run (CI, 2026-12-04).
const MAX_SLOWDOWN: f64 = 1.5;
/// No request may take this long in the handler: waiting on the agent's
/// network would (its calls time out after 10 s, it backs off for seconds),
/// a busy machine's scheduler does not.
const NO_REQUEST_WAITS: Duration = Duration::from_millis(500);

#[derive(Serialize)]
struct OrderLine {
    sku: String,
    qty: u32,
    note: String,
}

/// What the simulated host's requests are about: big enough that a queue
/// without a bound would show in the process's memory (with the default
/// limits, about 4.6 KB encoded, 22 KB as a value tree in memory).
#[derive(Serialize)]
struct Order {
    id: u64,
    lines: Vec<OrderLine>,
}

fn order() -> Order {
    Order {
        id: 4711,
        lines: (0..60)
            .map(|n| OrderLine {
                sku: format!("SKU-{n:05}"),
                qty: n % 7 + 1,
                note: format!("{n:03} {}", "gift wrap, leave at the door. ".repeat(7)),
            })
            .collect(),
    }
}

/// The host's request handler: a little work, and the probe under test.
#[inline(never)]
fn handle_checkout(order: &Order) -> u64 {
    let total: u64 = order.lines.iter().map(|line| u64::from(line.qty) * 1999).sum();
    keyhole::probe!("faults.checkout", order, total);
    total
}

/// The same handler with a probe no breakpoint is set on: timed beside the
/// handler under test, it tells how fast the shared machine is at that moment.
#[inline(never)]
fn handle_reference(order: &Order) -> u64 {
    let total: u64 = order.lines.iter().map(|line| u64::from(line.qty) * 1999).sum();
    keyhole::probe!("faults.reference", order, total);
    total
}

/// An agent of service `shop` talking to the control plane at `address`.
fn start_agent(address: &str, server: &Server, queue_bytes: usize) -> Agent {
    let agent = Agent::builder()
        .service("shop")
        .address(address)
        .token(server.token("agent"))
        .instance_id("shop-faults")
        .queue_bytes(queue_bytes)
        // The breakpoints' rates are the budget here, not the process's.
        .global_rate(10_000.0)
        .init()
        .expect("the agent starts");
    assert!(
        wait_until(PUSH_TIMEOUT, || agent.has_session_keys()),
        "the agent registers"
    );
    agent
}

/// A debug session opened through the CLI: its id and the trusted session.
fn open_session(server: &Server) -> (String, TrustedSession) {
    let opened = server
        .cli(&["session", "open", "--name", "faults", "-o", "json"])
        .json();
    let session = TrustedSession::from_token(opened["token"].as_str().unwrap()).expect("token verifies");
    (opened["id"].as_str().unwrap().to_owned(), session)
}

/// Sets `count` breakpoints of `rate` snapshots a second on the handler's
/// probe for `session_id`, and waits until the agent has them all.
fn set_breakpoints(
    server: &Server,
    agent: &Agent,
    session_id: &str,
    count: usize,
    rate: &str,
) -> Vec<String> {
    let extra = ["--rate", rate, "--max-hits", "1000", "-o", "json"];
    let ids: Vec<String> = (0..count)
        .map(|_| {
            let args = break_set_args("shop", "faults.checkout", session_id, &extra);
            server.cli(&args).json()["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let installed = wait_until(PUSH_TIMEOUT, || {
        let installed = agent.installed_breakpoints();
        ids.iter().all(|id| installed.contains(id))
    });
    assert!(installed, "breakpoints {ids:?} reach the agent");
    ids
}

fn tokio_block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Waits until the control plane acknowledged everything the agent accepted.
#[track_caller]
fn drained(agent: &Agent, what: &str) {
    drained_or_else(agent, what, String::new);
}

/// [`drained`], with `context()` in the failure message: what the test can say about why not.
#[track_caller]
fn drained_or_else(agent: &Agent, what: &str, context: impl FnOnce() -> String) {
    let started = Instant::now();
    let empty = wait_until(DRAIN_TIMEOUT, || agent.queued_bytes() == 0);
    assert!(
        empty,
        "{what}: {} bytes still unacknowledged after {DRAIN_TIMEOUT:?}\n{}",
        agent.queued_bytes(),
        context()
    );
    eprintln!("{what}: everything acknowledged {:?} later", started.elapsed());
}

/// Stops the agent after flushing; checks that every snapshot it accepted
/// is stored, each once, and returns how many there are.
#[track_caller]
fn stored_exactly_once(agent: Agent, server: &Server, breakpoints: &[String]) -> u64 {
    let report: ShutdownReport = tokio_block_on(agent.shutdown());
    assert_eq!(
        report.unflushed, 0,
        "everything accepted was uploaded: {report:?}"
    );
    let mut listed = Vec::new();
    // Listed per breakpoint: none takes more than 1,000 hits, the most one list returns.
    for breakpoint in breakpoints {
        let args = [
            "snapshots",
            "list",
            "--breakpoint",
            breakpoint,
            "--limit",
            "1000",
            "-o",
            "json",
        ];
        let snapshots = server.cli(&args).json();
        listed.extend(
            snapshots
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_owned()),
        );
    }
    let distinct: HashSet<&String> = listed.iter().collect();
    assert_eq!(distinct.len(), listed.len(), "no snapshot is stored twice");
    assert_eq!(
        listed.len() as u64,
        report.accepted,
        "every accepted snapshot is stored: {report:?}"
    );
    assert_eq!(report.uploaded, report.accepted, "{report:?}");
    report.accepted
}

/// The system allocator, counting the bytes this process holds: its memory
/// growth measured exactly, beside the resident size the kernel reports
/// (which also holds what the allocator keeps after a free).
struct CountingAllocator;

/// Bytes allocated and not freed. Relaxed: only its value is read, and a free
/// happens after its allocation, so the count never goes below zero.
static HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter is only arithmetic on the sizes it was given.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is the system allocator's.
        let allocated = unsafe { System.alloc(layout) };
        if !allocated.is_null() {
            HEAP_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        allocated
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from the system's, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let allocated = unsafe { System.alloc_zeroed(layout) };
        if !allocated.is_null() {
            HEAP_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        allocated
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc` and `alloc`; on failure the old block stays allocated.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            HEAP_BYTES.fetch_add(new_size, Ordering::Relaxed);
            HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Bytes the phases' own timings take (see [`Phase`]): the test's
/// bookkeeping, left out of the memory it measures.
static TIMING_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The heap this process holds, less the test's own timings.
fn heap_bytes() -> usize {
    HEAP_BYTES
        .load(Ordering::Relaxed)
        .saturating_sub(TIMING_BYTES.load(Ordering::Relaxed))
}

/// Resident memory of this process (`VmRSS`), in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// What the simulated host saw during one phase.
struct Phase {
    name: &'static str,
    /// Each request's time in the handler (the mean of its burst), in the order they were sent.
    handler_times: Vec<Nanos>,
    /// The same for the reference handler, one burst right after each of the handler's.
    reference_times: Vec<Nanos>,
    max_queued_bytes: usize,
    max_resident_bytes: u64,
    max_heap_bytes: usize,
}

impl Phase {
    fn handler_percentile(&self, p: f64) -> Duration {
        percentile(&self.handler_times, p)
    }

    /// The median of each handler burst's time over the reference burst
    /// timed right after it: a fault that slowed the handler raises it, while
    /// the machine's own changes of speed (other processes, the host's
    /// scheduling), which last longer than the microseconds between a pair,
    /// slow both of a pair alike.
    fn relative_cost(&self) -> f64 {
        let mut ratios: Vec<f64> = self
            .handler_times
            .iter()
            .zip(&self.reference_times)
            .map(|(&handler, &reference)| f64::from(handler) / f64::from(reference.max(1)))
            .collect();
        ratios.sort_unstable_by(f64::total_cmp);
        ratios.get(ratios.len() / 2).copied().unwrap_or(0.0)
    }

    fn max(&self) -> Duration {
        Duration::from_nanos(
            self.handler_times
                .iter()
                .max()
                .copied()
                .unwrap_or_default()
                .into(),
        )
    }

    /// Heap the two timings take: allocated once, at their full capacity.
    fn timing_bytes(&self) -> usize {
        (self.handler_times.capacity() + self.reference_times.capacity()) * std::mem::size_of::<Nanos>()
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        TIMING_BYTES.fetch_sub(self.timing_bytes(), Ordering::Relaxed);
    }
}

/// A request's time in nanoseconds: a request takes microseconds, and the
/// phases' timings stay small beside the memory the test measures.
type Nanos = u32;

fn percentile(times: &[Nanos], p: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let at = sorted
        .get(((sorted.len().saturating_sub(1)) as f64 * p).round() as usize)
        .copied()
        .unwrap_or_default();
    Duration::from_nanos(at.into())
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} bursts of {BURST} requests; in the handler: median {:?} ({:.2}x the reference beside it, median {:?}), \
             p99 {:?}, max {:?}; queued at most {} KiB; heap at most {} KiB; RSS at most {} KiB",
            self.name,
            self.handler_times.len(),
            self.handler_percentile(0.5),
            self.relative_cost(),
            percentile(&self.reference_times, 0.5),
            self.handler_percentile(0.99),
            self.max(),
            self.max_queued_bytes / 1024,
            self.max_heap_bytes / 1024,
            self.max_resident_bytes / 1024,
        )
    }
}

/// The simulated host: requests carrying `session` hit the handler, in
/// bursts with a short pause between them, for `duration`. Each burst is
/// timed, and so is a burst of the reference handler after it; the agent's
/// queue and the process's memory are sampled throughout.
fn serve_requests(name: &'static str, duration: Duration, session: &TrustedSession, agent: &Agent) -> Phase {
    let order = order();
    let _request = session.attach();
    let mut phase = Phase {
        name,
        handler_times: Vec::with_capacity(MAX_BURSTS_PER_PHASE),
        reference_times: Vec::with_capacity(MAX_BURSTS_PER_PHASE),
        max_queued_bytes: 0,
        max_resident_bytes: resident_bytes(),
        max_heap_bytes: 0,
    };
    TIMING_BYTES.fetch_add(phase.timing_bytes(), Ordering::Relaxed);
    phase.max_heap_bytes = heap_bytes();
    let started = Instant::now();
    let mut next_memory_sample = started;
    while started.elapsed() < duration && phase.handler_times.len() < MAX_BURSTS_PER_PHASE {
        phase
            .handler_times
            .push(time_burst(|| handle_checkout(black_box(&order))));
        phase
            .reference_times
            .push(time_burst(|| handle_reference(black_box(&order))));
        phase.max_queued_bytes = phase.max_queued_bytes.max(agent.queued_bytes());
        phase.max_heap_bytes = phase.max_heap_bytes.max(heap_bytes());
        if Instant::now() >= next_memory_sample {
            phase.max_resident_bytes = phase.max_resident_bytes.max(resident_bytes());
            next_memory_sample += Duration::from_millis(50);
        }
        std::thread::sleep(BURST_PAUSE);
    }
    eprintln!("{phase}");
    phase
}

/// The time of one request, as the mean of a burst of [`BURST`].
fn time_burst(handler: impl Fn() -> u64) -> Nanos {
    let burst = Instant::now();
    for _ in 0..BURST {
        black_box(handler());
    }
    Nanos::try_from((burst.elapsed() / BURST).as_nanos()).unwrap_or(Nanos::MAX)
}

#[test]
fn a_black_holed_then_stalled_path_neither_slows_requests_nor_grows_memory_and_loses_nothing() {
    let _turn = one_agent();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let path = FaultyPath::start(&server.addr);
    let agent = start_agent(&path.url(), &server, QUEUE_BYTES);
    let (session_id, session) = open_session(&server);
    // 100 snapshots a second in all.
    let breakpoints = set_breakpoints(&server, &agent, &session_id, 5, "20");
    // Warm up (first captures, symbol tables), then measure from here.
    serve_requests("warm-up", Duration::from_secs(1), &session, &agent);
    let (resident_before, heap_before) = (resident_bytes(), heap_bytes());

    let baseline = serve_requests("connected", Duration::from_secs(6), &session, &agent);
    path.set(PathMode::BlackHole);
    let before = path.traffic();
    // Longer than the agent's 10 s call timeout: it gives up on its call and
    // reconnects into the black hole.
    let black_holed = serve_requests("black-holed", Duration::from_secs(12), &session, &agent);
    let during = path.traffic();
    assert!(
        during.discarded > before.discarded,
        "the agent kept sending into the black hole: {before:?} -> {during:?}"
    );
    assert_eq!(during.forwarded_down, before.forwarded_down, "nothing came back");
    path.set(PathMode::Pass);
    serve_requests(
        "restored after the black hole",
        Duration::from_secs(2),
        &session,
        &agent,
    );
    drained(&agent, "after the black hole");

    // A connection carrying uploads, cut off mid-response: its requests (and
    // the snapshots in them) reach the control plane, the acks do not.
    path.set(PathMode::Stall { after_bytes: 20 });
    let before = path.traffic();
    let stalled = serve_requests("stalled", Duration::from_secs(12), &session, &agent);
    let during = path.traffic();
    assert!(
        during.forwarded_up > before.forwarded_up,
        "requests went through while the responses stalled: {before:?} -> {during:?}"
    );
    path.set(PathMode::Pass);
    serve_requests(
        "restored after the stall",
        Duration::from_secs(2),
        &session,
        &agent,
    );
    drained(&agent, "after the stall");

    let phases = [&baseline, &black_holed, &stalled];
    let figures = phases.map(ToString::to_string).join("\n");
    let growth = |max: u64, before: u64| max.saturating_sub(before) / 1024;
    let resident_growth = growth(
        phases.map(|p| p.max_resident_bytes).into_iter().max().unwrap(),
        resident_before,
    );
    let heap_growth = growth(
        phases.map(|p| p.max_heap_bytes as u64).into_iter().max().unwrap(),
        heap_before as u64,
    );
    let figures =
        format!("{figures}\nat most {resident_growth} KiB more resident, {heap_growth} KiB more heap");
    eprintln!("{figures}");
    for phase in [&black_holed, &stalled] {
        let (cost, baseline_cost) = (phase.relative_cost(), baseline.relative_cost());
        assert!(
            cost <= baseline_cost * MAX_SLOWDOWN,
            "requests in the handler took {cost:.2}x the reference handler's time while {}, more than \
             {MAX_SLOWDOWN}x the connected {baseline_cost:.2}x:\n{figures}",
            phase.name
        );
        // A burst's whole time bounds each of its requests'.
        assert!(
            phase.max() * BURST < NO_REQUEST_WAITS,
            "a request waited in the handler while {}:\n{figures}",
            phase.name
        );
        assert!(
            phase.max_queued_bytes > QUEUE_BYTES / 2,
            "the fault lasted long enough to fill the queue:\n{figures}"
        );
    }
    for phase in phases {
        assert!(
            phase.max_queued_bytes <= QUEUE_BYTES,
            "the agent held more than its {QUEUE_BYTES} byte bound:\n{figures}"
        );
    }
    assert!(
        resident_growth <= ((QUEUE_BYTES + MEMORY_MARGIN) / 1024) as u64,
        "the process grew beyond its queue bound of {} KiB and a {} KiB margin:\n{figures}",
        QUEUE_BYTES / 1024,
        MEMORY_MARGIN / 1024,
    );

    let stored = stored_exactly_once(agent, &server, &breakpoints);
    eprintln!("{stored} snapshots accepted, each stored once");
}

#[test]
fn queued_snapshots_take_no_more_memory_than_the_queue_bound() {
    let _turn = one_agent();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let queue_bytes = 4 * 1024 * 1024;
    let agent = start_agent(&server.addr, &server, queue_bytes);
    let (session_id, session) = open_session(&server);
    set_breakpoints(&server, &agent, &session_id, 5, "20");
    serve_requests("warm-up", Duration::from_secs(1), &session, &agent);
    drained(&agent, "after the warm-up");
    let heap_before = heap_bytes();
    // Nothing is acknowledged any more: the queue fills up to its bound.
    server.kill();
    let filling = serve_requests(
        "without a control plane",
        Duration::from_secs(10),
        &session,
        &agent,
    );
    let queued = agent.queued_bytes();
    let heap_growth = heap_bytes().saturating_sub(heap_before);
    assert!(queued > queue_bytes / 2, "the queue filled: {filling}");
    // Beyond the snapshots: the agent's reconnect attempts, the test's own bookkeeping.
    let slack = 1024 * 1024;
    assert!(
        heap_growth <= queued + slack,
        "{} KiB of queued snapshots (bound {} KiB) hold {} KiB of heap",
        queued / 1024,
        queue_bytes / 1024,
        heap_growth / 1024
    );
}

/// A replica of the test database, on `listen`.
fn replica(data_dir: &std::path::Path, listen: &str, database: &TestDatabase) -> Server {
    Server::start_with(data_dir, listen, &["--database", &database.url])
}

#[test]
fn every_accepted_snapshot_is_stored_once_when_a_replica_on_postgresql_is_killed_mid_upload() {
    let _turn = one_agent();
    let database = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let mut server = replica(dir.path(), "127.0.0.1:0", &database);
    let listen = server.listen_addr().to_owned();
    let agent = start_agent(&server.addr, &server, QUEUE_BYTES);
    let (session_id, session) = open_session(&server);
    let breakpoints = set_breakpoints(&server, &agent, &session_id, 2, "50");
    for _ in 0..3 {
        // Batches go up every 100 ms or so: the kill lands while one is on its way.
        serve_requests("connected", Duration::from_millis(1500), &session, &agent);
        server.kill();
        serve_requests("replica killed", Duration::from_millis(1500), &session, &agent);
        server = replica(dir.path(), &listen, &database);
        // Reconnected and caught up before the next kill, so that each kill
        // finds the agent uploading rather than still backing off from the last.
        drained_or_else(&agent, "after the restart", || {
            format!("the test database's connections:\n{}", database.activity())
        });
    }
    let stored = stored_exactly_once(agent, &server, &breakpoints);
    assert!(stored > 300, "the test captured across the kills: {stored}");
}

/// The test database cut off from everyone, as an operator would do it: no
/// new connections, and every open one terminated. Restored when dropped.
struct DatabaseCut {
    server_url: String,
    name: String,
}

impl DatabaseCut {
    fn begin(database: &TestDatabase) -> DatabaseCut {
        let server_url = std::env::var(TEST_DATABASE_ENV).unwrap_or_else(|_| DEFAULT_TEST_DATABASE.into());
        let name = database
            .url
            .split('?')
            .next()
            .and_then(|head| head.rsplit('/').next())
            .expect("a database name in the URL")
            .to_owned();
        let cut = DatabaseCut { server_url, name };
        cut.run(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';",
            name = cut.name
        ));
        cut
    }

    /// Runs `sql` on the server's own database, on a thread and runtime of
    /// its own (the test database itself takes no connections now).
    fn run(&self, sql: &str) {
        use sqlx::Connection as _;
        let (url, statements) = (self.server_url.clone(), sql.to_owned());
        let ran = std::thread::spawn(move || {
            tokio_block_on(async {
                let mut connection = sqlx::PgConnection::connect(&url).await?;
                sqlx::raw_sql(&statements).execute(&mut connection).await?;
                connection.close().await
            })
        })
        .join()
        .expect("the SQL thread");
        ran.unwrap_or_else(|e| panic!("{sql} failed: {e}"));
    }
}

impl Drop for DatabaseCut {
    fn drop(&mut self) {
        self.run(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", self.name));
    }
}

#[test]
fn a_replica_cut_off_from_postgresql_fails_uploads_recovers_and_loses_nothing() {
    let _turn = one_agent();
    let database = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let server = replica(dir.path(), "127.0.0.1:0", &database);
    let agent = start_agent(&server.addr, &server, QUEUE_BYTES);
    let (session_id, session) = open_session(&server);
    let breakpoints = set_breakpoints(&server, &agent, &session_id, 2, "50");
    let connected = serve_requests("connected", Duration::from_secs(2), &session, &agent);

    let cut = DatabaseCut::begin(&database);
    let refused = serve_requests("database cut off", Duration::from_secs(6), &session, &agent);
    let listing = server.cli(&["snapshots", "list", "--session", &session_id]);
    listing.refused(&["storage"]);
    // Nothing was acknowledged while the database was away: the agent kept
    // what it had accepted, up to its bound, to send again.
    let kept = agent.queued_bytes();
    assert!(
        kept > QUEUE_BYTES / 2,
        "uploads failed and the agent kept its snapshots: {kept} bytes queued\n{connected}\n{refused}"
    );
    drop(cut);

    serve_requests("database back", Duration::from_secs(2), &session, &agent);
    drained(&agent, "after the database came back");
    let stored = stored_exactly_once(agent, &server, &breakpoints);
    assert!(stored > 200, "the test captured around the cut: {stored}");
}

#[test]
fn the_test_databases_activity_names_each_connection_and_what_it_runs() {
    let database = TestDatabase::create();
    assert_eq!(database.activity(), "no connections");
    /// Long enough to be seen, short enough not to slow the tests.
    const BUSY: &str = "SELECT pg_sleep(3)";
    let busy = std::thread::scope(|scope| {
        let running = scope.spawn(|| database.execute(BUSY));
        let seen = wait_until(PUSH_TIMEOUT, || database.activity().contains(BUSY));
        let _ = running.join();
        seen
    });
    assert!(
        busy,
        "the sleeping query was never listed: {}",
        database.activity()
    );
}
