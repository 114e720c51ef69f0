/* infer.c — see infer.h.
 *
 * Every forward is a packed batch (models/pack.h) whose samples are chunks,
 * one per context, with the packer's positions shifted to each context's
 * next RoPE position (pack_t.rope0). model_infer_forward runs the decoder
 * with model_kv_t: each layer writes every token's key and value into the
 * cache row after its context's last one, then the attention op reads the
 * context's rows plus the chunk's own (all of them for an image, those up to
 * the query for text). A forward that extends a context then moves its
 * length on; an image query leaves it, so the cache is as it was (§6.3). */
#include "infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "rng.h"

const infer_text_opts_t infer_text_defaults = {.max_tokens = 256, .temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
const infer_image_opts_t infer_image_defaults = {.num_timesteps = 50,
                                                 .timestep_shift = 3.0f,
                                                 .cfg_text_scale = 3.0f,
                                                 .cfg_img_scale = 1.5f,
                                                 .cfg_lo = 0.4f,
                                                 .cfg_hi = 1.0f,
                                                 .renorm = INFER_RENORM_GLOBAL,
                                                 .renorm_min = 0.0f};

struct infer {
    model_t *m;
    const op_table_t *o;
    int n_slots, slot_rows;
    int *len, *rope;
    float **k, **v; /* (layers) */
    model_kv_t kv;
    op_kv_attn_t attn;
    /* per-token index arrays of a forward, host and backend */
    int cap;
    int32_t *h_store, *h_qrow, *h_kfirst, *h_kcount;
    int32_t *d_store, *d_qrow, *d_kfirst, *d_kcount;
    /* heads: gathered rows and their outputs */
    int head_cap;          /* rows */
    int32_t *d_idx;        /* (head_cap) */
    float *d_h, *d_out;    /* (head_cap, H), (head_cap, max(V, D)) */
    float *h_out;          /* host (head_cap, max(V, D)) */
    int32_t *h_ids;        /* host (head_cap) */
    pack_t pk;             /* chunks and decoding steps */
    pack_t pq[2];          /* image queries: without and with the CFG branches */
    const model_batch_t *last; /* the batch of the last forward */
    /* what each context holds, as two 64-bit hashes of everything appended
     * since its reset, in order (infer_same); a forward that extends a
     * context by any other path makes it unique (serial) */
    uint64_t (*id)[2];
    uint64_t serial, wepoch;
    int dedup;      /* infer_set_dedup */
    long evaluated; /* infer_image's branch evaluations, last call */
    float *zero_lat;       /* a latent of zeros for the query images' shapes */
    size_t zero_lat_n;
};

static void infer_free_index(infer_t *e)
{
    const op_table_t *o = e->o;
    free(e->h_store), free(e->h_qrow), free(e->h_kfirst), free(e->h_kcount);
    if (e->d_store)
        o->free(e->d_store), o->free(e->d_qrow), o->free(e->d_kfirst), o->free(e->d_kcount);
    e->h_store = e->h_qrow = e->h_kfirst = e->h_kcount = NULL;
    e->d_store = e->d_qrow = e->d_kfirst = e->d_kcount = NULL;
    e->cap = 0;
}

static int infer_grow_index(infer_t *e, int S)
{
    if (S <= e->cap)
        return 0;
    int cap = S > 2 * e->cap ? S : 2 * e->cap;
    infer_free_index(e);
    size_t b = (size_t)cap * sizeof(int32_t);
    e->h_store = malloc(b), e->h_qrow = malloc(b), e->h_kfirst = malloc(b), e->h_kcount = malloc(b);
    e->d_store = e->o->alloc(b), e->d_qrow = e->o->alloc(b), e->d_kfirst = e->o->alloc(b), e->d_kcount = e->o->alloc(b);
    if (!e->h_store || !e->h_qrow || !e->h_kfirst || !e->h_kcount || !e->d_store || !e->d_qrow || !e->d_kfirst ||
        !e->d_kcount) {
        infer_free_index(e);
        return -1;
    }
    e->cap = cap;
    return 0;
}

static int infer_grow_heads(infer_t *e, int rows)
{
    if (rows <= e->head_cap)
        return 0;
    const op_table_t *o = e->o;
    const model_config_t *c = &e->m->cfg;
    int cap = rows > 2 * e->head_cap ? rows : 2 * e->head_cap;
    size_t wide = (size_t)(c->vocab > model_latent_dim(c) ? c->vocab : model_latent_dim(c));
    if (e->d_idx)
        o->free(e->d_idx), o->free(e->d_h), o->free(e->d_out);
    free(e->h_out);
    free(e->h_ids);
    e->h_ids = malloc((size_t)cap * sizeof(int32_t));
    e->d_idx = o->alloc((size_t)cap * sizeof(int32_t));
    e->d_h = o->alloc((size_t)cap * c->hidden * sizeof(float));
    e->d_out = o->alloc((size_t)cap * wide * sizeof(float));
    e->h_out = malloc((size_t)cap * wide * sizeof(float));
    if (!e->d_idx || !e->d_h || !e->d_out || !e->h_out || !e->h_ids) {
        e->head_cap = 0;
        return -1;
    }
    e->head_cap = cap;
    return 0;
}

infer_t *infer_new(model_t *m, int n_slots, int slot_rows, char *err, size_t errlen)
{
    const model_config_t *c = &m->cfg;
    if (n_slots <= 0 || slot_rows <= 0) {
        snprintf(err, errlen, "the cache needs at least one slot of one row (asked %d of %d)", n_slots, slot_rows);
        return NULL;
    }
    infer_t *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->m = m, e->o = m->ops, e->n_slots = n_slots, e->slot_rows = slot_rows;
    e->len = calloc((size_t)n_slots, sizeof(int));
    e->rope = calloc((size_t)n_slots, sizeof(int));
    e->id = calloc((size_t)n_slots, sizeof *e->id);
    e->dedup = 1;
    e->k = calloc((size_t)c->layers, sizeof(float *));
    e->v = calloc((size_t)c->layers, sizeof(float *));
    if (!e->len || !e->rope || !e->id || !e->k || !e->v) {
        snprintf(err, errlen, "out of memory");
        infer_destroy(&e);
        return NULL;
    }
    size_t bytes = (size_t)n_slots * slot_rows * c->kv_heads * c->head_dim * sizeof(float);
    for (int l = 0; l < c->layers; l++) {
        e->k[l] = e->o->alloc(bytes);
        e->v[l] = e->o->alloc(bytes);
        if (!e->k[l] || !e->v[l]) {
            snprintf(err, errlen, "out of %s memory for a key/value cache of %d x %d rows (%.1f GiB)", e->o->name,
                     n_slots, slot_rows, 2.0 * c->layers * (double)bytes / (1 << 30));
            infer_destroy(&e);
            return NULL;
        }
    }
    e->kv.k = e->k, e->kv.v = e->v;
    /* the weights stay as they are while the engine runs (infer_weights_changed) */
    e->o->hold_weights(m->param_mem, m->n_floats);
    pack_init(&e->pk, c, &pack_default_opts, 1);
    pack_init(&e->pq[0], c, &pack_default_opts, 1);
    pack_init(&e->pq[1], c, &pack_default_opts, 1);
    return e;
}

void infer_destroy(infer_t **pe)
{
    infer_t *e = *pe;
    if (!e)
        return;
    const op_table_t *o = e->o;
    if (e->k)
        for (int l = 0; l < e->m->cfg.layers; l++) {
            if (e->k[l])
                o->free(e->k[l]);
            if (e->v[l])
                o->free(e->v[l]);
        }
    free(e->k), free(e->v), free(e->len), free(e->rope), free(e->id);
    infer_free_index(e);
    if (e->d_idx)
        o->free(e->d_idx), o->free(e->d_h), o->free(e->d_out);
    free(e->h_out);
    free(e->h_ids);
    free(e->zero_lat);
    e->o->hold_weights(NULL, 0);
    pack_free(&e->pk);
    pack_free(&e->pq[0]);
    pack_free(&e->pq[1]);
    free(e);
    *pe = NULL;
}

void infer_weights_changed(infer_t *e)
{
    e->o->hold_weights(e->m->param_mem, e->m->n_floats);
    e->wepoch++; /* what is appended from now on is of other weights */
}

void infer_set_dedup(infer_t *e, int on) { e->dedup = on; }
long infer_evaluated(const infer_t *e) { return e->evaluated; }

/* ---- what a context holds: two independent 64-bit hashes (FNV-1a, and a
 * multiply-rotate one) over the bytes appended since its reset */
static void id_bytes(uint64_t id[2], const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h0 = id[0], h1 = id[1];
    for (size_t i = 0; i < n; i++) {
        h0 = (h0 ^ b[i]) * 0x100000001b3ull;
        h1 = (h1 ^ b[i]) * 0x9e3779b97f4a7c15ull;
        h1 = h1 << 29 | h1 >> 35;
    }
    id[0] = h0, id[1] = h1;
}

static void id_int(uint64_t id[2], int64_t v) { id_bytes(id, &v, sizeof v); }

/* the id of context slot after chunk c is appended to it */
static void id_chunk(const infer_t *e, int slot, const infer_chunk_t *c, uint64_t out[2])
{
    out[0] = e->id[slot][0], out[1] = e->id[slot][1];
    id_int(out, (int64_t)e->wepoch);
    id_int(out, c->kind);
    switch (c->kind) {
    case INFER_TEXT:
    case INFER_TOKENS:
        id_int(out, c->n_ids);
        id_bytes(out, c->ids, (size_t)c->n_ids * sizeof *c->ids);
        break;
    case INFER_VIT:
        id_int(out, c->img_h), id_int(out, c->img_w);
        id_bytes(out, c->img, (size_t)c->img_h * c->img_w * 3);
        break;
    default: /* INFER_VAE */
        id_int(out, c->gh), id_int(out, c->gw);
        id_bytes(out, c->lat, (size_t)c->gh * c->gw * model_latent_dim(&e->m->cfg) * sizeof(float));
        break;
    }
}

/* Do contexts a and b hold the same? (then their keys and values are those
 * of one sequence, and a query against either gives the same result) */
static int infer_same(const infer_t *e, int a, int b)
{
    return a == b || (e->len[a] == e->len[b] && e->rope[a] == e->rope[b] && e->id[a][0] == e->id[b][0] &&
                      e->id[a][1] == e->id[b][1]);
}

void infer_reset(infer_t *e, int slot)
{
    e->len[slot] = e->rope[slot] = 0;
    e->id[slot][0] = e->id[slot][1] = 0;
}
int infer_len(const infer_t *e, int slot) { return e->len[slot]; }
int infer_slots(const infer_t *e) { return e->n_slots; }
int infer_slot_rows(const infer_t *e) { return e->slot_rows; }
int infer_rope(const infer_t *e, int slot) { return e->rope[slot]; }

void infer_copy(infer_t *e, int dst, int src)
{
    const model_config_t *c = &e->m->cfg;
    int K = c->kv_heads * c->head_dim;
    if (dst == src)
        return;
    if (e->len[src] > 0)
        for (int l = 0; l < c->layers; l++) {
            size_t d0 = (size_t)dst * e->slot_rows * K, s0 = (size_t)src * e->slot_rows * K;
            e->o->rows_copy(e->k[l] + d0, NULL, e->k[l] + s0, NULL, e->len[src], K);
            e->o->rows_copy(e->v[l] + d0, NULL, e->v[l] + s0, NULL, e->len[src], K);
        }
    e->len[dst] = e->len[src];
    e->rope[dst] = e->rope[src];
    e->id[dst][0] = e->id[src][0], e->id[dst][1] = e->id[src][1];
}

/* Batch b, whose sample s is a chunk of context slots[s], into the model:
 * the cache rows and attention ranges of every token, the activations
 * sized, the batch uploaded (model_infer_load); e->kv then runs it. */
static int infer_load(infer_t *e, const model_batch_t *b, const int *slots, char *err, size_t errlen)
{
    model_t *m = e->m;
    const model_config_t *c = &m->cfg;
    if (infer_grow_index(e, b->S)) {
        snprintf(err, errlen, "out of memory for %d tokens of index arrays", b->S);
        return -1;
    }
    int p0 = 0, qi = 0;
    for (int s = 0; s < b->n_samples; s++) {
        int sl = slots[s], n = b->sample_lens[s];
        if (e->len[sl] + n > e->slot_rows) {
            snprintf(err, errlen, "context %d would hold %d tokens, more than the %d it has room for", sl,
                     e->len[sl] + n, e->slot_rows);
            return -1;
        }
        /* the chunk is one split: causal text, or a full image */
        int sp = 0;
        while (sp + 1 < b->n_splits && b->split_start[sp + 1] <= p0)
            sp++;
        int causal = b->split_mode[sp] == OP_SPLIT_CAUSAL;
        int base = sl * e->slot_rows;
        for (int j = 0; j < n; j++) {
            int r = b->row_of_pos[p0 + j];
            e->h_store[r] = base + e->len[sl] + j;
            e->h_qrow[qi] = r;
            e->h_kfirst[qi] = base;
            e->h_kcount[qi] = e->len[sl] + (causal ? j + 1 : n);
            qi++;
        }
        p0 += n;
    }
    const op_table_t *o = e->o;
    size_t bytes = (size_t)b->S * sizeof(int32_t);
    o->upload(e->d_store, e->h_store, bytes);
    o->upload(e->d_qrow, e->h_qrow, bytes);
    o->upload(e->d_kfirst, e->h_kfirst, bytes);
    o->upload(e->d_kcount, e->h_kcount, bytes);
    e->attn = (op_kv_attn_t){.n_q = b->S,
                             .n_heads = c->heads,
                             .n_kv_heads = c->kv_heads,
                             .head_dim = c->head_dim,
                             .scale = 1.0f / sqrtf((float)c->head_dim),
                             .q_row = e->d_qrow,
                             .k_first = e->d_kfirst,
                             .k_count = e->d_kcount,
                             .h_q_row = e->h_qrow,
                             .h_k_first = e->h_kfirst,
                             .h_k_count = e->h_kcount};
    e->kv.store_row = e->d_store;
    e->kv.attn = &e->attn;

    /* activations: grown to this batch where it exceeds them (no backward
     * runs here, so a fresh model keeps one layer's activations) */
    model_caps_t need = model_caps_of(b), k = m->caps;
    if (!m->act_mem)
        k.recompute = 1;
#define MAXF(f) k.f = need.f > k.f ? need.f : k.f
    MAXF(S), MAXF(n_vit), MAXF(n_lat), MAXF(n_splits), MAXF(n_vit_images);
#undef MAXF
    if (model_reserve(m, &k, err, errlen) || model_infer_load(m, b, err, errlen))
        return -1;
    e->last = b;
    return 0;
}

/* One forward of batch b whose sample s is a chunk of context slots[s].
 * update: the contexts keep the chunk (lengths and positions move on).
 * Returns the final hidden states (backend, storage rows). */
static const float *infer_forward(infer_t *e, const model_batch_t *b, const int *slots, int update, char *err,
                                  size_t errlen)
{
    if (infer_load(e, b, slots, err, errlen))
        return NULL;
    const float *hf = model_infer_run(e->m, &e->kv, err, errlen);
    if (!hf)
        return NULL;
    if (update) {
        int p0 = 0;
        for (int s = 0; s < b->n_samples; s++) {
            int sl = slots[s], n = b->sample_lens[s], top = 0;
            for (int j = 0; j < n; j++)
                top = b->pos[p0 + j] > top ? b->pos[p0 + j] : top;
            e->len[sl] += n;
            e->rope[sl] = top + 1;
            /* unique until the caller says what was appended */
            id_int(e->id[sl], -1 - (int64_t)e->serial++);
            p0 += n;
        }
    }
    return hf;
}

static int slots_distinct(const int *slots, int n, int n_slots, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        if (slots[i] < 0 || slots[i] >= n_slots) {
            snprintf(err, errlen, "context %d does not exist (the cache has %d)", slots[i], n_slots);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (slots[j] == slots[i]) {
                snprintf(err, errlen, "context %d appears twice in one batch", slots[i]);
                return -1;
            }
    }
    return 0;
}

/* a zero latent [z, gh·p, gw·p] for the packer's image segments, whose
 * values the caller then replaces */
static const float *infer_zero_latent(infer_t *e, int gh, int gw)
{
    const model_config_t *c = &e->m->cfg;
    size_t n = (size_t)c->z_channels * gh * gw * c->latent_patch * c->latent_patch;
    if (n > e->zero_lat_n) {
        free(e->zero_lat);
        e->zero_lat = calloc(n, sizeof(float));
        e->zero_lat_n = e->zero_lat ? n : 0;
    }
    return e->zero_lat;
}

static int pack_chunk(infer_t *e, pack_t *p, int slot, const infer_chunk_t *ch, int noisy, char *err, size_t errlen)
{
    const model_config_t *c = &e->m->cfg;
    pack_segment_t g = {0};
    p->rope0 = e->rope[slot];
    if (ch->kind == INFER_TOKENS)
        return pack_add_tokens(p, ch->ids, ch->n_ids, err, errlen);
    if (ch->kind == INFER_TEXT) {
        g.kind = PACK_TEXT;
        g.tokens = ch->ids;
        g.n_tokens = ch->n_ids;
    } else if (ch->kind == INFER_VIT) {
        g.kind = PACK_IMAGE;
        g.und = 1;
        g.vit = ch->img, g.vit_h = ch->img_h, g.vit_w = ch->img_w;
    } else if (ch->kind == INFER_VAE) {
        g.kind = PACK_IMAGE;
        if (noisy)
            g.loss = 1;
        else
            g.cond = 1;
        g.latent = infer_zero_latent(e, ch->gh, ch->gw);
        if (!g.latent) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        g.lat_c = c->z_channels, g.lat_h = ch->gh * c->latent_patch, g.lat_w = ch->gw * c->latent_patch;
    } else {
        snprintf(err, errlen, "unknown chunk kind %d", ch->kind);
        return -1;
    }
    int lat0 = p->b.n_lat;
    pack_sample_t s = {.n_segments = 1, .seg = &g};
    if (pack_add(p, &s, err, errlen))
        return -1;
    if (ch->kind == INFER_VAE && ch->lat && !noisy) {
        size_t D = (size_t)model_latent_dim(c);
        memcpy(p->b.x0 + (size_t)lat0 * D, ch->lat, (size_t)ch->gh * ch->gw * D * sizeof(float));
        for (int i = lat0; i < p->b.n_lat; i++)
            p->b.t[i] = 0.0f;
    }
    return 0;
}

int infer_append(infer_t *e, const int *slots, const infer_chunk_t *c, int n, char *err, size_t errlen)
{
    if (n <= 0)
        return 0;
    if (slots_distinct(slots, n, e->n_slots, err, errlen))
        return -1;
    pack_reset(&e->pk);
    for (int i = 0; i < n; i++) {
        char e2[256];
        if (c[i].kind == INFER_VAE && !c[i].lat) {
            snprintf(err, errlen, "chunk %d: a VAE image without latent tokens", i);
            return -1;
        }
        if (pack_chunk(e, &e->pk, slots[i], &c[i], 0, e2, sizeof e2)) {
            snprintf(err, errlen, "chunk %d: %s", i, e2);
            return -1;
        }
    }
    /* what each context will hold, from what it holds before the forward */
    uint64_t (*nid)[2] = malloc((size_t)n * sizeof *nid);
    if (!nid) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++)
        id_chunk(e, slots[i], &c[i], nid[i]);
    int rc = infer_forward(e, &e->pk.b, slots, 1, err, errlen) ? 0 : -1;
    if (!rc)
        for (int i = 0; i < n; i++)
            e->id[slots[i]][0] = nid[i][0], e->id[slots[i]][1] = nid[i][1];
    free(nid);
    return rc;
}

