/*
 * _tuntap.h: what the units of tuntap._tuntap share (in the manner of CPython's
 * Modules/_io/_iomodule.h): the module state, the object structs, the type specs
 * and the shared helpers, each with its contract.
 *
 * Units (docs/design.md has the map and the one rule of each):
 *   _tuntap.c   module entry: state lookup, functions table, exec, PyInit
 *   util.c      errors, argument checks, timeouts
 *   engine.c    the one I/O engine: busy count, GIL release, EINTR, waits, close
 *   open.c      Device() and Device.fromfd(): opening, namespaces, features()
 *   device.c    the Device type: lifetime, one-packet I/O, modes, tables, spec
 *   control.c   interface control: flags, up/down, MTU, MAC, owner, queues,
 *               offloads, carrier, vnet byte order, addresses, link info
 *               (ioctls and rtnetlink)
 *   filter.c    per-packet kernel filters: eBPF steering/filter, classic BPF,
 *               the MAC filter
 *   links.c     the TUN/TAP links of any namespace (list_devices, delete)
 *   batch.c     the PacketBatch type and Device.read_batch/write_batch
 *   uring.c     the io_uring backend of read_batch/write_batch (io="uring"),
 *               on ring.c/ring.h (a minimal io_uring, pure C)
 *   packet.c    segment(), coalesce() and checksum(): wrappers of the pure-C units
 *   capi.c      the C API: the function table of tuntap/capi.h and its capsule
 *   aio.c       the try-first awaitables of tuntap.asyncio.AsyncDevice
 *   netlink.c   rtnetlink messages (pure C, netlink.h)
 *   gso.c       GSO segmentation (pure C, gso.h); csum.h: checksums (pure C)
 *   gro.c       write-side GRO, coalescing into super-packets (pure C, gro.h)
 *
 * "GIL held" below means the function must be called with the GIL held and may
 * raise; "no GIL" means it uses no Python API at all.
 */
#ifndef TT_TUNTAP_H
#define TT_TUNTAP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include <net/if.h>
#include <linux/if_tun.h>

#include "gro.h"

/* USO offloads (Linux 6.2); older uapi headers lack them, the values are ABI. */
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

#ifndef CLONE_NEWNET
#define CLONE_NEWNET 0x40000000
#endif

#if PY_VERSION_HEX < 0x030A00F0
static inline PyObject *
Py_NewRef(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#endif

/* Limited API (abi3) builds: only measured for docs/packaging.md (the wheels use the
 * full API). Stand-ins for the macros and private calls the limited API lacks. */
#ifdef Py_LIMITED_API
#define PyBytes_AS_STRING(o) PyBytes_AsString(o)
#define PyBytes_GET_SIZE(o) PyBytes_Size(o)
#define PyUnicode_AsUTF8(o) PyUnicode_AsUTF8AndSize((o), NULL)
#define PyMem_RawCalloc calloc
#define PyMem_RawFree free
#define TT_SEQ_SIZE(seq) (PyList_Check(seq) ? PyList_Size(seq) : PyTuple_Size(seq))
#define TT_SEQ_ITEM(seq, i) (PyList_Check(seq) ? PyList_GetItem((seq), (i)) \
                                               : PyTuple_GetItem((seq), (i)))
#else
#define TT_SEQ_SIZE(seq) PySequence_Fast_GET_SIZE(seq)
#define TT_SEQ_ITEM(seq, i) PySequence_Fast_GET_ITEM((seq), (i))
#endif

/* vnet_hdr_size values tuntap takes: 10 (struct virtio_net_hdr) and 12
 * (virtio_net_hdr_mrg_rxbuf, virtio 1.0) are the headers packets carry; the kernel
 * takes any int >= 10 and skips what is past its header as padding (drivers/net/
 * tun.c: TUNSETVNETHDRSZ, tun_put_user), e.g. 20 and 24 for the hash and tunnel
 * headers of newer virtio. Up to 256 here, so header sizes never overflow an int. */
