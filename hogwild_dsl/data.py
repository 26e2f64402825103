"""Reading data files for ``hogwildc train --data NAME=FILE`` and ``--data X,y=FILE``.

Public functions
----------------
``parse_data_arg(arg) -> (names, path)``
    Split a command-line argument such as ``X,y=train.svm`` into ``(["X", "y"], "train.svm")``.
``read_data(path, names, kind=None, zero_based="auto") -> dict``
    Read one file and return ``name -> value``: a ``scipy.sparse.csr_matrix`` (float64; a
    triplet, ``.mtx`` or COO ``.npz`` file keeps every stored entry, repeats included, in the
    file's order) or a float64 ``numpy.ndarray``.
``svmlight_zero_based(paths) -> bool``
    Whether the svmlight files of one command are zero-based (one holds a feature index 0).
``detect_format(path) -> str``
    ``"svmlight"``, ``"mtx"``, ``"npz"``, ``"npy"`` or ``"table"`` (CSV/TSV/whitespace text).
``line_of_row(path, row) -> int | None``
    The line of a text file (svmlight, table) that holds its data row ``row`` (zero-based, as
    the value read has it); ``None`` for the other formats.

Formats (from the extension, else sniffed from the content; ``.gz``/``.bz2``/``.xz``
compressed text files are read too):

* ``.svm``/``.libsvm``/``.svmlight`` (and extension-less files such as LIBSVM's ``a9a``,
  ``a9a.t``, ``rcv1_train.binary``): one row per line, ``LABEL INDEX:VALUE ...``, ``qid:``
  tokens and ``# comments`` ignored. Indices are one-based (LIBSVM's convention) unless the
  file holds a feature index 0, as scikit-learn's ``dump_svmlight_file`` writes by default:
  then zero-based (scikit-learn's ``zero_based="auto"``; ``svmlight_zero_based`` decides it
  for the files of one command together, so that a training and a validation file agree).  Two names give ``(X, y)``, one name
  gives ``X``.  Parsed by scikit-learn's compiled reader in blocks of lines; a block the fast
  reader rejects is re-scanned in Python to report the first bad line (or, when the only
  problem was unsorted indices, to read it anyway).  Labels are returned as given.
* ``.mtx`` Matrix Market: CSR (dense ``array`` files give a 2-D array).
* ``.npz``: a ``scipy.sparse.save_npz`` file gives CSR; a numpy archive gives its arrays by
  the requested names, else in order when the counts match.
* ``.npy``: a 0-d, 1-d or 2-d numeric array.
* ``.csv``/``.tsv``/``.txt``: ``kind="sparse"`` reads ``u,v,value`` triplets (zero-based ids used
  as given, so a dim is its largest id + 1; columns after the third ignored; a repeated
  ``(u, v)`` pair stays two entries); otherwise a dense numeric table (one column gives a 1-D array).
  A header row is recognised and skipped, ``#`` starts a comment, the delimiter is sniffed
  (``,``, tab, ``;``, ``|``, or ``::`` as in MovieLens's ``ratings.dat``).

Every problem is a :class:`~hogwild_dsl.errors.DataError` whose message starts with
``data file 'PATH'`` and, where there is one, ``line N``; the exception also carries ``.path``
and ``.line`` attributes.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import stat
import warnings
import zipfile
import zlib

import numpy as np
import scipy.sparse as sp

from .errors import DataError

__all__ = ["read_data", "parse_data_arg", "detect_format", "line_of_row",
           "svmlight_zero_based"]

_SVM_EXTS = {".svm", ".libsvm", ".svmlight"}
_TABLE_EXTS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None, ".dat": None}
_MTX_EXTS = {".mtx", ".mm"}
_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_MAGIC = [(b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open)]
_KINDS = (None, "sparse", "dense")

_BLOCK = 16 << 20          # bytes of svmlight text handed to the compiled reader at once
_SNIFF = 64 << 10          # bytes looked at to sniff a format
_MAX_DIM = 2**31 - 1       # largest dim a triplet id may imply
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\Z")


# --------------------------------------------------------------------------------------------
# errors


def _error(path, message, line=None):
    where = f"data file '{path}'"
    if line is not None:
        where += f", line {line}"
    err = DataError(f"{where}: {message}")
    err.path = str(path)
    err.line = line
    return err


# --------------------------------------------------------------------------------------------
# the command-line argument


def parse_data_arg(arg):
    """Split ``"X,y=train.svm"`` into ``(["X", "y"], "train.svm")``.

    The names are the spec's data names (identifiers, comma-separated, no repeats); the path is
    everything after the first ``=``.  Raises DataError on anything else.
    """
    if not isinstance(arg, str):
        raise DataError(f"--data expects NAME=FILE or NAME1,NAME2=FILE, got {arg!r}")
    if "=" not in arg:
        raise DataError(
            f"--data {arg!r}: expected NAME=FILE or NAME1,NAME2=FILE (e.g. X,y=train.svm)")
    left, path = arg.split("=", 1)
    path = path.strip()
    names = [n.strip() for n in left.split(",")]
    if not path:
        raise DataError(f"--data {arg!r}: no file after '='")
    if not left.strip() or any(not n for n in names):
        raise DataError(f"--data {arg!r}: an empty data name before '=' "
                        "(expected NAME=FILE or NAME1,NAME2=FILE)")
    for n in names:
        if not _NAME_RE.match(n):
            raise DataError(f"--data {arg!r}: {n!r} is not a valid data name "
                            "(letters, digits and '_', not starting with a digit)")
    seen = set()
    for n in names:
        if n in seen:
            raise DataError(f"--data {arg!r}: the name {n!r} is given twice")
        seen.add(n)
    return names, path


# --------------------------------------------------------------------------------------------
# opening and sniffing


def _check_file(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _error(path, "no such file") from None
    except PermissionError:
        raise _error(path, "cannot be read (permission denied)") from None
    except OSError as e:
        raise _error(path, f"cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _error(path, "is a directory, not a data file")
    if not os.access(path, os.R_OK):
        raise _error(path, "cannot be read (permission denied)")
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        raise _error(path, "the file is empty")


def _opener(path):
    """The function that opens *path* as a binary stream (decompressing if needed)."""
    low = path.lower()
    for ext, fn in _COMPRESSED.items():
        if low.endswith(ext):
            return fn
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, fn in _MAGIC:
        if head.startswith(magic):
            return fn
    return open


def _open_binary(path):
    fn = _opener(path)
    try:
        return fn(path, "rb")
    except OSError as e:
        raise _error(path, f"cannot be read ({e.strerror or e})") from None


def _read_head(path, n=_SNIFF):
    try:
        with _open_binary(path) as f:
            return f.read(n)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise _error(path, f"cannot be read ({e})") from None


def _base_ext(path):
    low = path.lower()
    for ext in _COMPRESSED:
        if low.endswith(ext):
            low = low[: -len(ext)]
            break
    return os.path.splitext(low)[1]


def _sample_lines(head, complete):
    """Non-blank, non-comment lines of a sniffed head (the cut last line dropped)."""
    lines = head.split(b"\n")
    if not complete and len(lines) > 1:
        lines = lines[:-1]
    out = []
    for raw in lines:
        text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
        text = text.split("#", 1)[0].strip()
        if text:
            out.append(text)
        if len(out) >= 50:
            break
    return out


def _looks_svmlight(line):
    toks = line.split()
    if len(toks) < 2 or ":" in toks[0] or "," in line:
        return False
    return all(":" in t for t in toks[1:])


def _sniff_text(path, head, complete):
    lines = _sample_lines(head, complete)
    if any(_looks_svmlight(ln) for ln in lines) and not any("," in ln for ln in lines):
        return "svmlight"
    return "table"


def detect_format(path):
    """The format of *path*: ``svmlight``, ``mtx``, ``npz``, ``npy`` or ``table``."""
    path = os.fspath(path)
    _check_file(path)
    ext = _base_ext(path)
    if ext in _SVM_EXTS:
        return "svmlight"
    if ext in _MTX_EXTS:
        return "mtx"
    if ext == ".npz":
        return "npz"
    if ext == ".npy":
        return "npy"
    if ext in (".csv", ".tsv", ".tab"):
        return "table"
    head = _read_head(path)
    if not head:
        raise _error(path, "the file is empty")
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head.lstrip().lower().startswith(b"%%matrixmarket"):
        return "mtx"
    return _sniff_text(path, head, len(head) < _SNIFF)


# --------------------------------------------------------------------------------------------
# read_data


def _normalise_kind(kind, names):
    if isinstance(kind, dict):
        out = {}
        for n in names:
            k = kind.get(n)
            if k not in _KINDS:
                raise DataError(f"kind for {n!r} must be None, 'sparse' or 'dense', got {k!r}")
            out[n] = k
        return out
    if kind not in _KINDS:
        raise DataError(f"kind must be None, 'sparse' or 'dense', got {kind!r}")
    return {n: kind for n in names}


def read_data(path, names, kind=None, zero_based="auto"):
    """Read the data file *path* for the data names *names*; return ``{name: value}``.

    *names* is the list of names given on the command line for this file (``["X", "y"]`` for
    an svmlight file read as rows plus labels, ``["r"]`` for a ratings file).  *kind* is
    ``None``, ``"sparse"`` or ``"dense"`` (or a dict name -> kind): for a CSV/text table,
    ``"sparse"`` reads ``u,v,value`` triplets and anything else a dense table; for the other
    formats a 2-D value is converted to CSR (``"sparse"``) or to a dense array (``"dense"``).

    Values are ``scipy.sparse.csr_matrix`` (float64, each row's columns in order) or float64
    ``numpy.ndarray``.  An entry a file stores twice (two triplet lines, two Matrix Market
    entries, a COO in an .npz) stays two entries, in the file's order: two observations, two
    terms of a `for (u, v) in r` block (LANGUAGE.md); data read only as rows has them summed
    by the trainer.  *zero_based* (svmlight files): True, False, or ``"auto"`` (zero-based
    where the file holds a feature index 0).  Raises DataError (naming the file and, where
    there is one, the line)."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"read_data: names must be a non-empty list of data names, got {names!r}")
    if len(set(names)) != len(names):
        raise DataError(f"read_data: a data name is given twice in {names!r}")
    kinds = _normalise_kind(kind, names)
    path = os.fspath(path)
    fmt = detect_format(path)
    try:
        if fmt == "svmlight":
            out = _read_svmlight(path, names, zero_based)
        elif fmt == "mtx":
            out = _read_mtx(path, names)
        elif fmt == "npz":
            out = _read_npz(path, names)
        elif fmt == "npy":
            out = _read_npy(path, names)
        else:
            sparse = [n for n in names if kinds[n] == "sparse"]
            out = _read_table(path, names, "sparse" if sparse else kinds[names[0]])
    except DataError:
        raise
    except MemoryError:
        raise _error(path, "not enough memory to read this file") from None
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile, zlib.error, ValueError,
            NotImplementedError) as e:     # zipfile: "That compression method is not supported"
        raise _error(path, f"cannot be read ({e})") from None
    for n in names:
        out[n] = _apply_kind(out[n], kinds[n])
    return out


