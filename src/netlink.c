/*
 * netlink.c: rtnetlink requests and replies in pure C (contract in netlink.h).
 */
#define _GNU_SOURCE
#include "netlink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>

/* Replies are read into a buffer of this size: a dump datagram is at most a page
 * or so per message and the kernel fits several into one recv (net/netlink/
 * af_netlink.c: netlink_dump allocates up to 32 KiB). */
#define TT_NL_BUFSIZE 32768

static uint32_t tt_nl_seq = 1;

uint32_t
tt_nl_next_seq(void)
{
    return __atomic_fetch_add(&tt_nl_seq, 1, __ATOMIC_RELAXED);
}

/* rtattr walking that never trusts rta_len: an attribute is valid only if its
 * header and its whole length lie inside what is left. */
#define TT_RTA_OK(rta, len)                                                         \
    ((len) >= (int)sizeof(struct rtattr) && (rta)->rta_len >= sizeof(struct rtattr) && \
     (int)(rta)->rta_len <= (len))
#define TT_RTA_NEXT(rta, len)                                                       \
    ((len) -= RTA_ALIGN((rta)->rta_len),                                            \
     (const struct rtattr *)(((const char *)(rta)) + RTA_ALIGN((rta)->rta_len)))

static unsigned
tt_rta_u32(const struct rtattr *rta)
{
    uint32_t v = 0;
    if (RTA_PAYLOAD(rta) >= sizeof(v)) {
        memcpy(&v, RTA_DATA(rta), sizeof(v));
    }
    return v;
}

static unsigned
tt_rta_u8(const struct rtattr *rta)
{
    return RTA_PAYLOAD(rta) >= 1 ? *(const uint8_t *)RTA_DATA(rta) : 0;
}

/* A string attribute into out[size]: at most its payload, cut at its first NUL, always
 * NUL-terminated (the kernel's strings need not carry their NUL). */
static void
tt_rta_str(const struct rtattr *rta, char *out, size_t size)
{
    size_t n = RTA_PAYLOAD(rta);
    const char *p = RTA_DATA(rta), *nul = memchr(p, 0, n);
    if (nul != NULL) {
        n = (size_t)(nul - p);
    }
    if (n > size - 1) {
        n = size - 1;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

int
tt_nl_addattr(struct nlmsghdr *h, size_t cap, int type, const void *data, size_t len)
{
    struct rtattr *rta;
    size_t at = NLMSG_ALIGN(h->nlmsg_len);
    /* The message grows by the aligned length: all of it must fit, or nlmsg_len
     * would claim bytes past the buffer (found by tests/fuzz/fuzz_netlink.c). */
    if (len > 0xffff - RTA_LENGTH(0) || at > cap || RTA_SPACE(len) > cap - at) {
        return -1;
    }
    rta = (struct rtattr *)((char *)h + at);
    rta->rta_type = (unsigned short)type;
    rta->rta_len = (unsigned short)RTA_LENGTH(len);
    if (len > 0) {
        memcpy(RTA_DATA(rta), data, len);
    }
    h->nlmsg_len = (uint32_t)(at + RTA_ALIGN(rta->rta_len));
    return 0;
}

/* IFLA_INFO_DATA of a "tun" link: the IFLA_TUN_* attributes (drivers/net/tun.c:
 * tun_fill_info), each a u8 (payload 1) or a u32 (payload 4). */
static void
tt_parse_tun_data(const struct rtattr *rta, int len, tt_linkinfo *li)
{
    uint32_t v[IFLA_TUN_MAX + 1] = {0};
    unsigned char seen[IFLA_TUN_MAX + 1] = {0};

    for (; TT_RTA_OK(rta, len); rta = TT_RTA_NEXT(rta, len)) {
        size_t n = RTA_PAYLOAD(rta);
        if (rta->rta_type > IFLA_TUN_MAX || n == 0) {
            continue;
        }
        if (n >= sizeof(uint32_t)) {
            memcpy(&v[rta->rta_type], RTA_DATA(rta), sizeof(uint32_t));
        }
        else {
            v[rta->rta_type] = *(const uint8_t *)RTA_DATA(rta);
        }
        seen[rta->rta_type] = 1;
    }
    li->type = (int)(v[IFLA_TUN_TYPE] & 0xff);
    li->pi = (int)(v[IFLA_TUN_PI] & 0xff);
    li->has_pi = seen[IFLA_TUN_PI];
    li->vnet_hdr = (int)(v[IFLA_TUN_VNET_HDR] & 0xff);
    li->persist = (int)(v[IFLA_TUN_PERSIST] & 0xff);
    li->multi_queue = (int)(v[IFLA_TUN_MULTI_QUEUE] & 0xff);
    if (seen[IFLA_TUN_OWNER]) {
        li->owner = v[IFLA_TUN_OWNER];
    }
    if (seen[IFLA_TUN_GROUP]) {
        li->group = v[IFLA_TUN_GROUP];
    }
    li->num_queues = v[IFLA_TUN_NUM_QUEUES];
    li->num_disabled_queues = v[IFLA_TUN_NUM_DISABLED_QUEUES];
}

int
tt_nl_parse_link(const struct nlmsghdr *h, tt_linkinfo *li)
{
    const struct ifinfomsg *ifi = NLMSG_DATA(h);
    const struct rtattr *rta, *sub, *data = NULL;
    int len, sublen;

    memset(li, 0, sizeof(*li));
    li->owner = li->group = -1;
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*ifi))) {
        return -1;
    }
    li->ifindex = ifi->ifi_index;
    rta = (const struct rtattr *)((const char *)ifi + NLMSG_ALIGN(sizeof(*ifi)));
    len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*ifi));
    for (; TT_RTA_OK(rta, len); rta = TT_RTA_NEXT(rta, len)) {
        switch (rta->rta_type) {
        case IFLA_IFNAME:
            tt_rta_str(rta, li->name, IFNAMSIZ);
            break;
        case IFLA_CARRIER:
            li->carrier = (int)tt_rta_u8(rta);
            li->has_carrier = RTA_PAYLOAD(rta) >= 1;
            break;
        case IFLA_MTU:
            li->mtu = tt_rta_u32(rta);
            break;
        case IFLA_MIN_MTU:
            li->min_mtu = tt_rta_u32(rta);
            break;
        case IFLA_MAX_MTU:
            li->max_mtu = tt_rta_u32(rta);
            break;
        case IFLA_LINKINFO:
            sub = RTA_DATA(rta);
            sublen = (int)RTA_PAYLOAD(rta);
            for (; TT_RTA_OK(sub, sublen); sub = TT_RTA_NEXT(sub, sublen)) {
                if (sub->rta_type == IFLA_INFO_KIND) {
                    /* "tun" with or without its NUL (drivers/net/tun.c: DRV_NAME). */
                    tt_rta_str(sub, li->kind, sizeof(li->kind));
                    li->is_tun = strcmp(li->kind, "tun") == 0;
                }
                else if (sub->rta_type == IFLA_INFO_DATA) {
                    data = sub;
                }
            }
            break;
        default:
            break;
        }
    }
    /* Another kind's IFLA_INFO_DATA holds its own attributes (IFLA_BR_*, ...). */
    if (li->is_tun && data != NULL) {
        tt_parse_tun_data(RTA_DATA(data), (int)RTA_PAYLOAD(data), li);
    }
    return 0;
}

