"""Thread scaling of the paper's problems: hogwild at 1, 2, 4, 8, 16 threads (as many as the
machine has), and lock at the most threads, on generated data shaped like the paper's sets;
where a spec has params with hot rows (docs/api.md, replicas), hogwild without the replicas
at the most threads too.

  python bench/bench_scaling.py [--epochs 3] [--threads 1,2,4,8,16] [--scale full|small]
                                [--out bench/results] [--tag NAME]
      -> OUT/scaling[-TAG].json and OUT/scaling[-TAG].md

For each problem (SVM on RCV1-shaped rows, matrix completion on Netflix-shaped ratings,
multiway cuts on a DBLife-shaped graph and an Abdomen-shaped volume; the shipped specs, loaded
by name) and each thread count: the median update time of an epoch (`history[i]["seconds"]`,
the time of the kernel's updates), the whole fit's wall time, and the exact objective after the
last epoch, so that a speed-up that costs convergence shows. Same data, seed and epochs for
every row of a problem: the speed-ups are ratios measured side by side in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import hogwild_dsl  # noqa: E402
from hogwild_dsl import datasets  # noqa: E402
from machine import machine  # noqa: E402

SCALES = {
    "full": dict(rows=800_000, users=480_000, ratings=6_000_000, nodes=40_000, depth=32),
    "small": dict(rows=80_000, users=48_000, ratings=600_000, nodes=5_000, depth=4),
}


def problems(scale: str):
    """(name, shipped spec, data) for the paper's four problems, made on demand."""
    s = SCALES[scale]
    X, y = datasets.rcv1_like(n_rows=s["rows"], seed=0)
    yield "svm RCV1-shaped", "svm", {"X": X, "y": y}
    del X, y
    train, _ = datasets.netflix_like(n_users=s["users"], n_ratings=s["ratings"], seed=0)
    yield "mc Netflix-shaped", "mc", {"r": train}
    del train
    w, c = datasets.dblife_like(n_nodes=s["nodes"], n_labels=10, avg_degree=6, seed=0)
    yield "cuts DBLife-shaped", "cuts", {"w": w, "c": c}
    w, c = datasets.abdomen_like(height=128, width=128, depth=s["depth"], n_labels=5, seed=0)
    yield "cuts Abdomen-shaped", "cuts", {"w": w, "c": c}


def run(mod, data, threads: int, sync: str, epochs: int, replicas: bool = True) -> dict:
    t = mod.Trainer(threads=threads, epochs=epochs, sync=sync, seed=0, replicas=replicas)
    began = time.perf_counter()
    t.fit(**data)
    wall = time.perf_counter() - began
    return {"threads": threads, "sync": sync if replicas else f"{sync}, no replicas",
            "epoch_s": float(np.median([h["seconds"] for h in t.history])),
            "fit_s": wall, "objective": float(t.history[-1]["objective"])}


def markdown(result) -> str:
    m = result["machine"]
    lines = [f"# Thread scaling on {m['cores']} cores", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, host {m['host']} ({result['device']}); "
             f"{result['date']}; {result['epochs']} epochs per run, data scale "
             f"'{result['scale']}'.", "",
             "Speed-up: median epoch update time at 1 thread over that at N threads "
             "(hogwild, with hot replicas where the spec has replicable params from 4 threads: "
             "docs/api.md); the \"no replicas\" and lock rows use the most threads.", "",
             "| problem | sync | threads | epoch s | speed-up over 1 thread | fit s | objective |",
             "|---|---|---|---|---|---|---|"]
    for p in result["problems"]:
        one = p["runs"][0]["epoch_s"]
        for r in p["runs"]:
            lines.append(f"| {p['problem']} | {r['sync']} | {r['threads']} | {r['epoch_s']:.4f} | "
                         f"{one / r['epoch_s']:.2f}x | {r['fit_s']:.2f} | {r['objective']:.6g} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", default="1,2,4,8,16")
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--tag", default="", help="suffix of the results files (e.g. the machine)")
    ap.add_argument("--device", default="this machine", help="the machine, in words")
    args = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    counts = [n for n in (int(x) for x in args.threads.split(",")) if n <= cores]
    stem = "scaling" + (f"-{args.tag}" if args.tag else "")
    result = {"machine": machine(), "device": args.device, "date": time.strftime("%Y-%m-%d %H:%M"),
              "epochs": args.epochs, "scale": args.scale, "problems": []}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, spec, data in problems(args.scale):
        mod = hogwild_dsl.load(spec)
        runs = [run(mod, data, n, "hogwild", args.epochs) for n in counts]
        if mod.Trainer.kernels.REPLICABLE and counts[-1] > 1:   # hot replicas (docs/api.md)
            runs.append(run(mod, data, counts[-1], "hogwild", args.epochs, replicas=False))
        runs.append(run(mod, data, counts[-1], "lock", args.epochs))
        result["problems"].append({"problem": name, "spec": spec, "runs": runs})
        one = runs[0]["epoch_s"]
        print(f"{name}: " + ", ".join(f"{r['sync']} {r['threads']}t {one / r['epoch_s']:.2f}x"
                                      for r in runs), flush=True)
        # written after every problem, so that a run cut short keeps what it measured
        (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / f"{stem}.md").write_text(markdown(result))
    print(f"wrote {args.out}/{stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
