// CPprof: the parts of swift-pprof that must be C: the SIGPROF handler, the
// frame-pointer walk it does, the lock-free ring it writes to, the per-thread
// CPU timers, the malloc interposer with its heap sampler, and thin wrappers
// for C macros that Swift cannot import.
// Every exported symbol carries the `cpprof_` prefix.
#ifndef CPPROF_H
#define CPPROF_H

#include "cpprof_async.h"
#include "cpprof_bench.h"
#include "cpprof_cpu.h"
#include "cpprof_gzip.h"
#include "cpprof_heap.h"
#include "cpprof_sys.h"
#include "cpprof_threads.h"

#endif
