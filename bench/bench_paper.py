"""The HOGWILD! paper's experiments at full scale, on generated data shaped like its data sets.

  python bench/bench_paper.py [--epochs 5] [--repeats 3] [--curve-epochs 12] [--wait-quiet S]
                              [--only svm,mc,cuts-dblife,cuts-abdomen]
      -> bench/results/paper.json, paper.md and paper_speedup.png

For each problem (sparse SVM on RCV1-shaped data, matrix completion on Netflix-shaped data,
graph cuts on a DBLife-shaped graph and an Abdomen-shaped volume) and the shipped spec:
rho and Delta (hogwildc analyze), the update time of `epochs` epochs with hogwild at 1 and at
all threads and with lock at all threads (median of `repeats` rounds, the three fits of a
round one after the other), the final objective and accuracy / RMSE / labels found. Every
round carries the cache-line hand-off latency measured just before it (bench/peers/pingpong.py)
and the CPU time other processes took during each of its fits (in CPUs: on a shared 2-vCPU
machine a busy neighbour, not the trainer, explains a 2-thread fit no faster than 1 thread);
with --wait-quiet each round first waits, up to S seconds, for a nearly idle machine.
For the SVM also the peers side by side on the same split: scikit-learn SGDClassifier(hinge)
and Vowpal Wabbit (hinge loss), as time to a test accuracy within 0.5 points of the best any
of them reached. Data sets are generated once and cached in bench/data.
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
from hogwild_dsl.analyze import analyze  # noqa: E402
from bench_kernels import cached, latency  # noqa: E402
from machine import machine  # noqa: E402
from peers import others  # noqa: E402

SPECS = HERE.parent / "specs"
ALL = len(os.sched_getaffinity(0))


def rmse(pred, test):
    return float(np.sqrt(np.mean((pred - test.data) ** 2)))


def problems():
    """name -> (spec, train data, test data or None, metric(trainer) -> (name, value))."""
    d = cached("rcv1_full", lambda: dict(zip(("X", "y"), datasets.rcv1_like(seed=0))))
    X, y = d["X"].tocsr(), np.asarray(d["y"], dtype=np.float64)
    Xtr, Xte, ytr, yte = datasets.train_test_split_rows(X, y, 0.05, seed=0)
    yield ("svm", "RCV1-shaped", "svm.hog", {"X": Xtr, "y": ytr},
           lambda t: ("test accuracy", float(np.mean(np.where(t.predict(X=Xte) >= 0, 1, -1) == yte))),
           (Xtr, ytr, Xte, yte))
    d = cached("netflix_full", lambda: dict(zip(("train", "test"), datasets.netflix_like(seed=0))))
    train, test = d["train"].tocsr(), d["test"].tocsr()
    yield ("mc", "Netflix-shaped", "mc.hog", {"r": train},
           lambda t: ("test RMSE", rmse(t.predict(r=test), test)), None)
    for name, label, make in (
            ("cuts-dblife", "DBLife-shaped", lambda: datasets.dblife_like(
                n_nodes=40_000, n_labels=10, avg_degree=6, seed=0, return_truth=True)),
            ("cuts-abdomen", "Abdomen-shaped", lambda: datasets.abdomen_like(
                height=128, width=128, depth=32, n_labels=5, seed=0, return_truth=True))):
        d = cached(name, lambda make=make: dict(zip(("w", "c", "truth"), make())))
        truth = np.asarray(d["truth"]).ravel()
        yield (name, label, "cuts.hog", {"w": d["w"].tocsr(), "c": np.asarray(d["c"])},
               lambda t, data=d, truth=truth: ("planted labels found", float(np.mean(
                   t.predict(w=data["w"].tocsr(), c=np.asarray(data["c"])) == truth))), None)


def _busy_cpu_seconds() -> float:
    """CPU-seconds all CPUs spent busy since boot (/proc/stat; 0 where it is missing)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return 0.0
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit: float, busy_below: float = 0.1, span: float = 2.0) -> bool:
    """Wait (at most `limit` seconds) until the machine has been nearly idle (less than
    `busy_below` of all CPUs busy) for `span` seconds in a row; whether it was."""
    began = time.perf_counter()
    cpus = len(os.sched_getaffinity(0)) or 1
    calm = 0.0
    while True:
        before, t0 = _busy_cpu_seconds(), time.perf_counter()
        time.sleep(0.5)
        busy = (_busy_cpu_seconds() - before) / (time.perf_counter() - t0) / cpus
        calm = calm + 0.5 if busy < busy_below else 0.0
        if calm >= span:
            return True
        if time.perf_counter() - began > limit:
            return False


def others_cpu(run):
    """(run(), the CPUs other processes kept busy meanwhile, on average): the busy time of
    the machine less this process's own CPU time, over the wall time."""
    busy, own, wall = _busy_cpu_seconds(), os.times(), time.perf_counter()
    out = run()
    after = os.times()
    mine = after.user + after.system - own.user - own.system
    return out, max(0.0, (_busy_cpu_seconds() - busy - mine) / (time.perf_counter() - wall))


