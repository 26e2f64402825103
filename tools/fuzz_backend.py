"""The large differential fuzz of the back end: random specs, compiled, against the interpreter.

    python tools/fuzz_backend.py [--minutes 60] [--start 100000] [--pack 4] [--out FILE]

Each compile checks `--pack` independent random specs at once (tests/specgen.py
`generate_packed`: disjoint names, dims, params and data in one spec), so that the ~3-4 s
compile is shared. A failing pack is split in halves until each failing spec is compiled and checked alone,
so every mismatch is attributed to one seed (its spec text is recorded).

Written after every pack to bench/results/fuzz_backend.json: specs tried, matched,
mismatched, compile errors, degenerate (no point found MARGIN away from every kink), the same
per construct, the failing seeds with their first failure, and the run's time and commit.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import hogwild_dsl  # noqa: E402
import specgen  # noqa: E402

STATUSES = ("match", "mismatch", "compile-error", "degenerate", "harness-error")


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Tally:
    """Counts overall and per construct, plus the failing seeds."""

    def __init__(self, args):
        self.args = args
        self.total = dict.fromkeys(STATUSES, 0)
        self.per = defaultdict(lambda: dict.fromkeys(STATUSES, 0))
        self.failures = []
        self.pack_only = []       # failures only the packed spec shows
        self.compiles = 0
        self.began = time.time()

    def add(self, case: specgen.Case, result: dict):
        status = result["status"]
        self.total[status] += 1
        self.last_seed = max(getattr(self, "last_seed", case.seed), case.seed)
        for tag in case.constructs:
            self.per[tag][status] += 1
        if status not in ("match", "degenerate"):
            self.failures.append({"seed": case.seed, "status": status,
                                  "constructs": sorted(case.constructs),
                                  "first_failure": (result["failures"] or [""])[0][:1500],
                                  "spec": case.text})

    def write(self, path: Path, final=False):
        tried = sum(self.total.values())
        out = {
            "what": "differential fuzz of the back end (tools/fuzz_backend.py): random specs "
                    "compiled and compared with hogwild_dsl/interp.py (objective rtol 1e-8, "
                    "predict, one SGD epoch on one-term-per-block data in hogwild/atomic/lock, "
                    "constant inits)",
            "finished": final,
            "specs_tried": tried,
            "matched": self.total["match"],
            "mismatched": self.total["mismatch"],
            "compile_errors": self.total["compile-error"],
            "degenerate": self.total["degenerate"],
            "harness_errors": self.total["harness-error"],
            "compiles": self.compiles,
            "seeds": [self.args.start, self.last_seed] if tried else [],
            "pack": self.args.pack,
            "avoid_known": not self.args.include_known,
            "seconds": round(time.time() - self.began, 1),
            "commit": _commit(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
            "per_construct": {k: self.per[k] for k in sorted(self.per)},
            "never_generated": sorted(set(specgen.CONSTRUCTS) - set(self.per)),
            "failures": self.failures,
            "pack_only_failures": self.pack_only,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1) + "\n")
        tmp.replace(path)


def run_one(case, load) -> dict:
    try:
        return specgen.check_case(case, load)
    except Exception as e:  # noqa: BLE001 - recorded, never stops the run
        return {"status": "harness-error", "failures": [f"{type(e).__name__}: {e}"]}


def check_group(seeds, tally, load, avoid_known):
    """Check the specs of `seeds` packed into one spec; on failure split the group in halves
    until each failing spec is found alone. A failure that only the packed spec shows is kept
    as its own entry (with the packed text)."""
    packed, alone = specgen.generate_packed(seeds, avoid_known=avoid_known)
    result = run_one(packed, load)
    if result["status"] == "match":
        for case in alone:
            tally.add(case, result)
        return True
    if len(seeds) == 1:
        tally.add(alone[0], result)
        return False
    half = len(seeds) // 2
    left = check_group(seeds[:half], tally, load, avoid_known)
    right = check_group(seeds[half:], tally, load, avoid_known)
    if left and right and result["status"] != "degenerate":
        tally.pack_only.append({"seeds": seeds, "status": result["status"],
                                "first_failure": (result["failures"] or [""])[0][:1500],
                                "spec": packed.text})
    return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--max-specs", type=int, default=10**9)
    ap.add_argument("--start", type=int, default=100_000, help="first seed")
    ap.add_argument("--pack", type=int, default=4, help="specs per compile")
    ap.add_argument("--include-known", action="store_true",
                    help="also generate the patterns of already reported bugs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz_backend.json"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tally = Tally(args)
    deadline = time.time() + 60 * args.minutes
    seed = args.start
    with tempfile.TemporaryDirectory(prefix="hogfuzz") as cache:
        def load(text):
            tally.compiles += 1
            return hogwild_dsl.load(text=text, cache_dir=cache)
        while time.time() < deadline and sum(tally.total.values()) < args.max_specs:
            seeds = []
            while len(seeds) < args.pack:     # screen out specs without a safe point first
                case = specgen.generate(seed, avoid_known=not args.include_known)
                if specgen.reference(case) is None:
                    tally.add(case, {"status": "degenerate", "failures": []})
                else:
                    seeds.append(seed)
                seed += 1
            check_group(seeds, tally, load, not args.include_known)
            tally.write(out)
            for entry in os.scandir(cache):       # keep the disk small: builds are not reused
                if entry.is_dir():
                    subprocess.run(["rm", "-rf", entry.path], check=False)
            t = tally.total
            print(f"{sum(t.values())} specs: {t['match']} match, {t['mismatch']} mismatch, "
                  f"{t['compile-error']} compile errors, {t['degenerate']} degenerate, "
                  f"{t['harness-error']} harness errors ({time.time() - tally.began:.0f} s)",
                  flush=True)
    tally.write(out, final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
