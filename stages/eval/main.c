/* bagel-eval — text metrics of predictions against references (docs/eval.md).
 *
 *   bagel-eval [--metrics bleu,rouge,meteor] [options] FILE...   JSON lines
 *   bagel-eval [options] --in EP                                 records
 *
 * Scores every row (one prediction, one or more references), prints a table
 * of corpus scores on stdout, and writes --report (corpus scores, the BLEU
 * signature) and --per-sample (a JSON line per id). A row that breaks the
 * input rules is refused with a one-line reason and counted; --strict makes
 * the first one fatal. With --references, predictions and references come
 * from separate files joined by id; an id without a prediction is reported
 * and counted as missing. */
#include "../common/log.h"
#include "../common/stage.h"
#include "metrics.h"
#include "rows.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char help[] =
    "usage: bagel-eval [options] FILE...   (JSON lines {\"id\",\"prediction\",\"references\":[...]}; - is stdin)\n"
    "       bagel-eval [options] --in EP   (sample records whose target segment has \"generated\" text)\n"
    "Score predictions against references: BLEU (sacrebleu), ROUGE (rouge-score), METEOR (NLTK).\n"
    "      --metrics LIST        any of bleu,rouge,meteor (default all three)\n"
    "      --report FILE         corpus scores and the BLEU signature as JSON\n"
    "      --per-sample FILE     a JSON line per id: bleu (sentence BLEU, 0-100), rouge1, rouge2,\n"
    "                            rougeL, rougeLsum (F, 0-1), meteor (0-1)\n"
    "      --references FILE     JSON lines {\"id\",\"references\"}: the references of the predictions, by id\n"
    "      --bleu-tokenize T     13a (default), zh, intl, char, none\n"
    "      --bleu-lowercase      lowercase before tokenizing\n"
    "      --bleu-smooth M       exp (default), floor, add-k, none;  --bleu-smooth-value X\n"
    "      --rouge-stem          Porter-stem tokens longer than 3 (rouge-score's use_stemmer)\n"
    "      --rouge-multi         ROUGE against the best reference (score_multi), not the first\n"
    "      --meteor-tokenize T   ws (default: whitespace tokens) or 13a (sacrebleu's tokens)\n"
    "      --wordnet DIR         WordNet 3.0 files (default $BAGEL_WORDNET or /usr/share/wordnet)\n"
    "      --max-chars N         longest text accepted, bytes (default 1M)\n";

enum {
    OPT_METRICS = 1, OPT_REPORT, OPT_PER_SAMPLE, OPT_REFERENCES, OPT_BLEU_TOK, OPT_BLEU_LC, OPT_BLEU_SMOOTH,
    OPT_BLEU_SMOOTH_VALUE, OPT_ROUGE_STEM, OPT_ROUGE_MULTI, OPT_METEOR_TOK, OPT_WORDNET, OPT_MAX_CHARS,
};

typedef struct {
    bool bleu, rouge, meteor;
    bleu_opts_t bo;
    bool rouge_stem, rouge_multi;
    meteor_opts_t mo;
    const char *wordnet, *report, *per_sample, *references;
    size_t max_chars;
} opts_t;

typedef struct {
    opts_t o;
    bleu_t *bleu;
    rouge_t *rouge;
    wordnet_t *wn;
    meteor_t *meteor;
    FILE *rows_out;
    char rows_tmp[4200];
    // totals
    uint64_t scored, rejected, missing;
    bleu_stats_t corpus;
    int nrefs; // -2 none yet, -1 varying
    double rouge_sum[ROUGE_TYPES][3], meteor_sum;
    double t_bleu, t_rouge, t_meteor;
    bool strict, failed;
    // --references: id -> row
    ev_intern_t *ref_ids;
    ev_row_t *ref_rows;
    uint8_t *ref_used;
    size_t nref_rows;
} job_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_metrics(opts_t *o, const char *arg)
{
    o->bleu = o->rouge = o->meteor = false;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", arg);
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "bleu") == 0)
            o->bleu = true;
        else if (strcmp(t, "rouge") == 0)
            o->rouge = true;
        else if (strcmp(t, "meteor") == 0)
            o->meteor = true;
        else {
            log_error("--metrics: \"%s\": expected bleu, rouge or meteor", t);
            return -1;
        }
    }
    if (!o->bleu && !o->rouge && !o->meteor) {
        log_error("--metrics: empty: expected bleu, rouge or meteor");
        return -1;
    }
    return 0;
}