#define TT_VNET_HDR_MIN 10
#define TT_VNET_HDR_MAX 256

/* No read from a TUN/TAP fd returns more than this after its header: the MTU is
 * at most 65535 (drivers/net/tun.c: MAX_MTU) and a GSO super-packet at most 64 KiB
 * (tun keeps the legacy tso_max_size), plus room for an Ethernet and VLAN header.
 * read(size) allocates no more than header + this, whatever size asks for. */
#define TT_READ_MAX (65536 + 256)

#define TT_MODULE_NAME "tuntap._tuntap"
#define TT_DEFAULT_PATH "/dev/net/tun"

/* ------------------------------------------------------------------------ */
/* Module state (_tuntap.c)                                                  */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyTypeObject *DeviceType;
    PyTypeObject *PacketBatchType;
    PyTypeObject *AioCoreType; /* aio.c: _AsyncCore, the C base of AsyncDevice */
    PyTypeObject *AioCallType; /* aio.c: its awaitable calls */
    PyObject *aio_free;        /* aio.c: spare AioCall objects (a free list) */
    PyObject *str_wait, *str_throw, *str_close; /* aio.c: interned method names */
    PyObject *stop_iteration;  /* aio.c: the StopIteration `await` reuses (3.12+) */
    int aio_nfree;
} tt_state;

extern struct PyModuleDef tt_module;

static inline tt_state *
tt_get_state(PyObject *module)
{
    return (tt_state *)PyModule_GetState(module);
}

/* GIL held. A heap type made from `spec` for module `m` and added to it (a new
 * reference, for the state), or NULL with an exception. */
PyTypeObject *tt_add_type(PyObject *m, PyType_Spec *spec);

/* GIL held. The state of the module that defined `type` or one of its bases (so a
 * Python subclass works, also on 3.9 where PyType_GetModuleByDef is missing).
 * NULL with TypeError if there is none. */
tt_state *tt_find_state(PyTypeObject *type);

/* ------------------------------------------------------------------------ */
/* Objects                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct tt_uring tt_uring; /* uring.c: a device's io_uring rings */

/* Device.io: the backend of read_batch/write_batch (TT_IO_AUTO only as a request). */
enum { TT_IO_SYSCALL = 0, TT_IO_URING = 1, TT_IO_AUTO = 2 };

typedef struct tt_device {
    PyObject_HEAD
    int fd;             /* the /dev/net/tun fd, always O_NONBLOCK; -1 once closed */
    int wakefd;         /* eventfd that close() signals; -1 until a blocking wait */
    int ctlfd;          /* NETLINK_ROUTE socket in the device's network namespace */
    int busy;           /* threads inside a syscall on fd/ctlfd (atomic; engine.c) */
    int req_flags;      /* flags given to TUNSETIFF, -1 if unknown (fromfd) */
    int hdr_len;        /* packet-info + vnet header bytes before each packet */
    int hdr_flags;      /* the flags hdr_len was computed from (control.c) */
    int offload;        /* TUN_F_* mask last set by set_offload(); -1 unknown */
    unsigned gro_off;   /* TT_GRO_* merges the kernel refused with EINVAL: no longer
                           tried on this device (atomic; batch.c) */
    int64_t timeout_ns; /* -1: block forever; 0: non-blocking; > 0: timeout */
    PyThread_type_lock nl_lock; /* serializes netlink requests on ctlfd */
    PyTypeObject *batch_type;   /* borrowed: the module (via our type) outlives us */
    tt_uring *uring;    /* the io_uring backend; NULL: read()/write() (or closed) */
    int io;             /* TT_IO_SYSCALL or TT_IO_URING, as opened */
    char name[IFNAMSIZ];
    /* engine.c: every live device is on one list (GIL held) so that a forked child
     * can drop the state it must not share with the parent (tt_after_fork_child);
     * `closing` holds the fds tt_shutdown() is about to close, for the same. */
    struct tt_device *prev, *next;
    int closing[3];
} DeviceObject;

