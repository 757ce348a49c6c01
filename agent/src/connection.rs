//! The agent's connection to the control plane, on its own thread: register
//! the probe catalogue, follow the breakpoint stream, upload snapshots in
//! batches until acknowledged, report status; reconnect with backoff, and
//! keep enforcing the last breakpoint set meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keyhole_proto::bearer::BearerToken;
use keyhole_proto::tls::{self, CaFile};
use keyhole_proto::v1::agent_service_client::AgentServiceClient;
use keyhole_proto::v1::{
    BreakpointSet, BreakpointState, DropCount, InstanceStatus, RegisterRequest, ReportStatusRequest,
    Snapshot, UploadSnapshotsRequest, WatchBreakpointsRequest,
};
use prost::Message as _;
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::agent::{unix_millis, AgentConfig, AgentCore, AgentError, ShutdownReport};
use crate::backoff::Backoff;
use crate::callsite;
use crate::queue::{PendingSnapshot, SnapshotReceiver};
use crate::stack::Symbolizer;

/// How long a connection attempt may take (gRPC's minimum connect timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one unary call may take before the connection is treated as lost.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Snapshots per upload batch.
const BATCH_SIZE: usize = 100;
/// How long a batch waits for more snapshots after its first.
const BATCH_LINGER: Duration = Duration::from_millis(100);
/// How often status and refusal counts are reported.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

type Client = AgentServiceClient<InterceptedService<Channel, BearerToken>>;

/// Why a connection ended.
enum Ended {
    Stopped,
    Lost(String),
}

/// Snapshots on their way up: the batch being filled, and the batch sent but
/// not yet acknowledged (retried as is, so the control plane can drop repeats).
struct Uploader {
    receiver: SnapshotReceiver,
    filling: Vec<PendingSnapshot>,
    filling_since: Option<Instant>,
    in_flight: Option<InFlight>,
    symbolizer: Symbolizer,
    uploaded: u64,
    closed: bool,
}

impl Uploader {
    /// Waits until a batch is ready. Cancel-safe: what was received is kept
    /// in `self`, never in the future.
    async fn ready(&mut self) {
        loop {
            if self.in_flight.is_some() || self.filling.len() >= BATCH_SIZE {
                return;
            }
            let deadline = self.filling_since.map(|since| since + BATCH_LINGER);
            if deadline.is_some_and(|at| at <= Instant::now()) {
                return;
            }
            let received = match deadline {
                Some(at) => match tokio::time::timeout_at(at, self.receiver.recv()).await {
                    Ok(received) => received,
                    Err(_) => return,
                },
                None if self.closed => return std::future::pending().await,
                None => self.receiver.recv().await,
            };
            match received {
                Some(pending) => {
                    self.filling_since.get_or_insert_with(Instant::now);
                    self.filling.push(pending);
                }
                None => self.closed = true,
            }
        }
    }

    /// Takes whatever is waiting without waiting for more.
    fn take_waiting(&mut self) {
        while self.filling.len() < BATCH_SIZE {
            match self.receiver.try_recv() {
                Some(pending) => self.filling.push(pending),
                None => break,
            }
        }
    }

    /// Turns the filled batch (and refusal counts) into the request to send.
    fn seal(&mut self, core: &AgentCore) {
        if self.in_flight.is_some() {
            return;
        }
        let drops = core.installed().drain_drops();
        if self.filling.is_empty() && drops.is_empty() {
            return;
        }
        let mut bytes = 0;
        let mut snapshots = Vec::with_capacity(self.filling.len());
        for pending in self.filling.drain(..) {
            bytes += pending.bytes;
            match pending.resolve(&mut self.symbolizer) {
                Ok(snapshot) => snapshots.push(snapshot.encode_to_vec()),
                // What the agent encoded itself always decodes; were it not to,
                // say so rather than send nonsense.
                Err(error) => tracing::error!(%error, "keyhole: a queued snapshot does not decode"),
            }
        }
        self.filling_since = None;
        self.in_flight = Some(InFlight {
            snapshots,
            drops,
            bytes,
        });
    }

    /// Sends the sealed batch; on success gives its bytes back to the queue.
    async fn send(&mut self, client: &mut Client, agent_id: &str) -> Result<(), String> {
        let Some(batch) = &self.in_flight else {
            return Ok(());
        };
        let request = UploadSnapshotsRequest {
            // After a reconnect the control plane may know this agent by a new id.
            agent_id: agent_id.to_owned(),
            snapshots: batch
                .snapshots
                .iter()
                .filter_map(|encoded| Snapshot::decode(encoded.as_slice()).ok())
                .collect(),
            drops: batch.drops.clone(),
        };
        let count = request.snapshots.len() as u64;
        let bytes = batch.bytes;
        match timeout(CALL_TIMEOUT, client.upload_snapshots(request)).await {
            Ok(Ok(_)) => {
                self.receiver.release(bytes);
                self.uploaded += count;
                self.in_flight = None;
                Ok(())
            }
            Ok(Err(status)) => Err(format!("upload refused: {}", status.message())),
            Err(_) => Err("upload timed out".into()),
        }
    }

