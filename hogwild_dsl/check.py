"""Stage 2, check: syntax tree -> typed IR (`ir.Spec`), or a `SpecError` that points at the place.

Resolves names, reads dims and shapes, types every expression (scalar, dense vector over a dim,
sparse row of data), expands every vector operation into explicit sums (index form, see ir.py),
expands each `reg` into its per-term share (the degree split) and records constraints, inits
and the `train` defaults. Declarations may come in any order; lets are inlined where they are
used, and an expression too deep or too large for the later stages is refused here. Nothing
later re-reads the syntax tree.
"""
from __future__ import annotations

import difflib
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Callable

from . import ir, parse as syn, shipped
from .errors import SpecError

DATA_KINDS = {"sparse": 2, "dense": 2, "real": 1, "sign": 1, "binary": 1, "index": 1}
# every Trainer option but `step="auto"` (API.md); a word's choices are the Trainer's own
WORD_TRAIN_KEYS = {"optimizer": ("sgd", "adagrad", "adagrad_row"),
                   "sync": ("hogwild", "atomic", "lock"),
                   "order": ("shuffle", "chunks", "stored"),
                   "shuffle": ("true", "false"), "progress": ("true", "false")}
INT_TRAIN_KEYS = {"epochs", "threads", "seed", "chunk", "patience"}
TRAIN_KEYS = {"step", "decay"} | INT_TRAIN_KEYS | set(WORD_TRAIN_KEYS)
# what scikit-learn, PyTorch, LightGBM or Vowpal Wabbit call a train key (Trainer option)
PEER_TRAIN_KEYS = {"learning_rate": "step", "lr": "step", "eta": "step", "eta0": "step",
                   "n_jobs": "threads", "num_threads": "threads", "max_iter": "epochs",
                   "n_epochs": "epochs", "num_epochs": "epochs", "random_state": "seed"}
MAX_EXTENT = 2**31 - 1     # consts and integer train values (C ints downstream)
MAX_IR_DEPTH = 150         # deepest expression after lets are inlined (later stages recurse)
MAX_IR_SIZE = 200_000      # largest expression tree after lets are inlined
MAX_LET_DEPTH = 2 * MAX_IR_DEPTH   # deepest let: no use of a deeper one could pass
MAX_DRAWS = 1024           # draws of one `sample n[K]` line (a local array per term)
SCALAR_FUNCS = {  # name -> number of arguments
    "abs": 1, "exp": 1, "log": 1, "log1p": 1, "sqrt": 1, "sigmoid": 1, "softplus": 1,
    "relu": 1, "hinge": 1, "sqhinge": 1, "logistic": 1, "max": 2, "min": 2, "huber": 2,
}
REDUCTIONS = {"dot": 2, "sum": 1, "norm1": 1, "norm2": 1, "sqnorm": 1, "logsumexp": 1}
VECTOR_FUNCS = {"softmax": 1}     # a vector to a vector over the same dim
ONE_ARG_REDUCTIONS = {"max", "min"}   # max(v) / min(v): one argument reduces a vector
PREDICT_ONLY = {"sign": 1, "argmax": 1}
ALL_FUNCS = {**SCALAR_FUNCS, **REDUCTIONS, **VECTOR_FUNCS, **PREDICT_ONLY}
SIGNATURES = {fn: f"{fn}(z)" for fn in ALL_FUNCS} | {
    "max": "max(a, b)", "min": "min(a, b)", "huber": "huber(z, delta)", "dot": "dot(a, b)",
    "sum": "sum(v) or sum(j in X[i]: EXPR)", "norm1": "norm1(v)", "norm2": "norm2(v)",
    "sqnorm": "sqnorm(v)", "argmax": "argmax(v)", "logsumexp": "logsumexp(v)",
    "softmax": "softmax(v)"} | {"max": "max(a, b) or max(v)", "min": "min(a, b) or min(v)"}


# ---------------------------------------------------------------- typed values


@dataclass(frozen=True)
class Shape:
    kind: str                # scalar | dense | sparse
    dim: str | None = None
    data: str | None = None  # sparse: the data and the index that selects the row
    row: ir.Var | None = None

    def __str__(self):
        if self.kind == "scalar":
            return "a scalar"
        if self.kind == "dense":
            return f"a vector over {self.dim}"
        return f"a sparse row of {self.data} (over {self.dim})"


SCALAR = Shape("scalar")


def sparse_var(name: str, row: Shape) -> ir.Var:
    """The index over the stored entries of the sparse row `row` (its columns)."""
    return ir.Var(name, row.dim, "sparse", (row.data, row.row.name, row.row))


@dataclass(frozen=True)
class Typed:
    """A checked expression: its shape and how to build its index-form scalar at an index.
    Scalars: build(None). Dense vectors over D: build(var over D). Sparse rows: build(sparse var)."""
    shape: Shape
    build: Callable
    node: syn.Node

    def scalar(self) -> ir.Expr:
        return self.build(None)


