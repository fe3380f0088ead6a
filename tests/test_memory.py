"""sim/memory.py: freed memory is kept while the engine works, and handed back when asked."""

import subprocess
import sys

import pytest

SCRIPT = """
import numpy as np, psutil
from sim.memory import keep_freed_memory, release_freed_memory
{setup}
mb = lambda: psutil.Process().{measure} / 1e6
start = mb()
blocks = {allocate}
del blocks
kept = mb()
release_freed_memory()
print(start, kept, mb())
"""
# 320 MB allocated and freed, from each pool release_freed_memory hands back.
POOLS = {
    "glibc": {  # 8 MB blocks: below the mmap threshold, from the heap
        "setup": "assert keep_freed_memory()",
        "measure": "memory_info().rss",
        "allocate": "[np.ones(1_000_000) for _ in range(40)]",
    },
    "arrow": {  # Arrow's own allocator (mimalloc or jemalloc), which keeps what it frees
        "setup": "import pyarrow as pa, pyarrow.compute as pc",
        "measure": "memory_full_info().uss",
        "allocate": "[pc.add(pa.array(np.ones(1_000_000)), 1.0) for _ in range(40)]",
    },
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator and Linux's memory figures only")
@pytest.mark.parametrize("pool", POOLS)
def test_freed_memory_is_kept_then_released(pool):
    script = SCRIPT.format(**POOLS[pool])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    start, kept, released = map(float, done.stdout.split())
    assert kept - start > 200, f"{pool}: 320 MB freed should stay resident while kept ({start:.0f} -> {kept:.0f} MB)"
    assert kept - released > 200, f"{pool}: release_freed_memory should hand it back ({kept:.0f} -> {released:.0f} MB)"
