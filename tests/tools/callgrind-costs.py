#!/usr/bin/env python3
"""Costs out of callgrind profiles (such as `instructions --profiles DIR` keeps), per call or per request.

  callgrind-costs.py per-call REGEX FILE...            inclusive instructions per call of the functions
                                                       matching REGEX (calls from outside them)
  callgrind-costs.py callees REGEX FILE...             what the functions matching REGEX spend in each
                                                       function they call, per call of theirs
  callgrind-costs.py diff REQUESTS 'GLOB_A' 'GLOB_B'   self instructions per request by function,
                                                       profiles B minus profiles A
  callgrind-costs.py only REQUESTS 'GLOB_A' 'GLOB_B'   the functions profiles B run and profiles A
                                                       never do, by self instructions per request:
                                                       the path only B takes (compare profiles of one
                                                       binary, such as c and d: another build inlines
                                                       differently and names other functions)
  callgrind-costs.py pages 'GLOB_A' 'GLOB_B'           the 4 KiB pages of code profiles A and B execute,
                                                       by service and binary, and how many only B does:
                                                       the code B's path has to bring into the caches
                                                       and the TLB (profiles of one build, recorded
                                                       with VALGRIND_OPTS=--dump-instr=yes)
  callgrind-costs.py lines 'GLOB_A' 'GLOB_B'           the 64-byte lines of code only profiles B execute,
                                                       by the function first seen in each: what of B's
                                                       path is code the caches hold for it alone

Costs are instructions (the event Ir) unless EVENT is set in the environment to another event the
profiles count, such as DLmr for last-level data read misses of `instructions --cache-sim`, or to
several joined by `+`, counted together (ILmr+DLmr+DLmw: every last-level miss). With
THREADS=serving in the environment, diff and only leave out the agent's own thread (the profile
that names keyhole::connection::run), as `instructions` counts it apart.

Example: python3 tests/tools/callgrind-costs.py per-call 'inbound_context$' /tmp/profiles/d-shop-*.callgrind.*
"""
import glob
import os
import re
import sys

NAME = re.compile(r"\((\d+)\)(?:\s+(.*))?")
# The event (or events joined by +) the costs are counted in, and what to call them.
EVENT = os.environ.get("EVENT", "Ir")
UNIT = "instructions" if EVENT == "Ir" else f"{EVENT} events"


def expand(names, spec):
    """The name `spec` stands for: callgrind writes a name once as `(N) name` and after that as
    `(N)`; `names` (one per kind of name and profile) keeps what each number stands for."""
    match = NAME.match(spec)
    if not match:
        return spec
    if match.group(2):
        names[match.group(1)] = match.group(2)
    return names.get(match.group(1), spec)


def records(path):
    """(caller, callee or None, calls or None, cost) for every cost line of one profile."""
    names = {}

    fn = cfn = None
    calls = None
    # Which columns of a cost line hold the events counted: the first after the positions (the line,
    # and the instruction's address when the profile has them) by default.
    positions = 1
    columns = [positions]
    with open(path, errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if line.startswith("positions:"):
                positions = len(line[len("positions:"):].split())
            elif line.startswith("events:"):
                events = line[len("events:"):].split()
                wanted = EVENT.split("+")
                missing = [event for event in wanted if event not in events]
                if missing:
                    sys.exit(f"{path} counts {' '.join(events)}, not {' '.join(missing)}")
                columns = [positions + events.index(event) for event in wanted]
            elif line.startswith("fn="):
                fn, cfn, calls = expand(names, line[3:]), None, None
            elif line.startswith("cfn="):
                cfn = expand(names, line[4:])
            elif line.startswith("calls="):
                calls = int(line[6:].split()[0])
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                # A line leaves out the zero costs at its end.
                cost = sum(int(parts[column]) for column in columns if len(parts) > column)
                if calls is not None:
                    yield fn, cfn, calls, cost
                    calls = None
                else:
                    yield fn, None, None, cost


def per_call(pattern, files):
    totals = {}
    for path in files:
        for fn, callee, calls, cost in records(path):
            if callee and callee != fn and pattern.search(callee):
                entry = totals.setdefault(callee, [0, 0])
                entry[0] += calls
                entry[1] += cost
    for callee, (calls, cost) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:20]:
        print(f"{cost / calls:10.0f}/call {calls:9d} calls  {callee[:150]}")


def callees(pattern, files):
    spent, own, calls_in = {}, 0, 0
    for path in files:
        for fn, callee, calls, cost in records(path):
            inside = fn is not None and pattern.search(fn)
            if callee is None:
                own += cost if inside else 0
            elif inside and callee != fn:
                entry = spent.setdefault(callee, [0, 0])
                entry[0] += calls
                entry[1] += cost
            elif callee and pattern.search(callee) and callee != fn:
                calls_in += calls
    per = max(calls_in, 1)
    print(f"{calls_in} calls, {own / per:.0f} {UNIT} of their own per call")
    for callee, (calls, cost) in sorted(spent.items(), key=lambda kv: -kv[1][1])[:25]:
        print(f"{cost / per:8.0f}/call {calls / per:6.2f} calls  {callee[:140]}")


def own_costs(files):
    costs = {}
    for path in files:
        for fn, callee, _, cost in records(path):
            if callee is None and fn is not None:
                costs[fn] = costs.get(fn, 0) + cost
    return costs


AGENT_THREAD_FUNCTION = "keyhole::connection::run"


