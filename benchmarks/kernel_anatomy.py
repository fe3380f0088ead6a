"""Where the week kernel's time goes: per simulated client-week, in time, in instructions and by part.

    python -m benchmarks.kernel_anatomy                      # ns and cycles per simulated client-week
    python -m benchmarks.kernel_anatomy --variant always_attend --variant hope_out_of_dose
    python -m benchmarks.kernel_anatomy --instructions       # instructions per client-week, by kind

The subject is :func:`sim.dynamics._advance` on the bench's batch (2,000 distinct sets x 200 clients x
16 weekly slots), run on fresh copies of the batch's state at intake, so every figure is per *simulated*
client-week (a week a client was still in the course: 5.35 M of the batch's 6.4 M slots).

- Time: the kernel's best of five runs; the processor's clock from a chain of dependent integer
  multiply-and-xor steps (4 cycles each), so a VM that hides its clock still gives cycles per week.
- Variants: copies of ``sim/`` with a named change to the kernel (:data:`VARIANTS`), timed the same
  way. Each changes results, so they measure, they do not optimise: what a part of the week costs.
- Instructions: the kernel run under valgrind's callgrind, which counts every instruction executed at
  every address, including the compiled code's (named by its address). The instructions of the kernel's own
  body are sorted by kind from their disassembly (``objdump``); the functions it calls are counted
  whole. Needs ``valgrind`` and ``binutils`` (Debian: ``apt-get install valgrind binutils``) and about five
  minutes: numba compiles the kernel again under valgrind, for the Haswell instruction set because
  valgrind runs no AVX-512 (on the development machine the Haswell build runs at the native
  build's speed). The counts are exact and repeat to the instruction, so they compare two versions
  of the kernel without the noise of a shared machine's timings.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
N_SETS, N_CLIENTS, N_THERAPISTS, SEED = 2_000, 200, 10, 1
# What valgrind can run: Haswell's instruction set, named in full (with the CPU's name alone, numba
# adds every feature the host has, AVX-512 included). The same build is timed natively beside the
# host's own, so how far its counts speak for the host's build is printed with them.
HASWELL = {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx2"}

# name: (what it shows, [(text of sim/dynamics.py, replacement), ...])
VARIANTS = {
    "hope_out_of_dose": (
        "the dose reads the client's expectancy, not hope: cuts the week's longest chain of dependent "
        "arithmetic (hope -> dose -> severity -> score -> hope)",
        [("+ w_h * hope) / w_sum", "+ w_h * expectancy) / w_sum")],
    ),
    "reciprocals": (
        "the dose's and the two means' divisions made multiplications by reciprocals",
        [
            ("+ w_h * hope) / w_sum", "+ w_h * hope) * (1.0 / w_sum)"),
            ("alliance = (bond + goal + task) / 3.0", "alliance = (bond + goal + task) * (1.0 / 3.0)"),
            (
                "target = (hope + alliance + readiness_i) / 3.0",
                "target = (hope + alliance + readiness_i) * (1.0 / 3.0)",
            ),
        ],
    ),
    "always_attend": (
        "no cancellations and every session attended: the attendance branch always goes the same way "
        "(and every week does an attended week's work)",
        [
            ("cancelled = holiday or rw[t, D_CANCEL] < cancel_risk", "cancelled = holiday"),
            ("attended = rw[t, D_ATTEND] < attend_base", "attended = rw[t, D_ATTEND] < np.inf + attend_base"),
        ],
    ),
    "no_dropout_attribution": (
        "a dropout's reasons not split (its Shapley shares over the hazard terms and missed sessions)",
        [
            (
                "dropout_cause = _attribute(dropout_base_k, terms, term_shares, scratch, c0, c1, c2, c3, shares)",
                "dropout_cause = 1",
            )
        ],
    ),
}


def clock_ghz(turns: int = 400_000_000) -> float:
    """The processor's clock while busy, from a chain of 4-cycle steps (imul 3, xor 1)."""
    from numba import njit

    @njit
    def chain(n):
        x = 1
        for i in range(n):
            x = (x * 2654435761) ^ i
        return x

    chain(10)
    best = min(_seconds(chain, turns) for _ in range(5))
    return 4 * turns / best / 1e9


