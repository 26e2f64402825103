"""Objectives a new user writes from LANGUAGE.md and API.md alone (round 5).

New corners beside tests/test_user_objectives{,2,3,4}.py: a Crammer-Singer multiclass hinge
as `max(z - z[y[i]] + 1) - 1` with `predict argmax(z)`; BPR over explicit (user, pos, neg)
triples with item biases under `reg ... unscaled`; a field-aware FM written as a double sum
over one sparse row minus its diagonal; RESCAL with a 3-D relation tensor in a ball'd model,
and a 3-D param read with three indices; every scalar function of LANGUAGE.md and every
vector reduction in one spec of chained lets; four blocks (entries, rows, entries of a graph,
index tuples) sharing params, each with its own reg; constraints on 0-D, 1-D and 2-D params at
once (box, `>= 0`, simplex) beside `reg l1 ... unscaled`; ordinal regression reading a dense
2-D datum through a sum index; a multi-label loss applying softplus to a vector; skip-gram
with `sample n[K] in ctx ~ freq`; a `train` line with every key; `(softmax(z))[y[i]]`;
weighted draws whose weights hold zeros.

For each: `objective()` equals the objective written out in numpy (degree split included),
one SGD epoch of a tiny step is N times the finite-difference gradient of `objective()`,
`predict` is the predict written out in numpy; then constraints after large steps, draws
against their distribution, 2-thread fits (>= 5000 terms) in every sync mode and update rule
against serial, warm start / save / load / pickle continuing a fit exactly, float32,
validation with patience, `check`'s errors on what LANGUAGE.md says is invalid, and the CLI.
"""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import softmax

import hogwild_dsl
from conftest import run_hogwildc
from user_objective_checks import (check_patience_kept_the_best, float32_params, huber, lg,
                                   run_python, saved_loaded_pickled, sgd_epoch_against_numeric,
                                   sig, sparse_X)

