"""The cost of the history's objective: SVM fits on RCV1-shaped rows (hogwild_dsl.datasets.
rcv1_like) at 1 thread, 10 epochs, with the history's sample as runtime's EVAL_* constants
set it, against the rule before them (exact up to 10,000 terms, else a sample of 10,000), the
two alternating, best of `repeats` fits each; the update time of the epochs beside them.

  python bench/bench_history_sample.py [--rows 5000,13500,50000,150000] [--repeats 3]
      -> bench/results/history_sample.json and .md
"""
import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import hogwild_dsl  # noqa: E402
from hogwild_dsl import datasets, runtime  # noqa: E402
from machine import machine  # noqa: E402

BEFORE = {"EVAL_TERMS": 10_000, "EVAL_MIN_TERMS": 10_000, "EVAL_SHARE": 1}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="5000,13500,50000,150000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args(argv)
    now = {k: getattr(runtime, k) for k in BEFORE}
    mod = hogwild_dsl.load("svm")
    runs = []
    for rows in (int(r) for r in args.rows.split(",")):
        X, y = datasets.rcv1_like(n_rows=rows, seed=0)
        fits = {"before": [], "now": []}
        updates = []
        for _ in range(args.repeats):
            for name, constants in (("before", BEFORE), ("now", now)):
                for k, v in constants.items():
                    setattr(runtime, k, v)
                t = mod.Trainer(threads=1, epochs=args.epochs, seed=0, progress=False)
                began = time.perf_counter()
                t.fit(X=X, y=y)
                fits[name].append(time.perf_counter() - began)
                updates.append(sum(h["seconds"] for h in t.history))
        runs.append({"rows": rows, "nnz": int(X.nnz), "fit_before_s": min(fits["before"]),
                     "fit_now_s": min(fits["now"]), "updates_s": min(updates)})
        print(runs[-1], flush=True)
    result = {"machine": machine(), "epochs": args.epochs, "repeats": args.repeats,
              "now": now, "before": BEFORE, "runs": runs,
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = HERE / "results" / "history_sample"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = ["# The history objective's cost: SVM fits, 1 thread (bench/bench_history_sample.py)",
             "", f"Machine: {m['cpu']}, {m['cores']} cores ({m['host']}); {result['when']}. "
             f"{args.epochs} epochs on RCV1-shaped rows; best of {args.repeats} fits each, "
             "the two rules alternating. Before: the history's objective exact up to 10,000 "
             "terms, else on a sample of 10,000; now: exact up to "
             f"{now['EVAL_MIN_TERMS']:,} terms, else a sample of 1/{now['EVAL_SHARE']} of "
             f"the terms, {now['EVAL_MIN_TERMS']:,} to {now['EVAL_TERMS']:,}. Both end with "
             "the exact objective.", "",
             "| rows | nonzeros | fit before (s) | fit now (s) | now / before | updates (s) |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['rows']:,} | {r['nnz']:,} | {r['fit_before_s']:.4f} | "
                     f"{r['fit_now_s']:.4f} | {r['fit_now_s'] / r['fit_before_s']:.2f} | "
                     f"{r['updates_s']:.4f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
