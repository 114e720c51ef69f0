/* data.c — sample records to packer input, and the data thread (data.h). */
#include "data.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../ipc/half.h"
#include "../../models/ae.h"
#include "../common/log.h"

const data_opts_t data_default_opts = {.expected_tokens = 32768,
                                       .max_tokens = 36864,
                                       .max_per_sample = 16384,
                                       .prefer_buffer_before = 16384,
                                       .max_buffer = 50,
                                       .prefetch = 2,
                                       .seed = 4396,
                                       .pack = {.text_drop = 0.1f, .vae_drop = 0.3f, .vit_drop = 0.3f},
                                       .train = 1};

/* ---- one sample --------------------------------------------------------- */

static void *own(data_sample_t *s, void *p)
{
    if (!p)
        return NULL;
    void **n = realloc(s->owned, (size_t)(s->n_owned + 1) * sizeof(void *));
    if (!n) {
        free(p);
        return NULL;
    }
    s->owned = n;
    s->owned[s->n_owned++] = p;
    return p;
}

void data_sample_free(data_sample_t *s)
{
    for (int i = 0; i < s->n_owned; i++)
        free(s->owned[i]);
    free(s->owned);
    rec_destroy(&s->rec);
    memset(s, 0, sizeof *s);
}

static int flag(const msgpack_object *m, const char *k)
{
    bool b = false;
    return rec_get_bool(m, k, &b) && b;
}

/* a u8 [H, W, 3] image tensor */
static int image_tensor(const msgpack_object *seg, const char *key, const uint8_t **px, int *h, int *w, int i,
                        char *err, size_t errlen)
{
    const msgpack_object *o = rec_map_get(seg, key);
    if (!o) {
        snprintf(err, errlen, "segment %d: no %s image (run bagel-image upstream)", i, key);
        return -1;
    }
    rec_tensor_t t;
    char e2[REC_ERR_LEN];
    if (rec_tensor_get(o, &t, e2)) {
        snprintf(err, errlen, "segment %d: %s: %s", i, key, e2);
        return -1;
    }
    if (t.dtype != REC_U8 || t.ndim != 3 || t.shape[2] != 3 || t.shape[0] <= 0 || t.shape[1] <= 0 ||
        t.shape[0] > 1 << 16 || t.shape[1] > 1 << 16) {
        snprintf(err, errlen, "segment %d: %s must be u8 [H, W, 3]", i, key);
        return -1;
    }
    *px = t.data;
    *h = (int)t.shape[0];
    *w = (int)t.shape[1];
    return 0;
}

/* an f32 or bf16 tensor as floats owned by s (the wire gives no alignment) */
static float *tensor_floats(data_sample_t *s, const rec_tensor_t *t)
{
    size_t k = (size_t)rec_tensor_numel(t);
    float *f = own(s, malloc((k ? k : 1) * sizeof(float)));
    for (size_t j = 0; f && j < k; j++) {
        if (t->dtype == REC_F32) {
            memcpy(&f[j], (const char *)t->data + 4 * j, 4);
        } else {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * j, 2);
            f[j] = half_bf16_to_f32(h);
        }
    }
    return f;
}

