// Unwinds a stack copied by the thread-dump handler, outside any signal
// handler, with libunwind's remote API: the "remote process" is a view made
// of the saved registers, the stack copy, and the code and unwind tables of
// the images mapped in this process right now.
//
// Safety rules:
//  - libunwind is dlopen'ed RTLD_LOCAL: libunwind.so.8 also exports
//    _Unwind_* and backtrace(), which must not interpose libgcc's and glibc's
//    for the rest of the process (the Swift runtime, C++ exceptions).
//  - Stack reads are served from the copy only; reading the live stack would
//    mix in frames written after the capture.
//  - Other reads go through image_memory.c: only inside a loaded segment,
//    never faulting (a library dlclose'd meanwhile yields an error).
//  - The address space is private to this file and used by one batch at a
//    time, so libunwind's caches and locks are never shared with a handler.
#include "internal.h"
#include "include/cpprof_threads.h"
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if __has_include(<libunwind.h>)
#define CPPROF_HAVE_LIBUNWIND 1
#include <libunwind.h>
#else
#define CPPROF_HAVE_LIBUNWIND 0
#endif

// --- frame pointers over the copy --------------------------------------------

typedef struct unwind_ctx {
    const cpprof_stack_copy *copy;
    uint64_t regs[CPPROF_NREGS];
    int hit_copy_end;      // a read fell just past the bytes the stack offers
    int incomplete;        // a read fell in [stack_len, full_len): offered, not copied
    cpprof_unwind_deps *deps; // records the stack bytes read, or NULL
} unwind_ctx;

// Records a read the unwind used (once per address and length).
static void note_read(unwind_ctx *ctx, uintptr_t addr, const void *bytes, size_t len) {
    cpprof_unwind_deps *d = ctx->deps;
    if (d == NULL || d->overflow) return;
    for (uint32_t i = 0; i < d->count; i++)
        if (d->reads[i].addr == addr && d->lens[i] == len) return;
    if (len > sizeof d->reads[0].value || d->count == CPPROF_UNWIND_DEPS_MAX) { d->overflow = 1; return; }
    d->reads[d->count].addr = addr;
    memcpy(d->reads[d->count].value, bytes, len);
    d->lens[d->count++] = (uint8_t)len;
}

// Every bound below is the stack's full length (full_len), never the bytes
// copied: an unwind that reads only copied bytes then takes the same steps
// as one over the whole copy.
static int read_stack(unwind_ctx *ctx, uintptr_t addr, void *dst, size_t len) {
    const cpprof_stack_copy *c = ctx->copy;
    if (addr >= c->stack_addr && addr - c->stack_addr <= c->stack_len &&
        len <= c->stack_len - (addr - c->stack_addr)) {
        memcpy(dst, c->bytes + (addr - c->stack_addr), len);
        note_read(ctx, addr, dst, len);
        return 0;
    }
    uint64_t end = c->stack_addr + c->full_len;
    if (addr >= c->stack_addr && addr < end) ctx->incomplete = 1;
    else if (addr >= end && addr < end + (1u << 20)) ctx->hit_copy_end = 1;
    return -1;
}

// Appends the return addresses of the frame-pointer chain starting at fp.
static uint32_t walk_copy(unwind_ctx *ctx, uint64_t fp, uint64_t min_fp, uint64_t *pcs, uint32_t depth,
                          uint32_t max) {
    while (depth < max) {
        uint64_t frame[2];
        if (fp < min_fp || (fp & 7) != 0 || read_stack(ctx, fp, frame, sizeof frame) != 0) break;
        if (frame[1] < 4096) break;
        pcs[depth++] = frame[1];
        if (frame[0] <= fp) break; // callers' frames are higher
        min_fp = fp + 16;
        fp = frame[0];
    }
    return depth;
}

// --- a frame record above a frame whose rbp is unknown ----------------------
//
// A stack read from /proc (proc_capture.c) comes with rsp and rip only. CFI
// unwinds glibc's frames from those two (their CFA is rsp-based, and any
// callee-saved register they pushed, rbp included, is read back from the
// copy). The first frame built with frame pointers whose rbp no libc frame
// saved needs rbp for its CFA: there DWARF stops. Its frame record (saved
// rbp, return address) is the lowest one above its sp, found by scanning the
// copy for a pair whose return address lies in mapped code right after a
// call instruction and whose saved rbp points higher up the same stack.

