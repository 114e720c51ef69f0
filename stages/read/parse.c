/* parse.c — see parse.h. The rules of each format, with their source in
 * bagel-reference.md, are in docs/formats.md; the comments here say which
 * official layout each branch reproduces. */
#define _GNU_SOURCE // memmem
#include "parse.h"

#include "../common/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const format_names[READ_FORMAT_COUNT] = {
    "auto", "conversations", "sequence", "t2i", "i2t", "edit", "interleaved", "llava",
};

static const char *const reason_names[READ_REASON_COUNT] = {
    "ok", "json", "utf8", "format", "field", "empty", "markers", "no-loss", "path", "image", "too-long",
};

const char *read_format_name(read_format_t f) { return f < READ_FORMAT_COUNT ? format_names[f] : "?"; }
const char *read_reason_name(read_reason_t r) { return r < READ_REASON_COUNT ? reason_names[r] : "?"; }

int read_format_parse(const char *s, read_format_t *out)
{
    static const struct {
        const char *alias;
        read_format_t f;
    } aliases[] = {
        {"text-to-image", READ_T2I},
        {"image-to-text", READ_I2T},
        {"editing", READ_EDIT},
        {"interleave", READ_INTERLEAVED},
    };
    for (int i = 0; i < READ_FORMAT_COUNT; i++)
        if (strcmp(s, format_names[i]) == 0)
            return *out = (read_format_t)i, 0;
    for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
        if (strcmp(s, aliases[i].alias) == 0)
            return *out = aliases[i].f, 0;
    return -1;
}

/* ---- the plan: segments before they become a record ---- */

typedef struct {
    bool image;
    const char *role; // static
    const char *str;  // text, or the image path as written
    size_t len;
    signed char loss, und, gen, cond, cfg; // -1: not given, the defaults decide
} item_t;

typedef struct {
    item_t *v;
    int n, cap;
    const read_where_t *w;
    char *err;
} plan_t;

