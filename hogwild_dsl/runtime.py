"""Stage 7, the Trainer: what a generated module's `Trainer` is (API.md).

The kernels trust everything they are given, so this module checks everything first: data
names, kinds, shapes, dims that must agree, indices in range, NaN/inf, label values. It then
converts the data once into the kernel's layout (CSR with int64 row pointers and int32
columns, float64 values, the row of each stored entry for entry blocks, 1/deg arrays for the
degree split), and runs epochs: a visit order, the step schedule `step * decay^epoch`, the
objective after every epoch, divergence detection, history and an optional progress bar.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import build, ir
from .check import check
from .derive import gradients_text
from .errors import DataError, DivergenceError, HogwildError

SYNC_MODES = {"hogwild": 0, "atomic": 1, "lock": 2}
ORDERS = ("shuffle", "chunks", "stored")
DEFAULTS = {"step": 0.05, "decay": 0.9, "epochs": 10, "chunk": 64, "order": "chunks"}
EVAL_TERMS = 200_000     # history's objective: exact up to this many terms, else on a sample
EXPLODED = 1e12          # objective growth over its initial value that counts as divergence


def bind(module_name: str, module_file: str, spec_text: str, consts: dict, signature: str,
         kernels: str):
    """Build the Trainer class and gradients() of one generated module."""
    spec = check(spec_text, consts)
    folder = Path(module_file).resolve().parent
    parent = module_name.rpartition(".")[0] or f"hog_{signature}"
    ext_module = f"{parent}.{kernels}"
    if ext_module in sys.modules:
        ext = sys.modules[ext_module]
    else:
        so = build.find_extension(folder, kernels)
        if so is None:     # sources without a build (e.g. a fresh checkout of generated/)
            so = build.compile_extension(folder / f"{kernels}.pyx", kernels)
        ext = build.import_from_path(ext_module, so)
    trainer = type("Trainer", (TrainerBase,), {
        "spec": spec, "kernels": ext, "signature": signature, "__module__": module_name,
        "__doc__": f"SGD trainer of model '{spec.model}' (see TrainerBase)."})

    def gradients() -> str:
        """The derived per-term gradients, as readable math."""
        return gradients_text(spec)

    return trainer, gradients


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

    def __init__(self, threads=None, epochs=None, step=None, decay=None, seed=0,
                 sync="hogwild", shuffle=True, progress=False, order=None, chunk=None):
        train = dict(self.spec.train)
        self.threads = _positive_int("threads", threads if threads is not None else
                                     train.get("threads", _available_threads()))
        self.epochs = _non_negative_int("epochs", epochs if epochs is not None else
                                        train.get("epochs", DEFAULTS["epochs"]))
        self.step = _positive_float("step", step if step is not None else
                                    train.get("step", DEFAULTS["step"]))
        self.decay = _positive_float("decay", decay if decay is not None else
                                     train.get("decay", DEFAULTS["decay"]))
        self.seed = _non_negative_int("seed", seed if seed is not None else train.get("seed", 0))
        if sync not in SYNC_MODES:
            raise HogwildError(f"sync must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
        self.sync = sync
        order = order if order is not None else (DEFAULTS["order"] if shuffle else "stored")
        if order not in ORDERS:
            raise HogwildError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
        if not shuffle and order != "stored":
            raise HogwildError("shuffle=False visits terms in stored order; do not also "
                               f"pass order={order!r}")
        self.order = order
        self.chunk = _positive_int("chunk", chunk if chunk is not None else
                                   train.get("chunk", DEFAULTS["chunk"]))
        self.progress = bool(progress)
        self.params: dict[str, np.ndarray] = {}
        self.history: list[dict] = []
        self._epochs_done = 0
        self._rng = np.random.default_rng(self.seed)

    # ------------------------------------------------------------ public API
    def fit(self, **data):
        """Train for `epochs` epochs from the current params (initialised on first use)."""
        arrays, sizes, perms = self._prepare(data, need="all", relabel=self.order == "chunks")
        try:
            return self._epochs(arrays, sizes)
        finally:
            self._write_back(arrays, perms)

    def _epochs(self, arrays: dict, sizes: dict):
        kernel = self.kernels.Kernel(arrays, sizes)
        n_terms = kernel.nterms
        work = {p.name: arrays[p.name] for p in self.spec.params}
        # The objective after each epoch: exact on small data; on large data the mean over one
        # fixed random sample of terms (an unbiased estimate at a fraction of a pass), and
        # exact again after the last epoch of the fit.
        sample = None
        if n_terms > EVAL_TERMS:
            sample = np.sort(self._rng.choice(n_terms, EVAL_TERMS, replace=False)).astype(np.int64)

        def objective_at(exact: bool) -> float:
            if sample is None or exact:
                return kernel.objective_sum(self.threads) / max(n_terms, 1)
            return kernel.objective_terms(sample, self.threads) / len(sample)

        sync = SYNC_MODES[self.sync]
        start_objective = None
        bar = self._progress_bar()
        try:
            for i in range(self.epochs):
                epoch = self._epochs_done
                step = self.step * self.decay ** epoch
                snapshot = {k: v.copy() for k, v in work.items()}
                if start_objective is None:
                    start_objective = objective_at(False)
                visit, chunk = self._visit_order(n_terms)
                began = time.perf_counter()
                kernel.epoch(visit, chunk, step, self.threads, sync)
                seconds = time.perf_counter() - began
                objective = objective_at(i == self.epochs - 1)
                if not np.isfinite(objective) or (
                        objective > EXPLODED * max(abs(start_objective), 1.0)):
                    for k, v in snapshot.items():
                        work[k][...] = v
                    raise DivergenceError(
                        f"training diverged in epoch {epoch + 1}: the objective became "
                        f"{objective:.6g} (it was {start_objective:.6g} at the start); the "
                        "params of the last finite epoch are kept",
                        epoch=epoch + 1, hint=f"use a smaller step than {step:.6g}")
                self._epochs_done += 1
                self.history.append({"epoch": self._epochs_done, "objective": float(objective),
                                     "seconds": seconds, "step": step})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(objective=f"{objective:.6g}")
        finally:
            if bar is not None:
                bar.close()
        return self

    def objective(self, **data) -> float:
        """Mean over every term of its loss plus its share of the regularizer."""
        arrays, sizes, _ = self._prepare(data, need="all")
        kernel = self.kernels.Kernel(arrays, sizes)
        return float(kernel.objective_sum(self.threads) / max(kernel.nterms, 1))

    def predict(self, **data) -> np.ndarray:
        """One value per term of the block with `predict` (label data not needed)."""
        block = next((b for b in self.spec.blocks if b.predict is not None), None)
        if block is None:
            raise HogwildError(f"model '{self.spec.model}' has no 'predict' line")
        if not self.params:
            raise HogwildError("predict() before fit(): train first, or load saved params")
        arrays, sizes, _ = self._prepare(data, need="predict")
        kernel = self.kernels.Kernel(arrays, sizes)
        out = np.empty(sizes[f"nterms_{block.index}"], dtype=np.float64)
        kernel.predict(out, self.threads)
        return out

    def save(self, path):
        """Save the params and the spec's signature (npz)."""
        if not self.params:
            raise HogwildError("nothing to save: the params are not initialised (call fit)")
        meta = json.dumps({"signature": self.signature, "model": self.spec.model,
                           "epochs_done": self._epochs_done, "spec": self.spec.source,
                           "consts": dict(self.spec.consts)})
        try:
            np.savez(path, __meta__=np.array(meta), **{f"param_{k}": v
                                                        for k, v in self.params.items()})
        except OSError as e:
            raise HogwildError(f"cannot save to {path}: {e.strerror}") from None

    @classmethod
    def load(cls, path, **kwargs):
        """A Trainer with the params saved by `save` (the spec's signature must match)."""
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["__meta__"]))
                params = {k[len("param_"):]: f[k].copy() for k in f.files if k.startswith("param_")}
        except (OSError, KeyError, ValueError) as e:
            raise HogwildError(f"{path}: not a params file saved by Trainer.save ({e})") from None
        if meta.get("signature") != cls.signature:
            raise HogwildError(f"{path} was saved by model '{meta.get('model')}' with a different "
                               "spec or version (signature mismatch)")
        t = cls(**kwargs)
        t.params = {p.name: np.array(params[p.name], dtype=np.float64, order="C")
                    for p in cls.spec.params}
        t._epochs_done = int(meta.get("epochs_done", 0))
        return t

    def __reduce__(self):
        """Pickle as the spec text and consts plus the trainer's state (settings, params,
        history, epochs done); unpickling rebuilds the module or finds it in the cache."""
        return _unpickle_trainer, (self.spec.source, dict(self.spec.consts)), self.__dict__.copy()

    # ------------------------------------------------------------ internals
    def _progress_bar(self):
        if not self.progress or self.epochs == 0:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=self.epochs, desc=f"{self.spec.model} ({self.sync}, "
                    f"{self.threads} thread{'s' if self.threads > 1 else ''})", unit="epoch")

    def _visit_order(self, n_terms: int):
        if self.order == "shuffle":
            return self._rng.permutation(n_terms).astype(np.int64), 0
        if self.order == "stored":
            return np.arange(n_terms, dtype=np.int64), 0
        n_chunks = -(-n_terms // self.chunk)
        return self._rng.permutation(n_chunks).astype(np.int64), self.chunk

    def _write_back(self, arrays: dict, perms: dict):
        """Undo the relabelling of dims on the params trained in relabelled order."""
        for p in self.spec.params:
            value = arrays[p.name]
            for axis, dim in enumerate(p.dims):
                if dim in perms:
                    value = np.take(value, np.argsort(perms[dim]), axis=axis)
            if value is not self.params[p.name]:
                self.params[p.name][...] = value

    def _relabelling(self, dims: dict) -> dict:
        """A random relabelling of the dims the terms run over (rows of row blocks, the row dim
        of entry blocks), drawn once per fit: visiting chunks of consecutive terms then reads
        memory in order yet keeps the terms of a chunk a random sample, whatever the order the
        user's data came in (sorted by label, by user...)."""
        over = {b.over if b.kind == "rows" else b.vars[0].dim for b in self.spec.blocks}
        return {d: self._rng.permutation(dims[d]) for d in sorted(over) if d in dims}

    def _prepare(self, data: dict, need: str, relabel: bool = False):
        """Check `data` against the spec; return (arrays, sizes, relabelling) in the kernel
        layout. With relabel, dims are relabelled at random (data and params consistently)."""
        spec = self.spec
        declared = {d.name: d for d in spec.data}
        wanted = set(declared) if need == "all" else _predict_data(spec)
        for name in data:
            if name not in declared:
                raise DataError(f"unknown data name '{name}': model '{spec.model}' declares "
                                f"{', '.join(declared) or 'no data'}")
        missing = [n for n in declared if n in wanted and data.get(n) is None]
        if missing:
            d = declared[missing[0]]
            raise DataError(f"missing data '{d.name}' (declared on spec line {d.line} as "
                            f"{d})")
        given = {n: _convert(declared[n], v) for n, v in data.items() if v is not None}
        dims = self._dims(given)
        perms = self._relabelling(dims) if relabel else {}
        if perms:
            def gather(indptr, indices, data, perm):
                return self.kernels.permute_rows(indptr, indices, data,
                                                 perm.astype(np.int64), self.threads)
            given = {n: _permute(declared[n].dims, v, perms, gather) for n, v in given.items()}
        arrays, sizes = {}, {}
        for name, value in given.items():
            d = declared[name]
            if d.kind == "sparse":
                arrays[f"{name}__indptr"] = value.indptr
                arrays[f"{name}__indices"] = value.indices
                arrays[f"{name}__data"] = value.data
                lengths = np.diff(value.indptr)
                sizes[f"maxnnz_{name}"] = int(lengths.max()) if lengths.size else 0
            else:
                arrays[name] = value
        for d in spec.data:
            if d.kind == "sparse":
                sizes.setdefault(f"maxnnz_{d.name}", 0)
        self._init_params(dims)
        for name, value in self._live_params(dims).items():
            arrays[name] = _permute(self.spec.param(name).dims, value, perms)
        for dim in spec.dims:
            sizes[f"n_{dim}"] = dims[dim]
        for b in spec.blocks:
            if b.kind == "rows":
                sizes[f"nterms_{b.index}"] = dims[b.over]
            elif need != "all" and b.predict is None:
                sizes[f"nterms_{b.index}"] = 0       # predict runs only the predicting block
            else:
                m = given.get(b.over)
                if m is None:
                    raise DataError(f"missing data '{b.over}': its stored entries are the terms "
                                    f"of the block on spec line {b.line}")
                sizes[f"nterms_{b.index}"] = m.nnz
                rows = np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))
                arrays[f"{b.over}__rows"] = rows
            if need == "all":
                for deg in b.degs:
                    _degree(deg, b, given, dims, sizes, arrays, self.kernels.column_counts)
            else:
                for deg in b.degs:
                    sizes.setdefault(deg.name, 0.0)
        return arrays, sizes, perms

    def _dims(self, given: dict) -> dict:
        """Read every dim off the data (and the params, if any), checking that they agree."""
        spec, consts = self.spec, dict(self.spec.consts)
        dims: dict[str, tuple[int, str]] = {}

        def see(dim, size, where):
            if dim in consts:
                if size != consts[dim]:
                    raise DataError(f"{where} has size {size} along const '{dim}' = {consts[dim]}")
                return
            if dim in dims and dims[dim][0] != size:
                raise DataError(f"dim '{dim}' is {dims[dim][0]} from {dims[dim][1]} but "
                                f"{size} from {where}")
            dims.setdefault(dim, (size, where))

        for name, value in given.items():
            d = spec.datum(name)
            for axis, dim in enumerate(d.dims):
                see(dim, value.shape[axis], f"data '{name}' (axis {axis})")
        for p in spec.params:
            if p.name in self.params:
                for axis, dim in enumerate(p.dims):
                    see(dim, self.params[p.name].shape[axis], f"param '{p.name}' (axis {axis})")
        missing = [d for d in spec.dims if d not in dims]
        if missing:
            raise DataError(f"the size of dim '{missing[0]}' cannot be read off the data given",
                            )
        return {k: v[0] for k, v in dims.items()}

    def _shape(self, p: ir.Param, dims: dict) -> tuple:
        consts = dict(self.spec.consts)
        return tuple(consts[d] if d in consts else dims[d] for d in p.dims)

    def _init_params(self, dims: dict):
        """Draw each param's initial value (seeded) the first time; keep live params after."""
        if self.params:
            return
        rng = np.random.default_rng(self.seed)
        params = {}
        for p in self.spec.params:
            shape, init = self._shape(p, dims), p.init
            if init.kind == "value":
                value = np.full(shape, init.a, dtype=np.float64)
            elif init.kind == "uniform_rows":
                value = np.full(shape, 1.0 / max(shape[-1], 1), dtype=np.float64)
            elif init.kind == "normal":
                value = rng.normal(init.a, init.b, size=shape)
            else:
                value = rng.uniform(init.a, init.b, size=shape)
            params[p.name] = _project(np.array(value, dtype=np.float64, order="C"), p.constraint)
        self.params = params

    def _live_params(self, dims: dict) -> dict:
        """The params as the kernel reads them; a replaced array is checked and kept live."""
        out = {}
        for p in self.spec.params:
            value = self.params.get(p.name)
            shape = self._shape(p, dims)
            if value is None:
                raise DataError(f"param '{p.name}' is missing from trainer.params")
            arr = np.asarray(value)
            if arr.shape != shape:
                raise DataError(f"param '{p.name}' has shape {arr.shape}, but the data "
                                f"implies {shape}", )
            if not (arr.dtype == np.float64 and arr.flags.c_contiguous and arr.flags.writeable):
                arr = np.array(arr, dtype=np.float64, order="C")
                self.params[p.name] = arr
            if not np.all(np.isfinite(arr)):
                raise DataError(f"param '{p.name}' holds NaN or inf")
            out[p.name] = arr
        return out


