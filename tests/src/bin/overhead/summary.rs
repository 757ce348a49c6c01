//! What `overhead` makes of its runs: each configuration's medians, its ratios to a (of the
//! medians, and round by round with the interval of their geometric mean), and the issue's
//! targets as met or missed.

use keyhole_tests::load::shop::Configuration;

use super::figures::EventsPerRequest;
use super::{millis, Args, RunFigures, MIB, RSS_EVERY, RSS_SLACK_MIB};

/// A column of the kernel's events: its header, and its value in a run.
type EventColumn = (&'static str, fn(&EventsPerRequest) -> f64);

/// The kernel's events as the second table gives them: each column's header and its value in a
/// run, in the table's order, so that the order is written here only.
const EVENT_COLUMNS: [EventColumn; 4] = [
    ("switches, blocking", |e| e.voluntary_switches),
    ("switches, preempted", |e| e.involuntary_switches),
    ("run-queue wait us", |e| e.runqueue_wait),
    ("minor faults", |e| e.minor_faults),
];

/// Medians over rounds of one configuration.
struct Medians {
    throughput: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    cpu: f64,
    system: f64,
    agent: f64,
    control_plane: f64,
    /// The kernel's events per request, in the order of [`EVENT_COLUMNS`].
    events: [f64; EVENT_COLUMNS.len()],
    errors: u64,
    rss_growth_max: f64,
}

impl Medians {
    fn of(runs: &[&RunFigures]) -> Medians {
        let median_of = |value: &dyn Fn(&RunFigures) -> f64| median(runs.iter().map(|r| value(r)).collect());
        Medians {
            throughput: median_of(&|r| r.report.throughput()),
            p50: median_of(&|r| millis(r.report.latency.p50)),
            p99: median_of(&|r| millis(r.report.latency.p99)),
            p999: median_of(&|r| millis(r.report.latency.p999)),
            cpu: median_of(&|r| r.cpu.total()),
            system: median_of(&|r| r.cpu.serving_system),
            agent: median_of(&|r| r.cpu.agent),
            control_plane: median_of(&|r| r.cpu.control_plane),
            events: EVENT_COLUMNS.map(|(_, value)| median_of(&|r| value(&r.events))),
            errors: runs.iter().map(|r| r.report.errors.total()).sum(),
            rss_growth_max: runs
                .iter()
                .map(|r| r.rss.max_growth() as f64 / MIB)
                .fold(0.0, f64::max),
        }
    }
}

/// What a target compares with a's.
#[derive(Clone, Copy)]
enum Figure {
    Throughput,
    P99,
    /// CPU time per request of both services.
    Cpu,
}

impl Figure {
    fn name(self) -> &'static str {
        match self {
            Figure::Throughput => "throughput",
            Figure::P99 => "p99",
            Figure::Cpu => "CPU per request",
        }
    }

    /// This figure of one run.
    fn of_run(self, run: &RunFigures) -> f64 {
        match self {
            Figure::Throughput => run.report.throughput(),
            Figure::P99 => millis(run.report.latency.p99),
            Figure::Cpu => run.cpu.total(),
        }
    }

    /// This figure of a configuration's medians over its runs.
    fn of_medians(self, medians: &Medians) -> f64 {
        match self {
            Figure::Throughput => medians.throughput,
            Figure::P99 => medians.p99,
            Figure::Cpu => medians.cpu,
        }
    }
}

/// A target of the issue: a configuration's ratio to a, at least or at most a bound.
struct Goal {
    configuration: Configuration,
    figure: Figure,
    at_least: Option<f64>,
    at_most: Option<f64>,
}

const GOALS: [Goal; 6] = [
    goal_throughput(Configuration::Connected, 0.99),
    goal_throughput(Configuration::ArmedForNobody, 0.98),
    goal_throughput(Configuration::Sampled, 0.97),
    goal_throughput(Configuration::Disconnected, 0.97),
    goal_p99(Configuration::ArmedForNobody, 1.05),
    goal_p99(Configuration::Sampled, 1.05),
];

const fn goal_throughput(configuration: Configuration, at_least: f64) -> Goal {
    Goal {
        configuration,
        figure: Figure::Throughput,
        at_least: Some(at_least),
        at_most: None,
    }
}

const fn goal_p99(configuration: Configuration, at_most: f64) -> Goal {
    Goal {
        configuration,
        figure: Figure::P99,
        at_least: None,
        at_most: Some(at_most),
    }
}

