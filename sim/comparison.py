"""Scenarios side by side on common random numbers: ``compare("baseline", "low_empathy")``.

Every replicate runs all scenarios as one :class:`sim.engine.Cohort` batch, so they share each
random draw (clients, therapists, attendance, ruptures, ...): a difference between scenarios is the
effect of their parameters, not of luck. Sharing draws needs one cohort size and seed, so the run
settings of the first scenario apply to all unless overridden. Differences are paired by replicate,
each scenario against a reference (the first by default) or against its own partner
(``pairs=[("cultural_mismatch", "cultural_mismatch_humility")]``). The statistics and the figure
live in :mod:`analysis.compare` and :mod:`analysis.compare_figure`.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim import records
from sim.engine import Cohort
from sim.outcomes import cohort_metrics
from sim.run import client_outcomes
from sim.scenario import Scenario, ScenarioError, load_scenario
from sim.weekly import weekly_curves

CLIENT_COLUMNS = ["client_id", "end_type", "end_session", "dropout_cause", "dropout_category", "sessions_attended"]
SESSION_COLUMNS = ["client_id", "session", "attended", "alliance"]
PAIR_HELP = "e.g. pairs=[('cultural_mismatch', 'cultural_mismatch_humility')]"


@dataclass
class ComparisonResult:
    """Scenarios compared over replicates on common random numbers.

    Attributes:
        scenarios: scenario names, in the order given.
        clients: one row per scenario, replicate and client (end type, end session, dropout cause).
        sessions: one row per scenario, replicate, client and weekly slot in therapy: attended,
            alliance (WAI-SR 12-60) and whether a rupture happened.
        weekly: one row per scenario, replicate and week: clients in therapy and attending, mean
            alliance and PHQ-9 of those attending, ruptures, repairs, dropouts, holiday
            (:func:`sim.weekly.weekly_curves`).
        metrics: one row per scenario and replicate, one column per cohort metric
            (:data:`sim.outcomes.METRICS`).
        table: ``metric, scenario, mean, ci_low, ci_high``: each metric's mean over replicates with
            its 95% t-interval, then each dropout cause's share of all clients (shares on 0-1).
        differences: ``metric, scenario, reference, difference, ci_low, ci_high``: each compared
            pair's difference, paired by replicate, with its 95% interval (shares on 0-1).
        settings: clients, therapists, seed and replicates of the runs.
    """

    scenarios: list[str]
    clients: pd.DataFrame
    sessions: pd.DataFrame
    weekly: pd.DataFrame
    metrics: pd.DataFrame
    table: pd.DataFrame
    differences: pd.DataFrame
    settings: dict[str, int]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The compared (scenario, reference) pairs, in order."""
        return list(dict.fromkeys(zip(self.differences["scenario"], self.differences["reference"], strict=True)))

    def figure(self):
        """The four-panel comparison figure (a matplotlib Figure)."""
        from analysis.compare_figure import compare_figure

        s = self.settings
        title = (
            f"{s['clients']} clients, {s['therapists']} therapists, seed {s['seed']}, "
            f"{s['replicates']} replicates on common random numbers"
        )
        return compare_figure(self.clients, self.weekly, self.table, self.differences, title=title)

    def text(self) -> str:
        """The tables as printed by ``python -m sim compare`` (no line wider than 100 characters)."""
        from analysis.compare import format_table

        text = format_table(self.table, self.differences, self.settings["replicates"])
        if "posterior" in self.settings:
            k, ratio = self.settings["posterior"], self.settings["width_ratio"]
            note = (
                f"Each of the {k} replicates drew its parameters from the posterior (sim/posterior.csv), so the "
                f"intervals carry parameter uncertainty too: they are {ratio:.1f} times as wide (median over metrics) "
                "as on the point values over the same replicates."
            )
            text = textwrap.fill(note, 100) + "\n\n" + text
        return text

    def csv(self) -> pd.DataFrame:
        """compare.csv: means and paired differences in long format, shares in % and percentage points."""
        from analysis.compare import csv_table

        return csv_table(self.table, self.differences)

    def save(self, out: str | Path) -> list[Path]:
        """Write compare.csv, compare.png and compare.svg into ``out``; return the paths."""
        from analysis.figures import save

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "compare.csv"
        self.csv().to_csv(path, index=False)
        return [path, *save(self.figure(), out, "compare")]


def _scenario(item: Scenario | str | Path) -> Scenario:
    return item if isinstance(item, Scenario) else load_scenario(item)


def _posterior_sets(loaded: list[Scenario], k: int, seed: int) -> list[list[dict]]:
    """For each replicate, every scenario's parameters with the free ones from that replicate's draw."""
    from sim.posterior import load_posterior

    draws = load_posterior().draws(k, seed)
    return [
        [{**sc.params, **{n: v for n, v in draw.items() if n not in sc.overrides}} for sc in loaded] for draw in draws
    ]


def _width_ratio(with_posterior: pd.DataFrame, point: pd.DataFrame) -> float:
    """Mean over metrics and scenarios of the ratio of interval widths (replicate SDs), posterior to point."""
    from sim.outcomes import METRICS

    ratios = []
    for m in METRICS:
        a = with_posterior.groupby("scenario", observed=True)[m.name].std()
        b = point.groupby("scenario", observed=True)[m.name].std()
        ratio = (a / b).replace([float("inf")], float("nan")).dropna()
        ratios.extend(ratio.tolist())
    return float(pd.Series(ratios).median()) if ratios else float("nan")


