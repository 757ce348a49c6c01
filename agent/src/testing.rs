//! An agent without a connection, for benchmarks and tests of the capture
//! path: the caller installs breakpoints and session keys directly and drains
//! the queue itself. Hidden from the docs; not for production use.

use std::sync::Arc;

use keyhole_proto::token::{SessionSigner, TokenError};
use keyhole_proto::v1::{Breakpoint, InstanceStatus, Snapshot, VerificationKey};

use crate::agent::{self, unix_millis, AgentCore, AgentError};
use crate::queue::SnapshotReceiver;
use crate::stack::Symbolizer;

#[doc(hidden)]
pub struct OfflineAgent {
    core: Arc<AgentCore>,
    receiver: SnapshotReceiver,
    symbolizer: Symbolizer,
}

impl OfflineAgent {
    pub(crate) fn new(core: Arc<AgentCore>, receiver: SnapshotReceiver) -> Self {
        Self {
            core,
            receiver,
            symbolizer: Symbolizer::default(),
        }
    }

    /// An offline agent for `service` that trusts the sessions `signer` signs.
    pub fn trusting(service: &str, signer: &SessionSigner) -> Result<Self, AgentError> {
        let agent = crate::Agent::builder()
            .service(service)
            .token("unused")
            .init_offline()?;
        agent.set_keys(&[signer.verification_key()]);
        Ok(agent)
    }

    /// Keys as the control plane would send them.
    pub fn set_keys(&self, keys: &[VerificationKey]) {
        self.core.set_keys(keys);
    }

    /// A breakpoint set as the control plane would send it; returns the
    /// statuses of breakpoints that could not be installed.
    pub fn install(&self, breakpoints: Vec<Breakpoint>) -> Vec<InstanceStatus> {
        self.core.installed().apply(breakpoints, unix_millis())
    }

    /// Takes the queued snapshots, with their stacks resolved.
    pub fn drain(&mut self) -> Vec<Snapshot> {
        let mut snapshots = Vec::new();
        while let Some(pending) = self.receiver.try_recv() {
            self.receiver.release(pending.bytes);
            if let Ok(snapshot) = pending.resolve(&mut self.symbolizer) {
                snapshots.push(snapshot);
            }
        }
        snapshots
    }

    /// Empties the queue without resolving anything; returns how many there were.
    pub fn discard(&mut self) -> usize {
        let mut count = 0;
        while let Some(pending) = self.receiver.try_recv() {
            self.receiver.release(pending.bytes);
            count += 1;
        }
        count
    }
}

impl Drop for OfflineAgent {
    fn drop(&mut self) {
        agent::release(&self.core);
    }
}

/// A token for session `session_id` that `signer` signs, valid for `seconds` from now.
pub fn session_token(signer: &SessionSigner, session_id: &str, seconds: u64) -> Result<String, TokenError> {
    signer.sign(session_id, crate::session::unix_now() + seconds)
}
