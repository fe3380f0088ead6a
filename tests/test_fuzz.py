"""Fuzzing: the shipped scenarios, specs and targets, mutated into bad inputs, are each refused cleanly.

Each test draws inputs with hypothesis (derandomized: the same inputs on every run) and checks, per
input, what tests/fuzzing.py:refused states: exit 2, one paragraph naming the file, no traceback,
nothing written, no command run. The budget is small in ``make test`` and large in ``make fuzz``
(``ALLIANCESIM_FUZZ_EXAMPLES``), which prints how many inputs were made and how they ended.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import analysis.validate
import experiments.runner
import sim.run
from analysis.__main__ import main as analysis_main
from analysis.expressions import FUNCTIONS
from analysis.targets import NUMBERS, SETS, STATISTICS, Target
from experiments.cli import main as experiments_main
from experiments.spec import LIMITS, METHODS, OPTIONS, OUTPUTS
from sim.cli import main as sim_main
from sim.parameters import GROUPS, REGISTRY
from sim.scenario import RUN_LIMITS, TEXT_KEYS
from tests.fuzzing import (
    BAD_NAMES,
    NAMES,
    NON_FINITE,
    SCENARIOS,
    SHORT_TEXT,
    SPECS,
    TALLY,
    TARGETS,
    WRONG_TYPES,
    Accepted,
    bad_count,
    bad_parameter_value,
    broken_bytes,
    dumps,
    load,
    refused,
)

EXAMPLES = int(os.environ.get("ALLIANCESIM_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows the input as drawn
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
PARAMETERS = sorted(REGISTRY)
CLIENT_COLUMNS = [
    "client_id", "therapist_id", "attachment_style", "end_type", "finished_course", "ruptures", "repairs",
    "intake_phq9", "final_phq9", "sessions_attended", "cultural_match", "therapist_uses_feedback",
]  # fmt: skip


def _unknown(allowed) -> st.SearchStrategy:
    long_keys = st.text("abcdefghij", min_size=201, max_size=400)
    return st.one_of(NAMES, SHORT_TEXT.filter(bool), long_keys).filter(lambda k: k not in allowed)


def _not_a_table() -> st.SearchStrategy:
    return st.one_of(st.integers(), SHORT_TEXT, st.lists(st.integers(), max_size=2))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(autouse=True)
def no_long_runs(monkeypatch):
    """A bad input that got through would start a run: stop it at once, as a failure."""

    def accepted(*args, **kwargs):
        raise Accepted

    monkeypatch.setattr(sim.run, "simulate", _probe_only(sim.run.simulate, accepted))
    monkeypatch.setattr(experiments.runner, "run_experiment", accepted)
    monkeypatch.setattr(analysis.validate, "run", accepted)


def _probe_only(simulate, accepted):
    """``simulate`` for the validate command's small probe cohort (cached), ``accepted`` for anything else."""

    @functools.cache
    def probe(scenario, clients, therapists, seed):
        return simulate(scenario, clients=clients, therapists=therapists, seed=seed)

    def call(scenario=None, *, clients=None, therapists=None, seed=None, overrides=None):
        if clients == 200 and therapists == 10 and seed == 0 and isinstance(scenario, str) and not overrides:
            return probe(scenario, clients, therapists, seed)
        return accepted()

    return call


# ── scenarios ────────────────────────────────────────────────────────────────────────────────


@st.composite
def bad_scenario(draw) -> bytes:
    data = load(draw(st.sampled_from(SCENARIOS)))
    kind = draw(st.sampled_from(["parameter", "unknown key", "wrong group", "run", "text", "not a table", "bytes"]))
    if kind == "parameter":
        name = draw(st.sampled_from(PARAMETERS))
        data.setdefault(REGISTRY[name].group, {})[name] = draw(bad_parameter_value(name))
    elif kind == "unknown key":
        where = draw(st.sampled_from(["", "run", *GROUPS]))
        allowed = {*REGISTRY, *TEXT_KEYS, *GROUPS, "run", *RUN_LIMITS}
        table = data if not where else data.setdefault(where, {})
        table[draw(_unknown(allowed))] = draw(st.one_of(st.integers(), SHORT_TEXT))
    elif kind == "wrong group":
        name = draw(st.sampled_from(PARAMETERS))
        group = draw(st.sampled_from([g for g in GROUPS if g != REGISTRY[name].group]))
        data.setdefault(group, {})[name] = REGISTRY[name].default
    elif kind == "run":
        key = draw(st.sampled_from(sorted(RUN_LIMITS)))
        data.setdefault("run", {})[key] = draw(bad_count(*RUN_LIMITS[key]))
    elif kind == "text":
        key = draw(st.sampled_from(TEXT_KEYS))
        data[key] = draw(BAD_NAMES if key == "name" else st.one_of(st.integers(), WRONG_TYPES))
    elif kind == "not a table":
        data[draw(st.sampled_from(["run", *GROUPS]))] = draw(_not_a_table())
    text = dumps(data)
    return draw(broken_bytes(text)) if kind == "bytes" else text.encode()


