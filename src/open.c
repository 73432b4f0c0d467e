/*
 * open.c: making a Device (Device(), Device.fromfd()), network namespaces, and
 * features(). Every syscall runs through the engine (tt_call with no device yet).
 *
 * A device created with netns= is made by this thread while it is inside that
 * namespace (setns(CLONE_NEWNET) changes only the calling thread), together with
 * its NETLINK_ROUTE control socket, and the thread then returns to its own
 * namespace: the fds keep working from here (docs/kernel.md, "Namespaces").
 */
#include "_tuntap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/netlink.h>

#define TT_NETNS_DIR "/var/run/netns/"
#define TT_SELF_NETNS "/proc/thread-self/ns/net"

/* Flags a caller may request from TUNSETIFF. IFF_PERSIST is applied afterwards with
 * TUNSETPERSIST (the kernel ignores it in TUNSETIFF). */
#define TT_REQUEST_MASK                                                            \
    (IFF_TUN | IFF_TAP | IFF_NAPI | IFF_NAPI_FRAGS | IFF_NO_CARRIER | IFF_NO_PI |   \
     IFF_ONE_QUEUE | IFF_VNET_HDR | IFF_TUN_EXCL | IFF_MULTI_QUEUE | IFF_PERSIST)

/* A DeviceObject of `type` with every fd -1 and its netlink lock, or NULL. */
static DeviceObject *
tt_device_alloc(PyTypeObject *type)
{
    DeviceObject *self = (DeviceObject *)((allocfunc)PyType_GetSlot(type, Py_tp_alloc))(type, 0);
    if (self == NULL) {
        return NULL;
    }
    tt_state *st = tt_find_state(type);
    if (st == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->batch_type = st->PacketBatchType;
    self->fd = self->wakefd = self->ctlfd = -1;
    self->req_flags = -1;
    self->offload = -1;
    self->timeout_ns = -1;
    self->nl_lock = PyThread_allocate_lock();
    if (self->nl_lock == NULL) {
        Py_DECREF(self);
        PyErr_NoMemory();
        return NULL;
    }
    return self;
}

/* A Device of `type` owning the attached `fd` and control socket `ctl` of interface
 * `name`; on failure both fds are closed and NULL returned with an exception. */
static DeviceObject *
tt_device_adopt(PyTypeObject *type, int fd, int ctl, const char *name)
{
    DeviceObject *self = tt_device_alloc(type);
    if (self == NULL) {
        close(fd);
        close(ctl);
        return NULL;
    }
    self->fd = fd;
    self->ctlfd = ctl;
    snprintf(self->name, IFNAMSIZ, "%s", name);
    return self;
}

/* -- namespaces ------------------------------------------------------------ */

/* No GIL. Move the calling thread into the network namespace `nsfd`, keeping its
 * own in *saved. Returns 0; -1 if saving failed, -2 if setns failed (errno set,
 * nothing to undo). */
static int
tt_netns_enter(int nsfd, int *saved)
{
    *saved = open(TT_SELF_NETNS, O_RDONLY | O_CLOEXEC);
    if (*saved < 0) {
        return -1;
    }
    if (setns(nsfd, CLONE_NEWNET) < 0) {
        int err = errno;
        close(*saved);
        *saved = -1;
        errno = err;
        return -2;
    }
    return 0;
}

/* No GIL. Back to the namespace tt_netns_enter() saved, and close it. 0 or -1
 * with errno. */
static int
tt_netns_leave(int saved)
{
    int r = setns(saved, CLONE_NEWNET), err = errno;
    close(saved);
    errno = err;
    return r;
}

typedef struct {
    const char *path;
    int fd;
} tt_path_ctx;

static ssize_t
tt_open_ro_impl(tt_op *op)
{
    tt_path_ctx *c = op->ctx;
    c->fd = open(c->path, O_RDONLY | O_CLOEXEC);
    return c->fd;
}

/* GIL held. netns given as a name under /var/run/netns, a path or an open fd.
 * Returns an fd to setns() into (owned when *owned), -1 for none (None), or -2
 * with an exception. `label` gets what to call it in messages. */
static int
tt_resolve_netns(PyObject *netns, int *owned, char *label, size_t labelsize)
{
    PyObject *path = NULL;
    const char *s;
    char buf[PATH_MAX];
    int fd;

    *owned = 0;
    snprintf(label, labelsize, "?");
    if (netns == Py_None) {
        return -1;
    }
    if (PyLong_Check(netns)) {
        if (tt_as_int(netns, &fd, "netns") < 0) {
            return -2;
        }
        if (fd < 0) {
            PyErr_SetString(PyExc_ValueError, "netns file descriptor must be >= 0");
            return -2;
        }
        snprintf(label, labelsize, "fd %d", fd);
        return fd;
    }
    if (!PyUnicode_FSConverter(netns, &path)) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            tt_type_error(netns, "netns must be a name, a path or a file descriptor");
        }
        return -2;
    }
    s = PyBytes_AS_STRING(path);
    if (s[0] == '\0' || (size_t)PyBytes_GET_SIZE(path) != strlen(s)) {
        Py_DECREF(path);
        PyErr_SetString(PyExc_ValueError, "netns must be a non-empty name or path "
                                          "without NUL");
        return -2;
    }
    if (strchr(s, '/') == NULL && PyUnicode_Check(netns)) {
        snprintf(buf, sizeof(buf), "%s%s", TT_NETNS_DIR, s);
    }
    else {
        snprintf(buf, sizeof(buf), "%s", s);
    }
    snprintf(label, labelsize, "%s", buf);
    Py_DECREF(path);
    {
        tt_path_ctx c = {buf, -1};
        tt_op op = {.impl = tt_open_ro_impl, .ctx = &c};
        if (tt_call(NULL, &op) < 0) {
            if (op.err) {
                tt_oserror_path(op.err, "open() of network namespace", buf);
            }
            return -2;
        }
        fd = c.fd;
    }
    *owned = 1;
    return fd;
}

