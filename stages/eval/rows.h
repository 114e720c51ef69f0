/* rows.h — bagel-eval's input: one prediction and its references per id,
 * from JSON lines or from records (docs/eval.md, "Input").
 *
 *   JSON line  {"id": "x", "prediction": "...", "references": ["...", ...]}
 *              ("reference": "..." for one; ids may be numbers)
 *   record     a sample whose target segment carries "generated" (the text
 *              bagel-generate wrote): the prediction; the references are the
 *              sample's "references" array when it has one, else that
 *              segment's "text"
 *
 * Every string must be UTF-8; a row that breaks a rule is refused with a
 * one-line reason naming the field and what was expected. */
#ifndef BAGEL_EVAL_ROWS_H
#define BAGEL_EVAL_ROWS_H

#include "../../ipc/rec.h"
#include "metrics.h"

#define EV_MAX_REFS 256

typedef struct {
    char *id;
    char *pred; // NULL: no prediction (a --references row)
    size_t pn;
    char **refs;
    size_t *rn;
    int nrefs; // 0: none given
} ev_row_t;

/* Parse one JSON line. 0, or -1 with err (the row is left empty). Texts
 * over max_chars bytes are refused. need_refs: references are required. */
int ev_row_from_json(const char *line, size_t len, size_t max_chars, bool need_pred, bool need_refs, ev_row_t *row,
                     char *err);
/* The same for a sample record. */
int ev_row_from_rec(const rec_t *r, size_t max_chars, ev_row_t *row, char *err);
/* Take the references of src (moved; src keeps none). */
void ev_row_take_refs(ev_row_t *dst, ev_row_t *src);
void ev_row_free(ev_row_t *row);

#endif
