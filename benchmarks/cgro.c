/*
 * cgro.c: the C side of bench_coalesce.py, built (it includes src/gro.c, so the
 * floor can use gro.c's own checksum loop) into a shared library with cc -O2
 * -shared and called through ctypes, one call per timed run.
 *
 *   cgro_core(pkts, lens, n, out, stride, iters)   tt_coalesce_core() itself
 *   cgro_floor(pkts, lens, n, out, stride, iters)  the floor: what any coalescer
 *       must do per packet: verify the TCP checksum over the segment once (the
 *       same summing loop gro.c uses) and copy the payload once (memcpy).
 *
 * Both return nanoseconds per call (CLOCK_MONOTONIC over `iters` calls).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gro.c"

static double
now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

double cgro_core(const uint8_t **data, const size_t *lens, size_t n, uint8_t *out,
                 size_t stride, int iters);
double cgro_floor(const uint8_t **data, const size_t *lens, size_t n, uint8_t *out,
                  size_t stride, int iters);

double
cgro_core(const uint8_t **data, const size_t *lens, size_t n, uint8_t *out, size_t stride,
          int iters)
{
    tt_gro_pkt *pkts = malloc(n * sizeof(*pkts));
    void *scratch = malloc(tt_gro_scratch_size(n) + 8);
    uint32_t *sizes = malloc(n * sizeof(*sizes));
    tt_gro_plan plan;
    int err;
    double t0;
    for (size_t i = 0; i < n; i++) {
        pkts[i].data = data[i];
        pkts[i].len = lens[i];
    }
    t0 = now_ns();
    for (int r = 0; r < iters; r++) {
        if (tt_coalesce_core(pkts, n, TT_GRO_TCP | TT_GRO_UDP, 65535, 64, 10, out, n, stride,
                             0, stride, sizes, scratch, &plan, &err) < 0) {
            abort();
        }
    }
    t0 = (now_ns() - t0) / iters;
    free(pkts);
    free(scratch);
    free(sizes);
    return t0;
}

double
cgro_floor(const uint8_t **data, const size_t *lens, size_t n, uint8_t *out, size_t stride,
           int iters)
{
    volatile uint16_t sink = 0;
    double t0 = now_ns();
    for (int r = 0; r < iters; r++) {
        uint8_t *dst = out + 10 + 52;
        for (size_t i = 0; i < n; i++) {
            /* the segment after its IP header (20) checked, the payload copied */
            sink ^= tt_csum_fold(tt_gro_sum(data[i] + 20, lens[i] - 20, 0));
            memcpy(dst, data[i] + 52, lens[i] - 52);
            dst += lens[i] - 52;
            if ((size_t)(dst - out) > stride - 2048) {
                dst = out + 62;
            }
        }
    }
    (void)sink;
    return (now_ns() - t0) / iters;
}
