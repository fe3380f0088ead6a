"""Intake: each dyad's constants come from its own therapist and its own client, by the formulas' numbers."""

import numpy as np

from sim import dyads, parameters
from sim.engine import stack
from sim.expected import CURVE
from sim.population import Clients, Therapists


def _therapists() -> Therapists:
    """Two therapists for one parameter set: the first warm and overloaded, the second neither."""
    return Therapists(
        empathy=np.array([[0.9, 0.2]]),
        humility=np.array([[0.5, 0.0]]),
        repair_skill=np.array([[0.8, 0.1]]),
        consistency=np.array([[0.7, 0.3]]),
        competence=np.array([[0.6, 0.4]]),
        uses_feedback=np.array([[True, False]]),
        culture=np.array([[0, 1]], dtype=np.int8),
        capacity=np.array([[2.0, 10.0]]),
        retention=np.array([[0.25, 0.75]]),
    )


def _clients() -> Clients:
    """Four clients: their ECR-R scores, culture groups and the rest chosen to make the arithmetic readable."""
    return Clients(
        intake_phq9=np.array([[12.0, 20.0, 15.0, 9.0]]),
        attachment_anxiety=np.array([[1.0, 7.0, 4.0, 2.5]]),
        attachment_avoidance=np.array([[1.0, 4.0, 7.0, 1.0]]),
        attachment_style=np.zeros((1, 4), dtype=np.int8),
        culture=np.array([[0, 0, 1, 2]], dtype=np.int8),
        salience=np.array([[0.5, 1.0, 0.2, 0.6]]),
        expectancy=np.array([[0.1, 0.2, 0.3, 0.4]]),
        readiness=np.array([[0.5, 0.6, 0.7, 0.8]]),
        barriers=np.array([[0.0, 0.5, 1.0, 0.25]]),
        support=np.array([[0.9, 0.1, 0.5, 0.0]]),
        perception_noise=np.array([[0.0, 1.0, -1.0, 0.5]]),
        responsiveness=np.array([[1.0, 0.5, 2.0, -0.5]]),
    )


def test_each_dyad_reads_its_own_therapist_and_client():
    p = stack([parameters.resolve()])
    q = {k: float(v[0, 0]) for k, v in p.items() if k in dyads.IntakeParams._fields}
    t, c = _therapists(), _clients()
    assignment = np.array([[1, 0, 0, 1]])  # client 0 with the second therapist, clients 1 and 2 with the first
    caseload = np.array([[4, 2]])  # the first therapist twice her capacity of 2: overload 1.0
    d = dyads.intake(p, t, assignment, caseload, c)

    assert d.cultural_match.tolist() == [[False, True, False, False]], "a dyad matches on its own therapist's group"
    assert d.uses_feedback.tolist() == [[False, True, True, False]], "feedback is the assigned therapist's"
    assert np.array_equal(d.retention, [[0.75, 0.25, 0.25, 0.75]]), "retention is the assigned therapist's"
    assert np.array_equal(d.anxiety, [[0.0, 1.0, 0.5, 0.25]]), "anxiety is rescaled from ECR-R 1-7 to 0-1"
    # Client 2: mismatched with the first therapist (humility 0.5), salience 0.2: strain 0.1.
    assert d.strain[0, 2] == 0.2 * (1.0 - 0.5) and d.strain[0, 1] == 0.0, "strain needs a mismatch"
    perceived = 0.9 * (1.0 - q["cultural_strain_empathy"] * 0.1) + q["perceived_empathy_noise"] * -1.0
    np.testing.assert_allclose(d.perceived_empathy[0, 2], np.clip(perceived, 0, 1), rtol=1e-12)
    # The first therapist's caseload is twice her capacity: her clients' cancellations rise by the overload term.
    for i, (consistency, overload) in enumerate([(0.3, 0.0), (0.7, 1.0)]):
        expected = q["cancellation_rate"] * (1.0 - consistency) + q["overload_cancellation"] * overload
        np.testing.assert_allclose(d.cancel_risk[0, i], expected, rtol=1e-12, err_msg=f"cancel risk of client {i}")
    assert d.cancel_risk[0, 1] > d.cancel_risk[0, 0], "an overloaded therapist's clients should cancel more often"
    # A session brings (1 + speedup * anxiety)(1 - slowdown * avoidance) sessions' worth of bonding.
    worth = (1.0 + q["anxious_bond_speedup"] * 1.0) * (1.0 - q["avoidant_bond_slowdown"] * 0.5)
    np.testing.assert_allclose(d.bond_speed[0, 1], 1.0 - (1.0 - q["bond_rate"]) ** worth, rtol=1e-12)
    np.testing.assert_array_equal(d.expected_asymptote, CURVE.asymptote(c.intake_phq9))
    for name in ("expectancy", "readiness", "barriers", "support", "responsiveness"):
        np.testing.assert_array_equal(getattr(d, name), getattr(c, name), err_msg=f"{name} is the client's own")
    for name, value in d._asdict().items():
        assert value.shape == (1, 4) and value.flags.c_contiguous, (
            f"{name} should be a C-contiguous (sets, clients) array"
        )
        assert np.isfinite(value).all(), f"{name} has a NaN or an infinity"


def test_clip_gives_numpys_bits():
    """The kernel's clip is np.clip's, to the sign of zero: intake's constants equal numpy's formulas."""
    rng = np.random.default_rng(3)
    values = rng.choice(np.array([-0.0, 0.0, 1.0, -1.0, 2.0, 0.5, 1e-300, -1e-300, np.inf, -np.inf]), 500)
    ours = np.array([dyads._clip(x, 0.0, 1.0) for x in values])
    assert ours.tobytes() == np.clip(values, 0.0, 1.0).tobytes(), "a value differs from np.clip (look at -0.0)"
