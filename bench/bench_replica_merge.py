"""Replicas' convergence at many threads: the SVM on RCV1-shaped rows (hogwild_dsl.datasets.
rcv1_like), 3 epochs at the spec's step, hogwild with the default replicas, at each thread
count: the median epoch update time and the objective after the last epoch, for the
hogwild_dsl of the tree given (run once per tree, side by side, to compare two revisions).

  python bench/bench_replica_merge.py TREE THREADS ROWS     e.g.  . 1,2,3,4,8,16 800000

Prints one line per thread count and a JSON line; bench/results/replica_merge.md holds a
run on the 16-core device machine.
"""
import sys, time, json
sys.path.insert(0, sys.argv[1])
import numpy as np, hogwild_dsl
from hogwild_dsl import datasets
X, y = datasets.rcv1_like(n_rows=int(sys.argv[3]), seed=0)
t = hogwild_dsl.load("svm")
out = []
for th in [int(a) for a in sys.argv[2].split(",")]:
    tr = t.Trainer(threads=th, epochs=3, seed=0, progress=False)
    tr.fit(X=X, y=y)
    secs = [h["seconds"] for h in tr.history]
    out.append(dict(threads=th, epoch_s=float(np.median(secs)), objective=tr.history[-1]["objective"]))
    print(sys.argv[1], th, f"epoch {np.median(secs):.4f}s", f"objective {tr.history[-1]['objective']:.6f}", flush=True)
print("JSON", json.dumps(out))
