/*
 * tuntap_capi_demo: a C-only extension over tuntap's C API (tuntap/capi.h).
 *
 * It binds each function of the table thinly, returning the raw codes the C API
 * gives (so Python can see them; tests/test_capi.py drives it), and forward(): a
 * complete nogil forwarding loop (read a batch, decrement every IPv4 TTL and fix the
 * header checksum, write the batch out) that turns a failure into the exception the
 * Python API raises. It compiles as C99 and as C++17:
 *
 *   cc  -std=c99   -Wall -Wextra -Werror -fPIC -shared \
 *       -I"$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
 *       -I"$(python -c 'import tuntap; print(tuntap.get_include())')" \
 *       tuntap_capi_demo.c -o tuntap_capi_demo$(python3-config --extension-suffix)
 *   c++ -std=c++17 -x c++ ... (the same)
 */
#include <tuntap/capi.h>

#include <errno.h>
#include <string.h>

/* -- argument helpers ---------------------------------------------------------- */

/* Parse (device, batch) into an acquired device and a batch view. */
static tuntap_device *
demo_dev_batch(PyObject *dev_obj, PyObject *batch_obj, tuntap_batch *b)
{
    if (tuntap_batch_view(batch_obj, b) < 0) {
        return NULL;
    }
    return tuntap_device_acquire(dev_obj);
}

static int
demo_timeout(PyObject *obj, int64_t *out)
{
    long long t = PyLong_AsLongLong(obj);
    if (t == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = (int64_t)t;
    return 0;
}

/* -- thin bindings: raw codes ---------------------------------------------------- */

static PyObject *
demo_read_batch(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    tuntap_batch b;
    tuntap_device *dev;
    int64_t timeout;
    Py_ssize_t n;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "read_batch(device, batch, timeout_ns)");
        return NULL;
    }
    if (demo_timeout(args[2], &timeout) < 0 ||
        (dev = demo_dev_batch(args[0], args[1], &b)) == NULL) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    n = tuntap_read_batch(dev, &b, timeout);
    Py_END_ALLOW_THREADS
    tuntap_device_release(dev);
    return PyLong_FromSsize_t(n);
}

static PyObject *
demo_write_batch(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    tuntap_batch b;
    tuntap_device *dev;
    int64_t timeout;
    Py_ssize_t first, count, n;

    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "write_batch(device, batch, first, count, timeout_ns)");
        return NULL;
    }
    first = PyLong_AsSsize_t(args[2]);
    count = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred() || demo_timeout(args[4], &timeout) < 0 ||
        (dev = demo_dev_batch(args[0], args[1], &b)) == NULL) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    n = tuntap_write_batch(dev, &b, first, count, timeout);
    Py_END_ALLOW_THREADS
    tuntap_device_release(dev);
    return PyLong_FromSsize_t(n);
}

/* read(device, size, timeout_ns) -> bytes, or the negative code as an int. */
static PyObject *
demo_read(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    tuntap_device *dev;
    int64_t timeout;
    Py_ssize_t size, n;
    char *buf;
    PyObject *res;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "read(device, size, timeout_ns)");
        return NULL;
    }
    size = PyLong_AsSsize_t(args[1]);
    if ((size == -1 && PyErr_Occurred()) || demo_timeout(args[2], &timeout) < 0) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    buf = (char *)PyMem_Malloc(size > 0 ? (size_t)size : 1);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    dev = tuntap_device_acquire(args[0]);
    if (dev == NULL) {
        PyMem_Free(buf);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    n = tuntap_read(dev, buf, (size_t)size, timeout);
    Py_END_ALLOW_THREADS
    tuntap_device_release(dev);
    res = n >= 0 ? PyBytes_FromStringAndSize(buf, n) : PyLong_FromSsize_t(n);
    PyMem_Free(buf);
    return res;
}

static PyObject *
demo_write(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    tuntap_device *dev;
    int64_t timeout;
    Py_buffer view;
    Py_ssize_t n;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "write(device, data, timeout_ns)");
        return NULL;
    }
    if (demo_timeout(args[2], &timeout) < 0 ||
        PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    dev = tuntap_device_acquire(args[0]);
    if (dev == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    n = tuntap_write(dev, view.buf, (size_t)view.len, timeout);
    Py_END_ALLOW_THREADS
    tuntap_device_release(dev);
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(n);
}

/* segment(packet, batch, vnet_hdr_size) -> count or negative TUNTAP_SEG_E* code. */
static PyObject *
demo_segment(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    tuntap_batch b;
    Py_buffer view;
    Py_ssize_t hdr, n;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "segment(packet, batch, vnet_hdr_size)");
        return NULL;
    }
    hdr = PyLong_AsSsize_t(args[2]);
    if ((hdr == -1 && PyErr_Occurred()) || tuntap_batch_view(args[1], &b) < 0 ||
        PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    n = tuntap_segment(view.buf, (size_t)view.len, (size_t)hdr, &b);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(n);
}

