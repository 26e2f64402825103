"""Regression tests of the back end (check -> derive -> lower -> emit) on specs a user might
write: each compares the generated trainer with an independent numpy computation."""
import re

import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from hogwild_dsl import emit, lower
from hogwild_dsl.errors import HogwildError

from test_codegen import check_one_step


# ---------------------------------------------------------------- hoisting out of loops

FUNCS = {"exp": np.exp, "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "log1p": np.log1p,
         "sqrt": np.sqrt, "abs": np.abs, "softplus": lambda x: np.log1p(np.exp(x))}
HOIST = """model hoist
dim example, k
data z[example, k] : dense
data A[k, k] : dense
data d[k] : real
param c = 1
for i in example:
""" + "".join(f"    loss log(c + dot(z[i], sum(m in k: A[m] * {f}(d[m]))))\n" for f in FUNCS) + \
    "    predict log(c + dot(z[i], sum(m in k: A[m] * exp(d[m]))))\n"


def test_a_function_of_an_inner_sum_index_is_not_hoisted_above_that_sum(load_spec):
    """The issue's example: a scalar function of `m` inside a vector-valued sum over `m` was
    computed before the loop over `m` (an uninitialised loop variable was read)."""
    mod = load_spec(text=HOIST)
    data = {"z": np.array([[1.0, 10, 100], [2.0, -1, 0.5]]), "A": np.triu(np.ones((3, 3)), 1),
            "d": np.array([0.3, 0.2, 0.5])}
    t = mod.Trainer(threads=1, epochs=0).fit(**data)
    c = float(t.params["c"])
    inner = {f: data["z"] @ (data["A"] * fn(data["d"])[:, None]).sum(axis=0)
             for f, fn in FUNCS.items()}                  # one value per example and function
    want = np.mean(sum(np.log(c + v) for v in inner.values()))
    assert t.objective(**data) == pytest.approx(want, rel=1e-12)
    assert t.predict(**data) == pytest.approx(np.log(c + inner["exp"]), rel=1e-12)
    step = 1e-3
    t2 = mod.Trainer(threads=1, epochs=1, step=step, decay=1.0, order="stored").fit(**data)
    c_new = c
    for row in range(2):                                  # d/dc of each term, term by term
        c_new -= step * sum(1 / (c_new + v[row]) for v in inner.values())
    assert float(t2.params["c"]) == pytest.approx(c_new, rel=1e-12)


# ---------------------------------------------------------------- writes that may alias

ALIAS = """model alias
dim node
const r = 2
data E[node, node] : sparse
param x[node, r] = 0
param xb[node, r] in [-5, 5] = 0
param xl[node, r] = 0
for (u, v) in E:
    loss E[u, v] * (dot(x[u], x[v]) + dot(xb[u], xb[v]) + dot(xl[u], xl[v]))
    reg l1(0.01) on xl[u], xl[v]
"""


@pytest.mark.parametrize("sync", ["hogwild", "atomic", "lock"])
def test_two_writes_of_one_term_to_one_coordinate_add_up(load_spec, sync):
    """for (u, v) in E with u == v: x[u] and x[v] are one row, and both gradients (taken at
    the old point) must be applied, also through box clipping and the l1 step."""
    mod = load_spec(text=ALIAS)
    E = sp.csr_matrix((np.array([1.0, -1.0, 0.5]), (np.array([0, 1, 2]), np.array([0, 1, 3]))),
                      shape=(4, 4))
    rng = np.random.default_rng(0)
    start = {"x": rng.uniform(0.5, 1, (4, 2)), "xb": np.array([[1, 2], [4.95, -1], [1, 1],
                                                               [2, 2.0]]),
             "xl": rng.uniform(0.5, 1, (4, 2))}
    step = 0.01
    t = mod.Trainer(threads=1, epochs=1, step=step, decay=1.0, order="stored", sync=sync)
    t.params = {k: v.copy() for k, v in start.items()}
    t.fit(E=E)
    want = {k: v.copy() for k, v in start.items()}
    coo = E.tocoo()
    # deg(c) of the line's two targets: touches as u or as v (2 for a self-loop's row)
    deg = np.bincount(coo.row, minlength=4) + np.bincount(coo.col, minlength=4)
    for u, v, e in zip(coo.row, coo.col, coo.data):     # one term after another
        for name in want:
            p = want[name]
            gu, gv = e * p[v], e * p[u]
            if name == "xl":
                gu = gu + 0.01 * np.sign(p[u]) / deg[u]
                gv = gv + 0.01 * np.sign(p[v]) / deg[v]
            p[u] -= step * gu
            p[v] -= step * gv
            if name == "xb":
                np.clip(p, -5, 5, out=p)
    for name in want:
        np.testing.assert_allclose(t.params[name], want[name], rtol=1e-13, err_msg=name)
    assert t.params["xb"][1, 0] == 5.0                    # the clipped case was reached
    np.testing.assert_allclose(t.params["x"][0], start["x"][0] * (1 - 2 * step))   # 2 x0


