"""First compile and cached load of every shipped spec (issue 14: a first compile <= 3 s), and
the kernels' speed before and after a change of the build.

Run: python bench/bench_compile.py [--baseline REV] [--kernels]
     -> bench/results/compile.json and bench/results/compile.md

Every timing is `load()` in a fresh process. Cython's runtime code is compiled once per build
environment (build.shared_utility): its one-off build is timed on its own, in a fresh cache, and
each spec's first compile is then timed in a cache that holds it, as a user meets it after the
first spec ever built. Each first compile is split into Cython and the C compiler (from the
build log) and counted in lines of C. With --baseline REV the same specs are compiled by the
package as it was at git revision REV, alternately with this tree in one run, so the two are
measured side by side on the same machine under the same load. With --kernels (and
--baseline) the generated svm and mc kernels of both trees are timed too (ns per nonzero or
rating per epoch, the median of EPOCHS epochs, at 1 and 2 threads in the orders and sync modes
bench_kernels.py times), the two trees alternating, each best of REPEATS runs.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from machine import machine, snapshot  # noqa: E402

# numpy and scipy.sparse are imported first: a user passing data has them loaded already, and
# the target is the cost of load() itself, not of importing the scientific stack.
SNIPPET = """
import time, sys, numpy, scipy.sparse, hogwild_dsl
t = time.perf_counter()
hogwild_dsl.load(sys.argv[1], cache_dir=sys.argv[2])
print(time.perf_counter() - t)
"""
SHARED = """
import time, sys, numpy, scipy.sparse
from hogwild_dsl import build
t = time.perf_counter()
build.shared_utility(sys.argv[1])
print(time.perf_counter() - t)
"""
# The kernels of one tree on saved data: svm (RCV1-shaped) or mc (Netflix-shaped, rank 20, the
# spec of bench_kernels.py); prints {config: ns per nonzero per epoch} as JSON.
KERNELS = """
import json, sys, numpy as np, scipy.sparse as sp, hogwild_dsl
problem, data, cache, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
m = sp.load_npz(data).tocsr()
if problem == "svm":
    mod = hogwild_dsl.load("svm", cache_dir=cache)
    given = {"X": m, "y": np.load(data.replace(".npz", "_y.npy"))}
else:
    mod = hogwild_dsl.load(text=sys.argv[5], cache_dir=cache)
    given = {"r": m}
out = {}
for order, threads, sync in (("shuffle", 1, "hogwild"), ("shuffle", 2, "hogwild"),
                             ("chunks", 1, "hogwild"), ("chunks", 2, "hogwild"),
                             ("stored", 2, "hogwild"), ("shuffle", 2, "atomic"),
                             ("shuffle", 2, "lock")):
    t = mod.Trainer(threads=threads, epochs=epochs, order=order, chunk=64, sync=sync,
                    seed=0).fit(**given)
    seconds = float(np.median([h["seconds"] for h in t.history]))
    out[f"{order} {threads}T {sync}"] = seconds / m.nnz * 1e9
print(json.dumps(out))
"""
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
EPOCHS = 5
REPEATS = 2


def run(code: str, *args, tree: Path | None = None) -> str:
    """The last line `code` prints, run in a fresh process (the package of `tree` if given)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True,
                         capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    return out.stdout.strip().splitlines()[-1]


def parts(cache: Path) -> dict:
    """Cython's and the C compiler's seconds (from the build log, where it records them) and
    the lines of C of the one kernel built in `cache`."""
    c_file = next(cache.glob("*/*_kernels.c"))
    log = (c_file.parent / "build.log").read_text()
    cython = re.search(r"\(cython: ([0-9.]+) s\)", log)
    cc = re.search(r"\(exit status 0; ([0-9.]+) s\)", log)
    with open(c_file) as f:
        lines = sum(1 for _ in f)
    return {"cython_s": float(cython[1]) if cython else None,
            "cc_s": float(cc[1]) if cc else None, "c_lines": lines}


def compile_section(specs, base, work: Path) -> tuple[float, list]:
    shared_cache = work / "shared"
    shared_s = float(run(SHARED, shared_cache))
    print(f"shared runtime code, once per environment: {shared_s:6.2f} s", flush=True)
    rows = []
    for spec in specs:
        row = {"spec": spec.name}
        if base is not None:
            cache = work / f"base-{spec.stem}"
            row["baseline_first_compile_s"] = round(float(run(SNIPPET, spec, cache, tree=base)), 3)
            row["baseline_c_lines"] = parts(cache)["c_lines"]
        cache = work / f"new-{spec.stem}"
        shutil.copytree(shared_cache, cache)       # the shared code is built already
        row["first_compile_s"] = round(float(run(SNIPPET, spec, cache)), 3)
        row.update(parts(cache))
        row["cached_load_s"] = round(min(float(run(SNIPPET, spec, cache)) for _ in range(3)), 4)
        rows.append(row)
        before = (f"baseline {row['baseline_first_compile_s']:6.2f} s   "
                  if base is not None else "")
        print(f"{spec.name:12s} first compile {before}now {row['first_compile_s']:6.2f} s "
              f"(cython {row['cython_s']:.2f} + cc {row['cc_s']:.2f}, {row['c_lines']} lines "
              f"of C)   cached load {row['cached_load_s']:.4f} s", flush=True)
    return shared_s, rows


