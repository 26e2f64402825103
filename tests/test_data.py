"""hogwild_dsl.data: every format read, every malformed file a DataError naming file and line."""

import bz2
import gzip

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from hogwild_dsl.data import detect_format, parse_data_arg, read_data, svmlight_zero_based
from hogwild_dsl.errors import DataError, HogwildError


def write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(p)


def dense(m):
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def assert_canonical_csr(m):
    assert isinstance(m, sp.csr_matrix)
    assert m.dtype == np.float64
    c = m.copy()
    c.sum_duplicates()
    assert c.nnz == m.nnz
    for r in range(m.shape[0]):
        idx = m.indices[m.indptr[r]:m.indptr[r + 1]]
        assert np.all(np.diff(idx) > 0)


def data_error(path, names, line=None, *, match=None, **kw):
    """read_data must raise DataError naming the file (and the line, when given)."""
    with pytest.raises(DataError) as ei:
        read_data(path, names, **kw)
    msg = str(ei.value)
    assert path in msg
    assert "Traceback" not in msg and "\n" not in msg
    if line is not None:
        assert f"line {line}:" in msg
        assert ei.value.line == line
    if match is not None:
        assert match in msg, msg
    return msg


SVM = """\
# a comment line
+1 1:0.5 3:2.0  # trailing comment
-1 qid:7 2:1e-1 4:-3

1 4:1
"""


# ------------------------------------------------------------------------------------ svmlight