/* -- Device() -------------------------------------------------------------- */

/* Steps of opening a device, to name the failing syscall. */
enum {
    TT_STEP_SAVENS, TT_STEP_SETNS, TT_STEP_OPEN, TT_STEP_SETIFF, TT_STEP_GETIFF,
    TT_STEP_SOCKET, TT_STEP_PERSIST, TT_STEP_BACK,
};
static const char *const tt_open_steps[] = {
    "open(/proc/thread-self/ns/net)", "setns(CLONE_NEWNET)", "open()",
    "ioctl(TUNSETIFF)", "ioctl(TUNGETIFF)", "socket(AF_NETLINK)", "ioctl(TUNSETPERSIST)",
    "setns(CLONE_NEWNET) back",
};

typedef struct {
    const char *path;
    int nsfd, persist;
    struct ifreq *ifr;
    int fd, ctl, step;
} tt_open_ctx;

/* Optionally enter the namespace, open the path, TUNSETIFF, read the name back,
 * open the control socket there, TUNSETPERSIST, leave the namespace. On failure
 * everything is undone (so the engine may call it again after EINTR) and
 * c->step names the failing call. */
static ssize_t
tt_open_impl(tt_op *op)
{
    tt_open_ctx *c = op->ctx;
    int saved = -1, err = 0, r;

    c->fd = c->ctl = -1;
    c->step = TT_STEP_SAVENS;
    if (c->nsfd >= 0) {
        r = tt_netns_enter(c->nsfd, &saved);
        if (r < 0) {
            c->step = r == -1 ? TT_STEP_SAVENS : TT_STEP_SETNS;
            return -1;
        }
    }
    c->step = TT_STEP_OPEN;
    c->fd = open(c->path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (c->fd >= 0) {
        c->step = TT_STEP_SETIFF;
        if (ioctl(c->fd, TUNSETIFF, c->ifr) == 0) {
            c->step = TT_STEP_GETIFF;
            if (ioctl(c->fd, TUNGETIFF, c->ifr) == 0) {
                c->step = TT_STEP_SOCKET;
                c->ctl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
                if (c->ctl >= 0) {
                    c->step = TT_STEP_PERSIST;
                    if (!c->persist || ioctl(c->fd, TUNSETPERSIST, 1UL) == 0) {
                        c->step = -1; /* done */
                    }
                }
            }
        }
    }
    if (c->step >= 0) {
        err = errno;
    }
    if (saved >= 0 && tt_netns_leave(saved) < 0 && c->step < 0) {
        err = errno;
        c->step = TT_STEP_BACK;
    }
    if (c->step >= 0) {
        if (c->ctl >= 0) {
            close(c->ctl);
        }
        if (c->fd >= 0) {
            close(c->fd);
        }
        c->fd = c->ctl = -1;
        errno = err;
        return -1;
    }
    return 0;
}

PyObject *
Device_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "flags", "blocking", "netns", "path", NULL};
    PyObject *name_obj = NULL, *netns = Py_None, *path_obj = NULL;
    PyObject *path_bytes = NULL;
    int flags = IFF_TUN | IFF_NO_PI, blocking = 1, ns_owned = 0;
    char name[IFNAMSIZ] = "", nslabel[PATH_MAX];
    struct ifreq ifr;
    tt_open_ctx c = {.path = TT_DEFAULT_PATH, .ifr = &ifr};
    tt_op op = {.impl = tt_open_impl, .ctx = &c};
    DeviceObject *self = NULL;
    Py_ssize_t r;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Ui$pOO:Device", kwlist, &name_obj,
                                     &flags, &blocking, &netns, &path_obj)) {
        return NULL;
    }
    if (name_obj != NULL && tt_check_ifname(name_obj, name) < 0) {
        return NULL;
    }
    if (flags & ~TT_REQUEST_MASK) {
        PyErr_Format(PyExc_ValueError, "unknown flag bits 0x%x", flags & ~TT_REQUEST_MASK);
        return NULL;
    }
    if (((flags & IFF_TUN) != 0) == ((flags & IFF_TAP) != 0)) {
        PyErr_SetString(PyExc_ValueError, "flags must include exactly one of TUN or TAP");
        return NULL;
    }
    if (path_obj != NULL) {
        if (!PyUnicode_FSConverter(path_obj, &path_bytes)) {
            return NULL;
        }
        c.path = PyBytes_AS_STRING(path_bytes);
    }
    c.nsfd = tt_resolve_netns(netns, &ns_owned, nslabel, sizeof(nslabel));
    if (c.nsfd == -2) {
        goto done;
    }
    c.persist = (flags & IFF_PERSIST) != 0;
    tt_set_ifname(&ifr, name);
    ifr.ifr_flags = (short)(flags & ~IFF_PERSIST);
    r = tt_call(NULL, &op);
    if (ns_owned) {
        close(c.nsfd);
    }
    if (r < 0) {
        int err = op.err;
        if (err == 0) {
            /* a signal handler raised */
        }
        else if (c.step == TT_STEP_OPEN) {
            tt_oserror_path(err, "open()", c.path);
        }
        else if (c.step == TT_STEP_SETIFF && err == EBUSY && (flags & IFF_TUN_EXCL)) {
            tt_oserror(EEXIST, "ioctl(TUNSETIFF)", name,
                       " (TUN_EXCL and the interface exists)");
        }
        else if (c.step == TT_STEP_SETIFF && err == EBUSY) {
            tt_oserror(err, "ioctl(TUNSETIFF)", name,
                       " (already attached by another file descriptor)");
        }
        else if (c.step <= TT_STEP_SETNS || c.step == TT_STEP_BACK) {
            tt_oserror(err, tt_open_steps[c.step], nslabel, NULL);
        }
        else {
            tt_oserror(err, tt_open_steps[c.step], name[0] ? name : ifr.ifr_name, NULL);
        }
        goto done;
    }
    self = tt_device_adopt(type, c.fd, c.ctl, ifr.ifr_name);
    if (self == NULL) {
        goto done;
    }
    self->req_flags = flags & ~IFF_PERSIST;
    self->timeout_ns = blocking ? -1 : 0;
    if (tt_update_hdr_len(self, self->req_flags) < 0) {
        Py_CLEAR(self);
    }
