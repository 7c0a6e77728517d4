// CPU sampling: one CLOCK_THREAD_CPUTIME_ID timer per thread delivers SIGPROF
// to that very thread after each `period` of its CPU time, so every busy
// thread is sampled in proportion to the CPU it uses. The handler walks the
// interrupted stack into the lock-free ring; the collector (Swift) drains it.
// Falls back to the process-wide ITIMER_PROF where per-thread timers fail.
// SIGPROF itself belongs to sigprof.c, which hands this file its signals
// (cpprof_cpu_on_sigprof).
#include "internal.h"
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

// Identifies our timers' signals among other SIGPROFs.
static const int timer_cookie = 0x70707266;

typedef struct thread_timer { int32_t tid; int32_t seen; timer_t timer; } thread_timer;

static pthread_mutex_t session_lock = PTHREAD_MUTEX_INITIALIZER; // collector side only
static thread_timer *timers;
static size_t timer_count, timer_cap;
static int64_t period_ns_cfg;
static unsigned int jitter_seed;

static _Atomic int32_t active_mode;    // cpprof_cpu_mode; read by the handler
static int atfork_registered;

static _Atomic uint64_t st_samples, st_dropped, st_unbounded, st_timer_errors, st_untimed;
static uint64_t foreign_at_start;      // cpprof_sigprof_foreign_count() when the session started
static _Atomic int32_t st_handler_lost;

static CPPROF_TLS int32_t cached_tid;

static int32_t current_tid(void) {
    if (cached_tid == 0) cached_tid = (int32_t)syscall(SYS_gettid);
    return cached_tid;
}

static void registers_from_context(void *uctx, uintptr_t *pc, uintptr_t *fp, uintptr_t *sp) {
    ucontext_t *uc = uctx;
#if defined(__x86_64__)
    *pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    *fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
    *sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    *pc = (uintptr_t)uc->uc_mcontext.pc;
    *fp = (uintptr_t)uc->uc_mcontext.regs[29];
    *sp = (uintptr_t)uc->uc_mcontext.sp;
#else
#error "unsupported architecture"
#endif
}

static int record_sample(uintptr_t pc, uintptr_t fp, uintptr_t sp, uint64_t weight) {
    uint64_t ticket;
    cpprof_sample *s = cpprof_ring_claim(&ticket);
    if (s == NULL) { atomic_fetch_add_explicit(&st_dropped, 1, memory_order_relaxed); return 0; }
    uintptr_t stack_end = 0;
    uint32_t max = CPPROF_MAX_FRAMES;
    if (!cpprof_thread_stack_end(sp, &stack_end)) {
        // Stack not in the snapshot yet (a brand new thread): keep the leaf only.
        max = 1;
        atomic_fetch_add_explicit(&st_unbounded, 1, memory_order_relaxed);
    }
    s->tid = current_tid();
    s->weight = weight;
    s->depth = cpprof_walk_frames(pc, fp, sp, stack_end, s->pcs, max);
    cpprof_ring_publish(ticket);
    atomic_fetch_add_explicit(&st_samples, 1, memory_order_relaxed);
    return 1;
}

// Called by the SIGPROF dispatcher (sigprof.c) for every SIGPROF, first.
// Returns 1 if the signal came from our timers. Async-signal-safe.
int cpprof_cpu_on_sigprof(siginfo_t *info, void *uctx) {
    int32_t mode = atomic_load_explicit(&active_mode, memory_order_acquire);
    int ours_thread = info != NULL && info->si_code == SI_TIMER && info->si_value.sival_int == timer_cookie;
    int ours_process = mode == CPPROF_CPU_PROCESS_TIMER && info != NULL && info->si_code == SI_KERNEL;
    if (!ours_thread && !ours_process) return 0;
    if (mode != CPPROF_CPU_OFF) {
        uintptr_t pc, fp, sp;
        registers_from_context(uctx, &pc, &fp, &sp);
        uint64_t weight = 1;
        if (ours_thread && info->si_overrun > 0) weight += (uint64_t)info->si_overrun;
        record_sample(pc, fp, sp, weight);
    }
    // else: a late signal from a deleted timer after stop: nothing to do.
    return 1;
}

