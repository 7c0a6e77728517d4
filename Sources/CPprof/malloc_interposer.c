// Malloc interposition. Linked statically into the executable, these
// definitions come first in symbol lookup, so every allocation of the process
// (Swift runtime, Foundation, Dispatch, libc itself) goes through them. Each
// one forwards to the next allocator in lookup order, found with
// dlsym(RTLD_NEXT): glibc's, or a preloaded jemalloc/tcmalloc, so memory
// always returns to the allocator that gave it. Then, on the sampler's
// countdown, the allocation is sampled (heap_sampler.c); frees and reallocs
// of sampled blocks are counted.
//
// Fast path: whether an allocation is sampled is decided from the requested
// size BEFORE the call (the per-thread countdown), so an allocation that is
// not sampled, and a free of a block that is not, is a tail call to the next
// allocator: no frame, no saved registers, no second return. Only a sampled
// allocation goes through a function that calls the allocator and then
// records the block; it is entered by a tail call too, so its frame stands
// where the interposed function's would, and the stack it records starts at
// the application's call.
//
// Bootstrap: dlsym may allocate while we resolve. Those requests (and any
// from other threads racing the resolution) are served from a static arena
// that is never reused; free() recognises and ignores its pointers.
//
// Invariants the fast paths rely on (no check of the resolution state there):
// * Until resolution, the next allocator's malloc, free, calloc, realloc,
//   posix_memalign and malloc_usable_size are our own slow functions, which handle "not resolved
//   yet"; resolution replaces them (each an atomic word) before it publishes
//   READY, so a fast path calls either a slow function or the real allocator.
// * Every arena block sets the pin bit of its live-table occupancy byte, so
//   the live-table filter that free and realloc run anyway also sends arena
//   pointers to the slow path (a pinned bucket only costs its other
//   addresses a slow free).
#include "heap_internal.h"

#ifdef CPPROF_HEAP_PROFILING

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
#define SLOW __attribute__((noinline, cold))
// A guaranteed tail call where the compiler offers one (clang: always).
#if defined(__has_attribute)
#if __has_attribute(musttail)
#define TAIL __attribute__((musttail))
#endif
#endif
#ifndef TAIL
#define TAIL
#endif
#define CALLER ((uintptr_t)__builtin_return_address(0))
#define FRAME ((uintptr_t)__builtin_frame_address(0))
#define PAGE 4096u

#ifdef __GLIBC__
// glibc's own entry points, used if dlsym cannot find the next allocator.
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
#endif

typedef void *(*malloc_type)(size_t);
typedef void (*free_type)(void *);
typedef void *(*calloc_type)(size_t, size_t);
typedef void *(*realloc_type)(void *, size_t);
typedef void *(*reallocarray_type)(void *, size_t, size_t);
typedef int (*posix_memalign_type)(void **, size_t, size_t);
typedef void *(*aligned_type)(size_t, size_t);
typedef size_t (*usable_size_type)(void *);

// The next allocator's functions: X(field, type of the function pointer).
#define ALLOCATOR_FIELDS(X)                          \
    X(malloc_fn, malloc_type)                        \
    X(free_fn, free_type)                            \
    X(calloc_fn, calloc_type)                        \
    X(realloc_fn, realloc_type)                      \
    X(reallocarray_fn, reallocarray_type)            \
    X(posix_memalign_fn, posix_memalign_type)        \
    X(aligned_alloc_fn, aligned_type)                \
    X(memalign_fn, aligned_type)                     \
    X(valloc_fn, malloc_type)                        \
    X(pvalloc_fn, malloc_type)                       \
    X(usable_size_fn, usable_size_type)

#define PLAIN_FIELD(name, type) type name;
#define ATOMIC_FIELD(name, type) _Atomic(type) name;
typedef struct allocator { ALLOCATOR_FIELDS(PLAIN_FIELD) } allocator;
typedef struct shared_allocator { ALLOCATOR_FIELDS(ATOMIC_FIELD) } shared_allocator;

