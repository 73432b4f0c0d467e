/*
 * tuntap._tuntap: Linux TUN/TAP devices for CPython.
 *
 * Everything that touches the device fd lives here: open, TUNSETIFF and the other
 * ioctls, the single-packet hot path (readinto/read/write), the batched zero-copy
 * path (PacketBatch, read_batch/write_batch) and close.
 *
 * Design notes (see docs/design.md and ../shared/KERNEL.md):
 * - The device fd is always O_NONBLOCK at the OS level. Blocking mode is emulated
 *   like CPython's socket module: try the syscall, and on EAGAIN poll() the device
 *   fd together with an eventfd that close() signals. The kernel does not wake a
 *   reader blocked in read() when another thread closes the fd
 *   (drivers/net/tun.c: tun_do_read holds a file reference), so never block in read().
 * - `busy` counts threads that released the GIL to run a syscall on the fd. It is
 *   only changed with the GIL held. close() marks the device closed, signals the
 *   eventfd and waits (GIL released) until `busy` is 0 before it closes the fd, so
 *   the fd number can never be reused under a thread still inside a syscall.
 * - Each device keeps a NETLINK_ROUTE socket opened in the device's network
 *   namespace; it serves both the SIOC* interface ioctls and rtnetlink requests,
 *   so a device created in another namespace (netns=) stays fully manageable.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <linux/if_tun.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <linux/virtio_net.h>

/* USO offloads (Linux 6.2); older uapi headers lack them, the values are ABI. */
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

#ifndef CLONE_NEWNET
#define CLONE_NEWNET 0x40000000
#endif

#if PY_VERSION_HEX < 0x030A00F0
static inline PyObject *
Py_NewRef(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#endif

/* Limited API (abi3) builds: only measured for docs/packaging.md (the wheels use the
 * full API). Stand-ins for the macros and private calls the limited API lacks. */
#ifdef Py_LIMITED_API
#define PyBytes_AS_STRING(o) PyBytes_AsString(o)
#define PyBytes_GET_SIZE(o) PyBytes_Size(o)
#define PyUnicode_AsUTF8(o) PyUnicode_AsUTF8AndSize((o), NULL)
#define PyMem_RawCalloc calloc
#define PyMem_RawFree free
#define TT_SEQ_SIZE(seq) (PyList_Check(seq) ? PyList_Size(seq) : PyTuple_Size(seq))
#define TT_SEQ_ITEM(seq, i) (PyList_Check(seq) ? PyList_GetItem((seq), (i)) \
                                               : PyTuple_GetItem((seq), (i)))
#else
#define TT_SEQ_SIZE(seq) PySequence_Fast_GET_SIZE(seq)
#define TT_SEQ_ITEM(seq, i) PySequence_Fast_GET_ITEM((seq), (i))
#endif

#define TT_MODULE_NAME "tuntap._tuntap"
#define TT_DEFAULT_PATH "/dev/net/tun"
#define TT_NETNS_DIR "/var/run/netns/"

/* Flags a caller may request from TUNSETIFF. IFF_PERSIST is applied afterwards with
 * TUNSETPERSIST (the kernel ignores it in TUNSETIFF). */
#define TT_REQUEST_MASK                                                            \
    (IFF_TUN | IFF_TAP | IFF_NAPI | IFF_NAPI_FRAGS | IFF_NO_CARRIER | IFF_NO_PI |   \
     IFF_ONE_QUEUE | IFF_VNET_HDR | IFF_TUN_EXCL | IFF_MULTI_QUEUE | IFF_PERSIST)

/* ------------------------------------------------------------------------ */
/* Module state                                                              */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyTypeObject *DeviceType;
    PyTypeObject *PacketBatchType;
} tt_state;

/* A PacketBatch: one arena of `capacity` slots of `stride` = headroom + slot_size
 * bytes; packet i lives at arena + i * stride + headroom, sizes[i] bytes long.
 * Defined here because Device.read_batch/write_batch fill and drain it. */
typedef struct {
    PyObject_HEAD
    char *arena;
    uint32_t *sizes;
    Py_ssize_t capacity, slot_size, headroom, stride, count;
    /* A pending narrow export (one packet, or the sizes), set just around
     * PyMemoryView_FromObject(self) with the GIL held. */
    int export_kind; /* 0: whole arena, 1: region, 2: sizes */
    Py_ssize_t export_off, export_len;
} PacketBatchObject;

static struct PyModuleDef tt_module;

static inline tt_state *
tt_get_state(PyObject *module)
{
    return (tt_state *)PyModule_GetState(module);
}

/* The module state from a type that may be a Python subclass of ours (works on
 * 3.9, where PyType_GetModuleByDef does not exist). */
static tt_state *
tt_find_state(PyTypeObject *type)
{
#ifdef Py_LIMITED_API
    PyObject *mro = PyObject_GetAttrString((PyObject *)type, "__mro__");
    Py_ssize_t i, n = mro ? PyTuple_Size(mro) : 0;
    tt_state *st = NULL;
    for (i = 0; st == NULL && i < n; i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GetItem(mro, i);
        if (PyType_GetFlags(t) & Py_TPFLAGS_HEAPTYPE) {
            PyObject *m = PyType_GetModule(t);
            if (m == NULL) {
                PyErr_Clear();
            }
            else if (PyModule_GetDef(m) == &tt_module) {
                st = tt_get_state(m);
            }
        }
    }
    Py_XDECREF(mro);
    if (st != NULL) {
        return st;
    }
#else
    PyObject *mro = type->tp_mro;
    Py_ssize_t i, n = mro ? PyTuple_GET_SIZE(mro) : 0;
    for (i = 0; i < n; i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (t->tp_flags & Py_TPFLAGS_HEAPTYPE) {
            PyObject *m = ((PyHeapTypeObject *)t)->ht_module;
            if (m != NULL && PyModule_GetDef(m) == &tt_module) {
                return tt_get_state(m);
            }
        }
    }
#endif
    PyErr_SetString(PyExc_TypeError, "tuntap._tuntap state not found");
    return NULL;
}


/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static int64_t
tt_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* TypeError "<message>, not <type name>" (the shape CPython uses). Works under the
 * limited API too, where PyTypeObject is opaque. Always NULL. */
static PyObject *
tt_type_error(PyObject *obj, const char *fmt, ...)
{
    va_list va;
    PyObject *msg, *tname;
#ifdef Py_LIMITED_API
    tname = PyType_GetName(Py_TYPE(obj));
#else
    tname = PyUnicode_FromString(Py_TYPE(obj)->tp_name);
#endif
    if (tname == NULL) {
        return NULL;
    }
    va_start(va, fmt);
    msg = PyUnicode_FromFormatV(fmt, va);
    va_end(va);
    if (msg != NULL) {
        PyErr_Format(PyExc_TypeError, "%U, not %.100U", msg, tname);
        Py_DECREF(msg);
    }
    Py_DECREF(tname);
    return NULL;
}

/* Set the OSError subclass that matches `err`, with the syscall and the interface in
 * the message, e.g. "[Errno 1] Operation not permitted: ioctl(TUNSETIFF) on 'tun0'".
 * `hint` (may be NULL) is appended, e.g. " (the interface is down)". Always NULL. */
static PyObject *
tt_oserror(int err, const char *syscall, const char *ifname, const char *hint)
{
    PyObject *msg, *exc;

    if (ifname != NULL && ifname[0] != '\0') {
        msg = PyUnicode_FromFormat("%s: %s on '%s'%s", strerror(err), syscall, ifname,
                                   hint ? hint : "");
    }
    else {
        msg = PyUnicode_FromFormat("%s: %s%s", strerror(err), syscall, hint ? hint : "");
    }
    if (msg == NULL) {
        return NULL;
    }
    /* OSError(errno, strerror) returns the matching subclass (PEP 3151). */
    exc = PyObject_CallFunction(PyExc_OSError, "iO", err, msg);
    Py_DECREF(msg);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* Copy a validated interface name into ifr_name: bounded, always NUL-terminated. */
static void
tt_set_ifname(struct ifreq *ifr, const char *name)
{
    memset(ifr, 0, sizeof(*ifr));
    snprintf(ifr->ifr_name, IFNAMSIZ, "%s", name);
}

/* Check a user-supplied interface name before any syscall. The kernel silently
 * truncates names longer than IFNAMSIZ-1 (net/core/dev.c: dev_valid_name rejects '/',
 * ':' and whitespace, but only after the copy), so reject them here. */
static int
tt_check_ifname(PyObject *obj, char out[IFNAMSIZ])
{
    Py_ssize_t len, i;
    const char *s;

    if (!PyUnicode_Check(obj)) {
        tt_type_error(obj, "interface name must be str");
        return -1;
    }
    s = PyUnicode_AsUTF8AndSize(obj, &len);
    if (s == NULL) {
        return -1;
    }
    if (len > IFNAMSIZ - 1) {
        PyErr_Format(PyExc_ValueError,
                     "interface name %R is %zd bytes long; the limit is %d", obj, len,
                     IFNAMSIZ - 1);
        return -1;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\0' || c == '/' || c == ':' || c == ' ' || (c >= '\t' && c <= '\r')) {
            PyErr_Format(PyExc_ValueError,
                         "interface name %R must not contain NUL, '/', ':' or whitespace",
                         obj);
            return -1;
        }
    }
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
        PyErr_Format(PyExc_ValueError, "interface name %R is not allowed", obj);
        return -1;
    }
    memcpy(out, s, (size_t)len);
    out[len] = '\0';
    return 0;
}

static int
tt_as_int(PyObject *obj, int *out, const char *what)
{
    long v;
    if (!PyLong_Check(obj)) {
        tt_type_error(obj, "%s must be int", what);
        return -1;
    }
    v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_Format(PyExc_OverflowError, "%s is out of range", what);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Turn a Python timeout (None or seconds) into nanoseconds: -1 means block forever,
 * 0 means non-blocking. Same rules and messages as socket.settimeout(). */
static int
tt_parse_timeout(PyObject *obj, int64_t *out)
{
    double t;

    if (obj == Py_None) {
        *out = -1;
        return 0;
    }
    t = PyFloat_AsDouble(obj);
    if (t == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            tt_type_error(obj, "timeout must be a number or None");
        }
        return -1;
    }
    if (t != t) {
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return -1;
    }
    if (t < 0) {
        PyErr_SetString(PyExc_ValueError, "Timeout value out of range");
        return -1;
    }
    if (t > 9.2e9) {
        PyErr_SetString(PyExc_OverflowError, "timeout doesn't fit into C timeval");
        return -1;
    }
    *out = (int64_t)(t * 1e9);
    if (*out == 0 && t > 0) {
        *out = 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Netlink (rtnetlink) helpers, cold path                                    */
/* ------------------------------------------------------------------------ */

/* What RTM_GETLINK tells about one TUN/TAP interface (include/uapi/linux/if_link.h:
 * IFLA_LINKINFO -> IFLA_INFO_KIND "tun" -> IFLA_INFO_DATA -> IFLA_TUN_*). */
typedef struct {
    int ifindex;
    int is_tun; /* IFLA_INFO_KIND == "tun" */
    int type;   /* IFF_TUN or IFF_TAP, 0 if unknown */
    int pi, vnet_hdr, multi_queue, persist;
    int has_pi; /* IFLA_TUN_PI was present */
    long long owner, group; /* -1: none */
    unsigned num_queues, num_disabled_queues;
    char name[IFNAMSIZ];
} tt_linkinfo;

#define TT_RTA_OK(rta, len)                                                         \
    ((len) >= (int)sizeof(struct rtattr) && (rta)->rta_len >= sizeof(struct rtattr) && \
     (int)(rta)->rta_len <= (len))
#define TT_RTA_NEXT(rta, len)                                                       \
    ((len) -= RTA_ALIGN((rta)->rta_len),                                            \
     (struct rtattr *)(((char *)(rta)) + RTA_ALIGN((rta)->rta_len)))

static unsigned
tt_rta_u32(const struct rtattr *rta)
{
    uint32_t v = 0;
    if (RTA_PAYLOAD(rta) >= sizeof(v)) {
        memcpy(&v, RTA_DATA(rta), sizeof(v));
    }
    return v;
}

static unsigned
tt_rta_u8(const struct rtattr *rta)
{
    return RTA_PAYLOAD(rta) >= 1 ? *(const uint8_t *)RTA_DATA(rta) : 0;
}

static void
tt_parse_tun_data(struct rtattr *rta, int len, tt_linkinfo *li)
{
    for (; TT_RTA_OK(rta, len); rta = TT_RTA_NEXT(rta, len)) {
        switch (rta->rta_type) {
        case IFLA_TUN_TYPE:
            li->type = (int)tt_rta_u8(rta);
            break;
        case IFLA_TUN_PI:
            li->pi = (int)tt_rta_u8(rta);
            li->has_pi = 1;
            break;
        case IFLA_TUN_VNET_HDR:
            li->vnet_hdr = (int)tt_rta_u8(rta);
            break;
        case IFLA_TUN_PERSIST:
            li->persist = (int)tt_rta_u8(rta);
            break;
        case IFLA_TUN_MULTI_QUEUE:
            li->multi_queue = (int)tt_rta_u8(rta);
            break;
        case IFLA_TUN_OWNER:
            li->owner = tt_rta_u32(rta);
            break;
        case IFLA_TUN_GROUP:
            li->group = tt_rta_u32(rta);
            break;
        case IFLA_TUN_NUM_QUEUES:
            li->num_queues = tt_rta_u32(rta);
            break;
        case IFLA_TUN_NUM_DISABLED_QUEUES:
            li->num_disabled_queues = tt_rta_u32(rta);
            break;
        default:
            break;
        }
    }
}

/* Parse one RTM_NEWLINK message into `li`. */
static void
tt_parse_link(struct nlmsghdr *h, tt_linkinfo *li)
{
    struct ifinfomsg *ifi = NLMSG_DATA(h);
    struct rtattr *rta = IFLA_RTA(ifi), *sub;
    int len = (int)IFLA_PAYLOAD(h), sublen;

    memset(li, 0, sizeof(*li));
    li->owner = li->group = -1;
    li->ifindex = ifi->ifi_index;
    for (; TT_RTA_OK(rta, len); rta = TT_RTA_NEXT(rta, len)) {
        if (rta->rta_type == IFLA_IFNAME) {
            snprintf(li->name, IFNAMSIZ, "%.*s", (int)RTA_PAYLOAD(rta),
                     (const char *)RTA_DATA(rta));
        }
        else if (rta->rta_type == IFLA_LINKINFO) {
            sub = RTA_DATA(rta);
            sublen = (int)RTA_PAYLOAD(rta);
            for (; TT_RTA_OK(sub, sublen); sub = TT_RTA_NEXT(sub, sublen)) {
                if (sub->rta_type == IFLA_INFO_KIND) {
                    li->is_tun = RTA_PAYLOAD(sub) >= 3 &&
                                 strncmp(RTA_DATA(sub), "tun", RTA_PAYLOAD(sub)) == 0;
                }
                else if (sub->rta_type == IFLA_INFO_DATA) {
                    tt_parse_tun_data(RTA_DATA(sub), (int)RTA_PAYLOAD(sub), li);
                }
            }
        }
    }
}

typedef int (*tt_nl_cb)(struct nlmsghdr *h, void *arg);

/* Send one request on a NETLINK_ROUTE socket and read replies until the ACK or
 * NLMSG_DONE. Runs without the GIL. Returns 0, or -1 with errno set (the kernel's
 * error from NLMSG_ERROR, or the failing syscall's). */
static int
tt_nl_transact(int fd, struct nlmsghdr *req, tt_nl_cb cb, void *arg)
{
    static const size_t bufsize = 32768;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    char *buf;
    ssize_t n;
    int done = 0, err = 0;
    uint32_t seq = req->nlmsg_seq;

    do {
        n = sendto(fd, req, req->nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -1;
    }
    buf = malloc(bufsize);
    if (buf == NULL) {
        errno = ENOMEM;
        return -1;
    }
    while (!done) {
        struct nlmsghdr *h;
        int len;
        do {
            n = recv(fd, buf, bufsize, 0);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            err = errno;
            break;
        }
        len = (int)n;
        for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned)len);
             h = NLMSG_NEXT(h, len)) {
            if (h->nlmsg_seq != seq) {
                continue; /* a stale reply to an earlier, interrupted request */
            }
            if (h->nlmsg_type == NLMSG_DONE) {
                done = 1;
                break;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                err = -e->error; /* 0 is the ACK */
                done = 1;
                break;
            }
            if (cb != NULL && cb(h, arg) < 0) {
                err = errno;
                done = 1;
                break;
            }
        }
    }
    free(buf);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

static uint32_t tt_nl_seq = 1; /* only touched with the GIL held */

typedef struct {
    tt_linkinfo *items;
    size_t n, cap;
    int want_index;
} tt_linklist;

static int
tt_collect_link(struct nlmsghdr *h, void *arg)
{
    tt_linklist *ll = arg;
    tt_linkinfo li;

    if (h->nlmsg_type != RTM_NEWLINK) {
        return 0;
    }
    tt_parse_link(h, &li);
    if (!li.is_tun || (ll->want_index && li.ifindex != ll->want_index)) {
        return 0;
    }
    if (ll->n == ll->cap) {
        size_t cap = ll->cap ? ll->cap * 2 : 8;
        tt_linkinfo *p = realloc(ll->items, cap * sizeof(*p));
        if (p == NULL) {
            errno = ENOMEM;
            return -1;
        }
        ll->items = p;
        ll->cap = cap;
    }
    ll->items[ll->n++] = li;
    return 0;
}

/* RTM_GETLINK for one ifindex (> 0) or a dump of all links (0), keeping TUN/TAP
 * ones. Without the GIL. Returns 0 or -1 with errno. */
static int
tt_nl_getlinks(int fd, int ifindex, uint32_t seq, tt_linklist *ll)
{
    struct {
        struct nlmsghdr h;
        struct ifinfomsg ifi;
        char attrs[64];
    } req;
    struct rtattr *rta;
    uint32_t mask = RTEXT_FILTER_SKIP_STATS;

    memset(&req, 0, sizeof(req));
    req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
    req.h.nlmsg_type = RTM_GETLINK;
    req.h.nlmsg_flags = NLM_F_REQUEST | (ifindex > 0 ? 0 : NLM_F_DUMP);
    req.h.nlmsg_seq = seq;
    req.ifi.ifi_family = AF_UNSPEC;
    req.ifi.ifi_index = ifindex;
    rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.h.nlmsg_len));
    rta->rta_type = IFLA_EXT_MASK;
    rta->rta_len = RTA_LENGTH(sizeof(mask));
    memcpy(RTA_DATA(rta), &mask, sizeof(mask));
    req.h.nlmsg_len = NLMSG_ALIGN(req.h.nlmsg_len) + RTA_ALIGN(rta->rta_len);
    ll->want_index = ifindex;
    if (ifindex > 0) {
        /* A single GETLINK is answered by one RTM_NEWLINK and no ACK/DONE: ask for
         * the ACK so the loop in tt_nl_transact ends. */
        req.h.nlmsg_flags |= NLM_F_ACK;
    }
    return tt_nl_transact(fd, &req.h, tt_collect_link, ll);
}

