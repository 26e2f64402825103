"""Objectives a new user writes from LANGUAGE.md and API.md alone (round 6).

New corners beside tests/test_user_objectives{,2,3,4,5}.py: a multinomial logit spelled with
CRLF line endings, trailing blanks, unicode comments and names that shadow functions (a param
`softmax`, a let `logsumexp`, data `max`) and a 70-character name; multi-quantile pinball loss
with data over a const; a learned exponent `x ^ a` with right-associative powers and unary
minus under `^`; cumulative-logit ordinal regression reading thresholds through two index data
over a const; WARP-like K uniform negatives with a margin and a const as a number; a
field-weighted FM reading a 2-D param at two fields of summed indices; Tucker with a 3-D core
over consts read with three summed indices; collective MF (two entry blocks share a ball'd
param, l1 in one, unscaled l2 in the other); archetypal analysis on the simplex; a
non-negative elastic net on a whole 1-D param with l1 on a boxed 0-D param;
weighted huber with a ball on a whole 1-D param read both through a sparse row and whole;
sparse rows in every reduction (`dot(w, X[i])`, `sum(X[i])`, `norm2(X[i])`, `exp(v)` dotted
with a row); a 3-D param read at (user, group of item) with a vector predict.

Each reference is written in numpy so that it also runs on complex numbers: the gradient of
the reference is its complex step (Im f(p + ih e) / h, exact to rounding), independent of the
compiler's derivation. For each spec: `objective()` and `predict()` equal the reference at the
initial params and after three epochs; one epoch on a one-term data set is one step of every
update rule (sgd, adagrad, adagrad_row) in every sync mode: p - step * g, AdaGrad's scaling of
the whole gradient of each coordinate, the l1 clip and the projections, to 1e-10; float32
builds; the CLI on svmlight / npy / csv triplets / npz files and its errors.
"""
import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from conftest import SPECS as SHIPPED, run_hogwildc
from user_objective_checks import (RULES, SYNCS, ab, assert_saved_params, check_float32_build,
                                   check_objective_and_predict, check_one_step,
                                   check_sampled_step_at_its_draws, complex_step, entries,
                                   onto_simplex, rows_of, rule_step, sq, stepped, sX)