def _seconds(f, *args) -> float:
    start = time.perf_counter()
    f(*args)
    return time.perf_counter() - start


def _batch():
    """A function running the kernel over the bench's batch: seconds taken, client-weeks simulated.

    Each call starts from a fresh copy of the batch's state at intake.
    """
    from benchmarks.bench import _batch_sets
    from sim import dynamics
    from sim.engine import Cohort

    cohort = Cohort(_batch_sets(N_SETS), N_CLIENTS, N_THERAPISTS, seed=SEED)

    def run() -> tuple[float, int]:
        s = type(cohort.state)(*(a.copy() for a in cohort.state))
        active, last = s.active.copy(), cohort.n_weeks
        events, cause = np.zeros(s.bond.shape, np.uint16), np.zeros(s.bond.shape, np.int8)
        start = time.perf_counter()
        dynamics._advance(
            1, last, cohort.week_params, cohort.dyads, s, cohort.draws, events, cause, dynamics.EXPECTED_DECAY
        )
        seconds = time.perf_counter() - start
        weeks = np.where(active, np.where(s.active, last, s.end_week), 0).sum()
        return seconds, int(weeks)

    return run


def _child_time() -> None:
    """In a tree's own process: the kernel's best of five, as JSON."""
    import sim

    if not Path(sim.__file__).is_relative_to(Path.cwd()):
        raise SystemExit(f"timing {Path.cwd()} but imported sim from {sim.__file__}")
    run = _batch()
    run()  # the first call loads (or compiles) the kernel
    seconds, weeks = min(run() for _ in range(5))
    print(json.dumps({"seconds": seconds, "weeks": weeks}))


def _child_dump(out: Path) -> None:
    """Under valgrind: run the kernel once, and save its machine code and where it was loaded."""
    import ctypes

    from sim import dynamics

    run = _batch()
    _, weeks = run()
    (signature,) = dynamics._advance.signatures  # one build, the one just run
    overload = dynamics._advance.overloads[signature]
    entry = overload.library.get_pointer_to_function(overload.fndesc.llvm_func_name)
    for line in Path("/proc/self/maps").read_text().splitlines():
        low, high = (int(x, 16) for x in line.split()[0].split("-"))
        if low <= entry < high:
            (out / "code.bin").write_bytes(ctypes.string_at(entry, high - entry))
    (out / "run.json").write_text(json.dumps({"entry": entry, "weeks": weeks}))


def _run(command: list, **kwargs) -> str:
    """Run ``command``; its output, or its error output in the message of a clean exit."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(map(str, command[:4]))} ... failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    return result.stdout


def time_tree(tree: Path, env: dict | None = None) -> dict:
    """The kernel's time and simulated client-weeks in ``tree`` (a checkout, or a copy with a variant)."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(tree)}
    out = _run([sys.executable, "-m", "benchmarks.kernel_anatomy", "--child-time"], cwd=tree, env=env)
    return json.loads(out.splitlines()[-1])