enum { UNRESOLVED = 0, RESOLVING = 1, READY = 2 };

static void *malloc_slow(size_t size);
static void free_slow(void *ptr);
static void *calloc_slow(size_t count, size_t size);
static void *realloc_slow(void *ptr, size_t size);
static int posix_memalign_slow(void **out, size_t align, size_t size);
static size_t usable_size_slow(void *ptr);

// Written once by resolve(), before state becomes READY; until then the
// fast paths' functions are the slow ones (see the top of this file).
static shared_allocator next = {
    .malloc_fn = malloc_slow, .free_fn = free_slow, .calloc_fn = calloc_slow, .realloc_fn = realloc_slow,
    .posix_memalign_fn = posix_memalign_slow, .usable_size_fn = usable_size_slow};
// The next allocator's `name` function (a relaxed load: a plain move).
#define NEXT(name) atomic_load_explicit(&next.name, memory_order_relaxed)
static _Atomic int state;
static CPPROF_TLS uint8_t resolving; // this thread is inside dlsym

// --- bootstrap arena ---

#define ARENA_BYTES (256u * 1024u)
static _Alignas(PAGE) unsigned char arena[ARENA_BYTES];
static _Atomic size_t arena_used;

static inline int in_arena(const void *p) {
    return (uintptr_t)p - (uintptr_t)arena < ARENA_BYTES;
}

// Bump allocation; a size_t header before each block holds its size.
static void *arena_alloc(size_t size, size_t align) {
    if (align < 16) align = 16;
    if (align > PAGE || (align & (align - 1)) != 0 || size > ARENA_BYTES) return NULL;
    size_t old = atomic_load(&arena_used);
    for (;;) {
        size_t start = (old + sizeof(size_t) + align - 1) & ~(align - 1);
        if (start + size > ARENA_BYTES) return NULL;
        if (atomic_compare_exchange_weak(&arena_used, &old, start + size)) {
            ((size_t *)(void *)(arena + start))[-1] = size;
            atomic_fetch_or_explicit(&cpprof_heap_occupancy[cpprof_heap_bucket_of((uintptr_t)(arena + start))],
                                     CPPROF_HEAP_OCCUPANCY_PIN, memory_order_relaxed);
            return arena + start; // zero: the arena is never reused
        }
    }
}

static inline size_t arena_size(const void *p) { return ((const size_t *)p)[-1]; }

uint64_t cpprof_heap_bootstrap_used(void) { return atomic_load(&arena_used); }

// --- resolution ---

static void *lookup(const char *name, void *ours) {
    void *f = dlsym(RTLD_NEXT, name);
    return f == ours ? NULL : f;
}

static void resolve(void) {
    int expected = UNRESOLVED;
    if (!atomic_compare_exchange_strong(&state, &expected, RESOLVING)) return;
    resolving = 1;
    allocator a = {0};
    a.malloc_fn = (void *(*)(size_t))lookup("malloc", (void *)malloc);
    a.free_fn = (void (*)(void *))lookup("free", (void *)free);
    if (a.malloc_fn != NULL && a.free_fn != NULL) {
        a.calloc_fn = (void *(*)(size_t, size_t))lookup("calloc", (void *)calloc);
        a.realloc_fn = (void *(*)(void *, size_t))lookup("realloc", (void *)realloc);
        a.reallocarray_fn =
            (void *(*)(void *, size_t, size_t))lookup("reallocarray", (void *)reallocarray);
        a.posix_memalign_fn =
            (int (*)(void **, size_t, size_t))lookup("posix_memalign", (void *)posix_memalign);
        a.aligned_alloc_fn = (void *(*)(size_t, size_t))lookup("aligned_alloc", (void *)aligned_alloc);
        a.memalign_fn = (void *(*)(size_t, size_t))lookup("memalign", (void *)memalign);
        a.valloc_fn = (void *(*)(size_t))lookup("valloc", (void *)valloc);
        a.pvalloc_fn = (void *(*)(size_t))lookup("pvalloc", (void *)pvalloc);
        a.usable_size_fn = (size_t (*)(void *))lookup("malloc_usable_size", (void *)malloc_usable_size);
    }
#ifdef __GLIBC__
    else { // no dynamic loader to ask (or nothing after us): glibc's malloc
        a = (allocator){0};
        a.malloc_fn = __libc_malloc;
        a.free_fn = __libc_free;
        a.calloc_fn = __libc_calloc;
        a.realloc_fn = __libc_realloc;
        a.memalign_fn = __libc_memalign;
        a.valloc_fn = __libc_valloc;
        a.pvalloc_fn = __libc_pvalloc;
        a.usable_size_fn = (size_t (*)(void *))dlvsym(RTLD_NEXT, "malloc_usable_size", "GLIBC_2.2.5");
    }
#endif
#define PUBLISH_FIELD(name, type) atomic_store_explicit(&next.name, a.name, memory_order_relaxed);
    ALLOCATOR_FIELDS(PUBLISH_FIELD)
    resolving = 0;
    atomic_store_explicit(&state, READY, memory_order_release);
}