/* A refused row: one line, counted; fatal under --strict. */
static void refuse(job_t *j, const char *where, const char *why)
{
    log_error("%s: %s", where, why);
    j->rejected++;
    if (j->strict)
        j->failed = true;
}

static int write_row(job_t *j, const ev_row_t *row, double bleu, const rouge_scores_t *rs, double meteor)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(row->id));
    if (j->o.bleu)
        json_object_set_new(o, "bleu", json_real(bleu));
    if (j->o.rouge)
        for (int k = 0; k < ROUGE_TYPES; k++)
            json_object_set_new(o, rouge_type_name(k), json_real(rs->s[k].f));
    if (j->o.meteor)
        json_object_set_new(o, "meteor", json_real(meteor));
    char *line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(o);
    int rc = line && fprintf(j->rows_out, "%s\n", line) > 0 ? 0 : -1;
    free(line);
    return rc;
}

/* Score one row: 0; -1 fatal (out of memory, output failed); 1 refused. */
static int score_row(job_t *j, const char *where, ev_row_t *row)
{
    char err[EV_ERR_LEN];
    const char *const *refs = (const char *const *)row->refs;
    double bleu = 0, meteor = 0, t0;
    rouge_scores_t rs = {0};
    if (j->o.bleu) {
        t0 = now();
        bleu_stats_t st;
        if (bleu_segment(j->bleu, row->pred, row->pn, refs, row->rn, row->nrefs, &st, err))
            goto fatal;
        bleu_opts_t so = j->o.bo;
        so.effective_order = true; // sacrebleu.sentence_bleu
        bleu_score_t s;
        bleu_compute(&so, &st, &s);
        bleu = s.score;
        bleu_stats_add(&j->corpus, &st);
        j->t_bleu += now() - t0;
    }
    if (j->o.rouge) {
        t0 = now();
        int rc = j->o.rouge_multi ? rouge_score_multi(j->rouge, refs, row->rn, row->nrefs, row->pred, row->pn, &rs, err)
                                  : rouge_score(j->rouge, refs[0], row->rn[0], row->pred, row->pn, &rs, err);
        if (rc) {
            if (strstr(err, "out of memory"))
                goto fatal;
            char msg[EV_ERR_LEN + 120], pid[96];
            snprintf(msg, sizeof msg, "id %s: %s", rec_printable(pid, sizeof pid, row->id, strlen(row->id), 64), err);
            refuse(j, where, msg);
            return 1;
        }
        j->t_rouge += now() - t0;
    }
    if (j->o.meteor) {
        t0 = now();
        if (meteor_score(j->meteor, row->pred, row->pn, refs, row->rn, row->nrefs, &meteor, err))
            goto fatal;
        j->t_meteor += now() - t0;
    }
    for (int k = 0; k < ROUGE_TYPES; k++) {
        j->rouge_sum[k][0] += rs.s[k].p, j->rouge_sum[k][1] += rs.s[k].r, j->rouge_sum[k][2] += rs.s[k].f;
    }
    j->meteor_sum += meteor;
    j->nrefs = j->nrefs == -2 || j->nrefs == row->nrefs ? row->nrefs : -1;
    j->scored++;
    if (j->rows_out && write_row(j, row, bleu, &rs, meteor)) {
        log_error("%s: %s", j->o.per_sample, strerror(errno));
        return -1;
    }
    return 0;
fatal:
    log_error("%s: %s", where, err);
    return -1;
}

/* A row read from a JSON line or a record: join its references, then score. */
static int take_row(job_t *j, const char *where, ev_row_t *row)
{
    if (j->ref_ids) {
        uint32_t k = ev_intern_find(j->ref_ids, row->id, strlen(row->id));
        char msg[300], pid[96];
        rec_printable(pid, sizeof pid, row->id, strlen(row->id), 64);
        if (row->nrefs == 0 && k == UINT32_MAX) {
            snprintf(msg, sizeof msg, "id %s: no references (not in %.64s)", pid, j->o.references);
            refuse(j, where, msg);
            return 1;
        }
        if (k != UINT32_MAX) {
            if (j->ref_used[k]) {
                snprintf(msg, sizeof msg, "id %s: a second prediction (one per id expected)", pid);
                refuse(j, where, msg);
                return 1;
            }
            j->ref_used[k] = 1;
            if (row->nrefs == 0)
                ev_row_take_refs(row, &j->ref_rows[k]);
        }
    }
    return score_row(j, where, row);
}

