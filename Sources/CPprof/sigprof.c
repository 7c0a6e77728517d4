// The one owner of SIGPROF. This file alone installs the handler, decides
// whose each SIGPROF is, and passes the ones that are not ours to the
// handler the application had installed before.
//
// Dispatch (in the handler, async-signal-safe):
//   - the CPU sampler's signals (SI_TIMER with its cookie, or SI_KERNEL from
//     ITIMER_PROF while that fallback runs): cpprof_cpu_on_sigprof;
//   - thread-dump signals (SI_QUEUE with the dump's magic si_value):
//     cpprof_dump_on_sigprof;
//   - anything else (kill -PROF, the app's own timers): the previous handler,
//     or nothing when it was SIG_DFL/SIG_IGN: a stray SIGPROF never kills the
//     process once the dispatcher is installed.
// The recognisers are called by name, not through registered pointers, so
// Scripts/check-signal-handlers.sh follows them in the machine code.
//
// Invariants: installed at most once per process (PprofServer.start(), the
// first profile or the first dump), never uninstalled: a signal still pending
// after a session stops must find it. errno is preserved. The previous action
// is written once, before the handler can run, and only read afterwards.
#include "internal.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int installed;            // 1 once sigaction succeeded
static struct sigaction previous_action; // the application's, if any
static _Atomic uint64_t foreign_count;

static void chain_previous(int sig, siginfo_t *info, void *uctx) {
    atomic_fetch_add_explicit(&foreign_count, 1, memory_order_relaxed);
    if (previous_action.sa_flags & SA_SIGINFO) {
        if (previous_action.sa_sigaction != NULL) previous_action.sa_sigaction(sig, info, uctx);
    } else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN &&
               previous_action.sa_handler != NULL) {
        previous_action.sa_handler(sig);
    }
    // SIG_DFL would terminate the process: a stray SIGPROF is dropped instead.
}

static void sigprof_handler(int sig, siginfo_t *info, void *uctx) {
    int saved_errno = errno;
    if (!cpprof_cpu_on_sigprof(info, uctx) && !cpprof_dump_on_sigprof(info, uctx))
        chain_previous(sig, info, uctx);
    errno = saved_errno;
}

int cpprof_sigprof_install(void) {
    if (atomic_load_explicit(&installed, memory_order_acquire)) return 0;
    pthread_mutex_lock(&install_lock);
    int err = 0;
    if (!atomic_load(&installed)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = sigprof_handler;
        // Every signal blocked while it runs: an application handler that
        // siglongjmps out must not abandon ours half-way (a claimed ring
        // cell, a half-written dump slot). On the alternate stack if any.
        sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
        sigfillset(&sa.sa_mask);
        if (sigaction(SIGPROF, &sa, &previous_action) != 0) err = errno;
        else atomic_store_explicit(&installed, 1, memory_order_release);
    }
    pthread_mutex_unlock(&install_lock);
    return err;
}

int cpprof_sigprof_prepare(void) { return cpprof_sigprof_install(); }

int cpprof_sigprof_owned(void) {
    if (!atomic_load_explicit(&installed, memory_order_acquire)) return 0;
    struct sigaction current;
    if (sigaction(SIGPROF, NULL, &current) != 0 || !(current.sa_flags & SA_SIGINFO)) return 0;
    return current.sa_sigaction == sigprof_handler;
}

uint64_t cpprof_sigprof_foreign_count(void) { return atomic_load_explicit(&foreign_count, memory_order_relaxed); }

cpprof_sigaction_fn cpprof_internal_sigprof_handler(void) { return sigprof_handler; }
