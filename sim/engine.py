"""The engine: a cohort of dyads for a batch of parameter sets, stepped week by week.

A :class:`Cohort` is built from one or more parameter sets (dicts of registry values), draws the
population and the assignment at intake, and advances all sets at once with
:func:`sim.dynamics.week`. ``Cohort(...).run()`` is the whole course; the Mesa model calls
:meth:`Cohort.step` one week at a time. A run's result is a pure function of (parameters, cohort
size, seed, replicate): the same set alone or inside any batch gives bit-identical results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from sim import dyads, dynamics, libm, matching, parameters
from sim.dynamics import Draws, WeekParams
from sim.followup import follow_up
from sim.population import draw_clients, draw_therapists
from sim.streams import Streams

_CHOICES = {p.name: p.choices for p in parameters.REGISTRY.values() if p.kind == "choice"}


def stack(param_sets: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Numeric parameters as arrays shaped (n_sets, 1); choices stay lists of strings."""
    names = list(param_sets[0])
    numeric = [n for n in names if n not in _CHOICES]
    table = np.array([itemgetter(*numeric)(ps) for ps in param_sets], dtype=float).reshape(len(param_sets), -1)
    finite = np.isfinite(table)
    if not finite.all():  # the week kernel assumes no NaN (sim/dynamics.py): one must not get that far
        k, j = np.argwhere(~finite)[0]
        raise ValueError(
            f"parameter set {k}: {numeric[j]} = {table[k, j]}; every parameter must be finite "
            "(sim.parameters.resolve validates a set)"
        )
    out: dict[str, Any] = {}
    for name in names:
        if name in _CHOICES:
            out[name] = [ps[name] for ps in param_sets]
        else:
            out[name] = np.ascontiguousarray(table[:, [numeric.index(name)]])
    out["last_week"] = out["planned_sessions"] + out["extra_weeks"]
    return out


@dataclass
class Record:
    """Per-week trajectories of a recorded run; each array shape (n_weeks, n_sets, n_clients)."""

    bond: list = field(default_factory=list)
    goal: list = field(default_factory=list)
    task: list = field(default_factory=list)
    disclosure: list = field(default_factory=list)
    hope: list = field(default_factory=list)
    engagement: list = field(default_factory=list)
    phq9: list = field(default_factory=list)
    events: list = field(default_factory=list)
    rupture_cause: list = field(default_factory=list)
    active: list = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """The trajectories stacked over weeks."""
        return {k: np.stack(v) for k, v in self.__dict__.items()}


