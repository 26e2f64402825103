"""Shared fixtures: one compile cache per test session, so each spec is built once."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


@pytest.fixture(scope="session")
def hog_cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hogcache")
    os.environ["HOGWILD_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def load_spec(hog_cache_dir):
    """load_spec("svm") or load_spec(text=...): compiled once per session."""
    def load(name=None, text=None, consts=None):
        if name is not None:
            return hogwild_dsl.load(SPECS / f"{name}.hog", consts=consts, cache_dir=hog_cache_dir)
        return hogwild_dsl.load(text=text, consts=consts, cache_dir=hog_cache_dir)
    return load


@pytest.fixture(scope="module")
def compiled(request, load_spec):
    """compiled(name): the module of the test module's own spec table, SPECS[name] (the
    user-objective audits), loaded once per test module."""
    specs, cache = request.module.SPECS, {}

    def get(name):
        if name not in cache:
            cache[name] = load_spec(text=specs[name])
        return cache[name]
    return get


def sparse_rows(n_rows, n_cols, nnz_per_row, seed, noise=0.0):
    """A small random CSR matrix with unit-norm rows, and +-1 labels from a planted w."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for i in range(n_rows):
        c = rng.choice(n_cols, size=min(nnz_per_row, n_cols), replace=False)
        rows += [i] * len(c)
        cols += list(c)
    vals = rng.uniform(0.2, 1.0, size=len(rows))
    X = sp.csr_matrix((vals, (rows, cols)), shape=(n_rows, n_cols))
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1))).ravel()
    X = sp.csr_matrix(sp.diags(1.0 / norms) @ X)
    w_true = rng.normal(size=n_cols)
    y = np.sign(X @ w_true + 1e-9)
    y[y == 0] = 1.0
    y[rng.random(n_rows) < noise] *= -1
    return X, y


def numeric_gradient(t, d):
    """Central differences of t.objective(**d) in every coordinate of every param (each param
    moved in place and put back)."""
    grads = {}
    for k, v in t.params.items():
        g = np.zeros(v.shape)
        flat, gflat = v.reshape(-1), g.reshape(-1)
        for j in range(flat.size):
            old = flat[j]
            e = 1e-5 * max(1.0, abs(old))
            flat[j] = old + e
            up = t.objective(**d)
            flat[j] = old - e
            down = t.objective(**d)
            flat[j] = old
            gflat[j] = (up - down) / (2 * e)
        grads[k] = g
    return grads


def sgd_epoch_against_numeric(mod, d, n_terms, h=1e-8):
    """At a point 3 SGD epochs in: (that point, the move of one more epoch of tiny steps h
    divided by h * n_terms, central differences of objective() there), per param. The two
    agree wherever the objective is smooth and no projection acts."""
    t = mod.Trainer(threads=1, seed=0, epochs=3, step=0.01, optimizer="sgd").fit(**d)
    start = {k: v.copy() for k, v in t.params.items()}
    numeric = numeric_gradient(t, d)
    t2 = mod.Trainer(threads=1, seed=0, epochs=0, step=h, decay=1.0, optimizer="sgd").fit(**d)
    for k in start:
        t2.params[k][...] = start[k]
    t2.epochs = 1
    t2.fit(**d)
    sgd = {k: (start[k] - t2.params[k]) / h / n_terms for k in start}
    return start, sgd, numeric


# ---- helpers the user-objective rounds share (tests/test_user_objectives3.py, 4) ----------

def lg(z):
    """logistic(z) = log(1 + exp(-z)), stably."""
    return np.logaddexp(0, -z)


def sig(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def sparse_X(n, d, seed, density=0.25):
    """Random non-negative CSR rows; every row and every column has an entry."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, random_state=seed, format="csr",
                  data_rvs=lambda k: rng.uniform(0.2, 1, k))
    cols = np.r_[np.arange(d), rng.integers(0, d, n - d)]
    X = X + sp.csr_matrix((np.ones(n), (np.arange(n), cols)), shape=(n, d))
    return sp.csr_matrix(X)


def support(X):
    """The columns where X stores an entry."""
    return np.unique(sp.csr_matrix(X).indices)


def signs(v):
    """np.sign with 0 taken as +1."""
    s = np.sign(v)
    return np.where(s == 0, 1.0, s)


def run_hogwildc(cwd, *args):
    """`hogwildc ARGS` in a child process run in `cwd` (the session's cache: the environment's
    HOGWILD_CACHE_DIR, which hog_cache_dir sets); never a traceback, whatever the exit."""
    env = dict(os.environ, MPLBACKEND="Agg")
    res = subprocess.run([sys.executable, "-m", "hogwild_dsl.cli", *map(str, args)],
                         capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    return res
