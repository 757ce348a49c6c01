//! The bounded hand-off between probe hits and the uploader: a count-bounded
//! channel plus a byte budget that covers everything accepted and not yet
//! acknowledged by the control plane. Room is reserved before capture, so an
//! accepted snapshot is never dropped afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use keyhole_proto::v1::Snapshot;
use tokio::sync::mpsc;

use crate::capture::CapturedVariables;
use crate::stack::{StackAddresses, Symbolizer};
use prost::Message as _;

/// What a queued snapshot costs beyond its encoded bytes: the struct with its
/// unresolved stack, and room for its metadata and the allocator's rounding.
pub const PENDING_OVERHEAD_BYTES: usize = std::mem::size_of::<PendingSnapshot>() + 2048;

/// A captured snapshot whose stack is not symbolised yet. It waits encoded:
/// a value tree takes several times its encoded size in memory, and the
/// byte budget must bound what the queue really holds.
pub struct PendingSnapshot {
    encoded: Vec<u8>,
    stack: StackAddresses,
    /// Frames to keep when the stack is resolved (the breakpoint's limit).
    max_frames: usize,
    /// What this snapshot counts against the byte budget.
    pub bytes: usize,
}

impl PendingSnapshot {
    /// `snapshot` (without its variables) with `variables` appended: the
    /// variables come encoded from capture and are copied, not re-encoded.
    pub fn new(
        snapshot: &Snapshot,
        variables: &CapturedVariables,
        stack: StackAddresses,
        max_frames: usize,
    ) -> Self {
        let mut encoded = snapshot.encode_to_vec();
        encoded.reserve_exact(variables.encoded().len());
        encoded.extend_from_slice(variables.encoded());
        Self {
            bytes: encoded.capacity() + PENDING_OVERHEAD_BYTES,
            encoded,
            stack,
            max_frames,
        }
    }

    /// The snapshot with its stack resolved (on the agent's thread).
    pub fn resolve(&self, symbolizer: &mut Symbolizer) -> Result<Snapshot, prost::DecodeError> {
        let mut snapshot = Snapshot::decode(self.encoded.as_slice())?;
        snapshot.stack = symbolizer.resolve(&self.stack, self.max_frames);
        Ok(snapshot)
    }
}

/// The probes' side of the queue.
pub struct SnapshotQueue {
    sender: mpsc::Sender<PendingSnapshot>,
    bytes_in_use: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The uploader's side of the queue.
pub struct SnapshotReceiver {
    receiver: mpsc::Receiver<PendingSnapshot>,
    bytes_in_use: Arc<AtomicUsize>,
}

/// Room for one snapshot, taken before capturing it.
pub struct Reservation<'a> {
    permit: Option<mpsc::Permit<'a, PendingSnapshot>>,
    bytes: usize,
    bytes_in_use: &'a AtomicUsize,
}

/// A queue of at most `capacity` snapshots and `max_bytes` bytes, counting
/// snapshots handed to the uploader until it releases them.
pub fn snapshot_queue(capacity: usize, max_bytes: usize) -> (SnapshotQueue, SnapshotReceiver) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let bytes_in_use = Arc::new(AtomicUsize::new(0));
    (
        SnapshotQueue {
            sender,
            bytes_in_use: bytes_in_use.clone(),
            max_bytes,
        },
        SnapshotReceiver {
            receiver,
            bytes_in_use,
        },
    )
}

impl SnapshotQueue {
    /// Reserves a slot and `bytes` of budget, or `None` if either is used up.
    /// Never waits.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation<'_>> {
        let fits = self
            .bytes_in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.max_bytes)
            });
        if fits.is_err() {
            return None;
        }
        match self.sender.try_reserve() {
            Ok(permit) => Some(Reservation {
                permit: Some(permit),
                bytes,
                bytes_in_use: &self.bytes_in_use,
            }),
            Err(_) => {
                self.bytes_in_use.fetch_sub(bytes, Ordering::AcqRel);
                None
            }
        }
    }

    /// Bytes accepted and not yet acknowledged.
    pub fn bytes_in_use(&self) -> usize {
        self.bytes_in_use.load(Ordering::Acquire)
    }
}

impl Reservation<'_> {
    /// Hands the snapshot over; its actual size replaces the reserved one
    /// (capture never exceeds the snapshot limit the reservation is made of).
    pub fn send(mut self, mut pending: PendingSnapshot) {
        pending.bytes = pending.bytes.min(self.bytes);
        let unused = self.bytes - pending.bytes;
        self.bytes_in_use.fetch_sub(unused, Ordering::AcqRel);
        self.bytes = 0;
        if let Some(permit) = self.permit.take() {
            permit.send(pending);
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.bytes_in_use.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

impl SnapshotReceiver {
    /// The next snapshot, waiting for one; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<PendingSnapshot> {
        self.receiver.recv().await
    }

    /// The next snapshot if one is waiting.
    pub fn try_recv(&mut self) -> Option<PendingSnapshot> {
        self.receiver.try_recv().ok()
    }

    /// Snapshots waiting in the queue.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// Gives back the budget of snapshots the control plane acknowledged.
    pub fn release(&self, bytes: usize) {
        self.bytes_in_use.fetch_sub(bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(bytes: usize) -> PendingSnapshot {
        PendingSnapshot {
            bytes,
            ..PendingSnapshot::new(
                &Snapshot::default(),
                &CapturedVariables::default(),
                StackAddresses::default(),
                0,
            )
        }
    }

    #[test]
    fn the_queue_refuses_beyond_its_count_and_byte_bounds_without_waiting() {
        let (queue, mut receiver) = snapshot_queue(2, 1000);
        queue.try_reserve(400).expect("room").send(pending(100));
        assert_eq!(queue.bytes_in_use(), 100, "unused reservation is given back");
        assert!(queue.try_reserve(901).is_none(), "over the byte budget");
        queue.try_reserve(400).expect("room").send(pending(400));
        assert!(queue.try_reserve(1).is_none(), "over the count");
        let first = receiver.try_recv().expect("queued");
        assert!(queue.try_reserve(1).is_some(), "a slot is free again");
        assert_eq!(queue.bytes_in_use(), 500, "bytes stay counted until released");
        receiver.release(first.bytes);
        assert_eq!(queue.bytes_in_use(), 400);
    }

    #[test]
    fn a_reservation_dropped_unsent_gives_everything_back() {
        let (queue, _receiver) = snapshot_queue(1, 100);
        drop(queue.try_reserve(100).expect("room"));
        assert_eq!(queue.bytes_in_use(), 0);
        assert!(queue.try_reserve(100).is_some());
    }
}
