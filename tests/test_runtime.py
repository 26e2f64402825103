"""The Trainer's contract (API.md): data checks, warm starts, save/load, divergence, and the
committed generated/ sources being what the compiler emits today."""
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from hogwild_dsl import DataError, DivergenceError, HogwildError
from hogwild_dsl.emit import emit
from hogwild_dsl.jit import ext_name_for
from conftest import ROOT, SPECS, sparse_rows


@pytest.mark.parametrize("spec", sorted(p.stem for p in SPECS.glob("*.hog")))
def test_generated_sources_are_up_to_date(spec):
    ir = hogwild_dsl.check((SPECS / f"{spec}.hog").read_text())
    for name, text in emit(ir, ext_name_for(ir.model)).items():
        committed = ROOT / "generated" / name
        assert committed.exists(), f"generated/{name} missing: run hogwildc compile specs/*.hog"
        assert committed.read_text() == text, \
            f"generated/{name} is stale: run hogwildc compile specs/*.hog and commit it"


@pytest.fixture(scope="module")
def svm(load_spec):
    return load_spec("svm")


@pytest.fixture(scope="module")
def data():
    return sparse_rows(300, 40, 5, seed=1, noise=0.05)


def test_data_errors_name_the_data_and_the_problem(svm, data):
    X, y = data
    cases = [
        ({"X": X}, "missing data 'y'"),
        ({"X": X, "y": y, "Z": y}, "unknown data name 'Z'"),
        ({"X": X, "y": y[:-1]}, "dim 'example'"),
        ({"X": X, "y": np.where(y > 0, 1.0, 0.0)}, "'y' is declared sign"),
        ({"X": X, "y": y.reshape(-1, 1)}, "'y' must be 1-D"),
        ({"X": X, "y": np.where(np.arange(300) == 7, np.nan, y)}, "'y' holds NaN"),
        ({"X": X, "y": ["a"] * 300}, "'y' must be numeric"),
    ]
    bad = X.copy()
    bad.data[3] = np.inf
    cases.append(({"X": bad, "y": y}, "'X' holds NaN or inf (row 0"))
    for given, words in cases:
        with pytest.raises(DataError, match=words.replace("(", r"\(")):
            svm.Trainer(epochs=1).fit(**given)


def test_out_of_range_indices_are_refused_before_any_kernel(svm, data):
    X, y = data
    broken = sp.csr_matrix((X.data.copy(), X.indices.copy(), X.indptr.copy()), shape=X.shape)
    broken.indices[5] = 10_000
    with pytest.raises(DataError, match="out of range"):
        svm.Trainer(epochs=1).fit(X=broken, y=y)


def _canonical(rows):
    """A CSR of 3 rows x 10 columns from lists of (increasing) columns, built without scipy's
    checks (they would refuse what these tests give the gate)."""
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int32)
    indices = np.array([c for r in rows for c in r], dtype=np.int32)
    m = sp.csr_matrix((3, 10))
    m.data, m.indices, m.indptr = np.ones(indices.size), indices, indptr
    return m


@pytest.mark.parametrize("rows, bad", [
    ([[1, 4], [], [2, 12]], 12),          # past the columns, last of its row
    ([[-1, 4], [0, 9], [3]], -1),         # negative, first of its row
    ([[1, 4], [0, 9], [10]], 10),         # the row's only column
])
def test_a_canonical_csr_is_range_checked(rows, bad):
    """Columns that increase along every row (a canonical CSR, which is used as it is) are
    range checked all the same, wherever the bad one sits in its row."""
    from hogwild_dsl.runtime import as_csr
    with pytest.raises(DataError, match=f"indices entry {bad} is out of range"):
        as_csr(_canonical(rows), "data 'X'")
    assert as_csr(_canonical([[1, 4], [], [0, 9]]), "data 'X'").nnz == 4


def test_unsigned_indices_past_int64_are_refused():
    from hogwild_dsl.runtime import as_csr
    m = _canonical([[1, 4], [0, 9], [3]])
    m.indices = m.indices.astype(np.uint64)
    m.indices[2] = 2**63 + 1             # -(2^63 - 1) if cast to int64
    with pytest.raises(DataError, match="out of range"):
        as_csr(m, "data 'X'")


