"""Objectives and usages a new user writes from LANGUAGE.md and API.md alone (round 3).

New corners beside tests/test_user_objectives.py and tests/test_user_objectives2.py: a log
link with an exposure offset and weights (Poisson), a Gamma GLM, epsilon-insensitive SVR,
class weights read through index data (`cw[k[i]]`), an elastic net on a whole 1-D param, a
multi-label logistic loss with a vector `predict`, an index datum over a const with a
Weston-Watkins hinge, RESCAL's 3-D param read as `G[rel[i], a]` with a 3-D reg target, TransE
with an L1 distance and two `sample` lines, a Huber robust PCA with a ball on the components,
confidence-weighted MF whose weights come as another sparse matrix (duplicates kept), a graph
over one dim (`for (u, v) in A` with `A[node, node]`), one param regularised in three blocks
under three degree rules, and one spec with every `reg` form, constraint and initialiser.

For each: `objective()` equals the objective written out in numpy, one SGD epoch of a tiny step
is N times the finite-difference gradient of `objective()`, and training ends near an
independent optimum (scikit-learn, a linear solve, or scipy on the same objective). Then the
API surfaces: load options, Trainer arguments and their errors, data errors, history, warm
start, live params, divergence, save/load/pickle, the CLI with its exit codes, the
scikit-learn estimators with a user's own spec, and the Dask path.
"""
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from conftest import run_hogwildc
from user_objective_checks import (assert_saved_params, check_sgd_epoch_is_the_gradient,
                                   dask_client, flat_minimum, float32_params, huber, lg,
                                   run_python, saved_loaded_pickled, sig, signs, softplus, sparse_X,
                                   support)

SPECS = {
    "poisson": """
model u3_poisson_exposure
dim example, feature
data X[example, feature] : sparse
data y[example] : real
data logt[example] : real          # log of each example's exposure
param w[feature] = 0
param b = 0
for i in example:
    let eta = dot(X[i], w) + b + logt[i]
    loss exp(eta) - y[i] * eta
    reg l2(2.0) on w[X[i]]
    predict exp(dot(X[i], w) + b)  # the rate per unit of exposure
train step 0.02, decay 0.99, epochs 150
""",
    "gamma": """
model u3_gamma
dim example, feature
data X[example, feature] : dense
data y[example] : real
param w[feature] = 0
param b = 0
for i in example:
    let eta = dot(X[i], w) + b
    loss y[i] * exp(-eta) + eta
    reg l2(1.0) on w
    predict exp(eta)
train step 0.02, decay 0.99, epochs 150
""",
    "svr": """
model u3_svr
dim example, feature
data X[example, feature] : sparse
data y[example] : real
data eps : real
param w[feature] = 0
for i in example:
    loss relu(abs(dot(X[i], w) - y[i]) - eps)
    reg l2(0.5) on w[X[i]]
    predict dot(X[i], w)
train step 0.2, decay 0.97, epochs 150
""",
    "cwhinge": """
model u3_cwhinge
dim example, feature, klass
data X[example, feature] : sparse
data y[example] : sign
data k[example] : index(klass)     # 0 for y = -1, 1 for y = +1
data cw[klass] : real              # the weight of each class
param w[feature] = 0
for i in example:
    loss cw[k[i]] * sqhinge(y[i] * dot(X[i], w))
    reg l2(0.5) on w[X[i]]
    predict dot(X[i], w)
train step 0.1, decay 0.97, epochs 100
""",
    "enet": """
model u3_enet
dim example, feature
data X[example, feature] : dense
data y[example] : real
param w[feature] = 0
param b = 0
for i in example:
    loss 0.5 * (dot(X[i], w) + b - y[i])^2
    reg l1(10) on w
    reg l2(5) on w
    predict dot(X[i], w) + b
train step 0.05, decay 0.97, epochs 150
""",
    "multilabel": """
model u3_multilabel
dim example, feature, label
data X[example, feature] : sparse
data Y[example, label] : dense     # +1 / -1 for each label
param W[feature, label] = 0
param b[label] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j]) + b
    loss sum(k in label: logistic(Y[i, k] * z[k]))
    reg l2(0.5) on W[X[i]]
    predict sigmoid(z)
train step 0.5, decay 0.97, epochs 100
""",
    "weston": """
model u3_weston
dim example, feature
const ncls = 3
data X[example, feature] : sparse
data y[example] : index(ncls)
param W[feature, ncls] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j])
    loss sum(k in ncls: sqhinge(z[y[i]] - z[k])) - 1
    reg l2(0.5) on W[X[i]]
    predict argmax(z)
train step 0.1, decay 0.97, epochs 100
""",
    "rescal": """
model u3_rescal
dim triple, entity, relation
const k = 3
data h[triple] : index(entity)
data rel[triple] : index(relation)
data t[triple] : index(entity)
data y[triple] : binary
param E[entity, k] ~ normal(0, 0.3)
param G[relation, k, k] ~ normal(0, 0.3)
for i in triple:
    let s = sum(a in k: E[h[i], a] * dot(G[rel[i], a], E[t[i]]))
    loss y[i] * softplus(-s) + (1 - y[i]) * softplus(s)
    reg l2(0.05) on E[h[i]], E[t[i]], G[rel[i]]
    predict sigmoid(s)
train step 0.1, decay 0.995, epochs 400
""",
    "transe": """
model u3_transe_l1
dim triple, entity, relation
const k = 4
data h[triple] : index(entity)
data rel[triple] : index(relation)
data t[triple] : index(entity)
param E[entity, k] in ball(1) ~ normal(0, 0.3)
param R[relation, k] ~ normal(0, 0.3)
for i in triple:
    sample ch in entity
    sample ct in entity
    let pos = norm1(E[h[i]] + R[rel[i]] - E[t[i]])
    loss relu(1 + pos - norm1(E[ch] + R[rel[i]] - E[t[i]])) + relu(1 + pos - norm1(E[h[i]] + R[rel[i]] - E[ct]))
    predict -pos
train step 0.02, epochs 100
""",
    "rpca": """
model u3_robust_pca
dim obs, feature
const rank = 2
data Y[obs, feature] : dense
param A[obs, rank] ~ normal(0, 0.1)
param B[rank, feature] in ball(3) ~ normal(0, 0.5)
param mu[feature] = 0
for i in obs:
    let recon = mu + sum(k in rank: A[i, k] * B[k])
    loss sum(f in feature: huber(Y[i, f] - recon[f], 1.0))
    reg l2(0.05) on A[i]
    predict recon
train step 0.05, decay 0.99, epochs 300
""",
    "wmf": """
model u3_wmf
dim user, item
const rank = 2
data r[user, item] : sparse
data c[user, item] : sparse        # the confidence of each observation, same entries
param P[user, rank] ~ normal(0, 0.1)
param Q[item, rank] ~ normal(0, 0.1)
param bu[user] = 0
for (u, v) in r:
    let pred = dot(P[u], Q[v]) + bu[u]
    loss c[u, v] * (pred - r[u, v])^2
    reg l2(0.05) on P[u], Q[v], bu[u]
    predict pred
train step 0.05, decay 0.998, epochs 1500
""",
    "laplace": """
model u3_laplace
dim node, feat
data A[node, node] : sparse        # edge weights
data F[node, feat] : dense
data m[node] : binary              # 1 where F is observed
param Z[node, feat] = 0
for (u, v) in A:
    loss A[u, v] * sqnorm(Z[u] - Z[v])
for n in node:
    loss m[n] * sqnorm(Z[n] - F[n])
    predict Z[n]
train step 0.1, decay 0.99, epochs 300
""",
    "blocks": """
model u3_blocks
dim example, feature
data X[example, feature] : sparse
data y[example] : sign
data S[feature, feature] : sparse  # a similarity graph on the features
param w[feature] = 0
param b = 0
for i in example:
    loss logistic(y[i] * (dot(X[i], w) + b))
    reg l2(0.2) on w[X[i]]
    predict sigmoid(dot(X[i], w) + b)
for (a, c) in S:
    loss S[a, c] * (w[a] - w[c])^2
    reg l2(0.3) on w[a], w[c]
for f in feature:
    loss 0.01 * softplus(w[f])
    reg l2(0.05) on w
train step 0.3, decay 0.98, epochs 200
""",
    "allforms": """
model u3_allforms
dim example, feature, grp, user, item
const k = 2
data X[example, feature] : sparse
data y[example] : real
data g[example] : index(grp)
data r[user, item] : sparse
param w[feature] in [-2, 2] ~ uniform(-0.1, 0.1)
param V[feature, k] in ball(0.8) ~ normal(0, 0.1)
param c[grp] >= 0 = 0.5
param S[grp, k] in simplex = uniform
param L[user, k] >= 0 ~ uniform(0, 0.5)
param Rm[item, k] in [-1, 1] = 0.1
param bu[user] = 0
param s0 in [0, 3] = 1
for i in example:
    let h = sum(j in X[i]: X[i, j] * V[j])
    let yhat = dot(X[i], w) + c[g[i]] + dot(S[g[i]], h) + s0
    loss (yhat - y[i])^2
    reg l2(0.1) on w[X[i]]
    reg l1(0.05) on V[X[i]]
    reg l2(0.2) on c[g[i]], S[g[i]] unscaled
    predict yhat
for (u, v) in r:
    loss (dot(L[u], Rm[v]) + bu[u] - r[u, v])^2
    reg l1(0.01) on L[u], bu[u]
    reg l2(0.03) on Rm[v] unscaled
for v in item:
    loss 0.1 * sum(Rm[v])
    reg l2(0.5) on w
train step 0.02, decay 0.97, epochs 60
""",
}

