//! Load for the shop, measured from the client's side: a fixed number of
//! keep-alive connections, each sending its next request when the last one
//! answered (a closed loop), until a number of requests or a time runs out,
//! whichever comes first. Loopback only: this drives services on this machine.
//!
//! The `load` binary runs one plan from the command line; `overhead` runs many
//! against the shop built and configured in different ways, side by side, and
//! `instructions` counts what the shop executes per request in each way.

pub mod build;
pub mod callgrind;
pub mod cpu;
pub mod http;
pub mod latency;
pub mod perf;
pub mod rss;
pub mod sched;
pub mod shop;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{get_request, Connection};
pub use latency::LatencySummary;

/// The request sent when the URL names no path: one checkout, as the shop's tests send it.
pub const DEFAULT_PATH: &str = "/checkout?user=alice&sku=RED-SHOE&qty=2";
/// How long a client waits before trying again after a refused connection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// Where the load goes: a loopback address and the path every request asks for.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: SocketAddr,
    host: String,
    path: String,
}

impl Target {
    /// Parses `http://HOST:PORT[/PATH?QUERY]`; a URL without a path gets [`DEFAULT_PATH`].
    /// Refuses any host that does not resolve to a loopback address.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (host, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, ""),
        };
        let path = if path.is_empty() || path == "/" {
            DEFAULT_PATH
        } else {
            path
        };
        let address = host
            .to_socket_addrs()
            .map_err(|e| format!("{url}: cannot resolve {host} (give HOST:PORT): {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: {host} resolves to no address"))?;
        if !address.ip().is_loopback() {
            return Err(format!(
                "{url}: {} is not a loopback address; this tool only loads services on this machine",
                address.ip()
            ));
        }
        Ok(Target {
            address,
            host: host.to_owned(),
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host, self.path)
    }
}

/// A debug session that a share of the requests carry in their baggage.
#[derive(Debug, Clone)]
pub struct SessionShare {
    pub token: String,
    /// 0 to 1: which share of the requests carry it, spread evenly.
    pub fraction: f64,
}

impl SessionShare {
    /// Whether request number `ticket` carries the session: exactly `fraction`
    /// of any run of consecutive tickets does, spread evenly rather than at random
    /// so that two runs send the same requests.
    fn carries(&self, ticket: u64) -> bool {
        (((ticket + 1) as f64) * self.fraction).floor() > ((ticket as f64) * self.fraction).floor()
    }

    fn header(&self) -> String {
        format!("baggage: {}={}", keyhole::SESSION_BAGGAGE_KEY, self.token)
    }
}

/// What to send, how hard and for how long.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub target: Target,
    /// Connections, each with one request in flight at a time.
    pub concurrency: usize,
    /// The run ends after this many requests...
    pub requests: u64,
    /// ...or after this long, whichever comes first. Requests in flight then finish.
    pub duration: Duration,
    pub session: Option<SessionShare>,
    /// A request not answered within this counts as an error and its connection is dropped.
    pub request_timeout: Duration,
    /// Threads of the client's own runtime.
    pub client_threads: usize,
}

impl LoadPlan {
    /// The same load for `duration` instead.
    pub fn lasting(&self, duration: Duration) -> LoadPlan {
        LoadPlan {
            duration,
            ..self.clone()
        }
    }
}

/// Requests that did not succeed, by why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Errors {
    pub connect: u64,
    pub io: u64,
    pub timeout: u64,
    /// Answers with a status other than 2xx, by status.
    pub status: BTreeMap<u16, u64>,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.io + self.timeout + self.status.values().sum::<u64>()
    }

    fn add(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.io += other.io;
        self.timeout += other.timeout;
        for (status, count) in &other.status {
            *self.status.entry(*status).or_default() += count;
        }
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total() == 0 {
            return f.write_str("none");
        }
        let mut parts = Vec::new();
        for (what, count) in [
            ("connect", self.connect),
            ("io", self.io),
            ("timeout", self.timeout),
        ] {
            if count > 0 {
                parts.push(format!("{what}: {count}"));
            }
        }
        for (status, count) in &self.status {
            parts.push(format!("status {status}: {count}"));
        }
        write!(f, "{} ({})", self.total(), parts.join(", "))
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Requests answered with a 2xx status.
    pub ok: u64,
    pub errors: Errors,
    /// Requests that carried the session, whatever their outcome.
    pub with_session: u64,
    /// From the first request sent to the last answer received.
    pub elapsed: Duration,
    /// Latency of the successful requests.
    pub latency: LatencySummary,
    /// Latency of the successful requests that carried the session, and of those that did not, when
    /// some did: what the session costs a request shows here, not spread over all of them.
    pub by_session: Option<(LatencySummary, LatencySummary)>,
}

