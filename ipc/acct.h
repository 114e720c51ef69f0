/* acct.h — end-record accounting (architecture.md §3).
 *
 * A source's epoch is complete when its `end` record has arrived and as many
 * samples plus rejects with that source and epoch as the end's count. Order
 * across replicas is not kept, so records may arrive before or after their
 * end. A sink asks acct_complete() whether every stream it expects is done. */
#ifndef BAGEL_ACCT_H
#define BAGEL_ACCT_H

#include "rec.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char *source;
    int64_t epoch;
    uint64_t samples, rejects;
    int64_t end_count; // -1 until the end record arrives
    uint64_t ends;     // end records seen (more than one is an error)
} acct_entry_t;

typedef struct acct acct_t;

acct_t *acct_new(void);
void acct_destroy(acct_t **a);
/* Count one record. -1 only when out of memory. Records without a source
 * string are not counted. */
int acct_add(acct_t *a, const rec_t *r);
int acct_count(const acct_t *a);
const acct_entry_t *acct_entry(const acct_t *a, int i);
bool acct_entry_complete(const acct_entry_t *e);
/* Too many records for the end's count, or several ends. */
bool acct_entry_broken(const acct_entry_t *e);
/* Every stream seen is complete, and at least `expect_ends` of them exist. */
bool acct_complete(const acct_t *a, int expect_ends);

#endif
