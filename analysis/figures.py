"""Figures of one run: retention, alliance and severity by session, and why clients left."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from sim.reasons import CATEGORIES, REASON_COLOURS, REASONS
from sim.userfiles import clean_text

# Figures under docs/ are committed: the same figure must give the same bytes, or every regeneration
# shows a diff of the whole file. SVG otherwise carries the time of saving (dc:date) and ids hashed
# with a random salt (clip paths, glyphs); PNG carries no date, only the matplotlib version.
REPRODUCIBLE_RC = {"svg.hashsalt": "alliancesim"}
METADATA = {".svg": {"Date": None}, ".png": {}}


def plain_text(text, limit: int = 60) -> str:
    """A name or title as a figure shows it: plain text, never mathtext, short, without control characters.

    ``$`` is escaped (matplotlib would read ``$...$`` as mathtext and can fail on it), control
    characters and terminal escapes are removed and the text is cut to ``limit`` characters.
    """
    return clean_text(text, limit).replace("$", r"\$")


def save(fig, out: Path, stem: str) -> list[Path]:
    """Write ``fig`` as PNG and SVG into ``out``, byte-identical for an identical figure; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    with plt.rc_context(REPRODUCIBLE_RC):  # a context, so other code's SVGs keep matplotlib's defaults
        for path in paths:
            fig.savefig(path, dpi=150, bbox_inches="tight", metadata=METADATA[path.suffix])
    plt.close(fig)
    return paths


def retention_by_session(clients: pd.DataFrame, weeks: int) -> pd.Series:
    """Share of clients still in therapy at the start of each week (1..weeks)."""
    ends = clients["end_session"].to_numpy()
    dropped = clients["end_type"].to_numpy() == "dropout"
    index = pd.RangeIndex(1, weeks + 1, name="session")
    # A client who drops out in week w is no longer retained from week w + 1 on.
    return pd.Series([1.0 - (dropped & (ends < w)).mean() for w in index], index=index)


def summary_figure(clients: pd.DataFrame, sessions: pd.DataFrame, title: str = ""):
    """Four panels: retention, mean alliance, mean PHQ-9 by session, the main reasons for leaving."""
    weeks = int(sessions["session"].max()) if len(sessions) else 1
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    ax = axes[0, 0]
    retention = retention_by_session(clients, weeks)
    ax.step(retention.index, 100 * retention.to_numpy(), where="post", color="C0")
    ax.set(xlabel="session (week)", ylabel="clients not dropped out (%)", title="Retention", ylim=(0, 101))

    attended = sessions[sessions["attended"]]
    by_session = attended.groupby("session")
    ax = axes[0, 1]
    ax.plot(by_session["alliance"].mean(), color="C1", marker="o", ms=3)
    ax.set(xlabel="session (week)", ylabel="mean alliance (WAI-SR, 12-60)", title="Working alliance")

    ax = axes[1, 0]
    ax.plot(by_session["phq9"].mean(), color="C2", marker="o", ms=3)
    ax.axhline(10, color="grey", ls="--", lw=1, label="caseness (PHQ-9 = 10)")
    ax.set(xlabel="session (week)", ylabel="mean PHQ-9 (points, 0-27)", title="Depression severity")
    ax.legend(frameon=False)

    ax = axes[1, 1]
    dropped = clients[clients["end_type"] == "dropout"]
    causes = dropped["dropout_cause"].value_counts().reindex(REASONS).dropna()
    share = 100 * causes / max(len(dropped), 1)
    ax.barh(share.index.str.replace("_", " "), share.to_numpy(), color=[REASON_COLOURS[r] for r in share.index])
    ax.invert_yaxis()
    categories = dropped["dropout_category"].value_counts(normalize=True)
    mix = ", ".join(f"{c} {100 * categories.get(c, 0.0):.0f}%" for c in CATEGORIES)
    ax.set(
        xlabel=f"share of the {len(dropped)} dropouts (%)",
        title=f"Main reason for leaving\n{mix}",
    )
    if title:
        fig.suptitle(plain_text(title, 120))
    return fig
