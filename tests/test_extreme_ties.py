"""max(v) / min(v) of a vector at a tie (issue 14): one weight shared among the tied
components, so the weights add up to 1 (a subgradient).

Ties are common at a zero init: a Crammer-Singer term max(z + D[i]) - z[y[i]] at W = 0 ties
every class but the label. Each expected step is computed here in numpy from the rule
d max(v) / d v[k] = [v[k] attains the max] / (number of components that attain it).
"""
import re

import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from hogwild_dsl.interp import Interpreter
from hogwild_dsl.lower import lower

SYNCS = ("hogwild", "atomic", "lock")

CRAMMER_SINGER = """
model ties_cs
dim example, feature, class
data X[example, feature] : sparse
data y[example] : index(class)
data D[example, class] : dense
param W[feature, class] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j])
    loss max(z + D[i]) - z[y[i]]
    reg l2(0.5) on W[X[i]]
    predict argmax(z)
"""

MIN_OF_A_VECTOR = """
model ties_min
dim example, feature, class
data X[example, feature] : sparse
data D[example, class] : dense
param W[feature, class] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j])
    loss 1 - min(z + D[i])
"""

# a max per nonzero of a row: the vector V[j] has two free loops (the nonzero and its own)
MAX_PER_NONZERO = """
model ties_rowmax
dim example, feature
const k = 4
data X[example, feature] : sparse
data C[feature, k] : dense
param V[feature, k] = 0
for i in example:
    loss sum(j in X[i]: X[i, j] * max(V[j] + C[j]))
"""


def shares(v, extreme=np.max):
    """The subgradient weights of max(v) (or min) along the last axis: 1/n on the n ties."""
    attains = (v == extreme(v, axis=-1, keepdims=True)).astype(float)
    return attains / attains.sum(axis=-1, keepdims=True)


def one_row(cols=(0, 2, 3), vals=(0.5, -1.0, 2.0), features=5):
    return sp.csr_matrix((np.array(vals), (np.zeros(len(cols), int), np.array(cols))),
                         shape=(1, features))


def one_step(mod, sync, step, **data):
    t = mod.Trainer(epochs=1, step=step, decay=1.0, sync=sync, order="stored", threads=1)
    t.fit(**data)
    return t


@pytest.mark.parametrize("sync", SYNCS)
def test_crammer_singer_first_step_at_zero_shares_the_tied_classes(load_spec, sync):
    X, y, K, step = one_row(), np.array([2]), 4, 0.1
    D = 1.0 - np.eye(K)[y]                      # classes 0, 1, 3 tie at 1
    t = one_step(load_spec(text=CRAMMER_SINGER), sync, step, X=X, y=y, D=D)
    g_z = shares(D) - np.eye(K)[y]              # z = 0 at W = 0; the reg's gradient is 0
    want = -step * np.outer(X.toarray()[0], g_z[0])
    assert np.allclose(t.params["W"], want, rtol=1e-12, atol=1e-15)
    # each tied class moves a third of the label's move, not all of it
    assert np.allclose(t.params["W"][2, [0, 1, 3]], -t.params["W"][2, 2] / 3)


@pytest.mark.parametrize("sync", SYNCS)
def test_min_of_a_vector_shares_the_tied_components(load_spec, sync):
    X, step = one_row(), 0.2
    D = np.array([[0.0, 0.5, 0.0, 0.0, 0.5]])    # the min ties at 0, 2, 3
    t = one_step(load_spec(text=MIN_OF_A_VECTOR), sync, step, X=X, D=D)
    g_z = -shares(D, np.min)
    want = -step * np.outer(X.toarray()[0], g_z[0])
    assert np.allclose(t.params["W"], want, rtol=1e-12, atol=1e-15)
    assert t.params["W"].sum() == pytest.approx(step * X.sum())     # weights add up to 1


