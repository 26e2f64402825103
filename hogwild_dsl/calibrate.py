"""The default step (docs/api.md, "The default step"): where neither the Trainer nor the spec's
train line gives a step, the first fit that trains searches one on the data scaled down.

These functions take the Trainer (runtime.TrainerBase: its methods `_calibrate_step`,
`_scaled_down` and `_smaller_step` call them) as `self`: a module of their own, since the
search is a stage of a fit with its own constants and measurements (bench/results/
no_tuning.md, calibration_variants.md).
"""
from __future__ import annotations

import math
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from . import runtime
from .errors import DataError

# The search: a share of each block's terms (CALIBRATION_SHARE of them, at least
# CALIBRATION_TERMS, at most CALIBRATION_MAX_TERMS in all) over the same share of the rows of
# every dim the terms range over (the other rows hashed onto those), so that every row keeps
# the updates per pass it gets in a real epoch and every node its neighbours (a plain sample
# of terms is another problem: wide rows fitted too easily, factor rows updated once or twice;
# bench/results/calibration_variants.md). The hashing makes sparse data denser by 1 / share
# (its rows overlap more than the data's): 2,000 terms instead of 1,000 picked linreg's and
# fm's best steps at seed 0 but not over seeds 0-2 (the same mean ratio to the best, at twice
# the cost; docs/api.md). First each step of STEP_GRID for
# CALIBRATION_PASSES passes (where the best is at an end, the grid goes on past it, 3 steps at
# a time, up to STEP_LIMITS), then half-steps of that grid around its best for as many passes
# as the fit has epochs, at its decay (the best step for 10 epochs is not the best for 3),
# walking towards the lower end at most FINE_WALK half-steps further. On copies of the params
# and optimizer state, each step on one thread. A fit that diverges all the same restarts at
# the step RESTART_FACTOR lower (half a step of the grid). bench/results/no_tuning.md
# measures these choices against the best hand-tuned step.
STEP_GRID = tuple(3.0 ** k for k in range(-9, 4))     # 5.1e-5 .. 27
STEP_LIMITS = (3.0 ** -25, 3.0 ** 9)    # where the best is at an end, the grid goes on to these
CALIBRATION_TERMS = 1000
CALIBRATION_SHARE = 0.02
CALIBRATION_MAX_TERMS = 20_000
CALIBRATION_PASSES = 3
FINE_WALK = 6
# Objectives within TIE (relative) of each other are ties: the search takes the largest step
# of the run of steps tied with the best (more progress on the full data), and walks past an
# end of its steps only where that end is lower than its neighbour and differs from the start
# (no walk into ever smaller steps where the objective is flat, as for an optimizer that makes
# no progress at any step: the cut LP under adagrad once ended at 3^-25.5 = 6.8e-13); a search
# whose best is no lower than the start says so (a RuntimeWarning, calibration["stalled"]).
TIE = 1e-3
# A trainer with `_start_only` set (the scikit-learn estimators' held-out step search,
# sklearn.py) runs the first stage alone, START_PASSES pass per step: the search only needs
# a start, and its walk trains the fit's epochs at steps 3x apart on held-out rows right after
# (the second stage's work again, judged better): on bench_sklearn's data the search ends
# as well on held-out and test rows at a fraction of the passes (bench/results/
# step_search.md). Nor does it warn of a stalled search: the held-out objective judges.
START_PASSES = 1
CALIBRATION_BYTES = 1 << 30      # the most memory the steps' copies of the params take at once
RESTART_FACTOR = math.sqrt(3.0)


