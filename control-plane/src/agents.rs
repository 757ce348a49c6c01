//! `AgentService`: registration, the breakpoint stream, snapshot ingest and
//! status reports from embedded agents.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use keyhole_proto::v1::agent_service_server::AgentService;
use keyhole_proto::v1::{
    Breakpoint, BreakpointSet, Instance, RegisterRequest, RegisterResponse, ReportStatusRequest,
    ReportStatusResponse, Snapshot, UploadSnapshotsRequest, UploadSnapshotsResponse, WatchBreakpointsRequest,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::auth::Role;
use crate::ids::now_ms;
use crate::state::ControlPlane;
use crate::store::{InstanceRecord, SnapshotRow, Upload};
use crate::{check_required, storage_status};

/// Probes one instance may register.
pub const MAX_PROBES_PER_INSTANCE: usize = 10_000;
/// Longest snapshot id an agent may choose.
pub const MAX_SNAPSHOT_ID_LEN: usize = 128;
/// Breakpoint sets buffered per stream before the sender waits.
const STREAM_BUFFER: usize = 4;
/// How often an idle breakpoint stream re-reads the state, so a missed wake-up
/// only delays a change.
const STREAM_REFRESH: Duration = Duration::from_secs(30);
/// Agents whose origin an uploading replica remembers at most; uploads of
/// others read the store for it.
const REMEMBERED_ORIGINS: usize = 100_000;

pub struct AgentApi {
    plane: Arc<ControlPlane>,
    /// Where each agent's snapshots come from, by agent id, as it registered.
    /// The store checks it on every upload, so an agent that registered again
    /// through another replica is read afresh.
    origins: Mutex<HashMap<String, Origin>>,
}

/// What an upload stamps on an agent's snapshots: the agent's registration,
/// not what the snapshots claim.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    service: String,
    instance_id: String,
}

impl Origin {
    fn of(record: &InstanceRecord) -> Self {
        Self {
            service: record.service.clone(),
            instance_id: record.instance.instance_id.clone(),
        }
    }
}

impl AgentApi {
    pub fn new(plane: Arc<ControlPlane>) -> Self {
        Self {
            plane,
            origins: Mutex::default(),
        }
    }

    fn origins(&self) -> MutexGuard<'_, HashMap<String, Origin>> {
        // Entries are replaced whole: a panic elsewhere cannot leave one half-written.
        self.origins
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remember(&self, agent_id: &str, origin: Origin) {
        let mut origins = self.origins();
        if origins.len() < REMEMBERED_ORIGINS || origins.contains_key(agent_id) {
            origins.insert(agent_id.to_owned(), origin);
        }
    }

    /// `agent_id`'s origin, as remembered or else as stored.
    async fn origin(&self, agent_id: &str) -> Result<Origin, Status> {
        if let Some(origin) = self.origins().get(agent_id) {
            return Ok(origin.clone());
        }
        let origin = Origin::of(&self.instance(agent_id).await?);
        self.remember(agent_id, origin.clone());
        Ok(origin)
    }

    async fn instance(&self, agent_id: &str) -> Result<InstanceRecord, Status> {
        self.plane
            .store
            .get_instance(agent_id)
            .await
            .map_err(|e| storage_status(&e))?
            .ok_or_else(|| Status::not_found(format!("unknown agent id `{agent_id}`; call Register first")))
    }
}

/// Stamps `snapshots` with where they came from and when they arrived;
/// returns their encodings, as they are stored.
fn stamp(snapshots: &mut [Snapshot], origin: &Origin, now: i64) -> Vec<Vec<u8>> {
    snapshots
        .iter_mut()
        .map(|snapshot| {
            snapshot.service.clone_from(&origin.service);
            snapshot.instance_id.clone_from(&origin.instance_id);
            snapshot.received_at_unix_ms = now;
            snapshot.encode_to_vec()
        })
        .collect()
}

