"""The build stage: pyx -> extension module, cached by key, safe when processes race."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from hogwild_dsl import build
from hogwild_dsl.errors import CompileError, HogwildError

REPO = Path(__file__).resolve().parents[1]

SUM_PYX = """\
from cython.parallel cimport prange

def total(double[::1] x):
    cdef double s = 0
    cdef Py_ssize_t i
    for i in prange(x.shape[0], nogil=True):
        s += x[i]
    return s
"""

C_ERROR_PYX = '''\
cdef extern from *:
    """
    static int broken(void) { return undeclared_identifier_xyz; }
    """
    int broken()

def f():
    return broken()
'''


def test_builds_imports_computes_and_caches(tmp_path, monkeypatch):
    folder = build.cached_build("k1", {"kern.pyx": SUM_PYX}, "kern.pyx", "kern", cache_dir=tmp_path)
    assert folder == tmp_path / "k1"
    so = build.find_extension(folder, "kern")
    assert so is not None and so.name == "kern" + build.EXT_SUFFIX
    module = build.import_from_path("hog_test_k1.kern", so)
    assert module.total(np.arange(1000.0)) == 499500.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k1", "k1.lock"]

    marker = folder / build.READY_MARKER
    stamps = (marker.stat().st_mtime_ns, so.stat().st_mtime_ns)

    def no_rebuild(*args):
        raise AssertionError("a cached key was rebuilt")

    monkeypatch.setattr(build, "compile_extension", no_rebuild)
    again = build.cached_build("k1", {"kern.pyx": SUM_PYX}, "kern.pyx", "kern", cache_dir=tmp_path)
    assert again == folder
    assert (marker.stat().st_mtime_ns, so.stat().st_mtime_ns) == stamps


def test_c_error_raises_with_message_and_log(tmp_path):
    with pytest.raises(CompileError) as caught:
        build.cached_build("bad", {"bad.pyx": C_ERROR_PYX}, "bad.pyx", "bad", cache_dir=tmp_path)
    err = caught.value
    assert "undeclared_identifier_xyz" in str(err)
    assert "error" in str(err)
    log = Path(err.log_path)
    assert log.is_file() and log.parent == tmp_path / f"failed-bad-{os.getpid()}"
    assert "undeclared_identifier_xyz" in log.read_text()
    assert not (tmp_path / "bad").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tmp-")]


def test_cython_error_raises_with_cython_message(tmp_path):
    pyx = tmp_path / "oops.pyx"
    pyx.write_text("def f():\n    return not_a_name_anywhere\n")
    with pytest.raises(CompileError) as caught:
        build.compile_extension(pyx, "oops")
    assert "not_a_name_anywhere" in str(caught.value)
    assert caught.value.log_path == tmp_path / build.LOG_NAME
    assert build.find_extension(tmp_path, "oops") is None


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from hogwild_dsl import build

    cache, counter, ready, go, pyx = sys.argv[1:6]
    original = build.compile_extension

    def counted(*args):
        with open(counter, "a") as f:
            f.write("build\\n")
        return original(*args)

    build.compile_extension = counted
    build.environment_key()  # probe the compiler before the start line, not after
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.005)
    folder = build.cached_build("race", {"kern.pyx": Path(pyx).read_text()}, "kern.pyx", "kern",
                                cache_dir=cache)
    module = build.import_from_path("hog_race.kern", build.find_extension(folder, "kern"))
    print(folder, module.total(np.ones(10)))
    """
)


def test_two_processes_same_key_build_once(tmp_path):
    cache, counter, pyx = tmp_path / "cache", tmp_path / "builds.txt", tmp_path / "src.pyx"
    pyx.write_text(SUM_PYX)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    readies = [tmp_path / f"ready{i}" for i in range(2)]
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(cache), str(counter), str(ready), str(go), str(pyx)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for ready in readies
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in readies):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [
            p.communicate() for p in procs if p.poll() is not None
        ]
        time.sleep(0.01)
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    assert [out.split() for out, _ in outputs] == [[str(cache / "race"), "10.0"]] * 2
    assert counter.read_text() == "build\n"
    assert sorted(p.name for p in cache.iterdir()) == ["race", "race.lock"]


def test_environment_key_is_stable_and_names_the_abi():
    key = build.environment_key()
    assert key == build.environment_key()
    assert build.EXT_SUFFIX in key
    assert f"openmp={build.openmp_available()}" in key


def test_cache_root_env_and_unwritable(tmp_path, monkeypatch):
    monkeypatch.setenv("HOGWILD_CACHE_DIR", str(tmp_path / "from-env"))
    assert build.cache_root() == tmp_path / "from-env"
    assert (tmp_path / "from-env").is_dir()
    assert build.cache_root(tmp_path / "given") == tmp_path / "given"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(HogwildError, match="cannot create the build cache"):
        build.cache_root(blocker / "cache")


def test_extension_import_name_must_end_in_its_own_name(tmp_path):
    with pytest.raises(ImportError, match="must end in its own name"):
        build.import_from_path("hog_x.other", tmp_path / ("kern" + build.EXT_SUFFIX))