// For bench_hooks.c: the cookie our timers' signals carry, so a benchmark
// can time the real recording path.
int cpprof_internal_timer_cookie(void) { return timer_cookie; }

static void after_fork_in_child(void) {
    // Timers are not inherited; forget ours without touching the kernel.
    pthread_mutex_init(&session_lock, NULL);
    atomic_store(&active_mode, CPPROF_CPU_OFF);
    // Leaked, not freed: the fork may have landed inside a realloc of it.
    timers = NULL;
    timer_count = timer_cap = 0;
    cached_tid = 0;
    // Another thread may have been inside the ring or the stack map.
    cpprof_ring_reset_after_fork();
    cpprof_stackmap_reset_after_fork();
}

static int64_t random_first_expiry(void) {
    // In (0, period]: short-lived threads are not all skipped.
    int64_t r = (int64_t)(rand_r(&jitter_seed) % 1000) + 1;
    return period_ns_cfg * r / 1000;
}

static int arm_thread_timer(int32_t tid, timer_t *out) {
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGPROF;
    sev.sigev_value.sival_int = timer_cookie;
    sev._sigev_un._tid = tid; // glibc 2.36 has no sigev_notify_thread_id
    clockid_t clock = (clockid_t)((~(uint32_t)tid) << 3) | 6; // MAKE_THREAD_CPUCLOCK(tid, SCHED)
    timer_t timer;
    if (timer_create(clock, &sev, &timer) != 0) return errno;
    struct itimerspec spec;
    int64_t first = random_first_expiry();
    spec.it_interval.tv_sec = period_ns_cfg / 1000000000;
    spec.it_interval.tv_nsec = period_ns_cfg % 1000000000;
    spec.it_value.tv_sec = first / 1000000000;
    spec.it_value.tv_nsec = first % 1000000000;
    if (timer_settime(timer, 0, &spec, NULL) != 0) {
        int e = errno;
        timer_delete(timer);
        return e;
    }
    *out = timer;
    return 0;
}

// Each per-thread timer holds a queued-signal entry charged to the user's
// RLIMIT_SIGPENDING, shared with every process of that user: use a quarter
// at most, and count the threads left without a timer.
static size_t timer_limit(void) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_SIGPENDING, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return 8192;
    size_t quarter = (size_t)(lim.rlim_cur / 4);
    return quarter < 8192 ? quarter : 8192;
}

// A timer whose thread has exited reads as disarmed (the kernel zeroes it):
// its tid may already belong to a new thread, which needs a timer of its own.
static int timer_is_dead(timer_t timer) {
    struct itimerspec left;
    if (timer_gettime(timer, &left) != 0) return 1;
    return left.it_value.tv_sec == 0 && left.it_value.tv_nsec == 0;
}

static thread_timer *find_timer(int32_t tid) {
    for (size_t i = 0; i < timer_count; i++) if (timers[i].tid == tid) return &timers[i];
    return NULL;
}

// Arms a timer for `tid` and keeps it in `timers`. Caller holds session_lock.
// Returns 0, ENOMEM, or the error of timer_create/timer_settime.
static int add_timer_locked(int32_t tid) {
    if (timer_count == timer_cap) {
        size_t cap = timer_cap ? timer_cap * 2 : 64;
        thread_timer *bigger = realloc(timers, cap * sizeof *timers);
        if (bigger == NULL) return ENOMEM;
        timers = bigger; timer_cap = cap;
    }
    timer_t timer;
    int err = arm_thread_timer(tid, &timer);
    if (err == 0) timers[timer_count++] = (thread_timer){tid, 1, timer};
    else if (err != EINVAL && err != ESRCH) atomic_fetch_add(&st_timer_errors, 1);
    // EINVAL/ESRCH: the thread exited between listing and arming.
    return err;
}

// Caller holds session_lock.
static void stop_locked(void);

