"""The ``hogwildc`` command line: check, compile, train, analyze, demo (API.md).

Argument handling only: what a command shows lives beside the stage it shows (report.py: a
spec's description; history.py: the per-epoch table and curve; analyze.py: the sparsity
statistics; demo.py: the paper's problems, hogwild versus lock).

Every error a user can cause (a bad spec, a bad data file, a failing build, divergence) is
reported as one clear message on stderr with exit status 1; a command-line usage error exits
with 2 (argparse's convention); Ctrl-C exits with 130. A Python traceback reaching the user is a
bug: unexpected exceptions are reported in one line (set HOGWILD_DEBUG=1 for the traceback).
"""
from __future__ import annotations

import argparse
import difflib
import inspect
import logging
import math
import os
import re
import sys
import time
from types import SimpleNamespace

from . import __version__, demo, ir, report, shipped
from .history import (best_validation, fmt_num, has_validation, plot_formats, plot_history,
                      print_history)
from .errors import DataError, DivergenceError, HogwildError, SpecError

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


def _step_arg(s):
    """--step: a positive number, or 'auto' (calibrated by the Trainer)."""
    return "auto" if s == "auto" else _positive_float("--step")(s)


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
# check: the spec's description (report.py) plus its derived gradients


def cmd_check(args) -> int:
    consts = _consts_per_spec(args.specs, _consts(args.const))
    failed = 0
    for i, path in enumerate(args.specs):
        if i:
            print()
        try:
            _, spec = _check_spec(path, consts[path])
            text = report.describe(spec, path)
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
    from .jit import compile_to
    for path in args.specs:
        for p in compile_to([path], args.out_dir, consts[path], dtype=args.dtype):
            print(f"wrote {p}")
    return 0


# --------------------------------------------------------------------------------------------
# reading --data arguments


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def svmlight_base(*arg_lists) -> bool:
    """Whether the svmlight files named by these `NAME=FILE` arguments are zero-based (one of
    them holds a feature index 0: data.svmlight_zero_based), said on stderr when they are."""
    from .data import parse_data_arg, svmlight_zero_based
    from .errors import DataError
    paths = []
    for arg in (a for args in arg_lists for a in args or ()):
        try:
            path = parse_data_arg(arg)[1]
        except DataError:
            continue                     # read_data_args reports it
        if os.path.isfile(path):
            paths.append(path)
    zero = svmlight_zero_based(paths)
    if zero:
        print("note: the svmlight files are read as zero-based (one holds a feature index 0, "
              "as scikit-learn's dump_svmlight_file writes)", file=sys.stderr)
    return zero


def read_data_args(spec: ir.Spec, args_data: list[str], option: str = "--data",
                   sources: dict | None = None, zero_based: bool = False) -> dict:
    """The data named by `--data NAME=FILE` arguments (or by `option`'s, in the same syntax),
    each datum read from a file checked on its own as the trainer will check it (values, labels,
    shape), so that its error names the file and the line. `sources`, where given, gets the file
    of each datum read from one. `zero_based`: of the svmlight files (svmlight_base)."""
    from .data import parse_data_arg, read_data
    from .errors import DataError
    declared = {d.name: d for d in spec.data}
    data: dict = {}
    for arg in args_data:
        try:
            names, path = parse_data_arg(arg)
        except DataError as e:           # its message names --data, whose syntax this is
            e.args = (str(e).replace("--data", option, 1),) + tuple(e.args[1:])
            raise
        for n in names:
            if n not in declared:
                raise DataError(f"{option} {arg}: the spec declares no data '{n}' "
                                f"(it declares {', '.join(declared) or 'none'})")
            if n in data:
                raise DataError(f"{option}: data '{n}' is given twice")
        if len(names) == 1 and not declared[names[0]].dims and not os.path.exists(path):
            if _number(path) is None:           # was "data file 'abc': no such file"
                raise DataError(f"{option} {arg}: data '{names[0]}' is a scalar "
                                f"({declared[names[0]]}): give a number ({option} "
                                f"{names[0]}=3.6) or a file holding one; no file '{path}' "
                                "exists")
            data[names[0]] = _number(path)      # scalar data given inline: --data mu=3.6
            continue
        kinds = {n: "sparse" if declared[n].kind == "sparse" else "dense" for n in names}
        values = read_data(path, names, kinds, zero_based=zero_based)
        for n in names:
            _check_file_datum(declared[n], values[n], path, option)
        data.update(values)
        if sources is not None:
            sources.update({n: path for n in names})
    return data


