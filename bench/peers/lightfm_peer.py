"""LightFM (Kula, 2015) as a BPR yardstick, built from its PyPI sdist on first use.

``pip install lightfm`` fails on Python 3.11 with current setuptools: the sdist's setup.py
does ``__builtins__.__LIGHTFM_SETUP__ = True``, and ``__builtins__`` is a dict when
setuptools' build backend runs it ("'dict' object has no attribute '__LIGHTFM_SETUP__'").
So ``load()`` fetches the sdist (``lightfm-1.17.tar.gz``, sha256 checked) from PyPI into
``bench/peers/build/``, rewrites that one line to ``builtins.__LIGHTFM_SETUP__ = True``,
builds the OpenMP extension in place with the sdist's own flags (``python setup.py
build_ext --inplace``: ``-ffast-math -march=native``, ``-fopenmp``) and imports the package
from there. Nothing else of the sdist is changed.

``bpr(train, epochs, threads, learning_rate, k=32)`` -> ``(seconds, user_f, item_f)``: a
``LightFM(loss="bpr", no_components=k)`` fit (its default AdaGrad schedule) on the
clicks; ``seconds`` is ``fit`` only. The factors returned carry LightFM's item biases as one
more column (the user side gets a column of ones), so that ``user_f @ item_f.T`` ranks as
``LightFM.predict`` does (its user bias is constant per user and cannot change a ranking).
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import time
import urllib.request

import numpy as np
import scipy.sparse as sp

from ._build import BUILD_DIR, _locked

VERSION = "1.17"
SDIST_URL = ("https://files.pythonhosted.org/packages/1f/96/"
             "5ec230f5c27811534af0faaa8525f11c1000ee1c24c8a82c0546d0724aea/lightfm-1.17.tar.gz")
SDIST_SHA256 = "2b77ada182ccd768a8d7643ab3cfcd8b6e855db09087f7cc7329bd63316697a8"
SETUP_LINE = "__builtins__.__LIGHTFM_SETUP__ = True"


def load():
    """The ``lightfm`` package: the installed one if any, else the one built here."""
    try:
        import lightfm
        return lightfm
    except ImportError:
        pass
    src = BUILD_DIR / f"lightfm-{VERSION}"
    with _locked("lightfm"):
        if not list(src.glob("lightfm/_lightfm_fast_openmp*.so")):
            _build(src)
    sys.path.insert(0, str(src))
    import lightfm
    return lightfm


def _build(src) -> None:
    tar = BUILD_DIR / f"lightfm-{VERSION}.tar.gz"
    if not tar.exists():
        with urllib.request.urlopen(SDIST_URL, timeout=60) as r:
            blob = r.read()
        if hashlib.sha256(blob).hexdigest() != SDIST_SHA256:
            raise RuntimeError(f"lightfm sdist from {SDIST_URL}: sha256 mismatch")
        tar.write_bytes(blob)
    with tarfile.open(tar) as tf:
        tf.extractall(BUILD_DIR, filter="data")
    setup = src / "setup.py"
    text = setup.read_text()
    if SETUP_LINE in text:
        setup.write_text(text.replace(SETUP_LINE,
                                      "import builtins; builtins.__LIGHTFM_SETUP__ = True"))
    res = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=src,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"building lightfm failed:\n{res.stderr[-3000:]}")


def bpr(train, epochs: int, threads: int, learning_rate: float, k: int = 32, seed: int = 0):
    LightFM = load().LightFM
    model = LightFM(no_components=k, loss="bpr", learning_rate=learning_rate,
                    random_state=seed)
    clicks = sp.coo_matrix(train, dtype=np.float32)
    began = time.perf_counter()
    model.fit(clicks, epochs=epochs, num_threads=threads)
    seconds = time.perf_counter() - began
    users = np.hstack([model.user_embeddings, np.ones((train.shape[0], 1), np.float32)])
    items = np.hstack([model.item_embeddings, model.item_biases[:, None]])
    return seconds, users, items
