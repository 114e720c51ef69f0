/* json.h — records as JSON, for bagel-cat.
 *
 * The mapping: maps, arrays, strings, booleans, nil and numbers as
 * themselves. A tensor {"dtype","shape","data"} shows its data as a flat array
 * of numbers with full=true (non-finite floats as "nan", "inf", "-inf"), else
 * as {"bytes": N, "fnv1a": "<16 hex digits>"} in place of "data". Other byte
 * strings are {"$bin": "<hex>"}, extension values {"$ext": T, "$bin": "<hex>"}.
 * json_to_rec reads the same mapping back; a tensor must then carry its data. */
#ifndef BAGEL_CAT_JSON_H
#define BAGEL_CAT_JSON_H

#include "../../ipc/rec.h"

#include <jansson.h>
#include <stdbool.h>

/* NULL when out of memory. */
json_t *rec_to_json(const rec_t *r, bool full);
/* 0 with *out a validated record, or -1 with err. */
int json_to_rec(const json_t *j, const rec_limits_t *lim, rec_t **out, char *err);

#endif