def _check_file_datum(d: ir.Data, value, path: str, option: str) -> None:
    """The trainer's own check of one datum (runtime's data gate), its error told as the
    file's: the file, the line of the first bad row where the file has lines, and for labels
    of the other convention (0/1 for sign data, -1/+1 for binary) what to change."""
    from .data import detect_format, line_of_row
    from .errors import DataError
    from .runtime import _convert
    import numpy as np
    try:
        _convert(d, value)
    except DataError as e:
        row = getattr(e, "row", None)      # a triplet file's rows are ids, not lines
        by_line = row is not None and (d.kind != "sparse" or detect_format(path) == "svmlight")
        line = line_of_row(path, row) if by_line else None
        where = f"data file '{path}'" + (f", line {line}" if line is not None else "")
        hint = ""
        if d.kind in ("sign", "binary") and isinstance(value, np.ndarray) \
                and np.isfinite(value).all():
            held = set(np.unique(value[np.isfinite(value)]).tolist())
            if d.kind == "sign" and held <= {0.0, 1.0}:
                hint = (f"; the file's labels are 0/1, but data '{d.name}' is declared sign "
                        "(-1/+1): write the 0 labels as -1")
            elif d.kind == "binary" and held <= {-1.0, 1.0}:
                hint = (f"; the file's labels are -1/+1, but data '{d.name}' is declared binary "
                        "(0/1): write the -1 labels as 0")
        raise DataError(f"{where} ({option} {d.name}): {e}{hint}") from None


def _name_files(err: HogwildError, *sources: dict) -> HogwildError:
    """A DataError of the trainer about data read from files (dims that disagree, ids out of
    range of a dim another datum fixes) with the file of each datum it names appended."""
    names = re.findall(r"data '([A-Za-z_][A-Za-z_0-9]*)'", str(err))
    validation = str(err).startswith("validation")
    src = sources[-1] if validation and len(sources) > 1 else sources[0]
    files = [f"'{n}' from file '{src[n]}'" for n in dict.fromkeys(names) if n in src]
    if files:
        err.args = (f"{err} (data {', '.join(files)})",) + tuple(err.args[1:])
    return err


def widen_to_agree(spec: ir.Spec, *datasets: dict) -> None:
    """Make the sparse data of training and validation files agree with each other and with
    the dense data on the dims that size a param or a dense datum. A file's sparse matrix is
    as wide as its largest id + 1 (LIBSVM's a9a.t stops one feature short of a9a; a ratings
    file need not rate the last item of a per-item file), so each is widened in place with
    empty columns (or rows) to the largest size any of them reads off; a dim a rows block
    iterates is left alone (a row is a term). A sparse matrix wider than a dense datum's dim
    stays so: the trainer's error names both."""
    import numpy as np
    import scipy.sparse as sp
    sized = ({d for p in spec.params for d in p.dims}
             | {dim for d in spec.data if d.kind != "sparse" for dim in d.dims}) \
        - {b.over for b in spec.blocks if b.kind == "rows"}
    matrices = [(data, d.name, d.dims) for data in datasets for d in spec.data
                if d.name in data and sp.issparse(data[d.name])]
    width: dict[str, int] = {}
    for data, name, dims in matrices:
        for dim, size in zip(dims, data[name].shape):
            if dim in sized:
                width[dim] = max(width.get(dim, 0), size)
    for data in datasets:
        for d in spec.data:
            value = data.get(d.name)
            if d.kind != "sparse" and d.kind != "index" and isinstance(value, np.ndarray) \
                    and value.ndim == len(d.dims):
                for dim, size in zip(d.dims, value.shape):
                    if dim in width:
                        width[dim] = max(width[dim], size)
    for data, name, dims in matrices:
        shape = tuple(width.get(dim, size) if dim in sized else size
                      for dim, size in zip(dims, data[name].shape))
        if shape != data[name].shape:
            data[name].resize(shape)


# A file's ids size a dim as given (its largest id + 1): a dim this wide over this few ids
# used is most likely ids that were never renumbered (hashes, database keys), and the params
# over it are allocated whole. warn_sparse_ids says so before training.
WIDE_DIM = 1_000_000
USED_SHARE = 0.01