SPECS = {
    # multinomial logit; names that shadow functions (a param `softmax`, a let `logsumexp`, data
    # `max`), a long name, CRLF endings, trailing blanks, unicode in comments
    "mlogit": (
        "# multinomial logit — naïve spelling, ünïcödé comments   \r\n"
        "model u6_mlogit   \r\n"
        "\r\n"
        "dim example, feature, class\t\r\n".replace("\t", " ") +
        "data X[example, feature] : sparse   # features ≥ 0\r\n"
        "data y[example] : index(class)\r\n"
        "data max[example] : real          # a weight per example, named like a function\r\n"
        "param softmax[feature, class] = 0\r\n"
        "param a_rather_long_name_for_the_intercept_of_every_class_in_this_model[class] = 0\r\n"
        "\r\n"
        "for i in example:   \r\n"
        "    # the scores\r\n"
        "    let logsumexp = sum(j in X[i]: X[i, j] * softmax[j]) + a_rather_long_name_for_the_intercept_of_every_class_in_this_model\r\n"
        "\r\n"
        "    loss max[i] * (logsumexp(logsumexp) - logsumexp[y[i]])   \r\n"
        "    reg l2(1e-2) on softmax[X[i]]\r\n"
        "    predict softmax(logsumexp)\r\n"
        "train step 0.3, epochs 5\r\n"),
    # multi-quantile (pinball) regression: data over a const, a vector let, a vector predict
    "pinball": """
model u6_pinball
dim example, feature
const q = 3
data X[example, feature] : sparse
data y[example] : real
data tau[q] : real
param W[feature, q] = 0
param b[q] = 0
for i in example:
    let r = y[i] - (sum(j in X[i]: X[i, j] * W[j]) + b)
    loss sum(k in q: max(tau[k] * r[k], (tau[k] - 1) * r[k]))
    reg l2(1e-3) on W[X[i]], b
    predict sum(j in X[i]: X[i, j] * W[j]) + b
train optimizer adagrad, step 0.2, epochs 20
""",
    # a learned exponent: x ^ a with a in a box; right-assoc powers; unary minus under ^
    "powlink": """
model u6_powlink
dim example, feature
data X[example, feature] : dense
data y[example] : real
param w[feature] ~ uniform(0.1, 0.3)
param a in [0.5, 3] = 1.5
param c = 0.2
for i in example:
    let x = 1 + dot(X[i], w * w)
    loss (x ^ a - y[i])^2 + 0.1 * 2 ^ -c ^ 2 - -c^2 / 4
    predict x ^ a
train step 0.01, epochs 10
""",
    # cumulative-logit ordinal regression: thresholds picked by two index data over a const
    "cumlogit": """
model u6_cumlogit
dim example, feature
const cut = 5
data X[example, feature] : sparse
data lo[example] : index(cut)
data hi[example] : index(cut)
param w[feature] = 0
param theta[cut] ~ uniform(-2, 2)
for i in example:
    let z = dot(X[i], w)
    loss -log(abs(sigmoid(theta[hi[i]] - z) - sigmoid(theta[lo[i]] - z)) + 1e-3)
    reg l2(0.1) on theta[hi[i]], theta[lo[i]]
    reg l2(1e-3) on w[X[i]]
    predict z
train step 0.05, epochs 10
""",
    # WARP-like: K uniform negatives, a margin, item biases, a const as a number
    "warp": """
model u6_warp
dim user, item
const K = 3
const d = 4
data seen[user, item] : sparse
param P[user, d] ~ normal(0, 0.3)
param Q[item, d] ~ normal(0, 0.3)
param bi[item] = 0
for (u, i) in seen:
    sample n[K] in item
    let pos = bi[i] + dot(P[u], Q[i])
    loss sum(s in K: relu(1 - pos + bi[n[s]] + dot(P[u], Q[n[s]]))) / K
    reg l2(1e-2) on P[u], Q[i], Q[n]
    reg l2(1e-2) on bi[i] unscaled
    predict pos
train optimizer adagrad_row, step 0.1, epochs 10
""",
    # field-weighted FM: a 2-D param read at two fields of a summed index
    "fwfm": """
model u6_fwfm
dim example, feature, field
const k = 3
data X[example, feature] : sparse
data fld[feature] : index(field)
data y[example] : real
param w[feature] = 0
param V[feature, k] ~ normal(0, 0.3)
param R[field, field] = 1
for i in example:
    let inter = sum(j in X[i]: sum(l in X[i]: X[i, j] * X[i, l] * R[fld[j], fld[l]] * dot(V[j], V[l])))
    let z = dot(X[i], w) + 0.5 * inter
    loss (z - y[i])^2
    reg l2(1e-3) on w[X[i]], V[X[i]]
    predict z
train step 0.05, epochs 10
""",
    # Tucker decomposition: a 3-D core over consts read with three sum indices
    "tucker": """
model u6_tucker
dim cell, ua, ub, uc
const k = 2
data ia[cell] : index(ua)
data ib[cell] : index(ub)
data ic[cell] : index(uc)
data val[cell] : real
param A[ua, k] ~ normal(0, 0.5)
param B[ub, k] ~ normal(0, 0.5)
param C[uc, k] ~ normal(0, 0.5)
param G[k, k, k] ~ normal(0, 0.5)
for t in cell:
    let s = sum(p in k: sum(q in k: sum(r in k: G[p, q, r] * A[ia[t], p] * B[ib[t], q] * C[ic[t], r])))
    loss (s - val[t])^2
    reg l2(1e-2) on A[ia[t]], B[ib[t]], C[ic[t]]
    predict s
train step 0.05, epochs 10
""",
    # collective MF: two entry blocks share Q (ball), l1 in one, unscaled l2 in the other
    "cmf": """
model u6_cmf
dim user, item, tag
const k = 3
data R[user, item] : sparse
data T[item, tag] : sparse
param P[user, k] ~ normal(0, 0.3)
param Q[item, k] in ball(1) ~ normal(0, 0.3)
param S[tag, k] ~ normal(0, 0.3)
for (u, v) in R:
    loss (dot(P[u], Q[v]) - R[u, v])^2
    reg l1(1e-2) on P[u], Q[v]
    predict dot(P[u], Q[v])
for (v, g) in T:
    loss 0.5 * (dot(Q[v], S[g]) - T[v, g])^2
    reg l2(2e-2) on Q[v], S[g] unscaled
train step 0.05, epochs 10
""",
    # archetypal analysis: simplex weights per example over rows of a const-by-feature param
    "archetype": """
model u6_archetype
dim example, feature
const k = 3
data X[example, feature] : dense
param Z[example, k] in simplex = uniform
param A[k, feature] ~ normal(0, 1)
for i in example:
    let recon = sum(c in k: Z[i, c] * A[c])
    loss sqnorm(X[i] - recon)
    reg l2(1e-2) on Z[i]
    predict recon
train step 0.05, epochs 10
""",
    # non-negative elastic net on a whole 1-D param; l1 on a 0-D param; two reg lines on one target
    "nnenet": """
model u6_nnenet
dim example, feature
data X[example, feature] : dense
data y[example] : real
param w[feature] >= 0 = 0.5
param b in [-1, 1] = 0
for i in example:
    loss 0.5 * (dot(X[i], w) + b - y[i])^2
    reg l1(0.05) on w
    reg l2(0.02) on w
    reg l1(0.01) on b
    predict dot(X[i], w) + b
train step 0.05, epochs 20
""",
    # weighted huber with several loss lines, a ball on a whole 1-D param
    "huberball": """
model u6_huberball
dim example, feature
data X[example, feature] : sparse
data y[example] : real
data wt[example] : real
param w[feature] in ball(2) ~ normal(0, 0.5)
param b = 0
for i in example:
    let r = dot(X[i], w) + b - y[i]
    loss wt[i] * huber(r, 0.3)
    loss 0.01 * sqnorm(w) - 0.001 * norm1(w)
    loss 1e-3 * norm2(w)
    predict dot(X[i], w) + b
train optimizer adagrad, step 0.1, epochs 10
""",
    # sparse rows in every reduction: dot(w, X[i]) (row on the right), sum(X[i]), norm2(X[i]),
    # a function of a whole 1-D param dotted with a row
    "rowforms": """
model u6_rowforms
dim example, feature
data X[example, feature] : sparse
data y[example] : sign
param w[feature] ~ normal(0, 0.2)
param v[feature] ~ normal(0, 0.2)
for i in example:
    let z = dot(w, X[i]) + dot(X[i], exp(v)) / (1 + sum(X[i])) - norm2(X[i]) * sum(j in X[i]: X[i, j] * v[j]^2)
    loss sqhinge(y[i] * z)
    reg l2(1e-2) on w[X[i]], v[X[i]]
    predict sign(z)
train step 0.05, epochs 10
""",
    # a 3-D param read at (user, group of item), an unscaled row reg; a vector predict
    "grouped": """
model u6_grouped
dim user, item, grp
const k = 2
data r[user, item] : sparse
data g[item] : index(grp)
param V[user, grp, k] ~ normal(0, 0.3)
param Q[item, k] ~ normal(0, 0.3)
for (u, v) in r:
    let s = dot(V[u, g[v]], Q[v])
    loss (s - r[u, v])^2
    reg l2(1e-2) on V[u, g[v]] unscaled
    reg l2(1e-2) on Q[v]
    predict V[u, g[v]] * Q[v]
train step 0.05, epochs 10
""",
}


