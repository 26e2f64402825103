"""More objectives a practitioner writes from LANGUAGE.md and API.md alone (round 2).

Each spec uses a corner of the language the shipped specs and tests/test_user_objectives.py
leave alone: three index data making a tensor entry (CP), a 3-D param read as `V[j, fld[l]]`
with a nested sum over one sparse row (field-aware FM), two blocks over different data sharing
a param, index data selecting dense rows (pairwise ranking), `>= 0`, box, simplex and ball
params, binary data mixing two likelihoods (censoring), `sample n[K] ~ P` with a vector `let`
(CBOW), sparse side features inside an entry block, a vector `predict`, and every scalar
function of the list under names that are C and Python keywords.

For each: `objective()` is the objective written out in numpy (degree split included), one
SGD epoch of a tiny step is N times the finite-difference gradient of `objective()`, and
training ends near an independent optimum (scikit-learn or scipy) of the same objective.
Then the rest of the interface on these user specs: constraints, vector and entry `predict`,
sync modes, save/load, pickle, float32, consts, validation + patience, the CLI with every
data format API.md lists, `analyze` against statistics computed here, and the scikit-learn
estimators with a user's own spec file.
"""
import pickle
import warnings

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from scipy.optimize import check_grad, minimize

import hogwild_dsl
from conftest import run_hogwildc
from user_objective_checks import (assert_saved_params, check_patience_kept_the_best,
                                   check_sync_modes_agree, float32_params, huber, lg, run_python,
                                   saved_loaded_pickled, scatter, sgd_epoch_against_numeric, sig,
                                   softplus, sparse_X, support, unpack, write_spec)

SPECS = {
    "cp": """
model u2_cp
dim triple, mode_a, mode_b, mode_c
const rank = 3
data ia[triple] : index(mode_a)
data ib[triple] : index(mode_b)
data ic[triple] : index(mode_c)
data val[triple] : real
param A[mode_a, rank] ~ normal(0, 0.5)
param B[mode_b, rank] ~ normal(0, 0.5)
param C[mode_c, rank] ~ normal(0, 0.5)
for t in triple:
    let fit = sum(A[ia[t]] * B[ib[t]] * C[ic[t]])
    loss (fit - val[t])^2
    reg l2(0.01) on A[ia[t]], B[ib[t]], C[ic[t]]
    predict fit
train step 0.05, decay 0.995, epochs 400
""",
    "ffm": """
model u2_ffm
dim example, feature, field
const k = 3
data X[example, feature] : sparse
data y[example] : sign
data fld[feature] : index(field)
param w0 = 0
param w[feature] = 0
param V[feature, field, k] ~ normal(0, 0.1)
for i in example:
    let allpairs = sum(j in X[i]: sum(l in X[i]: X[i, j] * X[i, l] * dot(V[j, fld[l]], V[l, fld[j]])))
    let diag = sum(j in X[i]: X[i, j]^2 * sqnorm(V[j, fld[j]]))
    let z = w0 + dot(X[i], w) + 0.5 * (allpairs - diag)
    loss logistic(y[i] * z)
    reg l2(0.01) on w[X[i]]
    reg l2(0.1) on V[X[i]]
    predict sigmoid(z)
train step 0.3, decay 0.99, epochs 300
""",
    "multitask": """
model u2_multitask
dim reg_ex, cls_ex, feature
data Xr[reg_ex, feature] : sparse
data yr[reg_ex] : real
data Xc[cls_ex, feature] : sparse
data yc[cls_ex] : sign
param w[feature] = 0
param br = 0
param bc = 0
for i in reg_ex:
    loss 0.5 * (dot(Xr[i], w) + br - yr[i])^2
    reg l2(0.1) on w[Xr[i]]
    predict dot(Xr[i], w) + br
for j in cls_ex:
    loss logistic(yc[j] * (dot(Xc[j], w) + bc))
train step 0.1, decay 0.97, epochs 80
""",
    "rankpair": """
model u2_rankpair
dim pair, doc, feature
data X[doc, feature] : dense
data better[pair] : index(doc)
data worse[pair] : index(doc)
param w[feature] = 0
for p in pair:
    let margin = dot(X[better[p]], w) - dot(X[worse[p]], w)
    loss sqhinge(margin)
    reg l2(0.5) on w
    predict margin
train step 0.01, decay 0.97, epochs 80
""",
    "modhuber": """
model u2_modhuber
dim example, feature
data X[example, feature] : sparse
data y[example] : sign
param w[feature] = 0
param b = 0
for i in example:
    let z = y[i] * (dot(X[i], w) + b)
    loss 2 * huber(relu(1 - z), 2)
    reg l2(0.5) on w[X[i]]
    predict dot(X[i], w) + b
train step 0.1, decay 0.97, epochs 80
""",
    "nnls": """
model u2_nnls
dim example, feature, extra
data X[example, feature] : dense
data Z[example, extra] : dense
data y[example] : real
param w[feature] >= 0
param v[extra] in [-0.5, 0.25] = 0
for i in example:
    loss (dot(X[i], w) + dot(Z[i], v) - y[i])^2
    predict dot(X[i], w) + dot(Z[i], v)
train step 0.01, decay 0.995, epochs 600
""",
    "simplex": """
model u2_simplex
dim example, group, source
data F[example, source] : dense
data g[example] : index(group)
data y[example] : real
param A[group, source] in simplex = uniform
param M[group, source] in ball(0.5) ~ normal(0, 0.1)
for i in example:
    loss (dot(F[i], A[g[i]]) + dot(F[i], M[g[i]]) - y[i])^2
    predict dot(F[i], A[g[i]])
train step 0.05, decay 0.98, epochs 150
""",
    "censored": """
model u2_censored
dim example, feature
data X[example, feature] : dense
data y[example] : real
data cens[example] : binary        # 1: y is a lower bound (right-censored)
param w[feature] = 0
param b = 0
for i in example:
    let eta = dot(X[i], w) + b
    let r = y[i] - eta
    loss (1 - cens[i]) * (r + 2 * softplus(-r)) + cens[i] * log1p(exp(r))
    reg l2(1.0) on w
    predict eta
train step 0.05, decay 0.98, epochs 100
""",
    "cbow": """
model u2_cbow
dim position, word
const k = 6
const K = 2
data ctx[position, word] : sparse
data target[position] : index(word)
data freq[word] : real
param In[word, k] ~ normal(0, 0.1)
param Out[word, k] ~ normal(0, 0.1)
for t in position:
    sample n[K] in word ~ freq
    let h = sum(j in ctx[t]: ctx[t, j] * In[j])
    loss logistic(dot(h, Out[target[t]])) + sum(s in K: logistic(-dot(h, Out[n[s]])))
    reg l2(1e-3) on In[ctx[t]]
    predict sigmoid(dot(h, Out[target[t]]))
train step 0.2, decay 0.99, epochs 200
""",
    "sidemf": """
model u2_sidemf
dim user, item, ufeat
const rank = 3
data r[user, item] : sparse
data Fu[user, ufeat] : sparse
param P[user, rank] ~ normal(0, 0.1)
param S[ufeat, rank] ~ normal(0, 0.1)
param Q[item, rank] ~ normal(0, 0.1)
param bi[item] = 0
for (u, v) in r:
    let pu = P[u] + sum(j in Fu[u]: Fu[u, j] * S[j])
    let pred = dot(pu, Q[v]) + bi[v]
    loss (pred - r[u, v])^2
    reg l2(0.05) on P[u], Q[v], S[Fu[u]]
    predict pred
train step 0.02, decay 0.995, epochs 600
""",
    "multiridge": """
model u2_multiridge
dim example, feature, out
data X[example, feature] : sparse
data Y[example, out] : dense
param W[feature, out] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j])
    loss sqnorm(z - Y[i])
    reg l2(2.0) on W[X[i]]
    predict z
train step 0.2, decay 0.97, epochs 100
""",
    # every scalar function and reduction of the list, deep lets, `^` chains, unary minus,
    # under names that are keywords of C, Cython or Python (the generated code must not care)
    "kitchen": """
model u2_kitchen_sink_with_a_rather_long_model_name
dim class, feature_dimension_with_a_very_long_name_indeed
const K3 = 3
data double[class, feature_dimension_with_a_very_long_name_indeed] : dense
data losses[class] : real
data float[class] : sign
param int[feature_dimension_with_a_very_long_name_indeed] ~ normal(0, 0.3)
param L[K3] ~ uniform(-0.5, 0.5)
param np = 0.2
for def in class:
    let a = dot(double[def], int)
    let self = a + np
    let c = sigmoid(self) * 2 - 1 + softplus(-self) / 3
    let d2 = abs(c) + exp(-self^2) + log(1 + self^2) + log1p(sqrt(1 + a^2))
    let e = relu(a) - relu(-a) + max(a, np) - min(a, np)
    let return = hinge(float[def] * self) + sqhinge(float[def] * a) + logistic(float[def] * c)
    let struct = huber(self - losses[def], 0.7) + 0.1 * (norm1(double[def] * int) + norm2(L) + sqnorm(L - np) + sum(L))
    let nogil = sum(k in K3: L[k] * L[k] * (1 + a)) / 2 ^ 2 ^ 1 - -np
    loss d2 + e + return + struct + 0.05 * nogil^2
    reg l1(0.01) on L
    reg l2(0.02) on int
    predict sign(self)
train step 0.01, decay 0.99, epochs 5
""",
}

