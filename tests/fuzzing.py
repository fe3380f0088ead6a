"""The fuzz harness: bad inputs made by mutating the shipped scenarios, specs and targets (tests/test_fuzz.py).

Every mutation makes an input that must be refused: a parameter out of its range, NaN or of the
wrong type, an unknown key, a table where a value belongs, a broken TOML file, an expression that
reaches outside the whitelist... :func:`refused` runs the command line on it in this process and
checks what a user must see: exit status 2, one paragraph on stderr that names the file, no
traceback, nothing written, no command run. :data:`TALLY` counts the inputs; ``make fuzz`` prints it.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import string
import tomllib
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from sim.parameters import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
SPECS = sorted((ROOT / "experiments").glob("*.toml"))
TARGETS = ROOT / "analysis" / "targets.toml"
TALLY: Counter = Counter()  # inputs per kind, and the outcomes; summed up by tests/conftest.py
NAN, INF = float("nan"), float("inf")


class Accepted(Exception):
    """Raised in place of the long run when a bad input got through every check."""


# ── a TOML writer for the mutated data (NaN, inf and any key included) ─────────────────────────

BARE = re.compile(r"[A-Za-z0-9_-]+")


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    return key if BARE.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def dumps(data: dict[str, Any], prefix: str = "") -> str:
    """``data`` as TOML: values first, then ``[tables]`` and ``[[arrays of tables]]``."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            tables.append((key, value, False))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((key, value, True))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    text = "\n".join(lines) + "\n"
    for key, value, many in tables:
        name = f"{prefix}.{_key(key)}" if prefix else _key(key)
        for table in value if many else [value]:
            text += f"\n[[{name}]]\n" if many else f"\n[{name}]\n"
            text += dumps(table, name)
    return text


def load(path: Path) -> dict[str, Any]:
    """A shipped file's data."""
    with path.open("rb") as f:
        return tomllib.load(f)


# ── values that no key accepts ───────────────────────────────────────────────────────────────

WRONG_TYPES = st.one_of(
    st.booleans(), st.lists(st.integers(-3, 3), max_size=3), st.fixed_dictionaries({"x": st.integers(0, 3)})
)
NON_FINITE = st.sampled_from([NAN, INF, -INF])
SHORT_TEXT = st.text(string.ascii_letters + string.digits + " _-.$\n\x1b", max_size=24)
NAMES = st.text(string.ascii_lowercase + "_", min_size=1, max_size=30)


def bad_parameter_value(name: str) -> st.SearchStrategy:
    """A value ``name`` refuses: out of range, non-finite, non-integral, of the wrong type, or not a choice."""
    p = REGISTRY[name]
    if p.kind == "choice":
        return st.one_of(SHORT_TEXT.filter(lambda t: t not in p.choices), st.integers(), st.floats(), WRONG_TYPES)
    below = st.floats(max_value=p.low, exclude_max=True, allow_nan=False)
    above = st.floats(min_value=p.high, exclude_min=True, allow_nan=False)
    options = [below, above, NON_FINITE, SHORT_TEXT, WRONG_TYPES, st.integers(int(p.high) + 1, 2**62)]
    if p.kind == "int":
        options.append(st.floats(p.low, p.high).filter(lambda v: v != int(v)))
    return st.one_of(*options)


def bad_count(low: int, high: int) -> st.SearchStrategy:
    """A value an integer setting in [low, high] refuses."""
    options = [st.integers(-(2**63), low - 1), st.floats(allow_nan=True), SHORT_TEXT, WRONG_TYPES]
    if high < 2**63 - 1:
        options.append(st.integers(high + 1, 2**63 - 1))
    return st.one_of(*options)


BAD_NAMES = st.one_of(
    st.just(""),
    st.text(string.ascii_letters, min_size=101, max_size=300),
    st.builds(
        lambda a, c, b: a + c + b, SHORT_TEXT, st.sampled_from(["\n", "\x1b[31m", "\t", "\x00", "\r"]), SHORT_TEXT
    ),
    st.integers(),
    WRONG_TYPES,
)


@st.composite
def broken_bytes(draw, text: str) -> bytes:
    """``text`` made into a file that is not UTF-8 TOML, whatever it held."""
    data = text.encode()
    where = draw(st.integers(0, len(data)))
    how = draw(st.sampled_from(["invalid utf-8", "nul", "unclosed table", "duplicate key", "deep", "bom+dup"]))
    if how == "invalid utf-8":
        return data[:where] + b"\xff" + data[where:]
    if how == "nul":
        return data[:where] + b"\x00" + data[where:]
    if how == "unclosed table":
        return data + b"\n[unclosed\n"
    if how == "duplicate key":
        return b"twice = 1\ntwice = 2\n" + data
    if how == "deep":
        depth = draw(st.integers(2_000, 20_000))
        return b"deep = " + b"[" * depth + b"]" * depth + b"\n" + data
    return b"\xef\xbb\xbfa = 1\na = 1\n" + data


# ── running a command on one input ───────────────────────────────────────────────────────────


def refused(kind: str, call, path: Path, written: list[Path], marker: Path | None = None) -> str:
    """Run ``call()``; check the refusal a user must see; count it in :data:`TALLY`; return stderr."""
    TALLY[f"inputs {kind}"] += 1
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            status = call()
    except SystemExit as exit_:
        status = exit_.code
    except Accepted:
        TALLY["accepted"] += 1
        raise AssertionError(f"{kind}: a bad input was accepted:\n{path.read_bytes()[:2000]!r}") from None
    except BaseException:
        TALLY["tracebacks"] += 1
        raise AssertionError(f"{kind}: traceback for\n{path.read_bytes()[:2000]!r}\n{traceback.format_exc()}") from None
    message = err.getvalue()
    assert status == 2, f"{kind}: exit {status}, not 2: {message!r}\n{path.read_bytes()[:2000]!r}"
    assert message.startswith("error: ") and message.count("\n") == 1, f"{kind}: not one paragraph: {message!r}"
    assert "Traceback" not in message, message
    assert str(path) in message, f"{kind}: the message should name the file: {message!r}"
    assert len(message) < 3000, f"{kind}: {len(message)} characters: a value echoed whole?"
    for p in written:
        assert not p.exists(), f"{kind}: {p} was written on refusal"
    if marker is not None:
        assert not marker.exists(), f"{kind}: the input ran a command"
    TALLY["refused"] += 1
    return message
