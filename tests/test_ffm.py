"""3-D params and index data read at a summed index (LANGUAGE.md: `param V[feature, field, k]`
read as `V[j, f[j2]]`), through the shipped field-aware FM and small specs of their own: the
objective against an independent numpy FFM to 1e-8, one SGD step against finite differences
in every sync mode (coinciding touches adding up), constraints and inits on 3-D rows,
adagrad_row per (a, b) row, data checks and check's errors."""
import re

import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from hogwild_dsl import shipped
from hogwild_dsl import DataError, SpecError
from hogwild_dsl.interp import Interpreter, project_rows
from test_new_forms import SYNCS, check_one_step

LAM = 1e-5        # specs/ffm.hog's reg


def ffm_data(n=5, d=6, fields=3, nnz=4, seed=0):
    """Rows of `nnz` nonzeros; features 0 and 1 share field 0 (two nonzeros of one field)."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for i in range(n):
        c = np.sort(rng.choice(d, size=nnz, replace=False))
        rows += [i] * nnz
        cols += list(c)
    X = sp.csr_matrix((rng.uniform(-1, 1, len(rows)), (rows, cols)), shape=(n, d))
    y = rng.choice([-1.0, 1.0], size=n)
    f = np.array([0, 0] + list(rng.integers(0, fields, size=d - 2)))
    f[2] = fields - 1              # every field present
    return {"X": X, "y": y, "f": f}


def numpy_ffm(p, X, y, f):
    """The FFM objective written directly: pairs j < j2 of each row, l2 split by degree."""
    X = sp.csr_matrix(X)
    deg = np.bincount(X.indices, minlength=X.shape[1])
    total = 0.0
    for i in range(X.shape[0]):
        cols = X.indices[X.indptr[i]:X.indptr[i + 1]]
        vals = X.data[X.indptr[i]:X.indptr[i + 1]]
        z = p["w0"] + vals @ p["w"][cols]
        for a in range(len(cols)):
            for b in range(a + 1, len(cols)):
                j, j2 = cols[a], cols[b]
                z += vals[a] * vals[b] * p["V"][j, f[j2]] @ p["V"][j2, f[j]]
        total += np.logaddexp(0.0, -y[i] * z)
        total += sum(LAM * (p["w"][j] ** 2 + np.sum(p["V"][j] ** 2)) / deg[j] for j in cols)
    return total / X.shape[0]


def test_ffm_objective_matches_numpy(load_spec):
    mod = load_spec("ffm")
    data = ffm_data()
    t = mod.Trainer(epochs=0, seed=3).fit(**data)
    assert t.params["V"].shape == (6, 3, 4)
    t.params["w"][:] = np.linspace(-0.5, 0.5, 6)
    t.params["w0"][...] = 0.2
    t.params["V"][...] += 0.3 * np.random.default_rng(1).normal(size=(6, 3, 4))
    want = numpy_ffm(t.params, **data)
    assert abs(t.objective(**data) - want) <= 1e-8 * max(1.0, abs(want))
    prob = t.predict(**{k: v for k, v in data.items() if k != "y"})
    assert prob.shape == (5,) and np.all((prob > 0) & (prob < 1))


@pytest.mark.parametrize("sync", SYNCS)
def test_ffm_one_step_is_the_gradient_with_coinciding_touches(load_spec, sync):
    # one term whose nonzeros 0 and 1 share field 0: V[0, f[1]] = V[0, f[0]] and V[1, f[0]] =
    # V[1, f[1]] are each written by two pairs (and by the diagonal), which must add up
    X = sp.csr_matrix(np.array([[0.7, -1.2, 0.5, 0.0, 0.9]]))
    data = {"X": X, "y": np.array([-1.0]), "f": np.array([0, 0, 1, 2, 1])}
    check_one_step(load_spec("ffm"), data, sync, step=0.05, perturb=0.5)


def test_held_pair_gradients_run_over_one_triangle():
    """FFM's pair gradients V[j, f[j2]] are held in scratch (two nonzeros of one field write
    one coordinate), computed over the triangle j <= j2, each point with its mirror (the step
    stays exact: the test above). Under every update rule they are summed into the points of
    the reg's nest over V[j, field, k], which adds them before its own write
    (BlockLowering.absorb): no pass of their own. Under AdaGrad this is API.md's rule, one
    g^2 per coordinate of the term's whole gradient (a pass of their own added each point's
    g^2 apart: the first step of a V[j, f] that two nonzeros of field f reach was off by more
    than a step, test_user_objectives6.py)."""
    from hogwild_dsl.lower import lower
    block = lower(hogwild_dsl.check(shipped.path("ffm").read_text())).blocks[0]
    triangle = "range(_p_j_X + 1, "          # the forward pairs, then the held nest
    for body in (block.update_plain.body, block.update_atomic.body,
                 block.update_plain_adaptive.body, block.update_atomic_adaptive.body):
        text = "\n".join(body)
        assert text.count(triangle) == 2
        assert re.search(r"_g\d+ = _g\d+ \+ _buf\d+\[", text)       # the reg's nest adds them
        assert not re.search(r"V_\[[^\]]*_y_f_c_j2?_X[^\]]*\] = ", text)    # no pass of its own


@pytest.mark.parametrize("sync", SYNCS)
def test_index_data_at_a_summed_index_everywhere(load_spec, sync):
    # f[j] as the index of a 1-D param, of a 2-D param's row and of dense data, at j == j2
    text = """
