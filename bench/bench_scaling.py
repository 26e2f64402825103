"""Thread scaling of the paper's problems: hogwild at 1, 2, 4, 8, 16 threads (as many as the
machine has), and lock at the most threads, on generated data shaped like the paper's sets;
where a spec has params with hot rows (docs/api.md, replicas), hogwild without the replicas
at the most threads too; and, as a control, two 1-thread fits at once in two processes (what
the machine gives two independent copies: where they slow each other down, shared caches,
memory bandwidth or two vCPUs on one core, not the trainer, cap the 2-thread speed-up).

  python bench/bench_scaling.py [--epochs 3] [--threads 1,2,4,8,16] [--scale full|small]
                                [--out bench/results] [--tag NAME]
      -> OUT/scaling[-TAG].json and OUT/scaling[-TAG].md

For each problem (SVM on RCV1-shaped rows, matrix completion on Netflix-shaped ratings,
multiway cuts on a DBLife-shaped graph and an Abdomen-shaped volume; the shipped specs, loaded
by name) and each thread count: the median update time of an epoch (`history[i]["seconds"]`,
the time of the kernel's updates), the whole fit's wall time, and the exact objective after the
last epoch, so that a speed-up that costs convergence shows; the CPU time other processes
took meanwhile; and, per problem, the cache-line hand-off latency between the first two CPUs
(bench/peers/pingpong.py). Same data, seed and epochs for every row of a problem: the
speed-ups are ratios measured side by side in one run.
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
from bench_paper import others_cpu  # noqa: E402
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
    _, others = others_cpu(lambda: t.fit(**data))
    wall = time.perf_counter() - began
    return {"threads": threads, "sync": sync if replicas else f"{sync}, no replicas",
            "epoch_s": float(np.median([h["seconds"] for h in t.history])),
            "fit_s": wall, "objective": float(t.history[-1]["objective"]),
            "others_cpu": others}


_SHARED = {}      # what the forked control processes fit


def _one_of_two(_):
    mod, data, epochs = _SHARED["fit"]
    return run(mod, data, 1, "hogwild", epochs)


def two_at_once(mod, data, epochs: int) -> dict:
    """Two 1-thread fits at once, in two forked processes: the slower one's epoch time."""
    import multiprocessing
    _SHARED["fit"] = (mod, data, epochs)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        both = pool.map(_one_of_two, [0, 1])
    slow = max(both, key=lambda r: r["epoch_s"])
    return slow | {"threads": 2, "sync": "2 processes at once, 1 thread each"}


def handoff_ns() -> float | None:
    try:
        from peers import pingpong
        return float(pingpong.probe(100_000)["pingpong_ns"])
    except Exception:           # one CPU, no compiler: the table says so
        return None


def markdown(result) -> str:
    m = result["machine"]
    lines = [f"# Thread scaling on {m['cores']} cores", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, host {m['host']} ({result['device']}); "
             f"{result['date']}; {result['epochs']} epochs per run, data scale "
             f"'{result['scale']}'.", "",
             "Speed-up: median epoch update time at 1 thread over that at N threads "
             "(hogwild, with hot replicas where the spec has replicable params: docs/api.md); "
             "the \"no replicas\" and lock rows use the most threads. The control row: two "
             "1-thread fits at once in two processes, its speed-up the throughput of the two "
             "(2 x the 1-thread epoch time over the slower one's): the most 2 threads could "
             "give here. Others' CPUs: the CPU time other processes took during the fit over "
             "its wall time (in the control row the other copy counts too). Hand-off: the cache-line hand-off latency between the first two "
             "CPUs, measured before the problem's runs.", "",
             "| problem | sync | threads | epoch s | speed-up over 1 thread | fit s | objective | "
             "others' CPUs | hand-off ns |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in result["problems"]:
        one = p["runs"][0]["epoch_s"]
        hand = p.get("handoff_ns")
        for r in p["runs"]:
            gain = (2 if r["sync"].startswith("2 processes") else 1) * one / r["epoch_s"]
            lines.append(f"| {p['problem']} | {r['sync']} | {r['threads']} | {r['epoch_s']:.4f} | "
                         f"{gain:.2f}x | {r['fit_s']:.2f} | {r['objective']:.6g} | "
                         f"{r.get('others_cpu', float('nan')):.2f} | "
                         f"{'-' if hand is None else format(hand, '.0f')} |")
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
        hand = handoff_ns() if cores > 1 else None
        runs = [run(mod, data, n, "hogwild", args.epochs) for n in counts]
        if cores > 1:
            runs.insert(1, two_at_once(mod, data, args.epochs))
        if mod.Trainer.kernels.REPLICABLE and counts[-1] > 1:   # hot replicas (docs/api.md)
            runs.append(run(mod, data, counts[-1], "hogwild", args.epochs, replicas=False))
        runs.append(run(mod, data, counts[-1], "lock", args.epochs))
        result["problems"].append({"problem": name, "spec": spec, "runs": runs,
                                   "handoff_ns": hand})
        one = runs[0]["epoch_s"]
        print(f"{name}: " + ", ".join(f"{r['sync']} {r['threads']}t "
                                      f"{(2 if r['sync'].startswith('2 proc') else 1) * one / r['epoch_s']:.2f}x"
                                      for r in runs), flush=True)
        # written after every problem, so that a run cut short keeps what it measured
        (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / f"{stem}.md").write_text(markdown(result))
    print(f"wrote {args.out}/{stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
