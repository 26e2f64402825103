"""A row of sparse data selected by index data (LANGUAGE.md, "Index data and sampled
indices"): X[better[p]] in a loss, a let, predict and a reg target, against independent numpy:
the objective to 1e-10, one SGD step equal to step x the finite-difference gradient in all
three sync modes (also when one pair's two rows are the same doc), training to scipy's
optimum, and analyze."""
import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

from hogwild_dsl import DataError, SpecError, cli
from hogwild_dsl.analyze import analyze
from hogwild_dsl.check import check
from test_new_forms import SYNCS, check_one_step

LAM = 1e-2

RANK = f"""
model rank
dim pair, doc, feature
data X[doc, feature] : sparse
data better[pair] : index(doc)
data worse[pair] : index(doc)
param w[feature] = 0
for p in pair:
    let margin = dot(X[better[p]], w) - dot(X[worse[p]], w)
    loss sqhinge(margin)
    reg l2({LAM}) on w[X[better[p]]]
    predict margin
"""

# the same objective written with sum(...) and reading the stored values as X[better[p], j]
RANK_SUM = f"""
model rank_sum
dim pair, doc, feature
data X[doc, feature] : sparse
data better[pair] : index(doc)
data worse[pair] : index(doc)
param w[feature] = 0
for p in pair:
    loss sqhinge(sum(j in X[better[p]]: X[better[p], j] * w[j])
                 - sum(j in X[worse[p]]: X[worse[p], j] * w[j]))
    reg l2({LAM}) on w[X[better[p]]]
"""

# side features of a user's group in an entry block: S[g[u]]
SIDE = """
model side
dim user, item, group, feature
data R[user, item] : sparse
data S[group, feature] : sparse
data g[user] : index(group)
param w[feature] = 0
param b[item] = 0
for (u, v) in R:
    loss (dot(S[g[u]], w) + b[v] - R[u, v])^2
    reg l2(0.1) on w[S[g[u]]]
    predict dot(S[g[u]], w) + b[v]
"""


def docs(n_docs=7, n_features=6, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n_docs, n_features, density=0.45, random_state=seed, format="csr")
    X.data = rng.uniform(0.2, 1.0, X.nnz)
    return X


def pairs(n_pairs, n_docs, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_docs, n_pairs), rng.integers(0, n_docs, n_pairs)


def rank_objective(w, X, better, worse):
    """The mean over pairs of sqhinge(margin) plus the degree-split l2: deg(c) counts every
    pair whose better doc stores c (a doc picked by k pairs counts k times)."""
    n = len(better)
    margin = X[better] @ w - X[worse] @ w
    deg = np.zeros(X.shape[1])
    for d in better:
        deg[X[d].indices] += 1
    share = np.divide(LAM * w ** 2, deg, out=np.zeros_like(w), where=deg > 0)
    reg = sum(share[X[d].indices].sum() for d in better)
    return (np.sum(np.maximum(0.0, 1.0 - margin) ** 2) + reg) / n


@pytest.fixture(scope="module")
def rank(load_spec):
    return load_spec(text=RANK)


@pytest.fixture(scope="module")
def rank_sum(load_spec):
    return load_spec(text=RANK_SUM)


@pytest.fixture(scope="module")
def side(load_spec):
    return load_spec(text=SIDE)


def test_check_accepts_rows_picked_by_index_data():
    block = check(RANK).blocks[0]
    assert [d.via for d in block.degs] == ["better"]


