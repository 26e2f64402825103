"""Train one spec on a Dask cluster (API.md "Beyond one machine"; DESIGN.md "Scale beyond one
machine").

As `lightgbm.dask` and `xgboost.dask` do: the data are split by terms into one shard per worker
and stay on the workers, where a long-lived trainer per shard (a worker-side registry keyed by
the fit) runs the compiled lock-free kernel on the worker's cores. Between rounds only params
travel; the client keeps the params of the last finished round, so every round is a checkpoint.

Two ways to combine the shards, chosen from the spec alone (`plan`):
- "average": every shard runs an epoch (or a fraction of one) from the same params; the client
  averages each coordinate weighted by how many of each shard's terms touch it. Any spec whose
  terms can be split: rows of a row block whose dim no param and no other block uses (SVM,
  logistic, FM), stored entries of an entry block (graph terms, shared 0-D params such as a
  global bias, several blocks).
- "dsgd" (Gemulla et al., KDD 2011): one entry block `for (u, v) in r` whose params are each
  indexed by u alone or by v alone (matrix completion). Users and items are split into d blocks
  (d = workers); in sub-epoch s shard k trains block (k, (k + s) mod d): the d blocks of one
  stratum share no row and no column, so nothing needs averaging. Scalar data (a global
  mean) go whole to every shard.

Each shard's trainer uses the whole data's deg(c) for the degree split (LANGUAGE.md), so the
shards' objectives add up to the single-machine objective exactly.
"""
from __future__ import annotations

import math
import threading
import time
import uuid
from concurrent.futures import CancelledError
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import calibrate, ir
from .errors import DataError, DivergenceError, HogwildError
from .kernel import OWN_DEGREES
from .runtime import _entry_companions, as_csr, no_terms

POLL_SECONDS = 0.2        # how often a waiting client checks that the workers it waits on live
LOST_WAIT_SECONDS = 60    # how long to wait for any worker once all are gone
MAX_RECOVERIES = 20       # lost workers in one fit before it gives up


# ---------------------------------------------------------------- the plan (pure functions)


@dataclass
class Plan:
    """How a spec is spread over d shards: the mode, and per datum how it splits ("rows" with
    its block's terms, "entries" of an entry block, "whole": every shard gets all of it). For
    DSGD, `role` says per param whether its first axis is the user ("u") or item ("v") dim."""
    mode: str
    split: dict
    over: str | None = None
    role: dict = field(default_factory=dict)
    why: str = ""


def plan(spec: ir.Spec) -> Plan:
    """Choose DSGD or averaging for `spec`; HogwildError for terms that cannot be split."""
    split = {d.name: "whole" for d in spec.data}
    split.update({b.over: "entries" for b in spec.blocks if b.kind == "entries"})
    # c[u, v] in `for (u, v) in r`: split with r, entry by entry
    split.update({c: "entries" for c in _entry_companions(spec)})
    for b in spec.blocks:
        if b.kind == "entries":
            continue
        users = [f"param '{p.name}'" for p in spec.params if b.over in p.dims]
        users += [f"data '{d.name}'" for d in spec.data if b.over in d.dims[1:]]
        users += [f"the block on line {o.line}" for o in spec.blocks if o is not b and
                  (o.over == b.over or any(v.dim == b.over for v in o.vars))]
        if users:
            raise HogwildError(
                f"distributed.fit cannot split the terms of the block on spec line {b.line}: "
                f"its dim '{b.over}' is also used by {users[0]}, so a shard of its rows is not "
                "a smaller problem of the same kind; train this spec on one machine")
        for d in spec.data:
            if d.dims and d.dims[0] == b.over:
                split[d.name] = "rows"
    why = _dsgd_obstacle(spec)
    if why:
        return Plan("average", split, why=why)
    b = spec.blocks[0]
    u, v = b.vars
    role = {p.name: ("u" if p.dims[0] == u.dim else "v") for p in spec.params}
    return Plan("dsgd", split, over=b.over, role=role)


def _dsgd_obstacle(spec: ir.Spec) -> str:
    """Why DSGD does not apply to `spec` ("" if it does): every term must write only its row's
    and its column's params, with rows and columns in different dims."""
    if len(spec.blocks) != 1 or spec.blocks[0].kind != "entries":
        return "DSGD needs exactly one block, an entry block"
    b = spec.blocks[0]
    u, v = b.vars
    if u.dim == v.dim:
        return f"both ends of a term index dim '{u.dim}' (graph terms)"
    if any(d.name != b.over and d.dims for d in spec.data):     # scalars go to every shard
        return "data besides the entries' matrix and scalars would have to be split as well"
    consts = dict(spec.consts)
    for p in spec.params:
        if not p.dims or p.dims[0] not in (u.dim, v.dim) or \
                any(dim not in consts for dim in p.dims[1:]):
            return f"param '{p.name}' is shared by terms of every row and column"
    for node in ir.walk(b.objective):
        if isinstance(node, ir.ParamAt):
            first = node.index[0]
            want = u if spec.param(node.name).dims[0] == u.dim else v
            if first != want:
                return f"'{node}' is not indexed by the term's own {want.dim}"
    if any(d.kind != "var" for d in b.degs):
        return "a regularizer reaches beyond the term's row and column"
    return ""


def dsgd_schedule(d: int) -> list[list[tuple[int, int]]]:
    """The strata of one DSGD epoch: in sub-epoch s, shard k trains block (k, (k + s) mod d).
    The blocks of one stratum share no user block and no item block."""
    return [[(k, (k + s) % d) for k in range(d)] for s in range(d)]


def dsgd_blocks(n: int, d: int, seed: int) -> np.ndarray:
    """The block (0..d-1) of each of n ids: a seeded random split into d near-equal blocks, so
    that popular ids (often the small ones) do not all land in one block."""
    block = np.empty(n, dtype=np.int64)
    block[np.random.default_rng(seed).permutation(n)] = np.arange(n) % d
    return block


# ---------------------------------------------------------------- counting touches and degrees


def _term_ids(spec: ir.Spec, block: ir.Block, data: dict, var: ir.Var) -> np.ndarray:
    """The value of term var `var` for every term of `block`."""
    if block.kind == "rows":
        return np.arange(_n_terms(spec, block, data), dtype=np.int64)
    m = data[block.over]
    if var == block.vars[0]:
        return np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return m.indices.astype(np.int64)


def _n_terms(spec: ir.Spec, block: ir.Block, data: dict) -> int:
    """How many terms `block` has in `data`: stored entries, or rows of its dim."""
    if block.kind == "entries":
        return int(data[block.over].nnz)
    name = next(d.name for d in spec.data if d.dims and d.dims[0] == block.over)
    return int(data[name].shape[0])


def _term_values(spec: ir.Spec, block: ir.Block, data: dict, var: ir.Var):
    """Per term, the value of index data read at a term var (y[i]) or at such a value
    (g[it[i]]); None for other vars."""
    if var.kind != "indirect":
        return None
    if var.at.kind == "term":
        at = _term_ids(spec, block, data, var.at)
    else:
        at = _term_values(spec, block, data, var.at)
        if at is None:
            return None
    return np.asarray(data[var.source[0]])[at]


