// Thread dumps. For every thread listed in /proc/self/task: a thread blocked
// in the kernel is left alone, its stack read from /proc and process_vm_readv
// (proc_capture.c), so no sleep, poll or read of the app returns early; a
// thread on a CPU is sent SIGPROF (see ensure_signal), and its handler copies
// its registers and the top of its own stack into a slot reserved for it,
// then marks the slot done. The dumper waits with a deadline, gives up on
// threads that did not answer, and unwinds the copies afterwards, outside any
// signal handler.
//
// Slots live in chunks that are mapped once and never unmapped, so a handler
// that runs late (its thread was stuck when the dump ended) can only write
// into memory that stays valid. Each slot carries a generation: a handler
// claims its slot with a compare-and-swap from "armed for generation G",
// which fails for a signal left over from an older dump.
#include "internal.h"
#include "include/cpprof_threads.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "thread dumps are implemented for x86_64 only"
#endif

#define SLOTS_PER_CHUNK 256
#define MAX_CHUNKS (CPPROF_THREAD_MAX_THREADS / SLOTS_PER_CHUNK)
#define DEFAULT_DEADLINE_MS 200
#define LINGER_WAIT_NS (20 * 1000000LL)   // extra wait for handlers caught mid-copy
#define STUCK_MAX 1024
#define RESEND_NS (10 * 1000000LL)        // re-signal threads that have not answered

enum { PHASE_FREE = 0, PHASE_ARMED = 1, PHASE_WRITING = 2, PHASE_DONE = 3, PHASE_ABANDONED = 4 };

// si_value of our signals: magic (16 bits) | generation (28 bits) | slot (20 bits).
#define VALUE_MAGIC 0x7464ULL
#define GEN_MASK ((1ULL << 28) - 1)
#define IDX_MASK ((1ULL << 20) - 1)

typedef struct dump_slot {
    _Atomic uint64_t state;          // (generation << 8) | phase
    uint64_t regs[CPPROF_NREGS];
    uint64_t stack_addr;
    uint64_t stack_len;
    int64_t handler_ns;              // time the handler took
    int only_sp_pc;                  // read from /proc: only rsp and rip known
    uint8_t *copy;                   // CPPROF_THREAD_STACK_COPY bytes, fixed
    cpprof_async_capture async;      // awaiting callers, read live by the handler
    uint64_t walk[CPPROF_THREAD_MAX_FRAMES]; // the handler's scratch for finding them
} dump_slot;

typedef struct slot_chunk {
    dump_slot slots[SLOTS_PER_CHUNK];
    uint8_t *copies;
} slot_chunk;

static _Atomic(slot_chunk *) chunks[MAX_CHUNKS];

static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int dump_signal;                 // 0: not chosen yet; -1: none free
static uint64_t generation;
static _Atomic uint32_t wake_word;
static int atfork_registered;
// Threads that did not answer the last dump: checked before signalling them
// again, so a thread that blocks the signal does not cost every dump its
// full deadline.
static int32_t stuck_tids[STUCK_MAX];
static _Atomic(void (*)(void)) unwind_hook; // test hook: runs between capture and unwind
static size_t stuck_count;

static inline uint64_t pack_state(uint64_t gen, uint64_t phase) { return (gen << 8) | phase; }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// --- signal handler (async-signal-safe) -------------------------------------

static inline uintptr_t thread_pointer(void) {
    uintptr_t tp;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(tp));
    return tp;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define CPPROF_SANITIZED 1
#endif
#endif

#ifdef CPPROF_SANITIZED
// Sanitizer builds only (Scripts/sanitizers.sh): the copy reads a live stack,
// other frames' redzones included, on purpose, so it must not be checked;
// and not through memcpy, which sanitizers intercept and check. Normal
// builds use __builtin_memcpy, unchanged.
__attribute__((no_sanitize("address", "thread", "memory"), no_builtin("memcpy")))
static void copy_stack_bytes(uint8_t *dst, const uint8_t *src, size_t len) {
    size_t words = len / 8;
    for (size_t i = 0; i < words; i++) ((uint64_t *)(void *)dst)[i] = ((const uint64_t *)(const void *)src)[i];
    for (size_t i = words * 8; i < len; i++) dst[i] = src[i];
}
#else
#define copy_stack_bytes(dst, src, len) __builtin_memcpy((dst), (src), (len))
#endif

