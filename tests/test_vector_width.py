"""lower.vector_bits: a module asks the C compiler for at most 256-bit vectors exactly where
that leaves at least 4 fewer scalar iterations per row (on average over the params'
constant-length rows) than 512-bit ones
(dtype="float32" MF at rank 20: 16 + 4 scalar lanes at 512 bits, 8 + 8 + 4 vector lanes at
256). The choice is a tuning hint only: what the kernel computes is the same either way."""
import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from hogwild_dsl.emit import emit
from hogwild_dsl.lower import _scalar_tail, lower, vector_bits

PRAGMA = 'prefer-vector-width=256'


def _mf(rows: dict) -> str:
    """A factorisation spec with one param pair per (const name, row length)."""
    lines = ["model vec", "dim user, item"]
    lines += [f"const {k} = {n}" for k, n in rows.items()]
    lines += ["data r[user, item] : sparse"]
    for k in rows:
        lines += [f"param L{k}[user, {k}] ~ normal(0, 0.1)",
                  f"param R{k}[item, {k}] ~ normal(0, 0.1)"]
    dot = " + ".join(f"dot(L{k}[u], R{k}[v])" for k in rows)
    lines += ["for (u, v) in r:", f"    loss ({dot} - r[u, v])^2",
              "    reg l2(0.02) on " + ", ".join(f"L{k}[u], R{k}[v]" for k in rows),
              f"    predict {dot}"]
    return "\n".join(lines) + "\n"


def test_scalar_tail():
    # the rest after whole vectors: one half-width vector where it fills one, else scalar
    assert _scalar_tail(20, 16) == 4          # floats at 512 bits: 16, then 4 scalar
    assert _scalar_tail(20, 8) == 0           # floats at 256 / doubles at 512: 8 + 8 + 4
    assert _scalar_tail(32, 16) == 0
    assert _scalar_tail(50, 16) == 2
    assert _scalar_tail(14, 16) == 6          # 8 as one vector, 6 scalar
    assert _scalar_tail(3, 8) == 3


@pytest.mark.parametrize("rows, dtype, bits", [
    ({"rank": 20}, "float32", 256),           # 4 scalar lanes at 512 bits, none at 256
    ({"rank": 20}, "float64", None),          # 8 + 8 + 4 at 512 bits already
    ({"k": 32}, "float32", None),             # whole 512-bit vectors: the compiler's choice
    ({"k": 32}, "float64", None),
    ({"k": 4}, "float32", 256),               # one 128-bit vector instead of 4 scalars
    ({"k": 50}, "float32", None),             # 2 scalar lanes either way
    ({"k": 50}, "float64", None),             # 256 bits would spare only 2 scalar doubles
    ({"k": 10}, "float64", None),
    ({"k": 32, "rank": 20}, "float32", None),  # 2 a row on average: the compiler's choice
    ({"k": 28, "rank": 20}, "float32", 256),   # 4 a row
])
def test_vector_bits_from_row_lengths(rows, dtype, bits):
    spec = hogwild_dsl.check(_mf(rows))
    assert vector_bits(spec, dtype) == bits
    assert lower(spec, dtype).vector_bits == bits
    pyx = next(text for name, text in emit(spec, "vec_kernels", dtype=dtype).items()
               if name.endswith(".pyx"))
    assert (PRAGMA in pyx) == (bits == 256)


def test_no_constant_rows_no_hint():
    spec = hogwild_dsl.check(
        "model lin\ndim row, feature\ndata X[row, feature] : sparse\ndata y[row] : real\n"
        "param w[feature] = 0\nfor i in row:\n    loss (dot(X[i], w) - y[i])^2\n")
    assert vector_bits(spec, "float32") is None and vector_bits(spec, "float64") is None


def test_hinted_float32_module_trains_like_float64(hog_cache_dir):
    """The module built with the hint (rank 20, float32) reaches the float64 module's
    objective and predictions up to float32 rounding, at threads=1 (one path)."""
    rng = np.random.default_rng(3)
    n_users, n_items, nnz = 300, 120, 6000
    flat = rng.choice(n_users * n_items, size=nnz, replace=False)
    u, v = flat // n_items, flat % n_items
    A, B = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
    r = sp.csr_matrix(((A[u] * B[v]).sum(axis=1), (u, v)), shape=(n_users, n_items))
    text = _mf({"rank": 20}) + "train step 0.02, epochs 15\n"
    fits = {}
    for dtype in ("float64", "float32"):
        mod = hogwild_dsl.load(text=text, cache_dir=hog_cache_dir, dtype=dtype)
        fits[dtype] = mod.Trainer(threads=1, seed=0, order="stored").fit(r=r)
    first = fits["float64"].history[0]["objective"]
    last64, last32 = (fits[d].history[-1]["objective"] for d in ("float64", "float32"))
    assert last64 < 0.5 * first                      # it trains
    assert last32 == pytest.approx(last64, rel=1e-3)
    np.testing.assert_allclose(fits["float32"].predict(r=r), fits["float64"].predict(r=r),
                               rtol=1e-3, atol=1e-3)
