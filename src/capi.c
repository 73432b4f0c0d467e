/*
 * capi.c: the C API (tuntap/capi.h): the versioned function table exported as the
 * capsule tuntap._tuntap._C_API, for C, C++ and Cython extensions that run the
 * packet loop without the interpreter.
 *
 * The nogil functions go through the engine (tt_call_nogil, engine.c) with the same
 * attempts as the Python methods (batch.c, engine.c), so they follow the same rules:
 * the busy count, the poll() + close eventfd wait, one deadline. acquire() makes the
 * eventfd while the GIL is held, so close() from another thread ends a nogil wait.
 */
#include "_tuntap.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

#include "csum.h"
#include "gso.h"
#include "tuntap/capi.h"

/* The codes are part of the ABI: capi.h spells them for users, the units for us. */
_Static_assert(TUNTAP_ECLOSED == TT_ECLOSED, "closed code");
_Static_assert(TUNTAP_SEG_EHDRSIZE == -TT_SEG_EHDRSIZE && TUNTAP_SEG_ETOOSHORT == -TT_SEG_ETOOSHORT &&
                   TUNTAP_SEG_EGSOTYPE == -TT_SEG_EGSOTYPE && TUNTAP_SEG_EGSOSIZE == -TT_SEG_EGSOSIZE &&
                   TUNTAP_SEG_EIPHDR == -TT_SEG_EIPHDR && TUNTAP_SEG_EL4HDR == -TT_SEG_EL4HDR &&
                   TUNTAP_SEG_ECSUM == -TT_SEG_ECSUM && TUNTAP_SEG_ECAPACITY == -TT_SEG_ECAPACITY &&
                   TUNTAP_SEG_ESLOT == -TT_SEG_ESLOT && TUNTAP_SEG_ELAYOUT == -TT_SEG_ELAYOUT &&
                   TUNTAP_SEG_ETOOBIG == -TT_SEG_ETOOBIG,
               "segment codes");

/* tuntap_device is the DeviceObject itself; the handle owns one reference. */
#define TT_DEV(d) ((DeviceObject *)(void *)(d))

/* GIL held. The module state if `obj`'s type comes from this module, else NULL with
 * no exception. */
static tt_state *
tt_capi_state(PyObject *obj)
{
    tt_state *st = tt_find_state(Py_TYPE(obj));
    if (st == NULL) {
        PyErr_Clear();
    }
    return st;
}

static int
tt_capi_batch_view(PyObject *obj, tuntap_batch *out)
{
    tt_state *st = tt_capi_state(obj);
    PacketBatchObject *b = (PacketBatchObject *)obj;
    if (st == NULL || Py_TYPE(obj) != st->PacketBatchType) {
        tt_type_error(obj, "tuntap_batch_view() argument must be tuntap.PacketBatch");
        return -1;
    }
    *out = (tuntap_batch){.arena = b->arena, .sizes = b->sizes, .capacity = b->capacity,
                          .slot_size = b->slot_size, .stride = b->stride,
                          .headroom = b->headroom, .count = b->count, .owner = b};
    return 0;
}

static tuntap_device *
tt_capi_device_acquire(PyObject *obj)
{
    tt_state *st = tt_capi_state(obj);
    DeviceObject *self = (DeviceObject *)obj;
    if (st == NULL || !PyObject_TypeCheck(obj, st->DeviceType)) {
        tt_type_error(obj, "tuntap_device_acquire() argument must be tuntap.Device");
        return NULL;
    }
    if (tt_check_open(self) < 0 || tt_ensure_wakefd(self) < 0) {
        return NULL;
    }
    Py_INCREF(obj);
    return (tuntap_device *)(void *)self;
}

static void
tt_capi_device_release(tuntap_device *dev)
{
    Py_XDECREF((PyObject *)TT_DEV(dev));
}

/* The batch object behind a view: the attempts work on it (and set its count). */
static PacketBatchObject *
tt_view_owner(const tuntap_batch *b)
{
    return (PacketBatchObject *)b->owner;
}

static Py_ssize_t
tt_capi_read_batch(tuntap_device *dev, tuntap_batch *b, int64_t timeout_ns)
{
    DeviceObject *self = TT_DEV(dev);
    PacketBatchObject *pb = tt_view_owner(b);
    tt_read_ctx c = {pb, tt_device_uring(self)}; /* the device's backend (uring.c) */
    tt_op op = {.impl = tt_read_batch_impl, .syscall = "read()", .events = POLLIN,
                .ctx = &c};
    Py_ssize_t n;

    if (pb->slot_size <= self->hdr_len) {
        return -EINVAL; /* the kernel would drop the packet (KERNEL: reads) */
    }
    pb->count = 0;
    b->count = 0;
    n = tt_call_nogil(self, &op, timeout_ns);
    if (n > 0) {
        pb->count = n;
        b->count = n;
    }
    return n;
}