// Copies registers and the top of the stack. Runs in the handler (or in the
// dumper for its own thread): no locks, no allocation.
static void capture_context(dump_slot *s, const ucontext_t *uc) {
    const greg_t *g = uc->uc_mcontext.gregs;
    s->regs[0] = (uint64_t)g[REG_RAX];
    s->regs[1] = (uint64_t)g[REG_RDX];
    s->regs[2] = (uint64_t)g[REG_RCX];
    s->regs[3] = (uint64_t)g[REG_RBX];
    s->regs[4] = (uint64_t)g[REG_RSI];
    s->regs[5] = (uint64_t)g[REG_RDI];
    s->regs[6] = (uint64_t)g[REG_RBP];
    s->regs[7] = (uint64_t)g[REG_RSP];
    s->regs[8] = (uint64_t)g[REG_R8];
    s->regs[9] = (uint64_t)g[REG_R9];
    s->regs[10] = (uint64_t)g[REG_R10];
    s->regs[11] = (uint64_t)g[REG_R11];
    s->regs[12] = (uint64_t)g[REG_R12];
    s->regs[13] = (uint64_t)g[REG_R13];
    s->regs[14] = (uint64_t)g[REG_R14];
    s->regs[15] = (uint64_t)g[REG_R15];
    s->regs[16] = (uint64_t)g[REG_RIP];
    uintptr_t sp = (uintptr_t)g[REG_RSP] & ~(uintptr_t)7;
    uintptr_t end = 0;
    size_t len = 0;
    // Bound the copy by the writable region holding sp (snapshot taken by the
    // dumper just before signalling) and, for threads whose thread pointer
    // sits above their stack in that same region (glibc puts the TCB at the
    // top of each thread's stack block), by the thread pointer: the copy
    // then never leaves the thread's own stack block.
    if (cpprof_stackmap_region_end(sp, &end) && end > sp) {
        uintptr_t tp = thread_pointer();
        if (tp > sp && tp < end) end = tp;
        len = end - sp;
        if (len > CPPROF_THREAD_STACK_COPY) len = CPPROF_THREAD_STACK_COPY;
        copy_stack_bytes(s->copy, (const uint8_t *)sp, len);
    }
    // Contexts are reused once the task moves on: the chain is read now.
    cpprof_walk_frames_async((uintptr_t)g[REG_RIP], (uintptr_t)g[REG_RBP], sp, sp + len, s->walk,
                             CPPROF_THREAD_MAX_FRAMES, CPPROF_ASYNC_READ_SNAPSHOT, &s->async);
    s->stack_addr = sp;
    s->stack_len = len;
    s->only_sp_pc = 0;
}

static dump_slot *slot_at(uint64_t idx) {
    if (idx >= (uint64_t)MAX_CHUNKS * SLOTS_PER_CHUNK) return NULL;
    slot_chunk *c = atomic_load_explicit(&chunks[idx / SLOTS_PER_CHUNK], memory_order_acquire);
    return c ? &c->slots[idx % SLOTS_PER_CHUNK] : NULL;
}

