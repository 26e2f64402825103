"""Issue 13, hardening: every case the issue lists, as a named regression test.

Anything that could crash the interpreter (corrupt sparse input, a stale kernel, a huge thread
count) runs in a subprocess, where a segfault is a failed test rather than a dead test run.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from hogwild_dsl import build, cli, jit, parse
from hogwild_dsl.errors import CompileError, DataError, DivergenceError, HogwildError

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SVM = (SPECS / "svm.hog").read_text()
# the same model name with another layout: a kernel of one under the module of the other
# reads arrays that are not there
SVM_BIAS = SVM.replace("param w[feature] = 0", "param w[feature] = 0\nparam b = 0").replace(
    "loss hinge(y[i] * dot(X[i], w))", "loss hinge(y[i] * (dot(X[i], w) + b))")


def run_python(code: str, env=None, timeout=300, cwd=None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter; a crash shows as a negative return code."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=cwd)


def run_cli(*args, env=None, cwd=None, timeout=300):
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HOGWILD_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "hogwild_dsl.cli", *map(str, args)],
                          capture_output=True, text=True, env=full_env, cwd=cwd,
                          timeout=timeout)


def assert_one_line_error(res):
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hogwildc: error:"), res.stderr


# ------------------------------------------------------------------ 1. the parser cache


def test_parser_cache_never_in_the_temp_folder(tmp_path):
    """Lark's cache=True unpickled a predictable file in $TMPDIR (code execution)."""
    tmp, cache = tmp_path / "tmp", tmp_path / "cache"
    tmp.mkdir()
    res = run_python("""
        from hogwild_dsl import parse
        parse.parse(open(%r).read())
        print("parsed")
    """ % str(SPECS / "svm.hog"), env={"TMPDIR": str(tmp), "HOGWILD_CACHE_DIR": str(cache)})
    assert res.returncode == 0 and "parsed" in res.stdout, res.stderr
    assert list(tmp.iterdir()) == []
    tables = list(cache.glob("parser-*.marshal"))
    assert len(tables) == 1 and not tables[0].stat().st_mode & 0o022


def test_parser_cache_planted_by_others_is_never_loaded(tmp_path, monkeypatch):
    """A parser cache anyone else could have written (a group/other-writable file or folder)
    is never read; a corrupt one of our own is rebuilt and rewritten."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("HOGWILD_CACHE_DIR", str(cache))
    loads = []
    real_loads = parse.marshal.loads
    monkeypatch.setattr(parse.marshal, "loads", lambda b: loads.append(1) or real_loads(b))
    source = (SPECS / "svm.hog").read_text()

    def fresh_parse():
        parse._parser.cache_clear()
        return parse.parse(source)

    try:
        fresh_parse()
        table = next(cache.glob("parser-*.marshal"))
        assert loads == [] and not table.stat().st_mode & 0o022
        fresh_parse()
        assert loads == [1]                      # ours: read
        table.chmod(0o666)
        fresh_parse()
        assert loads == [1]                      # writable by others: never read
        table.chmod(0o644)
        cache.chmod(0o777)
        fresh_parse()
        assert loads == [1]                      # in a folder others can write: never read
        cache.chmod(0o755)
        table.write_bytes(b"\x00garbage")
        assert fresh_parse().statements          # corrupt: built again...
        assert real_loads(table.read_bytes())    # ...and rewritten
    finally:
        parse._parser.cache_clear()


def test_parser_is_not_built_with_lark_cache(monkeypatch):
    import lark
    seen = {}
    real = lark.Lark.__init__

    def spy(self, grammar, **options):
        seen.update(options)
        return real(self, grammar, **options)

    monkeypatch.setattr(lark.Lark, "__init__", spy)
    monkeypatch.setattr(parse, "_parser_cache_path", lambda key: None)
    parse._parser.cache_clear()
    try:
        parse._parser()
    finally:
        parse._parser.cache_clear()
    assert not seen.get("cache")


# ------------------------------------------------------------------ 2. corrupt sparse input

CORRUPTIONS = {
    "csr_indptr_10e7": "X = good(); X.indptr[5] = 10**7",
    "csr_indptr_decreasing": "X = good(); X.indptr[5] = X.indptr[4] - 1",
    "csr_indptr_last_past_nnz": "X = good(); X.indptr[-1] += 5",
    "csr_indptr_short": "X = good(); X.indptr = X.indptr[:-3]",
    "csr_indices_negative": "X = good(); X.indices[0] = -1",
    "csr_indices_past_columns": "X = good(); X.indices[3] = 10**6",
    "csr_indices_float": "X = good(); X.indices = X.indices.astype(float)",
    "csr_int64_indices_plus_2_32": "X = good(); X.indices = X.indices.astype(np.int64) + 2**32",
    "csc_indptr_10e7": "X = good().tocsc(); X.indptr[3] = 10**7",
    "csc_indices_past_rows": "X = good().tocsc(); X.indices[0] = 10**6",
    "bsr_indptr_10e7": "X = good().tobsr(blocksize=(2, 2)); X.indptr[2] = 10**7",
    "bsr_indices_past": "X = good().tobsr(blocksize=(2, 2)); X.indices[0] = 10**6",
    "coo_row_out_of_range": "X = good().tocoo(); X.row[0] = 10**6",
    "coo_col_negative": "X = good().tocoo(); X.col[0] = -3",
    "coo_lengths_differ": "X = good().tocoo(); X.row = X.row[:-1]",
    "lil_column_out_of_range": "X = good().tolil(); X.rows[0] = [10**6]; X.data[0] = [1.0]",
    "csr_array_indptr_10e7": "X = sp.csr_array(good()); X.indptr[5] = 10**7",
    "float16_sparse": "X = good(); X.data = X.data.astype(np.float16)",
    "complex_sparse": "X = good().astype(np.complex128)",
    "object_none_dense": "X = np.array([[None] * 10] * 20, dtype=object)",
    "complex_dense": "X = good().toarray() + 1j",
    "string_dense": "X = good().toarray().astype(str)",
}

BATCH = """
import json, sys
import numpy as np, scipy.sparse as sp
import hogwild_dsl
from hogwild_dsl.errors import HogwildError
mod = hogwild_dsl.load(%(spec)r)
rng = np.random.default_rng(0)
y = np.where(rng.random(20) < 0.5, -1.0, 1.0)
def good():
    return sp.random(20, 10, density=0.3, format="csr", random_state=1, dtype=np.float64)
