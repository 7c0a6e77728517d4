// Declarations shared between the C files of CPprof; not part of the module.
#ifndef CPPROF_INTERNAL_H
#define CPPROF_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>
#include <signal.h>
#include "include/cpprof_async.h"
#include "include/cpprof_cpu.h"

#define CPPROF_TLS __thread __attribute__((tls_model("initial-exec")))

// The index in ranges[0, n) of the range holding addr, or n. Each element,
// `stride` bytes long, starts with two uintptr_t: its first address and one
// past its last. The ranges are sorted and disjoint. Pure: async-signal-safe.
// (The stack map's regions and the image list's segments share this search.)
static inline size_t cpprof_range_index(const void *ranges, size_t n, size_t stride, uintptr_t addr) {
    const char *base = (const char *)ranges;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (((const uintptr_t *)(const void *)(base + mid * stride))[1] <= addr) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && ((const uintptr_t *)(const void *)(base + lo * stride))[0] <= addr ? lo : n;
}

// --- sample_ring.c: bounded lock-free multi-producer queue of samples ---
int cpprof_ring_init(void);           // allocates once; 0 or errno
// Claims a free cell; NULL when the ring is full. Async-signal-safe.
cpprof_sample *cpprof_ring_claim(uint64_t *ticket);
// Publishes a claimed cell. Async-signal-safe.
void cpprof_ring_publish(uint64_t ticket);
size_t cpprof_ring_drain(cpprof_sample *out, size_t max);
void cpprof_ring_reset_after_fork(void);  // in a fork child only

// --- stack_map.c: writable regions, to bound frame-pointer walks ---
int cpprof_stackmap_refresh(void);    // not signal-safe; 0 or errno
void cpprof_stackmap_clear(void);     // not signal-safe
int cpprof_stackmap_ready(void);      // 1 if a snapshot exists
void cpprof_stackmap_reset_after_fork(void); // in a fork child only
// Finds the writable region holding `sp`; 1 and *end set if known. Async-signal-safe.
int cpprof_stackmap_region_end(uintptr_t sp, uintptr_t *end);
// A run of lookups under one reader count (async-signal-safe): pin, look
// up, unpin. The pinned snapshot (NULL if none) stays valid until unpinned.
typedef struct cpprof_stackmap cpprof_stackmap;
const cpprof_stackmap *cpprof_stackmap_pin(void);
void cpprof_stackmap_unpin(void);
// Whether [addr, addr + len) lies in one writable region; sets its bounds.
int cpprof_stackmap_pinned_writable(const cpprof_stackmap *map, uintptr_t addr, size_t len,
                                    uintptr_t *start, uintptr_t *end);
// Whether addr lies in an executable region; sets its bounds.
int cpprof_stackmap_pinned_code(const cpprof_stackmap *map, uintptr_t addr, uintptr_t *start, uintptr_t *end);
extern _Atomic uint64_t cpprof_stackmap_leaks;

// --- thread_stack.c: the calling thread's stack bounds ---
// Learns them with pthread_getattr_np; only where no glibc lock is held
// (thread start, constructors), never from an allocator hook.
void cpprof_thread_stack_learn(void);
// The end of the calling thread's stack if `sp` lies in it: 1 and *end set.
// Async-signal-safe and allocation-free.
int cpprof_thread_stack_end(uintptr_t sp, uintptr_t *end);

// --- cpu_sampler.c ---
// Arms the calling thread's CPU timer if a per-thread-timer session runs.
// Called at thread start (thread_create.c); not signal-safe (takes a lock).
void cpprof_cpu_thread_started(void);

