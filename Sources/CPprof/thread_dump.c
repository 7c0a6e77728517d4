// Thread dumps, the dumper's side. For every thread listed in
// /proc/self/task: a thread that has not run since the last dump keeps that
// dump's stack (dump_cache.c); a thread blocked in the kernel is left alone,
// its stack read from /proc and process_vm_readv (proc_capture.c), so no
// sleep, poll or read of the app returns early; a thread on a CPU is sent
// SIGPROF (see ensure_signal), whose handler (dump_slots.c) copies its
// registers and the top of its stack into a slot reserved for it. The dumper
// waits with a deadline, gives up on threads that did not answer, and
// unwinds the copies afterwards (remote_unwind.c), outside any handler.
//
// Invariants: one dump at a time (dump_lock); nothing here runs in a signal
// handler; a slot is handed to a thread only armed for this dump's
// generation, and a slot a late handler may still claim is abandoned with a
// compare-and-swap, never reused while written (dump_slots.h).
#include "dump_slots.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_DEADLINE_MS 200
// Bytes first copied of a blocked thread's stack: a 64 KiB process_vm_readv
// costs ~10 us of CPU, an 8 KiB one ~3 us, and most blocked stacks unwind
// within 8 KiB (unwind_slot copies the rest when one does not).
#define PROC_FIRST_COPY (8 * 1024)
#define LINGER_WAIT_NS (20 * 1000000LL)   // extra wait for handlers caught mid-copy
#define STUCK_MAX 1024
#define RESEND_NS (10 * 1000000LL)        // re-signal threads that have not answered

static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int dump_signal;                 // 0: not chosen yet; -1: none free
static uint64_t generation;
static int atfork_registered;
// Threads that did not answer the last dump: checked before signalling them
// again, so a thread that blocks the signal does not cost every dump its
// full deadline.
static int32_t stuck_tids[STUCK_MAX];
static _Atomic(void (*)(void)) unwind_hook; // test hook: runs between capture and unwind
static size_t stuck_count;
static int sampling_profiles; // wall-clock profiles running (cpprof_threads_sampling)
static uint32_t held_slots;   // slots whose pages they keep until the last one ends

// --- setup (under dump_lock) -----------------------------------------------

static void after_fork_in_child(void) {
    pthread_mutex_init(&dump_lock, NULL);
    stuck_count = 0;
    sampling_profiles = 0; // the parent's profiles do not run here
    held_slots = 0;
    cpprof_unwind_memo_enable(0);
    cpprof_unwind_reset_after_fork();
    cpprof_dump_cache_clear(); // the parent's threads
    cpprof_proc_forget_files_after_fork();
}

// Makes sure SIGPROF reaches us (sigprof.c installs it once). SIGPROF, not a
// real-time signal: libdispatch blocks every signal but SIGPROF and the
// synchronous fault signals in its worker threads (the Swift concurrency pool
// among them), and threads they create inherit that mask, so a real-time
// signal would reach none of them. Dump signals carry SI_QUEUE and a magic
// si_value. Caller holds dump_lock.
static int ensure_signal(void) {
    int sig = atomic_load(&dump_signal);
    if (sig != 0) return sig;
    if (cpprof_sigprof_install() != 0) {
        atomic_store(&dump_signal, -1);
        return -1;
    }
    if (!atfork_registered) {
        pthread_atfork(NULL, NULL, after_fork_in_child);
        atfork_registered = 1;
    }
    atomic_store(&dump_signal, SIGPROF);
    return SIGPROF;
}

static inline uint64_t sig_bit(int sig) { return 1ULL << (sig - 1); }

static int was_stuck(int32_t tid) {
    for (size_t i = 0; i < stuck_count; i++) if (stuck_tids[i] == tid) return 1;
    return 0;
}

// --- the dump ---------------------------------------------------------------

static int send_dump_signal(pid_t pid, int32_t tid, int sig, uint64_t value) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = sig;
    si.si_code = SI_QUEUE;
    si.si_pid = pid;
    si.si_uid = getuid();
    si.si_value.sival_ptr = (void *)(uintptr_t)value;
    if (syscall(SYS_rt_tgsigqueueinfo, pid, tid, sig, &si) != 0) return errno;
    return 0;
}

