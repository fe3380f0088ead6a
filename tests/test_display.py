"""One vocabulary for every face: a colour per dropout reason, readable parameter labels, weekly means."""

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer

from sim.display import CATEGORY_COLOURS, CAUSE_COLOURS, parameter_label, parameter_value
from sim.dynamics import DROPOUT_CAUSES
from sim.parameters import REGISTRY
from sim.reasons import CATEGORIES, CATEGORY_OF, REASON_COLOURS
from sim.weekly import holiday_weeks, runs_of, weekly_curves
from tests.test_cli import ROOT


def test_every_dropout_reason_has_its_own_colour_read_from_the_model():
    causes = [c for c in DROPOUT_CAUSES if c]
    assert list(CAUSE_COLOURS) == causes, "one colour per reason, in the model's order"
    assert len(set(CAUSE_COLOURS.values())) == len(causes), "no two reasons share a colour"
    assert all(CAUSE_COLOURS[r] == REASON_COLOURS[r] for r in causes), "the colours are sim.reasons' own"
    assert set(CATEGORY_COLOURS) == set(CATEGORIES)
    for category, colour in CATEGORY_COLOURS.items():
        assert colour in {REASON_COLOURS[r] for r in causes if CATEGORY_OF[r] == category}, category


def test_parameter_labels_are_readable_and_tell_parameters_apart():
    labels = {name: parameter_label(name) for name in REGISTRY}
    assert len(set(labels.values())) == len(labels), "two parameters would read the same"
    assert labels["therapist_empathy_mean"] == "therapist empathy (mean)"
    assert labels["therapist_empathy_sd"] == "spread of therapist empathy"
    assert labels["intake_phq9_mean"] == "mean intake severity", "'location of X' reads 'mean X'"
    assert "(" not in labels["rupture_anxiety"], "asides in brackets are left out"
    for name, label in labels.items():
        assert label and label != name, f"{name} keeps its raw name"
    assert parameter_label("not_a_parameter") == "not a parameter"
    assert parameter_value("planned_sessions", 16) == "16 (sessions)"
    assert parameter_value("matching_policy", "cultural_match") == "cultural match"


def _sessions():
    rows = []
    for client in range(30):
        for week in (1, 2, 3, 4):
            attended = week != 3 and not (week == 4 and client >= 10)  # week 3: holiday; week 4: 10 come
            event = "holiday" if week == 3 else ("attended" if attended else "missed")
            if attended and client == 0 and week == 1:
                event += ";rupture"
            if attended and client == 0 and week == 2:
                event += ";repair"
            rows.append({"client_id": client, "session": week, "attended": attended,
                         "alliance": 30.0 + client if attended else np.nan, "phq9": 10.0 if attended else np.nan,
                         "event": event})  # fmt: skip
    return pd.DataFrame(rows)


def test_weekly_curves_mean_over_clients_attending_with_sparse_weeks_left_out():
    curves = weekly_curves(_sessions(), weeks=5)
    assert list(curves.index) == [1, 2, 3, 4, 5]
    assert list(curves["in_therapy"]) == [30, 30, 30, 30, 0]
    assert list(curves["attending"]) == [30, 30, 0, 10, 0]
    assert curves.loc[1, "alliance"] == pytest.approx(30 + 14.5), "the mean over the 30 clients attending"
    assert np.isnan(curves.loc[3, "alliance"]), "nobody seen in the holiday: no point, no line across it"
    assert np.isnan(curves.loc[4, "alliance"]), "10 clients attending: fewer than 20, left out"
    assert weekly_curves(_sessions(), weeks=5, min_clients=5).loc[4, "alliance"] == pytest.approx(34.5)
    assert list(curves["holiday"]) == [False, False, True, False, False]
    assert (curves.loc[1, "ruptures"], curves.loc[2, "repairs"], curves.loc[1, "repairs"]) == (1, 1, 0)


def test_holiday_weeks_follow_the_scenario_and_runs_of_weeks_shade_once():
    assert holiday_weeks({"planned_break_start": 6, "planned_break_weeks": 2}) == [6, 7]
    assert holiday_weeks({"planned_break_start": 0, "planned_break_weeks": 2}) == []
    assert runs_of([7, 6, 12]) == [(6, 7), (12, 12)]


def test_every_face_draws_a_reason_in_its_one_colour():
    from analysis.figures import summary_figure
    from sim import compare, simulate
    from sim.app import AppModel, initial_values, make_model_params
    from sim.app_figures import dropout_causes_figure

    run = simulate("high_barriers", clients=300, seed=3)
    fig = summary_figure(run.clients, run.sessions, "x")
    bars = [ax for ax in fig.axes if ax.get_title().startswith("Why clients left")][0]
    labels = [t.get_text() for t in bars.get_yticklabels()]
    colours = [to_hex(p.get_facecolor()) for p in bars.patches]
    assert labels and all(
        colours[i] == CAUSE_COLOURS[label.replace(" ", "_")].lower() for i, label in enumerate(labels)
    ), "the summary figure"
    result = compare("baseline", "high_barriers", clients=100, replicates=2)
    panel = [ax for ax in result.figure().axes if ax.get_title().startswith("Why clients left")][0]
    stacks = [c for c in panel.containers if isinstance(c, BarContainer)]
    assert stacks, "the compare figure stacks bars by reason"
    for stack in stacks:
        cause = stack.get_label().replace(" ", "_")
        assert to_hex(stack.patches[0].get_facecolor()) == CAUSE_COLOURS[cause].lower(), f"compare: {cause}"
    model = AppModel(**initial_values(make_model_params("high_barriers")))
    model.run_model()
    ax = dropout_causes_figure(model).axes[0]
    app_colours = [to_hex(p.get_facecolor()) for p in ax.patches]
    assert app_colours == [c.lower() for c in CAUSE_COLOURS.values()], "the app"
    notebook = json.loads((ROOT / "notebooks" / "02_dropout_mechanisms.ipynb").read_text())
    source = "".join("".join(c["source"]) for c in notebook["cells"])
    assert "color=[CAUSE_COLOURS[c] for c in causes.columns]" in source, "notebook 02"
