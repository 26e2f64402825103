"""`hogwildc train --optimizer/--validation/--patience` (API.md), and the table and curve that
show a validation objective. The options pass through to the Trainer as API.md names them; where
this installation's Trainer lacks one (the update rules arrive separately), the CLI says so in
one line, and the tests of that feature skip, naming the feature the probe found missing."""
import inspect

import numpy as np
import pytest
import scipy.sparse as sp

from hogwild_dsl import cli
from hogwild_dsl.check import check
from hogwild_dsl.history import print_history
from hogwild_dsl.runtime import TrainerBase

from test_cli import SPECS, cli_env, hogwildc, no_traceback, one_error_line  # noqa: F401

TRAINER_TAKES = inspect.signature(TrainerBase.__init__).parameters
FIT_TAKES = inspect.signature(TrainerBase.fit).parameters


def needs(feature, takes):
    return pytest.mark.skipif(feature not in takes, reason=f"the installed Trainer has no "
                              f"'{feature}' parameter yet (API.md; being added in runtime.py)")


def write_svm(path, X, y):
    """A LIBSVM file of rows X (one-based feature ids) and labels y."""
    lines = []
    for row, label in zip(X, y):
        cols = np.flatnonzero(row)
        lines.append(f"{int(label)} " + " ".join(f"{c + 1}:{row[c]:.6g}" for c in cols))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def svm_files(tmp_path):
    """Training rows over 12 features; held-out rows that never use the last two (so their
    file reads 10 features wide, as LIBSVM's a9a.t reads one short of a9a)."""
    rng = np.random.default_rng(5)
    w = rng.normal(size=12)
    X = np.where(rng.random((60, 12)) < 0.3, rng.normal(size=(60, 12)), 0.0)
    X[0, 11] = 1.0
    Xv = np.where(rng.random((30, 12)) < 0.3, rng.normal(size=(30, 12)), 0.0)
    Xv[:, 10:] = 0.0
    y, yv = np.where(X @ w >= 0, 1, -1), np.where(Xv @ w >= 0, 1, -1)
    write_svm(tmp_path / "train.svm", X, y)
    write_svm(tmp_path / "held.svm", Xv, yv)
    return tmp_path / "train.svm", tmp_path / "held.svm"


