/*
 * packet.c: the module functions over packet bytes: segment() (GSO, gso.c),
 * coalesce() (GRO, gro.c) and checksum() (csum.h). Argument checks and the GIL
 * decision live here; the work is pure C.
 */
#include "_tuntap.h"

#include <string.h>

#include "csum.h"
#include "gro.h"
#include "gso.h"

/* Run `stmt` with the GIL released when `nogil` (large inputs), else with it held
 * (a release costs more than a small packet's work). `stmt` uses no Python API. */
#define TT_MAYBE_NOGIL(nogil, stmt)                                                 \
    do {                                                                            \
        if (nogil) {                                                                \
            Py_BEGIN_ALLOW_THREADS                                                  \
            stmt;                                                                   \
            Py_END_ALLOW_THREADS                                                    \
        }                                                                           \
        else {                                                                      \
            stmt;                                                                   \
        }                                                                           \
    } while (0)

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
    TT_MAYBE_NOGIL(pkt.len >= TT_SEGMENT_NOGIL_MIN,
                   n = tt_segment_core(pkt.buf, (size_t)pkt.len, (size_t)hdr,
                                       (uint8_t *)b->arena, (size_t)b->capacity,
                                       (size_t)b->stride, (size_t)b->headroom,
                                       (size_t)b->slot_size, b->sizes, &err));
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


/* -- coalesce() ------------------------------------------------------------ */