static PyObject *
tt_linkinfo_tuple(const tt_linkinfo *li)
{
    PyObject *owner = li->owner >= 0 ? PyLong_FromLongLong(li->owner) : Py_NewRef(Py_None);
    PyObject *group = li->group >= 0 ? PyLong_FromLongLong(li->group) : Py_NewRef(Py_None);
    PyObject *t = NULL;
    int flags = li->type;

    if (owner == NULL || group == NULL) {
        goto done;
    }
    if (!li->pi) {
        flags |= IFF_NO_PI;
    }
    if (li->vnet_hdr) {
        flags |= IFF_VNET_HDR;
    }
    if (li->multi_queue) {
        flags |= IFF_MULTI_QUEUE;
    }
    if (li->persist) {
        flags |= IFF_PERSIST;
    }
    t = Py_BuildValue("(siiOOOII)", li->name, li->ifindex, flags, owner, group,
                      li->persist ? Py_True : Py_False, li->num_queues,
                      li->num_disabled_queues);
done:
    Py_XDECREF(owner);
    Py_XDECREF(group);
    return t;
}

/* ------------------------------------------------------------------------ */
/* The Device type                                                           */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    int fd;             /* the /dev/net/tun fd, always O_NONBLOCK; -1 once closed */
    int wakefd;         /* eventfd that close() signals; -1 until a blocking wait */
    int ctlfd;          /* NETLINK_ROUTE socket in the device's network namespace */
    int busy;           /* threads inside a syscall on fd/ctlfd (atomic) */
    int req_flags;      /* flags given to TUNSETIFF, -1 if unknown (fromfd) */
    int hdr_len;        /* packet-info + vnet header bytes before each packet */
    int64_t timeout_ns; /* -1: block forever; 0: non-blocking; > 0: timeout */
    PyThread_type_lock nl_lock; /* serializes netlink requests on ctlfd */
    PyTypeObject *batch_type;   /* borrowed: the module (via our type) outlives us */
    char name[IFNAMSIZ];
} DeviceObject;

/* Enter and leave a syscall section on the device's fds. `busy` is raised with
 * the GIL held (after the caller saw the device open) and lowered before the GIL is
 * taken back, so close() can wait for it, and close the fds, without the GIL. */
#define TT_ENTER(self)                                                              \
    __atomic_fetch_add(&(self)->busy, 1, __ATOMIC_ACQ_REL);                         \
    Py_BEGIN_ALLOW_THREADS
#define TT_LEAVE(self)                                                              \
    __atomic_fetch_sub(&(self)->busy, 1, __ATOMIC_RELEASE);                         \
    Py_END_ALLOW_THREADS

/* Outcomes of waiting without the GIL. */
enum { TT_READY = 1, TT_ERR = -1, TT_CLOSED = -2, TT_PERR = -3, TT_TIMEOUT = -4 };

static PyObject *
tt_closed_error(void)
{
    PyErr_SetString(PyExc_ValueError, "I/O operation on closed device");
    return NULL;
}

static inline int
tt_check_open(DeviceObject *self)
{
    if (self->fd < 0) {
        tt_closed_error();
        return -1;
    }
    return 0;
}

/* The eventfd is made on the first blocking wait, with the GIL held, so devices
 * used only in non-blocking mode never pay for it. */
static int
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

/* Wait without the GIL until `fd` is ready for `events`, close() signals `wakefd`,
 * or `deadline` (monotonic ns, 0 = none) passes. With fd < 0 only wakefd is watched
 * and the wait lasts at most `cap_ms`. */
static int
tt_poll(int fd, int wakefd, short events, int64_t deadline, int cap_ms)
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
        return TT_CLOSED;
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

/* One read or write on the device fd, without the GIL, waiting in poll() when the
 * device is in blocking mode. Returns bytes moved (>= 0) or a TT_* outcome < 0 with
 * errno set for TT_ERR. A detached queue (TUNSETQUEUE) polls POLLERR yet reads EAGAIN
 * (drivers/net/tun.c: tun_chr_poll has no tun): then only the eventfd is watched,
 * looking at the device again every 50 ms. */
static ssize_t
tt_io_wait(int fd, int wakefd, int is_write, void *buf, size_t len, int64_t timeout_ns,
           int64_t deadline)
{
    int quiet = 0;
    for (;;) {
        ssize_t n = is_write ? write(fd, buf, len) : read(fd, buf, len);
        int r;
        if (n >= 0 || errno != EAGAIN || timeout_ns == 0) {
            return n < 0 ? TT_ERR : n;
        }
        r = tt_poll(quiet ? -1 : fd, wakefd, is_write ? POLLOUT : POLLIN, deadline,
                    quiet ? 50 : -1);
        quiet = 0;
        if (r == TT_PERR) {
            quiet = 1;
        }
        else if (r != TT_READY) {
            return r;
        }
    }
}

static int64_t
tt_deadline(int64_t timeout_ns)
{
    return timeout_ns > 0 ? tt_monotonic_ns() + timeout_ns : 0;
}

/* Turn a failed tt_io_wait into an exception. */
static void
tt_io_error(DeviceObject *self, ssize_t r, int err, const char *syscall)
{
    if (r == TT_CLOSED) {
        tt_closed_error();
    }
    else if (r == TT_TIMEOUT) {
        PyErr_Format(PyExc_TimeoutError, "%s on '%s' timed out", syscall, self->name);
    }
    else if (err == EAGAIN) {
        /* OSError(EAGAIN, ...) is BlockingIOError */
        tt_oserror(EAGAIN, syscall, self->name, " (nothing queued, non-blocking mode)");
    }
    else if (err == EFAULT || err == EBADFD) {
        /* drivers/net/tun.c: tun_detach on unregister wakes readers with EFAULT; the
         * file is then unattached and read/write/ioctl give EBADFD. */
        tt_oserror(err, syscall, self->name, " (the interface was deleted)");
    }
    else if (err == EIO && strcmp(syscall, "write()") == 0) {
        tt_oserror(err, syscall, self->name, " (the interface is down)");
    }
    else {
        tt_oserror(err, syscall, self->name, NULL);
    }
}

/* Move one packet: the PEP 475 loop around tt_io_wait. Returns bytes or -1 with an
 * exception set. The device can be closed by a signal handler run from here. */
static Py_ssize_t
tt_io(DeviceObject *self, int is_write, void *buf, size_t len)
{
    int64_t deadline = tt_deadline(self->timeout_ns);
    for (;;) {
        ssize_t n;
        int err, fd = self->fd, wakefd;
        int64_t timeout_ns = self->timeout_ns;
        if (fd < 0) {
            tt_closed_error();
            return -1;
        }
        if (timeout_ns != 0 && tt_ensure_wakefd(self) < 0) {
            return -1;
        }
        wakefd = self->wakefd;
        TT_ENTER(self);
        n = tt_io_wait(fd, wakefd, is_write, buf, len, timeout_ns, deadline);
        err = errno;
        TT_LEAVE(self);
        if (n >= 0) {
            return n;
        }
        if (n == TT_ERR && err == EINTR) {
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
            continue;
        }
        tt_io_error(self, n, err, is_write ? "write()" : "read()");
        return -1;
    }
}

/* ioctl on the device fd (or the control socket) without the GIL, retried on EINTR.
 * `arg` is either a pointer or a value, as the request wants. */
static int
tt_ioctl(DeviceObject *self, int on_ctl, unsigned long req, void *arg, const char *what)
{
    int r, err = 0, fd;
    if (tt_check_open(self) < 0) {
        return -1;
    }
    fd = on_ctl ? self->ctlfd : self->fd;
    for (;;) {
        TT_ENTER(self);
        r = ioctl(fd, req, arg);
        if (r < 0) {
            err = errno;
        }
        TT_LEAVE(self);
        if (r >= 0) {
            return r;
        }
        if (err != EINTR) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        if (tt_check_open(self) < 0) {
            return -1;
        }
    }
    if (err == EFAULT || err == EBADFD) {
        tt_oserror(err, what, self->name, " (the interface was deleted)");
    }
    else {
        tt_oserror(err, what, self->name, NULL);
    }
    return -1;
}

/* SIOC* interface ioctl on the control socket, by the device's current name. */
static int
tt_ifreq(DeviceObject *self, unsigned long req, struct ifreq *ifr, const char *what)
{
    snprintf(ifr->ifr_name, IFNAMSIZ, "%s", self->name);
    return tt_ioctl(self, 1, req, ifr, what);
}

/* Link info from rtnetlink for this device (in its own namespace). */
static int
tt_device_linkinfo(DeviceObject *self, tt_linkinfo *out)
{
    struct ifreq ifr;
    tt_linklist ll = {0};
    int r, err = 0, ctl;
    uint32_t seq;

    memset(&ifr, 0, sizeof(ifr));
    if (tt_ifreq(self, SIOCGIFINDEX, &ifr, "ioctl(SIOCGIFINDEX)") < 0) {
        return -1;
    }
    seq = tt_nl_seq++;
    ctl = self->ctlfd;
    TT_ENTER(self);
    PyThread_acquire_lock(self->nl_lock, WAIT_LOCK);
    r = tt_nl_getlinks(ctl, ifr.ifr_ifindex, seq, &ll);
    if (r < 0) {
        err = errno;
    }
    PyThread_release_lock(self->nl_lock);
    TT_LEAVE(self);
    if (r < 0 || ll.n == 0) {
        free(ll.items);
        tt_oserror(r < 0 ? err : ENODEV, "netlink(RTM_GETLINK)", self->name, NULL);
        return -1;
    }
    *out = ll.items[0];
    free(ll.items);
    return 0;
}

/* The flags as they really are: TUNGETIFF, with packet info on/off taken from
 * rtnetlink because TUNGETIFF sets 0x1000 (IFF_NOFILTER) whenever no socket filter is
 * attached, and 0x1000 is also IFF_NO_PI (drivers/net/tun.c: __tun_chr_ioctl). */
