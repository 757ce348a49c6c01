//! The `keyhole` command line: `keyhole <noun> <verb>`, human tables by
//! default and `--output json` everywhere. Every failure is one line on
//! stderr and exit code 1; usage errors exit with 2.

mod audit;
mod client;
mod duration;
mod render;
mod retention;
pub(crate) mod time;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use keyhole_proto::v1::{
    BaggageFilter, CaptureLimits, CloseSessionRequest, CreateTokenRequest, DeleteBreakpointRequest,
    GetBreakpointRequest, GetSnapshotRequest, ListAuditRequest, ListBreakpointsRequest, ListProbesRequest,
    ListServicesRequest, ListSessionKeysRequest, ListSessionsRequest, ListTokensRequest, OpenSessionRequest,
    RevokeTokenRequest, RotateSessionKeysRequest, SetBreakpointRequest, SnapshotFilter,
};

use crate::config::{DatabaseUrl, ServerConfig, ServerLimits, TlsFiles, DEFAULT_DATA_DIR, DEFAULT_LISTEN};
pub use audit::AuditVerb;
pub use client::DEFAULT_ADDR;
use client::{Client, Connection};
use render::Output;
use retention::RetentionArgs;

#[derive(Parser)]
#[command(
    name = "keyhole",
    version,
    about = "Keyhole: live snapshots of running Rust services, for one debug session at a time",
    long_about = "Keyhole: live snapshots of running Rust services, for one debug session at a time.\n\n\
        Run the control plane with `keyhole server`. Then open a debug session, set a breakpoint on a \
        probe, send requests carrying the session's token as baggage `keyhole.session=<token>`, and \
        read the snapshots.",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct GlobalArgs {
    /// Address of the control plane (https://host:port when it serves TLS).
    #[arg(long, env = "KEYHOLE_ADDR", default_value = DEFAULT_ADDR, global = true)]
    pub addr: String,
    /// CA certificate (PEM) that signed the control plane's certificate, for an https://
    /// address (default: the system's trusted roots).
    #[arg(long, env = "KEYHOLE_CA_FILE", value_name = "FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// API token (default: ./keyhole-data/admin.token, if it exists).
    #[arg(long, env = "KEYHOLE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the control plane (gRPC for agents and the CLI, HTTP for the UI).
    Server(ServerArgs),
    /// Services whose agents have registered, and their instances.
    Services {
        #[command(subcommand)]
        verb: ServicesVerb,
        #[command(flatten)]
        global: GlobalArgs,
    },
    /// The probe catalogue: every probe! site agents have reported.
    Probes {
        #[command(subcommand)]
        verb: ProbesVerb,
        #[command(flatten)]
        global: GlobalArgs,
    },
    /// Debug sessions: only requests carrying a session's token capture.
    Session {
        #[command(subcommand)]
        verb: SessionVerb,
        #[command(flatten)]
        global: GlobalArgs,
    },
    /// Breakpoints on probes.
    Break {
        #[command(subcommand)]
        verb: BreakVerb,
        #[command(flatten)]
        global: GlobalArgs,
    },
    /// Captured snapshots.
    Snapshots {
        #[command(subcommand)]
        verb: SnapshotsVerb,
        #[command(flatten)]
        global: GlobalArgs,
    },
    /// API tokens (admin only).
    Token {
        #[command(subcommand)]
        verb: TokenVerb,
        #[command(flatten)]
        global: GlobalArgs,
    },
    /// Session-signing keys (admin only).
    Keys {
        #[command(subcommand)]
        verb: KeysVerb,
        #[command(flatten)]
        global: GlobalArgs,
    },
    /// The audit log: who changed breakpoints, sessions, tokens and keys, and
    /// who viewed which snapshot (admin only).
    Audit {
        #[command(subcommand)]
        verb: AuditVerb,
        #[command(flatten)]
        global: GlobalArgs,
    },
}

