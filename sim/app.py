"""The interactive browser app: one therapy cohort, a Mesa model, stepped a week at a time in Solara.

Start it with ``make app`` (``make app SCENARIO=low_empathy`` for another starting scenario), or
``python -m sim app [SCENARIO] [--port 8765]``, and open http://127.0.0.1:8765. Built for a seminar
room: at a projector's 1280x720 the buttons, the week and every control with its value sit above
the charts; the scenario's teaching note is in a collapsible panel beside them. Move the sliders,
press **Reset** for a new cohort with those values, then **Step** or **Play**. Every Reset reuses
the scenario's seed, so two cohorts differ only in the slider values (common random numbers: the
same clients and therapists, the same luck), and the previous cohort, run to its end, stays on
every chart as a grey ghost: before and after, side by side.

The page is composed from Solara components around :class:`sim.model.TherapyModel` (a
``mesa.Model`` with its DataCollector) rather than Mesa's ready-made ``SolaraViz`` page: that page
puts the controls below the fold at 1280x720, shows Mesa's own "Use Threads" and "Render
Interval" controls and an empty "Page 0" tab, leaves the play button greyed out once the model
stops, and has no before/after view. The controls are generated from
:data:`sim.parameters.REGISTRY` (bounds, default, choices), never typed here; :data:`SLIDER_PARAMETERS`
only says which parameters get one. The charts are in :mod:`sim.app_figures`.
"""

from __future__ import annotations

import html
import math
import os
import re
import threading
import time
from typing import Any

import solara

from sim.app_figures import CHARTS, cohort_curves
from sim.cli import APP_SCENARIO_VARIABLE
from sim.display import parameter_label
from sim.model import TherapyModel
from sim.parameters import REGISTRY
from sim.scenario import Scenario, load_scenario

BASE_SCENARIO = os.environ.get(APP_SCENARIO_VARIABLE, "baseline")  # set by ``python -m sim app SCENARIO``

# Which registry parameters get a control, in order; labels come from sim.display.parameter_label.
SLIDER_PARAMETERS = (
    "therapist_empathy_mean",
    "therapist_humility_mean",
    "therapist_repair_mean",
    "therapist_consistency_mean",
    "therapist_feedback_share",
    "attachment_anxiety_mean",
    "attachment_avoidance_mean",
    "client_minority_share",
    "barriers_mean",
    "matching_policy",
)

# Run settings are not registry parameters; these ranges keep a browser session responsive, and
# 100 clients keep at least 20 attending most weeks (fewer and a weekly mean is not drawn).
RUN_SLIDERS: dict[str, dict[str, Any]] = {
    "n_clients": {"label": "Clients", "value": 200, "min": 100, "max": 1000, "step": 20},
    "n_therapists": {"label": "Therapists", "value": 10, "min": 1, "max": 50, "step": 1},
}
PLAY_INTERVAL = 0.4  # seconds between weeks while playing


def control_label(name: str) -> str:
    """A control's label: the registry parameter's readable name, capitalised."""
    label = parameter_label(name)
    return label[0].upper() + label[1:]


def slider_step(low: float, high: float) -> float:
    """A round step giving at least 50 positions between ``low`` and ``high``."""
    return 10.0 ** math.floor(math.log10((high - low) / 50))


def registry_input(name: str, label: str, value: Any = None) -> dict[str, Any]:
    """A control for a registry parameter (in Mesa's ``model_params`` form): bounds, default, choices.

    Args:
        name: registry parameter name.
        label: text shown beside the control.
        value: initial value; the registry default when None.

    Returns:
        A SliderFloat, SliderInt or Select description.
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
    """The controls (run settings, then registry parameters) and the fixed scenario and seed.

    Controls start at the scenario's values so that the first cohort is the scenario itself.
    """
    base = load_scenario(scenario)
    params: dict[str, Any] = {"scenario": scenario, "seed": base.seed}
    params |= {name: {"type": "SliderInt", **spec} for name, spec in RUN_SLIDERS.items()}
    params |= {name: registry_input(name, control_label(name), base.params[name]) for name in SLIDER_PARAMETERS}
    return params


def initial_values(model_params: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments that build the model the controls describe."""
    return {k: v["value"] if isinstance(v, dict) else v for k, v in model_params.items()}


