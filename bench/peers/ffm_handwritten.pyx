# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, infer_types=False
"""Hand-written serial SGD epoch of the field-aware FM of specs/ffm.hog: the yardstick of
bench/bench_ffm.py. The same update the compiler derives (the gradient at the old point),
written as libffm writes it: the pairs a < b of a row once, each pair reading and writing its
two latent vectors in one pass. Exact for rows whose nonzeros lie in distinct fields (one
feature per field, as in libffm's data): there each V[j, g] is touched by at most one pair.

Per row i with nonzeros (j_a, x_a) of fields g_a = f[j_a]:
    z = w0 + sum_a x_a w[j_a] + sum_{a<b} x_a x_b <V[j_a, g_b], V[j_b, g_a]>
    kappa = d logistic(y z) / dz = -y sigmoid(-y z);   r_a = 2 lam / deg(j_a)
    w0 -= step kappa;   w[j_a] -= step (kappa x_a + r_a w[j_a])
    V[j_a, g_b] -= step (kappa x_a x_b V[j_b, g_a] + r_a V[j_a, g_b])   (a != b)
    V[j_a, g] -= step r_a V[j_a, g]        (every other field g: reg l2 on V[X[i]])
"""
from libc.math cimport exp
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport calloc, free


cdef inline double _sigmoid(double x) noexcept nogil:
    cdef double e
    if x >= 0:
        return 1.0 / (1.0 + exp(-x))
    e = exp(x)
    return e / (1.0 + e)


def ffm_epoch(const int64_t[::1] indptr, const int32_t[::1] indices, const double[::1] data,
              const double[::1] y, const int64_t[::1] field, double[::1] w0, double[::1] w,
              double[:, :, ::1] V, const double[::1] inv_deg, double step, double lam):
    cdef int64_t n = indptr.shape[0] - 1, F = V.shape[1], k = V.shape[2]
    cdef int64_t i, a, b, c, g, ja, jb, ga, gb, start, end
    cdef double* Vp = &V[0, 0, 0]
    cdef double* va
    cdef double* vb
    cdef double z, dot, kappa, xa, xb, h, ra, rb, tmp, shrink
    cdef char* paired = <char*>calloc(F if F > 0 else 1, 1)
    with nogil:
        for i in range(n):
            start, end = indptr[i], indptr[i + 1]
            z = w0[0]
            for a in range(start, end):
                z = z + data[a] * w[indices[a]]
            for a in range(start, end):
                ja, ga = indices[a], field[indices[a]]
                for b in range(a + 1, end):
                    jb, gb = indices[b], field[indices[b]]
                    va = Vp + (ja * F + gb) * k
                    vb = Vp + (jb * F + ga) * k
                    dot = 0.0
                    for c in range(k):
                        dot = dot + va[c] * vb[c]
                    z = z + data[a] * data[b] * dot
            kappa = -y[i] * _sigmoid(-y[i] * z)
            w0[0] = w0[0] - step * kappa
            for a in range(start, end):
                ja = indices[a]
                w[ja] = w[ja] - step * (kappa * data[a] + 2.0 * lam * inv_deg[ja] * w[ja])
            for a in range(start, end):
                ja, ga, xa = indices[a], field[indices[a]], data[a]
                ra = 2.0 * lam * inv_deg[ja]
                for b in range(a + 1, end):
                    jb, gb, xb = indices[b], field[indices[b]], data[b]
                    rb = 2.0 * lam * inv_deg[jb]
                    va = Vp + (ja * F + gb) * k
                    vb = Vp + (jb * F + ga) * k
                    h = step * kappa * xa * xb
                    for c in range(k):
                        tmp = va[c]
                        va[c] = tmp - (h * vb[c] + step * ra * tmp)
                        vb[c] = vb[c] - (h * tmp + step * rb * vb[c])
            for a in range(start, end):       # the reg of the fields no pair touched
                ja, ga = indices[a], field[indices[a]]
                for b in range(start, end):
                    if b != a:
                        paired[field[indices[b]]] = 1
                shrink = step * 2.0 * lam * inv_deg[ja]
                for g in range(F):
                    if not paired[g]:
                        va = Vp + (ja * F + g) * k
                        for c in range(k):
                            va[c] = va[c] - shrink * va[c]
                    paired[g] = 0
    free(paired)
