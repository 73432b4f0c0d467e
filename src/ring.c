/*
 * ring.c: a minimal io_uring in pure C (raw syscalls and <linux/io_uring.h>, no
 * liburing, no Python.h): make and map a ring, publish SQEs, reap CQEs, cancel what
 * is left, and notice a fork(). uring.c builds the read_batch/write_batch backend on
 * it; ring.h has the contract of each function.
 */
#define _GNU_SOURCE /* syscall(), MAP_POPULATE (Python.h sets it for the other units) */
#include "ring.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>
#include <sys/syscall.h>

/* Bumped in the child of every fork(): a ring made in another process is shared
 * memory with it and must not be touched. */
static unsigned tt_fork_gen;
static pthread_once_t tt_atfork_once = PTHREAD_ONCE_INIT;

static void
tt_on_fork_child(void)
{
    tt_fork_gen++;
}

static void
tt_register_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, tt_on_fork_child);
}

static int
tt_sys_setup(unsigned entries, struct io_uring_params *p)
{
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

int
tt_ring_enter_raw(int fd, unsigned submit, unsigned wait, unsigned flags, void *arg, size_t argsz)
{
    return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, arg, argsz);
}

int
tt_ring_register(int fd, unsigned op, void *arg, unsigned n)
{
    return (int)syscall(__NR_io_uring_register, fd, op, arg, n);
}

/* No GIL. Unmap and close (never retried); unregister the device file first when
 * `unregister` (the caller's process made the ring and no request is in flight). */
void
tt_ring_close(tt_ring *r, int unregister)
{
    if (r->fd < 0) {
        return;
    }
    if (unregister && r->files && !tt_ring_stale(r)) {
        (void)tt_ring_register(r->fd, IORING_UNREGISTER_FILES, NULL, 0);
    }
    if (r->sqes != NULL) {
        munmap(r->sqes, r->sqes_len);
    }
    if (r->rings != NULL) {
        munmap(r->rings, r->rings_len);
    }
    close(r->fd);
    r->fd = -1;
    r->sqes = NULL;
    r->rings = NULL;
    r->files = 0;
}

/* No GIL. Make a ring of TT_RING_ENTRIES with `flags`; register `devfd` as file 0
 * unless it is -1. 0, or -1 with errno and *what naming the failing call. */
int
tt_ring_open(tt_ring *r, unsigned flags, int devfd, const char **what)
{
    struct io_uring_params p;
    char *base;
    unsigned i, *array;
    int err;

    pthread_once(&tt_atfork_once, tt_register_atfork);
    memset(r, 0, sizeof(*r));
    memset(&p, 0, sizeof(p));
    r->fd = -1;
    p.flags = flags;
    *what = "io_uring_setup()";
    r->fd = tt_sys_setup(TT_RING_ENTRIES, &p);
    if (r->fd < 0) {
        return -1;
    }
    r->flags = flags;
    r->gen = tt_fork_gen;
    *what = "io_uring_setup() (features)";
    if (!(p.features & IORING_FEAT_SINGLE_MMAP) || !(p.features & IORING_FEAT_NODROP)) {
        err = EOPNOTSUPP; /* Linux < 5.5 */
        goto fail;
    }
    r->rings_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    if (r->rings_len < p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe)) {
        r->rings_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    }
    *what = "mmap(io_uring)";
    base = mmap(NULL, r->rings_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                IORING_OFF_SQ_RING);
    if (base == MAP_FAILED) {
        err = errno;
        goto fail;
    }
    r->rings = base;
    r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                   r->fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) {
        r->sqes = NULL;
        err = errno;
        goto fail;
    }
    r->khead = (unsigned *)(base + p.sq_off.head);
    r->ktail = (unsigned *)(base + p.sq_off.tail);
    r->sqmask = *(unsigned *)(base + p.sq_off.ring_mask);
    r->cqhead = (unsigned *)(base + p.cq_off.head);
    r->cqtail = (unsigned *)(base + p.cq_off.tail);
    r->cqmask = *(unsigned *)(base + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(base + p.cq_off.cqes);
    array = (unsigned *)(base + p.sq_off.array);
    for (i = 0; i < p.sq_entries; i++) {
        array[i] = i; /* SQE i sits in slot i */
    }
    r->tail = *r->ktail;
    if (devfd >= 0) {
        *what = "io_uring_register(IORING_REGISTER_FILES)";
        if (tt_ring_register(r->fd, IORING_REGISTER_FILES, &devfd, 1) < 0) {
            err = errno;
            goto fail;
        }
        r->files = 1;
    }
    return 0;
fail:
    tt_ring_close(r, 0);
    errno = err;
    return -1;
}