class AppModel(TherapyModel):
    """:class:`sim.model.TherapyModel` built from the controls' values.

    A browser slider can add float noise (0.7000000000000001); values are rounded away from it
    before the registry validates them as usual.
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


class Cohorts:
    """One browser tab's cohorts: the one being stepped and the previous one (the ghost).

    Each tab has its own, so a class sharing one machine, or two tabs comparing settings, do not
    step one another's cohort. ``lock`` keeps a Play loop and a button press from stepping at once.
    """

    def __init__(self, values: dict[str, Any]):
        self.model = AppModel(**values)
        self.ghost: AppModel | None = None
        self.lock = threading.Lock()

    def step(self) -> None:
        """One week; after the last course ends, the follow-up is assessed at once and the model stops."""
        with self.lock:
            if not self.model.running:
                return
            self.model.step()
            if self.model.cohort.done and self.model.running:
                self.model.step()  # the follow-up: running turns False in the same week, not a week later

    def reset(self, values: dict[str, Any]) -> None:
        """A new cohort from ``values``; the current one, run to its end, becomes the ghost."""
        with self.lock:
            previous = self.model
            previous.run_model()
            self.ghost = previous
            self.model = AppModel(**values)


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value).replace("_", " ")


def status_text(model: TherapyModel) -> str:
    """The week and the cohort's numbers, the same week as the charts' last point."""
    week, n, last = model.cohort.week, model.scenario.clients, model.cohort.n_weeks
    curves = cohort_curves(model)
    now = curves.iloc[-1]
    alliance = "" if week == 0 or math.isnan(now["alliance"]) else f"; mean alliance {now['alliance']:.1f} (12-60)"
    if model.running:
        phase = f"{model.active_clients} of {n} clients in therapy; dropout so far {model.cumulative_dropout:.0%}"
    else:
        phase = f"every course has ended; dropout {model.cumulative_dropout:.0%}"
    return f"Week {week} of {last}: {phase}{alliance}."


def cohort_values(model: TherapyModel) -> str:
    """The values a cohort was built with, as the controls name them."""
    s = model.scenario
    values = "; ".join(f"{parameter_label(name)} {_fmt(s.params[name])}" for name in SLIDER_PARAMETERS)
    return f"{s.clients} clients, {s.therapists} therapists, seed {s.seed}; {values}"


def ghost_text(model: TherapyModel, ghost: TherapyModel | None) -> str:
    """What the grey ghost is: the previous cohort, and how its values differ from this one's."""
    if ghost is None:
        return "Press Reset after moving a slider: this cohort then stays on every chart in grey."
    a, b = ghost.scenario, model.scenario
    changed = [f"{parameter_label(n)} {_fmt(a.params[n])}" for n in SLIDER_PARAMETERS if a.params[n] != b.params[n]]
    changed += [f"{k} {getattr(a, k)}" for k in ("clients", "therapists") if getattr(a, k) != getattr(b, k)]
    what = "; ".join(changed) if changed else "the same values"
    return f"Grey dashed: the previous cohort, run to its end (dropout {ghost.cumulative_dropout:.0%}): {what}."


def scenario_markdown(scenario: Scenario) -> str:
    """The starting scenario's description and teaching note, its "Look for" and "Literature" set apart."""
    note = scenario.teaching_note.strip()
    for heading in ("Look for:", "Literature:"):
        note = note.replace(f"\n{heading}", f"\n\n**{heading}**")
    return f"*{scenario.description}*\n\n{note}" if scenario.description else note


def markdown_html(text: str) -> str:
    """The little Markdown the notes use (paragraphs, **bold**, *italic*, `code`) as HTML.

    Written here rather than with ``solara.Markdown``, whose front end loads KaTeX from a CDN path
    that is not shipped offline: the page would ask for it (a 404) and the server try the internet.
    """
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out, flags=re.S)
    out = re.sub(r"\*(.+?)\*", r"<i>\1</i>", out, flags=re.S)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return "".join(f"<p>{p.strip()}</p>" for p in re.split(r"\n\s*\n", out) if p.strip())


def Note(text: str, size: str = "0.9em"):
    """A paragraph or two of Markdown, rendered without solara.Markdown (see :func:`markdown_html`)."""
    return solara.HTML(tag="div", unsafe_innerHTML=markdown_html(text), style=f"font-size: {size}")