/* Fill err with "file:line: what" as one printable line; returns why. */
static int fail(plan_t *p, int why, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(plan_t *p, int why, const char *fmt, ...)
{
    int o = snprintf(p->err, REC_ERR_LEN, "%s:%lld: ", p->w->file, (long long)p->w->line);
    if (o < 0 || o >= REC_ERR_LEN)
        o = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + o, REC_ERR_LEN - (size_t)o, fmt, ap);
    va_end(ap);
    // jansson's messages quote input; keep the line printable ASCII
    for (char *c = p->err; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
    return why;
}

/* A user string shown in a message: escaped, cut at 40 bytes. */
#define SHOW_LEN 200
static const char *show(char *buf, const char *s, size_t n) { return rec_printable(buf, SHOW_LEN, s, n, 40); }

static const char *jtype(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static item_t *push(plan_t *p, bool image, const char *role, const char *s, size_t n)
{
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        item_t *v = realloc(p->v, (size_t)cap * sizeof *v);
        if (!v)
            return NULL;
        p->v = v, p->cap = cap;
    }
    item_t *it = &p->v[p->n++];
    *it = (item_t){image, role, s, n, -1, -1, -1, -1, -1};
    return it;
}

#define OOM (-1)
static int oom(plan_t *p)
{
    snprintf(p->err, REC_ERR_LEN, "out of memory");
    return OOM;
}

/* A string field. where is the field's owner ("" or "conversations[2]").
 * Returns 0 with *s set, 1 when absent and optional, or a reason. */
static int get_str(plan_t *p, const json_t *obj, const char *where, const char *key, bool required, const char **s,
                   size_t *n)
{
    const json_t *v = json_object_get(obj, key);
    const char *dot = *where ? "." : "";
    if (!v) {
        if (!required)
            return 1;
        return fail(p, READ_BAD_FIELD, "%s%s\"%s\": missing, expected a string", where, dot, key);
    }
    if (!json_is_string(v))
        return fail(p, READ_BAD_FIELD, "%s%s\"%s\": expected a string, got %s", where, dot, key, jtype(v));
    *s = json_string_value(v);
    *n = json_string_length(v);
    return 0;
}

static int get_flag(plan_t *p, const json_t *obj, const char *where, const char *key, signed char *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return fail(p, READ_BAD_FIELD, "%s.\"%s\": expected true or false, got %s", where, key, jtype(v));
    *out = json_is_true(v);
    return 0;
}

/* Exactly one of keys, or none when optional (returns 1). */
static int one_of(plan_t *p, const json_t *obj, const char *const *keys, int nkeys, bool required, const char **s,
                  size_t *n)
{
    int found = -1;
    for (int i = 0; i < nkeys; i++) {
        if (!json_object_get(obj, keys[i]))
            continue;
        if (found >= 0)
            return fail(p, READ_BAD_FIELD, "both \"%s\" and \"%s\": give one", keys[found], keys[i]);
        found = i;
    }
    if (found < 0) {
        if (!required)
            return 1;
        char alts[96] = "";
        for (int i = 1; i < nkeys; i++)
            snprintf(alts + strlen(alts), sizeof alts - strlen(alts), "%s\"%s\"", i > 1 ? ", " : " (or ", keys[i]);
        return fail(p, READ_BAD_FIELD, "\"%s\"%s%s: missing, expected a string", keys[0], alts, nkeys > 1 ? ")" : "");
    }
    return get_str(p, obj, "", keys[found], true, s, n);
}

/* A non-empty array field. */
static int get_list(plan_t *p, const json_t *root, const char *key, const json_t **arr)
{
    const json_t *a = json_object_get(root, key);
    if (!a)
        return fail(p, READ_BAD_FIELD, "\"%s\": missing, expected an array", key);
    if (!json_is_array(a))
        return fail(p, READ_BAD_FIELD, "\"%s\": expected an array, got %s", key, jtype(a));
    if (json_array_size(a) == 0)
        return fail(p, READ_EMPTY, "\"%s\": empty", key);
    if (json_array_size(a) > READ_MAX_SEGMENTS)
        return fail(p, READ_BAD_FIELD, "\"%s\": %zu entries, more than %d", key, json_array_size(a), READ_MAX_SEGMENTS);
    *arr = a;
    return 0;
}

static int role_of(plan_t *p, const char *where, const char *s, size_t n, bool allow_empty, const char **role)
{
    static const char *const roles[] = {"user", "assistant", "system"};
    for (int i = 0; i < 3; i++)
        if (strlen(roles[i]) == n && memcmp(s, roles[i], n) == 0)
            return *role = roles[i], 0;
    if (allow_empty && n == 0)
        return *role = "", 0;
    char b[SHOW_LEN];
    return fail(p, READ_BAD_FIELD, "%s.\"role\": expected user, assistant or system%s, got \"%s\"", where,
                allow_empty ? " (or \"\")" : "", show(b, s, n));
}

/* {"type":"text","content":...} or {"type":"image","image_path":...}:
 * the element shape of conversations, sequence and interleaved. */
static int typed_item(plan_t *p, const json_t *el, const char *where, const char *role, item_t **out)
{
    const char *type, *s;
    size_t tn, n;
    int rc;
    if (!json_is_object(el))
        return fail(p, READ_BAD_FIELD, "%s: expected an object, got %s", where, jtype(el));
    if ((rc = get_str(p, el, where, "type", true, &type, &tn)))
        return rc;
    bool image = tn == 5 && memcmp(type, "image", 5) == 0;
    if (!image && !(tn == 4 && memcmp(type, "text", 4) == 0)) {
        char b[SHOW_LEN];
        return fail(p, READ_BAD_FIELD, "%s.\"type\": expected text or image, got \"%s\"", where, show(b, type, tn));
    }
    if ((rc = get_str(p, el, where, image ? "image_path" : "content", true, &s, &n)))
        return rc;
    if (!(*out = push(p, image, role, s, n)))
        return oom(p);
    return 0;
}

/* ---- the formats ---- */

/* conversations: roles decide the flags (role_defaults). */
static int parse_conversations(plan_t *p, const json_t *root)
{
    const json_t *arr;
    int rc;
    if ((rc = get_list(p, root, "conversations", &arr)))
        return rc;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *el = json_array_get(arr, i);
        char where[48];
        snprintf(where, sizeof where, "conversations[%zu]", i);
        const char *rs, *role;
        size_t rn;
        item_t *it;
        if (json_is_object(el) &&
            ((rc = get_str(p, el, where, "role", true, &rs, &rn)) || (rc = role_of(p, where, rs, rn, false, &role))))
            return rc;
        if ((rc = typed_item(p, el, where, json_is_object(el) ? role : "", &it)))
            return rc;
    }
    return 0;
}

