"""Stage 7, the Trainer: what a generated module's `Trainer` is (API.md).

The kernels trust everything they are given, so this module checks everything first: data
names, kinds, shapes, dims that must agree, indices in range, NaN/inf, label values. It then
converts the data once into the kernel's layout (CSR with int64 row pointers and int32
columns, values in the module's dtype (float64, or float32: API.md), the row of each stored
entry for entry blocks, 1/deg arrays for the degree split), and runs epochs: a visit order, the step schedule `step * decay^epoch`, the
objective after every epoch, divergence detection, history and an optional progress bar.
"""
from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import math
import numbers
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import build, calibrate, ir, lower
from .check import PEER_TRAIN_KEYS, check
from .derive import gradients_text
from .errors import DataError, DivergenceError, HogwildError

SYNC_MODES = {"hogwild": 0, "atomic": 1, "lock": 2}
OPTIMIZERS = {"sgd": 0, "adagrad": 1, "adagrad_row": 2}   # API.md, "Update rules"
ORDERS = ("shuffle", "chunks", "stored")
DEFAULTS = {"step": 0.05, "decay": 0.9, "epochs": 10}
# AdaGrad's accumulators already shrink its steps: on top of them the sgd default decay made
# it stop short (bench/results/no_tuning.md: at decay 1, adagrad at its calibrated default
# met the no-tuning target on 4 shipped specs instead of 2, its best step on 6 instead of 4)
ADAGRAD_DECAY = 1.0
# The default visit order (docs/api.md, "order"): every term in a fresh random order where all
# the arrays the terms read fit in CACHE_BYTES (a last-level cache: a random visit then costs
# little), else chunks of consecutive terms spanning about CHUNK_BYTES of the data each (memory
# is read in order), but at most CHUNK_TERMS terms (longer runs of neighbouring terms cost SGD
# accuracy: bench/results/order.md measures these choices).
CACHE_BYTES = 8 << 20
CHUNK_BYTES = 32 << 10
CHUNK_TERMS = 256
# Hot rows on per-thread replicas (hogwild and sgd on several threads; issue 19 item 2): a row
# of a replicable param is hot when at least HOT_SHARE of the terms touch it. A param with a
# hot row is replicated whole where every thread's two copies of it (its own, and its values
# at the last merge) fit in REPLICA_BYTES per thread (a share of a core's L2 cache; the
# params by their most touched row first): the updates then run on the thread's copy with no
# lookup, and a thread merges a row touched by a share s of the terms every MERGE_STEPS / s
# terms, about every MERGE_STEPS of its own steps on it (it misses about MERGE_STEPS x
# (threads - 1) steps of the others on a hot row; a term costs about (values it touches) /
# MERGE_STEPS values merged, where plain hogwild hands a hot row's cache line over at nearly
# every touch), and at the latest every MERGE_COST x (values replicated) / (values a term
# touches) terms (merging all of them then costs about 1/MERGE_COST of the updates between;
# on 800,000 RCV1-shaped rows, 2 threads over 1: 1.50x at 8, 1.74x at 32, 1.75x at 64 and
# 256, the objective within 0.3% of the serial one in each: bench/results/replica_merge_cost.md)
# and EPOCH_MERGES times a thread's share of the epoch (a delay that is a small share of
# it, where every row is about as hot, as in small dense-ish data). Where merging that often
# would cost more than half the updates (a model small beside its terms, in small data),
# nothing is replicated whole. On REPLICA_THREADS threads or more, the hot rows of the other params go
# on replicas too, the most touched first, up to HOT_VALUES values in all, looked up through a
# map on every access (below 4 threads its cost exceeded the hand-offs it saved), merged
# every MERGE_DELAY / threads terms (at least MIN_MERGE_TERMS): a thread misses about
# MERGE_DELAY terms' steps of the others on a hot row, whatever the threads. Each change
# counts MERGE_WEIGHT times (1: every step is kept; 1/threads would follow the mean of the
# threads' paths, DimmWitted's model averaging, and converged markedly slower).
# bench/results/hot_replicas*.md measures these choices.
REPLICA_BYTES = 1 << 20
# Params are replicated whole on at most WHOLE_THREADS threads: each merge adds a thread's
# steps since its last one, so T threads add up about T runs of stale steps on a hot row; on
# 800,000 RCV1-shaped rows (16-core Xeon) 2 and 3 threads ended within 1.3% of the serial
# objective, 4 threads 6-23% above it and 8 and 16 diverged (bench/results/replica_merge.md). From REPLICA_THREADS
# on, the hot rows' merge interval shrinks with the threads instead (MERGE_DELAY / threads).
WHOLE_THREADS = 3
MERGE_STEPS = 64
MERGE_COST = 32
EPOCH_MERGES = 16
REPLICA_THREADS = 4
HOT_SHARE = 0.002
HOT_VALUES = 256
MERGE_DELAY = 256
MIN_MERGE_TERMS = 16
MERGE_WEIGHT = 1.0
# The history's objective after an epoch other than a fit's last: exact on up to
# EVAL_MIN_TERMS terms, else the mean over one fixed random sample of 1/EVAL_SHARE of the
# terms, at least EVAL_MIN_TERMS and at most EVAL_TERMS of them. A sample costs more per term
# than an epoch (rows at random): the rule before (exact up to 10,000 terms, else 10,000 of
# them) made the SVM's 1-thread fits on 5,000-150,000 RCV1-shaped rows 1.11-1.30x longer
# (bench/results/history_sample.md).
EVAL_TERMS = 10_000
EVAL_MIN_TERMS = 2_000
EVAL_SHARE = 64
EXPLODED = 1e12          # objective growth over its initial value that counts as divergence
META_KEY = "__hogwild__"  # the metadata entry of a saved .npz (param names never start with _)
SAVE_FORMAT = 2


def bind(module_name: str, module_file: str, spec_text: str, consts: dict, signature: str,
         kernels: str, dtype: str = "float64"):
    """Build the Trainer class and gradients() of one generated module (its kernels store
    params, data values and update-rule state in `dtype`)."""
    spec = check(spec_text, consts)
    folder = Path(module_file).resolve().parent
    parent = module_name.rpartition(".")[0] or f"hog_{signature}"
    ext_module = f"{parent}.{kernels}"
    if ext_module in sys.modules:
        ext = sys.modules[ext_module]
    else:
        so = build.find_extension(folder, kernels)
        if not build.stamp_matches(so, signature):
            so = _fresh_kernels(spec, signature, kernels, module_file, dtype)
        ext = build.import_from_path(ext_module, so)
    if getattr(ext, "DTYPE", "float64") != dtype:      # the kernels trust the arrays' type
        raise HogwildError(f"{module_file}: its kernels store {getattr(ext, 'DTYPE', 'float64')}"
                           f", not {dtype}: regenerate it with `hogwildc compile`")
    fields = tuple(lower.layout(spec, dtype))
    if getattr(ext.Kernel, "fields", None) != fields:     # the one contract, both sides
        raise HogwildError(f"{module_file}: its kernels' layout is not this version's: "
                           "regenerate it with `hogwildc compile`")
    trainer = type("Trainer", (TrainerBase,), {
        "spec": spec, "kernels": ext, "signature": signature, "__module__": module_name,
        "dtype": np.dtype(dtype), "fields": fields,
        "_keys": {(f.role, f.of): f.key for f in fields},
        "__doc__": f"SGD trainer of model '{spec.model}' (see TrainerBase)."})

    def gradients() -> str:
        """The derived per-term gradients, as readable math."""
        return gradients_text(spec)

    return trainer, gradients


def _fresh_kernels(spec: ir.Spec, signature: str, kernels: str, module_file: str,
                   dtype: str):
    """The extension for a module whose folder has none built from its own sources (a fresh
    checkout of generated/, a compile that failed or was killed half-way): built from the
    spec in the module, in the build cache. A .so of other sources is never imported: its
    layout differs, and the kernels trust it (a segfault)."""
    from .emit import emit, signature as signature_of
    if signature_of(spec, dtype) != signature:
        raise HogwildError(f"{module_file} was generated by another version of hogwild-dsl "
                           "(or edited) and has no kernels built from it: regenerate it with "
                           "`hogwildc compile`")
    folder = build.cached_build(build.cache_key(signature), emit(spec, kernels, dtype=dtype),
                                f"{kernels}.pyx", kernels, None, signature)
    return build.find_extension(folder, kernels)


