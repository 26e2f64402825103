"""A new user's first hour: the mistakes such a user makes, following README.md and docs/ word
for word, each of which must end in a clear error that says what is wrong and what to do (or
work as the docs say). One case per row; the compiled modules come from conftest's session
cache (svm, mc, funksvd, softmax, logreg), so the file stays fast."""
import re

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
    # habits of Python or C: the parser said only that '*', '/', '=' or ':' was unexpected
    ("y[i] * dot(X[i], w)", "(y[i] * dot(X[i], w))**2", "'**' is not an operator", 10, 38,
     "power is written '^'"),
    ("# labels", "// labels", "'//' does not start a comment", 6, 40, "'#' starts a comment"),
    ("loss hinge", "loss = hinge", "'loss' takes its expression without '='", 10, 10,
     "write 'loss EXPR'"),
    ("dot(X[i], w))", "dot(X[i, :], w))", "slices (':') are not part of the language", 10, 32,
     "X[i] is row i of X"),
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
    # '%g' printed 1.0000001 as 1: "must be -1 or +1, found 1"
    ("a label off by 1e-7", lambda X, y: {"X": X, "y": np.r_[1.0000001, y[1:]]},
     "every label must be -1 or +1, found 1.0000001"),
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


# ---------------------------------------------------------------- the estimators

def test_recommend_n_must_be_a_count(mc):
    """recommend(user, n=-1) returned no items in silence (max(int(n), 0)); n=2.5 gave 2."""
    from hogwild_dsl.sklearn import EstimatorInputError, HogwildRecommender
    R = sp.random(12, 8, density=0.5, format="csr", random_state=0)
    R.data = np.round(R.data * 4 + 1)
    rec = HogwildRecommender(spec="mc", consts={"rank": 3}, threads=1, epochs=2,
                             step=0.01).fit(R)
    for n in (-1, 2.5, "3", None):
        with pytest.raises(EstimatorInputError, match="n must be a non-negative integer"):
            rec.recommend(0, n=n)
    assert len(rec.recommend(0, n=np.int64(2))) == 2
    assert len(rec.recommend(0, n=0)) == 0


def test_one_class_is_shown_plainly():
    """numpy 2 printed 'y holds 1 class (np.float64(1.0))'."""
    from hogwild_dsl.sklearn import EstimatorInputError, HogwildClassifier
    with pytest.raises(EstimatorInputError, match=r"y holds 1 class \(1.0\): a classifier"):
        HogwildClassifier().fit(np.eye(4), np.ones(4))


# ---------------------------------------------------------------- hogwildc

def hogwildc(capsys, *args):
    from hogwild_dsl.cli import main
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


@pytest.fixture(scope="module")
def svm_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "train.svm"
    path.write_text("1 1:0.5 3:1\n-1 2:1\n1 1:1 2:0.25\n-1 3:0.5\n")
    return path


def test_an_unknown_option_is_told_with_its_command(capsys, svm_file):
    """argparse told it with hogwildc's own usage ('usage: hogwildc [-h] [--version] COMMAND
    ...'), naming neither the command nor the option meant."""
    code, _, err = hogwildc(capsys, "train", SPECS / "svm.hog", "--data", f"X,y={svm_file}",
                            "--stepp", "1")
    assert code == 2
    assert "usage: hogwildc train" in err
    assert "--stepp: did you mean --step?" in err
    assert "'1' follows" not in err


def test_data_given_without_its_equals_sign(capsys, svm_file):
    code, _, err = hogwildc(capsys, "train", SPECS / "svm.hog", "--data", "X,y", svm_file)
    assert code == 2
    assert "follows no option that takes it (--data NAME=FILE is one word" in err


def test_a_scalar_datum_that_is_no_number(capsys, tmp_path):
    """--data mu=abc was "data file 'abc': no such file"."""
    ratings = tmp_path / "r.csv"
    ratings.write_text("0,0,4\n1,1,3\n")
    code, _, err = hogwildc(capsys, "train", "funksvd", "--data", f"r={ratings}",
                            "--data", "mu=abc", "--const", "rank=2")
    assert code == 1
    assert "data 'mu' is a scalar (data mu : real): give a number (--data mu=3.6)" in err


