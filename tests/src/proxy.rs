//! A loopback TCP proxy that fails on command, for fault tests: it accepts
//! connections, connects each to the upstream address, and copies bytes both
//! ways while the path passes; black-holed, it reads what clients send and
//! neither forwards nor answers; stalled, it forwards requests but holds back
//! the responses after a few bytes. It runs on a thread and runtime of its
//! own, so a test's threads (and an agent's) can drive it from anywhere.
//!
//! A connection whose bytes were thrown away is useless once the path is
//! restored (its stream has a hole), so it is closed then, as a peer's
//! reset would close it. A stalled connection lost nothing: it resumes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bytes copied per read.
const CHUNK: usize = 16 * 1024;

/// What the proxy does with the bytes of every connection, old and new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMode {
    /// Copies both ways.
    Pass,
    /// Reads from clients and drops it; forwards and answers nothing.
    BlackHole,
    /// Forwards what clients send; from upstream, lets `after_bytes` more bytes
    /// through on each connection (counted from when the stall began, or from
    /// the connection's start), then stops reading until the mode changes.
    Stall { after_bytes: u64 },
}

/// What went through the proxy so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathTraffic {
    pub connections: u64,
    /// Bytes forwarded from clients to upstream.
    pub forwarded_up: u64,
    /// Bytes forwarded from upstream to clients.
    pub forwarded_down: u64,
    /// Bytes read and thrown away while black-holed.
    pub discarded: u64,
}

#[derive(Debug, Default)]
struct PathCounters {
    connections: AtomicU64,
    forwarded_up: AtomicU64,
    forwarded_down: AtomicU64,
    discarded: AtomicU64,
}

/// A running proxy; stops (and drops every connection) when dropped.
pub struct FaultyPath {
    addr: SocketAddr,
    mode: watch::Sender<PathMode>,
    counters: Arc<PathCounters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultyPath {
    /// Listens on a free loopback port and relays to `upstream` (`host:port`
    /// or `http://host:port`), passing bytes until told otherwise.
    pub fn start(upstream: &str) -> FaultyPath {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|e| panic!("upstream {upstream:?} is not host:port: {e}"));
        assert!(upstream.ip().is_loopback(), "the proxy relays on loopback only");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let (mode, modes) = watch::channel(PathMode::Pass);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let counters = Arc::new(PathCounters::default());
        let thread_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name("faulty-path".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the proxy's runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        () = accept(listener, upstream, modes, thread_counters) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels every connection's task.
            })
            .expect("start the proxy's thread");
        FaultyPath {
            addr,
            mode,
            counters,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Where clients connect, as `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches every connection, open or new, to `mode`.
    pub fn set(&self, mode: PathMode) {
        self.mode.send_replace(mode);
    }

    /// What went through so far.
    pub fn traffic(&self) -> PathTraffic {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        PathTraffic {
            connections: read(&self.counters.connections),
            forwarded_up: read(&self.counters.forwarded_up),
            forwarded_down: read(&self.counters.forwarded_down),
            discarded: read(&self.counters.discarded),
        }
    }
}

impl Drop for FaultyPath {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    modes: watch::Receiver<PathMode>,
    counters: Arc<PathCounters>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors, say: let connections close before trying again.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(relay(client, upstream, modes.clone(), counters.clone()));
    }
}

/// One client connection, for as long as it lasts.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    mut modes: watch::Receiver<PathMode>,
    counters: Arc<PathCounters>,
) {
    let _ = client.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    if *modes.borrow_and_update() == PathMode::BlackHole {
        // Never connects upstream: the client's bytes go nowhere.
        discard_until_restored(&client_read, &mut modes, &counters).await;
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (server_read, server_write) = server.into_split();
    let holed = Arc::new(AtomicBool::new(false));
    let up = Pump {
        direction: Direction::Up,
        holed: holed.clone(),
        counters: counters.clone(),
    };
    let down = Pump {
        direction: Direction::Down,
        holed,
        counters,
    };
    // Each direction ends on its own (a finished one drops its writer, which
    // shuts that side down); a connection with a hole ends both.
    tokio::join!(
        up.run(client_read, server_write, modes.clone()),
        down.run(server_read, client_write, modes),
    );
}

async fn discard_until_restored(
    from: &OwnedReadHalf,
    modes: &mut watch::Receiver<PathMode>,
    counters: &PathCounters,
) {
    let mut buffer = vec![0; CHUNK];
    loop {
        tokio::select! {
            read = read(from, &mut buffer) => match read {
                Some(n) => counters.discarded.fetch_add(n as u64, Ordering::Relaxed),
                None => return,
            },
            changed = modes.changed() => {
                if changed.is_err() || *modes.borrow_and_update() != PathMode::BlackHole {
                    return;
                }
                continue;
            }
        };
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to upstream: requests.
    Up,
    /// Upstream to client: responses.
    Down,
}

struct Pump {
    direction: Direction,
    /// Bytes of this connection were thrown away: it must not carry on.
    holed: Arc<AtomicBool>,
    counters: Arc<PathCounters>,
}

impl Pump {
    async fn run(self, from: OwnedReadHalf, to: OwnedWriteHalf, mut modes: watch::Receiver<PathMode>) {
        let mut buffer = vec![0; CHUNK];
        let mut previous = PathMode::Pass;
        // Bytes let through since the current stall began.
        let mut stalled_bytes = 0u64;
        loop {
            let mode = *modes.borrow_and_update();
            if mode != previous && matches!(mode, PathMode::Stall { .. }) {
                stalled_bytes = 0;
            }
            previous = mode;
            if self.holed.load(Ordering::Relaxed) && mode != PathMode::BlackHole {
                return;
            }
            // How much may be read now; zero holds the bytes back.
            let allowance = match (mode, self.direction) {
                (PathMode::Stall { after_bytes }, Direction::Down) => {
                    (after_bytes.saturating_sub(stalled_bytes)).min(CHUNK as u64) as usize
                }
                _ => CHUNK,
            };
            if allowance == 0 {
                if modes.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let n = tokio::select! {
                read = read(&from, &mut buffer[..allowance]) => match read {
                    Some(n) => n,
                    None => return,
                },
                changed = modes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            };
            // What happens to bytes depends on the mode when they arrive.
            match *modes.borrow() {
                PathMode::BlackHole => {
                    self.holed.store(true, Ordering::Relaxed);
                    self.counters.discarded.fetch_add(n as u64, Ordering::Relaxed);
                    continue;
                }
                PathMode::Stall { .. } if self.direction == Direction::Down => stalled_bytes += n as u64,
                _ => {}
            }
            if !write_all(&to, &buffer[..n]).await {
                return;
            }
            let forwarded = match self.direction {
                Direction::Up => &self.counters.forwarded_up,
                Direction::Down => &self.counters.forwarded_down,
            };
            forwarded.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// Reads what is there (at least one byte); `None` at the end or on an error.
async fn read(from: &OwnedReadHalf, buffer: &mut [u8]) -> Option<usize> {
    loop {
        if from.readable().await.is_err() {
            return None;
        }
        match from.try_read(buffer) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

/// Writes all of `bytes`; `false` if the peer is gone.
async fn write_all(to: &OwnedWriteHalf, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        if to.writable().await.is_err() {
            return false;
        }
        match to.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return false,
        }
    }
    true
}