#[derive(Subcommand)]
pub enum KeysVerb {
    /// List signing keys, newest first.
    List,
    /// Sign new sessions with a new key; agents receive it without restarting.
    Rotate {
        /// Also retire every previous key: sessions signed with them stop working at once.
        #[arg(long)]
        retire_previous: bool,
    },
}

#[derive(Args)]
pub struct ServerArgs {
    /// Address to serve gRPC and HTTP on.
    #[arg(long, env = "KEYHOLE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Directory for the database and the first admin token.
    #[arg(long, env = "KEYHOLE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Keep the data in PostgreSQL instead of SQLite in --data-dir
    /// (postgres://user:password@host:5432/database). Replicas given the same database serve the
    /// same breakpoints and snapshots, behind a load balancer.
    #[arg(
        long,
        env = "KEYHOLE_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database: Option<String>,
    /// Serve gRPC and the UI over TLS (https://) with this certificate chain, a PEM file.
    /// Needs --tls-key.
    #[arg(long, env = "KEYHOLE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, a PEM file.
    #[arg(long, env = "KEYHOLE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

impl ServerArgs {
    pub fn config(&self) -> ServerConfig {
        ServerConfig {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            database: self.database.clone().map(DatabaseUrl::new),
            tls: self
                .tls_cert
                .clone()
                .zip(self.tls_key.clone())
                .map(|(cert, key)| TlsFiles { cert, key }),
            limits: ServerLimits::default(),
            retention: self.retention.retention(),
        }
    }
}

#[derive(Subcommand)]
pub enum ServicesVerb {
    /// List services and their instances.
    List,
}

#[derive(Subcommand)]
pub enum ProbesVerb {
    /// List probes, of one service or all.
    List {
        #[arg(long)]
        service: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum SessionVerb {
    /// Open a session; prints its id and the token to send as baggage.
    Open {
        /// How long the session lives (e.g. 30m, 2h; at most 24h).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// A name to recognise it by.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List open sessions.
    List {
        /// Include closed and expired sessions.
        #[arg(long)]
        all: bool,
    },
    /// Close a session: its breakpoints stop capturing at once.
    Close { id: String },
}

#[derive(Subcommand)]
pub enum BreakVerb {
    /// Set a breakpoint on a probe, for one debug session.
    Set(Box<SetArgs>),
    /// List live breakpoints.
    List {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        session: Option<String>,
        /// Include expired and deleted breakpoints.
        #[arg(long)]
        all: bool,
    },
    /// Show one breakpoint with its status per instance.
    Get { id: String },
    /// Delete a breakpoint: agents stop capturing for it.
    Delete { id: String },
}

#[derive(Args)]
pub struct SetArgs {
    /// Service the probe is in.
    #[arg(long)]
    service: String,
    /// The probe's label.
    #[arg(long)]
    probe: String,
    /// Debug session whose requests capture.
    #[arg(long)]
    session: String,
    /// Condition on the captured variables, e.g. 'cart.total > 100 && user.tier == "gold"'.
    #[arg(long)]
    condition: Option<String>,
    /// Only requests whose trusted baggage has KEY=VALUE (repeatable; all must match).
    #[arg(long, value_name = "KEY=VALUE")]
    baggage: Vec<String>,
    /// Only instances with this label (repeatable; all must match).
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Snapshots to take before the breakpoint stops (default 10).
    #[arg(long, allow_negative_numbers = true)]
    max_hits: Option<i64>,
    /// Snapshots per second at most (default 1).
    #[arg(long, allow_negative_numbers = true)]
    rate: Option<f64>,
    /// How long the breakpoint lives (e.g. 30m; default 1h, at most 24h).
    #[arg(long)]
    expire: Option<String>,
    /// Levels of nesting captured (default 3).
    #[arg(long, allow_negative_numbers = true)]
    max_depth: Option<i64>,
    /// Bytes captured per string (default 255).
    #[arg(long, allow_negative_numbers = true)]
    max_string: Option<i64>,
    /// Items captured per collection (default 100).
    #[arg(long, allow_negative_numbers = true)]
    max_items: Option<i64>,
    /// Fields captured per struct (default 20).
    #[arg(long, allow_negative_numbers = true)]
    max_fields: Option<i64>,
    /// Stack frames captured (default 20).
    #[arg(long, allow_negative_numbers = true)]
    max_frames: Option<i64>,
}

#[derive(Args, Clone)]
pub struct SnapshotFilterArgs {
    #[arg(long)]
    session: Option<String>,
    #[arg(long)]
    breakpoint: Option<String>,
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    trace: Option<String>,
}

impl SnapshotFilterArgs {
    fn filter(&self, limit: u32) -> SnapshotFilter {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        SnapshotFilter {
            session_id: text(&self.session),
            breakpoint_id: text(&self.breakpoint),
            service: text(&self.service),
            trace_id: text(&self.trace),
            limit,
        }
    }
}

#[derive(Subcommand)]
pub enum SnapshotsVerb {
    /// List snapshots, newest first.
    List {
        #[command(flatten)]
        filter: SnapshotFilterArgs,
        /// At most this many (default 50).
        #[arg(long, allow_negative_numbers = true)]
        limit: Option<i64>,
    },
    /// Show one snapshot: variables, stack and baggage.
    Get { id: String },
    /// Print snapshots as they arrive, until interrupted.
    Watch {
        #[command(flatten)]
        filter: SnapshotFilterArgs,
    },
}

#[derive(Subcommand)]
pub enum TokenVerb {
    /// Create a token; its secret is shown once.
    Create {
        /// agent, viewer, debugger or admin.
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (without secrets).
    List,
    /// Revoke a token: it stops working at once.
    Revoke { id: String },
}

/// A whole number option that must be at least 1 and fit in 32 bits.
fn positive(flag: &str, value: Option<i64>) -> Result<Option<u32>, String> {
    match value {
        None => Ok(None),
        Some(n) if n < 1 => Err(format!("{flag} must be 1 or more, got {n}")),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| format!("{flag} {n} is far too large")),
    }
}

fn key_values(flag: &str, pairs: &[String]) -> Result<Vec<(String, String)>, String> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
            _ => Err(format!("{flag} {pair:?} is not KEY=VALUE")),
        })
        .collect()
}

fn seconds(flag: &str, text: &str) -> Result<u64, String> {
    let duration = duration::parse(text).map_err(|e| format!("{flag}: {e}"))?;
    if duration.is_zero() {
        return Err(format!("{flag} must be longer than 0s"));
    }
    Ok(duration.as_secs())
}

impl SetArgs {
    fn request(&self) -> Result<SetBreakpointRequest, String> {
        let limit = |flag: &str, value| positive(flag, value).map(Option::unwrap_or_default);
        let limits = CaptureLimits {
            max_depth: limit("--max-depth", self.max_depth)?,
            max_fields: limit("--max-fields", self.max_fields)?,
            max_items: limit("--max-items", self.max_items)?,
            max_string_bytes: limit("--max-string", self.max_string)?,
            max_snapshot_bytes: 0,
            max_frames: limit("--max-frames", self.max_frames)?,
        };
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!(
                    "--rate must be a number of snapshots per second above 0, got {rate}"
                ));
            }
        }
        Ok(SetBreakpointRequest {
            service: self.service.clone(),
            probe_label: self.probe.clone(),
            session_id: self.session.clone(),
            condition: self.condition.clone().unwrap_or_default(),
            max_hits: positive("--max-hits", self.max_hits)?,
            rate_per_sec: self.rate,
            expire_seconds: self
                .expire
                .as_deref()
                .map(|e| seconds("--expire", e))
                .transpose()?,
            limits: Some(limits),
            baggage_filters: key_values("--baggage", &self.baggage)?
                .into_iter()
                .map(|(key, value)| BaggageFilter { key, value })
                .collect(),
            instance_labels: key_values("--label", &self.label)?
                .into_iter()
                .collect::<HashMap<_, _>>(),
        })
    }
}

