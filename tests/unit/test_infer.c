/* test_infer.c — the inference engine (models/infer.h) against the model's
 * own training forward, which runs the packed attention over the whole
 * sequence at once: a context built chunk by chunk in the key/value cache
 * must give the hidden states of one forward over the same sequence, and
 * decoding token by token the logits of one forward over the decoded text.
 * Batching must not change results; bad requests give clear errors. The
 * PyTorch reference checks are in test_infer_ref.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../models/infer.h"
#include "../../models/pack.h"
#include "../support/golden.h"
#include "../support/refcase.h"

static refcase_t rc;
static model_t *M;


static uint64_t st = 0x9e3779b97f4a7c15ull;
static float urand(void)
{
    st ^= st << 13, st ^= st >> 7, st ^= st << 17;
    return (float)((st >> 11) * 0x1.0p-53);
}

/* the context of every test: text, a clean VAE image, a ViT image, text */
typedef struct ctx_data {
    int32_t a[5], b[4];
    float lat[3 * 8 * 12]; /* [C, h, w]: a 2 x 3 token grid at patch 4 */
    float tok[6 * 48];     /* the same as tokens */
    uint8_t img[28 * 42 * 3];
} ctx_data_t;

static ctx_data_t D;

static void make_data(void)
{
    const model_config_t *c = &M->cfg;
    for (int i = 0; i < 5; i++)
        D.a[i] = (int32_t)(urand() * 300);
    for (int i = 0; i < 4; i++)
        D.b[i] = (int32_t)(urand() * 300);
    for (size_t i = 0; i < sizeof D.lat / sizeof D.lat[0]; i++)
        D.lat[i] = 2.0f * urand() - 1.0f;
    for (size_t i = 0; i < sizeof D.img; i++)
        D.img[i] = (uint8_t)(urand() * 256);
    op_cpu.patchify_chw(D.tok, D.lat, c->z_channels, 8, 12, c->latent_patch);
}

static int chunks(infer_chunk_t *ch)
{
    ch[0] = (infer_chunk_t){.kind = INFER_TEXT, .ids = D.a, .n_ids = 5};
    ch[1] = (infer_chunk_t){.kind = INFER_VAE, .lat = D.tok, .gh = 2, .gw = 3};
    ch[2] = (infer_chunk_t){.kind = INFER_VIT, .img = D.img, .img_h = 28, .img_w = 42};
    ch[3] = (infer_chunk_t){.kind = INFER_TEXT, .ids = D.b, .n_ids = 4};
    return 4;
}

/* an engine of n_slots contexts of rows tokens over M; fails the test when none */
static infer_t *engine(int n_slots, int rows)
{
    char err[512];
    infer_t *e = infer_new(M, n_slots, rows, err, sizeof err);
    if (!e)
        fail_msg("%s", err);
    return e;
}

/* infer_image on n images (x in place); the branch evaluations it ran */
static long draw(infer_t *e, const int *full, const int *tu, const int *iu, int n, int gh, int gw,
                 const infer_image_opts_t *o, float *x)
{
    char err[512];
    if (infer_image(e, full, tu, iu, n, gh, gw, o, x, NULL, NULL, err, sizeof err))
        fail_msg("%s", err);
    return infer_evaluated(e);
}

static int setup(void **state)
{
    (void)state;
    char err[512];
    if (refcase_load(&rc, "tests/reference/cases/mini-mixed.json", err, sizeof err)) {
        print_error("%s\n", err);
        return -1;
    }
    M = model_new(&rc.cfg, &op_cpu, err, sizeof err);
    if (!M) {
        print_error("%s\n", err);
        return -1;
    }
    model_init_test(M, 1);
    make_data();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    model_destroy(&M);
    refcase_free(&rc);
    return 0;
}

