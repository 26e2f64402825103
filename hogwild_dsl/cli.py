"""The ``hogwildc`` command line: check, compile, train, analyze, demo (API.md).

Every error a user can cause (a bad spec, a bad data file, a failing build, divergence) is
reported as one clear message on stderr with exit status 1; a command-line usage error exits
with 2 (argparse's convention); Ctrl-C exits with 130. A Python traceback reaching the user is a
bug: unexpected exceptions are reported in one line (set HOGWILD_DEBUG=1 for the traceback).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from types import SimpleNamespace

from . import __version__, ir, shipped
from .errors import DivergenceError, HogwildError, SpecError

PROG = "hogwildc"


class CliError(HogwildError):
    """A problem with what was asked on the command line (a file, an option value)."""


# --------------------------------------------------------------------------------------------
# small helpers


def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def spec_arg(arg: str) -> str:
    """A SPEC argument: a .hog file, or the name of a shipped spec ("svm") when no such file
    exists (a file of that name wins)."""
    if not os.path.exists(arg) and arg in shipped.names():
        return str(shipped.path(arg))
    return arg


def read_spec(path: str) -> str:
    """The text of a spec file, or CliError with one clear line."""
    if os.path.isdir(path):
        raise CliError(f"spec '{path}': is a directory, not a .hog file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CliError(f"spec '{path}': no such file, and not a shipped spec (shipped: "
                       f"{', '.join(shipped.names())})") from None
    except PermissionError:
        raise CliError(f"spec '{path}': cannot be read (permission denied)") from None
    except OSError as e:
        raise CliError(f"spec '{path}': cannot be read ({e.strerror or e})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise CliError(f"spec '{path}': not UTF-8 text (byte 0x{raw[e.start]:02x} on line "
                       f"{line}); save the spec as UTF-8") from None
    if not text.strip():
        raise CliError(f"spec '{path}': the file is empty (a spec starts with `model NAME`)")
    return text


def parse_const(arg: str) -> tuple[str, int]:
    """``NAME=INT`` for ``--const``."""
    m = re.fullmatch(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*([+-]?\d+)\s*", arg)
    if not m:
        raise argparse.ArgumentTypeError(
            f"expected NAME=INT (e.g. --const rank=50), got {arg!r}")
    value = int(m.group(2))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{arg!r}: a const must be a positive integer")
    return m.group(1), value


def _consts(pairs) -> dict | None:
    if not pairs:
        return None
    out = {}
    for name, value in pairs:
        if name in out and out[name] != value:
            raise CliError(f"--const {name} is given twice ({out[name]} and {value})")
        out[name] = value
    return out


def _positive_int(what):
    def conv(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {s!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{what} must be at least 1, got {v}")
        return v
    return conv


def _nonneg_int(what):
    def conv(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {s!r}") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"{what} must be at least 0, got {v}")
        return v
    return conv


def _positive_float(what):
    def conv(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {s!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be a positive number, got {s!r}")
        return v
    return conv


def _check_spec(path: str, consts=None) -> tuple[str, ir.Spec]:
    from .check import check
    text = read_spec(path)
    try:
        return text, check(text, consts)
    except SpecError as e:
        raise _located(e, path) from None


def _consts_per_spec(paths, consts) -> dict:
    """For several specs, each `--const` applies to the specs that declare that const; one no
    spec declares is an error. (With one spec the checker itself reports an unknown const.)"""
    if not consts or len(paths) == 1:
        return {p: consts for p in paths}
    from .check import check
    declared = {}
    for p in paths:
        try:
            declared[p] = set(dict(check(read_spec(p)).consts))
        except HogwildError:
            declared[p] = set(consts)          # let the real check report this spec's error
    unused = [n for n in consts if not any(n in d for d in declared.values())]
    if unused:
        raise CliError(f"--const {unused[0]}: none of the specs declares a const "
                       f"'{unused[0]}'")
    return {p: {k: v for k, v in consts.items() if k in declared[p]} or None for p in paths}


def _located(err: HogwildError, path: str) -> HogwildError:
    """The same error with the spec's path in front of its message."""
    err.args = (f"{path}: {err}",) + tuple(err.args[1:])
    return err


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# check: a one-screen summary of a spec plus its derived gradients


def _short(var: ir.Var) -> str:
    """A compiler-made variable `_j2` reads as `j`."""
    name = var.name
    if name.startswith("_"):
        name = name.lstrip("_").rstrip("0123456789") or name
    return name


