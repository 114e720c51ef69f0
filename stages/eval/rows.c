/* rows.c — see rows.h. */
#include "rows.h"

#include "../common/utf8.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ev_row_free(ev_row_t *row)
{
    free(row->id);
    free(row->pred);
    for (int i = 0; i < row->nrefs; i++)
        free(row->refs[i]);
    free(row->refs);
    free(row->rn);
    memset(row, 0, sizeof *row);
}

void ev_row_take_refs(ev_row_t *dst, ev_row_t *src)
{
    for (int i = 0; i < dst->nrefs; i++)
        free(dst->refs[i]);
    free(dst->refs);
    free(dst->rn);
    dst->refs = src->refs, dst->rn = src->rn, dst->nrefs = src->nrefs;
    src->refs = NULL, src->rn = NULL, src->nrefs = 0;
}

/* A copy of a text after the checks every text gets. */
static char *text_copy(const char *what, const char *s, size_t n, size_t max_chars, char *err)
{
    if (n > max_chars) {
        snprintf(err, EV_ERR_LEN, "%s: %zu bytes, over the limit of %zu (--max-chars)", what, n, max_chars);
        return NULL;
    }
    size_t ok = utf8_valid_prefix(s, n);
    if (ok != n) {
        snprintf(err, EV_ERR_LEN, "%s: not UTF-8 at byte %zu (UTF-8 text expected)", what, ok);
        return NULL;
    }
    if (memchr(s, 0, n)) {
        snprintf(err, EV_ERR_LEN, "%s: a NUL character (text expected)", what);
        return NULL;
    }
    char *c = malloc(n + 1);
    if (!c) {
        snprintf(err, EV_ERR_LEN, "%s: out of memory", what);
        return NULL;
    }
    memcpy(c, s, n);
    c[n] = 0;
    return c;
}

static int add_ref(ev_row_t *row, const char *what, const char *s, size_t n, size_t max_chars, char *err)
{
    if (row->nrefs == EV_MAX_REFS) {
        snprintf(err, EV_ERR_LEN, "references: more than %d", EV_MAX_REFS);
        return -1;
    }
    char *c = text_copy(what, s, n, max_chars, err);
    if (!c)
        return -1;
    char **refs = realloc(row->refs, (size_t)(row->nrefs + 1) * sizeof *refs);
    size_t *rn = refs ? realloc(row->rn, (size_t)(row->nrefs + 1) * sizeof *rn) : NULL;
    if (refs)
        row->refs = refs;
    if (rn)
        row->rn = rn;
    if (!rn) {
        free(c);
        snprintf(err, EV_ERR_LEN, "%s: out of memory", what);
        return -1;
    }
    row->refs[row->nrefs] = c, row->rn[row->nrefs++] = n;
    return 0;
}

int ev_row_from_json(const char *line, size_t len, size_t max_chars, bool need_pred, bool need_refs, ev_row_t *row,
                     char *err)
{
    memset(row, 0, sizeof *row);
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_ALLOW_NUL, &je);
    if (!o) {
        snprintf(err, EV_ERR_LEN, "not JSON: %s at column %d", je.text, je.column);
        return -1;
    }
    char idbuf[64];
    const char *id = NULL;
    json_t *jid = json_object_get(o, "id"), *jp, *jr, *j1;
    if (!json_is_object(o)) {
        snprintf(err, EV_ERR_LEN, "a JSON object expected");
        goto fail;
    }
    if (json_is_string(jid))
        id = json_string_value(jid);
    else if (json_is_integer(jid))
        snprintf(idbuf, sizeof idbuf, "%lld", (long long)json_integer_value(jid)), id = idbuf;
    else {
        snprintf(err, EV_ERR_LEN, "id: %s (a string or an integer expected)", jid ? "not a string" : "missing");
        goto fail;
    }
    if (!(row->id = text_copy("id", id, strlen(id), 4096, err)))
        goto fail;
    jp = json_object_get(o, "prediction");
    if (jp) {
        if (!json_is_string(jp)) {
            snprintf(err, EV_ERR_LEN, "prediction: not a string (text expected)");
            goto fail;
        }
        if (!(row->pred = text_copy("prediction", json_string_value(jp), json_string_length(jp), max_chars, err)))
            goto fail;
        row->pn = json_string_length(jp);
    } else if (need_pred) {
        snprintf(err, EV_ERR_LEN, "prediction: missing (a string expected)");
        goto fail;
    }
    jr = json_object_get(o, "references"), j1 = json_object_get(o, "reference");
    if (jr && j1) {
        snprintf(err, EV_ERR_LEN, "reference and references: both given (one expected)");
        goto fail;
    }
    if (j1) {
        if (!json_is_string(j1)) {
            snprintf(err, EV_ERR_LEN, "reference: not a string (text expected)");
            goto fail;
        }
        if (add_ref(row, "reference", json_string_value(j1), json_string_length(j1), max_chars, err))
            goto fail;
    } else if (jr) {
        if (!json_is_array(jr) || json_array_size(jr) == 0) {
            snprintf(err, EV_ERR_LEN, "references: %s (an array of one or more strings expected)",
                     json_is_array(jr) ? "empty" : "not an array");
            goto fail;
        }
        for (size_t i = 0; i < json_array_size(jr); i++) {
            json_t *s = json_array_get(jr, i);
            char what[32];
            snprintf(what, sizeof what, "references[%zu]", i);
            if (!json_is_string(s)) {
                snprintf(err, EV_ERR_LEN, "%s: not a string (text expected)", what);
                goto fail;
            }
            if (add_ref(row, what, json_string_value(s), json_string_length(s), max_chars, err))
                goto fail;
        }
    } else if (need_refs) {
        snprintf(err, EV_ERR_LEN, "references: missing (an array of one or more strings expected)");
        goto fail;
    }
    json_decref(o);
    return 0;
