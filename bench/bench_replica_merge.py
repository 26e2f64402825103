"""Replicas' merges: the SVM on RCV1-shaped rows (hogwild_dsl.datasets.rcv1_like), `epochs`
epochs at the spec's step, hogwild with the default replicas, at each thread count and each
runtime.MERGE_COST asked for: the update time of the epochs (the best of `repeats` fits) and
the objective after the last epoch, beside the 1-thread run, for the hogwild_dsl of the tree
given (run once per tree, side by side, to compare two revisions).

  python bench/bench_replica_merge.py TREE --threads 1,2,3,4,8,16 --rows 800000
  python bench/bench_replica_merge.py . --threads 2 --costs 8,32,64,256 --out replica_merge_cost

Prints one line per run; with --out, writes bench/results/OUT.json and OUT.md.
bench/results/replica_merge.md holds a run on the 16-core device machine (3 epochs, one fit
per thread count), replica_merge_cost.md a MERGE_COST sweep on this 2-vCPU machine.
"""
import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree", help="the checkout whose hogwild_dsl runs")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--rows", type=int, default=800_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1, help="fits per setting (best time)")
    ap.add_argument("--costs", default="", help="runtime.MERGE_COST values (default: its own)")
    ap.add_argument("--out", help="-> bench/results/OUT.json and OUT.md")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(args.tree).resolve()))
    sys.path.insert(0, str(HERE))
    import numpy as np
    import hogwild_dsl
    from hogwild_dsl import datasets, runtime
    from machine import machine

    X, y = datasets.rcv1_like(n_rows=args.rows, seed=0)
    mod = hogwild_dsl.load("svm")
    costs = [float(c) for c in args.costs.split(",") if c] or [runtime.MERGE_COST]
    rows = []
    for cost in costs:
        runtime.MERGE_COST = cost
        for threads in [int(a) for a in args.threads.split(",")]:
            fits = []
            for _ in range(args.repeats):
                t = mod.Trainer(threads=threads, epochs=args.epochs, seed=0, progress=False)
                t.fit(X=X, y=y)
                fits.append((sum(h["seconds"] for h in t.history), t.history[-1]["objective"]))
            seconds, objective = min(fits)
            rows.append(dict(merge_cost=cost, threads=threads, update_s=seconds,
                             objective=objective, objectives=[o for _, o in fits]))
            print(f"MERGE_COST {cost:g} threads {threads}: updates {seconds:.4f} s, "
                  f"objective {objective:.6f}", flush=True)
    if not args.out:
        print("JSON", json.dumps(rows))
        return
    result = dict(machine=machine(), rows=args.rows, nnz=int(X.nnz), epochs=args.epochs,
                  repeats=args.repeats, when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  runs=rows)
    out = HERE / "results" / args.out
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))


def markdown(result) -> str:
    m = result["machine"]
    one = {r["merge_cost"]: r for r in result["runs"] if r["threads"] == 1}
    lines = [f"# Replicas' merges: SVM on {result['rows']:,} RCV1-shaped rows "
             f"({result['nnz']:,} nonzeros), {result['epochs']} epochs "
             "(bench/bench_replica_merge.py)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({m['host']}); {result['when']}. "
             f"Update time: the best of {result['repeats']} fits; objective: after the last "
             "epoch (of each fit, in brackets). Speed-up: over the 1-thread run of the same "
             "MERGE_COST (1 thread has no replicas, so any 1-thread run serves).", "",
             "| MERGE_COST | threads | updates (s) | speed-up over 1 thread | objective |",
             "|---|---|---|---|---|"]
    serial = next(iter(one.values()), None)
    for r in result["runs"]:
        base = one.get(r["merge_cost"], serial)
        speed = f"{base['update_s'] / r['update_s']:.2f}x" if base else ""
        objs = ", ".join(f"{o:.4f}" for o in r["objectives"])
        lines.append(f"| {r['merge_cost']:g} | {r['threads']} | {r['update_s']:.3f} | {speed} "
                     f"| {r['objective']:.4f} ({objs}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
