"""Named random streams: one numpy Generator per kind of decision.

A run's randomness is a pure function of ``(seed, replicate)``. Each stream is seeded from that pair
and a hash of its own name (as Starsim does), so adding a stream, or drawing more from one, leaves
every other stream's numbers unchanged. Every draw is shaped ``(n,)`` over clients or therapists and
broadcasts over the parameter-set axis: parameter sets in one replicate share their draws (common
random numbers), and a set run alone sees exactly the numbers it sees inside any batch.
"""

from __future__ import annotations

import zlib

import numpy as np

STREAMS = (
    "therapists",  # therapist traits
    "therapist_retention",  # therapist retention skill
    "clients",  # client traits
    "responsiveness",  # client responsiveness to therapy
    "matching",  # tie-breaking and random assignment at intake
    "cancellation",  # therapist cancellations
    "attendance",  # client attendance
    "rupture",  # rupture onset
    "repair",  # rupture repair
    "ending",  # good-enough endings
    "dropout",  # dropout decisions
    "symptoms",  # weekly drift of true severity
    "measurement",  # PHQ-9 administration error
    "life_events",  # stressful life events
    "sudden_gains",  # sudden gains and their reversal
    "followup",  # the end-of-course assessment
    "followup_drift",  # weekly drift of severity after the course
    "followup_life_events",  # life events after the course
    "followup_relapse",  # relapse after the course
    "followup_measurement",  # the PHQ-9 during the follow-up
)


def _stream_key(name: str) -> int:
    return zlib.crc32(name.encode())


class Streams:
    """The Generators of one ``(seed, replicate)``, one per name in :data:`STREAMS`.

    Args:
        seed: the run's seed (a non-negative integer).
        replicate: the replicate number; replicates of one seed are independent.
    """

    def __init__(self, seed: int, replicate: int = 0):
        if seed < 0 or replicate < 0:
            raise ValueError(f"seed and replicate must be non-negative, got {seed}, {replicate}")
        self.seed = int(seed)
        self.replicate = int(replicate)
        self._rngs = {name: np.random.default_rng([self.seed, self.replicate, _stream_key(name)]) for name in STREAMS}

    def __getitem__(self, name: str) -> np.random.Generator:
        return self._rngs[name]

    def uniform(self, name: str, n: int) -> np.ndarray:
        """``n`` uniform draws on [0, 1) from stream ``name``, shape (n,)."""
        return self._rngs[name].random(n)

    def normal(self, name: str, n: int) -> np.ndarray:
        """``n`` standard normal draws from stream ``name``, shape (n,)."""
        return self._rngs[name].standard_normal(n)
