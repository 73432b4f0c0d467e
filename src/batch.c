/*
 * batch.c: the PacketBatch type (one arena of packet slots with zero-copy views)
 * and the batched I/O of Device.read_batch/write_batch, each one engine call.
 */
#include "_tuntap.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <structmember.h>

/* -- read_batch ------------------------------------------------------------- */

/* Fill the batch: the first read may find nothing (EAGAIN: the engine waits and
 * calls again); once one packet is in, read without waiting until the batch is
 * full or the queue is empty. An error after the first packet is left for the next
 * call to report: the packets read so far are returned now. The first read is
 * always read(), so an empty queue looks the same on both backends; io_uring may
 * then take the rest (uring.c). op->ctx: a tt_read_ctx. */
ssize_t
tt_read_batch_impl(tt_op *op)
{
    tt_read_ctx *c = op->ctx;
    PacketBatchObject *b = c->b;
    size_t slot = (size_t)b->slot_size;
    Py_ssize_t i = 1, cap = b->capacity;
    ssize_t n = read(op->fd, tt_batch_slot(b, 0), slot);
    if (n < 0) {
        if (c->u != NULL && errno == EAGAIN) {
            tt_uring_read_done(c->u, 0); /* the queue ran dry: start small again */
        }
        return -1;
    }
    b->sizes[0] = (uint32_t)n;
    if (c->u == NULL || !tt_uring_read_more(c->u, op->fd, b, &i)) {
        for (; i < cap; i++) {
            n = read(op->fd, tt_batch_slot(b, i), slot);
            if (n < 0) {
                break;
            }
            b->sizes[i] = (uint32_t)n;
        }
    }
    if (c->u != NULL) {
        tt_uring_read_done(c->u, i);
    }
    return i;
}

TT_DOC(Device_read_batch__doc__,
"read_batch($self, batch, /)\n--\n\n"
"Replace the contents of a PacketBatch with up to batch.capacity packets and\n"
"return how many were read. Blocking mode waits (honouring the timeout) for the\n"
"first packet only, then takes whatever is queued without waiting; non-blocking\n"
"mode raises BlockingIOError when nothing is queued. One GIL release per call, no\n"
"allocation. Each packet is truncated to batch.slot_size like readinto(). On the\n"
"io_uring backend (Device.io == 'uring') the packets after the first go through\n"
"io_uring once a call has taken 8 or more.");

/* read_batch() and _try_read_batch() (flags TT_OP_TRY: -1 on EAGAIN). */
static PyObject *
tt_read_batch(DeviceObject *self, PyObject *arg, int flags)
{
    PacketBatchObject *b = (PacketBatchObject *)arg;
    tt_read_ctx c = {b, tt_device_uring(self)};
    tt_op op = {.impl = tt_read_batch_impl, .syscall = "read()", .events = POLLIN,
                .flags = flags, .ctx = &c};
    Py_ssize_t n;

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
    n = tt_call(self, &op);
    if (n < 0) {
        return op.err == EAGAIN ? PyLong_FromLong(-1) : NULL;
    }
    b->count = n;
    return PyLong_FromSsize_t(n);
}

TT_TRY_PAIR(, read_batch, tt_read_batch,
            "_try_read_batch($self, batch, /)\n--\n\n"
            "read_batch() that never waits and returns -1 (the batch left empty) instead of\n"
            "raising BlockingIOError when nothing is queued (tuntap.asyncio's try-first path).")

/* -- write_batch ------------------------------------------------------------ */

/* Write from where the last attempt stopped; EAGAIN leaves `done` for the engine
 * to wait and call again. An empty packet ends the run (the kernel would refuse
 * it with EINVAL; the caller refuses a first empty packet before this runs). */
ssize_t
tt_write_batch_impl(tt_op *op)
{
    tt_write_ctx *c = op->ctx;
    if (c->u != NULL &&
        tt_uring_write(c->u, op->fd, c->pkts, c->b, c->first, &c->done, c->count) < 0) {
        op->progress = c->base + c->done;
        return -1;
    }
    for (; c->done < c->count; c->done++) {
        Py_ssize_t j = c->first + c->done;
        const char *data = c->pkts ? c->pkts[c->done].data : tt_batch_slot(c->b, j);
        size_t len = c->pkts ? c->pkts[c->done].len : c->b->sizes[j];
        if (len == 0) {
            break;
        }
        if (write(op->fd, data, len) < 0) {
            op->progress = c->base + c->done;
            return -1;
        }
    }
    return c->base + c->done;
}

