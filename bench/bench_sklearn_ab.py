"""Default-settings fit time of two versions of hogwild_dsl/sklearn.py side by side, in one
process, alternated fit by fit (a shared machine's load then weighs on both alike), beside
scikit-learn's SGDClassifier / SGDRegressor.

  git show b7da9d8:hogwild_dsl/sklearn.py > /tmp/sklearn_before.py
  python bench/bench_sklearn_ab.py --before /tmp/sklearn_before.py [--threads 1] \
      [--repeats 5] a9a-like "rcv1-like text" ...

Prints, per data set of bench_sklearn and spec, the best fit time of each version and of
SGD, the test score and the step chosen. The other version is imported as
hogwild_dsl.sklearn_before (it must work with this checkout's runtime).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_sklearn as B  # noqa: E402
import hogwild_dsl.sklearn as after  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the other version's sklearn.py")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("data", nargs="+", choices=sorted(B.DATASETS))
    args = ap.parse_args(argv)
    spec = importlib.util.spec_from_file_location("hogwild_dsl.sklearn_before", args.before)
    before = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = before
    spec.loader.exec_module(before)
    warnings.simplefilter("ignore", ConvergenceWarning)
    for name in args.data:
        Xtr, Xte, ytr, yte = B.DATASETS[name]()
        reg = name in B.REGRESSION
        scale = [] if sp.issparse(Xtr) else [StandardScaler()]
        for spec_name in (["linreg", "fm"] if reg else ["logreg", "svm"]):
            pipes = {k: make_pipeline(*scale, (m.HogwildRegressor if reg else m.HogwildClassifier)(
                spec=spec_name, threads=args.threads)) for k, m in (("before", before),
                                                                      ("after", after))}
            pipes["sgd"] = make_pipeline(*scale, SGDRegressor() if reg else SGDClassifier())
            times = {k: [] for k in pipes}
            for p in pipes.values():
                p.fit(Xtr, ytr)                       # warm-up (compiles once)
            for _ in range(args.repeats):
                for k, p in pipes.items():
                    began = time.perf_counter()
                    p.fit(Xtr, ytr)
                    times[k].append(time.perf_counter() - began)
            out = []
            for k, p in pipes.items():
                trainer = getattr(p[-1], "trainer_", None)
                out.append(f"{k} {min(times[k]):.3f}s score {p.score(Xte, yte):.4f}"
                           + (f" step {trainer.step:.3g}" if trainer is not None else ""))
            print(f"{name:26s} {spec_name:6s} | " + " | ".join(out), flush=True)


if __name__ == "__main__":
    main()
