"""`sample n[K] in D` (LANGUAGE.md): K independent draws per term, read as n[s] inside
sum(s in K: ...), against independent numpy: the documented draws, the objective as an
estimate of the exact expectation, one step against finite differences at fixed draws in all
three sync modes (draws equal to each other and to the positive item included), weighted
draws' frequencies, reproducibility, the degree split, the reference interpreter, and the
checker's errors."""
import re

import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from hogwild_dsl import SpecError
from hogwild_dsl.interp import Interpreter
from hogwild_dsl.runtime import _draw_key

SYNCS = ["hogwild", "atomic", "lock"]

BPRK = """\
model bprk
dim user, item
const k = 3
const K = 4
data seen[user, item] : sparse
param P[user, k] ~ normal(0, 0.5)
param Q[item, k] ~ normal(0, 0.5)
for (u, i) in seen:
    sample n[K] in item
    loss sum(s in K: -log(sigmoid(dot(P[u], Q[i] - Q[n[s]])))) / K
    reg l2(1e-2) on P[u], Q[i], Q[n] unscaled
    predict dot(P[u], Q[i])
"""
K = 4
M64 = (1 << 64) - 1


def mix(x):
    """splitmix64's finaliser (an independent reimplementation of the kernel's generator)."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def drawn(key, t, s, n, block=0, line=0):
    """The s-th draw of the `sample n[K]` line at position `line` of its block, for term t
    (LANGUAGE-NOTES: draw number (block x 1024 + line + 1) x 2^32 + s)."""
    which = ((block * 1024 + line + 1) << 32) + s
    bits = mix((mix(key ^ mix(t)) + which) & M64)
    return (bits * n) >> 64


def softplus(z):
    return np.logaddexp(0, z)


def term(P, Q, u, i, js, lam=1e-2, deg_n=1.0):
    """One term's objective at the draws js: the mean BPR loss over the draws plus the reg."""
    loss = np.mean([softplus(-P[u] @ (Q[i] - Q[j])) for j in js])
    return loss + lam * (P[u] @ P[u] + Q[i] @ Q[i] + sum(Q[j] @ Q[j] for j in js) / deg_n)


def clicks(n_users=30, n_items=12, nnz=90, seed=0):
    rng = np.random.default_rng(seed)
    cells = rng.choice(n_users * n_items, nnz, replace=False)
    return sp.coo_matrix((np.ones(nnz), (cells // n_items, cells % n_items)),
                         shape=(n_users, n_items))


def entries(seen):
    csr = seen.tocsr()
    return np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr)), csr.indices


@pytest.fixture(scope="module")
def bprk(load_spec):
    return load_spec(text=BPRK)


def test_objective_uses_the_documented_draws(bprk):
    seen = clicks()
    t = bprk.Trainer(threads=2, epochs=2, step=0.1, seed=5).fit(seen=seen)
    key = _draw_key(5, "objective")
    P, Q = t.params["P"], t.params["Q"]
    want = np.mean([term(P, Q, u, i, [drawn(key, e, s, 12) for s in range(K)])
                    for e, (u, i) in enumerate(zip(*entries(seen)))])
    got = t.objective(seen=seen)
    assert abs(got - want) < 1e-8
    assert t.objective(seen=seen) == got                  # a fixed draw stream
    # the reference interpreter agrees (given CSR input, it numbers the terms as the kernel)
    interp = Interpreter(hogwild_dsl.check(BPRK), {"seen": seen.tocsr()})
    interp.draw_key = key
    assert abs(interp.objective({"P": P, "Q": Q}) - want) < 1e-8


