/*
 * uring.c: the io_uring backend of Device.read_batch and write_batch, chosen per
 * device with Device(..., io="uring" | "auto"). Raw syscalls and <linux/io_uring.h>,
 * no liburing. It is not a second engine: batch.c's impls call into it from inside
 * tt_call(), so the busy count, the GIL release, EINTR, deadlines, the poll() +
 * eventfd wait and close() stay the engine's, and nothing here ever waits for a
 * packet. benchmarks/uring_proto.c measured the candidate designs; the table in
 * benchmarks/README.md ("io_uring") chose this one:
 *
 * read_batch: the first packet is read with read(), so an empty queue costs one
 *   EAGAIN syscall and the engine waits exactly as on the syscall backend. If the
 *   previous call took at least TT_URING_MIN packets, the rest of the batch is read
 *   with READ SQEs into the batch's slots, in rounds (the first of TT_URING_ENTRIES
 *   after a full batch, else of min(previous count, TT_URING_FIRST); then doubling;
 *   at most TT_URING_ENTRIES per io_uring_enter) until a read says EAGAIN or the
 *   batch is full; otherwise with more read()s. Small batches stay on read() because
 *   one io_uring_enter costs more than a few syscalls. A call that finds the queue
 *   empty forgets the previous count, so the first call of the next burst starts on
 *   read() again; the first-round cap bounds the EAGAIN completions otherwise.
 *   Every READ carries RWF_NOWAIT: without it, a READ of an empty O_NONBLOCK TUN fd
 *   does not complete with EAGAIN but arms poll and stays pending (Linux 6.18,
 *   io_uring/rw.c: O_NONBLOCK alone does not set REQ_F_NOWAIT once the file
 *   supports nowait), and would later write a packet into the arena behind the
 *   caller's back. The device fd is a registered file of this ring (no fget/fput
 *   per request), unregistered in close() before the ring fd is closed: the ring's
 *   own teardown is asynchronous and would keep the interface alive a moment.
 *
 * write_batch: runs of at least TT_URING_MIN packets are WRITE SQEs, linked
 *   (IOSQE_IO_LINK) so that the first failure cancels the rest and the count
 *   written so far is exact, as with write(); at most TT_URING_ENTRIES per enter.
 *   Linked requests are fast only on a SINGLE_ISSUER | DEFER_TASKRUN ring (without
 *   it each link step is a task_work round trip and the writes are no faster than
 *   write()), and such a ring serves one thread: it is created disabled and the
 *   first thread that writes enables it; calls from another thread use write(),
 *   and after TT_URING_ADOPT of them in a row that thread gets a new ring. Every
 *   register call from a non-owner fails with EEXIST, so this ring has no
 *   registered file: nothing of the device outlives a call.
 *
 * Both rings are per device, made at open, used by one thread at a time (a
 * try-lock: a second concurrent caller uses read()/write()), and abandoned in a
 * forked child (the mappings are shared with the parent). No allocation per call.
 */
#include "_tuntap.h"
#include "ring.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/io_uring.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define TT_URING_ENTRIES TT_RING_ENTRIES /* SQEs per io_uring_enter */
#define TT_URING_MIN 8      /* packets below which read()/write() are cheaper */
#define TT_URING_FIRST 16   /* the first read round after the first packet */
#define TT_URING_ADOPT 64   /* calls from another thread before it gets the ring */
#define TT_RD_FLAGS 0u
#define TT_WR_FLAGS (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)
/* io="auto" picks io_uring when a READ SQE costs less than this fraction of a
 * read() syscall (tt_uring_calibrate; benchmarks/README.md has the crossover). */
#define TT_URING_AUTO_RATIO 0.9

struct tt_uring {
    tt_ring rd, wr;
    int min;     /* TT_URING_MIN, or TUNTAP_URING_MIN */
    int last;    /* packets the previous read_batch took (atomic, relaxed) */
    int broken;  /* the kernel misbehaved once: read()/write() from now on */
    /* counters for tests (Device._uring_stats); updated under the ring's lock,
     * except `declined` (atomic) */
    unsigned long long enters, sqes, declined, adopted;
};

