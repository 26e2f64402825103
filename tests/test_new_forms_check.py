"""The newer forms of LANGUAGE.md in the front end: index data, scalar data, sampled indices,
vector reductions, vector predict and word values on the train line check into the IR printed
here, and their misuses give a SpecError with line, column, caret and hint."""
import numpy as np
import pytest
import scipy.sparse as sp

from hogwild_dsl.check import check
from hogwild_dsl.derive import gradients_text
from hogwild_dsl.errors import SpecError
from tests.test_parse_check import assert_caret

SOFTMAX = """\
model softmax
dim example, feature, class
data X[example, feature] : sparse
data y[example] : index(class)
param W[feature, class] = 0
param b[class] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j]) + b
    loss logsumexp(z) - z[y[i]]
    reg l2(1e-4) on W[X[i]]
    predict softmax(z)
"""

BPR = """\
model bpr
dim user, item
const k = 32
data seen[user, item] : sparse
param P[user, k] ~ normal(0, 0.1)
param Q[item, k] ~ normal(0, 0.1)
for (u, i) in seen:
    sample j in item
    loss -log(sigmoid(dot(P[u], Q[i] - Q[j])))
    reg l2(1e-4) on P[u], Q[i], Q[j] unscaled
    predict dot(P[u], Q[i])
train optimizer adagrad, step 0.05, epochs 30
"""

FUNKSVD = """\
model funksvd
dim user, item
const rank = 50
data r[user, item] : sparse
data mu : real
param bu[user] = 0
param bi[item] = 0
param P[user, rank] ~ normal(0, 0.1)
param Q[item, rank] ~ normal(0, 0.1)
for (u, v) in r:
    let pred = mu + bu[u] + bi[v] + dot(P[u], Q[v])
    loss (pred - r[u, v])^2
    reg l2(0.02) on bu[u], bi[v], P[u], Q[v] unscaled
    predict pred
"""


def test_softmax_prints_index_form():
    spec = check(SOFTMAX)
    assert str(spec.datum("y")) == "data y[example] : index(class)"
    block = spec.blocks[0]
    assert str(block.losses[0][0]) == (
        "logsumexp(_k1 in class: sum(j in X[i]: X[i, j] * W[j, _k1]) + b[_k1]) - "
        "(sum(j in X[i]: X[i, j] * W[j, y[i]]) + b[y[i]])")
    assert block.predict_var is not None and block.predict_size == "class"
    assert str(block.predict) == (
        "exp(sum(j in X[i]: X[i, j] * W[j, k_predict]) + b[k_predict] - "
        "logsumexp(_k4 in class: sum(j in X[i]: X[i, j] * W[j, _k4]) + b[_k4]))")
    text = gradients_text(spec)
    assert "d/dW[j_X, y[i]] = -X[i, j_X]" in text
    assert "d/db[y[i]] = -1" in text
    assert "d/db[k_class] = exp(sum(j_X in X[i]: X[i, j_X] * W[j_X, k_class]) + b[k_class] - " \
           "logsumexp(k2_class in class: " in text


def test_bpr_prints_sample_and_train_word():
    spec = check(BPR)
    block = spec.blocks[0]
    assert [str(s) for s in block.samples] == ["sample j in item"]
    assert dict(spec.train)["optimizer"] == "adagrad"
    assert str(spec).splitlines()[-1] == "train optimizer adagrad, step 0.05, epochs 30"
    assert [str(r) for r in block.regs][2] == \
        "reg l2(0.0001) on Q[j] unscaled  ->  sum(_k4 in k: 0.0001 * Q[j, _k4]^2)"
    assert "d/dQ[j, k_k] = " in gradients_text(spec)


def test_funksvd_scalar_data():
    spec = check(FUNKSVD)
    assert str(spec.datum("mu")) == "data mu : real"
    assert str(spec.blocks[0].losses[0][0]).startswith("(mu + bu[u] + bi[v] + sum(")


def test_vector_reductions():
    spec = check(SOFTMAX.replace("loss logsumexp(z) - z[y[i]]",
                                 "loss max(z) - min(z) + (z - 1)[y[i]]"))
    assert str(spec.blocks[0].losses[0][0]).startswith("max(_k1 in class: ")
    assert "min(_k2 in class: " in str(spec.blocks[0].losses[0][0])
    assert "sum(j in X[i]: X[i, j] * W[j, y[i]]) + b[y[i]] - 1" in \
        str(spec.blocks[0].losses[0][0])


