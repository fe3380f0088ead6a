"""The power curve of a virtual trial, and the estimated effect's spread by size."""

from __future__ import annotations

import numpy as np

from analysis.figures import plt
from analysis.trial_spec import OUTCOMES

TARGET_POWER = 0.8  # the conventional target, drawn for orientation


def power_figure(result):
    """Left: power by clients per arm with 95% Wilson intervals. Right: the effect estimates' mean and 95% range."""
    spec, power = result.spec, result.power
    n = power["clients_per_arm"].to_numpy()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    p = power["power"].to_numpy()
    err = np.vstack([p - power["power_low"].to_numpy(), power["power_high"].to_numpy() - p])
    left.errorbar(n, p, yerr=err, marker="o", capsize=3, label=f"power ({spec.trials} trials per size, 95% Wilson)")
    left.axhline(TARGET_POWER, color="grey", ls="--", lw=0.8, label=f"{TARGET_POWER:.0%} power")
    left.axhline(spec.alpha, color="C3", ls=":", lw=0.8, label=f"alpha = {spec.alpha:g}")
    for x, y, m in zip(n, p, power["therapists_per_arm"], strict=True):
        left.annotate(f"{m} th.", (x, y), xytext=(4, -12), textcoords="offset points", fontsize=7, color="0.35")
    left.set(
        xscale="log" if n.max() / n.min() >= 8 else "linear",
        ylim=(0, 1.02),
        xlabel="clients per arm (therapists per arm beside each point)",
        ylabel=f"power: share of trials rejecting at alpha {spec.alpha:g}",
        title=f"Power: {spec.arms[1].name} vs {spec.arms[0].name}, {spec.test} test",
    )
    left.legend(frameon=False, fontsize="small", loc="upper left")
    left.set_xticks(n, [f"{v:,}" for v in n])
    left.minorticks_off()

    mean = power["effect_mean"].to_numpy()
    err = np.vstack([mean - power["effect_q025"].to_numpy(), power["effect_q975"].to_numpy() - mean])
    right.errorbar(n, mean, yerr=err, marker="o", capsize=3, color="C1", label="mean and 95% range over trials")
    right.axhline(0, color="grey", lw=0.8)
    unit = "PHQ-9 points" if spec.outcome == "change" else "risk difference"
    right.set(
        xscale=left.get_xscale(),
        xlabel="clients per arm",
        ylabel=f"estimated effect, {spec.arms[1].name} minus {spec.arms[0].name} ({unit})",
        title=f"Effect on {OUTCOMES[spec.outcome]}",
    )
    right.legend(frameon=False, fontsize="small")
    right.set_xticks(n, [f"{v:,}" for v in n])
    right.minorticks_off()
    return fig