pub(crate) fn summarise(runs: &[RunFigures], configurations: &[Configuration], args: &Args) {
    let medians: Vec<(Configuration, Medians)> = configurations
        .iter()
        .filter_map(|&configuration| {
            let of: Vec<&RunFigures> = runs.iter().filter(|r| r.configuration == configuration).collect();
            (!of.is_empty()).then(|| (configuration, Medians::of(&of)))
        })
        .collect();
    let Some((_, baseline)) = medians.iter().find(|(c, _)| *c == Configuration::CompiledOut) else {
        println!("no run of a completed: no ratios");
        return;
    };
    let ratio = |configuration: Configuration, figure: Figure| {
        medians
            .iter()
            .find(|(c, _)| *c == configuration)
            .map(|(_, m)| figure.of_medians(m) / figure.of_medians(baseline))
    };
    let runs_of_a = runs
        .iter()
        .filter(|r| r.configuration == Configuration::CompiledOut)
        .count();
    println!("Medians over each configuration's runs ({runs_of_a} of a):");
    println!();
    println!(
        "| config | what | req/s | p50 ms | p99 ms | p99.9 ms | req/s vs a | p99 vs a | \
         CPU us/req | CPU vs a | of it system | agent thread | control plane us/req | errors | frontend RSS growth, max MiB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (configuration, m) in &medians {
        println!(
            "| {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {:.3} | {:.1} | {:.2} | {:.2} | {} | {:.1} |",
            configuration.letter(),
            configuration.describe(),
            m.throughput,
            m.p50,
            m.p99,
            m.p999,
            m.throughput / baseline.throughput,
            m.p99 / baseline.p99,
            m.cpu,
            m.cpu / baseline.cpu,
            m.system,
            m.agent,
            m.control_plane,
            m.errors,
            m.rss_growth_max
        );
    }
    println!();
    println!("The kernel's events in both services per request, medians (ratio to a):");
    println!();
    let headers: Vec<&str> = EVENT_COLUMNS.iter().map(|(header, _)| *header).collect();
    println!("| config | {} |", headers.join(" | "));
    println!("|---|{}", "---:|".repeat(headers.len()));
    for (configuration, m) in &medians {
        let cells: Vec<String> = m
            .events
            .iter()
            .zip(&baseline.events)
            .map(|(value, base)| format!("{value:.3} ({:.3})", value / base))
            .collect();
        println!("| {} | {} |", configuration.letter(), cells.join(" | "));
    }
    println!();
    println!("Targets (ratios of medians to a, this run; reported, not asserted):");
    for goal in &GOALS {
        let Some(value) = ratio(goal.configuration, goal.figure) else {
            continue;
        };
        let (relation, bound, met) = match (goal.at_least, goal.at_most) {
            (Some(low), _) => (">=", low, value >= low),
            (_, Some(high)) => ("<=", high, value <= high),
            _ => continue,
        };
        let paired = paired_ratios(runs, goal.configuration, goal.figure);
        println!(
            "- {} {} / a {relation} {bound:.2}: {value:.3} {}; round by round {}",
            goal.configuration.letter(),
            goal.figure.name(),
            if met { "met" } else { "MISSED" },
            describe_spread(&paired)
        );
    }
    // Not a target: where a configuration's extra time goes, CPU or waiting.
    for &configuration in configurations
        .iter()
        .filter(|&&c| c != Configuration::CompiledOut)
    {
        let Some(value) = ratio(configuration, Figure::Cpu) else {
            continue;
        };
        println!(
            "- {} CPU per request / a: {value:.3}; round by round {}",
            configuration.letter(),
            describe_spread(&paired_ratios(runs, configuration, Figure::Cpu))
        );
    }
    if let Some(throughput) = ratio(Configuration::CompiledOutAgain, Figure::Throughput) {
        for (figure, value) in [
            (Figure::Throughput, throughput),
            (
                Figure::P99,
                ratio(Configuration::CompiledOutAgain, Figure::P99).unwrap_or(f64::NAN),
            ),
        ] {
            let paired = paired_ratios(runs, Configuration::CompiledOutAgain, figure);
            println!(
                "- A {} / a, the noise floor (a against itself; no target): {value:.3}; round by round {}",
                figure.name(),
                describe_spread(&paired)
            );
        }
    }
    for (configuration, baseline) in side_comparisons(configurations) {
        for figure in [Figure::Throughput, Figure::Cpu] {
            let paired = paired_with(runs, configuration, baseline, figure);
            if paired.is_empty() {
                continue;
            }
            println!(
                "- {} {} / {} (no target): round by round {}",
                configuration.letter(),
                figure.name(),
                baseline.letter(),
                describe_spread(&paired)
            );
        }
    }
    for &configuration in configurations {
        let split: Vec<(f64, f64)> = runs
            .iter()
            .filter(|r| r.configuration == configuration)
            .filter_map(|r| r.report.by_session.as_ref())
            .map(|(with, without)| (millis(with.p99), millis(without.p99)))
            .collect();
        if split.is_empty() {
            continue;
        }
        let with = median(split.iter().map(|(with, _)| *with).collect());
        let without = median(split.iter().map(|(_, without)| *without).collect());
        let a_p99 = baseline.p99;
        println!(
            "- {} p99 of the requests with the session {with:.3} ms ({:.3} x a), without it {without:.3} ms \
             ({:.3} x a) (medians; not a target)",
            configuration.letter(),
            with / a_p99,
            without / a_p99
        );
    }
    let e_runs: Vec<&RunFigures> = runs
        .iter()
        .filter(|r| r.configuration == Configuration::Disconnected)
        .collect();
    if let Some(worst) = e_runs.iter().max_by_key(|r| r.rss.max_growth()) {
        let bound = args.queue_bound_mib + RSS_SLACK_MIB;
        let growth = worst.rss.max_growth() as f64 / MIB;
        println!(
            "- e frontend resident memory growth <= queue bound {:.0} MiB + {RSS_SLACK_MIB:.0} MiB: \
             {growth:.1} MiB over {:.0} s of sampling (RSS {:.1} MiB at the start, {:.1} MiB at most, {} samples) {}",
            args.queue_bound_mib,
            // With --bursts the series spans the round, not one burst.
            (RSS_EVERY * u32::try_from(worst.rss.samples).unwrap_or(u32::MAX)).as_secs_f64(),
            worst.rss.first as f64 / MIB,
            worst.rss.max as f64 / MIB,
            worst.rss.samples,
            if growth <= bound { "met" } else { "MISSED" }
        );
    }
}

