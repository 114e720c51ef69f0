/* cpu_attention.c — packed attention over a sequence of samples and splits
 * (op_attn_t in kernels/ops.h), flash-attention style: no S×S matrix exists.
 *
 * The mask is never materialised. A query block lies inside one split qs; the
 * keys it may see are the earlier non-noise splits of its sample plus its own
 * split (up to the query for a causal split, whole for full and noise), which
 * is op_attn_visible() read as a list of key spans. Inside those spans the
 * only masked pairs are k > q in a causal split, because every key of an
 * earlier split precedes every query.
 *
 * Forward: per (head, block of BQ queries) gather Q, then for each tile of
 * keys gather K and V, S = scale·Q·Kᵀ (sgemm), online softmax (running max m
 * and sum l), O += P·V (sgemm); lse = m + log l is saved.
 *
 * Backward recomputes P = exp(S − lse) and uses D = rowsum(dO ⊙ O):
 * dS = P ⊙ (dO·Vᵀ − D). It runs in two passes so that no two threads write
 * one gradient row: pass 1 owns query blocks and forms dQ += scale·dS·K; pass
 * 2 owns key blocks of one kv head and forms dV += Pᵀ·dO and
 * dK += scale·dSᵀ·Q over every query head of its GQA group and every query
 * that sees the block (its own split from the block on, or whole for full and
 * noise, and, unless it is a noise split, the rest of its sample).
 *
 * Rows are gathered through row_of_pos into per-thread tiles, so permuted
 * storage costs one copy per tile. The tiles are the one allocation here: a
 * single malloc per call for all threads, O(threads·(BQ + BK)·d) floats. If
 * it fails the outputs are filled with NaN (the op has no error return) so
 * the failure shows in the loss instead of passing silently. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

#define BQ 32 /* queries per block */

/* Keys per tile. Every product here is BQ × BK × d; keeping that at or under
 * OpenBLAS's single-thread threshold (65536 · 4 multiply-adds) stops each
 * OpenMP thread from also fanning out to OpenBLAS's own threads. */
static int attn_bk(int d)
{
    int bk = 262144 / (BQ * (d > 0 ? d : 1));
    bk = bk / 8 * 8;
    return bk < 16 ? 16 : bk > 128 ? 128 : bk;
}

static inline int attn_row(const op_attn_t *a, int pos) { return a->row_of_pos ? a->row_of_pos[pos] : pos; }

