/* uring_proto.c: the io_uring designs for read_batch/write_batch, measured in C before
 * any of them is built into tuntap (issue: an io_uring backend).
 *
 *   cc -O2 -Wall -pthread -o /tmp/uring_proto benchmarks/uring_proto.c
 *   sudo taskset -c 1 /tmp/uring_proto probe             # what the kernel does (no timing)
 *   sudo taskset -c 1 /tmp/uring_proto bench [ROUNDS [N]] # the tables in benchmarks/README.md
 *
 * Needs root: it unshares a private network namespace first (gone when it exits), makes
 * one TUN device there (IFF_TUN | IFF_NO_PI, O_NONBLOCK like tuntap's), routes
 * 10.77.0.0/24 through it and fills its queue with 64-byte UDP datagrams from a socket.
 * Raw syscalls and <linux/io_uring.h> only (no liburing). N > 0 first installs a seccomp
 * filter of N instructions that allows everything but loads a syscall argument, so the
 * kernel cannot cache it: every syscall runs it, io_uring's internal reads and writes do
 * not. It dials the syscall round trip up (N = 1500: ~150 ns getppid, ~220 ns in
 * bench_io's measure) to the cost the issue's machine had, on this one.
 *
 * Read designs, each draining "a batch" of up to 64 packets into a 64 x 2048-byte arena,
 * the way Device.read_batch(PacketBatch(64)) does:
 *   read() loop      read() until the batch is full or EAGAIN (today's read_batch)
 *   uring N READ     N READ SQEs (one per slot) in one io_uring_enter, RWF_NOWAIT
 *   READ_FIXED       the arena registered (IORING_REGISTER_BUFFERS)
 *   fixed file       the TUN fd registered (IORING_REGISTER_FILES, IOSQE_FIXED_FILE)
 *   lean             fixed file + registered ring fd + IORING_SETUP_NO_SQARRAY
 *   dt               IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
 *   adaptive         first round n = last call's count + 1, then rounds of 2n until
 *                    full or a read says EAGAIN
 *   hybrid T         the first packet by read(); the rest by READ SQE rounds only if the
 *                    previous call took >= T packets (else read()), the first round at
 *                    most min(last, cap): what tuntap builds (T = 8, cap = 16)
 *   ring-first       the same without the read(), other first-round caps
 *   multishot        one READ_MULTISHOT into a provided-buffer ring whose buffers are
 *                    the arena's slots, cancelled at the end of every batch (armed, it
 *                    would go on consuming packets between calls)
 * Write designs, writing batches of 64 prebuilt 92-byte IPv4/UDP packets to a local UDP
 * socket: write() loop; N WRITE SQEs; linked (IOSQE_IO_LINK: a failure cancels the rest,
 * which write_batch's "count written so far" needs); WRITE_FIXED; coop
 * (IORING_SETUP_COOP_TASKRUN); dt; lean.
 *
 * Points: a full queue (K = 1024 queued, drained in batch calls: ns per packet), partly
 * filled queues (Q = 1, 4, 16, 64 packets queued, one call: ns per call, the call before
 * untimed so the designs that look at the last call are in their steady state), the first
 * call after a burst (256 drained, then 1 queued), writes of 1, 4, 16, 64 per call, and
 * the cost of one EAGAIN each way. ROUNDS rounds (default 7) after a warm-up, designs
 * interleaved and rotated per round; the median over rounds is printed with the paired
 * ratio (median of per-round ratios) to read()/write() of the same round. "calibration"
 * is what tuntap's io="auto" measures (uring.c: tt_uring_calibrate).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IORING_OP_READ_MULTISHOT
#define IORING_OP_READ_MULTISHOT 49 /* Linux 6.7; the 6.1 uapi headers lack it */
#endif
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)
#endif
#ifndef IORING_REGISTER_RING_FDS
#define IORING_REGISTER_RING_FDS 20
#endif
#ifndef IORING_ENTER_REGISTERED_RING
#define IORING_ENTER_REGISTERED_RING (1U << 4)
#endif

#define CAP 64
#define MAXN 256 /* slots in the arena: the 256-per-enter designs use them all */
#define SLOT 2048
#define KFULL 1024
#define MAXROUNDS 31

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* -- the device and its traffic ------------------------------------------------- */

static int tunfd, fillfd, sinkfd;
static struct sockaddr_in peer; /* 10.77.0.2:9, routed through the device */
static unsigned char pkt[92];   /* IPv4/UDP 10.77.0.2:4000 -> 10.77.0.1:9999, 64 B */

static void ifreq_ioctl(int s, unsigned long req, struct ifreq *ifr, const char *what)
{
    snprintf(ifr->ifr_name, IFNAMSIZ, "up0");
    if (ioctl(s, req, ifr) < 0)
        die(what);
}

static void set_addr(int s, unsigned long req, const char *a, const char *what)
{
    struct ifreq ifr;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    memset(&ifr, 0, sizeof ifr);
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, a, &sin->sin_addr);
    ifreq_ioctl(s, req, &ifr, what);
}

static void up(int s, const char *name)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        die("SIOCGIFFLAGS");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        die("SIOCSIFFLAGS");
}

