# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, infer_types=False
"""Hand-written Hogwild SGD kernels: the yardstick the generated trainers race against.

Written the way an expert would write them by hand: typed memoryviews only at the
boundary, raw pointers inside, the GIL released for the whole epoch, ``prange`` with
``schedule="static"`` (each thread gets one contiguous run of the visit order / of the
chunk order), no Python objects in the loops, racy unsynchronised writes to the shared
model (HOGWILD!).  Built by ``bench/peers/handwritten.py`` (cython + gcc -O3
-march=native -fopenmp, no setuptools).

Algorithms (exactly these; only the floating-point association of the dot products
differs from a left-to-right sum, see ``_sparse_dot`` / ``_dense_dot``):

SVM, per row i:   m = y_i * sum_j x_ij w_j
                  for every j in the row:
                      g = (-y_i x_ij if m < 1 else 0) + 2 lam w_j / deg_j
                      w_j -= step * g
MF, per rating (u, v, r):
                  e = <L_u, R_v> - r
                  for k: gl = 2 e R_vk + 2 lam L_uk ; gr = 2 e L_uk + 2 lam R_vk   (old values)
                         L_uk -= step gl ; R_vk -= step gr
"""

from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport malloc, free


# ---------------------------------------------------------------- inner kernels

cdef inline double _sparse_dot(const int32_t* idx, const double* val,
                               const double* w, int64_t n) noexcept nogil:
    # Four independent accumulators: a left-to-right sum is one long chain of
    # dependent adds (4 cycles each), which is what bounds the in-cache
    # (stored-order) case.  Association: ((s0 + s1) + (s2 + s3)) + tail.
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef int64_t p = 0
    while p + 4 <= n:
        s0 += val[p] * w[idx[p]]
        s1 += val[p + 1] * w[idx[p + 1]]
        s2 += val[p + 2] * w[idx[p + 2]]
        s3 += val[p + 3] * w[idx[p + 3]]
        p += 4
    s0 = (s0 + s1) + (s2 + s3)
    while p < n:
        s0 += val[p] * w[idx[p]]
        p += 1
    return s0


cdef inline void _svm_row(const int64_t* indptr, const int32_t* indices,
                          const double* data, const double* y, double* w,
                          const double* reg, int64_t i, double step) noexcept nogil:
    # reg[j] = 2 * lam / deg[j], precomputed once per epoch
    cdef int64_t a = indptr[i]
    cdef int64_t n = indptr[i + 1] - a
    cdef const int32_t* idx = indices + a
    cdef const double* val = data + a
    cdef double yi = y[i]
    cdef double m = yi * _sparse_dot(idx, val, w, n)
    cdef double c = -yi if m < 1.0 else 0.0
    cdef int64_t p
    cdef int32_t j
    for p in range(n):
        j = idx[p]
        w[j] -= step * (c * val[p] + reg[j] * w[j])


cdef inline double _dense_dot(const double* a, const double* b, Py_ssize_t k) noexcept nogil:
    # Same four-accumulator association as _sparse_dot; gcc turns it into SIMD.
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t t = 0
    while t + 4 <= k:
        s0 += a[t] * b[t]
        s1 += a[t + 1] * b[t + 1]
        s2 += a[t + 2] * b[t + 2]
        s3 += a[t + 3] * b[t + 3]
        t += 4
    s0 = (s0 + s1) + (s2 + s3)
    while t < k:
        s0 += a[t] * b[t]
        t += 1
    return s0


cdef inline void _mf_rating(const int32_t* rows, const int32_t* cols, const double* vals,
                            double* L, double* R, int64_t e, Py_ssize_t rank,
                            double step, double lam2) noexcept nogil:
    cdef double* lu = L + <Py_ssize_t>rows[e] * rank
    cdef double* rv = R + <Py_ssize_t>cols[e] * rank
    cdef double err2 = 2.0 * (_dense_dot(lu, rv, rank) - vals[e])
    cdef double l, r
    cdef Py_ssize_t k
    for k in range(rank):          # simple loop: gcc vectorises it (with an alias check)
        l = lu[k]
        r = rv[k]
        lu[k] = l - step * (err2 * r + lam2 * l)
        rv[k] = r - step * (err2 * l + lam2 * r)