/// Runs one CLI command (anything but `server`).
pub async fn run(command: Command) -> Result<(), String> {
    let (global, action) = match command {
        Command::Server(_) => return Err("`keyhole server` is not a client command".into()),
        Command::Services { verb, global } => (global, Action::Services(verb)),
        Command::Probes { verb, global } => (global, Action::Probes(verb)),
        Command::Session { verb, global } => (global, Action::Session(verb)),
        Command::Break { verb, global } => (global, Action::Break(verb)),
        Command::Snapshots { verb, global } => (global, Action::Snapshots(verb)),
        Command::Token { verb, global } => (global, Action::Token(verb)),
        Command::Keys { verb, global } => (global, Action::Keys(verb)),
        Command::Audit { verb, global } => (global, Action::Audit(verb)),
    };
    let out = Output::new(global.output);
    // Check what can be checked before connecting, so typos fail fast.
    let prepared = action.prepare()?;
    let connection = Connection::from_args(&global)?;
    let mut client = Client::connect(&connection).await?;
    prepared
        .execute(&mut client, &out)
        .await
        .map_err(|e| connection.explain(e))
}

enum Action {
    Services(ServicesVerb),
    Probes(ProbesVerb),
    Session(SessionVerb),
    Break(BreakVerb),
    Snapshots(SnapshotsVerb),
    Token(TokenVerb),
    Keys(KeysVerb),
    Audit(AuditVerb),
}

