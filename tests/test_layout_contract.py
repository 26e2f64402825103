"""The layout contract (issue 14, item 2): lower emits one table of every array and size a
kernel reads (what it holds, its C type, its shape in dims); the runtime fills it by walking
that table, and the Kernel refuses a missing or mis-shaped array before any C runs."""
import ast
import re

import numpy as np
import pytest
import scipy.sparse as sp

import hogwild_dsl
from hogwild_dsl import HogwildError, runtime
from hogwild_dsl.emit import emit
from hogwild_dsl.lower import ROLES, layout
from conftest import ROOT, SPECS

SHIPPED = sorted(p.stem for p in SPECS.glob("*.hog"))
CTYPES = {"param": "real*", "data": "real*", "index": "int64_t*", "indptr": "int64_t*",
          "indices": "int32_t*", "values": "real*", "rows": "int32_t*", "maxnnz": "int64_t",
          "acc": "real*", "l1u": "real*", "l1q": "real*", "alias_p": "double*",
          "alias_i": "int64_t*", "optimizer": "int64_t", "nterms": "int64_t", "dim": "int64_t",
          "const": "int64_t", "draw_key": "int64_t"}


def _literal(pyx: str, name: str):
    """The Python literal a generated module assigns to `name` (LAYOUT, REPLICAS, the
    frozensets of TRAIN_ARRAYS, ...)."""
    if name == "LAYOUT":
        return ast.literal_eval(pyx.split("\nLAYOUT = ", 1)[1].split("\n)\n", 1)[0] + "\n)")
    text = re.search(rf"^{name} = (.*?)\s+#", pyx, re.M)[1]
    if text.startswith("frozenset("):
        return frozenset(ast.literal_eval(text[len("frozenset("):-1]))
    return ast.literal_eval(text)


