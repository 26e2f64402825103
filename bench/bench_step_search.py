"""What the estimators' held-out step search costs (docs/api.md, "scikit-learn estimators",
Step): work counted, fit time and test accuracy of HogwildClassifier at its defaults,
threads=1 (deterministic: the same count, step and accuracy on every run), or --threads N
(the search's candidates then run side by side, one thread each; the refit on N threads).

  python bench/bench_step_search.py --label after [--threads 1] [--repeats 3]
      [--only a9a-like/svm ...]
      -> bench/results/step_search.json (the runs by label) and bench/results/step_search.md

Work is counted in epochs of the whole training data: each training epoch of a Trainer fit
(the candidates on the rows not held out, the refit on all rows) by its terms over the
data's, each pass of the default step's calibration on the scaled-down data likewise (the
first stage's passes per grid step, the second stage's epochs per half-step; their objective
evaluations are not counted), and apart from these the objective passes (the held-out
objectives, per epoch where a fit has validation data). To compare two versions of the code,
run this file from a checkout of each with the same --results (a label per version): the
markdown shows every label's runs side by side, with the load average each ran under.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_sklearn import a9a_like, breast_cancer, digits, rcv1_like_text  # noqa: E402
from hogwild_dsl import calibrate, runtime  # noqa: E402
from hogwild_dsl.sklearn import HogwildClassifier  # noqa: E402
from machine import machine  # noqa: E402

DATA = {"breast cancer": breast_cancer, "digits": digits, "a9a-like": a9a_like,
        "rcv1-like text": rcv1_like_text}
CASES = [("breast cancer", "logreg"), ("breast cancer", "svm"), ("digits", "softmax"),
         ("a9a-like", "logreg"), ("a9a-like", "svm"), ("rcv1-like text", "logreg"),
         ("rcv1-like text", "svm")]


class Count:
    """Terms visited by training epochs, calibration passes and objectives while active (the
    step search's candidates may run on several Python threads: the sums take a lock)."""

    def __enter__(self):
        lock = threading.Lock()
        self.train = self.calibration = self.objective = 0
        self.fits = 0
        self._real = (runtime.TrainerBase._epochs, calibrate.calibrate_step,
                      runtime.TrainerBase.objective)
        epochs, calibrate_step, objective = self._real
        count = self

        def counted_epochs(trainer, arrays, sizes, held_out):
            before = len(trainer.history)
            try:
                return epochs(trainer, arrays, sizes, held_out)
            finally:
                done = len(trainer.history) - before
                nterms = trainer.kernels.Kernel(arrays, sizes).nterms
                with lock:
                    count.train += done * nterms
                    count.objective += done * (held_out.nterms if held_out is not None else 0)
                    count.fits += 1

        def counted_calibration(trainer, arrays, sizes):
            restart = calibrate_step(trainer, arrays, sizes)
            c = trainer.calibration
            if c is not None and restart is not None:
                passes = len(c["grid"]) * c["passes"] + len(c["steps"]) * c["epochs"]
                with lock:
                    count.calibration += passes * c["terms"]
            return restart

        def counted_objective(trainer, **data):
            nterms = trainer.kernels.Kernel(*trainer.layout(data)).nterms
            with lock:
                count.objective += nterms
            return objective(trainer, **data)
        runtime.TrainerBase._epochs = counted_epochs
        calibrate.calibrate_step = counted_calibration
        runtime.TrainerBase.objective = counted_objective
        return self

    def __exit__(self, *exc):
        (runtime.TrainerBase._epochs, calibrate.calibrate_step,
         runtime.TrainerBase.objective) = self._real


def case(data, spec, repeats, threads):
    Xtr, Xte, ytr, yte = data
    if not hasattr(Xtr, "tocsr"):
        scale = StandardScaler().fit(Xtr)
        Xtr, Xte = scale.transform(Xtr), scale.transform(Xte)
    n = Xtr.shape[0]
    with Count() as count:
        clf = HogwildClassifier(spec=spec, threads=threads).fit(Xtr, ytr)   # (compiles once)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        HogwildClassifier(spec=spec, threads=threads).fit(Xtr, ytr)
        times.append(time.perf_counter() - began)
    return {"epochs": (count.train + count.calibration) / n,
            "calibration_epochs": count.calibration / n, "objective_passes": count.objective / n,
            "trainer_fits": count.fits, "seconds": min(times),
            "accuracy": float(np.mean(clf.predict(Xte) == yte)), "step": clf.trainer_.step,
            "held_out": clf.step_search_}


def markdown(report) -> str:
    runs = report["runs"]
    lines = ["# The held-out step search's cost (bench/bench_step_search.py)", "",
             "HogwildClassifier at its defaults (step=None: the held-out step search), "
             "threads=1 unless a label says otherwise. Epochs: the work of one fit in epochs "
             "of the whole training data "
             "(training epochs and the default step's calibration passes on the scaled-down "
             "data, each by its terms over the data's); objective passes likewise (the "
             "held-out objectives); seconds: the best of the repeats (a shared machine: the "
             "load average each label ran under is given).", ""]
    for label, run in runs.items():
        m = run["machine"]
        loads = [r["load_average"] for r in run["cases"].values()]
        lines.append(f"- {label}: {run['commit']}, threads={run.get('threads', 1)}, "
                     f"{m['cpu']}, {m['cores']} cores usable, "
                     f"Python {m['python']}, best of {run['repeats']}, load average "
                     f"{min(loads)}-{max(loads)} at the cases' starts")
    lines += ["", "| data | spec | version | epochs (calibration) | objective passes | "
              "Trainer fits | seconds | step | accuracy |", "|---|---|---|---|---|---|---|---|---|"]
    total = {label: 0.0 for label in runs}
    for data, spec in CASES:
        for label, run in runs.items():
            r = run["cases"].get(f"{data}/{spec}")
            if r is None:
                continue
            total[label] += r["epochs"]
            lines.append(f"| {data} | {spec} | {label} | {r['epochs']:.1f} "
                         f"({r['calibration_epochs']:.1f}) | {r['objective_passes']:.1f} | "
                         f"{r['trainer_fits']} | {r['seconds']:.3f} | {r['step']:.4g} | "
                         f"{r['accuracy']:.4f} |")
    lines += ["", "Epochs in all: " + ", ".join(f"{label} {t:.1f}" for label, t in total.items())
              + ".", "", "Steps tried (held-out objective):", ""]
    for label, run in runs.items():
        for key, r in run["cases"].items():
            lines.append(f"- {label}, {key}: " + ", ".join(
                f"{s:.3g}: {v:.4f}" for s, v in r["held_out"] or ()))
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="the estimator's threads")
    ap.add_argument("--only", nargs="*", help="cases as DATA/SPEC (default: all)")
    ap.add_argument("--commit", default="", help="what the label ran (for the markdown)")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)
    path = args.results / "step_search.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    report = report if "runs" in report else {"runs": {}}      # (an older report: replaced)
    run = report["runs"].setdefault(args.label, {"cases": {}})
    run.update(machine=machine(), repeats=args.repeats, threads=args.threads,
               commit=args.commit or run.get("commit"))
    made = {}
    for data, spec in CASES:
        key = f"{data}/{spec}"
        if args.only and key not in args.only:
            continue
        if data not in made:
            made[data] = DATA[data]()
        load = round(os.getloadavg()[0], 1)
        run["cases"][key] = r = case(made[data], spec, args.repeats, args.threads)
        r["load_average"] = load
        print(f"{args.label}: {key}: {r['epochs']:.1f} epochs, {r['seconds']:.3f} s, accuracy "
              f"{r['accuracy']:.4f}", flush=True)
    args.results.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    (args.results / "step_search.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
