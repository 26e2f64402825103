"""The description of a checked spec that `hogwildc check` prints: its dims, consts, data and
params, each block with what one term is, what its update touches and how it is projected, the
train line, then the derived gradients. Takes a typed IR (check) and hands back text."""
from __future__ import annotations

from . import ir


def _short(var: ir.Var) -> str:
    """A compiler-made variable `_j2` reads as `j` (as `j'` in a row picked by a `j`)."""
    name = var.name
    if name.startswith("_"):
        short = name.lstrip("_").rstrip("0123456789") or name
        row = var.source[1] if var.kind == "sparse" else None
        name = short if short != row else short + "'"
    return name


def access_text(access: ir.ParamAt) -> str:
    """What one param access touches: `w[j in X[i]]`, `L[u, :]`, `b`."""
    if not access.index:
        return access.name
    parts = []
    for v in access.index:
        if v.kind == "indirect" and not v.per_term:     # f[j2] at a summed j2: say where
            at = v.at
            where = f"{at.source[0]}[{at.source[1]}]" if at.kind == "sparse" else at.dim
            parts.append(f"{v.source[0]}[{_short(at)} in {where}]")
        elif v.kind in ("term", "indirect"):
            parts.append(v.name)
        elif v.kind == "sample":
            parts.append(f"{v.name} (drawn from {v.dim})")
        elif v.kind == "draw":      # n[s]: the same text for every s
            parts.append(f"{v.source[1]}[s] (each draw from {v.dim})")
        elif v.kind == "dense":
            parts.append(":")
        else:
            parts.append(f"{_short(v)} in {v.source[0]}[{v.source[1]}]")
    if all(p == ":" for p in parts):
        return f"{access.name}[{', '.join(parts)}]" + "  (every entry)"
    return f"{access.name}[{', '.join(parts)}]"


def touches(block: ir.Block) -> dict[str, list[str]]:
    """Per param, the distinct accesses the block's update (losses and regs) makes."""
    out: dict[str, list[str]] = {}
    exprs = [e for e, _ in block.losses] + [r.expr for r in block.regs]
    for e in exprs:
        for node in ir.walk(e):
            if isinstance(node, ir.ParamAt):
                text = access_text(node)
                lst = out.setdefault(node.name, [])
                if text not in lst:
                    lst.append(text)
    return out


def summary(spec: ir.Spec, path: str | None = None) -> str:
    """A one-screen summary of a spec: declarations, blocks, what each update touches."""
    lines = [f"{path}: model {spec.model}" if path else f"model {spec.model}"]

    def row(label, items):
        items = list(items)
        if not items:
            return
        lines.append(f"  {label:<8} {items[0]}")
        for it in items[1:]:
            lines.append(f"  {'':<8} {it}")

    if spec.dims:
        row("dims", [", ".join(spec.dims) + "   (sizes read off the data)"])
    row("consts", [f"{n} = {v}" for n, v in spec.consts])
    row("data", [str(d)[len("data "):] for d in spec.data])
    row("params", [str(p)[len("param "):] for p in spec.params])
    for k, b in enumerate(spec.blocks, 1):
        what = (f"one term per index of {b.over}" if b.kind == "rows"
                else f"one term per stored entry of {b.over}")
        lines.append(f"  block {k:<2} {b.header()}   ({what}, line {b.line})")
        nl, nr = len(b.losses), len(b.regs)
        parts = [f"{nl} loss line{'s' if nl != 1 else ''}",
                 f"{nr} reg term{'s' if nr != 1 else ''}" if nr else "no reg"]
        if b.predict is not None:
            parts.append("predict")
        lines.append(f"  {'':<8} {', '.join(parts)}")
        for s in b.samples:
            how = f"with probability proportional to {s.weights}" if s.weights else "uniformly"
            what = f"{s.var.name}[{s.count}]: {s.draws} independent draws" if s.count else \
                f"{s.var.name}: drawn"
            lines.append(f"  {'':<8}   sample {what} from {s.var.dim} {how} at every visit")
        if b.predict_var is not None:
            lines.append(f"  {'':<8}   predict gives a vector over {b.predict_var.dim} per term")
        for r in b.regs:
            lines.append(f"  {'':<8}   reg {r.kind}({ir.fmt_number(r.lam)}) on {r.target}"
                         + (" unscaled" if r.unscaled else ""))
        for param, accs in touches(b).items():
            con = spec.param(param).constraint
            then = f", then projected ({con})" if con is not None else ""
            lines.append(f"  {'':<8} update of {param} touches {', '.join(accs)}{then}")
    if spec.train:
        row("train", [", ".join(f"{k} {ir.fmt_number(v)}" for k, v in spec.train)])
    return "\n".join(lines)


def describe(spec: ir.Spec, path: str | None = None) -> str:
    """What `hogwildc check` prints for one spec: the summary, then the derived gradients."""
    from .derive import gradients_text
    return summary(spec, path) + "\n\n  derived gradients:\n" + \
        _indent(gradients_text(spec), "    ")


def _indent(text: str, pad: str) -> str:
    return "\n".join(pad + line if line else line for line in text.splitlines())