/* the split holding position pos: the last s with split_start[s] <= pos */
static int attn_split_of(const op_attn_t *a, int pos)
{
    int lo = 0, hi = a->n_splits - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (a->split_start[mid] <= pos)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* one past the last position of the sample holding split s */
static int attn_sample_end(const op_attn_t *a, int s)
{
    int e = s;
    while (e + 1 < a->n_splits && a->split_first[e + 1] == a->split_first[s])
        e++;
    return a->split_start[e + 1];
}

/* The next run of visible key positions [*lo, *hi) for queries of split qs;
 * qend is where the own split's span stops. *ks walks the splits from the
 * sample's first; adjacent visible splits merge into one span. Returns 0 when
 * there are no more. */
static int attn_key_span(const op_attn_t *a, int qs, int qend, int *ks, int *lo, int *hi)
{
    int s = *ks;
    while (s < qs && a->split_mode[s] == OP_SPLIT_NOISE)
        s++;
    if (s > qs)
        return 0;
    *lo = a->split_start[s];
    for (;;) {
        *hi = s == qs ? qend : a->split_start[s + 1];
        s++;
        if (s > qs || (s < qs && a->split_mode[s] == OP_SPLIT_NOISE))
            break;
    }
    *ks = s;
    return 1;
}

/* per-thread tiles */
typedef struct {
    float *q, *o, *dout;     /* (BQ, d) */
    float *k, *v, *dk, *dv;  /* (BK, d) */
    float *s, *dp;           /* (BQ, BK) */
    float *m, *l, *lse, *dd; /* (BQ) */
} attn_tiles_t;

static size_t attn_tile_floats(int d, int bk) { return (size_t)3 * BQ * d + (size_t)4 * bk * d + 2 * BQ * bk + 4 * BQ; }

static void attn_tiles_at(attn_tiles_t *t, float *base, int d, int bk)
{
    float *p = base;
    t->q = p, p += (size_t)BQ * d;
    t->o = p, p += (size_t)BQ * d;
    t->dout = p, p += (size_t)BQ * d;
    t->k = p, p += (size_t)bk * d;
    t->v = p, p += (size_t)bk * d;
    t->dk = p, p += (size_t)bk * d;
    t->dv = p, p += (size_t)bk * d;
    t->s = p, p += (size_t)BQ * bk;
    t->dp = p, p += (size_t)BQ * bk;
    t->m = p, p += BQ;
    t->l = p, p += BQ;
    t->lse = p, p += BQ;
    t->dd = p;
}

/* copy rows [p0, p0+np) of head hd from x [rows, nh_x, d] into dst (np, d) */
static void attn_gather(float *dst, const float *x, const op_attn_t *a, int p0, int np, int nh_x, int hd)
{
    int d = a->head_dim;
    for (int i = 0; i < np; i++)
        memcpy(dst + (size_t)i * d, x + ((size_t)attn_row(a, p0 + i) * nh_x + hd) * d, (size_t)d * sizeof(float));
}

static void attn_scatter_add(float *x, const float *src, const op_attn_t *a, int p0, int np, int nh_x, int hd)
{
    int d = a->head_dim;
    for (int i = 0; i < np; i++) {
        float *dst = x + ((size_t)attn_row(a, p0 + i) * nh_x + hd) * d;
        const float *s = src + (size_t)i * d;
        for (int j = 0; j < d; j++)
            dst[j] += s[j];
    }
}

static void attn_fill_nan(float *x, size_t n)
{
    if (!x)
        return;
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
}

/* forward for queries [q0, q1) of split qs, head h */
static void attn_fwd_block(float *out, float *lse, const float *q, const float *k, const float *v, const op_attn_t *a,
                           attn_tiles_t *t, int bk, int h, int qs, int q0, int q1)
{
    int d = a->head_dim, nh = a->n_heads, nkv = a->n_kv_heads;
    int kvh = h / (nh / nkv), nq = q1 - q0;
    int causal = a->split_mode[qs] == OP_SPLIT_CAUSAL;
    int qend = causal ? q1 : a->split_start[qs + 1];

    attn_gather(t->q, q, a, q0, nq, nh, h);
    memset(t->o, 0, (size_t)nq * d * sizeof(float));
    for (int i = 0; i < nq; i++)
        t->m[i] = -INFINITY, t->l[i] = 0.0f;

    int ks = a->split_first[qs], lo, hi;
    while (attn_key_span(a, qs, qend, &ks, &lo, &hi)) {
        for (int k0 = lo; k0 < hi; k0 += bk) {
            int nk = hi - k0 < bk ? hi - k0 : bk;
            attn_gather(t->k, k, a, k0, nk, nkv, kvh);
            attn_gather(t->v, v, a, k0, nk, nkv, kvh);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d, a->scale, t->q, d, t->k, d, 0.0f, t->s, bk);
            for (int i = 0; i < nq; i++) {
                float *s = t->s + (size_t)i * bk;
                int qpos = q0 + i;
                /* keys past the query are masked only in a causal split */
                int nvis = causal && k0 + nk > qpos + 1 ? qpos + 1 - k0 : nk;
                if (nvis < 0)
                    nvis = 0;
                float mx = -INFINITY;
                for (int j = 0; j < nvis; j++)
                    mx = s[j] > mx ? s[j] : mx;
                float mnew = mx > t->m[i] ? mx : t->m[i];
                float sum = 0.0f;
                for (int j = 0; j < nvis; j++) {
                    s[j] = expf(s[j] - mnew);
                    sum += s[j];
                }
                for (int j = nvis; j < nk; j++)
                    s[j] = 0.0f;
                if (nvis == 0)
                    continue;
                /* rescale what was summed under the old maximum */
                float corr = expf(t->m[i] - mnew);
                if (corr != 1.0f) {
                    float *o = t->o + (size_t)i * d;
                    for (int j = 0; j < d; j++)
                        o[j] *= corr;
                }
                t->l[i] = t->l[i] * corr + sum;
                t->m[i] = mnew;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, d, nk, 1.0f, t->s, bk, t->v, d, 1.0f, t->o, d);
        }
    }
    /* every query sees at least itself, so l > 0 */
    for (int i = 0; i < nq; i++) {
        int r = attn_row(a, q0 + i);
        float *dst = out + ((size_t)r * nh + h) * d, inv = 1.0f / t->l[i];
        const float *o = t->o + (size_t)i * d;
        for (int j = 0; j < d; j++)
            dst[j] = o[j] * inv;
        lse[(size_t)r * nh + h] = t->m[i] + logf(t->l[i]);
    }
}

