"""The `hogwildc` command line, run as a real subprocess (`python -m hogwild_dsl.cli`)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hogwild_dsl import cli

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

BAD_SPEC = """model bad
dim example, feature
data X[example, feature] : sparse
data y[example] : sign
param w[feature] = 0
for i in example:
    loss hinge(y[i] * dot(X[i], ww))
"""

# four rows, features 1..4 (one-based): terms {1,3} {3} {2} {1,4}
TINY_SVM = """\
1 1:1.0 3:2.0
-1 3:3.0
1 2:1.0
-1 1:1.0 4:1.0
"""


@pytest.fixture(scope="session")
def cli_env(request, tmp_path_factory):
    """One compile cache for the whole session: conftest's `hog_cache_dir` where it exists."""
    try:
        cache = request.getfixturevalue("hog_cache_dir")
    except pytest.FixtureLookupError:
        cache = tmp_path_factory.mktemp("hogcache")
    env = dict(os.environ)
    env["HOGWILD_CACHE_DIR"] = str(cache)
    env["MPLBACKEND"] = "Agg"
    env.pop("HOGWILD_DEBUG", None)
    return env


@pytest.fixture
def hogwildc(cli_env, tmp_path):
    def run(*args, cwd=None, timeout=600):
        return subprocess.run([sys.executable, "-m", "hogwild_dsl.cli", *map(str, args)],
                              capture_output=True, text=True, env=cli_env,
                              cwd=cwd or tmp_path, timeout=timeout)
    return run


def no_traceback(res):
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr


def one_error_line(res):
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("hogwildc: error:")
    return lines[0]


@pytest.fixture
def tiny_svm(tmp_path):
    path = tmp_path / "tiny.svm"
    path.write_text(TINY_SVM)
    return path


# ------------------------------------------------------------------ check


@pytest.mark.parametrize("name, touched", [
    ("svm", "w[j in X[i]]"),
    ("mc", "L[u, :]"),
    ("cuts", "x[u, :], x[v, :]"),
    ("logreg", "touches b"),
    ("fm", "V[j in X[i], :]"),
])
def test_check_good_spec(hogwildc, name, touched):
    res = hogwildc("check", SPECS / f"{name}.hog")
    assert res.returncode == 0, res.stderr
    no_traceback(res)
    out = res.stdout
    assert f"model {name}" in out
    assert touched in out
    assert "derived gradients" in out and "d/d" in out


def test_check_summary_lists_consts_constraints_and_blocks(hogwildc):
    res = hogwildc("check", SPECS / "mc.hog", SPECS / "cuts.hog", "--const", "rank=7")
    assert res.returncode == 0, res.stderr
    assert "rank = 7" in res.stdout
    assert "in simplex" in res.stdout
    assert "one term per stored entry of r" in res.stdout
    assert "block 2" in res.stdout
    assert "2 of 2 specs OK" in res.stdout


def test_check_bad_spec_shows_the_caret(hogwildc, tmp_path):
    bad = tmp_path / "bad.hog"
    bad.write_text(BAD_SPEC)
    res = hogwildc("check", bad)
    assert res.returncode == 1
    no_traceback(res)
    assert "bad.hog" in res.stderr
    assert "line 7" in res.stderr
    assert "^" in res.stderr
    assert "loss hinge(y[i] * dot(X[i], ww))" in res.stderr


def test_check_reports_every_failing_spec(hogwildc, tmp_path):
    bad = tmp_path / "bad.hog"
    bad.write_text(BAD_SPEC)
    res = hogwildc("check", bad, SPECS / "svm.hog", tmp_path / "missing.hog")
    assert res.returncode == 1
    no_traceback(res)
    assert "model svm" in res.stdout
    assert "bad.hog" in res.stderr and "missing.hog" in res.stderr
    assert "1 of 3 specs OK" in res.stderr


@pytest.mark.parametrize("kind, needle", [
    ("missing", "no such file"),
    ("directory", "directory"),
    ("empty", "empty"),
    ("blank", "empty"),
    ("latin1", "UTF-8"),
])
def test_check_unusable_spec_files(hogwildc, tmp_path, kind, needle):
    path = tmp_path / "spec.hog"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "blank":
        path.write_bytes(b"  \n\n\t\n")
    elif kind == "latin1":
        path.write_bytes("model caf\u00e9\n".encode("latin-1"))
    res = hogwildc("check", path)
    assert res.returncode == 1
    no_traceback(res)
    assert needle in one_error_line(res)


def test_utf8_bom_is_accepted(hogwildc, tmp_path):
    path = tmp_path / "bom.hog"
    path.write_bytes(b"\xef\xbb\xbf" + (SPECS / "svm.hog").read_bytes())
    res = hogwildc("check", path)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("const", ["rank", "rank=", "rank=x", "=3", "rank=0", "1x=3"])
