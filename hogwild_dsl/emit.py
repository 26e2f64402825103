"""Stage 5, emit: a kernel plan -> the text of one Cython `.pyx` and one thin `.py` (Jinja2).

The templates in templates/ hold the shape of the output; this module only fills them. The
generated code is meant to be read: each function carries the spec lines it comes from.
"""
from __future__ import annotations

import functools
import hashlib
import re
from importlib import resources

import jinja2

from . import __version__, ir
from .lower import STORAGE, KernelPlan, c_draw_key, c_hot, c_nterms, lower


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: resources.files("hogwild_dsl.templates").joinpath(name).read_text()),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["pyrepr"] = repr        # a Python literal in the generated code
    return env


# kernel.py is no stage, but it calls the generated entry points: their contract
_GENERATOR = ("parse.py", "check.py", "ir.py", "derive.py", "lower.py", "emit.py", "kernel.py")


@functools.cache
def generator_hash() -> str:
    """Hash of the templates, the grammar, every stage whose output reaches the code (parse,
    check, derive, lower, emit) and kernel.py, which calls it: a change to any of them
    changes every signature, so no cache entry outlives the code that generated it."""
    h = hashlib.sha256()
    for name in ("kernels.pyx.j2", "module.py.j2", "hogwild_helpers.h"):
        h.update(resources.files("hogwild_dsl.templates").joinpath(name).read_bytes())
    for name in _GENERATOR:
        h.update(resources.files("hogwild_dsl").joinpath(name).read_bytes())
    h.update(resources.files("hogwild_dsl.grammar").joinpath("hog.lark").read_bytes())
    return h.hexdigest()


def signature(spec: ir.Spec, dtype: str = "float64") -> str:
    """Hash of everything that changes the generated sources: spec text, consts, storage
    dtype, templates and generator code, package version (the build environment is added by
    the cache key)."""
    h = hashlib.sha256()
    for part in (spec.source, repr(spec.consts), dtype, generator_hash(), __version__):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _python_expr(c_expr: str, fields: list) -> str:
    """A scratch-size C expression over layout sizes, as Python over the `sizes` dict."""
    keys = {f.name: f.key for f in fields if not f.is_pointer}
    return re.sub(r"\b[A-Za-z_][A-Za-z0-9_]*\b",
                  lambda m: f'sizes["{keys[m[0]]}"]' if m[0] in keys else m[0], c_expr)


def _comments(spec: ir.Spec, block: ir.Block, what: str) -> list[str]:
    lines = spec.source.splitlines()
    out = [f"{what} of the block on spec line {block.line}: {lines[block.line - 1].strip()}"]
    for _, line in block.losses:
        out.append(f"  spec line {line}: {lines[line - 1].strip()}")
    for r in block.regs:
        out.append(f"  spec line {r.line}: {lines[r.line - 1].strip()}")
    return list(dict.fromkeys(out))