    fn unflushed(&self) -> u64 {
        let in_flight = self.in_flight.as_ref().map_or(0, |batch| batch.snapshots.len());
        (in_flight + self.filling.len() + self.receiver.len()) as u64
    }
}

/// A sealed batch: kept encoded between attempts, decoded only to send.
struct InFlight {
    snapshots: Vec<Vec<u8>>,
    drops: Vec<DropCount>,
    bytes: usize,
}

/// The agent thread's main loop; returns when told to stop and has flushed.
pub async fn run(
    core: Arc<AgentCore>,
    receiver: SnapshotReceiver,
    mut stop: watch::Receiver<bool>,
) -> ShutdownReport {
    let mut uploader = Uploader {
        receiver,
        filling: Vec::new(),
        filling_since: None,
        in_flight: None,
        symbolizer: Symbolizer::default(),
        uploaded: 0,
        closed: false,
    };
    uploader.symbolizer.warm_up();
    let mut backoff = Backoff::new(unix_millis() as u64 ^ u64::from(std::process::id()));
    let mut connection: Option<(Client, String)> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let attempt = match connection.take() {
            Some(connected) => Ok(connected),
            None => connect(&core).await,
        };
        match attempt {
            Ok((mut client, agent_id)) => {
                backoff.reset();
                match serve(&core, &mut client, &agent_id, &mut uploader, &mut stop).await {
                    Ended::Stopped => {
                        connection = Some((client, agent_id));
                        break;
                    }
                    Ended::Lost(why) => {
                        tracing::warn!(reason = %why, "keyhole: lost the control plane; reconnecting")
                    }
                }
            }
            Err(why) => tracing::warn!(reason = %why, "keyhole: cannot reach the control plane"),
        }
        tokio::select! {
            () = sleep(backoff.next_delay()) => {}
            _ = stop.changed() => break,
        }
    }
    let deadline = core.config.shutdown_deadline;
    let _ = timeout(deadline, flush(&core, connection, &mut uploader)).await;
    ShutdownReport {
        accepted: 0,
        uploaded: uploader.uploaded,
        unflushed: uploader.unflushed(),
    }
}

/// Uploads everything accepted so far, reconnecting if needed.
async fn flush(core: &AgentCore, connection: Option<(Client, String)>, uploader: &mut Uploader) {
    let Some((mut client, agent_id)) = (match connection {
        Some(connected) => Some(connected),
        None => connect(core).await.ok(),
    }) else {
        return;
    };
    loop {
        uploader.take_waiting();
        uploader.seal(core);
        if uploader.in_flight.is_none() {
            return;
        }
        if uploader.send(&mut client, &agent_id).await.is_err() {
            return;
        }
    }
}

/// The control plane at the configured address, over TLS for `https://`;
/// checked when the agent starts, so a wrong address or CA file fails `init`.
pub(crate) fn endpoint(config: &AgentConfig) -> Result<Endpoint, AgentError> {
    let address = &config.address;
    let endpoint = match Endpoint::from_shared(address.clone()) {
        Ok(endpoint) if address.starts_with("http://") || address.starts_with("https://") => endpoint,
        _ => return Err(AgentError::InvalidAddress(address.clone())),
    };
    let ca = config
        .ca_file
        .as_ref()
        .map(CaFile::read)
        .transpose()
        .map_err(AgentError::Tls)?;
    let endpoint = tls::secure(endpoint, ca.as_ref()).map_err(AgentError::Tls)?;
    Ok(endpoint.connect_timeout(CONNECT_TIMEOUT))
}