/* What the next buffer export of a PacketBatch covers (set just around
 * PyMemoryView_FromObject, GIL held). */
enum { TT_EXPORT_ARENA = 0, TT_EXPORT_REGION = 1, TT_EXPORT_SIZES = 2 };

/* A PacketBatch: one arena of `capacity` slots of `stride` = headroom + slot_size
 * bytes; packet i lives at tt_batch_slot(b, i), sizes[i] bytes long; `count`
 * packets are valid. */
typedef struct {
    PyObject_HEAD
    char *arena;
    uint32_t *sizes;
    Py_ssize_t capacity, slot_size, headroom, stride, count;
    int export_kind; /* TT_EXPORT_* */
    Py_ssize_t export_off, export_len;
} PacketBatchObject;

static inline char *
tt_batch_slot(const PacketBatchObject *b, Py_ssize_t i)
{
    return b->arena + i * b->stride + b->headroom;
}

extern PyType_Spec tt_device_spec;      /* device.c */
extern PyType_Spec tt_batch_spec;       /* batch.c */
/* batch.c: the buffer slot, installed by hand before 3.11 (_tuntap.c). */
int PacketBatch_getbuffer(PyObject *self, Py_buffer *view, int flags);

/* ------------------------------------------------------------------------ */
/* util.c: errors and arguments (GIL held)                                   */
/* ------------------------------------------------------------------------ */

/* Monotonic clock in ns (no GIL). */
int64_t tt_monotonic_ns(void);

/* TypeError "<message>, not <type name>" (CPython's shape). Always NULL. */
PyObject *tt_type_error(PyObject *obj, const char *fmt, ...);

/* The OSError subclass matching `err` (PEP 3151), message
 * "<strerror>: <syscall> on '<ifname>'<hint>" ("... on" omitted when ifname is
 * NULL or empty; hint may be NULL). Always NULL. */
PyObject *tt_oserror(int err, const char *syscall, const char *ifname, const char *hint);

/* The same with OSError.filename set to `path` ("<strerror>: <syscall>"). */
PyObject *tt_oserror_path(int err, const char *syscall, const char *path);
/* ... and a hint after the syscall ("<strerror>: <syscall><hint>"; hint may be NULL). */
PyObject *tt_oserror_path_hint(int err, const char *syscall, const char *path,
                               const char *hint);

/* ValueError("I/O operation on closed device"). Always NULL. */
PyObject *tt_closed_error(void);

static inline int
tt_check_open(DeviceObject *self)
{
    if (self->fd < 0) {
        tt_closed_error();
        return -1;
    }
    return 0;
}

/* Validate a user's interface name (str, <= 15 bytes, no NUL '/' ':' or
 * whitespace, not "." or "..") into `out`, before any syscall. 0 or -1. */
int tt_check_ifname(PyObject *obj, char out[IFNAMSIZ]);

/* Bounded, NUL-terminated copy of a validated name into a zeroed ifreq. */
void tt_set_ifname(struct ifreq *ifr, const char *name);

/* An int argument that fits a C int. 0 or -1 (TypeError/OverflowError). */
int tt_as_int(PyObject *obj, int *out, const char *what);

/* A Py_ssize_t argument of fname(): TypeError "fname() what must be int". 0 or -1. */
int tt_as_ssize(PyObject *obj, Py_ssize_t *out, const char *fname, const char *what);

/* METH_FASTCALL with `min` required arguments and one optional after them: checks
 * nargs (TypeError worded as CPython does) and sets *opt to the optional argument,
 * or NULL when it was not given. 0 or -1. */
int tt_fastcall_optional(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t min,
                         const char *fname, PyObject **opt);

/* The UTF-8 of a str argument and its length (TypeError "what must be str"). */
const char *tt_str_arg(PyObject *obj, Py_ssize_t *len, const char *what);

/* None or seconds -> ns (-1 forever, 0 non-blocking), socket.settimeout()'s rules. */
int tt_parse_timeout(PyObject *obj, int64_t *out);