static int sync_threads_locked(void) {
    if (atomic_load(&active_mode) == CPPROF_CPU_OFF) return 0;
    // Something else may have taken SIGPROF or reset it to SIG_DFL, whose
    // action kills the process: then no timer of ours may stay armed.
    if (!cpprof_sigprof_owned()) {
        atomic_store(&st_handler_lost, 1);
        stop_locked();
        return 0;
    }
    if (atomic_load(&active_mode) != CPPROF_CPU_THREAD_TIMERS) return (int)timer_count;
    // Timers of threads that exited (their tid may be reused by now).
    size_t alive = 0;
    for (size_t i = 0; i < timer_count; i++) {
        if (timer_is_dead(timers[i].timer)) timer_delete(timers[i].timer);
        else timers[alive++] = timers[i];
    }
    timer_count = alive;
    DIR *dir = opendir("/proc/self/task");
    if (dir == NULL) return (int)timer_count;
    for (size_t i = 0; i < timer_count; i++) timers[i].seen = 0;
    int32_t *fresh = NULL;
    size_t fresh_count = 0, fresh_cap = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        int32_t tid = (int32_t)strtol(entry->d_name, NULL, 10);
        thread_timer *t = find_timer(tid);
        if (t) { t->seen = 1; continue; }
        if (fresh_count == fresh_cap) {
            size_t cap = fresh_cap ? fresh_cap * 2 : 64;
            int32_t *bigger = realloc(fresh, cap * sizeof *fresh);
            if (bigger == NULL) break;
            fresh = bigger; fresh_cap = cap;
        }
        fresh[fresh_count++] = tid;
    }
    closedir(dir);
    // Delete timers of threads that are gone.
    size_t kept = 0;
    for (size_t i = 0; i < timer_count; i++) {
        if (timers[i].seen) timers[kept++] = timers[i];
        else timer_delete(timers[i].timer);
    }
    timer_count = kept;
    // Stacks of the threads just listed are mapped by now: refresh the map
    // before their timers can fire, so their samples get whole stacks.
    if (fresh_count > 0 || timer_count == 0) cpprof_stackmap_refresh();
    size_t limit = timer_limit();
    uint64_t untimed = 0;
    for (size_t i = 0; i < fresh_count; i++) {
        if (timer_count >= limit) { untimed++; continue; }
        int err = add_timer_locked(fresh[i]);
        if (err == ENOMEM) break;
        // EAGAIN: the user's pending-signal quota (shared by all its processes) is used up.
        if (err != 0 && err != EINVAL && err != ESRCH) untimed++;
    }
    free(fresh);
    atomic_store(&st_untimed, untimed);
    return (int)timer_count;
}

// A thread started through our pthread_create (thread_create.c) calls this
// before its start routine: while per-thread timers are on, it gets its own
// timer at once instead of at the collector's next sync, 50 ms later at
// worst, so threads that live less than that are sampled too (a thread-churn
// fault test saw 11 samples for 3.5 s of CPU spent in 2 ms threads). Not a
// signal handler: it takes the session lock, as the collector does.
void cpprof_cpu_thread_started(void) {
    if (atomic_load_explicit(&active_mode, memory_order_acquire) != CPPROF_CPU_THREAD_TIMERS) return;
    int32_t tid = current_tid();
    pthread_mutex_lock(&session_lock);
    // Re-checked under the lock: a session that stopped meanwhile arms nothing.
    if (atomic_load(&active_mode) == CPPROF_CPU_THREAD_TIMERS && find_timer(tid) == NULL) add_timer_locked(tid);
    pthread_mutex_unlock(&session_lock);
}