# ---------------------------------------------------------------- names


NAMES = """model names
dim range, EOF
const nterms_0 = 2
data X__indptr[range, EOF] : sparse
data errno[range] : real
param t = 0.5
param M[EOF] = 0
param step[EOF, nterms_0] ~ normal(0, 1)
param NULL = 0.25
param Model_ = 0.1
for linux in range:
    let scratch = dot(X__indptr[linux], M) + t + sum(M_PI in X__indptr[linux]: X__indptr[linux, M_PI] * sum(int in nterms_0: step[M_PI, int]))
    loss (scratch - errno[linux])^2 + NULL^2 + Model_^2
    reg l2(0.1) on M
    predict scratch
"""


def test_user_names_never_meet_the_generated_codes_names(load_spec):
    """Keywords, C macros and the generated code's own names, as user names."""
    mod = load_spec(text=NAMES)
    X = sp.csr_matrix(np.array([[0.5, 0.0, -1.0]]))
    data = {"X__indptr": X, "errno": np.array([0.3])}
    t = mod.Trainer(threads=1, epochs=0, seed=3).fit(**data)
    p = t.params
    x = X.toarray()[0]
    scratch = x @ p["M"] + p["t"] + x @ p["step"].sum(axis=1)
    want = (scratch - 0.3) ** 2 + p["NULL"] ** 2 + p["Model_"] ** 2 + 0.1 * (p["M"] ** 2).sum()
    assert t.objective(**data) == pytest.approx(float(want), rel=1e-12)
    assert t.predict(X__indptr=X) == pytest.approx([float(scratch)], rel=1e-12)
    check_one_step(mod, data, 1)


def test_a_missing_array_is_an_error_not_a_null_pointer(load_spec):
    mod = load_spec("svm")
    X = sp.csr_matrix(np.array([[1.0, 0.0]]))
    kernels = mod.Trainer.kernels
    key = kernels.Kernel.key          # the layout's key of (role, of)
    arrays = {key("indptr", "X"): X.indptr.astype(np.int64),
              key("indices", "X"): X.indices.astype(np.int32),
              key("values", "X"): X.data, key("param", "w"): np.zeros(2)}
    sizes = {key("maxnnz", "X"): 1, key("nterms", 0): 1, key("dim", "example"): 1,
             key("dim", "feature"): 2, key("optimizer"): 0}
    with pytest.raises(HogwildError, match=f"optimizer's state '{key('acc', 'w')}' was not given"):
        kernels.Kernel(arrays, sizes | {key("optimizer"): 1})   # adagrad reads its sums of squares
    k = kernels.Kernel(arrays, sizes)                        # sgd reads none
    with pytest.raises(HogwildError, match=f"'{key('deg', '_deg0_X')}' .* was not given"):
        k.epoch(np.zeros(1, dtype=np.int64), 0, 0.1, 1, 0)
    k = kernels.Kernel(arrays | {key("deg", "_deg0_X"): np.ones(2)}, sizes)
    with pytest.raises(HogwildError, match="'y' .* was not given"):
        k.objective_sum(1)
    out = np.zeros(1)
    k.predict(out, 1)                  # predict reads neither
    assert out[0] == 0.0


# ---------------------------------------------------------------- lets, norm2, bounds


