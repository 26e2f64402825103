"""A new user's first hour: the mistakes such a user makes, following README.md and docs/ word
for word, each of which must end in a clear error that says what is wrong and what to do (or
work as the docs say). One case per row; the compiled modules come from conftest's session
cache (svm, mc), so the file stays fast."""
import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from hogwild_dsl import DataError, HogwildError, SpecError

from conftest import SPECS, run_hogwildc

SVM = (SPECS / "svm.hog").read_text()


# ---------------------------------------------------------------- typos in a spec

# (the svm spec's text, what replaces it, the message, line, column, the hint)
SPEC_MISTAKES = [
    # a keyword glued to the letters after it was lexed as the keyword plus a name: `fori`
    # trained as `for i`, `losss f(z)` failed at `f`, `regg l2(...)` asked for a '('
    ("for i in", "fori in", "unknown word 'fori'", 9, 1, "did you mean 'for'?"),
    ("loss hinge", "losss hinge", "unknown word 'losss'", 10, 5, "did you mean 'loss'?"),
    ("reg l2", "regg l2", "unknown word 'regg'", 11, 5, "did you mean 'reg'?"),
    ("param w", "params w", "unknown word 'params'", 7, 1, "did you mean 'param'?"),
    ("in example", "inn example", "unknown word 'inn'", 9, 7, "did you mean 'in'?"),
    ("on w[", "onn w[", "unknown word 'onn'", 11, 18, "did you mean 'on'?"),
    # a misspelt keyword is a name: the error listed the keywords but did not pick one
    ("loss hinge", "los hinge", "found the name 'los'", 10, 5, "did you mean 'loss'?"),
    ("loss hinge", "Loss hinge", "found the name 'Loss'", 10, 5, "did you mean 'loss'?"),
    ("param w", "parm w", "found the name 'parm'", 7, 1, "did you mean 'param'?"),
    ("predict dot", "prdict dot", "found the name 'prdict'", 12, 5, "did you mean 'predict'?"),
    # already clear: pinned
    ("dot(X[i], w))", "dot(X[i], ww))", "unknown name 'ww'", 10, 33, "did you mean 'w'?"),
    ("hinge(", "hing(", "unknown function 'hing'", 10, 10, "did you mean 'hinge'?"),
    ("data y[example]", "data y[exmaple]", "unknown dim 'exmaple'", 6, 8,
     "did you mean 'example'?"),
    (": sign", ": sing", "unknown data kind 'sing'", 6, 19, "did you mean 'sign'?"),
    ("decay 0.9", "decy 0.9", "unknown train key 'decy'", 14, 17, "did you mean 'decay'?"),
    ("epochs 20", "epochs 20, optimizer adgrad", "unknown optimizer 'adgrad'", 14, 49,
     "did you mean 'adagrad'?"),
    ("in example:", "in example", "missing ':'", 9, 17, "ends with ':'"),
    ("    reg l2", "\treg l2", "a tab in indentation", 11, 1, "spaces"),
    ("data y[example]", "data y[feature]", "indexed by feature", 10, 18, "dim declared"),
    ("l2(1e-4)", "l3(1e-4)", "unknown regularizer 'l3'", 11, 9, "l1(LAMBDA) or l2(LAMBDA)"),
    ("step 0.5", "step -0.5", "'step' must be positive", 14, 12, "step 0.1"),
]


@pytest.mark.parametrize("old, new, message, line, column, hint", SPEC_MISTAKES,
                         ids=[row[1].strip() for row in SPEC_MISTAKES])
def test_spec_mistake_points_at_it_and_suggests(old, new, message, line, column, hint):
    assert old in SVM
    with pytest.raises(SpecError) as e:
        hogwild_dsl.check(SVM.replace(old, new, 1))
    assert message in str(e.value)
    assert (e.value.line, e.value.column) == (line, column)
    assert hint in e.value.hint
    assert "^" in str(e.value)


def test_names_that_start_with_a_keyword_are_still_names():
    text = SVM.replace("param w[feature] = 0", "param format[feature] = 0\nparam inw = 0") \
              .replace("dot(X[i], w))", "dot(X[i], format) + inw)") \
              .replace("on w[X[i]]", "on format[X[i]]").replace("dot(X[i], w)\n", "inw\n")
    ir = hogwild_dsl.check(text)
    assert {p.name for p in ir.params} == {"format", "inw"}


# ---------------------------------------------------------------- the Trainer

@pytest.fixture(scope="module")
def svm(load_spec):
    return load_spec("svm")


@pytest.fixture(scope="module")
def xy():
    X = sp.random(60, 12, density=0.3, format="csr", random_state=0)
    y = np.where(np.arange(60) % 2, 1.0, -1.0)
    return X, y


def trainer(mod, **kw):
    return mod.Trainer(**{"threads": 1, "epochs": 1, "step": 0.1, **kw})