def _counts(spec: ir.Spec, block: ir.Block, data: dict, var, size) -> np.ndarray:
    """How many terms of `block` reach each index of a param axis through `var`: a term var,
    index data read at one or at such a value (y[i], g[it[i]]), or a sparse var over the support of a sparse row picked by
    either (X[i], X[better[p]]); None (all terms) otherwise."""
    if not isinstance(var, ir.Var):
        return None
    if var.kind == "term":
        return np.bincount(_term_ids(spec, block, data, var), minlength=size).astype(np.float64)
    values = _term_values(spec, block, data, var)
    if values is not None:
        return np.bincount(values.astype(np.int64), minlength=size).astype(np.float64)
    if var.kind == "sparse":
        x = data[var.source[0]]
        per_row = _counts(spec, block, data, var.at, x.shape[0])
        if per_row is None:
            return None
        weights = np.repeat(per_row, np.diff(x.indptr))
        return np.bincount(x.indices, weights=weights, minlength=size)
    return None


def touches(spec: ir.Spec, data: dict, index_dims=None) -> dict:
    """Per param, how many terms touch each index of its first axis (a number for 0-D params
    and params every term touches): the weights of averaging. `data` is one shard's;
    `index_dims` the whole data's sizes of the dims only index data point into."""
    sizes = _dim_sizes(spec, data, index_dims)
    out = {p.name: 0.0 for p in spec.params}
    for b in spec.blocks:
        n = _n_terms(spec, b, data)
        seen = set()
        for node in ir.walk(b.objective):
            if not isinstance(node, ir.ParamAt):
                continue
            first = node.index[0] if node.index else None
            how = (node.name, _reach(first))      # one count per way of reaching a param
            if how in seen:
                continue
            seen.add(how)
            p = spec.param(node.name)
            c = _counts(spec, b, data, first, sizes.get(p.dims[0])) if p.dims else None
            out[p.name] = out[p.name] + (n if c is None else c)
    return out


def _reach(index):
    """How an index reaches a param's rows: by a term var, by index data read at one (each
    its own way: `b[y1[i]]` and `b[y2[i]]` reach different rows), by the support of a sparse
    row (whatever the var is called: `dot(X[i], w)` and `w[X[i]]` reach the same rows), or
    all."""
    if isinstance(index, ir.Var) and index.kind in ("term", "indirect"):
        return index.name
    if isinstance(index, ir.Var) and index.kind == "sparse":
        return index.source
    return None


def degree_counts(spec: ir.Spec, data: dict, index_dims=None) -> dict:
    """Per reg target of the degree split, how many of this shard's terms touch each
    coordinate (a number for whole-param targets); summed over shards: the whole data's."""
    sizes = _dim_sizes(spec, data, index_dims)
    out = {}
    for b in spec.blocks:
        for deg in b.degs:
            out[deg.name] = _deg_counts(spec, b, data, deg, sizes)
    return out


def _deg_counts(spec: ir.Spec, b: ir.Block, data: dict, deg: ir.DegSpec, sizes: dict):
    if deg.kind == "all":
        return float(_n_terms(spec, b, data))
    if deg.kind == "sum":       # the targets of one reg line on one param
        return sum(_deg_counts(spec, b, data, part, sizes) for part in deg.parts)
    if deg.kind == "sample":    # the expected draws of each row: terms x draws x probability
        draws, size = _n_terms(spec, b, data) * deg.draws, sizes[deg.dim]
        if deg.data is None:
            return np.full(size, draws / max(size, 1), dtype=np.float64)
        w = np.asarray(data[deg.data], dtype=np.float64)
        return draws * w / w.sum()
    var = next(t for t in b.vars if t.name == deg.var)
    if deg.kind == "var":
        return _counts(spec, b, data, var, sizes[deg.dim])
    if deg.kind == "indirect":      # y[i], or with `via` g[it[i]]
        at = var if deg.via is None else ir.indirect(deg.via, var, spec.datum(deg.via).of)
        return _counts(spec, b, data, ir.indirect(deg.data, at, deg.dim), sizes[deg.dim])
    row = var if deg.via is None else ir.indirect(deg.via, var, spec.datum(deg.via).of)
    sparse = ir.Var("_", deg.dim, "sparse", (deg.data, row.name, row))
    return _counts(spec, b, data, sparse, sizes[deg.dim])


def _dim_sizes(spec: ir.Spec, data: dict, index_dims=None) -> dict:
    sizes = {**(index_dims or {}), **dict(spec.consts)}
    for d in spec.data:
        if d.name in data:
            sizes.update({dim: data[d.name].shape[a] for a, dim in enumerate(d.dims)})
    return sizes


def _inverse(counts):
    if np.isscalar(counts):
        return 1.0 / counts if counts > 0 else 0.0
    with np.errstate(divide="ignore"):
        return np.where(counts > 0, 1.0 / np.maximum(counts, 1e-300), 0.0)


def average(old: dict, results: list, weights: list) -> dict:
    """Each coordinate: the mean of the shards' values weighted by the shards' touches of it;
    a coordinate no shard touched keeps its old value."""
    out = {}
    for name, before in old.items():
        num, den = 0.0, 0.0
        for res, w in zip(results, weights):
            wk = w[name]
            if not np.isscalar(wk):
                wk = wk.reshape(wk.shape + (1,) * (before.ndim - 1))
            num = num + wk * res[name]
            den = den + wk
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(den > 0, num / np.where(den > 0, den, 1.0), before)
    return out


# ---------------------------------------------------------------- the worker side

_SHARDS: dict = {}          # (fit id, shard) -> _Shard, in each worker process
_TRAINERS: dict = {}        # module signature -> its shard trainer class


def _shard_trainer(mod):
    """A subclass of the module's Trainer for one shard's part, kept for the whole fit:
    - its degree split uses the whole data's deg(c), given in `whole_degrees` (1/deg per reg
      target), instead of the part's own counts, so the parts' objectives add up exactly;
    - it checks and lays out its data once (the first `layout`), not once per round: the
      data never change, only the params do (5x the epoch's time on RCV1-shaped rows)."""
    cls = _TRAINERS.get(mod.SIGNATURE)
    if cls is not None:
        return cls
    spec = mod.Trainer.spec
    degs = [deg for b in spec.blocks for deg in b.degs]

    def layout(self, data, need="all"):
        kept = self.prepared if need == "all" and self.prepared and \
            _same_values(self.prepared[0], data) else None
        if kept is None:
            arrays, sizes = mod.Trainer.layout(self, data, need)
            if need == "all":
                self.prepared = (dict(data), arrays, sizes)
        else:
            _, arrays, sizes = kept
            for p in spec.params:       # the client's average is float64 for every dtype
                value = self.params[p.name] = np.asarray(self.params[p.name], order="C",
                                                         dtype=self.dtype)
                arrays[self._key("param", p.name)] = value
            for name, key, shape, _ in self._state_arrays():    # as runtime._state
                acc = self._accumulators.get(name)
                if acc is None or acc.shape != shape or acc.dtype != self.dtype:
                    acc = self._accumulators[name] = np.zeros(shape, dtype=self.dtype)
                arrays[key] = acc
        for deg in degs:
            value, key = self.whole_degrees.get(deg.name), self._key("deg", deg.name)
            if value is None:
                continue
            sizes[OWN_DEGREES] = 0      # the part's sum is its terms' shares, not whole rows
            if deg.kind == "all":
                if key in sizes:
                    sizes[key] = value
            elif key in arrays:      # a table: in the module's dtype (lower.layout)
                arrays[key] = np.asarray(value, dtype=self.dtype)
        return arrays, sizes

    def _dims(self, given, predicting=False):
        """A dim only index data point into is as large as the whole data's largest index
        + 1, not this part's."""
        dims = mod.Trainer._dims(self, given, predicting)
        for dim, size in self.index_dims.items():
            dims[dim] = max(dims.get(dim, 0), size)
        return dims

    cls = type("ShardTrainer", (mod.Trainer,), {"layout": layout, "_dims": _dims,
                                                "whole_degrees": {}, "index_dims": {},
                                                "prepared": None})
    _TRAINERS[mod.SIGNATURE] = cls
    return cls


