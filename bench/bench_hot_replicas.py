"""Hot rows on per-thread replicas (issue 19, item 2): the shipped SVM on RCV1-shaped data,
hogwild with replicas on and off, side by side in one run, at each thread count.

  python bench/bench_hot_replicas.py [--rows 200000] [--epochs 5] [--threads 1,2]
                                     [--repeats 3] [--sweep] [--out bench/results] [--tag NAME]
      -> OUT/hot_replicas[-TAG].json and OUT/hot_replicas[-TAG].md

For every thread count and setting: the update time of an epoch (the fit's
`history[i]["seconds"]`, median over the epochs), in ns per stored entry; the exact objective
after the last epoch; the accuracy of sign(predict) on held-out rows (10%). Each repeat is a
fresh fit from the same seed, the settings alternating so that a noisy neighbour hits all
alike; beside each fit, the CPUs other processes kept busy meanwhile (bench_paper's
others_cpu). A fit is quiet where they took less than 0.25 CPU: on a 2-vCPU machine shared
with others, a 2-thread fit beside a busy neighbour runs at the speed of one thread, so a
row's time is the median over its quiet fits where it has some (the count is shown), else
over all. Timings on several threads carry the cache-line hand-off latency measured at each round
(bench/peers/pingpong.py) where the machine has two CPUs to pin. The "on" rows use the
Trainer's default replicas (runtime.py: the whole w, whose copies fit REPLICA_BYTES, each row
merged about every MERGE_STEPS of a thread's steps on it, all at the latest when merging them
costs 1/MERGE_COST of the updates between); `--sweep` adds, at the most
threads, other MERGE_STEPS and MERGE_COST and the hot rows alone (REPLICA_BYTES = 0: the HOT_VALUES most
touched values looked up through a map, merged every MERGE_DELAY / threads terms).
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
from hogwild_dsl import kernel as runtime_kernel  # noqa: E402
from machine import machine  # noqa: E402
from bench_paper import others_cpu  # noqa: E402

QUIET = 0.25       # others' CPUs below which a fit counts as quiet


def handoff_ns() -> float | None:
    try:
        from peers import pingpong
        return float(pingpong.probe(100_000)["pingpong_ns"])
    except Exception:           # one CPU, no compiler: the table says so
        return None


def merge_lines(t, arrays, sizes, hot, threads: int) -> float | None:
    """Cache lines of the shared param a thread's merges touch per term (counted, no timer:
    each merged value's line is taken to come from the other thread, an upper bound), on
    an epoch cut as the Trainer cuts it; None where nothing is replicated whole."""
    kernel = t.kernels.Kernel({**arrays, **hot}, sizes)
    if not kernel.whole:
        return None
    order, chunk = t._visit_plan(arrays, kernel.nterms)
    per_entry = chunk or 1
    n = -(-kernel.nterms // per_entry)
    grain = max(-(-runtime_kernel.GRAB_TERMS // per_entry),
                n // (threads * runtime_kernel.GRABS_PER_THREAD))
    grain = max(1, min(grain, int(min(min(e.min() for _, _, e in kernel.whole),
                                      grain * per_entry)) // per_entry))
    plan = runtime_kernel._ThreadCopies(kernel._model, kernel.whole, threads, grain * per_entry,
                                        -(-n // grain), t.dtype)
    lines = [np.unique(plan.where[:b] // 64).size for b in plan.levels]
    grabs = -(-n // grain) // threads          # a thread's grabs
    total = sum(lines[min((d & -d).bit_length() - 1, len(lines) - 1)]
                for d in range(1, grabs + 1))
    total += sum(p.nbytes for _, p, _ in kernel.whole) / 64    # its last merge
    return total / (grabs * grain * per_entry)


def fit(mod, train, test, threads: int, replicas: bool, epochs: int) -> dict:
    t = mod.Trainer(threads=threads, epochs=epochs, seed=0, replicas=replicas)
    arrays, sizes = t.layout(train)
    hot = t._hot_rows(arrays, sizes)
    lines = merge_lines(t, arrays, sizes, hot, threads) if hot else None
    began = time.perf_counter()
    _, others = others_cpu(lambda: t.fit(**train))
    wall = time.perf_counter() - began
    accuracy = float(np.mean(np.sign(t.predict(X=test["X"])) == test["y"]))
    rows = sum(v.size for k, v in hot.items() if k.startswith("_hot_"))
    return {"epoch_s": float(np.median([h["seconds"] for h in t.history])), "fit_s": wall,
            "others_cpu": others, "objective": float(t.history[-1]["objective"]),
            "test_accuracy": accuracy, "hot_rows": int(rows),
            "whole": sorted(k[7:] for k in hot if k.startswith("_every_")),
            "merge_lines_per_term": lines,
            "merge_every": sizes.get("_merge_every") if rows else None}


def compare(mod, train, test, epochs: int, repeats: int, cases) -> list:
    """Each case (threads, a dict of runtime constants and replicas=) `repeats` times, the
    cases alternating; a row per case: the median over its quiet fits, else over all."""
    nnz = train["X"].nnz
    runs = {i: [] for i in range(len(cases))}
    probes = []
    for _ in range(repeats):
        probes.append(handoff_ns())
        for i, (threads, s) in enumerate(cases):
            saved = {k: getattr(runtime, k) for k in s.get("constants", {})}
            for k, v in s.get("constants", {}).items():
                setattr(runtime, k, v)
            try:
                runs[i].append(fit(mod, train, test, threads, s["replicas"], epochs))
            finally:
                for k, v in saved.items():
                    setattr(runtime, k, v)
    out = []
    for i, (threads, s) in enumerate(cases):
        rs = runs[i]
        quiet = [r for r in rs if r["others_cpu"] < QUIET]
        epoch_s = float(np.median([r["epoch_s"] for r in (quiet or rs)]))
        constants = s.get("constants", {})
        out.append({"threads": threads, "replicas": s["replicas"], "constants": constants,
                    "whole": rs[-1]["whole"], "merge_terms": rs[-1]["merge_every"],
                    "epoch_s": epoch_s, "ns_per_nnz": epoch_s / nnz * 1e9,
                    "quiet_fits": len(quiet), "fits": len(rs),
                    "epoch_s_all": [r["epoch_s"] for r in rs],
                    "others_cpu_all": [r["others_cpu"] for r in rs],
                    "fit_s": float(np.median([r["fit_s"] for r in (quiet or rs)])),
                    "objective": float(np.median([r["objective"] for r in rs])),
                    "objective_all": [r["objective"] for r in rs],
                    "test_accuracy": float(np.median([r["test_accuracy"] for r in rs])),
                    "hot_rows": rs[-1]["hot_rows"],
                    "merge_lines_per_term": rs[-1]["merge_lines_per_term"],
                    "handoff_ns": float(np.median([p for p in probes if p is not None]))
                    if threads > 1 and any(p is not None for p in probes) else None})
        print(f"  {threads:2d} threads replicas={str(s['replicas']):5s} {constants} "
              f"{out[-1]['hot_rows']} rows (whole: {out[-1]['whole']}): "
              f"{epoch_s:.4f} s/epoch ({out[-1]['ns_per_nnz']:.2f} ns/nnz; {len(quiet)} of "
              f"{len(rs)} quiet), objective {out[-1]['objective']:.6f}, test accuracy "
              f"{out[-1]['test_accuracy']:.4f}", flush=True)
    return out


def markdown(result) -> str:
    m = result["machine"]
    lines = ["# Hot rows on per-thread replicas: SVM on RCV1-shaped data", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, host {m['host']}; {result['date']}. "
             f"{result['rows']} rows ({result['nnz']} stored entries in training, 10% held out), "
             f"{result['epochs']} epochs per fit, {result['repeats']} fits per row "
             "(the rows alternating); sync=\"hogwild\", default order. Defaults: "
             f"REPLICA_BYTES {result['defaults']['REPLICA_BYTES']}, MERGE_STEPS "
             f"{result['defaults']['MERGE_STEPS']}, MERGE_COST "
             f"{result['defaults']['MERGE_COST']}.", "",
             "Epoch s: the median epoch update time over the row's quiet fits (other processes "
             f"took under {QUIET} CPU meanwhile), else over all; speed-up: 1 thread's (replicas "
             "have no effect there) over the row's. Objective and accuracy: medians over all "
             "fits.", "",
             "Merge lines / term: the cache lines of w a thread's merges touch per term, "
             "counted on the epoch as the Trainer cuts it (each taken to come from the other "
             "thread: an upper bound; plain hogwild hands over 40.7 lines per term on this "
             "data at 2 threads, bench/results/handoffs.md).", "",
             "| threads | replicas | setting | rows replicated | merge lines / term | epoch s | "
             "quiet fits | ns/nnz | speed-up over 1 thread | objective | test accuracy | "
             "hand-off ns |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    one = next(r["epoch_s"] for r in result["runs"] if r["threads"] == 1 and not r["replicas"])
    for r in result["runs"]:
        hand = f"{r['handoff_ns']:.0f}" if r["handoff_ns"] is not None else "-"
        setting = ", ".join(f"{k} {v}" for k, v in r["constants"].items()) or "default"
        kind = (f"{r['hot_rows']} (whole {', '.join(r['whole'])})" if r["whole"] else
                f"{r['hot_rows']} (map, merged every {r['merge_terms']} terms)") \
            if r["replicas"] and r["hot_rows"] else "-"
        lines.append(f"| {r['threads']} | {'on' if r['replicas'] else 'off'} | "
                     f"{setting if r['replicas'] else '-'} | {kind} | "
                     f"{format(r['merge_lines_per_term'], '.2f') if r.get('merge_lines_per_term') is not None else '-'} | "
                     f"{r['epoch_s']:.4f} | "
                     f"{r['quiet_fits']}/{r['fits']} | {r['ns_per_nnz']:.2f} | "
                     f"{one / r['epoch_s']:.2f}x | {r['objective']:.6f} | "
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
              "repeats": args.repeats, "runs": [],
              "defaults": {"REPLICA_BYTES": runtime.REPLICA_BYTES,
                           "MERGE_STEPS": runtime.MERGE_STEPS, "MERGE_COST": runtime.MERGE_COST}}
    cases = []
    for n in threads:
        cases += [(n, {"replicas": False})] + ([(n, {"replicas": True})] if n > 1 else [])
        if args.sweep and n == max(threads) and n > 1:
            cases += [(n, {"replicas": True, "constants": {"MERGE_STEPS": v, "MERGE_COST": c}})
                      for v, c in ((16, 8), (256, 8), (1024, 8), (64, 32), (256, 32))]
            cases += [(n, {"replicas": True, "constants": {"REPLICA_BYTES": 0,
                                                           "REPLICA_THREADS": 2}})]
    result["runs"] = compare(mod, train, test, args.epochs, args.repeats, cases)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "hot_replicas" + (f"-{args.tag}" if args.tag else "")
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
