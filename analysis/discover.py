"""Scenario discovery on a finished sweep: ``python -m analysis discover DIR --output dropout_rate --above 0.3``.

Which region of the swept parameter space gives dropout above 30%, or recovery below 40%? Each
parameter set's output, averaged over replicates, is classed as a case of interest or not, and two
standard scenario-discovery tools answer, both from EMA Workbench's analysis module:

- PRIM, the patient rule induction method (Friedman & Fisher 1999, doi:10.1023/A:1008894516817, as
  used for scenario discovery by Bryant & Lempert 2010, doi:10.1016/j.techfore.2009.08.002): a box
  (a range per parameter, a subset of choices) is peeled from the whole sampled space a few percent
  at a time, each step trading *coverage* (the share of all cases of interest inside the box) for
  *density* (the share of the box's sets that are cases of interest). The peeling trajectory lists
  every step; the chosen box is the one with the highest coverage whose density reaches
  ``min_density`` (or a step picked by ``box``). Each restriction carries a quasi-p-value: a one-sided
  binomial test of whether the box's density would fall if that limit were lifted; a large value
  (above 0.05, say) marks a restriction that may be noise. With ``boxes`` > 1, further boxes are
  sought among the sets outside the earlier ones (covering).
- Feature scoring with extra trees (Jaxa-Rozen & Kwakkel 2018, doi:10.1016/j.envsoft.2018.06.011):
  each parameter's impurity importance for telling cases of interest apart (classification) and for
  predicting the output itself (regression); the scores of each sum to 1.

EMA Workbench's PRIM is deterministic; the extra trees are seeded from the sweep's seed.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.results import Sweep, is_numeric, read_sweep

DEFAULT_MIN_DENSITY = 0.8
DEFAULT_PEEL_ALPHA = 0.05
DEFAULT_MASS_MIN = 0.05
# EMA's Prim drops a column of this name (its own experiments' scenario label); a factor so named is renamed.
EMA_RESERVED = {"scenario": "scenario_name"}


class DiscoveryError(ValueError):
    """Discovery settings that cannot be used on this sweep; the message says what is allowed."""


@contextmanager
def _quiet() -> Iterator[None]:
    """A context that hides warnings raised inside EMA Workbench, which are about its own workings.

    Importing it warns that its optional parallel and interactive back-ends (ipyparallel, altair)
    are absent, neither of which is used here; PRIM calls pandas in ways pandas 3 deprecates; the
    extra trees warn when out-of-bag estimates are short of samples on small sweeps.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _ema():
    """EMA Workbench's prim and feature_scoring modules (imported on first use: it takes seconds)."""
    with _quiet():
        from ema_workbench.analysis import feature_scoring, prim
        from ema_workbench.analysis.scenario_discovery_util import RuleInductionType
    return prim, feature_scoring, RuleInductionType