def _let_chain(n, op):
    lines = ["let a0 = w0"] + [f"let a{k} = {op.format(p=f'a{k - 1}')}" for k in range(1, n)]
    return ("model chain\ndim example\ndata y[example] : real\nparam w0 = 1\nfor i in example:\n"
            + "".join(f"    {line}\n" for line in lines) + f"    loss a{n - 1} * y[i]\n")


def test_lets_that_square_each_other_stay_shared(load_spec):
    """a15 = w0^(2^15): a tree of 2^15 leaves as a DAG of 16 nodes, and so is its code."""
    text = _let_chain(16, "{p} * {p}")
    plan = lower.lower(hogwild_dsl.check(text))
    assert len(plan.blocks[0].update_plain.body) < 60
    mod = load_spec(text=text)
    w0, y, step = 1.00001, np.array([0.5]), 1e-9
    t = mod.Trainer(threads=1, epochs=0).fit(y=y)
    t.params["w0"][...] = w0
    assert t.objective(y=y) == pytest.approx(w0 ** 2 ** 15 * 0.5, rel=1e-12)
    t2 = mod.Trainer(threads=1, epochs=1, step=step, decay=1.0, order="stored")
    t2.params = {"w0": np.array(w0)}
    t2.fit(y=y)
    want = w0 - step * 0.5 * 2 ** 15 * w0 ** (2 ** 15 - 1)
    assert float(t2.params["w0"]) == pytest.approx(want, rel=1e-12)


def test_a_long_chain_of_lets_is_a_spec_error_not_a_recursion_error():
    with pytest.raises(hogwild_dsl.SpecError) as err:
        hogwild_dsl.check(_let_chain(600, "{p} + 1"))
    assert err.value.line is not None and "levels deep" in str(err.value)


def test_norm2_at_zero_takes_the_subgradient_zero(load_spec):
    mod = load_spec(text="""model n2
dim example, feature
data X[example, feature] : sparse
param w[feature] = 0
for i in example:
    loss norm2(w) + dot(X[i], w)
""")
    X = sp.csr_matrix(np.array([[1.0, 0.0, 2.0]]))
    t = mod.Trainer(threads=1, epochs=1, step=0.1, decay=1.0, order="stored").fit(X=X)
    np.testing.assert_allclose(t.params["w"], [-0.1, 0.0, -0.2], rtol=1e-15)


def test_box_and_lower_bounds_on_0d_params(load_spec):
    mod = load_spec(text="""model bounds
dim example
data y[example] : real
param b in [0, 1] = 2
param c >= 0.25 = -1
for i in example:
    loss (b + c - y[i])^2
""")
    y = np.array([10.0])
    t = mod.Trainer(threads=1, epochs=0).fit(y=y)
    assert float(t.params["b"]) == 1.0 and float(t.params["c"]) == 0.25    # projected init
    t = mod.Trainer(threads=1, epochs=1, step=0.1, decay=1.0).fit(y=y)
    assert float(t.params["b"]) == 1.0                                      # clipped at 1
    assert float(t.params["c"]) == pytest.approx(0.25 + 0.1 * 2 * (10 - 1.25))


# ---------------------------------------------------------------- the cache key


def test_every_stage_that_shapes_the_code_is_in_the_generator_hash(monkeypatch):
    """A change to check.py, parse.py or the grammar must change every signature."""
    real = emit.resources.files
    base = emit.generator_hash.__wrapped__()

    class Edited:
        def __init__(self, package, name):
            self.root, self.name = real(package), name

        def joinpath(self, *parts):
            path = self.root.joinpath(*parts)
            if parts[-1] != self.name:
                return path
            return type("F", (), {"read_bytes": lambda _: path.read_bytes() + b"\n# edit"})()

    for package, name in (("hogwild_dsl", "check.py"), ("hogwild_dsl", "parse.py"),
                          ("hogwild_dsl.grammar", "hog.lark")):
        monkeypatch.setattr(emit.resources, "files",
                            lambda pkg, p=package, n=name: Edited(pkg, n if pkg == p else None))
        assert emit.generator_hash.__wrapped__() != base, name


# ---------------------------------------------------------------- algebra of the passes