def variant_tree(name: str, into: Path) -> Path:
    """A copy of ``sim/`` and ``benchmarks/`` with variant ``name`` applied to the kernel."""
    tree = into / name
    for part in ("sim", "benchmarks"):
        shutil.copytree(ROOT / part, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
    source = tree / "sim" / "dynamics.py"
    text = source.read_text()
    for old, new in VARIANTS[name][1]:
        if text.count(old) != 1:
            raise SystemExit(f"variant {name}: {old!r} is not in sim/dynamics.py exactly once; update VARIANTS")
        text = text.replace(old, new)
    source.write_text(text)
    return tree


# ── instructions ──────────────────────────────────────────────────────────────────────────────


def callgrind_costs(lines) -> tuple[collections.Counter, dict, dict]:
    """From a callgrind profile made with ``--dump-instr=yes``: instructions at each address.

    Returns the self cost of every (function, address), the names of the functions (callgrind names
    code without symbols by its entry address) and, for each (caller, callee), the number of calls and
    their inclusive cost.
    Positions are absolute (``0x...``), relative to the last (``+n``, ``-n``) or the same (``*``); the
    line after ``calls=`` is the call's inclusive cost, not the caller's own. The profile must give
    positions as ``instr line`` and instructions (``Ir``) as its first event, as
    :func:`count_instructions` asks valgrind to.
    """
    costs, calls, names = collections.Counter(), collections.defaultdict(lambda: [0, 0]), {}
    function = callee = None
    address, after_calls = 0, False
    for line in lines:
        header, _, value = line.partition(":")
        if header in ("positions", "events"):
            if value.split()[: 2 if header == "positions" else 1] not in (["instr", "line"], ["Ir"]):
                raise ValueError(f"callgrind profile with {line!r}: expected positions 'instr line', events 'Ir'")
            continue
        if match := re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line):
            if match[3]:
                names[match[2]] = match[3]
            function, callee = (function, match[2]) if match[1] else (match[2], callee)
            continue
        if line.startswith("calls="):
            calls[function, callee][0] += int(line[6:].split()[0])
            after_calls = True
            continue
        if not line or line[0] not in "0123456789+-*":
            continue
        position, *rest = line.split()
        if position.startswith("0x"):
            address = int(position, 16)
        elif position[0] in "+-":
            address += int(position)
        elif position != "*":
            address = int(position)
        cost = int(rest[1]) if len(rest) > 1 else 0
        if after_calls:
            calls[function, callee][1] += cost
            after_calls = False
        else:
            costs[function, address] += cost
    return costs, names, dict(calls)


MOVES = ("mov", "vmov")
ARITHMETIC = ("vadd", "vsub", "vmul", "vdiv", "vmax", "vmin", "vround", "vsqrt", "vfmadd")
KINDS = (  # (kind, test on the mnemonic and operands), first match wins
    ("floating-point arithmetic", lambda op, args: op.startswith(ARITHMETIC)),
    ("select (blend, setcc, cmov)", lambda op, args: op.startswith(("vblend", "set", "cmov"))),
    ("load of an address or constant (movabs)", lambda op, args: op == "movabs"),
    ("reload from the stack (spilled value)", lambda op, args: op.startswith(MOVES) and "(%rsp" in args.split(",")[0]),
    ("spill to the stack", lambda op, args: op.startswith(MOVES) and "(%rsp" in args.split(",")[-1]),
    ("other load or store", lambda op, args: op.startswith(MOVES) and "(" in args),
    ("register move", lambda op, args: op.startswith(MOVES)),
    ("compare", lambda op, args: op.startswith(("cmp", "test", "vucomi", "vcomi", "vcmp"))),
    ("jump", lambda op, args: op.startswith("j")),
    ("call", lambda op, args: op.startswith("call")),
)


def instruction_kinds(disassembly: str, costs: dict, start: int, end: int) -> collections.Counter:
    """Instructions executed in [start, end), by kind, from ``objdump -d`` text and per-address counts."""
    kinds = collections.Counter()
    for line in disassembly.splitlines():
        match = re.match(r"\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*(\S+)\s*(.*)", line)
        if not match or not start <= (address := int(match[1], 16)) < end:
            continue
        op, args = match[2], match[3]
        kind = next((k for k, test in KINDS if test(op, args)), "other (integer arithmetic, bit logic)")
        kinds[kind] += costs.get(address, 0)
    return kinds