// --- async_walk.c: logical stacks of Swift async code (cpprof_async.h) ---
// Published job-running functions: [start, end) pairs, append-only.
extern uintptr_t cpprof_async_executors[CPPROF_ASYNC_MAX_EXECUTORS][2];
extern _Atomic uint32_t cpprof_async_executor_count;
// Whether a return address lies in a job-running function, i.e. the frame
// that returns there is an async function's. Async-signal-safe.
static inline int cpprof_async_is_executor(uintptr_t ret) {
    uint32_t n = atomic_load_explicit(&cpprof_async_executor_count, memory_order_acquire);
    for (uint32_t i = 0; i < n; i++)
        if (ret >= cpprof_async_executors[i][0] && ret < cpprof_async_executors[i][1]) return 1;
    return 0;
}
// The chain a handler captured for a thread dump: inserted later into the
// unwound stack before `boundary`, the return address into the executor.
typedef struct cpprof_async_capture {
    uint64_t boundary;
    uint32_t count;
    uint64_t pcs[CPPROF_ASYNC_MAX_DEPTH];
} cpprof_async_capture;
// Inserts a captured chain into an unwound stack (not in a handler).
void cpprof_async_splice(uint64_t *pcs, uint32_t *depth, uint32_t max, const cpprof_async_capture *chain);
// Finds the async frame in a copy of a blocked thread's stack (starting at
// `addr`, `len` bytes) and reads its chain with process_vm_readv (not in a
// handler). out->count is 0 if there is none.
void cpprof_async_capture_from_copy(const uint8_t *copy, uint64_t addr, size_t len, cpprof_async_capture *out);

// --- frame_walk.c ---
// Fills pcs[0] = pc, then the return addresses of a frame-pointer chain that
// stays inside [sp, stack_end), with the awaiting callers of each async
// frame inserted after it (async_walk.c). Returns the depth. Async-signal-safe.
uint32_t cpprof_walk_frames(uintptr_t pc, uintptr_t fp, uintptr_t sp, uintptr_t stack_end,
                            uint64_t *pcs, uint32_t max);
// The same walk, reading contexts with `reader` (cpprof_async_reader;
// cpprof_walk_frames: the snapshot). `capture`, if not NULL, receives the
// first async chain met (count 0 if none), for the thread-dump handler.
uint32_t cpprof_walk_frames_async(uintptr_t pc, uintptr_t fp, uintptr_t sp, uintptr_t stack_end,
                                  uint64_t *pcs, uint32_t max, int32_t reader, cpprof_async_capture *capture);

// --- image_memory.c: the images mapped now, read without faulting ---
typedef struct cpprof_text_range { uintptr_t lo, hi, eh_frame_hdr; } cpprof_text_range;
// Starts a batch: lists the images again if an object was loaded or
// unloaded since the last batch (*changed = 1). 0 if out of memory.
int cpprof_images_begin(int *changed);
void cpprof_images_end(void);
// The next batch lists the images again (in a fork child).
void cpprof_images_forget(void);
// The executable segment holding ip, or NULL.
const cpprof_text_range *cpprof_image_text(uintptr_t ip);
// 1 if [addr, addr + len) lies in one loaded segment.
int cpprof_image_loaded(uintptr_t addr, size_t len);
// 1 if it lies in one loaded segment that is writable.
int cpprof_image_writable(uintptr_t addr, size_t len);
// Copies [addr, addr + len) of a loaded segment into dst: 0, or -1 (never faults).
int cpprof_image_read(uintptr_t addr, void *dst, size_t len);