@pytest.mark.parametrize("args, code, message", [
    (["train", "nonexist.hog", "--data", "X,y=f"], 1, "no such file, and not a shipped spec"),
    (["train", SPECS, "--data", "X,y=f"], 1, "is a directory, not a .hog file"),
    (["train", "svm", "--data", "X,y=missing.svm"], 1, "data file 'missing.svm': no such file"),
    (["train", "svm", "--data", "x,y=f"], 1, "the spec declares no data 'x' (it declares X, y)"),
    (["train", "svm", "--data", "X,y=f", "--threads", "0"], 2, "--threads must be at least 1"),
    (["train", "svm", "--data", "X,y=f", "--sync", "locks"], 2, "invalid choice: 'locks'"),
    (["train", "svm", "--data", "X,y=f", "--patience", "2"], 1,
     "give held-out data with --validation"),
    (["compile", "mc", "--const", "rnk=5"], 1, "did you mean 'rank'?"),
    (["check", "svm", "--exact"], 2, "unrecognized arguments: --exact"),
])
def test_command_line_mistakes(capsys, tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    got, _, err = hogwildc(capsys, *args)
    assert got == code
    assert message in err


def test_labels_of_the_other_convention_in_a_file(capsys, tmp_path):
    path = tmp_path / "01.svm"
    path.write_text("1 1:0.5\n0 2:1\n")
    code, _, err = hogwildc(capsys, "train", "svm", "--data", f"X,y={path}", "-q")
    assert code == 1
    assert f"data file '{path}', line 2" in err and "write the 0 labels as -1" in err


@pytest.mark.parametrize("command", ["check", "compile", "train", "analyze", "demo"])
def test_help_of_each_command_names_api_md_options(capsys, command):
    code, out, _ = hogwildc(capsys, command, "--help")
    assert code == 0
    want = {"check": ["SPEC", "--const"], "compile": ["-o DIR", "--const", "--dtype"],
            "train": ["--data NAME=FILE", "--threads", "--epochs", "--step", "--sync",
                      "--optimizer", "--validation", "--patience", "--out", "--plot"],
            "analyze": ["--data NAME=FILE", "--sample", "--exact"],
            "demo": ["--scale", "--threads", "--epochs"]}[command]
    for option in want:
        assert option in out
    if command != "demo":
        assert "shipped spec" in out


# ---------------------------------------------------------------- save and load

def _resaved(path, tmp_path, **meta_changes):
    """The file at `path` with its metadata changed (as another version or spec writes it)."""
    import json
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["__hogwild__"][()]))
    meta.update(meta_changes)
    arrays["__hogwild__"] = np.array(json.dumps(meta))
    out = tmp_path / f"changed_{len(list(tmp_path.iterdir()))}.npz"
    np.savez(out, **arrays)
    return out


def test_a_file_saved_by_another_version_of_the_same_spec_loads(mc, tmp_path):
    """The signature hashes the compiler's own source too, so every file saved before an
    upgrade of hogwild-dsl was refused ('different spec or version'): the work was lost
    although the params (named and shaped by the spec and consts alone) fit."""
    R = sp.random(10, 6, density=0.5, format="coo", random_state=0)
    t = trainer(mc, epochs=2, step=0.01).fit(r=R)
    old = _resaved(t.save(tmp_path / "mc.npz"), tmp_path, signature="0" * 24)
    t2 = mc.Trainer.load(old)
    assert np.array_equal(t2.params["L"], t.params["L"])
    assert t2.fit(r=R).history