def test_malformed_const_is_a_usage_error(hogwildc, const):
    res = hogwildc("check", SPECS / "mc.hog", "--const", const)
    assert res.returncode == 2
    no_traceback(res)
    assert "NAME=INT" in res.stderr or "positive" in res.stderr


def test_unknown_const_is_a_spec_error(hogwildc):
    res = hogwildc("check", SPECS / "svm.hog", "--const", "rank=3")
    assert res.returncode == 1
    no_traceback(res)
    assert "rank" in res.stderr


def test_usage(hogwildc):
    res = hogwildc()
    assert res.returncode == 2
    assert "usage" in res.stderr
    res = hogwildc("--help")
    assert res.returncode == 0
    for cmd in ("check", "compile", "train", "analyze", "demo"):
        assert cmd in res.stdout
    assert hogwildc("--version").returncode == 0


def test_every_option_says_what_it_does():
    """README: `hogwildc train --help` says what each option means (so do the others')."""
    import argparse
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    silent = [f"{name} {'/'.join(action.option_strings)}"
              for name, sub in commands.choices.items() for action in sub._actions
              if action.option_strings and not action.help]
    assert not silent


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "cmd_check", interrupted)
    assert cli.main(["check", str(SPECS / "svm.hog")]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_internal_errors_are_one_line(monkeypatch, capsys):
    def broken(args):
        raise KeyError("oops")
    monkeypatch.setattr(cli, "cmd_check", broken)
    monkeypatch.delenv("HOGWILD_DEBUG", raising=False)
    assert cli.main(["check", str(SPECS / "svm.hog")]) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" not in err


# ------------------------------------------------------------------ analyze (no compiler needed)


def test_analyze_tiny_svmlight(hogwildc, tiny_svm):
    res = hogwildc("analyze", SPECS / "svm.hog", "--data", f"X,y={tiny_svm}")
    assert res.returncode == 0, res.stderr
    no_traceback(res)
    out = res.stdout
    # terms {0,2} {2} {1} {0,3} (zero-based): Omega 2, Delta 2/4, rho 3/4
    assert "4 terms" in out
    assert "Omega = 2 " in out
    assert "Delta = 0.5 " in out
    assert "rho   = 0.75 " in out
    assert "exact" in out
    assert "speed-up" in out


def test_analyze_sampled(hogwildc, tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(300):
        cols = sorted(rng.choice(np.arange(1, 200), size=3, replace=False))
        lines.append("1 " + " ".join(f"{c}:1" for c in cols))
    path = tmp_path / "rows.svm"
    path.write_text("\n".join(lines) + "\n")
    res = hogwildc("analyze", SPECS / "svm.hog", "--data", f"X,y={path}", "--sample", "50")
    assert res.returncode == 0, res.stderr
    assert "sampled" in res.stdout


def test_analyze_bad_data(hogwildc, tmp_path, tiny_svm):
    res = hogwildc("analyze", SPECS / "svm.hog", "--data", f"X,y={tmp_path / 'none.svm'}")
    assert res.returncode == 1
    no_traceback(res)
    assert "none.svm" in one_error_line(res)
    res = hogwildc("analyze", SPECS / "svm.hog", "--data", f"Z,y={tiny_svm}")
    assert res.returncode == 1
    no_traceback(res)
    assert "'Z'" in one_error_line(res)
    res = hogwildc("analyze", SPECS / "svm.hog", "--data", "X,y")
    assert res.returncode == 1
    no_traceback(res)


# ------------------------------------------------------------------ the compiler pipeline


@pytest.fixture
def pipeline():
    pytest.importorskip("hogwild_dsl.jit")


def test_compile_then_import(hogwildc, tmp_path, pipeline):
    out = tmp_path / "gen"
    res = hogwildc("compile", SPECS / "svm.hog", SPECS / "mc.hog", "-o", out,
                   "--const", "rank=4")
    assert res.returncode == 0, res.stderr
    no_traceback(res)
    assert "wrote" in res.stdout
    assert (out / "svm.py").exists() and (out / "mc.py").exists()
    assert (out / "svm_kernels.pyx").exists()
    code = ("import gen.svm, gen.mc; gen.mc.Trainer(epochs=0); "
            "assert 'model svm' in gen.svm.SPEC; print(gen.svm.gradients())")
    imp = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert imp.returncode == 0, imp.stderr


def test_compile_bad_spec(hogwildc, tmp_path, pipeline):
    bad = tmp_path / "bad.hog"
    bad.write_text(BAD_SPEC)
    res = hogwildc("compile", bad, "-o", tmp_path / "gen")
    assert res.returncode == 1
    no_traceback(res)
    assert "^" in res.stderr


def test_train_writes_params_and_plot(hogwildc, tmp_path, tiny_svm, pipeline):
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={tiny_svm}", "--epochs", "4",
                   "--threads", "2", "--step", "0.2", "--seed", "3",
                   "--out", tmp_path / "w.npz", "--plot", tmp_path / "curve.png")
    assert res.returncode == 0, res.stderr
    no_traceback(res)
    assert "epoch" in res.stdout and "objective" in res.stdout
    table = [ln.split() for ln in res.stdout.splitlines() if ln.split()[:1] in (["1"], ["4"])]
    assert len(table) == 2 and table[1][-1] == format(0.2 * 0.9 ** 3, ".4g")
    with np.load(tmp_path / "w.npz") as f:
        assert f["w"].shape == (4,)
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_default_out_and_sync(hogwildc, tmp_path, tiny_svm, pipeline):
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={tiny_svm}", "--epochs", "2",
                   "--sync", "lock", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "svm_params.npz").exists()


