//! The `keyhole` binary's contract with shells and scripts: exit code 2 for
//! usage errors, 1 for failures, and help that teaches.

use std::process::Command;

fn keyhole(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyhole"))
        .args(args)
        .env_remove("KEYHOLE_TOKEN")
        .env("KEYHOLE_ADDR", "http://127.0.0.1:9")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run keyhole")
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["frobnicate"][..],
        &["break", "set"],
        &["session", "open", "--bogus"],
        &[],
    ] {
        let output = keyhole(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
}

#[test]
fn help_names_every_noun() {
    let output = keyhole(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for noun in [
        "server",
        "services",
        "probes",
        "session",
        "break",
        "snapshots",
        "token",
        "audit",
    ] {
        assert!(help.contains(noun), "--help lacks {noun}:\n{help}");
    }
}

#[test]
fn an_unreachable_control_plane_is_one_line_with_what_to_do() {
    let output = Command::new(env!("CARGO_BIN_EXE_keyhole"))
        .args(["services", "list"])
        .env("KEYHOLE_TOKEN", "kh_x_y")
        .env("KEYHOLE_ADDR", "http://127.0.0.1:9")
        .output()
        .expect("run keyhole");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot reach the control plane at http://127.0.0.1:9"),
        "{stderr}"
    );
    assert!(stderr.contains("KEYHOLE_ADDR"), "{stderr}");
}

#[test]
fn a_missing_token_says_where_one_comes_from() {
    let output = keyhole(&["services", "list"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no API token: set KEYHOLE_TOKEN"), "{stderr}");
}