@pytest.mark.parametrize("spec", ["rank", "rank_sum"])
def test_objective_and_predict_match_numpy(spec, request):
    mod = request.getfixturevalue(spec)
    X = docs()
    better, worse = pairs(9, X.shape[0])
    better[0] = better[1] = better[2]          # one doc picked by several pairs
    data = {"X": X, "better": better, "worse": worse}
    t = mod.Trainer(threads=1, epochs=0).fit(**data)
    w = np.random.default_rng(3).normal(size=X.shape[1])
    t.params["w"][:] = w
    assert abs(t.objective(**data) - rank_objective(w, X, better, worse)) < 1e-10
    if spec == "rank":
        np.testing.assert_allclose(t.predict(**data), X[better] @ w - X[worse] @ w,
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sync", SYNCS)
@pytest.mark.parametrize("spec", ["rank", "rank_sum"])
def test_one_step_is_the_gradient(spec, sync, request):
    X = docs()
    check_one_step(request.getfixturevalue(spec),
                   {"X": X, "better": np.array([2]), "worse": np.array([4])}, sync,
                   perturb=0.3)


@pytest.mark.parametrize("sync", SYNCS)
def test_one_pair_whose_two_rows_are_one_doc(rank, sync):
    # the margin is identically 0: the two rows' gradients cancel, only the reg steps; the
    # writes of both rows to the same coordinates must add up in every sync mode
    X = docs()
    data = {"X": X, "better": np.array([3]), "worse": np.array([3])}
    check_one_step(rank, data, sync, perturb=0.3)
    t = rank.Trainer(threads=1, epochs=0, step=0.1, sync=sync, shuffle=False).fit(**data)
    t.params["w"][:] = 1.0
    t.epochs = 1
    t.fit(**data)
    want = np.ones(X.shape[1])
    want[X[3].indices] -= 0.1 * 2 * LAM            # deg = 1 on the doc's support
    np.testing.assert_allclose(t.params["w"], want, rtol=1e-12)


def test_trains_to_scipys_optimum(rank):
    X = docs(n_docs=30, n_features=12, seed=4)
    better, worse = pairs(120, X.shape[0], seed=5)
    data = {"X": X, "better": better, "worse": worse}
    best = scipy.optimize.minimize(rank_objective, np.zeros(X.shape[1]),
                                   args=(X, better, worse), method="L-BFGS-B",
                                   options={"gtol": 1e-10, "ftol": 1e-14})
    t = rank.Trainer(threads=2, epochs=60, step=0.05, seed=0).fit(**data)
    got = t.objective(**data)
    assert best.fun > 0
    assert got <= best.fun * 1.02, (got, best.fun)


def test_index_values_past_the_rows_of_x_are_refused(rank):
    X = docs()
    t = rank.Trainer(threads=1, epochs=1)
    with pytest.raises(DataError):
        t.fit(X=X, better=np.array([0, X.shape[0]]), worse=np.array([1, 2]))
    with pytest.raises(DataError):
        t.fit(X=X, better=np.array([0, 1]), worse=np.array([-1, 2]))


def test_rows_picked_inside_an_entry_block(side):
    rng = np.random.default_rng(2)
    S = docs(n_docs=3, n_features=5, seed=6)
    g = np.array([0, 2, 2, 1])
    R = sp.random(4, 5, density=0.5, random_state=7, format="csr")
    R.data = rng.uniform(1, 5, R.nnz)
    data = {"R": R, "S": S, "g": g}
    t = side.Trainer(threads=1, epochs=0).fit(**data)
    w, b = rng.normal(size=5), rng.normal(size=5)
    t.params["w"][:], t.params["b"][:] = w, b
    coo = R.tocoo()
    pred = S[g[coo.row]] @ w + b[coo.col]
    deg = np.zeros(5)
    for u in coo.row:                 # every entry of user u reads the row of u's group
        deg[S[g[u]].indices] += 1
    reg = sum((0.1 * w[S[g[u]].indices] ** 2 / deg[S[g[u]].indices]).sum() for u in coo.row)
    want = (np.sum((pred - coo.data) ** 2) + reg) / R.nnz
    assert abs(t.objective(**data) - want) < 1e-10
    np.testing.assert_allclose(t.predict(**data), pred, rtol=1e-12, atol=1e-12)
    for sync in SYNCS:
        one = sp.csr_matrix(([3.0], ([1], [2])), shape=(4, 5))
        check_one_step(side, {"R": one, "S": S, "g": g}, sync, perturb=0.3)


def test_a_row_picked_at_a_summed_index_is_refused():
    spec = RANK.replace("reg l2", "loss sum(j in X[better[p]]: dot(X[pick[j]], w))\n    reg l2")
    spec = spec.replace("param w", "data pick[feature] : index(doc)\nparam w")
    with pytest.raises(SpecError, match="index data read at one"):
        check(spec)


def test_analyze_counts_the_rows_each_pair_touches(capsys, tmp_path):
    X = sp.csr_matrix(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 1.0]]))
    data = {"X": X, "better": np.array([0, 1, 0]), "worse": np.array([2, 2, 1])}
    stats = analyze(check(RANK), data)
    # pairs touch {0, 1, 2}, {1, 2}, {0, 1}: every pair meets every other
    assert stats["n_terms"] == 3
    assert stats["Omega"] == 3
    assert stats["Delta"] == pytest.approx(3 / 3)          # w[1] in all three
    assert stats["rho"] == pytest.approx(1.0)
    spec = tmp_path / "rank.hog"
    spec.write_text(RANK)
    sp.save_npz(tmp_path / "X.npz", X)
    np.save(tmp_path / "better.npy", data["better"])
    np.save(tmp_path / "worse.npy", data["worse"])
    rc = cli.main(["analyze", str(spec), "--data", f"X={tmp_path / 'X.npz'}",
                   "--data", f"better={tmp_path / 'better.npy'}",
                   "--data", f"worse={tmp_path / 'worse.npy'}"])
    out = capsys.readouterr().out
    assert rc == 0 and "Omega" in out


def test_distributed_counts_rows_once_per_pair():
    # the shards' weights and degrees (distributed.py) count X[better[p]] as the kernel does
    from hogwild_dsl import distributed
    X = sp.csr_matrix(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 1.0]]))
    data = {"X": X, "better": np.array([0, 2, 0, 2]), "worse": np.array([1, 1, 2, 0])}
    spec = check(RANK)
    (name, counts), = distributed.degree_counts(spec, data).items()
    np.testing.assert_array_equal(counts, [2, 2, 2])       # docs 0 and 2, twice each
    # averaging weights: one count per row reaching w[c] (as for S[u] and S[v] of an entry)
    np.testing.assert_array_equal(distributed.touches(spec, data)["w"], [3, 5, 3])
