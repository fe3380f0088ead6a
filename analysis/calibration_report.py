"""What a calibration writes: the posterior, the point values, the history, docs/calibration.md and its figures."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from analysis.calibrate import Fit, weighted_quantile
from analysis.figures import save
from sim import parameters

# Posterior spread on the logit scale as a share of the prior's: below IDENTIFIED the facts pin the
# parameter down; above FREE they leave it about as open as the prior did.
IDENTIFIED, FREE = 0.5, 0.8


def write_posterior(fit: Fit, path: Path) -> Path:
    """sim/posterior.csv: one particle per row, its weight and distance."""
    frame = pd.DataFrame(fit.posterior, columns=fit.problem.names)
    frame["weight"] = fit.weights
    frame["distance"] = fit.result.last.distances
    path.write_text(frame.to_csv(index=False, float_format="%.6g"), encoding="utf-8")
    return path


def write_history(fit: Fit, out: Path) -> list[Path]:
    """Every generation's particles (history.parquet) and the schedule (generations.csv) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for g in fit.result.generations:
        frame = pd.DataFrame(fit.problem.to_x(g.particles), columns=fit.problem.names)
        frame.insert(0, "generation", g.t)
        frame["weight"] = g.weights
        frame["distance"] = g.distances
        for j, t in enumerate(fit.problem.facts):
            frame[f"fact:{t.id}"] = g.statistics[:, j]
        frames.append(frame)
    history = out / "history.parquet"
    pd.concat(frames, ignore_index=True).to_parquet(history, index=False)
    schedule = out / "generations.csv"
    schedule_table(fit).to_csv(schedule, index=False)
    manifest = out / "calibration.json"
    manifest.write_text(json.dumps(fit_record(fit), indent=2) + "\n", encoding="utf-8")
    return [history, schedule, manifest]


def schedule_table(fit: Fit) -> pd.DataFrame:
    """One row per generation: tolerance, acceptance, effective sample size, seconds."""
    return pd.DataFrame(
        [
            {
                "generation": g.t,
                "tolerance": g.epsilon,
                "accepted": len(g.particles),
                "proposed": g.proposed,
                "acceptance": g.acceptance,
                "ess": g.ess,
                "seconds": g.seconds,
            }
            for g in fit.result.generations
        ]
    )


def fit_record(fit: Fit) -> dict:
    """What the fit was run on and how it ended, for calibrated.toml and the history's manifest."""
    s = fit.spec
    last = fit.result.last
    return {
        "date": fit.date,
        "method": "ABC-SMC (Beaumont et al. 2009; OLCM kernel, Filippi et al. 2013; tolerance by quantile)",
        "scenario": s.scenario,
        "seed": s.seed,
        "replicates": s.replicates,
        "clients": s.clients,
        "therapists": fit.problem.therapists,
        "population": s.population,
        "generations": len(fit.result.generations),
        "final_tolerance": float(f"{last.epsilon:.4g}"),
        "stopped": fit.result.stopped,
        "evaluations": fit.evaluations,
        "executor": fit.executor,
        "workers": fit.workers,
        "runtime_s": round(fit.runtime, 1),
        "point": "the most central particle of the better half of the final population",
        "facts": [t.id for t in fit.problem.facts],
    }