def _same_values(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] is b[k] for k in a)


@dataclass
class _Part:
    """One unit of a shard's work (a k-th of its terms, or one DSGD block): its data and the
    trainer that keeps them between rounds."""
    data: dict
    trainer: object
    n_terms: int


@dataclass
class _Shard:
    """A shard on its worker: its parts, the params it keeps between rounds (a DSGD shard's
    user rows) and their optimizer state (AdaGrad's sums, l1's owed and given penalty), and a
    lock (a cancelled round may still run when the next one arrives)."""
    parts: list
    held: dict = field(default_factory=dict)
    held_state: dict = field(default_factory=dict)
    lock: object = field(default_factory=threading.Lock)


def _load(key, shard, spec_text, consts, plan_, settings, source):
    """Build this shard's parts on the worker and keep them; return what the client needs to
    combine them: per part its terms, touches and degree counts."""
    import hogwild_dsl
    from distributed import get_worker
    mod = hogwild_dsl.load(text=spec_text, consts=consts, dtype=settings["dtype"])
    spec = mod.Trainer.spec
    threads = settings["threads"] or get_worker().state.nthreads
    if plan_.mode == "dsgd":
        datas = [{plan_.over: m, **settings["scalars"]} for m in _dsgd_parts(source, settings)]
    else:
        datas = _split_parts(spec, plan_, _assemble(spec, plan_, source, settings),
                             settings["parts"], settings["seed"] + 7919 * shard)
    cls = _shard_trainer(mod)
    parts, summary = [], []
    for i, data in enumerate(datas):
        t = cls(threads=threads, epochs=0, seed=settings["seed"] + 1000 * shard + i,
                **settings["trainer"])
        t._calibrate = False            # its step is the client's, every round (_calibrate_on)
        t.index_dims = settings["index_dims"]
        t.fit(**data)                       # checks the shard's data (DataError) and sizes it
        # sparse data given dense (as fit takes it) in CSR, as touches and degrees read it
        data = {n: as_csr(v, f"data '{n}'") if spec.datum(n).kind == "sparse" and
                not sp.issparse(v) else v for n, v in data.items()}
        n = sum(_n_terms(spec, b, data) for b in spec.blocks)
        parts.append(_Part(data, t, n))
        index_dims = settings["index_dims"]
        summary.append({"terms": n, "touches": touches(spec, data, index_dims),
                        "degrees": degree_counts(spec, data, index_dims),
                        "params": t.params if i == 0 and shard == settings["first"] else None})
    _SHARDS[(key, shard)] = _Shard(parts)
    return summary


def _set_degrees(key, shard, inverse_degrees):
    for part, inv in zip(_SHARDS[(key, shard)].parts, inverse_degrees):
        part.trainer.whole_degrees = inv


def _calibrate_on(key, shard, params, epochs, decay):
    """The default step (calibrate.py), searched on this shard's first part from `params`, for
    `epochs` epochs at `decay`: the step and the search's record. A shard's first part is
    the terms one worker trains on in a round, from the same params: the problem the rounds
    solve, where the whole data may not even fit on the client."""
    s = _SHARDS[(key, shard)]
    with s.lock:
        t = s.parts[0].trainer
        t.params, t._accumulators = _copy(params), {}
        t.epochs, t.decay, t._calibrate = epochs, decay, True
        try:
            t._calibrate_step(*t.layout(s.parts[0].data))
        finally:
            t._calibrate = False
        return t.step, t.calibration


def _reset(key, shard):
    """Forget what the shard keeps between rounds (a restart from the fit's start)."""
    s = _SHARDS[(key, shard)]
    with s.lock:
        s.held.clear()
        s.held_state.clear()


def _train(key, shard, part, params, step, keep=(), state=None):
    """One round of one part: an epoch at `step` from `params`, completed by the params named in
    `keep` as this shard left them last round when they are not sent; the params after it, the
    time it took, and (DSGD, `state` given) the optimizer state of the params not kept. Under
    DSGD the state travels with its rows as the params do: the kept rows' stays on the shard,
    the other rows' comes in `state` (empty: zeros) and goes back; under averaging the
    shard's parts (rounds_per_epoch) share one. Each part keeping its own, as before, split
    every coordinate's AdaGrad sums and l1 penalty over the parts (a PMF with adagrad_row and
    l1 ended worse than it started on 2 workers)."""
    s = _SHARDS[(key, shard)]
    p = s.parts[part]
    with s.lock:
        t = p.trainer
        t.params = _copy({**s.held, **params})
        if state is not None:
            t._accumulators = _copy({**s.held_state, **state})
        else:                   # averaging: one state per shard, whatever part runs
            t._accumulators = s.held_state
        began = time.perf_counter()
        if p.n_terms:
            t.epochs, t.step, t.decay = 1, step, 1.0
            t.fit(**p.data)
        s.held.update({n: t.params[n] for n in keep})
        if state is None:
            return t.params, time.perf_counter() - began, None
        param_of = {name: param for name, _, _, param in t._state_arrays()}
        mine = {n: a for n, a in t._accumulators.items() if param_of.get(n) in keep}
        s.held_state.update(mine)
        return t.params, time.perf_counter() - began, \
            {n: a for n, a in t._accumulators.items() if n not in mine}


def _objective_sum(key, shard, common, per_part=None):
    """The sum over this shard's terms of their objective at the params `common` (completed per
    part by `per_part[i]`)."""
    total = 0.0
    s = _SHARDS[(key, shard)]
    with s.lock:
        for i, p in enumerate(s.parts):
            if p.n_terms:
                p.trainer.params = _copy({**common, **(per_part[i] if per_part else {})})
                total += p.trainer.objective(**p.data) * p.n_terms
    return total


def _objective_sum_of(key, shard, args):
    return _objective_sum(key, shard, *args)


def _copy(params):
    return {k: np.array(v, order="C") for k, v in params.items()}     # the dtype kept


def _forget(key):
    for k in [k for k in _SHARDS if k[0] == key]:
        del _SHARDS[k]


# ---------------------------------------------------------------- shard data, on either side


def _assemble(spec, plan_, source: dict, settings) -> dict:
    """One shard's data from its pieces: values as given, or lists of row chunks to stack, or
    triplet pieces to build an entries matrix of the whole shape."""
    out = {}
    for name, (kind, value) in source.items():
        if kind == "value":
            out[name] = value
        elif kind == "chunks":
            out[name] = sp.vstack(value, format="csr") if any(sp.issparse(c) for c in value) \
                else np.concatenate([np.asarray(c) for c in value])
        else:
            u, v, val = _concat_triplets([_triplets(name, p) for p in value])
            out[name] = _coo(name, u, v, val, settings["shapes"][name])
    return out