void cpu_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const op_attn_t *a)
{
    int S = a->n_tok, nh = a->n_heads, d = a->head_dim;
    if (S <= 0 || nh <= 0 || d <= 0)
        return;
    int bk = attn_bk(d), nblk = (S + BQ - 1) / BQ, nthr = omp_get_max_threads();
    size_t per = attn_tile_floats(d, bk);
    float *tiles = malloc(per * (size_t)nthr * sizeof(float));
    if (!tiles) {
        attn_fill_nan(out, (size_t)S * nh * d);
        attn_fill_nan(lse, (size_t)S * nh);
        return;
    }
#pragma omp parallel for collapse(2) schedule(dynamic) if ((size_t)S * S * nh * d > CPU_OMP_MIN)
    for (int h = 0; h < nh; h++) {
        for (int b = 0; b < nblk; b++) {
            attn_tiles_t t;
            attn_tiles_at(&t, tiles + per * (size_t)omp_get_thread_num(), d, bk);
            int p = b * BQ, end = p + BQ < S ? p + BQ : S;
            /* a block may straddle splits: one pass per split it touches */
            while (p < end) {
                int qs = attn_split_of(a, p);
                int q1 = a->split_start[qs + 1] < end ? a->split_start[qs + 1] : end;
                attn_fwd_block(out, lse, q, k, v, a, &t, bk, h, qs, p, q1);
                p = q1;
            }
        }
    }
    free(tiles);
}

/* gather dO, lse and D = rowsum(dO ⊙ O) for queries [q0, q0+nq) of head h */
static void attn_gather_dout(attn_tiles_t *t, const float *dout, const float *out, const float *lse, const op_attn_t *a,
                             int q0, int nq, int h)
{
    int d = a->head_dim, nh = a->n_heads;
    attn_gather(t->dout, dout, a, q0, nq, nh, h);
    for (int i = 0; i < nq; i++) {
        size_t ri = (size_t)attn_row(a, q0 + i) * nh + h;
        const float *o = out + ri * d, *g = t->dout + (size_t)i * d;
        float dd = 0.0f;
        for (int j = 0; j < d; j++)
            dd += g[j] * o[j];
        t->dd[i] = dd;
        t->lse[i] = lse[ri];
    }
}

/* P = exp(S − lse) over the visible pairs (0 elsewhere) into t->s, and
 * dS = P ⊙ (dO·Vᵀ − D) into t->dp, for the nq × nk tile at (q0, k0).
 * causal: keys after a query are masked. */
static void attn_bwd_tile(attn_tiles_t *t, const op_attn_t *a, int bk, int q0, int nq, int k0, int nk, int causal)
{
    int d = a->head_dim;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d, a->scale, t->q, d, t->k, d, 0.0f, t->s, bk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d, 1.0f, t->dout, d, t->v, d, 0.0f, t->dp, bk);
    for (int i = 0; i < nq; i++) {
        float *s = t->s + (size_t)i * bk, *dp = t->dp + (size_t)i * bk;
        int qpos = q0 + i;
        int nvis = causal && k0 + nk > qpos + 1 ? qpos + 1 - k0 : nk;
        if (nvis < 0)
            nvis = 0;
        for (int j = 0; j < nvis; j++) {
            s[j] = expf(s[j] - t->lse[i]);
            dp[j] = s[j] * (dp[j] - t->dd[i]);
        }
        for (int j = nvis; j < nk; j++)
            s[j] = 0.0f, dp[j] = 0.0f;
    }
}

