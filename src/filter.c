/*
 * filter.c: what the kernel runs on each packet before a reader gets it: eBPF queue
 * steering and filtering (TUNSETSTEERINGEBPF, TUNSETFILTEREBPF), classic BPF socket
 * filters (TUNATTACHFILTER, TUNDETACHFILTER) and the destination MAC filter
 * (TUNSETTXFILTER). All are ioctls on the device fd through the engine; none
 * touches the I/O path of this library (the kernel applies them in
 * drivers/net/tun.c: tun_net_xmit and tun_select_queue).
 */
#include "_tuntap.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>
#include <sys/ioctl.h>
#include <linux/filter.h>
#include <linux/if_ether.h>

/* -- eBPF programs -------------------------------------------------------- */

/* fd of a loaded BPF_PROG_TYPE_SOCKET_FILTER program, or None (-1: detach).
 * 0, or -1 with an exception. */
static int
tt_prog_fd(PyObject *arg, int *fd)
{
    if (arg == Py_None) {
        *fd = -1;
        return 0;
    }
    if (PyBool_Check(arg)) {
        tt_type_error(arg, "program must be a file descriptor (int) or None");
        return -1;
    }
    if (!PyLong_Check(arg)) {
        tt_type_error(arg, "program must be a file descriptor (int) or None");
        return -1;
    }
    if (tt_as_int(arg, fd, "program fd") < 0) {
        return -1;
    }
    if (*fd < 0) {
        PyErr_Format(PyExc_ValueError, "program fd must be >= 0 (or None to detach), "
                     "not %d", *fd);
        return -1;
    }
    return 0;
}

/* drivers/net/tun.c: tun_set_ebpf takes the program's fd (-1 detaches) and holds
 * its own reference, so the caller may close the fd afterwards. */
static PyObject *
tt_set_ebpf(DeviceObject *self, PyObject *arg, unsigned long req, const char *what)
{
    int fd, err;
    char hint[96];

    if (tt_prog_fd(arg, &fd) < 0) {
        return NULL;
    }
    if (tt_ioctl_raw(self, 0, req, &fd, what, &err) >= 0) {
        Py_RETURN_NONE;
    }
    if (err == 0) {
        return NULL;
    }
    hint[0] = '\0';
    if (err == EINVAL) {
        /* bpf_prog_get_type(fd, BPF_PROG_TYPE_SOCKET_FILTER): not a BPF program, or
         * one of another type */
        snprintf(hint, sizeof(hint), " (fd %d is not a BPF_PROG_TYPE_SOCKET_FILTER "
                 "program)", fd);
    }
    else if (err == EBADF) {
        snprintf(hint, sizeof(hint), " (fd %d is not open)", fd);
    }
    return tt_oserror(err, what, self->name, hint[0] ? hint : NULL);
}