def line_of_row(path, row):
    """The (one-based) line of the text file *path* that holds data row *row* (zero-based: a
    row of the value read_data gave, in an svmlight file or a dense table), or None where the
    format has no rows on lines or the file has fewer rows. For error messages: it reads the
    file again."""
    path = os.fspath(path)
    fmt = detect_format(path)
    if fmt == "svmlight":
        lines = ((n, t.split("#", 1)[0]) for n, t in _iter_lines(path))
        rows = (n for n, t in lines if t.strip())
    elif fmt == "table":
        rows = (n for n, _ in _data_rows(path, *_table_layout(path)))
    else:
        return None
    for r, lineno in enumerate(rows):
        if r == row:
            return lineno
    return None


def _apply_kind(value, kind):
    if kind == "sparse" and isinstance(value, np.ndarray) and value.ndim == 2:
        return _canonical(sp.csr_matrix(value))
    if kind == "dense" and sp.issparse(value):
        return np.asarray(value.toarray(), dtype=np.float64)
    return value


def _canonical(m):
    m = sp.csr_matrix(m, dtype=np.float64)
    m.sum_duplicates()          # also sorts the indices
    return m


def _entries(m, path):
    """A sparse matrix read from a file as a checked CSR that keeps every stored entry (ties
    at one (u, v) in the order stored), through the trainer's own validation gate."""
    from .runtime import as_entries
    return as_entries(m, f"data file '{path}'")[0]


