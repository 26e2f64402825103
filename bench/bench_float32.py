"""dtype="float32" against float64 and LIBMF: matrix factorisation on Netflix-shaped data.

The mc model with LIBMF's objective (squared loss, l2 0.02 unscaled, rank 20: bench_kernels'
MC_SPEC), 20 epochs at 2 threads, trained three ways, each in a fresh subprocess on the
same float64 CSR training set read from disk, in `--repeats` interleaved rounds (this shared
2-vCPU machine's load varies: one run of LIBMF took 8 s, another 17 s; the table gives each
measure's median over the rounds, the JSON every run): ours with dtype="float64", ours with
dtype="float32", and LIBMF (bench/peers/libmf.py, its SSE + OpenMP build, float32 by
design). Per run: wall time of the whole fit, time per epoch (ours: the median of the
history's update times; LIBMF: whole mf_train / iterations, setup included), test RMSE, and
the peak memory of the fit: the process's peak resident set during the fit (VmHWM, reset
just before it through /proc/self/clear_refs) minus its resident set just before, so the
input data, the interpreter and the compiled module are not counted, while every copy or
conversion the fit makes of the data, the params and any other state is.

Issue 19's targets: MF at 2 threads >= 2x LIBMF's speed at a test RMSE <= LIBMF's + 0.005;
peak memory of the fit (float32) no more than LIBMF's.

    python bench/bench_float32.py [--scale full|small] [--epochs 20] [--threads 2] [--repeats 3]
        [--out bench/results/float32]
-> bench/results/float32.json and float32.md (--threads 1: float32_1thread, as recorded)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import machine  # noqa: E402
from hogwild_dsl import datasets  # noqa: E402

DATA = HERE / "data"
RESULTS = HERE / "results"
SCALES = {      # bench_kernels' Netflix shapes
    "full": dict(users=480_000, items=17_770, ratings=6_000_000),
    "small": dict(users=48_000, items=5_000, ratings=600_000),
}
from bench_kernels import MC_SPEC  # noqa: E402  (the MC spec every benchmark times)
LAMBDA, ETA = 0.02, 0.1     # LIBMF: the same l2, its default-style learning rate


def data_file(scale: str) -> Path:
    """The train/test split of the scale, generated once (bench/data is git-ignored)."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"float32_netflix_{scale}.npz"
    if not path.exists():
        s = SCALES[scale]
        train, test = datasets.netflix_like(n_users=s["users"], n_items=s["items"],
                                            n_ratings=s["ratings"], rank=20, seed=0)
        train, test = train.tocsr(), test.tocoo()
        np.savez(path, data=train.data, indices=train.indices, indptr=train.indptr,
                 shape=np.array(train.shape), test_row=test.row, test_col=test.col,
                 test_val=test.data)
    return path