def emit(spec: ir.Spec, ext_name: str, plan: KernelPlan | None = None,
         dtype: str = "float64") -> dict[str, str]:
    """-> {"<ext_name>.pyx": kernels, "<model>.py": the thin module}; params, data values and
    update-rule state stored in `dtype` (lower.STORAGE; a given plan's own)."""
    plan = plan or lower(spec, dtype)
    dtype = plan.dtype
    sig = signature(spec, dtype)
    functions = []
    first, same = {}, {}     # code -> its first function; function name -> that one's name
    for bp in plan.blocks:
        block = spec.blocks[bp.index]
        for fn, what in ((bp.update_plain, "SGD update (racy writes)"),
                         (bp.update_atomic, "SGD update (atomic adds)"),
                         (bp.update_hot, "SGD update (racy writes; hot rows on this "
                          "thread's replicas)"),
                         (bp.update_plain_adaptive, "AdaGrad update (racy writes)"),
                         (bp.update_atomic_adaptive, "AdaGrad update (atomic adds)"),
                         (bp.update_plain_row, "AdaGrad update, per row (racy writes)"),
                         (bp.update_atomic_row, "AdaGrad update, per row (atomic adds)"),
                         (bp.loss, "term objective"), (bp.predict, "predict"),
                         (bp.shares, "each term's share of the deferred regs"),
                         (bp.deferred, "the deferred regs' steps left for the epoch's end"),
                         (bp.loss_terms, "term objective less the row regs (by rows in "
                          "the exact objective)")):
            if fn is None:
                continue
            # a variant whose code is another's (AdaGrad per row where every param is 1-D:
            # per coordinate) is emitted once and compiled once
            code = (fn.signature, fn.returns, tuple(fn.decls.items()), tuple(fn.body))
            if code in first:
                first[code]["comment"].append(f"(also the {what}: the same code)")
                same[fn.name] = first[code]["name"]
                continue
            same[fn.name] = fn.name
            first[code] = {"name": fn.name, "signature": fn.signature, "returns": fn.returns,
                           "decls": fn.decls, "body": fn.body,
                           "fields": plan.pointers_used[fn.name],
                           "comment": _comments(spec, block, what)}
            functions.append(first[code])
    blocks, start = [], "0"
    for bp in plan.blocks:
        end = f"M.{c_nterms(bp.index)}"
        end = end if start == "0" else f"{start} + {end}"
        rules = [(test, same[plain.name], same[atomic.name]) for test, plain, atomic in (
            ("if M._optimizer == 0:", bp.update_plain, bp.update_atomic),
            ("elif M._optimizer == 1:", bp.update_plain_adaptive, bp.update_atomic_adaptive),
            ("else:", bp.update_plain_row, bp.update_atomic_row))]
        called = {what: fn and same[fn.name] for what, fn in (
            ("loss", bp.loss), ("hot", bp.update_hot), ("shares", bp.shares),
            ("deferred", bp.deferred), ("loss_terms", bp.loss_terms or bp.loss))}
        # (each one's name, None where there is none)
        blocks.append({"index": bp.index, "start": start, "end": end, "rules": rules,
                       **called})
        start = end
    scratch = dict.fromkeys(_python_expr(fn.scratch, plan.fields)
                            for bp in plan.blocks for fn in bp.updates)
    scratch_py = "max(" + ", ".join(scratch) + ", 0)"
    keys = {(f.role, f.of): f.key for f in plan.fields}
    nterms_py = " + ".join(f'sizes[{keys["nterms", bp.index]!r}]' for bp in plan.blocks)
    predicts = [bp for bp in plan.blocks if bp.predict is not None]
    predict = width = None      # a vector predict: values per term, as read in the Kernel
    if predicts:
        bp = predicts[0]
        predict = {"name": same[bp.predict.name], "nterms": c_nterms(bp.index)}
        if bp.predict_width is not None:
            width = bp.predict_width if bp.predict_width.isdigit() else f"M.{bp.predict_width}"
    needs = {"train": set(), "predict": set()}
    for bp in plan.blocks:
        for fn, use in [(u, "train") for u in bp.updates] + [
                (bp.loss, "train"), (bp.shares, "train"), (bp.deferred, "train"),
                (bp.loss_terms, "train"),
                (bp.predict, "predict")]:
            if fn is not None:
                needs[use] |= {f.key for f in plan.pointers_used[fn.name] if f.is_pointer}
    replicas = [_replica(spec, name, data, keys) for name, data in plan.replicas.items()]
    needs["state"] = {f.key for f in plan.fields if f.state}
    needs["train"] -= needs["state"]
    env = _environment()
    pyx = env.get_template("kernels.pyx.j2").render(
        version=__version__, model=spec.model, signature=sig, fields=plan.fields,
        functions=functions, blocks=blocks, nterms_py=nterms_py, scratch_py=scratch_py,
        predict=predict, predict_width=width, nterms=c_nterms,
        draw_key=next((f.name for f in plan.fields if f.name == c_draw_key()), None),
        replicas=replicas, replica_maps=repr(tuple((r["param"], r["map"]) for r in replicas)),
        deferred=any(b["deferred"] for b in blocks),
        row_regs=[r for bp in plan.blocks for r in bp.row_regs],
        replicable=repr({r["param"]: r["data"] for r in replicas}),
        needs={k: sorted(v) for k, v in needs.items()}, dtype=dtype, real=STORAGE[dtype],
        vector_bits=plan.vector_bits)
    py = env.get_template("module.py.j2").render(
        version=__version__, model=spec.model, spec_text=_triple_quoted(spec.source),
        consts=repr(dict(spec.consts)), signature=sig, ext_name=ext_name, dtype=dtype)
    return {f"{ext_name}.pyx": pyx, f"{spec.model}.py": py}


def _replica(spec: ir.Spec, name: str, data: tuple, keys: dict) -> dict:
    """What the template needs of a replicable param: its names, and its rows and row length
    as Python over the kernel's `sizes` (`keys`: (role, of) -> key, from the layout)."""
    consts = dict(spec.consts)
    dims = spec.param(name).dims

    def extent(dim):
        return str(consts[dim]) if dim in consts else f'sizes[{keys["dim", dim]!r}]'
    return {"param": name, "map": c_hot(name), "data": data,
            "rows_py": extent(dims[0]), "length_py": extent(dims[1]) if len(dims) > 1 else "1"}


def _triple_quoted(text: str) -> str:
    if '"""' not in text and not text.endswith("\\"):
        return 'r"""' + text + '"""' if "\\" in text else '"""' + text + '"""'
    return repr(text)
