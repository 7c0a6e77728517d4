// The heap sampler's two tables, both lock-free so that a signal handler or
// a fork() landing in the middle of an update can never deadlock anything:
//
// * Live table: sampled address -> (stack, size). Set-associative: an address
//   hashes to one bucket of 8 slots (one cache line of keys), so there are no
//   probe chains and no tombstones. It grows in levels of 512, 2048, 8192
//   and 16384 buckets: a sample goes to the first level whose bucket has room; a
//   level opens when every open level's bucket for an address is full; only
//   when the last is full too is the sample dropped. A byte of occupancy per
//   bucket of the largest level (16 KiB in all; it counts the keys of every
//   level whose bucket covers it) lets free() dismiss unsampled pointers
//   without touching the keys. Slot protocol: 0 -> BUSY (claimed by CAS) ->
//   address (published with release); removal address -> BUSY -> 0.
//
// * Stack table: cumulative alloc/free counts per distinct stack. Entries
//   are bump-allocated and never removed; an open-addressing index maps a
//   hash of the PCs to them. An entry is filled before its index word is
//   published by CAS, so readers never wait for a writer.
//
// Memory: the occupancy bytes are static (free() reads them before any
// table exists); the rest is one anonymous MAP_NORESERVE mapping, reserved on the
// first sample and never moved or freed, so a pointer into it stays valid in
// any thread, handler or forked child. Only the pages written get memory:
// the occupancy bytes and the stack index (hashed, so soon all of them), the
// stack entries up to the bump pointer, and the live levels opened so far
// (a closed level is never read or written). `memory_bytes` counts exactly
// those, so it bounds what the tables add to the resident set; opening a
// level is one CAS on a counter, never a system call in the hook.
#include "heap_internal.h"

#ifdef CPPROF_HEAP_PROFILING

#include <string.h>
#include <sys/mman.h>

#define LIVE_BUCKET_BITS CPPROF_HEAP_LIVE_BUCKET_BITS
#define LIVE_BUCKETS (1u << LIVE_BUCKET_BITS)   // buckets of the largest level
#define LIVE_WAYS 8u
#define LIVE_LEVELS 4u
#define LIVE_SLOTS ((512u + 2048u + 8192u + LIVE_BUCKETS) * LIVE_WAYS) // 217088 samples at most
#define LIVE_BUSY ((uintptr_t)1)                // never a valid address
#define PAGE_BYTES 4096u

#define STACK_CAPACITY 8192u                    // < 2^16: ids fit the index word
#define STACK_INDEX_SLOTS (2u * STACK_CAPACITY) // load factor <= 1/2
#define STACK_ID_MASK 0xFFFFull
#define LIVE_SIZE_MAX ((1ull << 48) - 1)        // sizes are packed beside a 16-bit stack id

typedef struct stack_entry {
    _Atomic uint64_t alloc_objects, alloc_bytes, free_objects, free_bytes;
    uint32_t depth;
    uint32_t reserved;
    uint64_t pcs[CPPROF_HEAP_MAX_DEPTH];
} stack_entry;

// Level L: 2^bits buckets, the top `bits` bits of the address hash; its
// slots are keys[first_slot ..< first_slot + 8 << bits] (values alike).
static const struct { uint32_t bits, first_slot; } levels[LIVE_LEVELS] = {
    {9, 0}, {11, 512u * LIVE_WAYS}, {13, (512u + 2048u) * LIVE_WAYS},
    {LIVE_BUCKET_BITS, (512u + 2048u + 8192u) * LIVE_WAYS}};

typedef struct heap_tables {
    _Atomic uint64_t index[STACK_INDEX_SLOTS];           // tag | stack id; 0 = empty
    _Atomic uintptr_t keys[LIVE_SLOTS];                  // a bucket's 8 keys are adjacent
    uint64_t values[LIVE_SLOTS];                         // size << 16 | stack id
    stack_entry entries[STACK_CAPACITY];
} heap_tables;

