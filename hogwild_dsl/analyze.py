"""The HOGWILD! paper's sparsity statistics of a data set under a spec (``hogwildc analyze``).

The objective is ``f(theta) = (1/|E|) sum_e f_e(theta_e)``: every *term* ``e`` (one index of a
``for i in D`` block, or one stored entry of a ``for (u, v) in r`` block) reads and writes only
the coordinates ``e`` of the model it touches. A *coordinate* is one entry of one param,
``(param, flat index)``. Following Niu, Recht, Re and Wright (2011), section 2:

* ``Omega = max_e |e|`` -- the most coordinates one term touches;
* ``Delta = max_c |{e : c in e}| / |E|`` -- the largest share of terms touching one coordinate;
* ``rho = max_e |{e' : e' meets e}| / |E|`` -- the largest share of terms that share at least
  one coordinate with a given term (the term itself counted).

Which coordinates a term touches is read off the checked IR: every ``ParamAt`` access in the
block's losses and regularizer shares (``predict`` is not an update and is not counted). Each
index variable of an access contributes its values: a term variable its value for the term, a
sparse variable the stored columns of its sparse row, a dense variable every index of its dim,
and index data used as an index (``W[y[i]]``) the value the data hold for the term (so the
term touches the one row its label selects). Data that are only read (a scalar ``data mu :
real``, a weight ``c[u, v]``) touch nothing.

A sampled index (``sample j in D``, ``sample j in D ~ P``) touches a slice drawn afresh at every
visit (``Q[j]``: the row of ``Q`` at ``j``), with probability ``p(v)`` = ``1/|D|`` or
``P[v] / sum(P)``. The statistics then describe the random term, counted as follows:

* ``Omega`` counts every draw's slice in full, on top of the term's other coordinates: the
  largest size the term takes (reached whenever a draw can miss them);
* ``Delta`` is the *expected* share: coordinate ``c`` counts, besides the terms that always
  touch it, every other term of a block with a draw that can reach it, weighted by the chance
  that it does (``1 - prod(1 - p)`` over the block's draws), as the degree split's ``deg(c)``;
* ``rho`` is an upper bound on the expected share (a union bound): for a term ``e``, the terms
  whose fixed coordinates meet ``e``'s count 1, and every term ``e'`` adds, for each pair of
  draws, the chance that a draw of ``e`` lands on a slice ``e'`` touches, that a draw of ``e'``
  lands on one ``e`` touches, and that a draw of each picks the same slice; capped at 1. For
  ``bpr`` (one uniform draw over ``n_item`` items) that is the fixed share ``+ 3 / n_item``.

The K draws of ``sample n[K] in D`` (read as ``n[s]``) count as K such draws, each alike.

A sampled index must pick a whole slice (every other index of the access runs over its whole
dim, as in ``Q[j]``); ``analyze`` refuses other uses with a HogwildError.

The computation is exact and vectorised: a term x coordinate incidence matrix ``T`` (CSR,
bool) is built; ``Omega`` is its largest row count, ``Delta`` its largest column count over
``|E|``, ``rho`` the largest row count of ``T T^T`` over ``|E|``, computed in chunks of rows.
When that product is expensive (large data), ``rho`` is estimated from a random sample of terms
(the maximum over the sample: a lower bound of the true maximum); the result says so.

A coordinate set touched by *every* term of a block and by no term of another block (a whole
param under ``reg ... on w``, a 0-D bias) is stored as one weighted "virtual" column, so that a
regularizer on a large param does not blow the incidence matrix up to ``|E| x size``.
"""
from __future__ import annotations

import math
import os

import numpy as np
import scipy.sparse as sp

from . import ir
from .errors import DataError, HogwildError
from .runtime import _convert, _index_range

__all__ = ["analyze", "format_report", "paper_factor"]

# element operations (see _Meeter.cost) up to which `sample=None` computes rho exactly
AUTO_EXACT_COST = 3e8
AUTO_SAMPLE = 2000
_CHUNK_PRODUCTS = 2e7          # products of T T^T computed per chunk of rows


# --------------------------------------------------------------------------------------------
# data: shapes, dims, sparse rows


def _shape(name, value):
    shape = getattr(value, "shape", None)
    if shape is None:
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"data '{name}': expected an array or a scipy sparse matrix, "
                            f"got {type(value).__name__}") from None
        shape = value.shape
    return tuple(int(s) for s in shape)


