# cython: boundscheck=False, wraparound=False, cdivision=True
"""An IPv4 forwarder between two tuntap devices, written in Cython over tuntap's C API.

Every packet read from ``src`` gets its TTL decremented and its IPv4 header checksum
recomputed, then goes out of ``dst``; packets that are not IPv4, are truncated or whose
TTL would reach 0 are dropped. The loop (read a batch, rewrite every packet, write the
batch) runs without the GIL, so several forwarders on the queues of a multi-queue
device run in parallel::

    import tuntap, ttl_forward
    batch = tuntap.PacketBatch(64, 2048)
    forwarded, dropped = ttl_forward.forward(src, dst, batch)   # until src is closed

Build: ``pip install --no-build-isolation .`` in this directory (see pyproject.toml).
"""

from libc.errno cimport EINTR, ETIMEDOUT
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy
from cpython.exc cimport PyErr_CheckSignals

from tuntap cimport capi

capi.import_tuntap()


cdef inline bint rewrite_one(uint8_t *p, uint32_t n) noexcept nogil:
    """Decrement the TTL of the IPv4 packet p[:n] and recompute its header checksum
    (capi.checksum: tuntap.checksum's C code). False when the packet must be dropped."""
    cdef uint32_t ihl
    cdef uint16_t c
    if n < 20 or (p[0] >> 4) != 4:
        return False
    ihl = (p[0] & 15) * 4
    if ihl < 20 or ihl > n or p[8] <= 1:
        return False
    p[8] -= 1
    p[10] = 0
    p[11] = 0
    c = capi.checksum(p, ihl)
    p[10] = <uint8_t>(c >> 8)
    p[11] = <uint8_t>c
    return True


cdef Py_ssize_t rewrite_batch(capi.tuntap_batch *b, Py_ssize_t n, int hdr) noexcept nogil:
    """Rewrite packets 0..n-1 (after `hdr` bytes of packet header), moving the kept ones
    down over the dropped ones. Returns how many are kept."""
    cdef Py_ssize_t i, kept = 0
    cdef char *p
    for i in range(n):
        p = capi.packet(b, i)
        if b.sizes[i] > <uint32_t>hdr and rewrite_one(<uint8_t *>p + hdr, b.sizes[i] - hdr):
            if kept != i:
                memcpy(capi.packet(b, kept), p, b.sizes[i])
                b.sizes[kept] = b.sizes[i]
            kept += 1
    return kept


cdef Py_ssize_t run(capi.tuntap_device *src, capi.tuntap_device *dst, capi.tuntap_batch *b,
                    int hdr, Py_ssize_t limit, int64_t timeout, Py_ssize_t *counts,
                    bint *on_write) noexcept nogil:
    """The loop: 0 once `limit` packets were read (limit < 0: never), else the code that
    stopped it. counts[0] += forwarded, counts[1] += dropped."""
    cdef Py_ssize_t n, kept, off, w
    while limit < 0 or counts[0] + counts[1] < limit:
        n = capi.read_batch(src, b, timeout)
        if n < 0:
            on_write[0] = False
            return n
        kept = rewrite_batch(b, n, hdr)
        counts[1] += n - kept
        off = 0
        while off < kept:
            w = capi.write_batch(dst, b, off, kept - off, timeout)
            if w < 0:
                counts[0] += off
                counts[1] += kept - off
                on_write[0] = True
                return w
            off += w
        counts[0] += kept
    return 0


def forward(src, dst, batch, Py_ssize_t max_packets=-1, timeout=None):
    """Forward packets from ``src`` to ``dst``, rewriting each one, through ``batch``.

    Parameters
    ----------
    src, dst : tuntap.Device
        Devices with the same packet header (both plain TUN, or the same flags).
    batch : tuntap.PacketBatch
        The buffer the packets pass through; not to be used elsewhere meanwhile.
    max_packets : int
        Stop once this many packets were read (-1: no limit).
    timeout : float or None
        Stop when nothing arrived for this many seconds (None: wait forever).

    Returns
    -------
    tuple[int, int]
        Packets forwarded and packets dropped. Also returns (without raising) when
        ``src`` is closed, e.g. by another thread.

    Raises
    ------
    ValueError
        A device is closed when the call starts, ``dst`` gets closed, or the devices'
        headers differ. Other failures raise what ``Device.read_batch`` /
        ``Device.write_batch`` would.
    """
    cdef capi.tuntap_batch b
    cdef capi.tuntap_device *s
    cdef capi.tuntap_device *d
    cdef Py_ssize_t code = 0
    cdef Py_ssize_t counts[2]
    cdef bint on_write = False
    cdef int hdr
    cdef int64_t t = -1 if timeout is None else <int64_t>(float(timeout) * 1e9)
    counts[0] = counts[1] = 0
    capi.batch_view(batch, &b)
    s = capi.device_acquire(src)
    try:
        d = capi.device_acquire(dst)
        try:
            hdr = capi.header_size(s)
            if hdr != capi.header_size(d):
                raise ValueError("forward(): src and dst differ in packet headers")
            while True:
                with nogil:
                    code = run(s, d, &b, hdr, max_packets, t, counts, &on_write)
                if code == -EINTR:
                    PyErr_CheckSignals()  # raises what a signal handler raised
                    continue
                break
            if code < 0 and on_write:
                capi.raise_error(d, code, "write()")
            elif code < 0 and code != capi.ECLOSED and code != -ETIMEDOUT:
                capi.raise_error(s, code, "read()")
        finally:
            capi.device_release(d)
    finally:
        capi.device_release(s)
    return counts[0], counts[1]


def rewrite(batch, int header_size=0):
    """Rewrite every packet of ``batch`` in place (the GIL released), dropping those
    that cannot be forwarded, and return how many are left (``len(batch)``)."""
    cdef capi.tuntap_batch b
    cdef Py_ssize_t kept
    capi.batch_view(batch, &b)
    with nogil:
        kept = rewrite_batch(&b, b.count, header_size)
        capi.batch_set_count(&b, kept)
    return kept