class Checker:
    def __init__(self, module: syn.Module, consts: dict | None):
        self.source = module.source
        self.module = module
        self.overrides = consts
        self.names: dict[str, tuple[str, syn.Node]] = {}   # global name -> (what, decl)
        self.dims: list[str] = []
        self.consts: dict[str, int] = {}
        self.data: dict[str, ir.Data] = {}
        self.params: dict[str, ir.Param] = {}
        self.block_vars: dict[str, int] = {}   # every term var name -> block line (for messages)
        self.block_lets: dict[str, tuple[int, int]] = {}   # let name -> (block line, let line)

    # -------------------------------------------------------- errors
    def error(self, node, message, hint=None):
        line, column = (node.line, node.column) if node is not None else (None, None)
        raise SpecError(message, line, column, self.source, hint)

    def did_you_mean(self, name, candidates):
        close = difflib.get_close_matches(str(name), sorted(map(str, candidates)), n=1, cutoff=0.6)
        return f"did you mean '{close[0]}'?" if close else None

    # -------------------------------------------------------- declarations
    def new_name(self, name: syn.Name, what: str):
        """A name being bound (declaration, let, index): not a keyword, not reserved."""
        if name.id in syn.KEYWORDS:
            self.error(name, f"'{name.id}' is a keyword and cannot be used as a name",
                       f"choose another name for the {what}")
        if name.id.startswith("_"):
            self.error(name, f"the name '{name.id}' starts with '_'",
                       "names starting with '_' are reserved for the compiler")

    def declare(self, name: syn.Name, what: str):
        self.new_name(name, what)
        if what == "data" and name.id == "validation":
            self.error(name, "data cannot be named 'validation'",
                       "fit(..., validation={...}) takes held-out data under that keyword: "
                       "choose another name")
        if name.id in self.names:
            prev_what, prev = self.names[name.id]
            self.error(name, f"duplicate name '{name.id}' (already declared as {_a(prev_what)} "
                             f"on line {prev.line})", "every name of a spec must be unique")
        self.names[name.id] = (what, name)

    def extent(self, name: syn.Name, what: str) -> str:
        if name.id in self.dims or name.id in self.consts:
            return name.id
        kind = self.names.get(name.id, (None,))[0]
        if kind is not None:
            self.error(name, f"'{name.id}' is {_a(kind)}, not a dim",
                       f"{what} are indexed by dims (declared with 'dim') or consts")
        self.error(name, f"unknown dim '{name.id}'",
                   self.did_you_mean(name.id, self.dims + list(self.consts)) or
                   f"declare it first with 'dim {name.id}'")

    def run(self) -> ir.Spec:
        stmts = self.module.statements
        if not stmts or not isinstance(stmts[0], syn.ModelDecl):
            node = stmts[0] if stmts else None
            raise SpecError("a spec starts with 'model NAME'", node.line if node else 1,
                            node.column if node else 1, self.source,
                            "write e.g. 'model svm' as the first statement")
        model = stmts[0].name
        self.new_name(model, "model")
        # Declarations may come in any order: first every global name, dim and const ...
        for stmt in stmts[1:]:
            if isinstance(stmt, syn.ModelDecl):
                self.error(stmt, "a second 'model' statement", "a spec describes one model")
            elif isinstance(stmt, syn.DimDecl):
                for n in stmt.names:
                    self.declare(n, "dim")
                    self.dims.append(n.id)
            elif isinstance(stmt, syn.ConstDecl):
                self.const(stmt)
            elif isinstance(stmt, (syn.DataDecl, syn.ParamDecl)):
                self.declare(stmt.name, "data" if isinstance(stmt, syn.DataDecl) else "param")
        self.check_overrides(stmts[0])
        # ... then what refers to them.
        blocks, train = [], {}
        for stmt in stmts[1:]:
            if isinstance(stmt, syn.DataDecl):
                self.datum(stmt)
            elif isinstance(stmt, syn.ParamDecl):
                self.param(stmt)
            elif isinstance(stmt, syn.TrainDecl):
                if train:
                    self.error(stmt, "a second 'train' line", "put every key on one 'train' line")
                train = self.train(stmt)
            elif isinstance(stmt, syn.ForBlock):
                blocks.append(stmt)
        if not blocks:
            self.error(stmts[0], "the spec has no 'for' block, so it has no terms",
                       "add e.g. 'for i in example:' with a 'loss' line")
        self.check_dims_readable()
        for b in blocks:   # for messages about names used outside their block
            for v in b.vars:
                self.block_vars.setdefault(v.id, b.line)
            for s in b.body:
                if isinstance(s, syn.Let):
                    self.block_lets.setdefault(s.name.id, (b.line, s.line))
        checked = _undefer_shared([BlockChecker(self, b, i).run() for i, b in enumerate(blocks)])
        predicting = [b for b, c in zip(blocks, checked) if c.predict is not None]
        if len(predicting) > 1:
            second = next(s for s in predicting[1].body if isinstance(s, syn.Predict))
            self.error(second, f"a second block with 'predict' (the block on line "
                               f"{predicting[0].line} has one)", "at most one block has 'predict'")
        return ir.Spec(model.id, tuple(self.dims), tuple(self.consts.items()),
                       tuple(self.data.values()), tuple(self.params.values()), tuple(checked),
                       tuple(train.items()), self.source)

    def const(self, stmt: syn.ConstDecl):
        self.declare(stmt.name, "const")
        name, node = stmt.name.id, stmt.value
        overrides = self.overrides if isinstance(self.overrides, Mapping) else {}
        if name in overrides:
            value = _positive_int(overrides[name])
            if value is None:
                self.error(node, f"the override {name}={overrides[name]!r} is not a positive "
                                 "integer", f"a const is an extent: pass e.g. consts={{'{name}': 20}}")
        else:
            value = _positive_int(node.value)
            if value is None:
                self.error(node, f"const '{name}' must be a positive integer, not {node.text}",
                           f"a const is an extent, e.g. const {name} = 20")
        if value > MAX_EXTENT:
            self.error(node, f"const '{name}' = {value} is too large (at most {MAX_EXTENT})",
                       "a const is a compile-time extent such as a rank")
        self.consts[name] = value

    def check_overrides(self, model: syn.ModelDecl):
        if self.overrides is None:
            return
        if not isinstance(self.overrides, Mapping):
            self.error(model, f"consts must be a dict of NAME -> INT, not "
                              f"{type(self.overrides).__name__}", "e.g. consts={'rank': 50}")
        for name in self.overrides:
            if name not in self.consts:
                known = ", ".join(self.consts) or "none"
                self.error(model, f"no const named {str(name)!r} to override (the consts of "
                                  f"this spec: {known})",
                           self.did_you_mean(name, self.consts) or
                           "only a 'const NAME = INT' of the spec can be overridden")

    def datum(self, stmt: syn.DataDecl):
        kind = stmt.kind.id
        if kind not in DATA_KINDS:
            self.error(stmt.kind, f"unknown data kind '{kind}'",
                       self.did_you_mean(kind, DATA_KINDS) or
                       "the kinds are " + ", ".join(DATA_KINDS))
        of = None
        if kind == "index":
            if stmt.of is None:
                self.error(stmt.kind, "index data names the dim its values index",
                           f"e.g. data {stmt.name.id}[example] : index(class)")
            of = self.extent(stmt.of, "index data")
        elif stmt.of is not None:
            self.error(stmt.of, f"'{kind}' data takes no argument",
                       f"write ': {kind}'; only index(C) names a dim")
        if not stmt.dims:
            if kind != "real":
                self.error(stmt.kind, f"a scalar datum is real, not {kind}",
                           f"write 'data {stmt.name.id} : real', or give {stmt.name.id} dims")
            self.data[stmt.name.id] = ir.Data(stmt.name.id, (), kind, stmt.line)
            return
        want = DATA_KINDS[kind]
        if len(stmt.dims) != want:
            self.error(stmt.dims[0], f"'{kind}' data has {want} dim{'s' if want > 1 else ''}, "
                                     f"but {stmt.name.id} declares {len(stmt.dims)}",
                       "sparse and dense are 2-D; real, sign, binary and index are 1-D (real "
                       "may also be a scalar: data mu : real)")
        dims = tuple(self.extent(d, "data") for d in stmt.dims)
        self.data[stmt.name.id] = ir.Data(stmt.name.id, dims, kind, stmt.line, of)

    def param(self, stmt: syn.ParamDecl):
        if len(stmt.dims) > 3:
            self.error(stmt.dims[3], f"a param has at most 3 dims, but {stmt.name.id} declares "
                                     f"{len(stmt.dims)}",
                       "a param is 0-D (a number), 1-D (a vector), 2-D (rows) or 3-D")
        dims = tuple(self.extent(d, "params") for d in stmt.dims)
        constraint = self.constraint(stmt, dims)
        init = self.init(stmt.init, len(dims))
        self.params[stmt.name.id] = ir.Param(stmt.name.id, dims, constraint, init, stmt.line)

    def constraint(self, stmt: syn.ParamDecl, dims) -> ir.Constraint | None:
        c = stmt.constraint
        if c is None:
            return None
        name = stmt.name.id
        forms = "constraints are: in simplex, >= 0, in [LO, HI], in ball(R)"
        if c.kind == "named":
            if c.name.id != "simplex":
                self.error(c.name, f"unknown constraint 'in {c.name.id}'",
                           self.did_you_mean(c.name.id, ["simplex"]) or forms)
            if not dims:
                self.error(c, f"'in simplex' on the 0-D param '{name}' means nothing",
                           "the simplex constrains each row of a 1-D, 2-D or 3-D param")
            return ir.Constraint("simplex")
        if c.kind == "call":
            if c.name.id != "ball":
                self.error(c.name, f"unknown constraint 'in {c.name.id}(...)'",
                           self.did_you_mean(c.name.id, ["ball"]) or forms)
            if not dims:
                self.error(c, f"'in ball(R)' on the 0-D param '{name}' means nothing",
                           "use a box 'in [-R, R]' for a scalar")
            radius = c.values[0].value
            if radius <= 0:
                self.error(c.values[0], f"the radius of a ball must be positive, not "
                                        f"{c.values[0].text}", "e.g. in ball(1)")
            return ir.Constraint("ball", hi=radius)
        if c.kind == "box":
            lo, hi = (v.value for v in c.values)
            if lo > hi:
                self.error(c, f"empty box [{c.values[0].text}, {c.values[1].text}]",
                           "write the lower bound first")
            return ir.Constraint("box", lo=lo, hi=hi)
        return ir.Constraint("lower", lo=c.values[0].value)

    def init(self, init: syn.Init | None, ndim: int) -> ir.Init:
        if init is None:
            return ir.Init("value", 0.0)
        if init.kind == "value":
            return ir.Init("value", init.values[0].value)
        if init.kind == "named":
            if init.name.id != "uniform":
                self.error(init.name, f"unknown initialisation '= {init.name.id}'",
                           "write '= NUMBER', '= uniform', '~ normal(MEAN, STD)' or "
                           "'~ uniform(LO, HI)'")
            if ndim == 0:
                self.error(init.name, "'= uniform' (rows of 1/k) needs a 1-D, 2-D or 3-D param",
                           "give a 0-D param a number, e.g. '= 0'")
            return ir.Init("uniform_rows")
        a, b = (v.value for v in init.values)
        if init.name.id == "normal":
            if b < 0:
                self.error(init.values[1], "the standard deviation must not be negative",
                           "write normal(MEAN, STD) with STD >= 0")
            return ir.Init("normal", a, b)
        if init.name.id == "uniform":
            if a > b:
                self.error(init.values[0], "uniform(LO, HI) needs LO <= HI",
                           "write the lower bound first")
            return ir.Init("uniform", a, b)
        self.error(init.name, f"unknown distribution '{init.name.id}'",
                   self.did_you_mean(init.name.id, ["normal", "uniform"]) or
                   "use normal(MEAN, STD) or uniform(LO, HI)")

    def train(self, stmt: syn.TrainDecl) -> dict:
        out = {}
        for key, value in stmt.items:
            k = key.id
            if k not in TRAIN_KEYS:
                self.error(key, f"unknown train key '{k}'",
                           (f"did you mean '{PEER_TRAIN_KEYS[k]}'?" if k in PEER_TRAIN_KEYS
                            else self.did_you_mean(k, TRAIN_KEYS)) or
                           "the keys are " + ", ".join(sorted(TRAIN_KEYS)))
            if k in out:
                self.error(key, f"'{k}' is given twice on the train line", "give each key once")
            words = WORD_TRAIN_KEYS.get(k)
            if words is not None or isinstance(value, syn.Name):
                if words is None:
                    self.error(value, f"'{k}' takes a number, not '{value.id}'",
                               f"e.g. {k} 0.5")
                if not isinstance(value, syn.Name) or value.id not in words:
                    shown = value.id if isinstance(value, syn.Name) else value.text
                    self.error(value, f"unknown {k} '{shown}'",
                               self.did_you_mean(shown, words) or f"the choices are "
                               + ", ".join(words))
                out[k] = value.id if words[0] != "true" else value.id == "true"
                continue
            v = value.value
            if k in INT_TRAIN_KEYS:
                if v != int(v) or v < 0:
                    self.error(value, f"'{k}' must be a non-negative integer, not {value.text}",
                               f"e.g. {k} 20" if k != "seed" else "e.g. seed 0")
                if v > MAX_EXTENT:
                    self.error(value, f"'{k}' {value.text} is too large (at most {MAX_EXTENT})",
                               f"give a smaller {k}")
            if k in ("threads", "chunk", "patience") and v < 1:
                self.error(value, f"'{k}' must be at least 1", f"e.g. {k} 4")
            if k in ("step", "decay") and v <= 0:
                self.error(value, f"'{k}' must be positive, not {value.text}",
                           "e.g. step 0.1" if k == "step" else "e.g. decay 0.9")
            out[k] = int(v) if k in INT_TRAIN_KEYS else v
        if out.get("shuffle") is False and out.get("order", "stored") != "stored":
            key, value = next((key, value) for key, value in stmt.items if key.id == "order")
            self.error(value, f"'shuffle false' visits the terms in stored order; 'order "
                              f"{out['order']}' asks for another",
                       "give one of them: 'shuffle false' is 'order stored'")
        return out

    def check_dims_readable(self):
        used = {d for data in self.data.values() for d in data.dims + ((data.of,) if data.of
                                                                      else ())}
        for dim in self.dims:
            if dim not in used:
                node = self.names[dim][1]
                self.error(node, f"the size of dim '{dim}' cannot be read off any data",
                           f"use it in a data declaration, or declare 'const {dim} = N'")


