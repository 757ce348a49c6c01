//! Snapshot ingest: `UploadSnapshots`, with each snapshot kept as the bytes
//! it arrived as.
//!
//! A snapshot is a tree of hundreds of small values. Decoding it into owned
//! messages and encoding it again to store it was most of the control
//! plane's CPU time during ingest (the profile is in BENCHMARKS.md). So this
//! route decodes the request with the snapshots left encoded ([`UploadWire`]),
//! reads the few fields it checks and indexes (`SnapshotHead`), and
//! appends the fields the server sets: protobuf decoding keeps the last value
//! of a field, so the appended ones win over whatever the agent put there.
//! Fields this version does not know are stored as the agent sent them.
//!
//! The server checks the snapshot's top-level fields and that its id and
//! breakpoint id are printable; what is nested in it (variables, stack,
//! baggage) is stored unread. A stored snapshot that does not decode is
//! reported where it is read, and hides no other (see `store::rows`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Request as HttpRequest, State};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::post;
use keyhole_proto::v1::agent_service_server::SERVICE_NAME;
use keyhole_proto::v1::{DropCount, UploadSnapshotsRequest, UploadSnapshotsResponse};
use prost::bytes::Bytes;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::agents::{registered_instance, MAX_SNAPSHOT_ID_LEN};
use crate::auth::Role;
use crate::ids::now_ms;
use crate::state::ControlPlane;
use crate::store::{InstanceRecord, SnapshotRow, Upload};
use crate::{check_required, storage_status};

/// Agents whose origin a replica remembers at most; uploads of others read
/// the store for it.
const REMEMBERED_ORIGINS: usize = 100_000;

/// Tags of the `Snapshot` fields the server sets (keyhole/v1/values.proto).
const SERVICE_TAG: u32 = 4;
const INSTANCE_ID_TAG: u32 = 5;
const RECEIVED_AT_TAG: u32 = 11;

/// `UploadSnapshotsRequest` as it travels, each snapshot still encoded.
#[derive(Clone, PartialEq, Message)]
pub struct UploadWire {
    #[prost(string, tag = "1")]
    pub agent_id: String,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub snapshots: Vec<Bytes>,
    #[prost(message, repeated, tag = "3")]
    pub drops: Vec<DropCount>,
}

impl From<UploadSnapshotsRequest> for UploadWire {
    fn from(request: UploadSnapshotsRequest) -> Self {
        // Every field, by name: one added to the request must be carried here too.
        let UploadSnapshotsRequest {
            agent_id,
            snapshots,
            drops,
        } = request;
        Self {
            agent_id,
            snapshots: snapshots
                .iter()
                .map(|snapshot| Bytes::from(snapshot.encode_to_vec()))
                .collect(),
            drops,
        }
    }
}

/// The fields of an encoded `Snapshot` the server reads; it skips the rest.
#[derive(Clone, PartialEq, Message)]
struct SnapshotHead {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    breakpoint_id: String,
    #[prost(string, tag = "3")]
    session_id: String,
    #[prost(string, tag = "12")]
    trace_id: String,
}

/// A snapshot as it arrived: what the server read of it, and its bytes.
struct Arrived {
    head: SnapshotHead,
    bytes: Bytes,
}

impl Arrived {
    fn read(bytes: Bytes) -> Result<Self, Status> {
        let head = SnapshotHead::decode(bytes.clone())
            .map_err(|e| Status::invalid_argument(format!("a snapshot does not decode: {e}")))?;
        check_required("snapshot id", &head.id, MAX_SNAPSHOT_ID_LEN)?;
        check_required("snapshot breakpoint id", &head.breakpoint_id, MAX_SNAPSHOT_ID_LEN)?;
        Ok(Self { head, bytes })
    }

