"""One process against a 2-worker Dask LocalCluster (1 thread each), on the paper's SVM and MC.

  python bench/bench_distributed.py [--scale 0.25] [--epochs 5]
      -> bench/results/distributed.json and distributed.md

RCV1-shaped SVM rows (weighted averaging of the shards each epoch) and Netflix-shaped ratings
for matrix completion (DSGD: 2 strata per epoch), from hogwild_dsl.datasets at `scale` of the
paper's sizes (RCV1 rows and Netflix users and ratings; features and movies at full size). For
each: the time per epoch and the final objective of one process at 1 and at 2 threads and of
the cluster, and the cluster's communication share (the part of each round's wall time not
spent in the slowest worker's compute: sending params, scheduling, averaging), plus the
one-off cost of scattering the data and building the workers' trainers. The cluster's
processes share this machine's cores with the client, so its times are an upper bound of what
2 machines would give.
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
from hogwild_dsl import datasets, distributed  # noqa: E402
from machine import machine  # noqa: E402

SPECS = HERE.parent / "specs"


def problems(scale: float):
    """name -> (spec file, data, description)."""
    n = int(800_000 * scale)
    X, y = datasets.rcv1_like(n_rows=n, seed=0)
    yield "svm", "svm.hog", {"X": X, "y": y}, \
        f"RCV1-shaped: {X.shape[0]:,} rows x {X.shape[1]:,} features, {X.nnz:,} nonzeros"
    users, ratings = int(480_000 * scale), int(6_000_000 * scale)
    train, _ = datasets.netflix_like(n_users=users, n_ratings=ratings, test_frac=0.0, seed=0)
    yield "mc", "mc.hog", {"r": train}, \
        f"Netflix-shaped: {train.shape[0]:,} users x {train.shape[1]:,} movies, " \
        f"{train.nnz:,} ratings, rank 20"


def single(mod, data, epochs, threads):
    t = mod.Trainer(epochs=epochs, threads=threads, seed=0).fit(**data)
    return {"seconds_per_epoch": float(np.mean([h["seconds"] for h in t.history])),
            "objective": float(t.objective(**data)),
            "objective_per_epoch": [h["objective"] for h in t.history]}


def cluster(mod, data, epochs, client):
    began = time.perf_counter()
    t = distributed.fit(mod, client, epochs=epochs, seed=0, **data)
    total = time.perf_counter() - began
    rounds = sum(h["seconds"] for h in t.history)
    return {"seconds_per_epoch": rounds / epochs,
            "objective": float(t.objective(**data)),
            "communication_share": float(np.mean([h["communication"] for h in t.history])),
            "communication_share_per_epoch": [h["communication"] for h in t.history],
            "setup_and_evaluation_seconds": total - rounds,
            "objective_per_epoch": [h["objective"] for h in t.history]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args(argv)
    from dask.distributed import Client, LocalCluster

    rows = []
    load_before = os.getloadavg()[0]
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                      dashboard_address=None) as lc, Client(lc) as client:
        for name, spec, data, what in problems(args.scale):
            mod = hogwild_dsl.load(SPECS / spec)
            row = {"problem": name, "data": what, "mode": distributed.plan(mod.Trainer.spec).mode,
                   "one process, 1 thread": single(mod, data, args.epochs, 1),
                   "one process, 2 threads": single(mod, data, args.epochs, 2),
                   "2 Dask workers x 1 thread": cluster(mod, data, args.epochs, client)}
            print(json.dumps(row, indent=1), flush=True)
            rows.append(row)
    out = {"machine": machine(), "scale": args.scale, "epochs": args.epochs,
           "load_average_1min": [load_before, os.getloadavg()[0]], "results": rows}
    results = HERE / "results"
    (results / "distributed.json").write_text(json.dumps(out, indent=1) + "\n")
    (results / "distributed.md").write_text(markdown(out))


def markdown(out) -> str:
    m = out["machine"]
    lines = [f"# One process vs a 2-worker Dask LocalCluster ({out['epochs']} epochs, "
             f"{out['scale']:g} of the paper's sizes)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']} ({m['host']}). "
             "The workers, the client and the scheduler share these cores, and other jobs "
             "shared them too: the 1-minute load average was "
             f"{out['load_average_1min'][0]:.1f} at the start and "
             f"{out['load_average_1min'][1]:.1f} at the end, so every figure is a slowed-down "
             "one; compare within a row group only.", "",
             "| problem | runs as | s/epoch | final objective | communication share |",
             "|---|---|---|---|---|"]
    for row in out["results"]:
        for how in ("one process, 1 thread", "one process, 2 threads",
                    "2 Dask workers x 1 thread"):
            r = row[how]
            share = f"{r['communication_share']:.0%}" if "communication_share" in r else ""
            label = how + (f" ({row['mode']})" if "Dask" in how else "")
            lines.append(f"| {row['problem']} | {label} | {r['seconds_per_epoch']:.3f} | "
                         f"{r['objective']:.5f} | {share} |")
    lines += ["", "Objective after each epoch (one process 1 thread / cluster):"]
    for row in out["results"]:
        one = row["one process, 1 thread"]["objective_per_epoch"]
        two = row["2 Dask workers x 1 thread"]["objective_per_epoch"]
        lines.append(f"- {row['problem']}: " + ", ".join(f"{a:.4g} / {b:.4g}"
                                                          for a, b in zip(one, two)))
    lines += ["", "Data:"] + [f"- {row['problem']}: {row['data']}" for row in out["results"]]
    lines += ["", "s/epoch of the cluster is the wall time of its rounds (params out, the "
              "workers' epochs, params back, averaging); setup (sending the data once, building "
              "the workers' trainers) and the per-epoch objective are not in it:"]
    lines += [f"- {row['problem']}: "
              f"{row['2 Dask workers x 1 thread']['setup_and_evaluation_seconds']:.1f} s"
              for row in out["results"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
