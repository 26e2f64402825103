"""Objectives a new user writes from LANGUAGE.md and API.md alone (round 9).

New corners beside tests/test_user_objectives{,2,...,8}.py: a third-order factorisation
machine (the degree-3 ANOVA kernel from power sums of a vector let); Cox proportional
hazards (each event's risk set a sparse row of subjects, dense covariates read at its
columns); ListNet over a query's graded documents (stored zero grades); a mixture of experts
(softmax gating, a Gaussian mixture likelihood through logsumexp of a vector); a Gaussian
mixture fitted by SGD (a log-variance vector in a box, argmax predict); learning from
crowds (a 3-D simplex param of worker confusion rows read at a sum index and a label,
`softmax(z)[c]`); a hierarchical softmax (the label's path a sparse row picked by the label,
a reg on that row's support); FPMC (a basket row picked by index data, a sampled negative
read beside it); a RotatE-like rotation normalised from two params, with K sampled tails;
a contrastive loss on `norm2` of an embedded difference; a sparse group lasso (l1 on rows
and `norm2` of each feature's row in a second block); expectile regression; Welsch plus
Geman-McClure robust regression; binomial counts; Itakura-Saito NMF with bounded factors;
timeSVD-style biases (a 2-D param read with two index data); LightFM (user and item feature
rows inside an entry block); LightFM-BPR over given triples (one sparse datum picked twice per
term, both supports in one reg line); temperature scaling (a boxed 0-D param dividing a
dense row).

For each spec: `check`, compile and train; `objective()` and `predict()` equal numpy
references at the initial params and after three epochs; one epoch on a one-term data set
is one step of each update rule in each sync mode on the gradient of the numpy reference
taken by central finite differences (the l1 clip and the projections applied after it); a
fit lowers the objective from its init. Then float32, warm start, save/load, pickling and
2-thread fits in every sync mode, validation with patience. Regressions of what this round
found close the file: error messages (a sampled index picking a sparse row, huber's delta,
numpy's chained indexing, a name in use) and the CLI reading a table of index data one name
per column. AdaGrad where two picked rows of one sparse datum share a column is a documented
limit (docs/LANGUAGE-NOTES.md, "Known limits"), pinned for sgd here.
"""
import re

import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from user_objective_checks import (RULES, ab, assert_saved_params, check_epoch_of_tiny_steps,
                                   check_fit_lowers_the_objective, check_float32_build,
                                   check_objective_and_predict, check_one_step,
                                   check_patience_kept_the_best,
                                   check_sampled_step_at_its_draws,
                                   check_steps_where_draws_meet_nothing,
                                   check_two_fits_continue_one, check_two_threads_near_serial,
                                   cover, each, entries, lg, lse, params_of, rows_of, rule_step,
                                   sig, softplus, sq, sX, write_spec)

