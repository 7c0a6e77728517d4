// CPprofTestHooks is its header (include/cpprof_test_hooks.h): a C target
// needs one source file. The hooks themselves are defined in CPprof.
#include "cpprof_test_hooks.h"
