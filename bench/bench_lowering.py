"""Generated kernels of new objectives against hand-written serial Cython of the very same
update (issue 14): a factorisation machine (specs/fm.hog, k = 8) and softmax regression
(K = 10, dense one-hot labels, the issue's spelling).

  python bench/bench_lowering.py [--rows 20000] [--epochs 5]
      -> bench/results/lowering.json and bench/results/lowering.md
  HOGWILD_BENCH_CODE=/path/to/other/checkout python bench/bench_lowering.py --out ...
      the same measurement of another version of the compiler (a baseline)

Both sides start from the same params, run one thread over the rows in stored order with the
same constant step, and must agree to 1e-6 after every run (so the algorithms are identical).
Epochs of the two sides alternate and are timed in CPU time of the running thread (this
machine is shared: wall time mixes in other processes); the figure is the median epoch per
stored nonzero. The yardsticks (bench/peers/lowering_handwritten.pyx) are compiled with the
generated modules' C flags. The SVM and matrix-completion kernels are measured the same way
against bench/peers/handwritten.pyx, to show they did not get slower.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, os.environ.get("HOGWILD_BENCH_CODE", str(HERE.parent)))

import hogwild_dsl  # noqa: E402
from hogwild_dsl import build  # noqa: E402
from machine import machine  # noqa: E402
from peers import handwritten  # noqa: E402
from peers._build import cython_extension  # noqa: E402

RESULTS = HERE / "results"
CODE = Path(os.environ.get("HOGWILD_BENCH_CODE", HERE.parent))
SOFTMAX = """model softmax
dim example, feature, class
data X[example, feature] : sparse
data Y[example, class] : dense
param W[feature, class] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j])
    loss log(sum(exp(z))) - dot(Y[i], z)