def count_instructions() -> None:
    """Run the kernel under callgrind and print its instructions per simulated client-week."""
    for program in ("valgrind", "objdump"):
        if shutil.which(program) is None:
            raise SystemExit(f"{program} is not installed (Debian: apt-get install valgrind binutils)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        env = {**HASWELL, "NUMBA_CACHE_DIR": str(out / "numba")}
        # Compiled and timed natively first: valgrind then loads the build from the cache.
        host, haswell = time_tree(ROOT), time_tree(ROOT, env)
        print(f"natively: the host's build {_ns(host):.1f} ns, the Haswell build {_ns(haswell):.1f} ns a client-week")
        print("counting the Haswell build's instructions under valgrind (a few minutes) ...", flush=True)
        valgrind = ["valgrind", "--tool=callgrind", "--dump-instr=yes", "--dump-line=yes", "--compress-pos=yes"]
        _run(
            [*valgrind, f"--callgrind-out-file={out / 'callgrind'}"]
            + [sys.executable, "-m", "benchmarks.kernel_anatomy", "--child-dump", str(out)],
            cwd=ROOT,
            env={**os.environ, **env},
        )
        run = json.loads((out / "run.json").read_text())
        with open(out / "callgrind") as profile:
            costs, names, calls = callgrind_costs(profile)
        entry = f"0x{run['entry']:016x}"
        kernel = next((f for f, name in names.items() if name == entry), None)
        if kernel is None:
            raise SystemExit(f"callgrind's profile has no function at the kernel's entry {entry}")
        own = {address: cost for (f, address), cost in costs.items() if f == kernel}
        objdump = ["objdump", "-D", "-b", "binary", "-m", "i386:x86-64", f"--adjust-vma={run['entry']:#x}"]
        disassembly = _run([*objdump, str(out / "code.bin")])
    weeks = run["weeks"]
    kinds = instruction_kinds(disassembly, own, run["entry"], max(own) + 1)
    if sum(kinds.values()) != sum(own.values()):
        print(f"(the disassembly misses {sum(own.values()) - sum(kinds.values()):,} of the body's instructions)")
    called = [(names.get(callee, callee), n, cost) for (f, callee), (n, cost) in calls.items() if f == kernel and cost]
    print(f"\n{weeks:,} simulated client-weeks; instructions per client-week:")
    print(f"  the kernel's own body                        {sum(own.values()) / weeks:7.1f}")
    for kind, cost in kinds.most_common():
        print(f"    {kind:42s} {cost / weeks:7.1f}")
    for name, n, cost in sorted(called, key=lambda call: -call[2]):
        print(f"  called {n / weeks:5.3f} times a week: {name:18s} {cost / weeks:7.1f}")
    total = sum(own.values()) + sum(cost for _, _, cost in called)
    print(f"  in all                                       {total / weeks:7.1f}")


def _ns(figure: dict) -> float:
    return figure["seconds"] / figure["weeks"] * 1e9


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernel_anatomy", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--variant", action="append", default=[], choices=sorted(VARIANTS), help="also time this change"
    )
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind instead")
    parser.add_argument("--child-time", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-dump", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.instructions and args.variant:
        parser.error("--instructions counts the kernel as it is; time variants without it")
    if args.child_time:
        return _child_time()
    if args.child_dump:
        return _child_dump(args.child_dump)
    if args.instructions:
        return count_instructions()
    ghz = clock_ghz()
    print(f"clock while busy: {ghz:.2f} GHz")
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"as is": ROOT} | {name: variant_tree(name, Path(tmp)) for name in args.variant}
        for name, tree in trees.items():
            if name != "as is":
                print(f"{name}: {VARIANTS[name][0]} (compiling the copy, about a minute) ...", flush=True)
            figure = time_tree(tree)
            ns = _ns(figure)
            weeks = f"{figure['weeks'] / 1e6:.2f} M weeks"
            print(f"{name:24s} {ns:5.1f} ns, {ns * ghz:4.0f} cycles per simulated client-week ({weeks})")


if __name__ == "__main__":
    main()
