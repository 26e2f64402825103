/* hogwild-dsl: the scalar functions, atomic add, global lock and projections every
   generated kernel module uses (included by templates/kernels.pyx.j2). */
#ifndef HOGWILD_HELPERS_H
#define HOGWILD_HELPERS_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
/* a thread's scratch row, which nothing else points into: declared so, the update that uses
   it needs no run-time check that it overlaps a param row (gcc versions loops on that) */
typedef double* __restrict__ _hw_scratch;
static inline double _hw_sq(double x) { return x * x; }
static inline double _hw_powi(double x, int n) { return __builtin_powi(x, n); }
/* the same in float: an update's per-coordinate arithmetic on float32 storage */
static inline float _hw_sqf(float x) { return x * x; }
static inline float _hw_powif(float x, int n) { return __builtin_powif(x, n); }
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
/* Draws of `sample` lines: a counter-based generator (splitmix64 of the key of the epoch, the
   term and the draw's number), so each thread draws independently, with no state, and a draw
   depends only on (key, term, number): threads=1 and a seed reproduce every draw. */
static inline uint64_t _hw_mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31); }
static inline uint64_t _hw_bits(int64_t key, int64_t t, int64_t which) {
    return _hw_mix(_hw_mix((uint64_t)key ^ _hw_mix((uint64_t)t)) + (uint64_t)which); }
static inline int64_t _hw_below(uint64_t bits, int64_t n) {     /* uniform in [0, n) */
    return (int64_t)(((unsigned __int128)bits * (uint64_t)n) >> 64); }
static inline int64_t _hw_draw(int64_t key, int64_t t, int64_t which, int64_t n) {
    return _hw_below(_hw_bits(key, t, which), n); }
/* Walker's alias method: O(1) per draw from the table built at fit time. */
static inline int64_t _hw_draw_alias(int64_t key, int64_t t, int64_t which, int64_t n,
                                     const double* prob, const int64_t* alias) {
    uint64_t b = _hw_bits(key, t, which);
    int64_t k = _hw_below(b, n);
    double u = (double)(_hw_mix(b) >> 11) * (1.0 / 9007199254740992.0);
    return u < prob[k] ? k : alias[k]; }
static inline void _hw_atomic_add(double* p, double v) {
#ifdef _OPENMP
#pragma omp atomic
#endif
    *p += v;
}
/* Hot rows on per-thread replicas (sync="hogwild", several threads): `map[row]` is where the
   row's replica sits on this thread's replicas `own`, or -1 for a row read and written in the
   shared param. Chosen without a branch: hot and shared rows interleave at random, and a
   branch (or a vectorised gather of both) made the updates 2-3x slower. */
static inline double* _hw_row(double* shared, double* own, const int32_t* map, int64_t row,
                              int64_t length) {
    int32_t at = map[row];
    uintptr_t cold = (uintptr_t)(intptr_t)(at >> 31);        /* all ones where at == -1 */
    uintptr_t hot_row = (uintptr_t)own + (uintptr_t)((intptr_t)at * (intptr_t)sizeof(double));
    return (double*)((hot_row & ~cold) | ((uintptr_t)(shared + row * length) & cold)); }
/* A thread's merge of its replicas `own` (`seen`: their values at its last merge) into the
   shared hot values: `weight` times each change since then is added (atomically: other
   threads merge at the same time, and no update is lost), then the thread takes the merged
   values. A weight of 1/threads makes the shared values follow the mean of the threads' paths
   (DimmWitted's model averaging); 1 adds every step, computed up to threads x merge interval
   terms late. */
static inline void _hw_merge(double* own, double* seen, double* shared, int64_t n,
                             double weight) {
    for (int64_t e = 0; e < n; e++) {
        double change = own[e] - seen[e];
        if (change != 0.0) _hw_atomic_add(&shared[e], weight * change);
        double now = shared[e];
        own[e] = now;
        seen[e] = now;
    }
}
/* A thread's merge of its copies of the params replicated whole, value by value: `own` (its
   copy; its values at the thread's last merge `total` values further) at the n offsets `at`,
   the param's value at the address `where` of each. `weight` times each change since the last
   merge is added atomically (threads merge at once, none waits for another: a merge put off
   behind a lock let a thread run on ever staler copies, and 8 threads diverged), then the
   thread takes the merged value, the other threads' changes in it. */