@dataclass
class Discovery:
    """The result of scenario discovery on one output.

    Attributes:
        output, direction, threshold: the question: sets whose ``output`` lies ``direction``
            ("above" or "below") ``threshold``.
        min_density: the density a chosen box must reach.
        x: the factors of the sets analysed, one row per set.
        values: the output of those sets, averaged over replicates.
        interest: whether each set is a case of interest.
        peeling: every step of every box's peeling and pasting trajectory, with ``chosen`` marking
            the box reported.
        boxes: the chosen boxes' restrictions, one row per box and restricted parameter.
        features: extra-trees importance of each parameter, for the classification and the output.
        settings: everything that decided the result, for summary.json.
        notes: warnings for the reader.
    """

    output: str
    direction: str
    threshold: float
    min_density: float
    x: pd.DataFrame
    values: np.ndarray
    interest: np.ndarray
    peeling: pd.DataFrame
    boxes: pd.DataFrame
    features: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``output-direction-threshold``, the default folder name."""
        return f"{self.output}-{self.direction}-{self.threshold:g}"

    def chosen(self) -> pd.DataFrame:
        """The chosen step of each box, one row per box."""
        return self.peeling[self.peeling["chosen"]].reset_index(drop=True)


def cases_of_interest(values: np.ndarray, direction: str, threshold: float) -> np.ndarray:
    """Whether each value lies strictly above (or below) the threshold."""
    return values > threshold if direction == "above" else values < threshold


def _check_question(sweep: Sweep, output: str, direction: str, threshold: float, min_density: float) -> None:
    from sim.outcomes import METRICS

    if direction not in ("above", "below"):
        raise DiscoveryError(f"direction {direction!r} is not known: use 'above' or 'below'.")
    if not math.isfinite(threshold):
        raise DiscoveryError(f"--{direction} {threshold}: give a finite number.")
    metric = {m.name: m for m in METRICS}.get(output)
    if metric is not None and not metric.low <= threshold <= metric.high:
        raise DiscoveryError(
            f"--{direction} {threshold:g} lies outside the range of {output} ({metric.unit}), "
            f"[{metric.low:g}, {metric.high:g}]; give a threshold inside it, e.g. --above 0.3 for a share."
        )
    if not 0 < min_density <= 1:
        raise DiscoveryError(f"--min-density {min_density:g} must lie in (0, 1], e.g. 0.8.")
    sweep.set_means(output)  # names the stored outputs if this one is not among them


def _prepared(sweep: Sweep, output: str) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The factors and set means of the sets whose output is defined, and how many were left out.

    Choices become categories and integers floats (see :func:`prim_boxes`).
    """
    values = sweep.set_means(output).to_numpy(dtype=float)
    defined = np.isfinite(values)
    x = sweep.factors.loc[defined].reset_index(drop=True).rename(columns=EMA_RESERVED)
    for column in x.columns:
        if not is_numeric(x[column]):
            x[column] = x[column].astype(str).astype("category")
        elif pd.api.types.is_integer_dtype(x[column]):
            # EMA's pasting writes quantiles (9.5) into integer columns, which pandas 3 refuses;
            # as floats they peel the same, and _restrictions rounds their limits back inward.
            x[column] = x[column].astype(float)
    return x, values[defined], int((~defined).sum())