def test_objective_estimates_the_exact_expectation(bprk):
    """E over K independent uniform draws of the mean loss = the mean over all items; the
    estimate's standard error is sqrt(sum_t var_t / K) / N."""
    seen = clicks(n_users=200, n_items=20, nnz=2000, seed=1)
    t = bprk.Trainer(threads=2, epochs=2, step=0.05, seed=2).fit(seen=seen)
    P, Q = t.params["P"], t.params["Q"]
    per_j = np.array([[softplus(-P[u] @ (Q[i] - Q[j])) + 1e-2 * Q[j] @ Q[j]
                       for j in range(20)] for u, i in zip(seen.row, seen.col)])
    fixed = np.array([1e-2 * (P[u] @ P[u] + Q[i] @ Q[i]) for u, i in zip(seen.row, seen.col)])
    # the reg on Q[n] sums the K draws' penalties (each K times the loss's 1/K weight)
    per_j = per_j + np.array([[1e-2 * (K - 1) * Q[j] @ Q[j] for j in range(20)]] * seen.nnz)
    exact = (per_j.mean(axis=1) + fixed).mean()
    se = np.sqrt(np.sum(per_j.var(axis=1) / K)) / seen.nnz
    assert se > 0
    assert abs(t.objective(seen=seen) - exact) < 4 * se


def one_step_case(i_equals_a_draw):
    """A one-term data set whose term's K draws (under the key of epoch 0, seed 3) include two
    equal draws (4 draws from 3 items), and optionally one equal to the positive item."""
    key = _draw_key(3, "epoch", 0)
    js = [drawn(key, 0, s, 3) for s in range(K)]
    i = js[0] if i_equals_a_draw else next(x for x in range(3) if x not in js) \
        if len(set(js)) < 3 else None
    return js, i