#define SCAN_BYTES 16384

// 1 if the bytes before `ret` end with a call instruction (E8 rel32, or FF /2
// in its register, memory and displacement forms, REX prefix or not).
static int follows_call(uint64_t ret) {
    if (ret < 8 || cpprof_image_text((uintptr_t)ret) == NULL) return 0;
    uint8_t code[8];
    if (cpprof_image_read((uintptr_t)ret - 8, code, sizeof code) != 0) return 0;
    if (code[8 - 5] == 0xE8) return 1;
    for (int k = 2; k <= 7; k++) {
        uint8_t op = code[8 - k], modrm = code[8 - k + 1];
        if (op == 0xFF && ((modrm >> 3) & 7) == 2) return 1;
    }
    return 0;
}

// Its reads are not recorded one by one (the words it passes over hold the
// frame's locals, which change from call to call): a reuse runs it again.
static int find_frame_record(unwind_ctx *ctx, uint64_t sp, uint64_t *fp_out) {
    const cpprof_stack_copy *c = ctx->copy;
    uint64_t end = c->stack_addr + c->full_len;
    uint64_t limit = sp + SCAN_BYTES < end ? sp + SCAN_BYTES : end;
    for (uint64_t at = (sp + 7) & ~(uint64_t)7; at + 16 <= limit; at += 8) {
        uint64_t frame[2];
        if (read_stack(ctx, (uintptr_t)at, frame, sizeof frame) != 0) break;
        if (frame[0] <= at || frame[0] >= end + (1u << 20) || (frame[0] & 7) != 0) continue;
        if (!follows_call(frame[1])) continue;
        // One more link, where the copy has it: the caller's record too.
        uint64_t next[2];
        if (frame[0] + 16 <= end && read_stack(ctx, (uintptr_t)frame[0], next, sizeof next) == 0 &&
            next[1] != 0 && !follows_call(next[1]))
            continue;
        *fp_out = at;
        return 1;
    }
    return 0;
}

// --- libunwind --------------------------------------------------------------

static int dwarf_enabled = 1;

#if CPPROF_HAVE_LIBUNWIND
typedef unw_addr_space_t (*create_as_fn)(unw_accessors_t *, int);
typedef int (*init_remote_fn)(unw_cursor_t *, unw_addr_space_t, void *);
typedef int (*step_fn)(unw_cursor_t *);
typedef int (*get_reg_fn)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
typedef int (*set_caching_fn)(unw_addr_space_t, unw_caching_policy_t);
typedef int (*set_cache_size_fn)(unw_addr_space_t, size_t, int);
typedef void (*flush_cache_fn)(unw_addr_space_t, unw_word_t, unw_word_t);
typedef int (*search_table_fn)(unw_addr_space_t, unw_word_t, unw_dyn_info_t *, unw_proc_info_t *, int,
                               void *);

static struct {
    int tried, ok;
    init_remote_fn init_remote;
    step_fn step;
    get_reg_fn get_reg;
    flush_cache_fn flush_cache;
    search_table_fn search_table;
    unw_addr_space_t as;
} lu;

enum { PE_OMIT = 0xff, PE_PCREL = 0x10, PE_DATAREL = 0x30, PE_SDATA4_DATAREL = 0x3b };

// Reads a DWARF-EH encoded value (the forms eh_frame_hdr uses).
static int read_encoded(uintptr_t *p, uint8_t enc, uintptr_t datarel_base, uint64_t *out) {
    if (enc == PE_OMIT) return -1;
    uintptr_t at = *p;
    uint64_t v;
    size_t size;
    switch (enc & 0x0f) {
    case 0x00: case 0x04: case 0x0c: { uint64_t x; if (cpprof_image_read(at, &x, 8)) return -1; v = x; size = 8; break; }
    case 0x03: { uint32_t x; if (cpprof_image_read(at, &x, 4)) return -1; v = x; size = 4; break; }
    case 0x0b: { int32_t x; if (cpprof_image_read(at, &x, 4)) return -1; v = (uint64_t)(int64_t)x; size = 4; break; }
    case 0x02: { uint16_t x; if (cpprof_image_read(at, &x, 2)) return -1; v = x; size = 2; break; }
    case 0x0a: { int16_t x; if (cpprof_image_read(at, &x, 2)) return -1; v = (uint64_t)(int64_t)x; size = 2; break; }
    default: return -1;
    }
    switch (enc & 0x70) {
    case 0x00: break;
    case PE_PCREL: v += at; break;
    case PE_DATAREL: v += datarel_base; break;
    default: return -1;
    }
    *p = at + size;
    *out = v;
    return 0;
}

