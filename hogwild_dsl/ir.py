"""The typed intermediate representation: what `check` hands to every later stage.

A checked spec is a `Spec`: its extents, data, params and `Block`s. A block's losses, reg
expansions and predict are scalar expressions in *index form*: every vector operation of the
language has been turned into explicit `Sum`s over named index variables (`dot(L[u], R[v])`
is `sum(_k1 in rank: L[u, _k1] * R[v, _k1])`), so later stages only ever see scalars, loops
and element accesses. Nodes are frozen (hashable: equal subtrees are shared by the code
generator) and print as readable math.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace


def fmt_number(value: float) -> str:
    """Numbers as a user would write them (1e-4 -> 0.0001, 2.0 -> 2); words as they are."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".15g")


# ---------------------------------------------------------------- index variables


@dataclass(frozen=True)
class Var:
    """An index variable. kind: "term" (bound by a `for`), "dense" (0..extent of `dim`),
    "sparse" (the stored entries of the sparse row `source` = (data, name of the row index,
    that index's Var: a term index, or index data read at one, `X[better[p]]`); its value is
    a column, i.e. an index into `dim`), "indirect" (the value of index data at another index:
    `y[i]` or `f[j]`, source = (data, name of that index, that index's Var)), or "sample" (an
    index drawn afresh per visit by a `sample` line; source = (weights data or None,)). Sampled
    indices, and index data read at a term index, are fixed for the whole term, like term
    vars: no loop runs over them; index data read at a summed index (`f[j]` inside
    `sum(j in X[i]: ...)`) varies with that sum's loop (see `loop_of`)."""
    name: str
    dim: str
    kind: str
    source: tuple = ()

    @property
    def per_term(self) -> bool:
        """Fixed for the whole term (no loop): a term or sampled index, or index data read
        at one."""
        if self.kind == "indirect":
            return self.source[2].per_term
        return self.kind in ("term", "sample")

    @property
    def at(self) -> "Var":
        """The index that index data are read at (`i` of `y[i]`), or that selects a sparse
        row (`i` of `X[i]`, `better[p]` of `X[better[p]]`)."""
        return self.source[2]

    def __str__(self):
        return self.name


def draw(name: str, weights: str | None, s: Var, dim: str) -> Var:
    """n[s]: the s-th draw of `sample n[K] in dim`."""
    return Var(f"{name}[{s.name}]", dim, "draw", (weights, name, s))


def indirect(data: str, at: Var, dim: str) -> Var:
    """The index `data[at]` (index data read at another index), an index into `dim`."""
    return Var(f"{data}[{at.name}]", dim, "indirect", (data, at.name, at))


def loop_of(v: Var) -> Var | None:
    """The loop variable an index varies with: itself for a dense or sparse var, the loop of
    the index it is read at for index data (`f[j]` varies with j), None if fixed per term."""
    while v.kind in ("indirect", "draw"):
        v = v.at
    return v if v.kind in ("dense", "sparse") else None


def renamed_index(v: Var, mapping: dict) -> Var:
    """v with the index variables of `mapping` replaced, also where index data are read at
    one of them (`f[j]` -> `f[j2]` when j -> j2)."""
    if v in mapping:
        return mapping[v]
    if v.kind == "indirect":
        at = renamed_index(v.at, mapping)
        if at is not v.at:
            return indirect(v.source[0], at, v.dim)
    if v.kind == "draw":                # n[s] -> n[s2] when s -> s2
        at = renamed_index(v.at, mapping)
        if at is not v.at:
            return draw(v.source[1], v.source[0], at, v.dim)
    return v


# ---------------------------------------------------------------- expressions

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "^": 4}


class Expr:
    prec = 9

    def children(self) -> tuple:
        return ()


@dataclass(frozen=True)
class Const(Expr):
    value: float

    def __str__(self):
        return fmt_number(self.value)

    @property
    def prec(self):
        return 9 if self.value >= 0 else 3


def _index_text(name, index):
    return name if not index else f"{name}[{', '.join(map(str, index))}]"


@dataclass(frozen=True)
class DataAt(Expr):
    """A value of data: y[i], c[n, k]; X[i, j] with j a sparse var of X[i] is the stored value."""
    name: str
    index: tuple

    def __str__(self):
        return _index_text(self.name, self.index)


@dataclass(frozen=True)
class ParamAt(Expr):
    """One coordinate of a param: b, w[j], L[u, k]."""
    name: str
    index: tuple

    def __str__(self):
        return _index_text(self.name, self.index)