def _want(path, names, count, what):
    if len(names) != count:
        raise _error(path, f"{what}, but {len(names)} names were given ({', '.join(names)})")


# --------------------------------------------------------------------------------------------
# svmlight / libsvm


_INDEX_ZERO = re.compile(rb"^[^#\n]*?[ \t]0+:", re.M)     # a token 0:VALUE (not qid:0)


def svmlight_zero_based(paths) -> bool:
    """Whether the svmlight files among *paths* are zero-based: one of them holds a feature
    index 0 (the others are read alike: a validation file that happens not to use feature 0
    is the training file's convention, not a one-based file)."""
    return any(detect_format(os.fspath(p)) == "svmlight" and _has_index_zero(p) for p in paths)


def _has_index_zero(path) -> bool:
    carry = b""
    with _open_binary(path) as f:
        while block := f.read(_BLOCK):
            text = carry + block
            cut = text.rfind(b"\n") + 1
            if _INDEX_ZERO.search(text, 0, cut):
                return True
            carry = text[cut:]
    return bool(_INDEX_ZERO.search(carry))


def _read_svmlight(path, names, zero_based="auto"):
    if len(names) not in (1, 2):
        raise _error(path, f"an svmlight file holds rows and labels: give 1 name (X) or 2 "
                           f"(X,y), not {len(names)} ({', '.join(names)})")
    from sklearn.datasets import load_svmlight_file

    if zero_based == "auto":
        zero_based = _has_index_zero(path)
    first = 0 if zero_based else 1      # the file's first feature index
    datas, indices, indptrs, labels = [], [], [], []
    nrows = nnz = 0
    line_base = 0
    carry = b""
    with _open_binary(path) as f:
        while True:
            block = f.read(_BLOCK)
            final = not block
            text = carry + block
            if not final:
                cut = text.rfind(b"\n")
                if cut < 0:
                    carry = text
                    continue
                carry = text[cut + 1:]
                text = text[: cut + 1]
            else:
                carry = b""
            if line_base == 0 and text.startswith(b"\xef\xbb\xbf") and not datas:
                text = text[3:]      # a UTF-8 byte order mark (Windows editors write one)
            if text:
                if not text.isascii():
                    _check_utf8(path, text, line_base)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        X, y = load_svmlight_file(io.BytesIO(text), zero_based=bool(zero_based),
                                                  dtype=np.float64)
                    d, ix, ip = X.data, X.indices, X.indptr
                    if ix.size and ix.min() < 0:
                        raise ValueError("negative index")
                except Exception:
                    d, ix, ip, y = _scan_svmlight(path, text, line_base, final, first)
                datas.append(d)
                indices.append(np.asarray(ix, dtype=np.int64))
                indptrs.append(np.asarray(ip[1:], dtype=np.int64) + nnz)
                nnz += len(d)
                labels.append(np.asarray(y, dtype=np.float64))
                nrows += len(y)
                line_base += text.count(b"\n")
            if final:
                break
    if nrows == 0:
        raise _error(path, "no data rows (only blank lines and comments)")
    data = np.concatenate(datas)
    ind = np.concatenate(indices)
    indptr = np.concatenate([np.zeros(1, np.int64)] + indptrs)
    ncols = int(ind.max()) + 1 if ind.size else 0
    if ncols > _MAX_DIM:
        raise _error(path, f"feature index {ncols} is too large (at most {_MAX_DIM})")
    if ncols <= np.iinfo(np.int32).max and data.size <= np.iinfo(np.int32).max:
        ind = ind.astype(np.int32)
        indptr = indptr.astype(np.int32)
    X = sp.csr_matrix((data, ind, indptr), shape=(nrows, ncols))
    X.has_sorted_indices = True
    X.has_canonical_format = True
    y = np.concatenate(labels)
    out = {names[0]: X}
    if len(names) == 2:
        out[names[1]] = y
    return out