// Reads a blocked thread's stack without a signal (proc_capture.c) into its
// slot, armed for this dump and claimed here (no signal was sent for it).
// `cpu_ns`: its CPU time read when it was listed, the first attempt's
// "before". Only the first PROC_FIRST_COPY bytes are copied: most blocked
// stacks unwind within them, and the unwind asks for the rest if not; a
// thread blocked at the same sp and pc as at its last unwind (while
// wall-clock profiles run), only the bytes that unwind read.
// 0 if the thread is running, gone, or kept running while we read.
static int capture_blocked(int task_dir, int32_t tid, int64_t cpu_ns, cpprof_dump_slot *s, uint64_t gen) {
    uint64_t armed = cpprof_dump_state(gen, CPPROF_PHASE_ARMED);
    if (!atomic_compare_exchange_strong(&s->state, &armed, cpprof_dump_state(gen, CPPROF_PHASE_WRITING))) return 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        int64_t before = attempt == 0 ? cpu_ns : cpprof_thread_cpu_ns(tid);
        cpprof_proc_regs r;
        if (before < 0 || cpprof_proc_syscall(task_dir, tid, &r) != CPPROF_PROC_BLOCKED) break;
        size_t want = cpprof_unwind_memo_need(tid, r.sp, r.pc);
        if (want == 0 || want > PROC_FIRST_COPY) want = PROC_FIRST_COPY;
        size_t len = cpprof_proc_copy_stack(r.sp, s->copy, want);
        if (len == 0) break;
        // It ran meanwhile: the copy may mix two moments. Try again.
        if (cpprof_thread_cpu_ns(tid) != before) continue;
        memset(s->regs, 0, sizeof s->regs);
        s->regs[CPPROF_REG_RSP] = r.sp;
        s->regs[CPPROF_REG_RIP] = r.pc;
        s->stack_addr = r.sp & ~(uint64_t)7;
        s->stack_len = len;
        s->full_len = len < want ? len : cpprof_proc_stack_len(r.sp, CPPROF_THREAD_STACK_COPY);
        s->handler_ns = 0;
        s->only_sp_pc = 1;
        s->cpu_ns = before;
        // Its awaiting callers, if it runs a task: read while it stays
        // blocked; a thread that ran meanwhile keeps its stack, not the chain.
        cpprof_async_capture_from_copy(s->copy, s->stack_addr, len, &s->async);
        if (s->async.count > 0 && cpprof_thread_cpu_ns(tid) != before) s->async.count = 0;
        atomic_store_explicit(&s->state, cpprof_dump_state(gen, CPPROF_PHASE_DONE), memory_order_release);
        return 1;
    }
    atomic_store(&s->state, cpprof_dump_state(gen, CPPROF_PHASE_ARMED));
    return 0;
}

// The rest of a blocked thread's stack, for an unwind that went past its
// first copy: 1 if copied while the thread still had not run since.
static int complete_copy(cpprof_dump_slot *s, int32_t tid) {
    size_t len = cpprof_proc_copy_stack(s->stack_addr, s->copy, s->full_len);
    if (len <= s->stack_len || cpprof_thread_cpu_ns(tid) != s->cpu_ns) return 0;
    s->stack_len = len;
    cpprof_async_capture_from_copy(s->copy, s->stack_addr, len, &s->async);
    if (s->async.count > 0 && cpprof_thread_cpu_ns(tid) != s->cpu_ns) s->async.count = 0;
    return 1;
}

// Unwinds a slot's copy into info; completes a partial /proc copy first if
// the unwind needs more of it (and the thread has still not run). A /proc
// copy that provably unwinds as this thread's last one reuses it
// (unwind_memo.c, while wall-clock profiles run): *reused counts those.
static void unwind_slot(cpprof_dump_slot *s, cpprof_thread_info *info, uint32_t *completed, uint32_t *reused) {
    cpprof_stack_copy copy;
    memcpy(copy.regs, s->regs, sizeof copy.regs);
    copy.stack_addr = s->stack_addr;
    copy.bytes = s->copy;
    copy.only_sp_pc = s->only_sp_pc;
    uint8_t incomplete = 0;
    for (int pass = 0; pass < 2; pass++) {
        copy.stack_len = s->stack_len;
        copy.full_len = s->full_len;
        int again = 0;
        info->depth = cpprof_unwind_memo_copy(info->tid, &copy, info->pcs, CPPROF_THREAD_MAX_FRAMES,
                                              &info->unwinder, &info->truncated, &incomplete, &again);
        *reused += (uint32_t)again;
        if (!incomplete || pass > 0 || !complete_copy(s, info->tid)) break;
        (*completed)++;
    }
    // Not completed (it ran since): what the first bytes gave, marked cut.
    if (incomplete) info->truncated = 1;
    info->stack_bytes = s->stack_len;
    cpprof_async_splice(info->pcs, &info->depth, CPPROF_THREAD_MAX_FRAMES, &s->async);
}