SPECS = {
    # Crammer-Singer multiclass hinge; argmax predict; l1 on a sparse row's support
    "cs": """
model u5_cs
dim example, feature, class
data X[example, feature] : sparse
data y[example] : index(class)
param W[feature, class] ~ normal(0, 0.1)
param b[class] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j]) + b
    loss max(z - z[y[i]] + 1) - 1
    reg l1(0.01) on W[X[i]]
    reg l2(0.1) on b
    predict argmax(z)
train optimizer adagrad_row, step 0.2, decay 0.95, epochs 30
""",
    # BPR over explicit (user, pos, neg) triples with item biases
    "bprt": """
model u5_bprt
dim user, item, triple
const k = 4
data tu[triple] : index(user)
data ti[triple] : index(item)
data tj[triple] : index(item)
param P[user, k] ~ normal(0, 0.3)
param Q[item, k] ~ normal(0, 0.3)
param c[item] = 0
for t in triple:
    let x = c[ti[t]] - c[tj[t]] + dot(P[tu[t]], Q[ti[t]] - Q[tj[t]])
    loss softplus(-x)
    reg l2(0.05) on P[tu[t]], Q[ti[t]], Q[tj[t]]
    reg l2(0.01) on c[ti[t]], c[tj[t]] unscaled
    predict x
train step 0.1, epochs 20
""",
    # field-aware FM, 3-D param read with two indices
    "ffm": """
model u5_ffm
dim example, feature, field
const k = 3
data X[example, feature] : sparse
data fld[feature] : index(field)
data y[example] : sign
param w0 = 0
param w[feature] = 0
param V[feature, field, k] ~ normal(0, 0.2)
for i in example:
    let all = sum(j in X[i]: sum(l in X[i]: X[i, j] * X[i, l] * dot(V[j, fld[l]], V[l, fld[j]])))
    let diag = sum(j in X[i]: X[i, j]^2 * sqnorm(V[j, fld[j]]))
    let z = w0 + dot(X[i], w) + 0.5 * (all - diag)
    loss logistic(y[i] * z)
    reg l2(1e-3) on w[X[i]], V[X[i]]
    predict sigmoid(z)
train step 0.1, epochs 10
""",
    # RESCAL-style knowledge-graph scores with a 3-D relation tensor
    "rescal": """
model u5_rescal
dim ent, rel, fact
const k = 3
data h[fact] : index(ent)
data r[fact] : index(rel)
data o[fact] : index(ent)
data lab[fact] : sign
param E[ent, k] in ball(1.5) ~ normal(0, 0.3)
param M[rel, k, k] ~ normal(0, 0.3)
for t in fact:
    let s = sum(a in k: E[h[t], a] * dot(M[r[t], a], E[o[t]]))
    loss logistic(lab[t] * s)
    reg l2(0.01) on M[r[t]]
    predict s
train step 0.2, epochs 20
""",
    # every scalar function, chained lets, elementwise vectors
    "allfn": """
model u5_allfn
dim example, feature
data X[example, feature] : dense
data y[example] : real
param w[feature] ~ normal(0, 0.3)
param b = 0.5
for i in example:
    let z = dot(X[i], w) + b
    let a = w * X[i]
    let s = sqrt(1 + sqnorm(a))
    let e = exp(-z^2)
    loss huber(z - y[i], 0.5)
    loss 0.1 * softplus(z) + 0.1 * relu(z - 1) + 0.1 * abs(z)
    loss 0.05 * log(1 + e) + 0.05 * log1p(sigmoid(z))
    loss 0.1 * max(z, y[i]) - 0.1 * min(z, 0) + 0.01 * s
    loss 0.1 * hinge(y[i] * z) + 0.1 * sqhinge(z) + 0.1 * logistic(z)
    loss 0.01 * norm2(a) + 0.01 * norm1(w) + 0.01 * sum(a)^2 + 0.01 * (z / s)^3
    reg l1(0.01) on w
    predict z
train step 0.05, epochs 10
""",
    # three blocks, both kinds plus an index-tuple block; reg in each
    "social": """
model u5_social
dim user, item, feature, pair
const k = 3
data r[user, item] : sparse
data A[user, feature] : sparse
data trust[user, user] : sparse
data pa[pair] : index(item)
data pb[pair] : index(item)
param P[user, k] ~ normal(0, 0.3)
param Q[item, k] ~ normal(0, 0.3)
param F[feature, k] = 0
for (u, v) in r:
    loss (dot(P[u], Q[v]) - r[u, v])^2
    reg l2(0.02) on P[u], Q[v]
    predict dot(P[u], Q[v])
for u in user:
    let side = sum(j in A[u]: A[u, j] * F[j])
    loss 0.5 * sqnorm(P[u] - side)
    reg l2(0.01) on F[A[u]]
for (a, c) in trust:
    loss trust[a, c] * sqnorm(P[a] - P[c])
for p in pair:
    loss 0.1 * sqnorm(Q[pa[p]] - Q[pb[p]])
    reg l1(0.01) on Q[pa[p]]
train step 0.05, epochs 15
""",
    # constraints on 0-D, 1-D and 2-D params
    "boxes": """
model u5_boxes
dim user, item
const k = 3
data r[user, item] : sparse
param W[user, k] >= 0 ~ uniform(0, 1)
param H[item, k] in [0, 2] ~ uniform(0, 1)
param c in [0, 0.5] = 0.25
param g >= 0 = 1
param bu[user] in [-1, 1] = 0
param S[item, k] in simplex = uniform
for (u, v) in r:
    let pred = c + g * dot(W[u], H[v] + S[v]) + bu[u]
    loss (pred - r[u, v])^2
    reg l1(0.01) on W[u], H[v] unscaled
    predict pred
train step 0.02, epochs 10
""",
    # ordinal regression with thresholds, a dense 2-D datum read by a sum index
    "ordinal": """
model u5_ordinal
dim example, feature
const cut = 3
data X[example, feature] : sparse
data Yk[example, cut] : dense
param w[feature] = 0
param theta[cut] = 0
for i in example:
    let z = dot(X[i], w)
    loss sum(k in cut: logistic(Yk[i, k] * (z - theta[k])))
    reg l2(0.01) on w[X[i]], theta
    predict z
train step 0.2, epochs 20
""",
    # multi-label logistic over a const number of labels with an elementwise function of a vector
    "multilabel": """
model u5_multilabel
dim example, feature
const label = 4
data X[example, feature] : sparse
data Y[example, label] : dense
param W[feature, label] = 0
param b[label] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j]) + b
    loss sum(softplus(-Y[i] * z))
    reg l2(1e-3) on W[X[i]]
    predict sigmoid(z)
train step 0.5, epochs 20
""",
    # skip-gram with K weighted negatives
    "sgns": """
model u5_sgns
dim word, ctx
const K = 3
const d = 4
data co[word, ctx] : sparse
data freq[ctx] : real
param U[word, d] ~ normal(0, 0.1)
param V[ctx, d] ~ normal(0, 0.1)
for (w, c) in co:
    sample n[K] in ctx ~ freq
    loss co[w, c] * (softplus(-dot(U[w], V[c])) + sum(s in K: softplus(dot(U[w], V[n[s]]))))
    reg l2(1e-3) on U[w], V[c], V[n]
    predict dot(U[w], V[c])
""",
    # train line with every key
    "trainkeys": """
model u5_trainkeys
dim example, feature
data X[example, feature] : sparse
data y[example] : real
param w[feature] = 0
param b = 0
for i in example:
    loss (dot(X[i], w) + b - y[i])^2
    reg l2(0.1) on w[X[i]]
    predict dot(X[i], w) + b
train step 0.3, decay 0.9, epochs 7, optimizer adagrad, threads 1, sync atomic, seed 3, shuffle false, patience 2
""",
    # a vector expression in parentheses indexed by index data; one-arg max/min; a sum over a
    # dim; argmax of a vector expression in predict
    "softidx": """
model u5_softidx
dim example, feature, class
data X[example, feature] : sparse
data y[example] : index(class)
data cost[example, class] : dense
param W[feature, class] ~ normal(0, 0.3)
param b0 = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j]) + b0
    let p = softmax(z)
    loss -log((softmax(z))[y[i]]) + 0.1 * sum(k in class: cost[i, k] * p[k]) + 0.01 * (max(z) - min(z))
    reg l2(0.5) on b0
    predict argmax(z - cost[i])
""",
    # a 3-D param read with three indices, a scalar per entry
    "t3i": """
model u5_t3i
dim ent, rel, fact
const k = 2
data h[fact] : index(ent)
data r[fact] : index(rel)
data o[fact] : index(ent)
param E[ent, k] ~ normal(0, 0.3)
param M[rel, k, k] ~ normal(0, 0.3)
for t in fact:
    loss (sum(a in k: sum(c in k: E[h[t], a] * M[r[t], a, c] * E[o[t], c])) - 1)^2
    predict sum(a in k: sum(c in k: E[h[t], a] * M[r[t], a, c] * E[o[t], c]))
""",
    # draws weighted by data with zeros, K draws and one uniform draw, regularised through them
    "draws": """
model u5_draws
dim example, item
const K = 2
data x[example] : real
data pop[item] : real
param v[item] = 0
param b = 0
for i in example:
    sample n[K] in item ~ pop
    sample j in item
    loss sum(s in K: v[n[s]]) + 0.5 * v[j] + (b - x[i])^2
    reg l2(2.0) on v[n], v[j]
""",
}


