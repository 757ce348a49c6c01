//! Snapshot ingest driven like agents drive it: what an acknowledgement
//! promises, and what is stored of what an agent sends.

use std::time::Duration;

use keyhole_proto::v1::{RegisterRequest, Snapshot, UploadSnapshotsRequest, UploadSnapshotsResponse};
use keyhole_tests::scale::sample_snapshot;
use keyhole_tests::Server;
use tonic::transport::Channel;

/// A server with one agent registered, and the agent's token.
struct Shop {
    server: Server,
    agent_token: String,
    agent_id: String,
}

impl Shop {
    async fn start(dir: &std::path::Path) -> Shop {
        let server = Server::start(dir);
        let agent_token = server.token("agent");
        let registration = RegisterRequest {
            service: "shop".into(),
            instance_id: "shop-1".into(),
            ..Default::default()
        };
        let mut agent = server.agent(&agent_token).await;
        let agent_id = agent.register(registration).await.unwrap().into_inner().agent_id;
        Shop {
            server,
            agent_token,
            agent_id,
        }
    }
}

/// A connection to the SQLite database of the server whose data directory is `data_dir`.
async fn database_of(data_dir: &std::path::Path) -> sqlx::pool::PoolConnection<sqlx::Sqlite> {
    let file = data_dir.join("keyhole.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", file.display()))
        .await
        .unwrap();
    pool.acquire().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_batch_acknowledged_before_the_server_is_killed_is_on_disk_after_it() {
    const UPLOADERS: usize = 8;
    const BATCH: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::start(dir.path()).await;
    let (template, _) = sample_snapshot();
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut uploaders = Vec::new();
    for n in 0..UPLOADERS {
        let mut agent = shop.server.agent(&shop.agent_token).await;
        let (agent_id, template) = (shop.agent_id.clone(), template.clone());
        let acknowledged = acknowledged.clone();
        uploaders.push(tokio::spawn(async move {
            for batch in 0.. {
                let ids: Vec<String> = (0..BATCH).map(|i| format!("u{n}-b{batch}-{i}")).collect();
                let request = UploadSnapshotsRequest {
                    agent_id: agent_id.clone(),
                    snapshots: ids
                        .iter()
                        .map(|id| Snapshot {
                            id: id.clone(),
                            ..template.clone()
                        })
                        .collect(),
                    drops: vec![],
                };
                if agent.upload_snapshots(request).await.is_err() {
                    return;
                }
                acknowledged.lock().unwrap().extend(ids);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Shop { server, .. } = shop;
    server.kill();
    for uploader in uploaders {
        uploader.await.unwrap();
    }

    let mut reopened = database_of(dir.path()).await;
    let stored: std::collections::HashSet<String> = sqlx::query_scalar("SELECT id FROM snapshots")
        .fetch_all(&mut *reopened)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let acknowledged = acknowledged.lock().unwrap();
    assert!(
        acknowledged.len() > BATCH * UPLOADERS,
        "uploads were under way: {}",
        acknowledged.len()
    );
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged snapshots lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
}

/// `UploadSnapshotsRequest` as an agent of a later version might send it,
/// its snapshots encoded by hand.
#[derive(Clone, PartialEq, prost::Message)]
struct HandEncodedUpload {
    #[prost(string, tag = "1")]
    agent_id: String,
    #[prost(bytes = "vec", repeated, tag = "2")]
    snapshots: Vec<Vec<u8>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_keeps_the_fields_a_later_agent_added_that_this_version_does_not_know() {
    use prost::Message as _;
    // Field 100, a string "new": a key of (100 << 3) | 2 as a varint, a length, the bytes.
    const UNKNOWN_FIELD: &[u8] = &[0xa2, 0x06, 0x03, b'n', b'e', b'w'];
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::start(dir.path()).await;
    let mut snapshot = Snapshot {
        id: "from-a-later-agent".into(),
        breakpoint_id: "bp-x".into(),
        ..Default::default()
    }
    .encode_to_vec();
    snapshot.extend_from_slice(UNKNOWN_FIELD);

    let channel = Channel::from_shared(shop.server.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(HandEncodedUpload {
        agent_id: shop.agent_id.clone(),
        snapshots: vec![snapshot],
    });
    let bearer = format!("Bearer {}", shop.agent_token).parse().unwrap();
    request.metadata_mut().insert("authorization", bearer);
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/keyhole.v1.AgentService/UploadSnapshots");
    let codec = tonic_prost::ProstCodec::<HandEncodedUpload, UploadSnapshotsResponse>::default();
    let answer = grpc.unary(request, path, codec).await.unwrap().into_inner();
    assert_eq!(answer.stored, 1);

    let shown = shop
        .server
        .cli(&["snapshots", "get", "from-a-later-agent", "-o", "json"])
        .json();
    assert_eq!(shown["service"], "shop", "stamped by the server all the same");
    let mut stored = database_of(&shop.server.data_dir).await;
    let body: Vec<u8> = sqlx::query_scalar("SELECT body FROM snapshots WHERE id = 'from-a-later-agent'")
        .fetch_one(&mut *stored)
        .await
        .unwrap();
    assert!(
        body.windows(UNKNOWN_FIELD.len()).any(|w| w == UNKNOWN_FIELD),
        "the field this version does not know is stored as sent"
    );
}