int cpprof_threads_dump(int32_t deadline_ms, cpprof_thread_info **out, size_t *count,
                        cpprof_thread_dump_stats *stats) {
    return cpprof_threads_sample(NULL, 0, deadline_ms, out, count, stats);
}

int cpprof_threads_sample(const int32_t *only, size_t only_count, int32_t deadline_ms,
                          cpprof_thread_info **out, size_t *count, cpprof_thread_dump_stats *stats) {
    if (out == NULL || count == NULL) return EINVAL;
    *out = NULL;
    *count = 0;
    if (deadline_ms <= 0) deadline_ms = DEFAULT_DEADLINE_MS;
    int64_t t0 = cpprof_dump_now_ns();
    pthread_mutex_lock(&dump_lock);

    int sig = ensure_signal();
    // If SIGPROF was reset to SIG_DFL or taken by another handler, our
    // signals would kill the process or go astray: no dump.
    if (sig > 0 && !cpprof_sigprof_owned()) { pthread_mutex_unlock(&dump_lock); return EEXIST; }
    int32_t *tids = NULL;
    size_t n = 0;
    if (only != NULL) {
        tids = malloc((only_count ? only_count : 1) * sizeof *tids);
        if (tids == NULL) { pthread_mutex_unlock(&dump_lock); return ENOMEM; }
        memcpy(tids, only, only_count * sizeof *tids);
        n = only_count;
    } else {
        int err = cpprof_proc_list_tasks(&tids, &n);
        if (err != 0) { pthread_mutex_unlock(&dump_lock); return err; }
    }
    // Each entry's frames past its depth are never read: only the fields
    // before them are zeroed (a wall-clock tick zeroed ~110 KiB otherwise).
    cpprof_thread_info *infos = malloc((n ? n : 1) * sizeof *infos);
    if (infos != NULL)
        for (size_t i = 0; i < n; i++) memset(&infos[i], 0, offsetof(cpprof_thread_info, pcs));
    cpprof_dump_slot **slots = calloc(n ? n : 1, sizeof *slots);
    uint64_t *values = calloc(n ? n : 1, sizeof *values);
    size_t *pending = malloc((n ? n : 1) * sizeof *pending);
    if (!infos || !slots || !values || !pending) {
        free(infos); free(slots); free(values); free(pending); free(tids);
        pthread_mutex_unlock(&dump_lock);
        return ENOMEM;
    }

    // Read when a first thread is signalled: a wall-clock tick mostly signals none.
    pid_t pid = 0;
    const int32_t self = (int32_t)syscall(SYS_gettid);
    const long ticks = sysconf(_SC_CLK_TCK);
    // A thread that has not run since the last dump keeps that dump's stack
    // (dump_cache.c): nothing is read for it. Names and states of the others.
    uint32_t unchanged = 0;
    int new_threads = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t cpu = cpprof_thread_cpu_ns(tids[i]);
        int cached = tids[i] == self ? CPPROF_CACHE_CHANGED : cpprof_dump_cache_lookup(tids[i], cpu, &infos[i]);
        if (cached == CPPROF_CACHE_HIT) { unchanged++; continue; }
        if (cached == CPPROF_CACHE_UNKNOWN) new_threads = 1;
        infos[i].tid = tids[i];
        infos[i].status = CPPROF_THREAD_TIMED_OUT;
        // A wall-clock tick keeps the name a thread had (one /proc read less
        // per capture, the largest cost of a tick); a dump reads it afresh.
        if (only == NULL || cached != CPPROF_CACHE_CHANGED) cpprof_proc_read_stat(tids[i], &infos[i], ticks);
        // The key of the cache: the CPU time before the capture.
        infos[i].cpu_ns = cpu;
        if (cpu < 0) infos[i].status = CPPROF_THREAD_EXITED;
    }
    free(tids);
    // Stacks of every listed thread are mapped by now; threads known from the
    // last dump were in the map then (their stacks stay mapped while they live).
    if (new_threads || !cpprof_stackmap_ready()) cpprof_stackmap_refresh();

    generation = (generation + 1) & CPPROF_DUMP_GEN_MASK;
    if (generation == 0) generation = 1;
    const uint64_t gen = generation;
    uint32_t cursor = 0;
    uint32_t highest_slot = 0;
    for (size_t i = 0; i < n; i++) {
        if (infos[i].unchanged || infos[i].status == CPPROF_THREAD_EXITED) continue;
        uint32_t idx;
        cpprof_dump_slot *s = cpprof_dump_slot_take(gen, &cursor, &idx);
        if (s == NULL) { infos[i].status = CPPROF_THREAD_NO_SLOT; continue; }
        slots[i] = s;
        values[i] = (CPPROF_DUMP_VALUE_MAGIC << 48) | (gen << 20) | idx;
        if (idx + 1 > highest_slot) highest_slot = idx + 1;
    }

    int64_t t_capture = cpprof_dump_now_ns();
    size_t npending = 0;
    uint32_t read_blocked = 0, signalled = 0;
    int task_dir = cpprof_proc_open_task_dir();
    for (size_t i = 0; i < n; i++) {
        cpprof_dump_slot *s = slots[i];
        if (s == NULL) continue;
        if (infos[i].tid == self) {
            uint64_t armed = cpprof_dump_state(gen, CPPROF_PHASE_ARMED);
            if (atomic_compare_exchange_strong(&s->state, &armed, cpprof_dump_state(gen, CPPROF_PHASE_WRITING))) {
                cpprof_dump_capture_self(s);
                atomic_store(&s->state, cpprof_dump_state(gen, CPPROF_PHASE_DONE));
            }
            infos[i].status = CPPROF_THREAD_SELF;
            continue;
        }
        // Blocked in the kernel: read, not interrupted.
        // The cache key stays the CPU time read before the name and state: if
        // the thread ran since (renamed itself, say), the next dump reads it afresh.
        if (task_dir >= 0 && cpprof_proc_available() && capture_blocked(task_dir, infos[i].tid, infos[i].cpu_ns, s, gen)) {
            infos[i].status = CPPROF_THREAD_READ_BLOCKED;
            read_blocked++;
            continue;
        }
        if (sig <= 0) { infos[i].status = CPPROF_THREAD_SEND_FAILED; continue; }
        if (was_stuck(infos[i].tid)) {
            uint64_t sigpnd = 0, sigblk = 0;
            if (cpprof_proc_signal_sets(infos[i].tid, &sigpnd, &sigblk) && (sigblk & sig_bit(sig))) {
                infos[i].status = CPPROF_THREAD_BLOCKED;
                continue;
            }
        }
        if (pid == 0) pid = getpid();
        int e = send_dump_signal(pid, infos[i].tid, sig, values[i]);
        if (e == 0) { pending[npending++] = i; signalled++; }
        else infos[i].status = e == ESRCH ? CPPROF_THREAD_EXITED : CPPROF_THREAD_SEND_FAILED;
    }

    cpprof_proc_close_task_dir(task_dir);

    // Wait for the answers, at most until the deadline.
    const int64_t deadline = t_capture + (int64_t)deadline_ms * 1000000LL;
    int64_t last_answer = cpprof_dump_now_ns(); // blocked threads are read by now
    int64_t next_resend = t_capture + RESEND_NS;
    for (;;) {
        uint32_t seen = atomic_load_explicit(&cpprof_dump_wake_word, memory_order_acquire);
        size_t kept = 0;
        for (size_t k = 0; k < npending; k++) {
            size_t i = pending[k];
            uint64_t st = atomic_load_explicit(&slots[i]->state, memory_order_acquire);
            if (st == cpprof_dump_state(gen, CPPROF_PHASE_DONE)) infos[i].status = CPPROF_THREAD_ANSWERED;
            else pending[kept++] = i;
        }
        if (kept < npending) last_answer = cpprof_dump_now_ns();
        npending = kept;
        if (npending == 0) break;
        int64_t now = cpprof_dump_now_ns();
        int64_t left = deadline - now;
        if (left <= 0) break;
        if (now >= next_resend) {
            // SIGPROF does not queue: ours was dropped if a CPU-timer SIGPROF
            // was pending on that thread. Sending again is harmless: it is
            // dropped in turn while ours is still pending.
            size_t still = 0;
            for (size_t k = 0; k < npending; k++) {
                size_t i = pending[k];
                uint64_t armed = cpprof_dump_state(gen, CPPROF_PHASE_ARMED);
                if (atomic_load(&slots[i]->state) == armed &&
                    send_dump_signal(pid, infos[i].tid, sig, values[i]) == ESRCH &&
                    atomic_compare_exchange_strong(&slots[i]->state, &armed, cpprof_dump_state(gen, CPPROF_PHASE_ABANDONED))) {
                    infos[i].status = CPPROF_THREAD_EXITED; // exited with our signal pending
                    continue;
                }
                pending[still++] = i;
            }
            npending = still;
            if (npending == 0) break;
            next_resend = now + RESEND_NS;
        }
        if (next_resend - now < left) left = next_resend - now;
        struct timespec ts = {left / 1000000000LL, left % 1000000000LL};
        syscall(SYS_futex, &cpprof_dump_wake_word, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
    }

    // Give up on the rest. A handler caught mid-copy gets a little longer;
    // one still writing after that is left alone: its slot is not reused
    // until it finishes.
    uint64_t lingering = 0;
    int64_t linger_until = cpprof_dump_now_ns() + LINGER_WAIT_NS;
    for (size_t i = 0; i < n; i++) {
        // Slots of threads that were not signalled at all: nothing can claim them.
        if (slots[i] == NULL || infos[i].status == CPPROF_THREAD_TIMED_OUT) continue;
        uint64_t armed = cpprof_dump_state(gen, CPPROF_PHASE_ARMED);
        atomic_compare_exchange_strong(&slots[i]->state, &armed, cpprof_dump_state(gen, CPPROF_PHASE_ABANDONED));
    }
    for (size_t k = 0; k < npending; k++) {
        size_t i = pending[k];
        uint64_t armed = cpprof_dump_state(gen, CPPROF_PHASE_ARMED);
        if (atomic_compare_exchange_strong(&slots[i]->state, &armed, cpprof_dump_state(gen, CPPROF_PHASE_ABANDONED)))
            continue;
        while (atomic_load(&slots[i]->state) == cpprof_dump_state(gen, CPPROF_PHASE_WRITING) && cpprof_dump_now_ns() < linger_until)
            sched_yield();
        if (atomic_load_explicit(&slots[i]->state, memory_order_acquire) == cpprof_dump_state(gen, CPPROF_PHASE_DONE))
            infos[i].status = CPPROF_THREAD_ANSWERED;
        else
            lingering++;
    }
    int64_t t_captured = npending ? cpprof_dump_now_ns() : last_answer;

    // Why did the others not answer?
    size_t new_stuck = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t st = infos[i].status;
        if (st == CPPROF_THREAD_TIMED_OUT) {
            uint64_t sigpnd = 0, sigblk = 0;
            if (!cpprof_proc_signal_sets(infos[i].tid, &sigpnd, &sigblk)) infos[i].status = CPPROF_THREAD_EXITED;
            else if (sig > 0 && (sigblk & sig_bit(sig))) infos[i].status = CPPROF_THREAD_BLOCKED;
        }
        st = infos[i].status;
        if ((st == CPPROF_THREAD_TIMED_OUT || st == CPPROF_THREAD_BLOCKED) &&
            new_stuck < STUCK_MAX)
            stuck_tids[new_stuck++] = infos[i].tid;
    }
    stuck_count = new_stuck;

    void (*hook)(void) = atomic_load(&unwind_hook);
    if (hook != NULL) hook();

    // Unwind the copies, outside any handler.
    int64_t t_unwind = cpprof_dump_now_ns();
    // Images are listed and libunwind readied only when a stack needs unwinding.
    int need_unwind = 0;
    for (size_t i = 0; i < n && !need_unwind; i++) {
        int32_t st = infos[i].status;
        need_unwind = !infos[i].unchanged && (st == CPPROF_THREAD_ANSWERED || st == CPPROF_THREAD_SELF ||
                                              st == CPPROF_THREAD_READ_BLOCKED);
    }
    int have_dwarf = need_unwind ? cpprof_unwind_begin() : 0;
    uint32_t completed = 0; // /proc copies whose unwind needed more than the first bytes
    uint32_t reused = 0;    // /proc copies whose last unwind was reused
    uint32_t answered = 0;
    int64_t handler_max = 0, handler_sum = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t st = infos[i].status;
        if (st != CPPROF_THREAD_ANSWERED && st != CPPROF_THREAD_SELF && st != CPPROF_THREAD_READ_BLOCKED) continue;
        if (infos[i].unchanged) { answered++; continue; } // the last dump's stack
        cpprof_dump_slot *s = slots[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != cpprof_dump_state(gen, CPPROF_PHASE_DONE)) {
            infos[i].status = CPPROF_THREAD_TIMED_OUT;
            continue;
        }
        if (st == CPPROF_THREAD_ANSWERED) {
            handler_sum += s->handler_ns;
            if (s->handler_ns > handler_max) handler_max = s->handler_ns;
        }
        unwind_slot(s, &infos[i], &completed, &reused);
        answered++;
    }
    if (need_unwind) cpprof_unwind_end();
    cpprof_dump_cache_store(infos, n, only == NULL);
    int64_t t_end = cpprof_dump_now_ns();

    // Give the copied pages back; a wall-clock tick's (its threads, at most 256),
    // while profiles run, at their end: zapping them every tick cost a TLB
    // shootdown, and each next copy faulted them in again. A whole dump's
    // go back at once, as always.
    if (sampling_profiles > 0 && only != NULL) {
        if (highest_slot > held_slots) held_slots = highest_slot;
    } else {
        cpprof_dump_slots_release(highest_slot);
    }
    pthread_mutex_unlock(&dump_lock);

    if (stats != NULL) {
        stats->signal = sig;
        stats->libunwind = have_dwarf;
        stats->threads = (uint32_t)n;
        stats->answered = answered;
        stats->prepare_ns = t_capture - t0;
        stats->capture_ns = t_captured - t_capture;
        stats->unwind_ns = t_end - t_unwind;
        stats->total_ns = t_end - t0;
        stats->lingering = lingering;
        stats->handler_max_ns = handler_max;
        stats->handler_total_ns = handler_sum;
        stats->read_blocked = read_blocked;
        stats->signalled = signalled;
        stats->unchanged = unchanged;
        stats->completed = completed;
        stats->reused = reused;
    }
    free(slots);
    free(values);
    free(pending);
    *out = infos;
    *count = n;
    return 0;
}

