"""A reference interpreter of a checked spec: the objective and one SGD epoch, in plain Python.

Written from the meaning of the IR (ir.py) and of LANGUAGE.md / API.md, and deliberately
independent of derive/lower/emit, so that the generated kernels can be checked against it
(tests/test_differential.py, tools/fuzz_backend.py). It is slow (a Python call per IR node and
per stored entry) and meant for small data.

- The terms of a block are the indices of its dim (rows) or the stored entries of its sparse
  data in CSR order (entries), every stored entry as given: explicit zeros and repeated
  (u, v) entries of a COO are separate terms; blocks follow one another ("stored" order).
- deg(c) of the degree split is counted here from the data: the number of terms of the block
  whose regularizer share reads the coordinate c (every `Deg` node the term visits).
- Gradients are central finite differences over the coordinates a term reads; `sgd_epoch`
  applies them term by term with the update rule of LANGUAGE.md: `c -= step * g` for the
  losses and l2 regs; a coordinate under `reg l1` then moves toward 0 by the penalty it still
  owes, never across it (the clipped cumulative penalty of Tsuruoka et al. 2009: it owes
  u = the sum of step x its weight LAMBDA / deg(c) over its touches, and has been given q);
  then box / lower-bound clipping, then the touched rows of simplex / ball params projected.
- Index data `y[i]` (or `f[j]` at a summed j) pick a coordinate by their value; `max`/`min`/`logsumexp` of a vector are
  evaluated directly (logsumexp as m + log(sum(exp(v - m))), m the max).
- A `sample j in D` line draws j uniformly from D with the counter-based generator documented
  in templates/hogwild_helpers.h (splitmix64 of the draw key, the term's index in its block and
  the draw's number: block x 1024 + the sample line's position), under `draw_key` (set it to
  the runtime's key of the objective or of an epoch to compare draw for draw). deg(c) of a
  sampled coordinate is its expected number of touches per epoch: terms / size of D.
  `sample n[K] in D` draws n[s] for s in 0..K-1 the same way, draw number
  (block x 1024 + position + 1) x 2^32 + s; its deg(c) is K x terms / size of D.
  Weighted draws (`~ P`) are not interpreted.
- `margin` reports how close the last evaluation came to a kink or a domain edge (abs, relu,
  hinge, max, min at their kinks; sqrt, log, division, fractional powers near 0): a finite
  difference is only trusted when that margin is comfortably larger than its step.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from . import ir

__all__ = ["Interpreter", "project_rows"]


# ---------------------------------------------------------------- scalar functions


def _exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _softplus(x):
    """log(1 + exp(x)), stable."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _huber(z, delta):
    return 0.5 * z * z if abs(z) <= delta else delta * (abs(z) - 0.5 * delta)


def _safe(fn):
    """A math function that returns nan/inf instead of raising on a domain error."""
    def call(*args):
        try:
            return fn(*args)
        except (ValueError, ZeroDivisionError):
            return math.nan
        except OverflowError:
            return math.inf
    return call


FUNCS = {
    "abs": abs, "exp": _exp, "log": _safe(math.log), "log1p": _safe(math.log1p),
    "sqrt": _safe(math.sqrt), "sigmoid": _sigmoid, "softplus": _softplus,
    "relu": lambda x: max(0.0, x), "hinge": lambda z: max(0.0, 1.0 - z),
    "sqhinge": lambda z: max(0.0, 1.0 - z) ** 2, "logistic": lambda z: _softplus(-z),
    "max": max, "min": min, "huber": _huber,
    "sign": lambda z: float(np.sign(z)),
}

# where each function is not smooth (distance to the nearest bad point of its arguments)
KINKS = {
    "abs": lambda x: abs(x), "relu": lambda x: abs(x), "hinge": lambda z: abs(1.0 - z),
    "max": lambda a, b: abs(a - b), "min": lambda a, b: abs(a - b),
    "sqrt": lambda x: x, "log": lambda x: x, "log1p": lambda x: 1.0 + x,
    "huber": lambda z, d: abs(abs(z) - d),
}


