"""The Python side of every generated kernel module: its `Kernel` class and `column_counts`.

A generated module (templates/kernels.pyx.j2) holds the spec's own C: the `_Model` struct, the
per-term functions, the OpenMP loops, and entry points that take addresses and lengths. This
module, the same for every spec, does the rest in plain Python: it lays the runtime's arrays
and sizes out as the module's struct (a one-record numpy array whose fields mirror `LAYOUT`),
allocates the per-thread scratch, and checks everything an entry point will trust (dtypes,
lengths, every index it follows) before calling it.

Why not Cython: as a cdef class with typed memoryviews this code was most of each module's C,
compiled again for every spec (issue 14, "a lighter build"); here it is compiled never.
"""
from __future__ import annotations

import numpy as np

from .errors import HogwildError
from .lower import Field

# An epoch's grabs (see Kernel.epoch): about GRABS_PER_THREAD per thread (a thread that comes
# free late leaves the others at most one grab to finish), each of at least GRAB_TERMS terms
# (one atomic add on OpenMP's shared counter per grab, none per term).
GRABS_PER_THREAD = 16
OWN_DEGREES = "_own_degrees"   # a sizes key: 0 where the deg arrays count other terms too
GRAB_TERMS = 1024
# Every parallel loop (an epoch, an objective, a predict) wakes no more threads than it has
# whole GRAB_TERMS terms (_working_threads): an OpenMP region waits for its slowest thread,
# and on a busy machine a woken thread may wait a scheduler slice (milliseconds) for a core,
# against microseconds of work on a few hundred terms. Below 2 * GRAB_TERMS terms a loop runs
# on one thread, as threads=1 runs it (the same model, bit for bit, for an epoch).

_FIELD_TYPES = {"int64_t": np.int64, "double": np.float64}     # else a pointer: an address
_ARRAY_TYPES = {"double*": np.float64, "float*": np.float32, "int64_t*": np.int64,
                "int32_t*": np.int32}
_WRITTEN = ("param", "acc", "l1u", "l1q")                      # roles the kernels write
_SYNC_MODES = (0, 1, 2)                                        # hogwild, atomic, lock


def fields_of(table) -> tuple:
    """A generated module's LAYOUT as lower.Field, each of the key lower gives it (else the
    module is not from this version of lower: ImportError)."""
    out = []
    for name, ctype, key, value, role, of, shape in table:
        field = Field(name, ctype, role, of, tuple(shape), value)
        if field.key != key:
            raise ImportError(f"layout field {name!r}: key {key!r}, lower says {field.key!r}")
        out.append(field)
    return tuple(out)


