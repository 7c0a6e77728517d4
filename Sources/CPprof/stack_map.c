// A snapshot of the process's writable memory regions (thread stacks are
// among them), published for the signal handler with an RCU-like scheme: the
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
typedef struct stackmap { size_t mapped_bytes; size_t count; region regions[]; } stackmap;

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

int cpprof_stackmap_refresh(void) {
    size_t len = 0;
    char *text = read_maps(&len);
    if (text == NULL) return errno ? errno : EIO;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) if (text[i] == '\n') lines++;
    size_t bytes = sizeof(stackmap) + lines * sizeof(region);
    stackmap *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) { free(text); return errno; }
    map->mapped_bytes = bytes;
    map->count = 0;
    char *line = text;
    while (line < text + len) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (nl) *nl = 0;
        char *p = line;
        uintptr_t start = strtoull(p, &p, 16);
        if (*p == '-') {
            uintptr_t end = strtoull(p + 1, &p, 16);
            if (*p == ' ' && p[1] == 'r' && p[2] == 'w' && end > start) {
                // Never joined with a neighbour: a walk must stay inside one
                // mapping, since the neighbour may be unmapped after the snapshot.
                map->regions[map->count++] = (region){start, end};
            }
        }
        if (!nl) break;
        line = nl + 1;
    }
    free(text);
    release(atomic_exchange(&current, map));
    return 0;
}

int cpprof_stackmap_ready(void) { return atomic_load(&current) != NULL; }

void cpprof_stackmap_clear(void) {
    release(atomic_exchange(&current, NULL));
}

int cpprof_stackmap_region_end(uintptr_t sp, uintptr_t *end) {
    atomic_fetch_add(&readers, 1);
    const stackmap *map = atomic_load(&current);
    int found = 0;
    if (map != NULL) {
        size_t lo = 0, hi = map->count;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (map->regions[mid].end <= sp) lo = mid + 1;
            else hi = mid;
        }
        if (lo < map->count && map->regions[lo].start <= sp) {
            *end = map->regions[lo].end;
            found = 1;
        }
    }
    atomic_fetch_sub(&readers, 1);
    return found;
}

void cpprof_stackmap_reset_after_fork(void) {
    // Readers counted in by threads that do not exist in the child never leave.
    atomic_store(&readers, 0);
}