@pytest.mark.parametrize("dtype", ["int8", "int16", ">i4", "<i8"])
def test_negative_indices_of_any_integer_type_are_refused(dtype):
    """The range check takes one max of the indices seen unsigned where a negative one then
    exceeds the limit; where it cannot (an int8 index into 200 columns), both ends."""
    from hogwild_dsl.runtime import as_csr
    for columns in (10, 200):
        m = sp.csr_matrix((3, columns))
        m.data, m.indptr = np.ones(3), np.array([0, 1, 2, 3], dtype=np.int32)
        m.indices = np.array([1, -1, 3], dtype=dtype)
        with pytest.raises(DataError, match="indices entry -1 is out of range"):
            as_csr(m, "data 'X'")
        m.indices = np.array([1, 2, 3], dtype=dtype)
        assert as_csr(m, "data 'X'").indices.tolist() == [1, 2, 3]


def test_sparse_values_past_the_first_block_are_checked(monkeypatch):
    """Values are converted and checked a block at a time: a bad one in a later block, or in
    the last, partial one, is found all the same."""
    import hogwild_dsl.runtime as runtime
    from hogwild_dsl.runtime import as_csr
    monkeypatch.setattr(runtime, "FINITE_BLOCK", 2)
    for at, value, words in [(4, np.inf, r"NaN or inf \(row 2, column 3\)"),
                             (2, 1e39, "past the range of float32")]:
        m = _canonical([[1, 4], [0, 9], [3]])
        m.data[at] = value
        for dtype in (np.float32, np.float64):
            if value == 1e39 and dtype == np.float64:
                continue
            with pytest.raises(DataError, match=words):
                as_csr(m, "data 'X'", dtype)
    m = _canonical([[1, 4], [0, 9], [3]])
    m.data[:] = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert as_csr(m, "data 'X'", np.float32).data.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_sparse_values_are_checked_once_after_the_cast():
    """float64 -> float32: a NaN given and a value past float32's range each say so."""
    from hogwild_dsl.runtime import as_csr
    m = _canonical([[1, 4], [0, 9], [3]])
    m.data[3] = np.nan
    with pytest.raises(DataError, match=r"'X' holds NaN or inf \(row 1, column 9\)"):
        as_csr(m, "data 'X'", np.float32)
    m.data[3] = 1e39
    with pytest.raises(DataError, match="past the range of float32"):
        as_csr(m, "data 'X'", np.float32)
    m.data[3] = 2.5
    out = as_csr(m, "data 'X'", np.float32)
    assert out.data.dtype == np.float32 and out.data[3] == 2.5
    assert out.indptr.dtype == np.int64 and out.indices.dtype == np.int32


def test_epochs_zero_initialises_and_warm_start_continues(svm, data):
    X, y = data
    t = svm.Trainer(epochs=0).fit(X=X, y=y)
    assert t.history == [] and np.all(t.params["w"] == 0)
    t.epochs = 2
    t.fit(X=X, y=y)
    t.fit(X=X, y=y)
    assert [h["epoch"] for h in t.history] == [1, 2, 3, 4]
    assert t.history[3]["step"] == pytest.approx(0.5 * 0.9 ** 3)   # the spec's train line
    assert t.history[-1]["objective"] < t.history[0]["objective"]


def test_params_are_live(svm, data):
    X, y = data
    t = svm.Trainer(epochs=1).fit(X=X, y=y)
    before = t.objective(X=X, y=y)
    t.params["w"][:] = 0.0
    assert t.objective(X=X, y=y) == pytest.approx(1.0)     # hinge(0) = 1, no penalty at 0
    assert before != pytest.approx(1.0)


def test_save_and_load_round_trip(svm, data, tmp_path):
    X, y = data
    t = svm.Trainer(epochs=2).fit(X=X, y=y)
    t.save(tmp_path / "model.npz")
    t2 = svm.Trainer.load(tmp_path / "model.npz")
    assert np.array_equal(t2.params["w"], t.params["w"])
    assert np.array_equal(t2.predict(X=X), t.predict(X=X))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(HogwildError, match="not a params file"):
        svm.Trainer.load(tmp_path / "junk.npz")


def test_saved_params_of_another_spec_are_refused(load_spec, data, tmp_path):
    X, y = data
    t = load_spec("logreg").Trainer(epochs=1).fit(X=X, y=y)
    t.save(tmp_path / "lr.npz")
    with pytest.raises(HogwildError, match="signature mismatch"):
        load_spec("svm").Trainer.load(tmp_path / "lr.npz")


