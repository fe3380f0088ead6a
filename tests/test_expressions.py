"""Safe fact expressions (analysis/expressions.py): pandas' numbers on allowed text, nothing else reaches Python."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main as analysis_main
from analysis.expressions import FUNCTIONS, ExpressionError, evaluate, parse
from analysis.facts import compute_batch
from analysis.targets import Target, load_targets


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    g = np.random.default_rng(3)
    n = 400
    return pd.DataFrame(
        {
            "end_type": g.choice(["completed", "good_enough", "dropout"], n),
            "finished_course": g.random(n) < 0.7,
            "ruptures": g.integers(0, 4, n).astype(np.int16),
            "repairs": g.integers(0, 3, n).astype(np.int16),
            "intake_phq9": g.integers(10, 27, n),
            "final_phq9": g.integers(0, 27, n),
            "sessions_attended": g.integers(0, 16, n).astype(np.int16),
            "early_alliance": np.where(g.random(n) < 0.1, np.nan, g.normal(45, 6, n)),
            "therapist_uses_feedback": g.random(n) < 0.5,
        }
    )


# Every form analysis/targets.toml uses, and a few more, against pandas' reading of the same text.
SAME_AS_PANDAS = [
    'end_type == "dropout"',
    "end_type != 'dropout'",
    "finished_course",
    "finished_course and ruptures >= 1",
    "finished_course and not therapist_uses_feedback",
    "repairs / ruptures",
    "intake_phq9 - final_phq9",
    "sessions_attended >= 1",
    "not therapist_uses_feedback",
    'end_type in ["completed", "good_enough"]',
    'end_type not in ["dropout"]',
    "(intake_phq9 - final_phq9) / intake_phq9 * 100",
    "early_alliance > 40 or ruptures == 0",
    "intake_phq9 % 5 + final_phq9 // 3",
    "-early_alliance + 2 ** 3",
    "1 < sessions_attended <= 8",
]


@pytest.mark.parametrize("text", SAME_AS_PANDAS)
def test_allowed_expressions_give_what_pandas_gives(table, text):
    ours = evaluate(text, table)
    with np.errstate(all="ignore"):
        theirs = np.asarray(table.eval(text))
    assert ours.shape == theirs.shape == (len(table),)
    np.testing.assert_array_equal(ours.astype(float), theirs.astype(float), err_msg=text)


def test_evaluates_arrays_of_any_shape_without_pandas():
    columns = {"a": np.arange(6.0).reshape(2, 3), "b": np.full((2, 3), 2.0)}
    np.testing.assert_array_equal(evaluate("where(a > 2, a / b, -1)", columns), [[-1, -1, -1], [1.5, 2, 2.5]])
    assert evaluate("1", columns).shape == (2, 3), "a constant is broadcast to the columns' shape"
    assert parse("maximum(a, b) + abs(a)").names == {"a", "b"}


def test_every_shipped_fact_parses_and_names_only_columns():
    for target in load_targets():
        for text in (target.clients, target.x, target.y, target.group):
            if text:
                assert parse(text).names, f"{target.id}: {text!r} should read at least one column"


ATTACKS = [
    "@pd.io.common.os.system('touch {marker}')",  # pandas resolved this one and ran the command
    "__import__('os').system('touch {marker}')",
    "end_type.__class__.__bases__[0].__subclasses__()",
    "open('{marker}', 'w').write('x')",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "(lambda: __import__('os').system('touch {marker}'))()",
    "ruptures.real",
    "eval('1')",
    "getattr(ruptures, 'sum')()",
    "abs(x=ruptures)",
    "sqrt",
    "f'{{ruptures}}'",
    "ruptures[0]",
    "ruptures is None",
    "ruptures in repairs",
    "'a' * 10000000",
    "9 ** 9 ** 9 ** 9",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_nothing_but_the_whitelist_is_evaluated(attack, table, tmp_path):
    marker = tmp_path / "pwned"
    text = attack.format(marker=marker)
    try:
        value = evaluate(text, table)
    except ExpressionError as err:
        assert "\n" not in str(err), "one line"
    else:  # only arithmetic on numbers can pass, and it cannot reach Python
        assert attack.startswith("9 **") and np.isinf(value).all(), f"{text!r} should have been refused"
    assert not marker.exists(), f"{text!r} ran a command"


def test_a_shared_targets_file_cannot_run_a_command(tmp_path, capsys):
    """The audit's attack: validate --targets ran os.system and reported the fact as pass."""
    marker = tmp_path / "pwned"
    targets = tmp_path / "targets.toml"
    targets.write_text(
        f"""
[[fact]]
id = "dropout"
set = "calibration"
fact = "f"
statistic = "share"
published = 0.2
band_low = 0.0
band_high = 1.0
published_text = "p"
source = "s"
definition = "d"
y = "end_type == 'dropout' or @pd.io.common.os.system('touch {marker}') == 0"
""",
        encoding="utf-8",
    )
    argv = ["validate", "--replicates", "2", "--clients", "40", "--out", str(tmp_path / "out")]
    status = analysis_main([*argv, "--docs", str(tmp_path / "docs"), "--targets", str(targets)])
    err = capsys.readouterr().err
    assert not marker.exists(), "a targets file ran a shell command"
    assert status == 2 and "not a valid expression" in err and str(targets) in err, err
    assert not (tmp_path / "out").exists(), "refused before anything ran"


def test_the_batch_path_refuses_a_target_built_in_python(tmp_path):
    marker = tmp_path / "pwned"
    attack = Target(
        "x", "calibration", "f", "share", 0.5, 0, 1, "p", "s", "d", y=f"__import__('os').system('touch {marker}')"
    )
    table = pd.DataFrame({"end_type": ["dropout", "completed"]})
    with pytest.raises(ExpressionError, match="calling __import__"):
        compute_batch(attack, table, 1)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty"),
        ("ruptures >", "not a valid expression"),
        ("no_such_column > 1", "'no_such_column', which is not a column"),
        ("log(ruptures, 2)", "log takes 1 argument, not 2"),
        ("end_type + 1", "cannot be evaluated"),
        ("(" * 300 + "1" + ")" * 300, "too many nested parentheses"),
        ("-" * 100 + "ruptures", "nested more than"),
        ("+".join(["ruptures"] * 200), "nested more than"),
        ("x" * 20_000, "at most 10,000"),
        ("ruptures\x00", "null bytes"),
        ("9" * 30, "too large"),
    ],
)
def test_mistakes_are_explained(table, text, expected):
    with pytest.raises(ExpressionError) as err:
        evaluate(text, table)
    assert expected in str(err.value), str(err.value)
    assert len(str(err.value)) < 1500, "a long expression is quoted cut short"


def test_the_message_lists_what_is_allowed():
    with pytest.raises(ExpressionError) as err:
        parse("a.b")
    assert "attribute access" in str(err.value)
    assert all(name in str(err.value) for name in FUNCTIONS)
