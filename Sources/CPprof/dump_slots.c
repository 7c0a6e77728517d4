// Where a thread dump's copies go, and the SIGPROF handler that fills them.
//
// A thread on a CPU is sent SIGPROF marked as a dump's (SI_QUEUE and a magic
// si_value naming a slot and a generation, see thread_dump.c); its handler
// copies its registers and the top of its own stack into that slot, reads
// its async chain, marks the slot done and wakes the dumper.
//
// Invariants (see dump_slots.h): chunks of slots are mapped once and never
// unmapped; a handler writes only into a slot it claimed with a
// compare-and-swap from "armed for its generation"; the handler takes no
// lock, allocates nothing, reads only the thread's own stack, bounded by the
// writable region holding sp and by its thread pointer. The handler code is
// checked by Scripts/check-signal-handlers.sh.
#include "dump_slots.h"
#include <linux/futex.h>
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

typedef struct slot_chunk {
    cpprof_dump_slot slots[SLOTS_PER_CHUNK];
    uint8_t *copies;
} slot_chunk;

static _Atomic(slot_chunk *) chunks[MAX_CHUNKS];
_Atomic uint32_t cpprof_dump_wake_word;

int64_t cpprof_dump_now_ns(void) {
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
static void capture_context(cpprof_dump_slot *s, const ucontext_t *uc) {
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
    s->full_len = len;
    s->only_sp_pc = 0;
}

static cpprof_dump_slot *slot_at(uint64_t idx) {
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
        if ((v >> 48) == CPPROF_DUMP_VALUE_MAGIC) {
            ours = 1;
            uint64_t gen = (v >> 20) & CPPROF_DUMP_GEN_MASK;
            cpprof_dump_slot *s = slot_at(v & CPPROF_DUMP_IDX_MASK);
            uint64_t expected = cpprof_dump_state(gen, CPPROF_PHASE_ARMED);
            // Fails for a signal of an earlier dump that is delivered late.
            if (s != NULL && atomic_compare_exchange_strong(&s->state, &expected,
                                                            cpprof_dump_state(gen, CPPROF_PHASE_WRITING))) {
                int64_t start = cpprof_dump_now_ns();
                capture_context(s, (const ucontext_t *)uctx);
                s->handler_ns = cpprof_dump_now_ns() - start;
                atomic_store_explicit(&s->state, cpprof_dump_state(gen, CPPROF_PHASE_DONE), memory_order_release);
                atomic_fetch_add_explicit(&cpprof_dump_wake_word, 1, memory_order_release);
                syscall(SYS_futex, &cpprof_dump_wake_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
            }
        }
    }
    return ours;
}

// --- the dumper's side ------------------------------------------------------

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

cpprof_dump_slot *cpprof_dump_slot_take(uint64_t gen, uint32_t *cursor, uint32_t *idx_out) {
    while (*cursor < (uint32_t)MAX_CHUNKS * SLOTS_PER_CHUNK) {
        uint32_t idx = (*cursor)++;
        if (ensure_chunk(idx / SLOTS_PER_CHUNK) == NULL) return NULL;
        cpprof_dump_slot *s = slot_at(idx);
        uint64_t cur = atomic_load(&s->state);
        if ((cur & 0xff) == CPPROF_PHASE_WRITING) continue; // a lingering handler of an old dump
        s->stack_len = 0;
        s->full_len = 0;
        s->stack_addr = 0;
        s->handler_ns = 0;
        if (!atomic_compare_exchange_strong(&s->state, &cur, cpprof_dump_state(gen, CPPROF_PHASE_ARMED))) continue;
        *idx_out = idx;
        return s;
    }
    return NULL;
}

__attribute__((noinline)) void cpprof_dump_capture_self(cpprof_dump_slot *s) {
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    if (getcontext(&uc) != 0) {
        s->stack_len = 0;
        return;
    }
    capture_context(s, &uc);
}

void cpprof_dump_slots_release(uint32_t used_slots) {
    for (uint32_t c = 0; c * SLOTS_PER_CHUNK < used_slots; c++) {
        slot_chunk *chunk = atomic_load(&chunks[c]);
        if (chunk == NULL) continue;
        uint32_t used = used_slots - c * SLOTS_PER_CHUNK;
        if (used > SLOTS_PER_CHUNK) used = SLOTS_PER_CHUNK;
        madvise(chunk->copies, (size_t)used * CPPROF_THREAD_STACK_COPY, MADV_DONTNEED);
    }
}
