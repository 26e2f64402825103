"""What the user-objective audits (tests/test_user_objectives*.py) check of every spec, once.

Each audit file holds its specs, its data and its numpy references (the objective and predict
of each spec written out by hand); the generic checks of a compiled spec against them are
here, each with what it checks and why. Tolerances, seeds and steps differ between the audits
where their specs need it: they are arguments, with the values most audits use as defaults.
"""
import contextlib
import itertools
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize

RULES = ("sgd", "adagrad", "adagrad_row")
SYNCS = ("hogwild", "atomic", "lock")


# ---- numpy building blocks of the references ---------------------------------------------

def lg(z):
    """logistic(z) = log(1 + exp(-z)), stably."""
    return np.logaddexp(0, -z)


def sig(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def softplus(z):
    return np.logaddexp(0, z)


def huber(z, delta):
    a = np.abs(z)
    return np.where(a <= delta, 0.5 * z * z, delta * (a - delta / 2))


def lse(Z):
    """logsumexp over the last axis."""
    m = Z.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(Z - m).sum(-1, keepdims=True)))[..., 0]


def scatter(shape, index, values):
    """zeros(shape) with values added at index (repeats summed): a gradient of gathered rows."""
    out = np.zeros(shape)
    np.add.at(out, index, values)
    return out


def signs(v):
    """np.sign with 0 taken as +1."""
    s = np.sign(v)
    return np.where(s == 0, 1.0, s)


def support(X):
    """The columns where X stores an entry."""
    return np.unique(sp.csr_matrix(X).indices)


# ---- the degree split of a reg line -------------------------------------------------------

def rows_of(X):
    """The stored columns of each row of X."""
    X = sp.csr_matrix(X)
    return [X.indices[X.indptr[i]:X.indptr[i + 1]] for i in range(X.shape[0])]


def touched(*rows):
    """The rows some term touches, through any of the given lists of touches."""
    flat = [np.asarray(r, int).ravel() for rs in rows for r in rs]
    return np.unique(np.concatenate(flat + [np.zeros(0, int)]))


def sq(p, *rows):
    """An l2 degree split summed over an epoch (lambda left out): the squared norm of the
    touched rows (one count for the targets of one reg line on one param)."""
    return (p[touched(*rows)] ** 2).sum()


def ab(p, *rows):
    """The l1 one: the absolute values of the touched rows (complex-step safe: a branch on the
    real part)."""
    v = p[touched(*rows)]
    return np.where(np.real(v) >= 0, v, -v).sum()


def each(v):
    """One touch per term, of the row v[term]."""
    return [[a] for a in np.asarray(v).ravel()]


# ---- data -----------------------------------------------------------------------------------