int infer_hidden(infer_t *e, float *out)
{
    const model_batch_t *b = e->last;
    if (!b)
        return 0;
    model_hidden(e->m, b, out);
    return b->S;
}

/* ---- text -------------------------------------------------------------- */

typedef struct cand {
    float p;
    int id;
} cand_t;

static int cand_desc(const void *a, const void *b)
{
    float x = ((const cand_t *)a)->p, y = ((const cand_t *)b)->p;
    if (x != y)
        return x < y ? 1 : -1;
    return ((const cand_t *)a)->id - ((const cand_t *)b)->id;
}

/* the next token from logits [V]: argmax (first on ties) at temperature 0,
 * else a draw from softmax(logits / T) cut to the top k and the top-p mass */
static int pick_token(const float *lg, int V, const infer_text_opts_t *o, rng_t *r, cand_t *buf)
{
    int best = 0;
    for (int i = 1; i < V; i++)
        if (lg[i] > lg[best])
            best = i;
    if (o->temperature <= 0.0f)
        return best;
    double mx = lg[best], sum = 0.0;
    for (int i = 0; i < V; i++) {
        buf[i].p = (float)exp((lg[i] - mx) / o->temperature);
        buf[i].id = i;
        sum += buf[i].p;
    }
    int n = V;
    if ((o->top_k > 0 && o->top_k < V) || o->top_p < 1.0f) {
        qsort(buf, (size_t)V, sizeof *buf, cand_desc);
        if (o->top_k > 0 && o->top_k < n)
            n = o->top_k;
        double tot = 0.0;
        for (int i = 0; i < n; i++)
            tot += buf[i].p;
        if (o->top_p < 1.0f) {
            double acc = 0.0;
            int keep = n;
            for (int i = 0; i < n; i++) {
                acc += buf[i].p;
                if (acc >= o->top_p * tot) {
                    keep = i + 1;
                    break;
                }
            }
            n = keep;
        }
        sum = 0.0;
        for (int i = 0; i < n; i++)
            sum += buf[i].p;
    }
    double u = rng_uniform(r) * sum, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += buf[i].p;
        if (u < acc)
            return buf[i].id;
    }
    return buf[n - 1].id;
}

