"""Random valid .hog specs with matching random data, for the differential fuzz of the back end.

`generate(seed)` returns a `Case`: the spec text, two data sets (`full` for the objective,
`small` with one term per block where the data allow it, for the SGD step) and the set of
language constructs the spec uses (`CONSTRUCTS` lists them all). Expressions are built
type-directed (scalar / dense vector over an extent / sparse row), so every spec checks;
arguments of log, sqrt, log1p and divisors are kept positive by construction.

With `avoid_known=True` (the default) the generator steers clear of back-end bugs already
reported in /work/fuzz-findings.md and issue 14, so that a mismatch is news: no scalar function
inside the body of a vector-valued sum, no vector-valued sum inside another sum (F1), no
stored diagonal entry `(u, u)` in sparse data over one dim twice, no box or lower bound on a
0-D param, whole-param reg targets `unscaled` after the first block (F2), no index variable
twice in one param access (F3), a reg target's param read in its block only through the
target's own index (F4), and names that cannot collide with the generated code's.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

FUNCS1 = ["abs", "exp", "log", "log1p", "sqrt", "sigmoid", "softplus", "relu", "hinge",
          "sqhinge", "logistic"]
FUNCS2 = ["max", "min", "huber"]
CONSTRUCTS = sorted(
    ["block:rows", "block:entries", "blocks:several", "sum:dim", "sum:const", "sum:sparse",
     "sum:nested", "sum:vector-valued", "let:scalar", "let:vector", "loss:several",
     "op:+", "op:-", "op:*", "op:/", "op:^", "op:neg",
     "vec:+", "vec:-", "vec:*", "vec:/", "vec:broadcast", "vec:^", "vec:neg", "vec:fn",
     "vec:dot", "vec:dot-sparse", "vec:sum", "vec:norm1", "vec:norm2", "vec:sqnorm",
     "data:sparse", "data:dense", "data:real", "data:sign", "data:binary",
     "value:entry", "value:stored", "value:dense-row", "value:whole-data",
     "param:0d", "param:1d", "param:2d", "param:whole-vector", "param:row",
     "con:simplex", "con:lower", "con:box", "con:ball",
     "init:default", "init:value", "init:uniform-rows", "init:normal", "init:uniform",
     "reg:l1", "reg:l2", "reg:unscaled", "reg:on-row", "reg:on-entry", "reg:on-whole-vector",
     "reg:on-scalar", "reg:on-support-1d", "reg:on-support-2d",
     "predict", "predict:sign", "predict:argmax", "train-line", "data:explicit-zero",
     "data:index", "param:at-index", "param:at-sample", "sample:uniform", "reg:on-index",
     "reg:on-sample", "reduce:logsumexp", "reduce:max", "reduce:min", "predict:vector",
     "param:3d", "param:3d-entry", "param:3d-vector", "param:at-summed-index",
     "reg:on-support-3d", "reg:on-row-3d", "sample:several", "row:at-index",
     "sum:pairs-less-diagonal", "reg:on-pair-rows"]
    + [f"fn:{f}" for f in FUNCS1 + FUNCS2])


@dataclass
class Case:
    seed: int
    text: str
    full: dict
    small: dict
    constructs: set = field(default_factory=set)


@dataclass
class E:
    """A generated expression: its text, shape ('S', or ('V', extent)), params read, tags."""
    text: str
    shape: object
    params: frozenset = frozenset()
    tags: frozenset = frozenset()
    vars: frozenset = frozenset()     # index variables it reads


def _join(text, shape, *parts, tags=()):
    params = frozenset().union(*(p.params for p in parts))
    all_tags = frozenset(tags).union(*(p.tags for p in parts))
    vars_ = frozenset().union(*(p.vars for p in parts))
    return E(text, shape, params, all_tags, vars_)


NUMBERS = ["0.5", "1.5", "2", "0.3", "3", "1", "0.25"]


class Generator:
    """Builds one spec: declarations on demand, then blocks of lets, losses, regs, predict."""

    def __init__(self, seed: int, avoid_known: bool = True, suffix: str = "",
                 block_offset: int = 0):
        self.rng = random.Random(seed)
        # the newer forms (3-D params, index data at a summed index) decide from a stream of
        # their own, so that the specs of older seeds change only where one of them is used
        self.rng2 = random.Random(seed * 7919 + 1)
        # `sample n[K]` is decided on a stream of its own, so the specs of seeds that draw
        # none are the same as before the form existed
        self.krng = random.Random(seed * 7919 + 7)
        # a sparse row picked by index data (X[n[i]]), likewise
        self.irng = random.Random(seed * 7919 + 11)
        # a symmetric double sum over a row less its diagonal (FM's and FFM's pairs), likewise
        self.orng = random.Random(seed * 7919 + 13)
        self.sfx = suffix                      # appended to every name (packed specs)
        self.block_offset = block_offset       # index of our first block in the spec
        self.seed = seed
        self.avoid_known = avoid_known
        self.dims: dict[str, list] = {}        # name -> [full size, small size]
        self.consts: dict[str, int] = {}
        self.data: dict[str, tuple] = {}       # name -> (kind, dims)
        self.params: dict[str, tuple] = {}     # name -> (dims, constraint text, init text)
        self.tags: set[str] = set()
        self.lets = 0
        self.sums = 0
        self.entry_sources: set[str] = set()   # sparse data whose entries are terms
        self.row_dims: set[str] = set()        # dims that rows blocks run over

    # ------------------------------------------------------------ declarations on demand
    def chance(self, p):
        return self.rng.random() < p

    def chance2(self, p):
        return self.rng2.random() < p

    def pick(self, seq):
        return self.rng.choice(list(seq))

    def new_dim(self) -> str:
        name = "d" + "abcdefghijklmnop"[len(self.dims)] + self.sfx
        self.dims[name] = [self.rng.randint(2, 4), 2]
        return name

    def extent(self) -> str:
        """Some dim or const (new or existing) for a vector's axis."""
        options = list(self.dims) + list(self.consts)
        if options and self.chance(0.6):
            return self.pick(options)
        if len(self.consts) < 2 and self.chance(0.4):
            name = "k" + "ab"[len(self.consts)] + self.sfx
            self.consts[name] = self.rng.randint(2, 3)
            return name
        if len(self.dims) >= 6:
            return self.pick(options)
        return self.new_dim()

    def datum(self, kind: str, dims: tuple) -> str:
        for name, (k, d) in self.data.items():
            if d == dims and (k == kind or (kind == "1d" and k in ("real", "sign", "binary"))) \
                    and self.chance(0.7):
                return name
        if kind == "1d":
            kind = self.pick(["real", "real", "sign", "binary"])
        prefix = {"sparse": "X", "dense": "C", "real": "y", "sign": "g", "binary": "z"}.get(
            kind, "n")
        name = f"{prefix}{len(self.data)}{self.sfx}"
        self.data[name] = (kind, dims)
        self.tags.add(f"data:{kind.split('(')[0]}")
        return name

    def per_term_index(self, sc: "Scope"):
        """An index fixed for the term other than a term var: index data at a term var
        (`n0[i]`, an index into another extent) or a sampled index. -> (text, extent, key,
        tag) or None."""
        options = []
        if sc.samples:
            options.append("sample")
        if sc.vars and self.chance(0.5):
            options.append("index")
        if not options:
            return None
        if self.pick(options) == "sample":
            name, dim = self.pick(sc.samples)
            return name, dim, ("term", name), "sample"
        var, dim = self.pick(sc.vars)
        of = self.extent()
        n = self.datum(f"index({of})", (dim,))
        return f"{n}[{var}]", of, ("index", n, var), "index"

    def summed_index(self, sc: "Scope"):
        """Index data read at an index a sum binds (`n0[s1]` inside sum(s1 in X[i]: ...)),
        an index into another extent. -> (text, extent, key, tag, summed var) or None."""
        bound = [(n, d) for n, d, _ in sc.bound if d in self.dims]
        if not bound:
            return None
        var, dim = self.rng2.choice(bound)
        of = self.extent()
        n = self.datum(f"index({of})", (dim,))
        return f"{n}[{var}]", of, ("index", n, sc.key(var)), "summed-index", var

    def param3(self, sc: "Scope", last: str | None) -> E:
        """A 3-D param read as an entry (last None) or as a vector over `last`: P[a, b, c] or
        P[a, b], where b may be index data at a summed index (V[j, f[j2]])."""
        var, dim = self.rng2.choice(sc.index_vars())
        reads, tags = {var}, {"param:3d"}
        at = self.summed_index(sc) if self.chance2(0.5) else None
        if at is not None:
            second, dim2 = at[0], at[1]
            reads.add(at[4])
            tags.add("param:at-summed-index")
        else:
            others = [(v, d) for v, d in sc.index_vars() if v != var or not self.avoid_known]
            if not others:
                return None
            second, dim2 = self.rng2.choice(others)
            reads.add(second)
        if last is None:
            third, dim3 = self.rng2.choice(sc.index_vars())
            if self.avoid_known and third in reads:    # F3: no index twice in an access
                return None
            p = sc.use(self.param((dim, dim2, dim3)), sc.key(var))
            return E(f"{p}[{var}, {second}, {third}]", "S", frozenset([p]),
                     frozenset(tags | {"param:3d-entry"}), frozenset(reads | {third}))
        p = sc.use(self.param((dim, dim2, last)), sc.key(var))
        return E(f"{p}[{var}, {second}]", ("V", last), frozenset([p]),
                 frozenset(tags | {"param:3d-vector"}), frozenset(reads))

    def param(self, dims: tuple, fresh=False) -> str:
        existing = [n for n, (d, _, _) in self.params.items() if d == dims]
        if existing and not fresh and self.chance(0.7):
            return self.pick(existing)
        name = f"P{len(self.params)}{self.sfx}"
        con, init = "", ""
        can_constrain = bool(dims) or not self.avoid_known
        if can_constrain and self.chance(0.3):
            choices = ["lower", "box"] + (["simplex", "ball"] if dims else [])
            kind = self.pick(choices)
            con = {"simplex": " in simplex", "lower": self.pick([" >= 0", " >= -0.5"]),
                   "box": self.pick([" in [-1, 1]", " in [0, 2]", " in [-0.5, 1.5]"]),
                   "ball": self.pick([" in ball(1)", " in ball(2)"])}[kind]
            self.tags.add(f"con:{kind}")
        kinds = ["default", "value", "normal", "uniform"] + (["uniform-rows"] if dims else [])
        ik = self.pick(kinds)
        init = {"default": "", "value": " = 0.5", "uniform-rows": " = uniform",
                "normal": " ~ normal(0, 0.1)", "uniform": " ~ uniform(-0.5, 0.5)"}[ik]
        self.tags.add(f"init:{ik}")
        self.tags.add(f"param:{len(dims)}d")
        self.params[name] = (dims, con, init)
        return name

    # ------------------------------------------------------------ expressions
    def scalar(self, sc: "Scope", depth: int) -> E:
        if depth <= 0 or self.chance(0.2):
            return self.scalar_leaf(sc)
        kind = self.pick(["bin", "bin", "fn", "fn", "fn2", "red", "red", "sum", "neg", "pow"])
        if sc.no_funcs and kind in ("fn", "fn2"):
            kind = "bin"
        if kind == "bin":
            a, b = self.scalar(sc, depth - 1), self.scalar(sc, depth - 1)
            op = self.pick(["+", "-", "*", "/"])
            if op == "/":
                b = self.positive(sc, depth - 1)
            return _join(f"({a.text} {op} {b.text})", "S", a, b, tags=[f"op:{op}"])
        if kind == "neg":
            a = self.scalar(sc, depth - 1)
            return _join(f"-{a.text}" if a.text[0] in "(P" else f"-({a.text})", "S", a,
                         tags=["op:neg"])
        if kind == "pow":
            if self.chance(0.7):
                a = self.scalar(sc, depth - 1)
                return _join(f"({a.text})^{self.pick(['2', '3'])}", "S", a, tags=["op:^"])
            a = self.positive(sc, depth - 1)
            return _join(f"({a.text})^{self.pick(['0.5', '1.5'])}", "S", a, tags=["op:^"])
        if kind == "fn":
            return self.func1(sc, depth)
        if kind == "fn2":
            fn = self.pick(FUNCS2)
            a = self.scalar(sc, depth - 1)
            if fn == "huber":
                return _join(f"huber({a.text}, {self.pick(['0.5', '1', '2'])})", "S", a,
                             tags=["fn:huber"])
            b = self.scalar(sc, depth - 1)
            return _join(f"{fn}({a.text}, {b.text})", "S", a, b, tags=[f"fn:{fn}"])
        if kind == "red":
            return self.reduction(sc, depth)
        return self.scalar_sum(sc, depth)

    def func1(self, sc, depth) -> E:
        fn = self.pick(FUNCS1)
        if fn in ("log", "sqrt"):
            a = self.positive(sc, depth - 1)
        elif fn == "log1p":
            a = self.nonnegative(sc, depth - 1)
        elif fn == "exp":
            a = self.scalar(sc, depth - 1)
            a = _join(f"0.5 * {a.text}" if a.text[0] == "(" else f"0.5 * ({a.text})", "S", a)
        else:
            a = self.scalar(sc, depth - 1)
        return _join(f"{fn}({a.text})", "S", a, tags=[f"fn:{fn}"])

    def positive(self, sc, depth) -> E:
        """A scalar expression that is > 0 (at least 0.25) whatever the params."""
        if depth <= 0:
            return E(self.pick(["2", "1.5", "0.5"]), "S")
        c = self.pick(["0.5", "1", "2"])
        a = self.scalar(sc, depth - 1)
        kind = self.pick(["sq", "abs", "exp", "sigmoid", "softplus", "sqnorm", "relu"])
        if kind == "sqnorm":
            v = self.vector(sc, self.vec_extent(sc), depth - 1)
            return _join(f"({c} + sqnorm({v.text}))", "S", v, tags=["vec:sqnorm", "op:+"])
        if sc.no_funcs or kind == "sq":
            return _join(f"({c} + ({a.text})^2)", "S", a, tags=["op:^", "op:+"])
        if kind in ("abs", "relu"):
            return _join(f"({c} + {kind}({a.text}))", "S", a, tags=[f"fn:{kind}", "op:+"])
        if kind == "exp":
            return _join(f"exp(0.5 * ({a.text}))", "S", a, tags=["fn:exp"])
        if kind == "sigmoid":
            return _join(f"({c} + sigmoid({a.text}))", "S", a, tags=["fn:sigmoid", "op:+"])
        return _join(f"({c} + softplus({a.text}))", "S", a, tags=["fn:softplus", "op:+"])

    def nonnegative(self, sc, depth) -> E:
        if depth > 0 and not sc.no_funcs and self.chance(0.5):
            a = self.scalar(sc, depth - 1)
            fn = self.pick(["relu", "abs", "sigmoid"])
            return _join(f"{fn}({a.text})", "S", a, tags=[f"fn:{fn}"])
        return self.positive(sc, depth)

    def scalar_leaf(self, sc: "Scope") -> E:
        options = ["num", "param", "param", "data", "data"]
        if sc.stored_vars():
            options += ["stored", "stored"]
        if sc.kind == "entries":
            options += ["entry"]
        if any(shape == "S" for _, shape in sc.lets):
            options += ["let", "let"]
        kind = self.pick(options)
        if kind == "num":
            return E(self.pick(NUMBERS), "S")
        if kind == "entry":
            return E(f"{sc.source}[{sc.vars[0][0]}, {sc.vars[1][0]}]", "S",
                     tags=frozenset(["value:entry"]), vars=frozenset(v for v, _ in sc.vars))
        if kind == "stored":
            j, data, row = self.pick(sc.stored_vars())
            return E(f"{data}[{row}, {j}]", "S", tags=frozenset(["value:stored"]),
                     vars=frozenset([j, row]))
        if kind == "let":
            name = self.pick([n for n, shape in sc.lets if shape == "S"])
            return E(name, "S", sc.let_params[name])
        var, dim = self.pick(sc.index_vars())
        if kind == "param" and self.chance2(0.1):
            e = self.param3(sc, None)
            if e is not None:
                return e
        at = self.per_term_index(sc) if kind == "param" and self.chance(0.3) else None
        if at is not None:
            text, of, key, tag = at
            p = sc.use(self.param((of,)), key)
            return E(f"{p}[{text}]", "S", frozenset([p]),
                     frozenset(["param:1d", f"param:at-{tag}"]))
        at = self.summed_index(sc) if kind == "param" and self.chance2(0.2) else None
        if at is not None:
            text, of, key, tag, summed = at
            p = sc.use(self.param((of,)), key)
            return E(f"{p}[{text}]", "S", frozenset([p]),
                     frozenset(["param:1d", f"param:at-{tag}"]), frozenset([summed]))
        if kind == "param":
            if self.chance(0.2):
                p = sc.use(self.param(()), ())
                return E(p, "S", frozenset([p]), frozenset(["param:0d"]))
            var2, dim2 = self.pick(sc.index_vars())
            if self.avoid_known and var2 == var:        # F3: no Q[s, s]
                others = [(v, d) for v, d in sc.index_vars() if v != var]
                var2, dim2 = self.pick(others) if others else (None, None)
            if var2 is None or self.chance(0.5):
                p = sc.use(self.param((dim,)), sc.key(var))
                return E(f"{p}[{var}]", "S", frozenset([p]), frozenset(["param:1d"]),
                         frozenset([var]))
            p = sc.use(self.param((dim, dim2)), sc.key(var))
            return E(f"{p}[{var}, {var2}]", "S", frozenset([p]), frozenset(["param:2d"]),
                     frozenset([var, var2]))
        if self.chance(0.6):
            d = self.datum("1d", (dim,))
            return E(f"{d}[{var}]", "S", vars=frozenset([var]))
        var2, dim2 = self.pick(sc.index_vars())
        d = self.datum("dense", (dim, dim2))
        return E(f"{d}[{var}, {var2}]", "S", vars=frozenset([var, var2]))

    def reduction(self, sc, depth) -> E:
        fn = self.pick(["dot", "dot", "dot-sparse", "sum", "norm1", "norm2", "sqnorm",
                        "logsumexp", "max", "min"])
        if fn in ("logsumexp", "max", "min"):
            if sc.no_funcs:
                fn = "sum"
            else:
                a = self.vector(sc, self.vec_extent(sc), depth - 1)
                return _join(f"{fn}({a.text})", "S", a, tags=[f"reduce:{fn}"])
        if fn == "dot-sparse":
            rows = sc.sparse_rows(self)
            if rows:
                text, data, col_dim = self.pick(rows)
                v = self.vector(sc, col_dim, depth - 1)
                if self.chance(0.5):
                    return _join(f"dot({text}, {v.text})", "S", v,
                                 tags=["vec:dot-sparse", "data:sparse"])
                return _join(f"dot({v.text}, {text})", "S", v,
                             tags=["vec:dot-sparse", "data:sparse"])
            fn = "dot"
        if sc.no_funcs and fn in ("norm1", "norm2"):
            fn = "sqnorm"
        d = self.vec_extent(sc)
        a = self.vector(sc, d, depth - 1)
        if fn == "dot":
            b = self.vector(sc, d, depth - 1)
            return _join(f"dot({a.text}, {b.text})", "S", a, b, tags=["vec:dot"])
        return _join(f"{fn}({a.text})", "S", a, tags=[f"vec:{fn}"])

    def scalar_sum(self, sc, depth) -> E:
        rows = sc.sparse_rows(self)
        if rows and self.orng.random() < 0.1:
            return self.pairs_less_diagonal(sc, rows)
        if rows and self.chance(0.5):
            text, data, col_dim = self.pick(rows)
            j = self.sum_var()
            row = text[text.index("[") + 1:-1]
            with sc.bind(j, col_dim, (data, row)):
                body = self.scalar(sc, depth - 1)
                if j not in body.vars:        # make the body read the summed entry
                    body = _join(f"{data}[{row}, {j}] * {body.text}"
                                 if body.text[0] in "(-P" else f"{data}[{row}, {j}] * ({body.text})",
                                 "S", body, tags=["value:stored"])
            nested = "sum:nested" if sc.in_sum else None
            return _join(f"sum({j} in {text}: {body.text})", "S", body,
                         tags=["sum:sparse"] + ([nested] if nested else []))
        d = self.vec_extent(sc)
        k = self.sum_var()
        with sc.bind(k, d):
            body = self.scalar(sc, depth - 1)
            if k not in body.vars:           # make the body depend on the summed index
                p = sc.use(self.param((d,)), sc.key(k))
                body = _join(f"{p}[{k}] * {body.text}" if body.text[0] in "(-P"
                             else f"{p}[{k}] * ({body.text})", "S", body, tags=["param:1d"])
                body = body._with(p)
        kind = "sum:const" if d in self.consts else "sum:dim"
        return _join(f"sum({k} in {d}: {body.text})", "S", body,
                     tags=[kind] + (["sum:nested"] if sc.in_sum else []))

    def pairs_less_diagonal(self, sc, rows) -> E:
        """The pairs a != b of a sparse row as FM and FFM spell them, a symmetric double sum
        less its diagonal: sum(a: sum(b: x_a x_b <P[a], P[b]>)) - sum(c: x_c^2 |P[c]|^2), P
        2-D, or 3-D read at index data as FFM's P[a, n[b]] . P[b, n[a]] (lower folds the
        diagonal away: fold_forward_diagonals, and the held pairs into the reg's pass)."""
        r = self.orng
        row_text, data, col = r.choice(rows)
        row = row_text[row_text.index("[") + 1:-1]
        a, b, c = self.sum_var(), self.sum_var(), self.sum_var()
        last, key = self.extent(), ("sparse", data, row)
        if r.random() < 0.5:
            p = sc.use(self.param((col, last)), key)
            pair, diag, tags = f"dot({p}[{a}], {p}[{b}])", f"sqnorm({p}[{c}])", ["param:2d"]
        else:
            n = self.datum(f"index({self.extent()})", (col,))
            p = sc.use(self.param((col, self.data[n][0][6:-1], last)), key)
            pair = f"dot({p}[{a}, {n}[{b}]], {p}[{b}, {n}[{a}]])"
            diag, tags = f"sqnorm({p}[{c}, {n}[{c}]])", ["param:3d", "param:at-summed-index"]
            sc.pair_rows.append(f"{p}[{row_text}]")

        def x(v):
            return f"{data}[{row}, {v}]"
        pairs = f"sum({a} in {row_text}: sum({b} in {row_text}: {x(a)} * {x(b)} * {pair}))"
        return E(f"({pairs} - sum({c} in {row_text}: {x(c)}^2 * {diag}))", "S",
                 frozenset([p]), frozenset(tags + ["sum:pairs-less-diagonal", "sum:sparse"]),
                 frozenset([a, b, c]))

    def sum_var(self) -> str:
        self.sums += 1
        return f"s{self.sums}{self.sfx}"

    def vec_extent(self, sc) -> str:
        """The extent of a vector to build: one a row, let or data already offers, or new."""
        lets = [shape[1] for _, shape in sc.lets if shape != "S"]
        if lets and self.chance(0.4):
            return self.pick(lets)
        return self.extent()

    def vector(self, sc: "Scope", d: str, depth: int) -> E:
        """A dense vector over extent d."""
        if depth <= 0 or self.chance(0.25):
            return self.vector_leaf(sc, d)
        kind = self.pick(["bin", "bin", "bcast", "fn", "neg", "pow", "vsum", "vsum"])
        if sc.no_funcs and kind == "fn":
            kind = "bin"
        if self.avoid_known and sc.in_sum and kind == "vsum":
            kind = "bin"                 # F1: a vector-valued sum under a sum is hoisted
        if kind == "bin":
            a, b = self.vector(sc, d, depth - 1), self.vector(sc, d, depth - 1)
            op = self.pick(["+", "-", "*"])
            return _join(f"({a.text} {op} {b.text})", ("V", d), a, b, tags=[f"vec:{op}"])
        if kind == "bcast":
            a, s = self.vector(sc, d, depth - 1), self.scalar(sc, depth - 1)
            op = self.pick(["+", "-", "*", "/"])
            if op == "/":
                s = self.positive(sc, depth - 1)
                return _join(f"({a.text} / {s.text})", ("V", d), a, s,
                             tags=["vec:/", "vec:broadcast"])
            if self.chance(0.5):
                return _join(f"({s.text} {op} {a.text})", ("V", d), a, s,
                             tags=[f"vec:{op}", "vec:broadcast"])
            return _join(f"({a.text} {op} {s.text})", ("V", d), a, s,
                         tags=[f"vec:{op}", "vec:broadcast"])
        if kind == "neg":
            a = self.vector(sc, d, depth - 1)
            return _join(f"-{a.text}" if a.text[0] in "(P" else f"-({a.text})", ("V", d), a,
                         tags=["vec:neg"])
        if kind == "pow":
            a = self.vector(sc, d, depth - 1)
            return _join(f"({a.text})^2", ("V", d), a, tags=["vec:^"])
        if kind == "fn":
            a = self.vector(sc, d, depth - 1)
            fn = self.pick(["abs", "sigmoid", "softplus", "relu", "hinge", "sqhinge",
                            "logistic", "exp", "max", "min", "log", "sqrt", "log1p", "huber"])
            if fn in ("log", "sqrt", "log1p"):
                return _join(f"{fn}(1 + ({a.text})^2)", ("V", d), a, tags=[f"fn:{fn}", "vec:fn"])
            if fn == "exp":
                return _join(f"exp(0.5 * {a.text})", ("V", d), a, tags=["fn:exp", "vec:fn"])
            if fn == "huber":
                return _join(f"huber({a.text}, 1)", ("V", d), a, tags=["fn:huber", "vec:fn"])
            if fn in ("max", "min"):
                b = self.scalar(sc, depth - 1) if self.chance(0.5) else self.vector(sc, d, depth - 1)
                return _join(f"{fn}({a.text}, {b.text})", ("V", d), a, b,
                             tags=[f"fn:{fn}", "vec:fn"])
            return _join(f"{fn}({a.text})", ("V", d), a, tags=[f"fn:{fn}", "vec:fn"])
        return self.vector_sum(sc, d, depth)

    def vector_sum(self, sc, d, depth) -> E:
        """A vector-valued sum: over a sparse row (sum(j in X[i]: X[i, j] * V[j])) or a dim."""
        no_funcs, sc.no_funcs = sc.no_funcs, sc.no_funcs or self.avoid_known
        try:
            rows = [r for r in sc.sparse_rows(self)]
            if rows and self.chance(0.6):
                text, data, col_dim = self.pick(rows)
                j = self.sum_var()
                row = text[text.index("[") + 1:-1]
                p = sc.use(self.param((col_dim, d)), ("sparse", data, row))
                with sc.bind(j, col_dim, (data, row)):
                    extra = self.scalar(sc, depth - 2) if depth > 1 and self.chance(0.4) else None
                body = f"{data}[{row}, {j}] * {p}[{j}]"
                tags = ["sum:sparse", "sum:vector-valued", "value:stored", "param:row"]
                if extra is not None:
                    body += f" * {extra.text}" if extra.text[0] in "(P" else f" * ({extra.text})"
                    return _join(f"sum({j} in {text}: {body})", ("V", d), extra, tags=tags) \
                        ._with(p)
                return E(f"sum({j} in {text}: {body})", ("V", d), frozenset([p]),
                         frozenset(tags), frozenset([row]))
            d2 = self.extent()
            k = self.sum_var()
            with sc.bind(k, d2):
                p = sc.use(self.param((d2, d)), ("dense", d2))
                body = self.vector(sc, d, depth - 1) if self.chance(0.5) else None
                s = self.scalar(sc, depth - 2) if depth > 1 else self.scalar_leaf(sc)
            kind = "sum:const" if d2 in self.consts else "sum:dim"
            inner = f"{p}[{k}] * {s.text}" if s.text[0] in "(P" else f"{p}[{k}] * ({s.text})"
            if body is not None:
                inner = f"{inner} + {body.text}"
                return _join(f"sum({k} in {d2}: {inner})", ("V", d), s, body,
                             tags=[kind, "sum:vector-valued", "param:row"])._with(p)
            return _join(f"sum({k} in {d2}: {inner})", ("V", d), s,
                         tags=[kind, "sum:vector-valued", "param:row"])._with(p)
        finally:
            sc.no_funcs = no_funcs

    def vector_leaf(self, sc: "Scope", d: str) -> E:
        options = ["param-row", "param-row", "whole", "data-row"]
        if any(shape == ("V", d) for _, shape in sc.lets):
            options += ["let", "let"]
        kind = self.pick(options)
        if kind == "let":
            name = self.pick([n for n, shape in sc.lets if shape == ("V", d)])
            return E(name, ("V", d), sc.let_params[name])
        if kind == "whole" and d in self.dims:
            if self.chance(0.7):
                p = sc.use(self.param((d,)), ("dense", d))
                return E(p, ("V", d), frozenset([p]), frozenset(["param:whole-vector"]))
            y = self.datum("real", (d,))
            return E(y, ("V", d), tags=frozenset(["value:whole-data"]))
        if kind == "param-row" and self.chance2(0.15):
            e = self.param3(sc, d)
            if e is not None:
                return e
        at = self.per_term_index(sc) if kind == "param-row" and self.chance(0.3) else None
        if at is not None:
            text, of, key, tag = at
            p = sc.use(self.param((of, d)), key)
            return E(f"{p}[{text}]", ("V", d), frozenset([p]),
                     frozenset(["param:row", f"param:at-{tag}"]))
        at = self.summed_index(sc) if kind == "param-row" and self.chance2(0.2) else None
        if at is not None:
            text, of, key, tag, summed = at
            p = sc.use(self.param((of, d)), key)
            return E(f"{p}[{text}]", ("V", d), frozenset([p]),
                     frozenset(["param:row", f"param:at-{tag}"]), frozenset([summed]))
        var, dim = self.pick(sc.index_vars())
        if kind == "data-row":
            c = self.datum("dense", (dim, d))
            return E(f"{c}[{var}]", ("V", d), tags=frozenset(["value:dense-row"]),
                     vars=frozenset([var]))
        p = sc.use(self.param((dim, d)), sc.key(var))
        return E(f"{p}[{var}]", ("V", d), frozenset([p]), frozenset(["param:row"]),
                 frozenset([var]))

    # ------------------------------------------------------------ blocks
    def block(self, index: int, predict: bool) -> str:
        if self.chance(0.55):
            if self.row_dims and self.chance(0.3):
                dim = self.pick(sorted(self.row_dims))
            else:
                dim = self.new_dim()
            self.row_dims.add(dim)
            i = f"i{index}{self.sfx}"
            sc = Scope("rows", [(i, dim)], None)
            head = f"for {i} in {dim}:"
            self.tags.add("block:rows")
        else:
            a = self.new_dim() if not self.dims or self.chance(0.6) else self.pick(list(self.dims))
            b = a if self.chance(0.25) else (self.pick(list(self.dims)) if self.chance(0.3)
                                             else self.new_dim())
            r = f"R{len(self.data)}{self.sfx}"
            self.data[r] = ("sparse", (a, b))
            self.entry_sources.add(r)
            u, v = f"u{index}{self.sfx}", f"v{index}{self.sfx}"
            sc = Scope("entries", [(u, a), (v, b)], r)
            head = f"for ({u}, {v}) in {r}:"
            self.tags.update(["block:entries", "data:sparse"])
        lines = [head]
        several = None          # `sample w[K] in D`: the const K and the sum var over it
        if self.dims and self.chance(0.2):
            name, dim = f"w{index}{self.sfx}", self.pick(list(self.dims))
            sc.samples.append((name, dim))
            self.tags.add("sample:uniform")
            if self.krng.random() < 0.4:
                count = f"kd{self.sfx}"
                self.consts.setdefault(count, self.krng.randint(2, 3))
                several = (name, count, self.sum_var())
                lines.append(f"    sample {name}[{count}] in {dim}")
                self.tags.add("sample:several")
            else:
                lines.append(f"    sample {name} in {dim}")
        lets_see = sc.samples
        if several:             # a let is outside any sum over K: it may not read w[s]
            sc.samples = []
        for _ in range(self.rng.choice([0, 0, 1, 2])):
            name = f"h{self.lets}{self.sfx}"
            self.lets += 1
            if self.chance(0.5):
                value = self.scalar(sc, 2)
                sc.lets.append((name, "S"))
                self.tags.add("let:scalar")
            else:
                d = self.extent()
                value = self.vector(sc, d, 2)
                sc.lets.append((name, ("V", d)))
                self.tags.add("let:vector")
            sc.let_params[name] = value.params
            lines.append(f"    let {name} = {value.text}")
            self.tags.update(value.tags)
        sc.samples = lets_see
        n_losses = self.rng.choice([1, 1, 1, 2])
        if n_losses > 1:
            self.tags.add("loss:several")
        for _ in range(n_losses):
            loss = self.loss(sc)
            text = loss.text
            if several:         # the loss averaged over the K draws: w reads w[s]
                name, count, s = several
                text = f"sum({s} in {count}: {text.replace(f'[{name}]', f'[{name}[{s}]]')})" \
                    f" / {count}"
            lines.append(f"    loss {text}")
            self.tags.update(loss.tags)
        for _ in range(self.rng.choice([0, 1, 1, 2])):
            lines.append("    " + self.reg(sc, self.block_offset + index))
        for target in sc.pair_rows:     # the pairs' rows penalised (as FFM's V[X[i]])
            if self.orng.random() < 0.6:
                lines.append(f"    reg l2(0.1) on {target}")
                self.tags.add("reg:on-pair-rows")
        if predict:
            sc.samples = []                    # predict may not read a sampled index
            lines.append("    " + self.predict(sc))
        return "\n".join(lines)

    def loss(self, sc) -> E:
        for _ in range(20):
            e = self.scalar(sc, self.rng.choice([2, 3, 3]))
            if sc.reads_param(e):
                return e
        var, dim = self.pick(sc.index_vars())
        p = sc.use(self.param((dim,)), sc.key(var))
        return _join(f"({e.text}) * {p}[{var}]", "S", e, tags=["op:*", "param:1d"])

    def reg_param(self, sc, dims, key) -> str:
        """A param for a reg target read as `key`; with avoid_known (F4) one that the block
        reads through no other index (else a fresh one)."""
        p = self.param(dims)
        if self.avoid_known and sc.accesses.get(p, {key}) != {key}:
            p = self.param(dims, fresh=True)
        return sc.use(p, key)

    def reg(self, sc, block: int) -> str:
        kind = self.pick(["l1", "l2"])
        lam = self.pick(["0.01", "0.1", "0.5"])
        targets = []
        for _ in range(self.rng.choice([1, 1, 2])):
            form = self.pick(["row", "row", "whole", "support", "scalar"])
            rows = sc.sparse_rows(self)
            if form == "support" and rows:
                text, data, col_dim = self.pick(rows)
                dims = (col_dim,) if self.chance(0.5) else (col_dim, self.extent())
                if self.chance2(0.2):
                    dims = (col_dim, self.extent(), self.extent())
                p = self.reg_param(sc, dims, ("sparse", data, text[text.index("[") + 1:-1]))
                t = f"{p}[{text}]"
                self.tags.add(f"reg:on-support-{len(self.params[p][0])}d")
            elif form == "whole" and self.dims:
                d = self.pick(list(self.dims))
                p = self.reg_param(sc, (d,), ("dense", d))
                t = p
                self.tags.add("reg:on-whole-vector")
            elif form == "scalar":
                p = self.reg_param(sc, (), ())
                t = p
                self.tags.add("reg:on-scalar")
            else:
                var, dim = self.pick(sc.vars)
                key, tag = sc.key(var), None
                at = self.per_term_index(sc) if self.chance(0.3) else None
                if at is not None:
                    var, dim, key, tag = at
                dims = (dim,) if self.chance(0.4) else (dim, self.extent())
                if self.chance2(0.15):
                    dims = (dim, self.extent(), self.extent())
                p = self.reg_param(sc, dims, key)
                t = f"{p}[{var}]"
                self.tags.add(f"reg:on-{tag}" if tag else
                              "reg:on-row" if len(self.params[p][0]) == 2 else
                              "reg:on-row-3d" if len(self.params[p][0]) == 3 else "reg:on-entry")
            if t not in targets:
                targets.append(t)
        self.tags.add(f"reg:{kind}")
        unscaled = self.chance(0.25)
        if self.avoid_known and block > 0 and any("[" not in t for t in targets):
            unscaled = True           # F2: the field _n{block} may meet a temporary _n{k}
        if unscaled:
            self.tags.add("reg:unscaled")
        return f"reg {kind}({lam}) on {', '.join(targets)}" + (" unscaled" if unscaled else "")

    def predict(self, sc) -> str:
        self.tags.add("predict")
        r = self.rng.random()
        if r < 0.1:
            self.tags.add("predict:vector")
            v = self.vector(sc, self.vec_extent(sc), 1)
            self.tags.update(v.tags)
            return f"predict softmax({v.text})" if self.chance(0.5) else f"predict {v.text}"
        if r < 0.2:
            self.tags.add("predict:argmax")
            var, dim = self.pick(sc.vars)
            p = self.param((dim, self.extent()))
            return f"predict argmax({p}[{var}])"
        e = self.scalar(sc, 2)
        self.tags.update(e.tags)
        if r < 0.4:
            self.tags.add("predict:sign")
            return f"predict sign({e.text})"
        return f"predict {e.text}"

    # ------------------------------------------------------------ the spec and its data
    def parts(self, may_predict=True, may_train=True) -> tuple[list, list]:
        """(declaration lines, block texts) of a spec with 1-3 blocks."""
        n_blocks = self.rng.choice([1, 1, 1, 2, 2, 3])
        if n_blocks > 1:
            self.tags.add("blocks:several")
        predict_at = self.rng.randrange(n_blocks) if may_predict and self.chance(0.5) else -1
        blocks = [self.block(b, b == predict_at) for b in range(n_blocks)]
        used = {d for _, dims in self.data.values() for d in dims}
        for dim in self.dims:         # every dim's size must be readable off some data
            if dim not in used:
                self.data[f"y{len(self.data)}{self.sfx}"] = ("real", (dim,))
                self.tags.add("data:real")
        head = []
        if self.dims:
            head.append("dim " + ", ".join(self.dims))
        head += [f"const {k} = {v}" for k, v in self.consts.items()]
        for name, (kind, dims) in self.data.items():   # (an index datum's kind: index(E))
            head.append(f"data {name}[{', '.join(dims)}] : {kind}")
        for name, (dims, con, init) in self.params.items():
            shape = f"[{', '.join(dims)}]" if dims else ""
            head.append(f"param {name}{shape}{con}{init}")
        if may_train and self.chance(0.3):
            blocks[-1] += "\n\ntrain step 0.1, decay 0.9, epochs 3"
            self.tags.add("train-line")
        return head, blocks

    def spec(self) -> str:
        head, blocks = self.parts()
        return f"model fz{self.seed}\n" + "\n".join(head) + "\n\n" + "\n\n".join(blocks) + "\n"

    def dataset(self, small: bool) -> dict:
        """Random data for every declared data; `small`: one stored entry per entry block's
        data and size 1 for the dims rows blocks run over, where nothing else needs more."""
        rng = np.random.default_rng(self.rng.randrange(2**32))
        sizes = {}
        for d, (full, _) in self.dims.items():
            sizes[d] = full
        if small:
            for d in self.dims:
                sizes[d] = 1 if d in self.row_dims else 2
            for name in self.entry_sources:
                a, b = self.data[name][1]
                if a == b:
                    sizes[a] = max(sizes[a], 2)
        sizes.update(self.consts)
        out = {}
        for name, (kind, dims) in self.data.items():
            shape = tuple(sizes[d] for d in dims)
            if kind == "sparse":
                source = name in self.entry_sources
                out[name] = self.sparse(rng, shape, small and source,
                                        source and dims[0] == dims[1])
            elif kind.startswith("index("):
                out[name] = rng.integers(0, sizes[kind[6:-1]], size=shape)
            elif kind == "dense":
                out[name] = rng.uniform(-1, 1, size=shape)
            elif kind == "real":
                out[name] = rng.uniform(-1, 1, size=shape)
            elif kind == "sign":
                out[name] = rng.choice([-1.0, 1.0], size=shape)
            else:
                out[name] = rng.choice([0.0, 1.0], size=shape)
        return out

    def sparse(self, rng, shape, one_entry, no_diagonal):
        """A canonical CSR matrix: sorted, no duplicates, sometimes an explicit zero."""
        cells = [(r, c) for r in range(shape[0]) for c in range(shape[1])
                 if not (no_diagonal and r == c and self.avoid_known)]
        if one_entry:
            chosen = [cells[rng.integers(len(cells))]]
        else:
            keep = rng.random(len(cells)) < 0.5
            chosen = [c for c, k in zip(cells, keep) if k] or [cells[rng.integers(len(cells))]]
        chosen.sort()
        values = rng.uniform(-1, 1, size=len(chosen))
        if len(chosen) > 1 and rng.random() < 0.2:
            values[rng.integers(len(chosen))] = 0.0
            self.tags.add("data:explicit-zero")
        rows = np.array([r for r, _ in chosen], dtype=np.int64)
        cols = np.array([c for _, c in chosen], dtype=np.int32)
        indptr = np.searchsorted(rows, np.arange(shape[0] + 1)).astype(np.int64)
        return sp.csr_matrix((values, cols, indptr), shape=shape)