int data_sample_from_rec(data_sample_t *s, rec_t *rec, const model_config_t *cfg, int can_encode, char *err,
                         size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->rec = rec;
    char e2[REC_ERR_LEN];
    if (!rec_get_str(&rec->root, "task", s->task, sizeof s->task))
        snprintf(s->task, sizeof s->task, "sample");
    const msgpack_object *segs = rec_get(rec, "segments");
    if (!segs || segs->type != MSGPACK_OBJECT_ARRAY || segs->via.array.size == 0) {
        snprintf(err, errlen, "no segments");
        return -1;
    }
    int n = (int)segs->via.array.size;
    s->seg = own(s, calloc((size_t)n, sizeof *s->seg));
    s->moments = own(s, calloc((size_t)n, sizeof *s->moments));
    if (!s->seg || !s->moments)
        goto oom;
    s->n_seg = n;
    for (int i = 0; i < n; i++) {
        const msgpack_object *m = &segs->via.array.ptr[i];
        pack_segment_t *g = &s->seg[i];
        if (m->type != MSGPACK_OBJECT_MAP) {
            snprintf(err, errlen, "segment %d is not a map", i);
            return -1;
        }
        g->loss = flag(m, "loss");
        g->cfg = flag(m, "cfg");
        g->drop = g->drop_vae = g->drop_vit = PACK_DRAW;
        const msgpack_object *kind = rec_map_get(m, "kind");
        if (kind && rec_obj_is_str(kind, "text")) {
            g->kind = PACK_TEXT;
            const msgpack_object *to = rec_map_get(m, "tokens");
            rec_tensor_t t;
            if (!to) {
                snprintf(err, errlen, "segment %d: text without tokens (run bagel-tokenize upstream)", i);
                return -1;
            }
            if (rec_tensor_get(to, &t, e2) || t.dtype != REC_I32 || t.ndim != 1) {
                snprintf(err, errlen, "segment %d: tokens must be an i32 vector", i);
                return -1;
            }
            int32_t *ids = own(s, malloc((size_t)(t.shape[0] + 1) * sizeof(int32_t)));
            if (!ids)
                goto oom;
            memcpy(ids, t.data, (size_t)t.shape[0] * 4); /* the wire gives no alignment */
            g->tokens = ids;
            g->n_tokens = (int)t.shape[0];
            continue;
        }
        if (!kind || !rec_obj_is_str(kind, "image")) {
            snprintf(err, errlen, "segment %d: kind is neither text nor image", i);
            return -1;
        }
        g->kind = PACK_IMAGE;
        g->und = flag(m, "und");
        g->cond = flag(m, "cond");
        if (g->und && image_tensor(m, "vit", &g->vit, &g->vit_h, &g->vit_w, i, err, errlen))
            return -1;
        const msgpack_object *vf = g->und ? rec_map_get(m, "vit_features") : NULL;
        if (vf) { /* bagel-encode --vit: the frozen ViT's output for these patches */
            rec_tensor_t t;
            int64_t P = (int64_t)(g->vit_h / cfg->vit_patch) * (g->vit_w / cfg->vit_patch);
            if (rec_tensor_get(vf, &t, e2) || (t.dtype != REC_F32 && t.dtype != REC_BF16) || t.ndim != 2 ||
                t.shape[0] != P || t.shape[1] != cfg->vit_hidden) {
                snprintf(err, errlen, "segment %d: vit_features must be f32 or bf16 [%lld, %d] (patches, vit hidden)", i,
                         (long long)P, cfg->vit_hidden);
                return -1;
            }
            if (!(g->vit_feat = tensor_floats(s, &t)))
                goto oom;
        }
        if (!(g->loss || g->cond))
            continue;
        const msgpack_object *lo = rec_map_get(m, "latent");
        if (lo) {
            rec_tensor_t t;
            if (rec_tensor_get(lo, &t, e2) || (t.dtype != REC_F32 && t.dtype != REC_BF16) || t.ndim != 3 ||
                t.shape[0] != 2 * cfg->z_channels) {
                snprintf(err, errlen, "segment %d: latent must be f32 or bf16 [%d, h, w] (mean and log-variance)", i,
                         2 * cfg->z_channels);
                return -1;
            }
            float *f = tensor_floats(s, &t);
            if (!f)
                goto oom;
            s->moments[i] = f;
            g->lat_c = cfg->z_channels;
            g->lat_h = (int)t.shape[1];
            g->lat_w = (int)t.shape[2];
        } else if (cfg->ae == MODEL_AE_IDENTITY) {
            if (image_tensor(m, "vae", &g->vae, &g->vae_h, &g->vae_w, i, err, errlen))
                return -1;
        } else if (can_encode) {
            /* encoded by the frozen autoencoder when packed (data_sample_encode) */
            if (image_tensor(m, "vae", &g->vae, &g->vae_h, &g->vae_w, i, err, errlen))
                return -1;
            int f = cfg->vae_downsample;
            if (g->vae_h % (f * cfg->latent_patch) || g->vae_w % (f * cfg->latent_patch)) {
                snprintf(err, errlen, "segment %d: vae image %dx%d is not a multiple of %d", i, g->vae_w, g->vae_h,
                         f * cfg->latent_patch);
                return -1;
            }
            g->lat_c = cfg->z_channels;
            g->lat_h = g->vae_h / f;
            g->lat_w = g->vae_w / f;
        } else {
            snprintf(err, errlen,
                     "segment %d: a generation image without latents (run bagel-encode upstream: this model's "
                     "autoencoder is FLUX's)",
                     i);
            return -1;
        }
    }
    pack_sample_t ps = {.n_segments = s->n_seg, .seg = s->seg};
    s->tokens = pack_sample_tokens(cfg, &ps);
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

int data_sample_encode(data_sample_t *s, struct ae *ae, char *err, size_t errlen)
{
    for (int i = 0; i < s->n_seg; i++) {
        pack_segment_t *g = &s->seg[i];
        if (g->kind != PACK_IMAGE || s->moments[i] || !g->vae || !(g->loss || g->cond) || !g->lat_c)
            continue;
        size_t n = (size_t)2 * g->lat_c * g->lat_h * g->lat_w;
        float *mo = own(s, malloc(n * sizeof(float)));
        if (!mo) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        char e2[300];
        /* one autoencoder serves the training and the validation data threads */
        static pthread_mutex_t ae_mu = PTHREAD_MUTEX_INITIALIZER;
        pthread_mutex_lock(&ae_mu);
        int rc = ae_encode(ae, g->vae, g->vae_h, g->vae_w, mo, e2, sizeof e2);
        pthread_mutex_unlock(&ae_mu);
        if (rc) {
            snprintf(err, errlen, "segment %d: autoencoder: %s", i, e2);
            return -1;
        }
        s->moments[i] = mo;
        g->vae = NULL; /* the packer takes the latent */
    }
    return 0;
}

int data_sample_draw_latents(data_sample_t *s, const model_config_t *cfg, rng_t *rng, char *err, size_t errlen)
{
    for (int i = 0; i < s->n_seg; i++) {
        const float *mo = s->moments[i];
        if (!mo)
            continue;
        pack_segment_t *g = &s->seg[i];
        size_t n = (size_t)g->lat_c * g->lat_h * g->lat_w;
        float *z = own(s, malloc(n * sizeof(float)));
        if (!z) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        /* the posterior is sampled afresh at each use, then scaled (§1.9) */
        for (size_t j = 0; j < n; j++) {
            float v = mo[j] + expf(0.5f * mo[n + j]) * (float)rng_normal(rng);
            z[j] = cfg->ae_scale * (v - cfg->ae_shift);
        }
        g->latent = z;
    }
    return 0;
}

/* ---- the data thread ---------------------------------------------------- */

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_TAKEN };