fail:
    if (row->id) { // name the row in the message, printably
        char msg[EV_ERR_LEN], pid[96];
        snprintf(msg, sizeof msg, "%s", err);
        snprintf(err, EV_ERR_LEN, "id %s: %s", rec_printable(pid, sizeof pid, row->id, strlen(row->id), 64), msg);
    }
    json_decref(o);
    ev_row_free(row);
    return -1;
}

static bool str_of(const msgpack_object *o, const char **s, size_t *n)
{
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return false;
    *s = o->via.str.ptr, *n = o->via.str.size;
    return true;
}

int ev_row_from_rec(const rec_t *r, size_t max_chars, ev_row_t *row, char *err)
{
    memset(row, 0, sizeof *row);
    char id[256];
    rec_id(r, id, sizeof id);
    const char *s;
    size_t n;
    if (!(row->id = text_copy("id", id, strlen(id), 4096, err)))
        goto fail;
    const msgpack_object *segs = rec_get(r, "segments"), *target = NULL;
    if (!segs || segs->type != MSGPACK_OBJECT_ARRAY) {
        snprintf(err, EV_ERR_LEN, "segments: missing (an array of segments expected)");
        goto fail;
    }
    for (uint32_t i = 0; i < segs->via.array.size && !target; i++) {
        const msgpack_object *seg = &segs->via.array.ptr[i];
        if (seg->type == MSGPACK_OBJECT_MAP && rec_map_get(seg, "generated"))
            target = seg;
    }
    if (!target || !str_of(rec_map_get(target, "generated"), &s, &n)) {
        snprintf(err, EV_ERR_LEN, "segments: no text segment with \"generated\" text (bagel-generate adds it)");
        goto fail;
    }
    if (!(row->pred = text_copy("generated", s, n, max_chars, err)))
        goto fail;
    row->pn = n;
    const msgpack_object *refs = rec_get(r, "references");
    if (refs) {
        if (refs->type != MSGPACK_OBJECT_ARRAY || refs->via.array.size == 0) {
            snprintf(err, EV_ERR_LEN, "references: %s (an array of one or more strings expected)",
                     refs->type == MSGPACK_OBJECT_ARRAY ? "empty" : "not an array");
            goto fail;
        }
        for (uint32_t i = 0; i < refs->via.array.size; i++) {
            char what[32];
            snprintf(what, sizeof what, "references[%u]", i);
            if (!str_of(&refs->via.array.ptr[i], &s, &n)) {
                snprintf(err, EV_ERR_LEN, "%s: not a string (text expected)", what);
                goto fail;
            }
            if (add_ref(row, what, s, n, max_chars, err))
                goto fail;
        }
    } else {
        if (!str_of(rec_map_get(target, "text"), &s, &n)) {
            snprintf(err, EV_ERR_LEN, "segments: the generated segment has no \"text\" (the reference expected)");
            goto fail;
        }
        if (add_ref(row, "text", s, n, max_chars, err))
            goto fail;
    }
    return 0;
fail:;
    char msg[EV_ERR_LEN], pid[96];
    snprintf(msg, sizeof msg, "%s", err);
    snprintf(err, EV_ERR_LEN, "id %s: %s", rec_printable(pid, sizeof pid, id, strlen(id), 64), msg);
    ev_row_free(row);
    return -1;
}
