"""The fixed costs of a fit (issue 19, item 3), before and after, beside scikit-learn.

  python bench/bench_fixed_costs.py [--before REV] [--rows 180000] [--repeats 3]
      -> bench/results/fixed_costs.json and bench/results/fixed_costs.md

The SVM spec on RCV1-shaped rows (hogwild_dsl.datasets.rcv1_like, 180,000 training rows plus
20,000 test rows), one thread, 5 and 20 epochs at the spec's own step schedule and the default
visit order: the whole `fit` (data checks, layout, updates, objectives, rollback copies) and
the update time alone (the history's `seconds`), for this tree and for the tree of revision
--before (default: main's first commit without these changes, a251296), beside scikit-learn's
`SGDClassifier(loss="hinge", alpha=2e-4)` (the same objective: mean hinge plus 1e-4 ||w||^2)
for the same epochs. Test accuracy is reported beside each.

Every measurement runs in a fresh process (the old tree is imported from a `git archive` of
it), after one untimed warm-up fit (which also builds the kernels, once), in rounds that
alternate the three, so that a noisy machine slows all of them alike; the figure is the
minimum over the rounds. Ratios are only comparable within one run (bench/machine.py).
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
BEFORE = "a251296"


def worker(kind: str, data_path: str, epochs: int) -> dict:
    """One timed fit after one warm-up fit, in this process: {fit, updates, accuracy}."""
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
        began = time.perf_counter()
        clf = fit()
        seconds = time.perf_counter() - began
        return {"fit": seconds, "updates": None, "accuracy": float(clf.score(Xte, yte))}
    import hogwild_dsl
    mod = hogwild_dsl.load(str(Path(hogwild_dsl.__file__).parent.parent / "specs" / "svm.hog"))
    mod.Trainer(threads=1, epochs=epochs).fit(X=Xtr, y=ytr)
    t = mod.Trainer(threads=1, epochs=epochs)
    began = time.perf_counter()
    t.fit(X=Xtr, y=ytr)
    seconds = time.perf_counter() - began
    accuracy = float(np.mean(np.where(t.predict(X=Xte) >= 0, 1.0, -1.0) == yte))
    return {"fit": seconds, "updates": sum(h["seconds"] for h in t.history),
            "accuracy": accuracy}


def run(tree: Path, kind: str, data_path: str, epochs: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(HERE / "bench_fixed_costs.py"), "--worker", kind,
                          "--data", data_path, "--epochs", str(epochs)], env=env, cwd=tree,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--rows", type=int, default=180_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.epochs[0])))
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
        trees = {"before": snapshot(args.before, tmp / "before"), "after": ROOT,
                 "sklearn": ROOT}
        runs = {(k, e): [] for e in args.epochs for k in trees}
        for r in range(args.repeats):
            for e in args.epochs:
                for kind, tree in trees.items():
                    got = run(tree, "sklearn" if kind == "sklearn" else "hogwild", data_path, e)
                    runs[(kind, e)].append(got)
                    print(f"round {r + 1} epochs {e:2d} {kind:8s} fit {got['fit']:.3f} s",
                          flush=True)
    nnz = X[:args.rows].nnz
    rows = []
    for e in args.epochs:
        best = {k: min(runs[(k, e)], key=lambda g: g["fit"]) for k in trees}
        for kind in trees:
            b = best[kind]
            rows.append({"epochs": e, "what": kind, "fit_s": b["fit"],
                         "updates_s": b["updates"],
                         "fit_ns_per_nnz_epoch": b["fit"] * 1e9 / (nnz * e),
                         "accuracy": b["accuracy"],
                         "sklearn_fit_over_this": best["sklearn"]["fit"] / b["fit"],
                         "all_fits_s": [g["fit"] for g in runs[(kind, e)]]})
    result = {"machine": machine(), "before": args.before, "rows": args.rows, "nnz": nnz,
              "threads": 1, "repeats": args.repeats, "rows_measured": rows}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "fixed_costs.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Fixed costs of a fit: SVM, RCV1-shaped ({args.rows:,} rows, {nnz:,} nonzeros), "
             "1 thread", "",
             f"Machine: {result['machine']['cpu']} ({result['machine']['cores']} cores, host "
             f"{result['machine']['host']}). Minimum of {args.repeats} alternating rounds, "
             "each a fresh process after a warm-up fit. `before` is revision "
             f"{args.before}; `after` this tree.", "",
             "| epochs | what | fit (s) | updates (s) | fixed costs (s) | ns/nnz/epoch (fit) "
             "| test accuracy | scikit-learn's fit / this fit |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        upd = "" if r["updates_s"] is None else f"{r['updates_s']:.3f}"
        fixed = "" if r["updates_s"] is None else f"{r['fit_s'] - r['updates_s']:.3f}"
        lines.append(f"| {r['epochs']} | {r['what']} | {r['fit_s']:.3f} | {upd} | {fixed} | "
                     f"{r['fit_ns_per_nnz_epoch']:.2f} | {r['accuracy']:.4f} | "
                     f"{r['sklearn_fit_over_this']:.2f}x |")
    (out / "fixed_costs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
