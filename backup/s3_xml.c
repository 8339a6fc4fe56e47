/*
 * s3_xml.c - see s3_xml.h. A scanner, not a parser: it looks for "<name" followed by '>',
 * '/', or white space, skipping comments, CDATA and processing instructions, then for the
 * matching "</name>". Every index is checked against the span's length.
 */
#include <errno.h>
#include <string.h>

#include "macro.h"
#include "s3_xml.h"

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whether span[at..] starts with s. */
static bool starts(struct s3_span sp, size_t at, const char *s)
{
    size_t n = strlen(s);

    return at <= sp.len && sp.len - at >= n && memcmp(sp.p + at, s, n) == 0;
}

/* Index of the first occurrence of s at or after at, or sp.len. */
static size_t find(struct s3_span sp, size_t at, const char *s)
{
    size_t n = strlen(s);

    for (size_t i = at; i < sp.len && sp.len - i >= n; i++)
        if (memcmp(sp.p + i, s, n) == 0)
            return i;
    return sp.len;
}

/*
 * Scans from at for the next start tag named name. On success sets *ret_open (index of '<'),
 * *ret_after (index after the start tag's '>') and *ret_empty (<name/>). Returns 1, 0 or
 * -EBADMSG.
 */
static int next_start(struct s3_span sp, const char *name, size_t at, size_t *ret_open,
                      size_t *ret_after, bool *ret_empty)
{
    size_t nl = strlen(name);

    while (at < sp.len) {
        const char *lt = memchr(sp.p + at, '<', sp.len - at);
        size_t i, end;

        if (!lt)
            return 0;
        i = (size_t)(lt - sp.p);
        if (starts(sp, i, "<!--")) {
            end = find(sp, i + 4, "-->");
            if (end == sp.len)
                return -EBADMSG;
            at = end + 3;
            continue;
        }
        if (starts(sp, i, "<![CDATA[")) {
            end = find(sp, i + 9, "]]>");
            if (end == sp.len)
                return -EBADMSG;
            at = end + 3;
            continue;
        }
        if (starts(sp, i, "<?") || starts(sp, i, "<!")) {
            end = find(sp, i + 2, ">");
            if (end == sp.len)
                return -EBADMSG;
            at = end + 1;
            continue;
        }
        at = i + 1;
        if (sp.len - at < nl || memcmp(sp.p + at, name, nl) != 0)
            continue;
        if (at + nl >= sp.len)
            return -EBADMSG;
        char c = sp.p[at + nl];
        if (c != '>' && c != '/' && !is_space(c))
            continue;
        /* The end of the start tag; attribute values may hold '>' only when quoted. */
        char quote = 0;
        for (end = at + nl; end < sp.len; end++) {
            char d = sp.p[end];
            if (quote) {
                if (d == quote)
                    quote = 0;
            } else if (d == '"' || d == '\'') {
                quote = d;
            } else if (d == '>') {
                break;
            }
        }
        if (end >= sp.len)
            return -EBADMSG;
        *ret_open = i;
        *ret_after = end + 1;
        *ret_empty = sp.p[end - 1] == '/';
        return 1;
    }
    return 0;
}

int s3_xml_next(struct s3_span span, const char *name, size_t *pos, struct s3_span *ret_inner)
{
    size_t open, after, close;
    bool empty;
    char endtag[80];
    int r;

    if (strlen(name) + 4 > sizeof(endtag))
        return -EINVAL;
    if (*pos > span.len)
        return 0;
    r = next_start(span, name, *pos, &open, &after, &empty);
    if (r <= 0)
        return r;
    if (empty) {
        *ret_inner = (struct s3_span){.p = span.p + after, .len = 0};
        *pos = after;
        return 1;
    }
    endtag[0] = '<';
    endtag[1] = '/';
    memcpy(endtag + 2, name, strlen(name) + 1);
    close = find(span, after, endtag);
    if (close == span.len)
        return -EBADMSG;
    /* "</name" must be followed by optional space and '>'. */
    size_t k = close + strlen(endtag);
    while (k < span.len && is_space(span.p[k]))
        k++;
    if (k >= span.len || span.p[k] != '>')
        return -EBADMSG;
    *ret_inner = (struct s3_span){.p = span.p + after, .len = close - after};
    *pos = k + 1;
    return 1;
}

