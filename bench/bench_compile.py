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
--baseline) the generated svm and mc kernels of both trees are timed too, in one process, their
epochs interleaved (ns per nonzero or rating per epoch, the median of EPOCHS epochs each, at 1
and 2 threads in the orders and sync modes bench_kernels.py times): a machine whose load moves
between runs still compares them fairly.
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
# Each prints its wall seconds and CPU seconds (its own and its children's: Cython, the C
# compiler), which other work on the machine does not inflate.
SNIPPET = """
import resource, time, sys, numpy, scipy.sparse, hogwild_dsl
def cpu():
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))
t, c = time.perf_counter(), cpu()
hogwild_dsl.load(sys.argv[1], cache_dir=sys.argv[2])
print(time.perf_counter() - t, cpu() - c)
"""
SHARED = """
import time, sys, numpy, scipy.sparse
from hogwild_dsl import build
t = time.perf_counter()
build.shared_utility(sys.argv[1])
print(time.perf_counter() - t)
"""
# Where a tree builds a spec's kernels: the path of the extension, printed.
BUILT = """
import sys, hogwild_dsl
text = sys.argv[3] if len(sys.argv) > 3 else None
mod = hogwild_dsl.load(sys.argv[1] if text is None else None, text=text, cache_dir=sys.argv[2])
print(mod.Trainer.kernels.__file__)
"""
from bench_kernels import MC_SPEC  # noqa: E402  (the MC spec every benchmark times)
EPOCHS = 7       # timed epochs of each kernel per configuration, the two interleaved
CONFIGS = (("shuffle", 1, "hogwild"), ("shuffle", 2, "hogwild"), ("chunks", 1, "hogwild"),
           ("chunks", 2, "hogwild"), ("stored", 2, "hogwild"), ("shuffle", 2, "hogwild hot"),
           ("shuffle", 2, "atomic"), ("shuffle", 2, "lock"))
SVM_DATA = dict(n_rows=200_000, n_features=47_236, nnz_per_row=76)      # RCV1-shaped
MC_DATA = dict(n_users=160_000, n_items=17_770, n_ratings=2_000_000)    # Netflix-shaped
SYNC = {"hogwild": 0, "hogwild hot": 0, "atomic": 1, "lock": 2}


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


