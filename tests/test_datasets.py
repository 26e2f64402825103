"""hogwild_dsl.datasets: shapes, dtypes, determinism and the statistics each generator aims at."""

import numpy as np
import pytest
import scipy.sparse as sp

from hogwild_dsl import datasets as D
from hogwild_dsl.errors import DataError


def canonical(m):
    assert isinstance(m, sp.csr_matrix) and m.dtype == np.float64
    c = m.copy()
    c.sum_duplicates()
    assert c.nnz == m.nnz                      # no explicit duplicates
    row = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    same_row = row[1:] == row[:-1]
    assert np.all(np.diff(m.indices)[same_row] > 0)   # sorted, unique within a row


def same_csr(a, b):
    return (a.shape == b.shape and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data))


def symmetric_zero_diagonal(w):
    canonical(w)
    assert w.shape[0] == w.shape[1]
    assert abs(w - w.T).max() == 0
    assert np.all(w.diagonal() == 0)
    assert np.all(w.data > 0)


# ------------------------------------------------------------------------------------ rcv1


@pytest.fixture(scope="module")
def rcv1():
    return D.rcv1_like(n_rows=20_000, n_features=3_000, nnz_per_row=40, noise=0.1, seed=3,
                       return_truth=True)


def test_rcv1_shapes_and_types(rcv1):
    X, y, _ = rcv1
    assert X.shape == (20_000, 3_000)
    canonical(X)
    assert y.dtype == np.float64 and y.shape == (20_000,)
    assert set(np.unique(y)) == {-1.0, 1.0}


def test_rcv1_unit_rows_and_positive(rcv1):
    X, _, _ = rcv1
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms, 1.0, atol=1e-12)
    assert np.all(X.data > 0)


def test_rcv1_row_length_and_popularity(rcv1):
    X, _, _ = rcv1
    lengths = np.diff(X.indptr)
    assert 36 <= lengths.mean() <= 44            # nnz_per_row=40 on average
    assert lengths.min() >= 1 and lengths.std() > 5
    df = np.bincount(X.indices, minlength=X.shape[1])
    assert df.max() > 0.5 * X.shape[0]           # a feature in most rows (Delta near 1)
    assert df.max() > 50 * np.median(df)         # power law: the head dwarfs the median


def test_rcv1_label_noise_share(rcv1):
    X, y, truth = rcv1
    assert np.mean(y != truth["clean_y"]) == pytest.approx(0.1, abs=1e-4)
    # the clean labels are the separator's side (up to the tie-breaking jitter)
    side = np.where(X @ truth["w"] + truth["b"] > 0, 1.0, -1.0)
    assert np.mean(side == truth["clean_y"]) > 0.99
    assert 0.4 < np.mean(y > 0) < 0.6