SAMPLED = {"transe"}


# ---- data and the numpy objective ------------------------------------------------------

def make_data(name):
    rng = np.random.default_rng(7)
    if name == "poisson":
        X = sparse_X(200, 8, 1)
        t = rng.uniform(0.5, 3, 200)
        y = rng.poisson(t * np.exp(X @ rng.normal(scale=0.5, size=8) + 0.2)).astype(float)
        return dict(X=X, y=y, logt=np.log(t))
    if name == "gamma":
        X = rng.normal(size=(200, 5)) * 0.5
        mu = np.exp(X @ np.array([0.5, -0.3, 0.2, 0.0, 0.4]) + 0.3)
        return dict(X=X, y=rng.gamma(2.0, mu / 2))
    if name == "svr":
        X = sparse_X(200, 10, 2)
        return dict(X=X, y=X @ rng.normal(size=10) + 0.2 * rng.normal(size=200), eps=0.1)
    if name == "cwhinge":
        X = sparse_X(200, 10, 3)
        y = signs(X @ rng.normal(size=10) - 0.5 + 0.5 * rng.logistic(size=200))
        return dict(X=X, y=y, k=((y + 1) // 2).astype(np.int64), cw=np.array([1.0, 3.0]))
    if name == "enet":
        X = rng.normal(size=(200, 8))
        w = np.array([2.0, -1.5, 0.0, 0.0, 1.0, 0.0, 0.05, -0.8])
        return dict(X=X, y=X @ w + 0.5 + 0.5 * rng.normal(size=200))
    if name == "multilabel":
        X = sparse_X(150, 10, 4)
        Z = X @ rng.normal(size=(10, 3)) + rng.normal(size=3) + 0.5 * rng.logistic(size=(150, 3))
        return dict(X=X, Y=signs(Z - np.median(Z, axis=0)))
    if name == "weston":
        X = sparse_X(150, 10, 5)
        y = np.argmax(X @ rng.normal(size=(10, 3)) + 0.3 * rng.gumbel(size=(150, 3)), axis=1)
        return dict(X=X, y=y)
    if name in ("rescal", "transe"):
        n = 150
        h, t = rng.integers(0, 8, n), rng.integers(0, 8, n)
        t = np.where(t == h, (t + 1) % 8, t)
        h[:8] = np.arange(8)
        t[:8] = (np.arange(8) + 3) % 8
        rel = rng.integers(0, 2, n)
        if name == "transe":        # a planted translation: rel 0 moves 1 ahead, rel 1 moves 3
            return dict(h=h, rel=rel, t=(h + np.where(rel == 0, 1, 3)) % 8)
        E, G = rng.normal(size=(8, 3)), rng.normal(size=(2, 3, 3))
        s = np.einsum("ia,iab,ib->i", E[h], G[rel], E[t])
        return dict(h=h, rel=rel, t=t, y=(s + rng.logistic(size=n) > 0).astype(float))
    if name == "rpca":
        Y = rng.normal(size=(60, 2)) @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(60, 6)) + 1.0
        Y[rng.random(Y.shape) < 0.05] += 8.0          # gross outliers
        return dict(Y=Y)
    if name == "wmf":
        m = sp.random(12, 10, density=0.45, random_state=8, format="coo")
        U, V = rng.normal(size=(12, 2)), rng.normal(size=(10, 2))
        row, col = np.r_[m.row, m.row[:3]], np.r_[m.col, m.col[:3]]      # 3 entries twice
        vals = (U[row] * V[col]).sum(1) + 0.2 * rng.normal(size=len(row))
        order = rng.permutation(len(row))
        r = sp.coo_matrix((vals[order], (row[order], col[order])), shape=(12, 10))
        c = sp.coo_matrix((rng.uniform(0.5, 2, len(row)), (r.row, r.col)), shape=(12, 10))
        return dict(r=r, c=c)
    if name == "laplace":
        n = 30
        u = np.repeat(np.arange(n), 3)
        v = (u + rng.integers(1, n, len(u))) % n
        A = sp.coo_matrix((rng.uniform(0.5, 1.5, len(u)), (u, v)), shape=(n, n))
        return dict(A=A, F=rng.normal(size=(n, 2)), m=(np.arange(n) % 3 == 0).astype(float))
    if name == "blocks":
        X = sparse_X(120, 12, 6)
        y = signs(X @ rng.normal(size=12) + 0.5 * rng.logistic(size=120))
        a = rng.integers(0, 12, 20)
        c = (a + rng.integers(1, 12, 20)) % 12
        S = sp.coo_matrix((rng.uniform(0.5, 1, 20), (a, c)), shape=(12, 12))
        return dict(X=X, y=y, S=S)
    if name == "allforms":
        X = sparse_X(60, 8, 9)
        g = rng.integers(0, 3, 60)
        g[:3] = np.arange(3)
        m = sp.random(5, 6, density=0.5, random_state=10, format="coo")
        r = sp.coo_matrix((rng.uniform(1, 3, m.nnz), (m.row, m.col)), shape=(5, 6))
        return dict(X=X, y=X @ rng.normal(size=8) + g, g=g, r=r)
    raise KeyError(name)


def n_terms(name, d):
    if name == "wmf":
        return d["r"].nnz
    if name == "laplace":
        return d["A"].nnz + d["A"].shape[0]
    if name == "blocks":
        return d["X"].shape[0] + d["S"].nnz + d["X"].shape[1]
    if name == "allforms":
        return d["X"].shape[0] + d["r"].nnz + d["r"].shape[1]
    first = {"rescal": "h", "transe": "h", "rpca": "Y", "multilabel": "Y"}.get(name, "y")
    return d[first].shape[0]


def objective(name, p, d):
    """The spec's objective written out by hand, the degree split included: a penalty on a
    coordinate some term of its block touches counts once in full, over N terms (`unscaled`:
    once per touch). For transe the expectation over both draws."""
    N = n_terms(name, d)
    if name == "poisson":
        w = p["w"]
        eta = d["X"] @ w + p["b"] + d["logt"]
        return np.mean(np.exp(eta) - d["y"] * eta) + 2.0 * (w[support(d["X"])] ** 2).sum() / N
    if name == "gamma":
        w = p["w"]
        eta = d["X"] @ w + p["b"]
        return np.mean(d["y"] * np.exp(-eta) + eta) + 1.0 * w @ w / N
    if name == "svr":
        w = p["w"]
        r = np.abs(d["X"] @ w - d["y"]) - d["eps"]
        return np.mean(np.maximum(r, 0)) + 0.5 * (w[support(d["X"])] ** 2).sum() / N
    if name == "cwhinge":
        w = p["w"]
        m = np.maximum(0, 1 - d["y"] * (d["X"] @ w)) ** 2
        return np.mean(d["cw"][d["k"]] * m) + 0.5 * (w[support(d["X"])] ** 2).sum() / N
    if name == "enet":
        w = p["w"]
        r = d["X"] @ w + p["b"] - d["y"]
        return np.mean(0.5 * r ** 2) + (10 * np.abs(w).sum() + 5 * w @ w) / N
    if name == "multilabel":
        W = p["W"]
        z = np.asarray(d["X"] @ W) + p["b"]
        return lg(d["Y"] * z).sum() / N + 0.5 * (W[support(d["X"])] ** 2).sum() / N
    if name == "weston":
        W = p["W"]
        z = np.asarray(d["X"] @ W)
        zy = z[np.arange(N), d["y"]]
        loss = (np.maximum(0, 1 - (zy[:, None] - z)) ** 2).sum(1) - 1
        return np.mean(loss) + 0.5 * (W[support(d["X"])] ** 2).sum() / N
    if name == "rescal":
        E, G = p["E"], p["G"]
        s = np.einsum("ia,iab,ib->i", E[d["h"]], G[d["rel"]], E[d["t"]])
        y = d["y"]
        ents = np.unique(np.r_[d["h"], d["t"]])
        pen = (E[ents] ** 2).sum() + (G[np.unique(d["rel"])] ** 2).sum()
        return np.mean(y * softplus(-s) + (1 - y) * softplus(s)) + 0.05 * pen / N
    if name == "transe":
        return transe_expected(p, d)
    if name == "rpca":
        A, B, mu = p["A"], p["B"], p["mu"]
        return huber(d["Y"] - mu - A @ B, 1.0).sum() / N + 0.05 * (A ** 2).sum() / N
    if name == "wmf":
        r, c = d["r"], d["c"]
        P, Q, bu = p["P"], p["Q"], p["bu"]
        pred = (P[r.row] * Q[r.col]).sum(1) + bu[r.row]
        users, items = np.unique(r.row), np.unique(r.col)
        pen = (P[users] ** 2).sum() + (Q[items] ** 2).sum() + (bu[users] ** 2).sum()
        return np.mean(c.data * (pred - r.data) ** 2) + 0.05 * pen / N
    if name == "laplace":
        A, Z = d["A"], p["Z"]
        edges = (A.data * ((Z[A.row] - Z[A.col]) ** 2).sum(1)).sum()
        return (edges + (d["m"] * ((Z - d["F"]) ** 2).sum(1)).sum()) / N
    if name == "blocks":
        w, S = p["w"], d["S"]
        cls = lg(d["y"] * (d["X"] @ w + p["b"])).sum() + 0.2 * (w[support(d["X"])] ** 2).sum()
        graph = (S.data * (w[S.row] - w[S.col]) ** 2).sum()
        graph += 0.3 * (w[np.unique(np.r_[S.row, S.col])] ** 2).sum()
        return (cls + graph + 0.01 * softplus(w).sum() + 0.05 * w @ w) / N
    if name == "allforms":
        X, g, r = d["X"], d["g"], d["r"]
        w, V, c, S, L, Rm, bu, s0 = (p[k] for k in ("w", "V", "c", "S", "L", "Rm", "bu", "s0"))
        yhat = X @ w + c[g] + (S[g] * np.asarray(X @ V)).sum(1) + s0
        s = support(X)
        b1 = ((yhat - d["y"]) ** 2).sum() + 0.1 * (w[s] ** 2).sum() + 0.05 * np.abs(V[s]).sum()
        b1 += 0.2 * (c[g] ** 2 + (S[g] ** 2).sum(1)).sum()
        users = np.unique(r.row)
        b2 = (((L[r.row] * Rm[r.col]).sum(1) + bu[r.row] - r.data) ** 2).sum()
        b2 += 0.01 * (np.abs(L[users]).sum() + np.abs(bu[users]).sum())
        b2 += 0.03 * (Rm[r.col] ** 2).sum()
        b3 = 0.1 * Rm.sum() + 0.5 * w @ w
        return (b1 + b2 + b3) / N
    raise KeyError(name)


def transe_expected(p, d):
    """The loss averaged over every corrupted head and every corrupted tail (uniform draws)."""
    E, R = p["E"], p["R"]
    h, rel, t = d["h"], d["rel"], d["t"]
    pos = np.abs(E[h] + R[rel] - E[t]).sum(1)
    head = np.abs(E[None, :, :] + (R[rel] - E[t])[:, None, :]).sum(2)   # (terms, entity)
    tail = np.abs((E[h] + R[rel])[:, None, :] - E[None, :, :]).sum(2)
    return np.mean(np.maximum(0, 1 + pos[:, None] - head).mean(1)
                   + np.maximum(0, 1 + pos[:, None] - tail).mean(1))


# ---- references -------------------------------------------------------------------------

def reference(name, d):
    """An independent optimum of the same objective (scikit-learn where it has the model)."""
    f = lambda p: objective(name, p, d)            # noqa: E731
    N = n_terms(name, d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "poisson":
            from sklearn.linear_model import PoissonRegressor
            t = np.exp(d["logt"])
            m = PoissonRegressor(alpha=4.0 / t.sum(), tol=1e-12, max_iter=100000)
            m.fit(d["X"], d["y"] / t, sample_weight=t)
            return f({"w": m.coef_, "b": m.intercept_})
        if name == "gamma":
            from sklearn.linear_model import GammaRegressor
            m = GammaRegressor(alpha=2.0 / N, tol=1e-12, max_iter=100000).fit(d["X"], d["y"])
            return f({"w": m.coef_, "b": m.intercept_})
        if name == "svr":
            from sklearn.svm import LinearSVR
            m = LinearSVR(C=1.0, epsilon=d["eps"], loss="epsilon_insensitive", fit_intercept=False,
                          dual=True, tol=1e-10, max_iter=10 ** 6).fit(d["X"], d["y"])
            return f({"w": m.coef_})
        if name == "cwhinge":
            from sklearn.svm import LinearSVC
            m = LinearSVC(C=1.0, loss="squared_hinge", class_weight={-1: 1.0, 1: 3.0},
                          fit_intercept=False, dual=True, tol=1e-12, max_iter=10 ** 6)
            return f({"w": m.fit(d["X"], d["y"]).coef_.ravel()})
        if name == "enet":
            return f(enet_sklearn(d))
        if name == "multilabel":
            from sklearn.linear_model import LogisticRegression
            W, b = np.zeros((10, 3)), np.zeros(3)
            for k in range(3):
                m = LogisticRegression(C=1.0, tol=1e-12, max_iter=100000).fit(d["X"], d["Y"][:, k])
                W[:, k], b[k] = m.coef_.ravel(), m.intercept_[0]
            return f({"W": W, "b": b})
        if name == "laplace":
            A = sp.csr_matrix(d["A"])
            Lap = sp.diags(np.asarray(A.sum(0) + A.sum(1).T).ravel()) - A - A.T
            M = sp.diags(d["m"])
            Z = np.linalg.solve((Lap + M).toarray(), M @ d["F"])
            return f({"Z": Z})
        rng = np.random.default_rng(0)
        shapes = {"weston": {"W": (10, 3)}, "blocks": {"w": (12,), "b": ()},
                  "rescal": {"E": (8, 3), "G": (2, 3, 3)}}[name]
        size = sum(int(np.prod(s)) for s in shapes.values())
        starts = [np.zeros(size)] if name in ("weston", "blocks") else \
            [rng.normal(scale=0.5, size=size) for _ in range(3)]
        return flat_minimum(f, shapes, starts)


def enet_sklearn(d):
    from sklearn.linear_model import ElasticNet
    m = ElasticNet(alpha=0.1, l1_ratio=0.5, tol=1e-14, max_iter=10 ** 6).fit(d["X"], d["y"])
    return {"w": m.coef_, "b": np.float64(m.intercept_)}


def rpca_svd(d):
    """Rank-2 PCA of the centred data, its components scaled onto the ball's sphere."""
    Y = d["Y"]
    mu = Y.mean(0)
    U, s, Vt = np.linalg.svd(Y - mu, full_matrices=False)
    return {"A": U[:, :2] * s[:2] / 3.0, "B": 3.0 * Vt[:2], "mu": mu}


TOLERANCE = {"svr": 0.02, "rescal": 0.03, "wmf": 0.03}
LOCAL = {"wmf"}   # SGD and L-BFGS from one start end in different minima (0.043 vs 0.038)


# ---- objective, gradient, optimum --------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SPECS))
def test_objective_is_the_numpy_objective(compiled, name):
    """At the initial params and after a few epochs (transe: two calls agree, and the one-draw
    estimate is near the expectation)."""
    mod = compiled(name)
    d = make_data(name)
    for epochs in (0, 3):
        t = mod.Trainer(threads=1, seed=0, epochs=epochs).fit(**d)
        value = t.objective(**d)
        if name in SAMPLED:
            assert t.objective(**d) == value
            assert value == pytest.approx(objective(name, t.params, d), rel=0.1)
        else:
            assert value == pytest.approx(objective(name, t.params, d), rel=1e-10, abs=1e-13)


def test_degree_split_counts_the_targets_of_one_line_together(compiled):
    """`reg l2(L) on E[h[i]], E[t[i]]`: over an epoch every touched row pays L ||E[e]||^2 once,
    also a row that a term reaches both as head and as tail, and a term with h = t."""
    d = make_data("rescal")
    d["t"][:5] = d["h"][:5]                 # five terms touch one row twice
    t = compiled("rescal").Trainer(threads=1, seed=0, epochs=2).fit(**d)
    assert t.objective(**d) == pytest.approx(objective("rescal", t.params, d), rel=1e-12)


def interior(name, k, v):
    """The coordinates of param k at v where the objective is smooth and no projection acts
    (allforms' and enet's l1 coordinates at 0, points on a constraint's boundary, simplex
    rows)."""
    if name == "enet" and k == "w":
        return np.abs(v) > 1e-3
    if name != "allforms":
        return np.ones(v.shape, bool)
    if k == "S":
        return np.zeros(v.shape, bool)
    if k == "V":
        return (np.abs(v) > 1e-3) & (np.linalg.norm(v, axis=1) < 0.8 - 1e-3)[:, None]
    if k in ("L", "bu"):
        return np.abs(v) > 1e-3
    lo, hi = {"w": (-2, 2), "c": (0, np.inf), "Rm": (-1, 1), "s0": (0, 3)}[k]
    return (v > lo + 1e-3) & (v < hi - 1e-3)


@pytest.mark.parametrize("name", sorted(set(SPECS) - SAMPLED))
def test_sgd_step_is_the_gradient(compiled, name):
    """One epoch of tiny steps moves the params by step * N * grad(objective), checked against
    central differences of objective() at a trained point."""
    d = make_data(name)
    check_sgd_epoch_is_the_gradient(compiled(name), d, n_terms(name, d),
                                    lambda k, v: interior(name, k, v))


OPTIMA = sorted(set(SPECS) - {"transe", "rpca", "allforms"})


@pytest.mark.parametrize("name", OPTIMA)
def test_reaches_the_reference_optimum(compiled, name):
    d = make_data(name)
    t = compiled(name).Trainer(threads=1, seed=0).fit(**d)
    value = objective(name, t.params, d)
    assert t.objective(**d) == pytest.approx(value, rel=1e-10)
    if name in LOCAL:     # non-convex, several local minima: L-BFGS-B polishing ours
        shapes = {k: v.shape for k, v in t.params.items()}
        start = np.concatenate([t.params[k].ravel() for k in shapes])
        ref = flat_minimum(lambda p: objective(name, p, d), shapes, [start])
    else:
        ref = reference(name, d)
    assert value <= ref + TOLERANCE.get(name, 0.01) * abs(ref) + 1e-4, (name, value, ref)


def test_enet_zeros_are_exact_and_match_sklearn(compiled):
    d = make_data("enet")
    t = compiled("enet").Trainer(threads=1, seed=0).fit(**d)
    coef = enet_sklearn(d)["w"]
    assert set(np.flatnonzero(t.params["w"] == 0)) == set(np.flatnonzero(coef == 0)) != set()
    np.testing.assert_allclose(t.params["w"], coef, atol=0.03)


def test_rpca_beats_pca_and_keeps_the_ball(compiled):
    d = make_data("rpca")
    mod = compiled("rpca")
    t = mod.Trainer(threads=1, seed=0).fit(**d)
    assert np.linalg.norm(t.params["B"], axis=1).max() <= 3 + 1e-12
    assert objective("rpca", t.params, d) < objective("rpca", rpca_svd(d), d)
    recon = t.predict(Y=d["Y"])             # a vector per term; Y is read only by the loss
    assert recon.shape == (60, 6)
    np.testing.assert_allclose(recon, t.params["mu"] + t.params["A"] @ t.params["B"], rtol=1e-12)


def test_transe_learns_and_keeps_the_ball(compiled):
    d = make_data("transe")
    mod = compiled("transe")
    start = transe_expected(mod.Trainer(threads=1, seed=0, epochs=0).fit(**d).params, d)
    t = mod.Trainer(threads=1, seed=0).fit(**d)
    assert np.linalg.norm(t.params["E"], axis=1).max() <= 1 + 1e-12
    end = transe_expected(t.params, d)
    assert end < 0.6 * start, (start, end)
    E, R = t.params["E"], t.params["R"]
    np.testing.assert_allclose(t.predict(h=d["h"], rel=d["rel"], t=d["t"]),
                               -np.abs(E[d["h"]] + R[d["rel"]] - E[d["t"]]).sum(1), rtol=1e-12)


def test_allforms_inits_constraints_and_training(compiled):
    d = make_data("allforms")
    mod = compiled("allforms")
    p = mod.Trainer(threads=1, seed=0, epochs=0).fit(**d).params
    assert p["s0"].shape == () and p["s0"] == 1.0
    np.testing.assert_array_equal(p["c"], 0.5)
    np.testing.assert_array_equal(p["S"], 0.5)
    np.testing.assert_array_equal(p["Rm"], 0.1)
    np.testing.assert_array_equal(p["bu"], 0.0)
    assert np.all(np.abs(p["w"]) <= 0.1) and np.unique(p["w"]).size == 8
    assert np.all((p["L"] >= 0) & (p["L"] <= 0.5)) and np.unique(p["L"]).size == 10
    assert 0.02 < p["V"].std() < 0.3
    again = mod.Trainer(threads=1, seed=0, epochs=0).fit(**d).params
    other = mod.Trainer(threads=1, seed=1, epochs=0).fit(**d).params
    np.testing.assert_array_equal(again["V"], p["V"])
    assert not np.array_equal(other["V"], p["V"])
    start = objective("allforms", p, d)
    for sync in ("hogwild", "atomic", "lock"):
        t = mod.Trainer(threads=2, seed=0, sync=sync).fit(**d)
        q = t.params
        assert np.all(np.abs(q["w"]) <= 2) and np.all(q["c"] >= 0) and np.all(q["L"] >= 0)
        assert np.all(np.abs(q["Rm"]) <= 1) and 0 <= q["s0"] <= 3
        assert np.linalg.norm(q["V"], axis=1).max() <= 0.8 + 1e-12
        assert np.all(q["S"] >= 0) and np.allclose(q["S"].sum(1), 1, atol=1e-12)
        assert t.objective(**d) == pytest.approx(objective("allforms", q, d), rel=1e-10)
        assert objective("allforms", q, d) < 0.5 * start, sync
    pred = t.predict(X=d["X"], g=d["g"])
    np.testing.assert_allclose(pred, d["X"] @ q["w"] + q["c"][d["g"]] + (q["S"][d["g"]] * (d["X"] @ q["V"])).sum(1) + q["s0"], rtol=1e-12)


# ---- predict, entries and their companions ------------------------------------------------

def test_vector_predicts(compiled):
    d = make_data("multilabel")
    t = compiled("multilabel").Trainer(threads=1, seed=0, epochs=5).fit(**d)
    p = t.predict(X=d["X"])                       # Y is a label: not needed
    assert p.shape == (150, 3)
    np.testing.assert_allclose(p, sig(d["X"] @ t.params["W"] + t.params["b"]), rtol=1e-12)
    d = make_data("laplace")
    t = compiled("laplace").Trainer(threads=1, seed=0, epochs=5).fit(**d)
    np.testing.assert_array_equal(t.predict(A=d["A"], F=d["F"], m=d["m"]), t.params["Z"])


def test_weighted_entries_pair_by_position_and_keep_duplicates(compiled):
    """c[u, v] is the weight of the entry (u, v) of r however each is stored; a stored entry
    given twice is two terms; predict follows r's own order."""
    mod = compiled("wmf")
    d = make_data("wmf")
    t = mod.Trainer(threads=1, seed=0, epochs=20).fit(**d)
    r = d["r"]
    P, Q, bu = t.params["P"], t.params["Q"], t.params["bu"]
    np.testing.assert_allclose(t.predict(r=r, c=d["c"]), (P[r.row] * Q[r.col]).sum(1) + bu[r.row],
                               rtol=1e-12)
    assert len(t.predict(r=r, c=d["c"])) == r.nnz
    # without duplicates, the weights may come in any format and order
    keep = np.ones(r.nnz, bool)
    pairs = set()
    for e, key in enumerate(zip(r.row, r.col)):
        keep[e] = key not in pairs
        pairs.add(key)
    r1 = sp.coo_matrix((r.data[keep], (r.row[keep], r.col[keep])), shape=r.shape)
    c1 = sp.coo_matrix((d["c"].data[keep], (r.row[keep], r.col[keep])), shape=r.shape)
    one = {"r": r1, "c": c1}
    value = t.objective(**one)
    assert value == pytest.approx(objective("wmf", t.params, one), rel=1e-12)
    assert t.objective(r=r1, c=c1.tocsc()) == pytest.approx(value, rel=1e-12)
    assert t.objective(r=r1.tocsr(), c=c1.tocsc()) == pytest.approx(value, rel=1e-12)
    other = c1.tolil()
    other[0, :] = 0
    other[0, 9 if r1.tocsr()[0, 9] == 0 else 8] = 1.0
    with pytest.raises(hogwild_dsl.DataError, match="'c'"):
        t.objective(r=r1, c=other.tocsr())


# ---- the Python API -----------------------------------------------------------------------

def test_load_options_and_the_module_surface(tmp_path, hog_cache_dir):
    path = tmp_path / "rescal.hog"
    path.write_text(SPECS["rescal"])
    a = hogwild_dsl.load(str(path), cache_dir=str(hog_cache_dir))
    b = hogwild_dsl.load(text=SPECS["rescal"], cache_dir=hog_cache_dir)
    c = hogwild_dsl.load(text=SPECS["rescal"], consts={"k": 2}, cache_dir=hog_cache_dir)
    f = hogwild_dsl.load(text=SPECS["rescal"], dtype="float32", cache_dir=hog_cache_dir)
    assert a.SPEC == b.SPEC == SPECS["rescal"] and a.SIGNATURE == b.SIGNATURE
    assert len({a.SIGNATURE, c.SIGNATURE, f.SIGNATURE}) == 3
    text = a.gradients()
    assert "E" in text and "G" in text
    d = make_data("rescal")
    assert c.Trainer(threads=1, epochs=0).fit(**d).params["G"].shape == (2, 2, 2)
    t = f.Trainer(threads=1, seed=0, epochs=5).fit(**d)
    assert t.objective(**d) == pytest.approx(objective("rescal", float32_params(t), d), rel=1e-5)
    ir = hogwild_dsl.check(SPECS["rescal"])
    assert ir is not None
    for bad in (dict(consts={"k": -1}), dict(consts={"kk": 2}), dict(dtype="float16")):
        with pytest.raises(hogwild_dsl.HogwildError) as err:
            hogwild_dsl.load(text=SPECS["rescal"], cache_dir=hog_cache_dir, **bad)
        assert ("k" if "consts" in bad else "float16") in str(err.value)
    with pytest.raises(hogwild_dsl.HogwildError, match="nope.hog"):
        hogwild_dsl.load(str(tmp_path / "nope.hog"))


@pytest.mark.parametrize("kwargs, word", [
    (dict(threads=0), "threads"), (dict(threads=-2), "threads"), (dict(threads="two"), "threads"),
    (dict(sync="locked"), "sync"), (dict(optimizer="adam"), "optimizer"),
    (dict(epochs=-1), "epochs"), (dict(epochs=2.5), "epochs"), (dict(step=-0.1), "step"),
    (dict(step=float("nan")), "step"), (dict(decay=-0.5), "decay"), (dict(patience=-1), "patience"),
    (dict(order="sideways"), "order"), (dict(seed="abc"), "seed"),
])
def test_trainer_argument_errors_name_the_argument(compiled, kwargs, word):
    """A bad argument is refused, at construction or at fit before any kernel runs, by an error
    that names it (never a traceback from deep inside)."""
    d = make_data("cwhinge")
    with pytest.raises((hogwild_dsl.HogwildError, ValueError, TypeError)) as err:
        compiled("cwhinge").Trainer(**kwargs).fit(**d)
    assert word in str(err.value)
    assert not isinstance(err.value, (KeyError, IndexError, AttributeError))


def data_error(t, word, /, **data):
    with pytest.raises(hogwild_dsl.DataError) as err:
        t.fit(**data)
    assert word in str(err.value), str(err.value)
    return str(err.value)


def test_data_errors_name_the_data(compiled):
    mod = compiled("cwhinge")
    d = make_data("cwhinge")
    t = mod.Trainer(threads=1, epochs=1)
    data_error(t, "cw", **{k: v for k, v in d.items() if k != "cw"})              # missing
    data_error(t, "extra", **d, extra=np.ones(3))                                   # unknown
    data_error(t, "y", **{**d, "y": d["y"][:-1]})                                   # length
    data_error(t, "y", **{**d, "y": (d["y"] + 1) / 2})                              # not +-1
    data_error(t, "k", **{**d, "k": d["k"] + 2, "cw": np.ones(2)})                  # beyond cw
    data_error(t, "k", **{**d, "k": np.where(d["k"] == 0, -1, 1)})                  # negative
    data_error(t, "k", **{**d, "k": d["k"] + 0.5})                                  # not integer
    data_error(t, "cw", **{**d, "cw": np.array([1.0, np.nan])})
    bad = d["X"].copy()
    bad.data[0] = np.inf
    data_error(t, "X", **{**d, "X": bad})
    data_error(t, "X", **{**d, "X": d["X"][:-1]})                                 # example dim
    e = make_data("rescal")
    t = compiled("rescal").Trainer(threads=1, epochs=1)
    data_error(t, "y", **{**e, "y": e["y"] * 2})                                   # binary
    data_error(t, "rel", **{**e, "rel": e["rel"][:-3]})                            # triple dim
    s = make_data("svr")
    t = compiled("svr").Trainer(threads=1, epochs=1)
    data_error(t, "eps", **{**s, "eps": np.array([0.1, 0.2])})                     # a scalar
    a = make_data("allforms")
    t = compiled("allforms").Trainer(threads=1, epochs=1)
    data_error(t, "g", **{**a, "g": a["g"][:10]})                                  # example dim
    with pytest.raises(hogwild_dsl.DataError, match="validation|'y'"):
        compiled("svr").Trainer(threads=1, epochs=2).fit(**s, validation={"X": s["X"]})


def test_history_warm_start_and_live_params(compiled):
    mod = compiled("gamma")
    d = make_data("gamma")
    t = mod.Trainer(threads=1, seed=0, epochs=6, step=0.01, decay=0.9).fit(**d)
    assert [h["epoch"] for h in t.history] == list(range(1, 7)) or \
        [h["epoch"] for h in t.history] == list(range(6))
    for e, h in enumerate(t.history):
        assert set(h) >= {"epoch", "objective", "seconds", "step"}
        assert h["step"] == pytest.approx(0.01 * 0.9 ** e, rel=1e-12) and h["seconds"] >= 0
    assert t.history[-1]["objective"] == pytest.approx(t.objective(**d), rel=1e-12)
    value = t.objective(**d)
    t.fit(**d)                                               # continues from the params
    assert t.objective(**d) < value
    t.params["w"][:] = 0.0                                    # the live model
    t.params["b"][...] = np.log(d["y"].mean())
    assert t.objective(**d) == pytest.approx(np.mean(d["y"] / d["y"].mean() + np.log(d["y"].mean())), rel=1e-12)
    np.testing.assert_allclose(t.predict(X=d["X"]), d["y"].mean(), rtol=1e-12)
    zero = mod.Trainer(threads=1, seed=0, epochs=0).fit(**d)
    assert zero.history == [] and np.all(zero.params["w"] == 0)


def test_divergence_keeps_the_last_finite_params(compiled):
    d = make_data("poisson")
    t = compiled("poisson").Trainer(threads=1, seed=0, epochs=20, step=50.0, decay=1.0)
    with pytest.raises(hogwild_dsl.DivergenceError) as err:
        t.fit(**d)
    message = str(err.value)
    assert "epoch" in message and "step" in message
    assert all(np.all(np.isfinite(v)) for v in t.params.values())


def test_threads_reproducible_and_sync_modes(compiled):
    mod = compiled("blocks")
    d = make_data("blocks")
    one = mod.Trainer(threads=1, seed=5, epochs=10).fit(**d)
    two = mod.Trainer(threads=1, seed=5, epochs=10).fit(**d)
    for k in one.params:
        np.testing.assert_array_equal(one.params[k], two.params[k])
    ref = one.objective(**d)
    for sync in ("hogwild", "atomic", "lock"):
        t = mod.Trainer(threads=2, seed=5, epochs=10, sync=sync).fit(**d)
        assert t.objective(**d) == pytest.approx(ref, rel=0.03), sync


def test_save_load_pickle_and_a_foreign_file(compiled, tmp_path):
    mod = compiled("weston")
    d = make_data("weston")
    t = mod.Trainer(threads=1, seed=0, epochs=5, optimizer="adagrad", step=0.1).fit(**d)
    back, again = saved_loaded_pickled(mod, t, tmp_path / "weston.npz")
    np.testing.assert_array_equal(back.predict(X=d["X"]), t.predict(X=d["X"]))
    assert again.objective(**d) == t.objective(**d)
    for x in (back, again):             # the accumulators travel: both continue alike
        x.threads, x.epochs = 1, 2
        x.fit(**d)
    t.epochs = 2
    t.fit(**d)
    np.testing.assert_allclose(again.params["W"], t.params["W"], rtol=1e-12)
    other = tmp_path / "svr.npz"
    compiled("svr").Trainer(threads=1, epochs=1).fit(**make_data("svr")).save(str(other))
    with pytest.raises(hogwild_dsl.HogwildError):
        mod.Trainer.load(str(other))


# ---- scikit-learn estimators with the user's own spec files -------------------------------

SOFTMAX_CONST = """
model u3_softmax_const
dim example, feature
const ncls = 3
data X[example, feature] : sparse
data y[example] : index(ncls)
param W[feature, ncls] = 0
param b[ncls] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j]) + b
    loss logsumexp(z) - z[y[i]]
    reg l2(0.5) on W[X[i]]
    predict softmax(z)
train step 0.5, decay 0.97, epochs 60
"""

BIASED_MF = """
model u3_biased_mf
dim user, item
const rank = 3
data r[user, item] : sparse
param bi[item] = 0
param P[user, rank] ~ normal(0, 0.1)
param Q[item, rank] ~ normal(0, 0.1)
for (u, v) in r:
    loss (bi[v] + dot(P[u], Q[v]) - r[u, v])^2
    reg l2(0.05) on P[u], Q[v] unscaled
    predict bi[v] + dot(P[u], Q[v])
train step 0.05, decay 0.99, epochs 100
"""


def test_sklearn_regressor_with_a_user_spec_file(tmp_path, compiled):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from hogwild_dsl.sklearn import HogwildRegressor
    spec = tmp_path / "gamma.hog"
    spec.write_text(SPECS["gamma"])
    d = make_data("gamma")
    est = HogwildRegressor(spec=str(spec), threads=1, seed=0, epochs=40, step=0.02)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and twin.get_params()["spec"] == str(spec)
    assert twin.set_params(step=0.01, epochs=3) is twin and twin.step == 0.01
    est.fit(d["X"], d["y"])
    t = compiled("gamma").Trainer(threads=1, seed=0, epochs=40, step=0.02).fit(**d)
    np.testing.assert_allclose(est.predict(d["X"]), t.predict(X=d["X"]), rtol=1e-9)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(est)).predict(d["X"]), est.predict(d["X"]))
    grid = GridSearchCV(make_pipeline(StandardScaler(), HogwildRegressor(spec=str(spec), threads=1)),
                        {"hogwildregressor__step": [0.005, 0.02], "hogwildregressor__epochs": [5, 20]},
                        cv=3).fit(d["X"], d["y"])
    assert grid.best_params_["hogwildregressor__step"] in (0.005, 0.02)
    assert np.all(grid.predict(d["X"]) > 0)                  # exp(eta)