/* sequence: as conversations, but any flag given overrides the default. */
static int parse_sequence(plan_t *p, const json_t *root)
{
    const json_t *arr;
    int rc;
    if ((rc = get_list(p, root, "sequence", &arr)))
        return rc;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *el = json_array_get(arr, i);
        char where[48];
        snprintf(where, sizeof where, "sequence[%zu]", i);
        const char *rs = "", *role = "";
        size_t rn = 0;
        item_t *it;
        if (json_is_object(el) && ((rc = get_str(p, el, where, "role", false, &rs, &rn)) > 1 ||
                                   (rc = role_of(p, where, rs, rn, true, &role))))
            return rc;
        if ((rc = typed_item(p, el, where, role, &it)) || (rc = get_flag(p, el, where, "loss", &it->loss)) ||
            (rc = get_flag(p, el, where, "cfg", &it->cfg)))
            return rc;
        if (it->image &&
            ((rc = get_flag(p, el, where, "und", &it->und)) || (rc = get_flag(p, el, where, "gen", &it->gen)) ||
             (rc = get_flag(p, el, where, "cond", &it->cond))))
            return rc;
    }
    return 0;
}

static void set(item_t *it, int loss, int und, int cond, int cfg)
{
    it->loss = (signed char)loss, it->und = (signed char)und, it->cond = (signed char)cond, it->cfg = (signed char)cfg;
    it->gen = (signed char)(loss || cond);
}

static const char *const image_keys[] = {"image_path", "image"};

/* T2I layout (t2i_dataset.py): caption text (no loss, may be dropped for
 * CFG), then the image as a noisy VAE target. */
static int parse_t2i(plan_t *p, const json_t *root)
{
    static const char *const text_keys[] = {"prompt", "text", "caption"};
    const char *t, *img;
    size_t tn, in;
    int rc;
    if ((rc = one_of(p, root, text_keys, 3, true, &t, &tn)) || (rc = one_of(p, root, image_keys, 2, true, &img, &in)))
        return rc;
    item_t *a = push(p, false, "user", t, tn), *b = a ? push(p, true, "assistant", img, in) : NULL;
    if (!b)
        return oom(p);
    set(&p->v[0], 0, 0, 0, 1);
    set(&p->v[1], 1, 0, 0, 0);
    return 0;
}

/* VLM layout (vlm_dataset.py): the image to the ViT, the optional prompt,
 * then the caption with the text loss; nothing is dropped. */
static int parse_i2t(plan_t *p, const json_t *root)
{
    static const char *const answer_keys[] = {"caption", "response", "text"};
    const char *a, *q = NULL, *img;
    size_t an, qn = 0, in;
    int rc;
    if ((rc = one_of(p, root, image_keys, 2, true, &img, &in)) ||
        (rc = one_of(p, root, answer_keys, 3, true, &a, &an)) ||
        (rc = get_str(p, root, "", "prompt", false, &q, &qn)) > 1)
        return rc;
    if (!push(p, true, "user", img, in) || (q && !push(p, false, "user", q, qn)) || !push(p, false, "assistant", a, an))
        return oom(p);
    set(&p->v[0], 0, 1, 0, 0);
    if (q)
        set(&p->v[1], 0, 0, 0, 0);
    set(&p->v[p->n - 1], 1, 0, 0, 0);
    return 0;
}