def warn_sparse_ids(spec: ir.Spec, data: dict, sources: dict) -> None:
    """A warning on stderr for each dim that a file's sparse data makes wider than WIDE_DIM
    with fewer than USED_SHARE of its ids in use (one svmlight id of 300,000,000 made a
    2.4 GB params file without a word)."""
    import numpy as np
    import scipy.sparse as sp
    sized = {d for p in spec.params for d in p.dims}
    for d in spec.data:
        m = data.get(d.name)
        if not sp.issparse(m) or d.name not in sources:
            continue
        for axis, dim in enumerate(d.dims):
            if dim not in sized or m.shape[axis] <= WIDE_DIM:
                continue
            csr = m.tocsr()
            used = int(np.count_nonzero(np.diff(csr.indptr))) if axis == 0 else \
                int(np.unique(csr.indices).size)
            if used < USED_SHARE * m.shape[axis]:
                print(f"{PROG}: warning: data '{d.name}' (file '{sources[d.name]}') makes dim "
                      f"'{dim}' {m.shape[axis]:,} wide (its largest id + 1), but only {used:,} "
                      f"ids occur: the params over '{dim}' are allocated for every id. "
                      "Renumber the ids 0 .. N-1 to train a model of their size.",
                      file=sys.stderr)


# --------------------------------------------------------------------------------------------
# train


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


def _require(takes, feature: str, option: str) -> None:
    """A clear error where this installation's Trainer lacks an API.md feature an option asks
    for (they arrive with the update rules; the CLI passes them through as API.md names them)."""
    if feature not in takes:
        raise CliError(f"{option}: the trainer of this installation does not support "
                       f"'{feature}' yet")


