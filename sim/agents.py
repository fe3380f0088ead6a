"""Therapist and client agents: thin Mesa views onto the engine's arrays.

An agent holds no state of its own. Its attributes read (and, for the dyad state, write) its slot
of the cohort's arrays, so the Mesa model and the batch engine share one copy of the rules. For the
same reason an agent cannot be removed: the engine steps every dyad of the cohort together, and a
removed agent's client would go on being simulated, so :meth:`Client.remove` refuses clearly.
"""

from __future__ import annotations

import mesa
import numpy as np

from sim import dynamics
from sim.population import ATTACHMENT_STYLES


class AgentRemovalError(RuntimeError):
    """An agent cannot leave the cohort: the engine keeps simulating its slot of the arrays."""


def _refuse_removal(agent, kind: str, agent_id: int) -> None:
    raise AgentRemovalError(
        f"{kind} {agent_id} cannot be removed: agents are views onto the engine's arrays, which step every dyad "
        "of the cohort together, so the course would go on being simulated. To leave it out of an analysis, "
        "filter the agents or the clients table; to end courses early, change the parameters (e.g. dropout_base)."
    )


class _StateSlot:
    """A client attribute backed by ``cohort.state.<name>[0, client_id]``, readable and writable."""

    def __init__(self, doc: str):
        self.__doc__ = doc

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, agent, owner=None):
        if agent is None:
            return self
        return float(getattr(agent.model.cohort.state, self.name)[0, agent.client_id])

    def __set__(self, agent, value):
        if not 0.0 <= value <= (27.0 if self.name == "severity" else 1.0):
            raise ValueError(f"{self.name} = {value} is out of range")
        getattr(agent.model.cohort.state, self.name)[0, agent.client_id] = value


class Client(mesa.Agent):
    """A client; attributes are views onto the engine's arrays (parameter set 0).

    Args:
        model: the :class:`sim.model.TherapyModel`.
        client_id: the client's index in the cohort.
    """

    bond = _StateSlot("bond, 0-1")
    goal = _StateSlot("goal agreement, 0-1")
    task = _StateSlot("task agreement, 0-1")
    disclosure = _StateSlot("disclosure, 0-1")
    hope = _StateSlot("hope, 0-1")
    engagement = _StateSlot("engagement, 0-1")
    severity = _StateSlot("true severity, PHQ-9 scale 0-27")

    def __init__(self, model, client_id: int):
        super().__init__(model)
        self.client_id = client_id

    def remove(self) -> None:
        """Refused: see :class:`AgentRemovalError`."""
        _refuse_removal(self, "client", self.client_id)

    @property
    def therapist_id(self) -> int:
        """The assigned therapist's id."""
        return int(self.model.cohort.assignment[0, self.client_id])

    @property
    def therapist(self) -> Therapist:
        """The assigned therapist agent."""
        return self.model.therapist_agents[self.therapist_id]

    @property
    def alliance(self) -> float:
        """Working alliance on the WAI-SR (12-60)."""
        return float(dynamics.wai_sr(self.bond, self.goal, self.task))

    @property
    def phq9(self) -> float:
        """The last administered PHQ-9 (the intake score before the first session)."""
        return float(self.model.cohort.state.phq9[0, self.client_id])

    @property
    def status(self) -> str:
        """'active', 'completed', 'good_enough' or 'dropout'."""
        return dynamics.END_TYPES[self.model.cohort.state.end_type[0, self.client_id]]

    @property
    def dropout_cause(self) -> str:
        """The dominant cause of a dropout, '' otherwise."""
        return dynamics.DROPOUT_CAUSES[self.model.cohort.state.dropout_cause[0, self.client_id]]

    @property
    def attachment_style(self) -> str:
        """Secure, anxious, avoidant or fearful."""
        return ATTACHMENT_STYLES[self.model.cohort.clients.attachment_style[0, self.client_id]]

    @property
    def sessions_attended(self) -> int:
        """Sessions attended so far."""
        return int(self.model.cohort.state.attended[0, self.client_id])

    @property
    def ruptures(self) -> int:
        """Ruptures so far."""
        return int(self.model.cohort.state.ruptures[0, self.client_id])


class Therapist(mesa.Agent):
    """A therapist; traits are views onto the engine's arrays (parameter set 0).

    ``alliance`` and ``phq9`` summarise the therapist's active caseload.
    """

    def __init__(self, model, therapist_id: int):
        super().__init__(model)
        self.therapist_id = therapist_id

    def remove(self) -> None:
        """Refused: see :class:`AgentRemovalError`."""
        _refuse_removal(self, "therapist", self.therapist_id)

    def _trait(self, name: str):
        return getattr(self.model.cohort.therapists, name)[0, self.therapist_id]

    empathy = property(lambda self: float(self._trait("empathy")), doc="empathy, 0-1")
    humility = property(lambda self: float(self._trait("humility")), doc="cultural humility, 0-1")
    repair_skill = property(lambda self: float(self._trait("repair_skill")), doc="repair skill, 0-1")
    consistency = property(lambda self: float(self._trait("consistency")), doc="consistency, 0-1")
    competence = property(lambda self: float(self._trait("competence")), doc="technical competence, 0-1")
    uses_feedback = property(lambda self: bool(self._trait("uses_feedback")), doc="uses outcome feedback")
    culture = property(lambda self: int(self._trait("culture")), doc="culture group (0 = majority)")
    capacity = property(lambda self: int(self._trait("capacity")), doc="caseload capacity, clients")

    @property
    def _active(self) -> np.ndarray:
        c = self.model.cohort
        return (c.assignment[0] == self.therapist_id) & c.state.active[0]

    @property
    def caseload(self) -> int:
        """Clients still in therapy with this therapist."""
        return int(self._active.sum())

    @property
    def alliance(self) -> float:
        """Mean WAI-SR of active clients (NaN when none are left)."""
        s, a = self.model.cohort.state, self._active
        return float(dynamics.wai_sr(s.bond[0, a], s.goal[0, a], s.task[0, a]).mean()) if a.any() else float("nan")

    @property
    def phq9(self) -> float:
        """Mean last PHQ-9 of active clients (NaN when none are left)."""
        a = self._active
        return float(self.model.cohort.state.phq9[0, a].mean()) if a.any() else float("nan")
