//! The control plane's settings: where it listens, where it keeps data, and
//! the maxima it enforces on what callers ask for.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use keyhole_proto::limits;
use keyhole_proto::v1::CaptureLimits;

/// Where `keyhole server` listens when not told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Where `keyhole server` keeps its database and admin token.
pub const DEFAULT_DATA_DIR: &str = "keyhole-data";
/// The admin token written on first start, inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Holds the admin token written on first start, and the SQLite database
    /// unless `database` names another.
    pub data_dir: PathBuf,
    /// A PostgreSQL database shared with other replicas, instead of SQLite.
    pub database: Option<DatabaseUrl>,
    /// Serve gRPC and the UI over TLS; plain HTTP without.
    pub tls: Option<TlsFiles>,
    pub limits: ServerLimits,
    /// How long snapshots are kept.
    pub retention: Retention,
}

/// Snapshots received longer ago than this are deleted.
pub const DEFAULT_RETAIN_SNAPSHOTS_FOR: Duration = Duration::from_secs(7 * 24 * 3_600);
/// Beyond this many snapshots of one breakpoint, the oldest are deleted.
pub const DEFAULT_RETAIN_PER_BREAKPOINT: u32 = 1_000;
/// How often the server looks for snapshots to delete.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Snapshots deleted per statement.
pub const RETENTION_BATCH: u32 = 500;
/// The pause between two batches, which lets uploads and reads through.
pub const RETENTION_BATCH_PAUSE: Duration = Duration::from_millis(100);

/// What snapshots the server keeps, and how it deletes the rest (see
/// [`crate::ops::retention`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_per_breakpoint: u32,
    pub interval: Duration,
    pub batch_size: u32,
    pub batch_pause: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: DEFAULT_RETAIN_SNAPSHOTS_FOR,
            max_per_breakpoint: DEFAULT_RETAIN_PER_BREAKPOINT,
            interval: DEFAULT_RETENTION_INTERVAL,
            batch_size: RETENTION_BATCH,
            batch_pause: RETENTION_BATCH_PAUSE,
        }
    }
}

/// The server's certificate chain and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A database URL as the operator gave it. It may hold a password, so it
/// never prints itself: what is shown of it is the store's description.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, password included: for connecting, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatabaseUrl(..)")
    }
}

/// Ceilings on what a breakpoint or session may ask for, and the sizes the
/// control plane accepts from callers.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_capture: CaptureLimits,
    pub max_hits: u32,
    pub max_rate_per_sec: f64,
    pub max_breakpoint_ttl: Duration,
    pub max_session_ttl: Duration,
    pub max_baggage_filters: usize,
    pub max_instance_labels: usize,
    /// Snapshots per `UploadSnapshots` call.
    pub max_upload_batch: usize,
    /// Bytes of one decoded gRPC message (an upload batch, mostly).
    pub max_message_bytes: usize,
    /// Snapshots `snapshots list` returns when no limit is given, and at most.
    pub default_list_limit: u32,
    pub max_list_limit: u32,
    /// Longest name of a session or token, service, label or id.
    pub max_name_len: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_capture: CaptureLimits {
                max_depth: 10,
                max_fields: 200,
                max_items: 1_000,
                max_string_bytes: 16 * 1024,
                max_snapshot_bytes: 1024 * 1024,
                max_frames: 64,
            },
            max_hits: 1_000,
            max_rate_per_sec: 50.0,
            max_breakpoint_ttl: limits::MAX_BREAKPOINT_TTL,
            max_session_ttl: limits::MAX_SESSION_TTL,
            max_baggage_filters: 16,
            max_instance_labels: 16,
            max_upload_batch: 1_000,
            max_message_bytes: 16 * 1024 * 1024,
            default_list_limit: 50,
            max_list_limit: 1_000,
            max_name_len: 200,
        }
    }
}
