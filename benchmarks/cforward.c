/* Reference C forwarders between two TUN devices, for benchmarks/bench_forward.py.
 *
 *   cforward threads|poll NS_A DEV_A NS_B DEV_B OFFLOAD SECONDS
 *
 * Creates DEV_A inside network namespace NS_A and DEV_B inside NS_B (names under
 * /var/run/netns), with IFF_VNET_HDR + TUNSETOFFLOAD(CSUM|TSO4|TSO6) when OFFLOAD is 1,
 * prints "ready" and forwards every packet read from one device to the other until
 * SIGTERM/SIGINT or SECONDS pass, then prints one JSON line of counters. The caller
 * brings the links up and adds addresses (ip -n NS ...).
 *
 * threads: one thread per direction, blocking read() then write(): the classic loop.
 * poll:    one thread, both fds non-blocking, poll() both, read up to 64 packets from
 *          a readable device (until EAGAIN), then write them to the other: the batch
 *          pattern without sendmmsg-like help (TUN has none).
 *
 * Build: cc -O2 -pthread -o cforward cforward.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define BUFSZ (65536 + 64) /* a 64 KiB GSO super-packet plus the vnet header */

static int fds[2];
static int offload;
/* reads: read() calls (c-poll: including the one that says EAGAIN); batches: read rounds
 * that returned packets (= reads for threads) */
static _Atomic unsigned long long reads[2], batches[2], pkts[2], bytes[2], werrs[2];
static volatile sig_atomic_t stop;

static void
die(const char *what)
{
    perror(what);
    exit(1);
}

static int
open_in_netns(const char *ns, const char *dev)
{
    char path[256];
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof path, "/var/run/netns/%s", ns);
    int nsfd = open(path, O_RDONLY | O_CLOEXEC);
    if (self < 0 || nsfd < 0)
        die("open netns");
    if (setns(nsfd, CLONE_NEWNET) < 0)
        die("setns");
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        die("open /dev/net/tun");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", dev);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0)
        die("TUNSETIFF");
    if (offload) {
        int sz = 10;
        if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0)
            die("TUNSETVNETHDRSZ");
    }
    /* The mask is device-wide state: always set it, 0 for none. */
    if (ioctl(fd, TUNSETOFFLOAD, offload ? (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) : 0) < 0)
        die("TUNSETOFFLOAD");
    if (setns(self, CLONE_NEWNET) < 0)
        die("setns back");
    close(self);
    close(nsfd);
    return fd;
}

static void *
thread_dir(void *arg)
{
    int d = (int)(long)arg;
    int in = fds[d], out = fds[1 - d];
    static char bufs[2][BUFSZ];
    char *buf = bufs[d];
    unsigned long long r = 0, p = 0, b = 0, e = 0;
    while (!stop) {
        ssize_t n = read(in, buf, BUFSZ);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            break;
        }
        r++;
        p++;
        b += (unsigned long long)n;
        if (write(out, buf, (size_t)n) < 0)
            e++;
        /* publish every 64 packets (cheap, the counters are only read at exit) */
        if ((p & 63) == 0) {
            reads[d] = batches[d] = r;
            pkts[d] = p;
            bytes[d] = b;
            werrs[d] = e;
        }
    }
    reads[d] = batches[d] = r;
    pkts[d] = p;
    bytes[d] = b;
    werrs[d] = e;
    return NULL;
}

static char pbufs[BATCH][BUFSZ];
static ssize_t plens[BATCH];

static void
poll_loop(void)
{
    struct pollfd pfd[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
    for (int i = 0; i < 2; i++)
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    while (!stop) {
        int r = poll(pfd, 2, 200);
        if (r <= 0)
            continue;
        for (int d = 0; d < 2; d++) {
            if (!(pfd[d].revents & POLLIN))
                continue;
            int n = 0;
            while (n < BATCH) {
                ssize_t k = read(fds[d], pbufs[n], BUFSZ);
                reads[d]++;
                if (k < 0)
                    break;
                plens[n++] = k;
                bytes[d] += (unsigned long long)k;
            }
            pkts[d] += (unsigned long long)n;
            if (n > 0)
                batches[d]++;
            for (int i = 0; i < n; i++)
                if (write(fds[1 - d], pbufs[i], (size_t)plens[i]) < 0)
                    werrs[d]++;
        }
    }
}

static void
on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int
main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: %s threads|poll NS_A DEV_A NS_B DEV_B OFFLOAD SECONDS\n", argv[0]);
        return 2;
    }
    int threads = strcmp(argv[1], "threads") == 0;
    offload = atoi(argv[6]);
    double seconds = atof(argv[7]);
    fds[0] = open_in_netns(argv[2], argv[3]);
    fds[1] = open_in_netns(argv[4], argv[5]);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: a blocked read() returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGALRM, on_signal);
    alarm((unsigned)(seconds + 0.999));

    printf("ready\n");
    fflush(stdout);
    if (threads) {
        /* Signals go to the main thread, which sleeps; forwarding threads block them
         * and are stopped by exiting the process after the counters are printed. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        pthread_t t[2];
        for (long d = 0; d < 2; d++)
            if (pthread_create(&t[d], NULL, thread_dir, (void *)d) != 0)
                die("pthread_create");
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        while (!stop)
            pause();
    }
    else {
        poll_loop();
    }
    printf("{\"forwarder\": \"c-%s\", \"reads\": [%llu, %llu], \"batches\": [%llu, %llu], "
           "\"packets\": [%llu, %llu], \"bytes\": [%llu, %llu], \"write_errors\": [%llu, %llu]}\n",
           argv[1], (unsigned long long)reads[0], (unsigned long long)reads[1],
           (unsigned long long)batches[0], (unsigned long long)batches[1],
           (unsigned long long)pkts[0], (unsigned long long)pkts[1],
           (unsigned long long)bytes[0], (unsigned long long)bytes[1],
           (unsigned long long)werrs[0], (unsigned long long)werrs[1]);
    fflush(stdout);
    _exit(0); /* threads may still be blocked in read() */
}