static int
tt_device_flags(DeviceObject *self, int *out)
{
    struct ifreq ifr;
    tt_linkinfo li;
    int flags;

    memset(&ifr, 0, sizeof(ifr));
    if (tt_ioctl(self, 0, TUNGETIFF, &ifr, "ioctl(TUNGETIFF)") < 0) {
        return -1;
    }
    flags = ifr.ifr_flags & ~(IFF_NOFILTER | IFF_DETACH_QUEUE | IFF_ATTACH_QUEUE);
    if (tt_device_linkinfo(self, &li) == 0 && li.has_pi) {
        if (!li.pi) {
            flags |= IFF_NO_PI;
        }
    }
    else {
        PyErr_Clear();
        if (self->req_flags >= 0) {
            flags |= self->req_flags & IFF_NO_PI;
        }
    }
    *out = flags & 0xffff;
    return 0;
}

/* Bytes in front of every packet: packet info (4) and the vnet header. */
static int
tt_update_hdr_len(DeviceObject *self, int flags)
{
    int len = (flags & IFF_NO_PI) ? 0 : 4;
    if (flags & IFF_VNET_HDR) {
        int sz = 0;
        if (tt_ioctl(self, 0, TUNGETVNETHDRSZ, &sz, "ioctl(TUNGETVNETHDRSZ)") < 0) {
            return -1;
        }
        len += sz;
    }
    self->hdr_len = len;
    return 0;
}

/* Close every fd the object owns except, when `keep_fd`, the device fd itself.
 * Marks the device closed first, wakes threads waiting in poll() and waits (GIL
 * released) until no thread is inside a syscall, so no fd number is reused under it. */
static int
tt_shutdown(DeviceObject *self, int keep_fd)
{
    int fd = self->fd, wakefd = self->wakefd, ctlfd = self->ctlfd;

    if (fd < 0) {
        return -1;
    }
    self->fd = -1;
    self->wakefd = -1;
    self->ctlfd = -1;
    Py_BEGIN_ALLOW_THREADS
    if (__atomic_load_n(&self->busy, __ATOMIC_ACQUIRE) > 0) {
        /* Wake threads waiting in poll(); every wait watches wakefd and every fd is
         * non-blocking, so they leave their syscall within microseconds. */
        uint64_t one = 1;
        if (wakefd >= 0) {
            (void)!write(wakefd, &one, sizeof(one));
        }
        while (__atomic_load_n(&self->busy, __ATOMIC_ACQUIRE) > 0) {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
    /* Never retry close(): the fd is gone even when it reports EINTR. */
    if (!keep_fd) {
        close(fd);
    }
    if (wakefd >= 0) {
        close(wakefd);
    }
    if (ctlfd >= 0) {
        close(ctlfd);
    }
    Py_END_ALLOW_THREADS
    return fd;
}

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
    self->timeout_ns = -1;
    self->nl_lock = PyThread_allocate_lock();
    if (self->nl_lock == NULL) {
        Py_DECREF(self);
        PyErr_NoMemory();
        return NULL;
    }
    return self;
}

/* Where to create the device: netns given as a name under /var/run/netns, a path
 * or an open fd. Returns an fd to setns() into (owned when *owned), or -1 for none. */
static int
tt_open_netns(PyObject *netns, int *owned, char *label, size_t labelsize)
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
    Py_BEGIN_ALLOW_THREADS
    fd = open(buf, O_RDONLY | O_CLOEXEC);
    Py_END_ALLOW_THREADS
    if (fd < 0) {
        int err = errno;
        PyObject *msg = PyUnicode_FromFormat("%s: open() of network namespace",
                                             strerror(err));
        if (msg != NULL) {
            PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iOs", err, msg, buf);
            Py_DECREF(msg);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
        }
        return -2;
    }
    *owned = 1;
    return fd;
}

/* Steps of opening a device, to name the failing syscall. */
static const char *const tt_open_steps[] = {
    "open(/proc/thread-self/ns/net)", "setns(CLONE_NEWNET)", "open()",
    "ioctl(TUNSETIFF)", "ioctl(TUNGETIFF)", "socket(AF_NETLINK)", "ioctl(TUNSETPERSIST)",
    "setns(CLONE_NEWNET) back",
};

/* Without the GIL: optionally enter netns, open path, TUNSETIFF, read the name back,
 * open the control socket there, leave netns. Returns 0, or -1 with *step and *err. */
static int
tt_open_nogil(const char *path, int nsfd, struct ifreq *ifr, int persist, int *fd_out,
              int *ctl_out, int *step, int *err)
{
    int saved = -1, fd = -1, ctl = -1, rc = -1;

    *step = 0;
    if (nsfd >= 0) {
        saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (saved < 0) {
            goto fail;
        }
        *step = 1;
        if (setns(nsfd, CLONE_NEWNET) < 0) {
            goto fail;
        }
    }
    *step = 2;
    fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        goto fail;
    }
    *step = 3;
    if (ioctl(fd, TUNSETIFF, ifr) < 0) {
        goto fail;
    }
    *step = 4;
    if (ioctl(fd, TUNGETIFF, ifr) < 0) {
        goto fail;
    }
    *step = 5;
    ctl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (ctl < 0) {
        goto fail;
    }
    *step = 6;
    if (persist && ioctl(fd, TUNSETPERSIST, 1UL) < 0) {
        goto fail;
    }
    rc = 0;
fail:
    if (rc < 0) {
        *err = errno;
    }
    if (saved >= 0) {
        if (setns(saved, CLONE_NEWNET) < 0 && rc == 0) {
            *err = errno;
            *step = 7;
            rc = -1;
        }
        close(saved);
    }
    if (rc < 0) {
        if (ctl >= 0) {
            close(ctl);
        }
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    *fd_out = fd;
    *ctl_out = ctl;
    return 0;
}

static PyObject *
Device_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "flags", "blocking", "netns", "path", NULL};
    PyObject *name_obj = NULL, *netns = Py_None, *path_obj = NULL;
    PyObject *path_bytes = NULL;
    int flags = IFF_TUN | IFF_NO_PI, blocking = 1, nsfd, ns_owned = 0, step = 0, err = 0;
    int fd = -1, ctl = -1, r;
    char name[IFNAMSIZ] = "", nslabel[PATH_MAX];
    const char *path = TT_DEFAULT_PATH;
    struct ifreq ifr;
    DeviceObject *self = NULL;

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
        path = PyBytes_AS_STRING(path_bytes);
    }
    nsfd = tt_open_netns(netns, &ns_owned, nslabel, sizeof(nslabel));
    if (nsfd == -2) {
        goto done;
    }
    tt_set_ifname(&ifr, name);
    ifr.ifr_flags = (short)(flags & ~IFF_PERSIST);
    Py_BEGIN_ALLOW_THREADS
    r = tt_open_nogil(path, nsfd, &ifr, (flags & IFF_PERSIST) != 0, &fd, &ctl, &step, &err);
    if (ns_owned) {
        close(nsfd);
    }
    Py_END_ALLOW_THREADS
    if (r < 0) {
        if (step == 2) {
            PyObject *msg = PyUnicode_FromFormat("%s: open()", strerror(err));
            if (msg != NULL) {
                PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iOs", err, msg, path);
                Py_DECREF(msg);
                if (exc != NULL) {
                    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                    Py_DECREF(exc);
                }
            }
        }
        else if (step == 3 && err == EBUSY && (flags & IFF_TUN_EXCL)) {
            tt_oserror(EEXIST, "ioctl(TUNSETIFF)", name,
                       " (TUN_EXCL and the interface exists)");
        }
        else if (step == 3 && err == EBUSY) {
            tt_oserror(err, "ioctl(TUNSETIFF)", name,
                       " (already attached by another file descriptor)");
        }
        else if (step <= 1 || step == 7) {
            tt_oserror(err, tt_open_steps[step], nslabel, NULL);
        }
        else {
            tt_oserror(err, tt_open_steps[step], name[0] ? name : ifr.ifr_name, NULL);
        }
        goto done;
    }
    self = tt_device_alloc(type);
    if (self == NULL) {
        close(fd);
        close(ctl);
        goto done;
    }
    self->fd = fd;
    self->ctlfd = ctl;
    self->req_flags = flags & ~IFF_PERSIST;
    self->timeout_ns = blocking ? -1 : 0;
    snprintf(self->name, IFNAMSIZ, "%s", ifr.ifr_name);
    if (tt_update_hdr_len(self, self->req_flags) < 0) {
        Py_CLEAR(self);
    }
done:
    Py_XDECREF(path_bytes);
    return (PyObject *)self;
}

static void
Device_finalize(PyObject *op)
{
    DeviceObject *self = (DeviceObject *)op;
    PyObject *error_type, *error_value, *error_traceback;

    if (self->fd < 0) {
        return;
    }
    PyErr_Fetch(&error_type, &error_value, &error_traceback);
    if (PyErr_ResourceWarning(op, 1, "unclosed %R", op) < 0) {
        /* Spurious errors can appear at shutdown */
        if (PyErr_ExceptionMatches(PyExc_Warning)) {
            PyErr_WriteUnraisable(op);
        }
    }
    tt_shutdown(self, 0);
    PyErr_Restore(error_type, error_value, error_traceback);
}

static void
Device_dealloc(PyObject *op)
{
    DeviceObject *self = (DeviceObject *)op;
    PyTypeObject *tp = Py_TYPE(op);

#ifdef Py_LIMITED_API
    Device_finalize(op); /* never resurrects */
#else
    if (PyObject_CallFinalizerFromDealloc(op) < 0) {
        return;
    }
#endif
    if (self->fd >= 0) {
        tt_shutdown(self, 0);
    }
    if (self->nl_lock != NULL) {
        PyThread_free_lock(self->nl_lock);
        self->nl_lock = NULL;
    }
    ((freefunc)PyType_GetSlot(tp, Py_tp_free))(op);
    Py_DECREF(tp);
}

/* -- hot path ------------------------------------------------------------ */

PyDoc_STRVAR(Device_readinto__doc__,
"readinto($self, buffer, /)\n--\n\n"
"Read one packet into a writable bytes-like object and return its length.\n\n"
"Never allocates. A packet longer than the buffer is truncated by the kernel: the\n"
"first len(buffer) bytes are copied, the rest of that packet is discarded and the\n"
"return value is len(buffer). With packet info or a vnet header, a buffer shorter\n"
"than that header is refused with ValueError (the kernel would drop the packet).\n"
"Blocking mode waits (honouring the timeout: TimeoutError); non-blocking mode\n"
"raises BlockingIOError when nothing is queued. If close() is called from another\n"
"thread meanwhile, the wait ends at once with ValueError.");

static int
tt_get_write_buffer(PyObject *obj, Py_buffer *view, const char *fname)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE) < 0) {
        if (PyErr_ExceptionMatches(PyExc_BufferError) ||
            PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            tt_type_error(obj, "%s() argument must be read-write bytes-like object", fname);
        }
        return -1;
    }
    return 0;
}

