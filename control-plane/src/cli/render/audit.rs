//! The audit log as people read it: when, what, who, from where, on what.

use keyhole_proto::v1::AuditEntry;

use super::{escaped, or_dash, Output, Table};
use crate::cli::time::timestamp;

impl Output {
    pub fn audit(&self, entries: &[AuditEntry]) -> Result<(), String> {
        self.emit(entries, || {
            if entries.is_empty() {
                return "no audit entries\n".into();
            }
            let mut table = Table::new(&["TIME", "ACTION", "ACTOR", "ADDRESS", "TARGET", "DETAIL"]);
            for entry in entries {
                table.row(vec![
                    timestamp(entry.at_unix_ms),
                    escaped(&entry.action),
                    escaped(&entry.actor),
                    escaped(&entry.address),
                    or_dash(&escaped(&entry.target)),
                    or_dash(&escaped(&entry.detail)),
                ]);
            }
            table.render()
        })
    }
}