@FUZZ
@given(content=bad_scenario())
def test_bad_scenarios_are_refused(content, work):
    path, out = work / "scenario.toml", work / "scenario_out"
    path.write_bytes(content)
    refused("scenarios", lambda: sim_main(["run", str(path), "--clients", "10", "--out", str(out)]), path, [out])


# ── experiment specs ─────────────────────────────────────────────────────────────────────────


def _bad_option(key: str) -> st.SearchStrategy:
    if key == "conf_level":
        return st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), NON_FINITE, SHORT_TEXT, st.booleans())
    if key == "calc_second_order":
        return st.one_of(st.integers(), SHORT_TEXT, st.floats())
    return st.one_of(st.integers(max_value=0), SHORT_TEXT, st.booleans(), st.floats(allow_nan=True))


def _bad_factor_setting(name: str, key: str) -> st.SearchStrategy:
    p = REGISTRY[name]
    if key in ("low", "high"):
        low, high = (p.low, p.high) if p.kind != "choice" else (0.0, 1.0)
        outside = st.one_of(st.floats(max_value=low, exclude_max=True), st.floats(min_value=high, exclude_min=True))
        return st.one_of(outside, NON_FINITE, SHORT_TEXT, WRONG_TYPES)
    if key in ("mean", "sd", "peak"):
        return st.one_of(NON_FINITE, SHORT_TEXT, WRONG_TYPES)
    if key == "steps":
        return st.one_of(st.integers(max_value=1), st.integers(min_value=10_001), SHORT_TEXT, st.floats())
    # levels: empty, bad values, or a good value twice
    level = bad_parameter_value(name)
    good = st.sampled_from(p.choices) if p.kind == "choice" else st.just(p.default)
    twice = st.tuples(good, st.lists(good, max_size=2)).map(lambda t: [t[0], t[0], *t[1]])
    return st.one_of(st.just([]), st.lists(level, min_size=1, max_size=3), twice, SHORT_TEXT, st.integers())


@st.composite
def bad_spec(draw) -> bytes:
    data = load(draw(st.sampled_from(SPECS)))
    method, factors = data["method"], data["parameters"]
    kinds = ["count", "method", "outputs", "scenario", "run", "name", "unknown key", "option", "factor setting"]
    kind = draw(st.sampled_from([*kinds, "factor key", "factor name", "both", "fixed", "not a table", "bytes"]))
    name = draw(st.sampled_from(sorted(factors)))
    if kind == "count":
        key = draw(st.sampled_from(sorted(LIMITS)))
        data[key] = draw(bad_count(*LIMITS[key]))
    elif kind == "method":
        data["method"] = draw(st.one_of(SHORT_TEXT.filter(lambda m: m not in METHODS), st.integers(), WRONG_TYPES))
    elif kind == "outputs":
        unknown = SHORT_TEXT.filter(lambda o: o not in OUTPUTS)
        data["outputs"] = draw(st.one_of(st.just([]), st.lists(unknown, min_size=1, max_size=3), unknown, WRONG_TYPES))
    elif kind == "scenario":
        data["scenario"] = draw(st.one_of(NAMES.map(lambda n: f"no_such_{n}"), st.integers(), WRONG_TYPES))
    elif kind == "run":
        key = draw(st.sampled_from(sorted(RUN_LIMITS)))
        data[key] = draw(bad_count(*RUN_LIMITS[key]))
    elif kind == "name":
        data["name"] = draw(BAD_NAMES)
    elif kind == "unknown key":
        where = draw(st.sampled_from(["top", "options", "factor"]))
        table = {"top": data, "options": data.setdefault("options", {}), "factor": factors[name]}[where]
        allowed = {"top": data, "options": OPTIONS[method], "factor": ("low", "high", "distribution", "levels")}[where]
        table[draw(_unknown({*allowed, "peak", "mean", "sd", "steps", "N", "fixed", "parameters"}))] = 1
    elif kind == "option" and OPTIONS[method]:
        key = draw(st.sampled_from(sorted(OPTIONS[method])))
        data.setdefault("options", {})[key] = draw(_bad_option(key))
    elif kind == "factor setting":
        key = draw(st.sampled_from(["low", "high", "mean", "sd", "peak", "steps", "levels"]))
        factors[name][key] = draw(_bad_factor_setting(name, key))
    elif kind == "factor key":
        factors[name][draw(_unknown({"low", "high", "distribution", "peak", "mean", "sd", "levels", "steps"}))] = 1
    elif kind == "factor name":
        new = draw(NAMES.filter(lambda n: n not in REGISTRY))
        data["parameters"] = {new if k == name else k: v for k, v in factors.items()}
    elif kind == "both":
        data.setdefault("fixed", {})[name] = REGISTRY[name].default
    elif kind == "fixed":
        param = draw(st.sampled_from([p for p in PARAMETERS if p not in factors]))
        data.setdefault("fixed", {})[param] = draw(bad_parameter_value(param))
    elif kind == "not a table":
        key = draw(st.sampled_from(["parameters", "options", "fixed", "factor"]))
        if key == "factor":
            factors[name] = draw(_not_a_table())
        else:
            data[key] = draw(_not_a_table())
    else:  # bytes (and "option" for a method without options)
        return draw(broken_bytes(dumps(data)))
    return dumps(data).encode()