def _number(node) -> float | None:
    """The value of a literal number, signs included (`-1`, `--2`); else None."""
    if isinstance(node, syn.Num):
        return node.value
    if isinstance(node, syn.Neg):
        v = _number(node.operand)
        return None if v is None else -v
    return None


def _a(what: str) -> str:
    """'a param', 'an index', 'data' (data is a mass noun)."""
    if what == "data":
        return "data"
    return ("an " if what[0] in "aeiou" else "a ") + what


def _positive_int(value) -> int | None:
    """A const's value (from the spec or an override) as a positive int, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            return None
    if isinstance(value, numbers.Integral):
        value = int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    else:
        return None
    return value if value >= 1 else None


class BlockChecker:
    """Checks one `for` block and builds its index-form losses, regs and predict."""

    def __init__(self, spec: Checker, block: syn.ForBlock, index: int):
        self.spec = spec
        self.block = block
        self.index = index
        self.scope: dict[str, object] = {}   # term vars, lets, sum vars -> Var or Typed
        self.counter = 0
        self.degs: dict[tuple, ir.DegSpec] = {}
        self.in_predict = False
        self.sum_vars: dict[str, int] = {}   # sum(k in ...) names seen so far -> line

    def error(self, node, message, hint=None):
        self.spec.error(node, message, hint)

    def fresh(self, dim: str, kind: str, source=()) -> ir.Var:
        self.counter += 1
        return ir.Var(f"_{'j' if kind == 'sparse' else 'k'}{self.counter}", dim, kind, source)

    # -------------------------------------------------------- the block
    def run(self) -> ir.Block:
        b, spec = self.block, self.spec
        if len(b.vars) > 2:
            names = ", ".join(v.id for v in b.vars)
            self.error(b.vars[2], f"'for ({names}) in {b.source.id}': a block binds one index "
                                  "(a dim) or two (the entries of sparse data), not "
                                  f"{len(b.vars)}",
                       f"for a term per tuple declare 'dim triple' and one index datum per "
                       f"part, e.g. 'data tu[triple] : index(user)', then write 'for t in "
                       f"triple:' and read P[tu[t]]")
        for v in b.vars:
            spec.new_name(v, "index")
            if v.id in spec.names:
                self.error(v, f"the index '{v.id}' clashes with the {spec.names[v.id][0]} "
                              f"'{v.id}'", "choose another name for the index")
        if len(b.vars) == 2 and b.vars[0].id == b.vars[1].id:
            self.error(b.vars[1], "the two indices of a block must differ",
                       "e.g. for (u, v) in r:")
        src = b.source.id
        if len(b.vars) == 1:
            if src in spec.data:
                self.error(b.source, f"'for {b.vars[0].id} in {src}' runs over data",
                           f"a one-index block runs over a dim; for the stored entries of {src} "
                           f"write 'for (u, v) in {src}:'")
            if src in spec.consts:
                self.error(b.source, f"a block runs over a dim read off the data, not the const "
                                     f"'{src}'", "one term per index of a dim: for i in DIM:")
            if src not in spec.dims:
                what = spec.names.get(src, (None,))[0]
                if what is not None:
                    self.error(b.source, f"'{src}' is {_a(what)}, not a dim",
                               "a one-index block runs over a dim: for i in DIM:")
                self.error(b.source, f"unknown dim '{src}'",
                           spec.did_you_mean(src, spec.dims) or
                           f"declare it with 'dim {src}'")
            kind, tvars = "rows", (ir.Var(b.vars[0].id, src, "term"),)
        else:
            data = spec.data.get(src)
            header = f"'for ({b.vars[0].id}, {b.vars[1].id}) in {src}'"
            if data is None:
                what = spec.names.get(src, (None,))[0]
                self.error(b.source, f"{header} needs sparse data, but '{src}' is " +
                           (_a(what) if what else "unknown"),
                           "for one term per index of a dim write 'for i in DIM:'" if what else
                           spec.did_you_mean(src, spec.data) or
                           f"declare it with 'data {src}[D1, D2] : sparse'")
            if data.kind != "sparse":
                self.error(b.source, f"{header} needs sparse data, but '{src}' is {data.kind}",
                           "only the stored entries of sparse data are terms")
            kind = "entries"
            tvars = tuple(ir.Var(v.id, d, "term") for v, d in zip(b.vars, data.dims))
        for v in tvars:
            self.scope[v.name] = v
        self.tvars = tvars
        self.kind = kind
        losses, regs, predict = [], [], None
        self.samples: list[ir.Sample] = []
        self.predict_var = None
        for stmt in b.body:
            if isinstance(stmt, syn.Sample):
                self.sample(stmt)
            elif isinstance(stmt, syn.Let):
                self.let(stmt)
            elif isinstance(stmt, syn.Loss):
                losses.append((self.loss(stmt), stmt.line))
            elif isinstance(stmt, syn.Reg):
                regs.extend(self.reg(stmt))
            elif isinstance(stmt, syn.Predict):
                if predict is not None:
                    self.error(stmt, "a second 'predict' in this block",
                               "a block predicts one value")
                predict = self.predict(stmt)
        if not losses:
            self.error(b, "this block has no 'loss'", "add a line 'loss EXPR' to the block")
        regs = [self.deferred(r, losses, regs) for r in regs]
        return ir.Block(self.index, kind, tvars, src, tuple(losses), tuple(regs),
                        tuple(self.degs.values()), predict, b.line, tuple(self.samples),
                        self.predict_var)

    def sample(self, stmt: syn.Sample):
        """`sample j in D (~ P)`: j is an index over D, fixed for the term, drawn per visit."""
        spec, name = self.spec, stmt.name
        spec.new_name(name, "sampled index")
        if name.id in spec.names or name.id in self.scope:
            self.error(name, f"the name '{name.id}' is already in use "
                             f"({self.holder(name.id)})",
                       "choose another name for the sampled index")
        dim = stmt.dim.id
        if dim not in spec.dims and dim not in spec.consts:
            what = spec.names.get(dim, (None,))[0]
            self.error(stmt.dim, f"'{dim}' is {_a(what)}, not a dim" if what else
                       f"unknown dim '{dim}'",
                       spec.did_you_mean(dim, spec.dims + list(spec.consts)) or
                       f"a sample is drawn from a dim: sample {name.id} in DIM")
        weights = None
        if stmt.weights is not None:
            w = spec.data.get(stmt.weights.id)
            hint = f"declare the weights as 'data {stmt.weights.id}[{dim}] : real'"
            if w is None:
                what = spec.names.get(stmt.weights.id, (None,))[0]
                self.error(stmt.weights, f"the weights '{stmt.weights.id}' must be data, but "
                           f"this is {_a(what) if what else 'unknown'}",
                           spec.did_you_mean(stmt.weights.id, spec.data) or hint)
            if w.kind != "real" or w.dims != (dim,):
                self.error(stmt.weights, f"the weights of a draw from {dim} are real data over "
                                         f"{dim}, but '{w.name}' is {w}", hint)
            weights = w.name
        if stmt.count is not None:      # sample n[K] in D: K draws, read as n[s]
            count = stmt.count.id
            if count not in spec.consts:
                what = spec.names.get(count, (None,))[0]
                self.error(stmt.count, f"the number of draws must be a const, but '{count}' "
                                       f"is {_a(what) if what else 'unknown'}",
                           f"declare it, e.g. 'const {count} = 5', and write "
                           f"'sample {name.id}[{count}] in {dim}'")
            if spec.consts[count] > MAX_DRAWS:
                self.error(stmt.count, f"{spec.consts[count]} draws per term is more than "
                                       f"this compiler supports ({MAX_DRAWS})",
                           f"draw at most {MAX_DRAWS} per term")
            var = ir.Var(name.id, dim, "draws", (weights, count))
            self.scope[name.id] = var
            self.samples.append(ir.Sample(var, weights, stmt.line, count, spec.consts[count]))
            return
        var = ir.Var(name.id, dim, "sample", (weights,))
        self.scope[name.id] = var
        self.samples.append(ir.Sample(var, weights, stmt.line))

    def draw_var(self, node: syn.Index) -> ir.Var:
        """n[s], the s-th draw of `sample n[K] in D`, with s bound by sum(s in K: ...)."""
        n = self.scope[node.name.id]
        count = n.source[1]
        if self.in_predict:
            self.error(node, f"'predict' may not use the sampled index '{n.name}'",
                       "a prediction is one value per term: it cannot depend on a random draw")
        hint = f"read the draws of '{n.name}' as {n.name}[s] inside sum(s in {count}: ...)"
        if len(node.args) != 1:
            self.error(node, f"'{n.name}' holds {count} draws: it takes one index, not "
                             f"{len(node.args)}", hint)
        arg = node.args[0]
        s = self.scope.get(arg.id) if isinstance(arg, syn.Name) else None
        if not isinstance(s, ir.Var) or s.kind != "dense" or s.dim != count:
            self.error(arg, f"'{self._text(node)}': a draw of '{n.name}' is read at the index "
                            f"of a sum over {count}", hint)
        return ir.draw(n.name, n.source[0], s, n.dim)

    def is_draw(self, node) -> bool:
        """Whether node reads one of several draws, n[s] (which then stands for an index)."""
        return isinstance(node, syn.Index) and \
            isinstance(self.scope.get(node.name.id), ir.Var) and \
            self.scope[node.name.id].kind == "draws"

    def holder(self, name: str) -> str:
        """What already holds `name` (for an error about reusing it): a clash with a name of
        the spec or of the block is only clear once the message says which."""
        if name in self.spec.names:
            what, decl = self.spec.names[name]
            return f"{_a(what)} declared on line {decl.line}"
        v = self.scope[name]
        if not isinstance(v, ir.Var):
            return "a let of this block"
        return {"term": "an index of this block's 'for'", "sample": "a sampled index",
                "draws": "a sampled index"}.get(v.kind, "the index of an enclosing sum")

    def let(self, stmt: syn.Let):
        name = stmt.name
        self.spec.new_name(name, "let")
        if name.id in self.spec.names or name.id in self.scope:
            self.error(name, f"duplicate name '{name.id}' (already {self.holder(name.id)})",
                       "every name of a spec must be unique")
        value = _memoized(self.expr(stmt.value))
        # Built now (and memoised), so a chain of lets is built one link at a time; a let
        # too deep for any use to pass `finished` stops the chain here (check never
        # recurses further down an expression than MAX_LET_DEPTH).
        depth, _ = _measure(value.build(_probe(value)))
        if depth > MAX_LET_DEPTH:
            self.error(stmt, f"this let nests {depth} levels deep once its lets are inlined "
                             f"(at most {MAX_IR_DEPTH} in a loss or predict)",
                       "shorten the chain of lets and operators it is built from")
        self.scope[name.id] = value

    def finished(self, stmt, e: ir.Expr, what: str) -> ir.Expr:
        """Refuse an expression too deep or too large for the later stages (lets are inlined,
        so a chain of lets can nest far deeper than any one line)."""
        depth, size = _measure(e)
        if depth > MAX_IR_DEPTH:
            self.error(stmt, f"this {what} nests {depth} levels deep once its lets are inlined "
                             f"(at most {MAX_IR_DEPTH})",
                       "shorten the chain of lets and operators it is built from")
        if size > MAX_IR_SIZE:
            self.error(stmt, f"this {what} has {size} terms written out without its lets "
                             f"(at most {MAX_IR_SIZE})",
                       "the generated code computes each let once, but the compiler checks "
                       "and differentiates the written-out form: use a let fewer times, e.g. "
                       "break a chain of lets that each read the previous one twice")
        return e

    def loss(self, stmt: syn.Loss) -> ir.Expr:
        t = self.expr(stmt.value)
        if t.shape.kind != "scalar":
            self.error(stmt.value, f"a loss must be a scalar, but this is {t.shape}",
                       "reduce it with sum(...), dot(...) or a norm")
        e = self.finished(stmt, t.scalar(), "loss")
        if not _params_of(e):
            self.error(stmt.value, "this loss depends on no param, so training cannot change it",
                       "a loss must involve at least one param")
        return e

    def predict(self, stmt: syn.Predict) -> ir.Expr:
        self.in_predict = True
        try:
            t = self.expr(stmt.value)
        finally:
            self.in_predict = False
        if t.shape.kind == "dense":     # a vector per term: predict() gives (terms, size)
            self.predict_var = ir.Var("k_predict", t.shape.dim, "dense")
            e = t.build(self.predict_var)
        elif t.shape.kind != "scalar":
            self.error(stmt.value, f"predict gives a scalar or a dense vector per term, but "
                                   f"this is {t.shape}",
                       "reduce it, e.g. with dot(...), or sum it over the row")
        else:
            e = t.scalar()
        drawn = _sampled_index(e)
        if drawn is not None:       # read through a let (a direct use is refused at it)
            self.error(stmt.value, f"'predict' may not use the sampled index '{drawn}', which "
                                   "a let it reads is computed from",
                       "a prediction is one value per term: it cannot depend on a random "
                       "draw; predict from the lets that use no sampled index")
        return self.finished(stmt, e, "predict")

    # -------------------------------------------------------- reg and the degree split
    def reg(self, stmt: syn.Reg):
        kind = stmt.kind.id
        if kind not in ("l1", "l2"):
            self.error(stmt.kind, f"unknown regularizer '{kind}'",
                       self.spec.did_you_mean(kind, ["l1", "l2"]) or "use l1(LAMBDA) or l2(LAMBDA)")
        lam = stmt.lam.value
        if lam < 0:
            self.error(stmt.lam, f"a regularization weight must not be negative, not "
                                 f"{stmt.lam.text}", f"e.g. reg {kind}(1e-4) on ...")
        targets, seen = [], set()
        for target in stmt.targets:
            param, rows, coord, deg, text = self.reg_target(target, stmt.unscaled)
            if text in seen:
                self.error(target, f"'{text}' is listed twice in this reg", "list each target once")
            seen.add(text)
            targets.append((param, coord, deg, text))
        out = []
        for param, coord, deg, text in self.shared_degrees(targets):

            def share(c, deg=deg):
                pen = ir.Binary("^", c, ir.Const(2.0)) if kind == "l2" else ir.Func("abs", (c,))
                pen = ir.Binary("*", ir.Const(lam), pen)
                return pen if deg is None else ir.Binary("/", pen, deg)

            expr = coord(share)
            out.append(ir.RegTerm(kind, lam, text, param, stmt.unscaled, expr, stmt.line))
        return out

    def shared_degrees(self, targets):
        """Targets of one reg line on one param (w[a], w[c]; E[h[i]], E[t[i]]; Q[i], Q[j])
        divide by one degree: a coordinate's touches through any of them. Each target's own
        count would give a coordinate reached through two targets its penalty twice over an
        epoch, not the LAMBDA * ||theta||^2 of LANGUAGE.md's degree split."""
        groups = {}
        for param, _, deg, _ in targets:
            if deg is not None and deg.index:       # not a whole param, not unscaled
                groups.setdefault(param, []).append(deg)
        out = []
        for param, coord, deg, text in targets:
            group = groups.get(param, [])
            if len(group) > 1 and deg is not None and deg.index:
                parts = tuple(next(s for s in self.degs.values() if s.name == d.name)
                              for d in group)
                key = ("sum",) + tuple(s.name for s in parts)
                spec = ir.DegSpec(f"_deg{self.index}__sum{len(self.degs)}", "sum", None, None,
                                  self.spec.params[param].dims[0], parts=parts)
                deg = self.deg_node(key, spec, deg.index)
            out.append((param, coord, deg, text))
        return out

    def deferred(self, reg: ir.RegTerm, losses, regs) -> ir.RegTerm:
        """`reg l2 on w` (or `reg l1 on w`) of a whole 1-D unconstrained param costs O(size
        of w) per term if every term steps every coordinate. Where the block's losses read w
        at one index pattern (w[j] over a sparse row's nonzeros, w[u], w[y[i]]) or not at
        all, the update instead steps the coordinates the term reads, and the rest of the
        penalty is applied per coordinate around each epoch (ir.Deferred); the objective is
        unchanged. Not where another reg of the block targets the same param (an l1 beside
        an l2, two l2s, a row target beside the whole): the steps deferred apart would not
        compose into the term's exact step (found by the differential fuzz)."""
        p = self.spec.params[reg.param]
        if len(p.dims) != 1 or reg.target != p.name or p.constraint is not None:
            return reg
        if sum(r.param == p.name for r in regs) > 1:
            return reg
        patterns = {}
        for e, _ in losses:
            for n in _nodes(e):
                if isinstance(n, ir.ParamAt) and n.name == p.name:
                    patterns[self.touch_key(n.index[0])] = n.index[0]
        if None in patterns or len(patterns) > 1:
            return reg          # read at a dense or sampled index, or at several patterns
        every = self.deg_node(("all",), ir.DegSpec(f"_n{self.index}", "all", None, None, None),
                              ())
        if not patterns:
            return replace(reg, deferred=ir.Deferred(None, None, every.name))
        (key, var), = patterns.items()
        if key[0] == "support":
            touch = self.deg_node(key, self.support_deg(var.source[0], var.at, var.dim), ())
            var = self.fresh(var.dim, "sparse", var.source)
        elif key[0] == "var":
            touch = self.deg_node(key, ir.DegSpec(f"_deg{self.index}_{var.name}", "var",
                                                  var.name, None, var.dim), ())
        else:
            data, at = var.source[:2]
            touch = self.deg_node(key, ir.DegSpec(f"_deg{self.index}_{data}_{at}", "indirect",
                                                  at, data, var.dim), ())
        at = ir.ParamAt(p.name, (var,))
        share = ir.Binary("*", ir.Const(reg.lam), ir.Binary("^", at, ir.Const(2.0))
                          if reg.kind == "l2" else ir.Func("abs", (at,)))
        if not reg.unscaled:
            share = ir.Binary("/", share, every)
        if var.kind == "sparse":
            share = ir.Sum(var, share)
        return replace(reg, deferred=ir.Deferred(share, touch.name, every.name))

    def touch_key(self, var) -> tuple | None:
        """The coordinates an index reaches in one term, as the key of their degree count;
        None where that is not a few per term (a dense loop, a draw) or where no degree
        counts them: index data read at a summed index or at other index data (b[g[j]] in
        sum(j in X[i]: ...), b[g[h[i]]]), which an "indirect" count (values of the data at
        a term index) does not describe."""
        if not isinstance(var, ir.Var):
            return None
        if var.kind == "sparse" and (var.at in self.tvars or var.at.kind == "indirect"
                                     and var.at.at in self.tvars):
            return ("support", var.source[0], var.source[1])
        if var.kind == "term":
            return ("var", var.name)
        if var.kind == "indirect" and var.at.kind == "term":
            return ("indirect",) + tuple(var.source[:2])
        return None

    def reg_target(self, target, unscaled):
        """-> (param, rows, coord(share) -> Expr, deg Expr | None, text) for one reg target."""
        spec = self.spec
        hint = "a reg target is a param row L[u], a param entry b[u], a whole 1-D param w, " \
               "or a param on a sparse row's support w[X[i]]"
        if isinstance(target, syn.Name):
            p = spec.params.get(target.id)
            if p is None:
                self.not_a_param(target, hint)
            if len(p.dims) >= 2:
                rows = f"sqnorm({p.name}[a])" if len(p.dims) == 2 else \
                    f"sum(b in {p.dims[1]}: sqnorm({p.name}[a, b]))"
                self.error(target, f"a whole {len(p.dims)}-D param '{p.name}' cannot be a reg "
                                   "target (every term would step every entry)",
                           f"penalise the rows the term touches, e.g. {p.name}[u] or "
                           f"{p.name}[X[i]]; where every term reads all of it, write the "
                           f"penalty as a loss line: loss LAMBDA * sum(a in {p.dims[0]}: "
                           f"{rows})")
            deg = None if unscaled else self.deg_node(("all",), ir.DegSpec(
                f"_n{self.index}", "all", None, None, None), ())
            if not p.dims:
                return p.name, None, lambda share: share(ir.ParamAt(p.name, ())), deg, p.name
            k = self.fresh(p.dims[0], "dense")
            return (p.name, None, lambda share: ir.Sum(k, share(ir.ParamAt(p.name, (k,)))),
                    deg, p.name)
        if isinstance(target, syn.Index) and len(target.args) > 1 and \
                target.name.id in spec.params:
            return self.row_of_3d(target, unscaled, hint)
        if not isinstance(target, syn.Index) or len(target.args) != 1:
            self.error(target, "this is not a reg target", hint)
        p = spec.params.get(target.name.id)
        if p is None:
            self.not_a_param(target.name, hint)
        if not p.dims:
            self.error(target, f"'{p.name}' is 0-D: write it without an index", hint)
        arg = target.args[0]
        text = f"{p.name}[{self._text(arg)}]"
        if self.is_index_datum(arg):      # W[y[i]]: the row of the term's label
            var = self.index_var(arg)
            self.check_dim(arg, p, 0, var)
            data, at = var.source[:2]
            via = None
            if var.at.kind == "indirect" and var.at.at.kind == "term":    # c[g[it[i]]]
                via, at = var.at.source[:2]
            elif var.at.kind != "term":        # deeper, or at a draw: no degree count
                if not unscaled:
                    self.error(arg, f"the degree split of a reg target needs index data read "
                                    f"at the block's index or at index data read there, not "
                                    f"at '{at}'", "append 'unscaled' to the reg line (every "
                                                  "touch penalised in full)")
                return self.row_target(p, var, None, text)
            name = f"_deg{self.index}_{data}_{at}" if via is None else \
                f"_deg{self.index}v_{data}_{via}_{at}"
            deg = None if unscaled else self.deg_node(
                ("indirect", data, at) + ((via,) if via else ()),
                ir.DegSpec(name, "indirect", at, data, var.dim, via=via), (var,))
            return self.row_target(p, var, deg, text)
        if isinstance(arg, syn.Name) and isinstance(self.scope.get(arg.id), ir.Var) \
                and self.scope[arg.id].kind == "draws":     # Q[n]: every row n[s] draws
            n = self.scope[arg.id]
            s = self.fresh(n.source[1], "dense")
            var = ir.draw(n.name, n.source[0], s, n.dim)
            self.check_dim(arg, p, 0, var)
            count = self.spec.consts[n.source[1]]
            deg = None if unscaled else self.deg_node(
                ("sample", n.name), ir.DegSpec(f"_deg{self.index}_s_{n.name}", "sample",
                                               n.name, n.source[0], n.dim, count), (var,))
            name, _, coord, deg, text = self.row_target(p, var, deg, text)
            return name, var, lambda share: ir.Sum(s, coord(share)), deg, text
        if isinstance(arg, syn.Name) and isinstance(self.scope.get(arg.id), ir.Var) \
                and self.scope[arg.id].kind == "sample":     # Q[j] for a sampled j
            var = self.scope[arg.id]
            self.check_dim(arg, p, 0, var)
            deg = None if unscaled else self.deg_node(
                ("sample", var.name), ir.DegSpec(f"_deg{self.index}_s_{var.name}", "sample",
                                                 var.name, var.source[0], var.dim), (var,))
            return self.row_target(p, var, deg, text)
        if isinstance(arg, syn.Name) and not isinstance(self.scope.get(arg.id), Typed):
            var = self.scope.get(arg.id)
            if not isinstance(var, ir.Var) or var.kind != "term":
                if isinstance(var, ir.Var):
                    self.error(arg, f"'{arg.id}' is not an index of this block", hint)
                if arg.id in spec.names:
                    self.error(arg, f"the {spec.names[arg.id][0]} '{arg.id}' is not an index",
                               hint)
                self.unknown(arg)
            self.check_dim(arg, p, 0, var)
            deg = None if unscaled else self.deg_node(
                ("var", var.name), ir.DegSpec(f"_deg{self.index}_{var.name}", "var", var.name,
                                             None, var.dim), (var,))
            return self.row_target(p, var, deg, text)
        row = self.expr(arg)
        if row.shape.kind != "sparse":
            self.error(arg, f"the index of a reg target must be an index or a sparse row, "
                            f"not {row.shape}", hint)
        if row.shape.dim != p.dims[0]:
            self.error(arg, f"'{p.name}' has rows over {p.dims[0]}, but the columns of "
                            f"{row.shape.data} are over {row.shape.dim}",
                       f"a target {p.name}[X[i]] needs X's columns over {p.dims[0]}")
        j = self.fresh(row.shape.dim, "sparse", sparse_var("", row.shape).source)
        rowvar = row.shape.row
        if rowvar.kind == "indirect" and rowvar.at.kind != "term":
            self.error(arg, f"a reg target reads index data at the block's index, not at "
                            f"'{rowvar.at.name}'",
                       f"e.g. {p.name}[{row.shape.data}[{rowvar.source[0]}"
                       f"[{self.tvars[0].name}]]]")
        deg = None if unscaled else self.deg_node(
            ("support", row.shape.data, rowvar.name),
            self.support_deg(row.shape.data, rowvar, row.shape.dim), (j,))
        _, _, coord, _, _ = self.row_target(p, j, deg, text)
        return p.name, j, lambda share: ir.Sum(j, coord(share)), deg, text

    def row_of_3d(self, target: syn.Index, unscaled: bool, hint: str):
        """V[a, b] of a 3-D param, a and b fixed for the term (V[u, g[v]]): its row over the
        last dim, penalised in full at every touch (`unscaled`: the degree split would count
        the terms of each (a, b) pair, which the compiler does not)."""
        p = self.spec.params[target.name.id]
        text = f"{p.name}[{', '.join(self._text(a) for a in target.args)}]"
        if len(p.dims) != 3 or len(target.args) != 2:
            self.error(target.args[1], f"a reg target takes one index (the rows of '{p.name}' "
                                       "it penalises, every entry of each), or two for a row "
                                       "of a 3-D param",
                       f"write {p.name}[{self._text(target.args[0])}]; or, to penalise "
                       f"{text} alone at every touch (as `unscaled` would), a loss line: "
                       f"loss LAMBDA * {text}^2; " + hint)
        idx = tuple(self.index_var(a) for a in target.args)
        for pos, (a, v) in enumerate(zip(target.args, idx)):
            self.check_dim(a, p, pos, v)
            if not v.per_term:
                self.error(a, f"a reg target's index is fixed for the term, not '{v.name}'",
                           f"e.g. {p.name}[u, g[v]] with indices of the block")
        if not unscaled:
            self.error(target, f"'{text}' (one row of a 3-D param) is penalised only "
                               "`unscaled`", f"append 'unscaled' to the reg line, or penalise "
                                         f"{p.name}[{self._text(target.args[0])}] (with the "
                                         "degree split)")
        k = self.fresh(p.dims[2], "dense")
        return (p.name, idx[0], lambda share: ir.Sum(k, share(ir.ParamAt(p.name, idx + (k,)))),
                None, text)

    def support_deg(self, data: str, rowvar: ir.Var, dim: str) -> ir.DegSpec:
        """The column counts of the rows of `data` the terms pick with `rowvar`: a term index,
        or index data read at one (X[better[p]]: a row counts once per term picking it)."""
        if rowvar.kind == "indirect":
            via, at = rowvar.source[:2]
            return ir.DegSpec(f"_deg{self.index}v_{data}_{via}_{at}", "support", at, data, dim,
                              via=via)
        return ir.DegSpec(self.support_deg_name(data, rowvar), "support", rowvar.name, data,
                          dim)

    def support_deg_name(self, data: str, rowvar: ir.Var) -> str:
        """_deg<block>_<data>; the rows of one data picked by the block's other index
        (r[u] and r[v]) get _deg<block>r<position>_<data> (no user name can make either)."""
        plain = f"_deg{self.index}_{data}"
        key = ("support", data, rowvar.name)
        if all(k == key or d.name != plain for k, d in self.degs.items()):
            return plain
        return f"_deg{self.index}r{self.tvars.index(rowvar)}_{data}"

    def row_target(self, p: ir.Param, var: ir.Var, deg, text):
        """The reg target p[var]: an entry of a 1-D param, or every entry of the row (of a
        3-D param: the matrix p[var, :, :]) summed."""
        ks = tuple(self.fresh(d, "dense") for d in p.dims[1:])

        def coord(share):
            e = share(ir.ParamAt(p.name, (var,) + ks))
            for k in reversed(ks):
                e = ir.Sum(k, e)
            return e
        return p.name, var, coord, deg, text

    def is_index_datum(self, node) -> bool:
        """Whether node reads index data, y[i] (which then stands for an index)."""
        if not isinstance(node, syn.Index) or len(node.args) != 1:
            return False
        d = self.spec.data.get(node.name.id)
        return d is not None and d.kind == "index"

    def not_a_param(self, name: syn.Name, hint):
        spec = self.spec
        if name.id in spec.names:
            self.error(name, f"'{name.id}' is {_a(spec.names[name.id][0])}; a reg target is a "
                             "param", hint)
        if isinstance(self.scope.get(name.id), Typed):
            self.error(name, f"'{name.id}' is a let value; a reg target is a param", hint)
        self.unknown(name)

    def deg_node(self, key, spec: ir.DegSpec, index) -> ir.Deg:
        self.degs.setdefault(key, spec)
        return ir.Deg(self.degs[key].name, index)

    def _text(self, node) -> str:
        """An expression as the user wrote it, up to spacing and parentheses (rebuilt from
        the tree: a cut of the source line ends at a space, not at the expression's end)."""
        if isinstance(node, syn.Name):
            return node.id
        if isinstance(node, syn.Num):
            return node.text
        if isinstance(node, syn.Index):
            return f"{node.name.id}[{', '.join(self._text(a) for a in node.args)}]"
        if isinstance(node, syn.Call):
            return f"{node.fn}({', '.join(self._text(a) for a in node.args)})"
        if isinstance(node, syn.Neg):
            return f"-{self._text(node.operand)}"
        if isinstance(node, syn.BinOp):
            return f"({self._text(node.left)} {node.op} {self._text(node.right)})"
        if isinstance(node, syn.Component):
            return f"({self._text(node.value)})[{self._text(node.index)}]"
        if isinstance(node, syn.SumOver):
            return f"sum({node.var.id} in {self._text(node.source)}: {self._text(node.body)})"
        raise TypeError(f"no text for {node!r}")

    # -------------------------------------------------------- expressions
    def unknown(self, name: syn.Name):
        n, spec = name.id, self.spec
        if n in syn.KEYWORDS:
            self.error(name, f"'{n}' is a keyword, not a value", "keywords cannot be used as names")
        if n in spec.block_vars:
            self.error(name, f"the index '{n}' is used outside its block",
                       f"'{n}' is bound by the block on line {spec.block_vars[n]}")
        if n in self.sum_vars:
            self.error(name, f"the index '{n}' is used outside its sum(...)",
                       f"'{n}' is bound by the sum on line {self.sum_vars[n]} and only inside it")
        if n in spec.block_lets:
            block_line, let_line = spec.block_lets[n]
            if block_line == self.block.line:
                self.error(name, f"the let '{n}' is used before its line (line {let_line})",
                           "move the 'let' above the lines that use it")
            self.error(name, f"the let '{n}' belongs to the block on line {block_line}",
                       "a let is visible only inside its own block")
        if n in ALL_FUNCS:
            self.error(name, f"'{n}' is a function", f"call it: {n}(...)")
        candidates = (set(spec.names) | set(self.scope)) - {n}
        self.error(name, f"unknown name '{n}'", spec.did_you_mean(n, candidates) or
                   "declare it first with dim, const, data, param or let")

    def indirect_var(self, node: syn.Index) -> ir.Var:
        """y[i] used as an index: index data read at an index fixed for the term."""
        d = self.spec.data[node.name.id]
        at = self.index_var(node.args[0])
        self.check_dim(node.args[0], d, 0, at)
        if at.kind == "indirect" and not at.per_term:
            self.error(node.args[0], f"index data read at '{at.name}', itself index data read "
                                     "at a summed index, is not supported",
                       f"read {d.name} at an index bound by 'for', 'sum' or 'sample', or at "
                       "index data read at the block's index")
        return ir.indirect(d.name, at, d.of)

    def check_dim(self, node, decl, position, var: ir.Var):
        want = decl.dims[position]
        if var.dim != want and var.kind == "indirect":
            what = "param" if isinstance(decl, ir.Param) else "data"
            self.error(node, f"the index data '{var.source[0]}' points into {var.dim}, but "
                             f"position {position + 1} of {what} '{decl.name}' is over {want}",
                       f"index data used at a position over {want} must be declared "
                       f"index({want})")
        if var.dim != want:
            what = "param" if isinstance(decl, ir.Param) else "data"
            self.error(node, f"{what} '{decl.name}' is indexed by {want} at position "
                             f"{position + 1}, but '{var.name}' ranges over {var.dim}",
                       "an index must range over the dim declared at that position")

    def index_var(self, node) -> ir.Var:
        hint = "index with a name bound by 'for', 'sum' or 'sample', or with index data y[i]"
        if self.is_index_datum(node):
            return self.indirect_var(node)
        if self.is_draw(node):
            return self.draw_var(node)
        if not isinstance(node, syn.Name):
            self.error(node, "an index must be a name bound by 'for', 'sum' or 'sample', or "
                             "index data such as y[i]", hint)
        v = self.scope.get(node.id)
        if isinstance(v, ir.Var):
            if v.kind == "draws":
                count = v.source[1]
                self.error(node, f"'{node.id}' holds {count} draws, not one index",
                           f"read the s-th as {node.id}[s] inside sum(s in {count}: ...)")
            if v.kind == "sample" and self.in_predict:
                self.error(node, f"'predict' may not use the sampled index '{node.id}'",
                           "a prediction is one value per term: it cannot depend on a random "
                           "draw")
            return v
        if v is not None:
            self.error(node, f"'{node.id}' is a let value, not an index", hint)
        if node.id in self.spec.names:
            self.error(node, f"'{node.id}' is {_a(self.spec.names[node.id][0])}, not an index",
                       hint)
        self.unknown(node)

    def expr(self, node) -> Typed:
        method = getattr(self, "x_" + type(node).__name__)
        return method(node)

    def x_Num(self, node: syn.Num):
        c = ir.Const(node.value)
        return Typed(SCALAR, lambda k: c, node)

    def x_Name(self, node: syn.Name):
        v = self.scope.get(node.id)
        if isinstance(v, Typed):
            return v
        if isinstance(v, ir.Var):
            self.error(node, f"the index '{node.id}' is not a value",
                       f"indices select entries, e.g. y[{node.id}]; where its number is "
                       f"meant (an expected rank, a position's weight), give the numbers as "
                       f"data, data pos[{v.dim}] : real holding 0, 1, 2, ..., read as "
                       f"pos[{node.id}]")
        spec = self.spec
        if node.id in spec.params:
            p = spec.params[node.id]
            if not p.dims:
                e = ir.ParamAt(p.name, ())
                return Typed(SCALAR, lambda k: e, node)
            if len(p.dims) == 1:
                return Typed(Shape("dense", p.dims[0]), lambda k: ir.ParamAt(p.name, (k,)), node)
            rows = ", ".join(p.dims[:-1])
            self.error(node, f"'{p.name}' is a {len(p.dims)}-D param: use one of its rows, e.g. "
                             f"{p.name}[{rows}]", "a whole matrix has no meaning in an expression")
        if node.id in spec.data:
            d = spec.data[node.id]
            if not d.dims:                  # a scalar given at fit time
                e = ir.DataAt(d.name, ())
                return Typed(SCALAR, lambda k: e, node)
            if len(d.dims) == 1:
                return Typed(Shape("dense", d.dims[0]), lambda k: ir.DataAt(d.name, (k,)), node)
            self.error(node, f"'{d.name}' is 2-D data: use one of its rows, e.g. {d.name}[i]",
                       "a whole matrix has no meaning in an expression")
        if node.id in spec.consts:          # a const is also its number (sum(...) / K)
            c = ir.Const(float(spec.consts[node.id]))
            return Typed(SCALAR, lambda k: c, node)
        if node.id in spec.names:
            self.error(node, f"the {spec.names[node.id][0]} '{node.id}' is not a value",
                       f"a dim or const is an extent: sum over it with sum(k in {node.id}: ...)")
        self.unknown(node)

    def x_Index(self, node: syn.Index):
        spec, name = self.spec, node.name.id
        decl = spec.params.get(name) or spec.data.get(name)
        if decl is None and isinstance(self.scope.get(name), Typed):    # z[y[i]] of a let z
            return self.component(node, self.scope[name], node.args)
        if decl is None:
            if name in self.scope:
                what = "let value" if isinstance(self.scope[name], Typed) else "index"
                self.error(node.name, f"'{name}' is {_a(what)} and cannot be indexed",
                           "only data and params are indexed")
            if name in spec.names:
                self.error(node.name, f"the {spec.names[name][0]} '{name}' cannot be indexed",
                           "only data and params are indexed")
            self.unknown(node.name)
        is_param = isinstance(decl, ir.Param)
        if not decl.dims:
            self.error(node, f"'{name}' is 0-D: write it without an index",
                       f"write {name}, not {name}[...]")
        if len(node.args) > len(decl.dims):
            self.error(node.args[len(decl.dims)], f"'{name}' has {len(decl.dims)} "
                       f"dim{'s' if len(decl.dims) > 1 else ''} but is given {len(node.args)} "
                       "indices", f"'{name}' is declared as {name}[{', '.join(decl.dims)}]")
        if len(node.args) == 1 and isinstance(node.args[0], syn.Index) and is_param \
                and not self.is_index_datum(node.args[0]) and not self.is_draw(node.args[0]):
            self.error(node, f"'{name}[{self._text(node.args[0])}]' (a param on a sparse row's "
                             "support) is only a reg target",
                       f"in an expression use dot({self._text(node.args[0])}, {name}) or "
                       f"sum(j in {self._text(node.args[0])}: ...)")
        idx = tuple(self.index_var(a) for a in node.args)
        for pos, (a, v) in enumerate(zip(node.args, idx)):
            self.check_dim(a, decl, pos, v)
        sparse = not is_param and decl.kind == "sparse"
        if sparse:
            return self.sparse_index(node, decl, idx)
        if len(idx) == len(decl.dims):
            e = (ir.ParamAt if is_param else ir.DataAt)(name, idx)
            return Typed(SCALAR, lambda k: e, node)
        if len(idx) < len(decl.dims) - 1:      # V[j] of a 3-D param: a matrix
            self.error(node, f"'{name}[{', '.join(self._text(a) for a in node.args)}]' of the "
                             f"{len(decl.dims)}-D param '{name}' is a matrix, which has no "
                             "meaning in an expression",
                       f"read a vector over {decl.dims[-1]} with {len(decl.dims) - 1} indices, "
                       f"e.g. {name}[{', '.join(decl.dims[:-1])}], or one entry with "
                       f"{len(decl.dims)}")
        cls = ir.ParamAt if is_param else ir.DataAt
        return Typed(Shape("dense", decl.dims[-1]), lambda k: cls(name, idx + (k,)), node)

    def sparse_index(self, node, decl: ir.Data, idx):
        name = decl.name
        if len(idx) == 1:
            row = idx[0]
            if row.kind in ("sample", "draw"):
                self.error(node.args[0], f"a sampled index does not select a row of sparse "
                                         f"data: '{name}[{row.name}]'",
                           f"draw it in the data instead: one term per tuple, with index data "
                           f"over {row.dim} for the draw (data neg[t] : index({row.dim})) "
                           f"read as {name}[neg[t]] in 'for t in ...'")
            if row.kind not in ("term", "indirect") or not row.per_term:
                self.error(node.args[0], f"a row of sparse data is selected by a block index "
                                         f"or by index data read at one, not by '{row.name}'",
                           f"select the row with the index of a 'for' block, e.g. {name}[i], "
                           f"or with index data at it, e.g. {name}[y[i]]")
            return Typed(Shape("sparse", decl.dims[1], name, row),
                         lambda j: ir.DataAt(name, (row, j)), node)
        a, b = idx
        if a.kind == "term" and b.kind == "term" and self.kind == "entries" \
                and self.block.source.id == name and (a, b) == self.tvars:
            e = ir.DataAt(name, (a, b))
            return Typed(SCALAR, lambda k: e, node)
        if b.kind == "sparse" and b.source[:2] == (name, a.name):
            e = ir.DataAt(name, (a, b))
            return Typed(SCALAR, lambda k: e, node)
        if a.kind == "term" and b.kind == "term" and self.kind == "entries" \
                and (a, b) == self.tvars and decl.dims == (a.dim, b.dim):
            # another sparse data read at the current entry: a weight per observation, which
            # must store exactly the entries of the block's data (checked at fit time)
            e = ir.DataAt(name, (a, b))
            return Typed(SCALAR, lambda k: e, node)
        self.error(node, f"'{name}[{a.name}, {b.name}]' reads an entry of sparse data by "
                         "lookup, which the compiler does not do",
                   f"read stored values as {name}[i, j] inside sum(j in {name}[i]: ...), or "
                   f"the current entry of 'for (u, v) in {name}' as {name}[u, v]")

    def x_Component(self, node: syn.Component):
        return self.component(node, self.expr(node.value), (node.index,))

    def component(self, node, t: Typed, args) -> Typed:
        """v[c]: the component of a dense vector at an index over its dim (z[y[i]])."""
        if t.shape.kind != "dense":
            self.error(node, f"only a dense vector has components, but this is {t.shape}",
                       "index a vector-valued let or (EXPR) with one index over its dim")
        if len(args) != 1:
            self.error(args[1] if len(args) > 1 else node,
                       f"a vector has one index, but this is given {len(args)}",
                       "write v[c] with c over the vector's dim")
        var = self.index_var(args[0])
        if var.dim != t.shape.dim:
            self.error(args[0], f"this vector is over {t.shape.dim}, but '{self._text(args[0])}'"
                                f" ranges over {var.dim}",
                       f"index it with an index over {t.shape.dim}")
        e = t.build(var)
        return Typed(SCALAR, lambda k: e, node)

    def x_Neg(self, node: syn.Neg):
        t = self.expr(node.operand)
        self.no_sparse(t, "-")
        return Typed(t.shape, lambda k: ir.Neg(t.build(k)), node)

    def no_sparse(self, t: Typed, op: str):
        if t.shape.kind == "sparse":
            self.error(t.node, f"a sparse row cannot be used with '{op}'",
                       "use dot(X[i], w) or sum(j in X[i]: X[i, j] * ...)")

    def broadcast(self, node, a: Typed, b: Typed, combine, op) -> Typed:
        self.no_sparse(a, op)
        self.no_sparse(b, op)
        if a.shape.kind == "dense" and b.shape.kind == "dense" and a.shape.dim != b.shape.dim:
            self.error(node, f"'{op}' combines {a.shape} with {b.shape}",
                       "vectors combine elementwise only over the same dim")
        shape = a.shape if a.shape.kind == "dense" else b.shape
        return Typed(shape, lambda k: combine(a.build(k), b.build(k)), node)

    def x_BinOp(self, node: syn.BinOp):
        a, b = self.expr(node.left), self.expr(node.right)
        if node.op == "^" and b.shape.kind != "scalar":
            self.error(node.right, f"an exponent must be a scalar, not {b.shape}",
                       "raise a vector to a scalar power, e.g. (x[u] - x[v])^2")
        return self.broadcast(node, a, b, lambda x, y: ir.Binary(node.op, x, y), node.op)

    def x_SumOver(self, node: syn.SumOver):
        name = node.var.id
        self.spec.new_name(node.var, "index")
        if name in self.scope or name in self.spec.names:
            self.error(node.var, f"the name '{name}' is already in use ({self.holder(name)})",
                       "choose another index name")
        src = node.source
        if isinstance(src, syn.Name) and (src.id in self.spec.dims or src.id in self.spec.consts):
            var = ir.Var(name, src.id, "dense")
        else:
            if isinstance(src, syn.Name) and isinstance(self.scope.get(src.id), ir.Var):
                self.error(src, f"sum({name} in ...) runs over a dim, a const or a sparse row, "
                                f"not the index '{src.id}'",
                           f"e.g. sum({name} in X[{src.id}]: ...) over the stored entries of a "
                           "row")
            if isinstance(src, syn.Name) and src.id not in self.scope and \
                    src.id not in self.spec.names:
                self.error(src, f"unknown dim '{src.id}'", self.spec.did_you_mean(
                    src.id, self.spec.dims + list(self.spec.consts)) or
                    "sum(k in D: ...) runs over a dim or const D")
            row = self.expr(src)
            if row.shape.kind != "sparse":
                self.error(src, f"sum({name} in ...) runs over a dim, a const or a sparse row, "
                                f"not {row.shape}", "e.g. sum(j in X[i]: X[i, j] * w[j])")
            var = sparse_var(name, row.shape)
        if self.let_binds(node.body, name):   # a let inside has its own sum over `name`
            var = self.fresh(var.dim, var.kind, var.source)
        self.sum_vars.setdefault(name, node.line)
        body = self.sum_body(node, var)
        if body.shape.kind == "scalar":
            e = ir.Sum(var, body.scalar())
            return Typed(SCALAR, lambda k: e, node)
        return Typed(body.shape, lambda k: ir.Sum(var, body.build(k)), node)

    def let_binds(self, body: syn.Node, name: str) -> bool:
        """Whether a let used in `body` sums over an index called `name` (inlined under a sum
        over `name`, the two would share one name: ours is then renamed). A let read as a
        component, `z[f]`, is the name of an Index node (not among its children)."""
        stack = [body]
        while stack:
            node = stack.pop()
            if isinstance(node, syn.Name) and isinstance(self.scope.get(node.id), Typed) \
                    and _binds(self.scope[node.id], name):
                return True
            stack.extend(syn.children(node))
            if isinstance(node, syn.Index):
                stack.append(node.name)
        return False

    def sum_body(self, node: syn.SumOver, var: ir.Var) -> Typed:
        self.scope[node.var.id] = var
        try:
            body = self.expr(node.body)
        finally:
            del self.scope[node.var.id]
        if body.shape.kind == "sparse":
            self.error(node.body, "the body of a sum cannot be a sparse row",
                       "reduce the row inside, e.g. sum(k in D: dot(X[i], V[k]))")
        return body

    def x_Call(self, node: syn.Call):
        fn = node.fn
        if fn not in ALL_FUNCS:
            if fn in self.spec.names or fn in self.scope:
                what = self.spec.names[fn][0] if fn in self.spec.names else \
                    ("let value" if isinstance(self.scope[fn], Typed) else "index")
                self.error(node, f"'{fn}' is {_a(what)}, not a function",
                           "index it with [...]" if what in ("data", "param") else
                           "only functions are called with (...)")
            self.error(node, f"unknown function '{fn}'", self.spec.did_you_mean(fn, ALL_FUNCS) or
                       "the functions are " + ", ".join(sorted(ALL_FUNCS)))
        if fn in ONE_ARG_REDUCTIONS and len(node.args) == 1:
            return self.vector_reduction(node, fn, self.expr(node.args[0]))
        if len(node.args) != ALL_FUNCS[fn]:
            n = ALL_FUNCS[fn]
            self.error(node, f"{fn}() takes {n} argument{'s' if n > 1 else ''}, "
                             f"but is given {len(node.args)}", f"write {SIGNATURES[fn]}")
        if fn in PREDICT_ONLY and not self.in_predict:
            self.error(node, f"{fn}() is allowed only in 'predict'",
                       "it has no useful gradient, so a loss cannot use it")
        args = [self.expr(a) for a in node.args]
        if fn == "logsumexp":
            return self.vector_reduction(node, fn, args[0])
        if fn == "softmax":
            v = args[0]
            if v.shape.kind != "dense":
                self.error(node.args[0], f"softmax() needs a dense vector, not {v.shape}",
                           "softmax(v) normalises a vector over a dim, e.g. softmax(z)")
            lse = self.vector_reduction(node, "logsumexp", v).scalar()
            return Typed(v.shape, lambda k: ir.Func("exp", (ir.Binary("-", v.build(k), lse),)),
                         node)
        if fn in REDUCTIONS:
            return self.reduction(node, fn, args)
        if fn == "argmax":
            v = args[0]
            if v.shape.kind != "dense":
                self.error(node.args[0], f"argmax() needs a dense vector, not {v.shape}",
                           "argmax(v) is the index of the largest entry of a row, e.g. "
                           "argmax(x[n])")
            k = self.fresh(v.shape.dim, "dense")
            e = ir.ArgMax(k, v.build(k))
            return Typed(SCALAR, lambda _: e, node)
        if len(args) == 1:
            a = args[0]
            self.no_sparse(a, fn + "()")
            return Typed(a.shape, lambda k: ir.Func(fn, (a.build(k),)), node)
        if fn == "huber" and args[1].shape.kind != "scalar":
            self.error(node.args[1], "huber's delta must be a scalar",
                       "write huber(z, delta) with a number or scalar delta")
        delta = _number(node.args[1]) if fn == "huber" else None
        if delta is not None and delta <= 0:     # huber(z, 0) is 0; below 0 it is concave
            self.error(node.args[1], f"huber's delta must be positive, not {delta:g}",
                       "delta is where the loss turns from quadratic to linear, e.g. "
                       "huber(z, 1)")
        return self.broadcast(node, args[0], args[1], lambda x, y: ir.Func(fn, (x, y)), fn + "()")

    def reduction(self, node, fn, args) -> Typed:
        for a in args:
            if a.shape.kind == "scalar":
                self.error(a.node, f"{fn}() needs a vector, but this is a scalar",
                           "a scalar needs no reduction" if fn != "dot" else "use '*' for scalars")
        if fn == "dot":
            a, b = args
            if a.shape.kind == "sparse" and b.shape.kind == "sparse":
                self.error(node, "dot() of two sparse rows is not supported",
                           "one side of dot() must be dense")
            if b.shape.kind == "sparse":
                a, b = b, a
            if a.shape.dim != b.shape.dim:
                self.error(node, f"dot() of {a.shape} and {b.shape}",
                           "both sides of dot() must be over the same dim")
            k = self.var_for(a.shape)
            e = ir.Sum(k, ir.Binary("*", a.build(k), b.build(k)))
            return Typed(SCALAR, lambda _: e, node)
        v = args[0]
        k = self.var_for(v.shape)
        x = v.build(k)
        body = {"sum": x, "norm1": ir.Func("abs", (x,)),
                "norm2": ir.Binary("^", x, ir.Const(2.0)),
                "sqnorm": ir.Binary("^", x, ir.Const(2.0))}[fn]
        e = ir.Sum(k, body)
        if fn == "norm2":
            e = ir.Func("sqrt", (e,))
        return Typed(SCALAR, lambda _: e, node)

    def vector_reduction(self, node, fn, v: Typed) -> Typed:
        """max(v), min(v), logsumexp(v): a dense vector to a scalar (ir.Reduce)."""
        if v.shape.kind != "dense":
            hint = f"{fn}(v) reduces a dense vector over a dim or const" + \
                (f"; {fn}(a, b) takes two scalars" if fn in ONE_ARG_REDUCTIONS else "")
            self.error(node.args[0] if node.args else node,
                       f"{fn}() of one argument needs a dense vector, not {v.shape}", hint)
        k = self.fresh(v.shape.dim, "dense")
        e = ir.Reduce(fn, k, v.build(k))
        return Typed(SCALAR, lambda _: e, node)

    def var_for(self, shape: Shape) -> ir.Var:
        if shape.kind == "sparse":
            return self.fresh(shape.dim, "sparse", sparse_var("", shape).source)
        return self.fresh(shape.dim, "dense")