static int load_references(job_t *j)
{
    FILE *f = fopen(j->o.references, "r");
    if (!f) {
        log_error("%s: %s", j->o.references, strerror(errno));
        return -1;
    }
    j->ref_ids = ev_intern_new();
    char *line = NULL, where[4200], err[EV_ERR_LEN];
    size_t cap = 0, lineno = 0, alloc = 0;
    ssize_t n;
    int rc = j->ref_ids ? 0 : -1;
    while (!rc && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)n)
            continue;
        ev_row_t row;
        snprintf(where, sizeof where, "%s:%zu", j->o.references, lineno);
        if (ev_row_from_json(line, (size_t)n, j->o.max_chars, false, true, &row, err)) {
            refuse(j, where, err);
            continue;
        }
        uint32_t k = ev_intern(j->ref_ids, row.id, strlen(row.id));
        if (k == UINT32_MAX) {
            ev_row_free(&row);
            rc = -1;
            break;
        }
        if (k < j->nref_rows) {
            char pid[96];
            snprintf(err, sizeof err, "id %s: given twice (one row per id expected)",
                     rec_printable(pid, sizeof pid, row.id, strlen(row.id), 64));
            refuse(j, where, err);
            ev_row_free(&row);
            continue;
        }
        if (k >= alloc) {
            alloc = alloc ? alloc * 2 : 1024;
            ev_row_t *rows = realloc(j->ref_rows, alloc * sizeof *rows);
            uint8_t *used = rows ? realloc(j->ref_used, alloc) : NULL;
            if (rows)
                j->ref_rows = rows;
            if (!used) {
                ev_row_free(&row);
                rc = -1;
                break;
            }
            j->ref_used = used;
        }
        j->ref_rows[k] = row, j->ref_used[k] = 0;
        j->nref_rows = k + 1;
    }
    if (rc)
        log_error("%s: out of memory", j->o.references);
    free(line);
    fclose(f);
    return rc;
}