static inline int ready(void) {
    return atomic_load_explicit(&state, memory_order_acquire) == READY;
}

// Before the allocator is known. Returns 1 with *out set if it served the
// request from the arena, 0 if the caller may now use `next`.
static __attribute__((noinline)) int bootstrap(void **out, size_t size, size_t align) {
    for (;;) {
        if (!resolving) resolve(); // returns at once if another thread is at it
        if (ready()) return 0;
        void *p = arena_alloc(size, align);
        if (p != NULL || resolving) {
            if (p == NULL) errno = ENOMEM;
            *out = p;
            return 1;
        }
        sched_yield(); // arena exhausted: the resolving thread is nearly done
    }
}

__attribute__((constructor(101))) static void resolve_early(void) { resolve(); }

int cpprof_heap_is_interposed(void) {
    return dlsym(RTLD_DEFAULT, "malloc") == (void *)malloc &&
           dlsym(RTLD_DEFAULT, "free") == (void *)free;
}

// --- the interposed functions ---

static inline void after_alloc(void *p, size_t size, uintptr_t ret, uintptr_t frame) {
    if (p != NULL) cpprof_heap_record_alloc(p, size, ret, frame);
}

// Everything but the fast path (the countdown ran out, a live sample is
// freed or moved, the allocator is not known yet) goes to a slow function
// with the interposed function's signature, by a tail call, so CALLER and
// FRAME there are those the interposed function would have had. The fast
// path has not touched the countdown: the slow function decides.

static SLOW void *malloc_slow(size_t size) {
    void *p;
    if (__builtin_expect(!ready(), 0) && bootstrap(&p, size, 16)) return p;
    int sample = cpprof_heap_should_sample(size);
    p = NEXT(malloc_fn)(size);
    if (sample) after_alloc(p, size, CALLER, FRAME);
    return p;
}

EXPORT void *malloc(size_t size) {
    if (__builtin_expect(cpprof_heap_skip_sample(size), 1)) TAIL return NEXT(malloc_fn)(size);
    TAIL return malloc_slow(size);
}

static SLOW void free_slow(void *ptr) {
    if (ptr == NULL || in_arena(ptr)) return;
    if (cpprof_heap_maybe_live(ptr)) cpprof_heap_record_free(ptr);
    // Not READY means nobody got memory from `next` yet: ptr is not ours to free.
    if (__builtin_expect(ready(), 1)) NEXT(free_fn)(ptr);
}

EXPORT void free(void *ptr) {
    // NULL goes to the next allocator's free, which ignores it; arena blocks
    // are pinned in the filter.
    if (__builtin_expect(!cpprof_heap_maybe_live(ptr), 1)) TAIL return NEXT(free_fn)(ptr);
    TAIL return free_slow(ptr);
}

