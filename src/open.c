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
#include <linux/virtio_net.h>

#include "netlink.h"

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
    self->fd = self->wakefd = self->ctlfd = -1; /* before any DECREF: nothing to close */
    tt_state *st = tt_find_state(type);
    if (st == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->batch_type = st->PacketBatchType;
    self->req_flags = -1;
    self->offload = -1;
    self->timeout_ns = -1;
    self->nl_lock = PyThread_allocate_lock();
    if (self->nl_lock == NULL) {
        Py_DECREF(self);
        PyErr_NoMemory();
        return NULL;
    }
    tt_device_link(self);
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

int
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

int
tt_netns_socket(int nsfd, const char **what)
{
    int saved = -1, fd, err, r;

    if (nsfd >= 0) {
        r = tt_netns_enter(nsfd, &saved);
        if (r < 0) {
            *what = r == -1 ? "open(/proc/thread-self/ns/net)" : "setns(CLONE_NEWNET)";
            return -1;
        }
    }
    *what = "socket(AF_NETLINK)";
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    err = errno;
    if (saved >= 0 && tt_netns_leave(saved) < 0) {
        err = errno;
        *what = "setns(CLONE_NEWNET) back";
        if (fd >= 0) {
            close(fd);
        }
        fd = -1;
    }
    errno = err;
    return fd;
}

/* -- Device() -------------------------------------------------------------- */

/* Steps of opening a device, to name the failing syscall. */
enum {
    TT_STEP_SAVENS, TT_STEP_SETNS, TT_STEP_OPEN, TT_STEP_SETIFF, TT_STEP_GETIFF,
    TT_STEP_SOCKET, TT_STEP_MISMATCH, TT_STEP_OFFLOAD, TT_STEP_VNETHDRSZ,
    TT_STEP_PERSIST, TT_STEP_BACK,
};
static const char *const tt_open_steps[] = {
    "open(/proc/thread-self/ns/net)", "setns(CLONE_NEWNET)", "open()",
    "ioctl(TUNSETIFF)", "ioctl(TUNGETIFF)", "socket(AF_NETLINK)", "ioctl(TUNSETIFF)",
    "ioctl(TUNSETOFFLOAD)", "ioctl(TUNSETVNETHDRSZ)", "ioctl(TUNSETPERSIST)",
    "setns(CLONE_NEWNET) back",
};

typedef struct {
    const char *path;
    int nsfd, persist, req;  /* req: the flags asked for */
    struct ifreq *ifr;
    int fd, ctl, step;
    /* What the failure looked like from inside the namespace: whether the name
     * exists (found), and what it is (li); for TT_STEP_MISMATCH, the device's
     * packet info and VNET_HDR (li.pi, li.vnet_hdr). */
    int found;
    tt_linkinfo li;
} tt_open_ctx;

/* No GIL. Look up the interface c->ifr->ifr_name (in the namespace the thread is
 * in) to explain a refusal; errno is kept. */
static void
tt_open_diagnose(tt_open_ctx *c, const char *name)
{
    int err = errno, fd;
    const char *what;

    c->found = 0;
    if (name[0] == '\0' || strchr(name, '%') != NULL) {
        return; /* a template names no existing interface */
    }
    fd = tt_netns_socket(-1, &what);
    if (fd >= 0) {
        c->found = tt_nl_getlink_name(fd, name, &c->li) == 1;
        close(fd);
    }
    errno = err;
}

/* No GIL. After a successful attach: make the fd receive what the Device reports.
 *
 * The framing flags, the offload mask, the vnet header size and byte order are
 * device-wide (drivers/net/tun.c: tun_set_iff). A queue joining a MULTI_QUEUE
 * device that already has queues gets the device's flags, not the ones it asked
 * for: refuse that when packet info or VNET_HDR differ (TT_STEP_MISMATCH, EINVAL).
 * Every other open replaces the flags, and the state the previous owner of a
 * persistent device left would leak into this fd: offloads without VNET_HDR hand
 * out super-packets and partial checksums nothing marks. So a fd without VNET_HDR
 * always starts with no offloads, and the first fd with VNET_HDR from the
 * defaults (no offloads, 10-byte header, native byte order). A joining queue with
 * VNET_HDR keeps what the queues before it set. 0, or -1 with errno and c->step. */
static int
tt_open_settle(tt_open_ctx *c)
{
    int flags = c->ifr->ifr_flags, joined = 0, zero = 0, hdrsz = (int)sizeof(struct virtio_net_hdr);

    if (flags & IFF_MULTI_QUEUE) {
        tt_linkinfo li;
        if (tt_nl_getlink_name(c->ctl, c->ifr->ifr_name, &li) == 1 && li.has_pi) {
            joined = li.num_queues + li.num_disabled_queues > 1;
            if (joined && (li.pi == ((c->req & IFF_NO_PI) != 0) ||
                           !(flags & IFF_VNET_HDR) != !(c->req & IFF_VNET_HDR))) {
                c->li = li;
                c->li.vnet_hdr = (flags & IFF_VNET_HDR) != 0;
                c->step = TT_STEP_MISMATCH;
                errno = EINVAL;
                return -1;
            }
        }
        else {
            joined = 1; /* unknown: leave a VNET_HDR device's state alone */
        }
    }
    if (!(flags & IFF_VNET_HDR) || !joined) {
        c->step = TT_STEP_OFFLOAD;
        if (ioctl(c->fd, TUNSETOFFLOAD, 0UL) < 0) {
            return -1;
        }
    }
    if ((flags & IFF_VNET_HDR) && !joined) {
        c->step = TT_STEP_VNETHDRSZ;
        if (ioctl(c->fd, TUNSETVNETHDRSZ, &hdrsz) < 0) {
            return -1;
        }
        /* Without CONFIG_TUN_VNET_CROSS_LE, TUNSETVNETBE is EINVAL: nothing to undo. */
        (void)ioctl(c->fd, TUNSETVNETLE, &zero);
#ifdef TUNSETVNETBE
        (void)ioctl(c->fd, TUNSETVNETBE, &zero);
#endif
    }
    return 0;
}

/* Optionally enter the namespace, open the path, TUNSETIFF, read the name back,
 * open the control socket there, settle the device state (tt_open_settle),
 * TUNSETPERSIST, leave the namespace. On failure everything is undone (so the
 * engine may call it again after EINTR), c->step names the failing call, and a
 * refused TUNSETIFF is looked into (tt_open_diagnose). */
static ssize_t
tt_open_impl(tt_op *op)
{
    tt_open_ctx *c = op->ctx;
    int saved = -1, err = 0, r;
    char name[IFNAMSIZ];

    c->fd = c->ctl = -1;
    c->found = 0;
    c->step = TT_STEP_SAVENS;
    memcpy(name, c->ifr->ifr_name, IFNAMSIZ);
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
                if (c->ctl >= 0 && tt_open_settle(c) == 0) {
                    c->step = TT_STEP_PERSIST;
                    if (!c->persist || ioctl(c->fd, TUNSETPERSIST, 1UL) == 0) {
                        c->step = -1; /* done */
                    }
                }
            }
        }
        else if (errno == EINVAL || errno == EPERM) {
            tt_open_diagnose(c, name);
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

static const char *
tt_type_name(int type)
{
    return type == IFF_TAP ? "TAP" : type == IFF_TUN ? "TUN" : "?";
}

/* GIL held. The exception for a failed open, with what a user can act on where
 * the kernel gives only an errno (drivers/net/tun.c: tun_set_iff). */
static void
tt_open_error(const tt_open_ctx *c, int err, int flags, const char *name,
              const char *nslabel)
{
    const tt_linkinfo *li = &c->li;
    char hint[320];
    const char *call = tt_open_steps[c->step];

    hint[0] = '\0';
    if (c->step == TT_STEP_OPEN) {
        tt_oserror_path_hint(
            err, "open()", c->path,
            err == EACCES || err == EPERM
                ? " (no read-write access to the TUN clone device: run as root or "
                  "open a device node this user may use; attaching then needs "
                  "CAP_NET_ADMIN, or the device's owner or group)"
                : NULL);
        return;
    }
    if (c->step <= TT_STEP_SETNS || c->step == TT_STEP_BACK) {
        tt_oserror(err, call, nslabel, NULL);
        return;
    }
    if (c->step == TT_STEP_SETIFF && err == EBUSY && (flags & IFF_TUN_EXCL)) {
        tt_oserror(EEXIST, call, name, " (TUN_EXCL and the interface exists)");
        return;
    }
    if (c->step == TT_STEP_SETIFF && err == EBUSY) {
        snprintf(hint, sizeof(hint), " (already attached by another file descriptor: "
                 "only a MULTI_QUEUE device takes more than one)");
    }
    else if (c->step == TT_STEP_SETIFF && err == EPERM) {
        if (flags & IFF_NAPI_FRAGS) {
            snprintf(hint, sizeof(hint), " (NAPI_FRAGS needs CAP_NET_ADMIN in the "
                     "initial user namespace)");
        }
        else if (!c->found) {
            snprintf(hint, sizeof(hint), " (creating a TUN/TAP device needs "
                     "CAP_NET_ADMIN in its network namespace)");
        }
        else if (li->owner >= 0 && li->group >= 0) {
            snprintf(hint, sizeof(hint), " (attaching needs CAP_NET_ADMIN, or to be its "
                     "owner uid %lld and in its group gid %lld)", li->owner, li->group);
        }
        else if (li->owner >= 0 || li->group >= 0) {
            snprintf(hint, sizeof(hint), " (attaching needs CAP_NET_ADMIN, or %s %lld)",
                     li->owner >= 0 ? "to be its owner uid" : "to be in its group gid",
                     li->owner >= 0 ? li->owner : li->group);
        }
        else {
            snprintf(hint, sizeof(hint), " (attaching needs CAP_NET_ADMIN, or the "
                     "device's owner or group)");
        }
    }
    else if (c->step == TT_STEP_SETIFF && err == EINVAL && c->found) {
        int want = flags & (IFF_TUN | IFF_TAP);
        if (!li->is_tun) {
            snprintf(hint, sizeof(hint), " ('%s' is %s%s%s interface, not a TUN/TAP "
                     "device)", name, li->kind[0] ? "a '" : "an existing",
                     li->kind, li->kind[0] ? "'" : "");
        }
        else if (li->type && li->type != want) {
            snprintf(hint, sizeof(hint), " ('%s' is a %s device, not %s: open it with "
                     "Flags.%s)", name, tt_type_name(li->type), tt_type_name(want),
                     tt_type_name(li->type));
        }
        else if (!li->multi_queue && (flags & IFF_MULTI_QUEUE)) {
            snprintf(hint, sizeof(hint), " ('%s' is a single-queue device: "
                     "open_queues() and MULTI_QUEUE need one created with "
                     "MULTI_QUEUE)", name);
        }
        else if (li->multi_queue && !(flags & IFF_MULTI_QUEUE)) {
            snprintf(hint, sizeof(hint), " ('%s' is a MULTI_QUEUE device: open it with "
                     "Flags.MULTI_QUEUE or open_queues())", name);
        }
    }
    else if (c->step == TT_STEP_MISMATCH) {
        snprintf(hint, sizeof(hint), " (its queues already open have NO_PI %s and "
                 "VNET_HDR %s, and a new queue gets the device's flags, not the ones "
                 "it asks for: open it with the same NO_PI and VNET_HDR)",
                 li->pi ? "off" : "on", li->vnet_hdr ? "on" : "off");
    }
    else if (c->step == TT_STEP_GETIFF && err == EBADFD) {
        /* drivers/net/tun.c: tun_attach returns early, without attaching, when it
         * re-applies a classic filter to a queue opened without IFF_NOFILTER. */
        snprintf(hint, sizeof(hint), " (the kernel accepted TUNSETIFF but left this "
                 "queue unattached: a classic filter (attach_filter()) is set on "
                 "'%s'; detach_filter() first, or open with NO_PI)", name);
    }
    tt_oserror(err, call, name, hint[0] ? hint : NULL);
}

PyObject *
Device_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "flags", "blocking", "netns", "path", "io", NULL};
    PyObject *name_obj = NULL, *netns = Py_None, *path_obj = NULL, *io_obj = NULL;
    PyObject *path_bytes = NULL;
    int flags = IFF_TUN | IFF_NO_PI, blocking = 1, ns_owned = 0, io;
    char name[IFNAMSIZ] = "", nslabel[PATH_MAX];
    struct ifreq ifr;
    tt_open_ctx c = {.path = TT_DEFAULT_PATH, .ifr = &ifr};
    tt_op op = {.impl = tt_open_impl, .ctx = &c};
    DeviceObject *self = NULL;
    Py_ssize_t r;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Ui$pOOO:Device", kwlist, &name_obj,
                                     &flags, &blocking, &netns, &path_obj, &io_obj)) {
        return NULL;
    }
    if (tt_parse_io(io_obj, &io) < 0) {
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
    /* drivers/net/tun.c: tun_set_iff refuses these with a bare EINVAL. */
    if ((flags & IFF_NAPI_FRAGS) && (!(flags & IFF_NAPI) || !(flags & IFF_TAP))) {
        PyErr_SetString(PyExc_ValueError, "NAPI_FRAGS needs NAPI and TAP");
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
    c.req = flags;
    tt_set_ifname(&ifr, name);
    ifr.ifr_flags = (short)(flags & ~IFF_PERSIST);
    r = tt_call(NULL, &op);
    if (ns_owned) {
        close(c.nsfd);
    }
    if (r < 0) {
        if (op.err != 0) { /* else a signal handler raised */
            tt_open_error(&c, op.err, flags, name[0] ? name : ifr.ifr_name, nslabel);
        }
        goto done;
    }
    self = tt_device_adopt(type, c.fd, c.ctl, ifr.ifr_name);
    if (self == NULL) {
        goto done;
    }
    self->req_flags = flags & ~IFF_PERSIST;
    self->timeout_ns = blocking ? -1 : 0;
    if (tt_update_hdr_len(self, self->req_flags) < 0 || tt_uring_attach(self, io) < 0) {
        tt_shutdown(self, 0); /* closed here, not by the finalizer's ResourceWarning */
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
    if (tt_device_flags(self, &flags) < 0 || tt_update_hdr_len(self, flags) < 0 ||
        tt_uring_attach(self, TT_IO_AUTO) < 0) {
        tt_shutdown(self, 0);
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