@pytest.mark.parametrize("sync", SYNCS)
@pytest.mark.parametrize("positive_drawn", [False, True], ids=["i not drawn", "i drawn"])
def test_one_step_at_fixed_draws(bprk, sync, positive_drawn):
    """One visit is one SGD step on the term at its K draws; coinciding rows (two equal
    draws, a draw equal to i) get the sum of their gradients."""
    js, i = one_step_case(positive_drawn)
    assert len(set(js)) < K                      # pigeonhole: two draws coincide
    if i is None:
        pytest.skip("every item was drawn")     # (not the case for seed 3: kept honest)
    seen = sp.coo_matrix(([1.0], ([1], [i])), shape=(2, 3))
    t = bprk.Trainer(threads=1, epochs=0, decay=1.0, step=0.1, sync=sync, seed=3,
                     shuffle=False).fit(seen=seen)
    P, Q = t.params["P"].copy(), t.params["Q"].copy()
    grads, eps = {}, 1e-6
    for name, value in (("P", P), ("Q", Q)):
        g = np.zeros_like(value)
        for c in np.ndindex(value.shape):
            old = value[c]
            value[c] = old + eps
            up = term(P, Q, 1, i, js)
            value[c] = old - eps
            down = term(P, Q, 1, i, js)
            value[c] = old
            g[c] = (up - down) / (2 * eps)
        grads[name] = g
    t.epochs = 1
    t.fit(seen=seen)
    np.testing.assert_allclose(t.params["P"], P - 0.1 * grads["P"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(t.params["Q"], Q - 0.1 * grads["Q"], rtol=1e-6, atol=1e-8)


def test_one_step_case_is_not_skipped():
    """The fixed draws above do exercise both cases (no silent skip)."""
    assert one_step_case(False)[1] is not None and one_step_case(True)[1] is not None


COUNTS = """\
model counts
dim example, item
const K = 50
data z[example] : real
data w[item] : real
param b[item] = 0
for e in example:
    sample n[K] in item{tilde}
    loss z[e] * sum(s in K: b[n[s]])
"""


def draw_frequencies(load_spec, weights, n_terms=400):
    """How often each item is drawn (over n_terms x K draws), read through the objective:
    with b the indicator of item c, the objective is K x the share of draws equal to c."""
    mod = load_spec(text=COUNTS.format(tilde=" ~ w" if weights is not None else ""))
    n_items = 6
    data = {"z": np.ones(n_terms),        # w gives the size of item (and, with ~ w, the weights)
            "w": np.ones(n_items) if weights is None else np.asarray(weights, dtype=float)}
    t = mod.Trainer(epochs=0, seed=11).fit(**data)
    counts = []
    for c in range(n_items):
        t.params["b"][:] = 0.0
        t.params["b"][c] = 1.0
        counts.append(t.objective(**data) * n_terms)
    return np.array(counts), n_terms * 50


def test_weighted_draws_follow_the_weights(load_spec):
    w = np.array([1.0, 0.0, 2.0, 5.0, 0.5, 1.5])
    counts, total = draw_frequencies(load_spec, w)
    assert counts.sum() == pytest.approx(total)
    assert counts[1] == 0                                  # a zero weight is never drawn
    p = w / w.sum()
    expected = total * p
    keep = expected > 0
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    assert chi2 < 20.5          # chi-square, 4 degrees of freedom: p = 0.0004
    sd = np.sqrt(total * p * (1 - p))
    assert np.all(np.abs(counts - expected) <= 5 * sd + 1e-9)


def test_uniform_draws_are_uniform(load_spec):
    """Over 20000 uniform draws (50 per term) from 6 items: chi-square, 5 degrees of freedom."""
    counts, total = draw_frequencies(load_spec, None)
    expected = total / 6
    assert counts.sum() == pytest.approx(total)
    assert np.sum((counts - expected) ** 2 / expected) < 22.1     # p = 0.0005


def test_threads_one_and_a_seed_reproduce_every_draw(bprk):
    seen = clicks()
    a = bprk.Trainer(threads=1, epochs=3, seed=9).fit(seen=seen)
    b = bprk.Trainer(threads=1, epochs=3, seed=9).fit(seen=seen)
    c = bprk.Trainer(threads=1, epochs=3, seed=10).fit(seen=seen)
    assert all(np.array_equal(a.params[p], b.params[p]) for p in a.params)
    assert not np.array_equal(a.params["Q"], c.params["Q"])


def test_scaled_reg_on_the_draws_uses_expected_touches(load_spec):
    """deg(c) of Q[n] is the expected touches per epoch: terms x K / items, added to the
    terms that touch it as Q[i] (one reg line on one param divides by one degree)."""
    mod = load_spec(text=BPRK.replace(" unscaled", ""))
    seen = clicks()
    t = mod.Trainer(threads=1, epochs=1, seed=4).fit(seen=seen)
    rows, cols = entries(seen)
    du, di = np.bincount(rows, minlength=30), np.bincount(cols, minlength=12)
    P, Q, key = t.params["P"], t.params["Q"], _draw_key(4, "objective")
    want = []
    deg = di + 90 * K / 12      # Q[x]: di[x] terms as i, 90 K / 12 expected draws as n[s]
    for e, (u, i) in enumerate(zip(rows, cols)):
        js = [drawn(key, e, s, 12) for s in range(K)]
        want.append(np.mean([softplus(-P[u] @ (Q[i] - Q[j])) for j in js]) + 1e-2 * (
            P[u] @ P[u] / du[u] + Q[i] @ Q[i] / deg[i] +
            sum(Q[j] @ Q[j] / deg[j] for j in js)))
    assert abs(t.objective(seen=seen) - np.mean(want)) < 1e-8
    interp = Interpreter(hogwild_dsl.check(BPRK.replace(" unscaled", "")),
                         {"seen": seen.tocsr()})
    interp.draw_key = key
    assert abs(interp.objective({"P": P, "Q": Q}) - np.mean(want)) < 1e-8


def test_printed_readably(bprk):
    text = bprk.gradients()
    assert "sample n[K] in item" in str(hogwild_dsl.check(BPRK))
    assert "Q[n[k_K], k_k]" in text


@pytest.mark.parametrize("edit,words", [
    (("Q[n[s]]", "Q[n]"), "holds K draws"),                          # n without a draw number
    (("Q[n[s]]", "Q[n[0]]"), "a draw of 'n' is read at the index of a sum over K"),
    (("Q[n[s]]", "Q[n[u]]"), "a draw of 'n' is read at the index of a sum over K"),
    (("loss sum(s in K: -log(sigmoid(dot(P[u], Q[i] - Q[n[s]])))) / K",
      "loss -log(sigmoid(dot(P[u], Q[i] - Q[n[s]])))"), "read the draws of 'n' as n[s]"),
    (("sample n[K] in item", "sample n[item] in item"), "must be a const"),
    (("sample n[K] in item", "sample n[L] in item"), "must be a const"),
    (("predict dot(P[u], Q[i])", "predict sum(s in K: dot(P[u], Q[n[s]]))"),
     "'predict' may not use the sampled index 'n'"),
    (("const K = 4", "const K = 4\nconst L = 4"), None),
])
def test_errors(edit, words):
    text = BPRK.replace(*edit)
    if words is None:         # a sum over another const of the same size is still not K
        text = text.replace("sum(s in K:", "sum(s in L:")
        words = "a draw of 'n' is read at the index of a sum over K"
    with pytest.raises(SpecError, match=re.escape(words)) as info:
        hogwild_dsl.check(text)
    assert info.value.line is not None and info.value.hint


def test_analyze_counts_k_draws_as_k_sample_lines():
    """analyze's statistics of K draws equal those of K separate `sample` lines."""
    from hogwild_dsl.analyze import analyze
    lines = "\n".join(f"    sample j{s} in item" for s in range(K))
    loss = " + ".join(f"-log(sigmoid(dot(P[u], Q[i] - Q[j{s}])))" for s in range(K))
    separate = BPRK.replace("    sample n[K] in item", lines).replace(
        "sum(s in K: -log(sigmoid(dot(P[u], Q[i] - Q[n[s]])))) / K", f"({loss}) / K").replace(
        "Q[n] unscaled", ", ".join(f"Q[j{s}]" for s in range(K)) + " unscaled")
    seen = clicks()
    a = analyze(hogwild_dsl.check(BPRK), {"seen": seen})
    b = analyze(hogwild_dsl.check(separate), {"seen": seen})
    for key in ("Omega", "Delta", "rho"):
        assert a[key] == pytest.approx(b[key], rel=1e-12), key
    assert a["draws"] == ["sample n[K] in item (uniform, 4 draws per term): Q[n[s]]"]


SQUARE = """\
model sq
dim user, item
const K = 4
data seen[user, item] : sparse
param b[item] ~ normal(0, 0.5)
for (u, i) in seen:
    sample n[K] in item
    loss sum(s in K: (b[n[s]] - 1)^2) / K
"""


@pytest.mark.parametrize("sync", SYNCS)
def test_one_step_where_the_gradient_reads_the_drawn_coordinate(load_spec, sync):
    """Two equal draws: the second's gradient is taken at the old point too (a loop over the
    draws that read what an earlier iteration wrote would step from the new one)."""
    mod = load_spec(text=SQUARE)
    js, _ = one_step_case(False)
    seen = sp.coo_matrix(([1.0], ([0], [0])), shape=(1, 3))
    t = mod.Trainer(threads=1, epochs=0, decay=1.0, step=0.1, sync=sync, seed=3,
                    shuffle=False).fit(seen=seen)
    b = t.params["b"].copy()
    grad = np.zeros(3)
    for j in js:
        grad[j] += 2 * (b[j] - 1) / K
    t.epochs = 1
    t.fit(seen=seen)
    np.testing.assert_allclose(t.params["b"], b - 0.1 * grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [15, 16, 65])
def test_random_specs_with_several_draws_match_the_interpreter(seed, load_spec):
    """tests/specgen.py draws `sample w[K]` specs too; seed 15 found the bug above, seed 65
    a deferred whole-param reg on a param another block reads (now stepped per term)."""
    import specgen
    case = specgen.generate(seed)
    assert "sample:several" in case.constructs
    result = specgen.check_case(case, load_spec)
    assert result["status"] == "match", f"seed {seed}:\n{case.text}\n" + \
        "\n".join(result["failures"])
