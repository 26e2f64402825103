"""The held-out step search's candidates on part of the rows not held out (sklearn.py,
SEARCH_SHARE): does the held-out objective pick the same step?

  python bench/bench_step_search_subsample.py [--only a9a-like ...]
      -> bench/results/step_search_subsample.json and bench/results/step_search_subsample.md

bench_sklearn's large data sets (the training split of each; dense data after
StandardScaler). Lattice: the estimator's own held-out split (validation_fraction 0.1, seed
0, stratified for the classifier); for each step of the search's lattice around the step the
estimator chooses at its defaults (threads=1), a Trainer at that step for the spec's
epochs (threads=1, seed 0) on all the rows not held out, or on a random two thirds, half,
third or quarter of them, records the objective on the held-out rows after each epoch; and
the refit on all training rows at that step its test accuracy (R^2 for regression).
Searches: the estimator at its defaults, threads=1, seeds 0-3 (each its own split), with
SEARCH_SHARE 1 (every candidate on all the rows not held out), 1/2 and 2/3: the step it ends
at and the test score of its model. Not timed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_sklearn as B  # noqa: E402
import hogwild_dsl.sklearn as hs  # noqa: E402

CASES = [("a9a-like", "logreg"), ("a9a-like", "svm"), ("rcv1-like text", "logreg"),
         ("rcv1-like text", "svm"), ("california-like", "linreg"), ("california-like", "fm"),
         ("friedman1", "linreg"), ("friedman1", "fm"), ("rcv1-like text regression", "linreg"),
         ("rcv1-like text regression", "fm")]
PARTS = ("all", "two thirds", "half", "third", "quarter")
SHARES = (1.0, 0.5, 2 / 3)
SEEDS = (0, 1, 2, 3)


def case(name, spec):
    Xtr, Xte, ytr, yte = B.DATASETS[name]()
    if not sp.issparse(Xtr):
        scale = StandardScaler().fit(Xtr)
        Xtr, Xte = scale.transform(Xtr), scale.transform(Xte)
    reg = name in B.REGRESSION
    est = (hs.HogwildRegressor if reg else hs.HogwildClassifier)(spec=spec, threads=1)
    est.fit(Xtr, ytr)
    module, Xd, yd = est._x_binding()
    if reg:
        labels, codes = np.asarray(ytr, float), None
    else:
        classes, codes = np.unique(ytr, return_inverse=True)
        labels = codes * 2.0 - 1.0

    def take(idx):
        return {Xd.name: Xtr if idx is None else Xtr[idx],
                yd.name: labels if idx is None else labels[idx]}
    fit_rows, val_rows = est._split_rows(Xtr.shape[0], codes)
    held = take(val_rows)
    rng = np.random.default_rng(0)
    n = len(fit_rows)
    parts = {"all": fit_rows, "half": np.sort(fit_rows[rng.permutation(n)[: n // 2]]),
             "third": np.sort(fit_rows[rng.permutation(n)[: n // 3]]),
             "quarter": np.sort(fit_rows[rng.permutation(n)[: n // 4]]),
             "two thirds": np.sort(fit_rows[rng.permutation(n)[: 2 * n // 3]])}

    def trainer(step, data):
        t = module.Trainer(threads=1, step=step, seed=0)
        start = est._start(module, data)
        if start is not None:
            t.params = {k: v.copy() for k, v in start.items()}
        return t
    out = {"chosen": est.trainer_.step, "search": est.step_search_, "steps": {}}
    for k in range(-3, 3):
        step = est.trainer_.step * 3.0 ** k
        row = {}
        for part, idx in parts.items():
            data = take(idx)
            t = trainer(step, data)
            try:
                t.fit(**data, validation=held)
                row[part] = [h["validation_objective"] for h in t.history]
            except hs.DivergenceError:
                row[part] = [float("inf")]
        t = trainer(step, take(None))
        try:
            t.fit(**take(None))
            p = t.predict(**{Xd.name: Xte})
            if reg:
                row["test"] = float(r2_score(yte, p))
            else:
                cut = 0.5 if spec == "logreg" else 0.0
                row["test"] = float(np.mean(classes[(p > cut).astype(int)] == yte))
        except hs.DivergenceError:
            row["test"] = float("nan")
        out["steps"][f"{step:.4g}"] = row
        print(name, spec, f"{step:.4g}", row["test"],
              " ".join(f"{p}:{row[p][-1]:.4f}" for p in PARTS), flush=True)
    return out


def searches(name, spec):
    """(seed, share) -> (the step the estimator's search ends at, its model's test score)."""
    Xtr, Xte, ytr, yte = B.DATASETS[name]()
    if not sp.issparse(Xtr):
        scale = StandardScaler().fit(Xtr)
        Xtr, Xte = scale.transform(Xtr), scale.transform(Xte)
    reg = name in B.REGRESSION
    out = {}
    saved = hs.SEARCH_SHARE, hs.SEARCH_ROWS
    try:
        for seed in SEEDS:
            for share in SHARES:
                hs.SEARCH_SHARE = share
                hs.SEARCH_ROWS = saved[1] if share < 1 else 1 << 62
                est = (hs.HogwildRegressor if reg else hs.HogwildClassifier)(
                    spec=spec, threads=1, seed=seed).fit(Xtr, ytr)
                out[f"{seed} {share:.3f}"] = (est.trainer_.step, float(est.score(Xte, yte)))
            print(name, spec, seed, [out[f"{seed} {s:.3f}"] for s in SHARES], flush=True)
    finally:
        hs.SEARCH_SHARE, hs.SEARCH_ROWS = saved
    return out


def markdown(results) -> str:
    lines = ["# The step search's candidates on part of the rows "
             "(bench/bench_step_search_subsample.py)", "",
             "Each cell: the objective on the estimator's held-out rows after the spec's epochs "
             "at that step (threads=1, seed 0), trained on all the rows not held out (`all`: "
             "the candidates before SEARCH_SHARE) or on a random half, third or quarter of "
             "them (inf: diverged); `test`: the test accuracy (R^2) of the refit on all the "
             "training rows at that step. Bold: the lowest of each column over these steps.",
             ""]
    for key, res in results.items():
        steps = list(res["steps"])
        best = {p: min(steps, key=lambda s: res["steps"][s][p][-1]) for p in PARTS}
        lines += [f"## {key}", "", "| step | " + " | ".join(PARTS) + " | test |",
                  "|---" * (len(PARTS) + 2) + "|"]
        for s in steps:
            r = res["steps"][s]
            cells = [("inf" if r[p][-1] == float("inf") else f"{r[p][-1]:.4f}") for p in PARTS]
            cells = [f"**{c}**" if best[p] == s else c for p, c in zip(PARTS, cells)]
            lines.append(f"| {s} | " + " | ".join(cells) + f" | {r['test']:.4f} |")
        lines += ["", "Lowest: " + ", ".join(
            f"{p} at {best[p]} (test {res['steps'][best[p]]['test']:.4f})" for p in PARTS), ""]
    lines += ["## Searches: the step the estimator ends at, and its test score", "",
              "threads=1; each seed its own held-out split; SEARCH_SHARE 1 is every candidate on "
              "all the rows not held out (the search before SEARCH_SHARE). A cell differs from "
              "share 1's: marked with its test score's difference.", "",
              "| case | seed | " + " | ".join(f"share {s:.3g}" for s in SHARES) + " |",
              "|---|---|" + "---|" * len(SHARES)]
    same = {s: 0 for s in SHARES}
    total = 0
    for key, res in results.items():
        for seed in SEEDS:
            base = res["searches"][f"{seed} {1.0:.3f}"]
            cells = []
            for s in SHARES:
                step, score = res["searches"][f"{seed} {s:.3f}"]
                differs = abs(step / base[0] - 1) > 1e-6      # (3^k computed two ways)
                same[s] += not differs
                cells.append(f"{step:.3g}: {score:.4f}" + (f" ({score - base[1]:+.4f})"
                                                         if differs else ""))
            total += 1
            lines.append(f"| {key} | {seed} | " + " | ".join(cells) + " |")
    lines += ["", "Ends at share 1's step: " + ", ".join(
        f"share {s:.3g} in {same[s]} of {total}" for s in SHARES[1:]) + ".", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="data set names (default: all)")
    ap.add_argument("--markdown", action="store_true",
                    help="rewrite the markdown from the JSON of the last run")
    args = ap.parse_args(argv)
    out = HERE / "results"
    if args.markdown:
        results = json.loads((out / "step_search_subsample.json").read_text())
        (out / "step_search_subsample.md").write_text(markdown(results))
        return
    results = {}
    for name, spec in CASES:
        if not args.only or name in args.only:
            results[f"{name}, {spec}"] = {**case(name, spec), "searches": searches(name, spec)}
    (out / "step_search_subsample.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "step_search_subsample.md").write_text(markdown(results))


if __name__ == "__main__":
    main()
