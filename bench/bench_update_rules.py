"""Update rules side by side (issue 16): the epoch time of the matrix-completion spec under
`sgd`, `adagrad` and `adagrad_row`, for this tree and an older revision.

  python bench/bench_update_rules.py [--before REV] [--rounds 3] [--epochs 5]
      -> bench/results/update_rules.json and bench/results/update_rules.md

specs/mc.hog (rank 20) on Netflix-shaped ratings (hogwild_dsl.datasets.netflix_like, 100,000
users, 17,770 items, 1,500,000 ratings), 1 thread, step 0.05, seed 0, the default visit
order: the update seconds of `--epochs` epochs (the history's `seconds`) and the final
objective (the same algorithm on both sides gives the same objective) and test RMSE on the
held-out 5% of the ratings. Each measurement is a fresh process (the older revision imported
from a `git archive` of it, bench/machine.py), in rounds that alternate the two trees; the
figure is the minimum over the rounds. Beside them, where it builds, LIBMF (bench/peers/
libmf.py: per-row AdaGrad, its step 0.1, no decay) for the same epochs on 1 thread, and this
tree's adagrad_row at LIBMF's step and decay (its test RMSE differs by the initialisation:
bench/results/no_tuning.md).
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RULES = ("sgd", "adagrad", "adagrad_row")


def worker(epochs: int) -> dict:
    """{rule: [update seconds, final objective]} of this process's hogwild_dsl."""
    import warnings

    import numpy as np

    import hogwild_dsl
    from hogwild_dsl import datasets
    warnings.simplefilter("ignore")
    train, test = datasets.netflix_like(n_users=100_000, n_items=17_770, n_ratings=1_500_000,
                                     seed=0)
    mod = hogwild_dsl.load("mc")          # the shipped spec of the tree imported
    out = {}
    runs = [(rule, rule, dict(step=0.05)) for rule in RULES] + \
        [("adagrad_row at LIBMF's step", "adagrad_row", dict(step=0.1, decay=1.0))]
    for label, rule, options in runs:
        t = mod.Trainer(threads=1, epochs=epochs, seed=0, optimizer=rule, **options)
        t.fit(r=train)
        rmse = float(np.sqrt(np.mean((t.predict(r=test) - test.data) ** 2)))
        out[label] = [sum(h["seconds"] for h in t.history), float(t.history[-1]["objective"]),
                      rmse]
    return out


def run(code: Path | None, epochs: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if code is not None:
        env["PYTHONPATH"] = str(code)
    out = subprocess.run([sys.executable, __file__, "--worker", "--epochs", str(epochs)],
                         env=env, capture_output=True, text=True, cwd=code or ROOT)
    if out.returncode:
        raise SystemExit(f"the worker on {code or 'this tree'} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def libmf_side(epochs: int) -> dict:
    """LIBMF on the same ratings (best of 3 trainings), where it builds."""
    from peers import libmf

    from hogwild_dsl import datasets
    ok, why = libmf.available()
    if not ok:
        return {"not_run": f"LIBMF not run: {why}"}
    train, test = datasets.netflix_like(n_users=100_000, n_items=17_770, n_ratings=1_500_000,
                                        seed=0)
    models = [libmf.libmf_train(train, k=20, iters=epochs, threads=1) for _ in range(3)]
    return {"seconds": min(m.seconds for m in models),
            "test_rmse": libmf.libmf_rmse(models[0], test)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="c2da7bd", help="the older revision (git)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.epochs)))
        return
    sys.path.insert(0, str(HERE))
    from machine import machine, snapshot
    with tempfile.TemporaryDirectory() as tmp:
        before = snapshot(args.before, Path(tmp) / "before")
        runs = {"before": [], "this tree": []}
        for _ in range(args.rounds):
            for side, code in (("before", before), ("this tree", None)):
                runs[side].append(run(code, args.epochs))
                print(side, runs[side][-1], flush=True)
    best = {side: {r: [min(x[r][0] for x in rs), *rs[0][r][1:]] for r in rs[0]}
            for side, rs in runs.items()}
    peer = libmf_side(args.epochs)
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "before": args.before, "epochs": args.epochs, "rounds": runs, "best": best,
              "libmf": peer,
              "load_average": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "update_rules.json").write_text(json.dumps(result, indent=1))
    m = result["machine"]
    lines = ["# Update rules: mc epochs under sgd, adagrad, adagrad_row (bench/bench_update_rules.py)",
             "", f"Machine: {m['cpu']}, {m['cores']} cores, host {m['host']}; {result['date']}; "
             f"load average at the end {result['load_average'][0]:.2f}. specs/mc.hog, 1,500,000 "
             f"Netflix-shaped ratings, 1 thread, step 0.05, {args.epochs} epochs; minimum over "
             f"{args.rounds} alternating rounds, each a fresh process.", "",
             f"| rule | before ({args.before}) s | this tree s | speed-up | objective before "
             "| objective now | test RMSE now |", "|---|---|---|---|---|---|---|"]
    for r in best["this tree"]:
        b, n = best["before"].get(r), best["this tree"][r]
        lines.append(f"| {r} | {b[0]:.3f} | {n[0]:.3f} | {b[0] / n[0]:.2f}x | {b[1]:.10g} "
                     f"| {n[1]:.10g} | {n[2]:.4f} |" if b else
                     f"| {r} | - | {n[0]:.3f} | - | - | {n[1]:.10g} | {n[2]:.4f} |")
    lines += ["", f"LIBMF, 1 thread, {args.epochs} epochs: " + (
        f"{peer['seconds']:.3f} s, test RMSE {peer['test_rmse']:.4f}" if "seconds" in peer
        else peer["not_run"])]
    (args.out / "update_rules.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
