/* The C reference loop: the physical floor for per-packet TUN I/O.
 *
 * Plain read()/write(), one syscall per packet, no batching, no tricks: the cost
 * any language pays at least when it moves one packet per syscall.  Timed with
 * CLOCK_MONOTONIC around the loop only (the same clock as time.perf_counter_ns).
 *
 *   cfloor read  FD|NAME K [BUFSIZE]   read exactly K packets
 *   cfloor write FD|NAME K             write the packet given on stdin K times
 *
 * FD is an inherited, already attached TUN fd (the benchmark passes it); a NAME
 * opens /dev/net/tun and attaches to that interface (IFF_TUN | IFF_NO_PI).
 * Prints "<elapsed ns> <packets> <bytes>" on stdout; exit status 1 on any error.
 * The benchmarks compile this file with `cc -O2` (benchmarks/_build/); the same
 * source is embedded in tuntap/_bench.py for `python -m tuntap bench`.
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

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s read FD|NAME K [BUFSIZE] | write FD|NAME K < packet\n",
                argv[0]);
        return 2;
    }
    int fd = open_dev(argv[2]);
    long k = strtol(argv[3], NULL, 10);
    if (fd < 0 || k <= 0)
        return 1;
    static char buf[65536];
    long long bytes = 0, t0, t1;
    long i;

    if (strcmp(argv[1], "read") == 0) {
        size_t size = argc > 4 ? (size_t)strtoul(argv[4], NULL, 10) : 2048;
        if (size == 0 || size > sizeof buf)
            return 2;
        t0 = now_ns();
        for (i = 0; i < k; i++) {
            ssize_t n = read(fd, buf, size);
            if (n < 0) {
                if (errno == EINTR) {
                    i--;
                    continue;
                }
                perror("read");
                return 1;
            }
            bytes += n;
        }
        t1 = now_ns();
    } else if (strcmp(argv[1], "write") == 0) {
        size_t len = fread(buf, 1, sizeof buf, stdin);
        if (len == 0) {
            fprintf(stderr, "no packet on stdin\n");
            return 2;
        }
        t0 = now_ns();
        for (i = 0; i < k; i++) {
            ssize_t n = write(fd, buf, len);
            if (n < 0) {
                if (errno == EINTR) {
                    i--;
                    continue;
                }
                perror("write");
                return 1;
            }
            bytes += n;
        }
        t1 = now_ns();
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    printf("%lld %ld %lld\n", t1 - t0, k, bytes);
    return 0;
}
