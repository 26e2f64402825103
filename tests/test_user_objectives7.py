"""Objectives a new user writes from LANGUAGE.md and API.md alone (round 7).

New corners beside tests/test_user_objectives{,2,3,4,5,6}.py: DistMult knowledge-graph
scoring with a sampled corrupt tail (one reg line over the head, the tail and the draw);
ComplEx with real and imaginary parts as four params, entities in a ball; Poisson matrix
factorisation with non-negative factors and l1; implicit-feedback MF with a confidence datum
read at the current entry, a scalar datum and a sampled zero; a sampled listwise softmax over
K negatives with a temperature; InfoNCE over index-data pairs with K frequency-weighted
negatives in a ball; logistic regression with per-group l2 weights read through index data
at a summed index and a train line with every key (validation, patience); all-threshold
ordinal MF with per-user thresholds and a dense sign table read through index data and a
sum index; a conditional logit over a fixed set of alternatives (a dense datum read as rows
over the alternatives); a squared-hinge SVM with l1; bilinear link prediction on a graph
(both ends in one param) with a sampled non-neighbour; a rank-1 tensor with bias terms in
boxes; a 3-D param read with two indices at once beside a second block; Weibull survival
with a learned shape (a power with a param exponent); zero-inflated Poisson; stacking
weights on the simplex in stored order.

For each spec: `check`, compile and train; `objective()` and `predict()` equal numpy
references at the initial params and after three epochs; one epoch on a one-term data set is
one step of each update rule (sgd, adagrad, adagrad_row) in each sync mode on the gradient
of the numpy reference taken by central finite differences (the l1 clip and the projections
applied after it); a fit lowers the objective from its init. Then float32, warm start,
save/load, pickling, validation with patience, 2-thread fits in every sync mode, l1's
exact zeros, and `hogwildc check/compile/train`. Regressions of the bugs this round found
close the file (the distributed ones are in tests/test_distributed.py).
"""
import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from conftest import run_hogwildc
from user_objective_checks import (RULES, SYNCS, ab, assert_saved_params,
                                   check_epoch_of_tiny_steps, check_fit_lowers_the_objective,
                                   check_float32_build, check_objective_and_predict,
                                   check_one_step, check_patience_kept_the_best,
                                   check_sampled_step_at_its_draws,
                                   check_steps_where_draws_meet_nothing,
                                   check_two_fits_continue_one, check_two_threads_near_serial,
                                   cover, each, entries, fd_gradient, huber, lg, lse, onto_simplex,
                                   params_of, rows_of, rule_step, sig, sq, stepped, sX)