static PyObject *
Device_readinto(DeviceObject *self, PyObject *arg)
{
    Py_buffer view;
    Py_ssize_t n;

    if (tt_check_open(self) < 0) {
        return NULL;
    }
    if (tt_get_write_buffer(arg, &view, "readinto") < 0) {
        return NULL;
    }
    if (view.len <= self->hdr_len) {
        PyErr_Format(PyExc_ValueError,
                     view.len == 0 ? "readinto() buffer is empty"
                                   : "readinto() buffer must be longer than the %d-byte "
                                     "packet header",
                     self->hdr_len);
        PyBuffer_Release(&view);
        return NULL;
    }
    n = tt_io(self, 0, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

PyDoc_STRVAR(Device_read__doc__,
"read($self, size=65536, /)\n--\n\n"
"Read one packet and return it as bytes (at most size bytes; a longer packet is\n"
"truncated by the kernel). Allocates one bytes object; readinto() does not.");

static PyObject *
Device_read(DeviceObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size = 65536, n;
    PyObject *buf;

    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "read() takes at most 1 argument (%zd given)", nargs);
        return NULL;
    }
    if (nargs == 1) {
        if (!PyLong_Check(args[0])) {
            tt_type_error(args[0], "read() size must be int");
            return NULL;
        }
        size = PyLong_AsSsize_t(args[0]);
        if (size == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (tt_check_open(self) < 0) {
        return NULL;
    }
    if (size <= self->hdr_len) {
        PyErr_Format(PyExc_ValueError,
                     size < 0 ? "read() size must be positive, not %zd"
                              : "read() size %zd is too small (packet header: %d bytes)",
                     size, self->hdr_len);
        return NULL;
    }
    buf = PyBytes_FromStringAndSize(NULL, size);
    if (buf == NULL) {
        return NULL;
    }
    n = tt_io(self, 0, PyBytes_AS_STRING(buf), (size_t)size);
    if (n < 0) {
        Py_DECREF(buf);
        return NULL;
    }
#ifdef Py_LIMITED_API
    if (n != size) {
        PyObject *shorter = PyBytes_FromStringAndSize(PyBytes_AS_STRING(buf), n);
        Py_DECREF(buf);
        buf = shorter;
    }
#else
    if (n != size && _PyBytes_Resize(&buf, n) < 0) {
        return NULL;
    }
#endif
    return buf;
}

PyDoc_STRVAR(Device_write__doc__,
"write($self, data, /)\n--\n\n"
"Write one packet (a bytes-like object) and return the number of bytes written.\n"
"The kernel checks little: see KERNEL.md. Raises the kernel's OSError for a\n"
"malformed packet (EINVAL) or while the interface is down (EIO).");

static PyObject *
Device_write(DeviceObject *self, PyObject *arg)
{
    Py_buffer view;
    Py_ssize_t n;

    if (tt_check_open(self) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (view.len == 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "write() of an empty packet");
        return NULL;
    }
    n = tt_io(self, 1, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

/* -- fd and modes --------------------------------------------------------- */

PyDoc_STRVAR(Device_fileno__doc__,
"fileno($self, /)\n--\n\n"
"Return the device's file descriptor (non-blocking at the OS level).");

static PyObject *
Device_fileno(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    if (tt_check_open(self) < 0) {
        return NULL;
    }
    return PyLong_FromLong(self->fd);
}

PyDoc_STRVAR(Device_close__doc__,
"close($self, /)\n--\n\n"
"Close the device. Idempotent. Safe while other threads are blocked reading it:\n"
"they are woken and raise ValueError, and the fd is closed only once no thread\n"
"is inside a syscall on it. A non-persistent device disappears with its last fd.");

static PyObject *
Device_close(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    tt_shutdown(self, 0);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Device_detach__doc__,
"detach($self, /)\n--\n\n"
"Mark the device closed without closing its fd, and return the fd (it stays\n"
"O_NONBLOCK).");

static PyObject *
Device_detach(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    int fd = tt_shutdown(self, 1);
    if (fd < 0) {
        return tt_closed_error();
    }
    return PyLong_FromLong(fd);
}

PyDoc_STRVAR(Device_fromfd__doc__,
"fromfd($type, fd, /)\n--\n\n"
"Create a Device from a duplicate of an open, attached /dev/net/tun fd (like\n"
"socket.fromfd; the original stays open). The shared open file description is\n"
"switched to O_NONBLOCK.");

static PyObject *
Device_fromfd(PyTypeObject *type, PyObject *arg)
{
    int fd, newfd = -1, ctl = -1, nsfd = -1, saved = -1, err = 0, r, fl;
    const char *what = "fcntl(F_DUPFD_CLOEXEC)";
    struct ifreq ifr;
    DeviceObject *self;

    if (tt_as_int(arg, &fd, "fd") < 0) {
        return NULL;
    }
    if (fd < 0) {
        PyErr_SetString(PyExc_ValueError, "negative file descriptor");
        return NULL;
    }
    memset(&ifr, 0, sizeof(ifr));
    Py_BEGIN_ALLOW_THREADS
    r = newfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (r >= 0) {
        what = "ioctl(TUNGETIFF)";
        r = ioctl(newfd, TUNGETIFF, &ifr);
    }
    if (r >= 0) {
        what = "fcntl(F_SETFL)";
        fl = fcntl(newfd, F_GETFL);
        r = fl < 0 ? fl : fcntl(newfd, F_SETFL, fl | O_NONBLOCK);
    }
    if (r >= 0) {
        /* The control socket must live in the device's namespace: ask the device
         * (TUNGETDEVNETNS, Linux 5.2+, needs CAP_NET_ADMIN); otherwise use ours. */
        nsfd = ioctl(newfd, TUNGETDEVNETNS);
        if (nsfd >= 0) {
            saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
            if (saved >= 0 && setns(nsfd, CLONE_NEWNET) < 0) {
                close(saved);
                saved = -1;
            }
        }
        what = "socket(AF_NETLINK)";
        r = ctl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (r < 0) {
            err = errno;
        }
        if (saved >= 0) {
            if (setns(saved, CLONE_NEWNET) < 0 && r >= 0) {
                err = errno;
                what = "setns(CLONE_NEWNET) back";
                close(ctl);
                r = ctl = -1;
            }
            close(saved);
        }
        if (nsfd >= 0) {
            close(nsfd);
        }
        errno = err;
    }
    if (r < 0) {
        err = errno;
        if (newfd >= 0) {
            close(newfd);
        }
    }
    Py_END_ALLOW_THREADS
    if (r < 0) {
        if (err == ENOTTY || err == EINVAL) {
            PyErr_Format(PyExc_ValueError, "fd %d is not a /dev/net/tun file descriptor",
                         fd);
            return NULL;
        }
        if (err == EBADFD) {
            PyErr_Format(PyExc_ValueError,
                         "fd %d is not attached to a TUN/TAP interface", fd);
            return NULL;
        }
        return tt_oserror(err, what, NULL, NULL);
    }
    self = tt_device_alloc(type);
    if (self == NULL) {
        close(newfd);
        close(ctl);
        return NULL;
    }
    self->fd = newfd;
    self->ctlfd = ctl;
    snprintf(self->name, IFNAMSIZ, "%s", ifr.ifr_name);
    {
        int flags;
        if (tt_device_flags(self, &flags) < 0 || tt_update_hdr_len(self, flags) < 0) {
            Py_DECREF(self);
            return NULL;
        }
        self->req_flags = flags;
    }
    return (PyObject *)self;
}

PyDoc_STRVAR(Device_setblocking__doc__,
"setblocking($self, flag, /)\n--\n\n"
"Blocking (True: no timeout) or non-blocking (False) mode, as socket.setblocking.");

static PyObject *
Device_setblocking(DeviceObject *self, PyObject *arg)
{
    int flag = PyObject_IsTrue(arg);
    if (flag < 0) {
        return NULL;
    }
    if (tt_check_open(self) < 0) {
        return NULL;
    }
    self->timeout_ns = flag ? -1 : 0;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Device_getblocking__doc__,
"getblocking($self, /)\n--\n\n"
"True unless the device is in non-blocking mode (timeout 0.0).");

static PyObject *
Device_getblocking(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    if (tt_check_open(self) < 0) {
        return NULL;
    }
    return PyBool_FromLong(self->timeout_ns != 0);
}

PyDoc_STRVAR(Device_settimeout__doc__,
"settimeout($self, value, /)\n--\n\n"
"None: block forever; 0: non-blocking; a positive number of seconds: blocking\n"
"reads and writes raise TimeoutError after that long.");

static PyObject *
Device_settimeout(DeviceObject *self, PyObject *arg)
{
    int64_t t;
    if (tt_parse_timeout(arg, &t) < 0) {
        return NULL;
    }
    if (tt_check_open(self) < 0) {
        return NULL;
    }
    self->timeout_ns = t;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Device_gettimeout__doc__,
"gettimeout($self, /)\n--\n\n"
"The timeout in seconds (float), or None when blocking without one.");

static PyObject *
Device_gettimeout(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    if (tt_check_open(self) < 0) {
        return NULL;
    }
    if (self->timeout_ns < 0) {
        Py_RETURN_NONE;
    }
    return PyFloat_FromDouble((double)self->timeout_ns / 1e9);
}

/* -- lifecycle (cold path) ------------------------------------------------ */

static int
tt_set_updown(DeviceObject *self, int up)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (tt_ifreq(self, SIOCGIFFLAGS, &ifr, "ioctl(SIOCGIFFLAGS)") < 0) {
        return -1;
    }
    if (up) {
        ifr.ifr_flags |= IFF_UP;
    }
    else {
        ifr.ifr_flags &= ~IFF_UP;
    }
    return tt_ifreq(self, SIOCSIFFLAGS, &ifr, "ioctl(SIOCSIFFLAGS)");
}

PyDoc_STRVAR(Device_up__doc__, "up($self, /)\n--\n\nBring the interface up (IFF_UP).");

static PyObject *
Device_up(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    return tt_set_updown(self, 1) < 0 ? NULL : Py_NewRef(Py_None);
}

PyDoc_STRVAR(Device_down__doc__, "down($self, /)\n--\n\nTake the interface down.");

static PyObject *
Device_down(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    return tt_set_updown(self, 0) < 0 ? NULL : Py_NewRef(Py_None);
}

PyDoc_STRVAR(Device_persist__doc__,
"persist($self, on=True, /)\n--\n\n"
"Keep the interface after the last fd closes (TUNSETPERSIST), or stop keeping it.");

static PyObject *
Device_persist(DeviceObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int on = 1;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "persist() takes at most 1 argument (%zd given)",
                     nargs);
        return NULL;
    }
    if (nargs == 1 && (on = PyObject_IsTrue(args[0])) < 0) {
        return NULL;
    }
    if (tt_ioctl(self, 0, TUNSETPERSIST, (void *)(uintptr_t)(on ? 1 : 0),
                 "ioctl(TUNSETPERSIST)") < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
tt_set_id(DeviceObject *self, PyObject *arg, unsigned long req, const char *what,
          const char *argname)
{
    long v;
    if (!PyLong_Check(arg)) {
        tt_type_error(arg, "%s must be int", argname);
        return NULL;
    }
    v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (v < -1 || v > (long)UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s %ld is out of range", argname, v);
        return NULL;
    }
    if (tt_ioctl(self, 0, req, (void *)(uintptr_t)(unsigned long)(v == -1 ? (unsigned long)-1 : (unsigned long)v),
                 what) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Device_set_owner__doc__,
"set_owner($self, uid, /)\n--\n\n"
"Let uid attach to the device without CAP_NET_ADMIN (TUNSETOWNER; -1 clears).");

static PyObject *
Device_set_owner(DeviceObject *self, PyObject *arg)
{
    return tt_set_id(self, arg, TUNSETOWNER, "ioctl(TUNSETOWNER)", "uid");
}

PyDoc_STRVAR(Device_set_group__doc__,
"set_group($self, gid, /)\n--\n\n"
"Let members of gid attach to the device (TUNSETGROUP; -1 clears).");

static PyObject *
Device_set_group(DeviceObject *self, PyObject *arg)
{
    return tt_set_id(self, arg, TUNSETGROUP, "ioctl(TUNSETGROUP)", "gid");
}

static PyObject *
tt_setqueue(DeviceObject *self, int flag, const char *what)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = (short)flag;
    if (tt_ioctl(self, 0, TUNSETQUEUE, &ifr, what) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Device_attach_queue__doc__,
"attach_queue($self, /)\n--\n\n"
"Re-attach this queue of a MULTI_QUEUE device (TUNSETQUEUE IFF_ATTACH_QUEUE).");

static PyObject *
Device_attach_queue(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    return tt_setqueue(self, IFF_ATTACH_QUEUE, "ioctl(TUNSETQUEUE, IFF_ATTACH_QUEUE)");
}

PyDoc_STRVAR(Device_detach_queue__doc__,
"detach_queue($self, /)\n--\n\n"
"Stop this queue receiving packets (TUNSETQUEUE IFF_DETACH_QUEUE). Reads on a\n"
"detached queue find nothing; writes still inject packets.");

static PyObject *
Device_detach_queue(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    return tt_setqueue(self, IFF_DETACH_QUEUE, "ioctl(TUNSETQUEUE, IFF_DETACH_QUEUE)");
}

/* rtnetlink RTM_NEWADDR / RTM_DELADDR. */
static int
tt_nl_addattr(struct nlmsghdr *h, size_t cap, int type, const void *data, size_t len)
{
    struct rtattr *rta;
    size_t newlen = NLMSG_ALIGN(h->nlmsg_len) + RTA_LENGTH(len);
    if (newlen > cap) {
        return -1;
    }
    rta = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
    rta->rta_type = (unsigned short)type;
    rta->rta_len = (unsigned short)RTA_LENGTH(len);
    memcpy(RTA_DATA(rta), data, len);
    h->nlmsg_len = (unsigned)NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(rta->rta_len);
    return 0;
}

PyDoc_STRVAR(Device__address__doc__,
"_address($self, add, family, address, prefixlen, peer, /)\n--\n\n"
"Low-level RTM_NEWADDR/RTM_DELADDR; use add_address()/remove_address().");

static PyObject *
Device__address(DeviceObject *self, PyObject *args)
{
    int add, family, prefixlen, r, err = 0, ctl;
    Py_buffer addr = {0}, peer = {0};
    PyObject *peer_obj, *result = NULL;
    struct ifreq ifr;
    struct {
        struct nlmsghdr h;
        struct ifaddrmsg ifa;
        char attrs[128];
    } req;
    size_t alen;

    if (!PyArg_ParseTuple(args, "piy*iO:_address", &add, &family, &addr, &prefixlen,
                          &peer_obj)) {
        return NULL;
    }
    alen = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
    if (alen == 0 || (size_t)addr.len != alen || prefixlen < 0 ||
        prefixlen > (int)alen * 8) {
        PyErr_SetString(PyExc_ValueError, "bad address family, length or prefix");
        goto done;
    }
    if (peer_obj != Py_None) {
        if (PyObject_GetBuffer(peer_obj, &peer, PyBUF_SIMPLE) < 0) {
            goto done;
        }
        if ((size_t)peer.len != alen) {
            PyErr_SetString(PyExc_ValueError, "peer address of the wrong family");
            goto done;
        }
    }
    memset(&ifr, 0, sizeof(ifr));
    if (tt_ifreq(self, SIOCGIFINDEX, &ifr, "ioctl(SIOCGIFINDEX)") < 0) {
        goto done;
    }
    memset(&req, 0, sizeof(req));
    req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
    req.h.nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
    req.ifa.ifa_family = (unsigned char)family;
    req.ifa.ifa_prefixlen = (unsigned char)prefixlen;
    req.ifa.ifa_index = (unsigned)ifr.ifr_ifindex;
    /* IFA_LOCAL is our address, IFA_ADDRESS the peer on point-to-point links
     * (include/uapi/linux/if_addr.h). */
    tt_nl_addattr(&req.h, sizeof(req), IFA_LOCAL, addr.buf, alen);
    tt_nl_addattr(&req.h, sizeof(req), IFA_ADDRESS, peer.buf ? peer.buf : addr.buf, alen);
    req.h.nlmsg_seq = tt_nl_seq++;
    ctl = self->ctlfd;
    TT_ENTER(self);
    PyThread_acquire_lock(self->nl_lock, WAIT_LOCK);
    r = tt_nl_transact(ctl, &req.h, NULL, NULL);
    if (r < 0) {
        err = errno;
    }
    PyThread_release_lock(self->nl_lock);
    TT_LEAVE(self);
    if (r < 0) {
        tt_oserror(err, add ? "netlink(RTM_NEWADDR)" : "netlink(RTM_DELADDR)", self->name,
                   NULL);
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    if (addr.obj) {
        PyBuffer_Release(&addr);
    }
    if (peer.obj) {
        PyBuffer_Release(&peer);
    }
    return result;
}

/* -- offloads ------------------------------------------------------------- */

#define TT_OFFLOAD_TSO (TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)
#define TT_OFFLOAD_USO (TUN_F_USO4 | TUN_F_USO6)
#define TT_OFFLOAD_MASK (TUN_F_CSUM | TT_OFFLOAD_TSO | TUN_F_UFO | TT_OFFLOAD_USO)

PyDoc_STRVAR(Device_set_offload__doc__,
"set_offload($self, offload, /)\n--\n\n"
"Tell the kernel which offloads userspace handles (TUNSETOFFLOAD); 0 for none.\n"
"The mask is device-wide and needs a VNET_HDR device. TSO/USO need CSUM, USO4\n"
"and USO6 go together, TSO_ECN needs TSO4 or TSO6, and UFO is refused (the\n"
"kernel silently drops it): each raises ValueError.");

static PyObject *
Device_set_offload(DeviceObject *self, PyObject *arg)
{
    long v;
    if (!PyLong_Check(arg)) {
        tt_type_error(arg, "offload must be int");
        return NULL;
    }
    v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (v < 0) {
        PyErr_Format(PyExc_ValueError, "offload must be >= 0, not %ld", v);
        return NULL;
    }
    if (v & ~(long)TT_OFFLOAD_MASK) {
        /* PyErr_Format knows %lx only from 3.12 on */
        char bits[24];
        PyOS_snprintf(bits, sizeof(bits), "%#lx", v & ~(long)TT_OFFLOAD_MASK);
        PyErr_Format(PyExc_ValueError, "unknown offload bits %s", bits);
        return NULL;
    }
    if (v & TUN_F_UFO) {
        PyErr_SetString(PyExc_ValueError,
                        "UFO is not supported: the kernel silently ignores it");
        return NULL;
    }
    if ((v & (TT_OFFLOAD_TSO | TT_OFFLOAD_USO)) && !(v & TUN_F_CSUM)) {
        PyErr_SetString(PyExc_ValueError, "TSO and USO offloads require CSUM");
        return NULL;
    }
    if (((v & TUN_F_USO4) != 0) != ((v & TUN_F_USO6) != 0)) {
        PyErr_SetString(PyExc_ValueError, "USO4 and USO6 must be set together");
        return NULL;
    }
    /* drivers/net/tun.c: set_offload() consumes TSO_ECN only next to TSO4/TSO6 and
     * fails with EINVAL on the leftover bit otherwise: say why before asking. */
    if ((v & TUN_F_TSO_ECN) && !(v & (TUN_F_TSO4 | TUN_F_TSO6))) {
        PyErr_SetString(PyExc_ValueError, "TSO_ECN needs TSO4 or TSO6");
        return NULL;
    }
    if (v != 0) {
        /* The kernel takes offloads without IFF_VNET_HDR too, and then hands out
         * super-packets and partial checksums with nothing to tell them apart. */
        int flags;
        if (tt_device_flags(self, &flags) < 0) {
            return NULL;
        }
        if (!(flags & IFF_VNET_HDR)) {
            PyErr_Format(PyExc_ValueError,
                         "offloads need a VNET_HDR device: '%s' has no virtio-net header "
                         "to mark super-packets and partial checksums", self->name);
            return NULL;
        }
    }
    if (tt_ioctl(self, 0, TUNSETOFFLOAD, (void *)(uintptr_t)(unsigned long)v,
                 "ioctl(TUNSETOFFLOAD)") < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* -- properties ----------------------------------------------------------- */

static PyObject *
Device_get_name(DeviceObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(self->name);
}

static PyObject *
Device_get_closed(DeviceObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->fd < 0);
}

static PyObject *
Device_get_flags(DeviceObject *self, void *Py_UNUSED(closure))
{
    int flags;
    if (tt_device_flags(self, &flags) < 0) {
        return NULL;
    }
    return PyLong_FromLong(flags);
}

static PyObject *
Device_get_ifindex(DeviceObject *self, void *Py_UNUSED(closure))
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (tt_ifreq(self, SIOCGIFINDEX, &ifr, "ioctl(SIOCGIFINDEX)") < 0) {
        return NULL;
    }
    return PyLong_FromLong(ifr.ifr_ifindex);
}

static PyObject *
Device_get_is_up(DeviceObject *self, void *Py_UNUSED(closure))
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (tt_ifreq(self, SIOCGIFFLAGS, &ifr, "ioctl(SIOCGIFFLAGS)") < 0) {
        return NULL;
    }
    return PyBool_FromLong((ifr.ifr_flags & IFF_UP) != 0);
}

static int
tt_setter_int(PyObject *value, int *out, const char *what, int lo)
{
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "cannot delete %s", what);
        return -1;
    }
    if (tt_as_int(value, out, what) < 0) {
        return -1;
    }
    if (*out < lo) {
        PyErr_Format(PyExc_ValueError, "%s must be >= %d, not %d", what, lo, *out);
        return -1;
    }
    return 0;
}

/* An int interface attribute read and written with a SIOC[GS]IF* pair (MTU,
 * txqueuelen): the getset closure names the pair. ifr_mtu and ifr_qlen are the same
 * int of the ifreq union (<net/if.h>: ifru_mtu, ifru_ivalue). */
typedef struct {
    unsigned long get, set;
    const char *name, *get_call, *set_call;
} tt_ifint;

static const tt_ifint tt_ifint_mtu = {SIOCGIFMTU, SIOCSIFMTU, "mtu", "ioctl(SIOCGIFMTU)",
                                      "ioctl(SIOCSIFMTU)"};
static const tt_ifint tt_ifint_txqueuelen = {SIOCGIFTXQLEN, SIOCSIFTXQLEN, "txqueuelen",
                                             "ioctl(SIOCGIFTXQLEN)", "ioctl(SIOCSIFTXQLEN)"};

static PyObject *
Device_get_ifint(DeviceObject *self, void *closure)
{
    const tt_ifint *a = closure;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (tt_ifreq(self, a->get, &ifr, a->get_call) < 0) {
        return NULL;
    }
    return PyLong_FromLong(ifr.ifr_mtu);
}

static int
Device_set_ifint(DeviceObject *self, PyObject *value, void *closure)
{
    const tt_ifint *a = closure;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (tt_setter_int(value, &ifr.ifr_mtu, a->name, 0) < 0) {
        return -1;
    }
    return tt_ifreq(self, a->set, &ifr, a->set_call) < 0 ? -1 : 0;
}

static PyObject *
Device_get_hwaddr(DeviceObject *self, void *Py_UNUSED(closure))
{
    struct ifreq ifr;
    const unsigned char *a;
    memset(&ifr, 0, sizeof(ifr));
    if (tt_ifreq(self, SIOCGIFHWADDR, &ifr, "ioctl(SIOCGIFHWADDR)") < 0) {
        return NULL;
    }
    if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
        PyErr_Format(PyExc_ValueError, "'%s' has no hardware address (not a TAP device)",
                     self->name);
        return NULL;
    }
    a = (const unsigned char *)ifr.ifr_hwaddr.sa_data;
    return PyUnicode_FromFormat("%02x:%02x:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3],
                                a[4], a[5]);
}

static int
Device_set_hwaddr(DeviceObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    struct ifreq ifr;
    unsigned int b[6];
    const char *s;
    char tail;
    int i;

    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete hwaddr");
        return -1;
    }
    if (!PyUnicode_Check(value)) {
        tt_type_error(value, "hwaddr must be str");
        return -1;
    }
    s = PyUnicode_AsUTF8(value);
    if (s == NULL) {
        return -1;
    }
    if (strlen(s) != 17 ||
        sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
               &tail) != 6) {
        PyErr_Format(PyExc_ValueError, "hwaddr must look like 'aa:bb:cc:dd:ee:ff', not %R",
                     value);
        return -1;
    }
    for (i = 0; i < 17; i++) {
        if ((i % 3 == 2) != (s[i] == ':')) {
            PyErr_Format(PyExc_ValueError,
                         "hwaddr must look like 'aa:bb:cc:dd:ee:ff', not %R", value);
            return -1;
        }
    }
    if (tt_check_open(self) < 0) {
        return -1;
    }
    if (self->req_flags >= 0 && !(self->req_flags & IFF_TAP)) {
        PyErr_Format(PyExc_ValueError, "'%s' is a TUN device: only TAP has a hardware "
                     "address", self->name);
        return -1;
    }
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    for (i = 0; i < 6; i++) {
        ifr.ifr_hwaddr.sa_data[i] = (char)b[i];
    }
    return tt_ifreq(self, SIOCSIFHWADDR, &ifr, "ioctl(SIOCSIFHWADDR)") < 0 ? -1 : 0;
}