/* GIL held. Packets written in all (base included), or -1 with an exception when
 * nothing at all was written (-2 and no exception: EAGAIN with TT_OP_TRY). */
static Py_ssize_t
tt_write_many(DeviceObject *self, const tt_pkt *pkts, const PacketBatchObject *b,
              Py_ssize_t first, Py_ssize_t base, Py_ssize_t count, int flags)
{
    tt_write_ctx c = {pkts, b, first, base, 0, count, tt_device_uring(self)};
    tt_op op = {.impl = tt_write_batch_impl, .syscall = "write()", .events = POLLOUT,
                .flags = flags, .progress = base, .ctx = &c};
    Py_ssize_t n;
    if (base == 0 && (pkts ? pkts[0].len : b->sizes[first]) == 0) {
        PyErr_SetString(PyExc_ValueError, "write_batch() of an empty packet");
        return -1;
    }
    n = tt_call(self, &op);
    return n < 0 && op.err == EAGAIN ? -2 : n;
}

#define TT_WRITE_CHUNK 64

/* -- write_batch(coalesce=True) ---------------------------------------------- */

/* Which merge kinds a disabled bit covers (a refused TCPv4 merge turns TCP off). */
static unsigned
tt_gro_class(unsigned kind)
{
    return (kind & TT_GRO_TCP) ? TT_GRO_TCP : TT_GRO_UDP;
}

#define TT_IOV_STACK 65

typedef struct {
    DeviceObject *dev;
    const tt_pktlist *pl;
    tt_gro_plan plan;
    unsigned kinds;
    size_t max_segments;
    size_t vnet;
    int planned;
    int plain;          /* output j goes member by member (the kernel refused it) */
    size_t j, k;        /* next output; next member of output j when plain */
    Py_ssize_t done;    /* input packets written */
    struct iovec *iov;  /* 1 + max_segments entries */
    uint8_t hdr[TT_GRO_VNET_MAX + TT_GRO_HDR_MAX];
} tt_cwrite_ctx;

static const uint8_t tt_zero_vnet[TT_GRO_VNET_MAX];

/* Plan once (no GIL: the first attempt), then write output by output, each a
 * writev() of its header and its members' payloads: no copy in userspace. A
 * merge the kernel refuses with EINVAL (seen on some kernels with UDP GSO, and
 * what more than UDP_MAX_SEGMENTS gives) turns that kind of merge off for the
 * device and is written as its original packets, after an all-zero header. */
static ssize_t
tt_cwrite_impl(tt_op *op)
{
    tt_cwrite_ctx *c = op->ctx;
    const tt_gro_pkt *pkts = c->pl->pkts;
    if (!c->planned) {
        (void)tt_gro_plan_make(pkts, (size_t)c->pl->n, c->kinds, TT_GRO_MAX_SIZE,
                               c->max_segments, c->pl->scratch, &c->plan);
        c->planned = 1;
    }
    for (; c->j < c->plan.nouts; c->j++, c->k = 0, c->plain = 0) {
        const tt_gro_out *o = &c->plan.outs[c->j];
        size_t len;
        if (o->kind && !c->plain &&
            (__atomic_load_n(&c->dev->gro_off, __ATOMIC_RELAXED) & tt_gro_class(o->kind))) {
            c->plain = 1; /* another call hit EINVAL meanwhile */
        }
        if (!c->plain) {
            c->iov[0].iov_base = c->hdr;
            c->iov[0].iov_len = tt_gro_header(pkts, &c->plan, o, c->vnet, c->hdr);
            for (size_t k = 0; k < o->count; k++) {
                c->iov[k + 1].iov_base = (void *)tt_gro_piece(pkts, &c->plan, o, k, &len);
                c->iov[k + 1].iov_len = len;
            }
            if (writev(op->fd, c->iov, (int)o->count + 1) >= 0) {
                c->done += o->count;
                continue;
            }
            if (errno != EINVAL || !o->kind) {
                op->progress = c->done;
                return -1;
            }
            __atomic_fetch_or(&c->dev->gro_off, tt_gro_class(o->kind), __ATOMIC_RELAXED);
            c->plain = 1;
        }
        for (; c->k < o->count; c->k++) {
            const tt_gro_pkt *p = &pkts[c->plan.members[o->first + c->k]];
            c->iov[0].iov_base = (void *)tt_zero_vnet;
            c->iov[0].iov_len = c->vnet;
            c->iov[1].iov_base = (void *)p->data;
            c->iov[1].iov_len = p->len;
            if (writev(op->fd, c->iov, 2) < 0) {
                op->progress = c->done;
                return -1;
            }
            c->done++;
        }
    }
    return c->done;
}