/* Edit layout (edit_dataset.py, per-step branch): the source image clean
 * to the VAE and the ViT; per step the instruction (no loss, CFG), then the
 * result: a noisy target, plus clean VAE and ViT copies when another step
 * follows, for the later steps to see it. */
static int parse_edit(plan_t *p, const json_t *root)
{
    const char *src, *s;
    size_t sn, n;
    const json_t *steps;
    int rc;
    if ((rc = get_str(p, root, "", "input_image", true, &src, &sn)) ||
        (rc = get_list(p, root, "editing_steps", &steps)))
        return rc;
    if (!push(p, true, "user", src, sn))
        return oom(p);
    set(&p->v[0], 0, 1, 1, 1);
    size_t nsteps = json_array_size(steps);
    for (size_t i = 0; i < nsteps; i++) {
        const json_t *st = json_array_get(steps, i);
        char where[48];
        snprintf(where, sizeof where, "editing_steps[%zu]", i);
        if (!json_is_object(st))
            return fail(p, READ_BAD_FIELD, "%s: expected an object, got %s", where, jtype(st));
        if ((rc = get_str(p, st, where, "instruction", true, &s, &n)))
            return rc;
        if (!push(p, false, "user", s, n))
            return oom(p);
        set(&p->v[p->n - 1], 0, 0, 0, 1);
        if ((rc = get_str(p, st, where, "result_image", true, &s, &n)))
            return rc;
        if (!push(p, true, "assistant", s, n))
            return oom(p);
        bool last = i + 1 == nsteps;
        set(&p->v[p->n - 1], 1, !last, !last, !last);
    }
    return 0;
}

/* Interleaved documents (interleave_t2i_dataset.py's _add_text/_add_image):
 * every text is learned; every image is a noisy target, with clean VAE and
 * ViT copies unless it ends the document. */
static int parse_interleaved(plan_t *p, const json_t *root)
{
    const json_t *arr;
    int rc;
    if ((rc = get_list(p, root, "interleaved", &arr)))
        return rc;
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        char where[48];
        snprintf(where, sizeof where, "interleaved[%zu]", i);
        item_t *it;
        if ((rc = typed_item(p, json_array_get(arr, i), where, "", &it)))
            return rc;
        bool more = i + 1 < n;
        if (it->image)
            set(it, 1, more, more, more);
        else
            set(it, 1, 0, 0, 0);
    }
    return 0;
}

static bool ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* A human chunk between markers, stripped; empty ones are left out (as
 * Python's text.strip() != '' in vlm_dataset.py's change_format). */
static int push_chunk(plan_t *p, const char *s, size_t n)
{
    while (n && ws(*s))
        s++, n--;
    while (n && ws(s[n - 1]))
        n--;
    if (!n)
        return 0;
    item_t *it = push(p, false, "user", s, n);
    if (!it)
        return oom(p);
    set(it, 0, 0, 0, 0);
    return 0;
}

/* LLaVA / BAGEL VLM SFT (vlm_dataset.py): human turns split at <image>,
 * the k-th marker takes the k-th image (ViT only); a gpt turn is one text
 * with the loss. The official loader drops extra markers or images
 * silently; a mismatch is a reject here. */