int infer_text(infer_t *e, const int *slots, int n, const infer_text_opts_t *o, int32_t **ids, int *n_ids, int *stopped,
               float *logits_out, int logits_steps, char *err, size_t errlen)
{
    const model_config_t *c = &e->m->cfg;
    int V = c->vocab, H = c->hidden;
    if (slots_distinct(slots, n, e->n_slots, err, errlen))
        return -1;
    int *active = malloc((size_t)n * sizeof(int)), *cap = calloc((size_t)n, sizeof(int));
    int32_t *cur = malloc((size_t)n * sizeof(int32_t));
    int *aslot = malloc((size_t)n * sizeof(int));
    uint64_t (*tid)[2] = malloc((size_t)n * sizeof *tid);
    rng_t *rg = malloc((size_t)n * sizeof(rng_t));
    cand_t *buf = o->temperature > 0.0f ? malloc((size_t)V * sizeof(cand_t)) : NULL;
    int rc = -1;
    if (!active || !cap || !cur || !aslot || !tid || !rg || (o->temperature > 0.0f && !buf) || infer_grow_heads(e, n)) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        ids[i] = NULL, n_ids[i] = 0, stopped[i] = 0;
        active[i] = i;
        cur[i] = c->bos_id;
        rng_seed(&rg[i], o->seeds ? o->seeds[i] : o->seed + (uint64_t)i);
    }
    int na = n;
    for (int step = 0; na > 0 && step < o->max_tokens; step++) {
        pack_reset(&e->pk);
        for (int a = 0; a < na; a++) {
            int i = active[a];
            aslot[a] = slots[i];
            e->pk.rope0 = e->rope[slots[i]];
            if (pack_add_tokens(&e->pk, &cur[i], 1, err, errlen))
                goto done;
            infer_chunk_t one = {.kind = INFER_TOKENS, .ids = &cur[i], .n_ids = 1};
            id_chunk(e, slots[i], &one, tid[a]);
        }
        const float *hf = infer_forward(e, &e->pk.b, aslot, 1, err, errlen);
        if (!hf)
            goto done;
        for (int a = 0; a < na; a++)
            e->id[aslot[a]][0] = tid[a][0], e->id[aslot[a]][1] = tid[a][1];
        /* one token a sample: rows are the samples' in order (all text).
         * Greedy steps take the argmax on the backend and bring back one id
         * a sequence; sampling (and a caller that wants them) the logits */
        e->o->linear_fwd(e->d_out, hf, e->m->w.lm_head, NULL, na, H, V);
        int want_logits = o->temperature > 0.0f || (logits_out && step < logits_steps);
        if (want_logits) {
            e->o->download(e->h_out, e->d_out, (size_t)na * V * sizeof(float));
        } else {
            e->o->argmax_rows(e->d_idx, e->d_out, na, V);
            e->o->download(e->h_ids, e->d_idx, (size_t)na * sizeof(int32_t));
        }
        int keep = 0;
        for (int a = 0; a < na; a++) {
            int i = active[a];
            int t;
            if (want_logits) {
                const float *lg = e->h_out + (size_t)e->pk.b.row_of_pos[a] * V;
                if (logits_out && step < logits_steps)
                    memcpy(logits_out + ((size_t)step * n + i) * V, lg, (size_t)V * sizeof(float));
                t = pick_token(lg, V, o, &rg[i], buf);
            } else {
                t = e->h_ids[e->pk.b.row_of_pos[a]];
            }
            if (t == c->eos_id && !o->no_stop) {
                stopped[i] = 1;
                continue;
            }
            if (n_ids[i] == cap[i]) {
                int nc = cap[i] ? 2 * cap[i] : 64;
                int32_t *g = realloc(ids[i], (size_t)nc * sizeof(int32_t));
                if (!g) {
                    snprintf(err, errlen, "out of memory");
                    goto done;
                }
                ids[i] = g, cap[i] = nc;
            }
            ids[i][n_ids[i]++] = t;
            cur[i] = t;
            active[keep++] = i;
        }
        na = keep;
    }
    rc = 0;
