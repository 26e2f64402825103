"""Generated kernels of user objectives that no shipped spec covers, against hand-written
serial Cython of the very same update (bench/peers/user_kernels_handwritten.pyx): an IRT 2PL
model (three 1-D params, scalar updates per response), Poisson matrix factorisation (exp of a
dot, a bias and two rank rows), collaborative metric learning (a hinge on squared distances,
one `sample`d negative per visit) and multi-output Huber regression (a vector `let` over a
const, `sum(c in out: ...)` of a scalar function of its components, a dense target row).

  python bench/bench_user_kernels.py [--rows 20000] [--epochs 9] [--baseline REV]
      -> bench/results/user_kernels.json and bench/results/user_kernels.md

The method of bench_lowering.py: both sides start from the same params, run one thread over
the terms in stored order with the same constant step (and, for the draws, the same key: the
yardstick computes the trainer's counter-based draw), and must agree to 1e-6 after the run.
Every side's params start on a cache line, as the trainer allocates them (a rank-16 row split
over one more line made either side 1.2x slower: without it the ratio depended on where
numpy happened to put each side's copy).
Epochs of the sides alternate and are timed in CPU time of the running thread; the figure is
the median epoch per term (per stored nonzero of X for the Huber regression). --baseline REV
also runs the kernels that the compiler at git revision REV generates (built in a fresh
process from a snapshot of its tree), their epochs alternating with the other two, so that
before and after are measured side by side in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import hogwild_dsl  # noqa: E402
from hogwild_dsl import build  # noqa: E402
from hogwild_dsl.runtime import _aligned  # noqa: E402
from machine import machine, snapshot  # noqa: E402
from peers._build import cython_extension  # noqa: E402

RESULTS = HERE / "results"
SPECS = {
    "irt": """model irt
dim student, item
data r[student, item] : sparse
param theta[student] ~ normal(0, 0.1)
param a[item] = 1
param b[item] = 0
for (s, q) in r:
    let z = a[q] * (theta[s] - b[q])
    loss softplus(z) - r[s, q] * z
    reg l2(1e-3) on theta[s], a[q], b[q]
    predict sigmoid(z)
""",
    "poisson": """model poissonmf
dim user, item
const rank = 16
data r[user, item] : sparse
param bu[user] = 0
param P[user, rank] ~ normal(0, 0.1)
param Q[item, rank] ~ normal(0, 0.1)
for (u, v) in r:
    let eta = bu[u] + dot(P[u], Q[v])
    loss exp(eta) - r[u, v] * eta
    reg l2(0.01) on bu[u], P[u], Q[v] unscaled
    predict exp(eta)
""",
    "cml": """model cml
dim user, item
const k = 16
data seen[user, item] : sparse
param P[user, k] ~ normal(0, 0.1)
param Q[item, k] ~ normal(0, 0.1)
for (u, i) in seen:
    sample j in item
    loss hinge(sqnorm(P[u] - Q[j]) - sqnorm(P[u] - Q[i]))
    reg l2(1e-3) on P[u], Q[i], Q[j] unscaled
    predict -sqnorm(P[u] - Q[i])
""",
    "multihuber": """model multihuber
dim example, feature
const out = 6
data X[example, feature] : sparse
data Y[example, out] : dense
param W[feature, out] = 0
param b[out] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j]) + b
    loss sum(c in out: huber(z[c] - Y[i, c], 1.0))
    reg l2(1e-4) on W[X[i]]
    predict z
""",
}
NAMES = {"irt": "IRT 2PL (per response)", "poisson": "Poisson MF (rank 16, per count)",
         "cml": "CML hinge, 1 sampled negative (k = 16, per click)",
         "multihuber": "multi-output Huber (6 outputs, per nnz)"}
DRAW_KEY = 0x5EED


def yardsticks():
    flags = [*build._compile_flags(), *build._link_flags(), "-fPIC"]
    return cython_extension(HERE / "peers" / "user_kernels_handwritten.pyx",
                            "_peers_user_kernels_handwritten", cflags=flags)


def entries(users, items, per_user, values, seed=0):
    """A users x items CSR with per_user distinct items per row (sorted), values drawn by
    `values(rng, n)`, in the kernels' index types."""
    rng = np.random.default_rng(seed)
    cols = np.concatenate([np.sort(rng.choice(items, per_user, replace=False))
                           for _ in range(users)]).astype(np.int32)
    indptr = np.arange(0, users * per_user + 1, per_user, dtype=np.int64)
    m = sp.csr_matrix((values(rng, cols.size), cols, indptr), shape=(users, items))
    m.indptr, m.indices = m.indptr.astype(np.int64), m.indices.astype(np.int32)
    return m