@dataclass(frozen=True)
class Deg(Expr):
    """deg(c) of the degree split: how many terms of a block touch the coordinate (fit-time data)."""
    name: str
    index: tuple

    def __str__(self):
        return _index_text(self.name, self.index)


@dataclass(frozen=True)
class Neg(Expr):
    operand: Expr
    prec = 3

    def children(self):
        return (self.operand,)

    def __str__(self):
        inner = str(self.operand)
        return f"-({inner})" if self.operand.prec <= 3 else f"-{inner}"


@dataclass(frozen=True)
class Binary(Expr):
    op: str
    left: Expr
    right: Expr

    @property
    def prec(self):
        return _PREC[self.op]

    def children(self):
        return (self.left, self.right)

    def __str__(self):
        p = self.prec
        if self.op == "^":   # right-associative
            left = str(self.left) if self.left.prec > p else f"({self.left})"
            right = str(self.right) if self.right.prec >= p else f"({self.right})"
            return f"{left}^{right}"
        left = str(self.left) if self.left.prec >= p else f"({self.left})"
        strict = self.op in "-/"
        right_ok = self.right.prec > p or (self.right.prec == p and not strict)
        right = str(self.right) if right_ok else f"({self.right})"
        return f"{left} {self.op} {right}"


@dataclass(frozen=True)
class Func(Expr):
    """A scalar function of LANGUAGE.md (hinge, logistic, max, ...) applied to scalars."""
    name: str
    args: tuple

    def children(self):
        return self.args

    def __str__(self):
        return f"{self.name}({', '.join(map(str, self.args))})"


def _source_text(var: Var) -> str:
    if var.kind == "sparse":
        return f"{var.source[0]}[{var.source[1]}]"
    return var.dim


@dataclass(frozen=True)
class Sum(Expr):
    """sum over `var` of `body`: a dense range or the stored entries of a sparse row."""
    var: Var
    body: Expr

    def children(self):
        return (self.body,)

    def __str__(self):
        return f"sum({self.var} in {_source_text(self.var)}: {self.body})"


@dataclass(frozen=True)
class Reduce(Expr):
    """A reduction of a vector to a scalar other than a sum: max, min, or logsumexp (computed
    stably, as max + log(sum(exp(body - max))))."""
    op: str              # max | min | logsumexp
    var: Var
    body: Expr

    def children(self):
        return (self.body,)

    def __str__(self):
        return f"{self.op}({self.var} in {_source_text(self.var)}: {self.body})"


@dataclass(frozen=True)
class ArgMax(Expr):
    """Index of the largest body over a dense var (predict only)."""
    var: Var
    body: Expr

    def children(self):
        return (self.body,)

    def __str__(self):
        return f"argmax({self.var} in {_source_text(self.var)}: {self.body})"


def _cached_hash(self) -> int:
    """Structural hash, computed once per node: lets are shared subtrees, and a chain of
    lets that square each other is a DAG whose tree is exponentially large."""
    try:
        return self.__dict__["_hash"]
    except KeyError:
        h = hash((type(self).__name__,) + tuple(getattr(self, f) for f in self.__match_args__))
        object.__setattr__(self, "_hash", h)
        return h


def _structural_eq(self, other) -> bool:
    """Equality that is cheap on shared subtrees (identity, then hash, then fields). Two
    equal nodes built apart are then made to share their children, so comparing two equal
    DAGs costs their number of distinct nodes, not the size of their trees."""
    if self is other:
        return True
    if type(self) is not type(other) or hash(self) != hash(other):
        return False
    names = self.__match_args__
    if not all(getattr(self, f) is getattr(other, f) or getattr(self, f) == getattr(other, f)
               for f in names):
        return False
    for f in names:        # equal values: sharing them changes nothing but the next compare
        object.__setattr__(other, f, getattr(self, f))
    return True


def _state(self) -> dict:
    """Pickled state without the cached hash (string hashes differ between processes)."""
    return {k: v for k, v in self.__dict__.items() if k != "_hash"}


for _cls in (Const, DataAt, ParamAt, Deg, Neg, Binary, Func, Sum, ArgMax):
    _cls.__hash__, _cls.__eq__, _cls.__getstate__ = _cached_hash, _structural_eq, _state


def walk(expr: Expr):
    """Every node of an expression, parents before children."""
    yield expr
    for child in expr.children():
        yield from walk(child)


def params_of(expr: Expr) -> set[str]:
    return {n.name for n in walk(expr) if isinstance(n, ParamAt)}


def add_all(terms) -> Expr | None:
    total = None
    for t in terms:
        total = t if total is None else Binary("+", total, t)
    return total