static PyObject *
demo_checksum(PyObject *Py_UNUSED(m), PyObject *arg)
{
    Py_buffer view;
    uint16_t c;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    c = tuntap_checksum(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromLong(c);
}

static PyObject *
demo_header_size(PyObject *Py_UNUSED(m), PyObject *arg)
{
    tuntap_device *dev = tuntap_device_acquire(arg);
    int n;
    if (dev == NULL) {
        return NULL;
    }
    n = tuntap_header_size(dev);
    tuntap_device_release(dev);
    return PyLong_FromLong(n);
}

/* batch_view(batch) -> dict of the view's fields (arena as an address). */
static PyObject *
demo_batch_view(PyObject *Py_UNUSED(m), PyObject *arg)
{
    tuntap_batch b;
    if (tuntap_batch_view(arg, &b) < 0) {
        return NULL;
    }
    return Py_BuildValue("{s:K,s:K,s:n,s:n,s:n,s:n,s:n,s:O}", "arena",
                         (unsigned long long)(uintptr_t)b.arena, "sizes",
                         (unsigned long long)(uintptr_t)b.sizes, "capacity", b.capacity,
                         "slot_size", b.slot_size, "stride", b.stride, "headroom",
                         b.headroom, "count", b.count, "owner", (PyObject *)b.owner);
}

static PyObject *
demo_batch_set_count(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    tuntap_batch b;
    Py_ssize_t count;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "batch_set_count(batch, count)");
        return NULL;
    }
    count = PyLong_AsSsize_t(args[1]);
    if ((count == -1 && PyErr_Occurred()) || tuntap_batch_view(args[0], &b) < 0) {
        return NULL;
    }
    return PyLong_FromLong(tuntap_batch_set_count(&b, count));
}

/* raise_error(device, code, syscall): raise what the Python API raises. */
static PyObject *
demo_raise_error(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    tuntap_device *dev;
    Py_ssize_t code;
    const char *syscall;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "raise_error(device, code, syscall)");
        return NULL;
    }
    code = PyLong_AsSsize_t(args[1]);
    syscall = PyUnicode_AsUTF8(args[2]);
    if ((code == -1 && PyErr_Occurred()) || syscall == NULL ||
        (dev = tuntap_device_acquire(args[0])) == NULL) {
        return NULL;
    }
    tuntap_raise_error(dev, code, syscall);
    tuntap_device_release(dev);
    return NULL;
}

static PyObject *
demo_raise_segment_error(PyObject *Py_UNUSED(m), PyObject *arg)
{
    Py_ssize_t code = PyLong_AsSsize_t(arg);
    if (code == -1 && PyErr_Occurred()) {
        return NULL;
    }
    tuntap_raise_segment_error(code);
    return NULL;
}

/* -- a complete loop ------------------------------------------------------------- */

/* Decrement the TTL of the IPv4 packet p[0..n) and recompute its header checksum.
 * 0 when it must be dropped instead (not IPv4, truncated, TTL 0 or 1). */
static int
demo_rewrite(unsigned char *p, size_t n)
{
    size_t ihl;
    uint16_t sum;

    if (n < 20 || (p[0] >> 4) != 4) {
        return 0;
    }
    ihl = (size_t)(p[0] & 15) * 4;
    if (ihl < 20 || ihl > n || p[8] <= 1) {
        return 0;
    }
    p[8]--;
    p[10] = p[11] = 0;
    sum = tuntap_checksum(p, ihl);
    p[10] = (unsigned char)(sum >> 8);
    p[11] = (unsigned char)sum;
    return 1;
}

/* Rewrite every packet of b (after `hdr` bytes of packet info / vnet header), moving
 * the kept ones down over the dropped ones. Returns how many are kept. */
static Py_ssize_t
demo_rewrite_batch(tuntap_batch *b, Py_ssize_t n, int hdr)
{
    Py_ssize_t i, kept = 0;
    for (i = 0; i < n; i++) {
        char *p = tuntap_packet(b, i);
        if (b->sizes[i] > (uint32_t)hdr &&
            demo_rewrite((unsigned char *)p + hdr, b->sizes[i] - (uint32_t)hdr)) {
            if (kept != i) {
                memcpy(tuntap_packet(b, kept), p, b->sizes[i]);
                b->sizes[kept] = b->sizes[i];
            }
            kept++;
        }
    }
    return kept;
}

/* forward(src, dst, batch, max_packets, timeout_ns) -> (forwarded, dropped).
 * Until max_packets were read (< 0: no limit), src is closed (by another thread),
 * or nothing arrives for timeout_ns; any other failure raises. */
