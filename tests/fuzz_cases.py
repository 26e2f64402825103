"""The reliability fuzz of issue 13: every way to hand wrong data to fit/objective/predict, and
malformed files for data.py and Trainer.load. tests/test_hardening.py runs a sample on every
test run; bench/bench_reliability.py runs them all and writes the counts.

A case is a string id, rebuilt deterministically in a child process (`child`), which prints
one JSON line per case; `run` drives children and restarts one after a crash or a hang, so the
case that crashed is counted, not the test run lost. Outcomes:
  clean          a HogwildError with a one-line message where the input is wrong
  ok             accepted, and the result equals the result on the same data in canonical form
  crash          the interpreter died (segfault, abort)
  hang           no answer within the time limit
  silently_wrong accepted wrong input, or a result that differs from the canonical one
  wrong_type     any exception that is not a HogwildError
  refused_valid  a HogwildError for an input that is valid
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUTCOMES = ("clean", "ok", "crash", "hang", "silently_wrong", "wrong_type", "refused_valid")

# the shipped specs: the test session builds them anyway
SPECS = {name: (ROOT / "specs" / f"{name}.hog").read_text() for name in ("svm", "mc", "cuts")}
# spec -> (data name, kind) the fuzz mutates
TARGETS = {"svm": [("X", "sparse"), ("y", "sign")], "mc": [("r", "sparse")],
           "cuts": [("w", "sparse"), ("c", "dense")]}
CALLS = ("fit", "objective", "predict")


def base_data(spec: str) -> dict:
    import scipy.sparse as sp
    rng = np.random.default_rng(7)
    if spec == "svm":
        X = sp.random(20, 10, density=0.3, format="csr", random_state=1)
        return {"X": X, "y": np.where(rng.random(20) < 0.5, -1.0, 1.0)}
    if spec == "mc":
        r = sp.random(16, 12, density=0.3, format="csr", random_state=2)
        r.data = rng.normal(size=r.nnz)
        return {"r": r}
    w = sp.random(12, 12, density=0.3, format="csr", random_state=3)
    return {"w": w, "c": rng.random((12, 4))}


# ---------------------------------------------------------------- mutations of one value
# each: f(good, rng) -> (value, reference, expect); expect "error", "ok" or "either"


def _sparse_mutations():
    import scipy.sparse as sp

    def corrupt(change, fmt="csr"):
        def f(m, rng):
            v = m.asformat(fmt).copy() if fmt != "csr_array" else sp.csr_array(m).copy()
            change(v, rng)
            return v, None, "error"
        return f

    def valid(make, ref=None):
        def f(m, rng):
            return make(m.copy()), (ref(m.copy()) if ref else m), "ok"
        return f

    def set_(attr, index, value):
        def change(v, rng):
            arr = getattr(v, attr)
            arr[index if index >= 0 else arr.size + index] = value(v) if callable(value) else value
        return change

    def assign(attr, make):
        return lambda v, rng: setattr(v, attr, make(getattr(v, attr), v))

    def rounded(m):
        m = m.copy()
        m.data = np.round(m.data * 10)
        return m

    def readonly(m):
        for a in (m.data, m.indices, m.indptr):
            a.flags.writeable = False
        return m

    def with_duplicates(m):
        c = m.tocoo()
        half = c.data / 2
        return sp.coo_matrix((np.concatenate([half, half]), (np.concatenate([c.row, c.row]),
                              np.concatenate([c.col, c.col]))), shape=m.shape)

    def unsorted(m):
        m = m.copy()
        for i in range(m.shape[0]):
            a, b = m.indptr[i], m.indptr[i + 1]
            m.indices[a:b] = m.indices[a:b][::-1].copy()
            m.data[a:b] = m.data[a:b][::-1].copy()
        m.has_sorted_indices = False
        return m

    def strided(m):
        data = np.repeat(m.data, 2)[::2]
        return sp.csr_matrix((data, m.indices, m.indptr), shape=m.shape)

    return {
        "indptr_10e7": corrupt(set_("indptr", 3, 10**7)),
        "indptr_decreasing": corrupt(set_("indptr", 3, lambda v: v.indptr[4] + 1)),
        "indptr_first_nonzero": corrupt(set_("indptr", 0, 1)),
        "indptr_last_past_nnz": corrupt(set_("indptr", -1, lambda v: v.indptr[-1] + 3)),
        "indptr_negative": corrupt(set_("indptr", 2, -5)),
        "indptr_short": corrupt(assign("indptr", lambda a, v: a[:-2])),
        "indptr_long": corrupt(assign("indptr", lambda a, v: np.append(a, a[-1]))),
        "indptr_float": corrupt(assign("indptr", lambda a, v: a.astype(float))),
        "indptr_2d": corrupt(assign("indptr", lambda a, v: a.reshape(1, -1))),
        "indices_negative": corrupt(set_("indices", 0, -1)),
        "indices_past_end": corrupt(set_("indices", 1, lambda v: v.shape[1])),
        "indices_10e9": corrupt(assign("indices", lambda a, v: a.astype(np.int64) + 10**9)),
        "indices_plus_2_32": corrupt(assign("indices", lambda a, v: a.astype(np.int64) + 2**32)),
        "indices_float": corrupt(assign("indices", lambda a, v: a.astype(float))),
        "indices_short": corrupt(assign("indices", lambda a, v: a[:-1])),
        "data_short": corrupt(assign("data", lambda a, v: a[:-1])),
        "data_nan": corrupt(set_("data", 0, np.nan)),
        "data_inf": corrupt(set_("data", -1, -np.inf)),
        "data_float16": corrupt(assign("data", lambda a, v: a.astype(np.float16))),
        "data_complex": corrupt(assign("data", lambda a, v: a + 1j)),
        "data_object": corrupt(assign("data", lambda a, v: a.astype(object))),
        "data_str": corrupt(assign("data", lambda a, v: a.astype(str))),
        "csc_indptr_10e7": corrupt(set_("indptr", 2, 10**7), "csc"),
        "csc_indices_past_end": corrupt(set_("indices", 0, 10**6), "csc"),
        "coo_row_past_end": corrupt(set_("row", 0, 10**6), "coo"),
        "coo_col_negative": corrupt(set_("col", 0, -3), "coo"),
        "coo_lengths_differ": corrupt(assign("row", lambda a, v: a[:-1]), "coo"),
        "coo_row_float": corrupt(lambda v, rng: setattr(v, "coords", (v.row + 0.5, v.col)),
                                 "coo"),
        "csr_array_indptr_10e7": corrupt(set_("indptr", 3, 10**7), "csr_array"),
        "lil_column_past_end": corrupt(lambda v, rng: (v.rows.__setitem__(0, [10**6]),
                                                       v.data.__setitem__(0, [1.0])), "lil"),
        "complex_matrix": lambda m, rng: (m.astype(np.complex128), None, "error"),
        "dense_with_nan": lambda m, rng: (np.full(m.shape, np.nan), None, "error"),
        "dense_object_none": lambda m, rng: (np.full(m.shape, None, dtype=object), None, "error"),
        "dense_str": lambda m, rng: (m.toarray().astype(str), None, "error"),
        "one_d": lambda m, rng: (m.toarray().ravel(), None, "error"),
        "three_d": lambda m, rng: (m.toarray()[None], None, "error"),
        "a_string": lambda m, rng: ("not data", None, "error"),
        "a_dict": lambda m, rng: ({"a": 1}, None, "error"),
        "ragged_list": lambda m, rng: ([[1.0, 2.0], [3.0]], None, "error"),
        "one_row_short": lambda m, rng: (m[:-1], None, "either"),   # valid for mc
        "csc": valid(lambda m: m.tocsc()),
        "coo": valid(lambda m: m.tocoo()),
        "lil": valid(lambda m: m.tolil()),
        "dok": valid(lambda m: m.todok()),
        "dia": valid(lambda m: m.todia()),
        "csr_array": valid(lambda m: sp.csr_array(m)),
        "coo_array": valid(lambda m: sp.coo_array(m)),
        "dense_array": valid(lambda m: m.toarray()),
        "dense_fortran": valid(lambda m: np.asfortranarray(m.toarray())),
        "dense_list": valid(lambda m: m.toarray().tolist()),
        "np_matrix": valid(lambda m: m.todense()),
        "float32": valid(lambda m: m.astype(np.float32), lambda m: m.astype(np.float32)),
        "int_values": valid(lambda m: rounded(m).astype(np.int64), rounded),
        "int64_indices": valid(lambda m: sp.csr_matrix((m.data, m.indices.astype(np.int64),
                                                        m.indptr.astype(np.int64)), m.shape)),
        "read_only": valid(readonly),
        "strided_values": valid(strided),
        "coo_duplicates": valid(with_duplicates),
        "unsorted_indices": valid(unsorted),
    }


def _dense_mutations(kind: str):
    def bad(make):
        return lambda a, rng: (make(a.copy()), None, "error")

    def valid(make, ref=None):
        return lambda a, rng: (make(a.copy()), ref(a.copy()) if ref else a, "ok")

    def readonly(a):
        a.flags.writeable = False
        return a

    def memmap(a):
        path = Path(tempfile.mkdtemp(dir=os.environ.get("HOGWILD_FUZZ_TMP"))) / "m.dat"
        m = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
        m[...] = a
        return m

    def with_nan(a):
        a.flat[0] = np.nan
        return a

    out = {
        "nan": bad(with_nan),
        "inf": bad(lambda a: a * np.inf),
        "short": bad(lambda a: a[:-1]),
        "extra_axis": bad(lambda a: a[None]),
        "object_none": bad(lambda a: np.full(a.shape, None, dtype=object)),
        "str": bad(lambda a: a.astype(str)),
        "complex": bad(lambda a: a + 0j),
        "a_dict": bad(lambda a: {"a": 1}),
        "empty": bad(lambda a: a[:0]),
        "list": valid(lambda a: a.tolist()),
        "float32": valid(lambda a: a.astype(np.float32), lambda a: a.astype(np.float32)),
        "read_only": valid(readonly),
        "strided": valid(lambda a: np.repeat(a, 2, axis=0)[::2]),
        "memmap": valid(memmap),
        "object_floats": valid(lambda a: a.astype(object)),
        "sparse_given": valid(lambda a: __import__("scipy.sparse").sparse.csr_matrix(
            a if a.ndim == 2 else a[None]) if a.ndim == 2 else a),
    }
    if kind == "sign":
        out.update({"zero_label": bad(lambda a: np.where(a > 0, 1.0, 0.0)),
                    "bool_labels": bad(lambda a: a > 0),
                    "int8": valid(lambda a: a.astype(np.int8))})
    else:
        out.update({"fortran": valid(np.asfortranarray), "float16": valid(
            lambda a: a.astype(np.float16), lambda a: a.astype(np.float16).astype(float))})
    return out


def _random_corruption(m, rng):
    """An index array made invalid at a random place, in a random sparse format."""
    fmt = rng.choice(["csr", "csc", "coo", "csr_array"])
    import scipy.sparse as sp
    v = sp.csr_array(m).copy() if fmt == "csr_array" else m.asformat(fmt).copy()
    if fmt == "coo":
        arr, limit = (v.row, v.shape[0]) if rng.random() < 0.5 else (v.col, v.shape[1])
        arr[rng.integers(arr.size)] = rng.choice([-1, limit, limit + rng.integers(1, 10**6),
                                                  -(2**31), 2**31 - 1])
        return v, None, "error"
    limit = v.shape[1] if fmt in ("csr", "csr_array") else v.shape[0]
    if rng.random() < 0.5 and v.indices.size:
        big = v.indices.astype(np.int64)
        big[rng.integers(big.size)] = rng.choice([-1, limit, limit + rng.integers(1, 10**6),
                                                  2**32 + int(rng.integers(limit)), -(2**31)])
        v.indices = big
    else:
        p = v.indptr.astype(np.int64)
        k = int(rng.integers(p.size))
        if k == 0:
            p[0] = rng.integers(1, 10**6)
        elif k == p.size - 1:
            p[k] = p[k] + rng.integers(1, 10**6) * rng.choice([-1, 1]) or p[k] + 1
            if p[k] >= p[k - 1] and p[k] == p[-1] and p[k] == v.indices.size:
                p[k] += 1
        else:
            p[k] = p[k + 1] + rng.integers(1, 10**7)
        v.indptr = p
    return v, None, "error"


def data_case_ids(n_random: int = 0, specs=SPECS) -> list[str]:
    ids = []
    for spec in specs:
        for name, kind in TARGETS[spec]:
            names = _sparse_mutations() if kind == "sparse" else _dense_mutations(kind)
            for call in CALLS:
                ids += [f"data|{spec}|{call}|{name}|{m}" for m in names]
                ids += [f"data|{spec}|{call}|{name}|random:{k}" for k in range(n_random)]
        for call in CALLS:
            ids += [f"data|{spec}|{call}|*|unknown_name", f"data|{spec}|{call}|*|missing"]
        ids += [f"data|{spec}|fit|*|param_{m}" for m in
                ("list_short", "nan", "strings", "none", "right_list", "not_a_dict")]
    return ids


# ---------------------------------------------------------------- files

SVMLIGHT = b"1 1:0.5 3:1.5\n-1 2:1 4:2 # comment\n1 qid:3 1:1 5:0.25\n"
FILE_CASES = {
    # name: (suffix, content, names, expected value or None, expect)
    "svm_good": (".svm", SVMLIGHT, ["X", "y"], None, "ok"),
    "svm_bom": (".svm", b"\xef\xbb\xbf" + SVMLIGHT, ["X", "y"], "svm_good", "ok"),
    "svm_crlf": (".svm", SVMLIGHT.replace(b"\n", b"\r\n"), ["X", "y"], "svm_good", "ok"),
    "svm_index_10e20": (".svm", b"1 1:1 100000000000000000000:1\n", ["X", "y"], None, "error"),
    "svm_index_2_31": (".svm", b"1 1:1 2147483649:1\n", ["X", "y"], None, "error"),
    "svm_one_feature": (".svm", b"1 1:1\n", ["X", "y"], None, "ok"),
    # a feature index 0: zero-based, as scikit-learn writes (its zero_based="auto")
    "svm_index_zero": (".svm", b"1 0:1\n", ["X", "y"], "svm_one_feature", "ok"),
    "svm_index_negative": (".svm", b"1 -3:1\n", ["X", "y"], None, "error"),
    "svm_value_nan": (".svm", b"1 1:nan\n", ["X", "y"], None, "either"),
    "svm_value_junk": (".svm", b"1 1:abc\n", ["X", "y"], None, "error"),
    "svm_label_junk": (".svm", b"yes 1:1\n", ["X", "y"], None, "error"),
    "svm_nul": (".svm", b"1 1:1\x00\n", ["X", "y"], None, "error"),
    "svm_binary": (".svm", bytes(range(256)) * 4, ["X", "y"], None, "error"),
    "svm_not_utf8": (".svm", b"1 1:1 \xff\xfe\n", ["X", "y"], None, "error"),
    "svm_empty": (".svm", b"", ["X", "y"], None, "error"),
    "svm_duplicate_index": (".svm", b"1 1:1 1:2\n", ["X", "y"], None, "error"),
    "mtx_good": (".mtx", b"%%MatrixMarket matrix coordinate real general\n3 4 2\n1 1 0.5\n3 4 2\n",
                 ["r"], None, "ok"),
    "mtx_out_of_range": (".mtx", b"%%MatrixMarket matrix coordinate real general\n3 4 1\n9 1 1\n",
                         ["r"], None, "error"),
    "mtx_count_wrong": (".mtx", b"%%MatrixMarket matrix coordinate real general\n3 4 5\n1 1 1\n",
                        ["r"], None, "error"),
    "mtx_huge_dims": (".mtx", b"%%MatrixMarket matrix coordinate real general\n"
                              b"100000000000000000000 4 1\n1 1 1\n", ["r"], None, "error"),
    # scipy's C++ reader read past the buffer on these (a segfault, found by this fuzz)
    "mtx_last_number_cut": (".mtx", b"%%MatrixMarket matrix coordinate real general\n3 4 2\n"
                                    b"1 1 0.5\n3 4 2\x1a", ["r"], None, "error"),
    "mtx_array_exponent_cut": (".mtx", b"%%MatrixMarket matrix array real general\n2 2\n1.5\n"
                                       b"2\n3\n4e", ["r"], None, "either"),  # scipy reads 4e as 4
    "mtx_bad_header": (".mtx", b"%%MatrixMarket nonsense\n1 1 1\n", ["r"], None, "error"),
    "mtx_complex": (".mtx", b"%%MatrixMarket matrix coordinate complex general\n2 2 1\n1 1 1 1\n",
                    ["r"], None, "error"),
    "csv_triplets_good": (".csv", b"u,v,value\n0,1,2.5\n2,0,1\n", ["r"], None, "ok"),
    "csv_triplets_negative_id": (".csv", b"0,-1,2.5\n", ["r"], None, "error"),
    "csv_triplets_huge_id": (".csv", b"0,100000000000000000000,1\n", ["r"], None, "error"),
    "csv_triplets_float_id": (".csv", b"0.5,1,1\n", ["r"], None, "error"),
    "csv_ragged": (".csv", b"1,2,3\n4,5\n", ["c"], None, "error"),
    "csv_header_only": (".csv", b"a,b,c\n", ["c"], None, "error"),
    "csv_bom": (".csv", b"\xef\xbb\xbf1,2\n3,4\n", ["c"], None, "ok"),
    "csv_nan": (".csv", b"1,nan\n3,4\n", ["c"], None, "either"),
}


def file_case_ids(n_random: int = 0) -> list[str]:
    ids = [f"file|{name}" for name in FILE_CASES]
    ids += ["file|npz_corrupt_csr", "file|npz_object_array", "file|npy_object",
            "file|npz_truncated", "file|npz_int64_indices_plus_2_32", "file|npy_truncated"]
    ids += ["params|truncated", "params|empty", "params|text", "params|npy", "params|zip",
            "params|no_meta", "params|meta_junk", "params|other_spec", "params|nan",
            "params|wrong_shape"]
    ids += [f"file|random:{fmt}:{k}" for fmt in ("svm", "mtx", "csv", "npz", "npy")
            for k in range(n_random)]
    ids += [f"params|random:{k}" for k in range(n_random)]
    return ids


# ---------------------------------------------------------------- the child


def _trainer(mod):
    return mod.Trainer(threads=1, epochs=2, order="stored", seed=0)


def _result(mod, call, data, fitted_on):
    t = _trainer(mod)
    if call == "fit":
        t.fit(**data)
        return {k: v.copy() for k, v in t.params.items()}
    t.fit(**fitted_on)
    return getattr(t, call)(**data)


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-9,
                       atol=1e-12, equal_nan=False)


def _entry_data(spec: str, name: str) -> bool:
    """Whether data `name` is the source of a `for (u, v) in name` block of the spec."""
    import hogwild_dsl
    return any(b.kind == "entries" and b.over == name
               for b in hogwild_dsl.check(SPECS[spec]).blocks)


def _csr_keeping_duplicates(coo):
    """The entries of a COO as a CSR, in row order, repeated (row, column) pairs kept."""
    import scipy.sparse as sp
    order = np.lexsort((coo.col, coo.row))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(coo.row, minlength=coo.shape[0]))])
    return sp.csr_matrix((coo.data[order], coo.col[order], indptr), shape=coo.shape)


def _run_data_case(case: str, modules: dict):
    _, spec, call, target, mutation = case.split("|")
    mod = modules.setdefault(spec, _load(spec))
    good = base_data(spec)
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    if mutation.startswith("param_"):
        t = _trainer(mod).fit(**good)
        p = mod.Trainer.spec.params[0]
        shape = t.params[p.name].shape
        value = {"list_short": [0.0], "nan": np.full(shape, np.nan), "strings": np.full(shape, "a"),
                 "none": None, "right_list": np.zeros(shape).tolist(), "not_a_dict": None}[
            mutation[len("param_"):]]
        if mutation == "param_not_a_dict":
            t.params = [1, 2]
        else:
            t.params[p.name] = value
        t.fit(**good)
        return "either" if mutation == "param_right_list" else "error", None, None
    if mutation == "unknown_name":
        data, ref, expect = {**good, "nonsense": good[next(iter(good))]}, None, "error"
    elif mutation == "missing":     # predict may need no data (cuts: argmax of params)
        data, ref, expect = {}, None, "error" if call != "predict" else "either"
    else:
        kind = dict(TARGETS[spec])[target]
        if mutation.startswith("random:"):
            rng = np.random.default_rng(int(mutation.split(":")[1]) + 1000 * len(case))
            if kind == "sparse":
                value, ref_value, expect = _random_corruption(good[target], rng)
            else:
                names = sorted(_dense_mutations(kind))
                value, ref_value, expect = _dense_mutations(kind)[names[rng.integers(len(names))]](
                    good[target], rng)
        else:
            table = _sparse_mutations() if kind == "sparse" else _dense_mutations(kind)
            value, ref_value, expect = table[mutation](good[target], rng)
            if mutation == "coo_duplicates" and _entry_data(spec, target):
                # the stored entries are terms: two at one (u, v) are two observations
                # (LANGUAGE.md), so the reference is the same entries as a CSR, not summed
                ref_value = _csr_keeping_duplicates(value)
        data = {**good, target: value}
        ref = None if ref_value is None else {**good, target: ref_value}
    got = _result(mod, call, data, good)
    want = _result(mod, call, ref, good) if ref is not None and expect == "ok" else None
    return expect, got, want


_FILE_BASES = {}


def _good_file(fmt: str, folder: Path) -> Path:
    import scipy.sparse as sp
    path = folder / f"base.{fmt}"
    if fmt == "svm":
        path.write_bytes(SVMLIGHT * 5)
    elif fmt == "mtx":
        path.write_bytes(FILE_CASES["mtx_good"][1])
    elif fmt == "csv":
        path.write_bytes(b"u,v,value\n" + b"".join(f"{i},{i % 3},{i / 7:.4f}\n".encode()
                                                   for i in range(30)))
    elif fmt == "npz":
        sp.save_npz(path, sp.random(30, 8, density=0.3, format="csr", random_state=0))
    else:
        np.save(path, np.arange(24.0).reshape(6, 4))
    return path


def _names_for(fmt: str) -> list[str]:
    return ["X", "y"] if fmt == "svm" else ["r"]


def _mutate_bytes(raw: bytes, rng) -> bytes:
    b = bytearray(raw)
    how = rng.integers(5)
    if how == 0 and b:
        for _ in range(int(rng.integers(1, 4))):
            b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
    elif how == 1:
        b = b[: int(rng.integers(len(b) + 1))]
    elif how == 2:
        at = int(rng.integers(len(b) + 1))
        b[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8))
    elif how == 3 and b:
        at = int(rng.integers(len(b)))
        del b[at: at + int(rng.integers(1, 16))]
    else:
        at = int(rng.integers(len(b) + 1))
        b[at:at] = rng.choice([b"\x00", b"-1", b"99999999999999999999", b":", b"\n", b"nan",
                               b"\xef\xbb\xbf", b" ", b","])
    return bytes(b)


def _run_file_case(case: str, modules: dict, folder: Path):
    import scipy.sparse as sp
    from hogwild_dsl.data import read_data
    kind, _, name = case.partition("|")
    if kind == "params":
        return _run_params_case(name, modules, folder)
    if name.startswith("random:"):
        _, fmt, k = name.split(":")
        rng = np.random.default_rng(int(k) * 31 + len(fmt))
        raw = _good_file(fmt, folder).read_bytes()
        path = folder / f"case.{fmt}"
        path.write_bytes(_mutate_bytes(raw, rng))
        out = read_data(path, _names_for(fmt), "sparse" if fmt != "npy" else "dense")
        _feed(out, modules)
        return "either", None, None
    if name in FILE_CASES:
        suffix, content, names, same_as, expect = FILE_CASES[name]
        path = folder / f"case{suffix}"
        path.write_bytes(content)
        kinds = "dense" if names == ["c"] else "sparse"
        out = read_data(path, names, kinds)
        _feed(out, modules)
        want = None
        if same_as:
            ref = folder / f"ref{suffix}"
            ref.write_bytes(FILE_CASES[same_as][1])
            want = {k: (v.toarray() if sp.issparse(v) else v)
                    for k, v in read_data(ref, names, kinds).items()}
        got = {k: (v.toarray() if sp.issparse(v) else v) for k, v in out.items()}
        return expect, got, want
    path = folder / "case.npz"
    m = sp.random(20, 10, density=0.3, format="csr", random_state=1)
    if name == "npz_corrupt_csr":
        m.indptr[5] = 10**7
        sp.save_npz(path, m, compressed=False)
    elif name == "npz_int64_indices_plus_2_32":
        np.savez(path, format=np.array("csr"), shape=np.array(m.shape), data=m.data,
                 indices=m.indices.astype(np.int64) + 2**32, indptr=m.indptr)
    elif name == "npz_object_array":
        np.savez(path, r=np.array([None, 1], dtype=object))
    elif name == "npz_truncated":
        sp.save_npz(path, m)
        path.write_bytes(path.read_bytes()[:100])
    else:
        path = folder / "case.npy"
        np.save(path, np.array([None, 1], dtype=object) if name == "npy_object"
                else np.ones((5, 5)), allow_pickle=True)
        if name == "npy_truncated":
            path.write_bytes(path.read_bytes()[:90])
    out = read_data(path, ["r"], "sparse")
    _feed(out, modules)
    return "error", None, None


def _feed(out: dict, modules: dict):
    """Data read from a file goes on to a fit through the same gate as any other data."""
    mod = modules.setdefault("mc", _load("mc"))
    import scipy.sparse as sp
    value = out.get("r", out.get("X"))
    if value is not None and (sp.issparse(value) or np.ndim(value) == 2):
        _trainer(mod).fit(r=value)


def _run_params_case(name: str, modules: dict, folder: Path):
    mod = modules.setdefault("svm", _load("svm"))
    good = base_data("svm")
    t = _trainer(mod).fit(**good)
    saved = t.save(folder / "good.npz")
    raw = saved.read_bytes()
    path = folder / "case.npz"
    with np.load(saved) as f:
        meta = f["__hogwild__"]
    expect = "error"
    if name == "truncated":
        path.write_bytes(raw[: len(raw) // 3])
    elif name == "empty":
        path.write_bytes(b"")
    elif name == "text":
        path.write_text("w = 1, 2, 3\n")
    elif name == "npy":
        path = folder / "case.npy"
        np.save(path, t.params["w"])
    elif name == "zip":
        import zipfile
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("w.npy", b"junk")
    elif name == "no_meta":
        np.savez(path, w=t.params["w"])
    elif name == "meta_junk":
        np.savez(path, __hogwild__=np.array('{"params": "w"}'), w=t.params["w"])
    elif name == "other_spec":
        other = modules.setdefault("mc", _load("mc"))
        _trainer(other).fit(**base_data("mc")).save(path)
    elif name == "nan":
        np.savez(path, __hogwild__=meta, w=np.full_like(t.params["w"], np.nan))
    elif name == "wrong_shape":
        np.savez(path, __hogwild__=meta, w=np.ones((2, 2)))
    else:
        rng = np.random.default_rng(int(name.split(":")[1]))
        path.write_bytes(_mutate_bytes(raw, rng))
        expect = "either"
    loaded = mod.Trainer.load(path)
    if expect == "either":      # a change the format does not protect: the params are intact
        return "ok", loaded.params, t.params
    return expect, None, None


def _load(spec: str):
    import hogwild_dsl
    return hogwild_dsl.load(text=SPECS[spec])


# ---------------------------------------------------------------- spec texts
# A valid random spec (tests/specgen.py) and a seeded mutation of it, given to `check`: the
# front end must answer every text with the checked IR or a SpecError, never another exception,
# a crash or a hang. Unmutated specs must check.

SPEC_MUTATIONS = ("none", "delete", "duplicate_line", "swap_lines", "insert", "truncate",
                  "rename", "nest", "let_chain", "bytes")
INSERTS = ["model", "dim", "const", "data", "param", "for", "in", "loss", "reg", "predict",
           "let", "train", "sample", "on", "unscaled", "sum(", "dot(", ")", "(", "[", "]", ",",
           ":", "=", "~", "^", "-", "*", "/", "+", "#", "\t", "\n", "\n    ", "1e308",
           "1e-400", "10**9", "99999999999999999999", "nan", "inf", "_x", "t", "M", "step",
           "scratch", "NULL", "errno", "self", "validation", "\x00", "\ud800", "\ufeff",
           "é", "index(", "simplex", "ball(", "sparse", "dense", "real", "sign", "binary"]


def spec_case_ids(n: int, start: int = 0) -> list[str]:
    """n spec-text cases: seeds start.. each with one mutation kind, in turn."""
    return [f"spec|{seed}|{SPEC_MUTATIONS[seed % len(SPEC_MUTATIONS)]}"
            for seed in range(start, start + n)]


def spec_text(case: str) -> tuple[str, str]:
    """The text of a spec case and what check must do with it ("ok" or "either")."""
    import random

    import specgen
    _, seed, kind = case.split("|")
    seed = int(seed)
    text = specgen.Generator(seed).spec()
    rng = random.Random(seed)
    lines = text.splitlines(keepends=True)
    at = rng.randrange(len(text) + 1)
    if kind == "none":
        return text, "ok"
    if kind == "delete":
        text = text[:at] + text[at + rng.randint(1, 12):]
    elif kind == "duplicate_line":
        k = rng.randrange(len(lines))
        text = "".join(lines[:k + 1] + lines[k:])
    elif kind == "swap_lines":
        a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[a], lines[b] = lines[b], lines[a]
        text = "".join(lines)
    elif kind == "insert":
        word = rng.choice(INSERTS)
        text = text[:at] + word + text[at:]
    elif kind == "truncate":
        text = text[:at]
    elif kind == "rename":
        import re
        names = sorted(set(re.findall(r"\b[A-Za-z][A-Za-z0-9_]*\b", text)))
        old, new = rng.choice(names), rng.choice(INSERTS[:40] + names)
        text = re.sub(rf"\b{re.escape(old)}\b", new.strip(), text, count=rng.randint(1, 3))
    elif kind == "nest":
        depth = rng.choice([50, 200, 1000, 5000])
        k = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("loss")), None)
        if k is not None:
            indent = lines[k][:len(lines[k]) - len(lines[k].lstrip())]
            expr = lines[k].strip()[len("loss"):].strip()
            lines[k] = f"{indent}loss {'(' * depth}{expr}{')' * depth}\n"
        text = "".join(lines)
    elif kind == "let_chain":
        depth = rng.choice([20, 100, 700])
        k = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("loss")), None)
        if k is not None:
            indent = lines[k][:len(lines[k]) - len(lines[k].lstrip())]
            expr = lines[k].strip()[len("loss"):].strip()
            chain = [f"{indent}let zz0 = {expr}\n"] + [
                f"{indent}let zz{j} = zz{j - 1} * zz{j - 1}\n" if rng.random() < 0.5 else
                f"{indent}let zz{j} = zz{j - 1} + 1\n" for j in range(1, depth)]
            lines[k:k + 1] = chain + [f"{indent}loss zz{depth - 1}\n"]
        text = "".join(lines)
    else:                    # bytes: a few random bytes, decoded leniently as a user's editor might
        raw = bytearray(text.encode())
        for _ in range(rng.randint(1, 4)):
            if raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        text = raw.decode("utf-8", "surrogateescape")
    return text, "either"


def _run_spec_case(case):
    """check() of one spec text: (expect, got, want) for _child's verdict."""
    import hogwild_dsl
    text, expect = spec_text(case)
    hogwild_dsl.check(text)
    return ("ok" if expect == "ok" else None), None, None


