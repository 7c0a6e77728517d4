// What a per-thread perf_event costs the threads it watches, against what
// it would save the wall-clock sampler (Docs/Benchmarks.md, "Issue 10, the
// cost of /debug/fgprof, continued"). Not part of the package.
//
// N threads each spin ~20k iterations and sleep S ns, like wall-cost's
// workers. With TYPE >= 0, each gets a PERF_TYPE_SOFTWARE event of config
// TYPE (9 dummy, 1 task clock, 3 context switches; user space only, as
// perf_event_paranoid=2 allows) with its first page mapped: the page's `lock`
// moves by 2 at each sched-in of the thread and stays still while it sleeps,
// so a thread whose `lock` did not move has not run. Prints the process's CPU
// over 4 s (% of one core), how far thread 0's `lock` moved, and what reading
// every `lock` and every thread CPU clock costs the reader per thread.
//
//   cc -O2 -pthread -o /tmp/perf_event_seq Benchmarks/probes/perf_event_seq.c
//   for r in 1 2 3 4 5; do for t in -1 9; do /tmp/perf_event_seq $t 100 50000000; done; done
#define _GNU_SOURCE
#include <linux/perf_event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 1000
static _Atomic int started_tid;
static _Atomic int stop;

static int64_t now(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static clockid_t thread_clock(int tid) { return (clockid_t)((~(uint32_t)tid) << 3) | 6; }

static void *worker(void *arg) {
    atomic_store(&started_tid, (int)syscall(SYS_gettid));
    struct timespec ts = {0, (long)(intptr_t)arg};
    while (!atomic_load(&stop)) {
        volatile int x = 0;
        for (int i = 0; i < 20000; i++) x += i;
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int type = argc > 1 ? atoi(argv[1]) : -1;
    int n = argc > 2 ? atoi(argv[2]) : 100;
    long sleep_ns = argc > 3 ? atol(argv[3]) : 50000000;
    if (n < 1 || n > MAX_THREADS) return 2;
    static pthread_t threads[MAX_THREADS];
    static int tids[MAX_THREADS];
    static volatile struct perf_event_mmap_page *pages[MAX_THREADS];
    for (int i = 0; i < n; i++) {
        atomic_store(&started_tid, 0);
        pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)sleep_ns);
        while (atomic_load(&started_tid) == 0) {}
        tids[i] = atomic_load(&started_tid);
        if (type < 0) continue;
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.size = sizeof attr;
        attr.type = PERF_TYPE_SOFTWARE;
        attr.config = (uint64_t)type;
        attr.exclude_kernel = 1;
        attr.exclude_hv = 1;
        int fd = (int)syscall(SYS_perf_event_open, &attr, tids[i], -1, -1, PERF_FLAG_FD_CLOEXEC);
        if (fd < 0) { perror("perf_event_open"); return 1; }
        void *page = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        if (page == MAP_FAILED) { perror("mmap"); return 1; }
        pages[i] = page;
    }
    int64_t c0 = now(CLOCK_PROCESS_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
    uint32_t l0 = pages[0] ? pages[0]->lock : 0;
    sleep(4);
    uint32_t l1 = pages[0] ? pages[0]->lock : 0;
    int64_t c1 = now(CLOCK_PROCESS_CPUTIME_ID), w1 = now(CLOCK_MONOTONIC);
    uint64_t sum = 0;
    int64_t r0 = now(CLOCK_THREAD_CPUTIME_ID);
    for (int k = 0; k < 1000; k++)
        for (int i = 0; i < n; i++) sum += pages[i] ? pages[i]->lock : 0;
    int64_t r1 = now(CLOCK_THREAD_CPUTIME_ID);
    for (int k = 0; k < 100; k++)
        for (int i = 0; i < n; i++) sum += (uint64_t)now(thread_clock(tids[i]));
    int64_t r2 = now(CLOCK_THREAD_CPUTIME_ID);
    atomic_store(&stop, 1);
    printf("type %d: process CPU %.2f %% of a core; thread 0's lock moved %u; reading a lock %.1f ns, a thread clock %.1f ns (%d)\n",
           type, 100.0 * (double)(c1 - c0) / (double)(w1 - w0), l1 - l0, (double)(r1 - r0) / 1000 / n,
           (double)(r2 - r1) / 100 / n, (int)(sum & 1));
    return 0;
}