int
tt_nl_collect_link(const struct nlmsghdr *h, void *arg)
{
    tt_linklist *ll = arg;
    tt_linkinfo li;

    if (h->nlmsg_type != RTM_NEWLINK || tt_nl_parse_link(h, &li) < 0) {
        return 0;
    }
    if ((!li.is_tun && !ll->keep_all) || (ll->want_index && li.ifindex != ll->want_index)) {
        return 0;
    }
    if (ll->n == ll->cap) {
        size_t cap = ll->cap ? ll->cap * 2 : 8;
        tt_linkinfo *p = realloc(ll->items, cap * sizeof(*p));
        if (p == NULL) {
            errno = ENOMEM;
            return -1;
        }
        ll->items = p;
        ll->cap = cap;
    }
    ll->items[ll->n++] = li;
    return 0;
}

int
tt_nl_parse(const void *buf, size_t len, uint32_t seq, tt_nl_cb cb, void *arg, int *done)
{
    const char *p = buf;
    size_t off = 0;

    *done = 0;
    while (len - off >= sizeof(struct nlmsghdr)) {
        const struct nlmsghdr *h = (const struct nlmsghdr *)(p + off);
        struct nlmsghdr hdr;
        memcpy(&hdr, h, sizeof(hdr));
        if (hdr.nlmsg_len < sizeof(struct nlmsghdr) || hdr.nlmsg_len > len - off) {
            break; /* truncated or garbage: the rest of the datagram is unusable */
        }
        if (hdr.nlmsg_seq == seq) {
            if (hdr.nlmsg_type == NLMSG_DONE) {
                *done = 1;
                return 0;
            }
            if (hdr.nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr e;
                *done = 1;
                if (hdr.nlmsg_len < NLMSG_LENGTH(sizeof(int))) {
                    return EPROTO;
                }
                memcpy(&e.error, NLMSG_DATA(h), sizeof(int));
                /* 0 is the ACK; the kernel sends -errno. */
                if (e.error > 0 || e.error < -4095) {
                    return EPROTO;
                }
                return -e.error;
            }
            if (cb != NULL && cb(h, arg) < 0) {
                *done = 1;
                return errno ? errno : EIO;
            }
        }
        /* a message of another sequence is a stale reply to an earlier,
         * interrupted request: skip it */
        if (NLMSG_ALIGN(hdr.nlmsg_len) >= len - off) {
            break;
        }
        off += NLMSG_ALIGN(hdr.nlmsg_len);
    }
    return 0;
}