def test_predict_needs_no_labels(svm, data):
    X, y = data
    t = svm.Trainer(epochs=3).fit(X=X, y=y)
    p = t.predict(X=X)
    assert p.shape == (300,) and np.mean(np.sign(p) == y) > 0.8


def test_divergence_keeps_the_last_finite_params(load_spec):
    mod = load_spec(text="""model blowup
dim example
data y[example] : real
param b = 1
for i in example:
    loss (b * y[i])^2
""")
    y = np.full(50, -3.0)
    t = mod.Trainer(epochs=50, step=10.0, decay=1.0, threads=1)
    with pytest.raises(DivergenceError, match="smaller step") as err:
        t.fit(y=y)
    assert err.value.epoch >= 1
    assert np.isfinite(t.params["b"]) and len(t.history) == err.value.epoch - 1


def test_divergence_without_a_rise_keeps_the_last_finite_epoch(load_spec):
    """sqrt(b) falls every epoch until b steps below 0 (NaN): no epoch's objective rose, yet
    the params kept are those of the last finite epoch (API.md), not the fit's start."""
    mod = load_spec(text="""model sink
dim example
data y[example] : real
param b = 4
for i in example:
    loss sqrt(b) * y[i]
""")
    y = np.ones(10)
    t = mod.Trainer(epochs=50, step=0.2, decay=1.0, threads=1, order="stored")
    with pytest.raises(DivergenceError) as err:
        t.fit(y=y)
    done = err.value.epoch - 1
    objectives = [h["objective"] for h in t.history]
    assert done >= 3 and len(objectives) == done and objectives == sorted(objectives)[::-1]
    again = mod.Trainer(epochs=done, step=0.2, decay=1.0, threads=1, order="stored").fit(y=y)
    assert float(t.params["b"]) == float(again.params["b"]) > 0


@pytest.mark.parametrize("kwargs, words", [
    ({"threads": 0}, "threads must be a positive integer"),
    ({"sync": "locked"}, "sync must be one of"),
    ({"order": "random"}, "order must be one of"),
    ({"step": -1}, "step must be a positive number"),
    ({"epochs": 1.5}, "epochs must be a non-negative integer"),
])
def test_bad_trainer_arguments(svm, kwargs, words):
    with pytest.raises(HogwildError, match=words):
        svm.Trainer(**kwargs)


def test_consts_override_recompiles(load_spec):
    mod = load_spec("mc", consts={"rank": 4})
    r = sp.csr_matrix(np.array([[1.0, 0, 2.0], [0, 3.0, 0]]))
    t = mod.Trainer(epochs=1).fit(r=r)
    assert t.params["L"].shape == (2, 4) and mod.CONSTS == {"rank": 4}


def test_constraints_hold_after_training(load_spec):
    mod = load_spec(text="""model boxes
dim example, feature
data X[example, feature] : sparse
data y[example] : real
param w[feature] in [-0.1, 0.2] = 0
param v[feature] >= 0 = 1
param B[feature, feature] in ball(0.5) ~ normal(0, 1)
for i in example:
    loss (dot(X[i], w) + dot(X[i], v) - y[i])^2 + sum(j in X[i]: sqnorm(B[j]))
    reg l1(0.01) on w[X[i]]
""")
    X, _ = sparse_rows(100, 8, 3, seed=2)
    y = np.random.default_rng(0).normal(size=100) * 5
    t = mod.Trainer(epochs=3, step=0.1).fit(X=X, y=y)
    w, v, B = t.params["w"], t.params["v"], t.params["B"]
    assert w.min() >= -0.1 and w.max() <= 0.2 and v.min() >= 0
    assert np.linalg.norm(B, axis=1).max() <= 0.5 + 1e-12


def test_load_rejects_bad_arguments(tmp_path):
    with pytest.raises(HogwildError):
        hogwild_dsl.load()
    with pytest.raises(hogwild_dsl.SpecError, match="no such file"):
        hogwild_dsl.load(tmp_path / "missing.hog")