def _dims_and_data(spec: ir.Spec, data: dict):
    if not isinstance(data, dict):
        raise DataError(f"analyze: data must be a dict of data name -> array, "
                        f"got {type(data).__name__}")
    declared = {d.name: d for d in spec.data}
    extra = sorted(set(data) - set(declared))
    if extra:
        raise DataError(f"data {', '.join(repr(n) for n in extra)}: not declared by the spec "
                        f"(it declares {', '.join(declared) or 'no data'})")
    consts = dict(spec.consts)
    sizes: dict[str, int] = {}
    origin: dict[str, str] = {}
    given: dict[str, np.ndarray | sp.csr_matrix] = {}
    for name, value in data.items():
        d = declared[name]
        shape = _shape(name, value)
        if len(shape) != len(d.dims):
            raise DataError(f"data '{name}': declared as {d} ({len(d.dims)}-D), "
                            f"got an array of shape {shape}")
        for dim, extent in zip(d.dims, shape):
            if dim in consts:
                if extent != consts[dim]:
                    raise DataError(f"data '{name}': extent {extent} along '{dim}', "
                                    f"but const {dim} = {consts[dim]}")
                continue
            if dim in sizes and extent != sizes[dim]:
                raise DataError(f"dim '{dim}' is {sizes[dim]} from data '{origin[dim]}' but "
                                f"{extent} from data '{name}'")
            sizes[dim] = extent
            origin[dim] = name
        # the trainer's own gate: sparse structure checked before scipy, index data integral
        given[name] = _convert(d, value)
    pointed = {}                        # a dim only index data point into: the largest
    for name, value in given.items():   # index + 1 over all of them
        d = declared[name]
        if d.kind == "index" and d.of not in sizes and d.of not in consts:
            pointed[d.of] = max(pointed.get(d.of, 0), int(value.max()) + 1 if value.size else 0)
    sizes.update(pointed)
    for name, value in given.items():
        d = declared[name]
        if d.kind == "index":
            _index_range(d, value, consts[d.of] if d.of in consts else sizes[d.of])
    return sizes, given


def _padded(m: sp.csr_matrix, rows: int) -> sp.csr_matrix:
    if m.shape[0] >= rows:
        return m
    indptr = np.concatenate([m.indptr, np.full(rows - m.shape[0], m.indptr[-1])])
    return sp.csr_matrix((m.data, m.indices, indptr), shape=(rows, m.shape[1]))


class _Sizes:
    def __init__(self, spec, sizes):
        self.spec = spec
        self.sizes = dict(sizes)
        self.sizes.update(dict(spec.consts))

    def __call__(self, dim, why):
        if dim not in self.sizes:
            givers = [d.name for d in self.spec.data
                      if dim in d.dims or (d.kind == "index" and d.of == dim)]
            hint = (f": pass data {' or '.join(repr(g) for g in givers)}" if givers
                    else " (no data declares it)")
            raise DataError(f"the size of dim '{dim}' is unknown ({why}){hint}")
        return self.sizes[dim]


# --------------------------------------------------------------------------------------------
# which coordinates each term touches


def _accesses(block: ir.Block):
    """The distinct ParamAt nodes of a block's update (losses and reg shares)."""
    exprs = [e for e, _ in block.losses] + [r.expr for r in block.regs]
    seen, out = set(), []
    for e in exprs:
        for node in ir.walk(e):
            if isinstance(node, ir.ParamAt) and node not in seen:
                seen.add(node)
                out.append(node)
    return out


def _access_key(access):
    """Accesses with equal keys touch the same coordinates in every term (w[_j1] in the loss
    and w[_j2] in the reg, both over X[i]), so only one of them is expanded."""
    names = [v.name for v in access.index]
    parts = []
    for pos, v in enumerate(access.index):
        if v.kind in ("term", "sample"):
            what = (v.kind, v.name)
        elif v.kind == "indirect" and not v.per_term:    # f[j] at a summed j
            return ("unique", id(access))
        elif v.kind == "draw":               # n[s] and n[_k4]: the same K draws
            what = ("draw", v.source[1])
        elif v.kind == "indirect":
            what = ("indirect", v.source)
        elif v.kind == "dense":
            what = ("dense", v.dim)
        else:                                # X[i] or X[better[p]]: fixed per term
            what = ("sparse", v.source[:2])
        parts.append((what, names.index(v.name)))
    return (access.name, tuple(parts))


def _needed_vars(access):
    """The variables of an access plus the variables their values depend on (the index
    selecting a sparse row, the index that index data are read at), each after those."""
    order, done = [], set()

    def visit(var, trail=()):
        if var.name in done:
            return
        if var.name in trail:
            raise DataError(f"index variable '{var.name}' depends on itself")
        if var.kind in ("sparse", "indirect"):
            visit(var.at, trail + (var.name,))
        done.add(var.name)
        order.append(var)

    for v in access.index:
        visit(v)
    return order


