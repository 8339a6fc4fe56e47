/*
 * engine_zstd.c - the stored bytes: zstd compression with checksummed frames, driven by us
 * rather than by libarchive's zstd filter (which in 3.6 cannot turn on frame checksums), and
 * the SHA-256 of the compressed bytes, computed as they go to the sink or come from the
 * source. libarchive only ever sees an uncompressed tar through the client callbacks below.
 *
 * Memory is bounded: one output buffer here, zstd's own context (its window and, with
 * workers, a few job buffers; see ENGINE_WINDOW_LOG_MAX for the reading side).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zstd_errors.h>

#include "engine_int.h"

double engine_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void hex_digest(const unsigned char *md, unsigned int len, char hex[ENGINE_SHA256_HEX])
{
    static const char digits[] = "0123456789abcdef";

    for (unsigned int i = 0; i < len && 2 * i + 1 < ENGINE_SHA256_HEX; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0xf];
    }
    hex[ENGINE_SHA256_HEX - 1] = '\0';
}

static int md_new(void **ret)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();

    if (!md)
        return -ENOMEM;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return -EIO;
    }
    *ret = md;
    return 0;
}

static int md_final(void *md, char hex[ENGINE_SHA256_HEX])
{
    unsigned char buf[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (EVP_DigestFinal_ex(md, buf, &len) != 1 || len != 32)
        return -EIO;
    hex_digest(buf, len, hex);
    return 0;
}

/* Workers for compression: the option, or the measured default (ENGINE_DEFAULT_WORKERS_MAX). */
static int pick_workers(int threads)
{
    long cpus;

    if (threads > 0)
        return threads;
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    return (int)MIN(cpus, (long)ENGINE_DEFAULT_WORKERS_MAX);
}

int zsink_init(struct zsink *z, const struct compress_opts *opts, const struct byte_sink *sink)
{
    int level = opts && opts->level ? opts->level : 3;
    size_t r;

    memset(z, 0, sizeof(*z));
    z->sink = sink;
    if (level < 1 || level > 19)
        return err_set(&z->err, -EINVAL, "zstd level %d is out of range 1..19", level);
    z->workers = pick_workers(opts ? opts->threads : 0);
    z->cctx = ZSTD_createCCtx();
    z->out_cap = ZSTD_CStreamOutSize();
    z->out = malloc(z->out_cap);
    if (!z->cctx || !z->out || md_new(&z->md) < 0)
        return err_set(&z->err, -ENOMEM, "out of memory setting up zstd");
    r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r) && z->workers > 0) {
        r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_nbWorkers, z->workers);
        /* A libzstd built without threads refuses workers: compress in this thread. */
        if (ZSTD_isError(r)) {
            z->workers = 0;
            r = 0;
        }
    }
    if (!ZSTD_isError(r) && z->workers > 0) {
        /*
         * The default jobs (4 windows, 1/8 overlap) hold ~16 MiB each in flight at level 3,
         * which broke the 64 MiB RSS budget, and compress worse. Up to 2 workers: jobs of two
         * windows with a one-window overlap (half the overlap work of one-window jobs: ~5% less
         * CPU, stored size 0.996 of the pipe's, 45 MiB peak with 2 workers); more workers:
         * one-window jobs with a full-window overlap (~9 MiB less per worker: 3 workers would
         * be at 54 MiB, 8 are at 51-55 MiB). Measured figures in
         * docs/internals/backup-engine.md.
         */
        bool big = z->workers <= 2;
        int job = level <= 5 ? (int)ENGINE_JOB_MIN << big : 8 << 20; /* window: 2 to 8 MiB */
        r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_jobSize, job);
        if (!ZSTD_isError(r))
            r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_overlapLog, big && level <= 5 ? 8 : 9);
    }
    if (ZSTD_isError(r))
        return err_set(&z->err, -EINVAL, "zstd: %s", ZSTD_getErrorName(r));
    return 0;
}

static int zsink_push(struct zsink *z, size_t len)
{
    int r;

    if (len == 0)
        return 0;
    if (EVP_DigestUpdate(z->md, z->out, len) != 1)
        return err_set(&z->err, -EIO, "SHA-256 update failed");
    r = z->sink->write(z->sink->ctx, z->out, len, &z->err);
    if (r < 0) {
        if (!z->err.code)
            err_set_errno(&z->err, r, "writing the stored object");
        return r;
    }
    z->bytes_stored += len;
    return 0;
}

static int zsink_run(struct zsink *z, const void *buf, size_t len, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {buf, len, 0};

    if (z->err.code)
        return z->err.code;
    for (;;) {
        ZSTD_outBuffer out = {z->out, z->out_cap, 0};
        size_t rem = ZSTD_compressStream2(z->cctx, &out, &in, mode);
        int r;

        if (ZSTD_isError(rem))
            return err_set(&z->err, -EIO, "zstd compression: %s", ZSTD_getErrorName(rem));
        r = zsink_push(z, out.pos);
        if (r < 0)
            return r;
        if (mode == ZSTD_e_end) {
            if (rem == 0)
                return 0;
        } else if (in.pos == in.size && out.pos < out.size) {
            return 0;
        }
    }
}