def _available_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class TrainerBase:
    """Lock-free parallel SGD on one spec's objective. See API.md for the contract."""
    spec: ir.Spec
    kernels = None
    signature: str = ""
    dtype = np.dtype(np.float64)                   # storage of params, data values, state
    optimizer = "sgd"                              # (trainers pickled before update rules)
    patience = None                                # (trainers pickled before patience)
    best_epoch = None
    calibration = None                             # (trainers pickled before the default step)
    _accumulators: dict = {}                       # read-only default; set per instance
    replicas = True                                # (trainers pickled before replicas)
    _start_only = False    # the calibration's first stage alone (calibrate.py; sklearn.py)
    fields: tuple = ()                             # the kernels' layout (lower.layout)
    _keys: dict = {}                               # (role, of) -> key of its field
    _lent_data = None      # checked data an owner lends for reuse (_checked_datum)
    _counted = None        # column counts during one fit (_column_counts)

    def __init__(self, threads=None, epochs=None, step=None, decay=None, seed=None,
                 sync=None, shuffle=None, progress=None, order=None, optimizer=None,
                 chunk=None, patience=None, replicas=True, **unknown):
        if unknown:
            _unknown_options(unknown)
        # an option left out (None) comes from the spec's train line, else its default:
        # seed 0, sync "hogwild", shuffle True, progress False
        train = dict(self.spec.train)
        sync = sync if sync is not None else train.get("sync", "hogwild")
        # shuffle and order are one option (shuffle=False is order "stored"): an argument
        # for either overrides the train line's shuffle and order together
        if shuffle is None and order is None:
            shuffle = train.get("shuffle", True)
            order = train.get("order") if shuffle else None
        elif shuffle is None:
            shuffle = True
        elif order is None and shuffle and train.get("order") != "stored":
            order = train.get("order")
        progress = progress if progress is not None else train.get("progress", False)
        # the train line's patience applies where a fit is given validation data; an explicit
        # one asks for it (fit refuses to run without)
        self._patience_asked = patience is not None
        if patience is None:
            patience = train.get("patience")
        self.optimizer = optimizer if optimizer is not None else train.get("optimizer", "sgd")
        self._accumulators: dict[str, np.ndarray] = {}
        self.threads = threads if threads is not None else \
            train.get("threads", _available_threads())
        self.epochs = epochs if epochs is not None else train.get("epochs", DEFAULTS["epochs"])
        # step="auto", or no step given anywhere: calibrated by the first fit that trains
        # (_calibrate_step); DEFAULTS["step"] until then
        auto = isinstance(step, str) and step == "auto"
        self._calibrate = auto or step is None and "step" not in train
        self.calibration = None
        self.step = step if step is not None and not auto else train.get("step", DEFAULTS["step"])
        if self._calibrate:
            self.step = DEFAULTS["step"]
        self.decay = decay if decay is not None else train.get(
            "decay", DEFAULTS["decay"] if self.optimizer == "sgd" else ADAGRAD_DECAY)
        self.seed = seed if seed is not None else train.get("seed", 0)
        self.sync = sync
        if not isinstance(order, (str, type(None))):
            raise HogwildError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
        if not isinstance(shuffle, (bool, np.bool_)):           # "no" is no False
            raise HogwildError(f"shuffle must be True or False, not {_show(shuffle)}")
        if not shuffle and order not in (None, "stored"):
            raise HogwildError("shuffle=False visits terms in stored order; do not also "
                               f"pass order={order!r}")
        self.order = order if order is not None or shuffle else "stored"   # None: chosen per fit
        self.chunk = chunk if chunk is not None else train.get("chunk")    # None: by bytes
        self.progress = progress
        self.patience = patience
        self.replicas = replicas
        self._check_options()
        self.params: dict[str, np.ndarray] = {}
        self.history: list[dict] = []
        self._epochs_done = 0
        self._rng = np.random.default_rng(self.seed)

    def _check_options(self):
        """Validate the options (again before each run: they are plain attributes a user may
        set), so a kernel never gets a NaN, a 2^31 or 100,000 threads (OpenMP crashes)."""
        self.threads = _int_option("threads", self.threads, 1, max_threads(),
                                   f"4x the {_available_threads()} cores this process may "
                                   "use, and at least 64")
        self.epochs = _int_option("epochs", self.epochs, 0, MAX_COUNT)
        self.seed = _int_option("seed", self.seed, 0, 2**63 - 1)
        if self.chunk is not None:
            self.chunk = _int_option("chunk", self.chunk, 1, MAX_COUNT)
        if self.patience is not None:
            self.patience = _int_option("patience", self.patience, 1, MAX_COUNT)
        if not isinstance(self.optimizer, str) or self.optimizer not in OPTIMIZERS:
            raise HogwildError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not "
                               f"{_show(self.optimizer)}")
        if isinstance(self.step, str):
            raise HogwildError(f"step must be a positive number or 'auto', not {_show(self.step)}")
        self.step = _positive_float("step", self.step)
        self.decay = _positive_float("decay", self.decay)
        if not isinstance(self.sync, str) or self.sync not in SYNC_MODES:
            raise HogwildError(f"sync must be one of {', '.join(SYNC_MODES)}, not "
                               f"{_show(self.sync)}")
        if self.order is not None and (not isinstance(self.order, str) or
                                       self.order not in ORDERS):
            raise HogwildError(f"order must be one of {', '.join(ORDERS)}, not "
                               f"{_show(self.order)}")
        for name in ("replicas", "progress"):     # "no" is no False
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise HogwildError(f"{name} must be True or False, not "
                                   f"{_show(getattr(self, name))}")

    # ------------------------------------------------------------ public API
    def fit(self, /, *args, validation=None, **data):
        """Train for `epochs` epochs from the current params (initialised on first use).

        `validation` (fit's one reserved keyword) is held-out data by the spec's names: its
        objective after each epoch goes into the history as `validation_objective`. With
        `patience=N`, training stops after N epochs without a lower one, and the params of
        the best epoch (`best_epoch`) are kept."""
        self._by_name("fit", args)
        if self.patience is not None and validation is None and \
                getattr(self, "_patience_asked", True):
            raise HogwildError(f"patience={self.patience!r} stops on the validation objective: "
                               "pass the held-out data as fit(..., validation={...})")
        self._counted = {}
        try:
            arrays, sizes = self.layout(data)
            if self.epochs > 0 and not any(sizes[self._key("nterms", b.index)]
                                           for b in self.spec.blocks):
                raise no_terms(self.spec)
            held_out = self._held_out(validation, data)
            restart = self._calibrate_step(arrays, sizes)
            arrays.update(self._hot_rows(arrays, sizes))
        finally:
            self._counted = None
        while True:
            try:
                best = self._epochs(arrays, sizes, held_out)
                break
            except DivergenceError:
                if not self._smaller_step(restart, arrays):
                    raise
        if best is not None:
            for k, v in best.items():
                self.params[k][...] = v
        return self

    def _by_name(self, method: str, args: tuple) -> None:
        """Data is given by the spec's names: `fit(X, y)` (scikit-learn's habit) or a dict
        passed as is would bind by position, which the spec does not order."""
        if not args:
            return
        names = ", ".join(f"{d.name}=..." for d in self.spec.data)
        given = "a dict" if len(args) == 1 and isinstance(args[0], dict) else \
            f"{len(args)} positional argument{'s' if len(args) > 1 else ''}"
        raise DataError(f"{method}() takes the data by the spec's names, as keywords: "
                        f"{method}({names}) for model '{self.spec.model}', not {given}"
                        + (f" (a dict of data: {method}(**data))" if given == "a dict" else ""))

    # the default step's search: calibrate.py
    def _calibrate_step(self, arrays: dict, sizes: dict):
        return calibrate.calibrate_step(self, arrays, sizes)

    def _scaled_down(self, arrays: dict, sizes: dict, share: float, rng) -> tuple[dict, dict]:
        return calibrate.scaled_down(self, arrays, sizes, share, rng)

    def _smaller_step(self, restart, arrays: dict) -> bool:
        return calibrate.smaller_step(self, restart, arrays)

    def _held_out(self, validation, data: dict):
        """The kernel of the validation data, which reads the live params (self.params). Data
        that do not vary with the terms (_shared_data: a global mean, a temperature, sampling
        weights, side information over another dim) and that `validation` leaves out are
        the training data's: held-out rows are new terms of the same model."""
        if validation is None:
            return None
        if not isinstance(validation, dict):
            raise DataError("validation must be a dict of data by the spec's names, like fit's "
                            f"own, not {_show(validation)}")
        validation = {**{n: data[n] for n in _shared_data(self.spec)
                         if n not in validation and n in data}, **validation}
        try:
            arrays, sizes = self.layout(validation)
        except DataError as e:
            raise DataError(f"validation: {e}") from None
        return self.kernels.Kernel(arrays, sizes)

    def _epochs(self, arrays: dict, sizes: dict, held_out):
        """Run the epochs on the kernel's arrays (the params among them are self.params).
        Returns the params of the best epoch on the validation data where patience stopped
        training after a worse one, else None."""
        kernel = self.kernels.Kernel(arrays, sizes)
        n_terms = kernel.nterms
        work = {p.name: arrays[p.name] for p in self.spec.params}
        # The objective after each epoch: the mean over one fixed random sample of terms (an
        # unbiased estimate at a fraction of a pass; see EVAL_TERMS), exact on small data and
        # after the last epoch of the fit. (A progressive objective computed by the updates
        # made mc's epochs 1.6x slower: bench/results/progressive.md.)
        sample = None
        sampled = min(EVAL_TERMS, max(EVAL_MIN_TERMS, n_terms // EVAL_SHARE))
        if n_terms > sampled:
            sample = np.sort(self._rng.choice(n_terms, sampled, replace=False)).astype(np.int64)

        def objective_at(exact: bool) -> float:
            if sample is None or exact:
                return kernel.objective_sum(self.threads) / max(n_terms, 1)
            return kernel.objective_terms(sample, self.threads) / len(sample)

        sync = SYNC_MODES[self.sync]
        order, chunk = self._visit_plan(arrays, n_terms)
        draws = hasattr(kernel, "set_draw_key")
        start_objective = last = None
        # The point a divergence rolls back to: (epochs done, history length, params), taken
        # before every epoch where the model is no larger than the data an epoch reads (the
        # copy then costs less than the epoch: API.md's last finite params), else at the
        # start of the fit and before an epoch that follows one whose objective rose (a
        # diverging run mostly rises first; a model of hashed features can dwarf its data).
        kept, rose = None, False
        every = sum(v.nbytes for v in work.values()) <= sum(
            a.nbytes for k, a in arrays.items() if k not in work and isinstance(a, np.ndarray))
        first_epoch = self._epochs_done
        best_value, best, best_epoch = math.inf, None, None
        bar = self._progress_bar()
        try:
            with _interrupt_between_epochs() as interrupted:
                for i in range(self.epochs):
                    epoch = self._epochs_done
                    step = self.step * self.decay ** epoch
                    if start_objective is None:
                        start_objective = last = objective_at(False)
                        if not np.isfinite(start_objective):
                            raise DivergenceError(
                                f"the objective is {start_objective:.6g} before any update, at "
                                "the initial params: nothing was trained", epoch=0,
                                hint="look for a division by zero or a log of zero in the "
                                     "spec at the initial params, or in the data")
                    if kept is None or rose or every:
                        kept = (epoch, len(self.history), {k: v.copy() for k, v in work.items()})
                    visit = self._visit_order(order, chunk, n_terms)
                    if draws:                  # fresh draws in every epoch, from the seed
                        kernel.set_draw_key(_draw_key(self.seed, "epoch", epoch))
                    began = time.perf_counter()
                    kernel.epoch(visit, chunk, step, self.threads, sync)
                    seconds = time.perf_counter() - began
                    if draws:                  # the objective's fixed draws
                        kernel.set_draw_key(_draw_key(self.seed, "objective"))
                    exact = sample is None or i == self.epochs - 1
                    objective = objective_at(exact)
                    # the params too: a NaN in them can leave the objective finite (b = 0 in
                    # `y[i] / b` trained to objectives of 0.0); a sum is NaN or inf if any
                    # value is, at a fraction of the cost of isfinite().all() (inf - inf in
                    # it is the answer, not a warning)
                    with np.errstate(over="ignore", invalid="ignore"):
                        finite = all(math.isfinite(np.sum(v)) for v in work.values())
                    if not finite or not np.isfinite(objective) or (
                            objective > EXPLODED * max(abs(start_objective), 1.0)):
                        self._roll_back(work, kept)
                        became = (f"the objective became {objective:.6g}" if finite else
                                  "the params became NaN or inf")
                        raise DivergenceError(
                            f"training diverged in epoch {epoch + 1}: {became} (the objective "
                            f"was {start_objective:.6g} at the start); the finite params after "
                            f"epoch {kept[0]} are kept",
                            epoch=epoch + 1, hint=f"use a smaller step than {step:.6g}, or "
                            "look for a division by zero or a log of zero in the spec")
                    rose, last = objective > last, objective
                    entry = {"epoch": epoch + 1, "objective": float(objective),
                             "seconds": seconds, "step": step}
                    if not exact:     # says so: a sample's mean can sit far from the exact
                        entry["sampled_terms"] = len(sample)    # one (heavy-tailed losses)
                    self.history.append(entry)
                    self._epochs_done = epoch + 1
                    if held_out is not None:
                        value = held_out.objective_sum(self.threads) / max(held_out.nterms, 1)
                        entry["validation_objective"] = float(value)
                        if value < best_value:
                            best_value, best_epoch = value, epoch + 1
                            if self.patience is not None:
                                best = {k: v.copy() for k, v in self.params.items()}
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(objective=f"{objective:.6g}")
                    stop = interrupted() or held_out is not None and \
                        self.patience is not None and self._epochs_done - (best_epoch or first_epoch) >= self.patience
                    if stop and i < self.epochs - 1:   # the fit's last epoch after all: exact
                        entry["objective"] = float(objective_at(True))
                        entry.pop("sampled_terms", None)
                    if interrupted():
                        raise KeyboardInterrupt
                    if stop:
                        break
        except KeyboardInterrupt:
            # where Ctrl-C could not be deferred: an epoch not yet counted is undone
            if kept is not None and self._epochs_done == epoch:
                self._roll_back(work, kept)
            raise
        finally:
            if bar is not None:
                bar.close()
        if self.patience is None or held_out is None:
            return None
        self.best_epoch = best_epoch
        return best if best_epoch != self._epochs_done else None

    def _roll_back(self, work: dict, kept: tuple):
        """Back to the kept point: its params, history and epoch count (they always agree)."""
        epochs_done, history_length, params = kept
        for k, v in params.items():
            work[k][...] = v
        del self.history[history_length:]
        self._epochs_done = epochs_done

    def objective(self, /, *args, **data) -> float:
        """Mean over every term of its loss plus its share of the regularizer.

        With `sample` lines, a term stands for the expectation of its loss over the draws:
        this is then an estimate of that mean, from one draw per term out of a stream fixed
        by the trainer's seed (two calls give the same value)."""
        self._by_name("objective", args)
        arrays, sizes = self.layout(data)
        kernel = self.kernels.Kernel(arrays, sizes)
        return float(kernel.objective_sum(self.threads) / max(kernel.nterms, 1))

    def predict(self, /, *args, **data) -> np.ndarray:
        """One value per term of the block with `predict` (label data not needed)."""
        self._by_name("predict", args)
        block = next((b for b in self.spec.blocks if b.predict is not None), None)
        if block is None:
            raise HogwildError(f"model '{self.spec.model}' has no 'predict' line")
        if not self.params:
            raise HogwildError("predict() before fit(): train first, or load saved params")
        arrays, sizes = self.layout(data, need="predict")
        kernel = self.kernels.Kernel(arrays, sizes)
        n = sizes[self._key("nterms", block.index)]
        if block.predict_var is None:
            out = np.empty(n, dtype=np.float64)
        else:                           # a vector per term: (terms, size of its dim)
            dim = block.predict_var.dim
            consts = dict(self.spec.consts)
            out = np.empty((n, consts[dim] if dim in consts else sizes[self._key("dim", dim)]))
        kernel.predict(out.reshape(-1), self.threads)
        positions = self._positions.get(block.over)
        if positions is not None:       # the kernel's CSR order -> the order the user gave
            out = out[positions]
        if isinstance(block.predict, ir.ArgMax):    # a class index, as numpy's argmax gives
            out = out.astype(np.int64)
        return out

    def save(self, path) -> Path:
        """Save the params (an .npz: each param under its own name, plus one metadata entry,
        META_KEY) and return the path written (".npz" is added when missing, as numpy does;
        a folder, existing or written with a trailing separator, gets MODEL_params.npz in it,
        as `hogwildc train --out` does). Written to a temporary file and renamed: a failed
        save keeps the previous file."""
        if not self.params:
            raise HogwildError("nothing to save: the params are not initialised (call fit)")
        try:
            given = os.fspath(path)
            path = Path(given)
        except TypeError:
            raise HogwildError(f"save() takes a file path, not {_show(path)}") from None
        if path.is_dir() or str(given).endswith(("/", os.sep)):
            path = path / f"{self.spec.model}_params.npz"
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        params = self._live_params(None)
        meta = json.dumps({"format": SAVE_FORMAT, "signature": self.signature,
                           "dtype": self.dtype.name, "model": self.spec.model, "epochs_done": self._epochs_done,
                           "params": sorted(params), "spec": self.spec.source,
                           "accumulators": sorted(self._accumulators),
                           "consts": dict(self.spec.consts), "settings": self._settings(),
                           "rng": self._rng.bit_generator.state})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **{META_KEY: np.array(meta)}, **params,
                         **{f"_acc_{k}": v for k, v in self._accumulators.items()})
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise HogwildError(f"cannot save to {path}: {e.strerror or e}; the previous file, "
                               "if any, is unchanged") from None
        return path

    SAVED_SETTINGS = ("optimizer", "step", "decay", "epochs", "seed", "sync", "order", "chunk")

    def _settings(self) -> dict:
        """The options `load` restores: how this trainer trains (the update rule whose
        accumulators the file holds, its schedule), not where it runs (threads, progress);
        the step only once fixed (given, or calibrated by a fit)."""
        out = {k: getattr(self, k) for k in self.SAVED_SETTINGS}
        if self.__dict__.get("_calibrate"):
            del out["step"]
        return {k: v.item() if isinstance(v, np.generic) else v for k, v in out.items()}

    @classmethod
    def load(cls, path, /, **kwargs):
        """A Trainer with the params saved by `save` (the spec's signature must match, the
        dtype too: a float64 file is not rounded into a float32 module silently), its
        optimizer state, epochs done and shuffling stream, and the options it trained with
        (update rule, step, decay, epochs, seed, sync, order), each overridden by `kwargs`;
        so a loaded trainer continues a fit as the saved one would. Any file that is not one
        (truncated, empty, corrupt, another format, spec or dtype) is a HogwildError."""
        meta, params = _read_params(path)
        saved = meta.get("dtype", "float64")          # files from before dtype: float64
        if saved != cls.dtype.name:
            raise HogwildError(f"{path} holds {saved} params, but this module stores "
                               f"{cls.dtype.name}: load it with a module of its dtype "
                               f"(hogwild_dsl.load(..., dtype={saved!r})); to convert, assign "
                               "its params into a fitted trainer's t.params")
        if meta.get("signature") != cls.signature:
            other = _other_spec(meta, cls.spec)
            if other is not None:
                raise HogwildError(f"{path} {other} (signature mismatch)")
        settings = meta.get("settings")
        settings = settings if isinstance(settings, dict) else {}   # files from before them
        saved = {k: v for k, v in settings.items() if k in cls.SAVED_SETTINGS}
        try:
            t = cls(**{**saved, **kwargs})
        except HogwildError as e:
            cls(**kwargs)               # the caller's own arguments: their error as it is
            raise HogwildError(f"{path}: not a params file saved by Trainer.save (its saved "
                               f"options are damaged: {e})") from None
        if "seed" not in kwargs and isinstance(meta.get("rng"), dict):
            try:
                t._rng.bit_generator.state = meta["rng"]
            except (TypeError, ValueError, KeyError):
                raise HogwildError(f"{path}: not a params file saved by Trainer.save (its "
                                   "shuffling state is damaged)") from None
        missing = [p.name for p in cls.spec.params if p.name not in params]
        if missing:
            raise HogwildError(f"{path}: not a params file of this model (no param "
                               f"'{missing[0]}')")
        t.params = {p.name: params[p.name] for p in cls.spec.params}
        t._live_params(None)      # shapes agree with each other and the consts, values finite
        epochs = meta.get("epochs_done", 0)
        t._epochs_done = epochs if isinstance(epochs, int) and epochs >= 0 else 0
        t._accumulators = _read_accumulators(path, meta, cls.dtype)
        return t

    def __reduce__(self):
        """Pickle as the spec text, consts and dtype plus the trainer's state (settings,
        params, history, epochs done); unpickling rebuilds the module or finds it in the
        cache."""
        return _unpickle_trainer, (self.spec.source, dict(self.spec.consts), self.dtype.name), \
            self.__dict__.copy()

    # ------------------------------------------------------------ internals
    def _progress_bar(self):
        if not self.progress or self.epochs == 0:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=self.epochs, desc=f"{self.spec.model} ({self.sync}, "
                    f"{self.threads} thread{'s' if self.threads > 1 else ''})", unit="epoch")

    def _visit_plan(self, arrays: dict, n_terms: int) -> tuple[str, int]:
        """(order, chunk) of a fit's epochs on the kernel's `arrays`: the trainer's own, or by
        default "shuffle" where every array the terms read fits in CACHE_BYTES, else "chunks";
        a default chunk spans about CHUNK_BYTES of the data, in at most CHUNK_TERMS terms (0
        for the other orders)."""
        params = {p.name for p in self.spec.params}
        arrays = {k: v for k, v in arrays.items() if isinstance(v, np.ndarray) and
                  not k.startswith(("_hot_", "_every_"))}      # (the replicas' own)
        data_bytes = sum(v.nbytes for k, v in arrays.items() if k not in params)
        total = sum(v.nbytes for v in arrays.values())
        order = self.order or ("shuffle" if total <= CACHE_BYTES else "chunks")
        if order != "chunks":
            return order, 0
        return order, self.chunk or max(1, min(CHUNK_TERMS, CHUNK_BYTES * n_terms //
                                               max(data_bytes, 1)))

    def _visit_order(self, order: str, chunk: int, n_terms: int) -> np.ndarray:
        """One epoch's visit: terms (chunk 0), or chunks of `chunk` consecutive terms."""
        if order == "shuffle":
            return self._rng.permutation(n_terms).astype(np.int64, copy=False)
        if order == "stored":
            return np.arange(n_terms, dtype=np.int64)
        return self._rng.permutation(-(-n_terms // chunk)).astype(np.int64, copy=False)

    def _hot_rows(self, arrays: dict, sizes: dict) -> dict:
        """The hot rows of each replicable param (the kernel's REPLICABLE), as the arrays
        "_hot_<param>" the kernel reads (all its rows: replicated whole), and the merge
        interval (sizes["_merge_every"]): under hogwild with several threads, each thread
        then updates its own replicas of them and merges its changes at regular points
        (DimmWitted), and the threads stop handing the cache lines of the coordinates most
        terms touch to one another on every update. Rows are ranked by how many stored
        entries of the sparse data reaching the param's rows fall in each (its column
        counts). None where replicas are off, under atomic or lock (the exact algorithm),
        under AdaGrad (its update has no replica variant), or on one thread. See
        REPLICA_BYTES."""
        replicable = getattr(self.kernels, "REPLICABLE", {})
        if not (self.replicas and self.sync == "hogwild" and self.optimizer == "sgd" and
                self.threads >= 2 and replicable):
            return {}
        consts = dict(self.spec.consts)
        shares, lengths, reach = {}, {}, {}
        for name, data in replicable.items():
            dims = self.spec.param(name).dims
            extent = consts[dims[0]] if dims[0] in consts else sizes[self._key("dim", dims[0])]
            counts, terms = np.zeros(extent, dtype=np.float64), 0
            for d in data:
                counts += self._column_counts(arrays[self._key("indices", d)], extent)
                terms += arrays[self._key("indptr", d)].shape[0] - 1
            shares[name], reach[name] = counts / max(terms, 1), terms
            lengths[name] = math.prod(consts[d] if d in consts else
                                      sizes[self._key("dim", d)] for d in dims[1:])
        hot = {name: np.flatnonzero(share >= HOT_SHARE) for name, share in shares.items()}
        # whole params: those with a hot row, the most touched first, while the copies fit
        whole, budget = [], REPLICA_BYTES // (2 * self.dtype.itemsize)
        if self.threads > WHOLE_THREADS:
            budget = 0
        for name in sorted(shares, key=lambda k: -shares[k].max(initial=0.0)):
            values = shares[name].size * lengths[name]
            if hot[name].size and 0 < values <= budget:
                whole.append(name)
                budget -= values
        out = {}
        values = sum(shares[k].size * lengths[k] for k in whole)
        touched = sum(shares[k].sum() * lengths[k] for k in whole)     # values per term
        longest = min(MERGE_COST * values / max(touched, 1e-300),
                      max((reach[k] for k in whole), default=0) / (self.threads * EPOCH_MERGES))
        if values > touched * longest / 2:      # merges would cost half the updates: none
            whole = []
        for name in whole:
            out[f"_hot_{name}"] = np.arange(shares[name].size, dtype=np.int64)
            with np.errstate(divide="ignore"):
                every = MERGE_STEPS / shares[name]
            out[f"_every_{name}"] = np.clip(every, 1.0, longest)
        sizes["_merge_every"] = max(MIN_MERGE_TERMS, MERGE_DELAY // self.threads)
        sizes["_merge_weight"] = MERGE_WEIGHT
        rest = [k for k in replicable if k not in whole]
        if self.threads < REPLICA_THREADS or not rest:
            return out
        names = np.concatenate([np.full(hot[k].size, i) for i, k in enumerate(rest)])
        rows = np.concatenate([hot[k] for k in rest])
        ranked = np.argsort(-np.concatenate([shares[k][hot[k]] for k in rest]), kind="stable")
        which, rows = names[ranked], rows[ranked]
        taken = np.cumsum(np.array([lengths[rest[i]] for i in which], dtype=np.int64)) <= \
            HOT_VALUES
        out.update({f"_hot_{name}": np.sort(rows[taken & (which == i)]).astype(np.int64)
                    for i, name in enumerate(rest)})
        return out

    def _column_counts(self, indices: np.ndarray, n_columns: int) -> np.ndarray:
        """The kernels' column_counts of a laid-out CSR's indices, counted once per fit: its
        degree split and its hot rows count the same columns (13.7M indices of an RCV1-sized
        matrix: 10 ms a pass). Kept during one fit only (the arrays it laid out cannot change
        meanwhile), and never written into."""
        if self._counted is None:
            return self.kernels.column_counts(indices, n_columns)
        key = (id(indices), n_columns)
        if key not in self._counted:
            self._counted[key] = (indices, self.kernels.column_counts(indices, n_columns))
        return self._counted[key][1]

    def _key(self, role: str, of: str | int = "") -> str:
        """The key in the kernel's arrays / sizes of the layout field holding `role` of `of`
        (lower.ROLES): the layout names them, never the runtime."""
        try:
            return self._keys[role, of]
        except KeyError:
            raise HogwildError(f"the kernels' layout has no {role!r} of {of!r}") from None

    def _state_arrays(self) -> list:
        """The update rules' state beside the params (the layout's fields of roles acc, l1u
        and l1q): (name in _accumulators and in saved files, layout key, shape, param).
        AdaGrad's sums of squares (under adagrad and adagrad_row: one per coordinate, or per
        row of a 2-D or 3-D param) and, for a param under `reg l1`, the penalty each
        coordinate was owed and was given (the clipped cumulative penalty, whatever the
        optimizer)."""
        out = []
        for f in self.fields:
            if f.role not in ("acc", "l1u", "l1q") or f.role == "acc" and self.optimizer == "sgd":
                continue
            shape = self.params[f.of].shape
            if f.role == "acc" and self.optimizer == "adagrad_row" and len(shape) >= 2:
                shape = shape[:-1]
            name = f.of if f.role == "acc" else f"{f.of}__{f.role}"    # saved files' names
            out.append((name, f.key, shape, f.of))
        return out

    def layout(self, data: dict, need: str = "all") -> tuple[dict, dict]:
        """The hook through which fit, objective and predict take their data: `data` (by the
        spec's data names) checked against the spec and laid out for the kernel, as (arrays,
        sizes); need="predict" lays out only the data `predict` reads. The params among the
        arrays are self.params' own (live) arrays. A subclass may override it to reuse a
        layout it made before for the very same data, or to adjust one (the worker-side
        trainer of hogwild_dsl.distributed does both), as long as every array it returns
        went through this method's checks: the kernels trust them."""
        self._check_options()
        spec = self.spec
        declared = {d.name: d for d in spec.data}
        wanted = set(declared) if need == "all" else _predict_data(spec)
        for name in data:
            if name not in declared:
                raise unknown_data(name, spec, "Trainer", trainer_options())
        missing = [n for n in declared if n in wanted and data.get(n) is None]
        if missing:
            d = declared[missing[0]]
            raise DataError(f"missing data '{d.name}' (declared on spec line {d.line} as "
                            f"{d})")
        entry_data = {b.over for b in spec.blocks if b.kind == "entries"}
        companions = _entry_companions(spec)     # c read as c[u, v] in `for (u, v) in r`
        entry_data |= set(companions)
        # the entries of an entry block's data are its terms, as given: kept apart, and where
        # each given entry sits in the kernel's CSR (predict answers in the given order)
        self._positions = {}
        given = {}
        for n, v in data.items():
            if v is None:
                continue
            given[n], positions = self._checked_datum(declared[n], v, n in entry_data)
            if n in entry_data:
                self._positions[n] = positions
        for c, r in companions.items():
            if c in given and r in given and not (
                    given[c].shape == given[r].shape and
                    np.array_equal(given[c].indptr, given[r].indptr) and
                    np.array_equal(given[c].indices, given[r].indices)):
                raise DataError(f"data '{c}' is read at the entries of '{r}' ({c}[u, v] in "
                                f"'for (u, v) in {r}'), so it must store exactly the entries "
                                f"of '{r}' (the same (row, column) pairs, as often), but its "
                                "pattern differs")
        # predict runs only the predicting block: another block's dims need no data
        dims = self._dims(given, predicting=need != "all")
        self._init_params(dims)
        bound = _Binding(self, given, dims, need)
        arrays, sizes = {}, {}
        for f in self.fields:      # the layout: one fill function per role
            value = FILL[f.role](bound, f.of) if f.value is None else None
            if value is not None:
                (arrays if f.is_pointer else sizes)[f.key] = value
        return arrays, sizes

    def _checked_datum(self, d: ir.Data, value, entries: bool) -> tuple:
        """(value checked and laid out for the kernel, the entries' positions or None): the
        one place layout converts data. Where an owner lends `_lent_data` (a dict; sklearn's
        estimators, for the Trainer fits of one of their fit calls, on arrays they hold),
        the result for the very same value object is reused: the owner must lend it only
        while those arrays cannot change, and take it back after."""
        lent = self._lent_data
        if lent is not None:
            key = (id(value), d.name, d.kind, self.dtype, entries)
            if key in lent and lent[key][0] is value:
                return lent[key][1]
        out = as_entries(value, f"data '{d.name}'", self.dtype) if entries else \
            (_convert(d, value, self.dtype), None)
        if lent is not None:
            lent[key] = (value, out)    # (the value kept: its id is not reused meanwhile)
        return out

    def _dims(self, given: dict, predicting: bool = False) -> dict:
        """Read every dim off the data (and the params, if any), checking that they agree.
        `predicting`: a dim the predicting block does not read may be left unread (size 0)."""
        spec, consts = self.spec, dict(self.spec.consts)
        dims: dict[str, tuple[int, str]] = {}

        def see(dim, size, where):
            if dim in consts:
                if size != consts[dim]:
                    raise DataError(f"{where} has size {size} along const '{dim}' = {consts[dim]}")
                return
            if dim in dims and dims[dim][0] != size:
                # the params fix a dim once trained: test data built from ids (a COO of a
                # few ratings) is as large as its largest id + 1 unless given a shape
                fix = (f": the params have {size} along '{dim}', so the data must too "
                       "(coo_matrix((v, (i, j)), shape=...) or load_svmlight_file(..., "
                       "n_features=...) give the size); a new Trainer fits data of another "
                       "size") if where.startswith("param") else ""
                raise DataError(f"dim '{dim}' is {dims[dim][0]} from {dims[dim][1]} but "
                                f"{size} from {where}{fix}")
            dims.setdefault(dim, (size, where))

        for name, value in given.items():
            d = spec.datum(name)
            for axis, dim in enumerate(d.dims):
                see(dim, value.shape[axis], f"data '{name}' (axis {axis})")
        live = self.params if isinstance(self.params, dict) else {}
        for p in spec.params:
            shape = np.shape(live[p.name]) if live.get(p.name) is not None else None
            if shape is not None and len(shape) == len(p.dims):    # else _live_params says why
                for axis, dim in enumerate(p.dims):
                    see(dim, shape[axis], f"param '{p.name}' (axis {axis})")
        pointed = {}                        # a dim only index data point into: the
        for name, value in given.items():   # largest index + 1 over all of them
            d = spec.datum(name)
            if d.kind == "index" and d.of not in dims and d.of not in consts:
                top = int(value.max()) + 1 if value.size else 0
                if top >= pointed.get(d.of, (0, ""))[0]:
                    pointed[d.of] = (top, f"the largest value of index data '{name}'")
        dims.update(pointed)
        for name, value in given.items():
            d = spec.datum(name)
            if d.kind == "index":
                _index_range(d, value, consts[d.of] if d.of in consts else dims[d.of][0])
        missing = [d for d in spec.dims if d not in dims]
        if predicting:
            block = next(b for b in spec.blocks if b.predict is not None)
            read = {block.over} | {dim for n in _predict_data(spec)
                                   for dim in spec.datum(n).dims}
            for dim in [d for d in missing if d not in read]:
                dims[dim] = (0, "")
            missing = [d for d in missing if d in read]
        if missing:
            takes = ", ".join(sorted(_predict_data(spec))) if predicting else ""
            raise DataError(f"the size of dim '{missing[0]}' cannot be read off the data given"
                            + (f" (predict reads {takes})" if takes else ""))
        return {k: v[0] for k, v in dims.items()}

    def _shape(self, p: ir.Param, dims: dict) -> tuple:
        consts = dict(self.spec.consts)
        return tuple(consts[d] if d in consts else dims[d] for d in p.dims)

    def _init_params(self, dims: dict):
        """Draw each param's initial value (seeded) the first time; keep live params after."""
        if self.params:
            return
        shapes = {p.name: self._shape(p, dims) for p in self.spec.params}
        total = sum(self.dtype.itemsize * math.prod(shape) for shape in shapes.values())
        if total > _memory_bytes():
            name, shape = max(shapes.items(), key=lambda kv: math.prod(kv[1]))
            raise DataError(f"the params need {_bytes(total)} (param '{name}' alone is "
                            f"{' x '.join(map(str, shape))} {self.dtype.name} values), more than "
                            f"this machine's memory ({_bytes(_memory_bytes())}): check the consts "
                            "and the data's dims")
        rng = np.random.default_rng(self.seed)
        params = {}
        for p in self.spec.params:
            shape, init = self._shape(p, dims), p.init
            value = np.empty(shape, dtype=self.dtype)
            if init.kind == "value":
                value[...] = init.a
            elif init.kind == "uniform_rows":
                value[...] = 1.0 / max(shape[-1], 1)
            else:
                _draw_into(value, rng, init)
            params[p.name] = _aligned(_project(value, p.constraint))
        self.params = params

    def _live_params(self, dims: dict | None) -> dict:
        """The params as the kernel reads them; a replaced array is checked and kept live.
        Without dims (save, load), the params' shapes must agree with each other."""
        if not isinstance(self.params, dict):
            raise DataError(f"trainer.params must be a dict of param name -> array, not "
                            f"{type(self.params).__name__}")
        consts = dict(self.spec.consts)
        seen = dict(dims) if dims is not None else {}
        source = dict.fromkeys(seen, "the data")     # what sized each dim, for the error
        declared = [p.name for p in self.spec.params]
        stray = [k for k in self.params if k not in declared]
        if stray:       # a typo'd key would otherwise be ignored without a word
            raise DataError(f"trainer.params has '{stray[0]}', which is no param of model "
                            f"'{self.spec.model}' (its params: {', '.join(declared)})")
        out = {}
        for p in self.spec.params:
            value = self.params.get(p.name)
            if value is None:
                raise DataError(f"param '{p.name}' is missing from trainer.params")
            arr = _numeric(value, f"param '{p.name}'", self.dtype)
            if arr.ndim != len(p.dims):
                raise DataError(f"param '{p.name}' has shape {arr.shape}, but it is declared "
                                f"{len(p.dims)}-D ({', '.join(p.dims) or 'a scalar'})")
            for axis, dim in enumerate(p.dims):
                want = consts.get(dim, seen.get(dim))
                if want is not None and arr.shape[axis] != want:
                    by = "its const" if dim in consts else f"from {source[dim]}"
                    raise DataError(f"param '{p.name}' has shape {arr.shape}, but dim "
                                    f"'{dim}' is {want} ({by}): expected "
                                    f"{self._shape_or(p, consts, seen)}")
                if dim not in seen:
                    seen[dim], source[dim] = arr.shape[axis], f"param '{p.name}' (axis {axis})"
            if not (value is arr and arr.flags.c_contiguous and arr.flags.writeable):
                arr = np.array(arr, dtype=self.dtype, order="C")
                self.params[p.name] = arr
            if not np.all(np.isfinite(arr)):
                raise DataError(f"param '{p.name}' holds NaN or inf")
            out[p.name] = arr
        return out

    @staticmethod
    def _shape_or(p: ir.Param, consts: dict, seen: dict) -> tuple:
        return tuple(consts.get(d, seen.get(d, "?")) for d in p.dims)


def _unpickle_trainer(spec_text: str, consts: dict, dtype: str = "float64"):
    """An empty Trainer of the spec (pickle then restores its state)."""
    from .jit import load
    cls = load(text=spec_text, consts=consts, dtype=dtype).Trainer
    return cls.__new__(cls)


# ---------------------------------------------------------------- data checks and layout


def _memory_bytes() -> int:
    """This machine's physical memory (a huge number where it cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _bytes(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def _other_spec(meta: dict, spec: ir.Spec) -> str | None:
    """Why a saved file whose signature is not the module's does not fit it, and what to do;
    None where the file holds this very spec text and consts: then only hogwild-dsl's
    version differs (the signature hashes the compiler too), and the params, named and shaped
    by the spec alone, fit (a file saved before an upgrade was refused for good)."""
    model, text, consts = meta.get("model"), meta.get("spec"), meta.get("consts")
    if model != spec.model:
        return (f"was saved by model '{model}', not '{spec.model}': load it with the module "
                "of the spec that saved it")
    if not isinstance(text, str) or not isinstance(consts, dict):
        return f"was saved by model '{model}' with a different spec or version"
    if text != spec.source:
        return (f"was saved by another spec of model '{model}' (its text differs from this "
                "module's; the file holds it under '__hogwild__'): load it with the module "
                "of that text")
    if consts != dict(spec.consts):
        return (f"was saved with consts {consts}, and this module has {dict(spec.consts)}: "
                f"load the module with consts={consts}")
    return None


def _read_accumulators(path, meta: dict, dtype) -> dict:
    """AdaGrad's sums of squares saved beside the params (none in files without them)."""
    names = meta.get("accumulators")
    if not isinstance(names, list):
        return {}
    try:
        with np.load(path, allow_pickle=False) as f:
            return {n: np.array(f[f"_acc_{n}"], dtype=dtype, order="C") for n in names
                    if isinstance(n, str) and f"_acc_{n}" in f.files}
    except Exception as e:
        raise HogwildError(f"{path}: its AdaGrad state cannot be read ({type(e).__name__})") \
            from None


def _read_params(path) -> tuple[dict, dict]:
    """(metadata, params) of a file written by TrainerBase.save (this format or the first)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"PK\x03\x04":
            raise ValueError("an empty file" if not magic else "not an .npz archive")
        with np.load(path, allow_pickle=False) as f:
            files = set(f.files)
            if META_KEY in files:
                meta = json.loads(str(f[META_KEY][()]))
                names = meta.get("params") if isinstance(meta, dict) else None
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise ValueError("its metadata lists no params")
                params = {n: f[n] for n in names if n in files}
            elif "__meta__" in files:      # the first format: params as param_<name>
                meta = json.loads(str(f["__meta__"][()]))
                params = {k[len("param_"):]: f[k] for k in files if k.startswith("param_")}
            else:
                raise ValueError("no metadata entry")
            if not isinstance(meta, dict):
                raise ValueError("its metadata is not a JSON object")
    except HogwildError:
        raise
    except Exception as e:     # BadZipFile, EOFError, zlib.error, KeyError, JSON, OSError...
        why = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
        raise HogwildError(f"{path}: not a params file saved by Trainer.save ({why})"[:300]) \
            from None
    return meta, params


def _predict_data(spec: ir.Spec) -> set:
    """The data predict reads: values, sparse rows summed over, and the index data that pick
    a row or a coordinate (y of W[y[i]], better of X[better[p]])."""
    block = next(b for b in spec.blocks if b.predict is not None)
    names = set()

    def read(v: ir.Var):
        if v.kind in ("sparse", "indirect"):
            names.add(v.source[0])
            read(v.at)
    for n in ir.walk(block.predict):
        if isinstance(n, ir.DataAt):
            names.add(n.name)
        if isinstance(n, (ir.DataAt, ir.ParamAt)):
            for v in n.index:
                read(v)
        if isinstance(n, (ir.Sum, ir.ArgMax, ir.Reduce)):
            read(n.var)
    if block.kind == "entries":
        names.add(block.over)
    return names


def _convert(d: ir.Data, value, dtype=np.float64):
    """One data value in the kernel's layout (values in `dtype`, the module's), or a DataError
    naming it and the problem.

    The one gate all data passes (fit, objective, predict, analyze, data files): the kernels
    and even scipy's own C routines trust index arrays, so they are checked here first."""
    if d.kind == "sparse":
        return as_csr(value, f"data '{d.name}'", dtype)
    if sp.issparse(value):
        value = as_csr(value, f"data '{d.name}'", dtype).toarray()
    arr = _numeric(value, f"data '{d.name}'", np.float64 if d.kind == "index" else dtype)
    if d.kind == "index":
        return _index_values(d, arr)
    want = len(d.dims)
    if want == 0 and arr.size == 1:     # a scalar as a one-element array (a one-cell file)
        arr = arr.reshape(())
    if arr.ndim != want:
        raise DataError(f"data '{d.name}' must be {want}-D ({d}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        at = np.argwhere(~np.isfinite(arr))[0].tolist()
        where = f" at index {at}" if at else ""          # a scalar has no index
        raise _at_row(DataError(f"data '{d.name}' holds NaN or inf{where}"),
                      at[0] if at else None)
    if d.kind == "sign" and not np.all(np.abs(arr) == 1):
        at = np.argwhere(np.abs(arr) != 1)[0].tolist()
        raise _at_row(DataError(f"data '{d.name}' is declared sign: every label must be -1 or "
                                f"+1, found {_exact(arr[tuple(at)])}"), at[0] if at else None)
    if d.kind == "binary" and not np.all((arr == 0) | (arr == 1)):
        at = np.argwhere((arr != 0) & (arr != 1))[0].tolist()
        raise _at_row(DataError(f"data '{d.name}' is declared binary: every value must be 0 or "
                                f"1, found {_exact(arr[tuple(at)])}"), at[0] if at else None)
    return np.ascontiguousarray(arr)


MAX_EXTENT = 2**31 - 1     # the kernels index columns and rows with int32


def _index_values(d: ir.Data, arr: np.ndarray) -> np.ndarray:
    """Index data as int64: a 1-D array of integers (integral floats accepted). Its range is
    checked once the size of the dim it points into is known (_index_range)."""
    if arr.ndim != 1:
        raise DataError(f"data '{d.name}' must be 1-D ({d}), got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
    if bad.size:
        raise _at_row(DataError(f"data '{d.name}' is index data ({d}): every value must be an "
                                f"integer, but position {bad[0]} holds "
                                f"{_exact(arr[bad[0]])}"), bad[0])
    if arr.size and (arr.min() < 0 or arr.max() > MAX_EXTENT):
        at = int(np.flatnonzero((arr < 0) | (arr > MAX_EXTENT))[0])
        raise _at_row(DataError(f"data '{d.name}' is index data ({d}): position {at} holds "
                                f"{arr[at]:g}, out of range [0, {d.of})"), at)
    return np.ascontiguousarray(arr, dtype=np.int64)


def _index_range(d: ir.Data, values: np.ndarray, size: int) -> None:
    """Every value of index data in [0, size of the dim it points into), else a DataError
    naming the datum and the first bad position (the kernel trusts these indices)."""
    if values.size and values.max() >= size:
        at = int(np.flatnonzero(values >= size)[0])
        raise _at_row(DataError(f"data '{d.name}' is index data ({d}): position {at} holds "
                                f"{values[at]}, out of range [0, {size}) (the size of "
                                f"{d.of})"), at)


def _at_row(err: DataError, row) -> DataError:
    """err, carrying `row`: the index along the datum's first axis of the first bad value (for
    data read from a file, the CLI turns it into the file's line)."""
    err.row = None if row is None else int(row)
    return err


def _numeric(value, what: str, dtype=np.float64) -> np.ndarray:
    """value as a float64 (or `dtype`) array, with no copy where it is one already; refuses
    what would convert silently wrong (None -> NaN or 0, complex -> its real part, strings
    parsed as numbers, a value past float32's range -> inf, a masked value -> the value
    hidden under its mask) rather than guessing."""
    if isinstance(value, np.ma.MaskedArray) and np.ma.count_masked(value):
        at = np.argwhere(np.ma.getmaskarray(value))[0].tolist()
        raise DataError(f"{what} is a masked array with {np.ma.count_masked(value)} masked "
                        f"value(s) (the first at index {at}), which would train as the values "
                        "under the mask: fill them (value.filled(...)) or drop their rows")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise DataError(f"{what} must be a numeric array: {e}") from None
    kind = arr.dtype.kind
    if kind == "O":
        for x in arr.flat:
            if not isinstance(x, numbers.Real):
                raise DataError(f"{what} must be numeric: it holds {x!r} "
                                f"({type(x).__name__})")
    elif kind == "c":
        raise DataError(f"{what} is complex ({arr.dtype}); the trainer takes real numbers")
    elif kind not in "biuf":
        raise DataError(f"{what} must be numeric, not an array of dtype {arr.dtype}")
    try:
        return _values(arr, what, dtype)
    except (TypeError, ValueError, OverflowError) as e:
        raise DataError(f"{what} must be numeric: {e}") from None


def _values(arr, what: str, dtype) -> np.ndarray:
    """arr as `dtype` (no copy where it is already); a finite value that becomes inf (past
    float32's range, about 3.4e38) is a DataError rather than a silent inf."""
    with np.errstate(over="ignore"):
        out = np.asarray(arr, dtype=dtype)
    if out.dtype.itemsize < 8 and out is not arr and np.asarray(arr).dtype.kind in "fO":
        inf = np.isinf(out)
        if inf.any():
            wide = np.asarray(arr, dtype=np.float64)
            past = np.argwhere(inf & np.isfinite(wide))
            if past.size:
                at = past[0].tolist()
                raise DataError(f"{what} holds {wide[tuple(at)]:g} at index {at}, past the "
                                f"range of {out.dtype} (the module's dtype)")
    return out


FINITE_BLOCK = 1 << 17    # values converted and checked at a time (_finite_values)


def _finite_values(data, what: str, dtype, where) -> np.ndarray:
    """The stored values of sparse data as `dtype` (no copy where they are already), every one
    finite, from one check of the converted values: a NaN or inf given and a value past
    float32's range are told apart only once one is found. where(i) gives the row of value i
    and its place as the message names it. Converted and checked a block at a time: the check reads each block
    from cache rather than the whole array again from memory (integers are always finite)."""
    src = np.asarray(data)
    convert = not (src.dtype == dtype and src.flags.c_contiguous)
    out = np.empty(src.shape, dtype=dtype) if convert else src
    check = src.dtype.kind not in "biu"
    finite = np.empty(min(src.size, FINITE_BLOCK), dtype=bool)
    ok = True
    with np.errstate(over="ignore"):
        for start in range(0, src.size, FINITE_BLOCK):
            block = out[start:start + FINITE_BLOCK]
            if convert:
                np.copyto(block, src[start:start + FINITE_BLOCK], casting="unsafe")
            if check and ok:
                ok = bool(np.isfinite(block, out=finite[:block.size]).all())
    if ok:
        return out
    _values(data, what, dtype)          # a value past the dtype's range says so
    bad = np.flatnonzero(~np.isfinite(out))[0]
    row, text = where(bad)
    raise _at_row(DataError(f"{what} holds NaN or inf ({text})"), row)


def _indices(what: str, name: str, arr, limit: int, length: int | None = None) -> None:
    """An index array of a sparse matrix: 1-D, integral, in [0, limit), of the right length.
    Checked before any cast, so an int64 index past 2^32 is refused, never wrapped."""
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise DataError(f"{what} is a corrupt sparse matrix: its {name} must be a 1-D integer "
                        f"array, not {type(arr).__name__} {getattr(arr, 'dtype', '')}".rstrip())
    if length is not None and arr.size != length:
        raise DataError(f"{what} is a corrupt sparse matrix: {arr.size} {name} for {length} "
                        "stored values")
    if arr.size and _out_of_range(arr, limit):
        bad = arr[(arr < 0) | (arr >= limit)][0]
        raise DataError(f"{what} is a corrupt sparse matrix: {name} entry {bad} is out of "
                        f"range [0, {limit})")


def _out_of_range(arr: np.ndarray, limit: int) -> bool:
    """Whether an integer array holds a value outside [0, limit), in one pass where it can:
    seen unsigned, a negative value is at least 2^(bits - 1), so one max finds both sides."""
    if arr.dtype.kind == "i" and limit <= 2 ** (8 * arr.itemsize - 1):
        return bool(arr.view(arr.dtype.str.replace("i", "u")).max() >= limit)
    return bool(arr.min() < 0 or arr.max() >= limit)


def _indptr(what: str, indptr, n: int) -> int:
    """Row (or column) pointers: n + 1 integers from 0, never decreasing; returns the last."""
    if not isinstance(indptr, np.ndarray) or indptr.ndim != 1 or indptr.dtype.kind not in "iu":
        raise DataError(f"{what} is a corrupt sparse matrix: its indptr must be a 1-D integer "
                        "array")
    if indptr.size != n + 1:
        raise DataError(f"{what} is a corrupt sparse matrix: indptr has {indptr.size} entries "
                        f"for {n} rows (needs {n + 1})")
    if indptr[0] != 0 or np.any(indptr[1:] < indptr[:-1]):
        raise DataError(f"{what} is a corrupt sparse matrix: indptr must start at 0 and never "
                        "decrease")
    return int(indptr[-1])


def _sparse_values(what: str, data) -> None:
    if not isinstance(data, np.ndarray):
        raise DataError(f"{what} is a corrupt sparse matrix: its data is not an array")
    kind = data.dtype.kind
    if kind == "c":
        raise DataError(f"{what} is complex ({data.dtype}); the trainer takes real numbers")
    if kind not in "biuf" or data.dtype == np.float16:
        raise DataError(f"{what} has values of dtype {data.dtype}; sparse data must be bool, "
                        "integer, float32 or float64")


def as_csr(value, what: str, dtype=np.float64) -> sp.csr_matrix:
    """Any sparse matrix (CSR/CSC/BSR/COO/DIA/LIL/DOK, matrix or array) or 2-D array as a
    canonical CSR: float64 (or `dtype`) values, int64 row pointers, int32 sorted columns, no
    duplicates. Structure is validated before scipy touches it (a bad indptr crashes its C
    code)."""
    if not sp.issparse(value):
        arr = _numeric(value, what, dtype)
        if arr.ndim != 2:
            raise DataError(f"{what} must be a sparse matrix (scipy CSR/CSC/COO) or a 2-D "
                            f"array, got shape {arr.shape}")
        _extent(what, arr.shape)
        m = sp.csr_matrix(arr)
    else:
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) != 2:
            raise DataError(f"{what} must be 2-D, got shape {shape}")
        _extent(what, shape)
        fmt = getattr(value, "format", None)
        try:
            if fmt not in ("csr", "csc", "bsr", "coo"):
                value = value.tocoo()     # DIA/LIL/DOK: numpy code, no unchecked C
                fmt = "coo"
            m = _checked_csr(value, fmt, shape, what)
        except DataError:
            raise
        except (ValueError, RuntimeError, TypeError, IndexError, OverflowError,
                AttributeError) as e:
            raise DataError(f"{what} is not a valid sparse matrix: {e}") from None
    if not m.has_canonical_format:   # sorted columns, no duplicates; zeros are kept
        m = m.copy()                 # never sort the caller's arrays in place
        m.sum_duplicates()
    return _kernel_csr(m, what, dtype)


def _kernel_csr(m: sp.csr_matrix, what: str, dtype) -> sp.csr_matrix:
    """A checked CSR in the kernel's types: finite values in `dtype`, int64 row pointers,
    int32 columns (no copy of what already is)."""
    indptr = np.ascontiguousarray(m.indptr, dtype=np.int64)
    indices = np.ascontiguousarray(m.indices, dtype=np.int32)
    def where(at):
        row = int(np.searchsorted(indptr, at, side="right") - 1)
        return row, f"row {row}, column {indices[at]}"
    values = _finite_values(m.data, what, dtype, where)
    out = sp.csr_matrix((values, indices, indptr), shape=m.shape, copy=False)
    out.indptr, out.indices = indptr, indices     # keep our dtypes (scipy may downcast)
    return out


def as_entries(value, what: str, dtype=np.float64) -> tuple[sp.csr_matrix, np.ndarray | None]:
    """Sparse data whose stored entries are terms (LANGUAGE.md: never merged, zeros kept), as
    the kernel's CSR (rows in order; within a row by column, ties in the order given) and, for
    each entry in the order the user gave them (a COO's own order; CSR storage order for CSR
    input and row-major order for any other input), its position in that CSR: None where it is
    the CSR's own order (a CSR with sorted columns is used as it is, with no reordered copy:
    for a large ratings matrix, the sort's arrays were most of a fit's memory)."""
    if hasattr(value, "columns") and not sp.issparse(value) and not isinstance(value, np.ndarray):
        # a table of ratings (user, item, rating, timestamp) read as a dense matrix trained a
        # 4-column matrix on its ids and timestamps: triplets or a matrix, the caller says
        raise DataError(f"{what} is given as a DataFrame, which could be a table of (row, "
                        "column, value) triplets or the dense matrix itself: give triplets as "
                        "scipy.sparse.coo_matrix((df[VALUE], (df[ROW], df[COLUMN]))), or the "
                        "matrix as df.to_numpy()")
    if sp.issparse(value) and getattr(value, "format", None) == "coo":
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) != 2:
            raise DataError(f"{what} must be 2-D, got shape {shape}")
        _extent(what, shape)
        _sparse_values(what, value.data)
        if value.data.ndim != 1:
            raise DataError(f"{what} is a corrupt sparse matrix: its data must be 1-D")
        _indices(what, "row", value.row, shape[0], value.data.shape[0])
        _indices(what, "col", value.col, shape[1], value.data.shape[0])
        row, col, data = value.row, value.col, value.data
    else:
        if sp.issparse(value) and getattr(value, "format", None) in ("csr", "csc"):
            shape = tuple(value.shape)
            _extent(what, shape)
            try:
                m = _checked_csr(value, value.format, shape, what)   # duplicates kept
            except DataError:
                raise
            except (ValueError, RuntimeError, TypeError, IndexError, OverflowError,
                    AttributeError) as e:
                raise DataError(f"{what} is not a valid sparse matrix: {e}") from None
        else:               # a dense array, DIA/LIL/DOK/BSR: no repeated entries
            return as_csr(value, what, dtype), None
        if m.has_sorted_indices:
            return _kernel_csr(m, what, dtype), None
        row = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        col, data = m.indices, m.data
    values = _finite_values(data, what, dtype,
                            lambda at: (row[at], f"row {row[at]}, column {col[at]}"))
    order = np.lexsort((col, row))          # stable: duplicates stay in the order given
    shape = tuple(value.shape) if sp.issparse(value) else tuple(m.shape)
    n_rows = int(shape[0])
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=n_rows), out=indptr[1:])
    indices = np.ascontiguousarray(np.asarray(col)[order], dtype=np.int32)
    out = sp.csr_matrix((values[order], indices, indptr), shape=shape, copy=False)
    out.indptr, out.indices = indptr, indices     # keep our dtypes (scipy may downcast)
    positions = np.empty(order.size, dtype=np.int64)
    positions[order] = np.arange(order.size, dtype=np.int64)
    return out, positions


