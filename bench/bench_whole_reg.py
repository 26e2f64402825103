"""A whole-param regularizer's cost per term against the param's size (issue 14).

  python bench/bench_whole_reg.py [--before REV] [--rows 100000] [--sizes 1000 10000 100000]
                                 [--repeats 3]
      -> bench/results/whole_reg.json and bench/results/whole_reg.md

Logistic regression on sparse rows of 20 nonzeros, `reg l2(1e-4) on w` (the whole param) beside
`reg l2(1e-4) on w[X[i]]` (the row's support), 1 thread, 5 epochs, for growing numbers of
features d. `before` is a revision whose update stepped every coordinate of w on every term
(default 1b55f72); `after` this tree, which steps the coordinates the term reads and defers the
rest of the penalty to the epoch's ends (docs/language.md, "Regularizer targets"). Each fit runs
in a fresh process; the time is the updates' (history seconds) per term, the median of
`--repeats` fits, and the objective each ends at is printed beside it (the same algorithm
should end at nearly the same value). The yardstick for "does not grow with d" is the
support target of the same d: it is O(touched) by construction, so the whole target's time
over it should stay flat as d grows (both feel the same cache misses of a larger w).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEFORE = "1b55f72"
SPEC = """
model wholereg{tag}
dim example, feature
data X[example, feature] : sparse
data y[example] : sign
param w[feature] = 0
for i in example:
    loss logistic(y[i] * dot(X[i], w))
    reg l2(1e-4) on {target}
"""
TARGETS = {"whole": "w", "support": "w[X[i]]"}


def worker(target: str, rows: int, features: int, epochs: int) -> dict:
    import scipy.sparse as sp

    import hogwild_dsl
    rng = np.random.default_rng(0)
    cols = rng.integers(features, size=(rows, 20))        # (sp.random would take rows x
    X = sp.csr_matrix((rng.random(rows * 20), cols.ravel(),  # features memory)
                       np.arange(0, rows * 20 + 1, 20)), shape=(rows, features))
    X.sum_duplicates()
    y = np.sign(X @ rng.standard_normal(features) + 1e-9)
    mod = hogwild_dsl.load(text=SPEC.format(tag=target, target=TARGETS[target]))
    began = time.perf_counter()
    t = mod.Trainer(threads=1, epochs=epochs, step=0.5).fit(X=X, y=y)
    fit = time.perf_counter() - began
    updates = sum(h["seconds"] for h in t.history)
    return {"ns_per_term": updates * 1e9 / (rows * epochs), "fit_s": fit,
            "objective": t.objective(X=X, y=y)}


def run(tree: Path, target: str, rows: int, features: int, epochs: int, repeats: int) -> dict:
    """The median fit (by update time) of `repeats` fresh processes."""
    fits = sorted((run_once(tree, target, rows, features, epochs) for _ in range(repeats)),
                  key=lambda got: got["ns_per_term"])
    return {**fits[len(fits) // 2], "all_ns_per_term": [f["ns_per_term"] for f in fits]}


def run_once(tree: Path, target: str, rows: int, features: int, epochs: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(HERE / "bench_whole_reg.py"), "--worker", target,
                          "--rows", str(rows), "--sizes", str(features), "--epochs",
                          str(epochs)], env=env, cwd=tree, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.sizes[0], args.epochs)))
        return
    sys.path.insert(0, str(ROOT))
    from bench.machine import machine, snapshot
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": snapshot(args.before, Path(tmp) / "before"), "after": ROOT}
        for d in args.sizes:
            for target in TARGETS:
                for kind, tree in trees.items():
                    got = run(tree, target, args.rows, d, args.epochs, args.repeats)
                    rows.append({"features": d, "target": target, "tree": kind, **got})
                    print(f"d {d:7d} {target:8s} {kind:6s} {got['ns_per_term']:9.0f} ns/term "
                          f"objective {got['objective']:.6f}", flush=True)
    result = {"machine": machine(), "before": args.before, "rows": args.rows,
              "epochs": args.epochs, "repeats": args.repeats, "measured": rows}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "whole_reg.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = ["# A whole-param regularizer's cost per term (bench/bench_whole_reg.py)", "",
             f"Machine: {m.get('cpu', m)}. Logistic regression, {args.rows} rows of 20 "
             f"nonzeros, 1 thread, {args.epochs} epochs, step 0.5; update time per term, the "
             f"median of {args.repeats} fresh processes. `before` is revision {args.before}, "
             f"`after` this tree. whole / support: the `w` target's time over the `w[X[i]]` "
             f"target's (O(touched) by construction) at the same d and tree.", "",
             "| features | target | before ns/term | after ns/term | before whole / support | "
             "after whole / support | before objective | after objective |",
             "|---|---|---|---|---|---|---|---|"]
    pick = {(r["features"], r["target"], r["tree"]): r for r in rows}
    for d in args.sizes:
        for target in TARGETS:
            b, a = pick[d, target, "before"], pick[d, target, "after"]
            ratio = {k: pick[d, "whole", k]["ns_per_term"] / pick[d, "support", k]["ns_per_term"]
                     for k in ("before", "after")}
            shown = (f"{ratio['before']:.2f} | {ratio['after']:.2f}" if target == "whole"
                     else " | ")
            lines.append(f"| {d} | `{TARGETS[target]}` | {b['ns_per_term']:.0f} | "
                         f"{a['ns_per_term']:.0f} | {shown} | {b['objective']:.6f} | "
                         f"{a['objective']:.6f} |")
    (out / "whole_reg.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