/* Appends the UTF-8 form of code point cp. Returns 0 or -ENAMETOOLONG / -EBADMSG. */
static int put_utf8(char *buf, size_t size, size_t *len, unsigned long cp)
{
    unsigned char u[4];
    size_t n;

    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return -EBADMSG;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xF0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if (*len + n >= size)
        return -ENAMETOOLONG;
    memcpy(buf + *len, u, n);
    *len += n;
    return 0;
}

static int decode_text(struct s3_span t, char *buf, size_t size)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t len = 0;

    if (size == 0)
        return -ENAMETOOLONG;
    for (size_t i = 0; i < t.len;) {
        char c = t.p[i];

        if (c == '<' || c == '\0')
            return -EBADMSG;
        if (c != '&') {
            if (len + 1 >= size)
                return -ENAMETOOLONG;
            buf[len++] = c;
            i++;
            continue;
        }
        bool done = false;
        for (size_t k = 0; k < ARRAY_SIZE(ents) && !done; k++)
            if (starts(t, i, ents[k].ent)) {
                if (len + 1 >= size)
                    return -ENAMETOOLONG;
                buf[len++] = ents[k].c;
                i += strlen(ents[k].ent);
                done = true;
            }
        if (done)
            continue;
        if (!starts(t, i, "&#"))
            return -EBADMSG;
        /* &#NNN; or &#xHH; with at most 8 digits. */
        size_t j = i + 2;
        bool hexa = j < t.len && (t.p[j] == 'x' || t.p[j] == 'X');
        unsigned long cp = 0;
        size_t digits = 0;
        if (hexa)
            j++;
        for (; j < t.len && t.p[j] != ';' && digits <= 8; j++, digits++) {
            char d = t.p[j];
            unsigned v;
            if (d >= '0' && d <= '9')
                v = (unsigned)(d - '0');
            else if (hexa && d >= 'a' && d <= 'f')
                v = (unsigned)(d - 'a' + 10);
            else if (hexa && d >= 'A' && d <= 'F')
                v = (unsigned)(d - 'A' + 10);
            else
                return -EBADMSG;
            cp = cp * (hexa ? 16 : 10) + v;
        }
        if (digits == 0 || digits > 8 || j >= t.len)
            return -EBADMSG;
        int r = put_utf8(buf, size, &len, cp);
        if (r < 0)
            return r;
        i = j + 1;
    }
    buf[len] = '\0';
    return (int)len;
}

int s3_xml_text(struct s3_span span, const char *name, char *buf, size_t size)
{
    struct s3_span inner;
    size_t pos = 0;
    int r = s3_xml_next(span, name, &pos, &inner);

    if (r < 0)
        return r;
    if (r == 0)
        return -ENOENT;
    return decode_text(inner, buf, size);
}

int s3_xml_u64(struct s3_span span, const char *name, uint64_t *ret)
{
    char buf[32];
    uint64_t v = 0;
    int n = s3_xml_text(span, name, buf, sizeof(buf));

    if (n == -ENAMETOOLONG)
        return -ERANGE;
    if (n < 0)
        return n;
    if (n == 0)
        return -EBADMSG;
    for (int i = 0; i < n; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -EBADMSG;
        if (v > (UINT64_MAX - (uint64_t)(buf[i] - '0')) / 10)
            return -ERANGE;
        v = v * 10 + (uint64_t)(buf[i] - '0');
    }
    *ret = v;
    return 0;
}

bool s3_xml_root_is(struct s3_span span, const char *name)
{
    size_t i = 0, nl = strlen(name);

    for (;;) {
        while (i < span.len && is_space(span.p[i]))
            i++;
        if (starts(span, i, "<?") || starts(span, i, "<!")) {
            const char *term = starts(span, i, "<!--") ? "-->" : ">";
            size_t end = find(span, i + 2, term);
            if (end == span.len)
                return false;
            i = end + strlen(term);
            continue;
        }
        break;
    }
    if (!starts(span, i, "<") || span.len - i - 1 < nl || memcmp(span.p + i + 1, name, nl) != 0)
        return false;
    i += 1 + nl;
    return i < span.len && (span.p[i] == '>' || span.p[i] == '/' || is_space(span.p[i]));
}