static uint16_t csum(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)(b[i] << 8 | b[i + 1]);
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static void setup_device(void)
{
    struct ifreq ifr;
    struct sockaddr_in sa;
    int s, big = 64 << 20;
    FILE *f;

    if (unshare(CLONE_NEWNET) < 0)
        die("unshare(CLONE_NEWNET) (needs root)");
    f = fopen("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w");
    if (f) {
        fputs("1", f); /* no router solicitations in the queue */
        fclose(f);
    }
    tunfd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (tunfd < 0)
        die("open /dev/net/tun");
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, IFNAMSIZ, "up0");
    if (ioctl(tunfd, TUNSETIFF, &ifr) < 0)
        die("TUNSETIFF");
    s = socket(AF_INET, SOCK_DGRAM, 0);
    up(s, "lo");
    set_addr(s, SIOCSIFADDR, "10.77.0.1", "SIOCSIFADDR");
    set_addr(s, SIOCSIFNETMASK, "255.255.255.0", "SIOCSIFNETMASK");
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_qlen = 4096;
    ifreq_ioctl(s, SIOCSIFTXQLEN, &ifr, "SIOCSIFTXQLEN");
    up(s, "up0");
    close(s);

    fillfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&peer, 0, sizeof peer);
    peer.sin_family = AF_INET;
    peer.sin_port = htons(9);
    inet_pton(AF_INET, "10.77.0.2", &peer.sin_addr);
    setsockopt(fillfd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);

    sinkfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    setsockopt(sinkfd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(9999);
    if (bind(sinkfd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind sink");

    memset(pkt, 0, sizeof pkt);
    pkt[0] = 0x45;
    pkt[2] = 0;
    pkt[3] = sizeof pkt;
    pkt[6] = 0x40;
    pkt[8] = 64;
    pkt[9] = IPPROTO_UDP;
    inet_pton(AF_INET, "10.77.0.2", pkt + 12);
    inet_pton(AF_INET, "10.77.0.1", pkt + 16);
    uint16_t c = csum(pkt, 20);
    pkt[10] = (uint8_t)(c >> 8);
    pkt[11] = (uint8_t)c;
    pkt[20] = 4000 >> 8;
    pkt[21] = 4000 & 0xff;
    pkt[22] = 9999 >> 8;
    pkt[23] = 9999 & 0xff;
    pkt[25] = 8 + 64;
    for (int i = 0; i < 64; i++)
        pkt[28 + i] = (uint8_t)i;
}

static void fill(int q)
{
    static const char payload[64];
    for (int i = 0; i < q; i++)
        if (sendto(fillfd, payload, sizeof payload, 0, (struct sockaddr *)&peer, sizeof peer) < 0)
            die("sendto (fill)");
}

static int queue_empty(void)
{
    char b[SLOT];
    int n = 0;
    while (read(tunfd, b, sizeof b) >= 0)
        n++;
    return n == 0;
}

static int drain_sink(void)
{
    char b[2048];
    int n = 0;
    while (recv(sinkfd, b, sizeof b, 0) >= 0)
        n++;
    return n;
}

/* -- a minimal io_uring --------------------------------------------------------- */

struct ring {
    int fd, enter_fd;
    unsigned flags, enter_flags, entries;
    unsigned *sq_tail, sq_mask;
    unsigned *cq_head, *cq_tail, cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *sq_map, *cq_map;
    size_t sq_len, cq_len, sqes_len;
    unsigned tail; /* our copy of the SQ tail */
};

static int sys_setup(unsigned n, struct io_uring_params *p)
{
    return (int)syscall(__NR_io_uring_setup, n, p);
}

static int sys_enter(int fd, unsigned submit, unsigned wait, unsigned flags)
{
    return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, NULL, 0);
}

static int sys_register(int fd, unsigned op, void *arg, unsigned n)
{
    return (int)syscall(__NR_io_uring_register, fd, op, arg, n);
}

static int ring_init(struct ring *r, unsigned entries, unsigned flags)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    memset(r, 0, sizeof *r);
    p.flags = flags;
    r->fd = sys_setup(entries, &p);
    if (r->fd < 0)
        return -1;
    r->enter_fd = r->fd;
    r->flags = flags;
    r->entries = p.sq_entries;
    r->sq_len = (flags & IORING_SETUP_NO_SQARRAY) ? p.sq_off.ring_entries + 64
                                                 : p.sq_off.array + p.sq_entries * sizeof(unsigned);
    if (r->sq_len < p.sq_off.dropped + sizeof(unsigned) * 4)
        r->sq_len = p.sq_off.dropped + sizeof(unsigned) * 4;
    r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (!(p.features & IORING_FEAT_SINGLE_MMAP))
        die("no IORING_FEAT_SINGLE_MMAP (Linux < 5.4)");
    if (r->cq_len > r->sq_len)
        r->sq_len = r->cq_len;
    r->cq_len = r->sq_len;
    r->sq_map = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     r->fd, IORING_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED)
        die("mmap sq");
    r->cq_map = r->sq_map;
    r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                   IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED)
        die("mmap sqes");
    char *sq = r->sq_map;
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    r->cq_head = (unsigned *)(sq + p.cq_off.head);
    r->cq_tail = (unsigned *)(sq + p.cq_off.tail);
    r->cq_mask = *(unsigned *)(sq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(sq + p.cq_off.cqes);
    r->tail = *r->sq_tail;
    if (!(flags & IORING_SETUP_NO_SQARRAY)) {
        unsigned *array = (unsigned *)(sq + p.sq_off.array);
        for (unsigned i = 0; i < p.sq_entries; i++)
            array[i] = i; /* identity: SQE i is slot i */
    }
    return 0;
}

/* Enter through a registered ring fd (IORING_REGISTER_RING_FDS, Linux 5.18): the
 * kernel skips the fd lookup of the ring itself on every io_uring_enter. */
static void ring_register_self(struct ring *r)
{
    struct io_uring_rsrc_update u = {.offset = -1U, .data = (uint64_t)r->fd};
    if (sys_register(r->fd, IORING_REGISTER_RING_FDS, &u, 1) != 1)
        die("IORING_REGISTER_RING_FDS");
    r->enter_fd = (int)u.offset;
    r->enter_flags = IORING_ENTER_REGISTERED_RING;
}

static void ring_free(struct ring *r)
{
    munmap(r->sqes, r->sqes_len);
    munmap(r->sq_map, r->sq_len);
    close(r->fd);
}

static struct io_uring_sqe *sqe_get(struct ring *r)
{
    struct io_uring_sqe *s = &r->sqes[r->tail & r->sq_mask];
    r->tail++;
    memset(s, 0, sizeof *s);
    return s;
}

static void sqe_rw(struct io_uring_sqe *s, int op, int fd, void *buf, unsigned len,
                   uint64_t data)
{
    s->opcode = (uint8_t)op;
    s->fd = fd;
    s->addr = (uint64_t)(uintptr_t)buf;
    s->len = len;
    s->user_data = data;
}

static int ring_enter(struct ring *r, unsigned n, unsigned wait, unsigned flags)
{
    int ret = sys_enter(r->enter_fd, n, wait, flags | r->enter_flags);
    if (ret < 0)
        die("io_uring_enter");
    return ret;
}

/* Publish the SQEs prepared since the last call and enter; wait for `wait` CQEs. */
static int ring_submit(struct ring *r, unsigned n, unsigned wait)
{
    __atomic_store_n(r->sq_tail, r->tail, __ATOMIC_RELEASE);
    return ring_enter(r, n, wait, wait ? IORING_ENTER_GETEVENTS : 0);
}

