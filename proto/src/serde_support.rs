//! JSON forms of fields prost stores in a raw shape: enums by name instead of
//! their number, bytes as base64.

use base64::Engine as _;
use serde::Serializer;

use crate::v1::{Action, BreakpointState, DropReason, TruncationReason};

macro_rules! enum_by_name {
    ($function:ident, $enum:ty) => {
        pub(crate) fn $function<S: Serializer>(value: &i32, serializer: S) -> Result<S::Ok, S::Error> {
            match <$enum>::try_from(*value) {
                Ok(known) => serializer.serialize_str(known.as_str_name()),
                Err(_) => serializer.serialize_i32(*value),
            }
        }
    };
}

enum_by_name!(breakpoint_state, BreakpointState);
enum_by_name!(action, Action);
enum_by_name!(truncation_reason, TruncationReason);
enum_by_name!(drop_reason, DropReason);

pub(crate) fn base64<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(value))
}