/// Whether an instance with `labels` should install `breakpoint`.
fn selects(breakpoint: &Breakpoint, instance: &Instance) -> bool {
    breakpoint
        .instance_labels
        .iter()
        .all(|(key, value)| instance.labels.get(key) == Some(value))
}

type BreakpointStream = Pin<Box<dyn Stream<Item = Result<BreakpointSet, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        self.plane.auth.check(&request, Role::Agent).await?;
        let request = request.into_inner();
        let max = self.plane.limits.max_name_len;
        check_required("service", &request.service, max)?;
        check_required("instance id", &request.instance_id, max)?;
        if request.probes.len() > MAX_PROBES_PER_INSTANCE {
            return Err(Status::invalid_argument(format!(
                "{} probes registered; at most {MAX_PROBES_PER_INSTANCE} are accepted",
                request.probes.len()
            )));
        }
        let mut labels = HashSet::new();
        let mut probes = Vec::with_capacity(request.probes.len());
        for probe in request.probes {
            check_required("probe label", &probe.label, max)?;
            if labels.insert(probe.label.clone()) {
                probes.push(probe);
            } else {
                tracing::warn!(service = %request.service, label = %probe.label, "duplicate probe label; keeping the first");
            }
        }
        let now = now_ms();
        let agent_id = format!("{}/{}", request.service, request.instance_id);
        let record = InstanceRecord {
            service: request.service,
            instance: Instance {
                agent_id: agent_id.clone(),
                instance_id: request.instance_id,
                version: request.version,
                labels: request.labels,
                registered_at_unix_ms: now,
                last_seen_unix_ms: now,
                connected: false,
                probe_count: u32::try_from(probes.len()).unwrap_or(u32::MAX),
            },
        };
        self.plane
            .store
            .register_instance(&record, &probes)
            .await
            .map_err(|e| storage_status(&e))?;
        self.remember(&agent_id, Origin::of(&record));
        tracing::info!(%agent_id, probes = probes.len(), "agent registered");
        Ok(Response::new(RegisterResponse {
            agent_id,
            keys: self.plane.keys().verification.clone(),
        }))
    }

    type WatchBreakpointsStream = BreakpointStream;

    async fn watch_breakpoints(
        &self,
        request: Request<WatchBreakpointsRequest>,
    ) -> Result<Response<Self::WatchBreakpointsStream>, Status> {
        self.plane.auth.check(&request, Role::Agent).await?;
        let request = request.into_inner();
        let record = self.instance(&request.agent_id).await?;
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let plane = self.plane.clone();
        tokio::spawn(async move {
            let _connected = plane.connect(&record.instance.agent_id);
            if let Err(status) = stream_breakpoints(&plane, &record, request.known_version, &sender).await {
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn upload_snapshots(
        &self,
        request: Request<UploadSnapshotsRequest>,
    ) -> Result<Response<UploadSnapshotsResponse>, Status> {
        self.plane.auth.check(&request, Role::Agent).await?;
        let mut request = request.into_inner();
        let max_batch = self.plane.limits.max_upload_batch;
        if request.snapshots.len() > max_batch {
            return Err(Status::invalid_argument(format!(
                "{} snapshots in one batch; send at most {max_batch}",
                request.snapshots.len()
            )));
        }
        for snapshot in &request.snapshots {
            check_required("snapshot id", &snapshot.id, MAX_SNAPSHOT_ID_LEN)?;
            check_required(
                "snapshot breakpoint id",
                &snapshot.breakpoint_id,
                MAX_SNAPSHOT_ID_LEN,
            )?;
        }
        let agent_id = request.agent_id.as_str();
        let now = now_ms();
        let mut origin = self.origin(agent_id).await?;
        let mut reread = false;
        let outcome = loop {
            let bodies = stamp(&mut request.snapshots, &origin, now);
            let rows: Vec<SnapshotRow<'_>> = request
                .snapshots
                .iter()
                .zip(&bodies)
                .map(|(snapshot, body)| SnapshotRow::of(snapshot, body))
                .collect();
            let upload = Upload {
                agent_id,
                service: &origin.service,
                at: now,
                snapshots: &rows,
                drops: &request.drops,
            };
            match self.plane.store.store_upload(&upload).await {
                Ok(Some(outcome)) => break outcome,
                Ok(None) if !reread => {
                    // Registered again, under another service, through another replica.
                    self.origins().remove(agent_id);
                    origin = self.origin(agent_id).await?;
                    reread = true;
                }
                Ok(None) => {
                    return Err(Status::aborted(format!(
                        "agent id `{agent_id}` is being registered again meanwhile; send the batch again"
                    )))
                }
                Err(e) => return Err(storage_status(&e)),
            }
        };
        self.plane.metrics.snapshots_ingested(outcome);
        self.plane.metrics.hits_refused(&request.drops);
        if let Some(newest) = outcome.newest {
            self.plane.snapshot_seen(newest);
        }
        Ok(Response::new(UploadSnapshotsResponse {
            stored: outcome.stored,
            duplicates: outcome.duplicates,
        }))
    }

    async fn report_status(
        &self,
        request: Request<ReportStatusRequest>,
    ) -> Result<Response<ReportStatusResponse>, Status> {
        self.plane.auth.check(&request, Role::Agent).await?;
        let request = request.into_inner();
        let record = self.instance(&request.agent_id).await?;
        let now = now_ms();
        for mut status in request.statuses {
            check_required("status breakpoint id", &status.breakpoint_id, MAX_SNAPSHOT_ID_LEN)?;
            status.agent_id = record.instance.agent_id.clone();
            status.instance_id = record.instance.instance_id.clone();
            status.updated_at_unix_ms = now;
            self.plane
                .store
                .upsert_status(&status)
                .await
                .map_err(|e| storage_status(&e))?;
        }
        Ok(Response::new(ReportStatusResponse {}))
    }
}

/// Sends `record`'s breakpoint set now (unless the agent already has this
/// version) and again whenever it changes, including when a breakpoint
/// expires, until the agent goes away.
async fn stream_breakpoints(
    plane: &ControlPlane,
    record: &InstanceRecord,
    known_version: u64,
    sender: &mpsc::Sender<Result<BreakpointSet, Status>>,
) -> Result<(), Status> {
    let mut version_changes = plane.breakpoint_version.subscribe();
    // What the agent has: breakpoint ids and key ids.
    let mut last_sent: Option<(Vec<String>, Vec<String>)> = None;
    loop {
        let version = *version_changes.borrow_and_update();
        let now = now_ms();
        let breakpoints: Vec<Breakpoint> = plane
            .store
            .active_breakpoints(&record.service, now)
            .await
            .map_err(|e| storage_status(&e))?
            .into_iter()
            .filter(|breakpoint| selects(breakpoint, &record.instance))
            .collect();
        let keys = plane.keys().verification.clone();
        let ids = (
            breakpoints.iter().map(|b| b.id.clone()).collect::<Vec<_>>(),
            keys.iter().map(|k| k.key_id.clone()).collect::<Vec<_>>(),
        );
        let send = match &last_sent {
            None => version != known_version || known_version == 0,
            Some(previous) => *previous != ids,
        };
        if last_sent.is_none() && !send {
            last_sent = Some(ids.clone());
        }
        let next_expiry = breakpoints.iter().map(|b| b.expires_at_unix_ms).min();
        if send {
            let set = BreakpointSet {
                version,
                breakpoints,
                keys,
            };
            if sender.send(Ok(set)).await.is_err() {
                return Ok(());
            }
            last_sent = Some(ids);
        }
        let until_expiry = next_expiry
            .map(|at| Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0)))
            .unwrap_or(STREAM_REFRESH)
            .min(STREAM_REFRESH);
        tokio::select! {
            changed = version_changes.changed() => if changed.is_err() { return Ok(()) },
            () = tokio::time::sleep(until_expiry) => {}
            () = sender.closed() => return Ok(()),
        }
    }
}
