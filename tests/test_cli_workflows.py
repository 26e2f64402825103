"""`hogwildc` driven as a user drives it, with data files as users have them: what went wrong
when they did (tests/test_cli.py's fixtures share its compile cache)."""
import gzip

import numpy as np
import pytest
import scipy.sparse as sp

from hogwild_dsl import cli
from hogwild_dsl.check import check
from hogwild_dsl.data import line_of_row, read_data
from hogwild_dsl.errors import DataError

from test_cli import SPECS, cli_env, hogwildc, no_traceback, one_error_line  # noqa: F401

# a matrix-completion spec with a per-item datum: the item dim is fixed by a .npy file
PRIOR = """\
model prior
dim user, item
const rank = 2
data r[user, item] : sparse
data p[item] : real
param L[user, rank] ~ normal(0, 0.1)
param R[item, rank] ~ normal(0, 0.1)
for (u, v) in r:
    loss (dot(L[u], R[v]) + p[v] - r[u, v])^2
    reg l2(0.05) on L[u], R[v]
    predict dot(L[u], R[v]) + p[v]
train step 0.01, epochs 2
"""

RATINGS = "user,item,rating\n0,1,4\n1,0,3\n2,3,5\n1,3,2\n"     # items 0..3 rated


# ------------------------------------------------------------------ errors name file and line


def test_zero_one_labels_for_sign_data_name_the_file_line_and_the_fix(hogwildc, tmp_path):
    # the user saw: "data 'y' is declared sign: every label must be -1 or +1, found 0"
    # (no file, no line, nothing about what to change)
    path = tmp_path / "train.svm"
    path.write_text("# exported\n1 1:1 3:2\n\n0 3:3\n1 2:1\n")
    for command in ("train", "analyze"):
        res = hogwildc(command, SPECS / "svm.hog", "--data", f"X,y={path}")
        assert res.returncode == 1, res.stderr
        no_traceback(res)
        line = one_error_line(res)
        assert f"data file '{path}', line 4 (--data y)" in line
        assert "write the 0 labels as -1" in line


def test_minus_one_labels_for_binary_data_say_what_to_change(tmp_path):
    spec = check(open(SPECS / "svm.hog").read().replace(": sign", ": binary"))
    path = tmp_path / "y.csv"
    path.write_text("label\n1\n-1\n1\n")
    with pytest.raises(DataError, match=r"y.csv', line 3 \(--data y\).*write the -1 labels as 0"):
        cli.read_data_args(spec, [f"y={path}"])


def test_nan_in_an_svmlight_file_names_its_line(hogwildc, tmp_path):
    # the user saw: "data 'X' holds NaN or inf (row 1, column 0)": which file, which line?
    path = tmp_path / "train.svm.gz"
    with gzip.open(path, "wt") as f:
        f.write("1 1:1 3:2\r\n# a comment\r\n-1 1:nan 3:3\r\n")
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={path}", "-q")
    assert res.returncode == 1
    line = one_error_line(res)
    assert f"data file '{path}', line 3 (--data X)" in line and "NaN or inf" in line


def test_nan_in_a_dense_file_names_its_line(tmp_path):
    spec = check((SPECS / "svm.hog").read_text())
    path = tmp_path / "y.csv"
    path.write_text("y\n1\n-1\n\nnan\n")
    with pytest.raises(DataError, match=r"y.csv', line 5 \(--validation y\): .*NaN or inf") \
            as info:
        cli.read_data_args(spec, [f"y={path}"], "--validation")
    assert "labels" not in str(info.value)            # no label hint for a NaN


def test_nan_in_a_triplet_file_names_its_line(tmp_path):
    # it said "holds NaN or inf (row 1, column 1)": the ids, not the line
    path = tmp_path / "r.csv"
    path.write_text("u;v;r\n0;1;3\n\n1;1;nan\n")
    with pytest.raises(DataError, match=r"r.csv', line 4: the value nan in column 3"):
        read_data(path, ["r"], "sparse")


