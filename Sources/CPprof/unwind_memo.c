// Exact reuse of a blocked thread's last unwind, while wall-clock profiles
// run. A server's worker that wakes, works and blocks again at the same call
// is read from /proc afresh at each tick it ran in between, and its stack
// unwinds to the same frames every time. The unwind (libunwind's CFI steps,
// the frame-record scan, the frame-pointer walk) is a function of the
// registers, of the stack bytes it read and of the images' read-only memory
// (remote_unwind.c records the first two in a cpprof_unwind_deps). A new
// copy of the same thread with the same sp, pc and layout, in which every
// recorded read gives the same bytes and the scan finds the same record,
// unwinds to the recorded frames: they are reused, no unwind is made. Not
// an approximation: a loop variable the scan passed over may differ (the
// scan is run again, not compared byte by byte), a return address may not.
// The memo also says how many bytes above sp that unwind read: a thread
// blocked again at the same sp and pc is copied only that far (a copy of
// fewer pages costs less); if its stack changed and the unwind needs more,
// the dumper copies the rest as for any short first copy.
//
// Invariants: used under the dump lock only, inside an unwind batch (the
// images it was recorded with are the ones mapped: cleared when they
// change); only copies read from /proc (sp and pc, nothing else known) are
// reused; memory is held only while a profile runs (MEMO_SLOTS entries,
// direct-mapped by tid, 3.4 KiB each: 878 KiB), freed at its end.
#include "internal.h"
#include "include/cpprof_threads.h"
#include <stdlib.h>
#include <string.h>

#define MEMO_SLOTS 256

typedef struct memo_entry {
    int32_t tid;
    int valid;
    uint64_t sp, pc, stack_addr, full_len;
    uint64_t need; // bytes from stack_addr that the unwind read
    uint32_t depth;
    uint8_t unwinder, truncated;
    uint64_t pcs[CPPROF_THREAD_MAX_FRAMES];
    cpprof_unwind_deps deps;
} memo_entry;

static memo_entry *memo; // MEMO_SLOTS entries while enabled, else NULL

void cpprof_unwind_memo_enable(int on) {
    if (on) {
        if (memo == NULL) memo = calloc(MEMO_SLOTS, sizeof *memo);
        else cpprof_unwind_memo_clear();
    } else {
        free(memo);
        memo = NULL;
    }
}

void cpprof_unwind_memo_clear(void) {
    if (memo == NULL) return;
    for (size_t i = 0; i < MEMO_SLOTS; i++) memo[i].valid = 0;
}

// The copy's length may differ (a shorter one, of the bytes the memo
// needs): a recorded read past it fails, and the memo does not hold.
static int same_layout(const memo_entry *m, int32_t tid, const cpprof_stack_copy *c) {
    return m->valid && m->tid == tid && m->sp == c->regs[CPPROF_REG_RSP] && m->pc == c->regs[CPPROF_REG_RIP] &&
           m->stack_addr == c->stack_addr && m->full_len == c->full_len;
}

size_t cpprof_unwind_memo_need(int32_t tid, uint64_t sp, uint64_t pc) {
    if (memo == NULL) return 0;
    const memo_entry *m = &memo[(uint32_t)tid % MEMO_SLOTS];
    return m->valid && m->tid == tid && m->sp == sp && m->pc == pc ? (size_t)m->need : 0;
}

// Bytes from the copy's start that the recorded unwind read: its recorded
// reads, and the scan's, which end with the record it found (or at the
// stack's end if it found none).
static uint64_t bytes_needed(const cpprof_stack_copy *copy, const cpprof_unwind_deps *d) {
    uint64_t end = copy->stack_addr;
    for (uint32_t i = 0; i < d->count; i++)
        if (d->reads[i].addr + d->lens[i] > end) end = d->reads[i].addr + d->lens[i];
    if (d->scanned) {
        uint64_t scan_end = d->scan_found ? d->scan_found + 16 : copy->stack_addr + copy->full_len;
        if (scan_end > end) end = scan_end;
    }
    return end - copy->stack_addr;
}

uint32_t cpprof_unwind_memo_copy(int32_t tid, const cpprof_stack_copy *copy, uint64_t *pcs, uint32_t max,
                                 uint8_t *unwinder, uint8_t *truncated, uint8_t *incomplete, int *reused) {
    *reused = 0;
    memo_entry *m = memo != NULL && copy->only_sp_pc && max == CPPROF_THREAD_MAX_FRAMES
        ? &memo[(uint32_t)tid % MEMO_SLOTS] : NULL;
    if (m == NULL) return cpprof_unwind_copy(copy, pcs, max, unwinder, truncated, incomplete, NULL);
    if (same_layout(m, tid, copy) && cpprof_unwind_deps_hold(copy, &m->deps)) {
        memcpy(pcs, m->pcs, m->depth * sizeof *pcs);
        *unwinder = m->unwinder;
        *truncated = m->truncated;
        *incomplete = 0;
        *reused = 1;
        return m->depth;
    }
    m->valid = 0;
    uint32_t depth = cpprof_unwind_copy(copy, pcs, max, unwinder, truncated, incomplete, &m->deps);
    if (*incomplete || m->deps.overflow) return depth;
    m->tid = tid;
    m->sp = copy->regs[CPPROF_REG_RSP];
    m->pc = copy->regs[CPPROF_REG_RIP];
    m->stack_addr = copy->stack_addr;
    m->full_len = copy->full_len;
    m->need = bytes_needed(copy, &m->deps);
    m->depth = depth;
    m->unwinder = *unwinder;
    m->truncated = *truncated;
    memcpy(m->pcs, pcs, depth * sizeof *pcs);
    m->valid = 1;
    return depth;
}