def _expand(vars_in_order, term_values, n_terms, given, size):
    """Expand the index variables `vars_in_order` (from _needed_vars) term by term: returns
    term ids and, per variable name, its value, one entry per (term, combination). `given`:
    the converted data, by name (sparse rows are padded in place to the rows asked for)."""
    term = np.arange(n_terms, dtype=np.int64)
    values: dict[str, np.ndarray] = {}
    for var in vars_in_order:
        if var.kind == "term":
            values[var.name] = term_values[var.name][term]
        elif var.kind == "dense":
            ext = size(var.dim, f"index '{var.name}' runs over it")
            m = term.size
            term = np.repeat(term, ext)
            for k in values:
                values[k] = np.repeat(values[k], ext)
            values[var.name] = np.tile(np.arange(ext, dtype=np.int64), m)
        elif var.kind == "indirect":         # y[i]: the value index data hold for the term
            data_name, at_name = var.source[:2]
            if data_name not in given:
                raise DataError(f"data '{data_name}' is needed (it says which {var.dim} each "
                                "term touches) but was not given")
            at = values[at_name]
            labels = given[data_name]
            if at.size and at.max() >= labels.size:
                raise DataError(f"data '{data_name}' has {labels.size} values, but a term "
                                f"reads it at position {int(at.max())}")
            values[var.name] = labels[at]
        elif var.kind == "sparse":
            data_name, row_name = var.source[:2]
            if data_name not in given:
                raise DataError(f"data '{data_name}' is needed (its rows are summed over) "
                                "but was not given")
            mat = given[data_name]
            rows = values[row_name]
            if rows.size and rows.max() >= mat.shape[0]:
                mat = _padded(mat, int(rows.max()) + 1)
                given[data_name] = mat
            starts = mat.indptr[rows].astype(np.int64)
            counts = mat.indptr[rows + 1].astype(np.int64) - starts
            total = int(counts.sum())
            pick = np.repeat(np.arange(rows.size, dtype=np.int64), counts)
            first = np.cumsum(counts) - counts
            pos = np.repeat(starts - first, counts) + np.arange(total, dtype=np.int64)
            term = term[pick]
            for k in values:
                values[k] = values[k][pick]
            values[var.name] = mat.indices[pos].astype(np.int64)
        else:     # sampled indices are counted apart (_Draws); nothing else is per term
            raise HogwildError(f"analyze cannot expand the index '{var.name}' ({var.kind})")
    return term, values


def _free_dense_positions(access):
    """Positions of the access's index holding a dense variable that spans its whole dim
    independently of everything else (it appears once, and no sparse row depends on it)."""
    needed = _needed_vars(access)
    sources = {v.source[1] for v in needed if v.kind == "sparse"}
    names = [v.name for v in access.index]
    return {p for p, v in enumerate(access.index)
            if v.kind == "dense" and names.count(v.name) == 1 and v.name not in sources}


class _Columns:
    """The columns of the incidence matrix. A param's coordinates are grouped along every
    index position where *all* its accesses run over the whole dim (L[u, :] is one column of
    weight rank): such coordinates are touched by exactly the same terms, so the statistics are
    unchanged and the matrix is `rank` times smaller."""

    def __init__(self, spec, shapes, grouped):
        self.spec, self.shapes, self.grouped = spec, shapes, grouped
        self.offset, self.weight, self.kept = {}, {}, {}
        total = 0
        for p in spec.params:
            shape = shapes[p.name]
            kept = [k for k in range(len(shape)) if k not in grouped[p.name]]
            self.kept[p.name] = kept
            self.offset[p.name] = total
            self.weight[p.name] = int(np.prod([shape[k] for k in grouped[p.name]],
                                              dtype=np.int64))
            total += int(np.prod([shape[k] for k in kept], dtype=np.int64))
        self.n = total
        self.weights = np.ones(total, dtype=np.int64)
        for p in spec.params:
            lo = self.offset[p.name]
            hi = lo + int(np.prod([shapes[p.name][k] for k in self.kept[p.name]], dtype=np.int64))
            self.weights[lo:hi] = self.weight[p.name]

    def n_of(self, param) -> int:
        """How many columns the param has (its coordinates over its grouping weight)."""
        shape = self.shapes[param]
        return int(np.prod([shape[k] for k in self.kept[param]], dtype=np.int64))

    def name(self, col) -> str:
        owner = None
        for p in self.spec.params:
            if self.offset[p.name] <= col:
                owner = p
        shape = self.shapes[owner.name]
        if not shape:
            return owner.name
        kept = self.kept[owner.name]
        local = np.unravel_index(col - self.offset[owner.name], [shape[k] for k in kept]) \
            if kept else ()
        it = iter(int(i) for i in local)
        return f"{owner.name}[{', '.join(str(next(it)) if k in kept else ':' for k in range(len(shape)))}]"