int
tt_nl_transact(int fd, struct nlmsghdr *req, tt_nl_cb cb, void *arg)
{
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    char *buf;
    ssize_t n;
    int done = 0, err = 0;

    do {
        n = sendto(fd, req, req->nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -1;
    }
    buf = malloc(TT_NL_BUFSIZE);
    if (buf == NULL) {
        errno = ENOMEM;
        return -1;
    }
    while (!done && err == 0) {
        do {
            n = recv(fd, buf, TT_NL_BUFSIZE, 0);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            err = errno;
            break;
        }
        if (n == 0) {
            err = EPROTO;
            break;
        }
        err = tt_nl_parse(buf, (size_t)n, req->nlmsg_seq, cb, arg, &done);
    }
    free(buf);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

struct nlmsghdr *
tt_nl_build_getlink(void *buf, int ifindex, uint32_t seq)
{
    struct nlmsghdr *h = buf;
    struct ifinfomsg *ifi;
    uint32_t mask = RTEXT_FILTER_SKIP_STATS;

    memset(buf, 0, TT_NL_GETLINK_SIZE);
    h->nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
    h->nlmsg_type = RTM_GETLINK;
    /* A single GETLINK is answered by one RTM_NEWLINK and no ACK/DONE: ask for
     * the ACK so the reply loop ends. */
    h->nlmsg_flags = NLM_F_REQUEST | (ifindex > 0 ? NLM_F_ACK : NLM_F_DUMP);
    h->nlmsg_seq = seq;
    ifi = NLMSG_DATA(h);
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = ifindex > 0 ? ifindex : 0;
    (void)tt_nl_addattr(h, TT_NL_GETLINK_SIZE, IFLA_EXT_MASK, &mask, sizeof(mask));
    return h;
}

struct nlmsghdr *
tt_nl_build_addr(void *buf, int add, int family, int ifindex, int prefixlen,
                 const void *addr, const void *peer, size_t alen, uint32_t seq)
{
    struct nlmsghdr *h = buf;
    struct ifaddrmsg *ifa;

    if (!((family == AF_INET && alen == 4) || (family == AF_INET6 && alen == 16)) ||
        prefixlen < 0 || (size_t)prefixlen > alen * 8 || ifindex <= 0) {
        return NULL;
    }
    memset(buf, 0, TT_NL_ADDR_SIZE);
    h->nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
    h->nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
    h->nlmsg_seq = seq;
    ifa = NLMSG_DATA(h);
    ifa->ifa_family = (unsigned char)family;
    ifa->ifa_prefixlen = (unsigned char)prefixlen;
    ifa->ifa_index = (unsigned)ifindex;
    if (tt_nl_addattr(h, TT_NL_ADDR_SIZE, IFA_LOCAL, addr, alen) < 0 ||
        tt_nl_addattr(h, TT_NL_ADDR_SIZE, IFA_ADDRESS, peer ? peer : addr, alen) < 0) {
        return NULL;
    }
    return h;
}

int
tt_nl_getlinks(int fd, int ifindex, tt_linklist *ll)
{
    union {
        struct nlmsghdr h;
        char buf[TT_NL_GETLINK_SIZE];
    } req;
    ll->want_index = ifindex > 0 ? ifindex : 0;
    return tt_nl_transact(fd, tt_nl_build_getlink(&req, ifindex, tt_nl_next_seq()),
                          tt_nl_collect_link, ll);
}

struct nlmsghdr *
tt_nl_build_getlink_name(void *buf, const char *name, uint32_t seq)
{
    struct nlmsghdr *h;
    size_t n = strnlen(name, IFNAMSIZ);

    if (n == 0 || n >= IFNAMSIZ) {
        return NULL;
    }
    h = tt_nl_build_getlink(buf, 0, seq);
    /* By name: ifi_index 0 and IFLA_IFNAME (net/core/rtnetlink.c: rtnl_getlink);
     * one reply and no DONE, so ask for the ACK as for one ifindex. */
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    if (tt_nl_addattr(h, TT_NL_GETLINK_SIZE, IFLA_IFNAME, name, n + 1) < 0) {
        return NULL;
    }
    return h;
}

int
tt_nl_getlink_name(int fd, const char *name, tt_linkinfo *out)
{
    union {
        struct nlmsghdr h;
        char buf[TT_NL_GETLINK_SIZE];
    } req;
    tt_linklist ll = {0};
    struct nlmsghdr *h = tt_nl_build_getlink_name(&req, name, tt_nl_next_seq());
    int r;

    if (h == NULL) {
        return 0; /* no interface can have that name */
    }
    ll.keep_all = 1;
    r = tt_nl_transact(fd, h, tt_nl_collect_link, &ll);
    if (r < 0) {
        int err = errno;
        free(ll.items);
        errno = err;
        return err == ENODEV ? 0 : -1;
    }
    if (ll.n == 0) {
        free(ll.items);
        return 0;
    }
    *out = ll.items[0];
    free(ll.items);
    return 1;
}