int cpprof_cpu_start(int64_t period_ns) {
    if (period_ns <= 0) return EINVAL;
    pthread_mutex_lock(&session_lock);
    if (atomic_load(&active_mode) != CPPROF_CPU_OFF) { pthread_mutex_unlock(&session_lock); return EBUSY; }
    int err = cpprof_ring_init();
    if (err == 0) err = cpprof_stackmap_refresh();
    if (err == 0) err = cpprof_sigprof_install();
    if (err == 0 && !cpprof_sigprof_owned()) err = EEXIST; // someone replaced our handler
    if (err != 0) { pthread_mutex_unlock(&session_lock); return err; }
    if (!atfork_registered) { pthread_atfork(NULL, NULL, after_fork_in_child); atfork_registered = 1; }
    atomic_store(&st_samples, 0); atomic_store(&st_dropped, 0); atomic_store(&st_unbounded, 0);
    foreign_at_start = cpprof_sigprof_foreign_count(); atomic_store(&st_timer_errors, 0);
    atomic_store(&st_untimed, 0); atomic_store(&st_handler_lost, 0);
    period_ns_cfg = period_ns;
    jitter_seed = (unsigned int)time(NULL) ^ (unsigned int)getpid();
    cpprof_sample scratch[64];
    while (cpprof_ring_drain(scratch, 64) > 0) {} // leftovers of a previous session
    atomic_store(&active_mode, CPPROF_CPU_THREAD_TIMERS);
    // Probe: can this kernel give a thread its own CPU-time timer?
    timer_t probe;
    if (arm_thread_timer(current_tid(), &probe) == 0) {
        timer_delete(probe);
        sync_threads_locked();
    } else {
        atomic_store(&active_mode, CPPROF_CPU_PROCESS_TIMER);
        struct itimerval it;
        it.it_interval.tv_sec = period_ns / 1000000000;
        it.it_interval.tv_usec = (period_ns % 1000000000) / 1000;
        it.it_value = it.it_interval;
        if (setitimer(ITIMER_PROF, &it, NULL) != 0) {
            err = errno;
            atomic_store(&active_mode, CPPROF_CPU_OFF);
        }
    }
    pthread_mutex_unlock(&session_lock);
    return err;
}

int cpprof_cpu_sync_threads(void) {
    pthread_mutex_lock(&session_lock);
    int n = sync_threads_locked();
    pthread_mutex_unlock(&session_lock);
    return n;
}

size_t cpprof_cpu_drain(cpprof_sample *out, size_t max) {
    return cpprof_ring_drain(out, max);
}

void cpprof_cpu_stop(void) {
    pthread_mutex_lock(&session_lock);
    stop_locked();
    pthread_mutex_unlock(&session_lock);
}

static void stop_locked(void) {
    int32_t mode = atomic_load(&active_mode);
    // Timers go first; the handler stays installed so a pending SIGPROF is harmless.
    if (mode == CPPROF_CPU_THREAD_TIMERS) {
        for (size_t i = 0; i < timer_count; i++) timer_delete(timers[i].timer);
        timer_count = 0;
    } else if (mode == CPPROF_CPU_PROCESS_TIMER) {
        struct itimerval off;
        memset(&off, 0, sizeof off);
        setitimer(ITIMER_PROF, &off, NULL);
    }
    atomic_store(&active_mode, CPPROF_CPU_OFF);
}

void cpprof_cpu_get_stats(cpprof_cpu_stats *out) {
    out->samples = atomic_load(&st_samples);
    out->dropped_ring_full = atomic_load(&st_dropped);
    out->stack_unbounded = atomic_load(&st_unbounded);
    out->timer_errors = atomic_load(&st_timer_errors);
    out->stackmap_leaks = atomic_load(&cpprof_stackmap_leaks);
    out->mode = atomic_load(&active_mode);
    // timer_count changes under the session lock (collector, new threads);
    // an unlocked read here was a data race (ThreadSanitizer).
    pthread_mutex_lock(&session_lock);
    out->timers = (int32_t)timer_count;
    out->foreign_signals = cpprof_sigprof_foreign_count() - foreign_at_start;
    pthread_mutex_unlock(&session_lock);
    out->threads_without_timer = atomic_load(&st_untimed);
    out->handler_lost = atomic_load(&st_handler_lost);
}

__attribute__((noinline)) int cpprof_cpu_record_self_for_testing(void) {
    uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
    uintptr_t sp = fp; // the walk starts at this frame, which is on our stack
    int ok = cpprof_ring_init() == 0 && cpprof_stackmap_refresh() == 0;
    return ok ? record_sample((uintptr_t)&cpprof_cpu_record_self_for_testing, fp, sp, 1) : 0;
}
