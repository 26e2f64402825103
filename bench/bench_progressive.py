"""The progressive objective's cost in the updates (issue 19): svm and mc epochs, --after vs --before.

  python bench/bench_progressive.py [--before REV] [--after REV] [--repeats 3]
  (the change itself is commit 81b919c, branch s6-progressive: --after 81b919c)
      -> bench/results/progressive.json and bench/results/progressive.md

Where the updates return each term's objective at the old point (the history's progressive
objective, API.md), every update computes a little more (for svm the hinge's value and the
l2 share's sum in the pass that takes the dot product; for mc the two squared norms in the
pass over the rank), and the history needs no sampled objective after each epoch. This
measures both sides, per epoch, as CPU time (a busy machine inflates it less than wall
time): one kernel epoch on 1 thread (the default visit: chunks of 256 rows for svm, a
shuffle for mc) and the objective on a sorted random sample of 10,000 terms that the
history took after each epoch before, for the SVM on RCV1-shaped rows (180,000,
hogwild_dsl.datasets.rcv1_like) and matrix completion on Netflix-shaped ratings (1,000,000
over 100,000 users, datasets.netflix_like), both dtypes, for the trees of revisions
--before and --after (default: this tree). Each measurement is a fresh process
(OMP_NUM_THREADS=1) timing 12 epochs after one warm-up fit; the figure is the minimum over
the epochs and the alternating rounds. Ratios are only comparable within one run
(bench/machine.py).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEFORE = "main"


def worker(spec: str, data_path: str, dtype: str) -> dict:
    """CPU seconds of 1-thread epochs and of sampled objectives: the fastest of 12 each."""
    import scipy.sparse as sp
    import hogwild_dsl
    with np.load(data_path) as f:
        m = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
        data = {"r": m} if spec == "mc" else {"X": m, "y": f["y"]}
    mod = hogwild_dsl.load(spec, dtype=dtype)
    t = mod.Trainer(threads=1, epochs=1).fit(**data)
    arrays, sizes = t.layout(data)
    kernel = t.kernels.Kernel(arrays, sizes)
    rng = np.random.default_rng(0)
    chunk = 256 if spec == "svm" else 0
    n = kernel.nterms
    epochs, samples = [], []
    for e in range(12):
        visit = rng.permutation(-(-n // chunk) if chunk else n).astype(np.int64)
        cpu = time.process_time()
        kernel.epoch(visit, chunk, t.step * t.decay ** (e + 1), 1, 0)
        epochs.append(time.process_time() - cpu)
        sample = np.sort(rng.choice(n, 10_000, replace=False)).astype(np.int64)
        cpu = time.process_time()
        kernel.objective_terms(sample, 1)
        samples.append(time.process_time() - cpu)
    return {"epoch": min(epochs), "sample": min(samples)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--after", default=None, help="a revision (default: this tree)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    sys.path.insert(0, str(ROOT))
    from bench.machine import machine, snapshot
    from hogwild_dsl import datasets
    after = args.after or "this tree"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        X, y = datasets.rcv1_like(n_rows=180_000, seed=0)
        np.savez(tmp / "svm.npz", data=X.data, indices=X.indices, indptr=X.indptr,
                 shape=np.array(X.shape), y=y)
        r, _ = datasets.netflix_like(n_users=100_000, n_ratings=1_000_000, seed=0)
        r = r.tocsr()
        np.savez(tmp / "mc.npz", data=r.data, indices=r.indices, indptr=r.indptr,
                 shape=np.array(r.shape))
        trees = {"before": snapshot(args.before, tmp / "before"),
                 "after": snapshot(args.after, tmp / "after") if args.after else ROOT}
        cases = [(s, d) for s in ("svm", "mc") for d in ("float64", "float32")]
        runs: dict = {}
        for round_ in range(args.repeats):
            for spec, dtype in cases:
                for label, tree in trees.items():
                    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
                    load = os.getloadavg()[0]
                    out = subprocess.run(
                        [sys.executable, str(HERE / "bench_progressive.py"), "--worker", spec,
                         str(tmp / f"{spec}.npz"), dtype],
                        env=env, cwd=tree, check=True, capture_output=True, text=True).stdout
                    got = {**json.loads(out.strip().splitlines()[-1]), "load": load}
                    runs.setdefault((spec, dtype, label), []).append(got)
                    print(f"round {round_ + 1} {spec} {dtype} {label:6s} epoch "
                          f"{got['epoch'] * 1e3:.2f} ms, sample {got['sample'] * 1e3:.2f} ms "
                          f"(load {load:.2f})", flush=True)
    rows = []
    for spec, dtype in cases:
        best = {label: {k: min(g[k] for g in runs[(spec, dtype, label)])
                        for k in ("epoch", "sample")} for label in trees}
        extra = best["after"]["epoch"] - best["before"]["epoch"]
        rows.append({"spec": spec, "dtype": dtype, "epoch_before_s": best["before"]["epoch"],
                     "epoch_after_s": best["after"]["epoch"],
                     "sample_before_s": best["before"]["sample"],
                     "epoch_after_over_before": best["after"]["epoch"] / best["before"]["epoch"],
                     "net_saving_per_epoch_s": best["before"]["sample"] - extra,
                     "loads": {label: [g["load"] for g in runs[(spec, dtype, label)]]
                               for label in trees}})
    result = {"machine": machine(), "before": args.before, "after": after,
              "repeats": args.repeats, "rows": rows}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "progressive.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [f"# The progressive objective's cost: 1-thread epochs, {after} vs {args.before}",
             "", f"Machine: {m['cpu']} ({m['cores']} cores, host {m['host']}), shared with "
             "other work (load averages in progressive.json). CPU time, minimum over 12 epochs "
             f"x {args.repeats} alternating rounds, fresh processes (bench/bench_progressive.py)."
             " svm: RCV1-shaped, 180,000 rows; mc: Netflix-shaped, 1,000,000 ratings. The "
             "sampled objective (10,000 terms) is what the history took after each epoch "
             "before; net saving = that sample - the epoch's extra time (negative: a loss).",
             "", "| spec | dtype | epoch before (ms) | epoch after (ms) | after / before | "
             "sampled objective (ms) | net saving per epoch (ms) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['spec']} | {r['dtype']} | {r['epoch_before_s'] * 1e3:.2f} | "
                     f"{r['epoch_after_s'] * 1e3:.2f} | {r['epoch_after_over_before']:.3f} | "
                     f"{r['sample_before_s'] * 1e3:.2f} | "
                     f"{r['net_saving_per_epoch_s'] * 1e3:.2f} |")
    (out / "progressive.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
