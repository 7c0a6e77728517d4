#ifndef CPPROF_BENCH_H
#define CPPROF_BENCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// What a handler benchmark recorded (besides its timings).
typedef struct cpprof_bench_result {
    uint64_t recorded;   // samples the handler wrote to the ring
    uint64_t dropped;    // samples it dropped (ring full): should stay 0
    uint32_t depth_min;  // frames per recorded sample, smallest
    uint32_t depth_max;  // and largest
} cpprof_bench_result;

/// Benchmark hook, not for production use: starts a sampling session whose
/// timers never fire in practice, then calls the SIGPROF handler function
/// itself `batches * per_batch` times with the caller's real context
/// (getcontext) and a siginfo carrying our timer cookie, so every call takes
/// the full recording path (stack-map lookup, frame walk, ring write).
/// `batch_ns[b]` gets the wall-clock nanoseconds of batch b; the ring is
/// drained between batches, outside the timing. `per_batch` is at most 4096.
/// Returns 0, EBUSY if a profile is running, or another errno.
int cpprof_bench_handler(uint32_t batches, uint32_t per_batch, uint64_t *batch_ns,
                         cpprof_bench_result *out);

/// Same, but each sample goes through the kernel: the calling thread sends
/// itself SIGPROF with rt_tgsigqueueinfo (si_code SI_TIMER, our cookie), so a
/// batch times signal delivery, the handler and sigreturn. Returns as above,
/// or the errno of the kernel refusing the signal.
int cpprof_bench_self_signal(uint32_t batches, uint32_t per_batch, uint64_t *batch_ns,
                             cpprof_bench_result *out);

#ifdef __cplusplus
}
#endif

#endif
