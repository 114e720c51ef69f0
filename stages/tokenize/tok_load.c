/* tok_load.c — read a HuggingFace tokenizer.json into a tok_t, refusing
 * every component tok.h does not list, by name. */
#include "tok_impl.h"

#include "../../ipc/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_IDS (1 << 24) // ids beyond this are not a tokenizer we know

/* The bytes a token string decodes to, appended at t->dec_bytes: through the
 * reverse ByteLevel map when every character is in it, else the string's own
 * bytes (what HF's ByteLevel decoder does). */
static size_t token_bytes(const char *s, size_t n, char *dst)
{
    size_t k = 0, i = 0;
    while (i < n) {
        uint8_t b = (uint8_t)s[i];
        uint32_t c;
        size_t len = b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
        if (i + len > n)
            goto raw;
        c = len == 1 ? b : len == 2 ? (uint32_t)(b & 0x1f) : len == 3 ? (uint32_t)(b & 0x0f) : (uint32_t)(b & 7);
        for (size_t j = 1; j < len; j++)
            c = c << 6 | ((uint8_t)s[i + j] & 0x3f);
        int by = tok_char_byte(c);
        if (by < 0)
            goto raw;
        dst[k++] = (char)by;
        i += len;
    }
    return k;
raw:
    memcpy(dst, s, n);
    return n;
}

int32_t tok_vocab_find(const tok_t *t, const char *p, size_t n)
{
    uint64_t h = tok_hash(p, n);
    for (uint64_t i = h & t->vocab_mask;; i = (i + 1) & t->vocab_mask) {
        const tok_vslot_t *v = &t->vocab[i];
        if (v->id < 0)
            return -1;
        if (v->hash == h && v->len == n && memcmp(t->dec_bytes + v->off, p, n) == 0)
            return v->id;
    }
}

static uint64_t pow2_above(uint64_t n)
{
    uint64_t c = 1024;
    while (c < 2 * n)
        c *= 2;
    return c;
}

/* Fail with a message naming the tokenizer.json field. */
#define FAIL(...)                                                                                                      \
    do {                                                                                                               \
        snprintf(err, TOK_ERR_LEN, __VA_ARGS__);                                                                       \
        goto fail;                                                                                                     \
    } while (0)

static bool is_null_or(const json_t *o, const char *str)
{
    return !o || json_is_null(o) || (str && json_is_string(o) && strcmp(json_string_value(o), str) == 0);
}

static const char *type_of(const json_t *o)
{
    const char *s = json_string_value(json_object_get(o, "type"));
    return s ? s : "(no type)";
}