/* GIL held. write_batch(packets, coalesce=True). */
static PyObject *
tt_write_coalesced(DeviceObject *self, PyObject *arg, Py_ssize_t max_segments)
{
    tt_pktlist pl;
    struct iovec stack_iov[TT_IOV_STACK];
    tt_cwrite_ctx c;
    tt_op op = {.impl = tt_cwrite_impl, .syscall = "writev()", .events = POLLOUT, .ctx = &c};
    Py_ssize_t n, i;
    int f = self->hdr_flags;

    if (!(f & IFF_VNET_HDR) || !(f & IFF_NO_PI) || (f & IFF_TAP) ||
        self->hdr_len > TT_GRO_VNET_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "write_batch(coalesce=True) needs a TUN device with VNET_HDR and NO_PI; "
                     "'%s' is not one", self->name);
        return NULL;
    }
    if (self->offload < 0) {
        PyErr_Format(PyExc_ValueError,
                     "write_batch(coalesce=True): call set_offload() on '%s' first (TSO4/"
                     "TSO6 allow TCP merges, USO4|USO6 UDP merges)", self->name);
        return NULL;
    }
    if (tt_pktlist_get(arg, self->batch_type, &pl, "write_batch") < 0) {
        return NULL;
    }
    for (i = 0; i < pl.n; i++) {
        if (pl.pkts[i].len == 0) {
            PyErr_Format(PyExc_ValueError, "write_batch() of an empty packet (item %zd)", i);
            tt_pktlist_release(&pl);
            return NULL;
        }
    }
    if (pl.n == 0) {
        tt_pktlist_release(&pl);
        return PyLong_FromLong(0);
    }
    memset(&c, 0, sizeof(c));
    c.dev = self;
    c.pl = &pl;
    c.vnet = (size_t)self->hdr_len;
    c.max_segments = (size_t)max_segments;
    if (self->offload & TUN_F_TSO4) {
        c.kinds |= TT_GRO_TCP4;
    }
    if (self->offload & TUN_F_TSO6) {
        c.kinds |= TT_GRO_TCP6;
    }
    if (self->offload & TUN_F_USO4) {
        c.kinds |= TT_GRO_UDP;
    }
    c.kinds &= ~__atomic_load_n(&self->gro_off, __ATOMIC_RELAXED);
    c.iov = stack_iov;
    if ((size_t)max_segments + 1 > TT_IOV_STACK) {
        c.iov = PyMem_Malloc(((size_t)max_segments + 1) * sizeof(struct iovec));
        if (c.iov == NULL) {
            tt_pktlist_release(&pl);
            return PyErr_NoMemory();
        }
    }
    n = tt_call(self, &op);
    if (c.iov != stack_iov) {
        PyMem_Free(c.iov);
    }
    tt_pktlist_release(&pl);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

/* write_batch() and _try_write_batch(): packets from index `start` on; with
 * TT_OP_TRY, -1 when the first write finds the send buffer full (EAGAIN). */