def _struct_members(pyx: str) -> list:
    block = pyx.split("cdef struct _Model:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split("#")[0].split()[-1] for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", SHIPPED)
def test_the_table_names_every_array_the_entry_points_take(name, dtype):
    """Every member of the generated struct is a LAYOUT entry (replica maps after them), every
    `M.<member>` the generated code reads is one, and each entry says what it holds, in the
    C type of its role and a shape over the spec's dims."""
    spec = hogwild_dsl.check((SPECS / f"{name}.hog").read_text())
    pyx = emit(spec, f"{name}_kernels", dtype=dtype)[f"{name}_kernels.pyx"]
    table = _literal(pyx, "LAYOUT")
    replicas = _literal(pyx, "REPLICAS")
    members = _struct_members(pyx)
    assert members == [f[0] for f in table] + [hot for _, hot in replicas]
    assert set(re.findall(r"\bM\.(\w+)", pyx)) <= set(members)
    real = {"float64": "double*", "float32": "float*"}[dtype]
    extents = set(spec.dims) | {c for c, _ in spec.consts}
    keys = set()
    for entry, field in zip(table, layout(spec, dtype)):
        name_, ctype, key, value, role, of, shape = entry
        assert (name_, ctype, key, value, role, of, shape) == \
            (field.name, field.ctype, field.key, field.value, field.role, field.of, field.shape)
        assert role in ROLES and (role == "const" or role in runtime.FILL)
        if role == "deg":       # a whole-param split's 1/deg is a number, a table is real
            want = "double" if not shape else real
        else:
            want = CTYPES[role].replace("real*", real)
        assert ctype == want
        for extent in shape:
            assert extent.removesuffix("+1") in extents or extent.startswith("nnz ") and \
                spec.datum(extent[4:]).kind == "sparse"
        assert key not in keys
        keys.add(key)
    for needs in ("TRAIN_ARRAYS", "PREDICT_ARRAYS", "STATE_ARRAYS"):
        assert _literal(pyx, needs) <= keys


def _synthetic_data(spec, seed=0):
    """Small data of any spec, read off its declarations (a companion of an entry block's
    data stores its entries)."""
    rng = np.random.default_rng(seed)
    consts = dict(spec.consts)
    size = {dim: consts.get(dim, 5 + k) for k, dim in enumerate(spec.dims)}
    companions = runtime._entry_companions(spec)
    data = {}
    for d in sorted(spec.data, key=lambda d: d.name in companions):
        shape = tuple(size[dim] for dim in d.dims)
        if d.name in companions:
            m = data[companions[d.name]].copy()
            m.data = rng.uniform(0.2, 1.0, m.nnz)
            data[d.name] = m
        elif d.kind == "sparse":
            dense = rng.uniform(0.2, 1.0, shape) * (rng.random(shape) < 0.5)
            dense[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] = 0.5
            data[d.name] = sp.csr_matrix(dense)
        elif d.kind == "index":
            data[d.name] = rng.integers(0, size[d.of], shape)
        elif d.kind == "sign":
            data[d.name] = rng.choice([-1.0, 1.0], shape)
        elif d.kind == "binary":
            data[d.name] = rng.integers(0, 2, shape).astype(float)
        else:
            data[d.name] = rng.uniform(0.1, 1.0, shape)
    return data


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
@pytest.mark.parametrize("name", SHIPPED)
def test_the_runtime_fills_the_table_and_nothing_else(load_spec, name, optimizer):
    """fit's arrays and sizes are exactly the table's keys (AdaGrad's state only under an
    update rule that reads it); each missing array the training reads, each one a value
    short, a block's terms past its rows or entries, a longest row shorter than the data's
    and an unknown update rule are errors naming them, raised before any C runs (the params
    stay as they were)."""
    mod = load_spec(name)
    kernel = mod.Trainer.kernels.Kernel
    data = _synthetic_data(mod.Trainer.spec)
    t = mod.Trainer(threads=1, epochs=1, step=0.01, seed=0, optimizer=optimizer)
    arrays, sizes = t.layout(data)
    want = {f.key for f in kernel.fields if f.value is None and
            (f.role != "acc" or optimizer != "sgd")}
    assert set(arrays) | set(sizes) == want
    assert not set(arrays) & set(sizes)
    before = {k: v.copy() for k, v in t.params.items()}
    train = mod.Trainer.kernels.TRAIN_ARRAYS | (
        mod.Trainer.kernels.STATE_ARRAYS if optimizer != "sgd" else frozenset())
    order = np.arange(1, dtype=np.int64)
    for f in kernel.fields:
        if f.key not in train:
            continue
        with pytest.raises(HogwildError, match=f"'{re.escape(f.key)}' .*was not given"):
            kernel({k: v for k, v in arrays.items() if k != f.key}, sizes).epoch(
                order, 0, 0.01, 1, 0)
        if arrays[f.key].ndim:
            short = {**arrays, f.key: arrays[f.key].reshape(-1)[:-1].copy()}
            with pytest.raises(HogwildError, match=f"array '{re.escape(f.key)}' .*(has shape|must be)"):
                kernel(short, sizes).objective_sum(1)
    for f in kernel.fields:        # the sizes the kernels follow: terms, scratch
        wrong = {"nterms": sizes.get(f.key, 0) + 1, "maxnnz": sizes.get(f.key, 0) - 1}.get(f.role)
        if wrong is not None and wrong >= 0:
            with pytest.raises(HogwildError, match=f"size '{re.escape(f.key)}' .* is {wrong}"):
                kernel(arrays, {**sizes, f.key: wrong}).objective_sum(1)
    with pytest.raises(HogwildError, match="update rules are 0, 1 and 2"):
        kernel(arrays, {**sizes, kernel.key("optimizer"): 3})
    for k, v in t.params.items():
        np.testing.assert_array_equal(v, before[k])
    run = kernel(arrays, sizes)
    run.epoch(np.arange(run.nterms, dtype=np.int64), 0, 0.01, 1, 0)
    assert np.isfinite(run.objective_sum(1))


def test_a_wrong_dtype_or_a_missing_size_is_an_error_naming_it(load_spec):
    mod = load_spec("svm")
    kernel = mod.Trainer.kernels.Kernel
    data = _synthetic_data(mod.Trainer.spec)
    arrays, sizes = mod.Trainer(threads=1, epochs=1, step=0.01).layout(data)
    for f in kernel.fields:
        if f.is_pointer and f.key in arrays:
            wrong = arrays[f.key].astype(np.int32 if f.ctype != "int32_t*" else np.int64)
            with pytest.raises(HogwildError, match=f"'{re.escape(f.key)}' .*must be a C-contiguous"):
                kernel({**arrays, f.key: wrong}, sizes)
        elif not f.is_pointer and f.value is None:
            with pytest.raises(HogwildError, match=f"size '{re.escape(f.key)}' .*was not given"):
                kernel(arrays, {k: v for k, v in sizes.items() if k != f.key})
    frozen = arrays[kernel.key("param", "w")].copy()
    frozen.flags.writeable = False
    with pytest.raises(HogwildError, match="writable"):
        kernel({**arrays, kernel.key("param", "w"): frozen}, sizes)


def test_no_array_name_is_formatted_outside_lower_and_kernel():
    """Beside the behavioural tests above: the runtime finds every array through the table
    (Kernel.key), so no module but lower (which names them) spells a key's suffix."""
    pattern = re.compile(r"__(indptr|indices|data|rows|acc|l1[uq]|alias_[pi])\b|"
                         r"[\"'](nterms_|n_|maxnnz_)[{\"']")
    for path in sorted((ROOT / "hogwild_dsl").glob("*.py")):
        if path.name in ("lower.py", "kernel.py"):
            continue
        hits = [line for line in path.read_text().splitlines() if pattern.search(line)]
        assert not hits, f"{path.name}: {hits}"


CLASH = """model clash
dim ex, feat
data X[ex, feat] : sparse
data X__indptr[ex] : real
data X__indices[ex] : index(feat)
param w[feat] = 0.5
param X__data = 0.25
for i in ex:
    loss (dot(X[i], w) + X__data * w[X__indices[i]] - X__indptr[i])^2
"""


def test_user_names_that_spell_a_layout_part_keep_their_own_arrays(load_spec):
    """Data and params named like another datum's CSR parts are bound as themselves: the
    keys of derived arrays are the generated code's names, which no user name can be."""
    mod = load_spec(text=CLASH)
    X = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0], [0.5, 0.0, 0.0],
                                [0.0, 0.0, 1.5]]))
    y, pick = np.array([1.0, -2.0, 0.5, 3.0]), np.array([2, 0, 1, 1])
    data = {"X": X, "X__indptr": y, "X__indices": pick}
    t = mod.Trainer(threads=1, epochs=0, seed=0).fit(**data)
    w, b = t.params["w"], float(t.params["X__data"])
    want = np.mean((X @ w + b * w[pick] - y) ** 2)
    assert t.objective(**data) == pytest.approx(want, rel=1e-12)
    t.epochs, t.step = 3, 0.01
    t.fit(**data)
    assert t.objective(**data) < want