def table(stdout):
    """The per-epoch table's rows as lists of cells."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["epoch"])
    rows = []
    for ln in lines[start + 1:]:
        cells = ln.split()
        if not cells or not cells[0].isdigit():
            break
        rows.append(cells)
    return lines[start].split(), rows


def held_out_objective(load_spec, params_file, held):
    """The objective on the held-out file at the saved params, by the Python API."""
    from hogwild_dsl.data import read_data
    data = read_data(held, ["X", "y"], {"X": "sparse", "y": "dense"})
    X, y = data["X"], data["y"]
    X.resize((X.shape[0], 12))
    t = load_spec("svm").Trainer(epochs=0)
    t.fit(X=X, y=y)
    with np.load(params_file) as f:
        t.params["w"][...] = f["w"]
    return t.objective(X=X, y=y)


# ------------------------------------------------------------------ no build needed


def test_print_history_shows_the_validation_column_only_when_there_is_one(capsys):
    plain = [{"epoch": 1, "objective": 0.5, "seconds": 0.01, "step": 0.1}]
    print_history(plain)
    out = capsys.readouterr().out
    assert "validation" not in out
    held = [dict(plain[0], validation_objective=0.625)]
    print_history(held)
    head, *rows = capsys.readouterr().out.splitlines()
    assert head.split() == ["epoch", "objective", "validation", "seconds", "step"]
    assert rows[0].split() == ["1", "0.5", "0.625", "0.010", "0.1"]


def test_print_history_marks_a_sampled_objective_and_says_what_it_is(capsys):
    print_history([{"epoch": 1, "objective": 0.5, "seconds": 0.01, "step": 0.1,
                    "sampled_terms": 2000},
                   {"epoch": 2, "objective": 0.25, "seconds": 0.01, "step": 0.1}])
    head, first, last, note = capsys.readouterr().out.splitlines()
    assert first.split()[1] == "0.5~" and last.split()[1] == "0.25"
    assert note.startswith("~ the mean over a fixed random sample of 2000 of the terms")


@pytest.mark.parametrize("options, needle", [
    (["--patience", "2"], "--validation NAME=FILE"),     # patience without held-out data
    (["--optimizer", "nosuch"], "optimizer"),
])
def test_bad_training_options_are_one_clear_line(hogwildc, svm_files, options, needle):
    train, _ = svm_files
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={train}", *options)
    assert res.returncode == 1
    no_traceback(res)
    assert needle in one_error_line(res)


def test_patience_is_a_positive_integer(hogwildc, svm_files):
    train, _ = svm_files
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={train}", "--patience", "0")
    assert res.returncode == 2 and "--patience must be at least 1" in res.stderr


@pytest.mark.parametrize("option, value, feature", [
    ("--optimizer", "adagrad", "optimizer"),
    ("--patience", "3", "patience"),
    ("--validation", "X,y=held.svm", "validation"),
])
def test_a_trainer_without_the_feature_gives_a_clear_error(monkeypatch, capsys, svm_files,
                                                           option, value, feature):
    """A Trainer of the previous API (no optimizer, patience or validation): one line naming
    the option, before any data is read or kernel built."""
    def old_init(self, threads=None, epochs=None, step=None, decay=None, seed=0,
                 sync="hogwild", shuffle=True, progress=False, order=None):
        raise AssertionError("the CLI must refuse before making a trainer")

    def old_fit(self, /, **data):
        raise AssertionError("the CLI must refuse before fitting")

    monkeypatch.setattr(TrainerBase, "__init__", old_init)
    monkeypatch.setattr(TrainerBase, "fit", old_fit)
    train, held = svm_files
    extra = ["--validation", f"X,y={held}"] if option == "--patience" else []
    code = cli.main(["train", str(SPECS / "svm.hog"), "--data", f"X,y={train}", option,
                     value.replace("held.svm", str(held)), *extra])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("hogwildc: error:") == 1
    assert f"{option}: the trainer of this installation does not support '{feature}'" in err


def test_validation_arguments_are_read_like_data(tmp_path):
    spec = check((SPECS / "svm.hog").read_text())
    with pytest.raises(cli.HogwildError, match="^--validation 'X,y': expected NAME=FILE"):
        cli.read_data_args(spec, ["X,y"], "--validation")
    with pytest.raises(cli.HogwildError, match="^--validation Z=f.svm: the spec declares no "
                                               "data 'Z'"):
        cli.read_data_args(spec, ["Z=f.svm"], "--validation")


def test_widen_to_agree_pads_the_dims_that_size_params():
    svm = check((SPECS / "svm.hog").read_text())
    train = {"X": sp.csr_matrix(np.ones((4, 5))), "y": np.ones(4)}
    held = {"X": sp.csr_matrix(np.ones((2, 3))), "y": np.ones(2)}
    cli.widen_to_agree(svm, train, held)
    assert train["X"].shape == (4, 5) and held["X"].shape == (2, 5)   # rows are terms: kept
    assert held["X"].nnz == 6

    mc = check((SPECS / "mc.hog").read_text())
    train = {"r": sp.csr_matrix(np.ones((3, 2)))}
    held = {"r": sp.csr_matrix(np.ones((2, 4)))}
    cli.widen_to_agree(mc, train, held)
    assert train["r"].shape == held["r"].shape == (3, 4)
    assert (train["r"].nnz, held["r"].nnz) == (6, 8)


# ------------------------------------------------------------------ through the compiler


@pytest.fixture
def pipeline():
    pytest.importorskip("hogwild_dsl.jit")


@needs("validation", FIT_TAKES)
def test_validation_objective_is_a_column(hogwildc, svm_files, tmp_path, pipeline, load_spec):
    train, held = svm_files
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={train}", "--validation",
                   f"X,y={held}", "--epochs", "3", "--threads", "1", "-q",
                   "--out", tmp_path / "w.npz", "--plot", tmp_path / "curve.png")
    assert res.returncode == 0, res.stderr
    no_traceback(res)
    head, rows = table(res.stdout)
    assert head == ["epoch", "objective", "validation", "seconds", "step"]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    last = float(rows[-1][2])      # without patience the last epoch's params are kept
    assert held_out_objective(load_spec, tmp_path / "w.npz", held) == \
        pytest.approx(last, rel=1e-7)
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


@needs("validation", FIT_TAKES)
@needs("patience", TRAINER_TAKES)
def test_patience_keeps_the_best_epoch(hogwildc, svm_files, tmp_path, pipeline, load_spec):
    train, held = svm_files
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={train}", "--validation",
                   f"X,y={held}", "--patience", "2", "--epochs", "60", "--step", "4",
                   "--decay", "1", "--threads", "1", "-q", "--out", tmp_path / "w.npz")
    assert res.returncode == 0, res.stderr
    _, rows = table(res.stdout)
    values = [float(r[2]) for r in rows]
    best = int(np.argmin(values))
    assert len(rows) < 60 and len(rows) == best + 1 + 2     # stopped 2 epochs after the best
    assert f"kept the params of epoch {best + 1}," in res.stdout
    assert held_out_objective(load_spec, tmp_path / "w.npz", held) == \
        pytest.approx(values[best], rel=1e-7)


@needs("optimizer", TRAINER_TAKES)
def test_optimizer_is_passed_through(hogwildc, svm_files, tmp_path, pipeline, load_spec):
    """The saved params are those of the Python API with the same optimizer, and differ
    from plain SGD's."""
    from hogwild_dsl.data import read_data
    train, _ = svm_files
    data = read_data(train, ["X", "y"], {"X": "sparse", "y": "dense"})
    for optimizer in ("adagrad", "sgd"):
        res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={train}", "--optimizer",
                       optimizer, "--epochs", "2", "--threads", "1", "-q",
                       "--out", tmp_path / f"{optimizer}.npz")
        assert res.returncode == 0, res.stderr
        t = load_spec("svm").Trainer(optimizer=optimizer, epochs=2, threads=1).fit(**data)
        with np.load(tmp_path / f"{optimizer}.npz") as f:
            np.testing.assert_array_equal(f["w"], t.params["w"])
    with np.load(tmp_path / "adagrad.npz") as a, np.load(tmp_path / "sgd.npz") as s:
        assert not np.array_equal(a["w"], s["w"])