static int acc_find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi, int need_unwind_info,
                              void *arg) {
    const cpprof_text_range *t = cpprof_image_text((uintptr_t)ip);
    if (t == NULL || t->eh_frame_hdr == 0) return -UNW_ENOINFO;
    uint8_t hdr[4]; // version, eh_frame_ptr_enc, fde_count_enc, table_enc
    if (cpprof_image_read(t->eh_frame_hdr, hdr, sizeof hdr) != 0) return -UNW_ENOINFO;
    if (hdr[0] != 1 || hdr[3] != PE_SDATA4_DATAREL) return -UNW_ENOINFO; // no binary-search table
    uintptr_t p = t->eh_frame_hdr + 4;
    uint64_t eh_frame, fde_count;
    if (read_encoded(&p, hdr[1], t->eh_frame_hdr, &eh_frame) != 0) return -UNW_ENOINFO;
    if (read_encoded(&p, hdr[2], t->eh_frame_hdr, &fde_count) != 0) return -UNW_ENOINFO;
    if (!cpprof_image_loaded(p, (size_t)fde_count * 8)) return -UNW_ENOINFO;
    unw_dyn_info_t di;
    memset(&di, 0, sizeof di);
    di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
    di.start_ip = t->lo;
    di.end_ip = t->hi;
    di.u.rti.segbase = t->eh_frame_hdr;
    di.u.rti.table_data = p;
    // The table holds fde_count pairs of int32; table_len counts words.
    di.u.rti.table_len = fde_count * 8 / sizeof(unw_word_t);
    return lu.search_table(as, ip, &di, pi, need_unwind_info, arg);
}

static void acc_put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg) {
    (void)as; (void)pi; (void)arg;
}

static int acc_get_dyn_info_list_addr(unw_addr_space_t as, unw_word_t *addr, void *arg) {
    (void)as; (void)addr; (void)arg;
    return -UNW_ENOINFO;
}

static int acc_access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write, void *arg) {
    (void)as;
    unwind_ctx *ctx = arg;
    if (write) return -UNW_EINVAL;
    const cpprof_stack_copy *c = ctx->copy;
    // Anything in or near the thread's stack comes from the copy or not at all.
    if (addr + sizeof *val > c->stack_addr - 4096 && addr < c->stack_addr + c->full_len + (1u << 20))
        return read_stack(ctx, (uintptr_t)addr, val, sizeof *val) == 0 ? 0 : -UNW_EINVAL;
    // Writable data may change between two unwinds: one that read it is not
    // reused. (Read-only segments do not change while the images do not; a
    // read outside every image fails the same way each time.)
    if (ctx->deps != NULL && cpprof_image_writable((uintptr_t)addr, sizeof *val)) ctx->deps->overflow = 1;
    return cpprof_image_read((uintptr_t)addr, val, sizeof *val) == 0 ? 0 : -UNW_EINVAL;
}

static int acc_access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *val, int write, void *arg) {
    (void)as;
    unwind_ctx *ctx = arg;
    if (reg < 0 || reg >= CPPROF_NREGS) return -UNW_EBADREG;
    if (write) ctx->regs[reg] = *val;
    else *val = ctx->regs[reg];
    return 0;
}

static int acc_access_fpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t *val, int write, void *arg) {
    (void)as; (void)reg; (void)val; (void)write; (void)arg;
    return -UNW_EBADREG;
}

static int acc_resume(unw_addr_space_t as, unw_cursor_t *c, void *arg) {
    (void)as; (void)c; (void)arg;
    return -UNW_EINVAL;
}

static int acc_get_proc_name(unw_addr_space_t as, unw_word_t addr, char *buf, size_t len, unw_word_t *off,
                             void *arg) {
    (void)as; (void)addr; (void)buf; (void)len; (void)off; (void)arg;
    return -UNW_ENOINFO;
}