def _check_utf8(path, text, line_base):
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as e:
        start = text.rfind(b"\n", 0, e.start) + 1
        line = line_base + text.count(b"\n", 0, e.start) + 1
        raise _error(path, f"not UTF-8 text (byte 0x{text[e.start]:02x} at column "
                           f"{e.start - start + 1})", line) from None


def _is_number(s):
    if "_" in s:
        return False
    try:
        float(s)
    except ValueError:
        return False
    return True


def _scan_svmlight(path, text, line_base, final, first=1):
    """Parse a block of svmlight lines in Python, feature indices counted from `first`;
    raise DataError at the first bad line."""
    lines = text.split(b"\n")
    has_tail = bool(lines[-1])       # the block does not end with a newline
    data, ind, indptr, labels = [], [], [0], []
    last = len(lines) - 1
    for i, raw in enumerate(lines):
        lineno = line_base + i + 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _error(path, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                               f"{e.start + 1})", lineno) from None
        line = line.split("#", 1)[0]
        toks = line.split()
        if not toks:
            continue

        def bad(msg):
            if final and has_tail and i == last:
                msg += " (the last line has no newline at its end: is the file truncated?)"
            return _error(path, msg, lineno)

        label = toks[0]
        if ":" in label:
            raise bad(f"missing label: the line starts with the feature {label!r} "
                      "(each line is LABEL INDEX:VALUE ...)")
        if not _is_number(label):
            raise bad(f"the label {label!r} is not a number")
        row = {}
        for tok in toks[1:]:
            if tok.startswith("qid:"):
                continue
            idx, sep, val = tok.partition(":")
            if not sep:
                raise bad(f"bad token {tok!r}: expected INDEX:VALUE")
            if not idx:
                raise bad(f"bad token {tok!r}: no feature index before ':'")
            if not val:
                raise bad(f"bad token {tok!r}: no value after ':'")
            try:
                k = int(idx)
            except ValueError:
                raise bad(f"bad token {tok!r}: the feature index {idx!r} is not an integer") \
                    from None
            if k < first:
                raise bad(f"bad token {tok!r}: feature index {k} < {first} (the first feature "
                          f"is {first})")
            if k > _MAX_DIM:
                raise bad(f"bad token {tok!r}: feature index {k} is too large (at most "
                          f"{_MAX_DIM})")
            if not _is_number(val):
                raise bad(f"bad token {tok!r}: the value {val!r} is not a number")
            if k in row:
                raise bad(f"feature index {k} appears twice on the line")
            row[k] = float(val)
        for k in sorted(row):
            ind.append(k - first)
            data.append(row[k])
        indptr.append(len(ind))
        labels.append(float(label))
    return (np.asarray(data, dtype=np.float64), np.asarray(ind, dtype=np.int64),
            np.asarray(indptr, dtype=np.int64), np.asarray(labels, dtype=np.float64))


