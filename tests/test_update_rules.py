"""Update rules (API.md, "Update rules") against independent numpy: AdaGrad per coordinate and
per row (adagrad_row) step for step on one thread to 1e-10, in every sync mode and visit order;
their accumulators continue on a warm start and travel with save/load and pickling."""
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

SYNCS = ["hogwild", "atomic", "lock"]
RANK = 3


@pytest.fixture(scope="module")
def mc(load_spec):
    return load_spec("mc", consts={"rank": RANK})


def ratings(seed=0, n_users=7, n_items=5, nnz=16):
    rng = np.random.default_rng(seed)
    cells = rng.choice(n_users * n_items, nnz, replace=False)
    return sp.csr_matrix((rng.uniform(-2, 2, nnz), (cells // n_items, cells % n_items)),
                         shape=(n_users, n_items))


def numpy_mc(r: sp.csr_matrix, L, R, G, step, decay, epochs, first_epoch, rule):
    """The shipped mc spec (`(dot(L[u], R[v]) - r)^2`, `reg l2(0.05) on L[u], R[v]` split by
    the rows' and columns' entry counts) trained in stored (CSR) order under `rule`; G holds
    the accumulators and is updated in place."""
    L, R = L.copy(), R.copy()
    coo = r.tocoo()
    deg_u = np.bincount(coo.row, minlength=L.shape[0])
    deg_v = np.bincount(coo.col, minlength=R.shape[0])
    for e in range(first_epoch, first_epoch + epochs):
        lr = step * decay ** e
        for u, v, x in zip(coo.row, coo.col, coo.data):
            err = L[u] @ R[v] - x
            gL = 2 * err * R[v] + 0.05 * 2 * L[u] / deg_u[u]
            gR = 2 * err * L[u] + 0.05 * 2 * R[v] / deg_v[v]
            for name, row, g in (("L", u, gL), ("R", v, gR)):
                if rule == "adagrad":
                    G[name][row] += g * g
                    scale = np.sqrt(G[name][row] + 1e-8)
                else:                     # adagrad_row: one sum per row, the mean of g^2
                    G[name][row] += np.mean(g * g)
                    scale = np.sqrt(G[name][row] + 1e-8)
                (L if name == "L" else R)[row] -= lr * g / scale
    return L, R


def fresh_state(rule, L, R):
    if rule == "adagrad":
        return {"L": np.zeros_like(L), "R": np.zeros_like(R)}
    return {"L": np.zeros(L.shape[0]), "R": np.zeros(R.shape[0])}


@pytest.mark.parametrize("rule", ["adagrad", "adagrad_row"])
@pytest.mark.parametrize("sync", SYNCS)
def test_first_steps_match_numpy(mc, rule, sync):
    r = ratings()
    t = mc.Trainer(threads=1, epochs=0, step=0.3, decay=0.8, seed=3, sync=sync,
                   order="stored", optimizer=rule).fit(r=r)
    L0, R0 = t.params["L"].copy(), t.params["R"].copy()
    G = fresh_state(rule, L0, R0)
    t.epochs = 3
    t.fit(r=r)
    L, R = numpy_mc(r, L0, R0, G, 0.3, 0.8, 3, 0, rule)
    np.testing.assert_allclose(t.params["L"], L, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(t.params["R"], R, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(t._accumulators["L"], G["L"], rtol=1e-10, atol=1e-12)
    assert not np.allclose(L, L0)


@pytest.mark.parametrize("rule", ["adagrad", "adagrad_row"])
@pytest.mark.parametrize("order", ["shuffle", "chunks"])
def test_every_order_trains_and_keeps_state_in_the_callers_labels(mc, rule, order):
    """Relabelled visits (chunks) permute params and accumulators consistently: the state
    written back is the per-row sum of squares of the rows as the user labels them."""
    r = ratings(seed=1, n_users=40, n_items=30, nnz=300)
    t = mc.Trainer(threads=2, epochs=4, step=0.3, seed=1, order=order, optimizer=rule)
    first = t.fit(r=r).history[0]["objective"]
    assert t.history[-1]["objective"] < first
    G = t._accumulators["L"]
    touched = np.diff(r.indptr) > 0
    assert np.all(G[touched].reshape(touched.sum(), -1) > 0)
    assert np.all(G[~touched] == 0)


@pytest.mark.parametrize("rule", ["adagrad", "adagrad_row"])
def test_state_continues_on_warm_start_save_load_and_pickle(mc, rule, tmp_path):
    r = ratings(seed=2)
    a = mc.Trainer(threads=1, epochs=0, step=0.3, decay=0.8, seed=4, order="stored",
                   optimizer=rule).fit(r=r)
    L0, R0 = a.params["L"].copy(), a.params["R"].copy()
    a.epochs = 2
    a.fit(r=r)
    path = a.save(tmp_path / "m.npz")
    b = mc.Trainer.load(path, threads=1, epochs=1, step=0.3, decay=0.8, order="stored",
                        optimizer=rule)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(b._accumulators["L"], a._accumulators["L"])
    G = fresh_state(rule, L0, R0)
    L, R = numpy_mc(r, L0, R0, G, 0.3, 0.8, 3, 0, rule)     # 2 epochs, then one more
    for t in (a, b, c):
        t.epochs = 1
        t.fit(r=r)
        np.testing.assert_allclose(t.params["L"], L, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(t.params["R"], R, rtol=1e-10, atol=1e-12)


def test_switching_the_rule_starts_a_fresh_state_of_the_right_shape(mc):
    r = ratings(seed=3)
    t = mc.Trainer(threads=1, epochs=1, optimizer="adagrad").fit(r=r)
    assert t._accumulators["L"].shape == t.params["L"].shape
    t.optimizer = "adagrad_row"
    t.fit(r=r)
    assert t._accumulators["L"].shape == t.params["L"].shape[:1]


def test_the_train_line_and_the_argument(load_spec):
    from hogwild_dsl import HogwildError
    text = ("model tl\ndim example\ndata y[example] : real\nparam w = 0\n"
            "for i in example:\n    loss (w - y[i])^2\ntrain optimizer adagrad_row, step 0.5\n")
    mod = load_spec(text=text)
    assert mod.Trainer().optimizer == "adagrad_row"
    assert mod.Trainer(optimizer="sgd").optimizer == "sgd"
    t = mod.Trainer(threads=1, epochs=1, order="stored").fit(y=np.array([1.0, 3.0]))
    # a 0-D param keeps one sum per coordinate: steps 0.5 * g / |g| then 0.5 * g2 / sqrt(G)
    g1 = 2 * (0.0 - 1.0)
    w1 = -0.5 * g1 / np.sqrt(g1 * g1 + 1e-8)
    g2 = 2 * (w1 - 3.0)
    w2 = w1 - 0.5 * g2 / np.sqrt(g1 * g1 + g2 * g2 + 1e-8)
    np.testing.assert_allclose(t.params["w"], w2, rtol=1e-12)
    with pytest.raises(HogwildError, match="optimizer must be one of sgd, adagrad, adagrad_row"):
        mod.Trainer(optimizer="adam")


# ---------------------------------------------------------------- reg l1: exact zeros

def lasso_problem(seed=1, n=300, d=60, k=10, alpha=0.05):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.4, random_state=seed, format="csr",
                  data_rvs=rng.standard_normal)
    coef = np.zeros(d)
    coef[rng.choice(d, k, replace=False)] = rng.uniform(1, 3, k) * rng.choice([-1, 1], k)
    y = X @ coef + 0.2 * rng.normal(size=n)
    # scikit-learn's Lasso minimises 1/(2n) ||y - Xw||^2 + alpha ||w||_1; the spec's objective
    # is the mean over terms, so reg l1(LAMBDA) adds LAMBDA / n ||w||_1: LAMBDA = alpha * n
    spec = f"""model lasso
dim example, feature
data X[example, feature] : sparse
data y[example] : real
param w[feature] = 0
for i in example:
    loss 0.5 * (dot(X[i], w) - y[i])^2
    reg l1({alpha * n}) on w[X[i]]
"""
    return spec, X, y, alpha


@pytest.mark.parametrize("sync,rule,step", [("hogwild", "sgd", 0.02), ("atomic", "sgd", 0.02),
                                            ("lock", "sgd", 0.02),
                                            ("hogwild", "adagrad", 0.3)])
def test_l1_finds_the_lasso_support_with_exact_zeros(load_spec, sync, rule, step):
    from sklearn.linear_model import Lasso
    spec, X, y, alpha = lasso_problem()
    mod = load_spec(text=spec)
    t = mod.Trainer(threads=2, epochs=60, step=step, decay=0.95, seed=0, sync=sync,
                    optimizer=rule).fit(X=X, y=y)
    sk = Lasso(alpha=alpha, fit_intercept=False, tol=1e-10, max_iter=100_000).fit(X, y)
    ours, theirs = set(np.flatnonzero(t.params["w"])), set(np.flatnonzero(sk.coef_))
    f1 = 2 * len(ours & theirs) / (len(ours) + len(theirs))
    assert f1 >= 0.9, (sorted(ours), sorted(theirs))
    assert len(ours) < X.shape[1] / 2              # most coordinates end at exactly 0
    best = 0.5 * np.mean((X @ sk.coef_ - y) ** 2) + alpha * np.abs(sk.coef_).sum()
    assert t.objective(X=X, y=y) <= 1.02 * best


def test_l1_state_travels_with_save_load_and_pickle(load_spec, tmp_path):
    spec, X, y, _ = lasso_problem(seed=2, n=60, d=12, k=3)
    mod = load_spec(text=spec)
    a = mod.Trainer(threads=1, epochs=3, step=0.02, order="stored").fit(X=X, y=y)
    assert set(a._accumulators) == {"w__l1u", "w__l1q"} and a._accumulators["w__l1u"].max() > 0
    b = mod.Trainer.load(a.save(tmp_path / "l.npz"), threads=1, epochs=2, step=0.02,
                         order="stored")
    c = pickle.loads(pickle.dumps(a))
    for t in (a, b, c):
        t.epochs = 2
        t.fit(X=X, y=y)
    np.testing.assert_array_equal(b.params["w"], a.params["w"])
    np.testing.assert_array_equal(c.params["w"], a.params["w"])
    np.testing.assert_array_equal(b._accumulators["w__l1q"], a._accumulators["w__l1q"])


# ------------------------------------------------ reg l1 under a lower bound or a box

BOUNDS = {"a": (0.0, np.inf), "b": (0.25, 2.0), "c": (-2.0, -0.25), "d": (0.3, np.inf),
          "e": (-0.5, 1.0)}
LAMBDAS = {"a": 3.0, "b": 2.0, "c": 4.0, "d": 1.0, "e": 3.0}
BOUNDED_L1 = """model boundedl1
dim example, feature
data X[example, feature] : sparse
data y[example] : real
param a[feature] >= 0 = 0
param b[feature] in [0.25, 2] = 0
param c[feature] in [-2, -0.25] = 0
param d[feature] >= 0.3 = 0
param e[feature] in [-0.5, 1] = 0
for i in example:
    loss 0.5 * (dot(X[i], a) + dot(X[i], b) + dot(X[i], c) + dot(X[i], d) + dot(X[i], e) - y[i])^2
    reg l1(3) on a[X[i]]
    reg l1(2) on b[X[i]]
    reg l1(4) on c[X[i]]
    reg l1(1) on d[X[i]]
    reg l1(3) on e[X[i]]
"""


def numpy_bounded_l1(X: sp.csr_matrix, y, params: dict, step, decay, epochs, dtype, rule):
    """BOUNDED_L1 trained in stored order by Tsuruoka's clipped cumulative penalty with each
    param's bound: per coordinate z = w - rate * g, owed u += rate * LAMBDA / deg, the penalty
    toward 0 by u -/+ q never across it, then the bound; q gains the part of the move that
    the bound lets stand (the move clipped to [min(lo, z), max(hi, z)]). Under adagrad, g
    and the penalty's weight are both divided by sqrt(G + 1e-8) after G += g^2. Values and
    state are stored in `dtype`, as the kernel stores them. -> params, owed, given, and
    the given that counting the whole move (new - z) would hold."""
    w = {k: v.astype(dtype) for k, v in params.items()}
    G = {k: np.zeros_like(v) for k, v in w.items()}
    u = {k: np.zeros_like(v) for k, v in w.items()}
    q = {k: np.zeros_like(v) for k, v in w.items()}
    unclipped = {k: np.zeros(v.shape) for k, v in w.items()}
    deg = np.bincount(X.indices, minlength=X.shape[1])
    for e in range(epochs):
        rate = step * decay ** e
        for i in range(X.shape[0]):
            cols, vals = X.indices[X.indptr[i]:X.indptr[i + 1]], X.data[X.indptr[i]:X.indptr[i + 1]]
            r = sum(float(w[k][cols].astype(np.float64) @ vals) for k in w) - y[i]
            for k, (lo, hi) in BOUNDS.items():
                for j, x in zip(cols, vals):
                    g, scale = r * x, 1.0
                    if rule == "adagrad":
                        G[k][j] = float(G[k][j]) + g * g
                        scale = np.sqrt(float(G[k][j]) + 1e-8)
                    z = float(w[k][j]) - rate * g / scale
                    u[k][j] = float(u[k][j]) + rate * LAMBDAS[k] / deg[j] / scale
                    owed, given = float(u[k][j]), float(q[k][j])
                    new = max(0.0, z - (owed + given)) if z > 0 else \
                        min(0.0, z + (owed - given)) if z < 0 else z
                    unclipped[k][j] += new - z
                    q[k][j] = given + min(max(hi, z), max(min(lo, z), new)) - z
                    w[k][j] = min(hi, max(lo, new))
    return w, u, q, unclipped


@pytest.mark.parametrize("rule", ["sgd", "adagrad"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sync", SYNCS)
def test_l1_given_under_a_bound_counts_the_move_made(load_dtype_l1, sync, dtype, rule):
    """The l1 record of what a coordinate was given counts the part of the penalty's move
    that its bound lets stand: where a bound lies between the value and 0 (b, c, d) what it
    held back is still owed (counting the whole move is far off there); where 0 is inside
    the bound (a, e) the whole move counts. One thread, two epochs, every sync mode,
    storage type and update rule, against numpy."""
    rng = np.random.default_rng(5)
    n, d = 60, 8
    X = sp.random(n, d, density=0.5, random_state=5, format="csr", data_rvs=rng.standard_normal)
    y = X @ np.array([3.0, -2.0, 0.1, 2.5, -0.2, 0.0, 1.5, -3.0]) + 0.1 * rng.normal(size=n)
    mod = load_dtype_l1(dtype)
    step = 0.05 if rule == "sgd" else 0.3
    t = mod.Trainer(threads=1, epochs=0, step=step, decay=0.9, sync=sync, order="stored",
                    optimizer=rule).fit(X=X, y=y)
    start = {k: v.copy() for k, v in t.params.items()}
    t.epochs = 2
    t.fit(X=X, y=y)
    w, u, q, unclipped = numpy_bounded_l1(X, y, start, step, 0.9, 2, np.dtype(dtype), rule)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-6)
    for k in BOUNDS:
        np.testing.assert_allclose(t.params[k], w[k], **tol)
        np.testing.assert_allclose(t._accumulators[f"{k}__l1u"], u[k], **tol)
        np.testing.assert_allclose(t._accumulators[f"{k}__l1q"], q[k], **tol)
        if BOUNDS[k][0] > 0 or BOUNDS[k][1] < 0:
            assert np.abs(unclipped[k] - q[k]).max() > 0.05     # the bound held some back


@pytest.fixture(scope="module")
def load_dtype_l1(hog_cache_dir):
    import hogwild_dsl
    return lambda dtype: hogwild_dsl.load(text=BOUNDED_L1, cache_dir=hog_cache_dir, dtype=dtype)


def bounded_lasso(constraint: str):
    """lasso_problem's data and spec with `constraint` on w (coefficients of either sign, so
    that the bound binds)."""
    spec, X, y, alpha = lasso_problem(seed=3)
    return spec.replace("param w[feature] = 0", f"param w[feature] {constraint} = 0"), X, y, alpha


def support_f1(ours: np.ndarray, theirs: np.ndarray) -> float:
    a, b = set(np.flatnonzero(ours)), set(np.flatnonzero(theirs))
    return 2 * len(a & b) / (len(a) + len(b))


@pytest.mark.parametrize("sync", SYNCS)
def test_l1_with_a_lower_bound_finds_the_nonnegative_lasso(load_spec, sync):
    """`>= 0` with `reg l1`: scikit-learn's Lasso(positive=True) (alpha = LAMBDA / n, as in
    lasso_problem): the same support, with exact zeros, and its objective within 2%."""
    from sklearn.linear_model import Lasso
    spec, X, y, alpha = bounded_lasso(">= 0")
    mod = load_spec(text=spec)
    t = mod.Trainer(threads=2, epochs=60, step=0.02, decay=0.95, seed=0,
                    sync=sync).fit(X=X, y=y)
    sk = Lasso(alpha=alpha, fit_intercept=False, positive=True, tol=1e-10,
               max_iter=100_000).fit(X, y)
    w = t.params["w"]
    assert w.min() >= 0 and 0 < np.count_nonzero(w) < X.shape[1] / 2     # exact zeros
    assert support_f1(w, sk.coef_) >= 0.9, (np.flatnonzero(w), np.flatnonzero(sk.coef_))
    best = 0.5 * np.mean((X @ sk.coef_ - y) ** 2) + alpha * np.abs(sk.coef_).sum()
    assert t.objective(X=X, y=y) <= 1.02 * best


def test_l1_with_a_box_finds_the_box_constrained_lasso(load_spec):
    """`in [0, 1.5]` with `reg l1`, where the upper bound binds: on [0, 1.5] the l1 norm is
    linear, so L-BFGS-B solves the problem exactly; the same support and objective within 2%."""
    from scipy.optimize import minimize
    spec, X, y, alpha = bounded_lasso("in [0, 1.5]")
    mod = load_spec(text=spec)
    t = mod.Trainer(threads=1, epochs=60, step=0.02, decay=0.95, seed=0).fit(X=X, y=y)

    def objective(w):
        r = X @ w - y
        return 0.5 * np.mean(r ** 2) + alpha * w.sum(), X.T @ r / len(y) + alpha

    best = minimize(objective, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B",
                    bounds=[(0, 1.5)] * X.shape[1], options={"ftol": 1e-15, "gtol": 1e-12})
    w, exact = t.params["w"], np.where(best.x > 1e-8, best.x, 0.0)
    assert np.sum(exact == 1.5) >= 2                      # the box binds
    assert w.min() >= 0 and w.max() <= 1.5
    assert support_f1(w, exact) >= 0.9, (np.flatnonzero(w), np.flatnonzero(exact))
    assert t.objective(X=X, y=y) <= 1.02 * best.fun
