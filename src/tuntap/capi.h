/*
 * tuntap/capi.h: the C API of the tuntap package, for C, C++ and Cython extensions
 * that run their packet loop, I/O included, without the interpreter.
 *
 * Build with the directory tuntap.get_include() returns on the include path and
 * `#include <tuntap/capi.h>` (C99 or later, C++11 or later). Then, with the GIL held,
 * once per translation unit (the table pointer is `static`), typically in the module's
 * init or exec function:
 *
 *     if (import_tuntap() < 0) { return NULL; }   // ImportError on a version mismatch
 *
 * The table is exported as the capsule `tuntap._tuntap._C_API`. It starts with an
 * ABI major version, a minor version and its size; functions are only ever appended
 * (minor + 1), and a change to an existing function or to tuntap_batch bumps the
 * major. import_tuntap() accepts the installed table when its major equals the one
 * this header was built with and its minor and size are at least this header's.
 *
 * GIL rules, stated for each function below:
 *   "GIL held"  call with the GIL held; may raise (returns -1 / NULL with an exception).
 *   "no GIL"    uses no Python API: call it with or without the GIL (normally inside
 *               Py_BEGIN_ALLOW_THREADS / `with nogil:`); it never raises, it returns a
 *               code, and tuntap_raise_error() turns that code into the exception the
 *               Python API would raise.
 *
 * I/O codes: a count >= 0, or a negative errno (-EAGAIN nothing ready with timeout 0,
 * -ETIMEDOUT past the timeout, -EINTR a signal arrived: take the GIL and call
 * PyErr_CheckSignals(), then retry if it did not raise; -EIO the interface is down;
 * -EFAULT / -EBADFD the interface was deleted; any other errno from read()/write()),
 * or TUNTAP_ECLOSED when the device is closed, also when close() is called from another
 * thread while the call waits (it returns within microseconds).
 * Timeouts are in nanoseconds: -1 waits forever, 0 never waits, > 0 waits at most that
 * long for the first packet (one deadline). They ignore Device.settimeout().
 */
#ifndef TUNTAP_CAPI_H
#define TUNTAP_CAPI_H

#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TUNTAP_CAPI_MAJOR 1
#define TUNTAP_CAPI_MINOR 0
#define TUNTAP_CAPI_MODULE "tuntap._tuntap"
#define TUNTAP_CAPI_CAPSULE "tuntap._tuntap._C_API"

/* The device is closed (a code below every negative errno: Linux errnos are < 4096). */
#define TUNTAP_ECLOSED (-65536)

/* tuntap_segment() failures (negative), the reasons tuntap.segment() raises
 * ValueError for. */
#define TUNTAP_SEG_EHDRSIZE (-1)   /* vnet_hdr_size < 10 */
#define TUNTAP_SEG_ETOOSHORT (-2)  /* packet shorter than its vnet header, or empty */
#define TUNTAP_SEG_EGSOTYPE (-3)   /* gso_type not NONE, TCPV4, TCPV6 or UDP_L4 */
#define TUNTAP_SEG_EGSOSIZE (-4)   /* a GSO packet with gso_size 0 */
#define TUNTAP_SEG_EIPHDR (-5)     /* IP header malformed, truncated or a fragment */
#define TUNTAP_SEG_EL4HDR (-6)     /* TCP/UDP header malformed or not the gso_type's */
#define TUNTAP_SEG_ECSUM (-7)      /* NEEDS_CSUM offsets outside the packet */
#define TUNTAP_SEG_ECAPACITY (-8)  /* more segments than the batch has slots */
#define TUNTAP_SEG_ESLOT (-9)      /* a segment longer than slot_size */
#define TUNTAP_SEG_ELAYOUT (-10)   /* the batch view's stride < headroom + slot_size */
#define TUNTAP_SEG_ETOOBIG (-11)   /* a segment would exceed 65535 bytes of IP length */
#define TUNTAP_SEG_EOVERLAP (-100) /* the packet lies inside the destination batch */

/* A device acquired for nogil I/O (opaque; a strong reference to a tuntap.Device). */
typedef struct tuntap_device tuntap_device;

/* A borrowed view of a tuntap.PacketBatch, filled by tuntap_batch_view(). Valid as
 * long as the caller keeps a reference to the batch. Packet i (i < count) starts at
 * tuntap_packet(b, i) and is sizes[i] bytes long; each slot has `headroom` free bytes
 * before it. While a function below works on a batch, no other thread may use it. */
