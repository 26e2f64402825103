"""hogwild_dsl.analyze on the newer forms (issue 15): index data used as an index, scalar data,
per-observation weights, vector reductions, and sampled indices (counted as analyze.py's
docstring says: Omega the largest size, Delta the expected share, rho a union bound)."""
import itertools
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from hogwild_dsl import cli
from hogwild_dsl.analyze import analyze, format_report
from hogwild_dsl.check import check
from hogwild_dsl.errors import DataError, HogwildError

SPECS = Path(__file__).resolve().parent.parent / "specs"


def spec_of(name, consts=None):
    return check((SPECS / f"{name}.hog").read_text(), consts)


def brute(term_sets):
    """Omega, Delta, rho and the mean share, straight from the definitions."""
    n = len(term_sets)
    touching = {}
    for e in term_sets:
        for c in e:
            touching[c] = touching.get(c, 0) + 1
    meets = [sum(1 for f in term_sets if f is e or (e & f)) for e in term_sets]
    return (max(len(e) for e in term_sets), max(touching.values()) / n, max(meets) / n,
            sum(meets) / n / n)


def assert_matches(stats, term_sets):
    omega, delta, rho, rho_mean = brute(term_sets)
    assert stats["n_terms"] == len(term_sets)
    assert (stats["Omega"], stats["Delta"], stats["rho"], stats["rho_mean"]) == \
        (omega, pytest.approx(delta), pytest.approx(rho), pytest.approx(rho_mean))


def rows_of(X):
    return [[int(j) for j in X.indices[X.indptr[i]:X.indptr[i + 1]]] for i in range(X.shape[0])]


X4 = sp.csr_matrix(np.array([[1, 0, 2, 0],
                             [0, 0, 3, 0],
                             [0, 1, 0, 0],
                             [1, 0, 0, 1]], float))


# ------------------------------------------------------------------ index data as an index


PICK = """
model pick
dim example, feature, class
data X[example, feature] : sparse
data y[example] : index(class)
param W[feature, class] = 0
for i in example:
    loss (sum(j in X[i]: X[i, j] * W[j, y[i]]) - 1)^2
"""


def test_index_data_selects_the_column_of_the_label():
    # terms touch W[j, y[i]] for j in X[i]: {(0,0),(2,0)} {(2,0)} {(1,1)} {(0,1),(3,1)}
    stats = analyze(check(PICK), {"X": X4, "y": np.array([0, 0, 1, 1])})
    assert stats["Omega"] == 2
    assert stats["Delta"] == pytest.approx(2 / 4)          # W[2, 0] in terms 0 and 1
    assert stats["rho"] == pytest.approx(2 / 4)            # term 0 meets itself and term 1
    assert stats["busiest"] == "W[2, 0]"
    assert stats["n_coordinates"] == 4 * 2                 # class sized by y: largest + 1
    assert stats["n_touched"] == 5
    # the last term's label moves it onto W[0, 0], which term 0 touches: it now meets 3 of 4
    stats = analyze(check(PICK), {"X": X4, "y": np.array([0, 0, 1, 0])})
    assert stats["rho"] == pytest.approx(3 / 4)
    assert stats["Delta"] == pytest.approx(2 / 4)


def test_softmax_by_hand():
    # z = X[i] W + b over class: every term touches W[j, :] for j in X[i] and all of b
    y = np.array([0, 2, 1, 0])
    stats = analyze(spec_of("softmax"), {"X": X4, "y": y})
    assert stats["n_terms"] == 4
    assert stats["n_coordinates"] == 4 * 3 + 3
    assert stats["Omega"] == 2 * 3 + 3
    assert stats["Delta"] == 1.0 and stats["rho"] == 1.0   # the bias b is in every term
    assert stats["busiest"].startswith("b[")
    # two classes only (y's largest value + 1)
    stats = analyze(spec_of("softmax"), {"X": X4, "y": np.array([0, 1, 1, 0])})
    assert stats["n_coordinates"] == 4 * 2 + 2 and stats["Omega"] == 2 * 2 + 2