def _with(self: E, p: str) -> E:
    return E(self.text, self.shape, self.params | {p}, self.tags, self.vars)


E._with = _with


class Scope:
    """What a block's expressions may read: term vars, bound sum vars, lets."""

    def __init__(self, kind, vars_, source):
        self.kind, self.vars, self.source = kind, vars_, source
        self.bound: list[tuple] = []      # (name, extent, sparse source or None)
        self.lets: list[tuple] = []       # (name, "S" or ("V", extent))
        self.samples: list[tuple] = []    # (name, dim) of the block's sample lines
        self.let_params: dict[str, frozenset] = {}
        self.no_funcs = False
        self.accesses: dict[str, set] = {}   # param -> how its rows are selected (key())
        self.pair_rows: list[str] = []       # P[X[i]] of pairs_less_diagonal's 3-D params

    def key(self, var: str):
        """How an index variable selects a param's row: ("term", name), ("dense", extent) or
        ("sparse", data, row var) (derive gives every sum over one domain one site)."""
        for name, extent, source in self.bound:
            if name == var:
                return ("sparse",) + tuple(source) if source else ("dense", extent)
        return ("term", var)

    def use(self, param: str, key) -> str:
        self.accesses.setdefault(param, set()).add(key)
        return param

    @property
    def in_sum(self):
        return bool(self.bound)

    def index_vars(self):
        return list(self.vars) + [(n, d) for n, d, _ in self.bound]

    def stored_vars(self):
        return [(n, src[0], src[1]) for n, _, src in self.bound if src is not None]

    def sparse_rows(self, gen: Generator):
        """Sparse rows X[t] readable here (t a term var): (text, data, column dim); may declare
        new sparse data over a term var's dim."""
        rows = [(f"{name}[{v}]", name, dims[1]) for name, (kind, dims) in gen.data.items()
                if kind == "sparse" for v, d in self.vars if dims[0] == d]
        if not rows or gen.chance(0.3):
            v, d = gen.pick(self.vars)
            x = gen.datum("sparse", (d, gen.pick(list(gen.dims)) if gen.chance(0.5)
                                     else gen.new_dim() if len(gen.dims) < 6
                                     else gen.pick(list(gen.dims))))
            rows.append((f"{x}[{v}]", x, gen.data[x][1][1]))
        if gen.irng.random() < 0.15:        # a row picked by index data at a term var
            v, d = gen.irng.choice(self.vars)
            x = gen.irng.choice([name for name, (kind, _) in gen.data.items()
                                 if kind == "sparse"])
            n = gen.datum(f"index({gen.data[x][1][0]})", (d,))
            rows.append((f"{x}[{n}[{v}]]", x, gen.data[x][1][1]))
            gen.tags.add("row:at-index")
        return rows

    @staticmethod
    def reads_param(e: E) -> bool:
        return bool(e.params)

    def bind(self, name, extent, source=None):
        scope = self

        class _Bound:
            def __enter__(self):
                scope.bound.append((name, extent, source))

            def __exit__(self, *exc):
                scope.bound.pop()
        return _Bound()