class TestSvmlight:
    def test_two_names(self, tmp_path):
        out = read_data(write(tmp_path, "train.svm", SVM), ["X", "y"])
        assert set(out) == {"X", "y"}
        X, y = out["X"], out["y"]
        assert_canonical_csr(X)
        assert X.shape == (3, 4)
        np.testing.assert_array_equal(dense(X), [[0.5, 0, 2, 0], [0, 0.1, 0, -3], [0, 0, 0, 1]])
        assert y.dtype == np.float64 and y.shape == (3,)
        np.testing.assert_array_equal(y, [1, -1, 1])

    def test_one_name(self, tmp_path):
        out = read_data(write(tmp_path, "train.libsvm", SVM), ["X"])
        assert list(out) == ["X"]
        assert out["X"].shape == (3, 4)

    def test_labels_as_given(self, tmp_path):
        out = read_data(write(tmp_path, "m.svmlight", "3 1:1\n0.5 2:1\n"), ["X", "y"])
        np.testing.assert_array_equal(out["y"], [3, 0.5])

    @pytest.mark.parametrize("name", ["a9a", "a9a.t", "rcv1_train.binary"])
    def test_sniffed_without_extension(self, tmp_path, name):
        path = write(tmp_path, name, SVM)
        assert detect_format(path) == "svmlight"
        out = read_data(path, ["X", "y"])
        assert out["X"].shape == (3, 4)
        np.testing.assert_array_equal(out["y"], [1, -1, 1])

    def test_txt_sniffed_as_svmlight(self, tmp_path):
        out = read_data(write(tmp_path, "d.txt", SVM), ["X", "y"])
        assert out["X"].shape == (3, 4)

    def test_unsorted_indices_are_read(self, tmp_path):
        out = read_data(write(tmp_path, "u.svm", "1 3:1 1:2\n-1 2:5\n"), ["X", "y"])
        assert_canonical_csr(out["X"])
        np.testing.assert_array_equal(dense(out["X"]), [[2, 0, 1], [0, 5, 0]])

    def test_row_without_features_and_crlf(self, tmp_path):
        out = read_data(write(tmp_path, "e.svm", "1\r\n-1 2:1\r\n"), ["X", "y"])
        np.testing.assert_array_equal(dense(out["X"]), [[0, 0], [0, 1]])

    @pytest.mark.parametrize("ext,opener", [(".gz", gzip.open), (".bz2", bz2.open)])
    def test_compressed(self, tmp_path, ext, opener):
        path = str(tmp_path / ("train.svm" + ext))
        with opener(path, "wb") as f:
            f.write(SVM.encode())
        out = read_data(path, ["X", "y"])
        assert out["X"].shape == (3, 4)

    def test_many_blocks(self, tmp_path, monkeypatch):
        # small blocks: rows split across block boundaries, errors keep their line numbers
        import hogwild_dsl.data as data

        monkeypatch.setattr(data, "_BLOCK", 64)
        rng = np.random.default_rng(0)
        lines = []
        for i in range(200):
            idx = np.sort(rng.choice(50, 5, replace=False)) + 1
            lines.append(f"{1 if i % 2 else -1} " + " ".join(f"{k}:{k * 0.5}" for k in idx))
        path = write(tmp_path, "many.svm", "\n".join(lines) + "\n")
        out = read_data(path, ["X", "y"])
        assert out["X"].shape[0] == 200 and out["X"].nnz == 1000
        assert_canonical_csr(out["X"])
        lines[150] = "1 3:oops"
        data_error(write(tmp_path, "bad.svm", "\n".join(lines) + "\n"), ["X", "y"], 151)

    def test_bad_token(self, tmp_path):
        msg = data_error(write(tmp_path, "b.svm", "1 1:1\n-1 2:1 3:abc\n"), ["X", "y"], 2)
        assert "3:abc" in msg

    def test_index_zero_means_zero_based(self, tmp_path):
        """scikit-learn's dump_svmlight_file writes zero-based indices by default: a file
        holding a feature index 0 is read as zero-based (its zero_based="auto"), one without
        as LIBSVM's one-based; given explicitly, one-based refuses the 0."""
        path = write(tmp_path, "z.svm", "1 1:1\n1 2:1 # 0:9 in a comment\n-1 0:1 2:5 qid:0\n")
        X = read_data(path, ["X", "y"])["X"]
        np.testing.assert_array_equal(dense(X), [[0, 1, 0], [0, 0, 1], [1, 0, 5]])
        one = read_data(write(tmp_path, "o.svm", "1 1:1 qid:0\n1 2:1 # 0:9\n"), ["X"])["X"]
        np.testing.assert_array_equal(dense(one), [[1, 0], [0, 1]])
        msg = data_error(path, ["X", "y"], 3, zero_based=False)
        assert "feature index 0 < 1" in msg
        msg = data_error(write(tmp_path, "n.svm", "1 1:1\n1 -2:1\n"), ["X", "y"], 2)
        assert "feature index -2 < 1" in msg

    def test_zero_based_is_decided_for_the_files_together(self, tmp_path):
        """A validation file that does not use feature 0 is read as its training file is."""
        train = write(tmp_path, "train.svm", "1 0:1 1:2\n-1 2:1\n")
        held = write(tmp_path, "held.svm", "1 1:2\n-1 2:1\n")
        assert svmlight_zero_based([train, held]) and not svmlight_zero_based([held])
        X = read_data(held, ["X"], zero_based=svmlight_zero_based([train, held]))["X"]
        np.testing.assert_array_equal(dense(X), [[0, 2, 0], [0, 0, 1]])

    def test_missing_label(self, tmp_path):
        msg = data_error(write(tmp_path, "m.svm", "1 1:1\n2:1 3:1\n"), ["X", "y"], 2)
        assert "label" in msg

    def test_non_numeric_label(self, tmp_path):
        msg = data_error(write(tmp_path, "n.svm", "1 1:1\n1 1:1\nspam 2:1\n"), ["X", "y"], 3)
        assert "label" in msg and "spam" in msg

    def test_truncated_last_line(self, tmp_path):
        msg = data_error(write(tmp_path, "t.svm", "1 1:1\n-1 2:1\n1 3:"), ["X", "y"], 3)
        assert "truncated" in msg

    def test_truncated_token(self, tmp_path):
        data_error(write(tmp_path, "t2.svm", "1 1:1\n-1 2:1 4"), ["X", "y"], 2,
                   match="INDEX:VALUE")

    def test_duplicate_feature(self, tmp_path):
        data_error(write(tmp_path, "d.svm", "1 1:1 1:2\n"), ["X", "y"], 1, match="twice")

    def test_non_integer_index(self, tmp_path):
        data_error(write(tmp_path, "f.svm", "1 1.5:1\n"), ["X", "y"], 1, match="integer")

    def test_non_utf8(self, tmp_path):
        msg = data_error(write(tmp_path, "u.svm", b"1 1:1\n-1 2:1 3:\xe9\n"), ["X", "y"], 2)
        assert "UTF-8" in msg

    def test_only_comments(self, tmp_path):
        data_error(write(tmp_path, "c.svm", "# nothing\n\n"), ["X", "y"], match="no data rows")

    def test_too_many_names(self, tmp_path):
        data_error(write(tmp_path, "x.svm", SVM), ["X", "y", "z"])