def test_rcv1_deterministic():
    a = D.rcv1_like(n_rows=500, n_features=200, nnz_per_row=10, seed=7)
    b = D.rcv1_like(n_rows=500, n_features=200, nnz_per_row=10, seed=7)
    c = D.rcv1_like(n_rows=500, n_features=200, nnz_per_row=10, seed=8)
    assert same_csr(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not same_csr(a[0], c[0])


def test_rcv1_small_and_dense_extremes():
    X, y = D.rcv1_like(n_rows=50, n_features=5, nnz_per_row=5, seed=0)
    canonical(X)
    assert X.shape == (50, 5) and np.diff(X.indptr).max() <= 5
    with pytest.raises(DataError):
        D.rcv1_like(n_rows=10, n_features=5, nnz_per_row=6)


# ------------------------------------------------------------------------------------ netflix


@pytest.fixture(scope="module")
def netflix():
    return D.netflix_like(n_users=5_000, n_items=800, n_ratings=100_000, rank=5,
                          test_frac=0.1, seed=1)


def test_netflix_shapes(netflix):
    train, test = netflix
    for m in (train, test):
        canonical(m)
        assert m.shape == (5_000, 800)
    total = train.nnz + test.nnz
    assert 0.97 * 100_000 <= total <= 100_000
    assert test.nnz == pytest.approx(0.1 * total, abs=1)


def test_netflix_values(netflix):
    train, _ = netflix
    assert train.data.min() >= 1 and train.data.max() <= 5
    np.testing.assert_array_equal(train.data, np.round(train.data))
    assert 3.0 < train.data.mean() < 4.2


def test_netflix_no_duplicates_and_disjoint(netflix):
    train, test = netflix
    keys = lambda m: (np.repeat(np.arange(m.shape[0]), np.diff(m.indptr)) * m.shape[1]
                      + m.indices)
    ktr, kte = keys(train), keys(test)
    assert len(np.unique(ktr)) == len(ktr)
    assert len(np.intersect1d(ktr, kte)) == 0


def test_netflix_power_law_degrees(netflix):
    train, test = netflix
    full = train + test
    users = np.diff(full.indptr)
    items = np.bincount(full.indices, minlength=full.shape[1])
    assert users.max() > 10 * np.median(users)
    assert items.max() > 10 * np.median(items)


def test_netflix_deterministic_and_truth():
    a = D.netflix_like(n_users=300, n_items=50, n_ratings=2_000, seed=4)
    b = D.netflix_like(n_users=300, n_items=50, n_ratings=2_000, seed=4)
    assert same_csr(a[0], b[0]) and same_csr(a[1], b[1])
    tr, te, truth = D.netflix_like(n_users=300, n_items=50, n_ratings=2_000, seed=4,
                                   discrete=False, return_truth=True)
    assert truth["U"].shape == (300, 20) and truth["V"].shape == (50, 20)
    assert not np.array_equal(tr.data, np.round(tr.data))


def test_netflix_nearly_full_matrix():
    tr, te = D.netflix_like(n_users=30, n_items=20, n_ratings=500, test_frac=0.0, seed=0)
    assert te.nnz == 0 and 450 <= tr.nnz <= 500
    canonical(tr)


# ------------------------------------------------------------------------------------ dblife


def test_dblife_graph():
    w, c, labels, seeds = D.dblife_like(n_nodes=4_000, n_labels=8, avg_degree=6, seed=2,
                                        return_truth=True)
    symmetric_zero_diagonal(w)
    assert w.shape == (4_000, 4_000)
    assert c.shape == (4_000, 8) and c.dtype == np.float64
    degrees = np.diff(w.indptr)
    assert degrees.mean() == pytest.approx(6, rel=0.05)
    assert degrees.max() > 10 * np.median(degrees)   # heavy-tailed
    coo = sp.triu(w).tocoo()
    assert np.mean(labels[coo.row] == labels[coo.col]) > 0.6   # planted communities
    assert set(np.unique(labels)) == set(range(8))
    # few informative seeds: their cheapest label is the planted one; the rest carry only
    # weak evidence (signal 0.05 under noise 0.1): right more often than chance, not always
    assert 0 < len(seeds) <= 0.06 * 4_000
    np.testing.assert_array_equal(np.argmin(c[seeds], axis=1), labels[seeds])
    rest = np.setdiff1d(np.arange(4_000), seeds)
    spread = c[rest].max(axis=1) - c[rest].min(axis=1)
    assert spread.max() <= 0.1 + 0.05 + 1e-12
    alone = np.mean(np.argmin(c[rest], axis=1) == labels[rest])
    assert 0.3 < alone < 0.9
    # edge weights are small beside the costs, so the cut does not swamp the evidence
    assert 0.005 < np.median(w.data) < 0.05
    with pytest.raises(DataError):
        D.dblife_like(n_nodes=50, edge_weight=0)


def test_dblife_deterministic():
    a = D.dblife_like(n_nodes=500, seed=5)
    b = D.dblife_like(n_nodes=500, seed=5)
    assert same_csr(a[0], b[0]) and np.array_equal(a[1], b[1])


# ------------------------------------------------------------------------------------ abdomen


def test_abdomen_2d():
    w, c, labels, image = D.abdomen_like(height=40, width=30, n_labels=4, seed=1,
                                         return_truth=True)
    n = 40 * 30
    symmetric_zero_diagonal(w)
    assert w.shape == (n, n) and c.shape == (n, 4)
    degrees = np.diff(w.indptr)
    assert degrees.max() == 4 and degrees.min() == 2       # corners have 2 neighbours
    assert w.nnz == 2 * (39 * 30 + 40 * 29)
    # pixel (y, x) is y * width + x: its right neighbour is +1, the one below +width
    assert w[0, 1] > 0 and w[0, 30] > 0 and w[0, 31] == 0
    assert len(np.unique(labels)) >= 3
    # piecewise constant: most grid edges join pixels of the same region
    coo = w.tocoo()
    assert np.mean(labels[coo.row] == labels[coo.col]) > 0.8
    # the data term prefers the true label more often than chance
    assert np.mean(np.argmin(c, axis=1) == labels) > 0.4


def test_abdomen_3d_and_neighbourhoods():
    w, c = D.abdomen_like(height=10, width=9, depth=6, n_labels=3, seed=0)
    symmetric_zero_diagonal(w)
    assert w.shape == (540, 540) and np.diff(w.indptr).max() == 6
    w26, _ = D.abdomen_like(height=10, width=9, depth=6, n_labels=3, neighbours=26, seed=0)
    assert np.diff(w26.indptr).max() == 26
    w8, _ = D.abdomen_like(height=10, width=9, neighbours=8, seed=0)
    assert np.diff(w8.indptr).max() == 8
    with pytest.raises(DataError):
        D.abdomen_like(height=10, width=9, depth=1, neighbours=6)


def test_abdomen_deterministic():
    a = D.abdomen_like(height=16, width=16, seed=3)
    b = D.abdomen_like(height=16, width=16, seed=3)
    assert same_csr(a[0], b[0]) and np.array_equal(a[1], b[1])


# ------------------------------------------------------------------------------------ split


def test_train_test_split_rows():
    X, y = D.rcv1_like(n_rows=1_000, n_features=100, nnz_per_row=8, seed=0)
    Xtr, Xte, ytr, yte = D.train_test_split_rows(X, y, 0.2, seed=1)
    assert Xtr.shape == (800, 100) and Xte.shape == (200, 100)
    assert len(ytr) == 800 and len(yte) == 200
    assert Xtr.nnz + Xte.nnz == X.nnz
    again = D.train_test_split_rows(X, y, 0.2, seed=1)
    assert same_csr(Xte, again[1]) and np.array_equal(yte, again[3])
    Atr, Ate, _, _ = D.train_test_split_rows(np.arange(10.0)[:, None], None, 0.3, seed=0)
    assert sorted(np.concatenate([Atr.ravel(), Ate.ravel()])) == list(range(10))
    with pytest.raises(DataError):
        D.train_test_split_rows(X, y[:5], 0.2)