/* Reap every CQE: by_ud[user_data] = res for user_data < MAXN, and the first `max`
 * in arrival order into res/cflags (either may be NULL). Returns the count. */
static unsigned ring_reap(struct ring *r, int *by_ud, int *res, unsigned *cflags, unsigned max)
{
    unsigned head = *r->cq_head, tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE), n = 0;
    for (; head != tail; head++, n++) {
        struct io_uring_cqe *c = &r->cqes[head & r->cq_mask];
        if (n < max && res)
            res[n] = c->res;
        if (n < max && cflags)
            cflags[n] = c->flags;
        if (by_ud && c->user_data < MAXN)
            by_ud[c->user_data] = c->res;
    }
    __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
    return n;
}

/* -- the arena and the designs -------------------------------------------------- */

static char *arena;  /* MAXN slots of SLOT bytes, the batch being read */
static uint32_t sizes[MAXN];
static char *warena; /* MAXN copies of pkt, the batch being written */

#define DT (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)
#define ALL (DT | IORING_SETUP_NO_SQARRAY)

struct design {
    const char *name;
    int kind;                    /* 'r' or 'w' */
    int (*fn)(struct design *d); /* one batch call: packets moved */
    int n;                       /* batch size (SQEs per enter for the N designs) */
    unsigned setup;              /* io_uring_setup flags */
    int fixed;                   /* the arena is a registered buffer (READ/WRITE_FIXED) */
    int ffile;                   /* the TUN fd is a registered file (IOSQE_FIXED_FILE) */
    int regring;                 /* enter through a registered ring fd */
    int link;                    /* writes linked (IOSQE_IO_LINK) */
    int full_only;               /* not run at the partly filled points */
    int last;                    /* adaptive: the previous call's count */
    int thresh;                  /* hybrid: io_uring only after a call of >= thresh */
    int cap1;                    /* hybrid: at most this many SQEs in the first round */
    int cap_full;                /* ring-first: first round after a full batch */
    int reset;                   /* hybrid: an empty queue resets last; no cap after a
                                    full batch (what tuntap builds) */
    struct ring ring;
    struct io_uring_buf_ring *br;
    size_t br_len;
    unsigned br_tail;
    int freebid[CAP], nfree;
};

static int do_read_loop(struct design *d)
{
    int i;
    for (i = 0; i < d->n; i++) {
        ssize_t n = read(tunfd, arena + i * SLOT, SLOT);
        if (n < 0)
            break;
        sizes[i] = (uint32_t)n;
    }
    return i;
}

static void prep_rw(struct design *d, struct io_uring_sqe *s, int write, char *buf,
                    unsigned len, uint64_t ud)
{
    int op = write ? (d->fixed ? IORING_OP_WRITE_FIXED : IORING_OP_WRITE)
                   : (d->fixed ? IORING_OP_READ_FIXED : IORING_OP_READ);
    sqe_rw(s, op, d->ffile ? 0 : tunfd, buf, len, ud);
    /* RWF_NOWAIT: without it a read on an empty queue does not complete with EAGAIN
     * but arms poll and stays pending (see "probe") */
    s->rw_flags = RWF_NOWAIT;
    if (d->ffile)
        s->flags |= IOSQE_FIXED_FILE;
}

/* One round of n READ SQEs into slots [first, first + n); returns how many of those
 * slots got a packet (a prefix: reads run in order inline, the rest said EAGAIN). */
static int uring_read_round(struct design *d, int first, int n)
{
    int by_ud[MAXN], got = 0;
    for (int i = 0; i < n; i++)
        prep_rw(d, sqe_get(&d->ring), 0, arena + (first + i) * SLOT, SLOT, (uint64_t)(first + i));
    ring_submit(&d->ring, (unsigned)n, 0);
    unsigned c = ring_reap(&d->ring, by_ud, NULL, NULL, 0);
    if (c != (unsigned)n) {
        fprintf(stderr, "%s: %u of %d CQEs (a read did not complete inline)\n", d->name, c, n);
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        int r = by_ud[first + i];
        if (r < 0)
            break;
        sizes[first + i] = (uint32_t)r;
        got++;
    }
    return got;
}

static int do_uring_n(struct design *d)
{
    return uring_read_round(d, 0, d->n);
}

static int do_uring_adaptive(struct design *d)
{
    int n = d->last + 1, total = 0;
    if (n > d->n)
        n = d->n;
    for (;;) {
        int got = uring_read_round(d, total, n);
        total += got;
        if (got < n || total == d->n)
            break;
        n = 2 * n < d->n - total ? 2 * n : d->n - total;
    }
    d->last = total;
    return total;
}

/* Hybrid: the first read of a call is a plain read() (an empty queue costs one EAGAIN
 * syscall, as today, and no SQE); the rest go through io_uring rounds only when the
 * previous call took at least d->thresh packets, else through more read()s. */
static int do_hybrid(struct design *d)
{
    int total, n;
    ssize_t r = read(tunfd, arena, SLOT);
    if (r < 0) {
        if (d->reset)
            d->last = 0; /* the queue ran dry: the next call starts on read() */
        return 0;
    }
    sizes[0] = (uint32_t)r;
    total = 1;
    if (d->last < d->thresh) {
        for (; total < d->n; total++) {
            r = read(tunfd, arena + total * SLOT, SLOT);
            if (r < 0)
                break;
            sizes[total] = (uint32_t)r;
        }
        d->last = total;
        return total;
    }
    n = d->last < d->n - 1 ? d->last : d->n - 1;
    if (d->cap1 && n > d->cap1 && !(d->reset && d->last >= d->n))
        n = d->cap1; /* bounds the EAGAINs of the first call after a burst */
    while (total < d->n) {
        int got = uring_read_round(d, total, n);
        total += got;
        if (got < n)
            break;
        n = 2 * n < d->n - total ? 2 * n : d->n - total;
    }
    d->last = total;
    return total;
}

/* Ring-first: after a call of >= thresh packets, no read() at all: READ SQEs from slot
 * 0 (an EAGAIN in the first one means "empty": the next call starts over with read()).
 * First round: a batch after a full one gets min(capacity, cap_full) SQEs, else
 * min(last + 1, cap1); then doubling. */
