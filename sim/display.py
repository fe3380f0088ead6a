"""How the model's categories are shown: one colour per dropout cause, readable parameter labels, weeks.

Every face of the package draws from here (the CLI's figures in :mod:`analysis`, the browser app in
:mod:`sim.app`, the notebooks), so a dropout reason has one colour and a parameter one name
everywhere. Nothing here repeats the model's lists: the reasons, their categories, wording and
colours come from :mod:`sim.reasons` (through :data:`sim.dynamics.DROPOUT_CAUSES`), the parameter
labels from the registry's ``meaning``; a new or renamed reason needs no edit here.
"""

from __future__ import annotations

import re

from matplotlib.ticker import MaxNLocator

from sim.dynamics import DROPOUT_CAUSES, END_TYPES
from sim.parameters import REGISTRY
from sim.reasons import CATEGORIES, CATEGORY_OF, REASON_COLOURS, REASONS
from sim.weekly import runs_of

BACKGROUND_COLOUR = "#BBBBBB"
WEEK_LABEL = "week (weekly session slot)"
GHOST_COLOUR = "#9E9E9E"  # the previous cohort in the app's before/after view
HOLIDAY_COLOUR = "#F2E6C9"  # shading of therapist-holiday weeks
RUPTURE_COLOUR, REPAIR_COLOUR = "#CC3311", "#009988"  # Tol "vibrant" red and teal
STATUS_COLOURS = dict(zip(END_TYPES, ("#4477AA", "#228833", "#AA3377", "#CC3311"), strict=True))

CAUSE_COLOURS = {cause: REASON_COLOURS.get(cause, BACKGROUND_COLOUR) for cause in DROPOUT_CAUSES if cause}
"""Colour of each dropout reason (:data:`sim.dynamics.DROPOUT_CAUSES`), as :data:`sim.reasons.REASON_COLOURS`
defines it; a reason without a colour there is drawn grey rather than failing."""

CATEGORY_COLOURS = {
    category: next(CAUSE_COLOURS[r] for r in REASONS if CATEGORY_OF[r] == category) for category in CATEGORIES
}
"""Colour of each reason category: the colour of its first reason (reds for the relationship, blues
for circumstances, green for improvement)."""


def cause_label(cause: str) -> str:
    """A dropout reason as a figure's legend shows it: ``"unrepaired_rupture"`` -> ``"unrepaired rupture"``."""
    return cause.replace("_", " ")


# Labels for the parameters figures and the app show most, where the registry's meaning is long.
SHORT_LABELS = {
    "therapist_empathy_mean": "therapist empathy (mean)",
    "therapist_humility_mean": "therapist cultural humility (mean)",
    "therapist_repair_mean": "therapist repair skill (mean)",
    "therapist_consistency_mean": "therapist consistency (mean)",
    "therapist_competence_mean": "therapist competence (mean)",
    "therapist_feedback_share": "therapists using feedback",
    "attachment_anxiety_mean": "client attachment anxiety (mean)",
    "attachment_avoidance_mean": "client attachment avoidance (mean)",
    "client_minority_share": "minority-culture clients",
    "barriers_mean": "client practical barriers (mean)",
    "cultural_salience_mean": "client cultural salience (mean)",
    "expectancy_mean": "client outcome expectancy (mean)",
    "matching_policy": "matching policy",
}


def parameter_label(name: str) -> str:
    """A short, readable name for a registry parameter, for figures, tables and the app.

    The most shown parameters have a hand-written label (:data:`SHORT_LABELS`); the others take
    the registry's ``meaning``, its first clause without asides in brackets ("location of X"
    reads "mean X"). A name that is not a parameter comes back with spaces for underscores.
    """
    if name in SHORT_LABELS:
        return SHORT_LABELS[name]
    if name not in REGISTRY:
        return name.replace("_", " ")
    meaning = re.sub(r" \([^)]*\)", "", REGISTRY[name].meaning.split(";")[0])
    if meaning.startswith("location of "):
        meaning = "mean " + meaning.removeprefix("location of ")
    return meaning


def parameter_value(name: str, value) -> str:
    """A parameter value as text, with its unit when the unit says more than the label."""
    p = REGISTRY.get(name)
    text = f"{value:g}" if isinstance(value, float) else str(value)
    if p is None or p.kind == "choice" or p.unit in ("0-1 scale", "share", "ratio", "rule", "policy"):
        return text.replace("_", " ")
    return f"{text} ({p.unit})"


def week_axis(ax, weeks: int, label: bool = True) -> None:
    """Weeks 0..``weeks`` on the x axis, with whole-number ticks only."""
    ax.set_xlim(-0.2, weeks + 0.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if label:
        ax.set_xlabel(WEEK_LABEL)


def shade_weeks(ax, weeks, label: str | None = "therapist holiday") -> None:
    """Shade each run of ``weeks`` (a week spans w - 0.5 to w + 0.5), labelled once for a legend."""
    for i, (first, last) in enumerate(runs_of(weeks)):
        ax.axvspan(first - 0.5, last + 0.5, color=HOLIDAY_COLOUR, zorder=0, lw=0, label=label if i == 0 else None)
