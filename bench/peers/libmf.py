"""LIBMF (Chin, Zhuang, Juan, Lin) as a yardstick, called through ctypes.

Source: the PyPI ``libmf`` sdist (0.9.2 when written), fetched on first use with
``pip download --no-binary :all: --no-deps libmf -d bench/peers/build/`` and unpacked
there; it ships ``src_cpp/mf.h``, ``src_cpp/mf.cpp`` (LIBMF's C++ core, C linkage inside
``extern "C" { namespace mf {``) and ``src_cpp/libmf_interface.cpp`` (the binding's own
C entry points ``fit_interface`` etc. that take a float (u, v, r) triple array).  We call
LIBMF's own C API (``mf_get_default_param``, ``mf_train``, ``calc_rmse``,
``mf_destroy_model``) on an ``mf_problem`` built straight from numpy, and compile both
files with upstream's Makefile flags::

    g++ -O3 -march=native -fopenmp -DUSESSE -DUSEOMP -pthread -std=c++11 -shared -fPIC

into ``bench/peers/build/libmf_fast.so``.

NOTE what the sdist's own build lacks: its setup.py builds the extension with only
``extra_compile_args=['-std=c++11']`` on top of Python's default CFLAGS (-O2 or so, no
-march), and defines neither ``USESSE``/``USEAVX`` nor ``USEOMP`` and passes no
``-fopenmp``: the ``pip install libmf`` build therefore runs LIBMF's scalar fallback
kernels (no SSE/AVX intrinsics) and its OpenMP-parallel helpers (data statistics,
scaling, loss evaluation, ``calc_rmse``) single-threaded.  The SGD itself is threaded
with std::thread either way.

Model: float32, l2 regularisation ``lambda_p2 = lambda_q2 = lam`` (l1 disabled), fixed
learning rate ``eta`` with LIBMF's per-coordinate adaptive (AdaGrad-style) scaling,
``nr_bins`` left at LIBMF's default (26: a 26 x 26 grid of blocks), ``do_nmf`` false,
quiet.  LIBMF seeds itself (``srand(0)`` in its random maps, default-seeded engines), so
runs are deterministic at 1 thread whatever ``seed`` says; ``seed`` is recorded only.

LIBMF does not expose per-iteration timing (``quiet=False`` prints losses, not times),
so ``libmf_train`` times the whole ``mf_train`` call (copy, shuffle, grid, scale, all
iterations) and ``libmf_time`` estimates the per-iteration cost by difference of an
``iters`` run and a 1-iteration run.
"""

from __future__ import annotations

import ctypes
import glob
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from ._build import BUILD_DIR, _locked, shared_library

LIBMF_FLAGS = ["-O3", "-march=native", "-fopenmp", "-DUSESSE", "-DUSEOMP", "-pthread",
               "-std=c++11", "-shared", "-fPIC", "-w"]
SO_NAME = "libmf_fast.so"


# ------------------------------------------------------------------ ctypes mirrors of mf.h
class MFNode(ctypes.Structure):
    _fields_ = [("u", ctypes.c_int), ("v", ctypes.c_int), ("r", ctypes.c_float)]


class MFProblem(ctypes.Structure):
    _fields_ = [("m", ctypes.c_int), ("n", ctypes.c_int), ("nnz", ctypes.c_longlong),
                ("R", ctypes.POINTER(MFNode))]


class MFParameter(ctypes.Structure):
    _fields_ = [("fun", ctypes.c_int), ("k", ctypes.c_int), ("nr_threads", ctypes.c_int),
                ("nr_bins", ctypes.c_int), ("nr_iters", ctypes.c_int),
                ("lambda_p1", ctypes.c_float), ("lambda_p2", ctypes.c_float),
                ("lambda_q1", ctypes.c_float), ("lambda_q2", ctypes.c_float),
                ("eta", ctypes.c_float), ("do_nmf", ctypes.c_bool),
                ("quiet", ctypes.c_bool), ("copy_data", ctypes.c_bool)]


class MFModel(ctypes.Structure):
    _fields_ = [("fun", ctypes.c_int), ("m", ctypes.c_int), ("n", ctypes.c_int),
                ("k", ctypes.c_int), ("b", ctypes.c_float),
                ("P", ctypes.POINTER(ctypes.c_float)), ("Q", ctypes.POINTER(ctypes.c_float))]


NODE_DTYPE = np.dtype([("u", np.int32), ("v", np.int32), ("r", np.float32)])
assert NODE_DTYPE.itemsize == ctypes.sizeof(MFNode) == 12
P_L2_MFR = 0


