"""The large reliability run of issue 13: wrong data, malformed files and faults.

Runs every named data case of tests/fuzz_cases.py on the shipped svm, mc and cuts specs plus
random corruptions (1,000+ data cases), 10,000 spec texts for the front end (random valid specs
of tests/specgen.py, most of them mutated: deletions, inserted tokens and bytes, truncations,
renames to keywords and generated-code names, deep nesting, long let chains), every named malformed file plus random byte-level
mutations of each format and of saved params, and the fault cases: `hogwildc compile` killed
with SIGKILL at many points (kernels cached or not) then reloaded and checked against a fresh
build, and tests/test_faults.py (8 processes loading one new spec, full and unwritable cache,
full disk while saving, Ctrl-C during fit and during `hogwildc train`). Writes the counts per
category (tried / clean error / ok / crash / hang / silently wrong / wrong exception type /
valid input refused) to bench/results/reliability.json.

    .venv/bin/python bench/bench_reliability.py [--random 60] [--specs 10000] [--kill-points 10]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import fuzz_cases  # noqa: E402


def kill_points(n: int, cache_dir: Path) -> dict:
    """`hogwildc compile` of a changed spec over an earlier build, SIGKILLed at n points of
    its run with the new kernels cached (killed while installing) and n points without
    (killed while building); each time the folder is imported and trained in a fresh process
    and compared with a fresh build of the spec its module holds."""
    import test_hardening as th
    results = {}
    with tempfile.TemporaryDirectory(prefix="hogwild-kill-") as tmp:
        tmp = Path(tmp)
        a, b = tmp / "svm.hog", tmp / "svm_bias.hog"
        a.write_text(th.SVM)
        b.write_text(th.SVM_BIAS)
        env = {**os.environ, "HOGWILD_CACHE_DIR": str(cache_dir)}
        command = [sys.executable, "-m", "hogwild_dsl.cli", "compile", str(b), "-o"]
        began = time.monotonic()
        subprocess.run(command + [str(tmp / "timing")], env=env, capture_output=True)
        warm = time.monotonic() - began
        for mode in ("warm", "cold"):
            for k in range(n):
                fraction = (k + 0.5) / n
                out = tmp / f"gen_{mode}_{k}"
                subprocess.run([sys.executable, "-m", "hogwild_dsl.cli", "compile", str(a), "-o",
                                str(out)], env=env, capture_output=True, check=True)
                cache = cache_dir if mode == "warm" else tmp / f"cold_{k}"
                duration = warm if mode == "warm" else 8.0
                proc = subprocess.Popen(command + [str(out)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL,
                                        env={**env, "HOGWILD_CACHE_DIR": str(cache)})
                time.sleep(duration * fraction)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                case = f"fault|kill9_compile_{mode}|{fraction:.2f}"
                try:
                    res = th.run_python(th.FIT_AND_COMPARE % {"parent": str(out.parent),
                                                              "package": out.name},
                                        env={"HOGWILD_CACHE_DIR": str(cache_dir)}, timeout=300)
                except subprocess.TimeoutExpired:
                    results[case] = ("hang", "no answer in 300 s")
                    continue
                if res.returncode < 0:
                    results[case] = ("crash", f"signal {-res.returncode}")
                elif res.returncode == 0:
                    results[case] = ("clean" if res.stdout.startswith("clean error") else "ok",
                                     res.stdout.strip()[:200])
                elif "AssertionError" in res.stderr:
                    results[case] = ("silently_wrong", res.stderr.strip().splitlines()[-1])
                else:
                    results[case] = ("wrong_type", res.stderr.strip().splitlines()[-1][:300])
    return results


def fault_tests(cache_dir: Path) -> dict:
    """tests/test_faults.py and the stale-kernel tests, each a fault case (passed = handled)."""
    env = {**os.environ, "HOGWILD_CACHE_DIR": str(cache_dir)}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                          str(ROOT / "tests" / "test_faults.py"),
                          str(ROOT / "tests" / "test_hardening.py"), "-k",
                          "faults or kill or stale or compile_writes or full_cache or "
                          "unwritable or read_only"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    results = {}
    for line in res.stdout.splitlines():
        for word, outcome in (("PASSED ", "ok"), ("FAILED ", "failed"), ("SKIPPED ", "skipped")):
            if line.startswith(word):
                name = line[len(word):].split(" - ")[0].strip()
                results[f"fault|tests|{name}"] = (outcome, line[:300])
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", type=int, default=60,
                    help="random corruptions per (spec, call, data) and per file format")
    ap.add_argument("--specs", type=int, default=10_000, help="spec texts given to check")
    ap.add_argument("--kill-points", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "reliability.json"))
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hogwild-reliability-") as cache:
        cache = Path(cache)
        env = {"HOGWILD_CACHE_DIR": str(cache)}
        ids = fuzz_cases.data_case_ids(n_random=args.random)
        ids += fuzz_cases.file_case_ids(n_random=3 * args.random)
        ids += fuzz_cases.spec_case_ids(args.specs)
        results = fuzz_cases.run(ids, env=env)
        results.update(kill_points(args.kill_points, cache))
        results.update(fault_tests(cache))
    by_category: dict = {}
    for case, (outcome, _) in results.items():
        parts = case.split("|")
        if parts[0] == "fault":
            category = f"fault/{parts[1]}"
        elif parts[0] == "spec":
            category = f"spec/{parts[2]}"
        elif parts[0] == "data":
            category = f"data/{parts[1]}" + ("/random" if parts[4].startswith("random:") else "")
        else:
            category = f"{parts[0]}/" + ("random" if parts[1].startswith("random:") else "named")
        c = by_category.setdefault(category, {"tried": 0})
        c["tried"] += 1
        c[outcome] = c.get(outcome, 0) + 1
    totals: dict = {}
    for c in by_category.values():
        for k, v in c.items():
            totals[k] = totals.get(k, 0) + v
    problems = {case: list(r) for case, r in results.items()
                if r[0] not in ("clean", "ok", "skipped")}
    report = {
        "what": "issue 13 reliability run: wrong data, malformed files, spec texts, faults",
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
                   f"Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(time.perf_counter() - started, 1),
        "outcomes": {"clean": "a HogwildError with a one-line message for wrong input",
                     "ok": "valid input accepted with the canonical result (faults: handled)",
                     "crash": "the interpreter died", "hang": "no answer in time",
                     "silently_wrong": "wrong input accepted, or a result that differs",
                     "wrong_type": "an exception that is not a HogwildError",
                     "refused_valid": "a HogwildError for valid input",
                     "failed": "a fault test that failed", "skipped": "not run here"},
        "totals": totals,
        "categories": dict(sorted(by_category.items())),
        "problems": problems,
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({"totals": totals, "seconds": report["seconds"],
                      "problems": len(problems)}, indent=1))
    for case, r in problems.items():
        print(case, r)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
