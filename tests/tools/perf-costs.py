#!/usr/bin/env python3
"""CPU time per request, function by function, out of the samples `overhead --perf DIR` keeps.

  perf-costs.py top 'GLOB' [N]                the N functions (default 30) the runs matching GLOB
                                              spend most CPU time in, in microseconds per request
  perf-costs.py diff 'GLOB_A' 'GLOB_B' [N]    per function, runs B minus runs A, in microseconds per
                                              request: the N largest differences either way
  perf-costs.py only 'GLOB_A' 'GLOB_B' [N]    the functions runs B spend time in and runs A never
                                              do, and their sum: the path only B takes, in time
  perf-costs.py groups 'GLOB' ...             CPU time per request of each GLOB's runs by where it
                                              goes (the kernel, the allocator, Keyhole and the
                                              crates it brings, hyper, tokio, the rest), a column each

GLOB names `.perf.data` files (`/tmp/perf/d-*.perf.data`); the runs it matches are added up, and
divided by the requests their `.requests` files say were answered meanwhile. A sample of the CPU
clock is the time since the last one (its period, in nanoseconds) spent where it landed, stalls
included, which is what instruction counts cannot show. Threads are told apart by kind: the agent's
own (`keyhole-agent`) and the rest, which serve requests. Functions are named as perf resolves
them, with their binary or library; two builds inline differently, so compare runs of one build
(such as c and d) function by function, and runs of two builds (a and d) by their totals.

Example: python3 tests/tools/perf-costs.py diff '/tmp/perf/c-*.perf.data' '/tmp/perf/d-*.perf.data'
"""
import glob
import re
import subprocess
import sys
from collections import defaultdict

AGENT_THREAD = "keyhole-agent"

# Where time goes, first match wins: (group, which binary, which function).
GROUPS = [
    ("the agent's thread", None, None),
    ("kernel", re.compile(r"kernel"), None),
    ("allocator (libc)", re.compile(r"libc"), re.compile(r"malloc|free|_int_|unlink_chunk|consolidate|tcache")),
    ("memcpy and kin (libc)", re.compile(r"libc"), re.compile(r"mem(move|cpy|set|cmp|chr)")),
    ("rest of libc and vdso", re.compile(r"libc|vdso|ld-linux|libgcc"), None),
    ("Keyhole, OpenTelemetry and their crates", None,
     re.compile(r"keyhole|opentelemetry|arc_swap|dashmap|foldhash|memchr|backtrace")),
    ("hyper, http", None, re.compile(r"hyper|h2::|http::|httparse|http_body")),
    ("tokio", None, re.compile(r"tokio")),
    ("the rest of the services", None, None),
]


def thread_kind(comm):
    return "agent" if comm.startswith(AGENT_THREAD) else "serving"


def costs(pattern):
    """(nanoseconds by (thread kind, binary, function), requests answered) of the runs matching pattern."""
    files = sorted(glob.glob(pattern))
    if not files:
        sys.exit(f"no perf data matches {pattern}")
    spent = defaultdict(int)
    requests = 0
    for path in files:
        counted = path[: -len(".perf.data")] + ".requests"
        try:
            with open(counted) as f:
                requests += int(f.read().strip())
        except (OSError, ValueError) as error:
            sys.exit(f"{path}: no request count beside it ({error})")
        report = subprocess.run(
            ["perf", "report", "-i", path, "--stdio", "--no-children", "--sort", "comm,dso,sym",
             "-F", "period,comm,dso,sym", "--field-separator", "\t", "--percent-limit", "0"],
            capture_output=True, text=True, check=False)
        if report.returncode != 0:
            sys.exit(f"perf report -i {path} failed: {report.stderr.strip()}")
        for line in report.stdout.splitlines():
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) < 4 or not fields[0].strip().isdigit():
                continue
            period, comm, dso, sym = fields[0], fields[1], fields[2], "\t".join(fields[3:])
            sym = re.sub(r"^\[[.k]\]\s+", "", sym.strip())
            spent[(thread_kind(comm.strip()), dso.strip(), sym)] += int(period)
    if requests == 0:
        sys.exit(f"the runs matching {pattern} answered no requests")
    return spent, requests


