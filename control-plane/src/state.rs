//! The control plane's shared state: storage, auth, the session-signing key,
//! and the signals that wake breakpoint and snapshot streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use keyhole_proto::redaction::RedactionList;
use keyhole_proto::token::SessionSigner;
use keyhole_proto::v1::VerificationKey;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::auth::Authenticator;
use crate::config::ServerLimits;
use crate::ids;
use crate::ops::metrics::Metrics;
use crate::store::{SigningKeyRecord, Store, StoreChange, StoreError, StoreResult};

/// How often a replica sharing its store re-reads the breakpoint version and
/// the newest snapshot position, so that a change whose notification was lost
/// arrives late rather than never.
pub const STORE_REREAD: Duration = Duration::from_secs(5);

pub struct ControlPlane {
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    pub limits: ServerLimits,
    pub redaction: RedactionList,
    /// The session-signing keys in force; replaced whole when they rotate.
    keys: ArcSwap<SessionKeys>,
    /// Held from reading the keys in the store to replacing `keys`, so that a
    /// reload following another replica never puts back keys older than a
    /// rotation this replica just made.
    keys_update: tokio::sync::Mutex<()>,
    /// The breakpoint version; breakpoint streams wait on it.
    pub breakpoint_version: watch::Sender<u64>,
    /// The position of the newest stored snapshot; snapshot streams wait on it.
    pub snapshot_seq: watch::Sender<i64>,
    /// Open breakpoint streams per agent id.
    connected: Mutex<HashMap<String, usize>>,
    /// What `/metrics` reports of this replica.
    pub metrics: Metrics,
}

/// The keys sessions are signed and verified with.
pub struct SessionKeys {
    /// Signs new sessions: the newest unretired key.
    pub signer: SessionSigner,
    /// Every unretired key, sent to agents.
    pub verification: Vec<VerificationKey>,
}

impl SessionKeys {
    /// Key ids of the signer and of every verification key, to tell key sets apart.
    fn ids(&self) -> (&str, Vec<&str>) {
        (
            self.signer.key_id(),
            self.verification.iter().map(|key| key.key_id.as_str()).collect(),
        )
    }

    /// The unretired keys of the store, creating the first one if there is none.
    async fn load(store: &dyn Store) -> StoreResult<SessionKeys> {
        let mut keys = store.signing_keys().await?;
        keys.retain(|key| key.retired_at.is_none());
        if keys.is_empty() {
            keys.push(new_signing_key(store).await?);
        }
        let signers = keys
            .iter()
            .map(|key| SessionSigner::new(&key.key_id, &key.secret))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError(format!("stored signing key: {e}")))?;
        let verification = signers.iter().map(SessionSigner::verification_key).collect();
        let signer = signers
            .into_iter()
            .next_back()
            .ok_or_else(|| StoreError("no signing key".into()))?;
        Ok(SessionKeys { signer, verification })
    }
}

async fn new_signing_key(store: &dyn Store) -> StoreResult<SigningKeyRecord> {
    let key = SigningKeyRecord {
        key_id: ids::new_id("key"),
        secret: ids::random_secret(),
        created_at: ids::now_ms(),
        retired_at: None,
    };
    store.insert_signing_key(&key).await?;
    Ok(key)
}

impl ControlPlane {
    pub async fn new(store: Arc<dyn Store>, limits: ServerLimits) -> StoreResult<Arc<Self>> {
        let keys = SessionKeys::load(store.as_ref()).await?;
        let version = store.breakpoint_version().await?;
        let seq = store.last_snapshot_seq().await?;
        Ok(Arc::new(Self {
            auth: Authenticator::new(store.clone()),
            store,
            limits,
            redaction: RedactionList::default(),
            keys: ArcSwap::from_pointee(keys),
            keys_update: tokio::sync::Mutex::new(()),
            breakpoint_version: watch::channel(version).0,
            snapshot_seq: watch::channel(seq).0,
            connected: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
        }))
    }

    pub fn keys(&self) -> Arc<SessionKeys> {
        self.keys.load_full()
    }