/* A thread's identity: the address of a thread-local byte. */
static _Thread_local char tt_thread_key;
#define TT_THREAD_KEY ((const void *)&tt_thread_key)
#define TT_OWNER_UNKNOWN ((const void *)&tt_uring_open) /* no thread's key */

/* -- read_batch ------------------------------------------------------------- */

/* One round: n READ SQEs into slots [first, first + n). Successful reads are moved
 * together in slot order (a packet arriving between two SQEs leaves a hole before
 * it: the reads run in order). *got = packets; returns -1 when the ring cannot be
 * used (caller goes on with read()), else 0. */
static int
tt_read_round(tt_uring *u, PacketBatchObject *b, Py_ssize_t first, unsigned n, unsigned *got)
{
    tt_ring *r = &u->rd;
    int res[TT_URING_ENTRIES];
    unsigned k, w, reaped;
    int consumed;

    *got = 0;
    for (k = 0; k < n; k++) {
        struct io_uring_sqe *s = tt_ring_sqe(r, k);
        s->opcode = IORING_OP_READ;
        s->flags = IOSQE_FIXED_FILE;
        s->fd = 0;
        s->addr = (unsigned long long)(uintptr_t)tt_batch_slot(b, first + (Py_ssize_t)k);
        s->len = (unsigned)b->slot_size;
        s->rw_flags = RWF_NOWAIT;
        s->user_data = k;
        res[k] = -EAGAIN;
    }
    consumed = tt_ring_submit(r, n, 0, 0, NULL, 0);
    if (consumed <= 0) {
        return -1;
    }
    u->enters++;
    u->sqes += (unsigned)consumed;
    reaped = tt_ring_reap(r, res, n);
    if (reaped < (unsigned)consumed) {
        tt_ring_drain(r, res, n, (unsigned)consumed - reaped);
        u->broken = 1;
    }
    for (k = w = 0; k < (unsigned)consumed; k++) {
        if (res[k] < 0) {
            /* EAGAIN: the queue is empty. Other errors (the interface was deleted)
             * end the batch too; the next call's read() reports them. */
            if (res[k] == -EOPNOTSUPP || res[k] == -EBADF || res[k] == -EINVAL) {
                u->broken = 1;
            }
            continue;
        }
        if (w != k) {
            memmove(tt_batch_slot(b, first + (Py_ssize_t)w),
                    tt_batch_slot(b, first + (Py_ssize_t)k), (size_t)res[k]);
        }
        b->sizes[first + (Py_ssize_t)w] = (uint32_t)res[k];
        w++;
    }
    *got = w;
    return (unsigned)consumed < n && w == (unsigned)consumed ? -1 : 0;
}

int
tt_uring_read_more(tt_uring *u, int devfd, PacketBatchObject *b, Py_ssize_t *count)
{
    Py_ssize_t i = *count, cap = b->capacity;
    int last = __atomic_load_n(&u->last, __ATOMIC_RELAXED);
    unsigned n, got;
    int done = 1;

    if (last < u->min || i >= cap || u->broken) {
        return 0;
    }
    if (!tt_ring_trylock(&u->rd)) {
        __atomic_fetch_add(&u->declined, 1, __ATOMIC_RELAXED);
        return 0;
    }
    if (tt_ring_refork(&u->rd, TT_RD_FLAGS, devfd) < 0) {
        u->broken = 1;
        tt_ring_unlock(&u->rd);
        return 0;
    }
    /* After a full batch the queue probably holds more: one round takes the rest of
     * this one. After a partial batch about `last` packets are expected, and at most
     * TT_URING_FIRST SQEs are risked on it. A call that found the queue empty reset
     * `last` (tt_uring_read_done(u, 0)), so the first call of a new burst never gets
     * here and costs no EAGAIN completion at all. */
    n = last >= cap ? TT_URING_ENTRIES : (unsigned)(last < TT_URING_FIRST ? last : TT_URING_FIRST);
    for (;;) {
        if ((Py_ssize_t)n > cap - i) {
            n = (unsigned)(cap - i);
        }
        if (tt_read_round(u, b, i, n, &got) < 0) {
            done = 0; /* the ring refused: read() takes over */
        }
        i += got;
        if (!done || got < n || i >= cap || u->broken) {
            break;
        }
        n = 2 * n < TT_URING_ENTRIES ? 2 * n : TT_URING_ENTRIES;
    }
    tt_ring_unlock(&u->rd);
    *count = i;
    return done;
}