model summed
dim example, feature, group
const k = 2
data X[example, feature] : sparse
data g[feature] : index(group)
data c[group, k] : dense
param b[group] = 0.5
param W[group, k] ~ normal(0, 0.5)
for i in example:
    loss sum(j in X[i]: X[i, j] * (b[g[j]]^2 + dot(W[g[j]], c[g[j]]))) + sum(j in X[i]: sum(j2 in X[i]: b[g[j]] * b[g[j2]]))^2
"""
    X = sp.csr_matrix(np.array([[0.5, 1.5, -1.0, 0.0]]))
    data = {"X": X, "g": np.array([1, 1, 0, 2]), "c": np.array([[1.0, -1], [0.5, 2], [3, 1]])}
    check_one_step(load_spec(text=text), data, sync, step=1e-3, perturb=0.3)


CON_SPEC = """
model con3
dim row, a, b
data r[row, a] : sparse
data g[a] : index(b)
param V[a, b, k] {con} {init}
const k = 3
for (u, v) in r:
    loss r[u, v] * sum(j in r[u]: dot(V[v, g[j]], V[j, g[v]] + 1))
"""


@pytest.mark.parametrize("con,init", [
    ("in simplex", "= uniform"), (">= 0", "~ uniform(0, 1)"), ("in [-0.5, 0.5]", "= 0.25"),
    ("in ball(0.8)", "~ normal(0, 1)"), ("", "~ normal(0, 0.2)")])
def test_3d_param_constraints_and_inits_follow_the_interpreter(load_spec, con, init):
    text = CON_SPEC.format(con=con, init=init)
    mod = load_spec(text=text)
    r = sp.csr_matrix(np.array([[0.0, 1.0, -2.0], [0.5, 0.0, 1.5]]))
    data = {"r": r, "g": np.array([1, 0, 1])}
    t = mod.Trainer(epochs=0, seed=5).fit(**data)
    V = t.params["V"]
    assert V.shape == (3, 2, 3)
    if init == "= uniform":
        np.testing.assert_allclose(V, 1 / 3)
    elif init == "= 0.25":
        np.testing.assert_allclose(V, 0.25)
    spec = hogwild_dsl.check(text)
    noise = np.random.default_rng(0).uniform(0, 0.5, size=V.shape)
    start = {"V": project_rows(V + noise, spec.param("V").constraint)}
    interp = Interpreter(spec, data)
    want = interp.sgd_epoch(start, 0.3)
    for sync in SYNCS:
        t2 = mod.Trainer(epochs=1, step=0.3, decay=1.0, sync=sync, order="stored", threads=1)
        t2.params = {k: v.copy() for k, v in start.items()}
        t2.fit(**data)
        np.testing.assert_allclose(t2.params["V"], want["V"], rtol=1e-7, atol=1e-8)  # interp: FD
    got = t2.params["V"]
    if con == "in simplex":
        np.testing.assert_allclose(got.sum(axis=-1), 1.0)
        assert got.min() >= 0
    elif con == ">= 0":
        assert got.min() >= 0
    elif con.startswith("in ["):
        assert got.min() >= -0.5 and got.max() <= 0.5
    elif con.startswith("in ball"):
        assert np.linalg.norm(got, axis=-1).max() <= 0.8 + 1e-12
    if con:
        assert not np.allclose(got, start["V"])        # the step did move the params


def test_adagrad_row_keeps_one_accumulator_per_row_of_a_3d_param(load_spec):
    text = """
