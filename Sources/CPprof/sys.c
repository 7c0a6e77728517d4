// Small wrappers of system calls and macros Swift cannot use directly.
#include "include/cpprof_sys.h"
#include <pthread.h>
#include <sched.h>
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
    // Linux applies both to the calling thread only (0 / its tid), never to
    // the process. SCHED_IDLE: runs only when a core would idle otherwise.
    struct sched_param param = {0};
    if (sched_setscheduler(0, SCHED_IDLE, &param) == 0) return 0;
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
}
