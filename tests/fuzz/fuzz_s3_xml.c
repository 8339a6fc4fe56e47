/*
 * fuzz_s3_xml.c - the S3 XML scanner (backup/s3_xml.c) on arbitrary bytes, the way the S3
 * backend uses it: the root check, iteration over Contents/Deleted/Error/Part, and the text
 * and number of their children. The input is not NUL-terminated (a copy without slack), so
 * ASan catches any read past the span. Never crashes; decoded text always fits and never
 * contains a NUL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3_xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(struct s3_span sp, const char *name)
{
    char buf[256];
    uint64_t u;
    int n = s3_xml_text(sp, name, buf, sizeof(buf));

    if (n >= 0 && ((size_t)n >= sizeof(buf) || strlen(buf) != (size_t)n))
        abort();
    (void)s3_xml_u64(sp, name, &u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const items[] = {"Contents", "Deleted", "Error", "Part", "Upload"};
    static const char *const fields[] = {"Key", "Size", "Code", "Message", "ETag", "UploadId"};
    char *copy;
    struct s3_span doc;

    if (size > S3_XML_MAX)
        return 0;
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    doc = (struct s3_span){copy, size};
    (void)s3_xml_root_is(doc, "ListBucketResult");
    (void)s3_xml_root_is(doc, "Error");
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
        check_text(doc, fields[f]);
    for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
        struct s3_span item;
        size_t pos = 0, last = 0;
        int r;

        while ((r = s3_xml_next(doc, items[i], &pos, &item)) > 0) {
            if (pos <= last || pos > size || item.p < copy || item.p + item.len > copy + size)
                abort(); /* progress, and the inner span inside the document */
            last = pos;
            for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
                check_text(item, fields[f]);
        }
    }
    free(copy);
    return 0;
}
