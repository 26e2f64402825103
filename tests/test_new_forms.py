"""The newer forms of LANGUAGE.md end to end, each against independent numpy: the objective to
1e-8, and one SGD step on a one-term data set equal to step x the finite-difference gradient
of the objective, in all three sync modes."""
import numpy as np
import pytest
import scipy.sparse as sp

from hogwild_dsl import DataError
from test_new_forms_check import FUNKSVD, SOFTMAX

SYNCS = ["hogwild", "atomic", "lock"]


def fd_gradient(t, data, eps=1e-6):
    """Central differences of t.objective(**data) in every param coordinate."""
    grads = {}
    for name, value in t.params.items():
        g = np.zeros_like(value)
        flat, gflat = value.reshape(-1), g.reshape(-1)
        for c in range(flat.size):
            old = flat[c]
            flat[c] = old + eps
            up = t.objective(**data)
            flat[c] = old - eps
            down = t.objective(**data)
            flat[c] = old
            gflat[c] = (up - down) / (2 * eps)
        grads[name] = g
    return grads


def check_one_step(mod, data, sync, step=1e-2, perturb=0.0, **trainer):
    """One epoch over a one-term data set is one SGD step: params - step * gradient (from
    params moved off their initial values by `perturb` x a fixed normal draw)."""
    t = mod.Trainer(threads=1, epochs=0, decay=1.0, step=step, sync=sync, shuffle=False,
                    **trainer).fit(**data)
    rng = np.random.default_rng(7)
    for value in t.params.values():
        value += perturb * rng.normal(size=value.shape)
    before = {k: v.copy() for k, v in t.params.items()}
    grads = fd_gradient(t, data)
    t.epochs = 1
    t.fit(**data)
    for name, value in t.params.items():
        np.testing.assert_allclose(value, before[name] - step * grads[name], rtol=1e-6,
                                   atol=1e-8, err_msg=f"{name} ({sync})")


# ---------------------------------------------------------------- data mu : real (funksvd)


def funksvd_objective(p, r, mu):
    r = r.tocoo()
    total = 0.0
    for u, v, x in zip(r.row, r.col, r.data):
        pred = mu + p["bu"][u] + p["bi"][v] + p["P"][u] @ p["Q"][v]
        total += (pred - x) ** 2 + 0.02 * (p["bu"][u] ** 2 + p["bi"][v] ** 2 +
                                           p["P"][u] @ p["P"][u] + p["Q"][v] @ p["Q"][v])
    return total / r.nnz


@pytest.fixture(scope="module")
def funksvd(load_spec):
    return load_spec(text=FUNKSVD, consts={"rank": 3})