# ---- small data per spec, and the objective and predict written out in numpy ---------------

def small(name, seed=0):
    """A small data set for spec `name` (every row, column and index value used)."""
    rng = np.random.default_rng(seed)
    if name in ("cs", "softidx"):
        n, d, C = 40, 12, 4
        X = sparse_X(n, d, seed + 1)
        y = rng.integers(0, C, n)
        y[:C] = np.arange(C)
        if name == "cs":
            return dict(X=X, y=y)
        return dict(X=X, y=y, cost=rng.uniform(0, 1, (n, C)))
    if name == "bprt":
        nu, ni, T = 5, 7, 30
        tu, ti, tj = rng.integers(0, nu, T), rng.integers(0, ni, T), rng.integers(0, ni, T)
        tu[:nu], ti[:ni], tj[:3] = np.arange(nu), np.arange(ni), ti[:3]   # some ti == tj
        return dict(tu=tu, ti=ti, tj=tj)
    if name == "ffm":
        n, d, F = 30, 8, 3
        fld = rng.integers(0, F, d)
        fld[:F] = np.arange(F)
        return dict(X=sparse_X(n, d, seed + 2, density=0.35), fld=fld,
                    y=np.where(rng.random(n) < .5, -1.0, 1.0))
    if name in ("rescal", "t3i"):
        ne, nr, T = 6, 3, 40
        h, r, o = rng.integers(0, ne, T), rng.integers(0, nr, T), rng.integers(0, ne, T)
        h[:ne], r[:nr] = np.arange(ne), np.arange(nr)
        d = dict(h=h, r=r, o=o)
        if name == "rescal":
            d["lab"] = np.where(rng.random(T) < .5, -1.0, 1.0)
        return d
    if name == "allfn":
        return dict(X=rng.normal(size=(25, 5)), y=rng.normal(size=25))
    if name == "social":
        nu, ni, nf, npair = 6, 7, 4, 5
        r = sp.random(nu, ni, density=0.5, random_state=seed + 3, format="coo")
        r.data = rng.uniform(1, 5, r.nnz)
        A = sparse_X(nu, nf, seed + 4, density=0.4)
        tr = sp.random(nu, nu, density=0.3, random_state=seed + 5, format="csr")
        tr.data[:] = rng.uniform(0.1, 1, tr.nnz)
        return dict(r=r, A=A, trust=tr, pa=rng.integers(0, ni, npair),
                    pb=rng.integers(0, ni, npair))
    if name == "boxes":
        r = sp.random(8, 6, density=0.6, random_state=seed + 3, format="csr")
        r.data = rng.uniform(0, 3, r.nnz)
        return dict(r=r)
    if name == "ordinal":
        n, K = 30, 3
        lev = rng.integers(0, K + 1, n)
        return dict(X=sparse_X(n, 6, seed + 5),
                    Yk=np.where(lev[:, None] > np.arange(K)[None], 1.0, -1.0))
    if name == "multilabel":
        n = 30
        return dict(X=sparse_X(n, 6, seed + 6), Y=np.where(rng.random((n, 4)) < .5, -1.0, 1.0))
    if name == "trainkeys":
        return dict(X=sparse_X(40, 6, seed + 8), y=rng.normal(size=40))
    raise KeyError(name)


def n_terms(name, d):
    if name == "social":
        return d["r"].nnz + d["A"].shape[0] + d["trust"].nnz + d["pa"].size
    if name == "boxes":
        return d["r"].nnz
    return next(v.shape[0] for v in d.values() if np.ndim(v) >= 1)


def split(rows_per_term, p, lam, kind="l2"):
    """Sum over terms of the degree split of `reg kind(lam)` over the rows each term touches
    (each row once per term): lam * |p[row]|^2 (or |p[row]|_1) / deg(row)."""
    deg = np.zeros(p.shape[0])
    for rows in rows_per_term:
        deg[np.unique(rows)] += 1
    pen = (lambda v: (v ** 2).sum()) if kind == "l2" else (lambda v: np.abs(v).sum())
    return sum(lam * pen(p[q]) / deg[q] for rows in rows_per_term for q in np.unique(rows))


