/*
 * fuzz_quantity.c - quantity_parse() on arbitrary bytes: never crashes, and whatever it
 * accepts formats back to a string that parses to the same value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quantity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[128], buf[QUANTITY_STR_MAX];
    uint64_t v, again;
    ord_err e = {0};

    if (size >= sizeof(s))
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (quantity_parse(s, &v, &e) < 0) {
        if (e.msg[0] == '\0')
            abort(); /* every refusal explains itself */
        return 0;
    }
    if (v > QUANTITY_MAX)
        abort();
    if (quantity_parse(quantity_format(v, buf), &again, NULL) < 0 || again != v)
        abort();
    return 0;
}
