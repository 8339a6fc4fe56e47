/*
 * fuzz_archive.c - stored objects (zstd-compressed pax tar) are outside input: a repository
 * can hold anything. An input that starts with the zstd frame magic is taken as a stored
 * object as it is (the zstd layer is fuzzed); any other input is taken as the tar inside one
 * and compressed here first, so that mutations reach libarchive's reader and our name checks
 * instead of mostly breaking zstd frames. The object goes through engine_verify, then
 * engine_restore_dir into a private temporary directory, with an expectation whose SHA-256
 * and size match the object (so that the name checks, libarchive's reader and the
 * extraction are all reached) and whose counts cannot match (so that every restore ends in
 * the failure path that removes staging). Nothing may crash, leak, or be left behind.
 */
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "engine.h"
#include "fs_rmtree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct src {
    const uint8_t *p;
    size_t len, pos;
};

static ssize_t src_read(void *ctx, void *buf, size_t len, ord_err *e)
{
    struct src *s = ctx;
    size_t n = s->len - s->pos;

    (void)e;
    if (n > len)
        n = len;
    memcpy(buf, s->p + s->pos, n);
    s->pos += n;
    return (ssize_t)n;
}

static char workdir[64];
static int workfd = -1;

static void cleanup(void)
{
    int pfd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (pfd >= 0 && workdir[0])
        (void)fs_rmtree_at(pfd, strrchr(workdir, '/') + 1, NULL);
    if (pfd >= 0)
        close(pfd);
}

/* The input as a stored object: itself if it is a zstd frame, else compressed (malloc'ed). */
static uint8_t *stored_object(const uint8_t *data, size_t size, size_t *ret_len)
{
    static const uint8_t magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    static ZSTD_CCtx *cctx;
    size_t cap = ZSTD_compressBound(size), n;
    uint8_t *out;

    if (size >= 4 && memcmp(data, magic, 4) == 0) {
        out = malloc(size ? size : 1);
        if (!out)
            abort();
        memcpy(out, data, size);
        *ret_len = size;
        return out;
    }
    if (!cctx) {
        cctx = ZSTD_createCCtx();
        if (!cctx || ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)))
            abort();
    }
    out = malloc(cap);
    if (!out)
        abort();
    n = ZSTD_compress2(cctx, out, cap, data, size);
    if (ZSTD_isError(n))
        abort();
    *ret_len = n;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    char hex[ENGINE_SHA256_HEX], staging[128];
    size_t len;
    uint8_t *obj = stored_object(data, size, &len);
    struct src s = {obj, len, 0};
    struct byte_source bs = {src_read, &s};
    ord_err e = {0};

    if (workfd < 0) {
        snprintf(workdir, sizeof(workdir), "/tmp/ordinal-fuzz-archive-XXXXXX");
        if (!mkdtemp(workdir))
            abort();
        workfd = open(workdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        atexit(cleanup);
    }
    if (EVP_Digest(obj, len, md, &mdlen, EVP_sha256(), NULL) != 1)
        abort();
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);

    struct engine_expect x = {VOLUME_DIRECTORY, hex, len, UINT64_MAX - 1, UINT64_MAX};
    (void)engine_verify(&bs, &x, &e);

    s.pos = 0;
    snprintf(staging, sizeof(staging), "%s/stage", workdir);
    if (engine_restore_dir(&bs, &x, staging, NULL, &e) >= 0)
        abort(); /* the counts cannot match */
    if (faccessat(workfd, "stage", F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        abort(); /* a failed restore must not leave staging behind */
    free(obj);
    return 0;
}