def test_the_zero_test_expands_products_and_squares():
    """lower._is_zero decides whether folded diagonal gradients cancel (fold_diagonals)."""
    from hogwild_dsl import ir
    a, b = ir.ParamAt("a", ()), ir.ParamAt("b", ())
    s = ir.Func("sigmoid", (b,))

    def mul(*fs):
        out = fs[0]
        for f in fs[1:]:
            out = ir.Binary("*", out, f)
        return out
    half, two = ir.Const(0.5), ir.Const(2.0)
    square = ir.Binary("^", a, two)
    assert lower._is_zero(ir.Binary("-", mul(a, a), square))
    # -(0.5 s a a b) - (0.5 b s a^2) + s a^2 b: FFM's diagonal, up to its factors' order
    halves = ir.Binary("+", ir.Neg(mul(half, s, a, a, b)), ir.Neg(mul(half, b, s, square)))
    assert lower._is_zero(ir.Binary("+", halves, mul(s, square, b)))
    assert not lower._is_zero(ir.Binary("-", mul(a, a), a))
    assert not lower._is_zero(ir.Binary("-", mul(a, b), mul(a, a)))
    assert not lower._is_zero(ir.Binary("-", ir.Binary("^", a, ir.Const(0.5)), a))


# ---------------------------------------------------------------- held gradients absorbed


ABSORB = """model absorbs
dim example, feature, group
const k = 2
data X[example, feature] : sparse
data g[feature] : index(group)
param W[feature, group, k] {con} ~ uniform(0.1, 0.6)
param b[group] = 0.3
for i in example:
    loss sum(j in X[i]: sum(j2 in X[i]: X[i, j] * X[i, j2] * sqnorm(W[j, g[j2]]) * b[g[j]]))^2
    reg l2(0.5) on W[X[i]]
"""


@pytest.mark.parametrize("con", ["", ">= 0"])
@pytest.mark.parametrize("sync", ["hogwild", "atomic", "lock"])
def test_held_gradients_added_by_a_nest_that_writes_their_coordinates(load_spec, con, sync):
    """W[j, g[j2]] is written from several points (nonzeros 0 and 1 share group 0): its
    gradients are held. Under sgd, where the reg's nest over W[j, group, k] writes every
    coordinate they touch, they are summed into that nest's points and added with its own
    gradient (lower.BlockLowering.absorb): the step stays exact, the coinciding touches add
    up in every sync mode. Under a bound too: the term's whole step is clipped once
    (LANGUAGE.md: projection right after the update), not each partial write (they kept
    their own pass, clipped apart, before test_user_objectives6.py)."""
    from test_new_forms import check_one_step as one_step
    text = ABSORB.format(con=con)
    plan = lower.lower(hogwild_dsl.check(text)).blocks[0]
    body = "\n".join(plan.update_plain.body + plan.update_atomic.body)
    assert re.search(r"_g\d+ = _g\d+ \+ _buf\d+\[", body) is not None
    X = sp.csr_matrix(np.array([[0.7, -1.2, 0.0, 0.5, 0.9]]))
    data = {"X": X, "g": np.array([0, 0, 2, 1, 2])}
    one_step(load_spec(text=text), data, sync, step=0.02)     # stays inside the bound


# ---------------------------------------------------------------- a double sum less its diagonal


OFF_DIAGONAL = """model offdiag
dim example, feature
const k = 3
data X[example, feature] : sparse
data y[example] : real
param V[feature, k] ~ normal(0, 0.3)
for i in example:
    let all = sum(j in X[i]: sum(j2 in X[i]: X[i, j] * X[i, j2] * dot(V[j], V[j2])))
    let same = sum(a in X[i]: X[i, a]^2 * sqnorm(V[a]))
    let other = sum(j in X[i]: sum(j2 in X[i]: X[i, j] * X[i, j2] * dot(V[j], V[j2])))
    loss (y[i] - 0.5 * (all - same))^2 + 0.1 * (other - 0.5 * same)
    predict all - same
"""