static PyObject *
tt_write_batch(DeviceObject *self, PyObject *arg, Py_ssize_t start, int flags)
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
        if (start >= b->count) {
            return PyLong_FromLong(0);
        }
        n = tt_write_many(self, NULL, b, start, 0, b->count - start, flags);
        return n == -1 ? NULL : PyLong_FromSsize_t(n < 0 ? -1 : n);
    }
    if (PyObject_CheckBuffer(arg) || PyUnicode_Check(arg)) {
        tt_type_error(arg, "write_batch() takes a PacketBatch or a sequence of packets "
                           "(use write() for one packet)");
        return NULL;
    }
    /* The GIL is released between chunks, so another thread may change the list
     * meanwhile: write a snapshot (one tuple per call, the items' references held by
     * it), never the list itself. PySequence_Fast returns an exact list as it is and
     * copies any other sequence into a private list; tuples are immutable. */
    if (PyList_CheckExact(arg)) {
        seq = PyList_AsTuple(arg);
    }
    else {
        seq = PySequence_Fast(arg, "write_batch() argument must be a PacketBatch or a "
                                   "sequence of bytes-like objects");
    }
    if (seq == NULL) {
        return NULL;
    }
    n = TT_SEQ_SIZE(seq) - start;
    /* Check every item first so a bad one raises before anything is written. */
    for (i = start; i < n + start; i++) {
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
            if (PyObject_GetBuffer(TT_SEQ_ITEM(seq, start + total + k), &views[k],
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
        w = tt_write_many(self, pkts, NULL, 0, total, chunk, flags);
        for (k = 0; k < chunk; k++) {
            PyBuffer_Release(&views[k]);
        }
        if (w < 0) {
            Py_DECREF(seq);
            return w == -1 ? NULL : PyLong_FromLong(-1);
        }
        if (w < total + chunk) {
            total = w;
            break;
        }
        total = w;
    }
    Py_DECREF(seq);
    return PyLong_FromSsize_t(total);
}

TT_DOC(Device_write_batch__doc__,
"write_batch($self, packets, /, *, coalesce=False, max_segments=64)\n--\n\n"
"Write a PacketBatch (its len(batch) packets) or a sequence of bytes-like objects,\n"
"one packet each, and return how many were written. If the first write fails it\n"
"raises; if a later one fails it returns the count written so far (like send()).\n"
"The GIL is released once per PacketBatch, or once per 64 packets of a sequence;\n"
"a list is written as it was when the call began, whatever other threads do to it.\n\n"
"coalesce=True (a TUN device with VNET_HDR, NO_PI and set_offload() called):\n"
"packets are plain IP packets without a header; consecutive TCP segments of a\n"
"flow (with TSO4/TSO6 set; UDP datagrams with USO4|USO6) are merged as coalesce()\n"
"does, at most max_segments (1..1023) each, and every output is written with one\n"
"writev() (header + payloads, no copy). The count is of input packets; after a\n"
"partial failure they are those of the first outputs. If the kernel refuses a merge\n"
"with EINVAL, that kind of merge is turned off for the device (coalesce_disabled)\n"
"and its packets are written one by one: none is lost. On the io_uring backend\n"
"(Device.io == 'uring'), without coalesce, runs of 8 or more are linked writes, one\n"
"io_uring_enter per 64; coalesce=True always uses writev().");

PyObject *
Device_write_batch(DeviceObject *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    PyObject *arg;
    Py_ssize_t i;

    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "write_batch() takes exactly one positional argument "
                     "(%zd given)", nargs);
        return NULL;
    }
    arg = args[0];
    if (kwnames != NULL && PyTuple_Size(kwnames) > 0) {
        int coalesce = 0, have_max = 0;
        Py_ssize_t max_segments = TT_GRO_DEFAULT_SEGMENTS, nkw = PyTuple_Size(kwnames);
        for (i = 0; i < nkw; i++) {
            PyObject *key = PyTuple_GetItem(kwnames, i), *v = args[nargs + i];
            if (PyUnicode_Check(key) && PyUnicode_CompareWithASCIIString(key, "coalesce") == 0) {
                coalesce = PyObject_IsTrue(v);
                if (coalesce < 0) {
                    return NULL;
                }
            }
            else if (PyUnicode_Check(key) &&
                     PyUnicode_CompareWithASCIIString(key, "max_segments") == 0) {
                if (!PyLong_Check(v)) {
                    return tt_type_error(v, "max_segments must be int");
                }
                max_segments = PyLong_AsSsize_t(v);
                if (max_segments == -1 && PyErr_Occurred()) {
                    return NULL;
                }
                have_max = 1;
                if (max_segments < 1 || max_segments > 1023) {
                    PyErr_Format(PyExc_ValueError,
                                 "max_segments must be between 1 and 1023, not %zd",
                                 max_segments);
                    return NULL;
                }
            }
            else {
                PyErr_Format(PyExc_TypeError,
                             "write_batch() got an unexpected keyword argument '%S'", key);
                return NULL;
            }
        }
        if (coalesce) {
            if (tt_check_open(self) < 0) {
                return NULL;
            }
            return tt_write_coalesced(self, arg, max_segments);
        }
        if (have_max) {
            PyErr_SetString(PyExc_ValueError, "write_batch(): max_segments needs coalesce=True");
            return NULL;
        }
    }

    return tt_write_batch(self, arg, 0, 0);
}

