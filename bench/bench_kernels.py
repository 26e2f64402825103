"""Kernel performance, side by side in one run on the same data (issue: beat LIBMF and
scikit-learn with code nobody wrote by hand).

  python bench/bench_kernels.py [--scale full|small] [--epochs 20]
      -> bench/results/kernels.json and bench/results/kernels.md
  python bench/bench_kernels.py --before REV [--rounds 3] [--scale full|small]
      -> bench/results/kernels_before_after.json and .md (see before_after)

Measures, on RCV1-shaped data (SVM) and Netflix-shaped data (matrix completion):
- ns per nonzero / rating per epoch of the GENERATED kernel and of the hand-written Cython
  yardstick (bench/peers/handwritten.pyx, the same update and schedule), in each visit order,
  at 1 and 2 threads; generated hogwild vs atomic vs lock;
- fit time and test accuracy against scikit-learn's SGDClassifier (same epochs, alpha tuned
  on a validation slice), fit time and test RMSE against LIBMF (20 iterations, its upstream
  SIMD + OpenMP build), and the time each needs to reach a test RMSE target.
Every 2-thread timing is tagged with the core-to-core latency measured just before it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if "--ab-worker" not in sys.argv:     # a before/after worker imports the tree on its PYTHONPATH
    sys.path.insert(0, str(HERE.parent))

import hogwild_dsl  # noqa: E402
from hogwild_dsl import datasets  # noqa: E402
from machine import machine  # noqa: E402
from peers import handwritten as hw  # noqa: E402
from peers import libmf, others, pingpong  # noqa: E402

DATA = HERE / "data"
RESULTS = HERE / "results"
SCALES = {
    "full": dict(rows=800_000, features=47_236, nnz=76, users=480_000, items=17_770,
                 ratings=6_000_000),
    "small": dict(rows=80_000, features=20_000, nnz=76, users=48_000, items=5_000,
                  ratings=600_000),
}
MC_SPEC = """model mcbench
dim user, item
const rank = 20
data r[user, item] : sparse
param L[user, rank] ~ normal(0, 0.1)
param R[item, rank] ~ normal(0, 0.1)
for (u, v) in r:
    loss (dot(L[u], R[v]) - r[u, v])^2
    reg l2(0.02) on L[u], R[v] unscaled
    predict dot(L[u], R[v])
train step 0.05, decay 0.9, epochs 20
"""
CHUNK = 64       # the Trainer's default chunk (terms)


def cached(name: str, make):
    """Generate a data set once and keep it on disk (bench/data, git-ignored)."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"{name}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return {k: _unpack(f, k) for k in {k.split("__")[0] for k in f.files}}
    parts = make()
    flat = {}
    for k, v in parts.items():
        if sp.issparse(v):
            v = v.tocsr()
            flat.update({f"{k}__data": v.data, f"{k}__indices": v.indices,
                         f"{k}__indptr": v.indptr, f"{k}__shape": np.array(v.shape)})
        else:
            flat[k] = v
    np.savez(path, **flat)
    return parts


def _unpack(f, k):
    if f"{k}__data" in f.files:
        return sp.csr_matrix((f[f"{k}__data"], f[f"{k}__indices"], f[f"{k}__indptr"]),
                             shape=tuple(f[f"{k}__shape"]))
    return f[k]


def latency() -> dict:
    return pingpong.probe()


def median_epoch(history) -> float:
    return float(np.median([h["seconds"] for h in history]))


def time_handwritten(run, epochs: int) -> float:
    times = []
    for e in range(epochs):
        t = time.perf_counter()
        run(e)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def order_curves(mod, data, metric, epochs, orders, higher_is_better, log, name):
    """Quality against update time per visit order (2 threads, epoch by epoch with warm
    starts), and the time each order needs to come within reach of the best."""
    curves = {}
    for order in orders:
        t, spent, curve = mod.Trainer(threads=2, epochs=1, order=order, chunk=CHUNK), 0.0, []
        for e in range(epochs):
            t.fit(**data)
            spent += t.history[-1]["seconds"]
            curve.append({"epochs": e + 1, "seconds": spent, "value": metric(t)})
        curves[order] = curve
    values = [p["value"] for c in curves.values() for p in c]
    best = max(values) if higher_is_better else min(values)
    target = best - 0.005 if higher_is_better else best + 0.005
    reached = {o: next((p["seconds"] for p in c if (p["value"] >= target if higher_is_better
                                                     else p["value"] <= target)), None)
               for o, c in curves.items()}
    for o, c in curves.items():
        log(f"{name} order {o:8s}: final {c[-1]['value']:.4f} after {c[-1]['seconds']:.2f} s; "
            f"time to {target:.4f}: {reached[o]}")
    return {"curves": curves, "target": target, "time_to_target": reached}