static PyObject *
Device_get_vnet_hdr_size(DeviceObject *self, void *Py_UNUSED(closure))
{
    int sz = 0;
    if (tt_ioctl(self, 0, TUNGETVNETHDRSZ, &sz, "ioctl(TUNGETVNETHDRSZ)") < 0) {
        return NULL;
    }
    return PyLong_FromLong(sz);
}

static int
Device_set_vnet_hdr_size(DeviceObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    int sz, flags;
    if (tt_setter_int(value, &sz, "vnet_hdr_size", INT_MIN) < 0) {
        return -1;
    }
    if (sz < (int)sizeof(struct virtio_net_hdr)) {
        PyErr_Format(PyExc_ValueError, "vnet_hdr_size must be at least %d, not %d",
                     (int)sizeof(struct virtio_net_hdr), sz);
        return -1;
    }
    if (tt_ioctl(self, 0, TUNSETVNETHDRSZ, &sz, "ioctl(TUNSETVNETHDRSZ)") < 0) {
        return -1;
    }
    if (tt_device_flags(self, &flags) < 0) {
        return -1;
    }
    return tt_update_hdr_len(self, flags);
}

static PyObject *
Device_get_header_size(DeviceObject *self, void *Py_UNUSED(closure))
{
    if (tt_check_open(self) < 0) {
        return NULL;
    }
    return PyLong_FromLong(self->hdr_len);
}

/* -- batched zero-copy I/O ------------------------------------------------ */

#define TT_SLOT(b, i) ((b)->arena + (i) * (b)->stride + (b)->headroom)

PyDoc_STRVAR(Device_read_batch__doc__,
"read_batch($self, batch, /)\n--\n\n"
"Replace the contents of a PacketBatch with up to batch.capacity packets and\n"
"return how many were read. Blocking mode waits (honouring the timeout) for the\n"
"first packet only, then takes whatever is queued without waiting; non-blocking\n"
"mode raises BlockingIOError when nothing is queued. One GIL release per call, no\n"
"allocation. Each packet is truncated to batch.slot_size like readinto().");

static PyObject *
Device_read_batch(DeviceObject *self, PyObject *arg)
{
    PacketBatchObject *b = (PacketBatchObject *)arg;
    int64_t deadline;

    if (Py_TYPE(arg) != self->batch_type) {
        tt_type_error(arg, "read_batch() argument must be PacketBatch");
        return NULL;
    }
    if (tt_check_open(self) < 0) {
        return NULL;
    }
    if (b->slot_size <= self->hdr_len) {
        PyErr_Format(PyExc_ValueError,
                     "batch slot_size %zd must be larger than the %d-byte packet header",
                     b->slot_size, self->hdr_len);
        return NULL;
    }
    b->count = 0;
    deadline = tt_deadline(self->timeout_ns);
    for (;;) {
        ssize_t n;
        Py_ssize_t i = 0, cap = b->capacity, slot = b->slot_size;
        int err, fd = self->fd, wakefd;
        int64_t timeout_ns = self->timeout_ns;
        if (fd < 0) {
            return tt_closed_error();
        }
        if (timeout_ns != 0 && tt_ensure_wakefd(self) < 0) {
            return NULL;
        }
        wakefd = self->wakefd;
        TT_ENTER(self);
        n = tt_io_wait(fd, wakefd, 0, TT_SLOT(b, 0), (size_t)slot, timeout_ns, deadline);
        err = errno;
        if (n >= 0) {
            b->sizes[0] = (uint32_t)n;
            for (i = 1; i < cap; i++) {
                ssize_t m = read(fd, TT_SLOT(b, i), (size_t)slot);
                if (m < 0) {
                    /* EAGAIN: the queue is drained. Any other error is left for
                     * the next call to report; these packets are returned now. */
                    break;
                }
                b->sizes[i] = (uint32_t)m;
            }
        }
        TT_LEAVE(self);
        if (n >= 0) {
            b->count = i;
            return PyLong_FromSsize_t(i);
        }
        if (n == TT_ERR && err == EINTR) {
            if (PyErr_CheckSignals() < 0) {
                return NULL;
            }
            continue;
        }
        tt_io_error(self, n, err, "read()");
        return NULL;
    }
}

/* Write packets[i] = (data, len) for i in [start, count) without the GIL; stops at
 * the first failure. Returns the index reached, with *r and *err for the failure. */
typedef struct {
    const char *data;
    size_t len;
} tt_pkt;

static Py_ssize_t
tt_write_run(int fd, int wakefd, int64_t timeout_ns, int64_t deadline, const tt_pkt *pkts,
             PacketBatchObject *b, Py_ssize_t start, Py_ssize_t count, ssize_t *r, int *err)
{
    Py_ssize_t i;
    *r = 0;
    for (i = start; i < count; i++) {
        const char *data = pkts ? pkts[i].data : TT_SLOT(b, i);
        size_t len = pkts ? pkts[i].len : b->sizes[i];
        ssize_t n;
        if (len == 0) {
            *r = TT_ERR;
            *err = EINVAL;
            break;
        }
        n = tt_io_wait(fd, wakefd, 1, (void *)data, len, timeout_ns, deadline);
        if (n < 0) {
            *r = n;
            *err = errno;
            break;
        }
    }
    return i;
}

/* Drive tt_write_run over [0, count) with PEP 475 retries. Returns packets written
 * (> 0 even after a later failure) or -1 with an exception when the first fails. */
static Py_ssize_t
tt_write_many(DeviceObject *self, const tt_pkt *pkts, PacketBatchObject *b,
              Py_ssize_t base, Py_ssize_t count)
{
    int64_t deadline = tt_deadline(self->timeout_ns);
    Py_ssize_t done = 0;
    while (done < count) {
        ssize_t r;
        int err = 0, fd = self->fd, wakefd;
        int64_t timeout_ns = self->timeout_ns;
        if (fd < 0) {
            if (base + done > 0) {
                break;
            }
            tt_closed_error();
            return -1;
        }
        if (timeout_ns != 0 && tt_ensure_wakefd(self) < 0) {
            return -1;
        }
        wakefd = self->wakefd;
        TT_ENTER(self);
        done = tt_write_run(fd, wakefd, timeout_ns, deadline, pkts, b, done, count, &r, &err);
        TT_LEAVE(self);
        if (done == count) {
            break;
        }
        if (r == TT_ERR && err == EINTR) {
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
            continue;
        }
        if (base + done > 0) {
            break; /* like send(): report what was written */
        }
        if (r == TT_ERR && err == EINVAL && (pkts ? pkts[0].len : b->sizes[0]) == 0) {
            PyErr_SetString(PyExc_ValueError, "write_batch() of an empty packet");
        }
        else {
            tt_io_error(self, r, err, "write()");
        }
        return -1;
    }
    return done;
}

#define TT_WRITE_CHUNK 64

PyDoc_STRVAR(Device_write_batch__doc__,
"write_batch($self, packets, /)\n--\n\n"
"Write a PacketBatch (its len(batch) packets) or a sequence of bytes-like objects,\n"
"one packet each, and return how many were written. If the first write fails it\n"
"raises; if a later one fails it returns the count written so far (like send()).\n"
"The GIL is released once per PacketBatch, or once per 64 packets of a sequence.");

