/*
 * packet.c: the module functions over packet bytes: segment() (GSO, gso.c) and
 * checksum() (csum.h). Argument checks and the GIL decision live here; the work
 * is pure C.
 */
#include "_tuntap.h"

#include "csum.h"
#include "gso.h"

TT_DOC(tt_segment__doc__,
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

PyObject *
tt_segment(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "", "vnet_hdr_size", NULL};
    tt_state *st = tt_get_state(module);
    Py_buffer pkt;
    PyObject *obj;
    Py_ssize_t hdr = TT_VNET_MIN, n;
    int err = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*O!|$n:segment", kwlist, &pkt,
                                     st->PacketBatchType, &obj, &hdr)) {
        return NULL;
    }
    PacketBatchObject *b = (PacketBatchObject *)obj;
    const char *p = pkt.buf, *a = b->arena;
    if (hdr < TT_VNET_MIN) {
        PyErr_Format(PyExc_ValueError, "vnet_hdr_size must be at least %d, not %zd",
                     TT_VNET_MIN, hdr);
        goto error;
    }
    if (hdr > TT_VNET_HDR_MAX) {
        PyErr_Format(PyExc_ValueError, "vnet_hdr_size must be at most %d, not %zd",
                     TT_VNET_HDR_MAX, hdr);
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

TT_DOC(tt_checksum__doc__,
"checksum($module, data, /)\n--\n\n"
"The Internet checksum of data (RFC 1071): the ones' complement of the ones'\n"
"complement sum of its 16-bit big-endian words, an odd last byte padded with a\n"
"zero. Store it with struct.pack('!H', value); data that already holds a correct\n"
"checksum gives 0. For TCP/UDP, pass the pseudo-header followed by the segment.");

PyObject *
tt_checksum(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer view;
    uint16_t c;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    c = tt_checksum_be(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromLong(c);
}

