//! Probe sites: one `static` per `probe!` use, collected at link time.
//!
//! Each site holds its metadata, an armed flag and the breakpoints installed
//! on it. The flag is all a disabled probe reads: one relaxed load and a
//! branch. Everything else happens in [`Callsite::hit`], which is cold and
//! never inlined into the caller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use keyhole_proto::v1::ProbeSite;

use crate::capture::Capturer;
use crate::fire::ArmedProbe;

/// Where a probe is and what it captures; written by the `probe!` macro.
#[derive(Debug)]
pub struct ProbeMeta {
    pub label: &'static str,
    pub file: &'static str,
    pub line: u32,
    pub module: &'static str,
    pub variables: &'static [&'static str],
}

impl ProbeMeta {
    pub fn to_proto(&self) -> ProbeSite {
        ProbeSite {
            label: self.label.to_owned(),
            file: self.file.to_owned(),
            line: self.line,
            module: self.module.to_owned(),
            variables: self.variables.iter().map(|v| (*v).to_owned()).collect(),
        }
    }
}

/// The variables of one hit, captured on demand into the capturer: the
/// probe's arguments are only evaluated inside this closure.
pub type CaptureVariables<'a> = &'a dyn Fn(&mut Capturer<'_>);

/// One `probe!` site.
pub struct Callsite {
    meta: ProbeMeta,
    armed: AtomicBool,
    probe: ArcSwapOption<ArmedProbe>,
}

/// Every probe site linked into the binary, whether or not it has run.
#[linkme::distributed_slice]
pub static CALLSITES: [Callsite];

impl Callsite {
    #[doc(hidden)]
    pub const fn new(meta: ProbeMeta) -> Self {
        Self {
            meta,
            armed: AtomicBool::new(false),
            probe: ArcSwapOption::const_empty(),
        }
    }

    pub fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    /// Whether any breakpoint is installed here. Relaxed is enough: a probe
    /// that sees the flag a moment late only misses a hit, and the
    /// breakpoints themselves are read through `ArcSwap`, which orders them.
    #[inline(always)]
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// A hit on an armed probe: session check, budgets, capture, hand-off.
    #[cold]
    #[inline(never)]
    pub fn hit(&'static self, variables: CaptureVariables<'_>) {
        crate::fire::fire(self, &self.probe, variables);
    }

    /// Where [`Callsite::hit`] starts: stack traces begin at its caller.
    pub(crate) fn hit_entry() -> usize {
        Callsite::hit as *const () as usize
    }

    /// Installs the breakpoints for this site (or none) and sets the flag to match.
    pub(crate) fn install(&self, probe: Option<Arc<ArmedProbe>>) {
        let armed = probe.is_some();
        self.probe.store(probe);
        // Release pairs with the `ArcSwap` load in `hit`: a probe that sees the
        // flag set also finds the breakpoints stored before it.
        self.armed.store(armed, Ordering::Release);
    }
}

/// The probe catalogue: every site, first of each label only, plus the labels
/// used by more than one site.
pub fn catalogue() -> (Vec<&'static Callsite>, Vec<&'static str>) {
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    let mut sites = Vec::new();
    for site in CALLSITES.iter() {
        let count = seen.entry(site.meta.label).or_default();
        if *count == 0 {
            sites.push(site);
        }
        *count += 1;
    }
    let mut duplicates: Vec<&'static str> = seen
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|(label, _)| label)
        .collect();
    duplicates.sort_unstable();
    (sites, duplicates)
}