def access_text(access: ir.ParamAt) -> str:
    """What one param access touches: `w[j in X[i]]`, `L[u, :]`, `b`."""
    if not access.index:
        return access.name
    parts = []
    for v in access.index:
        if v.kind in ("term", "indirect"):
            parts.append(v.name)
        elif v.kind == "sample":
            parts.append(f"{v.name} (drawn from {v.dim})")
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
            lines.append(f"  {'':<8}   sample {s.var.name}: drawn from {s.var.dim} {how} at "
                         "every visit")
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


def cmd_check(args) -> int:
    from .derive import gradients_text
    consts = _consts_per_spec(args.specs, _consts(args.const))
    failed = 0
    for i, path in enumerate(args.specs):
        if i:
            print()
        try:
            _, spec = _check_spec(path, consts[path])
            text = summary(spec, path) + "\n\n  derived gradients:\n" + \
                _indent(gradients_text(spec), "    ")
        except HogwildError as e:
            sys.stdout.flush()
            _err(str(e))
            failed += 1
            continue
        print(text)
    if len(args.specs) > 1:
        ok = len(args.specs) - failed
        print(f"\n{ok} of {len(args.specs)} specs OK", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def _indent(text: str, pad: str) -> str:
    return "\n".join(pad + line if line else line for line in text.splitlines())


# --------------------------------------------------------------------------------------------
# compile


def cmd_compile(args) -> int:
    consts = _consts_per_spec(args.specs, _consts(args.const))
    models = {}
    for path in args.specs:
        _, spec = _check_spec(path, consts[path])   # a clear message for a bad file first
        if spec.model in models:
            raise CliError(f"{models[spec.model]} and {path} both define model "
                           f"'{spec.model}': one folder holds one module per model name")
        models[spec.model] = path
    jit = _jit()
    for path in args.specs:
        for p in jit.compile_to([path], args.out_dir, consts[path]):
            print(f"wrote {p}")
    return 0


def _jit():
    try:
        from . import jit
    except ImportError as e:
        if getattr(e, "name", None) in ("hogwild_dsl.jit",):
            raise CliError("the compiler back end (hogwild_dsl.jit) is not available in this "
                           "installation") from None
        raise
    return jit


def _load(path=None, text=None, consts=None):
    jit = _jit()
    if path is not None:
        return jit.load(path, consts=consts)
    return jit.load(text=text, consts=consts)


# --------------------------------------------------------------------------------------------
# reading --data arguments


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_data_args(spec: ir.Spec, args_data: list[str]) -> dict:
    from .data import parse_data_arg, read_data
    from .errors import DataError
    declared = {d.name: d for d in spec.data}
    data: dict = {}
    for arg in args_data:
        names, path = parse_data_arg(arg)
        for n in names:
            if n not in declared:
                raise DataError(f"--data {arg}: the spec declares no data '{n}' "
                                f"(it declares {', '.join(declared) or 'none'})")
            if n in data:
                raise DataError(f"--data: data '{n}' is given twice")
        if len(names) == 1 and not declared[names[0]].dims and _number(path) is not None \
                and not os.path.exists(path):      # scalar data given inline: --data mu=3.6
            data[names[0]] = _number(path)
            continue
        kinds = {n: "sparse" if declared[n].kind == "sparse" else "dense" for n in names}
        data.update(read_data(path, names, kinds))
    return data


# --------------------------------------------------------------------------------------------
# train


def _history_rows(history):
    rows = []
    for h in history:
        rows.append((h.get("epoch"), h.get("objective"), h.get("seconds"), h.get("step")))
    return rows


def _fmt_num(x, spec=".6g"):
    if x is None:
        return "-"
    try:
        return format(float(x), spec)
    except (TypeError, ValueError):
        return str(x)


def print_history(history, out=sys.stdout) -> None:
    print(f"{'epoch':>6}  {'objective':>14}  {'seconds':>9}  {'step':>10}", file=out)
    for epoch, obj, sec, step in _history_rows(history):
        print(f"{_fmt_num(epoch, 'g'):>6}  {_fmt_num(obj, '.8g'):>14}  "
              f"{_fmt_num(sec, '.3f'):>9}  {_fmt_num(step, '.4g'):>10}", file=out)


def cumulative_seconds(history) -> list[float]:
    total, out = 0.0, []
    for h in history:
        s = h.get("seconds") or 0.0
        total += float(s)
        out.append(total)
    return out


def plot_history(history, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = cumulative_seconds(history)
    ys = [h.get("objective") for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys, marker="o", markersize=3)
    ax.set_xlabel("seconds (cumulative)")
    ax.set_ylabel("objective")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as e:
        raise CliError(f"--plot '{path}': cannot write ({e.strerror or e})") from None
    finally:
        plt.close(fig)


def _save(t, out: str) -> str:
    """Save the trainer's params to --out; returns the file really written."""
    try:
        return str(t.save(out))
    except OSError as e:
        raise CliError(f"--out '{out}': cannot write ({e.strerror or e})") from None


def _trainer(mod, **options):
    kwargs = {k: v for k, v in options.items() if v is not None}
    try:
        return mod.Trainer(**kwargs)
    except (TypeError, ValueError) as e:
        raise CliError(f"invalid training option: {e}") from None


def cmd_train(args) -> int:
    consts = _consts(args.const)
    _, spec = _check_spec(args.spec, consts)
    options = dict(threads=args.threads, epochs=args.epochs, step=args.step, decay=args.decay,
                   seed=args.seed, sync=args.sync, order=args.order, progress=not args.quiet)
    from .runtime import TrainerBase     # the options checked before a build of seconds
    _trainer(SimpleNamespace(Trainer=type("Options", (TrainerBase,), {"spec": spec})),
             **options)
    data = read_data_args(spec, args.data)
    mod = _load(path=args.spec, consts=consts)
    out = args.out or f"{spec.model}_params.npz"
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise CliError(f"--out '{out}': the folder {out_dir} does not exist")
    if args.plot:
        plot_dir = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(plot_dir):
            raise CliError(f"--plot '{args.plot}': the folder {plot_dir} does not exist")
    t = _trainer(mod, **options)
    start = time.perf_counter()
    try:
        t.fit(**data)
    except DivergenceError as e:
        if t.history:
            print_history(t.history)
        if args.out and t.params:     # the last finite params are work worth keeping
            e.args = (f"{e}\nthe params of the last finite epoch were saved to "
                      f"{_save(t, out)}",)
        raise
    except KeyboardInterrupt:
        # fit keeps the params of the last completed epoch (API.md: Ctrl-C stops after the
        # current epoch and still saves); save is atomic, so a second Ctrl-C loses nothing
        if t.history:
            print_history(t.history)
        done = t.history[-1]["epoch"] if t.history else 0
        saved = f"; saved the params of epoch {done} to {_save(t, out)}" if t.params else ""
        print(f"\n{PROG}: interrupted{saved}", file=sys.stderr)
        return 130
    wall = time.perf_counter() - start
    history = list(getattr(t, "history", []) or [])
    print_history(history)
    final = history[-1].get("objective") if history else None
    print(f"trained {spec.model} in {wall:.2f} s"
          + (f"; final objective {_fmt_num(final, '.8g')}" if final is not None else ""))
    print(f"saved params to {_save(t, out)}")
    if args.plot:
        threads = args.threads or _cpu_count()
        plot_history(history, args.plot,
                     f"{spec.model}: sync={args.sync or 'hogwild'}, {threads} thread(s)")
        print(f"saved the objective curve to {args.plot}")
    return 0


# --------------------------------------------------------------------------------------------
# analyze


def cmd_analyze(args) -> int:
    from .analyze import analyze, format_report
    consts = _consts(args.const)
    _, spec = _check_spec(args.spec, consts)
    data = read_data_args(spec, args.data)
    sample = None if args.sample is None else args.sample
    if args.exact:
        sample = 1 << 62
    stats = analyze(spec, data, sample=sample, seed=args.seed)
    print(format_report(stats, threads=args.threads or _cpu_count()))
    return 0


# --------------------------------------------------------------------------------------------
# demo: the paper's Table 2 at small scale


DEMO_SCALES = {
    # name: (generator kwargs per problem, epochs override or None)
    "small": {
        "svm": dict(n_rows=100000, n_features=20000, nnz_per_row=50, noise=0.05),
        "mc": dict(n_users=20000, n_items=5000, n_ratings=1500000, rank=10, test_frac=0.1),
        "dblife": dict(n_nodes=20000, n_labels=5, avg_degree=8),
        "abdomen": dict(height=48, width=48, depth=24, n_labels=4, neighbours=6, noise=0.3),
        "epochs": None,
    },
    "tiny": {
        "svm": dict(n_rows=600, n_features=300, nnz_per_row=10, noise=0.05),
        "mc": dict(n_users=80, n_items=60, n_ratings=1500, rank=3, test_frac=0.1),
        "dblife": dict(n_nodes=300, n_labels=3, avg_degree=4),
        "abdomen": dict(height=8, width=8, depth=4, n_labels=3, neighbours=6, noise=0.3),
        "epochs": 3,
    },
}


def _demo_problems(scale: str, seed: int = 0):
    """(label, spec name, train data, evaluation data, metric name, metric function)."""
    import numpy as np
    from . import datasets
    cfg = DEMO_SCALES[scale]

    X, y = datasets.rcv1_like(seed=seed, **cfg["svm"])
    Xtr, Xte, ytr, yte = datasets.train_test_split_rows(X, y, 0.2, seed)

    def accuracy(t, test):
        pred = np.asarray(t.predict(X=test["X"]), dtype=float)
        return float(np.mean(np.where(pred >= 0, 1.0, -1.0) == np.asarray(test["y"])))

    yield ("RCV1-like SVM", "svm", {"X": Xtr, "y": ytr}, {"X": Xte, "y": yte},
           "test accuracy", accuracy)

    train, test = datasets.netflix_like(seed=seed, **cfg["mc"])

    def rmse(t, test):
        r = test["r"].tocsr()
        r.sum_duplicates()
        pred = np.asarray(t.predict(r=r), dtype=float)
        return float(np.sqrt(np.mean((pred - r.data) ** 2)))

    yield ("Netflix-like MC", "mc", {"r": train}, {"r": test}, "test RMSE", rmse)

    def agreement(truth):
        def metric(t, data):
            labels = np.asarray(t.predict(**data)).astype(np.int64)
            return float(np.mean(labels == truth))
        return metric

    w, c, truth, _ = datasets.dblife_like(seed=seed, return_truth=True, **cfg["dblife"])
    yield ("DBLife-like cuts", "cuts", {"w": w, "c": c}, {"w": w, "c": c},
           "planted labels found", agreement(np.asarray(truth)))
    w, c, truth, _ = datasets.abdomen_like(seed=seed, return_truth=True, **cfg["abdomen"])
    yield ("Abdomen-like cuts", "cuts", {"w": w, "c": c}, {"w": w, "c": c},
           "planted labels found", agreement(np.asarray(truth)))


def _fit_seconds(t, wall):
    hist = list(getattr(t, "history", []) or [])
    secs = [h.get("seconds") for h in hist if h.get("seconds") is not None]
    return float(sum(secs)) if secs else wall


def _timed_fit(mod, data, **options):
    t = _trainer(mod, **options)
    start = time.perf_counter()
    t.fit(**data)
    return t, _fit_seconds(t, time.perf_counter() - start)


def cmd_demo(args) -> int:
    from .analyze import analyze
    from .check import check
    threads = args.threads or _cpu_count()
    cfg = DEMO_SCALES[args.scale]
    epochs = args.epochs or cfg["epochs"]
    started = time.perf_counter()
    print(f"HOGWILD! demo ({args.scale} scale): each problem trained with sync='hogwild' on 1 "
          f"and on {threads} threads, and with sync='lock' on {threads} threads.", flush=True)
    modules = {}
    rows, failures = [], 0
    for label, name, train, test, metric_name, metric in _demo_problems(args.scale):
        print(f"  {label}: ", end="", flush=True)
        try:
            spec = check(shipped.text(name))
            stats = analyze(spec, train)
            if name not in modules:
                print("compiling, ", end="", flush=True)
                modules[name] = _load(text=shipped.text(name))
            mod = modules[name]
            common = dict(epochs=epochs, seed=0, progress=False)
            print("1 thread, ", end="", flush=True)
            _, t1 = _timed_fit(mod, train, threads=1, sync="hogwild", **common)
            print(f"{threads} threads, ", end="", flush=True)
            tn, tn_s = _timed_fit(mod, train, threads=threads, sync="hogwild", **common)
            print("lock", flush=True)
            _, tl = _timed_fit(mod, train, threads=threads, sync="lock", **common)
            hist = list(tn.history or [])
            objective = hist[-1].get("objective") if hist else tn.objective(**train)
            value = metric(tn, test)
            rows.append((label, stats["n_terms"], stats["rho"], stats["Delta"], t1, tn_s,
                         t1 / tn_s if tn_s > 0 else float("nan"), tl, objective,
                         f"{metric_name} {value:.4g}"))
        except HogwildError as e:
            failures += 1
            print("failed", flush=True)
            _err(f"{label}: {e}")
            rows.append((label, None, None, None, None, None, None, None, None, "failed"))
    print()
    nt = f"{threads}t"
    head = (f"{'data':<18} {'terms':>8} {'rho':>8} {'Delta':>8} {'hogwild 1t':>10} "
            f"{'hogwild ' + nt:>10} {'speed-up':>8} {'lock ' + nt:>8} {'objective':>10}  result")
    print(head)
    print("-" * len(head))
    for label, n, rho, delta, t1, tn, sp_, tl, obj, res in rows:
        if n is None:
            print(f"{label:<18} {'-':>8} {'-':>8} {'-':>8} {'-':>10} {'-':>10} {'-':>8} "
                  f"{'-':>8} {'-':>10}  {res}")
            continue
        print(f"{label:<18} {n:>8} {rho:>8.2g} {delta:>8.2g} {t1:>9.3f}s {tn:>9.3f}s "
              f"{sp_:>7.2f}x {tl:>7.3f}s {obj:>10.4g}  {res}")
    print(f"\nspeed-up: hogwild at 1 thread / hogwild at {threads} threads (epochs: "
          f"{epochs or 'from each spec'}); total {time.perf_counter() - started:.1f} s")
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------
# the parser and main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Compile a .hog spec of a sparse objective into a lock-free, multi-core "
                    "SGD trainer (HOGWILD!).")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def const_opt(q):
        q.add_argument("--const", action="append", type=parse_const, metavar="NAME=INT",
                       help="override a const of the spec (repeatable)")

    q = sub.add_parser("check", help="parse and check specs; print a summary and the "
                                     "derived gradients")
    q.add_argument("specs", nargs="+", type=spec_arg, metavar="SPEC")
    const_opt(q)
    q.set_defaults(func=cmd_check)

    q = sub.add_parser("compile", help="generate and build the trainer of specs")
    q.add_argument("specs", nargs="+", type=spec_arg, metavar="SPEC")
    q.add_argument("-o", "--out-dir", default="generated", metavar="DIR",
                   help="where to write the module (default: generated/)")
    const_opt(q)
    q.set_defaults(func=cmd_compile)

    q = sub.add_parser("train", help="train a spec on data files")
    q.add_argument("spec", type=spec_arg, metavar="SPEC")
    q.add_argument("--data", action="append", required=True, metavar="NAME=FILE",
                   help="a data file for the spec's data NAME (X,y=train.svm for rows plus "
                        "labels); repeatable")
    q.add_argument("--threads", type=_positive_int("--threads"), metavar="N",
                   help="threads (default: every core)")
    q.add_argument("--epochs", type=_nonneg_int("--epochs"), metavar="E")
    q.add_argument("--step", type=_positive_float("--step"), metavar="S")
    q.add_argument("--decay", type=_positive_float("--decay"), metavar="G")
    q.add_argument("--sync", choices=["hogwild", "atomic", "lock"],
                   help="synchronisation (default: hogwild)")
    q.add_argument("--order", metavar="ORDER", help="the order terms are visited in")
    q.add_argument("--seed", type=_nonneg_int("--seed"), default=0, metavar="N")
    const_opt(q)
    q.add_argument("--out", metavar="PARAMS.npz",
                   help="where to save the params (default: MODEL_params.npz)")
    q.add_argument("--plot", metavar="CURVE.png",
                   help="save the objective against seconds as a PNG")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_train)

    q = sub.add_parser("analyze", help="the paper's sparsity statistics (Omega, Delta, rho) "
                                       "of data under a spec")
    q.add_argument("spec", type=spec_arg, metavar="SPEC")
    q.add_argument("--data", action="append", required=True, metavar="NAME=FILE")
    const_opt(q)
    q.add_argument("--sample", type=_positive_int("--sample"), metavar="N",
                   help="estimate rho from N random terms (default: exact unless expensive)")
    q.add_argument("--exact", action="store_true", help="compute rho exactly, however long")
    q.add_argument("--threads", type=_positive_int("--threads"), metavar="N",
                   help="threads assumed for the reading (default: every core)")
    q.add_argument("--seed", type=_nonneg_int("--seed"), default=0, metavar="N")
    q.set_defaults(func=cmd_analyze)

    q = sub.add_parser("demo", help="the paper's three problems on generated data: "
                                    "hogwild versus lock")
    q.add_argument("--scale", choices=sorted(DEMO_SCALES), default="small")
    q.add_argument("--threads", type=_positive_int("--threads"), metavar="N",
                   help="threads for the parallel runs (default: every core)")
    q.add_argument("--epochs", type=_positive_int("--epochs"), metavar="E",
                   help="epochs per run (default: the scale's)")
    q.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    except HogwildError as e:
        sys.stdout.flush()
        _err(str(e))
        return 1
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    except MemoryError:
        _err("out of memory")
        return 1
    except Exception as e:          # a bug: one line, the traceback on request
        if os.environ.get("HOGWILD_DEBUG"):
            raise
        _err(f"internal error: {type(e).__name__}: {e} (this is a bug in hogwild-dsl; "
             "set HOGWILD_DEBUG=1 to see the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