def test_train_errors(hogwildc, tmp_path, tiny_svm, pipeline):
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X={tiny_svm}", "-q")
    assert res.returncode == 1
    no_traceback(res)
    assert "'y'" in res.stderr
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={tiny_svm}", "-q",
                   "--out", tmp_path / "nowhere" / "p.npz")
    assert res.returncode == 1
    no_traceback(res)
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={tiny_svm}", "--sync", "none")
    assert res.returncode == 2
    res = hogwildc("train", SPECS / "svm.hog", "--data", f"X,y={tiny_svm}", "--step", "-1")
    assert res.returncode == 2


def test_train_divergence_is_reported(hogwildc, tmp_path, pipeline):
    ratings = tmp_path / "r.csv"
    ratings.write_text("u,v,rating\n0,0,5\n0,1,4\n1,0,3\n1,1,1\n2,1,5\n")
    res = hogwildc("train", SPECS / "mc.hog", "--data", f"r={ratings}", "--step", "1e4",
                   "--epochs", "3", "-q", "--const", "rank=2")
    assert res.returncode == 1
    no_traceback(res)
    assert "diverged" in res.stderr


def test_demo_tiny(hogwildc, pipeline):
    res = hogwildc("demo", "--scale", "tiny", "--threads", "2", timeout=900)
    assert res.returncode == 0, res.stderr + res.stdout
    no_traceback(res)
    out = res.stdout
    for needle in ("RCV1-like SVM", "Netflix-like MC", "DBLife-like cuts", "Abdomen-like cuts",
                   "rho", "Delta", "speed-up", "lock 2t", "test accuracy", "test RMSE"):
        assert needle in out


def test_shipped_spec_by_name(hogwildc, tmp_path):
    """`hogwildc check svm` reads the shipped spec; a file of that name in the folder wins."""
    res = hogwildc("check", "svm")
    assert res.returncode == 0, res.stderr
    assert "model svm" in res.stdout
    (tmp_path / "svm").write_text("model mine\ndim a\ndata y[a] : real\nparam p[a]\n"
                                 "for i in a:\n    loss (p[i] - y[i])^2\n")
    res = hogwildc("check", "svm")
    assert res.returncode == 0, res.stderr
    assert "model mine" in res.stdout
    res = hogwildc("check", "no_such_spec")
    assert res.returncode == 1
    one_error_line(res)
    assert "shipped: " in res.stderr and "svm" in res.stderr


def test_new_forms_on_the_command_line(hogwildc, tmp_path):
    """Scalar data inline, `check` printing a sample line, and a spec with a sample line
    trained from the command line."""
    import scipy.sparse as sp
    from test_new_forms_check import BPR
    r = sp.random(8, 5, density=0.5, random_state=1, format="coo")
    sp.save_npz(tmp_path / "r.npz", r)
    res = hogwildc("train", SPECS / "funksvd.hog", "--data", f"r={tmp_path / 'r.npz'}",
                   "--data", "mu=3.5", "--epochs", "2", "-q", "--const", "rank=2")
    assert res.returncode == 0, res.stderr
    (tmp_path / "mu.csv").write_text("mu\n3.5\n")      # a scalar in a one-cell file
    res = hogwildc("train", SPECS / "funksvd.hog", "--data", f"r={tmp_path / 'r.npz'}",
                   "--data", f"mu={tmp_path / 'mu.csv'}", "--epochs", "2", "-q",
                   "--const", "rank=2", "--out", tmp_path / "p.npz")
    assert res.returncode == 0, res.stderr
    no_train_line = BPR.replace("train optimizer adagrad, step 0.05, epochs 30\n", "")
    (tmp_path / "bpr.hog").write_text(no_train_line)
    res = hogwildc("check", tmp_path / "bpr.hog")
    assert res.returncode == 0 and "sample j: drawn from item uniformly" in res.stdout
    assert "d/dQ[j, k_k] = " in res.stdout
    res = hogwildc("train", tmp_path / "bpr.hog", "--data", f"seen={tmp_path / 'r.npz'}",
                   "--epochs", "2", "--out", tmp_path / "bpr.npz")
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "bpr.npz")["Q"].shape == (5, 32)


