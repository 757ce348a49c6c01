//! The audit log's vocabulary: the actions it records, who acted and from
//! where, and the entry a call writes before it acts. Entries are written
//! before the change they describe, and a call whose entry cannot be written
//! is refused: a change nobody can trace is worse than a change refused.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use axum::extract::connect_info::Connected;
use axum::extract::ConnectInfo;
use axum::serve::IncomingStream;
use keyhole_proto::v1::AuditEntry;
use tonic::Request;

use crate::auth::{display_name, Principal};
use crate::ids::now_ms;
use crate::server::PlainListener;
use crate::store::AuditRecord;
use crate::tls::TlsListener;

/// What the address of a call is recorded as when nothing says where it came from.
pub const UNKNOWN_ADDRESS: &str = "unknown";

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    BreakpointSet,
    BreakpointDelete,
    SessionOpen,
    SessionClose,
    TokenCreate,
    TokenRevoke,
    KeysRotate,
    SnapshotView,
    /// Snapshots listed: what a list returns holds their captured values.
    SnapshotList,
    /// Snapshots watched: the stream sends each new snapshot whole.
    SnapshotWatch,
}

impl AuditAction {
    pub const ALL: [AuditAction; 10] = [
        AuditAction::BreakpointSet,
        AuditAction::BreakpointDelete,
        AuditAction::SessionOpen,
        AuditAction::SessionClose,
        AuditAction::TokenCreate,
        AuditAction::TokenRevoke,
        AuditAction::KeysRotate,
        AuditAction::SnapshotView,
        AuditAction::SnapshotList,
        AuditAction::SnapshotWatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::BreakpointSet => "breakpoint.set",
            AuditAction::BreakpointDelete => "breakpoint.delete",
            AuditAction::SessionOpen => "session.open",
            AuditAction::SessionClose => "session.close",
            AuditAction::TokenCreate => "token.create",
            AuditAction::TokenRevoke => "token.revoke",
            AuditAction::KeysRotate => "keys.rotate",
            AuditAction::SnapshotView => "snapshot.view",
            AuditAction::SnapshotList => "snapshot.list",
            AuditAction::SnapshotWatch => "snapshot.watch",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditAction::ALL
            .into_iter()
            .find(|action| action.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
                format!("unknown audit action {s:?}; the actions are {}", known.join(", "))
            })
    }
}

/// The peer of the connection a request arrived on. The server records it on
/// every request (`into_make_service_with_connect_info::<PeerAddress>()`),
/// plain or TLS alike, and handlers read it as `ConnectInfo<PeerAddress>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddress(pub SocketAddr);

impl Connected<IncomingStream<'_, PlainListener>> for PeerAddress {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Self {
        PeerAddress(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for PeerAddress {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        PeerAddress(*stream.remote_addr())
    }
}

/// Where a call came from, for calls made inside this process on someone's
/// behalf (the web UI's), which have no connection of their own to say it.
/// Only code in this process can attach it: it never comes off the wire.
#[derive(Debug, Clone)]
pub struct CallerAddress(pub String);

/// Where `request` came from: what an in-process caller attached, else the
/// peer of the connection it arrived on.
pub fn address_of<T>(request: &Request<T>) -> String {
    if let Some(CallerAddress(address)) = request.extensions().get::<CallerAddress>() {
        return address.clone();
    }
    // tonic's own server records the peer as `TcpConnectInfo`; ours, served
    // by axum, as a `PeerAddress`.
    request
        .remote_addr()
        .or_else(|| {
            request
                .extensions()
                .get::<ConnectInfo<PeerAddress>>()
                .map(|info| info.0 .0)
        })
        .map_or_else(|| UNKNOWN_ADDRESS.to_owned(), |address| address.to_string())
}

/// The caller of an RPC, as the audit log names it.
pub struct Actor {
    pub principal: Principal,
    pub address: String,
}

impl Actor {
    pub fn new<T>(principal: Principal, request: &Request<T>) -> Actor {
        Actor {
            address: address_of(request),
            principal,
        }
    }

    /// An entry saying this actor does `action` to `target` now.
    pub fn entry(&self, action: AuditAction, target: &str, detail: String) -> AuditRecord {
        AuditRecord {
            seq: 0,
            at: now_ms(),
            action: action.as_str().to_owned(),
            actor_name: self.principal.name.clone(),
            token_id: self.principal.token_id.clone(),
            address: self.address.clone(),
            target: target.to_owned(),
            detail,
        }
    }
}

/// A stored entry as `ListAudit` returns it.
pub fn entry_message(record: AuditRecord) -> AuditEntry {
    AuditEntry {
        seq: record.seq,
        at_unix_ms: record.at,
        action: record.action,
        actor: display_name(&record.actor_name, &record.token_id),
        token_id: record.token_id,
        address: record.address,
        target: record.target,
        detail: record.detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn action_names_round_trip_and_unknown_ones_list_the_known() {
        for action in AuditAction::ALL {
            assert_eq!(action.as_str().parse::<AuditAction>(), Ok(action));
        }
        let error = "breakpoint.create".parse::<AuditAction>().unwrap_err();
        assert!(
            error.contains("breakpoint.set, breakpoint.delete") && error.contains("snapshot.view"),
            "{error}"
        );
    }

    #[test]
    fn an_in_process_caller_says_where_the_call_came_from() {
        let mut request = Request::new(());
        assert_eq!(address_of(&request), UNKNOWN_ADDRESS);
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(PeerAddress(peer)));
        assert_eq!(address_of(&request), "192.0.2.7:5000");
        request
            .extensions_mut()
            .insert(CallerAddress("198.51.100.1:443 (web UI)".into()));
        assert_eq!(address_of(&request), "198.51.100.1:443 (web UI)");
    }

    #[test]
    fn an_entry_names_its_actor_by_token_name_and_id() {
        let principal = Principal {
            token_id: "0a1b".into(),
            name: "alice".into(),
            role: Role::Debugger,
        };
        let actor = Actor::new(principal, &Request::new(()));
        let record = actor.entry(AuditAction::SessionOpen, "ses-1", "name \"x\"".into());
        assert_eq!(
            (record.action.as_str(), record.target.as_str()),
            ("session.open", "ses-1")
        );
        let message = entry_message(record);
        assert_eq!(message.actor, "alice (0a1b)");
        assert_eq!(message.token_id, "0a1b");
    }
}
