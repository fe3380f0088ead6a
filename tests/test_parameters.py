"""The parameter registry: declarations, validation and messages."""

import pytest

from sim import parameters
from sim.parameters import GROUPS, REGISTRY, ParameterError, lookup, parse_assignment, resolve, validate


@pytest.mark.parametrize("p", REGISTRY.values(), ids=lambda p: p.name)
def test_every_declaration_is_complete(p):
    assert p.group in GROUPS
    assert p.meaning and p.unit and p.source, f"{p.name} needs a meaning, a unit and a source"
    assert p.kind in ("float", "int", "choice")
    if p.kind == "choice":
        assert p.default in p.choices
    else:
        assert p.low < p.high, f"{p.name}: empty range"
        assert p.low <= p.default <= p.high, f"{p.name}: default {p.default} outside [{p.low}, {p.high}]"
        assert p.validate(p.default) == p.default
    if p.kind == "int":
        assert isinstance(p.default, int) and float(p.low).is_integer() and float(p.high).is_integer()


def test_free_parameters_are_mechanisms():
    free = parameters.free_parameters()
    assert free, "calibration needs free parameters"
    assert all(p.group == "mechanisms" for p in free)


def test_registry_covers_the_traits_of_the_brief():
    for name in (
        "therapist_empathy_mean",
        "therapist_humility_mean",
        "therapist_repair_mean",
        "therapist_consistency_mean",
        "therapist_competence_mean",
        "therapist_feedback_share",
        "therapist_minority_share",
        "therapist_capacity_mean",
        "intake_phq9_mean",
        "attachment_anxiety_mean",
        "attachment_avoidance_mean",
        "cultural_salience_mean",
        "expectancy_mean",
        "readiness_mean",
        "barriers_mean",
        "support_mean",
        "planned_sessions",
        "matching_policy",
    ):
        assert name in REGISTRY


def test_defaults_and_resolve():
    d = parameters.defaults()
    assert d.keys() == REGISTRY.keys()
    r = resolve({"therapist_empathy_mean": 1})
    assert r["therapist_empathy_mean"] == 1.0 and isinstance(r["therapist_empathy_mean"], float)
    assert r["planned_sessions"] == d["planned_sessions"]
    assert resolve({"planned_sessions": 12.0})["planned_sessions"] == 12
    assert isinstance(resolve({"planned_sessions": 12.0})["planned_sessions"], int)


def test_bounds_are_inclusive():
    assert validate({"therapist_empathy_mean": 0, "therapist_feedback_share": 1}) == {
        "therapist_empathy_mean": 0.0,
        "therapist_feedback_share": 1.0,
    }


def test_out_of_range_message_names_parameter_value_and_range():
    with pytest.raises(ParameterError) as err:
        validate({"therapist_empathy_mean": 1.4}, where="scenarios/x.toml, [therapists]")
    msg = str(err.value)
    assert "therapist_empathy_mean" in msg and "1.4" in msg and "[0, 1]" in msg
    assert "scenarios/x.toml" in msg


@pytest.mark.parametrize("value", ["high", True, None, [1]])
def test_wrong_type_is_refused(value):
    with pytest.raises(ParameterError, match="therapist_empathy_mean.*wrong type"):
        validate({"therapist_empathy_mean": value})


def test_int_parameter_refuses_fractions():
    with pytest.raises(ParameterError, match="planned_sessions.*integer"):
        validate({"planned_sessions": 12.5})


def test_choice_refuses_unknown_value_and_lists_choices():
    with pytest.raises(ParameterError) as err:
        validate({"matching_policy": "alphabetical"})
    msg = str(err.value)
    for choice in parameters.MATCHING_POLICIES:
        assert choice in msg


def test_unknown_name_suggests_close_names():
    with pytest.raises(ParameterError) as err:
        lookup("therapist_empathy_man")
    assert "therapist_empathy_mean" in str(err.value)
    assert "python -m sim params" in str(err.value)


def test_parse_assignment():
    assert parse_assignment("therapist_empathy_mean=0.4") == ("therapist_empathy_mean", 0.4)
    assert parse_assignment(" planned_sessions = 12 ") == ("planned_sessions", 12)
    assert parse_assignment("matching_policy=cultural_match") == ("matching_policy", "cultural_match")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("therapist_empathy_mean", "name=value"),
        ("=0.4", "name=value"),
        ("therapist_empathy_mean=lots", "not a number"),
        ("therapist_empathy_mean=2", "outside [0, 1]"),
        ("no_such_thing=1", "unknown parameter"),
        ("matching_policy=best", "one of"),
    ],
)
def test_parse_assignment_refuses(text, needle):
    with pytest.raises(ParameterError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        parse_assignment(text)
