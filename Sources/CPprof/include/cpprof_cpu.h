#ifndef CPPROF_CPU_H
#define CPPROF_CPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Deepest stack a CPU sample keeps; deeper stacks are cut at the root side.
#define CPPROF_MAX_FRAMES 128

/// One CPU sample as the signal handler recorded it.
typedef struct cpprof_sample {
    int32_t tid;        // thread that was running
    uint32_t depth;     // number of valid entries in pcs
    uint64_t weight;    // timer periods this sample stands for (1 + overrun)
    uint64_t pcs[CPPROF_MAX_FRAMES]; // pcs[0]: interrupted PC; then return addresses
} cpprof_sample;

/// How the sampler is driven.
typedef enum cpprof_cpu_mode {
    CPPROF_CPU_OFF = 0,
    CPPROF_CPU_THREAD_TIMERS = 1, // one CLOCK_THREAD_CPUTIME_ID timer per thread
    CPPROF_CPU_PROCESS_TIMER = 2, // setitimer(ITIMER_PROF) fallback
} cpprof_cpu_mode;

/// Counters since the current session started.
typedef struct cpprof_cpu_stats {
    uint64_t samples;          // samples written to the ring
    uint64_t dropped_ring_full;// samples lost because the ring was full
    uint64_t stack_unbounded;  // samples whose stack region was unknown (leaf only)
    uint64_t foreign_signals;  // SIGPROFs not from our timers, passed on
    uint64_t timer_errors;     // per-thread timers that could not be created
    uint64_t stackmap_leaks;   // old stack maps not freed because a reader lingered
    int32_t mode;              // cpprof_cpu_mode
    int32_t timers;            // live per-thread timers
    uint64_t threads_without_timer; // at the last sync: threads beyond the RLIMIT_SIGPENDING share, or refused one
    int32_t handler_lost;      // 1: SIGPROF was taken from us; sampling stopped
} cpprof_cpu_stats;

/// Starts sampling every `period_ns` of CPU time per thread.
/// Returns 0, EBUSY if a session is running, EEXIST if another SIGPROF
/// handler replaced ours, or an errno from the kernel.
int cpprof_cpu_start(int64_t period_ns);

/// Gives threads that appeared since the last call a timer, deletes the
/// timers of threads that exited, and refreshes the stack-region map the
/// handler validates frame pointers against. Call it periodically while
/// sampling (not from a signal handler). Returns the number of live timers.
int cpprof_cpu_sync_threads(void);

/// Moves up to `max` finished samples from the ring into `out`.
/// Single consumer: call from one thread at a time.
size_t cpprof_cpu_drain(cpprof_sample *out, size_t max);

/// Stops sampling: deletes every timer first, then disarms the handler.
/// The handler stays installed so that a signal still pending is harmless.
void cpprof_cpu_stop(void);

/// Installs the library's SIGPROF handler now (once per process; later
/// calls return 0 at once). From then on a SIGPROF the library did not send
/// is passed to the handler that was installed before it (the application's),
/// or dropped if there was none: it never kills the process. Called by
/// PprofServer.start(). Returns 0 or an errno from sigaction.
int cpprof_sigprof_prepare(void);

/// Reads the counters of the current (or last) session.
void cpprof_cpu_get_stats(cpprof_cpu_stats *out);

#ifdef __cplusplus
}
#endif

#endif