static unw_accessors_t accessors = {
    .find_proc_info = acc_find_proc_info,
    .put_unwind_info = acc_put_unwind_info,
    .get_dyn_info_list_addr = acc_get_dyn_info_list_addr,
    .access_mem = acc_access_mem,
    .access_reg = acc_access_reg,
    .access_fpreg = acc_access_fpreg,
    .resume = acc_resume,
    .get_proc_name = acc_get_proc_name,
};

static void load_libunwind(void) {
    if (lu.tried) return;
    lu.tried = 1;
    void *h = dlopen("libunwind-x86_64.so.8", RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) h = dlopen("libunwind-x86_64.so", RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) return;
    create_as_fn create = (create_as_fn)dlsym(h, "_Ux86_64_create_addr_space");
    set_caching_fn caching = (set_caching_fn)dlsym(h, "_Ux86_64_set_caching_policy");
    set_cache_size_fn cache_size = (set_cache_size_fn)dlsym(h, "_Ux86_64_set_cache_size");
    lu.init_remote = (init_remote_fn)dlsym(h, "_Ux86_64_init_remote");
    lu.step = (step_fn)dlsym(h, "_Ux86_64_step");
    lu.get_reg = (get_reg_fn)dlsym(h, "_Ux86_64_get_reg");
    lu.flush_cache = (flush_cache_fn)dlsym(h, "_Ux86_64_flush_cache");
    lu.search_table = (search_table_fn)dlsym(h, "_Ux86_64_dwarf_search_unwind_table");
    if (!create || !lu.init_remote || !lu.step || !lu.get_reg || !lu.search_table) return;
    lu.as = create(&accessors, 0);
    if (lu.as == NULL) return;
    // The cache belongs to this private address space; flushed when the images change.
    if (caching) caching(lu.as, UNW_CACHE_GLOBAL);
    if (cache_size) cache_size(lu.as, 1024, 0);
    lu.ok = 1; // the handle stays open for the life of the process
}
#endif

void cpprof_unwind_reset_after_fork(void) {
#if CPPROF_HAVE_LIBUNWIND
    // The parent's address space (and its cache lock) is abandoned, not
    // destroyed: another thread may have held that lock at the fork.
    lu.tried = 0;
    lu.ok = 0;
    lu.as = NULL;
#endif
    cpprof_images_forget();
}

// --- batch ------------------------------------------------------------------

static int images_ok; // the image list and its memory cache are usable in this batch

int cpprof_unwind_begin(void) {
    int changed = 0;
    images_ok = cpprof_images_begin(&changed);
    // Memos hold unwinds of the images mapped when they were made.
    if (changed) cpprof_unwind_memo_clear();
    if (!images_ok) return 0;
#if CPPROF_HAVE_LIBUNWIND
    load_libunwind();
    if (!lu.ok) return 0;
    // libunwind's caches hold what it parsed from the images: kept while they are.
    if (changed && lu.flush_cache) lu.flush_cache(lu.as, 0, 0);
    return dwarf_enabled;
#else
    return 0;
#endif
}

void cpprof_unwind_end(void) { cpprof_images_end(); }