static int parse_llava(plan_t *p, const json_t *root)
{
    const json_t *imgs = json_object_get(root, "image"), *conv;
    int rc;
    size_t nimg = 0;
    if (imgs && json_is_string(imgs)) {
        nimg = 1;
    } else if (imgs && json_is_array(imgs)) {
        nimg = json_array_size(imgs);
        for (size_t i = 0; i < nimg; i++)
            if (!json_is_string(json_array_get(imgs, i)))
                return fail(p, READ_BAD_FIELD, "\"image\"[%zu]: expected a string, got %s", i,
                            jtype(json_array_get(imgs, i)));
    } else if (imgs && !json_is_null(imgs)) {
        return fail(p, READ_BAD_FIELD, "\"image\": expected a string or an array of strings, got %s", jtype(imgs));
    }
    if ((rc = get_list(p, root, "conversations", &conv)))
        return rc;
    size_t marks = 0;
    for (size_t i = 0; i < json_array_size(conv); i++) {
        const json_t *turn = json_array_get(conv, i);
        char where[48];
        snprintf(where, sizeof where, "conversations[%zu]", i);
        const char *from, *v;
        size_t fn, vn;
        if (!json_is_object(turn))
            return fail(p, READ_BAD_FIELD, "%s: expected an object, got %s", where, jtype(turn));
        if ((rc = get_str(p, turn, where, "from", true, &from, &fn)) ||
            (rc = get_str(p, turn, where, "value", true, &v, &vn)))
            return rc;
        bool human = fn == 5 && memcmp(from, "human", 5) == 0;
        bool gpt = fn == 3 && memcmp(from, "gpt", 3) == 0;
        bool sys = fn == 6 && memcmp(from, "system", 6) == 0;
        if (!human && !gpt && !sys) {
            char b[SHOW_LEN];
            return fail(p, READ_BAD_FIELD, "%s.\"from\": expected human, gpt or system, got \"%s\"", where,
                        show(b, from, fn));
        }
        const char *mark = human ? memmem(v, vn, "<image>", 7) : NULL;
        if (!mark) {
            // no marker: the turn's text as it is, unstripped
            item_t *it = push(p, false, gpt ? "assistant" : human ? "user" : "system", v, vn);
            if (!it)
                return oom(p);
            set(it, gpt, 0, 0, 0);
            continue;
        }
        const char *s = v, *end = v + vn;
        while (mark) {
            if ((rc = push_chunk(p, s, (size_t)(mark - s))))
                return rc;
            if (marks < nimg) {
                const json_t *im = json_is_string(imgs) ? imgs : json_array_get(imgs, marks);
                item_t *it = push(p, true, "user", json_string_value(im), json_string_length(im));
                if (!it)
                    return oom(p);
                set(it, 0, 1, 0, 0);
            }
            marks++;
            s = mark + 7;
            mark = memmem(s, (size_t)(end - s), "<image>", 7);
        }
        if ((rc = push_chunk(p, s, (size_t)(end - s))))
            return rc;
    }
    if (marks != nimg)
        return fail(p, READ_MARKERS, "%zu <image> marker%s in the human turns but %zu image%s", marks,
                    marks == 1 ? "" : "s", nimg, nimg == 1 ? "" : "s");
    return 0;
}

/* conversations and sequence: the flags a role implies, where not given.
 * The sample generates an image when some image has the loss; then inputs
 * are conditioning as in the edit layout (clean VAE + ViT, CFG-droppable,
 * and user text too); otherwise it is a VLM sample and nothing drops. */
