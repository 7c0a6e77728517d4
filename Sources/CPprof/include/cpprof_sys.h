#ifndef CPPROF_SYS_H
#define CPPROF_SYS_H

#include <stdint.h>

/// gettid(2): Swift cannot call the variadic syscall().
int32_t cpprof_gettid(void);

/// Sets the calling thread's name (15 bytes at most are kept).
void cpprof_set_thread_name(const char *name);

/// Gives the calling thread the lowest nice value (19); 0 on success.
int cpprof_lower_thread_priority(void);

/// Returns the allocator's free memory to the kernel (glibc's malloc_trim);
/// no effect with other C libraries.
void cpprof_release_free_memory(void);

#endif
