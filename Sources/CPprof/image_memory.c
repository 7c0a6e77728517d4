// The images mapped in this process, and fault-safe reads of their memory,
// for the remote unwinder (remote_unwind.c).
//
// Invariants:
//  - Reads must fall inside a PT_LOAD segment of an image listed by
//    dl_iterate_phdr, and are done with process_vm_readv (or a pipe), which
//    report EFAULT instead of faulting: a library dlclose'd meanwhile yields
//    an error, never a crash.
//  - The list and the cache of read-only lines are kept from one batch to the
//    next while the loader's counts of objects ever loaded and unloaded
//    (dlpi_adds, dlpi_subs) are unchanged, and rebuilt otherwise; writable
//    segments are never cached across reads.
//  - Used by one batch at a time, under the dump lock; never in a handler.
#include "internal.h"
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

// --- images mapped now ------------------------------------------------------

typedef struct load_range { uintptr_t lo, hi; int writable; } load_range;

static cpprof_text_range *texts;
static unsigned long long listed_adds, listed_subs;
static int listed; // texts, loads and the line cache describe the images mapped now
static size_t text_count, text_cap;
static load_range *loads;
static size_t load_count, load_cap;

static int grow(void **array, size_t *cap, size_t count, size_t elem) {
    if (count < *cap) return 1;
    size_t n = *cap ? *cap * 2 : 256;
    void *bigger = realloc(*array, n * elem);
    if (bigger == NULL) return 0;
    *array = bigger;
    *cap = n;
    return 1;
}

static int collect_image(struct dl_phdr_info *info, size_t size, void *unused) {
    (void)unused;
    if (size < offsetof(struct dl_phdr_info, dlpi_phnum) + sizeof info->dlpi_phnum) return 0;
    uintptr_t base = (uintptr_t)info->dlpi_addr;
    uintptr_t eh = 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_GNU_EH_FRAME) eh = base + info->dlpi_phdr[i].p_vaddr;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || ph->p_memsz == 0) continue;
        uintptr_t lo = base + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (grow((void **)&loads, &load_cap, load_count, sizeof *loads)) loads[load_count++] = (load_range){lo, hi, (ph->p_flags & PF_W) != 0};
        if ((ph->p_flags & PF_X) && grow((void **)&texts, &text_cap, text_count, sizeof *texts))
            texts[text_count++] = (cpprof_text_range){lo, hi, eh};
    }
    return 0;
}

static int by_lo_text(const void *a, const void *b) {
    uintptr_t x = ((const cpprof_text_range *)a)->lo, y = ((const cpprof_text_range *)b)->lo;
    return x < y ? -1 : x > y;
}

static int by_lo_load(const void *a, const void *b) {
    uintptr_t x = ((const load_range *)a)->lo, y = ((const load_range *)b)->lo;
    return x < y ? -1 : x > y;
}

const cpprof_text_range *cpprof_image_text(uintptr_t ip) {
    size_t i = cpprof_range_index(texts, text_count, sizeof *texts, ip);
    return i < text_count ? &texts[i] : NULL;
}

// The segment holding [addr, addr + len), or NULL.
static const load_range *loaded_range(uintptr_t addr, size_t len) {
    size_t i = cpprof_range_index(loads, load_count, sizeof *loads, addr);
    return i < load_count && addr + len <= loads[i].hi ? &loads[i] : NULL;
}

int cpprof_image_loaded(uintptr_t addr, size_t len) { return loaded_range(addr, len) != NULL; }

int cpprof_image_writable(uintptr_t addr, size_t len) {
    const load_range *range = loaded_range(addr, len);
    return range != NULL && range->writable;
}

// --- fault-safe reads of image memory ------------------------------------------

#define LINE_BYTES 256
#define LINE_COUNT 1024
typedef struct cache_line { uintptr_t tag; uint8_t data[LINE_BYTES]; } cache_line;
static cache_line *cache;       // direct-mapped; tag = line address + 1
static pid_t self_pid;
static int use_pipe;            // process_vm_readv refused (seccomp, old kernel)
static int pipe_fds[2] = {-1, -1};