# a long flat sum and a tower of lets that each read the previous one twice (audit F6, F7)
LONG_TERMS, LONG_LETS = 120, 12
SPECS["long"] = """
model u2_long
dim example, feature
data X[example, feature] : dense
data y[example] : real
param w[feature] ~ normal(0, 0.3)
for i in example:
    let a = dot(X[i], w)
    let t0 = a * sigmoid(a)
""" + "".join(f"    let t{k} = t{k - 1} * sigmoid(t{k - 1})\n" for k in range(1, LONG_LETS)) + \
    f"    loss (t{LONG_LETS - 1} - y[i])^2 + " + \
    " + ".join(f"0.001 * softplus(a - {k / 10})" for k in range(LONG_TERMS)) + "\n"


def make_data(name):
    rng = np.random.default_rng(11)
    if name == "cp":
        n = 160
        A, B, C = rng.normal(size=(8, 3)), rng.normal(size=(7, 3)), rng.normal(size=(6, 3))
        ia, ib, ic = rng.integers(0, 8, n), rng.integers(0, 7, n), rng.integers(0, 6, n)
        ia[:8], ib[:7], ic[:6] = np.arange(8), np.arange(7), np.arange(6)
        val = (A[ia] * B[ib] * C[ic]).sum(1) + 0.1 * rng.normal(size=n)
        return dict(ia=ia, ib=ib, ic=ic, val=val)
    if name == "ffm":
        X = sparse_X(150, 12, 1, density=0.2, every_column=False)
        fld = rng.integers(0, 3, 12)
        fld[:3] = np.arange(3)
        y = np.sign(np.asarray(X @ rng.normal(size=12)).ravel() - 0.5 + 0.5 * rng.normal(size=150))
        return dict(X=X, y=np.where(y == 0, 1.0, y), fld=fld)
    if name == "multitask":
        Xr, Xc = sparse_X(120, 15, 2, every_column=False), sparse_X(100, 15, 3, every_column=False)
        w = rng.normal(size=15)
        yr = np.asarray(Xr @ w).ravel() + 0.3 + 0.2 * rng.normal(size=120)
        yc = np.sign(np.asarray(Xc @ w).ravel() - 0.2 + 0.5 * rng.logistic(size=100))
        return dict(Xr=Xr, yr=yr, Xc=Xc, yc=np.where(yc == 0, 1.0, yc))
    if name == "rankpair":
        X = rng.normal(size=(40, 8))
        score = X @ rng.normal(size=8) + 0.5 * rng.normal(size=40)
        a, b = rng.integers(0, 40, 200), rng.integers(0, 40, 200)
        a, b = a[a != b], b[a != b]
        hi = score[a] > score[b]
        return dict(X=X, better=np.where(hi, a, b), worse=np.where(hi, b, a))
    if name == "modhuber":
        X = sparse_X(200, 20, 4, every_column=False)
        y = np.sign(np.asarray(X @ rng.normal(size=20)).ravel() + 0.3 * rng.logistic(size=200))
        return dict(X=X, y=np.where(y == 0, 1.0, y))
    if name == "nnls":
        X, Z = rng.normal(size=(150, 6)), rng.normal(size=(150, 3))
        w = np.array([1.0, -0.5, 0.3, -1.0, 0.8, 0.0])
        v = np.array([-1.0, 0.1, 0.6])
        return dict(X=X, Z=Z, y=X @ w + Z @ v + 0.1 * rng.normal(size=150))
    if name == "simplex":
        F, g = rng.normal(size=(200, 4)), rng.integers(0, 3, 200)
        A = rng.dirichlet(np.ones(4), size=3)
        return dict(F=F, g=g, y=(F * (1.5 * A[g])).sum(1) + 0.1 * rng.normal(size=200))
    if name == "censored":
        X = rng.normal(size=(200, 5))
        t = X @ rng.normal(size=5) + 1 + rng.logistic(size=200) * 0.5
        c = rng.normal(size=200) + 1.5
        return dict(X=X, y=np.minimum(t, c), cens=(c < t).astype(float))
    if name == "cbow":
        target = rng.integers(0, 20, 150)
        rows, cols, vals = [], [], []
        for p in range(150):
            ws = np.unique((target[p] + rng.integers(-2, 3, 3)) % 20)
            rows += [p] * len(ws)
            cols += list(ws)
            vals += [1.0 / len(ws)] * len(ws)
        ctx = sp.csr_matrix((vals, (rows, cols)), shape=(150, 20))
        return dict(ctx=ctx, target=target, freq=np.bincount(target, minlength=20) ** 0.75 + 0.1)
    if name == "sidemf":
        Fu = sparse_X(20, 6, 5, density=0.3, every_column=False)
        m = sp.random(20, 15, density=0.35, random_state=6, format="coo")
        U = rng.normal(size=(20, 3)) + np.asarray(Fu @ rng.normal(size=(6, 3)))
        V = rng.normal(size=(15, 3))
        vals = (U[m.row] * V[m.col]).sum(1) + 0.1 * rng.normal(size=m.nnz)
        return dict(r=sp.coo_matrix((vals, (m.row, m.col)), shape=(20, 15)), Fu=Fu)
    if name == "multiridge":
        X = sparse_X(150, 10, 7, every_column=False)
        Y = np.asarray(X @ rng.normal(size=(10, 3))) + 0.2 * rng.normal(size=(150, 3))
        return dict(X=X, Y=Y)
    if name == "long":
        X = rng.normal(size=(50, 3))
        return dict(X=X, y=0.3 * np.tanh(X @ rng.normal(size=3)))
    if name == "kitchen":
        s = np.sign(rng.normal(size=60))
        return {"double": rng.normal(size=(60, 4)) * 0.7, "losses": rng.normal(size=60),
                "float": np.where(s == 0, 1.0, s)}
    raise KeyError(name)