/* ------------------------------------------------------------------------ */
/* engine.c: the one I/O engine                                              */
/* ------------------------------------------------------------------------ */

/* One operation for tt_call(). The caller fills impl, syscall, events, flags and
 * ctx; the engine sets fd before every attempt; impl may raise progress. */
typedef struct tt_op tt_op;
struct tt_op {
    /* One attempt, GIL released, no Python API: the syscall(s) and nothing else.
     * Returns >= 0 when done, or -1 with errno (EAGAIN: not ready, the engine
     * waits in blocking mode and calls it again; EINTR: the engine runs signal
     * handlers and calls it again). It must be restartable after -1. */
    ssize_t (*impl)(tt_op *op);
    const char *syscall; /* names the call in messages: "read()", "ioctl(TUNSETIFF)" */
    short events;        /* POLLIN/POLLOUT to wait for on EAGAIN; 0: never wait */
    int flags;           /* TT_OP_* */
    int fd;              /* set by the engine: the device fd or the control socket */
    Py_ssize_t progress; /* set by impl: work done that a later failure must return */
    int err;             /* set by the engine on failure with TT_OP_RAW */
    void *ctx;           /* the operation's own data */
};
#define TT_OP_CTL 1 /* op->fd is the control socket, not the device fd */
#define TT_OP_RAW 2 /* an OS error returns -1 with op->err and no exception */
/* Never wait, whatever the device's mode: EAGAIN returns -1 with op->err = EAGAIN and
 * no exception; every other error raises as without the flag (the asyncio layer's
 * "try first": raising and catching BlockingIOError would cost more than the read). */
#define TT_OP_TRY 4

/* GIL held. Run `op` on `self` (the only place that releases the GIL around a
 * device syscall): checks the device is open, raises the busy count, releases
 * the GIL, calls impl, waits in poll() on the fd plus the close eventfd when impl
 * says EAGAIN in blocking mode (honouring the timeout as one deadline; a detached
 * queue is re-tried every 50 ms), retries EINTR after PyErr_CheckSignals()
 * (PEP 475), lowers the busy count before taking the GIL back. Returns impl's
 * result, or op->progress if it is > 0 when a later attempt fails (like send()),
 * or -1 with an exception: ValueError if closed (also by another thread while
 * waiting), TimeoutError, BlockingIOError, the errno's OSError naming the device
 * and op->syscall (TT_OP_RAW: no exception, op->err set).
 * With self == NULL (no device yet: open, features) the GIL is released around
 * impl and EINTR retried; nothing waits; errors are always raw.
 * Raw callers: -1 with op->err still 0 means a signal handler raised (the
 * exception is set); initialise op with err = 0. */
Py_ssize_t tt_call(DeviceObject *self, tt_op *op);

/* No GIL (the C API, capi.c). tt_call() for a thread without the GIL: raises the
 * busy count, sees the device open (else returns TT_ECLOSED), runs impl with the same
 * wait as tt_call() (poll() on the fd plus the close eventfd; the detached-queue
 * re-check), `timeout_ns` being -1 (forever), 0 (never wait) or > 0 (one deadline;
 * the device's own timeout is not used), lowers the busy count. The device's eventfd
 * must exist already (tt_ensure_wakefd(), GIL held) for a call that may wait.
 * Returns impl's result, or op->progress if it is > 0 when a later attempt fails,
 * or TT_ECLOSED (closed before or, by another thread, during the wait), -ETIMEDOUT,
 * or -errno of the failing call with op->err set (-EINTR is returned, not retried:
 * only a thread holding the GIL can run the signal handlers). No exception. */
Py_ssize_t tt_call_nogil(DeviceObject *self, tt_op *op, int64_t timeout_ns);
#define TT_ECLOSED (-65536) /* below every -errno; equals capi.h's TUNTAP_ECLOSED */

/* GIL held. Create the device's close eventfd if it has none. 0, or -1 with OSError. */
int tt_ensure_wakefd(DeviceObject *self);