SPECS = {
    # DistMult knowledge-graph scoring, one sampled corrupt tail, adagrad_row
    "distmult": """
model u7_distmult
dim triple, entity, relation
const d = 4
data h[triple] : index(entity)
data r[triple] : index(relation)
data t[triple] : index(entity)
param E[entity, d] ~ normal(0, 0.3)
param Rel[relation, d] ~ normal(0, 0.3)
for x in triple:
    sample n in entity
    let pos = sum(E[h[x]] * Rel[r[x]] * E[t[x]])
    let neg = sum(E[h[x]] * Rel[r[x]] * E[n])
    loss logistic(pos) + logistic(-neg)
    reg l2(1e-2) on E[h[x]], E[t[x]], E[n]
    reg l2(1e-2) on Rel[r[x]] unscaled
    predict pos
train optimizer adagrad_row, step 0.1, epochs 10
""",
    # ComplEx with real and imaginary parts as two params, labelled triples, entities in a ball
    "complex": """
model u7_complex
dim triple, entity, relation
const d = 3
data h[triple] : index(entity)
data r[triple] : index(relation)
data t[triple] : index(entity)
data y[triple] : sign
param Er[entity, d] in ball(1.5) ~ normal(0, 0.3)
param Ei[entity, d] in ball(1.5) ~ normal(0, 0.3)
param Wr[relation, d] ~ normal(0, 0.3)
param Wi[relation, d] ~ normal(0, 0.3)
for x in triple:
    let a = Er[h[x]]
    let b = Ei[h[x]]
    let c = Er[t[x]]
    let e = Ei[t[x]]
    let score = dot(Wr[r[x]], a * c + b * e) + dot(Wi[r[x]], a * e - b * c)
    loss logistic(y[x] * score)
    reg l2(1e-2) on Wr[r[x]], Wi[r[x]]
    predict sigmoid(score)
train step 0.1, epochs 10
""",
    # Poisson matrix factorisation with non-negative factors
    "poismf": """
model u7_poismf
dim user, item
const k = 3
data r[user, item] : sparse
param W[user, k] >= 0 ~ uniform(0.2, 1)
param H[item, k] >= 0 ~ uniform(0.2, 1)
for (u, v) in r:
    let mu = dot(W[u], H[v]) + 1e-3
    loss mu - r[u, v] * log(mu)
    reg l1(1e-2) on W[u], H[v]
    predict mu
train step 0.02, epochs 15
""",
    # implicit-feedback MF: confidence weights per observation, a sampled zero per visit
    "implicit": """
model u7_implicit
dim user, item
const k = 3
data p[user, item] : sparse
data conf[user, item] : sparse
data alpha : real
param X[user, k] ~ normal(0, 0.3)
param Y[item, k] ~ normal(0, 0.3)
param bu[user] = 0
for (u, i) in p:
    sample j in item
    let s = bu[u] + dot(X[u], Y[i])
    loss (1 + alpha * conf[u, i]) * (s - p[u, i])^2 + (bu[u] + dot(X[u], Y[j]))^2
    reg l2(5e-2) on X[u], Y[i], Y[j] unscaled
    predict s
train step 0.02, epochs 10, sync atomic
""",
    # sampled listwise softmax (sampled softmax / ListNet-top-1) over K uniform negatives
    "listwise": """
model u7_listwise
dim user, item
const k = 3
const K = 4
data seen[user, item] : sparse
data tau : real
param P[user, k] ~ normal(0, 0.3)
param Q[item, k] ~ normal(0, 0.3)
param bi[item] = 0
for (u, i) in seen:
    sample n[K] in item
    let pos = (dot(P[u], Q[i]) + bi[i]) / tau
    loss log(exp(pos) + sum(s in K: exp((dot(P[u], Q[n[s]]) + bi[n[s]]) / tau))) - pos
    reg l2(1e-2) on P[u], Q[i]
    predict pos
train optimizer adagrad, step 0.1, epochs 10
""",
    # InfoNCE over node pairs: K negatives drawn by frequency, embeddings in a ball
    "infonce": """
model u7_infonce
dim pair, node
const k = 3
const K = 2
data a[pair] : index(node)
data b[pair] : index(node)
data freq[node] : real
param E[node, k] in ball(1) ~ normal(0, 0.3)
for p in pair:
    sample n[K] in node ~ freq
    let sp = 2 * dot(E[a[p]], E[b[p]])
    loss -sp + log(exp(sp) + sum(s in K: exp(2 * dot(E[a[p]], E[n[s]]))))
    predict sp
train step 0.1, epochs 10
""",
    # logistic regression with a given l2 weight per feature group (data read through index
    # data at a summed index), an intercept; every key of the train line
    "grouplr": """
model u7_grouplr
dim example, feature, group
data X[example, feature] : sparse
data y[example] : binary
data g[feature] : index(group)
data lam[group] : real
param w[feature] = 0
param b = 0
for i in example:
    let z = dot(X[i], w) + b
    loss softplus(z) - y[i] * z + sum(j in X[i]: lam[g[j]] * w[j]^2) / 10
    predict sigmoid(z)
train step 0.5, decay 0.95, epochs 8, threads 1, seed 3, chunk 64, patience 2, optimizer adagrad, sync lock, order shuffle, shuffle true, progress false
""",
    # ordinal MF, all-threshold loss: per-user thresholds read at a const index, a dense sign
    # table read through index data and a sum index
    "ordmf": """
model u7_ordmf
dim obs, user, item, level
const k = 2
const cut = 3
data ou[obs] : index(user)
data oi[obs] : index(item)
data lvl[obs] : index(level)
data S[level, cut] : dense
param P[user, k] ~ normal(0, 0.3)
param Q[item, k] ~ normal(0, 0.3)
param T[user, cut] ~ uniform(-1, 1)
for o in obs:
    let z = dot(P[ou[o]], Q[oi[o]])
    loss sum(c in cut: logistic(S[lvl[o], c] * (T[ou[o], c] - z)))
    reg l2(1e-2) on P[ou[o]], Q[oi[o]], T[ou[o]]
    predict z
train step 0.05, epochs 10
""",
    # conditional (multinomial) logit over a fixed small set of alternatives: alternative
    # attributes shared by every choice, individual features with per-alternative weights
    "mnl": """
model u7_mnl
dim choice, feature, alt, attr
data X[choice, feature] : dense
data Za[attr, alt] : dense
data y[choice] : index(alt)
param beta[attr] = 0
param G[feature, alt] = 0
param asc[alt] = 0
for c in choice:
    let v = asc + sum(a in attr: beta[a] * Za[a]) + sum(f in feature: X[c, f] * G[f])
    loss logsumexp(v) - v[y[c]]
    loss 1e-3 * sum(f in feature: sqnorm(G[f]))
    reg l2(1e-2) on beta
    predict softmax(v)
train step 0.1, epochs 10
""",
    # sparse linear SVM, squared hinge, l1 on the row support, bias with l2 over whole param
    "sqhl1": """
model u7_sqhl1
dim example, feature
data X[example, feature] : sparse
data y[example] : sign
param w[feature] = 0
param b = 0
for i in example:
    let m = y[i] * (dot(X[i], w) + b)
    loss sqhinge(m)
    reg l1(2e-2) on w[X[i]]
    reg l2(1e-3) on b
    predict sign(dot(X[i], w) + b)
train step 0.2, epochs 20
""",
    # bilinear link prediction on a graph: both ends in one param, a const-by-const mixing
    # matrix, one sampled non-neighbour
    "bilink": """
model u7_bilink
dim node
const k = 3
data E[node, node] : sparse
param U[node, k] ~ normal(0, 0.3)
param M[k, k] ~ normal(0, 0.3)
for (u, v) in E:
    sample w in node
    let pos = sum(a in k: sum(c in k: U[u, a] * M[a, c] * U[v, c]))
    let neg = sum(a in k: U[u, a] * sum(c in k: M[a, c] * U[w, c]))
    loss E[u, v] * logistic(pos) + logistic(-neg)
    reg l2(1e-2) on U[u], U[v]
    predict sigmoid(pos)
train step 0.1, epochs 10, sync lock
""",
    # rank-1 tensor with bias terms: boxed 1-D factors, a 0-D global offset
    "rank1": """
model u7_rank1
dim cell, da, db, dc
data ia[cell] : index(da)
data ib[cell] : index(db)
data ic[cell] : index(dc)
data val[cell] : real
param a[da] in [-2, 2] ~ uniform(0.5, 1)
param b[db] in [-2, 2] ~ uniform(0.5, 1)
param c[dc] in [-2, 2] ~ uniform(0.5, 1)
param ba[da] = 0
param bb[db] = 0
param bc[dc] = 0
param mu = 0
for t in cell:
    let s = mu + ba[ia[t]] + bb[ib[t]] + bc[ic[t]] + a[ia[t]] * b[ib[t]] * c[ic[t]]
    loss (s - val[t])^2
    reg l2(1e-2) on ba[ia[t]], bb[ib[t]], bc[ic[t]]
    predict s
train step 0.05, epochs 10
""",
    # a 3-D param read with two indices at once (user x context pair), dotted with an item's row
    "ctx3d": """
model u7_ctx3d
dim user, item, ctx
const k = 2
data r[user, item] : sparse
data cx[item] : index(ctx)
data prior[item] : real
param V[user, ctx, k] ~ normal(0, 0.3)
param Q[item, k] ~ normal(0, 0.3)
param bq[item] = 0
for (u, v) in r:
    let s = dot(V[u, cx[v]], Q[v]) + bq[v]
    loss huber(s - r[u, v], 1)
    reg l2(1e-2) on V[u] , Q[v]
    predict s
for v in item:
    loss 0.5 * (bq[v] - prior[v])^2
train optimizer adagrad_row, step 0.1, epochs 10
""",
    # Weibull survival with right censoring: a learned shape in a box, exp of a linear predictor
    "weibull": """
model u7_weibull
dim example, feature
data X[example, feature] : sparse
data time[example] : real
data event[example] : binary
param w[feature] = 0
param b = 0
param kk in [0.3, 4] = 1
for i in example:
    let eta = dot(X[i], w) + b
    loss exp(eta) * time[i] ^ kk - event[i] * (log(kk) + (kk - 1) * log(time[i]) + eta)
    reg l2(1e-2) on w[X[i]]
    predict exp(-eta / kk)
train step 0.02, epochs 15
""",
    # zero-inflated Poisson regression (log-likelihood up to the log y! constant)
    "zip": """
model u7_zip
dim example, feature
data X[example, feature] : dense
data y[example] : real
data zero[example] : binary
param w[feature] = 0
param wz[feature] = 0
param b = 0
param bz = -1
for i in example:
    let eta = dot(X[i], w) + b
    let pz = sigmoid(dot(X[i], wz) + bz)
    loss zero[i] * -log(pz + (1 - pz) * exp(-exp(eta))) + (1 - zero[i]) * (-log(1 - pz) + exp(eta) - y[i] * eta)
    reg l2(1e-3) on w, wz
    predict (1 - pz) * exp(eta)
train step 0.05, epochs 15, sync atomic
""",
    # stacking: ensemble weights on the simplex (a whole 1-D param), an offset, stored order
    "stacking": """
model u7_stacking
dim example, learner
data F[example, learner] : dense
data y[example] : real
param a[learner] in simplex = uniform
param c = 0
for i in example:
    loss (dot(F[i], a) + c - y[i])^2
    reg l2(1e-2) on c
    predict dot(F[i], a) + c
train step 0.05, epochs 10, order stored
""",
}


