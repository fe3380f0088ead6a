"""sim/memory.py: freed memory is kept while the engine works, and handed back when asked."""

import subprocess
import sys

import pytest

CHECK = """
import numpy as np, psutil
from sim.memory import keep_freed_memory, release_freed_memory
rss = lambda: psutil.Process().memory_info().rss / 1e6
assert keep_freed_memory()
start = rss()
blocks = [np.ones(1_000_000) for _ in range(40)]  # 8 MB each: below the mmap threshold, from the heap
del blocks
kept = rss()
release_freed_memory()
print(start, kept, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_freed_memory_is_kept_then_released():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    start, kept, released = map(float, done.stdout.split())
    assert kept - start > 200, f"320 MB freed should stay resident while kept ({start:.0f} -> {kept:.0f} MB)"
    assert kept - released > 200, f"release should hand it back ({kept:.0f} -> {released:.0f} MB)"


ARROW = """
import numpy as np, psutil, pyarrow as pa, pyarrow.compute as pc
from sim.memory import release_freed_memory
uss = lambda: psutil.Process().memory_full_info().uss / 1e6
start = uss()
arrays = [pc.add(pa.array(np.ones(1_000_000)), 1.0) for _ in range(40)]  # 320 MB from Arrow's own allocator
del arrays
kept = uss()
release_freed_memory()
print(start, kept, uss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="USS as Linux reports it")
def test_memory_arrow_kept_is_released_too():
    done = subprocess.run([sys.executable, "-c", ARROW], capture_output=True, text=True, check=True)
    start, kept, released = map(float, done.stdout.split())
    assert kept - start > 200, f"Arrow's allocator should keep 320 MB it freed ({start:.0f} -> {kept:.0f} MB)"
    assert kept - released > 200, f"release_freed_memory should hand Arrow's back too ({kept:.0f} -> {released:.0f} MB)"