SOFTMAX_NO_BIAS = """
model softmax_nb
dim example, feature, class
data X[example, feature] : sparse
data y[example] : index(class)
param W[feature, class] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j])
    loss max(z) + logsumexp(z) - z[y[i]]
    reg l2(1e-4) on W[X[i]]
    predict softmax(z)
"""


@pytest.mark.parametrize("seed", [0, 1])
def test_softmax_without_bias_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix((rng.random((30, 12)) < 0.15) * 1.0)
    y = rng.integers(0, 4, size=30)
    y[0] = 3
    stats = analyze(check(SOFTMAX_NO_BIAS), {"X": X, "y": y})
    sets = [{("W", j, k) for j in row for k in range(4)} for row in rows_of(X)]
    assert_matches(stats, sets)


TRIPLES = """
model triples
dim user, item, triple
const k = 2
data tu[triple] : index(user)
data ti[triple] : index(item)
data tj[triple] : index(item)
param P[user, k] ~ normal(0, 0.1)
param Q[item, k] ~ normal(0, 0.1)
for t in triple:
    loss -log(sigmoid(dot(P[tu[t]], Q[ti[t]] - Q[tj[t]])))
    reg l2(1e-4) on P[tu[t]], Q[ti[t]], Q[tj[t]]
"""


def test_triples_by_hand():
    # (user, item, item): (0,0,2) (0,1,2) (1,1,0) (2,3,3)
    data = {"tu": np.array([0, 0, 1, 2]), "ti": np.array([0, 1, 1, 3]),
            "tj": np.array([2, 2, 0, 3])}
    stats = analyze(check(TRIPLES), data)
    assert stats["n_terms"] == 4
    assert stats["n_coordinates"] == (3 + 4) * 2     # user: 3, item: 4 (largest + 1)
    assert stats["Omega"] == 3 * 2                   # P row, two Q rows
    assert stats["Delta"] == pytest.approx(2 / 4)    # P[0], Q[0], Q[1], Q[2]: two terms each
    assert stats["rho"] == pytest.approx(3 / 4)      # (0,0,2): itself, (0,1,2), (1,1,0)
    # the last triple touches P[2] and Q[3] (twice): it meets only itself
    assert stats["rho_mean"] == pytest.approx((3 + 3 + 3 + 1) / 16)


GENRE = """
model genre
dim user, item, genre
const rank = 2
data r[user, item] : sparse
data c[user, item] : sparse
data f[item] : index(genre)
data mu : real
param L[user, rank] = 0
param R[item, rank] = 0
param g[genre] = 0
for (u, v) in r:
    loss c[u, v] * (mu + dot(L[u], R[v]) + g[f[v]] - r[u, v])^2
"""


@pytest.mark.parametrize("seed", [0, 1])
def test_index_data_at_an_entry_scalar_data_and_weights(seed):
    rng = np.random.default_rng(seed)
    r = sp.csr_matrix((rng.random((10, 8)) < 0.3) * 1.0)
    f = rng.integers(0, 3, size=8)
    data = {"r": r, "c": r.copy(), "f": f, "mu": 3.5}
    stats = analyze(check(GENRE), data)
    coo = r.tocoo()
    sets = [{("L", int(u), k) for k in range(2)} | {("R", int(v), k) for k in range(2)} |
            {("g", int(f[v]))} for u, v in zip(coo.row, coo.col)]
    assert_matches(stats, sets)
    # the scalar and the weights touch nothing: the same without them
    assert analyze(check(GENRE), {"r": r, "f": f}) == stats