def _split_parts(spec, plan_, data: dict, n_parts: int, seed: int) -> list[dict]:
    """Split a shard's terms at random into n_parts (for rounds of a fraction of an epoch)."""
    if n_parts == 1:
        return [data]
    rng = np.random.default_rng(seed)
    parts = [dict() for _ in range(n_parts)]
    rows = {n for n, how in plan_.split.items() if how == "rows" and n in data}
    if rows:
        n_rows = data[next(iter(rows))].shape[0]
        order = rng.permutation(n_rows)
        for i in range(n_parts):
            idx = np.sort(order[i::n_parts])
            for n in rows:
                parts[i][n] = data[n][idx]
    orders = {}         # data read at another's entries (c[u, v]) split with it
    companions = _entry_companions(spec)
    for n, how in plan_.split.items():
        if n not in data:
            continue
        if how == "entries":
            m = sp.coo_matrix(data[n])
            key = companions.get(n, n)
            if key not in orders:
                orders[key] = rng.permutation(m.nnz)
            order = orders[key]
            for i in range(n_parts):
                idx = np.sort(order[i::n_parts])
                parts[i][n] = _coo(n, m.row[idx], m.col[idx], m.data[idx], m.shape)
        elif how == "whole":
            for part in parts:
                part[n] = data[n]
    return parts


def _dsgd_parts(source, settings) -> list:
    """Shard k's d blocks (k, j) of the entries, in block-local ids (j = item block)."""
    k, d = source["shard"], settings["d"]
    u, v, val = _concat_triplets([_triplets(settings["over"], p) for p in source["pieces"]])
    user_block, item_block = settings["user_block"], settings["item_block"]
    keep = user_block[u] == k
    u, v, val = u[keep], v[keep], val[keep]
    user_local = _local_ids(user_block)
    item_local = _local_ids(item_block)
    n_users = int(np.count_nonzero(user_block == k))
    out = []
    for j in range(d):
        sel = item_block[v] == j
        shape = (n_users, int(np.count_nonzero(item_block == j)))
        out.append(_coo(settings["over"], user_local[u[sel]], item_local[v[sel]], val[sel], shape))
    return out


def _local_ids(block: np.ndarray) -> np.ndarray:
    """Each id's rank within its own block (ids kept in increasing order inside a block)."""
    local = np.empty_like(block)
    for b in np.unique(block):
        members = np.flatnonzero(block == b)
        local[members] = np.arange(members.size)
    return local


def _triplets(name, piece):
    """(u, v, value) arrays of a piece: (u, v, value) arrays, a (sparse rows, first row) pair,
    or a triplet table (its first three columns; later ones are ignored, as in triplet files)."""
    if isinstance(piece, tuple) and len(piece) == 3:
        return piece
    if isinstance(piece, tuple):
        m, first = piece
        m = sp.coo_matrix(m)
        return m.row.astype(np.int64) + first, m.col.astype(np.int64), m.data.astype(np.float64)
    try:
        cols = [np.asarray(piece.iloc[:, i]) for i in range(3)]
        u, v = (np.asarray(c, dtype=np.float64) for c in cols[:2])
        val = np.asarray(cols[2], dtype=np.float64)
    except (AttributeError, IndexError, TypeError, ValueError) as e:
        raise DataError(f"data '{name}': a triplet table needs three numeric columns "
                        f"(u, v, value): {e}") from None
    if np.any(u != np.floor(u)) or np.any(v != np.floor(v)) or \
            (u.size and (u.min() < 0 or v.min() < 0)):
        raise DataError(f"data '{name}': triplet ids must be non-negative integers")
    return u.astype(np.int64), v.astype(np.int64), val


def _concat_triplets(pieces):
    if not pieces:
        return (np.zeros(0, np.int64),) * 2 + (np.zeros(0),)
    return tuple(np.concatenate([p[i] for p in pieces]) for i in range(3))


def _coo(name, u, v, val, shape):
    """CSR entries (u, v, val) of the given shape, every entry kept: two at one (u, v) are
    two observations (scipy's csr_matrix((val, (u, v))) would add them up into one term).
    Sorted by (u, v), stably: data read at the entries of another (c[u, v]) and given in the
    same order stays aligned with it."""
    if u.size and (u.max() >= shape[0] or v.max() >= shape[1]):
        raise DataError(f"data '{name}': an entry ({int(u.max())}, {int(v.max())}) lies "
                        f"outside its shape {tuple(shape)}")
    shape = tuple(int(s) for s in shape)
    order = np.lexsort((v, u))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(u, minlength=shape[0]))])
    return sp.csr_matrix((np.asarray(val)[order], np.asarray(v)[order], indptr), shape=shape)


# ---------------------------------------------------------------- the client side


def _is_dask(value) -> bool:
    try:
        import dask
    except ImportError:
        return False
    return dask.is_dask_collection(value)


def _is_frame(value) -> bool:
    return hasattr(value, "columns") and hasattr(value, "to_delayed")