static int run_json(job_t *j, const char *path)
{
    bool std = strcmp(path, "-") == 0;
    FILE *f = std ? stdin : fopen(path, "r");
    if (!f) {
        log_error("%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL, where[4200], err[EV_ERR_LEN];
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int rc = 0;
    while (!rc && !j->failed && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)n)
            continue; // blank lines carry nothing
        snprintf(where, sizeof where, "%s:%zu", std ? "stdin" : path, lineno);
        ev_row_t row;
        if (ev_row_from_json(line, (size_t)n, j->o.max_chars, true, !j->ref_ids, &row, err)) {
            refuse(j, where, err);
            continue;
        }
        rc = take_row(j, where, &row) < 0 ? -1 : 0;
        ev_row_free(&row);
    }
    if (!rc && ferror(f)) {
        log_error("%s: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    if (!std)
        fclose(f);
    return rc;
}

static int run_records(job_t *j, stage_t *st)
{
    char err[REC_ERR_LEN], ev_err[EV_ERR_LEN];
    rd_t *rd = rd_open(st->inputs, st->ninputs, &st->so, err);
    if (!rd) {
        log_error("%s", err);
        return -1;
    }
    rec_t *r;
    int rc, status = 0;
    uint64_t n = 0;
    while (!status && !j->failed && (rc = rd_next(rd, &r, err)) != 0) {
        if (rc == -2) {
            log_error("%s", err);
            status = -1;
            break;
        }
        if (rc == -1) {
            refuse(j, "input", err);
            continue;
        }
        n++;
        char where[64], id[128];
        snprintf(where, sizeof where, "record %llu", (unsigned long long)n);
        if (r->type == REC_SAMPLE && rc == 1) {
            ev_row_t row;
            if (ev_row_from_rec(r, j->o.max_chars, &row, ev_err))
                refuse(j, where, ev_err);
            else {
                status = take_row(j, where, &row) < 0 ? -1 : 0;
                ev_row_free(&row);
            }
        } else if (r->type == REC_REJECT || rc == 2) {
            char why[REC_ERR_LEN + 128];
            const msgpack_object *e = rec_get(r, "error");
            snprintf(why, sizeof why, "id %s: a reject%s%.*s", rec_id(r, id, sizeof id), e ? ": " : "",
                     e && e->type == MSGPACK_OBJECT_STR ? (int)e->via.str.size : 0,
                     e && e->type == MSGPACK_OBJECT_STR ? e->via.str.ptr : "");
            refuse(j, where, rc == 2 ? err : why);
        }
        rec_destroy(&r);
    }
    rd_close(&rd);
    return status;
}

/* Write path through a temporary name, fsynced and renamed. */
static FILE *open_tmp(const char *path, char *tmp, size_t size)
{
    snprintf(tmp, size, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        log_error("%s: %s", path, strerror(errno));
    return f;
}

static int close_tmp(FILE *f, const char *tmp, const char *path, bool keep)
{
    int rc = fflush(f) || fsync(fileno(f)) ? -1 : 0;
    rc |= fclose(f);
    if (rc || !keep || rename(tmp, path)) {
        if (keep)
            log_error("%s: %s", path, strerror(errno));
        unlink(tmp);
        return keep ? -1 : 0;
    }
    return 0;
}

static int write_report(job_t *j, const bleu_score_t *bs, const char *sig, const char *line)
{
    json_t *o = json_object();
    json_object_set_new(o, "v", json_integer(1));
    json_object_set_new(o, "rows", json_integer((json_int_t)j->scored));
    json_object_set_new(o, "rejected", json_integer((json_int_t)j->rejected));
    json_object_set_new(o, "missing", json_integer((json_int_t)j->missing));
    double n = j->scored ? (double)j->scored : 1;
    if (j->o.bleu) {
        json_t *b = json_object(), *p = json_array(), *c = json_array(), *t = json_array();
        json_object_set_new(b, "score", json_real(bs->score));
        for (int k = 0; k < BLEU_ORDER; k++) {
            json_array_append_new(p, json_real(bs->precisions[k]));
            json_array_append_new(c, json_real(bs->counts[k]));
            json_array_append_new(t, json_real(bs->totals[k]));
        }
        json_object_set_new(b, "precisions", p);
        json_object_set_new(b, "counts", c);
        json_object_set_new(b, "totals", t);
        json_object_set_new(b, "bp", json_real(bs->bp));
        json_object_set_new(b, "ratio", json_real(bs->ratio));
        json_object_set_new(b, "sys_len", json_integer(bs->sys_len));
        json_object_set_new(b, "ref_len", json_integer(bs->ref_len));
        json_object_set_new(b, "signature", json_string(sig));
        json_object_set_new(b, "format", json_string(line));
        json_object_set_new(o, "bleu", b);
    }
    if (j->o.rouge) {
        for (int k = 0; k < ROUGE_TYPES; k++) {
            json_t *r = json_object();
            json_object_set_new(r, "precision", json_real(j->rouge_sum[k][0] / n));
            json_object_set_new(r, "recall", json_real(j->rouge_sum[k][1] / n));
            json_object_set_new(r, "fmeasure", json_real(j->rouge_sum[k][2] / n));
            json_object_set_new(o, rouge_type_name(k), r);
        }
        json_object_set_new(o, "rouge_stem", json_boolean(j->o.rouge_stem));
        json_object_set_new(o, "rouge_multi", json_boolean(j->o.rouge_multi));
    }
    if (j->o.meteor) {
        json_object_set_new(o, "meteor", json_real(j->meteor_sum / n));
        json_object_set_new(o, "meteor_tokenize", json_string(j->o.mo.tok == METEOR_TOK_13A ? "13a" : "ws"));
    }
    char tmp[4200];
    FILE *f = open_tmp(j->o.report, tmp, sizeof tmp);
    if (!f) {
        json_decref(o);
        return -1;
    }
    int rc = json_dumpf(o, f, JSON_INDENT(1) | JSON_REAL_PRECISION(17)) || fputc('\n', f) == EOF ? -1 : 0;
    json_decref(o);
    return close_tmp(f, tmp, j->o.report, rc == 0) || rc;
}

static int finish(job_t *j)
{
    for (size_t k = 0; k < j->nref_rows; k++)
        if (!j->ref_used[k] && j->ref_rows[k].id) {
            char pid[96];
            log_error("%s: id %s: no prediction", j->o.references,
                      rec_printable(pid, sizeof pid, j->ref_rows[k].id, strlen(j->ref_rows[k].id), 64));
            j->missing++;
        }
    bleu_score_t bs = {0};
    char sig[256] = "", line[512] = "";
    if (j->o.bleu) {
        bleu_compute(&j->o.bo, &j->corpus, &bs);
        bleu_signature(&j->o.bo, j->nrefs < 0 ? -1 : j->nrefs, sig, sizeof sig);
        bleu_format(&bs, sig, line, sizeof line);
    }
    double n = j->scored ? (double)j->scored : 1;
    printf("%-10s %10s\n", "metric", "score");
    if (j->o.bleu)
        printf("%-10s %10.2f\n", "BLEU", bs.score);
    if (j->o.rouge)
        for (int k = 0; k < ROUGE_TYPES; k++)
            printf("%-10s %10.4f\n", rouge_type_name(k), j->rouge_sum[k][2] / n);
    if (j->o.meteor)
        printf("%-10s %10.4f\n", "METEOR", j->meteor_sum / n);
    if (j->o.bleu)
        printf("%s\n", line);
    printf("rows %llu scored, %llu refused, %llu without a prediction\n", (unsigned long long)j->scored,
           (unsigned long long)j->rejected, (unsigned long long)j->missing);
    if (fflush(stdout) != 0) {
        log_error("stdout: %s", strerror(errno));
        return -1;
    }
    if (j->o.report && write_report(j, &bs, sig, line))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    stage_t st;
    stage_init(&st, "bagel-eval");
    static const struct option longopts[] = {
        STAGE_LONGOPTS,
        {"metrics", required_argument, 0, OPT_METRICS},
        {"report", required_argument, 0, OPT_REPORT},
        {"per-sample", required_argument, 0, OPT_PER_SAMPLE},
        {"references", required_argument, 0, OPT_REFERENCES},
        {"bleu-tokenize", required_argument, 0, OPT_BLEU_TOK},
        {"bleu-lowercase", no_argument, 0, OPT_BLEU_LC},
        {"bleu-smooth", required_argument, 0, OPT_BLEU_SMOOTH},
        {"bleu-smooth-value", required_argument, 0, OPT_BLEU_SMOOTH_VALUE},
        {"rouge-stem", no_argument, 0, OPT_ROUGE_STEM},
        {"rouge-multi", no_argument, 0, OPT_ROUGE_MULTI},
        {"meteor-tokenize", required_argument, 0, OPT_METEOR_TOK},
        {"wordnet", required_argument, 0, OPT_WORDNET},
        {"max-chars", required_argument, 0, OPT_MAX_CHARS},
        {0, 0, 0, 0},
    };
    job_t j = {.nrefs = -2};
    opts_t *o = &j.o;
    o->bleu = o->rouge = o->meteor = true;
    bleu_opts_default(&o->bo);
    meteor_opts_default(&o->mo);
    o->max_chars = 1u << 20;
    const char *files[STAGE_MAX_INPUTS];
    int nfiles = 0, c;
    unsigned long long v;
    char *end;
    while ((c = getopt_long(argc, argv, STAGE_SHORTOPTS, longopts, NULL)) != -1) {
        if (c != OPT_IN && stage_option(&st, c, optarg, help))
            continue;
        switch (c) {
        case OPT_IN: stage_option(&st, c, optarg, help); break;
        case OPT_METRICS:
            if (parse_metrics(o, optarg))
                return EXIT_USAGE;
            break;
        case OPT_REPORT: o->report = optarg; break;
        case OPT_PER_SAMPLE: o->per_sample = optarg; break;
        case OPT_REFERENCES: o->references = optarg; break;
        case OPT_BLEU_TOK:
            if (bleu_tok_parse(optarg, &o->bo.tok)) {
                log_error("--bleu-tokenize: \"%s\": expected 13a, zh, intl, char or none", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_BLEU_LC: o->bo.lowercase = true; break;
        case OPT_BLEU_SMOOTH:
            if (bleu_smooth_parse(optarg, &o->bo.smooth)) {
                log_error("--bleu-smooth: \"%s\": expected exp, floor, add-k or none", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_BLEU_SMOOTH_VALUE:
            errno = 0;
            o->bo.smooth_value = strtod(optarg, &end);
            if (errno || *end || end == optarg || !(o->bo.smooth_value >= 0 && o->bo.smooth_value < 1e6)) {
                log_error("--bleu-smooth-value: \"%s\": a number from 0 expected", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_ROUGE_STEM: o->rouge_stem = true; break;
        case OPT_ROUGE_MULTI: o->rouge_multi = true; break;
        case OPT_METEOR_TOK:
            if (strcmp(optarg, "ws") == 0)
                o->mo.tok = METEOR_TOK_WS;
            else if (strcmp(optarg, "13a") == 0)
                o->mo.tok = METEOR_TOK_13A;
            else {
                log_error("--meteor-tokenize: \"%s\": expected ws or 13a", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_WORDNET: o->wordnet = optarg; break;
        case OPT_MAX_CHARS:
            if (stage_parse_range("max-chars", optarg, 1, 1ull << 30, &v))
                return EXIT_USAGE;
            o->max_chars = (size_t)v;
            break;
        default: return EXIT_USAGE;
        }
    }
    for (int i = optind; i < argc && nfiles < STAGE_MAX_INPUTS; i++)
        files[nfiles++] = argv[i];
    if (nfiles && st.ninputs) {
        log_error("FILE and --in: give JSON-line files or a record input, not both");
        return EXIT_USAGE;
    }
    if (!nfiles && !st.ninputs)
        files[nfiles++] = "-";
    j.strict = st.strict;
    char err[EV_ERR_LEN];
    int status = EXIT_OK;
    if (o->meteor && !(j.wn = wordnet_open(o->wordnet, err))) {
        log_error("%s", err);
        return EXIT_FATAL;
    }
    if ((o->bleu && !(j.bleu = bleu_new(&o->bo))) || (o->rouge && !(j.rouge = rouge_new(o->rouge_stem))) ||
        (o->meteor && !(j.meteor = meteor_new(&o->mo, j.wn)))) {
        log_error("out of memory");
        status = EXIT_FATAL;
        goto done;
    }
    if (o->references && load_references(&j)) {
        status = EXIT_FATAL;
        goto done;
    }
    if (o->per_sample && !(j.rows_out = open_tmp(o->per_sample, j.rows_tmp, sizeof j.rows_tmp))) {
        status = EXIT_FATAL;
        goto done;
    }
    double t0 = now();
    if (st.ninputs)
        status = run_records(&j, &st) ? EXIT_FATAL : EXIT_OK;
    for (int i = 0; i < nfiles && status == EXIT_OK && !j.failed; i++)
        status = run_json(&j, files[i]) ? EXIT_FATAL : EXIT_OK;
    if (j.rows_out && close_tmp(j.rows_out, j.rows_tmp, o->per_sample, status == EXIT_OK && !j.failed))
        status = EXIT_FATAL;
    j.rows_out = NULL;
    if (status == EXIT_OK && j.failed)
        status = EXIT_CHECK;
    if (status == EXIT_OK && finish(&j))
        status = EXIT_FATAL;
    if (status == EXIT_OK && j.strict && j.missing)
        status = EXIT_CHECK;
    log_info("rows=%llu refused=%llu missing=%llu seconds=%.3f bleu_s=%.3f rouge_s=%.3f meteor_s=%.3f",
             (unsigned long long)j.scored, (unsigned long long)j.rejected, (unsigned long long)j.missing, now() - t0,
             j.t_bleu, j.t_rouge, j.t_meteor);
done:
    if (j.rows_out)
        close_tmp(j.rows_out, j.rows_tmp, o->per_sample, false);
    bleu_destroy(&j.bleu);
    rouge_destroy(&j.rouge);
    meteor_destroy(&j.meteor);
    wordnet_close(&j.wn);
    for (size_t k = 0; k < j.nref_rows; k++)
        ev_row_free(&j.ref_rows[k]);
    free(j.ref_rows);
    free(j.ref_used);
    ev_intern_destroy(&j.ref_ids);
    return stage_exit(status);
}
