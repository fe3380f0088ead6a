"""The interactive browser app: Mesa's SolaraViz on one therapy cohort, stepped a week at a time.

Start it with ``make app`` (``make app SCENARIO=low_empathy`` for another starting scenario), or
``python -m sim app [SCENARIO] [--port 8765]``, and open http://127.0.0.1:8765. The controls start at
the scenario's values and its teaching note is in the sidebar. Move the sliders, press Reset to
build a new cohort with those values, then Step or Play. Every Reset reuses the scenario's seed,
so two cohorts differ only in the slider values (common random numbers): the same clients and
therapists, the same luck.

The sliders are generated from :data:`sim.parameters.REGISTRY` (bounds, default, choices), never typed
here; :data:`SLIDER_PARAMETERS` only says which parameters get one. The figures are plain functions
of a model that return a matplotlib Figure, so they can be used and tested without a browser.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import solara
from matplotlib.figure import Figure
from mesa.visualization import SolaraViz
from mesa.visualization.utils import update_counter

from sim import dynamics
from sim.cli import APP_SCENARIO_VARIABLE
from sim.model import TherapyModel
from sim.parameters import REGISTRY
from sim.scenario import Scenario, load_scenario

BASE_SCENARIO = os.environ.get(APP_SCENARIO_VARIABLE, "baseline")  # set by ``python -m sim app SCENARIO``

# Which registry parameters get a control, in sidebar order, with a label short enough for the
# sidebar (the cohort panel lists the values in use). Bounds, defaults and choices come from the
# registry; `python -m sim params` gives each one's meaning, unit and source.
SLIDER_PARAMETERS: dict[str, str] = {
    "matching_policy": "Matching policy",
    "therapist_empathy_mean": "Therapist empathy",
    "therapist_humility_mean": "Therapist humility",
    "therapist_repair_mean": "Repair skill",
    "therapist_consistency_mean": "Consistency",
    "therapist_feedback_share": "Feedback users",
    "attachment_anxiety_mean": "Client anxiety",
    "attachment_avoidance_mean": "Client avoidance",
    "client_minority_share": "Minority clients",
    "barriers_mean": "Client barriers",
}

# Run settings are not registry parameters; these ranges keep a browser session responsive.
RUN_SLIDERS: dict[str, dict[str, Any]] = {
    "n_clients": {"label": "Clients", "value": 200, "min": 20, "max": 1000, "step": 20},
    "n_therapists": {"label": "Therapists", "value": 10, "min": 1, "max": 50, "step": 1},
}

STATUS_COLOURS = {"active": "#4C72B0", "completed": "#55A868", "good_enough": "#8172B3", "dropout": "#C44E52"}
THERAPIST_COLOUR = "#333333"


def slider_step(low: float, high: float) -> float:
    """A round step giving at least 50 positions between ``low`` and ``high``."""
    return 10.0 ** math.floor(math.log10((high - low) / 50))


def registry_input(name: str, label: str, value: Any = None) -> dict[str, Any]:
    """A SolaraViz user input for a registry parameter: its bounds, default and choices.

    Args:
        name: registry parameter name.
        label: text shown beside the control.
        value: initial value; the registry default when None.

    Returns:
        A ``model_params`` entry: a SliderFloat, SliderInt or Select description.
    """
    p = REGISTRY[name]
    value = p.default if value is None else value
    if p.kind == "choice":
        return {"type": "Select", "label": label, "value": value, "values": list(p.choices)}
    if p.kind == "int":
        return {
            "type": "SliderInt",
            "label": label,
            "value": int(value),
            "min": int(p.low),
            "max": int(p.high),
            "step": 1,
        }
    return {
        "type": "SliderFloat",
        "label": label,
        "value": float(value),
        "min": float(p.low),
        "max": float(p.high),
        "step": slider_step(p.low, p.high),
    }


def make_model_params(scenario: str = BASE_SCENARIO) -> dict[str, Any]:
    """SolaraViz ``model_params``: run-setting sliders, registry controls, and fixed scenario and seed.

    Controls start at the scenario's values so that the first cohort is the scenario itself.
    """
    base = load_scenario(scenario)
    params: dict[str, Any] = {"scenario": scenario, "seed": base.seed}
    params |= {name: {"type": "SliderInt", **spec} for name, spec in RUN_SLIDERS.items()}
    params |= {name: registry_input(name, label, base.params[name]) for name, label in SLIDER_PARAMETERS.items()}
    return params


def initial_values(model_params: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments that build the model the controls describe."""
    return {k: v["value"] if isinstance(v, dict) else v for k, v in model_params.items()}