# ------------------------------------------------------------------ SVM


def svm_section(scale, epochs, timing_epochs, log):
    s = SCALES[scale]
    d = cached(f"rcv1_{scale}", lambda: dict(zip(("X", "y"), datasets.rcv1_like(
        n_rows=s["rows"], n_features=s["features"], nnz_per_row=s["nnz"], seed=0))))
    X, y = d["X"].tocsr(), np.asarray(d["y"], dtype=np.float64)
    Xtr, Xte, ytr, yte = datasets.train_test_split_rows(X, y, 0.05, seed=0)
    nnz = Xtr.nnz
    mod = hogwild_dsl.load(HERE.parent / "specs" / "svm.hog")
    spec_train = dict(mod.Trainer.spec.train)
    step, decay = spec_train["step"], spec_train["decay"]
    lam = 1e-4
    deg = hw.svm_degrees(Xtr)
    out = {"data": {"rows": Xtr.shape[0], "features": Xtr.shape[1], "nnz": nnz,
                    "test_rows": Xte.shape[0]}, "throughput": [], "sync": [], "peers": {}}
    rng = np.random.default_rng(0)
    perm = rng.permutation(Xtr.shape[0])
    Xp, yp = Xtr[perm].tocsr(), ytr[perm]          # what order="chunks" relabels to
    degp = hw.svm_degrees(Xp)
    for order in ("shuffle", "chunks", "stored"):
        for threads in (1, 2):
            probe = latency() if threads == 2 else None
            t = mod.Trainer(threads=threads, epochs=timing_epochs, order=order, chunk=CHUNK)
            t.fit(X=Xtr, y=ytr)
            gen = median_epoch(t.history)
            w = np.zeros(Xtr.shape[1])
            n_chunks = hw.chunk_count(Xtr.shape[0], CHUNK)
            if order == "shuffle":
                run = lambda e: hw.svm_epoch(Xtr.indptr, Xtr.indices, Xtr.data, ytr, w, deg,
                                             rng.permutation(Xtr.shape[0]), step * decay ** e,
                                             lam, threads)
            elif order == "chunks":
                run = lambda e: hw.svm_epoch_chunks(Xp.indptr, Xp.indices, Xp.data, yp, w, degp,
                                                    rng.permutation(n_chunks), CHUNK,
                                                    step * decay ** e, lam, threads)
            else:
                run = lambda e: hw.svm_epoch(Xtr.indptr, Xtr.indices, Xtr.data, ytr, w, deg,
                                             np.arange(Xtr.shape[0]), step * decay ** e,
                                             lam, threads)
            hand = time_handwritten(run, timing_epochs)
            row = {"order": order, "threads": threads, "generated_ns": gen / nnz * 1e9,
                   "handwritten_ns": hand / nnz * 1e9, "generated_over_handwritten": hand / gen}
            if probe:
                row.update(probe)
            out["throughput"].append(row)
            log(f"svm {order:8s} {threads}T generated {row['generated_ns']:.2f} ns/nnz, "
                f"hand-written {row['handwritten_ns']:.2f} ({row['generated_over_handwritten']:.2f}x)"
                + (f"  [ping-pong {probe['pingpong_ns']:.0f} ns, {probe['placement']}]" if probe else ""))
    for sync in ("hogwild", "atomic", "lock"):
        probe = latency()
        t = mod.Trainer(threads=2, epochs=timing_epochs, sync=sync).fit(X=Xtr, y=ytr)
        row = {"sync": sync, "threads": 2, "ns": median_epoch(t.history) / nnz * 1e9, **probe}
        out["sync"].append(row)
        log(f"svm sync={sync:8s} 2T {row['ns']:.2f} ns/nnz  [ping-pong {probe['pingpong_ns']:.0f} ns]")
    one = mod.Trainer(threads=1, epochs=timing_epochs).fit(X=Xtr, y=ytr)
    out["speedup_2_over_1"] = median_epoch(one.history) / (out["sync"][0]["ns"] * nnz / 1e9)
    out["hogwild_over_lock"] = out["sync"][2]["ns"] / out["sync"][0]["ns"]

    out["orders"] = order_curves(
        mod, {"X": Xtr, "y": ytr},
        lambda t: float(np.mean(np.where(t.predict(X=Xte) >= 0, 1.0, -1.0) == yte)),
        10, ("shuffle", "chunks", "stored"), True, log, "svm")

    # against scikit-learn: same epochs; alpha tuned on a validation slice of the training set
    n_val = min(100_000, Xtr.shape[0] // 5)
    Xfit, yfit, Xval, yval = Xtr[n_val:], ytr[n_val:], Xtr[:n_val], ytr[:n_val]
    small = slice(0, min(200_000, Xfit.shape[0]))
    tuning = {a: others.sklearn_svm(Xfit[small], yfit[small], Xval, yval, 5, a)["accuracy"]
              for a in (1e-4, 1e-5, 1e-6, 1e-7)}
    alpha = max(tuning, key=tuning.get)
    sk = others.sklearn_svm(Xtr, ytr, Xte, yte, epochs, alpha)
    began = time.perf_counter()
    ours = mod.Trainer(threads=2, epochs=epochs).fit(X=Xtr, y=ytr)
    wall = time.perf_counter() - began
    acc = float(np.mean(np.where(ours.predict(X=Xte) >= 0, 1.0, -1.0) == yte))
    ours1 = mod.Trainer(threads=1, epochs=epochs)
    began = time.perf_counter()
    ours1.fit(X=Xtr, y=ytr)
    wall1 = time.perf_counter() - began
    out["peers"]["sklearn"] = {"alpha": alpha, "alpha_validation_accuracy": tuning,
                               "epochs": epochs, **sk}
    out["peers"]["ours"] = {"epochs": epochs, "threads": 2, "fit_seconds": wall,
                            "update_seconds": sum(h["seconds"] for h in ours.history),
                            "fit_seconds_1_thread": wall1, "accuracy": acc}
    out["peers"]["fit_speedup_vs_sklearn_2T"] = sk["seconds"] / wall
    out["peers"]["fit_speedup_vs_sklearn_1T"] = sk["seconds"] / wall1
    log(f"svm vs scikit-learn ({epochs} epochs): sklearn {sk['seconds']:.2f} s acc "
        f"{sk['accuracy']:.4f} (alpha {alpha:g}); ours 2T {wall:.2f} s acc {acc:.4f} "
        f"({sk['seconds'] / wall:.1f}x), 1T {wall1:.2f} s ({sk['seconds'] / wall1:.1f}x)")
    return out


# ------------------------------------------------------------------ matrix completion


def mc_section(scale, epochs, timing_epochs, log):
    s = SCALES[scale]
    d = cached(f"netflix_{scale}", lambda: dict(zip(("train", "test"), datasets.netflix_like(
        n_users=s["users"], n_items=s["items"], n_ratings=s["ratings"], rank=20, seed=0))))
    train, test = d["train"].tocsr(), d["test"].tocsr()
    test_coo = test.tocoo()
    nnz = train.nnz
    mod = hogwild_dsl.load(text=MC_SPEC)
    step, decay, lam = 0.05, 0.9, 0.02
    out = {"data": {"users": train.shape[0], "items": train.shape[1], "ratings": nnz,
                    "test_ratings": test.nnz}, "throughput": [], "sync": [], "peers": {}}
    rng = np.random.default_rng(0)
    coo = train.tocoo()
    rows, cols, vals = coo.row.astype(np.int32), coo.col.astype(np.int32), coo.data
    uperm = rng.permutation(train.shape[0])
    tp = train[uperm].tocsr().tocoo()                  # what order="chunks" relabels to
    prow, pcol, pval = tp.row.astype(np.int32), tp.col.astype(np.int32), tp.data
    for order in ("shuffle", "chunks"):
        for threads in (1, 2):
            probe = latency() if threads == 2 else None
            t = mod.Trainer(threads=threads, epochs=timing_epochs, order=order, chunk=CHUNK)
            t.fit(r=train)
            gen = median_epoch(t.history)
            L = rng.normal(0, 0.1, (train.shape[0], 20))
            R = rng.normal(0, 0.1, (train.shape[1], 20))
            n_chunks = hw.chunk_count(nnz, CHUNK)
            if order == "shuffle":
                run = lambda e: hw.mf_epoch(rows, cols, vals, L, R, rng.permutation(nnz),
                                            step * decay ** e, lam, threads)
            else:
                run = lambda e: hw.mf_epoch_chunks(prow, pcol, pval, L, R,
                                                   rng.permutation(n_chunks), CHUNK,
                                                   step * decay ** e, lam, threads)
            hand = time_handwritten(run, timing_epochs)
            row = {"order": order, "threads": threads, "generated_ns": gen / nnz * 1e9,
                   "handwritten_ns": hand / nnz * 1e9, "generated_over_handwritten": hand / gen}
            if probe:
                row.update(probe)
            out["throughput"].append(row)
            log(f"mc  {order:8s} {threads}T generated {row['generated_ns']:.1f} ns/rating, "
                f"hand-written {row['handwritten_ns']:.1f} ({row['generated_over_handwritten']:.2f}x)"
                + (f"  [ping-pong {probe['pingpong_ns']:.0f} ns, {probe['placement']}]" if probe else ""))
    for sync in ("hogwild", "atomic", "lock"):
        probe = latency()
        t = mod.Trainer(threads=2, epochs=timing_epochs, sync=sync).fit(r=train)
        out["sync"].append({"sync": sync, "threads": 2,
                            "ns": median_epoch(t.history) / nnz * 1e9, **probe})
        log(f"mc  sync={sync:8s} 2T {out['sync'][-1]['ns']:.1f} ns/rating")
    one = mod.Trainer(threads=1, epochs=timing_epochs).fit(r=train)
    out["speedup_2_over_1"] = median_epoch(one.history) / (out["sync"][0]["ns"] * nnz / 1e9)
    out["hogwild_over_lock"] = out["sync"][2]["ns"] / out["sync"][0]["ns"]

    out["orders"] = order_curves(
        mod, {"r": train}, lambda t: float(np.sqrt(np.mean((t.predict(r=test) - test.data) ** 2))),
        10, ("shuffle", "chunks"), False, log, "mc ")
    ok, why = others.surprise_available()
    if ok:
        sv = others.surprise_svd(train, test, epochs=1, rank=20)
        out["peers"]["surprise_1_epoch"] = sv
        log(f"mc  Surprise SVD 1 epoch: {sv['seconds'] / nnz * 1e9:.0f} ns/rating")
    else:
        out["peers"]["surprise_1_epoch"] = {"skipped": why}

    # against LIBMF: 20 iterations at 2 threads, and the time to a test RMSE
    probe = latency()
    lm = libmf.libmf_time(train, k=20, iters=epochs, threads=2, lam=lam, eta=0.1, test=test)
    curve = []
    for iters in (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20):
        if iters > epochs:
            break
        m = libmf.libmf_train(train, k=20, iters=iters, threads=2, lam=lam, eta=0.1)
        curve.append({"iters": iters, "seconds": m.seconds, "rmse": libmf.libmf_rmse(m, test)})
        m.free()
    began = time.perf_counter()
    ours = mod.Trainer(threads=2, epochs=epochs).fit(r=train)
    wall = time.perf_counter() - began
    rmse = float(np.sqrt(np.mean((ours.predict(r=test) - test.data) ** 2)))
    # our curve: one epoch at a time (a warm start continues the schedule)
    t = mod.Trainer(threads=2, epochs=1)
    ours_curve, spent = [], 0.0
    for e in range(epochs):
        t.fit(r=train)
        spent += t.history[-1]["seconds"]
        ours_curve.append({"epochs": e + 1, "seconds": spent,
                           "rmse": float(np.sqrt(np.mean((t.predict(r=test) - test.data) ** 2)))})
    out["peers"]["libmf"] = {**lm, "curve": curve, **probe}
    out["peers"]["ours"] = {"epochs": epochs, "threads": 2, "fit_seconds": wall,
                            "update_seconds": sum(h["seconds"] for h in ours.history),
                            "rmse": rmse, "curve": ours_curve}
    for target in (0.85, max(lm["rmse"], rmse) + 0.005):
        mine = next((c["seconds"] for c in ours_curve if c["rmse"] <= target), None)
        theirs = next((c["seconds"] for c in curve if c["rmse"] <= target), None)
        out["peers"].setdefault("time_to_rmse", []).append(
            {"target": target, "ours_update_seconds": mine, "libmf_seconds": theirs})
    log(f"mc vs LIBMF ({epochs} iterations, 2T): LIBMF {lm['seconds']:.2f} s rmse {lm['rmse']:.4f}; "
        f"ours {wall:.2f} s (updates {out['peers']['ours']['update_seconds']:.2f} s) rmse {rmse:.4f}")
    for row in out["peers"]["time_to_rmse"]:
        log(f"    time to test RMSE {row['target']:.4f}: ours {row['ours_update_seconds']} s, "
            f"LIBMF {row['libmf_seconds']} s")
    return out


# ------------------------------------------------------------------ before / after


AB_PROBLEMS = ("mc", "svm", "bpr")      # the shapes the paper table and the peers time
AB_DTYPES = ("float64", "float32")


def ab_data(problem: str, scale: str):
    """(spec source or shipped name, fit data) of one before/after problem."""
    s = SCALES[scale]
    if problem == "mc":
        d = cached(f"netflix_{scale}", lambda: dict(zip(("train", "test"), datasets.netflix_like(
            n_users=s["users"], n_items=s["items"], n_ratings=s["ratings"], rank=20, seed=0))))
        return dict(text=MC_SPEC), {"r": d["train"].tocsr()}
    if problem == "svm":
        d = cached(f"rcv1_{scale}", lambda: dict(zip(("X", "y"), datasets.rcv1_like(
            n_rows=s["rows"], n_features=s["features"], nnz_per_row=s["nnz"], seed=0))))
        return dict(name="svm"), {"X": d["X"].tocsr(), "y": np.asarray(d["y"], np.float64)}
    from bench_bpr import implicit_feedback
    users, items, clicks = (100_000, 20_000, 2_400_000) if scale == "full" else \
        (10_000, 2_000, 240_000)
    d = cached(f"bpr_{scale}", lambda: {"seen": implicit_feedback(users, items, clicks)[0]})
    return dict(name="bpr"), {"seen": d["seen"].tocsr()}


def ab_worker(scale: str, epochs: int) -> dict:
    """In a fresh process on one tree (PYTHONPATH): each problem's update time per epoch
    in each dtype, at 1 thread as the thread's CPU time (this shared machine's other load
    inflates wall time, less so CPU time) and at 2 threads as wall time (the median of
    `epochs` epochs after the first)."""
    import hogwild_dsl.kernel as kernel
    cpu = []
    plain = kernel.Kernel.epoch

    def timed(self, *args, **kwargs):
        began = time.thread_time()
        plain(self, *args, **kwargs)
        cpu.append(time.thread_time() - began)

    kernel.Kernel.epoch = timed
    out = {"package": str(Path(hogwild_dsl.__file__).parent.parent)}
    for problem in AB_PROBLEMS:
        source, data = ab_data(problem, scale)
        for dtype in AB_DTYPES:
            mod = hogwild_dsl.load(source.get("name"), text=source.get("text"), dtype=dtype)
            for threads in (1, 2):
                cpu.clear()
                t = mod.Trainer(threads=threads, epochs=epochs + 1, seed=0).fit(**data)
                seconds = cpu[1:] if threads == 1 else [h["seconds"] for h in t.history[1:]]
                out[f"{problem} {dtype} {threads}T"] = float(np.median(seconds))
    return out


def before_after(before: str, scale: str, rounds: int, epochs: int, log) -> dict:
    """The update time of the kernels built by revision `before` and by this tree, each
    tree in a fresh process per round, the two alternating (templates, printer and C
    flags all differ as the trees do); each measure's median over the rounds."""
    import subprocess
    import tempfile
    from machine import snapshot
    for problem in AB_PROBLEMS:
        ab_data(problem, scale)             # generated once, before any timing
    runs = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": snapshot(before, Path(tmp) / "before"), "after": HERE.parent}
        for r in range(rounds):
            for name, tree in trees.items():
                env = dict(__import__("os").environ, PYTHONPATH=str(tree))
                proc = subprocess.run([sys.executable, __file__, "--ab-worker", "--scale",
                                       scale, "--timing-epochs", str(epochs)], env=env,
                                      cwd=tree, capture_output=True, text=True, check=True)
                runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                runs[name][-1]["load"] = __import__("os").getloadavg()[0]
                log(f"round {r + 1} {name}: {runs[name][-1]}")
    keys = [k for k in runs["after"][0] if k not in ("package", "load")]
    med = {n: {k: float(np.median([x[k] for x in v])) for k in keys} for n, v in runs.items()}
    return {"machine": machine(), "before": before, "scale": scale, "rounds": rounds,
            "epochs": epochs, "date": time.strftime("%Y-%m-%d %H:%M"), "runs": runs,
            "median": med, "speedup": {k: med["before"][k] / med["after"][k] for k in keys}}


def before_after_markdown(result) -> str:
    lines = [f"# Kernels before ({result['before']}) and after, side by side",
             "", f"Machine: {result['machine']}; {result['date']}; scale {result['scale']}. "
             f"`bench/bench_kernels.py --before {result['before']}`: each tree in a fresh "
             f"process, the two alternating, {result['rounds']} rounds; medians over the "
             f"rounds of each run's median epoch ({result['epochs']} timed epochs after a "
             "first). 1 thread: the thread's CPU time per epoch (the machine is shared); "
             "2 threads: wall time per epoch. Problems: mc = bench_kernels' MC_SPEC on "
             "Netflix-shaped data, svm = specs/svm.hog on RCV1-shaped data, bpr = "
             "specs/bpr.hog (AdaGrad) on bench_bpr's implicit feedback. The machine's "
             "1-minute load average after each worker: "
             + (", ".join(f"{x['load']:.1f}" for v in result["runs"].values() for x in v
                          if "load" in x) or "not recorded") + ".", "",
             "| problem | dtype | threads | before (s/epoch) | after (s/epoch) | speed after/before |",
             "|---|---|---|---|---|---|"]
    for k, sp_ in result["speedup"].items():
        problem, dtype, threads = k.split()
        lines.append(f"| {problem} | {dtype} | {threads[:-1]} | {result['median']['before'][k]:.4f} "
                     f"| {result['median']['after'][k]:.4f} | {sp_:.2f}x |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ vector widths


def vector_widths(ranks, rounds: int, log) -> dict:
    """lower.vector_bits' choice against measurement: the MF update in C (peers/mf_width.c)
    at each rank and storage type, compiled with the build's flags plus 512- or 256-bit
    vectors, the two alternating in `rounds` rounds; the best epoch's thread CPU time."""
    import subprocess
    import tempfile
    from hogwild_dsl import build
    from hogwild_dsl.lower import vector_bits
    source = HERE / "peers" / "mf_width.c"
    flags = [f for f in build._compile_flags() if not f.startswith("-mprefer-vector-width")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rank in ranks:
            spec = hogwild_dsl.check(MC_SPEC.replace("const rank = 20", f"const rank = {rank}"))
            for dtype, real in (("float64", "double"), ("float32", "float")):
                times = {512: [], 256: []}
                for bits in times:
                    exe = Path(tmp) / f"mf_{rank}_{real}_{bits}"
                    subprocess.run([*build._compiler(), *flags, f"-mprefer-vector-width={bits}",
                                    f"-DK={rank}", f"-DREAL={real}", str(source), "-o",
                                    str(exe)], check=True)
                for _ in range(rounds):
                    for bits in times:
                        out = subprocess.run([str(Path(tmp) / f"mf_{rank}_{real}_{bits}")],
                                             capture_output=True, text=True, check=True)
                        times[bits].append(float(out.stdout.split()[0]))
                row = {"rank": rank, "dtype": dtype, "chosen": vector_bits(spec, dtype) or 512,
                       "512": float(np.median(times[512])), "256": float(np.median(times[256])),
                       "runs": {str(b): t for b, t in times.items()}}
                rows.append(row)
                log(f"rank {rank} {dtype}: 512-bit {row['512']:.4f} s, 256-bit {row['256']:.4f} s,"
                    f" vector_bits chooses {row['chosen']}")
    return {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "rounds": rounds,
            "load_after": __import__("os").getloadavg()[0], "rows": rows}


def vector_widths_markdown(result) -> str:
    lines = ["# Vector width per rank and storage type: lower.vector_bits against measurement",
             "", f"Machine: {result['machine']}; {result['date']}; 1-minute load after the run "
             f"{result['load_after']:.1f}. `bench/bench_kernels.py --vector-widths`: the MF "
             "update of the generated kernels written in C (bench/peers/mf_width.c), built "
             "with the build's flags plus `-mprefer-vector-width=512` or `256`, the two "
             f"alternating, {result['rounds']} rounds; median of each run's best epoch (thread "
             "CPU time, 114M / rank terms' worth of work, so compare across a row only).", "",
             "| rank | dtype | 512-bit (s) | 256-bit (s) | 512 / 256 | vector_bits chooses | "
             "chosen / best |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        best = min(r["512"], r["256"])
        lines.append(f"| {r['rank']} | {r['dtype']} | {r['512']:.4f} | {r['256']:.4f} | "
                     f"{r['512'] / r['256']:.2f} | {r['chosen']} | "
                     f"{r[str(r['chosen'])] / best:.2f} |")
    return "\n".join(lines) + "\n"


def seconds(value) -> str:
    return "not reached" if value is None else f"{value:.2f}"


def markdown(result) -> str:
    m = result["machine"]
    lines = [f"# Kernel benchmark ({result['scale']} scale)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, host {m['host']}; {result['date']}.", "",
             "## Throughput: generated vs hand-written (median epoch)", "",
             "| problem | order | threads | generated ns | hand-written ns | generated / hand-written speed | ping-pong ns |",
             "|---|---|---|---|---|---|---|"]
    for name, unit in (("svm", "nnz"), ("mc", "rating")):
        for r in result[name]["throughput"]:
            lines.append(f"| {name} | {r['order']} | {r['threads']} | {r['generated_ns']:.2f} | "
                         f"{r['handwritten_ns']:.2f} | {r['generated_over_handwritten']:.2f}x | "
                         f"{r.get('pingpong_ns', float('nan')):.0f} |")
    lines += ["", "## Sync modes at 2 threads (default order)", "",
              "| problem | hogwild ns | atomic ns | lock ns | hogwild / lock speed | 2T / 1T speed |",
              "|---|---|---|---|---|---|"]
    for name in ("svm", "mc"):
        s = {r["sync"]: r["ns"] for r in result[name]["sync"]}
        lines.append(f"| {name} | {s['hogwild']:.2f} | {s['atomic']:.2f} | {s['lock']:.2f} | "
                     f"{result[name]['hogwild_over_lock']:.2f}x | {result[name]['speedup_2_over_1']:.2f}x |")
    lines += ["", "## Visit orders: quality against update time (2 threads, 10 epochs)", "",
              "| problem | order | final quality | seconds | seconds to target |", "|---|---|---|---|---|"]
    for name, what in (("svm", "test accuracy"), ("mc", "test RMSE")):
        o = result[name]["orders"]
        for order, c in o["curves"].items():
            lines.append(f"| {name} | {order} | {what} {c[-1]['value']:.4f} | {c[-1]['seconds']:.2f} | "
                         f"{seconds(o['time_to_target'][order])} (target {o['target']:.4f}) |")
    p = result["svm"]["peers"]
    lines += ["", "## SVM against scikit-learn SGDClassifier(hinge)", "",
              f"{p['ours']['epochs']} epochs each. scikit-learn alpha {p['sklearn']['alpha']:g} "
              "(tuned on a validation slice).", "",
              "| trainer | fit seconds | test accuracy |", "|---|---|---|",
              f"| scikit-learn (1 thread) | {p['sklearn']['seconds']:.2f} | {p['sklearn']['accuracy']:.4f} |",
              f"| hogwild-dsl, 1 thread | {p['ours']['fit_seconds_1_thread']:.2f} | |",
              f"| hogwild-dsl, 2 threads | {p['ours']['fit_seconds']:.2f} | {p['ours']['accuracy']:.4f} |",
              "", f"Speed-up over scikit-learn: {p['fit_speedup_vs_sklearn_1T']:.1f}x at 1 thread, "
              f"{p['fit_speedup_vs_sklearn_2T']:.1f}x at 2 threads (fit time, per-epoch objective included)."]
    p = result["mc"]["peers"]
    lines += ["", "## Matrix completion against LIBMF (2 threads)", "",
              "| trainer | seconds | test RMSE |", "|---|---|---|",
              f"| LIBMF, {p['libmf']['iters']} iterations (SSE + OpenMP build) | {p['libmf']['seconds']:.2f} | {p['libmf']['rmse']:.4f} |",
              f"| hogwild-dsl, {p['ours']['epochs']} epochs (fit, with per-epoch objective) | {p['ours']['fit_seconds']:.2f} | {p['ours']['rmse']:.4f} |",
              f"| hogwild-dsl, the same epochs' updates only | {p['ours']['update_seconds']:.2f} | |", ""]
    sv = p.get("surprise_1_epoch", {})
    if "seconds" in sv:
        lines.append(f"Surprise SVD (1 thread): {sv['seconds'] / result['mc']['data']['ratings'] * 1e9:.0f} "
                     "ns per rating per epoch, for users who come from it.")
        lines.append("")
    for row in p["time_to_rmse"]:
        lines.append(f"- time to test RMSE {row['target']:.4f}: hogwild-dsl "
                     f"{seconds(row['ours_update_seconds'])} s (updates), LIBMF "
                     f"{seconds(row['libmf_seconds'])} s")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=SCALES, default="full")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--timing-epochs", type=int, default=3)
    ap.add_argument("--only", choices=("svm", "mc"))
    ap.add_argument("--before", help="a revision: its kernels' update times beside this tree's")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ab-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--vector-widths", type=int, nargs="*",
                    help="ranks: lower.vector_bits' choice against 512/256-bit builds")
    args = ap.parse_args(argv)
    log = lambda msg: print(msg, flush=True)
    if args.ab_worker:
        print(json.dumps(ab_worker(args.scale, args.timing_epochs)))
        return
    if args.vector_widths is not None:
        result = vector_widths(args.vector_widths or [4, 8, 12, 16, 20, 28, 32, 50, 64],
                               args.rounds, log)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "vector_widths.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "vector_widths.md").write_text(vector_widths_markdown(result))
        log(vector_widths_markdown(result))
        return
    if args.before:
        result = before_after(args.before, args.scale, args.rounds, args.timing_epochs, log)
        RESULTS.mkdir(exist_ok=True)
        suffix = "" if args.scale == "full" else f"_{args.scale}"
        (RESULTS / f"kernels_before_after{suffix}.json").write_text(
            json.dumps(result, indent=2) + "\n")
        (RESULTS / f"kernels_before_after{suffix}.md").write_text(before_after_markdown(result))
        log(before_after_markdown(result))
        return
    result = {"machine": machine(), "scale": args.scale,
              "date": time.strftime("%Y-%m-%d %H:%M")}
    if args.only != "mc":
        result["svm"] = svm_section(args.scale, args.epochs, args.timing_epochs, log)
    if args.only != "svm":
        result["mc"] = mc_section(args.scale, args.epochs, args.timing_epochs, log)
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if args.scale == "full" else f"_{args.scale}"
    (RESULTS / f"kernels{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.only is None:
        (RESULTS / f"kernels{suffix}.md").write_text(markdown(result))
    log(f"wrote {RESULTS}/kernels{suffix}.json")


if __name__ == "__main__":
    main()
