// What /proc says about this process's threads: the list, names, states and
// signal masks, and a blocked thread's stack read without sending it anything.
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
// Invariants: never called from a signal handler (opens files); used under
// the dump lock; never signals, stops or traces the thread; reads memory
// only through process_vm_readv; keeps at most an eighth of the descriptor
// limit open (see kept-open syscall files), and only while asked to.
#include "internal.h"
#include "include/cpprof_threads.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

// --- kept-open syscall files ---------------------------------------------------
//
// Opening TID/syscall costs about three times as much as reading it (9-11 us
// against 3 us of CPU here), and a wall-clock profile reads ~2000 a second.
// While one runs (cpprof_proc_keep_files), the files stay open, at most
// `kept_cap` of them: a direct-mapped table by tid, an eviction closes the
// file. The cap is an eighth of the soft RLIMIT_NOFILE, at most 256, so the
// application keeps almost all of its descriptors. A descriptor names the
// thread it was opened for: once that thread exits, reads fail (never
// another thread's file), and the entry is closed.

#define KEPT_MAX 256
typedef struct kept_file { int32_t tid; int fd; } kept_file;
static kept_file kept[KEPT_MAX];
static size_t kept_cap; // 0: files are not kept
static int kept_task_dir = -1; // /proc/self/task, open while files are kept

void cpprof_proc_keep_files(int keep) {
    for (size_t i = 0; i < kept_cap; i++)
        if (kept[i].fd >= 0) close(kept[i].fd);
    kept_cap = 0;
    if (kept_task_dir >= 0) close(kept_task_dir);
    kept_task_dir = -1;
    if (!keep) return;
    // Opening /proc/self/task walks the path from /proc each time (a tick's
    // largest single system call after the captures): kept open too.
    kept_task_dir = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct rlimit limit;
    size_t cap = KEPT_MAX;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur / 8 < cap)
        cap = (size_t)(limit.rlim_cur / 8);
    for (size_t i = 0; i < cap; i++) kept[i] = (kept_file){0, -1};
    kept_cap = cap;
}

void cpprof_proc_forget_files_after_fork(void) {
    // The parent's threads' files: closed, never read (they are the parent's).
    cpprof_proc_keep_files(0);
}

int cpprof_proc_open_task_dir(void) {
    if (kept_task_dir >= 0) return kept_task_dir;
    return open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

void cpprof_proc_close_task_dir(int fd) {
    if (fd >= 0 && fd != kept_task_dir) close(fd);
}

// Reads TID/syscall into buf; the byte count, or -1.
static ssize_t read_syscall_file(int task_dir, int32_t tid, char *buf, size_t cap) {
    kept_file *k = kept_cap ? &kept[(uint32_t)tid % kept_cap] : NULL;
    ssize_t n;
    if (k != NULL && k->fd >= 0 && k->tid == tid) {
        do n = pread(k->fd, buf, cap, 0); while (n < 0 && errno == EINTR);
        if (n > 0) return n;
        close(k->fd); // the thread is gone
        k->fd = -1;
        return -1;
    }
    char path[32];
    snprintf(path, sizeof path, "%d/syscall", tid);
    int fd = openat(task_dir, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    do n = read(fd, buf, cap); while (n < 0 && errno == EINTR);
    if (k != NULL && n > 0) {
        if (k->fd >= 0) close(k->fd);
        *k = (kept_file){tid, fd};
    } else {
        close(fd);
    }
    return n;
}

int cpprof_proc_syscall(int task_dir, int32_t tid, cpprof_proc_regs *out) {
    char buf[256];
    ssize_t n = read_syscall_file(task_dir, tid, buf, sizeof buf - 1);
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

size_t cpprof_proc_stack_len(uint64_t sp, size_t cap) {
    sp &= ~(uint64_t)7;
    uintptr_t end = 0;
    if (cpprof_stackmap_region_end((uintptr_t)sp, &end) && end > sp && end - sp < cap) return end - sp;
    return cap;
}

size_t cpprof_proc_copy_stack(uint64_t sp, uint8_t *dst, size_t cap) {
    if (!cpprof_proc_available()) return 0;
    size_t len = cpprof_proc_stack_len(sp, cap);
    sp &= ~(uint64_t)7;
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

// --- listing, names, states, signal masks ----------------------------------

static ssize_t read_small_file(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    return (ssize_t)n;
}

int cpprof_proc_list_tasks(int32_t **out, size_t *count) {
    DIR *dir = opendir("/proc/self/task");
    if (dir == NULL) return errno ? errno : EIO;
    size_t n = 0, cap = 64;
    int32_t *tids = malloc(cap * sizeof *tids);
    struct dirent *e;
    while (tids != NULL && (e = readdir(dir)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        if (n == cap) {
            int32_t *bigger = realloc(tids, cap * 2 * sizeof *tids);
            if (bigger == NULL) { free(tids); tids = NULL; break; }
            tids = bigger;
            cap *= 2;
        }
        tids[n++] = (int32_t)strtol(e->d_name, NULL, 10);
    }
    closedir(dir);
    if (tids == NULL) return ENOMEM;
    *out = tids;
    *count = n;
    return 0;
}

// Name, state letter and CPU time from /proc/self/task/TID/stat.
void cpprof_proc_read_stat(int32_t tid, cpprof_thread_info *info, long ticks_per_second) {
    char path[64], buf[1024];
    info->state = '?';
    info->cpu_ns = -1;
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    if (read_small_file(path, buf, sizeof buf) <= 0) return;
    char *open_paren = strchr(buf, '(');
    char *close_paren = strrchr(buf, ')'); // the name may itself contain ')'
    if (open_paren == NULL || close_paren == NULL || close_paren < open_paren) return;
    size_t len = (size_t)(close_paren - open_paren - 1);
    if (len > sizeof info->name - 1) len = sizeof info->name - 1;
    memcpy(info->name, open_paren + 1, len);
    info->name[len] = 0;
    char *p = close_paren + 1;
    while (*p == ' ') p++;
    if (*p == 0) return;
    info->state = *p++;
    // Fields after the state: ppid pgrp session tty_nr tpgid flags minflt
    // cminflt majflt cmajflt utime stime (fields 4..15 of proc(5)).
    unsigned long long fields[12];
    int k = 0;
    while (k < 12) {
        while (*p == ' ') p++;
        if (*p == 0) break;
        char *next;
        fields[k++] = strtoull(p, &next, 10);
        if (next == p) break;
        p = next;
    }
    if (k == 12 && ticks_per_second > 0)
        info->cpu_ns = (int64_t)((fields[10] + fields[11]) * (1000000000ULL / (unsigned long long)ticks_per_second));
    // The same sum, to the nanosecond, from the thread's CPU clock.
    int64_t cpu = cpprof_thread_cpu_ns(tid);
    if (cpu >= 0) info->cpu_ns = cpu;
}

// Thread-directed pending and blocked signal sets from .../status.
int cpprof_proc_signal_sets(int32_t tid, uint64_t *pending, uint64_t *blocked) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
    if (read_small_file(path, buf, sizeof buf) <= 0) return 0;
    char *p = strstr(buf, "\nSigPnd:");
    char *b = strstr(buf, "\nSigBlk:");
    if (p == NULL || b == NULL) return 0;
    *pending = strtoull(p + 8, NULL, 16);
    *blocked = strtoull(b + 8, NULL, 16);
    return 1;
}

