"""Every example of the language checks, compiles and trains: the shipped specs (LANGUAGE.md's
examples, verbatim), the examples of docs/language.md, and, where the design reference is at
hand (../shared/LANGUAGE.md beside the repository; absent in CI), every example block in it."""
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from hogwild_dsl.check import check
from conftest import ROOT, SPECS

SHARED = ROOT.parent / "shared" / "LANGUAGE.md"
if not SHARED.exists():
    SHARED = Path("/work/shared/LANGUAGE.md")


def blocks_of(path: Path) -> list[str]:
    """The fenced code blocks of a markdown file that are whole specs."""
    found = re.findall(r"```[a-z]*\n(.*?)```", path.read_text(), re.S)
    return [b for b in found if re.search(r"^model \w+", b, re.M)]


def fake_data(spec, size=6, seed=0) -> dict:
    """Small random data for every datum of a checked spec: every dim has `size` entries."""
    rng = np.random.default_rng(seed)
    extent = {**{d: size for d in spec.dims}, **dict(spec.consts)}
    data = {}
    for d in spec.data:
        shape = tuple(extent[x] for x in d.dims)
        if d.kind == "sparse":
            m = sp.random(*shape, density=0.4, random_state=seed, format="csr")
            m.data = 0.2 + 0.8 * m.data
            data[d.name] = m
        elif d.kind == "index":
            values = rng.integers(0, extent[d.of], shape)
            values[0] = extent[d.of] - 1
            data[d.name] = values
        elif d.kind == "sign":
            data[d.name] = rng.choice([-1.0, 1.0], shape)
        elif d.kind == "binary":
            data[d.name] = rng.integers(0, 2, shape).astype(float)
        else:
            data[d.name] = rng.uniform(0.1, 1.0, shape) if shape else 1.5
    return data


def trains(mod, text):
    spec = check(text)
    data = fake_data(spec)
    t = mod.Trainer(threads=2, epochs=2, step=0.01).fit(**data)
    assert np.isfinite(t.objective(**data))
    block = next((b for b in spec.blocks if b.predict is not None), None)
    if block is not None:
        out = t.predict(**data)
        terms = 6 if block.kind == "rows" else data[block.over].nnz
        width = () if block.predict_var is None else \
            (dict(spec.consts).get(block.predict_var.dim, 6),)
        assert out.shape == (terms,) + width and np.all(np.isfinite(out))


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.hog")), ids=lambda p: p.stem)
def test_shipped_spec_trains(load_spec, path):
    trains(load_spec(path.stem), path.read_text())


DOC_EXAMPLES = blocks_of(ROOT / "docs" / "language.md")


@pytest.mark.parametrize("text", DOC_EXAMPLES,
                         ids=[re.search(r"model (\w+)", t).group(1) for t in DOC_EXAMPLES])
def test_docs_example_trains(load_spec, text):
    trains(load_spec(text=text), text)


def test_the_newer_examples_are_shipped_verbatim():
    for name in ("softmax", "bpr", "funksvd"):
        assert (SPECS / f"{name}.hog").is_file(), name
    if SHARED.exists():
        by_model = {re.search(r"model (\w+)", t).group(1): t for t in blocks_of(SHARED)}
        for name in ("softmax", "bpr", "funksvd"):
            assert (SPECS / f"{name}.hog").read_text() == by_model[name], name


@pytest.mark.skipif(not SHARED.exists(), reason="the design reference is not beside the repo")
@pytest.mark.parametrize("index", range(8))
def test_language_md_example_trains(load_spec, index):
    texts = blocks_of(SHARED)
    if index >= len(texts):
        pytest.skip("fewer examples")
    trains(load_spec(text=texts[index]), texts[index])