async fn connect(core: &AgentCore) -> Result<(Client, String), String> {
    let config = &core.config;
    let channel = core.endpoint.connect().await.map_err(|e| {
        let error = with_causes(e.to_string(), std::error::Error::source(&e));
        format!("connecting to {}: {error}", config.address)
    })?;
    let bearer = BearerToken::new(&config.token).map_err(|e| e.to_string())?;
    let mut client = AgentServiceClient::new(InterceptedService::new(channel, bearer));
    let (sites, _) = callsite::catalogue();
    let request = RegisterRequest {
        service: config.service.clone(),
        instance_id: config.instance_id.clone(),
        version: config.version.clone(),
        labels: config.labels.clone(),
        probes: sites.iter().map(|site| site.meta().to_proto()).collect(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let registered = timeout(CALL_TIMEOUT, client.register(request))
        .await
        .map_err(|_| "register timed out".to_string())?
        .map_err(|status| {
            let error = with_causes(status.message().to_owned(), std::error::Error::source(&status));
            format!("register refused: {error}")
        })?
        .into_inner();
    core.set_keys(&registered.keys);
    Ok((client, registered.agent_id))
}

/// `message` and the causes under it, each once: tonic's own message
/// ("transport error") says nothing of a refused connection, an untrusted
/// certificate or a plain-HTTP client at a TLS port.
fn with_causes(message: String, mut cause: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut text = message;
    while let Some(error) = cause {
        let next = error.to_string();
        if !text.ends_with(&next) {
            text = format!("{text}: {next}");
        }
        cause = error.source();
    }
    text
}

/// One connected period: the breakpoint stream, uploads and status reports,
/// until the connection fails or the agent is told to stop.
async fn serve(
    core: &AgentCore,
    client: &mut Client,
    agent_id: &str,
    uploader: &mut Uploader,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let known_version = core.installed().version;
    let request = WatchBreakpointsRequest {
        agent_id: agent_id.to_owned(),
        known_version,
    };
    let mut sets = match timeout(CALL_TIMEOUT, client.clone().watch_breakpoints(request)).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return Ended::Lost(format!("breakpoint stream refused: {}", status.message())),
        Err(_) => return Ended::Lost("breakpoint stream timed out".into()),
    };
    let mut reported: HashMap<String, (i32, u64)> = HashMap::new();
    let mut pending_statuses: Vec<InstanceStatus> = Vec::new();
    let mut ticker = tokio::time::interval(STATUS_INTERVAL);
    loop {
        tokio::select! {
            message = sets.message() => match message {
                Ok(Some(set)) => pending_statuses.extend(install(core, set)),
                Ok(None) => return Ended::Lost("the control plane closed the breakpoint stream".into()),
                Err(status) => return Ended::Lost(format!("breakpoint stream failed: {}", status.message())),
            },
            () = uploader.ready() => {
                uploader.take_waiting();
                uploader.seal(core);
                if let Err(why) = uploader.send(client, agent_id).await {
                    return Ended::Lost(why);
                }
            }
            _ = ticker.tick() => {
                core.installed().remove_expired(unix_millis());
                pending_statuses.extend(changed_statuses(core, &mut reported));
                if !pending_statuses.is_empty() {
                    let request = ReportStatusRequest {
                        agent_id: agent_id.to_owned(),
                        statuses: std::mem::take(&mut pending_statuses),
                    };
                    match timeout(CALL_TIMEOUT, client.report_status(request)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(status)) => return Ended::Lost(format!("status refused: {}", status.message())),
                        Err(_) => return Ended::Lost("status report timed out".into()),
                    }
                }
                // Refusals are counted even when nothing is captured.
                if uploader.in_flight.is_none() && uploader.filling.is_empty() {
                    uploader.seal(core);
                    if let Err(why) = uploader.send(client, agent_id).await {
                        return Ended::Lost(why);
                    }
                }
            }
            _ = stop.changed() => return Ended::Stopped,
        }
    }
}

/// Installs a set from the control plane; returns the statuses to report.
fn install(core: &AgentCore, set: BreakpointSet) -> Vec<InstanceStatus> {
    if !set.keys.is_empty() {
        core.set_keys(&set.keys);
    }
    let ids: Vec<String> = set.breakpoints.iter().map(|bp| bp.id.clone()).collect();
    let mut installed = core.installed();
    installed.version = set.version;
    let errors = installed.apply(set.breakpoints, unix_millis());
    let mut statuses: Vec<InstanceStatus> = ids
        .into_iter()
        .filter(|id| !errors.iter().any(|e| &e.breakpoint_id == id))
        .map(|breakpoint_id| InstanceStatus {
            breakpoint_id,
            state: BreakpointState::Received as i32,
            ..Default::default()
        })
        .collect();
    statuses.extend(errors);
    statuses
}

/// Statuses that moved since the last report (installed, hit, rate limited,
/// expired, condition errors).
fn changed_statuses(core: &AgentCore, reported: &mut HashMap<String, (i32, u64)>) -> Vec<InstanceStatus> {
    let installed = core.installed();
    let now = unix_millis();
    let mut statuses = Vec::new();
    for breakpoint in installed.current() {
        let hits = u64::from(breakpoint.hits());
        let condition_error = breakpoint
            .condition_error
            .lock()
            .ok()
            .and_then(|last| last.clone());
        let (state, message) = if breakpoint.is_expired(now) {
            (BreakpointState::Expired, String::new())
        } else if let Some(error) = condition_error {
            (BreakpointState::Error, error)
        } else if hits >= u64::from(breakpoint.definition.max_hits) {
            (BreakpointState::Hit, "hit limit reached".to_owned())
        } else if hits > 0 {
            (BreakpointState::Hit, String::new())
        } else {
            (BreakpointState::Installed, String::new())
        };
        let now_reported = (state as i32, hits);
        if reported.get(breakpoint.id()) != Some(&now_reported) {
            reported.insert(breakpoint.id().to_owned(), now_reported);
            statuses.push(InstanceStatus {
                breakpoint_id: breakpoint.id().to_owned(),
                state: state as i32,
                message,
                hits,
                ..Default::default()
            });
        }
    }
    statuses
}