def bind(module: dict):
    """(Kernel, column_counts) of a generated module, given its namespace (`globals()`)."""
    fields = fields_of(module["LAYOUT"])
    names = [f.name for f in fields] + [hot for _, hot in module["REPLICAS"]]
    types = [_FIELD_TYPES.get(f.ctype, np.uintp) for f in fields]
    struct = np.dtype(list(zip(names, types + [np.uintp] * len(module["REPLICAS"]))))
    if struct.itemsize != module["_model_bytes"]():
        raise ImportError(f"{module['__name__']}: its _Model struct has "
                          f"{module['_model_bytes']()} bytes, its LAYOUT {struct.itemsize}")
    members = {"_c": module, "_struct": struct, "__module__": module["__name__"],
               "__doc__": Kernel.__doc__, "fields": fields,
               "_keys": {(f.role, f.of): f.key for f in fields}}
    if module["DRAW_KEY"] is not None:
        members["set_draw_key"] = _set_draw_key
    kernel = type("Kernel", (Kernel,), members)

    def column_counts(indices, n_columns: int) -> np.ndarray:
        """How many stored entries each column has (the degree split's deg(c) of a row block).
        The C checks each index as it counts it (a column outside [0, n_columns) is an
        error): no pass of its own over the indices."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or indices.dtype.kind not in "iu":
            raise ValueError("column_counts: indices: a 1-D integer array is needed")
        if indices.dtype != np.int32:     # (checked before the cast, which could wrap)
            indices = _index_array(indices, np.int32, n_columns, "column_counts: indices")
        indices = np.ascontiguousarray(indices)
        counts = np.zeros(n_columns, dtype=np.int64)
        outside = module["_column_counts"](indices.ctypes.data, indices.shape[0],
                                           counts.ctypes.data, n_columns)
        if outside:
            raise ValueError(f"column_counts: indices: values in [0, {n_columns}) are needed")
        return counts.astype(np.float64)

    return kernel, column_counts


class Kernel:
    """The compiled trainer of one data set: the module's struct of pointers into arrays the
    runtime has filled by walking `fields` (the module's LAYOUT). Every array given is checked
    against its field (dtype, C order, writable where the kernels write, its shape from the
    sizes) before any C reads it; a missing array is recorded, its pointer left 0, and a
    method that would read it refuses to run."""
    _c: dict             # the generated module's namespace: LAYOUT, entry points
    _struct: np.dtype    # its _Model struct, field by field
    fields: tuple        # LAYOUT, as Field
    _keys: dict          # (role, of) -> key

    @classmethod
    def key(cls, role: str, of: str | int = "") -> str:
        """The key in the arrays / sizes dicts of the field that holds `role` of `of`."""
        try:
            return cls._keys[role, of]
        except KeyError:
            raise HogwildError(f"the kernel's layout has no {role!r} of {of!r}") from None

    def __init__(self, arrays: dict, sizes: dict):
        c = self._c
        self.keep = dict(arrays)            # what the struct points into stays alive
        self._model = model = np.zeros((), dtype=self._struct)
        self._model_at = model.ctypes.data   # (the struct stays where it is: read once)
        self._sizes = sizes
        self._checked = set()
        missing = set()
        for f in self.fields:
            if f.value is not None:
                model[f.name] = f.value
            elif f.is_pointer:
                array = arrays.get(f.key)
                if array is None:
                    missing.add(f.key)
                else:
                    model[f.name] = _checked_array(f, array).ctypes.data
            elif f.key not in sizes:
                raise HogwildError(f"kernel: size {f.key!r} ({_what(f)}) was not given")
            else:
                model[f.name] = sizes[f.key]
        self.missing = frozenset(missing)
        rule = sizes[self.key("optimizer")]
        if rule not in (0, 1, 2):
            raise HogwildError(f"kernel: size {self.key('optimizer')!r} (optimizer) is {rule!r}, "
                               "but the update rules are 0, 1 and 2")
        if rule != 0 and self.missing & c["STATE_ARRAYS"]:
            raise HogwildError(f"kernel: the optimizer's state "
                               f"{sorted(self.missing & c['STATE_ARRAYS'])[0]!r} was not given")
        nterms, scratch, shapes = c["_extents"](sizes)
        self.nterms = nterms
        self.scratch_per_thread = max(1, scratch)
        self.hot_size, self.merge_every, self.merge_weight = 0, 0, 1.0
        self.hot_where = None                # address of each replicated value in its param
        self.whole = []        # (pointer field, param, merge intervals) of params replicated whole
        self._copies = {}      # (threads, grab terms, grabs) -> its epochs' _ThreadCopies
        self._buffers = {}     # (threads, stride, shared) -> an epoch's scratch, shared, ticks
        self.grabs = np.zeros(0, dtype=np.int64)    # per thread, of the last epoch
        if c["REPLICAS"] and any(k.startswith("_hot_") for k in arrays):
            maps, where = [], []
            for param, field in c["REPLICAS"]:
                key = self.key("param", param)
                places, whole = _replica_map(arrays, param, key, *shapes[param], where,
                                             c["DTYPE"])
                if whole:
                    every = _merge_intervals(arrays, param, *shapes[param])
                    pointer = next(f.name for f in self.fields if f.key == key)
                    self.whole.append((pointer, arrays[key], every))
                maps.append(places)
                model[field] = places.ctypes.data
            self.keep["_hot_maps"] = maps
            self.hot_where = np.ascontiguousarray(np.concatenate(where) if where else [],
                                                  dtype=np.uintp)
            self.hot_size = self.hot_where.shape[0]
            self.merge_every = _positive(sizes.get("_merge_every", 1024), "_merge_every")
            self.merge_weight = sizes.get("_merge_weight", 1.0)
            if not 0.0 < self.merge_weight <= 1.0:
                raise ValueError(f"_merge_weight must be in (0, 1], not {self.merge_weight!r}")

    @property
    def _address(self) -> int:
        return self._model_at

    def _require(self, use: str):
        """A method that would read an array the runtime did not give, or one whose shape is
        not its field's, refuses to run (the shapes are checked once per use)."""
        if use in self._checked:
            return
        need = self._c["TRAIN_ARRAYS"] if use == "train" else self._c["PREDICT_ARRAYS"]
        if use == "train" and self._sizes[self.key("optimizer")] != 0:
            need = need | self._c["STATE_ARRAYS"]
        lacking = sorted(self.missing & need)
        if lacking:
            f = next(f for f in self.fields if f.key == lacking[0])
            raise HogwildError(f"kernel {use}: array {f.key!r} ({_what(f)}) was not given")
        extents = self._extents()
        optimizer = self._sizes[self.key("optimizer")]
        for f in self.fields:
            if f.key in need:
                _check_shape(f, self.keep[f.key], extents, optimizer)
            elif not f.is_pointer and f.value is None:
                indptr = self.keep.get(self._keys.get(("indptr", f.of))) \
                    if f.role == "maxnnz" else None
                _check_size(f, self._sizes[f.key], extents, indptr)
        self._checked.add(use)

    def _extents(self) -> dict:
        """Each dim's size (consts: their values), and "nnz X" of each sparse datum given."""
        out = {}
        for f in self.fields:
            if f.role in ("dim", "const"):
                out[f.of] = f.value if f.value is not None else self._sizes[f.key]
        for f in self.fields:
            if f.role == "indptr" and f.key in self.keep:
                indptr = self.keep[f.key]
                _check_shape(f, indptr, out, 0)
                out[f"nnz {f.of}"] = int(indptr[-1])
        return out

    def epoch(self, order, chunk: int, step: float, threads: int, sync: int):
        """One pass: order lists terms (chunk == 0) or chunks of `chunk` consecutive terms.
        The visit is cut into grabs of consecutive entries that the threads take one at a
        time as they come free (OpenMP's dynamic schedule: a thread slowed by another process
        no longer holds up the epoch, as a fixed share of the visit per thread did). Nothing
        is shared between threads but the model and that schedule's counter (one atomic add
        per grab): each thread's scratch row is padded to whole cache lines plus a spare one.
        Under hogwild with hot rows on several threads, each thread updates its own replicas
        of them (DimmWitted) and merges after each grab (of about merge_every terms): it adds
        merge_weight times what it changed since its last merge into the shared values and
        takes the merged values back (no update is lost). A param all of whose rows are hot
        is replicated whole: each thread runs on its own copy of the model struct, pointing
        at its own copy of the param (the updates then read and write it as they would the
        param, with no map between), merged into the param under a lock, one thread at a
        time (plain adds on lines streamed in order). The other hot rows (hot_size > 0) are
        kept in the thread's row after its scratch, in the params' storage type, looked up
        through the replica maps, and merged into shared double values with atomic adds,
        which go into the params at the end."""
        self._require("train")
        threads, chunk = _threads(threads), int(chunk)
        if sync not in _SYNC_MODES:
            raise ValueError(f"kernel epoch: sync must be one of {_SYNC_MODES}, not {sync!r}")
        per_entry = chunk if chunk > 0 else 1
        order = _index_array(order, np.int64, -(-self.nterms // per_entry), "epoch: order")
        n = order.shape[0]
        if n == 0:
            return
        # before the replicas' grain, which is short (a merge per grab) and would give a
        # small epoch as many grabs, and threads, as a large one
        threads = _working_threads(threads, min(n * per_entry, self.nterms))
        deferred = self._c["_deferred_half"]
        # half the deferred regs' steps for the terms this epoch runs before its updates and
        # half after (a symmetric splitting: the params an epoch ends with are then not
        # biased towards 0 by a shrink that per-term updates would have spread)
        fraction = 0.5 * min(1.0, n * per_entry / max(self.nterms, 1))
        if deferred is not None:
            deferred(self._address, step, fraction)
        replicated = sync == 0 and threads > 1
        size = self.hot_size if replicated else 0
        whole = self.whole if replicated else []
        grain = max(-(-GRAB_TERMS // per_entry), n // (threads * GRABS_PER_THREAD))
        if whole:           # grabs as long as the most often merged row's interval, at most
            grain = max(1, min(grain, int(min(min(e.min() for _, _, e in whole),
                                              grain * per_entry)) // per_entry))
        elif size > 0:      # a merge after each grab
            grain = max(1, self.merge_every // per_entry)
        threads = min(threads, -(-n // grain))     # no work for the others: do not wake them
        stride = ((self.scratch_per_thread + 2 * size + 7) // 8 + 1) * 8
        # the same in every epoch of a fit: made once (their addresses too), zeroed per epoch
        buffers = self._buffers.get((threads, stride, size))
        if buffers is None:
            buffers = self._buffers[threads, stride, size] = _EpochBuffers(threads, stride,
                                                                           size)
        scratch, ticks = buffers.scratch, buffers.ticks
        scratch.fill(0.0)
        ticks.fill(0)
        where = self.hot_where.ctypes.data if size > 0 else 0
        plan = (threads, grain * per_entry, -(-n // grain)) if whole and threads > 1 else ()
        copies = self._copies.get(plan)
        if copies is None:      # the same in every epoch of a fit: made once
            copies = self._copies[plan] = _ThreadCopies(self._model, whole if plan else [],
                                                        *(plan or (1, 1, 1)), self._c["DTYPE"])
        table_at, copies_at, at_at, where_at, levels_at = copies.addresses
        self._c["_epoch"](self._address, order.ctypes.data, n, chunk, step, threads, sync,
                          self.nterms, buffers.scratch_at, stride, self.scratch_per_thread,
                          grain, size, where, buffers.shared_at, self.merge_weight,
                          copies.models_at, len(copies.table), table_at,
                          copies_at, copies.copies.shape[1], copies.total,
                          at_at, where_at, levels_at, copies.levels.shape[0], buffers.ticks_at)
        self.grabs = ticks[:, 0].copy()    # the grabs each thread took (did they all work?)
        if deferred is not None:
            deferred(self._address, step, fraction)

    def objective_sum(self, threads: int) -> float:
        """Sum over every term of its loss plus its share of the regularizer (the kernel adds
        a whole-row reg by rows where its degrees are its own terms' counts: sizes say
        otherwise with OWN_DEGREES: 0, as a distributed shard's whole-data degrees do)."""
        self._require("train")
        return self._c["_objective_sum"](self._address, self.nterms,
                                         _working_threads(threads, self.nterms),
                                         bool(self._sizes.get(OWN_DEGREES, 1)))

    def objective_terms(self, terms, threads: int) -> float:
        """Sum of the objective over the given global terms (a sample of them)."""
        self._require("train")
        terms = _index_array(terms, np.int64, self.nterms, "objective_terms: terms")
        if terms.shape[0] == 0:
            return 0.0
        return self._c["_objective_terms"](self._address, terms.ctypes.data, terms.shape[0],
                                           _working_threads(threads, terms.shape[0]))

    def predict(self, out, threads: int):
        """One value per term of the block with `predict` (a vector predict: `width` values
        per term, term after term) into `out`, a writable 1-D float64 array."""
        self._require("predict")
        if not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.ndim == 1
                and out.flags.c_contiguous and out.flags.writeable):
            raise ValueError("predict: the output must be a writable 1-D C-contiguous float64 "
                             "array")
        self._c["_predict"](self._address, out.ctypes.data, out.shape[0],
                            _working_threads(threads, self.nterms))


class _ThreadCopies:
    """What the threads of one epoch need to run on their own copies of the params replicated
    whole (`whole`: (pointer field, param, terms between merges per row)): per thread a copy
    of the model struct pointing at its copies (`models_at`: their address, 0 where nothing
    is replicated whole), and `copies`, one row per thread padded to whole cache lines plus
    a spare one: its copies of the params, `total` values, then as many of their values at
    its last merge; `table`, (param address, values, offset of its copy) per param; and the
    merge list: the values merged at regular points, by how often (`at`: offset in the
    copies, `where`: address in the param), `levels[l]` of them after a thread's grab whose
    count 2 divides l times. A row merged every E terms (its `every`) is in the list's first
    floor(log2(E / grab_terms)) + 1 levels (so merged at least as often as asked); one that
    would wait longer than all the grabs only at the thread's last merge."""

    def __init__(self, model, whole: list, threads: int, grab_terms: int, grabs: int, dtype):
        itemsize = np.dtype(dtype).itemsize
        line = 64 // itemsize
        self.table = np.zeros((len(whole), 3), dtype=np.int64)
        self.total = 0
        for k, (_, param, _) in enumerate(whole):
            self.table[k] = (param.ctypes.data, param.size, self.total)
            self.total += -(-param.size // line) * line
        self.copies = np.empty((threads if whole else 1, 2 * self.total + line), dtype=dtype)
        self.models, self.models_at = None, 0
        at, where, level = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.uint64)], \
            [np.zeros(0, dtype=np.int64)]
        count = max(1, int(grabs).bit_length())        # levels a thread's grabs can reach
        for k, (field, param, every) in enumerate(whole):
            length = param.size // max(every.shape[0], 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                rows_level = np.floor(np.log2(every / grab_terms))
            rows = np.flatnonzero(rows_level < count)
            values = (rows[:, None] * length + np.arange(length)).ravel()
            at.append(self.table[k, 2] + values)
            where.append(param.ctypes.data + itemsize * values.astype(np.uint64))
            level.append(np.repeat(np.maximum(rows_level[rows], 0).astype(np.int64), length))
        level = np.concatenate(level)
        ranked = np.argsort(level, kind="stable")
        self.at = np.ascontiguousarray(np.concatenate(at)[ranked], dtype=np.int64)
        self.where = np.ascontiguousarray(np.concatenate(where)[ranked], dtype=np.uintp)
        self.levels = np.searchsorted(level[ranked], np.arange(count), side="right")
        self.levels = self.levels.astype(np.int64) if whole else np.zeros(0, dtype=np.int64)
        if whole:
            self.models = np.repeat(model.reshape(1), threads)
            first = self.copies[:, 0].ctypes.data + self.copies.strides[0] * np.arange(threads)
            for k, (field, _, _) in enumerate(whole):
                self.models[field] = first + itemsize * int(self.table[k, 2])
            self.models_at = self.models.ctypes.data
        self.addresses = tuple(a.ctypes.data for a in (self.table, self.copies, self.at,
                                                       self.where, self.levels))


class _EpochBuffers:
    """An epoch's own arrays: per thread a scratch row (`stride` values, zeroed before each
    epoch) and 8 counters (ticks), and `shared`, the merged values of the hot rows (`size`,
    written before read), with their addresses, taken once."""

    def __init__(self, threads: int, stride: int, size: int):
        self.scratch = np.zeros((threads, stride), dtype=np.float64)
        self.shared = np.empty(max(size, 1), dtype=np.float64)
        self.ticks = np.zeros((threads, 8), dtype=np.int64)
        self.scratch_at, self.shared_at, self.ticks_at = (
            a.ctypes.data for a in (self.scratch, self.shared, self.ticks))


def _merge_intervals(arrays: dict, name: str, rows: int, length: int) -> np.ndarray:
    """Per row of a param replicated whole, the terms between two merges of it that the
    runtime asks for, arrays["_every_<name>"] (inf: at the end of the epoch only), checked:
    positive, not NaN, one per row."""
    every = np.asarray(arrays["_every_" + name], dtype=np.float64)
    if every.shape != (rows,) or np.isnan(every).any() or (every.size and every.min() < 1):
        raise ValueError(f"merge intervals of {name}: {rows} values >= 1 (terms) are needed")
    return every


def _set_draw_key(self, key: int):
    """The key of the draws of `sample` lines: a fresh one per epoch, a fixed one for the
    objective (so that it is repeatable)."""
    self._model[self._c["DRAW_KEY"]] = key


def _threads(threads) -> int:
    if not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"kernel: threads must be a positive integer, not {threads!r}")
    return int(threads)


def _working_threads(threads, terms: int) -> int:
    """The threads worth waking for a loop over `terms` terms: one per whole GRAB_TERMS
    terms, at least one (see GRAB_TERMS)."""
    return max(1, min(_threads(threads), int(terms) // GRAB_TERMS))


def _index_array(values, dtype, bound: int, what: str) -> np.ndarray:
    """`values` as a C-contiguous 1-D array of `dtype`, each in [0, bound): what a kernel
    follows unchecked."""
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ValueError(f"{what}: a 1-D integer array is needed")
    if array.size and (array.min() < 0 or array.max() >= bound):
        raise ValueError(f"{what}: values in [0, {bound}) are needed")
    return np.ascontiguousarray(array, dtype=dtype)


def _replica_map(arrays: dict, name: str, key: str, rows: int, length: int, where: list,
                 dtype: str) -> tuple[np.ndarray, bool]:
    """The replica map of param `name` (per row: its place on a thread's replicas, after the
    values listed in `where` so far, or -1 for a row read and written in the shared param)
    from the hot rows the runtime chose, arrays["_hot_<name>"] (none: no row of it is hot),
    and whether the param is replicated whole (the runtime says so by giving its merge
    intervals, arrays["_every_<name>"], and its hot rows are then all its rows: the map is
    all -1, the thread's model points at its own copy); else appends the address of each of
    its replicated values to `where`, in the order of their places (all its rows may be hot
    rows on the maps: a whole copy merged only at the end of the epoch would let every
    thread run an epoch's steps alone, and the merged steps would add up threads times).
    Everything is checked: the kernel follows these unchecked."""
    at = sum(w.shape[0] for w in where)
    hot = np.asarray(arrays.get("_hot_" + name, np.zeros(0, dtype=np.int64)))
    param = arrays.get(key)           # the param's own array (its layout key)
    if hot.ndim != 1 or hot.dtype.kind not in "iu":
        raise ValueError(f"hot rows of {name}: a 1-D integer array is needed")
    if hot.size and (hot.min() < 0 or hot.max() >= rows or
                     np.count_nonzero(np.bincount(hot, minlength=rows)) != hot.size):
        raise ValueError(f"hot rows of {name}: distinct rows in [0, {rows}) are needed")
    if not isinstance(param, np.ndarray) or param.dtype != np.dtype(dtype) or \
            not param.flags.c_contiguous or param.size != rows * length:
        raise ValueError(f"hot rows of {name}: the param is not a C-contiguous {dtype} array "
                         f"of {rows} x {length} values")
    if at + hot.size * length >= 2**31:
        raise ValueError(f"hot rows of {name}: too many values")
    hot = hot.astype(np.int64)
    places = np.full(rows, -1, dtype=np.int32)
    if "_every_" + name in arrays:          # replicated whole
        if hot.size != rows:
            raise ValueError(f"hot rows of {name}: a param replicated whole (merge intervals "
                             f"given) needs all its {rows} rows hot, not {hot.size}")
        return places, True
    places[hot] = at + np.arange(hot.size, dtype=np.int64) * length
    values = (hot[:, None] * length + np.arange(length, dtype=np.int64)).ravel()
    where.append(param.ctypes.data + param.itemsize * values.astype(np.uint64))
    return places, False


def _positive(value, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return int(value)



def _what(f: Field) -> str:
    return f"{f.role} of {f.of}" if f.of != "" else f.role


def _checked_array(f: Field, array) -> np.ndarray:
    """`array` if it is what field `f` points to: an ndarray of its dtype, in C order, and
    writable where the kernels write; else a HogwildError naming it."""
    want = np.dtype(_ARRAY_TYPES[f.ctype])
    if not isinstance(array, np.ndarray) or array.dtype != want or \
            not array.flags.c_contiguous or (f.role in _WRITTEN and not array.flags.writeable):
        got = f"a {array.dtype} array" if isinstance(array, np.ndarray) else \
            type(array).__name__
        raise HogwildError(f"kernel: array {f.key!r} ({_what(f)}) must be a C-contiguous "
                           f"{'writable ' if f.role in _WRITTEN else ''}{want} array, not {got}"
                           + ("" if not isinstance(array, np.ndarray) or array.dtype != want
                              else " (not C-contiguous or not writable)"))
    return array


def _check_size(f: Field, value, extents: dict, indptr) -> None:
    """The sizes the kernels follow: a block's terms at most its rows or stored entries, a
    sparse datum's longest row at least its longest (it sizes scratch)."""
    limit = extents.get(f.shape[0], 0) if f.role == "nterms" else None
    longest = None
    if indptr is not None:          # its shape was checked with the extents
        longest = int(np.diff(indptr).max()) if indptr.shape[0] > 1 else 0
    if limit is not None and not 0 <= value <= limit:
        raise HogwildError(f"kernel: size {f.key!r} ({_what(f)}) is {value!r}, but "
                           f"{f.shape[0]} is {limit}")
    if longest is not None and value < longest:
        raise HogwildError(f"kernel: size {f.key!r} ({_what(f)}) is {value!r}, but the "
                           f"longest row has {longest}")


def _check_shape(f: Field, array: np.ndarray, extents: dict, optimizer: int) -> None:
    """The array of field `f` has the shape its field gives, read off the sizes (an AdaGrad
    per-row state: without the param's last dim)."""
    shape = f.shape
    if f.role == "acc" and optimizer == 2 and len(shape) >= 2:
        shape = shape[:-1]
    want = tuple(extents[s[:-2]] + 1 if s.endswith("+1") else extents[s] for s in shape)
    if array.shape != want and not (array.size == 1 and want == ()):
        raise HogwildError(f"kernel: array {f.key!r} ({_what(f)}) has shape {array.shape}, "
                           f"its layout says {want} ({', '.join(shape) or 'a scalar'})")