# ---------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Data:
    name: str
    dims: tuple          # () for a scalar (data mu : real)
    kind: str            # sparse | dense | real | sign | binary | index
    line: int
    of: str | None = None    # index data: the dim or const its values index

    def __str__(self):
        shape = f"[{', '.join(self.dims)}]" if self.dims else ""
        kind = f"index({self.of})" if self.kind == "index" else self.kind
        return f"data {self.name}{shape} : {kind}"


@dataclass(frozen=True)
class Constraint:
    kind: str            # simplex | lower | box | ball
    lo: float = 0.0
    hi: float = 0.0

    def __str__(self):
        return {"simplex": "in simplex", "lower": f">= {fmt_number(self.lo)}",
                "box": f"in [{fmt_number(self.lo)}, {fmt_number(self.hi)}]",
                "ball": f"in ball({fmt_number(self.hi)})"}[self.kind]


@dataclass(frozen=True)
class Init:
    kind: str            # value | uniform_rows | normal | uniform
    a: float = 0.0
    b: float = 0.0

    def __str__(self):
        return {"value": f"= {fmt_number(self.a)}", "uniform_rows": "= uniform",
                "normal": f"~ normal({fmt_number(self.a)}, {fmt_number(self.b)})",
                "uniform": f"~ uniform({fmt_number(self.a)}, {fmt_number(self.b)})"}[self.kind]


@dataclass(frozen=True)
class Param:
    name: str
    dims: tuple
    constraint: Constraint | None
    init: Init
    line: int

    def __str__(self):
        shape = f"[{', '.join(self.dims)}]" if self.dims else ""
        con = f" {self.constraint}" if self.constraint else ""
        return f"param {self.name}{shape}{con} {self.init}"


@dataclass(frozen=True)
class DegSpec:
    """How to count deg(c) for one reg target at fit time.
    kind "var": counts of the term var `var`'s values; "support": column counts of the sparse
    data `data`'s rows picked by term var `var` (or, with `via`, by index data `via` read at
    `var`: a row counts once per term that picks it); "all": every term of the block (a whole param);
    "indirect": counts of the values of index data `data` over the block's terms (term var
    `var`); "sample": the expected draws of each value in one epoch (terms x probability;
    `data` is the weights or None for uniform; `draws`: K of `sample n[K] in D`); "sum": the
    sum of the counts of `parts`, the targets of one reg line on one param."""
    name: str
    kind: str
    var: str | None
    data: str | None
    dim: str | None
    draws: int = 1
    via: str | None = None
    parts: tuple = ()


@dataclass(frozen=True)
class Deferred:
    """How a whole 1-D param's l2 penalty is applied in O(touched) per term rather than
    O(its size): a term's update steps only the coordinates its losses read (`update`: the
    share there, or None where the losses read none), and every coordinate gets the steps of
    the terms that did not read it at the end of each epoch, as one multiplicative shrink
    (lower.deferred). `touch` names the DegSpec of 1/(terms reading each coordinate),
    `all` the one of 1/(terms of the block)."""
    update: Expr | None
    touch: str | None
    all: str


@dataclass(frozen=True)
class RegTerm:
    kind: str            # l1 | l2
    lam: float
    target: str          # as written, for messages and summaries
    param: str
    unscaled: bool
    expr: Expr           # the per-term share, in index form
    line: int
    deferred: Deferred | None = None    # see Deferred

    def __str__(self):
        return f"reg {self.kind}({fmt_number(self.lam)}) on {self.target}" + \
            (" unscaled" if self.unscaled else "") + f"  ->  {self.expr}"


@dataclass(frozen=True)
class Sample:
    """`sample NAME in DIM (~ WEIGHTS)`: an index drawn afresh at every visit of a term;
    `sample NAME[COUNT] in DIM`: COUNT (a const, `draws` its value) independent draws."""
    var: Var
    weights: str | None
    line: int
    count: str | None = None
    draws: int = 1

    def __str__(self):
        count = f"[{self.count}]" if self.count else ""
        return f"sample {self.var}{count} in {self.var.dim}" + \
            (f" ~ {self.weights}" if self.weights else "")