/* GIL held. The exception tt_call() raises for an operation named `syscall` waiting
 * for `events`, from a code tt_call_nogil() returned (< 0). */
void tt_raise_code(DeviceObject *self, const char *syscall, short events, Py_ssize_t code);

/* GIL held. Mark the device closed, wake threads waiting in the engine and wait
 * (GIL released) until none is inside a syscall, then close every fd the object
 * owns except, when `keep_fd`, the device fd. Returns the device fd it had, or
 * -1 if it was already closed. Never retries close(). */
int tt_shutdown(DeviceObject *self, int keep_fd);

/* GIL held. Put a new device on the engine's list of live devices / take it off
 * (tt_device_alloc and dealloc do). */
void tt_device_link(DeviceObject *self);
void tt_device_unlink(DeviceObject *self);

/* GIL held; registered with os.register_at_fork(after_in_child=...) by the
 * module's exec. In the child of a fork, for every live device: the busy count
 * of threads that do not exist here is dropped (their netlink lock renewed), the
 * parent's close eventfd is let go (a new one is made on the next blocking wait,
 * so the child's close() never wakes the parent's readers), fds a parent thread
 * was closing are closed, and the control socket is replaced by one of the
 * child's own in the same namespace (netlink replies must not be shared). */
PyObject *tt_after_fork_child(PyObject *module, PyObject *unused);
extern const char tt_after_fork_child__doc__[];

/* GIL held. ioctl(fd or control socket, req, arg) through the engine; `arg` is a
 * pointer or a value as the request wants. Returns >= 0 or -1 with an OSError
 * naming `what` and the device. */
int tt_ioctl(DeviceObject *self, int on_ctl, unsigned long req, void *arg, const char *what);

/* GIL held. tt_ioctl() for callers that explain the errno themselves: -1 with
 * *err set and no exception for an OS error; -1 with *err 0 and an exception when
 * the device is closed or a signal handler raised. */
int tt_ioctl_raw(DeviceObject *self, int on_ctl, unsigned long req, void *arg,
                 const char *what, int *err);

/* GIL held. SIOC* interface ioctl on the control socket by the device's name. */
int tt_ifreq(DeviceObject *self, unsigned long req, struct ifreq *ifr, const char *what);

/* GIL held. One packet read (is_write 0) or written through the engine. Bytes
 * moved, or -1 with an exception. */
Py_ssize_t tt_io(DeviceObject *self, int is_write, void *buf, size_t len);
/* The same with TT_OP_* flags (TT_OP_TRY: -1 with op.err EAGAIN is returned as -2,
 * no exception). */
Py_ssize_t tt_io_ex(DeviceObject *self, int is_write, void *buf, size_t len, int flags);

/* No GIL. The same through tt_call_nogil(): bytes moved or its negative code. */
Py_ssize_t tt_io_nogil(DeviceObject *self, int is_write, void *buf, size_t len,
                       int64_t timeout_ns);

/* ------------------------------------------------------------------------ */
/* uring.c: the io_uring backend of read_batch/write_batch                    */
/* ------------------------------------------------------------------------ */

/* One packet to write (write_batch of a sequence). */
typedef struct {
    const char *data;
    size_t len;
} tt_pkt;

/* A device's io_uring backend or NULL; any thread, GIL or not (tt_shutdown sets it
 * NULL after marking the device closed, and frees it once no thread is busy: a
 * pointer read before tt_call/tt_call_nogil is valid whenever the impl runs). */
static inline tt_uring *
tt_device_uring(DeviceObject *self)
{
    return __atomic_load_n(&self->uring, __ATOMIC_ACQUIRE);
}

/* No GIL. Make the rings of a device whose fd is `devfd` (checks that a READ with
 * RWF_NOWAIT works on it). 0, or -1 with errno and *what naming the failing call. */
