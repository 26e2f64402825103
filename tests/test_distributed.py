"""hogwild_dsl.distributed on a 2-worker LocalCluster (processes, 1 thread each)."""
import math
import os
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from hogwild_dsl import DataError, HogwildError, distributed

from conftest import SPECS, sparse_rows

dask_distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

BIASED_MF = """model bmf
dim user, item
const rank = 4
data r[user, item] : sparse
param mu = 0
param L[user, rank] ~ normal(0, 0.1)
param R[item, rank] ~ normal(0, 0.1)
for (u, v) in r:
    loss (mu + dot(L[u], R[v]) - r[u, v])^2
    reg l2(0.05) on L[u], R[v]
train step 0.05, decay 0.9, epochs 10
"""

GRAPH = """model cutedge
dim node
const label = 3
data w[node, node] : sparse
param x[node, label] ~ uniform(0, 1)
for (u, v) in w:
    loss w[u, v] * norm1(x[u] - x[v])
"""


@pytest.fixture(scope="module")
def client(hog_cache_dir):
    """One cluster for the module; workers inherit HOGWILD_CACHE_DIR and so share the cache."""
    cluster = dask_distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                            dashboard_address=None)
    c = dask_distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture
def two_workers(client):
    client.wait_for_workers(2, timeout=60)
    return client


def ratings(n_users=120, n_items=90, n=2500, rank=5, seed=0):
    rng = np.random.default_rng(seed)
    L, R = rng.normal(size=(n_users, rank)), rng.normal(size=(n_items, rank))
    u, v = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    r = sp.csr_matrix(((L[u] * R[v]).sum(1) + 0.1 * rng.normal(size=n), (u, v)),
                      shape=(n_users, n_items))
    r.sum_duplicates()
    return r


# ---------------------------------------------------------------- pure parts, no cluster


def spec(name):
    return hogwild_dsl.check((SPECS / f"{name}.hog").read_text())


def test_plan_chooses_dsgd_only_where_terms_touch_their_row_and_column():
    svm = distributed.plan(spec("svm"))
    assert (svm.mode, svm.split) == ("average", {"X": "rows", "y": "rows"})
    mc = distributed.plan(spec("mc"))
    assert (mc.mode, mc.role) == ("dsgd", {"L": "u", "R": "v"})
    bmf = distributed.plan(hogwild_dsl.check(BIASED_MF))
    assert bmf.mode == "average" and "mu" in bmf.why
    with pytest.raises(HogwildError, match="param 'x'"):
        distributed.plan(spec("cuts"))        # its node block's dim is also x's


@pytest.mark.parametrize("d", [2, 3, 5])
def test_dsgd_strata_never_let_two_workers_write_one_coordinate(d):
    r = ratings(n_users=70, n_items=50, n=1200, seed=d)
    ublock, iblock = distributed.dsgd_blocks(70, d, 0), distributed.dsgd_blocks(50, d, 1)
    m = r.tocoo()
    covered = set()
    for stratum in distributed.dsgd_schedule(d):
        assert sorted(k for k, _ in stratum) == list(range(d))     # every worker busy
        written_L, written_R = set(), set()
        for k, j in stratum:
            covered.add((k, j))
            mine = (ublock[m.row] == k) & (iblock[m.col] == j)
            rows, cols = set(m.row[mine]), set(m.col[mine])
            assert not rows & written_L and not cols & written_R
            written_L |= rows
            written_R |= cols
    assert covered == {(k, j) for k in range(d) for j in range(d)}  # an epoch sees every entry
    assert np.bincount(ublock).max() - np.bincount(ublock).min() <= 1


def test_touches_and_degrees_count_the_terms_that_reach_each_coordinate():
    X = sp.csr_matrix(np.array([[1.0, 0, 2], [0, 0, 3], [4, 0, 5]]))
    logreg = spec("logreg")
    t = distributed.touches(logreg, {"X": X, "y": np.ones(3)})
    assert np.array_equal(t["w"], [2, 0, 3]) and t["b"] == 3     # b: every term
    assert np.array_equal(distributed.degree_counts(logreg, {"X": X, "y": np.ones(3)})
                          ["_deg0_X"], [2, 0, 3])
    r = sp.csr_matrix(np.array([[1.0, 2, 0], [0, 3, 0]]))
    mc = distributed.touches(spec("mc"), {"r": r})
    assert np.array_equal(mc["L"], [2, 1]) and np.array_equal(mc["R"], [1, 2, 0])