done:
    Py_XDECREF(path_bytes);
    return (PyObject *)self;
}

/* -- Device.fromfd() ------------------------------------------------------- */

typedef struct {
    int fd, newfd, ctl;
    struct ifreq *ifr;
    const char *what;
} tt_fromfd_ctx;

/* Duplicate fd, check it is an attached TUN fd, make it non-blocking, and open the
 * control socket in the device's namespace: TUNGETDEVNETNS (Linux 5.2+, needs
 * CAP_NET_ADMIN) says which; without it the caller's is used. Undone on failure. */
static ssize_t
tt_fromfd_impl(tt_op *op)
{
    tt_fromfd_ctx *c = op->ctx;
    int fl, nsfd, saved = -1, err;

    c->ctl = -1;
    c->what = "fcntl(F_DUPFD_CLOEXEC)";
    c->newfd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
    if (c->newfd < 0) {
        return -1;
    }
    c->what = "ioctl(TUNGETIFF)";
    if (ioctl(c->newfd, TUNGETIFF, c->ifr) < 0) {
        goto fail;
    }
    c->what = "fcntl(F_SETFL)";
    fl = fcntl(c->newfd, F_GETFL);
    if (fl < 0 || fcntl(c->newfd, F_SETFL, fl | O_NONBLOCK) < 0) {
        goto fail;
    }
    nsfd = ioctl(c->newfd, TUNGETDEVNETNS);
    if (nsfd >= 0) {
        if (tt_netns_enter(nsfd, &saved) < 0) {
            saved = -1; /* stay here */
        }
        close(nsfd);
    }
    c->what = "socket(AF_NETLINK)";
    c->ctl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    err = errno;
    if (saved >= 0 && tt_netns_leave(saved) < 0 && c->ctl >= 0) {
        err = errno;
        c->what = "setns(CLONE_NEWNET) back";
        close(c->ctl);
        c->ctl = -1;
    }
    if (c->ctl >= 0) {
        return 0;
    }
    errno = err;
fail:
    err = errno;
    close(c->newfd);
    c->newfd = -1;
    errno = err;
    return -1;
}