SPECS = {
    # a third-order factorisation machine: the ANOVA kernel of degree 3 from power sums
    "hofm3": """
model u9_hofm3
dim example, feature
const k = 2
data X[example, feature] : sparse
data y[example] : real
param w0 = 0
param w[feature] = 0
param V[feature, k] ~ normal(0, 0.3)
param U[feature, k] ~ normal(0, 0.3)
for i in example:
    let p1 = sum(j in X[i]: X[i, j] * U[j])
    let p2 = sum(j in X[i]: X[i, j]^2 * U[j]^2)
    let p3 = sum(j in X[i]: X[i, j]^3 * U[j]^3)
    let pair = 0.5 * sum(f in k: sum(j in X[i]: X[i, j] * V[j, f])^2 - sum(j in X[i]: X[i, j]^2 * V[j, f]^2))
    let triple = sum(p1^3 - 3 * p1 * p2 + 2 * p3) / 6
    let yhat = w0 + dot(X[i], w) + pair + triple
    loss (yhat - y[i])^2
    reg l2(1e-3) on w[X[i]], V[X[i]], U[X[i]]
    predict yhat
train step 0.02, epochs 10
""",
    # Cox proportional hazards: each event's risk set is a sparse row of subjects (Breslow)
    "cox": """
model u9_cox
dim event, subject, feature
data Rk[event, subject] : sparse
data who[event] : index(subject)
data Z[subject, feature] : dense
param w[feature] = 0
for e in event:
    let eta = dot(Z[who[e]], w)
    loss log(sum(j in Rk[e]: Rk[e, j] * exp(dot(Z[j], w)))) - eta
    reg l2(1e-2) on w
    predict eta
train step 0.1, epochs 10
""",
    # ListNet: the top-one cross-entropy of a query's graded docs (stored zeros are docs)
    "listnet": """
model u9_listnet
dim query, doc, feature
data Rel[query, doc] : sparse
data F[doc, feature] : dense
param w[feature] = 0
for q in query:
    let zr = sum(j in Rel[q]: exp(Rel[q, j]))
    let lz = log(sum(j in Rel[q]: exp(dot(F[j], w))))
    loss -sum(j in Rel[q]: exp(Rel[q, j]) / zr * (dot(F[j], w) - lz))
    predict sum(j in Rel[q]: exp(Rel[q, j]) / zr * dot(F[j], w))
train step 0.2, epochs 10
""",
    # a mixture of experts: softmax gating of K linear experts, a Gaussian mixture likelihood
    "moe": """
model u9_moe
dim example, feature
const E = 3
data X[example, feature] : sparse
data y[example] : real
param G[feature, E] = 0
param W[feature, E] ~ normal(0, 0.3)
param be[E] = 0
for i in example:
    let gate = sum(j in X[i]: X[i, j] * G[j])
    let mu = sum(j in X[i]: X[i, j] * W[j]) + be
    let logp = gate - logsumexp(gate) - 0.5 * (y[i] - mu)^2
    loss -logsumexp(logp)
    reg l2(1e-3) on G[X[i]], W[X[i]]
    predict dot(softmax(gate), mu)
train step 0.05, epochs 10
""",
    # a Gaussian mixture fitted by SGD: per-component log-variance in a box, argmax predict
    "gmm": """
model u9_gmm
dim point, coord
const C = 3
data X[point, coord] : dense
param M[coord, C] ~ normal(0, 1)
param a[C] = 0
param lv[C] in [-3, 3] = 0
for n in point:
    let d2 = sum(c in coord: (X[n, c] - M[c])^2)
    let lp = a - logsumexp(a) - 0.5 * d2 * exp(-lv) - 0.5 * lv * sum(c in coord: 1)
    loss -logsumexp(lp)
    predict argmax(lp)
train step 0.05, epochs 10
""",
    # learning from crowds: a softmax classifier seen through each worker's confusion rows
    "crowd": """
model u9_crowd
dim answer, item, feature, worker, class
data X[item, feature] : sparse
data it[answer] : index(item)
data wk[answer] : index(worker)
data lab[answer] : index(class)
param W[feature, class] = 0
param Conf[worker, class, class] in simplex ~ uniform(0.2, 1)
for o in answer:
    let z = sum(j in X[it[o]]: X[it[o], j] * W[j])
    loss -log(sum(c in class: softmax(z)[c] * Conf[wk[o], c, lab[o]]))
    reg l2(1e-3) on W[X[it[o]]]
    predict softmax(z)
train step 0.1, epochs 10
""",
    # hierarchical softmax: the label's path is a sparse row of +-1 branches over nodes
    "hsm": """
model u9_hsm
dim example, feature, word, node
const d = 3
data X[example, feature] : sparse
data y[example] : index(word)
data Path[word, node] : sparse
param Win[feature, d] ~ normal(0, 0.3)
param Node[node, d] ~ normal(0, 0.3)
for i in example:
    let h = sum(j in X[i]: X[i, j] * Win[j])
    loss sum(n in Path[y[i]]: logistic(Path[y[i], n] * dot(h, Node[n])))
    reg l2(1e-3) on Win[X[i]], Node[Path[y[i]]]
    predict h
train step 0.1, epochs 10
""",
    # FPMC: user-item MF plus a Markov term over the previous basket, one sampled negative
    "fpmc": """
model u9_fpmc
dim trans, user, item, basket
const k = 3
data tu[trans] : index(user)
data ti[trans] : index(item)
data prev[trans] : index(basket)
data B[basket, item] : sparse
data bn[basket] : real
param VUI[user, k] ~ normal(0, 0.3)
param VIU[item, k] ~ normal(0, 0.3)
param VIL[item, k] ~ normal(0, 0.3)
param VLI[item, k] ~ normal(0, 0.3)
for t in trans:
    sample j in item
    let mc = sum(l in B[prev[t]]: B[prev[t], l] * VLI[l]) * bn[prev[t]]
    let xi = dot(VUI[tu[t]], VIU[ti[t]]) + dot(VIL[ti[t]], mc)
    let xj = dot(VUI[tu[t]], VIU[j]) + dot(VIL[j], mc)
    loss -log(sigmoid(xi - xj))
    reg l2(1e-3) on VUI[tu[t]], VIU[ti[t]], VIU[j], VIL[ti[t]], VIL[j] unscaled
    reg l2(1e-3) on VLI[B[prev[t]]]
    predict xi
train step 0.05, epochs 10
""",
    # RotatE-like: a unit-modulus rotation from normalised (Rr, Ri), K sampled tails
    "rotate": """
model u9_rotate
dim triple, entity, relation
const d = 3
const K = 2
data h[triple] : index(entity)
data r[triple] : index(relation)
data t[triple] : index(entity)
param Er[entity, d] ~ normal(0, 0.5)
param Ei[entity, d] ~ normal(0, 0.5)
param Rr[relation, d] ~ normal(0, 1)
param Ri[relation, d] ~ normal(0, 1)
for x in triple:
    sample n[K] in entity
    let m = sqrt(Rr[r[x]]^2 + Ri[r[x]]^2 + 1e-6)
    let c = Rr[r[x]] / m
    let s = Ri[r[x]] / m
    let hr = Er[h[x]] * c - Ei[h[x]] * s
    let hi = Er[h[x]] * s + Ei[h[x]] * c
    let dpos = sum(sqrt((hr - Er[t[x]])^2 + (hi - Ei[t[x]])^2 + 1e-9))
    loss softplus(dpos - 2) + sum(q in K: softplus(2 - sum(sqrt((hr - Er[n[q]])^2 + (hi - Ei[n[q]])^2 + 1e-9)))) / K
    predict -dpos
train step 0.05, epochs 10
""",
    # a contrastive (Hadsell) loss on a linear embedding of dense features, norm2 distance
    "contrastive": """
model u9_contrastive
dim pair, obj, feature
const d = 2
data a[pair] : index(obj)
data b[pair] : index(obj)
data same[pair] : binary
data F[obj, feature] : dense
param W[feature, d] ~ normal(0, 0.5)
for p in pair:
    let diff = sum(f in feature: (F[a[p], f] - F[b[p], f]) * W[f])
    let dist = norm2(diff)
    loss same[p] * dist^2 + (1 - same[p]) * relu(1 - dist)^2
    predict dist
train step 0.05, epochs 10
""",
    # sparse group lasso for multi-task regression: l1 on rows plus norm2 of each feature's row
    "sgl": """
model u9_sgl
dim obs, example, feature, task
data X[example, feature] : sparse
data ex[obs] : index(example)
data tk[obs] : index(task)
data y[obs] : real
data gw[feature] : real
param W[feature, task] = 0
param b[task] = 0
for o in obs:
    let pred = sum(j in X[ex[o]]: X[ex[o], j] * W[j, tk[o]]) + b[tk[o]]
    loss 0.5 * (pred - y[o])^2
    reg l1(1e-3) on W[X[ex[o]]]
for j in feature:
    loss 0.1 * gw[j] * norm2(W[j])
    predict norm2(W[j])
train step 0.1, epochs 10
""",
    # expectile regression (asymmetric squares), the level tau given as scalar data
    "expectile": """
model u9_expectile
dim example, feature
data X[example, feature] : dense
data y[example] : real
data tau : real
param w[feature] = 0
param b = 0
for i in example:
    let r = y[i] - dot(X[i], w) - b
    loss tau * relu(r)^2 + (1 - tau) * relu(-r)^2
    reg l2(1e-2) on w
    predict dot(X[i], w) + b
train step 0.1, epochs 10
""",
    # Welsch plus Geman-McClure robust regression, the scale given as scalar data
    "robust": """
model u9_robust
dim example, feature
data X[example, feature] : sparse
data y[example] : real
data c : real
param w[feature] = 0
param b = 0
for i in example:
    let r = dot(X[i], w) + b - y[i]
    loss 1 - exp(-(r / c)^2) + 0.5 * r^2 / (r^2 + c^2)
    reg l2(1e-3) on w[X[i]]
    predict dot(X[i], w) + b
train step 0.2, epochs 10
""",
    # binomial regression: k successes out of n trials, logit link
    "binom": """
model u9_binom
dim example, feature
data X[example, feature] : sparse
data k[example] : real
data n[example] : real
param w[feature] = 0
param b = 0
for i in example:
    let eta = dot(X[i], w) + b
    loss n[i] * softplus(eta) - k[i] * eta
    reg l2(1e-2) on w[X[i]]
    predict n[i] * sigmoid(eta)
train step 0.05, epochs 10
""",
    # Itakura-Saito NMF with factors bounded below and l1 on rows
    "isnmf": """
model u9_isnmf
dim row, col
const k = 2
data V[row, col] : sparse
param W[row, k] >= 0.01 ~ uniform(0.2, 1)
param H[col, k] >= 0.01 ~ uniform(0.2, 1)
for (u, v) in V:
    let vh = dot(W[u], H[v])
    loss V[u, v] / vh - log(V[u, v] / vh) - 1
    reg l1(1e-3) on W[u], H[v]
    predict vh
train step 0.02, epochs 10
""",
    # timeSVD-style biases: a user drift, an item x time-bin bias read with two index data
    "timesvd": """
model u9_timesvd
dim rating, user, item, tbin
const k = 2
data tu[rating] : index(user)
data ti[rating] : index(item)
data tb[rating] : index(tbin)
data y[rating] : real
data dt[rating] : real
data mu : real
param bu[user] = 0
param au[user] = 0
param bi[item] = 0
param bit[item, tbin] = 0
param P[user, k] ~ normal(0, 0.2)
param Q[item, k] ~ normal(0, 0.2)
for o in rating:
    let pred = mu + bu[tu[o]] + au[tu[o]] * dt[o] + bi[ti[o]] + bit[ti[o], tb[o]] + dot(P[tu[o]], Q[ti[o]])
    loss (pred - y[o])^2
    reg l2(1e-2) on bu[tu[o]], au[tu[o]], bi[ti[o]], P[tu[o]], Q[ti[o]]
    reg l2(1e-2) on bit[ti[o]]
    predict pred
train optimizer adagrad, step 0.1, epochs 10
""",
    # LightFM: users and items as sums of their feature embeddings, signed interactions
    "lightfm": """
model u9_lightfm
dim user, item, ufeat, ifeat
const k = 3
data r[user, item] : sparse
data UF[user, ufeat] : sparse
data IF[item, ifeat] : sparse
param EU[ufeat, k] ~ normal(0, 0.3)
param EI[ifeat, k] ~ normal(0, 0.3)
param bU[ufeat] = 0
param bI[ifeat] = 0
for (u, i) in r:
    let pu = sum(a in UF[u]: UF[u, a] * EU[a])
    let qi = sum(b in IF[i]: IF[i, b] * EI[b])
    let s = dot(pu, qi) + dot(UF[u], bU) + dot(IF[i], bI)
    loss logistic(r[u, i] * s)
    reg l2(1e-3) on EU[UF[u]], EI[IF[i]]
    predict sigmoid(s)
train step 0.1, epochs 10
""",
    # LightFM with BPR over given (user, positive, negative) triples: one sparse datum picked
    # twice per term, both supports in one reg line
    "lfbpr": """
model u9_lfbpr
dim trip, user, item, ufeat, ifeat
const k = 3
data tu[trip] : index(user)
data tp[trip] : index(item)
data tn[trip] : index(item)
data UF[user, ufeat] : sparse
data IF[item, ifeat] : sparse
param EU[ufeat, k] ~ normal(0, 0.3)
param EI[ifeat, k] ~ normal(0, 0.3)
param bI[ifeat] = 0
for t in trip:
    let pu = sum(a in UF[tu[t]]: UF[tu[t], a] * EU[a])
    let qp = sum(b in IF[tp[t]]: IF[tp[t], b] * EI[b])
    let qn = sum(b in IF[tn[t]]: IF[tn[t], b] * EI[b])
    let x = dot(pu, qp - qn) + dot(IF[tp[t]], bI) - dot(IF[tn[t]], bI)
    loss softplus(-x)
    reg l2(1e-3) on EU[UF[tu[t]]], EI[IF[tp[t]]], EI[IF[tn[t]]]
    predict dot(pu, qp)
train step 0.1, epochs 10
""",
    # temperature scaling of given logits, a learned temperature in a box and class biases
    "tempcal": """
model u9_tempcal
dim example, class
data Lg[example, class] : dense
data y[example] : index(class)
param T in [0.05, 20] = 1
param bc[class] = 0
for i in example:
    let z = Lg[i] / T + bc
    loss logsumexp(z) - z[y[i]]
    reg l2(1e-2) on bc
    predict softmax(z)
train step 0.1, epochs 10
""",
}