def test_average_weights_each_coordinate_by_its_touches():
    old = {"w": np.zeros(3), "b": np.array(0.0)}
    results = [{"w": np.array([1.0, 1.0, 5.0]), "b": np.array(1.0)},
               {"w": np.array([3.0, 0.0, 7.0]), "b": np.array(4.0)}]
    weights = [{"w": np.array([1.0, 2.0, 0.0]), "b": 1.0}, {"w": np.array([3.0, 0.0, 0.0]),
                                                         "b": 2.0}]
    new = distributed.average(old, results, weights)
    assert np.allclose(new["w"], [2.5, 1.0, 0.0]) and new["b"] == pytest.approx(3.0)


# ---------------------------------------------------------------- on the cluster


def test_row_block_spec_reaches_the_single_machine_objective(two_workers, load_spec):
    svm = load_spec("svm")
    X, y = sparse_rows(2000, 100, 8, seed=1, noise=0.05)
    single = svm.Trainer(epochs=10, threads=1).fit(X=X, y=y).objective(X=X, y=y)
    t = distributed.fit(svm, two_workers, epochs=10, X=X, y=y)
    assert isinstance(t, svm.Trainer) and len(t.history) == 10
    assert t.objective(X=X, y=y) <= 1.03 * single
    # the shards' objectives add up to the whole data's (whole-data degrees in every shard)
    assert t.history[-1]["objective"] == pytest.approx(t.objective(X=X, y=y), rel=1e-9)
    assert 0 <= t.history[-1]["communication"] <= 1
    assert t.history[-1]["step"] == pytest.approx(0.5 * 0.9 ** 9)


def test_entry_block_spec_trains_by_dsgd_to_the_single_machine_objective(two_workers,
                                                                       load_spec):
    mc = load_spec("mc")
    r = ratings()
    single = mc.Trainer(epochs=10, threads=1).fit(r=r).objective(r=r)
    t = distributed.fit(mc, two_workers, epochs=10, r=r)
    assert t.objective(r=r) <= 1.03 * single
    assert t.history[-1]["objective"] == pytest.approx(t.objective(r=r), rel=1e-9)
    assert t.history[0]["objective"] > t.history[-1]["objective"]


def test_a_global_mean_given_as_data_keeps_dsgd(two_workers, load_spec):
    """funksvd reads a scalar `data mu`: every shard gets it whole, so it trains by DSGD. It
    fell back to averaging, whose shards each move a shared row half as far: an audit's
    biased MF with a given mean ended 37% above the local fit's objective (now 3%)."""
    funksvd = load_spec("funksvd", consts={"rank": 4})
    assert distributed.plan(funksvd.Trainer.spec).mode == "dsgd"
    r = ratings()
    mu = float(r.data.mean())
    single = funksvd.Trainer(epochs=8, threads=1).fit(r=r, mu=mu).objective(r=r, mu=mu)
    t = distributed.fit(funksvd, two_workers, epochs=8, r=r, mu=mu)
    assert t.objective(r=r, mu=mu) <= 1.05 * single
    assert t.history[-1]["objective"] == pytest.approx(t.objective(r=r, mu=mu), rel=1e-9)


POISSON = """model dist_poisson
dim example, feature
data X[example, feature] : sparse
data y[example] : real
param w[feature] = 0
param b = 0
for i in example:
    let eta = dot(X[i], w) + b
    loss exp(eta) - y[i] * eta
    reg l2(1e-3) on w[X[i]]
"""


def poisson_counts(n_rows=3000, n_cols=200, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n_rows, n_cols, density=0.05, format="csr", random_state=seed)
    y = rng.poisson(np.exp(X @ rng.normal(scale=0.5, size=n_cols) + 0.2)).astype(float)
    return X, y


@pytest.mark.parametrize("name", ["poisson", "mc"])
def test_a_float32_module_trains_on_the_workers_in_float32(two_workers, hog_cache_dir, name):
    """The client's average is float64: a float32 shard failed its second layout ('w must be
    a ... float32 array, not a float64 array'), found by an audit's float32 Poisson fit."""
    mod = hogwild_dsl.load(None if name == "poisson" else SPECS / "mc.hog",
                           text=POISSON if name == "poisson" else None, dtype="float32",
                           cache_dir=hog_cache_dir)
    X, y = poisson_counts(600, 50)
    data = dict(X=X, y=y) if name == "poisson" else dict(r=ratings(60, 40, 600))
    t = distributed.fit(mod, two_workers, epochs=3, step=0.02, **data)
    assert all(v.dtype == np.float32 for v in t.params.values())
    assert t.history[-1]["objective"] == pytest.approx(t.objective(**data), rel=1e-5)
    assert t.history[-1]["objective"] < t.history[0]["objective"]