def reference(name, p, d):
    """(objective, predict) of spec `name` at params p on data d, in numpy."""
    if name == "cs":
        X, y = d["X"], d["y"]
        n = X.shape[0]
        Z = X @ p["W"] + p["b"]
        loss = (Z - Z[np.arange(n), y][:, None] + 1).max(1) - 1
        # l1 on W[X[i]] split by column degrees sums to the l1 norm of the touched rows
        reg = 0.01 * np.abs(p["W"]).sum() + 0.1 * (p["b"] ** 2).sum()
        return loss.mean() + reg / n, Z.argmax(1)
    if name == "bprt":
        P, Q, c = p["P"], p["Q"], p["c"]
        tu, ti, tj = d["tu"], d["ti"], d["tj"]
        x = c[ti] - c[tj] + np.einsum("tk,tk->t", P[tu], Q[ti] - Q[tj])
        reg = split([[u] for u in tu], P, 0.05) + split(list(zip(ti, tj)), Q, 0.05)
        reg += 0.01 * (c[ti] ** 2 + c[tj] ** 2).sum()       # unscaled: every listed touch
        return np.logaddexp(0, -x).mean() + reg / tu.size, x
    if name == "ffm":
        X, fld, y = d["X"], d["fld"], d["y"]
        w0, w, V = p["w0"], p["w"], p["V"]
        z = np.zeros(X.shape[0])
        for i in range(X.shape[0]):
            js = X.indices[X.indptr[i]:X.indptr[i + 1]]
            xs = X.data[X.indptr[i]:X.indptr[i + 1]]
            z[i] = w0 + xs @ w[js] + sum(xs[a] * xs[b] * V[js[a], fld[js[b]]] @ V[js[b], fld[js[a]]]
                                         for a in range(len(js)) for b in range(a + 1, len(js)))
        rows = [X.indices[X.indptr[i]:X.indptr[i + 1]] for i in range(X.shape[0])]
        reg = split(rows, w[:, None], 1e-3) + split(rows, V, 1e-3)
        return lg(y * z).mean() + reg / z.size, sig(z)
    if name == "rescal":
        E, M = p["E"], p["M"]
        s = np.einsum("ta,tab,tb->t", E[d["h"]], M[d["r"]], E[d["o"]])
        reg = split([[q] for q in d["r"]], M, 0.01)
        return lg(d["lab"] * s).mean() + reg / s.size, s
    if name == "t3i":
        s = np.einsum("ta,tac,tc->t", p["E"][d["h"]], p["M"][d["r"]], p["E"][d["o"]])
        return ((s - 1) ** 2).mean(), s
    if name == "allfn":
        X, y, w, b = d["X"], d["y"], p["w"], p["b"]
        z = X @ w + b
        a = w * X
        s = np.sqrt(1 + (a * a).sum(1))
        L = (huber(z - y, 0.5) + 0.1 * np.logaddexp(0, z) + 0.1 * np.maximum(z - 1, 0)
             + 0.1 * np.abs(z) + 0.05 * np.log(1 + np.exp(-z ** 2)) + 0.05 * np.log1p(sig(z))
             + 0.1 * np.maximum(z, y) - 0.1 * np.minimum(z, 0) + 0.01 * s
             + 0.1 * np.maximum(0, 1 - y * z) + 0.1 * np.maximum(0, 1 - z) ** 2 + 0.1 * lg(z)
             + 0.01 * np.sqrt((a * a).sum(1)) + 0.01 * np.abs(w).sum() + 0.01 * a.sum(1) ** 2
             + 0.01 * (z / s) ** 3)
        return L.mean() + 0.01 * np.abs(w).sum() / z.size, z
    if name == "social":
        P, Q, F = p["P"], p["Q"], p["F"]
        r, A, tr = d["r"].tocoo(), sp.csr_matrix(d["A"]), d["trust"].tocoo()
        pa, pb = d["pa"], d["pb"]
        pred = np.einsum("tk,tk->t", P[r.row], Q[r.col])
        total = ((pred - r.data) ** 2).sum() + split([[u] for u in r.row], P, 0.02)
        total += split([[v] for v in r.col], Q, 0.02)
        total += 0.5 * ((P - A @ F) ** 2).sum()
        total += split([A.indices[A.indptr[u]:A.indptr[u + 1]] for u in range(A.shape[0])],
                       F, 0.01)
        total += (tr.data * ((P[tr.row] - P[tr.col]) ** 2).sum(1)).sum()
        total += 0.1 * ((Q[pa] - Q[pb]) ** 2).sum() + split([[q] for q in pa], Q, 0.01, "l1")
        return total / n_terms(name, d), pred
    if name == "boxes":
        r = d["r"].tocoo()
        W, H, S = p["W"], p["H"], p["S"]
        pred = p["c"] + p["g"] * np.einsum("tk,tk->t", W[r.row], H[r.col] + S[r.col]) \
            + p["bu"][r.row]
        reg = 0.01 * (np.abs(W[r.row]).sum() + np.abs(H[r.col]).sum())
        return (((pred - r.data) ** 2).sum() + reg) / r.nnz, pred
    if name == "ordinal":
        z = d["X"] @ p["w"]
        L = lg(d["Yk"] * (z[:, None] - p["theta"][None])).sum(1)
        return L.mean() + 0.01 * ((p["w"] ** 2).sum() + (p["theta"] ** 2).sum()) / z.size, z
    if name == "multilabel":
        Z = d["X"] @ p["W"] + p["b"]
        L = np.logaddexp(0, -d["Y"] * Z).sum(1)
        return L.mean() + 1e-3 * (p["W"] ** 2).sum() / Z.shape[0], sig(Z)
    if name == "softidx":
        X, y, cost = d["X"], d["y"], d["cost"]
        n = X.shape[0]
        Z = X @ p["W"] + p["b0"]
        Pm = softmax(Z, axis=1)
        L = -np.log(Pm[np.arange(n), y]) + 0.1 * (cost * Pm).sum(1) + 0.01 * (Z.max(1) - Z.min(1))
        return L.mean() + 0.5 * p["b0"] ** 2 / n, (Z - cost).argmax(1)
    if name == "trainkeys":
        z = d["X"] @ p["w"] + p["b"]
        return ((z - d["y"]) ** 2).mean() + 0.1 * (p["w"] ** 2).sum() / z.size, z
    raise KeyError(name)


SMOOTH = ["cs", "bprt", "ffm", "rescal", "t3i", "allfn", "social", "ordinal", "multilabel",
          "softidx", "trainkeys"]


def predict_data(name, d):
    """d without the data predict does not read (the labels)."""
    labels = {"cs": ["y"], "ffm": ["y"], "rescal": ["lab"], "allfn": ["y"], "ordinal": ["Yk"],
              "multilabel": ["Y"], "softidx": ["y"], "trainkeys": ["y"]}
    return {k: v for k, v in d.items() if k not in labels.get(name, [])}