def compare(
    *scenarios: Scenario | str | Path,
    clients: int | None = None,
    therapists: int | None = None,
    seed: int | None = None,
    replicates: int = 10,
    reference: str | None = None,
    pairs: list[tuple[str, str]] | None = None,
    posterior: int | None = None,
) -> ComparisonResult:
    """Run scenarios side by side on common random numbers, over replicates.

    Args:
        *scenarios: scenario names, paths or :class:`sim.scenario.Scenario` objects.
        clients, therapists, seed: run settings for all scenarios; by default the first scenario's.
        replicates: independent cohorts per scenario (replicates 0 .. replicates - 1 of the seed).
        reference: the scenario every other one is compared with (default the first).
        pairs: (reference, scenario) pairs to compare instead, each scenario with its own partner.
        posterior: run this many replicates (instead of ``replicates``), replicate r with the free
            parameters of the r-th draw from the posterior (sim/posterior.csv) for every scenario (each
            keeps its own settings), so the intervals carry parameter uncertainty too. The same
            replicates also run at the point values, and ``settings["width_ratio"]`` says how much
            wider the intervals are with the posterior.

    Returns:
        A :class:`ComparisonResult` with ``.table``, ``.differences``, ``.figure()`` and ``.save(out)``.

    Raises:
        ScenarioError: no scenario, a scenario given twice, a bad name or setting, a reference or
            pair naming a scenario not compared.

    Example:
        >>> from sim import compare
        >>> result = compare("baseline", "low_empathy", clients=200, replicates=3)  # doctest: +SKIP
        >>> result.differences.query("metric == 'dropout_rate'")  # doctest: +SKIP
    """
    from analysis.compare import comparison_pairs, paired_differences, replicate_values, summary_table

    if not scenarios:
        raise ScenarioError("compare needs at least one scenario, e.g. compare('baseline', 'low_empathy').")
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 2:
        raise ScenarioError(
            f"replicates = {replicates!r} is not allowed: the intervals are over replicates, so use an "
            "integer of 2 or more (10 by default)."
        )
    loaded = [_scenario(s) for s in scenarios]
    names = [s.name for s in loaded]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ScenarioError(f"scenario {', '.join(twice)} is given twice: name each scenario once.")
    if reference is not None and pairs:
        raise ScenarioError(f"give a reference or pairs, not both ({PAIR_HELP}).")
    try:
        compared = comparison_pairs(names, reference, pairs) if len(names) > 1 or reference or pairs else []
    except (ValueError, TypeError) as err:
        raise ScenarioError(f"{err} ({PAIR_HELP})") from None
    first = loaded[0].with_settings(clients=clients, therapists=therapists, seed=seed)
    if posterior is not None:
        if isinstance(posterior, bool) or not isinstance(posterior, int) or posterior < 2:
            raise ScenarioError(f"posterior = {posterior!r} is not allowed: use an integer of 2 or more draws.")
        replicates = posterior
    settings = {"clients": first.clients, "therapists": first.therapists, "seed": first.seed, "replicates": replicates}
    draws = _posterior_sets(loaded, posterior, first.seed) if posterior else None

    client_frames, session_frames, weekly_frames, metric_rows, point_rows = [], [], [], [], []
    for replicate in range(replicates):
        sets = [s.params for s in loaded]
        if draws is not None:  # the posterior's sets first, then the point values on the same draws
            sets = [draws[replicate][s] for s in range(len(loaded))] + sets
        cohort = Cohort(sets, first.clients, first.therapists, first.seed, replicate, record=True)
        outcomes = client_outcomes(cohort.run())
        metrics = cohort_metrics(outcomes)
        for s, name in enumerate(names):
            if draws is not None:
                point = len(names) + s
                point_rows.append(
                    {"scenario": name, "replicate": replicate, **{k: float(v[point]) for k, v in metrics.items()}}
                )
            keys = {"scenario": name, "replicate": replicate}
            metric_rows.append({**keys, **{k: float(v[s]) for k, v in metrics.items()}})
            table = records.clients_table(cohort, outcomes, s)[CLIENT_COLUMNS]
            client_frames.append(table.assign(**keys))
            sessions = records.sessions_table(cohort, s)
            rupture = sessions["event"].str.contains("rupture", regex=False)
            session_frames.append(sessions[SESSION_COLUMNS].assign(rupture=rupture, **keys))
            weekly = weekly_curves(sessions, cohort.n_weeks).reset_index()
            weekly_frames.append(weekly.assign(**keys))

    def stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
        table = pd.concat(frames, ignore_index=True)
        table["scenario"] = pd.Categorical(table["scenario"], categories=names)
        first_cols = ["scenario", "replicate"]
        return table[first_cols + [c for c in table.columns if c not in first_cols]]

    clients_all, sessions_all = stack(client_frames), stack(session_frames)
    metrics_all = stack([pd.DataFrame(metric_rows)])
    if draws is not None:
        settings |= {
            "posterior": posterior,
            "width_ratio": _width_ratio(metrics_all, stack([pd.DataFrame(point_rows)])),
        }
    return ComparisonResult(
        scenarios=names,
        clients=clients_all,
        sessions=sessions_all,
        weekly=stack(weekly_frames),
        metrics=metrics_all,
        table=summary_table(metrics_all, clients_all),
        differences=paired_differences(replicate_values(metrics_all, clients_all), compared),
        settings=settings,
    )