# ---- numpy references ------------------------------------------------------------------

def reference(name, p, d, draws=None):
    """(objective, predict) of spec `name` at params p on data d. For the sampled specs the
    draws of each term are given (terms x K) and the degree split uses the expected degrees
    of one-term data: one term over a dim of 2 (each draw touches a row with chance 1/2)."""
    if name == "distmult":
        h, r, t = d["h"], d["r"], d["t"]
        E, R = p["E"], p["Rel"]
        pos = (E[h] * R[r] * E[t]).sum(1)
        if draws is None:
            return None, pos
        n = draws[:, 0]
        neg = (E[h] * R[r] * E[n]).sum(1)
        deg = np.zeros(E.shape[0])
        np.add.at(deg, h, 1)
        np.add.at(deg, t, 1)
        deg += h.size / E.shape[0]
        reg = sum((E[c] ** 2).sum() / deg[c] for c in [h[0], t[0], n[0]]) + (R[r[0]] ** 2).sum()
        return (lg(pos) + lg(-neg)).mean() + 1e-2 * reg, pos
    if name == "complex":
        h, r, t, y = d["h"], d["r"], d["t"], d["y"]
        a, b, c, e = p["Er"][h], p["Ei"][h], p["Er"][t], p["Ei"][t]
        s = (p["Wr"][r] * (a * c + b * e)).sum(1) + (p["Wi"][r] * (a * e - b * c)).sum(1)
        reg = 1e-2 * (sq(p["Wr"], each(r)) + sq(p["Wi"], each(r)))
        return lg(y * s).mean() + reg / y.size, sig(s)
    if name == "poismf":
        R = sp.coo_matrix(d["r"])
        W, H = p["W"], p["H"]
        mu = (W[R.row] * H[R.col]).sum(1) + 1e-3
        reg = 1e-2 * (ab(W, each(R.row)) + ab(H, each(R.col)))
        return (mu - R.data * np.log(mu)).mean() + reg / R.nnz, mu
    if name == "implicit":
        P, C = sp.coo_matrix(d["p"]), sp.coo_matrix(d["conf"])
        X, Y, bu = p["X"], p["Y"], p["bu"]
        s = bu[P.row] + (X[P.row] * Y[P.col]).sum(1)
        if draws is None:
            return None, s
        j = draws[:, 0]
        L = (1 + d["alpha"] * C.data) * (s - P.data) ** 2 + \
            (bu[P.row] + (X[P.row] * Y[j]).sum(1)) ** 2
        reg = (X[P.row] ** 2).sum() + (Y[P.col] ** 2).sum() + (Y[j] ** 2).sum()
        return L.mean() + 5e-2 * reg / P.nnz, s
    if name == "listwise":
        S = sp.coo_matrix(d["seen"])
        P, Q, bi, tau = p["P"], p["Q"], p["bi"], d["tau"]
        pos = ((P[S.row] * Q[S.col]).sum(1) + bi[S.col]) / tau
        if draws is None:
            return None, pos
        neg = (np.einsum("tk,tsk->ts", P[S.row], Q[draws]) + bi[draws]) / tau
        L = np.log(np.exp(pos) + np.exp(neg).sum(1)) - pos
        reg = 1e-2 * (sq(P, each(S.row)) + sq(Q, each(S.col)))
        return L.mean() + reg / S.nnz, pos
    if name == "infonce":
        a, b, E = d["a"], d["b"], p["E"]
        s = 2 * (E[a] * E[b]).sum(1)
        if draws is None:
            return None, s
        neg = 2 * np.einsum("tk,tsk->ts", E[a], E[draws])
        return (-s + np.log(np.exp(s) + np.exp(neg).sum(1))).mean(), s
    if name == "grouplr":
        X, y = sp.csr_matrix(d["X"]), d["y"]
        w = p["w"]
        z = X @ w + p["b"]
        pen = X.sign() @ (d["lam"][d["g"]] * w ** 2) / 10     # one per stored entry of the row
        return (np.logaddexp(0, z) - y * z + pen).mean(), sig(z)
    if name == "ordmf":
        ou, oi, lvl = d["ou"], d["oi"], d["lvl"]
        P, Q, T = p["P"], p["Q"], p["T"]
        z = (P[ou] * Q[oi]).sum(1)
        L = lg(d["S"][lvl] * (T[ou] - z[:, None])).sum(1)
        reg = 1e-2 * (sq(P, each(ou)) + sq(Q, each(oi)) + sq(T, each(ou)))
        return L.mean() + reg / ou.size, z
    if name == "mnl":
        X, Za, y = d["X"], d["Za"], d["y"]
        V = p["asc"] + p["beta"] @ Za + X @ p["G"]
        n = y.size
        L = lse(V) - V[np.arange(n), y] + 1e-3 * (p["G"] ** 2).sum()
        return L.mean() + 1e-2 * (p["beta"] ** 2).sum() / n, np.exp(V - lse(V)[:, None])
    if name == "sqhl1":
        X, y = sp.csr_matrix(d["X"]), d["y"]
        f = X @ p["w"] + p["b"]
        L = np.maximum(0, 1 - y * f) ** 2
        reg = 2e-2 * ab(p["w"], rows_of(X)) + 1e-3 * p["b"] ** 2
        return L.mean() + reg / y.size, np.sign(f)
    if name == "bilink":
        E = sp.coo_matrix(d["E"])
        U, M = p["U"], p["M"]
        pos = np.einsum("ta,ac,tc->t", U[E.row], M, U[E.col])
        if draws is None:
            return None, sig(pos)
        w = draws[:, 0]
        neg = np.einsum("ta,ac,tc->t", U[E.row], M, U[w])
        deg = np.zeros(U.shape[0])
        np.add.at(deg, E.row, 1)
        np.add.at(deg, E.col, 1)
        reg = sum((U[c] ** 2).sum() / deg[c] for c in [E.row[0], E.col[0]])
        return (E.data * lg(pos) + lg(-neg)).mean() + 1e-2 * reg, sig(pos)
    if name == "rank1":
        ia, ib, ic = d["ia"], d["ib"], d["ic"]
        s = p["mu"] + p["ba"][ia] + p["bb"][ib] + p["bc"][ic] + \
            p["a"][ia] * p["b"][ib] * p["c"][ic]
        reg = 1e-2 * (sq(p["ba"], each(ia)) + sq(p["bb"], each(ib)) + sq(p["bc"], each(ic)))
        return ((s - d["val"]) ** 2).mean() + reg / ia.size, s
    if name == "ctx3d":
        R, cx = sp.coo_matrix(d["r"]), d["cx"]
        V, Q, bq = p["V"], p["Q"], p["bq"]
        s = (V[R.row, cx[R.col]] * Q[R.col]).sum(1) + bq[R.col]
        tot = huber(s - R.data, 1).sum() + 1e-2 * (sq(V, each(R.row)) + sq(Q, each(R.col)))
        tot += (0.5 * (bq - d["prior"]) ** 2).sum()
        return tot / (R.nnz + bq.size), s
    if name == "weibull":
        X, tm, ev = sp.csr_matrix(d["X"]), d["time"], d["event"]
        eta = X @ p["w"] + p["b"]
        k = p["kk"]
        L = np.exp(eta) * tm ** k - ev * (np.log(k) + (k - 1) * np.log(tm) + eta)
        return L.mean() + 1e-2 * sq(p["w"], rows_of(X)) / tm.size, np.exp(-eta / k)
    if name == "zip":
        X, y, z = d["X"], d["y"], d["zero"]
        eta = X @ p["w"] + p["b"]
        pz = sig(X @ p["wz"] + p["bz"])
        L = z * -np.log(pz + (1 - pz) * np.exp(-np.exp(eta))) + \
            (1 - z) * (-np.log(1 - pz) + np.exp(eta) - y * eta)
        reg = 1e-3 * ((p["w"] ** 2).sum() + (p["wz"] ** 2).sum())
        return L.mean() + reg / y.size, (1 - pz) * np.exp(eta)
    if name == "stacking":
        f = d["F"] @ p["a"] + p["c"]
        return ((f - d["y"]) ** 2).mean() + 1e-2 * p["c"] ** 2 / f.size, f
    raise KeyError(name)


