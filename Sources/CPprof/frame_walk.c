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
    while (depth < max) {
        if (fp < low || fp + 2 * sizeof(uintptr_t) > stack_end || (fp & (sizeof(uintptr_t) - 1)) != 0)
            break;
        const uintptr_t *frame = (const uintptr_t *)fp;
        uintptr_t next = frame[0];
        uintptr_t ret = frame[1];
        if (ret < 4096) break;
        pcs[depth++] = ret;
        if (next <= fp) break; // stacks grow down: callers' frames are higher
        low = fp + 2 * sizeof(uintptr_t);
        fp = next;
    }
    return depth;
}