int tt_uring_open(int devfd, tt_uring **out, const char **what);
/* No GIL, no thread inside a call on the device (tt_shutdown). NULL is a no-op. */
void tt_uring_free(tt_uring *u);
/* No GIL (read_batch's impl). Slots [0, *count) hold packets; read more into the
 * following slots through the ring. Returns 1 when the batch is complete (full,
 * the queue said EAGAIN, or an error left for the next call), 0 when the caller
 * must go on with read() from *count (small batches, a busy ring, a refusal). */
int tt_uring_read_more(tt_uring *u, int devfd, PacketBatchObject *b, Py_ssize_t *count);
/* No GIL. Record how many packets a read_batch call took (sizes the next one). */
void tt_uring_read_done(tt_uring *u, Py_ssize_t count);
/* No GIL (write_batch's impl). Write packets [*done, count) of `pkts`, or when pkts
 * is NULL the batch's packets boff + [*done, count), through the ring, advancing
 * *done; stops before an empty packet. 0: the caller goes on with write() from *done
 * (possibly nothing left); -1 with errno: the write of packet *done failed (nothing
 * after it was written). */
int tt_uring_write(tt_uring *u, int devfd, const tt_pkt *pkts, const PacketBatchObject *b,
                   Py_ssize_t boff, Py_ssize_t *done, Py_ssize_t count);
/* No GIL. True once the kernel refused the ring at run time (read()/write() then). */
int tt_uring_broken(const tt_uring *u);

/* What io="auto" measured: is io_uring usable (err: why not), and the ns of one
 * EAGAIN read of an empty eventfd by read() and by a READ SQE. */
typedef struct {
    int available, faster, err;
    double syscall_ns, uring_ns;
} tt_uring_calib;
/* No GIL. Measure (about 0.2 ms). 0, or -1 with out->err. */
int tt_uring_calibrate(tt_uring_calib *out);

/* GIL held. io= of Device(): NULL (absent), "auto", "uring" or "syscall". 0 or -1. */
int tt_parse_io(PyObject *obj, int *out);
/* GIL held. Give a just-opened device its backend for TT_IO_* `req` (TUNTAP_IO
 * overrides "auto"): "uring" raises when io_uring is unusable, "auto" then stays
 * on read()/write(). 0 or -1. */
