/* run.c — one training run (run.h).
 *
 * Order of a step (bagel-reference.md §4): for each of --accum micro-batches,
 * forward and backward with the loss divided by the number of micro-batches;
 * then clip, AdamW at the schedule's rate, EMA, zero the gradients. A step
 * whose loss or gradient norm is not finite changes nothing and is counted;
 * --max-bad-steps in a row stop the run.
 *
 * Checkpoints: checkpoints/step-N/ holds model.safetensors, ema.safetensors,
 * optimizer.safetensors, trainer_state.json (step, data position, best
 * validation, counters) and the model's configs (llm_config.json,
 * vit_config.json, bagelpipe.json). It is written as step-N.tmp/ and renamed
 * when complete, so a crash mid-write leaves the previous one usable; only
 * directories named step-N with a trainer_state.json count. */
#include "run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../ipc/fsutil.h"
#include "../../models/ae.h"
#include "../../models/checkpoint.h"
#include "../../models/model.h"
#include "../../models/optim.h"
#include "../../models/safetensors.h"
#include "../common/compute_env.h"
#include "../common/log.h"
#include "../common/stage.h"
#include "report.h"
#include "sample.h"
#include "tb.h"

void train_opts_default(train_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->config = NULL;
    o->steps = 1000;
    o->accum = 1;
    o->seed = 4396;
    o->save_every = 500;
    o->keep_last = 3;
    o->max_bad_steps = 5;
    o->log_every = 1;
    o->lr = 1e-4;
    o->min_lr = 1e-7;
    o->warmup = 2000;
    o->schedule = "constant";
    o->beta1 = 0.9;
    o->beta2 = 0.95;
    o->eps = 1e-15;
    o->clip = 1.0;
    o->ema = 0.9999;
    o->ce_weight = 1.0;
    o->mse_weight = 1.0;
    o->val_metric = "loss";
    o->device = "cpu";
    o->data = data_default_opts;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double wall_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return unlink(path) && errno != ENOENT ? -1 : 0;
    struct dirent *e;
    char p[1200];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        rm_rf(p);
    }
    closedir(d);
    return rmdir(path);
}