def _param_shape(spec, name, size):
    p = spec.param(name)
    return tuple(size(d, f"param {name} is declared over it") for d in p.dims)


def _incidence(spec: ir.Spec, data: dict):
    sizes, given = _dims_and_data(spec, data)
    size = _Sizes(spec, sizes)

    shapes = {p.name: _param_shape(spec, p.name, size) for p in spec.params}
    n_coordinates = sum(int(np.prod(s, dtype=np.int64)) for s in shapes.values())

    block_accesses = [_accesses(b) for b in spec.blocks]
    grouped = {p.name: set(range(len(p.dims))) for p in spec.params}
    for accesses in block_accesses:
        for acc in accesses:
            grouped[acc.name] &= _free_dense_positions(acc)
    cols = _Columns(spec, shapes, grouped)

    blocks = []           # (header, n_terms, term offset)
    local_pairs = []      # per block: (terms (global ids), columns) of term-dependent accesses
    global_sets = []      # per block: columns touched by every term of the block
    draws = []            # _Draw, one per sample line of every block
    start = 0
    for block, accesses in zip(spec.blocks, block_accesses):
        if block.kind == "rows":
            n = size(block.over, f"the block '{block.header()}' has one term per index")
            term_values = {block.vars[0].name: np.arange(n, dtype=np.int64)}
        else:
            if block.over not in given:
                raise DataError(f"data '{block.over}' is needed (the block "
                                f"'{block.header()}' has one term per stored entry) "
                                "but was not given")
            m = given[block.over]
            n = int(m.nnz)
            rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
            term_values = {block.vars[0].name: rows,
                           block.vars[1].name: m.indices.astype(np.int64)}
        t_parts, c_parts, g_parts = [], [], []
        unique = {}
        for acc in accesses:
            unique.setdefault(_access_key(acc), acc)
        block_draws = {s.var.name: _Draw(s, len(blocks), n, start, given, size)
                       for s in block.samples}
        for acc in unique.values():
            sampled = [v for v in acc.index if v.kind in ("sample", "draw")]
            if sampled:
                pos = _sampled_position(block, acc, sampled)
                v = sampled[0]
                block_draws[v.name if v.kind == "sample" else v.source[1]].families.add(
                    (acc.name, pos))
                continue
            shape = shapes[acc.name]
            kept = cols.kept[acc.name]
            grouped_names = {acc.index[k].name for k in grouped[acc.name]}
            needed = [v for v in _needed_vars(acc) if v.name not in grouped_names]
            term_dependent = any(v.kind != "dense" for v in needed)
            terms, values = _expand(needed, term_values, n if term_dependent else 1,
                                    given, size)
            flat = np.zeros(terms.size, dtype=np.int64)
            for k in kept:
                flat = flat * shape[k] + values[acc.index[k].name]
            flat += cols.offset[acc.name]
            if term_dependent:
                t_parts.append(terms + start)
                c_parts.append(flat)
            else:
                g_parts.append(flat)
        t = np.concatenate(t_parts) if t_parts else np.zeros(0, np.int64)
        c = np.concatenate(c_parts) if c_parts else np.zeros(0, np.int64)
        g = np.unique(np.concatenate(g_parts)) if g_parts else np.zeros(0, np.int64)
        local_pairs.append((t, c))
        global_sets.append(g if n else np.zeros(0, np.int64))
        blocks.append((block.header(), n, start))
        # `sample n[K]`: K independent draws alike, each counted as one draw
        draws += [d for d in block_draws.values() if d.families and n for _ in range(d.count)]
        start += n
    n_terms = start
    # the columns of a param a draw can reach: never folded into a virtual column
    sampled_cols = np.concatenate(
        [np.arange(cols.offset[p], cols.offset[p] + cols.n_of(p), dtype=np.int64)
         for p in sorted({p for d in draws for p, _ in d.families})] + [np.zeros(0, np.int64)])

    # A block's global set becomes one weighted virtual column when no term of another block
    # touches any of its columns; otherwise it is spelled out, one entry per term and column.
    terms_all = [t for t, _ in local_pairs]
    coords_all = [c for _, c in local_pairs]
    virtual = []          # (column id, columns it stands for)
    extra_t, extra_c = [], []
    next_col = cols.n
    for b, g in enumerate(global_sets):
        if g.size == 0:
            continue
        header, n, off = blocks[b]
        others = np.concatenate([c for k, c in enumerate(coords_all) if k != b] +
                                [s for k, s in enumerate(global_sets) if k != b] +
                                [sampled_cols])
        if g.size > 1 and not np.isin(others, g).any():
            # the block's own term-dependent touches of g are implied by the virtual column
            keep = ~np.isin(coords_all[b], g)
            terms_all[b] = terms_all[b][keep]
            coords_all[b] = coords_all[b][keep]
            virtual.append((next_col, g))
            extra_t.append(np.arange(off, off + n, dtype=np.int64))
            extra_c.append(np.full(n, next_col, dtype=np.int64))
            next_col += 1
        else:
            extra_t.append(np.repeat(np.arange(off, off + n, dtype=np.int64), g.size))
            extra_c.append(np.tile(g, n))
    t = np.concatenate(terms_all + extra_t + [np.zeros(0, np.int64)])
    c = np.concatenate(coords_all + extra_c + [np.zeros(0, np.int64)])
    T = sp.csr_matrix((np.ones(t.size, dtype=bool), (t, c)), shape=(n_terms, next_col))
    T.sum_duplicates()
    weights = np.concatenate([cols.weights,
                              np.array([int(cols.weights[g].sum()) for _, g in virtual],
                                       dtype=np.int64)])

    def name(col):
        for vcol, g in virtual:
            if col == vcol:
                more = int(cols.weights[g].sum()) - int(cols.weights[g[0]])
                return f"{cols.name(int(g[0]))} and {more} more coordinates, all touched by " \
                       "the same terms"
        return cols.name(col)

    return T, weights, name, blocks, n_coordinates, _Draws(draws, cols, shapes, T)


