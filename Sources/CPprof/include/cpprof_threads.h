#ifndef CPPROF_THREADS_H
#define CPPROF_THREADS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------
// Thread dumps: every thread of the process, its name, scheduler state, CPU
// time and stack, captured within one short window.
//
// How: a thread blocked in the kernel is not disturbed: its stack pointer and
// PC come from /proc/self/task/TID/syscall and its stack is copied with
// process_vm_readv, checked against its CPU clock (it did not run meanwhile).
// SIGPROF, marked as ours (SI_QUEUE and a magic si_value), is queued to
// each other thread; its handler copies the interrupted registers and the top
// of the thread's stack (at most CPPROF_THREAD_STACK_COPY bytes, never past
// its stack region) into a preallocated slot. After the window closes, the
// copies are unwound with libunwind's remote API (DWARF CFI, so threads
// blocked inside glibc, which has no frame pointers, still show their
// callers), outside any signal handler, with a frame-pointer walk of the
// copy as fallback. libunwind is loaded with dlopen(RTLD_LOCAL) when first
// needed; without it, stacks come from frame pointers only.
// ---------------------------------------------------------------------------

/// Deepest stack a thread dump keeps; deeper stacks are cut at the root side.
#define CPPROF_THREAD_MAX_FRAMES 128
/// Most bytes of a thread's stack (from its stack pointer up) that are copied.
#define CPPROF_THREAD_STACK_COPY (64 * 1024)

/// Why a thread does (or does not) have a stack in a dump.
typedef enum cpprof_thread_status {
    CPPROF_THREAD_ANSWERED = 0,      // its handler copied its stack in time
    CPPROF_THREAD_SELF = 1,          // the dumping thread, captured directly
    CPPROF_THREAD_TIMED_OUT = 2,     // signalled, no answer before the deadline
    CPPROF_THREAD_BLOCKED = 3,       // it blocks the dump signal (seen in its SigBlk)
    CPPROF_THREAD_EXITED = 4,        // gone before or while being signalled
    CPPROF_THREAD_SEND_FAILED = 5,   // the kernel refused the signal (EAGAIN...)
    CPPROF_THREAD_STILL_PENDING = 6, // reserved
    CPPROF_THREAD_NO_SLOT = 7,       // more threads than CPPROF_THREAD_MAX_THREADS
    CPPROF_THREAD_READ_BLOCKED = 8,  // blocked in the kernel: stack read from /proc, no signal
} cpprof_thread_status;

/// Most threads one dump captures; further threads are listed as NO_SLOT.
#define CPPROF_THREAD_MAX_THREADS 65536

/// How a stack was unwound.
typedef enum cpprof_unwinder {
    CPPROF_UNWIND_NONE = 0,           // no stack (not answered)
    CPPROF_UNWIND_DWARF = 1,          // libunwind remote, DWARF CFI
    CPPROF_UNWIND_FRAME_POINTERS = 2, // frame-pointer walk of the copy
    CPPROF_UNWIND_DWARF_THEN_FP = 3,  // DWARF until it failed, frame pointers after
} cpprof_unwinder;

/// One thread of a dump.
typedef struct cpprof_thread_info {
    int32_t tid;
    int32_t status;        // cpprof_thread_status
    int64_t cpu_ns;        // user + system CPU time in ns; -1 if unknown
    char name[16];         // /proc/self/task/TID/comm, NUL-terminated
    char state;            // letter from /proc/self/task/TID/stat; '?' if unknown
    uint8_t unwinder;      // cpprof_unwinder
    uint8_t truncated;     // 1 if the stack was cut (depth limit or copy size)
    uint8_t unchanged;     // 1: it had not run since the previous dump, whose stack this is
    uint32_t depth;        // valid entries in pcs
    uint64_t stack_bytes;  // bytes of stack copied
    uint64_t pcs[CPPROF_THREAD_MAX_FRAMES]; // pcs[0]: interrupted PC; then return addresses
} cpprof_thread_info;

