// Blocked threads captured without a signal, for thread dumps and wall-clock
// ticks (thread_dump.c): each one's registers from /proc/self/task/TID/syscall,
// then every stack copied with one process_vm_readv (proc_capture.c), then
// each one's CPU clock read again: unchanged, it did not run while it was
// read, and its copy is consistent; changed, it is read again on its own.
//
// Why one copy for all: a wall-clock tick copies the stacks of the threads
// that ran since the last one (~10 of 100 workers waking every 50 ms), and
// each process_vm_readv paid the system call and the remote-mm lookup again
// (copies were 16 % of the sampler's CPU in the `wall-cost` benchmark, 26 %
// fewer samples after).
//
// Invariants: used under the dump lock only; never signals a thread; a slot
// is claimed (armed -> writing) before it is written, and left armed again
// for a thread that was not captured, so the caller can still signal it.
#include "dump_slots.h"
#include <string.h>

// Bytes first copied of a blocked thread's stack: a 64 KiB process_vm_readv
// costs ~10 us of CPU, an 8 KiB one ~3 us, and most blocked stacks unwind
// within 8 KiB (the unwind asks for the rest when one does not).
#define PROC_FIRST_COPY (8 * 1024)

// Bytes worth copying first: what the last unwind of the thread read if it
// was blocked at the same sp and pc then (while wall-clock profiles run).
static size_t first_copy_len(int32_t tid, const cpprof_proc_regs *r) {
    size_t want = cpprof_unwind_memo_need(tid, r->sp, r->pc);
    return want == 0 || want > PROC_FIRST_COPY ? PROC_FIRST_COPY : want;
}

// Fills a claimed slot from a consistent copy and marks it done.
static void finish(cpprof_dump_slot *s, int32_t tid, const cpprof_proc_regs *r, size_t len, size_t want,
                   int64_t before, uint64_t gen) {
    memset(s->regs, 0, sizeof s->regs);
    s->regs[CPPROF_REG_RSP] = r->sp;
    s->regs[CPPROF_REG_RIP] = r->pc;
    s->stack_addr = r->sp & ~(uint64_t)7;
    s->stack_len = len;
    s->full_len = len < want ? len : cpprof_proc_stack_len(r->sp, CPPROF_THREAD_STACK_COPY);
    s->handler_ns = 0;
    s->only_sp_pc = 1;
    s->cpu_ns = before;
    // Its awaiting callers, if it runs a task: read while it stays
    // blocked; a thread that ran meanwhile keeps its stack, not the chain.
    cpprof_async_capture_from_copy(s->copy, s->stack_addr, len, &s->async);
    if (s->async.count > 0 && cpprof_thread_cpu_ns(tid) != before) s->async.count = 0;
    atomic_store_explicit(&s->state, cpprof_dump_state(gen, CPPROF_PHASE_DONE), memory_order_release);
}

// One thread, on its own, in a slot it holds (writing): attempts 1 and 2
// after a batched first attempt that it ran during. 1 if captured; else the
// slot is armed again.
static int capture_alone(int task_dir, int32_t tid, cpprof_dump_slot *s, uint64_t gen) {
    for (int attempt = 1; attempt < 3; attempt++) {
        int64_t before = cpprof_thread_cpu_ns(tid);
        cpprof_proc_regs r;
        if (before < 0 || cpprof_proc_syscall(task_dir, tid, &r) != CPPROF_PROC_BLOCKED) break;
        size_t want = first_copy_len(tid, &r);
        size_t len = cpprof_proc_copy_stack(r.sp, s->copy, want);
        if (len == 0) break;
        // It ran meanwhile: the copy may mix two moments. Try again.
        if (cpprof_thread_cpu_ns(tid) != before) continue;
        finish(s, tid, &r, len, want, before, gen);
        return 1;
    }
    atomic_store(&s->state, cpprof_dump_state(gen, CPPROF_PHASE_ARMED));
    return 0;
}

