// Test hooks of CPprof, declared for the test target only: the library's
// own headers (Sources/CPprof/include) leave them out, so nothing but the
// tests can call them. They are defined in CPprof, next to what they reach
// into; this target holds no code of its own.
#ifndef CPPROF_TEST_HOOKS_H
#define CPPROF_TEST_HOOKS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Test hook: records one sample of the calling thread exactly as the
/// signal handler would, from the current registers. Returns 1 if recorded.
int cpprof_cpu_record_self_for_testing(void);

/// Test hook: the handler's frame-pointer walk, on arguments the test chooses.
uint32_t cpprof_walk_frames_for_testing(uintptr_t pc, uintptr_t fp, uintptr_t sp, uintptr_t stack_end,
                                        uint64_t *pcs, uint32_t max);

/// The return address of this call: an address inside the calling function.
uint64_t cpprof_caller_address_for_testing(void);

/// Blocks (1) or unblocks (0) the thread-dump signal in the calling thread;
/// installs the handler first if no dump ran yet. Returns 0 or an errno.
int cpprof_threads_block_signal_for_testing(int block);

/// Turns DWARF (libunwind) unwinding of thread dumps off (0) or on (1), to
/// exercise the frame-pointer fallback.
void cpprof_threads_set_dwarf_for_testing(int enabled);

/// Runs `hook` (NULL: none) in every dump after the stacks are copied and
/// before they are unwound, with the dump lock held: it must not dump.
void cpprof_threads_set_unwind_hook_for_testing(void (*hook)(void));

/// [start, end) of the function holding `addr`, from its unwind table (FDE).
/// Returns 1 if found (needs libunwind), else 0.
int cpprof_function_bounds_for_testing(uint64_t addr, uint64_t *start, uint64_t *end);

#ifdef __cplusplus
}
#endif

#endif
