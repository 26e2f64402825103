"""Why the default step misses the no-tuning target (issue 16): variants of the calibration
scored against the full fits of bench/results/no_tuning.json (run bench_no_tuning.py first).

  python bench/bench_calibration_variants.py [--epochs 10]
      -> bench/results/calibration_variants.json and .md

For every spec and optimizer of no_tuning.json, on the same data, the sample search is rerun
as the Trainer does it (runtime.STEP_GRID, 3 passes, a 2% sample of at least 1,000 terms),
then each variant picks a step, and the pick is scored by the final objective of a full
10-epoch fit at that step (from no_tuning.json's grid of half-powers of 3, where every pick
lies) over the best SGD one:
- "3 passes": the search as it is;
- "3 passes, half steps": then the grid's half-steps either side of its pick, 3 passes;
- "fit's epochs, half steps": then the pick and its half-steps, each for as many passes as the
  fit has epochs (the fit's horizon and decay schedule on the sample);
- "restart /3" and "restart /sqrt(3)": where the full fit diverges at the pick (no_tuning.json
  says so), the step a fit restarting at a third (or at sqrt(3) lower) lands on.
The cost is in passes over the sample per fit's epochs over all the terms.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import hogwild_dsl  # noqa: E402
from hogwild_dsl import runtime  # noqa: E402
from bench_no_tuning import data_sets, without_train_line  # noqa: E402
from machine import machine  # noqa: E402

H = math.sqrt(3.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args(argv)
    done = json.loads((HERE / "results" / "no_tuning.json").read_text())
    sets = data_sets(done["scale"])
    rows = []
    for row in done["rows"]:
        name = row["spec"]
        best = row["best_sgd_objective"]
        text, _ = without_train_line(name)
        mod = hogwild_dsl.load(text=text)
        for opt in ("sgd", "adagrad"):
            full = {r["step"]: (math.inf if r["diverged"] else r["objective"]) for r in row[opt]}

            def ratio(step):
                near = min(full, key=lambda s: abs(math.log(s / step)))
                return full[near] / best if abs(math.log(near / step)) < 0.05 else None

            def land(step, factor):
                while ratio(step) == math.inf and step > min(full):
                    step /= factor
                return step
            picks, costs = search(mod, sets[name][0], opt, args.epochs)
            out = {"spec": name, "optimizer": opt}
            for label, step in picks.items():
                out[label] = {"step": step, "ratio": ratio(step), "cost": costs[label]}
            a = picks["3 passes"]
            for label, f in (("restart /3", 3.0), ("restart /sqrt(3)", H)):
                out[label] = {"step": land(a, f), "ratio": ratio(land(a, f)), "cost": 0.0}
            rows.append(out)
            print(name, opt, {k: (f"{v['step']:.3g}", v["ratio"] and round(v["ratio"], 4))
                              for k, v in out.items() if isinstance(v, dict)}, flush=True)
    result = {"machine": machine(), "epochs": args.epochs, "rows": rows}
    (HERE / "results" / "calibration_variants.json").write_text(json.dumps(result, indent=2))
    (HERE / "results" / "calibration_variants.md").write_text(markdown(result))


def search(mod, data, opt, epochs):
    """Each variant's pick on one sample (as the Trainer draws it), and its cost in fits."""
    t = mod.Trainer(epochs=epochs, threads=1, seed=0, optimizer=opt)
    arrays, sizes = t.layout(data)
    kernel = t.kernels.Kernel(arrays, sizes)
    n_all = kernel.nterms
    rng = np.random.default_rng([0, 0x57E9])
    n = min(n_all, runtime.CALIBRATION_MAX_TERMS,
            max(runtime.CALIBRATION_TERMS, int(runtime.CALIBRATION_SHARE * n_all)))
    sample = np.sort(rng.choice(n_all, n, replace=False)).astype(np.int64)
    visits = [rng.permutation(sample) for _ in range(epochs)]
    live = {p.name for p in t.spec.params} | {k for _, k, _ in t._state_arrays()}
    passes = [0]

    def trial(step, k):
        copies = {name: arrays[name].copy() for name in live}
        run = t.kernels.Kernel({**arrays, **copies}, sizes)
        draws = hasattr(run, "set_draw_key")
        for i, visit in enumerate(visits[:k]):
            if draws:
                run.set_draw_key(runtime._draw_key(0, "calibrate", i))
            run.epoch(visit, 0, step * t.decay ** i, 1, 0)
        if draws:
            run.set_draw_key(runtime._draw_key(0, "objective"))
        passes[0] += k
        value = run.objective_terms(sample, 1) / n
        ok = all(math.isfinite(np.sum(c)) for c in copies.values()) and math.isfinite(value)
        return value if ok else math.inf

    def pick(steps, k):
        values = [trial(s, k) for s in steps]
        return steps[int(np.argmin(values))]
    fit = epochs * n_all
    a = pick(list(runtime.STEP_GRID), 3)
    coarse = passes[0] * n / fit
    passes[0] = 0
    fine = pick([a / H, a, a * H], 3)
    fine_cost = passes[0] * n / fit
    passes[0] = 0
    horizon = pick([a / H, a, a * H], epochs)
    horizon_cost = passes[0] * n / fit
    return ({"3 passes": a, "3 passes, half steps": fine, "fit's epochs, half steps": horizon},
            {"3 passes": coarse, "3 passes, half steps": coarse + fine_cost,
             "fit's epochs, half steps": coarse + horizon_cost})


def markdown(result) -> str:
    m = result["machine"]
    labels = ["3 passes", "3 passes, half steps", "fit's epochs, half steps", "restart /3",
              "restart /sqrt(3)"]
    lines = ["# Calibration variants against the full fits (bench/bench_calibration_variants.py)",
             "", f"Machine: {m['cpu']}, {m['cores']} cores, host {m['host']}; {result['epochs']} "
             "epochs, one thread. Each cell: the variant's step, and the final objective of a "
             "full fit at it over the best hand-tuned SGD one (bench/results/no_tuning.json; "
             "inf: the full fit diverges there). Cost: sample passes in fits' worth of terms "
             "(the restarts' cost is the diverging fit's epochs, not counted).", "",
             "| spec | optimizer | " + " | ".join(labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    for r in result["rows"]:
        cells = [r["spec"], r["optimizer"]]
        for label in labels:
            v = r[label]
            ratio = "-" if v["ratio"] is None else f"{v['ratio']:.4g}"
            cost = f", cost {v['cost']:.2f}" if v["cost"] else ""
            cells.append(f"{v['step']:.3g}: {ratio}{cost}")
        lines.append("| " + " | ".join(cells) + " |")
    for label in labels:
        for opt in ("sgd", "adagrad"):
            hits = [r["spec"] for r in result["rows"] if r["optimizer"] == opt and
                    r[label]["ratio"] is not None and r[label]["ratio"] <= 1.01]
            lines.append(f"\n{label}, {opt}: within 1% on {len(hits)} ({', '.join(hits)}).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
