"""Stage 3, derive: the gradient of each term's objective w.r.t. every param coordinate it touches.

Our own small symbolic reverse mode on the index-form IR (not sympy): the IR already has explicit
sums over index variables, and reverse mode through `Sum` is just "every summand gets the sum's
adjoint", so a few dozen lines give exact gradients with the sums kept symbolic (sympy would
expand them). Before differentiating, index variables are renamed canonically (one name per
domain and nesting depth), so a loss and a reg that both run over `X[i]` share their loop and
their update of `w[j]`. Non-smooth points take the subgradient 0 (LANGUAGE.md); the max or min of
a vector shares one weight among its tied components (extreme_share).

Hands to `lower`: per block, the canonical objective and one `SiteGrad` per distinct access
`P[index]`: d(term objective)/d(P[index]), an expression whose free variables are the index's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from . import ir
from .ir import Binary, Const, Func, Neg, Sum

# ---------------------------------------------------------------- smart constructors

ZERO, ONE = Const(0.0), Const(1.0)


def add(a, b):
    if a == ZERO:
        return b
    if b == ZERO:
        return a
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value + b.value)
    if isinstance(b, Neg):
        return sub(a, b.operand)
    return Binary("+", a, b)


def sub(a, b):
    if b == ZERO:
        return a
    if a == ZERO:
        return neg(b)
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value - b.value)
    return Binary("-", a, b)


def neg(a):
    if isinstance(a, Const):
        return Const(-a.value)
    if isinstance(a, Neg):
        return a.operand
    return Neg(a)


def mul(a, b):
    if a == ZERO or b == ZERO:
        return ZERO
    if a == ONE:
        return b
    if b == ONE:
        return a
    if a == Const(-1.0):
        return neg(b)
    if b == Const(-1.0):
        return neg(a)
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value * b.value)
    if isinstance(a, Neg):
        return neg(mul(a.operand, b))
    if isinstance(b, Neg):
        return neg(mul(a, b.operand))
    if isinstance(b, Const) and not isinstance(a, Const):
        a, b = b, a
    if isinstance(a, Const) and isinstance(b, Binary) and b.op == "*" and isinstance(b.left, Const):
        return mul(Const(a.value * b.left.value), b.right)
    return Binary("*", a, b)


def div(a, b):
    if a == ZERO:
        return ZERO
    if b == ONE:
        return a
    if isinstance(a, Const) and isinstance(b, Const) and b.value != 0:
        return Const(a.value / b.value)
    return Binary("/", a, b)


def power(a, b):
    if b == ONE:
        return a
    if b == ZERO:
        return ONE
    return Binary("^", a, b)


def func(name, *args):
    return Func(name, tuple(args))


# ---------------------------------------------------------------- canonical index names


def canonical(expr: ir.Expr) -> ir.Expr:
    """Rename every bound index variable by its domain and nesting depth (alpha-renaming).
    Shared subtrees (lets) stay shared: each is renamed once per enclosing sum."""
    return _Renamer({}, {}).rename(expr)


def _canonical_name(var: ir.Var, depth: int) -> str:
    """j_X for the nonzeros of a row of X, k_rank for rank; nested sums over the same
    domain: j2_X, k2_rank (the part before the first '_' never holds a user name)."""
    letter, name = ("j", var.source[0]) if var.kind == "sparse" else ("k", var.dim)
    return f"{letter}_{name}" if depth == 0 else f"{letter}{depth + 1}_{name}"


class _Renamer:
    """Renames inside one scope of bound variables, memoised per node."""

    def __init__(self, names: dict, depths: dict):
        self.names, self.depths, self.memo = names, depths, {}

    def rename(self, e):
        if e in self.memo:
            return self.memo[e]
        names = self.names
        if isinstance(e, (ir.DataAt, ir.ParamAt, ir.Deg)):
            out = type(e)(e.name, tuple(ir.renamed_index(v, names) for v in e.index))
        elif isinstance(e, (Sum, ir.ArgMax, ir.Reduce)):
            key = (e.var.kind, e.var.source[0] if e.var.kind == "sparse" else e.var.dim)
            depth = self.depths.get(key, 0)
            new = ir.Var(_canonical_name(e.var, depth), e.var.dim, e.var.kind, e.var.source)
            inner = _Renamer({**names, e.var: new}, {**self.depths, key: depth + 1})
            body = inner.rename(e.body)
            out = ir.Reduce(e.op, new, body) if isinstance(e, ir.Reduce) else type(e)(new, body)
        elif isinstance(e, Binary):
            out = Binary(e.op, self.rename(e.left), self.rename(e.right))
        elif isinstance(e, Neg):
            out = Neg(self.rename(e.operand))
        elif isinstance(e, Func):
            out = Func(e.name, tuple(self.rename(a) for a in e.args))
        else:
            out = e
        self.memo[e] = out
        return out


# ---------------------------------------------------------------- local derivatives


def partials(e: ir.Expr) -> list[tuple[ir.Expr, ir.Expr]]:
    """(child, d e / d child) for each child of a node; subgradient 0 at kinks."""
    if isinstance(e, Binary):
        a, b = e.left, e.right
        if e.op == "+":
            return [(a, ONE), (b, ONE)]
        if e.op == "-":
            return [(a, ONE), (b, Const(-1.0))]
        if e.op == "*":
            return [(a, b), (b, a)]
        if e.op == "/":
            return [(a, div(ONE, b)), (b, neg(div(a, power(b, Const(2.0)))))]
        if isinstance(b, Const):   # a ^ c
            c = b.value
            return [(a, mul(Const(c), power(a, Const(c - 1.0))))]
        return [(a, mul(b, power(a, sub(b, ONE)))), (b, mul(e, func("log", a)))]
    if isinstance(e, Neg):
        return [(e.operand, Const(-1.0))]
    if isinstance(e, Func):
        x = e.args[0]
        one_arg = {
            "abs": lambda: func("_sgn", x),
            "exp": lambda: e,
            "log": lambda: div(ONE, x),
            "log1p": lambda: div(ONE, add(ONE, x)),
            "sqrt": lambda: func("_dsqrt", e),     # 0.5 / sqrt(x); subgradient 0 at 0
            "sigmoid": lambda: mul(e, sub(ONE, e)),
            "softplus": lambda: func("sigmoid", x),
            "relu": lambda: func("_gt", x, ZERO),
            "hinge": lambda: neg(func("_gt", ONE, x)),
            "sqhinge": lambda: mul(Const(-2.0), func("hinge", x)),
            "logistic": lambda: neg(func("sigmoid", neg(x))),
        }
        if e.name in one_arg:
            return [(x, one_arg[e.name]())]
        y = e.args[1]
        if e.name == "max":
            return [(x, func("_gt", x, y)), (y, func("_gt", y, x))]
        if e.name == "min":
            return [(x, func("_gt", y, x)), (y, func("_gt", x, y))]
        if e.name == "huber":
            return [(x, func("_huber_dz", x, y)), (y, func("_huber_dd", x, y))]
        raise AssertionError(f"no derivative for {e.name}")   # the checker keeps sign/argmax out
    if isinstance(e, Sum):
        return [(e.body, ONE)]
    if isinstance(e, ir.Reduce):    # d/d body[k]: softmax for logsumexp, a share of the max
        if e.op == "logsumexp":
            return [(e.body, func("exp", sub(e.body, e)))]
        return [(e.body, extreme_share(e))]
    return []


def extreme_share(e: ir.Reduce) -> ir.Expr:
    """d max(v) / d v[k] (min alike): 1/n where v[k] attains the extreme, n the number of
    components that do, else 0. One weight shared among tied components, so the weights add
    up to 1 (a subgradient; at a tie, common at a zero init, passing 1 to each tied component
    would step n times too far). n >= 1 as long as the max, the count and the indicator read
    the same values of v (lower stores v once: BlockLowering.update)."""
    attains = sub(ONE, func("_gt", e, e.body) if e.op == "max" else func("_gt", e.body, e))
    return div(attains, Sum(e.var, attains))


# ---------------------------------------------------------------- reverse mode


@dataclass(frozen=True)
class SiteGrad:
    """d(term objective) / d(param[index]); free variables: the loop variables of `index`.
    In an update's sites (update_sites), `penalty` is the weight of the coordinate's l1 share
    (LAMBDA / deg(c)) when a `reg l1` covers it; `grad` then leaves the l1 share out."""
    param: str
    index: tuple
    grad: ir.Expr
    penalty: ir.Expr | None = None

    @property
    def access(self) -> ir.ParamAt:
        return ir.ParamAt(self.param, self.index)

    def __str__(self):
        text = f"d/d{self.access} = {self.grad}"
        return text if self.penalty is None else f"{text}, l1 weight {self.penalty}"


@dataclass(frozen=True)
class BlockGrad:
    block: ir.Block
    objective: ir.Expr       # canonical index form
    predict: ir.Expr | None
    sites: tuple             # SiteGrad, in order of first appearance


def derive_block(block: ir.Block) -> BlockGrad:
    """Reverse mode over the objective as a DAG: each distinct node, in each nest of loops
    it sits in, gets one adjoint (the sum over its parents), so shared lets are
    differentiated once and the gradient stays as shared as the objective."""
    objective = canonical(block.objective)
    has_params = _memo_has_params()
    order, seen, leaves = [], set(), {}
    stack = [((objective, ()), False)]
    while stack:                        # depth-first, post-order: children before parents
        key, done = stack.pop()
        if done:
            order.append(key)
            continue
        if key in seen:
            continue
        seen.add(key)
        node, loops = key
        if isinstance(node, ir.ParamAt):
            leaves.setdefault((node.name, node.index), []).append(key)
        stack.append((key, True))
        inner = loops + (node.var,) if isinstance(node, (Sum, ir.Reduce)) else loops
        for child, _ in reversed(partials(node)):
            if has_params(child) and (child, inner) not in seen:
                stack.append(((child, inner), False))
    adjoint = {(objective, ()): ONE}
    for key in reversed(order):         # parents before children
        node, loops = key
        inner = loops + (node.var,) if isinstance(node, (Sum, ir.Reduce)) else loops
        for child, local in partials(node):
            if has_params(child):
                part = mul(adjoint[key], local)
                ck = (child, inner)
                adjoint[ck] = add(adjoint[ck], part) if ck in adjoint else part
    sites = []
    for (param, index), keys in leaves.items():
        total = None
        varies = {ir.loop_of(v) for v in index}     # f[j] varies with j
        for node, loops in keys:
            part = adjoint[(node, loops)]
            for var in reversed(loops):   # summed over loops the coordinate does not vary with
                if var not in varies:
                    part = Sum(var, part)
            total = part if total is None else add(total, part)
        sites.append(SiteGrad(param, index, total))
    predict = canonical(block.predict) if block.predict is not None else None
    return BlockGrad(block, objective, predict, tuple(sites))


def _memo_has_params():
    memo = {}

    def has_params(e) -> bool:
        if e not in memo:
            memo[e] = isinstance(e, ir.ParamAt) or any(has_params(c) for c in e.children())
        return memo[e]
    return has_params


def update_sites(block: ir.Block) -> tuple[SiteGrad, ...]:
    """The coordinates one update writes (a deferred reg, ir.Deferred, only where the term's
    losses read: the rest of it is applied once per epoch). Without `reg l1`: derive_block's
    sites. With it, the
    gradient of the losses and the l2 regs, and apart from it each l1-covered coordinate's
    penalty weight (the derivative of its share with |c| read as c: LAMBDA / deg(c)), which the
    update applies as a clipped cumulative penalty (Tsuruoka et al., ACL 2009) so that a
    coordinate whose optimum is 0 ends at exactly 0."""
    l1 = [r if r.deferred is None else replace(r, expr=r.deferred.update)
          for r in block.regs if r.kind == "l1" and (r.deferred is None or r.deferred.update)]
    smooth = derive_block(replace(block, regs=tuple(
        r if r.deferred is None else replace(r, expr=r.deferred.update)
        for r in block.regs if r.kind != "l1" and (r.deferred is None or r.deferred.update))))
    if not l1:
        return smooth.sites
    weights = derive_block(replace(block, regs=(), predict=None, losses=tuple(
        (_magnitude(r.expr), r.line) for r in l1)))
    sites = {(s.param, s.index): s for s in smooth.sites}
    for w in weights.sites:
        site = sites.get((w.param, w.index), SiteGrad(w.param, w.index, Const(0.0)))
        sites[(w.param, w.index)] = replace(site, penalty=w.grad)
    return tuple(sites.values())


def _magnitude(e: ir.Expr) -> ir.Expr:
    """An l1 share with each |c| read as c (its derivative is then the weight of |c|)."""
    if isinstance(e, Func):
        args = tuple(_magnitude(a) for a in e.args)
        return args[0] if e.name == "abs" else Func(e.name, args)
    if isinstance(e, Binary):
        return Binary(e.op, _magnitude(e.left), _magnitude(e.right))
    if isinstance(e, Neg):
        return Neg(_magnitude(e.operand))
    if isinstance(e, Sum):
        return Sum(e.var, _magnitude(e.body))
    return e


def derive(spec: ir.Spec) -> tuple[BlockGrad, ...]:
    return tuple(derive_block(b) for b in spec.blocks)


def _unshadowed(e: ir.Expr, free: tuple) -> ir.Expr:
    """e with its sums named past the site's own indices: canonical names start at depth 0
    in every expression, so d/dW[j_X, k_class] read `-(1 / sum(k_class in class: ...)) *
    Conf[wk[o], k_class, lab[o]]`, one name for two indices; now the sum is k2_class."""
    depths = {}
    for v in free:
        if isinstance(v, ir.Var) and v.kind in ("dense", "sparse"):
            key = (v.kind, v.source[0] if v.kind == "sparse" else v.dim)
            level = v.name.split("_", 1)[0][1:]
            depths[key] = max(depths.get(key, 0), int(level) if level.isdigit() else 1)
    return _Renamer({}, depths).rename(e) if depths else e


def gradients_text(spec: ir.Spec) -> str:
    """The derived per-term gradients as readable math (what `mod.gradients()` prints)."""
    lines = []
    for bg in derive(spec):
        lines.append(bg.block.header())
        exprs = [bg.objective] + [_unshadowed(e, s.index) for s in bg.sites
                                  for e in (s.grad, s.penalty) if e is not None]
        shared, texts = ir.shared_texts(exprs)     # parts shared where the text would explode
        lines += [f"    where {d}" for d in shared]
        texts = iter(texts)
        lines.append(f"    objective = {next(texts)}")
        for s in bg.sites:
            text = f"    d/d{s.access} = {next(texts)}"
            lines.append(text if s.penalty is None else f"{text}, l1 weight {next(texts)}")
    return "\n".join(lines)