# --------------------------------------------------------------------------------------------
# Matrix Market


def _read_mtx(path, names):
    _want(path, names, 1, "a Matrix Market file holds one matrix")
    import scipy.io

    with _open_binary(path) as f:
        text = _mtx_checked(path, f.read())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = scipy.io.mmread(io.BytesIO(text))
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader failure is the file's problem
        msg = " ".join(str(e).split()) or type(e).__name__
        mo = re.match(r"Line (\d+):\s*(.*)", msg, re.S)
        if mo:
            raise _error(path, f"not a valid Matrix Market file: {mo.group(2)}",
                         int(mo.group(1))) from None
        raise _error(path, f"not a valid Matrix Market file: {msg}") from None
    if sp.issparse(m):
        if np.iscomplexobj(m.data):
            raise _error(path, "complex Matrix Market data is not supported")
        m = m.tocoo()
        bad = np.flatnonzero(~np.isfinite(m.data))
        if bad.size:
            i, j = int(m.row[bad[0]]) + 1, int(m.col[bad[0]]) + 1     # as the file has them
            raise _error(path, f"the entry at row {i}, column {j} is {m.data[bad[0]]}, not a "
                               "finite number", _mtx_entry_line(text, i, j))
        return {names[0]: _entries(m, path)}
    m = np.asarray(m)
    if np.iscomplexobj(m):
        raise _error(path, "complex Matrix Market data is not supported")
    return {names[0]: np.ascontiguousarray(m, dtype=np.float64)}


