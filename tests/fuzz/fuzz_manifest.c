/*
 * fuzz_manifest.c - libFuzzer target for the parsers of what a repository holds: volume
 * manifests, backup.json and lock objects. Every input goes through all three; what parses
 * must format back and parse again to the same thing (the round trip a later restore relies
 * on), and nothing may crash, leak or read out of bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"
#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void volume(const char *text, size_t size)
{
    struct volume_manifest m, again;
    char *out = NULL;

    if (volume_manifest_parse(text, size, &m, NULL) < 0)
        return;
    if (volume_manifest_format(&m, &out) == 0) {
        if (volume_manifest_parse(out, strlen(out), &again, NULL) != 0)
            abort();
        if (strcmp(again.sha256, m.sha256) || again.bytes_stored != m.bytes_stored ||
            again.ordinal != m.ordinal || strcmp(again.object, m.object) ||
            again.n_changed != m.n_changed)
            abort();
        volume_manifest_free(&again);
        free(out);
    }
    volume_manifest_free(&m);
}

static void backup(const char *text, size_t size)
{
    struct backup_manifest b, again;
    char *out = NULL;

    if (backup_manifest_parse(text, size, &b, NULL) < 0)
        return;
    if (backup_manifest_format(&b, &out) == 0) {
        if (backup_manifest_parse(out, strlen(out), &again, NULL) != 0)
            abort();
        if (again.n_volumes != b.n_volumes || again.n_ordinals != b.n_ordinals ||
            strcmp(again.id, b.id) || again.bytes_stored != b.bytes_stored)
            abort();
        for (size_t i = 0; i < b.n_volumes; i++)
            if (strcmp(again.volumes[i].object, b.volumes[i].object))
                abort();
        backup_manifest_free(&again);
        free(out);
    }
    backup_manifest_free(&b);
}

static void lock(const char *text, size_t size)
{
    struct lock_info li;

    (void)lock_info_parse(text, size, &li);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The parsers take a length; give them a copy without a terminator so that ASan sees
     * any read past the end. */
    char *text = malloc(size ? size : 1);

    if (!text)
        return 0;
    memcpy(text, data, size);
    volume(text, size);
    backup(text, size);
    lock(text, size);
    free(text);
    return 0;
}