// Reads one aligned line; 0 or -1. Never faults.
static int fetch_line(uintptr_t base, uint8_t *dst) {
    if (!use_pipe) {
        struct iovec local = {dst, LINE_BYTES}, remote = {(void *)base, LINE_BYTES};
        ssize_t r = process_vm_readv(self_pid, &local, 1, &remote, 1, 0);
        if (r == LINE_BYTES) return 0;
        if (r >= 0 || (errno != ENOSYS && errno != EPERM)) return -1;
        use_pipe = 1;
    }
    if (pipe_fds[0] < 0 && pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    // write() reports EFAULT for an unmapped source instead of faulting.
    ssize_t w = write(pipe_fds[1], (const void *)base, LINE_BYTES);
    if (w <= 0) return -1;
    ssize_t r = read(pipe_fds[0], dst, (size_t)w);
    return (w == LINE_BYTES && r == LINE_BYTES) ? 0 : -1;
}

int cpprof_image_read(uintptr_t addr, void *dst, size_t len) {
    const load_range *range = loaded_range(addr, len);
    if (range == NULL) return -1;
    uint8_t *out = dst;
    while (len > 0) {
        uintptr_t base = addr & ~(uintptr_t)(LINE_BYTES - 1);
        const uint8_t *data;
        uint8_t fresh[LINE_BYTES];
        if (range->writable) {
            // Lines live across batches: only read-only segments (code,
            // unwind tables) go through them; writable ones are read afresh.
            if (fetch_line(base, fresh) != 0) return -1;
            data = fresh;
        } else {
            cache_line *line = &cache[(base / LINE_BYTES) % LINE_COUNT];
            if (line->tag != base + 1) {
                if (fetch_line(base, line->data) != 0) { line->tag = 0; return -1; }
                line->tag = base + 1;
            }
            data = line->data;
        }
        size_t off = addr - base, n = LINE_BYTES - off;
        if (n > len) n = len;
        memcpy(out, data + off, n);
        out += n;
        addr += n;
        len -= n;
    }
    return 0;
}

// The loader's counts of objects ever loaded and unloaded: both unchanged
// means the same images at the same addresses as at the last batch.
static int read_load_counts(struct dl_phdr_info *info, size_t size, void *out) {
    unsigned long long *counts = out;
    if (size < offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) return 1;
    counts[0] = info->dlpi_adds;
    counts[1] = info->dlpi_subs;
    counts[2] = 1;
    return 1; // the first object is enough
}

int cpprof_images_begin(int *changed) {
    self_pid = getpid();
    // A wall-clock profile unwinds ~100 batches a second: the list and the
    // line cache are rebuilt only when an object was loaded or unloaded.
    unsigned long long counts[3] = {0, 0, 0};
    dl_iterate_phdr(read_load_counts, counts);
    *changed = !(listed && counts[2] && counts[0] == listed_adds && counts[1] == listed_subs);
    if (*changed) {
        listed = 0;
        text_count = load_count = 0;
        dl_iterate_phdr(collect_image, NULL);
        qsort(texts, text_count, sizeof *texts, by_lo_text);
        qsort(loads, load_count, sizeof *loads, by_lo_load);
        if (cache == NULL) cache = calloc(LINE_COUNT, sizeof *cache);
        else memset(cache, 0, LINE_COUNT * sizeof *cache);
        if (cache == NULL) return 0;
        listed = (int)counts[2];
        listed_adds = counts[0];
        listed_subs = counts[1];
    }
    return cache != NULL;
}

void cpprof_images_end(void) {
    if (pipe_fds[0] >= 0) {
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        pipe_fds[0] = pipe_fds[1] = -1;
    }
}

void cpprof_images_forget(void) { listed = 0; }
