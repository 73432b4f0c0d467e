/*
 * libFuzzer harness for src/netlink.c: the reply parser on arbitrary datagrams,
 * and the request builders on arbitrary parameters.
 *
 * Input byte 0 picks what to drive; the rest is the datagram (copied into an
 * aligned buffer of exactly its size, as recv() would fill one, so ASan sees any
 * read past its end) or the builders' parameters. Checked beyond memory safety:
 * parsed names are NUL-terminated within IFNAMSIZ, errors are valid errno values,
 * built messages stay inside their buffers and parse back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>
#include <linux/rtnetlink.h>

#include "netlink.h"

static void
drive_parser(const uint8_t *data, size_t size)
{
    tt_linklist ll = {0};
    uint32_t seq = 0;
    void *buf = malloc(size ? size : 1);
    int done = 0, err;
    size_t i;

    if (buf == NULL) {
        abort();
    }
    memcpy(buf, data, size);
    if (size >= 12) {
        memcpy(&seq, data + 8, 4); /* the first message's nlmsg_seq */
    }
    err = tt_nl_parse(buf, size, seq, tt_nl_collect_link, &ll, &done);
    if (err < 0 || err > 4095 || (err && !done)) {
        abort();
    }
    for (i = 0; i < ll.n; i++) {
        if (memchr(ll.items[i].name, 0, IFNAMSIZ) == NULL || !ll.items[i].is_tun) {
            abort();
        }
    }
    free(ll.items);

    /* Every kind of link (the lookup by name): strings terminated, and the IFLA_TUN_*
     * fields filled only for TUN/TAP links (another kind's IFLA_INFO_DATA is not
     * theirs). */
    memset(&ll, 0, sizeof(ll));
    ll.keep_all = 1;
    memcpy(buf, data, size);
    err = tt_nl_parse(buf, size, seq, tt_nl_collect_link, &ll, &done);
    if (err < 0 || err > 4095 || (err && !done)) {
        abort();
    }
    for (i = 0; i < ll.n; i++) {
        const tt_linkinfo *li = &ll.items[i];
        if (memchr(li->name, 0, IFNAMSIZ) == NULL ||
            memchr(li->kind, 0, sizeof(li->kind)) == NULL ||
            li->is_tun != (strcmp(li->kind, "tun") == 0) ||
            (!li->is_tun && (li->type || li->has_pi || li->owner != -1 || li->group != -1))) {
            abort();
        }
    }
    free(ll.items);
    free(buf);
}

static void
drive_builders(const uint8_t *data, size_t size)
{
    union {
        struct nlmsghdr h;
        char b[TT_NL_ADDR_SIZE];
    } req;
    uint8_t addr[16] = {0}, peer[16] = {0};
    struct nlmsghdr *h;
    int family, prefixlen, ifindex, done;
    size_t alen, cap, len;

    if (size < 8) {
        return;
    }
    family = (data[0] & 1) ? AF_INET6 : AF_INET;
    alen = data[1] % 20;
    prefixlen = (int)data[2] - 8;
    ifindex = (int)(int8_t)data[3];
    memcpy(addr, data + 4, size - 4 < 16 ? size - 4 : 16);
    h = tt_nl_build_addr(&req, data[0] & 2, family, ifindex, prefixlen, addr,
                         (data[0] & 4) ? peer : NULL, alen, 7);
    if (h != NULL) {
        if (h->nlmsg_len > TT_NL_ADDR_SIZE || h->nlmsg_seq != 7) {
            abort();
        }
        /* A request parses as one message of its sequence without a DONE. */
        if (tt_nl_parse(h, h->nlmsg_len, 7, NULL, NULL, &done) != 0 || done) {
            abort();
        }
    }
    /* addattr never writes past cap, and refuses what does not fit. */
    cap = NLMSG_LENGTH(0) + (size_t)data[5];
    if (cap > sizeof(req)) {
        cap = sizeof(req);
    }
    memset(&req, 0, sizeof(req));
    req.h.nlmsg_len = NLMSG_LENGTH(0);
    len = (size_t)data[6] * 3;
    if (len > 16) {
        len = 16;
    }
    if (tt_nl_addattr(&req.h, cap, data[7], addr, len) == 0 && req.h.nlmsg_len > cap) {
        abort();
    }
    h = tt_nl_build_getlink(&req, ifindex, 9);
    if (h->nlmsg_len > TT_NL_GETLINK_SIZE) {
        abort();
    }
    /* By name: refused unless 1..IFNAMSIZ-1 bytes; else inside its buffer, parses back. */
    {
        char name[24] = {0};
        size_t n = size - 8 < sizeof(name) - 1 ? size - 8 : sizeof(name) - 1;
        memcpy(name, data + 8, n);
        h = tt_nl_build_getlink_name(&req, name, 11);
        if ((h != NULL) != (strlen(name) >= 1 && strlen(name) < IFNAMSIZ)) {
            abort();
        }
        if (h != NULL && (h->nlmsg_len > TT_NL_GETLINK_SIZE ||
                          tt_nl_parse(h, h->nlmsg_len, 11, NULL, NULL, &done) != 0 || done)) {
            abort();
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    if (data[0] & 0x80) {
        drive_builders(data + 1, size - 1);
    }
    else {
        drive_parser(data + 1, size - 1);
    }
    return 0;
}