@pytest.mark.parametrize("name", SMOOTH + ["boxes"])
def test_objective_and_predict_match_numpy(compiled, name):
    mod, d = compiled(name), small(name)
    t = mod.Trainer(threads=1, seed=0, epochs=3, optimizer="sgd").fit(**d)
    obj, pred = reference(name, {k: v.copy() for k, v in t.params.items()}, d)
    assert t.objective(**d) == pytest.approx(obj, rel=1e-10, abs=1e-12)
    if name in ("social", "bprt", "t3i", "boxes"):      # predict reads no label datum
        out = t.predict(**d)
    else:
        out = t.predict(**predict_data(name, d))
    np.testing.assert_allclose(out, pred, rtol=1e-9, atol=1e-12)
    assert [h["epoch"] for h in t.history] == [1, 2, 3]
    assert set(t.history[-1]) >= {"epoch", "objective", "seconds", "step"}
    assert t.history[-1]["objective"] == pytest.approx(t.objective(**d), rel=1e-9)


@pytest.mark.parametrize("name", SMOOTH)
def test_sgd_step_is_the_gradient(compiled, name):
    d = small(name)
    start, sgd, numeric = sgd_epoch_against_numeric(compiled(name), d, n_terms(name, d))
    for k in start:
        scale = max(1.0, np.abs(numeric[k]).max())
        np.testing.assert_allclose(sgd[k], numeric[k], atol=2e-6 * scale, err_msg=k)


def test_constrained_gradient_and_feasibility(compiled):
    """boxes: where no projection acts the step is the gradient; the simplex rows move along
    the simplex's tangent (the gradient less its row mean); after large steps every
    constraint holds, on the 0-D params too."""
    mod, d = compiled("boxes"), small("boxes")
    start, sgd, numeric = sgd_epoch_against_numeric(mod, d, d["r"].nnz)
    for k in ("H", "c", "g", "bu"):
        np.testing.assert_allclose(sgd[k], numeric[k], atol=1e-6, err_msg=k)
    free = start["W"] > 0
    np.testing.assert_allclose(sgd["W"][free], numeric["W"][free], atol=1e-6)
    assert (start["S"] > 0).all()
    tangent = numeric["S"] - numeric["S"].mean(1, keepdims=True)
    np.testing.assert_allclose(sgd["S"], tangent, atol=1e-6)
    t = mod.Trainer(threads=1, seed=0, epochs=40, step=0.05).fit(r=d["r"] * 3)
    p = t.params
    assert p["W"].min() >= 0 and p["g"] >= 0
    assert 0 <= p["H"].min() and p["H"].max() <= 2 and 0 <= p["c"] <= 0.5
    assert -1 <= p["bu"].min() and p["bu"].max() <= 1
    assert p["S"].min() >= 0 and np.allclose(p["S"].sum(1), 1)
    # and the rows of E, in a ball, with a 3-D param beside it
    mod, d = compiled("rescal"), small("rescal")
    t = mod.Trainer(threads=1, seed=0, epochs=30, step=2.0).fit(**d)
    assert np.linalg.norm(t.params["E"], axis=1).max() <= 1.5 + 1e-12


# ---- threads and sync modes ----------------------------------------------------------------

def large(name, seed=0):
    """>= 5000 terms (2 threads then really run) with a structure to learn."""
    rng = np.random.default_rng(seed + 100)     # not the trainer's init stream (seed 0)
    if name in ("cs", "ordinal", "multilabel"):
        n, d = 6000, 200
        X = sparse_X(n, d, seed + 1, density=0.03)
        Z = X @ rng.normal(size=(d, 5))
        if name == "cs":
            return dict(X=X, y=np.asarray(Z.argmax(1)).ravel())
        if name == "ordinal":
            lev = np.digitize(Z[:, 0], np.quantile(Z[:, 0], [0.25, 0.5, 0.75]))
            return dict(X=X, Yk=np.where(lev[:, None] > np.arange(3)[None], 1.0, -1.0))
        return dict(X=X, Y=np.where(Z[:, :4] > np.median(Z[:, :4], 0), 1.0, -1.0))
    if name == "social":
        nu, ni, nf = 400, 300, 30
        r = sp.random(nu, ni, density=0.05, random_state=seed + 3, format="coo")
        r.data = 3 + (rng.normal(size=(nu, 2)) @ rng.normal(size=(2, ni)))[r.row, r.col]
        tr = sp.random(nu, nu, density=0.01, random_state=seed + 5, format="csr")
        tr.data[:] = rng.uniform(0.1, 1, tr.nnz)
        return dict(r=r, A=sparse_X(nu, nf, seed + 4, density=0.1), trust=tr,
                    pa=rng.integers(0, ni, 1000), pb=rng.integers(0, ni, 1000))
    raise KeyError(name)