def generate(seed: int, avoid_known: bool = True) -> Case:
    """One random valid spec and its data (deterministic in the seed)."""
    g = Generator(seed, avoid_known)
    text = g.spec()
    full = g.dataset(small=False)
    small = g.dataset(small=True)
    return Case(seed, text, full, small, set(g.tags))


def generate_packed(seeds, avoid_known: bool = True) -> tuple[Case, list]:
    """Several independent random specs (one per seed, disjoint names, dims, params and data)
    as the blocks of one spec, so that one compile checks them all; also returns each
    part alone as its own Case (`generate(seed)` with a name suffix), to isolate a failure."""
    decls, blocks, full, small, tags, alone = [], [], {}, {}, set(), []
    for n, seed in enumerate(seeds):
        g = Generator(seed, avoid_known, suffix=f"q{n}" if n else "", block_offset=len(blocks))
        head, body = g.parts(may_predict=n == 0, may_train=n == 0)
        f, s = g.dataset(small=False), g.dataset(small=True)
        decls += head
        blocks += body
        full.update(f)
        small.update(s)
        tags |= g.tags
        text = f"model fz{seed}\n" + "\n".join(head) + "\n\n" + "\n\n".join(body) + "\n"
        alone.append(Case(seed, text, f, s, set(g.tags)))
    text = f"model fzp{seeds[0]}\n" + "\n".join(decls) + "\n\n" + "\n\n".join(blocks) + "\n"
    return Case(seeds[0], text, full, small, tags), alone


