//! `AgentService`: registration, the breakpoint stream and status reports
//! from embedded agents; snapshot ingest is [`crate::ingest`]'s.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use keyhole_proto::v1::agent_service_server::AgentService;
use keyhole_proto::v1::{
    Breakpoint, BreakpointSet, Instance, RegisterRequest, RegisterResponse, ReportStatusRequest,
    ReportStatusResponse, UploadSnapshotsRequest, UploadSnapshotsResponse, WatchBreakpointsRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::auth::Role;
use crate::ids::now_ms;
use crate::ingest::{Ingest, UploadWire};
use crate::state::ControlPlane;
use crate::store::InstanceRecord;
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

pub struct AgentApi {
    plane: Arc<ControlPlane>,
    ingest: Arc<Ingest>,
}

impl AgentApi {
    pub fn new(plane: Arc<ControlPlane>) -> Self {
        Self {
            ingest: Arc::new(Ingest::new(plane.clone())),
            plane,
        }
    }

    /// What takes in this service's uploads (also served on a route of its own).
    pub fn ingest(&self) -> Arc<Ingest> {
        self.ingest.clone()
    }
}

/// The registration of `agent_id`, or the status that says to register first.
pub(crate) async fn registered_instance(
    plane: &ControlPlane,
    agent_id: &str,
) -> Result<InstanceRecord, Status> {
    plane
        .store
        .get_instance(agent_id)
        .await
        .map_err(|e| storage_status(&e))?
        .ok_or_else(|| Status::not_found(format!("unknown agent id `{agent_id}`; call Register first")))
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
        self.ingest.registered(&record);
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
        let record = registered_instance(&self.plane, &request.agent_id).await?;
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
        self.ingest.upload(request.map(UploadWire::from)).await
    }

    async fn report_status(
        &self,
        request: Request<ReportStatusRequest>,
    ) -> Result<Response<ReportStatusResponse>, Status> {
        self.plane.auth.check(&request, Role::Agent).await?;
        let request = request.into_inner();
        let record = registered_instance(&self.plane, &request.agent_id).await?;
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
