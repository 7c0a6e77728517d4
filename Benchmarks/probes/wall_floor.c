// The floor of an exact wall-clock sampler that never interrupts a blocked
// thread (Docs/Benchmarks.md, "Issue 10: the floor of the system calls").
// Not part of the package.
//
// The same application threads as `pprof-benchmarks wall-cost` (each wakes
// every 50 ms, or WAKE_MS, spins 50 us of wall time, sleeps again; wake-ups
// spread over the period), and a sampler that does, 99 times a second, only the system
// calls any exact sampler of this kind must make and nothing else: per
// thread one CPU-clock read (did it run since the last tick?), and per thread
// that ran, a `pread` of its kept-open /proc/self/task/TID/syscall (where is
// it blocked now?), a `process_vm_readv` of COPY bytes above its stack
// pointer (its stack, without a fault) and a second clock read (it did not
// run during the copy). No unwinding, no bookkeeping, no allocation: what
// the real sampler does on top of these is not here. Windows of SECONDS
// with and without the sampler alternate (profiled first in odd pairs);
// cost = (process CPU with - without) / window, in % of one core.
//
//   cc -O2 -pthread -o /tmp/wall_floor Benchmarks/probes/wall_floor.c
//   /tmp/wall_floor [THREADS=100] [SECONDS=4] [PAIRS=5] [COPY=1024] [CALLS=3] [WAKE_MS=50]
//
// CALLS takes the calls apart: 3 all of them, 2 without the copy and the
// second clock read, 1 the clock reads only (a thread that ran counts as
// read), 0 the ticks' sleeps only.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 1000
static int nthreads = 100, seconds = 4, pairs = 5;
static size_t copy_bytes = 1024;
// 3: all of the above; 2: no copy (nor second clock read); 1: clock reads only; 0: the ticks' sleeps only.
static int calls = 3;
static long wake_ms = 50; // how often each application thread wakes
static _Atomic int32_t tids[MAX_THREADS];
static _Atomic int started, stop_workers, stop_sampler;
static _Atomic uint64_t sink;

