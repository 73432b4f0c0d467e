/*
 * aio.c: the try-first half of tuntap.asyncio.AsyncDevice, in C.
 *
 * `await adev.readinto(buf)` on a queued packet must cost little more than
 * `dev.readinto(buf)`. A Python `async def` cannot: creating and running its
 * coroutine costs about as much as the read() itself. So the five I/O methods of
 * AsyncDevice live here, on its C base class _AsyncCore, and return an AioCall: an
 * awaitable that does the non-raising try (Device._try_*) when it is first resumed
 * and, if that found a packet (or room), returns its result at once (am_send,
 * PYGEN_RETURN: no StopIteration raised, no frame made). Only when the try says
 * EAGAIN does it ask the Python subclass for the coroutine that waits
 * (`self._wait(kind, arg, done)`: the FIFO of waiters, the reader registration, the
 * loop binding, cancellation) and delegate to it from then on, as `yield from` does.
 *
 * The rules of the Python side are kept: no try while other calls wait (the deques
 * `readers`/`writers` are not empty) or while packets kept from a cancel wait
 * (`pushback`), so waiters are served in order and a write never overtakes. Nothing
 * happens before the first resume: a call never awaited reads nothing.
 *
 * GIL held throughout; the tries go through the engine like every other I/O.
 */
#include "_tuntap.h"

#include <string.h>

#if PY_VERSION_HEX < 0x030A0000
/* 3.9 has neither am_send nor PyIter_Send: the same through __next__/send(). */
typedef enum { PYGEN_RETURN = 0, PYGEN_ERROR = -1, PYGEN_NEXT = 1 } PySendResult;

static PySendResult
tt_iter_send(PyObject *iter, PyObject *value, PyObject **result)
{
    /* a coroutine has no __next__ */
    iternextfunc next = value == Py_None ? Py_TYPE(iter)->tp_iternext : NULL;
    PyObject *send, *r, *t, *v, *tb;
    if (next != NULL) {
        r = next(iter);
    }
    else {
        send = PyUnicode_FromString("send");
        r = send != NULL ? PyObject_CallMethodObjArgs(iter, send, value, NULL) : NULL;
        Py_XDECREF(send);
    }
    if (r != NULL) {
        *result = r;
        return PYGEN_NEXT;
    }
    if (!PyErr_Occurred()) {
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
        return PYGEN_ERROR;
    }
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    *result = v != NULL ? PyObject_GetAttrString(v, "value") : Py_NewRef(Py_None);
    Py_XDECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(tb);
    return *result != NULL ? PYGEN_RETURN : PYGEN_ERROR;
}
#define PyIter_Send tt_iter_send

/* No Py_TPFLAGS_DISALLOW_INSTANTIATION either. */
static PyObject *
AioCall_new(PyTypeObject *Py_UNUSED(type), PyObject *Py_UNUSED(a), PyObject *Py_UNUSED(k))
{
    PyErr_SetString(PyExc_TypeError, "cannot create 'tuntap._tuntap._AioCall' instances");
    return NULL;
}
#endif

/* The call kinds; tuntap/asyncio.py uses the same numbers. */
enum { TT_AIO_READINTO, TT_AIO_READ, TT_AIO_READ_BATCH, TT_AIO_WRITE, TT_AIO_WRITE_BATCH };

/* An AioCall's state. */
enum { TT_AIO_NEW, TT_AIO_WAITING, TT_AIO_DONE };

typedef struct {
    PyObject_HEAD
    DeviceObject *device; /* the wrapped device (exposed read-only as .device) */
    PyObject *readers;    /* the subclass's deques: who waits, what was kept */
    PyObject *writers;
    PyObject *pushback;
    PyObject *default_size; /* 65536, read()'s default */
    PyTypeObject *call_type;
    tt_state *st;         /* the module's (call_type keeps the module alive) */
    int deques;           /* all three are exactly collections.deque */
} AioCoreObject;

typedef struct {
    PyObject_HEAD
    AioCoreObject *core;
    PyObject *arg;   /* buffer, size, batch or packets */
    PyObject *inner; /* the waiting coroutine (TT_AIO_WAITING) */
    /* small fields: 64 bytes with the GC header, one pymalloc size class and
     * cache line (72 bytes measured ~10 ns slower per await) */
    unsigned char kind;
    unsigned char state;
    unsigned char tracked; /* by the GC: only once it waits (the fast path never is) */
} AioCallObject;