# ---------------------------------------------------------------- the differential check

SYNCS = ("hogwild", "atomic", "lock")
MARGIN = 1e-3        # the least distance to a kink or domain edge a finite difference trusts
# (a tie of a vector's max or min is a kink: there a central difference gives 1/2 to each of two
# ties, not the kernel's shared subgradient 1/n, so steps are compared away from ties only)


def draw_params(interp, rng: np.random.Generator) -> dict:
    """Random params strictly inside their constraints (simplex rows from a Dirichlet, ball
    rows inside the ball, boxes away from their walls), away from 0 for l1's kink."""
    from hogwild_dsl.interp import project_rows
    out = {}
    for p in interp.spec.params:
        shape = interp.param_shape(p.name)
        value = rng.normal(0.0, 0.6, size=shape)
        value = np.where(np.abs(value) < 0.05, 0.05 * np.sign(value + 1e-300), value)
        con = p.constraint
        if con is not None:
            rows = value.reshape(-1, shape[-1]) if shape else value.reshape(1, 1)
            if con.kind == "simplex":
                rows = rng.dirichlet(np.ones(rows.shape[1]), size=rows.shape[0])
            elif con.kind == "ball":
                norms = np.linalg.norm(rows, axis=1, keepdims=True)
                rows = rows / norms * con.hi * rng.uniform(0.3, 0.9, size=norms.shape)
            elif con.kind == "box":
                span = con.hi - con.lo
                rows = rng.uniform(con.lo + 0.1 * span, con.hi - 0.1 * span, size=rows.shape)
            else:
                rows = con.lo + rng.uniform(0.1, 1.0, size=rows.shape)
            value = project_rows(rows.reshape(shape), con)
        out[p.name] = np.array(value, dtype=np.float64)
    return out


