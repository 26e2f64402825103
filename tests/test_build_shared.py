"""Cython's runtime code (memoryviews, conversions), the same for every spec, is compiled once
per build environment and cache into one shared extension that every kernel imports, and a
kernel's own module holds no typed memoryview and no extension type (issue 14: a first compile
builds only the spec's own code)."""
import os
import subprocess
import sys
import textwrap

from hogwild_dsl import build

FRESH_PROCESS = textwrap.dedent("""
    import sys, numpy as np, scipy.sparse as sp
    import hogwild_dsl
    from hogwild_dsl import build
    svm, mc = hogwild_dsl.load("svm"), hogwild_dsl.load("mc", consts={"rank": 2})
    X = sp.random(30, 8, density=0.4, format="csr", random_state=0)
    t = svm.Trainer(threads=2, epochs=2).fit(X=X, y=np.where(np.arange(30) % 2, 1.0, -1.0))
    r = sp.random(6, 5, density=0.5, format="coo", random_state=1)
    u = mc.Trainer(threads=2, epochs=2).fit(r=r)
    print(sys.modules[build.SHARED_UTILITY].__file__)
    print(t.history[-1]["objective"], u.history[-1]["objective"])
""")


def test_every_kernel_imports_one_shared_build_of_cythons_runtime_code(tmp_path):
    env = {**os.environ, "HOGWILD_CACHE_DIR": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    shared_file, objectives = res.stdout.splitlines()[-2:]
    shared = [p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith("cyutility-")]
    assert len(shared) == 1                              # built once for both specs
    assert shared_file == str(shared[0] / f"_cyutility{build.EXT_SUFFIX}")
    assert all(float(x) > 0 for x in objectives.split())
    definition = "static PyObject *__pyx_memoryview_new(PyObject *__pyx_v_o"
    assert definition in (shared[0] / "_cyutility.c").read_text()
    kernels = [c for c in tmp_path.glob("*/*_kernels.c")]
    assert {c.name for c in kernels} == {"svm_kernels.c", "mc_kernels.c"}
    for c in kernels:                                    # only the spec's own code
        text = c.read_text()
        assert definition not in text and build.SHARED_UTILITY in text
        # no typed memoryview, no extension type: what is the same for every spec is
        # hogwild_dsl/kernel.py's plain Python
        assert "memviewslice" not in text and "__pyx_tp_new" not in text
