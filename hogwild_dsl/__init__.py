"""hogwild-dsl: compile a .hog spec of a sparse objective into a lock-free multi-core SGD trainer.

Pipeline (one module per stage): parse -> check -> derive -> lower -> emit -> build -> load.
"""
__version__ = "0.1.0"

import os as _os

# OpenMP's idle threads sleep instead of spinning, unless the user chose otherwise: libgomp
# reads this once, when the first kernel loads it. Spinning threads take the cores that the
# threads doing the work need on a machine that is also running other programs: on a 2-core
# VM with one core busy elsewhere, a 15,000-row SVM fit at 2 threads took 0.26-0.30 s with
# spinning and 0.093 s without (0.085 s at 1 thread); 400,000 rows, 0.26-0.28 s against
# 0.13-0.25 s (docs/api.md, the estimators' **Threads**).
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from .errors import CompileError, DataError, DivergenceError, HogwildError, SpecError
from .check import check as _check_stage   # loads the submodule first: `check` below wins


def check(text: str, consts: dict | None = None):
    """Parse and check spec text; return the typed IR (raises SpecError)."""
    return _check_stage(text, consts)


def load(path=None, *, text=None, consts=None, cache_dir=None, dtype="float64"):
    """Parse, check, generate, compile (cached) and import a spec; returns the module.
    `path` is a .hog file or a shipped spec's name: `load("svm")`. `dtype="float32"` stores
    params, data values and optimizer state in single precision (half the memory)."""
    from .jit import load as _load
    return _load(path, text=text, consts=consts, cache_dir=cache_dir, dtype=dtype)


__all__ = ["check", "load", "HogwildError", "SpecError", "DataError", "CompileError",
           "DivergenceError", "__version__"]
