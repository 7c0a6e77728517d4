#ifndef CPPROF_GZIP_H
#define CPPROF_GZIP_H

#include <stddef.h>
#include <stdint.h>

/// Compresses `len` bytes into a gzip member (zlib's deflateInit2 is a macro
/// Swift cannot call). On success returns 0 and a malloc'd buffer in *out
/// that the caller frees; otherwise a zlib error code.
int cpprof_gzip(const uint8_t *in, size_t len, int level, uint8_t **out, size_t *out_len);

/// Decompresses a gzip member (for tests and delta profiles). Same contract.
int cpprof_gunzip(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len);

#endif