// --- remote_unwind.c: unwinding a copied stack outside any signal handler ---
// Registers in DWARF / libunwind numbering (x86_64): rax rdx rcx rbx rsi rdi
// rbp rsp r8..r15 rip.
#define CPPROF_NREGS 17
#define CPPROF_REG_RBP 6
#define CPPROF_REG_RSP 7
#define CPPROF_REG_RIP 16
typedef struct cpprof_stack_copy {
    uint64_t regs[CPPROF_NREGS];
    uint64_t stack_addr;      // address in the thread where the copy starts
    uint64_t stack_len;       // bytes copied
    uint64_t full_len;        // bytes the stack offers (> stack_len: only its start was copied)
    const uint8_t *bytes;     // the copy
    int only_sp_pc;           // 1: read from /proc; only rsp and rip are known
} cpprof_stack_copy;
// Starts a batch of unwinds (one dump): snapshots the loaded images, loads
// libunwind on first use. Returns 1 if DWARF unwinding is available. Not
// signal-safe; one batch at a time.
int cpprof_unwind_begin(void);
void cpprof_unwind_end(void);
// In a fork child: forget libunwind's address space (its cache lock may be held).
void cpprof_unwind_reset_after_fork(void);
// What an unwind of a copy depended on: the stack bytes it read (address,
// length, value) and where the frame-record scan started and what it found.
// The unwind is a function of the registers, these bytes and the images'
// read-only memory: another copy with the same registers and layout in
// which every recorded read gives the same bytes (and the scan the same
// record) unwinds to the same frames.
#define CPPROF_UNWIND_DEPS_MAX 96
typedef struct cpprof_unwind_read { uint64_t addr; uint64_t value[2]; } cpprof_unwind_read;
typedef struct cpprof_unwind_deps {
    uint32_t count;
    int overflow;          // more reads than recorded, or one of writable memory: not reusable
    int dwarf;             // libunwind took part
    int scanned;           // the scan ran from scan_from and found scan_found (0: none)
    uint64_t scan_from, scan_found;
    uint8_t lens[CPPROF_UNWIND_DEPS_MAX];
    cpprof_unwind_read reads[CPPROF_UNWIND_DEPS_MAX];
} cpprof_unwind_deps;
// Unwinds one copy into pcs (pcs[0] = rip). Returns the depth. *incomplete
// is set to 1 if the unwind wanted bytes in [stack_len, full_len), which were
// not copied: the result is then not the whole copy's; with every byte it
// read present, it is exactly what a copy of full_len bytes gives. `deps`,
// if not NULL, receives what the result depended on.
uint32_t cpprof_unwind_copy(const cpprof_stack_copy *copy, uint64_t *pcs, uint32_t max,
                            uint8_t *unwinder, uint8_t *truncated, uint8_t *incomplete,
                            cpprof_unwind_deps *deps);
// 1 if `copy` (same registers and layout as the one `deps` was recorded
// from) gives every recorded read the same bytes and the scan the same
// record: its unwind is the recorded one. Inside a batch.
int cpprof_unwind_deps_hold(const cpprof_stack_copy *copy, const cpprof_unwind_deps *deps);
// --- unwind_memo.c: a blocked thread's last unwind, reused while it holds ---
// 1: keep memos (a wall-clock profile starts; cleared); 0: free them.
void cpprof_unwind_memo_enable(int on);
// Forgets every memo (the images changed).
void cpprof_unwind_memo_clear(void);
// cpprof_unwind_copy for thread `tid`, or its last unwind if that provably
// gives the same frames (*reused = 1). Inside a batch.
uint32_t cpprof_unwind_memo_copy(int32_t tid, const cpprof_stack_copy *copy, uint64_t *pcs, uint32_t max,
                                 uint8_t *unwinder, uint8_t *truncated, uint8_t *incomplete, int *reused);
// Bytes above sp that the last unwind of `tid` read, if it was blocked at
// the same sp and pc then; 0 if there is no such memo.
size_t cpprof_unwind_memo_need(int32_t tid, uint64_t sp, uint64_t pc);
// Bounds of the function holding addr, from its FDE (inside a batch). 1 if found.
int cpprof_unwind_function_bounds(uint64_t addr, uint64_t *start, uint64_t *end);

