/*
 * tuntap._tuntap: Linux TUN/TAP devices for CPython. The module's entry: state
 * lookup, the module functions table, exec and PyInit.
 *
 * The units and what each owns are listed in _tuntap.h and docs/design.md; the
 * kernel behaviour they rely on is in docs/kernel.md.
 */
#include "_tuntap.h"

#include <linux/virtio_net.h>

PyTypeObject *
tt_add_type(PyObject *m, PyType_Spec *spec)
{
    PyTypeObject *type = (PyTypeObject *)PyType_FromModuleAndSpec(m, spec, NULL);
    if (type != NULL && PyModule_AddType(m, type) < 0) {
        Py_DECREF(type);
        return NULL;
    }
    return type;
}

tt_state *
tt_find_state(PyTypeObject *type)
{
#ifdef Py_LIMITED_API
    PyObject *mro = PyObject_GetAttrString((PyObject *)type, "__mro__");
    Py_ssize_t i, n = mro ? PyTuple_Size(mro) : 0;
    tt_state *st = NULL;
    for (i = 0; st == NULL && i < n; i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GetItem(mro, i);
        if (PyType_GetFlags(t) & Py_TPFLAGS_HEAPTYPE) {
            PyObject *m = PyType_GetModule(t);
            if (m == NULL) {
                PyErr_Clear();
            }
            else if (PyModule_GetDef(m) == &tt_module) {
                st = tt_get_state(m);
            }
        }
    }
    Py_XDECREF(mro);
    if (st != NULL) {
        return st;
    }
#else
    PyObject *mro = type->tp_mro;
    Py_ssize_t i, n = mro ? PyTuple_GET_SIZE(mro) : 0;
    for (i = 0; i < n; i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (t->tp_flags & Py_TPFLAGS_HEAPTYPE) {
            PyObject *m = ((PyHeapTypeObject *)t)->ht_module;
            if (m != NULL && PyModule_GetDef(m) == &tt_module) {
                return tt_get_state(m);
            }
        }
    }
#endif
    PyErr_SetString(PyExc_TypeError, "tuntap._tuntap state not found");
    return NULL;
}

static PyMethodDef tt_functions[] = {
    {"segment", (PyCFunction)(void (*)(void))tt_segment, METH_VARARGS | METH_KEYWORDS,
     tt_segment__doc__},
    {"coalesce", (PyCFunction)(void (*)(void))tt_coalesce, METH_VARARGS | METH_KEYWORDS,
     tt_coalesce__doc__},
    {"checksum", (PyCFunction)tt_checksum, METH_O, tt_checksum__doc__},
    {"_check_name", (PyCFunction)tt_check_name, METH_O, tt_check_name__doc__},
    {"features", (PyCFunction)(void (*)(void))tt_features, METH_FASTCALL, tt_features__doc__},
    {"_list_links", (PyCFunction)(void (*)(void))tt_list_links, METH_FASTCALL,
     tt_list_links__doc__},
    {"_link_kind", (PyCFunction)(void (*)(void))tt_link_kind, METH_FASTCALL,
     tt_link_kind__doc__},
    {"_after_fork_child", (PyCFunction)tt_after_fork_child, METH_NOARGS,
     tt_after_fork_child__doc__},
    {"_io_uring_probe", (PyCFunction)(void (*)(void))tt_io_uring_probe, METH_FASTCALL,
     tt_io_uring_probe__doc__},
    {NULL, NULL, 0, NULL},
};

/* os.register_at_fork(after_in_child=_after_fork_child): the child of os.fork()
 * must not share the engine's wake-up state with its parent (engine.c). */
