//! Compiles `keyhole/v1/*.proto` with protox (pure Rust, so no system `protoc`)
//! and generates prost messages plus tonic client and server stubs. Client and
//! server modules are gated behind this crate's features, so the agent builds
//! no server stack.

use std::path::PathBuf;

const PROTO_FILES: &[&str] = &[
    "keyhole/v1/values.proto",
    "keyhole/v1/breakpoints.proto",
    "keyhole/v1/agent.proto",
    "keyhole/v1/debugger.proto",
];

/// Enum-typed fields, which prost stores as `i32`: in JSON they are written by
/// name, through the function of `serde_support` named second.
const ENUM_FIELDS: &[(&str, &str)] = &[
    (".keyhole.v1.InstanceStatus.state", "breakpoint_state"),
    (".keyhole.v1.Breakpoint.action", "action"),
    (".keyhole.v1.Truncated.reason", "truncation_reason"),
    (".keyhole.v1.DropCount.reason", "drop_reason"),
];

const BYTES_FIELDS: &[&str] = &[
    ".keyhole.v1.Bytes.value",
    ".keyhole.v1.VerificationKey.public_key",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let descriptors = protox::compile(PROTO_FILES, [&root])?;

    let mut config = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .client_mod_attribute(".", r#"#[cfg(feature = "client")]"#)
        .server_mod_attribute(".", r#"#[cfg(feature = "server")]"#)
        .type_attribute(".", r#"#[cfg_attr(feature = "serde", derive(serde::Serialize))]"#)
        .type_attribute(
            ".keyhole.v1.Value.kind",
            r#"#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]"#,
        );
    for (field, function) in ENUM_FIELDS {
        config = config.field_attribute(
            field,
            format!(
                r#"#[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_support::{function}"))]"#
            ),
        );
    }
    for field in BYTES_FIELDS {
        config = config.field_attribute(
            field,
            r#"#[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_support::base64"))]"#,
        );
    }
    config.compile_fds(descriptors)?;
    Ok(())
}