def inv(counts):
    return np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)


def cases(rows, features, nnz, outputs=6):
    """name -> (fit data, terms, step, the yardstick's epoch on params p)."""
    r01 = entries(rows, 2000, 20, lambda g, n: (g.random(n) < 0.6).astype(np.float64))
    counts = entries(rows, 2000, 20, lambda g, n: g.poisson(1.5, n).astype(np.float64), 1)
    clicks = entries(rows, 2000, 20, lambda g, n: np.ones(n), 2)
    X = entries(rows, features, nnz, lambda g, n: g.uniform(0.1, 1.0, n) / np.sqrt(nnz), 3)
    Y = np.random.default_rng(4).normal(size=(rows, outputs)) * 2.0
    hw = yardsticks()
    deg_s, deg_q = inv(np.diff(r01.indptr)), inv(np.bincount(r01.indices, minlength=2000))
    deg_j = inv(np.bincount(X.indices, minlength=features))
    return {
        "irt": ({"r": r01}, r01.nnz, 0.05, lambda p: hw.irt_epoch(
            r01.indptr, r01.indices, r01.data, p["theta"], p["a"], p["b"], deg_s, deg_q,
            0.05, 1e-3)),
        "poisson": ({"r": counts}, counts.nnz, 0.005, lambda p: hw.poisson_epoch(
            counts.indptr, counts.indices, counts.data, p["bu"], p["P"], p["Q"], 0.005, 0.01)),
        "cml": ({"seen": clicks}, clicks.nnz, 0.05, lambda p: hw.cml_epoch(
            clicks.indptr, clicks.indices, p["P"], p["Q"], DRAW_KEY, 0.05, 1e-3)),
        "multihuber": ({"X": X, "Y": Y}, X.nnz, 0.05, lambda p: hw.multihuber_epoch(
            X.indptr, X.indices, X.data, Y, p["W"], p["b"], deg_j, 0.05, 1e-4, 1.0)),
    }


def baseline_kernels(rev: str, work: Path) -> dict:
    """name -> the Kernel class that the compiler at `rev` generates for that spec (built in
    a fresh process from a snapshot of its tree)."""
    from bench_compile import BUILT, run
    tree = snapshot(rev, work / "baseline")
    out = {}
    for name, text in SPECS.items():
        spec = work / f"{name}.hog"
        spec.write_text(text)
        so = Path(run(BUILT, spec, work / "cache", tree=tree))
        out[name] = build.import_from_path(f"hog_baseline_{name}.{so.name.split('.')[0]}",
                                           so).Kernel
    return out