def n_terms(name, d):
    if name == "multitask":
        return d["Xr"].shape[0] + d["Xc"].shape[0]
    first = {"cp": "val", "rankpair": "better", "cbow": "target", "sidemf": "r",
             "kitchen": "double", "long": "y"}.get(name, "y" if name != "multiridge" else "X")
    return d[first].nnz if sp.issparse(d[first]) and name == "sidemf" else d[first].shape[0]


def ffm_pairs(X, fld):
    """(row, j, l, x_j * x_l) for every pair j < l of a row's nonzeros."""
    X = sp.csr_matrix(X)
    out = []
    for i in range(X.shape[0]):
        cols = X.indices[X.indptr[i]:X.indptr[i + 1]]
        vals = X.data[X.indptr[i]:X.indptr[i + 1]]
        for a in range(len(cols)):
            for b in range(a + 1, len(cols)):
                out.append((i, cols[a], cols[b], vals[a] * vals[b]))
    i, j, l, c = (np.array(v) for v in zip(*out))
    return i, j, l, c


def objective(name, p, d):
    """The spec's objective written out by hand, the degree split included: a penalty on a
    coordinate touched by some term of its block counts once in full, over N terms. For cbow
    the expectation over the negative draws."""
    N = n_terms(name, d)
    if name == "cp":
        A, B, C = p["A"], p["B"], p["C"]
        fit = (A[d["ia"]] * B[d["ib"]] * C[d["ic"]]).sum(1)
        pen = sum((M[np.unique(ix)] ** 2).sum()
                  for M, ix in ((A, d["ia"]), (B, d["ib"]), (C, d["ic"])))
        return np.mean((fit - d["val"]) ** 2) + 0.01 * pen / N
    if name == "ffm":
        V, w, fld = p["V"], p["w"], d["fld"]
        i, j, l, c = ffm_pairs(d["X"], fld)
        pair = np.bincount(i, c * (V[j, fld[l]] * V[l, fld[j]]).sum(1), minlength=N)
        z = p["w0"] + d["X"] @ w + pair
        s = support(d["X"])
        return np.mean(lg(d["y"] * z)) + (0.01 * (w[s] ** 2).sum() + 0.1 * (V[s] ** 2).sum()) / N
    if name == "multitask":
        w = p["w"]
        reg = 0.5 * (d["Xr"] @ w + p["br"] - d["yr"]) ** 2
        cls = lg(d["yc"] * (d["Xc"] @ w + p["bc"]))
        s = support(d["Xr"])           # only the first block has a reg
        return (reg.sum() + cls.sum() + 0.1 * (w[s] ** 2).sum()) / N
    if name == "rankpair":
        w = p["w"]
        m = (d["X"][d["better"]] - d["X"][d["worse"]]) @ w
        return np.mean(np.maximum(0, 1 - m) ** 2) + 0.5 * w @ w / N
    if name == "modhuber":
        w = p["w"]
        z = d["y"] * (d["X"] @ w + p["b"])
        mh = np.where(z >= -1, np.maximum(0, 1 - z) ** 2, -4 * z)   # scikit-learn's modified_huber
        s = support(d["X"])
        return np.mean(mh) + 0.5 * (w[s] ** 2).sum() / N
    if name == "nnls":
        return np.mean((d["X"] @ p["w"] + d["Z"] @ p["v"] - d["y"]) ** 2)
    if name == "simplex":
        g = d["g"]
        return np.mean(((d["F"] * (p["A"][g] + p["M"][g])).sum(1) - d["y"]) ** 2)
    if name == "censored":
        w = p["w"]
        r = d["y"] - d["X"] @ w - p["b"]
        c = d["cens"]
        return np.mean((1 - c) * (r + 2 * softplus(-r)) + c * softplus(r)) + w @ w / N
    if name == "cbow":
        In, Out = p["In"], p["Out"]
        h = np.asarray(d["ctx"] @ In)
        prob = d["freq"] / d["freq"].sum()
        pos = lg((h * Out[d["target"]]).sum(1))
        neg = 2 * lg(-(h @ Out.T)) @ prob
        return np.mean(pos + neg) + 1e-3 * (In[support(d["ctx"])] ** 2).sum() / N
    if name == "sidemf":
        r, Fu = sp.coo_matrix(d["r"]), sp.csr_matrix(d["Fu"])
        P, S, Q = p["P"], p["S"], p["Q"]
        pu = P + np.asarray(Fu @ S)
        pred = (pu[r.row] * Q[r.col]).sum(1) + p["bi"][r.col]
        users, items = np.unique(r.row), np.unique(r.col)
        pen = (P[users] ** 2).sum() + (Q[items] ** 2).sum() + (S[support(Fu[users])] ** 2).sum()
        return np.mean((pred - r.data) ** 2) + 0.05 * pen / N
    if name == "multiridge":
        W = p["W"]
        return (((d["X"] @ W - d["Y"]) ** 2).sum() + 2.0 * (W[support(d["X"])] ** 2).sum()) / N
    if name == "long":
        a = d["X"] @ p["w"]
        t = a * sig(a)
        for _ in range(1, LONG_LETS):
            t = t * sig(t)
        return np.mean((t - d["y"]) ** 2 + sum(0.001 * softplus(a - k / 10)
                                               for k in range(LONG_TERMS)))
    if name == "kitchen":
        x, t, s = d["double"], d["losses"], d["float"]
        w, L, q = p["int"], p["L"], p["np"]
        a = x @ w
        b = a + q
        c = sig(b) * 2 - 1 + softplus(-b) / 3
        d2 = np.abs(c) + np.exp(-b ** 2) + np.log(1 + b ** 2) + np.log1p(np.sqrt(1 + a ** 2))
        e = np.maximum(a, 0) - np.maximum(-a, 0) + np.maximum(a, q) - np.minimum(a, q)
        ret = np.maximum(0, 1 - s * b) + np.maximum(0, 1 - s * a) ** 2 + lg(s * c)
        struct = huber(b - t, 0.7) + 0.1 * (np.abs(x * w).sum(1) + np.sqrt(L @ L)
                                            + ((L - q) ** 2).sum() + L.sum())
        nogil = (L * L * (1 + a[:, None])).sum(1) / 2 ** (2 ** 1) + q
        return np.mean(d2 + e + ret + struct + 0.05 * nogil ** 2) \
            + (0.01 * np.abs(L).sum() + 0.02 * (w ** 2).sum()) / N
    raise KeyError(name)