@pytest.mark.parametrize("sync", ["hogwild", "atomic", "lock"])
def test_a_double_sum_less_its_diagonal_runs_over_the_pairs_only(load_spec, sync):
    """all - same, a symmetric double sum over one row less its diagonal (under another
    index name), is one sum over the pairs j2 > j (lower.fold_forward_diagonals): the
    diagonal is not computed where it cancels; `other - 0.5 * same` does not cancel and
    keeps it. The objective follows the interpreter, a step the gradient."""
    from test_new_forms import check_one_step as one_step
    from hogwild_dsl.interp import Interpreter
    spec = hogwild_dsl.check(OFF_DIAGONAL)
    plan = lower.lower(spec).blocks[0]
    assert "(2.0 * _s" in "\n".join(plan.predict.body)
    assert "_hw_sq(V_[" not in "\n".join(plan.predict.body)       # no diagonal computed
    assert "_hw_sq(V_[" in "\n".join(plan.loss.body)     # `same` is still needed there
    X = sp.csr_matrix(np.array([[0.7, -1.2, 0.0, 0.5], [0.0, 0.3, 1.1, -0.4]]))
    data = {"X": X, "y": np.array([0.4, -0.2])}
    mod = load_spec(text=OFF_DIAGONAL)
    t = mod.Trainer(epochs=0, seed=1).fit(**data)
    want = Interpreter(spec, data).objective(t.params)
    assert abs(t.objective(**data) - want) <= 1e-10 * max(1.0, abs(want))
    np.testing.assert_allclose(t.predict(X=X), Interpreter(spec, data).predict(t.params),
                               rtol=1e-10, atol=1e-12)
    one_step(mod, {"X": X[:1], "y": data["y"][:1]}, sync, step=0.05, perturb=0.2)


# ---------------------------------------------------------------- the exact objective's row regs

ROW_REGS = """model rowregs
dim example, feature, class, user
const k = 3
data X[example, feature] : sparse
data y[example] : index(class)
data who[example] : index(user)
data whom[example] : index(user)
param w[feature] = 0
param W[feature, k] ~ normal(0, 0.1)
param C[class, k] ~ normal(0, 0.1)
param U[user, k] ~ normal(0, 0.1)
param H[user, k] ~ normal(0, 0.1)
for i in example:
    loss softplus(dot(X[i], w) + dot(C[y[i]], U[who[i]]) - sum(j in X[i]: X[i, j] * sum(m in k: W[j, m])))
    reg l2(0.01) on w[X[i]]
    reg l1(0.002) on W[X[i]]
    reg l2(0.03) on C[y[i]]
    reg l2(0.05) on U[who[i]], U[whom[i]]
    reg l2(0.04) on H[who[i]] unscaled
"""


