//! `probe!` without a running agent: it costs a load, evaluates nothing, and
//! is in the catalogue before it ever runs.

use std::sync::atomic::{AtomicUsize, Ordering};

use keyhole::callsite::catalogue;

static EVALUATIONS: AtomicUsize = AtomicUsize::new(0);

fn expensive() -> u32 {
    EVALUATIONS.fetch_add(1, Ordering::SeqCst);
    42
}

#[derive(Debug)]
struct OnlyDebug;

struct NoTraits;

#[test]
fn a_probe_with_no_breakpoint_evaluates_none_of_its_arguments() {
    let order = OnlyDebug;
    for _ in 0..1000 {
        keyhole::probe!("tests.disabled", amount = expensive(), ?debugged = expensive(), ?order);
    }
    assert_eq!(EVALUATIONS.load(Ordering::SeqCst), 0);
}

#[allow(dead_code)]
fn never_runs(order_id: u64, amount: u32) {
    keyhole::probe!("tests.never_ran", order_id, amount);
}

#[test]
fn the_catalogue_lists_probes_that_never_ran_with_their_variables() {
    let (sites, _) = catalogue();
    let site = sites
        .iter()
        .find(|site| site.meta().label == "tests.never_ran")
        .expect("the probe is in the catalogue");
    assert_eq!(site.meta().variables, ["order_id", "amount"]);
    assert!(site.meta().file.ends_with("probes.rs"));
    assert!(site.meta().line > 0);
    assert!(site.meta().module.ends_with("probes"));
}

#[allow(dead_code)]
fn duplicates() {
    keyhole::probe!("tests.duplicate");
    keyhole::probe!("tests.duplicate", x = 1);
}

#[test]
fn a_label_used_twice_is_reported_not_silently_merged() {
    let (sites, duplicates) = catalogue();
    assert_eq!(duplicates, ["tests.duplicate"]);
    assert_eq!(
        sites
            .iter()
            .filter(|s| s.meta().label == "tests.duplicate")
            .count(),
        1
    );
}

#[test]
fn every_argument_form_is_accepted() {
    let cart = vec![1, 2, 3];
    let opaque = NoTraits;
    keyhole::probe!("tests.forms.none");
    keyhole::probe!("tests.forms.trailing", cart,);
    keyhole::probe!("tests.forms.all", cart, ?cart, count = cart.len(), ?first = cart.first(), opaque);
    let (sites, _) = catalogue();
    let all = sites
        .iter()
        .find(|s| s.meta().label == "tests.forms.all")
        .unwrap();
    assert_eq!(all.meta().variables, ["cart", "cart", "count", "first", "opaque"]);
}