/* building the context chunk by chunk = one training forward over it */
static void t_cache_equals_full(void **state)
{
    (void)state;
    char err[512];
    const model_config_t *c = &M->cfg;
    int H = c->hidden;
    /* the whole sequence as one packed training sample */
    pack_t p;
    pack_init(&p, c, &pack_default_opts, 7);
    pack_segment_t seg[3] = {
        {.kind = PACK_TEXT, .tokens = D.a, .n_tokens = 5},
        {.kind = PACK_IMAGE, .cond = 1, .und = 1, .latent = D.lat, .lat_c = 3, .lat_h = 8, .lat_w = 12,
         .vit = D.img, .vit_h = 28, .vit_w = 42},
        {.kind = PACK_TEXT, .tokens = D.b, .n_tokens = 4},
    };
    pack_sample_t s = {.n_segments = 3, .seg = seg};
    if (pack_add(&p, &s, err, sizeof err))
        fail_msg("%s", err);
    model_caps_t caps = model_caps_of(&p.b);
    if (model_reserve(M, &caps, err, sizeof err))
        fail_msg("%s", err);
    if (model_forward(M, &p.b, NULL, 0, NULL, err, sizeof err))
        fail_msg("%s", err);
    int S = p.b.S;
    float *full = malloc((size_t)S * H * sizeof(float)), *inc = malloc((size_t)S * H * sizeof(float));
    assert_non_null(full);
    assert_non_null(inc);
    model_hidden(M, &p.b, full);

    infer_t *e = engine(2, 64);
    infer_chunk_t ch[4];
    int n = chunks(ch), at = 0, slot = 0;
    for (int i = 0; i < n; i++) {
        if (infer_append(e, &slot, &ch[i], 1, err, sizeof err))
            fail_msg("chunk %d: %s", i, err);
        at += infer_hidden(e, inc + (size_t)at * H);
    }
    assert_int_equal(at, S);
    assert_int_equal(infer_len(e, 0), S);
    /* rope: text 5+2, the VAE image 1, the ViT image 1, text 4+2 */
    assert_int_equal(infer_rope(e, 0), 7 + 1 + 1 + 6);
    double er = golden_rel_err(inc, full, (size_t)S * H);
    print_message("incremental against full hidden states: %.3g over %d tokens\n", er, S);
    if (!(er < 1e-5))
        fail_msg("hidden states of the cached context differ from one forward: %.3g", er);
    infer_destroy(&e);
    pack_free(&p);
    free(full);
    free(inc);
}

/* host logits of hidden rows: h [n, H] · lm_headᵀ */
static void logits_of(float *out, const float *h, int n)
{
    const model_config_t *c = &M->cfg;
    for (int r = 0; r < n; r++)
        for (int v = 0; v < c->vocab; v++) {
            double s = 0.0;
            for (int j = 0; j < c->hidden; j++)
                s += (double)h[(size_t)r * c->hidden + j] * M->w.lm_head[(size_t)v * c->hidden + j];
            out[(size_t)r * c->vocab + v] = (float)s;
        }
}

static void build(infer_t *e, int slot)
{
    char err[512];
    infer_chunk_t ch[4];
    int n = chunks(ch);
    for (int i = 0; i < n; i++)
        if (infer_append(e, &slot, &ch[i], 1, err, sizeof err))
            fail_msg("chunk %d: %s", i, err);
}

/* token-by-token decoding = one forward over <|im_start|> and the decoded
 * tokens; greedy picks the argmax */