model arow
dim example, a, b
const k = 3
data e[example] : index(a)
data h[example] : index(b)
data y[example] : real
param V[a, b, k] ~ normal(0, 1)
for i in example:
    loss (sum(V[e[i], h[i]]) - y[i])^2
"""
    mod = load_spec(text=text)
    data = {"e": np.array([1, 0, 1]), "h": np.array([1, 1, 1]), "y": np.array([1.0, -2.0, 0.5])}
    t = mod.Trainer(epochs=0, seed=2, optimizer="adagrad_row", step=0.1, decay=1.0,
                    order="stored", threads=1).fit(**data)
    V, G = t.params["V"].copy(), np.zeros((2, 2))
    for i in range(3):                      # LIBMF's rule, by hand
        a, b = data["e"][i], data["h"][i]
        g = 2 * (V[a, b].sum() - data["y"][i]) * np.ones(3)
        G[a, b] += np.mean(g ** 2)
        V[a, b] -= 0.1 * g / np.sqrt(G[a, b] + 1e-8)
    t.epochs = 1
    t.fit(**data)
    np.testing.assert_allclose(t.params["V"], V, rtol=1e-12)


def test_3d_params_save_load_and_pickle(load_spec, tmp_path):
    import pickle
    mod = load_spec("ffm")
    data = ffm_data()
    t = mod.Trainer(epochs=2, seed=1, optimizer="adagrad_row").fit(**data)
    t.save(tmp_path / "m.npz")
    t2 = mod.Trainer.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(t2.params["V"], t.params["V"])
    assert np.load(tmp_path / "m.npz")["V"].shape == (6, 3, 4)
    t3 = pickle.loads(pickle.dumps(t))
    assert t3.objective(**data) == t.objective(**data)


def test_index_data_read_at_a_summed_index_is_checked_before_any_kernel(load_spec):
    mod = load_spec("ffm")
    data = ffm_data()
    for bad, what in [(np.array([0, 1, 2, -1, 0, 1]), "-1"),
                      (np.array([0, 1, 2, 0.5, 0, 1]), "0.5")]:
        with pytest.raises(DataError, match="'f'") as err:
            mod.Trainer(epochs=1).fit(**{**data, "f": bad})
        assert what in str(err.value)
    with pytest.raises(DataError, match="'f'"):            # shorter than dim feature
        mod.Trainer(epochs=1).fit(**{**data, "f": data["f"][:4]})


BASE = """model m
dim example, feature, field
const k = 4
data X[example, feature] : sparse
data y[example] : real
data f[feature] : index(field)
param V[feature, field, k] ~ normal(0, 0.1)
for i in example:
"""


@pytest.mark.parametrize("body,where,words", [
    ("    loss sum(j in X[i]: dot(V[j], V[j]))", "V[j]", ["matrix", "V[feature, field]"]),
    ("    loss sum(j in X[i]: V[j, f[j], 0, 1])", "1]", ["3 dims", "4 indices"]),
    ("    loss sum(j in X[i]: sum(k2 in k: V[j, k2]^2))", "k2]", ["position 2", "field"]),
    ("    loss sum(j in X[i]: sqnorm(V[f[j], f[j]]))", "f[j], f", ["points into field",
                                                                   "index(feature)"]),
    ("    loss sum(j in X[i]: sqnorm(V[j, f[j]]))\n    reg l2(0.1) on V[X[i], f]", "X[i], f]",
     ["an index must be"]),
    ("    loss sum(j in X[i]: sqnorm(V[j, f[j]]))\n    reg l2(0.1) on V[X[i], f, 0]", "f, 0]",
     ["one index", "two for a row of a 3-D param"]),
    ("    loss sum(j in X[i]: sqnorm(V[j, f[j]]))\n    reg l2(0.1) on V", "V",
     ["whole 3-D"]),
])
def test_check_errors_for_misused_3d_params(body, where, words):
    text = BASE + body + "\n"
    with pytest.raises(SpecError) as err:
        hogwild_dsl.check(text)
    e = err.value
    line = text.splitlines()[e.line - 1]
    assert line[e.column - 1:].startswith(where), (line, e.column)
    for w in words:
        assert w in str(e), (w, str(e))
    assert "^" in str(e)


def test_check_refuses_a_4d_param_and_prints_3d_reads():
    with pytest.raises(SpecError, match="at most 3 dims"):
        hogwild_dsl.check(BASE.replace("param V[feature, field, k]",
                                       "param V[feature, field, k, k]") +
                          "    loss sum(j in X[i]: V[j, f[j], 0])\n")
    from hogwild_dsl.derive import gradients_text
    text = gradients_text(hogwild_dsl.check(shipped.text("ffm")))
    assert "d/dV[j_X, f[j2_X], k_k]" in text and "V[j2_X, f[j_X], k_k]" in text
    from hogwild_dsl.report import summary
    assert "V[j in X[i], f[j2 in X[i]], :]" in summary(hogwild_dsl.check(shipped.text("ffm")))


SYMMETRIC = """
model sym
dim example, feature
const k = 3
data X[example, feature] : sparse
data y[example] : real
param w[feature] ~ normal(0, 0.5)
param c[k] ~ normal(0, 0.5)
for i in example:
    let pairs = sum(j in X[i]: sum(j2 in X[i]: X[i, j] * w[j] * w[j2] * X[i, j2]))
    let dense = sum(a in k: sum(b in k: c[b] * exp(c[a] * c[b]) * c[a]))
    let lopsided = sum(j in X[i]: sum(j2 in X[i]: X[i, j] * w[j2]^2))
    loss (pairs + dense + lopsided - y[i])^2