@pytest.mark.parametrize("change, message", [
    ({"consts": {"rank": 5}}, "was saved with consts {'rank': 5}, and this module has "
                              "{'rank': 3}: load the module with consts={'rank': 5}"),
    ({"model": "svm"}, "was saved by model 'svm', not 'mc'"),
    ({"spec": "model mc\n"}, "was saved by another spec of model 'mc'"),
])
def test_a_file_of_another_spec_says_which_and_what_to_do(mc, tmp_path, change, message):
    R = sp.random(10, 6, density=0.5, format="coo", random_state=0)
    path = trainer(mc, epochs=1, step=0.01).fit(r=R).save(tmp_path / "mc.npz")
    with pytest.raises(HogwildError, match="signature mismatch") as e:
        mc.Trainer.load(_resaved(path, tmp_path, signature="0" * 24, **change))
    assert message in str(e.value)


def test_a_file_of_another_model(svm, load_spec, xy, tmp_path):
    path = trainer(svm).fit(X=xy[0], y=xy[1]).save(tmp_path / "svm.npz")
    with pytest.raises(HogwildError, match="saved by model 'svm', not 'logreg'"):
        load_spec("logreg").Trainer.load(path)


# ---------------------------------------------------------------- validation

@pytest.fixture(scope="module")
def funksvd(load_spec):
    return load_spec("funksvd", consts={"rank": 2})


def test_validation_takes_fit_s_scalar_data(funksvd):
    """fit(r=R, mu=3.5, validation={"r": Rv}) was "validation: missing data 'mu'", where
    `hogwildc train --validation` uses --data's mu for the held-out data."""
    R = sp.random(12, 8, density=0.5, format="coo", random_state=0)
    Rv = sp.random(12, 8, density=0.2, format="coo", random_state=1)
    t = trainer(funksvd, epochs=2, step=0.01).fit(r=R, mu=3.5, validation={"r": Rv})
    assert t.history[-1]["validation_objective"] == pytest.approx(t.objective(r=Rv, mu=3.5))
    t = trainer(funksvd, epochs=1, step=0.01).fit(r=R, mu=3.5, validation={"r": Rv, "mu": 1.0})
    assert t.history[-1]["validation_objective"] == pytest.approx(t.objective(r=Rv, mu=1.0))


def test_a_nan_scalar_datum(funksvd):
    """'holds NaN or inf at index []': a scalar has no index."""
    R = sp.random(12, 8, density=0.5, format="coo", random_state=0)
    with pytest.raises(DataError, match=r"^data 'mu' holds NaN or inf$"):
        trainer(funksvd).fit(r=R, mu=float("nan"))


def test_patience_and_validation_mistakes(svm, xy):
    X, y = xy
    with pytest.raises(HogwildError, match=r"patience=2 stops on the validation objective: "
                                           r"pass the held-out data as fit\(\.\.\., validation"):
        trainer(svm, patience=2).fit(X=X, y=y)
    with pytest.raises(DataError, match="validation: missing data 'y'"):
        trainer(svm).fit(X=X, y=y, validation={"X": X})
    with pytest.raises(DataError, match="validation must be a dict of data by the spec's names"):
        trainer(svm).fit(X=X, y=y, validation=(X, y))
    t = trainer(svm, patience=1, epochs=30, step=5.0).fit(X=X, y=y,
                                                          validation={"X": X[:20], "y": y[:20]})
    best = min(h["validation_objective"] for h in t.history)
    assert t.objective(X=X[:20], y=y[:20]) == pytest.approx(best)


def test_a_peer_s_word_on_the_train_line():
    with pytest.raises(SpecError, match="unknown train key 'lr'") as e:
        hogwild_dsl.check(SVM.replace("train step 0.5", "train lr 0.5"))
    assert e.value.hint == "did you mean 'step'?"


def test_predict_proba_of_a_margin_spec_says_why(xy):
    """scikit-learn's 'has no attribute predict_proba' named no reason; it is now the cause."""
    from hogwild_dsl.sklearn import HogwildClassifier
    X, y = xy
    clf = HogwildClassifier(spec="svm", threads=1, epochs=1, step=0.1).fit(X, y)
    assert not hasattr(clf, "predict_proba")
    with pytest.raises(AttributeError) as e:
        clf.predict_proba(X)
    assert "model 'svm' does not predict a probability" in str(e.value.__cause__)
    assert "decision_function" in str(e.value.__cause__)


