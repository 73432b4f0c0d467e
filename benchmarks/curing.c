/* curing.c: the C io_uring reference loops for bench_io.py ("C io_uring read/write").
 *
 * The best C can do through io_uring with the design tuntap's backend uses
 * (benchmarks/uring_proto.c chose it): exactly K packets in rounds of
 * min(64, K - done) SQEs per io_uring_enter, RWF_NOWAIT;
 *   read:  READ SQEs into a 64 x 2048-byte arena, the TUN fd a registered file;
 *   write: WRITE SQEs of one packet, linked (IOSQE_IO_LINK), on a
 *          SINGLE_ISSUER | DEFER_TASKRUN ring (the semantics write_batch needs).
 * Unlike read_batch it knows K, so it never pays an EAGAIN completion, and it has no
 * Python, no GIL and no first read() per batch. Raw syscalls, <linux/io_uring.h>.
 *
 * bench_io.py builds it with `cc -O2 -shared -fPIC` into benchmarks/_build/ and calls
 *   int curing_run(int fd, int writing, long k, size_t size, long long *ns,
 *                  long long *bytes)
 * through ctypes (GIL released) from one thread; the packet to write goes into
 * curing_buffer() first. 0, or -1 with errno. A ring is made per fd on first use.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define N 64
#define SLOT 2048

struct ring {
    int fd, devfd, writing;
    unsigned *khead, *ktail, *cqhead, *cqtail, sqmask, cqmask, tail;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static struct ring rings[8];
static int nrings;
static char arena[N * SLOT];
static char packet[65536];

char *curing_buffer(void);
int curing_run(int fd, int writing, long k, size_t size, long long *ns, long long *bytes);

char *curing_buffer(void)
{
    return packet;
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct ring *get_ring(int devfd, int writing)
{
    struct io_uring_params p;
    struct ring *r;
    char *base;
    size_t len;
    for (int i = 0; i < nrings; i++)
        if (rings[i].devfd == devfd && rings[i].writing == writing)
            return &rings[i];
    if (nrings == 8)
        return errno = ENOSPC, NULL;
    r = &rings[nrings];
    memset(&p, 0, sizeof p);
    if (writing)
        p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    r->fd = (int)syscall(__NR_io_uring_setup, N, &p);
    if (r->fd < 0)
        return NULL;
    len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    if (len < p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe))
        len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                IORING_OFF_SQ_RING);
    r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (base == MAP_FAILED || r->sqes == MAP_FAILED)
        return NULL;
    r->khead = (unsigned *)(base + p.sq_off.head);
    r->ktail = (unsigned *)(base + p.sq_off.tail);
    r->sqmask = *(unsigned *)(base + p.sq_off.ring_mask);
    r->cqhead = (unsigned *)(base + p.cq_off.head);
    r->cqtail = (unsigned *)(base + p.cq_off.tail);
    r->cqmask = *(unsigned *)(base + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(base + p.cq_off.cqes);
    for (unsigned i = 0; i < p.sq_entries; i++)
        ((unsigned *)(base + p.sq_off.array))[i] = i;
    r->tail = *r->ktail;
    if (!writing && syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_FILES, &devfd, 1) < 0)
        return NULL;
    r->devfd = devfd;
    r->writing = writing;
    nrings++;
    return r;
}

/* One round of n SQEs; returns the bytes moved, or -1 with errno (a short count of
 * packets is an error here: K were queued). */
static long long round_trip(struct ring *r, unsigned n, size_t size)
{
    long long total = 0;
    unsigned got = 0;
    for (unsigned k = 0; k < n; k++) {
        struct io_uring_sqe *s = &r->sqes[(r->tail + k) & r->sqmask];
        memset(s, 0, sizeof *s);
        s->opcode = r->writing ? IORING_OP_WRITE : IORING_OP_READ;
        s->fd = r->writing ? r->devfd : 0;
        s->flags = r->writing ? (k + 1 < n ? IOSQE_IO_LINK : 0) : IOSQE_FIXED_FILE;
        s->addr = (uint64_t)(uintptr_t)(r->writing ? packet : arena + k * SLOT);
        s->len = (unsigned)size;
        s->rw_flags = RWF_NOWAIT;
        s->user_data = k;
    }
    r->tail += n;
    __atomic_store_n(r->ktail, r->tail, __ATOMIC_RELEASE);
    while (got < n) {
        unsigned head = *r->cqhead, tail;
        if (syscall(__NR_io_uring_enter, r->fd, got ? 0 : n, r->writing ? n - got : 0,
                    r->writing ? IORING_ENTER_GETEVENTS : 0, NULL, 0) < 0 && errno != EINTR)
            return -1;
        tail = __atomic_load_n(r->cqtail, __ATOMIC_ACQUIRE);
        for (; head != tail; head++, got++) {
            int res = r->cqes[head & r->cqmask].res;
            if (res < 0) {
                __atomic_store_n(r->cqhead, tail, __ATOMIC_RELEASE);
                return errno = -res, -1;
            }
            total += res;
        }
        __atomic_store_n(r->cqhead, head, __ATOMIC_RELEASE);
    }
    return total;
}

int curing_run(int fd, int writing, long k, size_t size, long long *ns, long long *bytes)
{
    struct ring *r;
    long long t0, total = 0;
    long done = 0;
    if (size == 0 || size > (writing ? sizeof packet : SLOT))
        return errno = EINVAL, -1;
    r = get_ring(fd, writing);
    if (r == NULL)
        return -1;
    if (!writing)
        memset(arena, 0, sizeof arena);
    t0 = now_ns();
    while (done < k) {
        unsigned n = k - done < N ? (unsigned)(k - done) : N;
        long long b = round_trip(r, n, size);
        if (b < 0)
            return -1;
        total += b;
        done += n;
    }
    *ns = now_ns() - t0;
    *bytes = total;
    return 0;
}