def _sampled_position(block, acc, sampled) -> int:
    """The position of the one sampled index of `acc`, which must pick a whole slice of the
    param (every other index running over its whole dim), else a HogwildError."""
    where = f"'{acc}' (the block on spec line {block.line})"
    if len({v.name for v in sampled}) > 1:
        raise HogwildError(f"analyze does not support an access that reads two sampled indices: "
                           f"{where}")
    if len(sampled) > 1:
        raise HogwildError(f"analyze does not support a sampled index at two positions of one "
                           f"access: {where}")
    pos = acc.index.index(sampled[0])
    free = _free_dense_positions(acc)
    if any(k != pos and k not in free for k in range(len(acc.index))):
        raise HogwildError(f"analyze supports a sampled index only where it picks a whole "
                           f"slice of a param (Q[{sampled[0].name}]: every other index running "
                           f"over its whole dim), not in {where}")
    return pos


class _Draw:
    """One `sample` line of a block: the probability of each value of its dim, and the
    slices (param, position) of the params it picks (Q[j]: ("Q", 0))."""

    def __init__(self, sample: ir.Sample, block_no, n_terms, offset, given, size):
        self.var, self.block_no = sample.var, block_no
        self.count, self.text = sample.draws, str(sample).split(" ~ ")[0][len("sample "):]
        self.n_terms, self.offset = n_terms, offset      # the block's terms and first term id
        self.families: set[tuple[str, int]] = set()
        line = f"'{sample}' (spec line {sample.line})"
        extent = size(sample.var.dim, f"{line} draws from it")
        if extent == 0 and n_terms:
            raise DataError(f"{line} draws from {sample.var.dim}, which has size 0")
        if sample.weights is None:
            self.p = np.full(extent, 1.0 / max(extent, 1))
            return
        if sample.weights not in given:
            raise DataError(f"data '{sample.weights}' is needed (it weights the draws of "
                            f"{line}) but was not given")
        w = np.asarray(given[sample.weights], dtype=np.float64)
        if w.size and w.min() < 0:
            at = int(np.flatnonzero(w < 0)[0])
            raise DataError(f"data '{sample.weights}' weights a draw, so it must be "
                            f"non-negative, but position {at} holds {w[at]:g}")
        total = w.sum()
        if not total > 0 or not np.isfinite(total):
            raise DataError(f"data '{sample.weights}' weights a draw, so its sum must be "
                            f"positive and finite, not {total:g}")
        self.p = w / total

    def describe(self) -> str:
        how = f"~ {self.var.source[0]}" if self.var.source[0] else "uniform"
        name = f"{self.var.name}[s]" if self.count > 1 else self.var.name
        slices = ", ".join(f"{p}[{', '.join([':'] * pos + [name])}]"
                           for p, pos in sorted(self.families))
        many = f", {self.count} draws per term" if self.count > 1 else ""
        return f"sample {self.text} ({how}{many}): {slices}"