// Threads captured per process_vm_readv: bounds the arrays on the stack (no
// allocation: a dump that cannot allocate must not fall back to signalling
// blocked threads).
#define BATCH 64

// Claims, reads the registers of and copies the threads batch[0..m): see
// cpprof_capture_blocked.
static size_t capture_batch(int task_dir, cpprof_thread_info *infos, cpprof_dump_slot **slots,
                            const size_t *batch, size_t m, uint64_t gen, uint8_t *captured) {
    size_t idx[BATCH], wants[BATCH], lens[BATCH], k = 0, done = 0;
    cpprof_proc_regs regs[BATCH];
    uint64_t sps[BATCH];
    uint8_t *dsts[BATCH];
    // Their registers, for those blocked now; the CPU time read when they
    // were listed is each one's "before".
    for (size_t b = 0; b < m; b++) {
        size_t i = batch[b];
        cpprof_dump_slot *s = slots[i];
        uint64_t armed = cpprof_dump_state(gen, CPPROF_PHASE_ARMED);
        if (!atomic_compare_exchange_strong(&s->state, &armed, cpprof_dump_state(gen, CPPROF_PHASE_WRITING))) continue;
        if (infos[i].cpu_ns < 0 || cpprof_proc_syscall(task_dir, infos[i].tid, &regs[k]) != CPPROF_PROC_BLOCKED) {
            atomic_store(&s->state, cpprof_dump_state(gen, CPPROF_PHASE_ARMED));
            continue;
        }
        idx[k] = i;
        sps[k] = regs[k].sp;
        dsts[k] = s->copy;
        wants[k] = first_copy_len(infos[i].tid, &regs[k]);
        k++;
    }
    // Their stacks, in one system call.
    cpprof_proc_copy_stacks(k, sps, dsts, wants, lens);
    for (size_t j = 0; j < k; j++) {
        size_t i = idx[j];
        cpprof_dump_slot *s = slots[i];
        int32_t tid = infos[i].tid;
        int ok = 0;
        if (lens[j] > 0 && cpprof_thread_cpu_ns(tid) == infos[i].cpu_ns) {
            finish(s, tid, &regs[j], lens[j], wants[j], infos[i].cpu_ns, gen);
            ok = 1;
        } else if (lens[j] > 0) {
            ok = capture_alone(task_dir, tid, s, gen); // it ran while it was read
        } else {
            atomic_store(&s->state, cpprof_dump_state(gen, CPPROF_PHASE_ARMED)); // gone, or unreadable
        }
        captured[i] = (uint8_t)ok;
        done += (size_t)ok;
    }
    return done;
}

size_t cpprof_capture_blocked(int task_dir, cpprof_thread_info *infos, cpprof_dump_slot **slots,
                              const uint8_t *eligible, size_t n, uint64_t gen, uint8_t *captured) {
    size_t batch[BATCH], m = 0, done = 0;
    for (size_t i = 0; i < n; i++) {
        captured[i] = 0;
        if (!eligible[i]) continue;
        batch[m++] = i;
        if (m == BATCH) {
            done += capture_batch(task_dir, infos, slots, batch, m, gen, captured);
            m = 0;
        }
    }
    if (m > 0) done += capture_batch(task_dir, infos, slots, batch, m, gen, captured);
    return done;
}

int cpprof_complete_copy(cpprof_dump_slot *s, int32_t tid) {
    size_t len = cpprof_proc_copy_stack(s->stack_addr, s->copy, s->full_len);
    if (len <= s->stack_len || cpprof_thread_cpu_ns(tid) != s->cpu_ns) return 0;
    s->stack_len = len;
    cpprof_async_capture_from_copy(s->copy, s->stack_addr, len, &s->async);
    if (s->async.count > 0 && cpprof_thread_cpu_ns(tid) != s->cpu_ns) s->async.count = 0;
    return 1;
}