def _unpickle_trainer(spec_text: str, consts: dict):
    """An empty Trainer of the spec (pickle then restores its state)."""
    from .jit import load
    cls = load(text=spec_text, consts=consts).Trainer
    return cls.__new__(cls)


# ---------------------------------------------------------------- data checks and layout


def _permute(dims: tuple, value, perms: dict, gather_rows=None):
    """value with every axis over a relabelled dim permuted (label perm[k] becomes k)."""
    if not any(d in perms for d in dims):
        return value
    if sp.issparse(value):
        indptr, indices, data = value.indptr, value.indices, value.data
        if dims[0] in perms:       # compiled and parallel: a few tenths of a second per GB
            indptr, indices, data = gather_rows(indptr, indices, data, perms[dims[0]])
        if dims[1] in perms:
            indices = np.argsort(perms[dims[1]]).astype(np.int32)[indices]
        out = sp.csr_matrix((data, indices, indptr), shape=value.shape, copy=False)
        if dims[1] in perms:
            out.sort_indices()
        out.indptr = np.ascontiguousarray(out.indptr, dtype=np.int64)
        out.indices = np.ascontiguousarray(out.indices, dtype=np.int32)
        return out
    for axis, dim in enumerate(dims):
        if dim in perms:
            value = np.take(value, perms[dim], axis=axis)
    return np.array(value, dtype=np.float64, order="C")