/* -- the try ------------------------------------------------------------------ */

/* The length of one of the subclass's deques: Py_SIZE for a collections.deque (its
 * length, as deque_len() returns it; AioCore_init checked the type), else len(). */
static inline Py_ssize_t
tt_aio_len(AioCoreObject *core, PyObject *q)
{
    return core->deques ? Py_SIZE(q) : PyObject_Length(q);
}

/* 1 if a call of `kind` may try now: nobody of its direction waits, nothing kept. */
static int
tt_aio_may_try(AioCoreObject *core, int kind)
{
    if (kind >= TT_AIO_WRITE) {
        return tt_aio_len(core, core->writers) == 0;
    }
    return tt_aio_len(core, core->readers) == 0 && tt_aio_len(core, core->pushback) == 0;
}

/* Try the call once. Returns the result (new reference), NULL with an exception,
 * or NULL without one when the call must wait (*done: packets written so far). */
static PyObject *
tt_aio_try(AioCallObject *call, Py_ssize_t *done)
{
    DeviceObject *dev = call->core->device;
    PyObject *r;
    Py_ssize_t n, total;

    *done = 0;
    if (!tt_aio_may_try(call->core, call->kind)) {
        return NULL;
    }
    switch (call->kind) {
    case TT_AIO_READ:
        r = Device__try_read(dev, &call->arg, 1);
        if (r == Py_None) {
            Py_DECREF(r);
            return NULL;
        }
        return r;
    case TT_AIO_WRITE_BATCH:
        r = Device__try_write_batch(dev, &call->arg, 1);
        break;
    case TT_AIO_READ_BATCH:
        r = Device__try_read_batch(dev, call->arg);
        break;
    default: /* readinto, write: no int made for EAGAIN */
        n = tt_one_packet_n(dev, call->arg, call->kind == TT_AIO_WRITE, TT_OP_TRY);
        return n >= 0 ? PyLong_FromSsize_t(n) : NULL;
    }
    if (r == NULL) {
        return NULL;
    }
    n = PyLong_AsSsize_t(r);
    if (call->kind == TT_AIO_WRITE_BATCH) {
        total = PyObject_Length(call->arg);
        if (total < 0) {
            Py_DECREF(r);
            return NULL;
        }
        if (n == total) {
            return r;
        }
        *done = n < 0 ? 0 : n;
    }
    else if (n != -1) {
        return r;
    }
    Py_DECREF(r);
    return NULL;
}

/* -- AioCall: the awaitable ------------------------------------------------------ */

/* self._wait(kind, arg, done): the subclass's coroutine that waits. Method names are
 * the module's interned strings: a fresh str per call would also take a new slot in
 * CPython's type attribute cache (hashed by the name's address in 3.10/3.11) each time. */
static PyObject *
tt_aio_wait(AioCallObject *self, Py_ssize_t done)
{
    PyObject *kind = PyLong_FromLong(self->kind), *n = PyLong_FromSsize_t(done), *r = NULL;
    if (kind != NULL && n != NULL) {
        r = PyObject_CallMethodObjArgs((PyObject *)self->core, self->core->st->str_wait, kind,
                                       self->arg, n, NULL);
    }
    Py_XDECREF(kind);
    Py_XDECREF(n);
    return r;
}

static PySendResult
AioCall_am_send(AioCallObject *self, PyObject *value, PyObject **result)
{
    if (self->state == TT_AIO_NEW) {
        Py_ssize_t done;
        PyObject *r;
        self->state = TT_AIO_DONE;
        if (value != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started tuntap call");
            return PYGEN_ERROR;
        }
        r = tt_aio_try(self, &done);
        if (r != NULL) {
            *result = r;
            return PYGEN_RETURN;
        }
        if (PyErr_Occurred()) {
            return PYGEN_ERROR;
        }
        self->inner = tt_aio_wait(self, done);
        if (self->inner == NULL) {
            return PYGEN_ERROR;
        }
        self->state = TT_AIO_WAITING;
        self->tracked = 1;
        PyObject_GC_Track(self); /* from now on it may be part of a cycle */
    }
    if (self->state == TT_AIO_WAITING) {
        PySendResult s = PyIter_Send(self->inner, value, result);
        if (s != PYGEN_NEXT) {
            self->state = TT_AIO_DONE;
            Py_CLEAR(self->inner);
        }
        return s;
    }
    PyErr_SetString(PyExc_RuntimeError, "cannot reuse an already awaited tuntap call");
    return PYGEN_ERROR;
}

