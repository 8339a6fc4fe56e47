/*
 * s3_xml.h - the few XML elements ordinal reads from S3 responses, found by a bounded,
 * minimal scanner instead of a general XML parser.
 *
 * S3 answers in small, flat documents (ListBucketResult, InitiateMultipartUploadResult,
 * CompleteMultipartUploadResult, DeleteResult, Error). We need the text of a handful of
 * elements and to iterate over repeated ones (Contents, Deleted, Error). The scanner works on
 * a (pointer, length) span, never reads outside it, handles attributes, self-closing tags,
 * comments, processing instructions and namespaces' default form, and decodes the five
 * predefined entities and numeric character references. It is fed by the network:
 * tests/fuzz/fuzz_s3_xml.c fuzzes it.
 */
#ifndef ORDINAL_S3_XML_H
#define ORDINAL_S3_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest XML response read into memory (a ListObjectsV2 page of 1,000 keys is ~350 KiB). */
#define S3_XML_MAX (4u << 20)

struct s3_span {
    const char *p;
    size_t len;
};

/*
 * Finds the next element named name (no prefix) in span at or after *pos, at any depth.
 * On success returns 1, sets *ret_inner to its content (empty for <name/>) and advances *pos
 * past its end tag. Returns 0 when there is none, -EBADMSG when the document is malformed
 * around it (no end tag). Nested elements of the same name are not supported (S3 has none).
 */
int s3_xml_next(struct s3_span span, const char *name, size_t *pos, struct s3_span *ret_inner);

/*
 * The decoded text of the first element name in span into buf (NUL-terminated). Returns the
 * length, -ENOENT when absent, -ENAMETOOLONG when it does not fit, -EBADMSG when malformed
 * (an unknown entity, a nested element, a NUL).
 */
int s3_xml_text(struct s3_span span, const char *name, char *buf, size_t size);

/* The first element name as an unsigned decimal. Returns 0, -ENOENT, -EBADMSG or -ERANGE. */
int s3_xml_u64(struct s3_span span, const char *name, uint64_t *ret);

/* Whether the document's root element is name (after the prolog). */
bool s3_xml_root_is(struct s3_span span, const char *name);

#endif
