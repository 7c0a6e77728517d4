// A snapshot of the process's writable memory regions (thread stacks are
// among them) and of its executable ones (async_walk.c checks that a resume
// function lies in code), published for the signal handler with an RCU-like scheme: the
// handler counts itself in as a reader, the refresher swaps the pointer and
// frees the old snapshot only once no reader is left. If one lingers, the
// old snapshot is leaked (and counted) rather than freed under it.
#include "internal.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct region { uintptr_t start, end; } region;
// regions[0, count): writable; regions[count, count + code_count): executable.
// Each part sorted by address, as /proc/self/maps lists them.
typedef struct stackmap { size_t mapped_bytes; size_t count, code_count; region regions[]; } stackmap;

static _Atomic(stackmap *) current;
static _Atomic uint32_t readers;
_Atomic uint64_t cpprof_stackmap_leaks;

static char *read_maps(size_t *len) {
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (n + 4096 > cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) { free(buf); buf = NULL; break; }
            buf = bigger; cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

static void release(stackmap *old) {
    if (old == NULL) return;
    // Wait (bounded) for handlers that may still read the old snapshot.
    for (int i = 0; i < 10000; i++) {
        if (atomic_load(&readers) == 0) { munmap(old, old->mapped_bytes); return; }
        sched_yield();
    }
    atomic_fetch_add(&cpprof_stackmap_leaks, 1);
}

// Appends to `out` the regions whose permission `perm` ('w' or 'x') is set;
// returns how many. Never joined with a neighbour: a walk must stay inside one
// mapping, since the neighbour may be unmapped after the snapshot.
static size_t collect(const char *text, size_t len, char perm, region *out) {
    size_t n = 0;
    const char *line = text;
    while (line < text + len) {
        const char *nl = memchr(line, '\n', (size_t)(text + len - line));
        char *p = NULL;
        uintptr_t start = strtoull(line, &p, 16);
        if (*p == '-') {
            uintptr_t end = strtoull(p + 1, &p, 16);
            // "start-end rwxp ...": p[1..3] are r, w, x.
            int set = perm == 'w' ? (p[1] == 'r' && p[2] == 'w') : (p[1] == 'r' && p[2] != 0 && p[3] == 'x');
            if (*p == ' ' && set && end > start) out[n++] = (region){start, end};
        }
        if (!nl) break;
        line = nl + 1;
    }
    return n;
}

int cpprof_stackmap_refresh(void) {
    size_t len = 0;
    char *text = read_maps(&len);
    if (text == NULL) return errno ? errno : EIO;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) if (text[i] == '\n') lines++;
    size_t bytes = sizeof(stackmap) + 2 * lines * sizeof(region); // a line may be in both parts
    stackmap *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) { free(text); return errno; }
    map->mapped_bytes = bytes;
    map->count = collect(text, len, 'w', map->regions);
    map->code_count = collect(text, len, 'x', map->regions + map->count);
    free(text);
    release(atomic_exchange(&current, map));
    return 0;
}

int cpprof_stackmap_ready(void) { return atomic_load(&current) != NULL; }

void cpprof_stackmap_clear(void) {
    release(atomic_exchange(&current, NULL));
}

// The region of r[0, n) (sorted, disjoint) holding addr, or NULL.
static const region *find(const region *r, size_t n, uintptr_t addr) {
    size_t i = cpprof_range_index(r, n, sizeof *r, addr);
    return i < n ? &r[i] : NULL;
}

int cpprof_stackmap_region_end(uintptr_t sp, uintptr_t *end) {
    atomic_fetch_add(&readers, 1);
    const stackmap *map = atomic_load(&current);
    const region *r = map ? find(map->regions, map->count, sp) : NULL;
    if (r != NULL) *end = r->end;
    atomic_fetch_sub(&readers, 1);
    return r != NULL;
}

const cpprof_stackmap *cpprof_stackmap_pin(void) {
    atomic_fetch_add(&readers, 1);
    return (const cpprof_stackmap *)atomic_load(&current);
}

void cpprof_stackmap_unpin(void) {
    atomic_fetch_sub(&readers, 1);
}

int cpprof_stackmap_pinned_writable(const cpprof_stackmap *pinned, uintptr_t addr, size_t len,
                                    uintptr_t *start, uintptr_t *end) {
    const stackmap *map = (const stackmap *)pinned;
    const region *r = map ? find(map->regions, map->count, addr) : NULL;
    if (r == NULL || r->end - addr < len) return 0;
    *start = r->start;
    *end = r->end;
    return 1;
}

int cpprof_stackmap_pinned_code(const cpprof_stackmap *pinned, uintptr_t addr, uintptr_t *start, uintptr_t *end) {
    const stackmap *map = (const stackmap *)pinned;
    const region *r = map ? find(map->regions + map->count, map->code_count, addr) : NULL;
    if (r == NULL) return 0;
    *start = r->start;
    *end = r->end;
    return 1;
}

void cpprof_stackmap_reset_after_fork(void) {
    // Readers counted in by threads that do not exist in the child never leave.
    atomic_store(&readers, 0);
}
