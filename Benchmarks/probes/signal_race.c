// How often a signal meant for a running thread interrupts a blocking call
// instead (Docs/Design.md, "Threads on a CPU"). Not part of the package.
//
// THREADS workers alternate WORK_US of computing and a nanosleep of
// SLEEP_US, counting the sleeps that return EINTR. Every millisecond, for
// each worker, the main thread does one of:
//   mode 0, as the dumper and the wall-clock sampler do: pread the worker's
//     /proc/self/task/TID/syscall and, if it reads "running", tgkill SIGPROF;
//   mode 1: arm a one-shot POSIX timer of 1 ns on the worker's CPU clock
//     (SIGEV_THREAD_ID, SIGPROF). The kernel checks such timers at a
//     scheduler tick that finds the thread running and, with
//     CONFIG_POSIX_CPU_TIMERS_TASK_WORK, sends the signal on the thread's way
//     back to user space, after any system call it was in.
// The SIGPROF handler (SA_RESTART) only counts.
//
//   cc -O2 -pthread -o /tmp/signal_race Benchmarks/probes/signal_race.c
//   /tmp/signal_race MODE [SECONDS=5] [THREADS=8] [WORK_US=300] [SLEEP_US=700]
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif
#define MAX_THREADS 64

static _Atomic long interrupted_sleeps, sleeps, handled;
static _Atomic int stopping;
static _Atomic int tids[MAX_THREADS];
static long work_ns, sleep_ns;

static void on_sigprof(int sig, siginfo_t *info, void *context) {
    (void)sig, (void)info, (void)context;
    atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
}

static long monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void *worker(void *arg) {
    tids[(long)arg] = (int)syscall(SYS_gettid);
    volatile unsigned long x = 1;
    while (!atomic_load(&stopping)) {
        long t0 = monotonic_ns();
        while (monotonic_ns() - t0 < work_ns) x = x * 6364136223846793005UL + 1;
        struct timespec request = {sleep_ns / 1000000000L, sleep_ns % 1000000000L};
        if (nanosleep(&request, NULL) != 0 && errno == EINTR) atomic_fetch_add(&interrupted_sleeps, 1);
        atomic_fetch_add(&sleeps, 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODE [SECONDS] [THREADS] [WORK_US] [SLEEP_US]\n", argv[0]);
        return 2;
    }
    int mode = atoi(argv[1]);
    int seconds = argc > 2 ? atoi(argv[2]) : 5;
    int threads = argc > 3 ? atoi(argv[3]) : 8;
    work_ns = (argc > 4 ? atol(argv[4]) : 300) * 1000;
    sleep_ns = (argc > 5 ? atol(argv[5]) : 700) * 1000;
    if (threads < 1 || threads > MAX_THREADS || seconds < 1) return 2;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigprof;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGPROF, &sa, NULL);
    pthread_t workers[MAX_THREADS];
    for (long i = 0; i < threads; i++) pthread_create(&workers[i], NULL, worker, (void *)i);
    while (1) { // every worker has its tid
        int ready = 1;
        for (int i = 0; i < threads; i++) ready &= atomic_load(&tids[i]) != 0;
        if (ready) break;
        usleep(1000);
    }

    int files[MAX_THREADS];
    timer_t timers[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tids[i]);
        files[i] = open(path, O_RDONLY | O_CLOEXEC);
        struct sigevent event;
        memset(&event, 0, sizeof event);
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = SIGPROF;
        event.sigev_notify_thread_id = tids[i];
        clockid_t clock = (clockid_t)((~(unsigned)tids[i]) << 3) | 6; // the thread's CPU clock
        if (files[i] < 0 || timer_create(clock, &event, &timers[i]) != 0) { perror("setup"); return 1; }
    }

    long sent = 0, end = monotonic_ns() + (long)seconds * 1000000000L;
    while (monotonic_ns() < end) {
        for (int i = 0; i < threads; i++) {
            if (mode == 0) {
                char text[256];
                ssize_t n = pread(files[i], text, sizeof text - 1, 0);
                if (n > 0 && text[0] == 'r') { syscall(SYS_tgkill, getpid(), tids[i], SIGPROF); sent++; }
            } else {
                struct itimerspec once = {{0, 0}, {0, 1}};
                timer_settime(timers[i], 0, &once, NULL);
                sent++;
            }
        }
        usleep(1000);
    }
    atomic_store(&stopping, 1);
    for (int i = 0; i < threads; i++) pthread_join(workers[i], NULL);
    printf("mode %d: %s %ld, handled %ld, sleeps %ld, interrupted (EINTR) %ld\n", mode,
           mode == 0 ? "signalled" : "armed", sent, (long)atomic_load(&handled), (long)atomic_load(&sleeps),
           (long)atomic_load(&interrupted_sleeps));
    return 0;
}
