// The heap sampler's two tables, both lock-free so that a signal handler or
// a fork() landing in the middle of an update can never deadlock anything:
//
// * Live table: sampled address -> (stack, size). Set-associative: an address
//   hashes to one bucket of 8 slots (one cache line of keys), so there are no
//   probe chains and no tombstones; a full bucket drops the sample. A byte of
//   occupancy per bucket (16 KiB in all) lets free() dismiss unsampled
//   pointers without touching the keys. Slot protocol: 0 -> BUSY (claimed by
//   CAS) -> address (published with release); removal address -> BUSY -> 0.
//
// * Stack table: cumulative alloc/free counts per distinct stack. Entries
//   are bump-allocated and never removed; an open-addressing index maps a
//   hash of the PCs to them. An entry is filled before its index word is
//   published by CAS, so readers never wait for a writer.
//
// All of it lives in one mapping made on first use; its size is fixed.
#include "heap_internal.h"

#ifdef CPPROF_HEAP_PROFILING

#include <string.h>
#include <sys/mman.h>

#define LIVE_BUCKET_BITS CPPROF_HEAP_LIVE_BUCKET_BITS
#define LIVE_BUCKETS (1u << LIVE_BUCKET_BITS)
#define LIVE_WAYS 8u
#define LIVE_SLOTS (LIVE_BUCKETS * LIVE_WAYS)   // 131072 samples at most
#define LIVE_BUSY ((uintptr_t)1)                // never a valid address

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

typedef struct heap_tables {
    _Atomic uint8_t occupancy[LIVE_BUCKETS];             // published keys per bucket
    _Atomic uintptr_t keys[LIVE_SLOTS];                  // bucket b: keys[b*8 ..< b*8+8]
    uint64_t values[LIVE_SLOTS];                         // size << 16 | stack id
    _Atomic uint64_t index[STACK_INDEX_SLOTS];           // tag | stack id; 0 = empty
    stack_entry entries[STACK_CAPACITY];
} heap_tables;

static _Atomic(heap_tables *) tables;
_Atomic(_Atomic uint8_t *) cpprof_heap_live_occupancy; // &tables->occupancy[0], for free()'s filter
static _Atomic uint64_t next_entry;       // bump pointer into entries (may run past capacity)
static _Atomic uint64_t published_stacks;
static _Atomic uint64_t live_count;
static CPPROF_TLS uint32_t spare_entry;   // id + 1 of an entry reserved but not published

_Static_assert(STACK_CAPACITY <= STACK_ID_MASK, "stack ids must fit 16 bits");
_Static_assert(sizeof(uintptr_t) == 8, "64-bit only");

int cpprof_heap_tables_init(void) {
    if (atomic_load_explicit(&tables, memory_order_acquire) != NULL) return 0;
    void *mem = mmap(NULL, sizeof(heap_tables), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return -1;
    heap_tables *expected = NULL;
    if (!atomic_compare_exchange_strong_explicit(&tables, &expected, (heap_tables *)mem,
                                                 memory_order_acq_rel, memory_order_acquire))
        munmap(mem, sizeof(heap_tables)); // another thread won the race
    atomic_store_explicit(&cpprof_heap_live_occupancy, atomic_load(&tables)->occupancy,
                          memory_order_release);
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

int cpprof_heap_live_insert(uintptr_t addr, uint32_t stack, uint64_t size, int count_alloc) {
    heap_tables *t = atomic_load_explicit(&tables, memory_order_acquire);
    if (t == NULL || addr <= LIVE_BUSY) return 0;
    if (size > LIVE_SIZE_MAX) size = LIVE_SIZE_MAX;
    uint32_t b = cpprof_heap_bucket_of(addr);
    _Atomic uintptr_t *keys = &t->keys[b * LIVE_WAYS];
    uint64_t value = (size << 16) | stack;
    // A stale entry for this address means we missed its free: replace it.
    for (uint32_t i = 0; i < LIVE_WAYS; i++) {
        uintptr_t k = addr;
        if (atomic_load_explicit(&keys[i], memory_order_relaxed) == addr &&
            atomic_compare_exchange_strong(&keys[i], &k, LIVE_BUSY)) {
            uint64_t old = t->values[b * LIVE_WAYS + i];
            cpprof_heap_stack_count_free((uint32_t)(old & STACK_ID_MASK), old >> 16);
            t->values[b * LIVE_WAYS + i] = value;
            if (count_alloc) cpprof_heap_stack_count_alloc(stack, size); // before a free can see the key
            atomic_store_explicit(&keys[i], addr, memory_order_release);
            return 1;
        }
    }
    for (uint32_t i = 0; i < LIVE_WAYS; i++) {
        uintptr_t k = 0;
        if (atomic_load_explicit(&keys[i], memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&keys[i], &k, LIVE_BUSY)) {
            t->values[b * LIVE_WAYS + i] = value;
            atomic_fetch_add(&t->occupancy[b], 1); // before the key is visible
            atomic_fetch_add_explicit(&live_count, 1, memory_order_relaxed);
            if (count_alloc) cpprof_heap_stack_count_alloc(stack, size); // before a free can see the key
            atomic_store_explicit(&keys[i], addr, memory_order_release);
            return 1;
        }
    }
    return 0;
}

int cpprof_heap_live_remove(uintptr_t addr, uint32_t *stack, uint64_t *size) {
    heap_tables *t = atomic_load_explicit(&tables, memory_order_acquire);
    if (t == NULL) return 0;
    uint32_t b = cpprof_heap_bucket_of(addr);
    if (atomic_load_explicit(&t->occupancy[b], memory_order_relaxed) == 0) return 0;
    _Atomic uintptr_t *keys = &t->keys[b * LIVE_WAYS];
    for (uint32_t i = 0; i < LIVE_WAYS; i++) {
        uintptr_t k = addr;
        if (atomic_load_explicit(&keys[i], memory_order_relaxed) == addr &&
            atomic_compare_exchange_strong(&keys[i], &k, LIVE_BUSY)) {
            uint64_t value = t->values[b * LIVE_WAYS + i];
            *stack = (uint32_t)(value & STACK_ID_MASK);
            *size = value >> 16;
            atomic_fetch_sub(&t->occupancy[b], 1);
            atomic_fetch_sub_explicit(&live_count, 1, memory_order_relaxed);
            atomic_store_explicit(&keys[i], 0, memory_order_release);
            return 1;
        }
    }
    return 0;
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
    out->memory_bytes = atomic_load(&tables) != NULL ? sizeof(heap_tables) : 0;
}

#endif // CPPROF_HEAP_PROFILING