static SLOW void *calloc_slow(size_t count, size_t size) {
    size_t total;
    void *p;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (__builtin_expect(!ready(), 0) && bootstrap(&p, total, 16)) return p;
    int sample = cpprof_heap_should_sample(total);
    p = NEXT(calloc_fn)(count, size);
    if (sample) after_alloc(p, total, CALLER, FRAME);
    return p;
}

EXPORT void *calloc(size_t count, size_t size) {
    size_t total;
    // An overflowing product goes to the slow path, which fails it.
    if (__builtin_expect(!__builtin_mul_overflow(count, size, &total) && cpprof_heap_skip_sample(total), 1))
        TAIL return NEXT(calloc_fn)(count, size);
    TAIL return calloc_slow(count, size);
}

// realloc and reallocarray off the fast path. A sampled block is taken out
// of the live table before the call (afterwards its address may be handed to
// another thread) and put back if the call fails and leaves it allocated.
static inline __attribute__((always_inline)) void *reallocate(void *ptr, size_t count, size_t elem, int array,
                                                              uintptr_t ret, uintptr_t frame) {
    size_t size;
    if (__builtin_mul_overflow(count, elem, &size)) {
        errno = ENOMEM;
        return NULL;
    }
    if (ptr == NULL || in_arena(ptr)) {
        void *q;
        if (!(__builtin_expect(!ready(), 0) && bootstrap(&q, size, 16))) {
            int sample = ptr == NULL && cpprof_heap_should_sample(size);
            q = NEXT(malloc_fn)(size);
            if (sample) after_alloc(q, size, ret, frame);
        }
        if (q != NULL && ptr != NULL) {
            size_t old = arena_size(ptr);
            memcpy(q, ptr, old < size ? old : size);
        }
        return q;
    }
    if (__builtin_expect(!ready(), 0)) { // cannot happen: ptr came from `next`
        errno = ENOMEM;
        return NULL;
    }
    int sample = cpprof_heap_should_sample(size);
    cpprof_heap_held held;
    int sampled = cpprof_heap_hold(ptr, &held);
    void *q = array && NEXT(reallocarray_fn) != NULL ? NEXT(reallocarray_fn)(ptr, count, elem)
                                                     : NEXT(realloc_fn)(ptr, size);
    if (q == NULL && size != 0) { // failed: ptr is still allocated
        if (sampled) cpprof_heap_restore_held(ptr, &held);
        return NULL;
    }
    if (sampled) cpprof_heap_release_held(&held);
    if (sample) after_alloc(q, size, ret, frame);
    return q;
}

// realloc's fast path: the old block is neither in the arena nor a live
// sample (one filter: arena blocks are pinned in it), and the new one is not
// sampled (tested last: it runs the countdown). Before resolution the next
// realloc is realloc_slow.
static inline __attribute__((always_inline)) int realloc_fast(void *ptr, size_t size) {
    return ptr != NULL && !cpprof_heap_maybe_live(ptr) && cpprof_heap_skip_sample(size);
}

static SLOW void *realloc_slow(void *ptr, size_t size) {
    return reallocate(ptr, size, 1, 0, CALLER, FRAME);
}

EXPORT void *realloc(void *ptr, size_t size) {
    if (__builtin_expect(realloc_fast(ptr, size), 1)) TAIL return NEXT(realloc_fn)(ptr, size);
    TAIL return realloc_slow(ptr, size);
}

static SLOW void *reallocarray_slow(void *ptr, size_t count, size_t size) {
    return reallocate(ptr, count, size, 1, CALLER, FRAME);
}

EXPORT void *reallocarray(void *ptr, size_t count, size_t size) {
    size_t total;
    reallocarray_type next_reallocarray = NEXT(reallocarray_fn);
    if (!__builtin_mul_overflow(count, size, &total) && next_reallocarray != NULL && realloc_fast(ptr, total))
        TAIL return next_reallocarray(ptr, count, size);
    TAIL return reallocarray_slow(ptr, count, size);
}