typedef struct tuntap_batch {
    char *arena;          /* capacity * stride bytes */
    uint32_t *sizes;      /* capacity packet lengths */
    Py_ssize_t capacity;  /* number of slots */
    Py_ssize_t slot_size; /* the longest packet a slot holds */
    Py_ssize_t stride;    /* bytes from one slot to the next: headroom + slot_size */
    Py_ssize_t headroom;  /* free bytes before each packet */
    Py_ssize_t count;     /* packets held; read_batch and segment set it (and len(batch)) */
    void *owner;          /* the PacketBatch object (borrowed) */
} tuntap_batch;

typedef struct tuntap_capi {
    /* -- header (never changes place) */
    int major;
    int minor;
    size_t size; /* sizeof(tuntap_capi) of the installed tuntap */

    /* -- 1.0 */
    /* GIL held. Fill *out from a tuntap.PacketBatch. 0, or -1 with TypeError. */
    int (*batch_view)(PyObject *batch, tuntap_batch *out);
    /* GIL held. Take a tuntap.Device (or subclass) for nogil I/O: a new reference,
     * and the wake-up eventfd that lets close() end a nogil wait. NULL with
     * TypeError, ValueError("I/O operation on closed device") or OSError. */
    tuntap_device *(*device_acquire)(PyObject *device);
    /* GIL held. Drop what device_acquire took (the device stays open). NULL is ok. */
    void (*device_release)(tuntap_device *dev);
    /* No GIL. Replace the batch's contents with up to capacity packets: wait up to
     * timeout_ns for the first, then take what is queued without waiting. Each packet
     * is truncated to slot_size. Sets b->count and the batch's len. The count, or a
     * negative I/O code (-EINVAL: slot_size not larger than the packet header). */
    Py_ssize_t (*read_batch)(tuntap_device *dev, tuntap_batch *b, int64_t timeout_ns);
    /* No GIL. Write packets first .. first+count-1 of the batch, waiting up to
     * timeout_ns while the device cannot take more. Returns how many were written; if
     * a later write fails, the count so far (like send()); if the first fails, its
     * negative I/O code. -EINVAL (nothing written) for a range outside the batch, a
     * first packet of size 0 or any size > slot_size; a later size 0 ends the run. */
    Py_ssize_t (*write_batch)(tuntap_device *dev, const tuntap_batch *b, Py_ssize_t first,
                              Py_ssize_t count, int64_t timeout_ns);
    /* No GIL. One packet into buf (truncated to len), or out of buf. Bytes moved, or a
     * negative I/O code (-EINVAL: len 0, or a read buffer not larger than the header). */
    Py_ssize_t (*read)(tuntap_device *dev, void *buf, size_t len, int64_t timeout_ns);
    Py_ssize_t (*write)(tuntap_device *dev, const void *buf, size_t len, int64_t timeout_ns);
    /* No GIL. tuntap.segment(): split one packet read from a VNET_HDR device (starting
     * with a vnet_hdr_size-byte virtio-net header) into the IP packets it stands for,
     * written into `out` (b->count and the batch's len set). The count, or a negative
     * TUNTAP_SEG_E* code (the batch is then untouched). */
    Py_ssize_t (*segment)(const void *packet, size_t len, size_t vnet_hdr_size,
                          tuntap_batch *out);
    /* No GIL. tuntap.checksum(): the RFC 1071 Internet checksum of data, host order
     * (store it big-endian). */
    uint16_t (*checksum)(const void *data, size_t len);
    /* No GIL. Bytes before the IP packet in every packet read or written: packet info
     * (4) plus the vnet header (10 or 12), or 0. */
    int (*header_size)(tuntap_device *dev);
    /* GIL held. Raise what the Python API raises for an I/O code `code` (< 0) that
     * read_batch/write_batch/read/write returned: ValueError for TUNTAP_ECLOSED,
     * TimeoutError, BlockingIOError, the signal handler's exception or InterruptedError
     * for -EINTR, the errno's OSError subclass naming the device and `syscall` (e.g.
     * "read()"). `dev` is the (acquired) device the call was made on. Always -1. */
    int (*raise_error)(tuntap_device *dev, Py_ssize_t code, const char *syscall);
    /* GIL held. ValueError("segment(): <reason>") for a TUNTAP_SEG_E* code, as
     * tuntap.segment() raises. Always -1. */
    int (*raise_segment_error)(Py_ssize_t code);
    /* No GIL. Make count packets (sizes[0 .. count-1]) the batch's contents, for
     * Python (len(batch), batch[i], write_batch) and for b->count: after packets were
     * dropped or built in place. 0, or -EINVAL (count outside 0 .. capacity, or a size
     * > slot_size; nothing changed). */
    int (*batch_set_count)(tuntap_batch *b, Py_ssize_t count);
    /* Future versions append here (e.g. GRO coalesce). */
} tuntap_capi;