HOW_TO = (
    "Move the sliders (each shows its value), then press **Reset** to start a new cohort with those values. "
    "Every cohort uses the same seed, so it has the same clients and the same luck: differences come from the "
    "sliders. The cohort you had stays on every chart as a grey ghost (run to its end), so you see before and "
    "after. **Step** advances one week; **Play** runs to the end. Means are over the clients attending that "
    "week and are left out when fewer than 20 came; shaded weeks are a therapist holiday. The slider ranges "
    "come from the parameter registry (`python -m sim params`)."
)

# Each control's label on its own line above the slider, so the slider keeps the column's width.
CONTROLS_CSS = """
.alliancesim-controls .v-input__slot { flex-wrap: wrap; }
.alliancesim-controls .v-input__slot > .v-label { flex: 0 0 100%; max-width: 100%; white-space: normal;
    height: auto; line-height: 1.25; margin: 0; font-size: 0.9em; }
.alliancesim-controls .v-input { margin-top: 2px; padding-top: 0; }
"""

STARTING_SCENARIO = load_scenario(BASE_SCENARIO)
model_params = make_model_params()


@solara.component
def Control(name: str, spec: dict[str, Any], value: Any, on_value):
    """One control, its current value always in its label (and on its thumb while it moves)."""
    label = f"{spec['label']}: {_fmt(value)}"
    if spec["type"] == "Select":
        solara.Select(label=spec["label"], value=value, values=spec["values"], on_value=on_value, dense=True)
    else:
        slider = solara.SliderInt if spec["type"] == "SliderInt" else solara.SliderFloat
        slider(label, value=value, min=spec["min"], max=spec["max"], step=spec["step"], on_value=on_value)


@solara.component
def Page():
    """Controls and status at the top, the six charts below, the teaching note in the sidebar."""
    values = solara.use_reactive(initial_values(model_params))
    cohorts = solara.use_memo(lambda: Cohorts(values.value), dependencies=[])
    tick = solara.use_reactive(0)  # redraws after each step or reset
    playing = solara.use_reactive(False)

    def refresh():
        tick.set(tick.value + 1)

    def play_loop():
        while playing.value and cohorts.model.running:
            time.sleep(PLAY_INTERVAL)
            cohorts.step()
            refresh()
        playing.set(False)  # a finished cohort leaves the button at Play, not at a greyed-out Pause

    solara.use_thread(play_loop, dependencies=[playing.value])

    def step():
        cohorts.step()
        refresh()

    def reset():
        playing.set(False)
        cohorts.reset(values.value)
        refresh()

    model, ghost = cohorts.model, cohorts.ghost
    _ = tick.value  # the charts below depend on it
    running = model.running
    solara.Title("alliancesim")
    with solara.AppBar():
        solara.AppBarTitle("alliancesim: one therapy cohort, week by week")
    with solara.Sidebar():
        with solara.Details(f"Scenario: {STARTING_SCENARIO.name}", expand=True):
            Note(scenario_markdown(STARTING_SCENARIO), "0.85em")
        with solara.Details("How to use", expand=False):
            Note(HOW_TO, "0.85em")
        with solara.Details("This cohort's values", expand=False):
            Note(cohort_values(model), "0.85em")
    with solara.Card(style={"padding": "6px 12px", "margin-bottom": "6px"}):
        with solara.Row(style={"align-items": "center", "flex-wrap": "wrap"}):
            solara.Button("Reset", color="primary", on_click=reset)
            solara.Button("❚❚ Pause" if playing.value else "▶ Play", color="primary", disabled=not running,
                          on_click=lambda: playing.set(not playing.value))  # fmt: skip
            solara.Button("Step", color="primary", on_click=step, disabled=playing.value or not running)
            solara.Text(status_text(model), style={"font-weight": "bold", "margin-left": "12px"})
        solara.Style(CONTROLS_CSS)
        with solara.Column(classes=["alliancesim-controls"]):
            with solara.GridFixed(columns=4, column_gap="28px", row_gap="0px"):
                for name, spec in model_params.items():
                    if isinstance(spec, dict):
                        Control(name, spec, values.value[name], lambda v, n=name: values.set({**values.value, n: v}))
        solara.Text(ghost_text(model, ghost), style={"font-size": "0.9em", "color": "#444"})
    with solara.Column(classes=["alliancesim-charts"]):
        with solara.GridFixed(columns=2, column_gap="8px", row_gap="8px"):
            for chart in CHARTS:
                solara.FigureMatplotlib(chart(model, ghost), format="png")
