// Benchmark hooks (pprof-benchmarks handler-cost): time the SIGPROF handler's
// recording path with a real context, directly and through the kernel. Never
// called by the library itself.
#include "internal.h"
#include "include/cpprof_bench.h"
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define BENCH_RING_CELLS 4096u
// Timers armed with this period first fire after >= 1000 s of a thread's CPU
// time (the first expiry is drawn from (period/1000, period]): never, here.
#define BENCH_PERIOD_NS ((int64_t)1000000000000000LL)

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fill_siginfo(siginfo_t *si) {
    memset(si, 0, sizeof *si);
    si->si_signo = SIGPROF;
    si->si_code = SI_TIMER;
    si->si_value.sival_int = cpprof_internal_timer_cookie();
}

static void drain_into(cpprof_sample *buffer, uint32_t max, cpprof_bench_result *out) {
    size_t n;
    while ((n = cpprof_cpu_drain(buffer, max)) > 0) {
        for (size_t i = 0; i < n; i++) {
            if (buffer[i].depth < out->depth_min) out->depth_min = buffer[i].depth;
            if (buffer[i].depth > out->depth_max) out->depth_max = buffer[i].depth;
        }
    }
}

typedef int (*bench_body)(uint32_t count, siginfo_t *si, ucontext_t *uc);

static int run_batches(bench_body body, uint32_t batches, uint32_t per_batch, uint64_t *batch_ns,
                       cpprof_bench_result *out, ucontext_t *uc) {
    memset(out, 0, sizeof *out);
    out->depth_min = UINT32_MAX;
    if (per_batch == 0 || per_batch > BENCH_RING_CELLS || batch_ns == NULL) return EINVAL;
    cpprof_sample *buffer = malloc(sizeof(cpprof_sample) * per_batch);
    if (buffer == NULL) return ENOMEM;
    int err = cpprof_cpu_start(BENCH_PERIOD_NS);
    if (err != 0) { free(buffer); return err; }
    siginfo_t si;
    fill_siginfo(&si);
    for (uint32_t b = 0; b < batches && err == 0; b++) {
        uint64_t t0 = now_ns();
        err = body(per_batch, &si, uc);
        batch_ns[b] = now_ns() - t0;
        drain_into(buffer, per_batch, out);
    }
    cpprof_cpu_stats stats;
    cpprof_cpu_get_stats(&stats);
    cpprof_cpu_stop();
    drain_into(buffer, per_batch, out);
    free(buffer);
    out->recorded = stats.samples;
    out->dropped = stats.dropped_ring_full;
    if (out->depth_min == UINT32_MAX) out->depth_min = 0;
    return err;
}

static int direct_calls(uint32_t count, siginfo_t *si, ucontext_t *uc) {
    cpprof_sigaction_fn handler = cpprof_internal_sigprof_handler();
    for (uint32_t i = 0; i < count; i++) handler(SIGPROF, si, uc);
    return 0;
}

static int self_signals(uint32_t count, siginfo_t *si, ucontext_t *uc) {
    (void)uc;
    pid_t pid = getpid();
    pid_t tid = (pid_t)syscall(SYS_gettid);
    for (uint32_t i = 0; i < count; i++) {
        siginfo_t copy = *si; // the kernel may write to it
        if (syscall(SYS_rt_tgsigqueueinfo, pid, tid, SIGPROF, &copy) != 0) return errno;
    }
    return 0;
}

__attribute__((noinline)) int cpprof_bench_handler(uint32_t batches, uint32_t per_batch, uint64_t *batch_ns,
                                                   cpprof_bench_result *out) {
    // The context of this very frame: the handler walks from here up
    // through the caller's frames, as it would for an interrupted thread.
    ucontext_t uc;
    if (getcontext(&uc) != 0) return errno;
    return run_batches(direct_calls, batches, per_batch, batch_ns, out, &uc);
}

__attribute__((noinline)) int cpprof_bench_self_signal(uint32_t batches, uint32_t per_batch, uint64_t *batch_ns,
                                                       cpprof_bench_result *out) {
    return run_batches(self_signals, batches, per_batch, batch_ns, out, NULL);
}