# ---- data ------------------------------------------------------------------------------

def small(name, seed=0):
    """A small data set for spec `name`."""
    rng = np.random.default_rng(seed)
    if name in ("distmult", "complex"):
        n = 30
        h, t = cover(rng, 6, n), rng.integers(0, 6, n)
        d = dict(h=h, r=cover(rng, 3, n), t=t)
        if name == "complex":
            d["y"] = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        return d
    if name == "poismf":
        r = entries(rng, 6, 5, 0, 1, seed)
        r.data = rng.poisson(2.0, r.nnz).astype(float)      # zero counts are observations too
        return dict(r=r)
    if name == "implicit":
        p = entries(rng, 6, 5, 1, 1, seed)
        return dict(p=p, conf=sp.coo_matrix((rng.uniform(0, 5, p.nnz), (p.row, p.col)),
                                            shape=p.shape), alpha=0.5)
    if name == "listwise":
        return dict(seen=sp.csr_matrix(entries(rng, 5, 6, 1, 1, seed)), tau=0.7)
    if name == "infonce":
        return dict(a=cover(rng, 7, 25), b=rng.integers(0, 7, 25),
                    freq=rng.uniform(0.5, 2, 7))
    if name == "grouplr":
        return dict(X=sX(rng, 30, 6, seed), y=(rng.random(30) < 0.5).astype(float),
                    g=np.array([0, 1, 1, 2, 0, 2]), lam=np.array([0.5, 1.0, 2.0]))
    if name == "ordmf":
        n = 30
        lvl = cover(rng, 4, n)
        S = np.where(np.arange(3)[None, :] < np.arange(4)[:, None], -1.0, 1.0)
        return dict(ou=cover(rng, 5, n), oi=cover(rng, 4, n), lvl=lvl, S=S)
    if name == "mnl":
        return dict(X=rng.normal(size=(30, 3)), Za=rng.normal(size=(2, 4)), y=cover(rng, 4, 30))
    if name == "sqhl1":
        return dict(X=sX(rng, 30, 6, seed), y=np.where(rng.random(30) < 0.5, -1.0, 1.0))
    if name == "bilink":
        E = entries(rng, 6, 6, 0.5, 2, seed)
        return dict(E=sp.csr_matrix(E))
    if name == "rank1":
        return dict(ia=cover(rng, 4, 30), ib=cover(rng, 3, 30), ic=cover(rng, 5, 30),
                    val=rng.normal(size=30))
    if name == "ctx3d":
        return dict(r=entries(rng, 5, 6, 1, 3, seed), cx=cover(rng, 3, 6),
                    prior=rng.normal(size=6))
    if name == "weibull":
        return dict(X=sX(rng, 30, 5, seed), time=rng.uniform(0.2, 3, 30),
                    event=(rng.random(30) < 0.7).astype(float))
    if name == "zip":
        X = rng.normal(size=(30, 3)) * 0.5
        y = rng.poisson(1.5, 30).astype(float)
        return dict(X=X, y=y, zero=(y == 0).astype(float))
    if name == "stacking":
        F = rng.normal(size=(30, 4))
        return dict(F=F, y=F @ np.array([0.6, 0.3, 0.1, 0]) + 0.5 + 0.05 * rng.normal(size=30))
    raise KeyError(name)