static const char QWEN2_PATTERN[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int check_pipeline(tok_t *t, json_t *root, char *err)
{
    json_t *o;
    if (!is_null_or(json_object_get(root, "truncation"), NULL))
        FAIL("truncation: not supported (null expected): encode gives every id");
    if (!is_null_or(json_object_get(root, "padding"), NULL))
        FAIL("padding: not supported (null expected)");
    o = json_object_get(root, "normalizer");
    if (is_null_or(o, NULL))
        t->nfc = false;
    else if (strcmp(type_of(o), "NFC") == 0)
        t->nfc = true;
    else
        FAIL("normalizer: type %s is not supported (NFC or null expected)", type_of(o));
    o = json_object_get(root, "pre_tokenizer");
    json_t *seq = json_object_get(o, "pretokenizers");
    if (!o || strcmp(type_of(o), "Sequence") != 0 || json_array_size(seq) != 2)
        FAIL("pre_tokenizer: %s is not supported (Sequence of Split and ByteLevel expected)", o ? type_of(o) : "null");
    json_t *split = json_array_get(seq, 0), *bl = json_array_get(seq, 1);
    if (strcmp(type_of(split), "Split") != 0)
        FAIL("pre_tokenizer.pretokenizers[0]: %s is not supported (Split expected)", type_of(split));
    const char *re = json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex"));
    if (!re || strcmp(re, QWEN2_PATTERN) != 0)
        FAIL("pre_tokenizer: Split pattern %.120s is not supported (the Qwen2 pattern expected)",
             re ? re : "(not a Regex)");
    if (!is_null_or(json_object_get(split, "behavior"), "Isolated") || json_is_true(json_object_get(split, "invert")))
        FAIL("pre_tokenizer: Split behavior %s invert %s is not supported (Isolated, false expected)",
             json_string_value(json_object_get(split, "behavior")),
             json_is_true(json_object_get(split, "invert")) ? "true" : "false");
    if (strcmp(type_of(bl), "ByteLevel") != 0)
        FAIL("pre_tokenizer.pretokenizers[1]: %s is not supported (ByteLevel expected)", type_of(bl));
    if (json_is_true(json_object_get(bl, "add_prefix_space")) || json_is_true(json_object_get(bl, "use_regex")))
        FAIL("pre_tokenizer: ByteLevel with add_prefix_space or use_regex is not supported");
    o = json_object_get(root, "decoder");
    if (!o || strcmp(type_of(o), "ByteLevel") != 0)
        FAIL("decoder: %s is not supported (ByteLevel expected)", o && !json_is_null(o) ? type_of(o) : "null");
    o = json_object_get(root, "post_processor");
    if (!is_null_or(o, NULL) && strcmp(type_of(o), "ByteLevel") != 0)
        FAIL("post_processor: %s is not supported (ByteLevel or null expected)", type_of(o));
    o = json_object_get(root, "model");
    if (!o || strcmp(type_of(o), "BPE") != 0)
        FAIL("model: type %s is not supported (BPE expected)", o ? type_of(o) : "null");
    if (!is_null_or(json_object_get(o, "dropout"), NULL))
        FAIL("model: BPE dropout is not supported (null expected)");
    if (!is_null_or(json_object_get(o, "unk_token"), NULL))
        FAIL("model: BPE unk_token is not supported (null expected)");
    if (!is_null_or(json_object_get(o, "continuing_subword_prefix"), "") ||
        !is_null_or(json_object_get(o, "end_of_word_suffix"), ""))
        FAIL("model: BPE continuing_subword_prefix/end_of_word_suffix are not supported");
    if (json_is_true(json_object_get(o, "byte_fallback")) || json_is_true(json_object_get(o, "fuse_unk")))
        FAIL("model: BPE byte_fallback/fuse_unk are not supported");
    t->ignore_merges = json_is_true(json_object_get(o, "ignore_merges"));
    return 0;
fail:
    return -1;
}

/* Set id's decoded bytes from its token string. */
static int set_token(tok_t *t, int32_t id, const char *s, size_t n, size_t *cap)
{
    if (t->dec_len + n > *cap) {
        size_t c = (*cap + n) * 2;
        char *p = realloc(t->dec_bytes, c);
        if (!p)
            return -1;
        t->dec_bytes = p, *cap = c;
    }
    // an id may be set twice (an added token over a vocabulary one): the
    // last wins; its old bytes stay unused
    t->dec_off[id] = (uint32_t)t->dec_len;
    size_t k = token_bytes(s, n, t->dec_bytes + t->dec_len);
    t->dec_len += k;
    t->dec_has[id] = 1;
    return (int)k;
}

void tok_spec_free(tok_spec_t *s)
{
    free(s->vocab);
    free(s->merges);
    free(s->added);
    *s = (tok_spec_t){0};
}

/* The spec of a tokenizer.json's tree: every check that names a JSON field.
 * Strings point into root. */
static int spec_of_json(json_t *root, tok_spec_t *sp, char *err)
{
    tok_t flags = {0};
    char *cat = NULL;
    *sp = (tok_spec_t){0};
    if (!json_is_object(root))
        FAIL("not a JSON object");
    if (check_pipeline(&flags, root, err))
        goto fail;
    sp->nfc = flags.nfc, sp->ignore_merges = flags.ignore_merges;
    json_t *model = json_object_get(root, "model"), *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges"), *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0)
        FAIL("model.vocab: missing or empty (an object of token: id expected)");
    if (!json_is_array(merges))
        FAIL("model.merges: missing (an array expected)");
    if (added && !json_is_array(added) && !json_is_null(added))
        FAIL("added_tokens: not an array");
    sp->vocab = malloc(json_object_size(vocab) * sizeof *sp->vocab);
    sp->merges = malloc((json_array_size(merges) + 1) * sizeof *sp->merges);
    sp->added = malloc((json_array_size(added) + 1) * sizeof *sp->added);
    if (!sp->vocab || !sp->merges || !sp->added)
        FAIL("out of memory");
    // the id range
    int64_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val)
    {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= MAX_IDS)
            FAIL("model.vocab: %.60s: id is not an integer in [0, %d)", key, MAX_IDS);
        if (json_integer_value(val) > max_id)
            max_id = json_integer_value(val);
        sp->vocab[sp->nv++] = (tok_str_t){key, (uint32_t)strlen(key), (int32_t)json_integer_value(val), false};
    }
    size_t i;
    json_array_foreach(added, i, val)
    {
        json_t *id = json_object_get(val, "id"), *content = json_object_get(val, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MAX_IDS ||
            !json_is_string(content) || json_string_length(content) == 0)
            FAIL("added_tokens[%zu]: id in [0, %d) and non-empty content expected", i, MAX_IDS);
        if (json_integer_value(id) > max_id)
            max_id = json_integer_value(id);
        if (json_is_true(json_object_get(val, "lstrip")) || json_is_true(json_object_get(val, "rstrip")) ||
            json_is_true(json_object_get(val, "single_word")))
            FAIL("added_tokens[%zu]: %.60s: lstrip, rstrip and single_word are not supported", i,
                 json_string_value(content));
        sp->added[sp->na++] = (tok_str_t){json_string_value(content), (uint32_t)json_string_length(content),
                                          (int32_t)json_integer_value(id),
                                          json_is_true(json_object_get(val, "normalized"))};
    }
    sp->n_ids = (int32_t)max_id + 1;
    size_t catcap = 0;
    json_array_foreach(merges, i, val)
    {
        const char *a, *b;
        size_t la, lb;
        char *space = NULL;
        if (json_is_string(val)) { // "a b"
            a = json_string_value(val);
            space = strchr(a, ' ');
            if (!space || strchr(space + 1, ' '))
                FAIL("model.merges[%zu]: \"%.60s\": two tokens separated by one space expected", i, a);
            la = (size_t)(space - a), b = space + 1, lb = strlen(b);
        } else if (json_is_array(val) && json_array_size(val) == 2 && json_is_string(json_array_get(val, 0)) &&
                   json_is_string(json_array_get(val, 1))) {
            a = json_string_value(json_array_get(val, 0)), la = json_string_length(json_array_get(val, 0));
            b = json_string_value(json_array_get(val, 1)), lb = json_string_length(json_array_get(val, 1));
        } else
            FAIL("model.merges[%zu]: a \"a b\" string or a pair of strings expected", i);
        if (la + lb + 1 > catcap) {
            catcap = 2 * (la + lb + 1);
            char *p = realloc(cat, catcap);
            if (!p)
                FAIL("out of memory");
            cat = p;
        }
        memcpy(cat, a, la), cat[la] = 0;
        json_t *ja = json_object_get(vocab, cat);
        memcpy(cat + la, b, lb), cat[la + lb] = 0;
        json_t *jm = json_object_get(vocab, cat);
        memcpy(cat, b, lb), cat[lb] = 0;
        json_t *jb = json_object_get(vocab, cat);
        if (!ja || !jb || !jm)
            FAIL("model.merges[%zu]: %s of \"%.40s\" + \"%.40s\" is not in the vocabulary", i,
                 !ja   ? "the first"
                 : !jb ? "the second"
                       : "the merge",
                 a, b);
        sp->merges[sp->nm++] = (tok_pair_t){(int32_t)json_integer_value(ja), (int32_t)json_integer_value(jb),
                                            (int32_t)json_integer_value(jm)};
    }
    free(cat);
    return 0;