def _row_reg_data(rows, features, users, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(rows, features, density=0.3, format="csr", random_state=seed)
    X.data = rng.normal(size=X.nnz)
    return {"X": X, "y": rng.integers(0, 4, rows), "who": rng.integers(0, users, rows),
            "whom": rng.integers(0, users, rows)}


@pytest.mark.parametrize("rows, features", [(300, 40), (20, 400)])
def test_the_exact_objective_sums_the_row_regs_by_rows(load_spec, rows, features):
    """objective_sum takes each row reg (lower.RowReg) once per touched row where the rows
    are few against the terms (300 x 40), and the terms' shares where they are many (20 x
    400): either way the per-term objective summed over every term (objective_terms), and
    the reg of each touched row once, checked with numpy."""
    mod = load_spec(text=ROW_REGS)
    spec = mod.Trainer.spec
    found = [(r.param, rr.kind) for r, rr in lower.BlockLowering(
        spec, lower.derive(spec)[0]).row_regs()]
    assert found == [("w", "l2"), ("W", "l1"), ("C", "l2")]   # not a shared degree, nor unscaled
    data = _row_reg_data(rows, features, 6)
    t = mod.Trainer(threads=1, epochs=1, step=0.05, seed=3).fit(**data)
    arrays, sizes = t.layout(data)
    kernel = t.kernels.Kernel({**arrays, **t.params}, sizes)
    by_terms = kernel.objective_terms(np.arange(rows), 1)
    assert kernel.objective_sum(1) == pytest.approx(by_terms, rel=1e-12)
    X, p = data["X"], t.params
    touched = np.unique(X.indices)
    rows_part = 0.01 * np.sum(p["w"][touched] ** 2) + \
        0.002 * np.sum(np.abs(p["W"][touched])) + \
        0.03 * np.sum(p["C"][np.unique(data["y"])] ** 2)
    shares = sum(0.01 * p["w"][j] ** 2 / np.sum(X.indices == j) for j in X.indices)
    assert rows_part == pytest.approx(
        shares + 0.002 * sum(np.sum(np.abs(p["W"][j])) / np.sum(X.indices == j)
                             for j in X.indices) +
        0.03 * sum(np.sum(p["C"][c] ** 2) / np.sum(data["y"] == c) for c in data["y"]),
        rel=1e-12)


# ---------------------------------------------------------------- const loop bounds

POISSON_MF = """model poissonmf
dim user, item
const rank = 16
data r[user, item] : sparse
param bu[user] = 0
param P[user, rank] ~ normal(0, 0.1)
param Q[item, rank] ~ normal(0, 0.1)
for (u, v) in r:
    let eta = bu[u] + dot(P[u], Q[v])
    loss exp(eta) - r[u, v] * eta
    reg l2(0.01) on bu[u], P[u], Q[v] unscaled
"""


@pytest.mark.parametrize("rank", [4, 8, 16, 20])
def test_const_loops_outside_a_row_keep_their_literal_and_gcc_does_not_peel_them(load_spec,
                                                                                rank):
    """Outside a sparse row a const loop runs to its literal (vectorised with a known trip
    count), and gcc is told not to peel one longer than SHORT_LOOP whole (peeled, Poisson MF
    at rank 16 ran at 0.64x of the hand-written loop: bench/results/user_kernels.md). The
    updates are right at every rank: one step on terms that do not interact matches finite
    differences."""
    from hogwild_dsl import build
    spec = hogwild_dsl.check(POISSON_MF, {"rank": rank})
    pyx = emit.emit(spec, "poissonmf_kernels")["poissonmf_kernels.pyx"]
    update = pyx[pyx.index("cdef inline void _update_b0_plain("):]
    update = update[:update.index("\n\n\n")]
    headers = re.findall(r"for _d_\w+ in range\((\w+)\):", update)
    assert headers == [str(rank)] * 2, headers    # the gather's and the scatter's
    if build._is_gcc():
        assert f"--param=max-completely-peel-times={lower.SHORT_LOOP}" in build._compile_flags()
    mod = load_spec(text=POISSON_MF, consts={"rank": rank})
    r = sp.csr_matrix((np.array([2.0, 0.0, 1.0]), (np.array([0, 1, 2]), np.array([0, 1, 2]))),
                      shape=(3, 3))
    check_one_step(mod, {"r": r}, 3)


@pytest.mark.parametrize("line, gcc", [
    ("gcc (Debian 12.2.0-14+deb12u1) 12.2.0", True),
    ("cc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0", True),
    ("x86_64-conda-linux-gnu-cc (conda-forge gcc 12.3.0-3) 12.3.0", True),
    ("gcc-13 (Homebrew GCC 13.2.0) 13.2.0", True),
    ("clang version 14.0.6", False),
    ("Apple clang version 15.0.0 (clang-1500.1.0.2.5)", False),
    ("cc: Debian clang version 16.0.6", False),
    ("unknown", False)])
def test_gcc_only_options_go_to_gcc_only(monkeypatch, line, gcc):
    from hogwild_dsl import build
    monkeypatch.setattr(build, "_compiler_facts", lambda: {"version": line, "openmp": False})
    assert build._is_gcc() is gcc
    assert (set(build.GCC_FLAGS) <= set(build._compile_flags())) is gcc


def test_params_and_optimizer_state_start_on_a_cache_line(load_spec):
    """Rows of 2^n doubles then lie on whole cache lines (numpy aligns to 16 bytes only: a
    rank-16 row over three lines made both the generated and the hand-written epoch 1.2x
    slower)."""
    mod = load_spec(text=POISSON_MF)
    r = sp.random(50, 40, density=0.1, format="csr", random_state=0) * 3
    t = mod.Trainer(threads=1, epochs=1, seed=0, optimizer="adagrad").fit(r=r)
    for name, value in t.params.items():
        assert value.ctypes.data % 64 == 0, name
    for name, value in t._accumulators.items():
        assert value.ctypes.data % 64 == 0, name
    again = mod.Trainer(threads=1, epochs=1, seed=0, optimizer="adagrad").fit(r=r)
    for name in t.params:
        assert np.array_equal(t.params[name], again.params[name])