int tt_uring_attach(DeviceObject *self, int req);
/* GIL held. A dict of the counters, for tests. */
PyObject *tt_uring_stats(const tt_uring *u);
PyObject *tt_io_uring_probe(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
extern const char tt_io_uring_probe__doc__[];

/* ------------------------------------------------------------------------ */
/* open.c: making devices (GIL held)                                         */
/* ------------------------------------------------------------------------ */

PyObject *Device_new(PyTypeObject *type, PyObject *args, PyObject *kwds);
PyObject *Device_fromfd(PyTypeObject *type, PyObject *arg);
extern const char Device_fromfd__doc__[];
PyObject *tt_features(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
extern const char tt_features__doc__[];

/* GIL held. A netns= argument (None, a name under /var/run/netns, a path, an open
 * fd) as an fd to setns() into: -1 for None, -2 with an exception; *owned says
 * the caller must close it; `label` gets what to call it in messages. */
int tt_resolve_netns(PyObject *netns, int *owned, char *label, size_t labelsize);

/* No GIL. A NETLINK_ROUTE socket opened inside network namespace `nsfd` (< 0: the
 * calling thread's); the thread returns to its own namespace. -1 with errno and
 * *what naming the failing call. */
int tt_netns_socket(int nsfd, const char **what);

/* ------------------------------------------------------------------------ */
/* capi.c: the C API (tuntap/capi.h)                                         */
/* ------------------------------------------------------------------------ */

/* GIL held. Add the capsule `_C_API` (the versioned function table) to the module.
 * 0, or -1 with an exception. */
int tt_capi_add(PyObject *module);

/* ------------------------------------------------------------------------ */
/* control.c: interface control (GIL held)                                   */
/* ------------------------------------------------------------------------ */

/* The flags as they really are: TUNGETIFF, packet info from rtnetlink. */
int tt_device_flags(DeviceObject *self, int *out);
/* Set self->hdr_len from `flags` (packet info 4, plus TUNGETVNETHDRSZ). */
int tt_update_hdr_len(DeviceObject *self, int flags);

/* Device methods and properties; device.c lists them in the type's tables. */
#define TT_DOC(name, text) const char name[] = PyDoc_STR(text)
#define TT_METHOD(name)                                                            \
    PyObject *Device_##name(DeviceObject *self, PyObject *arg);                      \
    extern const char Device_##name##__doc__[]
#define TT_FASTMETHOD(name)                                                        \
    PyObject *Device_##name(DeviceObject *self, PyObject *const *args, Py_ssize_t n); \
    extern const char Device_##name##__doc__[]
/* A METH_O method and its `_try_` twin (tuntap.asyncio's try-first path: never
 * waits, TT_OP_TRY) around one impl(self, arg, flags); `linkage` is static or empty. */
#define TT_TRY_PAIR(linkage, name, impl, try_doc)                                   \
    linkage PyObject *Device_##name(DeviceObject *self, PyObject *arg)              \
    {                                                                               \
        return impl(self, arg, 0);                                                  \
    }                                                                               \
    linkage const char Device__try_##name##__doc__[] = PyDoc_STR(try_doc);          \
    linkage PyObject *Device__try_##name(DeviceObject *self, PyObject *arg)         \
    {                                                                               \
        return impl(self, arg, TT_OP_TRY);                                          \
    }
#define TT_GETTER(name) PyObject *Device_get_##name(DeviceObject *self, void *closure)
#define TT_SETTER(name) int Device_set_##name(DeviceObject *self, PyObject *v, void *closure)

TT_METHOD(up);
TT_METHOD(down);
TT_FASTMETHOD(persist);
TT_METHOD(set_owner);
TT_METHOD(set_group);
TT_METHOD(attach_queue);
TT_METHOD(detach_queue);
TT_METHOD(set_offload);
TT_METHOD(_address);
TT_GETTER(flags);
TT_GETTER(ifindex);
TT_GETTER(is_up);
TT_GETTER(ifint);
TT_SETTER(ifint);
TT_GETTER(hwaddr);
TT_SETTER(hwaddr);
TT_GETTER(vnet_hdr_size);
TT_SETTER(vnet_hdr_size);
TT_GETTER(header_size);
TT_GETTER(sndbuf);
TT_SETTER(sndbuf);
TT_GETTER(io);           /* uring.c */
TT_GETTER(_uring_stats); /* uring.c */
/* Closures of the ifint getter/setter pair (which SIOC ioctls, which name). */
typedef struct {
    unsigned long get, set;
    const char *name, *get_call, *set_call;
} tt_ifint;
extern const tt_ifint tt_ifint_mtu, tt_ifint_txqueuelen;

TT_GETTER(carrier);
TT_SETTER(carrier);
#ifdef TUNSETVNETLE
TT_GETTER(vnet_le);
TT_SETTER(vnet_le);
#endif
#ifdef TUNSETVNETBE
TT_GETTER(vnet_be);
TT_SETTER(vnet_be);
#endif

/* ------------------------------------------------------------------------ */
/* filter.c: eBPF steering/filter, classic BPF, MAC filter (GIL held)         */
/* ------------------------------------------------------------------------ */

TT_METHOD(set_steering_program);
TT_METHOD(set_filter_program);
TT_METHOD(attach_filter);
TT_METHOD(detach_filter);
PyObject *Device_set_mac_filter(DeviceObject *self, PyObject *args, PyObject *kwds);
extern const char Device_set_mac_filter__doc__[];

/* links.c: the links of a namespace (GIL held) */
PyObject *tt_list_links(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
extern const char tt_list_links__doc__[];
PyObject *tt_link_kind(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
extern const char tt_link_kind__doc__[];

/* ------------------------------------------------------------------------ */
/* batch.c, packet.c, util.c: module-level functions (GIL held)              */
/* ------------------------------------------------------------------------ */

TT_METHOD(read_batch);
PyObject *Device_write_batch(DeviceObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames);
extern const char Device_write_batch__doc__[];
/* The non-raising "try first" forms for tuntap.asyncio/anyio: never wait; -1 on
 * EAGAIN instead of BlockingIOError; every other error raises like the sync API. */
TT_METHOD(_try_read_batch);
TT_FASTMETHOD(_try_write_batch);
/* device.c: the same for one packet (aio.c calls them directly). */
TT_METHOD(_try_readinto);
TT_METHOD(_try_write);
TT_FASTMETHOD(_try_read);
/* device.c: readinto/write's work: check the buffer, one packet through the engine.
 * The byte count, -1 with an exception, or -2 (no exception) on EAGAIN with
 * TT_OP_TRY. GIL held. */
Py_ssize_t tt_one_packet_n(DeviceObject *self, PyObject *arg, int is_write, int flags);

/* aio.c: add _AsyncCore and _AioCall to the module and the state. 0 or -1. */
int tt_aio_add(PyObject *m, tt_state *st);
/* aio.c: free the spare AioCall objects (module clear). */
void tt_aio_free_list_clear(tt_state *st);

/* batch.c: the attempts of read_batch/write_batch (tt_op impls: no GIL), shared with
 * the C API (capi.c). read: op->ctx is a tt_read_ctx; fills the batch's sizes and
 * returns the packet count (the caller sets b->count). write: op->ctx is a
 * tt_write_ctx; writes packets [done, count) of `pkts` (tt_pkt: uring.c's section),
 * or of the PacketBatch `b` from index `first` on (an empty packet ends the run), and
 * returns base + done; `base` is what earlier calls wrote (the chunks of a sequence).
 * `u` is the device's io_uring backend (tt_device_uring()), NULL for read()/write(). */
typedef struct {
    PacketBatchObject *b;
    tt_uring *u;
} tt_read_ctx;
typedef struct {
    const tt_pkt *pkts;
    const PacketBatchObject *b;
    Py_ssize_t first, base, done, count;
    tt_uring *u;
} tt_write_ctx;
ssize_t tt_read_batch_impl(tt_op *op);
ssize_t tt_write_batch_impl(tt_op *op);

PyObject *tt_segment(PyObject *module, PyObject *args, PyObject *kwargs);
extern const char tt_segment__doc__[];
PyObject *tt_coalesce(PyObject *module, PyObject *args, PyObject *kwargs);
extern const char tt_coalesce__doc__[];
PyObject *tt_checksum(PyObject *module, PyObject *arg);
extern const char tt_checksum__doc__[];
PyObject *tt_check_name(PyObject *module, PyObject *arg);
extern const char tt_check_name__doc__[];

/* packet.c: the packets of a PacketBatch or of a sequence of bytes-like objects
 * as one tt_gro_pkt array, with the gro.c scratch for them (one allocation).
 * GIL held. tt_pktlist_get: 0, or -1 with TypeError/MemoryError/OverflowError
 * (nothing held). The views stay acquired, and a PacketBatch's slots must not be
 * refilled, until tt_pktlist_release(). */
typedef struct {
    tt_gro_pkt *pkts;
    Py_ssize_t n, nviews;
    size_t total;       /* bytes in all packets */
    Py_buffer *views;   /* NULL for a PacketBatch */
    PyObject *seq;      /* the PySequence_Fast, or NULL */
    void *scratch;      /* tt_gro_scratch_size(n) bytes, 8-aligned */
    void *mem;
} tt_pktlist;
int tt_pktlist_get(PyObject *obj, PyTypeObject *batch_type, tt_pktlist *pl, const char *fname);
void tt_pktlist_release(tt_pktlist *pl);

/* device.c: the frozenset of merge kinds ("tcp", "udp") disabled after EINVAL. */
TT_GETTER(coalesce_disabled);

#endif /* TT_TUNTAP_H */