// --- proc_capture.c: a blocked thread's registers and stack, no signal ---
enum { CPPROF_PROC_BLOCKED = 0, CPPROF_PROC_RUNNING = 1, CPPROF_PROC_GONE = 2 };
typedef struct cpprof_proc_regs { int64_t nr; uint64_t sp, pc; } cpprof_proc_regs;
// The thread's CPU time in ns (moves whenever it runs); -1 if it is gone.
int64_t cpprof_thread_cpu_ns(int32_t tid);
// Reads TID/syscall under the open directory /proc/self/task: BLOCKED (and
// *out set), RUNNING (on a CPU or runnable) or GONE (exited, unreadable).
int cpprof_proc_syscall(int task_dir, int32_t tid, cpprof_proc_regs *out);
// Copies [sp, sp + cap), cut at the end of sp's mapping, into dst with
// process_vm_readv. Returns the bytes copied; 0 if nothing could be read.
size_t cpprof_proc_copy_stack(uint64_t sp, uint8_t *dst, size_t cap);
// How many bytes cpprof_proc_copy_stack(sp, _, cap) would try to copy.
size_t cpprof_proc_stack_len(uint64_t sp, size_t cap);
// 1: keep TID/syscall files open between reads (a wall-clock profile), at
// most an eighth of RLIMIT_NOFILE; 0: close them all. Under the dump lock.
void cpprof_proc_keep_files(int keep);
// In a fork child: close the parent's kept files.
void cpprof_proc_forget_files_after_fork(void);
// /proc/self/task opened (kept open while files are kept), or -1; give it
// back with cpprof_proc_close_task_dir.
int cpprof_proc_open_task_dir(void);
void cpprof_proc_close_task_dir(int fd);
// 0 once process_vm_readv was refused (seccomp): callers signal instead.
int cpprof_proc_available(void);
struct cpprof_thread_info;
// The tids in /proc/self/task (malloc'd into *out). 0 or errno.
int cpprof_proc_list_tasks(int32_t **out, size_t *count);
// Name, state letter and CPU time of a thread from TID/stat and its CPU clock.
void cpprof_proc_read_stat(int32_t tid, struct cpprof_thread_info *info, long ticks_per_second);
// Thread-directed pending and blocked signal sets from TID/status; 1 if read.
int cpprof_proc_signal_sets(int32_t tid, uint64_t *pending, uint64_t *blocked);

// --- dump_cache.c: stacks of threads that have not run since the last dump ---
enum { CPPROF_CACHE_UNKNOWN = 0, CPPROF_CACHE_CHANGED = 1, CPPROF_CACHE_HIT = 2 };
// HIT: *out is the entry of `tid`, captured when its CPU time read `cpu_ns`
// (so it has not run since); CHANGED: known tid, it ran (out->name and
// out->state are its last ones); UNKNOWN: new tid.
int cpprof_dump_cache_lookup(int32_t tid, int64_t cpu_ns, struct cpprof_thread_info *out);
// Records the threads of `infos` that have a stack. `whole_process`: every
// live thread is in `infos` (the others are forgotten).
void cpprof_dump_cache_store(const struct cpprof_thread_info *infos, size_t n, int whole_process);
void cpprof_dump_cache_clear(void);

// --- sigprof.c: the one owner of SIGPROF ---
typedef void (*cpprof_sigaction_fn)(int, siginfo_t *, void *);
// Installs the dispatcher once (later calls: 0 at once). 0 or errno.
int cpprof_sigprof_install(void);
// 1 if SIGPROF, as installed now, still reaches the dispatcher (something
// may have replaced it or reset it to SIG_DFL since).
int cpprof_sigprof_owned(void);
// SIGPROFs that were not ours, passed to the previous handler (or dropped).
uint64_t cpprof_sigprof_foreign_count(void);
// The dispatcher itself (benchmarks call it directly: bench_hooks.c).
cpprof_sigaction_fn cpprof_internal_sigprof_handler(void);
// The recognisers the dispatcher calls, in this order. Each returns 1 if the
// signal was its own (and handles it), 0 otherwise. Async-signal-safe.
int cpprof_cpu_on_sigprof(siginfo_t *info, void *uctx); // cpu_sampler.c
int cpprof_dump_on_sigprof(siginfo_t *info, void *uctx); // dump_slots.c
// si_value of the CPU timers' signals (cpu_sampler.c; bench_hooks.c fakes one).
int cpprof_internal_timer_cookie(void);

#endif
