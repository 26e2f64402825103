"""The default step (docs/api.md, "The default step"): where neither the Trainer nor the spec's
train line gives a step, the first fit calibrates it on the data scaled down (calibrate.STEP_GRID,
then half-steps of it for the fit's epochs), and restarts at a smaller step where the fit
diverges all the same."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from hogwild_dsl import calibrate, datasets, runtime
from hogwild_dsl.sklearn import HogwildClassifier

from test_cli import hogwildc, cli_env  # noqa: F401  (fixtures)

# A KL-divergence NMF of large counts (steps above 1 diverge).
NMF_KL = """
model nmf_kl
dim row, col
const k = 4
data V[row, col] : sparse
param W[row, k] >= 0 ~ uniform(0.5, 1.5)
param H[col, k] >= 0 ~ uniform(0.5, 1.5)
for (i, j) in V:
    let yhat = dot(W[i], H[j])
    loss yhat - V[i, j] * log(yhat + 0.001)
    predict yhat
"""


def classification(n=2000, d=50, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.2, random_state=seed, format="csr") * scale
    w = rng.normal(size=d)
    y = np.where(X @ w / scale + 0.1 * rng.normal(size=n) > 0, 1.0, -1.0)
    return X.tocsr(), y


def counts(rows=200, cols=150, nnz=4000, seed=0):
    rng = np.random.default_rng(seed)
    W, H = rng.gamma(2.0, 6.0, size=(rows, 4)), rng.gamma(2.0, 6.0, size=(cols, 4))
    flat = rng.choice(rows * cols, nnz, replace=False)
    u, v = flat // cols, flat % cols
    value = rng.poisson(np.sum(W[u] * H[v], axis=1)).astype(float)
    return sp.csr_matrix((value, (u, v)), shape=(rows, cols))


def half_power_of_3(step):
    """The calibrated steps are 3^(k/2), k an integer."""
    k = 2 * np.log(step) / np.log(3)
    return abs(k - round(k)) < 1e-9


@pytest.fixture(scope="module")
def logreg(load_spec):
    return load_spec("logreg")     # no train line


def test_calibration_picks_a_grid_step_reproducibly_whatever_the_threads(logreg):
    X, y = classification(n=2000)
    fits = [logreg.Trainer(threads=threads, epochs=3, seed=7).fit(X=X, y=y)
            for threads in (1, 1, 2)]
    cal = fits[0].calibration
    assert fits[0].step == cal["step"] and half_power_of_3(cal["step"])
    assert cal["grid"] == list(calibrate.STEP_GRID) and len(cal["objectives"]) == len(cal["grid"])

    def tied_largest(steps, objectives):          # the largest step tied with the lowest
        return max(s for s, v in zip(steps, objectives)
                   if not calibrate.lower(min(objectives), v))
    coarse = tied_largest(cal["grid"], cal["objectives"])
    # then the half-steps around the grid's best, for the fit's 3 epochs: the lowest wins
    assert cal["epochs"] == 3 and len(cal["fit_objectives"]) == len(cal["steps"]) >= 3
    assert coarse in cal["steps"] and all(np.isclose(b / a, 3 ** 0.5)
                                          for a, b in zip(cal["steps"], cal["steps"][1:]))
    assert cal["step"] == tied_largest(cal["steps"], cal["fit_objectives"])
    assert cal["terms"] == calibrate.CALIBRATION_TERMS and cal["share"] == 0.5
    assert cal["seconds"] >= 0 and not cal["stalled"]
    assert [h["step"] for h in fits[0].history] == [cal["step"] * 0.9 ** e for e in range(3)]
    for k in fits[0].params:                      # threads=1 + seed: bit for bit
        np.testing.assert_array_equal(fits[0].params[k], fits[1].params[k])
    assert fits[1].calibration["objectives"] == cal["objectives"]
    assert fits[2].step == cal["step"]            # the search runs on one thread
    other = logreg.Trainer(threads=1, epochs=3, seed=8).fit(X=X, y=y).calibration
    assert other["objectives"] != cal["objectives"]   # another seed, another sample


def test_a_given_step_is_kept_and_nothing_is_calibrated(logreg, load_spec):
    X, y = classification(n=300)
    t = logreg.Trainer(threads=1, epochs=2, step=0.05).fit(X=X, y=y)
    assert t.calibration is None and [h["step"] for h in t.history] == [0.05, 0.05 * 0.9]
    svm = load_spec("svm")                        # train line: step 0.5
    t = svm.Trainer(threads=1, epochs=1).fit(X=X, y=y)
    assert t.calibration is None and t.step == 0.5 and t.history[0]["step"] == 0.5
    t = svm.Trainer(threads=1, epochs=1, step="auto").fit(X=X, y=y)
    assert t.calibration is not None and t.step == t.calibration["step"]
    with pytest.raises(hogwild_dsl.HogwildError, match="step must be a positive number or 'auto'"):
        logreg.Trainer(step="fast")


def test_calibrated_once_per_trainer_and_not_by_epochs_0(logreg):
    X, y = classification(n=500)
    t = logreg.Trainer(threads=1, epochs=0).fit(X=X, y=y)
    assert t.calibration is None and not t.history          # nothing trained
    t.epochs = 2
    t.fit(X=X, y=y)
    cal = dict(t.calibration)
    t.fit(X=X * 100.0, y=y)                                  # warm start: no new search
    assert t.calibration == cal and t.step == cal["step"] and len(t.history) == 4


def test_no_crawl_where_the_good_step_is_large(logreg):
    X, y = classification(scale=0.1)             # small features: a large step is right
    auto = logreg.Trainer(threads=1, epochs=5).fit(X=X, y=y)
    fixed = logreg.Trainer(threads=1, epochs=5, step=0.05).fit(X=X, y=y)
    assert auto.step >= 1
    assert auto.objective(X=X, y=y) < 0.7 * fixed.objective(X=X, y=y)


def test_no_divergence_where_the_good_step_is_small(load_spec):
    mod = load_spec(text=NMF_KL)
    V = counts()
    t = mod.Trainer(threads=1, epochs=5).fit(V=V)
    ends = [mod.Trainer(threads=1, epochs=5, step=s).fit(V=V).objective(V=V)
            for s in (0.1, 0.01, 0.001)]
    assert t.step <= 0.5 and t.objective(V=V) <= min(ends) + 0.01 * abs(min(ends))


def test_large_data_values_a_regression_does_not_diverge(load_spec):
    mod = load_spec("linreg")                    # train line step 0.01 diverges on these
    rng = np.random.default_rng(0)
    X = rng.normal(loc=100, size=(400, 3))
    y = X @ [1.0, -2.0, 0.5] + 3
    with pytest.raises(hogwild_dsl.DivergenceError):
        mod.Trainer(threads=1, epochs=5).fit(X=sp.csr_matrix(X), y=y)
    t = mod.Trainer(threads=1, epochs=5, step="auto").fit(X=sp.csr_matrix(X), y=y)
    assert t.step < 1e-3 and t.objective(X=sp.csr_matrix(X), y=y) < 0.01 * np.mean(y ** 2)


def test_a_divergence_restarts_half_a_grid_step_lower(logreg, monkeypatch):
    """The sample cannot show every instability: the fit's own divergence steps down by
    sqrt(3) from the params the fit started from (here the search is made to pick a huge
    step)."""
    X, y = classification(n=500)
    real = runtime.TrainerBase._calibrate_step

    def prefer_a_huge_step(self, arrays, sizes):
        restart = real(self, arrays, sizes)
        if restart is not None:
            self.step = self.calibration["step"] = 1e300
        return restart
    monkeypatch.setattr(runtime.TrainerBase, "_calibrate_step", prefer_a_huge_step)
    t = logreg.Trainer(threads=1, epochs=2).fit(X=X, y=y)
    left = t.calibration["diverged"]
    f = calibrate.RESTART_FACTOR
    assert f == pytest.approx(3 ** 0.5)
    assert left[0] == 1e300 and t.step == left[-1] / f == t.calibration["step"]
    assert all(b == a / f for a, b in zip(left, left[1:]))
    again = logreg.Trainer(threads=1, epochs=2, step=t.step).fit(X=X, y=y)
    assert [h["epoch"] for h in t.history] == [1, 2]
    for k in t.params:                            # as if that step had been given
        np.testing.assert_array_equal(t.params[k], again.params[k])


def test_the_grid_goes_on_past_an_end_where_the_best_is(logreg, load_spec):
    svm = load_spec("svm")                       # no intercept (whose step is its own)
    X, y = classification(scale=1e-3)            # tiny features: the best step is above 27
    t = svm.Trainer(threads=1, epochs=2, step="auto").fit(X=X, y=y)
    assert t.calibration["grid"][-1] > calibrate.STEP_GRID[-1] and t.step > calibrate.STEP_GRID[-1]
    X, y = classification(scale=1e3)             # huge features: below 5e-5
    t = logreg.Trainer(threads=1, epochs=2).fit(X=X, y=y)
    assert t.calibration["grid"][0] < calibrate.STEP_GRID[0] and t.step < calibrate.STEP_GRID[0]
    assert t.step >= calibrate.STEP_LIMITS[0] and t.objective(X=X, y=y) < np.log(2)


@pytest.mark.parametrize("options", [dict(optimizer="adagrad"), dict(optimizer="adagrad_row"),
                                     dict(sync="atomic"), dict(sync="lock", threads=2),
                                     dict(threads=4), dict(order="chunks", chunk=8)])
def test_every_option_calibrates(logreg, options):
    X, y = classification(n=600)
    Xv, yv = classification(n=200, seed=1)
    t = logreg.Trainer(**{"threads": 1, "epochs": 3, "patience": 2, **options})
    t.fit(X=X, y=y, validation={"X": Xv, "y": yv})
    assert t.step == t.calibration["step"] and half_power_of_3(t.step)
    assert t.history[-1]["objective"] < t.calibration["objectives"][0] or \
        t.history[-1]["objective"] < 0.6


def test_the_classifier_default_learning_rate_is_calibrated_then_held_out():
    X, y = classification(n=400)
    clf = HogwildClassifier(threads=1, epochs=3).fit(X, y)
    first, _ = clf.step_search_[0]                # the calibrated step starts the search
    assert half_power_of_3(first)
    assert clf.trainer_.step in [s for s, _ in clf.step_search_]
    clf = HogwildClassifier(spec="svm", threads=1, epochs=3).fit(X, y)   # a train line too
    assert half_power_of_3(clf.step_search_[0][0])
    clf = HogwildClassifier(threads=1, epochs=3, step=0.2).fit(X, y)
    assert clf.trainer_.calibration is None and clf.trainer_.step == 0.2
    assert clf.step_search_ is None


def test_hogwildc_train_calibrates_without_step_and_takes_step_auto(hogwildc, tmp_path, logreg):
    X, y = classification(n=300)
    lines = [f"{int(label)} " + " ".join(f"{j + 1}:{v:.6g}" for j, v in zip(row.indices, row.data))
             for row, label in zip(X, y)]
    (tmp_path / "d.svm").write_text("\n".join(lines) + "\n")
    spec = logreg.SPEC
    (tmp_path / "logreg.hog").write_text(spec)
    res = hogwildc("train", "logreg.hog", "--data", "X,y=d.svm", "--epochs", "2", "--threads",
                   "1", "--out", "p.npz")
    assert res.returncode == 0, res.stderr
    assert "calibrated on 300 terms" in res.stdout
    res = hogwildc("train", "logreg.hog", "--data", "X,y=d.svm", "--epochs", "2", "--threads",
                   "1", "--step", "0.1", "--out", "p.npz")
    assert res.returncode == 0 and "calibrated" not in res.stdout
    (tmp_path / "with_train.hog").write_text(spec + "train step 0.1, epochs 2\n")
    res = hogwildc("train", "with_train.hog", "--data", "X,y=d.svm", "--threads", "1",
                   "--step", "auto", "--out", "p.npz")
    assert res.returncode == 0 and "calibrated on 300 terms" in res.stdout, res.stderr
    res = hogwildc("train", "logreg.hog", "--data", "X,y=d.svm", "--step", "fast")
    assert res.returncode != 0 and "--step must be a number" in res.stderr


# index labels, an l1 reg (its per-coordinate state is copied for the search) and no train line
SOFTMAX_L1 = """
model softmax_l1
dim example, feature, class
data X[example, feature] : sparse
data y[example] : index(class)
param W[feature, class] = 0
param b[class] = 0
for i in example:
    let z = sum(j in X[i]: X[i, j] * W[j]) + b
    loss logsumexp(z) - z[y[i]]
    reg l1(1e-3) on W[X[i]]
    predict softmax(z)
