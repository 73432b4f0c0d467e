/* The C reference loop: the physical floor for per-packet TUN I/O.
 *
 * Plain read()/write(), one syscall per packet, no batching, no tricks: the cost
 * any language pays at least when it moves one packet per syscall.  Timed with
 * CLOCK_MONOTONIC around the loop only (the same clock as time.perf_counter_ns).
 *
 *   cfloor read  FD|NAME K [BUFSIZE]   read exactly K packets
 *   cfloor write FD|NAME K             write the packet given on stdin K times
 *   cfloor serve FD|NAME               stay up and run commands from stdin:
 *       "r K BUFSIZE\n"                 read exactly K packets
 *       "w K LEN\n" + LEN bytes         write that packet K times
 *
 * FD is an inherited, already attached TUN fd (the benchmark passes it); a NAME
 * opens /dev/net/tun and attaches to that interface (IFF_TUN | IFF_NO_PI).
 * Each run prints "<elapsed ns> <packets> <bytes>" on stdout; exit status 1 on any
 * error.
 *
 * This file ships inside the tuntap package (tuntap/_bench/cfloor.c), so that
 * `python -m tuntap bench` finds it in an installed wheel.  tuntap._bench.cfloor
 * copies it to a build directory (a temporary one for `python -m tuntap bench`,
 * benchmarks/_build/ for benchmarks/bench_io.py) and compiles it with `cc -O2`
 * twice: as a shared library whose cfloor_run() is called through ctypes, so the
 * floor ("C read()") runs inside the same process, address space, caches and
 * scheduling as the Python methods; and as this program, run once with `serve` for
 * the whole benchmark ("C read() [own process]"), to show that a separate process
 * measures the same floor.  CI compiles it both ways with -Wall -Wextra -Werror.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int open_dev(const char *arg)
{
    char *end;
    long fd = strtol(arg, &end, 10);
    if (*arg != '\0' && *end == '\0')
        return (int)fd;
    int t = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (t < 0) {
        perror("open /dev/net/tun");
        return -1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", arg);
    if (ioctl(t, TUNSETIFF, &ifr) < 0) {
        perror("ioctl(TUNSETIFF)");
        close(t);
        return -1;
    }
    return t;
}

static char buf[65536];

/* One timed run; returns 0 or -1 with errno set.  Exported: the benchmarks also build
 * this file as a shared library and call it through ctypes, so the floor runs inside
 * the very process (same address space, caches and scheduling) as the Python methods.
 * For writes the packet must already be in buf (cfloor_buffer()). */
int cfloor_run(int fd, int writing, long k, size_t size, long long *ns, long long *bytes);
char *cfloor_buffer(void);

char *cfloor_buffer(void)
{
    return buf;
}

int cfloor_run(int fd, int writing, long k, size_t size, long long *ns, long long *bytes)
{
    if (size == 0 || size > sizeof buf)
        return errno = EINVAL, -1;
    long long t0, t1, total = 0;
    long i;

    if (!writing)
        memset(buf, 0, size); /* fault the buffer in before the clock starts */
    t0 = now_ns();
    for (i = 0; i < k; i++) {
        ssize_t n = writing ? write(fd, buf, size) : read(fd, buf, size);
        if (n < 0) {
            if (errno == EINTR) {
                i--;
                continue;
            }
            return -1;
        }
        total += n;
    }
    t1 = now_ns();
    *ns = t1 - t0;
    *bytes = total;
    return 0;
}

static int serve(int fd)
{
    char line[128], op;
    long k;
    size_t size;
    long long ns, bytes;

    while (fgets(line, sizeof line, stdin)) {
        if (sscanf(line, "%c %ld %zu", &op, &k, &size) != 3 || k <= 0 || size == 0 ||
            size > sizeof buf || (op != 'r' && op != 'w')) {
            fprintf(stderr, "bad command: %s", line);
            return 2;
        }
        if (op == 'w' && fread(buf, 1, size, stdin) != size) {
            fprintf(stderr, "short packet on stdin\n");
            return 2;
        }
        if (cfloor_run(fd, op == 'w', k, size, &ns, &bytes) < 0) {
            perror(op == 'w' ? "write" : "read");
            return 1;
        }
        printf("%lld %ld %lld\n", ns, k, bytes);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "serve") != 0 && argc < 4)) {
        fprintf(stderr,
                "usage: %s read FD|NAME K [BUFSIZE] | write FD|NAME K < packet | serve FD|NAME\n",
                argv[0]);
        return 2;
    }
    int fd = open_dev(argv[2]);
    if (fd < 0)
        return 1;
    if (strcmp(argv[1], "serve") == 0)
        return serve(fd);

    long k = strtol(argv[3], NULL, 10);
    int writing = strcmp(argv[1], "write") == 0;
    size_t size;
    long long ns, bytes;
    if (k <= 0 || (!writing && strcmp(argv[1], "read") != 0)) {
        fprintf(stderr, "bad mode or K\n");
        return 2;
    }
    if (writing) {
        size = fread(buf, 1, sizeof buf, stdin);
        if (size == 0) {
            fprintf(stderr, "no packet on stdin\n");
            return 2;
        }
    } else {
        size = argc > 4 ? (size_t)strtoul(argv[4], NULL, 10) : 2048;
        if (size == 0 || size > sizeof buf)
            return 2;
    }
    if (cfloor_run(fd, writing, k, size, &ns, &bytes) < 0) {
        perror(writing ? "write" : "read");
        return 1;
    }
    printf("%lld %ld %lld\n", ns, k, bytes);
    return 0;
}