def _predict_data(spec: ir.Spec) -> set:
    block = next(b for b in spec.blocks if b.predict is not None)
    names = {n.name for n in ir.walk(block.predict) if isinstance(n, ir.DataAt)}
    names |= {n.var.source[0] for n in ir.walk(block.predict)
              if isinstance(n, (ir.Sum, ir.ArgMax)) and n.var.kind == "sparse"}
    if block.kind == "entries":
        names.add(block.over)
    return names


def _convert(d: ir.Data, value):
    """One data value in the kernel's layout, or a DataError naming it and the problem."""
    if d.kind == "sparse":
        try:
            m = sp.csr_matrix(value, dtype=np.float64) if not sp.issparse(value) \
                else value.tocsr().astype(np.float64, copy=False)
        except (TypeError, ValueError) as e:
            raise DataError(f"data '{d.name}' must be a sparse matrix (scipy CSR/CSC/COO) or a "
                            f"2-D array: {e}") from None
        if m.ndim != 2:
            raise DataError(f"data '{d.name}' must be 2-D, got {m.ndim}-D")
        if not m.has_canonical_format:   # sorted columns, no duplicates; zeros are kept
            m = m.copy() if m is value else m
            m.sum_duplicates()
        if m.shape[1] >= 2**31 or m.shape[0] >= 2**31:
            raise DataError(f"data '{d.name}' is too large: {m.shape} (dims must be < 2^31)")
        indptr = np.ascontiguousarray(m.indptr, dtype=np.int64)
        indices = np.ascontiguousarray(m.indices, dtype=np.int32)
        values = np.ascontiguousarray(m.data, dtype=np.float64)
        if indptr.size != m.shape[0] + 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0) \
                or indptr[-1] != indices.size:
            raise DataError(f"data '{d.name}' has malformed CSR row pointers")
        if indices.size and (indices.min() < 0 or indices.max() >= m.shape[1]):
            raise DataError(f"data '{d.name}' has a column index out of range "
                            f"[0, {m.shape[1]})")
        if not np.all(np.isfinite(values)):
            bad = np.flatnonzero(~np.isfinite(values))[0]
            row = int(np.searchsorted(indptr, bad, side="right") - 1)
            raise DataError(f"data '{d.name}' holds NaN or inf (row {row}, column "
                            f"{indices[bad]})")
        out = sp.csr_matrix((values, indices, indptr), shape=m.shape, copy=False)
        out.indptr, out.indices = indptr, indices     # keep our dtypes (scipy may downcast)
        return out
    if sp.issparse(value):
        value = value.toarray()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"data '{d.name}' must be numeric: {e}") from None
    want = len(d.dims)
    if arr.ndim != want:
        raise DataError(f"data '{d.name}' must be {want}-D ({d}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"data '{d.name}' holds NaN or inf at index "
                        f"{np.argwhere(~np.isfinite(arr))[0].tolist()}")
    if d.kind == "sign" and not np.all(np.abs(arr) == 1):
        bad = arr[np.abs(arr) != 1][0]
        raise DataError(f"data '{d.name}' is declared sign: every label must be -1 or +1, "
                        f"found {bad:g}", )
    if d.kind == "binary" and not np.all((arr == 0) | (arr == 1)):
        bad = arr[(arr != 0) & (arr != 1)][0]
        raise DataError(f"data '{d.name}' is declared binary: every value must be 0 or 1, "
                        f"found {bad:g}")
    return np.ascontiguousarray(arr)