def test_funksvd_scalar_mean_touches_nothing():
    r = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0.]]))
    stats = analyze(spec_of("funksvd", {"rank": 2}), {"r": r, "mu": 2.0})
    # terms (0,0) (0,2) (1,1): bu[u], bi[v], P[u, :], Q[v, :]
    assert stats["Omega"] == 1 + 1 + 2 + 2
    assert stats["Delta"] == pytest.approx(2 / 3)
    assert stats["rho"] == pytest.approx(2 / 3)
    with pytest.raises(DataError, match="'mu'"):
        analyze(spec_of("funksvd", {"rank": 2}), {"r": r, "mu": np.ones(3)})


def test_index_data_errors():
    with pytest.raises(DataError, match="'y'"):
        analyze(check(PICK), {"X": X4})
    with pytest.raises(DataError, match="integer"):
        analyze(check(PICK), {"X": X4, "y": np.array([0, 0.5, 1, 1])})
    with pytest.raises(DataError, match="'y'"):
        analyze(check(PICK), {"X": X4, "y": np.array([0, -1, 1, 1])})
    with pytest.raises(DataError, match="'y'"):
        analyze(check(PICK), {"X": X4, "y": np.array([0, 1, 1])})      # 3 labels, 4 rows
    with_const = PICK.replace("dim example, feature, class",
                              "dim example, feature\nconst class = 2")
    with pytest.raises(DataError, match="out of range"):
        analyze(check(with_const), {"X": X4, "y": np.array([0, 1, 2, 1])})
    stats = analyze(check(with_const), {"X": X4, "y": np.array([0, 1, 1, 1])})
    assert stats["n_coordinates"] == 4 * 2


# ------------------------------------------------------------------ sampled indices


def fixed_slices(seen: sp.csr_matrix):
    """bpr's terms without their draw: per entry (user, item) the slices {("P", u), ("Q", i)}
    (each k coordinates); the draw j picks ("Q", j)."""
    coo = seen.tocoo()
    return [{("P", int(u)), ("Q", int(i))} for u, i in zip(coo.row, coo.col)]


def documented(fixed, p, k):
    """Omega, Delta, rho, rho_mean for one draw Q[j], j ~ p, per term, straight from the
    docstring's definitions (loops over terms, slices and values)."""
    n, items = len(fixed), len(p)
    omega = max(len(e) + 1 for e in fixed) * k
    slices = set().union(*fixed) | {("Q", v) for v in range(items)}
    touches = {c: sum(1.0 if c in e else (p[c[1]] if c[0] == "Q" else 0.0) for e in fixed)
               for c in slices}
    delta = max(touches.values()) / n
    shares = []
    for e in fixed:
        meet = sum(1 for f in fixed if e & f)
        for f in fixed:
            meet += sum(p[v] for v in range(items) if ("Q", v) in f)     # e's draw on f
            meet += sum(p[v] for v in range(items) if ("Q", v) in e)     # f's draw on e
            meet += sum(p[v] * p[v] for v in range(items))               # the same draw
        shares.append(min(meet, n) / n)
    return omega, delta, max(shares), sum(shares) / n


def true_expected_shares(fixed, p):
    """The exact expected share of terms meeting each term, over independent draws."""
    n, items = len(fixed), len(p)
    out = []
    for a, e in enumerate(fixed):
        total = 0.0
        for b, f in enumerate(fixed):
            if a == b:
                total += 1.0
                continue
            for v, w in itertools.product(range(items), repeat=2):
                if (e | {("Q", v)}) & (f | {("Q", w)}):
                    total += p[v] * p[w]
        out.append(total / n)
    return np.array(out)