fail:
    free(cat);
    tok_spec_free(sp);
    return -1;
}

tok_t *tok_build(const tok_spec_t *sp, char *err)
{
    tok_t *t = calloc(1, sizeof *t);
    uint32_t *lens = NULL;
    if (!t)
        FAIL("out of memory");
    tok_classes_init();
    if (sp->n_ids <= 0 || sp->n_ids > MAX_IDS || sp->nv == 0)
        FAIL("model.vocab: %d ids: 1 to %d expected", sp->n_ids, MAX_IDS);
    t->nfc = sp->nfc, t->ignore_merges = sp->ignore_merges;
    t->n_ids = sp->n_ids;
    t->dec_off = calloc((size_t)t->n_ids, sizeof *t->dec_off);
    lens = calloc((size_t)t->n_ids, sizeof *lens);
    t->dec_has = calloc((size_t)t->n_ids, 1);
    if (!t->dec_off || !lens || !t->dec_has)
        FAIL("out of memory");
    size_t cap = 0;
    for (size_t i = 0; i < sp->nv; i++) {
        int32_t id = sp->vocab[i].id;
        if (id < 0 || id >= t->n_ids)
            FAIL("model.vocab: id %d out of range", id);
        if (t->dec_has[id])
            FAIL("model.vocab: id %d is given twice", id);
        int k = set_token(t, id, sp->vocab[i].s, sp->vocab[i].n, &cap);
        if (k < 0)
            FAIL("out of memory");
        lens[id] = (uint32_t)k;
    }
    // vocabulary bytes -> id
    t->vocab_mask = pow2_above(sp->nv) - 1;
    t->vocab = malloc((t->vocab_mask + 1) * sizeof *t->vocab);
    if (!t->vocab)
        FAIL("out of memory");
    for (uint64_t s = 0; s <= t->vocab_mask; s++)
        t->vocab[s].id = -1;
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (!t->dec_has[id])
            continue;
        const char *p = t->dec_bytes + t->dec_off[id];
        uint64_t h = tok_hash(p, lens[id]), s = h & t->vocab_mask;
        while (t->vocab[s].id >= 0)
            s = (s + 1) & t->vocab_mask;
        t->vocab[s] = (tok_vslot_t){h, t->dec_off[id], lens[id], id};
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if ((t->byte_id[b] = tok_vocab_find(t, &c, 1)) < 0)
            FAIL("model.vocab: no token for byte 0x%02x (a byte-level vocabulary has all 256)", b);
    }
    // merges: rank = index; a pair given twice keeps its last rank, as HF
    t->merge_mask = pow2_above(sp->nm) - 1;
    t->merges = malloc((t->merge_mask + 1) * sizeof *t->merges);
    if (!t->merges)
        FAIL("out of memory");
    for (uint64_t s = 0; s <= t->merge_mask; s++)
        t->merges[s].rank = UINT32_MAX;
    for (size_t i = 0; i < sp->nm; i++) {
        const tok_pair_t *m = &sp->merges[i];
        if (m->a < 0 || m->a >= t->n_ids || m->b < 0 || m->b >= t->n_ids || m->m < 0 || m->m >= t->n_ids)
            FAIL("model.merges[%zu]: an id out of range", i);
        uint64_t key = (uint64_t)(uint32_t)m->a << 32 | (uint32_t)m->b;
        uint64_t x = key;
        x ^= x >> 33, x *= 0xff51afd7ed558ccdULL, x ^= x >> 33; // bpe.c's mix
        uint64_t s = x & t->merge_mask;
        while (t->merges[s].rank != UINT32_MAX && t->merges[s].key != key)
            s = (s + 1) & t->merge_mask;
        t->merges[s] = (tok_merge_t){key, (uint32_t)i, m->m};
    }
    // added tokens: content bytes for matching and decoding
    t->added = calloc(sp->na ? sp->na : 1, sizeof *t->added);
    if (!t->added)
        FAIL("out of memory");
    for (size_t i = 0; i < sp->na; i++) {
        const tok_str_t *c = &sp->added[i];
        if (c->id < 0 || c->id >= t->n_ids || c->n == 0)
            FAIL("added_tokens[%zu]: id in [0, %d) and non-empty content expected", i, t->n_ids);
        tok_added_t *a = &t->added[t->n_added++];
        a->id = c->id;
        a->len = c->n;
        a->normalized = c->normalized;
        if (!(a->content = malloc((size_t)c->n + 1)))
            FAIL("out of memory");
        memcpy(a->content, c->s, c->n);
        a->content[c->n] = 0;
        (a->normalized ? t->first_norm : t->first_raw)[(uint8_t)c->s[0]] = true;
        int k = set_token(t, a->id, c->s, c->n, &cap);
        if (k < 0)
            FAIL("out of memory");
        lens[a->id] = (uint32_t)k;
    }
    // the lengths become ends
    for (int32_t id = 0; id < t->n_ids; id++)
        lens[id] += t->dec_off[id];
    t->dec_end = lens;
    lens = NULL;
    if (!(t->cache = calloc(TOK_CACHE_SLOTS, sizeof *t->cache)))
        FAIL("out of memory");
    return t;