def prim_boxes(
    x: pd.DataFrame,
    interest: np.ndarray,
    min_density: float = DEFAULT_MIN_DENSITY,
    max_boxes: int = 1,
    pick: int | None = None,
    peel_alpha: float = DEFAULT_PEEL_ALPHA,
    mass_min: float = DEFAULT_MASS_MIN,
    integers: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """PRIM boxes for the cases of interest.

    Args:
        x: the factors, one row per set (numbers, or categories for choices).
        interest: whether each set is a case of interest, shape (n_sets,).
        min_density: a box is chosen on its trajectory as the step with the highest coverage whose
            density reaches this; the first box falls back to the densest step (with a note), later
            boxes that reach it nowhere are not reported.
        max_boxes: boxes to seek, each among the sets outside the earlier ones.
        pick: the step (``id`` in the trajectory) to choose for the first box, overriding the rule.
        peel_alpha, mass_min: PRIM's share peeled per step and smallest box mass.
        integers: integer parameters (held as floats): their limits are rounded inward to integers.

    Returns:
        The peeling trajectories (one row per step of each box), the chosen boxes' restrictions
        (one row per box and restricted parameter) and notes.
    """
    prim, _, _ = _ema()
    # A threshold in (0, 1] makes EMA count y == 1 as the cases of interest; a tiny one accepts
    # every box PRIM finds, so the choice along the trajectory is made here, by min_density.
    with _quiet():
        finder = prim.Prim(x, interest.astype(int), threshold=1e-9, peel_alpha=peel_alpha, mass_min=mass_min)
    trajectories, limits, notes = [], [], []
    initial = None
    for number in range(1, max_boxes + 1):
        with _quiet():
            box = finder.find_box()
        if box is None:
            break
        initial = box.box_lims[0] if initial is None else initial
        steps = box.peeling_trajectory.reset_index(drop=True)
        if steps["k"].iloc[0] == 0:  # no case of interest left outside the earlier boxes
            break
        i = _choose(steps, min_density, pick if number == 1 else None)
        if i is None:
            if number == 1:
                i = int(steps["density"].idxmax())
                notes.append(
                    f"no box reaches density {min_density:g}; the densest step of the trajectory ("
                    f"{steps['density'].iloc[i]:.2f}) is reported. Lower --min-density, or pick a step with --box."
                )
            else:
                break
        box.select(i)
        steps = steps.assign(box=number, chosen=steps["id"] == i)
        trajectories.append(steps)
        limits.append(_restrictions(box, i, initial, number, steps.iloc[i], integers))
    peeling = pd.concat(trajectories, ignore_index=True)
    peeling = peeling[["box", "id", "coverage", "density", "mass", "res_dim", "n", "k", "chosen"]]
    peeling = peeling.rename(columns={"id": "step", "res_dim": "restricted", "n": "sets", "k": "cases"})
    return peeling, pd.concat(limits, ignore_index=True), notes


def _choose(steps: pd.DataFrame, min_density: float, pick: int | None) -> int | None:
    """The chosen step: ``pick``, or the highest coverage reaching ``min_density`` (fewer restrictions on ties)."""
    if pick is not None:
        if not 0 <= pick < len(steps):
            raise DiscoveryError(f"--box {pick}: the first box's trajectory has steps 0 to {len(steps) - 1}.")
        return pick
    dense = steps[steps["density"] >= min_density - 1e-12]
    if dense.empty:
        return None
    best = dense.sort_values(["coverage", "res_dim", "density"], ascending=[False, True, False], kind="stable")
    return int(best.index[0])


def _restrictions(box, i: int, initial: pd.DataFrame, number: int, stats: pd.Series, integers) -> pd.DataFrame:
    """One row per parameter restricted at step ``i``: its limits, sampled range and quasi-p-values."""
    lims = box.box_lims[i]
    rows = []
    for name, (qp_low, qp_high) in box.qp[i].items():
        low, high = lims[name].iloc[0], lims[name].iloc[1]
        row = {"box": number, "parameter": name, "coverage": stats["coverage"], "density": stats["density"]}
        if isinstance(low, set | frozenset):
            row |= {
                "kind": "choice",
                "categories": ";".join(sorted(map(str, low))),
                "sampled": ";".join(sorted(map(str, initial[name].iloc[0]))),
                "qp_lower": qp_low,
            }
        else:
            if name in integers:  # the integers inside the box, whatever quantile PRIM cut at
                low, high = math.ceil(low - 1e-9), math.floor(high + 1e-9)
            row |= {
                "kind": "number",
                "lower": float(low),
                "upper": float(high),
                "sampled_low": float(initial[name].iloc[0]),
                "sampled_high": float(initial[name].iloc[1]),
                "qp_lower": qp_low,
                "qp_upper": qp_high,
            }
        rows.append(row)
    table = pd.DataFrame(rows)
    for col in ("qp_lower", "qp_upper"):  # EMA marks an unrestricted side with -1
        if col in table:
            table[col] = table[col].where(table[col] >= 0)
    if table.empty:
        return table
    most_significant = table[[c for c in ("qp_lower", "qp_upper") if c in table]].min(axis=1)
    return table.iloc[np.argsort(most_significant.fillna(np.inf).to_numpy(), kind="stable")]


def feature_scores(x: pd.DataFrame, interest: np.ndarray, values: np.ndarray, seed: int) -> pd.DataFrame:
    """Extra-trees importance of each factor for the cases of interest and for the output itself.

    Returns:
        One row per parameter: ``importance_of_interest`` (classification), ``importance_output``
        (regression), ranked by the first.
    """
    _, scoring, kind = _ema()
    columns = {}
    for label, y, mode in (
        ("importance_of_interest", interest.astype(int), kind.CLASSIFICATION),
        ("importance_output", values, kind.REGRESSION),
    ):
        with _quiet():
            scores, _ = scoring.get_ex_feature_scores(x, y, mode=mode, random_state=seed)
        columns[label] = scores.iloc[:, 0]
    table = pd.DataFrame(columns).rename_axis("parameter").reset_index()
    table = table.sort_values("importance_of_interest", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(1, "rank", np.arange(1, len(table) + 1))
    return table


def discover(
    sweep: Sweep,
    output: str,
    direction: str,
    threshold: float,
    min_density: float = DEFAULT_MIN_DENSITY,
    max_boxes: int = 1,
    pick: int | None = None,
) -> Discovery:
    """PRIM boxes and feature scores of the sets whose ``output`` lies ``direction`` ``threshold``.

    Raises:
        DiscoveryError: a question that cannot be asked of this sweep (an unknown output, a
            threshold outside the output's range or that no set, or every set, crosses).
    """
    from analysis.sensitivity import analysis_seed

    _check_question(sweep, output, direction, threshold, min_density)
    x, values, n_undefined = _prepared(sweep, output)
    interest = cases_of_interest(values, direction, threshold)
    notes = []
    if n_undefined:
        notes.append(f"{n_undefined} parameter sets have no value of {output} (e.g. nobody finished); left out.")
    n_cases = int(interest.sum())
    if n_cases == 0 or n_cases == len(values):
        which = "no" if n_cases == 0 else "every"
        raise DiscoveryError(
            f"{which} parameter set of {sweep.path} has {output} {direction} {threshold:g} (the set means range "
            f"from {values.min():.3g} to {values.max():.3g}), so there is no region to find: choose a threshold "
            "inside that range."
        )
    integers = tuple(c for c in sweep.factors.columns if pd.api.types.is_integer_dtype(sweep.factors[c]))
    peeling, boxes, prim_notes = prim_boxes(x, interest, min_density, max_boxes, pick, integers=integers)
    seed = analysis_seed(int(sweep.manifest.get("seed", 0)))
    features = feature_scores(x, interest, values, seed)
    settings = {
        "sweep": str(sweep.path),
        "experiment": sweep.manifest.get("name"),
        "method": sweep.manifest.get("method"),
        "output": output,
        "direction": direction,
        "threshold": threshold,
        "sets": len(values),
        "replicates_per_set": sweep.replicates(),
        "sets_undefined": n_undefined,
        "cases_of_interest": n_cases,
        "base_rate": n_cases / len(values),
        "min_density": min_density,
        "max_boxes": max_boxes,
        "picked_step": pick,
        "peel_alpha": DEFAULT_PEEL_ALPHA,
        "mass_min": DEFAULT_MASS_MIN,
        "feature_scoring_seed": seed,
    }
    return Discovery(
        output, direction, threshold, min_density, x, values, interest, peeling, boxes, features, settings,
        notes + prim_notes,
    )  # fmt: skip


def report(d: Discovery) -> str:
    """The result in a few lines for the terminal."""
    s = d.settings
    lines = [
        f"{d.output} {d.direction} {d.threshold:g}: {s['cases_of_interest']} of {s['sets']} parameter sets "
        f"({s['base_rate']:.0%}), means over {s['replicates_per_set']} replicate(s) per set"
    ]
    for row in d.chosen().itertuples(index=False):
        lines.append(
            f"box {row.box} (step {row.step}): coverage {row.coverage:.2f}, density {row.density:.2f}, "
            f"mass {row.mass:.2f}, {row.restricted} restricted parameter(s)"
        )
        for r in d.boxes[d.boxes["box"] == row.box].itertuples(index=False):
            qp = " / ".join(f"{q:.2g}" for q in (r.qp_lower, getattr(r, "qp_upper", np.nan)) if np.isfinite(q))
            if r.kind == "choice":
                lines.append(f"  {r.parameter:32s} in {{{r.categories.replace(';', ', ')}}}  quasi-p {qp}")
            else:
                lines.append(
                    f"  {r.parameter:32s} {r.lower:10.4g} .. {r.upper:<10.4g} "
                    f"(sampled {r.sampled_low:.4g} .. {r.sampled_high:.4g})  quasi-p {qp}"
                )
    top = ", ".join(f"{r.parameter} {r.importance_of_interest:.2f}" for r in d.features.head(5).itertuples())
    lines.append(f"feature scores (extra trees, cases of interest): {top}")
    return "\n".join(lines)


def write(d: Discovery, out: Path) -> list[Path]:
    """Write peeling.csv, boxes.csv, features.csv, summary.json and the figures (PNG and SVG) into ``out``."""
    from analysis.discover_figures import figures

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in (("peeling", d.peeling), ("boxes", d.boxes), ("features", d.features)):
        table.to_csv(out / f"{name}.csv", index=False, float_format="%.6g")
        paths.append(out / f"{name}.csv")
    summary = {
        **d.settings,
        "boxes": [
            {**row._asdict(), "restrictions": d.boxes[d.boxes["box"] == row.box].drop(columns="box").to_dict("records")}
            for row in d.chosen().itertuples(index=False)
        ],
        "notes": d.notes,
    }
    (out / "summary.json").write_text(json.dumps(_json(summary), indent=2, allow_nan=False) + "\n")
    paths.append(out / "summary.json")
    return paths + figures(d, out / "figures")


def _json(value):
    """``value`` with numpy scalars as Python ones and NaN as None (JSON null), recursively."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run(
    sweep_dir: Path,
    output: str,
    direction: str,
    threshold: float,
    out: Path | None = None,
    min_density: float = DEFAULT_MIN_DENSITY,
    max_boxes: int = 1,
    pick: int | None = None,
    log=print,
) -> Discovery:
    """Discover, report and write; ``out`` defaults to ``sweep_dir/discovery/<output>-<direction>-<threshold>``."""
    d = discover(read_sweep(sweep_dir), output, direction, threshold, min_density, max_boxes, pick)
    out = Path(out) if out is not None else Path(sweep_dir) / "discovery" / d.name
    paths = write(d, out)
    log(report(d))
    log(f"wrote {len(paths)} files in {out}")
    for note in d.notes:
        print(f"warning: {note}", file=sys.stderr)
    return d


def add_parser(sub) -> None:
    """The ``discover`` subcommand of ``python -m analysis``."""
    from sim.cli import positive_int, seed_int

    p = sub.add_parser(
        "discover",
        help="scenario discovery on a sweep: PRIM boxes and feature scores of an output above or below a threshold",
        description="Which region of a sweep's parameter space gives an output above (or below) a threshold? "
        "PRIM boxes with coverage, density and quasi-p-values, and extra-trees feature scores (EMA Workbench).",
        epilog="exit status: 0 done; 2 a usage mistake (bad directory, output, threshold or --out), in one paragraph.",
    )
    p.add_argument("dir", type=Path, help="a finished sweep: the --out directory of `python -m experiments run`")
    p.add_argument("--output", default="dropout_rate", help="the stored output to classify (default dropout_rate)")
    side = p.add_mutually_exclusive_group(required=True)
    side.add_argument("--above", type=float, metavar="X", help="cases of interest: sets whose mean output exceeds X")
    side.add_argument("--below", type=float, metavar="X", help="cases of interest: sets whose mean output is under X")
    p.add_argument(
        "--min-density",
        type=float,
        default=DEFAULT_MIN_DENSITY,
        help=f"the density a chosen box must reach; the step with the highest coverage that does is chosen "
        f"(default {DEFAULT_MIN_DENSITY})",
    )
    p.add_argument("--boxes", type=positive_int, default=1, help="boxes to seek, each outside the earlier (default 1)")
    p.add_argument("--box", type=seed_int, default=None, metavar="STEP", help="choose this step of the first box")
    p.add_argument("--out", type=Path, default=None, help="default DIR/discovery/<output>-<above|below>-<X>/")


def command(args) -> int:
    """Run ``discover`` from parsed arguments."""
    from sim.cli import output_dir

    direction, threshold = ("above", args.above) if args.above is not None else ("below", args.below)
    name = f"{args.output}-{direction}-{threshold:g}"
    out = output_dir(args.out if args.out is not None else args.dir / "discovery" / name, "--out")
    run(args.dir, args.output, direction, threshold, out, args.min_density, args.boxes, args.box)
    return 0