def _extent(what: str, shape) -> None:
    if any(int(s) < 0 or int(s) > MAX_EXTENT for s in shape):
        raise DataError(f"{what} is too large: shape {tuple(shape)} (each extent must be at "
                        f"most {MAX_EXTENT})")


def _checked_csr(value, fmt: str, shape: tuple, what: str) -> sp.csr_matrix:
    """CSR of a CSR/CSC/BSR/COO matrix whose every index array has been checked first."""
    n_rows, n_cols = (int(s) for s in shape)
    _sparse_values(what, value.data)
    if fmt == "coo":
        nnz = value.data.shape[0] if value.data.ndim == 1 else -1
        if value.data.ndim != 1:
            raise DataError(f"{what} is a corrupt sparse matrix: its data must be 1-D")
        _indices(what, "row", value.row, n_rows, nnz)
        _indices(what, "col", value.col, n_cols, nnz)
        return sp.coo_matrix((value.data, (value.row, value.col)), shape=shape).tocsr()
    if fmt == "bsr":
        r, c = value.blocksize
        if r < 1 or c < 1 or n_rows % r or n_cols % c:
            raise DataError(f"{what} is a corrupt sparse matrix: blocks of {r}x{c} do not tile "
                            f"its shape {shape}")
        nnz = _indptr(what, value.indptr, n_rows // r)
        if value.data.shape != (nnz, r, c):
            raise DataError(f"{what} is a corrupt sparse matrix: data of shape "
                            f"{value.data.shape} for {nnz} blocks of {r}x{c}")
        _indices(what, "indices", value.indices, n_cols // c, nnz)
        return sp.bsr_matrix((value.data, value.indices, value.indptr), shape=shape,
                             blocksize=(r, c)).tocsr()
    major, minor = (n_rows, n_cols) if fmt == "csr" else (n_cols, n_rows)
    nnz = _indptr(what, value.indptr, major)
    if value.data.ndim != 1 or value.data.size != nnz:
        raise DataError(f"{what} is a corrupt sparse matrix: {value.data.size} values for "
                        f"{nnz} stored entries (indptr[-1])")
    _indices(what, "indices", value.indices, minor, nnz)
    make = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
    return make((value.data, value.indices, value.indptr), shape=shape, copy=False).tocsr()


class _Binding:
    """What one call of TrainerBase.layout binds: the checked data (`given`), the dims, the
    params and optimizer state, and `need` ("all" or "predict"). The FILL functions read the
    layout's fields off it; what several fields share is computed once."""

    def __init__(self, trainer, given: dict, dims: dict, need: str):
        self.trainer, self.spec, self.given, self.dims, self.need = \
            trainer, trainer.spec, given, dims, need
        self.extents = {**dict(trainer.spec.consts), **dims}
        self._memo = {}

    def once(self, what, make):
        if what not in self._memo:
            self._memo[what] = make()
        return self._memo[what]

    def params(self) -> dict:
        return self.once("params", lambda: self.trainer._live_params(self.dims))

    def state(self) -> dict:
        """Layout key -> (name in the trainer's _accumulators, shape), for this optimizer."""
        return self.once("state", lambda: {key: (name, shape) for name, key, shape, _ in
                                           self.trainer._state_arrays()})

    def nterms(self, index: int) -> int:
        def count():
            b = self.spec.blocks[index]
            if self.need != "all" and b.predict is None:
                return 0                     # predict runs only the predicting block
            if b.kind == "rows":
                return self.dims[b.over]
            if b.over not in self.given:
                raise DataError(f"missing data '{b.over}': its stored entries are the terms "
                                f"of the block on spec line {b.line}")
            return self.given[b.over].nnz
        return self.once(("nterms", index), count)

    def entry_rows(self, name: str) -> np.ndarray:
        """The row of each stored entry of sparse data `name`."""
        def rows():
            m = self.given[name]
            return np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))
        return self.once(("rows", name), rows)

    def alias(self, name: str):
        return self.once(("alias", name), lambda: _alias_table(name, self.given[name]))


