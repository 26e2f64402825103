"""Cache-line hand-offs at 2 threads, counted (no timer): how many times per term a thread
writes a line of the model that the other thread wrote last, on the paper's four problems.

  python bench/bench_handoffs.py -> bench/results/handoffs.json and handoffs.md

The model of 2 threads: the epoch's visit (the Trainer's default order and chunk, as
Trainer._visit_plan picks them, or a shuffle) cut in two halves that advance in lockstep, term
i of one half beside term i of the other; each term writes the cache lines of the param rows it
touches (the shipped specs: svm w[j] for j in X[i]; mc L[u], R[v]; cuts x[u], x[v] per edge and
x[n] per node). A touch of a line whose previous toucher was the other thread is a hand-off.
Lines are never evicted here, so this is an upper bound where the model outgrows the caches.
Also with the most-touched rows (by the data's counts, as the hot rows of replicas are chosen)
on per-thread replicas, whose touches then never hand off: how many values replicas would
need to remove most hand-offs.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import hogwild_dsl  # noqa: E402
import bench_paper  # noqa: E402
from machine import machine  # noqa: E402

LINE = 64
REPLICATED = (256, 4096, 65536)


def touches(name, data):
    """(term of each touch, row of each touch, doubles per row, terms) of a problem."""
    if name == "svm":
        X = data["X"].tocsr()
        return np.repeat(np.arange(X.shape[0]), np.diff(X.indptr)), \
            X.indices.astype(np.int64), 1, X.shape[0]
    if name == "mc":
        r = data["r"].tocsr().tocoo()
        t = np.arange(r.nnz)
        users = r.row.astype(np.int64) + r.shape[1]        # L's rows after R's
        return np.concatenate([t, t]), np.concatenate([r.col.astype(np.int64), users]), 20, r.nnz
    w = data["w"].tocsr().tocoo()
    ne, nn = w.nnz, w.shape[0]
    term = np.concatenate([np.arange(ne), np.arange(ne), ne + np.arange(nn)])
    row = np.concatenate([w.row, w.col, np.arange(nn)]).astype(np.int64)
    return term, row, data["c"].shape[1], ne + nn


def lines_of(term, row, width):
    """Every cache line of each touched row (rows of `width` doubles, laid out one after
    another from a line boundary)."""
    first, last = row * width * 8 // LINE, (row * width * 8 + width * 8 - 1) // LINE
    ts, ls, rs = [], [], []
    for k in range(int((last - first).max()) + 1):
        m = first + k <= last
        ts.append(term[m]), ls.append(first[m] + k), rs.append(row[m])
    return np.concatenate(ts), np.concatenate(ls), np.concatenate(rs)


def handoffs(visit, term, line, row, hot_rows) -> int:
    """Hand-offs of 2 threads taking the two halves of `visit` (terms) in lockstep."""
    n = visit.size
    pos = np.empty(n, np.int64)
    pos[visit] = np.arange(n)
    half = (n + 1) // 2
    keep = ~np.isin(row, hot_rows) if len(hot_rows) else np.ones(row.size, bool)
    p = pos[term[keep]]
    thread, step, ln = (p >= half), p % half, line[keep]
    o = np.lexsort((step, ln))
    ln, thread = ln[o], thread[o]
    return int(np.sum((ln[1:] == ln[:-1]) & (thread[1:] != thread[:-1])))


def main(argv=None):
    rng = np.random.default_rng(0)
    rows = []
    for name, label, spec, data, metric, split in bench_paper.problems():
        mod = hogwild_dsl.load(bench_paper.SPECS / spec)
        t = mod.Trainer(threads=2, seed=0)
        arrays, sizes = t.layout(data)
        term, row, width, n = touches(name, data)
        order, chunk = t._visit_plan(arrays, n)
        term, line, row = lines_of(term, row, width)
        counts = np.bincount(row)
        ranked = np.argsort(-counts, kind="stable")
        for which in (order, "shuffle"):
            if which == "chunks":
                starts = rng.permutation(-(-n // chunk)) * chunk
                visit = (starts[:, None] + np.arange(chunk)).ravel()
                visit = visit[visit < n]
            else:
                visit = rng.permutation(n)
            r = {"problem": name, "data": label, "terms": n, "order": which,
                 "chunk": chunk if which == "chunks" else 0, "lines_per_term": line.size / n,
                 "handoffs_per_term": handoffs(visit, term, line, row, ())}
            for values in REPLICATED:
                r[f"replicated_{values}"] = handoffs(visit, term, line, row,
                                                     ranked[:max(1, values // width)]) / n
            r["handoffs_per_term"] /= n
            rows.append(r)
            print(f"{name:13s} {which:8s} lines/term {r['lines_per_term']:.1f}: hand-offs/term "
                  f"{r['handoffs_per_term']:.2f}; with the top 256 / 4096 / 65536 values on "
                  "replicas: " + " / ".join(f"{r[f'replicated_{v}']:.2f}" for v in REPLICATED),
                  flush=True)
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    out = HERE / "results"
    (out / "handoffs.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Cache-line hand-offs at 2 threads, counted", "",
             f"bench/bench_handoffs.py, {result['date']} (a count, no timer: the same on any "
             "machine). Two threads take the two halves of an epoch's visit in lockstep; a "
             "write to a model line whose last writer was the other thread is a hand-off "
             "(no evictions: an upper bound). \"Top K values on replicas\": the most-touched "
             "rows, K values in all, never hand off.", "",
             "| problem | order | lines written / term | hand-offs / term | top 256 values on "
             "replicas | top 4096 | top 65536 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        which = f"chunks of {r['chunk']}" if r["order"] == "chunks" else r["order"]
        lines.append(f"| {r['problem']} | {which} | {r['lines_per_term']:.1f} | "
                     f"{r['handoffs_per_term']:.2f} | " +
                     " | ".join(f"{r[f'replicated_{v}']:.2f}" for v in REPLICATED) + " |")
    (out / "handoffs.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}/handoffs.json and handoffs.md")


if __name__ == "__main__":
    main()