# ---- numpy references (complex-step safe: a branch reads the real part) ---------------

def re(z):
    return np.real(z)


def cabs(z):
    return np.where(re(z) >= 0, z, -z)


def cmax(a, b):
    return np.where(re(a) > re(b), a, b)


def relu(z):
    return np.where(re(z) > 0, z, 0 * z)


def sig(z):
    return 1 / (1 + np.exp(-z))


def logistic(z):
    return np.where(re(z) > 0, np.log1p(np.exp(-z)), -z + np.log1p(np.exp(z)))


def huber(z, d):
    return np.where(re(cabs(z)) <= d, 0.5 * z * z, d * (cabs(z) - d / 2))


def lse(Z):
    m = re(Z).max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(Z - m).sum(-1, keepdims=True)))[..., 0]


def softmax(Z):
    return np.exp(Z - lse(Z)[..., None])


def mv(X, W):
    """X @ W for sparse or dense X, W complex too."""
    return sp.csr_matrix(X) @ W if sp.issparse(X) else X @ W

def reference(name, p, d, draws=None):
    """(objective, predict) of spec `name` at params p on data d; for the sampled specs
    (warp) the loss of each term given its draws (terms x K), on one-term data."""
    if name == "mlogit":
        X, y = d["X"], d["y"]
        n = X.shape[0]
        Z = mv(X, p["softmax"]) + \
            p["a_rather_long_name_for_the_intercept_of_every_class_in_this_model"]
        L = d["max"] * (lse(Z) - Z[np.arange(n), y])
        return L.mean() + 1e-2 * sq(p["softmax"], rows_of(X)) / n, softmax(Z)
    if name == "pinball":
        X, y, tau = d["X"], d["y"], d["tau"]
        n = X.shape[0]
        F = mv(X, p["W"]) + p["b"]
        R = y[:, None] - F
        L = cmax(tau * R, (tau - 1) * R).sum(1)
        reg = 1e-3 * (sq(p["W"], rows_of(X)) + (p["b"] ** 2).sum())
        return L.mean() + reg / n, F
    if name == "powlink":
        X, y = d["X"], d["y"]
        n = X.shape[0]
        x = 1 + X @ (p["w"] * p["w"])
        c = p["c"]
        L = (x ** p["a"] - y) ** 2 + 0.1 * 2 ** (-(c ** 2)) + c ** 2 / 4
        return L.mean(), x ** p["a"]
    if name == "cumlogit":
        X, lo, hi = d["X"], d["lo"], d["hi"]
        n = X.shape[0]
        z = mv(X, p["w"])
        th = p["theta"]
        L = -np.log(cabs(sig(th[hi] - z) - sig(th[lo] - z)) + 1e-3)
        reg = 0.1 * sq(th, [[a, b] for a, b in zip(lo, hi)]) + \
            1e-3 * sq(p["w"], rows_of(X))
        return L.mean() + reg / n, z
    if name == "warp":
        S = sp.coo_matrix(d["seen"])
        u, i = S.row, S.col
        P, Q, bi = p["P"], p["Q"], p["bi"]
        pos = bi[i] + (P[u] * Q[i]).sum(1)
        K = draws.shape[1]
        neg = bi[draws] + np.einsum("tk,tsk->ts", P[u], Q[draws])
        L = relu(1 - pos[:, None] + neg).sum(1) / K
        # one term on a 1 x 2 set: deg(Q row c) = [c == i] + K / 2; P's and bi's 1
        degQ = np.array([1 + K / 2, K / 2])
        regQ = sum((Q[c] ** 2).sum() / degQ[c] for c in [i[0]] + list(draws[0]))
        reg = 1e-2 * ((P[u[0]] ** 2).sum() + regQ + bi[i[0]] ** 2)
        return L + reg, pos
    if name == "fwfm":
        X, fld, y = sp.csr_matrix(d["X"]), d["fld"], d["y"]
        n = X.shape[0]
        w, V, R = p["w"], p["V"], p["R"]
        z = []
        for r, js in enumerate(rows_of(X)):
            xs = X.data[X.indptr[r]:X.indptr[r + 1]]
            inter = sum(xs[a] * xs[b] * R[fld[js[a]], fld[js[b]]] * (V[js[a]] * V[js[b]]).sum()
                        for a in range(len(js)) for b in range(len(js)))
            z.append(xs @ w[js] + 0.5 * inter)
        z = np.array(z)
        reg = 1e-3 * (sq(w, rows_of(X)) + sq(V, rows_of(X)))
        return ((z - y) ** 2).mean() + reg / n, z
    if name == "tucker":
        ia, ib, ic = d["ia"], d["ib"], d["ic"]
        n = ia.size
        s = np.einsum("pqr,tp,tq,tr->t", p["G"], p["A"][ia], p["B"][ib], p["C"][ic])
        reg = 1e-2 * (sq(p["A"], [[a] for a in ia]) + sq(p["B"], [[a] for a in ib])
                      + sq(p["C"], [[a] for a in ic]))
        return ((s - d["val"]) ** 2).mean() + reg / n, s
    if name == "cmf":
        R, T = sp.coo_matrix(d["R"]), sp.coo_matrix(d["T"])
        P, Q, S = p["P"], p["Q"], p["S"]
        pr = (P[R.row] * Q[R.col]).sum(1)
        tot = ((pr - R.data) ** 2).sum()
        tot += 1e-2 * (ab(P, [[a] for a in R.row]) + ab(Q, [[a] for a in R.col]))
        tot += (0.5 * ((Q[T.row] * S[T.col]).sum(1) - T.data) ** 2).sum()
        tot += 2e-2 * ((Q[T.row] ** 2).sum() + (S[T.col] ** 2).sum())
        return tot / (R.nnz + T.nnz), pr
    if name == "archetype":
        X = d["X"]
        n = X.shape[0]
        rec = p["Z"] @ p["A"]
        return ((X - rec) ** 2).sum(1).mean() + 1e-2 * (p["Z"] ** 2).sum() / n, rec
    if name == "nnenet":
        X, y = d["X"], d["y"]
        n = X.shape[0]
        f = X @ p["w"] + p["b"]
        L = 0.5 * (f - y) ** 2
        reg = 0.05 * cabs(p["w"]).sum() + 0.02 * (p["w"] ** 2).sum() + 0.01 * cabs(p["b"])
        return L.mean() + reg / n, f
    if name == "huberball":
        X, y, wt = d["X"], d["y"], d["wt"]
        w, b = p["w"], p["b"]
        f = mv(X, w) + b
        L = wt * huber(f - y, 0.3) + 0.01 * (w * w).sum() - 0.001 * cabs(w).sum() + \
            1e-3 * np.sqrt((w * w).sum())
        return L.mean(), f
    if name == "rowforms":
        X, y = sp.csr_matrix(d["X"]), d["y"]
        n = X.shape[0]
        w, v = p["w"], p["v"]
        rs = np.asarray(X.sum(1)).ravel()
        nrm = np.sqrt(np.asarray(X.multiply(X).sum(1)).ravel())
        z = X @ w + (X @ np.exp(v)) / (1 + rs) - nrm * (X @ (v ** 2))
        L = cmax(0 * z, 1 - y * z) ** 2
        reg = 1e-2 * (sq(w, rows_of(X)) + sq(v, rows_of(X)))
        return L.mean() + reg / n, np.sign(re(z))
    if name == "grouped":
        r, g = sp.coo_matrix(d["r"]), d["g"]
        V, Q = p["V"], p["Q"]
        Vr = V[r.row, g[r.col]]
        s = (Vr * Q[r.col]).sum(1)
        tot = ((s - r.data) ** 2).sum() + 1e-2 * (Vr ** 2).sum() + \
            1e-2 * sq(Q, [[a] for a in r.col])
        return tot / r.nnz, Vr * Q[r.col]
    raise KeyError(name)


