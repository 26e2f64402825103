"""Build stage: turn one generated Cython .pyx into an imported extension module.

It takes what the emit stage wrote (file name -> text: the kernel's .pyx and its thin .py) and
a content key, and hands the load stage a folder of the on-disk cache holding those files and
the compiled extension `<ext_name><EXT_SUFFIX>`, plus `import_from_path` to import either.
It knows nothing about specs: the caller's key must cover the sources and `environment_key()`.

Why it is shaped this way:
- Cython runs in-process and the C compiler is called directly, not through setuptools'
  build_ext, which costs about 4 s more per build for nothing we need.
- Cython's own runtime code (memoryviews, conversions: ~30,000 lines of C, the same for every
  spec) is compiled once per build environment into the shared extension `SHARED_UTILITY`
  (`shared_utility`), which every kernel imports; a kernel's C holds only its own code, so a
  first compile costs a fraction of what it did.
- Everything about the C compiler lives here: which one, the flags, OpenMP or not (probed once;
  without it the kernels still build, serially, with a warning), and where its output goes
  (`build.log` beside the sources).
- The cache is safe across processes without polling: one file lock per key; the build happens
  in a private temporary folder that is renamed into place only when complete, so a folder under
  its final name is always usable and a cached load costs a stat or two. A failed build is
  renamed to `failed-<key>-<pid>`, keeping its log, so nobody waits on it.

Same extension name, two binaries, one process (checked with Cython 3.3 / CPython 3.11 / Linux):
two DIFFERENT .so files whose module has the same name (same `PyInit_<ext>` symbol) DO import
side by side through `spec_from_file_location`, as distinct modules, provided the module names
differ and each one's LAST dotted component is the extension name (e.g. `hog_1f2e.kernel` and
`hog_9a0b.kernel` for two `kernel` builds): CPython looks up `PyInit_<last component>`, so a
plain different name (`other_name`) fails with "dynamic module does not define module export
function". Python loads extensions RTLD_LOCAL and we set no SONAME, so the two never share
symbols. Importing the SAME file again under another name returns the first module object
(Cython modules are single-instance per process).
"""

from __future__ import annotations

import functools
import hashlib
import json
import importlib.machinery
import importlib.resources
import importlib.util
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path
from types import ModuleType

import filelock

from .errors import CompileError, HogwildError

EXT_SUFFIX: str = sysconfig.get_config_var("EXT_SUFFIX")
# The C header every generated module includes (hogwild_helpers.h, shipped with the templates).
HELPERS_DIR = Path(str(importlib.resources.files("hogwild_dsl.templates")))

# Generated kernels are checked by the trainer before they run, so the C does no checking.
CYTHON_DIRECTIVES = {
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "nonecheck": False,
}
C_FLAGS = (
    "-O3",
    "-march=native",
    "-fPIC",
    "-fno-strict-aliasing",
    # Let gcc split the sums of dot products over several accumulators (SIMD), as hand-tuned
    # kernels do by hand: floating-point reassociation only, no other fast-math assumption.
    "-fassociative-math",
    "-fno-signed-zeros",
    "-fno-trapping-math",
    "-fno-math-errno",
    "-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION",
)
# -lm binds exp, log, pow... to libm's current versions at link time, as the hand-written
# yardsticks of bench/ are linked: a module that leaves them unresolved gets, from the dynamic
# linker, their oldest versions (on glibc, exp@GLIBC_2.2.5, a compatibility wrapper). No
# kernel was measurably faster for it (bench_lowering, softmax 0.85x either way).
LINK_FLAGS = ("-shared", "-lm") + \
    (("-undefined", "dynamic_lookup") if sys.platform == "darwin" else ())
OPENMP_FLAG = "-fopenmp"

LOG_NAME = "build.log"
READY_MARKER = "READY"
# The module every kernel imports Cython's runtime code from (hogwild_dsl/_cyutility.py finds
# or builds it in the cache when a kernel is imported outside `load`).
SHARED_UTILITY = "hogwild_dsl._cyutility"

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_OPENMP_PROBE = """\
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 && omp_get_max_threads() > 0 ? 0 : 1;
}
"""
# Cython's compiler keeps per-run state in module globals: one translation at a time.
_cython_lock = threading.Lock()


