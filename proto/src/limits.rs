//! Capture limits and budgets, with their defaults written once.
//!
//! The defaults follow the best peers (depth 3, 20 fields, 100 items, 255
//! bytes per string, 20 frames, 1 snapshot/s per breakpoint, 100/s per
//! process). A breakpoint may raise or lower each, within the control
//! plane's maxima.

use std::time::Duration;

use crate::v1::CaptureLimits;

/// Levels of nesting walked below a captured variable.
pub const DEFAULT_MAX_DEPTH: u32 = 3;
/// Fields captured per struct.
pub const DEFAULT_MAX_FIELDS: u32 = 20;
/// Items captured per collection.
pub const DEFAULT_MAX_ITEMS: u32 = 100;
/// Bytes captured per string.
pub const DEFAULT_MAX_STRING_BYTES: u32 = 255;
/// Bytes of captured values per snapshot.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u32 = 32 * 1024;
/// Stack frames captured per snapshot.
pub const DEFAULT_MAX_FRAMES: u32 = 20;
/// Snapshots per second per breakpoint.
pub const DEFAULT_RATE_PER_SEC: f64 = 1.0;
/// Snapshots per second per process, over all breakpoints.
pub const DEFAULT_GLOBAL_RATE_PER_SEC: f64 = 100.0;
/// Snapshots a breakpoint takes before it stops capturing.
pub const DEFAULT_MAX_HITS: u32 = 10;
/// How long a breakpoint lives when none is asked for.
pub const DEFAULT_BREAKPOINT_TTL: Duration = Duration::from_secs(60 * 60);
/// The longest a breakpoint may live.
pub const MAX_BREAKPOINT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a debug session lives when none is asked for.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(60 * 60);
/// The longest a debug session may live.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The default capture limits.
pub fn default_capture_limits() -> CaptureLimits {
    CaptureLimits {
        max_depth: DEFAULT_MAX_DEPTH,
        max_fields: DEFAULT_MAX_FIELDS,
        max_items: DEFAULT_MAX_ITEMS,
        max_string_bytes: DEFAULT_MAX_STRING_BYTES,
        max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
        max_frames: DEFAULT_MAX_FRAMES,
    }
}

impl CaptureLimits {
    /// Each field of `self` that is zero ("not set") replaced by `defaults`'.
    pub fn or_defaults(&self, defaults: &CaptureLimits) -> CaptureLimits {
        let pick = |set: u32, default: u32| if set == 0 { default } else { set };
        CaptureLimits {
            max_depth: pick(self.max_depth, defaults.max_depth),
            max_fields: pick(self.max_fields, defaults.max_fields),
            max_items: pick(self.max_items, defaults.max_items),
            max_string_bytes: pick(self.max_string_bytes, defaults.max_string_bytes),
            max_snapshot_bytes: pick(self.max_snapshot_bytes, defaults.max_snapshot_bytes),
            max_frames: pick(self.max_frames, defaults.max_frames),
        }
    }

    /// The limits by name, for checks and messages that treat them alike.
    pub fn named(&self) -> [(&'static str, u32); 6] {
        [
            ("max_depth", self.max_depth),
            ("max_fields", self.max_fields),
            ("max_items", self.max_items),
            ("max_string_bytes", self.max_string_bytes),
            ("max_snapshot_bytes", self.max_snapshot_bytes),
            ("max_frames", self.max_frames),
        ]
    }
}
