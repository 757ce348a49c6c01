//! The shop as `overhead` runs it: a fresh control plane, both services with
//! their agents connected, and the breakpoints of one configuration armed.
//! Everything started here stops when the [`RunningShop`] is dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;

use super::build::Binaries;
use super::callgrind::{profile_name, Callgrind};
use super::SessionShare;
use crate::{break_set_args, spawn_shop_with, wait_until, Listening, Server};

/// Every probe of both services, as (service, probe).
pub const PROBES: [(&str, &str); 3] = [
    ("shop-frontend", "checkout.priced"),
    ("shop-frontend", "checkout.decided"),
    ("shop-inventory", "inventory.stock"),
];
/// How long the services may take to register, and an agent to report a breakpoint,
/// on a machine that is busy compiling.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The same under callgrind, which runs them some fifty times slower.
const SETTLE_TIMEOUT_UNDER_CALLGRIND: Duration = Duration::from_secs(180);
/// Breakpoints and sessions outlive any run: a run must not see one expire.
const LIFETIME: &str = "2h";
/// The most snapshots the control plane lets one breakpoint take: high enough that
/// the rate, not the hit limit, is what refuses hits during a run.
const MAX_HITS: &str = "1000";

/// One way of building and running the shop, compared side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Configuration {
    /// a: built with `probes-compiled-out`; the agent still runs and connects.
    CompiledOut,
    /// b: probes compiled in, agent connected, no breakpoints.
    Connected,
    /// c: a breakpoint on every probe, for a session that no request carries.
    ArmedForNobody,
    /// d: a breakpoint on every probe, for a session a share of the requests carry.
    Sampled,
    /// e: as d, then the control plane is killed; the agents keep the last set.
    Disconnected,
    /// A: a again, in processes of its own. Nothing differs from a, so its ratio to a is what the
    /// measurement reads when there is nothing to find: the noise floor the targets are read against.
    CompiledOutAgain,
}

impl Configuration {
    pub const ALL: [Configuration; 6] = [
        Configuration::CompiledOut,
        Configuration::Connected,
        Configuration::ArmedForNobody,
        Configuration::Sampled,
        Configuration::Disconnected,
        Configuration::CompiledOutAgain,
    ];

    /// The configurations named by their letters (`"bd"`), in order, with a always first: the others
    /// are compared with it.
    pub fn chosen(letters: &str) -> Result<Vec<Configuration>, String> {
        if let Some(unknown) = letters.chars().find(|l| !"abcdeA".contains(*l)) {
            return Err(format!(
                "--configs takes letters a to e, and A for a second run of a, not {unknown:?}"
            ));
        }
        Ok(Configuration::ALL
            .into_iter()
            .filter(|c| *c == Configuration::CompiledOut || letters.contains(c.letter()))
            .collect())
    }

    /// Its letter in the issue and in reports.
    pub fn letter(self) -> char {
        match self {
            Configuration::CompiledOut => 'a',
            Configuration::Connected => 'b',
            Configuration::ArmedForNobody => 'c',
            Configuration::Sampled => 'd',
            Configuration::Disconnected => 'e',
            Configuration::CompiledOutAgain => 'A',
        }
    }

    /// One line saying what it is.
    pub fn describe(self) -> &'static str {
        match self {
            Configuration::CompiledOut => "probes compiled out",
            Configuration::Connected => "probes in, agent connected, no breakpoints",
            Configuration::ArmedForNobody => "3 breakpoints, session no request carries",
            Configuration::Sampled => "3 breakpoints, session on a share of requests",
            Configuration::Disconnected => "as d, control plane killed",
            Configuration::CompiledOutAgain => "a again, in processes of its own (noise floor)",
        }
    }

    fn compiled_out(self) -> bool {
        matches!(self, Configuration::CompiledOut | Configuration::CompiledOutAgain)
    }

    fn armed(self) -> bool {
        matches!(
            self,
            Configuration::ArmedForNobody | Configuration::Sampled | Configuration::Disconnected
        )
    }

    /// Whether a share of the load carries the session.
    pub fn sends_session(self) -> bool {
        matches!(self, Configuration::Sampled | Configuration::Disconnected)
    }
}

/// How the services are started, beyond their configuration.
#[derive(Clone, Copy, Default)]
pub struct Launch<'a> {
    /// Both services run under callgrind.
    pub callgrind: Option<&'a Callgrind>,
    /// The breakpoints' rate, snapshots a second as `keyhole break set --rate` takes it, rather
    /// than the control plane's default.
    pub breakpoint_rate: Option<f64>,
    /// A shared library both services load before any other (`LD_PRELOAD`), such as another
    /// allocator: the same comparison in a host that allocates differently.
    pub preload: Option<&'a std::path::Path>,
}