def calibrate_step(self, arrays: dict, sizes: dict):
    """Where no step was given (Trainer, train line), once per trainer, before its first
    training epoch: set `step` to the half-power of 3 that ends lowest on the data scaled
    down (scaled_down): the best of STEP_GRID after CALIBRATION_PASSES passes, then the
    best of its half-steps after as many passes as the fit has epochs, at the fit's decay,
    from copies of the current params and optimizer state (with `_start_only`, the grid
    alone at START_PASSES pass per step). Each trial runs on one thread,
    from draws of the search's own seeded by `seed`: the same step whatever the threads,
    and the fit's own visits unchanged. `calibration` records the search. Returns the point
    a divergence restarts from (smaller_step), or None where nothing was calibrated."""
    if not self.__dict__.get("_calibrate") or self.epochs == 0:
        return None
    n_all = self.kernels.Kernel(arrays, sizes).nterms
    if n_all == 0:
        return None
    began = time.perf_counter()
    share = min(1.0, max(CALIBRATION_SHARE, CALIBRATION_TERMS / n_all),
                CALIBRATION_MAX_TERMS / n_all)
    small, small_sizes = arrays, sizes
    if share < 1.0:
        try:
            small, small_sizes = self._scaled_down(arrays, sizes, share,
                                                   np.random.default_rng([self.seed, 0x57E9]))
        except DataError:        # e.g. sampling weights all 0 on the kept rows: whole data
            share = 1.0
    kernel = self.kernels.Kernel(small, small_sizes)
    n, draws = kernel.nterms, hasattr(kernel, "set_draw_key")
    live = {p.name for p in self.spec.params} | {k for _, k, *_ in self._state_arrays()}
    terms = np.arange(n, dtype=np.int64)
    visits = {}         # pass i -> its visit, the same in every trial: drawn once

    def visit(i: int) -> np.ndarray:
        if i not in visits:
            visits[i] = np.random.default_rng([self.seed, 0x57E9, i]).permutation(n).astype(
                np.int64)
        return visits[i]

    def trial(half: int, passes: int) -> float:
        """The objective of the scaled-down data after `passes` passes at step 3^(half/2),
        from copies (inf: diverged)."""
        copies = {k: small[k].copy() for k in live}
        run = self.kernels.Kernel({**small, **copies}, small_sizes)
        for i in range(passes):
            if draws:
                run.set_draw_key(runtime._draw_key(self.seed, "calibrate", i))
            run.epoch(visit(i), 0, half_step(half) *
                      self.decay ** (self._epochs_done + i), 1, runtime.SYNC_MODES["hogwild"])
        if draws:
            run.set_draw_key(runtime._draw_key(self.seed, "objective"))
        value = run.objective_terms(terms, 1) / max(n, 1)
        with np.errstate(over="ignore", invalid="ignore"):     # (inf - inf: diverged)
            finite = all(math.isfinite(np.sum(v)) for v in copies.values())
        return float(value) if finite and math.isfinite(value) else math.inf

    # each trial on one thread of its own (the kernels release the GIL): deterministic,
    # and the search takes the fit's cores, with at most CALIBRATION_BYTES of copies at once
    copy_bytes = sum(small[k].nbytes for k in live)
    workers = min(self.threads, len(STEP_GRID), max(1, CALIBRATION_BYTES // max(copy_bytes, 1)))
    start_only = self._start_only
    passes = min(START_PASSES if start_only else CALIBRATION_PASSES, self.epochs)
    limits = tuple(round(2 * math.log(x, 3)) for x in STEP_LIMITS)
    start = trial(0, 0)
    # (one worker: the trials in this thread, without a pool's hand-offs)
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    each = pool.map if pool is not None else map
    try:
        coarse = walk(lambda halves: list(each(trial, halves, [passes] * len(halves))),
                      [2 * round(math.log(x, 3)) for x in STEP_GRID], 2, limits, 3, None,
                      start)
        first = pick(coarse)
        fine = {first: coarse[first]} if start_only else \
            walk(lambda halves: list(each(trial, halves, [self.epochs] * len(halves))),
                 [first - 1, first, first + 1], 1, limits, 1, FINE_WALK, start)
    finally:
        if pool is not None:
            pool.shutdown()
    best = pick(fine)
    if not math.isfinite(fine[best]):
        best = first
    if math.isfinite(coarse[first]):
        self.step = half_step(best)
    self._calibrate = False
    stalled = not lower(min(fine[best], coarse[first]), start)
    if stalled and not start_only:      # (a start: the held-out search judges its steps)
        warnings.warn(
            f"the default step's search found no step from {half_step(min(coarse)):.3g} to "
            f"{half_step(max(coarse)):.3g} that lowers the objective (optimizer "
            f"'{self.optimizer}'; {start:.6g} at the start, {fine[best]:.6g} at the best step, "
            f"on the data scaled down): training at step {self.step:.3g} may not progress; "
            "give a step, or another optimizer", RuntimeWarning, stacklevel=4)
    self.calibration = {"step": self.step, "grid": [half_step(h) for h in sorted(coarse)],
                        "objectives": [coarse[h] for h in sorted(coarse)],
                        "steps": [] if start_only else [half_step(h) for h in sorted(fine)],
                        "fit_objectives": [] if start_only else [fine[h] for h in sorted(fine)],
                        "terms": n, "share": share, "passes": passes, "epochs": self.epochs,
                        "start_objective": start, "stalled": stalled,
                        "diverged": [], "seconds": time.perf_counter() - began}
    return (self._epochs_done, len(self.history), self._rng.bit_generator.state,
            {k: arrays[k].copy() for k in live})


def scaled_down(self, arrays: dict, sizes: dict, share: float, rng) -> tuple[dict, dict]:
    """The fit's data and params as a smaller problem of the same shape, laid out for the
    kernel: `share` of each entry block's stored entries, and of the rows of every dim a
    block ranges over or sparse data index (consts excepted); the dropped rows' entries
    are hashed onto the kept rows, so every kept row keeps about the entries (updates per
    pass, neighbours) it has in the data. A kept row's dense data, index data and params
    are its own (the current params and optimizer state, copied). The result goes through
    the checks of `layout` like any data."""
    spec, consts = self.spec, dict(self.spec.consts)

    def extent(dim):
        return consts[dim] if dim in consts else int(sizes[self._key("dim", dim)])
    ranged = {b.over for b in spec.blocks if b.kind == "rows"}
    ranged |= {dim for d in spec.data if d.kind == "sparse" for dim in d.dims}
    kept, onto = {}, {}
    for dim in sorted(ranged - set(consts)):
        n = extent(dim)
        m = min(n, max(1, math.ceil(share * n)))
        order = rng.permutation(n)
        onto[dim] = np.empty(n, dtype=np.int64)
        onto[dim][order[:m]] = np.arange(m)
        onto[dim][order[m:]] = rng.integers(0, max(m, 1), n - m)
        kept[dim] = order[:m]

    def rows(value, dims):
        for axis, dim in enumerate(dims):
            if dim in kept:
                value = np.take(value, kept[dim], axis=axis)
        return np.array(value, order="C")          # a copy, 0-D kept
    companions = runtime._entry_companions(spec)
    picked = {}
    for b in spec.blocks:
        if b.kind == "entries" and b.over not in picked:
            nnz = int(arrays[self._key("indptr", b.over)][-1])
            picked[b.over] = np.sort(rng.choice(nnz, min(nnz, max(1, math.ceil(
                share * nnz))), replace=False))
    data = {}
    for d in spec.data:
        if d.kind != "sparse":
            value = rows(np.asarray(arrays[d.name]), d.dims)
            value = value.reshape(()) if not d.dims else value
            data[d.name] = onto[d.of][value] if d.kind == "index" and d.of in onto \
                else value
            continue
        a, b = d.dims
        indptr, indices, values = (arrays[self._key(part, d.name)]
                                   for part in ("indptr", "indices", "values"))
        shape = tuple(len(kept[x]) if x in kept else extent(x) for x in d.dims)
        at = picked.get(companions.get(d.name, d.name))
        if at is None:                    # rows kept whole, their columns hashed
            m = sp.csr_matrix((values, indices, indptr), shape=(extent(a), extent(b)))
            coo = (m[kept[a]] if a in kept else m).tocoo()
            row, col, values = coo.row, coo.col, coo.data
        else:                             # entries as terms: a share of them, hashed
            row = np.searchsorted(indptr, at, side="right") - 1
            col, values = indices[at], values[at]
            row = onto[a][row] if a in onto else row
        col = onto[b][col] if b in onto else col
        data[d.name] = sp.coo_matrix((values, (row, col)), shape=shape)
    plain = next(c for c in type(self).__mro__ if "spec" in c.__dict__)
    small = plain(threads=1, epochs=1, step=1.0, decay=self.decay, seed=self.seed,
                  optimizer=self.optimizer, progress=False)
    small.params = {p.name: rows(self.params[p.name], p.dims) for p in spec.params}
    small._accumulators = {name: rows(self._accumulators[name], spec.param(
        param).dims[:len(shape)]) for name, _, shape, param in self._state_arrays()}
    return small.layout(data)


def smaller_step(self, restart, arrays: dict) -> bool:
    """After a divergence at a calibrated step (the sample cannot show every instability:
    a row updated by many terms in one epoch), restart the fit from its start at the step
    RESTART_FACTOR lower; False where the step was not calibrated by this fit or would
    fall below STEP_LIMITS (the DivergenceError then stands)."""
    if restart is None or not lower_step(self):
        return False
    epochs_done, history_length, rng_state, start = restart
    for k, v in start.items():
        arrays[k][...] = v
    del self.history[history_length:]
    self._epochs_done = epochs_done
    self._rng.bit_generator.state = rng_state
    return True


def lower_step(self) -> bool:
    """The calibrated step diverged: record it and take the one RESTART_FACTOR lower (a local
    fit's restart, smaller_step, and a distributed one's); False where that would fall
    below STEP_LIMITS."""
    if self.step / RESTART_FACTOR < STEP_LIMITS[0]:
        return False
    self.calibration["diverged"].append(self.step)
    self.step = self.calibration["step"] = self.step / RESTART_FACTOR
    return True


def half_step(half: int) -> float:
    """The step 3^(half / 2): the calibration's steps are half-powers of 3."""
    return 3.0 ** (half / 2)


def lower(a: float, b: float) -> bool:
    """Is objective `a` lower than `b` by more than a tie (TIE of b; any finite a is lower than
    a divergence)?"""
    return a < b - TIE * abs(b) if math.isfinite(b) else a < b


def pick(seen: dict) -> int:
    """The lowest objective's half-step, or a larger one where the steps up to it all tie
    with the lowest (the smallest step where all diverged)."""
    least = min(seen.values())
    halves = sorted(seen)
    if not math.isfinite(least):
        return halves[0]
    at = min(h for h in halves if seen[h] == least)
    i = halves.index(at)
    while i + 1 < len(halves) and not lower(least, seen[halves[i + 1]]):
        i += 1
    return halves[i]


def walk(judge, start: list, stride: int, limits: tuple, ahead: int, most,
         origin: float = math.inf) -> dict:
    """{half: objective} of the steps 3^(half/2) of `start`, and past an end of them where the
    lowest objective lies there, lower than its neighbour's by more than a tie (`ahead` more at
    a time, `stride` half-steps apart; towards the lower steps too where every one diverged),
    as far as `limits` and at most `most` more (None: no bound). Not past an end whose
    objective ties with `origin` (the objective before any step): there the steps change
    nothing, and smaller ones would change less."""
    seen = dict(zip(start, judge(start)))
    more = 0
    def moves(h):            # the end's objective differs from the one before any step
        return lower(seen[h], origin) or lower(origin, seen[h])
    while most is None or more < most:
        low, high = min(seen), max(seen)
        best = min(seen, key=seen.get)
        if all(v == math.inf for v in seen.values()) or \
                best == low and lower(seen[low], seen[low + stride]) and moves(low):
            halves = [low - stride * k for k in range(1, ahead + 1)]
        elif best == high and lower(seen[high], seen[high - stride]) and moves(high):
            halves = [high + stride * k for k in range(1, ahead + 1)]
        else:
            break
        halves = [h for h in halves if limits[0] <= h <= limits[1]]
        if most is not None:
            halves = halves[:most - more]
        if not halves:
            break
        seen.update(zip(halves, judge(halves)))
        more += len(halves)
    return seen