class _Job:
    """One distributed fit, on the client: shards, where they live, and how to (re)load them."""

    def __init__(self, mod, client, trainer, plan_, threads, parts, seed):
        self.mod, self.client, self.t, self.plan = mod, client, trainer, plan_
        self.spec = trainer.spec
        self.key = uuid.uuid4().hex
        self.workers = _alive(client)
        if not self.workers:
            raise HogwildError("the Dask cluster has no workers")
        self.d = len(self.workers)
        self.settings = {"threads": threads, "parts": parts, "seed": seed, "shapes": {},
                         "index_dims": {},
                         "dtype": trainer.dtype.name,     # the module's storage (API.md)
                         "trainer": {"sync": trainer.sync, "order": trainer.order,
                                     "chunk": trainer.chunk, "optimizer": trainer.optimizer}}
        self.sources: dict = {}       # shard -> its source (client values or futures)
        self.host: dict = {}          # shard -> the worker that holds it
        self.keep = []                # futures of the input data, kept alive for reloads
        self.summary: dict = {}
        self.recoveries = 0
        self.current: set = set()     # DSGD shards whose kept user rows match the client's
        self.item_state: dict = {}    # DSGD item block -> its rows' optimizer state
        self.local = None             # numpy/scipy data: (a checked local Trainer, the data)
        self.init = None              # the params of fit(init=...) to start from

    def start(self, fresh: dict):
        """The fit's first params: `fresh` (seeded as a local fit's), or init's where given,
        which must have their shapes."""
        if self.init is not None:
            for name, value in fresh.items():
                if self.init[name].shape != value.shape:
                    raise DataError(f"fit(init=...): param '{name}' has shape "
                                    f"{self.init[name].shape}, but the data make it "
                                    f"{value.shape}")
        self.t.params = _copy(self.init if self.init is not None else fresh)

    # -- intake
    def intake(self, data: dict):
        """Check that every datum is given, then cut the data into one source per shard."""
        for d in self.spec.data:
            if data.get(d.name) is None:
                raise DataError(f"missing data '{d.name}' (declared on spec line {d.line} as "
                                f"{d})")
        lazy = {n for n, v in data.items() if _is_dask(v)}
        if not lazy:        # check everything here, before anything is sent; params start
            checker = self.mod.Trainer(epochs=0, seed=self.settings["seed"],
                                       optimizer=self.t.optimizer)
            checker.fit(**data)
            self.start(checker.params)
            self.local = (checker, data)
        self.settings["index_dims"] = _index_dims(self.spec, data)
        if self.plan.mode == "dsgd":
            self._intake_dsgd(data)
        else:
            self._intake_average(data, lazy)

    def _intake_average(self, data, lazy):
        d, rng = self.d, np.random.default_rng(self.settings["seed"])
        split = self.plan.split
        sources = [dict() for _ in range(d)]
        rows = [n for n in data if split[n] == "rows"]
        lazy_rows = [n for n in rows if n in lazy]
        if lazy_rows:                 # shards follow the row chunks, kept where they are
            groups, bounds = self._row_chunks(data, rows, lazy_rows)
            for n in rows:
                for k in range(d):
                    pieces = [groups[n][c] if n in lazy else data[n][bounds[c]:bounds[c + 1]]
                              for c in self.assignment[k]]
                    sources[k][n] = ("chunks", pieces)
        elif rows:
            n_rows = _shape(data[rows[0]])[0]
            order = rng.permutation(n_rows)
            for k in range(d):
                idx = np.sort(order[k::d])
                for n in rows:
                    sources[k][n] = ("value", _rows_of(data[n], idx))
        orders = {}         # data read at another's entries (c[u, v]) split with it
        companions = _entry_companions(self.spec)
        for n in data:
            if split[n] == "entries":
                self._intake_entries(n, data[n], sources, rng, data, orders,
                                     companions.get(n, n))
            elif split[n] == "whole":
                value = self._whole(data[n]) if n in lazy else data[n]
                for k in range(d):
                    sources[k][n] = ("value", value)
        # a worker that holds no chunk of a dask input gets no shard
        self.sources = {k: src for k, src in enumerate(sources)
                        if not lazy_rows or self.assignment[k]}
        self.host = {k: self.workers[k] for k in self.sources}

    def _row_chunks(self, data, rows, lazy_rows):
        """Persist the row chunks of dask inputs on the workers; give each shard the chunks
        its worker already holds (balanced)."""
        first = data[lazy_rows[0]]
        for n in rows:      # as a local fit says it, not as dask's rechunk fails on it
            size = _shape(data[n])[0]
            if size != first.shape[0] and not np.isnan([size, first.shape[0]]).any():
                dim = self.spec.datum(n).dims[0]
                raise DataError(f"dim '{dim}' is {first.shape[0]} from data '{lazy_rows[0]}' "
                                f"(axis 0) but {size} from data '{n}' (axis 0)")
        bounds = np.concatenate([[0], np.cumsum(first.chunks[0])]).astype(np.int64)
        groups = {}
        for n in lazy_rows:
            x = data[n]
            if x.ndim > 1 and x.numblocks[1] != 1:
                if x.npartitions and _is_sparse_meta(x):
                    raise DataError(f"data '{n}': a dask array of sparse blocks must be chunked "
                                    "by rows only (one chunk across the columns)")
                x = x.rechunk({1: -1})
            if x.chunks[0] != first.chunks[0]:
                x = x.rechunk({0: first.chunks[0]})
            futures = self.client.compute(list(x.to_delayed().ravel()))
            self.keep += futures
            groups[n] = futures
        self.assignment = self._assign(groups[lazy_rows[0]], bounds)
        return groups, bounds

    def _assign(self, futures, bounds):
        """Chunk indices per shard: each chunk to the worker that holds it, unless that worker
        already has its share of rows; then to the least loaded."""
        from distributed import wait
        wait(futures)
        holders = self.client.who_has(futures)
        d, total = self.d, bounds[-1]
        load = [0] * d
        out = [[] for _ in range(d)]
        for c, f in enumerate(futures):
            size = int(bounds[c + 1] - bounds[c])
            where = [self.workers.index(w) for w in holders.get(f.key, ()) if w in self.workers]
            k = next((k for k in where if load[k] + size <= total / d * 1.25), None)
            if k is None:
                k = int(np.argmin(load))
            out[k].append(c)
            load[k] += size
        return out

    def _intake_entries(self, name, value, sources, rng, data, orders, key):
        """Each shard's share of an entries matrix: a random k-th of its entries, drawn
        once per `key` (the matrix whose entries it follows)."""
        d = self.d
        if _is_dask(value):
            pieces, shape = self._triplet_pieces(name, value, data)
            self.settings["shapes"][name] = shape
            for k in range(d):
                sources[k][name] = ("triplets", pieces[k::d])
            return
        m = sp.coo_matrix(value)
        if key not in orders:
            orders[key] = rng.permutation(m.nnz)
        order = orders[key]
        for k in range(d):
            idx = np.sort(order[k::d])
            sources[k][name] = ("value", _coo(name, m.row[idx], m.col[idx], m.data[idx],
                                              m.shape))

    def _triplet_pieces(self, name, value, data):
        """Futures of the pieces of a dask entries matrix (a dask dataframe of triplets, or a
        dask array of sparse row chunks), and its shape."""
        dims = self.spec.datum(name).dims
        if _is_frame(value):
            futures = self.client.compute(list(value.to_delayed()))
            self.keep += futures
            known = _known_dims(self.spec, data)
            if all(dim in known for dim in dims):
                shape = tuple(known[dim] for dim in dims)
            else:
                high = self.client.gather(self.client.map(_max_ids, futures,
                                                          [name] * len(futures)))
                high = np.max(np.array(high), axis=0) if high else np.zeros(2, np.int64)
                shape = tuple(known.get(dim, int(h) + 1) for dim, h in zip(dims, high))
            return futures, shape
        x = value if value.numblocks[1] == 1 else value.rechunk({1: -1})
        starts = np.concatenate([[0], np.cumsum(x.chunks[0])[:-1]])
        chunks = self.client.compute(list(x.to_delayed().ravel()))
        self.keep += chunks
        return [self.client.submit(_with_offset, c, int(s)) for c, s in zip(chunks, starts)], \
            tuple(int(s) for s in x.shape)

    def _whole(self, value):
        """A dask input every shard needs whole: its blocks, assembled on each worker."""
        x = value.rechunk({a: -1 for a in range(1, value.ndim)}) if value.ndim > 1 else value
        futures = self.client.compute(list(x.to_delayed().ravel()))
        self.keep += futures
        return self.client.submit(_stack, futures)

    def _intake_dsgd(self, data):
        """Users and items into d blocks; shard k gets user block k's entries, and every
        shard the scalars (a global mean)."""
        d, seed, name = self.d, self.settings["seed"], self.plan.over
        value = data[name]
        scalars = self.settings["scalars"] = \
            {n: v.compute() if _is_dask(v) else v for n, v in data.items() if n != name}
        if _is_dask(value):
            pieces, shape = self._triplet_pieces(name, value, {})
        else:
            m = sp.coo_matrix(value)
            shape = m.shape
            pieces = [(m.row.astype(np.int64), m.col.astype(np.int64), m.data)]
        user_block = dsgd_blocks(shape[0], d, seed)
        item_block = dsgd_blocks(shape[1], d, seed + 1)
        self.settings.update(d=d, over=name, user_block=user_block, item_block=item_block)
        self.users = [np.flatnonzero(user_block == k) for k in range(d)]
        self.items = [np.flatnonzero(item_block == j) for j in range(d)]
        if not self.t.params:        # dask input: the params of the whole shape, seeded
            init = self.mod.Trainer(epochs=0, seed=seed)
            init.fit(**{name: sp.csr_matrix(shape)}, **scalars)
            self.start(init.params)
        blocks = self.client.scatter(user_block, broadcast=True) if _is_dask(value) else None
        for k in range(d):
            if _is_dask(value):
                split = [self.client.submit(_split_triplets, p, blocks, k, name, pure=False)
                         for p in pieces]
                self.sources[k] = {"shard": k, "pieces": split}
            else:
                u, v, val = pieces[0]
                keep = user_block[u] == k
                self.sources[k] = {"shard": k, "pieces": [(u[keep], v[keep], val[keep])]}
            self.host[k] = self.workers[k]

    # -- loading shards onto workers
    def load(self, shards):
        """(Re)build the given shards on their hosts; numpy/scipy pieces are sent from here."""
        futures = {}
        for k in shards:
            source = self.sources[k]
            if self.plan.mode != "dsgd":
                source = {n: (kind, self._send(v, k) if kind == "value" else
                              [self._send(p, k) for p in v] if kind == "chunks" else v)
                          for n, (kind, v) in source.items()}
            else:
                source = {"shard": k, "pieces": [self._send(p, k) for p in source["pieces"]]}
            futures[k] = self.client.submit(
                _load, self.key, k, self.mod.SPEC, dict(self.mod.CONSTS), self.plan,
                self.settings, source, workers=[self.host[k]], pure=False)
        self.summary.update(self.wait(futures))

    def _send(self, value, k):
        """Client values travel to shard k's worker once; futures stay where they are."""
        from distributed import Future
        if isinstance(value, Future) or value is None:
            return value
        return self.scatter(value, [self.host[k]])

    def reset_state(self):
        """Every shard back to the fit's start: no kept rows, no optimizer state."""
        while True:
            try:
                self.wait({k: self.client.submit(_reset, self.key, k, workers=[self.host[k]],
                                                 pure=False) for k in self.sources})
                break
            except _Lost:
                self.recover()
        self.current.clear()
        self.item_state.clear()

    def scatter(self, value, workers=None):
        """`value` straight to these workers (all: None), not through the scheduler; a
        connection that fails means a worker left (_Lost)."""
        try:
            return self.client.scatter([value], workers=workers, broadcast=workers is None,
                                       hash=False)[0]
        except OSError:
            raise _Lost() from None

    def wait(self, futures: dict) -> dict:
        """Results of per-shard futures; a lost worker raises _Lost, a HogwildError inside a
        worker reaches the caller as it was."""
        from distributed import wait
        while True:
            pending = [f for f in futures.values() if f.status == "pending"]
            if pending:
                try:
                    wait(pending, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
                except (TimeoutError, CancelledError):
                    pass
            alive = set(_alive(self.client))
            for k, f in futures.items():
                lost = self.host[k] not in alive
                if f.status == "error" and (not lost or isinstance(f.exception(), HogwildError)):
                    self._cancel({j: g for j, g in futures.items() if g is not f})
                    f.result()                # raises the worker's exception as it was
                if f.status == "cancelled" or (lost and f.status != "finished"):
                    self._cancel(futures)        # cancelled: its inputs died with a worker
                    raise _Lost()
            if all(f.status == "finished" for f in futures.values()):
                return {k: f.result() for k, f in futures.items()}

    def _cancel(self, futures):
        self.client.cancel(list(futures.values()))

    def rehost(self) -> list:
        """Give the shards of lost workers to the live ones (fewest shards first); return them.
        Waits a while for a worker if none is left (a nanny restarts killed ones)."""
        alive = _alive(self.client)
        deadline = time.monotonic() + LOST_WAIT_SECONDS
        while not alive and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            alive = _alive(self.client)
        if not alive:
            raise HogwildError("every Dask worker was lost; the fit cannot go on")
        lost = [k for k, w in self.host.items() if w not in alive]
        for k in lost:
            counts = {w: sum(1 for h in self.host.values() if h == w) for w in alive}
            self.host[k] = min(alive, key=lambda w: counts[w])
        return lost

    def recover(self):
        """After a lost worker: rebuild its shards on the survivors, then go on."""
        self.recoveries += 1
        self.current.clear()
        if self.recoveries > MAX_RECOVERIES:
            raise HogwildError(f"Dask workers were lost {MAX_RECOVERIES} times in this fit; "
                               "giving up (is the cluster healthy?)")
        while True:
            lost = self.rehost()
            try:
                self.load(lost)
                self.send_degrees(lost)
                return
            except _Lost:
                continue

    # -- degrees
    def whole_degrees(self):
        """The whole data's 1/deg(c) per reg target, from the shards' counts."""
        totals = {}
        for k, parts in sorted(self.summary.items()):
            for i, part in enumerate(parts):
                for name, c in part["degrees"].items():
                    totals[name] = self._to_global(name, k, i, c, totals.get(name))
        self.inverse = {n: _inverse(c) for n, c in totals.items()}

    def _to_global(self, name, k, i, counts, total):
        if np.isscalar(counts) or self.plan.mode != "dsgd":
            return counts if total is None else total + counts
        dim = self._deg_dim(name)
        ids = self.users[k] if dim == "u" else self.items[i]
        size = len(self.settings["user_block"] if dim == "u" else self.settings["item_block"])
        total = np.zeros(size) if total is None else total
        total[ids] += counts
        return total

    def _deg_dim(self, name):
        b = self.spec.blocks[0]
        deg = next(x for x in b.degs if x.name == name)
        return "u" if deg.var == b.vars[0].name else "v"

    def send_degrees(self, shards):
        futures = {}
        for k in shards:
            per_part = []
            for i, _ in enumerate(self.summary[k]):
                inv = self.inverse
                if self.plan.mode == "dsgd":
                    inv = {n: v if np.isscalar(v) else
                           v[self.users[k] if self._deg_dim(n) == "u" else self.items[i]]
                           for n, v in inv.items()}
                per_part.append(inv)
            futures[k] = self.client.submit(_set_degrees, self.key, k, per_part,
                                            workers=[self.host[k]], pure=False)
        self.wait(futures)

    def close(self):
        """Drop the shards on the workers; the input futures go with this job (never cancelled:
        they may be the user's persisted collections)."""
        try:
            self.client.run(_forget, self.key)
        except Exception:   # noqa: BLE001 -- a cluster going down takes the shards with it
            pass
        self.keep = []


class _Lost(Exception):
    """A worker holding a shard left the cluster during a step."""


def _alive(client) -> list:
    """The workers the scheduler has now (asked, not the client's cached identity, which lags
    behind a worker that was just restarted)."""
    return sorted(client.nthreads())


def _is_sparse_meta(x) -> bool:
    return sp.issparse(getattr(x, "_meta", None))


def _shape(value):
    return value.shape if hasattr(value, "shape") else np.asarray(value).shape


def _rows_of(value, idx):
    if sp.issparse(value):
        return sp.csr_matrix(value)[idx]
    return np.asarray(value)[idx]


def _known_dims(spec, data) -> dict:
    dims = dict(spec.consts)
    for d in spec.data:
        value = data.get(d.name)
        if value is None or _is_frame(value):
            continue
        shape = _shape(value)
        if all(isinstance(s, (int, np.integer)) for s in shape):
            dims.update({dim: int(s) for dim, s in zip(d.dims, shape)})
    return dims


def _index_dims(spec, data) -> dict:
    """The sizes of the dims only index data point into (LANGUAGE.md: the largest index + 1)
    over the whole data: a shard's own largest index may be smaller. A dask array's maximum
    is computed where it lies."""
    known, out = _known_dims(spec, data), {}
    for d in spec.data:
        value = data.get(d.name)
        if d.kind != "index" or d.of in known or value is None or not np.prod(_shape(value)):
            continue
        top = value.max().compute() if _is_dask(value) else np.max(np.asarray(value))
        out[d.of] = max(out.get(d.of, 0), int(top) + 1)
    return out


def _max_ids(frame, name):
    u, v, _ = _triplets(name, frame)
    return [int(u.max()) if u.size else -1, int(v.max()) if v.size else -1]


def _with_offset(chunk, first):
    return (chunk, first)


def _stack(blocks):
    return sp.vstack(blocks, format="csr") if any(sp.issparse(b) for b in blocks) \
        else np.concatenate([np.asarray(b) for b in blocks])


def _split_triplets(piece, user_block, k, name):
    u, v, val = _triplets(name, piece)
    if u.size and u.max() >= user_block.size:
        raise DataError(f"data '{name}': user id {int(u.max())} is out of range "
                        f"[0, {user_block.size})")
    keep = user_block[u] == k
    return u[keep], v[keep], val[keep]


# ---------------------------------------------------------------- the public entry point

_FIT_OPTIONS = ("epochs", "seed", "threads_per_worker", "rounds_per_epoch", "step", "decay",
                "optimizer", "progress", "init", "validation", "patience")


def fit(mod, client, *args, epochs=None, seed=0, threads_per_worker=None, rounds_per_epoch=1,
        step=None, decay=None, optimizer=None, progress=False, init=None, validation=None,
        patience=None, **data):
    """Train `mod`'s spec on the workers of a Dask `client`; return a local Trainer.

    Data are given by the spec's data names, as numpy/scipy values (split by terms and sent to
    the workers once) or as dask collections, which stay on the workers: a dask array chunked
    by rows (of scipy sparse blocks for sparse data) for the data of a row block, a dask
    dataframe of (u, v, value) triplets (or a dask array of sparse row chunks) for an entry
    block's matrix. Entry blocks whose params are each indexed by the term's row or column
    alone train by DSGD (one round per stratum, d rounds per epoch); other specs average the
    shards' params after every round (`rounds_per_epoch` rounds per epoch, averaging only):
    shared 0-D params, graph terms, several blocks. A worker lost in a round costs that round,
    not the fit; an error inside a worker is raised here as the HogwildError it was.
    `init`, a Trainer of `mod` (one this returned, say), is continued as its own fit would be:
    from its params, at its step once calibrated, its history and epochs counted on.
    `validation` and `patience` are a local fit's, evaluated on the client after each epoch.
    """
    if not all(hasattr(mod, a) for a in ("Trainer", "SPEC", "CONSTS")):
        raise HogwildError("fit() trains a module returned by hogwild_dsl.load(), not "
                           f"{type(mod).__name__}")
    if not (hasattr(client, "submit") and hasattr(client, "scheduler_info")):
        raise HogwildError("fit() needs a dask.distributed Client, not "
                           f"{type(client).__name__}")
    t = mod.Trainer(epochs=epochs, step=step, decay=decay, seed=seed, optimizer=optimizer,
                    patience=patience)
    if t.patience is not None and validation is None and t._patience_asked:
        raise HogwildError(f"patience={t.patience!r} stops on the validation objective: pass "
                           "the held-out data as distributed.fit(..., validation={...})")
    if args:                  # fit(mod, client, X, y): data by position, as Trainer.fit refuses
        names = ", ".join(f"{d.name}=..." for d in t.spec.data)
        raise DataError(f"fit() takes the data by the spec's names, as keywords: fit(mod, "
                        f"client, {names}) for model '{t.spec.model}', not {len(args)} "
                        f"positional argument{'s' * (len(args) > 1)}")
    declared = {d.name for d in t.spec.data}
    for name in data:          # before the cluster is asked anything: threads=4, sync=...
        if name not in declared:
            from .runtime import trainer_options, unknown_data
            if name in trainer_options() and \
                    not any(o == name or o.startswith(f"{name}_") for o in _FIT_OPTIONS):
                # not "unknown data name 'sync'", which reads as a typo
                raise DataError(f"distributed.fit takes no '{name}': it is an option of a "
                                f"local Trainer and its fit; distributed.fit's options are "
                                f"{', '.join(_FIT_OPTIONS)}")
            raise unknown_data(name, t.spec, "distributed.fit", _FIT_OPTIONS)
    if isinstance(rounds_per_epoch, bool) or not isinstance(rounds_per_epoch, int) or \
            rounds_per_epoch < 1:
        raise HogwildError(f"rounds_per_epoch must be a positive integer, not "
                           f"{rounds_per_epoch!r}")
    if threads_per_worker is not None and (isinstance(threads_per_worker, bool) or not
                                           isinstance(threads_per_worker, int) or
                                           threads_per_worker < 1):
        raise HogwildError(f"threads_per_worker must be a positive integer, not "
                           f"{threads_per_worker!r}")
    plan_ = plan(t.spec)
    parts = 1 if plan_.mode == "dsgd" else rounds_per_epoch
    job = _Job(mod, client, t, plan_, threads_per_worker, parts, seed)
    job.validation = _held_out_data(t.spec, validation, data)
    if init is not None:
        _continue(job, t, init, step)
    try:
        job.intake(data)
        job.settings["first"] = min(job.sources)
        _run(job, t, progress)
    finally:
        job.close()
    return t


def _continue(job: _Job, t, init, step):
    """Start `t` where the trainer `init` stopped: a local fit's warm start (API.md "Warm
    starts"), but for the optimizer's state (AdaGrad's sums), which the shards keep."""
    if not isinstance(init, job.mod.Trainer):
        what = f"one of model '{init.spec.model}' ({init.dtype}, consts " \
            f"{dict(init.spec.consts)})" if hasattr(init, "spec") else type(init).__name__
        raise HogwildError(f"fit(init=...) continues a Trainer of mod (model "
                           f"'{t.spec.model}', {t.dtype}, consts {dict(t.spec.consts)}), "
                           f"not {what}")
    if not init.params:
        raise HogwildError("fit(init=...): the trainer has no params yet; fit it first")
    job.init = {n: np.asarray(v) for n, v in init.params.items()}
    t.history, t._epochs_done = list(init.history), init._epochs_done
    if step is None and not init.__dict__.get("_calibrate"):     # its step, once fixed, stays
        t.step, t.calibration, t._calibrate = init.step, init.calibration, False


def _run(job: _Job, t, progress: bool):
    """Load the shards, then run the rounds; each round starts from the client's params."""
    shards = sorted(job.sources)
    while True:
        try:
            job.load(shards)
            break
        except _Lost:                 # a worker left while loading: reload all elsewhere
            job.rehost()
    if not t.params:
        job.start(job.summary[job.settings["first"]][0]["params"])
    job.whole_degrees()
    while True:
        try:
            job.send_degrees(shards)
            break
        except _Lost:
            job.recover()
    n_terms = sum(p["terms"] for parts in job.summary.values() for p in parts)
    if not n_terms and t.epochs > 0:
        raise no_terms(t.spec)
    if job.validation is not None:        # its DataError before any round
        _validation_objective(job, t, t.params)
    params = {k: np.array(v) for k, v in t.params.items()}
    calibrated = bool(t.__dict__.get("_calibrate")) and t.epochs > 0
    if calibrated:
        _calibrate(job, t, params)
    start, epochs_done, history_length = _copy(params), t._epochs_done, len(t.history)
    rounds = job.d if job.plan.mode == "dsgd" else job.settings["parts"]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=t.epochs * rounds, unit="round",
                   desc=f"{t.spec.model} on {job.d} Dask workers ({job.plan.mode})")
    try:
        while True:
            try:
                best = (math.inf, None, None)       # value, epoch, params
                for _ in range(t.epochs):
                    params = _epoch(job, t, params, rounds, n_terms, bar)
                    if job.validation is None:
                        continue
                    value = t.history[-1]["validation_objective"] = \
                        _validation_objective(job, t, params)
                    if value < best[0]:
                        best = (value, t._epochs_done, _copy(params))
                    if t.patience is not None and \
                            t._epochs_done - (best[1] or epochs_done) >= t.patience:
                        break
                break
            except DivergenceError:
                # as a local fit: a calibrated step that diverges all the same restarts from
                # the start at a step sqrt(3) lower (calibrate.smaller_step); a given one, or
                # one below the search's limits, raises
                if not calibrated or t.calibration is None or not calibrate.lower_step(t):
                    raise
                params = _copy(start)
                del t.history[history_length:]
                t._epochs_done = epochs_done
                job.reset_state()
                if bar is not None:
                    bar.reset()
    finally:
        if bar is not None:
            bar.close()
        for name, value in params.items():
            t.params[name] = np.array(value, dtype=t.dtype, order="C")
    if job.validation is not None and t.patience is not None:   # the best epoch's, as fit
        t.best_epoch = best[1]
        if best[2] is not None:
            for name, value in best[2].items():
                t.params[name] = np.array(value, dtype=t.dtype, order="C")
    return t


