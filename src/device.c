/*
 * device.c: the Device type: object lifetime (finalizer, dealloc), one-packet
 * I/O (readinto/read/write), the fd and its modes, and the type's tables and spec.
 * Opening is in open.c, interface control in control.c, batches in batch.c; every
 * syscall goes through the engine (engine.c).
 */
#include "_tuntap.h"

#include <string.h>

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
    tt_device_unlink(self);
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

/* readinto()/_try_readinto() and write()/_try_write(): check the buffer, then one
 * packet through the engine. The byte count, -1 with an exception, or -2 (no
 * exception) on EAGAIN with TT_OP_TRY (never waits). aio.c calls it directly. */
Py_ssize_t
tt_one_packet_n(DeviceObject *self, PyObject *arg, int is_write, int flags)
{
    Py_buffer view;
    Py_ssize_t n;

    if (tt_check_open(self) < 0) {
        return -1;
    }
    if (is_write ? PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0
                 : tt_get_write_buffer(arg, &view, "readinto") < 0) {
        return -1;
    }
    if (is_write && view.len == 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "write() of an empty packet");
        return -1;
    }
    if (!is_write && view.len <= self->hdr_len) {
        PyErr_Format(PyExc_ValueError,
                     view.len == 0 ? "readinto() buffer is empty"
                                   : "readinto() buffer must be longer than the %d-byte "
                                     "packet header",
                     self->hdr_len);
        PyBuffer_Release(&view);
        return -1;
    }
    n = tt_io_ex(self, is_write, view.buf, (size_t)view.len, flags);
    PyBuffer_Release(&view);
    return n;
}

/* The same as an int (-1 on EAGAIN with TT_OP_TRY). */
static PyObject *
tt_one_packet(DeviceObject *self, PyObject *arg, int is_write, int flags)
{
    Py_ssize_t n = tt_one_packet_n(self, arg, is_write, flags);
    return n == -1 ? NULL : PyLong_FromSsize_t(n < 0 ? -1 : n);
}

static inline PyObject *
tt_readinto(DeviceObject *self, PyObject *arg, int flags)
{
    return tt_one_packet(self, arg, 0, flags);
}

static inline PyObject *
tt_write(DeviceObject *self, PyObject *arg, int flags)
{
    return tt_one_packet(self, arg, 1, flags);
}

TT_TRY_PAIR(, readinto, tt_readinto,
            "_try_readinto($self, buffer, /)\n--\n\n"
            "readinto() that never waits and returns -1 instead of raising BlockingIOError\n"
            "when nothing is queued (tuntap.asyncio's try-first path).")

PyDoc_STRVAR(Device_read__doc__,
"read($self, size=65536, /)\n--\n\n"
"Read one packet and return it as bytes (at most size bytes; a longer packet is\n"
"truncated by the kernel). Allocates one bytes object of at most the header plus\n"
"65,792 bytes (no TUN/TAP packet is longer), whatever size asks; readinto() does\n"
"not allocate.");

