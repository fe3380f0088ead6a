"""After the course: the end-of-course assessment and a follow-up in which life goes on.

The follow-up runs week by week, as the course does, without sessions: true severity remits slowly
(``natural_recovery_rate``), drifts, and jumps at life events, which the support built in therapy
buffers as social support does during the course; a client who ended below caseness
may relapse. The relapse hazard is highest at the end of therapy and falls over the following
months, and is higher with residual symptoms and lower with the support built in therapy (Ali et al.
2017, Behav. Res. Ther. 94, 1-8, doi:10.1016/j.brat.2017.04.006: 53% relapse within a year after
low-intensity CBT, 79% of them in the first six months, hazard ratio 1.9 for residual PHQ-9 of 5-9;
Vittengl, Clark, Dunn & Jarrett 2007, J. Consult. Clin. Psychol. 75(3), 475-488: 29% within a year
after cognitive therapy). As in those studies the PHQ-9 is given every four weeks; the week a
client who ended below caseness first scores at caseness again is recorded.
"""

from __future__ import annotations

import numpy as np

from sim import libm
from sim.dyads import set_values
from sim.dynamics import CASENESS
from sim.jit import kernel

ASSESSMENT_WEEKS = 4  # the PHQ-9 every four weeks of the follow-up (monthly monitoring)
YEAR = 52  # relapse_rate is the chance of relapsing within a year


def relapse_base_hazard(relapse_rate, decay_weeks):
    """Weekly relapse hazard at the end of therapy that makes ``relapse_rate`` the one-year chance.

    The hazard falls as ``exp(-(t - 1) / decay_weeks)`` in week t; for a client with no residual
    symptoms and no support built, one minus the chance of staying well through 52 weeks is then
    exactly ``relapse_rate``.
    """
    weeks = np.arange(YEAR)
    profile = libm.exp(-weeks[None, :] / np.asarray(decay_weeks, dtype=float).reshape(-1, 1)).sum(axis=1)
    return -libm.log1p(-np.minimum(np.asarray(relapse_rate, dtype=float).ravel(), 1.0 - 1e-12)) / profile


def follow_up(p, d, s, clients, streams) -> dict[str, np.ndarray]:
    """Final PHQ-9, follow-up PHQ-9 and relapse per client, each shape (n_sets, n_clients).

    Args:
        p: stacked parameters (arrays shaped (n_sets, 1)).
        d: the dyads (:class:`sim.dyads.Dyads`).
        s: the state at the end of every course (:class:`sim.dyads.State`).
        clients: the client traits (:class:`sim.population.Clients`).
        streams: the run's :class:`sim.streams.Streams`.
    """
    n_sets, n = s.severity.shape
    err = p["measurement_error_sd"]
    assessed = np.clip(np.round(s.severity + err * streams["followup"].standard_normal(n)), 0.0, 27.0)
    last_observed = np.array([m == "last_observed" for m in p["outcome_measure"]])[:, None]
    final = np.where(last_observed, s.phq9, assessed)

    # Support built in therapy: the client's own social support and the alliance internalised,
    # the more so the more of the planned course was attended.
    mean_alliance = np.where(s.attended > 0, s.alliance_sum / np.maximum(s.attended, 1), 12.0)
    internalised = (mean_alliance - 12.0) / 48.0 * np.minimum(1.0, s.attended / p["planned_sessions"])
    w = p["support_built_weight"]
    built = np.broadcast_to((1.0 - w) * clients.support + w * internalised, (n_sets, n))

    weeks = p["followup_weeks"].ravel().astype(np.int64)
    horizon = int(weeks.max())
    # One stream per kind of draw, each drawn as (horizon, n): row t is the same whatever the
    # horizon, so a set gets the same follow-up alone or in a batch with longer follow-ups. Stored
    # client by client (n, horizon), so the kernel reads each client's weeks from one block.
    drift = _by_client(streams["followup_drift"].standard_normal((horizon, n)))
    life = _by_client(streams["followup_life_events"].random((horizon, n)))
    relapse_u = _by_client(streams["followup_relapse"].random((horizon, n)))
    measure = _by_client(streams["followup_measurement"].standard_normal((horizon, n)))
    severity = np.ascontiguousarray(np.broadcast_to(s.severity, (n_sets, n)), dtype=float).copy()
    score = final.astype(float).copy()
    relapse_week = np.zeros((n_sets, n), dtype=np.int16)
    caseness_week = np.zeros((n_sets, n), dtype=np.int16)

    _follow(
        weeks,
        set_values(p, "natural_recovery_rate"),
        set_values(p, "symptom_noise_sd"),
        set_values(p, "life_event_rate"),
        set_values(p, "measurement_error_sd"),
        relapse_base_hazard(p["relapse_rate"], p["relapse_decay_weeks"]),
        set_values(p, "relapse_decay_weeks"),
        set_values(p, "relapse_residual"),
        set_values(p, "relapse_support_buffer"),
        set_values(p, "relapse_size"),
        np.ascontiguousarray(p["life_event_size"] * (1.0 - p["support_buffer"] * built)),
        np.ascontiguousarray(built, dtype=float),
        final.astype(float),
        drift,
        life,
        relapse_u,
        measure,
        severity,
        score,
        relapse_week,
        caseness_week,
    )
    return {
        "final_phq9": final,
        "followup_phq9": score,
        "relapse": relapse_week > 0,
        "relapse_week": relapse_week,
        "caseness_week": caseness_week,
    }


