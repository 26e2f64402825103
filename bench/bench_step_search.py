"""What the estimators' held-out step search costs, part by part, and one way to make it
cheaper (docs/api.md, "scikit-learn estimators", Step).

  python bench/bench_step_search.py [--repeats 15]
      -> bench/results/step_search.json and bench/results/step_search.md

At threads=1 (the least noisy on a shared machine), per data set and spec: the fit time (best
and median of --repeats after a warm-up), the time in the default step's calibration (the
first candidate's), in the other candidates' Trainer fits, in their held-out objectives and
in the refit on all rows, the Trainer fits made, the step chosen and the test accuracy; and
SGDClassifier's fit time beside it.

The variant measured, "grid-only calibration": the calibration's second stage (half-steps
around the grid's best, each trained for the fit's epochs on the training objective) left out,
so the held-out walk starts from the grid's best. The held-out walk trains the same epochs at
steps 3x apart and judges them on held-out rows, so that stage's work is done again, and
judged better, right after it. The variant is made here by replacing calibrate.walk's second
call (an experiment: the code itself is unchanged).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_sklearn import a9a_like, breast_cancer, digits  # noqa: E402
from hogwild_dsl import calibrate, runtime  # noqa: E402
from hogwild_dsl.sklearn import HogwildClassifier  # noqa: E402
from machine import machine  # noqa: E402

RESULTS = HERE / "results"
CASES = [("breast cancer", breast_cancer, "logreg"), ("breast cancer", breast_cancer, "svm"),
         ("digits", digits, "softmax"), ("a9a-like", a9a_like, "logreg"),
         ("a9a-like", a9a_like, "svm")]
VARIANTS = ("current", "grid-only calibration")
_walk = calibrate.walk


def _grid_only_walk(judge, start, stride, *args, **kwargs):
    """calibrate.walk, but its second call (the half-steps: stride 1) judges nothing and hands
    back the grid's best as the best (an objective of -inf)."""
    if stride == 1:
        return {start[1]: -np.inf}
    return _walk(judge, start, stride, *args, **kwargs)


def variant(name: str):
    calibrate.walk = _grid_only_walk if name == "grid-only calibration" else _walk


class Parts:
    """Seconds spent in the Trainer's fit, calibration and objective while active."""

    def __init__(self):
        self.fit = self.cal = self.obj = 0.0
        self.fits = 0
        self._real = (runtime.TrainerBase.fit, runtime.TrainerBase._calibrate_step,
                      runtime.TrainerBase.objective)

    def __enter__(self):
        fit, cal, obj = self._real
        parts = self

        def timed(f, attr, count=False):
            def run(*a, **k):
                began = time.perf_counter()
                try:
                    return f(*a, **k)
                finally:
                    setattr(parts, attr, getattr(parts, attr) + time.perf_counter() - began)
                    if count:
                        parts.fits += 1
            return run
        runtime.TrainerBase.fit = timed(fit, "fit", count=True)
        runtime.TrainerBase._calibrate_step = timed(cal, "cal")
        runtime.TrainerBase.objective = timed(obj, "obj")
        return self

    def __exit__(self, *exc):
        (runtime.TrainerBase.fit, runtime.TrainerBase._calibrate_step,
         runtime.TrainerBase.objective) = self._real


def case(data, spec, repeats):
    Xtr, Xte, ytr, yte = data
    if not hasattr(Xtr, "tocsr"):
        scale = StandardScaler().fit(Xtr)
        Xtr, Xte = scale.transform(Xtr), scale.transform(Xte)
    rows = {}
    for name in VARIANTS:                 # warm-up (compiles once), and the breakdown
        variant(name)
        HogwildClassifier(spec=spec, threads=1).fit(Xtr, ytr)
        with Parts() as parts:
            began = time.perf_counter()
            clf = HogwildClassifier(spec=spec, threads=1).fit(Xtr, ytr)
            total = time.perf_counter() - began
        rows[name] = {"accuracy": float(np.mean(clf.predict(Xte) == yte)),
                      "step": clf.trainer_.step, "trainer_fits": parts.fits,
                      "held_out": clf.step_search_, "breakdown": {
                          "total": total, "calibration": parts.cal,
                          "other_trainer_fits": parts.fit - parts.cal,
                          "held_out_objectives": parts.obj,
                          "rest": total - parts.fit - parts.obj}, "times": []}
    for _ in range(repeats):              # interleaved: the machine's load hits both alike
        for name in VARIANTS:
            variant(name)
            began = time.perf_counter()
            HogwildClassifier(spec=spec, threads=1).fit(Xtr, ytr)
            rows[name]["times"].append(time.perf_counter() - began)
    variant("current")
    sgd = []
    for _ in range(repeats):
        began = time.perf_counter()
        SGDClassifier().fit(Xtr, ytr)
        sgd.append(time.perf_counter() - began)
    for r in rows.values():
        r["best"], r["median"] = min(r["times"]), float(np.median(r["times"]))
        del r["times"]
    return {"variants": rows, "sgd_best": min(sgd)}


def markdown(report) -> str:
    m = report["machine"]
    lines = ["# The held-out step search's cost (bench/bench_step_search.py)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores usable, {m['host']}; Python "
             f"{m['python']}; threads=1; best and median of {report['repeats']} fits, the "
             f"variants interleaved. Load average at the start: {report['load_average']:.1f} "
             "(a shared machine: compare within one run only).", "",
             "Breakdown of one fit (ms): calibration (the first candidate's default step), "
             "the other Trainer fits (candidates and the refit), the held-out objectives, the "
             "rest (validation, split, estimator code).", "",
             "| data | spec | variant | best ms | median ms | SGDClassifier ms | calibration | "
             "other fits | held-out obj. | rest | Trainer fits | step | accuracy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, c in report["cases"].items():
        data, spec = key.split(" / ")
        for name, r in c["variants"].items():
            b = r["breakdown"]
            lines.append(
                f"| {data} | {spec} | {name} | {1e3 * r['best']:.1f} | {1e3 * r['median']:.1f} "
                f"| {1e3 * c['sgd_best']:.1f} | {1e3 * b['calibration']:.1f} | "
                f"{1e3 * b['other_trainer_fits']:.1f} | {1e3 * b['held_out_objectives']:.1f} | "
                f"{1e3 * b['rest']:.1f} | {r['trainer_fits']} | {r['step']:.4g} | "
                f"{r['accuracy']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)
    report = {"machine": machine(), "repeats": args.repeats,
              "load_average": os.getloadavg()[0], "cases": {}}
    made = {}
    for data, make, spec in CASES:
        if data not in made:
            made[data] = make()
        report["cases"][f"{data} / {spec}"] = case(made[data], spec, args.repeats)
        print(f"{data} / {spec} done", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "step_search.json").write_text(json.dumps(report, indent=1))
    (RESULTS / "step_search.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