/* Publish n prepared SQEs and enter. Returns how many the kernel consumed (the
 * SQ head it advanced is the truth, also when a wait was interrupted), or -1 with
 * errno when it consumed none. SQEs it did not consume are taken back, so a later
 * enter cannot submit them. */
int
tt_ring_submit(tt_ring *r, unsigned n, unsigned wait, unsigned flags, void *arg, size_t argsz)
{
    unsigned start = r->tail, consumed;
    int ret, err = 0;
    r->tail += n;
    __atomic_store_n(r->ktail, r->tail, __ATOMIC_RELEASE);
    for (;;) {
        ret = tt_ring_enter_raw(r->fd, n, wait, flags, arg, argsz);
        err = errno;
        consumed = __atomic_load_n(r->khead, __ATOMIC_ACQUIRE) - start;
        if (ret >= 0 || err != EINTR || consumed > 0) {
            break;
        }
    }
    if (consumed < n) {
        r->tail = start + consumed;
        __atomic_store_n(r->ktail, r->tail, __ATOMIC_RELEASE);
    }
    if (consumed == 0) {
        errno = ret < 0 ? err : EBUSY;
        return -1;
    }
    return (int)consumed;
}

/* Take every CQE: res[user_data] for user_data < n. Returns how many. */
unsigned
tt_ring_reap(tt_ring *r, int *res, unsigned n)
{
    unsigned head = *r->cqhead, tail = __atomic_load_n(r->cqtail, __ATOMIC_ACQUIRE), got = 0;
    for (; head != tail; head++) {
        const struct io_uring_cqe *c = &r->cqes[head & r->cqmask];
        if (c->user_data < n) {
            res[c->user_data] = c->res;
            got++;
        }
    }
    __atomic_store_n(r->cqhead, head, __ATOMIC_RELEASE);
    return got;
}

/* The safety net when fewer CQEs than requests came back (a request did not
 * complete inline after all): cancel everything on the ring and wait until every
 * one of the `missing` has completed, so none writes into the arena later. */
void
tt_ring_drain(tt_ring *r, int *res, unsigned n, unsigned missing)
{
    struct io_uring_sqe *s = tt_ring_sqe(r, 0);
    int spins;
    s->opcode = IORING_OP_ASYNC_CANCEL;
    s->fd = -1;
    s->cancel_flags = IORING_ASYNC_CANCEL_ANY;
    s->user_data = TT_UD_CANCEL;
    (void)tt_ring_submit(r, 1, 0, 0, NULL, 0);
    for (spins = 0; missing > 0 && spins < 1000000; spins++) {
        unsigned got;
        (void)tt_ring_enter_raw(r->fd, 0, 1, IORING_ENTER_GETEVENTS, NULL, 0);
        got = tt_ring_reap(r, res, n);
        missing = got < missing ? missing - got : 0;
    }
    (void)tt_ring_reap(r, res, n);
}

/* Ring locked. A ring made before a fork() is the parent's: leave it to the
 * parent and make our own (rd: with the device file registered). 0 or -1. */
int
tt_ring_refork(tt_ring *r, unsigned flags, int devfd)
{
    const char *what;
    if (r->fd >= 0 && r->gen == tt_fork_gen) {
        return 0;
    }
    tt_ring_close(r, 0);
    return tt_ring_open(r, flags, devfd, &what);
}

int
tt_ring_stale(const tt_ring *r)
{
    return r->gen != tt_fork_gen;
}