@dataclass(frozen=True)
class Block:
    """One `for` block: its terms are the indices of a dim (kind "rows") or the stored entries
    of sparse data (kind "entries")."""
    index: int
    kind: str
    vars: tuple          # term Vars
    over: str            # the dim (rows) or the sparse data (entries)
    losses: tuple        # (Expr, line) pairs
    regs: tuple          # RegTerm
    degs: tuple          # DegSpec used by the regs
    predict: Expr | None
    line: int
    samples: tuple = ()          # Sample, drawn before the term's update and loss
    predict_var: Var | None = None   # a vector-valued predict: its free dense var

    @property
    def predict_size(self) -> str | None:
        """The dim or const a vector-valued predict runs over (None for a scalar predict)."""
        return self.predict_var.dim if self.predict_var is not None else None

    @property
    def objective(self) -> Expr:
        """One term's loss plus its share of the regularizer."""
        return add_all([e for e, _ in self.losses] + [r.expr for r in self.regs])

    def header(self) -> str:
        if self.kind == "rows":
            return f"for {self.vars[0]} in {self.over}:"
        return f"for ({self.vars[0]}, {self.vars[1]}) in {self.over}:"

    def __str__(self):
        lines = [self.header()]
        lines += [f"    {s}" for s in self.samples]
        lines += [f"    loss {e}" for e, _ in self.losses]
        lines += [f"    {r}" for r in self.regs]
        if self.predict is not None:
            at = f"[{self.predict_var}]" if self.predict_var is not None else ""
            lines.append(f"    predict{at} {self.predict}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Spec:
    model: str
    dims: tuple                     # runtime dims, read off the data
    consts: tuple                   # ((name, int), ...)
    data: tuple
    params: tuple
    blocks: tuple
    train: tuple                    # ((key, value), ...)
    source: str = field(repr=False, compare=False)

    def const_value(self, name: str) -> int | None:
        return dict(self.consts).get(name)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def datum(self, name: str) -> Data:
        return next(d for d in self.data if d.name == name)

    def __str__(self):
        lines = [f"model {self.model}"]
        if self.dims:
            lines.append("dim " + ", ".join(self.dims))
        lines += [f"const {n} = {v}" for n, v in self.consts]
        lines += [str(d) for d in self.data]
        lines += [str(p) for p in self.params]
        lines += [str(b) for b in self.blocks]
        if self.train:
            lines.append("train " + ", ".join(f"{k} {fmt_number(v)}" for k, v in self.train))
        return "\n".join(lines)


# ---------------------------------------------------------------- text with shared parts

SHARED_TEXT_FROM = 300      # tree size from which a text names its shared subexpressions


@dataclass(frozen=True)
class _Named(Expr):
    """A shared subexpression in a text, read by its name."""
    name: str

    def __str__(self):
        return self.name


def shared_texts(exprs: list, prefix: str = "_s") -> tuple[list[str], list[str]]:
    """The texts of `exprs`, and the definitions (`_s1 = ...`, children first) of the
    subexpressions they share, named where the expressions written out in full would have
    SHARED_TEXT_FROM nodes or more (a let used twice in each of a chain of lets doubles the
    tree at each link: its text would grow exponentially, its DAG does not). Only a part
    that depends on no summed index is named (it means the same wherever it stands).
    Iterative: the DAG is walked once, each distinct node once."""
    order, seen, stack = [], set(), list(exprs)
    while stack:                        # distinct nodes, children before parents
        node = stack.pop()
        if isinstance(node, tuple):
            order.append(node[0])
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node,))
        stack.extend(c for c in node.children() if c not in seen)
    size, free, uses = {}, {}, {}
    for node in order:
        kids = node.children()
        size[node] = 1 + sum(size[c] for c in kids)
        own = {loop_of(v) for v in getattr(node, "index", ())} - {None} \
            if isinstance(node, (DataAt, ParamAt, Deg)) else set()
        own |= set().union(*(free[c] for c in kids)) if kids else set()
        if isinstance(node, (Sum, Reduce, ArgMax)):
            own -= {node.var}
        free[node] = frozenset(own)
        for c in set(kids):
            uses[c] = uses.get(c, 0) + 1
    for e in exprs:
        uses[e] = uses.get(e, 0) + 1
    if sum(size[e] for e in set(exprs)) < SHARED_TEXT_FROM:
        return [], [str(e) for e in exprs]
    named = {n for n in order if uses.get(n, 0) >= 2 and size[n] >= 4 and not free[n]}
    rebuilt, definitions = {}, []
    for node in order:
        changes = {}
        for f in node.__match_args__:
            v = getattr(node, f)
            if isinstance(v, Expr):
                changes[f] = rebuilt[v]
            elif isinstance(v, tuple) and v and all(isinstance(a, Expr) for a in v):
                changes[f] = tuple(rebuilt[a] for a in v)
        text_node = replace(node, **changes) if changes else node
        if node in named:
            name = f"{prefix}{len(definitions) + 1}"
            definitions.append(f"{name} = {text_node}")
            text_node = _Named(name)
        rebuilt[node] = text_node
    return definitions, [str(rebuilt[e]) for e in exprs]