@FUZZ
@given(content=bad_spec())
def test_bad_specs_are_refused(content, work):
    path, out = work / "spec.toml", work / "spec_out"
    path.write_bytes(content)
    argv = ["run", str(path), "--executor", "serial", "--out", str(out), "--no-progress"]
    refused("specs", lambda: experiments_main(argv), path, [out])


# ── targets ──────────────────────────────────────────────────────────────────────────────────

ATTACKS = [
    "@pd.io.common.os.system('touch {m}')",
    "__import__('os').system('touch {m}')",
    "open('{m}', 'w').write('x')",
    "().__class__.__bases__[0].__subclasses__()",
    "end_type.str.len() > 3",
    "(lambda: __import__('os').system('touch {m}'))()",
    "[x for x in ruptures]",
    "f'{{ruptures}}'",
    "ruptures[0]",
    "(y := 1)",
    "`end_type` == 'dropout'",
    "ruptures if finished_course else repairs",
    "ruptures is None",
    "{{'a': 1}}",
    "abs(x=ruptures)",
    "max(ruptures, repairs)",
    "getattr(ruptures, 'real')",
    "eval('1')",
    "ruptures in repairs",
    "'a' * 3 == end_type",
]


def bad_expression(marker: Path) -> st.SearchStrategy:
    attacks = st.sampled_from(ATTACKS).map(lambda a: a.format(m=marker))
    unknown = NAMES.filter(lambda n: n not in CLIENT_COLUMNS and n not in FUNCTIONS and n.isidentifier())
    broken = st.tuples(st.sampled_from(["ruptures", "end_type == 'dropout'", "finished_course and"]), SHORT_TEXT)
    return st.one_of(
        attacks,
        unknown.map(lambda n: f"{n} > 1"),
        broken.map(lambda t: f"{t[0]} {t[1]} (").filter(lambda e: e.count("(") > e.count(")")),
        st.integers(1_700, 4_000).map(lambda n: "ruptures + " * n + "1"),
        st.integers(70, 300).map(lambda n: "-" * n + "ruptures"),
        st.sampled_from(["", "   "]).map(lambda e: e + "ruptures ==="),
    )