def test_bpr_by_hand():
    # entries (user, item): (0,0) (0,1) (1,1) (2,2) (3,3), 20 items, one uniform draw j
    seen = sp.csr_matrix((np.ones(5), ([0, 0, 1, 2, 3], [0, 1, 1, 2, 3])), shape=(4, 20))
    stats = analyze(spec_of("bpr", {"k": 2}), {"seen": seen})
    assert stats["n_terms"] == 5
    assert stats["Omega"] == 3 * 2                      # P[u], Q[i], Q[j]
    # Q[1, :]: two terms touch it always, each of the other three with chance 1/20
    assert stats["Delta"] == pytest.approx((2 + 3 / 20) / 5)
    assert stats["busiest"] == "Q[1, :]"
    # term (0,1) meets (0,0) (0,1) (1,1) for sure; then + 3/20 (its draw on another term's
    # item, another term's draw on its item, both draws on one item)
    assert stats["rho"] == pytest.approx(3 / 5 + 3 / 20)
    assert stats["rho_mean"] == pytest.approx((2 + 3 + 2 + 1 + 1) / 25 + 3 / 20)
    assert stats["n_touched"] == (4 + 20) * 2           # a draw reaches every item
    assert stats["draws"] == ["sample j in item (uniform): Q[j]"]
    text = format_report(stats, threads=4)
    assert "sample j in item (uniform)" in text and "union bound" in text


BPR_POP = (SPECS / "bpr.hog").read_text().replace(
    "data seen[user, item] : sparse", "data seen[user, item] : sparse\ndata pop[item] : real"
).replace("sample j in item", "sample j in item ~ pop")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_counting_as_documented(seed):
    rng = np.random.default_rng(seed)
    dense = (rng.random((6, 7)) < 0.3) * 1.0
    dense[0, 0] = 1.0
    seen = sp.csr_matrix(dense)
    k = 3
    pop = rng.random(7) * (rng.random(7) < 0.8)
    pop[1] = 0.5
    cases = [(check(BPR_POP, {"k": k}), {"seen": seen, "pop": pop}, pop / pop.sum()),
             (spec_of("bpr", {"k": k}), {"seen": seen}, np.full(7, 1 / 7))]
    for spec, data, p in cases:
        stats = analyze(spec, data)
        fixed = fixed_slices(seen)
        omega, delta, rho, rho_mean = documented(fixed, p, k)
        assert stats["Omega"] == omega
        assert stats["Delta"] == pytest.approx(delta)
        assert stats["rho"] == pytest.approx(rho)
        assert stats["rho_mean"] == pytest.approx(rho_mean)
        # the bound holds: never below the exact expected share of any term
        true = true_expected_shares(fixed, p)
        assert stats["rho"] >= true.max() - 1e-12
        assert stats["rho_mean"] >= true.mean() - 1e-12


def test_sampled_delta_is_the_expected_share():
    # one term per entry; the draw is weighted onto item 2, which no term touches otherwise
    seen = sp.csr_matrix((np.ones(4), ([0, 1, 2, 3], [0, 1, 0, 1])), shape=(4, 3))
    pop = np.array([0.0, 1.0, 3.0])
    stats = analyze(check(BPR_POP, {"k": 1}), {"seen": seen, "pop": pop})
    # Q[2]: 4 terms x 3/4; Q[1]: 2 terms always + 2 others x 1/4; Q[0]: 2 terms, never drawn
    assert stats["Delta"] == pytest.approx(3 / 4)
    assert stats["busiest"] == "Q[2, :]"
    assert stats["n_touched"] == 4 + 3


BPR_TWO = (SPECS / "bpr.hog").read_text().replace(
    "sample j in item", "sample j in item\n    sample j2 in item").replace(
    "Q[i] - Q[j]", "2 * Q[i] - Q[j] - Q[j2]")


def test_two_draws_by_hand():
    # the entries of test_bpr_by_hand, 40 items, two independent uniform draws per term
    seen = sp.csr_matrix((np.ones(5), ([0, 0, 1, 2, 3], [0, 1, 1, 2, 3])), shape=(4, 40))
    stats = analyze(check(BPR_TWO, {"k": 2}), {"seen": seen})
    assert stats["Omega"] == 4 * 2
    # Q[1, :]: two terms always, the three others with chance 1 - (39/40)^2
    assert stats["Delta"] == pytest.approx((2 + 3 * (1 - (39 / 40) ** 2)) / 5)
    # per other term: 2 draws on its item, its 2 draws on ours, 4 pairs of draws: 8/40
    assert stats["rho"] == pytest.approx(3 / 5 + 8 / 40)
    assert len(stats["draws"]) == 2


