"""Hot rows on per-thread replicas (issue 19, item 2): the shipped SVM on RCV1-shaped data,
hogwild with replicas on and off, side by side in one run, at each thread count.

  python bench/bench_hot_replicas.py [--rows 200000] [--epochs 5] [--threads 1,2]
                                     [--repeats 3] [--sweep] [--out bench/results] [--tag NAME]
      -> OUT/hot_replicas[-TAG].json and OUT/hot_replicas[-TAG].md

For every thread count and setting: the median update time of an epoch (the fit's
`history[i]["seconds"]`, median over the epochs, then over the repeats, which alternate on and
off so that a noisy neighbour hits both alike), in ns per stored entry; the exact objective
after the last epoch; the accuracy of sign(predict) on held-out rows (10%). Each repeat is a
fresh fit from the same seed. Two-thread timings carry the cache-line hand-off latency measured
just before (bench/peers/pingpong.py) where the machine has two CPUs to pin. `--sweep` adds, at
the most threads, other choices of HOT_VALUES, MERGE_DELAY and MERGE_WEIGHT (runtime.py).
The "on" rows use replicas from 2 threads; by default the Trainer uses them from
runtime.REPLICA_THREADS threads (4), where they paid off on a 16-core Xeon.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import hogwild_dsl  # noqa: E402
from hogwild_dsl import datasets, runtime  # noqa: E402
from machine import machine  # noqa: E402


def handoff_ns() -> float | None:
    try:
        from peers import pingpong
        return float(pingpong.probe(100_000)["pingpong_ns"])
    except Exception:           # one CPU, no compiler: the table says so
        return None


def fit(mod, train, test, threads: int, replicas: bool, epochs: int) -> dict:
    t = mod.Trainer(threads=threads, epochs=epochs, seed=0, replicas=replicas)
    arrays, sizes = t.layout(train)
    hot = t._hot_rows(arrays, sizes)
    began = time.perf_counter()
    t.fit(**train)
    wall = time.perf_counter() - began
    accuracy = float(np.mean(np.sign(t.predict(X=test["X"])) == test["y"]))
    return {"epoch_s": float(np.median([h["seconds"] for h in t.history])), "fit_s": wall,
            "objective": float(t.history[-1]["objective"]), "test_accuracy": accuracy,
            "hot_rows": int(sum(v.size for v in hot.values())),
            "merge_every": sizes.get("_merge_every"), "merge_weight": sizes.get("_merge_weight")}


def compare(mod, train, test, threads: int, epochs: int, repeats: int, settings) -> list:
    """Median over `repeats` alternating fits of each setting (a dict of runtime constants
    and replicas=)."""
    nnz = train["X"].nnz
    runs = {i: [] for i in range(len(settings))}
    probes = []
    for _ in range(repeats):
        if threads == 2:
            probes.append(handoff_ns())
        for i, s in enumerate(settings):
            saved = {k: getattr(runtime, k) for k in s.get("constants", {})}
            for k, v in s.get("constants", {}).items():
                setattr(runtime, k, v)
            try:
                runs[i].append(fit(mod, train, test, threads, s["replicas"], epochs))
            finally:
                for k, v in saved.items():
                    setattr(runtime, k, v)
    out = []
    for i, s in enumerate(settings):
        rs = runs[i]
        epoch_s = float(np.median([r["epoch_s"] for r in rs]))
        out.append({"threads": threads, "replicas": s["replicas"],
                    "hot_values": s.get("constants", {}).get("HOT_VALUES", runtime.HOT_VALUES),
                    "merge_delay": s.get("constants", {}).get("MERGE_DELAY", runtime.MERGE_DELAY),
                    "merge_terms": rs[-1]["merge_every"],
                    "merge_weight": rs[-1]["merge_weight"],
                    "epoch_s": epoch_s, "ns_per_nnz": epoch_s / nnz * 1e9,
                    "epoch_s_all": [r["epoch_s"] for r in rs],
                    "fit_s": float(np.median([r["fit_s"] for r in rs])),
                    "objective": rs[-1]["objective"], "test_accuracy": rs[-1]["test_accuracy"],
                    "hot_rows": rs[-1]["hot_rows"],
                    "handoff_ns": float(np.median([p for p in probes if p is not None]))
                    if any(p is not None for p in probes) else None})
        print(f"  {threads:2d} threads replicas={str(s['replicas']):5s} "
              f"values={out[-1]['hot_values']:6d} merge={out[-1]['merge_terms']} "
              f"weight={out[-1]['merge_weight']}: "
              f"{epoch_s:.4f} s/epoch ({out[-1]['ns_per_nnz']:.2f} ns/nnz), objective "
              f"{out[-1]['objective']:.6f}, test accuracy {out[-1]['test_accuracy']:.4f}, "
              f"{out[-1]['hot_rows']} hot rows", flush=True)
    return out


def markdown(result) -> str:
    m = result["machine"]
    lines = ["# Hot rows on per-thread replicas: SVM on RCV1-shaped data", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, host {m['host']}; {result['date']}. "
             f"{result['rows']} rows ({result['nnz']} stored entries in training, 10% held out), "
             f"{result['epochs']} epochs per fit, median of {result['repeats']} fits per row "
             "(alternating on and off); sync=\"hogwild\", default order.", "",
             "Speed-up: the median epoch update time of 1 thread (replicas have no effect "
             "there) over the row's. The \"on\" rows use replicas from 2 threads on; the Trainer "
             f"by default from {result.get('replica_threads', 4)} threads.", "",
             "| threads | replicas | hot rows | merge every (terms) | merge weight | merge delay | "
             "epoch s | ns/nnz | speed-up over 1 thread | objective | test accuracy | "
             "hand-off ns |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    one = next(r["epoch_s"] for r in result["runs"] if r["threads"] == 1 and not r["replicas"])
    for r in result["runs"]:
        hand = f"{r['handoff_ns']:.0f}" if r["handoff_ns"] is not None else "-"
        lines.append(f"| {r['threads']} | {'on' if r['replicas'] else 'off'} | "
                     f"{r['hot_rows'] if r['replicas'] else '-'} | "
                     f"{r['merge_terms'] if r['replicas'] else '-'} | "
                     f"{format(r['merge_weight'], '.4g') if r['replicas'] else '-'} | "
                     f"{r['merge_delay'] if r['replicas'] else '-'} | "
                     f"{r['epoch_s']:.4f} | "
                     f"{r['ns_per_nnz']:.2f} | {one / r['epoch_s']:.2f}x | {r['objective']:.6f} | "
                     f"{r['test_accuracy']:.4f} | {hand} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    threads = [int(x) for x in args.threads.split(",")]
    X, y = datasets.rcv1_like(n_rows=args.rows, seed=0)
    cut = args.rows - args.rows // 10
    train, test = {"X": X[:cut], "y": y[:cut]}, {"X": X[cut:], "y": y[cut:]}
    mod = hogwild_dsl.load("svm")
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "rows": args.rows, "nnz": int(train["X"].nnz), "epochs": args.epochs,
              "repeats": args.repeats, "replica_threads": runtime.REPLICA_THREADS, "runs": []}
    for n in threads:
        # "on" rows use replicas from 2 threads (by default: from runtime.REPLICA_THREADS)
        on = {"REPLICA_THREADS": 2}
        settings = [{"replicas": False}] + ([{"replicas": True, "constants": on}]
                                            if n > 1 else [])
        if args.sweep and n == max(threads) and n > 1:
            settings += [{"replicas": True, "constants": {**on, "HOT_VALUES": v,
                                                           "MERGE_DELAY": d, "MERGE_WEIGHT": w}}
                         for v, d, w in ((512, 512, 1.0), (2048, 256, 1.0), (2048, 1024, 1.0),
                                         (256, 1024, 1.0), (8192, 4096, 1.0), (256, 256, 0.5))]
        result["runs"] += compare(mod, train, test, n, args.epochs, args.repeats, settings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "hot_replicas" + (f"-{args.tag}" if args.tag else "")
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