class AppModel(TherapyModel):
    """:class:`sim.model.TherapyModel` with the keyword signature SolaraViz checks model_params against.

    SolaraViz rebuilds the model on Reset with ``AppModel(**model_params)`` and refuses a catch-all
    argument that is not named ``kwargs``; the parameters are validated by the registry as usual,
    after rounding away the float noise a browser slider can add (0.7000000000000001).
    """

    def __init__(
        self,
        scenario: str = BASE_SCENARIO,
        n_clients: int | None = None,
        n_therapists: int | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        kwargs = {k: round(v, 9) if isinstance(v, float) else v for k, v in kwargs.items()}
        super().__init__(scenario, n_clients=n_clients, n_therapists=n_therapists, seed=seed, **kwargs)


# ── figures: plain functions of a model ──────────────────────────────────────────────────────────


def _time_axes(ax, model: TherapyModel, ylabel: str, title: str, ylim: tuple[float, float]) -> None:
    """Week axis fixed to the whole course, so curves grow into a stable frame."""
    ax.set(xlabel="week", ylabel=ylabel, title=title, xlim=(0, model.cohort.n_weeks), ylim=ylim)
    ax.xaxis.get_major_locator().set_params(integer=True)


def retention_figure(model: TherapyModel) -> Figure:
    """Share of the cohort not (yet) dropped out, and share still in therapy, by week."""
    df = model.datacollector.get_model_vars_dataframe()
    fig = Figure(figsize=(5.5, 3.3), layout="constrained")
    ax = fig.subplots()
    not_dropped = 1.0 - df["cumulative_dropout"]
    ax.plot(df.index, not_dropped, color=STATUS_COLOURS["dropout"], marker=".", label="not dropped out")
    in_therapy = df["active_clients"] / model.scenario.clients
    ax.plot(df.index, in_therapy, color=STATUS_COLOURS["active"], marker=".", label="in therapy")
    _time_axes(ax, model, "share of cohort", "Retention", (0, 1.02))
    ax.legend(loc="lower left")
    return fig


def alliance_figure(model: TherapyModel) -> Figure:
    """Mean WAI-SR of the clients seen so far, by week."""
    df = model.datacollector.get_model_vars_dataframe()
    fig = Figure(figsize=(5.5, 3.3), layout="constrained")
    ax = fig.subplots()
    ax.plot(df.index, df["mean_alliance"], color=STATUS_COLOURS["completed"], marker=".")
    ax.axhline(36, color="grey", linestyle=":", label="scale midpoint (36)")
    _time_axes(ax, model, "WAI-SR (12-60)", "Mean alliance", (12, 60))
    ax.legend(loc="lower right")
    return fig


def phq9_figure(model: TherapyModel) -> Figure:
    """Mean of each client's last administered PHQ-9, by week."""
    df = model.datacollector.get_model_vars_dataframe()
    fig = Figure(figsize=(5.5, 3.3), layout="constrained")
    ax = fig.subplots()
    ax.plot(df.index, df["mean_phq9"], color=STATUS_COLOURS["active"], marker=".")
    ax.axhline(dynamics.CASENESS, color="grey", linestyle=":", label="caseness (10)")
    _time_axes(ax, model, "PHQ-9 (0-27)", "Mean PHQ-9 (last administered)", (0, 27))
    ax.legend(loc="lower left")
    return fig


def dropout_causes_figure(model: TherapyModel) -> Figure:
    """Dropouts so far by their dominant cause (read from the cohort's state)."""
    s = model.cohort.state
    dropped = s.end_type[0] == dynamics.END_TYPES.index("dropout")
    causes = dynamics.DROPOUT_CAUSES[1:]
    counts = np.bincount(s.dropout_cause[0][dropped], minlength=len(dynamics.DROPOUT_CAUSES))[1:]
    fig = Figure(figsize=(5.5, 3.3), layout="constrained")
    ax = fig.subplots()
    ax.barh([c.replace("_", " ") for c in causes], counts, color=STATUS_COLOURS["dropout"])
    ax.invert_yaxis()
    ax.set_xlim(0, max(5, int(counts.max(initial=0)) + 1))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="clients", title=f"Dropout causes: {int(dropped.sum())} of {dropped.size} clients")
    return fig