def _degree(deg: ir.DegSpec, block: ir.Block, given: dict, dims: dict, sizes: dict,
            arrays: dict, column_counts):
    """1/deg(c): how many terms of `block` touch each coordinate (the degree split)."""
    n_terms = sizes[f"nterms_{block.index}"]
    if deg.kind == "all":
        sizes[deg.name] = 1.0 / max(n_terms, 1)
        return
    if block.kind == "rows":
        per_value = np.ones(dims[block.over], dtype=np.float64)   # each index is one term
    else:
        m = given[block.over]
        first = deg.var == block.vars[0].name
        ids = arrays[f"{block.over}__rows"] if first else m.indices
        size = m.shape[0] if first else m.shape[1]
        per_value = np.bincount(ids, minlength=size).astype(np.float64)
    if deg.kind == "var":
        counts = per_value
    elif block.kind == "rows":     # every row is one term: plain column counts
        x = given[deg.data]
        counts = column_counts(x.indices, x.shape[1])
    else:
        x = given[deg.data]
        weights = np.repeat(per_value, np.diff(x.indptr))
        counts = np.bincount(x.indices.astype(np.intp), weights=weights, minlength=x.shape[1])
    with np.errstate(divide="ignore"):
        arrays[deg.name] = np.where(counts > 0, 1.0 / np.maximum(counts, 1e-300), 0.0)


def _project(value: np.ndarray, con: ir.Constraint | None) -> np.ndarray:
    """Make an initial value satisfy its constraint (rows for simplex/ball)."""
    if con is None:
        return value
    if con.kind == "lower":
        return np.maximum(value, con.lo)
    if con.kind == "box":
        return np.clip(value, con.lo, con.hi)
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
    return np.array(rows.reshape(value.shape), dtype=np.float64, order="C")


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer, float)) or v != int(v) or v < 1:
        raise HogwildError(f"{name} must be a positive integer, not {v!r}")
    return int(v)


def _non_negative_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer, float)) or v != int(v) or v < 0:
        raise HogwildError(f"{name} must be a non-negative integer, not {v!r}")
    return int(v)


def _positive_float(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not v > 0 \
            or not np.isfinite(v):
        raise HogwildError(f"{name} must be a positive number, not {v!r}")
    return float(v)
