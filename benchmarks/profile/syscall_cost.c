/* The bare cost of a system call round trip on this machine: 10^6 getppid() and
 * 10^6 read(0, buf, 0) (run with stdin from /dev/null), in ns per call.
 *   cc -O2 -o syscall_cost syscall_cost.c && taskset -c 1 ./syscall_cost </dev/null */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(void)
{
    enum { N = 1000000 };
    char b[1];
    long long t0, t1;

    t0 = now();
    for (int i = 0; i < N; i++)
        syscall(SYS_getppid);
    t1 = now();
    printf("getppid: %.0f ns\n", (double)(t1 - t0) / N);
    t0 = now();
    for (int i = 0; i < N; i++)
        if (read(0, b, 0) < 0)
            return 1;
    t1 = now();
    printf("read(fd, buf, 0): %.0f ns\n", (double)(t1 - t0) / N);
    return 0;
}
