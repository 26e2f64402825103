"""Every Trainer option may stand on a spec's `train` line (LANGUAGE.md, "The train line":
"other keys the trainer accepts may appear here too"): sync, order, shuffle, progress and
patience as well as step, decay, epochs, threads, seed, chunk and optimizer."""
import numpy as np
import pytest

from hogwild_dsl import HogwildError, SpecError, check
from conftest import SPECS, sparse_rows

SVM = (SPECS / "svm.hog").read_text()
KEYS = "train step 0.1, epochs 6, sync lock, order stored, patience 1, progress false"


def with_train(line):
    lines = [ln for ln in SVM.splitlines() if not ln.startswith("train ")]
    return "\n".join(lines + [line, ""])


@pytest.fixture(scope="module")
def svm_keys(load_spec):
    return load_spec(text=with_train(KEYS))


def test_the_trainer_keys_check_with_their_values():
    train = dict(check(with_train(KEYS + ", shuffle true, threads 2, chunk 64")).train)
    assert train["sync"] == "lock" and train["order"] == "stored" and train["patience"] == 1
    assert train["shuffle"] is True and train["progress"] is False


@pytest.mark.parametrize("line, message", [
    ("train sync locks", "unknown sync 'locks'"),
    ("train order random", "unknown order 'random'"),
    ("train shuffle 1", "unknown shuffle '1'"),
    ("train patience 0", "'patience' must be at least 1"),
    ("train patience 1.5", "'patience' must be a non-negative integer"),
])
def test_a_bad_trainer_key_value_is_a_spec_error(line, message):
    with pytest.raises(SpecError) as err:
        check(with_train(line))
    assert message in str(err.value)


def test_the_train_line_sets_the_defaults_and_arguments_override(svm_keys):
    t = svm_keys.Trainer()
    assert (t.sync, t.order, t.patience, t.progress) == ("lock", "stored", 1, False)
    t = svm_keys.Trainer(sync="atomic", order="shuffle", patience=3)
    assert (t.sync, t.order, t.patience) == ("atomic", "shuffle", 3)
    assert svm_keys.Trainer(shuffle=False).order == "stored"
    with pytest.raises(HogwildError, match="validation"):    # an explicit patience asks for it
        svm_keys.Trainer(patience=2).fit(**data(0))


def data(seed, flip=False):
    X, y = sparse_rows(300, 40, 5, seed)
    return {"X": X, "y": -y if flip else y}


def test_the_train_lines_patience_stops_on_validation_and_is_idle_without(svm_keys):
    t = svm_keys.Trainer(threads=1).fit(**data(0))         # no validation: every epoch runs
    assert len(t.history) == 6
    # held-out labels flipped: the validation objective rises after the first epoch
    t = svm_keys.Trainer(threads=1).fit(**data(0), validation=data(0, flip=True))
    assert len(t.history) == 2 and t.best_epoch == 1
    values = [h["validation_objective"] for h in t.history]
    assert values[1] > values[0]


def test_the_checked_spec_prints_the_keys_as_written():
    text = str(check(with_train("train shuffle false, sync lock, order stored, step 0.5")))
    assert text.splitlines()[-1] == "train shuffle false, sync lock, order stored, step 0.5"


def test_the_train_lines_seed_is_the_default_seed(load_spec):
    """`train seed 3` seeds a random init as Trainer(seed=3) does (audit F3: it was ignored)."""
    fm = (SPECS / "fm.hog").read_text()
    lines = [ln for ln in fm.splitlines() if not ln.startswith("train ")]
    mod = load_spec(text="\n".join(lines + ["train seed 3, epochs 0", ""]))
    X, y = sparse_rows(50, 12, 4, 1)
    seeded = mod.Trainer().fit(X=X, y=y)
    assert seeded.seed == 3
    for name, value in mod.Trainer(seed=3).fit(X=X, y=y).params.items():
        np.testing.assert_array_equal(seeded.params[name], value)
    random = [name for name, v in mod.Trainer(seed=0).fit(X=X, y=y).params.items()
              if not np.array_equal(v, seeded.params[name])]
    assert random, "the spec's init is not random: the test shows nothing"