# ---------------------------------------------------------------- helpers on built IR


def _memoized(t: Typed) -> Typed:
    """A let's value, built once per index (a let used n times is not rebuilt n times). A
    vector is built once at a probe index and renamed for every other index, so a chain
    of lets is built one link at a time, never by a recursion down the whole chain."""
    cache = {}
    probe = _probe(t)

    def build(k):
        if k not in cache:
            if probe is not None and k != probe:
                cache[k] = _renamed(build(probe), probe, k, {})
            else:
                cache[k] = t.build(k)
        return cache[k]
    return Typed(t.shape, build, t.node)


def _renamed(e: ir.Expr, old: ir.Var, new: ir.Var, memo: dict) -> ir.Expr:
    """e with the index `old` replaced by `new` (depth bounded by MAX_LET_DEPTH)."""
    if e in memo:
        return memo[e]
    if isinstance(e, (ir.DataAt, ir.ParamAt, ir.Deg)):
        out = type(e)(e.name, tuple(ir.renamed_index(v, {old: new}) for v in e.index))
    elif isinstance(e, (ir.Sum, ir.ArgMax)):
        out = type(e)(e.var, _renamed(e.body, old, new, memo))
    elif isinstance(e, ir.Binary):
        out = ir.Binary(e.op, _renamed(e.left, old, new, memo), _renamed(e.right, old, new, memo))
    elif isinstance(e, ir.Neg):
        out = ir.Neg(_renamed(e.operand, old, new, memo))
    elif isinstance(e, ir.Func):
        out = ir.Func(e.name, tuple(_renamed(a, old, new, memo) for a in e.args))
    else:
        out = e
    memo[e] = out
    return out