/* set_steering_program() and set_filter_program(): one eBPF ioctl each. */
#define TT_EBPF_METHOD(name, REQ, doc)                                              \
    TT_DOC(Device_##name##__doc__, #name "($self, program, /)\n--\n\n" doc);        \
    PyObject *Device_##name(DeviceObject *self, PyObject *program)                  \
    {                                                                               \
        return tt_set_ebpf(self, program, REQ, "ioctl(" #REQ ")");                  \
    }

TT_EBPF_METHOD(set_steering_program, TUNSETSTEERINGEBPF,
               "Choose the queue of every packet the kernel sends to this multi-queue device\n"
               "with an eBPF program (TUNSETSTEERINGEBPF): the fd of a loaded\n"
               "BPF_PROG_TYPE_SOCKET_FILTER program whose return value, modulo the number of\n"
               "attached queues, is the queue index. None detaches it (flows are hashed again).\n"
               "The kernel keeps its own reference: the fd may be closed afterwards.")
TT_EBPF_METHOD(set_filter_program, TUNSETFILTEREBPF,
               "Filter the packets the kernel sends to this device with an eBPF program\n"
               "(TUNSETFILTEREBPF), TUN or TAP, every queue: the fd of a loaded\n"
               "BPF_PROG_TYPE_SOCKET_FILTER program whose return value is the number of bytes to\n"
               "keep (0 drops the packet, a smaller length truncates it). None detaches it.")

/* -- classic BPF ------------------------------------------------------------ */

/* TUNATTACHFILTER, TUNDETACHFILTER and TUNSETTXFILTER are TAP only (drivers/net/
 * tun.c answers EINVAL on TUN): say so before asking. */
static int
tt_require_tap(DeviceObject *self, const char *what, const char *instead)
{
    if (tt_check_open(self) < 0) {
        return -1;
    }
    if (self->req_flags >= 0 && !(self->req_flags & IFF_TAP)) {
        PyErr_Format(PyExc_ValueError, "%s() is TAP only and '%s' is a TUN device%s", what,
                     self->name, instead);
        return -1;
    }
    return 0;
}

/* One instruction (code, jt, jf, k) of a sequence. 0 or -1 with an exception. */
static int
tt_sock_filter_item(PyObject *item, Py_ssize_t i, struct sock_filter *out)
{
    static const unsigned long long max[4] = {0xffff, 0xff, 0xff, 0xffffffffULL};
    unsigned long long v[4];
    PyObject *seq = PySequence_Fast(item, "");
    Py_ssize_t j;

    if (seq == NULL) {
        PyErr_Clear();
        tt_type_error(item, "filter instruction %zd must be a (code, jt, jf, k) tuple", i);
        return -1;
    }
    if (TT_SEQ_SIZE(seq) != 4) {
        PyErr_Format(PyExc_ValueError, "filter instruction %zd has %zd fields, not 4 "
                     "(code, jt, jf, k)", i, TT_SEQ_SIZE(seq));
        Py_DECREF(seq);
        return -1;
    }
    for (j = 0; j < 4; j++) {
        PyObject *x = TT_SEQ_ITEM(seq, j);
        if (!PyLong_Check(x)) {
            Py_DECREF(seq);
            tt_type_error(x, "filter instruction %zd: fields must be int", i);
            return -1;
        }
        v[j] = PyLong_AsUnsignedLongLong(x);
        if (v[j] == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            v[j] = max[j] + 1; /* negative or huge: out of range below */
        }
        if (v[j] > max[j]) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "filter instruction %zd: %s must be between 0 "
                         "and %llu", i, (const char *[]){"code", "jt", "jf", "k"}[j],
                         max[j]);
            return -1;
        }
    }
    Py_DECREF(seq);
    out->code = (unsigned short)v[0];
    out->jt = (unsigned char)v[1];
    out->jf = (unsigned char)v[2];
    out->k = (unsigned int)v[3];
    return 0;
}

TT_DOC(Device_attach_filter__doc__,
"attach_filter($self, program, /)\n--\n\n"
"Attach a classic BPF socket filter (TUNATTACHFILTER, TAP only) to every queue\n"
"attached now: frames the kernel sends to the device pass through it, a return of\n"
"0 drops one, a smaller length truncates it. program is a bytes-like array of\n"
"struct sock_filter (8 bytes each, host order) or a sequence of (code, jt, jf, k)\n"
"tuples, as `tcpdump -dd` prints. Queues opened later do not get it (call again;\n"
"see the README for the kernel's quirks); prefer set_filter_program().");

