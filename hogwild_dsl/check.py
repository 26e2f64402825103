"""Stage 2, check: syntax tree -> typed IR (`ir.Spec`), or a `SpecError` that points at the place.

Resolves names, reads dims and shapes, types every expression (scalar, dense vector over a dim,
sparse row of data), expands every vector operation into explicit sums (index form, see ir.py),
expands each `reg` into its per-term share (the degree split) and records constraints, inits
and the `train` defaults. Nothing later re-reads the syntax tree.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from . import ir, parse as syn
from .errors import SpecError

DATA_KINDS = {"sparse": 2, "dense": 2, "real": 1, "sign": 1, "binary": 1}
TRAIN_KEYS = {"step", "decay", "epochs", "threads", "seed", "order", "chunk"}
SCALAR_FUNCS = {  # name -> number of arguments
    "abs": 1, "exp": 1, "log": 1, "log1p": 1, "sqrt": 1, "sigmoid": 1, "softplus": 1,
    "relu": 1, "hinge": 1, "sqhinge": 1, "logistic": 1, "max": 2, "min": 2, "huber": 2,
}
REDUCTIONS = {"dot": 2, "sum": 1, "norm1": 1, "norm2": 1, "sqnorm": 1}
PREDICT_ONLY = {"sign": 1, "argmax": 1}
ALL_FUNCS = {**SCALAR_FUNCS, **REDUCTIONS, **PREDICT_ONLY}


# ---------------------------------------------------------------- typed values


@dataclass(frozen=True)
class Shape:
    kind: str                # scalar | dense | sparse
    dim: str | None = None
    data: str | None = None  # sparse: the data and the row var
    row: str | None = None

    def __str__(self):
        if self.kind == "scalar":
            return "a scalar"
        if self.kind == "dense":
            return f"a vector over {self.dim}"
        return f"a sparse row of {self.data} (over {self.dim})"


SCALAR = Shape("scalar")


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
        self.overrides = dict(consts or {})
        self.names: dict[str, tuple[str, syn.Node]] = {}   # global name -> (what, decl)
        self.dims: list[str] = []
        self.consts: dict[str, int] = {}
        self.data: dict[str, ir.Data] = {}
        self.params: dict[str, ir.Param] = {}
        self.block_vars: dict[str, int] = {}   # every term var name -> block line (for messages)

    # -------------------------------------------------------- errors
    def error(self, node, message, hint=None):
        line, column = (node.line, node.column) if node is not None else (None, None)
        raise SpecError(message, line, column, self.source, hint)

    def did_you_mean(self, name, candidates):
        close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
        return f"did you mean '{close[0]}'?" if close else None

    # -------------------------------------------------------- declarations
    def declare(self, name: syn.Name, what: str):
        if name.id.startswith("_"):
            self.error(name, f"the name '{name.id}' starts with '_'",
                       "names starting with '_' are reserved for the compiler")
        if name.id in self.names:
            prev_what, prev = self.names[name.id]
            self.error(name, f"duplicate name '{name.id}' (already declared as a {prev_what} "
                             f"on line {prev.line})", "every name of a spec must be unique")
        self.names[name.id] = (what, name)

    def extent(self, name: syn.Name, what: str) -> str:
        if name.id in self.dims or name.id in self.consts:
            return name.id
        known = self.dims + list(self.consts)
        kind = self.names.get(name.id, (None,))[0]
        if kind is not None:
            self.error(name, f"'{name.id}' is a {kind}, not a dim", f"{what} are indexed by dims "
                       "(declared with 'dim') or consts")
        self.error(name, f"unknown dim '{name.id}'",
                   self.did_you_mean(name.id, known) or "declare it first with 'dim " + name.id + "'")

    def run(self) -> ir.Spec:
        stmts = self.module.statements
        if not stmts or not isinstance(stmts[0], syn.ModelDecl):
            node = stmts[0] if stmts else None
            raise SpecError("a spec starts with 'model NAME'", node.line if node else 1,
                            node.column if node else 1, self.source,
                            "write e.g. 'model svm' as the first statement")
        model = stmts[0].name
        self.declare(model, "model")
        blocks, train = [], {}
        for stmt in stmts[1:]:
            if isinstance(stmt, syn.ModelDecl):
                self.error(stmt, "a second 'model' statement", "a spec describes one model")
            elif isinstance(stmt, syn.DimDecl):
                for n in stmt.names:
                    self.declare(n, "dim")
                    self.dims.append(n.id)
            elif isinstance(stmt, syn.ConstDecl):
                self.const(stmt)
            elif isinstance(stmt, syn.DataDecl):
                self.datum(stmt)
            elif isinstance(stmt, syn.ParamDecl):
                self.param(stmt)
            elif isinstance(stmt, syn.TrainDecl):
                if train:
                    self.error(stmt, "a second 'train' line", "put every key on one 'train' line")
                train = self.train(stmt)
            elif isinstance(stmt, syn.ForBlock):
                blocks.append(stmt)
        for name in self.overrides:
            if name not in self.consts:
                raise SpecError(f"no const named '{name}' to override in this spec",
                                hint=self.did_you_mean(name, self.consts))
        if not blocks:
            self.error(stmts[0], "the spec has no 'for' block, so it has no terms",
                       "add e.g. 'for i in example:' with a 'loss' line")
        self.check_dims_readable()
        checked = [BlockChecker(self, b, i).run() for i, b in enumerate(blocks)]
        predicting = [b for b, c in zip(blocks, checked) if c.predict is not None]
        if len(predicting) > 1:
            second = next(s for s in predicting[1].body if isinstance(s, syn.Predict))
            self.error(second, "a second block with 'predict'", "at most one block has 'predict'")
        return ir.Spec(model.id, tuple(self.dims), tuple(self.consts.items()),
                       tuple(self.data.values()), tuple(self.params.values()), tuple(checked),
                       tuple(train.items()), self.source)

    def const(self, stmt: syn.ConstDecl):
        self.declare(stmt.name, "const")
        value = self.overrides.get(stmt.name.id, stmt.value.value)
        if isinstance(value, float) and value != int(value) or int(value) < 1:
            self.error(stmt.value, f"const '{stmt.name.id}' must be a positive integer, "
                                   f"not {value}")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SpecError(f"const override '{stmt.name.id}' must be an integer, not {value!r}")
        self.consts[stmt.name.id] = int(value)

    def datum(self, stmt: syn.DataDecl):
        self.declare(stmt.name, "data")
        kind = stmt.kind.id
        if kind not in DATA_KINDS:
            self.error(stmt.kind, f"unknown data kind '{kind}'",
                       self.did_you_mean(kind, DATA_KINDS) or "one of " + ", ".join(DATA_KINDS))
        want = DATA_KINDS[kind]
        if len(stmt.dims) != want:
            self.error(stmt.dims[0], f"'{kind}' data has {want} dim{'s' if want > 1 else ''}, "
                                     f"but {stmt.name.id} declares {len(stmt.dims)}",
                       "sparse and dense are 2-D; real, sign and binary are 1-D")
        dims = tuple(self.extent(d, "data") for d in stmt.dims)
        self.data[stmt.name.id] = ir.Data(stmt.name.id, dims, kind, stmt.line)

    def param(self, stmt: syn.ParamDecl):
        self.declare(stmt.name, "param")
        if len(stmt.dims) > 2:
            self.error(stmt.dims[2], "params have at most 2 dims")
        dims = tuple(self.extent(d, "params") for d in stmt.dims)
        constraint = self.constraint(stmt, dims)
        init = self.init(stmt.init, len(dims))
        self.params[stmt.name.id] = ir.Param(stmt.name.id, dims, constraint, init, stmt.line)

    def constraint(self, stmt: syn.ParamDecl, dims) -> ir.Constraint | None:
        c = stmt.constraint
        if c is None:
            return None
        name = stmt.name.id
        if c.kind == "named":
            if c.name.id != "simplex":
                self.error(c.name, f"unknown constraint 'in {c.name.id}'",
                           "constraints are: in simplex, >= 0, in [LO, HI], in ball(R)")
            if not dims:
                self.error(c, f"'in simplex' on the 0-D param '{name}' means nothing",
                           "the simplex constrains a row of a 1-D or 2-D param")
            return ir.Constraint("simplex")
        if c.kind == "call":
            if c.name.id != "ball":
                self.error(c.name, f"unknown constraint 'in {c.name.id}(...)'",
                           "constraints are: in simplex, >= 0, in [LO, HI], in ball(R)")
            if not dims:
                self.error(c, f"'in ball(R)' on the 0-D param '{name}' means nothing",
                           "use a box 'in [-R, R]' for a scalar")
            radius = c.values[0].value
            if radius <= 0:
                self.error(c.values[0], "the radius of a ball must be positive")
            return ir.Constraint("ball", hi=radius)
        if c.kind == "box":
            lo, hi = (v.value for v in c.values)
            if lo > hi:
                self.error(c, f"empty box [{ir.fmt_number(lo)}, {ir.fmt_number(hi)}]",
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
                self.error(init.name, "'= uniform' (rows of 1/k) needs a 1-D or 2-D param")
            return ir.Init("uniform_rows")
        a, b = (v.value for v in init.values)
        if init.name.id == "normal":
            if b < 0:
                self.error(init.values[1], "the standard deviation must not be negative")
            return ir.Init("normal", a, b)
        if init.name.id == "uniform":
            if a > b:
                self.error(init.values[0], "uniform(LO, HI) needs LO <= HI")
            return ir.Init("uniform", a, b)
        self.error(init.name, f"unknown distribution '{init.name.id}'",
                   self.did_you_mean(init.name.id, ["normal", "uniform"]) or
                   "use normal(MEAN, STD) or uniform(LO, HI)")

    def train(self, stmt: syn.TrainDecl) -> dict:
        out = {}
        for key, value in stmt.items:
            if key.id not in TRAIN_KEYS:
                self.error(key, f"unknown train key '{key.id}'",
                           self.did_you_mean(key.id, TRAIN_KEYS) or
                           "keys: " + ", ".join(sorted(TRAIN_KEYS)))
            if key.id in out:
                self.error(key, f"'{key.id}' is given twice on the train line")
            v = value.value
            if key.id in ("epochs", "threads", "seed", "chunk") and (v != int(v) or v < 0):
                self.error(value, f"'{key.id}' must be a non-negative integer")
            if key.id in ("step", "decay") and v <= 0:
                self.error(value, f"'{key.id}' must be positive")
            if key.id in ("threads", "chunk") and v < 1:
                self.error(value, f"'{key.id}' must be at least 1")
            if key.id == "order":
                self.error(key, "'order' is chosen at fit time", "pass order=... to the Trainer")
            out[key.id] = int(v) if key.id in ("epochs", "threads", "seed", "chunk") else v
        return out

    def check_dims_readable(self):
        used = {d for data in self.data.values() for d in data.dims}
        for dim in self.dims:
            if dim not in used:
                node = self.names[dim][1]
                self.error(node, f"the size of dim '{dim}' cannot be read off any data",
                           f"use it in a data declaration, or declare 'const {dim} = N'")


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

    def error(self, node, message, hint=None):
        self.spec.error(node, message, hint)

    def fresh(self, dim: str, kind: str, source=()) -> ir.Var:
        self.counter += 1
        return ir.Var(f"_{'j' if kind == 'sparse' else 'k'}{self.counter}", dim, kind, source)

    # -------------------------------------------------------- the block
    def run(self) -> ir.Block:
        b, spec = self.block, self.spec
        for v in b.vars:
            spec.declare_block_var = None
            if v.id in spec.names:
                self.error(v, f"the index '{v.id}' clashes with the {spec.names[v.id][0]} "
                              f"'{v.id}'", "choose another name for the index")
            if v.id.startswith("_"):
                self.error(v, f"the name '{v.id}' starts with '_'",
                           "names starting with '_' are reserved for the compiler")
        if len(b.vars) == 2 and b.vars[0].id == b.vars[1].id:
            self.error(b.vars[1], f"the two indices of a block must differ")
        src = b.source.id
        if len(b.vars) == 1:
            if src in spec.data:
                self.error(b.source, f"'for {b.vars[0].id} in {src}' runs over data",
                           f"a one-index block runs over a dim; for the stored entries of {src} "
                           f"write 'for (a, b) in {src}:'")
            over = spec.extent(b.source, "blocks") if src in spec.names else None
            if over is None:
                self.error(b.source, f"unknown dim '{src}'",
                           spec.did_you_mean(src, spec.dims + list(spec.consts)))
            if over in spec.consts:
                self.error(b.source, f"a block runs over a dim read off the data, not the const "
                                     f"'{over}'")
            kind, tvars = "rows", (ir.Var(b.vars[0].id, over, "term"),)
        else:
            data = spec.data.get(src)
            if data is None:
                what = spec.names.get(src, (None,))[0]
                self.error(b.source, f"'for ({b.vars[0].id}, {b.vars[1].id}) in {src}' needs "
                                     f"sparse data, but '{src}' is " +
                           (f"a {what}" if what else "unknown"),
                           spec.did_you_mean(src, spec.data) if not what else
                           f"for one term per index of a dim write 'for i in DIM:'")
            if data.kind != "sparse":
                self.error(b.source, f"'for ({b.vars[0].id}, {b.vars[1].id}) in {src}' needs "
                                     f"sparse data, but '{src}' is {data.kind}",
                           "only the stored entries of sparse data are terms")
            kind = "entries"
            tvars = tuple(ir.Var(v.id, d, "term") for v, d in zip(b.vars, data.dims))
        for v in tvars:
            self.scope[v.name] = v
            spec.block_vars.setdefault(v.name, b.line)
        self.tvars = tvars
        self.kind = kind
        losses, regs, predict = [], [], None
        for stmt in b.body:
            if isinstance(stmt, syn.Let):
                self.let(stmt)
            elif isinstance(stmt, syn.Loss):
                losses.append((self.loss(stmt), stmt.line))
            elif isinstance(stmt, syn.Reg):
                regs.extend(self.reg(stmt))
            elif isinstance(stmt, syn.Predict):
                if predict is not None:
                    self.error(stmt, "a second 'predict' in this block", "a block predicts one value")
                predict = self.predict(stmt)
        if not losses:
            self.error(b, "this block has no 'loss'", "add a line 'loss EXPR' to the block")
        for v in tvars:   # term vars are in scope only inside their block
            self.scope.pop(v.name, None)
        return ir.Block(self.index, kind, tvars, src, tuple(losses), tuple(regs),
                        tuple(self.degs.values()), predict, b.line)

    def let(self, stmt: syn.Let):
        name = stmt.name
        if name.id.startswith("_"):
            self.error(name, f"the name '{name.id}' starts with '_'",
                       "names starting with '_' are reserved for the compiler")
        if name.id in self.spec.names or name.id in self.scope:
            what = self.spec.names.get(name.id, ("name",))[0] if name.id in self.spec.names \
                else "let or index"
            self.error(name, f"duplicate name '{name.id}' (already a {what})",
                       "every name of a spec must be unique")
        self.scope[name.id] = self.expr(stmt.value)

    def loss(self, stmt: syn.Loss) -> ir.Expr:
        t = self.expr(stmt.value)
        if t.shape.kind != "scalar":
            self.error(stmt.value, f"a loss must be a scalar, but this is {t.shape}",
                       "reduce it with sum(...), dot(...) or a norm")
        e = t.scalar()
        if not ir.params_of(e):
            self.error(stmt.value, "this loss depends on no param, so training cannot change it",
                       "a loss must involve at least one param")
        return e

    def predict(self, stmt: syn.Predict) -> ir.Expr:
        self.in_predict = True
        try:
            t = self.expr(stmt.value)
        finally:
            self.in_predict = False
        if t.shape.kind != "scalar":
            self.error(stmt.value, f"predict gives one value per term, but this is {t.shape}",
                       "reduce it, e.g. with argmax(...) or dot(...)")
        return t.scalar()

    # -------------------------------------------------------- reg and the degree split
    def reg(self, stmt: syn.Reg):
        kind = stmt.kind.id
        if kind not in ("l1", "l2"):
            self.error(stmt.kind, f"unknown regularizer '{kind}'",
                       self.spec.did_you_mean(kind, ["l1", "l2"]) or "use l1(LAMBDA) or l2(LAMBDA)")
        lam = stmt.lam.value
        if lam < 0:
            self.error(stmt.lam, "a regularization weight must not be negative")
        out, seen = [], set()
        for target in stmt.targets:
            param, rows, coord, deg, text = self.reg_target(target, stmt.unscaled)
            if text in seen:
                self.error(target, f"'{text}' is listed twice in this reg")
            seen.add(text)

            def share(c, deg=deg):
                pen = ir.Binary("^", c, ir.Const(2.0)) if kind == "l2" else ir.Func("abs", (c,))
                pen = ir.Binary("*", ir.Const(lam), pen)
                return pen if deg is None else ir.Binary("/", pen, deg)

            expr = coord(share)
            out.append(ir.RegTerm(kind, lam, text, param, stmt.unscaled, expr, stmt.line))
        return out

    def reg_target(self, target, unscaled):
        """-> (param, rows, coord(share) -> Expr, deg Expr | None, text) for one reg target."""
        spec = self.spec
        hint = "a reg target is a param row L[u], a param entry b[u], a whole 1-D param w, " \
               "or a param on a sparse row's support w[X[i]]"
        if isinstance(target, syn.Name):
            p = spec.params.get(target.id)
            if p is None:
                self.unknown(target)
            if len(p.dims) == 2:
                self.error(target, f"a whole 2-D param '{p.name}' cannot be a reg target", hint)
            deg = None if unscaled else self.deg_node(("all",), ir.DegSpec(
                f"_n{self.index}", "all", None, None, None), ())
            if not p.dims:
                return p.name, None, lambda share: share(ir.ParamAt(p.name, ())), deg, p.name
            k = self.fresh(p.dims[0], "dense")
            return (p.name, None, lambda share: ir.Sum(k, share(ir.ParamAt(p.name, (k,)))),
                    deg, p.name)
        if not isinstance(target, syn.Index) or len(target.args) != 1:
            self.error(target, "this is not a reg target", hint)
        p = spec.params.get(target.name.id)
        if p is None:
            if target.name.id in spec.data:
                self.error(target.name, f"'{target.name.id}' is data; a reg target is a param", hint)
            self.unknown(target.name)
        if not p.dims:
            self.error(target, f"'{p.name}' is 0-D: write it without an index", hint)
        arg = target.args[0]
        text = f"{p.name}[{self._text(arg)}]"
        if isinstance(arg, syn.Name):
            var = self.scope.get(arg.id)
            if not isinstance(var, ir.Var) or var.kind != "term":
                if arg.id in self.spec.block_vars or isinstance(var, ir.Var):
                    self.error(arg, f"'{arg.id}' is not an index of this block", hint)
                self.unknown(arg)
            self.check_dim(arg, p, 0, var)
            deg = None if unscaled else self.deg_node(
                ("var", var.name), ir.DegSpec(f"_deg{self.index}_{var.name}", "var", var.name,
                                             None, var.dim), (var,))
            if len(p.dims) == 1:
                return p.name, var, lambda share: share(ir.ParamAt(p.name, (var,))), deg, text
            k = self.fresh(p.dims[1], "dense")
            return (p.name, var, lambda share: ir.Sum(k, share(ir.ParamAt(p.name, (var, k)))),
                    deg, text)
        row = self.expr(arg)
        if row.shape.kind != "sparse":
            self.error(arg, f"the index of a reg target must be an index or a sparse row, "
                            f"not {row.shape}", hint)
        if row.shape.dim != p.dims[0]:
            self.error(arg, f"'{p.name}' has rows over {p.dims[0]}, but the columns of "
                            f"{row.shape.data} are over {row.shape.dim}")
        j = self.fresh(row.shape.dim, "sparse", (row.shape.data, row.shape.row))
        rowvar = self.scope[row.shape.row]
        deg = None if unscaled else self.deg_node(
            ("support", row.shape.data, rowvar.name),
            ir.DegSpec(f"_deg{self.index}_{row.shape.data}", "support", rowvar.name,
                       row.shape.data, row.shape.dim), (j,))
        if len(p.dims) == 1:
            return p.name, j, lambda share: ir.Sum(j, share(ir.ParamAt(p.name, (j,)))), deg, text
        k = self.fresh(p.dims[1], "dense")
        return (p.name, j, lambda share: ir.Sum(j, ir.Sum(k, share(ir.ParamAt(p.name, (j, k))))),
                deg, text)

    def deg_node(self, key, spec: ir.DegSpec, index) -> ir.Deg:
        self.degs.setdefault(key, spec)
        return ir.Deg(self.degs[key].name, index)

    def _text(self, node) -> str:
        lines = self.spec.source.splitlines()
        if isinstance(node, syn.Name):
            return node.id
        if isinstance(node, syn.Index):
            return f"{node.name.id}[{', '.join(self._text(a) for a in node.args)}]"
        return lines[node.line - 1][node.column - 1:].split()[0]

    # -------------------------------------------------------- expressions
    def unknown(self, name: syn.Name):
        if name.id in self.spec.block_vars:
            self.error(name, f"the index '{name.id}' is used outside its block",
                       f"'{name.id}' is bound by the block on line {self.spec.block_vars[name.id]}")
        if name.id in ALL_FUNCS:
            self.error(name, f"'{name.id}' is a function", f"call it: {name.id}(...)")
        candidates = set(self.spec.names) | set(self.scope)
        self.error(name, f"unknown name '{name.id}'", self.spec.did_you_mean(name.id, candidates))

    def check_dim(self, node, decl, position, var: ir.Var):
        want = decl.dims[position]
        if var.dim != want:
            what = "param" if isinstance(decl, ir.Param) else "data"
            self.error(node, f"{what} '{decl.name}' is indexed by {want} at position "
                             f"{position + 1}, but '{var.name}' ranges over {var.dim}",
                       "an index must range over the dim declared at that position")

    def index_var(self, node) -> ir.Var:
        if not isinstance(node, syn.Name):
            self.error(node, "an index must be a name bound by 'for' or 'sum'")
        v = self.scope.get(node.id)
        if isinstance(v, ir.Var):
            return v
        if v is not None:
            self.error(node, f"'{node.id}' is a let value, not an index")
        if node.id in self.spec.names:
            self.error(node, f"'{node.id}' is a {self.spec.names[node.id][0]}, not an index",
                       "index with a name bound by 'for' or 'sum'")
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
                       "indices select entries, e.g. y[" + node.id + "]")
        spec = self.spec
        if node.id in spec.params:
            p = spec.params[node.id]
            if not p.dims:
                e = ir.ParamAt(p.name, ())
                return Typed(SCALAR, lambda k: e, node)
            if len(p.dims) == 1:
                return Typed(Shape("dense", p.dims[0]), lambda k: ir.ParamAt(p.name, (k,)), node)
            self.error(node, f"'{p.name}' is a 2-D param: use one of its rows, e.g. "
                             f"{p.name}[u]", "a whole matrix has no meaning in an expression")
        if node.id in spec.data:
            d = spec.data[node.id]
            if len(d.dims) == 1:
                return Typed(Shape("dense", d.dims[0]), lambda k: ir.DataAt(d.name, (k,)), node)
            self.error(node, f"'{d.name}' is 2-D data: use one of its rows, e.g. {d.name}[i]")
        if node.id in spec.names:
            self.error(node, f"the {spec.names[node.id][0]} '{node.id}' is not a value")
        self.unknown(node)

    def x_Index(self, node: syn.Index):
        spec, name = self.spec, node.name.id
        decl = spec.params.get(name) or spec.data.get(name)
        if decl is None:
            if name in self.scope and isinstance(self.scope[name], Typed):
                self.error(node.name, f"'{name}' is a let value and cannot be indexed")
            if name in spec.names:
                self.error(node.name, f"the {spec.names[name][0]} '{name}' cannot be indexed")
            self.unknown(node.name)
        is_param = isinstance(decl, ir.Param)
        if not decl.dims:
            self.error(node, f"'{name}' is 0-D: write it without an index")
        if len(node.args) > len(decl.dims):
            self.error(node.args[len(decl.dims)], f"'{name}' has {len(decl.dims)} "
                       f"dim{'s' if len(decl.dims) > 1 else ''} but is given {len(node.args)} "
                       "indices")
        if len(node.args) == 1 and isinstance(node.args[0], syn.Index) and is_param:
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
            for a, v in zip(node.args, idx):
                if v.kind == "sparse" and not is_param and False:
                    pass
            e = (ir.ParamAt if is_param else ir.DataAt)(name, idx)
            return Typed(SCALAR, lambda k: e, node)
        row = idx[0]
        cls = ir.ParamAt if is_param else ir.DataAt
        return Typed(Shape("dense", decl.dims[1]), lambda k: cls(name, (row, k)), node)

    def sparse_index(self, node, decl: ir.Data, idx):
        name = decl.name
        if len(idx) == 1:
            row = idx[0]
            if row.kind != "term":
                self.error(node.args[0], f"a row of sparse data is selected by a block index, "
                                         f"not by '{row.name}'")
            return Typed(Shape("sparse", decl.dims[1], name, row.name),
                         lambda j: ir.DataAt(name, (row, j)), node)
        a, b = idx
        if a.kind == "term" and b.kind == "term" and self.kind == "entries" \
                and self.block.source.id == name and (a, b) == self.tvars:
            e = ir.DataAt(name, (a, b))
            return Typed(SCALAR, lambda k: e, node)
        if b.kind == "sparse" and b.source == (name, a.name):
            e = ir.DataAt(name, (a, b))
            return Typed(SCALAR, lambda k: e, node)
        self.error(node, f"'{name}[{a.name}, {b.name}]' reads an entry of sparse data by "
                         "lookup, which the compiler does not do",
                   f"read stored values as {name}[i, j] inside sum(j in {name}[i]: ...), or "
                   f"the current entry of 'for (u, v) in {name}' as {name}[u, v]")

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
            self.error(node.right, f"an exponent must be a scalar, not {b.shape}")
        return self.broadcast(node, a, b, lambda x, y: ir.Binary(node.op, x, y), node.op)

    def x_SumOver(self, node: syn.SumOver):
        name = node.var.id
        if name in self.scope or name in self.spec.names:
            self.error(node.var, f"the name '{name}' is already in use", "choose another index name")
        if name.startswith("_"):
            self.error(node.var, f"the name '{name}' starts with '_'",
                       "names starting with '_' are reserved for the compiler")
        src = node.source
        if isinstance(src, syn.Name) and (src.id in self.spec.dims or src.id in self.spec.consts):
            var = ir.Var(name, src.id, "dense")
        else:
            if isinstance(src, syn.Name) and src.id not in self.scope and \
                    src.id not in self.spec.names:
                self.error(src, f"unknown dim '{src.id}'", self.spec.did_you_mean(
                    src.id, self.spec.dims + list(self.spec.consts)))
            row = self.expr(src)
            if row.shape.kind != "sparse":
                self.error(src, f"sum(k in ...) runs over a dim, a const or a sparse row, "
                                f"not {row.shape}")
            var = ir.Var(name, row.shape.dim, "sparse", (row.shape.data, row.shape.row))
        self.scope[name] = var
        try:
            body = self.expr(node.body)
        finally:
            del self.scope[name]
        if body.shape.kind == "sparse":
            self.error(node.body, "the body of a sum cannot be a sparse row")
        if body.shape.kind == "scalar":
            e = ir.Sum(var, body.scalar())
            return Typed(SCALAR, lambda k: e, node)
        return Typed(body.shape, lambda k: ir.Sum(var, body.build(k)), node)

    def x_Call(self, node: syn.Call):
        fn = node.fn
        if fn not in ALL_FUNCS:
            if fn in self.spec.names:
                self.error(node, f"'{fn}' is a {self.spec.names[fn][0]}, not a function",
                           f"index it with [...]")
            self.error(node, f"unknown function '{fn}'", self.spec.did_you_mean(fn, ALL_FUNCS) or
                       "functions: " + ", ".join(sorted(ALL_FUNCS)))
        if len(node.args) != ALL_FUNCS[fn]:
            n = ALL_FUNCS[fn]
            self.error(node, f"{fn}() takes {n} argument{'s' if n > 1 else ''}, "
                             f"but is given {len(node.args)}")
        if fn in PREDICT_ONLY and not self.in_predict:
            self.error(node, f"{fn}() is allowed only in 'predict'",
                       "it has no useful gradient, so a loss cannot use it")
        args = [self.expr(a) for a in node.args]
        if fn in REDUCTIONS:
            return self.reduction(node, fn, args)
        if fn == "argmax":
            v = args[0]
            if v.shape.kind != "dense":
                self.error(node.args[0], f"argmax() needs a dense vector, not {v.shape}")
            k = self.fresh(v.shape.dim, "dense")
            e = ir.ArgMax(k, v.build(k))
            return Typed(SCALAR, lambda _: e, node)
        if len(args) == 1:
            a = args[0]
            self.no_sparse(a, fn + "()")
            return Typed(a.shape, lambda k: ir.Func(fn, (a.build(k),)), node)
        if fn == "huber" and args[1].shape.kind != "scalar":
            self.error(node.args[1], "huber's delta must be a scalar")
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

    def var_for(self, shape: Shape) -> ir.Var:
        if shape.kind == "sparse":
            return self.fresh(shape.dim, "sparse", (shape.data, shape.row))
        return self.fresh(shape.dim, "dense")


def check_module(module: syn.Module, consts: dict | None = None) -> ir.Spec:
    return Checker(module, consts).run()


def check(text: str, consts: dict | None = None) -> ir.Spec:
    """Parse and check .hog source text into the typed IR; raise SpecError on any problem."""
    return check_module(syn.parse(text), consts)