class LibmfUnavailable(RuntimeError):
    """The libmf sdist could not be fetched or built here."""


# ------------------------------------------------------------------ fetch + build
def _source_dir() -> Path:
    """Directory holding mf.h / mf.cpp / libmf_interface.cpp; downloads the sdist once."""
    found = sorted(glob.glob(str(BUILD_DIR / "libmf-*" / "src_cpp" / "mf.cpp")))
    if found:
        return Path(found[-1]).parent
    with _locked("libmf-sdist"):
        found = sorted(glob.glob(str(BUILD_DIR / "libmf-*" / "src_cpp" / "mf.cpp")))
        if found:
            return Path(found[-1]).parent
        tars = sorted(glob.glob(str(BUILD_DIR / "libmf-*.tar.gz")))
        if not tars:
            res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary",
                                  ":all:", "--no-deps", "libmf", "-d", str(BUILD_DIR)],
                                 capture_output=True, text=True)
            tars = sorted(glob.glob(str(BUILD_DIR / "libmf-*.tar.gz")))
            if res.returncode != 0 or not tars:
                raise LibmfUnavailable("could not download the libmf sdist: "
                                       + (res.stderr or res.stdout)[-2000:])
        with tarfile.open(tars[-1]) as tf:
            tf.extractall(BUILD_DIR, filter="data")
        found = sorted(glob.glob(str(BUILD_DIR / "libmf-*" / "src_cpp" / "mf.cpp")))
        if not found:
            raise LibmfUnavailable(f"no src_cpp/mf.cpp in {tars[-1]}")
        return Path(found[-1]).parent


_lib = None


def load():
    """Fetch (once), build (once per source/flag change) and load libmf_fast.so."""
    global _lib
    if _lib is not None:
        return _lib
    src = _source_dir()
    sources = [src / "mf.cpp"] + ([src / "libmf_interface.cpp"]
                                  if (src / "libmf_interface.cpp").exists() else [])
    so = shared_library(sources, SO_NAME, "g++", ["-I", str(src), *LIBMF_FLAGS],
                        extra_key=[(src / "mf.h").read_bytes()])
    lib = ctypes.CDLL(str(so))
    lib.mf_get_default_param.restype = MFParameter
    lib.mf_get_default_param.argtypes = []
    lib.mf_train.restype = ctypes.POINTER(MFModel)
    lib.mf_train.argtypes = [ctypes.POINTER(MFProblem), MFParameter]
    lib.calc_rmse.restype = ctypes.c_double
    lib.calc_rmse.argtypes = [ctypes.POINTER(MFProblem), ctypes.POINTER(MFModel)]
    lib.mf_destroy_model.restype = None
    lib.mf_destroy_model.argtypes = [ctypes.POINTER(ctypes.POINTER(MFModel))]
    lib.mf_predict.restype = ctypes.c_float
    lib.mf_predict.argtypes = [ctypes.POINTER(MFModel), ctypes.c_int, ctypes.c_int]
    _lib = lib
    return lib


def available() -> tuple[bool, str]:
    """(True, '') when LIBMF can be fetched/built/loaded here, else (False, reason)."""
    try:
        load()
        return True, ""
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return False, f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------ data conversion
def _triples(mat):
    """(rows, cols, vals) from a scipy sparse matrix or a (rows, cols, vals) tuple."""
    if isinstance(mat, tuple):
        rows, cols, vals = mat
        shape = None
    else:
        coo = mat.tocoo()
        rows, cols, vals, shape = coo.row, coo.col, coo.data, coo.shape
    return np.asarray(rows), np.asarray(cols), np.asarray(vals), shape


def _nodes(mat):
    rows, cols, vals, shape = _triples(mat)
    nodes = np.empty(len(vals), dtype=NODE_DTYPE)
    nodes["u"], nodes["v"], nodes["r"] = rows, cols, vals
    if shape is None:
        shape = (int(rows.max()) + 1 if len(rows) else 0,
                 int(cols.max()) + 1 if len(cols) else 0)
    return nodes, shape


def _problem(nodes, shape):
    prob = MFProblem()
    prob.m, prob.n = int(shape[0]), int(shape[1])
    prob.nnz = len(nodes)
    prob.R = nodes.ctypes.data_as(ctypes.POINTER(MFNode))
    return prob