def _given(b: _Binding, name: str):
    return b.given.get(name)


def _csr_part(part: str):
    def fill(b: _Binding, name: str):
        m = b.given.get(name)
        return None if m is None else getattr(m, part)
    return fill


def _maxnnz(b: _Binding, name: str) -> int:
    m = b.given.get(name)
    lengths = np.diff(m.indptr) if m is not None else ()
    return int(lengths.max()) if len(lengths) else 0


def _state(b: _Binding, key: str):
    """AdaGrad's or l1's state of a param, kept across fits in the trainer's _accumulators
    (zeros where there is none of this shape and dtype yet); predict reads none."""
    if b.need != "all" or key not in b.state():
        return None
    name, shape = b.state()[key]
    accumulators = b.trainer.__dict__.setdefault("_accumulators", {})
    acc = accumulators.get(name)
    if acc is None or acc.shape != shape or acc.dtype != b.trainer.dtype:
        acc = accumulators[name] = _aligned(np.zeros(shape, dtype=b.trainer.dtype))
    return acc


def _state_of(role: str):
    return lambda b, param: _state(b, b.trainer._key(role, param))


def _degree_of(b: _Binding, name: str):
    """1/deg(c) of the degree split `name`: how many terms of its block touch each coordinate
    (a number for a whole-param target); predict reads none."""
    block, deg = next((blk, d) for blk in b.spec.blocks for d in blk.degs if d.name == name)
    if b.need != "all":
        return 0.0 if deg.kind == "all" else None
    inv = _degree(deg, block, b.given, b.extents, b.nterms(block.index), b.entry_rows,
                  b.trainer._column_counts)
    return inv if deg.kind == "all" else inv.astype(b.trainer.dtype, copy=False)


