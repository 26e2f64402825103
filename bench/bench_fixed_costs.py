"""The SVM fit beside scikit-learn's (issue 19): fixed costs and updates, 1 and 2 threads.

  python bench/bench_fixed_costs.py [--before REV] [--rows 180000] [--repeats 3]
      -> bench/results/fixed_costs.json and bench/results/fixed_costs.md

The SVM spec on RCV1-shaped rows (hogwild_dsl.datasets.rcv1_like, 180,000 training rows plus
20,000 test rows), 5 and 20 epochs at the spec's own step schedule and the default visit
order: the whole `fit` (data checks, layout, updates, objectives, rollback copies) and the
update time alone (the history's `seconds`), on 1 and 2 threads, for modules of both dtypes
(float64, the default, and float32: API.md), and for the tree of revision --before on 1
thread (float64), beside scikit-learn's `SGDClassifier(loss="hinge", alpha=2e-4)` (the same
objective: mean hinge plus 1e-4 ||w||^2; one thread: its binary fit has no other) for the
same epochs. Test accuracy is reported beside each. Two parts of the fixed costs are timed
apart, after the fit: `layout` (the data's checks and conversion: `t.layout(X=..., y=...)` on
a fresh trainer) and the exact objective (one `objective_sum` pass, which the fit runs
after its last epoch).

Every measurement runs in a fresh process (the old tree is imported from a `git archive` of
it) with OMP_NUM_THREADS set to its threads, after one untimed warm-up fit (which also builds
the kernels, once), in rounds that alternate every kind, so that a noisy machine slows all
of them alike; the figure is the minimum over the rounds, and the load average before each
run is recorded. Ratios are only comparable within one run (bench/machine.py).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEFORE = "80cbc1a"      # main before the layout's fast path for canonical CSR


def worker(kind: str, data_path: str, epochs: int, threads: int, dtype: str) -> dict:
    """One timed fit after one warm-up fit, in this process: {fit, updates, accuracy, ...}."""
    with np.load(data_path) as f:
        import scipy.sparse as sp
        X = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
        y, n_train = f["y"], int(f["n_train"])
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    if kind == "sklearn":
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import SGDClassifier
        warnings.simplefilter("ignore", ConvergenceWarning)

        def fit():
            return SGDClassifier(loss="hinge", alpha=2e-4, max_iter=epochs, tol=None,
                                 random_state=0).fit(Xtr, ytr)
        fit()
        began, cpu = time.perf_counter(), time.process_time()
        clf = fit()
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        return {"fit": seconds, "cpu": cpu, "updates": None,
                "accuracy": float(clf.score(Xte, yte))}
    import hogwild_dsl
    mod = hogwild_dsl.load("svm", **({} if dtype == "float64" else {"dtype": dtype}))
    mod.Trainer(threads=threads, epochs=epochs).fit(X=Xtr, y=ytr)
    t = mod.Trainer(threads=threads, epochs=epochs)
    began, cpu = time.perf_counter(), time.process_time()
    t.fit(X=Xtr, y=ytr)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    accuracy = float(np.mean(np.where(t.predict(X=Xte) >= 0, 1.0, -1.0) == yte))
    fresh = mod.Trainer(threads=threads, epochs=epochs)
    began = time.perf_counter()
    arrays, sizes = fresh.layout({"X": Xtr, "y": ytr})
    layout = time.perf_counter() - began
    kernel = t.kernels.Kernel({**arrays, "w": t.params["w"]}, sizes)
    began = time.perf_counter()
    kernel.objective_sum(threads)
    objective = time.perf_counter() - began
    return {"fit": seconds, "cpu": cpu, "updates": sum(h["seconds"] for h in t.history),
            "accuracy": accuracy, "layout": layout, "objective": objective}


def run(tree: Path, kind: str, data_path: str, epochs: int, threads: int, dtype: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(threads))
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, str(HERE / "bench_fixed_costs.py"), "--worker", kind,
                          "--data", data_path, "--epochs", str(epochs), "--threads",
                          str(threads), "--dtype", dtype], env=env, cwd=tree,
                         check=True, capture_output=True, text=True).stdout
    return {**json.loads(out.strip().splitlines()[-1]), "load": load}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--rows", type=int, default=180_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float64", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.epochs[0], args.threads,
                                args.dtype)))
        return
    sys.path.insert(0, str(ROOT))
    from bench.machine import machine, snapshot
    from hogwild_dsl import datasets
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        X, y = datasets.rcv1_like(n_rows=args.rows + args.rows // 9, seed=0)
        data_path = str(tmp / "rcv1.npz")
        np.savez(data_path, data=X.data, indices=X.indices, indptr=X.indptr,
                 shape=np.array(X.shape), y=y, n_train=args.rows)
        before = snapshot(args.before, tmp / "before")
        # (label, tree, worker kind, threads, dtype)
        kinds = [("before, 1 thread", before, "hogwild", 1, "float64"),
                 ("float64, 1 thread", ROOT, "hogwild", 1, "float64"),
                 ("float64, 2 threads", ROOT, "hogwild", 2, "float64"),
                 ("float32, 1 thread", ROOT, "hogwild", 1, "float32"),
                 ("float32, 2 threads", ROOT, "hogwild", 2, "float32"),
                 ("sklearn", ROOT, "sklearn", 1, "float64")]
        runs = {(k[0], e): [] for e in args.epochs for k in kinds}
        for r in range(args.repeats):
            for e in args.epochs:
                for label, tree, kind, threads, dtype in kinds:
                    got = run(tree, kind, data_path, e, threads, dtype)
                    runs[(label, e)].append(got)
                    print(f"round {r + 1} epochs {e:2d} {label:18s} fit {got['fit']:.3f} s "
                          f"(load {got['load']:.2f})", flush=True)
    nnz = X[:args.rows].nnz
    rows = []
    for e in args.epochs:
        best = {k[0]: min(runs[(k[0], e)], key=lambda g: g["fit"]) for k in kinds}
        for label, *_ in kinds:
            b = best[label]
            done = runs[(label, e)]
            rows.append({"epochs": e, "what": label, "fit_s": b["fit"],
                         "updates_s": b["updates"],
                         "layout_s": min((g["layout"] for g in done if "layout" in g),
                                         default=None),
                         "objective_s": min((g["objective"] for g in done if "objective" in g),
                                            default=None),
                         "fit_cpu_s": min(g["cpu"] for g in done),
                         "sklearn_cpu_over_this": min(g["cpu"] for g in runs[("sklearn", e)]) /
                         min(g["cpu"] for g in done),
                         "fit_ns_per_nnz_epoch": b["fit"] * 1e9 / (nnz * e),
                         "accuracy": b["accuracy"],
                         "sklearn_fit_over_this": best["sklearn"]["fit"] / b["fit"],
                         "all_fits_s": [g["fit"] for g in done],
                         "loads": [g["load"] for g in done]})
    result = {"machine": machine(), "before": args.before, "rows": args.rows, "nnz": nnz,
              "repeats": args.repeats, "rows_measured": rows}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "fixed_costs.json").write_text(json.dumps(result, indent=2) + "\n")

    def cell(v, fmt=".3f"):
        return "" if v is None else format(v, fmt)

    lines = [f"# SVM fit beside scikit-learn: RCV1-shaped ({args.rows:,} rows, {nnz:,} "
             "nonzeros), 1 and 2 threads", "",
             f"Machine: {result['machine']['cpu']} ({result['machine']['cores']} cores, host "
             f"{result['machine']['host']}), shared with other work: load averages of each run "
             f"in fixed_costs.json. Minimum of {args.repeats} alternating rounds, each a fresh "
             "process after a warm-up fit. `before` is revision "
             f"{args.before} (float64, 1 thread); the others this tree. Updates: the history's "
             "`seconds` in the fastest fit; fixed costs: fit - updates; layout and exact "
             "objective timed apart after the fit (bench/bench_fixed_costs.py). CPU time: the "
             "fit's process time (minimum over the rounds), which a busy machine inflates "
             "less than the wall time; on 1 thread it is the fit's own work, on 2 it is both "
             "threads' (waits included), so only its 1-thread ratio is a speed ratio.", "",
             "| epochs | what | fit (s) | updates (s) | fixed costs (s) | of which layout (s) "
             "| exact objective (s) | ns/nnz/epoch (fit) | test accuracy | scikit-learn's fit "
             "/ this fit | fit CPU (s) | scikit-learn's CPU / this CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fixed = None if r["updates_s"] is None else r["fit_s"] - r["updates_s"]
        lines.append(f"| {r['epochs']} | {r['what']} | {r['fit_s']:.3f} | "
                     f"{cell(r['updates_s'])} | {cell(fixed)} | {cell(r['layout_s'])} | "
                     f"{cell(r['objective_s'])} | {r['fit_ns_per_nnz_epoch']:.2f} | "
                     f"{r['accuracy']:.4f} | {r['sklearn_fit_over_this']:.2f}x | "
                     f"{r['fit_cpu_s']:.3f} | {r['sklearn_cpu_over_this']:.2f}x |")
    (out / "fixed_costs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