/* The table, set by import_tuntap() (one per translation unit). */
static const tuntap_capi *tuntap_api = NULL;

/* GIL held. Import tuntap's C API. 0, or -1 with ImportError (version mismatch,
 * naming both versions) or the import's own error. It imports the module by its full
 * name and takes the attribute, so it does not rely on `tuntap._tuntap` being bound in
 * the package (PyCapsule_Import() would). */
static inline int
import_tuntap(void)
{
    PyObject *mod, *capsule;
    const tuntap_capi *api;

    mod = PyImport_ImportModule(TUNTAP_CAPI_MODULE);
    if (mod == NULL) {
        return -1;
    }
    capsule = PyObject_GetAttrString(mod, "_C_API");
    Py_DECREF(mod);
    if (capsule == NULL) {
        return -1;
    }
    api = (const tuntap_capi *)PyCapsule_GetPointer(capsule, TUNTAP_CAPI_CAPSULE);
    Py_DECREF(capsule); /* the module keeps it; the table itself is static */
    if (api == NULL) {
        return -1;
    }
    if (api->major != TUNTAP_CAPI_MAJOR || api->minor < TUNTAP_CAPI_MINOR ||
        api->size < sizeof(tuntap_capi)) {
        PyErr_Format(PyExc_ImportError,
                     "tuntap C API version mismatch: this module was built against "
                     "tuntap C API %d.%d (table of %zu bytes) but the installed tuntap "
                     "provides %d.%d (table of %zu bytes); rebuild it against the "
                     "installed tuntap",
                     TUNTAP_CAPI_MAJOR, TUNTAP_CAPI_MINOR, sizeof(tuntap_capi), api->major,
                     api->minor, api->size);
        return -1;
    }
    tuntap_api = api;
    return 0;
}

/* No GIL. Packet i of a batch view (after the slot's headroom). */
static inline char *
tuntap_packet(const tuntap_batch *b, Py_ssize_t i)
{
    return b->arena + i * b->stride + b->headroom;
}

/* The functions, by name (each needs import_tuntap() to have succeeded). */
static inline int
tuntap_batch_view(PyObject *batch, tuntap_batch *out)
{
    return tuntap_api->batch_view(batch, out);
}
static inline tuntap_device *
tuntap_device_acquire(PyObject *device)
{
    return tuntap_api->device_acquire(device);
}
static inline void
tuntap_device_release(tuntap_device *dev)
{
    tuntap_api->device_release(dev);
}
static inline Py_ssize_t
tuntap_read_batch(tuntap_device *dev, tuntap_batch *b, int64_t timeout_ns)
{
    return tuntap_api->read_batch(dev, b, timeout_ns);
}
static inline Py_ssize_t
tuntap_write_batch(tuntap_device *dev, const tuntap_batch *b, Py_ssize_t first,
                   Py_ssize_t count, int64_t timeout_ns)
{
    return tuntap_api->write_batch(dev, b, first, count, timeout_ns);
}
static inline Py_ssize_t
tuntap_read(tuntap_device *dev, void *buf, size_t len, int64_t timeout_ns)
{
    return tuntap_api->read(dev, buf, len, timeout_ns);
}
static inline Py_ssize_t
tuntap_write(tuntap_device *dev, const void *buf, size_t len, int64_t timeout_ns)
{
    return tuntap_api->write(dev, buf, len, timeout_ns);
}
static inline Py_ssize_t
tuntap_segment(const void *packet, size_t len, size_t vnet_hdr_size, tuntap_batch *out)
{
    return tuntap_api->segment(packet, len, vnet_hdr_size, out);
}
static inline uint16_t
tuntap_checksum(const void *data, size_t len)
{
    return tuntap_api->checksum(data, len);
}
static inline int
tuntap_header_size(tuntap_device *dev)
{
    return tuntap_api->header_size(dev);
}
static inline int
tuntap_raise_error(tuntap_device *dev, Py_ssize_t code, const char *syscall)
{
    return tuntap_api->raise_error(dev, code, syscall);
}
static inline int
tuntap_raise_segment_error(Py_ssize_t code)
{
    return tuntap_api->raise_segment_error(code);
}
static inline int
tuntap_batch_set_count(tuntap_batch *b, Py_ssize_t count)
{
    return tuntap_api->batch_set_count(b, count);
}

#ifdef __cplusplus
}
#endif

#endif /* TUNTAP_CAPI_H */