def _held_out_data(spec, validation, data):
    """`validation` completed by the training data that do not vary with the terms, dask
    values gathered: the client evaluates it (a DataError for the wrong kind comes from
    Trainer._held_out)."""
    if not isinstance(validation, dict):
        return validation
    from .runtime import _shared_data
    shared = {n: data[n] for n in _shared_data(spec) if n not in validation and n in data}
    return {n: v.compute() if _is_dask(v) else v for n, v in {**shared, **validation}.items()}


def _validation_objective(job: _Job, t, params: dict) -> float:
    """The mean objective over `validation`'s terms at `params`, on the client, as a local
    fit's (Trainer._held_out: data that do not vary with the terms are the training data's)."""
    t.params = {n: np.array(v, dtype=t.dtype, order="C") for n, v in params.items()}
    held = t._held_out(job.validation, {})
    return float(held.objective_sum(t.threads) / max(held.nterms, 1))


def _epoch(job: _Job, t, params: dict, rounds: int, n_terms: int, bar) -> dict:
    """One epoch of `rounds` rounds from `params`; its history entry; the params after it."""
    step = t.step * t.decay ** t._epochs_done
    seconds = communication = 0.0
    for r in range(rounds):
        while True:
            try:
                began = time.perf_counter()
                params, compute = _round(job, params, r, step)
                wall = time.perf_counter() - began
                break
            except _Lost:
                job.recover()
        seconds += wall
        communication += max(wall - compute, 0.0)
        if bar is not None:
            bar.update(1)
    objective = _objective(job, params) / max(n_terms, 1)
    t._epochs_done += 1
    t.history.append({"epoch": t._epochs_done, "objective": objective,
                      "seconds": seconds, "step": step,
                      "communication": communication / seconds if seconds else 0.0})
    if bar is not None:
        bar.set_postfix(objective=f"{objective:.6g}")
    return params