static inline double _hw_merged(double* shared, double change) {
    double out;
    if (change == 0.0) return *shared;
#ifdef _OPENMP
#pragma omp atomic capture
#endif
    { *shared += change; out = *shared; }
    return out;
}
static inline float _hw_merged_f(float* shared, double change) {
    float out, add = (float)change;
    if (change == 0.0) return *shared;
#ifdef _OPENMP
#pragma omp atomic capture
#endif
    { *shared += add; out = *shared; }
    return out;
}
static inline void _hw_merge_at(double* own, int64_t total, const int64_t* at,
                                const uintptr_t* where, int64_t n, double weight) {
    for (int64_t e = 0; e < n; e++) {
        double* mine = own + at[e];
        double now = _hw_merged((double*)where[e], weight * (mine[0] - mine[total]));
        mine[0] = now;
        mine[total] = now;
    }
}
/* The same over n consecutive values of one param (a thread's last merge: all of them). */
static inline void _hw_merge_run(double* own, int64_t total, double* shared, int64_t n,
                                 double weight) {
    for (int64_t e = 0; e < n; e++) {
        double now = _hw_merged(shared + e, weight * (own[e] - own[total + e]));
        own[e] = now;
        own[total + e] = now;
    }
}
static inline void _hw_merge_at_f(float* own, int64_t total, const int64_t* at,
                                  const uintptr_t* where, int64_t n, double weight) {
    for (int64_t e = 0; e < n; e++) {
        float* mine = own + at[e];
        float now = _hw_merged_f((float*)where[e], weight * ((double)mine[0] - (double)mine[total]));
        mine[0] = now;
        mine[total] = now;
    }
}
static inline void _hw_merge_run_f(float* own, int64_t total, float* shared, int64_t n,
                                   double weight) {
    for (int64_t e = 0; e < n; e++) {
        float now = _hw_merged_f(shared + e, weight * ((double)own[e] - (double)own[total + e]));
        own[e] = now;
        own[total + e] = now;
    }
}
/* `*p += v`, returning the new value (an optimizer's running sum); atomically under
   sync atomic (an atomic capture: the value includes every thread's adds so far). */
static inline double _hw_add_fetch(double* p, double v) { *p += v; return *p; }
static inline double _hw_atomic_add_fetch(double* p, double v) {
    double out;
#ifdef _OPENMP
#pragma omp atomic capture
#endif
    { *p += v; out = *p; }
    return out;
}
/* The same on float storage (dtype="float32": params, data values and state in single
   precision), in float: a double argument is rounded once at the call, and the float
   returned is the stored value itself (a float32 AdaGrad step then takes a float sqrt and a
   float division per coordinate, no conversion both ways). */
static inline void _hw_atomic_add_f(float* p, float v) {
#ifdef _OPENMP
#pragma omp atomic
#endif
    *p += v;
}
static inline float _hw_add_fetch_f(float* p, float v) { *p += v; return *p; }
static inline float _hw_atomic_add_fetch_f(float* p, float v) {
    float out;
#ifdef _OPENMP
#pragma omp atomic capture
#endif
    { *p += v; out = *p; }
    return out;
}
static inline float* _hw_row_f(float* shared, float* own, const int32_t* map, int64_t row,
                               int64_t length) {
    int32_t at = map[row];
    uintptr_t cold = (uintptr_t)(intptr_t)(at >> 31);
    uintptr_t hot_row = (uintptr_t)own + (uintptr_t)((intptr_t)at * (intptr_t)sizeof(float));
    return (float*)((hot_row & ~cold) | ((uintptr_t)(shared + row * length) & cold)); }
static inline void _hw_merge_f(float* own, float* seen, double* shared, int64_t n,
                               double weight) {
    for (int64_t e = 0; e < n; e++) {
        double change = (double)own[e] - (double)seen[e];
        if (change != 0.0) _hw_atomic_add(&shared[e], weight * change);
        float now = (float)shared[e];
        own[e] = now;
        seen[e] = now;
    }
}
static volatile int _hw_spin = 0;
static inline void _hw_lock(void) {
    while (__atomic_exchange_n(&_hw_spin, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&_hw_spin, __ATOMIC_RELAXED)) {}
}
static inline void _hw_unlock(void) { __atomic_store_n(&_hw_spin, 0, __ATOMIC_RELEASE); }
static int _hw_desc(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b; return (x < y) - (x > y); }
/* Euclidean projection onto the probability simplex (sort-based, exact): the threshold
   theta of the values copied into u (sorted there, largest first). */
static inline double _hw_simplex_theta(double* u, int64_t n) {
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
    return theta;
}
static inline void _hw_project_simplex(double* v, int64_t n, double* u) {
    memcpy(u, v, (size_t)n * sizeof(double));
    double theta = _hw_simplex_theta(u, n);
    for (int64_t i = 0; i < n; i++) v[i] = v[i] - theta > 0 ? v[i] - theta : 0.0;
}
static inline void _hw_project_ball(double* v, int64_t n, double r) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += v[i] * v[i];
    if (s > r * r) { double f = r / sqrt(s); for (int64_t i = 0; i < n; i++) v[i] *= f; }
}
/* The projections of a float row: the sums in double, each value rounded once. */
static inline void _hw_project_simplex_f(float* v, int64_t n, double* u) {
    for (int64_t i = 0; i < n; i++) u[i] = v[i];
    double theta = _hw_simplex_theta(u, n);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(v[i] - theta > 0 ? v[i] - theta : 0.0);
}
static inline void _hw_project_ball_f(float* v, int64_t n, double r) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)v[i] * v[i];
    if (s > r * r) {
        double f = r / sqrt(s);
        for (int64_t i = 0; i < n; i++) v[i] = (float)(v[i] * f);
    }
}
#endif
