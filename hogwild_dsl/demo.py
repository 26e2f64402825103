"""The paper's Table 2 at small scale (`hogwildc demo`): its three problems (sparse SVM, matrix
completion, graph cuts on two graphs) on generated data of the paper's shapes, each trained with
sync='hogwild' on 1 thread and on N, and with sync='lock' on N, in one process; prints the
sparsity statistics, the times, the speed-up and a test metric per problem."""
from __future__ import annotations

import sys
import time

from . import shipped
from .errors import HogwildError

SCALES = {
    # name: (generator kwargs per problem, epochs override or None)
    "small": {
        "svm": dict(n_rows=100000, n_features=20000, nnz_per_row=50, noise=0.05),
        "mc": dict(n_users=20000, n_items=5000, n_ratings=1500000, rank=10, test_frac=0.1),
        "dblife": dict(n_nodes=20000, n_labels=5, avg_degree=8),
        "abdomen": dict(height=48, width=48, depth=24, n_labels=4, neighbours=6, noise=0.3),
        "epochs": None,
    },
    "tiny": {
        "svm": dict(n_rows=600, n_features=300, nnz_per_row=10, noise=0.05),
        "mc": dict(n_users=80, n_items=60, n_ratings=1500, rank=3, test_frac=0.1),
        "dblife": dict(n_nodes=300, n_labels=3, avg_degree=4),
        "abdomen": dict(height=8, width=8, depth=4, n_labels=3, neighbours=6, noise=0.3),
        "epochs": 3,
    },
}


def problems(scale: str, seed: int = 0):
    """(label, spec name, train data, evaluation data, metric name, metric function)."""
    import numpy as np
    from . import datasets
    cfg = SCALES[scale]

    X, y = datasets.rcv1_like(seed=seed, **cfg["svm"])
    Xtr, Xte, ytr, yte = datasets.train_test_split_rows(X, y, 0.2, seed)

    def accuracy(t, test):
        pred = np.asarray(t.predict(X=test["X"]), dtype=float)
        return float(np.mean(np.where(pred >= 0, 1.0, -1.0) == np.asarray(test["y"])))

    yield ("RCV1-like SVM", "svm", {"X": Xtr, "y": ytr}, {"X": Xte, "y": yte},
           "test accuracy", accuracy)

    train, test = datasets.netflix_like(seed=seed, **cfg["mc"])

    def rmse(t, test):
        r = test["r"].tocsr()
        r.sum_duplicates()
        pred = np.asarray(t.predict(r=r), dtype=float)
        return float(np.sqrt(np.mean((pred - r.data) ** 2)))

    yield ("Netflix-like MC", "mc", {"r": train}, {"r": test}, "test RMSE", rmse)

    def agreement(truth):
        def metric(t, data):
            labels = np.asarray(t.predict(**data)).astype(np.int64)
            return float(np.mean(labels == truth))
        return metric

    w, c, truth, _ = datasets.dblife_like(seed=seed, return_truth=True, **cfg["dblife"])
    yield ("DBLife-like cuts", "cuts", {"w": w, "c": c}, {"w": w, "c": c},
           "planted labels found", agreement(np.asarray(truth)))
    w, c, truth, _ = datasets.abdomen_like(seed=seed, return_truth=True, **cfg["abdomen"])
    yield ("Abdomen-like cuts", "cuts", {"w": w, "c": c}, {"w": w, "c": c},
           "planted labels found", agreement(np.asarray(truth)))


def _timed_fit(mod, data, **options):
    """A fresh trainer fitted on `data`, and the seconds of its epochs (the wall time of the
    fit where the history has none)."""
    t = mod.Trainer(**options)
    start = time.perf_counter()
    t.fit(**data)
    wall = time.perf_counter() - start
    secs = [h["seconds"] for h in t.history or [] if h.get("seconds") is not None]
    return t, float(sum(secs)) if secs else wall


def run(scale: str, threads: int, epochs: int | None = None, on_error=None) -> int:
    """Run the demo and print its table; the number of problems that failed. A problem's
    HogwildError goes to `on_error(message)` (stderr by default) and the others still run."""
    from .analyze import analyze
    from .check import check
    from .jit import load
    on_error = on_error or (lambda message: print(message, file=sys.stderr))
    epochs = epochs or SCALES[scale]["epochs"]
    started = time.perf_counter()
    print(f"HOGWILD! demo ({scale} scale): each problem trained with sync='hogwild' on 1 "
          f"and on {threads} threads, and with sync='lock' on {threads} threads.", flush=True)
    modules = {}
    rows, failures = [], 0
    for label, name, train, test, metric_name, metric in problems(scale):
        print(f"  {label}: ", end="", flush=True)
        try:
            stats = analyze(check(shipped.text(name)), train)
            if name not in modules:
                print("compiling, ", end="", flush=True)
                modules[name] = load(text=shipped.text(name))
            mod = modules[name]
            common = dict(epochs=epochs, seed=0, progress=False)
            common = {k: v for k, v in common.items() if v is not None}
            print("1 thread, ", end="", flush=True)
            _, t1 = _timed_fit(mod, train, threads=1, sync="hogwild", **common)
            print(f"{threads} threads, ", end="", flush=True)
            tn, tn_s = _timed_fit(mod, train, threads=threads, sync="hogwild", **common)
            print("lock", flush=True)
            _, tl = _timed_fit(mod, train, threads=threads, sync="lock", **common)
            hist = list(tn.history or [])
            objective = hist[-1].get("objective") if hist else tn.objective(**train)
            value = metric(tn, test)
            rows.append((label, stats["n_terms"], stats["rho"], stats["Delta"], t1, tn_s,
                         t1 / tn_s if tn_s > 0 else float("nan"), tl, objective,
                         f"{metric_name} {value:.4g}"))
        except HogwildError as e:
            failures += 1
            print("failed", flush=True)
            on_error(f"{label}: {e}")
            rows.append((label, None, None, None, None, None, None, None, None, "failed"))
    print()
    nt = f"{threads}t"
    head = (f"{'data':<18} {'terms':>8} {'rho':>8} {'Delta':>8} {'hogwild 1t':>10} "
            f"{'hogwild ' + nt:>10} {'speed-up':>8} {'lock ' + nt:>8} {'objective':>10}  result")
    print(head)
    print("-" * len(head))
    for label, n, rho, delta, t1, tn, sp_, tl, obj, res in rows:
        if n is None:
            print(f"{label:<18} {'-':>8} {'-':>8} {'-':>8} {'-':>10} {'-':>10} {'-':>8} "
                  f"{'-':>8} {'-':>10}  {res}")
            continue
        print(f"{label:<18} {n:>8} {rho:>8.2g} {delta:>8.2g} {t1:>9.3f}s {tn:>9.3f}s "
              f"{sp_:>7.2f}x {tl:>7.3f}s {obj:>10.4g}  {res}")
    print(f"\nspeed-up: hogwild at 1 thread / hogwild at {threads} threads (epochs: "
          f"{epochs or 'from each spec'}); total {time.perf_counter() - started:.1f} s")
    return failures