def per_request(spent, requests):
    return {key: ns / 1000.0 / requests for key, ns in spent.items()}


def totals(costs_us):
    by_kind = defaultdict(float)
    for (kind, _, _), us in costs_us.items():
        by_kind[kind] += us
    return by_kind


def name(key):
    kind, dso, sym = key
    return f"{kind:7}  {sym}  [{dso}]"


def top(pattern, count):
    spent, requests = costs(pattern)
    us = per_request(spent, requests)
    by_kind = totals(us)
    print(f"{requests} requests; CPU us per request: " +
          ", ".join(f"{kind} {value:.2f}" for kind, value in sorted(by_kind.items())))
    for key, value in sorted(us.items(), key=lambda item: -item[1])[:count]:
        print(f"{value:9.3f}  {name(key)}")


def diff(pattern_a, pattern_b, count):
    spent_a, requests_a = costs(pattern_a)
    spent_b, requests_b = costs(pattern_b)
    a, b = per_request(spent_a, requests_a), per_request(spent_b, requests_b)
    totals_a, totals_b = totals(a), totals(b)
    print(f"A: {requests_a} requests, B: {requests_b}; CPU us per request, B - A:")
    for kind in sorted(set(totals_a) | set(totals_b)):
        ta, tb = totals_a.get(kind, 0.0), totals_b.get(kind, 0.0)
        print(f"  {kind}: {ta:.2f} -> {tb:.2f} ({tb - ta:+.2f}, x{tb / ta if ta else float('inf'):.4f})")
    keys = set(a) | set(b)
    changes = sorted(((b.get(k, 0.0) - a.get(k, 0.0), k) for k in keys), key=lambda c: -abs(c[0]))
    for change, key in changes[:count]:
        print(f"{change:+9.3f}  ({a.get(key, 0.0):8.3f} -> {b.get(key, 0.0):8.3f})  {name(key)}")


def only(pattern_a, pattern_b, count):
    spent_a, _ = costs(pattern_a)
    spent_b, requests_b = costs(pattern_b)
    b = per_request(spent_b, requests_b)
    # A function is A's too if A's threads of the same kind ran it in the same binary.
    theirs = {key for key in b if key in spent_a}
    mine = sorted(((us, key) for key, us in b.items() if key not in theirs), key=lambda c: -c[0])
    total = sum(us for us, _ in mine)
    by_kind = totals(b)
    print(f"{len(mine)} functions only B runs: {total:.3f} us per request of B's " +
          ", ".join(f"{kind} {value:.2f}" for kind, value in sorted(by_kind.items())))
    for us, key in mine[:count]:
        print(f"{us:9.3f}  {name(key)}")


def group_of(key):
    kind, dso, sym = key
    if kind == "agent":
        return GROUPS[0][0]
    for group, binary, function in GROUPS[1:]:
        if (binary is None or binary.search(dso)) and (function is None or function.search(sym)):
            return group
    return GROUPS[-1][0]


def groups(patterns):
    columns = []
    for pattern in patterns:
        spent, requests = costs(pattern)
        by_group = defaultdict(float)
        for key, us in per_request(spent, requests).items():
            by_group[group_of(key)] += us
        columns.append(by_group)
    print("| CPU us per request | " + " | ".join(patterns) + " |")
    print("|---|" + "---:|" * len(patterns))
    for group, _, _ in GROUPS:
        print(f"| {group} | " + " | ".join(f"{column.get(group, 0.0):.2f}" for column in columns) + " |")
    print("| all | " + " | ".join(f"{sum(column.values()):.2f}" for column in columns) + " |")


def main(args):
    if len(args) >= 2 and args[0] == "groups":
        groups(args[1:])
    elif len(args) >= 2 and args[0] == "top":
        top(args[1], int(args[2]) if len(args) > 2 else 30)
    elif len(args) >= 3 and args[0] in ("diff", "only"):
        command = diff if args[0] == "diff" else only
        command(args[1], args[2], int(args[3]) if len(args) > 3 else 30)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