/// Round by round, `configuration`'s `figure` over a's in the same round. A
/// machine whose speed drifts over minutes moves both runs of a round alike, which the ratio of the
/// medians over all rounds does not see.
fn paired_ratios(runs: &[RunFigures], configuration: Configuration, figure: Figure) -> Vec<f64> {
    paired_with(runs, configuration, Configuration::CompiledOut, figure)
}

/// [`paired_ratios`] against `baseline`'s run in the same round instead of a's.
fn paired_with(
    runs: &[RunFigures],
    configuration: Configuration,
    baseline: Configuration,
    figure: Figure,
) -> Vec<f64> {
    let values: Vec<RoundValue> = runs
        .iter()
        .map(|run| (run.round, run.configuration, figure.of_run(run)))
        .collect();
    pair_by_round(&values, configuration, baseline)
}

/// One run's figure: its round, its configuration, the value.
type RoundValue = (usize, Configuration, f64);

/// `configuration`'s value over `baseline`'s, for every round that has both, in the order of
/// `configuration`'s runs.
fn pair_by_round(values: &[RoundValue], configuration: Configuration, baseline: Configuration) -> Vec<f64> {
    values
        .iter()
        .filter(|(_, of, _)| *of == configuration)
        .filter_map(|(round, _, value)| {
            let (_, _, base) = values.iter().find(|(r, of, _)| r == round && *of == baseline)?;
            Some(value / base)
        })
        .collect()
}

/// The comparisons beside the targets, each configuration over another in the same rounds: every
/// configuration against A when A ran (whether it differs from a run of a in processes of its own,
/// the noise floor, rather than from a's), and d against c when both ran (what matching the
/// session's requests adds to armed probes; with --session-everywhere the requests are the same).
fn side_comparisons(configurations: &[Configuration]) -> Vec<(Configuration, Configuration)> {
    let ran = |configuration| configurations.contains(&configuration);
    let mut pairs = Vec::new();
    if ran(Configuration::CompiledOutAgain) {
        pairs.extend(
            configurations
                .iter()
                .filter(|&&c| c != Configuration::CompiledOut && c != Configuration::CompiledOutAgain)
                .map(|&c| (c, Configuration::CompiledOutAgain)),
        );
    }
    if ran(Configuration::ArmedForNobody) && ran(Configuration::Sampled) {
        pairs.push((Configuration::Sampled, Configuration::ArmedForNobody));
    }
    pairs
}