struct data {
    rd_t *in;
    const model_config_t *cfg;
    data_opts_t o;
    FILE *rejects;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int nslots;
    data_batch_t *slots;
    uint64_t next_ready; /* batches are handed out in order */
    int done, stop;
    char err[512];
    data_stats_t st;

    /* resume */
    uint64_t ordinal;    /* of the next record the reader gives */
    uint64_t skip_below; /* ordinals below this are skipped unless outstanding */
    int n_keep;
    uint64_t keep[DATA_MAX_OUTSTANDING];

    data_sample_t *held; /* read, not packed: starts the next batch */
    data_sample_t **buf; /* the overflow buffer, in order */
    int nbuf;
    uint64_t batches;
    uint8_t *logged; /* per accounting entry: its completion was logged */
    int n_logged;
};

static void log_reject(data_t *d, const rec_t *r, const char *stage, const char *why)
{
    char id[256], src[256];
    rec_id(r, id, sizeof id);
    rec_source(r, src, sizeof src);
    d->st.rejects++;
    if (!d->rejects)
        return;
    json_t *j = json_pack("{s:s,s:s,s:s,s:s}", "id", id, "source", src, "stage", stage, "error", why);
    if (j) {
        char *s = json_dumps(j, JSON_COMPACT);
        if (s)
            fprintf(d->rejects, "%s\n", s);
        free(s);
        json_decref(j);
    }
}

/* the next sample from the reader (NULL: end of input or fatal); rejects and
 * ends are accounted here */
