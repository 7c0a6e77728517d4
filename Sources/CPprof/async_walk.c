// Logical call stacks of Swift async code: the chain of async contexts that
// the frame walk (frame_walk.c) follows when it meets an async frame, i.e.
// a frame whose return address lies in a published job-running function of
// the concurrency runtime (see cpprof_async.h for the layout).
//
// Invariants (this runs in SIGPROF handlers and the allocator hook):
// - No allocation, lock, or call that is not async-signal-safe on the
//   snapshot path; the executor ranges are append-only, published with a
//   release store of their count, so a handler reads only complete ranges.
// - A context is read only if it is 8-byte aligned and its first 16 bytes lie
//   inside one writable region of the stack-map snapshot. The running task's
//   contexts are live while its thread is stopped in the handler, so a
//   genuine chain is always readable; a false one (garbage at fp - 8) is
//   read only where memory was mapped writable at the last snapshot (see
//   Docs/Design.md for what remains).
// - A resume function must lie in an executable region; the walk stops at
//   the task's root context (Parent == NULL), after CPPROF_ASYNC_MAX_DEPTH
//   levels, and at the first context seen twice. Every stop other than the
//   root is counted as a cut chain.
#include "internal.h"
#include "include/cpprof_async.h"
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

uintptr_t cpprof_async_executors[CPPROF_ASYNC_MAX_EXECUTORS][2];
_Atomic uint32_t cpprof_async_executor_count;

static _Atomic uint64_t st_chains, st_levels, st_cut, st_snapshot_miss;
static _Atomic uint64_t miss_seen_at_refresh;

int cpprof_async_add_executor_range(uint64_t start, uint64_t end) {
    if (end <= start) return EINVAL;
    uint32_t n = atomic_load_explicit(&cpprof_async_executor_count, memory_order_acquire);
    for (uint32_t i = 0; i < n; i++)
        if (cpprof_async_executors[i][0] == start && cpprof_async_executors[i][1] == end) return EEXIST;
    if (n == CPPROF_ASYNC_MAX_EXECUTORS) return ENOSPC;
    cpprof_async_executors[n][0] = (uintptr_t)start;
    cpprof_async_executors[n][1] = (uintptr_t)end;
    atomic_store_explicit(&cpprof_async_executor_count, n + 1, memory_order_release);
    return 0;
}

uint32_t cpprof_async_executor_range_count(void) {
    return atomic_load_explicit(&cpprof_async_executor_count, memory_order_acquire);
}

// The snapshot pinned for one chain, the writable region last proven, where
// the next context usually is (the task allocator's slab), and the
// executable one, where the next resume function usually is.
typedef struct snapshot_reader {
    const cpprof_stackmap *map;
    uintptr_t start, end;
    uintptr_t code_start, code_end;
} snapshot_reader;

static int is_code(snapshot_reader *r, uintptr_t addr) {
    if (addr >= r->code_start && addr < r->code_end) return 1;
    return cpprof_stackmap_pinned_code(r->map, addr, &r->code_start, &r->code_end);
}

// Reads the context's Parent and ResumeParent if the snapshot proves them
// mapped. Sanitizers are kept out: the words belong to the runtime's task
// allocator, and a false chain may point anywhere the snapshot allows.
__attribute__((no_sanitize("address", "thread", "memory")))
static int read_snapshot(snapshot_reader *r, uintptr_t ctx, uintptr_t out[2]) {
    const size_t len = 2 * sizeof(uintptr_t);
    int cached = ctx >= r->start && ctx < r->end && r->end - ctx >= len;
    if (!cached && !cpprof_stackmap_pinned_writable(r->map, ctx, len, &r->start, &r->end)) {
        atomic_fetch_add_explicit(&st_snapshot_miss, 1, memory_order_relaxed);
        return 0;
    }
    const volatile uintptr_t *words = (const volatile uintptr_t *)ctx;
    out[0] = words[0];
    out[1] = words[1];
    return 1;
}

static int read_syscall(uintptr_t ctx, uintptr_t out[2]) {
    struct iovec local = {out, 2 * sizeof(uintptr_t)};
    struct iovec remote = {(void *)ctx, 2 * sizeof(uintptr_t)};
    long n = syscall(SYS_process_vm_readv, (long)getpid(), &local, 1L, &remote, 1L, 0L);
    return n == (long)(2 * sizeof(uintptr_t));
}