# ---- references -------------------------------------------------------------------------

SHAPES = {
    "cp": {"A": (8, 3), "B": (7, 3), "C": (6, 3)},
    "ffm": {"w0": (), "w": (12,), "V": (12, 3, 3)},
    "multitask": {"w": (15,), "br": (), "bc": ()},
    "modhuber": {"w": (20,), "b": ()},
    "simplex": {"A": (3, 4), "M": (3, 4)},
    "censored": {"w": (5,), "b": ()},
    "sidemf": {"P": (20, 3), "S": (6, 3), "Q": (15, 3), "bi": (15,)},
}


def pack(grads, shapes):
    return np.concatenate([np.asarray(grads[k], float).ravel() for k in shapes])


def hand_gradient(name, d):
    """The gradient of objective() written out, for the references that are too large for
    finite differences (checked against them in test_hand_gradients)."""
    shapes, N = SHAPES[name], n_terms(name, d)
    if name == "cp":
        ia, ib, ic = d["ia"], d["ib"], d["ic"]

        def grad(q):
            p = unpack(q, shapes)
            A, B, C = p["A"], p["B"], p["C"]
            g = (2 * ((A[ia] * B[ib] * C[ic]).sum(1) - d["val"]) / N)[:, None]
            out = {}
            for k, M, ix, rest in (("A", A, ia, B[ib] * C[ic]), ("B", B, ib, A[ia] * C[ic]),
                                   ("C", C, ic, A[ia] * B[ib])):
                touched = np.zeros(len(M), bool)
                touched[ix] = True
                out[k] = scatter(M.shape, ix, g * rest) + 0.02 * M * touched[:, None] / N
            return pack(out, shapes)
        return grad
    if name == "ffm":
        fld, X, y = d["fld"], d["X"], d["y"]
        i, j, l, c = ffm_pairs(X, fld)
        s = np.zeros(12, bool)
        s[support(X)] = True

        def grad(q):
            p = unpack(q, shapes)
            V, w = p["V"], p["w"]
            pair = np.bincount(i, c * (V[j, fld[l]] * V[l, fld[j]]).sum(1), minlength=N)
            z = p["w0"] + X @ w + pair
            gz = -y * sig(-y * z) / N
            gc = (gz[i] * c)[:, None]
            gV = scatter(V.shape, (j, fld[l]), gc * V[l, fld[j]])
            gV += scatter(V.shape, (l, fld[j]), gc * V[j, fld[l]])
            gV += 0.2 * V * s[:, None, None] / N
            return pack({"w0": gz.sum(), "w": X.T @ gz + 0.02 * w * s / N, "V": gV}, shapes)
        return grad
    if name == "sidemf":
        r, Fu = sp.coo_matrix(d["r"]), sp.csr_matrix(d["Fu"])
        u, v = r.row, r.col
        users = np.zeros(20, bool)
        users[u] = True
        items = np.zeros(15, bool)
        items[v] = True
        feats = np.zeros(6, bool)
        feats[support(Fu[np.flatnonzero(users)])] = True

        def grad(q):
            p = unpack(q, shapes)
            P, S, Q = p["P"], p["S"], p["Q"]
            pu = P + np.asarray(Fu @ S)
            g = 2 * ((pu[u] * Q[v]).sum(1) + p["bi"][v] - r.data) / N
            gpu = scatter(P.shape, u, g[:, None] * Q[v])
            return pack({"P": gpu + 0.1 * P * users[:, None] / N,
                         "S": np.asarray(Fu.T @ gpu) + 0.1 * S * feats[:, None] / N,
                         "Q": scatter(Q.shape, v, g[:, None] * pu[u]) + 0.1 * Q * items[:, None] / N,
                         "bi": scatter(15, v, g)}, shapes)
        return grad
    return None