def test_inf_in_a_matrix_market_file_names_its_line_and_one_based_ids(tmp_path):
    # it said "(row 1, column 1)" for the file's entry "2 2 inf" (zero-based, no line)
    path = tmp_path / "r.mtx"
    path.write_text("%%MatrixMarket matrix coordinate real general\n% c\n3 3 2\n1 1 2\n"
                    "2 2 inf\n")
    with pytest.raises(DataError, match=r"r.mtx', line 5: the entry at row 2, column 2 is inf"):
        read_data(path, ["r"], "sparse")


def test_line_of_row_counts_data_rows_only(tmp_path):
    svm = tmp_path / "a.svm"
    svm.write_text("# c\n1 1:1\n\n-1 2:1 # x\n1\n")
    assert [line_of_row(svm, r) for r in range(4)] == [2, 4, 5, None]
    csv = tmp_path / "a.csv"
    csv.write_text("a,b\n1,2\n# c\n3,4\n")
    assert [line_of_row(csv, r) for r in range(2)] == [2, 4]
    np.save(tmp_path / "a.npy", np.ones(3))
    assert line_of_row(tmp_path / "a.npy", 0) is None


def test_dims_that_disagree_name_the_files(hogwildc, tmp_path):
    # "dim 'example' is 4 from data 'X' (axis 0) but 3 from data 'y' (axis 0)": from which file?
    sp.save_npz(tmp_path / "X.npz", sp.random(4, 6, density=0.5, format="csr", random_state=1))
    np.save(tmp_path / "y.npy", np.array([1.0, -1.0, 1.0]))
    res = hogwildc("analyze", SPECS / "svm.hog", "--data", f"X={tmp_path / 'X.npz'}",
                   "--data", f"y={tmp_path / 'y.npy'}")
    assert res.returncode == 1
    line = one_error_line(res)
    assert f"'X' from file '{tmp_path / 'X.npz'}'" in line
    assert f"'y' from file '{tmp_path / 'y.npy'}'" in line

    (tmp_path / "prior.hog").write_text(PRIOR)
    (tmp_path / "r.csv").write_text(RATINGS)
    np.save(tmp_path / "p3.npy", np.zeros(3))        # item ids go up to 3: 3 items are too few
    res = hogwildc("analyze", tmp_path / "prior.hog", "--data", f"r={tmp_path / 'r.csv'}",
                   "--data", f"p={tmp_path / 'p3.npy'}")
    assert res.returncode == 1
    line = one_error_line(res)
    assert "dim 'item' is 4" in line and f"'p' from file '{tmp_path / 'p3.npy'}'" in line


# ------------------------------------------------------------------ sizes a file does not state


def test_a_triplet_file_is_widened_to_a_dim_another_file_fixes(hogwildc, tmp_path):
    # a per-item file of 6 items, ratings of items 0..3 only: it said "dim 'item' is 4 from
    # data 'r' (axis 1) but 6 from data 'p'", though a triplet file's width is its largest id + 1
    (tmp_path / "prior.hog").write_text(PRIOR)
    (tmp_path / "r.csv").write_text(RATINGS)
    np.save(tmp_path / "p.npy", np.linspace(0, 1, 6))
    res = hogwildc("train", tmp_path / "prior.hog", "--data", f"r={tmp_path / 'r.csv'}",
                   "--data", f"p={tmp_path / 'p.npy'}", "--threads", "1", "-q",
                   "--out", tmp_path / "m.npz")
    assert res.returncode == 0, res.stderr
    saved = np.load(tmp_path / "m.npz")
    assert saved["R"].shape == (6, 2) and saved["L"].shape == (3, 2)


