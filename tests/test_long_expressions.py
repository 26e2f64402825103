"""Long but legal specs a user writes (audit F6, F7): a flat sum of many terms (unrolled
features, many penalty terms) is regrouped pairwise, not refused as "nested too deeply"; a
chain of lets that each read the previous one twice prints its gradients with the shared
parts named, instead of an exponentially long text."""
import time

import numpy as np
import pytest

import hogwild_dsl
from hogwild_dsl import SpecError

N_TERMS = 100
HEADER = """model {name}
dim example, feature
data X[example, feature] : dense
data y[example] : real
param w[feature] = 0
for i in example:
    let a = dot(X[i], w)
"""
FLAT = HEADER.format(name="u_flat") + "    loss (a - y[i])^2 + " + " + ".join(
    f"0.01 * softplus(a - {k / 10})" for k in range(N_TERMS)) + "\ntrain step 0.01, epochs 1\n"
CHAIN = HEADER.format(name="u_chain") + "    let t0 = a * sigmoid(a)\n" + "".join(
    f"    let t{k} = t{k - 1} * sigmoid(t{k - 1})\n" for k in range(1, 12)) + \
    "    loss (t11 - y[i])^2\ntrain step 0.01, epochs 1\n"


def softplus(z):
    return np.logaddexp(0.0, z)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def flat_objective(X, y, w):
    a = X @ w
    return np.mean((a - y) ** 2 + 0.01 * sum(softplus(a - k / 10) for k in range(N_TERMS)))


def chain_objective(X, y, w):
    t = X @ w
    t = t * sigmoid(t)
    for _ in range(11):
        t = t * sigmoid(t)
    return np.mean((t - y) ** 2)


def data(n=1):
    rng = np.random.default_rng(3)
    return rng.normal(size=(n, 5)), rng.normal(size=n)


@pytest.mark.parametrize("text, reference", [(FLAT, flat_objective), (CHAIN, chain_objective)],
                         ids=["flat sum", "let chain"])
def test_objective_and_one_step_are_right(load_spec, text, reference):
    mod = load_spec(text=text)
    X, y = data()
    w0 = np.random.default_rng(4).normal(scale=0.3, size=5)
    t = mod.Trainer(threads=1, epochs=0, step=0.01, decay=1.0).fit(X=X, y=y)
    t.params["w"][...] = w0
    assert t.objective(X=X, y=y) == pytest.approx(reference(X, y, w0), rel=1e-12)
    h = 1e-6
    fd = np.array([(reference(X, y, w0 + h * e) - reference(X, y, w0 - h * e)) / (2 * h)
                   for e in np.eye(5)])
    t.epochs = 1
    t.fit(X=X, y=y)                         # one term, one epoch: one SGD step
    np.testing.assert_allclose(t.params["w"], w0 - 0.01 * fd, rtol=1e-6, atol=1e-9)


def test_a_flat_sum_is_regrouped_not_refused():
    many = HEADER.format(name="u_many") + "    loss " + " + ".join(
        f"{k} * a" for k in range(2000)) + "\n"
    assert hogwild_dsl.check(many)
    nested = HEADER.format(name="u_nest") + "    loss " + "exp(" * 120 + "a" + ")" * 120 + "\n"
    with pytest.raises(SpecError, match="nested too deeply"):
        hogwild_dsl.check(nested)


def test_gradients_of_a_let_chain_name_the_shared_parts():
    from hogwild_dsl.derive import gradients_text
    start = time.perf_counter()
    text = gradients_text(hogwild_dsl.check(CHAIN))
    assert time.perf_counter() - start < 20      # was > 500 s: a 10^8-character text
    assert len(text) < 10_000 and "where _s1 = sum(" in text
    assert text.splitlines()[-1].startswith("    d/dw[")
