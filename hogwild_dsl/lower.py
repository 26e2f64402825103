"""Stage 4, lower: IR + gradients -> a kernel plan: the Cython pieces the templates lay out.

For every block it plans three nogil functions over one term `t`:
- update: (1) gather: compute, once, every value the gradients need that does not vary inside
  an update loop (sums such as <L[u], R[v]>, the loss's derivative, 1/deg factors); sums that
  vary with a loop index are stored in per-thread scratch; (2) scatter: one loop nest per set
  of loop indices (a sparse row's nonzeros, a dense dim), computing every coordinate's gradient
  from old values and then writing `p -= step * g` (plain racy writes, or atomic adds);
  (3) project the touched rows of constrained params. If a loop would read a coordinate that an
  earlier loop already wrote, or one nest writes a coordinate from several of its points
  (V[j, f[j2]]), the plan computes those gradients into scratch first and adds them
  afterwards, writing the nests nothing else reads in between (still one SGD step at the old
  point). Two sites equal up to a renaming of loops over one domain share one nest
  (merge_symmetric); a double sum over one domain of a symmetric term runs over a triangle
  (Emitter.summand), and so does a held nest over two loops of one domain, each point with its
  mirror (BlockLowering.triangle); a site that writes that triangle's diagonal joins it there,
  and a diagonal whose gradients add up to 0 is skipped (BlockLowering.fold_diagonals); held
  gradients whose coordinates a direct nest writes too are summed into that nest's points
  and added by its write, in no pass of their own (BlockLowering.absorb). The
  vector of a max(v) / min(v) is stored once per term, so the max, its tie count and each
  indicator read the same values (_extreme_bodies). Values the term fixes (a sparse row's
  start) are loaded once at the top (Emitter.per_term); float32 kernels do each coordinate's
  arithmetic in float.
- loss: the term's objective value (its losses plus its share of the regularizer).
- predict: the block's `predict` expression.
and the module-level layout (the struct of pointers and sizes the runtime fills).
Nothing here knows the template syntax; `emit` renders the plan.
"""
from __future__ import annotations

import contextlib
import functools
import re
from collections import Counter
from dataclasses import dataclass, field, replace

from . import ir
from .derive import BlockGrad, SiteGrad, canonical, derive, update_sites

# ---------------------------------------------------------------- the layout


# Every name the generated code uses is either fixed by the templates (t, M, step, ...), a
# temporary starting with '_' followed by letters and digits, or one of these manglings of a
# user name (which never starts with '_'): a user name can then never meet a keyword, a C
# macro (NULL, errno, EOF, ...) or one of the generated code's own names.

def c_value(name: str) -> str:
    """A param or dense data array: the user's name with a trailing '_'."""
    return f"{name}_"


def c_csr(data: str, part: str) -> str:
    """A part of sparse data (indptr, indices, data, rows)."""
    return f"_{part}_{data}"


def c_dim(dim: str) -> str:
    return f"_n_{dim}"


def c_bound(const: str) -> str:
    """The loop bound of a const, read from the struct (see Access.loop_header)."""
    return f"_len_{const}"


def c_maxnnz(data: str) -> str:
    return f"_maxnnz_{data}"


def c_hot(param: str) -> str:
    """The replica map of a param (see replicable): where each row sits on a thread's
    replicas, or -1 for a row read and written in the shared param."""
    return f"_hot_{param}"


def c_nterms(block: int) -> str:
    return f"_nterms{block}"


def c_draw_key() -> str:
    """The key of the draws of `sample` lines (a size the runtime sets per epoch)."""
    return "_draw_key"


def draw_number(block: int, line: int, several: bool = False) -> int:
    """The number of a draw (which, in _hw_draw): block x 1024 + the sample line's position
    in the block for `sample j in D`; for `sample n[K] in D`, (that + 1) x 2^32 + s for the
    s-th draw, so no two draws of a term share a number."""
    base = block * 1024 + line
    return (base + 1) << 32 if several else base


def c_acc(param: str) -> str:
    """The optimizer's per-coordinate (or per-row) state of a param."""
    return f"_acc_{param}"


def c_l1(param: str, part: str) -> str:
    """The clipped cumulative l1 penalty's state of a param: part "u" (the penalty each
    coordinate has been owed so far) or "q" (what was applied)."""
    return f"_l1{part}_{param}"


def c_optimizer() -> str:
    """Which update rule runs: 0 sgd, 1 adagrad, 2 adagrad_row (OPTIMIZERS)."""
    return "_optimizer"


OPTIMIZERS = {"sgd": 0, "adagrad": 1, "adagrad_row": 2}     # API.md, "Update rules"


def c_deg(name: str) -> str:
    """1/deg of a degree split (check names them '_deg<block>_<var>', '_n<block>')."""
    return f"_inv{name}"


# The scalar storage type of the arrays a kernel updates or streams (params, data values,
# optimizer and l1 state), by numpy dtype name -> C type. Sums, reductions, the gather and
# the objective stay double whatever it is (no float32 accumulation); only the arithmetic
# per written coordinate (an update's scatter) runs in the storage type (Emitter.real): in
# double, gcc vectorised a float <-> double conversion of every coordinate read and written.
STORAGE = {"float64": "double", "float32": "float"}
SIZEOF = {"float64": 8, "float32": 4}


def _scalar_tail(n: int, lanes: int) -> int:
    """The iterations of a loop of constant length n that gcc (12, -O3) leaves to scalar code
    with vectors of `lanes`: the rest after whole vectors runs as one vector of half as many
    lanes where it fills one, else (and for what is left) one at a time."""
    rest = n % lanes
    return rest - lanes // 2 if rest >= lanes // 2 else rest


# 256-bit vectors are asked for only where they spare at least this many scalar iterations
# per row, on average over the rows (a 128-bit vector of floats): sparing 2 doubles a row
# (rank 50) made the MF update 4% slower (bench/results/vector_widths.md), and no row of
# doubles spares more, so float64 code never changes.
MIN_SPARED = 4


