/* A small STREAM-like reference (copy, scale, add, triad on doubles), lpulab's own.
 *
 *   stream N NTIMES REPS [KERNEL]  -> one JSON line: per kernel, the seconds of each timed sample
 *
 * Each sample runs the kernel REPS times over arrays of N doubles; byte counts follow
 * STREAM (copy/scale 16 B per element, add/triad 24 B). Threads: OpenMP, OMP_NUM_THREADS.
 * The first sample is a warm-up and is not reported.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

#define BARRIER() __asm__ __volatile__("" ::: "memory")
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s N NTIMES REPS [copy|scale|add|triad]\n", argv[0]);
        return 2;
    }
    const char *only = argc == 5 ? argv[4] : NULL;
    long n = atol(argv[1]);
    int ntimes = atoi(argv[2]), reps = atoi(argv[3]);
    double *a = aligned_alloc(64, ((n * sizeof(double) + 63) / 64) * 64);
    double *b = aligned_alloc(64, ((n * sizeof(double) + 63) / 64) * 64);
    double *c = aligned_alloc(64, ((n * sizeof(double) + 63) / 64) * 64);
    if (!a || !b || !c) {
        fprintf(stderr, "allocation failed\n");
        return 1;
    }
    const double s = 3.0;
    long i;
#pragma omp parallel for schedule(static)
    for (i = 0; i < n; i++) { a[i] = 1.0; b[i] = 2.0; c[i] = 0.0; }
    double *t = malloc(sizeof(double) * 4 * (ntimes + 1));
    for (int k = 0; k <= ntimes; k++) {
        double t0 = now();
        if (!only || !strcmp(only, "copy"))
            for (int r = 0; r < reps; r++) {
#pragma omp parallel for schedule(static)
                for (i = 0; i < n; i++) c[i] = a[i];
                BARRIER();
            }
        double t1 = now();
        if (!only || !strcmp(only, "scale"))
            for (int r = 0; r < reps; r++) {
#pragma omp parallel for schedule(static)
                for (i = 0; i < n; i++) b[i] = s * c[i];
                BARRIER();
            }
        double t2 = now();
        if (!only || !strcmp(only, "add"))
            for (int r = 0; r < reps; r++) {
#pragma omp parallel for schedule(static)
                for (i = 0; i < n; i++) c[i] = a[i] + b[i];
                BARRIER();
            }
        double t3 = now();
        if (!only || !strcmp(only, "triad"))
            for (int r = 0; r < reps; r++) {
#pragma omp parallel for schedule(static)
                for (i = 0; i < n; i++) a[i] = b[i] + s * c[i];
                BARRIER();
            }
        double t4 = now();
        t[4 * k + 0] = t1 - t0; t[4 * k + 1] = t2 - t1; t[4 * k + 2] = t3 - t2; t[4 * k + 3] = t4 - t3;
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    const char *names[4] = {"copy", "scale", "add", "triad"};
    printf("{\"n\": %ld, \"reps\": %d, \"threads\": %d", n, reps, threads);
    for (int j = 0; j < 4; j++) {
        printf(", \"%s\": [", names[j]);
        for (int k = 1; k <= ntimes; k++) printf("%s%.9g", k > 1 ? ", " : "", t[4 * k + j]);
        printf("]");
    }
    printf(", \"check\": %.17g}\n", a[n / 2] + b[n / 3] + c[n - 1]);
    free(a); free(b); free(c); free(t);
    return 0;
}