def _mtx_entry_line(text: bytes, i: int, j: int):
    """The line of the first entry (i, j) (one-based; either way round, for a symmetric file)
    whose value is not finite, or None."""
    head = True
    for lineno, raw in enumerate(text.split(b"\n"), 1):
        toks = raw.split()
        if not toks or toks[0].startswith(b"%"):
            continue
        if head:                    # the size line
            head = False
            continue
        try:
            ids = {(int(toks[0]), int(toks[1]))}
            finite = np.isfinite(float(toks[2]))
        except (ValueError, IndexError):
            continue
        if ids & {(i, j), (j, i)} and not finite:
            return lineno
    return None


_MTX_BODY = np.zeros(256, dtype=bool)
_MTX_BODY[list(b"0123456789+-.eE \t\r\nnNaAiIfFtTyY")] = True


def _mtx_checked(path, raw: bytes) -> bytes:
    """The file's bytes, safe for scipy's Matrix Market reader: its C++ parser reads past the
    end of the buffer on a malformed last number without a newline ("4e", "0.5J": a
    segfault), so the body may hold only what numbers are written with, and ends in one."""
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    start = 0
    while raw.startswith(b"%", start):         # the banner and comment lines
        end = raw.find(b"\n", start)
        if end < 0:
            raise _error(path, "not a valid Matrix Market file: no size line")
        start = end + 1
    body = np.frombuffer(raw, dtype=np.uint8, offset=start)
    bad = np.flatnonzero(~_MTX_BODY[body])
    if bad.size:
        at = start + int(bad[0])
        line = raw.count(b"\n", 0, at) + 1
        raise _error(path, f"not a valid Matrix Market file: unexpected byte 0x{raw[at]:02x}",
                     line)
    return raw if raw.endswith(b"\n") else raw + b"\n"


# --------------------------------------------------------------------------------------------
# numpy files


def _as_float_array(path, arr, what):
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise _error(path, f"{what} has dtype {arr.dtype}, not a numeric type")
    if arr.ndim > 2:
        raise _error(path, f"{what} has {arr.ndim} dimensions (shape {arr.shape}); "
                           "only 0-d, 1-d and 2-d arrays are data")
    return np.array(arr, dtype=np.float64, order="C")   # (ascontiguousarray makes 0-d 1-d)


def _load_numpy(path):
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickle" in str(e).lower():
            raise _error(path, "holds Python objects (a pickle or an object array); only "
                               "numeric arrays can be read") from None
        raise _error(path, f"not a valid numpy file: {e}") from None
    except Exception as e:  # noqa: BLE001 - a corrupt header fails in numpy's parser
        raise _error(path, f"not a valid numpy file ({type(e).__name__}: {e})") from None


def _read_npy(path, names):
    _want(path, names, 1, "an .npy file holds one array")
    arr = _load_numpy(path)
    if not isinstance(arr, np.ndarray):
        raise _error(path, "not an .npy array file")
    if arr.dtype.kind == "O":
        raise _error(path, "holds an object array; only numeric arrays can be read")
    return {names[0]: _as_float_array(path, arr, "the array")}


_SPARSE_KEYS = {"format", "shape", "data"}


def _read_npz(path, names):
    z = _load_numpy(path)
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise _error(path, "not an .npz archive")
    with z:
        keys = list(z.files)
        if _SPARSE_KEYS.issubset(keys):
            _want(path, names, 1, "the .npz file holds one scipy sparse matrix")
            try:
                m = sp.load_npz(path)
            except Exception as e:  # noqa: BLE001
                raise _error(path, f"not a valid scipy sparse .npz file: {e}") from None
            return {names[0]: _entries(m, path)}
        listing = ", ".join(f"{k} {_shape_of(z, k)}" for k in keys) or "nothing"
        if all(n in keys for n in names):
            chosen = {n: n for n in names}
        elif len(keys) == len(names):
            chosen = dict(zip(names, keys))
        else:
            missing = [n for n in names if n not in keys]
            raise _error(path, f"no array named {', '.join(missing)}, and the file holds "
                               f"{len(keys)} array{'s' * (len(keys) != 1)} for {len(names)} "
                               f"name{'s' * (len(names) != 1)}; it holds: {listing}")
        out = {}
        for n, k in chosen.items():
            try:
                arr = z[k]
            except ValueError:
                raise _error(path, f"the array {k!r} holds Python objects; only numeric "
                                   "arrays can be read") from None
            out[n] = _as_float_array(path, arr, f"the array {k!r}")
        return out