static PyObject *
Device_write_batch(DeviceObject *self, PyObject *arg)
{
    PyObject *seq;
    Py_ssize_t n, i, total = 0;
    Py_buffer views[TT_WRITE_CHUNK];
    tt_pkt pkts[TT_WRITE_CHUNK];

    if (tt_check_open(self) < 0) {
        return NULL;
    }
    if (Py_TYPE(arg) == self->batch_type) {
        PacketBatchObject *b = (PacketBatchObject *)arg;
        if (b->count == 0) {
            return PyLong_FromLong(0);
        }
        n = tt_write_many(self, NULL, b, 0, b->count);
        return n < 0 ? NULL : PyLong_FromSsize_t(n);
    }
    if (PyObject_CheckBuffer(arg) || PyUnicode_Check(arg)) {
        tt_type_error(arg, "write_batch() takes a PacketBatch or a sequence of packets "
                           "(use write() for one packet)");
        return NULL;
    }
    seq = PySequence_Fast(arg, "write_batch() argument must be a PacketBatch or a "
                               "sequence of bytes-like objects");
    if (seq == NULL) {
        return NULL;
    }
    n = TT_SEQ_SIZE(seq);
    /* Check every item first so a bad one raises before anything is written. */
    for (i = 0; i < n; i++) {
        PyObject *item = TT_SEQ_ITEM(seq, i);
        if (!PyObject_CheckBuffer(item)) {
            tt_type_error(item, "write_batch() item %zd must be a bytes-like object", i);
            Py_DECREF(seq);
            return NULL;
        }
    }
    while (total < n) {
        Py_ssize_t k, chunk = n - total < TT_WRITE_CHUNK ? n - total : TT_WRITE_CHUNK;
        Py_ssize_t got = 0, w;
        for (k = 0; k < chunk; k++) {
            if (PyObject_GetBuffer(TT_SEQ_ITEM(seq, total + k), &views[k],
                                   PyBUF_SIMPLE) < 0) {
                break;
            }
            pkts[k].data = views[k].buf;
            pkts[k].len = (size_t)views[k].len;
            got++;
        }
        if (got < chunk) {
            for (k = 0; k < got; k++) {
                PyBuffer_Release(&views[k]);
            }
            if (total > 0) {
                PyErr_Clear();
                break;
            }
            Py_DECREF(seq);
            return NULL;
        }
        w = tt_write_many(self, pkts, NULL, total, chunk);
        for (k = 0; k < chunk; k++) {
            PyBuffer_Release(&views[k]);
        }
        if (w < 0) {
            Py_DECREF(seq);
            return NULL;
        }
        total += w;
        if (w < chunk) {
            break;
        }
    }
    Py_DECREF(seq);
    return PyLong_FromSsize_t(total);
}

/* -- type definition ------------------------------------------------------ */