static int do_ringfirst(struct design *d)
{
    int total = 0, n;
    if (d->last < d->thresh) {
        int r = do_read_loop(d);
        d->last = r;
        return r;
    }
    n = d->last >= d->n ? (d->n < d->cap_full ? d->n : d->cap_full)
                        : (d->last + 1 < d->cap1 ? d->last + 1 : d->cap1);
    while (total < d->n) {
        int got = uring_read_round(d, total, n);
        total += got;
        if (got < n)
            break;
        n = 2 * n < d->n - total ? 2 * n : d->n - total;
    }
    d->last = total;
    return total;
}

/* The multishot design at its cheapest: the buffer ring always holds 64 free slots
 * (what a call consumed is handed back at the start of the next one, so packets land
 * in whichever slots were free: a real batch would still have to put them back in slot
 * order). Arm one READ_MULTISHOT, take what it reads, and cancel it unless running out
 * of buffers ended it (armed, it would consume packets between calls). */
static int do_multishot(struct design *d)
{
    int got = 0, ended = 0, cancel_sent = 0, cancel_done = 0;
    struct io_uring_buf *bufs = (struct io_uring_buf *)d->br;
    struct ring *r = &d->ring;
    for (int i = 0; i < d->nfree; i++) {
        struct io_uring_buf *b = &bufs[(d->br_tail + i) & (CAP - 1)];
        b->addr = (uint64_t)(uintptr_t)(arena + d->freebid[i] * SLOT);
        b->len = SLOT;
        b->bid = (uint16_t)d->freebid[i];
    }
    d->br_tail += (unsigned)d->nfree;
    d->nfree = 0;
    __atomic_store_n(&d->br->tail, (uint16_t)d->br_tail, __ATOMIC_RELEASE);
    struct io_uring_sqe *s = sqe_get(r);
    sqe_rw(s, IORING_OP_READ_MULTISHOT, tunfd, NULL, 0, 1000);
    s->flags = IOSQE_BUFFER_SELECT;
    s->buf_group = 0;
    ring_submit(r, 1, 0);
    for (int spins = 0; spins < 1000; spins++) {
        unsigned head = *r->cq_head, tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
        int fresh = head != tail;
        for (; head != tail; head++) {
            struct io_uring_cqe *c = &r->cqes[head & r->cq_mask];
            if (c->user_data == 1000) {
                if (c->res >= 0 && (c->flags & IORING_CQE_F_BUFFER)) {
                    int bid = (int)(c->flags >> IORING_CQE_BUFFER_SHIFT);
                    sizes[bid] = (uint32_t)c->res;
                    d->freebid[d->nfree++] = bid;
                    got++;
                } else if (c->res < 0 && c->res != -ENOBUFS && c->res != -ECANCELED) {
                    fprintf(stderr, "multishot: %s\n", strerror(-c->res));
                    exit(1);
                }
                if (!(c->flags & IORING_CQE_F_MORE))
                    ended = 1;
            } else if (c->user_data == 2000) {
                cancel_done = 1;
            }
        }
        __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
        if (ended && (!cancel_sent || cancel_done))
            return got;
        if (fresh && !cancel_sent && (d->setup & IORING_SETUP_DEFER_TASKRUN)) {
            /* each further read of the multishot is a poll wake-up run as deferred task
             * work, which only GETEVENTS runs: run it until no new CQE shows up */
            ring_enter(r, 0, 0, IORING_ENTER_GETEVENTS);
            continue;
        }
        if (!cancel_sent && !ended) {
            struct io_uring_sqe *cs = sqe_get(r);
            cs->opcode = IORING_OP_ASYNC_CANCEL;
            cs->fd = -1;
            cs->addr = 1000;
            cs->user_data = 2000;
            ring_submit(r, 1, 1);
            cancel_sent = 1;
        } else {
            ring_enter(r, 0, 1, IORING_ENTER_GETEVENTS);
        }
    }
    fprintf(stderr, "multishot: did not end\n");
    exit(1);
}

static int do_write_loop(struct design *d)
{
    int i;
    for (i = 0; i < d->n; i++)
        if (write(tunfd, warena + i * SLOT, sizeof pkt) < 0)
            die("write");
    return i;
}

static int do_uring_write(struct design *d)
{
    int by_ud[MAXN], n = d->n;
    for (int i = 0; i < n; i++) {
        struct io_uring_sqe *s = sqe_get(&d->ring);
        prep_rw(d, s, 1, warena + i * SLOT, sizeof pkt, (uint64_t)i);
        if (d->link && i < n - 1)
            s->flags |= IOSQE_IO_LINK;
    }
    /* GETEVENTS: with DEFER_TASKRUN, the next write of a link is task work it runs */
    ring_submit(&d->ring, (unsigned)n, (unsigned)n);
    unsigned c = ring_reap(&d->ring, by_ud, NULL, NULL, 0);
    if (c != (unsigned)n) {
        fprintf(stderr, "%s: %u of %d CQEs\n", d->name, c, n);
        exit(1);
    }
    for (int i = 0; i < n; i++)
        if (by_ud[i] != (int)sizeof pkt) {
            fprintf(stderr, "%s: write %d: %d\n", d->name, i, by_ud[i]);
            exit(1);
        }
    return n;
}