def _show_notes() -> None:
    """hogwild_dsl's INFO messages (jit.log: a spec's first build takes seconds) as plain lines
    on stderr, once per process."""
    log = logging.getLogger("hogwild_dsl")
    if not any(getattr(h, "_hogwildc", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
        handler._hogwildc = True
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def cmd_train(args) -> int:
    consts = _consts(args.const)
    _, spec = _check_spec(args.spec, consts)
    options = dict(threads=args.threads, epochs=args.epochs, step=args.step, decay=args.decay,
                   seed=args.seed, sync=args.sync, order=args.order, progress=not args.quiet,
                   optimizer=args.optimizer, patience=args.patience)
    if args.patience is not None and not args.validation:
        raise CliError(f"--patience {args.patience} stops on the validation objective: give "
                       "held-out data with --validation NAME=FILE")
    from .runtime import TrainerBase     # the options checked before a build of seconds
    takes = inspect.signature(TrainerBase.__init__).parameters
    for name in ("optimizer", "patience"):
        if options[name] is not None:
            _require(takes, name, f"--{name}")
    if args.validation:
        _require(inspect.signature(TrainerBase.fit).parameters, "validation", "--validation")
    _trainer(SimpleNamespace(Trainer=type("Options", (TrainerBase,), {"spec": spec})),
             **options)
    sources, held_sources = {}, {}
    zero_based = svmlight_base(args.data, args.validation)
    data = read_data_args(spec, args.data, sources=sources, zero_based=zero_based)
    fit_args = dict(data)
    if args.validation:
        # data that do not vary with the terms (a mean, sampling weights) and that no
        # --validation gives are the --data's: fit takes them (runtime._shared_data)
        fit_args["validation"] = read_data_args(spec, args.validation, "--validation",
                                                held_sources, zero_based)
    widen_to_agree(spec, data, *([fit_args["validation"]] if args.validation else []))
    warn_sparse_ids(spec, data, sources)
    from .jit import load
    if not args.quiet:
        _show_notes()
    mod = load(args.spec, consts=consts, dtype=args.dtype)
    out = args.out or f"{spec.model}_params.npz"
    if os.path.isdir(out) or out.endswith(("/", os.sep)):   # a folder: the default name in it
        out = os.path.join(out, f"{spec.model}_params.npz")
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise CliError(f"--out '{out}': the folder {out_dir} does not exist")
    if args.plot:
        plot_dir = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(plot_dir):
            raise CliError(f"--plot '{args.plot}': the folder {plot_dir} does not exist")
        ext = os.path.splitext(args.plot)[1].lstrip(".").lower()
        if not ext:                 # matplotlib would add .png, and we said another name
            args.plot += ".png"
        elif ext not in plot_formats():   # was an internal error after training
            raise CliError(f"--plot '{args.plot}': no image format has the extension '.{ext}' "
                           f"(use .png, .pdf or .svg; all: {', '.join(plot_formats())})")
    t = _trainer(mod, **options)
    start = time.perf_counter()
    try:
        t.fit(**fit_args)
    except DataError as e:
        raise _name_files(e, sources, held_sources) from None
    except DivergenceError as e:
        if t.history:
            print_history(t.history)
        if args.out and t.params:     # the last finite params are work worth keeping
            e.args = (f"{e}\nthose finite params were saved to "
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
          + (f"; final objective {fmt_num(final, '.8g')}" if final is not None else ""))
    calibration = getattr(t, "calibration", None)
    if calibration:
        print(f"step {calibration['step']:.6g}: calibrated on {calibration['terms']} terms in "
              f"{calibration['seconds']:.2f} s (no step given)")
    if args.patience is not None and has_validation(history):
        best = best_validation(history)
        print(f"kept the params of epoch {best['epoch']}, the best validation objective "
              f"{fmt_num(best['validation_objective'], '.8g')}")
    print(f"saved params to {_save(t, out)}")
    if args.plot:
        threads = args.threads or _cpu_count()
        try:
            plot_history(history, args.plot,
                         f"{spec.model}: sync={t.sync}, {threads} thread(s)")
        except (OSError, ValueError, RuntimeError) as e:   # a format needing LaTeX, say
            why = getattr(e, "strerror", None) or e
            raise CliError(f"--plot '{args.plot}': cannot write ({why}); the params are "
                           "saved") from None
        print(f"saved the objective curve to {args.plot}")
    return 0


# --------------------------------------------------------------------------------------------
# analyze


def cmd_analyze(args) -> int:
    from .analyze import analyze, format_report
    consts = _consts(args.const)
    _, spec = _check_spec(args.spec, consts)
    sources = {}
    data = read_data_args(spec, args.data, sources=sources, zero_based=svmlight_base(args.data))
    widen_to_agree(spec, data)
    sample = None if args.sample is None else args.sample
    if args.exact:
        sample = 1 << 62
    try:
        stats = analyze(spec, data, sample=sample, seed=args.seed)
    except DataError as e:
        raise _name_files(e, sources) from None
    print(format_report(stats, threads=args.threads or _cpu_count()))
    return 0


# --------------------------------------------------------------------------------------------
# demo: the paper's Table 2 at small scale (demo.py)


def cmd_demo(args) -> int:
    failures = demo.run(args.scale, args.threads or _cpu_count(), args.epochs, on_error=_err)
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------
# the parser and main


SPEC_HELP = "a .hog file, or the name of a shipped spec (svm, logreg, mc, ...)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Compile a .hog spec of a sparse objective into a lock-free, multi-core "
                    "SGD trainer (HOGWILD!).")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p.commands = sub.choices                  # name -> its parser (main's unknown options)

    def dtype_opt(q):
        q.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                       help="storage of params, data values and optimizer state (float32: "
                            "half the memory; default float64)")

    def const_opt(q):
        q.add_argument("--const", action="append", type=parse_const, metavar="NAME=INT",
                       help="override a const of the spec (repeatable)")

    q = sub.add_parser("check", help="parse and check specs; print a summary and the "
                                     "derived gradients")
    q.add_argument("specs", nargs="+", type=spec_arg, metavar="SPEC", help=SPEC_HELP)
    const_opt(q)
    q.set_defaults(func=cmd_check)

    q = sub.add_parser("compile", help="generate and build the trainer of specs")
    q.add_argument("specs", nargs="+", type=spec_arg, metavar="SPEC", help=SPEC_HELP)
    q.add_argument("-o", "--out-dir", default="generated", metavar="DIR",
                   help="where to write the module (default: generated/)")
    const_opt(q)
    dtype_opt(q)
    q.set_defaults(func=cmd_compile)

    q = sub.add_parser("train", help="train a spec on data files")
    q.add_argument("spec", type=spec_arg, metavar="SPEC", help=SPEC_HELP)
    q.add_argument("--data", action="append", required=True, metavar="NAME=FILE",
                   help="a data file for the spec's data NAME (X,y=train.svm for rows plus "
                        "labels); repeatable")
    q.add_argument("--threads", type=_positive_int("--threads"), metavar="N",
                   help="threads (default: the spec's train line, else every core)")
    q.add_argument("--epochs", type=_nonneg_int("--epochs"), metavar="E",
                   help="epochs (default: the spec's train line, else 10; 0 checks the data "
                        "and saves the initial params)")
    q.add_argument("--step", type=_step_arg, metavar="S",
                   help="the step, or 'auto' (default: the spec's train line, else calibrated "
                        "on the data scaled down at the start of training)")
    q.add_argument("--decay", type=_positive_float("--decay"), metavar="G",
                   help="the step of epoch e is step * G^e (default: the spec's train line, "
                        "else 0.9, or 1 under AdaGrad)")
    q.add_argument("--sync", choices=["hogwild", "atomic", "lock"],
                   help="synchronisation (default: the spec's train line, else hogwild)")
    q.add_argument("--order", metavar="ORDER",
                   help="how an epoch visits the terms: shuffle, chunks or stored (default: "
                        "shuffle where data and params take at most 8 MiB, else chunks)")
    q.add_argument("--seed", type=_nonneg_int("--seed"), default=0, metavar="N",
                   help="random seed: visit order, draws, step search (default: 0)")
    q.add_argument("--optimizer", metavar="O",
                   help="the update rule: sgd, adagrad or adagrad_row (default: the spec's "
                        "train line, else sgd)")
    q.add_argument("--validation", action="append", metavar="NAME=FILE",
                   help="held-out data, named and read as --data; its objective is shown "
                        "after each epoch (repeatable)")
    q.add_argument("--patience", type=_positive_int("--patience"), metavar="N",
                   help="stop after N epochs without a lower validation objective and keep "
                        "the best epoch's params (needs --validation)")
    const_opt(q)
    dtype_opt(q)
    q.add_argument("--out", metavar="PARAMS.npz",
                   help="where to save the params (default: MODEL_params.npz; a folder: "
                        "that file in it)")
    q.add_argument("--plot", metavar="CURVE.png",
                   help="save the objective against seconds as a PNG")
    q.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar, no note of a first build")
    q.set_defaults(func=cmd_train)

    q = sub.add_parser("analyze", help="the paper's sparsity statistics (Omega, Delta, rho) "
                                       "of data under a spec")
    q.add_argument("spec", type=spec_arg, metavar="SPEC", help=SPEC_HELP)
    q.add_argument("--data", action="append", required=True, metavar="NAME=FILE",
                   help="a data file for the spec's data NAME, as train's --data; repeatable")
    const_opt(q)
    q.add_argument("--sample", type=_positive_int("--sample"), metavar="N",
                   help="estimate rho from N random terms (default: exact unless expensive)")
    q.add_argument("--exact", action="store_true", help="compute rho exactly, however long")
    q.add_argument("--threads", type=_positive_int("--threads"), metavar="N",
                   help="threads assumed for the reading (default: every core)")
    q.add_argument("--seed", type=_nonneg_int("--seed"), default=0, metavar="N",
                   help="seed of the sample of terms (default: 0)")
    q.set_defaults(func=cmd_analyze)

    q = sub.add_parser("demo", help="the paper's three problems on generated data: "
                                    "hogwild versus lock")
    q.add_argument("--scale", choices=sorted(demo.SCALES), default="small",
                   help="size of the generated data (default: small; tiny takes seconds)")
    q.add_argument("--threads", type=_positive_int("--threads"), metavar="N",
                   help="threads for the parallel runs (default: every core)")
    q.add_argument("--epochs", type=_positive_int("--epochs"), metavar="E",
                   help="epochs per run (default: the scale's)")
    q.set_defaults(func=cmd_demo)
    return p


def _unrecognized(command: argparse.ArgumentParser, extra: list) -> None:
    """Arguments a command does not take, told with that command's usage (argparse told
    them with hogwildc's own, naming no command) and the option meant: exits 2."""
    options = [o for a in command._actions for o in a.option_strings if o.startswith("--")]
    notes = []
    for before, arg in zip([None] + extra, extra):
        if arg.startswith("-"):
            close = difflib.get_close_matches(arg.split("=", 1)[0], options, n=1, cutoff=0.6)
            if close:
                notes.append(f"{arg.split('=', 1)[0]}: did you mean {close[0]}?")
        elif "--data" in options and not (before or "").startswith("-"):   # not its value
            notes.append(f"{arg!r} follows no option that takes it (--data NAME=FILE is one "
                         "word: '=' and no spaces)")
    command.error(f"unrecognized arguments: {' '.join(extra)}"
                  + "".join(f"\n  {n}" for n in notes))


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            _unrecognized(parser.commands[args.command], extra)
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
