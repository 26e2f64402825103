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


# The user-objective audits' helpers live in tests/user_objective_checks.py; these names stay
# importable from here for the audit files that import them from conftest.
from user_objective_checks import (lg, numeric_gradient,  # noqa: E402,F401
                                   sgd_epoch_against_numeric, sig, signs, sparse_X, support)


def run_hogwildc(cwd, *args):
    """`hogwildc ARGS` in a child process run in `cwd` (the session's cache: the environment's
    HOGWILD_CACHE_DIR, which hog_cache_dir sets); never a traceback, whatever the exit."""
    env = dict(os.environ, MPLBACKEND="Agg")
    res = subprocess.run([sys.executable, "-m", "hogwild_dsl.cli", *map(str, args)],
                         capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    return res
