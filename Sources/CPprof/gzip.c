// gzip through system zlib; deflateInit2/inflateInit2 are macros Swift cannot call.
#include "include/cpprof_gzip.h"
#include <stdlib.h>
#include <zlib.h>

int cpprof_gzip(const uint8_t *in, size_t len, int level, uint8_t **out, size_t *out_len) {
    if (len > (size_t)UINT32_MAX) return Z_BUF_ERROR; // zlib's lengths are 32-bit
    z_stream zs = {0};
    int rc = deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    if (rc != Z_OK) return rc;
    uLong bound = deflateBound(&zs, (uLong)len) + 32;
    uint8_t *buf = malloc(bound);
    if (buf == NULL) { deflateEnd(&zs); return Z_MEM_ERROR; }
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = buf;
    zs.avail_out = (uInt)bound;
    rc = deflate(&zs, Z_FINISH);
    if (rc != Z_STREAM_END) { deflateEnd(&zs); free(buf); return rc == Z_OK ? Z_BUF_ERROR : rc; }
    *out_len = zs.total_out;
    *out = buf;
    deflateEnd(&zs);
    return Z_OK;
}

int cpprof_gunzip(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len) {
    if (len > (size_t)UINT32_MAX) return Z_BUF_ERROR;
    z_stream zs = {0};
    int rc = inflateInit2(&zs, 15 + 32);
    if (rc != Z_OK) return rc;
    size_t cap = len * 4 + 1024, n = 0;
    uint8_t *buf = malloc(cap);
    if (buf == NULL) { inflateEnd(&zs); return Z_MEM_ERROR; }
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    for (;;) {
        if (n == cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) { inflateEnd(&zs); free(buf); return Z_MEM_ERROR; }
            buf = bigger; cap *= 2;
        }
        zs.next_out = buf + n;
        zs.avail_out = (uInt)(cap - n);
        rc = inflate(&zs, Z_NO_FLUSH);
        n = cap - zs.avail_out;
        if (rc == Z_STREAM_END) break;
        if (rc != Z_OK) { inflateEnd(&zs); free(buf); return rc == Z_BUF_ERROR ? Z_DATA_ERROR : rc; }
    }
    inflateEnd(&zs);
    *out = buf;
    *out_len = n;
    return Z_OK;
}

// --- inflating from a point inside the stream --------------------------------
//
// A compressed debug section is inflated whole once; block boundaries are
// noted on the way. Later, a range of it is inflated from the nearest
// boundary before it: raw inflate primed with the boundary's leftover bits
// and given the 32 KiB of output before it as its dictionary (deflate's
// back-references reach no further). The caller keeps those windows.

int cpprof_zlib_inflate_indexed(const uint8_t *in, size_t len, uint8_t *out, size_t out_len, size_t spacing,
                                cpprof_zpoint *points, size_t max_points, size_t *count) {
    *count = 0;
    if (len > (size_t)UINT32_MAX || out_len > (size_t)UINT32_MAX) return Z_BUF_ERROR;
    z_stream zs = {0};
    int rc = inflateInit2(&zs, 15); // a zlib stream, as ELF's SHF_COMPRESSED and .zdebug_ hold
    if (rc != Z_OK) return rc;
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)out_len;
    uint64_t last = 0;
    size_t n = 0;
    for (;;) {
        rc = inflate(&zs, Z_BLOCK); // returns at each block's end
        if (rc == Z_STREAM_END) break;
        if (rc != Z_OK) { inflateEnd(&zs); return rc == Z_BUF_ERROR ? Z_DATA_ERROR : rc; }
        // data_type: bit 7 at a block's end, bit 6 if it was the last one,
        // bits 0-2 the unread bits of the last byte taken.
        int at_boundary = (zs.data_type & 128) && !(zs.data_type & 64);
        if (at_boundary && n < max_points && zs.total_out - last >= spacing) {
            points[n++] = (cpprof_zpoint){zs.total_in, zs.total_out, zs.data_type & 7};
            last = zs.total_out;
        }
    }
    int whole = zs.total_out == out_len;
    inflateEnd(&zs);
    if (!whole) return Z_DATA_ERROR;
    *count = n;
    return Z_OK;
}

int cpprof_zlib_inflate_range(const uint8_t *in, size_t len, const cpprof_zpoint *point,
                              const uint8_t *window, size_t window_len, uint8_t *out, size_t end) {
    if (len > (size_t)UINT32_MAX || end > (size_t)UINT32_MAX) return Z_BUF_ERROR;
    z_stream zs = {0};
    size_t at = 0, start = 0;
    int rc;
    if (point == NULL) {
        rc = inflateInit2(&zs, 15);
        if (rc != Z_OK) return rc;
    } else {
        if (point->in_offset > len || point->out_offset > end || (point->bits && point->in_offset == 0)) return Z_DATA_ERROR;
        rc = inflateInit2(&zs, -15); // raw deflate: no header in the middle of the stream
        if (rc != Z_OK) return rc;
        at = (size_t)point->in_offset;
        if (point->bits) {
            at--;
            rc = inflatePrime(&zs, point->bits, in[at] >> (8 - point->bits));
            at++;
        }
        if (rc == Z_OK && window_len > 0) rc = inflateSetDictionary(&zs, window, (uInt)window_len);
        if (rc != Z_OK) { inflateEnd(&zs); return rc; }
        start = (size_t)point->out_offset;
    }
    zs.next_in = (Bytef *)in + at;
    zs.avail_in = (uInt)(len - at);
    zs.next_out = out + start;
    zs.avail_out = (uInt)(end - start);
    while (zs.avail_out > 0) {
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) break;
        if (rc != Z_OK) { inflateEnd(&zs); return rc == Z_BUF_ERROR ? Z_DATA_ERROR : rc; }
    }
    int complete = zs.avail_out == 0;
    inflateEnd(&zs);
    return complete ? Z_OK : Z_DATA_ERROR;
}