/// A command whose arguments have been checked, ready to send.
enum Prepared {
    ListServices,
    ListProbes(ListProbesRequest),
    OpenSession(OpenSessionRequest),
    ListSessions(ListSessionsRequest),
    CloseSession(CloseSessionRequest),
    SetBreakpoint(SetBreakpointRequest),
    ListBreakpoints(ListBreakpointsRequest),
    GetBreakpoint(GetBreakpointRequest),
    DeleteBreakpoint(DeleteBreakpointRequest),
    ListSnapshots(SnapshotFilter),
    GetSnapshot(GetSnapshotRequest),
    WatchSnapshots(SnapshotFilter),
    CreateToken(CreateTokenRequest),
    ListTokens,
    RevokeToken(RevokeTokenRequest),
    ListKeys,
    RotateKeys(RotateSessionKeysRequest),
    ListAudit(ListAuditRequest),
}

impl Action {
    fn prepare(self) -> Result<Prepared, String> {
        Ok(match self {
            Action::Services(ServicesVerb::List) => Prepared::ListServices,
            Action::Probes(ProbesVerb::List { service }) => Prepared::ListProbes(ListProbesRequest {
                service: service.unwrap_or_default(),
            }),
            Action::Session(SessionVerb::Open { ttl, name }) => Prepared::OpenSession(OpenSessionRequest {
                name,
                ttl_seconds: seconds("--ttl", &ttl)?,
            }),
            Action::Session(SessionVerb::List { all }) => Prepared::ListSessions(ListSessionsRequest { all }),
            Action::Session(SessionVerb::Close { id }) => Prepared::CloseSession(CloseSessionRequest { id }),
            Action::Break(BreakVerb::Set(args)) => Prepared::SetBreakpoint(args.request()?),
            Action::Break(BreakVerb::List {
                service,
                session,
                all,
            }) => Prepared::ListBreakpoints(ListBreakpointsRequest {
                service: service.unwrap_or_default(),
                session_id: session.unwrap_or_default(),
                all,
            }),
            Action::Break(BreakVerb::Get { id }) => Prepared::GetBreakpoint(GetBreakpointRequest { id }),
            Action::Break(BreakVerb::Delete { id }) => {
                Prepared::DeleteBreakpoint(DeleteBreakpointRequest { id })
            }
            Action::Snapshots(SnapshotsVerb::List { filter, limit }) => {
                Prepared::ListSnapshots(filter.filter(positive("--limit", limit)?.unwrap_or(0)))
            }
            Action::Snapshots(SnapshotsVerb::Get { id }) => Prepared::GetSnapshot(GetSnapshotRequest { id }),
            Action::Snapshots(SnapshotsVerb::Watch { filter }) => Prepared::WatchSnapshots(filter.filter(0)),
            Action::Token(TokenVerb::Create { role, name }) => {
                role.parse::<crate::auth::Role>()?;
                Prepared::CreateToken(CreateTokenRequest { role, name })
            }
            Action::Token(TokenVerb::List) => Prepared::ListTokens,
            Action::Token(TokenVerb::Revoke { id }) => Prepared::RevokeToken(RevokeTokenRequest { id }),
            Action::Keys(KeysVerb::List) => Prepared::ListKeys,
            Action::Keys(KeysVerb::Rotate { retire_previous }) => {
                Prepared::RotateKeys(RotateSessionKeysRequest { retire_previous })
            }
            Action::Audit(verb) => Prepared::ListAudit(verb.request()?),
        })
    }
}