@pytest.mark.parametrize("order", ["chunks", "shuffle", "stored"])
@pytest.mark.parametrize("spec", ["svm", "mc", "cuts"])
def test_every_order_ends_at_the_exact_objective(load_spec, spec, order):
    """The objective the trainer recorded after the last epoch equals the objective of its
    params on the data, in every visit order."""
    rng = np.random.default_rng(3)
    if spec == "svm":
        X, y = sparse_rows(400, 30, 4, seed=3)
        data = {"X": X, "y": y}
    elif spec == "mc":
        data = {"r": sp.random(40, 25, density=0.2, random_state=3, format="csr") * 5}
    else:
        data = {"w": sp.random(30, 30, density=0.1, random_state=3, format="csr"),
                "c": rng.normal(size=(30, 4))}
    t = load_spec(spec).Trainer(epochs=3, order=order, chunk=8, threads=1).fit(**data)
    assert t.objective(**data) == pytest.approx(t.history[-1]["objective"], rel=1e-9)


def test_default_order_copes_with_data_sorted_by_label(svm):
    X, y = sparse_rows(2000, 60, 6, seed=4)
    order = np.argsort(y)
    X, y = X[order], y[order]
    default = svm.Trainer(epochs=5, threads=1).fit(X=X, y=y)
    shuffled = svm.Trainer(epochs=5, order="shuffle", threads=1, seed=1).fit(X=X, y=y)
    a, b = default.history[-1]["objective"], shuffled.history[-1]["objective"]
    assert a <= 1.1 * b


def test_default_order_by_working_set(svm, monkeypatch):
    """Shuffle where the arrays the terms read fit in CACHE_BYTES, else chunks spanning about
    CHUNK_BYTES of the data in at most CHUNK_TERMS terms; an explicit order or chunk wins."""
    import hogwild_dsl.runtime as runtime
    X, y = sparse_rows(2000, 60, 6, seed=4)
    t = svm.Trainer(epochs=0).fit(X=X, y=y)
    arrays, _ = t.layout({"X": X, "y": y})
    data_bytes = sum(a.nbytes for k, a in arrays.items() if k != "w")
    assert t._visit_plan(arrays, 2000) == ("shuffle", 0)
    monkeypatch.setattr(runtime, "CACHE_BYTES", data_bytes)
    monkeypatch.setattr(runtime, "CHUNK_BYTES", data_bytes // 100)       # ~20 of the rows
    assert t._visit_plan(arrays, 2000) == ("chunks", runtime.CHUNK_BYTES * 2000 // data_bytes)
    assert 15 < t._visit_plan(arrays, 2000)[1] <= 20
    monkeypatch.setattr(runtime, "CHUNK_TERMS", 5)
    assert t._visit_plan(arrays, 2000) == ("chunks", 5)
    t.chunk = 7
    assert t._visit_plan(arrays, 2000) == ("chunks", 7)
    t.order = "stored"
    assert t._visit_plan(arrays, 2000) == ("stored", 0)


def test_history_samples_the_objective_on_large_data_and_ends_exact(svm, monkeypatch):
    import hogwild_dsl.runtime as runtime
    X, y = sparse_rows(3000, 50, 5, seed=5, noise=0.1)
    monkeypatch.setattr(runtime, "EVAL_TERMS", 1000)
    t = svm.Trainer(epochs=3, threads=1).fit(X=X, y=y)
    exact = t.objective(X=X, y=y)
    assert t.history[-1]["objective"] == pytest.approx(exact, rel=1e-12)
    # the estimates say they are: the number of terms sampled, absent where exact
    assert [h.get("sampled_terms") for h in t.history] == [1000, 1000, None]
    t.epochs = 1
    before = t.objective(X=X, y=y)
    monkeypatch.setattr(runtime, "EVAL_TERMS", 10**9)
    t.fit(X=X, y=y)
    assert t.history[-1]["objective"] == pytest.approx(t.objective(X=X, y=y), rel=1e-12)
    assert t.history[-1]["objective"] != pytest.approx(before, rel=1e-12)


def test_predict_needs_only_the_predicting_blocks_data(load_spec):
    w = sp.random(10, 10, density=0.3, format="csr", random_state=0)
    c = np.random.default_rng(0).random((10, 3))
    t = load_spec("cuts").Trainer(epochs=2).fit(w=w, c=c)
    assert np.array_equal(t.predict(), np.argmax(t.params["x"], axis=1))


@pytest.mark.parametrize("given,want", [(None, "passive"), ("active", "active")])
def test_openmp_threads_sleep_when_idle_unless_the_user_says(given, want):
    """`import hogwild_dsl` asks libgomp for sleeping idle threads (spinning ones took the
    cores the working threads needed on a busy machine: 2 threads 3x slower than 1), and
    keeps a wait policy the user set."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, hogwild_dsl; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == want