class Cohort:
    """A cohort of clients and therapists, for one or many parameter sets.

    Args:
        param_sets: one dict or a list of dicts of parameter values (validated, complete; see
            :func:`sim.parameters.resolve`).
        n_clients: clients per set.
        n_therapists: therapists per set.
        seed: the run's seed.
        replicate: the replicate; replicates of a seed are independent cohorts.
        record: keep per-week trajectories and events (for single runs and the Mesa model).
    """

    def __init__(
        self,
        param_sets: dict | list[dict],
        n_clients: int,
        n_therapists: int,
        seed: int,
        replicate: int = 0,
        record: bool = False,
    ):
        if isinstance(param_sets, dict):
            param_sets = [param_sets]
        if n_clients < 1 or n_therapists < 1:
            raise ValueError(f"need at least one client and one therapist, got {n_clients} and {n_therapists}")
        self.param_sets = param_sets
        self.p = stack(param_sets)
        self.n_sets, self.n_clients, self.n_therapists = len(param_sets), n_clients, n_therapists
        self.seed, self.replicate = seed, replicate
        self.streams = Streams(seed, replicate)
        self.therapists = draw_therapists(self.p, n_therapists, self.streams)
        self.clients = draw_clients(self.p, n_clients, self.streams)
        u_match = self.streams.uniform("matching", n_clients)
        self.assignment = np.stack(
            [
                matching.assign(policy, self.therapists, self.clients, u_match, s)
                for s, policy in enumerate(self.p["matching_policy"])
            ]
        )
        self.caseload = np.stack([np.bincount(a, minlength=n_therapists) for a in self.assignment])
        self.dyads = dyads.intake(self.p, self.therapists, self.assignment, self.caseload, self.clients)
        self.state = dyads.initial_state(self.p, self.dyads, self.clients)
        self.week_params = WeekParams.from_stacked(self.p)
        self.week = 0
        self.n_weeks = int(self.p["last_week"].max())
        self.draws = self._draw_weeks()
        self.record = Record() if record else None
        self._final: dict[str, np.ndarray] | None = None

    @property
    def done(self) -> bool:
        """Whether every course has ended."""
        return self.week >= self.n_weeks or not self.state.active.any()

    def _draw_weeks(self) -> Draws:
        """Every week's draws, each stream drawn as (n_weeks, n_clients) and laid out client by client."""
        shape = (self.n_weeks, self.n_clients)

        def u(name):
            return self.streams[name].random(shape)

        def z(name):
            return self.streams[name].standard_normal(shape)

        # Two draws a week from one stream, interleaved by week so that row t is the same whatever
        # the number of weeks: the chance of a gain and of an earlier gain reversing.
        gains = self.streams["sudden_gains"].random((2 * self.n_weeks, self.n_clients))
        columns = {
            "cancel": u("cancellation"),
            "attend": _logit(u("attendance")),
            "rupture": u("rupture"),
            "repair": u("repair"),
            "ending": u("ending"),
            "dropout": _logit(u("dropout")),
            "drift": z("symptoms"),
            "measurement": z("measurement"),
            "life_event": u("life_events"),
            "gain": gains[0::2],
            "gain_reversal": gains[1::2],
        }
        weekly = np.empty((self.n_clients, self.n_weeks, len(dynamics.DRAW_COLUMNS)))
        for j, name in enumerate(dynamics.DRAW_COLUMNS):
            weekly[:, :, j] = columns[name].T
        return Draws(weekly)

    def step(self) -> np.ndarray | None:
        """Advance every dyad by one weekly session slot; return the week's event flags (None when done).

        The flags (uint16 bits as :data:`sim.dynamics.ATTENDED`, ...) are shape (n_sets, n_clients).
        """
        if self.done:
            return None
        self.week += 1
        active_before = self.state.active.copy() if self.record is not None else None
        events, rupture_cause = dynamics.week(self.week, self.week_params, self.dyads, self.state, self.draws)
        if self.record is not None:
            s = self.state
            rec = self.record
            attended = (events & dynamics.ATTENDED).astype(bool)
            for name in ("bond", "goal", "task", "disclosure", "hope", "engagement"):
                getattr(rec, name).append(getattr(s, name).astype(np.float32))
            rec.phq9.append(np.where(attended, s.phq9, np.nan).astype(np.float32))
            rec.events.append(events)
            rec.rupture_cause.append(rupture_cause)
            rec.active.append(active_before)
        return events

    def run(self) -> Cohort:
        """Run every course to its end, then the follow-up."""
        if self.record is not None:
            while not self.done:
                self.step()
        elif not self.done:
            dynamics.course(self.week + 1, self.n_weeks, self.week_params, self.dyads, self.state, self.draws)
            self.week = self.n_weeks
        self.finish()
        return self

    def finish(self) -> dict[str, np.ndarray]:
        """End-of-course assessment and follow-up; returns the final scores, once computed."""
        if self._final is None:
            self._final = follow_up(self.p, self.dyads, self.state, self.clients, self.streams)
        return self._final


def _logit(u: np.ndarray) -> np.ndarray:
    """log(u / (1 - u)) of uniform draws on [0, 1) (a draw of 0 gives -inf, below every log-odds)."""
    return libm.log(u) - libm.log1p(-u)