@st.composite
def bad_targets(draw, marker: Path) -> bytes:
    data = load(TARGETS)
    facts = data["fact"]
    i = draw(st.integers(0, len(facts) - 1))
    fact = facts[i]
    required = [f.name for f in fields(Target) if f.name not in ("clients", "x", "y", "group", "k", "doi", "note")]
    kinds = ["number", "band", "set", "statistic", "expression", "expression type", "missing key", "unknown key"]
    kind = draw(st.sampled_from([*kinds, "overrides", "duplicate id", "top", "bytes"]))
    if kind == "number":
        fact[draw(st.sampled_from(NUMBERS))] = draw(st.one_of(NON_FINITE, SHORT_TEXT, WRONG_TYPES))
    elif kind == "band":
        fact["band_low"] = fact["published"] + draw(st.floats(0.001, 10))
    elif kind == "set":
        fact["set"] = draw(st.one_of(SHORT_TEXT.filter(lambda s: s not in SETS), st.integers()))
    elif kind == "statistic":
        fact["statistic"] = draw(st.one_of(SHORT_TEXT.filter(lambda s: s not in STATISTICS), st.integers()))
    elif kind == "expression":
        fact[draw(st.sampled_from(["clients", "x", "y", "group"]))] = draw(bad_expression(marker))
    elif kind == "expression type":
        fact[draw(st.sampled_from(["clients", "x", "y", "group"]))] = draw(st.one_of(st.integers(), WRONG_TYPES))
    elif kind == "missing key":
        fact.pop(draw(st.sampled_from([k for k in required if k != "overrides"])), None)
    elif kind == "unknown key":
        fact[draw(_unknown({f.name for f in fields(Target)}))] = 1
    elif kind == "overrides":
        param = draw(st.sampled_from(PARAMETERS))
        unknown = NAMES.filter(lambda n: n not in REGISTRY).map(lambda n: {n: 1})
        fact["overrides"] = draw(
            st.one_of(unknown, bad_parameter_value(param).map(lambda v: {param: v}), st.integers())
        )
    elif kind == "duplicate id":
        fact["id"] = facts[(i + 1) % len(facts)]["id"]
    elif kind == "top":
        data["fact"] = draw(st.one_of(st.just([]), st.integers(), SHORT_TEXT, st.lists(st.integers(), min_size=1)))
    else:
        return draw(broken_bytes(dumps(data)))
    return dumps(data).encode()


@pytest.fixture(scope="module")
def marker(work) -> Path:
    return work / "pwned"


@FUZZ
@given(data=st.data())
def test_bad_targets_are_refused(data, work, marker):
    path, out, docs = work / "targets.toml", work / "validate_out", work / "docs"
    path.write_bytes(data.draw(bad_targets(marker)))
    argv = ["validate", "--targets", str(path), "--out", str(out), "--docs", str(docs), "--replicates", "2"]
    refused("targets", lambda: analysis_main(argv), path, [out, docs], marker)


# ── command lines ────────────────────────────────────────────────────────────────────────────


@st.composite
def bad_command_line(draw, out: Path) -> list[str]:
    command = draw(
        st.sampled_from([["run", "baseline"], ["compare", "baseline", "low_empathy"], ["vignette", "baseline"]])
    )
    kind = draw(st.sampled_from(["count", "set", "scenario", "twice", "out", "vignette"]))
    bad_number = st.one_of(st.integers(max_value=0).map(str), SHORT_TEXT, st.floats(allow_nan=True).map(str))
    if kind == "count":
        flag = draw(st.sampled_from(["--clients", "--therapists", "--seed", "--replicates"]))
        value = draw(bad_number if flag != "--seed" else st.integers(max_value=-1).map(str))
        if flag == "--clients":
            value = draw(st.one_of(st.just(value), st.integers(10_000_001, 10**12).map(str)))
        return [*command, flag, value, "--out", str(out)]
    if kind == "set":
        name = draw(st.sampled_from(PARAMETERS))
        value = draw(bad_parameter_value(name).filter(lambda v: isinstance(v, int | float | str)))
        text = draw(st.sampled_from([f"{name}={value}", f"{name}", f"={value}", f"no_such_{name}={value}"]))
        return ["run", "baseline", "--set", text, "--out", str(out)]
    if kind == "scenario":
        return [command[0], draw(NAMES.map(lambda n: f"no_such_{n}")), *command[2:], "--out", str(out)]
    if kind == "twice":
        return ["compare", "baseline", "baseline", "--out", str(out)]
    if kind == "out":
        return [*command, "--out", draw(st.sampled_from(["", " ", "/proc/self", "/proc/self/nothing/here"]))]
    client = draw(st.one_of(st.integers(max_value=-1), st.integers(500, 10**9)))
    return ["vignette", "baseline", "--client", str(client), "--out", str(out)]


@FUZZ
@given(data=st.data())
def test_bad_command_lines_are_refused(data, work):
    out = work / "cli_out"
    argv = data.draw(bad_command_line(out))
    TALLY["inputs command lines"] += 1
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = sim_main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        status = exit_.code
    except Accepted:
        raise AssertionError(f"accepted: {argv}") from None
    message = err.getvalue()
    assert status == 2, f"{argv}: exit {status}: {message!r}"
    lines = message.rstrip("\n").splitlines()
    assert "Traceback" not in message and lines, message
    if len(lines) > 1:  # argparse: its usage block, then one error line
        assert lines[0].startswith("usage: ") and ": error: " in lines[-1], f"{argv}: {message!r}"
    else:
        assert lines[0].startswith("error: "), f"{argv}: {message!r}"
    assert not out.exists(), f"{argv}: {out} was made on refusal"
    TALLY["refused"] += 1