def reference(name, d):
    """The best objective value an independent solver finds for the same problem."""
    warnings.filterwarnings("ignore")
    if name == "multiridge":
        from sklearn.linear_model import Ridge
        # N * objective = |XW - Y|^2 + 2 |W|^2: Ridge's objective with alpha = 2
        W = Ridge(alpha=2.0, fit_intercept=False, solver="cholesky").fit(d["X"], d["Y"]).coef_.T
        return objective(name, {"W": W}, d)
    if name == "rankpair":
        from sklearn.svm import LinearSVC
        # N * objective = sum sqhinge(w.(x_b - x_w)) + 0.5 |w|^2: LinearSVC's primal with C = 1;
        # the differences are given twice (with mirrored labels), so C = 1/2
        D = d["X"][d["better"]] - d["X"][d["worse"]]
        sv = LinearSVC(C=0.5, loss="squared_hinge", fit_intercept=False, tol=1e-12,
                       max_iter=10 ** 6).fit(np.r_[D, -D], np.r_[np.ones(len(D)), -np.ones(len(D))])
        return objective(name, {"w": sv.coef_.ravel()}, d)
    if name == "nnls":
        from scipy.optimize import lsq_linear
        lo = np.r_[np.zeros(6), np.full(3, -0.5)]
        hi = np.r_[np.full(6, np.inf), np.full(3, 0.25)]
        x = lsq_linear(np.c_[d["X"], d["Z"]], d["y"], bounds=(lo, hi), tol=1e-12).x
        return objective(name, {"w": x[:6], "v": x[6:]}, d)
    shapes = SHAPES[name]
    size = sum(int(np.prod(s)) for s in shapes.values())

    def f(q):
        return objective(name, unpack(q, shapes), d)
    if name == "simplex":
        cons = [{"type": "eq", "fun": lambda q, g=g: q[4 * g:4 * g + 4].sum() - 1}
                for g in range(3)]
        cons += [{"type": "ineq", "fun": lambda q, g=g: 0.25 - q[12 + 4 * g:16 + 4 * g] @ q[12 + 4 * g:16 + 4 * g]}
                 for g in range(3)]
        x0 = np.r_[np.full(12, 0.25), np.zeros(12)]
        return minimize(f, x0, method="SLSQP", bounds=[(0, 1)] * 12 + [(None, None)] * 12,
                        constraints=cons, options=dict(maxiter=5000, ftol=1e-14)).fun
    grad = hand_gradient(name, d)
    rng = np.random.default_rng(3)
    starts = {"cp": 2, "ffm": 2, "sidemf": 1}.get(name)    # non-convex: random starts
    x0s = [rng.normal(0, 0.3, size) for _ in range(starts)] if starts else [np.zeros(size)]
    return min(minimize(f, x0, jac=grad, method="L-BFGS-B",
                        options=dict(maxiter=2000, maxfun=10 ** 6)).fun for x0 in x0s)


# ---- tests ------------------------------------------------------------------------------

def deterministic(name, d):
    """cbow with all its negative weight on one word, so that every draw is certain and
    objective() is exact."""
    if name == "cbow":
        d = dict(d, freq=np.eye(20)[3])
    return d


@pytest.mark.parametrize("name", sorted(SPECS))
def test_objective_is_the_formula(compiled, name):
    mod = compiled(name)
    d = deterministic(name, make_data(name))
    for epochs in (0, 3):
        t = mod.Trainer(threads=1, seed=0, epochs=epochs).fit(**d)
        assert t.objective(**d) == pytest.approx(objective(name, t.params, d), rel=1e-10)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_sgd_step_is_the_gradient(compiled, name):
    """One epoch of step h moves the params by h * (sum of the term gradients) = h * N *
    grad(objective), at a point off every kink: checked against central differences of
    objective(). A simplex row moves along the simplex (the gradient minus its row mean);
    a coordinate on an active bound is left out."""
    mod = compiled(name)
    d = deterministic(name, make_data(name))
    start, sgd, numeric = sgd_epoch_against_numeric(mod, d, n_terms(name, d), h=1e-7, step=0.005)
    for k in start:
        ref = numeric[k]
        if name == "simplex" and k == "A":
            assert np.all(start[k] > 1e-6)
            ref = ref - ref.mean(1, keepdims=True)
        inside = np.ones(ref.shape, bool)
        if name == "nnls":
            inside = start[k] > 1e-6 if k == "w" else (start[k] > -0.5 + 1e-6) & (start[k] < 0.25 - 1e-6)
        assert inside.sum() >= 3 or inside.all(), (name, k)
        scale = np.abs(ref).max() + 1e-3
        assert np.abs(sgd[k] - ref)[inside].max() <= 2e-4 * scale, (name, k)


# non-convex: the best of three seeds (SGD) against the best of a few L-BFGS starts
NONCONVEX = {"cp", "ffm", "sidemf"}
TOLERANCE = {"cp": 0.05, "ffm": 0.05, "sidemf": 0.05}


@pytest.mark.parametrize("name", sorted(set(SPECS) - {"kitchen", "cbow", "long"}))
def test_reaches_reference_optimum(compiled, name):
    mod = compiled(name)
    d = make_data(name)
    seeds = (0, 1, 2) if name in NONCONVEX else (0,)
    ours = min(objective(name, mod.Trainer(threads=1, seed=s).fit(**d).params, d) for s in seeds)
    ref = reference(name, d)
    assert ours <= ref * (1 + TOLERANCE.get(name, 0.02)) + 1e-4, (name, ours, ref)


@pytest.mark.parametrize("name", ["cp", "ffm", "sidemf"])
def test_hand_gradients(name):
    d = make_data(name)
    size = sum(int(np.prod(s)) for s in SHAPES[name].values())
    x = np.random.default_rng(5).normal(0, 0.3, size)
    grad = hand_gradient(name, d)
    err = check_grad(lambda q: objective(name, unpack(q, SHAPES[name]), d), grad, x)
    assert err <= 1e-5 * (np.linalg.norm(grad(x)) + 1e-3)


