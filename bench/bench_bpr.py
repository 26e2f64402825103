"""BPR with negative sampling (the shipped `bpr` spec) side by side with `implicit`'s and
LightFM's BPR.

  python bench/bench_bpr.py [--users 100000] [--items 20000] [--clicks 2400000] [--epochs 20]
                            [--threads 2] [--repeats 1]
      -> bench/results/bpr.json and bench/results/bpr.md

Implicit feedback generated with planted tastes (PERF-NOTES.md's shape: 100k users x 20k
items, ~2.4M clicks): every item has a topic and a Zipf popularity; a user clicks mostly items
of one or two favourite topics (popularity-weighted), the rest anywhere. One click per user is
held out for the test, and one more per user (of those with at least three) for validation;
AUC = the share of held-out (user, item) pairs that score above a (user, unseen random item)
pair, the same pairs for every trainer. Every trainer: k = 32 factors, the same epochs and
threads, and the same learning-rate search: a grid of three values, the one with the best
validation AUC kept, and its test AUC and fit time reported. `implicit` (float32): its default
learning rate 0.01 and 5x, 10x it; ours (the spec's AdaGrad, as written): its step 0.05 and 2x,
4x it, in float64 and, where the trainer has it (load(dtype="float32")), in float32; LightFM
(float32, its default AdaGrad schedule, built from its sdist by bench/peers/lightfm_peer.py):
its default learning rate 0.05 and 4x, 8x it (a first run's best of 0.05, 0.1, 0.2 was 0.2, at
the grid's edge), scored with its item biases. Times are whole
fits (data checks included for ours).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import hogwild_dsl  # noqa: E402
from machine import machine  # noqa: E402


def implicit_feedback(n_users, n_items, n_clicks, topics=50, p_fav=0.8, seed=0):
    """(train, test_users, test_items): a users x items CSR of about n_clicks distinct clicks
    (value 1) and one held-out click per user who has at least two."""
    m = _clicks(n_users, n_items, n_clicks, topics, p_fav, seed)
    if m.nnz < 0.97 * n_clicks:         # repeated clicks collapse: draw once more, scaled up
        m = _clicks(n_users, n_items, n_clicks * n_clicks / m.nnz, topics, p_fav, seed)
    rng = np.random.default_rng(seed + 1)
    # hold out one click of every user with at least two
    lengths = np.diff(m.indptr)
    test_users = np.flatnonzero(lengths >= 2)
    pick = m.indptr[test_users] + rng.integers(lengths[test_users])
    test_items = m.indices[pick].copy()
    keep = np.ones(m.nnz, dtype=bool)
    keep[pick] = False
    rows = np.repeat(np.arange(n_users), lengths)[keep]
    train = sp.csr_matrix((m.data[keep], (rows, m.indices[keep])), shape=m.shape)
    return train, test_users, test_items


def _clicks(n_users, n_items, n_clicks, topics, p_fav, seed):
    rng = np.random.default_rng(seed)
    item_topic = rng.integers(topics, size=n_items)
    popularity = 1.0 / (np.arange(n_items) + 10.0) ** 0.9
    popularity = popularity[rng.permutation(n_items)]
    by_topic = [np.flatnonzero(item_topic == t) for t in range(topics)]
    topic_cdf = [np.cumsum(popularity[ix]) / popularity[ix].sum() for ix in by_topic]
    all_cdf = np.cumsum(popularity) / popularity.sum()
    counts = np.maximum(2, rng.zipf(1.8, size=n_users)).astype(np.int64)
    counts = np.minimum(counts, 500)
    counts = np.round(counts * (n_clicks / counts.sum())).astype(np.int64).clip(2, None)
    users = np.repeat(np.arange(n_users), counts)
    fav = rng.integers(topics, size=(n_users, 2))
    from_fav = rng.random(users.size) < p_fav
    which = fav[users, rng.integers(2, size=users.size)]
    items = np.searchsorted(all_cdf, rng.random(users.size))
    for t in range(topics):          # favourite-topic clicks, drawn per topic (vectorised)
        sel = np.flatnonzero(from_fav & (which == t))
        pos = np.searchsorted(topic_cdf[t], rng.random(sel.size))
        items[sel] = by_topic[t][np.minimum(pos, by_topic[t].size - 1)]
    items = np.minimum(items, n_items - 1)
    m = sp.csr_matrix((np.ones(users.size), (users, items)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def negatives(train, users, seed=1):
    """A random item per test user that the user never clicked in train."""
    rng = np.random.default_rng(seed)
    out = rng.integers(train.shape[1], size=users.size)
    for _ in range(20):
        seen = np.asarray(train[users, out]).ravel() != 0
        if not seen.any():
            break
        out[seen] = rng.integers(train.shape[1], size=int(seen.sum()))
    return out


def auc(user_f, item_f, users, pos, neg) -> float:
    s_pos = np.einsum("ij,ij->i", user_f[users], item_f[pos])
    s_neg = np.einsum("ij,ij->i", user_f[users], item_f[neg])
    return float(np.mean(s_pos > s_neg) + 0.5 * np.mean(s_pos == s_neg))


def holdout(train, seed):
    """(train without one click of every user with at least three, those users, their
    held-out items): the validation split, taken from the training clicks."""
    rng = np.random.default_rng(seed)
    lengths = np.diff(train.indptr)
    users = np.flatnonzero(lengths >= 3)
    pick = train.indptr[users] + rng.integers(lengths[users])
    items = train.indices[pick].copy()
    keep = np.ones(train.nnz, dtype=bool)
    keep[pick] = False
    rows = np.repeat(np.arange(train.shape[0]), lengths)[keep]
    rest = sp.csr_matrix((train.data[keep], (rows, train.indices[keep])), shape=train.shape)
    return rest, users, items


def run_ours(train, epochs, threads, step, dtype):
    mod = hogwild_dsl.load("bpr") if dtype == "float64" else hogwild_dsl.load("bpr", dtype=dtype)
    t = mod.Trainer(threads=threads, epochs=epochs, seed=0, step=step)
    began = time.perf_counter()
    t.fit(seen=train)
    seconds = time.perf_counter() - began
    return seconds, np.asarray(t.params["P"]), np.asarray(t.params["Q"])


def run_implicit(train, epochs, threads, learning_rate):
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    model = BayesianPersonalizedRanking(factors=32, iterations=epochs, num_threads=threads,
                                        learning_rate=learning_rate, random_state=0)
    began = time.perf_counter()
    model.fit(train.tocsr().astype(np.float32), show_progress=False)
    seconds = time.perf_counter() - began
    return seconds, np.asarray(model.user_factors), np.asarray(model.item_factors)


def run_lightfm(train, epochs, threads, learning_rate):
    from peers import lightfm_peer
    return lightfm_peer.bpr(train, epochs, threads, learning_rate)


def has_float32() -> bool:
    try:
        hogwild_dsl.load("bpr", dtype="float32")
        return True
    except TypeError:
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--clicks", type=int, default=2_400_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="fits per setting (median time)")
    ap.add_argument("--implicit-lr", type=float, nargs=3, default=[0.01, 0.05, 0.1],
                    help="implicit's learning rates tried (its default is 0.01)")
    ap.add_argument("--lightfm-lr", type=float, nargs=3, default=[0.05, 0.2, 0.4],
                    help="LightFM's learning rates tried (its default is 0.05)")
    ap.add_argument("--steps", type=float, nargs=3, default=[0.05, 0.1, 0.2],
                    help="our steps tried (the spec's is 0.05)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    full, users, pos = implicit_feedback(args.users, args.items, args.clicks)
    neg = negatives(full, users)
    train, v_users, v_pos = holdout(full, seed=7)
    v_neg = negatives(full, v_users, seed=8)
    print(f"{train.shape[0]:,} users x {train.shape[1]:,} items, {train.nnz:,} training "
          f"clicks; {users.size:,} test and {v_users.size:,} validation clicks", flush=True)
    families = [("hogwild-dsl bpr.hog (float64)", "step", args.steps,
                 lambda tr, e, th, x: run_ours(tr, e, th, x, "float64"))]
    if has_float32():
        families.append(("hogwild-dsl bpr.hog (float32)", "step", args.steps,
                         lambda tr, e, th, x: run_ours(tr, e, th, x, "float32")))
    families.append(("implicit BPR (float32)", "learning rate", args.implicit_lr,
                     run_implicit))
    families.append(("LightFM BPR (float32)", "learning rate", args.lightfm_lr, run_lightfm))
    rows, chosen = [], {}
    for family, knob, grid, fit in families:
        for x in grid:
            name = f"{family}, {knob} {x:g}"
            try:
                runs = [fit(train, args.epochs, args.threads, x) for _ in range(args.repeats)]
            except (ImportError, RuntimeError, OSError) as e:
                print(f"{name}: not run ({e})")
                break
            seconds = float(np.median([r[0] for r in runs]))
            row = {"trainer": name, "family": family, knob.replace(" ", "_"): x,
                   "fit_s": seconds,
                   "validation_auc": auc(runs[-1][1], runs[-1][2], v_users, v_pos, v_neg),
                   "auc": auc(runs[-1][1], runs[-1][2], users, pos, neg),
                   "per_click_epoch_ns": seconds / (train.nnz * args.epochs) * 1e9,
                   "load_average": os.getloadavg()[0]}
            rows.append(row)
            if family not in chosen or row["validation_auc"] > chosen[family]["validation_auc"]:
                chosen[family] = row
            print(f"{name}: fit {seconds:.2f} s, validation AUC {row['validation_auc']:.4f}, "
                  f"test AUC {row['auc']:.4f} (load {row['load_average']:.1f})", flush=True)
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "users": train.shape[0], "items": train.shape[1], "clicks": int(train.nnz),
              "epochs": args.epochs, "threads": args.threads, "rows": rows,
              "chosen": {f: r["trainer"] for f, r in chosen.items()}}
    ours = [r for f, r in chosen.items() if f.startswith("hogwild")]
    peers = [r for f, r in chosen.items() if not f.startswith("hogwild")]
    if ours and peers:
        best = max(peers, key=lambda r: r["auc"])
        result["best_peer"] = best["trainer"]
        result["versus_best_peer"] = {r["trainer"]: {
            "speed_ratio": best["fit_s"] / r["fit_s"],
            "auc_difference": r["auc"] - best["auc"]} for r in ours}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bpr.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = ["# BPR with negative sampling: hogwild-dsl vs implicit and LightFM", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, host {m['host']}; {result['date']}. "
             f"{result['users']:,} users x {result['items']:,} items, {result['clicks']:,} "
             f"training clicks, k = 32, {args.epochs} epochs, {args.threads} threads. Each "
             "trainer's learning rate chosen from a grid of three by validation AUC (chosen "
             "rows in bold); AUC on the test clicks. Load: the machine's 1-minute load average "
             "after the fit (other jobs share it).", "",
             "| trainer | fit s | ns per click per epoch | validation AUC | test AUC | load |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        bold = "**" if chosen.get(r["family"]) is r else ""
        lines.append(f"| {bold}{r['trainer']}{bold} | {r['fit_s']:.2f} | "
                     f"{r['per_click_epoch_ns']:.0f} | {r['validation_auc']:.4f} | "
                     f"{r['auc']:.4f} | {r['load_average']:.1f} |")
    if "versus_best_peer" in result:
        lines += ["", f"Against the best peer by test AUC ({result['best_peer']}):"]
        for name, v in result["versus_best_peer"].items():
            lines.append(f"- {name}: speed {v['speed_ratio']:.2f}x its; AUC difference "
                         f"{v['auc_difference']:+.4f}.")
    (args.out / "bpr.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}/bpr.json and bpr.md")


if __name__ == "__main__":
    main()