/* pass 1: dQ for queries [q0, q1) of split qs, head h */
static void attn_bwd_dq(float *dq, const float *dout, const float *out, const float *lse, const float *q,
                        const float *k, const float *v, const op_attn_t *a, attn_tiles_t *t, int bk, int h, int qs,
                        int q0, int q1)
{
    int d = a->head_dim, nh = a->n_heads, nkv = a->n_kv_heads;
    int kvh = h / (nh / nkv), nq = q1 - q0;
    int causal = a->split_mode[qs] == OP_SPLIT_CAUSAL;
    int qend = causal ? q1 : a->split_start[qs + 1];

    attn_gather(t->q, q, a, q0, nq, nh, h);
    attn_gather_dout(t, dout, out, lse, a, q0, nq, h);
    memset(t->o, 0, (size_t)nq * d * sizeof(float)); /* the dQ tile */

    int ks = a->split_first[qs], lo, hi;
    while (attn_key_span(a, qs, qend, &ks, &lo, &hi)) {
        for (int k0 = lo; k0 < hi; k0 += bk) {
            int nk = hi - k0 < bk ? hi - k0 : bk;
            attn_gather(t->k, k, a, k0, nk, nkv, kvh);
            attn_gather(t->v, v, a, k0, nk, nkv, kvh);
            attn_bwd_tile(t, a, bk, q0, nq, k0, nk, causal);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, d, nk, a->scale, t->dp, bk, t->k, d, 1.0f, t->o,
                        d);
        }
    }
    attn_scatter_add(dq, t->o, a, q0, nq, nh, h);
}

/* pass 2: dK, dV for keys [k0, k1) of split ks, kv head kvh */
static void attn_bwd_dkv(float *dk, float *dv, const float *dout, const float *out, const float *lse, const float *q,
                         const float *k, const float *v, const op_attn_t *a, attn_tiles_t *t, int bk, int kvh, int ks,
                         int k0, int k1)
{
    int d = a->head_dim, nh = a->n_heads, nkv = a->n_kv_heads;
    int group = nh / nkv, nk = k1 - k0;
    int mode = a->split_mode[ks], causal = mode == OP_SPLIT_CAUSAL;
    /* the queries that see these keys form one run: the own split (from k0 on
     * when causal), then, unless noise hides this split, the rest of the
     * sample */
    int qlo = causal ? k0 : a->split_start[ks];
    int qhi = mode == OP_SPLIT_NOISE ? a->split_start[ks + 1] : attn_sample_end(a, ks);

    attn_gather(t->k, k, a, k0, nk, nkv, kvh);
    attn_gather(t->v, v, a, k0, nk, nkv, kvh);
    memset(t->dk, 0, (size_t)nk * d * sizeof(float));
    memset(t->dv, 0, (size_t)nk * d * sizeof(float));
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        for (int q0 = qlo; q0 < qhi; q0 += BQ) {
            int nq = qhi - q0 < BQ ? qhi - q0 : BQ;
            attn_gather(t->q, q, a, q0, nq, nh, h);
            attn_gather_dout(t, dout, out, lse, a, q0, nq, h);
            /* queries of later splits follow every key here, so masking k > q
             * is right for the whole run when this split is causal */
            attn_bwd_tile(t, a, bk, q0, nq, k0, nk, causal);
            if (dv)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, d, nq, 1.0f, t->s, bk, t->dout, d, 1.0f, t->dv,
                            d);
            if (dk)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, d, nq, a->scale, t->dp, bk, t->q, d, 1.0f,
                            t->dk, d);
        }
    }
    if (dk)
        attn_scatter_add(dk, t->dk, a, k0, nk, nkv, kvh);
    if (dv)
        attn_scatter_add(dv, t->dv, a, k0, nk, nkv, kvh);
}