def small(name, seed=0):
    """A small data set for spec `name`."""
    rng = np.random.default_rng(seed)

    if name == "mlogit":
        y = rng.integers(0, 4, 30)
        y[:4] = np.arange(4)
        return dict(X=sX(rng, 30, 7, seed), y=y, max=rng.uniform(0.5, 2, 30))
    if name == "pinball":
        return dict(X=sX(rng, 30, 6, seed), y=rng.normal(size=30), tau=np.array([0.1, 0.5, 0.9]))
    if name == "powlink":
        return dict(X=rng.uniform(0, 1, (20, 4)), y=rng.uniform(1, 3, 20))
    if name == "cumlogit":
        level = rng.integers(0, 4, 30)
        return dict(X=sX(rng, 30, 6, seed), lo=level, hi=level + 1)
    if name == "warp":
        return dict(seen=sp.csr_matrix(entries(rng, 5, 6, 1, 1, seed)))
    if name == "fwfm":
        fld = rng.integers(0, 3, 7)
        fld[:3] = np.arange(3)
        return dict(X=sX(rng, 25, 7, seed), fld=fld, y=rng.normal(size=25))
    if name == "tucker":
        return dict(ia=rng.integers(0, 4, 30), ib=rng.integers(0, 3, 30),
                    ic=rng.integers(0, 5, 30), val=rng.normal(size=30))
    if name == "cmf":
        return dict(R=entries(rng, 6, 5, 1, 3, seed), T=entries(rng, 5, 4, 0, 1, seed + 1))
    if name == "archetype":
        return dict(X=rng.normal(size=(20, 5)))
    if name == "nnenet":
        X = rng.normal(size=(30, 6))
        return dict(X=X, y=X @ np.array([1, 0, 0, 2, 0, 0.5]) + 0.1 * rng.normal(size=30))
    if name == "huberball":
        return dict(X=sX(rng, 30, 6, seed), y=rng.normal(size=30), wt=rng.uniform(0.5, 2, 30))
    if name == "rowforms":
        return dict(X=sX(rng, 30, 6, seed), y=np.where(rng.random(30) < .5, -1.0, 1.0))
    if name == "grouped":
        g = rng.integers(0, 3, 6)
        g[:3] = np.arange(3)
        return dict(r=entries(rng, 5, 6, 1, 3, seed), g=g)
    raise KeyError(name)


