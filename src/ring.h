/*
 * ring.h: a minimal io_uring in pure C (ring.c; no Python.h). One tt_ring is one
 * io_uring instance of TT_RING_ENTRIES SQEs, mapped with IORING_FEAT_SINGLE_MMAP
 * (Linux 5.4+). Nothing here waits for I/O unless told to (tt_ring_submit's `wait`).
 * A ring is used by one thread at a time (tt_ring_trylock); after a fork() the
 * child's copy is stale (shared memory with the parent) and must only be closed.
 */
#ifndef TT_RING_H
#define TT_RING_H

#include <stddef.h>
#include <string.h>

#include <linux/io_uring.h>

#define TT_RING_ENTRIES 64 /* SQEs per ring */
#define TT_UD_CANCEL 0xffffffffu /* user_data of tt_ring_drain's cancel */

typedef struct {
    int fd;                      /* the ring; -1: none */
    unsigned flags;              /* io_uring_setup flags */
    unsigned *khead, *ktail;     /* SQ head (kernel) and tail (ours, published) */
    unsigned *cqhead, *cqtail;
    unsigned sqmask, cqmask, tail;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *rings;
    size_t rings_len, sqes_len;
    unsigned gen;                /* the fork generation when made */
    int lock;                    /* atomic try-lock: the ring's one user */
    int files;                   /* the device fd is registered file 0 */
    const void *owner;           /* for the user: the thread that may submit */
    int foreign;                 /* for the user: calls from other threads */
} tt_ring;

/* Make a ring with io_uring_setup `flags`, register `devfd` as file 0 unless it is
 * -1. 0, or -1 with errno and *what naming the failing call (r->fd is -1 then). */
int tt_ring_open(tt_ring *r, unsigned flags, int devfd, const char **what);

/* Unmap and close (never retried). With `unregister`, first unregister the file, so
 * it does not outlive the ring's asynchronous teardown; only from the process that
 * made the ring, with nothing in flight (and from the submitter on SINGLE_ISSUER). */
void tt_ring_close(tt_ring *r, int unregister);

/* Made before a fork() (in another process): only tt_ring_close(r, 0) it. */
int tt_ring_stale(const tt_ring *r);

/* A stale or closed ring replaced by a fresh one. 0 or -1 with errno. */
int tt_ring_refork(tt_ring *r, unsigned flags, int devfd);

/* SQE k of the next submission, zeroed. */
static inline struct io_uring_sqe *
tt_ring_sqe(tt_ring *r, unsigned k)
{
    struct io_uring_sqe *s = &r->sqes[(r->tail + k) & r->sqmask];
    memset(s, 0, sizeof(*s));
    return s;
}

/* Publish the n SQEs prepared with tt_ring_sqe(r, 0..n-1) and io_uring_enter with
 * `wait`, `flags`, `arg`. Returns how many the kernel consumed (those it did not are
 * taken back), or -1 with errno if none. EINTR before any is consumed is retried. */
int tt_ring_submit(tt_ring *r, unsigned n, unsigned wait, unsigned flags, void *arg,
                   size_t argsz);

/* Take every CQE; res[user_data] = its result for user_data < n. Returns how many
 * of those there were. */
unsigned tt_ring_reap(tt_ring *r, int *res, unsigned n);

/* When `missing` requests did not complete inline: cancel everything on the ring and
 * wait until they have completed (into res like tt_ring_reap), so none touches its
 * buffer later. */
void tt_ring_drain(tt_ring *r, int *res, unsigned n, unsigned missing);

/* io_uring_enter / io_uring_register on the ring, as the syscalls (-1 and errno). */
int tt_ring_enter_raw(int fd, unsigned submit, unsigned wait, unsigned flags, void *arg,
                      size_t argsz);
int tt_ring_register(int fd, unsigned op, void *arg, unsigned n);

/* The ring's one user at a time. */
static inline int
tt_ring_trylock(tt_ring *r)
{
    int zero = 0;
    return __atomic_compare_exchange_n(&r->lock, &zero, 1, 0, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

static inline void
tt_ring_unlock(tt_ring *r)
{
    __atomic_store_n(&r->lock, 0, __ATOMIC_RELEASE);
}

#endif /* TT_RING_H */