def child(ids: list[str]) -> None:
    """Run cases in this process, one JSON line each (`start` first, so a crash is located)."""
    import shutil
    import warnings
    modules: dict = {}
    folder = Path(tempfile.mkdtemp(prefix="hogwild-fuzz-"))
    os.environ["HOGWILD_FUZZ_TMP"] = str(folder)
    warnings.simplefilter("ignore")
    try:
        _child(ids, modules, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _child(ids, modules, folder):
    from hogwild_dsl.errors import HogwildError
    for case in ids:
        print(json.dumps({"start": case}), flush=True)
        expect, outcome, detail = None, None, ""
        try:
            if case.startswith("data|"):
                expect, got, want = _run_data_case(case, modules)
            elif case.startswith("spec|"):
                expect, got, want = _run_spec_case(case)
            else:
                expect, got, want = _run_file_case(case, modules, folder)
            if expect == "error":
                outcome, detail = "silently_wrong", "accepted"
            elif want is not None and not _same(got, want):
                outcome, detail = "silently_wrong", "differs from the canonical result"
            else:
                outcome = "ok"
        except HogwildError as e:
            text = str(e)
            if expect == "ok":
                outcome, detail = "refused_valid", text
            elif not text.strip():
                outcome, detail = "wrong_type", "empty message"
            else:
                outcome, detail = "clean", text.splitlines()[0]
            if case.startswith("data|") and "\n" in text and not isinstance(
                    e, __import__("hogwild_dsl").SpecError):
                outcome, detail = "wrong_type", "a message of several lines: " + text
        except Exception as e:  # noqa: BLE001 - what the fuzz is looking for
            outcome, detail = "wrong_type", f"{type(e).__name__}: {e}"
        print(json.dumps({"case": case, "outcome": outcome, "detail": detail[:300]}),
              flush=True)


def run(ids: list[str], batch: int = 400, timeout: float = 60.0, env=None) -> dict:
    """Run cases in child processes; returns case -> (outcome, detail). A child that dies
    makes its running case a crash, one silent for `timeout` seconds a hang; the rest of its
    batch goes on in a fresh child."""
    results: dict = {}
    pending = list(ids)
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                              full_env.get("PYTHONPATH", "")])
    full_env.pop("HOGWILD_DEBUG", None)
    while pending:
        chunk, pending = pending[:batch], pending[batch:]
        proc = subprocess.Popen([sys.executable, "-c", "import sys, json, fuzz_cases; "
                                 "fuzz_cases.child(json.load(sys.stdin))"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=full_env)
        proc.stdin.write(json.dumps(chunk))
        proc.stdin.close()
        running = None
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        hung = False
        while True:
            if not sel.select(timeout):
                hung = True
                break
            line = proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            if "start" in msg:
                running = msg["start"]
            else:
                results[msg["case"]] = (msg["outcome"], msg["detail"])
                running = None
        if hung:
            proc.kill()
        proc.wait()
        if running is not None:
            results[running] = ("hang" if hung else "crash",
                                f"exit status {proc.returncode}" if not hung else
                                f"no answer in {timeout:.0f} s")
        rest = [c for c in chunk if c not in results]
        pending = rest + pending
        if rest and running is None:       # died between cases: do not loop forever
            for c in rest:
                results[c] = ("crash", f"the child died (exit status {proc.returncode})")
            pending = [c for c in pending if c not in results]
    return results


def counts(results: dict) -> dict:
    """Per category (the case id's first fields), outcome -> count, plus `tried`."""
    out: dict = {}
    for case, (outcome, _) in results.items():
        parts = case.split("|")
        category = "/".join(parts[:2]) if parts[0] != "file" else \
            ("file/random" if parts[1].startswith("random:") else "file/named")
        if parts[0] == "spec":
            category = f"spec/{parts[2]}"
        if parts[0] == "params":
            category = "params/random" if parts[1].startswith("random:") else "params/named"
        c = out.setdefault(category, {"tried": 0, **{o: 0 for o in OUTCOMES}})
        c["tried"] += 1
        c[outcome] += 1
    return out


if __name__ == "__main__":
    child(json.load(sys.stdin))