    /// The row to store, stamped with `origin` and the time it was `received_at`.
    fn row(&self, origin: &Origin, received_at: i64) -> SnapshotRow {
        SnapshotRow {
            id: self.head.id.clone(),
            breakpoint_id: self.head.breakpoint_id.clone(),
            session_id: self.head.session_id.clone(),
            service: origin.service.clone(),
            trace_id: self.head.trace_id.clone(),
            received_at,
            body: stamp(&self.bytes, origin, received_at),
        }
    }
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

/// `bytes`, a snapshot, stamped with where it came from and when it arrived.
fn stamp(bytes: &[u8], origin: &Origin, received_at: i64) -> Vec<u8> {
    let stamps = prost::encoding::string::encoded_len(SERVICE_TAG, &origin.service)
        + prost::encoding::string::encoded_len(INSTANCE_ID_TAG, &origin.instance_id)
        + prost::encoding::int64::encoded_len(RECEIVED_AT_TAG, &received_at);
    let mut stamped = Vec::with_capacity(bytes.len() + stamps);
    stamped.extend_from_slice(bytes);
    prost::encoding::string::encode(SERVICE_TAG, &origin.service, &mut stamped);
    prost::encoding::string::encode(INSTANCE_ID_TAG, &origin.instance_id, &mut stamped);
    prost::encoding::int64::encode(RECEIVED_AT_TAG, &received_at, &mut stamped);
    stamped
}

/// Takes in agents' uploads.
pub struct Ingest {
    plane: Arc<ControlPlane>,
    /// Where each agent's snapshots come from, by agent id, as it registered.
    /// The store checks it on every upload, so an agent that registered again
    /// under another service through another replica is read afresh.
    origins: Mutex<HashMap<String, Origin>>,
}

impl Ingest {
    pub fn new(plane: Arc<ControlPlane>) -> Self {
        Self {
            plane,
            origins: Mutex::default(),
        }
    }

    /// Notes that `record` was just registered.
    pub fn registered(&self, record: &InstanceRecord) {
        let mut origins = self.origins();
        let agent_id = &record.instance.agent_id;
        if origins.len() < REMEMBERED_ORIGINS || origins.contains_key(agent_id) {
            origins.insert(agent_id.clone(), Origin::of(record));
        }
    }

    fn origins(&self) -> MutexGuard<'_, HashMap<String, Origin>> {
        // Entries are replaced whole: a panic elsewhere cannot leave one half-written.
        self.origins
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `agent_id`'s origin, as remembered or else as stored.
    async fn origin(&self, agent_id: &str) -> Result<Origin, Status> {
        if let Some(origin) = self.origins().get(agent_id) {
            return Ok(origin.clone());
        }
        let record = registered_instance(&self.plane, agent_id).await?;
        self.registered(&record);
        Ok(Origin::of(&record))
    }