def test_sklearn_classifiers_with_index_over_a_const(tmp_path):
    from hogwild_dsl.sklearn import HogwildClassifier
    d = make_data("weston")
    names = np.array(["cat", "dog", "eel"])[d["y"]]
    spec = tmp_path / "weston.hog"
    spec.write_text(SPECS["weston"])
    clf = HogwildClassifier(spec=str(spec), threads=1).fit(d["X"], names)
    assert list(clf.classes_) == ["cat", "dog", "eel"]
    assert not hasattr(clf, "predict_proba")             # predict is an argmax, not a probability
    assert (clf.predict(d["X"]) == names).mean() > 0.8       # argmax(z) is a class index
    t = clf.trainer_
    np.testing.assert_array_equal(clf.predict(d["X"]),
                                  clf.classes_[t.predict(X=d["X"]).astype(int)])
    four = np.array(["cat", "dog", "eel", "fox"])[np.arange(150) % 4]
    with pytest.raises((hogwild_dsl.HogwildError, ValueError)) as err:
        HogwildClassifier(spec=str(spec), threads=1).fit(d["X"], four)
    assert "4" in str(err.value) and "ncls" in str(err.value) or "3" in str(err.value)
    clf = HogwildClassifier(spec=SOFTMAX_CONST, threads=1).fit(d["X"], names)
    proba = clf.predict_proba(d["X"])
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(d["X"]), clf.classes_[np.argmax(proba, axis=1)])
    # (a third by chance; the held-out step search's steps train it to 0.78-0.84 over seeds
    # 0-7: steps 3x apart whose held-out objectives tie within 0.1%, e.g. 0.9579 at 0.00137
    # against 0.9575 at 0.00238, a half-power of 3 the search before session 9 also tried)
    assert (clf.predict(d["X"]) == names).mean() > 0.75