void cpu_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                       const float *q, const float *k, const float *v, const op_attn_t *a)
{
    int S = a->n_tok, nh = a->n_heads, nkv = a->n_kv_heads, d = a->head_dim;
    if (S <= 0 || nh <= 0 || d <= 0 || (!dq && !dk && !dv))
        return;
    if (a->write) { /* the tiles below add onto zeros */
        if (dq)
            memset(dq, 0, (size_t)S * nh * d * sizeof(float));
        if (dk)
            memset(dk, 0, (size_t)S * nkv * d * sizeof(float));
        if (dv)
            memset(dv, 0, (size_t)S * nkv * d * sizeof(float));
    }
    int bk = attn_bk(d), nthr = omp_get_max_threads();
    size_t per = attn_tile_floats(d, bk);
    float *tiles = malloc(per * (size_t)nthr * sizeof(float));
    if (!tiles) {
        attn_fill_nan(dq, (size_t)S * nh * d);
        attn_fill_nan(dk, (size_t)S * nkv * d);
        attn_fill_nan(dv, (size_t)S * nkv * d);
        return;
    }
    int par = (size_t)S * S * nh * d > CPU_OMP_MIN;
    if (dq) {
        int nblk = (S + BQ - 1) / BQ;
#pragma omp parallel for collapse(2) schedule(dynamic) if (par)
        for (int h = 0; h < nh; h++) {
            for (int b = 0; b < nblk; b++) {
                attn_tiles_t t;
                attn_tiles_at(&t, tiles + per * (size_t)omp_get_thread_num(), d, bk);
                int p = b * BQ, end = p + BQ < S ? p + BQ : S;
                while (p < end) {
                    int qs = attn_split_of(a, p);
                    int q1 = a->split_start[qs + 1] < end ? a->split_start[qs + 1] : end;
                    attn_bwd_dq(dq, dout, out, lse, q, k, v, a, &t, bk, h, qs, p, q1);
                    p = q1;
                }
            }
        }
    }
    if (dk || dv) {
        int nblk = (S + bk - 1) / bk;
#pragma omp parallel for collapse(2) schedule(dynamic) if (par)
        for (int kvh = 0; kvh < nkv; kvh++) {
            for (int b = 0; b < nblk; b++) {
                attn_tiles_t t;
                attn_tiles_at(&t, tiles + per * (size_t)omp_get_thread_num(), d, bk);
                int p = b * bk, end = p + bk < S ? p + bk : S;
                while (p < end) {
                    int ks = attn_split_of(a, p);
                    int k1 = a->split_start[ks + 1] < end ? a->split_start[ks + 1] : end;
                    attn_bwd_dkv(dk, dv, dout, out, lse, q, k, v, a, &t, bk, kvh, ks, p, k1);
                    p = k1;
                }
            }
        }
    }
    free(tiles);
}

/* ---- inference attention against a cache (op_kv_attn_t) ----
 *
 * One (query, head) at a time: scores = scale·K·q over the query's cache rows
 * (sgemv with the cache's row stride), a softmax in double-free float with the
 * running maximum subtracted, out = Vᵀ·p (sgemv). Each thread keeps one score
 * vector as long as the longest key range. */
void cpu_attention_kv(float *out, const float *q, const float *kc, const float *vc, const op_kv_attn_t *a)
{
    int nq = a->n_q, nh = a->n_heads, nkv = a->n_kv_heads, d = a->head_dim;
    if (nq <= 0 || nh <= 0 || d <= 0)
        return;
    int kmax = 1;
    for (int i = 0; i < nq; i++)
        kmax = a->k_count[i] > kmax ? a->k_count[i] : kmax;
    int nthr = omp_get_max_threads();
    float *sc = malloc((size_t)kmax * nthr * sizeof(float));
    if (!sc) {
        for (int i = 0; i < nq; i++)
            attn_fill_nan(out + (size_t)a->q_row[i] * nh * d, (size_t)nh * d);
        return;
    }
    size_t ld = (size_t)nkv * d;
    long work = (long)nq * nh;
#pragma omp parallel for schedule(dynamic, 4) if ((size_t)work * kmax * d > CPU_OMP_MIN)
    for (long w = 0; w < work; w++) {
        int i = (int)(w / nh), h = (int)(w % nh), kvh = h / (nh / nkv), n = a->k_count[i];
        float *s = sc + (size_t)kmax * omp_get_thread_num();
        const float *qi = q + ((size_t)a->q_row[i] * nh + h) * d;
        float *oi = out + ((size_t)a->q_row[i] * nh + h) * d;
        const float *k0 = kc + (size_t)a->k_first[i] * ld + (size_t)kvh * d;
        const float *v0 = vc + (size_t)a->k_first[i] * ld + (size_t)kvh * d;
        if (n <= 0) {
            memset(oi, 0, (size_t)d * sizeof(float));
            continue;
        }
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, d, a->scale, k0, (int)ld, qi, 1, 0.0f, s, 1);
        float mx = s[0];
        for (int j = 1; j < n; j++)
            mx = s[j] > mx ? s[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < n; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        cblas_sgemv(CblasRowMajor, CblasTrans, n, d, 1.0f / sum, v0, (int)ld, s, 1, 0.0f, oi, 1);
    }
    free(sc);
}
