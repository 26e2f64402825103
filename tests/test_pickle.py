"""Trainers pickle: spec text, consts and state travel; a fresh process rebuilds the module
(or finds it in the compile cache) and carries on exactly where the pickled trainer stopped."""
import os
import pickle
import subprocess
import sys

import numpy as np
import scipy.sparse as sp

from conftest import sparse_rows

# Runs in a fresh interpreter: unpickle, report what the trainer holds, train one more epoch.
CHILD = r"""
import pickle, sys
import numpy as np
t = pickle.load(open(sys.argv[1], "rb"))
data = pickle.load(open(sys.argv[2], "rb"))
before = {k: v.copy() for k, v in t.params.items()}
settings = dict(threads=t.threads, epochs=t.epochs, step=t.step, decay=t.decay, seed=t.seed,
                sync=t.sync, order=t.order, consts=dict(t.spec.consts))
t.epochs = 1
t.fit(**data)
pickle.dump({"before": before, "after": t.params, "history": t.history, "settings": settings,
             "predict": t.predict(**data)}, open(sys.argv[3], "wb"))
"""


def run_child(tmp_path, trainer, data, cache_dir):
    paths = [tmp_path / n for n in ("t.pkl", "data.pkl", "out.pkl")]
    paths[0].write_bytes(pickle.dumps(trainer))
    paths[1].write_bytes(pickle.dumps(data))
    env = dict(os.environ, HOGWILD_CACHE_DIR=str(cache_dir))
    subprocess.run([sys.executable, "-c", CHILD, *map(str, paths)], check=True, env=env,
                   cwd=tmp_path, timeout=300)
    return pickle.loads(paths[2].read_bytes())


def test_trainer_round_trips_in_a_fresh_process(load_spec, hog_cache_dir, tmp_path):
    X, y = sparse_rows(300, 40, 5, seed=3)
    data = {"X": X, "y": y}
    t = load_spec("logreg").Trainer(threads=1, epochs=3, step=0.3, decay=0.8, seed=5)
    t.fit(**data)
    got = run_child(tmp_path, t, data, hog_cache_dir)
    assert got["settings"] == dict(threads=1, epochs=3, step=0.3, decay=0.8, seed=5,
                                   sync="hogwild", order=t.order, consts={})
    for k in t.params:
        np.testing.assert_array_equal(got["before"][k], t.params[k])
    # the child's 4th epoch is the one this process would have run (same step, same rng state)
    t.epochs = 1
    t.fit(**data)
    assert [h["epoch"] for h in got["history"]] == [1, 2, 3, 4]
    assert got["history"][-1]["step"] == t.history[-1]["step"]
    for k in t.params:
        np.testing.assert_array_equal(got["after"][k], t.params[k])
    np.testing.assert_array_equal(got["predict"], t.predict(**data))


def test_consts_travel_and_a_cold_cache_rebuilds(load_spec, tmp_path):
    r = sp.random(30, 20, density=0.3, random_state=1, format="csr") * 5
    t = load_spec("mc", consts={"rank": 3}).Trainer(threads=1, epochs=2, seed=1)
    t.fit(r=r)
    assert t.params["L"].shape == (30, 3)
    cold = tmp_path / "cold-cache"
    got = run_child(tmp_path, t, {"r": r}, cold)      # nothing cached there: it is rebuilt
    assert got["settings"]["consts"] == {"rank": 3}
    np.testing.assert_array_equal(got["before"]["L"], t.params["L"])
    assert any(cold.iterdir())