SAMPLED = ["warp"]
PLAIN = [n for n in SPECS if n not in SAMPLED]
LABELS = {"mlogit": ["y"], "pinball": ["y"], "powlink": ["y"], "cumlogit": ["lo", "hi"],
          "fwfm": ["y"], "tucker": ["val"], "nnenet": ["y"], "huberball": ["y", "wt"],
          "rowforms": ["y"]}


def one_term(name, d):
    """The data of one term (the dims that data gives kept): mlogit's fourth example (label
    3, so 4 classes), the first entry of an entry block (cmf: of R, T empty), a 1 x 2 matrix
    with one entry for the sampled specs (every draw is item 0 or 1)."""
    if name == "mlogit":
        return {k: v[3:4] for k, v in d.items()}
    if name in ("cmf", "grouped"):
        first = d["R" if name == "cmf" else "r"].tocoo()
        entry = sp.coo_matrix((first.data[:1], (first.row[:1], first.col[:1])), shape=first.shape)
        if name == "cmf":
            return dict(R=entry, T=sp.coo_matrix(d["T"].shape))
        return dict(r=entry, g=d["g"])
    if name in SAMPLED:
        return dict(seen=sp.csr_matrix(([1.0], ([0], [0])), shape=(1, 2)))
    return {k: (v if k in ("tau", "fld") else v[:1]) for k, v in d.items()}


def l1_targets(name, d):
    """param -> (lambda, the coordinates the one term's `reg l1` covers, deg 1)."""
    if name == "cmf":
        R = d["R"].tocoo()
        return {"P": (1e-2, np.s_[R.row[0]]), "Q": (1e-2, np.s_[R.col[0]])} if R.nnz else {}
    if name == "nnenet":
        return {"w": (0.05, np.s_[:]), "b": (0.01, np.s_[...])}
    return {}