cases = json.loads(%(cases)r)
for name, setup in cases.items():
    for call in ("fit", "objective", "predict"):
        t = mod.Trainer(threads=1, epochs=1)
        try:
            if call != "fit":
                t.fit(X=good(), y=y)
            scope = {"np": np, "sp": sp, "good": good}
            exec(setup, scope)
            data = {"X": scope["X"]} if call == "predict" else {"X": scope["X"], "y": y}
            getattr(t, call)(**data)
            outcome = "accepted"
        except HogwildError as e:
            outcome = type(e).__name__ + ": " + str(e)
        except Exception as e:
            outcome = "WRONG " + type(e).__name__ + ": " + str(e)
        print(json.dumps([name, call, outcome]), flush=True)
"""


def test_corrupt_sparse_input_is_a_data_error_never_a_crash(hog_cache_dir):
    """Issue items 2 and 6: structure is validated before scipy or the kernels touch it."""
    res = run_python(BATCH % {"spec": str(SPECS / "svm.hog"), "cases": json.dumps(CORRUPTIONS)},
                     env={"HOGWILD_CACHE_DIR": str(hog_cache_dir)})
    assert res.returncode == 0, f"crashed ({res.returncode}): {res.stderr[-2000:]}"
    seen = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(seen) == 3 * len(CORRUPTIONS)
    for name, call, outcome in seen:
        assert outcome.startswith("DataError: "), (name, call, outcome)
        assert "\n" not in outcome


def test_int64_indices_are_range_checked_before_the_cast(load_spec):
    mod = load_spec("svm")
    X = sp.random(20, 10, density=0.3, format="csr", random_state=1)
    X.indices = X.indices.astype(np.int64) + 2**32    # wrapped to the same columns in int32
    with pytest.raises(DataError, match="out of range"):
        mod.Trainer(threads=1, epochs=1).fit(X=X, y=np.ones(20))


def test_object_none_and_complex_are_refused(load_spec):
    mod = load_spec("svm")
    X = sp.random(4, 3, density=0.5, format="csr", random_state=1)
    with pytest.raises(DataError, match="None"):
        mod.Trainer(threads=1).fit(X=X, y=np.array([1, None, 1, 1], dtype=object))
    with pytest.raises(DataError, match="complex"):
        mod.Trainer(threads=1).fit(X=X.astype(np.complex128), y=np.ones(4))
    with pytest.raises(DataError, match="complex"):
        mod.Trainer(threads=1).fit(X=X, y=np.ones(4) + 0j)
    with pytest.raises(DataError, match="float16"):
        Xh = X.copy()
        Xh.data = Xh.data.astype(np.float16)
        mod.Trainer(threads=1).fit(X=Xh, y=np.ones(4))


def test_scipy_errors_do_not_leak(load_spec):
    mod = load_spec("svm")
    X = sp.random(4, 3, density=0.5, format="coo", random_state=1)
    X.row = X.row[:-1]        # scipy itself would raise ValueError
    with pytest.raises(DataError):
        mod.Trainer(threads=1).fit(X=X, y=np.ones(4))


def test_other_sparse_formats_train_like_csr(load_spec):
    mod = load_spec("svm")
    X = sp.random(30, 8, density=0.4, format="csr", random_state=2)
    y = np.where(np.arange(30) % 2, 1.0, -1.0)
    want = mod.Trainer(threads=1, epochs=2, order="stored").fit(X=X, y=y).params["w"]
    for fmt in ("csc", "coo", "bsr", "lil", "dok", "dia"):
        got = mod.Trainer(threads=1, epochs=2, order="stored").fit(X=X.asformat(fmt), y=y)
        np.testing.assert_allclose(got.params["w"], want, err_msg=fmt)


@pytest.mark.parametrize("command", ["train", "analyze"])
def test_cli_corrupt_csr_npz_exits_1_with_one_line(command, tmp_path, hog_cache_dir):
    X = sp.random(20, 10, density=0.3, format="csr", random_state=1)
    X.indptr[5] = 10**7
    sp.save_npz(tmp_path / "bad.npz", X, compressed=False)
    np.save(tmp_path / "y.npy", np.ones(20))
    res = run_cli(command, SPECS / "svm.hog", "--data", "X=bad.npz", "--data", "y=y.npy",
                  env={"HOGWILD_CACHE_DIR": str(hog_cache_dir)}, cwd=tmp_path)
    assert_one_line_error(res)
    assert "corrupt" in res.stderr


# ------------------------------------------------------------------ 3. stale kernels

FIT_AND_COMPARE = """
import sys, numpy as np, scipy.sparse as sp
sys.path.insert(0, %(parent)r)
import hogwild_dsl
from hogwild_dsl.errors import HogwildError
X = sp.random(30, 8, density=0.4, format="csr", random_state=2)
y = np.where(np.arange(30) %% 2, 1.0, -1.0)
try:
    mod = __import__(%(package)r + "." + "svm", fromlist=["svm"])
