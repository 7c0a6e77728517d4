// Declarations shared by the heap-profiling C files; not part of the module.
#ifndef CPPROF_HEAP_INTERNAL_H
#define CPPROF_HEAP_INTERNAL_H

#include "internal.h"
#include "include/cpprof_heap.h"

#ifdef CPPROF_HEAP_PROFILING

// --- heap_sampler.c: when to sample, and what a sample records ---

// The rate and a generation in one word, so a thread always sees a
// consistent pair: (generation << 40) | rate; never 0 (generations start at
// 1), rate 0 meaning off. A thread whose cached copy differs redraws its
// budget. Hidden: read without a GOT load in position-independent code.
#define CPPROF_HEAP_RATE_BITS 40
#define CPPROF_HEAP_RATE_MASK ((UINT64_C(1) << CPPROF_HEAP_RATE_BITS) - 1)
#define CPPROF_HIDDEN __attribute__((visibility("hidden")))
extern CPPROF_HIDDEN _Atomic uint64_t cpprof_heap_config;

// Per thread, in one TLS block (one TLS offset to load): the config the
// budget was drawn for, and the budget: an allocation of fewer bytes than
// it is not sampled and takes its size off. It is the bytes left before the
// next sample plus one, so 0 samples every allocation (rate 1) and
// UINT64_MAX none (rate 0).
typedef struct cpprof_heap_thread_state {
    uint64_t config;
    uint64_t budget;
} cpprof_heap_thread_state;
extern CPPROF_HIDDEN CPPROF_TLS cpprof_heap_thread_state cpprof_heap_tls;

// Decides whether an allocation that missed the fast path is sampled.
int cpprof_heap_should_sample_slow(uint64_t config, size_t size);

// Records a sampled allocation of `size` bytes at `ptr`. `ret` is the return
// address of the interposed function and `frame` its frame address.
void cpprof_heap_record_alloc(void *ptr, size_t size, uintptr_t ret, uintptr_t frame);

// Called before `ptr` goes back to the allocator: if it was sampled, counts
// it as freed. Cheap when it was not. Lock-free; never allocates.
void cpprof_heap_record_free(void *ptr);

// For realloc: takes `ptr` out of the live table without counting a free yet.
// Returns 1 and fills the token if it was sampled.
typedef struct cpprof_heap_held { uint32_t stack; uint64_t size; } cpprof_heap_held;
int cpprof_heap_hold(void *ptr, cpprof_heap_held *held);
// The held block was really freed (or moved): count the free.
void cpprof_heap_release_held(const cpprof_heap_held *held);
// The reallocation failed and the block is still live: track it again.
void cpprof_heap_restore_held(void *ptr, const cpprof_heap_held *held);

// Inline fast path: the per-thread budget of bytes to the next sample.
// 1 if an allocation of `size` bytes is certainly not sampled (the budget
// has been run down); 0 if cpprof_heap_should_sample must decide (nothing
// changed). The interposer tail-calls the allocator on 1.
static inline __attribute__((always_inline)) int cpprof_heap_skip_sample(size_t size) {
    uint64_t config = atomic_load_explicit(&cpprof_heap_config, memory_order_relaxed);
    if (__builtin_expect(cpprof_heap_tls.config != config, 0)) return 0;
    uint64_t budget = cpprof_heap_tls.budget;
    if (__builtin_expect(size >= budget, 0)) return 0;
    cpprof_heap_tls.budget = budget - size;
    return 1;
}

// Whether an allocation of `size` bytes is sampled; runs the budget down.
static inline __attribute__((always_inline)) int cpprof_heap_should_sample(size_t size) {
    if (__builtin_expect(cpprof_heap_skip_sample(size), 1)) return 0;
    return cpprof_heap_should_sample_slow(atomic_load_explicit(&cpprof_heap_config, memory_order_relaxed), size);
}

// --- heap_table.c: live samples by address, cumulative counts by stack ---

#define CPPROF_HEAP_NO_STACK UINT32_MAX
#define CPPROF_HEAP_LIVE_BUCKET_BITS 14

// Published keys per bucket of the largest live level (at most 32: 8 per
// level), plus the pin bit, which marks buckets of bootstrap-arena blocks so
// that free's filter also catches those (malloc_interposer.c). Static: free
// reads it without first checking that the tables exist; untouched, its
// pages cost nothing.
#define CPPROF_HEAP_OCCUPANCY_PIN 0x80u
extern CPPROF_HIDDEN _Atomic uint8_t cpprof_heap_occupancy[1u << CPPROF_HEAP_LIVE_BUCKET_BITS];

static inline uint64_t cpprof_heap_addr_hash(uintptr_t addr) {
    return (uint64_t)(addr >> 4) * 0x9E3779B97F4A7C15ull;
}

// The occupancy byte of `addr`: its bucket in the largest live level.
static inline uint32_t cpprof_heap_bucket_of(uintptr_t addr) {
    return (uint32_t)(cpprof_heap_addr_hash(addr) >> (64 - CPPROF_HEAP_LIVE_BUCKET_BITS));
}

// Inline filter for free(): 0 means `ptr` is certainly neither a live
// sample nor a bootstrap-arena block.
static inline __attribute__((always_inline)) int cpprof_heap_maybe_live(const void *ptr) {
    return atomic_load_explicit(&cpprof_heap_occupancy[cpprof_heap_bucket_of((uintptr_t)ptr)],
                                memory_order_relaxed) != 0;
}

// Reserves the tables once; 0 on success. Never allocates with malloc.
int cpprof_heap_tables_init(void);
// Finds or adds the stack; CPPROF_HEAP_NO_STACK when the table is full.
uint32_t cpprof_heap_stack_intern(const uint64_t *pcs, uint32_t depth);
void cpprof_heap_stack_count_alloc(uint32_t stack, uint64_t size);
void cpprof_heap_stack_count_free(uint32_t stack, uint64_t size);
// Tracks a sampled pointer and, if `count_alloc`, counts the allocation on
// its stack; 0 (and nothing counted) if its bucket is full. A stale entry for the same address
// (a free we never saw) is replaced and counted as freed.
int cpprof_heap_live_insert(uintptr_t addr, uint32_t stack, uint64_t size, int count_alloc);
// Stops tracking `addr`; 1 and the entry's data if it was tracked.
int cpprof_heap_live_remove(uintptr_t addr, uint32_t *stack, uint64_t *size);
size_t cpprof_heap_table_snapshot(cpprof_heap_record *out, size_t max);
void cpprof_heap_table_stats(cpprof_heap_stats *out);

// --- malloc_interposer.c ---
uint64_t cpprof_heap_bootstrap_used(void);
int cpprof_heap_is_interposed(void);

#endif // CPPROF_HEAP_PROFILING
#endif