/// A control plane (unless killed) and both shop services, configured.
pub struct RunningShop {
    // Field order is drop order: the services stop before the control plane.
    frontend: Listening,
    inventory: Listening,
    configuration: Configuration,
    server: Option<Server>,
    session: Option<(String, String)>,
    /// The token of a session no breakpoint is set for, which the load carries instead of none
    /// (see [`RunningShop::carry_another_session`]).
    other_session: Option<String>,
    breakpoints: Vec<String>,
    _data: tempfile::TempDir,
}

/// What the control plane knows of the session's captures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures {
    /// Snapshots stored for the session.
    pub stored: usize,
    /// Hits the agents refused, by reason, as far as they have reported them.
    pub refused: BTreeMap<String, u64>,
}

impl RunningShop {
    /// Starts everything `configuration` needs, as `launch` says, and arms its breakpoints. The
    /// `keyhole` binary is taken from `KEYHOLE_BIN`, which the caller sets.
    pub fn start(
        configuration: Configuration,
        binaries: &Binaries,
        launch: &Launch<'_>,
    ) -> Result<RunningShop, String> {
        let Launch {
            callgrind,
            breakpoint_rate,
            preload,
        } = *launch;
        let data = tempfile::tempdir().map_err(|e| format!("cannot create a data directory: {e}"))?;
        let server = Server::start(data.path());
        let agent_token = server.token("agent");
        let (inventory, frontend) = spawn_shop_with(&server, &agent_token, |name| {
            let binary = binaries.shop(configuration.compiled_out(), name);
            let mut command = match callgrind {
                Some(callgrind) => callgrind.command(&binary, &profile_name(configuration.letter(), name)),
                None => std::process::Command::new(binary),
            };
            if let Some(library) = preload {
                command.env("LD_PRELOAD", library);
            }
            command
        });
        let settle = match callgrind {
            Some(_) => SETTLE_TIMEOUT_UNDER_CALLGRIND,
            None => SETTLE_TIMEOUT,
        };
        let registered = wait_until(settle, || {
            let services = server.cli(&["services", "list", "-o", "json"]);
            services.code == 0
                && serde_json::from_str::<Json>(&services.stdout)
                    .ok()
                    .and_then(|list| list.as_array().map(Vec::len))
                    == Some(2)
        });
        if !registered {
            return Err(format!("both shop services did not register within {settle:?}"));
        }
        let mut shop = RunningShop {
            frontend,
            inventory,
            configuration,
            server: Some(server),
            session: None,
            other_session: None,
            breakpoints: Vec::new(),
            _data: data,
        };
        if configuration.armed() {
            shop.arm(settle, breakpoint_rate)?;
        }
        if configuration == Configuration::Disconnected {
            if let Some(server) = shop.server.take() {
                server.kill();
            }
        }
        Ok(shop)
    }

    /// Opens a session and sets a breakpoint for it on every probe, each
    /// reported by its service's agent before this returns.
    fn arm(&mut self, settle: Duration, rate: Option<f64>) -> Result<(), String> {
        let server = self.server.as_ref().expect("armed before any kill");
        let (id, token) = open_session(server)?;
        for (service, probe) in PROBES {
            let mut extra = vec!["--max-hits", MAX_HITS, "--expire", LIFETIME, "-o", "json"];
            let rate = rate.map(|rate| rate.to_string());
            if let Some(rate) = &rate {
                extra.extend(["--rate", rate]);
            }
            let set = server.cli(&break_set_args(service, probe, &id, &extra));
            if set.code != 0 {
                return Err(format!("break set on {service}/{probe}: {}", set.stderr.trim()));
            }
            let breakpoint = text(&parse(&set.stdout, "break set")?["id"], "breakpoint id")?;
            let installed = wait_until(settle, || {
                let detail = server.cli(&["break", "get", &breakpoint, "-o", "json"]);
                parse(&detail.stdout, "break get").is_ok_and(|detail| {
                    detail["statuses"]
                        .as_array()
                        .is_some_and(|statuses| statuses.iter().any(is_installed))
                })
            });
            if !installed {
                return Err(format!(
                    "the agent of {service} did not install the breakpoint on {probe} within {settle:?}"
                ));
            }
            self.breakpoints.push(breakpoint);
        }
        self.session = Some((id, token));
        Ok(())
    }

    /// The frontend's base URL.
    pub fn frontend_url(&self) -> &str {
        &self.frontend.addr
    }

    /// The frontend's process id, for its resident memory.
    pub fn frontend_pid(&self) -> u32 {
        self.frontend.child.id()
    }

