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