def _calibrate(job: _Job, t, params: dict):
    """No step given (Trainer, train line): search the default step (calibrate.py) and keep it
    for the whole fit (t.step, t.calibration). On the problem the rounds solve: under
    averaging, the first shard with terms (each round trains every shard from the same
    params); under DSGD, whose epoch visits every entry once as a serial epoch does, the whole
    data where the client holds it (a local fit's search), else the first shard's first
    block (its rows see 1/d of their entries there: it can choose a larger step; an mc-like
    fit of 20,000 ratings on 2 workers ended at 0.52 at the block's step, 0.48 at the whole
    data's)."""
    if job.plan.mode == "dsgd" and job.local is not None:
        local, data = job.local
        local.params = _copy(params)
        local.epochs, local.decay, local._calibrate = t.epochs, t.decay, True
        local._calibrate_step(*local.layout(data))
        t.step, t.calibration, t._calibrate = local.step, local.calibration, False
        return
    shard = next((k for k in sorted(job.summary) if job.summary[k][0]["terms"]), None)
    if shard is None:
        return
    if job.plan.mode == "dsgd":     # part 0 of shard k: its user rows, item block 0's rows
        role = job.plan.role
        params = {n: v[job.users[shard] if role[n] == "u" else job.items[0]]
                  for n, v in params.items()}
    while True:
        try:
            future = job.client.submit(_calibrate_on, job.key, shard, job.scatter(
                params, [job.host[shard]]), t.epochs, t.decay, workers=[job.host[shard]],
                pure=False)
            t.step, t.calibration = job.wait({shard: future})[shard]
            break
        except _Lost:
            job.recover()
    t._calibrate = False