def timed(mod, data, epochs, threads, sync):
    """(trainer, update seconds of its epochs, other processes' CPUs meanwhile)."""
    t = mod.Trainer(threads=threads, epochs=epochs, sync=sync)
    _, others = others_cpu(lambda: t.fit(**data))
    return t, sum(h["seconds"] for h in t.history), others


def svm_peers(mod, split, epochs, log):
    """Test accuracy against training time, epoch by epoch, for us, scikit-learn and VW."""
    Xtr, ytr, Xte, yte = split
    curves = {}
    t, spent, ours = mod.Trainer(threads=ALL, epochs=1), 0.0, []
    for e in range(epochs):
        t.fit(X=Xtr, y=ytr)
        spent += t.history[-1]["seconds"]
        ours.append({"epochs": e + 1, "seconds": spent, "accuracy": float(
            np.mean(np.where(t.predict(X=Xte) >= 0, 1, -1) == yte))})
    curves["hogwild-dsl (updates only)"] = ours
    from sklearn.linear_model import SGDClassifier
    clf = SGDClassifier(loss="hinge", alpha=1e-5, max_iter=1, tol=None, warm_start=True,
                        random_state=0)
    sk, spent = [], 0.0
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for e in range(epochs):
            began = time.perf_counter()
            clf.fit(Xtr, ytr)
            spent += time.perf_counter() - began
            sk.append({"epochs": e + 1, "seconds": spent,
                       "accuracy": float(np.mean(clf.predict(Xte) == yte))})
    curves["scikit-learn SGDClassifier"] = sk
    ok, why = others.vw_available()
    if ok:
        import tempfile
        vw, folder = [], Path(tempfile.mkdtemp(prefix="vw-", dir=HERE / "data"))
        files = (folder / "train.vw", folder / "test.vw")
        others.vw_write(Xtr, ytr, files[0])
        others.vw_write(Xte, yte, files[1])
        for passes in sorted({1, 2, 4, 8, epochs}):
            if passes > epochs:
                continue
            r = others.vw_svm(Xtr, ytr, Xte, yte, passes, files=files)
            vw.append({"epochs": passes, "seconds": r["seconds"], "accuracy": r["accuracy"]})
        curves["Vowpal Wabbit"] = vw
    else:
        log(f"Vowpal Wabbit not run: {why}")
    best = max(p["accuracy"] for c in curves.values() for p in c)
    target = best - 0.005
    reach = {name: next((p["seconds"] for p in c if p["accuracy"] >= target), None)
             for name, c in curves.items()}
    for name, c in curves.items():
        log(f"  {name}: best accuracy {max(p['accuracy'] for p in c):.4f}, time to "
            f"{target:.4f}: {reach[name]}")
    return {"curves": curves, "best": best, "target": target, "time_to_target": reach}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--curve-epochs", type=int, default=12, help="0: no SVM peers")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each round wait up to S seconds for an idle machine")
    ap.add_argument("--only", default="", metavar="NAMES",
                    help="these problems only (comma-separated), into paper-NAMES.*")
    args = ap.parse_args(argv)
    log = lambda m: print(m, flush=True)
    rows, peers = [], None
    only = [n for n in args.only.split(",") if n]
    for name, label, spec, data, metric, split in problems():
        if only and name not in only:
            continue
        mod = hogwild_dsl.load(SPECS / spec)
        stats = analyze(mod.Trainer.spec, data, sample=2000)
        rounds = []
        for _ in range(args.repeats):
            quiet = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
            probe = latency()
            _, t1, o1 = timed(mod, data, args.epochs, 1, "hogwild")
            hog, tall, oall = timed(mod, data, args.epochs, ALL, "hogwild")
            _, tlock, olock = timed(mod, data, args.epochs, ALL, "lock")
            rounds.append({"hogwild_1_thread_s": t1, "hogwild_s": tall, "lock_s": tlock,
                           "speedup_over_1_thread": t1 / tall, "others_cpu_1_thread": o1,
                           "others_cpu": oall, "others_cpu_lock": olock,
                           "started_quiet": quiet, **probe})
        t1, tall, tlock = (float(np.median([r[k] for r in rounds])) for k in
                           ("hogwild_1_thread_s", "hogwild_s", "lock_s"))
        probe = {"pingpong_ns": float(np.median([r["pingpong_ns"] for r in rounds]))}
        what, value = metric(hog)
        row = {"problem": name, "data": label, "terms": stats["n_terms"],
               "coordinates": stats["n_coordinates"], "rho": stats["rho"],
               "Delta": stats["Delta"], "Omega": stats["Omega"],
               "rho_exact": stats.get("rho_exact"), "epochs": args.epochs, "threads": ALL,
               "hogwild_1_thread_s": t1, "hogwild_s": tall, "lock_s": tlock,
               "speedup_over_1_thread": t1 / tall, "speedup_over_lock": tlock / tall,
               "objective": hog.history[-1]["objective"], "metric": what, "value": value,
               "rounds": rounds, **probe}
        rows.append(row)
        log(f"{name:13s} terms {row['terms']:>10,}  rho {row['rho']:.3g}  Delta {row['Delta']:.3g}  "
            f"hogwild {tall:.2f} s ({row['speedup_over_1_thread']:.2f}x over 1 thread, "
            f"{row['speedup_over_lock']:.2f}x over lock)  {what} {value:.4f}  "
            f"[ping-pong {probe['pingpong_ns']:.0f} ns; rounds " + ", ".join(
                f"{r['speedup_over_1_thread']:.2f}x ({r['pingpong_ns']:.0f} ns, others "
                f"{r['others_cpu_1_thread']:.2f}/{r['others_cpu']:.2f} CPU)" for r in rounds) + "]")
        if split is not None and args.curve_epochs > 0:
            peers = svm_peers(mod, split, args.curve_epochs, log)
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "threads": ALL,
              "repeats": args.repeats, "rows": rows, "svm_peers": peers}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stem = "paper" + ("-" + "-".join(only) if only else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    if not only:
        plot(result, out / "paper_speedup.png")
    log(f"wrote {out}/{stem}.json and {stem}.md")


def markdown(result) -> str:
    m = result["machine"]
    lines = ["# The paper's Table 2, reproduced on generated data", "",
             f"Machine: {m['cpu']}, {m['cores']} cores (the paper: 10 cores), host {m['host']}; "
             f"{result['date']}.", "",
             "| problem | data | terms | rho | Delta | hogwild s | speed-up over 1 thread | "
             "lock s | speed-up over lock | objective | quality | ping-pong ns |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['problem']} | {r['data']} | {r['terms']:,} | {r['rho']:.3g} | "
                     f"{r['Delta']:.3g} | {r['hogwild_s']:.2f} | {r['speedup_over_1_thread']:.2f}x | "
                     f"{r['lock_s']:.2f} | {r['speedup_over_lock']:.2f}x | {r['objective']:.4g} | "
                     f"{r['metric']} {r['value']:.4f} | {r['pingpong_ns']:.0f} |")
    lines += ["", f"Times are the update time of {result['rows'][0]['epochs']} epochs at "
              f"{result['threads']} threads (1 thread for the first speed-up), the median of "
              f"{result.get('repeats', 1)} rounds; ping-pong: the median of the rounds' "
              "cache-line hand-off latencies.", ""]
    if any(r.get("rounds") for r in result["rows"]):
        lines += ["## Each round", "",
                  "A round: the hand-off latency between two threads pinned to the first two "
                  "CPUs, then hogwild at 1 thread, hogwild at all threads, lock at all threads. "
                  "Others' CPUs: the CPU time other processes took during the fit, over its "
                  f"wall time (2 = both vCPUs taken by someone else). Quiet: others took less "
                  f"than {QUIET_CPU} CPU during both hogwild fits of the round.", ""]
        for r in result["rows"]:
            quiet = [q["speedup_over_1_thread"] for q in r.get("rounds", []) if is_quiet(q)]
            lines.append(f"- {r['problem']}: {len(quiet)} quiet round(s) of "
                         f"{len(r.get('rounds', []))}" + (
                             f", speed-up over 1 thread {min(quiet):.2f}x-{max(quiet):.2f}x "
                             f"(median {np.median(quiet):.2f}x)" if quiet else ""))
        lines += ["",
                  "| problem | round | hand-off ns | 1 thread s | others' CPUs | "
                  f"{result['threads']} threads s | others' CPUs | speed-up |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in result["rows"]:
            for i, q in enumerate(r.get("rounds", [])):
                lines.append(f"| {r['problem']} | {i + 1} | {q['pingpong_ns']:.0f} | "
                             f"{q['hogwild_1_thread_s']:.3f} | {q['others_cpu_1_thread']:.2f} | "
                             f"{q['hogwild_s']:.3f} | {q['others_cpu']:.2f} | "
                             f"{q['speedup_over_1_thread']:.2f}x |")
        lines.append("")
    p = result.get("svm_peers")
    if p:
        lines += ["## SVM: time to a test accuracy within 0.5 points of the best", "",
                  f"Best test accuracy reached by any: {p['best']:.4f}; target {p['target']:.4f}.", "",
                  "| trainer | best accuracy | seconds to target |", "|---|---|---|"]
        for name, c in p["curves"].items():
            lines.append(f"| {name} | {max(x['accuracy'] for x in c):.4f} | "
                         f"{seconds(p['time_to_target'][name])} |")
    return "\n".join(lines) + "\n"


QUIET_CPU = 0.25     # a round is quiet where others took less than this during both fits


def is_quiet(q) -> bool:
    return q["others_cpu_1_thread"] < QUIET_CPU and q["others_cpu"] < QUIET_CPU


def seconds(value) -> str:
    return "not reached" if value is None else f"{value:.2f}"


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in result["rows"]:
        ax.plot([1, r["threads"]], [1.0, r["speedup_over_1_thread"]], marker="o",
                label=r["problem"])
    ax.plot([1, result["threads"]], [1, result["threads"]], "k--", lw=0.8, label="linear")
    ax.set_xlabel("threads")
    ax.set_ylabel("speed-up over 1 thread (hogwild)")
    ax.set_title(f"Hogwild speed-up on {result['machine']['cores']} cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
