/*
 * quantity.h - Kubernetes resource quantities, for storage sizes in bytes.
 *
 * The grammar is the API server's (k8s.io/apimachinery resource.Quantity):
 *   [+-]digits[.digits] followed by nothing, a binary suffix (Ki Mi Gi Ti Pi Ei), a decimal
 *   suffix (m k M G T P E) or a decimal exponent (e3, E-2).
 * Bytes are whole, so a fractional result rounds up as Quantity.Value() does ("0.5" -> 1).
 * Negative values, values above the int64 range the server stores, more than 20 significant
 * digits and anything else outside the grammar are refused with a message.
 */
#ifndef ORDINAL_QUANTITY_H
#define ORDINAL_QUANTITY_H

#include <stdint.h>

#include "err.h"

#define QUANTITY_MAX INT64_MAX
#define QUANTITY_STR_MAX 32

/* Returns 0 and the byte count, or -EINVAL/-ERANGE with a message in e. */
int quantity_parse(const char *s, uint64_t *ret, ord_err *e);

/*
 * Formats bytes the way people write storage sizes: the largest binary suffix that divides
 * the value exactly ("1Gi", "1536Mi"), else a decimal suffix that does ("500M"), else plain
 * digits. buf must hold QUANTITY_STR_MAX bytes. Returns buf.
 */
const char *quantity_format(uint64_t bytes, char buf[QUANTITY_STR_MAX]);

#endif
