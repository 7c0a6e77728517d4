// Reading a blocked thread's stack without sending it anything.
//
// /proc/self/task/TID/syscall gives, for a thread blocked in the kernel, its
// system-call number, arguments, user stack pointer and program counter
// (the instruction after `syscall`); for a thread on a CPU or runnable it
// reads "running". While the thread stays blocked nothing above its stack
// pointer changes, so a copy of [sp, sp + CPPROF_THREAD_STACK_COPY) taken then
// is as good as one its own signal handler would take. The copy is made with
// process_vm_readv, which reports a fault (the thread exited and its stack was
// unmapped) as an error instead of taking it. The thread's CPU clock (the
// kernel's sum of its run time, which moves whenever it runs at all) is read
// before the syscall file and after the copy: equal, the thread did not run in
// between, so the copy is consistent.
//
// The kernel reports only sp and pc: every other register is unknown, and
// remote_unwind.c recovers the callers from the copy (CFI through libc, then
// the frame-pointer record found above the first frame that needs rbp).
//
// Invariants: never called from a signal handler (opens files); never signals,
// stops or traces the thread; reads memory only through process_vm_readv.
#include "internal.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static _Atomic int vm_readv_refused; // seccomp or an old kernel: ENOSYS/EPERM once

int64_t cpprof_thread_cpu_ns(int32_t tid) {
    struct timespec ts;
    clockid_t clock = (clockid_t)((~(uint32_t)tid) << 3) | 6; // MAKE_THREAD_CPUCLOCK(tid, SCHED)
    if (clock_gettime(clock, &ts) != 0) return -1;
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int cpprof_proc_available(void) { return !atomic_load_explicit(&vm_readv_refused, memory_order_relaxed); }

int cpprof_proc_syscall(int task_dir, int32_t tid, cpprof_proc_regs *out) {
    char path[32], buf[256];
    snprintf(path, sizeof path, "%d/syscall", tid);
    int fd = openat(task_dir, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return CPPROF_PROC_GONE;
    ssize_t n;
    do n = read(fd, buf, sizeof buf - 1); while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0) return CPPROF_PROC_GONE;
    buf[n] = 0;
    if (buf[0] == 'r') return CPPROF_PROC_RUNNING; // "running"
    // "nr a0 a1 a2 a3 a4 a5 sp pc", or "-1 sp pc" outside a system call.
    uint64_t v[9];
    int k = 0;
    char *p = buf;
    long nr = strtol(p, &p, 10);
    while (k < 9) {
        while (*p == ' ') p++;
        if (*p == 0 || *p == '\n') break;
        char *next;
        v[k] = strtoull(p, &next, 16);
        if (next == p) break;
        p = next;
        k++;
    }
    if (nr >= 0 && k == 8) { out->sp = v[6]; out->pc = v[7]; }
    else if (nr < 0 && k == 2) { out->sp = v[0]; out->pc = v[1]; }
    else return CPPROF_PROC_GONE;
    out->nr = nr;
    if (out->sp == 0 || out->pc == 0) return CPPROF_PROC_GONE; // a kernel thread or an exiting one
    return CPPROF_PROC_BLOCKED;
}

size_t cpprof_proc_copy_stack(uint64_t sp, uint8_t *dst, size_t cap) {
    if (!cpprof_proc_available()) return 0;
    sp &= ~(uint64_t)7;
    uintptr_t end = 0;
    size_t len = cap;
    if (cpprof_stackmap_region_end((uintptr_t)sp, &end) && end > sp && end - sp < len) len = end - sp;
    // Page-sized pieces: a transfer stops at the first piece that faults,
    // so a stack whose top is not in the map is copied up to its end.
    enum { PIECES = 32 };
    struct iovec local[PIECES], remote[PIECES];
    size_t count = 0, offset = 0;
    while (offset < len && count < PIECES) {
        uint64_t at = sp + offset;
        size_t piece = 4096 - (size_t)(at & 4095);
        if (piece > len - offset) piece = len - offset;
        local[count] = (struct iovec){dst + offset, piece};
        remote[count] = (struct iovec){(void *)(uintptr_t)at, piece};
        count++;
        offset += piece;
    }
    ssize_t r = process_vm_readv(getpid(), local, count, remote, count, 0);
    if (r < 0) {
        if (errno == ENOSYS || errno == EPERM) atomic_store_explicit(&vm_readv_refused, 1, memory_order_relaxed);
        return 0;
    }
    return (size_t)r;
}