# ------------------------------------------------------------------------------------ other formats


def test_mtx_sparse(tmp_path):
    m = sp.random(5, 7, density=0.4, format="coo", random_state=1)
    path = str(tmp_path / "m.mtx")
    scipy.io.mmwrite(path, m)
    assert detect_format(path) == "mtx"
    out = read_data(path, ["W"])
    assert_canonical_csr(out["W"])
    np.testing.assert_allclose(dense(out["W"]), m.toarray())


def test_mtx_dense_array(tmp_path):
    a = np.arange(6, dtype=float).reshape(2, 3)
    path = str(tmp_path / "a.mtx")
    scipy.io.mmwrite(path, a)
    out = read_data(path, ["A"])
    assert isinstance(out["A"], np.ndarray) and out["A"].dtype == np.float64
    np.testing.assert_array_equal(out["A"], a)


def test_mtx_malformed_line(tmp_path):
    path = write(tmp_path, "bad.mtx", "%%MatrixMarket matrix coordinate real general\n"
                                      "3 3 2\n1 1 1.0\n2 x 3\n")
    data_error(path, ["W"], 4)


def test_mtx_sniffed(tmp_path):
    path = str(tmp_path / "graph")
    scipy.io.mmwrite(path + ".mtx", sp.eye(3, format="coo"))
    (tmp_path / "graph.mtx").rename(path)
    assert detect_format(path) == "mtx"
    np.testing.assert_array_equal(dense(read_data(path, ["W"])["W"]), np.eye(3))


def test_npz_sparse(tmp_path):
    m = sp.random(4, 6, density=0.5, format="csc", random_state=2)
    path = str(tmp_path / "s.npz")
    sp.save_npz(path, m)
    out = read_data(path, ["X"])
    assert_canonical_csr(out["X"])
    np.testing.assert_allclose(dense(out["X"]), m.toarray())
    data_error(path, ["X", "y"], match="one scipy sparse matrix")


def test_npz_arrays_by_name(tmp_path):
    path = str(tmp_path / "a.npz")
    np.savez(path, X=np.eye(2), y=np.array([1, -1]))
    out = read_data(path, ["y", "X"])
    np.testing.assert_array_equal(out["y"], [1, -1])
    assert out["y"].dtype == np.float64
    np.testing.assert_array_equal(out["X"], np.eye(2))


def test_npz_arrays_in_order(tmp_path):
    path = str(tmp_path / "b.npz")
    np.savez(path, np.ones((2, 3)), np.arange(2))
    out = read_data(path, ["A", "b"])
    assert out["A"].shape == (2, 3)
    np.testing.assert_array_equal(out["b"], [0, 1])


def test_npz_mismatch_lists_contents(tmp_path):
    path = str(tmp_path / "c.npz")
    np.savez(path, X=np.eye(2), y=np.ones(2))
    msg = data_error(path, ["A"])
    assert "X" in msg and "y" in msg and "(2, 2)" in msg