"""


def test_symmetric_double_sums_run_over_one_triangle_and_match_the_interpreter(load_spec):
    from hogwild_dsl.lower import lower
    body = "\n".join(lower(hogwild_dsl.check(SYMMETRIC)).blocks[0].loss.body)
    assert "range(_p_j_X + 1," in body and "range(_d_k_k + 1," in body
    assert body.count("range(_p_j_X + 1,") == 1          # not the lopsided one
    mod = load_spec(text=SYMMETRIC)
    X = sp.csr_matrix(np.array([[0.5, -1.0, 2.0, 0.0], [0.0, 1.5, 0.0, -0.5]]))
    data = {"X": X, "y": np.array([0.3, -0.2])}
    t = mod.Trainer(epochs=0, seed=4).fit(**data)
    start = {n: v.copy() for n, v in t.params.items()}
    interp = Interpreter(hogwild_dsl.check(SYMMETRIC), data)
    assert abs(t.objective(**data) - interp.objective(start)) <= 1e-10
    want = interp.sgd_epoch(start, 0.01)
    for sync in SYNCS:
        t2 = mod.Trainer(epochs=1, step=0.01, decay=1.0, sync=sync, order="stored", threads=1)
        t2.params = {n: v.copy() for n, v in start.items()}
        t2.fit(**data)
        for n in start:
            np.testing.assert_allclose(t2.params[n], want[n], rtol=1e-6, atol=1e-8)


ROW3 = """
model row3
dim user, item, group
const k = 2
data r[user, item] : sparse
data g[item] : index(group)
param V[user, group, k] ~ normal(0, 0.5)
for (u, v) in r:
    loss (sum(V[u, g[v]]) - r[u, v])^2
    reg l2(0.3) on V[u, g[v]]{unscaled}