"""
STEP = {"fm": 0.01, "softmax": 0.1}


def yardsticks():
    flags = [*build._compile_flags(), *build._link_flags(), "-fPIC"]
    return cython_extension(HERE / "peers" / "lowering_handwritten.pyx",
                            "_peers_lowering_handwritten", cflags=flags)


def data(rows, features, nnz, classes, seed=0):
    rng = np.random.default_rng(seed)
    cols = np.concatenate([np.sort(rng.choice(features, nnz, replace=False))
                           for _ in range(rows)]).astype(np.int32)
    indptr = np.arange(0, rows * nnz + 1, nnz, dtype=np.int64)
    X = sp.csr_matrix((rng.uniform(0.1, 1.0, rows * nnz) / np.sqrt(nnz), cols, indptr),
                      shape=(rows, features))
    y = rng.normal(size=rows)
    Y = np.zeros((rows, classes))
    Y[np.arange(rows), rng.integers(0, classes, rows)] = 1.0
    X.indptr = X.indptr.astype(np.int64)     # the kernels' layout (scipy may downcast)
    X.indices = X.indices.astype(np.int32)
    return X, y, Y


def kernel(mod, **fit):
    """The compiled kernel of a fresh trainer on `fit` (params initialised with seed 0)."""
    t = mod.Trainer(threads=1, epochs=0, seed=0).fit(**fit)
    arrays, sizes = t.layout(fit)
    return t, mod.Trainer.kernels.Kernel(arrays, sizes)


def alternate(generated, handwritten, epochs):
    """CPU seconds of `epochs` epochs of each side, one after the other."""
    gen, hand = [], []
    for _ in range(epochs):
        for run, out in ((generated, gen), (handwritten, hand)):
            began = time.thread_time()
            run()
            out.append(time.thread_time() - began)
    return gen, hand


def fm_case(X, y, epochs):
    hw = yardsticks()
    t, k = kernel(hogwild_dsl.load(CODE / "specs" / "fm.hog"), X=X, y=y)
    p = {n: v.copy() for n, v in t.params.items()}
    counts = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float64)
    inv_deg = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    w0 = p["w0"].reshape(1)
    order = np.arange(X.shape[0], dtype=np.int64)
    gen, hand = alternate(lambda: k.epoch(order, 0, STEP["fm"], 1, 0),
                          lambda: hw.fm_epoch(X.indptr, X.indices, X.data, y, w0, p["w"],
                                              p["V"], inv_deg, STEP["fm"], 1e-4), epochs)
    return gen, hand, max(float(np.max(np.abs(t.params[n] - p[n]))) for n in p), X.nnz


def softmax_case(X, Y, epochs):
    hw = yardsticks()
    t, k = kernel(hogwild_dsl.load(text=SOFTMAX), X=X, Y=Y)
    W = t.params["W"].copy()
    order = np.arange(X.shape[0], dtype=np.int64)
    gen, hand = alternate(lambda: k.epoch(order, 0, STEP["softmax"], 1, 0),
                          lambda: hw.softmax_epoch(X.indptr, X.indices, X.data, Y, W,
                                                   STEP["softmax"]), epochs)
    return gen, hand, float(np.max(np.abs(t.params["W"] - W))), X.nnz


def svm_case(X, y, epochs):
    t, k = kernel(hogwild_dsl.load(CODE / "specs" / "svm.hog"), X=X, y=y)
    w, deg = t.params["w"].copy(), handwritten.svm_degrees(X)
    order = np.arange(X.shape[0], dtype=np.int64)
    gen, hand = alternate(lambda: k.epoch(order, 0, 0.01, 1, 0),
                          lambda: handwritten.svm_epoch(X.indptr, X.indices, X.data, y, w, deg,
                                                        order, 0.01, 1e-4), epochs)
    return gen, hand, float(np.max(np.abs(t.params["w"] - w))), X.nnz


def mc_case(r, epochs):
    from bench_kernels import MC_SPEC
    t, k = kernel(hogwild_dsl.load(text=MC_SPEC), r=r)
    coo = r.tocoo()
    rows, cols = coo.row.astype(np.int32), coo.col.astype(np.int32)
    L, R = t.params["L"].copy(), t.params["R"].copy()
    order = np.arange(r.nnz, dtype=np.int64)
    gen, hand = alternate(lambda: k.epoch(order, 0, 0.01, 1, 0),
                          lambda: handwritten.mf_epoch(rows, cols, coo.data, L, R, order,
                                                       0.01, 0.02), epochs)
    agree = max(float(np.max(np.abs(t.params["L"] - L))),
                float(np.max(np.abs(t.params["R"] - R))))
    return gen, hand, agree, r.nnz


def ratings(users, items, n, seed=0):
    rng = np.random.default_rng(seed)
    r = sp.csr_matrix((rng.uniform(1, 5, n), (rng.integers(0, users, n),
                                              rng.integers(0, items, n))), shape=(users, items))
    r.sum_duplicates()
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--features", type=int, default=20_000)
    ap.add_argument("--nnz", type=int, default=30, help="nonzeros per row")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS / "lowering"))
    args = ap.parse_args(argv)
    X, y, Y = data(args.rows, args.features, args.nnz, 10)
    signs = np.where(y > 0, 1.0, -1.0)
    r = ratings(args.rows, 2000, args.rows * 20)
    result = {"machine": machine(), "code": os.environ.get("HOGWILD_BENCH_CODE", "this checkout"),
              "rows": args.rows, "features": args.features, "nnz_per_row": args.nnz,
              "epochs": args.epochs, "cases": {}}
    for name, case in (("fm (k = 8)", lambda: fm_case(X, y, args.epochs)),
                       ("softmax (K = 10)", lambda: softmax_case(X, Y, args.epochs)),
                       ("svm", lambda: svm_case(X, signs, args.epochs)),
                       ("mc (rank 20, per rating)", lambda: mc_case(r, args.epochs))):
        gen_s, hw_s, agree, nnz = case()
        assert agree < 1e-6, f"{name}: generated and hand-written differ by {agree:.3g}"
        gen, hand = (float(np.median(s)) / nnz * 1e9 for s in (gen_s, hw_s))
        result["cases"][name] = {"generated_ns_per_nnz": round(gen, 2),
                                 "handwritten_ns_per_nnz": round(hand, 2),
                                 "speed_vs_handwritten": round(hand / gen, 3),
                                 "max_param_difference": agree}
        print(f"{name}: generated {gen:.2f} ns/nnz, hand-written {hand:.2f} ns/nnz "
              f"({hand / gen:.2f}x), params agree to {agree:.1e}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))


def markdown(result) -> str:
    m = result["machine"]
    lines = ["# Generated kernels vs hand-written serial Cython (bench/bench_lowering.py)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({m['host']}), Python {m['python']}.",
             f"Data: {result['rows']} rows x {result['features']} features, "
             f"{result['nnz_per_row']} nonzeros per row (mc: {result['rows']} users x 2000 items, "
             f"20 ratings per user); 1 thread, stored order, constant step, epochs of the two "
             f"sides alternating, median of {result['epochs']} in thread CPU time; both sides "
             f"agree to 1e-6. Compiler: {result['code']}.", "",
             "| model | generated ns/nnz | hand-written ns/nnz | generated speed (hand / gen) |",
             "|---|---|---|---|"]
    for name, c in result["cases"].items():
        lines.append(f"| {name} | {c['generated_ns_per_nnz']} | {c['handwritten_ns_per_nnz']} "
                     f"| {c['speed_vs_handwritten']}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