/// What one dump cost and found.
typedef struct cpprof_thread_dump_stats {
    int32_t signal;          // the signal used (SIGPROF)
    int32_t libunwind;       // 1 if libunwind's remote unwinder was available
    uint32_t threads;        // threads listed
    uint32_t answered;       // threads with a stack (self included)
    int64_t prepare_ns;      // listing, names, states, CPU times, slots
    int64_t capture_ns;      // first signal sent -> last answer (or deadline)
    int64_t unwind_ns;       // unwinding every copy
    int64_t total_ns;
    uint64_t lingering;      // handlers still writing when the dump gave up on them
    int64_t handler_max_ns;  // longest time one thread spent in the dump handler
    int64_t handler_total_ns;// time all answering threads spent in it
    uint32_t read_blocked;   // threads read from /proc while blocked (not signalled)
    uint32_t signalled;      // threads sent a dump signal
    uint32_t unchanged;      // threads that had not run since the previous dump: nothing read
    uint32_t completed;      // blocked threads whose unwind needed more than their first copy (8 KiB, or what their last unwind read)
    uint32_t reused;         // blocked threads whose last unwind was reused (exactly the same frames)
} cpprof_thread_dump_stats;

/// Dumps every thread of the process. Dumps are serialized: a concurrent
/// caller waits for the running dump to finish. `deadline_ms` bounds the
/// wait for answers (<= 0: 200 ms). On success returns 0 and a malloc'd
/// array in *out (free it with cpprof_threads_free) of *count entries;
/// otherwise an errno value. `stats` may be NULL.
int cpprof_threads_dump(int32_t deadline_ms, cpprof_thread_info **out, size_t *count,
                        cpprof_thread_dump_stats *stats);

/// Same as cpprof_threads_dump, for the threads `tids` only (a wall-clock
/// profile's tick: the caller keeps the list and refreshes it now and then).
/// Threads that exited are reported as CPPROF_THREAD_EXITED.
int cpprof_threads_sample(const int32_t *tids, size_t count_in, int32_t deadline_ms,
                          cpprof_thread_info **out, size_t *count, cpprof_thread_dump_stats *stats);

void cpprof_threads_free(cpprof_thread_info *infos);

/// Brackets a wall-clock profile (1 at its start, 0 at its end): while any runs,
/// the /proc files cpprof_threads_sample reads stay open between ticks (at
/// most an eighth of RLIMIT_NOFILE, 256 at most), and are closed at its end.
void cpprof_threads_sampling(int active);

/// The signal thread dumps use (SIGPROF: libdispatch blocks real-time
/// signals in its worker threads, and the threads they create inherit that),
/// once the handler is installed at the first dump; 0 before; -1 on failure.
/// Other SIGPROFs are passed on to the handler installed before ours, and
/// CPprof's CPU sampler passes dump signals on to ours, in either order.
int cpprof_threads_signal(void);

/// The word the kernel uses for a state letter ("running", "sleeping",
/// "disk sleep", ...); "unknown" for letters it does not know.
const char *cpprof_thread_state_name(char letter);

// ---------------------------------------------------------------------------
// Thread-creation stacks: pthread_create is interposed; the creating thread's
// stack (frame pointers, at most CPPROF_THREADCREATE_MAX_FRAMES) is kept per
// live thread, keyed by the new thread's tid, and dropped when it exits.
// ---------------------------------------------------------------------------

#define CPPROF_THREADCREATE_MAX_FRAMES 32
/// Live threads whose creation stack can be kept; more are counted as dropped.
#define CPPROF_THREADCREATE_CAPACITY 4096

typedef struct cpprof_threadcreate_record {
    int32_t tid;
    uint32_t depth;
    uint64_t pcs[CPPROF_THREADCREATE_MAX_FRAMES]; // pcs[0]: return address in the creator
} cpprof_threadcreate_record;

typedef struct cpprof_threadcreate_stats {
    uint64_t created;   // threads started through the interposed pthread_create
    uint64_t dropped;   // creation stacks not kept: table full
    uint64_t live;      // records returned by the last snapshot
} cpprof_threadcreate_stats;

/// Copies the creation stacks of threads still alive (checked against
/// /proc/self/task; records of exited threads are removed) into `out`.
/// Returns the number of live records, which may exceed `max` (then only
/// `max` were copied). `stats` may be NULL.
size_t cpprof_threadcreate_snapshot(cpprof_threadcreate_record *out, size_t max,
                                    cpprof_threadcreate_stats *stats);

#ifdef __cplusplus
}
#endif

#endif