# ------------------------------------------------------------------ public API
class LibmfModel:
    """Owns an ``mf_model*`` (freed with ``mf_destroy_model``).  ``seconds``: wall time
    of the ``mf_train`` call; ``params``: what it was trained with."""

    def __init__(self, ptr, seconds: float, params: dict):
        self._ptr = ptr
        self.seconds = seconds
        self.params = params

    @property
    def ptr(self):
        if self._ptr is None:
            raise ValueError("model already freed")
        return self._ptr

    @property
    def shape(self):
        c = self.ptr.contents
        return c.m, c.n, c.k

    def factors(self):
        """(P (m, k), Q (n, k)) float32 copies of the user and item factors."""
        c = self.ptr.contents
        P = np.ctypeslib.as_array(c.P, shape=(c.m, c.k)).copy()
        Q = np.ctypeslib.as_array(c.Q, shape=(c.n, c.k)).copy()
        return P, Q

    def free(self):
        if self._ptr is not None and _lib is not None:
            _lib.mf_destroy_model(ctypes.byref(self._ptr))
        self._ptr = None

    def __del__(self):
        try:
            self.free()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _param(k, iters, threads, lam, eta):
    lib = load()
    p = lib.mf_get_default_param()
    p.fun = P_L2_MFR
    p.k = int(k)
    p.nr_threads = int(threads)
    p.nr_iters = int(iters)
    p.lambda_p1 = p.lambda_q1 = 0.0
    p.lambda_p2 = p.lambda_q2 = float(lam)
    p.eta = float(eta)
    p.do_nmf = False
    p.quiet = True
    p.copy_data = True
    return p  # nr_bins: LIBMF's default


def libmf_train(train, k=20, iters=20, threads=2, lam=0.02, eta=0.1, seed=0,
                shape=None) -> LibmfModel:
    """Train LIBMF (real-valued MF, squared loss, l2 = ``lam``) on ``train`` (scipy
    sparse COO/CSR or a (rows, cols, vals) tuple).  Returns a ``LibmfModel``;
    ``model.seconds`` is the wall time of ``mf_train`` (conversion excluded)."""
    lib = load()
    nodes, shp = _nodes(train)
    if shape is not None:
        shp = shape
    prob = _problem(nodes, shp)
    param = _param(k, iters, threads, lam, eta)
    t0 = time.perf_counter()
    ptr = lib.mf_train(ctypes.byref(prob), param)
    seconds = time.perf_counter() - t0
    if not ptr:
        raise RuntimeError("mf_train returned NULL (invalid parameters?)")
    return LibmfModel(ptr, seconds, dict(k=k, iters=iters, threads=threads, lam=lam,
                                         eta=eta, seed=seed, nr_bins=param.nr_bins,
                                         nnz=len(nodes)))


def libmf_rmse(model: LibmfModel, test) -> float:
    """LIBMF's ``calc_rmse`` of ``model`` on ``test`` (same input forms as train)."""
    lib = load()
    nodes, shp = _nodes(test)
    prob = _problem(nodes, shp)
    return float(lib.calc_rmse(ctypes.byref(prob), model.ptr))


def libmf_time(train, k=20, iters=20, threads=2, lam=0.02, eta=0.1, seed=0, test=None):
    """Time LIBMF.  LIBMF exposes no per-iteration timer, so this times the whole
    ``mf_train`` for ``iters`` iterations and for 1 iteration and returns::

        seconds           whole train, iters iterations
        seconds_1iter     whole train, 1 iteration (setup + one iteration)
        per_iter_s        (seconds - seconds_1iter) / (iters - 1)   (nan if iters == 1)
        ns_per_rating_iter   per_iter_s / nnz in ns
        ns_per_rating_whole  seconds / (iters * nnz) in ns
        rmse              test RMSE of the iters-iteration model (if ``test`` given)
    """
    m1 = libmf_train(train, k, 1, threads, lam, eta, seed)
    s1 = m1.seconds
    nnz = m1.params["nnz"]
    m1.free()
    m = libmf_train(train, k, iters, threads, lam, eta, seed)
    out = dict(seconds=m.seconds, seconds_1iter=s1, iters=iters, threads=threads, nnz=nnz)
    out["per_iter_s"] = (m.seconds - s1) / (iters - 1) if iters > 1 else float("nan")
    out["ns_per_rating_iter"] = out["per_iter_s"] / nnz * 1e9
    out["ns_per_rating_whole"] = m.seconds / (iters * nnz) * 1e9
    if test is not None:
        out["rmse"] = libmf_rmse(m, test)
    m.free()
    return out
