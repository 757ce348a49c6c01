//! `keyhole server`: opens storage, makes sure there is an admin token, and
//! serves gRPC and HTTP on one address (over TLS when given a certificate)
//! until interrupted. With a PostgreSQL database it is one replica of
//! several, and follows the others' changes.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keyhole_proto::v1::agent_service_server::AgentServiceServer;
use keyhole_proto::v1::debugger_service_server::DebuggerServiceServer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::agents::AgentApi;
use crate::audit::PeerAddress;
use crate::auth::{mint_token, Role};
use crate::config::{ServerConfig, ADMIN_TOKEN_FILE};
use crate::debugger::DebuggerApi;
use crate::ids::now_ms;
use crate::state::ControlPlane;
use crate::store::{PostgresStore, SqliteStore, Store, StoreChange};
use crate::tls::{self, TlsListener};
use crate::ui;
use crate::{ingest, ops};

/// How long open streams get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Runs the control plane until SIGINT or SIGTERM.
pub async fn run(config: ServerConfig) -> Result<(), String> {
    // A certificate that cannot be used fails the start before anything is touched.
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    create_data_dir(&config.data_dir)?;
    let opened = open_store(&config).await?;
    ensure_admin_token(opened.store.as_ref(), &config.data_dir).await?;
    let plane = ControlPlane::new(opened.store, config.limits.clone())
        .await
        .map_err(|e| format!("cannot load the control plane's state: {e}"))?;
    if let Some(changes) = opened.changes {
        tokio::spawn(plane.clone().follow_store(changes));
    }
    tokio::spawn(ops::retention::run(plane.clone(), config.retention.clone()));

    let max_message = config.limits.max_message_bytes;
    let agents = AgentApi::new(plane.clone());
    let ingest = ingest::router(agents.ingest(), max_message);
    let router = tonic::service::Routes::from(ui::router(plane.clone(), tls.is_some()))
        .add_service(AgentServiceServer::new(agents).max_decoding_message_size(max_message))
        .add_service(
            DebuggerServiceServer::new(DebuggerApi::new(plane.clone()))
                .max_decoding_message_size(max_message),
        )
        .into_axum_router()
        .merge(ingest);
    let router = ops::instrument(router, plane.clone());

    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| {
        format!(
            "cannot listen on {}: {e}; is another server running there? Pick another with --listen",
            config.listen
        )
    })?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "keyhole server listening on {scheme}://{address} (data in {})",
        opened.location
    );

    match tls {
        None => serve(PlainListener(listener), router).await,
        Some(acceptor) => {
            let listener = TlsListener::new(listener, acceptor).map_err(|e| e.to_string())?;
            serve(listener, router).await
        }
    }
}

/// Plain TCP connections, each set to [`no_delay`] when accepted.
pub struct PlainListener(TcpListener);

impl axum::serve::Listener for PlainListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let (mut stream, remote) = axum::serve::Listener::accept(&mut self.0).await;
        no_delay(&mut stream);
        (stream, remote)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Makes `stream` send each write at once: a gRPC answer is several small
/// writes, and Nagle's algorithm held the later ones back until the client's
/// delayed acknowledgement of the first (up to 40 ms on Linux).
pub fn no_delay(stream: &mut TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY; answers may wait for acknowledgements");
    }
}

/// Serves `router` on `listener` until SIGINT or SIGTERM.
async fn serve<L>(listener: L, router: axum::Router) -> Result<(), String>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    PeerAddress: for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    // Each request carries its connection's peer, for the audit log.
    let router = router.into_make_service_with_connect_info::<PeerAddress>();
    let serve = axum::serve(listener, router).with_graceful_shutdown(shutdown_signal());
    tokio::select! {
        served = serve => served.map_err(|e| format!("server failed: {e}")),
        // Agents hold breakpoint streams open for ever; don't wait on them long.
        () = async { shutdown_signal().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => Ok(()),
    }
}

/// The store the server keeps its state in.
struct OpenedStore {
    store: Arc<dyn Store>,
    /// What other replicas change in a shared store; `None` for a store of this process alone.
    changes: Option<mpsc::Receiver<StoreChange>>,
    /// Where the data is, fit to print (no password).
    location: String,
}

async fn open_store(config: &ServerConfig) -> Result<OpenedStore, String> {
    match &config.database {
        None => {
            let store = SqliteStore::open(&config.data_dir)
                .await
                .map_err(|e| format!("cannot open the database in {}: {e}", config.data_dir.display()))?;
            Ok(OpenedStore {
                store: Arc::new(store),
                changes: None,
                location: config.data_dir.display().to_string(),
            })
        }
        Some(url) => {
            let store = PostgresStore::connect(url.expose())
                .await
                .map_err(|e| e.to_string())?;
            Ok(OpenedStore {
                changes: Some(store.watch_changes()),
                location: store.location().to_owned(),
                store: Arc::new(store),
            })
        }
    }
}

fn create_data_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// On a first start (no tokens at all), creates an admin token and writes it
/// to `<data-dir>/admin.token`, readable by the owner only.
async fn ensure_admin_token(store: &dyn Store, data_dir: &Path) -> Result<(), String> {
    let count = store
        .token_count()
        .await
        .map_err(|e| format!("cannot read tokens: {e}"))?;
    if count > 0 {
        return Ok(());
    }
    let minted = mint_token(Role::Admin, "admin", "keyhole server (first start)", now_ms());
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .map_err(|e| format!("cannot write the admin token to {}: {e}", path.display()))?;
    writeln!(file, "{}", minted.bearer)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write the admin token to {}: {e}", path.display()))?;
    store
        .insert_token(&minted.record)
        .await
        .map_err(|e| format!("cannot store the admin token: {e}"))?;
    eprintln!(
        "created an admin token in {} (readable only by you); the CLI uses it from this directory, or set KEYHOLE_TOKEN",
        path.display()
    );
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