def kernels_section(base: Path, work: Path) -> dict:
    """ns per nonzero (svm) or rating (mc) per epoch of both trees' kernels, side by side."""
    import numpy as np
    import scipy.sparse as sp
    from hogwild_dsl import datasets

    X, y = datasets.rcv1_like(n_rows=200_000, n_features=47_236, nnz_per_row=76, seed=0)
    sp.save_npz(work / "svm.npz", X)
    np.save(work / "svm_y.npy", y)
    train, _ = datasets.netflix_like(n_users=160_000, n_items=17_770, n_ratings=2_000_000,
                                     rank=20, seed=0)
    sp.save_npz(work / "mc.npz", train)
    out = {"data": {"svm": {"rows": X.shape[0], "features": X.shape[1], "nnz": X.nnz},
                    "mc": {"users": train.shape[0], "items": train.shape[1],
                           "ratings": train.nnz}},
           "epochs": EPOCHS, "repeats": REPEATS}
    for problem in ("svm", "mc"):
        best = {"baseline": {}, "new": {}}
        for rep in range(REPEATS):
            trees = [("baseline", base), ("new", None)]
            for name, tree in trees if rep % 2 == 0 else trees[::-1]:
                got = json.loads(run(KERNELS, problem, work / f"{problem}.npz",
                                     work / f"kernels-{name}", EPOCHS, MC_SPEC, tree=tree))
                for config, ns in got.items():
                    best[name][config] = min(ns, best[name].get(config, ns))
        out[problem] = [{"config": c, "baseline_ns": round(best["baseline"][c], 3),
                         "new_ns": round(best["new"][c], 3),
                         "new_speed_over_baseline": round(best["baseline"][c] / best["new"][c], 3)}
                        for c in best["new"]]
        for r in out[problem]:
            print(f"{problem} {r['config']:22s} baseline {r['baseline_ns']:8.2f} ns   new "
                  f"{r['new_ns']:8.2f} ns   {r['new_speed_over_baseline']:.3f}x", flush=True)
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# First compile of every shipped spec (issue 14: <= 3 s)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, host {m['host']}, Python {m['python']}; "
             f"{result['date']}. Load average (1 min) at the start and the end: "
             f"{result['load_average_1min'][0]:.2f}, {result['load_average_1min'][1]:.2f}. "
             f"Baseline: {result['baseline']}.", "",
             f"Cython's shared runtime code, once per build environment: "
             f"{result['shared_runtime_once_s']:.2f} s.", "",
             "| spec | baseline first compile s | baseline lines of C | first compile s | "
             "cython s | cc s | lines of C | cached load s |", "|---|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        lines.append(f"| {r['spec']} | {r.get('baseline_first_compile_s', '-')} | "
                     f"{r.get('baseline_c_lines', '-')} | {r['first_compile_s']} | "
                     f"{r['cython_s']} | {r['cc_s']} | {r['c_lines']} | {r['cached_load_s']} |")
    kernels = result.get("kernels")
    if kernels:
        lines += ["", f"## Kernels, baseline and new side by side (median of {kernels['epochs']} "
                  f"epochs, best of {kernels['repeats']} alternating runs)", "",
                  f"svm: {kernels['data']['svm']}; mc: {kernels['data']['mc']}.", "",
                  "| problem | order, threads, sync | baseline ns | new ns | new speed / "
                  "baseline |", "|---|---|---|---|---|"]
        for problem in ("svm", "mc"):
            for r in kernels[problem]:
                lines.append(f"| {problem} | {r['config']} | {r['baseline_ns']} | {r['new_ns']} "
                             f"| {r['new_speed_over_baseline']}x |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", metavar="REV", help="also time the package at git REV")
    ap.add_argument("--kernels", action="store_true",
                    help="also time the svm and mc kernels of both trees (needs --baseline)")
    args = ap.parse_args()
    if args.kernels and not args.baseline:
        ap.error("--kernels compares with --baseline REV")
    specs = sorted((ROOT / "specs").glob("*.hog"))
    load = os.getloadavg()[0]        # other work on the machine, at the start and the end
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "baseline": args.baseline}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        base = snapshot(args.baseline, work / "baseline") if args.baseline else None
        shared_s, rows = compile_section(specs, base, work)
        result.update(shared_runtime_once_s=round(shared_s, 3), results=rows)
        if args.kernels:
            result["kernels"] = kernels_section(base, work)
    result["load_average_1min"] = [load, os.getloadavg()[0]]
    out = HERE / "results" / "compile.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
