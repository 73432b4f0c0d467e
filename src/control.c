/*
 * control.c: managing the interface behind a Device: the true flags, up/down,
 * persist, owner/group, queues, offloads, carrier, vnet header byte order,
 * MTU/txqueuelen/MAC/ifindex, addresses and link info. SIOC* ioctls go to the device's control socket and rtnetlink
 * requests (netlink.c) to the same socket, both through the engine, so a device in
 * another network namespace stays manageable from here.
 */
#include "_tuntap.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <linux/virtio_net.h>

#include "netlink.h"

/* -- rtnetlink through the engine ------------------------------------------ */

typedef struct {
    DeviceObject *dev;
    struct nlmsghdr *req; /* NULL: RTM_GETLINK for `ifindex` into `links` */
    int ifindex;
    tt_linklist links;
} tt_nl_ctx;

/* One request/reply on the control socket, serialized with other threads' (the
 * replies of two requests must not interleave on one socket). */
static ssize_t
tt_nl_impl(tt_op *op)
{
    tt_nl_ctx *c = op->ctx;
    int r;
    PyThread_acquire_lock(c->dev->nl_lock, WAIT_LOCK);
    r = c->req ? tt_nl_transact(op->fd, c->req, NULL, NULL)
               : tt_nl_getlinks(op->fd, c->ifindex, &c->links);
    PyThread_release_lock(c->dev->nl_lock);
    return r;
}

/* GIL held. Run the request (or the GETLINK) on the device's control socket. */
static int
tt_nl_call(DeviceObject *self, tt_nl_ctx *c, const char *what)
{
    tt_op op = {.impl = tt_nl_impl, .syscall = what, .flags = TT_OP_CTL, .ctx = c};
    c->dev = self;
    if (tt_call(self, &op) < 0) {
        free(c->links.items);
        c->links.items = NULL;
        return -1;
    }
    return 0;
}

/* Link info from rtnetlink for this device (in its own namespace). */
static int
tt_device_linkinfo(DeviceObject *self, tt_linkinfo *out)
{
    struct ifreq ifr;
    tt_nl_ctx c = {0};

    memset(&ifr, 0, sizeof(ifr));
    if (tt_ifreq(self, SIOCGIFINDEX, &ifr, "ioctl(SIOCGIFINDEX)") < 0) {
        return -1;
    }
    c.ifindex = ifr.ifr_ifindex;
    if (tt_nl_call(self, &c, "netlink(RTM_GETLINK)") < 0) {
        return -1;
    }
    if (c.links.n == 0) {
        free(c.links.items);
        tt_oserror(ENODEV, "netlink(RTM_GETLINK)", self->name, NULL);
        return -1;
    }
    *out = c.links.items[0];
    free(c.links.items);
    return 0;
}

/* The flags as they really are: TUNGETIFF, with packet info on/off taken from
 * rtnetlink because TUNGETIFF sets 0x1000 (IFF_NOFILTER) whenever no socket filter is
 * attached, and 0x1000 is also IFF_NO_PI (drivers/net/tun.c: __tun_chr_ioctl). */