    /// Starts signing with a new key (optionally retiring all others) and
    /// sends agents the new key list.
    pub async fn rotate_keys(&self, retire_previous: bool) -> StoreResult<()> {
        let _updating = self.keys_update.lock().await;
        let key = new_signing_key(self.store.as_ref()).await?;
        if retire_previous {
            self.store
                .retire_signing_keys_except(&key.key_id, ids::now_ms())
                .await?;
        }
        self.keys
            .store(Arc::new(SessionKeys::load(self.store.as_ref()).await?));
        let version = self.store.bump_breakpoint_version().await?;
        self.breakpoints_changed(version);
        Ok(())
    }

    /// Tells breakpoint streams that the state moved to `version`.
    pub fn breakpoints_changed(&self, version: u64) {
        self.breakpoint_version.send_if_modified(|current| {
            let newer = version > *current;
            if newer {
                *current = version;
            }
            newer
        });
    }

    /// Keeps this replica in step with the others sharing its store: applies
    /// each change the store reports, and re-reads the store every
    /// [`STORE_REREAD`] in case a report was lost. Runs for as long as the
    /// process; a store only this process uses needs none of it.
    pub async fn follow_store(self: Arc<Self>, mut changes: mpsc::Receiver<StoreChange>) {
        let mut reread = tokio::time::interval(STORE_REREAD);
        reread.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reports = true;
        loop {
            tokio::select! {
                change = changes.recv(), if reports => match change {
                    Some(change) => self.apply(change).await,
                    None => {
                        reports = false;
                        tracing::error!(
                            "the store stopped reporting changes; other replicas' changes now take up to {STORE_REREAD:?}"
                        );
                    }
                },
                _ = reread.tick() => {
                    if let Err(error) = self.reread().await {
                        tracing::warn!(%error, "re-reading the shared store failed; trying again in {STORE_REREAD:?}");
                    }
                }
            }
        }
    }

    async fn reread(&self) -> StoreResult<()> {
        let version = self.store.breakpoint_version().await?;
        let seq = self.store.last_snapshot_seq().await?;
        self.apply(StoreChange::Breakpoints { version }).await;
        self.apply(StoreChange::Snapshots { seq }).await;
        Ok(())
    }

    async fn apply(&self, change: StoreChange) {
        match change {
            StoreChange::Breakpoints { version } => {
                // Another replica may have rotated the keys: streams must send
                // the new ones, and new sessions be signed with the new signer.
                match self.reload_keys().await {
                    Ok(true) => self.breakpoint_version.send_modify(|_| {}),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "reloading the session-signing keys failed"),
                }
                self.breakpoints_changed(version);
            }
            StoreChange::Snapshots { seq } => self.snapshot_seen(seq),
        }
    }

    /// Tells snapshot streams that snapshots up to position `seq` are stored.
    /// The position never moves backwards (uploads finish in any order), but
    /// streams wake even when `seq` is behind it: on a shared database, a
    /// batch that commits late may be what lets them read newer ones.
    pub fn snapshot_seen(&self, seq: i64) {
        self.snapshot_seq
            .send_modify(|current| *current = (*current).max(seq));
    }

    /// Loads the keys from the store; whether they differ from those in force.
    async fn reload_keys(&self) -> StoreResult<bool> {
        let _updating = self.keys_update.lock().await;
        let loaded = SessionKeys::load(self.store.as_ref()).await?;
        let changed = loaded.ids() != self.keys.load().ids();
        if changed {
            self.keys.store(Arc::new(loaded));
        }
        Ok(changed)
    }

    pub fn is_connected(&self, agent_id: &str) -> bool {
        self.connections().get(agent_id).is_some_and(|n| *n > 0)
    }

    /// How many agents hold a breakpoint stream open to this replica.
    pub fn connected_agents(&self) -> usize {
        self.connections().len()
    }

    /// Marks `agent_id` connected until the returned guard is dropped.
    pub fn connect(self: &Arc<Self>, agent_id: &str) -> ConnectionGuard {
        *self.connections().entry(agent_id.to_owned()).or_default() += 1;
        ConnectionGuard {
            plane: self.clone(),
            agent_id: agent_id.to_owned(),
        }
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // The map holds plain counters: a panic elsewhere cannot leave it inconsistent.
        self.connected
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct ConnectionGuard {
    plane: Arc<ControlPlane>,
    agent_id: String,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut connections = self.plane.connections();
        if let Some(count) = connections.get_mut(&self.agent_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                connections.remove(&self.agent_id);
            }
        }
    }
}