"""


def test_index_data_l1_and_sampled_terms_calibrate_reproducibly(load_spec):
    X, y = classification(n=600)
    labels = (np.asarray(X.sum(axis=1)).ravel() * 3).astype(np.int64) % 3
    mod = load_spec(text=SOFTMAX_L1)
    a, b = (mod.Trainer(threads=1, epochs=3).fit(X=X, y=labels) for _ in range(2))
    assert a.step == b.step == a.calibration["step"] and a.calibration == {
        **b.calibration, "seconds": a.calibration["seconds"]}
    assert a.objective(X=X, y=labels) < a.calibration["objectives"][0]
    given = mod.Trainer(threads=1, epochs=3, step=a.step).fit(X=X, y=labels)
    for k in a.params:              # the search ran on copies: the fit is the given step's
        np.testing.assert_array_equal(a.params[k], given.params[k])
    for k in given._accumulators:   # the l1 state too
        np.testing.assert_array_equal(a._accumulators[k], given._accumulators[k])
    bpr = load_spec("bpr")                                   # `sample j in item`: draws
    seen = sp.random(60, 40, density=0.2, random_state=1, format="csr")
    seen.data[:] = 1.0
    fits = [bpr.Trainer(threads=1, epochs=2, step="auto").fit(seen=seen) for _ in range(2)]
    assert fits[0].step == fits[1].step and fits[0].optimizer == "adagrad"
    np.testing.assert_array_equal(fits[0].params["P"], fits[1].params["P"])
    assert fits[0].history[-1]["objective"] < np.log(2)


def test_adagrad_defaults_to_no_decay(logreg, load_spec):
    """AdaGrad's accumulators shrink its steps already: its default decay is 1 (sgd's 0.9),
    unless the Trainer or the train line gives one."""
    X, y = classification(n=300)
    for optimizer, decay in (("sgd", 0.9), ("adagrad", 1.0), ("adagrad_row", 1.0)):
        t = logreg.Trainer(threads=1, epochs=3, optimizer=optimizer).fit(X=X, y=y)
        assert t.decay == decay
        assert [h["step"] for h in t.history] == [t.step * decay ** e for e in range(3)]
    assert logreg.Trainer(optimizer="adagrad", decay=0.8).decay == 0.8
    assert load_spec("bpr").Trainer().decay == 1.0            # train line: adagrad, no decay
    with_decay = load_spec(text=logreg.SPEC + "train optimizer adagrad, decay 0.7\n")
    assert with_decay.Trainer().decay == 0.7


def test_the_scaled_down_data_keep_each_rows_updates_per_pass(load_spec):
    """The search runs on a share of the terms over the same share of the rows of every dim
    they range over (the other rows hashed onto the kept ones): a kept user keeps its ratings
    and an item about its own count, a row of X stays whole, a node keeps its degree; the
    params are the current ones' kept rows; label columns (not ranged over) stay."""
    rng = np.random.default_rng(0)
    users, items = 2000, 500
    u = np.repeat(np.arange(users), 20)                 # every user rates 20 items
    v = np.concatenate([rng.choice(items, 20, replace=False) for _ in range(users)])
    r = sp.csr_matrix((rng.integers(1, 6, u.size).astype(float), (u, v)), shape=(users, items))
    t = load_spec("mc").Trainer(threads=1, epochs=0)
    arrays, sizes = t.layout({"r": r})
    small, small_sizes = t._scaled_down(arrays, sizes, 0.1, np.random.default_rng(1))
    key = t._key          # the layout's key of (role, of)
    assert (small_sizes[key("dim", "user")], small_sizes[key("dim", "item")]) == (200, 50)
    assert small[key("values", "r")].size == 4000            # a tenth of the ratings, as terms
    assert np.diff(small[key("indptr", "r")]).mean() == 20   # per user: 20, as in the data
    per_item = np.bincount(small[key("indices", "r")], minlength=50)
    assert per_item.mean() == 80 and per_item.min() > 10     # per item: 80 on average
    full = t.params["L"]
    assert small["L"].shape == (200, 20) and not np.shares_memory(small["L"], full)
    assert (small["L"][:, None, :] == full[None]).all(-1).any(1).all()

    X, y = classification(n=2000, d=400)
    t = load_spec("logreg").Trainer(threads=1, epochs=0)
    arrays, sizes = t.layout({"X": X, "y": y})
    small, small_sizes = t._scaled_down(arrays, sizes, 0.1, np.random.default_rng(1))
    key = t._key
    assert (small_sizes[key("dim", "example")], small_sizes[key("dim", "feature")]) == (200, 40)
    Xs = sp.csr_matrix(tuple(small[key(part, "X")] for part in ("values", "indices", "indptr")),
                       shape=(200, 40))
    sums = np.asarray(X.sum(axis=1)).ravel()            # whole rows, their columns hashed
    kept = [np.flatnonzero(np.isclose(sums, s) & (y == label))
            for s, label in zip(np.asarray(Xs.sum(axis=1)).ravel(), small["y"])]
    assert all(k.size for k in kept)

    w, c = datasets.dblife_like(n_nodes=2000, n_labels=4, avg_degree=6, seed=0)
    t = load_spec("cuts").Trainer(threads=1, epochs=0)
    arrays, sizes = t.layout({"w": w, "c": c})
    small, small_sizes = t._scaled_down(arrays, sizes, 0.1, np.random.default_rng(1))
    assert small_sizes[t._key("dim", "node")] == 200 and small["c"].shape == (200, 4)
    assert small["x"].shape == (200, 4)
    degree = np.diff(small[t._key("indptr", "w")]).mean()
    assert abs(degree - w.nnz / 2000) < 0.1 * w.nnz / 2000     # neighbours kept