TT_DOC(Device_fromfd__doc__,
"fromfd($type, fd, /)\n--\n\n"
"Create a Device from a duplicate of an open, attached /dev/net/tun fd (like\n"
"socket.fromfd; the original stays open). The shared open file description is\n"
"switched to O_NONBLOCK.");

PyObject *
Device_fromfd(PyTypeObject *type, PyObject *arg)
{
    struct ifreq ifr;
    tt_fromfd_ctx c = {.ifr = &ifr};
    tt_op op = {.impl = tt_fromfd_impl, .ctx = &c};
    DeviceObject *self;
    int flags;

    if (tt_as_int(arg, &c.fd, "fd") < 0) {
        return NULL;
    }
    if (c.fd < 0) {
        PyErr_SetString(PyExc_ValueError, "negative file descriptor");
        return NULL;
    }
    memset(&ifr, 0, sizeof(ifr));
    if (tt_call(NULL, &op) < 0) {
        if (op.err == 0) {
            return NULL;
        }
        if (op.err == ENOTTY || op.err == EINVAL) {
            PyErr_Format(PyExc_ValueError, "fd %d is not a /dev/net/tun file descriptor",
                         c.fd);
            return NULL;
        }
        if (op.err == EBADFD) {
            PyErr_Format(PyExc_ValueError,
                         "fd %d is not attached to a TUN/TAP interface", c.fd);
            return NULL;
        }
        return tt_oserror(op.err, c.what, NULL, NULL);
    }
    self = tt_device_adopt(type, c.newfd, c.ctl, ifr.ifr_name);
    if (self == NULL) {
        return NULL;
    }
    if (tt_device_flags(self, &flags) < 0 || tt_update_hdr_len(self, flags) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->req_flags = flags;
    return (PyObject *)self;
}

/* -- features() ------------------------------------------------------------ */

typedef struct {
    const char *path, *what;
    unsigned int features;
} tt_features_ctx;

static ssize_t
tt_features_impl(tt_op *op)
{
    tt_features_ctx *c = op->ctx;
    int fd, r, err;

    c->what = "open()";
    fd = open(c->path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    c->what = "ioctl(TUNGETFEATURES)";
    r = ioctl(fd, TUNGETFEATURES, &c->features);
    err = errno;
    close(fd);
    errno = err;
    return r;
}

TT_DOC(tt_features__doc__,
"features($module, path='/dev/net/tun', /)\n--\n\n"
"The IFF_* flags this kernel supports (TUNGETFEATURES).");

PyObject *
tt_features(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *path_bytes = NULL;
    tt_features_ctx c = {.path = TT_DEFAULT_PATH};
    tt_op op = {.impl = tt_features_impl, .ctx = &c};
    Py_ssize_t r;

    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "features() takes at most 1 argument (%zd given)",
                     nargs);
        return NULL;
    }
    if (nargs == 1) {
        if (!PyUnicode_FSConverter(args[0], &path_bytes)) {
            return NULL;
        }
        c.path = PyBytes_AS_STRING(path_bytes);
    }
    r = tt_call(NULL, &op);
    if (r < 0 && op.err) {
        tt_oserror_path(op.err, c.what, c.path);
    }
    Py_XDECREF(path_bytes);
    return r < 0 ? NULL : PyLong_FromUnsignedLong(c.features);
}
