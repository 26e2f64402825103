"""Loader and thin wrappers for the hand-written Cython Hogwild kernels (``handwritten.pyx``).

The pyx is compiled on first use with ``cython`` + ``gcc -O3 -march=native -fopenmp
-shared -fPIC`` straight into ``bench/peers/build/handwritten-<hash>/`` (cached by a hash
of the pyx, the flags and the Cython/Python versions).

Kernels (all update the model in place and return None; ``threads`` >= 1):

* ``svm_epoch(indptr, indices, data, y, w, deg, order, step, lam, threads=1)``
* ``svm_epoch_chunks(indptr, indices, data, y, w, deg, chunk_order, chunk, step, lam, threads=1)``
* ``mf_epoch(rows, cols, vals, L, R, order, step, lam, threads=1)``
* ``mf_epoch_chunks(rows, cols, vals, L, R, chunk_order, chunk, step, lam, threads=1)``

dtypes: indptr/order/chunk_order int64, indices/rows/cols int32, everything else float64,
all C-contiguous (the wrappers convert read-only inputs when needed, but never the
model arrays ``w``, ``L``, ``R``, which must already be float64 C-contiguous).

Helpers (numpy): ``rmse(rows, cols, vals, L, R)``, ``svm_accuracy(X, y, w)``,
``svm_degrees(X)`` (the ``deg`` vector), ``chunk_count(n, chunk)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._build import cython_extension

PYX = Path(__file__).resolve().parent / "handwritten.pyx"
_MODNAME = "_peers_handwritten"
_ext = None


def load():
    """Compile (first use only) and import the extension module."""
    global _ext
    if _ext is None:
        _ext = cython_extension(PYX, _MODNAME)
    return _ext


def _ro(a, dtype):
    return np.ascontiguousarray(a, dtype=dtype)


def _model(a, name, ndim):
    if not (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.ndim == ndim
            and a.flags.c_contiguous and a.flags.writeable):
        raise TypeError(f"{name} must be a writeable C-contiguous float64 array "
                        f"with {ndim} dimension(s) (it is updated in place)")
    return a


def svm_epoch(indptr, indices, data, y, w, deg, order, step, lam, threads=1):
    """One Hogwild epoch of hinge-loss SGD with l2(lam) split by feature degree.

    Per row i in ``order``: m = y_i <x_i, w>; for j in row: g = (-y_i x_ij if m < 1
    else 0) + 2 lam w_j / deg_j; w_j -= step g.  ``order`` is split into ``threads``
    contiguous runs (OpenMP static schedule)."""
    load().svm_epoch(_ro(indptr, np.int64), _ro(indices, np.int32), _ro(data, np.float64),
                     _ro(y, np.float64), _model(w, "w", 1), _ro(deg, np.float64),
                     _ro(order, np.int64), float(step), float(lam), int(threads))


def svm_epoch_chunks(indptr, indices, data, y, w, deg, chunk_order, chunk, step, lam,
                     threads=1):
    """Like ``svm_epoch``; rows in stored order, in chunks of ``chunk`` consecutive rows,
    the chunks visited in ``chunk_order`` (a permutation of range(chunk_count(n, chunk)))."""
    load().svm_epoch_chunks(_ro(indptr, np.int64), _ro(indices, np.int32),
                            _ro(data, np.float64), _ro(y, np.float64), _model(w, "w", 1),
                            _ro(deg, np.float64), _ro(chunk_order, np.int64), int(chunk),
                            float(step), float(lam), int(threads))


def mf_epoch(rows, cols, vals, L, R, order, step, lam, threads=1):
    """One Hogwild epoch of MF SGD.  Per rating e in ``order``: err = <L_u, R_v> - r;
    L_u -= step (2 err R_v + 2 lam L_u); R_v -= step (2 err L_u + 2 lam R_v) (old values)."""
    load().mf_epoch(_ro(rows, np.int32), _ro(cols, np.int32), _ro(vals, np.float64),
                    _model(L, "L", 2), _model(R, "R", 2), _ro(order, np.int64),
                    float(step), float(lam), int(threads))


def mf_epoch_chunks(rows, cols, vals, L, R, chunk_order, chunk, step, lam, threads=1):
    """Like ``mf_epoch``; ratings in stored order (store them sorted by user), in chunks
    of ``chunk`` consecutive ratings, the chunks visited in ``chunk_order``."""
    load().mf_epoch_chunks(_ro(rows, np.int32), _ro(cols, np.int32), _ro(vals, np.float64),
                           _model(L, "L", 2), _model(R, "R", 2), _ro(chunk_order, np.int64),
                           int(chunk), float(step), float(lam), int(threads))


def chunk_count(n: int, chunk: int) -> int:
    """Number of chunks of ``chunk`` consecutive items covering ``n`` items."""
    return -(-int(n) // int(chunk))


def svm_degrees(X) -> np.ndarray:
    """deg_j = number of rows of CSR ``X`` that touch feature j (float64)."""
    return np.bincount(np.asarray(X.indices), minlength=X.shape[1]).astype(np.float64)


def rmse(rows, cols, vals, L, R, batch: int = 1 << 20) -> float:
    """Root mean squared error of <L_u, R_v> against ``vals`` (numpy, batched)."""
    rows = np.asarray(rows)
    cols = np.asarray(cols)
    vals = np.asarray(vals, dtype=np.float64)
    n = vals.shape[0]
    if n == 0:
        return 0.0
    sse = 0.0
    for a in range(0, n, batch):
        b = min(n, a + batch)
        pred = np.einsum("ij,ij->i", L[rows[a:b]], R[cols[a:b]])
        d = pred - vals[a:b]
        sse += float(d @ d)
    return float(np.sqrt(sse / n))


def svm_accuracy(X, y, w) -> float:
    """Fraction of rows with sign(<x_i, w>) == y_i (a score of 0 counts as +1)."""
    s = X @ np.asarray(w, dtype=np.float64)
    pred = np.where(s >= 0, 1.0, -1.0)
    return float(np.mean(pred == np.asarray(y, dtype=np.float64)))