impl Prepared {
    async fn execute(self, client: &mut Client, out: &Output) -> Result<(), String> {
        let api = &mut client.debugger;
        match self {
            Prepared::ListServices => {
                let response = client::call(api.list_services(ListServicesRequest {})).await?;
                out.services(&response.services)
            }
            Prepared::ListProbes(request) => {
                out.probes(&client::call(api.list_probes(request)).await?.probes)
            }
            Prepared::OpenSession(request) => {
                out.session_opened(&client::call(api.open_session(request)).await?)
            }
            Prepared::ListSessions(request) => {
                out.sessions(&client::call(api.list_sessions(request)).await?.sessions)
            }
            Prepared::CloseSession(request) => {
                out.session_closed(&client::call(api.close_session(request)).await?)
            }
            Prepared::SetBreakpoint(request) => {
                out.breakpoint(&client::call(api.set_breakpoint(request)).await?)
            }
            Prepared::ListBreakpoints(request) => {
                out.breakpoints(&client::call(api.list_breakpoints(request)).await?.breakpoints)
            }
            Prepared::GetBreakpoint(request) => {
                out.breakpoint(&client::call(api.get_breakpoint(request)).await?)
            }
            Prepared::DeleteBreakpoint(request) => {
                out.breakpoint_deleted(&client::call(api.delete_breakpoint(request)).await?)
            }
            Prepared::ListSnapshots(request) => {
                out.snapshots(&client::call(api.list_snapshots(request)).await?.snapshots)
            }
            Prepared::GetSnapshot(request) => out.snapshot(&client::call(api.get_snapshot(request)).await?),
            Prepared::WatchSnapshots(request) => {
                let mut stream = client::call_stream(api.watch_snapshots(request)).await?;
                out.watch_started();
                while let Some(snapshot) = stream.message().await.map_err(|s| client::describe(&s))? {
                    out.snapshot_arrived(&snapshot)?;
                }
                Err("the control plane closed the watch".into())
            }
            Prepared::CreateToken(request) => {
                out.token_created(&client::call(api.create_token(request)).await?)
            }
            Prepared::ListTokens => {
                out.tokens(&client::call(api.list_tokens(ListTokensRequest {})).await?.tokens)
            }
            Prepared::RevokeToken(request) => {
                out.token_revoked(&client::call(api.revoke_token(request)).await?)
            }
            Prepared::ListKeys => out.keys(
                &client::call(api.list_session_keys(ListSessionKeysRequest {}))
                    .await?
                    .keys,
            ),
            Prepared::RotateKeys(request) => {
                out.keys(&client::call(api.rotate_session_keys(request)).await?.keys)
            }
            Prepared::ListAudit(request) => out.audit(&client::call(api.list_audit(request)).await?.entries),
        }
    }
}
