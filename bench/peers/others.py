"""Off-the-shelf peers, each timed on numpy/scipy inputs the caller provides.

* ``sklearn_svm(Xtr, ytr, Xte, yte, epochs, alpha)``  scikit-learn SGDClassifier, hinge + l2
* ``surprise_svd(train, test, epochs, rank)``          scikit-surprise SVD (1 thread)
* ``vw_svm(Xtr, ytr, Xte, yte, passes)``               Vowpal Wabbit, hinge loss

Each returns a dict with at least ``seconds`` (training wall time only, data conversion
excluded unless said otherwise) and its quality metric.  When the optional package is
missing the function raises ``RuntimeError`` saying so (``surprise_available()`` /
``vw_available()`` tell beforehand).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ._build import BUILD_DIR


def _pm1(y) -> np.ndarray:
    """Labels as float +-1 (accepts {-1, 1}, {0, 1} or booleans)."""
    y = np.asarray(y)
    if y.dtype == bool:
        return np.where(y, 1.0, -1.0)
    y = y.astype(np.float64)
    return np.where(y > 0, 1.0, -1.0)


# --------------------------------------------------------------------- scikit-learn
def sklearn_svm(Xtr, ytr, Xte, yte, epochs, alpha, random_state=0, **kwargs) -> dict:
    """``SGDClassifier(loss="hinge", penalty="l2", alpha=alpha, max_iter=epochs, tol=None,
    shuffle=True)`` (learning_rate="optimal", the default; extra ``kwargs`` go to the
    estimator).  Returns ``dict(seconds, accuracy, epochs)``: ``seconds`` is ``fit`` only,
    ``accuracy`` on (Xte, yte)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier

    clf = SGDClassifier(loss="hinge", penalty="l2", alpha=alpha, max_iter=int(epochs),
                        tol=None, shuffle=True, random_state=random_state, **kwargs)
    ytr = _pm1(ytr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        clf.fit(Xtr, ytr)
        seconds = time.perf_counter() - t0
    acc = float(np.mean(clf.predict(Xte) == _pm1(yte)))
    return dict(seconds=seconds, accuracy=acc, epochs=int(clf.n_iter_))


# --------------------------------------------------------------------- Surprise
def surprise_available() -> tuple[bool, str]:
    try:
        import surprise  # noqa: F401
        return True, ""
    except Exception as exc:  # noqa: BLE001
        return False, f"scikit-surprise is not importable here ({type(exc).__name__}: {exc})"


def _triples(mat):
    if isinstance(mat, tuple):
        r, c, v = mat
        return np.asarray(r), np.asarray(c), np.asarray(v, dtype=np.float64)
    coo = mat.tocoo()
    return coo.row, coo.col, coo.data.astype(np.float64)


def _surprise_trainset(rows, cols, vals, rating_scale):
    from collections import defaultdict

    from surprise import Trainset

    users, ui = np.unique(rows, return_inverse=True)
    items, ii = np.unique(cols, return_inverse=True)
    ur, ir = defaultdict(list), defaultdict(list)
    by_u = np.argsort(ui, kind="stable")
    su, si, sv = ui[by_u], ii[by_u], vals[by_u]
    cuts = np.flatnonzero(np.diff(su)) + 1
    for uu, it, vv in zip(np.split(su, cuts), np.split(si, cuts), np.split(sv, cuts)):
        ur[int(uu[0])] = list(zip(it.tolist(), vv.tolist()))
    by_i = np.argsort(ii, kind="stable")
    si2, su2, sv2 = ii[by_i], ui[by_i], vals[by_i]
    cuts = np.flatnonzero(np.diff(si2)) + 1
    for it, uu, vv in zip(np.split(si2, cuts), np.split(su2, cuts), np.split(sv2, cuts)):
        ir[int(it[0])] = list(zip(uu.tolist(), vv.tolist()))
    ts = Trainset(ur, ir, len(users), len(items), len(vals), rating_scale,
                  {int(u): k for k, u in enumerate(users.tolist())},
                  {int(i): k for k, i in enumerate(items.tolist())})
    return ts, users, items


def surprise_svd(train, test, epochs, rank, biased=True, lr_all=0.005, reg_all=0.02,
                 random_state=0, rating_scale=None, return_algo=False) -> dict:
    """scikit-surprise ``SVD(n_factors=rank, n_epochs=epochs, biased, lr_all, reg_all)``
    (Surprise's defaults otherwise) on ``train`` (scipy sparse or (rows, cols, vals)).

    Returns ``dict(seconds, rmse, ns_per_rating_epoch, build_seconds)``: ``seconds`` is
    ``fit`` only (single-threaded); ``build_seconds`` the Trainset construction.  The test
    RMSE reproduces ``SVD.predict`` (Surprise's estimate, default prediction for unknown
    users/items, clipping to ``rating_scale``, default the train min/max) with numpy
    instead of Surprise's per-rating Python loop.  ``return_algo=True`` adds the fitted
    ``algo`` (raw ids = the input's row / column numbers) and per-rating ``predictions``."""
    ok, why = surprise_available()
    if not ok:
        raise RuntimeError(why + "; install it with `.venv/bin/pip install scikit-surprise`")
    from surprise import SVD

    r, c, v = _triples(train)
    if rating_scale is None:
        rating_scale = (float(v.min()), float(v.max()))
    t0 = time.perf_counter()
    ts, users, items = _surprise_trainset(r, c, v, rating_scale)
    build = time.perf_counter() - t0
    algo = SVD(n_factors=int(rank), n_epochs=int(epochs), biased=biased, lr_all=lr_all,
               reg_all=reg_all, random_state=random_state)
    t0 = time.perf_counter()
    algo.fit(ts)
    seconds = time.perf_counter() - t0

    tr_, tc_, tv_ = _triples(test)
    pu = np.clip(np.searchsorted(users, tr_), 0, len(users) - 1)
    qi = np.clip(np.searchsorted(items, tc_), 0, len(items) - 1)
    ku = users[pu] == tr_
    ki = items[qi] == tc_
    both = ku & ki
    dot = np.einsum("ij,ij->i", algo.pu[pu], algo.qi[qi])
    mean = ts.global_mean
    if biased:
        est = mean + np.where(ku, algo.bu[pu], 0.0) + np.where(ki, algo.bi[qi], 0.0) \
            + np.where(both, dot, 0.0)
    else:
        est = np.where(both, dot, mean)
    est = np.clip(est, rating_scale[0], rating_scale[1])
    rmse = float(np.sqrt(np.mean((est - tv_) ** 2)))
    out = dict(seconds=seconds, rmse=rmse, build_seconds=build,
               ns_per_rating_epoch=seconds / (len(v) * int(epochs)) * 1e9)
    if return_algo:
        out.update(algo=algo, predictions=est)
    return out


# --------------------------------------------------------------------- Vowpal Wabbit
def vw_available() -> tuple[bool, str]:
    try:
        from vowpalwabbit import Workspace  # noqa: F401
        return True, ""
    except Exception as exc:  # noqa: BLE001
        return False, f"vowpalwabbit is not importable here ({type(exc).__name__}: {exc})"


def vw_write(X, y, path) -> float:
    """Write CSR ``X`` with labels ``y`` (+-1) in VW text format; returns seconds taken.
    Feature j is written as the name ``j`` in the default namespace."""
    t0 = time.perf_counter()
    X = X.tocsr()
    y = _pm1(y)
    indptr, indices, data = X.indptr, X.indices, X.data
    with open(path, "w", buffering=1 << 22) as fh:
        lines = []
        for i in range(X.shape[0]):
            a, b = indptr[i], indptr[i + 1]
            inter = np.empty(2 * (b - a), dtype=object)
            inter[0::2] = indices[a:b].tolist()
            inter[1::2] = data[a:b].tolist()
            lines.append(("%d |" % y[i]) + (" %d:%.9g" * (b - a)) % tuple(inter) + "\n")
            if len(lines) >= 4096:
                fh.writelines(lines)
                lines.clear()
        fh.writelines(lines)
    return time.perf_counter() - t0


def vw_svm(Xtr, ytr, Xte, yte, passes, l2=0.0, bits=20, extra="", workdir=None,
           keep_files=False, files=None) -> dict:
    """Vowpal Wabbit linear model with ``--loss_function hinge``, ``--passes passes``
    (with a cache file and ``--holdout_off``, so every pass runs), optional ``--l2``,
    VW's default (adaptive, normalised, invariant) SGD and learning rate.  VW does not
    reshuffle between passes.

    Returns ``dict(seconds, accuracy, write_seconds, test_seconds)``: ``seconds`` is the
    training run over the text file (VW's parsing and cache writing in pass 1 included),
    ``write_seconds`` the Python-side writing of the text files (not included).
    ``files``: (train, test) text files already written with ``vw_write`` (then X/y unused)."""
    ok, why = vw_available()
    if not ok:
        raise RuntimeError(why + "; install it with `.venv/bin/pip install vowpalwabbit`")
    from vowpalwabbit import Workspace

    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    wd = Path(tempfile.mkdtemp(prefix="vw-", dir=workdir or BUILD_DIR))
    try:
        if files is None:
            trf, tef = wd / "train.vw", wd / "test.vw"
            write_s = vw_write(Xtr, ytr, trf) + vw_write(Xte, yte, tef)
        else:
            (trf, tef), write_s = files, 0.0
        model, preds, cache = wd / "model.vw", wd / "preds.txt", wd / "train.cache"
        args = (f"-d {trf} --loss_function hinge --passes {int(passes)} --holdout_off "
                f"-k --cache_file {cache} -b {int(bits)} -f {model} --quiet")
        if l2:
            args += f" --l2 {l2:.10g}"
        if extra:
            args += " " + extra
        t0 = time.perf_counter()
        vw = Workspace(args)
        vw.finish()
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        vt = Workspace(f"-t -i {model} -d {tef} -p {preds} --quiet")
        vt.finish()
        test_s = time.perf_counter() - t0
        scores = np.loadtxt(preds, ndmin=1)
        acc = float(np.mean(np.where(scores >= 0, 1.0, -1.0) == _pm1(yte)))
        return dict(seconds=seconds, accuracy=acc, write_seconds=write_s,
                    test_seconds=test_s, passes=int(passes))
    finally:
        if not keep_files:
            shutil.rmtree(wd, ignore_errors=True)