def test_cbow_expected_loss_falls(compiled):
    """With real negative sampling the trained expected objective is far below the start's,
    and objective()'s one-draw estimates average to the expectation."""
    mod = compiled("cbow")
    d = make_data("cbow")
    start = objective("cbow", mod.Trainer(threads=1, seed=0, epochs=0).fit(**d).params, d)
    t = mod.Trainer(threads=1, seed=0).fit(**d)
    end = objective("cbow", t.params, d)
    assert end < 0.6 * start, (start, end)
    estimates = []                 # one draw per term from the stream of each seed
    for seed in range(10):
        other = mod.Trainer(threads=1, seed=seed, epochs=0).fit(**d)
        for k, v in t.params.items():
            other.params[k][...] = v
        estimates.append(other.objective(**d))
    # unbiased: one estimate's sd is about 0.07 here, so the mean of ten is within 0.07
    assert np.mean(estimates) == pytest.approx(end, abs=0.07)
    assert np.std(estimates) > 0


def test_constraints_hold_and_bind(compiled):
    d = make_data("nnls")
    t = compiled("nnls").Trainer(threads=2, seed=0).fit(**d)
    w, v = t.params["w"], t.params["v"]
    assert w.min() >= 0 and v.min() >= -0.5 and v.max() <= 0.25
    from scipy.optimize import lsq_linear
    x = lsq_linear(np.c_[d["X"], d["Z"]], d["y"], tol=1e-12,
                   bounds=(np.r_[np.zeros(6), np.full(3, -0.5)], np.r_[np.full(6, np.inf), np.full(3, 0.25)])).x
    np.testing.assert_allclose(np.r_[w, v], x, atol=0.02)
    assert x[1] < 1e-9 and x[3] < 1e-9 and x[6] < -0.5 + 1e-9    # the bounds bind at the optimum
    assert v[0] == -0.5         # every term pushes v[0] below -0.5: the projection holds it there
    d = make_data("simplex")
    t = compiled("simplex").Trainer(threads=2, seed=0).fit(**d)
    A, M = t.params["A"], t.params["M"]
    assert A.min() >= 0
    np.testing.assert_allclose(A.sum(1), 1.0, atol=1e-12)
    assert np.linalg.norm(M, axis=1).max() <= 0.5 + 1e-12
    np.testing.assert_allclose(t.predict(F=d["F"], g=d["g"]), (d["F"] * A[d["g"]]).sum(1))


def test_vector_and_entry_predict(compiled):
    d = make_data("multiridge")
    t = compiled("multiridge").Trainer(threads=1, seed=0).fit(**d)
    p = t.predict(X=d["X"])
    assert p.shape == (150, 3)
    np.testing.assert_allclose(p, d["X"] @ t.params["W"], rtol=1e-12, atol=1e-12)
    d = make_data("sidemf")
    t = compiled("sidemf").Trainer(threads=1, seed=0, epochs=20).fit(**d)
    r = sp.coo_matrix(d["r"])
    order = np.random.default_rng(0).permutation(r.nnz)      # a COO's own order is kept
    shuffled = sp.coo_matrix((r.data[order], (r.row[order], r.col[order])), shape=r.shape)
    P, S, Q, bi = (t.params[k] for k in ("P", "S", "Q", "bi"))
    pu = P + np.asarray(sp.csr_matrix(d["Fu"]) @ S)
    expect = (pu[shuffled.row] * Q[shuffled.col]).sum(1) + bi[shuffled.col]
    np.testing.assert_allclose(t.predict(r=shuffled, Fu=d["Fu"]), expect, rtol=1e-12, atol=1e-12)
    d = make_data("multitask")        # predict reads only the predicting block's data
    t = compiled("multitask").Trainer(threads=1, seed=0, epochs=5).fit(**d)
    np.testing.assert_allclose(t.predict(Xr=d["Xr"]), d["Xr"] @ t.params["w"] + t.params["br"],
                               rtol=1e-12, atol=1e-12)
    d = make_data("kitchen")
    t = compiled("kitchen").Trainer(threads=1, seed=0).fit(**d)
    x = {k: v for k, v in d.items() if k != "float"}
    np.testing.assert_array_equal(t.predict(**x), np.sign(d["double"] @ t.params["int"] + t.params["np"]))


@pytest.mark.parametrize("name", ["cp", "ffm", "multitask", "censored"])
def test_api_round_trip(compiled, name, tmp_path):
    """threads and sync modes agree, warm start continues, save/load and pickle keep it."""
    mod = compiled(name)
    d = make_data(name)
    check_sync_modes_agree(mod, d, epochs=8)
    one = mod.Trainer(threads=1, seed=0, epochs=4).fit(**d)
    value = one.objective(**d)
    before = {k: v.copy() for k, v in one.params.items()}
    one.step = 1e-9
    one.fit(**d)                                   # warm start: continues from the params
    for k, v in one.params.items():
        np.testing.assert_allclose(v, before[k], atol=1e-6)
    assert one.objective(**d) == pytest.approx(value, rel=1e-6)
    back, again = saved_loaded_pickled(mod, one, tmp_path / "m.npz")
    value = one.objective(**d)
    assert back.objective(**d) == pytest.approx(value, rel=1e-12)
    assert again.objective(**d) == pytest.approx(value, rel=1e-12)


def test_float32_user_spec(hog_cache_dir):
    d = make_data("cp")
    mod32 = hogwild_dsl.load(text=SPECS["cp"], dtype="float32", cache_dir=hog_cache_dir)
    t = mod32.Trainer(threads=1, seed=0, epochs=30).fit(**d)
    params = float32_params(t)
    assert t.objective(**d) == pytest.approx(objective("cp", params, d), rel=1e-5)
    start = objective("cp", mod32.Trainer(threads=1, seed=0, epochs=0).fit(**d).params, d)
    assert objective("cp", params, d) < 0.5 * start


def test_consts_override(load_spec):
    d = make_data("cp")
    mod = load_spec(text=SPECS["cp"], consts={"rank": 2})
    t = mod.Trainer(threads=1, seed=0, epochs=5).fit(**d)
    assert t.params["A"].shape == (8, 2) and t.params["C"].shape == (6, 2)
    assert t.objective(**d) == pytest.approx(objective("cp", t.params, d), rel=1e-10)
    for bad in ({"rank": 0}, {"rank": 2.5}, {"rnak": 2}):
        with pytest.raises(hogwild_dsl.SpecError) as err:
            load_spec(text=SPECS["cp"], consts=bad)
        assert err.value.line is not None


