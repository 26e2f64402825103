"""Stages 6-7, build + load: generate a spec's sources, build them (cached), import the module.

`load` keys the cache by the spec's signature (sources) plus the build environment, so two
compilers, flag sets or Python ABIs never share a binary. `compile_to` writes the readable
sources into a folder (default `generated/`) and builds them there, so that
`import generated.<model>` works.
"""
from __future__ import annotations

import hashlib
import logging
import sys
import time
from pathlib import Path

from . import build, shipped
from .check import check
from .emit import emit, signature
from .errors import CompileError, HogwildError, SpecError
from .lower import STORAGE

# A first load builds for seconds (gcc): said at INFO level, which hogwildc shows on stderr and a
# Python user sees with logging.basicConfig(level=logging.INFO).
log = logging.getLogger("hogwild_dsl")


def read_spec(path) -> str:
    """The text of a spec file, or one clear SpecError line for a file that cannot be a spec."""
    p = Path(path)
    if not p.exists():
        raise SpecError(f"{p}: no such file")
    if p.is_dir():
        raise SpecError(f"{p}: is a directory, not a .hog spec file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise SpecError(f"{p}: cannot be read ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{p}: is not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise SpecError(f"{p}: is empty", hint="a spec starts with 'model NAME'")
    return text


MAX_FILE_STEM = 60     # long model names: file and extension names shortened by a hash
MAX_MODULE_NAME = 200  # compile_to's <model>.py keeps the name (file names: 255 bytes)


def ext_name_for(model: str) -> str:
    """The kernels' extension name: `<model>_kernels`, or for a long model name its first
    characters plus a hash (file names have limits; Cython's init symbol too)."""
    return f"{_short(model)}_kernels"


def _short(model: str) -> str:
    if len(model) <= MAX_FILE_STEM:
        return model
    digest = hashlib.sha256(model.encode()).hexdigest()[:12]
    return f"{model[:MAX_FILE_STEM - 13]}_{digest}"


def storage_dtype(dtype) -> str:
    """The storage dtype's name, "float64" or "float32", from that name or a numpy float
    type (np.float32, np.dtype("float32")); anything else is a HogwildError."""
    import numpy as np
    name = dtype if isinstance(dtype, str) else None
    if name is None:
        try:
            name = np.dtype(dtype).name if isinstance(dtype, (type, np.dtype)) else None
        except TypeError:
            name = None
    if name not in STORAGE:
        shown = repr(dtype) if len(repr(dtype)) <= 40 else repr(dtype)[:37] + "..."
        raise HogwildError(f"dtype must be \"float64\" or \"float32\" (or np.float64, "
                           f"np.float32), not {shown}")
    return name


def load(path=None, *, text=None, consts=None, cache_dir=None, dtype="float64"):
    """Parse, check, generate, compile (cached) and import a spec; return the module.
    `path` is a .hog file or a shipped spec's name ("svm", see hogwild_dsl.shipped); `dtype`
    the storage of params, data values and update-rule state ("float64" or "float32")."""
    if (path is None) == (text is None):
        raise HogwildError("load() takes a spec path or text=..., exactly one of them")
    dtype = storage_dtype(dtype)
    source = read_spec(shipped.resolve(path)) if path is not None else text
    spec = check(source, consts)
    ext = ext_name_for(spec.model)
    sig = signature(spec, dtype)
    key = build.cache_key(sig)
    folder = build.cache_root(cache_dir) / key
    module_file = f"{_short(spec.model)}.py"
    if not (folder / build.READY_MARKER).exists():     # emit only on a cache miss
        log.info("building model '%s' (%s): once per spec and compiler, then cached in %s",
                 spec.model, dtype, folder.parent)
        began = time.perf_counter()
        files = {module_file if n == f"{spec.model}.py" else n: text
                 for n, text in emit(spec, ext, dtype=dtype).items()}
        folder = build.cached_build(key, files, f"{ext}.pyx", ext, cache_dir, sig)
        log.info("built model '%s' in %.1f s", spec.model, time.perf_counter() - began)
    name = f"hog_{key}.{spec.model}"
    if name in sys.modules:
        return sys.modules[name]
    build.load_shared_utility(cache_dir)      # what the kernel imports, from the same cache
    try:
        return build.import_from_path(name, folder / module_file)
    except HogwildError:
        raise
    except Exception as e:     # a build that does not import must not stay cached
        build.discard(folder)
        raise CompileError(f"the module built for model '{spec.model}' does not import "
                           f"({type(e).__name__}: {e}); it was removed from the cache") from None


def compile_to(paths, out_dir="generated", consts=None, dtype="float64") -> list[Path]:
    """Write <model>.py and <model>_kernels.pyx for each spec into out_dir and build them
    (storage `dtype`, as `load`'s).

    Outputs are replaced only once the new extension is built (build.build_into): a failed or
    killed compile leaves the previous build importable, never a .py over a stale .so."""
    dtype = storage_dtype(dtype)
    specs = [check(read_spec(path), consts) for path in paths]
    seen = {}
    for path, spec in zip(paths, specs):
        if spec.model in seen:
            raise HogwildError(f"{seen[spec.model]} and {path} both define model "
                               f"'{spec.model}': one folder holds one module per model name")
        seen[spec.model] = path
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        init = out / "__init__.py"
        if not init.exists():
            init.write_text('"""Trainers generated by hogwildc compile."""\n')
    except OSError as e:
        raise HogwildError(f"cannot write into {out}: {e.strerror or e}") from None
    written = []
    for spec in specs:
        if len(spec.model) > MAX_MODULE_NAME:
            raise HogwildError(f"model name '{spec.model[:40]}...' is too long for a module "
                               f"file ({len(spec.model)} characters; at most {MAX_MODULE_NAME} "
                               "for `hogwildc compile`, whose module is imported by its name)")
        ext = ext_name_for(spec.model)
        files = emit(spec, ext, dtype=dtype)
        sig = signature(spec, dtype)
        current = all((out / n).is_file() and (out / n).read_text(encoding="utf-8") == text
                      for n, text in files.items())
        if current and build.stamp_matches(build.find_extension(out, ext), sig):
            written += [out / n for n in files]
            continue
        built = build.cached_build(build.cache_key(sig), files, f"{ext}.pyx", ext, None, sig)
        written += build.install(built, out, files, ext)
    return written
