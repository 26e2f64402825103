"""Tiny build helpers for the yardsticks: cython + gcc called directly (no setuptools),
outputs cached under ``bench/peers/build/`` (git-ignored) by a hash of the sources and
flags.  A file lock (fcntl) keeps concurrent first uses from racing."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_DIR = HERE / "build"

#: seconds spent by the last real builds, by label (empty when everything came from cache)
BUILD_TIMES: dict[str, float] = {}


@contextmanager
def _locked(name: str):
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BUILD_DIR / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _digest(parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _run(cmd: list[str], label: str) -> None:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    BUILD_TIMES[label] = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{label} failed ({res.returncode}): {' '.join(cmd)}\n"
                           f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}")


def _load_extension(modname: str, so_path: Path):
    if modname in sys.modules:
        return sys.modules[modname]
    loader = importlib.machinery.ExtensionFileLoader(modname, str(so_path))
    spec = importlib.util.spec_from_file_location(modname, str(so_path), loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    sys.modules[modname] = mod
    return mod


CYTHON_GCC_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]


def cython_extension(pyx: Path, modname: str, cflags=None):
    """Compile ``pyx`` with cython then gcc (``CYTHON_GCC_FLAGS``) into
    ``build/<stem>-<hash>/`` unless already there, and import it as ``modname``."""
    import Cython

    cflags = list(CYTHON_GCC_FLAGS if cflags is None else cflags)
    src = Path(pyx).read_bytes()
    key = _digest([src, modname, " ".join(cflags), Cython.__version__, sys.version,
                   sysconfig.get_config_var("EXT_SUFFIX")])
    out = BUILD_DIR / f"{Path(pyx).stem}-{key}"
    so = out / (modname + sysconfig.get_config_var("EXT_SUFFIX"))
    if not so.exists():
        with _locked(Path(pyx).stem):
            if not so.exists():
                out.mkdir(parents=True, exist_ok=True)
                c_file = out / f"{modname}.c"
                _run([sys.executable, "-m", "cython", "-3", "--module-name", modname,
                      "-o", str(c_file), str(pyx)], f"cython {Path(pyx).name}")
                fd, tmp = tempfile.mkstemp(dir=out, suffix=".so.tmp")
                os.close(fd)
                try:
                    _run(["gcc", *cflags, "-I", sysconfig.get_paths()["include"],
                          str(c_file), "-o", tmp, "-lm"], f"gcc {Path(pyx).name}")
                    os.replace(tmp, so)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
    return _load_extension(modname, so)


def shared_library(sources: list[Path], name: str, compiler: str, flags: list[str],
                   extra_key=()) -> Path:
    """Compile C/C++ ``sources`` into ``build/<name>`` (a .so for ctypes), rebuilt when the
    sources or flags change (a ``<name>.hash`` file next to it records the key)."""
    key = _digest([*(Path(s).read_bytes() for s in sources), compiler, " ".join(flags),
                   *extra_key])
    so = BUILD_DIR / name
    stamp = BUILD_DIR / (name + ".hash")
    if so.exists() and stamp.exists() and stamp.read_text() == key:
        return so
    with _locked(name):
        if so.exists() and stamp.exists() and stamp.read_text() == key:
            return so
        fd, tmp = tempfile.mkstemp(dir=BUILD_DIR, suffix=".so.tmp")
        os.close(fd)
        try:
            _run([compiler, *flags, *map(str, sources), "-o", tmp], f"{compiler} {name}")
            os.replace(tmp, so)
            stamp.write_text(key)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return so