def test_a_spec_without_a_step_gets_the_calibrated_default_step(two_workers, load_spec):
    # No step anywhere: the step is searched once (on a shard: the terms a worker trains on
    # in a round) and kept for every round. It was the placeholder 0.05 on the client, while
    # each shard searched a step of its own in its first round and trained that round at it:
    # the history named 0.05, and a Poisson regression rose from -0.59 to 2509 in 4 epochs.
    pois = load_spec(text=POISSON)
    X, y = poisson_counts()
    single = pois.Trainer(epochs=8, threads=1).fit(X=X, y=y)
    t = distributed.fit(pois, two_workers, epochs=8, X=X, y=y)
    assert t.calibration is not None and t.step != 0.05
    assert [h["step"] for h in t.history] == pytest.approx([t.step * t.decay ** e
                                                            for e in range(8)])
    # the same grid as the local search, within a step of its choice on the whole data
    assert round(2 * math.log(t.step / single.step, 3), 9) in (-2, -1, 0, 1, 2)
    objectives = [h["objective"] for h in t.history]
    assert max(objectives) <= objectives[0] + 1e-9        # no climb at a step too large
    assert t.objective(X=X, y=y) <= single.objective(X=X, y=y) + 0.03 * abs(
        single.objective(X=X, y=y))


def test_a_calibrated_step_that_diverges_restarts_lower_as_a_local_fit_does(two_workers,
                                                                          load_spec):
    # Noiseless data end at an objective of exactly 0 at every step up to the edge of
    # stability, and the search takes the largest of tied steps: on a shard it chose 0.577,
    # which diverged in the first round (a DivergenceError from the worker). A local fit
    # restarts from its start at a step sqrt(3) lower; so does the distributed fit now.
    mod = load_spec(text="""model dist_two_index
dim example, grp
data y1[example] : index(grp)
data y2[example] : index(grp)
data t[example] : real
param b[grp] = 0
for i in example:
    loss (b[y1[i]] + b[y2[i]] - t[i])^2
""")
    rng = np.random.default_rng(0)
    y1, y2 = rng.integers(0, 2, 400), rng.integers(2, 4, 400)
    data = dict(y1=y1, y2=y2, t=np.array([1.0, 2, 3, 4])[y1] + np.array([1.0, 2, 3, 4])[y2])
    t = distributed.fit(mod, two_workers, epochs=10, seed=0, **data)
    assert t.calibration["diverged"] and all(s > t.step for s in t.calibration["diverged"])
    assert t.step == pytest.approx(t.calibration["diverged"][-1] / math.sqrt(3))
    assert [h["epoch"] for h in t.history] == list(range(1, 11))
    assert t.history[0]["step"] == t.step and t.objective(**data) < 1e-6


def test_init_continues_a_trainer_as_its_own_fit_would(two_workers, load_spec):
    """A warm start (API.md): distributed.fit had no way to continue a fit, local or
    distributed; every call started from the seeded params."""
    mod = load_spec(text=POISSON)
    X, y = poisson_counts(600, 50)
    first = distributed.fit(mod, two_workers, epochs=2, X=X, y=y)
    more = distributed.fit(mod, two_workers, epochs=2, init=first, X=X, y=y)
    assert [h["epoch"] for h in more.history] == [1, 2, 3, 4]
    assert more.history[:2] == first.history and more.step == first.step
    assert more.history[2]["step"] == pytest.approx(first.step * first.decay ** 2)
    assert more.history[2]["objective"] < first.history[0]["objective"]
    local = mod.Trainer(epochs=2, step=0.05).fit(X=X, y=y)
    on = distributed.fit(mod, two_workers, epochs=1, init=local, X=X, y=y)
    assert on.step == 0.05 and len(on.history) == 3
    with pytest.raises(DataError, match=r"param 'w' has shape \(50,\), but the data make it"):
        distributed.fit(mod, two_workers, epochs=1, init=local, X=X[:, :10], y=y)
    with pytest.raises(HogwildError, match="continues a Trainer of mod"):
        distributed.fit(mod, two_workers, epochs=1, init=mod, X=X, y=y)