    /// Stores an upload, durably, before answering.
    pub async fn upload(
        &self,
        request: Request<UploadWire>,
    ) -> Result<Response<UploadSnapshotsResponse>, Status> {
        self.plane.auth.check(&request, Role::Agent).await?;
        let request = request.into_inner();
        let max_batch = self.plane.limits.max_upload_batch;
        if request.snapshots.len() > max_batch {
            return Err(Status::invalid_argument(format!(
                "{} snapshots in one batch; send at most {max_batch}",
                request.snapshots.len()
            )));
        }
        let arrived = request
            .snapshots
            .into_iter()
            .map(Arrived::read)
            .collect::<Result<Vec<_>, _>>()?;
        let agent_id = request.agent_id.as_str();
        let now = now_ms();
        let mut origin = self.origin(agent_id).await?;
        let mut reread = false;
        let outcome = loop {
            let upload = Upload {
                agent_id: request.agent_id.clone(),
                service: origin.service.clone(),
                at: now,
                snapshots: arrived
                    .iter()
                    .map(|snapshot| snapshot.row(&origin, now))
                    .collect(),
                drops: request.drops.clone(),
            };
            match self.plane.store.store_upload(upload).await {
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
}

/// The route that serves `UploadSnapshots` in place of the generated
/// `AgentService` server, which would decode every snapshot.
pub fn router(ingest: Arc<Ingest>, max_message_bytes: usize) -> axum::Router {
    axum::Router::new()
        .route(&format!("/{SERVICE_NAME}/UploadSnapshots"), post(serve))
        .with_state(Route {
            ingest,
            max_message_bytes,
        })
}

#[derive(Clone)]
struct Route {
    ingest: Arc<Ingest>,
    max_message_bytes: usize,
}

async fn serve(State(route): State<Route>, request: HttpRequest) -> HttpResponse {
    let codec = tonic_prost::ProstCodec::<UploadSnapshotsResponse, UploadWire>::default();
    let mut grpc =
        tonic::server::Grpc::new(codec).apply_max_message_size_config(Some(route.max_message_bytes), None);
    grpc.unary(Call(route.ingest), request).await.into_response()
}

/// One `UploadSnapshots` call, as tonic's unary handler drives it.
struct Call(Arc<Ingest>);

type CallFuture = Pin<Box<dyn Future<Output = Result<Response<UploadSnapshotsResponse>, Status>> + Send>>;

impl tonic::server::UnaryService<UploadWire> for Call {
    type Response = UploadSnapshotsResponse;
    type Future = CallFuture;

    fn call(&mut self, request: Request<UploadWire>) -> CallFuture {
        let ingest = self.0.clone();
        Box::pin(async move { ingest.upload(request).await })
    }
}

#[cfg(test)]
mod tests {
    use keyhole_proto::v1::Snapshot;

    use super::*;

    fn sent() -> Snapshot {
        Snapshot {
            id: "snap-1".into(),
            breakpoint_id: "bp-1".into(),
            session_id: "ses-1".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            service: "what the agent claims".into(),
            probe_label: "checkout.discount".into(),
            line: 42,
            ..Default::default()
        }
    }

    #[test]
    fn a_stamped_snapshot_decodes_with_the_servers_fields_and_keeps_the_agents() {
        let origin = Origin {
            service: "shop".into(),
            instance_id: "eu-1".into(),
        };
        let stamped = stamp(&sent().encode_to_vec(), &origin, 1_700);
        let stored = Snapshot::decode(stamped.as_slice()).unwrap();
        assert_eq!(
            stored,
            Snapshot {
                service: "shop".into(),
                instance_id: "eu-1".into(),
                received_at_unix_ms: 1_700,
                ..sent()
            }
        );
    }

    #[test]
    fn the_server_reads_the_fields_it_indexes_and_checks_the_ids() {
        let arrived = Arrived::read(Bytes::from(sent().encode_to_vec())).unwrap();
        let SnapshotHead {
            id,
            breakpoint_id,
            session_id,
            trace_id,
        } = arrived.head;
        assert_eq!(
            [id, breakpoint_id, session_id, trace_id],
            ["snap-1", "bp-1", "ses-1", "4bf92f3577b34da6a3ce929d0e0e4736"]
        );

        let unnamed = Snapshot {
            id: String::new(),
            ..sent()
        };
        let refused = Arrived::read(Bytes::from(unnamed.encode_to_vec())).err().unwrap();
        assert!(refused.message().contains("snapshot id is empty"), "{refused}");
        let garbage = Arrived::read(Bytes::from_static(&[0x0a, 0xff])).err().unwrap();
        assert_eq!(garbage.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn an_upload_travels_the_same_as_the_protocols_request() {
        let request = UploadSnapshotsRequest {
            agent_id: "shop/eu-1".into(),
            snapshots: vec![
                sent(),
                Snapshot {
                    id: "snap-2".into(),
                    ..sent()
                },
            ],
            drops: vec![DropCount {
                breakpoint_id: "bp-1".into(),
                reason: 2,
                count: 7,
            }],
        };
        let bytes = request.encode_to_vec();
        let wire = UploadWire::decode(bytes.as_slice()).unwrap();
        assert_eq!(wire.encode_to_vec(), bytes);
        assert_eq!(wire, UploadWire::from(request));
    }
}
