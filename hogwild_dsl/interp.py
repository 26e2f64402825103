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
  applies them term by term with the update rule of LANGUAGE.md: `c -= step * g`, an l1
  param's zero crossing stopped at 0, then box / lower-bound clipping, then the touched rows
  of simplex / ball params projected.
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
    for simplex/ball; `rows` (indices of the first axis of a 2-D param) limits the rows."""
    if con is None:
        return value
    out = np.array(value, dtype=np.float64)
    if con.kind == "lower":
        return np.maximum(out, con.lo)
    if con.kind == "box":
        return np.clip(out, con.lo, con.hi)
    if out.ndim == 1:
        views = [out]
    else:
        views = [out[r] for r in (range(out.shape[0]) if rows is None else rows)]
    for row in views:
        if con.kind == "simplex":
            row[...] = _project_simplex(row)
        else:
            norm = float(np.sqrt(np.sum(row * row)))
            if norm > con.hi:
                row *= con.hi / norm
    return out


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
            else:
                self.data[d.name] = np.asarray(v, dtype=np.float64)
        self.sizes = dict(spec.consts)
        for d in spec.data:
            for axis, dim in enumerate(d.dims):
                self.sizes.setdefault(dim, self.data[d.name].shape[axis])
        self.margin = math.inf
        self._touched = None        # a set while recording which coordinates a term reads
        self._degs_seen = None      # a set while counting deg(c)
        self.deg: dict[tuple, int] = {}
        self.terms = [list(self._block_terms(b)) for b in spec.blocks]
        self.n_terms = sum(len(t) for t in self.terms)
        self._objective = [self._compile(b.objective) for b in spec.blocks]
        self._predict = [self._compile(b.predict) if b.predict is not None else None
                         for b in spec.blocks]
        self.l1 = [{r.param for r in b.regs if r.kind == "l1"} for b in spec.blocks]
        self._count_degrees()

    # ------------------------------------------------------------ shapes and terms
    def param_shape(self, name: str) -> tuple:
        return tuple(self.sizes[d] for d in self.spec.param(name).dims)

    def _block_terms(self, block: ir.Block):
        """One environment (index variable -> value) per term of the block, in stored order."""
        if block.kind == "rows":
            (i,) = block.vars
            for t in range(self.sizes[block.over]):
                yield {i.name: t}
        else:
            u, v = block.vars
            m = self.data[block.over]
            for row in range(m.shape[0]):
                for pos in range(m.indptr[row], m.indptr[row + 1]):
                    yield {u.name: row, v.name: int(m.indices[pos]), "__entry__": pos}

    def _count_degrees(self):
        """deg(c): for each Deg node name and index, the number of terms that visit it."""
        params = {p.name: np.zeros(self.param_shape(p.name)) for p in self.spec.params}
        for b, block in enumerate(self.spec.blocks):
            regs = [self._compile(r.expr) for r in block.regs]
            for env in self.terms[b]:
                self._degs_seen = set()
                for reg in regs:
                    reg(dict(env), params)
                for key in self._degs_seen:
                    self.deg[key] = self.deg.get(key, 0) + 1
        self._degs_seen = None

    # ------------------------------------------------------------ compiling IR to closures
    def _index(self, var: ir.Var):
        """A function env -> the integer value of an index variable."""
        name = var.name
        if var.kind == "sparse":
            return lambda env: env[name][0]
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

            def deg(env, p):
                key = (name, tuple(f(env) for f in idx))
                if self._degs_seen is not None:
                    self._degs_seen.add(key)
                    return 1.0
                return float(self.deg[key])
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
        raise TypeError(f"the interpreter does not know {type(e).__name__}")

    def _range(self, var: ir.Var):
        """A function env -> the values a summed variable takes (ints, or (column, position)
        pairs for the stored entries of a sparse row)."""
        if var.kind == "dense":
            n = self.sizes[var.dim]
            return lambda env: range(n)
        m = self.data[var.source[0]]
        row_var = var.source[1]

        def entries(env):
            row = env[row_var]
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
    def term_value(self, block: int, term: int, params: dict) -> float:
        """One term's losses plus its share of the regularizer."""
        return self._objective[block](dict(self.terms[block][term]), params)

    def objective(self, params: dict) -> float:
        """Mean over every term of every block (API.md's objective)."""
        total = 0.0
        for b in range(len(self.terms)):
            for t in range(len(self.terms[b])):
                total += self.term_value(b, t, params)
        return total / max(self.n_terms, 1)

    def predict(self, params: dict) -> np.ndarray:
        """The `predict` expression of the predicting block, one value per term."""
        b = next(i for i, f in enumerate(self._predict) if f is not None)
        values = np.array([self._predict[b](dict(env), params) for env in self.terms[b]])
        block = self.spec.blocks[b]
        if block.kind == "entries":         # in the order the entries were given (API.md)
            out = np.empty_like(values)
            out[self.given_order[block.over]] = values
            return out
        return values

    def touched(self, block: int, term: int, params: dict) -> list:
        """The (param, index) coordinates one term's objective reads, in first-read order."""
        self._touched = set()
        try:
            self.term_value(block, term, params)
            return sorted(self._touched, key=lambda c: (c[0], c[1]))
        finally:
            self._touched = None

    # ------------------------------------------------------------ gradients and SGD
    def term_gradient(self, block: int, term: int, params: dict, h: float = 1e-6) -> dict:
        """d(term value)/d(coordinate) by central differences, for every coordinate it reads."""
        grad = {}
        for name, key in self.touched(block, term, params):
            arr = params[name]
            old = float(arr[key])
            step = h * max(1.0, abs(old))
            arr[key] = old + step
            up = self.term_value(block, term, params)
            arr[key] = old - step
            down = self.term_value(block, term, params)
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

    def sgd_epoch(self, params: dict, step: float, h: float = 1e-6) -> dict:
        """One SGD epoch in stored order (block by block, terms in order): a copy of the params
        after it. Each term: c -= step * g for every coordinate it reads (one step at the old
        point), an l1 param's zero crossing stopped at 0, box/lower clipped, then the touched
        rows of simplex/ball params projected."""
        params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
        for b in range(len(self.terms)):
            for t in range(len(self.terms[b])):
                grad = self.term_gradient(b, t, params, h)
                rows: dict[str, set] = {}
                for (name, key), g in grad.items():
                    arr = params[name]
                    old = float(arr[key])
                    new = old - step * g
                    if name in self.l1[b] and old * new < 0.0:
                        new = 0.0
                    con = self.spec.param(name).constraint
                    if con is not None and con.kind in ("lower", "box"):
                        new = float(project_rows(np.array(new), con))
                    arr[key] = new
                    rows.setdefault(name, set()).add(key[0] if len(key) == 2 else None)
                for name, touched in rows.items():
                    con = self.spec.param(name).constraint
                    if con is not None and con.kind in ("simplex", "ball"):
                        which = None if None in touched else sorted(touched)
                        params[name] = project_rows(params[name], con, which)
        return params
