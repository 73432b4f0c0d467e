# tuntap/capi.pxd: the C API of tuntap (tuntap/capi.h) for Cython.
#
#     from tuntap cimport capi
#     capi.import_tuntap()                  # once, at module level (ImportError on mismatch)
#
# Compile with include_dirs=[tuntap.get_include()] (the C compiler needs tuntap/capi.h).
# Every I/O and packet function is declared `nogil` and `noexcept`: it never raises and
# returns a count or a negative code (see capi.h: -errno, -ETIMEDOUT, -EINTR,
# capi.ECLOSED). Turn a code into the exception the Python API raises with
# capi.raise_error() while holding the GIL. The few functions that must hold the GIL
# (import, taking a batch view, acquiring/releasing a device, raising) are not nogil;
# those that can fail raise (except -1 / except NULL).
#
# A loop:
#     cdef capi.tuntap_batch b
#     cdef capi.tuntap_device *dev = capi.device_acquire(device)
#     capi.batch_view(batch, &b)
#     with nogil:
#         n = capi.read_batch(dev, &b, -1)
#         for i in range(n):
#             work(capi.packet(&b, i), b.sizes[i])
#         if n > 0:
#             n = capi.write_batch(dev, &b, 0, n, -1)
#     if n < 0:
#         capi.raise_error(dev, n, "read()")
#     capi.device_release(dev)

from libc.stdint cimport int64_t, uint16_t, uint32_t


cdef extern from "tuntap/capi.h":
    int CAPI_MAJOR "TUNTAP_CAPI_MAJOR"
    int CAPI_MINOR "TUNTAP_CAPI_MINOR"
    # The device is closed (also by another thread during the call).
    int ECLOSED "TUNTAP_ECLOSED"
    # segment() failures
    int SEG_EHDRSIZE "TUNTAP_SEG_EHDRSIZE"
    int SEG_ETOOSHORT "TUNTAP_SEG_ETOOSHORT"
    int SEG_EGSOTYPE "TUNTAP_SEG_EGSOTYPE"
    int SEG_EGSOSIZE "TUNTAP_SEG_EGSOSIZE"
    int SEG_EIPHDR "TUNTAP_SEG_EIPHDR"
    int SEG_EL4HDR "TUNTAP_SEG_EL4HDR"
    int SEG_ECSUM "TUNTAP_SEG_ECSUM"
    int SEG_ECAPACITY "TUNTAP_SEG_ECAPACITY"
    int SEG_ESLOT "TUNTAP_SEG_ESLOT"
    int SEG_ELAYOUT "TUNTAP_SEG_ELAYOUT"
    int SEG_ETOOBIG "TUNTAP_SEG_ETOOBIG"
    int SEG_EOVERLAP "TUNTAP_SEG_EOVERLAP"

    # An acquired device (opaque).
    ctypedef struct tuntap_device:
        pass

    # A borrowed view of a PacketBatch: packet i is packet(&b, i), b.sizes[i] bytes.
    ctypedef struct tuntap_batch:
        char *arena
        uint32_t *sizes
        Py_ssize_t capacity
        Py_ssize_t slot_size
        Py_ssize_t stride
        Py_ssize_t headroom
        Py_ssize_t count
        void *owner

    # -- GIL held
    int import_tuntap() except -1
    int batch_view "tuntap_batch_view"(object batch, tuntap_batch *out) except -1
    tuntap_device *device_acquire "tuntap_device_acquire"(object device) except NULL
    void device_release "tuntap_device_release"(tuntap_device *dev)
    int raise_error "tuntap_raise_error"(tuntap_device *dev, Py_ssize_t code,
                                         const char *syscall) except -1
    int raise_segment_error "tuntap_raise_segment_error"(Py_ssize_t code) except -1

    # -- no GIL needed
    char *packet "tuntap_packet"(const tuntap_batch *b, Py_ssize_t i) noexcept nogil
    Py_ssize_t read_batch "tuntap_read_batch"(tuntap_device *dev, tuntap_batch *b,
                                              int64_t timeout_ns) noexcept nogil
    Py_ssize_t write_batch "tuntap_write_batch"(tuntap_device *dev, const tuntap_batch *b,
                                                Py_ssize_t first, Py_ssize_t count,
                                                int64_t timeout_ns) noexcept nogil
    Py_ssize_t read "tuntap_read"(tuntap_device *dev, void *buf, size_t len,
                                  int64_t timeout_ns) noexcept nogil
    Py_ssize_t write "tuntap_write"(tuntap_device *dev, const void *buf, size_t len,
                                    int64_t timeout_ns) noexcept nogil
    Py_ssize_t segment "tuntap_segment"(const void *packet, size_t len, size_t vnet_hdr_size,
                                        tuntap_batch *out) noexcept nogil
    uint16_t checksum "tuntap_checksum"(const void *data, size_t len) noexcept nogil
    int header_size "tuntap_header_size"(tuntap_device *dev) noexcept nogil
    int batch_set_count "tuntap_batch_set_count"(tuntap_batch *b, Py_ssize_t count) noexcept nogil