# ---- numpy references ------------------------------------------------------------------

def smax(Z):
    return np.exp(Z - lse(Z)[..., None])


def rowdot(A, B):
    return (A * B).sum(-1)


def rotate_dist(p, d, tails):
    """RotatE's distance of each triple's rotated head to the entities `tails` (per term)."""
    r, h = d["r"], d["h"]
    m = np.sqrt(p["Rr"][r] ** 2 + p["Ri"][r] ** 2 + 1e-6)
    c, s = p["Rr"][r] / m, p["Ri"][r] / m
    hr = p["Er"][h] * c - p["Ei"][h] * s
    hi = p["Er"][h] * s + p["Ei"][h] * c
    return np.sqrt((hr - p["Er"][tails]) ** 2 + (hi - p["Ei"][tails]) ** 2 + 1e-9).sum(-1)


def reference(name, p, d, draws=None):
    """(objective, predict) of spec `name` at params p on data d. The sampled specs take the
    draws of each term (terms x K); predict needs none."""
    if name == "hofm3":
        X, y = sp.csr_matrix(d["X"]), d["y"]
        U, V = p["U"], p["V"]
        p1, p2, p3 = X @ U, X.power(2) @ U ** 2, X.power(3) @ U ** 3
        pair = 0.5 * ((X @ V) ** 2 - X.power(2) @ V ** 2).sum(1)
        triple = (p1 ** 3 - 3 * p1 * p2 + 2 * p3).sum(1) / 6
        yhat = p["w0"] + X @ p["w"] + pair + triple
        R = rows_of(X)
        reg = 1e-3 * (sq(p["w"], R) + sq(V, R) + sq(U, R))
        return ((yhat - y) ** 2).mean() + reg / y.size, yhat
    if name == "cox":
        Rk, Z, who = sp.csr_matrix(d["Rk"]), d["Z"], d["who"]
        eta = Z @ p["w"]
        L = np.log(Rk @ np.exp(eta)) - eta[who]
        return L.mean() + 1e-2 * (p["w"] ** 2).sum() / who.size, eta[who]
    if name == "listnet":
        Rel, F, w = sp.csr_matrix(d["Rel"]), d["F"], p["w"]
        s = F @ w
        L, pred = [], []
        for q in range(Rel.shape[0]):
            docs = Rel.indices[Rel.indptr[q]:Rel.indptr[q + 1]]
            g = np.exp(Rel.data[Rel.indptr[q]:Rel.indptr[q + 1]])
            lz = np.log(np.exp(s[docs]).sum())
            L.append(-(g / g.sum() * (s[docs] - lz)).sum())
            pred.append((g / g.sum() * s[docs]).sum())
        return np.mean(L), np.array(pred)
    if name == "moe":
        X, y = sp.csr_matrix(d["X"]), d["y"]
        gate, mu = X @ p["G"], X @ p["W"] + p["be"]
        logp = gate - lse(gate)[:, None] - 0.5 * (y[:, None] - mu) ** 2
        R = rows_of(X)
        reg = 1e-3 * (sq(p["G"], R) + sq(p["W"], R))
        return -lse(logp).mean() + reg / y.size, (smax(gate) * mu).sum(1)
    if name == "gmm":
        X, M, a, lv = d["X"], p["M"], p["a"], p["lv"]
        d2 = ((X[:, :, None] - M[None]) ** 2).sum(1)
        lp = a - lse(a) - 0.5 * d2 * np.exp(-lv) - 0.5 * lv * X.shape[1]
        return -lse(lp).mean(), np.argmax(lp, 1)
    if name == "crowd":
        X, it, wk, lab = sp.csr_matrix(d["X"]), d["it"], d["wk"], d["lab"]
        z = (X @ p["W"])[it]
        P = smax(z)
        L = -np.log((P * p["Conf"][wk, :, lab]).sum(1))
        R = rows_of(X)
        return L.mean() + 1e-3 * sq(p["W"], [R[e] for e in it]) / it.size, P
    if name == "hsm":
        X, y, Path = sp.csr_matrix(d["X"]), d["y"], sp.csr_matrix(d["Path"])
        h = X @ p["Win"]
        L = np.array([lg(Path[y[i]].data * (p["Node"][Path[y[i]].indices] @ h[i])).sum()
                      for i in range(y.size)])
        P = rows_of(Path)
        reg = 1e-3 * (sq(p["Win"], rows_of(X)) + sq(p["Node"], [P[c] for c in y]))
        return L.mean() + reg / y.size, h
    if name == "fpmc":
        tu, ti, pv, B = d["tu"], d["ti"], d["prev"], sp.csr_matrix(d["B"])
        mc = (B @ p["VLI"])[pv] * d["bn"][pv][:, None]
        xi = rowdot(p["VUI"][tu], p["VIU"][ti]) + rowdot(p["VIL"][ti], mc)
        if draws is None:
            return None, xi
        j = draws[:, 0]
        xj = rowdot(p["VUI"][tu], p["VIU"][j]) + rowdot(p["VIL"][j], mc)
        un = sum((p[k][v] ** 2).sum() for k, v in
                 (("VUI", tu), ("VIU", ti), ("VIU", j), ("VIL", ti), ("VIL", j)))
        Pb = rows_of(B)
        reg = 1e-3 * un + 1e-3 * sq(p["VLI"], [Pb[b] for b in pv])
        return lg(xi - xj).mean() + reg / tu.size, xi
    if name == "rotate":
        dpos = rotate_dist(p, d, d["t"])
        if draws is None:
            return None, -dpos
        dneg = np.stack([rotate_dist(p, d, draws[:, q]) for q in range(draws.shape[1])], 1)
        L = softplus(dpos - 2) + softplus(2 - dneg).sum(1) / draws.shape[1]
        return L.mean(), -dpos
    if name == "contrastive":
        a, b, same, F = d["a"], d["b"], d["same"], d["F"]
        dist = np.linalg.norm((F[a] - F[b]) @ p["W"], axis=1)
        L = same * dist ** 2 + (1 - same) * np.maximum(0, 1 - dist) ** 2
        return L.mean(), dist
    if name == "sgl":
        X, ex, tk, y = sp.csr_matrix(d["X"]), d["ex"], d["tk"], d["y"]
        W = p["W"]
        pred = np.asarray((X[ex].multiply(W[:, tk].T)).sum(1)).ravel() + p["b"][tk]
        R = rows_of(X)
        gn = np.linalg.norm(W, axis=1)
        tot = (0.5 * (pred - y) ** 2).sum() + 1e-3 * ab(W, [R[e] for e in ex]) + \
            (0.1 * d["gw"] * gn).sum()
        return tot / (y.size + W.shape[0]), gn
    if name == "expectile":
        f = d["X"] @ p["w"] + p["b"]
        r, tau = d["y"] - f, d["tau"]
        L = tau * np.maximum(r, 0) ** 2 + (1 - tau) * np.maximum(-r, 0) ** 2
        return L.mean() + 1e-2 * (p["w"] ** 2).sum() / r.size, f
    if name == "robust":
        X, c = sp.csr_matrix(d["X"]), d["c"]
        f = X @ p["w"] + p["b"]
        r = f - d["y"]
        L = 1 - np.exp(-(r / c) ** 2) + 0.5 * r ** 2 / (r ** 2 + c ** 2)
        return L.mean() + 1e-3 * sq(p["w"], rows_of(X)) / r.size, f
    if name == "binom":
        X, k, n = sp.csr_matrix(d["X"]), d["k"], d["n"]
        eta = X @ p["w"] + p["b"]
        L = n * softplus(eta) - k * eta
        return L.mean() + 1e-2 * sq(p["w"], rows_of(X)) / k.size, n * sig(eta)
    if name == "isnmf":
        V = sp.coo_matrix(d["V"])
        vh = rowdot(p["W"][V.row], p["H"][V.col])
        L = V.data / vh - np.log(V.data / vh) - 1
        reg = 1e-3 * (ab(p["W"], each(V.row)) + ab(p["H"], each(V.col)))
        return L.mean() + reg / V.nnz, vh
    if name == "timesvd":
        tu, ti, tb = d["tu"], d["ti"], d["tb"]
        pred = d["mu"] + p["bu"][tu] + p["au"][tu] * d["dt"] + p["bi"][ti] + \
            p["bit"][ti, tb] + rowdot(p["P"][tu], p["Q"][ti])
        reg = sq(p["bu"], each(tu)) + sq(p["au"], each(tu)) + sq(p["bi"], each(ti)) + \
            sq(p["P"], each(tu)) + sq(p["Q"], each(ti)) + sq(p["bit"], each(ti))
        return ((pred - d["y"]) ** 2).mean() + 1e-2 * reg / tu.size, pred
    if name == "lightfm":
        r, UF, IF = sp.coo_matrix(d["r"]), sp.csr_matrix(d["UF"]), sp.csr_matrix(d["IF"])
        u, i = r.row, r.col
        pu, qi = UF @ p["EU"], IF @ p["EI"]
        s = rowdot(pu[u], qi[i]) + (UF @ p["bU"])[u] + (IF @ p["bI"])[i]
        Ru, Ri = rows_of(UF), rows_of(IF)
        reg = 1e-3 * (sq(p["EU"], [Ru[a] for a in u]) + sq(p["EI"], [Ri[b] for b in i]))
        return lg(r.data * s).mean() + reg / r.nnz, sig(s)
    if name == "lfbpr":
        UF, IF = sp.csr_matrix(d["UF"]), sp.csr_matrix(d["IF"])
        tu, tp, tn = d["tu"], d["tp"], d["tn"]
        pu, q, b = UF @ p["EU"], IF @ p["EI"], IF @ p["bI"]
        x = rowdot(pu[tu], q[tp] - q[tn]) + b[tp] - b[tn]
        RU, RI = rows_of(UF), rows_of(IF)
        reg = 1e-3 * (sq(p["EU"], [RU[a] for a in tu]) +
                      sq(p["EI"], [RI[a] for a in tp], [RI[a] for a in tn]))
        return softplus(-x).mean() + reg / tu.size, rowdot(pu[tu], q[tp])
    if name == "tempcal":
        z = d["Lg"] / p["T"] + p["bc"]
        n = z.shape[0]
        L = lse(z) - z[np.arange(n), d["y"]]
        return L.mean() + 1e-2 * (p["bc"] ** 2).sum() / n, smax(z)
    raise KeyError(name)