def test_validation_and_patience(compiled):
    """Held-out objective per epoch; with patience the best epoch's params are kept."""
    d = make_data("modhuber")
    train = {k: v[:120] for k, v in d.items()}
    held = {k: v[120:] for k, v in d.items()}
    mod = compiled("modhuber")
    t = mod.Trainer(threads=1, seed=0, epochs=40, step=3.0, decay=1.0, patience=3)
    t.fit(**train, validation=held)
    best = check_patience_kept_the_best(t, held, 3, epochs=40)
    assert t.history[best]["validation_objective"] == pytest.approx(objective("modhuber", t.params, held), rel=1e-12)


# ---- the command line, with the data files a user has -----------------------------------

@pytest.fixture
def cli(hog_cache_dir, tmp_path):
    """`hogwildc ARGS` in tmp_path, which must succeed: its stdout."""
    def run(*args):
        res = run_hogwildc(tmp_path, *args)
        assert res.returncode == 0, res.stderr
        return res.stdout
    return run


def spec_file(tmp_path, name):
    return write_spec(tmp_path, SPECS, name)


def test_cli_libsvm_files_validation_out_plot(cli, tmp_path, compiled):
    from sklearn.datasets import dump_svmlight_file, load_svmlight_file
    d = make_data("multitask")
    dump_svmlight_file(d["Xr"], d["yr"], str(tmp_path / "reg.svm"), zero_based=False)
    dump_svmlight_file(d["Xc"], d["yc"], str(tmp_path / "cls_train"), zero_based=False)  # no extension
    dump_svmlight_file(d["Xr"][:60], d["yr"][:60], str(tmp_path / "rv.svmlight"), zero_based=False)
    dump_svmlight_file(d["Xc"][:50], d["yc"][:50], str(tmp_path / "cv.libsvm"), zero_based=False)
    spec = spec_file(tmp_path, "multitask")
    out = cli("check", spec)
    assert "derived gradients" in out
    out = cli("train", spec, "--data", "Xr,yr=reg.svm", "--data", "Xc,yc=cls_train",
              "--validation", "Xr,yr=rv.svmlight", "--validation", "Xc,yc=cv.libsvm",
              "--threads", 1, "--epochs", 5, "--out", "mt.npz", "--plot", "mt.png")
    assert (tmp_path / "mt.png").stat().st_size > 1000
    # the same training from Python on the same files (one thread, seed 0: bit for bit)
    Xr, yr = load_svmlight_file(str(str(tmp_path / "reg.svm")), zero_based=False, n_features=15)
    Xc, yc = load_svmlight_file(str(str(tmp_path / "cls_train")), zero_based=False, n_features=15)
    t = compiled("multitask").Trainer(threads=1, seed=0, epochs=5).fit(Xr=Xr, yr=yr, Xc=Xc, yc=yc)
    assert_saved_params(tmp_path / "mt.npz", t)
    held = dict(Xr=Xr[:60], yr=yr[:60], Xc=Xc[:50], yc=yc[:50])
    last = out.split("epoch")[-1].strip().splitlines()[5].split()
    assert float(last[2]) == pytest.approx(t.objective(**held), rel=1e-6)   # validation column


def test_cli_npy_csv_npz_mtx_and_triplets(cli, tmp_path, compiled):
    d = make_data("cp")
    np.save(tmp_path / "ia.npy", d["ia"])
    np.savetxt(tmp_path / "ib.csv", d["ib"], fmt="%d")
    (tmp_path / "ic.csv").write_text("ic\n" + "\n".join(map(str, d["ic"])) + "\n")  # a header
    np.savez(tmp_path / "icval.npz", ic=d["ic"], val=d["val"])
    np.save(tmp_path / "val.npy", d["val"])
    spec = spec_file(tmp_path, "cp")
    cli("train", spec, "--data", "ia=ia.npy", "--data", "ib=ib.csv", "--data", "ic=ic.csv",
        "--data", "val=val.npy", "--threads", 1, "--epochs", 3, "--out", "a.npz")
    cli("train", spec, "--data", "ia=ia.npy", "--data", "ib=ib.csv", "--data", "ic,val=icval.npz",
        "--threads", 1, "--epochs", 3, "--out", "b.npz")
    t = compiled("cp").Trainer(threads=1, seed=0, epochs=3).fit(**d)
    for f in ("a.npz", "b.npz"):
        assert_saved_params(tmp_path / f, t)

    d = make_data("sidemf")
    r = sp.coo_matrix(d["r"])
    lines = ["user,item,rating,timestamp"]
    lines += [f"{u},{v},{float(x)!r},1700000000" for u, v, x in zip(r.row, r.col, r.data)]
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n")
    scipy.io.mmwrite(str(tmp_path / "Fu.mtx"), d["Fu"])
    spec = spec_file(tmp_path, "sidemf")
    cli("train", spec, "--data", "r=ratings.csv", "--data", "Fu=Fu.mtx", "--threads", 1,
        "--epochs", 3, "--out", "s.npz")
    t = compiled("sidemf").Trainer(threads=1, seed=0, epochs=3).fit(**d)
    assert_saved_params(tmp_path / "s.npz", t)

    d = make_data("multiridge")
    sp.save_npz(tmp_path / "X.npz", d["X"])
    with open(tmp_path / "Y.csv", "w") as f:
        f.write("a,b,c\n")
        np.savetxt(f, d["Y"], delimiter=",", fmt="%.17g")
    spec = spec_file(tmp_path, "multiridge")
    cli("train", spec, "--data", "X=X.npz", "--data", "Y=Y.csv", "--threads", 1, "--epochs", 3,
        "--out", "m.npz")
    t = compiled("multiridge").Trainer(threads=1, seed=0, epochs=3).fit(**d)
    assert_saved_params(tmp_path / "m.npz", t, atol=0)


def stat(out, key):
    line = next(s for s in out.splitlines() if s.split("=")[0].strip() == key)
    return float(line.split("=")[1].split()[0])


