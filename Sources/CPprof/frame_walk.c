// Frame-pointer walk for the signal handler. It reads only memory proven to
// lie in the interrupted thread's own stack region, so garbage in a frame
// pointer (code built without frame pointers, e.g. glibc) ends the walk
// instead of faulting. A frame that returns into the concurrency runtime's
// job-running function is an async function's: its awaiting callers, read
// from its context chain (async_walk.c), follow it in pcs.
#include "internal.h"

uint32_t cpprof_walk_frames_async(uintptr_t pc, uintptr_t fp, uintptr_t sp, uintptr_t stack_end,
                                  uint64_t *pcs, uint32_t max, int32_t reader, cpprof_async_capture *capture) {
    if (capture != NULL) capture->count = 0;
    if (max == 0) return 0;
    uint32_t depth = 0;
    pcs[depth++] = pc;
    uintptr_t low = sp;
    const uintptr_t frame_size = 2 * sizeof(uintptr_t);
    if (stack_end < frame_size) return depth;
    while (depth < max) {
        // Written so that no garbage value can overflow past the checks
        // (fp + 16 would wrap for fp near the top of the address space).
        if (fp < low || fp > stack_end - frame_size || (fp & (sizeof(uintptr_t) - 1)) != 0)
            break;
        const uintptr_t *frame = (const uintptr_t *)fp;
        uintptr_t next = frame[0];
        uintptr_t ret = frame[1];
        if (ret < 4096) break;
        // The async function's context is stored just below its frame record
        // (x86_64 r14, arm64 x22), inside the part of the stack proven above.
        if (cpprof_async_is_executor(ret) && fp - low >= sizeof(uintptr_t)) {
            uint32_t added = cpprof_async_chain(frame[-1], reader, pcs + depth, max - depth);
            if (capture != NULL && capture->count == 0 && added > 0) {
                for (uint32_t i = 0; i < added && i < CPPROF_ASYNC_MAX_DEPTH; i++) capture->pcs[i] = pcs[depth + i];
                capture->count = added < CPPROF_ASYNC_MAX_DEPTH ? added : CPPROF_ASYNC_MAX_DEPTH;
                capture->boundary = ret;
            }
            depth += added;
            if (depth >= max) break;
        }
        pcs[depth++] = ret;
        if (next <= fp) break; // stacks grow down: callers' frames are higher
        low = fp + frame_size;
        fp = next;
    }
    return depth;
}

uint32_t cpprof_walk_frames(uintptr_t pc, uintptr_t fp, uintptr_t sp, uintptr_t stack_end,
                            uint64_t *pcs, uint32_t max) {
    return cpprof_walk_frames_async(pc, fp, sp, stack_end, pcs, max, CPPROF_ASYNC_READ_SNAPSHOT, NULL);
}

uint32_t cpprof_walk_frames_for_testing(uintptr_t pc, uintptr_t fp, uintptr_t sp, uintptr_t stack_end,
                                        uint64_t *pcs, uint32_t max) {
    return cpprof_walk_frames(pc, fp, sp, stack_end, pcs, max);
}