def test_user_specs_from_files_as_users_have_them(hogwildc, tmp_path):
    """A user's own specs trained from files: two weighted triplet CSVs (with a header) for
    one entry block, a dense CSV table with scalar data inline, and an svmlight file written
    by scikit-learn's default (zero-based indices) refused with a hint saying so."""
    from sklearn.datasets import dump_svmlight_file
    from test_user_objectives import SPECS as USER, make_data
    d = make_data("glove")
    for name in ("logx", "fx"):
        m = d[name]
        np.savetxt(tmp_path / f"{name}.csv", np.c_[m.row, m.col, m.data], delimiter=",",
                   fmt=["%d", "%d", "%.8f"], header="word,context,value", comments="")
    (tmp_path / "glove.hog").write_text(USER["glove"])
    res = hogwildc("train", tmp_path / "glove.hog", "--data", f"logx={tmp_path / 'logx.csv'}",
                   "--data", f"fx={tmp_path / 'fx.csv'}", "--epochs", "3", "-q",
                   "--out", tmp_path / "glove.npz")
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "glove.npz")["W"].shape == (30, 8)
    d = make_data("quantile")
    np.savetxt(tmp_path / "X.csv", d["X"], delimiter=",")
    np.savetxt(tmp_path / "y.csv", d["y"])
    (tmp_path / "quantile.hog").write_text(USER["quantile"])
    res = hogwildc("train", tmp_path / "quantile.hog", "--data", f"X={tmp_path / 'X.csv'}",
                   "--data", f"y={tmp_path / 'y.csv'}", "--data", "tau=0.8", "--epochs", "2",
                   "-q", "--out", tmp_path / "q.npz")
    assert res.returncode == 0, res.stderr
    d = make_data("huber")      # scikit-learn's default dump is zero-based: read as such
    (tmp_path / "huber.hog").write_text(USER["huber"])
    params = {}
    for base, zero in (("zero", True), ("one", False)):
        dump_svmlight_file(d["X"], d["y"], str(tmp_path / f"{base}.svm"), zero_based=zero)
        res = hogwildc("train", tmp_path / "huber.hog", "--data",
                       f"X,y={tmp_path / f'{base}.svm'}", "--epochs", "2", "--threads", "1",
                       "--step", "0.01", "-q", "--out", tmp_path / f"{base}.npz")
        assert res.returncode == 0, res.stderr
        assert ("zero-based" in res.stderr) == zero
        params[base] = np.load(tmp_path / f"{base}.npz")["w"]
    assert params["zero"].shape == (d["X"].shape[1],)
    np.testing.assert_array_equal(params["zero"], params["one"])


def test_a_first_build_is_announced_and_quiet_hides_it(hogwildc, tmp_path, tiny_svm):
    """A spec's first build takes seconds: hogwildc says so on stderr (jit.log at INFO), once;
    a cached spec builds nothing and -q says nothing."""
    spec = tmp_path / "firstbuild.hog"
    spec.write_text("model firstbuildnote\ndim example, feature\n"
                    "data X[example, feature] : sparse\ndata y[example] : sign\n"
                    "param w[feature] = 0\nfor i in example:\n"
                    "    loss softplus(-y[i] * dot(X[i], w))\n    reg l2(0.5) on w[X[i]]\n")
    first = hogwildc("train", spec, "--data", f"X,y={tiny_svm}", "--epochs", "1")
    assert first.returncode == 0, first.stderr
    notes = [ln for ln in first.stderr.splitlines() if "model 'firstbuildnote'" in ln]
    assert len(notes) == 2, first.stderr
    assert notes[0].startswith("hogwildc: building") and notes[1].startswith("hogwildc: built")
    again = hogwildc("train", spec, "--data", f"X,y={tiny_svm}", "--epochs", "1")
    assert again.returncode == 0 and "building" not in again.stderr
    spec.write_text(spec.read_text().replace("l2(0.5)", "l2(0.25)"))
    quiet = hogwildc("train", spec, "--data", f"X,y={tiny_svm}", "--epochs", "1", "-q")
    assert quiet.returncode == 0 and "building" not in quiet.stderr, quiet.stderr