# ---- data ------------------------------------------------------------------------------

def small(name, seed=0):
    """A small data set for spec `name`."""
    rng = np.random.default_rng(seed)
    if name == "hofm3":
        X = sX(rng, 30, 6, seed, dens=0.5)
        return dict(X=X, y=rng.normal(size=30))
    if name == "cox":
        n = 12                              # subjects by time; event e at subject who[e]
        who = np.sort(rng.choice(n - 1, 8, replace=False))
        rows = [np.arange(s, n) for s in who]                 # still at risk
        Rk = sp.csr_matrix((np.ones(sum(map(len, rows))),
                            (np.repeat(np.arange(8), list(map(len, rows))),
                             np.concatenate(rows))), shape=(8, n))
        return dict(Rk=Rk, who=who, Z=rng.normal(size=(n, 3)))
    if name == "listnet":
        rows, cols, rel = [], [], []
        for q in range(8):
            docs = rng.choice(10, size=rng.integers(2, 5), replace=False)
            rows += [q] * docs.size
            cols += list(docs)
            rel += list(rng.integers(0, 3, docs.size).astype(float))
        rel[0] = 0.0                                           # a stored zero grade
        Rel = sp.csr_matrix((rel, (rows, cols)), shape=(8, 10))
        return dict(Rel=Rel, F=rng.normal(size=(10, 3)))
    if name == "moe":
        return dict(X=sX(rng, 30, 5, seed), y=rng.normal(size=30) * 2)
    if name == "gmm":
        X = np.concatenate([rng.normal(size=(10, 2)) * 0.5 + c for c in ([2, 0], [-2, 1],
                                                                            [0, -2])])
        return dict(X=X)
    if name == "crowd":
        return dict(X=sX(rng, 10, 5, seed), it=cover(rng, 10, 30), wk=cover(rng, 4, 30),
                    lab=cover(rng, 3, 30))
    if name == "hsm":
        # 4 words at the leaves of a depth-2 tree of 3 inner nodes: root 0, then 1 or 2
        Path = sp.csr_matrix(np.array([[1, 1, 0], [1, -1, 0], [-1, 0, 1], [-1, 0, -1.0]]))
        return dict(X=sX(rng, 30, 5, seed), y=cover(rng, 4, 30), Path=Path)
    if name == "fpmc":
        B = sp.csr_matrix(sX(rng, 5, 6, seed))
        B.data[:] = 1.0
        return dict(tu=cover(rng, 4, 30), ti=cover(rng, 6, 30), prev=cover(rng, 5, 30), B=B,
                    bn=1.0 / np.diff(B.indptr))
    if name == "rotate":
        return dict(h=cover(rng, 6, 30), r=cover(rng, 2, 30), t=rng.integers(0, 6, 30))
    if name == "contrastive":
        a = cover(rng, 6, 30)
        b = rng.integers(0, 6, 30)
        b[1] = a[1]                        # an object paired with itself (distance 0)
        return dict(a=a, b=b, same=(rng.random(30) < 0.5).astype(float),
                    F=rng.normal(size=(6, 3)))
    if name == "sgl":
        X = sX(rng, 10, 6, seed)
        return dict(X=X, ex=cover(rng, 10, 30), tk=cover(rng, 3, 30), y=rng.normal(size=30),
                    gw=rng.uniform(0.5, 1.5, 6))
    if name == "expectile":
        X = rng.normal(size=(30, 3))
        return dict(X=X, y=X @ np.array([1.0, -1.0, 0.5]) + rng.normal(size=30), tau=0.8)
    if name == "robust":
        X = sX(rng, 30, 5, seed)
        y = X @ np.array([1.0, -2, 0, 1, 0.5]) + 0.1 * rng.normal(size=30)
        y[:3] += 10                        # outliers
        return dict(X=X, y=y, c=1.5)
    if name == "binom":
        n = rng.integers(1, 8, 30).astype(float)
        return dict(X=sX(rng, 30, 5, seed), k=np.floor(n * rng.random(30)), n=n)
    if name == "isnmf":
        return dict(V=entries(rng, 5, 6, 0.5, 3, seed, density=0.6))
    if name == "timesvd":
        return dict(tu=cover(rng, 4, 30), ti=cover(rng, 5, 30), tb=cover(rng, 3, 30),
                    y=rng.uniform(1, 5, 30), dt=rng.normal(size=30), mu=3.0)
    if name == "lightfm":
        r = entries(rng, 5, 6, 0, 1, seed, density=0.6)
        r.data = np.where(r.data < 0.5, -1.0, 1.0)
        return dict(r=r, UF=sX(rng, 5, 4, seed + 1), IF=sX(rng, 6, 4, seed + 2))
    if name == "lfbpr":
        tp = cover(rng, 6, 30)
        tn = (tp + rng.integers(1, 6, 30)) % 6          # never the positive
        return dict(tu=cover(rng, 5, 30), tp=tp, tn=tn, UF=sX(rng, 5, 4, seed + 1),
                    IF=sX(rng, 6, 4, seed + 2))
    if name == "tempcal":
        Lg = 3 * rng.normal(size=(30, 3))
        return dict(Lg=Lg, y=cover(rng, 3, 30))
    raise KeyError(name)