static int
tt_register_at_fork(PyObject *m)
{
    PyObject *os = PyImport_ImportModule("os"), *reg = NULL, *cb = NULL, *args = NULL;
    PyObject *kw = NULL, *r = NULL;
    if (os == NULL || (reg = PyObject_GetAttrString(os, "register_at_fork")) == NULL ||
        (cb = PyObject_GetAttrString(m, "_after_fork_child")) == NULL ||
        (args = PyTuple_New(0)) == NULL || (kw = PyDict_New()) == NULL ||
        PyDict_SetItemString(kw, "after_in_child", cb) < 0) {
        goto done;
    }
    r = PyObject_Call(reg, args, kw);
done:
    Py_XDECREF(os);
    Py_XDECREF(reg);
    Py_XDECREF(cb);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static int
tt_exec(PyObject *m)
{
    tt_state *st = tt_get_state(m);

#define ADD_INT(name)                                                               \
    do {                                                                            \
        if (PyModule_AddIntConstant(m, #name, name) < 0) {                          \
            return -1;                                                              \
        }                                                                           \
    } while (0)

    if ((st->DeviceType = tt_add_type(m, &tt_device_spec)) == NULL ||
        (st->PacketBatchType = tt_add_type(m, &tt_batch_spec)) == NULL) {
        return -1;
    }
#if PY_VERSION_HEX < 0x030B0000
    /* Before 3.11 the buffer slots of PyType_FromSpec are ignored. */
    {
        static PyBufferProcs procs = {PacketBatch_getbuffer, NULL};
        st->PacketBatchType->tp_as_buffer = &procs;
    }
#endif
    if (tt_register_at_fork(m) < 0) {
        return -1;
    }
    ADD_INT(IFF_TUN);
    ADD_INT(IFF_TAP);
    ADD_INT(IFF_NO_PI);
    ADD_INT(IFF_ONE_QUEUE);
    ADD_INT(IFF_VNET_HDR);
    ADD_INT(IFF_TUN_EXCL);
    ADD_INT(IFF_MULTI_QUEUE);
    ADD_INT(IFF_PERSIST);
    ADD_INT(IFF_NOFILTER);
#ifdef IFF_NAPI
    ADD_INT(IFF_NAPI);
#endif
#ifdef IFF_NAPI_FRAGS
    ADD_INT(IFF_NAPI_FRAGS);
#endif
#ifdef IFF_NO_CARRIER
    ADD_INT(IFF_NO_CARRIER);
#endif
    ADD_INT(TUN_F_CSUM);
    ADD_INT(TUN_F_TSO4);
    ADD_INT(TUN_F_TSO6);
    ADD_INT(TUN_F_TSO_ECN);
    ADD_INT(TUN_F_UFO);
    ADD_INT(TUN_F_USO4);
    ADD_INT(TUN_F_USO6);
    ADD_INT(IFNAMSIZ);
#undef ADD_INT
    if (tt_aio_add(m, st) < 0) {
        return -1;
    }
    return tt_capi_add(m);
}

/* Every object reference the state holds, for traverse and clear. */
#define TT_STATE_REFS(X, st)                                                        \
    X((st)->DeviceType);                                                            \
    X((st)->PacketBatchType);                                                       \
    X((st)->AioCoreType);                                                           \
    X((st)->AioCallType);                                                           \
    X((st)->str_wait);                                                              \
    X((st)->str_throw);                                                             \
    X((st)->str_close);                                                             \
    X((st)->stop_iteration)

static int
tt_traverse(PyObject *m, visitproc visit, void *arg)
{
    TT_STATE_REFS(Py_VISIT, tt_get_state(m));
    return 0;
}

static int
tt_clear(PyObject *m)
{
    tt_state *st = tt_get_state(m);
    tt_aio_free_list_clear(st);
    TT_STATE_REFS(Py_CLEAR, st);
    return 0;
}

static void
tt_free(void *m)
{
    tt_clear((PyObject *)m);
}

static PyModuleDef_Slot tt_slots[] = {
    {Py_mod_exec, tt_exec},
    {0, NULL},
};

PyDoc_STRVAR(tt_module__doc__, "Linux TUN/TAP devices: the C core of the tuntap package.");

struct PyModuleDef tt_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = TT_MODULE_NAME,
    .m_doc = tt_module__doc__,
    .m_size = sizeof(tt_state),
    .m_methods = tt_functions,
    .m_slots = tt_slots,
    .m_traverse = tt_traverse,
    .m_clear = tt_clear,
    .m_free = tt_free,
};

PyMODINIT_FUNC
PyInit__tuntap(void)
{
    return PyModuleDef_Init(&tt_module);
}