/* a JSON document to path, through path.tmp, fsync and rename */
static int write_json(const char *path, json_t *j, char *err, size_t errlen)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || json_dumpf(j, f, JSON_INDENT(2) | JSON_SORT_KEYS) || fputc('\n', f) == EOF || fflush(f) ||
        fsync(fileno(f))) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    if (rename(tmp, path)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* src into dir/name, fsynced: a checkpoint carries the tokenizer its model
 * was trained with, as a released BAGEL directory does */
static int copy_file(const char *src, const char *dir, const char *name, char *err, size_t errlen)
{
    char dst[1200];
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    int rc = -1;
    if (!in || !out) {
        snprintf(err, errlen, "%s: %s", in ? dst : src, strerror(errno));
        goto done;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            break;
    if (ferror(in) || ferror(out) || fflush(out) || fsync(fileno(out))) {
        snprintf(err, errlen, "%s: %s", dst, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (in)
        fclose(in);
    if (out && fclose(out))
        rc = -1;
    return rc;
}

static double mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

static double rss_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

/* Fault injection for the tests: BAGEL_TEST_NAN_STEPS=2,5 makes the losses
 * of those step attempts (1-based; a skipped step is an attempt too) NaN. */
static int test_nan_attempt(void)
{
    static long attempt;
    const char *e = getenv("BAGEL_TEST_NAN_STEPS");
    attempt++;
    if (!e)
        return 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", e);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
        if (atol(t) == attempt)
            return 1;
    return 0;
}

/* The model FLOPs of one batch as the official trainer counts them
 * (bagel-reference.md §4.6): 6·N_dense per token for one expert's linears
 * and the vocabulary projections, 12·hd·nh·L per (sample length)² for
 * attention. */
static double batch_flops(const model_config_t *c, const model_batch_t *b)
{
    double H = c->hidden, I = c->inter, hd = c->head_dim, nh = c->heads, nkv = c->kv_heads, L = c->layers;
    double dense = L * (3 * H * I + H * (nh * hd + 2 * nkv * hd + nh * hd)) + 2.0 * c->vocab * H;
    double sq = 0;
    for (int i = 0; i < b->n_samples; i++)
        sq += (double)b->sample_lens[i] * b->sample_lens[i];
    return 6 * dense * b->S + 12 * hd * nh * L * sq;
}

/* ---- per-task sums ------------------------------------------------------- */

#define MAX_TASKS 12

typedef struct task_sums {
    int n;
    char name[MAX_TASKS][16];
    double ce[MAX_TASKS], mse[MAX_TASKS];
    long n_ce[MAX_TASKS], n_mse[MAX_TASKS];
} task_sums_t;

static int task_slot(task_sums_t *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->name[i], name))
            return i;
    if (t->n == MAX_TASKS)
        return MAX_TASKS - 1;
    snprintf(t->name[t->n], sizeof t->name[0], "%s", name);
    return t->n++;
}

static int sample_of(const data_batch_t *b, int pos)
{
    int lo = 0, hi = b->n_info - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (b->info[mid].start <= pos)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static void add_task_losses(task_sums_t *t, const model_t *m, const data_batch_t *db)
{
    const model_batch_t *b = &db->pack.b;
    const float *ce, *mse;
    model_token_losses(m, &ce, &mse);
    for (int i = 0; i < b->n_ce; i++) {
        int k = task_slot(t, db->info[sample_of(db, b->ce_pos[i])].task);
        t->ce[k] += ce[i];
        t->n_ce[k]++;
    }
    for (int i = 0; i < b->n_mse; i++) {
        int k = task_slot(t, db->info[sample_of(db, b->mse_pos[i])].task);
        t->mse[k] += mse[i];
        t->n_mse[k]++;
    }
}

/* ---- the run --------------------------------------------------------- */

typedef struct run {
    train_opts_t *o;
    model_config_t cfg;
    model_t *m;
    optim_t *opt;
    optim_sched_t sched;
    float *ema;
    FILE *metrics, *rejects;
    tb_writer_t *tb;
    ae_t *ae;
    sampler_t *sampler; /* --sample-every */
    char dir[1024];
    data_pos_t pos; /* after the last batch trained on */
    long bad_in_row, stale_vals, last_saved;
    int tb_failed;
    double best;
    long best_step;
    char err[600];
} run_t;

static json_t *pos_json(const data_pos_t *p)
{
    json_t *out = json_array();
    for (int i = 0; i < p->n_out; i++)
        json_array_append_new(out, json_integer((json_int_t)p->out[i]));
    return json_pack("{s:I,s:o,s:I}", "next", (json_int_t)p->next, "outstanding", out, "batches",
                     (json_int_t)p->batches);
}

static int pos_from_json(data_pos_t *p, json_t *j)
{
    memset(p, 0, sizeof *p);
    json_t *out = json_object_get(j, "outstanding");
    if (!json_is_integer(json_object_get(j, "next")) || !json_is_array(out) ||
        json_array_size(out) > DATA_MAX_OUTSTANDING)
        return -1;
    p->next = (uint64_t)json_integer_value(json_object_get(j, "next"));
    p->batches = (uint64_t)json_integer_value(json_object_get(j, "batches"));
    for (size_t i = 0; i < json_array_size(out); i++)
        p->out[p->n_out++] = (uint64_t)json_integer_value(json_array_get(out, i));
    return 0;
}

static int keep_old_checkpoints(run_t *r)
{
    char cdir[1100];
    snprintf(cdir, sizeof cdir, "%s/checkpoints", r->dir);
    DIR *d = opendir(cdir);
    if (!d)
        return 0;
    long steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        long s;
        char tail;
        if (sscanf(e->d_name, "step-%ld%c", &s, &tail) == 1)
            steps[n++] = s;
    }
    closedir(d);
    for (int i = 0; i < n; i++) /* newest first */
        for (int j = i + 1; j < n; j++)
            if (steps[j] > steps[i]) {
                long t = steps[i];
                steps[i] = steps[j];
                steps[j] = t;
            }
    for (int i = r->o->keep_last; i < n; i++) {
        if (steps[i] == r->best_step)
            continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/step-%ld", cdir, steps[i]);
        rm_rf(p);
    }
    return 0;
}

static int save_checkpoint(run_t *r, long step)
{
    char dir[1100], tmp[1100], p[1200];
    snprintf(dir, sizeof dir, "%s/checkpoints/step-%ld", r->dir, step);
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    rm_rf(tmp);
    if (fs_mkdirs(tmp, 0777)) {
        snprintf(r->err, sizeof r->err, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    int dt = r->o->save_bf16 ? ST_BF16 : ST_F32;
    snprintf(p, sizeof p, "%s/model.safetensors", tmp);
    if (model_save(r->m, NULL, p, dt, r->err, sizeof r->err))
        return -1;
    if (r->ema) {
        snprintf(p, sizeof p, "%s/ema.safetensors", tmp);
        if (model_save(r->m, r->ema, p, dt, r->err, sizeof r->err))
            return -1;
    }
    snprintf(p, sizeof p, "%s/optimizer.safetensors", tmp);
    if (optim_save(r->opt, p, r->err, sizeof r->err))
        return -1;
    if (r->o->tokenizer && copy_file(r->o->tokenizer, tmp, "tokenizer.json", r->err, sizeof r->err))
        return -1;
    if (model_config_save_dir(&r->cfg, tmp, r->err, sizeof r->err))
        return -1;
    json_t *st =
        json_pack("{s:i,s:I,s:o,s:I,s:I,s:I,s:f,s:I,s:s}", "v", 1, "step", (json_int_t)step, "data", pos_json(&r->pos),
                  "seed", (json_int_t)r->o->seed, "bad_steps_in_row", (json_int_t)r->bad_in_row, "stale_validations",
                  (json_int_t)r->stale_vals, "best", isfinite(r->best) ? r->best : -1.0, "best_step",
                  (json_int_t)r->best_step, "val_metric", r->o->val_metric);
    snprintf(p, sizeof p, "%s/trainer_state.json", tmp);
    int rc = write_json(p, st, r->err, sizeof r->err);
    json_decref(st);
    if (rc)
        return -1;
    if (fsync_path(tmp)) {
        snprintf(r->err, sizeof r->err, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    rm_rf(dir); /* a previous attempt at the same step */
    if (rename(tmp, dir)) {
        snprintf(r->err, sizeof r->err, "%s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(p, sizeof p, "%s/checkpoints", r->dir);
    fsync_path(p);
    r->last_saved = step;
    tb_flush(r->tb);
    {
        char e2[300], title[200];
        snprintf(title, sizeof title, "bagel-train: %s, step %ld", r->cfg.name, step);
        if (report_write(r->dir, title, e2, sizeof e2))
            log_error("report: %s", e2);
    }
    log_info("checkpoint=%s", dir);
    return keep_old_checkpoints(r);
}

/* the newest complete checkpoint of the run directory, or NULL */
static int newest_checkpoint(const char *run, char *out, size_t outlen)
{
    char cdir[1100];
    snprintf(cdir, sizeof cdir, "%s/checkpoints", run);
    DIR *d = opendir(cdir);
    if (!d)
        return -1;
    long best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        long s;
        char tail, p[1300];
        if (sscanf(e->d_name, "step-%ld%c", &s, &tail) != 1)
            continue;
        snprintf(p, sizeof p, "%s/%s/trainer_state.json", cdir, e->d_name);
        if (access(p, R_OK) == 0 && s > best)
            best = s;
    }
    closedir(d);
    if (best < 0)
        return -1;
    snprintf(out, outlen, "%s/step-%ld", cdir, best);
    return 0;
}

static int resume(run_t *r, const char *ck)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/trainer_state.json", ck);
    json_error_t je;
    json_t *st = json_load_file(p, 0, &je);
    if (!st) {
        snprintf(r->err, sizeof r->err, "%s: %s", p, je.text);
        return -1;
    }
    if (pos_from_json(&r->pos, json_object_get(st, "data")) || !json_is_integer(json_object_get(st, "step"))) {
        snprintf(r->err, sizeof r->err, "%s: no step or data position", p);
        json_decref(st);
        return -1;
    }
    long step = (long)json_integer_value(json_object_get(st, "step"));
    r->bad_in_row = (long)json_integer_value(json_object_get(st, "bad_steps_in_row"));
    r->stale_vals = (long)json_integer_value(json_object_get(st, "stale_validations"));
    double best = json_real_value(json_object_get(st, "best"));
    r->best = best >= 0 ? best : INFINITY;
    r->best_step = (long)json_integer_value(json_object_get(st, "best_step"));
    json_decref(st);
    snprintf(p, sizeof p, "%s/model.safetensors", ck);
    if (model_load(r->m, NULL, p, NULL, r->err, sizeof r->err))
        return -1;
    if (r->ema) {
        snprintf(p, sizeof p, "%s/ema.safetensors", ck);
        if (model_load(r->m, r->ema, p, NULL, r->err, sizeof r->err))
            return -1;
    }
    snprintf(p, sizeof p, "%s/optimizer.safetensors", ck);
    if (optim_load(r->opt, p, r->err, sizeof r->err))
        return -1;
    if (r->opt->step != step) {
        snprintf(r->err, sizeof r->err, "%s: optimizer at step %ld, trainer_state.json says %ld", ck, r->opt->step,
                 step);
        return -1;
    }
    r->last_saved = step;
    log_info("resume=%s step=%ld input_position=%llu outstanding=%d", ck, step, (unsigned long long)r->pos.next,
             r->pos.n_out);
    return 0;
}

/* spans of trainable parameters, in layout order */
static int trainable_spans(const model_t *m, optim_span_t **out)
{
    optim_span_t *s = calloc((size_t)m->n_params + 1, sizeof *s);
    int n = 0;
    if (!s)
        return -1;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].trainable)
            s[n++] = (optim_span_t){m->params[i].offset, m->params[i].numel};
    *out = s;
    return n;
}

static int name_in_branch(const char *name, const char *branch)
{
    int gen = strstr(name, "_moe_gen") || !strncmp(name, "time_embedder.", 14) || !strncmp(name, "vae2llm.", 8) ||
              !strncmp(name, "llm2vae.", 8) || !strcmp(name, "language_model.model.norm_moe_gen.weight");
    int lang = !strncmp(name, "language_model.", 15);
    if (!strcmp(branch, "llm"))
        return lang;
    if (!strcmp(branch, "vit"))
        return !strncmp(name, "vit_model.", 10);
    if (!strcmp(branch, "connector"))
        return !strncmp(name, "connector.", 10);
    if (!strcmp(branch, "gen"))
        return gen;
    if (!strcmp(branch, "und"))
        return !gen; /* understanding expert, embeddings, ViT, connector */
    return -1;
}

static int apply_freeze(model_t *m, const char *list, char *err, size_t errlen)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        if (name_in_branch("x", t) < 0) {
            snprintf(err, errlen, "--freeze: '%s', expected llm, vit, connector, und or gen", t);
            return -1;
        }
        for (int i = 0; i < m->n_params; i++) {
            model_param_t *p = &m->params[i];
            if (p->trainable && name_in_branch(p->name, t)) {
                p->trainable = 0;
                m->n_trainable -= p->numel;
                *p->g = NULL;
            }
        }
    }
    if (m->cfg.tie_embeddings)
        m->g.lm_head = m->g.embed;
    return 0;
}

typedef struct val_result {
    double ce, mse, loss;
    long n_ce, n_mse;
} val_result_t;

/* the sample generations of step, with the EMA weights (the parameters
 * when EMA is off); a failure is logged and the run goes on */
static void sample_step(run_t *r, long step)
{
    if (!r->sampler)
        return;
    char e2[600], title[200];
    double t0 = now_s();
    if (sampler_run(r->sampler, r->m, r->ema ? r->ema : r->m->param_mem, step, e2, sizeof e2)) {
        log_error("samples: step %ld: %s", step, e2);
        return;
    }
    log_info("samples step=%ld seconds=%.1f", step, now_s() - t0);
    snprintf(title, sizeof title, "bagel-train: %s, step %ld", r->cfg.name, step);
    if (report_write(r->dir, title, e2, sizeof e2))
        log_error("report: %s", e2);
}

static int validate(run_t *r, val_result_t *v)
{
    train_opts_t *o = r->o;
    char err[REC_ERR_LEN];
    const char *spec[1] = {o->val};
    rd_t *in = rd_open(spec, 1, o->stream, err);
    if (!in) {
        snprintf(r->err, sizeof r->err, "--val %s: %s", o->val, err);
        return -1;
    }
    data_opts_t dopt = o->data;
    dopt.train = 0;
    dopt.prefetch = 1;
    dopt.seed = o->seed ^ 0x76616c6964ULL; /* the same draws at every validation */
    char e2[300];
    data_t *d = data_start(in, &r->cfg, &dopt, NULL, NULL, 0, e2, sizeof e2);
    if (!d) {
        rd_close(&in);
        snprintf(r->err, sizeof r->err, "--val: %s", e2);
        return -1;
    }
    double ce = 0, mse = 0;
    long nce = 0, nmse = 0;
    model_loss_opts_t lo = {.ce_weight = (float)o->ce_weight,
                            .mse_weight = (float)o->mse_weight,
                            .ce_reweight = o->ce_reweight,
                            .grad_scale = 1.0f};
    data_batch_t *b;
    int rc = 0;
    while ((b = data_next(d, NULL))) {
        model_losses_t L;
        if (model_forward(r->m, &b->pack.b, &lo, 0, &L, r->err, sizeof r->err)) {
            rc = -1;
            data_release(d, b);
            break;
        }
        ce += L.ce_sum;
        mse += L.mse_sum;
        nce += L.n_ce;
        nmse += L.n_mse;
        data_release(d, b);
    }
    data_stop(&d);
    rd_close(&in);
    v->n_ce = nce;
    v->n_mse = nmse;
    v->ce = nce ? ce / nce : 0;
    v->mse = nmse ? mse / nmse : 0;
    v->loss = o->ce_weight * v->ce + o->mse_weight * v->mse;
    return rc;
}

static void print_plan(run_t *r, double act, double total)
{
    model_t *m = r->m;
    model_plan_print(m, stderr);
    double P = m->n_floats * 4.0, T = m->n_trainable * 4.0;
    fprintf(stderr,
            "plan memory: parameters %.1f MiB, gradients %.1f MiB, optimizer %.1f MiB, ema %.1f MiB, activations "
            "%.1f MiB (%ld tokens), total %.1f MiB\n",
            P / 1048576, T / 1048576, 2 * T / 1048576, r->ema ? P / 1048576 : 0.0, act / 1048576, r->o->data.max_tokens,
            total / 1048576);
}

int train_run(train_opts_t *o)
{
    run_t R = {.o = o, .best = INFINITY, .best_step = -1, .last_saved = -1};
    run_t *r = &R;
    int code = EXIT_FATAL;
    rd_t *in = NULL;
    data_t *d = NULL;
    optim_span_t *spans = NULL;

    snprintf(r->dir, sizeof r->dir, "%s", o->out);
    if (o->finetune) {
        /* BAGEL's fine-tune recipe (TRAIN.md): the model's own configs, its
         * EMA weights, a small rate and budget */
        if (!o->config)
            o->config = o->finetune;
        if (!o->init)
            o->init = o->finetune, o->init_ema = 1;
        if (o->lr == 1e-4)
            o->lr = 2e-5;
        if (o->data.expected_tokens == data_default_opts.expected_tokens)
            o->data.expected_tokens = 10240;
        if (o->data.max_tokens == data_default_opts.max_tokens)
            o->data.max_tokens = 11520;
        if (o->data.max_per_sample == data_default_opts.max_per_sample)
            o->data.max_per_sample = 10240;
    }
    if (!o->config)
        o->config = "tiny";
    if (model_config_load(&r->cfg, o->config, NULL, r->err, sizeof r->err))
        goto fail;
    if (o->timestep_shift > 0)
        r->cfg.timestep_shift = (float)o->timestep_shift;
    if (o->data.max_tokens < o->data.expected_tokens)
        o->data.max_tokens = o->data.expected_tokens;

    const op_table_t *ops;
    double peak = 0;
    if (compute_ops(o->device, o->precision, &ops, &peak, r->err, sizeof r->err))
        goto fail;
    if (o->peak_tflops <= 0)
        o->peak_tflops = peak;
    r->m = model_new(&r->cfg, ops, r->err, sizeof r->err);
    if (!r->m)
        goto fail;
    model_t *m = r->m;
    model_init_fresh(m, o->seed);
    if (o->init) {
        char p[1100];
        struct stat sb;
        snprintf(p, sizeof p, "%s", o->init);
        if (!stat(o->init, &sb) && S_ISDIR(sb.st_mode))
            snprintf(p, sizeof p, "%s/%s", o->init, o->init_ema ? "ema.safetensors" : "model.safetensors");
        int extra = 0;
        if (model_load(m, NULL, p, &extra, r->err, sizeof r->err))
            goto fail;
        log_info("init=%s unused_tensors=%d", p, extra);
    }
    if (o->freeze && apply_freeze(m, o->freeze, r->err, sizeof r->err))
        goto fail;
    int ns = trainable_spans(m, &spans);
    if (ns < 0)
        goto oom;
    optim_hparams_t hp = {.beta1 = (float)o->beta1,
                          .beta2 = (float)o->beta2,
                          .eps = (float)o->eps,
                          .weight_decay = (float)o->weight_decay,
                          .ema_decay = (float)o->ema,
                          .max_grad_norm = o->clip};
    r->opt = optim_new(m->ops, &hp, m->n_floats, spans, ns, r->err, sizeof r->err);
    if (!r->opt)
        goto fail;
    const char *sname = !strcmp(o->schedule, "none") ? "fixed" : o->schedule;
    if (optim_sched_parse(&r->sched, sname, o->lr, o->min_lr, o->warmup, o->steps, r->err, sizeof r->err))
        goto fail;
    if (o->ema > 0) {
        r->ema = m->ops->alloc(m->n_floats * sizeof(float));
        if (!r->ema)
            goto oom;
        float *host = malloc(m->n_floats * sizeof(float));
        if (!host)
            goto oom;
        m->ops->download(host, m->param_mem, m->n_floats * sizeof(float));
        m->ops->upload(r->ema, host, m->n_floats * sizeof(float));
        free(host);
    }

    if (o->vae) {
        if (r->cfg.ae != MODEL_AE_FLUX) {
            snprintf(r->err, sizeof r->err, "--vae: the %s model's autoencoder is the identity, not FLUX's",
                     r->cfg.name);
            goto fail;
        }
        if (r->cfg.vae_downsample != 8) {
            snprintf(r->err, sizeof r->err, "--vae: FLUX's autoencoder downsamples by 8, the %s config says %d",
                     r->cfg.name, r->cfg.vae_downsample);
            goto fail;
        }
        ae_config_t ac = ae_flux_config;
        ac.z_channels = r->cfg.z_channels;
        ac.ch = r->cfg.ae_ch;
        ac.num_res_blocks = r->cfg.ae_res_blocks;
        ac.scale = r->cfg.ae_scale;
        ac.shift = r->cfg.ae_shift;
        r->ae = ae_new(&ac, &op_cpu, r->err, sizeof r->err);
        int extra = 0;
        int side = r->cfg.vae_max > 0 ? r->cfg.vae_max : 1024;
        if (!r->ae || ae_load(r->ae, o->vae, &extra, r->err, sizeof r->err) ||
            ae_reserve(r->ae, side, side, r->err, sizeof r->err))
            goto fail;
        o->data.ae = r->ae;
        log_info("vae=%s (images without latents are encoded here, up to %dx%d)", o->vae, side, side);
    }
    /* activations for the largest micro-batch the packer can make */
    long S = o->data.max_tokens;
    model_caps_t caps = {.S = (int)S,
                         .n_vit = (int)S,
                         .n_lat = (int)S,
                         .n_ce = (int)S,
                         .n_splits = (int)(S / 2 + 1),
                         .n_vit_images = (int)(S / 3 + 1),
                         .recompute = o->recompute};
    if (!r->cfg.visual_und)
        caps.n_vit = 0;
    if (!r->cfg.visual_gen)
        caps.n_lat = 0;
    if (model_reserve(m, &caps, r->err, sizeof r->err))
        goto fail;
    double total = m->n_floats * 4.0 + m->n_trainable * 12.0 + (r->ema ? m->n_floats * 4.0 : 0) + m->act_bytes;
    print_plan(r, (double)m->act_bytes, total);
    double limit = o->max_memory ? (double)o->max_memory : 0.9 * mem_available();
    if (limit > 0 && total > limit) {
        snprintf(r->err, sizeof r->err,
                 "the plan needs %.1f GiB, more than the %.1f GiB allowed (--max-memory, or 90%% of available "
                 "memory): lower --max-tokens, freeze parts (--freeze) or use a smaller config",
                 total / 1073741824.0, limit / 1073741824.0);
        goto fail;
    }

    /* the run directory */
    char p[1200];
    snprintf(p, sizeof p, "%s/checkpoints", r->dir);
    if (fs_mkdirs(p, 0777)) {
        snprintf(r->err, sizeof r->err, "%s: %s", p, strerror(errno));
        goto fail;
    }
    char ck[1100] = "";
    if (o->resume) {
        if (!strcmp(o->resume, "auto")) {
            if (newest_checkpoint(r->dir, ck, sizeof ck))
                log_info("resume=auto: no checkpoint yet, starting fresh");
        } else {
            snprintf(ck, sizeof ck, "%s", o->resume);
        }
        if (ck[0] && resume(r, ck))
            goto fail;
    }
    {
        char cj[4096];
        model_config_json(&r->cfg, cj, sizeof cj);
        json_t *mc = json_loads(cj, 0, NULL);
        json_t *js = json_pack(
            "{s:o?,s:I,s:i,s:I,s:s,s:f,s:f,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:b,s:I,s:I,s:I,s:i,s:f,s:f,s:f,"
            "s:s?,s:s?,s:s?}",
            "model", mc, "steps", (json_int_t)o->steps, "accum", o->accum, "seed", (json_int_t)o->seed, "schedule",
            optim_sched_name(r->sched.kind), "lr", o->lr, "min_lr", o->min_lr, "warmup", (json_int_t)o->warmup, "beta1",
            o->beta1, "beta2", o->beta2, "eps", o->eps, "weight_decay", o->weight_decay, "clip", o->clip, "ema", o->ema,
            "ce_weight", o->ce_weight, "mse_weight", o->mse_weight, "ce_reweight", o->ce_reweight, "expected_tokens",
            (json_int_t)o->data.expected_tokens, "max_tokens", (json_int_t)o->data.max_tokens, "max_sample_tokens",
            (json_int_t)o->data.max_per_sample, "buffer", o->data.max_buffer, "text_drop",
            (double)o->data.pack.text_drop, "vae_drop", (double)o->data.pack.vae_drop, "vit_drop",
            (double)o->data.pack.vit_drop, "init", o->init, "freeze", o->freeze, "val", o->val);
        snprintf(p, sizeof p, "%s/config.json", r->dir);
        int rc = js ? write_json(p, js, r->err, sizeof r->err) : -1;
        json_decref(js);
        if (rc)
            goto fail;
    }
    snprintf(p, sizeof p, "%s/metrics.jsonl", r->dir);
    r->metrics = fopen(p, "a");
    snprintf(p, sizeof p, "%s/rejects.jsonl", r->dir);
    r->rejects = fopen(p, "a");
    if (!r->metrics || !r->rejects) {
        snprintf(r->err, sizeof r->err, "%s: %s", p, strerror(errno));
        goto fail;
    }
    snprintf(p, sizeof p, "%s/tb", r->dir);
    r->tb = tb_open(p, "bagel-train", r->err, sizeof r->err);
    if (!r->tb)
        goto fail;

    if (o->sample_prompts) {
        sampler_opts_t so = {.prompts = o->sample_prompts,
                             .count = o->sample_count > 0 ? o->sample_count : 6,
                             .steps = o->sample_steps > 0 ? o->sample_steps : 30,
                             .max_tokens = 48,
                             .vae = o->vae,
                             .tokenizer = o->tokenizer,
                             .run_dir = r->dir};
        r->sampler = sampler_open(&so, &r->cfg, m->ops, r->err, sizeof r->err);
        if (!r->sampler)
            goto fail;
    }

    /* input */
    static const char *const dash[] = {"-"};
    char e1[REC_ERR_LEN];
    in = rd_open(o->ninputs ? o->inputs : dash, o->ninputs ? o->ninputs : 1, o->stream, e1);
    if (!in) {
        snprintf(r->err, sizeof r->err, "input: %s", e1);
        goto fail;
    }
    o->data.seed = o->seed;
    d = data_start(in, &r->cfg, &o->data, r->rejects, ck[0] ? &r->pos : NULL, o->input_offset, r->err, sizeof r->err);
    if (!d)
        goto fail;

    log_info("model=%s params=%zu trainable=%zu threads=%d steps=%ld start=%ld", r->cfg.name, m->n_floats,
             m->n_trainable, omp_get_max_threads(), o->steps, r->opt->step);
    model_loss_opts_t lo = {.ce_weight = (float)o->ce_weight,
                            .mse_weight = (float)o->mse_weight,
                            .ce_reweight = o->ce_reweight,
                            .grad_scale = 1.0f / (float)o->accum};
    model_grad_clear(m); /* the first micro-batch writes the gradients (no zeroing pass) */
    /* from here the weights change only through AdamW (op_table_t.
     * track_weights: CUDA's products take the bf16 copy AdamW keeps) */
    m->ops->track_weights(m->param_mem, m->n_floats);
    int end_of_input = 0, stopped = 0;
    double t_run = now_s();
    while (r->opt->step < o->steps && !end_of_input) {
        double t0 = now_s(), wait = 0;
        double ce_sum = 0, mse_sum = 0, wsum = 0, flops = 0;
        long n_ce = 0, n_mse = 0, tokens = 0, samples = 0;
        int micro = 0, nonfinite = 0;
        task_sums_t tasks = {0};
        double mse_base = 0;
        for (; micro < o->accum; micro++) {
            double w;
            data_batch_t *b = data_next(d, &w);
            wait += w;
            if (!b) {
                end_of_input = 1;
                break;
            }
            model_losses_t L;
            if (model_forward(m, &b->pack.b, &lo, 1, &L, r->err, sizeof r->err) ||
                model_backward(m, r->err, sizeof r->err)) {
                data_release(d, b);
                goto fail;
            }
            if (!isfinite(L.total))
                nonfinite = 1;
            ce_sum += L.ce_sum;
            mse_sum += L.mse_sum;
            n_ce += L.n_ce;
            n_mse += L.n_mse;
            wsum += L.n_ce && L.ce > 0 ? L.ce_sum / L.ce : L.n_ce;
            tokens += b->pack.b.S;
            samples += b->n_info;
            flops += batch_flops(&r->cfg, &b->pack.b);
            add_task_losses(&tasks, m, b);
            if (r->opt->step == 0 && micro == 0) {
                const model_batch_t *bb = &b->pack.b;
                for (int i = 0; i < bb->n_mse; i++) {
                    const float *x0 = bb->x0 + (size_t)bb->mse_lat[i] * bb->lat_dim;
                    const float *ep = bb->eps + (size_t)bb->mse_lat[i] * bb->lat_dim;
                    double s = 0;
                    for (int k = 0; k < bb->lat_dim; k++)
                        s += (double)(ep[k] - x0[k]) * (ep[k] - x0[k]);
                    mse_base += s / bb->lat_dim;
                }
                if (bb->n_mse)
                    mse_base /= bb->n_mse;
            }
            r->pos = b->pos;
            data_release(d, b);
        }
        if (micro == 0)
            break;
        if (micro < o->accum) {
            /* the input ended inside an accumulation window: the last step
             * has fewer micro-batches; its gradients are scaled for accum */
            log_info("end of input after %d of %d micro-batches of the last step", micro, o->accum);
        }
        double ce = n_ce ? ce_sum / (o->ce_reweight ? wsum : n_ce) : 0, mse = n_mse ? mse_sum / n_mse : 0;
        double loss = o->ce_weight * ce + o->mse_weight * mse;
        if (test_nan_attempt())
            loss = NAN;
        optim_report_t rep = {0};
        long step_before = r->opt->step;
        if (nonfinite || !isfinite(loss)) {
            rep.skipped = 1;
            rep.norm = NAN;
        } else {
            optim_update(r->opt, &r->sched, m->param_mem, m->grad_mem, r->ema, &rep);
        }
        model_grad_clear(m);
        if (rep.skipped) {
            r->bad_in_row++;
            log_error("step %ld: loss %g, gradient norm %g: not finite, the step is skipped (%ld in a row)",
                      step_before + 1, loss, rep.norm, r->bad_in_row);
            if (r->bad_in_row >= o->max_bad_steps) {
                snprintf(r->err, sizeof r->err, "%ld non-finite steps in a row (--max-bad-steps): stopping",
                         r->bad_in_row);
                goto fail;
            }
            continue;
        }
        r->bad_in_row = 0;
        long step = r->opt->step;
        double dt = now_s() - t0;
        if (step_before == 0) {
            log_info("sanity: ce=%.4f (a fresh model gives about ln(vocab) = %.4f) mse=%.4f (predicting 0 gives "
                     "%.4f)",
                     ce, log((double)r->cfg.vocab), mse, mse_base);
        }
        if (step % o->log_every == 0 || step == o->steps) {
            json_t *bytask = json_object();
            for (int i = 0; i < tasks.n; i++) {
                json_t *t = json_object();
                if (tasks.n_ce[i])
                    json_object_set_new(t, "ce", json_real(tasks.ce[i] / tasks.n_ce[i]));
                if (tasks.n_mse[i])
                    json_object_set_new(t, "mse", json_real(tasks.mse[i] / tasks.n_mse[i]));
                json_object_set_new(bytask, tasks.name[i], t);
            }
            data_stats_t ds = data_stats(d);
            json_t *line = json_pack(
                "{s:I,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:o,s:f,s:o,s:I,s:f}", "step",
                (json_int_t)step, "loss", loss, "ce", ce, "mse", mse, "lr", rep.lr, "grad_norm", rep.norm, "tokens",
                (json_int_t)tokens, "samples", (json_int_t)samples, "ce_tokens", (json_int_t)n_ce, "mse_tokens",
                (json_int_t)n_mse, "tokens_per_s", tokens / dt, "samples_per_s", samples / dt, "data_wait", wait / dt,
                "mem_mib", rss_mib(), "mfu",
                o->peak_tflops > 0 ? json_real(flops / dt / 1e12 / o->peak_tflops) : json_null(), "tflops",
                flops / dt / 1e12, "tasks", bytask, "rejects", (json_int_t)ds.rejects, "time", now_s() - t_run);
            char *s = line ? json_dumps(line, JSON_COMPACT) : NULL;
            if (s)
                fprintf(r->metrics, "%s\n", s);
            free(s);
            json_decref(line);
            fflush(r->metrics);
            double wt = wall_s();
            tb_scalar(r->tb, "train/loss", step, wt, (float)loss);
            tb_scalar(r->tb, "train/ce", step, wt, (float)ce);
            tb_scalar(r->tb, "train/mse", step, wt, (float)mse);
            tb_scalar(r->tb, "train/lr", step, wt, (float)rep.lr);
            tb_scalar(r->tb, "train/grad_norm", step, wt, (float)rep.norm);
            tb_scalar(r->tb, "perf/tokens_per_s", step, wt, (float)(tokens / dt));
            if (tb_scalar(r->tb, "perf/data_wait", step, wt, (float)(wait / dt)) && !r->tb_failed) {
                /* the run goes on without its TensorBoard file, said once */
                log_error("TensorBoard: %s", tb_error(r->tb));
                r->tb_failed = 1;
            }
            if (!o->quiet)
                fprintf(stderr,
                        "step %ld/%ld | loss %.4f (ce %.4f mse %.4f) | norm %.3f | lr %.3g | %.0f ms | %.0f tok/s | "
                        "wait %.0f%%\n",
                        step, o->steps, loss, ce, mse, rep.norm, rep.lr, dt * 1e3, tokens / dt, 100 * wait / dt);
        }
        int stop = ipc_stop_level() > 0;
        if (o->val && o->val_every && step % o->val_every == 0) {
            val_result_t v;
            if (validate(r, &v))
                goto fail;
            double metric = !strcmp(o->val_metric, "ce") ? v.ce : !strcmp(o->val_metric, "mse") ? v.mse : v.loss;
            int better = metric < r->best;
            json_t *line = json_pack("{s:I,s:f,s:f,s:f,s:I,s:I,s:b}", "val_step", (json_int_t)step, "val_loss", v.loss,
                                     "val_ce", v.ce, "val_mse", v.mse, "val_ce_tokens", (json_int_t)v.n_ce,
                                     "val_mse_tokens", (json_int_t)v.n_mse, "best", better);
            char *s = json_dumps(line, JSON_COMPACT);
            if (s)
                fprintf(r->metrics, "%s\n", s);
            free(s);
            json_decref(line);
            fflush(r->metrics);
            double wt = wall_s();
            tb_scalar(r->tb, "val/loss", step, wt, (float)v.loss);
            tb_scalar(r->tb, "val/ce", step, wt, (float)v.ce);
            tb_scalar(r->tb, "val/mse", step, wt, (float)v.mse);
            log_info("validation step=%ld loss=%.5f ce=%.5f mse=%.5f%s", step, v.loss, v.ce, v.mse,
                     better ? " best" : "");
            if (better) {
                r->best = metric;
                r->best_step = step;
                r->stale_vals = 0;
                if (save_checkpoint(r, step))
                    goto fail;
                char link[1200], target[64];
                snprintf(link, sizeof link, "%s/checkpoints/best", r->dir);
                snprintf(target, sizeof target, "step-%ld", step);
                unlink(link);
                if (symlink(target, link))
                    log_error("%s: %s", link, strerror(errno));
            } else if (o->patience && ++r->stale_vals >= o->patience) {
                log_info("early stop: %ld validations without improvement of %s", r->stale_vals, o->val_metric);
                stop = 1;
            }
        }
        if (o->sample_every && step % o->sample_every == 0)
            sample_step(r, step);
        if ((o->save_every && step % o->save_every == 0 && r->last_saved != step) || (stop && r->last_saved != step))
            if (save_checkpoint(r, step))
                goto fail;
        if (stop) {
            stopped = 1;
            break;
        }
    }
    if (data_error(d)) {
        snprintf(r->err, sizeof r->err, "%s", data_error(d));
        goto fail;
    }
    if (r->sampler && r->opt->step > 0 && (!o->sample_every || r->opt->step % o->sample_every))
        sample_step(r, r->opt->step); /* the end's samples */
    if (r->last_saved != r->opt->step && r->opt->step > 0 && save_checkpoint(r, r->opt->step))
        goto fail;
    data_stats_t ds = data_stats(d);
    log_info("done steps=%ld samples=%llu rejects=%llu too_long=%llu held_back=%llu%s", r->opt->step,
             (unsigned long long)ds.samples, (unsigned long long)ds.rejects, (unsigned long long)ds.too_long,
             (unsigned long long)ds.held_back,
             stopped        ? " (stopped)"
             : end_of_input ? " (end of input)"
                            : "");
    code = EXIT_OK;
    goto out;
oom:
    snprintf(r->err, sizeof r->err, "out of memory");
fail:
    log_error("%s", r->err);
    code = EXIT_FATAL;
out:
    data_stop(&d);
    rd_close(&in);
    tb_close(&r->tb);
    if (r->metrics)
        fclose(r->metrics);
    if (r->rejects)
        fclose(r->rejects);
    if (r->ema)
        r->m->ops->free(r->ema);
    sampler_close(&r->sampler);
    optim_destroy(&r->opt);
    model_destroy(&r->m);
    ae_destroy(&r->ae);
    free(spans);
    return code;
}
