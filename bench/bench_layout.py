"""The layout contract's costs (issue 14, item 2), before and after side by side.

  python bench/bench_layout.py [--before REV] [--repeats 3] [--epochs 5]
      -> bench/results/layout_contract.json and bench/results/layout_contract.md

The runtime now fills the kernel's arrays by walking lower's layout table, and the Kernel
checks every array against its field (dtype, C order, shape) before any C runs. This measures
what that costs, on the tree of revision --before and on this tree: `layout` (the data's
checks and conversion, `t.layout(...)` on a fresh trainer, the minimum of 5), `Kernel(...)` (binding the arrays
into the struct, with the new checks) and the checks a first epoch or objective runs
(`Kernel._require("train")`: the minimum of 20 of each), and the updates (ns per term of an epoch, the
history's `seconds`, 1 thread, the trainer's default order), for the shipped SVM on
RCV1-shaped rows and a rank-20 matrix completion (bench_kernels.MC_SPEC) on Netflix-shaped
ratings. Each measurement runs in a fresh process after an untimed warm-up fit, in rounds that
alternate the trees; the figure is the minimum over the rounds. Ratios are only comparable
within one run (bench/machine.py).
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
BEFORE = "33c3799"      # main before the layout contract


def worker(problem: str, data_path: str, epochs: int) -> dict:
    import scipy.sparse as sp

    import hogwild_dsl
    with np.load(data_path) as f:
        m = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
        y = f["y"] if "y" in f.files else None
    if problem == "svm":
        mod, data = hogwild_dsl.load("svm"), {"X": m, "y": y}
    else:
        sys.path.insert(0, str(HERE))
        from bench_kernels import MC_SPEC
        mod, data = hogwild_dsl.load(text=MC_SPEC), {"r": m}
    options = dict(threads=1, epochs=epochs, step=0.01 if problem == "svm" else 0.02)
    mod.Trainer(**options).fit(**data)                  # warm-up (and the build, once)
    t = mod.Trainer(**options).fit(**data)
    layouts = []
    for _ in range(5):
        fresh = mod.Trainer(**options)
        began = time.perf_counter()
        arrays, sizes = fresh.layout(data)
        layouts.append(time.perf_counter() - began)
    binds, checks = [], []
    for _ in range(20):            # the minimum of 20: microseconds, on a shared machine
        began = time.perf_counter()
        kernel = t.kernels.Kernel(arrays, sizes)
        bound = time.perf_counter()
        kernel._require("train")  # what a first epoch / objective checks before any C
        binds.append(bound - began)
        checks.append(time.perf_counter() - bound)
    updates = min(h["seconds"] for h in t.history)
    return {"layout_s": min(layouts), "kernel_s": min(binds), "first_call_checks_s": min(checks),
            "epoch_ns_per_term": updates * 1e9 / kernel.nterms, "terms": kernel.nterms,
            "module": hogwild_dsl.__file__}


def run(tree: Path, problem: str, data_path: str, epochs: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, str(HERE / "bench_layout.py"), "--worker", problem,
                          "--data", data_path, "--epochs", str(epochs)], env=env, cwd=tree,
                         check=True, capture_output=True, text=True).stdout
    return {**json.loads(out.strip().splitlines()[-1]), "load": load}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rows", type=int, default=60_000)
    ap.add_argument("--ratings", type=int, default=600_000)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.epochs)))
        return
    sys.path.insert(0, str(ROOT))
    from bench.machine import machine, snapshot
    from hogwild_dsl import datasets
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        X, y = datasets.rcv1_like(n_rows=args.rows, seed=0)
        paths = {"svm": str(tmp / "svm.npz"), "mc": str(tmp / "mc.npz")}
        np.savez(paths["svm"], data=X.data, indices=X.indices, indptr=X.indptr,
                 shape=np.array(X.shape), y=y)
        r = datasets.netflix_like(n_users=args.ratings // 12, n_items=args.ratings // 120,
                                  n_ratings=args.ratings, seed=0)
        r = r[0] if isinstance(r, tuple) else r
        r = r.tocsr()
        np.savez(paths["mc"], data=r.data, indices=r.indices, indptr=r.indptr,
                 shape=np.array(r.shape))
        trees = {"before": snapshot(args.before, tmp / "before"), "after": ROOT}
        for k in range(args.repeats):
            for problem in ("svm", "mc"):
                for label, tree in trees.items():
                    got = run(tree, problem, paths[problem], args.epochs)
                    assert Path(got["module"]).resolve().is_relative_to(tree.resolve()), got
                    runs.setdefault((problem, label), []).append(got)
                    print(f"round {k + 1} {problem} {label:6s} layout {got['layout_s']:.4f} s "
                          f"kernel {got['kernel_s'] * 1e6:.0f} us epoch "
                          f"{got['epoch_ns_per_term']:.2f} ns/term (load {got['load']:.2f})",
                          flush=True)
    rows = []
    for (problem, label), done in runs.items():
        rows.append({"problem": problem, "tree": label, "terms": done[0]["terms"],
                     **{key: min(g[key] for g in done) for key in
                        ("layout_s", "kernel_s", "first_call_checks_s", "epoch_ns_per_term")},
                     "loads": [g["load"] for g in done]})
    result = {"machine": machine(), "before": args.before, "repeats": args.repeats,
              "epochs": args.epochs, "rows": rows}
    out = HERE / "results"
    (out / "layout_contract.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# The layout contract: costs before and after (bench/bench_layout.py)", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, host "
             f"{result['machine']['host']}; before = {args.before}; minimum over "
             f"{args.repeats} rounds alternating the trees; 1 thread.", "",
             "| problem | tree | terms | layout ms | Kernel() us | first-call checks us | "
             "epoch ns/term | after / before epoch |", "|---|---|---|---|---|---|---|---|"]
    base = {r["problem"]: r for r in rows if r["tree"] == "before"}
    for r in rows:
        ratio = r["epoch_ns_per_term"] / base[r["problem"]]["epoch_ns_per_term"]
        lines.append(f"| {r['problem']} | {r['tree']} | {r['terms']} | {r['layout_s'] * 1e3:.1f} "
                     f"| {r['kernel_s'] * 1e6:.0f} | {r['first_call_checks_s'] * 1e6:.0f} | "
                     f"{r['epoch_ns_per_term']:.2f} | {ratio:.3f} |")
    (out / "layout_contract.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