def timed(cache: Path, spec: Path, tree: Path | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds of `load(spec)` in a fresh process on `cache`."""
    wall, cpu = run(SNIPPET, spec, cache, tree=tree).split()
    return round(float(wall), 3), round(float(cpu), 3)


def compile_section(specs, base, work: Path) -> tuple[float, list]:
    shared_cache = work / "shared"
    shared_s = float(run(SHARED, shared_cache))
    print(f"shared runtime code, once per environment: {shared_s:6.2f} s", flush=True)
    rows = []
    for spec in specs:
        row = {"spec": spec.name}
        if base is not None:
            cache = work / f"base-{spec.stem}"
            shutil.copytree(shared_cache, cache)   # the same build environment: its key too
            row["baseline_first_compile_s"], row["baseline_first_compile_cpu_s"] = \
                timed(cache, spec, base)
            row["baseline_c_lines"] = parts(cache)["c_lines"]
        cache = work / f"new-{spec.stem}"
        shutil.copytree(shared_cache, cache)       # the shared code is built already
        row["first_compile_s"], row["first_compile_cpu_s"] = timed(cache, spec)
        row.update(parts(cache))
        row["cached_load_s"] = min(timed(cache, spec)[0] for _ in range(3))
        rows.append(row)
        before = (f"baseline {row['baseline_first_compile_s']:6.2f} s "
                  f"(CPU {row['baseline_first_compile_cpu_s']:.2f})   "
                  if base is not None else "")
        print(f"{spec.name:12s} first compile {before}now {row['first_compile_s']:6.2f} s "
              f"(CPU {row['first_compile_cpu_s']:.2f}; cython {row['cython_s']:.2f} + cc "
              f"{row['cc_s']:.2f}, {row['c_lines']} lines of C)   cached load "
              f"{row['cached_load_s']:.4f} s", flush=True)
    return shared_s, rows


def kernels_section(base: Path, work: Path) -> dict:
    """ns per nonzero (svm) or rating (mc) per epoch of both trees' kernels, side by side in
    this process: the baseline tree builds its extension (its Kernel class is inside it), this
    tree's Trainer lays the data out once, and each configuration runs an epoch of one kernel
    then of the other, EPOCHS times, each on its own copy of the params (the same visits)."""
    import numpy as np
    import hogwild_dsl
    from hogwild_dsl import build, datasets

    X, y = datasets.rcv1_like(**SVM_DATA, seed=0)
    train, _ = datasets.netflix_like(**MC_DATA, rank=20, seed=0)
    problems = {"svm": ((ROOT / "specs" / "svm.hog",), {"X": X, "y": y}, X.nnz),
                "mc": ((None, MC_SPEC), {"r": train}, train.nnz)}
    out = {"data": {"svm": {"rows": X.shape[0], "features": X.shape[1], "nnz": X.nnz},
                    "mc": {"users": train.shape[0], "items": train.shape[1],
                           "ratings": train.nnz}}, "epochs": EPOCHS}
    rng = np.random.default_rng(0)
    for problem, (source, data, nnz) in problems.items():
        path, text = source if len(source) == 2 else (source[0], None)
        cache = work / "kernels-new"
        mod = hogwild_dsl.load(path, text=text, cache_dir=cache)
        so = run(BUILT, path or "-", work / "kernels-baseline", *([text] if text else []),
                 tree=base)
        old = build.import_from_path(f"hog_baseline_{problem}.{Path(so).name.split('.')[0]}",
                                     Path(so))
        step, decay = dict(mod.Trainer.spec.train)["step"], 0.9
        out[problem] = []
        for order, threads, sync in CONFIGS:
            t = mod.Trainer(threads=threads, epochs=0, seed=0).fit(**data)
            arrays, sizes = t.layout(data)
            if sync == "hogwild hot":
                arrays |= t._hot_rows(arrays, sizes)
            params = [p.name for p in mod.Trainer.spec.params]
            kernels = [kind.Kernel({**arrays, **{p: arrays[p].copy() for p in params}}, sizes)
                       for kind in (old, mod.Trainer.kernels)]
            n = kernels[0].nterms
            chunk = 64 if order == "chunks" else 0
            entries = -(-n // 64) if chunk else n
            seconds = ([], [])
            for e in range(EPOCHS):
                visit = (np.arange(entries) if order == "stored"
                         else rng.permutation(entries)).astype(np.int64)
                for side in ((0, 1) if e % 2 == 0 else (1, 0)):
                    began = time.perf_counter()
                    kernels[side].epoch(visit, chunk, step * decay ** e, threads, SYNC[sync])
                    seconds[side].append(time.perf_counter() - began)
            base_ns, new_ns = (float(np.median(s)) / nnz * 1e9 for s in seconds)
            row = {"config": f"{order} {threads}T {sync}", "baseline_ns": round(base_ns, 3),
                   "new_ns": round(new_ns, 3),
                   "new_speed_over_baseline": round(base_ns / new_ns, 3),
                   "best_baseline_ns": round(min(seconds[0]) / nnz * 1e9, 3),
                   "best_new_ns": round(min(seconds[1]) / nnz * 1e9, 3)}
            out[problem].append(row)
            print(f"{problem} {row['config']:24s} median baseline {base_ns:8.2f} ns   new "
                  f"{new_ns:8.2f} ns   {row['new_speed_over_baseline']:.3f}x   (best "
                  f"{row['best_baseline_ns']:.2f} / {row['best_new_ns']:.2f})", flush=True)
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
             "Wall seconds as a user waits; CPU seconds (the process's and its children's) "
             "are what other work on the machine does not inflate: on an idle core the wall "
             "time is about the CPU time.", "",
             "| spec | baseline first compile s (CPU s) | baseline lines of C | first compile "
             "s (CPU s) | cython s | cc s | lines of C | cached load s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        base = (f"{r['baseline_first_compile_s']} ({r['baseline_first_compile_cpu_s']})"
                if "baseline_first_compile_s" in r else "-")
        lines.append(f"| {r['spec']} | {base} | {r.get('baseline_c_lines', '-')} | "
                     f"{r['first_compile_s']} ({r['first_compile_cpu_s']}) | {r['cython_s']} | "
                     f"{r['cc_s']} | {r['c_lines']} | {r['cached_load_s']} |")
    kernels = result.get("kernels")
    if kernels:
        lines += ["", "## Kernels, baseline and new side by side in one process (ns per "
                  f"nonzero or rating per epoch, median of {kernels['epochs']} epochs each, "
                  "the two kernels' epochs interleaved on the same visits)", "",
                  f"svm: {kernels['data']['svm']}; mc (rank 20): {kernels['data']['mc']}.", "",
                  "| problem | order, threads, sync | baseline ns | new ns | new speed / "
                  "baseline | best baseline / new ns |", "|---|---|---|---|---|---|"]
        for problem in ("svm", "mc"):
            for r in kernels[problem]:
                lines.append(f"| {problem} | {r['config']} | {r['baseline_ns']} | {r['new_ns']} "
                             f"| {r['new_speed_over_baseline']}x | {r['best_baseline_ns']} / "
                             f"{r['best_new_ns']} |")
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