def _draw_key_of(b: _Binding, _):
    """The key of the objective's fixed draws; a refusal to draw from an empty dim."""
    for block in b.spec.blocks:
        for s in block.samples:
            if b.nterms(block.index) > 0 and b.extents[s.var.dim] == 0:
                raise DataError(f"'sample {s.var.name} in {s.var.dim}' (spec line {s.line}) "
                                f"draws from {s.var.dim}, which has size 0")
    return _draw_key(b.trainer.seed, "objective")


# How the runtime fills each role of the layout (lower.ROLES) off a _Binding: the value of the
# field `of` the given name, or None where the data given do not hold it (the kernel then
# refuses to run what would read it).
FILL = {
    "param": lambda b, name: b.params()[name],
    "data": _given,
    "index": _given,
    "indptr": _csr_part("indptr"),
    "indices": _csr_part("indices"),
    "values": _csr_part("data"),
    "rows": lambda b, name: b.entry_rows(name) if name in b.given else None,
    "maxnnz": _maxnnz,
    "acc": _state_of("acc"),
    "l1u": _state_of("l1u"),
    "l1q": _state_of("l1q"),
    "alias_p": lambda b, name: b.alias(name)[0] if name in b.given else None,
    "alias_i": lambda b, name: b.alias(name)[1] if name in b.given else None,
    "deg": _degree_of,
    "optimizer": lambda b, _: OPTIMIZERS[b.trainer.optimizer] if b.need == "all" else 0,
    "nterms": lambda b, index: b.nterms(index),
    "dim": lambda b, dim: b.dims[dim],
    "draw_key": _draw_key_of,
}