/* The end of send()/__next__: StopIteration(result) (as a coroutine raises it). */
static PyObject *
tt_aio_gen_result(PySendResult s, PyObject *result)
{
    if (s == PYGEN_NEXT) {
        return result;
    }
    if (s == PYGEN_RETURN) {
        if (result == Py_None) {
            PyErr_SetNone(PyExc_StopIteration);
        }
        else {
            PyObject *exc = PyObject_CallFunctionObjArgs(PyExc_StopIteration, result, NULL);
            if (exc != NULL) {
                PyErr_SetObject(PyExc_StopIteration, exc);
                Py_DECREF(exc);
            }
        }
        Py_DECREF(result);
    }
    return NULL;
}

static PyObject *
AioCall_send(AioCallObject *self, PyObject *value)
{
    PyObject *result = NULL;
    PySendResult s = AioCall_am_send(self, value, &result);
    return tt_aio_gen_result(s, result);
}

#if PY_VERSION_HEX >= 0x030C0000 && !defined(Py_LIMITED_API)
/* From 3.12 on, `await` drives an object that is not a generator through
 * tp_iternext, never am_send: the result must travel in a StopIteration, and making
 * one costs ~75 ns, more than the whole try-first path (an `await` of a done
 * asyncio.Future: 98 ns on 3.12, 22 ns on 3.11). The interpreter takes the value out
 * and drops the exception at once (_PyGen_FetchStopIterationValue), so one instance
 * per module is reused while nobody else holds it: its value replaced, its
 * traceback, context and cause cleared. Only here: send() and throw() raise fresh
 * ones, since their caller may keep what it catches. */
static PyObject *
AioCall_iternext(AioCallObject *self)
{
    tt_state *st = self->core->st;
    PyObject *result = NULL, *exc;
    PySendResult s = AioCall_am_send(self, Py_None, &result);

    if (s != PYGEN_RETURN) {
        return tt_aio_gen_result(s, result);
    }
    exc = st->stop_iteration;
    if (exc == NULL || Py_REFCNT(exc) != 1) {
        Py_XDECREF(exc); /* kept by someone: it is theirs now */
        exc = st->stop_iteration = PyObject_CallNoArgs(PyExc_StopIteration);
        if (exc == NULL) {
            Py_DECREF(result);
            return NULL;
        }
    }
    else {
        PyException_SetTraceback(exc, Py_None);
        PyException_SetContext(exc, NULL);
        PyException_SetCause(exc, NULL);
    }
    Py_XSETREF(((PyStopIterationObject *)exc)->value, result);
    PyErr_SetRaisedException(Py_NewRef(exc));
    return NULL;
}
#else
static PyObject *
AioCall_iternext(AioCallObject *self)
{
    return AioCall_send(self, Py_None);
}
#endif

static PyObject *
AioCall_throw(AioCallObject *self, PyObject *args)
{
    PyObject *typ, *val = NULL, *tb = NULL, *r;

    if (self->state == TT_AIO_WAITING) {
        PyObject *meth = PyObject_GetAttr(self->inner, self->core->st->str_throw);
        if (meth == NULL) {
            return NULL;
        }
        r = PyObject_Call(meth, args, NULL);
        Py_DECREF(meth);
        if (r == NULL) {
            self->state = TT_AIO_DONE;
            Py_CLEAR(self->inner);
        }
        return r;
    }
    /* Not started or finished: the exception comes straight out, as from a
     * coroutine; a call never resumed has read nothing. */
    self->state = TT_AIO_DONE;
    if (!PyArg_UnpackTuple(args, "throw", 1, 3, &typ, &val, &tb)) {
        return NULL;
    }
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    }
    else if (PyExceptionClass_Check(typ)) {
        PyErr_SetObject(typ, val != NULL ? val : Py_None);
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes or instances deriving from BaseException");
    }
    return NULL;
}

