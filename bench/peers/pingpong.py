"""Cache-line ping-pong probe (C via ctypes): tags 2-thread timings with the current
placement of the two vCPUs, "near" (~33 ns hand-off) or "far" (~230 ns).

``pingpong_ns(iters=200000)`` -> mean one-way hand-off latency in ns between two threads
pinned to the first two CPUs this process may use.  ``placement(ns)`` -> "near"/"far".
``probe(iters)`` -> ``{"pingpong_ns": ns, "placement": "near"|"far"}``.
The C library is built on first use into bench/peers/build/ (gcc -O2 -pthread).
"""

from __future__ import annotations

import ctypes
import math
import os
from pathlib import Path

from ._build import shared_library

SRC = Path(__file__).resolve().parent / "pingpong.c"
#: hand-offs below this are "near", above "far" (geometric middle of ~33 and ~230 ns)
NEAR_FAR_THRESHOLD_NS = 90.0

_lib = None


def _load():
    global _lib
    if _lib is None:
        so = shared_library([SRC], "libpingpong.so", "gcc",
                            ["-O2", "-pthread", "-shared", "-fPIC"])
        lib = ctypes.CDLL(str(so))
        lib.pingpong_ns.restype = ctypes.c_double
        lib.pingpong_ns.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_int]
        _lib = lib
    return _lib


def _two_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise RuntimeError(f"ping-pong needs two CPUs, this process may use {cpus}")
    return cpus[0], cpus[1]


def pingpong_ns(iters: int = 200000, cpus: tuple[int, int] | None = None) -> float:
    """One-way cache-line hand-off latency (ns) between two threads pinned to two CPUs
    (default: the first two allowed).  A short warm-up run precedes the timed one."""
    lib = _load()
    a, b = cpus if cpus is not None else _two_cpus()
    lib.pingpong_ns(min(10000, max(1, int(iters) // 10)), a, b)  # warm-up
    ns = lib.pingpong_ns(int(iters), a, b)
    if not (ns > 0 and math.isfinite(ns)):
        raise RuntimeError(f"ping-pong probe failed (returned {ns})")
    return float(ns)


def placement(ns: float) -> str:
    """'near' or 'far' for a measured hand-off latency."""
    return "near" if ns < NEAR_FAR_THRESHOLD_NS else "far"


def probe(iters: int = 200000) -> dict:
    ns = pingpong_ns(iters)
    return {"pingpong_ns": ns, "placement": placement(ns)}


def _cpu_times():
    with open("/proc/stat") as fh:
        f = fh.readline().split()[1:]
    vals = list(map(int, f))
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)   # idle + iowait
    return sum(vals[:8]), idle


def cpu_busy_fraction(interval: float = 0.5) -> float:
    """Fraction of all CPUs' time spent busy during the next ``interval`` seconds (read
    from /proc/stat while this process sleeps): a noise tag for the shared machine
    (0.0 = quiet, 0.5 = one of two CPUs taken by someone else)."""
    import time

    t0, i0 = _cpu_times()
    time.sleep(interval)
    t1, i1 = _cpu_times()
    return 0.0 if t1 == t0 else max(0.0, 1.0 - (i1 - i0) / (t1 - t0))