def test_npy(tmp_path):
    path = str(tmp_path / "v.npy")
    np.save(path, np.arange(4, dtype=np.int32))
    out = read_data(path, ["v"])
    assert out["v"].dtype == np.float64
    np.testing.assert_array_equal(out["v"], [0, 1, 2, 3])
    path0 = str(tmp_path / "s.npy")
    np.save(path0, np.float64(2.5))
    assert read_data(path0, ["s"])["s"].shape == ()


def test_npy_object_refused(tmp_path):
    path = str(tmp_path / "o.npy")
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    data_error(path, ["v"], match="object")


def test_npy_3d_refused(tmp_path):
    path = str(tmp_path / "t.npy")
    np.save(path, np.zeros((2, 2, 2)))
    data_error(path, ["v"], match="dimensions")


def test_npy_sniffed(tmp_path):
    path = str(tmp_path / "weights")
    with open(path, "wb") as f:
        np.save(f, np.ones(3))
    assert detect_format(path) == "npy"
    np.testing.assert_array_equal(read_data(path, ["w"])["w"], np.ones(3))


# ------------------------------------------------------------------------------------ CSV


def test_csv_triplets_header_and_timestamp(tmp_path):
    path = write(tmp_path, "ratings.csv",
                 "user,item,rating,timestamp\n0,2,5,978300760\n3,0,3.5,978302109\n"
                 "0,0,1,978301968\n")
    out = read_data(path, ["r"], kind="sparse")
    r = out["r"]
    assert_canonical_csr(r)
    assert r.shape == (4, 3)          # ids used as given: largest id + 1
    expect = np.zeros((4, 3))
    expect[0, 2], expect[3, 0], expect[0, 0] = 5, 3.5, 1
    np.testing.assert_array_equal(dense(r), expect)


def test_csv_triplets_keep_explicit_zero(tmp_path):
    r = read_data(write(tmp_path, "z.csv", "0,0,0\n1,1,2\n"), ["r"], kind="sparse")["r"]
    assert r.nnz == 2


def test_tsv_and_whitespace_triplets(tmp_path):
    r = read_data(write(tmp_path, "r.tsv", "u\tv\tr\n1\t1\t2\n"), ["r"], kind="sparse")["r"]
    assert r.shape == (2, 2) and r[1, 1] == 2
    r = read_data(write(tmp_path, "r.txt", "1 1 2\n0 3 4\n"), ["r"], kind={"r": "sparse"})["r"]
    assert r.shape == (2, 4) and r[0, 3] == 4


def test_csv_dense_with_header(tmp_path):
    path = write(tmp_path, "table.csv", "a,b,c\n1,2,3\n4,5,6.5\n")
    out = read_data(path, ["A"])
    assert isinstance(out["A"], np.ndarray) and out["A"].dtype == np.float64
    np.testing.assert_array_equal(out["A"], [[1, 2, 3], [4, 5, 6.5]])
    # a dense table is the default, even when it looks like triplets
    assert isinstance(read_data(write(tmp_path, "t.csv", "0,1,2\n"), ["A"])["A"], np.ndarray)


def test_csv_single_column_is_1d(tmp_path):
    out = read_data(write(tmp_path, "y.csv", "label\n1\n-1\n1\n"), ["y"])
    np.testing.assert_array_equal(out["y"], [1, -1, 1])


def test_csv_sniffed_delimiter_and_bom(tmp_path):
    out = read_data(write(tmp_path, "s.csv", "\ufeffa;b\n1;2\n"), ["A"])
    np.testing.assert_array_equal(out["A"], [[1, 2]])