def _safe_point(interp, rng, evaluate, tries=30):
    """Params at which `evaluate(params)` stays finite, moderate and MARGIN away from kinks."""
    for _ in range(tries):
        params = draw_params(interp, rng)
        interp.margin = np.inf
        try:
            value = evaluate(params)
        except (OverflowError, ZeroDivisionError):
            continue
        finite = all(np.all(np.isfinite(v)) and np.max(np.abs(v), initial=0) < 1e6
                     for v in (value if isinstance(value, dict) else {"": value}).values())
        if finite and interp.margin > MARGIN:
            return params, value
    return None, None


def _close(a, b, rtol, atol) -> bool:
    return bool(np.all(np.abs(np.asarray(a) - np.asarray(b)) <= atol + rtol * np.abs(b)))


def reference(case: Case):
    """What the interpreter expects of `case`, or None when no params were found MARGIN away
    from every kink: (spec, interpreter on the full data, params, objective there, params
    before and after one SGD epoch on the small data, the step)."""
    import hogwild_dsl
    from hogwild_dsl.interp import Interpreter

    from hogwild_dsl.runtime import _draw_key
    spec = hogwild_dsl.check(case.text)
    rng = np.random.default_rng(case.seed)
    full = Interpreter(spec, case.full)
    full.draw_key = _draw_key(0, "objective")     # the draws of a seed-0 trainer
    params, expected = _safe_point(full, rng, full.objective)
    if params is None:
        return None
    small = Interpreter(spec, case.small)
    small.draw_key = _draw_key(0, "objective")
    for _ in range(6):
        start, _ = _safe_point(small, rng, small.objective)
        if start is None:
            return None
        grads = [small.term_gradient(b, t, start) for b in range(len(small.terms))
                 for t in range(len(small.terms[b]))]
        gmax = max((abs(g) for gr in grads for g in gr.values()), default=1.0)
        step = float(min(0.2, 0.2 / max(gmax, 1e-12)))
        small.margin = np.inf
        after = small.sgd_epoch(start, step, draw_key=_draw_key(0, "epoch", 0))
        if small.margin > MARGIN and all(np.all(np.isfinite(v)) for v in after.values()):
            return spec, full, params, expected, start, after, step
    return None