AUDITED = list(SPECS)
SAMPLED = {"fpmc": 1, "rotate": 2}
PLAIN = [n for n in AUDITED if n not in SAMPLED]
# Specs whose one-term data would be trivial or which have two blocks: an epoch of tiny steps
# is checked against the gradient instead.
TINY = ["sgl"]
LABELS = {"hofm3": ["y"], "cox": [], "listnet": [], "moe": ["y"], "gmm": [],
          "crowd": ["wk", "lab"], "hsm": [], "fpmc": [], "rotate": [], "contrastive": ["same"],
          "sgl": ["y"], "expectile": ["y"], "robust": ["y"], "binom": ["k"], "isnmf": [],
          "timesvd": ["y"], "lightfm": [], "lfbpr": [], "tempcal": ["y"]}


def unlabelled(name, d):
    return {k: v for k, v in d.items() if k not in LABELS[name]}


def one_sampled(name, width=2):
    """One term of a sampled spec, the sampled dim `width` wide (2: every draw is 0 or 1)."""
    if name == "fpmc":
        B = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, width - 1])), shape=(1, width))
        return dict(tu=np.array([0]), ti=np.array([0]), prev=np.array([0]), B=B,
                    bn=np.array([0.5]))
    if name == "rotate":
        return dict(h=np.array([0]), r=np.array([0]), t=np.array([width - 1]))
    raise KeyError(name)


def one_term(name, d):
    """The data of one term. Row blocks: the first term, data over other dims kept. Entry
    blocks: the first entry."""
    if name in ("isnmf", "lightfm"):
        key = {"isnmf": "V", "lightfm": "r"}[name]
        r = sp.coo_matrix(d[key])
        one = sp.coo_matrix((r.data[:1], (r.row[:1], r.col[:1])), shape=r.shape)
        return dict(d, **{key: one})
    if name == "lfbpr":         # the positive's and the negative's features apart (below)
        IF = sp.lil_matrix(sp.csr_matrix(d["IF"]).shape)
        IF[d["tp"][0], [0, 1]] = [0.7, 0.4]
        IF[d["tn"][0], [2, 3]] = [0.5, 0.9]
        return dict(tu=d["tu"][:1], tp=d["tp"][:1], tn=d["tn"][:1], UF=d["UF"],
                    IF=sp.csr_matrix(IF))
    if name == "crowd":         # a term whose label is the last class (lab sizes `class`)
        at = int(np.flatnonzero(d["lab"] == d["lab"].max())[0])
        return dict(X=d["X"], **{k: d[k][at:at + 1] for k in ("it", "wk", "lab")})
    keep = {"crowd": ["X"], "hsm": ["Path"], "contrastive": ["F"], "cox": ["Z"],
            "listnet": ["F"]}.get(name, [])
    return {k: (v if np.ndim(v) == 0 or k in keep else v[:1]) for k, v in d.items()}