def test_index_data_tuple_block():
    spec = check("""\
model triples
dim user, item, triple
const k = 4
data tu[triple] : index(user)
data ti[triple] : index(item)
data tj[triple] : index(item)
param P[user, k] = 0.1
param Q[item, k] = 0.1
for t in triple:
    loss softplus(-dot(P[tu[t]], Q[ti[t]] - Q[tj[t]]))
    reg l2(0.01) on P[tu[t]], Q[ti[t]]
""")
    block = spec.blocks[0]
    assert str(block.regs[0]).endswith("sum(_k2 in k: 0.01 * P[tu[t], _k2]^2 / _deg0_tu_t[tu[t]])")
    assert [d.kind for d in block.degs] == ["indirect", "indirect"]


def edit(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


BAD = [
    ("three loop variables", edit(BPR, "for (u, i) in seen:", "for (u, i, j) in seen:"), 7, 12,
     ["binds one index", "not 3"], "index datum per part"),
    ("index data at a param position", edit(SOFTMAX, "reg l2(1e-4) on W[X[i]]",
                                            "reg l2(1e-4) on W[y[i]]"), 10, 23,
     ["'y' points into class", "position 1 of param 'W'"], "index(feature)"),
    ("sampled index in predict", edit(BPR, "predict dot(P[u], Q[i])", "predict dot(P[u], Q[j])"),
     11, 25, ["may not use the sampled index 'j'"], "random draw"),
    ("scalar data of a kind", edit(FUNKSVD, "data mu : real", "data mu : sign"), 5, 11,
     ["a scalar datum is real, not sign"], "data mu : real"),
    ("index without its dim", edit(SOFTMAX, "index(class)", "index"), 4, 19,
     ["index data names the dim"], "index(class)"),
    ("argument to a plain kind", edit(SOFTMAX, "data y[example] : index(class)",
                                      "data y[example] : real(class)"), 4, 24,
     ["'real' data takes no argument"], "index(C)"),
    ("sample from an unknown dim", edit(BPR, "sample j in item", "sample j in itme"), 8, 17,
     ["unknown dim 'itme'"], "did you mean 'item'?"),
    ("sample weights not data", edit(BPR, "sample j in item", "sample j in item ~ Q"), 8, 24,
     ["weights 'Q' must be data", "a param"], "data Q[item] : real"),
    ("several draws read as one", edit(BPR, "sample j in item", "sample j[k] in item"), 9, 42,
     ["'j' holds k draws, not one index"], "read the s-th as j[s] inside sum(s in k: ...)"),
    ("sample name in use", edit(BPR, "sample j in item", "sample u in item"), 8, 12,
     ["'u' is already in use"], "another name"),
    ("unknown optimizer", edit(BPR, "optimizer adagrad", "optimizer adagrd"), 12, 17,
     ["unknown optimizer 'adagrd'"], "did you mean 'adagrad'?"),
    ("word for a number key", edit(BPR, "step 0.05", "step fast"), 12, 31,
     ["'step' takes a number"], "step 0.5"),
    ("logsumexp of a scalar", edit(SOFTMAX, "logsumexp(z)", "logsumexp(z[y[i]])"), 9, 20,
     ["needs a dense vector, not a scalar"], "reduces a dense vector"),
    ("component of a scalar", edit(SOFTMAX, "z[y[i]]", "(logsumexp(z))[y[i]]"), 9, 25,
     ["only a dense vector has components"], "vector-valued let"),
    ("component at the wrong dim", edit(SOFTMAX, "z[y[i]]", "z[i]"), 9, 27,
     ["over class, but 'i' ranges over example"], "index over class"),
    ("whole 3-D param", edit(SOFTMAX, "param b[class] = 0", "param b[class, class, class] = 0"),
     8, 46, ["'b' is a 3-D param", "b[class, class]"], "whole matrix"),
    ("sparse predict", edit(SOFTMAX, "predict softmax(z)", "predict X[i]"), 11, 13,
     ["a scalar or a dense vector per term"], "reduce it"),
    ("sum vector in a loss", edit(SOFTMAX, "loss logsumexp(z) - z[y[i]]", "loss softmax(z)"),
     9, 10, ["a loss must be a scalar"], "reduce it"),
]


@pytest.mark.parametrize("text,line,column,words,hint", [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_new_form(text, line, column, words, hint):
    with pytest.raises(SpecError) as info:
        check(text)
    e = info.value
    assert (e.line, e.column) == (line, column), str(e)
    for word in words:
        assert word in e.bare_message, (word, str(e))
    assert e.hint and hint in e.hint, (hint, str(e))
    assert_caret(e, text)


# ------------------------------------------- a whole-param reg on a param read through index data

THROUGH = """\
model through{tag}
dim example, feature, field, cls
data X[example, feature] : sparse
data y[example] : index(cls)
data h[example] : index(feature)
data g[feature] : index(field)
param b[field] ~ normal(0, 0.5)
param w[cls] ~ normal(0, 0.5)
for i in example:
    loss ({read} - 1)^2
    reg {kind}(0.3) on {target}
"""

# (tag, the term's read, the reg's kind and target, numpy's read, whether the reg is deferred)
READS = [
    ("summed", "sum(j in X[i]: X[i, j] * b[g[j]])", "l2", "b",
     lambda X, y, h, g, b, w: X @ b[g], False),
    ("summedl1", "sum(j in X[i]: X[i, j] * b[g[j]])", "l1", "b",
     lambda X, y, h, g, b, w: X @ b[g], False),
    ("term", "w[y[i]] * sum(j in X[i]: X[i, j])", "l2", "w",
     lambda X, y, h, g, b, w: w[y] * np.asarray(X.sum(axis=1)).ravel(), True),
    ("nested", "b[g[h[i]]]", "l2", "b",
     lambda X, y, h, g, b, w: b[g[h]], False),
    ("both", "sum(j in X[i]: X[i, j] * b[g[j]]) * w[y[i]]", "l2", "b, w",
     lambda X, y, h, g, b, w: (X @ b[g]) * w[y], None),
]


def _through(tag, read, kind, target):
    return THROUGH.format(tag=tag, read=read, kind=kind, target=target)


def _through_data(n):
    rng = np.random.default_rng(n)
    X = sp.random(n, 6, density=0.5, random_state=n, format="csr")
    return {"X": X, "y": rng.integers(0, 3, n), "h": rng.integers(0, 6, n),
            "g": np.array([0, 2, 1, 0, 3, 2])}


@pytest.mark.parametrize("tag,read,kind,target,numpy_read,deferred", READS,
                         ids=[r[0] for r in READS])
def test_a_whole_param_reg_on_a_param_read_through_index_data(
        load_spec, tag, read, kind, target, numpy_read, deferred):
    """`reg l2 on b` where the losses read b only through index data (b[g[j]] at a summed j,
    b[g[h[i]]], w[y[i]]) crashed check unpacking the index data's source (a ValueError). A
    read at a summed index or through two index data has no degree that counts its touches,
    so its reg steps every coordinate; w[y[i]] is deferred. Either way the objective is
    numpy's and one term's step is the gradient's."""
    from tests.test_new_forms import check_one_step     # it imports this module

    text = _through(tag, read, kind, target)
    regs = [r for blk in check(text).blocks for r in blk.regs]
    if deferred is not None:
        assert (regs[0].deferred is not None) == deferred
    mod = load_spec(text=text)
    data = _through_data(7)
    t = mod.Trainer(epochs=0, seed=5).fit(**data)
    b, w = t.params["b"], t.params["w"]
    pen = np.abs if kind == "l1" else np.square
    reg = sum(0.3 * pen(t.params[p.strip()]).sum() for p in target.split(","))
    n = data["X"].shape[0]
    want = np.mean((numpy_read(data["X"], data["y"], data["h"], data["g"], b, w) - 1) ** 2) \
        + reg / n
    assert t.objective(**data) == pytest.approx(want, rel=1e-10)
    one = dict(_through_data(1), X=sp.csr_matrix(np.linspace(-0.6, 0.9, 6)[None]))
    for sync in ("hogwild", "atomic", "lock"):
        check_one_step(mod, one, sync, step=0.05, perturb=0.3 if kind == "l1" else 0.0)