def calibrated_toml(fit: Fit) -> str:
    """The text of sim/calibrated.toml: [values] (the posterior medians) and [fit]."""
    lines = [
        "# Written by `make calibrate` (python -m analysis calibrate); see docs/calibration.md.",
        "# sim/parameters.py reads [values], the posterior's most central good particle, as the free parameters'",
        "# defaults;",
        "# the posterior itself is sim/posterior.csv.",
        "",
        "[values]",
        *(f"{name} = {value!r}" for name, value in fit.point().items()),
        "",
        "[fit]",
    ]
    for key, value in fit_record(fit).items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def identification(fit: Fit) -> pd.DataFrame:
    """Prior and posterior spread on the logit scale, and what the facts say about each parameter."""
    u = fit.result.last.particles
    w = fit.weights
    mean = w @ u
    sd = np.sqrt(w @ (u - mean) ** 2)
    ratio = sd / fit.problem.prior_sd
    rows = []
    for j, p in enumerate(fit.problem.free):
        x = fit.posterior[:, j]
        verdict = "identified" if ratio[j] < IDENTIFIED else ("left free" if ratio[j] > FREE else "partly identified")
        rows.append(
            {
                "parameter": p.name,
                "declared": fit.problem.declared[j],
                "median": weighted_quantile(x, w, 0.5),
                "low": weighted_quantile(x, w, 0.025),
                "high": weighted_quantile(x, w, 0.975),
                "spread_ratio": ratio[j],
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def correlated_pairs(fit: Fit, k: int = 4) -> list[tuple[int, int, float]]:
    """The ``k`` parameter pairs the facts tie together most (largest weighted |correlation| on the logit scale)."""
    u, w = fit.result.last.particles, fit.weights
    corr = np.atleast_2d(np.cov(u, rowvar=False, aweights=w))
    sd = np.sqrt(np.diag(corr))
    corr = corr / np.outer(sd, sd)
    pairs = [(i, j, float(corr[i, j])) for i in range(len(sd)) for j in range(i + 1, len(sd))]
    return sorted(pairs, key=lambda p: -abs(p[2]))[:k]


def marginals_figure(fit: Fit):
    """Prior and posterior of every free parameter on its registry range."""
    names = fit.problem.names
    cols = 4
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), constrained_layout=True)
    prior = fit.problem.prior()
    for j, (ax, p) in enumerate(zip(axes.flat, fit.problem.free, strict=False)):
        grid_u = np.linspace(prior.mean[j] - 4 * prior.sd[j], prior.mean[j] + 4 * prior.sd[j], 400)
        grid_x = fit.problem.to_x(np.broadcast_to(grid_u[:, None], (400, len(names))))[:, j]
        # The prior is normal in u; on the x scale its density carries the Jacobian du/dx.
        q = (grid_x - p.low) / (p.high - p.low)
        density = stats.norm.pdf(grid_u, prior.mean[j], prior.sd[j]) / ((p.high - p.low) * q * (1 - q))
        ax.plot(grid_x, density, color="grey", lw=1.2, label="prior")
        posterior = fit.posterior[:, j]
        ax.hist(posterior, bins=30, weights=fit.weights, density=True, color="C0", alpha=0.6, label="posterior")
        ax.axvline(fit.point()[p.name], color="C3", lw=1, label="default (central particle)")
        ax.set(xlim=(p.low, p.high), xlabel=f"{p.name} ({p.unit})", yticks=[])
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(frameon=False, fontsize="small")
    fig.suptitle("Prior (line) and posterior (bars) of each free parameter, over its registry range")
    return fig


def pairs_figure(fit: Fit):
    """Scatter of the posterior for the pairs the facts tie together most."""
    pairs = correlated_pairs(fit)
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.6 * len(pairs), 3.4), constrained_layout=True, squeeze=False)
    x, w = fit.posterior, fit.weights
    for ax, (i, j, r) in zip(axes.flat, pairs, strict=True):
        pi, pj = fit.problem.free[i], fit.problem.free[j]
        ax.scatter(x[:, i], x[:, j], s=4 + 400 * w, alpha=0.4, color="C0", edgecolor="none")
        ax.set(xlabel=f"{pi.name} ({pi.unit})", ylabel=f"{pj.name} ({pj.unit})", title=f"r = {r:+.2f} (logit scale)")
    fig.suptitle("Posterior particles (area: weight) of the most correlated pairs")
    return fig


def schedule_figure(fit: Fit):
    """Tolerance, acceptance rate and effective sample size by generation."""
    table = schedule_table(fit)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), constrained_layout=True)
    axes[0].plot(table["generation"], table["tolerance"], marker="o")
    axes[0].set(xlabel="generation", ylabel="tolerance (RMS distance in band units)", title="Tolerance")
    axes[1].plot(table["generation"], 100 * table["acceptance"], marker="o", color="C1")
    axes[1].set(xlabel="generation", ylabel="candidates accepted (%)", title="Acceptance rate")
    axes[2].plot(table["generation"], table["ess"], marker="o", color="C2")
    axes[2].set(xlabel="generation", ylabel="effective sample size (particles)", title="Effective sample size")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def write_figures(fit: Fit, out: Path) -> list[Path]:
    """The three figures, PNG and SVG, in ``out``."""
    paths = []
    for stem, make in (
        ("calibration_marginals", marginals_figure),
        ("calibration_pairs", pairs_figure),
        ("calibration_schedule", schedule_figure),
    ):
        paths += save(make(fit), out, stem)
    return paths


