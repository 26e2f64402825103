# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, infer_types=False
"""Hand-written serial SGD epochs of a factorisation machine and of softmax regression: the
yardsticks of bench/bench_lowering.py. Each is exactly the update the compiler derives from
its spec (same gradient at the old point, same order of writes), written as an expert would:
one pass over the row to gather, exp once per class, contiguous inner loops.

FM (specs/fm.hog), per row i with values x_j:
    s_f = sum_j x_j V_jf;  q_f = sum_j x_j^2 V_jf^2;  yhat = w0 + sum_j x_j w_j
          + 0.5 sum_f (s_f^2 - q_f);  e = yhat - y_i
    w0 -= step 2e;  w_j -= step (2e x_j + 2 lam w_j / deg_j)
    V_jf -= step (2e (x_j s_f - x_j^2 V_jf) + 2 lam V_jf / deg_j)
Softmax (dense one-hot Y), per row i:
    z_c = sum_j x_j W_jc;  e_c = exp(z_c);  S = sum_c e_c;  g_c = e_c / S - Y_ic
    W_jc -= step x_j g_c
"""
from libc.math cimport exp
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc


def fm_epoch(const int64_t[::1] indptr, const int32_t[::1] indices, const double[::1] data,
             const double[::1] y, double[::1] w0, double[::1] w, double[:, ::1] V,
             const double[::1] inv_deg, double step, double lam):
    cdef int64_t n = indptr.shape[0] - 1, k = V.shape[1], i, p, f, j
    cdef double* s = <double*>malloc(2 * k * sizeof(double))
    cdef double* q = s + k
    cdef double* Vp = &V[0, 0]
    cdef double* v
    cdef double x, lin, pair, e, g, r, xs
    with nogil:
        for i in range(n):
            for f in range(k):
                s[f] = 0.0
                q[f] = 0.0
            lin = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                x = data[p]
                v = Vp + indices[p] * k
                lin = lin + x * w[indices[p]]
                for f in range(k):
                    s[f] = s[f] + x * v[f]
                    q[f] = q[f] + x * x * v[f] * v[f]
            pair = 0.0
            for f in range(k):
                pair = pair + (s[f] * s[f] - q[f])
            e = w0[0] + lin + 0.5 * pair - y[i]
            g = 2.0 * e
            w0[0] = w0[0] - step * g
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                x = data[p]
                r = 2.0 * lam * inv_deg[j]
                w[j] = w[j] - step * (g * x + r * w[j])
                v = Vp + j * k
                xs = g * x * x
                for f in range(k):
                    v[f] = v[f] - step * (g * x * s[f] - xs * v[f] + r * v[f])
    free(s)


def softmax_epoch(const int64_t[::1] indptr, const int32_t[::1] indices,
                  const double[::1] data, const double[:, ::1] Y, double[:, ::1] W,
                  double step):
    cdef int64_t n = indptr.shape[0] - 1, K = W.shape[1], i, p, c
    cdef double* z = <double*>malloc(K * sizeof(double))
    cdef double* Wp = &W[0, 0]
    cdef double* row
    cdef double x, S, sx
    with nogil:
        for i in range(n):
            for c in range(K):
                z[c] = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                x = data[p]
                row = Wp + indices[p] * K
                for c in range(K):
                    z[c] = z[c] + x * row[c]
            S = 0.0
            for c in range(K):
                z[c] = exp(z[c])
                S = S + z[c]
            for c in range(K):
                z[c] = z[c] / S - Y[i, c]
            for p in range(indptr[i], indptr[i + 1]):
                sx = step * data[p]
                row = Wp + indices[p] * K
                for c in range(K):
                    row[c] = row[c] - sx * z[c]
    free(z)