static int role_defaults(plan_t *p, const char *list)
{
    bool gen_sample = false;
    for (int i = 0; i < p->n; i++) {
        item_t *it = &p->v[i];
        bool asst = strcmp(it->role, "assistant") == 0;
        if (it->loss < 0)
            it->loss = asst;
        if (it->image && it->loss)
            gen_sample = true;
    }
    for (int i = 0; i < p->n; i++) {
        item_t *it = &p->v[i];
        if (!it->image) {
            if (it->cfg < 0)
                it->cfg = !it->loss && strcmp(it->role, "system") != 0 && gen_sample;
            continue;
        }
        bool more = i + 1 < p->n;
        // a target gets clean copies when something follows it; an input is
        // seen by the ViT, and by the VAE too when the sample generates
        int und = it->loss ? more : 1, cond = it->loss ? more : gen_sample, cfg = it->loss ? more : gen_sample;
        if (it->und < 0)
            it->und = (signed char)und;
        if (it->cond < 0)
            it->cond = (signed char)(it->gen == 1 && !it->loss ? 1 : cond);
        if (it->gen < 0)
            it->gen = it->loss || it->cond;
        if (it->cfg < 0)
            it->cfg = (signed char)cfg;
        if (!it->gen && (it->loss || it->cond))
            return fail(p, READ_BAD_FIELD, "%s[%d]: \"%s\" needs \"gen\" (the VAE)", list, i,
                        it->loss ? "loss" : "cond");
        if (it->gen && !it->loss && !it->cond)
            return fail(p, READ_BAD_FIELD, "%s[%d]: \"gen\" without \"loss\" or \"cond\"", list, i);
        if (!it->gen && !it->und)
            return fail(p, READ_BAD_FIELD, "%s[%d]: image used nowhere (\"und\" and \"gen\" both false)", list, i);
    }
    return 0;
}

/* ---- detection ---- */

static int detect(plan_t *p, const json_t *root, read_format_t *f)
{
    static const struct {
        const char *key;
        read_format_t f;
    } marks[] = {
        {"conversations", READ_CONVERSATIONS}, {"sequence", READ_SEQUENCE}, {"interleaved", READ_INTERLEAVED},
        {"editing_steps", READ_EDIT},          {"input_image", READ_EDIT},
    };
    int found = -1;
    for (size_t i = 0; i < sizeof marks / sizeof *marks; i++) {
        if (!json_object_get(root, marks[i].key))
            continue;
        if (found >= 0 && marks[found].f != marks[i].f)
            return fail(p, READ_BAD_FORMAT, "both \"%s\" and \"%s\": which format is it? (--format forces one)",
                        marks[found].key, marks[i].key);
        found = (int)i;
    }
    if (found >= 0) {
        *f = marks[found].f;
        if (*f == READ_CONVERSATIONS) {
            // LLaVA turns are {"from","value"}; an "image" key is LLaVA's too
            const json_t *c = json_object_get(root, "conversations"), *first = json_array_get(c, 0);
            if (json_object_get(root, "image") || (json_is_object(first) && json_object_get(first, "from")))
                *f = READ_LLAVA;
        }
        return 0;
    }
    if (json_object_get(root, "image_path") || json_object_get(root, "image")) {
        bool answer = json_object_get(root, "caption") || json_object_get(root, "response") ||
                      (json_object_get(root, "prompt") && json_object_get(root, "text"));
        *f = answer ? READ_I2T : READ_T2I;
        return 0;
    }
    return fail(p, READ_BAD_FORMAT,
                "unknown format: expected one of the keys conversations, sequence, interleaved, editing_steps, "
                "image_path or image");
}

static const char *task_of(read_format_t f)
{
    switch (f) {
    case READ_T2I: return "t2i";
    case READ_I2T: return "i2t";
    case READ_EDIT: return "edit";
    case READ_INTERLEAVED: return "interleave";
    case READ_SEQUENCE: return "sequence";
    default: return "chat";
    }
}

/* ---- paths ---- */