# ---------------------------------------------------------------- helpers

cdef double* _svm_reg(const double[::1] deg, double lam) except NULL:
    cdef Py_ssize_t nf = deg.shape[0], j
    cdef double* reg = <double*>malloc((nf if nf > 0 else 1) * sizeof(double))
    if reg == NULL:
        raise MemoryError()
    for j in range(nf):
        reg[j] = 2.0 * lam / deg[j] if deg[j] != 0.0 else 0.0
    return reg


cdef int _check_order(const int64_t* op, int64_t n, int64_t limit) except -1:
    # one cheap pass so that a bad visit order raises instead of scribbling memory
    cdef int64_t q, bad = -1
    with nogil:
        for q in range(n):
            if op[q] < 0 or op[q] >= limit:
                bad = q
                break
    if bad >= 0:
        raise IndexError("order[%d] = %d out of range [0, %d)" % (bad, op[bad], limit))
    return 0


cdef int _check_threads(int threads) except -1:
    if threads < 1:
        raise ValueError("threads must be >= 1")
    return 0


# ---------------------------------------------------------------- SVM

def svm_epoch(const int64_t[::1] indptr, const int32_t[::1] indices, const double[::1] data,
              const double[::1] y, double[::1] w, const double[::1] deg,
              const int64_t[::1] order, double step, double lam, int threads=1):
    """One Hogwild epoch of hinge + l2(lam)/deg SGD; rows visited as ``order`` lists them
    (the order is split into ``threads`` contiguous runs, one per thread).  ``w`` is
    updated in place."""
    _check_threads(threads)
    if y.shape[0] + 1 != indptr.shape[0]:
        raise ValueError("len(y) must be len(indptr) - 1")
    if deg.shape[0] != w.shape[0]:
        raise ValueError("len(deg) must equal len(w)")
    cdef int64_t n = order.shape[0], q
    cdef const int64_t* ip = &indptr[0]
    cdef const int32_t* ix = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const double* dx = &data[0] if data.shape[0] > 0 else NULL
    cdef const double* yp = &y[0] if y.shape[0] > 0 else NULL
    cdef double* wp = &w[0] if w.shape[0] > 0 else NULL
    cdef const int64_t* op = &order[0] if n > 0 else NULL
    _check_order(op, n, y.shape[0])
    cdef double* reg = _svm_reg(deg, lam)
    try:
        for q in prange(n, nogil=True, schedule="static", num_threads=threads):
            _svm_row(ip, ix, dx, yp, wp, reg, op[q], step)
    finally:
        free(reg)


def svm_epoch_chunks(const int64_t[::1] indptr, const int32_t[::1] indices,
                     const double[::1] data, const double[::1] y, double[::1] w,
                     const double[::1] deg, const int64_t[::1] chunk_order, int64_t chunk,
                     double step, double lam, int threads=1):
    """Like ``svm_epoch`` but rows are visited in stored order in chunks of ``chunk``
    consecutive rows (chunk c = rows [c*chunk, min((c+1)*chunk, n_rows))), the chunks
    in ``chunk_order`` (split into ``threads`` contiguous runs of chunks)."""
    _check_threads(threads)
    if chunk < 1:
        raise ValueError("chunk must be >= 1")
    if y.shape[0] + 1 != indptr.shape[0]:
        raise ValueError("len(y) must be len(indptr) - 1")
    if deg.shape[0] != w.shape[0]:
        raise ValueError("len(deg) must equal len(w)")
    cdef int64_t nrows = y.shape[0]
    cdef int64_t nch = chunk_order.shape[0], q, c, i, lo, hi
    cdef const int64_t* ip = &indptr[0]
    cdef const int32_t* ix = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const double* dx = &data[0] if data.shape[0] > 0 else NULL
    cdef const double* yp = &y[0] if y.shape[0] > 0 else NULL
    cdef double* wp = &w[0] if w.shape[0] > 0 else NULL
    cdef const int64_t* cp = &chunk_order[0] if nch > 0 else NULL
    for q in range(nch):
        if cp[q] < 0 or cp[q] * chunk >= nrows:
            raise IndexError("chunk_order[%d] = %d out of range" % (q, cp[q]))
    cdef double* reg = _svm_reg(deg, lam)
    try:
        for q in prange(nch, nogil=True, schedule="static", num_threads=threads):
            c = cp[q]
            lo = c * chunk
            hi = lo + chunk
            if hi > nrows:
                hi = nrows
            i = lo
            while i < hi:
                _svm_row(ip, ix, dx, yp, wp, reg, i, step)
                i = i + 1
    finally:
        free(reg)