def measure(name, fit, terms, step, hand, epochs, base=None):
    """Median ns per term of each side (generated, hand-written[, baseline]) and how far
    apart their params end."""
    mod = hogwild_dsl.load(text=SPECS[name])
    t = mod.Trainer(threads=1, epochs=0, seed=0).fit(**fit)
    arrays, sizes = t.layout(fit)
    kernel = mod.Trainer.kernels.Kernel(arrays, sizes)
    p = {n: _aligned(v.copy()) for n, v in t.params.items()}
    sides = [(lambda: kernel.epoch(order, 0, step, 1, 0), [], kernel)]
    sides.append((lambda: hand(p), [], None))
    if base is not None:
        b_params = {n: _aligned(v.copy()) for n, v in t.params.items()}
        b_kernel = base(arrays | b_params, sizes)
        sides.append((lambda: b_kernel.epoch(order, 0, step, 1, 0), [], b_kernel))
    for _, _, k in sides:
        if k is not None and hasattr(k, "set_draw_key"):
            k.set_draw_key(DRAW_KEY)
    order = np.arange(terms, dtype=np.int64) if "X" not in fit else \
        np.arange(fit["X"].shape[0], dtype=np.int64)
    for _ in range(epochs):
        for run, out, _ in sides:
            began = time.thread_time()
            run()
            out.append(time.thread_time() - began)
    agree = [max(float(np.max(np.abs(t.params[n] - p[n]))) for n in p)]
    if base is not None:
        agree.append(max(float(np.max(np.abs(b_params[n] - p[n]))) for n in p))
    ns = [float(np.median(out)) / terms * 1e9 for _, out, _ in sides]
    spread = [[round(float(x) / terms * 1e9, 2) for x in sorted(out)] for _, out, _ in sides]
    return ns, spread, agree


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--features", type=int, default=20_000)
    ap.add_argument("--nnz", type=int, default=30, help="nonzeros per row of X")
    ap.add_argument("--epochs", type=int, default=9)
    ap.add_argument("--baseline", help="a git revision whose generated kernels run alongside")
    ap.add_argument("--only", nargs="*", choices=sorted(SPECS), help="these cases only")
    ap.add_argument("--out", default=str(RESULTS / "user_kernels"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        bases = baseline_kernels(args.baseline, Path(work)) if args.baseline else {}
        result = {"machine": machine(), "load_average_before": os.getloadavg(),
                  "rows": args.rows, "features": args.features, "nnz_per_row": args.nnz,
                  "epochs": args.epochs, "baseline": args.baseline, "cases": {}}
        for name, (fit, terms, step, hand) in cases(args.rows, args.features, args.nnz).items():
            if args.only and name not in args.only:
                continue
            ns, spread, agree = measure(name, fit, terms, step, hand, args.epochs,
                                        bases.get(name))
            assert max(agree) < 1e-6, f"{name}: generated and hand-written differ by {agree}"
            c = {"generated_ns_per_term": round(ns[0], 2),
                 "handwritten_ns_per_term": round(ns[1], 2),
                 "speed_vs_handwritten": round(ns[1] / ns[0], 3),
                 "epochs_sorted_ns": spread, "max_param_difference": max(agree)}
            line = (f"{NAMES[name]}: generated {ns[0]:.2f} ns, hand-written {ns[1]:.2f} ns "
                    f"({ns[1] / ns[0]:.2f}x)")
            if len(ns) > 2:
                c |= {"baseline_ns_per_term": round(ns[2], 2),
                      "baseline_speed_vs_handwritten": round(ns[1] / ns[2], 3)}
                line += f", baseline {ns[2]:.2f} ns ({ns[1] / ns[2]:.2f}x)"
            result["cases"][NAMES[name]] = c
            print(line + f", params agree to {max(agree):.1e}", flush=True)
        result["load_average_after"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))


def markdown(result) -> str:
    m = result["machine"]
    base = result["baseline"]
    lines = ["# User objectives: generated kernels vs hand-written serial Cython "
             "(bench/bench_user_kernels.py)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({m['host']}), Python {m['python']}; "
             f"load average {result['load_average_before'][0]:.2f} before, "
             f"{result['load_average_after'][0]:.2f} after.",
             f"Data: {result['rows']} rows; entry blocks 20 entries per row over 2000 items; "
             f"X {result['features']} features, {result['nnz_per_row']} nonzeros per row. "
             f"1 thread, stored order, constant step, epochs of the sides alternating, median "
             f"of {result['epochs']} in thread CPU time; every side agrees with the "
             f"hand-written to 1e-6.", ""]
    head = "| objective | generated ns/term | hand-written ns/term | generated speed (hand / gen) |"
    rule = "|---|---|---|---|"
    if base:
        head += f" compiler at {base}: ns/term | its speed |"
        rule += "---|---|"
    lines += [head, rule]
    for name, c in result["cases"].items():
        row = (f"| {name} | {c['generated_ns_per_term']} | {c['handwritten_ns_per_term']} | "
               f"{c['speed_vs_handwritten']}x |")
        if base:
            row += f" {c['baseline_ns_per_term']} | {c['baseline_speed_vs_handwritten']}x |"
        lines.append(row)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