def test_a_plot_file_of_no_image_format(capsys, svm_file, tmp_path, monkeypatch):
    """--plot curve.xyz trained, saved, then failed as 'internal error: ValueError ... (this
    is a bug in hogwild-dsl)'; now refused before training. Without an extension matplotlib
    wrote curve.png where we said 'curve'."""
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    code, out, err = hogwildc(capsys, "train", "svm", "--data", f"X,y={svm_file}", "-q",
                              "--epochs", "1", "--plot", "curve.xyz")
    assert code == 1
    assert "no image format has the extension '.xyz' (use .png, .pdf or .svg" in err
    assert "epoch" not in out
    code, out, _ = hogwildc(capsys, "train", "svm", "--data", f"X,y={svm_file}", "-q",
                            "--epochs", "1", "--plot", "curve")
    assert code == 0 and "saved the objective curve to curve.png" in out
    assert (tmp_path / "curve.png").exists()


# ---------------------------------------------------------------- data files

@pytest.mark.parametrize("text", [
    "user,item,rating,date\n0,1,3.5,2021-01-01\n1,0,4,2021-01-02\n",   # a date column
    "0,1,3.5,\n1,0,4,\n",                                              # trailing commas
])
def test_later_columns_of_a_triplet_file_are_ignored(capsys, tmp_path, text):
    """docs: 'columns after the third of a triplet file are ignored (a timestamp, say)';
    a date or an empty cell there was 'non-numeric cell' / 'empty cell in column 4'."""
    from hogwild_dsl.data import read_data
    path = tmp_path / "r.csv"
    path.write_text(text)
    r = read_data(str(path), ["r"], {"r": "sparse"})["r"]
    assert r.shape == (2, 2) and sorted(r.data) == [3.5, 4.0]


@pytest.mark.parametrize("text, message", [
    ("0;1;3,5\n1;0;4,0\n", "separated by ';' and the numbers have decimal commas"),
    ("0,1,3.5\n1,0\n", "line 2: a sparse (triplet) file needs the columns u,v,value; this row "
                       "has 2 columns"),
    ("0,1,3.5\n-1,0,4\n", "line 2: the id -1 in column 1 (the row id u) is negative"),
    ("0,1,3.5\n1,0,nan\n", "line 2: the value nan in column 3 is not a finite number"),
    ("0,1,3.5\n1.5,0,4\n", "line 2: the id 1.5 in column 1 (the row id u) is not an integer"),
])
def test_a_bad_line_of_a_triplet_file(tmp_path, text, message):
    from hogwild_dsl.data import read_data
    path = tmp_path / "r.csv"
    path.write_text(text)
    with pytest.raises(DataError) as e:
        read_data(str(path), ["r"], {"r": "sparse"})
    assert message in str(e.value) and "r.csv" in str(e.value)


def test_test_ratings_built_from_ids_without_the_shape(mc):
    """A COO of a few test ratings is as large as its largest ids + 1; the error named the
    mismatch only."""
    R = sp.random(30, 20, density=0.3, format="coo", random_state=0)
    t = trainer(mc).fit(r=R)
    few = sp.coo_matrix(([4.0, 3.0], ([2, 5], [1, 7])))
    with pytest.raises(DataError, match=r"dim 'user' is 6 from data 'r' \(axis 0\) but 30 from "
                                        r"param 'L' \(axis 0\): the params have 30 along 'user'"
                                        r".*shape="):
        t.predict(r=few)
    shaped = sp.coo_matrix((few.data, (few.row, few.col)), shape=(30, 20))
    assert t.predict(r=shaped).shape == (2,)