int read_resolve_path(const read_ctx_t *ctx, const char *path, size_t len, char *out, size_t outsize, char *full,
                      size_t fullsize, char *err, size_t errsize)
{
    if (len == 0) {
        snprintf(err, errsize, "empty image path");
        return READ_BAD_PATH;
    }
    if (len >= outsize || memchr(path, 0, len)) {
        snprintf(err, errsize, "image path longer than %zu bytes or holding a NUL byte", outsize - 1);
        return READ_BAD_PATH;
    }
    if (!ctx->root) {
        memcpy(out, path, len);
        out[len] = 0;
        snprintf(full, fullsize, "%s", out);
        return 0;
    }
    if (path[0] == '/') {
        snprintf(err, errsize, "an absolute path; under --root, image paths are relative to it");
        return READ_BAD_PATH;
    }
    // lexical normalization: no file system access, so a missing file or a
    // path through a symbolic link cannot change the answer
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        size_t n = j - i;
        if (n == 2 && path[i] == '.' && path[i + 1] == '.') {
            if (o == 0) {
                snprintf(err, errsize, "escapes --root");
                return READ_BAD_PATH;
            }
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; // the separator
        } else if (n > 0 && !(n == 1 && path[i] == '.')) {
            if (o)
                out[o++] = '/';
            memcpy(out + o, path + i, n);
            o += n;
        }
        i = j + 1;
    }
    out[o] = 0;
    if (o == 0) {
        snprintf(err, errsize, "names the --root directory itself, not a file");
        return READ_BAD_PATH;
    }
    size_t rl = strlen(ctx->root);
    bool slash = rl && ctx->root[rl - 1] == '/';
    if ((size_t)snprintf(full, fullsize, "%s%s%s", ctx->root, slash ? "" : "/", out) >= fullsize) {
        snprintf(err, errsize, "path under --root too long");
        return READ_BAD_PATH;
    }
    return 0;
}

/* --check-images: a readable regular file, and under --root really (a
 * symbolic link inside the root may point out of it). */
static int check_image(const read_ctx_t *ctx, const char *full, char *err, size_t errsize)
{
    int fd = open(full, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errsize, "%s", strerror(errno));
        return READ_NO_IMAGE;
    }
    struct stat st;
    int rc = fstat(fd, &st);
    close(fd);
    if (rc || !S_ISREG(st.st_mode)) {
        snprintf(err, errsize, "not a regular file");
        return READ_NO_IMAGE;
    }
    if (ctx->real_root) {
        char rp[PATH_MAX];
        size_t rl = strlen(ctx->real_root);
        if (!realpath(full, rp) || strncmp(rp, ctx->real_root, rl) != 0 || (rl > 1 && rp[rl] != '/')) {
            snprintf(err, errsize, "escapes --root through a symbolic link");
            return READ_BAD_PATH;
        }
    }
    return 0;
}

/* ---- records ---- */

rec_t *read_new_sample(const read_where_t *w, const char *task)
{
    rec_t *r = rec_new_sample(w->source, w->line, w->epoch, task);
    if (r && strcmp(w->source, w->file) != 0) {
        char id[1024];
        snprintf(id, sizeof id, "%s#%lld", w->file, (long long)w->line);
        if (rec_set(r, &r->root, "id", rec_str(r, id)))
            rec_destroy(&r);
    }
    return r;
}

rec_t *read_make_reject(const read_where_t *w, const char *err)
{
    rec_t *s = read_new_sample(w, NULL);
    if (!s)
        return NULL;
    rec_t *r = rec_new_reject(s, "bagel-read", err);
    rec_destroy(&s);
    return r;
}

static bool str_ok(msgpack_object o) { return o.type == MSGPACK_OBJECT_STR; }

static int segment(rec_t *r, const read_ctx_t *ctx, plan_t *p, const item_t *it, msgpack_object *seg)
{
    *seg = rec_map();
    msgpack_object kind = rec_str(r, it->image ? "image" : "text"), role = rec_str(r, it->role);
    if (!str_ok(kind) || !str_ok(role) || rec_set(r, seg, "kind", kind) || rec_set(r, seg, "role", role))
        return oom(p);
    if (!it->image) {
        msgpack_object t = rec_strn(r, it->str, it->len);
        if ((it->len && !str_ok(t)) || rec_set(r, seg, "text", t) || rec_set(r, seg, "loss", rec_bool(it->loss)) ||
            rec_set(r, seg, "cfg", rec_bool(it->cfg)))
            return oom(p);
        return 0;
    }
    char rel[READ_MAX_PATH], full[READ_MAX_PATH + PATH_MAX], why[160], b[SHOW_LEN];
    int rc = read_resolve_path(ctx, it->str, it->len, rel, sizeof rel, full, sizeof full, why, sizeof why);
    if (!rc && ctx->check_images)
        rc = check_image(ctx, full, why, sizeof why);
    if (rc)
        return fail(p, rc, "image \"%s\": %s", show(b, it->str, it->len), why);
    msgpack_object path = rec_str(r, rel);
    if (!str_ok(path) || rec_set(r, seg, "path", path) || rec_set(r, seg, "und", rec_bool(it->und)) ||
        rec_set(r, seg, "gen", rec_bool(it->gen)) || rec_set(r, seg, "loss", rec_bool(it->loss)) ||
        rec_set(r, seg, "cond", rec_bool(it->cond)) || rec_set(r, seg, "cfg", rec_bool(it->cfg)))
        return oom(p);
    return 0;
}