SPECS["sqhl1_strong"] = SPECS["sqhl1"].replace("u7_sqhl1", "u7_sqhl1_strong").replace(
    "l1(2e-2)", "l1(40)")
AUDITED = [n for n in SPECS if n != "sqhl1_strong"]
SAMPLED = {"distmult": 1, "implicit": 1, "listwise": 4, "infonce": 2, "bilink": 1}
PLAIN = [n for n in AUDITED if n not in SAMPLED]
LABELS = {"complex": ["y"], "grouplr": ["y"], "ordmf": ["lvl", "S"], "mnl": ["y"],
          "sqhl1": ["y"], "rank1": ["val"], "ctx3d": ["prior"], "weibull": ["time", "event"],
          "zip": ["y", "zero"], "poismf": [], "implicit": ["conf", "alpha"],
          "distmult": [], "listwise": [], "infonce": ["freq"], "bilink": [],
          "stacking": ["y"]}


def one_sampled(name, width=2):
    """One term of a sampled spec, the sampled dim `width` wide (2: every draw is 0 or 1)."""
    if name == "distmult":
        return dict(h=np.array([0]), r=np.array([0]), t=np.array([width - 1]))
    if name == "implicit":
        one = sp.coo_matrix(([1.0], ([0], [0])), shape=(1, width))
        return dict(p=one, conf=sp.coo_matrix(([2.0], ([0], [0])), shape=(1, width)), alpha=0.5)
    if name == "listwise":
        return dict(seen=sp.csr_matrix(([1.0], ([0], [0])), shape=(1, width)), tau=0.7)
    if name == "infonce":
        return dict(a=np.array([0]), b=np.array([1]), freq=1.0 + np.arange(width))
    if name == "bilink":
        return dict(E=sp.csr_matrix(([1.5], ([0], [1])), shape=(width, width)))
    raise KeyError(name)


def one_term(name, d):
    """The data of one term. Row blocks: the first term, data over other dims kept (so the
    dims stay as wide). Entry blocks: the first entry."""
    if name == "poismf":
        r = d["r"]
        return dict(r=sp.coo_matrix((r.data[:1], (r.row[:1], r.col[:1])), shape=r.shape))
    keep = {"grouplr": ["g", "lam"], "ordmf": ["S"], "mnl": ["Za"]}.get(name, [])
    if name == "complex":     # a head and a tail apart
        return dict(h=np.array([2]), r=np.array([1]), t=np.array([0]), y=np.array([-1.0]))
    return {k: (v if k in keep else v[:1]) for k, v in d.items()}


def l1_targets(name, d):
    """param -> (lambda / deg, the coordinates the one term's `reg l1` covers)."""
    if name == "poismf":
        r = d["r"]
        return {"W": (1e-2, np.s_[r.row[0]]), "H": (1e-2, np.s_[r.col[0]])}
    if name == "sqhl1":
        return {"w": (2e-2, np.s_[d["X"].indices])}
    return {}


def project(name, k, v, d, draws):
    """The spec's constraint on the rows one term's step touched."""
    v = v.copy()
    if name == "poismf":
        v = np.maximum(v, 0)
    if name == "rank1" and k in ("a", "b", "c"):
        v = np.clip(v, -2, 2)
    if name == "weibull" and k == "kk":
        v = np.clip(v, 0.3, 4)
    if name == "stacking" and k == "a":
        v = onto_simplex(v)
    rows = []
    if name == "complex" and k in ("Er", "Ei"):
        rows = [d["h"][0], d["t"][0]]
    if name == "infonce":
        rows = [0, 1]
    radius = 1.5 if name == "complex" else 1.0
    for row in rows:
        v[row] *= min(1, radius / np.linalg.norm(v[row]))
    return v