# --- the C compiler and the build environment -------------------------------------------------


@functools.cache
def _compiler() -> tuple[str, ...]:
    """The C compiler command: $CC if set, else the one Python was built with, else cc/gcc/clang."""
    requested = os.environ.get("CC")
    if requested:
        argv = shlex.split(requested)
        exe = shutil.which(argv[0]) if argv else None
        if exe is None:
            raise CompileError(f"$CC is set to {requested!r}, but no such program was found on PATH")
        return (exe, *argv[1:])
    candidates = [shlex.split(sysconfig.get_config_var("CC") or ""), ["cc"], ["gcc"], ["clang"]]
    for argv in candidates:
        exe = shutil.which(argv[0]) if argv else None
        if exe is not None:
            return (exe, *argv[1:])
    raise CompileError(
        "no C compiler found (tried $CC, Python's own CC, cc, gcc, clang); hogwild-dsl compiles "
        "its kernels at run time and needs one: install it, e.g. `apt-get install gcc` "
        "(Debian/Ubuntu), `dnf install gcc` (Fedora), `xcode-select --install` (macOS), "
        "or point $CC at one"
    )


@functools.cache
def _compiler_facts() -> dict:
    """The compiler's version line and whether it does OpenMP. Probing costs two subprocesses
    (~50 ms), so the answer is remembered on disk per compiler binary (path, size, mtime): a
    cached load must stay far under 0.2 s."""
    compiler = _compiler()
    st = os.stat(compiler[0])
    ident = f"{shlex.join(compiler)}|{st.st_size}|{st.st_mtime_ns}|{OPENMP_FLAG}"
    memo = None
    try:
        memo = Path(cache_root()) / f"compiler-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json"
        return json.loads(memo.read_text())
    except (OSError, ValueError, HogwildError):
        pass
    facts = {"version": _compiler_version(compiler), "openmp": _probe_openmp(compiler)}
    if memo is not None:
        try:
            tmp = memo.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(facts))
            os.replace(tmp, memo)
        except OSError:
            pass
    return facts


def _probe_openmp(compiler) -> bool:
    with tempfile.TemporaryDirectory(prefix="hogwild-omp-") as tmp:
        source = Path(tmp, "probe.c")
        source.write_text(_OPENMP_PROBE)
        command = [*compiler, OPENMP_FLAG, str(source), "-o", str(Path(tmp, "probe"))]
        try:
            return subprocess.run(command, capture_output=True).returncode == 0
        except OSError:
            return False


@functools.cache
def openmp_available() -> bool:
    """Whether the C compiler can build and link OpenMP code; warns once per process if not."""
    ok = _compiler_facts()["openmp"]
    if not ok:
        warnings.warn(
            f"no OpenMP: kernels will run on one thread ({_compiler()[0]} cannot build with "
            f"{OPENMP_FLAG}; install the OpenMP runtime, e.g. libgomp with gcc, or libomp with clang)",
            RuntimeWarning,
            stacklevel=2,
        )
    return ok


# gcc peels a loop of a constant trip count whole up to 16 iterations (its
# max-completely-peel-times), before it vectorises: a const loop over a rank of 5 to 16
# became scalar code whose addresses, shared by an update's gather and scatter over the
# same rows, spilled around a call (Poisson MF, rank 16: 0.64x of hand-written Cython; CML,
# k = 8: 0.46x; bench/results/user_kernels.md). Capped at lower.SHORT_LOOP, the short loops
# it is meant for are still peeled, and the others vectorise with their known trip count (no
# remainder; a vector loop of 2 iterations left is still peeled). Not a clang option.
GCC_FLAGS = ("--param=max-completely-peel-times=4",)