int zsink_write(struct zsink *z, const void *buf, size_t len)
{
    return zsink_run(z, buf, len, ZSTD_e_continue);
}

int zsink_finish(struct zsink *z, char hex[ENGINE_SHA256_HEX])
{
    int r = zsink_run(z, NULL, 0, ZSTD_e_end);

    if (r < 0)
        return r;
    if (md_final(z->md, hex) < 0)
        return err_set(&z->err, -EIO, "SHA-256 final failed");
    return 0;
}

void zsink_done(struct zsink *z)
{
    ZSTD_freeCCtx(z->cctx);
    EVP_MD_CTX_free(z->md);
    free(z->out);
    z->cctx = NULL;
    z->md = NULL;
    z->out = NULL;
}

static void *zsource_producer(void *arg);

int zsource_init(struct zsource *z, const struct byte_source *src)
{
    size_t r;

    memset(z, 0, sizeof(*z));
    z->src = src;
    z->dctx = ZSTD_createDCtx();
    z->in_cap = ZSTD_DStreamInSize();
    z->in = malloc(z->in_cap);
    z->out = malloc((size_t)ZSOURCE_SLOTS * ENGINE_BUF_SIZE);
    if (!z->dctx || !z->in || !z->out || md_new(&z->md) < 0)
        return err_set(&z->err, -ENOMEM, "out of memory setting up zstd");
    r = ZSTD_DCtx_setParameter(z->dctx, ZSTD_d_windowLogMax, ENGINE_WINDOW_LOG_MAX);
    if (ZSTD_isError(r))
        return err_set(&z->err, -EINVAL, "zstd: %s", ZSTD_getErrorName(r));
    z->inb.src = z->in;
    pthread_mutex_init(&z->mu, NULL);
    pthread_cond_init(&z->cond_data, NULL);
    pthread_cond_init(&z->cond_free, NULL);
    z->locks = true;
    /* Without a thread (creation failed) everything runs inline in zsource_read. */
    z->threaded = pthread_create(&z->thread, NULL, zsource_producer, z) == 0;
    return 0;
}

/* Refills the input buffer from the source; sets src_eof at the end. */
static int zsource_fill(struct zsource *z)
{
    ssize_t n;

    if (z->src_eof)
        return 0;
    n = z->src->read(z->src->ctx, z->in, z->in_cap, &z->err);
    if (n < 0) {
        if (!z->err.code)
            err_set_errno(&z->err, (int)n, "reading the stored object");
        return (int)n;
    }
    if ((size_t)n > z->in_cap)
        return err_set(&z->err, -EIO, "the object source returned more than asked");
    if (n == 0) {
        z->src_eof = true;
        return 0;
    }
    if (EVP_DigestUpdate(z->md, z->in, (size_t)n) != 1)
        return err_set(&z->err, -EIO, "SHA-256 update failed");
    z->bytes_stored += (uint64_t)n;
    z->inb.size = (size_t)n;
    z->inb.pos = 0;
    return 0;
}

/*
 * Decompresses up to cap bytes into dst. Returns: the count (short only at the end; 0 at the
 * end), or a negative errno with z->err filled. Runs in one thread at a time.
 */
static ssize_t zsource_decompress(struct zsource *z, uint8_t *dst, size_t cap)
{
    size_t got = 0;

    if (z->err.code)
        return z->err.code;
    while (got < cap) {
        ZSTD_outBuffer out = {dst + got, cap - got, 0};
        size_t rem;
        int r;

        if (z->inb.pos == z->inb.size && !z->pending) {
            r = zsource_fill(z);
            if (r < 0)
                return r;
            if (z->src_eof) {
                if (!z->any_frame)
                    return err_set(&z->err, -EBADMSG, "the stored object is empty");
                if (z->last_ret != 0)
                    return err_set(&z->err, -EBADMSG,
                                   "the stored object is truncated (zstd frame incomplete)");
                break;
            }
        }
        rem = ZSTD_decompressStream(z->dctx, &out, &z->inb);
        if (ZSTD_isError(rem)) {
            ZSTD_ErrorCode c = ZSTD_getErrorCode(rem);
            return err_set(&z->err, -EBADMSG, "the stored object is corrupt (zstd: %s%s)",
                           ZSTD_getErrorName(rem),
                           c == ZSTD_error_checksum_wrong ? ", frame checksum mismatch" : "");
        }
        z->pending = out.pos == out.size;
        z->any_frame = true;
        z->last_ret = rem;
        got += out.pos;
    }
    return (ssize_t)got;
}