static void design_ring(struct design *d)
{
    if (ring_init(&d->ring, MAXN, d->setup) < 0)
        die("io_uring_setup");
    if (d->regring)
        ring_register_self(&d->ring);
    if (d->ffile && sys_register(d->ring.fd, IORING_REGISTER_FILES, &tunfd, 1) < 0)
        die("IORING_REGISTER_FILES");
    if (d->fixed) {
        struct iovec iov = {d->kind == 'r' ? arena : warena, MAXN * SLOT};
        if (sys_register(d->ring.fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0)
            die("IORING_REGISTER_BUFFERS");
    }
    if (d->fn == do_multishot) {
        struct io_uring_buf_reg reg;
        d->br_len = CAP * sizeof(struct io_uring_buf);
        d->br = mmap(NULL, d->br_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        if (d->br == MAP_FAILED)
            die("mmap buf ring");
        memset(&reg, 0, sizeof reg);
        reg.ring_addr = (uint64_t)(uintptr_t)d->br;
        reg.ring_entries = CAP;
        reg.bgid = 0;
        if (sys_register(d->ring.fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0)
            die("IORING_REGISTER_PBUF_RING");
        for (int i = 0; i < CAP; i++)
            d->freebid[i] = i;
        d->nfree = CAP;
    }
}

/* -- probe: what the kernel does ------------------------------------------------ */

static struct ring *probe_ring;
static int probe_ret, probe_errno;

static void *other_thread_submit(void *arg)
{
    struct ring *r = probe_ring;
    (void)arg;
    sqe_rw(sqe_get(r), IORING_OP_NOP, -1, NULL, 0, 1);
    __atomic_store_n(r->sq_tail, r->tail, __ATOMIC_RELEASE);
    probe_ret = sys_enter(r->fd, 1, 0, 0);
    probe_errno = errno;
    return NULL;
}

static void probe(void)
{
    struct ring r;
    int res[MAXN], by[MAXN];
    unsigned c;
    char buf[SLOT];
    struct io_uring_sqe *s;
    static const unsigned char bad[20]; /* IP version 0: tun_get_user says EINVAL */

    printf("kernel behaviour on an O_NONBLOCK TUN fd:\n");
    if (ring_init(&r, 64, 0) < 0)
        die("io_uring_setup");

    /* 1. READ on an empty queue, no RWF_NOWAIT */
    sqe_rw(sqe_get(&r), IORING_OP_READ, tunfd, buf, SLOT, 1);
    ring_submit(&r, 1, 0);
    c = ring_reap(&r, NULL, res, NULL, MAXN);
    printf("  READ, empty queue, no RWF_NOWAIT: ");
    if (c) {
        printf("completes at once, res %d (%s)\n", res[0], strerror(-res[0]));
    } else {
        fill(1);
        usleep(10000);
        c = ring_reap(&r, NULL, res, NULL, MAXN);
        printf("stays pending (armed poll); a packet sent 10 ms later completes it: %u CQE, "
               "res %d\n", c, c ? res[0] : 0);
    }
    /* 2. with RWF_NOWAIT */
    s = sqe_get(&r);
    sqe_rw(s, IORING_OP_READ, tunfd, buf, SLOT, 2);
    s->rw_flags = RWF_NOWAIT;
    ring_submit(&r, 1, 0);
    c = ring_reap(&r, NULL, res, NULL, MAXN);
    printf("  READ, empty queue, RWF_NOWAIT: %s res %d (%s)\n",
           c ? "completes at once," : "PENDING", c ? res[0] : 0, c ? strerror(-res[0]) : "");
    /* 3. WRITE with RWF_NOWAIT */
    s = sqe_get(&r);
    sqe_rw(s, IORING_OP_WRITE, tunfd, pkt, sizeof pkt, 3);
    s->rw_flags = RWF_NOWAIT;
    ring_submit(&r, 1, 0);
    c = ring_reap(&r, NULL, res, NULL, MAXN);
    printf("  WRITE, RWF_NOWAIT: %u CQE, res %d (the sink got %d)\n", c, c ? res[0] : 0,
           drain_sink());
    /* 4. a malformed packet among 4 writes, linked and not */
    for (int link = 1; link >= 0; link--) {
        for (int i = 0; i < 4; i++) {
            s = sqe_get(&r);
            sqe_rw(s, IORING_OP_WRITE, tunfd, i == 1 ? (void *)bad : (void *)pkt,
                   i == 1 ? sizeof bad : sizeof pkt, (uint64_t)i);
            s->rw_flags = RWF_NOWAIT;
            if (link && i < 3)
                s->flags = IOSQE_IO_LINK;
        }
        ring_submit(&r, 4, 4);
        c = ring_reap(&r, by, NULL, NULL, 0);
        printf("  4 %s WRITEs, #1 malformed: %u CQEs, res %d %d %d %d (the sink got %d)\n",
               link ? "linked" : "unlinked", c, by[0], by[1], by[2], by[3], drain_sink());
    }
    /* 5. reads in a link: a packet shorter than the buffer is a short read */
    fill(3);
    for (int i = 0; i < 3; i++) {
        s = sqe_get(&r);
        sqe_rw(s, IORING_OP_READ, tunfd, arena + i * SLOT, SLOT, (uint64_t)i);
        s->rw_flags = RWF_NOWAIT;
        if (i < 2)
            s->flags = IOSQE_IO_LINK;
    }
    ring_submit(&r, 3, 3);
    c = ring_reap(&r, by, NULL, NULL, 0);
    printf("  3 linked READs, 3 packets queued: res %d %d %d (a short read breaks a link)\n",
           by[0], by[1], by[2]);
    (void)queue_empty();
    /* 6. truncation: a 10-byte read of a 92-byte packet */
    fill(1);
    s = sqe_get(&r);
    sqe_rw(s, IORING_OP_READ, tunfd, buf, 10, 9);
    s->rw_flags = RWF_NOWAIT;
    ring_submit(&r, 1, 0);
    ring_reap(&r, NULL, res, NULL, MAXN);
    printf("  READ of 10 bytes, 92-byte packet: res %d; queue empty after: %s\n", res[0],
           queue_empty() ? "yes (the rest is discarded, as with read())" : "no");
    ring_free(&r);

    /* 7. multishot read into a provided-buffer ring */
    struct design m = {.name = "multishot", .kind = 'r', .fn = do_multishot};
    design_ring(&m);
    fill(5);
    int got = do_multishot(&m);
    printf("  READ_MULTISHOT, 5 queued, cancelled at the end: %d packets; queue empty: %s\n",
           got, queue_empty() ? "yes" : "no");
    fill(3);
    s = sqe_get(&m.ring);
    sqe_rw(s, IORING_OP_READ_MULTISHOT, tunfd, NULL, 0, 5);
    s->flags = IOSQE_BUFFER_SELECT;
    ring_submit(&m.ring, 1, 0);
    c = ring_reap(&m.ring, NULL, NULL, NULL, 0);
    printf("  READ_MULTISHOT left armed: %u CQEs at submit (3 queued)", c);
    fill(2);
    usleep(10000);
    c = ring_reap(&m.ring, NULL, NULL, NULL, 0);
    printf(", then %u more for 2 packets sent later: it keeps consuming the queue\n", c);
    ring_free(&m.ring);
    (void)queue_empty();

    /* 8. SINGLE_ISSUER: a second thread may not submit */
    printf("  SINGLE_ISSUER|DEFER_TASKRUN ring: ");
    if (ring_init(&r, 8, DT) < 0) {
        printf("refused (%s)\n", strerror(errno));
    } else {
        pthread_t th;
        probe_ring = &r;
        pthread_create(&th, NULL, other_thread_submit, NULL);
        pthread_join(th, NULL);
        printf("another thread submitting gets %d (%s)\n", probe_ret,
               probe_ret < 0 ? strerror(probe_errno) : "accepted");
        ring_free(&r);
    }
}

/* -- bench ---------------------------------------------------------------------- */

static double median_d(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double x = v[j];
            v[j] = v[j - 1];
            v[j - 1] = x;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double median(const long long *t, int n)
{
    double v[MAXROUNDS];
    for (int i = 0; i < n; i++)
        v[i] = (double)t[i];
    return median_d(v, n);
}

/* Paired ratio: the median over rounds of t[r] / base[r]. */
static double pratio(const long long *t, const long long *base, int n)
{
    double v[MAXROUNDS];
    for (int i = 0; i < n; i++)
        v[i] = (double)t[i] / (double)base[i];
    return median_d(v, n);
}

/* Full queue: KFULL packets queued (reads), drained in batch calls; ns for all. */
static long long run_full(struct design *d)
{
    int left = KFULL;
    long long t0, t1;
    if (d->kind == 'r') {
        fill(KFULL);
        t0 = now_ns();
        while (left > 0) {
            int n = d->fn(d);
            if (n <= 0) {
                fprintf(stderr, "%s: empty batch with %d left\n", d->name, left);
                exit(1);
            }
            left -= n;
        }
        t1 = now_ns();
        if (left != 0 || !queue_empty()) {
            fprintf(stderr, "%s: read %d too many, or the queue is not empty\n", d->name, -left);
            exit(1);
        }
    } else {
        t0 = now_ns();
        while (left > 0)
            left -= d->fn(d);
        t1 = now_ns();
        int got = drain_sink();
        if (got != KFULL) {
            fprintf(stderr, "%s: the sink got %d of %d\n", d->name, got, KFULL);
            exit(1);
        }
    }
    return t1 - t0;
}

/* Q packets queued, then one batch call; CALLS times; ns summed over the calls. */
#define CALLS 64
static long long run_partial(struct design *d, int q)
{
    long long sum = 0;
    if (d->kind == 'w') {
        int n = d->n;
        d->n = q; /* a batch of q packets to write */
        for (int c = -1; c < CALLS; c++) {
            long long t0 = now_ns();
            d->fn(d);
            if (c >= 0)
                sum += now_ns() - t0;
        }
        d->n = n;
        if (drain_sink() != q * (CALLS + 1)) {
            fprintf(stderr, "%s: the sink lost packets\n", d->name);
            exit(1);
        }
        return sum;
    }
    fill(q);
    if (d->fn(d) != q) { /* untimed: the steady state for q */
        fprintf(stderr, "%s: short batch\n", d->name);
        exit(1);
    }
    for (int c = 0; c < CALLS; c++) {
        fill(q);
        long long t0 = now_ns();
        int n = d->fn(d);
        sum += now_ns() - t0;
        if (n != q) {
            fprintf(stderr, "%s: got %d of %d queued\n", d->name, n, q);
            exit(1);
        }
    }
    return sum;
}

/* The first call after a burst: 256 packets drained (untimed) down to a call that
 * finds the queue empty, one packet queued, one call (timed), TRANS times; ns summed. */
#define TRANS 16
static long long run_transition(struct design *d)
{
    long long sum = 0;
    for (int c = 0; c < TRANS; c++) {
        fill(CAP * 4);
        for (int left = CAP * 4; left > 0;)
            left -= d->fn(d);
        if (d->fn(d) != 0) { /* the call that finds the queue empty, as a reader makes */
            fprintf(stderr, "%s: queue not empty after the burst\n", d->name);
            exit(1);
        }
        fill(1);
        long long t0 = now_ns();
        int n = d->fn(d);
        sum += now_ns() - t0;
        if (n != 1) {
            fprintf(stderr, "%s: transition got %d\n", d->name, n);
            exit(1);
        }
    }
    return sum;
}

/* The cost of EAGAIN: reads on an empty queue, each way, ns per read. */
static void eagain_cost(int rounds)
{
    struct ring r;
    char buf[SLOT];
    long long ts[MAXROUNDS], tu[MAXROUNDS], tuf[MAXROUNDS];
    enum { REPS = 1000 };

    if (ring_init(&r, MAXN, 0) < 0)
        die("io_uring_setup");
    for (int rd = 0; rd < rounds; rd++) {
        long long t0 = now_ns();
        for (int i = 0; i < REPS * CAP; i++)
            if (read(tunfd, buf, sizeof buf) >= 0)
                die("read: a packet in an empty queue");
        ts[rd] = now_ns() - t0;
        t0 = now_ns();
        for (int i = 0; i < REPS; i++) {
            for (int j = 0; j < CAP; j++) {

                struct io_uring_sqe *s = sqe_get(&r);
                sqe_rw(s, IORING_OP_READ, tunfd, arena + j * SLOT, SLOT, (uint64_t)j);
                s->rw_flags = RWF_NOWAIT;
            }
            ring_submit(&r, CAP, 0);
            ring_reap(&r, NULL, NULL, NULL, 0);
        }
        tu[rd] = now_ns() - t0;
        t0 = now_ns();
        for (int i = 0; i < REPS * CAP; i++) {
            struct io_uring_sqe *s = sqe_get(&r);
            sqe_rw(s, IORING_OP_READ, tunfd, buf, SLOT, 0);
            s->rw_flags = RWF_NOWAIT;
            ring_submit(&r, 1, 0);
            ring_reap(&r, NULL, NULL, NULL, 0);
        }
        tuf[rd] = now_ns() - t0;
    }
    printf("\n| EAGAIN (empty queue): ns per read | median |\n|---|---:|\n");
    printf("| read() returning EAGAIN | %.0f |\n", median(ts, rounds) / (REPS * CAP));
    printf("| READ SQE completing -EAGAIN, 64 per io_uring_enter | %.0f |\n",
           median(tu, rounds) / (REPS * CAP));
    printf("| READ SQE completing -EAGAIN, 1 per io_uring_enter | %.0f |\n",
           median(tuf, rounds) / (REPS * CAP));
    ring_free(&r);
}

#define D(nm, k, f, nn, st, fx, ff, rr, lk, fo) \
    {.name = nm, .kind = k, .fn = f, .n = nn, .setup = st, .fixed = fx, .ffile = ff, \
     .regring = rr, .link = lk, .full_only = fo}
#define H(nm, t, c1) \
    {.name = nm, .kind = 'r', .fn = do_hybrid, .n = CAP, .setup = 0, .ffile = 1, .thresh = t, \
     .cap1 = c1}
#define LEAN IORING_SETUP_NO_SQARRAY /* + fixed file + registered ring, below */
#define COOP (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG)
static struct design rd[] = {
    D("read() loop", 'r', do_read_loop, CAP, 0, 0, 0, 0, 0, 0),
    D("uring 64 READ", 'r', do_uring_n, CAP, 0, 0, 0, 0, 0, 0),
    D("uring 64 READ, dt", 'r', do_uring_n, CAP, DT, 0, 0, 0, 0, 0),
    D("uring 64 READ_FIXED (arena registered)", 'r', do_uring_n, CAP, 0, 1, 0, 0, 0, 0),
    D("uring 64 READ, fixed file", 'r', do_uring_n, CAP, 0, 0, 1, 0, 0, 0),
    D("uring 64 READ, lean", 'r', do_uring_n, CAP, LEAN, 0, 1, 1, 0, 0),
    D("uring 64 READ, lean, dt", 'r', do_uring_n, CAP, LEAN | DT, 0, 1, 1, 0, 0),
    D("uring 256 READ, lean", 'r', do_uring_n, MAXN, LEAN, 0, 1, 1, 0, 1),
    D("uring adaptive READ", 'r', do_uring_adaptive, CAP, 0, 0, 0, 0, 0, 0),
    D("uring adaptive READ, lean", 'r', do_uring_adaptive, CAP, LEAN, 0, 1, 1, 0, 0),
    H("hybrid, fixed file, T=4", 4, 0),
    H("hybrid, fixed file, T=8", 8, 0),
    H("hybrid, fixed file, T=8, first round <= 16", 8, 16),
    H("hybrid, fixed file, T=8, first round <= 32", 8, 32),
    {.name = "hybrid, T=8, <= 16 unless after a full batch, EAGAIN resets (tuntap)",
     .kind = 'r', .fn = do_hybrid, .n = CAP, .ffile = 1, .thresh = 8, .cap1 = 16, .reset = 1},
    {.name = "ring-first, T=8, first round last+1 <= 32, after full 32", .kind = 'r',
     .fn = do_ringfirst, .n = CAP, .ffile = 1, .thresh = 8, .cap1 = 32, .cap_full = 32},
    {.name = "ring-first, T=8, first round last+1 (no cap)", .kind = 'r',
     .fn = do_ringfirst, .n = CAP, .ffile = 1, .thresh = 8, .cap1 = 64, .cap_full = 64},
    D("multishot + cancel", 'r', do_multishot, CAP, 0, 0, 0, 0, 0, 0),
    D("multishot + cancel, dt", 'r', do_multishot, CAP, DT, 0, 0, 0, 0, 0),
};
static struct design wr[] = {
    D("write() loop", 'w', do_write_loop, CAP, 0, 0, 0, 0, 0, 0),
    D("uring 64 WRITE", 'w', do_uring_write, CAP, 0, 0, 0, 0, 0, 0),
    D("uring 64 WRITE, lean", 'w', do_uring_write, CAP, LEAN, 0, 1, 1, 0, 0),
    D("uring 64 WRITE linked", 'w', do_uring_write, CAP, 0, 0, 0, 0, 1, 0),
    D("uring 64 WRITE linked, coop", 'w', do_uring_write, CAP, COOP, 0, 0, 0, 1, 0),
    D("uring 64 WRITE linked, dt", 'w', do_uring_write, CAP, DT, 0, 0, 0, 1, 0),
    D("uring 64 WRITE_FIXED linked, dt", 'w', do_uring_write, CAP, DT, 1, 0, 0, 1, 0),
    D("uring 64 WRITE linked, lean, dt", 'w', do_uring_write, CAP, LEAN | DT, 0, 1, 1, 1, 0),
    D("uring 256 WRITE linked, lean, dt", 'w', do_uring_write, MAXN, LEAN | DT, 0, 1, 1, 1, 1),
    D("uring 64 WRITE linked, fixed file, dt", 'w', do_uring_write, CAP, DT, 0, 1, 0, 1, 0),
};
#define NR ((int)(sizeof rd / sizeof rd[0]))
#define NW ((int)(sizeof wr / sizeof wr[0]))

static void bench(int rounds)
{
    static const int qs[] = {1, 4, 16, 64};
    static long long full_r[NR][MAXROUNDS], part[NR][4][MAXROUNDS], full_w[NW][MAXROUNDS];
    static long long trans[NR][MAXROUNDS], wpart[NW][4][MAXROUNDS];

    for (int i = 1; i < NR; i++)
        design_ring(&rd[i]);
    for (int i = 1; i < NW; i++)
        design_ring(&wr[i]);

    for (int r = -1; r < rounds; r++) { /* round -1: warm-up */
        for (int j = 0; j < NR; j++) {
            int i = (j + r + 1) % NR;
            long long t = run_full(&rd[i]);
            if (r >= 0)
                full_r[i][r] = t;
            for (int q = 0; q < 4 && !rd[i].full_only; q++) {
                t = run_partial(&rd[i], qs[q]);
                if (r >= 0)
                    part[i][q][r] = t;
            }
            if (!rd[i].full_only) {
                t = run_transition(&rd[i]);
                if (r >= 0)
                    trans[i][r] = t;
            }
        }
        for (int j = 0; j < NW; j++) {
            int i = (j + r + 1) % NW;
            long long t = run_full(&wr[i]);
            if (r >= 0)
                full_w[i][r] = t;
            for (int q = 0; q < 4 && !wr[i].full_only; q++) {
                t = run_partial(&wr[i], qs[q]);
                if (r >= 0)
                    wpart[i][q][r] = t;
            }
        }
    }

    printf("\n| read design | K=1024 queued: ns/packet (x read()) | Q=1: ns/call | Q=4 |"
           " Q=16 | Q=64 | 1 after a burst |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < NR; i++) {
        printf("| %s | %.0f (%.2fx) |", rd[i].name, median(full_r[i], rounds) / KFULL,
               pratio(full_r[i], full_r[0], rounds));
        for (int q = 0; q < 4; q++) {
            if (rd[i].full_only)
                printf(" - |");
            else
                printf(" %.0f (%.2fx) |", median(part[i][q], rounds) / CALLS,
                       pratio(part[i][q], part[0][q], rounds));
        }
        if (rd[i].full_only)
            printf(" - |\n");
        else
            printf(" %.0f (%.2fx) |\n", median(trans[i], rounds) / TRANS,
                   pratio(trans[i], trans[0], rounds));
    }
    printf("\n| write design | K=1024: ns/packet (x write()) | batch of 1: ns/call | 4 | 16 |"
           " 64 |\n|---|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < NW; i++) {
        printf("| %s | %.0f (%.2fx) |", wr[i].name, median(full_w[i], rounds) / KFULL,
               pratio(full_w[i], full_w[0], rounds));
        for (int q = 0; q < 4; q++) {
            if (wr[i].full_only)
                printf(" - |");
            else
                printf(" %.0f (%.2fx) |", median(wpart[i][q], rounds) / CALLS,
                       pratio(wpart[i][q], wpart[0][q], rounds));
        }
        printf("\n");
    }
    eagain_cost(rounds);
}

/* A seccomp filter of n instructions that allows everything. It loads a syscall
 * argument, so the kernel cannot prove it constant and cache it (the seccomp action
 * bitmap, Linux 5.11): every syscall runs all n instructions, while the reads and
 * writes io_uring issues internally do not enter through the syscall path at all.
 * A dial for the syscall round trip cost. */
static void install_seccomp(int n)
{
    struct sock_filter *f = calloc((size_t)n, sizeof *f);
    struct sock_fprog prog = {.len = (unsigned short)n, .filter = f};
    for (int i = 0; i < n - 1; i++)
        f[i] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                            offsetof(struct seccomp_data, args[0]));
    f[n - 1] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        die("seccomp");
    free(f);
}

/* Cheap stand-ins for the crossover, each ns per operation, median of 9:
 * [0] getppid(), [1] read() of an empty non-blocking eventfd (EAGAIN), [2] one NOP
 * SQE of 64 per io_uring_enter, [3] one READ SQE (RWF_NOWAIT, registered file) of the
 * empty eventfd of 64 per io_uring_enter. */
static void calibrate(double out[4])
{
    enum { OPS = 64, TRIES = 9 };
    struct ring r;
    uint64_t v;
    double t[4][TRIES];
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0 || ring_init(&r, OPS, IORING_SETUP_NO_SQARRAY) < 0)
        die("calibrate");
    if (sys_register(r.fd, IORING_REGISTER_FILES, &efd, 1) < 0)
        die("IORING_REGISTER_FILES");
    for (int k = 0; k < TRIES; k++) {
        long long t0 = now_ns();
        for (int i = 0; i < OPS; i++)
            syscall(SYS_getppid);
        t[0][k] = (double)(now_ns() - t0) / OPS;
        t0 = now_ns();
        for (int i = 0; i < OPS; i++)
            if (read(efd, &v, sizeof v) >= 0)
                die("eventfd read");
        t[1][k] = (double)(now_ns() - t0) / OPS;
        t0 = now_ns();
        for (int i = 0; i < OPS; i++)
            sqe_get(&r)->opcode = IORING_OP_NOP;
        ring_submit(&r, OPS, 0);
        ring_reap(&r, NULL, NULL, NULL, 0);
        t[2][k] = (double)(now_ns() - t0) / OPS;
        t0 = now_ns();
        for (int i = 0; i < OPS; i++) {
            struct io_uring_sqe *s = sqe_get(&r);
            sqe_rw(s, IORING_OP_READ, 0, &v, sizeof v, 0);
            s->flags = IOSQE_FIXED_FILE;
            s->rw_flags = RWF_NOWAIT;
        }
        ring_submit(&r, OPS, 0);
        ring_reap(&r, NULL, NULL, NULL, 0);
        t[3][k] = (double)(now_ns() - t0) / OPS;
    }
    for (int j = 0; j < 4; j++)
        out[j] = median_d(t[j], TRIES);
    ring_free(&r);
    close(efd);
}

static double syscall_ns(void)
{
    enum { N = 200000 };
    long long t0 = now_ns();
    for (int i = 0; i < N; i++)
        syscall(SYS_getppid);
    return (double)(now_ns() - t0) / N;
}

int main(int argc, char **argv)
{
    int rounds = 7, filter = 0;
    if (argc < 2 || (strcmp(argv[1], "probe") != 0 && strcmp(argv[1], "bench") != 0)) {
        fprintf(stderr, "usage: %s probe | bench [ROUNDS [SECCOMP_INSNS]]\n", argv[0]);
        return 2;
    }
    if (argc > 2)
        rounds = atoi(argv[2]);
    if (argc > 3)
        filter = atoi(argv[3]);
    if (rounds < 1 || rounds > MAXROUNDS || filter < 0 || filter > 4096) {
        fprintf(stderr, "ROUNDS must be 1..%d, SECCOMP_INSNS 0..4096\n", MAXROUNDS);
        return 2;
    }
    arena = mmap(NULL, MAXN * SLOT, PROT_READ | PROT_WRITE,
                 MAP_ANONYMOUS | MAP_PRIVATE | MAP_POPULATE, -1, 0);
    warena = mmap(NULL, MAXN * SLOT, PROT_READ | PROT_WRITE,
                  MAP_ANONYMOUS | MAP_PRIVATE | MAP_POPULATE, -1, 0);
    if (arena == MAP_FAILED || warena == MAP_FAILED)
        die("mmap arena");
    setup_device();
    for (int i = 0; i < MAXN; i++)
        memcpy(warena + i * SLOT, pkt, sizeof pkt);
    if (filter > 0)
        install_seccomp(filter);
    printf("syscall round trip (getppid): %.0f ns%s\n", syscall_ns(),
           filter ? " (under the seccomp filter)" : "");
    {
        double c[4];
        calibrate(c);
        printf("calibration, ns/op: getppid %.0f, eventfd read() EAGAIN %.0f, NOP SQE %.0f, "
               "eventfd READ SQE EAGAIN %.0f; READ SQE / read() = %.2f\n", c[0], c[1], c[2],
               c[3], c[3] / c[1]);
    }
    if (strcmp(argv[1], "probe") == 0)
        probe();
    else
        bench(rounds);
    return 0;
}
