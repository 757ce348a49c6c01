//! `keyhole audit list`: the audit log's filters as the CLI takes them.

use clap::Subcommand;
use keyhole_proto::v1::ListAuditRequest;

use super::{positive, seconds};
use crate::audit::AuditAction;
use crate::ids::now_ms;

#[derive(Subcommand)]
pub enum AuditVerb {
    /// List audit entries, newest first.
    List {
        /// Only this action: breakpoint.set, breakpoint.delete, session.open, session.close,
        /// token.create, token.revoke, keys.rotate, snapshot.view, snapshot.list or snapshot.watch.
        #[arg(long)]
        action: Option<String>,
        /// Only what this token did, given by its name or id.
        #[arg(long)]
        actor: Option<String>,
        /// Only entries from the last DURATION (e.g. 1h, 7d).
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// At most this many (default 50).
        #[arg(long, allow_negative_numbers = true)]
        limit: Option<i64>,
    },
}

impl AuditVerb {
    /// The request, once the flags are checked.
    pub(super) fn request(self) -> Result<ListAuditRequest, String> {
        let AuditVerb::List {
            action,
            actor,
            since,
            limit,
        } = self;
        if let Some(action) = &action {
            action.parse::<AuditAction>()?;
        }
        let since_unix_ms = match since {
            None => 0,
            Some(since) => {
                let ago_ms = seconds("--since", &since)?.saturating_mul(1_000);
                // At least 1: 0 would mean "from the beginning".
                now_ms()
                    .saturating_sub(i64::try_from(ago_ms).unwrap_or(i64::MAX))
                    .max(1)
            }
        };
        Ok(ListAuditRequest {
            action: action.unwrap_or_default(),
            actor: actor.unwrap_or_default(),
            since_unix_ms,
            limit: positive("--limit", limit)?.unwrap_or(0),
        })
    }
}
