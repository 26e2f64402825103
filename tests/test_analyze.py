"""hogwild_dsl.analyze: Omega, Delta and rho against brute-force counts on small data."""
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from hogwild_dsl.analyze import analyze, format_report, paper_factor
from hogwild_dsl.check import check
from hogwild_dsl.errors import DataError

SPECS = Path(__file__).resolve().parent.parent / "specs"


def spec_of(name, consts=None):
    return check((SPECS / f"{name}.hog").read_text(), consts)


# ------------------------------------------------------------------ brute force


def brute(term_sets):
    """Omega, Delta, rho and the mean share, straight from the definitions."""
    n = len(term_sets)
    omega = max(len(e) for e in term_sets)
    touching = {}
    for e in term_sets:
        for c in e:
            touching[c] = touching.get(c, 0) + 1
    delta = max(touching.values()) / n
    meets = [sum(1 for f in term_sets if f is e or (e & f)) for e in term_sets]
    return omega, delta, max(meets) / n, sum(meets) / n / n


def assert_matches(stats, term_sets):
    omega, delta, rho, rho_mean = brute(term_sets)
    assert stats["n_terms"] == len(term_sets)
    assert stats["Omega"] == omega
    assert stats["Delta"] == pytest.approx(delta)
    assert stats["rho"] == pytest.approx(rho)
    assert stats["rho_mean"] == pytest.approx(rho_mean)
    assert stats["rho_exact"]
    assert stats["n_touched"] == len(set().union(*term_sets))


def random_rows(n_rows, n_cols, density, seed, heavy=()):
    """A random CSR matrix; the columns in `heavy` appear in most rows."""
    rng = np.random.default_rng(seed)
    M = (rng.random((n_rows, n_cols)) < density).astype(float)
    for c in heavy:
        M[:, c] = rng.random(n_rows) < 0.8
    M *= rng.uniform(0.5, 1.5, size=M.shape)
    return sp.csr_matrix(M)


def row_sets(X, name="w"):
    return [{(name, int(j)) for j in X.indices[X.indptr[i]:X.indptr[i + 1]]}
            for i in range(X.shape[0])]


# ------------------------------------------------------------------ the paper's shapes


def test_svm_tiny_by_hand():
    X = sp.csr_matrix(np.array([[1, 0, 2, 0],
                                [0, 0, 3, 0],
                                [0, 1, 0, 0],
                                [1, 0, 0, 1]], float))
    y = np.array([1, -1, 1, -1.0])
    stats = analyze(spec_of("svm"), {"X": X, "y": y})
    # terms {0,2} {2} {1} {0,3}: Omega 2; w[0] and w[2] each in 2 of 4 terms;
    # term 0 meets itself, term 1 (w[2]) and term 3 (w[0]): 3 of 4
    assert stats["Omega"] == 2
    assert stats["Delta"] == pytest.approx(0.5)
    assert stats["rho"] == pytest.approx(0.75)
    assert stats["n_coordinates"] == 4
    assert stats["busiest"] in ("w[0]", "w[2]")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_svm_random(seed):
    X = random_rows(40, 25, 0.1, seed)
    y = np.ones(40)
    assert_matches(analyze(spec_of("svm"), {"X": X, "y": y}), row_sets(X))


def test_svm_mixed_light_and_heavy_columns():
    # 400 terms: a few frequent features (stored as bitsets) and many rare ones (sparse product)
    X = random_rows(400, 300, 0.01, 7, heavy=(3, 50))
    stats = analyze(spec_of("svm"), {"X": X, "y": np.ones(400)})
    assert_matches(stats, row_sets(X))
    assert stats["busiest"] in ("w[3]", "w[50]")