def _pow(a, b):
    try:
        return math.pow(a, b)
    except ValueError:
        return math.nan
    except (OverflowError, ZeroDivisionError):
        return math.inf


def _div(a, b):
    if b == 0.0:
        return math.nan if a == 0.0 else math.copysign(math.inf, a)
    return a / b


# ---------------------------------------------------------------- projections


def _project_simplex(row: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {x >= 0, sum x = 1} (sort and threshold)."""
    u = np.sort(row)[::-1]
    css = np.cumsum(u)
    k = np.arange(1, row.size + 1)
    rho = np.nonzero(u * k > css - 1.0)[0][-1]
    theta = (css[rho] - 1.0) / (rho + 1)
    return np.maximum(row - theta, 0.0)


def project_rows(value: np.ndarray, con: ir.Constraint | None, rows=None) -> np.ndarray:
    """`value` with its constraint applied: elementwise for box/lower, per row (the last axis)
    for simplex/ball; `rows` (index tuples of the leading axes) limits the rows."""
    if con is None:
        return value
    out = np.array(value, dtype=np.float64)
    if con.kind == "lower":
        return np.maximum(out, con.lo)
    if con.kind == "box":
        return np.clip(out, con.lo, con.hi)
    if out.ndim == 1:
        views = [out]
    else:       # rows: first-axis indices (2-D) or index tuples of the leading axes (3-D)
        views = [out[r] for r in (np.ndindex(out.shape[:-1]) if rows is None else rows)]
    for row in views:
        if con.kind == "simplex":
            row[...] = _project_simplex(row)
        else:
            norm = float(np.sqrt(np.sum(row * row)))
            if norm > con.hi:
                row *= con.hi / norm
    return out


# ---------------------------------------------------------------- draws of `sample` lines

_M64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64's finaliser (as _hw_mix)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def draw(key: int, term: int, which: int, n: int) -> int:
    """Draw number `which` of a term under `key`: uniform in [0, n) (as _hw_draw)."""
    bits = _mix((_mix((key & _M64) ^ _mix(term)) + which) & _M64)
    return (bits * n) >> 64


def _without_abs(e: ir.Expr) -> ir.Expr:
    """An l1 share with |c| read as c."""
    if isinstance(e, ir.Func):
        args = tuple(_without_abs(a) for a in e.args)
        return args[0] if e.name == "abs" else ir.Func(e.name, args)
    if isinstance(e, ir.Binary):
        return ir.Binary(e.op, _without_abs(e.left), _without_abs(e.right))
    if isinstance(e, ir.Neg):
        return ir.Neg(_without_abs(e.operand))
    if isinstance(e, ir.Sum):
        return ir.Sum(e.var, _without_abs(e.body))
    return e


# ---------------------------------------------------------------- the interpreter


def _stored(value):
    """Sparse data as CSR keeping every stored entry as given (LANGUAGE.md: explicit zeros
    and repeated (u, v) entries are separate observations), and for each CSR position the
    index of that entry in the order given (a COO's own order; CSR order for CSR input)."""
    if sp.issparse(value) and value.format == "csr":
        m = sp.csr_matrix(value, dtype=np.float64, copy=True)
        return m, np.arange(m.nnz)
    coo = sp.coo_matrix(value, dtype=np.float64)
    perm = np.argsort(coo.row, kind="stable")
    indptr = np.searchsorted(coo.row[perm], np.arange(coo.shape[0] + 1)).astype(np.int64)
    m = sp.csr_matrix((coo.data[perm], coo.col[perm].astype(np.int32), indptr), shape=coo.shape)
    return m, perm


class Interpreter:
    """Evaluates the objective of `spec` (an ir.Spec from `check`) on one data set."""

    def __init__(self, spec: ir.Spec, data: dict):
        self.spec = spec
        self.data = {}
        self.given_order = {}       # sparse data: CSR position -> index of the entry as given
        for d in spec.data:
            if d.name not in data:
                raise KeyError(f"missing data '{d.name}'")
            v = data[d.name]
            if d.kind == "sparse":
                self.data[d.name], self.given_order[d.name] = _stored(v)
            elif d.kind == "index":
                self.data[d.name] = np.asarray(v).astype(np.int64)
            else:
                self.data[d.name] = np.asarray(v, dtype=np.float64)
        self.sizes = dict(spec.consts)
        for d in spec.data:
            for axis, dim in enumerate(d.dims):
                self.sizes.setdefault(dim, self.data[d.name].shape[axis])
        pointed = {}                 # a dim only index data point into: the largest index
        for d in spec.data:          # + 1 over all of them
            if d.kind == "index" and d.of not in self.sizes:
                pointed[d.of] = max(pointed.get(d.of, 0),
                                    int(self.data[d.name].max(initial=-1)) + 1)
        self.sizes.update(pointed)
        self.draw_key = 0
        self.margin = math.inf
        self._touched = None        # a set while recording which coordinates a term reads
        self._degs_seen = None      # a set while counting deg(c)
        self.deg: dict[tuple, int] = {}
        self.terms = [list(self._block_terms(b)) for b in spec.blocks]
        self.n_terms = sum(len(t) for t in self.terms)
        self._parts = {
            "objective": [self._compile(b.objective) for b in spec.blocks],
            "smooth": [self._compile(ir.add_all([e for e, _ in b.losses] + [
                r.expr for r in b.regs if r.kind != "l1"])) for b in spec.blocks],
            "l1": [self._compile(ir.add_all([_without_abs(r.expr) for r in b.regs
                                             if r.kind == "l1"]) or ir.Const(0.0))
                   for b in spec.blocks]}
        self._predict = [self._compile(b.predict) if b.predict is not None else None
                         for b in spec.blocks]
        self._count_degrees()

    # ------------------------------------------------------------ shapes and terms
    def param_shape(self, name: str) -> tuple:
        return tuple(self.sizes[d] for d in self.spec.param(name).dims)

    def _block_terms(self, block: ir.Block):
        """One environment (index variable -> value) per term of the block, in stored order."""
        if block.kind == "rows":
            (i,) = block.vars
            for t in range(self.sizes[block.over]):
                yield {i.name: t, "__term__": t}
        else:
            u, v = block.vars
            m = self.data[block.over]
            for row in range(m.shape[0]):
                for pos in range(m.indptr[row], m.indptr[row + 1]):
                    yield {u.name: row, v.name: int(m.indices[pos]), "__entry__": pos,
                           "__term__": pos}

    def _count_degrees(self):
        """deg(c): for each Deg node name and index, the number of terms that visit it
        through each target of a reg line on one param (a term reaching c through two
        targets of a line, E[h[i]] and E[t[i]] with h = t, counts twice, as it pays the share
        twice); one count serves every line and param sharing the name."""
        params = {p.name: np.zeros(self.param_shape(p.name)) for p in self.spec.params}
        for b, block in enumerate(self.spec.blocks):
            regs = [((r.line, r.param), self._compile(r.expr)) for r in block.regs]
            for env in self.terms[b]:
                seen = {}
                for line, reg in regs:
                    self._degs_seen = set()
                    reg(dict(env), params)
                    for key in self._degs_seen:
                        seen[line, key] = seen.get((line, key), 0) + 1
                most = {}
                for (_, key), n in seen.items():
                    most[key] = max(most.get(key, 0), n)
                for key, n in most.items():
                    self.deg[key] = self.deg.get(key, 0) + n
        self._degs_seen = None

    def _expected_touches(self, name: str) -> float:
        """The expected touches per epoch of one coordinate through the sampled indices of
        the targets dividing by Deg `name`: terms x K / size of the dim, per sample line."""
        lines = {}
        for b in self.spec.blocks:
            for r in b.regs:
                for node in ir.walk(r.expr):
                    if not isinstance(node, ir.Deg) or node.name != name:
                        continue
                    for v in node.index:
                        if v.kind in ("sample", "draw"):
                            lines[v.name if v.kind == "sample" else v.source[1]] = v.dim
        total = 0.0
        for name_of, dim in lines.items():
            block, line = next((b, s) for b in self.spec.blocks for s in b.samples
                               if s.var.name == name_of)
            total += sum(1 for _ in self._block_terms(block)) * line.draws / self.sizes[dim]
        return total

    # ------------------------------------------------------------ compiling IR to closures
    def _index(self, var: ir.Var):
        """A function env -> the integer value of an index variable."""
        name = var.name
        if var.kind == "sparse":
            return lambda env: env[name][0]
        if var.kind == "indirect":          # y[i], or f[j] at a summed j
            values, at = self.data[var.source[0]], self._index(var.at)
            return lambda env: int(values[at(env)])
        if var.kind == "sample":
            if var.source[0] is not None:
                raise TypeError("the interpreter does not draw weighted samples")
            block = next(b for b in self.spec.blocks if any(s.var == var for s in b.samples))
            which = block.index * 1024 + [s.var for s in block.samples].index(var)
            n = self.sizes[var.dim]
            return lambda env: draw(self.draw_key, env["__term__"], which, n)
        if var.kind == "draw":          # n[s]: the s-th of the term's draws
            weights, n_name, s = var.source
            if weights is not None:
                raise TypeError("the interpreter does not draw weighted samples")
            block = next(b for b in self.spec.blocks
                         if any(x.var.name == n_name and x.count for x in b.samples))
            pos = next(k for k, x in enumerate(block.samples) if x.var.name == n_name)
            base, n, s_name = (block.index * 1024 + pos + 1) << 32, self.sizes[var.dim], s.name
            return lambda env: draw(self.draw_key, env["__term__"], base + env[s_name], n)
        return lambda env: env[name]

    def _compile(self, e: ir.Expr):
        """IR expression -> a Python function (env, params) -> float."""
        if isinstance(e, ir.Const):
            value = float(e.value)
            return lambda env, p: value
        if isinstance(e, ir.ParamAt):
            name, idx = e.name, [self._index(v) for v in e.index]

            def param_at(env, p):
                key = tuple(f(env) for f in idx)
                if self._touched is not None:
                    self._touched.add((name, key))
                return float(p[name][key])
            return param_at
        if isinstance(e, ir.DataAt):
            return self._data_at(e)
        if isinstance(e, ir.Deg):
            name, idx = e.name, [self._index(v) for v in e.index]
            sampled = any(v.kind in ("sample", "draw") for v in e.index)
            expected = self._expected_touches(name)

            def deg(env, p):
                key = (name, tuple(f(env) for f in idx))
                if self._degs_seen is not None:
                    if not sampled:         # a draw is counted in expectation, not here
                        self._degs_seen.add(key)
                    return 1.0
                return float(self.deg.get(key, 0)) + expected
            return deg
        if isinstance(e, ir.Neg):
            f = self._compile(e.operand)
            return lambda env, p: -f(env, p)
        if isinstance(e, ir.Binary):
            return self._binary(e)
        if isinstance(e, ir.Func):
            return self._func(e)
        if isinstance(e, ir.Sum):
            body = self._compile(e.body)
            values = self._range(e.var)
            name = e.var.name

            def total(env, p):
                outer, acc = env.get(name), 0.0
                for value in values(env):
                    env[name] = value
                    acc += body(env, p)
                env[name] = outer
                return acc
            return total
        if isinstance(e, ir.ArgMax):
            body = self._compile(e.body)
            values = self._range(e.var)
            name = e.var.name

            def argmax(env, p):
                outer, best, at = env.get(name), -math.inf, 0
                for value in values(env):
                    env[name] = value
                    b = body(env, p)
                    if b > best:
                        best, at = b, value
                env[name] = outer
                return float(at)
            return argmax
        if isinstance(e, ir.Reduce):
            return self._reduce(e)
        raise TypeError(f"the interpreter does not know {type(e).__name__}")

    def _reduce(self, e: ir.Reduce):
        """max / min (a kink where the top two values tie) or logsumexp of a vector."""
        body, values, name, op = self._compile(e.body), self._range(e.var), e.var.name, e.op

        def reduce(env, p):
            outer = env.get(name)
            vs = []
            for value in values(env):
                env[name] = value
                vs.append(body(env, p))
            env[name] = outer
            top = max(vs) if op != "min" else min(vs)
            if op != "logsumexp":
                if len(vs) > 1:
                    ranked = sorted(vs, reverse=op == "max")
                    self.margin = min(self.margin, abs(ranked[0] - ranked[1]))
                return top
            if math.isinf(top):
                return top
            return top + math.log(sum(math.exp(v - top) for v in vs))
        return reduce

    def _range(self, var: ir.Var):
        """A function env -> the values a summed variable takes (ints, or (column, position)
        pairs for the stored entries of a sparse row)."""
        if var.kind == "dense":
            n = self.sizes[var.dim]
            return lambda env: range(n)
        m = self.data[var.source[0]]
        row_of = self._index(var.at)     # X[i], or X[better[p]]

        def entries(env):
            row = row_of(env)
            return [(int(m.indices[q]), q) for q in range(m.indptr[row], m.indptr[row + 1])]
        return entries

    def _data_at(self, e: ir.DataAt):
        decl = self.spec.datum(e.name)
        arr = self.data[e.name]
        if decl.kind != "sparse":
            idx = [self._index(v) for v in e.index]
            return lambda env, p: float(arr[tuple(f(env) for f in idx)])
        row, col = e.index
        if col.kind == "sparse":          # X[i, j] inside sum(j in X[i]: ...): the stored value
            name = col.name
            return lambda env, p: float(arr.data[env[name][1]])
        return lambda env, p: float(arr.data[env["__entry__"]])   # r[u, v] of an entry block

    def _binary(self, e: ir.Binary):
        a, b = self._compile(e.left), self._compile(e.right)
        op = e.op
        if op == "+":
            return lambda env, p: a(env, p) + b(env, p)
        if op == "-":
            return lambda env, p: a(env, p) - b(env, p)
        if op == "*":
            return lambda env, p: a(env, p) * b(env, p)
        if op == "/":
            def quotient(env, p):
                d = b(env, p)
                self.margin = min(self.margin, abs(d))
                return _div(a(env, p), d)
            return quotient
        integer = isinstance(e.right, ir.Const) and float(e.right.value).is_integer()

        def power(env, p):
            base = a(env, p)
            if not integer:
                self.margin = min(self.margin, abs(base))
            return _pow(base, b(env, p))
        return power

    def _func(self, e: ir.Func):
        args = [self._compile(x) for x in e.args]
        fn, kink = FUNCS[e.name], KINKS.get(e.name)

        def call(env, p):
            values = [f(env, p) for f in args]
            if kink is not None:
                self.margin = min(self.margin, kink(*values))
            return fn(*values)
        return call

    # ------------------------------------------------------------ the objective
    def term_value(self, block: int, term: int, params: dict, part="objective") -> float:
        """One term's losses plus its share of the regularizer (part "objective"); without its
        l1 shares ("smooth"); its l1 shares with |c| read as c ("l1": their gradient is each
        coordinate's l1 weight)."""
        return self._parts[part][block](dict(self.terms[block][term]), params)

    def objective(self, params: dict) -> float:
        """Mean over every term of every block (API.md's objective)."""
        total = 0.0
        for b in range(len(self.terms)):
            for t in range(len(self.terms[b])):
                total += self.term_value(b, t, params)
        return total / max(self.n_terms, 1)

    def predict(self, params: dict) -> np.ndarray:
        """The `predict` expression of the predicting block, one value per term (a vector
        predict: one row per term, over its dim)."""
        b = next(i for i, f in enumerate(self._predict) if f is not None)
        block = self.spec.blocks[b]
        var = block.predict_var
        if var is None:
            values = np.array([self._predict[b](dict(env), params) for env in self.terms[b]])
        else:
            values = np.array([[self._predict[b](dict(env, **{var.name: k}), params)
                                for k in range(self.sizes[var.dim])] for env in self.terms[b]])
            values = values.reshape(len(self.terms[b]), self.sizes[var.dim])
        if block.kind == "entries":         # in the order the entries were given (API.md)
            out = np.empty_like(values)
            out[self.given_order[block.over]] = values
            return out
        return values

    def touched(self, block: int, term: int, params: dict, part="objective") -> list:
        """The (param, index) coordinates one term's objective (or part) reads."""
        self._touched = set()
        try:
            self.term_value(block, term, params, part)
            return sorted(self._touched, key=lambda c: (c[0], c[1]))
        finally:
            self._touched = None

    # ------------------------------------------------------------ gradients and SGD
    def term_gradient(self, block: int, term: int, params: dict, h: float = 1e-6,
                      part="objective") -> dict:
        """d(term value)/d(coordinate) by central differences, for every coordinate it reads."""
        grad = {}
        for name, key in self.touched(block, term, params, part):
            arr = params[name]
            old = float(arr[key])
            step = h * max(1.0, abs(old))
            arr[key] = old + step
            up = self.term_value(block, term, params, part)
            arr[key] = old - step
            down = self.term_value(block, term, params, part)
            arr[key] = old
            grad[(name, key)] = (up - down) / (2 * step)
        return grad

    def gradient(self, params: dict, h: float = 1e-6) -> dict:
        """The gradient of the objective (the mean over terms), one array per param."""
        out = {name: np.zeros_like(v, dtype=np.float64) for name, v in params.items()}
        for b in range(len(self.terms)):
            for t in range(len(self.terms[b])):
                for (name, key), g in self.term_gradient(b, t, params, h).items():
                    out[name][key] += g / self.n_terms
        return out

    def sgd_epoch(self, params: dict, step: float, h: float = 1e-6, draw_key=None) -> dict:
        """One SGD epoch in stored order (block by block, terms in order): a copy of the params
        after it. Each term: c -= step * g for every coordinate it reads (one step at the old
        point), an l1 param's zero crossing stopped at 0, box/lower clipped, then the touched
        rows of simplex/ball params projected. `draw_key`: the key of the epoch's draws. The
        l1 penalty's state (owed, given) starts at 0, as in a fresh trainer."""
        if draw_key is not None:
            kept = self.draw_key
            self.draw_key = draw_key
            try:
                return self.sgd_epoch(params, step, h)
            finally:
                self.draw_key = kept
        params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
        owed, given = {}, {}
        for b in range(len(self.terms)):
            for t in range(len(self.terms[b])):
                grad = self.term_gradient(b, t, params, h, "smooth")
                weights = self.term_gradient(b, t, params, h, "l1")
                rows: dict[str, set] = {}
                for (name, key) in dict.fromkeys(list(grad) + list(weights)):
                    arr = params[name]
                    old = float(arr[key])
                    new = old - step * grad.get((name, key), 0.0)
                    con = self.spec.param(name).constraint
                    bounded = con is not None and con.kind in ("lower", "box")
                    if (name, key) in weights:
                        z = new
                        u = owed[(name, key)] = owed.get((name, key), 0.0) + \
                            step * weights[(name, key)]
                        q = given.get((name, key), 0.0)
                        if z > 0:
                            new = max(0.0, z - (u + q))
                        elif z < 0:
                            new = min(0.0, z + (u - q))
                        kept = new      # the part of the move the bound lets stand
                        if bounded:
                            kept = max(min(con.lo, z), new)
                            kept = min(max(con.hi, z), kept) if con.kind == "box" else kept
                        given[(name, key)] = q + kept - z
                    if bounded:
                        new = float(project_rows(np.array(new), con))
                    arr[key] = new
                    rows.setdefault(name, set()).add(key[:-1] if len(key) >= 2 else None)
                for name, touched in rows.items():
                    con = self.spec.param(name).constraint
                    if con is not None and con.kind in ("simplex", "ball"):
                        which = None if None in touched else sorted(touched)
                        params[name] = project_rows(params[name], con, which)
        return params