def test_kind_conversions(tmp_path):
    path = str(tmp_path / "d.npy")
    np.save(path, np.eye(3))
    assert sp.issparse(read_data(path, ["W"], kind="sparse")["W"])
    p2 = str(tmp_path / "s.npz")
    sp.save_npz(p2, sp.eye(3, format="csr"))
    assert isinstance(read_data(p2, ["W"], kind="dense")["W"], np.ndarray)


def test_csv_ragged(tmp_path):
    msg = data_error(write(tmp_path, "r.csv", "a,b,c\n1,2,3\n4,5,6\n7,8\n"), ["A"], 4)
    assert "columns" in msg


def test_csv_non_numeric_cell(tmp_path):
    msg = data_error(write(tmp_path, "n.csv", "a,b\n1,2\n3,x7\n"), ["A"], 3)
    assert "x7" in msg


def test_csv_empty_cell(tmp_path):
    data_error(write(tmp_path, "e.csv", "1,2\n3,\n"), ["A"], 2, match="empty cell")


def test_csv_triplet_negative_id(tmp_path):
    msg = data_error(write(tmp_path, "neg.csv", "u,v,r\n0,1,2\n-1,1,2\n"), ["r"], 3,
                     kind="sparse")
    assert "negative" in msg


def test_csv_triplet_non_integer_id(tmp_path):
    msg = data_error(write(tmp_path, "f.csv", "0,1,2\n1,2.5,2\n"), ["r"], 2, kind="sparse")
    assert "integer" in msg


def test_csv_triplet_too_few_columns(tmp_path):
    data_error(write(tmp_path, "two.csv", "0,1\n1,2\n"), ["r"], 1, kind="sparse",
               match="u,v,value")


def test_csv_non_utf8(tmp_path):
    msg = data_error(write(tmp_path, "l.csv", b"a,b\n1,2\n3,\xff4\n"), ["A"], 3)
    assert "UTF-8" in msg


def test_csv_header_only(tmp_path):
    data_error(write(tmp_path, "h.csv", "a,b,c\n"), ["A"], match="no data rows")


# ------------------------------------------------------------------------------------ files


def test_empty_file(tmp_path):
    for name in ["e.svm", "e.csv", "e.npy", "noext"]:
        data_error(write(tmp_path, name, b""), ["X"], match="empty")


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.svm")
    data_error(path, ["X", "y"], match="no such file")


def test_directory(tmp_path):
    path = str(tmp_path)
    data_error(path, ["X"], match="directory")


def test_garbage_npz(tmp_path):
    data_error(write(tmp_path, "g.npz", b"not a zip at all"), ["X"])


def test_errors_are_hogwild_errors(tmp_path):
    with pytest.raises(HogwildError):
        read_data(str(tmp_path / "none.csv"), ["A"])


def test_bad_kind(tmp_path):
    with pytest.raises(DataError):
        read_data(write(tmp_path, "k.csv", "1\n"), ["A"], kind="sparce")


# ------------------------------------------------------------------------------------ --data


@pytest.mark.parametrize("arg,expect", [
    ("X,y=train.svm", (["X", "y"], "train.svm")),
    ("r=ratings.csv", (["r"], "ratings.csv")),
    (" X , y = dir/a=b.svm", (["X", "y"], "dir/a=b.svm")),
])
def test_parse_data_arg(arg, expect):
    assert parse_data_arg(arg) == expect


@pytest.mark.parametrize("arg", ["train.svm", "=train.svm", "X,=f", "X=", "1X=f", "X,X=f",
                                 "X y=f"])
def test_parse_data_arg_malformed(arg):
    with pytest.raises(DataError):
        parse_data_arg(arg)


def test_compressed_csv_triplets(tmp_path):
    path = str(tmp_path / "r.csv.gz")
    with gzip.open(path, "wt") as f:
        f.write("u,v,r\n0,1,2\n3,2,1\n")
    r = read_data(path, ["r"], kind="sparse")["r"]
    assert r.shape == (4, 3) and r[3, 2] == 1
    with gzip.open(path, "wt") as f:
        f.write("u,v,r\n0,1,2\n3,2\n")
    data_error(path, ["r"], 3, kind="sparse")