def project(name, k, v, d):
    """The spec's constraint on what one term's step touched."""
    v = v.copy()
    if name == "archetype" and k == "Z":
        v[0] = onto_simplex(v[0])
    if name == "cmf" and k == "Q":
        for row in set(d["R"].tocoo().col) | set(d["T"].tocoo().row):
            v[row] *= min(1, 1 / np.linalg.norm(v[row]))
    if name == "huberball" and k == "w":
        v *= min(1, 2 / np.linalg.norm(v))
    if name == "nnenet":
        v = np.maximum(v, 0) if k == "w" else np.clip(v, -1, 1)
    if name == "powlink" and k == "a":
        v = np.clip(v, 0.5, 3)
    return v


def one_step(name, p, d, step, rule, draws=None):
    """One term's update at p by hand (rule_step) on the complex step of the reference."""
    def f(q):
        value = reference(name, q, d, draws)[0]
        return value if draws is None else value[0]
    return rule_step(f, p, step, rule, l1_targets(name, d),
                     lambda k, v: project(name, k, v, d), complex=True)


# ---- the tests ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", PLAIN)
def test_objective_and_predict_match_numpy(compiled, name):
    """At the initial params and after three epochs; predict without the labels."""
    d = small(name)
    check_objective_and_predict(compiled(name), d, lambda p: reference(name, p, d),
                                {k: v for k, v in d.items() if k not in LABELS.get(name, [])})


# Where one term writes one coordinate from several points of one access, AdaGrad adds each
# point's g^2 apart (docs/language.md, "The train line"): fwfm's R[fld[j], fld[l]] over the
# pairs of a row, and the sampled specs' draws, which collide on a 2-item set.
APART = {("fwfm", "R")}


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("name", PLAIN)
def test_one_step_is_the_update_rule_of_the_gradient(compiled, name, rule):
    d = one_term(name, small(name))
    apart = {k for n, k in APART if n == name and rule != "sgd"}
    check_one_step(compiled(name), d, lambda p: one_step(name, p, d, 0.05, rule), rule,
                   atol=1e-10, skip=apart, what=name)


@pytest.mark.parametrize("name", SAMPLED)
def test_sampled_step_is_the_gradient_at_its_draws(compiled, name):
    """On a 1 x 2 set the K draws are items 0 and 1: one sgd step is the gradient at one of
    the 2^K draw vectors (the reg's degrees the expected ones), in every sync mode; so is
    objective() (one fixed draw per term: two calls agree)."""
    d = one_term(name, small(name))
    check_sampled_step_at_its_draws(compiled(name), d,
                                    lambda p, c: one_step(name, p, d, 0.05, "sgd", c),
                                    lambda p, c: reference(name, p, d, c)[0][0], K=3,
                                    atol=1e-10)


SOFTMAX_BOUND = """model u6_softmax_bound
dim example, feature, class
data X[example, feature] : sparse
data y[example] : index(class)
param W[feature, class] >= 0 = 0
param b[class] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j]) + b
    loss logsumexp(z) - z[y[i]]
    reg l2(1e-4) on W[X[i]]
"""


def softmax_step(p, X, y, step, rule, lam, bound):
    """One term of softmax by hand: g = x (p - onehot) + reg, the update rule, the bound."""
    z = (X @ p["W"])[0] + p["b"]
    q = np.exp(z - z.max())
    q /= q.sum()
    q[y] -= 1
    js = X.indices
    gW = np.zeros_like(p["W"])
    gW[js] = np.outer(X.data, q) + 2 * lam * p["W"][js]     # deg 1: one term
    new = {}
    for k, g in (("W", gW), ("b", q)):
        if rule == "sgd":
            rate = step
        elif rule == "adagrad" or g.ndim < 2:
            rate = step / np.sqrt(g ** 2 + 1e-8)
        else:
            rate = step / np.sqrt((g ** 2).mean(-1, keepdims=True) + 1e-8)
        new[k] = p[k] - rate * g
    if bound:
        new["W"] = np.maximum(new["W"], 0)
    return new


