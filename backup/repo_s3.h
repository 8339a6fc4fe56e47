/*
 * repo_s3.h - the S3 backend of the repository (s3://bucket/prefix), and the command-line
 * options every ordinal-backup command that opens a repository shares.
 *
 * The options fill one process-wide struct, repo_s3_settings, which repo_s3_backend.open()
 * reads: the commands add REPO_S3_OPT_DEFS to their options table and REPO_S3_HELP to their
 * epilog, and repo_open() needs no new parameter. Credentials are never options: they come
 * from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN only, so they stay out
 * of process listings, shell history and logs. See docs/internals/s3.md.
 */
#ifndef ORDINAL_REPO_S3_H
#define ORDINAL_REPO_S3_H

#include <stdbool.h>
#include <stdint.h>

#include "opts.h"
#include "repo.h"

struct repo_s3_settings {
    const char *endpoint;  /* "https://host[:port]"; NULL = AWS for the region */
    const char *region;    /* NULL = us-east-1 */
    const char *ca_bundle; /* PEM file or NULL */
    bool path_style;
};

extern struct repo_s3_settings repo_s3_settings;
extern const struct repo_backend repo_s3_backend;

#define REPO_S3_DEFAULT_REGION "us-east-1"

/* S3's limits on multipart uploads. */
#define S3_PART_MIN   ((uint64_t)5 << 20)
#define S3_PART_MAX   ((uint64_t)5 << 30)
#define S3_PARTS_MAX  10000u
#define S3_OBJECT_MAX ((uint64_t)5 << 40)
/* The first part size: 8 MiB doubled every 1,000 parts reaches 8 TiB within 10,000 parts,
 * more than S3's 5 TiB object limit, with no part above 4 GiB. */
#define S3_PART_BASE      ((uint64_t)8 << 20)
#define S3_PARTS_PER_TIER 1000u

/*
 * The size of part number part (1-based) when the first part is base bytes: base doubled
 * every S3_PARTS_PER_TIER parts, at most S3_PART_MAX. The size of the stream is unknown up
 * front (it is compressed on the fly), so the size grows as parts accumulate; memory holds one
 * part at a time. Returns 0 for part 0 or a part above S3_PARTS_MAX.
 */
uint64_t repo_s3_part_size(uint64_t base, unsigned part);

/* The rows of the options table, and the --help paragraph on credentials. */
/* clang-format off */
#define REPO_S3_OPT_DEFS                                                                           \
    {.name = "s3-endpoint", .type = OPT_STRING, .target = &repo_s3_settings.endpoint,              \
     .metavar = "URL", .env = "AWS_ENDPOINT_URL",                                                  \
     .help = "S3 endpoint of s3:// repositories (https://host[:port]; AWS when not given)."},      \
    {.name = "s3-region", .type = OPT_STRING, .target = &repo_s3_settings.region,                  \
     .metavar = "REGION", .env = "AWS_REGION", .def = REPO_S3_DEFAULT_REGION,                      \
     .help = "S3 region, used in request signatures."},                                            \
    {.name = "s3-path-style", .type = OPT_FLAG, .target = &repo_s3_settings.path_style,            \
     .help = "Address buckets as ENDPOINT/BUCKET/KEY rather than BUCKET.ENDPOINT/KEY (MinIO, "     \
             "Ceph and most self-hosted stores need this)."},                                      \
    {.name = "s3-ca-bundle", .type = OPT_STRING, .target = &repo_s3_settings.ca_bundle,            \
     .metavar = "FILE", .env = "AWS_CA_BUNDLE",                                                    \
     .help = "PEM file of the CA(s) that sign the S3 endpoint's HTTPS certificate."}
/* clang-format on */

#define REPO_S3_HELP                                                                               \
    "S3 repositories (--repo s3://BUCKET/PREFIX): credentials are read from the environment "      \
    "only -\n"                                                                                     \
    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, for temporary credentials, "                    \
    "AWS_SESSION_TOKEN -\n"                                                                        \
    "never from flags, and are never printed or logged.\n"

#endif