def sparse_X(n, d, seed, density=0.25, every_column=True):
    """Random non-negative CSR rows with entries in [0.2, 1]; every row has an entry (and, with
    every_column, every column: the earlier audits' data leave that to chance)."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, random_state=seed, format="csr",
                  data_rvs=lambda k: rng.uniform(0.2, 1, k))
    cols = np.r_[np.arange(d), rng.integers(0, d, n - d)] if every_column else \
        rng.integers(0, d, n)
    X = X + sp.csr_matrix((np.ones(n), (np.arange(n), cols)), shape=(n, d))
    return sp.csr_matrix(X)


def sX(rng, n, m, seed, dens=0.4):
    """Non-negative CSR rows, none empty (row i has 0.5 added at column i % m)."""
    X = sp.random(n, m, density=dens, random_state=seed, format="csr",
                  data_rvs=lambda k: rng.uniform(0.2, 1, k))
    X = X + sp.csr_matrix((np.full(n, 0.5), (np.arange(n), np.arange(n) % m)), shape=(n, m))
    return sp.csr_matrix(X)


def entries(rng, n, m, lo, hi, seed, density=0.5):
    """A random n x m COO matrix with values uniform in [lo, hi)."""
    r = sp.random(n, m, density=density, random_state=seed, format="coo")
    r.data = rng.uniform(lo, hi, r.nnz)
    return r


def cover(rng, size, n):
    """n indices in [0, size), every one present."""
    v = rng.integers(0, size, n)
    v[:size] = np.arange(size)
    return v


def write_spec(tmp_path, specs, name):
    """specs[name] written to tmp_path/name.hog; its path as a string."""
    path = tmp_path / f"{name}.hog"
    path.write_text(specs[name])
    return str(path)


# ---- gradients and solvers for the references ---------------------------------------------

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


def fd_gradient(f, p, h=1e-6):
    """Central differences of f at params p, per coordinate."""
    grads = {}
    for k, v in p.items():
        g = np.zeros(v.shape)
        for j in np.ndindex(v.shape):
            q = {kk: vv.astype(float).copy() for kk, vv in p.items()}
            q[k][j] = v[j] + h
            up = f(q)
            q[k][j] = v[j] - h
            g[j] = (up - f(q)) / (2 * h)
        grads[k] = g
    return grads


def complex_step(f, p):
    """The gradient of f at params p: Im f(p + 1e-30 i e_j) / 1e-30 per coordinate (exact to
    rounding, for an f written to run on complex numbers)."""
    grads = {}
    for k, v in p.items():
        g = np.zeros(v.shape)
        for j in np.ndindex(v.shape):
            q = {kk: vv.astype(complex) for kk, vv in p.items()}
            q[k][j] += 1e-30j
            g[j] = np.imag(f(q)) / 1e-30
        grads[k] = g
    return grads


def unpack(q, shapes):
    """The params dict {name: shape} laid out in the flat vector q, in order."""
    out, at = {}, 0
    for k, shape in shapes.items():
        size = int(np.prod(shape))
        out[k] = q[at:at + size].reshape(shape)
        at += size
    return out


def flat_minimum(f, shapes, starts, bounds=None):
    """The best L-BFGS-B minimum of f(params dict) from the given flat starts."""
    best = np.inf
    for x0 in starts:
        res = minimize(lambda q: f(unpack(q, shapes)), x0, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 20000, "maxfun": 10 ** 6, "ftol": 1e-15, "gtol": 1e-10})
        best = min(best, res.fun)
    return best


# ---- one step of the update rules, by hand --------------------------------------------------

def rule_step(f, p, step, rule, l1=None, project=None, complex=False):
    """API.md's update of one term at p, whose objective is f(params): the gradient g of each
    coordinate (every access of the term summed, by central differences of f, or with complex
    by its complex step), AdaGrad's scaling of it (adagrad_row: one sum per row, the mean of
    g^2 over the row), the l1 clip (docs/language.md: l1 = {param: (lambda / deg, the
    coordinates the term's `reg l1` covers)}; the coordinate owes rate * lambda / deg and never
    crosses 0) and then project(param, value), the spec's constraints."""
    g = complex_step(f, p) if complex else fd_gradient(f, p)
    l1 = l1 or {}
    new = {}
    for k in p:
        gs = g[k].copy()
        if k in l1:   # take out the l1 part of f's gradient: sign(c) * lambda away from 0; at 0
            lam, at = l1[k]   # the difference quotient's 0, the complex step's +1
            slope = np.where(p[k][at] >= 0, 1.0, -1.0) if complex else np.sign(p[k][at])
            gs[at] -= lam * slope
        if rule == "sgd":
            rate = np.full(gs.shape, step)
        elif rule == "adagrad" or gs.ndim < 2:
            rate = step / np.sqrt(gs ** 2 + 1e-8)
        else:
            rate = step / np.sqrt((gs ** 2).mean(-1, keepdims=True) + 1e-8) * np.ones(gs.shape)
        z = np.asarray(p[k] - rate * gs, dtype=float)
        if k in l1:
            lam, at = l1[k]
            u = rate[at] * lam
            z[at] = np.where(z[at] > 0, np.maximum(0, z[at] - u),
                             np.where(z[at] < 0, np.minimum(0, z[at] + u), z[at]))
        new[k] = project(k, z) if project else z
    return new


def onto_simplex(v):
    """The Euclidean projection of the vector v onto the simplex (v >= 0, sum(v) = 1)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    r = np.nonzero(u * np.arange(1, u.size + 1) > css - 1)[0][-1]
    return np.maximum(v - (css[r] - 1) / (r + 1), 0)


def params_of(t):
    """A copy of a trainer's params (t.params is live)."""
    return {k: v.copy() for k, v in t.params.items()}


def stepped(mod, d, rule, sync, step=0.05, seed=0, **kw):
    """(params at init, params after one epoch of one thread)."""
    t = mod.Trainer(threads=1, seed=seed, epochs=0, step=step, decay=1.0, optimizer=rule,
                    sync=sync, **kw).fit(**d)
    before = params_of(t)
    t.epochs = 1
    t.fit(**d)
    return before, params_of(t)


# ---- the checks -----------------------------------------------------------------------------

def check_objective_and_predict(mod, d, reference, unlabelled, objective=True):
    """objective() and predict() equal the numpy reference (params -> (objective, predict)) at
    the initial params and after three epochs, to rounding; predict given the data less the
    labels, so that it reads none. objective=False: predict only (a sampled spec, whose
    objective() is a one-draw estimate)."""
    for epochs in (0, 3):
        t = mod.Trainer(threads=1, seed=0, epochs=epochs, step=0.01).fit(**d)
        obj, pred = reference(params_of(t))
        if objective:
            assert t.objective(**d) == pytest.approx(obj, rel=1e-10, abs=1e-13)
        np.testing.assert_allclose(t.predict(**unlabelled), pred, rtol=1e-10, atol=1e-13)


def check_one_step(mod, d, want, rule, atol, skip=(), what="", every_param_moves=False):
    """One epoch on one-term data d, in each sync mode, is want(params before): the update
    rule's step on the reference's gradient (rule_step). This pins the derived gradient, the
    rule's scaling, the l1 clip and the projections at once, with no training noise; params
    in skip are left out. every_param_moves: each param also changed in the step (else the
    comparison says nothing of its gradient). The last mode's (before, after) are returned."""
    for sync in SYNCS:
        before, after = stepped(mod, d, rule, sync)
        expect = want(before)
        for k in before:
            if k not in skip:
                np.testing.assert_allclose(after[k], expect[k], rtol=0, atol=atol,
                                           err_msg=f"{what} {k} {rule} {sync}")
        if every_param_moves:
            still = [k for k in before if np.array_equal(before[k], after[k])]
            assert not still, f"{what} {rule} {sync}: {still} did not move"
    return before, after


def check_sampled_step_at_its_draws(mod, d, want, objective_at, K, atol=1e-8):
    """A sampled spec on one term over a sampled dim of 2: its K draws are each 0 or 1, so one
    sgd step (in every sync mode) is want(params, draws) at one of the 2^K draw vectors, and
    objective() (one fixed draw per term: two calls agree) is objective_at(params, draws) at
    one of them."""
    combos = [np.array([c]) for c in itertools.product([0, 1], repeat=K)]
    for sync in SYNCS:
        before, after = stepped(mod, d, "sgd", sync)
        err = min(max(np.abs(want(before, c)[k] - after[k]).max() for k in before)
                  for c in combos)
        assert err < atol, (sync, err)
    t = mod.Trainer(threads=1, seed=0, epochs=0).fit(**d)
    p = params_of(t)
    obj = t.objective(**d)
    assert obj == t.objective(**d)
    assert min(abs(objective_at(p, c) - obj) for c in combos) < 1e-12


def check_steps_where_draws_meet_nothing(mod, d, want, param, fixed, width, K, seeds):
    """Draws depend on (seed, term, line) only, so one seed draws the same rows under every
    rule: the rows of `param` (of the `width` rows of the sampled dim) an sgd step moves beside
    the term's own (`fixed`) are its draws. For the first two seeds (of `seeds`) whose K draws
    are distinct rows apart from the term's own, every rule in every sync mode is want(params,
    rule, draws). (AdaGrad steps a coordinate that two accesses meet at for some terms only
    once per access, docs/language.md; rows apart meet nothing.)"""
    found = 0
    for seed in seeds:
        before, after = stepped(mod, d, "sgd", "hogwild", seed=seed)
        moved = [r for r in range(width) if r not in fixed and
                 not np.array_equal(before[param][r], after[param][r])]
        if len(moved) != K:
            continue
        found += 1
        for rule in RULES:
            for sync in SYNCS:
                before, after = stepped(mod, d, rule, sync, seed=seed)
                expect = want(before, rule, np.array([moved]))
                for k in before:
                    np.testing.assert_allclose(after[k], expect[k], rtol=0, atol=1e-7,
                                               err_msg=f"{k} {rule} {sync} seed {seed}")
        if found == 2:
            break
    assert found, "no seed drew K rows apart"


def tiny_step_moves(mod, d, start, h):
    """The move of each param over one epoch of sgd steps h (no decay) from the params start:
    h times the sum of the term gradients, to first order."""
    t = mod.Trainer(threads=1, seed=0, epochs=0, step=h, decay=1.0, optimizer="sgd").fit(**d)
    for k in start:
        t.params[k][...] = start[k]
    t.epochs = 1
    t.fit(**d)
    return {k: start[k] - t.params[k] for k in start}


def sgd_epoch_against_numeric(mod, d, n_terms, h=1e-8, step=0.01):
    """At a point 3 SGD epochs (of `step`) in: (that point, tiny_step_moves / (h * n_terms),
    central differences of objective() there), per param. The two agree wherever the
    objective is smooth and no projection acts: one epoch moves the params by h * N *
    grad(objective)."""
    t = mod.Trainer(threads=1, seed=0, epochs=3, step=step, optimizer="sgd").fit(**d)
    start = params_of(t)
    numeric = numeric_gradient(t, d)
    moves = tiny_step_moves(mod, d, start, h)
    return start, {k: v / h / n_terms for k, v in moves.items()}, numeric


def check_sgd_epoch_is_the_gradient(mod, d, n_terms, interior=None, rtol=1e-4, **kw):
    """sgd_epoch_against_numeric agree, to rtol of the largest gradient component (+ 1e-3),
    on the coordinates interior(param, point) picks (all by default): the smooth ones no
    projection acts on."""
    start, sgd, numeric = sgd_epoch_against_numeric(mod, d, n_terms, **kw)
    for k in start:
        mask = interior(k, start[k]) if interior else np.ones(start[k].shape, bool)
        scale = np.abs(numeric[k]).max() + 1e-3
        assert np.abs(sgd[k] - numeric[k])[mask].max(initial=0) <= rtol * scale, k


def check_epoch_of_tiny_steps(mod, d, objective, n_terms, epochs_before, atol):
    """From the point `epochs_before` sgd epochs of step 0.05 in, tiny_step_moves of steps
    1e-8 are 1e-8 x N x the gradient of the numpy objective(params) by central differences:
    for data whose terms cannot be cut to one (several blocks, a term reading a whole row)."""
    t = mod.Trainer(threads=1, seed=0, epochs=epochs_before, step=0.05, optimizer="sgd").fit(**d)
    start = params_of(t)
    moves, g = tiny_step_moves(mod, d, start, 1e-8), fd_gradient(objective, start)
    for k in start:
        np.testing.assert_allclose(moves[k] / 1e-8 / n_terms, g[k], rtol=1e-4, atol=atol,
                                   err_msg=k)


def check_fit_lowers_the_objective(mod, d, unlabelled):
    """The spec's own train line (threads 1 for the test's speed) lowers objective() from the
    init by more than 0.1%, and predict is finite."""
    start = mod.Trainer(threads=1, epochs=0).fit(**d).objective(**d)
    t = mod.Trainer(threads=1).fit(**d)
    assert t.objective(**d) < start - 1e-3 * abs(start), (start, t.objective(**d))
    assert np.isfinite(t.predict(**unlabelled)).all()


def float32_params(t):
    """Every param of t is float32 (a dtype="float32" build); they are returned as float64."""
    assert {v.dtype for v in t.params.values()} == {np.dtype(np.float32)}
    return {k: v.astype(np.float64) for k, v in t.params.items()}


def check_float32_build(mod32, d, objective, one_term=None, want=None, rules=RULES, atol=5e-6):
    """A dtype="float32" build: three epochs leave float32 params whose objective() is the
    numpy objective(params) of them to single precision; and on one-term data, one step of
    each rule is want(float64 params, rule), the rule's step, to atol."""
    t = mod32.Trainer(threads=1, seed=0, epochs=3, step=0.01).fit(**d)
    assert t.objective(**d) == pytest.approx(objective(float32_params(t)), rel=1e-5)
    if want is None:
        return
    for rule in rules:
        before, after = stepped(mod32, one_term, rule, "hogwild")
        expect = want({k: v.astype(np.float64) for k, v in before.items()}, rule)
        for k in before:
            np.testing.assert_allclose(after[k], expect[k], rtol=0, atol=atol,
                                       err_msg=f"{k} {rule}")


def saved_loaded_pickled(mod, t, path):
    """t saved to path (the file holds each param exactly), loaded back and pickled: (loaded,
    pickled)."""
    t.save(str(path))
    saved = np.load(path)
    for k, v in t.params.items():
        np.testing.assert_array_equal(saved[k], v)
    return mod.Trainer.load(str(path)), pickle.loads(pickle.dumps(t))


def check_two_fits_continue_one(mod, d, tmp_path, **kw):
    """Two epochs, then two more from a saved file, from a pickle and in place, each equal to
    four epochs at once (the step schedule, the draws, AdaGrad's sums and the l1 state all
    continue with the trainer). The four-epoch trainer is returned."""
    whole = mod.Trainer(threads=1, seed=4, epochs=4, step=0.03, **kw).fit(**d)
    half = mod.Trainer(threads=1, seed=4, epochs=2, step=0.03, **kw).fit(**d)
    for t in [*saved_loaded_pickled(mod, half, tmp_path / "half.npz"), half]:
        t.epochs = 2
        t.fit(**d)
        for k, v in whole.params.items():
            np.testing.assert_allclose(t.params[k], v, rtol=1e-12, atol=1e-14, err_msg=k)
        assert t.objective(**d) == pytest.approx(whole.objective(**d), rel=1e-12)
    return whole


def check_sync_modes_agree(mod, d, epochs, rel=0.05):
    """1 and 2 threads in each sync mode end within rel of one another's objective() (finite);
    the last trainer and its objective are returned."""
    base = None
    for threads in (1, 2):
        for sync in SYNCS:
            t = mod.Trainer(threads=threads, sync=sync, seed=0, epochs=epochs).fit(**d)
            value = t.objective(**d)
            assert np.isfinite(value)
            base = value if base is None else base
            assert value == pytest.approx(base, rel=rel), (threads, sync)
    return t, value


def check_two_threads_near_serial(mod, d, step=None, rel=0.05):
    """On data large enough for two threads to run at once, a 2-thread fit in each sync mode
    and update rule ends within rel of the serial fit's objective (3 epochs)."""
    for rule in RULES:
        serial = mod.Trainer(threads=1, epochs=3, optimizer=rule, step=step).fit(**d) \
            .objective(**d)
        for sync in SYNCS:
            two = mod.Trainer(threads=2, epochs=3, optimizer=rule, sync=sync, step=step).fit(**d)
            assert two.objective(**d) == pytest.approx(serial, rel=rel), (rule, sync)


def check_patience_kept_the_best(t, held, patience, epochs=None, rel=1e-12):
    """A fit given validation data records the held-out objective of each epoch, and patience
    keeps the best epoch's params (their held-out objective() is the best epoch's, to rel): it
    stopped `patience` epochs after the best (given the epochs asked for: exactly, before
    them; else at most)."""
    curve = [e["validation_objective"] for e in t.history]
    best = int(np.argmin(curve))
    if epochs is None:
        assert len(curve) <= best + 1 + patience
    else:
        assert len(curve) == best + 1 + patience < epochs
    assert t.objective(**held) == pytest.approx(curve[best], rel=rel)
    return best


def assert_saved_params(path, t, rtol=1e-12, atol=1e-14):
    """The params a `hogwildc train --out` wrote are the trainer t's."""
    saved = np.load(path)
    for k, v in t.params.items():
        np.testing.assert_allclose(saved[k], v, rtol=rtol, atol=atol, err_msg=k)


def run_python(cwd, code):
    """`python -c code` in cwd (where `hogwildc compile -o` wrote a module to import), which
    must succeed: its stdout, stripped."""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@contextlib.contextmanager
def dask_client():
    """A local Dask cluster of two single-threaded worker processes (the test is skipped
    without `distributed`)."""
    dd = pytest.importorskip("distributed")
    cluster = dd.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                              dashboard_address=None)
    try:
        with dd.Client(cluster) as client:
            yield client
    finally:
        cluster.close()