static data_sample_t *read_sample(data_t *d)
{
    for (;;) {
        rec_t *r = NULL;
        char err[REC_ERR_LEN];
        int rc = rd_next(d->in, &r, err);
        if (rc == 0)
            return NULL;
        if (rc < 0) {
            snprintf(d->err, sizeof d->err, "input: %s", err);
            return NULL;
        }
        if (r->type == REC_END) {
            d->st.ends++;
            rec_destroy(&r);
            /* an epoch of a source is complete when its end has come and
             * every one of its samples and rejects (the reader counts) */
            const acct_t *a = rd_acct(d->in);
            uint64_t complete = 0;
            for (int i = 0; a && i < acct_count(a); i++) {
                const acct_entry_t *e = acct_entry(a, i);
                if (!acct_entry_complete(e))
                    continue;
                complete++;
                if (i >= d->n_logged) {
                    uint8_t *n = realloc(d->logged, (size_t)(i + 64));
                    if (!n)
                        continue;
                    memset(n + d->n_logged, 0, (size_t)(i + 64 - d->n_logged));
                    d->logged = n;
                    d->n_logged = i + 64;
                }
                if (!d->logged[i]) {
                    d->logged[i] = 1;
                    log_info("input: %s epoch %lld complete (%llu samples, %llu rejects)", e->source,
                             (long long)e->epoch, (unsigned long long)e->samples, (unsigned long long)e->rejects);
                }
            }
            d->st.epochs_complete = complete;
            continue;
        }
        uint64_t ord = d->ordinal++;
        if (ord < d->skip_below) {
            int keep = 0;
            for (int i = 0; i < d->n_keep; i++)
                keep |= d->keep[i] == ord;
            if (!keep) {
                rec_destroy(&r);
                continue;
            }
        }
        if (r->type == REC_REJECT) {
            char why[300], stage[64];
            const msgpack_object *e = rec_get(r, "error");
            if (!rec_get_str(&r->root, "error", why, sizeof why))
                snprintf(why, sizeof why, "%s", e ? "?" : "");
            if (!rec_get_str(&r->root, "stage", stage, sizeof stage))
                snprintf(stage, sizeof stage, "?");
            log_reject(d, r, stage, why);
            rec_destroy(&r);
            continue;
        }
        data_sample_t *s = calloc(1, sizeof *s);
        if (!s) {
            rec_destroy(&r);
            snprintf(d->err, sizeof d->err, "out of memory");
            return NULL;
        }
        if (data_sample_from_rec(s, r, d->cfg, d->o.ae != NULL, err, sizeof err)) {
            log_error("%s: rejected: %s", rec_id(r, (char[256]){0}, 256), err);
            log_reject(d, r, "bagel-train", err);
            d->st.bad++;
            data_sample_free(s);
            free(s);
            continue;
        }
        s->ordinal = ord;
        d->st.samples++;
        return s;
    }
}

static void drop_sample(data_sample_t **s)
{
    if (*s) {
        data_sample_free(*s);
        free(*s);
        *s = NULL;
    }
}

static void snapshot(data_t *d, data_pos_t *p)
{
    p->next = d->ordinal;
    p->n_out = 0;
    if (d->held)
        p->out[p->n_out++] = d->held->ordinal;
    for (int i = 0; i < d->nbuf && p->n_out < DATA_MAX_OUTSTANDING; i++)
        p->out[p->n_out++] = d->buf[i]->ordinal;
    p->batches = d->batches;
}

static int add_info(data_batch_t *b, const data_sample_t *s, int start, int len)
{
    if (b->n_info == b->cap_info) {
        int c = b->cap_info ? 2 * b->cap_info : 32;
        data_sample_info_t *n = realloc(b->info, (size_t)c * sizeof *n);
        if (!n)
            return -1;
        b->info = n;
        b->cap_info = c;
    }
    data_sample_info_t *i = &b->info[b->n_info++];
    snprintf(i->task, sizeof i->task, "%s", s->task);
    i->start = start;
    i->len = len;
    return 0;
}

