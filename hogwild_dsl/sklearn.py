"""scikit-learn estimators on a spec's Trainer: `HogwildClassifier`, `HogwildRegressor`,
`HogwildRecommender` (API.md, "scikit-learn estimators").

Every fit builds the spec's Trainer and calls its `fit`: there is no second training path.

Binding. `X` is the spec's 2-D data read by `predict`; `y` its 1-D data over the same rows that
`predict` does not read. The classifier maps its classes (any labels, in `classes_`) onto a
`sign` (-1/+1) or `binary` (0/1) label datum, or, for more than two classes, onto an
`index(...)` datum. The recommender's `R` (a users x items matrix, or a DataFrame of
triples) binds the sparse data whose stored entries are the terms of the predicting block
(`for (u, v) in r`); new users' rows are folded in by a spec derived from that block
(`_fold_in_spec`). Every other datum of the spec (a scalar
such as a global mean or a temperature, data over another dim, a second block's data) comes
from the estimator's `data` argument, by the spec's names, and goes as given to every fit,
objective and predict of the Trainer: the estimator computes no datum itself (the language
gives a datum no meaning the estimator could compute it from). A datum per row of X or per
rating of R cannot come from `data` (the estimator holds rows out and predicts new ones). A
spec that cannot be bound so is a HogwildError at `fit` (a DataError naming the datum and the
`data` argument where one is missing).

Threads. `threads=None` uses the cores this process may use, capped by `OMP_NUM_THREADS`:
joblib's process workers (`GridSearchCV(n_jobs=k)`, the default loky backend) set it to
cores // k, so k jobs never oversubscribe the machine. Under a thread-based joblib backend,
pass `threads` explicitly. With threads > 1 the updates race (HOGWILD!), so two fits differ in
the last digits; `threads=1` with a fixed `seed` is bit-for-bit reproducible. The step
search's candidates (Step, below) train on one thread each below CANDIDATE_TERMS rows, up
to `threads` of them side by side, so the step it chooses is the same at any `threads`; on
larger data each takes a thread per CANDIDATE_TERMS rows it trains on; the refit on all rows
takes them all.

Start. The regressor's Trainers start from the spec's initial params with its intercept (a
0-D param that predict adds as is: `_intercept`) at their mean residual on the rows each
trains on, so that the mean prediction starts at the mean target (HogwildRegressor._start);
the classifier's and recommender's start from the spec's initial params.

Early stopping. `early_stopping=True` holds out `validation_fraction` of the rows (of the
ratings, for the recommender) and passes them to the Trainer as `fit(..., validation=...)`
with `patience=n_iter_no_change`: the history records the objective on the held-out part as
`validation_objective`, training stops after `n_iter_no_change` epochs without a strictly
lower one, and the params of the best epoch are kept.

Step. With `step=None` the step is chosen by held-out loss, so that it does not overfit:
`validation_fraction` of the rows (drawn with `seed`) is held out, a Trainer on the rest
calibrates its step on the training objective (docs/api.md, "The default step", its first
stage alone at one pass per step: a start for this search; whatever the spec's train line
says: that line was tuned on other data than the user's) and trains at it, recording its
held-out objective per epoch; then Trainers at that step divided by 3, 9, ... (or, where a
third is no better, times 3, 9, ...; times first where that held-out objective fell
smoothly, rising by less than SMOOTH of its fall in all: a step too small; first divided by
the sum of the epochs' decay factors, to a power of 3, where it was lowest after the first
epoch: that step goes as far in all the epochs as the calibrated one in the first) train
for the same epochs while the spec's objective on the held-out rows keeps falling (at most
STEP_SEARCH fits, none at a step tried before); the step with the lowest
held-out objective is kept (`step_search_`) and the model refitted on all rows at it (with
early stopping, or where the refit diverges, the best candidate is kept as trained, or
refitted at a third of its step where it trained on part of the rows, below; a refit
on more threads than the candidate's that ends above REFIT_SLACK times its objective is
redone on the candidate's threads: a step at the edge of serial stability can be unstable
on more, _refit). Without early stopping, where the rows of X not held out number at least
SEARCH_ROWS (the classifier and regressor; the recommender's candidates train on every
rating not held out), every candidate trains on a random two thirds of them (SEARCH_SHARE;
stratified by class, drawn with `seed`), and only the refit on all the rows: a candidate
costs two thirds of a fit (on bench_sklearn's large data the search ends at the step of
candidates on all of them in 30 cases of 40, at a step of about the same test score in the
others: SEARCH_SHARE); the refit's REFIT_SLACK bound is then the larger of the
candidate's objective on its rows and on all. Each candidate trains on one thread per
CANDIDATE_TERMS rows it trains on, at most `threads` (a candidate's epochs on smaller data
gain little from more, and races would make the walk's choice vary: where candidates train
on fewer than 200,000 rows, below about 330,000 rows given at the defaults, the walk is the
same at any `threads`); the walk's next
candidate starts together with those it may ask for next (breadth first over its outcomes:
the step it asks for if this one is lower than the best so far, then the one if it is not),
as many as the threads hold, and the walk uses the results it asks for: the same walk as
one at a time, in fewer rounds where cores are idle, at the cost of the guesses not needed
(bench/results/step_search_threads.md). Data too small to hold a row out trains at the
calibrated step (both stages). A `step` given explicitly is never changed: divergence is
then a DivergenceError.
"""
from __future__ import annotations

import math
import numbers
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import ir, shipped
from .check import check
from .errors import DataError, HogwildError
from .jit import load, read_spec
from .errors import DivergenceError
from .runtime import _entry_companions, _int_option, _predict_data, max_threads

__all__ = ["HogwildClassifier", "HogwildRegressor", "HogwildRecommender", "EstimatorInputError",
           "default_threads"]


# The refit on every row (_refit) on all `threads`: kept where its final objective exceeds the
# chosen candidate's by at most REFIT_SLACK - 1 of its size, else redone on the candidate's
# threads.
REFIT_SLACK = 1.5

STEP_SEARCH = 6          # the most fits (on the rows not held out) of the held-out step search
SMOOTH = 0.1             # held-out objectives that rise less than this share of their fall
# A step-search candidate trains on one thread per CANDIDATE_TERMS rows (at most `threads`):
# below that a candidate's epochs gain little from more threads (rcv1-like logreg on 45,000
# rows: 0.38 s on one thread, 0.51 s on two, bench/results/step_search_threads.md), while on
# paper-sized data hogwild's threads pay (the SVM's 800,000 rows: 1.74x on 2, paper.md), and
# candidates run one at a time on many cores each would wait on one core's epochs.
CANDIDATE_TERMS = 100_000
# Where the rows not held out number at least SEARCH_ROWS, the search's candidates train on
# SEARCH_SHARE of them (a random, class-stratified part drawn with `seed`) and only the refit
# on all rows: a candidate costs that share of a fit. Over bench_sklearn's 10 large cases at
# seeds 0-3, searches with candidates on 2/3 of the rows end at the step of candidates on all
# of them in 30 of 40; the others at a step of about the same test score (a9a-like logreg
# once 0.17 points lower; R^2 from 0.008 lower to 0.011 higher on rcv1-like text regression,
# whose search on all the rows varies as much from seed to seed, within 0.0021 elsewhere). On
# a half, 27 of 40, and rcv1-like svm ended 3x too high at two seeds of four (test 0.782 vs
# 0.796); at a quarter, fewer updates favour larger steps more often (california-like fm: a
# step that diverges on all the rows) (bench/results/step_search_subsample.md).
SEARCH_ROWS = 10_000
SEARCH_SHARE = 2 / 3


