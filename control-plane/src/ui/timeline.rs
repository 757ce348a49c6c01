//! The order of a session's snapshots on its timeline: grouped by trace, and
//! within a trace by span causality rather than wall clock, because each
//! snapshot's time comes from its own host's clock and hosts disagree.
//!
//! Within a trace, the snapshots of one span are one node (in captured order:
//! one span runs on one host, so its times agree). A span whose parent span
//! has snapshots in the trace comes after that parent, depth first; spans
//! whose parent is unknown are roots. Siblings and roots go by their earliest
//! captured time, then span id, so the order is stable. Whatever the ids say
//! (a span naming itself or a cycle of parents), every snapshot appears once.

use std::collections::HashMap;

use keyhole_proto::v1::Snapshot;

/// One line of the timeline.
#[derive(Debug)]
pub struct Entry<'a> {
    pub snapshot: &'a Snapshot,
    /// How many spans of the trace lie between this one and its root.
    pub depth: usize,
}

/// The snapshots of one trace, in causal order.
#[derive(Debug)]
pub struct Trace<'a> {
    /// Empty for the snapshots that carried no trace context.
    pub trace_id: &'a str,
    pub entries: Vec<Entry<'a>>,
}

/// `snapshots` grouped by trace, the groups by their earliest captured time
/// (snapshots without a trace last), each group in causal order.
pub fn order(snapshots: &[Snapshot]) -> Vec<Trace<'_>> {
    let mut sorted: Vec<&Snapshot> = snapshots.iter().collect();
    sorted.sort_by(|a, b| by_time(a, b));
    let mut traces: Vec<(&str, Vec<&Snapshot>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for snapshot in sorted {
        let trace_id = snapshot.trace_id.as_str();
        let slot = *index.entry(trace_id).or_insert_with(|| {
            traces.push((trace_id, Vec::new()));
            traces.len() - 1
        });
        traces[slot].1.push(snapshot);
    }
    // Groups were created in order of their earliest snapshot; only move the untraced ones.
    traces.sort_by_key(|(trace_id, _)| trace_id.is_empty());
    traces
        .into_iter()
        .map(|(trace_id, snapshots)| Trace {
            trace_id,
            entries: causal_order(&snapshots),
        })
        .collect()
}

fn by_time(a: &Snapshot, b: &Snapshot) -> std::cmp::Ordering {
    (a.captured_at_unix_ms, &a.span_id, &a.id).cmp(&(b.captured_at_unix_ms, &b.span_id, &b.id))
}

/// One span of a trace and the snapshots taken in it.
struct Span<'a> {
    parent_id: &'a str,
    snapshots: Vec<&'a Snapshot>,
    children: Vec<usize>,
}