uint32_t cpprof_unwind_copy(const cpprof_stack_copy *copy, uint64_t *pcs, uint32_t max, uint8_t *unwinder,
                            uint8_t *truncated, uint8_t *incomplete, cpprof_unwind_deps *deps) {
    *unwinder = CPPROF_UNWIND_NONE;
    *truncated = 0;
    *incomplete = 0;
    if (deps != NULL) {
        deps->count = 0;
        deps->overflow = 0;
        deps->scanned = 0;
        deps->dwarf = 0;
    }
    if (max == 0) return 0;
    unwind_ctx ctx;
    ctx.copy = copy;
    memcpy(ctx.regs, copy->regs, sizeof ctx.regs);
    ctx.hit_copy_end = 0;
    ctx.incomplete = 0;
    ctx.deps = deps;
    uint32_t depth = 0;
    pcs[depth++] = copy->regs[CPPROF_REG_RIP];
    uint64_t fp = copy->regs[CPPROF_REG_RBP];
    uint64_t min_fp = copy->regs[CPPROF_REG_RSP];
    int finished = 0;
#if CPPROF_HAVE_LIBUNWIND
    if (lu.ok && dwarf_enabled && images_ok) {
        if (deps != NULL) deps->dwarf = 1;
        unw_cursor_t cursor;
        if (lu.init_remote(&cursor, lu.as, &ctx) == 0) {
            *unwinder = CPPROF_UNWIND_DWARF;
            uint64_t prev_sp = copy->regs[CPPROF_REG_RSP];
            while (depth < max) {
                int r = lu.step(&cursor);
                if (r == 0) { finished = 1; break; }
                if (r < 0) break;
                unw_word_t ip = 0, sp = 0;
                if (lu.get_reg(&cursor, UNW_REG_IP, &ip) < 0 || lu.get_reg(&cursor, UNW_REG_SP, &sp) < 0) break;
                if (ip == 0) { finished = 1; break; }
                if (sp < prev_sp) break; // the stack cannot shrink towards callers
                pcs[depth++] = ip;
                prev_sp = sp;
            }
            // Where DWARF gave up, frame pointers may still go on.
            unw_word_t rbp = 0;
            if (lu.get_reg(&cursor, UNW_X86_64_RBP, &rbp) == 0) fp = rbp;
            min_fp = prev_sp;
        }
    }
#endif
    if (!finished && depth < max) {
        uint32_t before = depth;
        depth = walk_copy(&ctx, fp, min_fp, pcs, depth, max);
        // rbp was never known (a /proc read) or never restored: look for the record.
        uint64_t found = 0;
        if (depth == before && copy->only_sp_pc) {
            cpprof_unwind_deps *deps = ctx.deps;
            ctx.deps = NULL;
            int ok = find_frame_record(&ctx, min_fp, &found);
            ctx.deps = deps;
            if (deps != NULL) {
                deps->scanned = 1;
                deps->scan_from = min_fp;
                deps->scan_found = ok ? found : 0;
            }
            if (ok) depth = walk_copy(&ctx, found, min_fp, pcs, depth, max);
        }
        if (depth > before || *unwinder == CPPROF_UNWIND_NONE)
            *unwinder = *unwinder == CPPROF_UNWIND_DWARF ? CPPROF_UNWIND_DWARF_THEN_FP : CPPROF_UNWIND_FRAME_POINTERS;
    }
    if (depth == max || (!finished && ctx.hit_copy_end)) *truncated = 1;
    *incomplete = (uint8_t)ctx.incomplete;
    return depth;
}

int cpprof_unwind_deps_hold(const cpprof_stack_copy *copy, const cpprof_unwind_deps *deps) {
    if (deps->overflow) return 0;
#if CPPROF_HAVE_LIBUNWIND
    int dwarf = lu.ok && dwarf_enabled && images_ok;
#else
    int dwarf = 0;
#endif
    if (deps->dwarf != dwarf) return 0;
    unwind_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.copy = copy;
    for (uint32_t i = 0; i < deps->count; i++) {
        uint8_t now[sizeof deps->reads[0].value];
        size_t len = deps->lens[i];
        if (read_stack(&ctx, (uintptr_t)deps->reads[i].addr, now, len) != 0 ||
            memcmp(now, deps->reads[i].value, len) != 0)
            return 0;
    }
    if (deps->scanned) {
        uint64_t found = 0;
        if (!find_frame_record(&ctx, deps->scan_from, &found)) found = 0;
        if (found != deps->scan_found) return 0;
    }
    return !ctx.incomplete && !ctx.hit_copy_end;
}

int cpprof_unwind_function_bounds(uint64_t addr, uint64_t *start, uint64_t *end) {
#if CPPROF_HAVE_LIBUNWIND
    if (!lu.ok || !images_ok) return 0;
    cpprof_stack_copy none;
    memset(&none, 0, sizeof none);
    unwind_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.copy = &none;
    unw_proc_info_t pi;
    memset(&pi, 0, sizeof pi);
    if (acc_find_proc_info(lu.as, addr, &pi, 0, &ctx) != 0) return 0;
    *start = pi.start_ip;
    *end = pi.end_ip;
    return 1;
#else
    (void)addr; (void)start; (void)end;
    return 0;
#endif
}

void cpprof_threads_set_dwarf_for_testing(int enabled) { dwarf_enabled = enabled; }