class _Draws:
    """What the draws add to the fixed incidence T (see the module's docstring): per term the
    coordinates of its draws (Omega), per column the expected touches of the terms that do not
    always touch it (Delta), per term the union bound of the chance that a draw makes it meet
    another term (rho)."""

    def __init__(self, draws: list, cols, shapes, T: sp.csr_matrix):
        self.draws = draws
        n_terms, n_cols = T.shape
        self.size_extra = np.zeros(n_terms, dtype=np.int64)
        self.touch_extra = np.zeros(n_cols)
        self.meet_extra = np.zeros(n_terms)
        if not draws:
            return
        coo = T.tocoo()
        hits = []      # per draw: the columns it can pick and the chance that it picks each
        slices = []    # per draw: term x value, true where the term touches the value's slices
        for d in draws:
            c_parts, p_parts, t_parts, v_parts = [], [], [], []
            for p, pos in sorted(d.families):
                shape, kept = shapes[p], cols.kept[p]
                self.size_extra[d.offset:d.offset + d.n_terms] += \
                    cols.weight[p] * int(np.prod([shape[k] for k in kept if k != pos]))
                local = np.arange(cols.n_of(p), dtype=np.int64)
                value = np.unravel_index(local, [shape[k] for k in kept])[kept.index(pos)]
                c_parts.append(local + cols.offset[p])
                p_parts.append(d.p[value])
                mine = (coo.col >= cols.offset[p]) & (coo.col < cols.offset[p] + local.size)
                t_parts.append(coo.row[mine])
                v_parts.append(value[coo.col[mine] - cols.offset[p]])
            hits.append((np.concatenate(c_parts), np.concatenate(p_parts)))
            t, v = np.concatenate(t_parts), np.concatenate(v_parts)
            U = sp.csr_matrix((np.ones(t.size, dtype=bool), (t, v)), shape=(n_terms, d.p.size))
            U.sum_duplicates()
            slices.append(U.astype(np.float64))

        # Delta: 1 - prod(1 - P(draw picks c)) over a block's draws, for its terms not always
        # touching c
        by_block: dict[int, list] = {}
        for d, hit in zip(draws, hits):
            by_block.setdefault(d.block_no, []).append((d, hit))
        for group in by_block.values():
            off, n = group[0][0].offset, group[0][0].n_terms
            miss = np.ones(n_cols)
            for _, (columns, chance) in group:
                picked = np.zeros(n_cols)
                np.add.at(picked, columns, chance)
                miss *= 1.0 - np.minimum(picked, 1.0)
            fixed = np.bincount(T[off:off + n].indices, minlength=n_cols)
            self.touch_extra += (n - fixed) * (1.0 - miss)

        # rho: for term e of block b, summed over every term e' (union bound):
        #   a draw of e lands on a slice e' touches:  sum_v p(v) |{e' touching slice v}|
        #   a draw of e' lands on a slice e touches:  n_b' * p(slices e touches)
        #   draws of e and e' pick the same slice:    n_b' * sum_v p(v) p'(v)  (1 if they
        #   pick slices of one param along different positions: those always cross)
        for d, U in zip(draws, slices):
            per_term = float(d.p @ np.diff(U.tocsc().indptr))
            self.meet_extra += d.n_terms * (U @ d.p)
            for other in draws:
                same = 0.0
                if d.families & other.families:
                    same = float(d.p @ other.p)
                if any(pos != pos2 for p, pos in d.families for q, pos2 in other.families
                       if p == q):
                    same = 1.0
                per_term += other.n_terms * same
            self.meet_extra[d.offset:d.offset + d.n_terms] += per_term


# --------------------------------------------------------------------------------------------
# the statistics


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