/* fills one batch; 1 when it has samples, 0 at the end of input */
static int fill(data_t *d, data_batch_t *b)
{
    pack_t *p = &b->pack;
    pack_reset(p);
    b->n_info = 0;
    /* this batch's draws depend on (seed, index) only */
    uint64_t x = d->o.seed ^ (0x9e3779b97f4a7c15ULL * (d->batches + 1));
    rng_seed(&p->rng, rng_splitmix64(&x));
    b->index = d->batches;
    for (;;) {
        if (d->stop)
            return 0;
        data_sample_t *s;
        if (d->held) {
            s = d->held;
            d->held = NULL;
        } else if (p->b.S < d->o.prefer_buffer_before && d->nbuf > 0) {
            s = d->buf[0];
            memmove(d->buf, d->buf + 1, (size_t)(d->nbuf - 1) * sizeof *d->buf);
            d->nbuf--;
            s->from_buffer = 1;
        } else {
            s = read_sample(d);
            if (!s)
                break;
        }
        if (s->tokens > d->o.max_per_sample || s->tokens > d->o.max_tokens) {
            char why[160];
            snprintf(why, sizeof why, "%ld tokens exceed the per-sample budget of %ld", s->tokens,
                     d->o.max_per_sample < d->o.max_tokens ? d->o.max_per_sample : d->o.max_tokens);
            log_reject(d, s->rec, "bagel-train", why);
            d->st.too_long++;
            drop_sample(&s);
            continue;
        }
        if (p->b.S > 0 && p->b.S + s->tokens > d->o.max_tokens) {
            if (!s->from_buffer && d->nbuf < d->o.max_buffer && d->nbuf < DATA_MAX_OUTSTANDING - 1) {
                d->buf[d->nbuf++] = s;
                d->st.held_back++;
                continue;
            }
            /* BAGEL drops this sample here; we keep it for the next batch */
            d->held = s;
            break;
        }
        char err[300];
        int start = p->b.S;
        if ((d->o.ae && data_sample_encode(s, d->o.ae, err, sizeof err)) ||
            data_sample_draw_latents(s, d->cfg, &p->rng, err, sizeof err) ||
            pack_add(p, &(pack_sample_t){.n_segments = s->n_seg, .seg = s->seg}, err, sizeof err)) {
            log_error("%s: rejected: %s", rec_id(s->rec, (char[256]){0}, 256), err);
            log_reject(d, s->rec, "bagel-train", err);
            d->st.bad++;
            drop_sample(&s);
            continue;
        }
        if (add_info(b, s, start, p->b.S - start)) {
            snprintf(d->err, sizeof d->err, "out of memory");
            drop_sample(&s);
            return 0;
        }
        drop_sample(&s);
        if (p->b.S >= d->o.expected_tokens)
            break;
    }
    if (p->b.S == 0)
        return 0;
    d->batches++;
    snapshot(d, &b->pos);
    return 1;
}

static void *run(void *arg)
{
    data_t *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->mu);
        data_batch_t *b = NULL;
        while (!d->stop) {
            for (int i = 0; i < d->nslots && !b; i++)
                if (d->slots[i].state == SLOT_FREE)
                    b = &d->slots[i];
            if (b)
                break;
            pthread_cond_wait(&d->cv, &d->mu);
        }
        if (d->stop) {
            pthread_mutex_unlock(&d->mu);
            break;
        }
        b->state = SLOT_FILLING;
        pthread_mutex_unlock(&d->mu);
        int got = fill(d, b);
        pthread_mutex_lock(&d->mu);
        b->state = got ? SLOT_READY : SLOT_FREE;
        if (!got)
            d->done = 1;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        if (!got)
            break;
    }
    return NULL;
}

