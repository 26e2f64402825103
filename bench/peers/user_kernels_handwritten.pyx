# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, infer_types=False
"""Hand-written serial SGD epochs of four user objectives that no shipped spec covers: the
yardsticks of bench/bench_user_kernels.py (its specs sit there). Each is the update a
competent user would write from the objective alone (typed memoryviews, raw row pointers, no
Python in the loop, the gradient at the old point, then the writes), the same rule, reg and
draws as the spec, so that both sides agree to rounding.

IRT 2PL, per response (s, q) with r in {0, 1}:
    d = theta_s - b_q;  z = a_q d;  e = sigmoid(z) - r
    a_q -= step (e d + 2 lam a_q / deg_q);  theta_s -= step (e a_q + 2 lam theta_s / deg_s)
    b_q -= step (-e a_q + 2 lam b_q / deg_q)
Poisson MF, per count (u, v):  eta = bu_u + <P_u, Q_v>;  e = exp(eta) - r
    bu_u -= step (e + 2 lam bu_u);  P_u -= step (e Q_v + 2 lam P_u);  Q_v -= step (e P_u + 2 lam Q_v)
CML (hinge on squared distances, one uniform negative j per visit, the trainer's counter-based
draw of (key, term, 0)):  m = |P_u - Q_j|^2 - |P_u - Q_i|^2;  a = 1 if m < 1 else 0
    P_u -= step (2a (Q_j - Q_i) + 2 lam P_u);  Q_j -= step (2a (P_u - Q_j) + 2 lam Q_j)
    Q_i -= step (-2a (P_u - Q_i) + 2 lam Q_i)
Multi-output Huber regression, per row i with values x_j:
    z_c = b_c + sum_j x_j W_jc;  g_c = huber'(z_c - Y_ic);  W_jc -= step (x_j g_c + 2 lam W_jc / deg_j)
    b_c -= step g_c
"""
from libc.math cimport exp, fabs
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc


cdef inline double sigmoid(double z) noexcept nogil:
    cdef double e
    if z >= 0:
        return 1.0 / (1.0 + exp(-z))
    e = exp(z)
    return e / (1.0 + e)


def irt_epoch(const int64_t[::1] indptr, const int32_t[::1] indices, const double[::1] r,
              double[::1] theta, double[::1] a, double[::1] b, const double[::1] inv_deg_s,
              const double[::1] inv_deg_q, double step, double lam):
    cdef int64_t n = indptr.shape[0] - 1, s, p, q
    cdef double th, aq, bq, d, e, rs, rq
    with nogil:
        for s in range(n):
            rs = 2.0 * lam * inv_deg_s[s]
            for p in range(indptr[s], indptr[s + 1]):
                q = indices[p]
                th = theta[s]
                aq = a[q]
                bq = b[q]
                d = th - bq
                e = sigmoid(aq * d) - r[p]
                rq = 2.0 * lam * inv_deg_q[q]
                a[q] = aq - step * (e * d + rq * aq)
                theta[s] = th - step * (e * aq + rs * th)
                b[q] = bq - step * (-e * aq + rq * bq)


def poisson_epoch(const int64_t[::1] indptr, const int32_t[::1] indices, const double[::1] r,
                  double[::1] bu, double[:, ::1] P, double[:, ::1] Q, double step, double lam):
    cdef int64_t n = indptr.shape[0] - 1, k = P.shape[1], u, p, f
    cdef double* pu
    cdef double* qv
    cdef double eta, e, x, y, l2 = 2.0 * lam
    with nogil:
        for u in range(n):
            pu = &P[u, 0]
            for p in range(indptr[u], indptr[u + 1]):
                qv = &Q[indices[p], 0]
                eta = bu[u]
                for f in range(k):
                    eta = eta + pu[f] * qv[f]
                e = exp(eta) - r[p]
                bu[u] = bu[u] - step * (e + l2 * bu[u])
                for f in range(k):
                    x = pu[f]
                    y = qv[f]
                    pu[f] = x - step * (e * y + l2 * x)
                    qv[f] = y - step * (e * x + l2 * y)


cdef inline uint64_t mix(uint64_t x) noexcept nogil:      # splitmix64's finaliser
    x = x + 0x9E3779B97F4A7C15ULL
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL
    return x ^ (x >> 31)


cdef extern from *:
    """
    static inline int64_t _uk_below(uint64_t bits, int64_t n) {
        return (int64_t)(((unsigned __int128)bits * (uint64_t)n) >> 64); }
    """
    int64_t _uk_below(uint64_t bits, int64_t n) nogil


def cml_epoch(const int64_t[::1] indptr, const int32_t[::1] indices, double[:, ::1] P,
              double[:, ::1] Q, int64_t key, double step, double lam):
    cdef int64_t n = indptr.shape[0] - 1, k = P.shape[1], nitems = Q.shape[0], u, p, f, j
    cdef double* pu
    cdef double* qi
    cdef double* qj
    cdef double dn, dp, c, act, x, yi, yj, l2 = 2.0 * lam
    with nogil:
        for u in range(n):
            pu = &P[u, 0]
            for p in range(indptr[u], indptr[u + 1]):
                j = _uk_below(mix(mix(<uint64_t>key ^ mix(<uint64_t>p)) + 0), nitems)
                qi = &Q[indices[p], 0]
                qj = &Q[j, 0]
                dn = 0.0
                dp = 0.0
                for f in range(k):
                    c = pu[f] - qj[f]
                    dn = dn + c * c
                    c = pu[f] - qi[f]
                    dp = dp + c * c
                act = 2.0 if dn - dp < 1.0 else 0.0
                for f in range(k):
                    x = pu[f]
                    yj = qj[f]
                    yi = qi[f]
                    pu[f] = x - step * (act * (yj - yi) + l2 * x)
                    qj[f] = yj - step * (act * (x - yj) + l2 * yj)
                    qi[f] = qi[f] - step * (l2 * yi - act * (x - yi))   # qi is qj when j == i


def multihuber_epoch(const int64_t[::1] indptr, const int32_t[::1] indices,
                     const double[::1] data, const double[:, ::1] Y, double[:, ::1] W,
                     double[::1] b, const double[::1] inv_deg, double step, double lam,
                     double delta):
    cdef int64_t n = indptr.shape[0] - 1, K = W.shape[1], i, p, c
    cdef double* g = <double*>malloc(K * sizeof(double))
    cdef double* row
    cdef double x, d, sx, rj
    with nogil:
        for i in range(n):
            for c in range(K):
                g[c] = b[c]
            for p in range(indptr[i], indptr[i + 1]):
                x = data[p]
                row = &W[indices[p], 0]
                for c in range(K):
                    g[c] = g[c] + x * row[c]
            for c in range(K):
                d = g[c] - Y[i, c]
                g[c] = d if fabs(d) <= delta else (delta if d > 0 else -delta)
            for p in range(indptr[i], indptr[i + 1]):
                sx = step * data[p]
                rj = step * 2.0 * lam * inv_deg[indices[p]]
                row = &W[indices[p], 0]
                for c in range(K):
                    row[c] = row[c] - (sx * g[c] + rj * row[c])
            for c in range(K):
                b[c] = b[c] - step * g[c]
    free(g)