static void t_decode_equals_full(void **state)
{
    (void)state;
    char err[512];
    const model_config_t *c = &M->cfg;
    int V = c->vocab, K = 6;
    infer_t *e = engine(2, 64);
    build(e, 0);
    int len0 = infer_len(e, 0);
    infer_text_opts_t o = infer_text_defaults;
    o.max_tokens = K;
    int32_t *ids;
    int nid, stop, slot = 0;
    float *lg = malloc((size_t)K * V * sizeof(float));
    assert_non_null(lg);
    if (infer_text(e, &slot, 1, &o, &ids, &nid, &stop, lg, K, err, sizeof err))
        fail_msg("%s", err);
    int steps = nid + stop; /* forwards run */
    assert_true(steps >= 1 && steps <= K);
    assert_int_equal(infer_len(e, 0), len0 + (stop ? nid + 1 : nid));

    /* the same in one forward */
    build(e, 1);
    int32_t seq[8];
    seq[0] = c->bos_id;
    for (int i = 0; i + 1 < steps; i++)
        seq[i + 1] = ids[i];
    infer_chunk_t tk = {.kind = INFER_TOKENS, .ids = seq, .n_ids = steps};
    slot = 1;
    if (infer_append(e, &slot, &tk, 1, err, sizeof err))
        fail_msg("%s", err);
    float *h = malloc((size_t)steps * c->hidden * sizeof(float)), *ref = malloc((size_t)steps * V * sizeof(float));
    assert_int_equal(infer_hidden(e, h), steps);
    logits_of(ref, h, steps);
    for (int s = 0; s < steps; s++) {
        double er = golden_rel_err(lg + (size_t)s * V, ref + (size_t)s * V, (size_t)V);
        if (!(er < 1e-5))
            fail_msg("step %d: decoded logits differ from one forward: %.3g", s, er);
        int best = 0;
        for (int v = 1; v < V; v++)
            if (lg[(size_t)s * V + v] > lg[(size_t)s * V + best])
                best = v;
        int got = s < nid ? ids[s] : c->eos_id;
        assert_int_equal(best, got);
    }
    print_message("%d decoding steps match one forward (%s)\n", steps, stop ? "stopped at <|im_end|>" : "max tokens");
    /* without logits asked for, greedy steps take the backend's argmax_rows:
     * the same ids */
    infer_reset(e, 0);
    build(e, 0);
    int32_t *ids2;
    int nid2, stop2;
    slot = 0;
    if (infer_text(e, &slot, 1, &o, &ids2, &nid2, &stop2, NULL, 0, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(nid2, nid);
    assert_int_equal(stop2, stop);
    assert_memory_equal(ids2, ids, (size_t)nid * sizeof(int32_t));
    free(ids2);
    free(ids);
    free(lg);
    free(h);
    free(ref);
    infer_destroy(&e);
}

/* two contexts decoded in one batch = each alone; sampling is reproducible */
static void t_batch_independent(void **state)
{
    (void)state;
    char err[512];
    int V = M->cfg.vocab, K = 5;
    infer_t *e = engine(4, 64);
    for (int temp = 0; temp < 2; temp++) {
        infer_text_opts_t o = infer_text_defaults;
        o.max_tokens = K;
        o.temperature = temp ? 0.8f : 0.0f;
        o.top_k = temp ? 50 : 0;
        o.top_p = temp ? 0.9f : 1.0f;
        o.seed = 11;
        build(e, 0);
        build(e, 1);
        /* context 1 gets one more chunk so that the two differ */
        infer_chunk_t more = {.kind = INFER_TEXT, .ids = D.a, .n_ids = 3};
        int one = 1;
        if (infer_append(e, &one, &more, 1, err, sizeof err))
            fail_msg("%s", err);
        infer_copy(e, 2, 0);
        infer_copy(e, 3, 1);
        int both[2] = {0, 1}, n_b[2], stop_b[2];
        int32_t *ids_b[2];
        float *lb = malloc((size_t)2 * V * sizeof(float)), *la = malloc((size_t)V * sizeof(float));
        if (infer_text(e, both, 2, &o, ids_b, n_b, stop_b, lb, 1, err, sizeof err))
            fail_msg("%s", err);
        for (int i = 0; i < 2; i++) {
            int slot = 2 + i, n_a, stop_a;
            int32_t *ids_a;
            infer_text_opts_t oa = o;
            oa.seed = o.seed + (uint64_t)i; /* sequence i of the batch draws from seed + i */
            if (infer_text(e, &slot, 1, &oa, &ids_a, &n_a, &stop_a, la, 1, err, sizeof err))
                fail_msg("%s", err);
            double er = golden_rel_err(lb + (size_t)i * V, la, (size_t)V);
            if (!(er < 1e-6))
                fail_msg("context %d: logits differ in a batch: %.3g", i, er);
            assert_int_equal(n_a, n_b[i]);
            assert_int_equal(stop_a, stop_b[i]);
            assert_memory_equal(ids_a, ids_b[i], (size_t)n_a * sizeof(int32_t));
            free(ids_a);
            free(ids_b[i]);
        }
        free(la);
        free(lb);
        for (int s = 0; s < 4; s++)
            infer_reset(e, s);
    }
    infer_destroy(&e);
}

typedef struct steps_seen {
    int n;
    double worst; /* largest |x_after - (x_before - v·dt)| */
    float *x;     /* the image's x before the step */
    int dim, tokens;
} steps_seen_t;

static void on_step(void *u, int image, int step, float t, float dt, const float *v_c, const float *v_t,
                    const float *v_i, const float *v, const float *x_after, int n, int dim)
{
    (void)step, (void)t, (void)v_c, (void)v_t, (void)v_i;
    steps_seen_t *s = u;
    if (image != 0)
        return;
    for (int j = 0; j < n * dim; j++) {
        double want = s->x[j] - v[j] * dt, d = fabs(want - x_after[j]);
        s->worst = d > s->worst ? d : s->worst;
        s->x[j] = x_after[j];
    }
    s->n++;
}

/* images in a batch, with their CFG branches, = each alone; every step is
 * x ← x − v·dt */
static void t_image_batch(void **state)
{
    (void)state;
    char err[512];
    const model_config_t *c = &M->cfg;
    int gh = 2, gw = 2, N = gh * gw, Dd = model_latent_dim(c);
    infer_t *e = engine(6, 64);
    /* image 0: edit-like [VAE, ViT, text]; image 1: text only. Contexts:
     * full 0/1, text-unconditioned 2/3, image-unconditioned 4/5 */
    build(e, 0);
    infer_chunk_t ch[4];
    chunks(ch);
    int s1 = 1, s2 = 2, s3 = 3, s4 = 4, s5 = 5;
    if (infer_append(e, &s1, &ch[3], 1, err, sizeof err) || infer_append(e, &s4, &ch[0], 1, err, sizeof err) ||
        infer_append(e, &s4, &ch[3], 1, err, sizeof err) || infer_append(e, &s2, &ch[0], 1, err, sizeof err) ||
        infer_append(e, &s2, &ch[1], 1, err, sizeof err) || infer_append(e, &s2, &ch[2], 1, err, sizeof err))
        fail_msg("%s", err);
    (void)s3, (void)s5; /* image 1: text-unconditioned is the empty context 3; image-unconditioned 5 = its text */
    if (infer_append(e, &s5, &ch[3], 1, err, sizeof err))
        fail_msg("%s", err);
    int full[2] = {0, 1}, tu[2] = {2, 3}, iu[2] = {4, 5};
    infer_image_opts_t o = infer_image_defaults;
    o.num_timesteps = 5;
    o.cfg_text_scale = 4.0f, o.cfg_img_scale = 2.0f, o.cfg_lo = 0.5f; /* CFG on for some steps only */
    size_t m = (size_t)N * Dd;
    float *x = malloc(2 * m * sizeof(float)), *x0 = malloc(2 * m * sizeof(float)), *xa = malloc(m * sizeof(float));
    for (size_t j = 0; j < 2 * m; j++)
        x0[j] = 2.0f * urand() - 1.0f;
    memcpy(x, x0, 2 * m * sizeof(float));
    int len_before[6];
    for (int s = 0; s < 6; s++)
        len_before[s] = infer_len(e, s);
    steps_seen_t seen = {.x = malloc(m * sizeof(float))};
    memcpy(seen.x, x0, m * sizeof(float));
    if (infer_image(e, full, tu, iu, 2, gh, gw, &o, x, on_step, &seen, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(seen.n, o.num_timesteps - 1);
    if (!(seen.worst == 0.0))
        fail_msg("a step is not x - v*dt: off by %.3g", seen.worst);
    for (int s = 0; s < 6; s++)
        assert_int_equal(infer_len(e, s), len_before[s]);
    for (int i = 0; i < 2; i++) {
        memcpy(xa, x0 + i * m, m * sizeof(float));
        if (infer_image(e, &full[i], &tu[i], &iu[i], 1, gh, gw, &o, xa, NULL, NULL, err, sizeof err))
            fail_msg("%s", err);
        double er = golden_rel_err(x + i * m, xa, m);
        if (!(er < 1e-6))
            fail_msg("image %d: batched and alone differ: %.3g", i, er);
    }
    free(x), free(x0), free(xa), free(seen.x);
    infer_destroy(&e);
}

/* An image-unconditioned context that holds what the full one holds is
 * evaluated once (infer_set_dedup): the same images as evaluating it, one
 * branch fewer at every guided step; a context that differs, or the same
 * text appended after the weights changed, is evaluated. */
static void t_image_same_context(void **state)
{
    (void)state;
    char err[512];
    const model_config_t *c = &M->cfg;
    int gh = 2, gw = 2, N = gh * gw, Dd = model_latent_dim(c);
    infer_t *e = engine(6, 64);
    infer_chunk_t ch[4];
    chunks(ch);
    /* image 0: full 0 = [text], image-unconditioned 2 = the same text in a
     * forward of its own; image 1: full 3 = [VAE, text], image-unconditioned
     * 5 = [text]; text-unconditioned 1 and 4 empty */
    int s0 = 0, s2 = 2, s3 = 3, s5 = 5;
    if (infer_append(e, &s0, &ch[3], 1, err, sizeof err) || infer_append(e, &s2, &ch[3], 1, err, sizeof err) ||
        infer_append(e, &s3, &ch[1], 1, err, sizeof err) || infer_append(e, &s3, &ch[3], 1, err, sizeof err) ||
        infer_append(e, &s5, &ch[3], 1, err, sizeof err))
        fail_msg("%s", err);
    int full[2] = {0, 3}, tu[2] = {1, 4}, iu[2] = {2, 5};
    infer_image_opts_t o = infer_image_defaults;
    o.num_timesteps = 6;
    o.cfg_text_scale = 4.0f, o.cfg_img_scale = 2.0f, o.cfg_lo = 0.5f;
    float ts[6];
    infer_schedule(ts, o.num_timesteps, o.timestep_shift);
    long guided = 0;
    for (int s = 0; s + 1 < o.num_timesteps; s++)
        guided += ts[s] > o.cfg_lo && ts[s] <= o.cfg_hi;
    assert_true(guided > 0 && guided < o.num_timesteps - 1);
    long each = (o.num_timesteps - 1) + 2 * guided; /* an image's evaluations, every branch */
    size_t m = (size_t)N * Dd;
    float *x0 = malloc(2 * m * sizeof(float)), *xa = malloc(2 * m * sizeof(float)), *xb = malloc(2 * m * sizeof(float));
    for (size_t j = 0; j < 2 * m; j++)
        x0[j] = 2.0f * urand() - 1.0f;
    memcpy(xa, x0, 2 * m * sizeof(float));
    assert_int_equal(draw(e, full, tu, iu, 2, gh, gw, &o, xa), 2 * each - guided);
    infer_set_dedup(e, 0);
    memcpy(xb, x0, 2 * m * sizeof(float));
    assert_int_equal(draw(e, full, tu, iu, 2, gh, gw, &o, xb), 2 * each);
    for (int i = 0; i < 2; i++) {
        double er = golden_rel_err(xa + i * m, xb + i * m, m);
        if (!(er < 1e-6))
            fail_msg("image %d: one evaluation for both branches differs from two: %.3g", i, er);
    }
    /* the same text appended after the weights changed is another context */
    infer_set_dedup(e, 1);
    infer_reset(e, 2);
    infer_weights_changed(e);
    if (infer_append(e, &s2, &ch[3], 1, err, sizeof err))
        fail_msg("%s", err);
    memcpy(xa, x0, m * sizeof(float));
    assert_int_equal(draw(e, full, tu, iu, 1, gh, gw, &o, xa), each);
    /* the full context filled again under the new weights is the same again */
    infer_reset(e, 0);
    if (infer_append(e, &s0, &ch[3], 1, err, sizeof err))
        fail_msg("%s", err);
    memcpy(xa, x0, m * sizeof(float));
    assert_int_equal(draw(e, full, tu, iu, 1, gh, gw, &o, xa), each - guided);
    /* text of the same length with one token changed is another context */
    int32_t other[4];
    memcpy(other, D.b, sizeof other);
    other[2] = (other[2] + 1) % 300;
    infer_chunk_t och = {.kind = INFER_TEXT, .ids = other, .n_ids = 4};
    infer_reset(e, 2);
    if (infer_append(e, &s2, &och, 1, err, sizeof err))
        fail_msg("%s", err);
    memcpy(xa, x0, m * sizeof(float));
    assert_int_equal(draw(e, full, tu, iu, 1, gh, gw, &o, xa), each);
    /* and a copy of the full context is the full context */
    infer_copy(e, 2, 0);
    memcpy(xa, x0, m * sizeof(float));
    assert_int_equal(draw(e, full, tu, iu, 1, gh, gw, &o, xa), each - guided);
    free(x0), free(xa), free(xb);
    infer_destroy(&e);
}

static void t_errors(void **state)
{
    (void)state;
    char err[512];
    infer_t *e = engine(2, 12);
    infer_chunk_t ch[4];
    chunks(ch);
    int slot = 0;
    /* the text (7 tokens) fits, the ViT image (6 + 2) then overflows */
    assert_int_equal(infer_append(e, &slot, &ch[0], 1, err, sizeof err), 0);
    assert_int_equal(infer_append(e, &slot, &ch[2], 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "room for"));
    assert_int_equal(infer_len(e, 0), 7);
    int twice[2] = {1, 1};
    infer_chunk_t two[2] = {ch[0], ch[0]};
    assert_int_equal(infer_append(e, twice, two, 2, err, sizeof err), -1);
    assert_non_null(strstr(err, "twice"));
    int32_t bad = 100000;
    infer_chunk_t b = {.kind = INFER_TEXT, .ids = &bad, .n_ids = 1};
    assert_int_equal(infer_append(e, &slot, &b, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "vocabulary"));
    infer_image_opts_t o = infer_image_defaults;
    float x[4 * 48];
    int full = 0;
    assert_int_equal(infer_image(e, &full, NULL, NULL, 1, 2, 2, &o, x, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "unconditioned"));
    infer_chunk_t big = {.kind = INFER_VAE, .lat = D.tok, .gh = 9, .gw = 1};
    assert_int_equal(infer_append(e, &slot, &big, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "max_latent_size"));
    infer_destroy(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_cache_equals_full), cmocka_unit_test(t_decode_equals_full),
        cmocka_unit_test(t_batch_independent), cmocka_unit_test(t_image_batch),
        cmocka_unit_test(t_image_same_context), cmocka_unit_test(t_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
