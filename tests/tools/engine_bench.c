/*
 * engine_bench.c - drives the archive engine from the command line, for the benchmark
 * (tests/bench/backup.sh) and for poking at it by hand. Not installed.
 *
 *   engine_bench backup  DIR|DEV OBJECT [--device] [--level N] [--threads N]
 *       prints "sha256 bytes_stored bytes_in files seconds" and one "changed\t<path>\t<reason>"
 *       line per changed file
 *   engine_bench verify  OBJECT SHA256 BYTES_STORED BYTES_IN FILES [--device]
 *   engine_bench restore OBJECT STAGING SHA256 BYTES_STORED BYTES_IN FILES
 *   engine_bench restore-device OBJECT DEV SHA256 BYTES_STORED BYTES_IN FILES
 *   engine_bench swap LIVE STAGING
 *
 * Exit 0 on success, 1 on failure (message on stderr), 2 on usage errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

static int fd_write(void *ctx, const void *buf, size_t len, ord_err *e)
{
    int fd = *(int *)ctx;

    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return err_set_errno(e, -errno, "write");
        }
        buf = (const char *)buf + n;
        len -= (size_t)n;
    }
    return 0;
}

static ssize_t fd_read(void *ctx, void *buf, size_t len, ord_err *e)
{
    int fd = *(int *)ctx;
    ssize_t n;

    do
        n = read(fd, buf, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return err_set_errno(e, -errno, "read");
    return n;
}

static int parse_u64(const char *s, uint64_t *ret)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end)
        return -EINVAL;
    *ret = v;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: see the header of tests/tools/engine_bench.c\n");
    return 2;
}

static int fail(const ord_err *e)
{
    fprintf(stderr, "engine_bench: %s\n", err_msg(e));
    return 1;
}

int main(int argc, char **argv)
{
    ord_err e = {0};
    int fd, r;

    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "backup") == 0) {
        struct compress_opts o = {.level = 3, .threads = 0};
        enum volume_kind kind = VOLUME_DIRECTORY;
        struct engine_stats st = {0};
        struct byte_sink sink = {fd_write, &fd};
        uint64_t v;

        if (argc < 4)
            return usage();
        for (int i = 4; i < argc; i++) {
            if (strcmp(argv[i], "--device") == 0)
                kind = VOLUME_DEVICE;
            else if (strcmp(argv[i], "--level") == 0 && i + 1 < argc && parse_u64(argv[i + 1], &v) == 0 && v <= 22)
                o.level = (int)v, i++;
            else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc && parse_u64(argv[i + 1], &v) == 0 && v <= 64)
                o.threads = (int)v, i++;
            else
                return usage();
        }
        fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            return perror(argv[3]), 1;
        r = engine_backup(argv[2], kind, &o, &sink, NULL, NULL, &st, &e);
        if (r < 0)
            return fail(&e);
        /* No fsync: the benchmark compares with a shell pipe that does not sync either. */
        if (close(fd) < 0)
            return perror(argv[3]), 1;
        printf("%s %llu %llu %llu %.3f\n", st.sha256, (unsigned long long)st.bytes_stored,
               (unsigned long long)st.bytes_in, (unsigned long long)st.files, st.seconds);
        for (size_t i = 0; i < st.n_changed; i++)
            printf("changed\t%s\t%s\n", st.changed[i].path, st.changed[i].reason);
        engine_stats_free(&st);
        return 0;
    }
    if (strcmp(argv[1], "swap") == 0) {
        if (argc != 4)
            return usage();
        return engine_swap(argv[2], argv[3], &e) < 0 ? fail(&e) : 0;
    }

    /* verify / restore / restore-device: OBJECT [TARGET] SHA BYTES_STORED BYTES_IN FILES */
    {
        bool verify = strcmp(argv[1], "verify") == 0;
        int base = verify ? 3 : 4;
        struct engine_expect x = {0};
        struct byte_source src = {fd_read, &fd};

        if (!verify && strcmp(argv[1], "restore") != 0 && strcmp(argv[1], "restore-device") != 0)
            return usage();
        if (argc < base + 4)
            return usage();
        x.sha256 = argv[base];
        if (parse_u64(argv[base + 1], &x.bytes_stored) < 0 ||
            parse_u64(argv[base + 2], &x.bytes_in) < 0 || parse_u64(argv[base + 3], &x.files) < 0)
            return usage();
        x.kind = strcmp(argv[1], "restore-device") == 0 ||
                         (argc > base + 4 && strcmp(argv[base + 4], "--device") == 0)
                     ? VOLUME_DEVICE
                     : VOLUME_DIRECTORY;
        fd = open(argv[2], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return perror(argv[2]), 1;
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        if (verify)
            r = engine_verify(&src, &x, &e);
        else if (x.kind == VOLUME_DEVICE)
            r = engine_restore_device(&src, &x, argv[3], &e);
        else
            r = engine_restore_dir(&src, &x, argv[3], NULL, &e);
        close(fd);
        return r < 0 ? fail(&e) : 0;
    }
}