def test_a_cache_folder_that_cannot_be_made(tmp_path):
    """Pinned (a read-only folder cannot be made as root, so a file stands in its way)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(HogwildError, match="cannot create the build cache folder .*pass "
                                           "cache_dir or set HOGWILD_CACHE_DIR"):
        hogwild_dsl.load("svm", cache_dir=blocker / "cache")


@pytest.mark.parametrize("labels, message", [
    (lambda y: np.r_[-1, y[1:]], "position 0 holds -1, out of range [0, class)"),
    (lambda y: np.r_[0.5, y[1:]], "every value must be an integer, but position 0 holds 0.5"),
])
def test_index_labels_out_of_range(load_spec, labels, message):
    """Pinned: a negative or fractional class label of index(...) data."""
    X = sp.random(30, 8, density=0.4, format="csr", random_state=0)
    y = np.arange(30) % 3
    with pytest.raises(DataError, match=re.escape(message)):
        trainer(load_spec("softmax")).fit(X=X, y=labels(y))


def test_index_label_past_the_trained_classes(load_spec):
    X = sp.random(30, 8, density=0.4, format="csr", random_state=0)
    y = np.arange(30) % 3
    t = trainer(load_spec("softmax")).fit(X=X, y=y)
    with pytest.raises(DataError, match=re.escape("position 0 holds 5, out of range [0, 3) "
                                                  "(the size of class)")):
        t.fit(X=X, y=np.r_[5, y[1:]])


def test_a_masked_label_is_not_trained_on(svm, xy):
    """np.asarray dropped the mask: a masked (missing) label trained as the value under it."""
    X, y = xy
    masked = np.ma.masked_array(y, mask=np.arange(len(y)) == 3)
    with pytest.raises(DataError, match=r"data 'y' is a masked array with 1 masked value\(s\) "
                                        r"\(the first at index \[3\]\)"):
        trainer(svm).fit(X=X, y=masked)
    full = np.ma.masked_array(y, mask=np.zeros(len(y), bool))
    assert np.array_equal(trainer(svm).fit(X=X, y=full).params["w"],
                          trainer(svm).fit(X=X, y=y).params["w"])


def test_distributed_fit_with_data_by_position(svm, xy):
    """distributed.fit(mod, client, X, y) was Python's 'takes 2 positional arguments'."""
    pytest.importorskip("dask.distributed")
    from hogwild_dsl import distributed

    class Client:                       # checked before any data moves: no cluster needed
        def submit(self):
            pass

        def scheduler_info(self):
            pass

    with pytest.raises(DataError, match=r"fit\(\) takes the data by the spec's names, as "
                                        r"keywords: fit\(mod, client, X=\.\.\., y=\.\.\.\)"):
        distributed.fit(svm, Client(), *xy)


@pytest.mark.parametrize("kw, hint", [
    ({"epochs": 5}, "; 'epochs' is no data but an option: Trainer(epochs=...)"),      # Keras
    ({"learning_rate": 0.1}, "; 'learning_rate' is no data but an option: Trainer(step=...)"),
    ({"Y": 1}, " (did you mean 'y'?)"),
])
def test_an_option_or_a_near_name_given_to_fit(svm, xy, kw, hint):
    """fit(X=X, y=y, epochs=5) was 'unknown data name epochs' alone."""
    with pytest.raises(DataError) as e:
        trainer(svm).fit(X=xy[0], y=xy[1], **kw)
    assert str(e.value) == (f"unknown data name '{next(iter(kw))}': model 'svm' declares X, y"
                            + hint)


def test_distributed_fit_with_a_trainer_option(svm, xy):
    pytest.importorskip("dask.distributed")
    from hogwild_dsl import distributed

    class Client:
        def submit(self):
            pass

        def scheduler_info(self):
            pass

    with pytest.raises(DataError, match=r"'threads' is no data but an option: "
                                        r"distributed.fit\(threads_per_worker=\.\.\.\)"):
        distributed.fit(svm, Client(), X=xy[0], y=xy[1], threads=4)
