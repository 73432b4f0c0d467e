/*
 * netlink.h: the rtnetlink messages the library sends and the replies it parses.
 *
 * Pure C (no Python.h): message building, reply parsing and one blocking
 * request/reply exchange on a NETLINK_ROUTE socket. The Python side (control.c,
 * module functions) runs these through the I/O engine with the GIL released.
 * libFuzzer drives the builders and parsers directly (tests/fuzz/fuzz_netlink.c).
 *
 * Why rtnetlink at all: it speaks for the namespace the socket was opened in, so a
 * device made in another namespace stays manageable, and it tells what TUNGETIFF
 * cannot (packet info on/off). See docs/kernel.md.
 */
#ifndef TT_NETLINK_H
#define TT_NETLINK_H

#include <stddef.h>
#include <stdint.h>

#include <net/if.h>
#include <linux/netlink.h>

#ifndef IFNAMSIZ /* <net/if.h> hides it in strict ISO C modes */
#define IFNAMSIZ IF_NAMESIZE
#endif

/* What RTM_NEWLINK tells about one interface (include/uapi/linux/if_link.h:
 * IFLA_LINKINFO -> IFLA_INFO_KIND "tun" -> IFLA_INFO_DATA -> IFLA_TUN_*). */
typedef struct {
    int ifindex;
    int is_tun;             /* IFLA_INFO_KIND == "tun" */
    int type;               /* IFF_TUN or IFF_TAP, 0 if unknown */
    int pi, vnet_hdr, multi_queue, persist;
    int has_pi;             /* IFLA_TUN_PI was present */
    long long owner, group; /* -1: none */
    unsigned num_queues, num_disabled_queues;
    int carrier, has_carrier; /* IFLA_CARRIER: the link has carrier (TUNSETCARRIER) */
    unsigned mtu, min_mtu, max_mtu; /* IFLA_MTU, IFLA_MIN_MTU, IFLA_MAX_MTU; 0: absent */
    char kind[16];          /* IFLA_INFO_KIND ("tun", "veth", ...); "" when none (lo) */
    char name[IFNAMSIZ];
} tt_linkinfo;

/* A growable array of TUN/TAP links; free(items) when done. */
typedef struct {
    tt_linkinfo *items;
    size_t n, cap;
    int want_index; /* keep only this ifindex (0: all) */
    int keep_all;   /* keep links of every kind, not only TUN/TAP */
} tt_linklist;

/* Called for each reply message of the request's sequence number that is not
 * DONE/ERROR; return < 0 with errno set to stop with that error. */
typedef int (*tt_nl_cb)(const struct nlmsghdr *h, void *arg);

/* A fresh sequence number (atomic: any thread, GIL or not). */
uint32_t tt_nl_next_seq(void);

/* Append attribute `type` with `len` bytes of `data` to the message in a buffer
 * of `cap` bytes. Returns 0, or -1 (message unchanged) if it would not fit. */
int tt_nl_addattr(struct nlmsghdr *h, size_t cap, int type, const void *data, size_t len);

/* Parse one received datagram of `len` bytes: every message of sequence `seq`
 * goes to `cb` (may be NULL). Sets *done when NLMSG_DONE or NLMSG_ERROR ends the
 * reply. Returns 0, or an errno value (> 0): the kernel's NLMSG_ERROR code, or
 * the callback's error. Never reads outside buf[0..len). */
int tt_nl_parse(const void *buf, size_t len, uint32_t seq, tt_nl_cb cb, void *arg,
                int *done);

/* Fill `li` from one RTM_NEWLINK message (h->nlmsg_len bytes, which the caller
 * has checked lie inside its buffer). Returns 0, or -1 if it is too short to be a
 * link message. */
int tt_nl_parse_link(const struct nlmsghdr *h, tt_linkinfo *li);

/* tt_nl_cb that appends TUN/TAP links (every link with keep_all; arg: tt_linklist *). */
int tt_nl_collect_link(const struct nlmsghdr *h, void *arg);

/* Send `req` on the NETLINK_ROUTE socket `fd` and read replies until the ACK or
 * NLMSG_DONE. Blocking; retries EINTR itself (the kernel answers at once). Runs
 * without the GIL. Returns 0, or -1 with errno set. */
int tt_nl_transact(int fd, struct nlmsghdr *req, tt_nl_cb cb, void *arg);

/* RTM_GETLINK request for one ifindex (> 0, with an ACK) or a dump (0), stats
 * skipped. `buf` must hold TT_NL_GETLINK_SIZE bytes. */
#define TT_NL_GETLINK_SIZE 96
struct nlmsghdr *tt_nl_build_getlink(void *buf, int ifindex, uint32_t seq);

/* RTM_GETLINK request (with an ACK) for the interface called `name` (IFLA_IFNAME,
 * any kind of link). `buf` must hold TT_NL_GETLINK_SIZE bytes. NULL if name is
 * empty or longer than IFNAMSIZ - 1 bytes. */
struct nlmsghdr *tt_nl_build_getlink_name(void *buf, const char *name, uint32_t seq);

/* RTM_NEWADDR (add, create-exclusive) or RTM_DELADDR request for an address of
 * `alen` bytes (4 or 16) with IFA_LOCAL = addr and IFA_ADDRESS = peer (or addr:
 * on point-to-point links IFA_ADDRESS is the remote end, include/uapi/linux/
 * if_addr.h). `buf` must hold TT_NL_ADDR_SIZE bytes. Returns NULL if alen or
 * prefixlen is out of range. */
#define TT_NL_ADDR_SIZE 160
struct nlmsghdr *tt_nl_build_addr(void *buf, int add, int family, int ifindex,
                                  int prefixlen, const void *addr, const void *peer,
                                  size_t alen, uint32_t seq);

/* Both in one: the links of `ifindex` (or all) into `ll`. */
int tt_nl_getlinks(int fd, int ifindex, tt_linklist *ll);

/* The interface called `name`, of any kind, into *out. Returns 1 when found, 0
 * when there is none (the kernel's ENODEV), -1 with errno on any other error. */
int tt_nl_getlink_name(int fd, const char *name, tt_linkinfo *out);

#endif /* TT_NETLINK_H */
