// A bounded multi-producer, single-consumer queue (Vyukov's sequence-number
// design): signal handlers on any thread claim and publish cells with atomics
// only; the collector drains them. A full ring drops the sample, never blocks.
#include "internal.h"
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define RING_CELLS 4096u // power of two; ~4 MiB of address space, touched on use

typedef struct ring_cell {
    _Atomic uint64_t seq;
    cpprof_sample sample;
} ring_cell;

static ring_cell *ring;          // never unmapped: a late handler may still write
static _Atomic uint64_t enqueue_pos;
// Consumer only; consumers are serialised by the caller (CPUProfiler's
// Mutex). Atomic, with relaxed accesses, only because ThreadSanitizer cannot
// see Swift's Synchronization.Mutex and would report two drains as a race.
static _Atomic uint64_t dequeue_pos;

int cpprof_ring_init(void) {
    if (ring != NULL) return 0;
    void *mem = mmap(NULL, sizeof(ring_cell) * RING_CELLS, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return errno;
    ring_cell *cells = mem;
    for (uint64_t i = 0; i < RING_CELLS; i++) atomic_store(&cells[i].seq, i);
    atomic_store(&enqueue_pos, 0);
    atomic_store_explicit(&dequeue_pos, 0, memory_order_relaxed);
    ring = cells;
    return 0;
}

cpprof_sample *cpprof_ring_claim(uint64_t *ticket) {
    if (ring == NULL) return NULL;
    uint64_t pos = atomic_load_explicit(&enqueue_pos, memory_order_relaxed);
    for (;;) {
        ring_cell *cell = &ring[pos & (RING_CELLS - 1)];
        uint64_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
        int64_t diff = (int64_t)seq - (int64_t)pos;
        if (diff == 0) {
            if (atomic_compare_exchange_weak_explicit(&enqueue_pos, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed)) {
                *ticket = pos;
                return &cell->sample;
            }
        } else if (diff < 0) {
            return NULL; // full
        } else {
            pos = atomic_load_explicit(&enqueue_pos, memory_order_relaxed);
        }
    }
}

void cpprof_ring_publish(uint64_t ticket) {
    ring_cell *cell = &ring[ticket & (RING_CELLS - 1)];
    atomic_store_explicit(&cell->seq, ticket + 1, memory_order_release);
}

size_t cpprof_ring_drain(cpprof_sample *out, size_t max) {
    if (ring == NULL) return 0;
    size_t n = 0;
    uint64_t pos = atomic_load_explicit(&dequeue_pos, memory_order_relaxed);
    while (n < max) {
        ring_cell *cell = &ring[pos & (RING_CELLS - 1)];
        uint64_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
        if ((int64_t)seq - (int64_t)(pos + 1) < 0) break; // not yet published
        const cpprof_sample *s = &cell->sample;
        out[n].tid = s->tid;
        out[n].depth = s->depth;
        out[n].weight = s->weight;
        memcpy(out[n].pcs, s->pcs, sizeof(uint64_t) * s->depth);
        n++;
        atomic_store_explicit(&cell->seq, pos + RING_CELLS, memory_order_release);
        pos++;
    }
    atomic_store_explicit(&dequeue_pos, pos, memory_order_relaxed);
    return n;
}

void cpprof_ring_reset_after_fork(void) {
    // A cell claimed by a thread that does not exist in the child would
    // stall the ring forever: start empty.
    if (ring == NULL) return;
    for (uint64_t i = 0; i < RING_CELLS; i++) atomic_store(&ring[i].seq, i);
    atomic_store(&enqueue_pos, 0);
    dequeue_pos = 0;
}