def test_mtx_and_npz_keep_an_entry_stored_twice(tmp_path):
    """A Matrix Market file (coordinate format allows an entry twice) and an .npz of a COO
    with a repeated (u, v) keep both entries, in the file's order, as triplet CSVs do and as
    fit does with the same COO: two observations, two terms (the readers used to sum them)."""
    mtx = write(tmp_path, "r.mtx", "%%MatrixMarket matrix coordinate real general\n"
                "3 2 3\n1 2 4\n3 1 1\n1 2 2\n")
    coo = sp.coo_matrix(([4.0, 1.0, 2.0], ([0, 2, 0], [1, 0, 1])), shape=(3, 2))
    npz = tmp_path / "r.npz"
    sp.save_npz(npz, coo, compressed=False)
    for path in (mtx, npz):
        r = read_data(path, ["r"])["r"]
        assert r.nnz == 3 and r.shape == (3, 2), path
        assert list(r.indices[r.indptr[0]:r.indptr[1]]) == [1, 1]
        assert list(r.data[r.indptr[0]:r.indptr[1]]) == [4.0, 2.0]
    import hogwild_dsl
    spec = ("model pairs_twice_mtx\ndim user, item\ndata r[user, item] : sparse\n"
            "param b[user] = 0\nfor (u, v) in r:\n    loss (r[u, v] - b[u])^2\n")
    t = hogwild_dsl.load(text=spec).Trainer(threads=1, epochs=0)
    t.fit(r=coo)
    assert t.objective(r=read_data(mtx, ["r"])["r"]) == t.objective(r=coo) == \
        pytest.approx((16 + 1 + 4) / 3)


def test_movielens_double_colon_files_read_as_triplets(tmp_path):
    """MovieLens 1M/10M's ratings.dat (user::item::rating::timestamp): '::' is sniffed as the
    delimiter (its first line was taken for a header, and the error pointed at line 2 with
    '1 column'), later columns ignored, a bad cell named at its line."""
    path = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"
                                          "2::1193::4::978300275\n")
    r = read_data(path, ["r"], kind="sparse")["r"]
    assert r.shape == (3, 1194) and r.nnz == 3
    assert (r[1, 1193], r[1, 661], r[2, 1193]) == (5.0, 3.0, 4.0)
    assert read_data(path, ["t"])["t"].shape == (3, 4)
    bad = write(tmp_path, "bad.dat", "1::1193::5::978300760\n1::x::3::978302109\n")
    with pytest.raises(DataError, match=r"line 2.*'x'"):
        read_data(bad, ["r"], kind="sparse")


def test_csv_triplets_keep_a_pair_given_twice(tmp_path):
    """Two lines with one (u, v) are two observations, two terms (LANGUAGE.md: the trainer
    never merges two entries stored at the same (u, v)); the reader used to refuse them."""
    path = write(tmp_path, "r.csv", "0,1,4\n2,0,1\n0,1,2\n")
    r = read_data(path, ["r"], kind="sparse")["r"]
    assert r.nnz == 3 and r.shape == (3, 2)
    assert list(r.indices[r.indptr[0]:r.indptr[1]]) == [1, 1]
    assert list(r.data[r.indptr[0]:r.indptr[1]]) == [4.0, 2.0]      # in the file's order
    import hogwild_dsl
    spec = ("model pairs_twice\ndim user, item\ndata r[user, item] : sparse\n"
            "param b[user] = 0\nfor (u, v) in r:\n    loss (r[u, v] - b[u])^2\n")
    t = hogwild_dsl.load(text=spec).Trainer(threads=1, epochs=0)
    t.fit(r=r)
    assert t.objective(r=r) == pytest.approx((16 + 1 + 4) / 3)