"""


@pytest.mark.parametrize("sync", SYNCS)
def test_a_row_of_a_3d_param_as_an_unscaled_reg_target(load_spec, sync):
    text = ROW3.format(unscaled=" unscaled")
    mod = load_spec(text=text)
    r = sp.csr_matrix(np.array([[1.0, 0.0, -2.0], [0.5, 1.5, 0.0]]))
    data = {"r": r, "g": np.array([1, 0, 1])}
    t = mod.Trainer(epochs=0, seed=5).fit(**data)
    start = {n: v.copy() for n, v in t.params.items()}
    interp = Interpreter(hogwild_dsl.check(text), data)
    assert abs(t.objective(**data) - interp.objective(start)) <= 1e-10
    want = interp.sgd_epoch(start, 0.05)
    t2 = mod.Trainer(epochs=1, step=0.05, decay=1.0, sync=sync, order="stored", threads=1)
    t2.params = {n: v.copy() for n, v in start.items()}
    t2.fit(**data)
    np.testing.assert_allclose(t2.params["V"], want["V"], rtol=1e-7, atol=1e-8)


def test_a_row_of_a_3d_param_needs_unscaled():
    with pytest.raises(SpecError, match="unscaled") as err:
        hogwild_dsl.check(ROW3.format(unscaled=""))
    assert err.value.hint and "V[u]" in err.value.hint


def test_diagonals_that_cancel_are_neither_computed_nor_written():
    """specs/ffm.hog spells the pairs j != j2 as (pairs - diag) / 2: the gradient of
    V[j, f[j]] from `diag` cancels the pairs' own at j2 = j. The diagonal site folds into the
    held triangle's diagonal (lower.BlockLowering.fold_diagonals), which the sum, 0, then
    skips; and the forward's pairs - diag is one sum over j2 > j (lower.fold_forward_diagonals),
    which never reads V[j, f[j]] (the objective stays exact: test_ffm_objective_matches_numpy)."""
    from hogwild_dsl.lower import lower
    block = lower(hogwild_dsl.check(shipped.path("ffm").read_text())).blocks[0]
    diagonal = "(_c_j_X * _n_field + _y_f_c_j_X) * 4"      # V[j, f[j], :]
    for fn in (block.update_plain, block.update_atomic, block.update_hot):
        gather, scatter = "\n".join(fn.body).split("# scatter")
        assert diagonal not in scatter, fn.name
        assert diagonal not in gather, fn.name
    # under AdaGrad each coordinate's adds stay apart (each reads the sum of g^2 before it)
    assert diagonal in "\n".join(block.update_plain_adaptive.body).split("# scatter")[1]
    for fn in (block.loss, block.predict):
        assert diagonal not in "\n".join(fn.body), fn.name


FOLDED = """
model folded
dim example, feature, field
const k = 2
data X[example, feature] : sparse
data f[feature] : index(field)
param V[feature, field, k] ~ normal(0, 0.5)
for i in example:
    let pairs = sum(j in X[i]: sum(j2 in X[i]: X[i, j] * X[i, j2] * dot(V[j, f[j2]], V[j2, f[j]])))
    let diag = sum(j in X[i]: X[i, j]^2 * sqnorm(V[j, f[j]]))
    loss (0.3 * pairs - 0.1 * diag - 0.2)^2
"""


@pytest.mark.parametrize("sync", SYNCS)
def test_a_diagonal_that_does_not_cancel_is_folded_and_exact(load_spec, sync):
    from hogwild_dsl.lower import lower
    body = "\n".join(lower(hogwild_dsl.check(FOLDED)).blocks[0].update_plain.body)
    assert "(_c_j_X * _n_field + _y_f_c_j_X) * 2" in body.split("# scatter")[1]
    X = sp.csr_matrix(np.array([[0.7, -1.2, 0.5, 0.0, 0.9]]))
    data = {"X": X, "f": np.array([0, 0, 1, 2, 1])}      # two nonzeros in fields 0 and 1
    check_one_step(load_spec(text=FOLDED), data, sync, step=0.05, perturb=0.5)