def test_widen_to_agree_takes_sizes_from_dense_data_but_never_adds_terms():
    spec = check(PRIOR)
    data = {"r": sp.csr_matrix(np.ones((3, 4))), "p": np.zeros(6)}
    cli.widen_to_agree(spec, data)
    assert data["r"].shape == (3, 6) and data["r"].nnz == 12
    svm = check((SPECS / "svm.hog").read_text())
    data = {"X": sp.csr_matrix(np.ones((3, 4))), "y": np.ones(5)}
    cli.widen_to_agree(svm, data)
    assert data["X"].shape == (3, 4)                  # rows are terms: the error stays


# ------------------------------------------------------------------ --out


def test_out_naming_a_folder_saves_inside_it(hogwildc, tmp_path):
    # `--out models/` wrote models.npz beside the folder
    (tmp_path / "a.svm").write_text("1 1:1 3:2\n-1 3:3\n1 2:1\n")
    (tmp_path / "models").mkdir()
    for out in ("models/", "models"):
        res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={tmp_path / 'a.svm'}",
                       "--epochs", "1", "-q", "--out", out, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert "saved params to models/svm_params.npz" in res.stdout
        assert (tmp_path / "models" / "svm_params.npz").is_file()
        assert not (tmp_path / "models.npz").exists()


# ------------------------------------------------------------------ the CLI trains as Python does


def test_cli_params_equal_python_params(hogwildc, tmp_path, load_spec):
    rng = np.random.default_rng(0)
    X = sp.random(300, 40, density=0.1, format="csr", random_state=2)
    y = np.where(rng.random(300) < 0.5, -1.0, 1.0)
    from sklearn.datasets import dump_svmlight_file
    dump_svmlight_file(X, y, str(tmp_path / "t.svm"), zero_based=False)
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={tmp_path / 't.svm'}",
                   "--threads", "1", "--seed", "4", "--epochs", "3", "--order", "shuffle",
                   "--optimizer", "adagrad", "-q", "--out", tmp_path / "cli.npz")
    assert res.returncode == 0, res.stderr
    mod = load_spec("svm")
    t = mod.Trainer(threads=1, seed=4, epochs=3, order="shuffle", optimizer="adagrad")
    t.fit(**read_data(tmp_path / "t.svm", ["X", "y"]))
    assert np.array_equal(mod.Trainer.load(tmp_path / "cli.npz").params["w"], t.params["w"])


def test_validation_takes_the_scalar_data_of_data(hogwildc, tmp_path):
    """`--data mu=3.5` holds for the held-out ratings too: `--validation` needs only the
    ratings (it was refused with "missing data 'mu'", naming no option)."""
    (tmp_path / "train.csv").write_text("0,0,4\n0,1,3\n1,0,5\n1,1,2\n2,1,4\n")
    (tmp_path / "held.csv").write_text("0,0,5\n2,1,3\n")
    res = hogwildc("train", SPECS / "funksvd.hog", "--data", f"r={tmp_path / 'train.csv'}",
                   "--data", "mu=3.5", "--validation", f"r={tmp_path / 'held.csv'}",
                   "--epochs", "2", "-q", "--out", tmp_path / "p.npz")
    assert res.returncode == 0, res.stderr
    assert "validation" in res.stdout


def test_a_dim_made_huge_by_a_few_ids_is_warned_of(hogwildc, tmp_path):
    """One svmlight id of 2,000,000 sizes the feature dim (and w) as given: train warns,
    naming the file, the dim, its width and the ids in use, and trains all the same; a
    file of ordinary ids gets no warning."""
    path = tmp_path / "wide.svm"
    path.write_text("1 1:0.5 2000000:1\n-1 2:1\n1 1:1 3:0.5\n")
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={path}", "--epochs", "1", "-q",
                   "--out", tmp_path / "p.npz")
    assert res.returncode == 0, res.stderr
    assert f"warning: data 'X' (file '{path}') makes dim 'feature' 2,000,000 wide" in \
        res.stderr and "only 4 ids occur" in res.stderr
    path.write_text("1 1:0.5 4:1\n-1 2:1\n1 1:1 3:0.5\n")
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={path}", "--epochs", "1", "-q",
                   "--out", tmp_path / "p.npz")
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr
