/*
 * engine.c: the one I/O engine (in the shape of CPython's socketmodule.c
 * sock_call_ex). Every syscall on a device's fds goes through tt_call(); it alone
 * owns the busy count, the GIL release, the EINTR/signal policy (PEP 475), the
 * deadline and the poll()/eventfd wait. tt_shutdown() is the other half of the
 * busy-count protocol (docs/design.md):
 *
 * - The device fd is always O_NONBLOCK. Blocking mode is emulated: try the
 *   syscall, and on EAGAIN poll() the fd together with an eventfd that close()
 *   signals. The kernel does not wake a reader blocked in read() when another
 *   thread closes the fd (drivers/net/tun.c: tun_do_read holds a file reference),
 *   so nothing here ever blocks in read().
 * - `busy` counts threads between "saw the device open" (GIL held) and "left the
 *   syscall" (before taking the GIL back). tt_shutdown() marks the device closed,
 *   signals the eventfd and waits for busy == 0 before it closes any fd, so an fd
 *   number is never closed, and reused, under a thread still inside a syscall.
 * - tt_call_nogil() is the same engine for a caller without the GIL (the C API,
 *   capi.c): the busy count and the wait are the same; the GIL that orders
 *   tt_call() against tt_shutdown() is replaced by sequentially consistent atomics.
 */
#include "_tuntap.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>
#include <sched.h>

#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/sockios.h>

/* Outcomes of one nogil attempt besides a result >= 0. */
enum { TT_ERR = -1, TT_CLOSED = -2, TT_PERR = -3, TT_TIMEOUT = -4, TT_READY = 1 };

/* An fd that polls POLLERR/POLLHUP only while its read still says EAGAIN: a wait
 * there watches only the eventfd and looks at the device again this often, so it
 * neither spins nor misses the fd becoming usable. (A detached queue, TUNSETQUEUE
 * IFF_DETACH_QUEUE, reads EAGAIN and polls neither POLLIN nor POLLERR on Linux 6.x:
 * its wait simply lasts until a re-attach and a packet; docs/kernel.md.) */
#define TT_DETACHED_RECHECK_MS 50

/* The eventfd is made on the first blocking wait, with the GIL held, so devices
 * used only in non-blocking mode never pay for it. */
int
tt_ensure_wakefd(DeviceObject *self)
{
    if (self->wakefd >= 0) {
        return 0;
    }
    self->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (self->wakefd < 0) {
        tt_oserror(errno, "eventfd()", self->name, NULL);
        return -1;
    }
    return 0;
}

/* No GIL. Wait until `fd` is ready for `events`, close() signals `wakefd`, or
 * `deadline` (monotonic ns, 0 = none) passes. With fd < 0 only wakefd is watched,
 * for at most `cap_ms`. A signal on wakefd counts only once the device is marked
 * closed (*open_fd < 0): any other one (say a child process that shares the
 * eventfd through a fork behind Python's back) is drained and ignored. */
static int
tt_poll(int fd, int wakefd, short events, int64_t deadline, int cap_ms, const int *open_fd)
{
    struct pollfd p[2] = {{fd, events, 0}, {wakefd, POLLIN, 0}};
    int ms = -1, r;

    if (deadline > 0) {
        int64_t left = deadline - tt_monotonic_ns();
        if (left <= 0) {
            return TT_TIMEOUT;
        }
        ms = (int)((left + 999999) / 1000000);
    }
    if (cap_ms >= 0 && (ms < 0 || ms > cap_ms)) {
        ms = cap_ms;
    }
    r = poll(p, 2, ms);
    if (r < 0) {
        return TT_ERR;
    }
    if (p[1].revents) {
        uint64_t count;
        if (__atomic_load_n(open_fd, __ATOMIC_ACQUIRE) < 0) {
            return TT_CLOSED;
        }
        /* Not ours. Draining may eat a close() that lands right now: tt_shutdown()
         * signals again until every thread has left, so nobody sleeps through it. */
        (void)!read(wakefd, &count, sizeof(count));
        return TT_READY;
    }
    if (r == 0) {
        if (deadline > 0 && tt_monotonic_ns() >= deadline) {
            return TT_TIMEOUT;
        }
        return TT_READY; /* the cap expired: look again */
    }
    if ((p[0].revents & events) == 0) {
        return TT_PERR; /* POLLERR/POLLHUP only */
    }
    return TT_READY;
}

/* No GIL. Call impl until it is done, fails, or (blocking mode) a wait ends
 * otherwise than "ready". errno is the failing call's for TT_ERR. */
static ssize_t
tt_attempt(tt_op *op, int wakefd, int64_t timeout_ns, int64_t deadline, const int *open_fd)
{
    int quiet = 0;
    for (;;) {
        ssize_t n = op->impl(op);
        int r;
        if (n >= 0) {
            return n;
        }
        if (errno != EAGAIN || timeout_ns == 0 || op->events == 0) {
            return TT_ERR;
        }
        if (__atomic_load_n(open_fd, __ATOMIC_ACQUIRE) < 0) {
            return TT_CLOSED;
        }
        r = tt_poll(quiet ? -1 : op->fd, wakefd, op->events, deadline,
                    quiet ? TT_DETACHED_RECHECK_MS : -1, open_fd);
        quiet = r == TT_PERR;
        if (r != TT_READY && r != TT_PERR) {
            return r;
        }
    }
}

/* GIL held. Turn a failed attempt into the exception the API documents. */
static void
tt_raise(DeviceObject *self, const tt_op *op, ssize_t r, int err)
{
    const char *call = op->syscall;
    if (r == TT_CLOSED) {
        tt_closed_error();
    }
    else if (r == TT_TIMEOUT) {
        PyErr_Format(PyExc_TimeoutError, "%s on '%s' timed out", call, self->name);
    }
    else if (err == EAGAIN && op->events != 0) {
        /* OSError(EAGAIN, ...) is BlockingIOError */
        tt_oserror(EAGAIN, call, self->name,
                   op->events == POLLOUT ? " (send buffer full, non-blocking mode)"
                                         : " (nothing queued, non-blocking mode)");
    }
    else if (err == EFAULT || err == EBADFD) {
        /* drivers/net/tun.c: tun_detach on unregister wakes readers with EFAULT; the
         * file is then unattached and read/write/ioctl give EBADFD. */
        tt_oserror(err, call, self->name, " (the interface was deleted)");
    }
    else if (err == EIO && op->events == POLLOUT) {
        tt_oserror(err, call, self->name, " (the interface is down)");
    }
    else {
        tt_oserror(err, call, self->name, NULL);
    }
}

void
tt_raise_code(DeviceObject *self, const char *syscall, short events, Py_ssize_t code)
{
    tt_op op = {.syscall = syscall, .events = events};
    if (code == TT_ECLOSED) {
        tt_raise(self, &op, TT_CLOSED, 0);
    }
    else if (code == -ETIMEDOUT) {
        tt_raise(self, &op, TT_TIMEOUT, 0);
    }
    else {
        tt_raise(self, &op, TT_ERR, (int)-code);
    }
}

/* No device yet: release the GIL around impl, retry EINTR. */
static Py_ssize_t
tt_call_nodev(tt_op *op)
{
    for (;;) {
        ssize_t n;
        int err;
        Py_BEGIN_ALLOW_THREADS
        n = op->impl(op);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n >= 0) {
            return n;
        }
        if (err == EINTR) {
            if (PyErr_CheckSignals() < 0) {
                return -1; /* op->err stays 0: the handler's exception is set */
            }
            continue;
        }
        op->err = err;
        return -1;
    }
}

Py_ssize_t
tt_call(DeviceObject *self, tt_op *op)
{
    int64_t deadline;

    if (self == NULL) {
        return tt_call_nodev(op);
    }
    deadline = op->events && self->timeout_ns > 0 ? tt_monotonic_ns() + self->timeout_ns : 0;
    for (;;) {
        ssize_t r;
        int err, wakefd;
        /* a signal handler may change it; TT_OP_TRY never waits */
        int64_t timeout_ns = (op->flags & TT_OP_TRY) ? 0 : self->timeout_ns;
        if (self->fd < 0) {
            if (op->progress > 0) {
                return op->progress;
            }
            tt_closed_error();
            return -1;
        }
        if (op->events && timeout_ns != 0 && tt_ensure_wakefd(self) < 0) {
            return -1;
        }
        wakefd = self->wakefd;
        op->fd = (op->flags & TT_OP_CTL) ? self->ctlfd : self->fd;
        __atomic_fetch_add(&self->busy, 1, __ATOMIC_ACQ_REL);
        Py_BEGIN_ALLOW_THREADS
        r = tt_attempt(op, wakefd, timeout_ns, deadline, &self->fd);
        err = errno;
        __atomic_fetch_sub(&self->busy, 1, __ATOMIC_RELEASE);
        Py_END_ALLOW_THREADS
        if (r >= 0) {
            return r;
        }
        if (r == TT_ERR && err == EINTR) {
            /* PEP 475: run the handlers (which may close the device), then retry. */
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
            continue;
        }
        if (op->progress > 0) {
            return op->progress; /* like send(): report what was done */
        }
        if (r == TT_ERR && err == EAGAIN && (op->flags & TT_OP_TRY)) {
            op->err = EAGAIN;
            return -1;
        }
        if (r == TT_ERR && (op->flags & TT_OP_RAW)) {
            op->err = err;
            return -1;
        }
        tt_raise(self, op, r, err);
        return -1;
    }
}

Py_ssize_t
tt_call_nogil(DeviceObject *self, tt_op *op, int64_t timeout_ns)
{
    int64_t deadline = op->events && timeout_ns > 0 ? tt_monotonic_ns() + timeout_ns : 0;
    ssize_t r;
    int err, wakefd, ctlfd, fd;

    /* Without the GIL nothing orders this against tt_shutdown() but the atomics: it
     * stores fd, wakefd, ctlfd = -1 in that order and then reads busy; this raises
     * busy and then reads them in the opposite order (all sequentially consistent).
     * So either fd reads -1 here, or tt_shutdown() sees this thread busy and waits for
     * it, and then the wakefd and ctlfd read here were still open. */
    __atomic_fetch_add(&self->busy, 1, __ATOMIC_SEQ_CST);
    ctlfd = __atomic_load_n(&self->ctlfd, __ATOMIC_SEQ_CST);
    wakefd = __atomic_load_n(&self->wakefd, __ATOMIC_SEQ_CST);
    fd = __atomic_load_n(&self->fd, __ATOMIC_SEQ_CST);
    if (fd < 0) {
        r = TT_CLOSED;
        err = 0;
    }
    else if (wakefd < 0 && op->events && timeout_ns != 0) {
        r = TT_ERR; /* a wait close() could not end: the caller broke the contract */
        err = EINVAL;
    }
    else {
        op->fd = (op->flags & TT_OP_CTL) ? ctlfd : fd;
        r = tt_attempt(op, wakefd, timeout_ns, deadline, &self->fd);
        err = errno;
    }
    __atomic_fetch_sub(&self->busy, 1, __ATOMIC_RELEASE);
    if (r >= 0) {
        return r;
    }
    if (op->progress > 0) {
        return op->progress;
    }
    if (r == TT_CLOSED) {
        return TT_ECLOSED;
    }
    if (r == TT_TIMEOUT) {
        return -ETIMEDOUT;
    }
    op->err = err;
    return -err;
}

int
tt_shutdown(DeviceObject *self, int keep_fd)
{
    int fd = self->fd, wakefd = self->wakefd, ctlfd = self->ctlfd;
    tt_uring *uring = self->uring;

    if (fd < 0) {
        return -1;
    }
    /* A child forked while this thread waits below closes these itself. */
    self->closing[0] = keep_fd ? -1 : fd;
    self->closing[1] = wakefd;
    self->closing[2] = ctlfd;
    /* The order and the atomics pair with tt_call_nogil(). */
    __atomic_store_n(&self->fd, -1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&self->wakefd, -1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&self->ctlfd, -1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&self->uring, NULL, __ATOMIC_SEQ_CST); /* after fd: see tt_call_nogil */
    Py_BEGIN_ALLOW_THREADS
    if (__atomic_load_n(&self->busy, __ATOMIC_SEQ_CST) > 0) {
        /* Wake threads waiting in poll(); every wait watches wakefd and every fd is
         * non-blocking, so they leave their syscall within microseconds. Signal
         * again every millisecond: a waiter that drained a foreign signal
         * (tt_poll) may have eaten this one. */
        uint64_t one = 1;
        unsigned spins = 0;
        while (__atomic_load_n(&self->busy, __ATOMIC_ACQUIRE) > 0) {
            struct timespec ts = {0, 20000};
            if (wakefd >= 0 && spins++ % 50 == 0) {
                (void)!write(wakefd, &one, sizeof(one));
            }
            nanosleep(&ts, NULL);
        }
    }
    /* The rings first: the read ring holds the device file (uring.c). */
    tt_uring_free(uring);
    /* Never retry close(): the fd is gone even when it reports EINTR. Each entry
     * of `closing` is cleared before its close(), so a child forked meanwhile may
     * keep a copy open but never closes a number the parent already reused. */
    for (int i = 0; i < 3; i++) {
        int victim = self->closing[i];
        __atomic_store_n(&self->closing[i], -1, __ATOMIC_RELEASE);
        if (victim >= 0) {
            close(victim);
        }
    }
    Py_END_ALLOW_THREADS
    return fd;
}

/* -- fork ------------------------------------------------------------------ */

/* The live devices, for the child of a fork. Changed only with the GIL held, and
 * os.fork() forks with the GIL held, so the child sees a consistent list. */
static DeviceObject *tt_devices;

void
tt_device_link(DeviceObject *self)
{
    self->closing[0] = self->closing[1] = self->closing[2] = -1;
    self->prev = NULL;
    self->next = tt_devices;
    if (tt_devices != NULL) {
        tt_devices->prev = self;
    }
    tt_devices = self;
}

void
tt_device_unlink(DeviceObject *self)
{
    if (self->prev != NULL) {
        self->prev->next = self->next;
    }
    else if (tt_devices == self) {
        tt_devices = self->next;
    }
    if (self->next != NULL) {
        self->next->prev = self->prev;
    }
    self->prev = self->next = NULL;
}

/* A NETLINK_ROUTE socket of this process in the namespace of `ctlfd` (SIOCGSKNS
 * needs CAP_NET_ADMIN there, like TUNGETDEVNETNS), moved onto ctlfd's number.
 * Returns 0, or -1 when it cannot (ctlfd is then left shared with the parent). */
static int
tt_renew_ctlfd(int ctlfd)
{
    int nsfd = ioctl(ctlfd, SIOCGSKNS), saved, fresh, r = -1;
    if (nsfd < 0) {
        return -1;
    }
    saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (saved >= 0 && setns(nsfd, CLONE_NEWNET) == 0) {
        fresh = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (setns(saved, CLONE_NEWNET) < 0) {
            /* cannot get back: stay correct rather than in the wrong namespace */
            abort();
        }
        if (fresh >= 0) {
            r = dup3(fresh, ctlfd, O_CLOEXEC) < 0 ? -1 : 0;
            close(fresh);
        }
    }
    if (saved >= 0) {
        close(saved);
    }
    close(nsfd);
    return r;
}

TT_DOC(tt_after_fork_child__doc__,
"_after_fork_child($module, /)\n--\n\n"
"Called in the child of os.fork() (os.register_at_fork): make every open device\n"
"the child's own (no inherited busy count, wake-up eventfd or netlink socket).");

PyObject *
tt_after_fork_child(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    /* One pass per process, however many module instances registered this. */
    static pid_t done_in;
    pid_t me = getpid();
    DeviceObject *d;
    int i;

    if (done_in == me) {
        Py_RETURN_NONE;
    }
    done_in = me;
    /* Only this thread exists now: raw syscalls, no engine, nothing can race. */
    for (d = tt_devices; d != NULL; d = d->next) {
        if (__atomic_load_n(&d->busy, __ATOMIC_ACQUIRE) > 0) {
            /* Threads of the parent were inside a syscall (maybe holding nl_lock).
             * The old lock is leaked, never freed: it may be held forever. */
            PyThread_type_lock lock = PyThread_allocate_lock();
            if (lock != NULL) {
                d->nl_lock = lock;
            }
            __atomic_store_n(&d->busy, 0, __ATOMIC_RELEASE);
        }
        for (i = 0; i < 3; i++) {
            if (d->closing[i] >= 0) {
                close(d->closing[i]);
                d->closing[i] = -1;
            }
        }
        if (d->wakefd >= 0) {
            close(d->wakefd);
            d->wakefd = -1;
        }
        if (d->ctlfd >= 0) {
            (void)tt_renew_ctlfd(d->ctlfd);
        }
    }
    Py_RETURN_NONE;
}

/* -- the small operations every unit uses --------------------------------- */

typedef struct {
    unsigned long req;
    void *arg;
} tt_ioctl_ctx;

static ssize_t
tt_ioctl_impl(tt_op *op)
{
    tt_ioctl_ctx *c = op->ctx;
    return ioctl(op->fd, c->req, c->arg);
}

int
tt_ioctl(DeviceObject *self, int on_ctl, unsigned long req, void *arg, const char *what)
{
    tt_ioctl_ctx c = {req, arg};
    tt_op op = {.impl = tt_ioctl_impl, .syscall = what, .flags = on_ctl ? TT_OP_CTL : 0,
                .ctx = &c};
    return (int)tt_call(self, &op);
}

int
tt_ioctl_raw(DeviceObject *self, int on_ctl, unsigned long req, void *arg,
             const char *what, int *err)
{
    tt_ioctl_ctx c = {req, arg};
    tt_op op = {.impl = tt_ioctl_impl, .syscall = what,
                .flags = TT_OP_RAW | (on_ctl ? TT_OP_CTL : 0), .ctx = &c};
    int r = (int)tt_call(self, &op);
    *err = r < 0 ? op.err : 0;
    return r;
}

int
tt_ifreq(DeviceObject *self, unsigned long req, struct ifreq *ifr, const char *what)
{
    snprintf(ifr->ifr_name, IFNAMSIZ, "%s", self->name);
    return tt_ioctl(self, 1, req, ifr, what);
}

typedef struct {
    void *buf;
    size_t len;
} tt_rw_ctx;

static ssize_t
tt_read_impl(tt_op *op)
{
    tt_rw_ctx *c = op->ctx;
    return read(op->fd, c->buf, c->len);
}

static ssize_t
tt_write_impl(tt_op *op)
{
    tt_rw_ctx *c = op->ctx;
    return write(op->fd, c->buf, c->len);
}

Py_ssize_t
tt_io_ex(DeviceObject *self, int is_write, void *buf, size_t len, int flags)
{
    tt_rw_ctx c = {buf, len};
    tt_op op = {.impl = is_write ? tt_write_impl : tt_read_impl,
                .syscall = is_write ? "write()" : "read()",
                .events = is_write ? POLLOUT : POLLIN, .flags = flags, .ctx = &c};
    Py_ssize_t n = tt_call(self, &op);
    return n < 0 && op.err == EAGAIN ? -2 : n;
}

Py_ssize_t
tt_io(DeviceObject *self, int is_write, void *buf, size_t len)
{
    return tt_io_ex(self, is_write, buf, len, 0);
}

Py_ssize_t
tt_io_nogil(DeviceObject *self, int is_write, void *buf, size_t len, int64_t timeout_ns)
{
    tt_rw_ctx c = {buf, len};
    tt_op op = {.impl = is_write ? tt_write_impl : tt_read_impl,
                .syscall = is_write ? "write()" : "read()",
                .events = is_write ? POLLOUT : POLLIN, .ctx = &c};
    return tt_call_nogil(self, &op, timeout_ns);
}