class EstimatorInputError(DataError, ValueError):
    """Bad `X`, `y` or `R` for an estimator: a DataError that is also the ValueError
    scikit-learn's conventions expect."""


def default_threads() -> int:
    """The cores this process may use, capped by OMP_NUM_THREADS (joblib's process workers
    set it to cores // n_jobs)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        cap = 0
    return max(1, min(cores, cap)) if cap > 0 else cores


# ---------------------------------------------------------------- specs and binding


def _spec_text(spec) -> str:
    """Spec text from a shipped name, a .hog path or the text itself."""
    if isinstance(spec, str) and ("\n" in spec or spec.lstrip().startswith("model ")):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise HogwildError(f"spec must be a shipped spec's name ({', '.join(shipped.names())}), "
                           f"a path to a .hog file or spec text, not {spec!r}")
    return read_spec(shipped.resolve(spec))


_CHECKED: dict = {}      # (spec text, consts) -> (checked spec, module or None), per process


def _cached(spec, consts, compiled: bool):
    """The checked spec, or its loaded module, of an estimator's spec and consts; each is
    made once per process (check_estimator and grid searches fit hundreds of times)."""
    text = _spec_text(spec)
    try:
        key = (text, tuple(sorted(consts.items())) if isinstance(consts, dict) else consts)
        hash(key)
    except TypeError:        # unhashable consts: no caching, check() reports what is wrong
        key = None
    checked, module = _CHECKED.get(key, (None, None))
    if compiled and module is None:
        module = load(text=text, consts=consts)
        checked = module.Trainer.spec
    elif checked is None:
        checked = check(text, consts)
    if key is not None:
        _CHECKED[key] = (checked, module)
    return module if compiled else checked


def _module(spec, consts):
    return _cached(spec, consts, compiled=True)


def _predicting_block(spec: ir.Spec) -> ir.Block:
    block = next((b for b in spec.blocks if b.predict is not None), None)
    if block is None:
        raise HogwildError(f"model '{spec.model}' has no 'predict' line: an estimator needs one")
    return block


def _extra_names(estimator) -> tuple:
    """The names in an estimator's `data` argument, () where it is not a dict (for tags and
    binding checks that must not raise)."""
    return tuple(estimator.data) if isinstance(estimator.data, dict) else ()


def _check_extra(spec: ir.Spec, extra, per_row, what: str) -> None:
    """The names in `extra` (the estimator's `data` argument) are data of the spec that do
    not vary with the rows the estimator splits and predicts (`per_row(d)` says which do)."""
    declared = {d.name: d for d in spec.data}
    for name in extra:
        d = declared.get(name)
        if d is None:
            raise DataError(f"data={{{name!r}: ...}}: model '{spec.model}' declares no data "
                            f"'{name}' (its data: {'; '.join(map(str, spec.data))})")
        if per_row(d):
            raise DataError(
                f"data={{{name!r}: ...}}: '{name}' ({d}) is per {what}, so the "
                "estimator cannot take it in `data` (it holds rows out and predicts new ones); "
                "`data` gives the data that stay the same for every row (scalars, data over "
                "other dims); for per-row data, use the spec's Trainer")


def _check_missing(spec: ir.Spec, bound: list, extra, call: str) -> None:
    """Every datum of the spec is bound by the estimator or named in `extra`."""
    missing = [d for d in spec.data if d not in bound and d.name not in extra]
    if missing:
        d = missing[0]
        more = "".join(f", {m.name!r}: ..." for m in missing[1:])
        raise DataError(
            f"model '{spec.model}' needs data '{d.name}' (spec line {d.line}: {d}), which "
            f"{call} does not bind: give it in the estimator's data argument, "
            f"data={{{d.name!r}: ...{more}}}")


def _bind_xy(spec: ir.Spec, extra=()) -> tuple[ir.Data, ir.Data]:
    """(X, y) of a spec: its 2-D data over the predicting block's rows read by predict, its
    1-D data over the same rows not; every other datum must be named in `extra`."""
    block = _predicting_block(spec)
    read = _predict_data(spec)
    if block.kind == "rows":
        _check_extra(spec, extra, lambda d: block.over in d.dims, "row of X")
    rows = [d for d in spec.data if d.dims[:1] == (block.over,) and d.name not in extra]
    xs = [d for d in rows if len(d.dims) == 2 and d.name in read]
    ys = [d for d in rows if len(d.dims) == 1 and d.name not in read]
    if block.kind != "rows" or len(xs) != 1 or len(ys) != 1:
        raise HogwildError(
            f"model '{spec.model}' cannot be bound to fit(X, y): an estimator needs a "
            "predicting block over rows ('for i in example') with exactly one 2-D data over "
            "them read by 'predict' (X) and one 1-D data over them that 'predict' does not "
            "read (y), and no other per-row data; it declares "
            f"{'; '.join(map(str, spec.data)) or 'no data'}")
    _check_missing(spec, xs + ys, extra, "fit(X, y)")
    return xs[0], ys[0]


def _is_probability(expr: ir.Expr) -> bool:
    """Is a predict expression a probability: a sigmoid (or softmax) at its top?"""
    if isinstance(expr, ir.Func) and expr.name in ("sigmoid", "softmax"):
        return True
    # softmax(z) checks to exp(z[k] - logsumexp(z)), one component of the vector
    return isinstance(expr, ir.Func) and expr.name == "exp" and \
        isinstance(expr.args[0], ir.Binary) and expr.args[0].op == "-" and \
        isinstance(expr.args[0].right, ir.Reduce) and expr.args[0].right.op == "logsumexp"


def _intercept(spec: ir.Spec) -> str | None:
    """The name of the spec's intercept: a 0-D param without a constraint that the
    predicting block's predict adds as is (predict = ... + b + ...) and reads nowhere else,
    so that b + c shifts every prediction by c; None where there is none."""
    predict = _predicting_block(spec).predict
    scalar = {p.name for p in spec.params if not p.dims and p.constraint is None}
    reads: dict = {}
    todo = [predict]
    while todo:
        node = todo.pop()
        if isinstance(node, ir.ParamAt):
            reads[node.name] = reads.get(node.name, 0) + 1
        todo.extend(node.children())
    addends, todo = [], [predict]
    while todo:
        node = todo.pop()
        if isinstance(node, ir.Binary) and node.op in "+-":
            todo += [node.left, node.right] if node.op == "+" else [node.left]
        else:
            addends.append(node)
    return next((a.name for a in addends if isinstance(a, ir.ParamAt)
                 and a.name in scalar and reads[a.name] == 1), None)


def _label_room(spec: ir.Spec, y_datum: ir.Data, X_datum: ir.Data, X, extra: dict):
    """(classes the index labels y can hold, what fixes that number) where fit knows it
    before training: a const, or the size of data over the labels' dim that the estimator
    is given (X, or the `data` argument); None where the labels themselves size the dim."""
    of = y_datum.of
    if spec.const_value(of) is not None:
        return spec.const_value(of), f"const {of} = {spec.const_value(of)}"
    given = [(X_datum, X)] + [(spec.datum(n), v) for n, v in extra.items()]
    for d, value in given:
        shape = getattr(value, "shape", None) or np.shape(value)      # scipy sparse too
        if of in d.dims and len(shape) == len(d.dims):
            return shape[d.dims.index(of)], f"data '{d.name}' ({d})"
    return None


def _index_label_specs() -> list[str]:
    """The shipped specs a classifier binds to index(...) labels (any number of classes):
    named in the error for more classes than a spec's labels hold."""
    out = []
    for name in shipped.names():
        try:
            if _bind_xy(_cached(name, None, compiled=False))[1].kind.startswith("index"):
                out.append(name)
        except HogwildError:
            pass
    return out


def _checked(estimator) -> ir.Spec | None:
    """The estimator's spec, checked only (no compile), or None if it cannot be read."""
    try:
        return _cached(estimator.spec, estimator.consts, compiled=False)
    except HogwildError:
        return None


# ---------------------------------------------------------------- the shared base


class _Unknown(Exception):
    """The walk asks for a step whose held-out objective is not known (yet)."""


class _StepWalk:
    """The held-out step search's walk after its start (the calibrated step, its held-out
    objective, that objective per epoch and the sum of the epochs' decay factors): steps 3x
    lower while the held-out objective falls, else 3x higher while it falls (the module
    docstring: 3x higher first after a smooth fall, a jump down first after an overfit first
    epoch). Each step's objective is looked up in `fits` (step -> a future of (Trainer,
    held-out objective)), so the walk can be replayed: to take its next step, or to find the
    steps it may ask for next under assumed outcomes."""

    def __init__(self, start: float, start_value: float, curve, decay_sum: float):
        self.start, self.start_value, self.decay_sum = start, start_value, decay_sum
        self.curve = np.asarray(curve, dtype=float)

    def run(self, fits: dict, assumed=None) -> tuple[float, list]:
        """(the best step, the (step, held-out objective) pairs tried in order); _Unknown
        where it asks for a step neither in `assumed` (step -> objective) nor done in `fits`
        (a fit's error is raised where the walk asks for its step)."""
        assumed = assumed or {}
        tried = [(self.start, self.start_value)]

        def at(step):
            if step in assumed:
                value = assumed[step]
            elif step in fits and fits[step].done():
                value = fits[step].result()[1]
            else:
                raise _Unknown(step)
            tried.append((step, value))
            return value

        def seen(step):
            """Was this step (a half-power of 3, as every step of the search) tried?"""
            return any(abs(math.log(step / s, 3)) < 0.25 for s, _ in tried)

        curve = self.curve
        best, best_value = self.start, self.start_value
        # smooth progress (its rises add up to less than SMOOTH of its fall): a step too small
        # to overfit or to be noisy in these epochs
        smooth = len(curve) > 1 and curve[0] > curve[-1] and \
            np.sum(np.maximum(np.diff(curve), 0)) < SMOOTH * (curve[0] - curve[-1])
        factors = (3.0, 1 / 3) if smooth else (1 / 3, 3.0)
        if len(curve) > 1 and np.argmin(curve) == 0:
            # the progress of one epoch at the calibrated step, over all the epochs: the
            # step times the decay factors' sum, to the nearest power of 3
            jump = 3.0 ** round(math.log(self.decay_sum, 3))
            if jump > 1:
                value = at(best / jump)
                if value < best_value:
                    best, best_value = best / jump, value
        for factor in factors:
            step, moved = best, False
            while len(tried) < STEP_SEARCH:
                step *= factor
                if seen(step):             # tried, and no lower than the best
                    break
                value = at(step)
                if not value < best_value:
                    break
                best, best_value, moved = step, value, True
            if moved or len(tried) >= STEP_SEARCH:
                break
        return best, tried

    def next_step(self, fits: dict, assumed=None):
        """The step the walk asks for next (None where it is done)."""
        try:
            self.run(fits, assumed)
        except _Unknown as unknown:
            return unknown.args[0]
        return None

    def next_steps(self, fits: dict, n: int) -> list:
        """Up to n steps the walk may ask for, nearest first: the one it asks for now, then
        those it asks for next if that one is lower than the best so far, if it is not, and
        so on (breadth first over the outcomes)."""
        steps, frontier = [], [{}]
        while frontier and len(steps) < n:
            assumed = frontier.pop(0)
            try:
                step = self.next_step(fits, assumed)
            except Exception:
                if not assumed:       # the walk itself gets to a fit that failed: it stands
                    raise
                continue              # (a guess that failed, where the walk may never get)
            if step is None:
                continue
            if step not in steps:
                steps.append(step)
            # a new best (lower than any objective and than those assumed before), or no better
            frontier += [{**assumed, step: -1e300 * (len(assumed) + 1)},
                         {**assumed, step: np.inf}]
        return steps


class _HogwildEstimator(BaseEstimator):
    """Parameters and training shared by the three estimators."""

    # the step search's candidates on SEARCH_SHARE of the rows where there are SEARCH_ROWS
    _search_on_part = True

    def __init__(self, spec, consts=None, epochs=None, step=None, decay=None, optimizer=None,
                 threads=None, sync="hogwild", order=None, seed=0, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=5, data=None):
        self.spec = spec
        self.consts = consts
        self.epochs = epochs
        self.step = step
        self.decay = decay
        self.optimizer = optimizer
        self.threads = threads
        self.sync = sync
        self.order = order
        self.seed = seed
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.data = data

    def _extra(self) -> dict:
        """The `data` argument checked (a dict by data names), as a new dict: what fit
        keeps in `data_` and gives to every Trainer call with the data it binds itself."""
        if self.data is None:
            return {}
        if not isinstance(self.data, dict) or not all(isinstance(k, str) for k in self.data):
            raise HogwildError(f"data must be a dict of the spec's other data by name (e.g. "
                               f"data={{'mu': 3.5}}), not {self.data!r}"[:300])
        return dict(self.data)

    def _new_trainer(self, module, step=None, threads=None):
        if step is None:
            step = self.step if self.step is not None else "auto"
        kwargs = dict(threads=threads or self._threads(),
                      epochs=self.epochs, step=step,
                      decay=self.decay, seed=self.seed,
                      sync=self.sync, order=self.order)
        if self.early_stopping:
            patience = self.n_iter_no_change
            if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) \
                    or patience < 1:
                raise HogwildError(f"n_iter_no_change must be a positive integer, not "
                                   f"{patience!r}")
            kwargs["patience"] = patience
        if self.optimizer is not None:
            kwargs["optimizer"] = self.optimizer
        trainer = module.Trainer(**kwargs)
        lent = getattr(self, "_lent", None)
        if lent is not None:          # inside _train: its checked data, reused (_lending)
            trainer._lent_data = lent[0]
            lent[1].append(trainer)
        return trainer

    def _train(self, module, n: int, bind, stratify=None):
        """Fit a fresh Trainer on `n` rows; bind(idx) gives the data the estimator binds (by
        spec names) of rows idx, bind(None) of all rows; `data_` (the `data` argument, the
        same for every row) goes with each. Sets trainer_, history_, n_iter_, step_search_."""
        self.step_search_ = None
        with self._lending():
            return self._train_lent(module, n, bind, stratify)

    @contextmanager
    def _lending(self):
        """Within one fit, every Trainer the estimator makes lays out the same arrays (all
        rows, the fit rows, the held-out rows) again and again: their checked layout is made
        once and lent to the rest (TrainerBase._checked_datum). Only here, where the
        estimator holds those arrays and nothing changes them; taken back from every trainer
        after, so a later call on trainer_ checks its data anew."""
        self._lent = ({}, [])
        try:
            yield
        finally:
            _, trainers = self._lent
            del self._lent
            for trainer in trainers:
                trainer._lent_data = None

    def _train_lent(self, module, n: int, bind, stratify=None):
        def take(idx):
            return {**bind(idx), **self.data_}

        rows = self._split_rows(n, stratify) \
            if self.early_stopping or self.step is None and n >= 2 else None
        if self.step is None and rows is not None:
            fit_rows, val_rows = rows
            part = self._search_on_part and not self.early_stopping and \
                len(fit_rows) >= SEARCH_ROWS
            if part:      # the candidates on a part of the rows, the refit on all (SEARCH_SHARE)
                fit_rows = self._subsample(fit_rows, stratify)
            data = take(fit_rows)
            trainer = self._search_step(module, data, take(val_rows), len(fit_rows),
                                        self._start(module, data), part)
            if not self.early_stopping:       # refit on every row at the chosen step
                trainer = self._refit(module, trainer, take(None))
        else:
            trainer = self._new_trainer(module)
            data, held_out = (take(rows[0]), take(rows[1])) if self.early_stopping else \
                (take(None), None)
            self._fit(trainer, data, held_out, self._start(module, data))
        self.trainer_ = trainer
        self.history_ = trainer.history
        self.n_iter_ = len(trainer.history)
        return self

    def _refit(self, module, candidate, data: dict):
        """The model on every row at the candidate's step. The candidates train on fewer
        threads than the refit, and a step at the edge of serial stability can be unstable on
        more (a linear regression on 45,000 rcv1-like rows at step 1: test R^2 0.954 on 1
        thread, from -21 to 0.86 on 2, atomic adds or not): a refit whose final objective on
        its rows exceeds the candidate's on its own by more than REFIT_SLACK - 1 of it (the
        same step and epochs on 1 / (1 - validation_fraction) of the rows: nearly equal
        where both are stable), or that diverges, is redone on the candidate's threads, where
        the step was chosen; where that diverges too the candidate is kept as trained, or,
        where it trained on part of the rows (SEARCH_SHARE), the model refitted at a third of
        the step (on the candidate's threads; the candidate where that diverges too)."""
        def limit(reached):
            return reached + (REFIT_SLACK - 1.0) * abs(reached) + 1e-12   # (objectives < 0 too)

        bound = limit(candidate.history[-1]["objective"])
        for threads in dict.fromkeys((self._threads(), candidate.search_threads)):
            refit = self._new_trainer(module, step=candidate.step, threads=threads)
            try:
                self._fit(refit, data, start=self._start(module, data))
            except DivergenceError:       # more rows, larger updates
                continue
            reached = refit.history[-1]["objective"]
            if reached > bound and candidate.search_part:
                # a candidate on part of the rows (SEARCH_SHARE) fits them closer than all
                # rows can be: its objective on all the rows bounds the refit's instead
                bound = max(bound, limit(float(candidate.objective(**data))))
            if reached <= bound or threads == candidate.search_threads:
                refit.threads = self._threads()   # (predict and objective on all of them)
                return refit
        if candidate.search_part:
            # a step chosen on part of the rows that diverges on all of them (the part may
            # have missed the rows that make it unstable): the step of the search's lattice
            # below it, on the candidate's threads, rather than a model of part of the rows
            refit = self._new_trainer(module, step=candidate.step / 3,
                                      threads=candidate.search_threads)
            try:
                self._fit(refit, data, start=self._start(module, data))
            except DivergenceError:
                return candidate
            refit.threads = self._threads()
            return refit
        return candidate

    @staticmethod
    def _fit(trainer, data: dict, validation=None, start=None):
        """A fresh trainer's fit on `data` (and `validation`) from the params `start` (a
        copy of them; None: the spec's initial params)."""
        if start is not None:
            trainer.params = {k: v.copy() for k, v in start.items()}
        if validation is None:
            return trainer.fit(**data)
        return trainer.fit(**data, validation=validation)

    def _start(self, module, data: dict) -> dict | None:
        """The params every Trainer fitted on `data` starts from; None: the spec's initial
        params (an estimator that starts elsewhere overrides this)."""
        return None

    def _search_step(self, module, data: dict, held_out: dict, rows: int,
                     initial=None, part=False):
        """The Trainer, fitted on `data`, whose step gives the lowest objective on `held_out`
        (_StepWalk says which steps, in which order). Every candidate trains on one thread
        per CANDIDATE_TERMS of the `rows` (below that: deterministic for a seed, the same
        walk at any `threads`), and as many candidates as the threads hold train side by
        side, the one the walk asks for and those it may ask for next
        (_StepWalk.next_steps). Every candidate starts from the params `initial` (_fit).
        Records (step, held-out objective) pairs in step_search_, in the walk's order."""
        total = _int_option("threads", self._threads(), 1, max_threads())
        each = min(total, max(1, rows // CANDIDATE_TERMS))
        threads = total // each          # candidates at once

        def fit_at(step):
            trainer = self._new_trainer(module, step=step, threads=each)
            trainer._start_only = True
            validation = None
            if self.early_stopping:
                validation = held_out
            elif step == "auto":     # the held-out objective per epoch: which way to walk
                validation = held_out
                trainer.patience = None          # (not the train line's: no early stop)
            try:
                self._fit(trainer, data, validation, initial)
                value = float(trainer.objective(**held_out))
            except DivergenceError:
                if step == "auto":    # below every restart of the calibrated step: stands
                    raise
                value = np.inf
            return trainer, value if np.isfinite(value) else np.inf

        with ThreadPoolExecutor(threads) as pool:
            start, start_value = fit_at("auto")
            curve = [h["validation_objective"] for h in start.history]
            walk = _StepWalk(float(start.step), start_value, curve,
                             sum(start.decay ** k for k in range(start.epochs)))
            fits = {}
            try:
                while (step := walk.next_step(fits)) is not None:
                    pending = [f for f in fits.values() if not f.done()]
                    if step not in fits:
                        # the step asked for and those the walk may ask for next, started
                        # together (they end about together: one started later could outlast
                        # the walk and hold up the refit)
                        for s in walk.next_steps(fits, threads + len(pending)):
                            if len(pending) >= threads:
                                break
                            if s not in fits:
                                fits[s] = pool.submit(fit_at, s)
                                pending.append(fits[s])
                    wait(pending, return_when=FIRST_COMPLETED)
            finally:                   # (the refit may take every thread: none left running)
                for f in fits.values():
                    f.cancel()
        best, self.step_search_ = walk.run(fits)
        trainer = start if best == walk.start else fits[best].result()[0]
        trainer.search_threads = each  # what it trained on (_refit)
        trainer.search_part = part     # on part of the rows not held out (SEARCH_SHARE)
        trainer.threads = total       # (predict and objective on the estimator's threads)
        return trainer

    def _threads(self) -> int:
        return self.threads if self.threads is not None else default_threads()

    def _subsample(self, rows: np.ndarray, stratify) -> np.ndarray:
        """SEARCH_SHARE of `rows` (sorted), drawn with `seed`, stratified by class: the rows
        in a random order, grouped by class, and of these evenly spaced ones (two of every
        three at SEARCH_SHARE 2/3), so each class keeps its share within a row."""
        rng = np.random.default_rng(self.seed)
        order = rows[rng.permutation(len(rows))]
        if stratify is not None:
            order = order[np.argsort(np.asarray(stratify)[order], kind="stable")]
        taken = np.floor(np.arange(len(order) + 1) * SEARCH_SHARE + 1e-9)   # rows kept so far
        return np.sort(order[np.diff(taken) > 0])

    def _split_rows(self, n, stratify):
        """(fit rows, validation rows), sorted, for early stopping and the step search:
        `validation_fraction` of the rows held out (stratified by class where every class has
        enough rows)."""
        frac = self.validation_fraction
        if isinstance(frac, bool) or not (isinstance(frac, (float, int)) and 0 < frac < 1):
            raise HogwildError(f"validation_fraction must be in (0, 1), not {frac!r}")
        rows = np.arange(n)
        try:
            fit_rows, val_rows = train_test_split(rows, test_size=frac, random_state=self.seed,
                                                  stratify=stratify)
        except ValueError:        # too few rows of some class to stratify, or to split at all
            if n < 2:
                raise EstimatorInputError(f"early_stopping needs at least 2 rows, got {n}") \
                    from None
            fit_rows, val_rows = train_test_split(rows, test_size=frac, random_state=self.seed)
        return np.sort(fit_rows), np.sort(val_rows)

    def _x_binding(self):
        """The module, X and y data of the spec; sets `data_`."""
        module = _module(self.spec, self.consts)
        extra = self._extra()
        X, y = _bind_xy(module.Trainer.spec, extra)
        self.data_ = extra
        return module, X, y

    def _validate_x(self, X, datum: ir.Data, reset: bool, y="no_validation", **kw):
        """scikit-learn's checks of X (and y); X as CSR for sparse data (a dense X converted
        once here, not by each of the search's fits), dense otherwise."""
        out = validate_data(self, X, y, reset=reset, dtype=np.float64,
                            accept_sparse="csr" if datum.kind == "sparse" else False, **kw)
        X, y = out if isinstance(out, tuple) else (out, None)
        if datum.kind == "sparse" and not sp.issparse(X):
            X = sp.csr_matrix(X)
        return (X, y) if isinstance(out, tuple) else X

    def _raw_predict(self, X):
        check_is_fitted(self, "trainer_")
        X_datum, _ = _bind_xy(self.trainer_.spec, self.data_)
        X = self._validate_x(X, X_datum, reset=False)
        return self.trainer_.predict(**{X_datum.name: X}, **self.data_)

    def _tags_x(self, tags):
        spec = _checked(self)
        try:
            tags.input_tags.sparse = spec is not None and \
                _bind_xy(spec, _extra_names(self))[0].kind == "sparse"
        except HogwildError:
            pass
        return tags


# ---------------------------------------------------------------- classifier and regressor


class HogwildClassifier(ClassifierMixin, _HogwildEstimator):
    """A classifier on a spec with a label datum: two classes onto `sign` or `binary` labels,
    more onto `index(...)` labels. `predict_proba` exists where the spec's `predict` is a
    probability (a sigmoid at its top: proba = [1 - p, p]); `decision_function` is the
    margin (for a sigmoid, its logit: log(p / (1 - p)), +-inf where p rounds to 0 or 1).
    Fitted: `classes_`, `trainer_` (the Trainer: params, history), `history_`, `n_iter_`,
    `n_features_in_`, `data_` (the `data` argument as fitted, given to every predict)."""

    def __init__(self, spec="logreg", consts=None, epochs=None, step=None, decay=None,
                 optimizer=None, threads=None, sync="hogwild", order=None, seed=0,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5,
                 data=None):
        super().__init__(spec, consts, epochs, step, decay, optimizer, threads, sync, order,
                         seed, early_stopping, validation_fraction, n_iter_no_change, data)

    def fit(self, X, y):
        """Train on X (n_samples x n_features, sparse or dense) and labels y of any type."""
        module, X_datum, y_datum = self._x_binding()
        X, y = self._validate_x(X, X_datum, reset=True, y=y)
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        kind = y_datum.kind
        if len(classes) < 2:
            only = np.asarray(classes[0]).item()       # 1.0, not np.float64(1.0)
            raise EstimatorInputError(f"y holds 1 class ({only!r}): a classifier needs at "
                                      "least 2 classes")
        if kind in ("sign", "binary"):
            if len(classes) > 2:
                shipped_index = ", ".join(f"spec={n!r}" for n in _index_label_specs())
                raise EstimatorInputError(
                    f"Only binary classification is supported by model "
                    f"'{module.Trainer.spec.model}': its labels '{y_datum.name}' are {kind} "
                    f"data, and y holds {len(classes)} classes; more classes need a spec with "
                    "index(...) labels" + (f" (shipped: {shipped_index})" if shipped_index
                                           else ""))
            labels = codes * 2.0 - 1.0 if kind == "sign" else codes.astype(np.float64)
        elif kind.startswith("index"):
            room = _label_room(module.Trainer.spec, y_datum, X_datum, X, self.data_)
            if room is not None and len(classes) > room[0]:
                raise EstimatorInputError(
                    f"y holds {len(classes)} classes, but model '{module.Trainer.spec.model}' "
                    f"has room for {room[0]}: its labels '{y_datum.name}' ({y_datum}) index "
                    f"{y_datum.of}, whose size is fixed by {room[1]}; give {y_datum.of} one "
                    "entry per class" + (f" (consts={{{y_datum.of!r}: {len(classes)}}})"
                                         if room[1].startswith("const") else ""))
            labels = codes
        else:
            raise HogwildError(
                f"model '{module.Trainer.spec.model}' has {kind} labels '{y_datum.name}': a "
                "classifier needs sign, binary or index(...) labels (HogwildRegressor fits "
                "real ones)")
        self.classes_ = classes
        return self._train(module, X.shape[0],
                           lambda idx: {X_datum.name: X if idx is None else X[idx],
                                        y_datum.name: labels if idx is None else labels[idx]},
                           stratify=codes)

    def _scores(self, X):
        """The predict values and whether they are probabilities."""
        out = self._raw_predict(X)
        return out, _is_probability(_predicting_block(self.trainer_.spec).predict)

    def decision_function(self, X):
        """Binary: one margin per row, > 0 for classes_[1]. More classes: one row of scores
        (log-probabilities for a softmax; for a predict that is a class index, argmax(z), 1
        at that class and 0 elsewhere) per sample."""
        out, is_proba = self._scores(X)
        _, y_datum = _bind_xy(self.trainer_.spec, self.data_)
        if out.ndim == 1 and y_datum.kind.startswith("index"):
            # a class a spec's dim has room for but y never held cannot be named: clipped
            codes = np.clip(np.rint(out).astype(np.intp), 0, len(self.classes_) - 1)
            return np.eye(len(self.classes_))[codes]
        if out.ndim == 2:
            if is_proba:
                with np.errstate(divide="ignore"):
                    out = np.log(out)
            if out.shape[1] == 2:       # two classes: one margin, > 0 for classes_[1]
                return out[:, 1] - out[:, 0]
            return out
        if is_proba:
            with np.errstate(divide="ignore"):
                return np.log(out) - np.log1p(-out)
        return out - 0.5 if y_datum.kind == "binary" else out

    def predict(self, X):
        """The class of each row of X (one of classes_)."""
        d = self.decision_function(X)
        return self.classes_[np.argmax(d, axis=1) if d.ndim == 2 else (d > 0).astype(int)]

    def _has_proba(self):
        spec = _checked(self)
        if spec is not None and not _is_probability(_predicting_block(spec).predict):
            # scikit-learn's own message names no reason; this one is its cause
            raise AttributeError(f"model '{spec.model}' does not predict a probability (its "
                                 "predict line has no sigmoid or softmax at its top): use "
                                 "decision_function, or a spec that predicts one "
                                 "(spec='logreg', 'softmax')")
        return spec is not None

    @available_if(_has_proba)
    def predict_proba(self, X):
        """Class probabilities, columns in the order of classes_ (binary: [1 - p, p])."""
        out, _ = self._scores(X)
        return out if out.ndim == 2 else np.column_stack([1.0 - out, out])

    def __sklearn_tags__(self):
        tags = self._tags_x(super().__sklearn_tags__())
        spec = _checked(self)
        try:
            tags.classifier_tags.multi_class = spec is None or \
                _bind_xy(spec, _extra_names(self))[1].kind.startswith("index")
        except HogwildError:
            pass
        return tags


class HogwildRegressor(RegressorMixin, _HogwildEstimator):
    """A regressor on a spec with `real` labels y; `predict` is the spec's predict. The default
    spec, `linreg`, is least squares with an intercept. Fitted: `trainer_`, `history_`,
    `n_iter_`, `n_features_in_`, `data_`."""

    def __init__(self, spec="linreg", consts=None, epochs=None, step=None, decay=None,
                 optimizer=None, threads=None, sync="hogwild", order=None, seed=0,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5,
                 data=None):
        super().__init__(spec, consts, epochs, step, decay, optimizer, threads, sync, order,
                         seed, early_stopping, validation_fraction, n_iter_no_change, data)

    def fit(self, X, y):
        """Train on X (n_samples x n_features, sparse or dense) and real targets y."""
        module, X_datum, y_datum = self._x_binding()
        if y_datum.kind != "real":
            raise HogwildError(f"model '{module.Trainer.spec.model}' has {y_datum.kind} labels "
                               f"'{y_datum.name}': a regressor needs real ones (use "
                               "HogwildClassifier)")
        X, y = self._validate_x(X, X_datum, reset=True, y=y, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        return self._train(module, X.shape[0],
                           lambda idx: {X_datum.name: X if idx is None else X[idx],
                                        y_datum.name: y if idx is None else y[idx]})

    def _start(self, module, data: dict) -> dict | None:
        """The spec's initial params with its intercept (_intercept) moved to their mean
        residual on `data`, so that the mean prediction starts at the mean target: SGD at the
        step the rest of the model can take would move an intercept that starts at 0 only a
        little way towards targets far from 0 (fm on load_diabetes, targets about 150: R^2
        -1.85 from 0, bench/results/sklearn.md). A start only: the fit minimises the same
        objective. None where the spec has no intercept."""
        intercept = _intercept(module.Trainer.spec)
        if intercept is None:
            return None
        _, y_datum = _bind_xy(module.Trainer.spec, self.data_)
        trainer = self._new_trainer(module, step=1.0)
        trainer.epochs, trainer.patience = 0, None       # initialise the params only
        trainer.fit(**data)
        inputs = {k: v for k, v in data.items() if k != y_datum.name}
        residual = np.mean(data[y_datum.name] - trainer.predict(**inputs))
        if np.isfinite(residual):
            trainer.params[intercept][...] += residual
        return trainer.params

    def predict(self, X):
        """The spec's predict for each row of X."""
        return self._raw_predict(X)

    def __sklearn_tags__(self):
        return self._tags_x(super().__sklearn_tags__())


# ---------------------------------------------------------------- recommender


def _is_frame(X) -> bool:
    """A DataFrame, duck-typed (pandas is not needed): columns and column access."""
    return hasattr(X, "columns") and not isinstance(X, np.ndarray) and not sp.issparse(X)


def _frame_triples(R):
    """(user ids, item ids, ratings) of a DataFrame whose first three columns are user, item,
    rating."""
    if len(R.columns) < 3:
        raise EstimatorInputError("a DataFrame R needs (user, item, rating) columns, got "
                                  f"{len(R.columns)} column(s)")
    cols = [np.asarray(R[c]) for c in list(R.columns)[:3]]
    try:
        ratings = np.asarray(cols[2], dtype=np.float64)
    except (TypeError, ValueError):
        raise EstimatorInputError("the ratings (third column of R) must be numbers") from None
    if not np.all(np.isfinite(ratings)):
        raise EstimatorInputError("the ratings (third column of R) hold NaN or inf: give only "
                                  "the ratings made")
    return cols[0], cols[1], ratings


def _entries(X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, values) of the ratings of a validated users x items matrix: a sparse
    one's stored entries, a dense one's entries, NaN (not rated) left out of either."""
    if sp.issparse(X):
        coo = X.tocoo()
        u, v, r = coo.row, coo.col, coo.data
    else:
        u, v = np.nonzero(~np.isnan(X))
        return u.astype(np.int64), v.astype(np.int64), X[u, v]
    keep = ~np.isnan(r)
    return u[keep].astype(np.int64), v[keep].astype(np.int64), r[keep]


def _statement_end(lines: list, i: int) -> int:
    """The line after the statement starting at line i (a statement goes on while a bracket
    is open)."""
    depth = 0
    while i < len(lines):
        text = lines[i].split("#", 1)[0]
        depth += sum(text.count(c) for c in "([") - sum(text.count(c) for c in ")]")
        i += 1
        if depth <= 0:
            break
    return i


def _block_reads(block: ir.Block) -> tuple[set, set, set]:
    """(data, params, dims) a block reads: in its losses, regs and predict, the data its
    sparse rows, index data and sample weights come from, and the dims its indices run over."""
    data, params, dims = {block.over} if block.kind == "entries" else set(), set(), set()
    seen: set = set()

    def var(v: ir.Var):
        dims.add(v.dim)
        if v.kind in ("sparse", "indirect"):
            data.add(v.source[0])
        if v.kind in ("sparse", "indirect", "draw"):
            var(v.at)

    todo = [e for e, _ in block.losses] + [r.expr for r in block.regs] + \
        ([block.predict] if block.predict is not None else [])
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        if isinstance(node, ir.DataAt):
            data.add(node.name)
        if isinstance(node, ir.ParamAt):
            params.add(node.name)
        for v in getattr(node, "index", ()):
            var(v)
        if isinstance(node, (ir.Sum, ir.Reduce, ir.ArgMax)):
            var(node.var)
        todo.extend(node.children())
    for s in block.samples:
        dims.add(s.var.dim)
        if s.weights:
            data.add(s.weights)
    for v in block.vars:
        dims.add(v.dim)
    return data, params, dims


def _fold_in_spec(spec: ir.Spec) -> tuple[str, list, list]:
    """The spec that folds new users in: (its text, the user-side params, the frozen ones).
    It is the predicting block alone, with the params that have no position over the user
    dim (the first dim of R) declared as data (frozen: the fitted values are given as data)
    and the regs on them dropped; the params over the user dim stay params, one row per new
    user. The language has no 3-D data, so a 3-D param without the user dim cannot be frozen."""
    block = _predicting_block(spec)
    user_dim, item_dim = spec.datum(block.over).dims
    if user_dim == item_dim:
        raise HogwildError(f"decision_function(X) cannot fold new users in: R's rows and "
                           f"columns are both dim '{user_dim}', so a new row would also be a "
                           "new column")
    data, params, dims = _block_reads(block)
    kept = [p for p in spec.params if p.name in params]
    user = [p for p in kept if user_dim in p.dims]
    frozen = [p for p in kept if user_dim not in p.dims]
    for p in user:
        if p.dims.count(user_dim) > 1:
            raise HogwildError(f"decision_function(X) folds new users in by training the "
                               f"params over dim '{user_dim}' alone; param '{p.name}' runs "
                               "over it twice")
    for p in frozen:
        if len(p.dims) > 2:
            raise HogwildError(f"decision_function(X) folds new users in with the other "
                               f"params held fixed as data, but param '{p.name}' is "
                               f"{len(p.dims)}-D and the language has no 3-D data")
    for d in spec.data:
        if d.name in data and d.name != block.over and user_dim in d.dims:
            raise HogwildError(f"decision_function(X) cannot fold new users in: the "
                               f"predicting block reads data '{d.name}' over dim "
                               f"'{user_dim}', which a new user has none of")
    for p in kept:
        dims.update(p.dims)
    for d in spec.data:
        if d.name in data:
            dims.update(d.dims)
    lines = spec.source.splitlines()
    start = block.line - 1
    end = _statement_end(lines, start)
    while end < len(lines) and (not lines[end].strip() or lines[end][:1] in " \t#"):
        end += 1
    body = []
    fixed = {p.name for p in frozen}
    regs = {}
    for r in block.regs:
        regs.setdefault(r.line, []).append(r)
    i = start
    while i < end:
        stop = _statement_end(lines, i)
        here = regs.get(i + 1, ())
        if any(r.param in fixed for r in here):
            targets = [r.target for r in here if r.param not in fixed]
            if targets:
                r = here[0]
                indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
                body.append(f"{indent}reg {r.kind}({ir.fmt_number(r.lam)}) on "
                            f"{', '.join(targets)}" + (" unscaled" if r.unscaled else ""))
        else:
            body += lines[i:stop]
        i = stop
    out = [f"model {spec.model}_fold_in"]
    used = [d for d in spec.dims if d in dims]
    if used:
        out.append("dim " + ", ".join(used))
    out += [f"const {n} = {v}" for n, v in spec.consts]
    out += [str(d) for d in spec.data if d.name in data]
    for p in frozen:
        shape = f"[{', '.join(p.dims)}]" if p.dims else ""
        out.append(f"data {p.name}{shape} : {'dense' if len(p.dims) == 2 else 'real'}")
    out += [str(p) for p in user]
    return "\n".join(out + body) + "\n", user, frozen


def _plain(x):
    """A numpy scalar as the Python value it holds (for messages: 'a', not np.str_('a'))."""
    return x.item() if isinstance(x, np.generic) else x


def _positions(ids: np.ndarray, query, what: str) -> np.ndarray:
    """Positions of `query` ids among the sorted known `ids`; unknown ids are an error."""
    q = np.asarray(query)
    try:
        pos = np.searchsorted(ids, q)
        known = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == q)
    except TypeError:
        known = np.zeros(q.shape, dtype=bool)
        pos = known
    if not np.all(known):
        bad = q.ravel()[np.flatnonzero(~np.ravel(known))[0]]
        raise EstimatorInputError(f"unknown {what} id {_plain(bad)!r}: not in the data given to "
                                  f"fit ({len(ids)} {what}s known); this model has no fallback "
                                  "for unseen ids")
    return np.asarray(pos, dtype=np.int64)


class HogwildRecommender(_HogwildEstimator):
    """A recommender on a spec whose predicting block runs over the stored entries of sparse
    data, `for (u, v) in r` (matrix completion: `mc`).

    `fit(R)` takes a users x items matrix, whose row and column numbers are the user and item
    ids: scipy.sparse (its stored entries are the ratings) or dense (every entry a rating); in
    either, NaN means "not rated"; or a DataFrame (duck-typed: pandas is not needed) whose
    first three columns are user, item, rating, with ids of any sortable type (split it by
    rows to cross-validate over ratings). One rating per (user, item) pair: a pair given twice
    is an EstimatorInputError. An (n, 3) array is a matrix of 3 items, never triples.

    `predict(users, items)` scores (user, item) pairs by id; `recommend(user, n)` ranks items.
    An id not seen by `fit` is an EstimatorInputError: there is no fallback score.
    `decision_function(X)` folds new users in: each row of X (n_features_in_ = the fitted
    items, read like fit's matrices) is one user's ratings; the params over the user dim are
    trained on that row alone, starting from the mean of the fitted users', with every other
    param held at its fitted value (the spec's predicting block only, for the fitted number of
    epochs at the fitted step, terms in stored order), and the row's predicted score of every
    fitted item is returned (n_rows x n_items). A row depends on no other row, bit for bit at
    threads=1 (with `sample` lines each row is folded in by a fit of its own: the draws are
    one stream over a fit's terms), but for a whole-param reg on a user param (`reg l2 on bu`
    spreads its penalty over every term given). `predict(X)` (one
    argument) is the best-scored item of each row, `item_ids_` at the argmax (as a classifier's
    predict is the argmax of its decision_function). `score(R)` is the R^2 of the predicted
    ratings: of `predict(users, items)` for a DataFrame, of the fold-in for a matrix.
    The spec's other data come from `data` (funksvd's global mean: data={"mu": ...}); data over
    the user or item dim is indexed by position in `user_ids_` / `item_ids_`.
    Fitted: `user_ids_`, `item_ids_` (sorted), `seen_` (users x items, the pattern of R),
    `n_features_in_` (the number of items), `trainer_`, `history_`, `n_iter_`, `data_`."""

    # the step search's candidates on every rating not held out: half of them would halve
    # each user's and item's updates, a change to the problem not measured (SEARCH_SHARE is
    # for rows of X)
    _search_on_part = False

    def __init__(self, spec="mc", consts=None, epochs=None, step=None, decay=None,
                 optimizer=None, threads=None, sync="hogwild", order=None, seed=0,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=5,
                 data=None):
        super().__init__(spec, consts, epochs, step, decay, optimizer, threads, sync, order,
                         seed, early_stopping, validation_fraction, n_iter_no_change, data)

    @staticmethod
    def _bind_r(spec: ir.Spec, extra=()) -> str:
        """The name of R's datum; every other datum must be named in `extra`."""
        block = _predicting_block(spec)
        if block.kind != "entries":
            raise HogwildError(
                f"model '{spec.model}' cannot be bound to fit(R): a recommender needs a "
                "predicting block over the stored entries of sparse data ('for (u, v) in r'); "
                f"it declares {'; '.join(map(str, spec.data)) or 'no data'}")
        per_rating = {block.over} | {c for c, r in _entry_companions(spec).items()
                                     if r == block.over}
        _check_extra(spec, extra, lambda d: d.name in per_rating, "rating of R")
        _check_missing(spec, [d for d in spec.data if d.name == block.over], extra, "fit(R)")
        return block.over

    def _matrix(self, X, reset: bool):
        """scikit-learn's checks of a users x items matrix (NaN allowed: not rated)."""
        return validate_data(self, X, reset=reset, dtype=np.float64,
                             accept_sparse=("csr", "csc", "coo"), ensure_all_finite="allow-nan")

    def fit(self, R, y=None):
        """Train on the ratings R; y is ignored (scikit-learn's convention)."""
        module = _module(self.spec, self.consts)
        extra = self._extra()
        name = self._bind_r(module.Trainer.spec, extra)
        self.data_ = extra
        if _is_frame(R):
            users, items, ratings = _frame_triples(R)
            try:
                self.user_ids_, u = np.unique(users, return_inverse=True)
                self.item_ids_, v = np.unique(items, return_inverse=True)
            except TypeError:
                raise EstimatorInputError("user and item ids must be sortable (all numbers or "
                                          "all strings)") from None
            shape = (len(self.user_ids_), len(self.item_ids_))
            self.n_features_in_ = shape[1]
            if hasattr(self, "feature_names_in_"):     # from an earlier fit on a matrix
                del self.feature_names_in_
        else:
            R = self._matrix(R, reset=True)
            u, v, ratings = _entries(R)
            shape = R.shape
            self.user_ids_, self.item_ids_ = np.arange(shape[0]), np.arange(shape[1])
        if len(ratings) == 0:
            raise EstimatorInputError("R holds no ratings")
        u, v = np.asarray(u, dtype=np.int64), np.asarray(v, dtype=np.int64)
        keys, counts = np.unique(u * shape[1] + v, return_counts=True)
        # A pair rated twice is a re-rating or a repeated row: the estimator cannot tell which
        # (to the Trainer two entries are two observations, LANGUAGE.md), a held-out split
        # could train on one copy and score the other, and predict scores a pair once.
        if np.any(counts > 1):
            k = keys[np.argmax(counts > 1)]
            raise EstimatorInputError(
                f"R rates item {_plain(self.item_ids_[k % shape[1]])!r} {counts.max()} times for "
                f"user {_plain(self.user_ids_[k // shape[1]])!r}: give one rating per (user, "
                "item) pair (e.g. the mean, or the latest)")
        self.seen_ = sp.csr_matrix((np.ones(len(u), dtype=bool), (u, v)), shape=shape)

        def take(idx):
            idx = slice(None) if idx is None else idx
            return {name: sp.csr_matrix((ratings[idx], (u[idx], v[idx])), shape=shape)}

        return self._train(module, len(ratings), take)

    def _scores(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Predict values of (user, item) index pairs, in the order given."""
        shape = (len(self.user_ids_), len(self.item_ids_))
        keys, inverse = np.unique(u * shape[1] + v, return_inverse=True)
        pairs = sp.csr_matrix((np.ones(len(keys)), (keys // shape[1], keys % shape[1])),
                              shape=shape)
        name = self._bind_r(self.trainer_.spec, self.data_)
        return self.trainer_.predict(**{name: pairs}, **self.data_)[inverse.ravel()]

    def decision_function(self, X):
        """Fold-in: the predicted score of every fitted item (columns, in item_ids_ order) for
        each row of X, a new user's ratings (see the class docstring)."""
        check_is_fitted(self, "trainer_")
        X = self._matrix(X, reset=False)
        u, v, ratings = _entries(X)
        return self._fold_in(sp.csr_matrix((ratings, (u, v)), shape=X.shape))

    def _fold_in(self, R: sp.csr_matrix) -> np.ndarray:
        """decision_function on the ratings R (rows: new users; columns: the fitted items)."""
        t = self.trainer_
        n, m = R.shape
        text, user, frozen = _fold_in_spec(t.spec)
        if not user:           # no param depends on the user: every user scores alike
            scores = self._scores(np.zeros(m, dtype=np.int64), np.arange(m, dtype=np.int64))
            return np.tile(scores, (n, 1))
        module = _module(text, None)
        block = _predicting_block(module.Trainer.spec)
        if block.samples and n > 1:
            # the draws of `sample` lines are one stream over the terms of a fit: one fit per
            # row keeps each row's draws, hence its scores, free of the other rows
            return np.vstack([self._fold_in(R[i]) for i in range(n)])
        fold = module.Trainer(threads=t.threads, epochs=self.n_iter_, step=t.step,
                              decay=t.decay, seed=t.seed, sync=t.sync, optimizer=t.optimizer,
                              shuffle=False)
        users = t.spec.datum(_predicting_block(t.spec).over).dims[0]
        params = {}
        for p in user:
            axis = p.dims.index(users)
            mean = t.params[p.name].mean(axis=axis, keepdims=True)
            params[p.name] = np.repeat(mean, n, axis=axis)
        fold.params = params
        declared = {d.name for d in module.Trainer.spec.data}
        data = {k: v for k, v in self.data_.items() if k in declared}
        data.update({p.name: t.params[p.name] for p in frozen})
        if R.nnz and fold.epochs:
            fold.fit(**{block.over: R}, **data)
        every = sp.csr_matrix((np.ones(n * m), np.tile(np.arange(m), n),
                               np.arange(0, n * m + 1, m)), shape=(n, m))
        return fold.predict(**{block.over: every}, **data).reshape(n, m)

    def predict(self, users, items=None):
        """One score per (user, item) pair, users and items 1-D arrays of ids; or, with one
        argument X (a users x items matrix of new users' ratings), the best-scored item of each
        row (the argmax of decision_function)."""
        check_is_fitted(self, "trainer_")
        if items is None:
            if np.ndim(users) == 1:
                raise EstimatorInputError(
                    "predict(users) without items: predict(users, items) scores (user, item) "
                    "pairs by id; with one argument, predict(X) takes a 2-D users x items "
                    "matrix of new users' ratings (Reshape your data with X.reshape(1, -1) "
                    "if it is one user's)")
            return self.item_ids_[np.argmax(self.decision_function(users), axis=1)]
        u = _positions(self.user_ids_, np.ravel(users), "user")
        v = _positions(self.item_ids_, np.ravel(items), "item")
        if u.shape != v.shape:
            raise EstimatorInputError(f"users and items must have the same length, got "
                                      f"{len(u)} and {len(v)}")
        return self._scores(u, v) if len(u) else np.empty(0)

    def recommend(self, user, n=10, exclude_seen=True):
        """The ids of the n best-scored items for `user`, best first (without the items the
        user rated in fit's R when exclude_seen)."""
        check_is_fitted(self, "trainer_")
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 0:
            raise EstimatorInputError(f"n must be a non-negative integer (how many items to "
                                      f"recommend), not {n!r}")      # -1 gave none, in silence
        u = int(_positions(self.user_ids_, np.array([user]), "user")[0])
        candidates = np.arange(len(self.item_ids_))
        if exclude_seen:
            seen = self.seen_.indices[self.seen_.indptr[u]:self.seen_.indptr[u + 1]]
            candidates = np.setdiff1d(candidates, seen)
        scores = self._scores(np.full(len(candidates), u), candidates)
        best = candidates[np.argsort(-scores, kind="stable")[:int(n)]]
        return self.item_ids_[best]

    def score(self, R, y=None):
        """R^2 of the predicted against the given ratings of R (higher is better): by id for
        a DataFrame, by fold-in (decision_function) for a matrix."""
        if _is_frame(R):
            users, items, ratings = _frame_triples(R)
            return float(r2_score(ratings, self.predict(users, items)))
        check_is_fitted(self, "trainer_")
        R = self._matrix(R, reset=False)
        u, v, ratings = _entries(R)
        scores = self._fold_in(sp.csr_matrix((ratings, (u, v)), shape=R.shape))
        return float(r2_score(ratings, scores[u, v]))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = True        # a dense matrix's NaN: not rated
        return tags