static PyMethodDef Device_methods[] = {
    {"readinto", (PyCFunction)Device_readinto, METH_O, Device_readinto__doc__},
    {"read", (PyCFunction)(void (*)(void))Device_read, METH_FASTCALL, Device_read__doc__},
    {"write", (PyCFunction)Device_write, METH_O, Device_write__doc__},
    {"read_batch", (PyCFunction)Device_read_batch, METH_O, Device_read_batch__doc__},
    {"write_batch", (PyCFunction)Device_write_batch, METH_O, Device_write_batch__doc__},
    {"fileno", (PyCFunction)Device_fileno, METH_NOARGS, Device_fileno__doc__},
    {"close", (PyCFunction)Device_close, METH_NOARGS, Device_close__doc__},
    {"detach", (PyCFunction)Device_detach, METH_NOARGS, Device_detach__doc__},
    {"fromfd", (PyCFunction)Device_fromfd, METH_O | METH_CLASS, Device_fromfd__doc__},
    {"setblocking", (PyCFunction)Device_setblocking, METH_O, Device_setblocking__doc__},
    {"getblocking", (PyCFunction)Device_getblocking, METH_NOARGS, Device_getblocking__doc__},
    {"settimeout", (PyCFunction)Device_settimeout, METH_O, Device_settimeout__doc__},
    {"gettimeout", (PyCFunction)Device_gettimeout, METH_NOARGS, Device_gettimeout__doc__},
    {"up", (PyCFunction)Device_up, METH_NOARGS, Device_up__doc__},
    {"down", (PyCFunction)Device_down, METH_NOARGS, Device_down__doc__},
    {"persist", (PyCFunction)(void (*)(void))Device_persist, METH_FASTCALL,
     Device_persist__doc__},
    {"set_owner", (PyCFunction)Device_set_owner, METH_O, Device_set_owner__doc__},
    {"set_group", (PyCFunction)Device_set_group, METH_O, Device_set_group__doc__},
    {"attach_queue", (PyCFunction)Device_attach_queue, METH_NOARGS,
     Device_attach_queue__doc__},
    {"detach_queue", (PyCFunction)Device_detach_queue, METH_NOARGS,
     Device_detach_queue__doc__},
    {"set_offload", (PyCFunction)Device_set_offload, METH_O, Device_set_offload__doc__},
    {"_address", (PyCFunction)Device__address, METH_VARARGS, Device__address__doc__},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Device_getset[] = {
    {"name", (getter)Device_get_name, NULL, "The interface name the kernel granted.", NULL},
    {"closed", (getter)Device_get_closed, NULL, "True once closed or detached.", NULL},
    {"flags", (getter)Device_get_flags, NULL,
     "The device's flags as they really are (TUNGETIFF plus rtnetlink for NO_PI).", NULL},
    {"ifindex", (getter)Device_get_ifindex, NULL, "The interface index.", NULL},
    {"is_up", (getter)Device_get_is_up, NULL, "True when IFF_UP is set.", NULL},
    {"mtu", (getter)Device_get_ifint, (setter)Device_set_ifint, "The interface MTU.",
     (void *)&tt_ifint_mtu},
    {"txqueuelen", (getter)Device_get_ifint, (setter)Device_set_ifint,
     "Packets the kernel queues for a reader before it drops them.",
     (void *)&tt_ifint_txqueuelen},
    {"hwaddr", (getter)Device_get_hwaddr, (setter)Device_set_hwaddr,
     "The MAC address 'aa:bb:cc:dd:ee:ff' (TAP only; ValueError on TUN).", NULL},
    {"vnet_hdr_size", (getter)Device_get_vnet_hdr_size, (setter)Device_set_vnet_hdr_size,
     "Size of the virtio-net header on VNET_HDR devices (10 or 12).", NULL},
    {"header_size", (getter)Device_get_header_size, NULL,
     "Bytes in front of every packet read or written: packet info (4) plus the vnet "
     "header.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Device__doc__,
"Device(name='', flags=4097, *, blocking=True, netns=None, path='/dev/net/tun')\n"
"--\n\n"
"A TUN/TAP device: opens path, attaches or creates the interface with TUNSETIFF.\n"
"flags defaults to IFF_TUN | IFF_NO_PI (4097).");

static PyType_Slot Device_slots[] = {
    {Py_tp_new, Device_new},
    {Py_tp_finalize, Device_finalize},
    {Py_tp_dealloc, Device_dealloc},
    {Py_tp_methods, Device_methods},
    {Py_tp_getset, Device_getset},
    {Py_tp_doc, (void *)Device__doc__},
    {0, NULL},
};

static PyType_Spec Device_spec = {
    .name = TT_MODULE_NAME ".Device",
    .basicsize = sizeof(DeviceObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = Device_slots,
};

/* ------------------------------------------------------------------------ */
/* The PacketBatch type                                                      */
/* ------------------------------------------------------------------------ */

static PyObject *
PacketBatch_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"capacity", "slot_size", "headroom", NULL};
    Py_ssize_t capacity = 64, slot_size = 2048, headroom = 0;
    PacketBatchObject *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|nn$n:PacketBatch", kwlist, &capacity,
                                     &slot_size, &headroom)) {
        return NULL;
    }
    if (capacity < 1) {
        PyErr_Format(PyExc_ValueError, "capacity must be >= 1, not %zd", capacity);
        return NULL;
    }
    if (slot_size < 1 || slot_size > 0x7fffffff) {
        PyErr_Format(PyExc_ValueError, "slot_size must be between 1 and 2**31-1, not %zd",
                     slot_size);
        return NULL;
    }
    if (headroom < 0 || headroom > 0x7fffffff) {
        PyErr_Format(PyExc_ValueError, "headroom must be between 0 and 2**31-1, not %zd",
                     headroom);
        return NULL;
    }
    if (capacity > PY_SSIZE_T_MAX / (slot_size + headroom) ||
        (size_t)capacity > SIZE_MAX / sizeof(uint32_t)) {
        PyErr_SetString(PyExc_OverflowError, "PacketBatch arena too large");
        return NULL;
    }
    self = (PacketBatchObject *)((allocfunc)PyType_GetSlot(type, Py_tp_alloc))(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->capacity = capacity;
    self->slot_size = slot_size;
    self->headroom = headroom;
    self->stride = slot_size + headroom;
    self->arena = PyMem_RawCalloc((size_t)capacity, (size_t)self->stride);
    self->sizes = PyMem_RawCalloc((size_t)capacity, sizeof(uint32_t));
    if (self->arena == NULL || self->sizes == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void
PacketBatch_dealloc(PacketBatchObject *self)
{
    PyTypeObject *tp = Py_TYPE((PyObject *)self);
    PyMem_RawFree(self->arena);
    PyMem_RawFree(self->sizes);
    ((freefunc)PyType_GetSlot(tp, Py_tp_free))((PyObject *)self);
    Py_DECREF(tp);
}

static int
PacketBatch_getbuffer(PacketBatchObject *self, Py_buffer *view, int flags)
{
    int kind = self->export_kind;
    self->export_kind = 0;
    if (kind == 2) {
        if (flags & PyBUF_WRITABLE) {
            PyErr_SetString(PyExc_BufferError, "PacketBatch.sizes is read-only");
            return -1;
        }
        view->obj = Py_NewRef((PyObject *)self);
        view->buf = self->sizes;
        view->len = self->export_len * (Py_ssize_t)sizeof(uint32_t);
        view->readonly = 1;
        view->itemsize = sizeof(uint32_t);
        view->format = (flags & PyBUF_FORMAT) ? "I" : NULL;
        view->ndim = 1;
        view->shape = NULL; /* memoryview derives len / itemsize */
        view->strides = NULL;
        view->suboffsets = NULL;
        view->internal = NULL;
        return 0;
    }
    if (kind == 1) {
        return PyBuffer_FillInfo(view, (PyObject *)self, self->arena + self->export_off,
                                 self->export_len, 0, flags);
    }
    return PyBuffer_FillInfo(view, (PyObject *)self, self->arena,
                             self->capacity * self->stride, 0, flags);
}

static PyObject *
tt_batch_view(PacketBatchObject *self, int kind, Py_ssize_t off, Py_ssize_t len)
{
    PyObject *mv;
    self->export_kind = kind;
    self->export_off = off;
    self->export_len = len;
    mv = PyMemoryView_FromObject((PyObject *)self);
    self->export_kind = 0;
    return mv;
}

static Py_ssize_t
PacketBatch_length(PacketBatchObject *self)
{
    return self->count;
}

static PyObject *
PacketBatch_item(PacketBatchObject *self, Py_ssize_t i)
{
    if (i < 0 || i >= self->count) {
        PyErr_SetString(PyExc_IndexError, "PacketBatch index out of range");
        return NULL;
    }
    return tt_batch_view(self, 1, i * self->stride + self->headroom, self->sizes[i]);
}

PyDoc_STRVAR(PacketBatch_slot__doc__,
"slot($self, index, /)\n--\n\n"
"A writable memoryview of packet index including the headroom before it, so a\n"
"header can be prepended in place.");

static PyObject *
PacketBatch_slot(PacketBatchObject *self, PyObject *arg)
{
    Py_ssize_t i = PyNumber_AsSsize_t(arg, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (i < 0) {
        i += self->count;
    }
    if (i < 0 || i >= self->count) {
        PyErr_SetString(PyExc_IndexError, "PacketBatch index out of range");
        return NULL;
    }
    return tt_batch_view(self, 1, i * self->stride, self->headroom + self->sizes[i]);
}

PyDoc_STRVAR(PacketBatch_append__doc__,
"append($self, data, /)\n--\n\n"
"Copy one packet into the next free slot. ValueError if it is empty, longer than\n"
"slot_size, or the batch is full.");

static PyObject *
PacketBatch_append(PacketBatchObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (self->count >= self->capacity) {
        PyErr_Format(PyExc_ValueError, "PacketBatch is full (capacity %zd)", self->capacity);
    }
    else if (view.len == 0) {
        PyErr_SetString(PyExc_ValueError, "cannot append an empty packet");
    }
    else if (view.len > self->slot_size) {
        PyErr_Format(PyExc_ValueError, "packet of %zd bytes does not fit slot_size %zd",
                     view.len, self->slot_size);
    }
    else {
        memcpy(TT_SLOT(self, self->count), view.buf, (size_t)view.len);
        self->sizes[self->count++] = (uint32_t)view.len;
    }
    PyBuffer_Release(&view);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(PacketBatch_clear__doc__,
"clear($self, /)\n--\n\nForget every packet (len(batch) becomes 0).");

static PyObject *
PacketBatch_clear(PacketBatchObject *self, PyObject *Py_UNUSED(ignored))
{
    self->count = 0;
    Py_RETURN_NONE;
}

static PyObject *
PacketBatch_get_sizes(PacketBatchObject *self, void *Py_UNUSED(closure))
{
    return tt_batch_view(self, 2, 0, self->count);
}

static PyObject *
PacketBatch_repr(PacketBatchObject *self)
{
    return PyUnicode_FromFormat("<PacketBatch %zd/%zd packets, slot_size=%zd, headroom=%zd>",
                                self->count, self->capacity, self->slot_size, self->headroom);
}

static PyMemberDef PacketBatch_members[] = {
    {"capacity", T_PYSSIZET, offsetof(PacketBatchObject, capacity), READONLY,
     "Number of slots."},
    {"slot_size", T_PYSSIZET, offsetof(PacketBatchObject, slot_size), READONLY,
     "Largest packet a slot holds."},
    {"headroom", T_PYSSIZET, offsetof(PacketBatchObject, headroom), READONLY,
     "Free bytes before each packet."},
    {"stride", T_PYSSIZET, offsetof(PacketBatchObject, stride), READONLY,
     "Bytes from one slot to the next in the arena (headroom + slot_size)."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef PacketBatch_getset[] = {
    {"sizes", (getter)PacketBatch_get_sizes, NULL,
     "Read-only memoryview (format 'I') of the len(batch) packet lengths.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef PacketBatch_methods[] = {
    {"append", (PyCFunction)PacketBatch_append, METH_O, PacketBatch_append__doc__},
    {"clear", (PyCFunction)PacketBatch_clear, METH_NOARGS, PacketBatch_clear__doc__},
    {"slot", (PyCFunction)PacketBatch_slot, METH_O, PacketBatch_slot__doc__},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(PacketBatch__doc__,
"PacketBatch(capacity=64, slot_size=2048, *, headroom=0)\n--\n\n"
"A preallocated arena of capacity packet slots for read_batch()/write_batch().\n"
"batch[i] is a zero-copy memoryview of packet i; it shows whatever the slot holds\n"
"when read, so a later read_batch() changes it.");

static PyType_Slot PacketBatch_slots[] = {
    {Py_tp_new, PacketBatch_new},
    {Py_tp_dealloc, PacketBatch_dealloc},
    {Py_tp_repr, PacketBatch_repr},
    {Py_tp_methods, PacketBatch_methods},
    {Py_tp_members, PacketBatch_members},
    {Py_tp_getset, PacketBatch_getset},
    {Py_tp_doc, (void *)PacketBatch__doc__},
    {Py_sq_length, PacketBatch_length},
    {Py_sq_item, PacketBatch_item},
#if PY_VERSION_HEX >= 0x03090000
    {Py_bf_getbuffer, PacketBatch_getbuffer},
#endif
    {0, NULL},
};

static PyType_Spec PacketBatch_spec = {
    .name = TT_MODULE_NAME ".PacketBatch",
    .basicsize = sizeof(PacketBatchObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = PacketBatch_slots,
};

/* ------------------------------------------------------------------------ */
/* GSO segmentation (tuntap.segment)                                         */
/* ------------------------------------------------------------------------ */

/* tt_segment_core() takes one packet as read from a VNET_HDR device (a
 * virtio_net_hdr of vnet_hdr_size bytes, then the IP packet) and writes the IP
 * packets it stands for (no vnet header) into batch slots: packet i starts at
 * arena + i*stride + headroom, its length goes to sizes[i].
 *  - gso_type TCPV4 / TCPV6 / UDP_L4 (| ECN): split the payload into gso_size
 *    chunks; fix IP total length / IPv6 payload length, IPv4 id (+1 per segment)
 *    and header checksum, TCP seq (+gso_size per segment), FIN/PSH only on the
 *    last segment, CWR only on the first, UDP length; full TCP/UDP checksums.
 *  - gso_type NONE with NEEDS_CSUM: complete the partial checksum.
 *  - anything else: copied as one packet.
 * Every check runs before the first byte is written, so on error (-1, *err_out
 * one of TT_SEG_E*) the batch is untouched. Plain C, no Python API: it runs
 * with the GIL released.
 * References: include/linux/virtio_net.h (virtio_net_hdr_to_skb),
 * net/ipv4/tcp_offload.c (tcp_gso_segment), net/ipv4/udp_offload.c
 * (__udp_gso_segment), net/ipv4/af_inet.c (inet_gso_segment), net/core/dev.c
 * (skb_checksum_help). */
enum {
    TT_SEG_OK = 0,
    TT_SEG_EHDRSIZE = 1,   /* vnet_hdr_size < 10 */
    TT_SEG_ETOOSHORT = 2,  /* packet shorter than the vnet header, or empty */
    TT_SEG_EGSOTYPE = 3,   /* gso_type not NONE/TCPV4/TCPV6/UDP_L4 (e.g. UFO) */
    TT_SEG_EGSOSIZE = 4,   /* GSO packet with gso_size == 0 */
    TT_SEG_EIPHDR = 5,     /* IP header malformed/truncated, wrong IP version
                              for gso_type, fragment, or IPv6 ext hdr chain bad */
    TT_SEG_EL4HDR = 6,     /* TCP/UDP header truncated/malformed, or the
                              L4 protocol does not match gso_type */
    TT_SEG_ECSUM = 7,      /* NEEDS_CSUM: csum_start/csum_offset outside packet */
    TT_SEG_ECAPACITY = 8,  /* more segments than capacity */
    TT_SEG_ESLOT = 9,      /* a segment (or the plain packet) > slot_size */
    TT_SEG_ELAYOUT = 10,   /* stride < headroom + slot_size */
    TT_SEG_ETOOBIG = 11,   /* a segment would exceed 65535 bytes of IP length */
};

/* Added in Linux 5.18 uapi (USO); older <linux/virtio_net.h> lack it. The
 * value is fixed by the virtio spec (VIRTIO_NET_HDR_GSO_UDP_L4 = 5). */
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif

#define TT_VNET_MIN 10 /* sizeof(struct virtio_net_hdr) */
#define TT_IPPROTO_TCP 6
#define TT_IPPROTO_UDP 17
#define TT_TCP_FIN 0x01
#define TT_TCP_PSH 0x08
#define TT_TCP_CWR 0x80

/* ---- Internet checksum (RFC 1071) ---------------------------------------
 * Sums native-order words; the ones' complement sum is byte-order
 * independent, so values read from memory and stored back with memcpy are
 * correct on either endianness. 64-bit words with end-around carry (counted
 * separately, 2^64 == 1 mod 0xffff), two accumulators to break the carry
 * chain; memcpy loads into scalars (not an array, which GCC spills). */
static inline uint64_t
tt_csum_partial(const uint8_t *p, size_t n, uint64_t sum)
{
    uint64_t s0 = sum, s1 = 0, c0 = 0, c1 = 0, w0, w1, w2, w3;
    while (n >= 32) {
        memcpy(&w0, p, 8);
        memcpy(&w1, p + 8, 8);
        memcpy(&w2, p + 16, 8);
        memcpy(&w3, p + 24, 8);
        c0 += __builtin_add_overflow(s0, w0, &s0);
        c1 += __builtin_add_overflow(s1, w1, &s1);
        c0 += __builtin_add_overflow(s0, w2, &s0);
        c1 += __builtin_add_overflow(s1, w3, &s1);
        p += 32;
        n -= 32;
    }
    while (n >= 8) {
        memcpy(&w0, p, 8);
        c0 += __builtin_add_overflow(s0, w0, &s0);
        p += 8;
        n -= 8;
    }
    uint64_t r = (s0 & 0xffffffffu) + (s0 >> 32) + (s1 & 0xffffffffu) + (s1 >> 32) + c0 + c1;
    if (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        r += w;
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t h;
        memcpy(&h, p, 2);
        r += h;
        p += 2;
        n -= 2;
    }
    if (n) {
        /* odd tail: the byte is the first of a zero-padded 16-bit word */
        uint8_t tail[2] = {p[0], 0};
        uint16_t h;
        memcpy(&h, tail, 2);
        r += h;
    }
    return r;
}

static inline uint16_t
tt_csum_fold(uint64_t sum)
{
    sum = (sum & 0xffffffffu) + (sum >> 32);
    sum = (sum & 0xffffffffu) + (sum >> 32);
    sum = (sum & 0xffffu) + (sum >> 16);
    sum = (sum & 0xffffu) + (sum >> 16);
    return (uint16_t)~sum;  /* complemented, native order: store with memcpy */
}

static inline void
tt_put16(uint8_t *p, uint16_t v_native)
{
    memcpy(p, &v_native, 2);
}

static inline uint16_t
tt_get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline void
tt_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline uint32_t
tt_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void
tt_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static const char *
tt_segment_strerror(int err)
{
    switch (err) {
    case TT_SEG_OK: return "success";
    case TT_SEG_EHDRSIZE: return "vnet_hdr_size must be at least 10";
    case TT_SEG_ETOOSHORT: return "packet is shorter than its virtio-net header or empty";
    case TT_SEG_EGSOTYPE: return "unsupported gso_type (supported: NONE, TCPV4, TCPV6, UDP_L4)";
    case TT_SEG_EGSOSIZE: return "GSO packet has gso_size 0";
    case TT_SEG_EIPHDR:
        return "malformed or truncated IP header (or IP version does not match gso_type, "
               "or IP fragment)";
    case TT_SEG_EL4HDR:
        return "malformed or truncated TCP/UDP header, or L4 protocol does not match gso_type";
    case TT_SEG_ECSUM: return "csum_start/csum_offset point outside the packet";
    case TT_SEG_ECAPACITY: return "packet needs more segments than the batch capacity";
    case TT_SEG_ESLOT: return "segment does not fit in a batch slot (slot_size too small)";
    case TT_SEG_ELAYOUT: return "batch stride is smaller than headroom + slot_size";
    case TT_SEG_ETOOBIG: return "segment would exceed the maximum IP packet length";
    default: return "unknown segmentation error";
    }
}

/* What the parse step learns about a packet. */
typedef struct {
    const uint8_t *ip;   /* IP packet (after the vnet header) */
    size_t len;          /* its length (the buffer is the truth, not tot_len) */
    uint8_t flags, gso;  /* vnet flags, gso_type without the ECN bit */
    uint16_t gso_size, csum_start, csum_offset;
    int ipv6;
    size_t l4off;        /* offset of the TCP/UDP header (after IPv6 ext hdrs) */
    size_t hdrs;         /* l4off + TCP/UDP header length */
    size_t nseg;         /* packets that will be produced */
    size_t maxseg;       /* length of the largest one */
} tt_seg_info;

static int
tt_seg_parse(const uint8_t *pkt, size_t len, size_t vnet_hdr_size, tt_seg_info *si)
{
    struct virtio_net_hdr vh;

    if (vnet_hdr_size < TT_VNET_MIN)
        return TT_SEG_EHDRSIZE;
    if (len <= vnet_hdr_size)
        return TT_SEG_ETOOSHORT;
    /* Fields are in host order for TUN on little-endian hosts and for legacy
     * (native-endian) virtio: drivers/net/tun.c tun_is_little_endian(). */
    memcpy(&vh, pkt, sizeof vh);
    si->ip = pkt + vnet_hdr_size;
    si->len = len - vnet_hdr_size;
    si->flags = vh.flags;
    si->gso = vh.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
    si->gso_size = vh.gso_size;
    si->csum_start = vh.csum_start;
    si->csum_offset = vh.csum_offset;
    si->nseg = 1;
    si->maxseg = si->len;

    if (si->gso == VIRTIO_NET_HDR_GSO_NONE) {
        if (si->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
            if ((size_t)si->csum_start + si->csum_offset + 2 > si->len)
                return TT_SEG_ECSUM;
        }
        return TT_SEG_OK;
    }
    if (si->gso != VIRTIO_NET_HDR_GSO_TCPV4 && si->gso != VIRTIO_NET_HDR_GSO_TCPV6 &&
        si->gso != VIRTIO_NET_HDR_GSO_UDP_L4)
        return TT_SEG_EGSOTYPE;
    if (si->gso_size == 0)
        return TT_SEG_EGSOSIZE;

    /* Headers come from the packet itself; hdr_len is only a hint (guests
     * and the kernel's own tun_put_user fill it inconsistently). */
    const uint8_t *ip = si->ip;
    size_t n = si->len;
    uint8_t proto;
    int ver = ip[0] >> 4;
    if (ver == 4) {
        if (si->gso == VIRTIO_NET_HDR_GSO_TCPV6 || n < 20)
            return TT_SEG_EIPHDR;
        size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
        if (ihl < 20 || ihl > n)
            return TT_SEG_EIPHDR;
        if (tt_get_be16(ip + 6) & 0x3fff)  /* MF or fragment offset */
            return TT_SEG_EIPHDR;
        si->ipv6 = 0;
        si->l4off = ihl;
        proto = ip[9];
    }
    else if (ver == 6) {
        if (si->gso == VIRTIO_NET_HDR_GSO_TCPV4 || n < 40)
            return TT_SEG_EIPHDR;
        size_t off = 40;
        proto = ip[6];
        /* Walk the extension headers that may precede TCP/UDP (at most 8). */
        for (int k = 0; proto == 0 || proto == 43 || proto == 60; k++) {
            if (k == 8 || off + 8 > n)
                return TT_SEG_EIPHDR;
            size_t elen = ((size_t)ip[off + 1] + 1) * 8;
            if (off + elen > n)
                return TT_SEG_EIPHDR;
            proto = ip[off];
            off += elen;
        }
        if (proto == 44)  /* fragment header: cannot segment a fragment */
            return TT_SEG_EIPHDR;
        si->ipv6 = 1;
        si->l4off = off;
    }
    else {
        return TT_SEG_EIPHDR;
    }

    size_t l4 = si->l4off;
    if (si->gso == VIRTIO_NET_HDR_GSO_UDP_L4) {
        if (proto != TT_IPPROTO_UDP || l4 + 8 > n)
            return TT_SEG_EL4HDR;
        si->hdrs = l4 + 8;
    }
    else {
        if (proto != TT_IPPROTO_TCP || l4 + 20 > n)
            return TT_SEG_EL4HDR;
        size_t doff = (size_t)(ip[l4 + 12] >> 4) * 4;
        if (doff < 20 || l4 + doff > n)
            return TT_SEG_EL4HDR;
        si->hdrs = l4 + doff;
    }
    size_t payload = n - si->hdrs;
    si->nseg = payload ? (payload + si->gso_size - 1) / si->gso_size : 1;
    si->maxseg = si->hdrs + (payload < si->gso_size ? payload : si->gso_size);
    /* IPv4 total length / IPv6 payload length / UDP length are 16 bits. */
    if (si->maxseg - (si->ipv6 ? 40 : 0) > 0xffff)
        return TT_SEG_ETOOBIG;
    return TT_SEG_OK;
}

static ssize_t
tt_segment_core(const uint8_t *pkt, size_t len, size_t vnet_hdr_size, uint8_t *arena,
                size_t capacity, size_t stride, size_t headroom, size_t slot_size,
                uint32_t *sizes, int *err_out)
{
    tt_seg_info si = {0};
    int err = tt_seg_parse(pkt, len, vnet_hdr_size, &si);
    if (err)
        goto fail;
    if (stride < headroom || stride - headroom < slot_size) {
        err = TT_SEG_ELAYOUT;
        goto fail;
    }
    if (si.nseg > capacity) {
        err = TT_SEG_ECAPACITY;
        goto fail;
    }
    if (si.maxseg > slot_size) {
        err = TT_SEG_ESLOT;
        goto fail;
    }

    const uint8_t *ip = si.ip;
    if (si.gso == VIRTIO_NET_HDR_GSO_NONE) {
        uint8_t *dst = arena + headroom;
        memcpy(dst, ip, si.len);
        if (si.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
            /* The field holds the folded pseudo-header sum (CHECKSUM_PARTIAL):
             * sum from csum_start to the end and store the complement, as
             * skb_checksum_help() does (0 is sent as 0xffff, CSUM_MANGLED_0). */
            uint8_t *at = dst + si.csum_start + si.csum_offset;
            uint16_t c = tt_csum_fold(tt_csum_partial(dst + si.csum_start,
                                                      si.len - si.csum_start, 0));
            tt_put16(at, c ? c : 0xffff);
        }
        sizes[0] = (uint32_t)si.len;
        *err_out = TT_SEG_OK;
        return 1;
    }

    const size_t l4 = si.l4off, hdrs = si.hdrs, gso_size = si.gso_size;
    const size_t payload = si.len - hdrs;
    const int tcp = si.gso != VIRTIO_NET_HDR_GSO_UDP_L4;
    const uint8_t proto = tcp ? TT_IPPROTO_TCP : TT_IPPROTO_UDP;
    const size_t csum_at = l4 + (tcp ? 16 : 6);
    /* Pseudo-header: addresses once; protocol and length per segment. */
    uint64_t pseudo = si.ipv6 ? tt_csum_partial(ip + 8, 32, 0)
                              : tt_csum_partial(ip + 12, 8, 0);
    pseudo += htons(proto);
    const uint16_t id0 = si.ipv6 ? 0 : tt_get_be16(ip + 4);
    const uint32_t seq0 = tcp ? tt_get_be32(ip + l4 + 4) : 0;
    const uint8_t tcpflags = tcp ? ip[l4 + 13] : 0;

    size_t off = 0;
    for (size_t i = 0; i < si.nseg; i++) {
        uint8_t *dst = arena + i * stride + headroom;
        size_t chunk = payload - off < gso_size ? payload - off : gso_size;
        size_t seglen = hdrs + chunk;
        size_t l4len = seglen - l4;
        int last = i + 1 == si.nseg;

        memcpy(dst, ip, hdrs);
        memcpy(dst + hdrs, ip + hdrs + off, chunk);

        if (si.ipv6) {
            tt_put_be16(dst + 4, (uint16_t)(seglen - 40));
        }
        else {
            tt_put_be16(dst + 2, (uint16_t)seglen);
            tt_put_be16(dst + 4, (uint16_t)(id0 + i));
            dst[10] = dst[11] = 0;
            tt_put16(dst + 10, tt_csum_fold(tt_csum_partial(dst, l4, 0)));
        }
        if (tcp) {
            uint8_t f = tcpflags;
            if (!last)
                f &= (uint8_t)~(TT_TCP_FIN | TT_TCP_PSH);
            if (i)
                f &= (uint8_t)~TT_TCP_CWR;
            tt_put_be32(dst + l4 + 4, seq0 + (uint32_t)off);
            dst[l4 + 13] = f;
        }
        else {
            tt_put_be16(dst + l4 + 4, (uint16_t)l4len);
        }
        dst[csum_at] = dst[csum_at + 1] = 0;
        uint64_t sum = tt_csum_partial(dst + l4, l4len, pseudo + htons((uint16_t)l4len));
        uint16_t c = tt_csum_fold(sum);
        if (!tcp && c == 0)
            c = 0xffff;  /* RFC 768: a computed 0 is sent as all ones */
        tt_put16(dst + csum_at, c);
        sizes[i] = (uint32_t)seglen;
        off += chunk;
    }
    *err_out = TT_SEG_OK;
    return (ssize_t)si.nseg;

fail:
    *err_out = err;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Module functions                                                          */
/* ------------------------------------------------------------------------ */

PyDoc_STRVAR(tt_features__doc__,
"features($module, path='/dev/net/tun', /)\n--\n\n"
"The IFF_* flags this kernel supports (TUNGETFEATURES).");

static PyObject *
tt_features(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *path_bytes = NULL;
    const char *path = TT_DEFAULT_PATH;
    unsigned int features = 0;
    int fd, r = -1, err = 0;
    const char *what = "open()";

    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "features() takes at most 1 argument (%zd given)",
                     nargs);
        return NULL;
    }
    if (nargs == 1) {
        if (!PyUnicode_FSConverter(args[0], &path_bytes)) {
            return NULL;
        }
        path = PyBytes_AS_STRING(path_bytes);
    }
    Py_BEGIN_ALLOW_THREADS
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        what = "ioctl(TUNGETFEATURES)";
        r = ioctl(fd, TUNGETFEATURES, &features);
    }
    err = errno;
    if (fd >= 0) {
        close(fd);
    }
    Py_END_ALLOW_THREADS
    if (r < 0) {
        PyObject *msg = PyUnicode_FromFormat("%s: %s", strerror(err), what);
        if (msg != NULL) {
            PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iOs", err, msg, path);
            Py_DECREF(msg);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
        }
        Py_XDECREF(path_bytes);
        return NULL;
    }
    Py_XDECREF(path_bytes);
    return PyLong_FromUnsignedLong(features);
}

PyDoc_STRVAR(tt_list_links__doc__,
"_list_links($module, /)\n--\n\n"
"Every TUN/TAP interface in the calling thread's network namespace, from\n"
"rtnetlink: (name, ifindex, flags, owner, group, persistent, queues,\n"
"disabled_queues) tuples.");

static PyObject *
tt_list_links(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    tt_linklist ll = {0};
    PyObject *list = NULL;
    int fd, r = -1, err = 0;
    uint32_t seq = tt_nl_seq++;
    size_t i;

    Py_BEGIN_ALLOW_THREADS
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd >= 0) {
        r = tt_nl_getlinks(fd, 0, seq, &ll);
        err = errno;
        close(fd);
    }
    else {
        err = errno;
    }
    Py_END_ALLOW_THREADS
    if (r < 0) {
        free(ll.items);
        return tt_oserror(err, "netlink(RTM_GETLINK)", NULL, NULL);
    }
    list = PyList_New(0);
    for (i = 0; list != NULL && i < ll.n; i++) {
        PyObject *t = tt_linkinfo_tuple(&ll.items[i]);
        if (t == NULL || PyList_Append(list, t) < 0) {
            Py_CLEAR(list);
        }
        Py_XDECREF(t);
    }
    free(ll.items);
    return list;
}

PyDoc_STRVAR(tt_check_name__doc__,
"_check_name($module, name, /)\n--\n\n"
"Raise ValueError/TypeError for an interface name the kernel would refuse or\n"
"truncate (the check Device() makes before any syscall).");

static PyObject *
tt_check_name(PyObject *Py_UNUSED(module), PyObject *arg)
{
    char name[IFNAMSIZ];
    if (tt_check_ifname(arg, name) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(tt_segment__doc__,
"segment($module, packet, batch, /, *, vnet_hdr_size=10)\n--\n\n"
"Split one packet read from a VNET_HDR device into the IP packets it stands for.\n\n"
"packet starts with a virtio-net header of vnet_hdr_size bytes. A GSO\n"
"super-packet (TCPV4, TCPV6, UDP_L4) becomes gso_size-payload segments with\n"
"their own IP lengths, IPv4 ids, TCP sequence numbers, flags and checksums; a\n"
"plain packet with NEEDS_CSUM gets its checksum completed; any other packet is\n"
"copied. The results (without vnet header) replace the contents of batch, one\n"
"per slot after the headroom. Returns how many packets were written.\n\n"
"Raises ValueError for a malformed packet, a batch too small for the result\n"
"(the batch is then left untouched) or a packet that lies inside batch.");

/* The GIL is released for packets at least this long (a 64 KB super-packet
 * takes ~10 us to segment; a 1500-byte one less than the release costs). */
#define TT_SEGMENT_NOGIL_MIN 8192

static PyObject *
tt_segment(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "", "vnet_hdr_size", NULL};
    tt_state *st = tt_get_state(module);
    Py_buffer pkt;
    PyObject *obj;
    Py_ssize_t hdr = 10, n;
    int err = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*O!|$n:segment", kwlist, &pkt,
                                     st->PacketBatchType, &obj, &hdr)) {
        return NULL;
    }
    PacketBatchObject *b = (PacketBatchObject *)obj;
    const char *p = pkt.buf, *a = b->arena;
    if (hdr < 10) {
        PyErr_Format(PyExc_ValueError, "vnet_hdr_size must be at least 10, not %zd", hdr);
        goto error;
    }
    if (p < a + b->capacity * b->stride && a < p + pkt.len) {
        PyErr_SetString(PyExc_ValueError,
                        "segment(): the packet lies inside the destination batch");
        goto error;
    }
    if (pkt.len >= TT_SEGMENT_NOGIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        n = tt_segment_core(pkt.buf, (size_t)pkt.len, (size_t)hdr, (uint8_t *)b->arena,
                            (size_t)b->capacity, (size_t)b->stride, (size_t)b->headroom,
                            (size_t)b->slot_size, b->sizes, &err);
        Py_END_ALLOW_THREADS
    }
    else {
        n = tt_segment_core(pkt.buf, (size_t)pkt.len, (size_t)hdr, (uint8_t *)b->arena,
                            (size_t)b->capacity, (size_t)b->stride, (size_t)b->headroom,
                            (size_t)b->slot_size, b->sizes, &err);
    }
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "segment(): %s", tt_segment_strerror(err));
        goto error;
    }
    b->count = n;
    PyBuffer_Release(&pkt);
    return PyLong_FromSsize_t(n);

error:
    PyBuffer_Release(&pkt);
    return NULL;
}

PyDoc_STRVAR(tt_checksum__doc__,
"checksum($module, data, /)\n--\n\n"
"The Internet checksum of data (RFC 1071): the ones' complement of the ones'\n"
"complement sum of its 16-bit big-endian words, an odd last byte padded with a\n"
"zero. Store it with struct.pack('!H', value); data that already holds a correct\n"
"checksum gives 0. For TCP/UDP, pass the pseudo-header followed by the segment.");

static PyObject *
tt_checksum(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer view;
    uint16_t c;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    c = tt_csum_fold(tt_csum_partial(view.buf, (size_t)view.len, 0));
    PyBuffer_Release(&view);
    /* tt_csum_fold gives native order; the value users compare is big-endian. */
    return PyLong_FromLong(ntohs(c));
}

static PyMethodDef tt_functions[] = {
    {"segment", (PyCFunction)(void (*)(void))tt_segment, METH_VARARGS | METH_KEYWORDS,
     tt_segment__doc__},
    {"checksum", (PyCFunction)tt_checksum, METH_O, tt_checksum__doc__},
    {"_check_name", (PyCFunction)tt_check_name, METH_O, tt_check_name__doc__},
    {"features", (PyCFunction)(void (*)(void))tt_features, METH_FASTCALL, tt_features__doc__},
    {"_list_links", (PyCFunction)tt_list_links, METH_NOARGS, tt_list_links__doc__},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------------ */
/* Module init (multi-phase)                                                 */
/* ------------------------------------------------------------------------ */

static int
tt_exec(PyObject *m)
{
    tt_state *st = tt_get_state(m);

#define ADD_INT(name)                                                               \
    do {                                                                            \
        if (PyModule_AddIntConstant(m, #name, name) < 0) {                          \
            return -1;                                                              \
        }                                                                           \
    } while (0)

    st->DeviceType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &Device_spec, NULL);
    if (st->DeviceType == NULL || PyModule_AddType(m, st->DeviceType) < 0) {
        return -1;
    }
    st->PacketBatchType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &PacketBatch_spec,
                                                                    NULL);
    if (st->PacketBatchType == NULL || PyModule_AddType(m, st->PacketBatchType) < 0) {
        return -1;
    }
#if PY_VERSION_HEX < 0x030B0000
    /* Before 3.11 the buffer slots of PyType_FromSpec are ignored. */
    {
        static PyBufferProcs procs = {(getbufferproc)PacketBatch_getbuffer, NULL};
        st->PacketBatchType->tp_as_buffer = &procs;
    }
#endif
    ADD_INT(IFF_TUN);
    ADD_INT(IFF_TAP);
    ADD_INT(IFF_NO_PI);
    ADD_INT(IFF_ONE_QUEUE);
    ADD_INT(IFF_VNET_HDR);
    ADD_INT(IFF_TUN_EXCL);
    ADD_INT(IFF_MULTI_QUEUE);
    ADD_INT(IFF_PERSIST);
    ADD_INT(IFF_NOFILTER);
#ifdef IFF_NAPI
    ADD_INT(IFF_NAPI);
#endif
#ifdef IFF_NAPI_FRAGS
    ADD_INT(IFF_NAPI_FRAGS);
#endif
#ifdef IFF_NO_CARRIER
    ADD_INT(IFF_NO_CARRIER);
#endif
    ADD_INT(TUN_F_CSUM);
    ADD_INT(TUN_F_TSO4);
    ADD_INT(TUN_F_TSO6);
    ADD_INT(TUN_F_TSO_ECN);
    ADD_INT(TUN_F_UFO);
    ADD_INT(TUN_F_USO4);
    ADD_INT(TUN_F_USO6);
    ADD_INT(IFNAMSIZ);
#undef ADD_INT
    return 0;
}

static int
tt_traverse(PyObject *m, visitproc visit, void *arg)
{
    tt_state *st = tt_get_state(m);
    Py_VISIT(st->DeviceType);
    Py_VISIT(st->PacketBatchType);
    return 0;
}

static int
tt_clear(PyObject *m)
{
    tt_state *st = tt_get_state(m);
    Py_CLEAR(st->DeviceType);
    Py_CLEAR(st->PacketBatchType);
    return 0;
}

static void
tt_free(void *m)
{
    tt_clear((PyObject *)m);
}

static PyModuleDef_Slot tt_slots[] = {
    {Py_mod_exec, tt_exec},
    {0, NULL},
};

PyDoc_STRVAR(tt_module__doc__, "Linux TUN/TAP devices: the C core of the tuntap package.");

static struct PyModuleDef tt_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = TT_MODULE_NAME,
    .m_doc = tt_module__doc__,
    .m_size = sizeof(tt_state),
    .m_methods = tt_functions,
    .m_slots = tt_slots,
    .m_traverse = tt_traverse,
    .m_clear = tt_clear,
    .m_free = tt_free,
};

PyMODINIT_FUNC
PyInit__tuntap(void)
{
    return PyModuleDef_Init(&tt_module);
}
