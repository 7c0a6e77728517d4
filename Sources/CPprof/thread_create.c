// Thread-creation stacks. pthread_create is interposed (this definition
// preempts glibc's for the whole process when CPprof is linked into the
// executable): the creator's stack is recorded with a frame-pointer walk and
// handed to the new thread, which files it under its own tid in a fixed-size
// table before running the real start routine. A pthread key destructor
// removes the record when the thread exits; snapshots also drop records of
// threads no longer in /proc/self/task (threads that skipped destructors).
//
// The table is lock-free (a claim flag plus a sequence counter per entry),
// so fork() in the middle of an update cannot leave a lock held.
#include "internal.h"
#include "include/cpprof_threads.h"
#include "include/cpprof_heap.h"
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PROBE_LIMIT 256
enum { TID_FREE = 0, TID_FILLING = -1, TID_RETIRING = -2 };

typedef struct tc_entry {
    _Atomic uint32_t seq;     // odd while the entry is being written
    _Atomic int32_t tid;      // > 0: live record; see TID_* otherwise
    uint32_t depth;
    uint64_t pcs[CPPROF_THREADCREATE_MAX_FRAMES];
} tc_entry;

typedef struct start_block {
    void *(*start)(void *);
    void *arg;
    uint32_t depth;
    uint64_t pcs[CPPROF_THREADCREATE_MAX_FRAMES];
} start_block;

typedef int (*pthread_create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

static _Atomic(pthread_create_fn) real_create;
static _Atomic(tc_entry *) table;
static _Atomic uint64_t st_created, st_dropped;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static int key_ok;

// AddressSanitizer and ThreadSanitizer intercept pthread_create with a weak
// definition in the executable, which ours (strong) preempts; RTLD_NEXT
// would then skip the sanitizer and go straight to glibc, and the sanitizer,
// unaware of the thread, aborts at pthread_join ("Joining already joined
// thread") or reports false races. Their interceptor, when linked in, is
// the next pthread_create.
extern int __interceptor_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *)
    __attribute__((weak));

static pthread_create_fn resolve_real(void) {
    pthread_create_fn f = atomic_load_explicit(&real_create, memory_order_acquire);
    if (f == NULL) {
        f = __interceptor_pthread_create != NULL ? __interceptor_pthread_create
                                                 : (pthread_create_fn)dlsym(RTLD_NEXT, "pthread_create");
        atomic_store_explicit(&real_create, f, memory_order_release);
    }
    return f;
}

static tc_entry *get_table(void) {
    tc_entry *t = atomic_load_explicit(&table, memory_order_acquire);
    if (t != NULL) return t;
    size_t bytes = sizeof(tc_entry) * CPPROF_THREADCREATE_CAPACITY;
    t = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED) return NULL;
    tc_entry *expected = NULL;
    if (!atomic_compare_exchange_strong(&table, &expected, t)) {
        munmap(t, bytes);
        return expected;
    }
    return t;
}

static void remove_entry(tc_entry *e, int32_t tid) {
    int32_t expected = tid;
    if (!atomic_compare_exchange_strong(&e->tid, &expected, TID_RETIRING)) return;
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_acq_rel);
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_release);
    atomic_store_explicit(&e->tid, TID_FREE, memory_order_release);
}

static void on_thread_exit(void *value) {
    remove_entry((tc_entry *)value, (int32_t)syscall(SYS_gettid));
}

static void make_key(void) { key_ok = pthread_key_create(&exit_key, on_thread_exit) == 0; }

static tc_entry *insert(int32_t tid, const uint64_t *pcs, uint32_t depth) {
    tc_entry *t = get_table();
    if (t == NULL) return NULL;
    size_t start = ((uint32_t)tid * 2654435761u) % CPPROF_THREADCREATE_CAPACITY;
    for (size_t probe = 0; probe < PROBE_LIMIT; probe++) {
        tc_entry *e = &t[(start + probe) % CPPROF_THREADCREATE_CAPACITY];
        int32_t expected = TID_FREE;
        if (atomic_load_explicit(&e->tid, memory_order_relaxed) != TID_FREE ||
            !atomic_compare_exchange_strong(&e->tid, &expected, TID_FILLING))
            continue;
        atomic_fetch_add_explicit(&e->seq, 1, memory_order_acq_rel);
        e->depth = depth;
        memcpy(e->pcs, pcs, depth * sizeof *pcs);
        atomic_store_explicit(&e->tid, tid, memory_order_relaxed);
        atomic_fetch_add_explicit(&e->seq, 1, memory_order_release);
        return e;
    }
    atomic_fetch_add_explicit(&st_dropped, 1, memory_order_relaxed);
    return NULL;
}

