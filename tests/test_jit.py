"""The kernels' on-disk cache goes stale with any kernel module, not only the function's own file."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from sim import dynamics, followup, reasons
from sim.jit import KERNEL_MODULES, KernelCacheLocator, fingerprint

SIM = Path(__file__).resolve().parents[1] / "sim"

# dynamics._attribute calls reasons.shapley_shares_into: its result depends on reasons.py's code.
ATTRIBUTE = textwrap.dedent(
    """
    import numpy as np
    from sim import dynamics, reasons
    terms = np.array([0.3, 0.0, 0.5, 0.2, 0.4, 0.1, 0.0])
    out = np.empty(len(reasons.REASONS))
    dynamics._attribute(-3.0, terms, np.empty(7), reasons.shapley_scratch(7), 0.1, 0.2, 0.3, 0.4, out)
    print(repr(out.tolist()))
    """
)


def _kernels(module):
    return [v for v in vars(module).values() if hasattr(v, "py_func") and hasattr(v, "_cache")]


def test_every_kernel_is_cached_under_the_kernel_modules_key():
    kernels = [k for m in (dynamics, followup, reasons) for k in _kernels(m)]
    assert len(kernels) >= 10, "the kernel modules' compiled functions should all be found"
    for k in kernels:
        locator = k._cache._impl._locator
        assert isinstance(locator, KernelCacheLocator), f"{k.py_func.__name__} is cached on its own file only"
        assert locator.get_source_stamp()[1] == fingerprint(), "the key should carry the kernel modules' digest"


def test_the_digest_changes_with_any_kernel_module(tmp_path):
    for name in KERNEL_MODULES:
        shutil.copy(SIM / name, tmp_path / name)
    before = fingerprint(tmp_path)
    for name in KERNEL_MODULES:
        path = tmp_path / name
        text = path.read_text()
        path.write_text(text + "\n# edited\n")
        assert fingerprint(tmp_path) != before, f"an edit of {name} should change every kernel's cache key"
        path.write_text(text)
    assert fingerprint(tmp_path) == before, "the same contents should give the same key"


def test_a_kernel_runs_the_new_code_of_a_module_it_calls(tmp_path):
    """Compile dynamics._attribute into the cache, edit reasons.py only: the next process runs the edit."""
    shutil.copytree(SIM, tmp_path / "sim", ignore=shutil.ignore_patterns("__pycache__"))

    def attribute() -> str:
        done = subprocess.run(
            [sys.executable, "-c", ATTRIBUTE], cwd=tmp_path, capture_output=True, text=True, check=True
        )
        return done.stdout

    first = attribute()
    assert attribute() == first, "the same code should give the same shares from the cache"
    reasons_py = tmp_path / "sim" / "reasons.py"
    old = "return 1.0 / (1.0 + np.exp(-x))"
    assert old in reasons_py.read_text(), "the test edits reasons._expit"
    reasons_py.write_text(reasons_py.read_text().replace(old, "return 1.0 / (1.0 + np.exp(-2.0 * x))"))
    assert attribute() != first, "dynamics._attribute should be compiled again when reasons.py changes"