/* read() and _try_read() (flags TT_OP_TRY: None on EAGAIN). */
static PyObject *
tt_read(DeviceObject *self, PyObject *const *args, Py_ssize_t nargs, int flags)
{
    Py_ssize_t size = 65536, n;
    PyObject *buf, *opt;

    if (tt_fastcall_optional(args, nargs, 0, "read", &opt) < 0 ||
        (opt != NULL && tt_as_ssize(opt, &size, "read", "size") < 0)) {
        return NULL;
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
    if (size > self->hdr_len + TT_READ_MAX) {
        size = self->hdr_len + TT_READ_MAX; /* no packet is longer */
    }
    buf = PyBytes_FromStringAndSize(NULL, size);
    if (buf == NULL) {
        return NULL;
    }
    n = tt_io_ex(self, 0, PyBytes_AS_STRING(buf), (size_t)size, flags);
    if (n < 0) {
        Py_DECREF(buf);
        return n == -1 ? NULL : Py_NewRef(Py_None);
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

static PyObject *
Device_read(DeviceObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return tt_read(self, args, nargs, 0);
}

TT_DOC(Device__try_read__doc__,
"_try_read($self, size=65536, /)\n--\n\n"
"read() that never waits and returns None instead of raising BlockingIOError\n"
"when nothing is queued (tuntap.asyncio's try-first path).");

PyObject *
Device__try_read(DeviceObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return tt_read(self, args, nargs, TT_OP_TRY);
}

PyDoc_STRVAR(Device_write__doc__,
"write($self, data, /)\n--\n\n"
"Write one packet (a bytes-like object) and return the number of bytes written.\n"
"The kernel checks little (TUN: only the IP version nibble; docs/kernel.md).\n"
"Raises the kernel's OSError for a malformed packet (EINVAL) or while the\n"
"interface is down (EIO).");

TT_TRY_PAIR(, write, tt_write,
            "_try_write($self, data, /)\n--\n\n"
            "write() that never waits and returns -1 instead of raising BlockingIOError\n"
            "when the device's send buffer is full (tuntap.asyncio's try-first path).")

/* -- fd and modes --------------------------------------------------------- */

PyDoc_STRVAR(Device_fileno__doc__,
"fileno($self, /)\n--\n\n"
"Return the device's file descriptor (non-blocking at the OS level).");

static PyObject *
Device_fileno(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    return tt_check_open(self) < 0 ? NULL : PyLong_FromLong(self->fd);
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

/* The mode of an open device: -1 block forever, 0 non-blocking, > 0 a timeout (ns). */
static PyObject *
tt_store_timeout(DeviceObject *self, int64_t timeout_ns)
{
    if (tt_check_open(self) < 0) {
        return NULL;
    }
    self->timeout_ns = timeout_ns;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Device_setblocking__doc__,
"setblocking($self, flag, /)\n--\n\n"
"Blocking (True: no timeout) or non-blocking (False) mode, as socket.setblocking.");

static PyObject *
Device_setblocking(DeviceObject *self, PyObject *arg)
{
    int flag = PyObject_IsTrue(arg);
    return flag < 0 ? NULL : tt_store_timeout(self, flag ? -1 : 0);
}

PyDoc_STRVAR(Device_getblocking__doc__,
"getblocking($self, /)\n--\n\n"
"True unless the device is in non-blocking mode (timeout 0.0).");

static PyObject *
Device_getblocking(DeviceObject *self, PyObject *Py_UNUSED(ignored))
{
    return tt_check_open(self) < 0 ? NULL : PyBool_FromLong(self->timeout_ns != 0);
}

PyDoc_STRVAR(Device_settimeout__doc__,
"settimeout($self, value, /)\n--\n\n"
"None: block forever; 0: non-blocking; a positive number of seconds: blocking\n"
"reads and writes raise TimeoutError after that long.");

static PyObject *
Device_settimeout(DeviceObject *self, PyObject *arg)
{
    int64_t t;
    return tt_parse_timeout(arg, &t) < 0 ? NULL : tt_store_timeout(self, t);
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

/* -- properties and tables ------------------------------------------------ */

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

PyObject *
Device_get_coalesce_disabled(DeviceObject *self, void *Py_UNUSED(closure))
{
    unsigned off = __atomic_load_n(&self->gro_off, __ATOMIC_RELAXED);
    PyObject *set = PyFrozenSet_New(NULL), *name;
    if (set == NULL) {
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (!(off & (i ? TT_GRO_UDP : TT_GRO_TCP))) {
            continue;
        }
        name = PyUnicode_FromString(i ? "udp" : "tcp");
        if (name == NULL || PySet_Add(set, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(set);
            return NULL;
        }
        Py_DECREF(name);
    }
    return set;
}


/* {"name", Device_<name>, flags, Device_<name>__doc__} */
#define TT_M(name, flags) \
    {#name, (PyCFunction)(void (*)(void))Device_##name, (flags), Device_##name##__doc__}

static PyMethodDef Device_methods[] = {
    TT_M(readinto, METH_O),
    TT_M(read, METH_FASTCALL),
    TT_M(write, METH_O),
    TT_M(read_batch, METH_O),
    TT_M(write_batch, METH_FASTCALL | METH_KEYWORDS),
    TT_M(_try_readinto, METH_O),
    TT_M(_try_read, METH_FASTCALL),
    TT_M(_try_write, METH_O),
    TT_M(_try_read_batch, METH_O),
    TT_M(_try_write_batch, METH_FASTCALL),
    TT_M(fileno, METH_NOARGS),
    TT_M(close, METH_NOARGS),
    TT_M(detach, METH_NOARGS),
    TT_M(fromfd, METH_O | METH_CLASS),
    TT_M(setblocking, METH_O),
    TT_M(getblocking, METH_NOARGS),
    TT_M(settimeout, METH_O),
    TT_M(gettimeout, METH_NOARGS),
    TT_M(up, METH_NOARGS),
    TT_M(down, METH_NOARGS),
    TT_M(persist, METH_FASTCALL),
    TT_M(set_owner, METH_O),
    TT_M(set_group, METH_O),
    TT_M(attach_queue, METH_NOARGS),
    TT_M(detach_queue, METH_NOARGS),
    TT_M(set_offload, METH_O),
    TT_M(_address, METH_VARARGS),
    TT_M(set_steering_program, METH_O),
    TT_M(set_filter_program, METH_O),
    TT_M(attach_filter, METH_O),
    TT_M(detach_filter, METH_NOARGS),
    TT_M(set_mac_filter, METH_VARARGS | METH_KEYWORDS),
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
     "Size of the virtio-net header on VNET_HDR devices: 10 (struct virtio_net_hdr, the "
     "default) or 12 (with num_buffers); 13 to 256 add padding the kernel skips. "
     "ValueError outside 10..256.", NULL},
    {"coalesce_disabled", (getter)Device_get_coalesce_disabled, NULL,
     "The merges write_batch(coalesce=True) no longer tries on this device because the "
     "kernel refused one with EINVAL: a frozenset of 'tcp' and 'udp'.", NULL},
    {"sndbuf", (getter)Device_get_sndbuf, (setter)Device_set_sndbuf,
     "Bytes of written packets the kernel may hold in flight before a write waits "
     "(TUNGETSNDBUF/TUNSETSNDBUF; INT_MAX by default).", NULL},
    {"header_size", (getter)Device_get_header_size, NULL,
     "Bytes in front of every packet read or written: packet info (4) plus the vnet "
     "header.", NULL},
    {"carrier", (getter)Device_get_carrier, (setter)Device_set_carrier,
     "Whether the link has carrier (rtnetlink IFLA_CARRIER; set with TUNSETCARRIER). "
     "Off, the kernel sends nothing to the device. Turning it on needs an attached "
     "queue (PermissionError otherwise).", NULL},
#ifdef TUNSETVNETLE
    {"vnet_le", (getter)Device_get_vnet_le, (setter)Device_set_vnet_le,
     "Vnet headers in little-endian order whatever the host's (TUNSETVNETLE; "
     "virtio 1.0 devices).", NULL},
#endif
#ifdef TUNSETVNETBE
    {"vnet_be", (getter)Device_get_vnet_be, (setter)Device_set_vnet_be,
     "Legacy vnet headers in big-endian order (TUNSETVNETBE); a kernel without "
     "CONFIG_TUN_VNET_CROSS_LE refuses True with OSError(EINVAL).", NULL},
#endif
    {"io", (getter)Device_get_io, NULL,
     "The backend of read_batch/write_batch: 'uring' (io_uring) or 'syscall' "
     "(read()/write()).", NULL},
    {"_uring_stats", (getter)Device_get__uring_stats, NULL,
     "Counters of the io_uring backend (for tests), or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Device__doc__,
"Device(name='', flags=4097, *, blocking=True, netns=None, path='/dev/net/tun',\n"
"       io='auto')\n"
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

PyType_Spec tt_device_spec = {
    .name = TT_MODULE_NAME ".Device",
    .basicsize = sizeof(DeviceObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = Device_slots,
};