def markdown(fit: Fit, point_facts: np.ndarray, figures_dir: str = "figures") -> str:
    """docs/calibration.md."""
    s, problem, last = fit.spec, fit.problem, fit.result.last
    ident = identification(fit)
    schedule = schedule_table(fit)
    lines = [
        "# Calibration",
        "",
        "Generated by `make calibrate` (`python -m analysis calibrate`); do not edit by hand. The posterior is "
        "`sim/posterior.csv` (weighted particles), the point values a default run uses are in `sim/calibrated.toml` "
        "(the registry reads them as the defaults of the free parameters), and `make validate` reports every fact "
        "with them and with the posterior (docs/validation.md).",
        "",
        "## Method",
        "",
        f"Approximate Bayesian computation by sequential Monte Carlo (`analysis/abc.py`): the population Monte Carlo "
        f"sampler of Beaumont, Cornuet, Marin & Robert (2009), tolerances set to the {s.quantile:g} quantile of the "
        "last generation's distances (Del Moral, Doucet & Jasra 2012) and the optimal local covariance kernel of "
        "Filippi et al. (2013). "
        f"The {len(problem.names)} parameters that sim/parameters.py marks free were fitted to the "
        f"{len(problem.facts)} calibration facts of analysis/targets.toml for the `{s.scenario}` scenario. "
        f"**Prior**: normal on u = logit((x - low) / (high - low)) about the value the registry declares from the "
        f"literature, standard deviation {s.prior_sd:g}. **Facts** of a candidate: computed by the code of "
        f"`make validate`, averaged over {s.replicates} cohorts of {s.clients} clients and {problem.therapists} "
        f"therapists (seeds ({s.seed}, r): the same cohorts for every candidate, common random numbers). "
        "**Distance**: the root mean square over facts of the deviation from the published value in units of the "
        "distance to the band's edge on that side (1: every fact at the edge of its published band). "
        "Generation 0 kept the best "
        f"{s.population} of {s.initial * s.population} prior draws; each later generation accepted {s.population} "
        "candidates within its tolerance, proposed in fixed rounds and accepted in proposal order from Generators "
        f"seeded by the seed, so the fit is the same on any executor. Settings: analysis/calibration.toml.",
        "",
        "Why not pyabc or ELFI: pyabc draws from numpy's global random state and re-seeds its workers from it "
        "(pyabc issue 400), so a run can be reproduced only by global seeding, which this project does not do, and "
        "its dynamic schedulers make the accepted population depend on which worker finished first; it also "
        "simulates one particle per model call, where the engine runs thousands of parameter sets per call sharing "
        "their random draws. ELFI batches and seeds explicitly but pins an old matplotlib and brings GPy, h5py and "
        "ipyparallel. The sampler here is the textbook algorithm in about 250 lines, tested on a model whose "
        "posterior is known (tests/test_abc.py).",
        "",
        "## Result",
        "",
        f"- date: {fit.date}; wall time {fit.runtime / 60:.1f} min on the `{fit.executor}` executor with "
        f"{fit.workers} worker(s); {fit.evaluations} candidates simulated",
        f"- generations: {len(fit.result.generations)}; final tolerance {last.epsilon:.3g}; stopped because "
        f"{fit.result.stopped}",
        f"- posterior: {len(last.particles)} particles, effective sample size {last.ess:.0f}",
        "- point values (sim/calibrated.toml): among the half of the final population nearest the facts, the "
        "particle nearest the posterior mean in the posterior's own metric: a typical member of the posterior, "
        "on the ridges the facts allow (the marginal medians of parameters the facts tie together fall off them, "
        "and the single best particle sits at a corner of them, fitted to the calibration cohorts' own noise)",
        "- command: `python -m analysis calibrate` (analysis/calibration.toml); the history is in "
        "`results/calibration/` (history.parquet: every generation's particles, weights, distances and facts)",
        "",
        "## Parameters",
        "",
        "Posterior median and 95% interval; spread: posterior to prior standard deviation on the logit scale "
        f"(below {IDENTIFIED:g}: identified by the facts; above {FREE:g}: left about as free as the prior).",
        "",
        "| parameter | range | declared | default | median | 95% interval | spread | the facts |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, row in ident.iterrows():
        p = parameters.REGISTRY[row["parameter"]]
        lines.append(
            f"| `{p.name}` | {p.low:g} – {p.high:g} ({p.unit}) | {row['declared']:g} | {fit.point()[p.name]:.4g} | "
            f"{row['median']:.4g} | "
            f"{row['low']:.4g} – {row['high']:.4g} | {row['spread_ratio']:.2f} | {row['verdict']} |"
        )
    pairs = correlated_pairs(fit)
    lines += [
        "",
        "Pairs the facts tie together (posterior correlation on the logit scale): "
        + "; ".join(f"`{problem.names[i]}` and `{problem.names[j]}` r = {r:+.2f}" for i, j, r in pairs)
        + ". Moving one along such a ridge can be made up by the other: conclusions that depend on either "
        "alone should be checked with `--posterior K`.",
        "",
        f"![prior and posterior]({figures_dir}/calibration_marginals.png)",
        "",
        f"![correlated pairs]({figures_dir}/calibration_pairs.png)",
        "",
        "## Generations",
        "",
        "| generation | tolerance | accepted | proposed | acceptance | ESS | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, g in schedule.iterrows():
        lines.append(
            f"| {int(g['generation'])} | {g['tolerance']:.3g} | {int(g['accepted'])} | {int(g['proposed'])} | "
            f"{100 * g['acceptance']:.1f}% | {g['ess']:.0f} | {g['seconds']:.0f} |"
        )
    lines += [
        "",
        f"![schedule]({figures_dir}/calibration_schedule.png)",
        "",
        "## Calibration facts",
        "",
        "Posterior: weighted median and 95% interval of each fact over the final particles (the same cohorts); "
        "at the point: the fact at the default values (the central particle).",
        "",
        "| fact | published | band | posterior median | 95% interval | at the point | status at the point |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for j, t in enumerate(problem.facts):
        values = last.statistics[:, j]
        ok = np.isfinite(values)
        med = weighted_quantile(values[ok], fit.weights[ok], 0.5)
        lo = weighted_quantile(values[ok], fit.weights[ok], 0.025)
        hi = weighted_quantile(values[ok], fit.weights[ok], 0.975)
        status = "pass" if t.contains(point_facts[j]) else "**miss**"
        lines.append(
            f"| {t.id} | {t.published:g} | {t.band_low:g} – {t.band_high:g} | {med:.3f} | {lo:.3f} – {hi:.3f} | "
            f"{point_facts[j]:.3f} | {status} |"
        )
    return "\n".join(lines) + "\n"


def write_all(fit: Fit, toml: Path, posterior: Path, report: Path, history: Path, log=print) -> None:
    """Write the posterior, the point values, the history, and the report with its figures."""
    for path in (toml, posterior, report):
        path.parent.mkdir(parents=True, exist_ok=True)
    write_posterior(fit, posterior)
    toml.write_text(calibrated_toml(fit), encoding="utf-8")
    written = write_history(fit, history) if history is not None else []
    point = fit.problem.fact_values(np.array([list(fit.point().values())]))[0]
    figures = write_figures(fit, report.parent / "figures")
    report.write_text(markdown(fit, point), encoding="utf-8")
    missed = [t.id for t, v in zip(fit.problem.facts, point, strict=True) if not t.contains(v)]
    files = [str(posterior), str(toml), f"{report} (and {len(figures)} figure files)", *map(str, written)]
    log(f"wrote {', '.join(files)}")
    if missed:
        log(f"at the default values these calibration facts miss their band: {', '.join(missed)}")