done:
    if (rc)
        for (int i = 0; i < n; i++) {
            free(ids[i]);
            ids[i] = NULL, n_ids[i] = 0;
        }
    free(active), free(cap), free(cur), free(aslot), free(tid), free(rg), free(buf);
    return rc;
}

/* ---- images ------------------------------------------------------------ */

void infer_schedule(float *t, int T, float shift)
{
    for (int i = 0; i < T; i++) {
        /* linspace(1, 0, T) as torch computes it in float: the first half
         * from the start, the second from the end */
        float step = T > 1 ? (0.0f - 1.0f) / (float)(T - 1) : 0.0f;
        float x = i < T / 2 ? 1.0f + step * (float)i : 0.0f - step * (float)(T - 1 - i);
        t[i] = shift * x / (1.0f + (shift - 1.0f) * x);
    }
}

void infer_cfg_combine(float *v, const float *v_c, const float *v_t, const float *v_i, int n, int dim, float s_txt,
                       float s_img, int renorm, float renorm_min)
{
    op_cpu.cfg_euler(NULL, v, v_c, v_t, v_i, n, dim, s_txt, s_img, renorm, renorm_min, 0.0f);
}

/* the query batch for n images with or without their CFG branches: per
 * image the full context's query, then text- and image-unconditioned ones
 * where asked (not the latter where alias[i]: its context is the full one's);
 * slots out in sample order, image i's first query at qoff[i] */