def one_step(name, p, d, step, rule, draws=None):
    """One term's update at p by hand (rule_step) on the numpy reference's gradient."""
    return rule_step(lambda q: reference(name, q, d, draws)[0], p, step, rule,
                     l1_targets(name, d), lambda k, v: project(name, k, v, d, draws))


def unlabelled(name, d):
    return {k: v for k, v in d.items() if k not in LABELS[name]}


# ---- the tests -------------------------------------------------------------------------

@pytest.mark.parametrize("name", AUDITED)
def test_check_prints_the_gradients(name):
    """`check` passes and names a gradient of every param."""
    ir = hogwild_dsl.check(SPECS[name])
    assert ir is not None


@pytest.mark.parametrize("name", PLAIN)
def test_objective_and_predict_match_numpy(compiled, name):
    """At the initial params and after three epochs; predict without the labels."""
    d = small(name)
    check_objective_and_predict(compiled(name), d, lambda p: reference(name, p, d),
                                unlabelled(name, d))


@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_sampled_predict_matches_numpy(compiled, name):
    d = small(name)
    check_objective_and_predict(compiled(name), d, lambda p: reference(name, p, d),
                                unlabelled(name, d), objective=False)


ONE_STEP = [n for n in PLAIN if n != "ctx3d"]     # ctx3d has two blocks: below


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("name", ONE_STEP)
def test_one_step_is_the_update_rule_of_the_gradient(compiled, name, rule):
    d = one_term(name, small(name))
    check_one_step(compiled(name), d, lambda p: one_step(name, p, d, 0.05, rule), rule,
                   atol=1e-7, what=name)


@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_sampled_step_is_the_gradient_at_its_draws(compiled, name):
    """On one term over a dim of 2 the K draws are 0 and 1: one sgd step is the step on the
    gradient at one of the 2^K draw vectors (the reg's degrees the expected ones), in every
    sync mode; so is objective() (one fixed draw per term)."""
    d = one_sampled(name)
    check_sampled_step_at_its_draws(compiled(name), d,
                                    lambda p, c: one_step(name, p, d, 0.05, "sgd", c),
                                    lambda p, c: reference(name, p, d, c)[0], SAMPLED[name])


# The param each sampled spec draws rows of, the rows the term's own indices touch, and the
# width of the sampled dim at which K distinct draws apart from those rows are likely.
DRAWN = {"distmult": ("E", [0, 2], 3), "implicit": ("Y", [0], 3), "listwise": ("Q", [0], 8),
         "infonce": ("E", [0, 1], 5), "bilink": ("U", [0, 1], 3)}


@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_sampled_step_of_every_rule_where_draws_meet_nothing(compiled, name):
    """Where a seed's draws are K distinct rows apart from the term's own, every rule in every
    sync mode is its step on the numpy gradient at those draws."""
    param, fixed, width = DRAWN[name]
    d = one_sampled(name, width)
    check_steps_where_draws_meet_nothing(
        compiled(name), d, lambda p, rule, c: one_step(name, p, d, 0.05, rule, c), param, fixed,
        width, SAMPLED[name], seeds=range(30))


def test_two_blocks_epoch_of_tiny_steps_is_the_gradient(compiled):
    """ctx3d (an entry block and an item block sharing bq): one epoch of tiny sgd steps from
    the init moves each coordinate by step x N x the gradient of the numpy objective."""
    d = small("ctx3d")
    check_epoch_of_tiny_steps(compiled("ctx3d"), d, lambda q: reference("ctx3d", q, d)[0],
                              d["r"].nnz + d["prior"].size, epochs_before=0, atol=1e-7)


@pytest.mark.parametrize("name", AUDITED)
def test_fit_lowers_the_objective(compiled, name):
    d = small(name)
    check_fit_lowers_the_objective(compiled(name), d, unlabelled(name, d))


BILINEAR = """model u7_bilinear_rows
dim triple, node
const k = 3
data a[triple] : index(node)
data b[triple] : index(node)
data c[triple] : index(node)
param P[node, k] ~ normal(0, 0.5)
param M[k, k] ~ normal(0, 0.5)
for t in triple:
    let pos = sum(x in k: sum(z in k: P[a[t], x] * M[x, z] * P[b[t], z]))
    let neg = sum(x in k: sum(z in k: P[a[t], x] * M[x, z] * P[c[t], z]))
    loss (pos - 1)^2 + neg^2
"""


@pytest.mark.parametrize("sync", SYNCS)
def test_adagrad_row_sums_the_rows_of_a_square_nest(load_spec, sync):
    """Regression: a param over (k, k) read in a double sum over one const (M[a, c]) has its
    gradients computed over the triangle a <= c with each point's mirror; under adagrad_row,
    where the update holds every gradient and sums the rows' g^2 as it computes them, that
    triangle added no g^2 to M's rows: each row stepped by g / sqrt(0 + 1e-8), M moved by
    up to 93 in one step of 0.05. Now each point's g^2 goes into its row."""
    mod = load_spec(text=BILINEAR)
    d = dict(a=np.array([0]), b=np.array([1]), c=np.array([2]))

    def f(p):
        P, M = p["P"], p["M"]
        return (P[0] @ M @ P[1] - 1) ** 2 + (P[0] @ M @ P[2]) ** 2
    before, after = stepped(mod, d, "adagrad_row", sync, step=0.1)
    g = fd_gradient(f, before)
    for k in before:
        G = (g[k] ** 2).mean(-1, keepdims=True)
        np.testing.assert_allclose(after[k], before[k] - 0.1 * g[k] / np.sqrt(G + 1e-8),
                                   rtol=0, atol=1e-7, err_msg=f"{k} {sync}")


# ---- the API around the specs ----------------------------------------------------------

@pytest.mark.parametrize("name", ["poismf", "weibull", "mnl"])
def test_float32_builds(hog_cache_dir, name):
    mod = hogwild_dsl.load(text=SPECS[name], dtype="float32", cache_dir=hog_cache_dir)
    d = small(name)
    d1 = one_term(name, d)
    check_float32_build(mod, d, lambda p: reference(name, p, d)[0], d1,
                        lambda p, rule: one_step(name, p, d1, 0.05, rule), atol=5e-6)