// Named so that the bottom frame of every thread it starts explains itself.
static void *cpprof_thread_trampoline(void *raw) {
    start_block *b = raw;
    void *(*start)(void *) = b->start;
    void *arg = b->arg;
    cpprof_thread_stack_learn(); // before any user code: no glibc lock is held yet
    tc_entry *e = insert((int32_t)syscall(SYS_gettid), b->pcs, b->depth);
    free(b);
    pthread_once(&key_once, make_key);
    if (e != NULL && key_ok) pthread_setspecific(exit_key, e);
    cpprof_cpu_thread_started(); // sampled from its first instruction, if a CPU profile runs
    // A tail call: the thread's stacks (CPU, heap, dumps) show its own start
    // routine under start_thread, not a frame of the profiler.
#if defined(__clang__)
    __attribute__((musttail))
#endif
    return start(arg);
}

__attribute__((noinline)) int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                                             void *(*start)(void *), void *arg) {
    pthread_create_fn real = resolve_real();
    if (real == NULL) return EAGAIN;
    cpprof_heap_own_enter(); // the profiler's memory, freed at thread start
    start_block *b = malloc(sizeof *b);
    cpprof_heap_own_leave();
    if (b == NULL) return real(thread, attr, start, arg);
    b->start = start;
    b->arg = arg;
    // pcs[0] is the return address into the creator, then its callers.
    uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
    uintptr_t ret = (uintptr_t)__builtin_return_address(0);
    uintptr_t top = 0;
    uintptr_t caller_fp = *(const uintptr_t *)fp;
    b->depth = cpprof_thread_stack_end(fp, &top)
        ? cpprof_walk_frames(ret, caller_fp, fp + 16, top, b->pcs, CPPROF_THREADCREATE_MAX_FRAMES)
        : cpprof_walk_frames(ret, 0, 0, 0, b->pcs, 1);
    int r = real(thread, attr, cpprof_thread_trampoline, b);
    if (r != 0) free(b);
    else atomic_fetch_add_explicit(&st_created, 1, memory_order_relaxed);
    return r;
}

static int compare_tid(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

size_t cpprof_threadcreate_snapshot(cpprof_threadcreate_record *out, size_t max,
                                    cpprof_threadcreate_stats *stats) {
    tc_entry *t = atomic_load_explicit(&table, memory_order_acquire);
    size_t found = 0, cap = 0;
    cpprof_threadcreate_record *all = NULL;
    uint32_t *where = NULL; // table index of each record in `all`
    // 1. Consistent copies of every record.
    for (size_t i = 0; t != NULL && i < CPPROF_THREADCREATE_CAPACITY; i++) {
        tc_entry *e = &t[i];
        for (int attempt = 0; attempt < 4; attempt++) {
            uint32_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
            if (s1 & 1) continue;
            int32_t tid = atomic_load_explicit(&e->tid, memory_order_acquire);
            if (tid <= 0) break;
            cpprof_threadcreate_record rec;
            rec.tid = tid;
            rec.depth = e->depth;
            if (rec.depth > CPPROF_THREADCREATE_MAX_FRAMES) rec.depth = CPPROF_THREADCREATE_MAX_FRAMES;
            memcpy(rec.pcs, e->pcs, rec.depth * sizeof rec.pcs[0]);
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&e->seq, memory_order_relaxed) != s1) continue;
            if (found == cap) {
                size_t n = cap ? cap * 2 : 64;
                cpprof_threadcreate_record *bigger = realloc(all, n * sizeof *all);
                if (bigger == NULL) break;
                all = bigger;
                uint32_t *bigger_where = realloc(where, n * sizeof *where);
                if (bigger_where == NULL) break;
                where = bigger_where;
                cap = n;
            }
            where[found] = (uint32_t)i;
            all[found++] = rec;
            break;
        }
    }
    // 2. Threads alive now (listed after the copies: a record seen above
    //    belongs to a thread that existed then, so absence here means exit).
    int32_t *live = NULL;
    size_t nlive = 0, live_cap = 0;
    DIR *dir = opendir("/proc/self/task");
    struct dirent *d;
    while (dir != NULL && (d = readdir(dir)) != NULL) {
        if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
        if (nlive == live_cap) {
            size_t n = live_cap ? live_cap * 2 : 64;
            int32_t *bigger = realloc(live, n * sizeof *live);
            if (bigger == NULL) break;
            live = bigger;
            live_cap = n;
        }
        live[nlive++] = (int32_t)strtol(d->d_name, NULL, 10);
    }
    if (dir != NULL) closedir(dir);
    qsort(live, nlive, sizeof *live, compare_tid);
    // 3. Keep the live ones, retire the others.
    size_t kept = 0;
    for (size_t i = 0; i < found; i++) {
        int32_t tid = all[i].tid;
        if (live == NULL || bsearch(&tid, live, nlive, sizeof *live, compare_tid) != NULL) {
            if (kept < max && out != NULL) out[kept] = all[i];
            kept++;
        } else {
            remove_entry(&t[where[i]], tid); // no-op if the entry changed meanwhile
        }
    }
    free(all);
    free(where);
    free(live);
    if (stats != NULL) {
        stats->created = atomic_load(&st_created);
        stats->dropped = atomic_load(&st_dropped);
        stats->live = kept;
    }
    return kept;
}