static _Atomic(heap_tables *) tables;
_Atomic uint8_t cpprof_heap_occupancy[LIVE_BUCKETS];
static _Atomic uint64_t next_entry;       // bump pointer into entries (may run past capacity)
static _Atomic uint64_t published_stacks;
static _Atomic uint64_t live_count;
static _Atomic uint32_t open_levels = 1;  // live levels in use; only grows
static CPPROF_TLS uint32_t spare_entry;   // id + 1 of an entry reserved but not published

_Static_assert(STACK_CAPACITY <= STACK_ID_MASK, "stack ids must fit 16 bits");
_Static_assert(sizeof(uintptr_t) == 8, "64-bit only");
_Static_assert(LIVE_BUCKET_BITS == 14, "the levels' sizes assume 16384 buckets in the largest");

int cpprof_heap_tables_init(void) {
    if (atomic_load_explicit(&tables, memory_order_acquire) != NULL) return 0;
    void *mem = mmap(NULL, sizeof(heap_tables), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return -1;
    heap_tables *expected = NULL;
    if (!atomic_compare_exchange_strong_explicit(&tables, &expected, (heap_tables *)mem,
                                                 memory_order_acq_rel, memory_order_acquire))
        munmap(mem, sizeof(heap_tables)); // another thread won the race
    return 0;
}

// --- stack table ---

static uint64_t hash_pcs(const uint64_t *pcs, uint32_t depth) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ depth;
    for (uint32_t i = 0; i < depth; i++) {
        h ^= pcs[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    h ^= h >> 29;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 32;
    return h;
}

static uint32_t reserve_entry(heap_tables *t, const uint64_t *pcs, uint32_t depth) {
    uint32_t id;
    if (spare_entry != 0) {
        id = spare_entry - 1;
        spare_entry = 0;
    } else {
        uint64_t n = atomic_fetch_add_explicit(&next_entry, 1, memory_order_relaxed);
        if (n >= STACK_CAPACITY) return CPPROF_HEAP_NO_STACK;
        id = (uint32_t)n;
    }
    stack_entry *e = &t->entries[id];
    e->depth = depth;
    memcpy(e->pcs, pcs, depth * sizeof(uint64_t));
    return id;
}

uint32_t cpprof_heap_stack_intern(const uint64_t *pcs, uint32_t depth) {
    heap_tables *t = atomic_load_explicit(&tables, memory_order_acquire);
    if (t == NULL) return CPPROF_HEAP_NO_STACK;
    uint64_t h = hash_pcs(pcs, depth);
    uint64_t tag = (h & ~STACK_ID_MASK) | (1ull << 63);
    uint32_t mine = CPPROF_HEAP_NO_STACK;
    uint32_t slot = (uint32_t)h & (STACK_INDEX_SLOTS - 1);
    uint32_t found = CPPROF_HEAP_NO_STACK;
    for (uint32_t n = 0; n < STACK_INDEX_SLOTS; n++, slot = (slot + 1) & (STACK_INDEX_SLOTS - 1)) {
        uint64_t word = atomic_load_explicit(&t->index[slot], memory_order_acquire);
        if (word == 0) {
            if (mine == CPPROF_HEAP_NO_STACK) {
                mine = reserve_entry(t, pcs, depth);
                if (mine == CPPROF_HEAP_NO_STACK) return CPPROF_HEAP_NO_STACK; // table full
            }
            if (atomic_compare_exchange_strong_explicit(&t->index[slot], &word, tag | mine,
                                                        memory_order_acq_rel, memory_order_acquire)) {
                atomic_fetch_add_explicit(&published_stacks, 1, memory_order_relaxed);
                return mine;
            }
            // Lost the slot: `word` now holds the winner; it may be our stack.
        }
        if ((word & ~STACK_ID_MASK) == tag) {
            const stack_entry *e = &t->entries[word & STACK_ID_MASK];
            if (e->depth == depth && memcmp(e->pcs, pcs, depth * sizeof(uint64_t)) == 0) {
                found = (uint32_t)(word & STACK_ID_MASK);
                break;
            }
        }
    }
    if (mine != CPPROF_HEAP_NO_STACK) spare_entry = mine + 1; // reuse next time
    return found;
}

void cpprof_heap_stack_count_alloc(uint32_t stack, uint64_t size) {
    heap_tables *t = atomic_load_explicit(&tables, memory_order_acquire);
    stack_entry *e = &t->entries[stack];
    atomic_fetch_add(&e->alloc_objects, 1);
    atomic_fetch_add(&e->alloc_bytes, size);
}

void cpprof_heap_stack_count_free(uint32_t stack, uint64_t size) {
    heap_tables *t = atomic_load_explicit(&tables, memory_order_acquire);
    stack_entry *e = &t->entries[stack];
    atomic_fetch_add(&e->free_objects, 1);
    atomic_fetch_add(&e->free_bytes, size);
}

// --- live table ---

// The first slot of `addr`'s bucket in level `level`.
static inline uint32_t live_bucket_slot(uint64_t hash, uint32_t level) {
    return levels[level].first_slot + (uint32_t)(hash >> (64 - levels[level].bits)) * LIVE_WAYS;
}

// Claims the slot of `addr` or an empty one (`want` = addr or 0) in the open
// levels; its index, or -1.
static int64_t live_claim(heap_tables *t, uintptr_t addr, uintptr_t want, uint32_t open) {
    uint64_t h = cpprof_heap_addr_hash(addr);
    for (uint32_t level = 0; level < open; level++) {
        uint32_t first = live_bucket_slot(h, level);
        for (uint32_t i = first; i < first + LIVE_WAYS; i++) {
            uintptr_t k = want;
            if (atomic_load_explicit(&t->keys[i], memory_order_relaxed) == want &&
                atomic_compare_exchange_strong(&t->keys[i], &k, LIVE_BUSY))
                return i;
        }
    }
    return -1;
}

int cpprof_heap_live_insert(uintptr_t addr, uint32_t stack, uint64_t size, int count_alloc) {
    heap_tables *t = atomic_load_explicit(&tables, memory_order_acquire);
    if (t == NULL || addr <= LIVE_BUSY) return 0;
    if (size > LIVE_SIZE_MAX) size = LIVE_SIZE_MAX;
    uint64_t value = (size << 16) | stack;
    uint32_t open = atomic_load_explicit(&open_levels, memory_order_acquire);
    // A stale entry for this address means we missed its free: replace it.
    int64_t slot = live_claim(t, addr, addr, open);
    if (slot >= 0) {
        uint64_t old = t->values[slot];
        cpprof_heap_stack_count_free((uint32_t)(old & STACK_ID_MASK), old >> 16);
        t->values[slot] = value;
        if (count_alloc) cpprof_heap_stack_count_alloc(stack, size); // before a free can see the key
        atomic_store_explicit(&t->keys[slot], addr, memory_order_release);
        return 1;
    }
    while ((slot = live_claim(t, addr, 0, open)) < 0) {
        if (open >= LIVE_LEVELS) return 0;
        // Every open level's bucket is full: open the next (or see that
        // another thread did). Its pages are still untouched zeros.
        uint32_t expected = open;
        atomic_compare_exchange_strong_explicit(&open_levels, &expected, open + 1, memory_order_acq_rel,
                                                memory_order_acquire);
        open = atomic_load_explicit(&open_levels, memory_order_acquire);
    }
    t->values[slot] = value;
    atomic_fetch_add(&cpprof_heap_occupancy[cpprof_heap_bucket_of(addr)], 1); // before the key is visible
    atomic_fetch_add_explicit(&live_count, 1, memory_order_relaxed);
    if (count_alloc) cpprof_heap_stack_count_alloc(stack, size); // before a free can see the key
    atomic_store_explicit(&t->keys[slot], addr, memory_order_release);
    return 1;
}

int cpprof_heap_live_remove(uintptr_t addr, uint32_t *stack, uint64_t *size) {
    heap_tables *t = atomic_load_explicit(&tables, memory_order_acquire);
    if (t == NULL) return 0;
    uint32_t b = cpprof_heap_bucket_of(addr);
    if (atomic_load_explicit(&cpprof_heap_occupancy[b], memory_order_relaxed) == 0) return 0;
    int64_t slot = live_claim(t, addr, addr, atomic_load_explicit(&open_levels, memory_order_acquire));
    if (slot < 0) return 0;
    uint64_t value = t->values[slot];
    *stack = (uint32_t)(value & STACK_ID_MASK);
    *size = value >> 16;
    atomic_fetch_sub(&cpprof_heap_occupancy[b], 1);
    atomic_fetch_sub_explicit(&live_count, 1, memory_order_relaxed);
    atomic_store_explicit(&t->keys[slot], 0, memory_order_release);
    return 1;
}

// --- readers ---

size_t cpprof_heap_table_snapshot(cpprof_heap_record *out, size_t max) {
    heap_tables *t = atomic_load_explicit(&tables, memory_order_acquire);
    if (t == NULL) return 0;
    uint64_t n = atomic_load(&next_entry);
    if (n > STACK_CAPACITY) n = STACK_CAPACITY;
    size_t total = 0;
    for (uint64_t id = 0; id < n; id++) {
        stack_entry *e = &t->entries[id];
        // Frees first: every free counted was preceded by its alloc, so
        // alloc >= free in what we return.
        uint64_t free_bytes = atomic_load(&e->free_bytes);
        uint64_t free_objects = atomic_load(&e->free_objects);
        uint64_t alloc_objects = atomic_load(&e->alloc_objects);
        uint64_t alloc_bytes = atomic_load(&e->alloc_bytes);
        if (alloc_objects == 0) continue; // unpublished or never counted
        if (total < max) {
            cpprof_heap_record *r = &out[total];
            r->alloc_objects = alloc_objects;
            r->alloc_bytes = alloc_bytes;
            r->free_objects = free_objects;
            r->free_bytes = free_bytes;
            r->depth = e->depth;
            r->reserved = 0;
            memcpy(r->pcs, e->pcs, e->depth * sizeof(uint64_t));
            memset(r->pcs + e->depth, 0, (CPPROF_HEAP_MAX_DEPTH - e->depth) * sizeof(uint64_t));
        }
        total++;
    }
    return total;
}

void cpprof_heap_table_stats(cpprof_heap_stats *out) {
    out->live_samples = atomic_load_explicit(&live_count, memory_order_relaxed);
    out->live_capacity = LIVE_SLOTS;
    out->stacks = atomic_load_explicit(&published_stacks, memory_order_relaxed);
    out->stack_capacity = STACK_CAPACITY;
    if (atomic_load(&tables) == NULL) return;
    // What has been written (see the top of this file), in whole pages.
    uint64_t used = atomic_load(&next_entry);
    if (used > STACK_CAPACITY) used = STACK_CAPACITY;
    uint32_t open = atomic_load(&open_levels);
    uint64_t live_slots = 0;
    for (uint32_t level = 0; level < open && level < LIVE_LEVELS; level++)
        live_slots += (uint64_t)LIVE_WAYS << levels[level].bits;
    uint64_t bytes = sizeof(cpprof_heap_occupancy) + sizeof(((heap_tables *)0)->index) +
                     live_slots * (sizeof(uintptr_t) + sizeof(uint64_t)) +
                     (used * sizeof(stack_entry) + PAGE_BYTES - 1) / PAGE_BYTES * PAGE_BYTES;
    out->memory_bytes = bytes;
    out->reserved_bytes = sizeof(heap_tables);
}

#endif // CPPROF_HEAP_PROFILING