uint32_t cpprof_async_chain(uint64_t context, int32_t reader, uint64_t *pcs, uint32_t max) {
    atomic_fetch_add_explicit(&st_chains, 1, memory_order_relaxed);
    uintptr_t seen[CPPROF_ASYNC_MAX_DEPTH];
    uint32_t depth = 0;
    uintptr_t ctx = (uintptr_t)context;
    int cut = 1;
    snapshot_reader snap = {cpprof_stackmap_pin(), 0, 0, 0, 0};
    while (depth < max && depth < CPPROF_ASYNC_MAX_DEPTH) {
        if (ctx < 4096 || (ctx & (sizeof(uintptr_t) - 1)) != 0) break;
        uintptr_t words[2];
        int ok = reader == CPPROF_ASYNC_READ_SYSCALL ? read_syscall(ctx, words) : read_snapshot(&snap, ctx, words);
        if (!ok && reader == CPPROF_ASYNC_READ_SNAPSHOT_THEN_SYSCALL) ok = read_syscall(ctx, words);
        if (!ok) break;
        uintptr_t parent = words[0], resume = words[1];
        if (parent == 0) { cut = 0; break; } // the task's root: its resume function completes the task
        // Code mapped after the snapshot (dlopen) looks like garbage until the
        // next one. The resume address is only reported, never read: the
        // syscall readers, which cannot fault, keep it unchecked then.
        if (!is_code(&snap, resume) && (reader == CPPROF_ASYNC_READ_SNAPSHOT || resume < 4096)) {
            atomic_fetch_add_explicit(&st_snapshot_miss, 1, memory_order_relaxed);
            break;
        }
        int again = 0;
        for (uint32_t i = 0; i < depth; i++) again |= seen[i] == parent;
        if (again || parent == ctx) break;
        seen[depth] = ctx;
        pcs[depth++] = (uint64_t)resume + 1;
        ctx = parent;
    }
    cpprof_stackmap_unpin();
    if (cut) atomic_fetch_add_explicit(&st_cut, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st_levels, depth, memory_order_relaxed);
    return depth;
}

void cpprof_async_get_stats(cpprof_async_stats *out) {
    out->chains = atomic_load(&st_chains);
    out->levels = atomic_load(&st_levels);
    out->cut = atomic_load(&st_cut);
    out->snapshot_miss = atomic_load(&st_snapshot_miss);
}

int cpprof_async_refresh_snapshot(int32_t force) {
    uint64_t miss = atomic_load(&st_snapshot_miss);
    if (atomic_exchange(&miss_seen_at_refresh, miss) == miss && !force) return 0;
    return cpprof_stackmap_refresh() == 0;
}

void cpprof_async_splice(uint64_t *pcs, uint32_t *depth, uint32_t max, const cpprof_async_capture *chain) {
    if (chain->count == 0) return;
    uint32_t at = 1;
    while (at < *depth && pcs[at] != chain->boundary) at++;
    if (at >= *depth) return; // the unwinder did not reach the executor frame
    uint32_t n = chain->count;
    if (n > max - at) n = max - at;
    uint32_t keep = *depth - at; // executor frames and their callers, moved rootwards
    if (keep > max - at - n) keep = max - at - n;
    for (uint32_t i = keep; i-- > 0;) pcs[at + n + i] = pcs[at + i];
    for (uint32_t i = 0; i < n; i++) pcs[at + i] = chain->pcs[i];
    *depth = at + n + keep;
}

// A thread blocked in the kernel is read without a signal (proc_capture.c):
// only its sp and pc are known, and glibc keeps no frame pointers, so the
// async frame is found in the copy of its stack instead: a word that is a
// return address into a job-running function, below it a saved frame
// pointer that points further up the copied stack, and below that the
// async context (the same layout the frame walk reads). The chain itself is
// read with process_vm_readv (this is not a signal handler, but the context
// memory is still the app's and must never fault us). The caller confirms
// that the thread did not run meanwhile; until it runs, its task's contexts
// stay as they are.
void cpprof_async_capture_from_copy(const uint8_t *copy, uint64_t addr, size_t len, cpprof_async_capture *out) {
    out->count = 0;
    uint32_t ranges = cpprof_async_executor_range_count();
    if (ranges == 0 || len < 3 * sizeof(uintptr_t)) return;
    // One bound around every executor range first: most words of a stack
    // (data, stack addresses, other code) fall outside it, and the scan
    // over 8 KiB then costs a compare per word, not a loop over the ranges.
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (uint32_t r = 0; r < ranges; r++) {
        if (cpprof_async_executors[r][0] < lo) lo = cpprof_async_executors[r][0];
        if (cpprof_async_executors[r][1] > hi) hi = cpprof_async_executors[r][1];
    }
    const size_t words = len / sizeof(uintptr_t);
    for (size_t i = 2; i < words; i++) {
        uintptr_t ret;
        memcpy(&ret, copy + i * sizeof(uintptr_t), sizeof ret);
        if (ret < lo || ret >= hi || !cpprof_async_is_executor(ret)) continue;
        uintptr_t saved_fp, context;
        memcpy(&saved_fp, copy + (i - 1) * sizeof(uintptr_t), sizeof saved_fp);
        memcpy(&context, copy + (i - 2) * sizeof(uintptr_t), sizeof context);
        uint64_t frame = addr + (i - 1) * sizeof(uintptr_t);
        // The executor's own frame lies above the async frame's record.
        if (saved_fp <= frame || saved_fp >= addr + len + (1u << 20)) continue;
        uint32_t n = cpprof_async_chain(context, CPPROF_ASYNC_READ_SYSCALL, out->pcs, CPPROF_ASYNC_MAX_DEPTH);
        if (n > 0) {
            out->count = n;
            out->boundary = ret;
        }
        return; // the innermost async frame only, as the handlers do
    }
}