@pytest.mark.parametrize("sync", SYNCS)
def test_a_max_per_nonzero_shares_within_its_own_vector(load_spec, sync):
    X, step = one_row(), 0.1
    C = np.zeros((5, 4))
    C[0] = [1, 1, 0, 1]          # ties of 3
    C[2] = [0, 2, 2, 0]          # ties of 2
    C[3] = [0, 0, 0, 0]          # ties of 4
    t = one_step(load_spec(text=MAX_PER_NONZERO), sync, step, X=X, C=C)
    want = -step * X.toarray()[0][:, None] * shares(C)
    want[[1, 4]] = 0.0           # features the row does not hold
    assert np.allclose(t.params["V"], want, rtol=1e-12, atol=1e-15)


def test_the_objective_is_unchanged(load_spec):
    rng = np.random.default_rng(0)
    X = sp.random(6, 5, density=0.5, random_state=0, format="csr") + \
        sp.csr_matrix((np.ones(6), (np.arange(6), rng.integers(0, 5, 6))), shape=(6, 5))
    X = sp.csr_matrix(X)
    y = rng.integers(0, 4, 6)
    D = 1.0 - np.eye(4)[y]
    mod = load_spec(text=CRAMMER_SINGER)
    t = mod.Trainer(epochs=0, threads=1).fit(X=X, y=y, D=D)
    W = rng.normal(size=(5, 4))
    t.params["W"][...] = W
    z = X @ W
    deg = np.bincount(X.indices, minlength=5)
    seen = deg > 0
    want = np.mean((z + D).max(1) - z[np.arange(6), y]) + 0.5 * (W[seen] ** 2).sum() / 6
    assert t.objective(X=X, y=y, D=D) == pytest.approx(want, rel=1e-12)


def test_training_from_zero_with_threads_stays_finite_and_descends(load_spec):
    rng = np.random.default_rng(3)
    n, d, K = 400, 30, 5
    X = sp.csr_matrix(sp.random(n, d, density=0.2, random_state=3, format="csr") +
                      sp.csr_matrix((np.ones(n), (np.arange(n), rng.integers(0, d, n))),
                                    shape=(n, d)))
    y = np.asarray((X @ rng.normal(size=(d, K))).argmax(1)).ravel()
    D = 1.0 - np.eye(K)[y]
    mod = load_spec(text=CRAMMER_SINGER)
    for sync in SYNCS:
        t = mod.Trainer(epochs=5, step=0.1, sync=sync, threads=2, seed=1).fit(X=X, y=y, D=D)
        assert np.all(np.isfinite(t.params["W"]))
        assert t.objective(X=X, y=y, D=D) < 1.0 - 0.1      # the objective at W = 0 is 1


def test_the_max_is_computed_once_per_term():
    """The max, its tie count and the shares are each one loop over the classes in every
    update variant (not a max recomputed inside the loop over components: O(K^2))."""
    plan = lower(hogwild_dsl.check(CRAMMER_SINGER))
    for fn in plan.blocks[0].updates:
        text = "\n".join(fn.body)
        maxima = [line for line in fn.body if re.search(r"if _a\d+ == 0 or ", line)]
        assert len(maxima) == 1, (fn.name, text)
        depth = len(maxima[0]) - len(maxima[0].lstrip())
        assert depth == 8, (fn.name, text)       # in the function's one loop, over classes


def test_the_interpreter_reports_a_tie_as_a_kink():
    """The differential fuzz trusts finite differences only MARGIN away from every kink: a
    vector max whose top two values tie is one (finite differences there give 1/2 to each of
    two ties, not a subgradient's shares), so the fuzz compares steps away from ties only."""
    spec = hogwild_dsl.check(CRAMMER_SINGER)
    X, y = one_row(), np.array([2])
    interp = Interpreter(spec, {"X": X, "y": y, "D": 1.0 - np.eye(4)[y]})
    interp.margin = np.inf
    interp.objective({"W": np.zeros((5, 4))})
    assert interp.margin == 0.0
    interp.margin = np.inf
    W = np.zeros((5, 4))
    W[2, 0] = -0.25            # z = (0.25, 0, 0, 0): max(z + D) = 1.25, next 1
    interp.objective({"W": W})
    assert interp.margin == pytest.approx(0.25)