@pytest.mark.parametrize("call, given", [
    # scikit-learn's habit: fit(X, y) bound X to `validation` ("must be a dict") or raised
    # Python's own TypeError; a dict passed as is became the validation data ("missing 'X'")
    (lambda t, X, y: t.fit(X, y), "not 2 positional arguments"),
    (lambda t, X, y: t.fit(X), "not 1 positional argument"),
    (lambda t, X, y: t.fit({"X": X, "y": y}), "not a dict (a dict of data: fit(**data))"),
    (lambda t, X, y: t.fit(X=X, y=y).predict(X), "not 1 positional argument"),
    (lambda t, X, y: t.fit(X=X, y=y).objective(X, y), "not 2 positional arguments"),
], ids=["fit(X, y)", "fit(X)", "fit(dict)", "predict(X)", "objective(X, y)"])
def test_data_given_by_position_says_to_name_it(svm, xy, call, given):
    with pytest.raises(DataError, match=r"takes the data by the spec's names, as keywords: "
                                        r"\w+\(X=\.\.\., y=\.\.\.\) for model 'svm'") as e:
        call(trainer(svm), *xy)
    assert given in str(e.value)


@pytest.mark.parametrize("kw, meant", [
    ({"epoch": 3}, "did you mean epochs=?"),
    ({"learning_rate": 0.1}, "did you mean step=?"),     # the peers' words
    ({"n_jobs": 2}, "did you mean threads=?"),
    ({"random_state": 1}, "did you mean seed=?"),
    ({"colour": 1}, "(its options: threads, epochs, step"),
])
def test_unknown_trainer_option_names_the_one_meant(svm, kw, meant):
    """It was Python's TypeError 'TrainerBase.__init__() got an unexpected keyword
    argument', naming no option; so was Trainer.load(path, epoch=3)."""
    with pytest.raises(HogwildError, match="Trainer has no option") as e:
        svm.Trainer(**kw)
    assert meant in str(e.value)


def test_unknown_option_of_trainer_load(svm, xy, tmp_path):
    path = trainer(svm).fit(X=xy[0], y=xy[1]).save(tmp_path / "m.npz")
    with pytest.raises(HogwildError, match="no option 'epoch': did you mean epochs=?"):
        svm.Trainer.load(path, epoch=3)


@pytest.mark.parametrize("name", ["shuffle", "progress"])
def test_a_string_for_a_true_false_option_is_refused(svm, name):
    """bool("no") is True: shuffle="no" shuffled, progress="no" showed a bar."""
    with pytest.raises(HogwildError, match=f"{name} must be True or False, not 'no'"):
        trainer(svm, **{name: "no"})


@pytest.mark.parametrize("kw, message", [
    ({"threads": 0}, "threads must be a positive integer, not 0"),
    ({"threads": 10**6}, "threads must be a positive integer of at most"),
    ({"epochs": -1}, "epochs must be a non-negative integer"),
    ({"step": 0}, "step must be a positive number"),
    ({"step": "0.1"}, "step must be a positive number or 'auto'"),
    ({"sync": "locks"}, "sync must be one of hogwild, atomic, lock, not 'locks'"),
    ({"optimizer": "adam"}, "optimizer must be one of sgd, adagrad, adagrad_row"),
    ({"order": "random"}, "order must be one of shuffle, chunks, stored"),
    ({"seed": -1}, "seed must be a non-negative integer"),
])
def test_bad_option_values_already_clear(svm, kw, message):
    with pytest.raises(HogwildError, match=message):
        trainer(svm, **kw)


# ---------------------------------------------------------------- load and check

def test_spec_text_given_to_load_as_its_path():
    """load(TEXT) was 'TEXT: no such file' (the whole spec quoted), or an OSError 'File name
    too long' where a line of the spec ran past 255 characters without a '/'."""
    for text in (SVM, (SPECS / "fm.hog").read_text()):
        with pytest.raises(SpecError, match=r"pass the text as hogwild_dsl.load\(text=\.\.\.\)"):
            hogwild_dsl.load(text)


@pytest.mark.parametrize("name", ["x" * 300, "no_such_spec"])
def test_a_name_that_is_no_file_and_no_shipped_spec(name):
    with pytest.raises(SpecError, match="no such file, and not a shipped spec .shipped: bpr"):
        hogwild_dsl.load(name)
    with pytest.raises(SpecError, match="not a shipped spec"):
        from hogwild_dsl.sklearn import HogwildRegressor
        HogwildRegressor(spec=name).fit(np.ones((4, 2)), np.arange(4.0))


def test_a_directory_for_a_spec(tmp_path):
    with pytest.raises(SpecError, match="is a directory, not a .hog spec file"):
        hogwild_dsl.load(tmp_path)


@pytest.mark.parametrize("arg", [str(SPECS / "svm.hog"), "svm", "model.hog"])
def test_check_given_a_path_says_it_takes_text(arg):
    """check('specs/svm.hog') was a syntax error at the path's first word."""
    with pytest.raises(SpecError, match=r"check\(\) takes a spec's text, not a path"):
        hogwild_dsl.check(arg)