// memalign-like entry points (rarer: no separate fast path): `kind` picks
// the next allocator's function. Inlined, like reallocate, so the hook's own
// frame is the one recorded.
enum { K_MEMALIGN, K_ALIGNED_ALLOC, K_VALLOC, K_PVALLOC };

static inline __attribute__((always_inline)) void *aligned(int kind, size_t align, size_t size, uintptr_t ret, uintptr_t frame) {
    void *p;
    if (__builtin_expect(!ready(), 0)) {
        size_t want = kind == K_PVALLOC ? ((size + PAGE - 1) & ~(size_t)(PAGE - 1)) : size;
        if (bootstrap(&p, want, align)) return p;
    }
    switch (kind) {
    case K_ALIGNED_ALLOC:
        if (NEXT(aligned_alloc_fn) != NULL) { p = NEXT(aligned_alloc_fn)(align, size); break; }
        /* fall through */
    case K_MEMALIGN:
        p = NEXT(memalign_fn) != NULL ? NEXT(memalign_fn)(align, size) : NULL;
        break;
    case K_VALLOC:
        p = NEXT(valloc_fn) != NULL ? NEXT(valloc_fn)(size) : NULL;
        break;
    default:
        p = NEXT(pvalloc_fn) != NULL ? NEXT(pvalloc_fn)(size) : NULL;
        break;
    }
    if (cpprof_heap_should_sample(size)) after_alloc(p, size, ret, frame);
    return p;
}

EXPORT void *memalign(size_t align, size_t size) {
    return aligned(K_MEMALIGN, align, size, CALLER, FRAME);
}

EXPORT void *aligned_alloc(size_t align, size_t size) {
    return aligned(K_ALIGNED_ALLOC, align, size, CALLER, FRAME);
}

EXPORT void *valloc(size_t size) { return aligned(K_VALLOC, PAGE, size, CALLER, FRAME); }

EXPORT void *pvalloc(size_t size) { return aligned(K_PVALLOC, PAGE, size, CALLER, FRAME); }

// Swift's `allocate` at any alignment comes here: the same fast path as malloc.
static SLOW int posix_memalign_slow(void **out, size_t align, size_t size) {
    void *p;
    if (__builtin_expect(!ready(), 0) && bootstrap(&p, size, align)) {
        if (p == NULL) return ENOMEM;
        *out = p;
        return 0;
    }
    int sample = cpprof_heap_should_sample(size);
    int err;
    if (NEXT(posix_memalign_fn) != NULL) {
        err = NEXT(posix_memalign_fn)(out, align, size);
    } else {
        p = NEXT(memalign_fn) != NULL ? NEXT(memalign_fn)(align, size) : NULL;
        err = p != NULL ? 0 : ENOMEM;
        if (p != NULL) *out = p;
    }
    if (err == 0 && sample) after_alloc(*out, size, CALLER, FRAME);
    return err;
}

EXPORT int posix_memalign(void **out, size_t align, size_t size) {
    if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
    posix_memalign_type next_posix_memalign = NEXT(posix_memalign_fn);
    if (__builtin_expect(next_posix_memalign != NULL && cpprof_heap_skip_sample(size), 1))
        TAIL return next_posix_memalign(out, align, size);
    TAIL return posix_memalign_slow(out, align, size);
}

static SLOW size_t usable_size_slow(void *ptr) {
    if (ptr == NULL) return 0;
    if (in_arena(ptr)) return arena_size(ptr);
    usable_size_type f = NEXT(usable_size_fn);
    if (!ready() || f == NULL) return 0;
    TAIL return f(ptr);
}

// Swift asks for the capacity of arrays it allocates: no resolution check
// here either (until resolution the next allocator's function is
// usable_size_slow); NULL goes to the next allocator, which answers 0.
EXPORT size_t malloc_usable_size(void *ptr) {
    usable_size_type f = NEXT(usable_size_fn);
    if (__builtin_expect(f != NULL && !in_arena(ptr), 1)) TAIL return f(ptr);
    TAIL return usable_size_slow(ptr);
}

#endif // CPPROF_HEAP_PROFILING
