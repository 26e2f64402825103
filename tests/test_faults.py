"""Fault tests (issue 13): processes racing on one new spec, a full or unwritable cache, a full
disk while saving, Ctrl-C during fit (Python) and during `hogwildc train`. Real processes and
real signals; a file-size limit (RLIMIT_FSIZE) stands in for a full disk."""
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SVM = (ROOT / "specs" / "svm.hog").read_text()


def python(code: str, env=None, **kwargs) -> subprocess.Popen:
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
    full_env.pop("HOGWILD_DEBUG", None)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def default_sigint():
    """preexec_fn: Ctrl-C as a terminal delivers it, whatever this process inherited (a job
    started in the background by a non-interactive shell ignores SIGINT, and so would its
    children)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def disk_of(limit_bytes: int):
    """preexec_fn: files may not grow past limit_bytes (writes fail with EFBIG, as on a full
    disk, instead of the process being killed by SIGXFSZ)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def test_eight_processes_load_one_new_spec_at_once(tmp_path):
    spec = SVM.replace("epochs 20", "epochs 17")       # new to every cache
    code = """
        import sys, time, numpy as np, scipy.sparse as sp
        from pathlib import Path
        import hogwild_dsl
        while not Path(%r).exists():
            time.sleep(0.01)
        mod = hogwild_dsl.load(text=%r)
        X = sp.random(20, 6, density=0.5, format="csr", random_state=0)
        t = mod.Trainer(threads=1, epochs=2, order="stored").fit(X=X, y=np.ones(20))
        print(repr(t.history[-1]["objective"]))
    """ % (str(tmp_path / "go"), spec)
    env = {"HOGWILD_CACHE_DIR": str(tmp_path / "cache")}
    procs = [python(code, env) for _ in range(8)]
    (tmp_path / "go").touch()
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-2000:]
    assert len({out for out, _ in results}) == 1      # one build, one answer
    entries = [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    # the kernel and Cython's shared runtime code, each built once; no tmp- or failed- left
    assert len(entries) == 2 and sum(e.startswith("cyutility-") for e in entries) == 1, entries


def test_full_cache_during_a_real_build(tmp_path):
    """The build's files outgrow the disk: a clean one-line error, nothing left behind."""
    code = """
        import hogwild_dsl
        try:
            hogwild_dsl.load(text=%r)
        except hogwild_dsl.HogwildError as e:
            print(type(e).__name__, "|", str(e).splitlines()[0])
    """ % SVM.replace("epochs 20", "epochs 16")
    cache = tmp_path / "cache"
    cache.mkdir()
    p = python(code, {"HOGWILD_CACHE_DIR": str(cache)}, preexec_fn=disk_of(200_000))
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-2000:]
    assert out.startswith("HogwildError |") and "File too large" in out, (out, err[-2000:])
    leftovers = [e.name for e in cache.iterdir() if e.name.startswith("tmp-")]
    assert not leftovers
    assert len([e for e in cache.iterdir() if e.name.startswith("failed-")]) <= 1


def test_unwritable_cache_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    import hogwild_dsl
    with pytest.raises(hogwild_dsl.HogwildError, match="cache"):
        hogwild_dsl.load(text=SVM, cache_dir=blocker / "cache")


def test_disk_full_during_save_keeps_the_previous_file(tmp_path, hog_cache_dir):
    code = """
        import numpy as np, scipy.sparse as sp, hogwild_dsl
        mod = hogwild_dsl.load(%r)
        X = sp.random(20, 50000, density=0.001, format="csr", random_state=0)
        t = mod.Trainer(threads=1, epochs=1).fit(X=X, y=np.ones(20))
        import resource, signal       # now the disk is full
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            t.save(%r)
            print("saved")
        except hogwild_dsl.HogwildError as e:
            print("error |", e)
    """ % (str(ROOT / "specs" / "svm.hog"), str(tmp_path / "model.npz"))
    (tmp_path / "model.npz").write_bytes(b"previous model")
    p = python(code, {"HOGWILD_CACHE_DIR": str(hog_cache_dir)})
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-2000:]
    assert out.startswith("error |") and "cannot save" in out, out
    assert (tmp_path / "model.npz").read_bytes() == b"previous model"
    assert [e.name for e in tmp_path.iterdir()] == ["model.npz"]


LONG_FIT = """
    import sys, json, numpy as np, scipy.sparse as sp, hogwild_dsl
    mod = hogwild_dsl.load(%r)
    rng = np.random.default_rng(0)
    n = 200000
    X = sp.csr_matrix((rng.random(10 * n), rng.integers(0, 1000, 10 * n),
                       np.arange(0, 10 * n + 1, 10)), shape=(n, 1000))
    y = np.where(np.arange(n) %% 2, 1.0, -1.0)
    t = mod.Trainer(threads=1, epochs=10**6, order="stored")   # never done before the Ctrl-C
    print("ready", flush=True)
    try:
        t.fit(X=X, y=y)
    except KeyboardInterrupt:
        exact = t.objective(X=X, y=y)
        print(json.dumps({"epochs_done": t._epochs_done, "history": len(t.history),
                          "last": t.history[-1]["objective"] if t.history else None,
                          "exact": exact, "finite": bool(np.isfinite(t.params["w"]).all())}))
"""


def test_ctrl_c_during_fit_from_python(hog_cache_dir):
    """SIGINT mid-fit: history, the epoch count and the params agree (the objective of the
    params kept is the last one recorded)."""
    p = python(LONG_FIT % str(ROOT / "specs" / "svm.hog"),
               {"HOGWILD_CACHE_DIR": str(hog_cache_dir)}, preexec_fn=default_sigint)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(2.0)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    got = json.loads(out.strip().splitlines()[-1])
    assert got["epochs_done"] == got["history"] >= 1 and got["finite"], got
    assert got["exact"] == pytest.approx(got["last"], rel=1e-9)


def test_ctrl_c_during_cli_train_saves(tmp_path, hog_cache_dir):
    rows = [f"{1 if i % 2 else -1} " + " ".join(f"{j}:0.5" for j in range(1 + i % 900,
                                                                     11 + i % 900))
            for i in range(100000)]
    (tmp_path / "train.svm").write_text("\n".join(rows) + "\n")
    env = {**os.environ, "HOGWILD_CACHE_DIR": str(hog_cache_dir)}
    env.pop("HOGWILD_DEBUG", None)
    p = subprocess.Popen([sys.executable, "-m", "hogwild_dsl.cli", "train",
                          str(ROOT / "specs" / "svm.hog"), "--data", "X,y=train.svm",
                          "--epochs", "100000", "--threads", "1", "--out", "model.npz"],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=default_sigint)
    seen = ""
    while "thread)" not in seen:             # the progress bar: the fit has started
        char = p.stderr.read(1)
        assert char, f"train ended before its fit started: {seen}"
        seen += char
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    err = seen + err
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    import hogwild_dsl
    mod = hogwild_dsl.load(ROOT / "specs" / "svm.hog", cache_dir=hog_cache_dir)
    t = mod.Trainer.load(tmp_path / "model.npz")
    assert f"interrupted; saved the params of epoch {t._epochs_done} to model.npz" in err
    assert np.isfinite(t.params["w"]).all()
    assert [e.name for e in tmp_path.iterdir()] == sorted(["train.svm", "model.npz"]) or \
        sorted(e.name for e in tmp_path.iterdir()) == ["model.npz", "train.svm"]