def l1_targets(name, d):
    """param -> (lambda / deg, the coordinates the one term's `reg l1` covers)."""
    if name == "isnmf":
        V = sp.coo_matrix(d["V"])
        return {"W": (1e-3, np.s_[V.row[0]]), "H": (1e-3, np.s_[V.col[0]])}
    return {}


def simplex(v):
    """Euclidean projection of each row (last axis) on the probability simplex."""
    u = -np.sort(-v, axis=-1)
    css = np.cumsum(u, -1) - 1
    k = np.arange(1, v.shape[-1] + 1)
    rho = (u - css / k > 0).sum(-1, keepdims=True)
    theta = np.take_along_axis(css, rho - 1, -1) / rho
    return np.maximum(v - theta, 0)


def project(name, k, v):
    """The spec's constraint (every row: the rows a step did not touch are inside it)."""
    if name == "gmm" and k == "lv":
        return np.clip(v, -3, 3)
    if name == "crowd" and k == "Conf":
        return simplex(v)
    if name == "isnmf":
        return np.maximum(v, 0.01)
    if name == "tempcal" and k == "T":
        return np.clip(v, 0.05, 20)
    return v


def one_step(name, p, d, step, rule, draws=None):
    """One term's update at p by hand (rule_step) on the numpy reference's gradient."""
    return rule_step(lambda q: reference(name, q, d, draws)[0], p, step, rule,
                     l1_targets(name, d), lambda k, v: project(name, k, v))


def n_terms(name, d):
    if name == "sgl":
        return d["y"].size + d["gw"].size
    raise KeyError(name)


# ---- the tests -------------------------------------------------------------------------

@pytest.mark.parametrize("name", AUDITED)
def test_check_prints_the_gradients(name):
    """`check` passes and the gradient text names every param."""
    from hogwild_dsl.derive import gradients_text
    text = gradients_text(hogwild_dsl.check(SPECS[name]))
    for line in SPECS[name].splitlines():
        if line.startswith("param "):
            pname = line.split()[1].split("[")[0]
            assert f"d/d{pname}" in text, pname


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


ONE_STEP = [n for n in PLAIN if n not in TINY]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("name", ONE_STEP)
def test_one_step_is_the_update_rule_of_the_gradient(compiled, name, rule):
    """Every param took a step, in each sync mode."""
    d = one_term(name, small(name))
    check_one_step(compiled(name), d, lambda p: one_step(name, p, d, 0.05, rule), rule,
                   atol=1e-7, what=name, every_param_moves=True)


@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_sampled_step_is_the_gradient_at_its_draws(compiled, name):
    """On one term over a dim of 2 the K draws are 0 and 1: one sgd step is the step on the
    gradient at one of the 2^K draw vectors, in every sync mode; so is objective() (one
    fixed draw per term)."""
    d = one_sampled(name)
    check_sampled_step_at_its_draws(compiled(name), d,
                                    lambda p, c: one_step(name, p, d, 0.05, "sgd", c),
                                    lambda p, c: reference(name, p, d, c)[0], SAMPLED[name])


# The param each sampled spec draws rows of, the rows the term's own indices touch, and the
# width of the sampled dim at which K distinct draws apart from those rows are likely.
DRAWN = {"fpmc": ("VIU", [0], 8), "rotate": ("Er", [0, 5], 6)}


@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_sampled_step_of_every_rule_where_draws_meet_nothing(compiled, name):
    """Draws depend on (seed, term, line) only: the rows an sgd step moves beside the
    term's own are its draws. Where they are K distinct rows apart from the term's own,
    every rule in every sync mode is its step on the numpy gradient at those draws."""
    param, fixed, width = DRAWN[name]
    d = one_sampled(name, width)
    check_steps_where_draws_meet_nothing(
        compiled(name), d, lambda p, rule, c: one_step(name, p, d, 0.05, rule, c), param, fixed,
        width, SAMPLED[name], seeds=range(40))


@pytest.mark.parametrize("name", TINY)
def test_epoch_of_tiny_steps_is_the_gradient(compiled, name):
    """One epoch of tiny sgd steps moves each coordinate by step x N x the gradient of the
    numpy objective (from a point three epochs in, away from the kinks)."""
    d = small(name)
    check_epoch_of_tiny_steps(compiled(name), d, lambda q: reference(name, q, d)[0],
                              n_terms(name, d), epochs_before=3, atol=1e-6)


@pytest.mark.parametrize("name", AUDITED)
def test_fit_lowers_the_objective(compiled, name):
    """The spec's own train line (threads 1 for the test's speed) from its init."""
    d = small(name)
    check_fit_lowers_the_objective(compiled(name), d, unlabelled(name, d))


def test_norm2_at_zero_takes_the_subgradient_zero(compiled):
    """The sparse group lasso's `norm2(W[j])` at a zero row: a feature no example stores
    gets only that penalty, whose subgradient at 0 is 0 (docs/LANGUAGE-NOTES.md), so its row
    stays exactly 0 through a fit (v / norm2(v) there would be NaN); the contrastive loss's
    self pair (a distance of 0) leaves W finite and its predict 0."""
    mod, d = compiled("sgl"), small("sgl")
    X = sp.lil_matrix(d["X"])
    X[:, 5] = 0
    d = dict(d, X=sp.csr_matrix(X))
    t = mod.Trainer(threads=1, epochs=3).fit(**d)
    assert np.isfinite(t.params["W"]).all()
    assert (t.params["W"][5] == 0).all() and np.abs(t.params["W"][:5]).max() > 0
    assert t.predict(**unlabelled("sgl", d))[5] == 0
    mod, d = compiled("contrastive"), small("contrastive")
    t = mod.Trainer(threads=1, epochs=3).fit(**d)
    assert np.isfinite(t.params["W"]).all() and t.predict(**d)[1] == 0


def test_lightfm_bpr_shared_features_take_the_sgd_step(compiled):
    """Where the positive's and the negative's feature rows share a feature, sgd steps it
    by the sum of both reads' gradients. (AdaGrad adds each read's own g^2 and steps each
    read apart there, a documented limitation: docs/LANGUAGE-NOTES.md, "Known limits";
    the one-step test above gives the two rows apart features.)"""
    mod, d = compiled("lfbpr"), small("lfbpr")
    d = dict(d, tu=d["tu"][:1], tp=d["tp"][:1], tn=d["tn"][:1])
    IF = sp.csr_matrix(d["IF"])
    shared = np.intersect1d(rows_of(IF)[d["tp"][0]], rows_of(IF)[d["tn"][0]])
    assert shared.size                              # the data share a feature
    check_one_step(mod, d, lambda p: one_step("lfbpr", p, d, 0.05, "sgd"), "sgd", atol=1e-9)


def test_a_term_that_picks_one_sparse_row_twice(compiled):
    """LightFM-BPR with the negative equal to the positive (`IF[tp[t]]` and `IF[tn[t]]` the
    same row): the loss's gradients through the two reads cancel and the reg's add up, so
    one sgd step is the step on the numpy gradient, in every sync mode. (AdaGrad adds each
    read's own g^2 there: docs/language.md, "Where two accesses meet only for some terms".)"""
    mod, d = compiled("lfbpr"), one_term("lfbpr", small("lfbpr"))
    d["tn"] = d["tp"].copy()
    before, after = check_one_step(mod, d, lambda p: one_step("lfbpr", p, d, 0.05, "sgd"),
                                   "sgd", atol=1e-9)
    assert not np.array_equal(before["EI"], after["EI"])       # the reg moved it