void
tt_uring_read_done(tt_uring *u, Py_ssize_t count)
{
    __atomic_store_n(&u->last, count > INT32_MAX ? INT32_MAX : (int)count, __ATOMIC_RELAXED);
}

/* -- write_batch ------------------------------------------------------------ */

/* Ring locked. May this thread submit to the write ring? Enables a fresh ring for
 * it, or hands the ring to it after TT_URING_ADOPT calls in a row from it. */
static int
tt_write_ring_mine(tt_uring *u, tt_ring *r)
{
    const char *what;
    if (r->fd < 0 || tt_ring_stale(r)) {
        if (tt_ring_refork(r, TT_WR_FLAGS, -1) < 0) {
            u->broken = 1;
            return 0;
        }
        r->owner = TT_THREAD_KEY; /* made by this thread: it is the submitter */
    }
    if (r->owner == NULL) {
        /* made disabled at open: the first thread to write enables it and becomes
         * its only submitter (IORING_SETUP_SINGLE_ISSUER) */
        if (tt_ring_register(r->fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0) {
            u->broken = 1;
            return 0;
        }
        r->owner = TT_THREAD_KEY;
    }
    if (r->owner == TT_THREAD_KEY) {
        r->foreign = 0;
        return 1;
    }
    if (++r->foreign < TT_URING_ADOPT) {
        return 0;
    }
    tt_ring_close(r, 0);
    if (tt_ring_open(r, TT_WR_FLAGS, -1, &what) < 0) {
        u->broken = 1;
        return 0;
    }
    r->owner = TT_THREAD_KEY;
    u->adopted++;
    return 1;
}

/* What one linked run of writes ended with. */
enum { TT_W_DONE, TT_W_REFUSED, TT_W_FAILED, TT_W_CUT };

/* One linked run of n writes of packets [first, first + n). Returns how many were
 * written; *how says why it stopped short: TT_W_REFUSED (the ring took nothing:
 * write() goes on), TT_W_FAILED (the write at first + return value failed with
 * *err), TT_W_CUT (a short write cut the link: write() goes on). */
static unsigned
tt_write_round(tt_uring *u, int devfd, const tt_pkt *pkts, const PacketBatchObject *b,
               Py_ssize_t boff, Py_ssize_t first, unsigned n, int *how, int *err)
{
    tt_ring *r = &u->wr;
    int res[TT_URING_ENTRIES], consumed;
    unsigned k, reaped = 0;
    struct __kernel_timespec ts = {1, 0};
    struct io_uring_getevents_arg arg;

    *how = TT_W_DONE;
    *err = 0;
    for (k = 0; k < n; k++) {
        struct io_uring_sqe *s = tt_ring_sqe(r, k);
        Py_ssize_t i = first + (Py_ssize_t)k;
        s->opcode = IORING_OP_WRITE;
        s->flags = k + 1 < n ? IOSQE_IO_LINK : 0;
        s->fd = devfd;
        s->addr = (unsigned long long)(uintptr_t)(pkts ? pkts[i].data
                                                       : tt_batch_slot(b, boff + i));
        s->len = (unsigned)(pkts ? pkts[i].len : b->sizes[boff + i]);
        s->rw_flags = RWF_NOWAIT;
        s->user_data = k;
        res[k] = -ECANCELED;
    }
    /* Wait for all of them: with DEFER_TASKRUN each next write of the link is task
     * work that only this wait runs. None blocks (RWF_NOWAIT); the one-second bound
     * is a safety net that is never reached in practice. */
    memset(&arg, 0, sizeof(arg));
    arg.sigmask_sz = _NSIG / 8;
    arg.ts = (unsigned long long)(uintptr_t)&ts;
    consumed = tt_ring_submit(r, n, n, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg,
                              sizeof(arg));
    if (consumed < 0) {
        if (errno == EEXIST) {
            r->owner = TT_OWNER_UNKNOWN; /* another thread's ring after all */
        }
        *how = TT_W_REFUSED;
        return 0;
    }
    u->enters++;
    u->sqes += (unsigned)consumed;
    for (;;) {
        reaped += tt_ring_reap(r, res, n);
        if (reaped >= (unsigned)consumed) {
            break;
        }
        if (tt_ring_enter_raw(r->fd, 0, (unsigned)consumed - reaped,
                         IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg,
                         sizeof(arg)) < 0 && errno == ETIME) {
            tt_ring_drain(r, res, n, (unsigned)consumed - reaped);
            u->broken = 1;
            break;
        }
    }
    for (k = 0; k < (unsigned)consumed; k++) {
        if (res[k] < 0) {
            *how = res[k] == -ECANCELED ? TT_W_CUT : TT_W_FAILED;
            *err = -res[k];
            return k;
        }
    }
    if ((unsigned)consumed < n) {
        *how = TT_W_REFUSED;
    }
    return (unsigned)consumed;
}

int
tt_uring_write(tt_uring *u, int devfd, const tt_pkt *pkts, const PacketBatchObject *b,
               Py_ssize_t boff, Py_ssize_t *done, Py_ssize_t count)
{
    tt_ring *r = &u->wr;
    Py_ssize_t i = *done;
    int ret = 0;

    if (u->broken || count - i < u->min) {
        return 0;
    }
    if (!tt_ring_trylock(r)) {
        __atomic_fetch_add(&u->declined, 1, __ATOMIC_RELAXED);
        return 0;
    }
    if (!tt_write_ring_mine(u, r)) {
        tt_ring_unlock(r);
        __atomic_fetch_add(&u->declined, 1, __ATOMIC_RELAXED);
        return 0;
    }
    while (count - i >= u->min) {
        unsigned n = 0, lim = count - i < TT_URING_ENTRIES ? (unsigned)(count - i)
                                                            : TT_URING_ENTRIES;
        int how, err;
        /* an empty packet ends the run (the caller's loop stops there) */
        while (n < lim && (pkts ? pkts[i + n].len : b->sizes[boff + i + n]) != 0) {
            n++;
        }
        if (n == 0) {
            break;
        }
        i += tt_write_round(u, devfd, pkts, b, boff, i, n, &how, &err);
        if (how == TT_W_FAILED) {
            errno = err;
            ret = -1;
        }
        if (how != TT_W_DONE) {
            break;
        }
    }
    tt_ring_unlock(r);
    *done = i;
    return ret;
}

/* -- per device ------------------------------------------------------------- */

int
tt_uring_open(int devfd, tt_uring **out, const char **what)
{
    tt_uring *u = PyMem_RawCalloc(1, sizeof(*u));
    tt_ring *r;
    int res[1] = {-EAGAIN};
    int err;
    struct io_uring_sqe *s;

    *out = NULL;
    *what = "malloc()";
    if (u == NULL) {
        errno = ENOMEM;
        return -1;
    }
    u->rd.fd = u->wr.fd = -1;
    u->min = TT_URING_MIN;
    if (tt_ring_open(&u->rd, TT_RD_FLAGS, devfd, what) < 0) {
        goto fail;
    }
    /* Can this kernel read the TUN fd without waiting? A READ of 0 bytes leaves the
     * queue as it is (drivers/net/tun.c: tun_do_read returns 0 for an empty
     * iov_iter) and says EOPNOTSUPP when RWF_NOWAIT is not supported. */
    r = &u->rd;
    s = tt_ring_sqe(r, 0);
    s->opcode = IORING_OP_READ;
    s->flags = IOSQE_FIXED_FILE;
    s->fd = 0;
    s->addr = (unsigned long long)(uintptr_t)res;
    s->len = 0;
    s->rw_flags = RWF_NOWAIT;
    s->user_data = 0;
    *what = "io_uring_enter() (READ, RWF_NOWAIT)";
    if (tt_ring_submit(r, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) != 1) {
        goto fail;
    }
    if (tt_ring_reap(r, res, 1) != 1 || res[0] < 0) {
        errno = res[0] < 0 ? -res[0] : EIO;
        goto fail;
    }
    /* Disabled: the first thread that writes enables it (tt_write_ring_mine). */
    if (tt_ring_open(&u->wr, TT_WR_FLAGS | IORING_SETUP_R_DISABLED, -1, what) < 0) {
        goto fail;
    }
    *out = u;
    return 0;
fail:
    err = errno;
    tt_uring_free(u);
    errno = err;
    return -1;
}

void
tt_uring_free(tt_uring *u)
{
    if (u == NULL) {
        return;
    }
    tt_ring_close(&u->rd, 1);
    tt_ring_close(&u->wr, 0);
    PyMem_RawFree(u);
}

int
tt_uring_broken(const tt_uring *u)
{
    return u->broken;
}

PyObject *
tt_uring_stats(const tt_uring *u)
{
    return Py_BuildValue("{sKsKsKsKsisi}", "enters", u->enters, "sqes", u->sqes, "declined",
                         __atomic_load_n(&u->declined, __ATOMIC_RELAXED), "adopted",
                         u->adopted, "broken", u->broken, "min", u->min);
}

/* -- io="auto": is io_uring faster here? ------------------------------------ */

static int
tt_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int
tt_uring_calibrate(tt_uring_calib *out)
{
    enum { OPS = TT_URING_ENTRIES, TRIES = 9 };
    double tsys[TRIES], tur[TRIES];
    tt_ring r, w;
    const char *what;
    int efd, res[OPS], k, i;
    uint64_t v;

    memset(out, 0, sizeof(*out));
    if (tt_ring_open(&w, TT_WR_FLAGS, -1, &what) < 0) {
        out->err = errno; /* ENOSYS, EPERM (seccomp, io_uring_disabled), EINVAL (< 6.1) */
        return -1;
    }
    tt_ring_close(&w, 0);
    efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) {
        out->err = errno;
        return -1;
    }
    if (tt_ring_open(&r, TT_RD_FLAGS, efd, &what) < 0) {
        out->err = errno;
        close(efd);
        return -1;
    }
    /* The same empty read both ways: 64 read() syscalls that say EAGAIN against one
     * io_uring_enter of 64 READ SQEs (RWF_NOWAIT, registered file) that do. What
     * differs is what decides: the syscall round trip against io_uring's cost per
     * request (benchmarks/README.md: it tracks the TUN read crossover). */
    for (k = 0; k < TRIES; k++) {
        int64_t t0 = tt_monotonic_ns();
        for (i = 0; i < OPS; i++) {
            if (read(efd, &v, sizeof(v)) >= 0) {
                break;
            }
        }
        tsys[k] = (double)(tt_monotonic_ns() - t0) / OPS;
        t0 = tt_monotonic_ns();
        for (i = 0; i < OPS; i++) {
            struct io_uring_sqe *s = tt_ring_sqe(&r, (unsigned)i);
            s->opcode = IORING_OP_READ;
            s->flags = IOSQE_FIXED_FILE;
            s->fd = 0;
            s->addr = (unsigned long long)(uintptr_t)&v;
            s->len = sizeof(v);
            s->rw_flags = RWF_NOWAIT;
            s->user_data = (unsigned)i;
        }
        if (tt_ring_submit(&r, OPS, 0, 0, NULL, 0) != OPS ||
            tt_ring_reap(&r, res, OPS) != OPS) {
            out->err = errno ? errno : EIO;
            tt_ring_close(&r, 1);
            close(efd);
            return -1;
        }
        tur[k] = (double)(tt_monotonic_ns() - t0) / OPS;
    }
    tt_ring_close(&r, 1);
    close(efd);
    qsort(tsys, TRIES, sizeof(double), tt_cmp_double);
    qsort(tur, TRIES, sizeof(double), tt_cmp_double);
    out->available = 1;
    out->syscall_ns = tsys[TRIES / 2];
    out->uring_ns = tur[TRIES / 2];
    out->faster = out->uring_ns < TT_URING_AUTO_RATIO * out->syscall_ns;
    return 0;
}

/* -- the Python side (GIL held) ----------------------------------------------- */

static tt_uring_calib tt_calib;
static int tt_calib_done;

static ssize_t
tt_calibrate_impl(tt_op *op)
{
    (void)tt_uring_calibrate(op->ctx);
    return 0;
}

/* The process-wide verdict for io="auto", measured once (about 0.2 ms), or again
 * when `rerun`. NULL with an exception if a signal handler raised meanwhile. */
static const tt_uring_calib *
tt_calib_get(int rerun)
{
    if (!tt_calib_done || rerun) {
        tt_uring_calib c;
        tt_op op = {.impl = tt_calibrate_impl, .ctx = &c};
        if (tt_call(NULL, &op) < 0) {
            return NULL;
        }
        tt_calib = c;
        tt_calib_done = 1;
    }
    return &tt_calib;
}

int
tt_parse_io(PyObject *obj, int *out)
{
    const char *s;
    if (obj == NULL) {
        *out = TT_IO_AUTO;
        return 0;
    }
    if (!PyUnicode_Check(obj)) {
        tt_type_error(obj, "io must be str");
        return -1;
    }
    s = PyUnicode_AsUTF8(obj);
    if (s == NULL) {
        return -1;
    }
    if (strcmp(s, "auto") == 0) {
        *out = TT_IO_AUTO;
    }
    else if (strcmp(s, "uring") == 0) {
        *out = TT_IO_URING;
    }
    else if (strcmp(s, "syscall") == 0) {
        *out = TT_IO_SYSCALL;
    }
    else {
        PyErr_Format(PyExc_ValueError, "io must be 'auto', 'uring' or 'syscall', not %R", obj);
        return -1;
    }
    return 0;
}

typedef struct {
    tt_uring *u;
    const char *what;
} tt_uring_open_ctx;

static ssize_t
tt_uring_open_impl(tt_op *op)
{
    tt_uring_open_ctx *c = op->ctx;
    return tt_uring_open(op->fd, &c->u, &c->what);
}

static const char *
tt_uring_hint(int err)
{
    switch (err) {
    case EPERM:
    case EACCES:
        return " (io_uring refused: a seccomp filter or kernel.io_uring_disabled; "
               "io='auto' uses read()/write() then)";
    case ENOSYS:
        return " (this kernel has no io_uring; io='auto' uses read()/write() then)";
    case EINVAL:
        return " (io_uring lacks SINGLE_ISSUER/DEFER_TASKRUN: Linux 6.1 or later)";
    case EOPNOTSUPP:
        return " (this kernel cannot read a TUN fd through io_uring without waiting)";
    default:
        return NULL;
    }
}

int
tt_uring_attach(DeviceObject *self, int req)
{
    tt_uring_open_ctx c = {NULL, "io_uring_setup()"};
    tt_op op = {.impl = tt_uring_open_impl, .syscall = "io_uring_setup()", .flags = TT_OP_RAW,
                .ctx = &c};
    const char *env;
    int min = TT_URING_MIN;

    self->io = TT_IO_SYSCALL;
    if (req == TT_IO_AUTO) {
        /* TUNTAP_IO overrides what "auto" picks (the test suite runs twice with it). */
        env = getenv("TUNTAP_IO");
        if (env != NULL && env[0] != '\0') {
            if (strcmp(env, "uring") == 0) {
                req = TT_IO_URING;
            }
            else if (strcmp(env, "syscall") == 0) {
                req = TT_IO_SYSCALL;
            }
            else if (strcmp(env, "auto") != 0) {
                PyErr_Format(PyExc_ValueError,
                             "TUNTAP_IO must be 'auto', 'uring' or 'syscall', not '%s'", env);
                return -1;
            }
        }
    }
    if (req == TT_IO_SYSCALL) {
        return 0;
    }
    if (req == TT_IO_AUTO) {
        const tt_uring_calib *cal = tt_calib_get(0);
        if (cal == NULL) {
            return -1;
        }
        if (!cal->available || !cal->faster) {
            return 0;
        }
    }
    env = getenv("TUNTAP_URING_MIN");
    if (env != NULL && env[0] != '\0') {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end != '\0' || v < 1 || v > TT_URING_ENTRIES) {
            PyErr_Format(PyExc_ValueError, "TUNTAP_URING_MIN must be 1 to %d, not '%s'",
                         TT_URING_ENTRIES, env);
            return -1;
        }
        min = (int)v;
    }
    if (tt_call(self, &op) < 0) {
        if (op.err == 0) {
            return -1; /* a signal handler raised */
        }
        if (req == TT_IO_AUTO) {
            return 0; /* silently the syscall backend */
        }
        tt_oserror(op.err, c.what, self->name, tt_uring_hint(op.err));
        return -1;
    }
    c.u->min = min;
    __atomic_store_n(&self->uring, c.u, __ATOMIC_RELEASE);
    self->io = TT_IO_URING;
    return 0;
}