def _by_client(draws):
    return np.ascontiguousarray(draws.T)


@kernel(error_model="numpy")
def _follow(  # noqa: PLR0913 (the kernel's inputs, each an array)
    weeks,
    remission,
    noise_sd,
    life_rate,
    err_sd,
    hazard0,
    decay,
    residual_weight,
    buffer,
    relapse_size,
    shock,
    built,
    final,
    drift,
    life,
    relapse_u,
    measure,
    severity,
    score,
    relapse_week,
    caseness_week,
):
    """Every client's follow-up, in place: severity and the last score, the relapse and caseness weeks."""
    n_sets, n = severity.shape
    fading = np.empty(weeks.max() + 1)
    for k in range(n_sets):
        # The set's parameters, loaded once (the compiler cannot hoist reads of arrays that might alias).
        horizon, h0, weight, buffered = weeks[k], hazard0[k], residual_weight[k], buffer[k]
        setting = (remission[k], noise_sd[k], life_rate[k], err_sd[k], relapse_size[k])
        for t in range(1, horizon + 1):  # the fall of the relapse hazard, the same for every client
            fading[t] = np.exp(-(t - 1) / decay[k])
        # Four clients side by side (a, b, c, d): a client's weeks are one chain of dependent steps
        # (severity feeds the next week's change), which leaves the processor waiting on each step;
        # four independent chains fill it (37 -> 23 ms on the bench's batch, the same bits; the no-NaN
        # flag of the week kernel, 12% here with one client at a time, buys nothing with four). The
        # last block of a set may hold fewer clients: its last client fills the spare lanes, computed
        # and written again with the same values.
        for first in range(0, n, 4):
            i0, i1, i2, i3 = first, min(first + 1, n - 1), min(first + 2, n - 1), min(first + 3, n - 1)
            a = _start(severity[k, i0], shock[k, i0], score[k, i0], final[k, i0], built[k, i0], h0, weight, buffered)
            b = _start(severity[k, i1], shock[k, i1], score[k, i1], final[k, i1], built[k, i1], h0, weight, buffered)
            c = _start(severity[k, i2], shock[k, i2], score[k, i2], final[k, i2], built[k, i2], h0, weight, buffered)
            d = _start(severity[k, i3], shock[k, i3], score[k, i3], final[k, i3], built[k, i3], h0, weight, buffered)
            for t in range(1, horizon + 1):
                u, assess, f = t - 1, t % ASSESSMENT_WEEKS == 0 or t == horizon, fading[t]
                a = _week(a, t, assess, setting, f, drift[i0, u], life[i0, u], relapse_u[i0, u], measure[i0, u])
                b = _week(b, t, assess, setting, f, drift[i1, u], life[i1, u], relapse_u[i1, u], measure[i1, u])
                c = _week(c, t, assess, setting, f, drift[i2, u], life[i2, u], relapse_u[i2, u], measure[i2, u])
                d = _week(d, t, assess, setting, f, drift[i3, u], life[i3, u], relapse_u[i3, u], measure[i3, u])
            for i, (sev, _, last, _, _, relapsed_at, caseness_at) in ((i0, a), (i1, b), (i2, c), (i3, d)):
                severity[k, i], score[k, i] = sev, last
                relapse_week[k, i], caseness_week[k, i] = relapsed_at, caseness_at


@kernel()
def _start(sev, jolt, last, final, built, hazard0, residual_weight, buffer):
    """A client's state at the start of the follow-up, as :func:`_week` takes it.

    Severity, the jolt of a life event, the last score, whether the course ended below caseness,
    the relapse hazard in the first week, and the weeks of relapse and of caseness (0: none yet).
    """
    h = hazard0 * np.exp(residual_weight * final) * (1.0 - buffer * built)
    return sev, jolt, last, final < CASENESS, h, 0, 0


@kernel()
def _week(state, t, assess, setting, fading, drift, life, relapse_u, measure):
    """Week ``t`` of a client's follow-up, with that week's draws: the state :func:`_start` gives, a week on.

    ``assess``: the PHQ-9 is given this week; ``setting``: the set's remission rate, noise, life-event
    rate, measurement error and relapse size; ``fading``: the fall of the relapse hazard by this week.
    """
    sev, jolt, last, recovered, h, relapsed_at, caseness_at = state
    rate, sd, life_p, err, size = setting
    change = -rate * sev + sd * drift
    if life < life_p:
        change += jolt
    if recovered and relapsed_at == 0 and _relapses(relapse_u, h * fading):
        relapsed_at = t
        change += size
    sev = min(max(sev + change, 0.0), 27.0)
    if assess:
        last = min(max(np.rint(sev + err * measure), 0.0), 27.0)
        if recovered and caseness_at == 0 and last >= CASENESS:
            caseness_at = t
    return sev, jolt, last, recovered, h, relapsed_at, caseness_at


@kernel()
def _relapses(u, y):
    """Whether a uniform draw ``u`` is a relapse at weekly hazard ``y``: ``u < 1 - exp(-y)``.

    In floating point 1 - exp(-y) <= y + 1e-15 (exp(-y) >= 1 - y, and the two roundings add less
    than 3e-16), so a draw above y + 1e-15 is no relapse whatever the exponential: it is computed
    only for the draws that could be one, about one in a hundred, and every outcome is the one the
    exponential gives.
    """
    return u <= y + 1e-15 and u < 1.0 - np.exp(-y)
