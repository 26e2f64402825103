"""First compile and cached load of every shipped spec (issue targets: <= 10 s, <= 0.2 s).

Run: python bench/bench_compile.py  -> bench/results/compile.json
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import machine  # noqa: E402

# numpy and scipy.sparse are imported first: a user passing data has them loaded already, and
# the target is the cost of load() itself, not of importing the scientific stack.
SNIPPET = """
import time, sys, numpy, scipy.sparse, hogwild_dsl
t = time.perf_counter()
hogwild_dsl.load(sys.argv[1], cache_dir=sys.argv[2])
print(time.perf_counter() - t)
"""


def timed_load(spec: Path, cache: str) -> float:
    """Seconds for load() in a fresh process (so nothing is cached in memory)."""
    out = subprocess.run([sys.executable, "-c", SNIPPET, str(spec), cache], check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main():
    rows = []
    for spec in sorted((HERE.parent / "specs").glob("*.hog")):
        with tempfile.TemporaryDirectory() as cache:
            first = timed_load(spec, cache)
            cached = min(timed_load(spec, cache) for _ in range(3))
        rows.append({"spec": spec.name, "first_compile_s": round(first, 3),
                     "cached_load_s": round(cached, 4)})
        print(f"{spec.name:12s} first compile {first:6.2f} s   cached load {cached:.4f} s",
              flush=True)
    out = HERE / "results" / "compile.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