impl LoadReport {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Requests answered, successfully or not: what the services did work for.
    pub fn answered(&self) -> u64 {
        self.ok + self.errors.total()
    }
}

/// A binary's exit: success, or the error printed and failure.
pub fn exit_code(outcome: Result<(), String>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `plan` on a runtime of its own and returns what it measured. Setting
/// `stop` ends the run early, as if its time had run out.
pub fn run(plan: &LoadPlan, stop: Arc<AtomicBool>) -> Result<LoadReport, String> {
    if plan.concurrency == 0 || plan.client_threads == 0 {
        return Err("concurrency and client threads must be at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.client_threads)
        .thread_name("load-client")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the client runtime: {e}"))?;
    Ok(runtime.block_on(drive(plan, stop)))
}

/// What every connection's task shares.
struct Shared {
    address: SocketAddr,
    plain: Vec<u8>,
    with_session: Option<(SessionShare, Vec<u8>)>,
    tickets: AtomicU64,
    requests: u64,
    deadline: Instant,
    request_timeout: Duration,
    stop: Arc<AtomicBool>,
}

/// What one connection's task measured.
#[derive(Default)]
struct Tally {
    /// Latencies of the successful requests without the session...
    samples: Vec<u64>,
    /// ...and with it.
    session_samples: Vec<u64>,
    errors: Errors,
    with_session: u64,
}

async fn drive(plan: &LoadPlan, stop: Arc<AtomicBool>) -> LoadReport {
    let target = &plan.target;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        address: target.address,
        plain: get_request(&target.host, &target.path, &[]),
        with_session: plan.session.as_ref().map(|session| {
            let request = get_request(&target.host, &target.path, &[session.header()]);
            (session.clone(), request)
        }),
        tickets: AtomicU64::new(0),
        requests: plan.requests,
        deadline: started + plan.duration,
        request_timeout: plan.request_timeout,
        stop,
    });
    let expected_each = plan.requests / plan.concurrency as u64 + 1;
    let capacity = usize::try_from(expected_each).unwrap_or(usize::MAX).min(1 << 20);
    let tasks: Vec<_> = (0..plan.concurrency)
        .map(|_| tokio::spawn(connection_loop(shared.clone(), capacity)))
        .collect();
    let mut other_samples = Vec::new();
    let mut session_samples = Vec::new();
    let mut errors = Errors::default();
    let mut with_session = 0;
    for task in tasks {
        // A task only ends by returning its tally; a panic in one is a bug here.
        let tally = task.await.expect("a load connection's task panicked");
        other_samples.extend_from_slice(&tally.samples);
        session_samples.extend_from_slice(&tally.session_samples);
        errors.add(&tally.errors);
        with_session += tally.with_session;
    }
    let elapsed = started.elapsed();
    let samples = [other_samples.as_slice(), session_samples.as_slice()].concat();
    let by_session = (!session_samples.is_empty()).then(|| {
        (
            LatencySummary::of(session_samples),
            LatencySummary::of(other_samples),
        )
    });
    LoadReport {
        ok: samples.len() as u64,
        errors,
        with_session,
        elapsed,
        latency: LatencySummary::of(samples),
        by_session,
    }
}

async fn connection_loop(shared: Arc<Shared>, capacity: usize) -> Tally {
    let mut tally = Tally {
        samples: Vec::with_capacity(capacity),
        ..Tally::default()
    };
    let mut connection: Option<Connection> = None;
    loop {
        if shared.stop.load(Ordering::Relaxed) || Instant::now() >= shared.deadline {
            break;
        }
        // Relaxed: the counter only hands out distinct numbers; nothing else is ordered by it.
        let ticket = shared.tickets.fetch_add(1, Ordering::Relaxed);
        if ticket >= shared.requests {
            break;
        }
        if connection.is_none() {
            match tokio::time::timeout(shared.request_timeout, Connection::open(shared.address)).await {
                Ok(Ok(opened)) => connection = Some(opened),
                Ok(Err(_)) | Err(_) => {
                    tally.errors.connect += 1;
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            }
        }
        let (request, carried) = match &shared.with_session {
            Some((session, request)) if session.carries(ticket) => {
                tally.with_session += 1;
                (request, true)
            }
            _ => (&shared.plain, false),
        };
        let open = connection.as_mut().expect("connected above");
        let sent = Instant::now();
        match tokio::time::timeout(shared.request_timeout, open.exchange(request)).await {
            Ok(Ok(answer)) => {
                let took = sent.elapsed();
                if (200..300).contains(&answer.status) {
                    let of = if carried {
                        &mut tally.session_samples
                    } else {
                        &mut tally.samples
                    };
                    of.push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
                } else {
                    *tally.errors.status.entry(answer.status).or_default() += 1;
                }
                if answer.closes {
                    connection = None;
                }
            }
            Ok(Err(_)) => {
                tally.errors.io += 1;
                connection = None;
            }
            Err(_) => {
                tally.errors.timeout += 1;
                connection = None;
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback server answering every request on a connection with `200 ok`, the session's
    /// requests (those with a `baggage` header) with `202`; it counts both.
    fn counting_server() -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (sessions, others) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counts = (sessions.clone(), others.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (sessions, others) = counts.clone();
                std::thread::spawn(move || {
                    let mut pending = Vec::new();
                    let mut chunk = [0; 4096];
                    while let Ok(read) = stream.read(&mut chunk) {
                        if read == 0 {
                            return;
                        }
                        pending.extend_from_slice(&chunk[..read]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                            pending.drain(..end + 4);
                            let answer: &[u8] = if head.contains("\r\nbaggage:") {
                                sessions.fetch_add(1, Ordering::Relaxed);
                                b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok"
                            } else {
                                others.fetch_add(1, Ordering::Relaxed);
                                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                            };
                            if stream.write_all(answer).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address, sessions, others)
    }

    #[test]
    fn latency_is_reported_apart_for_the_requests_that_carry_the_session() {
        let (address, sessions, others) = counting_server();
        let plan = LoadPlan {
            target: Target::parse(&format!("http://{address}/")).unwrap(),
            concurrency: 4,
            requests: 1000,
            duration: Duration::from_secs(30),
            session: Some(SessionShare {
                token: "v1.k.s.1.sig".into(),
                fraction: 0.1,
            }),
            request_timeout: Duration::from_secs(5),
            client_threads: 1,
        };
        let report = run(&plan, Arc::new(AtomicBool::new(false))).unwrap();
        assert_eq!(report.ok, 1000, "{:?}", report.errors);
        assert_eq!(report.with_session, 100);
        assert_eq!(
            sessions.load(Ordering::Relaxed),
            100,
            "the server saw the session's requests"
        );
        assert_eq!(others.load(Ordering::Relaxed), 900);
        let (with, without) = report.by_session.expect("some requests carried the session");
        assert_eq!((with.count, without.count), (100, 900));
        assert!(with.p50 <= with.max && without.p50 <= without.max);

        let no_session = run(
            &LoadPlan {
                session: None,
                requests: 100,
                ..plan
            },
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        assert_eq!(no_session.by_session, None);
    }

    #[test]
    fn a_tenth_of_the_requests_carry_the_session_evenly() {
        let share = SessionShare {
            token: "t".into(),
            fraction: 0.1,
        };
        let carried: Vec<u64> = (0..100).filter(|&t| share.carries(t)).collect();
        assert_eq!(carried.len(), 10);
        assert!(carried.windows(2).all(|w| w[1] - w[0] == 10), "{carried:?}");
        let none = SessionShare {
            fraction: 0.0,
            ..share.clone()
        };
        let all = SessionShare {
            fraction: 1.0,
            ..share
        };
        assert!((0..1000).all(|t| !none.carries(t) && all.carries(t)));
    }

    #[test]
    fn a_url_without_a_path_asks_for_a_checkout_and_remote_hosts_are_refused() {
        let target = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(target.to_string(), format!("http://127.0.0.1:8080{DEFAULT_PATH}"));
        let other = Target::parse("http://[::1]:9/stock/X").unwrap();
        assert_eq!(other.path, "/stock/X");
        let refused = Target::parse("http://192.0.2.1:80").unwrap_err();
        assert!(refused.contains("not a loopback address"), "{refused}");
        assert!(Target::parse("https://127.0.0.1:1").is_err());
    }
}