class _Meeter:
    """Counts, for chosen terms e, |{e' : e' meets e}| = |union of the term sets of e's
    coordinates|. Columns touched by few terms are handled by a sparse product T[rows] @ T^T
    (in chunks); columns touched by many (more than |E|/32: a bitset is then smaller than an
    index list) are stored as bitsets and OR-ed, so a frequent feature costs |E|/8 bytes per
    term instead of |E| products."""

    def __init__(self, T: sp.csr_matrix):
        self.n = n = T.shape[0]
        TT = T.T.tocsr()
        counts = np.diff(TT.indptr)
        heavy = counts * 32 > n
        self.T_light = T[:, np.flatnonzero(~heavy)].tocsr()
        self.TT_light = TT[np.flatnonzero(~heavy)].tocsr()
        self.light_counts = counts[~heavy].astype(np.float64)
        heavy_cols = np.flatnonzero(heavy)
        self.T_heavy = T[:, heavy_cols].tocsr()
        self.bits = np.zeros((heavy_cols.size, (n + 7) // 8), dtype=np.uint8)
        for k, c in enumerate(heavy_cols):
            mark = np.zeros(n, dtype=bool)
            mark[TT.indices[TT.indptr[c]:TT.indptr[c + 1]]] = True
            self.bits[k] = np.packbits(mark)

    def cost(self, rows=None) -> float:
        """Rough element operations to count the given rows (all rows when None)."""
        T_l = self.T_light if rows is None else self.T_light[rows]
        T_h = self.T_heavy if rows is None else self.T_heavy[rows]
        light = float(np.sum(T_l @ self.light_counts)) if T_l.shape[0] else 0.0
        n_heavy_rows = int(np.count_nonzero(np.diff(T_h.indptr)))
        return light + T_h.nnz * self.bits.shape[1] / 8.0 + 2000.0 * n_heavy_rows

    def counts(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty(rows.size, dtype=np.int64)
        T_l = self.T_light[rows]
        T_h = self.T_heavy[rows]
        per_row = np.asarray(T_l @ self.light_counts).ravel() if rows.size else np.zeros(0)
        i = 0
        while i < rows.size:
            j, acc = i, 0.0
            while j < rows.size and (j == i or acc + per_row[j] <= _CHUNK_PRODUCTS):
                acc += per_row[j]
                j += 1
            P = T_l[i:j] @ self.TT_light
            out[i:j] = np.diff(P.indptr)
            for k in range(i, j):
                hcols = T_h.indices[T_h.indptr[k]:T_h.indptr[k + 1]]
                if hcols.size == 0:
                    continue
                union = np.bitwise_or.reduce(self.bits[hcols], axis=0)
                count = int(_POPCOUNT[union].sum())
                idx = P.indices[P.indptr[k - i]:P.indptr[k - i + 1]]
                if idx.size:
                    seen = (union[idx >> 3] >> (7 - (idx & 7)).astype(np.uint8)) & 1
                    count += int(idx.size - np.count_nonzero(seen))
                out[k] = count
            i = j
        return np.maximum(out, 1)


def analyze(spec: ir.Spec, data: dict, sample: int | None = None, seed: int = 0) -> dict:
    """The paper's sparsity statistics of `data` under the checked `spec`.

    `data` maps the spec's data names to arrays / scipy sparse matrices (the ones needed to
    know the terms, the sparse rows and the dims). `sample`: None computes rho exactly unless
    that is expensive (then from AUTO_SAMPLE random terms); an int estimates rho from that
    many random terms (exact when it is at least the number of terms). Returns a dict:
    n_terms, n_coordinates (the model's size), n_touched, Omega, Delta, rho, rho_mean,
    rho_exact, rho_sample (terms examined), busiest (the coordinate with the largest share),
    blocks (list of (header, n_terms)), draws (one line per `sample` line that picks params'
    slices; when there are any, Omega, Delta and rho are counted as the module's docstring
    says: the largest size, the expected share, and an upper bound on the expected share).
    """
    if sample is not None and (not isinstance(sample, (int, np.integer)) or sample < 1):
        raise ValueError(f"sample must be a positive int or None, got {sample!r}")
    T, weights, column_name, blocks, n_coordinates, draws = _incidence(spec, data)
    n_terms = T.shape[0]
    result = {
        "model": spec.model,
        "n_terms": int(n_terms),
        "n_coordinates": int(n_coordinates),
        "blocks": [(h, int(n)) for h, n, _ in blocks],
        "draws": [d.describe() for d in dict.fromkeys(draws.draws)],
    }
    col_counts = np.diff(T.tocsc().indptr).astype(np.int64)
    touches = col_counts + draws.touch_extra       # expected touches per column
    touched = touches > 0
    result["n_touched"] = int(weights[touched].sum())
    if n_terms == 0 or not touched.any():
        result.update(Omega=0, Delta=0.0, rho=0.0, rho_mean=0.0, rho_exact=True,
                      rho_sample=int(n_terms), busiest=None)
        return result
    row_sizes = np.asarray(T @ weights).ravel() + draws.size_extra
    result["Omega"] = int(row_sizes.max())
    busiest = int(np.argmax(touches))
    result["Delta"] = float(min(touches[busiest] / n_terms, 1.0))
    result["busiest"] = column_name(busiest)

    if col_counts.max() == n_terms:
        # one coordinate is touched by every term: every pair of terms meets
        result.update(rho=1.0, rho_mean=1.0, rho_exact=True, rho_sample=int(n_terms))
        return result
    meeter = _Meeter(T)
    if sample is None:
        exact = n_terms <= AUTO_SAMPLE or meeter.cost() <= AUTO_EXACT_COST
        sample_size = n_terms if exact else AUTO_SAMPLE
    else:
        sample_size = min(int(sample), n_terms)
        exact = sample_size >= n_terms
    if exact:
        rows = np.arange(n_terms, dtype=np.int64)
    else:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n_terms, size=sample_size, replace=False)).astype(np.int64)
    meets = np.minimum(meeter.counts(rows) + draws.meet_extra[rows], n_terms)
    result["rho"] = float(meets.max() / n_terms)
    result["rho_mean"] = float(meets.mean() / n_terms)
    result["rho_exact"] = bool(exact)
    result["rho_sample"] = int(rows.size)
    return result


# --------------------------------------------------------------------------------------------
# the paper's reading


def paper_factor(stats: dict, tau: int) -> float:
    """The slow-down factor ``1 + 6 rho tau + 4 tau^2 Omega sqrt(Delta)`` by which Prop. 4.1 of
    the HOGWILD! paper's iteration bound exceeds the serial one, for a delay of `tau` updates
    (about the number of threads)."""
    return 1.0 + 6.0 * stats["rho"] * tau + 4.0 * tau * tau * stats["Omega"] * \
        math.sqrt(stats["Delta"])


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def format_report(stats: dict, threads: int | None = None) -> str:
    """The statistics with the paper's reading, as `hogwildc analyze` prints them."""
    tau = threads or os.cpu_count() or 1
    n = stats["n_terms"]
    lines = [f"model {stats['model']}: {n} terms in {len(stats['blocks'])} block(s), "
             f"{stats['n_coordinates']} coordinates ({stats['n_touched']} touched by some term)"]
    for header, count in stats["blocks"]:
        lines.append(f"  {header:<28} {count} terms")
    draws = stats.get("draws") or []
    for line in draws:
        lines.append(f"  {line}")
    if draws:
        lines += ["  with draws: Omega counts each drawn slice in full, Delta is the expected",
                  "  share, rho an upper bound on the expected share (a union bound over the",
                  "  draws); a coordinate a draw can pick counts as touched"]
    if n == 0:
        lines.append("no terms: nothing to analyze")
        return "\n".join(lines)
    how = "exact" if stats["rho_exact"] else \
        f"sampled: the largest over {stats['rho_sample']} random terms, a lower bound"
    if draws:
        how = "union bound over the draws" + ("" if stats["rho_exact"] else
                                              f"; largest over {stats['rho_sample']} "
                                              "random terms")
    lines += [
        "",
        f"  Omega = {stats['Omega']:<10} most coordinates one term touches",
        f"  Delta = {_fmt(stats['Delta']):<10} largest share of terms touching one coordinate"
        + (f" ({stats['busiest']})" if stats.get("busiest") else ""),
        f"  rho   = {_fmt(stats['rho']):<10} largest share of terms meeting one term ({how})",
        f"          mean share {_fmt(stats['rho_mean'])}",
        "",
    ]
    factor = paper_factor(stats, tau)
    lines.append(f"Reading (Niu et al. 2011): HOGWILD!'s iteration bound exceeds serial SGD's by "
                 f"the factor 1 + 6*rho*tau + 4*tau^2*Omega*sqrt(Delta) = {_fmt(factor)} "
                 f"at tau = {tau} (about the number of threads).")
    rho, delta = stats["rho"], stats["Delta"]
    if rho <= 0.01 and delta <= 0.01:
        verdict = ("rho and Delta are small: terms rarely collide, so lock-free updates seldom "
                   "overwrite each other and a near-linear speed-up over one thread is expected "
                   "(the paper's matrix completion and graph cut regime).")
    elif delta < 0.5 and rho < 0.5:
        verdict = ("rho and Delta are moderate: some coordinates are shared by many terms; "
                   "expect a good but sub-linear speed-up, limited by contention on the busiest "
                   "coordinates (the paper still saw large gains on RCV1 with rho = 0.44).")
    else:
        verdict = ("rho or Delta is large: some coordinate is touched by most terms (a bias, a "
                   "frequent feature, a whole-param regularizer), so threads write it "
                   "concurrently all the time; the bound gives no guarantee and the speed-up is "
                   "limited by cache-line traffic on it (the paper's RCV1, Delta = 1.0, still "
                   "sped up). Consider a `w[X[i]]` regularizer or dropping the shared coordinate.")
    lines.append(verdict)
    return "\n".join(lines)