def test_sklearn_recommender_with_a_user_spec():
    from hogwild_dsl.sklearn import HogwildRecommender
    rng = np.random.default_rng(3)
    m = sp.random(15, 12, density=0.4, random_state=3, format="csr")
    R = sp.csr_matrix((rng.uniform(1, 5, m.nnz), m.indices, m.indptr), shape=m.shape)
    rec = HogwildRecommender(spec=BIASED_MF, threads=1, seed=0).fit(R)
    users, items = np.array([0, 1, 2, 2]), np.array([3, 4, 5, 0])
    scores = rec.predict(users, items)
    assert scores.shape == (4,) and np.all(np.isfinite(scores))
    top = rec.recommend(2, n=4)
    assert len(top) == 4 and not set(top) & set(R[2].indices)
    every = rec.predict(np.full(12, 2), np.arange(12))
    unseen = [i for i in np.argsort(-every, kind="stable") if i not in set(R[2].indices)]
    np.testing.assert_array_equal(top, unseen[:4])


# ---- Dask ----------------------------------------------------------------------------------

def test_dask_fit_of_user_specs(compiled, hog_cache_dir):
    pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    with dask_client() as client:
        from hogwild_dsl import distributed
        d = make_data("rescal")          # index data and a degree over two targets
        t = distributed.fit(compiled("rescal"), client, epochs=60, seed=0, **d)
        assert t.objective(**d) == pytest.approx(objective("rescal", t.params, d), rel=1e-10)
        start = objective("rescal", compiled("rescal").Trainer(epochs=0).fit(**d).params, d)
        assert objective("rescal", t.params, d) < 0.85 * start
        d = make_data("gamma")
        X = da.from_array(d["X"], chunks=(50, 5))
        y = da.from_array(d["y"], chunks=50)
        t = distributed.fit(compiled("gamma"), client, epochs=60, seed=0, X=X, y=y)
        value = objective("gamma", t.params, d)
        assert t.objective(**d) == pytest.approx(value, rel=1e-10)
        ref = reference("gamma", d)
        assert value <= ref + 0.02 * abs(ref), (value, ref)


