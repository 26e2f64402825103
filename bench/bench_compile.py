"""First compile and cached load of every shipped spec (issue 14: a first compile <= 3 s).

Run: python bench/bench_compile.py [--baseline REV]  -> bench/results/compile.json

Every timing is `load()` in a fresh process. Cython's runtime code is compiled once per build
environment (build.shared_utility): its one-off build is timed on its own, in a fresh cache, and
each spec's first compile is then timed in a cache that holds it, as a user meets it after the
first spec ever built. With --baseline REV the same specs are compiled by the package as it was
at git revision REV, alternately with this tree in one run, so the two are measured side by side
on the same machine under the same load.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
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


def timed(code: str, *args, tree: Path | None = None) -> float:
    """Seconds printed by `code` run in a fresh process (the package of `tree` if given)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True,
                         capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    return float(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", metavar="REV", help="also time the package at git REV")
    args = ap.parse_args()
    specs = sorted((ROOT / "specs").glob("*.hog"))
    load = os.getloadavg()[0]        # other work on the machine, at the start and the end
    rows, shared_s = [], None
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        base = snapshot(args.baseline, work / "baseline") if args.baseline else None
        shared_cache = work / "shared"
        shared_s = timed(SHARED, shared_cache)
        print(f"shared runtime code, once per environment: {shared_s:6.2f} s", flush=True)
        for spec in specs:
            row = {"spec": spec.name}
            if base is not None:
                cache = work / f"base-{spec.stem}"
                row["baseline_first_compile_s"] = round(timed(SNIPPET, spec, cache, tree=base), 3)
            cache = work / f"new-{spec.stem}"
            shutil.copytree(shared_cache, cache)       # the shared code is built already
            row["first_compile_s"] = round(timed(SNIPPET, spec, cache), 3)
            row["cached_load_s"] = round(min(timed(SNIPPET, spec, cache) for _ in range(3)), 4)
            rows.append(row)
            before = (f"baseline {row['baseline_first_compile_s']:6.2f} s   "
                      if base is not None else "")
            print(f"{spec.name:12s} first compile {before}now {row['first_compile_s']:6.2f} s"
                  f"   cached load {row['cached_load_s']:.4f} s", flush=True)
    out = HERE / "results" / "compile.json"
    out.parent.mkdir(exist_ok=True)
    result = {"machine": machine(), "load_average_1min": [load, os.getloadavg()[0]],
              "baseline": args.baseline,
              "shared_runtime_once_s": round(shared_s, 3), "results": rows}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