# ---------------------------------------------------------------- MF

def mf_epoch(const int32_t[::1] rows, const int32_t[::1] cols, const double[::1] vals,
             double[:, ::1] L, double[:, ::1] R, const int64_t[::1] order,
             double step, double lam, int threads=1):
    """One Hogwild epoch of plain l2-regularised MF SGD; ratings visited as ``order``
    lists them (split into ``threads`` contiguous runs).  L and R updated in place."""
    _check_threads(threads)
    if L.shape[1] != R.shape[1]:
        raise ValueError("L and R must have the same rank")
    if rows.shape[0] != cols.shape[0] or rows.shape[0] != vals.shape[0]:
        raise ValueError("rows, cols, vals must have the same length")
    cdef Py_ssize_t rank = L.shape[1]
    cdef int64_t n = order.shape[0], q
    cdef const int32_t* rp = &rows[0] if rows.shape[0] > 0 else NULL
    cdef const int32_t* cp = &cols[0] if cols.shape[0] > 0 else NULL
    cdef const double* vp = &vals[0] if vals.shape[0] > 0 else NULL
    cdef double* Lp = &L[0, 0] if L.shape[0] > 0 and rank > 0 else NULL
    cdef double* Rp = &R[0, 0] if R.shape[0] > 0 and rank > 0 else NULL
    cdef const int64_t* op = &order[0] if n > 0 else NULL
    cdef double lam2 = 2.0 * lam
    _check_order(op, n, rows.shape[0])
    if rank == 0:
        return
    for q in prange(n, nogil=True, schedule="static", num_threads=threads):
        _mf_rating(rp, cp, vp, Lp, Rp, op[q], rank, step, lam2)


def mf_epoch_chunks(const int32_t[::1] rows, const int32_t[::1] cols, const double[::1] vals,
                    double[:, ::1] L, double[:, ::1] R, const int64_t[::1] chunk_order,
                    int64_t chunk, double step, double lam, int threads=1):
    """Like ``mf_epoch`` but ratings are visited in stored order (the caller stores them
    sorted by user) in chunks of ``chunk`` consecutive ratings, the chunks in
    ``chunk_order`` (split into ``threads`` contiguous runs of chunks)."""
    _check_threads(threads)
    if chunk < 1:
        raise ValueError("chunk must be >= 1")
    if L.shape[1] != R.shape[1]:
        raise ValueError("L and R must have the same rank")
    if rows.shape[0] != cols.shape[0] or rows.shape[0] != vals.shape[0]:
        raise ValueError("rows, cols, vals must have the same length")
    cdef Py_ssize_t rank = L.shape[1]
    cdef int64_t nnz = rows.shape[0]
    cdef int64_t nch = chunk_order.shape[0], q, c, e, lo, hi
    cdef const int32_t* rp = &rows[0] if nnz > 0 else NULL
    cdef const int32_t* cp = &cols[0] if nnz > 0 else NULL
    cdef const double* vp = &vals[0] if nnz > 0 else NULL
    cdef double* Lp = &L[0, 0] if L.shape[0] > 0 and rank > 0 else NULL
    cdef double* Rp = &R[0, 0] if R.shape[0] > 0 and rank > 0 else NULL
    cdef const int64_t* chp = &chunk_order[0] if nch > 0 else NULL
    cdef double lam2 = 2.0 * lam
    for q in range(nch):
        if chp[q] < 0 or chp[q] * chunk >= nnz:
            raise IndexError("chunk_order[%d] = %d out of range" % (q, chp[q]))
    if rank == 0:
        return
    for q in prange(nch, nogil=True, schedule="static", num_threads=threads):
        c = chp[q]
        lo = c * chunk
        hi = lo + chunk
        if hi > nnz:
            hi = nnz
        e = lo
        while e < hi:
            _mf_rating(rp, cp, vp, Lp, Rp, e, rank, step, lam2)
            e = e + 1