@pytest.mark.parametrize("name", ["cs", "ordinal", "multilabel", "social"])
@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "adagrad_row"])
def test_two_threads_agree_with_serial(compiled, name, optimizer):
    """Convex objectives (and a planted low-rank one): 2 threads end where 1 does, within
    SGD's noise, under each sync mode: the median of three seeds' fits on each side (one
    fit's end moves with its visit order: cs under sgd at the train line's step ended
    0.032-0.047 over serial seeds 0-4, and one 2-thread fit on a loaded CI machine 0.059).
    (Non-convex ones with a poor planted structure, such as RESCAL on arbitrary labels, end
    in seed-dependent optima even serially.)"""
    mod, d = compiled(name), large(name)
    start = mod.Trainer(threads=1, seed=0, epochs=0).fit(**d).objective(**d)

    def median_end(**options):
        return float(np.median([mod.Trainer(seed=seed, epochs=4, optimizer=optimizer, **options)
                                .fit(**d).objective(**d) for seed in range(3)]))
    serial = median_end(threads=1)
    assert serial < start
    for sync in ("hogwild", "lock", "atomic"):
        two = median_end(threads=2, sync=sync)
        assert abs(two - serial) < 0.1 * (start - serial) + 0.01 * serial, sync


# ---- the train line, draws -----------------------------------------------------------------

def test_train_line_sets_every_key(compiled):
    mod, d = compiled("trainkeys"), small("trainkeys")
    t = mod.Trainer()
    assert (t.threads, t.epochs, t.step, t.decay, t.seed, t.sync, t.optimizer, t.patience,
            t.order) == (1, 7, 0.3, 0.9, 3, "atomic", "adagrad", 2, "stored")
    t.fit(**d)
    np.testing.assert_allclose([h["step"] for h in t.history], 0.3 * 0.9 ** np.arange(7))
    again = mod.Trainer().fit(**d)          # seed 3, one thread, stored order: reproducible
    np.testing.assert_array_equal(again.params["w"], t.params["w"])
    over = mod.Trainer(epochs=2, optimizer="sgd", sync="hogwild", seed=5)
    assert (over.epochs, over.optimizer, over.sync, over.seed, over.step) == \
        (2, "sgd", "hogwild", 5, 0.3)


def test_weighted_draws_follow_their_weights(compiled):
    """A loss linear in the drawn rows: one epoch of tiny steps moves row q by the expected
    number of draws of it, K * pop[q] / sum(pop) + 1/6 per term (rows of weight 0 only by
    the uniform draw); the reg's expected degrees make its share sum to lam * ||v||^2."""
    mod = compiled("draws")
    pop = np.array([0, 1, 2, 0, 5, 2.0])
    N = 60000
    d = dict(x=np.zeros(N), pop=pop)
    t = mod.Trainer(threads=1, epochs=1, seed=0, step=1e-6, decay=1.0).fit(**d)
    moved = -t.params["v"] / 1e-6 / N
    np.testing.assert_allclose(moved, 2 * pop / pop.sum() + 0.5 / 6, atol=0.02)
    t.params["v"][...] = 1.0
    o = t.objective(**d)
    assert o == t.objective(**d)
    assert (o - 2.5) * N == pytest.approx(2.0 * 6, rel=0.05)


@pytest.mark.parametrize("bad, message", [(np.zeros(6), "sum must be positive"),
                                          (-np.ones(6), "non-negative"),
                                          (np.full(6, np.inf), "NaN or inf")])
def test_bad_draw_weights_are_a_data_error_without_warnings(compiled, bad, message):
    """Regression: the expected degrees of a weighted draw divided by the weights' sum before
    the weights were checked, so a zero sum also printed numpy's 'invalid value encountered
    in divide' RuntimeWarning beside the DataError."""
    mod = compiled("draws")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(hogwild_dsl.DataError, match=message):
            mod.Trainer(epochs=1).fit(x=np.zeros(10), pop=bad)


def test_skipgram_objective_estimates_the_expectation(compiled):
    mod = compiled("sgns")
    rng = np.random.default_rng(4)
    co = sp.random(30, 20, density=0.5, random_state=7, format="csr")
    co.data = rng.integers(1, 4, co.nnz).astype(float)
    co = sp.csr_matrix(sp.vstack([co] * 6))
    freq = rng.uniform(0.1, 1, 20) ** 2
    t = mod.Trainer(threads=1, epochs=2, seed=0).fit(co=co, freq=freq)
    U, V = t.params["U"], t.params["V"]
    c = co.tocoo()
    S = U[c.row] @ V.T
    neg = 3 * (np.logaddexp(0, S) * (freq / freq.sum())).sum(1)
    L = c.data * (np.logaddexp(0, -S[np.arange(c.nnz), c.col]) + neg)
    expected = L.mean() + 1e-3 * ((U[np.unique(c.row)] ** 2).sum() + (V ** 2).sum()) / c.nnz
    o = t.objective(co=co, freq=freq)
    assert o == t.objective(co=co, freq=freq)
    assert abs(o - expected) < 3 * L.std() / np.sqrt(c.nnz)
    np.testing.assert_allclose(t.predict(co=co, freq=freq), S[np.arange(c.nnz), c.col])


# ---- state: warm start, save / load, pickle, float32, validation ---------------------------

@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "adagrad_row"])
def test_two_fits_continue_one(compiled, tmp_path, optimizer):
    """2 + 2 epochs (warm start, a saved and loaded trainer, a pickled one) is 4 epochs, bit
    for bit, on one thread in stored order: the step schedule, AdaGrad's sums and the l1
    penalties owed (cs has `reg l1`) carry over."""
    mod, d = compiled("cs"), small("cs")
    kw = dict(threads=1, seed=0, decay=0.8, optimizer=optimizer, order="stored")
    full = mod.Trainer(epochs=4, **kw).fit(**d)
    half = mod.Trainer(epochs=2, **kw).fit(**d)
    loaded, pickled = saved_loaded_pickled(mod, half, tmp_path / "half.npz")
    loaded.threads, loaded.order = 1, "stored"
    for t in (half, loaded, pickled):
        t.fit(**d)
        for k in full.params:
            np.testing.assert_array_equal(t.params[k], full.params[k])
        assert [h["epoch"] for h in t.history][-1] == 4
        assert t.history[-1]["step"] == pytest.approx(full.history[-1]["step"])
    assert set(np.load(tmp_path / "half.npz").files) >= {"W", "b"}