PyObject *
Device_attach_filter(DeviceObject *self, PyObject *arg)
{
    struct sock_fprog prog = {0, NULL};
    struct sock_filter *owned = NULL;
    Py_buffer view = {0};
    PyObject *seq = NULL, *result = NULL;
    Py_ssize_t n, i;
    size_t mapsize = 0, tt_page = (size_t)sysconf(_SC_PAGESIZE);
    int err;

    if (tt_require_tap(self, "attach_filter", " (set_filter_program() filters both)") < 0) {
        return NULL;
    }
    if (PyObject_CheckBuffer(arg)) {
        if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        if (view.len % (Py_ssize_t)sizeof(struct sock_filter) != 0) {
            PyErr_Format(PyExc_ValueError, "a filter program is a whole number of %d-byte "
                         "instructions, not %zd bytes", (int)sizeof(struct sock_filter),
                         view.len);
            goto done;
        }
        n = view.len / (Py_ssize_t)sizeof(struct sock_filter);
    }
    else {
        seq = PySequence_Fast(arg, "");
        if (seq == NULL) {
            PyErr_Clear();
            tt_type_error(arg, "program must be a bytes-like object or a sequence of "
                          "(code, jt, jf, k) tuples");
            return NULL;
        }
        n = TT_SEQ_SIZE(seq);
    }
    if (n == 0 || n > BPF_MAXINSNS) {
        PyErr_Format(PyExc_ValueError, "a filter program has 1 to %d instructions, not %zd",
                     BPF_MAXINSNS, n);
        goto done;
    }
    /* The kernel copies the program now (net/core/filter.c: sk_attach_filter) but
     * keeps its user address in tun->fprog, and re-reads it whenever a queue
     * attaches later (drivers/net/tun.c: tun_attach). A re-read that succeeds makes
     * tun_attach return early and leave that queue unattached; one that fails lets
     * it attach (without the filter). So the program goes into pages of its own that
     * are made inaccessible, and stay reserved, once the filter is attached: every
     * later re-read from this process faults and new queues attach. */
    mapsize = ((size_t)n * sizeof(struct sock_filter) + tt_page - 1) / tt_page * tt_page;
    owned = mmap(NULL, mapsize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (owned == MAP_FAILED) {
        owned = NULL;
        PyErr_NoMemory();
        goto done;
    }
    if (seq != NULL) {
        for (i = 0; i < n; i++) {
            if (tt_sock_filter_item(TT_SEQ_ITEM(seq, i), i, &owned[i]) < 0) {
                goto done;
            }
        }
    }
    else {
        memcpy(owned, view.buf, (size_t)n * sizeof(struct sock_filter));
    }
    prog.filter = owned;
    prog.len = (unsigned short)n;
    if (tt_ioctl_raw(self, 0, TUNATTACHFILTER, &prog, "ioctl(TUNATTACHFILTER)", &err) < 0) {
        if (err != 0) {
            tt_oserror(err, "ioctl(TUNATTACHFILTER)", self->name,
                       err == EINVAL ? " (the kernel's classic BPF checker refused the "
                                       "program)"
                                     : NULL);
        }
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    if (owned != NULL) {
        if (result != NULL) {
            /* keep the range reserved, give back the memory */
            (void)madvise(owned, mapsize, MADV_DONTNEED);
            (void)mprotect(owned, mapsize, PROT_NONE);
        }
        else {
            munmap(owned, mapsize);
        }
    }
    Py_XDECREF(seq);
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return result;
}

TT_DOC(Device_detach_filter__doc__,
"detach_filter($self, /)\n--\n\n"
"Remove the classic BPF filter from every attached queue (TUNDETACHFILTER, TAP\n"
"only). Nothing happens when none is attached.");

PyObject *
Device_detach_filter(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    struct sock_fprog prog = {0, NULL};
    if (tt_require_tap(self, "detach_filter", "") < 0) {
        return NULL;
    }
    if (tt_ioctl(self, 0, TUNDETACHFILTER, &prog, "ioctl(TUNDETACHFILTER)") < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* -- the MAC filter --------------------------------------------------------- */

/* drivers/net/tun.c: update_filter matches the first FLT_EXACT_COUNT addresses
 * exactly and hashes the rest, but only multicast ones: a unicast address past the
 * first eight silently turns the whole filter off. */
#define TT_FLT_EXACT 8
#define TT_FLT_MAX 4096

/* One address: 'aa:bb:cc:dd:ee:ff' or 6 bytes. 0 or -1 with an exception. */
static int
tt_parse_mac(PyObject *obj, Py_ssize_t i, unsigned char out[ETH_ALEN])
{
    if (PyUnicode_Check(obj)) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(obj, &len);
        unsigned int b[ETH_ALEN];
        int k, used = 0;
        if (s == NULL) {
            return -1;
        }
        if (len == 17 && strlen(s) == 17 &&
            sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%n", &b[0], &b[1], &b[2], &b[3], &b[4],
                   &b[5], &used) == 6 && used == 17) {
            for (k = 0; k < 17; k++) {
                if ((k % 3 == 2) != (s[k] == ':') ||
                    (k % 3 != 2 && strchr("0123456789abcdefABCDEF", s[k]) == NULL)) {
                    break;
                }
            }
            if (k == 17) {
                for (k = 0; k < ETH_ALEN; k++) {
                    out[k] = (unsigned char)b[k];
                }
                return 0;
            }
        }
        PyErr_Format(PyExc_ValueError, "MAC address %zd must look like "
                     "'aa:bb:cc:dd:ee:ff', not %R", i, obj);
        return -1;
    }
    if (PyObject_CheckBuffer(obj)) {
        Py_buffer v;
        int ok;
        if (PyObject_GetBuffer(obj, &v, PyBUF_SIMPLE) < 0) {
            return -1;
        }
        ok = v.len == ETH_ALEN;
        if (ok) {
            memcpy(out, v.buf, ETH_ALEN);
        }
        PyBuffer_Release(&v);
        if (!ok) {
            PyErr_Format(PyExc_ValueError, "MAC address %zd must be 6 bytes", i);
            return -1;
        }
        return 0;
    }
    tt_type_error(obj, "MAC address %zd must be str or 6 bytes", i);
    return -1;
}

TT_DOC(Device_set_mac_filter__doc__,
"set_mac_filter($self, macs, multicast=False)\n--\n\n"
"Deliver only frames sent to one of `macs` (TUNSETTXFILTER, TAP only): a sequence\n"
"of 'aa:bb:cc:dd:ee:ff' strings or 6-byte objects, at most 8 unicast ones (the\n"
"kernel's exact table). Multicast addresses past the eighth are matched by a hash,\n"
"so some other groups pass too. multicast=True lets every multicast and broadcast\n"
"frame through as well. An empty sequence removes the filter.");

PyObject *
Device_set_mac_filter(DeviceObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"macs", "multicast", NULL};
    PyObject *macs, *seq = NULL, *result = NULL;
    int multicast = 0, err;
    Py_ssize_t n, i, unicast = 0, at;
    struct tun_filter *flt = NULL;
    unsigned char (*addr)[ETH_ALEN] = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|p:set_mac_filter", kwlist, &macs,
                                     &multicast)) {
        return NULL;
    }
    if (PyUnicode_Check(macs) || PyBytes_Check(macs) || PyByteArray_Check(macs)) {
        tt_type_error(macs, "macs must be a sequence of MAC addresses");
        return NULL;
    }
    seq = PySequence_Fast(macs, "");
    if (seq == NULL) {
        PyErr_Clear();
        tt_type_error(macs, "macs must be a sequence of MAC addresses");
        return NULL;
    }
    n = TT_SEQ_SIZE(seq);
    if (n > TT_FLT_MAX) {
        PyErr_Format(PyExc_ValueError, "at most %d MAC addresses, not %zd", TT_FLT_MAX, n);
        goto done;
    }
    if (n == 0 && multicast) {
        /* update_filter: a count of 0 turns the filter off, flags and all */
        PyErr_SetString(PyExc_ValueError, "multicast=True needs at least one address: an "
                        "empty list removes the filter");
        goto done;
    }
    if (tt_require_tap(self, "set_mac_filter", "") < 0) {
        goto done;
    }
    flt = PyMem_Calloc(1, sizeof(*flt) + (size_t)n * ETH_ALEN + 1);
    addr = PyMem_Calloc((size_t)n + 1, ETH_ALEN);
    if (flt == NULL || addr == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < n; i++) {
        if (tt_parse_mac(TT_SEQ_ITEM(seq, i), i, addr[i]) < 0) {
            goto done;
        }
        unicast += !(addr[i][0] & 1);
    }
    if (unicast > TT_FLT_EXACT) {
        PyErr_Format(PyExc_ValueError, "at most %d unicast MAC addresses (the kernel's "
                     "exact table), not %zd", TT_FLT_EXACT, unicast);
        goto done;
    }
    /* Unicast first, so every one of them lands in the exact table. */
    at = 0;
    for (i = 0; i < n; i++) {
        if (!(addr[i][0] & 1)) {
            memcpy(flt->addr[at++], addr[i], ETH_ALEN);
        }
    }
    for (i = 0; i < n; i++) {
        if (addr[i][0] & 1) {
            memcpy(flt->addr[at++], addr[i], ETH_ALEN);
        }
    }
    flt->count = (unsigned short)n;
    flt->flags = multicast ? TUN_FLT_ALLMULTI : 0;
    if (tt_ioctl_raw(self, 0, TUNSETTXFILTER, flt, "ioctl(TUNSETTXFILTER)", &err) < 0) {
        if (err != 0) {
            tt_oserror(err, "ioctl(TUNSETTXFILTER)", self->name, NULL);
        }
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(flt);
    PyMem_Free(addr);
    Py_XDECREF(seq);
    return result;
}