static Py_ssize_t
tt_capi_write_batch(tuntap_device *dev, const tuntap_batch *b, Py_ssize_t first,
                    Py_ssize_t count, int64_t timeout_ns)
{
    const PacketBatchObject *pb = tt_view_owner(b);
    tt_write_ctx c = {NULL, pb, first, 0, 0, count, tt_device_uring(TT_DEV(dev))};
    tt_op op = {.impl = tt_write_batch_impl, .syscall = "write()", .events = POLLOUT,
                .ctx = &c};
    Py_ssize_t i;

    if (first < 0 || count < 0 || first > pb->capacity || count > pb->capacity - first) {
        return -EINVAL;
    }
    if (count == 0) {
        return 0;
    }
    if (pb->sizes[first] == 0) {
        return -EINVAL; /* what write() of 0 bytes gives (KERNEL: writes) */
    }
    for (i = first; i < first + count; i++) {
        if (pb->sizes[i] > (uint32_t)pb->slot_size) {
            return -EINVAL; /* it would write past its slot */
        }
    }
    return tt_call_nogil(TT_DEV(dev), &op, timeout_ns);
}

static Py_ssize_t
tt_capi_read(tuntap_device *dev, void *buf, size_t len, int64_t timeout_ns)
{
    DeviceObject *self = TT_DEV(dev);
    if (len <= (size_t)self->hdr_len) {
        return -EINVAL;
    }
    return tt_io_nogil(self, 0, buf, len, timeout_ns);
}

static Py_ssize_t
tt_capi_write(tuntap_device *dev, const void *buf, size_t len, int64_t timeout_ns)
{
    if (len == 0) {
        return -EINVAL;
    }
    return tt_io_nogil(TT_DEV(dev), 1, (void *)buf, len, timeout_ns);
}

static Py_ssize_t
tt_capi_segment(const void *packet, size_t len, size_t vnet_hdr_size, tuntap_batch *out)
{
    PacketBatchObject *pb = tt_view_owner(out);
    const char *p = packet, *a = pb->arena;
    int err = 0;
    ssize_t n;

    if (p < a + pb->capacity * pb->stride && a < p + len) {
        return TUNTAP_SEG_EOVERLAP;
    }
    n = tt_segment_core(packet, len, vnet_hdr_size, (uint8_t *)pb->arena,
                        (size_t)pb->capacity, (size_t)pb->stride, (size_t)pb->headroom,
                        (size_t)pb->slot_size, pb->sizes, &err);
    if (n < 0) {
        return -err;
    }
    pb->count = n;
    out->count = n;
    return n;
}

static uint16_t
tt_capi_checksum(const void *data, size_t len)
{
    return tt_checksum_be(data, len);
}

static int
tt_capi_header_size(tuntap_device *dev)
{
    return TT_DEV(dev)->hdr_len;
}

static int
tt_capi_raise_error(tuntap_device *dev, Py_ssize_t code, const char *syscall)
{
    DeviceObject *self = TT_DEV(dev);
    short events = strncmp(syscall, "write", 5) == 0 ? POLLOUT : POLLIN;
    if (code == -EINTR && PyErr_CheckSignals() < 0) {
        return -1; /* the handler's exception, as the Python API would raise */
    }
    if (code >= 0) {
        PyErr_Format(PyExc_SystemError, "tuntap_raise_error(): %zd is not an error code",
                     code);
        return -1;
    }
    tt_raise_code(self, syscall, events, code);
    return -1;
}

static int
tt_capi_raise_segment_error(Py_ssize_t code)
{
    if (code == TUNTAP_SEG_EOVERLAP) {
        PyErr_SetString(PyExc_ValueError,
                        "segment(): the packet lies inside the destination batch");
    }
    else {
        PyErr_Format(PyExc_ValueError, "segment(): %s", tt_segment_strerror((int)-code));
    }
    return -1;
}

static int
tt_capi_batch_set_count(tuntap_batch *b, Py_ssize_t count)
{
    PacketBatchObject *pb = tt_view_owner(b);
    Py_ssize_t i;
    if (count < 0 || count > pb->capacity) {
        return -EINVAL;
    }
    for (i = 0; i < count; i++) {
        if (pb->sizes[i] > (uint32_t)pb->slot_size) {
            return -EINVAL;
        }
    }
    pb->count = count;
    b->count = count;
    return 0;
}

/* .name = tt_capi_name for every function of the table, in its order. */
#define TT_CAPI_FN(name) .name = tt_capi_##name

static const tuntap_capi tt_capi_table = {
    .major = TUNTAP_CAPI_MAJOR, .minor = TUNTAP_CAPI_MINOR, .size = sizeof(tuntap_capi),
    TT_CAPI_FN(batch_view),
    TT_CAPI_FN(device_acquire),
    TT_CAPI_FN(device_release),
    TT_CAPI_FN(read_batch),
    TT_CAPI_FN(write_batch),
    TT_CAPI_FN(read),
    TT_CAPI_FN(write),
    TT_CAPI_FN(segment),
    TT_CAPI_FN(checksum),
    TT_CAPI_FN(header_size),
    TT_CAPI_FN(raise_error),
    TT_CAPI_FN(raise_segment_error),
    TT_CAPI_FN(batch_set_count),
};

int
tt_capi_add(PyObject *module)
{
    PyObject *capsule = PyCapsule_New((void *)&tt_capi_table, TUNTAP_CAPI_CAPSULE, NULL);
    if (capsule == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "_C_API", capsule) < 0) {
        Py_DECREF(capsule);
        return -1;
    }
    return 0;
}