int
tt_pktlist_get(PyObject *obj, PyTypeObject *batch_type, tt_pktlist *pl, const char *fname)
{
    Py_ssize_t n, i;
    size_t scratch;

    memset(pl, 0, sizeof(*pl));
    if (Py_TYPE(obj) == batch_type) {
        PacketBatchObject *b = (PacketBatchObject *)obj;
        n = b->count;
    }
    else {
        if (PyObject_CheckBuffer(obj) || PyUnicode_Check(obj)) {
            tt_type_error(obj, "%s() takes a PacketBatch or a sequence of packets", fname);
            return -1;
        }
        pl->seq = PySequence_Fast(obj, "packets must be a PacketBatch or a sequence of "
                                       "bytes-like objects");
        if (pl->seq == NULL) {
            return -1;
        }
        n = TT_SEQ_SIZE(pl->seq);
    }
    scratch = tt_gro_scratch_size((size_t)n);
    if (scratch == 0 || (size_t)n > (SIZE_MAX - scratch) / (sizeof(tt_gro_pkt) + sizeof(Py_buffer))) {
        PyErr_SetString(PyExc_OverflowError, "too many packets");
        goto error;
    }
    /* One block: the gro scratch (8-aligned) first, then pkts, then views. */
    pl->mem = PyMem_Malloc(scratch + (size_t)n * (sizeof(tt_gro_pkt) + sizeof(Py_buffer)) + 1);
    if (pl->mem == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    pl->scratch = pl->mem;
    pl->pkts = (tt_gro_pkt *)(void *)((char *)pl->mem + scratch);
    pl->n = n;
    if (pl->seq == NULL) {
        PacketBatchObject *b = (PacketBatchObject *)obj;
        for (i = 0; i < n; i++) {
            pl->pkts[i].data = (const uint8_t *)tt_batch_slot(b, i);
            pl->pkts[i].len = b->sizes[i];
            pl->total += b->sizes[i];
        }
        return 0;
    }
    pl->views = (Py_buffer *)(void *)(pl->pkts + n);
    for (i = 0; i < n; i++) {
        PyObject *item = TT_SEQ_ITEM(pl->seq, i);
        if (!PyObject_CheckBuffer(item)) {
            tt_type_error(item, "%s() item %zd must be a bytes-like object", fname, i);
            goto error;
        }
        if (PyObject_GetBuffer(item, &pl->views[i], PyBUF_SIMPLE) < 0) {
            goto error;
        }
        pl->nviews++;
        pl->pkts[i].data = pl->views[i].buf;
        pl->pkts[i].len = (size_t)pl->views[i].len;
        pl->total += (size_t)pl->views[i].len;
    }
    return 0;

error:
    tt_pktlist_release(pl);
    return -1;
}

void
tt_pktlist_release(tt_pktlist *pl)
{
    for (Py_ssize_t i = 0; i < pl->nviews; i++) {
        PyBuffer_Release(&pl->views[i]);
    }
    PyMem_Free(pl->mem);
    Py_CLEAR(pl->seq);
    pl->mem = NULL;
    pl->nviews = 0;
}

TT_DOC(tt_coalesce__doc__,
"coalesce($module, packets, out, /, *, vnet_hdr_size=10, udp=False,\n"
"         max_size=65535, max_segments=64)\n--\n\n"
"Merge consecutive TCP segments (and, with udp=True, UDP datagrams) of each flow\n"
"into virtio-net super-packets for a VNET_HDR device: the write-side GRO.\n\n"
"packets is a PacketBatch or a sequence of bytes-like objects, each one plain IP\n"
"packet (no header). out receives one slot per output packet, each starting with a\n"
"virtio-net header of vnet_hdr_size bytes: a merge gets NEEDS_CSUM, gso_type\n"
"TCPV4/TCPV6/UDP_L4, gso_size, hdr_len, csum_start/csum_offset, the pseudo-header\n"
"checksum in place and its IP lengths and IPv4 header checksum recomputed; a\n"
"packet that merges with nothing is copied unchanged after an all-zero header.\n"
"Outputs keep the order of the first packet each contains. A merge holds at most\n"
"max_size bytes of IP packet (and fits an out slot) and max_segments packets.\n"
"Returns the number of output packets.\n\n"
"Raises ValueError for an empty packet, a bad argument, an out batch too small for\n"
"the result (out is then left untouched) or a packet that lies inside out.");

/* The GIL is released when the packets hold at least this many bytes. */
#define TT_COALESCE_NOGIL_MIN 16384

PyObject *
tt_coalesce(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "", "vnet_hdr_size", "udp", "max_size", "max_segments",
                             NULL};
    tt_state *st = tt_get_state(module);
    PyObject *src, *obj;
    Py_ssize_t hdr = TT_VNET_MIN, max_size = TT_GRO_MAX_SIZE,
               max_segs = TT_GRO_DEFAULT_SEGMENTS, n, i;
    int udp = 0, err = 0;
    tt_pktlist pl;
    tt_gro_plan plan;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!|$npnn:coalesce", kwlist, &src,
                                     st->PacketBatchType, &obj, &hdr, &udp, &max_size,
                                     &max_segs)) {
        return NULL;
    }
    PacketBatchObject *b = (PacketBatchObject *)obj;
    if (hdr < TT_VNET_MIN || hdr > TT_GRO_VNET_MAX) {
        PyErr_Format(PyExc_ValueError, "vnet_hdr_size must be between %d and %d, not %zd",
                     TT_VNET_MIN, TT_GRO_VNET_MAX, hdr);
        return NULL;
    }
    if (max_size < 1 || max_size > TT_GRO_MAX_SIZE) {
        PyErr_Format(PyExc_ValueError, "max_size must be between 1 and %d, not %zd",
                     TT_GRO_MAX_SIZE, max_size);
        return NULL;
    }
    if (max_segs < 1 || max_segs > TT_GRO_MAX_SIZE) {
        PyErr_Format(PyExc_ValueError, "max_segments must be between 1 and %d, not %zd",
                     TT_GRO_MAX_SIZE, max_segs);
        return NULL;
    }
    if (src == obj) {
        PyErr_SetString(PyExc_ValueError,
                        "coalesce(): the packets lie inside the destination batch");
        return NULL;
    }
    if (tt_pktlist_get(src, st->PacketBatchType, &pl, "coalesce") < 0) {
        return NULL;
    }
    const char *lo = b->arena, *hi = b->arena + b->capacity * b->stride;
    for (i = 0; i < pl.n; i++) {
        const char *p = (const char *)pl.pkts[i].data;
        if (pl.pkts[i].len && p < hi && lo < p + pl.pkts[i].len) {
            PyErr_Format(PyExc_ValueError,
                         "coalesce(): packet %zd lies inside the destination batch", i);
            goto error;
        }
    }
    unsigned kinds = TT_GRO_TCP | (udp ? TT_GRO_UDP : 0);
#define TT_COALESCE_CALL()                                                               \
    tt_coalesce_core(pl.pkts, (size_t)pl.n, kinds, (size_t)max_size, (size_t)max_segs,    \
                     (size_t)hdr, (uint8_t *)b->arena, (size_t)b->capacity,               \
                     (size_t)b->stride, (size_t)b->headroom, (size_t)b->slot_size,        \
                     b->sizes, pl.scratch, &plan, &err)
    TT_MAYBE_NOGIL(pl.total >= TT_COALESCE_NOGIL_MIN, n = TT_COALESCE_CALL());
#undef TT_COALESCE_CALL
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "coalesce(): %s", tt_gro_strerror(err));
        goto error;
    }
    b->count = n;
    tt_pktlist_release(&pl);
    return PyLong_FromSsize_t(n);

error:
    tt_pktlist_release(&pl);
    return NULL;
}