static int build_queries(infer_t *e, pack_t *p, const int *full, const int *tu, const int *iu, const int *alias, int n,
                         int gh, int gw, int with_t, int with_i, int *slots, int *ns, int *qoff, char *err,
                         size_t errlen)
{
    infer_chunk_t q = {.kind = INFER_VAE, .gh = gh, .gw = gw};
    pack_reset(p);
    int k = 0;
    for (int i = 0; i < n; i++) {
        int who[3] = {full[i], with_t ? tu[i] : -1, with_i && !alias[i] ? iu[i] : -1};
        qoff[i] = k;
        for (int j = 0; j < 3; j++) {
            if (who[j] < 0)
                continue;
            if (who[j] >= e->n_slots) {
                snprintf(err, errlen, "image %d: context %d does not exist", i, who[j]);
                return -1;
            }
            if (pack_chunk(e, p, who[j], &q, 1, err, errlen))
                return -1;
            slots[k++] = who[j];
        }
    }
    *ns = k;
    return 0;
}

int infer_image(infer_t *e, const int *full, const int *text_unc, const int *img_unc, int n, int gh, int gw,
                const infer_image_opts_t *o, float *x, infer_step_fn on_step, void *user, char *err, size_t errlen)
{
    const model_config_t *c = &e->m->cfg;
    int N = gh * gw, D = model_latent_dim(c), H = c->hidden, T = o->num_timesteps;
    if (!c->visual_gen) {
        snprintf(err, errlen, "the model has no generation branch");
        return -1;
    }
    if (T < 2) {
        snprintf(err, errlen, "num_timesteps %d: at least 2 are needed", T);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if ((o->cfg_text_scale > 1.0f && (!text_unc || text_unc[i] < 0)) ||
            (o->cfg_text_scale > 1.0f && o->cfg_img_scale > 1.0f && (!img_unc || img_unc[i] < 0))) {
            snprintf(err, errlen, "image %d: CFG scales %.2f/%.2f need the %s-unconditioned context", i,
                     o->cfg_text_scale, o->cfg_img_scale, (!text_unc || text_unc[i] < 0) ? "text" : "image");
            return -1;
        }
    float *ts = malloc((size_t)T * sizeof(float));
    int *slots = malloc((size_t)3 * n * sizeof(int));
    /* an image-unconditioned context that holds what the full one holds (a
     * text-only prompt: interleave_inference gives it the same text) gives
     * the same velocity; it is not evaluated again (infer_set_dedup) */
    int *alias = calloc((size_t)n, sizeof(int)), *qoff = malloc((size_t)2 * n * sizeof(int));
    size_t m = (size_t)N * D;
    const op_table_t *op = e->o;
    /* the latents stay in backend memory from the first step to the last:
     * d_x (n images), d_v (one image's combined velocity); the host sees
     * them only where on_step asks */
    float *d_x = op->alloc((size_t)n * m * sizeof(float)), *d_v = op->alloc(m * sizeof(float));
    float *h_step = on_step ? malloc(2 * m * sizeof(float)) : NULL;
    int rc = -1;
    e->evaluated = 0;
    if (!ts || !slots || !alias || !qoff || !d_x || !d_v || (on_step && !h_step) || infer_grow_heads(e, 3 * n * N)) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    infer_schedule(ts, T, o->timestep_shift);
    int built[2] = {0, 0}, bslots[2][3 * 64], bns[2] = {0, 0}, loaded = -1;
    if (3 * n > 3 * 64) {
        snprintf(err, errlen, "at most 64 images a batch (asked %d)", n);
        goto done;
    }
    for (int i = 0; i < n; i++)
        alias[i] = e->dedup && img_unc && img_unc[i] >= 0 && img_unc[i] < e->n_slots && full[i] >= 0 &&
                   full[i] < e->n_slots && infer_same(e, full[i], img_unc[i]);
    op->upload(d_x, x, (size_t)n * m * sizeof(float));
    float *lat_x = NULL, *lat_t = NULL;
    for (int s = 0; s + 1 < T; s++) {
        float t = ts[s], dt = ts[s] - ts[s + 1];
        int on = t > o->cfg_lo && t <= o->cfg_hi;
        float s_txt = on ? o->cfg_text_scale : 1.0f, s_img = on ? o->cfg_img_scale : 1.0f;
        int with_t = s_txt > 1.0f, with_i = with_t && s_img > 1.0f;
        int var = with_t;
        if (!built[var]) {
            if (build_queries(e, &e->pq[var], full, text_unc, img_unc, alias, n, gh, gw, with_t, with_i, bslots[var],
                              &bns[var], qoff + var * n, err, errlen))
                goto done;
            built[var] = 1;
        }
        model_batch_t *b = &e->pq[var].b;
        const int *q0 = qoff + var * n; /* image i's queries: q0[i] .. q0[i + 1] (or all the rest) */
        /* the query batch is uploaded when it changes (CFG turning on or
         * off); each step then writes only x and t, on the backend */
        if (loaded != var) {
            if (infer_load(e, b, bslots[var], err, errlen))
                goto done;
            model_infer_latents(e->m, &lat_x, &lat_t);
            loaded = var;
        }
        for (int i = 0; i < n; i++) {
            int qe = i + 1 < n ? q0[i + 1] : bns[var];
            for (int j = q0[i]; j < qe; j++)
                op->rows_copy(lat_x + (size_t)j * m, NULL, d_x + (size_t)i * m, NULL, N, D);
        }
        op->zero(lat_t, (size_t)b->n_lat * sizeof(float));
        op->affine(lat_t, lat_t, 1.0f, t, (size_t)b->n_lat);
        e->evaluated += bns[var];
        const float *hf = model_infer_run(e->m, &e->kv, err, errlen);
        if (!hf)
            goto done;
        /* generation rows are the latents in order, after the n_und rows */
        op->linear_fwd(e->d_out, hf + (size_t)b->n_und * H, e->m->w.llm2vae_w, e->m->w.llm2vae_b, b->n_lat, H, D);
        for (int i = 0; i < n; i++) {
            const float *base = e->d_out + (size_t)q0[i] * m;
            const float *vc = base, *vt = with_t ? base + m : NULL;
            const float *vi = !with_i ? NULL : alias[i] ? vc : base + 2 * m;
            float *xi = d_x + (size_t)i * m;
            op->cfg_euler(xi, d_v, vc, vt, vi, N, D, s_txt, s_img, o->renorm, o->renorm_min, dt);
            if (on_step) {
                /* the branches (on the host in h_out, at their offsets), v and x */
                int nb = with_t ? (with_i && !alias[i] ? 3 : 2) : 1;
                float *hb = e->h_out + (size_t)q0[i] * m;
                op->download(hb, base, (size_t)nb * m * sizeof(float));
                op->download(h_step, d_v, m * sizeof(float));
                op->download(h_step + m, xi, m * sizeof(float));
                const float *hvi = !with_i ? NULL : alias[i] ? hb : hb + 2 * m;
                on_step(user, i, s, t, dt, hb, with_t ? hb + m : NULL, hvi, h_step, h_step + m, N, D);
            }
        }
    }
    op->download(x, d_x, (size_t)n * m * sizeof(float));
    rc = 0;
done:
    if (d_x)
        op->free(d_x);
    if (d_v)
        op->free(d_v);
    free(ts), free(slots), free(alias), free(qoff), free(h_step);
    return rc;
}