# ---- the API around the specs ----------------------------------------------------------

@pytest.mark.parametrize("name", ["crowd", "isnmf", "hofm3"])
def test_float32_builds(hog_cache_dir, name):
    """dtype="float32": params in single precision, objective() the numpy objective of
    them, one step the float64 step to single precision."""
    mod = hogwild_dsl.load(text=SPECS[name], dtype="float32", cache_dir=hog_cache_dir)
    d = small(name)
    d1 = one_term(name, d)
    check_float32_build(mod, d, lambda p: reference(name, p, d)[0], d1,
                        lambda p, rule: one_step(name, p, d1, 0.05, rule), rules=["sgd"],
                        atol=5e-6)


@pytest.mark.parametrize("name", ["fpmc", "isnmf", "timesvd", "crowd"])
def test_warm_start_save_load_and_pickle_continue_a_fit(compiled, name, tmp_path):
    """Two epochs, then two more from a saved file, from a pickle and in place, each equal
    to four epochs at once (the step schedule, the draws, AdaGrad's sums, the l1 state); the
    last epoch's recorded objective is objective()."""
    d = small(name)
    whole = check_two_fits_continue_one(compiled(name), d, tmp_path)
    assert whole.history[-1]["objective"] == pytest.approx(whole.objective(**d), rel=1e-12)


@pytest.mark.parametrize("name", ["timesvd", "lightfm"])
def test_two_threads_every_sync_mode_near_serial(compiled, name):
    """timeSVD on 4,000 ratings and LightFM on 3,000 entries: 2-thread fits in each sync mode
    and update rule end near the serial fit's objective."""
    rng = np.random.default_rng(5)
    if name == "timesvd":
        n = 4000
        d = dict(tu=rng.integers(0, 60, n), ti=rng.integers(0, 40, n), tb=rng.integers(0, 5, n),
                 y=rng.uniform(1, 5, n), dt=rng.normal(size=n), mu=3.0)
    else:
        r = sp.random(100, 60, density=0.5, random_state=5, format="coo")
        r.data = np.where(r.data < 0.5, -1.0, 1.0)
        d = dict(r=r, UF=sX(rng, 100, 8, 6, dens=0.2), IF=sX(rng, 60, 8, 7, dens=0.2))
    check_two_threads_near_serial(compiled(name), d, step=0.02)


def test_validation_and_patience_keep_the_best_epoch(compiled):
    """Binomial regression with held-out data: each epoch has a validation objective, and
    with patience the params kept are those of the best epoch (its validation objective is
    the held-out objective() of the params returned; the fit stopped at most `patience`
    epochs after it)."""
    mod, d = compiled("binom"), small("binom")
    held = small("binom", seed=1)
    t = mod.Trainer(threads=1, epochs=12, step=0.3, decay=1.0, patience=2).fit(
        **d, validation=held)
    assert all(np.isfinite([h["validation_objective"] for h in t.history]))
    check_patience_kept_the_best(t, held, 2, rel=1e-10)


# ---- regressions of what this round found ----------------------------------------------

def test_a_sampled_index_picking_a_sparse_row_says_what_to_write():
    """LightFM with a sampled negative's features (`IF[j]` for `sample j in item`) was
    refused with the hint "select the row with the index of a 'for' block, e.g. IF[i]",
    which is not what a negative is. The refusal stays (a sampled index picks no sparse
    row), and the hint now names the form that works: the draws given as index data over
    a dim of tuples, as the lfbpr spec does; also for K draws `S[n[q]]`."""
    text = SPECS["lightfm"].replace(
        "for (u, i) in r:\n", "for (u, i) in r:\n    sample j in item\n").replace(
        "    loss logistic(r[u, i] * s)",
        "    let qj = sum(b in IF[j]: IF[j, b] * EI[b])\n"
        "    loss logistic(r[u, i] * s) + logistic(-dot(pu, qj))")
    with pytest.raises(hogwild_dsl.SpecError) as e:
        hogwild_dsl.check(text)
    assert "a sampled index does not select a row of sparse data: 'IF[j]'" in str(e.value)
    assert "data neg[t] : index(item)) read as IF[neg[t]]" in str(e.value)
    assert (e.value.line, e.value.column) == (17, 26)
    many = SPECS["rotate"].replace(
        "data t[triple] : index(entity)",
        "data t[triple] : index(entity)\ndata S[entity, relation] : sparse").replace(
        "    predict -dpos", "    loss sum(q in K: sum(z in S[n[q]]: S[n[q], z] * Rr[z, 0]))\n"
                            "    predict -dpos")
    with pytest.raises(hogwild_dsl.SpecError, match=r"sampled index does not select a row "
                       r"of sparse data: 'S\[n\[q\]\]'(.|\n)*index\(entity\)"):
        hogwild_dsl.check(many)


@pytest.mark.parametrize("delta, shown", [("0", "0"), ("-1", "-1"), ("0.0", "0"),
                                          ("-(0.5)", "-0.5")])
def test_huber_delta_must_be_positive(delta, shown):
    """`huber(z, 0)` checked and trained a loss that is 0 everywhere, and `huber(z, -1)` a
    concave one (delta (|z| - delta / 2) with delta < 0): a number there is now checked."""
    text = SPECS["expectile"].replace("tau * relu(r)^2", f"tau * huber(r, {delta})")
    with pytest.raises(hogwild_dsl.SpecError,
                       match=f"huber's delta must be positive, not {re.escape(shown)}") as e:
        hogwild_dsl.check(text)
    assert (e.value.line, e.value.column) == (11, 25)
    hogwild_dsl.check(SPECS["expectile"].replace("tau * relu(r)^2", "tau * huber(r, 1e-3)"))
    hogwild_dsl.check(SPECS["expectile"].replace("tau * relu(r)^2", "tau * huber(r, tau)"))


def test_numpy_chained_indexing_is_answered_with_the_one_bracket_form():
    """`Conf[wk[o]][c, lab[o]]` (numpy's chained indexing) was "expected ')' or an
    operator, found '['" with the hint "see LANGUAGE.md for the form of each statement"."""
    text = SPECS["crowd"].replace("Conf[wk[o], c, lab[o]]", "Conf[wk[o]][c, lab[o]]")
    with pytest.raises(hogwild_dsl.SpecError) as e:
        hogwild_dsl.check(text)
    assert "a second '[...]' after an index" in str(e.value)
    assert "write Conf[wk[o], c, lab[o]], not Conf[wk[o]][c, lab[o]]" in str(e.value)
    assert (e.value.line, e.value.column) == (12, 58)