TT_GETTER(io)
{
    (void)closure;
    if (self->uring != NULL) {
        return PyUnicode_FromString(tt_uring_broken(self->uring) ? "syscall" : "uring");
    }
    return PyUnicode_FromString(self->io == TT_IO_URING ? "uring" : "syscall");
}

TT_GETTER(_uring_stats)
{
    (void)closure;
    if (self->uring == NULL) {
        Py_RETURN_NONE;
    }
    return tt_uring_stats(self->uring);
}

TT_DOC(tt_io_uring_probe__doc__,
"_io_uring_probe($module, rerun=False, /)\n--\n\n"
"What io='auto' decided in this process, as a dict: available (io_uring usable),\n"
"errno (why not), syscall_ns and uring_ns (one EAGAIN read of an empty eventfd by\n"
"read() and by a READ SQE, 64 per io_uring_enter, median of 9), threshold (uring_ns\n"
"must be below threshold * syscall_ns) and choice ('uring' or 'syscall'). Measured\n"
"once, at the first Device(io='auto'); rerun=True measures again and that result\n"
"decides for devices opened afterwards.");

PyObject *
tt_io_uring_probe(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    const tt_uring_calib *c;
    int rerun = 0;
    PyObject *opt;
    if (tt_fastcall_optional(args, nargs, 0, "_io_uring_probe", &opt) < 0 ||
        (opt != NULL && (rerun = PyObject_IsTrue(opt)) < 0)) {
        return NULL;
    }
    c = tt_calib_get(rerun);
    if (c == NULL) {
        return NULL;
    }
    return Py_BuildValue("{sOsisdsdsdss}", "available", c->available ? Py_True : Py_False,
                         "errno", c->err, "syscall_ns", c->syscall_ns, "uring_ns", c->uring_ns,
                         "threshold", TT_URING_AUTO_RATIO, "choice",
                         c->available && c->faster ? "uring" : "syscall");
}