void cpprof_threads_free(cpprof_thread_info *infos) { free(infos); }

void cpprof_threads_sampling(int active) {
    pthread_mutex_lock(&dump_lock);
    if (active && sampling_profiles++ == 0) {
        cpprof_proc_keep_files(1);
        cpprof_unwind_memo_enable(1);
    } else if (!active && sampling_profiles > 0 && --sampling_profiles == 0) {
        cpprof_proc_keep_files(0);
        cpprof_unwind_memo_enable(0);
        cpprof_dump_slots_release(held_slots);
        held_slots = 0;
    }
    pthread_mutex_unlock(&dump_lock);
}

int cpprof_threads_signal(void) { return atomic_load(&dump_signal); }

const char *cpprof_thread_state_name(char letter) {
    switch (letter) {
    case 'R': return "running";
    case 'S': return "sleeping";
    case 'D': return "disk sleep";
    case 'T': return "stopped";
    case 't': return "tracing stop";
    case 'X': case 'x': return "dead";
    case 'Z': return "zombie";
    case 'P': return "parked";
    case 'I': return "idle";
    case 'W': return "waking";
    case 'K': return "wakekill";
    default: return "unknown";
    }
}

uint64_t __attribute__((noinline)) cpprof_caller_address_for_testing(void) {
    return (uint64_t)(uintptr_t)__builtin_return_address(0);
}

int cpprof_threads_block_signal_for_testing(int block) {
    pthread_mutex_lock(&dump_lock);
    int sig = ensure_signal();
    pthread_mutex_unlock(&dump_lock);
    if (sig <= 0) return EAGAIN;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    return pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

int cpprof_function_bounds_for_testing(uint64_t addr, uint64_t *start, uint64_t *end) {
    pthread_mutex_lock(&dump_lock);
    cpprof_unwind_begin();
    int found = cpprof_unwind_function_bounds(addr, start, end);
    cpprof_unwind_end();
    pthread_mutex_unlock(&dump_lock);
    return found;
}

void cpprof_threads_set_unwind_hook_for_testing(void (*hook)(void)) { atomic_store(&unwind_hook, hook); }
