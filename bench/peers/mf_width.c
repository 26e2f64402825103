/* The MF update of the generated kernels (bench_kernels' MC_SPEC: sums in double, each
   written coordinate in the storage type REAL), rank K, written out in C so that one rank and
   one vector width can be compiled at a time: bench_kernels.py --vector-widths times it with
   the build's flags plus -mprefer-vector-width=512 or 256 (lower.vector_bits' choice).
   Prints the best of 6 epochs' thread CPU time in seconds; the data are random, rows in
   order of users (as order="chunks" visits them), 114M / K terms' worth of work. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
#ifndef REAL
#define REAL double
#endif
#ifndef K
#define K 20
#endif
static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
__attribute__((noinline)) static void epoch(REAL* L, REAL* R, const int32_t* rows,
        const int32_t* cols, const REAL* vals, int64_t n, double step) {
    for (int64_t t = 0; t < n; t++) {
        int64_t u = rows[t], v = cols[t];
        double c1 = step * 0.04, s = 0.0;
        for (int k = 0; k < K; k++) s = s + ((double)L[u * K + k]) * ((double)R[v * K + k]);
        double c3 = (step * 2.0) * (s - (double)vals[t]);
        for (int k = 0; k < K; k++) {
            REAL o4 = L[u * K + k], o5 = R[v * K + k];
            REAL g6 = ((REAL)c1) * o4 + ((REAL)c3) * o5;
            REAL g7 = ((REAL)c1) * o5 + ((REAL)c3) * o4;
            L[u * K + k] = o4 - g6;
            R[v * K + k] = o5 - g7;
        }
    }
}
int main(void) {
    int64_t nu = 480000 * 20 / K, ni = 17770, n = 5700000 * 20 / K;
    REAL *L = malloc(sizeof(REAL) * nu * K), *R = malloc(sizeof(REAL) * ni * K);
    REAL *vals = malloc(sizeof(REAL) * n);
    int32_t *rows = malloc(4 * n), *cols = malloc(4 * n);
    if (!L || !R || !vals || !rows || !cols) return 1;
    srand(1);
    for (int64_t i = 0; i < nu * K; i++) L[i] = (rand() / (double)RAND_MAX - 0.5) * 0.2;
    for (int64_t i = 0; i < ni * K; i++) R[i] = (rand() / (double)RAND_MAX - 0.5) * 0.2;
    for (int64_t t = 0; t < n; t++) {
        rows[t] = (int32_t)(t * nu / n);
        cols[t] = rand() % ni;
        vals[t] = 1 + rand() % 5;
    }
    double best = 1e9;
    for (int e = 0; e < 6; e++) {
        double a = cpu();
        epoch(L, R, rows, cols, vals, n, 0.001);
        double b = cpu() - a;
        if (b < best) best = b;
    }
    printf("%.6f %g\n", best, (double)L[12345 % (nu * K)]);
    return 0;
}
