//! Release builds of what `overhead` runs: the control plane, the shop with its
//! probes, and the shop with its probes compiled out in a target directory of
//! its own (so that switching the feature does not rebuild the other).
//!
//! The shop and the control plane are built by separate cargo runs: built
//! together, cargo would unify their dependencies' features, and the
//! instrumented shop would differ from the compiled-out one by more than its
//! probes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the compiled-out shop is built, inside the workspace's target directory.
pub const COMPILED_OUT_DIR: &str = "overhead-compiled-out";

/// The release binaries a comparison runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `keyhole` binary: server and CLI.
    pub keyhole: PathBuf,
    /// Where `shop-frontend` and `shop-inventory` with probes are.
    pub instrumented: PathBuf,
    /// Where `shop-frontend` and `shop-inventory` without probes are.
    pub compiled_out: PathBuf,
}

impl Binaries {
    /// The shop binary `name` of one build.
    pub fn shop(&self, compiled_out: bool, name: &str) -> PathBuf {
        let dir = if compiled_out {
            &self.compiled_out
        } else {
            &self.instrumented
        };
        dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
    }

    fn all(&self) -> Vec<PathBuf> {
        let mut all = vec![self.keyhole.clone()];
        for compiled_out in [false, true] {
            for name in ["shop-frontend", "shop-inventory"] {
                all.push(self.shop(compiled_out, name));
            }
        }
        all
    }
}

/// The workspace this crate is part of.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_owned()
}

/// The cargo to run: the one that ran us, if any, without the variables it set for running this
/// binary (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, ...). Build scripts may ask to rerun when those
/// change (ring's do), so with them every build from here and the next `cargo run` would each rebuild
/// TLS and everything above it.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("CARGO_PKG_") || RUN_VARIABLES.contains(&name_text.as_ref()) {
            command.env_remove(&name);
        }
    }
    command
}

/// What `cargo run` sets for the binary it runs, beside the `CARGO_PKG_` variables.
const RUN_VARIABLES: [&str; 7] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "OUT_DIR",
];

/// The workspace's target directory as cargo itself resolves it
/// (`CARGO_TARGET_DIR`, `--config build.target-dir`, or `target/`).
pub fn target_dir(timeout: Duration) -> Result<PathBuf, String> {
    let mut command = cargo();
    command
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let output = run_bounded(command, timeout, "cargo metadata", true)?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&output).map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata named no target_directory".to_owned())
}

/// The binaries' places, without building them.
pub fn locate(target: &Path) -> Binaries {
    let release = target.join("release");
    Binaries {
        keyhole: release.join(format!("keyhole{}", std::env::consts::EXE_SUFFIX)),
        instrumented: release.clone(),
        compiled_out: target.join(COMPILED_OUT_DIR).join("release"),
    }
}

/// Builds everything in release mode, each cargo run within `timeout`.
pub fn build(target: &Path, timeout: Duration) -> Result<Binaries, String> {
    let compiled_out = target.join(COMPILED_OUT_DIR).display().to_string();
    let runs = [
        ("the control plane", vec!["-p", "keyhole-control-plane"]),
        ("the shop with probes", vec!["-p", "shop"]),
        (
            "the shop with probes compiled out",
            vec![
                "-p",
                "shop",
                "--features",
                "probes-compiled-out",
                "--target-dir",
                &compiled_out,
            ],
        ),
    ];
    for (what, extra) in runs {
        eprintln!(
            "overhead: building {what} (cargo build --release {})",
            extra.join(" ")
        );
        let mut command = cargo();
        command
            .args(["build", "--release"])
            .args(&extra)
            .env("CARGO_TARGET_DIR", target)
            .stdin(Stdio::null());
        run_bounded(command, timeout, &format!("building {what}"), false)?;
    }
    existing(locate(target))
}

/// The release binaries a comparison runs: built in the workspace's target directory, each cargo run
/// within `timeout`, or with `no_build` those already there. `KEYHOLE_BIN` is set to the control
/// plane's, which the harness's `Server` runs: call this before any thread starts.
pub fn ready(no_build: bool, timeout: Duration) -> Result<Binaries, String> {
    let target = target_dir(timeout)?;
    let binaries = if no_build {
        existing(locate(&target))?
    } else {
        build(&target, timeout)?
    };
    std::env::set_var("KEYHOLE_BIN", &binaries.keyhole);
    Ok(binaries)
}

/// `binaries`, if every one of them exists.
pub fn existing(binaries: Binaries) -> Result<Binaries, String> {
    match binaries.all().into_iter().find(|path| !path.exists()) {
        Some(missing) => Err(format!(
            "{} does not exist: build it (run without --no-build)",
            missing.display()
        )),
        None => Ok(binaries),
    }
}

/// Runs `command`, killing it if it is not done within `timeout`; returns its
/// stdout when `capture` is set (stdout is otherwise inherited).
fn run_bounded(
    mut command: Command,
    timeout: Duration,
    what: &str,
    capture: bool,
) -> Result<Vec<u8>, String> {
    command.stdout(if capture { Stdio::piped() } else { Stdio::inherit() });
    let mut child = command
        .spawn()
        .map_err(|e| format!("{what}: cannot start cargo: {e}"))?;
    // Read stdout on a thread so that a chatty child cannot block on a full pipe.
    let reader = child.stdout.take().map(|mut stdout| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut bytes);
            bytes
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: not done within {timeout:?}; stopped it"));
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    };
    let output = reader.and_then(|thread| thread.join().ok()).unwrap_or_default();
    if status.success() {
        Ok(output)
    } else {
        Err(format!("{what} failed ({status})"))
    }
}