def _is_gcc() -> bool:
    """Whether the C compiler is gcc (its version line names no clang; its program is gcc,
    cc or a cross-prefixed or versioned one of them)."""
    line = _compiler_facts()["version"]
    program = line.split()[0] if line.split() else ""
    return "clang" not in line.lower() and re.search(r"(^|-)g?cc(-[0-9.]+)?$", program) is not None


def _compile_flags() -> tuple[str, ...]:
    return C_FLAGS + (GCC_FLAGS if _is_gcc() else ()) + \
        ((OPENMP_FLAG,) if openmp_available() else ())


def _link_flags() -> tuple[str, ...]:
    return LINK_FLAGS + ((OPENMP_FLAG,) if openmp_available() else ())


def _compiler_version(compiler: tuple[str, ...]) -> str:
    try:
        output = subprocess.run([compiler[0], "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    return output.splitlines()[0].strip() if output.strip() else "unknown"


def _cpu_model() -> str:
    """The CPU model: -march=native makes the binary specific to it."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}".strip()


@functools.cache
def environment_key() -> str:
    """Everything besides the sources that changes the binary, one `name=value` per line."""
    from importlib.metadata import version

    compiler = _compiler()
    parts = {
        "cc": shlex.join(compiler),
        "cc-version": _compiler_facts()["version"],
        "cflags": " ".join(_compile_flags()),
        "ldflags": " ".join(_link_flags()),
        "openmp": str(openmp_available()),
        "cython-directives": ",".join(f"{k}={v}" for k, v in sorted(CYTHON_DIRECTIVES.items())),
        "cython-shared-utility": SHARED_UTILITY,
        "ext-suffix": EXT_SUFFIX,
        "python": sys.version,
        "numpy": version("numpy"),
        "cython": version("cython"),
        "cpu": _cpu_model(),
    }
    return "\n".join(f"{name}={' '.join(value.split())}" for name, value in parts.items())


# --- one build ----------------------------------------------------------------------------------


def _cythonize(pyx_path: Path, c_path: Path, ext_name: str) -> tuple[bool, str]:
    """Translate pyx -> C in-process; returns (ok, Cython's messages)."""
    from Cython.Compiler import Main

    options = Main.CompilationOptions(
        Main.default_options,
        language_level=3,
        output_file=str(c_path),
        compiler_directives=dict(CYTHON_DIRECTIVES),
        use_listing_file=True,  # messages go to <pyx>.lis rather than to our stderr
        errors_to_stderr=False,
        shared_utility_qualified_name=SHARED_UTILITY,
    )
    listing = pyx_path.with_suffix(".lis")
    crash = ""
    with _cython_lock:
        try:
            result = Main.compile(str(pyx_path), options, full_module_name=ext_name)
            ok = result.num_errors == 0 and result.c_file is not None
        except Exception as e:  # Cython's own crashes ("Compiler crash in ...")
            cause = e if isinstance(e, OSError) else e.__cause__ or e.__context__
            if isinstance(cause, OSError):     # a full disk is not a bug in the sources
                raise cause from None
            ok, crash = False, traceback.format_exc()
    messages = listing.read_text(errors="replace") if listing.exists() else ""
    listing.unlink(missing_ok=True)
    return ok, messages + crash


def _error_excerpt(output: str, limit: int = 20) -> str:
    """The compiler's error lines (or, if none say "error", its last lines)."""
    lines = output.splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    return "\n".join((errors or lines[-limit:])[:limit])


def compile_extension(pyx_path: Path, ext_name: str, signature: str | None = None) -> Path:
    """Cythonize `pyx_path` and compile it into `<ext_name><EXT_SUFFIX>` beside it.

    All output of Cython and the compiler goes to `build.log` beside the pyx; a failure raises
    CompileError carrying the error lines and that log's path. The binary is linked under a
    temporary name and renamed into place, so a killed build never leaves half a .so; with
    `signature`, a stamp (see `stamp_matches`) records which sources it was built from.
    """
    pyx_path = Path(pyx_path).resolve()
    if not ext_name.isidentifier() or not ext_name.isascii():
        raise ValueError(f"extension name {ext_name!r} is not an ASCII identifier")
    c_path = pyx_path.parent / f"{ext_name}.c"
    import Cython

    with open(pyx_path.parent / LOG_NAME, "w") as log:
        log.write(f"# environment\n{environment_key()}\n\n")
        log.write(f"$ cython {pyx_path.name} -o {c_path.name}  (in-process, Cython {Cython.__version__})\n")
        began = time.perf_counter()
        ok, messages = _cythonize(pyx_path, c_path, ext_name)
        log.write(messages)
        log.write(f"(cython: {time.perf_counter() - began:.3f} s)\n")
        if not ok:
            raise CompileError(
                f"Cython could not translate {pyx_path.name}:\n{messages.strip()[-4000:]}",
                log_path=Path(log.name),
            )
        so_path = _compile_c(c_path, ext_name, log)
    if signature is not None:
        _write_atomic(stamp_path(so_path), json.dumps({"signature": signature,
                                                       "sha256": _digest(so_path)}))
    return so_path


def _compile_c(c_path: Path, ext_name: str, log) -> Path:
    """Compile and link `c_path` into `<ext_name><EXT_SUFFIX>` beside it, the compiler's output
    going to the open `log`; any old stamp of that extension is removed."""
    import numpy

    folder = c_path.parent
    so_path = folder / f"{ext_name}{EXT_SUFFIX}"
    tmp_so = folder / f".{ext_name}-{os.getpid()}-{threading.get_ident()}.so.tmp"
    command = [
        *_compiler(),
        *_compile_flags(),
        f"-I{sysconfig.get_paths()['include']}",
        f"-I{numpy.get_include()}",
        f"-I{HELPERS_DIR}",
        c_path.name,
        "-o",
        tmp_so.name,
        *_link_flags(),
    ]
    log.write(f"\n$ {shlex.join(command)}\n")
    log.flush()
    began = time.perf_counter()
    proc = subprocess.run(
        command,
        cwd=folder,  # relative names: messages then point at files that survive the rename
        env={**os.environ, "LC_ALL": "C"},  # English messages, so error lines can be found
        capture_output=True,
        text=True,
        errors="replace",
    )
    output = proc.stdout + proc.stderr
    log.write(output)
    log.write(f"(exit status {proc.returncode}; {time.perf_counter() - began:.3f} s)\n")
    if proc.returncode != 0:
        tmp_so.unlink(missing_ok=True)
        raise CompileError(
            f"the C compiler failed on {c_path.name} (exit status {proc.returncode}):\n"
            f"{_error_excerpt(output)}",
            log_path=Path(log.name),
        )
    stamp_path(so_path).unlink(missing_ok=True)   # no stamp, no trust, while the two are swapped
    os.replace(tmp_so, so_path)
    return so_path


def _compile_shared_utility(folder: Path) -> None:
    """Generate the C of Cython's shared runtime code and compile it into `folder`."""
    from Cython.Build.SharedModule import generate_shared_module
    from Cython.Compiler import Main

    name = SHARED_UTILITY.rpartition(".")[2]
    c_path = folder / f"{name}.c"
    options = Main.CompilationOptions(
        Main.default_options,
        language_level=3,
        compiler_directives=dict(CYTHON_DIRECTIVES),
        shared_c_file_path=str(c_path),
        module_name=SHARED_UTILITY,
        # not shared_utility_qualified_name (what the kernels are given): with it, Cython
        # leaves the memoryview code out of the shared module itself
    )
    with open(folder / LOG_NAME, "w") as log:
        log.write(f"# environment\n{environment_key()}\n\n$ cython --generate-shared "
                  f"{c_path.name}  (in-process)\n")
        with _cython_lock:
            errors, _ = generate_shared_module(options)
        if errors or not c_path.is_file():
            raise CompileError("Cython could not generate its shared runtime code",
                               log_path=Path(log.name))
        _compile_c(c_path, name, log)


def shared_utility(cache_dir: str | os.PathLike | None = None) -> Path:
    """The extension of Cython's runtime code that every kernel imports (`SHARED_UTILITY`),
    built at most once per build environment and cache."""
    key = "cyutility-" + hashlib.sha256(environment_key().encode()).hexdigest()[:32]
    folder = _build_once(key, cache_root(cache_dir), _compile_shared_utility)
    return folder / f"{SHARED_UTILITY.rpartition('.')[2]}{EXT_SUFFIX}"


def load_shared_utility(cache_dir: str | os.PathLike | None = None) -> ModuleType:
    """Import `SHARED_UTILITY` (building it first if needed) unless it is imported already:
    a kernel's import needs it."""
    module = sys.modules.get(SHARED_UTILITY)
    if module is None or getattr(module, "__file__", "").endswith(".py"):
        module = import_from_path(SHARED_UTILITY, shared_utility(cache_dir))
    return module


# --- the signature stamp of a built extension -------------------------------------------------


def stamp_path(so_path: Path) -> Path:
    """`<ext_name>.stamp` beside the extension: the signature of the sources it was built from
    and the hash of the binary itself, so a stale or half-replaced .so is never imported."""
    so_path = Path(so_path)
    return so_path.with_name(so_path.name.removesuffix(EXT_SUFFIX) + ".stamp")


def stamp_matches(so_path: Path | None, signature: str) -> bool:
    """True if `so_path` exists and its stamp says it was built from `signature` (and the
    binary is the one the stamp was written for)."""
    if so_path is None:
        return False
    try:
        stamp = json.loads(stamp_path(so_path).read_text())
        return stamp["signature"] == signature and stamp["sha256"] == _digest(so_path)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_atomic(path: Path, content: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def install(built: Path, folder: Path, files: dict[str, str], ext_name: str) -> list[Path]:
    """Copy a cache entry's extension (built from `files`) into `folder` with `files`, in an
    order that is safe to kill at any point: the old stamp goes first, then the extension and
    its new stamp, the sources last. A folder cut short holds the old build or sources whose
    stamp does not match (rebuilt on import), never a .py beside a .so of other sources."""
    folder = Path(folder)
    for name in files:
        _check_name(name, "file name")
    src = find_extension(built, ext_name)
    so = folder / src.name
    extra = {name: (built / name).read_bytes() for name in (f"{ext_name}.c", LOG_NAME)
             if (built / name).is_file()}
    try:
        stamp_path(so).unlink(missing_ok=True)
        tmp = folder / f".{so.name}.{os.getpid()}-{threading.get_ident()}.tmp"
        try:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o755)
            os.replace(tmp, so)
        finally:
            tmp.unlink(missing_ok=True)
        _write_atomic(stamp_path(so), stamp_path(src).read_text())
        for name, data in extra.items():
            _write_atomic(folder / name, data)
        ordered = sorted(files, key=lambda n: n.endswith(".py"))    # the .py last
        for name in ordered:
            _write_atomic(folder / name, files[name])
    except OSError as err:
        raise HogwildError(f"cannot write the build into {folder}: {err.strerror or err}") \
            from None
    return [folder / name for name in ordered]


def cache_key(signature: str) -> str:
    """The cache folder name of the sources with this signature, built here."""
    return hashlib.sha256((signature + "\0" + environment_key()).encode()).hexdigest()[:32]


def _remove_dead_temps(folder: Path, prefix: str) -> None:
    """Remove temporary build folders `<prefix><pid>-...` left by processes that were killed."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix):].partition("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# --- the cache ----------------------------------------------------------------------------------


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: `cache_dir`, else $HOGWILD_CACHE_DIR, else ~/.cache/hogwild-dsl."""
    chosen = cache_dir or os.environ.get("HOGWILD_CACHE_DIR") or Path.home() / ".cache" / "hogwild-dsl"
    root = Path(chosen).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HogwildError(
            f"cannot create the build cache folder {root}: {err.strerror or err}; pass cache_dir "
            f"or set HOGWILD_CACHE_DIR to a writable folder"
        ) from err
    if not os.access(root, os.W_OK | os.X_OK):
        raise HogwildError(
            f"the build cache folder {root} is not writable; pass cache_dir or set "
            f"HOGWILD_CACHE_DIR to a writable folder"
        )
    return root


def _check_name(name: str, what: str) -> None:
    if not _SAFE_NAME.match(name):
        raise ValueError(f"{what} {name!r} is not a plain file name (letters, digits, '_', '.', '-')")


def cached_build(
    key: str,
    files: dict[str, str],
    pyx_name: str,
    ext_name: str,
    cache_dir: str | os.PathLike | None = None,
    signature: str | None = None,
) -> Path:
    """The cache folder `<root>/<key>` holding `files` and their built extension (see
    `_build_once`)."""
    _check_name(key, "cache key")
    for name in files:
        _check_name(name, "file name")
    if pyx_name not in files:
        raise ValueError(f"{pyx_name!r} is not among the files to build ({', '.join(files)})")

    def build_into(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        compile_extension(folder / pyx_name, ext_name, signature)

    return _build_once(key, cache_root(cache_dir), build_into)


def _build_once(key: str, root: Path, build_into) -> Path:
    """The cache folder `<root>/<key>`, made by `build_into(folder)` if it is not there.

    Built at most once per key across processes: the first one to take the key's lock builds in
    a temporary folder and renames it into place; the others wait on the lock, then find it.
    A full or read-only cache is a HogwildError, and leaves no temporary folder behind; of the
    failed builds of a key only the latest is kept (for its log).
    """
    final = root / key
    if (final / READY_MARKER).is_file():
        return final
    try:
        with filelock.FileLock(root / f"{key}.lock"):
            if (final / READY_MARKER).is_file():
                return final
            if final.exists():  # never marked ready, so nobody has loaded it: safe to replace
                shutil.rmtree(final)
            _remove_dead_temps(root, f"tmp-{key}-")
            tmp = Path(tempfile.mkdtemp(prefix=f"tmp-{key}-{os.getpid()}-", dir=root))
            try:
                build_into(tmp)
                (tmp / READY_MARKER).write_text(environment_key() + "\n")
            except CompileError as err:
                if err.log_path is None:  # e.g. no compiler: nothing worth keeping
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                for old in root.glob(f"failed-{key}-*"):
                    shutil.rmtree(old, ignore_errors=True)
                failed = root / f"failed-{key}-{os.getpid()}"
                try:
                    os.replace(tmp, failed)
                except OSError:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                message = str(err).removesuffix(f"\nfull log: {err.log_path}")
                raise CompileError(message, log_path=failed / Path(err.log_path).name) from None
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            os.replace(tmp, final)
    except OSError as err:     # a full or read-only cache folder, a lock we may not take
        raise HogwildError(
            f"cannot build in the cache folder {root}: {err.strerror or err}; free some space, "
            "or pass cache_dir / set HOGWILD_CACHE_DIR to a writable folder") from None
    return final


def discard(folder: Path) -> None:
    """Take a cache entry out of use (renamed to failed-..., its log kept)."""
    folder = Path(folder)
    failed = folder.with_name(f"failed-{folder.name}-{os.getpid()}")
    try:
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(folder, failed)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)


# --- loading ------------------------------------------------------------------------------------


def find_extension(folder: Path, ext_name: str) -> Path | None:
    """The built `<ext_name><EXT_SUFFIX>` in `folder`, or None if it is not there."""
    path = Path(folder) / f"{ext_name}{EXT_SUFFIX}"
    return path if path.is_file() else None


def import_from_path(module_name: str, path: Path) -> ModuleType:
    """Import a .py or extension module file under `module_name` (entered in sys.modules first).

    For an extension, the last dotted component of `module_name` must be its extension name:
    CPython finds the module's init function by that name (see the module docstring).
    """
    path = Path(path)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if path.name.endswith(suffix):
            ext_name = path.name.removesuffix(suffix)
            if module_name.rpartition(".")[2] != ext_name:
                raise ImportError(
                    f"cannot import {path.name} as {module_name!r}: an extension module's name "
                    f"must end in its own name ({ext_name!r}), e.g. 'some_package.{ext_name}'"
                )
            break
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python source or extension module file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module