def _shape_of(z, key):
    try:
        a = z[key]
        return f"(shape {a.shape}, {a.dtype})"
    except Exception:  # noqa: BLE001
        return "(unreadable)"


# --------------------------------------------------------------------------------------------
# CSV / TSV / whitespace tables and triplets


def _split_cells(line, delim):
    cells = line.split(delim) if delim is not None else line.split()
    out = []
    for c in cells:
        c = c.strip()
        if len(c) >= 2 and c[0] == c[-1] == '"':
            c = c[1:-1].strip()
        out.append(c)
    return out


def _sniff_delimiter(line, default):
    """The extension's delimiter if the line has it, else the first one it has, else the
    extension's (a one-column file), else whitespace."""
    if default is not None and default in line:
        return default
    for d in ("::", ",", "\t", ";", "|"):      # "::": MovieLens 1M/10M's ratings.dat
        if d in line:
            return d
    return default


def _iter_lines(path):
    """(line number, text) for every physical line; DataError on non-UTF-8 bytes."""
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _error(path, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                   f"{e.start + 1})", lineno) from None
            if lineno == 1:
                text = text.lstrip("\ufeff")
            yield lineno, text.rstrip("\r\n")


def _table_layout(path):
    """(delimiter, number of physical lines to skip: comments, blanks and the header)."""
    ext = _base_ext(path)
    default = _TABLE_EXTS.get(ext)
    first = None
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, 1):
            text = raw.decode("utf-8", errors="replace")
            if lineno == 1:
                text = text.lstrip("\ufeff")
            text = text.split("#", 1)[0].strip()
            if text:
                first = (lineno, text)
                break
            if lineno > 1_000_000:
                break
    if first is None:
        raise _error(path, "no data rows (only blank lines and comments)")
    lineno, text = first
    delim = _sniff_delimiter(text, default)
    if delim == "," and len(text.split(";")) > len(text.split(",")):   # 0;1;3,5
        raise _error(path, "the cells are separated by ';' and the numbers have decimal "
                           "commas (3,5): write decimal points (3.5)", lineno)
    cells = _split_cells(text, delim)
    non_numeric = sum(1 for c in cells if not _is_number(c))
    if non_numeric and 2 * non_numeric >= len(cells):
        return delim, lineno        # a header row: skip it and everything before
    return delim, lineno - 1


def _data_rows(path, delim, skip):
    """(line number, cells) of every data row, as loadtxt sees them."""
    for lineno, text in _iter_lines(path):
        if lineno <= skip:
            continue
        text = text.split("#", 1)[0]
        if not text.strip():
            continue
        yield lineno, _split_cells(text, delim)


def _scan_table(path, delim, skip, triplets):
    """Find the first bad data row and raise DataError for it (returns if none is found)."""
    ncols = first_line = None
    for lineno, cells in _data_rows(path, delim, skip):
        if ncols is None:
            ncols, first_line = len(cells), lineno
            if triplets and ncols < 3:
                raise _error(path, f"a sparse (triplet) file needs the columns u,v,value; "
                                   f"this row has {ncols} column{'s' * (ncols != 1)}", lineno)
        elif triplets and len(cells) < 3:
            raise _error(path, f"a sparse (triplet) file needs the columns u,v,value; this "
                               f"row has {len(cells)} column{'s' * (len(cells) != 1)}", lineno)
        elif not triplets and len(cells) != ncols:
            raise _error(path, f"this row has {len(cells)} columns but line {first_line} "
                               f"(the first data row) has {ncols}", lineno)
        for j, c in enumerate(cells[:3] if triplets else cells, 1):
            if not c:
                raise _error(path, f"empty cell in column {j}", lineno)
            if not _is_number(c):
                raise _error(path, f"non-numeric cell {c!r} in column {j}", lineno)
        if triplets:
            _check_ids(path, [float(cells[0]), float(cells[1])], lineno)


def _check_ids(path, ids, lineno):
    for j, x in enumerate(ids, 1):
        what = "the row id u" if j == 1 else "the column id v"
        if not np.isfinite(x) or x != np.floor(x):
            raise _error(path, f"the id {_fmt(x)} in column {j} ({what}) is not an integer",
                         lineno)
        if x < 0:
            raise _error(path, f"the id {_fmt(x)} in column {j} ({what}) is negative (ids are "
                               "zero-based)", lineno)
        if x >= _MAX_DIM:
            raise _error(path, f"the id {_fmt(x)} in column {j} ({what}) is too large (ids "
                               f"are used as given, so the dim would be {_fmt(x + 1)})", lineno)


