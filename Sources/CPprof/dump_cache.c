// The stacks of the previous dump (or wall-clock tick), by thread, for the
// threads that have not run since. A thread's CPU clock (the kernel's sum of
// its run time) moves whenever it runs at all; a thread whose clock reads the
// same as when its stack was captured has not executed a single instruction
// since, so its registers and stack, its name (unless another thread renamed
// it) and its state are what they were. The next dump reuses the entry and
// neither reads /proc nor signals nor unwinds that thread: an idle thread
// costs one clock_gettime.
//
// Invariants: used under the dump lock only (thread_dump.c); the key is the
// CPU time read *before* the capture, so a thread that ran during or after
// it never matches. A new thread that reuses an exited thread's tid would
// have to have run for exactly as many nanoseconds to match.
#include "internal.h"
#include "include/cpprof_threads.h"
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_MAX 4096 // threads kept (about 1.1 KiB each); more are captured afresh

static cpprof_thread_info *entries; // sorted by tid
static int32_t *entry_tids;         // entries[i].tid: searched instead of the 1 KiB entries
static size_t entry_count;

static int by_tid(const void *a, const void *b) {
    int32_t x = ((const cpprof_thread_info *)a)->tid, y = ((const cpprof_thread_info *)b)->tid;
    return x < y ? -1 : x > y;
}

// Among the first `count` entries (sorted by tid).
// The search reads entry_tids, a few cache lines, not one entry's line per
// step: a wall-clock tick looks up every listed thread.
static const cpprof_thread_info *find_in(int32_t tid, size_t count) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (entry_tids[mid] < tid) lo = mid + 1;
        else hi = mid;
    }
    return lo < count && entry_tids[lo] == tid ? &entries[lo] : NULL;
}

// Frames past depth are never read (lookups copy up to depth only).
static void keep(cpprof_thread_info *e, const cpprof_thread_info *t) {
    uint32_t depth = t->depth < CPPROF_THREAD_MAX_FRAMES ? t->depth : CPPROF_THREAD_MAX_FRAMES;
    memcpy(e, t, offsetof(cpprof_thread_info, pcs) + depth * sizeof t->pcs[0]);
}

int cpprof_dump_cache_lookup(int32_t tid, int64_t cpu_ns, cpprof_thread_info *out) {
    const cpprof_thread_info *e = find_in(tid, entry_count);
    if (e == NULL) return CPPROF_CACHE_UNKNOWN;
    if (cpu_ns < 0 || e->cpu_ns != cpu_ns) {
        // Its name and state as last read, for callers that do not need them fresh.
        memcpy(out->name, e->name, sizeof out->name);
        out->state = e->state;
        return CPPROF_CACHE_CHANGED;
    }
    // The frames it has, not the whole array (out is zeroed): a wall-clock
    // tick copies ~80 of these.
    memcpy(out, e, offsetof(cpprof_thread_info, pcs) + e->depth * sizeof e->pcs[0]);
    out->unchanged = 1;
    return CPPROF_CACHE_HIT;
}

static int worth_keeping(const cpprof_thread_info *t) {
    if (t->depth == 0 || t->cpu_ns < 0) return 0;
    return t->status == CPPROF_THREAD_ANSWERED || t->status == CPPROF_THREAD_READ_BLOCKED;
}

void cpprof_dump_cache_store(const cpprof_thread_info *infos, size_t n, int whole_process) {
    if (entries == NULL) {
        entries = malloc(CACHE_MAX * sizeof *entries);
        entry_tids = malloc(CACHE_MAX * sizeof *entry_tids);
        if (entries == NULL || entry_tids == NULL) {
            free(entries);
            free(entry_tids);
            entries = NULL;
            entry_tids = NULL;
            return;
        }
    }
    if (whole_process) {
        // Every live thread was listed: forget the ones that are gone.
        size_t kept = 0;
        for (size_t i = 0; i < n && kept < CACHE_MAX; i++)
            if (worth_keeping(&infos[i])) keep(&entries[kept++], &infos[i]);
        entry_count = kept;
    } else {
        // Some threads only (a wall-clock tick): update those, keep the rest.
        size_t known = entry_count;
        int appended = 0;
        for (size_t i = 0; i < n; i++) {
            if (infos[i].unchanged) continue;
            cpprof_thread_info *e = (cpprof_thread_info *)find_in(infos[i].tid, known);
            if (e != NULL) {
                if (worth_keeping(&infos[i])) keep(e, &infos[i]);
                else e->cpu_ns = -1; // never matches again
            } else if (worth_keeping(&infos[i]) && entry_count < CACHE_MAX) {
                entry_tids[entry_count] = infos[i].tid;
                keep(&entries[entry_count++], &infos[i]);
                appended = 1;
            }
        }
        if (!appended) return; // still sorted: a tick of threads all seen before
    }
    qsort(entries, entry_count, sizeof *entries, by_tid);
    for (size_t i = 0; i < entry_count; i++) entry_tids[i] = entries[i].tid;
}

void cpprof_dump_cache_clear(void) { entry_count = 0; }