def _sampled_index(e: ir.Expr) -> str | None:
    """The name of a sampled index (`sample j in D`, or a draw n[s] of `sample n[K]`) that
    expression e reads, directly or through index data read at it; None if it reads none."""
    for node in ir.walk(e):
        for v in getattr(node, "index", ()) + ((node.var,) if isinstance(node, ir.Sum) else ()):
            while isinstance(v, ir.Var):
                if v.kind == "sample":
                    return v.name
                if v.kind == "draw":
                    return v.source[1]
                v = v.at if v.kind in ("indirect", "sparse") else None
    return None


def _undefer_shared(blocks: list) -> list:
    """A deferred reg (ir.Deferred) steps its param apart from the terms' updates, around
    each epoch: exact for its own block's terms, not for another block whose losses read the
    param or whose regs step it (its terms would see the shrink out of order, or step the
    param between the halves). Such regs step every coordinate."""
    read = [set().union(*(_params_of(e) for e, _ in b.losses), (r.param for r in b.regs))
            for b in blocks]
    out = []
    for i, b in enumerate(blocks):
        others = set().union(*(r for j, r in enumerate(read) if j != i))
        regs = tuple(replace(r, deferred=None) if r.deferred and r.param in others else r
                     for r in b.regs)
        out.append(replace(b, regs=regs))
    return out