except HogwildError as e:
    print("clean error:", e)
    sys.exit(0)
params = {p.name for p in mod.Trainer.spec.params}
got = mod.Trainer(threads=1, epochs=2, order="stored").fit(X=X, y=y).objective(X=X, y=y)
ref = hogwild_dsl.load(text=mod.SPEC).Trainer(threads=1, epochs=2, order="stored")
want = ref.fit(X=X, y=y).objective(X=X, y=y)
assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (got, want)
print("ok", sorted(params))
"""


def _import_and_fit(out: Path, cache: Path) -> str:
    res = run_python(FIT_AND_COMPARE % {"parent": str(out.parent), "package": out.name},
                     env={"HOGWILD_CACHE_DIR": str(cache)})
    assert res.returncode == 0, f"import crashed or failed ({res.returncode}): {res.stderr[-3000:]}"
    return res.stdout


def test_stale_so_beside_a_new_module_is_never_imported(tmp_path, hog_cache_dir):
    """A .so built from other sources (no stamp, or another signature) is rebuilt from the
    module's own spec, in the cache, instead of being imported."""
    a, b = tmp_path / "a.hog", tmp_path / "b.hog"
    a.write_text(SVM)
    b.write_text(SVM_BIAS)
    out_a, out_b = tmp_path / "gen_a", tmp_path / "gen_b"
    jit.compile_to([a], out_a)
    jit.compile_to([b], out_b)
    so = build.find_extension(out_a, "svm_kernels")
    os.replace(so, build.find_extension(out_b, "svm_kernels"))    # b's module, a's kernels
    assert "'b'" in _import_and_fit(out_b, hog_cache_dir)
    build.stamp_path(so).unlink()                                 # an unstamped .so
    jit.compile_to([b], out_a)
    build.stamp_path(build.find_extension(out_a, "svm_kernels")).unlink()
    assert "'b'" in _import_and_fit(out_a, hog_cache_dir)