static PyObject *
demo_forward(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    tuntap_batch b;
    tuntap_device *src = NULL, *dst = NULL;
    Py_ssize_t limit, fwd = 0, dropped = 0, code = 0;
    int64_t timeout;
    const char *where = "read()";
    tuntap_device *failed = NULL;
    int hdr;

    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "forward(src, dst, batch, max_packets, timeout_ns)");
        return NULL;
    }
    limit = PyLong_AsSsize_t(args[3]);
    if ((limit == -1 && PyErr_Occurred()) || demo_timeout(args[4], &timeout) < 0 ||
        (src = demo_dev_batch(args[0], args[2], &b)) == NULL) {
        return NULL;
    }
    dst = tuntap_device_acquire(args[1]);
    if (dst == NULL) {
        tuntap_device_release(src);
        return NULL;
    }
    hdr = tuntap_header_size(src);
    if (hdr != tuntap_header_size(dst)) {
        PyErr_SetString(PyExc_ValueError, "forward(): src and dst differ in packet headers");
        goto done;
    }
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        while (limit < 0 || fwd + dropped < limit) {
            Py_ssize_t n = tuntap_read_batch(src, &b, timeout), kept, off = 0;
            if (n < 0) {
                code = n;
                failed = src;
                where = "read()";
                break;
            }
            kept = demo_rewrite_batch(&b, n, hdr);
            dropped += n - kept;
            while (off < kept) {
                Py_ssize_t w = tuntap_write_batch(dst, &b, off, kept - off, timeout);
                if (w < 0) {
                    code = w;
                    break;
                }
                off += w;
            }
            fwd += off;
            if (code < 0) {
                dropped += kept - off;
                failed = dst;
                where = "write()";
                break;
            }
        }
        Py_END_ALLOW_THREADS
        if (code == -EINTR && PyErr_CheckSignals() == 0) {
            code = 0; /* no handler raised: carry on */
            continue;
        }
        break;
    }
    if (code == -EINTR) {
        goto done; /* the handler's exception */
    }
    if (code < 0 && !(failed == src && (code == TUNTAP_ECLOSED || code == -ETIMEDOUT))) {
        tuntap_raise_error(failed, code, where);
    }

done:
    tuntap_device_release(src);
    tuntap_device_release(dst);
    if (PyErr_Occurred()) {
        return NULL;
    }
    return Py_BuildValue("nn", fwd, dropped);
}

/* -- the module ------------------------------------------------------------------- */

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

static PyMethodDef demo_methods[] = {
    {"read_batch", FASTCALL(demo_read_batch), "read_batch(device, batch, timeout_ns) -> code"},
    {"write_batch", FASTCALL(demo_write_batch),
     "write_batch(device, batch, first, count, timeout_ns) -> code"},
    {"read", FASTCALL(demo_read), "read(device, size, timeout_ns) -> bytes or code"},
    {"write", FASTCALL(demo_write), "write(device, data, timeout_ns) -> code"},
    {"segment", FASTCALL(demo_segment), "segment(packet, batch, vnet_hdr_size) -> code"},
    {"checksum", demo_checksum, METH_O, "checksum(data) -> int"},
    {"header_size", demo_header_size, METH_O, "header_size(device) -> int"},
    {"batch_view", demo_batch_view, METH_O, "batch_view(batch) -> dict"},
    {"batch_set_count", FASTCALL(demo_batch_set_count), "batch_set_count(batch, n) -> code"},
    {"raise_error", FASTCALL(demo_raise_error), "raise_error(device, code, syscall)"},
    {"raise_segment_error", demo_raise_segment_error, METH_O, "raise_segment_error(code)"},
    {"forward", FASTCALL(demo_forward),
     "forward(src, dst, batch, max_packets, timeout_ns) -> (forwarded, dropped)"},
    {NULL, NULL, 0, NULL},
};

static int
demo_exec(PyObject *m)
{
    if (import_tuntap() < 0) {
        return -1;
    }
    if (PyModule_AddIntConstant(m, "CAPI_MAJOR", TUNTAP_CAPI_MAJOR) < 0 ||
        PyModule_AddIntConstant(m, "CAPI_MINOR", TUNTAP_CAPI_MINOR) < 0 ||
        PyModule_AddIntConstant(m, "TABLE_SIZE", (long)sizeof(tuntap_capi)) < 0 ||
        PyModule_AddIntConstant(m, "ECLOSED", TUNTAP_ECLOSED) < 0 ||
        PyModule_AddIntConstant(m, "SEG_EOVERLAP", TUNTAP_SEG_EOVERLAP) < 0 ||
        PyModule_AddIntConstant(m, "SEG_ECAPACITY", TUNTAP_SEG_ECAPACITY) < 0 ||
        PyModule_AddIntConstant(m, "SEG_EIPHDR", TUNTAP_SEG_EIPHDR) < 0) {
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot demo_slots[] = {
    {Py_mod_exec, (void *)demo_exec},
    {0, NULL},
};

static struct PyModuleDef demo_module = {
    PyModuleDef_HEAD_INIT,
    "tuntap_capi_demo",
    "A C-only extension over tuntap's C API (tuntap/capi.h).",
    0,
    demo_methods,
    demo_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit_tuntap_capi_demo(void)
{
    return PyModuleDef_Init(&demo_module);
}