def _rss() -> int:
    """Resident set size now, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    """Peak resident set since the last reset, bytes (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(which: str, path: str, epochs: int, threads: int) -> dict:
    """One run, in this (fresh) process; returns its measurements."""
    with np.load(path) as f:
        train = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
        test_row, test_col, test_val = f["test_row"], f["test_col"], f["test_val"]
    test = sp.coo_matrix((test_val, (test_row, test_col)), shape=train.shape)
    if which == "libmf":
        from peers import libmf
        ok, why = libmf.available()
        if not ok:
            return {"skipped": why}
        libmf.load()
    else:
        import hogwild_dsl
        mod = hogwild_dsl.load(text=MC_SPEC, dtype=which)
    before = _rss()
    exact = _reset_peak()
    began = time.perf_counter()
    if which == "libmf":
        model = libmf.libmf_train(train, k=20, iters=epochs, threads=threads, lam=LAMBDA,
                                  eta=ETA)
    else:
        t = mod.Trainer(threads=threads, epochs=epochs, seed=0).fit(r=train)
    wall = time.perf_counter() - began
    peak = _peak()
    out = {"fit_seconds": wall, "peak_fit_bytes": peak - before, "rss_before_bytes": before,
           "peak_is_fit_only": exact, "load_after": os.getloadavg()[0]}
    if which == "libmf":
        out["rmse"] = libmf.libmf_rmse(model, test)
        out["epoch_seconds"] = model.seconds / epochs
        model.free()
    else:
        pred = t.predict(r=test)
        out["rmse"] = float(np.sqrt(np.mean((pred - test.tocsr().tocoo().data) ** 2)))
        out["epoch_seconds"] = float(np.median([h["seconds"] for h in t.history]))
        out["params_bytes"] = int(sum(v.nbytes for v in t.params.values()))
        out["params_dtype"] = str(next(iter(t.params.values())).dtype)
    return out


def run(which: str, path: Path, epochs: int, threads: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", which, "--data", str(path),
                           "--epochs", str(epochs), "--threads", str(threads)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"failed": proc.stderr.strip().splitlines()[-1:] or ["no output"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    d, runs = result["data"], result["runs"]
    lines = [f"# dtype=\"float32\": MF on Netflix-shaped data ({d['users']:,} users x "
             f"{d['items']:,} items, {d['ratings']:,} training ratings), "
             f"{result['epochs']} epochs, {result['threads']} threads",
             "", f"Machine: {result['machine']}. Each run in a fresh process, the three side "
             f"by side in each of {result['repeats']} rounds; medians over the rounds (fit "
             "times of every round in brackets). `bench/bench_float32.py` (spec: the mc model "
             "with LIBMF's l2 0.02 unscaled, rank 20). The machine is shared: its 1-minute "
             "load average after each fit ranged "
             f"{min(x['load_after'] for r in result['rounds'].values() for x in r if 'load_after' in x):.1f}-"
             f"{max(x['load_after'] for r in result['rounds'].values() for x in r if 'load_after' in x):.1f} "
             f"(2 vCPUs). Code: {result.get('commit', '?')}.", "",
             "| run | fit (s) | per epoch (s) | test RMSE | peak memory of the fit (MB) |",
             "|---|---|---|---|---|"]
    for name, r in runs.items():
        if "fit_seconds" not in r:
            lines.append(f"| {name} | {r} | | | |")
            continue
        every = ", ".join(f"{x['fit_seconds']:.2f}" for x in result["rounds"][name]
                          if "fit_seconds" in x)
        lines.append(f"| {name} | {r['fit_seconds']:.2f} ({every}) | {r['epoch_seconds']:.3f} | "
                     f"{r['rmse']:.4f} | {r['peak_fit_bytes'] / 2**20:.0f} |")
    lines += ["", "Per epoch: ours, the median update time of an epoch; LIBMF, its whole "
              "`mf_train` over the iterations (it exposes no per-iteration time). Peak memory "
              "of the fit: the peak resident set during the fit minus the resident set just "
              "before it (the input CSR, the interpreter and the module not counted).", ""]
    lines += [f"- {k}: {v}" for k, v in result["summary"].items()]
    return "\n".join(lines) + "\n"


def summary(runs: dict) -> dict:
    f64, f32, lib = runs.get("float64", {}), runs.get("float32", {}), runs.get("libmf", {})
    out = {}
    if "fit_seconds" in f64 and "fit_seconds" in f32:
        out["float32 speed over float64 (fit)"] = round(f64["fit_seconds"] / f32["fit_seconds"], 2)
        out["float32 speed over float64 (per epoch)"] = round(
            f64["epoch_seconds"] / f32["epoch_seconds"], 2)
        out["float32 peak memory over float64"] = round(
            f32["peak_fit_bytes"] / f64["peak_fit_bytes"], 2)
        out["float32 RMSE - float64 RMSE"] = round(f32["rmse"] - f64["rmse"], 5)
    if "fit_seconds" in lib and "fit_seconds" in f32:
        speed = lib["fit_seconds"] / f32["fit_seconds"]
        out["float32 speed over LIBMF (whole fit; target >= 2)"] = round(speed, 2)
        out["float32 RMSE - LIBMF RMSE (target <= 0.005)"] = round(f32["rmse"] - lib["rmse"], 4)
        out["float32 peak memory of the fit over LIBMF's (target <= 1)"] = round(
            f32["peak_fit_bytes"] / lib["peak_fit_bytes"], 2)
        out["targets met"] = bool(speed >= 2 and f32["rmse"] <= lib["rmse"] + 0.005 and
                                  f32["peak_fit_bytes"] <= lib["peak_fit_bytes"])
    return out


def median(done: list) -> dict:
    """Each measure's median over the rounds (a round that did not run: its message)."""
    ran = [r for r in done if "fit_seconds" in r]
    if not ran:
        return done[0]
    out = dict(ran[0])
    for k, v in ran[0].items():
        if isinstance(v, float):
            out[k] = float(np.median([r[k] for r in ran]))
        elif isinstance(v, int) and not isinstance(v, bool):
            out[k] = int(np.median([r[k] for r in ran]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=SCALES, default="full")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child")
    ap.add_argument("--data")
    ap.add_argument("--out", default=str(RESULTS / "float32"), help="-> OUT.json and OUT.md")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.data, args.epochs, args.threads)))
        return
    path = data_file(args.scale)
    with np.load(path) as f:
        shape, nnz, n_test = tuple(int(s) for s in f["shape"]), f["data"].size, f["test_val"].size
    import hogwild_dsl                      # build both modules before any timing
    for dtype in ("float64", "float32"):
        hogwild_dsl.load(text=MC_SPEC, dtype=dtype)
    rounds = {"float64": [], "float32": [], "libmf": []}
    for _ in range(args.repeats):
        for which, done in rounds.items():
            done.append(run(which, path, args.epochs, args.threads))
            print(which, done[-1], flush=True)
    runs = {which: median(done) for which, done in rounds.items()}
    commit = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    result = {"machine": machine.machine(), "commit": commit, "scale": args.scale,
              "epochs": args.epochs,
              "threads": args.threads, "repeats": args.repeats, "rounds": rounds,
              "data": {"users": shape[0], "items": shape[1], "ratings": int(nnz),
                       "test_ratings": int(n_test)},
              "runs": runs, "summary": summary(runs)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