# ---- the command line ----------------------------------------------------------------------

def test_cli_check_compile_train_and_exit_codes(tmp_path, hog_cache_dir, compiled):
    for name in ("wmf", "rescal", "allforms"):
        (tmp_path / f"{name}.hog").write_text(SPECS[name])
    res = run_hogwildc(tmp_path, "check", "wmf.hog", "rescal.hog", "allforms.hog")
    assert res.returncode == 0 and "G" in res.stdout
    bad = SPECS["rescal"].replace("E[t[i]]))", "E[rel[i]]))")       # index data over another dim
    (tmp_path / "bad.hog").write_text(bad)
    res = run_hogwildc(tmp_path, "check", "wmf.hog", "bad.hog")
    assert res.returncode == 1
    out = res.stdout + res.stderr
    assert "bad.hog" in out and "line 12" in out and "^" in out

    res = run_hogwildc(tmp_path, "compile", "rescal.hog", "-o", "out32", "--const", "k=2",
                   "--dtype", "float32")
    assert res.returncode == 0, res.stderr
    d = make_data("rescal")
    for k, v in d.items():
        np.save(tmp_path / f"{k}.npy", v)
    code = ("import numpy as np, out32.u3_rescal as m; d = {k: np.load(k + '.npy') for k in "
            "('h', 'rel', 't', 'y')}; t = m.Trainer(threads=1, epochs=1).fit(**d); "
            "print(t.params['G'].shape, t.params['G'].dtype)")
    assert run_python(tmp_path, code) == "(2, 2, 2) float32"

    # an entry block with a companion weight file, as triplets with a header and a timestamp
    # (one entry per pair here; a pair given twice is two terms: tests/test_data.py)
    d = make_data("wmf")
    first = {}
    for e, key in enumerate(zip(d["r"].row, d["r"].col)):
        first.setdefault(key, e)
    keep = np.array(sorted(first.values()))
    d = {k: sp.coo_matrix((m.data[keep], (m.row[keep], m.col[keep])), shape=m.shape)
         for k, m in d.items()}
    for k in ("r", "c"):
        m = d[k]
        rows = ["user,item,value,time"] + [f"{u},{v},{x!r},17" for u, v, x in
                                           zip(m.row, m.col, m.data.tolist())]
        (tmp_path / f"{k}.csv").write_text("\n".join(rows) + "\n")
    res = run_hogwildc(tmp_path, "train", "wmf.hog", "--data", "r=r.csv", "--data", "c=c.csv",
                   "--threads", 1, "--epochs", 4, "--step", 0.02, "--sync", "atomic",
                   "--optimizer", "adagrad", "--out", "wmf.npz")
    assert res.returncode == 0, res.stderr
    t = compiled("wmf").Trainer(threads=1, epochs=4, step=0.02, sync="atomic",
                                optimizer="adagrad").fit(**d)
    assert_saved_params(tmp_path / "wmf.npz", t, atol=1e-15)
    for args, needle in ((("--data", "r=r.csv", "--data", "cc=c.csv"), "cc"),
                         (("--data", "r=r.csv", "--data", "c=missing.csv"), "missing.csv"),
                         (("--data", "r=r.csv"), "c"),
                         (("--data", "r=r.csv", "--data", "c=c.csv", "--sync", "bogus"), "sync"),
                         (("--data", "r=r.csv", "--data", "c=c.csv", "--epochs", "-3"), "epochs")):
        res = run_hogwildc(tmp_path, "train", "wmf.hog", *args)
        assert res.returncode != 0, args
        assert needle in res.stdout + res.stderr, (args, res.stderr)
