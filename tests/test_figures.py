"""The CLI's figures tell the truth at a glance: whole weeks, the whole alliance scale, means with their n."""

import numpy as np
import pytest
from matplotlib.colors import to_hex

from analysis.figures import summary_figure
from sim import compare, simulate
from sim.display import HOLIDAY_COLOUR, WEEK_LABEL
from sim.vignette import vignette
from sim.weekly import MIN_CLIENTS, weekly_curves


def _week_axes(fig):
    return [ax for ax in fig.axes if WEEK_LABEL in ax.get_xlabel() or "week" in ax.get_xlabel()]


def _assert_honest(fig, name):
    fig.canvas.draw()
    weeks = _week_axes(fig)
    assert weeks, f"{name}: no week axis"
    for ax in weeks:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert all(float(t).is_integer() for t in ticks), f"{name}: fractional week ticks {ticks}"
    for ax in fig.axes:
        assert ax.yaxis.get_label_position() == "left", f"{name}: {ax.get_title()!r} has a second y axis"


@pytest.fixture(scope="module")
def routine():
    return simulate("routine_care", clients=100, seed=2)


def test_summary_figure_whole_alliance_scale_with_a_named_zoom_and_n(routine):
    fig = summary_figure(routine.clients, routine.sessions, "Scenario: routine_care")
    _assert_honest(fig, "summary")
    alliance = [ax for ax in fig.axes if ax.get_title().startswith("Working alliance")][0]
    assert alliance.get_ylim() == (12, 60), "the alliance is drawn on the whole WAI-SR range"
    assert "mean over clients attending" in alliance.get_title()
    zoom = alliance.child_axes
    assert len(zoom) == 1 and zoom[0].get_title().startswith("zoomed to WAI-SR"), "the zoom names its range"
    low, high = zoom[0].get_ylim()
    assert zoom[0].get_title() == f"zoomed to WAI-SR {low:.1f}-{high:.1f}"
    strips = [ax for ax in fig.axes if ax.get_ylabel() == "attending (n)"]
    assert len(strips) == 2, "the n of the means is drawn under them"
    curves = weekly_curves(routine.sessions, int(routine.sessions["session"].max()))
    line = alliance.get_lines()[0].get_ydata()
    sparse = (curves["attending"] < MIN_CLIENTS).to_numpy()
    assert sparse.any(), "this run should have sparse late weeks to test the masking"
    assert np.isnan(np.asarray(line, float)[sparse]).all(), "weeks with fewer than 20 attending are left out"


def test_compare_and_vignette_figures_are_honest():
    result = compare("baseline", "anxious_breaks", clients=100, replicates=2)
    fig = result.figure()
    _assert_honest(fig, "compare")
    alliance = [ax for ax in fig.axes if ax.get_title().startswith("Working alliance")][0]
    assert alliance.get_ylim() == (12, 60)
    shaded = [p for p in alliance.patches if to_hex(p.get_facecolor()) == HOLIDAY_COLOUR.lower()]
    assert shaded, "anxious_breaks' holiday is shaded"
    v = vignette("anxious_breaks", pick="dropout", clients=150, what_if={"therapist_consistency_mean": 0.9})
    _assert_honest(v.figure(), "vignette")


def test_save_lays_out_once_and_repeats_its_bytes(routine, tmp_path):
    """PNG and SVG share one constrained layout, and the same figure gives the same files."""
    from analysis.figures import save

    written = []
    for attempt in ("first", "second"):
        fig = summary_figure(routine.clients, routine.sessions, title="routine")
        engine = fig.get_layout_engine()
        calls = []
        execute = engine.execute
        engine.execute = lambda f, calls=calls, execute=execute: (calls.append(f), execute(f))
        paths = save(fig, tmp_path / attempt, "summary")
        assert len(calls) == 1, f"the layout ran {len(calls)} times for PNG and SVG: the SVG should keep the PNG's"
        written.append([p.read_bytes() for p in paths])
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert written[0] == written[1], "the same figure saved twice gave different bytes"


def test_save_gives_matplotlibs_tight_png_and_an_svg_of_the_same_box(routine, tmp_path):
    """One layout and one crop box for both files: the PNG is the one ``bbox_inches="tight"`` draws."""
    import io
    import re

    import matplotlib.pyplot as plt

    from analysis.figures import DPI, METADATA, REPRODUCIBLE_RC, save

    png, svg = save(summary_figure(routine.clients, routine.sessions, title="routine"), tmp_path, "summary")
    reference = summary_figure(routine.clients, routine.sessions, title="routine")
    buffer = io.BytesIO()
    with plt.rc_context(REPRODUCIBLE_RC):
        reference.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata=METADATA[".png"])
    plt.close(reference)
    assert png.read_bytes() == buffer.getvalue(), "the PNG differs from matplotlib's own tight PNG of the figure"
    width_px, height_px = plt.imread(png).shape[1::-1]
    size = re.search(r'width="([\d.]+)pt" height="([\d.]+)pt"', svg.read_text())
    width_pt, height_pt = float(size[1]), float(size[2])
    assert abs(width_pt * DPI / 72 - width_px) < 1 and abs(height_pt * DPI / 72 - height_px) < 1, (
        f"the SVG's box ({width_pt} x {height_pt} pt) is not the PNG's ({width_px} x {height_px} px at {DPI} dpi)"
    )


def _ticks_to_freeze():
    """Ticks that ``freeze_ticks`` must keep as a draw shows them.

    An offset, log minor ticks on axes sharing x, an inset, an image whose fixed aspect shrinks its
    axes only when the figure is drawn (its ticks follow the shrunk length), a colourbar, and minor
    ticks with labels, some on major ticks (a draw leaves those out, and the labels must not shift).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import AutoMinorLocator

    fig, ((top, image_ax), (bottom, minor)) = plt.subplots(2, 2, sharex="col", layout="constrained")
    x = np.geomspace(1, 5000, 40)
    top.plot(x, 1e6 + np.sqrt(x))  # the y labels need an offset (+1e6) to be readable
    top.set_xscale("log")  # minor ticks between the decades, shared with the axis below
    inset = top.inset_axes((0.6, 0.1, 0.3, 0.3))
    inset.plot(x, np.log(x))
    bottom.bar(x[::8], np.arange(5), width=x[::8] / 3)
    image = image_ax.imshow(np.arange(120.0).reshape(3, 40))  # aspect "equal": a wide, flat axes
    fig.colorbar(image, ax=image_ax, label="value (units)")
    minor.plot(np.arange(10.0), np.arange(10.0) ** 2)
    minor.xaxis.set_minor_locator(AutoMinorLocator(2))
    minor.xaxis.set_minor_formatter("{x:.1f}")
    return fig


def test_frozen_ticks_are_the_ones_matplotlib_draws(tmp_path):
    """Freezing ticks after the layout keeps offsets, log minor ticks, shared axes, insets and colorbars."""
    import io

    import matplotlib.pyplot as plt

    from analysis.figures import DPI, METADATA, REPRODUCIBLE_RC, save

    png, _ = save(_ticks_to_freeze(), tmp_path, "ticks")
    reference = _ticks_to_freeze()
    buffer = io.BytesIO()
    with plt.rc_context(REPRODUCIBLE_RC):
        reference.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata=METADATA[".png"])
    plt.close(reference)
    assert png.read_bytes() == buffer.getvalue(), "a frozen tick, label, offset or minor tick differs from matplotlib's"