def test_empty_rows_count_themselves():
    X = sp.csr_matrix(np.array([[0, 0], [1, 0], [0, 0]], float))
    stats = analyze(spec_of("svm"), {"X": X, "y": np.ones(3)})
    assert stats["Omega"] == 1
    assert stats["rho"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_mc(seed):
    rank = 3
    r = random_rows(12, 9, 0.3, seed)
    stats = analyze(spec_of("mc", {"rank": rank}), {"r": r})
    coo = r.tocoo()
    sets = [{("L", int(u), k) for k in range(rank)} | {("R", int(v), k) for k in range(rank)}
            for u, v in zip(coo.row, coo.col)]
    assert_matches(stats, sets)
    assert stats["Omega"] == 2 * rank
    assert stats["n_coordinates"] == (12 + 9) * rank


def test_mc_keeps_explicit_zeros():
    r = sp.csr_matrix((np.array([0.0, 4.0, 0.0]), (np.array([0, 1, 2]), np.array([0, 0, 1]))),
                      shape=(3, 2))
    stats = analyze(spec_of("mc", {"rank": 2}), {"r": r})
    assert stats["n_terms"] == 3


@pytest.mark.parametrize("seed", [0, 1])
def test_cuts(seed):
    n, labels = 10, 3
    w = random_rows(n, n, 0.2, seed)
    c = np.random.default_rng(seed).random((n, labels))
    stats = analyze(spec_of("cuts"), {"w": w, "c": c})
    coo = w.tocoo()
    row = lambda u: {("x", int(u), k) for k in range(labels)}   # noqa: E731
    sets = [row(u) | row(v) for u, v in zip(coo.row, coo.col)] + [row(m) for m in range(n)]
    assert_matches(stats, sets)
    assert [b[1] for b in stats["blocks"]] == [w.nnz, n]


def test_dims_must_agree_as_in_the_trainer():
    w = sp.csr_matrix((np.ones(2), (np.array([0, 1]), np.array([1, 2]))), shape=(3, 3))
    with pytest.raises(DataError, match="node"):
        analyze(spec_of("cuts"), {"w": w, "c": np.zeros((4, 2))})


def test_logreg_bias_touches_everything():
    X = random_rows(20, 10, 0.2, 3)
    stats = analyze(spec_of("logreg"), {"X": X, "y": np.ones(20)})
    assert_matches(stats, [s | {("b",)} for s in row_sets(X)])
    assert stats["Delta"] == 1.0 and stats["rho"] == 1.0
    assert stats["busiest"] == "b"


def test_fm():
    X = random_rows(15, 8, 0.25, 4)
    k = 2
    stats = analyze(spec_of("fm", {"k": k}), {"X": X, "y": np.zeros(15)})
    sets = [{("w0",)} | s | {("V", j, f) for (_, j) in s for f in range(k)}
            for s in row_sets(X)]
    assert_matches(stats, sets)


WHOLE = """
model whole
dim example, feature
data X[example, feature] : sparse
data y[example] : sign
data c[node, label] : dense
dim node, label
param w[feature] = 0
param x[node, label] in simplex = uniform
for i in example:
    loss hinge(y[i] * dot(X[i], w))
    reg l2(1e-4) on w
for n in node:
    loss dot(c[n], x[n])
"""


def test_whole_param_regularizer_is_one_virtual_column():
    X = random_rows(30, 500, 0.01, 5)
    c = np.zeros((7, 2))
    stats = analyze(check(WHOLE), {"X": X, "y": np.ones(30), "c": c})
    every_w = {("w", j) for j in range(500)}
    sets = [every_w | s for s in row_sets(X)] + [{("x", m, k) for k in range(2)}
                                                 for m in range(7)]
    assert_matches(stats, sets)
    assert stats["Omega"] == 500
    assert stats["n_coordinates"] == 500 + 14


def test_sampled_rho_is_a_lower_bound():
    X = random_rows(3000, 2000, 0.003, 9)
    spec = spec_of("svm")
    data = {"X": X, "y": np.ones(3000)}
    exact = analyze(spec, data, sample=10**9)
    assert exact["rho_exact"] and exact["rho_sample"] == 3000
    sampled = analyze(spec, data, sample=300, seed=1)
    assert not sampled["rho_exact"] and sampled["rho_sample"] == 300
    assert sampled["rho"] <= exact["rho"]
    assert sampled["Delta"] == exact["Delta"] and sampled["Omega"] == exact["Omega"]
    assert "sampled" in format_report(sampled, threads=4)


def test_report_reads_like_the_paper():
    X = random_rows(200, 400, 0.01, 2)
    stats = analyze(spec_of("svm"), {"X": X, "y": np.ones(200)})
    text = format_report(stats, threads=8)
    for word in ("Omega", "Delta", "rho", "speed-up", "exact"):
        assert word in text
    assert paper_factor(stats, 1) == pytest.approx(
        1 + 6 * stats["rho"] + 4 * stats["Omega"] * stats["Delta"] ** 0.5)


def test_data_errors():
    spec = spec_of("svm")
    X = random_rows(5, 4, 0.5, 0)
    with pytest.raises(DataError, match="'Z'"):
        analyze(spec, {"X": X, "y": np.ones(5), "Z": np.ones(5)})
    with pytest.raises(DataError, match="X"):
        analyze(spec, {"y": np.ones(5)})
    with pytest.raises(DataError, match="y"):
        analyze(spec, {"X": X, "y": np.ones(6)})
    with pytest.raises(DataError, match="'X'"):
        analyze(spec, {"X": np.ones(5), "y": np.ones(5)})
