/*
 * util.c: errors and argument checks shared by every unit (contracts in _tuntap.h).
 */
#include "_tuntap.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

int64_t
tt_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Works under the limited API too, where PyTypeObject is opaque. */
PyObject *
tt_type_error(PyObject *obj, const char *fmt, ...)
{
    va_list va;
    PyObject *msg, *tname;
#ifdef Py_LIMITED_API
    tname = PyType_GetName(Py_TYPE(obj));
#else
    tname = PyUnicode_FromString(Py_TYPE(obj)->tp_name);
#endif
    if (tname == NULL) {
        return NULL;
    }
    va_start(va, fmt);
    msg = PyUnicode_FromFormatV(fmt, va);
    va_end(va);
    if (msg != NULL) {
        PyErr_Format(PyExc_TypeError, "%U, not %.100U", msg, tname);
        Py_DECREF(msg);
    }
    Py_DECREF(tname);
    return NULL;
}

/* OSError(errno, msg[, filename]) returns the matching subclass (PEP 3151). */
static PyObject *
tt_raise_oserror(int err, PyObject *msg, const char *path)
{
    PyObject *exc;
    if (msg == NULL) {
        return NULL;
    }
    exc = path ? PyObject_CallFunction(PyExc_OSError, "iOs", err, msg, path)
               : PyObject_CallFunction(PyExc_OSError, "iO", err, msg);
    Py_DECREF(msg);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

PyObject *
tt_oserror(int err, const char *syscall, const char *ifname, const char *hint)
{
    if (ifname != NULL && ifname[0] != '\0') {
        return tt_raise_oserror(err, PyUnicode_FromFormat("%s: %s on '%s'%s", strerror(err),
                                                          syscall, ifname, hint ? hint : ""),
                                NULL);
    }
    return tt_raise_oserror(err, PyUnicode_FromFormat("%s: %s%s", strerror(err), syscall,
                                                      hint ? hint : ""),
                            NULL);
}

PyObject *
tt_oserror_path(int err, const char *syscall, const char *path)
{
    return tt_raise_oserror(err, PyUnicode_FromFormat("%s: %s", strerror(err), syscall),
                            path);
}

PyObject *
tt_oserror_path_hint(int err, const char *syscall, const char *path, const char *hint)
{
    return tt_raise_oserror(err, PyUnicode_FromFormat("%s: %s%s", strerror(err), syscall,
                                                      hint ? hint : ""),
                            path);
}

PyObject *
tt_closed_error(void)
{
    PyErr_SetString(PyExc_ValueError, "I/O operation on closed device");
    return NULL;
}

void
tt_set_ifname(struct ifreq *ifr, const char *name)
{
    memset(ifr, 0, sizeof(*ifr));
    snprintf(ifr->ifr_name, IFNAMSIZ, "%s", name);
}

/* The kernel silently truncates names longer than IFNAMSIZ-1 (net/core/dev.c:
 * dev_valid_name rejects '/', ':' and whitespace, but only after the copy), so
 * reject them here. */
int
tt_check_ifname(PyObject *obj, char out[IFNAMSIZ])
{
    Py_ssize_t len, i;
    const char *s;

    s = tt_str_arg(obj, &len, "interface name");
    if (s == NULL) {
        return -1;
    }
    if (len > IFNAMSIZ - 1) {
        PyErr_Format(PyExc_ValueError,
                     "interface name %R is %zd bytes long; the limit is %d", obj, len,
                     IFNAMSIZ - 1);
        return -1;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\0' || c == '/' || c == ':' || c == ' ' || (c >= '\t' && c <= '\r')) {
            PyErr_Format(PyExc_ValueError,
                         "interface name %R must not contain NUL, '/', ':' or whitespace",
                         obj);
            return -1;
        }
    }
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
        PyErr_Format(PyExc_ValueError, "interface name %R is not allowed", obj);
        return -1;
    }
    memcpy(out, s, (size_t)len);
    out[len] = '\0';
    return 0;
}

TT_DOC(tt_check_name__doc__,
"_check_name($module, name, /)\n--\n\n"
"Raise ValueError/TypeError for an interface name the kernel would refuse or\n"
"truncate (the check Device() makes before any syscall).");

PyObject *
tt_check_name(PyObject *Py_UNUSED(module), PyObject *arg)
{
    char name[IFNAMSIZ];
    if (tt_check_ifname(arg, name) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

int
tt_as_ssize(PyObject *obj, Py_ssize_t *out, const char *fname, const char *what)
{
    if (!PyLong_Check(obj)) {
        tt_type_error(obj, "%s() %s must be int", fname, what);
        return -1;
    }
    *out = PyLong_AsSsize_t(obj);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

int
tt_fastcall_optional(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t min,
                     const char *fname, PyObject **opt)
{
    if (nargs < min || nargs > min + 1) {
        if (min == 0) {
            PyErr_Format(PyExc_TypeError, "%s() takes at most 1 argument (%zd given)", fname,
                         nargs);
        }
        else {
            PyErr_Format(PyExc_TypeError, "%s() takes %zd or %zd arguments (%zd given)",
                         fname, min, min + 1, nargs);
        }
        return -1;
    }
    *opt = nargs > min ? args[min] : NULL;
    return 0;
}

const char *
tt_str_arg(PyObject *obj, Py_ssize_t *len, const char *what)
{
    if (!PyUnicode_Check(obj)) {
        tt_type_error(obj, "%s must be str", what);
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(obj, len);
}

int
tt_as_int(PyObject *obj, int *out, const char *what)
{
    long v;
    if (!PyLong_Check(obj)) {
        tt_type_error(obj, "%s must be int", what);
        return -1;
    }
    v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_Format(PyExc_OverflowError, "%s is out of range", what);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int
tt_parse_timeout(PyObject *obj, int64_t *out)
{
    double t;

    if (obj == Py_None) {
        *out = -1;
        return 0;
    }
    t = PyFloat_AsDouble(obj);
    if (t == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            tt_type_error(obj, "timeout must be a number or None");
        }
        return -1;
    }
    if (t != t) {
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return -1;
    }
    if (t < 0) {
        PyErr_SetString(PyExc_ValueError, "Timeout value out of range");
        return -1;
    }
    if (t > 9.2e9) {
        PyErr_SetString(PyExc_OverflowError, "timeout doesn't fit into C timeval");
        return -1;
    }
    *out = (int64_t)(t * 1e9);
    if (*out == 0 && t > 0) {
        *out = 1;
    }
    return 0;
}