def test_float32_build(tmp_path):
    mod = hogwild_dsl.load(text=SPECS["ffm"], dtype="float32")
    d = small("ffm")
    t = mod.Trainer(threads=1, seed=0, epochs=3).fit(**d)
    obj, pred = reference("ffm", float32_params(t), d)
    assert t.objective(**d) == pytest.approx(obj, rel=1e-5)
    np.testing.assert_allclose(t.predict(X=d["X"], fld=d["fld"]), pred, rtol=1e-5)
    back, pickled = saved_loaded_pickled(mod, t, tmp_path / "m.npz")
    for k in t.params:
        np.testing.assert_array_equal(back.params[k], t.params[k])
    assert pickled.params["V"].dtype == np.float32


def test_validation_with_patience_keeps_the_best_epoch(compiled):
    mod, rng = compiled("cs"), np.random.default_rng(3)
    n, d, C = 400, 300, 5
    W = rng.normal(size=(d, C))
    X, Xv = sparse_X(n, d, 1, density=0.02), sparse_X(n, d, 9, density=0.02)
    y = np.asarray((X @ W).argmax(1)).ravel()
    y = np.where(rng.random(n) < 0.3, rng.integers(0, C, n), y)       # noisy: overfits
    yv = np.asarray((Xv @ W).argmax(1)).ravel()
    t = mod.Trainer(threads=1, seed=0, epochs=40, step=0.5, decay=1.0, optimizer="sgd",
                    patience=3).fit(X=X, y=y, validation={"X": Xv, "y": yv})
    check_patience_kept_the_best(t, {"X": Xv, "y": yv}, 3, epochs=40)
    with pytest.raises(hogwild_dsl.DataError, match="'y'"):
        mod.Trainer(threads=1, epochs=1).fit(X=X, y=y, validation={"X": Xv, "y": yv + C})



def test_replaced_params_are_checked_and_errors_name_the_culprit(compiled, tmp_path):
    """t.params is live: a replaced array (a list, ints, Fortran order) is read as given. A
    key that is no param was ignored without a word (a typo'd name changed nothing), and a
    param of the wrong shape at save was reported as a clash with no name for the other side
    ('b has shape (4,), but the other params imply (3,)' where W was replaced): regression
    for both."""
    mod, d = compiled("cs"), small("cs")
    t = mod.Trainer(threads=1, epochs=1).fit(**d)
    t.params["b"] = [0.1, 0.2, 0.3, 0.4]
    t.params["W"] = np.asfortranarray(np.ones(t.params["W"].shape, dtype=int))
    want = {k: np.array(v, dtype=float) for k, v in t.params.items()}
    assert t.objective(**d) == pytest.approx(reference("cs", want, d)[0], rel=1e-12)
    t.params["bias"] = np.zeros(4)
    with pytest.raises(hogwild_dsl.DataError, match="'bias', which is no param.*W, b"):
        t.objective(**d)
    del t.params["bias"]
    t.params["W"] = np.zeros((3, 3))
    with pytest.raises(hogwild_dsl.DataError,
                       match=r"param 'b' has shape \(4,\), but dim 'class' is 3 \(from "
                             r"param 'W' \(axis 1\)\)"):
        t.save(tmp_path / "m.npz")


# ---- what check must reject ----------------------------------------------------------------

HEAD = """model bad
dim example, feature, class
data X[example, feature] : sparse
data y[example] : sign
data c[example] : index(class)
param w[feature] = 0
param W[feature, class] = 0
"""
LOSS = "for i in example:\n    loss hinge(y[i] * dot(X[i], w))\n"

