// The slots thread dumps capture stacks into (dump_slots.c), shared by the
// dumper (thread_dump.c) and the SIGPROF handler of a dump.
//
// Invariants: slots live in chunks that are mapped once and never unmapped,
// so a handler that runs late can only write into memory that stays valid.
// A slot's state is (generation << 8) | phase; a handler claims its slot
// with a compare-and-swap from "armed for generation G" to "writing", which
// fails for a signal left over from an older dump, and the dumper never
// reuses a slot that a late handler is still writing.
#ifndef CPPROF_DUMP_SLOTS_H
#define CPPROF_DUMP_SLOTS_H

#include "internal.h"
#include "include/cpprof_threads.h"
#include <stdint.h>

enum { CPPROF_PHASE_FREE = 0, CPPROF_PHASE_ARMED = 1, CPPROF_PHASE_WRITING = 2, CPPROF_PHASE_DONE = 3,
       CPPROF_PHASE_ABANDONED = 4 };

// si_value of our signals: magic (16 bits) | generation (28 bits) | slot (20 bits).
#define CPPROF_DUMP_VALUE_MAGIC 0x7464ULL
#define CPPROF_DUMP_GEN_MASK ((1ULL << 28) - 1)
#define CPPROF_DUMP_IDX_MASK ((1ULL << 20) - 1)

typedef struct cpprof_dump_slot {
    _Atomic uint64_t state;          // (generation << 8) | phase
    uint64_t regs[CPPROF_NREGS];
    uint64_t stack_addr;
    uint64_t stack_len;
    uint64_t full_len;               // bytes the stack offered (> stack_len: only its start was copied)
    int64_t handler_ns;              // time the handler took
    int only_sp_pc;                  // read from /proc: only rsp and rip known
    int64_t cpu_ns;                  // read from /proc: its CPU time, unchanged while copied
    uint8_t *copy;                   // CPPROF_THREAD_STACK_COPY bytes, fixed
    cpprof_async_capture async;      // awaiting callers, read live by the handler
    uint64_t walk[CPPROF_THREAD_MAX_FRAMES]; // the handler's scratch for finding them
} cpprof_dump_slot;

static inline uint64_t cpprof_dump_state(uint64_t gen, uint64_t phase) { return (gen << 8) | phase; }

// Bumped (and futex-woken) by every handler that finished a copy.
extern _Atomic uint32_t cpprof_dump_wake_word;

// Next slot at or after *cursor that no late handler is still writing,
// armed for `gen`; NULL when none is left or memory is short. Dumper only.
cpprof_dump_slot *cpprof_dump_slot_take(uint64_t gen, uint32_t *cursor, uint32_t *idx_out);
// Captures the calling thread (the dumper's own) into `s`.
void cpprof_dump_capture_self(cpprof_dump_slot *s);
// Gives back the copied pages of slots [0, used). A late handler writing
// meanwhile is harmless: it faults in fresh zero pages.
void cpprof_dump_slots_release(uint32_t used);
// ns on CLOCK_MONOTONIC.
int64_t cpprof_dump_now_ns(void);

#endif
