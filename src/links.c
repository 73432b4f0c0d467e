/*
 * links.c: the TUN/TAP interfaces of a network namespace, for list_devices() and
 * delete(): a dump of every TUN/TAP link, or the lookup of one name of any kind, on a
 * fresh NETLINK_ROUTE socket opened inside the namespace (a netlink socket answers
 * for the namespace it was created in; docs/kernel.md, "Namespaces and sysfs"). The
 * messages are built and parsed by netlink.c.
 */
#include "_tuntap.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netlink.h"

/* -- list_devices() -------------------------------------------------------- */

static PyObject *
tt_linkinfo_tuple(const tt_linkinfo *li)
{
    PyObject *owner = li->owner >= 0 ? PyLong_FromLongLong(li->owner) : Py_NewRef(Py_None);
    PyObject *group = li->group >= 0 ? PyLong_FromLongLong(li->group) : Py_NewRef(Py_None);
    PyObject *t = NULL;
    int flags = li->type;

    if (owner == NULL || group == NULL) {
        goto done;
    }
    if (!li->pi) {
        flags |= IFF_NO_PI;
    }
    if (li->vnet_hdr) {
        flags |= IFF_VNET_HDR;
    }
    if (li->multi_queue) {
        flags |= IFF_MULTI_QUEUE;
    }
    if (li->persist) {
        flags |= IFF_PERSIST;
    }
    t = Py_BuildValue("(siiOOOII)", li->name, li->ifindex, flags, owner, group,
                      li->persist ? Py_True : Py_False, li->num_queues,
                      li->num_disabled_queues);
done:
    Py_XDECREF(owner);
    Py_XDECREF(group);
    return t;
}

typedef struct {
    int nsfd;           /* the namespace to ask in, -1: the calling thread's */
    const char *name;   /* one link by name (any kind), or NULL: dump TUN/TAP links */
    const char *what;   /* the failing call */
    int found;
    tt_linkinfo li;
    tt_linklist ll;
} tt_links_ctx;

/* A fresh NETLINK_ROUTE socket in the namespace, then a dump of its TUN/TAP links
 * or the lookup of one name. */
static ssize_t
tt_links_impl(tt_op *op)
{
    tt_links_ctx *c = op->ctx;
    int fd = tt_netns_socket(c->nsfd, &c->what), r, err;
    if (fd < 0) {
        return -1;
    }
    c->what = "netlink(RTM_GETLINK)";
    if (c->name != NULL) {
        r = tt_nl_getlink_name(fd, c->name, &c->li);
        c->found = r == 1;
    }
    else {
        c->ll.n = 0;
        r = tt_nl_getlinks(fd, 0, &c->ll);
    }
    err = errno;
    close(fd);
    errno = err;
    return r < 0 ? -1 : 0;
}

/* GIL held. Run the dump or lookup in the namespace `netns` (an argument as for
 * Device(netns=...)). 0, or -1 with an exception. */
static int
tt_links_call(PyObject *netns, tt_links_ctx *c)
{
    char label[PATH_MAX];
    int owned = 0;
    tt_op op = {.impl = tt_links_impl, .ctx = c};
    Py_ssize_t r;

    c->nsfd = tt_resolve_netns(netns, &owned, label, sizeof(label));
    if (c->nsfd == -2) {
        return -1;
    }
    r = tt_call(NULL, &op);
    if (owned) {
        close(c->nsfd);
    }
    if (r < 0) {
        free(c->ll.items);
        c->ll.items = NULL;
        if (op.err) {
            tt_oserror(op.err, c->what, strncmp(c->what, "netlink", 7) ? label : NULL,
                       NULL);
        }
        return -1;
    }
    return 0;
}

TT_DOC(tt_list_links__doc__,
"_list_links($module, netns=None, /)\n--\n\n"
"Every TUN/TAP interface in a network namespace (default: the calling thread's),\n"
"from rtnetlink: (name, ifindex, flags, owner, group, persistent, queues,\n"
"disabled_queues) tuples.");

PyObject *
tt_list_links(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    tt_links_ctx c = {0};
    PyObject *list = NULL;
    size_t i;

    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "_list_links() takes at most 1 argument (%zd given)",
                     nargs);
        return NULL;
    }
    if (tt_links_call(nargs ? args[0] : Py_None, &c) < 0) {
        return NULL;
    }
    list = PyList_New(0);
    for (i = 0; list != NULL && i < c.ll.n; i++) {
        PyObject *t = tt_linkinfo_tuple(&c.ll.items[i]);
        if (t == NULL || PyList_Append(list, t) < 0) {
            Py_CLEAR(list);
        }
        Py_XDECREF(t);
    }
    free(c.ll.items);
    return list;
}

TT_DOC(tt_link_kind__doc__,
"_link_kind($module, name, netns=None, /)\n--\n\n"
"The rtnetlink kind of interface `name` in a network namespace (default: the\n"
"calling thread's): 'tun' for TUN/TAP, '' for none (lo, physical), None when\n"
"there is no such interface.");

PyObject *
tt_link_kind(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    char name[IFNAMSIZ];
    tt_links_ctx c = {0};

    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "_link_kind() takes 1 or 2 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    if (tt_check_ifname(args[0], name) < 0) {
        return NULL;
    }
    c.name = name;
    if (tt_links_call(nargs > 1 ? args[1] : Py_None, &c) < 0) {
        return NULL;
    }
    if (!c.found) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(c.li.kind);
}