TT_DOC(Device__try_write_batch__doc__,
"_try_write_batch($self, packets, start=0, /)\n--\n\n"
"write_batch() of packets[start:] that never waits: returns how many were written,\n"
"or -1 instead of raising BlockingIOError when the first write finds the send\n"
"buffer full (tuntap.asyncio's try-first path). A short count means a later write\n"
"found it full or failed (the next call reports the error).");

PyObject *
Device__try_write_batch(DeviceObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start = 0;
    PyObject *opt;
    if (tt_fastcall_optional(args, nargs, 1, "_try_write_batch", &opt) < 0 ||
        (opt != NULL && tt_as_ssize(opt, &start, "_try_write_batch", "start") < 0)) {
        return NULL;
    }
    if (start < 0) {
        PyErr_Format(PyExc_ValueError, "start must be >= 0, not %zd", start);
        return NULL;
    }
    return tt_write_batch(self, args[0], start, TT_OP_TRY);
}

/* -- the PacketBatch type ------------------------------------------------- */


/* OverflowError or MemoryError saying how many bytes were asked for (computed as a
 * Python int: the product may not fit a Py_ssize_t). Always NULL. */
static PyObject *
tt_batch_too_large(PyObject *exc, Py_ssize_t capacity, Py_ssize_t slot_size,
                   Py_ssize_t headroom)
{
    PyObject *cap = PyLong_FromSsize_t(capacity);
    PyObject *stride = PyLong_FromSsize_t(slot_size + headroom);
    PyObject *total = cap && stride ? PyNumber_Multiply(cap, stride) : NULL;
    if (total != NULL) {
        PyErr_Format(exc, "PacketBatch(capacity=%zd, slot_size=%zd, headroom=%zd) asks "
                     "for %S bytes (capacity x (slot_size + headroom))%s", capacity,
                     slot_size, headroom, total,
                     exc == PyExc_MemoryError ? ": not enough memory" : "");
    }
    Py_XDECREF(cap);
    Py_XDECREF(stride);
    Py_XDECREF(total);
    return NULL;
}

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
        return tt_batch_too_large(PyExc_OverflowError, capacity, slot_size, headroom);
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
        return tt_batch_too_large(PyExc_MemoryError, capacity, slot_size, headroom);
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

int
PacketBatch_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    PacketBatchObject *self = (PacketBatchObject *)op;
    int kind = self->export_kind;
    self->export_kind = TT_EXPORT_ARENA;
    if (kind == TT_EXPORT_SIZES) {
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
    if (kind == TT_EXPORT_REGION) {
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
    self->export_kind = TT_EXPORT_ARENA;
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
    return tt_batch_view(self, TT_EXPORT_REGION, i * self->stride + self->headroom,
                         self->sizes[i]);
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
    return tt_batch_view(self, TT_EXPORT_REGION, i * self->stride,
                         self->headroom + self->sizes[i]);
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
        memcpy(tt_batch_slot(self, self->count), view.buf, (size_t)view.len);
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
    return tt_batch_view(self, TT_EXPORT_SIZES, 0, self->count);
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

PyType_Spec tt_batch_spec = {
    .name = TT_MODULE_NAME ".PacketBatch",
    .basicsize = sizeof(PacketBatchObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = PacketBatch_slots,
};