@pytest.mark.parametrize("rule", RULES)
def test_a_coordinate_two_accesses_write_steps_once_on_their_sum(load_spec, rule):
    """Regression: softmax writes W[j, y[i]] through W[j] (the logsumexp) and through
    W[j, y[i]] (the label's score); under AdaGrad each write was its own step with its own
    g^2 (the first step of the label's column was 0.03 x the rule's, a coordinate whose
    gradient is 0 moved), and under a bound each was clipped apart. The shipped softmax, and
    the same with `>= 0`, now step each coordinate once on the sum, in every sync mode."""
    X = sp.csr_matrix(np.array([[0.5, 0.0, 1.2, 0.7]]))
    y = np.array([2])
    for text, bound in ((SHIPPED.joinpath("softmax.hog").read_text(), False),
                        (SOFTMAX_BOUND, True)):
        mod = load_spec(text=text)
        for sync in SYNCS:
            before, after = stepped(mod, dict(X=X, y=y), rule, sync, step=0.1)
            want = softmax_step(before, X, y, 0.1, rule, 1e-4, bound)
            for k in want:
                np.testing.assert_allclose(after[k], want[k], rtol=0, atol=1e-12,
                                           err_msg=f"{k} {rule} {sync} bound={bound}")


def test_shipped_ffm_adagrad_sums_the_pairs_of_one_field(load_spec):
    """Regression: V[j, f[j2]] for two nonzeros j2 of one field (and the reg's V[j, field])
    is one coordinate; AdaGrad stepped each point apart (V off by 0.06 after one step of
    0.05). Now one step of the rule on the coordinate's whole gradient."""
    mod = load_spec("ffm")
    X = sp.csr_matrix(np.array([[0.5, 0.9, 0, 0.7, 0.3, 0.2]]))
    d = dict(X=X, f=np.array([0, 1, 1, 2, 0, 1]), y=np.array([1.0]))
    js, xs, f = X.indices, X.data, d["f"]

    def loss(p):
        V, w = p["V"], p["w"]
        z = p["w0"] + xs @ w[js] + sum(
            xs[a] * xs[b] * (V[js[a], f[js[b]]] * V[js[b], f[js[a]]]).sum()
            for a in range(len(js)) for b in range(a + 1, len(js)))
        return logistic(z) + 1e-5 * ((w[js] ** 2).sum() + (V[js] ** 2).sum())
    for rule in ("adagrad", "adagrad_row"):
        for sync in SYNCS:
            before, after = stepped(mod, d, rule, sync)
            g = complex_step(loss, before)["V"]
            G = g ** 2 if rule == "adagrad" else (g ** 2).mean(-1, keepdims=True)
            np.testing.assert_allclose(after["V"], before["V"] - 0.05 * g / np.sqrt(G + 1e-8),
                                       rtol=0, atol=1e-12, err_msg=f"{rule} {sync}")


@pytest.mark.parametrize("name", ["mlogit"])
def test_float32_builds(hog_cache_dir, name):
    mod = hogwild_dsl.load(text=SPECS[name], dtype="float32", cache_dir=hog_cache_dir)
    d = small(name)
    d1 = one_term(name, d)
    check_float32_build(mod, d, lambda p: reference(name, p, d)[0], d1,
                        lambda p, rule: one_step(name, p, d1, 0.05, rule), atol=2e-6)