/// One trace's snapshots (sorted by time) in depth-first span order.
fn causal_order<'a>(sorted: &[&'a Snapshot]) -> Vec<Entry<'a>> {
    let mut spans: Vec<Span<'a>> = Vec::new();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for &snapshot in sorted {
        let span_id = snapshot.span_id.as_str();
        // Snapshots without a span id cannot be told apart: each is its own span.
        let known = (!span_id.is_empty())
            .then(|| by_id.get(span_id).copied())
            .flatten();
        match known {
            Some(span) => spans[span].snapshots.push(snapshot),
            None => {
                if !span_id.is_empty() {
                    by_id.insert(span_id, spans.len());
                }
                spans.push(Span {
                    parent_id: &snapshot.parent_span_id,
                    snapshots: vec![snapshot],
                    children: Vec::new(),
                });
            }
        }
    }
    // Spans were created in order of their earliest snapshot, so pushing in
    // that order leaves every child list, and the roots, in time order.
    let mut roots = Vec::new();
    for span in 0..spans.len() {
        match by_id.get(spans[span].parent_id) {
            Some(&parent) if parent != span => {
                spans[parent].children.push(span);
            }
            _ => roots.push(span),
        }
    }

    let mut entries = Vec::with_capacity(sorted.len());
    let mut visited = vec![false; spans.len()];
    // Spans in a cycle of parents have no root: after the roots, start from
    // the earliest span not yet shown.
    let starts: Vec<usize> = roots.into_iter().chain(0..spans.len()).collect();
    for start in starts {
        let mut stack = vec![(start, 0)];
        while let Some((span, depth)) = stack.pop() {
            if std::mem::replace(&mut visited[span], true) {
                continue;
            }
            entries.extend(
                spans[span]
                    .snapshots
                    .iter()
                    .map(|&snapshot| Entry { snapshot, depth }),
            );
            stack.extend(spans[span].children.iter().rev().map(|&child| (child, depth + 1)));
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: &str, trace: &str, span: &str, parent: &str, at: i64) -> Snapshot {
        Snapshot {
            id: id.into(),
            trace_id: trace.into(),
            span_id: span.into(),
            parent_span_id: parent.into(),
            captured_at_unix_ms: at,
            ..Default::default()
        }
    }

    fn lines(traces: &[Trace<'_>]) -> Vec<Vec<(String, usize)>> {
        traces
            .iter()
            .map(|trace| {
                trace
                    .entries
                    .iter()
                    .map(|e| (e.snapshot.id.clone(), e.depth))
                    .collect()
            })
            .collect()
    }

    fn line(id: &str, depth: usize) -> (String, usize) {
        (id.to_owned(), depth)
    }

    #[test]
    fn a_parent_span_comes_before_its_children_even_when_their_clocks_are_behind() {
        let snapshots = [
            snapshot("grandchild", "t1", "c", "b", 100),
            snapshot("child", "t1", "b", "a", 200),
            snapshot("root", "t1", "a", "", 300),
        ];
        assert_eq!(
            lines(&order(&snapshots)),
            [vec![line("root", 0), line("child", 1), line("grandchild", 2)]]
        );
    }

    #[test]
    fn a_span_shows_all_its_snapshots_then_the_spans_it_called_depth_first() {
        let snapshots = [
            snapshot("a-late", "t", "a", "", 50),
            snapshot("b2-first", "t", "b2", "a", 5),
            snapshot("a-early", "t", "a", "", 10),
            snapshot("b1-under-b2", "t", "b1", "b2", 1),
            snapshot("b3", "t", "b3", "a", 7),
        ];
        assert_eq!(
            lines(&order(&snapshots)),
            [vec![
                line("a-early", 0),
                line("a-late", 0),
                line("b2-first", 1),
                line("b1-under-b2", 2),
                line("b3", 1),
            ]]
        );
    }

    #[test]
    fn spans_with_unknown_parents_are_roots_in_captured_order() {
        let snapshots = [
            snapshot("second", "t", "y", "not-captured", 20),
            snapshot("first", "t", "x", "also-missing", 10),
            snapshot("no-span", "t", "", "", 15),
        ];
        assert_eq!(
            lines(&order(&snapshots)),
            [vec![line("first", 0), line("no-span", 0), line("second", 0)]]
        );
    }

    #[test]
    fn traces_are_separate_groups_by_earliest_capture_and_untraced_ones_come_last() {
        let snapshots = [
            snapshot("untraced", "", "", "", 1),
            snapshot("late-trace", "t2", "s2", "", 30),
            snapshot("early-trace", "t1", "s1", "", 20),
            snapshot("early-trace-again", "t1", "s3", "", 40),
        ];
        let traces = order(&snapshots);
        let ids: Vec<&str> = traces.iter().map(|t| t.trace_id).collect();
        assert_eq!(ids, ["t1", "t2", ""]);
        assert_eq!(
            lines(&traces),
            [
                vec![line("early-trace", 0), line("early-trace-again", 0)],
                vec![line("late-trace", 0)],
                vec![line("untraced", 0)],
            ]
        );
    }

    #[test]
    fn cycles_and_self_parents_still_show_every_snapshot_once() {
        let snapshots = [
            snapshot("loop-a", "t", "a", "b", 10),
            snapshot("loop-b", "t", "b", "a", 20),
            snapshot("own-parent", "t", "s", "s", 5),
        ];
        assert_eq!(
            lines(&order(&snapshots)),
            [vec![line("own-parent", 0), line("loop-a", 0), line("loop-b", 1)]]
        );
    }
}
