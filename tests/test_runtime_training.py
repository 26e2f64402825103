"""The Trainer's epoch loop (API.md): validation and patience, Ctrl-C between epochs, the
divergence rollback, the history's objective."""
import signal

import numpy as np
import pytest
import scipy.sparse as sp

from hogwild_dsl import DataError, DivergenceError, HogwildError

MEAN = """model mean
dim example
data y[example] : real
param b = 0
for i in example:
    loss (b - y[i])^2
"""


@pytest.fixture(scope="module")
def mean(load_spec):
    return load_spec(text=MEAN)


def stepping(mod, **kw):
    """b walks from 0 towards the training mean 3, by a factor 0.99^20 = 0.82 of the gap per
    epoch: 0.55, 0.99, 1.36, ... so the validation mean 1 is passed in epoch 2."""
    return mod.Trainer(step=0.005, decay=1.0, threads=1, order="stored", **kw)


TRAIN, HELD_OUT = {"y": np.full(20, 3.0)}, {"y": np.full(5, 1.0)}


def test_validation_objective_is_the_objective_on_the_held_out_data(mean):
    t = stepping(mean, epochs=4).fit(**TRAIN, validation=HELD_OUT)
    val = [h["validation_objective"] for h in t.history]
    assert len(val) == 4 and np.argmin(val) == 1        # it worsens after epoch 2
    assert val[-1] == pytest.approx(t.objective(**HELD_OUT), rel=1e-12)
    assert t.best_epoch is None           # without patience the last params are kept


def test_patience_stops_and_keeps_the_best_epoch(mean):
    t = stepping(mean, epochs=50, patience=3).fit(**TRAIN, validation=HELD_OUT)
    assert [h["epoch"] for h in t.history] == [1, 2, 3, 4, 5] and t.best_epoch == 2
    two = stepping(mean, epochs=2).fit(**TRAIN)
    assert t.params["b"] == two.params["b"]
    assert t.objective(**HELD_OUT) == t.history[1]["validation_objective"]


def test_patience_on_relabelled_data_keeps_the_best_epoch(load_spec):
    """Chunks relabel the users (params and data); validation and the kept params are in the
    user's labels."""
    rng = np.random.default_rng(0)
    full = rng.normal(size=(60, 3)) @ rng.normal(size=(3, 40))
    mask = rng.random(full.shape) < 0.5
    train = sp.csr_matrix(np.where(mask, full, 0.0))
    held = sp.csr_matrix(np.where(~mask & (rng.random(full.shape) < 0.3), full, 0.0))
    t = load_spec("mc", consts={"rank": 8}).Trainer(
        epochs=40, step=0.05, decay=1.0, threads=1, order="chunks", chunk=4, patience=2)
    t.fit(r=train, validation={"r": held})
    val = [h["validation_objective"] for h in t.history]
    assert t.best_epoch == 1 + int(np.argmin(val))
    assert t.objective(r=held) == pytest.approx(min(val), rel=1e-12)


def test_validation_errors_are_clear(mean):
    with pytest.raises(HogwildError, match="validation="):
        stepping(mean, epochs=2, patience=2).fit(**TRAIN)
    with pytest.raises(DataError, match="validation: .*data 'y'"):
        stepping(mean, epochs=2).fit(**TRAIN, validation={"y": [1.0, np.nan]})
    with pytest.raises(DataError, match="validation must be a dict"):
        stepping(mean, epochs=2).fit(**TRAIN, validation=[1.0])
    with pytest.raises(HogwildError, match="patience must be a positive integer"):
        stepping(mean, patience=0)


def test_ctrl_c_stops_after_the_current_epoch(mean, monkeypatch, request):
    """An interrupt during epoch 2 ends the fit after it, with the epoch counted and its
    objective exact (the last of the fit), even where the history samples the others."""
    import hogwild_dsl.runtime as runtime
    # Ctrl-C as an interactive Python has it (a test run started in the background by a
    # non-interactive shell inherits SIGINT ignored, and the fit rightly leaves that alone)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, inherited))
    monkeypatch.setattr(runtime, "EVAL_TERMS", 5)
    data = {"y": np.linspace(2.0, 4.0, 20)}          # terms of different losses
    t = stepping(mean, epochs=10)
    visit = t._visit_order

    def interrupt_in_epoch_2(*args):
        if t._epochs_done == 1:
            signal.raise_signal(signal.SIGINT)
        return visit(*args)

    monkeypatch.setattr(t, "_visit_order", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        t.fit(**data)
    assert len(t.history) == t._epochs_done == 2
    assert t.history[-1]["objective"] == pytest.approx(t.objective(**data), rel=1e-12)
    assert t.params["b"] == stepping(mean, epochs=2).fit(**data).params["b"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_divergence_rolls_back_to_a_consistent_point(load_spec):
    """Params, history and the epoch count agree after a divergence, the params finite."""
    mod = load_spec(text="""model blowup
dim example
data y[example] : real
param b = 1
for i in example:
    loss (b * y[i])^2
""")
    t = mod.Trainer(epochs=50, step=10.0, decay=1.0, threads=1)
    with pytest.raises(DivergenceError, match=r"the finite params after epoch \d+ are kept"):
        t.fit(y=np.full(50, -3.0))
    assert np.isfinite(t.params["b"]) and len(t.history) == t._epochs_done
    t.epochs, t.step = 1, 1e-6            # and training goes on from there
    t.fit(y=np.full(50, -3.0))
    assert len(t.history) == t._epochs_done