fail:
    free(lens);
    tok_destroy(&t);
    return NULL;
}

static tok_t *build(json_t *root, char *err)
{
    tok_spec_t sp;
    if (spec_of_json(root, &sp, err))
        return NULL;
    tok_t *t = tok_build(&sp, err);
    tok_spec_free(&sp);
    return t;
}

tok_t *tok_load_json(const char *json, size_t len, char *err)
{
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &je);
    if (!root) {
        snprintf(err, TOK_ERR_LEN, "line %d column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    tok_t *t = build(root, err);
    json_decref(root);
    return t;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* The cache directory: dir if given ("off": none), else $BAGEL_CACHE_DIR
 * ("off" or empty: none), $XDG_CACHE_HOME/bagelpipe, ~/.cache/bagelpipe.
 * false when there is none. */
static bool cache_dir_of(const char *dir, char *out, size_t cap)
{
    if (!dir)
        dir = getenv("BAGEL_CACHE_DIR");
    if (dir) {
        if (!*dir || strcmp(dir, "off") == 0)
            return false;
        return (size_t)snprintf(out, cap, "%s", dir) < cap;
    }
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0] == '/')
        return (size_t)snprintf(out, cap, "%s/bagelpipe", xdg) < cap;
    if (home && home[0] == '/')
        return (size_t)snprintf(out, cap, "%s/.cache/bagelpipe", home) < cap;
    return false;
}