# (spec, line, column, words of the message): what LANGUAGE.md names as invalid
BAD = {
    "unknown name": (HEAD + "for i in example:\n    loss hinge(y[i] * dot(X[i], ww))\n",
                     9, 33, "did you mean 'w'"),
    "index outside its block": (HEAD + LOSS + "for j in example:\n    loss y[i] * dot(X[j], w)\n",
                                11, 12, "outside"),
    "param at the wrong dim": (HEAD + "param b[class] = 0\nfor i in example:\n    loss b[i]\n",
                               10, 12, "class"),
    "vectors over two dims": (HEAD + "param b[class] = 0\nfor i in example:\n"
                              "    loss sum(sum(j in X[i]: X[i, j] * W[j]) + w)\n", 10, 14, ""),
    "loss not scalar": (HEAD + "for i in example:\n    loss sum(j in X[i]: X[i, j] * W[j])\n",
                        9, 10, "scalar"),
    "loss without a param": (HEAD + "for i in example:\n    loss y[i]^2\n"
                             "    loss hinge(dot(X[i], w))\n", 9, 10, "no param"),
    "arity of huber": (HEAD + "for i in example:\n    loss huber(y[i] - dot(X[i], w))\n",
                       9, 10, "huber"),
    "argmax in a loss": (HEAD + "for i in example:\n    let z = sum(j in X[i]: X[i, j] * W[j])\n"
                         "    loss argmax(z) * dot(X[i], w)\n", 10, 10, "argmax"),
    "duplicate let": (HEAD + "for i in example:\n    let w = dot(X[i], w)\n    loss hinge(w)\n",
                      9, 9, "'w'"),
    "keyword as a name": (HEAD + "param loss = 0\n" + LOSS, 8, 7, "loss"),
    "entries of dense data": ("model bad\ndim a, b\ndata D[a, b] : dense\nparam v[b] = 0\n"
                              "for (u, q) in D:\n    loss (D[u, q] - v[q])^2\n", 5, 15, "sparse"),
    "tab": (HEAD + "for i in example:\n\tloss hinge(dot(X[i], w))\n", 9, 1, "tab"),
    "ball on a 0-D param": (HEAD + "param s in ball(1) = 1\nfor i in example:\n"
                            "    loss hinge(s * dot(X[i], w))\n", 8, 9, "ball"),
    "index datum over another dim": (HEAD + "for i in example:\n    loss hinge(y[i] * w[c[i]])\n",
                                     9, 25, "index(feature)"),
    "sampled index in predict": (HEAD + "for i in example:\n    sample j in feature\n"
                                 "    loss hinge(y[i] * w[j])\n    predict w[j]\n", 11, 15, "'j'"),
    "three-index for": ("model bad\ndim user, item\ndata T[user, item] : sparse\n"
                        "param P[user] = 0\nfor (u, i, j) in T:\n    loss P[u]^2\n",
                        5, 12, "for t in triple"),
    "two predicts": (HEAD + LOSS + "    predict dot(X[i], w)\nfor j in example:\n"
                     "    loss dot(X[j], w)^2\n    predict dot(X[j], w)\n", 13, 5, "predict"),
    "sample count not a const": (HEAD + "for i in example:\n    sample n[feature] in feature\n"
                                 "    loss sum(s in feature: w[n[s]]^2)\n", 9, 14, ""),
    "negative lambda": (HEAD + LOSS + "    reg l2(-0.1) on w[X[i]]\n", 10, 12, ""),
    "unknown train key": (HEAD + LOSS + "train step 0.1, epoch 5\n", 10, 17, "epochs"),
    "unknown optimizer": (HEAD + LOSS + "train optimizer adam\n", 10, 17, "adagrad"),
    "a literal size": ("model bad\ndim a\nparam v[a, 4] = 0\nfor i in a:\n    loss sqnorm(v[i])\n",
                       3, 12, ""),
}


@pytest.mark.parametrize("case", list(BAD))
def test_check_rejects_with_position_caret_and_hint(case):
    text, line, column, words = BAD[case]
    with pytest.raises(hogwild_dsl.SpecError) as info:
        hogwild_dsl.check(text)
    e, msg = info.value, str(info.value)
    assert (e.line, e.column) == (line, column), msg
    shown = text.splitlines()[line - 1].replace("\t", " ")
    lines = msg.splitlines()
    at = next(k for k, s in enumerate(lines) if s.strip() == shown.strip())
    assert lines[at + 1].index("^") - lines[at].index(shown.strip()[0]) == \
        column - 1 - (len(shown) - len(shown.lstrip())), msg
    assert "hint" in msg and words in msg, msg


def test_check_accepts_what_the_language_allows():
    """0-D params in a box or >= 0 mean something (only simplex and ball do not); reg l1 on
    a 0-D param; a 3-D param read with three indices; `2.5E+3`-style numbers."""
    for name in SPECS:
        hogwild_dsl.check(SPECS[name])
    hogwild_dsl.check(HEAD + "param s in [0, 1] = 0.5\nparam g >= 0 = 2.5E+0\n"
                      "for i in example:\n    loss hinge(s * g * y[i] * dot(X[i], w))\n"
                      "    reg l1(1e-4) on s\n")


# ---- the command line ----------------------------------------------------------------------

def test_cli_check_compile_train_on_files(tmp_path, hog_cache_dir, compiled):
    for name in ("bprt", "ordinal"):
        (tmp_path / f"{name}.hog").write_text(SPECS[name])
    (tmp_path / "bad.hog").write_text(BAD["unknown name"][0])
    res = run_hogwildc(tmp_path, "check", "bprt.hog", "ordinal.hog")
    assert res.returncode == 0 and "d/dP" in res.stdout and "d/dtheta" in res.stdout
    res = run_hogwildc(tmp_path, "check", "ordinal.hog", "bad.hog")
    assert res.returncode == 1 and "did you mean 'w'" in res.stderr and "^" in res.stderr
    res = run_hogwildc(tmp_path, "compile", "bprt.hog", "-o", "gen", "--const", "k=6")
    assert res.returncode == 0, res.stderr
    code = ("import numpy as np, gen.u5_bprt as m; i = np.arange(3); "
            "print(m.Trainer(epochs=0).fit(tu=i, ti=i, tj=i).params['P'].shape)")
    assert run_python(tmp_path, code) == "(3, 6)"
    d = small("ordinal")
    sp.save_npz(tmp_path / "X.npz", d["X"])
    np.savetxt(tmp_path / "Yk.csv", d["Yk"], delimiter=",")
    res = run_hogwildc(tmp_path, "train", "ordinal.hog", "--data", "X=X.npz", "--data", "Yk=Yk.csv",
                   "--validation", "X=X.npz", "--validation", "Yk=Yk.csv", "--epochs", "3",
                   "--threads", "1", "--sync", "lock", "--optimizer", "adagrad",
                   "--out", "o.npz")
    assert res.returncode == 0, res.stderr
    saved = np.load(tmp_path / "o.npz")
    t = compiled("ordinal").Trainer(threads=1, epochs=0).fit(**d)
    t.params["w"][...], t.params["theta"][...] = saved["w"], saved["theta"]
    final = float(res.stdout.split("final objective")[1].split()[0])
    assert t.objective(**d) == pytest.approx(final, rel=1e-6)