/* The helper thread: fills free slots of the ring until the end, an error, or stop. */
static void *zsource_producer(void *arg)
{
    struct zsource *z = arg;

    for (;;) {
        size_t slot;
        ssize_t n;

        pthread_mutex_lock(&z->mu);
        while (z->count == ZSOURCE_SLOTS && !z->stop)
            pthread_cond_wait(&z->cond_free, &z->mu);
        if (z->stop) {
            pthread_mutex_unlock(&z->mu);
            return NULL;
        }
        slot = (z->head + z->count) % ZSOURCE_SLOTS;
        pthread_mutex_unlock(&z->mu);

        n = zsource_decompress(z, z->out + slot * ENGINE_BUF_SIZE, ENGINE_BUF_SIZE);

        pthread_mutex_lock(&z->mu);
        if (n <= 0) {
            z->perr = (int)n;
            z->done = true;
            pthread_cond_signal(&z->cond_data);
            pthread_mutex_unlock(&z->mu);
            return NULL;
        }
        z->len[slot] = (size_t)n;
        z->count++;
        pthread_cond_signal(&z->cond_data);
        pthread_mutex_unlock(&z->mu);
    }
}

ssize_t zsource_read(struct zsource *z, const void **ret_buf)
{
    ssize_t n;

    if (!z->threaded) {
        n = zsource_decompress(z, z->out, ENGINE_BUF_SIZE);
        if (n > 0)
            *ret_buf = z->out;
        return n;
    }
    pthread_mutex_lock(&z->mu);
    if (z->holding) {
        /* The caller is done with the block handed out last time. */
        z->head = (z->head + 1) % ZSOURCE_SLOTS;
        z->count--;
        z->holding = false;
        pthread_cond_signal(&z->cond_free);
    }
    while (z->count == 0 && !z->done)
        pthread_cond_wait(&z->cond_data, &z->mu);
    if (z->count == 0) {
        n = z->perr;
    } else {
        *ret_buf = z->out + z->head * ENGINE_BUF_SIZE;
        n = (ssize_t)z->len[z->head];
        z->holding = true;
    }
    pthread_mutex_unlock(&z->mu);
    return n;
}

/* Stops and joins the helper thread; afterwards its fields may be read freely. */
void zsource_stop(struct zsource *z)
{
    if (!z->threaded)
        return;
    pthread_mutex_lock(&z->mu);
    z->stop = true;
    pthread_cond_broadcast(&z->cond_free);
    pthread_mutex_unlock(&z->mu);
    pthread_join(z->thread, NULL);
    z->threaded = false;
}

int zsource_drain(struct zsource *z)
{
    for (;;) {
        const void *buf = NULL; /* set when n > 0; -O3 cannot see it */
        ssize_t n = zsource_read(z, &buf);

        if (n < 0) {
            zsource_stop(z);
            return (int)n;
        }
        if (n == 0)
            return 0;
        for (ssize_t i = 0; i < n; i++)
            if (((const uint8_t *)buf)[i] != 0) {
                zsource_stop(z);
                return err_set(&z->err, -EBADMSG,
                               "the stored object has data after the end of the archive");
            }
    }
}

int zsource_digest(struct zsource *z, char hex[ENGINE_SHA256_HEX])
{
    zsource_stop(z);
    if (md_final(z->md, hex) < 0)
        return err_set(&z->err, -EIO, "SHA-256 final failed");
    return 0;
}

void zsource_done(struct zsource *z)
{
    zsource_stop(z);
    ZSTD_freeDCtx(z->dctx);
    EVP_MD_CTX_free(z->md);
    free(z->in);
    free(z->out);
    if (z->locks) {
        z->locks = false;
        pthread_mutex_destroy(&z->mu);
        pthread_cond_destroy(&z->cond_data);
        pthread_cond_destroy(&z->cond_free);
    }
    z->dctx = NULL;
    z->md = NULL;
    z->in = z->out = NULL;
}

static la_ssize_t la_write(struct archive *a, void *ctx, const void *buf, size_t len)
{
    struct zsink *z = ctx;

    if (z->discard)
        return (la_ssize_t)len;
    if (zsink_write(z, buf, len) < 0) {
        archive_set_error(a, EIO, "%s", err_msg(&z->err));
        return -1;
    }
    return (la_ssize_t)len;
}

int engine_archive_open_write(struct archive *a, struct zsink *z)
{
    /* Large blocks to the callback (fewer zstd calls); no padding of the last block, the
     * zstd frame carries the exact length. */
    if (archive_write_set_bytes_per_block(a, 64 * 1024) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK)
        return -EINVAL;
    if (archive_write_open2(a, z, NULL, la_write, NULL, NULL) != ARCHIVE_OK)
        return -EIO;
    return 0;
}

static la_ssize_t la_read(struct archive *a, void *ctx, const void **buf)
{
    struct zsource *z = ctx;
    ssize_t n = zsource_read(z, buf);

    if (n < 0) {
        archive_set_error(a, EIO, "%s", err_msg(&z->err));
        return -1;
    }
    return n;
}

int engine_archive_open_read(struct archive *a, struct zsource *z)
{
    if (archive_read_open2(a, z, NULL, la_read, NULL, NULL) != ARCHIVE_OK)
        return -EIO;
    return 0;
}

int engine_archive_err(struct archive *a, const ord_err *inner, ord_err *e, const char *what)
{
    if (inner && inner->code)
        return err_set(e, inner->code, "%s: %s", what, inner->msg);
    int eno = a ? archive_errno(a) : 0;
    const char *s = a ? archive_error_string(a) : NULL;
    return err_set(e, eno > 0 ? -eno : -EIO, "%s: %s", what, s ? s : "libarchive error");
}