tok_t *tok_load_cached(const char *path, const char *cache_dir, tok_load_info_t *info, char *err)
{
    tok_load_info_t scratch;
    if (!info)
        info = &scratch;
    *info = (tok_load_info_t){0};
    double t0 = now_ms();
    char *buf = NULL, *cbuf = NULL, msg[TOK_ERR_LEN];
    size_t len = 0, clen = 0;
    if (fs_read_whole(path, &buf, &len, NULL)) {
        snprintf(err, TOK_ERR_LEN, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char dir[4096];
    bool cached = cache_dir_of(cache_dir, dir, sizeof dir);
    uint64_t h = 0;
    tok_t *t = NULL;
    if (cached) {
        h = tok_hash(buf, len);
        snprintf(info->cache, sizeof info->cache, "%s/tok-%016llx-%zu.bin", dir, (unsigned long long)h, len);
        struct stat cst;
        if (fs_read_whole(info->cache, &cbuf, &clen, &cst) == 0) {
            tok_spec_t sp;
            // a file someone else wrote is not trusted to say how to tokenize
            if (cst.st_uid != geteuid())
                snprintf(msg, sizeof msg, "owned by uid %ld, not by this user", (long)cst.st_uid);
            else if (tok_cache_decode(cbuf, clen, len, h, false, &sp, msg) == 0) {
                t = tok_build(&sp, msg);
                tok_spec_free(&sp);
            }
            free(cbuf);
            if (t) {
                free(buf);
                info->from_cache = true;
                info->ms = now_ms() - t0;
                return t;
            }
            snprintf(info->cache_note, sizeof info->cache_note, "%.600s: %.300s; made again", info->cache, msg);
        } else if (errno != ENOENT)
            snprintf(info->cache_note, sizeof info->cache_note, "%.600s: %s", info->cache, strerror(errno));
    }
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_ALLOW_NUL, &je);
    if (!root) {
        snprintf(err, TOK_ERR_LEN, "%s: line %d column %d: %s (a HuggingFace tokenizer.json expected)", path, je.line,
                 je.column, je.text);
        free(buf);
        return NULL;
    }
    tok_spec_t sp;
    if (spec_of_json(root, &sp, msg) == 0) {
        t = tok_build(&sp, msg);
        char *enc;
        size_t elen;
        if (t && cached) {
            if (tok_cache_encode(&sp, len, h, &enc, &elen))
                snprintf(info->cache_note, sizeof info->cache_note, "%.600s: out of memory", info->cache);
            else {
                // 0700 and 0600: the cache says how to tokenize, so only this user may write it
                if (fs_mkdirs(dir, 0700) || fs_write_whole(info->cache, enc, elen, 0600, false))
                    snprintf(info->cache_note, sizeof info->cache_note, "%.600s: not written: %s", info->cache,
                             strerror(errno));
                free(enc);
            }
        }
        tok_spec_free(&sp);
    }
    json_decref(root);
    free(buf);
    if (!t)
        snprintf(err, TOK_ERR_LEN, "%s: %s", path, msg);
    info->ms = now_ms() - t0;
    return t;
}

tok_t *tok_load(const char *path, char *err) { return tok_load_cached(path, NULL, NULL, err); }
