#ifndef CPPROF_ASYNC_H
#define CPPROF_ASYNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------
// Logical call stacks of Swift async code (async_walk.c).
//
// An async function runs as a chain of partial functions, each tail-calling
// the next, so only the running one has a frame on the machine stack, right
// above the executor that runs the task's job. Its callers wait in the task's
// chain of async contexts: each context starts with its parent context and
// the resume function in that parent (swift/ABI/Task.h: Parent at +0,
// ResumeParent at +8); the running function's context sits at fp - 8 of its
// frame. A stack walk that meets the executor's job-running function
// (swift::runJobInEstablishedExecutorContext, whose address range the Swift
// side publishes here) reads the context chain of the frame below it and puts
// the awaiting callers there, innermost first.
// ---------------------------------------------------------------------------

/// Most awaiting callers one chain contributes; deeper chains are cut.
#define CPPROF_ASYNC_MAX_DEPTH 64
/// Most executor ranges that can be published.
#define CPPROF_ASYNC_MAX_EXECUTORS 8

/// How `cpprof_async_chain` reads context memory.
typedef enum cpprof_async_reader {
    /// Only memory inside a writable region of the last stack-map snapshot
    /// (cpprof_async_refresh_snapshot); what the signal handlers use.
    CPPROF_ASYNC_READ_SNAPSHOT = 0,
    /// process_vm_readv on the own process: a bad address fails the read
    /// instead of faulting. Slow (a system call per level): outside handlers.
    CPPROF_ASYNC_READ_SYSCALL = 1,
    /// The snapshot, and process_vm_readv where it has no answer (memory
    /// mapped since): for the allocator hook, which is not a signal handler.
    CPPROF_ASYNC_READ_SNAPSHOT_THEN_SYSCALL = 2,
} cpprof_async_reader;

/// Adds [start, end) (runtime addresses) to the job-running functions: a
/// frame whose return address lies in one is an async frame. Ranges are only
/// ever added, never changed, so handlers read them without a lock. Not
/// signal-safe; one caller at a time. Returns 0, EEXIST if already known,
/// ENOSPC when full, EINVAL for an empty range.
int cpprof_async_add_executor_range(uint64_t start, uint64_t end);

/// Number of published executor ranges.
uint32_t cpprof_async_executor_range_count(void);

/// Follows the context chain from `context` (an async function's context)
/// and writes one entry per awaiting caller into pcs: its resume function's
/// address plus one, so that consumers that subtract one from return
/// addresses land on the resume function itself. Stops at the task's root
/// context (Parent == NULL), at `max`, or at the first context that does
/// not validate (counted as cut). Async-signal-safe with
/// CPPROF_ASYNC_READ_SNAPSHOT. Returns the number of entries written.
uint32_t cpprof_async_chain(uint64_t context, int32_t reader, uint64_t *pcs, uint32_t max);

/// Counters since the process started (take differences per profile).
typedef struct cpprof_async_stats {
    uint64_t chains;        // async frames met whose chain was followed
    uint64_t levels;        // awaiting callers added in total
    uint64_t cut;           // chains cut: a context that did not validate, a cycle, or the depth limit
    uint64_t snapshot_miss; // of those, a context outside the snapshot's writable regions
} cpprof_async_stats;

void cpprof_async_get_stats(cpprof_async_stats *out);

/// Refreshes the stack map's snapshot of mapped regions if a chain was cut
/// because a context lay outside it since the last call (or if `force`).
/// Not signal-safe. Returns 1 if it refreshed.
int cpprof_async_refresh_snapshot(int32_t force);

#ifdef __cplusplus
}
#endif

#endif