SLICE = """
model negclass
dim example, feature, class
data X[example, feature] : sparse
data y[example] : index(class)
param W[feature, class] = 0
for i in example:
    sample c in class
    loss sum(j in X[i]: X[i, j] * (W[j, c] - W[j, y[i]]))
"""


PAIR = """
model pair
dim user, item
data seen[user, item] : sparse
param M[item, item] = 0
for (u, i) in seen:
    sample j in item
    sample j2 in item
    loss M[j, j2]^2
"""


def test_sampling_errors():
    seen = sp.csr_matrix(np.eye(3))
    with pytest.raises(HogwildError, match="two sampled indices"):
        analyze(check(PAIR), {"seen": seen})
    with pytest.raises(HogwildError, match="two positions"):
        analyze(check(PAIR.replace("M[j, j2]", "M[j, j]")), {"seen": seen})
    with pytest.raises(HogwildError, match="whole slice"):
        analyze(check(SLICE), {"X": X4, "y": np.array([0, 1, 2, 0])})
    with pytest.raises(DataError, match="'pop'"):
        analyze(check(BPR_POP, {"k": 2}), {"seen": seen})
    with pytest.raises(DataError, match="non-negative"):
        analyze(check(BPR_POP, {"k": 2}), {"seen": seen, "pop": np.array([1.0, -1.0, 1.0])})
    with pytest.raises(DataError, match="positive"):
        analyze(check(BPR_POP, {"k": 2}), {"seen": seen, "pop": np.zeros(3)})
    with pytest.raises(DataError, match="size 0"):
        analyze(check(SAMPLE_EMPTY), {"X": X4, "z": np.zeros(0)})


SAMPLE_EMPTY = """
model empty
dim example, feature, other
data X[example, feature] : sparse
data z[other] : real
param w[feature] = 0
param v[other] = 0
for i in example:
    sample o in other
    loss dot(X[i], w) * v[o]
"""


# ------------------------------------------------------------------ the command line


def hogwildc(capsys, *args):
    """`hogwildc ARGS` in process (analyze compiles nothing): (exit status, stdout, stderr)."""
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_softmax_and_bpr(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("HOGWILD_DEBUG", raising=False)
    svm = tmp_path / "labels.svm"
    svm.write_text("0 1:1 3:2\n2 3:3\n1 2:1\n0 1:1 4:1\n")
    rc, out, err = hogwildc(capsys, "analyze", SPECS / "softmax.hog", "--data", f"X,y={svm}")
    assert rc == 0, err
    assert "4 terms" in out and "Omega = 9 " in out
    assert "Delta = 1 " in out and "rho   = 1 " in out
    triplets = tmp_path / "seen.csv"
    triplets.write_text("0,0,1\n0,1,1\n1,1,1\n2,2,1\n3,19,1\n")
    rc, out, err = hogwildc(capsys, "analyze", SPECS / "bpr.hog", "--const", "k=2",
                            "--data", f"seen={triplets}")
    assert rc == 0, err
    # Q[1, :]: two terms + three others x 1/20; rho: term (0,1) meets 3 of 5, + 3/20
    assert "5 terms" in out and "Omega = 6 " in out
    assert "Delta = 0.43 " in out
    assert "rho   = 0.75 " in out
    assert "sample j in item (uniform): Q[j]" in out


def test_cli_refuses_what_it_cannot_count(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("HOGWILD_DEBUG", raising=False)
    spec = tmp_path / "negclass.hog"
    spec.write_text(SLICE)
    svm = tmp_path / "labels.svm"
    svm.write_text("0 1:1 3:2\n2 3:3\n1 2:1\n")
    rc, out, err = hogwildc(capsys, "analyze", spec, "--data", f"X,y={svm}")
    assert rc == 1
    assert "Traceback" not in err and "internal error" not in err
    assert "whole slice" in err
