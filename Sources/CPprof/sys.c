// Small wrappers of system calls and macros Swift cannot use directly.
#include "include/cpprof_sys.h"
#include <pthread.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/resource.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int32_t cpprof_gettid(void) { return (int32_t)syscall(SYS_gettid); }

void cpprof_set_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    pthread_setname_np(pthread_self(), buf);
}

int cpprof_lower_thread_priority(void) {
    // Nice 19 for the calling thread only (Linux: PRIO_PROCESS with a tid).
    // Not SCHED_IDLE: on a saturated machine such a thread can wait seconds
    // for a core, and while it holds a lock the threads waiting for that
    // lock wait with it (on the loaded demo, warm /goroutine?debug=2 took
    // 159-216 ms beside a SCHED_IDLE read-ahead, 20-102 ms without one).
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
}

void cpprof_release_free_memory(void) {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}