def test_cli_analyze_matches_the_statistics(cli, tmp_path):
    """Omega, Delta, rho computed here from the terms' coordinate sets."""
    d = make_data("cp")
    for k in ("ia", "ib", "ic", "val"):
        np.save(tmp_path / f"{k}.npy", d[k])
    out = cli("analyze", spec_file(tmp_path, "cp"), *[a for k in ("ia", "ib", "ic", "val")
                                                         for a in ("--data", f"{k}={k}.npy")])
    ia, ib, ic = d["ia"], d["ib"], d["ic"]
    n = len(ia)
    meets = (ia[:, None] == ia) | (ib[:, None] == ib) | (ic[:, None] == ic)
    assert stat(out, "Omega") == 9
    assert stat(out, "Delta") == pytest.approx(max(np.bincount(a).max() for a in (ia, ib, ic)) / n, abs=1e-3)
    assert stat(out, "rho") == pytest.approx(meets.sum(1).max() / n, abs=1e-3)
    assert "160 terms" in out and "63 coordinates" in out

    d = make_data("multiridge")
    sp.save_npz(tmp_path / "X.npz", d["X"])
    np.save(tmp_path / "Y.npy", d["Y"])
    out = cli("analyze", spec_file(tmp_path, "multiridge"), "--data", "X=X.npz", "--data", "Y=Y.npy")
    B = (d["X"] != 0).astype(int)
    assert stat(out, "Omega") == 3 * B.sum(1).max()          # a row of W per nonzero
    assert stat(out, "Delta") == pytest.approx(B.sum(0).max() / 150, abs=1e-3)
    assert stat(out, "rho") == pytest.approx(((B @ B.T) > 0).sum(1).max() / 150, abs=1e-3)


def test_cli_compile_to_a_folder_with_a_const(cli, tmp_path):
    cli("compile", spec_file(tmp_path, "cp"), "-o", "mydir", "--const", "rank=2")
    code = ("import numpy as np, mydir.u2_cp as m; d = {k: np.load(k + '.npy') for k in "
            "('ia', 'ib', 'ic', 'val')}; t = m.Trainer(threads=1, epochs=1).fit(**d); "
            "print(t.params['A'].shape)")
    d = make_data("cp")
    for k in ("ia", "ib", "ic", "val"):
        np.save(tmp_path / f"{k}.npy", d[k])
    assert run_python(tmp_path, code) == "(8, 2)"


# ---- scikit-learn estimators with the user's own spec file --------------------------------

REGRESSION_SPEC = """
# robust regression: the negative log-likelihood of logistic noise
model u2_logistic_noise
dim example, feature
data X[example, feature] : dense
data y[example] : real
param w[feature] = 0
param b = 0
for i in example:
    let r = y[i] - dot(X[i], w) - b
    loss r + 2 * softplus(-r)
    reg l2(1.0) on w
    predict dot(X[i], w) + b
train step 0.05, decay 0.98, epochs 60
"""


def test_sklearn_estimators_with_own_spec_files(tmp_path, hog_cache_dir):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from hogwild_dsl.sklearn import HogwildClassifier, HogwildRegressor
    spec = tmp_path / "my_model.hog"
    spec.write_text(REGRESSION_SPEC)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = X @ rng.normal(size=5) + 1 + 0.3 * rng.logistic(size=200)
    reg = HogwildRegressor(spec=str(spec), threads=1).fit(X, y)
    N = len(y)

    def f(q):
        r = y - X @ q[:5] - q[5]
        return np.mean(r + 2 * softplus(-r)) + q[:5] @ q[:5] / N
    best = minimize(f, np.zeros(6), method="L-BFGS-B").fun
    ours = f(np.r_[reg.predict(np.eye(5)) - reg.predict(np.zeros((1, 5))), reg.predict(np.zeros((1, 5)))])
    assert ours <= best * 1.02
    np.testing.assert_allclose(pickle.loads(pickle.dumps(reg)).predict(X), reg.predict(X))
    grid = GridSearchCV(make_pipeline(StandardScaler(), HogwildRegressor(spec=str(spec), threads=1)),
                        {"hogwildregressor__step": [0.01, 0.05]}, cv=3).fit(X, y)
    assert grid.best_score_ > 0.8

    mh = tmp_path / "mh.hog"
    mh.write_text(SPECS["modhuber"])
    d = make_data("modhuber")
    labels = np.where(d["y"] > 0, "spam", "ham")
    clf = HogwildClassifier(spec=str(mh), threads=1).fit(d["X"], labels)
    assert list(clf.classes_) == ["ham", "spam"]
    assert not hasattr(clf, "predict_proba")        # predict is a score, not a probability
    assert (clf.predict(d["X"]) == labels).mean() > 0.85
    np.testing.assert_array_equal(clf.predict(d["X"]), np.where(clf.decision_function(d["X"]) > 0, "spam", "ham"))


def test_train_line_takes_the_trainer_keys(load_spec):
    """LANGUAGE.md: the train line gives the defaults, and the trainer's keys may appear."""
    text = SPECS["cp"].replace(
        "train step 0.05, decay 0.995, epochs 400",
        "train step 0.02, decay 0.9, epochs 7, optimizer adagrad, threads 1, seed 3, "
        "sync lock, shuffle false, patience 2")
    mod = load_spec(text=text)
    t = mod.Trainer()
    assert (t.step, t.decay, t.epochs, t.optimizer, t.threads, t.seed, t.sync, t.patience) == \
        (0.02, 0.9, 7, "adagrad", 1, 3, "lock", 2)
    d = make_data("cp")
    t.fit(**d)
    assert len(t.history) == 7              # patience only acts on a fit given validation data
    same = mod.Trainer(seed=3, shuffle=False).fit(**d)
    other = mod.Trainer(seed=0, shuffle=False).fit(**d)
    np.testing.assert_array_equal(t.params["A"], same.params["A"])
    assert not np.array_equal(t.params["A"], other.params["A"])


def test_long_specs_print_and_check_fast(compiled, cli, tmp_path):
    """gradients() and `hogwildc check` of the long spec stay short and quick (the lets are
    named, not written out: 12 lets read twice each would be 4096 copies)."""
    import time
    mod = compiled("long")
    start = time.perf_counter()
    text = mod.gradients()
    assert time.perf_counter() - start < 5 and len(text) < 200_000
    out = cli("check", spec_file(tmp_path, "long"))
    assert len(out) < 200_000 and "derived gradients" in out
