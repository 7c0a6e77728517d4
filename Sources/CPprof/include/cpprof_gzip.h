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

/// A place where inflating a zlib stream can start again: a deflate block
/// boundary. Inflate resumes there given the output before it (up to 32 KiB,
/// the window back-references reach into) as its dictionary.
typedef struct cpprof_zpoint {
    uint64_t in_offset;  // stream bytes consumed at the boundary (a partly read byte included)
    uint64_t out_offset; // output bytes before the boundary
    int32_t bits;        // unread bits of the byte before in_offset (0-7)
} cpprof_zpoint;

/// Inflates a whole zlib stream into `out`, which holds exactly `out_len`
/// bytes (the size the ELF compression header gives), and records up to
/// `max_points` block boundaries at least `spacing` output bytes apart (none
/// at 0: the stream's start needs no point). Returns 0 and *count, or a
/// zlib error code (Z_DATA_ERROR also when the size is not `out_len`).
int cpprof_zlib_inflate_indexed(const uint8_t *in, size_t len, uint8_t *out, size_t out_len, size_t spacing,
                                cpprof_zpoint *points, size_t max_points, size_t *count);

/// Inflates the same stream's output up to `end` into `out` (which has room
/// for it), starting at `point` (NULL: the stream's start) with `window`,
/// the `window_len` output bytes before the point: writes out[point's
/// out_offset ..< end] only. Returns 0 or a zlib error code.
int cpprof_zlib_inflate_range(const uint8_t *in, size_t len, const cpprof_zpoint *point,
                              const uint8_t *window, size_t window_len, uint8_t *out, size_t end);

#endif