data_t *data_start(rd_t *in, const model_config_t *cfg, const data_opts_t *o, FILE *rejects, const data_pos_t *resume,
                   uint64_t input_offset, char *err, size_t errlen)
{
    data_t *d = calloc(1, sizeof *d);
    if (!d)
        goto oom;
    d->in = in;
    d->cfg = cfg;
    d->o = *o;
    if (d->o.prefetch < 1)
        d->o.prefetch = 1;
    if (!d->o.train)
        memset(&d->o.pack, 0, sizeof d->o.pack);
    d->rejects = rejects;
    d->nslots = d->o.prefetch;
    d->slots = calloc((size_t)d->nslots, sizeof *d->slots);
    d->buf = calloc((size_t)DATA_MAX_OUTSTANDING, sizeof *d->buf);
    if (!d->slots || !d->buf)
        goto oom;
    for (int i = 0; i < d->nslots; i++)
        pack_init(&d->slots[i].pack, cfg, &d->o.pack, 0);
    d->ordinal = input_offset;
    if (resume) {
        d->skip_below = resume->next;
        d->n_keep = resume->n_out;
        memcpy(d->keep, resume->out, (size_t)resume->n_out * sizeof(uint64_t));
        d->batches = resume->batches;
        d->next_ready = resume->batches;
        if (input_offset > resume->next) {
            snprintf(err, errlen, "the input starts at record %llu, after the saved position %llu",
                     (unsigned long long)input_offset, (unsigned long long)resume->next);
            goto fail;
        }
        for (int i = 0; i < resume->n_out; i++)
            if (resume->out[i] < input_offset) {
                snprintf(err, errlen,
                         "the input starts at record %llu, but record %llu was read and not yet trained on: start "
                         "it at %llu or earlier",
                         (unsigned long long)input_offset, (unsigned long long)resume->out[i],
                         (unsigned long long)resume->out[i]);
                goto fail;
            }
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    if (resume && resume->n_out > 0) {
        /* records read but not trained on come back first, in their order:
         * the one held back, then the buffer */
        d->skip_below = resume->next;
        /* read up to the saved position now, so the outstanding ones are in
         * hand before the first batch */
        data_sample_t *got[DATA_MAX_OUTSTANDING] = {0};
        int need = resume->n_out, have = 0;
        while (have < need && d->ordinal < resume->next) {
            data_sample_t *s = read_sample(d);
            if (!s)
                break;
            for (int i = 0; i < need; i++)
                if (resume->out[i] == s->ordinal)
                    got[i] = s, have++;
        }
        if (have < need) {
            snprintf(err, errlen, "the input ended before the saved position (record %llu)",
                     (unsigned long long)resume->next);
            for (int i = 0; i < need; i++)
                drop_sample(&got[i]);
            goto fail;
        }
        /* the first outstanding one was held back iff the saved run had one:
         * it cannot know, so both cases resume the same way: held first */
        d->held = got[0];
        for (int i = 1; i < need; i++) {
            got[i]->from_buffer = 0;
            d->buf[d->nbuf++] = got[i];
        }
    }
    if (pthread_create(&d->thread, NULL, run, d)) {
        snprintf(err, errlen, "cannot start the data thread");
        goto fail;
    }
    return d;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    if (d) {
        for (int i = 0; d->slots && i < d->nslots; i++)
            pack_free(&d->slots[i].pack);
        free(d->slots);
        free(d->buf);
        free(d);
    }
    return NULL;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

data_batch_t *data_next(data_t *d, double *wait_s)
{
    double t0 = now_s();
    data_batch_t *b = NULL;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        for (int i = 0; i < d->nslots && !b; i++)
            if (d->slots[i].state == SLOT_READY && d->slots[i].index == d->next_ready)
                b = &d->slots[i];
        if (b || d->done || d->stop)
            break;
        pthread_cond_wait(&d->cv, &d->mu);
    }
    if (b) {
        b->state = SLOT_TAKEN;
        d->next_ready++;
    }
    pthread_mutex_unlock(&d->mu);
    if (wait_s)
        *wait_s = now_s() - t0;
    return b;
}

void data_release(data_t *d, data_batch_t *b)
{
    pthread_mutex_lock(&d->mu);
    b->state = SLOT_FREE;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

const char *data_error(const data_t *d) { return d->err[0] ? d->err : NULL; }

data_stats_t data_stats(data_t *d)
{
    pthread_mutex_lock(&d->mu);
    data_stats_t s = d->st;
    pthread_mutex_unlock(&d->mu);
    return s;
}

void data_stop(data_t **pd)
{
    data_t *d = *pd;
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    d->stop = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    for (int i = 0; i < d->nslots; i++) {
        pack_free(&d->slots[i].pack);
        free(d->slots[i].info);
    }
    drop_sample(&d->held);
    for (int i = 0; i < d->nbuf; i++)
        drop_sample(&d->buf[i]);
    free(d->buf);
    free(d->slots);
    free(d->logged);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d);
    *pd = NULL;
}
