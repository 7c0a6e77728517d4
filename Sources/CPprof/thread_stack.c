// The calling thread's stack bounds, learnt at moments when no glibc lock can
// be held by this thread: at thread start (our pthread_create trampoline) and,
// for the main thread, in a constructor. Never from an allocator hook:
// pthread_getattr_np takes the thread's lock and allocates under it, so
// calling it from malloc would deadlock a thread that was already inside it.
#include "internal.h"
#include <pthread.h>

static CPPROF_TLS uintptr_t bounds_low, bounds_high; // 0, 0: not learnt

void cpprof_thread_stack_learn(void) {
    if (bounds_high != 0) return;
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) return;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_attr_getstack(&attr, &addr, &size) == 0 && addr != NULL && size != 0) {
        bounds_low = (uintptr_t)addr;
        bounds_high = (uintptr_t)addr + size;
    }
    pthread_attr_destroy(&attr);
}

int cpprof_thread_stack_end(uintptr_t sp, uintptr_t *end) {
    if (bounds_high != 0 && sp >= bounds_low && sp < bounds_high) {
        *end = bounds_high;
        return 1;
    }
    // Not learnt (a thread not started through pthread_create), or on
    // another stack (sigaltstack, coroutine): the stack map, if one exists.
    return cpprof_stackmap_region_end(sp, end);
}

__attribute__((constructor)) static void learn_main_thread_stack(void) {
    cpprof_thread_stack_learn();
}
