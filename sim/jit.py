"""The kernels' compiler: numba's ``njit`` with an on-disk cache that goes stale with any kernel module.

numba keys a cached function on its own source file only: a change to a function or a constant in
another file is not seen (numba's documentation, "Notes on Caching", cache invalidation). The week
kernel of sim/dynamics.py calls sim/reasons.py's functions and reads its constants, and
sim/followup.py reads sim/dynamics.py's. Edit reasons.py alone and the kernel compiled before goes
on running the old code from its cache, silently: a change of results that no source explains.

So every kernel's cache here is keyed on the contents of all the kernel modules together
(:data:`KERNEL_MODULES`): change any of them and every kernel compiles again, once. Where numba
puts the cache is unchanged (``__pycache__`` beside the module, ``NUMBA_CACHE_DIR`` if set, the
user's cache directory when the package's is read-only).

numba has no public way to choose a function's cache key; this puts a locator at the head of the
list numba consults (``_locator_classes`` of numba's cache implementation: ``CacheImpl`` from numba
0.68, ``_CacheImpl`` before), and it answers only for functions defined in the kernel modules.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from numba import config, njit
from numba.core import caching

_IMPL = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # the name before numba 0.68

HERE = Path(__file__).resolve().parent
KERNEL_MODULES = ("dynamics.py", "followup.py", "reasons.py")
"""The modules whose compiled functions call one another or read one another's constants."""


def fingerprint(folder: Path = HERE) -> bytes:
    """A digest of the kernel modules' contents in ``folder``."""
    stats = [(folder / name, (folder / name).stat()) for name in KERNEL_MODULES]
    return _digest(tuple((str(path), st.st_mtime_ns, st.st_size) for path, st in stats))


@functools.cache  # keyed on the files' times and sizes, so an edit made while a process runs is seen
def _digest(stamps: tuple[tuple[str, int, int], ...]) -> bytes:
    digest = hashlib.sha256()
    for path, _, _ in stamps:
        digest.update(Path(path).read_bytes())
    return digest.digest()


class KernelCacheLocator(caching._CacheLocator):
    """numba's own choice of cache place for a kernel, with the kernel modules' digest in its key."""

    def __init__(self, inner: caching._CacheLocator):
        self._inner = inner

    def ensure_cache_path(self) -> None:
        """Create the cache folder, as numba's locator would."""
        self._inner.ensure_cache_path()

    def get_cache_path(self) -> str:
        """The folder numba's locator chose."""
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        """The stamp numba gives the function's own file, and the digest of every kernel module."""
        return self._inner.get_source_stamp(), fingerprint()

    def get_disambiguator(self) -> str:
        """The disambiguator numba gives the function: its line."""
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        """For a function of a kernel module, numba's first locator that takes it, wrapped; else None."""
        path = Path(py_file).resolve()
        if path.parent != HERE or path.name not in KERNEL_MODULES:
            return None  # not ours: numba's own locators decide
        try:
            fingerprint()
        except OSError:  # sources not on disk (a zip or a frozen application): numba's own locators decide
            return None
        for other in _IMPL._locator_classes:
            inner = None if other is cls else other.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner)
        return None


if KernelCacheLocator not in _IMPL._locator_classes:
    _IMPL._locator_classes.insert(0, KernelCacheLocator)


def kernel(**options):
    """``numba.njit(cache=True, **options)``, cached under the key of every kernel module (module docstring).

    With ``NUMBA_CACHE_LOCATOR_CLASSES`` set, numba consults only the locators it names, never this
    one; the kernels are then compiled in every process rather than risk a stale cache.
    """
    return njit(cache=not getattr(config, "CACHE_LOCATOR_CLASSES", ""), **options)
