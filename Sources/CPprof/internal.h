// Declarations shared between the C files of CPprof; not part of the module.
#ifndef CPPROF_INTERNAL_H
#define CPPROF_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>
#include <signal.h>
#include "include/cpprof_cpu.h"

#define CPPROF_TLS __thread __attribute__((tls_model("initial-exec")))

// --- sample_ring.c: bounded lock-free multi-producer queue of samples ---
int cpprof_ring_init(void);           // allocates once; 0 or errno
// Claims a free cell; NULL when the ring is full. Async-signal-safe.
cpprof_sample *cpprof_ring_claim(uint64_t *ticket);
// Publishes a claimed cell. Async-signal-safe.
void cpprof_ring_publish(uint64_t ticket);
size_t cpprof_ring_drain(cpprof_sample *out, size_t max);

// --- stack_map.c: writable regions, to bound frame-pointer walks ---
int cpprof_stackmap_refresh(void);    // not signal-safe; 0 or errno
void cpprof_stackmap_clear(void);     // not signal-safe
// Finds the writable region holding `sp`; 1 and *end set if known. Async-signal-safe.
int cpprof_stackmap_region_end(uintptr_t sp, uintptr_t *end);
extern _Atomic uint64_t cpprof_stackmap_leaks;

// --- frame_walk.c ---
// Fills pcs[0] = pc, then the return addresses of a frame-pointer chain that
// stays inside [sp, stack_end). Returns the depth. Async-signal-safe.
uint32_t cpprof_walk_frames(uintptr_t pc, uintptr_t fp, uintptr_t sp, uintptr_t stack_end,
                            uint64_t *pcs, uint32_t max);

// --- cpu_sampler.c, for bench_hooks.c only ---
typedef void (*cpprof_sigaction_fn)(int, siginfo_t *, void *);
cpprof_sigaction_fn cpprof_internal_sigprof_handler(void); // the SIGPROF handler itself
int cpprof_internal_timer_cookie(void);                   // si_value of our timers' signals

#endif