def caseload_layout(model: TherapyModel) -> dict[str, tuple[float, float]]:
    """Node positions: therapists on a grid, each client on a ring around their therapist."""
    n_t = model.scenario.therapists
    cols = math.ceil(math.sqrt(n_t))
    pos = {f"t{j}": (float(j % cols), -float(j // cols)) for j in range(n_t)}
    assignment = model.cohort.assignment[0]
    for j in range(n_t):
        members = np.flatnonzero(assignment == j)
        cx, cy = pos[f"t{j}"]
        for k, c in enumerate(members):
            angle = 2 * math.pi * k / len(members)
            r = 0.3 + 0.08 * (k % 2)  # alternate radii so large caseloads do not overlap
            pos[f"c{c}"] = (cx + r * math.cos(angle), cy + r * math.sin(angle))
    return pos


def caseload_figure(model: TherapyModel) -> Figure:
    """The bipartite caseload graph; clients coloured by status, therapists as dark squares."""
    import networkx as nx

    g = model.caseload
    pos = caseload_layout(model)
    status = [c.status for c in model.client_agents]
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    nx.draw_networkx_edges(g, pos, ax=ax, edge_color="#cccccc", width=0.5)
    therapists = [f"t{t.therapist_id}" for t in model.therapist_agents]
    nx.draw_networkx_nodes(
        g, pos, nodelist=therapists, ax=ax, node_color=THERAPIST_COLOUR, node_shape="s", node_size=40
    )
    size = max(4.0, 40.0 - 0.04 * len(status))
    for name, colour in STATUS_COLOURS.items():
        nodes = [f"c{i}" for i, st in enumerate(status) if st == name]
        ax.scatter([], [], color=colour, label=f"{name.replace('_', ' ')} ({len(nodes)})")  # legend even when empty
        if nodes:
            nx.draw_networkx_nodes(g, pos, nodelist=nodes, ax=ax, node_color=colour, node_size=size)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize="small", frameon=False)
    ax.set_title("Caseloads (squares: therapists; clients by status)")
    ax.set_axis_off()
    return fig


def summary_markdown(model: TherapyModel) -> str:
    """The week's cohort numbers and the parameter values this cohort was built with."""
    n = model.scenario.clients
    phase = "every course has ended" if not model.running else f"{model.active_clients} of {n} clients in therapy"
    alliance = "no sessions yet" if np.isnan(model.mean_alliance) else f"{model.mean_alliance:.1f}"
    values = "; ".join(
        f"{label.lower()} {_fmt_value(model.scenario.params[name])}" for name, label in SLIDER_PARAMETERS.items()
    )
    return (
        f"**Week {model.steps}**: {phase}. Dropout so far {model.cumulative_dropout:.0%}; "
        f"mean alliance (WAI-SR 12-60) {alliance}; mean PHQ-9 {model.mean_phq9:.1f}.\n\n"
        f"This cohort: scenario *{model.scenario.name}*, {n} clients, {model.scenario.therapists} therapists, "
        f"seed {model.scenario.seed}; {values}."
    )


def _fmt_value(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


# ── Solara components ────────────────────────────────────────────────────────────────────────────

HOW_TO = (
    "Move the sliders, then press **Reset** to start a new cohort with those values. Every cohort uses "
    "the same seed, so it has the same clients and the same luck: differences come from the sliders. "
    "**Step** advances one week; **▶** plays to the end. The slider ranges come from the parameter "
    "registry (`python -m sim params`)."
)


def _figure_component(make_figure):
    @solara.component
    def FigureComponent(model):
        update_counter.get()  # re-render after every step, like Mesa's own plots
        return solara.FigureMatplotlib(make_figure(model), format="png")

    FigureComponent.__name__ = make_figure.__name__
    return FigureComponent


def scenario_markdown(scenario: Scenario) -> str:
    """The starting scenario's description and teaching note, its "Look for" and "Literature" set apart."""
    note = scenario.teaching_note.strip()
    for heading in ("Look for:", "Literature:"):
        note = note.replace(f"\n{heading}", f"\n\n**{heading}**")
    return f"*{scenario.description}*\n\n{note}" if scenario.description else note


@solara.component
def CohortSummary(model):
    """The week's cohort numbers and the values the current cohort was built with."""
    update_counter.get()
    return solara.Markdown(summary_markdown(model), style={"font-size": "0.9em"})


COMPONENTS = [
    CohortSummary,
    _figure_component(retention_figure),
    _figure_component(alliance_figure),
    _figure_component(phq9_figure),
    _figure_component(dropout_causes_figure),
    _figure_component(caseload_figure),
]

STARTING_SCENARIO = load_scenario(BASE_SCENARIO)
model_params = make_model_params()


@solara.component
def Page():
    """The app: a how-to card in the sidebar, then Mesa's SolaraViz.

    Each browser tab gets its own model (made once per page session), so a class sharing one
    machine, or two tabs comparing settings, do not step one another's cohort.
    """
    model = solara.use_memo(lambda: AppModel(**initial_values(model_params)), dependencies=[])
    with solara.Sidebar():
        with solara.Card("How to use"):
            solara.Markdown(HOW_TO, style={"font-size": "0.9em"})
        with solara.Card(f"Scenario: {STARTING_SCENARIO.name}"):
            solara.Markdown(scenario_markdown(STARTING_SCENARIO), style={"font-size": "0.85em"})
    SolaraViz(
        model,
        components=COMPONENTS,
        model_params=model_params,
        name="alliancesim: one therapy cohort, week by week",
        play_interval=300,
    )