def _fmt(x):
    return str(int(x)) if np.isfinite(x) and x == int(x) else repr(float(x))


def _lines_of_rows(path, delim, skip, rows):
    """Physical line numbers of the given (zero-based) data-row indices."""
    want = {int(r): None for r in rows}
    top = max(want)
    for r, (lineno, _) in enumerate(_data_rows(path, delim, skip)):
        if r in want:
            want[r] = lineno
        if r >= top:
            break
    return [want[int(r)] for r in rows]


def _read_table(path, names, kind):
    """A dense table (one datum, or one 1-D datum per column where several names are
    given: `--data tu,ti,y=ratings.csv`, as a table of index data and labels comes), or
    u,v,value triplets for sparse data."""
    triplets = kind == "sparse"
    if triplets:
        _want(path, names, 1, "a sparse (triplet) CSV/text file holds one data item")
    delim, skip = _table_layout(path)
    opener = _opener(path)
    try:
        with opener(path, "rt", encoding="utf-8-sig") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lines, sep = f, delim
            if delim is not None and len(delim) > 1:    # loadtxt splits on one character
                sep = "\x1f"
                lines = (line.replace(delim, sep) for line in f)
            # a triplet file's later columns are ignored, unread: a date, an empty cell left
            # by a trailing delimiter (they failed as "non-numeric cell" / "empty cell")
            arr = np.loadtxt(lines, dtype=np.float64, delimiter=sep, skiprows=skip,
                             comments="#", ndmin=2, quotechar='"',
                             usecols=(0, 1, 2) if triplets else None)
    except (ValueError, UnicodeDecodeError) as e:
        _scan_table(path, delim, skip, triplets)
        raise _error(path, "cannot be read as a numeric table: " + " ".join(str(e).split())) \
            from None
    if arr.shape[0] == 0:
        raise _error(path, "no data rows (only a header, blank lines and comments)")
    if not triplets:
        if len(names) > 1:
            if arr.shape[1] != len(names):
                raise _error(path, f"the table has {arr.shape[1]} column"
                                   f"{'s' * (arr.shape[1] != 1)}, but {len(names)} names were "
                                   f"given ({', '.join(names)}): give one name per column, "
                                   "or one name for the whole table")
            return {n: arr[:, c].copy() for c, n in enumerate(names)}
        if arr.shape[1] == 1:
            arr = arr[:, 0].copy()
        return {names[0]: arr}
    return {names[0]: _triplets_to_csr(path, arr, delim, skip)}


def _triplets_to_csr(path, arr, delim, skip):
    if arr.shape[1] < 3:
        _scan_table(path, delim, skip, True)
        raise _error(path, "a sparse (triplet) file needs the columns u,v,value")
    u, v, val = arr[:, 0], arr[:, 1], np.ascontiguousarray(arr[:, 2])
    ok = np.isfinite(u) & np.isfinite(v)
    ok &= (u >= 0) & (v >= 0) & (u < _MAX_DIM) & (v < _MAX_DIM)
    ok &= (u == np.floor(u)) & (v == np.floor(v))
    if not ok.all():
        r = int(np.flatnonzero(~ok)[0])
        (lineno,) = _lines_of_rows(path, delim, skip, [r])
        _check_ids(path, [u[r], v[r]], lineno)
        raise _error(path, "bad id", lineno)
    bad = np.flatnonzero(~np.isfinite(val))
    if bad.size:
        (lineno,) = _lines_of_rows(path, delim, skip, [int(bad[0])])
        raise _error(path, f"the value {val[bad[0]]} in column 3 is not a finite number", lineno)
    u = u.astype(np.int64)
    v = v.astype(np.int64)
    nrows, ncols = int(u.max()) + 1, int(v.max()) + 1
    # a pair given twice stays two entries: two observations, two terms (LANGUAGE.md)
    return _entries(sp.coo_matrix((val, (u, v)), shape=(nrows, ncols)), path)