def _round(job: _Job, params: dict, r: int, step: float):
    """One round: DSGD stratum r, or part r of every shard then the weighted average. Returns
    the new params and the longest worker compute time (the rest is communication)."""
    client = job.client
    if job.plan.mode == "dsgd":
        d = job.d
        futures, blocks = {}, {}
        keep = [n for n, role in job.plan.role.items() if role == "u"]
        for k, j in dsgd_schedule(d)[r]:
            # the item rows of block j travel; the worker keeps its user rows (sent again only
            # to a shard just (re)built or after a lost round)
            send = {n: v[job.items[j]] for n, v in params.items() if n not in keep}
            if k not in job.current:
                send.update({n: params[n][job.users[k]] for n in keep})
            blocks[k] = j
            state = job.item_state.get(j, {})
            if state:                       # as large as the rows: straight to the worker
                state = job.scatter(state, [job.host[k]])
            futures[k] = client.submit(_train, job.key, k, j, job.scatter(send, [job.host[k]]),
                                       step, keep, state, workers=[job.host[k]], pure=False)
        try:
            results = job.wait(futures)
        except _Lost:
            job.current.clear()
            raise
        job.current.update(results)
        new = {n: v.copy() for n, v in params.items()}
        for k, (res, _, state) in results.items():
            for n, v in res.items():
                ids = job.users[k] if job.plan.role[n] == "u" else job.items[blocks[k]]
                new[n][ids] = v
            job.item_state[blocks[k]] = state
        return new, max(seconds for _, seconds, _ in results.values())
    shared = job.scatter(params)
    futures = {k: client.submit(_train, job.key, k, r, shared, step, workers=[job.host[k]],
                                pure=False) for k in job.sources}
    results = job.wait(futures)
    ks = sorted(results)
    new = average(params, [results[k][0] for k in ks],
                  [job.summary[k][r]["touches"] for k in ks])
    return new, max(results[k][1] for k in ks)


def _objective(job: _Job, params: dict) -> float:
    """The sum over all terms of their objective at `params`, from every shard's part."""
    while True:
        try:
            futures = {}
            shared = job.scatter(params) if job.plan.mode != "dsgd" else None
            for k in job.sources:
                if job.plan.mode == "dsgd":
                    role = job.plan.role
                    args = job.scatter(
                        ({n: v[job.users[k]] for n, v in params.items() if role[n] == "u"},
                         [{n: v[job.items[j]] for n, v in params.items() if role[n] == "v"}
                          for j in range(job.d)]), [job.host[k]])
                else:
                    args = (shared,)
                futures[k] = job.client.submit(_objective_sum_of, job.key, k, args,
                                               workers=[job.host[k]], pure=False)
            return float(sum(job.wait(futures).values()))
        except _Lost:
            job.recover()


__all__ = ["fit", "plan", "dsgd_schedule", "dsgd_blocks", "touches", "degree_counts",
           "average", "Plan"]