def _nodes(expr: ir.Expr):
    """Every distinct node of an expression (shared subtrees once), without recursion."""
    seen, stack = set(), [expr]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(node.children())


def _params_of(expr: ir.Expr) -> set[str]:
    return {n.name for n in _nodes(expr) if isinstance(n, ir.ParamAt)}


def _probe(t: Typed) -> ir.Var | None:
    """The index at which a value is built to inspect it (None for a scalar)."""
    return ir.Var("_probe", t.shape.dim, "dense") if t.shape.kind == "dense" else None


def _binds(t: Typed, name: str) -> bool:
    """Whether the built value of t has a sum or argmax over an index called `name`."""
    return any(isinstance(n, (ir.Sum, ir.ArgMax, ir.Reduce)) and n.var.name == name
               for n in _nodes(t.build(_probe(t))))


def _measure(expr: ir.Expr) -> tuple[int, int]:
    """(depth, size) of an expression as a tree, shared subtrees counted at every use; linear
    in the number of distinct nodes, without recursion."""
    memo: dict[int, tuple[int, int]] = {}
    stack = [(expr, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in memo:
            continue
        kids = node.children()
        if ready:
            memo[id(node)] = (1 + max((memo[id(c)][0] for c in kids), default=0),
                              1 + sum(memo[id(c)][1] for c in kids))
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in kids if id(c) not in memo)
    return memo[id(expr)]


def check_module(module: syn.Module, consts: dict | None = None) -> ir.Spec:
    return Checker(module, consts).run()


def check(text: str, consts: dict | None = None) -> ir.Spec:
    """Parse and check .hog source text into the typed IR; raise SpecError on any problem."""
    _not_a_path(text)
    return check_module(syn.parse(text), consts)


def _not_a_path(text) -> None:
    """check() takes text; a path or a shipped spec's name given instead failed as a syntax
    error at its first word ("found the name 'specs'"). Say what to pass."""
    if not isinstance(text, str) or "\n" in text.strip():
        return
    word = text.strip()
    if word.endswith(".hog") or word in shipped.names() or os.path.isfile(word):
        raise SpecError(f"check() takes a spec's text, not a path or a shipped spec's name "
                        f"({word!r}): hogwild_dsl.check(open(path).read()), or "
                        f"hogwild_dsl.load(path) to build it")