def profiles(pattern):
    """The files matching pattern, without the agent's thread's when THREADS=serving."""
    files = glob.glob(pattern)
    if os.environ.get("THREADS") != "serving":
        return files
    return [path for path in files if AGENT_THREAD_FUNCTION not in open(path, errors="replace").read()]


def diff(requests, glob_a, glob_b):
    a, b = own_costs(profiles(glob_a)), own_costs(profiles(glob_b))
    rows = sorted(((b.get(k, 0) - a.get(k, 0)) / requests, k) for k in set(a) | set(b))
    print(f"{sum(r[0] for r in rows):.0f} {UNIT} per request more in B")
    for delta, fn in rows[::-1][:40]:
        print(f"{delta:8.0f}  {fn[:130]}")


def only(requests, glob_a, glob_b):
    a, b = own_costs(profiles(glob_a)), own_costs(profiles(glob_b))
    rows = sorted(((cost / requests, fn) for fn, cost in b.items() if cost > 0 and a.get(fn, 0) == 0), reverse=True)
    print(f"{len(rows)} functions only in B, {sum(r[0] for r in rows):.0f} {UNIT} per request")
    for per_request, fn in rows[:40]:
        print(f"{per_request:8.1f}  {fn[:130]}")


PAGE_SHIFT = 12
LINE_SHIFT = 6
POSITION_KEYS = ("cfn=", "cfi=", "cfl=", "calls=", "fl=", "fi=", "fe=")


def code_units(files, shift):
    """{(service, binary): {unit: the function first seen executing in it}}, where a unit is a
    block of 2**shift bytes of code (a 4 KiB page, a 64-byte cache line) that the profiles' cost
    lines execute."""
    units = {}
    for path in files:
        service = os.path.basename(path).split(".callgrind")[0].split("-", 1)[-1]
        objects, binary, address, fn = {}, None, 0, None
        names = {}
        with open(path, errors="replace") as lines:
            for line in lines:
                line = line.rstrip("\n")
                if line.startswith("positions:") and "instr" not in line:
                    sys.exit(f"{path} has no instruction addresses: record with VALGRIND_OPTS=--dump-instr=yes")
                if line.startswith(("ob=", "cob=")):
                    # Either may name an object first; only ob= says whose code the lines are.
                    binary_named = expand(objects, line.split("=", 1)[1])
                    if line.startswith("ob="):
                        binary = binary_named
                elif line.startswith(("fn=", "cfn=")):
                    # Either may name a function first; only fn= says whose code the lines are.
                    function_named = expand(names, line.split("=", 1)[1])
                    if line.startswith("fn="):
                        fn = function_named
                elif line.startswith(POSITION_KEYS) or not line or not (line[0].isdigit() or line[0] in "+-*"):
                    continue
                else:
                    # The first position is the instruction's address: absolute, relative or the same.
                    first = line.split()[0]
                    if first.startswith("+"):
                        address += int(first[1:], 0)
                    elif first.startswith("-"):
                        address -= int(first[1:], 0)
                    elif first != "*":
                        address = int(first, 0)
                    units.setdefault((service, binary), {}).setdefault(address >> shift, fn)
    return units


def pages(glob_a, glob_b):
    a, b = code_units(profiles(glob_a), PAGE_SHIFT), code_units(profiles(glob_b), PAGE_SHIFT)
    print("| service | binary | pages A executes | pages B executes | only B |")
    print("|---|---|---:|---:|---:|")
    totals = [0, 0, 0]
    for key in sorted(set(a) | set(b), key=lambda k: (k[0], str(k[1]))):
        in_a, in_b = a.get(key, {}), b.get(key, {})
        row = [len(in_a), len(in_b), len(in_b.keys() - in_a.keys())]
        totals = [t + n for t, n in zip(totals, row)]
        print(f"| {key[0]} | {os.path.basename(str(key[1]))} | {row[0]} | {row[1]} | {row[2]} |")
    print(f"| all | | {totals[0]} | {totals[1]} | {totals[2]} |")


def lines(glob_a, glob_b):
    a, b = code_units(profiles(glob_a), LINE_SHIFT), code_units(profiles(glob_b), LINE_SHIFT)
    by_fn, total = {}, 0
    for key, in_b in b.items():
        in_a = a.get(key, {})
        for line, fn in in_b.items():
            if line not in in_a:
                total += 1
                by_fn[(key[0], fn)] = by_fn.get((key[0], fn), 0) + 1
    print(f"{total} lines of code ({1 << LINE_SHIFT} bytes) only B executes, by service and the function first seen in each")
    for (service, fn), count in sorted(by_fn.items(), key=lambda kv: -kv[1])[:60]:
        print(f"{count:6d}  {service:16.16s} {str(fn)[:120]}")


def main(argv):
    if len(argv) < 3 or argv[0] not in ("per-call", "callees", "diff", "only", "pages", "lines"):
        sys.exit(__doc__)
    if argv[0] in ("pages", "lines"):
        if len(argv) != 3:
            sys.exit(__doc__)
        (pages if argv[0] == "pages" else lines)(argv[1], argv[2])
    elif argv[0] in ("diff", "only"):
        if len(argv) != 4:
            sys.exit(__doc__)
        (diff if argv[0] == "diff" else only)(int(argv[1]), argv[2], argv[3])
    elif argv[0] == "per-call":
        per_call(re.compile(argv[1]), argv[2:])
    else:
        callees(re.compile(argv[1]), argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
