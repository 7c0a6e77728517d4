// Heap sampling as Go does it (runtime.MemProfileRate): each thread counts
// down the bytes it allocates; when the countdown runs out the allocation is
// sampled and a new distance is drawn from an exponential distribution of
// mean `rate`, so samples form a Poisson process over allocated bytes and an
// allocation of s bytes is sampled with probability 1 - exp(-s/rate).
//
// A sample records the allocating thread's stack (frame-pointer walk bounded
// by the thread's own stack, as thread_stack.c learnt it at thread start: never
// looked up from here, see there why) and goes into the tables of
// heap_table.c. Everything a sample does runs under a per-thread re-entrancy
// guard: allocations made meanwhile are forwarded and never sampled. The
// same holds for threads marked as working for the profiler
// (cpprof_heap_own_enter): its own memory never shows in the profiles.
#include "heap_internal.h"

#ifdef CPPROF_HEAP_PROFILING

#include <math.h>
#include <pthread.h>
#include <time.h>

// Sampling is on at the default rate from the start, as in Go.
_Atomic uint64_t cpprof_heap_config = (UINT64_C(1) << CPPROF_HEAP_RATE_BITS) | CPPROF_HEAP_DEFAULT_RATE;
CPPROF_TLS cpprof_heap_thread_state cpprof_heap_tls;

static _Atomic uint64_t config_generation = 1;

static _Atomic uint64_t st_sampled_allocs, st_sampled_frees, st_dropped_live, st_dropped_stack,
    st_dropped_memory, st_unbounded;

static CPPROF_TLS uint8_t busy;          // this thread is inside a sample
static CPPROF_TLS uint32_t own_depth;    // > 0: this thread works for the profiler
static CPPROF_TLS uint64_t rng_state;

