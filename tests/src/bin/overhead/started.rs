//! Configurations' services started for a run: their warm-up, and their load, measured.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use keyhole_tests::load::build::Binaries;
use keyhole_tests::load::cpu::{pin_this_thread, CpuMeter};
use keyhole_tests::load::perf::PerfRecording;
use keyhole_tests::load::rss::{RssSampler, RssSeries};
use keyhole_tests::load::sched::EventMeter;
use keyhole_tests::load::shop::{Configuration, Launch, RunningShop};
use keyhole_tests::load::{self, LoadPlan, LoadReport, Target};

use super::figures::{CpuPerRequest, EventsPerRequest, RunFigures, Spent};
use super::{Args, REQUEST_TIMEOUT, RSS_EVERY};

/// Whether the shops of a run are warmed up all at once (as they are then loaded) or one after
/// another (as bursts load them).
#[derive(Clone, Copy)]
pub(crate) enum Warm {
    Together,
    InTurn,
}

/// How long to load each run, after how long a warm-up, until when.
pub(crate) struct Load {
    pub(crate) length: Duration,
    /// e's runs, which may be longer for the memory figure.
    pub(crate) e_length: Duration,
    pub(crate) warmup: Duration,
    pub(crate) stop: Arc<AtomicBool>,
}

impl Load {
    pub(crate) fn length_of(&self, configuration: Configuration) -> Duration {
        if configuration == Configuration::Disconnected {
            self.e_length
        } else {
            self.length
        }
    }
}

/// Configurations' services, started, with the load that drives each and its memory sampler.
pub(crate) struct Started {
    configurations: Vec<Configuration>,
    pub(crate) shops: Vec<RunningShop>,
    plans: Vec<LoadPlan>,
    samplers: Vec<RssSampler>,
    /// Where `--perf` keeps each run's samples.
    perf: Option<PathBuf>,
}

impl Started {
    pub(crate) fn start(
        configurations: &[Configuration],
        args: &Args,
        binaries: &Binaries,
        length: &dyn Fn(Configuration) -> Duration,
    ) -> Result<Started, String> {
        let mut shops = configurations
            .iter()
            .map(|&configuration| {
                let launch = Launch {
                    callgrind: None,
                    breakpoint_rate: args.breakpoint_rate,
                    preload: args.preload.as_deref(),
                };
                RunningShop::start(configuration, binaries, &launch)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if args.session_everywhere {
            for shop in &mut shops {
                shop.carry_another_session()?;
            }
        }
        let plans = shops
            .iter()
            .zip(configurations)
            .map(|(shop, &configuration)| {
                Ok(LoadPlan {
                    target: Target::parse(shop.frontend_url())?,
                    concurrency: args.concurrency,
                    requests: args.requests,
                    duration: length(configuration),
                    session: shop.session_share(args.session_fraction),
                    request_timeout: REQUEST_TIMEOUT,
                    client_threads: args.client_threads,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let samplers = shops
            .iter()
            .map(|shop| RssSampler::start(shop.frontend_pid(), RSS_EVERY))
            .collect();
        Ok(Started {
            configurations: configurations.to_vec(),
            shops,
            plans,
            samplers,
            perf: args.perf.clone(),
        })
    }

    /// Loads every shop for `load.warmup`, unmeasured, as `how` says; with `session_in_warmup_only`
    /// no later request carries a session.
    pub(crate) fn warm_up(
        &mut self,
        load: &Load,
        how: Warm,
        session_in_warmup_only: bool,
    ) -> Result<(), String> {
        if !load.warmup.is_zero() {
            let warm: Vec<LoadPlan> = self.plans.iter().map(|plan| plan.lasting(load.warmup)).collect();
            match how {
                Warm::Together => {
                    run_together(&warm, &[], &load.stop)?;
                }
                Warm::InTurn => {
                    for plan in warm {
                        run_together(&[plan], &[], &load.stop)?;
                    }
                }
            }
        }
        if session_in_warmup_only {
            for plan in &mut self.plans {
                plan.session = None;
            }
        }
        Ok(())
    }

    /// Loads the shops at `indices` all at once, counting the CPU time their services and control
    /// planes spend.
    /// Each one's client runs on the CPU `cpus` gives it, if any.
    pub(crate) fn load(
        &self,
        round: usize,
        indices: &[usize],
        cpus: &[Option<usize>],
        stop: &Arc<AtomicBool>,
    ) -> Result<Vec<(usize, LoadReport, Spent)>, String> {
        let plans: Vec<LoadPlan> = indices
            .iter()
            .filter_map(|&i| self.plans.get(i).cloned())
            .collect();
        let meters: Vec<(CpuMeter, CpuMeter, EventMeter)> = indices
            .iter()
            .filter_map(|&i| self.shops.get(i))
            .map(|shop| {
                let control_plane: Vec<u32> = shop.control_plane_pid().into_iter().collect();
                (
                    CpuMeter::start(&shop.service_pids()),
                    CpuMeter::start(&control_plane),
                    EventMeter::start(&shop.service_pids()),
                )
            })
            .collect();
        let recordings = match &self.perf {
            Some(dir) => indices
                .iter()
                .filter_map(|&i| Some((self.configurations.get(i)?, self.shops.get(i)?)))
                .map(|(configuration, shop)| {
                    let name = format!("{}-{round}", configuration.letter());
                    PerfRecording::start(dir, &name, &shop.service_pids())
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let reports = run_together(&plans, cpus, stop)?;
        for (recording, report) in recordings.into_iter().zip(&reports) {
            recording.finish(report.answered())?;
        }
        Ok(indices
            .iter()
            .zip(reports)
            .zip(meters)
            .map(|((&index, report), (services, control_plane, events))| {
                let spent = Spent {
                    services: services.spent(),
                    control_plane: control_plane.spent().total(),
                    events: events.counted(),
                };
                (index, report, spent)
            })
            .collect())
    }

    /// Each shop's frontend memory since it started; sampling ends here.
    pub(crate) fn finish_sampling(&mut self) -> Vec<RssSeries> {
        std::mem::take(&mut self.samplers)
            .into_iter()
            .map(RssSampler::finish)
            .collect()
    }

    pub(crate) fn figures(
        &self,
        round: usize,
        index: usize,
        report: LoadReport,
        spent: Spent,
        rss: RssSeries,
        with_captures: bool,
    ) -> RunFigures {
        let answered = report.answered();
        RunFigures {
            round,
            configuration: self.configurations[index],
            rss,
            cpu: CpuPerRequest::of(spent, answered),
            events: EventsPerRequest::of(spent.events, answered),
            captures: if with_captures {
                self.shops.get(index).and_then(RunningShop::captures)
            } else {
                None
            },
            report,
        }
    }
}

/// Runs every plan at the same time, each from its own thread (on the CPU `cpus` gives it, if
/// any), and waits for all of them.
pub(crate) fn run_together(
    plans: &[LoadPlan],
    cpus: &[Option<usize>],
    stop: &Arc<AtomicBool>,
) -> Result<Vec<LoadReport>, String> {
    std::thread::scope(|scope| {
        let clients: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(k, plan)| {
                let cpu = cpus.get(k).copied().flatten();
                scope.spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_this_thread(cpu)?;
                    }
                    load::run(plan, stop.clone())
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|client| client.join().map_err(|_| "a load client panicked".to_owned())?)
            .collect()
    })
}