def check_case(case: Case, load, syncs=SYNCS) -> dict:
    """Compile `case` and compare the trainer with the reference interpreter: (a) objective()
    at random params, (b) predict(), (c) the params after one epoch of SGD in stored order on
    the small data set (one term per block where the data allow) in each sync mode, (d) the
    initial values of constant-initialised params. Returns {"status": "match" | "mismatch" |
    "compile-error" | "degenerate", "failures": [...], ...}."""
    import hogwild_dsl
    from hogwild_dsl.interp import project_rows

    ref = reference(case)
    if ref is None:
        return {"status": "degenerate", "failures": []}
    spec, full, params, expected, start, after, step = ref
    try:
        mod = load(text=case.text)
    except Exception as e:   # noqa: BLE001 - any failure to build is a finding
        return {"status": "compile-error", "failures": [f"{type(e).__name__}: {e}"[:2000]]}
    failures = []
    t = mod.Trainer(epochs=0, threads=1)
    t.fit(**case.full)
    for p in spec.params:            # (d) constant initialisations, projected on the constraint
        if p.init.kind in ("value", "uniform_rows"):
            shape = full.param_shape(p.name)
            fill = p.init.a if p.init.kind == "value" else 1.0 / max(shape[-1], 1)
            want = project_rows(np.full(shape, fill), p.constraint)
            if not _close(t.params[p.name], want, 1e-12, 1e-12):
                failures.append(f"init of {p.name}: got {t.params[p.name]!r}, want {want!r}")
    for name, value in params.items():
        t.params[name][...] = value
    got = t.objective(**case.full)   # (a)
    scale = max(abs(expected), 1.0)
    if not abs(got - expected) <= 1e-8 * scale:
        failures.append(f"objective: trainer {got!r}, interpreter {expected!r}")
    if any(b.predict is not None for b in spec.blocks):   # (b)
        want = full.predict(params)
        got_p = t.predict(**case.full)
        if got_p.shape != want.shape or not _close(got_p, want, 1e-8, 1e-10):
            failures.append(f"predict: trainer {got_p!r}, interpreter {want!r}")
    for sync in syncs:               # (c)
        t = mod.Trainer(epochs=1, step=step, decay=1.0, sync=sync, order="stored", threads=1)
        t.params = {k: v.copy() for k, v in start.items()}
        try:
            t.fit(**case.small)
        except hogwild_dsl.HogwildError as e:
            failures.append(f"step ({sync}): {type(e).__name__}: {e}")
            continue
        for name in start:
            moved = np.max(np.abs(after[name] - start[name]), initial=0.0)
            if not _close(t.params[name], after[name], 1e-9, 1e-8 + 1e-5 * moved):
                failures.append(f"step ({sync}) of {name}: from {start[name]!r} trainer "
                                f"{t.params[name]!r}, interpreter {after[name]!r} "
                                f"(step {step:.6g})")
    return {"status": "mismatch" if failures else "match", "failures": failures,
            "step": step, "start": start, "params": params}