def test_validation_and_patience_as_a_local_fit_has_them(two_workers, load_spec):
    """distributed.fit(validation=...) was refused as an unknown data name: no held-out curve
    and no early stop on a cluster. Now each epoch's validation_objective is the local
    Trainer's at the round's params, and patience keeps the best epoch's params."""
    mod = load_spec(text=POISSON)
    X, y = poisson_counts(800, 50)
    held = dict(X=X[600:], y=y[600:])
    t = distributed.fit(mod, two_workers, epochs=3, step=0.05, validation=held,
                        X=X[:600], y=y[:600])
    assert [h["validation_objective"] for h in t.history][-1] == \
        pytest.approx(t.objective(**held), rel=1e-9)
    lazy = distributed.fit(mod, two_workers, epochs=3, step=0.05, X=X[:600], y=y[:600],
                           validation=dict(X=da.from_array(held["X"], chunks=(100, 50)),
                                           y=da.from_array(held["y"], chunks=100)))
    assert [h["validation_objective"] for h in lazy.history] == \
        pytest.approx([h["validation_objective"] for h in t.history], rel=1e-12)
    # a step that overshoots: the held-out objective rises, patience 1 stops and keeps epoch 1
    t = distributed.fit(mod, two_workers, epochs=6, step=0.3, decay=1.0, validation=held,
                        patience=1, X=X[:600], y=y[:600])
    values = [h["validation_objective"] for h in t.history]
    assert t.best_epoch == 1 + int(np.argmin(values)) and len(values) == t.best_epoch + 1
    assert t.objective(**held) == pytest.approx(min(values), rel=1e-9)
    with pytest.raises(HogwildError, match="patience=2 stops on the validation objective"):
        distributed.fit(mod, two_workers, patience=2, X=X, y=y)
    with pytest.raises(DataError, match="validation: "):
        distributed.fit(mod, two_workers, validation=dict(X=X, y=y[:-1]), X=X, y=y)


def test_a_given_step_is_the_step_of_every_round(two_workers, load_spec):
    # With a step given nothing is searched, on the client or on a shard: at a step too small
    # to move the params, the first epoch ends where it started.
    pois = load_spec(text=POISSON)
    X, y = poisson_counts()
    start = pois.Trainer(epochs=0).fit(X=X, y=y).objective(X=X, y=y)
    t = distributed.fit(pois, two_workers, epochs=1, step=1e-12, X=X, y=y)
    assert t.calibration is None and t.history[0]["step"] == 1e-12
    assert t.history[0]["objective"] == pytest.approx(start, rel=1e-6)     # (a search: 0.3)


def test_dsgd_without_a_step_searches_it_on_the_whole_data_where_the_client_has_it(
        two_workers, load_spec):
    # A DSGD epoch visits every entry once, as a serial epoch does: the local fit's search
    # (a block, 1/d of each row's entries, chose 0.037 where the whole data's 0.021 ended
    # 0.48 against 0.52). Dask input, which the client never holds: the first block's.
    mf = load_spec(text=BIASED_MF.replace("model bmf", "model bmf_nostep").replace(
        "param mu = 0\n", "").replace("(mu + ", "(").replace(
        "train step 0.05, decay 0.9, epochs 10\n", ""))
    assert distributed.plan(mf.Trainer.spec).mode == "dsgd"
    r = ratings(seed=2)
    local = mf.Trainer(epochs=4, seed=0).fit(r=r)
    t = distributed.fit(mf, two_workers, epochs=4, seed=0, r=r)
    assert t.step == local.step and t.calibration["terms"] == local.calibration["terms"]
    lazy = distributed.fit(mf, two_workers, epochs=4, seed=0,
                           r=da.from_array(r, chunks=(60, r.shape[1]), asarray=False))
    assert lazy.calibration is not None and lazy.calibration["terms"] < r.nnz
    assert all(math.isfinite(h["objective"]) for h in lazy.history)