def _degree(deg: ir.DegSpec, block: ir.Block, given: dict, dims: dict, n_terms: int,
            entry_rows, column_counts):
    """1/deg(c): how many terms of `block` touch each coordinate (the degree split)."""
    if deg.kind == "all":
        return 1.0 / max(n_terms, 1)
    counts = _counts(deg, block, given, dims, n_terms, entry_rows, column_counts)
    with np.errstate(divide="ignore"):
        return np.where(counts > 0, 1.0 / np.maximum(counts, 1e-300), 0.0)


def _counts(deg: ir.DegSpec, block: ir.Block, given: dict, dims: dict, n_terms: int,
            entry_rows, column_counts) -> np.ndarray:
    """deg(c): how many terms of `block` touch each coordinate through the target(s)."""
    if deg.kind == "sum":
        return sum(_counts(part, block, given, dims, n_terms, entry_rows, column_counts)
                   for part in deg.parts)
    if deg.kind in ("indirect", "sample"):
        return _touches(deg, block, given, entry_rows, n_terms, dims[deg.dim])
    if deg.via is not None:     # X[better[p]]: a row counts once per term picking it
        x = given[deg.data]
        per_value = _index_counts(deg.via, deg.var, block, given, entry_rows, x.shape[0])
    elif block.kind == "rows":
        per_value = np.ones(dims[block.over], dtype=np.float64)   # each index is one term
    else:
        m = given[block.over]
        first = deg.var == block.vars[0].name
        ids = entry_rows(block.over) if first else m.indices
        size = m.shape[0] if first else m.shape[1]
        per_value = np.bincount(ids, minlength=size).astype(np.float64)
    if deg.kind == "var":
        counts = per_value
    elif block.kind == "rows" and deg.via is None:     # every row is one term: column counts
        x = given[deg.data]
        counts = column_counts(x.indices, x.shape[1])
    else:
        x = given[deg.data]
        weights = np.repeat(per_value, np.diff(x.indptr))
        counts = np.bincount(x.indices.astype(np.intp), weights=weights, minlength=x.shape[1])
    return counts


