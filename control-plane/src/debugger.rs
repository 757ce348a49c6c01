//! `DebuggerService`: what people do through the CLI and the UI — list
//! services and probes, open sessions, set breakpoints, read snapshots,
//! manage tokens, read the audit log. Every change and every read of captured
//! values (a snapshot viewed, listed or watched) is written to the audit log
//! first (see [`crate::audit`]).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use keyhole_proto::limits::DEFAULT_SESSION_TTL;
use keyhole_proto::v1::debugger_service_server::DebuggerService;
use keyhole_proto::v1::{
    ApiToken, Breakpoint, CloseSessionRequest, CreateTokenRequest, DeleteBreakpointRequest,
    GetBreakpointRequest, GetSnapshotRequest, ListAuditRequest, ListAuditResponse, ListBreakpointsRequest,
    ListBreakpointsResponse, ListProbesRequest, ListProbesResponse, ListServicesRequest,
    ListServicesResponse, ListSessionKeysRequest, ListSessionKeysResponse, ListSessionsRequest,
    ListSessionsResponse, ListSnapshotsResponse, ListTokensRequest, ListTokensResponse, OpenSessionRequest,
    RevokeTokenRequest, RotateSessionKeysRequest, Service, ServiceProbe, Session, SessionKey,
    SetBreakpointRequest, Snapshot, SnapshotFilter,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::audit::{entry_message, Actor, AuditAction};
use crate::auth::{mint_token, Role};
use crate::breakpoints::{self, BreakpointContext, Refusal};
use crate::ids::{self, now_ms};
use crate::state::ControlPlane;
use crate::store::{ApiTokenRecord, AuditFilter, AuditRecord, SessionRecord};
use crate::{check_text, storage_status};

/// The target of a key rotation's audit entry: the set of session-signing keys.
const SESSION_KEYS_TARGET: &str = "session-keys";
/// Snapshots a watch stream reads from storage per wake-up.
const WATCH_PAGE: u32 = 100;
/// Snapshots buffered per watch stream before the sender waits.
const WATCH_BUFFER: usize = 64;
/// How often an idle watch re-reads storage, so a missed wake-up only delays.
const WATCH_REFRESH: Duration = Duration::from_secs(5);

pub struct DebuggerApi {
    plane: Arc<ControlPlane>,
}

macro_rules! stored {
    ($e:expr) => {
        $e.await.map_err(|e| storage_status(&e))?
    };
}

fn session_message(record: &SessionRecord, token: String) -> Session {
    Session {
        id: record.id.clone(),
        name: record.name.clone(),
        token,
        created_at_unix_ms: record.created_at,
        expires_at_unix_ms: record.expires_at,
        closed_at_unix_ms: record.closed_at.unwrap_or(0),
        creator: record.creator.clone(),
    }
}

impl DebuggerApi {
    pub fn new(plane: Arc<ControlPlane>) -> Self {
        Self { plane }
    }

    /// The caller of `request`, if its token allows `needed`, as the audit log names it.
    async fn actor<T>(&self, request: &Request<T>, needed: Role) -> Result<Actor, Status> {
        let principal = self.plane.auth.check(request, needed).await?;
        Ok(Actor::new(principal, request))
    }

    /// Writes `entry` before what it records is done; if it cannot be
    /// written, the call is refused.
    async fn audit(&self, entry: AuditRecord) -> Result<(), Status> {
        self.plane.store.insert_audit(&entry).await.map_err(|error| {
            tracing::error!(%error, action = %entry.action, target = %entry.target, "writing the audit log failed");
            Status::unavailable(format!(
                "the control plane cannot write its audit log ({error}), so it did not do this; \
                 try again once its storage is back"
            ))
        })
    }

    async fn session_keys(&self) -> Result<Response<ListSessionKeysResponse>, Status> {
        let signing = self.plane.keys().signer.key_id().to_owned();
        let keys = stored!(self.plane.store.signing_keys())
            .into_iter()
            .rev()
            .map(|key| SessionKey {
                signing: key.key_id == signing,
                key_id: key.key_id,
                created_at_unix_ms: key.created_at,
                retired_at_unix_ms: key.retired_at.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(ListSessionKeysResponse { keys }))
    }

    /// How many items a list call asked for (0: the default), if at most the maximum.
    fn list_limit(&self, asked: u32) -> Result<u32, Status> {
        let limits = &self.plane.limits;
        match asked {
            0 => Ok(limits.default_list_limit),
            n if n > limits.max_list_limit => Err(Status::invalid_argument(format!(
                "limit {n} is above the maximum of {}",
                limits.max_list_limit
            ))),
            n => Ok(n),
        }
    }

    /// Fills in what agents reported about a breakpoint: per-instance status
    /// and refused hits.
    async fn add_observations(&self, breakpoint: &mut Breakpoint) -> Result<(), Status> {
        breakpoint.statuses = stored!(self.plane.store.statuses(&breakpoint.id));
        breakpoint.refusals = stored!(self.plane.store.drop_counts(&breakpoint.id));
        Ok(())
    }
}

fn token_message(record: &ApiTokenRecord, secret: String) -> ApiToken {
    ApiToken {
        id: record.id.clone(),
        name: record.name.clone(),
        role: record.role.to_string(),
        secret,
        created_at_unix_ms: record.created_at,
        revoked_at_unix_ms: record.revoked_at.unwrap_or(0),
        creator: record.creator.clone(),
    }
}

fn matches_filter(snapshot: &Snapshot, filter: &SnapshotFilter) -> bool {
    [
        (&filter.session_id, &snapshot.session_id),
        (&filter.breakpoint_id, &snapshot.breakpoint_id),
        (&filter.service, &snapshot.service),
        (&filter.trace_id, &snapshot.trace_id),
    ]
    .into_iter()
    .all(|(wanted, actual)| wanted.is_empty() || wanted == actual)
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<Snapshot, Status>> + Send>>;

#[tonic::async_trait]
impl DebuggerService for DebuggerApi {
    async fn list_services(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        self.plane.auth.check(&request, Role::Viewer).await?;
        let mut services: BTreeMap<String, Service> = BTreeMap::new();
        let probes = stored!(self.plane.store.list_probes(None));
        for record in stored!(self.plane.store.list_instances()) {
            let service = services.entry(record.service.clone()).or_insert_with(|| Service {
                name: record.service.clone(),
                ..Default::default()
            });
            let mut instance = record.instance;
            instance.connected = self.plane.is_connected(&instance.agent_id);
            service.instances.push(instance);
        }
        for service in services.values_mut() {
            let mut labels: Vec<&str> = probes
                .iter()
                .filter(|p| p.service == service.name)
                .map(|p| p.probe.label.as_str())
                .collect();
            labels.sort_unstable();
            labels.dedup();
            service.probe_count = u32::try_from(labels.len()).unwrap_or(u32::MAX);
        }
        Ok(Response::new(ListServicesResponse {
            services: services.into_values().collect(),
        }))
    }

    async fn list_probes(
        &self,
        request: Request<ListProbesRequest>,
    ) -> Result<Response<ListProbesResponse>, Status> {
        self.plane.auth.check(&request, Role::Viewer).await?;
        let service = request.into_inner().service;
        let records = stored!(self
            .plane
            .store
            .list_probes(Some(service.as_str()).filter(|s| !s.is_empty())));
        let mut probes: Vec<ServiceProbe> = Vec::new();
        for record in records {
            match probes.last_mut() {
                Some(last)
                    if last.service == record.service
                        && last.probe.as_ref().map(|p| &p.label) == Some(&record.probe.label) =>
                {
                    last.instances += 1;
                }
                _ => probes.push(ServiceProbe {
                    service: record.service,
                    probe: Some(record.probe),
                    instances: 1,
                }),
            }
        }
        if probes.is_empty() && !service.is_empty() {
            let known = stored!(self.plane.store.list_instances())
                .iter()
                .any(|i| i.service == service);
            if !known {
                return Err(Status::not_found(format!(
                    "unknown service `{service}`: no agent of that service has registered; `keyhole services list` shows the known ones"
                )));
            }
        }
        Ok(Response::new(ListProbesResponse { probes }))
    }

    async fn open_session(&self, request: Request<OpenSessionRequest>) -> Result<Response<Session>, Status> {
        let actor = self.actor(&request, Role::Debugger).await?;
        let request = request.into_inner();
        check_text("session name", &request.name, self.plane.limits.max_name_len)?;
        let max = self.plane.limits.max_session_ttl;
        let ttl = match request.ttl_seconds {
            0 => DEFAULT_SESSION_TTL,
            seconds => Duration::from_secs(seconds),
        };
        if ttl > max {
            return Err(Status::invalid_argument(format!(
                "session ttl of {}s is above the maximum of {}s",
                ttl.as_secs(),
                max.as_secs()
            )));
        }
        let now = now_ms();
        let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let keys = self.plane.keys();
        let record = SessionRecord {
            id: ids::new_id("ses"),
            name: request.name,
            creator: actor.principal.display_name(),
            key_id: keys.signer.key_id().to_owned(),
            created_at: now,
            expires_at,
            closed_at: None,
        };
        let expires_unix = u64::try_from(expires_at / 1000).unwrap_or(0);
        let token = keys
            .signer
            .sign(&record.id, expires_unix)
            .map_err(|e| Status::internal(format!("signing the session failed: {e}")))?;
        let detail = format!("name {:?}, ttl {}s", record.name, ttl.as_secs());
        self.audit(actor.entry(AuditAction::SessionOpen, &record.id, detail))
            .await?;
        stored!(self.plane.store.insert_session(&record));
        tracing::info!(session = %record.id, creator = %record.creator, "session opened");
        Ok(Response::new(session_message(&record, token)))
    }

    async fn close_session(
        &self,
        request: Request<CloseSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let actor = self.actor(&request, Role::Debugger).await?;
        let id = request.into_inner().id;
        let not_found = || Status::not_found(format!("no session `{id}`; `keyhole session list` shows them"));
        let session = stored!(self.plane.store.get_session(&id)).ok_or_else(not_found)?;
        let detail = format!("name {:?}", session.name);
        self.audit(actor.entry(AuditAction::SessionClose, &id, detail))
            .await?;
        let record = stored!(self.plane.store.close_session(&id, now_ms())).ok_or_else(not_found)?;
        self.plane
            .breakpoints_changed(stored!(self.plane.store.breakpoint_version()));
        Ok(Response::new(session_message(&record, String::new())))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        self.plane.auth.check(&request, Role::Viewer).await?;
        let all = request.into_inner().all;
        let now = now_ms();
        let sessions = stored!(self.plane.store.list_sessions())
            .iter()
            .filter(|s| all || s.is_active(now))
            .map(|s| session_message(s, String::new()))
            .collect();
        Ok(Response::new(ListSessionsResponse { sessions }))
    }

    async fn set_breakpoint(
        &self,
        request: Request<SetBreakpointRequest>,
    ) -> Result<Response<Breakpoint>, Status> {
        let actor = self.actor(&request, Role::Debugger).await?;
        let request = request.into_inner();
        let store = &self.plane.store;
        let service = request.service.trim();
        let probes = stored!(store.list_probes(Some(service)));
        let service_known = !probes.is_empty()
            || stored!(store.list_instances())
                .iter()
                .any(|i| i.service == service);
        let probe = probes
            .iter()
            .map(|record| &record.probe)
            .filter(|probe| probe.label == request.probe_label.trim())
            .max_by_key(|probe| probe.variables.len());
        let session = stored!(store.get_session(request.session_id.trim()));
        let context = BreakpointContext {
            probe,
            service_known,
            session: session.as_ref(),
            limits: &self.plane.limits,
            redaction: &self.plane.redaction,
            now_ms: now_ms(),
            creator: actor.principal.display_name(),
            id: ids::new_id("bp"),
        };
        let breakpoint = breakpoints::build(&request, context).map_err(|refusal| match refusal {
            Refusal::Invalid(message) => Status::invalid_argument(message),
            Refusal::NotFound(message) => Status::not_found(message),
            Refusal::Precondition(message) => Status::failed_precondition(message),
        })?;
        let detail = breakpoint_detail(&breakpoint);
        self.audit(actor.entry(AuditAction::BreakpointSet, &breakpoint.id, detail))
            .await?;
        let version = stored!(store.insert_breakpoint(&breakpoint));
        self.plane.breakpoints_changed(version);
        tracing::info!(breakpoint = %breakpoint.id, service = %breakpoint.service, probe = %breakpoint.probe_label, "breakpoint set");
        Ok(Response::new(breakpoint))
    }

    async fn list_breakpoints(
        &self,
        request: Request<ListBreakpointsRequest>,
    ) -> Result<Response<ListBreakpointsResponse>, Status> {
        self.plane.auth.check(&request, Role::Viewer).await?;
        let filter = request.into_inner();
        let now = now_ms();
        let mut breakpoints = Vec::new();
        for mut breakpoint in stored!(self.plane.store.list_breakpoints()) {
            let live = breakpoint.deleted_at_unix_ms == 0 && breakpoint.expires_at_unix_ms > now;
            if (filter.all || live)
                && (filter.service.is_empty() || filter.service == breakpoint.service)
                && (filter.session_id.is_empty() || filter.session_id == breakpoint.session_id)
            {
                self.add_observations(&mut breakpoint).await?;
                breakpoints.push(breakpoint);
            }
        }
        Ok(Response::new(ListBreakpointsResponse { breakpoints }))
    }

    async fn get_breakpoint(
        &self,
        request: Request<GetBreakpointRequest>,
    ) -> Result<Response<Breakpoint>, Status> {
        self.plane.auth.check(&request, Role::Viewer).await?;
        let id = request.into_inner().id;
        let mut breakpoint = stored!(self.plane.store.get_breakpoint(&id)).ok_or_else(|| {
            Status::not_found(format!("no breakpoint `{id}`; `keyhole break list` shows them"))
        })?;
        self.add_observations(&mut breakpoint).await?;
        Ok(Response::new(breakpoint))
    }

    async fn delete_breakpoint(
        &self,
        request: Request<DeleteBreakpointRequest>,
    ) -> Result<Response<Breakpoint>, Status> {
        let actor = self.actor(&request, Role::Debugger).await?;
        let id = request.into_inner().id;
        let store = &self.plane.store;
        let already_deleted = || Status::failed_precondition(format!("breakpoint `{id}` is already deleted"));
        let existing = stored!(store.get_breakpoint(&id)).ok_or_else(|| {
            Status::not_found(format!("no breakpoint `{id}`; `keyhole break list` shows them"))
        })?;
        if existing.deleted_at_unix_ms != 0 {
            return Err(already_deleted());
        }
        self.audit(actor.entry(AuditAction::BreakpointDelete, &id, breakpoint_detail(&existing)))
            .await?;
        let breakpoint = stored!(store.delete_breakpoint(&id, now_ms())).ok_or_else(already_deleted)?;
        self.plane
            .breakpoints_changed(stored!(store.breakpoint_version()));
        tracing::info!(breakpoint = %id, "breakpoint deleted");
        Ok(Response::new(breakpoint))
    }

    async fn list_snapshots(
        &self,
        request: Request<SnapshotFilter>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let actor = self.actor(&request, Role::Viewer).await?;
        let filter = request.into_inner();
        let limit = self.list_limit(filter.limit)?;
        let snapshots = stored!(self.plane.store.list_snapshots(&filter, limit));
        // The list holds the snapshots' captured values: it is logged before anyone sees them.
        let detail = format!("{} snapshots returned", snapshots.len());
        self.audit(actor.entry(AuditAction::SnapshotList, &filter_target(&filter), detail))
            .await?;
        Ok(Response::new(ListSnapshotsResponse { snapshots }))
    }

    async fn get_snapshot(&self, request: Request<GetSnapshotRequest>) -> Result<Response<Snapshot>, Status> {
        let actor = self.actor(&request, Role::Viewer).await?;
        let id = request.into_inner().id;
        let snapshot = stored!(self.plane.store.get_snapshot(&id)).ok_or_else(|| {
            Status::not_found(format!("no snapshot `{id}`; `keyhole snapshots list` shows them"))
        })?;
        let detail = format!(
            "{} {} (breakpoint {})",
            snapshot.service, snapshot.probe_label, snapshot.breakpoint_id
        );
        self.audit(actor.entry(AuditAction::SnapshotView, &id, detail))
            .await?;
        Ok(Response::new(snapshot))
    }

    type WatchSnapshotsStream = SnapshotStream;

    async fn watch_snapshots(
        &self,
        request: Request<SnapshotFilter>,
    ) -> Result<Response<Self::WatchSnapshotsStream>, Status> {
        let actor = self.actor(&request, Role::Viewer).await?;
        let filter = request.into_inner();
        let detail = "each new snapshot sent whole as it arrives".to_owned();
        self.audit(actor.entry(AuditAction::SnapshotWatch, &filter_target(&filter), detail))
            .await?;
        let plane = self.plane.clone();
        let mut position = stored!(plane.store.last_snapshot_seq());
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(async move {
            let mut changes = plane.snapshot_seq.subscribe();
            loop {
                changes.borrow_and_update();
                loop {
                    let page = match plane.store.snapshots_after(position, WATCH_PAGE).await {
                        Ok(page) => page,
                        Err(e) => {
                            let _ = sender.send(Err(storage_status(&e))).await;
                            return;
                        }
                    };
                    let full = page.len() == WATCH_PAGE as usize;
                    for (seq, snapshot) in page {
                        position = seq;
                        if matches_filter(&snapshot, &filter) && sender.send(Ok(snapshot)).await.is_err() {
                            return;
                        }
                    }
                    if !full {
                        break;
                    }
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(WATCH_REFRESH) => {}
                    () = sender.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn create_token(&self, request: Request<CreateTokenRequest>) -> Result<Response<ApiToken>, Status> {
        let actor = self.actor(&request, Role::Admin).await?;
        let request = request.into_inner();
        let role: Role = request.role.parse().map_err(Status::invalid_argument)?;
        check_text("token name", &request.name, self.plane.limits.max_name_len)?;
        let minted = mint_token(role, &request.name, &actor.principal.display_name(), now_ms());
        let detail = format!("role {role}, name {:?}", request.name);
        self.audit(actor.entry(AuditAction::TokenCreate, &minted.record.id, detail))
            .await?;
        stored!(self.plane.store.insert_token(&minted.record));
        tracing::info!(token = %minted.record.id, %role, "token created");
        Ok(Response::new(token_message(&minted.record, minted.bearer)))
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        self.plane.auth.check(&request, Role::Admin).await?;
        let tokens = stored!(self.plane.store.list_tokens())
            .iter()
            .map(|t| token_message(t, String::new()))
            .collect();
        Ok(Response::new(ListTokensResponse { tokens }))
    }

    async fn list_session_keys(
        &self,
        request: Request<ListSessionKeysRequest>,
    ) -> Result<Response<ListSessionKeysResponse>, Status> {
        self.plane.auth.check(&request, Role::Admin).await?;
        self.session_keys().await
    }

    async fn rotate_session_keys(
        &self,
        request: Request<RotateSessionKeysRequest>,
    ) -> Result<Response<ListSessionKeysResponse>, Status> {
        let actor = self.actor(&request, Role::Admin).await?;
        let retire_previous = request.into_inner().retire_previous;
        let detail = if retire_previous {
            "new signing key; every previous key retired"
        } else {
            "new signing key; previous keys still verify"
        };
        self.audit(actor.entry(AuditAction::KeysRotate, SESSION_KEYS_TARGET, detail.into()))
            .await?;
        self.plane
            .rotate_keys(retire_previous)
            .await
            .map_err(|e| storage_status(&e))?;
        tracing::info!(by = %actor.principal.display_name(), retire_previous, "session keys rotated");
        self.session_keys().await
    }

    async fn revoke_token(&self, request: Request<RevokeTokenRequest>) -> Result<Response<ApiToken>, Status> {
        let actor = self.actor(&request, Role::Admin).await?;
        let id = request.into_inner().id;
        let not_found = || Status::not_found(format!("no token `{id}`; `keyhole token list` shows them"));
        let token = stored!(self.plane.store.get_token(&id)).ok_or_else(not_found)?;
        let detail = format!("role {}, name {:?}", token.role, token.name);
        self.audit(actor.entry(AuditAction::TokenRevoke, &id, detail))
            .await?;
        let revoked = self.plane.store.revoke_token(&id, now_ms()).await;
        // Even when the answer is an error: the revocation may have been stored.
        self.plane.auth.forget(&id);
        let record = revoked.map_err(|e| storage_status(&e))?.ok_or_else(not_found)?;
        Ok(Response::new(token_message(&record, String::new())))
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        self.plane.auth.check(&request, Role::Admin).await?;
        let request = request.into_inner();
        let action = Some(request.action)
            .filter(|action| !action.is_empty())
            .map(|action| action.parse::<AuditAction>().map(|a| a.as_str().to_owned()))
            .transpose()
            .map_err(Status::invalid_argument)?;
        let actor = Some(request.actor).filter(|actor| !actor.is_empty());
        if let Some(actor) = &actor {
            check_text("actor", actor, self.plane.limits.max_name_len)?;
        }
        let filter = AuditFilter {
            action,
            actor,
            since: Some(request.since_unix_ms).filter(|since| *since > 0),
        };
        let limit = self.list_limit(request.limit)?;
        let entries = stored!(self.plane.store.list_audit(&filter, limit))
            .into_iter()
            .map(entry_message)
            .collect();
        Ok(Response::new(ListAuditResponse { entries }))
    }
}

/// What the audit log names as the target of a snapshot list or watch: the filter, as the CLI spells it.
fn filter_target(filter: &SnapshotFilter) -> String {
    let parts: Vec<String> = [
        ("session", &filter.session_id),
        ("breakpoint", &filter.breakpoint_id),
        ("service", &filter.service),
        ("trace", &filter.trace_id),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(name, value)| format!("{name}={value}"))
    .collect();
    if parts.is_empty() {
        "all snapshots".to_owned()
    } else {
        parts.join(" ")
    }
}

/// What a breakpoint entry of the audit log says about it.
fn breakpoint_detail(breakpoint: &Breakpoint) -> String {
    let session = if breakpoint.session_id.is_empty() {
        "no session"
    } else {
        breakpoint.session_id.as_str()
    };
    format!("{} {} ({session})", breakpoint.service, breakpoint.probe_label)
}