@pytest.mark.parametrize("old, new, holder", [
    ("sum(q in K:", "sum(s in K:", "a let of this block"),
    ("sum(q in K:", "sum(h in K:", "data declared on line 6"),
    ("sum(q in K:", "sum(x in K:", "an index of this block's 'for'"),
    ("sum(q in K:", "sum(n in K:", "a sampled index"),
    ("sum(q in K:", "sum(d in K:", "a const declared on line 4"),
])
def test_a_name_in_use_says_what_holds_it(old, new, holder):
    """RotatE's `sum(s in K: ...)` beside `let s = ...` was "the name 's' is already in
    use", which leaves the user to find which of the spec's names it is."""
    text = SPECS["rotate"].replace(old, new)
    text = text.replace("Er[n[q]]", "Er[n[" + new[4] + "]]").replace(
        "Ei[n[q]]", "Ei[n[" + new[4] + "]]")
    with pytest.raises(hogwild_dsl.SpecError,
                       match=re.escape(f"the name '{new[4]}' is already in use ({holder})")):
        hogwild_dsl.check(text)


def test_cli_reads_a_table_of_index_data_one_name_per_column(tmp_path, hog_cache_dir):
    """timeSVD's ratings come as one CSV table (user, item, bin, rating, day offset):
    `--data tu,ti,tb,y,dt=ratings.csv` was "a CSV/text table holds one data item, but 5
    names were given", with no way to say which column is which. Several names now read one
    1-D datum per column, and train saves what a Python fit gets; a count that does not
    match the columns is an error saying so."""
    from conftest import run_hogwildc
    d = small("timesvd")
    write_spec(tmp_path, SPECS, "timesvd")
    (tmp_path / "ratings.csv").write_text("user,item,bin,rating,dt\n" + "".join(
        f"{a},{b},{c},{float(y)!r},{float(t)!r}\n"
        for a, b, c, y, t in zip(d["tu"], d["ti"], d["tb"], d["y"], d["dt"])))
    res = run_hogwildc(tmp_path, "train", "timesvd.hog", "--data", "tu,ti,tb,y,dt=ratings.csv",
                       "--data", "mu=3.0", "--epochs", "3", "--threads", "1", "--out", "p.npz",
                       "-q")
    assert res.returncode == 0, res.stderr
    want = hogwild_dsl.load(text=SPECS["timesvd"], cache_dir=hog_cache_dir).Trainer(
        threads=1, epochs=3).fit(**d)
    assert_saved_params(tmp_path / "p.npz", want)
    res = run_hogwildc(tmp_path, "train", "timesvd.hog", "--data", "tu,ti,tb,y=ratings.csv",
                       "--data", "mu=3.0", "--epochs", "1", "-q")
    assert res.returncode == 1
    assert "the table has 5 columns, but 4 names were given (tu, ti, tb, y)" in res.stderr


def test_an_index_as_a_number_says_how_to_give_its_number(compiled, hog_cache_dir):
    """An ordinal model's expected label, `sum(c in class: c * softmax(z)[c])`, was refused
    with "the index 'c' is not a value" and the hint "indices select entries, e.g. y[c]".
    The refusal stays (an index is a position); the hint now gives the form that works,
    the numbers as data over the dim, which then trains and predicts the expected label.
    (Index data read as a value, `y[i]`, is the integer it holds: docs/LANGUAGE-NOTES.md.)"""
    text = SPECS["tempcal"].replace("predict softmax(z)",
                                    "predict sum(c in class: c * softmax(z)[c])")
    with pytest.raises(hogwild_dsl.SpecError, match=r"data pos\[class\] : real holding 0, 1, "
                       r"2, \.\.\., read as pos\[c\]"):
        hogwild_dsl.check(text)
    text = SPECS["tempcal"].replace("model u9_tempcal", "model u9_tempcal_rank").replace(
        "data y[example] : index(class)", "data y[example] : index(class)\n"
        "data pos[class] : real").replace(
        "loss logsumexp(z) - z[y[i]]",
        "loss logsumexp(z) - z[y[i]] + 0.1 * (sum(c in class: pos[c] * softmax(z)[c]) - y[i])^2"
    ).replace("predict softmax(z)", "predict sum(c in class: pos[c] * softmax(z)[c])")
    mod = hogwild_dsl.load(text=text, cache_dir=hog_cache_dir)
    d = dict(small("tempcal"), pos=np.arange(3.0))
    t = mod.Trainer(threads=1, epochs=3, step=0.05).fit(**d)
    p = params_of(t)
    z = d["Lg"] / p["T"] + p["bc"]
    expected = (smax(z) * d["pos"]).sum(1)
    obj = reference("tempcal", p, d)[0] + 0.1 * ((expected - d["y"]) ** 2).mean()
    assert t.objective(**d) == pytest.approx(obj, rel=1e-12)
    np.testing.assert_allclose(t.predict(Lg=d["Lg"], pos=d["pos"]), expected, rtol=1e-12)


def test_a_reg_on_one_entry_of_a_matrix_names_the_loss_line(compiled, hog_cache_dir):
    """timeSVD penalises its item-by-bin bias at the entry a rating reads (Koren's
    b_{i,Bin(t)}): `reg l2(1e-2) on bit[ti[o], tb[o]] unscaled` was refused with "write
    bit[ti[o]]" only, which penalises the item's whole row. The hint now also names the
    penalty of that one entry at every touch, a loss line, which trains as written."""
    text = SPECS["timesvd"].replace("reg l2(1e-2) on bit[ti[o]]",
                                    "reg l2(1e-2) on bit[ti[o], tb[o]] unscaled")
    with pytest.raises(hogwild_dsl.SpecError) as e:
        hogwild_dsl.check(text)
    assert "a loss line: loss LAMBDA * bit[ti[o], tb[o]]^2" in str(e.value)
    text = SPECS["timesvd"].replace("model u9_timesvd", "model u9_timesvd_entry").replace(
        "reg l2(1e-2) on bit[ti[o]]", "loss 1e-2 * bit[ti[o], tb[o]]^2")
    mod, d = hogwild_dsl.load(text=text, cache_dir=hog_cache_dir), small("timesvd")
    t = mod.Trainer(threads=1, epochs=3, step=0.05).fit(**d)
    p = params_of(t)
    ti, n = d["ti"], d["ti"].size      # the reference's row penalty out, the entry's in
    want = reference("timesvd", p, d)[0] - 1e-2 * sq(p["bit"], each(ti)) / n + \
        1e-2 * (p["bit"][ti, d["tb"]] ** 2).mean()
    assert t.objective(**d) == pytest.approx(want, rel=1e-12)


def test_printed_gradients_name_no_index_twice():
    """`hogwildc check` of the crowd spec printed d/dW[j_X, k_class] as `-(1 / sum(k_class
    in class: ...)) * Conf[wk[o], k_class, lab[o]] * ...` with `sum(j_X in X[it[o]]: ...)`
    inside: the coordinate's own indices and the sums' bound ones shared their names, since
    canonical names start over in each expression. The sums now count on from the
    coordinate's indices; the objective's names are unchanged."""
    from hogwild_dsl.derive import gradients_text
    text = gradients_text(hogwild_dsl.check(SPECS["crowd"]))
    grads = [line.split(" = ", 1) for line in text.splitlines() if "d/d" in line]
    assert len(grads) == 3
    for lhs, rhs in grads:
        for name in re.findall(r"\b([jk]\d*_\w+?)\b(?=[,\]])", lhs):
            assert f"sum({name} in" not in rhs and f"({name} in" not in rhs, (lhs, name)
    assert "d/dW[j_X, k_class] = -(1 / sum(k2_class in class: " in text
    assert "objective = -log(sum(k_class in class: " in text
