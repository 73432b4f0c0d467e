/* The C reference for benchmarks/bench_capi.py: the per-packet work of
 * examples/cython/ttl_forward.pyx (IPv4 TTL - 1, header checksum recomputed) with
 * plain system calls, no Python, no tuntap (only its checksum code, src/csum.h).
 *
 *   long cttl_forward(int src, int dst, long count, int batch)
 *       Read up to `batch` packets from the non-blocking fd src (until EAGAIN), rewrite
 *       each, write the kept ones to dst; until `count` packets were read or src has
 *       nothing more. Returns the packets read, or -errno.
 *   long cttl_rewrite(char *arena, const uint32_t *sizes, long n, long stride,
 *                     long headroom, long passes)
 *       The rewrite alone, `passes` times over n packets of a PacketBatch arena.
 *       Returns the packets kept by the last pass.
 *
 * Build: cc -O2 -shared -fPIC -o libcttl.so cttl.c  (bench_capi.py does it in _build/)
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/csum.h"

#define MAXBATCH 256
#define SLOT 2048

/* The same work as ttl_forward.pyx, with the same checksum code (tuntap.checksum's,
 * which the C API exports and the Python loop calls), inlined here. */
static int
rewrite(unsigned char *p, size_t n)
{
    size_t ihl;
    uint16_t sum;

    if (n < 20 || (p[0] >> 4) != 4) {
        return 0;
    }
    ihl = (size_t)(p[0] & 15) * 4;
    if (ihl < 20 || ihl > n || p[8] <= 1) {
        return 0;
    }
    p[8]--;
    p[10] = p[11] = 0;
    sum = tt_checksum_be(p, ihl);
    p[10] = (unsigned char)(sum >> 8);
    p[11] = (unsigned char)sum;
    return 1;
}

long
cttl_forward(int src, int dst, long count, int batch)
{
    unsigned char (*buf)[SLOT];
    size_t len[MAXBATCH];
    long got = 0;

    if (batch < 1 || batch > MAXBATCH) {
        return -EINVAL;
    }
    buf = malloc((size_t)batch * SLOT); /* one per call: threads forward side by side */
    if (buf == NULL) {
        return -ENOMEM;
    }
    while (got < count) {
        int n = 0, kept = 0, i;
        while (n < batch && got + n < count) {
            ssize_t r = read(src, buf[n], SLOT);
            if (r < 0) {
                break;
            }
            len[n++] = (size_t)r;
        }
        if (n == 0) {
            got = errno == EAGAIN ? got : -errno;
            break;
        }
        for (i = 0; i < n; i++) {
            if (rewrite(buf[i], len[i])) {
                if (kept != i) {
                    memcpy(buf[kept], buf[i], len[i]);
                    len[kept] = len[i];
                }
                kept++;
            }
        }
        for (i = 0; i < kept; i++) {
            if (write(dst, buf[i], len[i]) < 0) {
                n = -errno;
                break;
            }
        }
        if (n < 0) {
            got = n;
            break;
        }
        got += n;
    }
    free(buf);
    return got;
}

long
cttl_rewrite(char *arena, const uint32_t *sizes, long n, long stride, long headroom,
             long passes)
{
    long p, i, kept = 0;
    for (p = 0; p < passes; p++) {
        kept = 0;
        for (i = 0; i < n; i++) {
            kept += rewrite((unsigned char *)arena + i * stride + headroom, sizes[i]);
        }
    }
    return kept;
}
