#ifndef CPPROF_HEAP_H
#define CPPROF_HEAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Deepest stack a heap sample keeps; deeper stacks are cut at the root side.
#define CPPROF_HEAP_MAX_DEPTH 64

/// Go's default runtime.MemProfileRate: one sample per 512 KiB on average.
#define CPPROF_HEAP_DEFAULT_RATE 524288

/// Cumulative, raw (unscaled) sampled counts of one allocation stack.
/// In use = alloc - free.
typedef struct cpprof_heap_record {
    uint64_t alloc_objects;
    uint64_t alloc_bytes;   // requested sizes
    uint64_t free_objects;
    uint64_t free_bytes;
    uint32_t depth;         // valid entries in pcs
    uint32_t reserved;
    uint64_t pcs[CPPROF_HEAP_MAX_DEPTH]; // pcs[0]: return address into the allocator's caller
} cpprof_heap_record;

/// Counters and memory use of the heap sampler.
typedef struct cpprof_heap_stats {
    int32_t available;            // 1 if built with the HeapProfiling trait
    int32_t interposed;           // 1 if this process's malloc is ours
    int64_t rate;                 // current sampling rate in bytes (0: off)
    uint64_t sampled_allocs;      // samples recorded since start
    uint64_t sampled_frees;       // recorded samples whose memory was freed
    uint64_t live_samples;        // samples currently tracked by address
    uint64_t live_capacity;       // most samples that can be tracked at once
    uint64_t stacks;              // distinct stacks recorded
    uint64_t stack_capacity;      // most distinct stacks
    uint64_t dropped_live_full;   // samples dropped: live table bucket full
    uint64_t dropped_stack_full;  // samples dropped: stack table full
    uint64_t dropped_no_memory;   // samples dropped: tables could not be mapped
    uint64_t stack_unbounded;     // samples whose stack range was unknown (leaf only)
    uint64_t bootstrap_bytes;     // static bootstrap arena used while resolving the allocator
    uint64_t memory_bytes;        // bytes of its tables the sampler has written so far (grows with use)
    uint64_t reserved_bytes;      // address space reserved for the tables (fixed; unwritten pages cost nothing)
} cpprof_heap_stats;

/// 1 if malloc interposition was compiled in (package trait HeapProfiling).
int cpprof_heap_available(void);

/// Average bytes between samples; 0 = off, 1 = every allocation.
int64_t cpprof_heap_rate(void);

/// Sets the rate (negative means 0; at most 2^40-1). Takes effect at each
/// thread's next allocation. No effect when unavailable.
void cpprof_heap_set_rate(int64_t rate);

/// Marks the calling thread as working for the profiler until the matching
/// `cpprof_heap_own_leave`: its allocations are never sampled, so the
/// profiler's own memory stays out of the heap profiles (frees of sampled
/// blocks still count). Calls nest. No effect when unavailable.
void cpprof_heap_own_enter(void);
void cpprof_heap_own_leave(void);

/// Copies up to `max` records (stacks that had at least one sampled
/// allocation) into `out` and returns how many exist; call again with a
/// larger buffer if that exceeds `max`. `out` may be NULL when `max` is 0.
/// Lock-free; safe while other threads allocate.
size_t cpprof_heap_snapshot(cpprof_heap_record *out, size_t max);

/// Reads the counters.
void cpprof_heap_get_stats(cpprof_heap_stats *out);

/// Test helper: the return address of this call, i.e. a PC inside the caller.
uintptr_t cpprof_heap_caller_pc(void);

#ifdef __cplusplus
}
#endif

#endif
