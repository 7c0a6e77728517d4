// Frame-pointer walk for the signal handler. It reads only memory proven to
// lie in the interrupted thread's own stack region, so garbage in a frame
// pointer (code built without frame pointers, e.g. glibc) ends the walk
// instead of faulting.
#include "internal.h"

uint32_t cpprof_walk_frames(uintptr_t pc, uintptr_t fp, uintptr_t sp, uintptr_t stack_end,
                            uint64_t *pcs, uint32_t max) {
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
        pcs[depth++] = ret;
        if (next <= fp) break; // stacks grow down: callers' frames are higher
        low = fp + frame_size;
        fp = next;
    }
    return depth;
}

uint32_t cpprof_walk_frames_for_testing(uintptr_t pc, uintptr_t fp, uintptr_t sp, uintptr_t stack_end,
                                        uint64_t *pcs, uint32_t max) {
    return cpprof_walk_frames(pc, fp, sp, stack_end, pcs, max);
}