def test_stale_module_of_another_generator_is_a_clean_error(tmp_path, hog_cache_dir):
    spec = tmp_path / "svm.hog"
    spec.write_text(SVM)
    out = tmp_path / "gen"
    jit.compile_to([spec], out)
    build.stamp_path(build.find_extension(out, "svm_kernels")).unlink()
    module = out / "svm.py"
    module.write_text(module.read_text().replace("SIGNATURE = \"", "SIGNATURE = \"0"))
    assert _import_and_fit(out, hog_cache_dir).startswith("clean error:")


@pytest.mark.parametrize("cache,fraction", [("warm", 0.3), ("warm", 0.6), ("warm", 0.9),
                                            ("cold", 0.4)])
def test_kill_9_during_compile_then_reload(cache, fraction, tmp_path, hog_cache_dir):
    """`hogwildc compile` killed at several points of a rebuild over an earlier build (the new
    kernels already in the cache: killed while installing; or not: killed while building):
    the folder always imports and trains correctly (old or new model), never segfaults."""
    a, b = tmp_path / "svm.hog", tmp_path / "svm_bias.hog"
    a.write_text(SVM)
    b.write_text(SVM_BIAS)
    out = tmp_path / "gen"
    jit.compile_to([a], out)
    compile_cache = hog_cache_dir if cache == "warm" else tmp_path / "cold-cache"
    env = {**os.environ, "HOGWILD_CACHE_DIR": str(compile_cache)}
    command = [sys.executable, "-m", "hogwild_dsl.cli", "compile", str(b), "-o"]
    if cache == "warm":
        began = time.monotonic()
        full = subprocess.run(command + [str(tmp_path / "timing")], env=env, capture_output=True)
        assert full.returncode == 0, full.stderr
        duration = time.monotonic() - began
    else:
        duration = 6.0       # a build of this spec takes 5-10 s
    proc = subprocess.Popen(command + [str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(duration * fraction)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _import_and_fit(out, hog_cache_dir)
    jit.compile_to([b], out)        # a later compile completes
    assert "'b'" in _import_and_fit(out, hog_cache_dir)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_compile_writes_module_only_after_a_successful_build(tmp_path, monkeypatch):
    spec = tmp_path / "svm.hog"
    spec.write_text(SVM)
    out = tmp_path / "gen"
    jit.compile_to([spec], out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def broken(*args, **kwargs):
        raise CompileError("the C compiler failed", log_path=None)

    spec.write_text(SVM_BIAS)
    monkeypatch.setattr(build, "cached_build", broken)
    with pytest.raises(CompileError):
        jit.compile_to([spec], out)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before


def test_two_specs_of_one_model_name_compiled_together(tmp_path):
    a, b = tmp_path / "a.hog", tmp_path / "b.hog"
    a.write_text(SVM)
    b.write_text(SVM_BIAS)
    with pytest.raises(HogwildError, match="both define model 'svm'"):
        jit.compile_to([a, b], tmp_path / "gen")
    assert not (tmp_path / "gen" / "svm.py").exists()
    res = run_cli("compile", a, b, "-o", tmp_path / "gen2")
    assert_one_line_error(res)
    assert "both define model 'svm'" in res.stderr


# ------------------------------------------------------------------ 4. threads


@pytest.mark.parametrize("threads", [100000, 2**31, 2**63, float("nan"), float("inf"), -1, 0,
                                     1.5, "4", True])
def test_bad_thread_counts_are_refused(threads, load_spec):
    mod = load_spec("svm")
    with pytest.raises(HogwildError, match="threads"):
        mod.Trainer(threads=threads)


def test_thread_count_set_after_construction_is_checked(load_spec):
    mod = load_spec("svm")
    t = mod.Trainer(threads=1, epochs=1)
    t.threads = 100000
    with pytest.raises(HogwildError, match="threads must be a positive integer of at most"):
        t.fit(X=sp.random(5, 3, density=0.5, format="csr", random_state=0), y=np.ones(5))


def test_huge_threads_in_spec_and_cli(tmp_path, hog_cache_dir):
    spec = tmp_path / "svm.hog"
    spec.write_text(SVM.replace("epochs 20", "epochs 2, threads 100000"))
    (tmp_path / "d.svm").write_text("1 1:1 2:1\n-1 2:1\n")
    env = {"HOGWILD_CACHE_DIR": str(hog_cache_dir)}
    res = run_cli("train", spec, "--data", "X,y=d.svm", "-q", env=env, cwd=tmp_path)
    assert_one_line_error(res)
    assert "threads" in res.stderr
    res = run_cli("train", SPECS / "svm.hog", "--data", "X,y=d.svm", "-q", "--threads",
                  "100000", env=env, cwd=tmp_path)
    assert_one_line_error(res)
    assert "threads" in res.stderr


@pytest.mark.parametrize("option", ["epochs", "chunk", "seed"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**70])
def test_nan_inf_huge_options_are_refused(option, value, load_spec):
    with pytest.raises(HogwildError, match=option):
        load_spec("svm").Trainer(**{option: value})


def test_unhashable_sync_and_order(load_spec):
    mod = load_spec("svm")
    with pytest.raises(HogwildError, match="sync"):
        mod.Trainer(sync=["hogwild"])
    with pytest.raises(HogwildError, match="order"):
        mod.Trainer(order={"chunks": 1})


# ------------------------------------------------------------------ 5. lost work


@pytest.fixture
def trained(load_spec):
    mod = load_spec("svm")
    X = sp.random(30, 8, density=0.4, format="csr", random_state=2)
    y = np.where(np.arange(30) % 2, 1.0, -1.0)
    return mod, mod.Trainer(threads=1, epochs=2).fit(X=X, y=y), X, y


def test_save_reports_the_file_written_and_params_by_name(trained, tmp_path):
    mod, t, _, _ = trained
    written = t.save(tmp_path / "x")
    assert written == tmp_path / "x.npz" and written.is_file()
    assert not (tmp_path / "x").exists()
    with np.load(written) as f:
        np.testing.assert_array_equal(f["w"], t.params["w"])      # API.md: np.load(f)["w"]
        assert sorted(f.files) == ["__hogwild__", "w"]
    again = mod.Trainer.load(written)
    np.testing.assert_array_equal(again.params["w"], t.params["w"])
    assert again._epochs_done == 2


def test_save_into_a_folder_writes_the_default_name_in_it(trained, tmp_path):
    """A folder (existing, or a path ending in a separator) gets MODEL_params.npz inside it,
    as `hogwildc train --out DIR/` does; it used to write DIR.npz beside the folder."""
    mod, t, _, _ = trained
    written = t.save(tmp_path)
    assert written == tmp_path / f"{t.spec.model}_params.npz" and written.is_file()
    (tmp_path / "models").mkdir()
    assert t.save(str(tmp_path / "models") + "/") == \
        tmp_path / "models" / f"{t.spec.model}_params.npz"
    assert not (tmp_path / "models.npz").exists()
    np.testing.assert_array_equal(mod.Trainer.load(written).params["w"], t.params["w"])


def test_failed_save_keeps_the_previous_file(trained, tmp_path, monkeypatch):
    _, t, _, _ = trained
    path = t.save(tmp_path / "model.npz")
    before = path.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(HogwildError, match="No space left on device"):
        t.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]    # no temporary file left


def test_save_into_a_missing_folder_is_a_hogwild_error(trained, tmp_path):
    with pytest.raises(HogwildError, match="cannot save"):
        trained[1].save(tmp_path / "no" / "such" / "x.npz")


def _corrupt_params_files(good: bytes, folder: Path) -> dict:
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    files = {"truncated": good[: len(good) // 2], "empty": b"", "bit_flipped": bytes(flipped),
             "text": b"not a params file\n", "zip_of_other_things": None, "npy": None,
             "no_metadata": None, "metadata_not_json": None, "metadata_lists_junk": None}
    out = {}
    for name, content in files.items():
        path = folder / f"{name}.npz"
        if name == "npy":
            path = folder / "array.npy"
            np.save(path, np.ones(3))
        elif name == "zip_of_other_things":
            import zipfile
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("readme.txt", "hello")
        elif name == "no_metadata":
            np.savez(path, w=np.ones(8))
        elif name == "metadata_not_json":
            np.savez(path, __hogwild__=np.array("{not json"), w=np.ones(8))
        elif name == "metadata_lists_junk":
            np.savez(path, __hogwild__=np.array(json.dumps({"params": [1, 2]})), w=np.ones(8))
        else:
            path.write_bytes(content)
        out[name] = path
    return out


def test_load_of_a_bad_file_is_a_hogwild_error(trained, tmp_path, load_spec):
    """Issue item 7: BadZipFile, EOFError, TypeError, AttributeError, KeyError, ValueError."""
    mod, t, _, _ = trained
    good = t.save(tmp_path / "good.npz").read_bytes()
    for name, path in _corrupt_params_files(good, tmp_path).items():
        with pytest.raises(HogwildError, match="not a params file") as err:
            mod.Trainer.load(path)
        assert "\n" not in str(err.value), name
    with pytest.raises(HogwildError, match="signature mismatch"):
        load_spec("mc").Trainer.load(tmp_path / "good.npz")        # another spec's file
    with pytest.raises(HogwildError, match="no such file|No such file"):
        mod.Trainer.load(tmp_path / "missing.npz")


def test_load_of_params_with_a_wrong_shape_or_nan(trained, tmp_path):
    mod, t, _, _ = trained
    path = t.save(tmp_path / "good.npz")
    with np.load(path) as f:
        meta = f["__hogwild__"]
    np.savez(tmp_path / "nan.npz", __hogwild__=meta, w=np.full(8, np.nan))
    with pytest.raises(HogwildError, match="NaN"):
        mod.Trainer.load(tmp_path / "nan.npz")
    np.savez(tmp_path / "2d.npz", __hogwild__=meta, w=np.ones((2, 4)))
    with pytest.raises(HogwildError, match="declared 1-D"):
        mod.Trainer.load(tmp_path / "2d.npz")


def test_params_must_be_finite_after_every_epoch(load_spec):
    """`loss y[i] / b` with b = 0 trained to objectives [0, 0, 0]: now a DivergenceError
    that keeps the last finite params."""
    mod = load_spec(text="model div\ndim example\ndata y[example] : real\nparam b = 0\n"
                         "for i in example:\n    loss y[i] / b\n")
    t = mod.Trainer(epochs=3, threads=1)
    with pytest.raises(DivergenceError):
        t.fit(y=np.ones(5))
    assert t.history == [] and np.isfinite(t.params["b"])


def kernels_with(mod, kernel_class):
    """The module's kernels with Kernel replaced (a fault injected into one run)."""
    real = mod.Trainer.kernels
    fake = {n: getattr(real, n) for n in dir(real) if not n.startswith("_")}
    return type("FakeKernels", (), {**{n: staticmethod(f) if callable(f) else f
                                       for n, f in fake.items()}, "Kernel": kernel_class})


def test_nan_params_with_a_finite_objective_diverge(load_spec, monkeypatch):
    mod = load_spec("svm")
    X = sp.random(30, 8, density=0.4, format="csr", random_state=2)
    y = np.where(np.arange(30) % 2, 1.0, -1.0)
    t = mod.Trainer(epochs=3, threads=1).fit(X=X, y=y)
    good = t.params["w"].copy()
    real = mod.Trainer.kernels.Kernel

    class NanKernel:          # a kernel that writes a NaN but reports a finite objective
        def __init__(self, arrays, sizes):
            self.k, self.w = real(arrays, sizes), arrays["w"]
            self.nterms = self.k.nterms

        def epoch(self, *args):
            self.w[0] = np.nan

        def objective_sum(self, threads):
            return 1.0

    monkeypatch.setattr(mod.Trainer, "kernels", kernels_with(mod, NanKernel))
    with pytest.raises(DivergenceError, match="params became NaN or inf"):
        t.fit(X=X, y=y)
    np.testing.assert_array_equal(t.params["w"], good)
    assert len(t.history) == t._epochs_done == 3


def test_interrupted_epoch_is_undone_and_not_counted(load_spec, monkeypatch):
    mod = load_spec("svm")
    X = sp.random(30, 8, density=0.4, format="csr", random_state=2)
    y = np.where(np.arange(30) % 2, 1.0, -1.0)
    t = mod.Trainer(epochs=2, threads=1, order="stored").fit(X=X, y=y)
    good = t.params["w"].copy()
    real = mod.Trainer.kernels.Kernel

    class CtrlC:             # the epoch's updates land, then Ctrl-C arrives
        def __init__(self, arrays, sizes):
            self.k, self.w = real(arrays, sizes), arrays["w"]
            self.nterms = self.k.nterms

        def objective_sum(self, threads):
            return self.k.objective_sum(threads)

        def epoch(self, *args):
            self.k.epoch(*args)
            raise KeyboardInterrupt

    monkeypatch.setattr(mod.Trainer, "kernels", kernels_with(mod, CtrlC))
    with pytest.raises(KeyboardInterrupt):
        t.fit(X=X, y=y)
    np.testing.assert_array_equal(t.params["w"], good)
    assert len(t.history) == t._epochs_done == 2


# ------------------------------------------------------------------ 7. wrong exception types


def test_param_replaced_by_a_list_or_junk(trained):
    mod, t, X, y = trained
    for junk, words in [([1.0, 2.0], "dim 'feature'"), ("abc", "numeric"), (["a"] * 8, "numeric"),
                        (None, "missing"), ([[1.0] * 8], "shape|dim")]:
        t.params["w"] = junk
        with pytest.raises(DataError, match=words):
            t.fit(X=X, y=y)
    t.params["w"] = list(np.zeros(8))     # a list of the right length is fine
    t.fit(X=X, y=y)
    t.params = [1, 2]
    with pytest.raises(DataError, match="must be a dict"):
        t.fit(X=X, y=y)


def test_const_too_large_to_allocate_names_the_size(load_spec):
    mod = load_spec("mc", consts={"rank": 10**9})
    r = sp.random(50, 40, density=0.2, format="csr", random_state=0)
    with pytest.raises(DataError, match=r"param 'L' alone is 50 x 1000000000"):
        mod.Trainer(epochs=1, threads=1).fit(r=r)


def test_svmlight_index_10e20_and_bom(tmp_path):
    from hogwild_dsl.data import read_data
    (tmp_path / "big.svm").write_text("1 1:1 100000000000000000000:1\n-1 2:1\n")
    with pytest.raises(DataError, match="too large"):
        read_data(tmp_path / "big.svm", ["X", "y"])
    (tmp_path / "bom.svm").write_bytes(b"\xef\xbb\xbf1 1:1 2:1\n-1 2:1\n")
    out = read_data(tmp_path / "bom.svm", ["X", "y"])
    assert out["X"].shape == (2, 2) and list(out["y"]) == [1.0, -1.0]


def test_bom_spec_accepted_by_load_path(tmp_path, hog_cache_dir):
    path = tmp_path / "svm.hog"
    path.write_bytes(b"\xef\xbb\xbf" + SVM.encode())
    mod = hogwild_dsl.load(path, cache_dir=hog_cache_dir)
    assert mod.Trainer.spec.model == "svm"
    assert hogwild_dsl.check("\ufeff" + SVM).model == "svm"


@pytest.mark.parametrize("bad", ["\x00", "\ud800", "\x07"])
@pytest.mark.parametrize("where", ["comment", "name"])
def test_nul_byte_and_lone_surrogate_are_spec_errors_at_check(bad, where):
    from hogwild_dsl.errors import SpecError
    text = SVM.replace("# labels", f"# lab{bad}els") if where == "comment" else \
        SVM.replace("loss hinge", f"loss {bad}hinge")
    with pytest.raises(SpecError, match=r"unexpected character U\+") as err:
        hogwild_dsl.check(text)
    str(err.value).encode("utf-8")      # printable: the character is not in the message


def test_nul_spec_leaves_no_cache_entry(tmp_path):
    with pytest.raises(HogwildError):
        hogwild_dsl.load(text=SVM.replace("# labels", "# lab\x00els"), cache_dir=tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


def test_full_cache_folder_is_a_clean_error_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(build, "compile_extension", full)
    with pytest.raises(HogwildError, match="No space left on device") as err:
        hogwild_dsl.load(text=SVM.replace("epochs 20", "epochs 19"), cache_dir=tmp_path)
    assert type(err.value) is HogwildError
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("tmp-", "failed-"))]


def test_read_only_cache_folder_is_a_clean_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(HogwildError, match="not writable"):
            hogwild_dsl.load(text=SVM, cache_dir=tmp_path)
    finally:
        tmp_path.chmod(0o755)


def test_long_model_names(hog_cache_dir, tmp_path):
    """A 200-character model name made file names past the 255-byte limit (and Cython's init
    symbol) fail: names are shortened by a hash, module names kept."""
    for length in (60, 61, 200, 1000):
        ext = jit.ext_name_for("m" * length)
        assert ext.isidentifier() and len(ext) <= jit.MAX_FILE_STEM + len("_kernels")
    assert jit.ext_name_for("m" * 200) != jit.ext_name_for("m" * 201)
    name = "m" * 200
    mod = hogwild_dsl.load(text=SVM.replace("model svm", f"model {name}"),
                           cache_dir=hog_cache_dir)
    X = sp.random(10, 5, density=0.5, format="csr", random_state=0)
    assert mod.Trainer(threads=1, epochs=1).fit(X=X, y=np.ones(10)).history
    spec = tmp_path / "long.hog"
    spec.write_text(SVM.replace("model svm", f"model {name}"))
    jit.compile_to([spec], tmp_path / "gen")      # <model>.py keeps its name; the .so is short
    assert (tmp_path / "gen" / f"{name}.py").is_file()
    spec.write_text(SVM.replace("model svm", f"model {'m' * 250}"))
    with pytest.raises(HogwildError, match="too long"):
        jit.compile_to([spec], tmp_path / "gen")


def test_data_named_self(load_spec):
    mod = load_spec(text="model selfy\ndim example\ndata self[example] : real\nparam b = 0\n"
                         "for i in example:\n    loss (self[i] - b)^2\n    predict b\n")
    t = mod.Trainer(epochs=2, threads=1).fit(self=np.ones(4))
    assert np.isfinite(t.objective(self=np.ones(4)))
    assert t.predict(self=np.ones(4)).shape == (4,)


# ------------------------------------------------------------------ 8. the standing fuzz


def test_fuzz_wrong_data_and_files_sample(hog_cache_dir):
    """Every named way to hand wrong data to fit/objective/predict (svm: row blocks; cuts: an
    entry block and dense data) and every named malformed file, plus a few random ones, in
    child processes: zero crashes, hangs, silently wrong results or wrong exception types.
    bench/bench_reliability.py runs the large version (all specs, 1,000+ random cases)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import fuzz_cases
    ids = fuzz_cases.data_case_ids(n_random=2, specs=["svm", "cuts"])
    ids += fuzz_cases.file_case_ids(n_random=3)
    results = fuzz_cases.run(ids, env={"HOGWILD_CACHE_DIR": str(hog_cache_dir)})
    assert len(results) == len(ids)
    bad = {case: r for case, r in results.items() if r[0] not in ("clean", "ok")}
    assert not bad, "\n".join(f"{c}: {o} ({d})" for c, (o, d) in bad.items())
    outcomes = {o for o, _ in results.values()}
    assert outcomes == {"clean", "ok"}       # both kinds exercised: the fuzz can tell them apart


def test_fuzz_spec_texts_sample():
    """Random valid specs and mutations of them (every mutation kind, deep nesting and long let
    chains included) given to check: the IR or a SpecError, never another exception, a crash
    or a hang; every unmutated spec checks. bench/bench_reliability.py runs 10,000."""
    sys.path.insert(0, str(ROOT / "tests"))
    import fuzz_cases
    ids = fuzz_cases.spec_case_ids(150)
    assert {i.split("|")[2] for i in ids} == set(fuzz_cases.SPEC_MUTATIONS)
    results = fuzz_cases.run(ids)
    assert len(results) == len(ids)
    bad = {case: r for case, r in results.items() if r[0] not in ("clean", "ok")}
    assert not bad, "\n".join(f"{c}: {o} ({d})" for c, (o, d) in bad.items())
    assert {o for o, _ in results.values()} == {"clean", "ok"}


def test_a_build_that_does_not_import_is_not_kept_in_the_cache(tmp_path, monkeypatch):
    from hogwild_dsl.errors import CompileError
    real = build.import_from_path
    calls = []

    def broken_once(name, path):
        calls.append(name)
        if len(calls) == 1:
            raise ImportError("dynamic module does not define module export function")
        return real(name, path)

    monkeypatch.setattr(build, "import_from_path", broken_once)
    text = SVM.replace("epochs 20", "epochs 18")
    with pytest.raises(CompileError, match="removed from the cache"):
        hogwild_dsl.load(text=text, cache_dir=tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("failed-")]
    assert hogwild_dsl.load(text=text, cache_dir=tmp_path).Trainer.spec.model == "svm"


@pytest.mark.parametrize("content", [
    b"%%MatrixMarket matrix coordinate real general\n3 4 2\n1 1 0.5\n3 4 2\x1a",
    b"%%MatrixMarket matrix array real general\n2 2\n1.5\n2\n3\n4e",
    b"%%MatrixMarket matrix coordinate real general\n3 4 2\n1 1 0.5J"])
def test_mtx_cut_last_number_is_a_data_error_not_a_segfault(content, tmp_path):
    """scipy's C++ Matrix Market reader reads past its buffer on these (found by the fuzz)."""
    path = tmp_path / "bad.mtx"
    path.write_bytes(content)
    res = run_python("""
        from hogwild_dsl.data import read_data
        from hogwild_dsl.errors import DataError
        try:
            read_data(%r, ["r"], "sparse")
            print("read")             # scipy reads "4e" as 4: not ours to refuse
        except DataError as e:
            print("DataError", e)
    """ % str(path))
    assert res.returncode == 0 and res.stdout.startswith(("DataError", "read")), \
        (res.returncode, res.stderr[-500:])