def test_the_optimizer_argument_reaches_every_shard(two_workers, load_spec):
    # optimizer= as the Trainer's: the same fit as a spec whose train line names it
    pois = load_spec(text=POISSON)
    by_line = load_spec(text=POISSON.replace("dist_poisson", "dist_poisson_ada")
                        + "train optimizer adagrad\n")
    X, y = poisson_counts(1000)
    fits = [distributed.fit(mod, two_workers, epochs=3, step=0.1, X=X, y=y, **kw)
            for mod, kw in ((pois, {"optimizer": "adagrad"}), (by_line, {}), (pois, {}))]
    assert fits[0].optimizer == "adagrad" and fits[2].optimizer == "sgd"
    assert [h["objective"] for h in fits[0].history] == [h["objective"] for h in fits[1].history]
    assert fits[0].history[-1]["objective"] != pytest.approx(fits[2].history[-1]["objective"])


def test_graph_terms_fall_back_to_averaging_in_rounds_of_half_an_epoch(two_workers, load_spec,
                                                                      capsys):
    graph = load_spec(text=GRAPH)              # both ends of an edge write x: no DSGD
    assert distributed.plan(graph.Trainer.spec).mode == "average"
    rng = np.random.default_rng(0)
    u, v = rng.integers(0, 80, 600), rng.integers(0, 80, 600)
    w = sp.csr_matrix((rng.uniform(0.5, 1, 600), (u, v)), shape=(80, 80))
    start = graph.Trainer(epochs=0).fit(w=w).objective(w=w)
    single = graph.Trainer(epochs=6, threads=1).fit(w=w).objective(w=w)
    t = distributed.fit(graph, two_workers, epochs=6, rounds_per_epoch=2, w=w, progress=True)
    assert len(t.history) == 6
    assert "12/12" in capsys.readouterr().err      # one bar on the client, across the rounds
    assert t.history[-1]["objective"] == pytest.approx(t.objective(w=w), rel=1e-9)
    assert t.objective(w=w) < start - 0.5 * (start - single)


def test_bad_input_is_a_clear_error(two_workers, load_spec):
    svm = load_spec("svm")
    X, y = sparse_rows(50, 10, 3, seed=0)
    with pytest.raises(DataError, match="unknown data name 'Z'"):
        distributed.fit(svm, two_workers, X=X, y=y, Z=y)
    for option in ("sync", "order"):     # a local fit's, not distributed's
        with pytest.raises(DataError, match=f"distributed.fit takes no '{option}'"):
            distributed.fit(svm, two_workers, X=X, y=y, **{option: None})
    with pytest.raises(DataError, match="sign"):
        distributed.fit(svm, two_workers, X=X, y=np.zeros(50))
    with pytest.raises(HogwildError, match="rounds_per_epoch"):
        distributed.fit(svm, two_workers, X=X, y=y, rounds_per_epoch=0)
    with pytest.raises(HogwildError, match="Client"):
        distributed.fit(svm, "tcp://scheduler:8786", X=X, y=y)


def test_bad_input_gets_the_local_fits_error(two_workers, load_spec):
    """Found by a user-objective audit: these reached the caller as dask's ValueError, as a
    bare "missing data 'y'", or not at all (no terms trained silently)."""
    svm = load_spec("svm")
    X, y = sparse_rows(50, 10, 3, seed=0)
    with pytest.raises(DataError, match=r"missing data 'y' \(declared on spec line"):
        distributed.fit(svm, two_workers, X=X)
    with pytest.raises(DataError, match="no terms to train on"):
        distributed.fit(svm, two_workers, epochs=1, X=X[:0], y=y[:0])
    with pytest.raises(DataError, match="no terms to train on"):
        distributed.fit(load_spec("mc"), two_workers, epochs=1, r=sp.csr_matrix((5, 4)))
    with pytest.raises(DataError, match="dim 'example' is 50 from data 'X' .* 49 from data 'y'"):
        distributed.fit(svm, two_workers, epochs=1, X=da.from_array(X, chunks=(25, 10)),
                        y=da.from_array(y[:-1], chunks=25))


def test_sparse_data_given_dense_trains_as_its_csr_does(two_workers, load_spec):
    """fit takes a dense array for sparse data; the shards' touch counts read it as CSR (it
    was an AttributeError on the worker)."""
    svm = load_spec("svm")
    X, y = sparse_rows(60, 10, 3, seed=1)
    dense = distributed.fit(svm, two_workers, epochs=2, step=0.1, X=X.toarray(), y=y)
    csr = distributed.fit(svm, two_workers, epochs=2, step=0.1, X=X, y=y)
    assert dense.objective(X=X, y=y) == pytest.approx(csr.objective(X=X, y=y), rel=1e-12)