static PyObject *
AioCall_close(AioCallObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *inner = self->inner;
    self->state = TT_AIO_DONE;
    self->inner = NULL;
    if (inner != NULL) {
        PyObject *r = PyObject_CallMethodObjArgs(inner, self->core->st->str_close, NULL);
        Py_DECREF(inner);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyObject *
AioCall_await(AioCallObject *self)
{
    return Py_NewRef((PyObject *)self);
}

static int
AioCall_traverse(AioCallObject *self, visitproc visit, void *arg)
{
    Py_VISIT((PyObject *)Py_TYPE((PyObject *)self));
    Py_VISIT(self->core);
    Py_VISIT(self->arg);
    Py_VISIT(self->inner);
    return 0;
}

static int
AioCall_clear(AioCallObject *self)
{
    Py_CLEAR(self->core);
    Py_CLEAR(self->arg);
    Py_CLEAR(self->inner);
    return 0;
}

/* Spare AioCall objects kept for reuse: one is made and dropped per await, and
 * the allocator's round trip is a fifth of what an await may cost. */
#define TT_AIO_FREE_MAX 16

static void
AioCall_dealloc(AioCallObject *self)
{
    PyTypeObject *tp = Py_TYPE((PyObject *)self);
    tt_state *st = self->core != NULL ? self->core->st : NULL;
    if (self->tracked) {
        PyObject_GC_UnTrack(self);
    }
    AioCall_clear(self);
    if (st != NULL && st->aio_nfree < TT_AIO_FREE_MAX && tp == st->AioCallType) {
        self->arg = st->aio_free; /* the free list's link */
        st->aio_free = (PyObject *)self;
        st->aio_nfree++;
    }
    else {
        ((freefunc)PyType_GetSlot(tp, Py_tp_free))((PyObject *)self);
    }
    Py_DECREF(tp);
}

void
tt_aio_free_list_clear(tt_state *st)
{
    while (st->aio_free != NULL) {
        AioCallObject *call = (AioCallObject *)st->aio_free;
        st->aio_free = call->arg;
        PyObject_GC_Del(call);
    }
    st->aio_nfree = 0;
}

static PyMethodDef AioCall_methods[] = {
    {"send", (PyCFunction)AioCall_send, METH_O,
     PyDoc_STR("send($self, value, /)\n--\n\nResume the call (the coroutine protocol).")},
    {"throw", (PyCFunction)AioCall_throw, METH_VARARGS,
     PyDoc_STR("throw($self, typ, val=None, tb=None, /)\n--\n\n"
               "Raise an exception in the waiting call (the coroutine protocol).")},
    {"close", (PyCFunction)AioCall_close, METH_NOARGS,
     PyDoc_STR("close($self, /)\n--\n\nClose the call (the coroutine protocol).")},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot AioCall_slots[] = {
    {Py_am_await, AioCall_await},
#if PY_VERSION_HEX >= 0x030A0000
    {Py_am_send, AioCall_am_send},
#else
    {Py_tp_new, AioCall_new},
#endif
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, AioCall_iternext},
    {Py_tp_methods, AioCall_methods},
    {Py_tp_traverse, AioCall_traverse},
    {Py_tp_clear, AioCall_clear},
    {Py_tp_dealloc, AioCall_dealloc},
    {Py_tp_doc, (void *)PyDoc_STR(
        "One awaitable I/O call of an AsyncDevice: tries once when first resumed,\n"
        "waits (through AsyncDevice._wait) only if nothing was ready. A coroutine in\n"
        "all but type (send, throw, close, __await__).")},
    {0, NULL},
};

static PyType_Spec tt_aio_call_spec = {
    .name = TT_MODULE_NAME "._AioCall",
    .basicsize = sizeof(AioCallObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
#if PY_VERSION_HEX >= 0x030A0000
             | Py_TPFLAGS_DISALLOW_INSTANTIATION
#endif
    ,
    .slots = AioCall_slots,
};

/* -- _AsyncCore: the base class of AsyncDevice ---------------------------------- */

static inline PyObject *
tt_aio_call(AioCoreObject *self, unsigned char kind, PyObject *arg)
{
    AioCallObject *call;

    if (self->device == NULL) {
        PyErr_SetString(PyExc_TypeError, "_AsyncCore.__init__() was not called");
        return NULL;
    }
    if (self->st->aio_free != NULL) {
        call = (AioCallObject *)self->st->aio_free;
        self->st->aio_free = call->arg;
        self->st->aio_nfree--;
        PyObject_Init((PyObject *)call, self->call_type); /* increfs the type */
    }
    else {
        call = PyObject_GC_New(AioCallObject, self->call_type); /* so does this */
        if (call == NULL) {
            return NULL;
        }
    }
    call->core = (AioCoreObject *)Py_NewRef((PyObject *)self);
    call->arg = Py_NewRef(arg);
    call->inner = NULL;
    call->kind = kind;
    call->state = TT_AIO_NEW;
    call->tracked = 0;
    return (PyObject *)call; /* untracked until it waits (AioCall_am_send) */
}

static PyObject *
AioCore_readinto(AioCoreObject *self, PyObject *buffer)
{
    return tt_aio_call(self, TT_AIO_READINTO, buffer);
}

static PyObject *
AioCore_read(AioCoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *size;
    if (tt_fastcall_optional(args, nargs, 0, "read", &size) < 0) {
        return NULL;
    }
    return tt_aio_call(self, TT_AIO_READ, size != NULL ? size : self->default_size);
}

static PyObject *
AioCore_read_batch(AioCoreObject *self, PyObject *batch)
{
    return tt_aio_call(self, TT_AIO_READ_BATCH, batch);
}

static PyObject *
AioCore_write(AioCoreObject *self, PyObject *data)
{
    return tt_aio_call(self, TT_AIO_WRITE, data);
}

static PyObject *
AioCore_write_batch(AioCoreObject *self, PyObject *packets)
{
    return tt_aio_call(self, TT_AIO_WRITE_BATCH, packets);
}

/* *slot = a new reference to obj, dropping the old one (Py_XSETREF, which the
 * limited API lacks). */
static void
tt_setref(PyObject **slot, PyObject *obj)
{
    PyObject *old = *slot;
    *slot = Py_NewRef(obj);
    Py_XDECREF(old);
}

static int
tt_is_deque(PyObject *obj)
{
#ifdef Py_LIMITED_API
    (void)obj;
    return 0; /* tp_name is hidden: len() it is */
#else
    return strcmp(Py_TYPE(obj)->tp_name, "collections.deque") == 0;
#endif
}

static int
AioCore_init(AioCoreObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *dev, *readers, *writers, *pushback;
    tt_state *st = tt_find_state(Py_TYPE((PyObject *)self));

    if (st == NULL) {
        return -1;
    }
    if (kwargs != NULL && PyDict_Size(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "_AsyncCore() takes no keyword arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OOOO:_AsyncCore", &dev, &readers, &writers, &pushback)) {
        return -1;
    }
    if (!PyObject_TypeCheck(dev, st->DeviceType)) {
        tt_type_error(dev, "AsyncDevice() argument must be a tuntap.Device");
        return -1;
    }
    tt_setref((PyObject **)&self->device, dev);
    tt_setref(&self->readers, readers);
    tt_setref(&self->writers, writers);
    tt_setref(&self->pushback, pushback);
    self->deques = tt_is_deque(readers) && tt_is_deque(writers) && tt_is_deque(pushback);
    if (self->default_size == NULL && (self->default_size = PyLong_FromLong(65536)) == NULL) {
        return -1;
    }
    if (self->call_type == NULL) {
        self->call_type = (PyTypeObject *)Py_NewRef((PyObject *)st->AioCallType);
        self->st = st;
    }
    return 0;
}

static int
AioCore_traverse(AioCoreObject *self, visitproc visit, void *arg)
{
    Py_VISIT((PyObject *)Py_TYPE((PyObject *)self));
    Py_VISIT(self->device);
    Py_VISIT(self->readers);
    Py_VISIT(self->writers);
    Py_VISIT(self->pushback);
    Py_VISIT(self->call_type);
    return 0;
}

static int
AioCore_clear(AioCoreObject *self)
{
    Py_CLEAR(self->device);
    Py_CLEAR(self->readers);
    Py_CLEAR(self->writers);
    Py_CLEAR(self->pushback);
    Py_CLEAR(self->default_size);
    Py_CLEAR(self->call_type);
    return 0;
}

static void
AioCore_dealloc(AioCoreObject *self)
{
    PyTypeObject *tp = Py_TYPE((PyObject *)self);
    PyObject_GC_UnTrack(self);
    AioCore_clear(self);
    ((freefunc)PyType_GetSlot(tp, Py_tp_free))((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
AioCore_get_device(AioCoreObject *self, void *Py_UNUSED(closure))
{
    if (self->device == NULL) {
        PyErr_SetString(PyExc_AttributeError, "device");
        return NULL;
    }
    return Py_NewRef((PyObject *)self->device);
}

#define TT_AIO_M(name, flags, doc) \
    {#name, (PyCFunction)(void (*)(void))AioCore_##name, (flags), PyDoc_STR(doc)}

static PyMethodDef AioCore_methods[] = {
    TT_AIO_M(readinto, METH_O,
             "readinto($self, buffer, /)\n--\n\n"
             "Read one packet into a writable bytes-like object; return its length.\n\n"
             "Never allocates. A packet longer than the buffer is truncated by the kernel.\n\n"
             "Raises\n------\nValueError\n    The device is closed (also when closed while "
             "waiting), empty buffer.\nOSError\n    The kernel's error (EFAULT/EBADFD: the "
             "interface was deleted)."),
    TT_AIO_M(read, METH_FASTCALL,
             "read($self, size=65536, /)\n--\n\n"
             "Read one packet and return it as bytes (at most size bytes)."),
    TT_AIO_M(read_batch, METH_O,
             "read_batch($self, batch, /)\n--\n\n"
             "Replace the batch's contents with up to batch.capacity packets.\n\n"
             "Waits for the first packet only, then takes whatever is queued. Returns the\n"
             "number of packets (len(batch)); batch[i] are zero-copy views. If the call\n"
             "is cancelled, the batch is left empty and any packets already read for it are\n"
             "returned by the next read."),
    TT_AIO_M(write, METH_O,
             "write($self, data, /)\n--\n\n"
             "Write one packet; return the bytes written.\n\n"
             "Waits while the device's send buffer (tuntap.Device.sndbuf) is full; a write\n"
             "never overtakes one that is waiting.\n\n"
             "Raises\n------\nOSError\n    EIO while the interface is down, EINVAL for a "
             "malformed packet, EFAULT/EBADFD\n    once the interface was deleted (the sync "
             "API's errors).\nValueError\n    Empty packet, closed device."),
    TT_AIO_M(write_batch, METH_O,
             "write_batch($self, packets, /)\n--\n\n"
             "Write a tuntap.PacketBatch or a sequence of packets, all of them.\n\n"
             "Waits while the send buffer is full and returns the number written: all of\n"
             "them, or, if a write after the first fails, the count written so far (the\n"
             "sync API's rule); if the first fails it raises."),
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef AioCore_getset[] = {
    {"device", (getter)AioCore_get_device, NULL, "The wrapped tuntap.Device.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot AioCore_slots[] = {
    {Py_tp_init, AioCore_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_methods, AioCore_methods},
    {Py_tp_getset, AioCore_getset},
    {Py_tp_traverse, AioCore_traverse},
    {Py_tp_clear, AioCore_clear},
    {Py_tp_dealloc, AioCore_dealloc},
    {Py_tp_doc, (void *)PyDoc_STR(
        "_AsyncCore(device, readers, writers, pushback, /)\n--\n\n"
        "The C base of tuntap.asyncio.AsyncDevice: its five I/O methods return\n"
        "awaitables that try first (a queued packet costs no event-loop round trip)\n"
        "and call self._wait(kind, arg, done) for the coroutine that waits.")},
    {0, NULL},
};

static PyType_Spec tt_aio_core_spec = {
    .name = TT_MODULE_NAME "._AsyncCore",
    .basicsize = sizeof(AioCoreObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = AioCore_slots,
};

int
tt_aio_add(PyObject *m, tt_state *st)
{
    if ((st->str_wait = PyUnicode_InternFromString("_wait")) == NULL ||
        (st->str_throw = PyUnicode_InternFromString("throw")) == NULL ||
        (st->str_close = PyUnicode_InternFromString("close")) == NULL) {
        return -1;
    }
    if ((st->AioCallType = tt_add_type(m, &tt_aio_call_spec)) == NULL ||
        (st->AioCoreType = tt_add_type(m, &tt_aio_core_spec)) == NULL) {
        return -1;
    }
    return 0;
}
