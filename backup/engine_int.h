/*
 * engine_int.h - internals shared by the archive engine's modules (engine_*.c). Not for use
 * outside the engine: only the engine includes libarchive and libzstd.
 *
 *   engine_zstd.c     zstd compression into a byte_sink and decompression from a byte_source,
 *                     with the SHA-256 of the stored (compressed) bytes computed on the way
 *   engine_backup.c   directory walk and device image -> pax tar -> zsink
 *   engine_restore.c  zsource -> pax tar -> verify / staging directory / block device
 *   engine_swap.c     the atomic exchange of staging and live
 */
#ifndef ORDINAL_ENGINE_INT_H
#define ORDINAL_ENGINE_INT_H

#include <archive.h>
#include <pthread.h>
#include <archive_entry.h>
#include <stdbool.h>
#include <stdint.h>
#include <zstd.h>

#include "engine.h"

/*
 * Read/write chunk for file and device data (and the zstd output buffer size). The libFuzzer
 * build uses 64 KiB: under ASan each 1 MiB buffer costs shadow poisoning and page faults for
 * every input (it held fuzz_archive to ~50 inputs a second), and small buffers put buffer
 * boundaries inside small inputs.
 */
#ifdef ORDINAL_FUZZ_BUILD
#define ENGINE_BUF_SIZE (64u << 10)
#else
#define ENGINE_BUF_SIZE (1u << 20)
#endif
/* Device images: zero runs of this granularity (aligned) become holes. */
#define ENGINE_HOLE_GRAIN (64u << 10)
/* Upper bound on sparse-map entries per file, so that a fragmented file or device cannot
 * make the header (and our memory) grow without limit; beyond it, holes are merged. */
#define ENGINE_SPARSE_MAX 65536
/* Decompression window limit: levels 1..19 use at most 2^23; refuse hostile larger ones. */
#define ENGINE_WINDOW_LOG_MAX 24
/* Smallest zstd job (multithreaded compression): see engine_zstd.c. */
#define ENGINE_JOB_MIN (2u << 20)
/* Default number of zstd workers when compress_opts.threads == 0 (measured, see
 * docs/internals/backup-engine.md). */
#define ENGINE_DEFAULT_WORKERS_MAX 8

DEFINE_TRIVIAL_CLEANUP_FUNC(struct archive *, archive_write_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct archive *, archive_read_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct archive_entry *, archive_entry_free)

/* Compressing sink: bytes in -> zstd frame with checksum -> SHA-256 -> byte_sink. */
struct zsink {
    ZSTD_CCtx *cctx;
    const struct byte_sink *sink;
    void *md; /* EVP_MD_CTX */
    uint8_t *out;
    size_t out_cap;
    uint64_t bytes_stored;
    int workers;
    bool discard; /* after a failure: swallow what libarchive still writes while closing */
    ord_err err;  /* first failure, with its message */
};

int zsink_init(struct zsink *z, const struct compress_opts *opts, const struct byte_sink *sink);
int zsink_write(struct zsink *z, const void *buf, size_t len);
/* Ends the frame and flushes; fills hex with the SHA-256 of everything pushed to the sink. */
int zsink_finish(struct zsink *z, char hex[ENGINE_SHA256_HEX]);
void zsink_done(struct zsink *z);

/*
 * Decompressing source: byte_source -> SHA-256 -> zstd (checks frame checksums) -> bytes.
 * A helper thread reads the source, hashes and decompresses into a ring of ZSOURCE_SLOTS
 * blocks while the caller's thread parses the tar and writes files; the source's read is
 * called from that thread only (never concurrently). Without threads it runs inline.
 */
#define ZSOURCE_SLOTS 4
struct zsource {
    ZSTD_DCtx *dctx;
    const struct byte_source *src;
    void *md;
    uint8_t *in;
    size_t in_cap;
    ZSTD_inBuffer inb;
    uint8_t *out; /* ZSOURCE_SLOTS blocks of ENGINE_BUF_SIZE */
    uint64_t bytes_stored;
    size_t last_ret;  /* last ZSTD_decompressStream result: 0 = at a frame boundary */
    bool pending;     /* the last call filled its output: zstd may hold more */
    bool src_eof;
    bool any_frame;
    ord_err err;      /* written by the producer; read by the consumer once it is done */
    /* the ring (under mu) */
    bool locks, threaded, stop, done, holding;
    int perr;
    size_t head, count, len[ZSOURCE_SLOTS];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond_data, cond_free;
};

int zsource_init(struct zsource *z, const struct byte_source *src);
/* Next decompressed block: returns its length (0 at the end), *ret_buf points inside z. */
ssize_t zsource_read(struct zsource *z, const void **ret_buf);
/* Stops the helper thread (idempotent): call before reading z->err on an error path. */
void zsource_stop(struct zsource *z);
/* Reads to the end of the object, requiring that anything left after the tar is zeros. */
int zsource_drain(struct zsource *z);
/* After the end: the SHA-256 of all stored bytes read. */
int zsource_digest(struct zsource *z, char hex[ENGINE_SHA256_HEX]);
void zsource_done(struct zsource *z);

/* libarchive client callbacks over a zsink/zsource. */
int engine_archive_open_write(struct archive *a, struct zsink *z);
int engine_archive_open_read(struct archive *a, struct zsource *z);

/*
 * The message for a failed libarchive call: the zsink/zsource's own error when it has one (it
 * is more precise: "zstd: checksum wrong"), else archive_error_string(). Returns the code.
 */
int engine_archive_err(struct archive *a, const ord_err *inner, ord_err *e, const char *what);

/* Opens the parent directory of path (engine_swap.c); *ret_base points into path at its last
 * component, which must be a plain name. */
int engine_open_parent(const char *path, int *ret_fd, const char **ret_base, ord_err *e);

/*
 * Test seam: when set, called after each read of a small file and before its fstat, with
 * the attempt number (1..). Unit tests use it to change a file at a precise moment. NULL in
 * production.
 */
extern void (*engine_test_reread_hook)(const char *path, int attempt);

/* Wall-clock seconds (monotonic). */
double engine_now(void);

#endif