// Called by the SIGPROF dispatcher (sigprof.c) for SIGPROFs that are not the
// CPU sampler's. Returns 1 if the signal is a dump's. Async-signal-safe.
int cpprof_dump_on_sigprof(siginfo_t *info, void *uctx) {
    int ours = 0;
    if (info != NULL && info->si_code == SI_QUEUE) {
        uint64_t v = (uint64_t)(uintptr_t)info->si_value.sival_ptr;
        if ((v >> 48) == VALUE_MAGIC) {
            ours = 1;
            uint64_t gen = (v >> 20) & GEN_MASK;
            dump_slot *s = slot_at(v & IDX_MASK);
            uint64_t expected = pack_state(gen, PHASE_ARMED);
            // Fails for a signal of an earlier dump that is delivered late.
            if (s != NULL && atomic_compare_exchange_strong(&s->state, &expected,
                                                            pack_state(gen, PHASE_WRITING))) {
                int64_t start = now_ns();
                capture_context(s, (const ucontext_t *)uctx);
                s->handler_ns = now_ns() - start;
                atomic_store_explicit(&s->state, pack_state(gen, PHASE_DONE), memory_order_release);
                atomic_fetch_add_explicit(&wake_word, 1, memory_order_release);
                syscall(SYS_futex, &wake_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
            }
        }
    }
    return ours;
}

// --- setup (dumper side, under dump_lock) ----------------------------------

static void after_fork_in_child(void) {
    pthread_mutex_init(&dump_lock, NULL);
    stuck_count = 0;
    cpprof_unwind_reset_after_fork();
    cpprof_dump_cache_clear(); // the parent's threads
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

static slot_chunk *ensure_chunk(size_t c) {
    slot_chunk *chunk = atomic_load(&chunks[c]);
    if (chunk != NULL) return chunk;
    chunk = mmap(NULL, sizeof(slot_chunk), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (chunk == MAP_FAILED) return NULL;
    size_t bytes = (size_t)SLOTS_PER_CHUNK * CPPROF_THREAD_STACK_COPY;
    uint8_t *copies = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (copies == MAP_FAILED) {
        munmap(chunk, sizeof(slot_chunk));
        return NULL;
    }
    chunk->copies = copies;
    for (size_t i = 0; i < SLOTS_PER_CHUNK; i++)
        chunk->slots[i].copy = copies + i * CPPROF_THREAD_STACK_COPY;
    atomic_store_explicit(&chunks[c], chunk, memory_order_release);
    return chunk;
}

// Next slot at or after *cursor that no late handler is still writing.
static dump_slot *take_slot(uint64_t gen, uint32_t *cursor, uint32_t *idx_out) {
    while (*cursor < (uint32_t)MAX_CHUNKS * SLOTS_PER_CHUNK) {
        uint32_t idx = (*cursor)++;
        if (ensure_chunk(idx / SLOTS_PER_CHUNK) == NULL) return NULL;
        dump_slot *s = slot_at(idx);
        uint64_t cur = atomic_load(&s->state);
        if ((cur & 0xff) == PHASE_WRITING) continue; // a lingering handler of an old dump
        s->stack_len = 0;
        s->stack_addr = 0;
        s->handler_ns = 0;
        if (!atomic_compare_exchange_strong(&s->state, &cur, pack_state(gen, PHASE_ARMED))) continue;
        *idx_out = idx;
        return s;
    }
    return NULL;
}

static inline uint64_t sig_bit(int sig) { return 1ULL << (sig - 1); }

static int was_stuck(int32_t tid) {
    for (size_t i = 0; i < stuck_count; i++) if (stuck_tids[i] == tid) return 1;
    return 0;
}

// --- the dump ---------------------------------------------------------------

__attribute__((noinline)) static void capture_self(dump_slot *s) {
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    if (getcontext(&uc) != 0) {
        s->stack_len = 0;
        return;
    }
    capture_context(s, &uc);
}

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
// 0 if the thread is running, gone, or kept running while we read.
static int capture_blocked(int task_dir, int32_t tid, dump_slot *s, uint64_t gen) {
    uint64_t armed = pack_state(gen, PHASE_ARMED);
    if (!atomic_compare_exchange_strong(&s->state, &armed, pack_state(gen, PHASE_WRITING))) return 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        int64_t before = cpprof_thread_cpu_ns(tid);
        cpprof_proc_regs r;
        if (before < 0 || cpprof_proc_syscall(task_dir, tid, &r) != CPPROF_PROC_BLOCKED) break;
        size_t len = cpprof_proc_copy_stack(r.sp, s->copy, CPPROF_THREAD_STACK_COPY);
        if (len == 0) break;
        // It ran meanwhile: the copy may mix two moments. Try again.
        if (cpprof_thread_cpu_ns(tid) != before) continue;
        memset(s->regs, 0, sizeof s->regs);
        s->regs[CPPROF_REG_RSP] = r.sp;
        s->regs[CPPROF_REG_RIP] = r.pc;
        s->stack_addr = r.sp & ~(uint64_t)7;
        s->stack_len = len;
        s->handler_ns = 0;
        s->only_sp_pc = 1;
        // Its awaiting callers, if it runs a task: read while it stays
        // blocked; a thread that ran meanwhile keeps its stack, not the chain.
        cpprof_async_capture_from_copy(s->copy, s->stack_addr, len, &s->async);
        if (s->async.count > 0 && cpprof_thread_cpu_ns(tid) != before) s->async.count = 0;
        atomic_store_explicit(&s->state, pack_state(gen, PHASE_DONE), memory_order_release);
        return 1;
    }
    atomic_store(&s->state, pack_state(gen, PHASE_ARMED));
    return 0;
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
    int64_t t0 = now_ns();
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
    cpprof_thread_info *infos = calloc(n ? n : 1, sizeof *infos);
    dump_slot **slots = calloc(n ? n : 1, sizeof *slots);
    uint64_t *values = calloc(n ? n : 1, sizeof *values);
    size_t *pending = malloc((n ? n : 1) * sizeof *pending);
    if (!infos || !slots || !values || !pending) {
        free(infos); free(slots); free(values); free(pending); free(tids);
        pthread_mutex_unlock(&dump_lock);
        return ENOMEM;
    }

    const pid_t pid = getpid();
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

    generation = (generation + 1) & GEN_MASK;
    if (generation == 0) generation = 1;
    const uint64_t gen = generation;
    uint32_t cursor = 0;
    uint32_t highest_slot = 0;
    for (size_t i = 0; i < n; i++) {
        if (infos[i].unchanged || infos[i].status == CPPROF_THREAD_EXITED) continue;
        uint32_t idx;
        dump_slot *s = take_slot(gen, &cursor, &idx);
        if (s == NULL) { infos[i].status = CPPROF_THREAD_NO_SLOT; continue; }
        slots[i] = s;
        values[i] = (VALUE_MAGIC << 48) | (gen << 20) | idx;
        if (idx + 1 > highest_slot) highest_slot = idx + 1;
    }

    int64_t t_capture = now_ns();
    size_t npending = 0;
    uint32_t read_blocked = 0, signalled = 0;
    int task_dir = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (size_t i = 0; i < n; i++) {
        dump_slot *s = slots[i];
        if (s == NULL) continue;
        if (infos[i].tid == self) {
            uint64_t armed = pack_state(gen, PHASE_ARMED);
            if (atomic_compare_exchange_strong(&s->state, &armed, pack_state(gen, PHASE_WRITING))) {
                capture_self(s);
                atomic_store(&s->state, pack_state(gen, PHASE_DONE));
            }
            infos[i].status = CPPROF_THREAD_SELF;
            continue;
        }
        // Blocked in the kernel: read, not interrupted.
        // The cache key stays the CPU time read before the name and state: if
        // the thread ran since (renamed itself, say), the next dump reads it afresh.
        if (task_dir >= 0 && cpprof_proc_available() && capture_blocked(task_dir, infos[i].tid, s, gen)) {
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
        int e = send_dump_signal(pid, infos[i].tid, sig, values[i]);
        if (e == 0) { pending[npending++] = i; signalled++; }
        else infos[i].status = e == ESRCH ? CPPROF_THREAD_EXITED : CPPROF_THREAD_SEND_FAILED;
    }

    if (task_dir >= 0) close(task_dir);

    // Wait for the answers, at most until the deadline.
    const int64_t deadline = t_capture + (int64_t)deadline_ms * 1000000LL;
    int64_t last_answer = now_ns(); // blocked threads are read by now
    int64_t next_resend = t_capture + RESEND_NS;
    for (;;) {
        uint32_t seen = atomic_load_explicit(&wake_word, memory_order_acquire);
        size_t kept = 0;
        for (size_t k = 0; k < npending; k++) {
            size_t i = pending[k];
            uint64_t st = atomic_load_explicit(&slots[i]->state, memory_order_acquire);
            if (st == pack_state(gen, PHASE_DONE)) infos[i].status = CPPROF_THREAD_ANSWERED;
            else pending[kept++] = i;
        }
        if (kept < npending) last_answer = now_ns();
        npending = kept;
        if (npending == 0) break;
        int64_t now = now_ns();
        int64_t left = deadline - now;
        if (left <= 0) break;
        if (now >= next_resend) {
            // SIGPROF does not queue: ours was dropped if a CPU-timer SIGPROF
            // was pending on that thread. Sending again is harmless: it is
            // dropped in turn while ours is still pending.
            size_t still = 0;
            for (size_t k = 0; k < npending; k++) {
                size_t i = pending[k];
                uint64_t armed = pack_state(gen, PHASE_ARMED);
                if (atomic_load(&slots[i]->state) == armed &&
                    send_dump_signal(pid, infos[i].tid, sig, values[i]) == ESRCH &&
                    atomic_compare_exchange_strong(&slots[i]->state, &armed, pack_state(gen, PHASE_ABANDONED))) {
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
        syscall(SYS_futex, &wake_word, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
    }

    // Give up on the rest. A handler caught mid-copy gets a little longer;
    // one still writing after that is left alone: its slot is not reused
    // until it finishes.
    uint64_t lingering = 0;
    int64_t linger_until = now_ns() + LINGER_WAIT_NS;
    for (size_t i = 0; i < n; i++) {
        // Slots of threads that were not signalled at all: nothing can claim them.
        if (slots[i] == NULL || infos[i].status == CPPROF_THREAD_TIMED_OUT) continue;
        uint64_t armed = pack_state(gen, PHASE_ARMED);
        atomic_compare_exchange_strong(&slots[i]->state, &armed, pack_state(gen, PHASE_ABANDONED));
    }
    for (size_t k = 0; k < npending; k++) {
        size_t i = pending[k];
        uint64_t armed = pack_state(gen, PHASE_ARMED);
        if (atomic_compare_exchange_strong(&slots[i]->state, &armed, pack_state(gen, PHASE_ABANDONED)))
            continue;
        while (atomic_load(&slots[i]->state) == pack_state(gen, PHASE_WRITING) && now_ns() < linger_until)
            sched_yield();
        if (atomic_load_explicit(&slots[i]->state, memory_order_acquire) == pack_state(gen, PHASE_DONE))
            infos[i].status = CPPROF_THREAD_ANSWERED;
        else
            lingering++;
    }
    int64_t t_captured = npending ? now_ns() : last_answer;

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
    int64_t t_unwind = now_ns();
    // Images are listed and libunwind readied only when a stack needs unwinding.
    int need_unwind = 0;
    for (size_t i = 0; i < n && !need_unwind; i++) {
        int32_t st = infos[i].status;
        need_unwind = !infos[i].unchanged && (st == CPPROF_THREAD_ANSWERED || st == CPPROF_THREAD_SELF ||
                                              st == CPPROF_THREAD_READ_BLOCKED);
    }
    int have_dwarf = need_unwind ? cpprof_unwind_begin() : 0;
    uint32_t answered = 0;
    int64_t handler_max = 0, handler_sum = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t st = infos[i].status;
        if (st != CPPROF_THREAD_ANSWERED && st != CPPROF_THREAD_SELF && st != CPPROF_THREAD_READ_BLOCKED) continue;
        if (infos[i].unchanged) { answered++; continue; } // the last dump's stack
        dump_slot *s = slots[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != pack_state(gen, PHASE_DONE)) {
            infos[i].status = CPPROF_THREAD_TIMED_OUT;
            continue;
        }
        cpprof_stack_copy copy;
        memcpy(copy.regs, s->regs, sizeof copy.regs);
        copy.stack_addr = s->stack_addr;
        copy.stack_len = s->stack_len;
        copy.bytes = s->copy;
        copy.only_sp_pc = s->only_sp_pc;
        infos[i].stack_bytes = s->stack_len;
        if (st == CPPROF_THREAD_ANSWERED) {
            handler_sum += s->handler_ns;
            if (s->handler_ns > handler_max) handler_max = s->handler_ns;
        }
        infos[i].depth = cpprof_unwind_copy(&copy, infos[i].pcs, CPPROF_THREAD_MAX_FRAMES,
                                            &infos[i].unwinder, &infos[i].truncated);
        cpprof_async_splice(infos[i].pcs, &infos[i].depth, CPPROF_THREAD_MAX_FRAMES, &s->async);
        answered++;
    }
    if (need_unwind) cpprof_unwind_end();
    cpprof_dump_cache_store(infos, n, only == NULL);
    int64_t t_end = now_ns();

    // Give the copied pages back. A late handler writing meanwhile is
    // harmless: it faults in fresh zero pages.
    for (uint32_t c = 0; c * SLOTS_PER_CHUNK < highest_slot; c++) {
        slot_chunk *chunk = atomic_load(&chunks[c]);
        if (chunk == NULL) continue;
        uint32_t used = highest_slot - c * SLOTS_PER_CHUNK;
        if (used > SLOTS_PER_CHUNK) used = SLOTS_PER_CHUNK;
        madvise(chunk->copies, (size_t)used * CPPROF_THREAD_STACK_COPY, MADV_DONTNEED);
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
    }
    free(slots);
    free(values);
    free(pending);
    *out = infos;
    *count = n;
    return 0;
}

void cpprof_threads_free(cpprof_thread_info *infos) { free(infos); }

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
