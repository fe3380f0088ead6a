"""Population draws: truncated normals, the attachment copula, culture groups, styles."""

import numpy as np
import pytest

from sim import parameters
from sim.engine import stack
from sim.population import (
    ATTACHMENT_STYLES,
    attachment_style,
    culture_group,
    draw_clients,
    draw_therapists,
    truncated_normal,
)
from sim.streams import Streams

N = 100_000


def _u(seed=0, n=N):
    return np.random.default_rng(seed).random(n)


def test_truncated_normal_respects_bounds():
    x = truncated_normal(_u(), 0.9, 0.4, 0.0, 1.0)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.min() < 0.05 and x.max() > 0.99, "a wide parent should fill the truncation interval"


def test_wide_truncation_keeps_the_parent_mean():
    x = truncated_normal(_u(), 0.5, 0.1, 0.0, 1.0)  # bounds 5 sd away
    assert abs(x.mean() - 0.5) < 0.01, f"mean {x.mean():.4f}, expected 0.5 within 0.01"
    assert abs(x.std() - 0.1) < 0.01, f"sd {x.std():.4f}, expected 0.1 within 0.01"


def test_one_sided_truncation_known_mean():
    # Half-normal: E[Z | Z > 0] = sqrt(2 / pi) = 0.7979.
    x = truncated_normal(_u(), 0.0, 1.0, 0.0, 10.0)
    assert abs(x.mean() - np.sqrt(2 / np.pi)) < 0.01, f"mean {x.mean():.4f}, expected 0.798 within 0.01"


def test_zero_sd_gives_the_clipped_mean():
    assert np.all(truncated_normal(_u(n=10), 0.3, 0.0, 0.0, 1.0) == 0.3)
    assert np.all(truncated_normal(_u(n=10), 1.5, 0.0, 0.0, 1.0) == 1.0)


def test_truncated_normal_is_monotone_in_u_and_mean():
    u = np.sort(_u(n=1000))
    x = truncated_normal(u, 0.5, 0.2, 0.0, 1.0)
    assert np.all(np.diff(x) >= 0), "inverse transform: a larger uniform gives a larger draw"
    assert np.all(truncated_normal(u, 0.7, 0.2, 0.0, 1.0) >= x), "a larger mean shifts every draw up"


def test_culture_group_shares():
    g = culture_group(_u(), 0.3)
    shares = np.bincount(g, minlength=3) / N
    assert abs(shares[0] - 0.7) < 0.01 and abs(shares[1] - 0.15) < 0.01 and abs(shares[2] - 0.15) < 0.01
    assert np.all(culture_group(_u(n=100), 0.0) == 0)


def test_attachment_style_known_answers():
    anxiety = np.array([2.0, 5.0, 2.0, 5.0, 4.0])
    avoidance = np.array([2.0, 2.0, 5.0, 5.0, 3.9])
    styles = [ATTACHMENT_STYLES[i] for i in attachment_style(anxiety, avoidance, 4.0)]
    assert styles == ["secure", "anxious", "avoidant", "fearful", "anxious"], "at the cutoff counts as high"


def _clients(n=N, **overrides):
    p = stack([parameters.resolve(overrides)])
    return draw_clients(p, n, Streams(1)), p


@pytest.mark.parametrize("rho", [-0.6, 0.0, 0.3, 0.7])
def test_attachment_correlation_is_as_requested(rho):
    # Means mid-scale and a small spread, so truncation to 1-7 barely bends the copula.
    c, _ = _clients(
        attachment_correlation=rho, attachment_sd=0.6, attachment_anxiety_mean=4.0, attachment_avoidance_mean=4.0
    )
    r = np.corrcoef(c.attachment_anxiety[0], c.attachment_avoidance[0])[0, 1]
    assert abs(r - rho) < 0.03, f"attachment correlation {r:.3f}, requested {rho} (tolerance 0.03)"


def test_client_traits_in_range():
    c, p = _clients(n=20_000)
    assert np.all((c.intake_phq9 >= 10) & (c.intake_phq9 <= 27)), "intake at caseness and on the PHQ-9 scale"
    assert np.all(c.intake_phq9 == np.round(c.intake_phq9)), "PHQ-9 is an integer score"
    assert abs(c.intake_phq9.mean() - 17.0) < 1.0
    for name in ("attachment_anxiety", "attachment_avoidance"):
        x = getattr(c, name)
        assert x.min() >= 1 and x.max() <= 7, name
    for name in ("salience", "expectancy", "readiness", "barriers", "support"):
        x = getattr(c, name)
        assert x.min() >= 0 and x.max() <= 1, name
        assert abs(x.mean() - p[f"{'cultural_salience' if name == 'salience' else name}_mean"][0, 0]) < 0.05, name
    shares = np.bincount(c.attachment_style.ravel(), minlength=4) / c.attachment_style.size
    assert np.all(shares > 0.05), f"every attachment style should occur at defaults, got {shares}"


def test_intake_floor_is_respected():
    c, _ = _clients(n=5000, intake_phq9_min=15.0, intake_phq9_mean=12.0)
    assert c.intake_phq9.min() >= 15


def test_therapist_traits():
    p = stack([parameters.resolve({"therapist_feedback_share": 0.4, "therapist_capacity_mean": 20.0})])
    t = draw_therapists(p, 20_000, Streams(2))
    for name in ("empathy", "humility", "repair_skill", "consistency", "competence"):
        x = getattr(t, name)
        assert x.min() >= 0 and x.max() <= 1, name
    assert abs(t.uses_feedback.mean() - 0.4) < 0.02
    assert t.capacity.min() >= 1 and abs(t.capacity.mean() - 20.0) < 0.5
    assert np.all(t.capacity == np.round(t.capacity))


def test_a_set_draws_the_same_population_alone_and_in_a_batch_of_repeats():
    """Sets that share population parameters share their draws' computation; the numbers stay each set's own."""
    shared = {"attachment_correlation": 0.3, "expectancy_mean": 0.6}
    overrides = [shared, {"attachment_correlation": -0.4}, shared, {"expectancy_mean": 0.2}, shared, {}]
    sets = [parameters.resolve(o) for o in overrides]
    batch = draw_clients(stack(sets), 500, Streams(4))
    for k, one in enumerate(sets):
        alone = draw_clients(stack([one]), 500, Streams(4))
        for name in alone.__dataclass_fields__:
            assert getattr(batch, name)[k].tobytes() == getattr(alone, name)[0].tobytes(), (
                f"set {k}'s {name} differs between a batch with repeated rows and the set drawn alone"
            )
    assert not np.array_equal(batch.attachment_avoidance[0], batch.attachment_avoidance[1]), (
        "sets with other attachment correlations should get other avoidance scores"
    )