static int build(plan_t *p, const read_ctx_t *ctx, read_format_t f, rec_t **out)
{
    bool loss = false;
    for (int i = 0; i < p->n; i++)
        loss = loss || p->v[i].loss;
    if (p->n > READ_MAX_SEGMENTS)
        return fail(p, READ_BAD_FIELD, "%d segments, more than %d", p->n, READ_MAX_SEGMENTS);
    if (!loss)
        return fail(p, READ_NO_LOSS, "no segment has a loss: nothing to train on");
    rec_t *r = read_new_sample(p->w, task_of(f));
    if (!r)
        return oom(p);
    // one array of the final size: rec_push would copy it at every segment
    msgpack_object segs = rec_array();
    segs.via.array.ptr = msgpack_zone_malloc(r->zone, (size_t)p->n * sizeof(msgpack_object));
    segs.via.array.size = (uint32_t)p->n;
    if (!segs.via.array.ptr) {
        rec_destroy(&r);
        return oom(p);
    }
    for (int i = 0; i < p->n; i++) {
        int rc = segment(r, ctx, p, &p->v[i], &segs.via.array.ptr[i]);
        if (rc) {
            rec_destroy(&r);
            return rc;
        }
    }
    if (rec_set(r, &r->root, "segments", segs)) {
        rec_destroy(&r);
        return oom(p);
    }
    *out = r;
    return 0;
}

int read_parse_line(const char *line, size_t len, const read_ctx_t *ctx, const read_where_t *w, rec_t **out, char *err)
{
    plan_t p = {.w = w, .err = err};
    *out = NULL;
    size_t ok = utf8_valid_prefix(line, len);
    if (ok < len)
        return fail(&p, READ_BAD_UTF8, "invalid UTF-8 at byte %zu (0x%02x)", ok + 1, (unsigned char)line[ok]);
    json_error_t je;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail(&p, READ_BAD_JSON, "invalid JSON at column %d: %s", je.column > 0 ? je.column : je.position + 1,
                    je.text);
    int rc;
    read_format_t f = ctx->format;
    if (!json_is_object(root))
        rc = fail(&p, READ_BAD_JSON, "expected a JSON object, got %s", jtype(root));
    else if (f == READ_AUTO && (rc = detect(&p, root, &f)))
        ;
    else {
        switch (f) {
        case READ_CONVERSATIONS:
            rc = parse_conversations(&p, root);
            rc = rc ? rc : role_defaults(&p, "conversations");
            break;
        case READ_SEQUENCE:
            rc = parse_sequence(&p, root);
            rc = rc ? rc : role_defaults(&p, "sequence");
            break;
        case READ_T2I: rc = parse_t2i(&p, root); break;
        case READ_I2T: rc = parse_i2t(&p, root); break;
        case READ_EDIT: rc = parse_edit(&p, root); break;
        case READ_INTERLEAVED: rc = parse_interleaved(&p, root); break;
        default: rc = parse_llava(&p, root); break;
        }
        if (!rc)
            rc = build(&p, ctx, f, out);
    }
    json_decref(root);
    free(p.v);
    return rc;
}
