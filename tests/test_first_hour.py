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


# ---------------------------------------------------------------- data given to fit

@pytest.fixture(scope="module")
def mc(load_spec):
    return load_spec("mc", consts={"rank": 3})


def test_a_ratings_table_for_an_entry_block_is_not_read_as_a_matrix(mc):
    """A DataFrame of (user, item, rating, timestamp) rows was read as a dense 500 x 4 matrix
    (its nonzeros kept): the fit trained on ids and timestamps, and diverged or not."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"user": [0, 1, 2], "item": [1, 0, 1], "rating": [4.0, 3.0, 5.0],
                       "timestamp": [111, 222, 333]})
    with pytest.raises(DataError, match=r"data 'r' is given as a DataFrame.*coo_matrix.*"
                                        r"df.to_numpy\(\)"):
        trainer(mc).fit(r=df)
    R = sp.coo_matrix((df["rating"], (df["user"], df["item"])))
    assert trainer(mc).fit(r=R).predict(r=R).shape == (3,)


def test_a_feature_table_for_row_data_is_a_dense_matrix(svm, xy):
    """Pinned: a DataFrame of features for a row block's X is its dense matrix, as in
    scikit-learn."""
    pd = pytest.importorskip("pandas")
    X, y = xy
    a = trainer(svm).fit(X=pd.DataFrame(X.toarray()), y=pd.Series(y)).params["w"]
    assert np.array_equal(a, trainer(svm).fit(X=X, y=y).params["w"])


def _with(X, **changes):
    X = X.copy()
    for k, v in changes.items():
        setattr(X, k, v)
    return X


# (what the data is, fit's data from (X, y), the DataError's message): each already clear
DATA_MISTAKES = [
    ("y missing", lambda X, y: {"X": X}, "missing data 'y' (declared on spec line 6"),
    ("x for X", lambda X, y: {"x": X, "y": y}, "unknown data name 'x': model 'svm' declares X"),
    ("0/1 labels", lambda X, y: {"X": X, "y": (y > 0) * 1.0},
     "declared sign: every label must be -1 or +1, found 0"),
    ("y too short", lambda X, y: {"X": X, "y": y[:-1]},
     "dim 'example' is 60 from data 'X' (axis 0) but 59 from data 'y'"),
    ("y a column", lambda X, y: {"X": X, "y": y[:, None]}, "data 'y' must be 1-D"),
    ("y strings", lambda X, y: {"X": X, "y": y.astype(str)}, "data 'y' must be numeric"),
    ("X 1-D", lambda X, y: {"X": X.toarray()[0], "y": y}, "must be a sparse matrix"),
    ("X 3-D", lambda X, y: {"X": X.toarray()[None], "y": y}, "must be a sparse matrix"),
    ("NaN in X", lambda X, y: {"X": _with(X, data=np.r_[np.nan, X.data[1:]]), "y": y},
     "data 'X' holds NaN or inf"),
    ("inf in y", lambda X, y: {"X": X, "y": np.r_[np.inf, y[1:]]}, "data 'y' holds NaN or inf"),
    ("column index past the width",
     lambda X, y: {"X": _with(X, indices=np.r_[X.indices[:-1], 10**6].astype(np.int32)),
                   "y": y},
     "data 'X' is a corrupt sparse matrix: indices entry 1000000 is out of range [0, 12)"),
    ("negative column index",
     lambda X, y: {"X": _with(X, indices=np.r_[-1, X.indices[1:]].astype(np.int32)), "y": y},
     "indices entry -1 is out of range [0, 12)"),
    ("no rows", lambda X, y: {"X": sp.csr_matrix((0, 12)), "y": np.zeros(0)},
     "no terms to train on: 'for i in example' has 0 terms"),
]


@pytest.mark.parametrize("what, data, message", DATA_MISTAKES,
                         ids=[row[0] for row in DATA_MISTAKES])
def test_data_mistakes_name_the_data_and_the_problem(svm, xy, what, data, message):
    with pytest.raises(DataError) as e:
        trainer(svm).fit(**data(*xy))
    assert message in str(e.value)


@pytest.mark.parametrize("X", [
    lambda X: X.tocsc(), lambda X: X.tocoo(), lambda X: X.toarray(), lambda X: X.tolil(),
    lambda X: _with(X, indices=X.indices.astype(np.int64), indptr=X.indptr.astype(np.int64)),
    lambda X: _reversed_rows(X),
    lambda X: np.asfortranarray(X.toarray()),
    lambda X: X.astype(np.float32),
], ids=["csc", "coo", "dense", "lil", "int64 indices", "unsorted indices", "fortran",
        "float32"])
def test_any_form_of_the_same_matrix_trains_alike(svm, xy, X):
    """Pinned: CSC, COO, LIL, dense, int64 indices, unsorted columns, a Fortran array and
    float32 values train as the CSR itself does."""
    X0, y = xy
    want = trainer(svm).fit(X=X0, y=y).params["w"]
    assert np.allclose(trainer(svm).fit(X=X(X0), y=y).params["w"], want, rtol=1e-6)


def _reversed_rows(X):
    """The same matrix with each row's columns stored in reverse order."""
    X = X.copy()
    for i in range(X.shape[0]):
        s, e = X.indptr[i], X.indptr[i + 1]
        X.indices[s:e], X.data[s:e] = X.indices[s:e][::-1].copy(), X.data[s:e][::-1].copy()
    X.has_sorted_indices = False
    return X


def test_read_only_and_strided_labels_train(svm, xy):
    X, y = xy
    ro = y.copy()
    ro.flags.writeable = False
    want = trainer(svm).fit(X=X, y=y).params["w"]
    assert np.array_equal(trainer(svm).fit(X=X, y=ro).params["w"], want)
    assert np.array_equal(trainer(svm).fit(X=X, y=np.repeat(y, 2)[::2]).params["w"], want)


def test_warm_start_and_predict_on_data_of_another_width(svm, xy):
    X, y = xy
    t = trainer(svm).fit(X=X, y=y)
    wider = sp.random(60, 15, density=0.3, format="csr", random_state=1)
    for call in (lambda: t.fit(X=wider, y=y), lambda: t.predict(X=wider)):
        with pytest.raises(DataError, match="dim 'feature' is 15 from data 'X' .axis 1. but 12 "
                                            "from param 'w'"):
            call()


def test_a_step_that_diverges_keeps_the_finite_params(svm, xy):
    X, y = xy
    t = trainer(svm, step=1e300, epochs=3)
    with pytest.raises(hogwild_dsl.DivergenceError, match="smaller step") as e:
        t.fit(X=X * 1e10, y=y)
    assert e.value.epoch == 1
    assert np.all(np.isfinite(t.params["w"]))