def ratings(n_users=6, n_items=5, nnz=12, seed=0):
    rng = np.random.default_rng(seed)
    cells = rng.choice(n_users * n_items, nnz, replace=False)
    return sp.coo_matrix((rng.integers(1, 6, nnz).astype(float),
                          (cells // n_items, cells % n_items)), shape=(n_users, n_items))


def test_scalar_data_objective_and_predict(funksvd):
    r = ratings()
    t = funksvd.Trainer(threads=1, epochs=3, step=0.02, seed=1).fit(r=r, mu=3.5)
    assert abs(t.objective(r=r, mu=3.5) - funksvd_objective(t.params, r, 3.5)) < 1e-8
    p = t.params
    want = [3.5 + p["bu"][u] + p["bi"][v] + p["P"][u] @ p["Q"][v]
            for u, v in zip(r.tocoo().row, r.tocoo().col)]
    np.testing.assert_allclose(t.predict(r=r, mu=3.5), want, rtol=1e-12)
    # mu is data, not a param: a new mu changes the objective without retraining
    assert abs(t.objective(r=r, mu=0.0) - funksvd_objective(t.params, r, 0.0)) < 1e-8


@pytest.mark.parametrize("sync", SYNCS)
def test_scalar_data_one_step(funksvd, sync):
    r = sp.coo_matrix(([4.0], ([1], [2])), shape=(3, 4))
    check_one_step(funksvd, {"r": r, "mu": 3.0}, sync, seed=2)


def test_a_scalar_may_come_as_a_one_element_array(funksvd):
    r = ratings()
    t = funksvd.Trainer(threads=1, epochs=1, step=0.02, seed=1)
    assert t.fit(r=r, mu=np.array([3.5])).objective(r=r, mu=[[3.5]]) == t.objective(r=r, mu=3.5)


@pytest.mark.parametrize("mu,words", [(np.ones(2), "0-D"), (float("nan"), "NaN"),
                                       ("abc", "numeric")])
def test_scalar_data_errors(funksvd, mu, words):
    with pytest.raises(DataError, match=words) as info:
        funksvd.Trainer(epochs=0).fit(r=ratings(), mu=mu)
    assert "'mu'" in str(info.value)


# ---------------------------------------------------------------- entries as given


def test_duplicate_entries_are_separate_terms_and_predict_follows_coo_order(funksvd):
    # (1, 2) twice with ratings 1 and 2: two observations, not one rating of 3
    r = sp.coo_matrix(([5.0, 1.0, 3.0, 2.0, 0.0], ([3, 1, 0, 1, 2], [0, 2, 4, 2, 1])),
                      shape=(4, 5))
    t = funksvd.Trainer(threads=1, epochs=2, step=0.02, seed=3).fit(r=r, mu=2.0)
    assert abs(t.objective(r=r, mu=2.0) - funksvd_objective(t.params, r, 2.0)) < 1e-8
    summed = r.tocsr()
    assert summed.nnz == 4 and abs(t.objective(r=summed, mu=2.0) -
                                   funksvd_objective(t.params, r, 2.0)) > 1e-6
    p = t.params
    want = [2.0 + p["bu"][u] + p["bi"][v] + p["P"][u] @ p["Q"][v] for u, v in zip(r.row, r.col)]
    np.testing.assert_allclose(t.predict(r=r, mu=2.0), want, rtol=1e-12)
    # CSR input: CSR storage order (here with its columns unsorted)
    csr = sp.csr_matrix(([1.0, 2.0, 3.0, 4.0], [3, 0, 1, 4], [0, 2, 3, 3, 4]), shape=(4, 5))
    np.testing.assert_allclose(
        t.predict(r=csr, mu=2.0),
        [2.0 + p["bu"][u] + p["bi"][v] + p["P"][u] @ p["Q"][v] for u, v in [(0, 3), (0, 0), (1, 1), (3, 4)]],
        rtol=1e-12)


# ---------------------------------------------------------------- index data, logsumexp, softmax


@pytest.fixture(scope="module")
def softmax(load_spec):
    return load_spec(text=SOFTMAX)


def softmax_numpy(W, b, X, y):
    """(objective, class probabilities) of the softmax spec, degree split included."""
    Z = X @ W + b
    m = Z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(Z - m).sum(axis=1))
    deg = np.bincount(X.indices, minlength=X.shape[1])
    reg = sum((W[X[i].indices] ** 2 / deg[X[i].indices, None]).sum() for i in range(X.shape[0]))
    n = X.shape[0]
    return np.mean(lse - Z[np.arange(n), y]) + 1e-4 * reg / n, np.exp(Z - lse[:, None])


def classes(n=60, d=12, k=4, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.3, random_state=seed, format="csr")
    y = rng.integers(0, k, n)
    y[0] = k - 1                       # every class size is read off the labels: k classes
    return X, y


def test_softmax_objective_and_vector_predict(softmax):
    X, y = classes()
    t = softmax.Trainer(threads=2, epochs=4, step=0.2).fit(X=X, y=y.astype(float))
    assert t.params["W"].shape == (12, 4)            # class is as large as the largest label + 1
    objective, proba = softmax_numpy(t.params["W"], t.params["b"], X, y)
    assert abs(t.objective(X=X, y=y) - objective) < 1e-8
    got = t.predict(X=X)
    assert got.shape == (60, 4)
    np.testing.assert_allclose(got, proba, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.sum(axis=1), 1.0)


def test_logsumexp_is_stable(softmax):
    X, y = classes(n=5)
    t = softmax.Trainer(threads=1, epochs=0).fit(X=X, y=y)
    t.params["b"][:] = [1000.0, 0.0, -1000.0, 999.0]
    objective, _ = softmax_numpy(t.params["W"], t.params["b"], X, y)
    assert np.isfinite(objective) and abs(t.objective(X=X, y=y) - objective) < 1e-8
    assert np.all(np.isfinite(t.predict(X=X)))


@pytest.mark.parametrize("sync", SYNCS)
def test_softmax_one_step(softmax, sync):
    X = sp.csr_matrix(np.array([[0.5, 0.0, -1.0, 2.0]]))
    y = np.array([2])           # W[j, y[i]] and W[j, k] write the same coordinates: both add up
    check_one_step(softmax, {"X": X, "y": y}, sync, perturb=0.3)


TRIPLES = """model triples
dim user, item, triple
const k = 3
data tu[triple] : index(user)
data ti[triple] : index(item)
data tj[triple] : index(item)
param P[user, k] ~ normal(0, 0.5)
param Q[item, k] ~ normal(0, 0.5)
for t in triple:
    loss softplus(-dot(P[tu[t]], Q[ti[t]] - Q[tj[t]]))
    reg l2(0.1) on P[tu[t]], Q[ti[t]]
    predict dot(P[tu[t]], Q[ti[t]])
"""


@pytest.fixture(scope="module")
def triples(load_spec):
    return load_spec(text=TRIPLES)


def test_tuple_terms_objective(triples):
    tu, ti, tj = np.array([0, 2, 1, 2]), np.array([1, 0, 3, 3]), np.array([0, 2, 2, 1])
    t = triples.Trainer(threads=1, epochs=3, step=0.1, seed=4).fit(tu=tu, ti=ti, tj=tj)
    P, Q = t.params["P"], t.params["Q"]
    assert P.shape == (3, 3) and Q.shape == (4, 3)
    du, di = np.bincount(tu), np.bincount(ti, minlength=4)
    want = np.mean([np.logaddexp(0, -P[u] @ (Q[i] - Q[j])) + 0.1 * (P[u] @ P[u] / du[u] +
                    Q[i] @ Q[i] / di[i]) for u, i, j in zip(tu, ti, tj)])
    assert abs(t.objective(tu=tu, ti=ti, tj=tj) - want) < 1e-8
    np.testing.assert_allclose(t.predict(tu=tu, ti=ti), [P[u] @ Q[i] for u, i in zip(tu, ti)])


@pytest.mark.parametrize("sync", SYNCS)
@pytest.mark.parametrize("same", [False, True], ids=["distinct", "i == j"])
def test_tuple_terms_one_step(triples, sync, same):
    data = {"tu": np.array([1]), "ti": np.array([2]), "tj": np.array([2 if same else 0])}
    check_one_step(triples, data, sync, step=0.1)


@pytest.mark.parametrize("y,words", [
    ([0, 1.5, 2], "position 1 holds 1.5"), ([0, -1, 2], "position 1 holds -1"),
    ([0, np.nan, 1], "position 1 holds nan"), ([[0, 1]], "1-D"), (["a", "b"], "numeric")])
def test_index_data_errors(softmax, y, words):
    X, _ = classes(n=3)
    with pytest.raises(DataError, match="'y'") as info:
        softmax.Trainer(epochs=0).fit(X=X, y=y)
    assert words in str(info.value)


def test_index_out_of_range_of_a_known_dim(softmax):
    X, y = classes(n=8)
    t = softmax.Trainer(epochs=1).fit(X=X, y=y)
    y[5] = 4                        # the trained W has 4 classes: label 4 is out of range
    with pytest.raises(DataError, match=r"'y'.*position 5 holds 4, out of range \[0, 4\)"):
        t.objective(X=X, y=y)


# ---------------------------------------------------------------- sample (negative sampling)

BPR = """\
model bpr
dim user, item
const k = 3
data seen[user, item] : sparse
param P[user, k] ~ normal(0, 0.5)
param Q[item, k] ~ normal(0, 0.5)
for (u, i) in seen:
    sample j in item
    loss -log(sigmoid(dot(P[u], Q[i] - Q[j])))
    reg l2(1e-2) on P[u], Q[i], Q[j] unscaled
    predict dot(P[u], Q[i])
"""

M64 = (1 << 64) - 1


def mix(x):
    """splitmix64's finaliser (an independent reimplementation of the kernel's generator)."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def drawn(key, t, which, n):
    """The draw number `which` of term t under `key`, uniform in [0, n) (LANGUAGE-NOTES)."""
    bits = mix((mix(key ^ mix(t)) + which) & M64)
    return (bits * n) >> 64


def bpr_term(P, Q, u, i, j, lam=1e-2, scale_j=1.0):
    return (np.logaddexp(0, -P[u] @ (Q[i] - Q[j])) +
            lam * (P[u] @ P[u] + Q[i] @ Q[i] + Q[j] @ Q[j] / scale_j))


@pytest.fixture(scope="module")
def bpr(load_spec):
    return load_spec(text=BPR)


def clicks(n_users=30, n_items=12, nnz=90, seed=0):
    rng = np.random.default_rng(seed)
    cells = rng.choice(n_users * n_items, nnz, replace=False)
    return sp.coo_matrix((np.ones(nnz), (cells // n_items, cells % n_items)),
                         shape=(n_users, n_items))


def test_sampled_objective_is_repeatable_and_uses_the_documented_draws(bpr):
    from hogwild_dsl.runtime import _draw_key
    seen = clicks()
    t = bpr.Trainer(threads=2, epochs=3, step=0.1, seed=5, shuffle=False).fit(seen=seen)
    first = t.objective(seen=seen)
    assert t.objective(seen=seen) == first
    csr = seen.tocsr()
    key = _draw_key(5, "objective")
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    want = np.mean([bpr_term(t.params["P"], t.params["Q"], u, i, drawn(key, term, 0, 12))
                    for term, (u, i) in enumerate(zip(rows, csr.indices))])
    assert abs(first - want) < 1e-8
    assert t.history[-1]["objective"] == pytest.approx(first, abs=1e-12)   # stored order


def test_sampled_objective_estimates_the_expectation(bpr):
    seen = clicks(n_users=200, n_items=20, nnz=2000, seed=1)
    t = bpr.Trainer(threads=2, epochs=2, step=0.05, seed=2).fit(seen=seen)
    P, Q = t.params["P"], t.params["Q"]
    per_j = np.array([[bpr_term(P, Q, u, i, j) for j in range(20)]
                      for u, i in zip(seen.row, seen.col)])
    exact = per_j.mean()
    se = per_j.std(axis=1).mean() / np.sqrt(seen.nnz)   # one draw per term
    assert abs(t.objective(seen=seen) - exact) < 4 * se
    assert se > 0


def test_threads_one_and_a_seed_reproduce_every_draw(bpr):
    seen = clicks()
    a = bpr.Trainer(threads=1, epochs=3, seed=9).fit(seen=seen)
    b = bpr.Trainer(threads=1, epochs=3, seed=9).fit(seen=seen)
    c = bpr.Trainer(threads=1, epochs=3, seed=10).fit(seen=seen)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["Q"], c.params["Q"])


@pytest.mark.parametrize("sync", SYNCS)
@pytest.mark.parametrize("same", [False, True], ids=["j != i", "j == i"])
def test_sampled_one_step(bpr, sync, same):
    """One visit draws j from the epoch's key: the step is the gradient at that j."""
    from hogwild_dsl.runtime import _draw_key
    j = drawn(_draw_key(3, "epoch", 0), 0, 0, 4)
    i = j if same else (j + 1) % 4
    seen = sp.coo_matrix(([1.0], ([1], [i])), shape=(2, 4))
    t = bpr.Trainer(threads=1, epochs=0, decay=1.0, step=0.1, sync=sync, seed=3,
                    shuffle=False).fit(seen=seen)
    P, Q = t.params["P"].copy(), t.params["Q"].copy()
    grads, eps = {}, 1e-6
    for name, value in (("P", P), ("Q", Q)):
        g = np.zeros_like(value)
        for c in np.ndindex(value.shape):
            old = value[c]
            value[c] = old + eps
            up = bpr_term(P, Q, 1, i, j)
            value[c] = old - eps
            down = bpr_term(P, Q, 1, i, j)
            value[c] = old
            g[c] = (up - down) / (2 * eps)
        grads[name] = g
    t.epochs = 1
    t.fit(seen=seen)
    np.testing.assert_allclose(t.params["P"], P - 0.1 * grads["P"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(t.params["Q"], Q - 0.1 * grads["Q"], rtol=1e-6, atol=1e-8)


WEIGHTED = BPR.replace("sample j in item", "sample j in item ~ pop").replace(
    "data seen[user, item] : sparse", "data seen[user, item] : sparse\ndata pop[item] : real")


@pytest.fixture(scope="module")
def weighted(load_spec):
    return load_spec(text=WEIGHTED)


def test_weighted_draws_follow_the_weights(weighted):
    seen = clicks()
    pop = np.zeros(12)
    pop[7] = 3.0                             # every draw is item 7
    t = weighted.Trainer(threads=2, epochs=2, seed=1).fit(seen=seen, pop=pop)
    P, Q = t.params["P"], t.params["Q"]
    want = np.mean([bpr_term(P, Q, u, i, 7) for u, i in zip(seen.row, seen.col)])
    assert abs(t.objective(seen=seen, pop=pop) - want) < 1e-8
    from hogwild_dsl.runtime import _alias_table
    w = np.array([1.0, 0.0, 2.0, 5.0, 0.5])
    prob, alias = _alias_table("w", w)
    mass = prob.copy()                       # the table's distribution, exactly
    for k in range(5):
        mass[alias[k]] += 1.0 - prob[k]
    np.testing.assert_allclose(mass / 5, w / w.sum(), atol=1e-12)


@pytest.mark.parametrize("pop,words", [(np.r_[1.0, -1.0, np.ones(10)], "non-negative"),
                                       (np.zeros(12), "sum must be positive")])
def test_bad_weights(weighted, pop, words):
    with pytest.raises(DataError, match=words) as info:
        weighted.Trainer(epochs=0).fit(seen=clicks(), pop=pop)
    assert "'pop'" in str(info.value)


def test_scaled_reg_on_a_sampled_index_uses_expected_touches(load_spec):
    from hogwild_dsl.runtime import _draw_key
    mod = load_spec(text=BPR.replace(" unscaled", ""))
    seen = clicks()
    t = mod.Trainer(threads=1, epochs=1, seed=4).fit(seen=seen)
    csr = seen.tocsr()
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    du, di = np.bincount(rows, minlength=30), np.bincount(csr.indices, minlength=12)
    P, Q, key = t.params["P"], t.params["Q"], _draw_key(4, "objective")
    want = []
    deg = di + 90 / 12      # Q[x] is touched as i by di[x] terms, as j by 90/12 expected
    for term, (u, i) in enumerate(zip(rows, csr.indices)):
        j = drawn(key, term, 0, 12)
        want.append(np.logaddexp(0, -P[u] @ (Q[i] - Q[j])) + 1e-2 * (
            P[u] @ P[u] / du[u] + Q[i] @ Q[i] / deg[i] + Q[j] @ Q[j] / deg[j]))
    assert abs(t.objective(seen=seen) - np.mean(want)) < 1e-8


# ---------------------------------------------------------------- a weight per observation

WEIGHTED_MC = """\
model wmc
dim user, item
const rank = 2
data r[user, item] : sparse
data c[user, item] : sparse
param L[user, rank] ~ normal(0, 0.5)
param R[item, rank] ~ normal(0, 0.5)
for (u, v) in r:
    loss c[u, v] * (dot(L[u], R[v]) - r[u, v])^2
    predict c[u, v] * dot(L[u], R[v])
"""


@pytest.fixture(scope="module")
def weighted_mc(load_spec):
    return load_spec(text=WEIGHTED_MC)


def test_weight_per_observation(weighted_mc):
    r = ratings()
    c = r.copy()
    c.data = np.random.default_rng(0).uniform(0.5, 2.0, r.nnz)
    t = weighted_mc.Trainer(threads=1, epochs=2, step=0.05).fit(r=r, c=c)
    L, R = t.params["L"], t.params["R"]
    want = np.mean([w * (L[u] @ R[v] - x) ** 2 for u, v, x, w in zip(r.row, r.col, r.data, c.data)])
    assert abs(t.objective(r=r, c=c) - want) < 1e-8
    np.testing.assert_allclose(t.predict(r=r, c=c),
                               [w * L[u] @ R[v] for u, v, w in zip(r.row, r.col, c.data)])
    other = sp.coo_matrix((c.data[1:], (c.row[1:], c.col[1:])), shape=c.shape)
    with pytest.raises(DataError, match="'c' is read at the entries of 'r'"):
        t.objective(r=r, c=other)


@pytest.mark.parametrize("sync", SYNCS)
def test_weight_per_observation_one_step(weighted_mc, sync):
    r = sp.coo_matrix(([3.0], ([1], [0])), shape=(2, 2))
    c = sp.coo_matrix(([0.7], ([1], [0])), shape=(2, 2))
    check_one_step(weighted_mc, {"r": r, "c": c}, sync)


def test_softmax_reaches_sklearns_logistic_regression(softmax):
    """The shipped softmax objective times N is sklearn's multinomial LogisticRegression loss
    with C = 1 / (2 * 1e-4) (every feature is touched, so the degree split sums to ||W||^2):
    SGD gets to its optimum."""
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    n, d, k = 300, 8, 3
    X = sp.random(n, d, density=0.6, random_state=0, format="csr")
    y = (np.asarray(X @ rng.normal(size=(d, k))) + rng.gumbel(size=(n, k))).argmax(axis=1)
    sk = LogisticRegression(C=1 / 2e-4, tol=1e-10, max_iter=10_000).fit(X, y)
    t = softmax.Trainer(threads=1, epochs=0).fit(X=X, y=y)
    t.params["W"][:] = sk.coef_.T
    t.params["b"][:] = sk.intercept_
    optimum = t.objective(X=X, y=y)
    t.params["W"][:] = 0.0
    t.params["b"][:] = 0.0
    t.epochs, t.step, t.decay = 60, 0.5, 0.95
    t.fit(X=X, y=y)
    assert optimum <= t.objective(X=X, y=y) <= optimum + 2e-3


# ---------------------------------------------------------------- optimizer adagrad (bpr's)


@pytest.mark.parametrize("sync", SYNCS)
def test_adagrad_two_steps(funksvd, sync):
    """Two epochs over one term: each step is g / sqrt(G + 1e-8), G the running sum of g^2."""
    r = sp.coo_matrix(([4.0], ([1], [2])), shape=(3, 4))
    data = {"r": r, "mu": 3.0}
    t = funksvd.Trainer(threads=1, epochs=0, decay=1.0, step=0.05, sync=sync, shuffle=False,
                        optimizer="adagrad", seed=2).fit(**data)
    G = {k: np.zeros_like(v) for k, v in t.params.items()}
    t.epochs = 1
    for _ in range(2):
        before = {k: v.copy() for k, v in t.params.items()}
        grads = fd_gradient(t, data)
        t.fit(**data)
        for name, g in grads.items():
            G[name] += g * g
            np.testing.assert_allclose(t.params[name],
                                       before[name] - 0.05 * g / np.sqrt(G[name] + 1e-8),
                                       rtol=1e-6, atol=1e-7, err_msg=f"{name} ({sync})")


def test_adagrad_state_is_kept(funksvd, tmp_path):
    import pickle
    r = ratings()
    # a given step: a loaded trainer without one calibrates its own (a save keeps no step)
    a = funksvd.Trainer(threads=1, epochs=2, optimizer="adagrad", seed=1, step=0.1).fit(
        r=r, mu=3.0)
    a.save(tmp_path / "m.npz")
    b = funksvd.Trainer.load(tmp_path / "m.npz", threads=1, epochs=1, optimizer="adagrad",
                             seed=1, step=0.1)
    c = pickle.loads(pickle.dumps(a))
    for t in (a, b, c):
        t.epochs = 1
        t._rng = np.random.default_rng(0)
        t.fit(r=r, mu=3.0)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        np.testing.assert_array_equal(a.params[k], c.params[k])


def test_bpr_trains_as_written(load_spec):
    from hogwild_dsl import HogwildError
    mod = load_spec("bpr")
    t = mod.Trainer(threads=2, epochs=2)
    assert t.optimizer == "adagrad" and t.step == 0.05
    seen = clicks(n_users=40, n_items=30, nnz=300)
    first = t.fit(seen=seen).history[0]["objective"]
    assert np.isfinite(first) and t.history[-1]["objective"] < first
    for bad in ("adam", "AdaGrad"):
        with pytest.raises(HogwildError, match="optimizer must be one of sgd, adagrad, adagrad_row"):
            mod.Trainer(optimizer=bad)
