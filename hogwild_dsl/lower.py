"""Stage 4, lower: IR + gradients -> a kernel plan: the Cython pieces the templates lay out.

For every block it plans three nogil functions over one term `t`:
- update: (1) gather: compute, once, every value the gradients need that does not vary inside
  an update loop (sums such as <L[u], R[v]>, the loss's derivative, 1/deg factors); sums that
  vary with a loop index are stored in per-thread scratch; (2) scatter: one loop nest per set
  of loop indices (a sparse row's nonzeros, a dense dim), computing every coordinate's gradient
  from old values and then writing `p -= step * g` (plain racy writes, or atomic adds);
  (3) project the touched rows of constrained params. If a loop would read a coordinate that an
  earlier loop already wrote, the plan computes every gradient into scratch first and writes
  afterwards (still one SGD step at the old point).
- loss: the term's objective value (its losses plus its share of the regularizer).
- predict: the block's `predict` expression.
and the module-level layout (the struct of pointers and sizes the runtime fills).
Nothing here knows the template syntax; `emit` renders the plan.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import ir
from .derive import BlockGrad, SiteGrad, derive

# ---------------------------------------------------------------- the layout


@dataclass(frozen=True)
class Field:
    name: str
    ctype: str           # double* | int64_t* | int32_t* | double | int64_t
    doc: str

    @property
    def is_pointer(self):
        return self.ctype.endswith("*")


def layout(spec: ir.Spec) -> list[Field]:
    """Every array and size a kernel reads, named as the runtime fills them."""
    fields: list[Field] = []
    entry_data = {b.over for b in spec.blocks if b.kind == "entries"}
    for d in spec.data:
        if d.kind == "sparse":
            fields += [Field(f"{d.name}__indptr", "int64_t*", f"CSR row pointers of {d.name}"),
                       Field(f"{d.name}__indices", "int32_t*", f"CSR columns of {d.name}"),
                       Field(f"{d.name}__data", "double*", f"CSR values of {d.name}")]
            if d.name in entry_data:
                fields.append(Field(f"{d.name}__rows", "int32_t*", f"row of each entry of {d.name}"))
            fields.append(Field(f"maxnnz_{d.name}", "int64_t", f"longest row of {d.name}"))
        else:
            fields.append(Field(d.name, "double*", f"{d.kind} data {d.name}"))
    for p in spec.params:
        fields.append(Field(p.name, "double*", f"param {p.name}"))
    for b in spec.blocks:
        fields.append(Field(f"nterms_{b.index}", "int64_t", f"terms of block {b.index}"))
        for deg in b.degs:
            ctype = "double" if deg.kind == "all" else "double*"
            fields.append(Field(deg.name, ctype, f"1/deg for the degree split of block {b.index}"))
    for dim in spec.dims:
        fields.append(Field(f"n_{dim}", "int64_t", f"size of dim {dim}"))
    return fields


# ---------------------------------------------------------------- helpers on expressions


def free_loop_vars(e: ir.Expr) -> frozenset:
    """Loop (dense / sparse) variables an expression depends on and does not bind itself."""
    if isinstance(e, (ir.DataAt, ir.ParamAt, ir.Deg)):
        found = {v for v in e.index if v.kind != "term"}
        return frozenset(found)
    if isinstance(e, (ir.Sum, ir.ArgMax)):
        return free_loop_vars(e.body) - {e.var}
    out = frozenset()
    for c in e.children():
        out |= free_loop_vars(c)
    return out


def substitute(e: ir.Expr, old: ir.Var, new: ir.Var) -> ir.Expr:
    """e with the free occurrences of index variable `old` replaced by `new`."""
    if isinstance(e, (ir.DataAt, ir.ParamAt, ir.Deg)):
        return type(e)(e.name, tuple(new if v == old else v for v in e.index))
    if isinstance(e, (ir.Sum, ir.ArgMax)):
        if e.var == old:
            return e
        var = e.var
        if var.kind == "sparse" and var.source[1] == old.name:
            var = ir.Var(var.name, var.dim, var.kind, (var.source[0], new.name))
        return type(e)(var, substitute(e.body, old, new))
    if isinstance(e, ir.Binary):
        return ir.Binary(e.op, substitute(e.left, old, new), substitute(e.right, old, new))
    if isinstance(e, ir.Neg):
        return ir.Neg(substitute(e.operand, old, new))
    if isinstance(e, ir.Func):
        return ir.Func(e.name, tuple(substitute(a, old, new) for a in e.args))
    return e


def _outer_sums(e: ir.Expr) -> list:
    """The sums of e that are not inside another sum."""
    if isinstance(e, ir.Sum):
        return [e]
    if isinstance(e, ir.ArgMax):
        return []
    out = []
    for c in e.children():
        out += _outer_sums(c)
    return out


def _invariant_subtrees(e: ir.Expr, var: ir.Var) -> list:
    """Maximal sums and calls inside e that do not depend on `var` (worth computing once)."""
    if var not in free_loop_vars(e) and isinstance(e, (ir.Sum, ir.Func, ir.ArgMax)):
        return [e]
    if isinstance(e, (ir.Sum, ir.ArgMax)) and e.var == var:
        return []
    out = []
    for c in e.children():
        out += _invariant_subtrees(c, var)
    return out


def _is_leafy(e) -> bool:
    return isinstance(e, (ir.Const, ir.Deg, ir.DataAt))


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

    def __init__(self, spec: ir.Spec, block: ir.Block):
        self.spec, self.block = spec, block
        self.consts = dict(spec.consts)
        self.entry_data = block.over if block.kind == "entries" else None

    def extent(self, dim: str) -> str:
        return str(self.consts[dim]) if dim in self.consts else f"n_{dim}"

    def index(self, v: ir.Var) -> str:
        return {"term": f"_t_{v.name}", "sparse": f"_c_{v.name}", "dense": f"_d_{v.name}"}[v.kind]

    def row_start(self, v: ir.Var) -> str:
        data, row = v.source
        return f"{data}__indptr[_t_{row}]"

    def position(self, v: ir.Var) -> str:
        """0-based position of a loop variable inside its domain (for scratch offsets)."""
        if v.kind == "sparse":
            return f"(_p_{v.name} - {self.row_start(v)})"
        return f"_d_{v.name}"

    def var_extent(self, v: ir.Var) -> str:
        return f"maxnnz_{v.source[0]}" if v.kind == "sparse" else self.extent(v.dim)

    def loop_header(self, v: ir.Var, names: Names) -> list[str]:
        if v.kind == "sparse":
            data, row = v.source
            names.var(f"_p_{v.name}", "int64_t")
            names.var(f"_c_{v.name}", "int64_t")
            return [f"for _p_{v.name} in range({data}__indptr[_t_{row}], "
                    f"{data}__indptr[_t_{row} + 1]):",
                    f"    _c_{v.name} = {data}__indices[_p_{v.name}]"]
        names.var(f"_d_{v.name}", "int64_t")
        return [f"for _d_{v.name} in range({self.extent(v.dim)}):"]

    def element(self, name: str, dims: tuple, index: tuple) -> str:
        if not dims:
            return f"{name}[0]"
        if len(dims) == 1:
            return f"{name}[{self.index(index[0])}]"
        return f"{name}[{self.index(index[0])} * {self.extent(dims[1])} + {self.index(index[1])}]"

    def leaf(self, e) -> str:
        if isinstance(e, ir.ParamAt):
            return self.element(e.name, self.spec.param(e.name).dims, e.index)
        if isinstance(e, ir.Deg):   # the layout holds 1/deg
            return f"(1.0 / {self.inv_deg(e)})"
        d = self.spec.datum(e.name)
        if d.kind == "sparse":
            a, b = e.index
            if b.kind == "sparse":
                return f"{d.name}__data[_p_{b.name}]"
            return f"{d.name}__data[t]"          # the current entry of an entries block
        return self.element(d.name, d.dims, e.index)

    def inv_deg(self, e: ir.Deg) -> str:
        return e.name if not e.index else f"{e.name}[{self.index(e.index[0])}]"


# ---------------------------------------------------------------- expression emission


C_FUNCS = {"abs": "fabs", "max": "fmax", "min": "fmin", "exp": "exp", "log": "log",
           "log1p": "log1p", "sqrt": "sqrt"}


class Emitter:
    """Emits statements computing expressions; returns C expressions for their values.
    Sums and function calls get temporaries, memoised per loop scope (common subexpressions
    are computed once); `stored` maps sums kept in scratch to their array."""

    def __init__(self, access: Access, names: Names, lines: list, indent: int = 1):
        self.a, self.names, self.lines, self.indent = access, names, lines, indent
        self.scopes: list[dict] = [{}]
        self.open_names: list[str] = []
        self.stored: dict[ir.Sum, tuple] = {}

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
        name = self.names.new(prefix)
        self.emit(f"{name} = {text}")
        return self.remember(e, name)

    def open_loop(self, v: ir.Var):
        for line in self.a.loop_header(v, self.names):
            self.emit(line)
        self.indent += 1
        self.scopes.append({})
        self.open_names.append(v.name)

    def close_loop(self):
        self.scopes.pop()
        self.open_names.pop()
        self.indent -= 1

    def value(self, e: ir.Expr) -> str:
        known = self.lookup(e)
        if known is not None:
            return known
        if isinstance(e, ir.Sum) and e in self.stored:
            array, vars_ = self.stored[e]
            return f"{array}[{offset(self.a, vars_)}]"
        if isinstance(e, ir.Const):
            return _fmt(e.value) if e.value >= 0 else f"({_fmt(e.value)})"
        if isinstance(e, (ir.DataAt, ir.ParamAt, ir.Deg)):
            return self.a.leaf(e)
        if isinstance(e, ir.Neg):
            return f"(-{self.value(e.operand)})"
        if isinstance(e, ir.Binary):
            if e.op == "/" and isinstance(e.right, ir.Deg):
                return f"({self.value(e.left)} * {self.a.inv_deg(e.right)})"
            left, right = self.value(e.left), self.value(e.right)
            if e.op != "^":
                return f"({left} {e.op} {right})"
            if isinstance(e.right, ir.Const) and e.right.value == int(e.right.value) \
                    and abs(e.right.value) <= 64:
                n = int(e.right.value)
                return f"_hw_sq({left})" if n == 2 else f"_hw_powi({left}, {n})"
            return f"pow({left}, {right})"
        if isinstance(e, ir.Func):
            args = ", ".join(self.value(x) for x in e.args)
            fn = C_FUNCS.get(e.name, f"_hw_{e.name.lstrip('_')}")
            return self.temp(e, f"{fn}({args})", "f")
        if isinstance(e, ir.Sum):
            return self.sum(e)
        if isinstance(e, ir.ArgMax):
            return self.argmax(e)
        raise AssertionError(f"cannot emit {e!r}")

    def sum(self, e: ir.Sum) -> str:
        var, body = self.loop_var(e)
        self.hoist_invariants(body, var)
        acc = self.names.new("s")
        self.emit(f"{acc} = 0.0")
        self.open_loop(var)
        self.fuse([body])
        value = self.value(body)
        self.emit(f"{acc} = {acc} + {value}")
        self.close_loop()
        return self.remember(e, acc)

    def loop_var(self, e):
        """The loop's variable and body; renamed when the name is already an open loop's
        (gradients put a copy of a forward sum inside a loop over the same index)."""
        if e.var.name not in self.open_names:
            return e.var, e.body
        self.names.count += 1
        var = ir.Var(f"{e.var.name}_{self.names.count}", e.var.dim, e.var.kind, e.var.source)
        return var, substitute(e.body, e.var, var)

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
                self.names.count += 1
                var = ir.Var(f"{var.name}_{self.names.count}", var.dim, var.kind, var.source)
            bodies = [substitute(s.body, s.var, var) for s in sums]
            for b in bodies:
                self.hoist_invariants(b, var)
            accs = [self.names.new("s") for _ in sums]
            for acc in accs:
                self.emit(f"{acc} = 0.0")
            self.open_loop(var)
            self.fuse(bodies)
            for acc, b in zip(accs, bodies):
                self.emit(f"{acc} = {acc} + {self.value(b)}")
            self.close_loop()
            for s, acc in zip(sums, accs):
                self.remember(s, acc)

    def hoist_invariants(self, body, var):
        """Compute sums and calls that do not depend on the loop variable before the loop."""
        for sub in _invariant_subtrees(body, var):
            self.hoist(sub)

    def argmax(self, e: ir.ArgMax) -> str:
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
    loops = [v for v in index if v.kind != "term"]
    return tuple([v for v in loops if v.kind == "sparse"] + [v for v in loops if v.kind == "dense"])


def _variant_parts(e: ir.Expr, nest: frozenset, hoisted: list, stored: list, reads: list):
    """Walk a gradient: collect maximal loop-invariant subtrees (hoisted), loop-dependent sums
    (stored in scratch) and param reads left inside the loop nest."""
    fv = free_loop_vars(e) & nest
    if not fv:
        if not _is_leafy(e):
            hoisted.append(e)
        return
    if isinstance(e, ir.Sum):
        stored.append(e)
        return
    if isinstance(e, ir.ParamAt):
        reads.append(e)
        return
    for c in e.children():
        _variant_parts(c, nest, hoisted, stored, reads)


@dataclass
class Nest:
    vars: tuple
    sites: list = field(default_factory=list)
    reads: list = field(default_factory=list)


def _order_nests(nests: list[Nest]) -> list[Nest] | None:
    """Order loop nests so that no nest reads a param an earlier nest wrote; None if impossible."""
    writes = [{s.param for s in n.sites} for n in nests]
    for n, w in zip(nests, writes):          # reads of a param this nest writes: same coordinate
        own = {s.access for s in n.sites}
        if any(r.name in w and r not in own for r in n.reads):
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
    return [f"_t_{u.name} = {block.over}__rows[t]", f"_t_{v.name} = {block.over}__indices[t]"]


class BlockLowering:
    def __init__(self, spec: ir.Spec, bg: BlockGrad):
        self.spec, self.bg, self.block = spec, bg, bg.block
        self.l1 = {r.param for r in self.block.regs if r.kind == "l1"}

    def start(self, names: Names) -> tuple[Access, list]:
        a = Access(self.spec, self.block)
        lines = []
        for v in self.block.vars:
            names.var(f"_t_{v.name}", "int64_t")
        lines += ["    " + s for s in _term_vars(a, self.block)]
        return a, lines

    # ---------------- loss and predict
    def loss(self) -> Function:
        names = Names()
        a, lines = self.start(names)
        em = Emitter(a, names, lines)
        em.fuse([self.bg.objective])
        em.emit(f"return {em.value(self.bg.objective)}")
        return Function(f"_loss_b{self.block.index}", "(const Model_* M, int64_t t)",
                        dict(names.decls), lines, "0", "double")

    def predict(self) -> Function | None:
        if self.bg.predict is None:
            return None
        names = Names()
        a, lines = self.start(names)
        em = Emitter(a, names, lines)
        em.fuse([self.bg.predict])
        em.emit(f"return {em.value(self.bg.predict)}")
        return Function(f"_predict_b{self.block.index}", "(const Model_* M, int64_t t)",
                        dict(names.decls), lines, "0", "double")

    # ---------------- update
    def update(self, atomic: bool) -> Function:
        names = Names()
        a, lines = self.start(names)
        em = Emitter(a, names, lines)
        nests: dict[tuple, Nest] = {}
        hoisted, stored = [], []
        for site in self.bg.sites:
            vars_ = _sorted_nest(site.index)
            nest = nests.setdefault(vars_, Nest(vars_))
            nest.sites.append(site)
            _variant_parts(site.grad, frozenset(vars_), hoisted, stored, nest.reads)
        scratch_parts: list[str] = []
        scratch_at = "0"

        def take(size: str) -> str:
            nonlocal scratch_at
            name = names.new("buf", "double*")
            em.emit(f"{name} = scratch + {scratch_at}")
            scratch_parts.append(size)
            scratch_at = " + ".join(f"({p})" for p in scratch_parts)
            return name

        em.emit("# gather: values every update below needs, computed once at the old point")
        for s in dict.fromkeys(stored):            # sums varying with a loop index -> scratch
            vars_ = tuple(v for v in _order_vars(free_loop_vars(s)))
            buf = take(size_of(a, vars_))
            for v in vars_:
                em.open_loop(v)
            value = em.sum(s)
            em.emit(f"{buf}[{offset(a, vars_)}] = {value}")
            for _ in vars_:
                em.close_loop()
            em.stored[s] = (buf, vars_)
        em.fuse(list(dict.fromkeys(hoisted)))
        for h in dict.fromkeys(hoisted):
            em.hoist(h)
        ordered = _order_nests(list(nests.values()))
        if ordered is not None:
            em.emit("# scatter: each coordinate's gradient from old values, then the write")
            for nest in ordered:
                self.nest(em, nest, atomic, mode="fused")
        else:
            em.emit("# scatter, buffered: a loop would read what another wrote, so every")
            em.emit("# gradient is computed first and written afterwards")
            buffers = {}
            for nest in nests.values():
                buffers[nest.vars] = take(f"{size_of(a, nest.vars)} * {len(nest.sites)}")
                self.nest(em, nest, atomic, mode="compute", buffer=buffers[nest.vars])
            for nest in nests.values():
                self.nest(em, nest, atomic, mode="apply", buffer=buffers[nest.vars])
        self.project(em, take)
        suffix = "atomic" if atomic else "plain"
        return Function(f"_update_b{self.block.index}_{suffix}",
                        "(const Model_* M, int64_t t, double step, double* scratch)",
                        dict(names.decls), lines, scratch_at)

    def nest(self, em: Emitter, nest: Nest, atomic: bool, mode: str, buffer: str | None = None):
        a = em.a
        for v in nest.vars:
            em.open_loop(v)
        olds = {}
        if mode != "apply":     # old values into locals: read once, before any write
            for site in nest.sites:
                if site.access not in olds:
                    olds[site.access] = em.temp(site.access, a.leaf(site.access), "o")
        grads = []
        for n, site in enumerate(nest.sites):
            slot = f"{buffer}[({offset(a, nest.vars)}) * {len(nest.sites)} + {n}]" if buffer else None
            if mode == "apply":
                grads.append(slot)
                continue
            text = em.value(site.grad)
            g = em.names.new("g")
            em.emit(f"{g} = {text}" + (f"   # d/d{site.access}" if mode != "compute" else ""))
            if mode == "compute":
                em.emit(f"{slot} = {g}")
            grads.append(g)
        if mode != "compute":
            for site, g in zip(nest.sites, grads):
                self.write(em, site, g, atomic, olds.get(site.access))
        for _ in nest.vars:
            em.close_loop()

    def write(self, em: Emitter, site: SiteGrad, g: str, atomic: bool, old: str | None):
        """p -= step * g for one coordinate (its old value in `old` when already read)."""
        target = em.a.leaf(site.access)
        if old is None:
            old = em.temp(site.access, target, "o")
        con = self.spec.param(site.param).constraint
        clip = None
        if con is not None and con.kind == "lower":
            clip = f"fmax({_fmt(con.lo)}, {{x}})"
        elif con is not None and con.kind == "box":
            clip = f"fmin({_fmt(con.hi)}, fmax({_fmt(con.lo)}, {{x}}))"
        if site.param in self.l1:             # l1: a step that crosses zero stops at zero
            new = em.names.new("n")
            em.emit(f"{new} = {old} - step * {g}")
            em.emit(f"if {old} * {new} < 0.0:")
            em.emit(f"    {new} = 0.0")
            if clip:
                em.emit(f"{new} = {clip.format(x=new)}")
            em.emit(f"_hw_atomic_add(&{target}, {new} - {old})" if atomic else f"{target} = {new}")
            return
        if atomic:
            em.emit(f"_hw_atomic_add(&{target}, -step * {g})")
            if clip:
                em.emit(f"{target} = {clip.format(x=target)}")
        elif clip:
            em.emit(f"{target} = {clip.format(x=f'{old} - step * {g}')}")
        else:
            em.emit(f"{target} = {old} - step * {g}")

    def project(self, em: Emitter, take):
        """Project every touched row of a param constrained to a simplex or a ball."""
        rows = {}          # (param, row var or None for a 1-D param) in order of first touch
        for site in self.bg.sites:
            p = self.spec.param(site.param)
            if p.constraint is not None and p.constraint.kind in ("simplex", "ball"):
                rows.setdefault((p.name, site.index[0] if len(p.dims) == 2 else None), p)
        work = None
        for (name, row_var), p in rows.items():
            a, length = em.a, em.a.extent(p.dims[-1])
            em.emit(f"# keep {name} {p.constraint}")
            loop = row_var is not None and row_var.kind != "term"
            if loop:
                em.open_loop(row_var)
            start = name if row_var is None else f"{name} + {a.index(row_var)} * {length}"
            if p.constraint.kind == "simplex":
                work = work or take(self.longest_simplex_row(a))
                em.emit(f"_hw_project_simplex({start}, {length}, {work})")
            else:
                em.emit(f"_hw_project_ball({start}, {length}, {_fmt(p.constraint.hi)})")
            if loop:
                em.close_loop()

    def longest_simplex_row(self, a: Access) -> str:
        lengths = sorted({a.extent(p.dims[-1]) for p in self.spec.params
                          if p.constraint is not None and p.constraint.kind == "simplex"})
        return " + ".join(lengths)          # room for the longest (a sum: C and Python agree)


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
    loss: Function
    predict: Function | None


@dataclass
class KernelPlan:
    model: str
    fields: list
    blocks: list
    pointers_used: dict        # function name -> fields it reads (locals copied from M)


def used_fields(fields: list[Field], fn: Function) -> list[Field]:
    """The layout fields a function's code names (copied from the struct into locals)."""
    text = "\n".join(fn.body) + fn.scratch
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    return [f for f in fields if f.name in words]


def lower(spec: ir.Spec) -> KernelPlan:
    fields = layout(spec)
    blocks = []
    for bg in derive(spec):
        bl = BlockLowering(spec, bg)
        blocks.append(BlockPlan(bg.block.index, bg.block.kind, bg.block.over,
                                bl.update(False), bl.update(True), bl.loss(), bl.predict()))
    uses = {}
    for b in blocks:
        for fn in (b.update_plain, b.update_atomic, b.loss, b.predict):
            if fn is not None:
                uses[fn.name] = used_fields(fields, fn)
    return KernelPlan(spec.model, fields, blocks, uses)