@pytest.mark.parametrize("name", ["listwise", "poismf", "ctx3d", "complex"])
def test_warm_start_save_load_and_pickle_continue_a_fit(compiled, name, tmp_path):
    check_two_fits_continue_one(compiled(name), small(name), tmp_path)


def test_train_line_keys_validation_and_patience(compiled):
    """grouplr's train line sets every key the Trainer has; an argument overrides one; with
    held-out data each epoch records the held-out objective and patience keeps the best
    epoch's params."""
    mod = compiled("grouplr")
    t = mod.Trainer()
    assert (t.step, t.decay, t.epochs, t.threads, t.seed, t.patience, t.optimizer, t.sync,
            t.order, t.chunk, t.progress) == \
        (0.5, 0.95, 8, 1, 3, 2, "adagrad", "lock", "shuffle", 64, False)
    assert mod.Trainer(sync="atomic").sync == "atomic"
    d, held = small("grouplr", 0), small("grouplr", 1)
    held["g"], held["lam"] = d["g"], d["lam"]
    t = mod.Trainer(step=3.0, decay=1.0, epochs=30).fit(**d, validation=held)
    check_patience_kept_the_best(t, held, patience=2)
    assert t.objective(**held) == pytest.approx(reference("grouplr", params_of(t), held)[0],
                                                rel=1e-10)


def test_two_threads_every_sync_mode_near_serial(compiled):
    """implicit (its train line says sync atomic) on 3,000 entries."""
    rng = np.random.default_rng(5)
    p = sp.random(100, 60, density=0.5, random_state=5, format="coo")
    p.data[:] = 1.0
    d = dict(p=p, conf=sp.coo_matrix((rng.uniform(0, 5, p.nnz), (p.row, p.col)),
                                     shape=p.shape), alpha=0.5)
    check_two_threads_near_serial(compiled("implicit"), d)


def test_cli_check_compile_train(tmp_path, hog_cache_dir):
    """hogwildc on user specs: check prints the gradients; compile writes an importable
    module; train reads svmlight (with held-out data and --patience), csv triplets and npz
    index data, and saves the params a Python fit gets."""
    from sklearn.datasets import dump_svmlight_file
    for name in ("sqhl1", "poismf", "ordmf"):
        (tmp_path / f"{name}.hog").write_text(SPECS[name])
    res = run_hogwildc(tmp_path, "check", "ordmf.hog")
    assert res.returncode == 0 and "d/dT" in res.stdout, res.stdout
    res = run_hogwildc(tmp_path, "compile", "poismf.hog", "-o", "out")
    assert res.returncode == 0 and (tmp_path / "out" / "u7_poismf.py").exists(), res.stderr

    d, held = small("sqhl1", 0), small("sqhl1", 1)
    dump_svmlight_file(d["X"], d["y"], str(tmp_path / "train.svm"), zero_based=True)
    dump_svmlight_file(held["X"], held["y"], str(tmp_path / "held.svm"), zero_based=True)
    res = run_hogwildc(tmp_path, "train", "sqhl1.hog", "--data", "X,y=train.svm",
                       "--validation", "X,y=held.svm", "--patience", "2", "--epochs", "6",
                       "--threads", "1", "--out", "s.npz", "-q")
    assert res.returncode == 0, res.stderr
    mod = hogwild_dsl.load(text=SPECS["sqhl1"], cache_dir=hog_cache_dir)
    t = mod.Trainer(threads=1, epochs=6, patience=2).fit(**d, validation=held)
    assert_saved_params(tmp_path / "s.npz", t)

    r = small("poismf")["r"]
    (tmp_path / "r.csv").write_text("user,item,count\n" + "".join(
        f"{a},{b},{v:g}\n" for a, b, v in zip(r.row, r.col, r.data)))
    res = run_hogwildc(tmp_path, "train", "poismf.hog", "--data", "r=r.csv", "--epochs", "3",
                       "--threads", "1", "--sync", "atomic", "--out", "p.npz", "-q")
    assert res.returncode == 0, res.stderr
    mod = hogwild_dsl.load(text=SPECS["poismf"], cache_dir=hog_cache_dir)
    t = mod.Trainer(threads=1, epochs=3, sync="atomic").fit(
        r=sp.coo_matrix((r.data, (r.row, r.col)), shape=(r.row.max() + 1, r.col.max() + 1)))
    assert_saved_params(tmp_path / "p.npz", t)
    saved = np.load(tmp_path / "p.npz")
    assert (saved["W"] >= 0).all() and (saved["H"] >= 0).all()

    np.savez(tmp_path / "obs.npz", **small("ordmf"))
    res = run_hogwildc(tmp_path, "train", "ordmf.hog", "--data", "ou,oi,lvl,S=obs.npz",
                       "--epochs", "2", "--optimizer", "adagrad_row", "--out", "o.npz", "-q")
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "o.npz")["T"].shape == (5, 3)


def test_train_line_shuffle_false_and_trainer_order(load_spec):
    """Regression: with `shuffle false` on the train line, Trainer(order="chunks") raised
    "shuffle=False visits terms in stored order; do not also pass order='chunks'" though the
    user passed no shuffle; a train line with `order chunks, shuffle false` silently trained
    in stored order. Now an argument for either of the pair overrides the train line's
    pair, and the train line's contradiction is a SpecError at its `order`."""
    base = SPECS["rank1"].replace("train step 0.05, epochs 10\n", "train step 0.05, epochs 1, ")
    with pytest.raises(hogwild_dsl.SpecError, match="'shuffle false' visits") as e:
        hogwild_dsl.check(base + "order chunks, shuffle false")
    assert (e.value.line, e.value.column) == (20, 34)
    d = small("rank1")
    for line, default in (("shuffle false", "stored"), ("order stored", "stored"),
                          ("order chunks", "chunks")):
        mod = load_spec(text=base + line)
        assert mod.Trainer().order == default
        assert mod.Trainer(order="chunks").order == "chunks"
        assert mod.Trainer(order="stored").order == "stored"
        assert mod.Trainer(shuffle=False).order == "stored"
        assert mod.Trainer(shuffle=True).order == ("chunks" if default == "chunks" else None)
        for order in ("chunks", "stored", "shuffle"):
            t = mod.Trainer(threads=1, order=order).fit(**d)
            assert np.isfinite(t.objective(**d))