static int64_t now_ns(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int64_t thread_cpu(int32_t tid) {
    struct timespec t;
    clockid_t c = (clockid_t)((~(uint32_t)tid) << 3) | 6; // MAKE_THREAD_CPUCLOCK(tid, SCHED)
    if (clock_gettime(c, &t) != 0) return -1;
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *worker(void *arg) {
    int i = (int)(intptr_t)arg;
    tids[i] = (int32_t)syscall(SYS_gettid);
    started++;
    uint64_t x = (uint64_t)i + 0x9E3779B97F4A7C15ULL;
    int64_t period_ns = (int64_t)wake_ms * 1000000, offset = (int64_t)i * period_ns / nthreads;
    struct timespec first = {offset / 1000000000LL, offset % 1000000000LL};
    struct timespec period = {period_ns / 1000000000LL, period_ns % 1000000000LL};
    nanosleep(&first, NULL);
    while (!stop_workers) {
        int64_t t0 = now_ns(CLOCK_MONOTONIC);
        do {
            for (int k = 0; k < 200; k++) x = x * 6364136223846793005ULL + 1;
        } while (now_ns(CLOCK_MONOTONIC) - t0 < 50000);
        nanosleep(&period, NULL);
    }
    sink += x;
    return NULL;
}

typedef struct sampler_result { int64_t cpu_ns, wall_ns, ticks, reads, running; } sampler_result;
static sampler_result result;

static void *sampler(void *arg) {
    (void)arg;
    int fds[MAX_THREADS];
    int64_t last[MAX_THREADS];
    char path[64], buf[256];
    uint8_t *copy = malloc(copy_bytes);
    if (copy == NULL) { perror("wall_floor: malloc"); exit(1); }
    pid_t pid = getpid();
    for (int i = 0; i < nthreads; i++) {
        snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tids[i]);
        fds[i] = open(path, O_RDONLY | O_CLOEXEC);
        last[i] = -1;
    }
    int64_t c0 = now_ns(CLOCK_THREAD_CPUTIME_ID), w0 = now_ns(CLOCK_MONOTONIC);
    int64_t next = now_ns(CLOCK_MONOTONIC);
    int64_t ticks = 0, reads = 0, running = 0;
    while (!stop_sampler) {
        for (int i = 0; i < nthreads && calls >= 1; i++) {
            int64_t c = thread_cpu(tids[i]);
            if (c == last[i]) continue;
            if (calls < 2) { last[i] = c; reads++; continue; }
            ssize_t n = pread(fds[i], buf, sizeof buf - 1, 0);
            reads++;
            if (n <= 0) continue;
            buf[n] = 0;
            if (buf[0] == 'r') { running++; last[i] = -1; continue; }
            // "nr a0 a1 a2 a3 a4 a5 sp pc", or "-1 sp pc" outside a system
            // call: sp is the last number but one either way.
            char *pc = strrchr(buf, ' ');
            if (pc == NULL) continue;
            *pc = 0;
            char *p = strrchr(buf, ' ');
            if (p == NULL) continue;
            if (calls < 3) { last[i] = c; continue; }
            uint64_t sp = strtoull(p, NULL, 16) & ~(uint64_t)7;
            struct iovec local = {copy, copy_bytes}, remote = {(void *)(uintptr_t)sp, copy_bytes};
            process_vm_readv(pid, &local, 1, &remote, 1, 0);
            last[i] = thread_cpu(tids[i]) == c ? c : -1;
        }
        ticks++;
        next += 1000000000LL / 99;
        struct timespec ts = {next / 1000000000LL, next % 1000000000LL};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
    result = (sampler_result){now_ns(CLOCK_THREAD_CPUTIME_ID) - c0, now_ns(CLOCK_MONOTONIC) - w0, ticks, reads, running};
    for (int i = 0; i < nthreads; i++) if (fds[i] >= 0) close(fds[i]);
    free(copy);
    return NULL;
}

static void sleep_ns(int64_t ns) {
    struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
    while (nanosleep(&ts, &ts) != 0) {}
}

// Process CPU over one window, in cores; with the sampler running or not.
static double window(int sampled, sampler_result *out) {
    pthread_t s;
    if (sampled) {
        stop_sampler = 0;
        pthread_create(&s, NULL, sampler, NULL);
        sleep_ns(300000000); // its files are open and its first ticks done
    }
    int64_t c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID), t0 = now_ns(CLOCK_MONOTONIC);
    sleep_ns((int64_t)seconds * 1000000000LL);
    int64_t c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID), t1 = now_ns(CLOCK_MONOTONIC);
    if (sampled) {
        stop_sampler = 1;
        pthread_join(s, NULL);
        *out = result;
    } else {
        sleep_ns(300000000);
    }
    return (double)(c1 - c0) / (double)(t1 - t0);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc > 1) nthreads = atoi(argv[1]);
    if (argc > 2) seconds = atoi(argv[2]);
    if (argc > 3) pairs = atoi(argv[3]);
    if (argc > 4) copy_bytes = (size_t)atol(argv[4]);
    if (argc > 5) calls = atoi(argv[5]);
    if (argc > 6) wake_ms = atol(argv[6]);
    if (nthreads < 1 || nthreads > MAX_THREADS || seconds < 1 || pairs < 1 || pairs > 100 || copy_bytes < 8 || wake_ms < 1) {
        fprintf(stderr, "usage: wall_floor [THREADS 1..1000] [SECONDS] [PAIRS 1..100] [COPY bytes] [CALLS 0..3] [WAKE_MS]\n");
        return 2;
    }
    pthread_t t;
    for (int i = 0; i < nthreads; i++) pthread_create(&t, NULL, worker, (void *)(intptr_t)i);
    while (started < nthreads) sleep_ns(1000000);
    sleep_ns(500000000);
    printf("wall_floor: %d threads, %d s windows, %d pairs, %zu bytes copied per read, calls %d, a wake-up every %ld ms\n",
           nthreads, seconds, pairs, copy_bytes, calls, wake_ms);
    sampler_result r;
    window(1, &r); // warm-up
    double costs[100];
    for (int p = 0; p < pairs; p++) {
        int first = p % 2 == 0;
        double a = window(first, &r), b = window(!first, &r);
        double with = first ? a : b, without = first ? b : a;
        costs[p] = (with - without) * 100;
        printf("pair %d: without %.2f %%, with %.2f %%: +%.2f %% of a core; sampler %.1f ms/s, "
               "%.1f reads a tick, %.2f running\n",
               p + 1, without * 100, with * 100, costs[p], (double)r.cpu_ns / 1e6 / ((double)r.wall_ns / 1e9),
               (double)r.reads / (double)r.ticks, (double)r.running / (double)r.ticks);
    }
    qsort(costs, (size_t)pairs, sizeof costs[0], by_value);
    printf("wall_floor: the floor adds %.2f %% of one core (median; range %.2f ... %.2f)\n",
           costs[pairs / 2], costs[0], costs[pairs - 1]);
    stop_workers = 1;
    return (int)(sink & 0);
}