int
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
int
tt_update_hdr_len(DeviceObject *self, int flags)
{
    int len = (flags & IFF_NO_PI) ? 0 : 4;
    if (flags & IFF_VNET_HDR) {
        int sz = 0;
        if (tt_ioctl(self, 0, TUNGETVNETHDRSZ, &sz, "ioctl(TUNGETVNETHDRSZ)") < 0) {
            return -1;
        }
        if (sz < TT_VNET_HDR_MIN || sz > TT_VNET_HDR_MAX) {
            /* set by another program: the kernel takes any int >= 10 */
            PyErr_Format(PyExc_ValueError,
                         "'%s' has a %d-byte vnet header; tuntap handles %d to %d",
                         self->name, sz, TT_VNET_HDR_MIN, TT_VNET_HDR_MAX);
            return -1;
        }
        len += sz;
    }
    self->hdr_len = len;
    self->hdr_flags = flags;
    return 0;
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

TT_DOC(Device_up__doc__, "up($self, /)\n--\n\nBring the interface up (IFF_UP).");

PyObject *
Device_up(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    return tt_set_updown(self, 1) < 0 ? NULL : Py_NewRef(Py_None);
}

TT_DOC(Device_down__doc__, "down($self, /)\n--\n\nTake the interface down.");

PyObject *
Device_down(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    return tt_set_updown(self, 0) < 0 ? NULL : Py_NewRef(Py_None);
}

TT_DOC(Device_persist__doc__,
"persist($self, on=True, /)\n--\n\n"
"Keep the interface after the last fd closes (TUNSETPERSIST), or stop keeping it.");

PyObject *
Device_persist(DeviceObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int on = 1;
    PyObject *opt;
    if (tt_fastcall_optional(args, nargs, 0, "persist", &opt) < 0 ||
        (opt != NULL && (on = PyObject_IsTrue(opt)) < 0)) {
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
    if (v == -1 || v == (long)UINT32_MAX) {
        /* drivers/net/tun.c: TUNSETOWNER/TUNSETGROUP map the id with make_kuid/
         * make_kgid and refuse INVALID_UID ((uid_t)-1) with EINVAL: an owner or
         * group, once set, cannot be cleared (before Linux 3.8, -1 meant "none"). */
        PyErr_Format(PyExc_ValueError,
                     "%s -1 cannot be set: the kernel refuses (%s_t)-1 and has no way to "
                     "clear an owner or group once set (delete and recreate the device)",
                     argname, argname);
        return NULL;
    }
    if (v < 0 || v > (long)UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s must be between 0 and %lu, not %ld", argname,
                     (unsigned long)UINT32_MAX - 1, v);
        return NULL;
    }
    if (tt_ioctl(self, 0, req, (void *)(uintptr_t)(unsigned long)v, what) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* set_owner() and set_group(): TUNSETOWNER / TUNSETGROUP with one id. */
#define TT_ID_METHOD(name, REQ, arg, doc)                                           \
    TT_DOC(Device_##name##__doc__, #name "($self, " arg ", /)\n--\n\n" doc);        \
    PyObject *Device_##name(DeviceObject *self, PyObject *value)                    \
    {                                                                               \
        return tt_set_id(self, value, REQ, "ioctl(" #REQ ")", arg);                 \
    }

TT_ID_METHOD(set_owner, TUNSETOWNER, "uid",
             "Let uid attach to the device without CAP_NET_ADMIN (TUNSETOWNER). The kernel\n"
             "cannot clear an owner once set: -1 raises ValueError.")
TT_ID_METHOD(set_group, TUNSETGROUP, "gid",
             "Let members of gid attach to the device (TUNSETGROUP). The kernel cannot clear\n"
             "a group once set: -1 raises ValueError.")

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

/* attach_queue() and detach_queue(): TUNSETQUEUE with one flag. */
#define TT_QUEUE_METHOD(name, FLAG, doc)                                            \
    TT_DOC(Device_##name##__doc__, #name "($self, /)\n--\n\n" doc);                 \
    PyObject *Device_##name(DeviceObject *self, PyObject *Py_UNUSED(ignored))       \
    {                                                                               \
        return tt_setqueue(self, FLAG, "ioctl(TUNSETQUEUE, " #FLAG ")");            \
    }

TT_DOC(Device_attach_queue__doc__,
"attach_queue($self, /)\n--\n\n"
"Re-attach this queue of a MULTI_QUEUE device (TUNSETQUEUE IFF_ATTACH_QUEUE).");

PyObject *
Device_attach_queue(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    const char *what = "ioctl(TUNSETQUEUE, IFF_ATTACH_QUEUE)";
    struct ifreq ifr;
    int err;

    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_ATTACH_QUEUE;
    if (tt_ioctl_raw(self, 0, TUNSETQUEUE, &ifr, what, &err) >= 0) {
        Py_RETURN_NONE;
    }
    if (err == EFAULT) {
        /* drivers/net/tun.c: tun_attach re-reads a classic filter (attach_filter())
         * from user memory, and a failed read leaves EFAULT as the result of an
         * attach that did happen. TUNGETIFF tells. */
        int err2;
        memset(&ifr, 0, sizeof(ifr));
        if (tt_ioctl_raw(self, 0, TUNGETIFF, &ifr, "ioctl(TUNGETIFF)", &err2) >= 0 &&
            !(ifr.ifr_flags & IFF_DETACH_QUEUE)) {
            Py_RETURN_NONE;
        }
        if (err2 == 0 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (err != 0) {
        PyErr_Clear();
        tt_oserror(err, what, self->name,
                   err == EFAULT || err == EBADFD ? " (the interface was deleted)" : NULL);
    }
    return NULL;
}

TT_QUEUE_METHOD(detach_queue, IFF_DETACH_QUEUE,
                "Stop this queue receiving packets (TUNSETQUEUE IFF_DETACH_QUEUE). Reads on a\n"
                "detached queue find nothing; writes still inject packets. Packets still queued\n"
                "on it are dropped by the kernel and counted nowhere (drivers/net/tun.c:\n"
                "__tun_detach purges the ring): read it empty first to keep the window small.")

TT_DOC(Device__address__doc__,
"_address($self, add, family, address, prefixlen, peer, /)\n--\n\n"
"Low-level RTM_NEWADDR/RTM_DELADDR; use add_address()/remove_address().");

PyObject *
Device__address(DeviceObject *self, PyObject *args)
{
    int add, family, prefixlen;
    Py_buffer addr = {0}, peer = {0};
    PyObject *peer_obj, *result = NULL;
    struct ifreq ifr;
    union {
        struct nlmsghdr h;
        char buf[TT_NL_ADDR_SIZE];
    } req;
    tt_nl_ctx c = {0};
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
    c.req = tt_nl_build_addr(&req, add, family, ifr.ifr_ifindex, prefixlen, addr.buf,
                             peer.buf, alen, tt_nl_next_seq());
    if (c.req == NULL) {
        PyErr_SetString(PyExc_ValueError, "bad address family, length or prefix");
        goto done;
    }
    if (tt_nl_call(self, &c, add ? "netlink(RTM_NEWADDR)" : "netlink(RTM_DELADDR)") < 0) {
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

TT_DOC(Device_set_offload__doc__,
"set_offload($self, offload, /)\n--\n\n"
"Tell the kernel which offloads userspace handles (TUNSETOFFLOAD); 0 for none.\n"
"The mask is device-wide and needs a VNET_HDR device. TSO/USO need CSUM, USO4\n"
"and USO6 go together, TSO_ECN needs TSO4 or TSO6, and UFO is refused (the\n"
"kernel silently drops it): each raises ValueError.");

PyObject *
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
    self->offload = (int)v; /* write_batch(coalesce=True) merges what it allows */
    Py_RETURN_NONE;
}

/* -- properties ----------------------------------------------------------- */

PyObject *
Device_get_flags(DeviceObject *self, void *Py_UNUSED(closure))
{
    int flags;
    if (tt_device_flags(self, &flags) < 0) {
        return NULL;
    }
    return PyLong_FromLong(flags);
}

PyObject *
Device_get_ifindex(DeviceObject *self, void *Py_UNUSED(closure))
{
    struct ifreq ifr = {0};
    return tt_ifreq(self, SIOCGIFINDEX, &ifr, "ioctl(SIOCGIFINDEX)") < 0
               ? NULL : PyLong_FromLong(ifr.ifr_ifindex);
}

PyObject *
Device_get_is_up(DeviceObject *self, void *Py_UNUSED(closure))
{
    struct ifreq ifr = {0};
    return tt_ifreq(self, SIOCGIFFLAGS, &ifr, "ioctl(SIOCGIFFLAGS)") < 0
               ? NULL : PyBool_FromLong((ifr.ifr_flags & IFF_UP) != 0);
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
const tt_ifint tt_ifint_mtu = {SIOCGIFMTU, SIOCSIFMTU, "mtu", "ioctl(SIOCGIFMTU)",
                                      "ioctl(SIOCSIFMTU)"};
const tt_ifint tt_ifint_txqueuelen = {SIOCGIFTXQLEN, SIOCSIFTXQLEN, "txqueuelen",
                                             "ioctl(SIOCGIFTXQLEN)", "ioctl(SIOCSIFTXQLEN)"};

PyObject *
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

/* SIOCSIFMTU outside [min_mtu, max_mtu] is a bare EINVAL (net/core/dev.c:
 * dev_validate_mtu): say the range, which rtnetlink reports (IFLA_MIN_MTU,
 * IFLA_MAX_MTU; for TUN 68..65535, for TAP 68..65521). */
static int
tt_set_mtu(DeviceObject *self, struct ifreq *ifr)
{
    int mtu = ifr->ifr_mtu, err;
    tt_linkinfo li;
    char hint[96];

    snprintf(ifr->ifr_name, IFNAMSIZ, "%s", self->name);
    if (tt_ioctl_raw(self, 1, SIOCSIFMTU, ifr, "ioctl(SIOCSIFMTU)", &err) >= 0) {
        return 0;
    }
    if (err == 0) {
        return -1;
    }
    hint[0] = '\0';
    if (err == EINVAL && tt_device_linkinfo(self, &li) == 0 && li.max_mtu > 0) {
        snprintf(hint, sizeof(hint), " (MTU %d is out of range: %u..%u)", mtu,
                 li.min_mtu, li.max_mtu);
    }
    PyErr_Clear();
    tt_oserror(err, "ioctl(SIOCSIFMTU)", self->name, hint[0] ? hint : NULL);
    return -1;
}

int
Device_set_ifint(DeviceObject *self, PyObject *value, void *closure)
{
    const tt_ifint *a = closure;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (tt_setter_int(value, &ifr.ifr_mtu, a->name, 0) < 0) {
        return -1;
    }
    if (a == &tt_ifint_mtu) {
        return tt_set_mtu(self, &ifr);
    }
    return tt_ifreq(self, a->set, &ifr, a->set_call) < 0 ? -1 : 0;
}

/* -- carrier --------------------------------------------------------------- */

PyObject *
Device_get_carrier(DeviceObject *self, void *Py_UNUSED(closure))
{
    tt_linkinfo li;
    if (tt_device_linkinfo(self, &li) < 0) {
        return NULL;
    }
    if (!li.has_carrier) {
        return tt_oserror(EOPNOTSUPP, "netlink(RTM_GETLINK)", self->name,
                          " (no IFLA_CARRIER in the reply)");
    }
    return PyBool_FromLong(li.carrier);
}

/* A bool (or an int, as bools are) for a boolean property; 0/1, or -1 with a
 * TypeError (AttributeError on delete). */
static int
tt_setter_bool(PyObject *value, const char *what)
{
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "cannot delete %s", what);
        return -1;
    }
    if (!PyLong_Check(value)) {
        tt_type_error(value, "%s must be bool", what);
        return -1;
    }
    return PyObject_IsTrue(value);
}

int
Device_set_carrier(DeviceObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    int on = tt_setter_bool(value, "carrier"), err;
    if (on < 0) {
        return -1;
    }
    /* drivers/net/tun.c: tun_net_change_carrier turns the carrier on only while a
     * queue is attached (tun->numqueues), else EPERM, even for root. */
    if (tt_ioctl_raw(self, 0, TUNSETCARRIER, &on, "ioctl(TUNSETCARRIER)", &err) >= 0) {
        return 0;
    }
    if (err != 0) {
        tt_oserror(err, "ioctl(TUNSETCARRIER)", self->name,
                   err == EPERM ? " (no queue is attached: the kernel turns the carrier "
                                  "on only while one is; attach_queue() first)"
                                : NULL);
    }
    return -1;
}

/* -- vnet header byte order ------------------------------------------------- */

#ifdef TUNSETVNETLE
PyObject *
Device_get_vnet_le(DeviceObject *self, void *Py_UNUSED(closure))
{
    int le = 0;
    if (tt_ioctl(self, 0, TUNGETVNETLE, &le, "ioctl(TUNGETVNETLE)") < 0) {
        return NULL;
    }
    return PyBool_FromLong(le != 0);
}

int
Device_set_vnet_le(DeviceObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    int on = tt_setter_bool(value, "vnet_le");
    if (on < 0) {
        return -1;
    }
    return tt_ioctl(self, 0, TUNSETVNETLE, &on, "ioctl(TUNSETVNETLE)") < 0 ? -1 : 0;
}
#endif

#ifdef TUNSETVNETBE
/* Without CONFIG_TUN_VNET_CROSS_LE the kernel answers both TUNGETVNETBE and
 * TUNSETVNETBE with EINVAL (drivers/net/tun_vnet.h: tun_get_vnet_be): headers are
 * then never big-endian on a little-endian host. */
#define TT_NO_CROSS_LE " (this kernel was built without CONFIG_TUN_VNET_CROSS_LE: " \
                       "vnet headers stay in the host's byte order or little-endian)"

PyObject *
Device_get_vnet_be(DeviceObject *self, void *Py_UNUSED(closure))
{
    int be = 0, err;
    if (tt_ioctl_raw(self, 0, TUNGETVNETBE, &be, "ioctl(TUNGETVNETBE)", &err) < 0) {
        if (err == EINVAL) {
            Py_RETURN_FALSE;
        }
        return err ? tt_oserror(err, "ioctl(TUNGETVNETBE)", self->name, NULL) : NULL;
    }
    return PyBool_FromLong(be != 0);
}

int
Device_set_vnet_be(DeviceObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    int on = tt_setter_bool(value, "vnet_be"), err;
    if (on < 0) {
        return -1;
    }
    if (tt_ioctl_raw(self, 0, TUNSETVNETBE, &on, "ioctl(TUNSETVNETBE)", &err) >= 0) {
        return 0;
    }
    if (err == EINVAL && !on) {
        return 0; /* already off: it can never be on */
    }
    if (err != 0) {
        tt_oserror(err, "ioctl(TUNSETVNETBE)", self->name,
                   err == EINVAL ? TT_NO_CROSS_LE : NULL);
    }
    return -1;
}
#endif

PyObject *
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

int
Device_set_hwaddr(DeviceObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    struct ifreq ifr;
    unsigned int b[6];
    const char *s;
    Py_ssize_t len;
    char tail;
    int i;

    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete hwaddr");
        return -1;
    }
    s = tt_str_arg(value, &len, "hwaddr");
    if (s == NULL) {
        return -1;
    }
    /* the length of the str, not strlen(): "...:01\0garbage" is not an address */
    if (len != 17 || strlen(s) != 17 ||
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

/* An int the device fd reports with one ioctl (TUNGETVNETHDRSZ, TUNGETSNDBUF). */
static PyObject *
tt_get_int(DeviceObject *self, unsigned long req, const char *what)
{
    int v = 0;
    return tt_ioctl(self, 0, req, &v, what) < 0 ? NULL : PyLong_FromLong(v);
}

PyObject *
Device_get_vnet_hdr_size(DeviceObject *self, void *Py_UNUSED(closure))
{
    return tt_get_int(self, TUNGETVNETHDRSZ, "ioctl(TUNGETVNETHDRSZ)");
}

int
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
    if (sz > TT_VNET_HDR_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "vnet_hdr_size must be at most %d (10 and 12 are the real headers), "
                     "not %d", TT_VNET_HDR_MAX, sz);
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

/* The send buffer of the device's socket: how many bytes of written packets the
 * kernel may hold before a write waits (EAGAIN in non-blocking mode). tun_chr_open
 * sets sk_sndbuf to INT_MAX, so by default a TUN write never pushes back; each
 * written skb is charged to it until freed, which for IP packets is soon (ip_rcv_core
 * orphans them) and for frames a bridge queues behind a slow port is later
 * (drivers/net/tun.c: TUNSETSNDBUF refuses <= 0 with EINVAL, tun_set_sndbuf). */
PyObject *
Device_get_sndbuf(DeviceObject *self, void *Py_UNUSED(closure))
{
    return tt_get_int(self, TUNGETSNDBUF, "ioctl(TUNGETSNDBUF)");
}

int
Device_set_sndbuf(DeviceObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    int v;
    if (tt_setter_int(value, &v, "sndbuf", 1) < 0) {
        return -1;
    }
    return tt_ioctl(self, 0, TUNSETSNDBUF, &v, "ioctl(TUNSETSNDBUF)") < 0 ? -1 : 0;
}

PyObject *
Device_get_header_size(DeviceObject *self, void *Py_UNUSED(closure))
{
    if (tt_check_open(self) < 0) {
        return NULL;
    }
    return PyLong_FromLong(self->hdr_len);
}