def test_l1_ends_irrelevant_features_at_exactly_zero(compiled):
    """sqhl1 (squared hinge + l1 on the row support), labels from features 0 and 1 only: at
    a strong penalty the other weights end at exactly 0 under every update rule, and the
    simplex weights of stacking stay on the simplex."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 8)) * (rng.random((400, 8)) < 0.5)
    y = np.where(X[:, 0] - X[:, 1] >= 0, 1.0, -1.0)
    X = sp.csr_matrix(X)
    mod = compiled("sqhl1_strong")
    for rule in RULES:
        w = mod.Trainer(threads=1, epochs=30, optimizer=rule, step=0.05).fit(X=X, y=y).params["w"]
        assert (w[2:] == 0).all() and w[0] > 0 > w[1], (rule, w)
    t = compiled("stacking").Trainer(threads=1, epochs=5, step=0.5).fit(**small("stacking"))
    assert t.params["a"].min() >= 0 and t.params["a"].sum() == pytest.approx(1, abs=1e-12)


@pytest.mark.parametrize("name, edit", [
    ("distmult", ("predict pos", "predict neg")),
    ("listwise", ("    let pos", "    let negs = sum(s in K: exp(bi[n[s]]))\n    let pos")),
])
def test_predict_through_a_let_of_a_draw_is_refused(name, edit):
    """Regression: `predict` refused a sampled index written in it (`predict bi[n]`) but not
    one read through a let (`let neg = sum(E[h[x]] * Rel[r[x]] * E[n])`, `predict neg`):
    the spec compiled, and predict() read a draw that predict never makes. Now a SpecError
    at the predict, naming the sampled index."""
    text = SPECS[name].replace(*edit)
    if name == "listwise":
        text = text.replace("predict pos", "predict pos * negs")
    with pytest.raises(hogwild_dsl.SpecError, match="may not use the sampled index 'n'") as e:
        hogwild_dsl.check(text)
    assert text.splitlines()[e.value.line - 1].strip().startswith("predict")


def test_a_whole_matrix_reg_target_hints_at_a_loss_line():
    """`reg l2 on G` of a whole 2-D param (a conditional logit's weights, read whole by every
    term) is refused as before, but the hint's only forms were rows (`G[u]`, `G[X[i]]`),
    which such a spec has none of; it now gives the loss line that is the penalty, for 2-D
    and 3-D params, and that line checks."""
    for name, old, new, loss in [
            ("mnl", "reg l2(1e-2) on beta", "reg l2(1e-2) on beta, G",
             "loss LAMBDA * sum(a in feature: sqnorm(G[a]))"),
            ("ctx3d", "on V[u] , Q[v]", "on V, Q[v]",
             "loss LAMBDA * sum(a in user: sum(b in ctx: sqnorm(V[a, b])))")]:
        text = SPECS[name].replace(old, new)
        with pytest.raises(hogwild_dsl.SpecError, match="cannot be a reg target") as e:
            hogwild_dsl.check(text)
        assert loss in str(e.value)
        line = text.splitlines()[e.value.line - 1]
        fixed = text.replace(line, line.replace(", G", "").replace("V, ", "") + "\n    " +
                             loss.replace("LAMBDA", "0.01"))
        hogwild_dsl.check(fixed)


def test_load_with_other_consts_names_them(compiled, hog_cache_dir, tmp_path):
    """A file saved at `const d = 4` loaded by the module built with consts={"d": 5} said
    only "a different spec or version (signature mismatch)"; the spec is the same, and the
    file records the consts: the error now names both and the load that works."""
    d = small("distmult")
    compiled("distmult").Trainer(threads=1, epochs=1).fit(**d).save(str(tmp_path / "m.npz"))
    wide = hogwild_dsl.load(text=SPECS["distmult"], consts={"d": 5}, cache_dir=hog_cache_dir)
    with pytest.raises(hogwild_dsl.HogwildError, match=r"consts \{'d': 4\}.*\{'d': 5\}"):
        wide.Trainer.load(str(tmp_path / "m.npz"))
    assert compiled("distmult").Trainer.load(str(tmp_path / "m.npz")).params["E"].shape == (6, 4)


def test_validation_takes_the_data_that_do_not_vary_with_the_terms(compiled):
    """fit(..., validation={...}) asked for every datum (`validation: missing data 'tau'`)
    where `hogwildc train --validation` already took scalar data from --data: a held-out
    set had to repeat a temperature, a feature-group table or a level-by-cut table. Now data
    over no dim a row block runs over (and not an entry block's matrix or data read at its
    entries) come from the training data when left out, in fit as in the CLI."""
    for name, left_out in (("listwise", ["tau"]), ("grouplr", ["g", "lam"]),
                           ("ordmf", ["S"]), ("implicit", ["alpha"])):
        mod, d = compiled(name), small(name)
        held = {k: v for k, v in d.items() if k not in left_out}
        t = mod.Trainer(threads=1, epochs=2).fit(**d, validation=held)
        best = min(h["validation_objective"] for h in t.history)    # grouplr has patience
        assert best == pytest.approx(t.objective(**d), rel=1e-12)
    mod, d = compiled("grouplr"), small("grouplr")
    with pytest.raises(hogwild_dsl.DataError, match="validation: missing data 'y'"):
        mod.Trainer(threads=1, epochs=1).fit(**d, validation={"X": d["X"]})