def test_an_error_inside_a_worker_reaches_the_caller_as_it_was(two_workers, load_spec):
    svm = load_spec("svm")
    X, y = sparse_rows(200, 20, 4, seed=0)
    y[150] = 0.0                      # only a worker sees this chunk: checked there
    with pytest.raises(DataError, match="sign"):
        distributed.fit(svm, two_workers, epochs=1, X=da.from_array(X, chunks=(100, 20)),
                        y=da.from_array(y, chunks=100))


def _chunk(i, rows, cols, nnz_per_row):
    """A block of sparse rows, made on a worker (never on the client)."""
    rng = np.random.default_rng(i)
    indices = np.sort(rng.random((rows, cols)).argsort(axis=1)[:, :nnz_per_row], axis=1)
    indptr = np.arange(rows + 1) * nnz_per_row
    return sp.csr_matrix((rng.uniform(0.1, 1, rows * nnz_per_row), indices.ravel(), indptr),
                         shape=(rows, cols))


def _labels(i, rows):
    return np.where(np.random.default_rng(i + 100).random(rows) < 0.5, -1.0, 1.0)


def test_dask_array_input_is_never_gathered_on_the_client(two_workers, load_spec):
    import dask
    svm = load_spec("svm")
    chunks, rows, cols, nnz = 8, 4000, 200, 40          # 8 x 2.6 MB of CSR
    X = da.concatenate([da.from_delayed(dask.delayed(_chunk)(i, rows, cols, nnz),
                                        shape=(rows, cols), dtype=float,
                                        meta=sp.csr_matrix((0, cols)))
                        for i in range(chunks)])
    y = da.concatenate([da.from_delayed(dask.delayed(_labels)(i, rows), shape=(rows,),
                                        dtype=float) for i in range(chunks)])
    data_bytes = chunks * rows * nnz * 16
    tracemalloc.start()
    try:
        t = distributed.fit(svm, two_workers, epochs=2, X=X, y=y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(t.history) == 2 and np.isfinite(t.history[-1]["objective"])
    assert t.params["w"].shape == (cols,)
    assert peak < data_bytes / 8, f"the client allocated {peak} bytes for {data_bytes} of data"


def test_dask_dataframe_of_triplets_trains_by_dsgd(two_workers, load_spec):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    mc = load_spec("mc")
    r = ratings(seed=5)
    m = r.tocoo()
    frame = pd.DataFrame({"user": m.row, "item": m.col, "rating": m.data,
                          "timestamp": np.zeros(m.nnz)})
    t = distributed.fit(mc, two_workers, epochs=6, r=dd.from_pandas(frame, npartitions=3))
    local = distributed.fit(mc, two_workers, epochs=6, r=r)
    assert t.params["L"].shape == r.shape[:1] + (20,)
    assert t.objective(r=r) == pytest.approx(local.objective(r=r), rel=0.03)


@pytest.mark.parametrize("name", ["svm", "mc"])       # averaging; DSGD (workers keep rows)
def test_a_worker_killed_mid_fit_costs_a_round_not_the_fit(two_workers, load_spec, name):
    mod = load_spec(name)
    if name == "svm":
        X, y = sparse_rows(2000, 100, 8, seed=1, noise=0.05)
        data = {"X": X, "y": y}
    else:
        data = {"r": ratings()}
    victim = sorted(two_workers.scheduler_info()["workers"])[0]

    def arm():                          # the victim's third training round kills its process
        import hogwild_dsl.distributed as hd
        train, calls = hd._train, []

        def dying(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                os._exit(1)
            return train(*args, **kwargs)
        hd._train = dying

    two_workers.run(arm, workers=[victim])
    t = distributed.fit(mod, two_workers, epochs=5, **data)
    assert victim not in two_workers.scheduler_info()["workers"]     # it did die
    assert [h["epoch"] for h in t.history] == [1, 2, 3, 4, 5]
    undisturbed = mod.Trainer(epochs=5, threads=1).fit(**data).objective(**data)
    assert t.objective(**data) <= 1.03 * undisturbed
    assert t.history[-1]["objective"] == pytest.approx(t.objective(**data), rel=1e-9)


WEIGHTED_MF = """model wmf_dist
dim user, item
const rank = 3
data r[user, item] : sparse
data c[user, item] : sparse
param mu = 0
param L[user, rank] ~ normal(0, 0.1)
param R[item, rank] ~ normal(0, 0.1)
for (u, v) in r:
    loss c[u, v] * (mu + dot(L[u], R[v]) - r[u, v])^2
    reg l2(0.05) on L[u], R[v]
train step 0.05, epochs 4
"""


@pytest.mark.parametrize("rounds", [1, 2])
def test_entry_weights_split_with_their_entries_and_duplicates_stay_two_terms(
        two_workers, load_spec, rounds):
    """Regression: data read at the entries of the block's matrix (c[u, v]) was sent whole to
    every shard while the matrix was split, so each worker raised 'c ... its pattern
    differs'; and a shard's entries were rebuilt with csr_matrix((val, (u, v))), which adds
    two entries at one (u, v) into one term. Now c is split entry by entry with r, and every
    stored entry stays a term: the shards' objectives add up to the whole data's."""
    mod = load_spec(text=WEIGHTED_MF)
    assert distributed.plan(mod.Trainer.spec).split["c"] == "entries"
    rng = np.random.default_rng(3)
    u, v = rng.integers(0, 40, 900), rng.integers(0, 30, 900)
    u[:50], v[:50] = u[50:100], v[50:100]                  # 50 (u, v) stored twice
    A, B = rng.normal(size=(40, 3)), rng.normal(size=(30, 3))
    r = sp.coo_matrix(((A[u] * B[v]).sum(1), (u, v)), shape=(40, 30))
    c = sp.coo_matrix((rng.uniform(0.5, 2, 900), (u, v)), shape=(40, 30))
    start = mod.Trainer(epochs=0).fit(r=r, c=c).objective(r=r, c=c)
    t = distributed.fit(mod, two_workers, epochs=3, rounds_per_epoch=rounds, r=r, c=c)
    assert t.history[-1]["objective"] == pytest.approx(t.objective(r=r, c=c), rel=1e-9)
    assert t.objective(r=r, c=c) < start


def test_dsgd_keeps_two_entries_at_one_place_two_terms(two_workers, load_spec):
    """Regression (as above, by DSGD): a stratum's entries were rebuilt with
    csr_matrix((val, (u, v))), adding 50 doubly stored ratings into 50 terms; the history's
    objective was 1.35 where the fitted params' exact objective was 0.91."""
    mc = load_spec("mc")
    rng = np.random.default_rng(3)
    u, v = rng.integers(0, 40, 900), rng.integers(0, 30, 900)
    u[:50], v[:50] = u[50:100], v[50:100]
    r = sp.coo_matrix((rng.normal(size=900), (u, v)), shape=(40, 30))
    assert distributed.plan(mc.Trainer.spec).mode == "dsgd"
    t = distributed.fit(mc, two_workers, epochs=2, r=r)
    assert t.history[-1]["objective"] == pytest.approx(t.objective(r=r), rel=1e-9)


SAMPLED_REG = """model kg_dist
dim triple, entity
const d = 3
data h[triple] : index(entity)
data t[triple] : index(entity)
param E[entity, d] ~ normal(0, 0.3)
for x in triple:
    sample n in entity
    loss logistic(dot(E[h[x]], E[t[x]])) + logistic(-dot(E[h[x]], E[n]))
    reg l2(1e-2) on E[h[x]], E[n]
train step 0.1, epochs 3
"""


def test_degrees_of_a_sampled_reg_target(two_workers, load_spec):
    """Regression: `reg ... on E[n]` for a sampled n (without `unscaled`) has a degree of
    kind "sample" (the expected draws), which the workers' degree counts did not know: a
    StopIteration from inside the package. Now each shard counts its terms' expected draws,
    and their sum is the whole data's."""
    mod = load_spec(text=SAMPLED_REG)
    rng = np.random.default_rng(0)
    data = dict(h=rng.integers(0, 20, 400), t=rng.integers(0, 20, 400))
    counts = [distributed.degree_counts(mod.Trainer.spec, {k: v[half] for k, v in data.items()},
                                        {"entity": 20})
              for half in (slice(0, 150), slice(150, 400))]
    whole = distributed.degree_counts(mod.Trainer.spec, data, {"entity": 20})
    for name, value in whole.items():
        np.testing.assert_allclose(counts[0][name] + counts[1][name], value)
    start = mod.Trainer(epochs=0).fit(**data).objective(**data)
    t = distributed.fit(mod, two_workers, epochs=3, **data)
    assert np.isfinite(t.history[-1]["objective"]) and t.objective(**data) < start