/// "median 0.981 (0.962-0.995, 6 rounds); geometric mean 0.979, 95% interval 0.970-0.988", or
/// "no round with a". The interval is of the mean (normal, on the ratios' logarithms): with many
/// rounds it narrows where the range does not, which is what a noisy machine needs.
fn describe_spread(ratios: &[f64]) -> String {
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let spread = match ratios.len() {
        0 => return "no round with a".to_owned(),
        n => format!(
            "median {:.3} ({low:.3}-{high:.3}, {n} rounds)",
            median(ratios.to_vec())
        ),
    };
    match geometric_mean_interval(ratios) {
        Some((mean, low, high)) => {
            format!("{spread}; geometric mean {mean:.3}, 95% interval {low:.3}-{high:.3}")
        }
        None => spread,
    }
}

/// z for a two-sided 95% interval of a normal distribution.
const Z_95: f64 = 1.96;

/// The geometric mean of `ratios` and the 95% interval of it, from the mean and standard error of
/// their logarithms; `None` for fewer than two ratios or any that is not positive.
fn geometric_mean_interval(ratios: &[f64]) -> Option<(f64, f64, f64)> {
    if ratios.len() < 2 || ratios.iter().any(|r| !r.is_finite() || *r <= 0.0) {
        return None;
    }
    let n = ratios.len() as f64;
    let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
    let mean = logs.iter().sum::<f64>() / n;
    let variance = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let half = Z_95 * (variance / n).sqrt();
    Some((mean.exp(), (mean - half).exp(), (mean + half).exp()))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_paired_with_the_baselines_run_of_the_same_round_only() {
        use Configuration::{CompiledOut as A1, CompiledOutAgain as A2, Sampled as D};
        let values = [
            (1, A1, 100.0),
            (1, D, 90.0),
            (1, A2, 120.0),
            (2, A1, 50.0),
            (2, D, 60.0),
            // Round 3 has no A: its d pairs with nothing.
            (3, D, 70.0),
            (3, A1, 35.0),
            (2, A2, 40.0),
        ];
        assert_eq!(pair_by_round(&values, D, A1), vec![0.9, 1.2, 2.0]);
        assert_eq!(pair_by_round(&values, D, A2), vec![0.75, 1.5]);
        assert_eq!(pair_by_round(&values, A2, A1), vec![1.2, 0.8]);
        assert!(pair_by_round(&values, Configuration::ArmedForNobody, A1).is_empty());
    }

    #[test]
    fn configurations_are_compared_with_the_noise_floor_and_d_with_c_when_they_ran() {
        use Configuration::*;
        assert_eq!(
            side_comparisons(&[CompiledOut, ArmedForNobody, Sampled, CompiledOutAgain]),
            vec![
                (ArmedForNobody, CompiledOutAgain),
                (Sampled, CompiledOutAgain),
                (Sampled, ArmedForNobody)
            ]
        );
        assert_eq!(side_comparisons(&[CompiledOut, Sampled]), vec![]);
        assert_eq!(
            side_comparisons(&[CompiledOut, Sampled, CompiledOutAgain]),
            vec![(Sampled, CompiledOutAgain)]
        );
    }

    #[test]
    fn the_interval_of_the_geometric_mean_narrows_with_more_rounds_and_holds_the_mean() {
        let few = [0.9, 1.1, 0.95, 1.05];
        let many: Vec<f64> = few.iter().cycle().take(400).copied().collect();
        let (mean_few, low_few, high_few) = geometric_mean_interval(&few).unwrap();
        let (mean_many, low_many, high_many) = geometric_mean_interval(&many).unwrap();
        assert!((mean_few - mean_many).abs() < 1e-12);
        assert!(low_few < mean_few && mean_few < high_few);
        assert!(
            high_many - low_many < (high_few - low_few) / 5.0,
            "400 rounds, not 4: ten times narrower"
        );
        // The geometric mean of 0.9 and 1.1 is below their arithmetic mean.
        assert!(mean_few < 1.0);
        assert_eq!(
            geometric_mean_interval(&[1.0]),
            None,
            "one round has no spread to go by"
        );
        assert_eq!(geometric_mean_interval(&[1.0, 0.0]), None);
        assert_eq!(geometric_mean_interval(&[1.0, f64::NAN]), None);
    }
}