def test_a_train_line_without_shuffle_or_step_calibrates_on_the_scaled_down_data(logreg,
                                                                                 load_spec):
    mod = load_spec(text=logreg.SPEC + "train shuffle false, epochs 2\n")
    X, y = classification(n=2000)
    t = mod.Trainer(threads=1).fit(X=X, y=y)
    assert t.order == "stored" and t.calibration["share"] == 0.5
    assert half_power_of_3(t.step) and t.history[-1]["objective"] < np.log(2)


def test_ties_take_the_larger_step_and_a_flat_end_stops_the_walk():
    """Objectives within calibrate.TIE of each other are ties: the search takes the largest
    of them, and walks past an end of its steps only where that end is lower by more."""
    inf = float("inf")
    assert calibrate.pick({-2: 1.0, 0: 1.0 + 0.5 * calibrate.TIE, 2: 1.5}) == 0
    assert calibrate.pick({-2: 1.0, 0: 1.0 + 2 * calibrate.TIE, 2: 1.5}) == -2
    assert calibrate.pick({-2: 1.0, 0: 1.5, 2: 1.0 + 0.5 * calibrate.TIE}) == -2   # a run
    assert calibrate.pick({0: inf, 2: inf}) == 0
    assert calibrate.lower(1.0, inf) and not calibrate.lower(inf, inf)
    flat = calibrate.walk(lambda hs: [1.0 + 0.1 * max(h, 0) for h in hs], [-2, 0, 2], 2,
                          (-50, 18), 3, None)
    assert min(flat) == -2                       # no walk into ever smaller steps
    sloped = calibrate.walk(lambda hs: [1.0 + 0.1 * h for h in hs], [-2, 0, 2], 2,
                            (-50, 18), 3, None)
    assert min(sloped) == -50                    # a real slope is followed to the limit
    def slope(hs):                               # the start's objective (1) at step 3^-5
        return [1.0 + calibrate.TIE * (h + 10) for h in hs]
    assert min(calibrate.walk(slope, [-10, -8, -6], 2, (-50, 18), 3, None)) == -50
    assert min(calibrate.walk(slope, [-10, -8, -6], 2, (-50, 18), 3, None, 1.0)) == -10


def test_a_search_that_finds_no_progress_stays_on_the_grid_and_says_so(load_spec):
    """The cut LP under adagrad: no step lowers the objective (the first step moves every
    coordinate by the whole step, then the simplex projection), so every step ties with the
    smallest. The search once walked to 3^-25 = 6.8e-13 in silence; it now keeps the largest
    step of the tie, warns, and records `stalled`. Under sgd it trains, and says nothing."""
    w, c = datasets.dblife_like(n_nodes=300, n_labels=4, avg_degree=6, seed=0)
    cuts = load_spec("cuts")
    t = cuts.Trainer(threads=1, epochs=3, optimizer="adagrad", step="auto")
    with pytest.warns(RuntimeWarning, match="no step from .* lowers the objective"):
        t.fit(w=w, c=c)
    cal = t.calibration
    assert cal["stalled"] and t.step >= calibrate.STEP_GRID[0]
    assert min(cal["fit_objectives"]) >= cal["start_objective"] * (1 - calibrate.TIE)
    t = cuts.Trainer(threads=1, epochs=3, step="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t.fit(w=w, c=c)
    cal = t.calibration
    assert not cal["stalled"] and min(cal["fit_objectives"]) < cal["start_objective"]