def vector_bits(spec: ir.Spec, dtype: str) -> int | None:
    """256 where 256-bit vectors leave at least MIN_SPARED fewer scalar iterations per row
    than 512-bit ones over the params' rows of constant length (their last dim, the loops
    updates run over), else None (the compiler's choice; AVX-512 CPUs differ, and a wider vector
    halves the vector work). The emitted module then asks for at most 256-bit vectors: a
    rank-20 row of floats is 8 + 8 + 4 lanes, all vector code, where 512 bits gave 16 + 4
    scalar ones (dtype="float32" MF ran 0.88x float64's speed; its rank-20 doubles,
    8 + 8 + 4, stay at 512 bits, and so do bpr's k = 32: 256 bits made its AdaGrad updates
    1.3x slower)."""
    lanes = 64 // SIZEOF[dtype]
    consts = dict(spec.consts)
    rows = [consts[p.dims[-1]] for p in spec.params if p.dims and p.dims[-1] in consts]
    wide = sum(_scalar_tail(n, lanes) for n in rows)
    narrow = sum(_scalar_tail(n, lanes // 2) for n in rows)
    return 256 if rows and wide - narrow >= MIN_SPARED * len(rows) else None


# What each layout field holds (Field.role): the runtime fills a field with its role's function
# (runtime.FILL) from the field's `of`, and the Kernel checks each array against its ctype and
# shape before any C runs. The one contract between the generated code and the runtime.
ROLES = {
    "param": "a param's values (of: the param)",
    "data": "a dense datum's values (of: the datum)",
    "index": "an index datum's rows (of: the datum)",
    "indptr": "a sparse datum's CSR row pointers",
    "indices": "a sparse datum's column of each stored entry",
    "values": "a sparse datum's value of each stored entry",
    "rows": "the row of each stored entry of the data an entry block ranges over",
    "maxnnz": "the longest row of a sparse datum",
    "acc": "AdaGrad's sums of squared gradients of a param (per coordinate; adagrad_row: "
           "per row of a 2-D or 3-D param); read only under an update rule other than sgd",
    "l1u": "the l1 penalty owed to each coordinate of a param so far (reg l1)",
    "l1q": "the l1 penalty applied to each coordinate of a param so far (reg l1)",
    "alias_p": "the alias table of a weights datum of `sample` lines: probabilities",
    "alias_i": "the alias table of a weights datum of `sample` lines: aliases",
    "deg": "1/deg of a degree split, per coordinate or one number (of: check's name)",
    "optimizer": "the update rule: 0 sgd, 1 adagrad, 2 adagrad_row",
    "nterms": "the terms of a block (of: its index; its shape: at most its rows or entries)",
    "dim": "the size of a dim",
    "const": "the loop bound of a const (filled in by the kernel itself)",
    "draw_key": "the key of the draws of `sample` lines",
}


@dataclass(frozen=True)
class Field:
    """One member of the _Model struct: a pointer to an array or a size."""
    name: str            # in the generated code
    ctype: str           # double* | float* | int64_t* | int32_t* | double | int64_t
    role: str            # what it holds (ROLES)
    of: str | int = ""   # the param, datum, block, dim or const it belongs to
    shape: tuple = ()    # an array's extents: a dim, "<dim>+1", or "nnz <sparse datum>";
    #                      a block's nterms: the one extent it may not exceed
    value: int | None = None   # a constant the kernel itself fills in (not from the runtime)

    @property
    def is_pointer(self):
        return self.ctype.endswith("*")

    @property
    def key(self) -> str:
        """Its key in the runtime's arrays / sizes dicts: a param's or a datum's own name,
        else its name in the generated code, which starts with '_' as no user name does (a
        datum named X__indptr beside sparse data X keeps its own array)."""
        return self.of if self.role in ("param", "data", "index") else self.name

    @property
    def state(self) -> bool:
        """Optimizer state: read only under an update rule other than sgd."""
        return self.role == "acc"

    @property
    def doc(self) -> str:
        return f"{self.role} of {self.of}" if self.of != "" else self.role


def layout(spec: ir.Spec, dtype: str = "float64") -> list[Field]:
    """Every array and size a kernel reads, with what it holds, its C type and its shape;
    params, data values, update-rule state and the 1/deg tables in `dtype` (STORAGE), the
    runtime's other tables in double. (A 1/deg table is read beside the param in every
    update: in float its reads take half the cache, and the float32 SVM's epochs ran 1.05x
    faster.)"""
    real = STORAGE[dtype] + "*"
    fields: list[Field] = []
    entry_data = {b.over for b in spec.blocks if b.kind == "entries"}
    for d in spec.data:
        if d.kind == "sparse":
            nnz = f"nnz {d.name}"
            fields += [Field(c_csr(d.name, "indptr"), "int64_t*", "indptr", d.name,
                             (f"{d.dims[0]}+1",)),
                       Field(c_csr(d.name, "indices"), "int32_t*", "indices", d.name, (nnz,)),
                       Field(c_csr(d.name, "data"), real, "values", d.name, (nnz,))]
            if d.name in entry_data:
                fields.append(Field(c_csr(d.name, "rows"), "int32_t*", "rows", d.name, (nnz,)))
            fields.append(Field(c_maxnnz(d.name), "int64_t", "maxnnz", d.name))
        elif d.kind == "index":
            fields.append(Field(c_value(d.name), "int64_t*", "index", d.name, d.dims))
        else:
            fields.append(Field(c_value(d.name), real, "data", d.name, d.dims))
    for p in spec.params:
        fields.append(Field(c_value(p.name), real, "param", p.name, p.dims))
        fields.append(Field(c_acc(p.name), real, "acc", p.name, p.dims))
    for name in dict.fromkeys(r.param for b in spec.blocks for r in b.regs if r.kind == "l1"):
        dims = spec.param(name).dims
        fields += [Field(c_l1(name, "u"), real, "l1u", name, dims),
                   Field(c_l1(name, "q"), real, "l1q", name, dims)]
    fields.append(Field(c_optimizer(), "int64_t", "optimizer"))
    for b in spec.blocks:
        fields.append(Field(c_nterms(b.index), "int64_t", "nterms", b.index,
                            (b.over if b.kind == "rows" else f"nnz {b.over}",)))
        for deg in b.degs:
            if deg.kind == "all":
                fields.append(Field(c_deg(deg.name), "double", "deg", deg.name))
            else:
                fields.append(Field(c_deg(deg.name), real, "deg", deg.name, (deg.dim,)))
    for dim in spec.dims:
        fields.append(Field(c_dim(dim), "int64_t", "dim", dim))
    for name, value in spec.consts:
        fields.append(Field(c_bound(name), "int64_t", "const", name, value=value))
    samples = [s for b in spec.blocks for s in b.samples]
    if samples:
        fields.append(Field(c_draw_key(), "int64_t", "draw_key"))
    for w in dict.fromkeys(s.weights for s in samples if s.weights):
        dims = spec.datum(w).dims
        fields += [Field(c_csr(w, "aliasp"), "double*", "alias_p", w, dims),
                   Field(c_csr(w, "aliasi"), "int64_t*", "alias_i", w, dims)]
    return fields


def replicable(spec: ir.Spec) -> dict[str, tuple[str, ...]]:
    """Params whose hot rows may live on per-thread replicas under hogwild (issue 19, item 2;
    DimmWitted): those whose rows terms reach through a sparse row loop (`j in X[i]`: the
    column dim of sparse data, where a few popular columns are touched by most terms) and
    that carry no constraint and no `reg l1` (a merge adds the threads' changes, which would
    step out of a box or a simplex, or past an l1 step's stop at 0). -> param -> the sparse data whose column counts rank its rows."""
    reached: dict[str, dict] = {}
    for b in spec.blocks:
        for node in ir.walk(b.objective) if b.objective is not None else ():
            if isinstance(node, ir.ParamAt) and node.index and node.index[0].kind == "sparse":
                reached.setdefault(node.name, {})[node.index[0].source[0]] = True
    l1 = {r.param for b in spec.blocks for r in b.regs if r.kind == "l1"}
    return {p.name: tuple(reached[p.name]) for p in spec.params
            if p.name in reached and p.constraint is None and len(p.dims) in (1, 2)
            and p.name not in l1}


# ---------------------------------------------------------------- helpers on expressions


BINDERS = (ir.Sum, ir.ArgMax, ir.Reduce)     # nodes that bind a loop variable over their body


def _rebind(e, var: ir.Var, body: ir.Expr):
    """A binder like e over another variable and body."""
    return ir.Reduce(e.op, var, body) if isinstance(e, ir.Reduce) else type(e)(var, body)


@functools.lru_cache(maxsize=1 << 16)
def free_loop_vars(e: ir.Expr) -> frozenset:
    """Loop (dense / sparse) variables an expression depends on and does not bind itself."""
    if isinstance(e, (ir.DataAt, ir.ParamAt, ir.Deg)):
        found = {ir.loop_of(v) for v in e.index}     # f[j] depends on the loop over j
        return frozenset(found - {None})
    if isinstance(e, BINDERS):
        return free_loop_vars(e.body) - {e.var}
    out = frozenset()
    for c in e.children():
        out |= free_loop_vars(c)
    return out


def substitute(e: ir.Expr, old: ir.Var, new: ir.Var, memo=None) -> ir.Expr:
    """e with the free occurrences of index variable `old` replaced by `new` (shared
    subtrees are rewritten once; a sum binding `new` inside is renamed, never captures)."""
    memo = {} if memo is None else memo
    if e in memo:
        return memo[e]
    if old not in free_loop_vars(e):
        out = e
    elif isinstance(e, (ir.DataAt, ir.ParamAt, ir.Deg)):
        out = type(e)(e.name, tuple(ir.renamed_index(v, {old: new}) for v in e.index))
    elif isinstance(e, BINDERS):
        var, body = e.var, e.body
        if var.name == new.name:     # the binder would capture `new`: rename it first
            taken = {n.var.name for n in _distinct(body, lambda n: False)
                     if isinstance(n, BINDERS)} | {new.name, old.name}
            fresh = var.name
            while fresh in taken:
                fresh = "x" + fresh
            fresh_var = ir.Var(fresh, var.dim, var.kind, var.source)
            var, body = fresh_var, substitute(body, e.var, fresh_var)
        out = _rebind(e, var, substitute(body, old, new, memo))
    elif isinstance(e, ir.Binary):
        left, right = substitute(e.left, old, new, memo), substitute(e.right, old, new, memo)
        # a product of two equal factors (x_j x_j2 at j2 = j) reads as the square it is, so
        # that it meets the same square spelled a^2 (FFM's diagonal) and is computed once
        out = ir.Binary("^", left, ir.Const(2.0)) if e.op == "*" and left == right else \
            ir.Binary(e.op, left, right)
    elif isinstance(e, ir.Neg):
        out = ir.Neg(substitute(e.operand, old, new, memo))
    elif isinstance(e, ir.Func):
        out = ir.Func(e.name, tuple(substitute(a, old, new, memo) for a in e.args))
    else:
        out = e
    memo[e] = out
    return out


def _less_its_diagonal(body: ir.Expr, var: ir.Var) -> ir.Sum | None:
    """M where `body` (a summand at `var`) is M - D: M a sum over var's domain of a term
    symmetric in var and M's own variable, D that term at M's variable = var (equal as
    polynomials: FFM's pairs less diag); else None."""
    if not (isinstance(body, ir.Binary) and body.op == "-" and isinstance(body.left, ir.Sum)):
        return None
    m = body.left
    if m.var == var or not _same_domain(m.var, var) or not _symmetric(m.body, var, m.var):
        return None
    diagonal = substitute(m.body, m.var, var)
    return m if _is_zero(ir.Binary("-", diagonal, body.right)) else None


def fold_forward_diagonals(e: ir.Expr, memo=None) -> ir.Expr:
    """e with each difference sum(j: sum(j2: g(j, j2))) - sum(j': g(j', j')) of sums over one
    domain, g symmetric in j and j2 (FFM's `pairs - diag`), written as the one sum
    sum(j: sum(j2: g(j, j2)) - g(j, j)), whose summand (Emitter.summand) runs over the
    pairs j2 > j only: the same value, without computing the diagonal twice to cancel it."""
    memo = {} if memo is None else memo
    if e in memo:
        return memo[e]
    if isinstance(e, BINDERS):
        out = _rebind(e, e.var, fold_forward_diagonals(e.body, memo))
    elif isinstance(e, ir.Binary):
        out = ir.Binary(e.op, fold_forward_diagonals(e.left, memo),
                        fold_forward_diagonals(e.right, memo))
        a, b = out.left, out.right
        if out.op == "-" and isinstance(a, ir.Sum) and isinstance(b, ir.Sum) and \
                _same_domain(a.var, b.var):
            body = ir.Binary("-", a.body, substitute(b.body, b.var, a.var))
            if _less_its_diagonal(body, a.var) is not None:
                out = ir.Sum(a.var, body)
    elif isinstance(e, ir.Neg):
        out = ir.Neg(fold_forward_diagonals(e.operand, memo))
    elif isinstance(e, ir.Func):
        out = ir.Func(e.name, tuple(fold_forward_diagonals(x, memo) for x in e.args))
    else:
        out = e
    memo[e] = out
    return out


def _distinct(e: ir.Expr, stop) -> list:
    """Distinct nodes of e, parents first, not descending below nodes where stop(node)."""
    out, seen, stack = [], set(), [e]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        out.append(node)
        if not stop(node):
            stack.extend(reversed(node.children()))
    return out


def _outer_sums(e: ir.Expr) -> list:
    """The sums of e that are not inside another sum."""
    return [n for n in _distinct(e, lambda n: isinstance(n, BINDERS))
            if isinstance(n, ir.Sum)]


def _invariant_subtrees(e: ir.Expr, var: ir.Var, bound: set) -> list:
    """Maximal sums and calls inside e that do not depend on `var` and whose free loop
    variables are all `bound` (open loops): never above the sum that binds one of them."""
    def hoistable(n):
        free = {v.name for v in free_loop_vars(n)}
        return var.name not in free and free <= bound and \
            isinstance(n, BINDERS + (ir.Func,))

    def stop(n):
        return hoistable(n) or (isinstance(n, BINDERS) and n.var == var)
    return [n for n in _distinct(e, stop) if hoistable(n)]


def _row_sums(e: ir.Expr) -> list:
    """Sums over a sparse row in e (not inside another such sum) whose other free loop
    variables are all dense."""
    def row_sum(n):
        return isinstance(n, ir.Sum) and n.var.kind == "sparse"
    return [n for n in _distinct(e, row_sum) if row_sum(n) and
            all(v.kind == "dense" for v in free_loop_vars(n))]


def _partial_invariants(e: ir.Expr, nest: tuple) -> list:
    """Maximal subtrees of a gradient that depend on some but not all of its nest's loops
    (operators, and data read into a local: the compiler cannot keep a value loaded through
    a pointer that a write in the loop may alias): COFFEE's rule hoists each to the
    outermost level that binds them."""
    full = frozenset(nest)

    def partial(n):
        return free_loop_vars(n) & full != full

    def stop(n):
        return partial(n) or isinstance(n, BINDERS)
    return [n for n in _distinct(e, stop) if partial(n) and free_loop_vars(n) and
            isinstance(n, (ir.Binary, ir.Neg, ir.Func, ir.DataAt, ir.Deg))]


def _shared_vectors(hoisted: list, vectors: list) -> list:
    """Calls over dense loops needed both by a once-per-term value and by a vector
    (softmax's exp(z[c]) in sum(exp(z)) and in exp(z[c]) / S): stored once, as a vector,
    before either. -> (call, loops), inner calls first."""
    def calls(roots):
        found = []
        for r in roots:
            found += [n for n in _distinct(r, lambda n: False) if isinstance(n, ir.Func)
                      and free_loop_vars(n) and
                      all(v.kind == "dense" for v in free_loop_vars(n))]
        return found
    in_vectors = set(calls(v for v, _ in vectors))
    both = [f for f in dict.fromkeys(reversed(calls(hoisted))) if f in in_vectors]
    return [(f, tuple(_order_vars(free_loop_vars(f)))) for f in both]


def _shared_nodes(roots) -> set:
    """Operator nodes used more than once (a let used twice, a gradient's repeated
    factor): computed once into a temporary instead of printed at every use."""
    uses, seen, stack = Counter(), set(), list(roots)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for child in node.children():
            uses[child] += 1
            stack.append(child)
    return {n for n, k in uses.items() if k > 1 and isinstance(n, (ir.Neg, ir.Binary))}


def _renamed(var: ir.Var, n: int) -> ir.Var:
    """A fresh copy of a loop variable (canonical names start with j or k: no clash)."""
    return ir.Var(f"r{n}_{var.name}", var.dim, var.kind, var.source)


@dataclass(frozen=True)
class Step(ir.Expr):
    """The step size of the current update (the kernel's `step`), as a leaf of a gradient
    that an sgd update scales by it (see scaled_by_step)."""
    def children(self):
        return ()

    def __str__(self):
        return "step"


def scaled_by_step(e: ir.Expr, nest: tuple) -> ir.Expr:
    """step * e, with the step multiplied into the factor of each product that depends on the
    fewest of the nest's loops (strength reduction): `step * (T[c] * X[i, j])` becomes
    `(step * X[i, j]) * T[c]`, whose first factor the partial-invariant pass computes once per
    nonzero, so the innermost loop no longer multiplies by the step. Sums and negations are
    distributed over; any other expression is one factor."""
    if isinstance(e, ir.Binary) and e.op in ("+", "-"):
        return ir.Binary(e.op, scaled_by_step(e.left, nest), scaled_by_step(e.right, nest))
    if isinstance(e, ir.Neg):
        return ir.Neg(scaled_by_step(e.operand, nest))
    factors, stack = [], [e]
    while stack:
        node = stack.pop()
        if isinstance(node, ir.Binary) and node.op == "*":
            stack += [node.right, node.left]
        else:
            factors.append(node)

    def depth(f):          # how deep in the nest the innermost loop it depends on is
        return max((nest.index(v) + 1 for v in free_loop_vars(f) if v in nest), default=0)
    out = Step()
    for f in sorted(factors, key=depth):       # stable: the order within a level is kept
        out = ir.Binary("*", out, f)
    return out


def _grouped(text: str) -> str:
    """A C expression as a factor: in parentheses unless it is one name."""
    return text if text.isidentifier() else f"({text})"


def _is_leafy(e) -> bool:
    return isinstance(e, (ir.Const, ir.Deg, ir.DataAt, Step))


def _clip(con: ir.Constraint | None) -> str | None:
    """A lower bound's or a box's clipping of a value `{x}` (a format string); None for the
    other constraints (simplex and ball project whole rows: project) and for none."""
    if con is not None and con.kind == "lower":
        return f"fmax({_fmt(con.lo)}, {{x}})"
    if con is not None and con.kind == "box":
        return f"fmin({_fmt(con.hi)}, fmax({_fmt(con.lo)}, {{x}}))"
    return None


def _fmt(value: float) -> str:
    text = repr(float(value))
    return text if "inf" not in text and "nan" not in text else f"float('{text}')"


class Names:
    """Fresh C temporaries, all starting with '_' (user names never do)."""

    def __init__(self):
        self.count = 0
        self.decls: dict[str, str] = {}

    def new(self, prefix: str, ctype: str = "double") -> str:
        self.count += 1
        name = f"_{prefix}{self.count}"
        self.decls[name] = ctype
        return name

    def var(self, name: str, ctype: str) -> str:
        self.decls[name] = ctype
        return name


# ---------------------------------------------------------------- C access paths


class Access:
    """C expressions for index variables, data, params and degrees of one spec."""

    def __init__(self, spec: ir.Spec, block: ir.Block, hot: frozenset = frozenset(),
                 real: str = "double"):
        self.spec, self.block = spec, block
        self.hot = hot          # params read and written through this thread's replicas
        self.storage = real     # the C type params and data values are stored in
        self.consts = dict(spec.consts)
        self.entry_data = block.over if block.kind == "entries" else None
        self.load_in_loop = None   # the Emitter's: index data read at an open loop's index
        self.per_term = None       # the Emitter's: a value loaded once, at the function's top

    def extent(self, dim: str) -> str:
        return str(self.consts[dim]) if dim in self.consts else c_dim(dim)

    def index(self, v: ir.Var) -> str:
        if v.kind == "indirect" and not v.per_term:    # f[j]: loaded once per pass of j's loop
            return self.load_in_loop(v)
        if v.kind == "indirect":            # y[i]: loaded once per term (per_term_loads)
            at = v.at
            return f"_x_{v.source[0]}_{at.name}" if at.kind == "term" else \
                f"_x_{v.source[0]}{self.index(at)}"
        if v.kind == "sample":
            return f"_s_{v.name}"
        if v.kind == "draw":                # n[s]: the s-th of the term's draws
            return f"_s_{v.source[1]}[{self.index(v.source[2])}]"
        return {"term": f"_t_{v.name}", "sparse": f"_c_{v.name}", "dense": f"_d_{v.name}"}[v.kind]

    def per_term_loads(self, exprs, names: Names) -> list[str]:
        """`_x_y_i = y_[_t_i]` for every index datum the expressions read at a term index,
        `_s_j = <draw>` for every sampled index they use, and `_s_n[0..K) = <draws>` for the
        K draws of `sample n[K] in D` they read as n[s]. A draw is a function of the draw
        key, the term and the draw's number (see draw_number), so every function of one visit
        sees the same draws."""
        found = {}

        def need(v):                # what an index datum is read at is loaded before it
            if v.kind in ("indirect", "sparse"):    # and the index selecting a sparse row
                need(v.at)
            if v.kind in ("indirect", "sample") and v.per_term:
                found.setdefault(v, None)
            if v.kind == "draw":        # n[s]: every draw of n, once per term
                found.setdefault(v.source[1], None)
        for e in exprs:
            for node in _distinct(e, lambda n: False):
                if isinstance(node, (ir.ParamAt, ir.DataAt, ir.Deg)):
                    for v in node.index:
                        need(v)
        lines = []
        for v in found:
            if isinstance(v, str):          # the K draws of n, into a local array
                pos, sample = next((n, s) for n, s in enumerate(self.block.samples)
                                   if s.var.name == v)
                names.var(f"_s_{v}", f"int64_t[{sample.draws}]")
                names.var("_q", "int64_t")
                lines.append(f"for _q in range({sample.draws}):")
                lines.append(f"    _s_{v}[_q] = " + self.draw(   # (LL: a C literal)
                    sample, f"{draw_number(self.block.index, pos, True)}LL + _q"))
                continue
            names.var(self.index(v), "int64_t")
            if v.kind == "indirect":
                lines.append(f"{self.index(v)} = {c_value(v.source[0])}[{self.index(v.at)}]")
                continue
            pos, sample = next((n, s) for n, s in enumerate(self.block.samples) if s.var == v)
            lines.append(f"{self.index(v)} = " +
                         self.draw(sample, str(draw_number(self.block.index, pos))))
        return lines

    def draw(self, sample: ir.Sample, which: str) -> str:
        """C for the draw number `which` of a term from the dim of `sample`."""
        n, w = self.extent(sample.var.dim), sample.weights
        if w is None:
            return f"_hw_draw({c_draw_key()}, t, {which}, {n})"
        return f"_hw_draw_alias({c_draw_key()}, t, {which}, {n}, {c_csr(w, 'aliasp')}, " \
            f"{c_csr(w, 'aliasi')})"

    def row_start(self, v: ir.Var) -> str:
        """Where the term's row of a sparse loop starts (a local, loaded once per term)."""
        load = f"{c_csr(v.source[0], 'indptr')}[{self.index(v.at)}]"
        return self.per_term(load) if self.per_term else load

    def position(self, v: ir.Var) -> str:
        """0-based position of a loop variable inside its domain (for scratch offsets)."""
        if v.kind == "sparse":
            return f"(_p_{v.name} - {self.row_start(v)})"
        return f"_d_{v.name}"

    def var_extent(self, v: ir.Var) -> str:
        return c_maxnnz(v.source[0]) if v.kind == "sparse" else self.extent(v.dim)

    def loop_header(self, v: ir.Var, names: Names, in_row: bool = False,
                    after: ir.Var | None = None, writing: bool = False) -> list[str]:
        """The loop over v's domain; `after`: only the points past that open loop's (the
        upper triangle of a double sum over one domain)."""
        if v.kind == "sparse":
            data, row = v.source[0], self.index(v.at)
            names.var(f"_p_{v.name}", "int64_t")
            names.var(f"_c_{v.name}", "int64_t")
            indptr = c_csr(data, "indptr")
            first = f"_p_{after.name} + 1" if after is not None else f"{indptr}[{row}]"
            return [f"for _p_{v.name} in range({first}, {indptr}[{row} + 1]):",
                    f"    _c_{v.name} = {c_csr(data, 'indices')}[_p_{v.name}]"]
        names.var(f"_d_{v.name}", "int64_t")
        if after is not None:
            return [f"for _d_{v.name} in range(_d_{after.name} + 1, {self.extent(v.dim)}):"]
        # Inside a loop over a sparse row (in_row), a const's loop runs to a bound read from
        # the struct, not to a literal: gcc fully unrolls a literal 8 and then vectorises a
        # sum across the row's nonzeros with gathers (FM, k = 8: 1.5x slower than the
        # contiguous loop over k it makes otherwise; in its scatter 1.15x slower). A loop of
        # at most SHORT_LOOP in an update's scatter (writing) keeps its literal: there the
        # checks and remainder of a loop of unknown length cost more than its work (FFM,
        # k = 4: 1.3x faster unrolled). Elsewhere a literal stays: gcc vectorises it with a
        # known trip count, and build.GCC_FLAGS keeps gcc from peeling one of more than
        # SHORT_LOOP whole (scalar code that spilled: Poisson MF at rank 16 ran at 0.64x).
        literal = not in_row or v.dim not in self.consts or \
            (writing and self.consts[v.dim] <= SHORT_LOOP)
        bound = self.extent(v.dim) if literal else c_bound(v.dim)
        return [f"for _d_{v.name} in range({bound}):"]

    def element(self, name: str, dims: tuple, index: tuple, array: str | None = None) -> str:
        """The C element of param or data `name` (or of `array`, laid out as it) at `index`."""
        if array is None and name in self.hot:   # the row on this thread's replica where it
            length = "1" if len(dims) == 1 else self.extent(dims[1])       # is hot, else shared
            col = "0" if len(dims) == 1 else self.index(index[1])
            return f"_hw_row({c_value(name)}, own, {c_hot(name)}, {self.index(index[0])}, " \
                   f"{length})[{col}]"
        name = array or c_value(name)
        return f"{name}[{self.flat(dims, index)}]"

    def flat(self, dims: tuple, index: tuple) -> str:
        """The row-major offset of `index` in an array over `dims`: (a * n1 + b) * n2 + c."""
        if not dims:
            return "0"
        flat = self.index(index[0])
        for dim, v in zip(dims[1:], index[1:]):
            flat = f"{_grouped(flat)} * {self.extent(dim)} + {self.index(v)}"
        return flat

    def leaf(self, e) -> str:
        if isinstance(e, ir.ParamAt):
            return self.element(e.name, self.spec.param(e.name).dims, e.index)
        if isinstance(e, ir.Deg):   # the layout holds 1/deg
            return f"(1.0 / {self.inv_deg(e)})"
        d = self.spec.datum(e.name)
        if d.kind == "sparse":
            a, b = e.index
            if b.kind == "sparse":
                return f"{c_csr(d.name, 'data')}[_p_{b.name}]"
            return f"{c_csr(d.name, 'data')}[t]"          # the current entry of an entries block
        return self.element(d.name, d.dims, e.index)

    def inv_deg(self, e: ir.Deg) -> str:
        name = c_deg(e.name)
        return name if not e.index else f"{name}[{self.index(e.index[0])}]"


# ---------------------------------------------------------------- expression emission


C_FUNCS = {"abs": "fabs", "max": "fmax", "min": "fmin", "exp": "exp", "log": "log",
           "log1p": "log1p", "sqrt": "sqrt"}


def _is_dot(body: ir.Expr) -> bool:
    """Whether a summand is the product of two stored values (data or params)."""
    leaves = (ir.DataAt, ir.ParamAt)
    return isinstance(body, ir.Binary) and body.op == "*" and \
        isinstance(body.left, leaves) and isinstance(body.right, leaves)


class Emitter:
    """Emits statements computing expressions; returns C expressions for their values.
    Sums and function calls get temporaries, memoised per loop scope (common subexpressions
    are computed once); `stored` maps sums kept in scratch to their array."""

    def __init__(self, access: Access, names: Names, lines: list, roots=(), indent: int = 1):
        self.a, self.names, self.lines, self.indent = access, names, lines, indent
        self.shared = _shared_nodes(roots)
        self.scopes: list[dict] = [{}]
        self.open_names: list[str] = []
        self.open_vars: list[ir.Var] = []
        self.stored: dict[ir.Sum, tuple] = {}
        self.take = None        # in an update: room in scratch (BlockLowering.update's take)
        self.loop_starts: list[list] = []   # per open loop: [first body line, indent, loads]
        self.real = "double"    # the C type of the arithmetic emitted now (see arithmetic)
        self.top = len(lines)   # where values loaded once per term go (per_term)
        self.writing = False    # in an update's scatter nests (Access.loop_header)
        self.per_term_loads: dict[str, str] = {}
        access.load_in_loop = self.load_in_loop
        access.per_term = self.per_term

    def emit(self, line: str):
        self.lines.append("    " * self.indent + line)

    def lookup(self, e):
        for scope in reversed(self.scopes):
            if e in scope:
                return scope[e]
        return None

    def remember(self, e, text):
        self.scopes[-1][e] = text
        return text

    def temp(self, e, text: str, prefix="v") -> str:
        name = self.names.new(prefix, self.real)
        self.emit(f"{name} = {text}")
        return self.remember(e, name)

    @contextlib.contextmanager
    def arithmetic(self, ctype: str):
        """Emit in `ctype` arithmetic: the storage type for an update's per-coordinate
        work (float32: no conversion of each coordinate read and written), double for sums
        and reductions wherever they sit."""
        before, self.real = self.real, ctype
        try:
            yield
        finally:
            self.real = before

    def typed(self, text: str, ctype: str = "double") -> str:
        """A C value of type `ctype` as one of the current arithmetic's type (a cast where
        they differ: gcc hoists the cast of a loop-invariant out of the loop)."""
        return text if ctype == self.real else f"(<{self.real}>{text})"

    def inv_deg(self, e: ir.Deg) -> str:
        """1/deg in the current arithmetic: a table (per coordinate) is stored in the storage
        type (lower.layout), a whole-param target's number is a double."""
        return self.typed(self.a.inv_deg(e), self.a.storage if e.index else "double")

    def known(self, name: str) -> str:
        """A temporary read in the current arithmetic."""
        ctype = self.names.decls.get(name)
        return self.typed(name, ctype) if ctype in ("double", "float") else name

    def open_loop(self, v: ir.Var, after: ir.Var | None = None):
        in_row = any(o.kind == "sparse" for o in self.open_vars)
        for line in self.a.loop_header(v, self.names, in_row, after, self.writing):
            self.emit(line)
        self.indent += 1
        self.scopes.append({})
        self.open_names.append(v.name)
        self.open_vars.append(v)
        self.loop_starts.append([len(self.lines), self.indent, {}])

    def close_loop(self):
        self.scopes.pop()
        self.open_names.pop()
        self.open_vars.pop()
        self.loop_starts.pop()
        self.indent -= 1

    def load_in_loop(self, v: ir.Var) -> str:
        """The local holding index data read at an open loop's index (`f[j]` in the loop
        over j), loaded once at the top of that loop's body: read through a pointer in an
        inner loop, it would be reloaded after every write (a param may alias it)."""
        loop = ir.loop_of(v)
        depth = max(n for n, o in enumerate(self.open_vars) if o == loop)
        start = self.loop_starts[depth]
        data, at = v.source[0], self.a.index(v.at)
        name = f"_y_{data}{at}"
        if name not in start[2]:
            self.names.var(name, "int64_t")
            self.lines.insert(start[0], "    " * start[1] + f"{name} = {c_value(data)}[{at}]")
            start[2][name] = True
            for inner in self.loop_starts[depth + 1:]:
                inner[0] += 1
        return name

    def per_term(self, load: str) -> str:
        """A local holding `load` (an int64 the term fixes, such as the start of its sparse
        row), read once at the top of the function: read through a pointer inside the loops,
        gcc reloads it after every write (any double* may alias it) for each scratch offset."""
        if load not in self.per_term_loads:
            name = self.names.new("r", "int64_t")
            self.lines.insert(self.top, f"    {name} = {load}")
            self.top += 1
            for start in self.loop_starts:
                start[0] += 1
            self.per_term_loads[load] = name
        return self.per_term_loads[load]

    def value(self, e: ir.Expr) -> str:
        known = self.lookup(e)
        if known is not None:
            return self.known(known)
        if e in self.stored:
            array, vars_ = self.stored[e]
            return self.typed(f"{array}[{offset(self.a, vars_)}]")
        if isinstance(e, ir.Const):
            text = self.typed(_fmt(e.value))
            return text if e.value >= 0 or text != _fmt(e.value) else f"({text})"
        if isinstance(e, (ir.DataAt, ir.ParamAt)):       # (int index data never reaches here)
            return self.typed(self.a.leaf(e), self.a.storage)
        if isinstance(e, ir.Deg):
            return self.typed(self.a.leaf(e))        # 1.0 / the table's value: a double
        if isinstance(e, Step):
            return self.typed("step")
        if e in self.shared and isinstance(e, (ir.Neg, ir.Binary)):
            return self.temp(e, self.inline(e), "c")
        return self.inline(e)

    def inline(self, e: ir.Expr) -> str:
        if isinstance(e, ir.Neg):
            return f"(-{self.value(e.operand)})"
        if isinstance(e, ir.Binary):
            if e.op == "/" and isinstance(e.right, ir.Deg):
                return f"({self.value(e.left)} * {self.inv_deg(e.right)})"
            left, right = self.value(e.left), self.value(e.right)
            if e.op != "^":
                return f"({left} {e.op} {right})"
            f = "" if self.real == "double" else "f"      # _hw_sqf: float in, float out
            if isinstance(e.right, ir.Const) and e.right.value == int(e.right.value) \
                    and abs(e.right.value) <= 64:
                n = int(e.right.value)
                return f"_hw_sq{f}({left})" if n == 2 else f"_hw_powi{f}({left}, {n})"
            return self.typed(f"pow({left}, {right})")
        if isinstance(e, ir.Func):
            args = ", ".join(self.value(x) for x in e.args)
            fn = C_FUNCS.get(e.name, f"_hw_{e.name.lstrip('_')}")
            return self.temp(e, f"{fn}({args})", "f")
        if isinstance(e, ir.Sum):
            return self.sum(e)
        if isinstance(e, ir.ArgMax):
            return self.argmax(e)
        if isinstance(e, ir.Reduce):
            return self.reduce(e)
        raise AssertionError(f"cannot emit {e!r}")

    def acc_type(self, body: ir.Expr) -> str:
        """The C type a sum of `body` accumulates in: double, but a dot of two stored arrays
        (x[j] * w[j], L[u, k] * R[v, k]) in their storage type: float32 storage then takes
        float lanes and no conversion of each product (RCV1-shaped SVM, float32: epochs
        1.07x faster; hand-written float kernels, LIBMF's, sum so); float64 code is the
        same."""
        return self.a.storage if _is_dot(body) else "double"

    def sum(self, e: ir.Sum) -> str:
        ctype = self.acc_type(e.body)
        with self.arithmetic(ctype):
            acc = self._sum(e, ctype)
        return self.known(acc)

    def _sum(self, e: ir.Sum, ctype: str = "double") -> str:
        var, body = self.loop_var(e)
        self.hoist_invariants(body, var)
        acc = self.names.new("s", ctype)
        self.emit(f"{acc} = 0.0")
        self.open_loop(var)
        self.fuse([body])
        value = self.summand(body, var)
        self.emit(f"{acc} = {acc} + {value}")
        self.close_loop()
        return self.remember(e, acc)

    def summand(self, body: ir.Expr, var: ir.Var) -> str:
        """The value at `var` of the body of a sum over `var`. Where the body is a sum over
        the same domain of a term symmetric in the two indices (FFM's pairs
        x_j x_j2 <V[j, f[j2]], V[j2, f[j]]>), only the upper triangle runs:
        sum_j sum_j2 g(j, j2) = sum_j (g(j, j) + 2 sum_{j2 > j} g(j, j2)); where the body is
        that sum less its diagonal g(j, j) (fold_forward_diagonals), the diagonal is not
        computed at all: sum_j 2 sum_{j2 > j} g(j, j2)."""
        pairs = _less_its_diagonal(body, var)
        if pairs is None and not (isinstance(body, ir.Sum) and body.var != var and
                                  _same_domain(body.var, var) and
                                  _symmetric(body.body, var, body.var)):
            return self.value(body)
        diagonal = None if pairs is not None else \
            self.value(substitute(body.body, body.var, var))
        inner, term = self.loop_var(pairs or body)
        self.hoist_invariants(term, inner)
        acc = self.names.new("s")
        self.emit(f"{acc} = 0.0")
        self.open_loop(inner, after=var)
        self.fuse([term])
        self.emit(f"{acc} = {acc} + {self.value(term)}")
        self.close_loop()
        return f"(2.0 * {acc})" if diagonal is None else f"({diagonal} + 2.0 * {acc})"

    def loop_var(self, e):
        """The loop's variable and body; renamed when the name is already an open loop's
        (gradients put a copy of a forward sum inside a loop over the same index)."""
        if e.var.name not in self.open_names:
            return e.var, e.body
        var = self.fresh(e.var)
        return var, substitute(e.body, e.var, var)

    def fresh(self, var: ir.Var) -> ir.Var:
        """A copy of an open loop's variable for a loop nested in it; what is stored over
        `var` stays readable under the new name (the same values, the same array)."""
        self.names.count += 1
        new = _renamed(var, self.names.count)
        for e, (array, vars_) in list(self.stored.items()):
            if var in vars_:
                self.stored[substitute(e, var, new)] = \
                    (array, tuple(new if v == var else v for v in vars_))
        return new

    def fuse(self, exprs):
        """Compute, in one loop per domain, the sums of `exprs` that can be computed here and
        share a domain (a loss and its reg over X[i]; the three sums over rank of mc's
        objective): one pass over a sparse row instead of one per sum."""
        groups: dict[tuple, list] = {}
        for e in exprs:
            for s in _outer_sums(e):
                if self.lookup(s) is None and s not in self.stored and \
                        not ({v.name for v in free_loop_vars(s)} - set(self.open_names)):
                    groups.setdefault((s.var.kind, s.var.dim, s.var.source), []).append(s)
        for sums in groups.values():
            sums = list(dict.fromkeys(sums))
            if len(sums) < 2:
                continue
            var = sums[0].var
            if var.name in self.open_names:
                var = self.fresh(var)
            bodies = [substitute(s.body, s.var, var) for s in sums]
            for b in bodies:
                self.hoist_invariants(b, var)
            accs = [self.names.new("s", self.acc_type(b)) for b in bodies]
            for acc in accs:
                self.emit(f"{acc} = 0.0")
            self.open_loop(var)
            self.fuse(bodies)
            for acc, b in zip(accs, bodies):
                with self.arithmetic(self.acc_type(b)):
                    self.emit(f"{acc} = {acc} + {self.summand(b, var)}")
            self.close_loop()
            for s, acc in zip(sums, accs):
                self.remember(s, acc)

    def row_passes(self, exprs, take):
        """Interchange and fusion over sparse rows: every sum over the nonzeros of a row whose
        other free indices are dense loops (sum(j in X[i]: X[i, j] * V[j, f]) for each f) is
        accumulated in ONE pass over the row, the dense loops inside it (contiguous in a
        row-major param), into scratch: FM's 2k + 1 passes become one."""
        groups: dict[tuple, list] = {}
        for e in exprs:
            for s in _row_sums(e):
                if self.lookup(s) is None and s not in self.stored:
                    groups.setdefault(s.var.source, []).append(s)
        for sums in groups.values():
            sums = list(dict.fromkeys(sums))
            var = sums[0].var
            bodies = [substitute(s.body, s.var, var) for s in sums]
            for b in bodies:
                self.hoist_invariants(b, var)
            by_loops: dict[tuple, list] = {}
            slots = []
            for s, b in zip(sums, bodies):
                loops = tuple(_order_vars(free_loop_vars(s)))
                if loops:
                    slot = (take(size_of(self.a, loops)), loops)
                    self.zero(*slot)
                else:
                    slot = self.names.new("s", self.acc_type(b))
                    self.emit(f"{slot} = 0.0")
                slots.append(slot)
                by_loops.setdefault(loops, []).append((b, slot))
            self.open_loop(var)
            for b in bodies:          # what depends on the nonzero only: once per nonzero
                for n in _partial_invariants(b, (var,) + tuple(_order_vars(
                        free_loop_vars(b) - {var}))):
                    if free_loop_vars(n) == {var}:
                        self.hoist(n)
            for loops, members in by_loops.items():
                for v in loops:
                    self.open_loop(v)
                for b, slot in members:
                    target = slot if not loops else f"{slot[0]}[{offset(self.a, loops)}]"
                    with self.arithmetic("double" if loops else self.acc_type(b)):
                        self.emit(f"{target} = {target} + {self.summand(b, var)}")
                for _ in loops:
                    self.close_loop()
            self.close_loop()
            for s, slot in zip(sums, slots):
                if isinstance(slot, tuple):
                    self.stored[s] = slot
                else:
                    self.remember(s, slot)

    def zero(self, array: str, loops: tuple):
        for v in loops:
            self.open_loop(v)
        self.emit(f"{array}[{offset(self.a, loops)}] = 0.0")
        for _ in loops:
            self.close_loop()

    def store(self, e: ir.Expr, loops: tuple, take):
        """Compute e at every point of `loops` into scratch; later uses read it there. What
        does not depend on a loop is computed before it (the max in max(v) - v[k])."""
        array = take(size_of(self.a, loops))
        for v in loops:
            self.hoist_invariants(e, v)
            self.open_loop(v)
        self.emit(f"{array}[{offset(self.a, loops)}] = {self.value(e)}")
        for _ in loops:
            self.close_loop()
        self.stored[e] = (array, loops)

    def hoist_invariants(self, body, var):
        """Compute sums and calls that do not depend on the loop variable before the loop."""
        for sub in _invariant_subtrees(body, var, set(self.open_names)):
            self.hoist(sub)

    def argmax(self, e: ir.ArgMax) -> str:
        with self.arithmetic("double"):
            return self._argmax(e)

    def _argmax(self, e: ir.ArgMax) -> str:
        var, body = self.loop_var(e)
        self.hoist_invariants(body, var)
        best, where = self.names.new("m"), self.names.new("a")
        self.emit(f"{where} = -1.0")
        self.emit(f"{best} = 0.0")
        self.open_loop(var)
        value = self.value(body)
        self.emit(f"if {where} < 0 or {value} > {best}:")
        self.emit(f"    {best} = {value}")
        self.emit(f"    {where} = {self.a.index(var)}")
        self.close_loop()
        return self.remember(e, where)

    def reduce(self, e: ir.Reduce) -> str:
        """max / min over a dense var; logsumexp as max + log(sum(exp(body - max))): stable,
        no exp overflows (the largest term is exp(0) = 1)."""
        with self.arithmetic("double"):
            return self._reduce(e)

    def _reduce(self, e: ir.Reduce) -> str:
        var, body = self.loop_var(e)
        self.hoist_invariants(body, var)
        best, seen = self.names.new("m"), self.names.new("a", "int")
        self.emit(f"{seen} = 0")
        self.emit(f"{best} = 0.0")
        self.open_loop(var)
        self.fuse([body])
        value = self.value(body)
        better = "<" if e.op == "min" else ">"
        self.emit(f"if {seen} == 0 or {value} {better} {best}:")
        self.emit(f"    {best} = {value}")
        self.emit(f"    {seen} = 1")
        self.close_loop()
        if e.op != "logsumexp":
            return self.remember(e, best)
        acc = self.names.new("s")
        self.emit(f"{acc} = 0.0")
        self.open_loop(var)
        self.fuse([body])
        self.emit(f"{acc} = {acc} + exp({self.value(body)} - {best})")
        self.close_loop()
        return self.temp(e, f"{best} + log({acc})", "l")

    def hoist(self, e: ir.Expr) -> str:
        """Compute e into a temporary now (in the current scope) so later uses read it."""
        known = self.lookup(e)
        if known is not None:
            return known
        text = self.value(e)
        if self.lookup(e) is not None:
            return self.lookup(e)
        return self.temp(e, text, "h")


def offset(a: Access, vars_: tuple) -> str:
    """Flat offset of a point of a loop nest in a row-major scratch array."""
    text = ""
    for v in vars_:
        pos = a.position(v)
        text = pos if not text else f"({text}) * {a.var_extent(v)} + {pos}"
    return text or "0"


def size_of(a: Access, vars_: tuple) -> str:
    return " * ".join(a.var_extent(v) for v in vars_) or "1"


# ---------------------------------------------------------------- the update plan


def _sorted_nest(index: tuple) -> tuple:
    """The loops of a site's nest: one per distinct loop variable (Q[s, s] loops once)."""
    loops = list(dict.fromkeys(ir.loop_of(v) for v in index if not v.per_term))
    return tuple([v for v in loops if v.kind == "sparse"] + [v for v in loops if v.kind == "dense"])


def _variant_parts(e: ir.Expr, nest: frozenset, hoisted: list, stored: list, reads: list):
    """Walk a gradient: collect maximal loop-invariant subtrees (hoisted), loop-dependent sums
    and reductions (stored in scratch, at the old point: a reduction's body may read, under
    its own index, coordinates the nest writes) and param reads left inside the loop nest."""
    def stop(n):
        return not (free_loop_vars(n) & nest) or isinstance(n, (ir.Sum, ir.Reduce, ir.ParamAt))
    for n in _distinct(e, stop):
        if not free_loop_vars(n) & nest:
            if not _is_leafy(n):
                hoisted.append(n)
        elif isinstance(n, (ir.Sum, ir.Reduce)):
            stored.append(n)
        elif isinstance(n, ir.ParamAt):
            reads.append(n)


def _extreme_bodies(exprs) -> list:
    """The vectors v of the max(v) / min(v) whose gradients `exprs` share (extreme_share),
    with their loops: an update stores each once, at the old point, and the max, its tie
    count and every indicator read that copy, so they agree to the bit (v computed twice may
    be contracted into FMAs differently: a count of 0, a division by it)."""
    found = []
    for e in exprs:
        found += [(n.body, tuple(_order_vars(free_loop_vars(n.body))))
                  for n in _distinct(e, lambda n: False)
                  if isinstance(n, ir.Reduce) and n.op != "logsumexp" and ir.params_of(n.body)]
    return list(dict.fromkeys(found))


@dataclass
class Nest:
    vars: tuple
    sites: list = field(default_factory=list)
    reads: list = field(default_factory=list)
    levels: dict = field(default_factory=dict)   # loop depth -> subtrees computed there


def _injective(site: SiteGrad) -> bool:
    """Whether the site writes a different coordinate at every point of its nest: so when
    each of its loops is an index position of its own; not so where a loop is reached only
    through index data (V[j, f[j2]]: two nonzeros j2 of one field write one coordinate)."""
    direct = {v for v in site.index if v.kind in ("dense", "sparse")}
    return all(ir.loop_of(v) in direct for v in site.index if not v.per_term)


def _covers(target: SiteGrad, vars_: tuple, site: SiteGrad) -> bool:
    """Whether a direct nest over `vars_` writes, through `target` (one coordinate at each
    of its points), every coordinate `site` writes: each index of target is one of the
    nest's loops, each once; a sparse loop's index of site runs over the same row, a dense
    one's takes any value of its dim (the whole dim is looped over)."""
    if target.param != site.param or len(target.index) != len(vars_) or \
            set(target.index) != set(vars_):
        return False
    return all(e.kind == "sparse" and _same_domain(e, v) if v.kind == "sparse" else True
               for v, e in zip(target.index, site.index))


def _symmetric(e: ir.Expr, a: ir.Var, b: ir.Var) -> bool:
    """Whether e is unchanged by swapping the loop variables a and b (up to the order of
    the operands of + and *)."""
    return _shape_key(e, {}) == _shape_key(_rename_loops(e, {a: b, b: a}), {})


def _shape_key(e: ir.Expr, memo: dict):
    """A key equal for expressions equal up to the order of + and * operands."""
    if e in memo:
        return memo[e]
    if isinstance(e, ir.Binary) and e.op in "+*":
        operands, stack = [], [e]
        while stack:
            n = stack.pop()
            if isinstance(n, ir.Binary) and n.op == e.op:
                stack += [n.left, n.right]
            else:
                operands.append(_shape_key(n, memo))
        key = (e.op, tuple(sorted(operands, key=repr)))
    elif isinstance(e, (ir.DataAt, ir.ParamAt, ir.Deg)):
        key = (type(e).__name__, e.name, tuple(map(str, e.index)))
    elif isinstance(e, BINDERS):
        key = (type(e).__name__, getattr(e, "op", ""), e.var, _shape_key(e.body, memo))
    else:
        key = (type(e).__name__, getattr(e, "op", getattr(e, "name", getattr(e, "value", ""))),
               tuple(_shape_key(c, memo) for c in e.children()))
    memo[e] = key
    return key


def _same_domain(a: ir.Var, b: ir.Var) -> bool:
    """Whether two loop variables run over the same values (a dim, or one sparse row)."""
    return a.kind == b.kind and a.dim == b.dim and a.source == b.source


def _rename_loops(e: ir.Expr, mapping: dict) -> ir.Expr:
    """e with its free loop variables renamed at once (a swap j <-> j2 included)."""
    temps = {old: ir.Var(f"_swap{n}", old.dim, old.kind, old.source)
             for n, old in enumerate(mapping)}
    for old, tmp in temps.items():
        e = substitute(e, old, tmp)
    for old, tmp in temps.items():
        e = substitute(e, tmp, mapping[old])
    return e


def merge_symmetric(sites) -> list:
    """One site for two sites of a param whose indices are the same up to a renaming of loops
    over the same domain (V[j, f[j2]] and V[j2, f[j]] with j, j2 both over X[i]; V[j] and
    V[j2] of a double sum over a row): renamed, the second's gradient is added to the first's.
    Each point of the renamed nest is a point of the original one, so every coordinate gets
    the same total, with one loop nest instead of two."""
    out = []
    for site in sites:
        for n, kept in enumerate(out):
            mapping = _loop_renaming(site.index, kept.index)
            if kept.param != site.param or mapping is None:
                continue
            grad = ir.Binary("+", kept.grad, _rename_loops(site.grad, mapping))
            penalty = kept.penalty
            if site.penalty is not None:
                renamed = _rename_loops(site.penalty, mapping)
                penalty = renamed if penalty is None else ir.Binary("+", penalty, renamed)
            out[n] = replace(kept, grad=grad, penalty=penalty)
            break
        else:
            out.append(site)
    return out


def _loop_renaming(index: tuple, target: tuple) -> dict | None:
    """A bijection of loop variables over equal domains taking `index` to `target`, if one
    does (the identity is left out: {} means the indices are equal), else None."""
    if len(index) != len(target):
        return None
    mapping = {}
    for a, b in zip(index, target):
        la, lb = ir.loop_of(a), ir.loop_of(b)
        if (la is None) != (lb is None):
            return None
        if la is not None:
            if not _same_domain(la, lb) or mapping.setdefault(la, lb) != lb:
                return None
        if ir.renamed_index(a, {la: lb} if la is not None else {}) != b:
            return None
    if len(set(mapping.values())) != len(mapping):
        return None
    return {a: b for a, b in mapping.items() if a != b} or None


def _order_nests(nests: list[Nest]) -> list[Nest] | None:
    """Order loop nests so that no nest reads a param an earlier nest wrote; None if impossible."""
    writes = [{s.param for s in n.sites} for n in nests]
    for n, w in zip(nests, writes):          # reads of a param this nest writes: same coordinate
        own = {s.access for s in n.sites}    # (and written once: a point's own write only)
        repeated = {s.param for s in n.sites if not _injective(s)}
        if any(r.name in w and (r not in own or r.name in repeated) for r in n.reads):
            return None
    remaining, ordered = list(range(len(nests))), []
    while remaining:
        for i in remaining:    # a nest may go next if no other remaining nest reads what it writes
            if not any(j != i and any(r.name in writes[i] for r in nests[j].reads)
                       for j in remaining):
                ordered.append(nests[i])
                remaining.remove(i)
                break
        else:
            return None
    return ordered


def _direct_tail(nests: list[Nest]) -> list[Nest]:
    """Of nests that cannot all run in order (see _order_nests), those that may run after the
    others have computed their gradients and before they add them: each writes distinct
    coordinates reading only its own, and together they order. The largest loops first:
    they would cost most to hold in scratch. -> them, in order."""
    chosen: list[Nest] = []
    for nest in sorted(nests, key=lambda n: -len(n.vars)):
        if all(_injective(s) for s in nest.sites) and \
                _order_nests(chosen + [nest]) is not None:
            chosen.append(nest)
    return _order_nests(chosen) or []


LOCAL_ARRAY_MAX = 1024     # doubles of a stack array (8 KiB)
SHORT_LOOP = 4    # const loops this short in a scatter run to a literal (Access.loop_header)


def _constant(size: str) -> int | None:
    """The value of a size made of integer literals and '*' (consts), else None."""
    if not re.fullmatch(r"[0-9 *()]+", size):
        return None
    return functools.reduce(lambda a, b: a * b, map(int, re.findall(r"[0-9]+", size)), 1)


def _fusible(ordered: list) -> list:
    """Consecutive nests with the same outer loop, neither reading a param the other
    writes, grouped to run in one loop (svm's and FM's updates of w[j] and V[j, f])."""
    groups: list[list] = []
    for nest in ordered:
        last = groups[-1] if groups else None
        if last and nest.vars and last[0].vars and nest.vars[0] == last[0].vars[0] and \
                all(_independent(nest, other) for other in last):
            last.append(nest)
        else:
            groups.append([nest])
    return groups


def _independent(a: Nest, b: Nest) -> bool:
    writes_a, writes_b = {s.param for s in a.sites}, {s.param for s in b.sites}
    return not (writes_a & {r.name for r in b.reads} or writes_b & {r.name for r in a.reads}
                or writes_a & writes_b)


@dataclass(frozen=True)
class RowReg:
    """A reg line's target whose per-term shares add up, over every term of the block, to
    the reg of each touched row once: deg(c) terms touch row c and each takes 1/deg(c) of
    it (the degree split; deg an exact count of touches, not an expectation over draws).
    The exact objective sums it so, by rows of the param, in O(param size) rather than
    O(touches) (svm: the objective pass 1.6x slower with the shares than without). All C
    expressions on the kernel's struct M."""
    param: str           # the param's values (M.w_)
    kind: str            # l1 | l2
    lam: str             # its weight, a C literal
    rows: str            # the rows of the param
    length: str          # values per row
    inv_deg: str         # 1/deg per row (0: no term touches it)


def row_reg(spec: ir.Spec, block: ir.Block, reg: ir.RegTerm) -> RowReg | None:
    """The RowReg of `reg`, where its per-term share is exactly the degree split of a whole
    row: lam * pen(P[c, k...]) / deg(c) summed over the row's trailing dims (and over the
    sparse row's columns c for a w[X[i]] target), deg(c) counting the terms that touch row c
    (DegSpec kinds var, support, indirect). None for anything else (unscaled, deferred,
    a part of a row, a degree shared by several targets or counted over draws)."""
    if reg.unscaled or reg.deferred is not None:
        return None
    e, binders = reg.expr, []
    while isinstance(e, ir.Sum):
        binders.append(e.var)
        e = e.body
    if not (isinstance(e, ir.Binary) and e.op == "/" and isinstance(e.right, ir.Deg)
            and len(e.right.index) == 1):
        return None
    deg = next((d for d in block.degs if d.name == e.right.name), None)
    p = spec.param(reg.param)
    if deg is None or deg.kind not in ("var", "support", "indirect") or not p.dims or \
            deg.dim != p.dims[0]:
        return None
    v = e.right.index[0]
    ks = binders[1:] if binders and binders[0] == v else binders
    if v.kind == "sparse" and binders[:1] != [v] or v.kind in ("dense", "draw") or \
            [k.kind for k in ks] != ["dense"] * len(ks) or \
            tuple(k.dim for k in ks) != tuple(p.dims[1:]):
        return None
    c = ir.ParamAt(p.name, (v,) + tuple(ks))
    pen = ir.Binary("^", c, ir.Const(2.0)) if reg.kind == "l2" else ir.Func("abs", (c,))
    if e.left != ir.Binary("*", ir.Const(reg.lam), pen):
        return None
    a = Access(spec, block)

    def on_m(text: str) -> str:
        return text if text.isdigit() else f"M.{text}"
    length = " * ".join(on_m(a.extent(d)) for d in p.dims[1:]) or "1"
    return RowReg(f"M.{c_value(p.name)}", reg.kind, _fmt(reg.lam), on_m(a.extent(p.dims[0])),
                  length, f"M.{c_deg(deg.name)}")


@dataclass
class Function:
    name: str
    signature: str
    decls: dict
    body: list
    scratch: str          # doubles of per-thread scratch it needs (C expression)
    returns: str = "void"


def _term_vars(a: Access, block: ir.Block) -> list[str]:
    if block.kind == "rows":
        return [f"_t_{block.vars[0].name} = t"]
    u, v = block.vars
    return [f"_t_{u.name} = {c_csr(block.over, 'rows')}[t]",
            f"_t_{v.name} = {c_csr(block.over, 'indices')}[t]"]


class BlockLowering:
    def __init__(self, spec: ir.Spec, bg: BlockGrad, real: str = "double"):
        self.spec, self.bg, self.block = spec, bg, bg.block
        self.real = real          # the params' C type (STORAGE): a hot update's replicas too
        self.sites = merge_symmetric(update_sites(bg.block))
        written = [s.param for s in self.sites]
        # a coordinate written twice in one update (two sites, or one site whose index
        # repeats over its loops) is written as an increment of its current value
        self.aliased = {p for p in written if written.count(p) > 1} | \
            {s.param for s in self.sites if not _injective(s)}

    def start(self, names: Names, exprs, hot: frozenset = frozenset()) -> tuple[Access, list]:
        """The term's indices, and the index data and draws that `exprs` read at them."""
        a = Access(self.spec, self.block, hot, self.real)
        lines = []
        for v in self.block.vars:
            names.var(f"_t_{v.name}", "int64_t")
        lines += ["    " + s for s in _term_vars(a, self.block)]
        lines += ["    " + s for s in a.per_term_loads(exprs, names)]
        return a, lines

    # ---------------- loss and predict
    def row_regs(self) -> list[tuple[ir.RegTerm, RowReg]]:
        """(RegTerm, RowReg) of each of the block's regs whose shares, summed over every
        term, are the reg of each row some term touches (RowReg)."""
        found = [(r, row_reg(self.spec, self.block, r)) for r in self.block.regs]
        return [(r, rr) for r, rr in found if rr is not None]

    def loss_terms(self) -> Function | None:
        """The term's objective less its row regs (summed by rows in the exact objective:
        RowReg); None where the block has none (the loss serves)."""
        rows = {id(r) for r, _ in self.row_regs()}
        if not rows:
            return None
        kept = [e for e, _ in self.block.losses] + \
            [r.expr for r in self.block.regs if r.deferred is None and id(r) not in rows]
        value = ir.add_all(kept)
        return self.value_function(f"_loss_terms_b{self.block.index}",
                                   canonical(value) if value is not None else ir.Const(0.0))

    def loss(self) -> Function:
        """The term's objective, less the shares of deferred regs (the same for every term:
        `shares` computes them once per objective)."""
        kept = [e for e, _ in self.block.losses] + \
            [r.expr for r in self.block.regs if r.deferred is None]
        return self.value_function(f"_loss_b{self.block.index}", canonical(ir.add_all(kept)))

    def shares(self) -> Function | None:
        """Each term's share of the block's deferred regs (ir.Deferred): term-independent,
        O(size of the param), so computed once per objective rather than once per term."""
        deferred = [r.expr for r in self.block.regs if r.deferred is not None]
        if not deferred:
            return None
        return self.value_function(f"_shares_b{self.block.index}",
                                   canonical(ir.add_all(deferred)))

    def value_function(self, name: str, value: ir.Expr) -> Function:
        value = fold_forward_diagonals(value)
        names = Names()
        a, lines = self.start(names, [value])
        em = Emitter(a, names, lines, [value])
        em.fuse([value])
        em.emit(f"return {em.value(value)}")
        return Function(name, "(const _Model* M, int64_t t)", dict(names.decls), lines, "0",
                        "double")

    def deferred(self) -> Function | None:
        """The rest of the block's deferred regs (ir.Deferred) after an epoch that ran
        `fraction` of its terms: each coordinate c gets, at once, the l2 steps of the terms
        that did not read it, about nterms * fraction * (1 - touches(c) / nterms) of them,
        each a factor 1 - 2 * rate * LAMBDA / deg for l2 (rate: the step, or under adagrad
        c's own step once c has had a gradient: at G = 0 AdaGrad's step is step / 1e-4; deg: the block's terms, 1 where unscaled), for l1 a clipped
        cumulative penalty step (l1_step) owing rate * LAMBDA / deg for each. With one term
        this is exactly the step the term's whole share would take (the fuzz checks)."""
        regs = [r for r in self.block.regs if r.deferred is not None]
        if not regs:
            return None
        names = Names()
        for name, ctype in (("_k", "int64_t"), ("_terms", "double"), ("_e", "double"),
                            ("_rate", "double"), ("_f", "double"), ("_z", "double"),
                            ("_new", "double")):
            names.var(name, ctype)
        lines = [f"    _terms = {c_nterms(self.block.index)} * fraction"]
        for r in regs:
            param = self.spec.param(r.param)
            value, acc = c_value(param.name), c_acc(param.name)
            scale = f" * {c_deg(r.deferred.all)}" if not r.unscaled else ""
            lines.append(f"    for _k in range({c_dim(param.dims[0])}):")
            lines.append("        _e = _terms")
            if r.deferred.touch is not None:
                touch = c_deg(r.deferred.touch)
                lines += [f"        if {touch}[_k] > 0.0:",
                          f"            _e = _terms * (1.0 - {c_deg(r.deferred.all)} / "
                          f"{touch}[_k])",
                          "            if _e < 0.0:",
                          "                _e = 0.0"]
            lines += ["        _rate = step",
                      f"        if {c_optimizer()} != 0 and {acc}[_k] > 0.0:",
                      f"            _rate = step / sqrt({acc}[_k] + 1e-8)"]
            if r.kind == "l2":
                lines += [f"        _f = 1.0 - 2.0 * {_fmt(r.lam)} * _rate{scale}",
                          "        if _f < 0.0:",
                          "            _f = 0.0",
                          f"        {value}[_k] = {value}[_k] * pow(_f, _e)"]
                continue
            u, q = c_l1(param.name, "u"), c_l1(param.name, "q")    # as l1_step, with z = c
            lines += [f"        {u}[_k] = {u}[_k] + _e * _rate * {_fmt(r.lam)}{scale}",
                      f"        _z = {value}[_k]",
                      "        _new = _z",
                      "        if _z > 0.0:",
                      f"            _new = fmax(0.0, _z - ({u}[_k] + {q}[_k]))",
                      "        elif _z < 0.0:",
                      f"            _new = fmin(0.0, _z + ({u}[_k] - {q}[_k]))",
                      f"        {q}[_k] = {q}[_k] + (_new - _z)",
                      f"        {value}[_k] = _new"]
        return Function(f"_deferred_b{self.block.index}",
                        "(const _Model* M, double step, double fraction)", dict(names.decls),
                        lines, "0")

    def predict(self) -> Function | None:
        if self.bg.predict is None:
            return None
        predict = fold_forward_diagonals(self.bg.predict)
        names = Names()
        a, lines = self.start(names, [predict])
        em = Emitter(a, names, lines, [predict])
        var = self.block.predict_var
        if var is not None:      # a vector per term, written to _out[0 .. its extent)
            em.fuse([predict])
            em.hoist_invariants(predict, var)
            em.open_loop(var)
            em.emit(f"_out[{a.index(var)}] = {em.value(predict)}")
            em.close_loop()
            return Function(f"_predict_b{self.block.index}",
                            "(const _Model* M, int64_t t, double* _out)",
                            dict(names.decls), lines, "0", "void")
        em.fuse([predict])
        em.emit(f"return {em.value(predict)}")
        return Function(f"_predict_b{self.block.index}", "(const _Model* M, int64_t t)",
                        dict(names.decls), lines, "0", "double")

    # ---------------- update
    def update(self, atomic: bool, adaptive: bool = False,
               hot: frozenset = frozenset(), by_row: bool = False) -> Function:
        """The update of one term: racy writes or atomic adds; plain SGD steps, or (adaptive)
        AdaGrad's steps, per coordinate or per row as the kernel's `_optimizer` says (two
        functions rather than a test per coordinate: a branch in the scatter loops keeps the
        compiler from vectorising them; mc's rank loop ran 1.7x slower); or (hot: replicated
        params) plain SGD writes where the hot rows of `hot` are this thread's replicas."""
        self.adaptive = adaptive
        self.row_rule = adaptive and by_row     # adagrad_row (else adagrad) when adaptive
        self.folded = {}
        self.into, self.sums = {}, {}       # see absorb
        self.row_roots = {}                 # see row_root_depths
        self.sum_in_compute = False         # adagrad_row's g^2 summed by the compute pass
        names = Names()
        sites = [site if adaptive else   # AdaGrad needs g itself; sgd only step * g
                 replace(site, grad=scaled_by_step(site.grad, _sorted_nest(site.index)))
                 for site in self.sites]
        memo = {}
        sites = [_site_map(s, lambda e: fold_forward_diagonals(e, memo)) for s in sites]
        exprs = [s.grad for s in sites] + [s.penalty for s in sites if s.penalty]
        a, lines = self.start(names, [self.bg.objective] + exprs, hot)
        em = Emitter(a, names, lines, exprs)
        nests: dict[tuple, Nest] = {}
        hoisted, stored = [], []
        for site in sites:
            vars_ = _sorted_nest(site.index)
            nest = nests.setdefault(vars_, Nest(vars_))
            nest.sites.append(site)
            for e in (site.grad, site.penalty):
                if e is not None:
                    _variant_parts(e, frozenset(vars_), hoisted, stored, nest.reads)
        scratch_parts: list[str] = []
        scratch_at = "0"

        def take(size: str, ctype: str = "double") -> str:
            """Room for `size` values of `ctype` (double; the storage type for gradients
            buffered in the scatter): a local C array when the size is a small constant
            (nothing can alias it, so the compiler keeps and vectorises it), else the
            per-thread scratch (counted in doubles: a float buffer uses part of its room)."""
            constant = _constant(size)
            if constant is not None and constant <= LOCAL_ARRAY_MAX:
                return names.new("buf", f"{ctype}[{constant}]")
            nonlocal scratch_at
            name = names.new("buf", f"{ctype}*")
            at = f"scratch + {scratch_at}"
            em.emit(f"{name} = {at}" if ctype == "double" else f"{name} = <{ctype}*>({at})")
            scratch_parts.append(size)
            scratch_at = " + ".join(f"({p})" for p in scratch_parts)
            return name
        em.take = take

        vectors = self.partial_invariants(nests)
        hoisted, stored = list(dict.fromkeys(hoisted)), list(dict.fromkeys(stored))
        em.emit("# gather: values every update below needs, computed once at the old point")
        em.row_passes(stored + hoisted + [v for v, _ in vectors], take)
        for body, loops in _extreme_bodies(exprs):
            if body not in em.stored:
                em.store(body, loops, take)
        for s in stored:                   # other sums varying with a loop index -> scratch
            if s not in em.stored:
                em.store(s, tuple(_order_vars(free_loop_vars(s))), take)
        for f, loops in _shared_vectors(hoisted, vectors):
            em.store(f, loops, take)
        em.fuse(hoisted)
        for h in hoisted:
            em.hoist(h)
        for v, loops in vectors:
            em.store(v, loops, take)
        ordered = _order_nests(list(nests.values()))
        # AdaGrad's steps (a square root and a division per coordinate) vectorise only in
        # loops over few arrays: one pass computes the gradients, then one loop per
        # coordinate set writes them (bpr's adagrad update: 2.2x faster than one loop)
        merged = self.merged(list(nests.values()))
        split = adaptive and not merged and any(len(n.sites) > 1 for n in nests.values())
        if split or merged:
            ordered = None
        if ordered is not None:
            em.emit("# scatter: each coordinate's gradient from old values, then the write")
            for group in _fusible(ordered):
                self.row_sums(em, group, atomic)
                if len(group) > 1:        # siblings over one outer loop: one pass
                    em.open_loop(group[0].vars[0])
                for nest in group:
                    self.nest(em, nest, atomic, mode="fused", opened=len(group) > 1)
                if len(group) > 1:
                    em.close_loop()
        else:
            em.emit("# scatter, buffered: every gradient is computed first (a loop may read")
            em.emit("# what another wrote), then each coordinate set is written in a loop")
            buffers = {}
            self.folded = {} if split else self.fold_diagonals(nests)
            # split: every nest is held, so the compute pass sums the rows' g^2 (no pass
            # of its own) and the sums are complete before the first write
            self.sum_in_compute = split and self.row_rule
            direct = [] if split else \
                _direct_tail([n for n in nests.values() if n not in merged])
            held = [n for n in nests.values() if n not in direct]
            if not split:
                self.absorb(em, held, direct, take)
            for nest in held:
                if any((nest.vars, n) not in self.into for n in range(len(nest.sites))):
                    buffers[nest.vars] = take(f"{size_of(a, nest.vars)} * {len(nest.sites)}",
                                              self.real)
                self.nest(em, nest, atomic, mode="compute", buffer=buffers.get(nest.vars))
            if not self.sum_in_compute:     # after the compute: a direct nest's row sums
                self.row_sums(em, list(nests.values()), atomic)     # take what it absorbed
            if direct:
                em.emit("# the nests no other reads: computed and written at once")
            for group in _fusible(direct):
                if len(group) > 1:
                    em.open_loop(group[0].vars[0])
                for nest in group:
                    self.nest(em, nest, atomic, mode="fused", opened=len(group) > 1)
                if len(group) > 1:
                    em.close_loop()
            for nest in held:          # one loop per coordinate set (few arrays: vectorises)
                for n, site in enumerate(nest.sites):
                    if (nest.vars, n) in self.into:       # added by a direct nest (absorb)
                        continue
                    self.nest(em, Nest(nest.vars, [site]), atomic, mode="apply",
                              buffer=buffers[nest.vars], first=n)
        self.project(em, take)
        if hot:
            text = "\n".join(lines)
            maps = [c_hot(p) for p in sorted(hot) if c_hot(p) in text]
            for m in reversed(maps):
                names.var(m, "const int32_t*")
                lines.insert(0, f"    {m} = M.{m}")
            return Function(f"_update_b{self.block.index}_hot",
                            "(const _Model* M, int64_t t, double step, double* scratch, "
                            f"{self.real}* own)", dict(names.decls), lines, scratch_at)
        suffix = ("atomic" if atomic else "plain") + ("_adaptive" if adaptive else "") + \
            ("_row" if self.row_rule else "")
        return Function(f"_update_b{self.block.index}_{suffix}",
                        "(const _Model* M, int64_t t, double step, double* scratch)",
                        dict(names.decls), lines, scratch_at)

    def update_hot(self, hot: frozenset) -> Function | None:
        """The hogwild update on per-thread replicas of the hot rows of `hot`; None where
        the block touches none of them (its plain update serves)."""
        if self.bg.objective is None or not ir.params_of(self.bg.objective) & hot:
            return None
        return self.update(False, hot=hot)

    def partial_invariants(self, nests: dict) -> list:
        """Loop-invariant code motion inside each nest by dependence sets: a subtree that
        depends on an outer prefix of the nest's loops is computed at that loop's level;
        one that depends on an inner loop only (softmax's exp(z[c]) / S - Y[i, c] in the
        nest over (nonzero j, class c)) becomes a vector over those loops in scratch,
        computed once per term. -> the vectors, as (subtree, loops)."""
        vectors = []
        for nest in nests.values():
            for site in nest.sites:
                for n in _partial_invariants(site.grad, nest.vars):
                    loops = tuple(v for v in nest.vars if v in free_loop_vars(n))
                    if loops == nest.vars[:len(loops)]:
                        nest.levels.setdefault(len(loops), []).append(n)
                    else:
                        vectors.append((n, loops))
        return list(dict.fromkeys(vectors))

    def row_sums(self, em: Emitter, nests: list, atomic: bool):
        """adagrad_row (LIBMF's rule): before the nests write, each row of a 2-D param they
        touch gains the mean of g^2 over the row in its accumulator, so that the step of every
        coordinate of the row uses the updated sum. The gradients are computed here once more
        (at the same old point: these nests read nothing they or a sibling write)."""
        rows = [n for n in nests if any(self.by_row(s) for s in n.sites)]
        if not rows or not self.row_rule:
            return
        em.emit("# adagrad_row: the rows' sums of g^2 first")
        em.scopes.append({})            # nothing computed here is reused after it
        for nest in rows:
            self.nest(em, nest, atomic, mode="rows")
        em.scopes.pop()

    def by_row(self, site: SiteGrad) -> bool:
        """Does adagrad_row keep one accumulator per row (last-dim vector) for this site's
        param (2-D or 3-D)?"""
        return len(self.spec.param(site.param).dims) >= 2

    def row_cell(self, a: Access, site: SiteGrad) -> str:
        """adagrad_row's accumulator of the row a site's coordinate lies in."""
        p = self.spec.param(site.param)
        return f"{c_acc(p.name)}[{a.flat(p.dims[:-1], site.index[:-1])}]"

    def nest(self, em: Emitter, nest: Nest, atomic: bool, mode: str, buffer: str | None = None,
             opened: bool = False, first: int = 0):
        """One nest's gradients and writes; `opened`: its outer loop is already open (fused
        with a sibling). mode: "fused" (compute and write), "compute" / "apply" (into / from
        `buffer`, site-major: the gradients of site `first + n` of the nest are contiguous),
        "rows" (adagrad_row's sums of g^2 per row, no write; under `sum_in_compute` the
        "compute" mode sums them). The gradients and writes run in the storage type's
        arithmetic (adagrad_row's sums in double)."""
        em.writing = True
        with em.arithmetic("double" if mode == "rows" else self.real):
            self._nest(em, nest, atomic, mode, buffer, opened, first)
        em.writing = False

    def _nest(self, em: Emitter, nest: Nest, atomic: bool, mode: str, buffer: str | None,
              opened: bool, first: int):
        a = em.a
        if not opened and self.triangular(nest, mode):
            self.triangle(em, nest, atomic, mode, buffer, first)
            return
        rows = self.row_root_depths(nest, opened)
        sums = {}           # mode "rows": site -> the local summing g^2 over its row
        self.row_locals(em, rows.get(0, ()), mode, sums)
        for depth, v in enumerate(nest.vars, 1):
            if not (opened and depth == 1):
                em.open_loop(v)
            if mode != "apply":
                for n in dict.fromkeys(nest.levels.get(depth, ())):
                    em.hoist(n)
            self.row_locals(em, rows.get(depth, ()), mode, sums)
        olds = {}
        if mode != "apply":     # old values into locals: read once, before any write
            for site in nest.sites:     # (a value the gather read is the old one)
                if site.access not in olds:
                    olds[site.access] = em.lookup(site.access) or \
                        em.temp(site.access, a.leaf(site.access), "o")
        grads = []
        for n, site in enumerate(nest.sites, first):
            slot = f"{buffer}[{n} * ({size_of(a, nest.vars)}) + {offset(a, nest.vars)}]" \
                if buffer else None
            if mode == "apply":       # into a local: adapt() rescales it in place
                g = em.names.new("g", em.real)
                em.emit(f"{g} = {em.typed(slot, self.real)}")
                grads.append(g)
                continue
            if mode == "rows":
                if (nest.vars, n) in self.into:     # its g is part of a direct nest's
                    continue
                g2 = em.value(site.grad)
                if (nest.vars, n) in self.sums:
                    g2 = f"({g2} + {self.absorbed(em, nest.vars, n)})"
                self.add_g2(em, site, g2, sums, atomic)
                continue
            text = em.value(site.grad)
            g = em.names.new("g", em.real)
            em.emit(f"{g} = {text}" + (f"   # d/d{site.access}" if mode != "compute" else ""))
            if mode == "compute" and self.sum_in_compute:
                self.add_g2(em, site, g, sums, atomic)
            if mode == "compute":
                self.hold(em, nest.vars, n, site, g, slot)
            elif (nest.vars, n) in self.sums:     # what held sites gave its coordinate
                em.emit(f"{g} = {g} + {self.absorbed(em, nest.vars, n)}")
            grads.append(g)
        if mode in ("fused", "apply"):
            for site, g in zip(nest.sites, grads):
                self.write(em, site, g, atomic, olds.get(site.access))
        last = 1 if opened else 0       # with `opened`, the caller closes the outer loop
        for depth in range(len(nest.vars), last, -1):
            self.add_row_sums(em, rows.get(depth, ()), sums, atomic)
            em.close_loop()
        self.add_row_sums(em, rows.get(last, ()), sums, atomic)
        self.row_roots.clear()

    def row_root_depths(self, nest: Nest, opened: bool) -> dict:
        """adagrad_row: the sites of the nest whose row accumulator is fixed by its loops, by
        the depth where their row is fixed (0: before the loops; at least 1 where the outer
        loop is `opened` by the caller). There the row's 1 / sqrt(G_row + 1e-8) is taken
        once for its writes, and its g^2 summed in a local added to G_row once: per coordinate,
        gcc can neither hoist the read nor keep the sum in a register (the params written
        in the row loop may alias the accumulators); mc's adagrad_row epochs ran a sqrt
        per coordinate."""
        depths = {}
        for site in nest.sites if self.row_rule else ():
            if not self.by_row(site):
                continue
            loops = {ir.loop_of(v) for v in site.index[:-1] if not v.per_term}
            if not loops <= set(nest.vars):
                continue        # fixed by a loop outside this nest: per coordinate
            depth = max((nest.vars.index(v) + 1 for v in loops), default=0)
            depths.setdefault(max(depth, 1 if opened else 0), []).append(site)
        return depths

    def row_locals(self, em: Emitter, sites, mode: str, sums: dict):
        """At a row's depth (row_root_depths): mode "rows", a zeroed local for its sum of
        g^2; modes "fused" and "apply", the local 1 / sqrt(G_row + 1e-8) its writes scale by."""
        if mode == "rows" or (mode == "compute" and self.sum_in_compute):
            for site in sites:
                sums[site] = em.names.new("q", "double")
                em.emit(f"{sums[site]} = 0.0")
            return
        if mode not in ("fused", "apply"):
            return
        sqrt = "sqrtf" if em.real == "float" else "sqrt"
        for site in sites:
            row = self.row_cell(em.a, site)
            if row not in self.row_roots:
                root = em.names.new("rt", em.real)
                em.emit(f"{root} = {em.typed('1.0')} / {sqrt}({row} + {em.typed('1e-8')})")
                self.row_roots[row] = root

    def add_g2(self, em: Emitter, site: SiteGrad, g: str, sums: dict, atomic: bool):
        """adagrad_row: a site's g^2 into its row's local sum (row_locals), or where its row
        is not fixed by the nest's loops, g^2 / (row length) straight into G_row."""
        if site in sums:
            em.emit(f"{sums[site]} = {sums[site]} + _hw_sq({g})")
        elif self.by_row(site):
            row = self.row_cell(em.a, site)
            add = f"_hw_sq({g}) / {em.a.extent(self.spec.param(site.param).dims[-1])}"
            em.emit(f"_hw_atomic_add(&{row}, {add})" if atomic else f"{row} = {row} + {add}")

    def add_row_sums(self, em: Emitter, sites, sums: dict, atomic: bool):
        """Where a row's loops end: G_row += (its sum of g^2) / (the row's length)."""
        for site in sites:
            if site in sums:
                row = self.row_cell(em.a, site)
                add = f"{sums[site]} / {em.a.extent(self.spec.param(site.param).dims[-1])}"
                em.emit(f"_hw_atomic_add(&{row}, {add})" if atomic else
                        f"{row} = {row} + {add}")

    def plain_increment(self, site: SiteGrad) -> bool:
        """Whether the site's writes are plain increments p -= step * g (no l1 step, clip or
        AdaGrad scaling), so that two of its gradients may be added before one write."""
        return not self.adaptive and site.penalty is None and \
            self.spec.param(site.param).constraint is None

    def absorbed(self, em: Emitter, vars_: tuple, n: int) -> str:
        """The held gradients site n of the direct nest over vars_ absorbed, at its point."""
        return em.typed(f"{self.sums[vars_, n]}[{offset(em.a, vars_)}]")

    def merged(self, nests: list) -> list:
        """Nests with a site whose every coordinate another nest writes too, through an
        injective site of the same param whose write is no plain increment (AdaGrad, an l1
        step, a clip): API.md's rules step a coordinate once on the term's whole gradient
        (softmax's W[j, y[i]] within W[j, class] under adagrad: G must gain (p - 1)^2 x^2,
        not p^2 x^2 + x^2), so these are held and absorbed (absorb) into that nest's write."""
        return [nest for nest in nests if any(
            s.penalty is None and t.param == s.param and not self.plain_increment(t) and
            _injective(t) and _covers(t, d.vars, s)
            for s in nest.sites for d in nests if d is not nest for t in d.sites)]

    def absorb(self, em: Emitter, held: list, direct: list, take):
        """Held sites whose coordinates a direct nest writes too (FFM's pairs V[j, f[j2]]
        within the reg's V[j, field, k] over the same row): their gradients are summed, in
        the compute pass, into a zeroed scratch array over the direct nest's points, which
        the direct nest adds to its own gradient before its write. Each such coordinate is
        read once and written once, and the held sites need no pass of their own; two
        points that give one coordinate (two nonzeros of one field) add up in scratch, in
        every sync mode. Sets self.into: (held vars, site number) -> (array, direct site,
        its vars) and self.sums: (direct vars, site number) -> array."""
        for nest in held:
            for n, s in enumerate(nest.sites):
                if s.penalty is not None:       # its own l1 step is its own write
                    continue
                for d in direct:
                    m = next((m for m, t in enumerate(d.sites) if t.param == s.param and
                              _covers(t, d.vars, s)), None)
                    if m is None:
                        continue
                    if (d.vars, m) not in self.sums:
                        self.sums[d.vars, m] = take(size_of(em.a, d.vars))
                        self.zero_used(em, self.sums[d.vars, m], d.vars)
                    self.into[nest.vars, n] = (self.sums[d.vars, m], d.sites[m], d.vars)
                    break

    def zero_used(self, em: Emitter, array: str, vars_: tuple):
        """Zero the part of a scratch array over `vars_` (row-major) that this term uses: one
        flat loop, over the term's row only where the outer loop is a sparse row's."""
        a, v = em.a, vars_[0]
        count = size_of(a, vars_)
        if v.kind == "sparse":
            end = f"{c_csr(v.source[0], 'indptr')}[{a.index(v.at)} + 1]"
            count = f"({end} - {a.row_start(v)}) * {size_of(a, vars_[1:])}"
        z = em.names.new("z", "int64_t")
        em.emit(f"for {z} in range({count}):")
        em.emit(f"    {array}[{z}] = 0.0")

    def hold(self, em: Emitter, square: tuple, n: int, site: SiteGrad, g: str, slot: str):
        """Keep a held site's gradient g (site number n of the nest over `square`, at its
        point): in its slot, or added into a direct nest's array (absorb)."""
        if (square, n) not in self.into:
            em.emit(f"{slot} = {g}")
            return
        array, target, vars_ = self.into[square, n]
        where = dict(zip(target.index, site.index))
        text = ""
        for v in vars_:     # the direct nest's point holding the site's coordinate
            e = where[v]
            pos = em.a.position(e) if v.kind == "sparse" else em.a.index(e)
            text = pos if not text else f"({text}) * {em.a.var_extent(v)} + {pos}"
        em.emit(f"{array}[{text}] = {array}[{text}] + {g}")

    def fold_diagonals(self, nests: dict) -> dict:
        """Sites that write the diagonal of a held triangular nest: a site D of nest (j, ...)
        whose coordinate is that of a site S of nest (j, j2, ...) at j2 = j (FFM's
        V[j, f[j]] of the spelling (pairs - diag) / 2 and the pairs' V[j, f[j2]]). D's
        gradient joins S's at the diagonal point and D's own nest goes, where increments
        commute (see triangular); where the sum is 0 (the diagonals cancel), the triangle
        skips its diagonal altogether. -> S's access -> D's gradient, or ZERO_SUM. Removes
        the folded sites from `nests`."""
        folded = {}
        for nest in list(nests.values()):
            if not (self.triangular(nest, "compute") and self.triangular(nest, "apply")):
                continue
            j, j2, rest = nest.vars[0], nest.vars[1], nest.vars[2:]
            for s in nest.sites:
                if s.penalty is not None or s.access in folded:
                    continue
                at = _site_map(s, lambda e: substitute(e, j2, j))
                inner = nests.get((j,) + rest)
                d = next((d for d in inner.sites if d.access == at.access and
                          d.penalty is None), None) if inner is not None else None
                if d is None:
                    continue
                folded[s.access] = ZERO_SUM if _is_zero(ir.Binary("+", at.grad, d.grad)) \
                    else d.grad
                inner.sites.remove(d)
                if not inner.sites:
                    del nests[inner.vars]
        return folded

    def triangular(self, nest: Nest, mode: str) -> bool:
        """Whether a held nest may run over the triangle of its two outer loops (see
        triangle): both loops over one domain; its gradients into scratch ("compute": any
        order), or added from there ("apply": increments commute where no clip, l1 step or
        AdaGrad sum sees them one by one)."""
        if len(nest.vars) < 2 or not _same_domain(nest.vars[0], nest.vars[1]):
            return False
        if mode == "compute":
            return True
        return mode == "apply" and not self.adaptive and all(
            s.penalty is None and self.spec.param(s.param).constraint is None
            for s in nest.sites)

    def triangle(self, em: Emitter, nest: Nest, atomic: bool, mode: str, buffer: str,
                 first: int):
        """A held nest over two loops j, j2 of one domain, run over the triangle j <= j2
        (FFM's pairs V[j, f[j2]]): at j2 = j the diagonal, at each j2 > j both the point
        (j, j2) and its mirror (j2, j), which share their index loads and their symmetric
        factors. Every point of the square is visited once: the same scratch, the same
        gradients, half the passes over the row."""
        j, j2, rest = nest.vars[0], nest.vars[1], nest.vars[2:]
        mirror = {j: j2, j2: j}
        numbered = list(enumerate(nest.sites, first))
        em.open_loop(j)
        diagonal = []
        for n, s in numbered:       # a folded site's gradient joins its diagonal (fold_diagonals)
            at = _site_map(s, lambda e: substitute(e, j2, j))
            extra = self.folded.get(s.access)
            if extra is not None:
                at = None if extra is ZERO_SUM else replace(at, grad=ir.Binary("+", at.grad, extra))
            if at is not None:
                diagonal.append((n, at))
        self.points(em, diagonal, nest.vars, (j, j) + rest, mode, buffer, atomic)
        em.open_loop(j2, after=j)
        self.points(em, numbered, nest.vars, nest.vars, mode, buffer, atomic)
        swapped = [(n, _site_map(s, lambda e: _rename_loops(e, mirror))) for n, s in numbered]
        self.points(em, swapped, nest.vars, (j2, j) + rest, mode, buffer, atomic)
        em.close_loop()
        em.close_loop()

    def points(self, em: Emitter, sites: list, square: tuple, at: tuple, mode: str,
               buffer: str, atomic: bool):
        """The sites' gradients (with their slot numbers) at the point `at` of a held square
        nest (its loops after the two open ones still to run) into, or from, their scratch
        slots; each subtree that depends on the open loops only is computed before the inner
        loops."""
        if not sites:
            return
        a, rest = em.a, square[2:]
        if mode == "compute":
            for _, site in sites:
                for n in _partial_invariants(site.grad, tuple(em.open_vars) + rest):
                    if free_loop_vars(n) <= set(em.open_vars):
                        em.hoist(n)
        for v in rest:
            em.open_loop(v)
        for n, site in sites:
            slot = f"{buffer}[{n} * ({size_of(a, square)}) + {offset(a, at)}]"
            g = em.names.new("g", em.real)
            if mode == "compute":
                em.emit(f"{g} = {em.value(site.grad)}")
                if self.sum_in_compute:     # adagrad_row: this point's g^2 into its row
                    self.add_g2(em, site, g, {}, atomic)
                self.hold(em, square, n, site, g, slot)
            else:
                em.emit(f"{g} = {em.typed(slot)}")
                self.write(em, site, g, atomic, None)
        for _ in rest:
            em.close_loop()

    def write(self, em: Emitter, site: SiteGrad, g: str, atomic: bool, old: str | None):
        """p -= step * g for one coordinate (its old value in `old` when already read; in an
        sgd update, g already holds step * g: scaled_by_step). Where another site of the term
        may write the same coordinate (x[u] and x[v] with u == v), the write is an increment
        of the current value, so both steps add up."""
        target = em.a.leaf(site.access)
        if old is None or site.param in self.aliased:
            old = em.names.new("o", em.real)
            em.emit(f"{old} = {target}")
        weight = None
        if site.penalty is not None:      # reg l1: its weight here, LAMBDA / deg(c)
            weight = em.names.new("w")
            em.emit(f"{weight} = {em.value(site.penalty)}")
        self.adapt(em, site, g, weight, atomic)
        move = f"{em.typed('step')} * {g}" if self.adaptive else g
        con = self.spec.param(site.param).constraint
        clip = _clip(con)
        if weight is not None:
            new = self.l1_step(em, site, move, weight, old, atomic, con if clip else None)
            em.emit(f"_hw_atomic_add(&{target}, {new} - {old})" if atomic else f"{target} = {new}")
            return
        if atomic:
            em.emit(f"_hw_atomic_add(&{target}, -({move}))")
            if clip:
                em.emit(f"{target} = {clip.format(x=target)}")
        elif clip:
            em.emit(f"{target} = {clip.format(x=f'{old} - {move}')}")
        else:
            em.emit(f"{target} = {old} - {move}")

    def l1_step(self, em: Emitter, site: SiteGrad, move: str, weight: str, old: str,
                atomic: bool, con: ir.Constraint | None) -> str:
        """The clipped cumulative penalty (Tsuruoka, Tsujii and Ananiadou, ACL 2009), per
        coordinate: after the step on the smooth part, z = old - move, the coordinate owes
        u (every step * weight of its touches so far) and has been given q (signed); it moves
        toward 0 by what it still owes, never across 0: z > 0: max(0, z - (u + q)); z < 0:
        min(0, z + (u - q)); then q gains the move. Under a lower bound or a box (`con`),
        q gains the part of the move that the bound lets stand, the move clipped to
        [min(lo, z), max(hi, z)]: a bound between z and 0 (lo > 0, hi < 0) stops the move
        and what it held back is still owed; a bound that z overshot only takes the value
        further the way the penalty went, so the whole move counts, as unbounded (a
        non-negative lasso keeps its exact zeros by it: counting only what is left after
        the clip left tiny non-zeros). Returns the new value's temporary, clipped.
        """
        p = self.spec.param(site.param)
        a = em.a
        u_cell = a.element(p.name, p.dims, site.access.index, c_l1(p.name, "u"))
        q_cell = a.element(p.name, p.dims, site.access.index, c_l1(p.name, "q"))
        z, u, new = em.names.new("z"), em.names.new("u"), em.names.new("new")
        em.emit(f"{z} = {old} - {move}")
        em.emit(f"{u} = " + (f"_hw_atomic_add_fetch(&{u_cell}, step * {weight})" if atomic
                             else f"_hw_add_fetch(&{u_cell}, step * {weight})"))
        em.emit(f"{new} = {z}")
        em.emit(f"if {z} > 0.0:")
        em.emit(f"    {new} = fmax(0.0, {z} - ({u} + {q_cell}))")
        em.emit(f"elif {z} < 0.0:")
        em.emit(f"    {new} = fmin(0.0, {z} + ({u} - {q_cell}))")
        kept = new
        if con is not None:     # a lower bound or a box: q gains what the bound lets stand
            kept = f"fmax(fmin({_fmt(con.lo)}, {z}), {new})"
            if con.kind == "box":
                kept = f"fmin(fmax({_fmt(con.hi)}, {z}), {kept})"
        em.emit(f"_hw_atomic_add(&{q_cell}, {kept} - {z})" if atomic else
                f"{q_cell} = {q_cell} + ({kept} - {z})")
        if con is not None:
            em.emit(f"{new} = {_clip(con).format(x=new)}")
        return new

    def adapt(self, em: Emitter, site: SiteGrad, g: str, weight: str | None, atomic: bool):
        """AdaGrad (API.md, "Update rules"): g /= sqrt(G + 1e-8) after G += g^2, G the
        coordinate's running sum of squared gradients; under adagrad_row, for a 2-D param, G
        is its row's (already updated by row_sums). An l1 weight is scaled alike (the
        coordinate's step size applies to its penalty too)."""
        if not self.adaptive:
            return
        p = self.spec.param(site.param)
        a = em.a
        cell = a.element(p.name, p.dims, site.access.index, c_acc(p.name))
        add = f"_hw_atomic_add_fetch(&{cell}, {g} * {g})" if atomic else \
            f"_hw_add_fetch(&{cell}, {g} * {g})"
        k = em.names.new("k", em.real) if weight is not None else None
        # in the storage type's arithmetic: float32 takes sqrtf, not a double sqrt of floats
        sqrt = "sqrtf" if em.real == "float" else "sqrt"
        eps = em.typed("1e-8")

        def scale(root: str, op: str = "/"):
            if weight is None:
                em.emit(f"{g} = {g} {op} {root}")
                return
            em.emit(f"{k} = {root}")
            em.emit(f"{g} = {g} {op} {k}")
            em.emit(f"{weight} = {weight} {op} {k}")
        if not (self.row_rule and self.by_row(site)):
            scale(f"{sqrt}({add} + {eps})")
            return
        row = self.row_cell(a, site)
        if row in self.row_roots:           # 1 / sqrt(G_row + 1e-8), once per row
            scale(self.row_roots[row], "*")
        else:
            scale(f"{sqrt}({row} + {eps})")

    def project(self, em: Emitter, take):
        """Project every touched row of a param constrained to a simplex or a ball."""
        rows = {}          # (param, row var or None for a 1-D param) in order of first touch
        for site in self.bg.sites:
            p = self.spec.param(site.param)
            if p.constraint is not None and p.constraint.kind in ("simplex", "ball"):
                rows.setdefault((p.name, site.index[:-1]), p)
        # the work row is taken once, before any loop: taken inside a row loop that runs no
        # time, it would leave the pointer unset for the projections after that loop
        work = None
        if any(p.constraint.kind == "simplex" for p in rows.values()):
            work = take(self.longest_simplex_row(em.a))
        for (name, row), p in rows.items():
            a, length = em.a, em.a.extent(p.dims[-1])
            em.emit(f"# keep {name} {p.constraint}")
            loops = list(dict.fromkeys(ir.loop_of(v) for v in row if not v.per_term))
            for v in loops:
                em.open_loop(v)
            array = c_value(name)
            start = array if not row else \
                f"{array} + {_grouped(a.flat(p.dims[:-1], row))} * {length}"
            if p.constraint.kind == "simplex":
                em.emit(f"_hw_project_simplex({start}, {length}, {work})")
            else:
                em.emit(f"_hw_project_ball({start}, {length}, {_fmt(p.constraint.hi)})")
            for _ in loops:
                em.close_loop()

    def longest_simplex_row(self, a: Access) -> str:
        lengths = sorted({a.extent(p.dims[-1]) for p in self.spec.params
                          if p.constraint is not None and p.constraint.kind == "simplex"})
        return " + ".join(lengths)          # room for the longest (a sum: C and Python agree)


ZERO_SUM = ir.Const(0.0)     # fold_diagonals: a diagonal whose gradients add up to 0


def _is_zero(e: ir.Expr, limit: int = 256) -> bool:
    """Whether e is 0 as a polynomial in its leaves (sums, calls, quotients, data and param
    reads are leaves; +, -, *, negation and small integer powers are expanded, so a * a is
    a^2). False where the expansion would pass `limit` monomials."""
    def times(a, b):        # polynomials: monomial -> (coefficient, magnitude of its parts)
        if a is None or b is None or len(a) * len(b) > limit:
            return None
        out = {}
        for ma, (ca, ga) in a.items():
            for mb, (cb, gb) in b.items():
                powers = dict(ma)
                for leaf, k in mb:
                    powers[leaf] = powers.get(leaf, 0) + k
                m = frozenset(powers.items())
                c, g = out.get(m, (0.0, 0.0))
                out[m] = (c + ca * cb, g + ga * gb)
        return out

    def poly(e):
        if isinstance(e, ir.Const):
            return {frozenset(): (e.value, abs(e.value))}
        if isinstance(e, ir.Neg):
            p = poly(e.operand)
            return None if p is None else {m: (-c, g) for m, (c, g) in p.items()}
        if isinstance(e, ir.Binary) and e.op in ("+", "-"):
            a, b = poly(e.left), poly(e.right)
            if a is None or b is None:
                return None
            sign = 1.0 if e.op == "+" else -1.0
            out = dict(a)
            for m, (c, g) in b.items():
                c0, g0 = out.get(m, (0.0, 0.0))
                out[m] = (c0 + sign * c, g0 + g)
            return out
        if isinstance(e, ir.Binary) and e.op == "*":
            return times(poly(e.left), poly(e.right))
        if isinstance(e, ir.Binary) and e.op == "^" and isinstance(e.right, ir.Const) and \
                e.right.value in (2.0, 3.0, 4.0):
            base, out = poly(e.left), {frozenset(): (1.0, 1.0)}
            for _ in range(int(e.right.value)):
                out = times(out, base)
            return out
        return {frozenset({(e, 1)}): (1.0, 1.0)}
    p = poly(e)
    return p is not None and all(abs(c) <= 1e-12 * g for c, g in p.values())


def _site_map(site: SiteGrad, f) -> SiteGrad:
    """A site with f applied to its index (as one access), gradient and l1 weight."""
    access = f(site.access)
    return replace(site, index=access.index, grad=f(site.grad),
                   penalty=None if site.penalty is None else f(site.penalty))


def _order_vars(vars_) -> list:
    vs = sorted(vars_, key=lambda v: v.name)
    return [v for v in vs if v.kind == "sparse"] + [v for v in vs if v.kind == "dense"]


# ---------------------------------------------------------------- the plan


@dataclass
class BlockPlan:
    index: int
    kind: str
    over: str
    update_plain: Function
    update_atomic: Function
    update_plain_adaptive: Function      # under adagrad
    update_atomic_adaptive: Function
    update_plain_row: Function           # under adagrad_row (no test of the rule per
    update_atomic_row: Function          # coordinate: the loops vectorise)
    loss: Function
    predict: Function | None
    update_hot: Function | None = None     # see replicable
    predict_width: str | None = None   # a vector predict: values per term (C expression)
    shares: Function | None = None     # the deferred regs' share of a term (ir.Deferred)
    deferred: Function | None = None   # their steps left for the end of an epoch
    loss_terms: Function | None = None     # the loss less its row regs (RowReg)
    row_regs: tuple = ()                   # RowReg, summed by rows in the exact objective

    @property
    def updates(self) -> tuple:
        return tuple(fn for fn in (self.update_plain, self.update_atomic, self.update_hot,
                                   self.update_plain_adaptive, self.update_atomic_adaptive,
                                   self.update_plain_row, self.update_atomic_row)
                     if fn is not None)

    @property
    def functions(self) -> tuple:
        return self.updates + (self.loss, self.predict, self.shares, self.deferred,
                                self.loss_terms)


@dataclass
class KernelPlan:
    model: str
    fields: list
    blocks: list
    pointers_used: dict        # function name -> fields it reads (locals copied from M)
    replicas: dict = field(default_factory=dict)   # replicable(spec)
    dtype: str = "float64"     # the storage type (STORAGE)
    vector_bits: int | None = None    # the widest vectors the C compiler should use (vector_bits)


def used_fields(fields: list[Field], fn: Function) -> list[Field]:
    """The layout fields a function's code names (copied from the struct into locals)."""
    text = "\n".join(fn.body) + fn.scratch
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    return [f for f in fields if f.name in words]


def lower(spec: ir.Spec, dtype: str = "float64") -> KernelPlan:
    fields = layout(spec, dtype)
    replicas = replicable(spec)
    blocks = []
    for bg in derive(spec):
        bl = BlockLowering(spec, bg, STORAGE[dtype])
        var = bg.block.predict_var
        width = Access(spec, bg.block).extent(var.dim) if var is not None else None
        blocks.append(BlockPlan(bg.block.index, bg.block.kind, bg.block.over,
                                bl.update(False), bl.update(True), bl.update(False, True),
                                bl.update(True, True), bl.update(False, True, by_row=True),
                                bl.update(True, True, by_row=True), bl.loss(), bl.predict(),
                                update_hot=bl.update_hot(frozenset(replicas)),
                                predict_width=width, shares=bl.shares(),
                                deferred=bl.deferred(), loss_terms=bl.loss_terms(),
                                row_regs=tuple(rr for _, rr in bl.row_regs())))
    uses = {}
    for b in blocks:
        for fn in b.functions:
            if fn is not None:
                uses[fn.name] = used_fields(fields, fn)
    return KernelPlan(spec.model, fields, blocks, uses, replicas, dtype, vector_bits(spec, dtype))