static uint64_t next_random(void) {
    uint64_t x = rng_state;
    if (x == 0) { // seed: this thread's TLS address and the clock, through splitmix64
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        x = (uint64_t)(uintptr_t)&rng_state ^ ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec;
        x += 0x9E3779B97F4A7C15ull;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        x ^= x >> 31;
        if (x == 0) x = 1;
    }
    x ^= x >> 12; // xorshift64*
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

// Bytes to the next sample plus one (the budget): the distance is
// exponential with mean `rate`; 0 (sample every allocation, even of 0
// bytes) when rate <= 1.
static uint64_t next_budget(int64_t rate) {
    if (rate <= 1) return 0;
    double u = (double)((next_random() >> 11) + 1) * 0x1.0p-53; // (0, 1]
    double d = -log(u) * (double)rate;
    if (d >= 0x1.0p62) return (UINT64_C(1) << 62) + 1;
    return (uint64_t)d + 1;
}

int cpprof_heap_should_sample_slow(uint64_t config, size_t size) {
    int64_t rate = (int64_t)(config & CPPROF_HEAP_RATE_MASK);
    if (cpprof_heap_tls.config != config) { // first allocation, or the rate changed
        cpprof_heap_tls.config = config;
        uint64_t budget = rate == 0 ? UINT64_MAX : next_budget(rate);
        if (size < budget) {
            cpprof_heap_tls.budget = budget - size;
            return 0;
        }
    }
    if (rate == 0) { // off: a budget that never runs out in practice
        cpprof_heap_tls.budget = UINT64_MAX;
        return 0;
    }
    cpprof_heap_tls.budget = next_budget(rate);
    return 1;
}

void cpprof_heap_record_alloc(void *ptr, size_t size, uintptr_t ret, uintptr_t frame) {
    // Checked only here, once the countdown ran out: the profiler's own
    // work costs the fast path nothing. Its allocations still run the
    // thread's countdown down; the distance to the next sample is
    // memoryless, so the app's allocations stay a Poisson process.
    if (busy || own_depth != 0) return;
    busy = 1;
    if (cpprof_heap_tables_init() != 0) {
        atomic_fetch_add_explicit(&st_dropped_memory, 1, memory_order_relaxed);
        busy = 0;
        return;
    }
    uint64_t pcs[CPPROF_HEAP_MAX_DEPTH];
    uint32_t depth;
    uintptr_t end = 0;
    if (frame != 0 && cpprof_thread_stack_end(frame, &end) && frame + 2 * sizeof(uintptr_t) <= end) {
        // frame[0]: the caller's frame pointer; frame[1] is `ret` itself.
        uintptr_t caller_fp = ((const uintptr_t *)frame)[0];
        // Not a signal handler: async contexts in memory mapped since the
        // stack map's snapshot are read with process_vm_readv.
        depth = cpprof_walk_frames_async(ret, caller_fp, frame + 2 * sizeof(uintptr_t), end, pcs,
                                         CPPROF_HEAP_MAX_DEPTH, CPPROF_ASYNC_READ_SNAPSHOT_THEN_SYSCALL, NULL);
    } else {
        pcs[0] = ret;
        depth = 1;
        atomic_fetch_add_explicit(&st_unbounded, 1, memory_order_relaxed);
    }
    uint32_t stack = cpprof_heap_stack_intern(pcs, depth);
    if (stack == CPPROF_HEAP_NO_STACK)
        atomic_fetch_add_explicit(&st_dropped_stack, 1, memory_order_relaxed);
    else if (!cpprof_heap_live_insert((uintptr_t)ptr, stack, size, 1)) {
        // No room to follow it until its free: still counted as allocated
        // (allocs stays right), and as freed at once (in-use undercounts, by
        // what the dropped_live_table_full counter says).
        cpprof_heap_stack_count_alloc(stack, size);
        cpprof_heap_stack_count_free(stack, size);
        atomic_fetch_add_explicit(&st_dropped_live, 1, memory_order_relaxed);
    } else
        atomic_fetch_add_explicit(&st_sampled_allocs, 1, memory_order_relaxed);
    busy = 0;
}

void cpprof_heap_record_free(void *ptr) {
    uint32_t stack;
    uint64_t size;
    if (cpprof_heap_live_remove((uintptr_t)ptr, &stack, &size)) {
        cpprof_heap_stack_count_free(stack, size);
        atomic_fetch_add_explicit(&st_sampled_frees, 1, memory_order_relaxed);
    }
}

int cpprof_heap_hold(void *ptr, cpprof_heap_held *held) {
    return cpprof_heap_live_remove((uintptr_t)ptr, &held->stack, &held->size);
}

void cpprof_heap_release_held(const cpprof_heap_held *held) {
    cpprof_heap_stack_count_free(held->stack, held->size);
    atomic_fetch_add_explicit(&st_sampled_frees, 1, memory_order_relaxed);
}

void cpprof_heap_restore_held(void *ptr, const cpprof_heap_held *held) {
    // Its allocation is already counted. If the bucket filled up meanwhile,
    // we can no longer see its free: count it freed now.
    if (!cpprof_heap_live_insert((uintptr_t)ptr, held->stack, held->size, 0))
        cpprof_heap_release_held(held);
}

// --- public API ---

int cpprof_heap_available(void) { return 1; }

int64_t cpprof_heap_rate(void) { return (int64_t)(atomic_load(&cpprof_heap_config) & CPPROF_HEAP_RATE_MASK); }

void cpprof_heap_set_rate(int64_t rate) {
    if (rate < 0) rate = 0; // off: still a new generation, so threads notice
    if ((uint64_t)rate > CPPROF_HEAP_RATE_MASK) rate = (int64_t)CPPROF_HEAP_RATE_MASK;
    uint64_t generation = atomic_fetch_add(&config_generation, 1) + 1;
    uint64_t config = (generation << CPPROF_HEAP_RATE_BITS) | (uint64_t)rate;
    if ((config >> CPPROF_HEAP_RATE_BITS) == 0) config |= UINT64_C(1) << CPPROF_HEAP_RATE_BITS; // wrapped
    atomic_store(&cpprof_heap_config, config);
}

void cpprof_heap_own_enter(void) { own_depth++; }

void cpprof_heap_own_leave(void) {
    if (own_depth != 0) own_depth--;
}

size_t cpprof_heap_snapshot(cpprof_heap_record *out, size_t max) {
    return cpprof_heap_table_snapshot(out, out == NULL ? 0 : max);
}

void cpprof_heap_get_stats(cpprof_heap_stats *out) {
    *out = (cpprof_heap_stats){0};
    out->available = 1;
    out->interposed = cpprof_heap_is_interposed();
    out->rate = cpprof_heap_rate();
    out->sampled_allocs = atomic_load_explicit(&st_sampled_allocs, memory_order_relaxed);
    out->sampled_frees = atomic_load_explicit(&st_sampled_frees, memory_order_relaxed);
    out->dropped_live_full = atomic_load_explicit(&st_dropped_live, memory_order_relaxed);
    out->dropped_stack_full = atomic_load_explicit(&st_dropped_stack, memory_order_relaxed);
    out->dropped_no_memory = atomic_load_explicit(&st_dropped_memory, memory_order_relaxed);
    out->stack_unbounded = atomic_load_explicit(&st_unbounded, memory_order_relaxed);
    out->bootstrap_bytes = cpprof_heap_bootstrap_used();
    cpprof_heap_table_stats(out);
}

#else // !CPPROF_HEAP_PROFILING: no interposer; the API reports "unavailable".

int cpprof_heap_available(void) { return 0; }
int64_t cpprof_heap_rate(void) { return 0; }
void cpprof_heap_set_rate(int64_t rate) { (void)rate; }
void cpprof_heap_own_enter(void) {}
void cpprof_heap_own_leave(void) {}
size_t cpprof_heap_snapshot(cpprof_heap_record *out, size_t max) {
    (void)out;
    (void)max;
    return 0;
}
void cpprof_heap_get_stats(cpprof_heap_stats *out) { *out = (cpprof_heap_stats){0}; }

#endif

__attribute__((noinline)) uintptr_t cpprof_heap_caller_pc(void) {
    return (uintptr_t)__builtin_return_address(0);
}