def test_cli_on_user_files(tmp_path, hog_cache_dir):
    """check / compile / train of user specs on an svmlight file with a CRLF spec, csv
    triplets (a header and a timestamp column in one file, ids whose largest differ between
    the two files of one dim), an npz of several arrays; the saved params are a fit's."""
    from sklearn.datasets import dump_svmlight_file
    (tmp_path / "mlogit.hog").write_bytes(SPECS["mlogit"].encode())
    (tmp_path / "cmf.hog").write_text(SPECS["cmf"])
    (tmp_path / "tucker.hog").write_text(SPECS["tucker"])
    d = small("mlogit")
    dump_svmlight_file(d["X"], d["y"], str(tmp_path / "train.svm"), zero_based=True)
    np.save(tmp_path / "weights.npy", d["max"])
    res = run_hogwildc(tmp_path, "check", "mlogit.hog")
    assert res.returncode == 0 and "u6_mlogit" in res.stdout
    res = run_hogwildc(tmp_path, "compile", "mlogit.hog", "-o", "out")
    assert res.returncode == 0 and (tmp_path / "out" / "u6_mlogit.py").exists()
    res = run_hogwildc(tmp_path, "train", "mlogit.hog", "--data", "X,y=train.svm",
                       "--data", "max=weights.npy", "--epochs", "3", "--threads", "1",
                       "--optimizer", "adagrad", "--out", "m.npz", "-q")
    assert res.returncode == 0, res.stderr
    mod = hogwild_dsl.load(text=SPECS["mlogit"], cache_dir=hog_cache_dir)
    t = mod.Trainer(threads=1, epochs=3, optimizer="adagrad").fit(**d)
    assert_saved_params(tmp_path / "m.npz", t)

    c = small("cmf")
    R, T = c["R"], c["T"]
    lines = ["user,item,rating,timestamp"] + [f"{a},{b},{float(v)!r},1700000000"
                                                for a, b, v in zip(R.row, R.col, R.data)]
    (tmp_path / "R.csv").write_text("\n".join(lines) + "\n")
    keep = T.row < T.row.max()        # T's largest item id below R's
    (tmp_path / "T.csv").write_text("".join(f"{a},{b},{float(v)!r}\n" for a, b, v in
                                            zip(T.row[keep], T.col[keep], T.data[keep])))
    res = run_hogwildc(tmp_path, "train", "cmf.hog", "--data", "R=R.csv", "--data", "T=T.csv",
                       "--epochs", "2", "--sync", "lock", "--out", "c.npz", "-q")
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "c.npz")["Q"].shape == (R.shape[1], 3)

    np.savez(tmp_path / "cells.npz", **small("tucker"))
    res = run_hogwildc(tmp_path, "train", "tucker.hog", "--data", "ia,ib,ic,val=cells.npz",
                       "--epochs", "2", "-q")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("args, words", [
    (["--data", "X,y=bad.svm", "--data", "max=weights.npy"], ["bad.svm", "line 2", "x"]),
    (["--data", "X,y=train.svm", "--data", "max=missing.npy"], ["missing.npy"]),
    (["--data", "X,y=train.svm", "--data", "mx=weights.npy"], ["mx", "max"]),
    (["--data", "X,y=train.svm", "--data", "max=weights.npy", "--optimizer", "adam"],
     ["optimizer", "adam"]),
])
def test_cli_errors_name_the_culprit(tmp_path, hog_cache_dir, args, words):
    from sklearn.datasets import dump_svmlight_file
    (tmp_path / "mlogit.hog").write_bytes(SPECS["mlogit"].encode())
    d = small("mlogit")
    dump_svmlight_file(d["X"], d["y"], str(tmp_path / "train.svm"), zero_based=True)
    np.save(tmp_path / "weights.npy", d["max"])
    (tmp_path / "bad.svm").write_text("1 0:0.5 3:1\n2 1:x\n")
    res = run_hogwildc(tmp_path, "train", "mlogit.hog", *args, "--epochs", "1", "-q")
    assert res.returncode != 0
    for w in words:
        assert w in res.stderr, (w, res.stderr)


@pytest.mark.parametrize("text, where", [
    ("    loss sum[X[i]]\n", (7, 10)),
    ("    loss dot(X[i], w) + sum\n", (7, 25)),
])
def test_sum_used_as_a_name_says_it_is_a_keyword(text, where):
    """Regression: `param sum[...]` passes the declaration (a NAME there), and its use was
    "expected '(', found ')'" or the like; now the keyword, at its place."""
    spec = ("model m\ndim e, f\ndata X[e, f] : sparse\nparam sum[f] = 0\nparam w[f] = 0\n"
            "for i in e:\n" + text)
    with pytest.raises(hogwild_dsl.SpecError, match="'sum' is a keyword") as e:
        hogwild_dsl.check(spec)
    assert (e.value.line, e.value.column) == where


TWO_LABELS = """model u6_two_labels
dim example, feature, class
data X[example, feature] : sparse
data y[example] : index(class)
data y2[example] : index(class)
param W[feature, class] = 0
param b[class] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j]) + b
    loss logsumexp(z) - z[y[i]] + 0.3 * sum(j in X[i]: X[i, j] * (W[j, y[i]] - W[j, y2[i]]))
"""


@pytest.mark.parametrize("rule", RULES)
def test_two_accesses_in_one_nest_within_a_third(load_spec, rule):
    """Regression: W[j, y[i]] and W[j, y2[i]] share a nest (two sites), which under AdaGrad
    took the split path that absorbed nothing: both, and b[y[i]], stepped apart from W[j]
    and b (off by a whole step). Now merged as in the softmax case."""
    X = sp.csr_matrix(np.array([[0.5, 0.0, 1.2, 0.7]]))
    d = dict(X=X, y=np.array([2]), y2=np.array([1]))

    def f(p):
        z = (X @ p["W"])[0] + p["b"]
        return lse(z) - z[2] + 0.3 * (X @ (p["W"][:, 2] - p["W"][:, 1]))[0]
    mod = load_spec(text=TWO_LABELS)
    for sync in SYNCS:
        before, after = stepped(mod, d, rule, sync, step=0.1)
        g = complex_step(f, before)
        for k in before:
            G = g[k] ** 2 if rule == "adagrad" or g[k].ndim < 2 else \
                (g[k] ** 2).mean(-1, keepdims=True)
            rate = 0.1 if rule == "sgd" else 0.1 / np.sqrt(G + 1e-8)
            np.testing.assert_allclose(after[k], before[k] - rate * g[k], rtol=0, atol=1e-12,
                                       err_msg=f"{k} {rule} {sync}")
