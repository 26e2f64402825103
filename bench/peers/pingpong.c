/* Cache-line ping-pong probe: two threads, pinned to two different CPUs, pass one
 * 64-byte-aligned atomic flag back and forth.  Returns the mean one-way hand-off
 * latency in nanoseconds (total time / (2 * iters)), or a negative value on error.
 * Built by bench/peers/pingpong.py with gcc -O2 -pthread -shared -fPIC. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

typedef struct {
    _Alignas(64) _Atomic long flag;
    char pad[64 - sizeof(long)];
    _Alignas(64) _Atomic int ready;
    long iters;
    int cpu;
} shared_t;

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *ponger(void *arg) {
    shared_t *s = (shared_t *)arg;
    pin(s->cpu);
    atomic_store_explicit(&s->ready, 1, memory_order_release);
    for (long i = 0; i < s->iters; i++) {
        long want = 2 * i + 1;
        while (atomic_load_explicit(&s->flag, memory_order_acquire) != want)
            ;
        atomic_store_explicit(&s->flag, want + 1, memory_order_release);
    }
    return 0;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* cpu_a / cpu_b: CPUs to pin the two threads to (-1: leave unpinned). */
double pingpong_ns(long iters, int cpu_a, int cpu_b) {
    static shared_t s;  /* static: 64-byte alignment guaranteed */
    if (iters < 1) return -1.0;
    atomic_store(&s.flag, 0);
    atomic_store(&s.ready, 0);
    s.iters = iters;
    s.cpu = cpu_b;

    /* pin the caller for the duration, restore its mask afterwards */
    cpu_set_t old;
    int have_old = pthread_getaffinity_np(pthread_self(), sizeof(old), &old) == 0;
    pin(cpu_a);

    pthread_t th;
    if (pthread_create(&th, 0, ponger, &s) != 0) return -2.0;
    while (!atomic_load_explicit(&s.ready, memory_order_acquire))
        ;
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        long mine = 2 * i;
        while (atomic_load_explicit(&s.flag, memory_order_acquire) != mine)
            ;
        atomic_store_explicit(&s.flag, mine + 1, memory_order_release);
    }
    while (atomic_load_explicit(&s.flag, memory_order_acquire) != 2 * iters)
        ;
    double t1 = now_ns();
    pthread_join(th, 0);
    if (have_old) pthread_setaffinity_np(pthread_self(), sizeof(old), &old);
    return (t1 - t0) / (2.0 * (double)iters);
}