def _touches(deg: ir.DegSpec, block: ir.Block, given: dict, entry_rows, n_terms: int,
             size: int) -> np.ndarray:
    """How many terms of `block` touch each value of `deg.dim` through an index datum
    (counted), or in expectation per epoch through a sampled index (terms x draws per term x
    probability)."""
    if deg.kind == "sample":
        draws = n_terms * deg.draws
        if deg.data is None:
            return np.full(size, draws / max(size, 1), dtype=np.float64)
        w = _draw_weights(deg.data, given[deg.data])      # 1/deg is double (layout)
        return draws * w / w.sum()
    return _index_counts(deg.data, deg.var, block, given, entry_rows, size, deg.via)


def _index_counts(data: str, at: str, block: ir.Block, given: dict, entry_rows,
                  size: int, via: str | None = None) -> np.ndarray:
    """How many terms of `block` read each value of the index data `data` (read at the
    block's index `at`, or with `via` at the value of index data `via` read there:
    g[it[i]])."""
    values = given[data if via is None else via]
    if block.kind == "entries":      # the index datum read at the row or column of each entry
        m = given[block.over]
        values = values[entry_rows(block.over) if at == block.vars[0].name else m.indices]
    if via is not None:
        values = given[data][values]
    return np.bincount(values, minlength=size).astype(np.float64)


