/* hogwild-dsl: the scalar functions, atomic add, global lock and projections every
   generated kernel module uses (included by templates/kernels.pyx.j2). */
#ifndef HOGWILD_HELPERS_H
#define HOGWILD_HELPERS_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
static inline double _hw_sq(double x) { return x * x; }
static inline double _hw_powi(double x, int n) { return __builtin_powi(x, n); }
static inline double _hw_sgn(double x) { return (double)((x > 0) - (x < 0)); }
static inline double _hw_sign(double x) { return (double)((x > 0) - (x < 0)); }
static inline double _hw_gt(double a, double b) { return a > b ? 1.0 : 0.0; }
/* d sqrt(x) / dx from s = sqrt(x): 0.5 / s, and the subgradient 0 at x = 0 (norm2 at 0) */
static inline double _hw_dsqrt(double s) { return s > 0 ? 0.5 / s : 0.0; }
static inline double _hw_relu(double x) { return x > 0 ? x : 0.0; }
static inline double _hw_hinge(double z) { return z < 1.0 ? 1.0 - z : 0.0; }
static inline double _hw_sqhinge(double z) { double m = z < 1.0 ? 1.0 - z : 0.0; return m * m; }
static inline double _hw_logistic(double z) {
    return z > 0 ? log1p(exp(-z)) : -z + log1p(exp(z)); }
static inline double _hw_softplus(double z) {
    return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }
static inline double _hw_sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z); return e / (1.0 + e); }
static inline double _hw_huber(double z, double d) {
    double a = fabs(z); return a <= d ? 0.5 * z * z : d * (a - 0.5 * d); }
static inline double _hw_huber_dz(double z, double d) {
    return fabs(z) <= d ? z : d * _hw_sgn(z); }
static inline double _hw_huber_dd(double z, double d) {
    double a = fabs(z); return a <= d ? 0.0 : a - d; }
static inline void _hw_atomic_add(double* p, double v) {
#ifdef _OPENMP
#pragma omp atomic
#endif
    *p += v;
}
static volatile int _hw_spin = 0;
static inline void _hw_lock(void) {
    while (__atomic_exchange_n(&_hw_spin, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&_hw_spin, __ATOMIC_RELAXED)) {}
}
static inline void _hw_unlock(void) { __atomic_store_n(&_hw_spin, 0, __ATOMIC_RELEASE); }
static int _hw_desc(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b; return (x < y) - (x > y); }
/* Euclidean projection onto the probability simplex (sort-based, exact). */
static inline void _hw_project_simplex(double* v, int64_t n, double* u) {
    memcpy(u, v, (size_t)n * sizeof(double));
    if (n <= 32) {             /* short rows (labels): insertion sort, no calls */
        for (int64_t i = 1; i < n; i++) {
            double x = u[i]; int64_t j = i - 1;
            while (j >= 0 && u[j] < x) { u[j + 1] = u[j]; j--; }
            u[j + 1] = x;
        }
    } else {
        qsort(u, (size_t)n, sizeof(double), _hw_desc);
    }
    double css = 0.0, theta = 0.0;
    for (int64_t i = 0; i < n; i++) {
        css += u[i];
        double t = (css - 1.0) / (double)(i + 1);
        if (u[i] - t > 0) theta = t;
    }
    for (int64_t i = 0; i < n; i++) v[i] = v[i] - theta > 0 ? v[i] - theta : 0.0;
}
static inline void _hw_project_ball(double* v, int64_t n, double r) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += v[i] * v[i];
    if (s > r * r) { double f = r / sqrt(s); for (int64_t i = 0; i < n; i++) v[i] *= f; }
}
#endif