    /// Runs both services and the control plane (while it is up) on CPU `cpu` alone, every
    /// thread of theirs, until pinned again.
    pub fn pin(&self, cpu: usize) -> Result<(), String> {
        for pid in self.service_pids().into_iter().chain(self.control_plane_pid()) {
            crate::load::cpu::pin_process(pid, cpu)?;
        }
        Ok(())
    }

    /// The control plane's process id while it is up, for the CPU time it spends beside the shop.
    pub fn control_plane_pid(&self) -> Option<u32> {
        self.server.as_ref().map(Server::pid)
    }

    /// Both services' process ids, for the CPU time they spend.
    pub fn service_pids(&self) -> [u32; 2] {
        [self.frontend.child.id(), self.inventory.child.id()]
    }

    /// The session as `fraction` of the load carries it, in the configurations whose load carries
    /// it (d and e).
    pub fn session_share(&self, fraction: f64) -> Option<SessionShare> {
        let armed = self
            .session
            .as_ref()
            .filter(|_| self.configuration.sends_session())
            .map(|(_, token)| token);
        let token = armed.or(self.other_session.as_ref())?;
        Some(SessionShare {
            token: token.clone(),
            fraction,
        })
    }

    /// In a configuration whose load carries no session (a, b and c), makes it carry one that no
    /// breakpoint is set for, in the same share as d's: every configuration then serves the same
    /// requests, the trust path (verifying the token, passing it on) runs in all of them, and d
    /// differs from c only in whose session the requests carry.
    pub fn carry_another_session(&mut self) -> Result<(), String> {
        if self.configuration.sends_session() {
            return Ok(());
        }
        let server = self
            .server
            .as_ref()
            .ok_or("the control plane is gone: no session can be opened")?;
        let (_, token) = open_session(server)?;
        self.other_session = Some(token);
        Ok(())
    }

    /// What was captured and refused for the session, if the control plane is
    /// up and a session is armed.
    pub fn captures(&self) -> Option<Captures> {
        let server = self.server.as_ref()?;
        let (id, _) = self.session.as_ref()?;
        let listed = server.cli(&[
            "snapshots",
            "list",
            "--session",
            id,
            "--limit",
            "1000",
            "-o",
            "json",
        ]);
        let stored = parse(&listed.stdout, "snapshots list").ok()?.as_array()?.len();
        let mut refused = BTreeMap::new();
        for breakpoint in &self.breakpoints {
            let detail = server.cli(&["break", "get", breakpoint, "-o", "json"]);
            let detail = parse(&detail.stdout, "break get").ok()?;
            for refusal in detail["refusals"].as_array().into_iter().flatten() {
                let reason = refusal["reason"].as_str().unwrap_or("unknown");
                let reason = reason.trim_start_matches("DROP_REASON_").to_ascii_lowercase();
                *refused.entry(reason).or_default() += refusal["count"].as_u64().unwrap_or(0);
            }
        }
        Some(Captures { stored, refused })
    }
}

/// An agent has the breakpoint (installed, or already hit or refusing by rate).
fn is_installed(status: &Json) -> bool {
    let state = status["state"].as_str().unwrap_or_default().to_ascii_lowercase();
    ["installed", "hit", "rate_limited", "rate-limited"]
        .iter()
        .any(|s| state.ends_with(s))
}

fn parse(stdout: &str, what: &str) -> Result<Json, String> {
    serde_json::from_str(stdout).map_err(|e| format!("{what} printed no JSON ({e}): {stdout}"))
}

fn text(value: &Json, what: &str) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no {what} in the CLI's answer"))
}

/// A new session's id and token.
fn open_session(server: &Server) -> Result<(String, String), String> {
    let opened = server.cli(&["session", "open", "--ttl", LIFETIME, "-o", "json"]);
    let session = parse(&opened.stdout, "session open")?;
    Ok((
        text(&session["id"], "session id")?,
        text(&session["token"], "session token")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_is_always_chosen_first_and_its_second_run_only_when_named() {
        let letters =
            |chosen: Vec<Configuration>| chosen.into_iter().map(Configuration::letter).collect::<String>();
        assert_eq!(letters(Configuration::chosen("db").unwrap()), "abd");
        assert_eq!(letters(Configuration::chosen("abcde").unwrap()), "abcde");
        assert_eq!(letters(Configuration::chosen("Ad").unwrap()), "adA");
        let refused = Configuration::chosen("af").unwrap_err();
        assert!(refused.contains("'f'"), "{refused}");
    }

    #[test]
    fn the_second_run_of_a_is_built_and_run_as_a() {
        let again = Configuration::CompiledOutAgain;
        assert!(again.compiled_out() && !again.armed() && !again.sends_session());
    }
}
