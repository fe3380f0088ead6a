"""One client's course, and the same client's course under another setting: ``vignette("baseline", client=3)``.

A what-if runs the scenario as it is and as changed (``what_if={"therapist_empathy_mean": 0.8}``, or
``other_therapist=7``) as two parameter sets of one :class:`sim.engine.Cohort`. Parameter sets of a
cohort share every random draw, so the client keeps their traits and their luck (whether they
come each week, whether a rupture strikes, whether a repair takes, life events, measurement
error): any difference between the two courses is the effect of the change. For another therapist
the second set starts from the same cohort with that one client moved to the other caseload
before the first session. The narrative and the figure live in :mod:`analysis.vignette`,
:mod:`analysis.vignette_whatif` and :mod:`analysis.vignette_figure`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim import dyads, records
from sim.engine import Cohort
from sim.parameters import ParameterError, parse_assignment
from sim.run import client_outcomes
from sim.scenario import Scenario, load_scenario

THERAPIST_TRAITS = ("empathy", "humility", "repair_skill", "consistency", "competence", "uses_feedback", "culture")


class VignetteError(ValueError):
    """No such client or therapist, no client matches a pick, or a what-if that cannot be run."""


@dataclass
class Course:
    """One run of the cohort (one parameter set), seen from the client followed.

    Attributes:
        label: "as run", or what was changed ("what if: therapist empathy 0.8").
        clients, sessions, events: the cohort's tables (:mod:`sim.records`).
        params: the parameter values of this course.
        therapist: the client's therapist's id and traits (empathy, humility, repair skill, ...).
    """

    label: str
    clients: pd.DataFrame
    sessions: pd.DataFrame
    events: pd.DataFrame
    params: dict[str, Any]
    therapist: dict[str, Any] = field(default_factory=dict)


@dataclass
class Vignette:
    """A client's course, with an optional what-if course on the same random draws.

    Attributes:
        scenario: the scenario as run.
        client_id: the client followed.
        course: the course as run.
        what_if: the same client under the change, or None.
        changes: the parameter values changed for the what-if (empty for another therapist alone).
        other_therapist: the therapist the client sees in the what-if, or None.
    """

    scenario: Scenario
    client_id: int
    course: Course
    what_if: Course | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    other_therapist: int | None = None

    def text(self) -> str:
        """The vignette as Markdown (what ``python -m sim vignette`` prints and writes)."""
        if self.what_if is None:
            from analysis.vignette import narrative

            c = self.course
            return narrative(c.clients, c.sessions, c.events, self.client_id, self.scenario.name, params=c.params)
        from analysis.vignette_whatif import what_if_narrative

        return what_if_narrative(self)

    def figure(self):
        """The timeline (a matplotlib Figure); with a what-if, both courses side by side."""
        from analysis.vignette_figure import vignette_figure

        return vignette_figure(self)

    def save(self, out: str | Path) -> list[Path]:
        """Write vignette.md, vignette.png and vignette.svg into ``out``; return the paths."""
        from analysis.figures import save

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "vignette.md"
        path.write_text(self.text())
        return [path, *save(self.figure(), out, "vignette")]


def parse_what_if(texts: list[str]) -> dict[str, Any]:
    """``["therapist_empathy_mean=0.8", ...]`` as validated parameter values.

    Raises:
        VignetteError: not NAME=VALUE, an unknown parameter or a value out of range.
    """
    values = {}
    for text in texts:
        try:
            name, value = parse_assignment(text)
        except ParameterError as err:
            raise VignetteError(str(err).replace("--set", "--what-if")) from None
        values[name] = value
    return values


def reassign(cohort: Cohort, s: int, client: int, therapist: int) -> None:
    """Move one client of parameter set ``s`` to another therapist before the first session.

    The client's draws are untouched; the dyad's constants (perceived empathy, cultural match,
    rupture and repair chances, ...) and its starting state are rebuilt for the new pair, and
    both therapists' caseloads change by one.
    """
    if cohort.week:
        raise VignetteError("a client can only change therapist before the first session.")
    cohort.assignment[s, client] = therapist
    cohort.caseload[s] = np.bincount(cohort.assignment[s], minlength=cohort.n_therapists)
    cohort.dyads = dyads.intake(cohort.p, cohort.therapists, cohort.assignment, cohort.caseload, cohort.clients)
    cohort.state = dyads.initial_state(cohort.p, cohort.dyads, cohort.clients)


def _course(cohort: Cohort, outcomes: dict, s: int, label: str, client: int) -> Course:
    therapist = int(cohort.assignment[s, client])
    traits = {name: getattr(cohort.therapists, name)[s, therapist] for name in THERAPIST_TRAITS}
    traits = {k: bool(v) if k == "uses_feedback" else int(v) if k == "culture" else float(v) for k, v in traits.items()}
    return Course(
        label=label,
        clients=records.clients_table(cohort, outcomes, s),
        sessions=records.sessions_table(cohort, s),
        events=records.events_table(cohort, s),
        params=cohort.param_sets[s],
        therapist={"id": therapist, **traits},
    )


def _settings(scenario: Scenario) -> tuple:
    return scenario.params, scenario.clients, scenario.therapists, scenario.seed


def change_label(changes: dict[str, Any], other_therapist: int | None) -> str:
    """What a what-if changes, in words: "therapist empathy 0.8; therapist 7"."""
    from sim.display import parameter_label, parameter_value

    parts = [f"{parameter_label(k)} {parameter_value(k, v)}" for k, v in changes.items()]
    if other_therapist is not None:
        parts.append(f"therapist {other_therapist}")
    return "what if: " + "; ".join(parts)


def vignette(
    scenario: Scenario | str | Path = "baseline",
    client: int | None = None,
    *,
    pick: str | list[str] | None = None,
    nth: int | None = None,
    random: bool = False,
    clients: int | None = None,
    seed: int | None = None,
    what_if: dict[str, Any] | None = None,
    other_therapist: int | None = None,
) -> Vignette:
    """Follow one client through their course, and optionally through a what-if on the same luck.

    Args:
        scenario: a scenario name, path or :class:`sim.scenario.Scenario`.
        client: the client's id (default 0, unless ``pick`` or ``random`` chooses).
        pick: choose among clients whose course went this way (:data:`analysis.vignette.PICKS`);
            several picks choose among clients who match them all.
        nth: the nth match (from 1) in id order, or in a seeded random order with ``random``.
        random: choose at random among the matches (or among all clients without ``pick``),
            seeded from the run's seed: the same command gives the same client.
        clients, seed: run settings (the therapists scale with the clients).
        what_if: parameter values to change for a second course of the same client.
        other_therapist: the therapist the client sees in the second course.

    Returns:
        A :class:`Vignette` with ``.text()``, ``.figure()`` and ``.save(out)``.

    Raises:
        VignetteError: a bad client, therapist, pick or what-if; ScenarioError: a bad scenario.

    Example:
        >>> from sim.vignette import vignette
        >>> v = vignette("baseline", client=3, clients=100, what_if={"therapist_empathy_mean": 0.9})
        >>> v.what_if.therapist["empathy"] > v.course.therapist["empathy"]
        True
    """
    from analysis.vignette import pick_client

    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    scenario = scenario.with_settings(clients=clients, seed=seed)
    chosen_by_pick = bool(pick) or random
    if client is not None and (chosen_by_pick or nth is not None):
        raise VignetteError("give a client id, or choose one with a pick, --nth or --random, not both.")
    if nth is not None and not chosen_by_pick:
        raise VignetteError("--nth K chooses among the matches of --pick (or --random): give one of them too.")
    client = 0 if client is None else client
    if not chosen_by_pick and not 0 <= client < scenario.clients:
        raise VignetteError(
            f"no client {client} in this run: use an id from 0 to {scenario.clients - 1} (or --clients to grow it)."
        )
    if other_therapist is not None and not 0 <= other_therapist < scenario.therapists:
        raise VignetteError(
            f"no therapist {other_therapist} in this run: use an id from 0 to {scenario.therapists - 1} "
            "(or --clients to grow the cohort)."
        )
    changed = scenario.with_settings(overrides=what_if) if what_if else scenario
    contrast = bool(what_if) or other_therapist is not None
    param_sets = [scenario.params, changed.params] if contrast else [scenario.params]
    cohort = Cohort(param_sets, *_settings(scenario)[1:], record=True)
    if chosen_by_pick:
        # The pick is made on the course as run (set 0, the same alone or in a batch); the what-if
        # then follows that client. Moving a client to another therapist must precede the run.
        first = cohort if other_therapist is None else Cohort(*_settings(scenario), record=True)
        first.run()
        table = records.clients_table(first, client_outcomes(first))
        client = pick_client(table, pick, nth=nth or 1, seed=scenario.seed if random else None)
    if other_therapist is not None:
        if other_therapist == cohort.assignment[1, client]:
            raise VignetteError(
                f"client {client} already sees therapist {other_therapist} in the what-if: name another therapist."
            )
        reassign(cohort, 1, client, other_therapist)
    cohort.run()
    outcomes = client_outcomes(cohort)
    course = _course(cohort, outcomes, 0, "as run", client)
    second = _course(cohort, outcomes, 1, change_label(what_if or {}, other_therapist), client) if contrast else None
    return Vignette(scenario, client, course, second, dict(what_if or {}), other_therapist)
