"""benchmarks/bench.py's memory figure: pages shared between processes count once in the PSS sum."""

import subprocess
import sys

import pytest

from benchmarks.bench import PeakMemory

# A parent that fills 200 MB, then forks: until either writes to them, the pages are shared.
SHARED = """
import os, time
import numpy as np
block = np.ones(25_000_000)
pid = os.fork()
time.sleep(1.5)
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="proportional set sizes are read from /proc")
def test_shared_pages_count_once_in_pss_and_once_per_process_in_rss():
    with PeakMemory(include_self=False) as memory:
        subprocess.run([sys.executable, "-c", SHARED], check=True)
    pss, rss = memory.peak / 1e6, memory.peak_rss / 1e6
    assert pss > 190, f"the 200 MB block should be seen in the PSS sum ({pss:.0f} MB)"
    assert rss - pss > 150, f"the shared block should count twice in RSS only ({rss:.0f} vs {pss:.0f} MB)"
    assert pss < 330, f"the PSS sum should count the shared block once ({pss:.0f} MB)"