def _shared_data(spec: ir.Spec) -> list:
    """The data that do not vary with the terms: neither an entry block's matrix nor data
    read at its entries, and over no dim a row block runs over (`mu`, `tau`, weights of a
    `sample ... ~ P`, `g[feature]`, side features `F[user, f]` of an entry block)."""
    per_term = {b.over for b in spec.blocks if b.kind == "entries"} | \
        set(_entry_companions(spec))
    rows = {b.over for b in spec.blocks if b.kind == "rows"}
    return [d.name for d in spec.data if d.name not in per_term and not rows & set(d.dims)]


def _entry_companions(spec: ir.Spec) -> dict:
    """Sparse data read at the current entry of another's entry block (a weight per
    observation, c[u, v] in `for (u, v) in r`) -> that block's data."""
    sparse = {d.name for d in spec.data if d.kind == "sparse"}
    out = {}
    for b in spec.blocks:
        if b.kind != "entries":
            continue
        exprs = [e for e, _ in b.losses] + [r.expr for r in b.regs] + \
            ([b.predict] if b.predict is not None else [])
        for e in exprs:
            for node in ir.walk(e):
                if isinstance(node, ir.DataAt) and node.name in sparse and \
                        node.name != b.over and node.index == b.vars:
                    out[node.name] = b.over
    return out


@contextlib.contextmanager
def _interrupt_between_epochs():
    """Ctrl-C during training stops it after the current epoch, never inside one: params,
    history and the epoch count then agree with no copy of the params kept to undo an epoch.
    (The kernel runs without the GIL, so the interrupt could only land between kernels
    anyway.) Yields a function that tells whether Ctrl-C was pressed. Python's own handler
    only is replaced, in the main thread only (where signals are delivered)."""
    pressed = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield lambda: False
        return
    signal.signal(signal.SIGINT, lambda *_: pressed.append(True))
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _draw_key(seed: int, *purpose) -> int:
    """A 62-bit key for the kernel's counter-based draws, a function of the seed and what the
    draws are for ("objective", or ("epoch", n)): reproducible, and different per epoch."""
    words = [seed] + [sum(map(ord, p)) if isinstance(p, str) else int(p) for p in purpose]
    return int(np.random.default_rng(words).integers(2**62))


def _draw_weights(name: str, weights) -> np.ndarray:
    """The weights of a draw as doubles, checked before anything divides by their sum (the
    expected degrees and the alias table both do): non-negative, with a positive finite
    sum."""
    w = np.asarray(weights, dtype=np.float64)
    if w.size and w.min() < 0:
        at = int(np.flatnonzero(w < 0)[0])
        raise DataError(f"data '{name}' weights a draw, so it must be non-negative, but "
                        f"position {at} holds {w[at]:g}")
    total = w.sum()
    if not total > 0 or not np.isfinite(total):
        raise DataError(f"data '{name}' weights a draw, so its sum must be positive and "
                        f"finite, not {total:g}")
    return w


def _alias_table(name: str, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table (Vose's construction) of the distribution proportional to
    `weights`: a draw is then O(1) (a uniform slot k, kept with probability prob[k], else
    alias[k])."""
    w = _draw_weights(name, weights)
    total = w.sum()
    n = w.size
    scaled = w * (n / total)
    prob = np.ones(n, dtype=np.float64)
    alias = np.arange(n, dtype=np.int64)
    small = [k for k in range(n) if scaled[k] < 1.0]
    large = [k for k in range(n) if scaled[k] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias


DRAW_BLOCK = 1 << 16     # values drawn at a time (_draw_into)


def _draw_into(out: np.ndarray, rng, init: ir.Init) -> None:
    """Fill `out` with the init's random draws, a block at a time: the very values of one
    draw of its shape (the generator's stream is sequential), rounded to a float32 param's
    dtype without a float64 copy of the param (which was most of a float32 fit's peak)."""
    flat = out.reshape(-1)
    draw = rng.normal if init.kind == "normal" else rng.uniform
    for start in range(0, flat.size, DRAW_BLOCK):
        stop = min(start + DRAW_BLOCK, flat.size)
        flat[start:stop] = draw(init.a, init.b, size=stop - start)


ALIGN = 64     # bytes: a cache line


def _aligned(value: np.ndarray) -> np.ndarray:
    """`value` starting on a cache line (a copy where it does not): a row of 2^n doubles then
    lies on whole lines. numpy aligns to 16 bytes, and rows split across one more line made
    both the generated and the hand-written epoch 1.2x slower (Poisson MF rank 16, CML k = 16:
    bench/results/user_kernels.md)."""
    if value.ctypes.data % ALIGN == 0:
        return value
    raw = np.empty(value.nbytes + ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGN
    out = raw[start:start + value.nbytes].view(value.dtype).reshape(value.shape)
    out[...] = value
    return out


def _project(value: np.ndarray, con: ir.Constraint | None) -> np.ndarray:
    """Make an initial value satisfy its constraint (rows for simplex/ball)."""
    if con is None:
        return value
    if con.kind == "lower":     # out=: a 0-D param stays an array, not a numpy scalar
        return np.maximum(value, con.lo, out=value.copy())
    if con.kind == "box":
        return np.clip(value, con.lo, con.hi, out=value.copy())
    rows = value.reshape(-1, value.shape[-1]) if value.ndim else value.reshape(1, 1)
    if con.kind == "ball":
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = rows * np.minimum(1.0, con.hi / np.maximum(norms, 1e-300))
    else:
        u = -np.sort(-rows, axis=1)
        css = np.cumsum(u, axis=1) - 1.0
        k = np.arange(1, rows.shape[1] + 1)
        cond = u - css / k > 0
        rho = rows.shape[1] - 1 - np.argmax(cond[:, ::-1], axis=1)
        theta = css[np.arange(rows.shape[0]), rho] / (rho + 1)
        rows = np.maximum(rows - theta[:, None], 0.0)
    return np.array(rows.reshape(value.shape), dtype=value.dtype, order="C")


MAX_COUNT = 2**31 - 1       # epochs and chunk sizes (the kernels take C ints and int64s)


def max_threads() -> int:
    """The most threads a trainer may use: 4x the cores this process may run on, and at least
    64 (OpenMP itself crashes on 100,000)."""
    return max(64, 4 * _available_threads())


def trainer_options() -> list[str]:
    """The Trainer's options, in the order of its signature."""
    return [p for p in inspect.signature(TrainerBase.__init__).parameters
            if p not in ("self", "unknown")]


def no_terms(spec: ir.Spec) -> DataError:
    """Data that give no block a term: a local fit and distributed.fit say it alike."""
    blocks = " and ".join(f"'{b.header().rstrip(':')}'" for b in spec.blocks)
    return DataError(f"the data give model '{spec.model}' no terms to train on: "
                     f"{blocks} ha{'s' if len(spec.blocks) == 1 else 've'} 0 terms")


def unknown_data(name: str, spec: ir.Spec, owner: str, options) -> DataError:
    """A keyword of fit/objective/predict that is no data of the spec: an option of the
    trainer's (fit(X=X, y=y, epochs=5), as Keras has it) says where it goes; a near name
    ('Y' for 'y') is suggested."""
    declared = [d.name for d in spec.data]
    text = (f"unknown data name '{name}': model '{spec.model}' declares "
            f"{', '.join(declared) or 'no data'}")
    option = PEER_TRAIN_KEYS.get(name, name)
    option = option if option in options else next(
        (o for o in options if o.startswith(f"{option}_")), None)   # threads_per_worker
    if option is not None:
        return DataError(f"{text}; '{name}' is no data but an option: {owner}({option}=...)")
    close = difflib.get_close_matches(name, declared, n=1, cutoff=0.6) or \
        [d for d in declared if d.lower() == name.lower()]
    return DataError(f"{text} (did you mean '{close[0]}'?)" if close else text)


def _unknown_options(unknown: dict):
    """A Trainer keyword that is no option: name it, the option meant, and the options."""
    options = trainer_options()
    name = sorted(unknown)[0]
    close = [PEER_TRAIN_KEYS[name]] if name in PEER_TRAIN_KEYS else \
        difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    meant = f": did you mean {close[0]}=?" if close else ""
    raise HogwildError(f"Trainer has no option {name!r}{meant} (its options: "
                       f"{', '.join(options)})")


def _int_option(name, v, lo, hi, why=None):
    """An integer option (an integral float is accepted) in [lo, hi], or a HogwildError."""
    kind = "positive integer" if lo == 1 else "non-negative integer"
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)) \
            or isinstance(v, (float, np.floating)) and not (np.isfinite(v) and v == int(v)) \
            or v < lo:
        raise HogwildError(f"{name} must be a {kind}, not {_show(v)}")
    if v > hi:
        raise HogwildError(f"{name} must be a {kind} of at most {hi}, not {_show(v)}" +
                           (f" ({why})" if why else ""))
    return int(v)


def _positive_float(name, v):
    if not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, float, np.integer, np.floating)):
        try:
            if v > 0 and math.isfinite(v):
                return float(v)
        except OverflowError:     # an int past float's range
            pass
    raise HogwildError(f"{name} must be a positive number, not {_show(v)}")


def _exact(x) -> str:
    """A number as short as '%g' unless that rounds it: a label 1.0000001 is no +1, and
    "found 1" did not say what was wrong with it."""
    short = f"{x:g}"
    return short if float(short) == float(x) else repr(float(x))


def _show(v) -> str:
    """repr of a user's value, cut to one short line."""
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
