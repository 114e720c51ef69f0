/* transform.c — see transform.h. */
#include "transform.h"

#include "log.h"

static void flush_out(void *w)
{
    char err[REC_ERR_LEN];
    (void)wr_flush(w, err); // a failed output is reported by the next wr_put
}

int stage_transform(stage_t *st, stage_sample_fn fn, void *arg, stage_counts_t *counts)
{
    char err[REC_ERR_LEN], why[REC_ERR_LEN];
    int status = EXIT_OK;
    static const char *const dash[] = {"-"};
    rd_t *rd = rd_open(st->ninputs ? st->inputs : dash, st->ninputs ? st->ninputs : 1, &st->so, err);
    wr_t *w = rd ? wr_open(st->output, &st->so, err) : NULL;
    progress_t *prog = progress_new(st->progress);
    *counts = (stage_counts_t){0};
    if (!rd || !w) {
        log_error("%s", err);
        status = EXIT_FATAL;
        goto done;
    }
    rd_set_idle(rd, flush_out, w);
    rec_t *r;
    int rc;
    while ((rc = rd_next(rd, &r, err)) != 0) {
        if (rc == -2) {
            log_error("%s", err);
            status = EXIT_FATAL;
            break;
        }
        if (rc == -1 || rc == 2) {
            log_error("%s", err);
            if (st->strict) {
                rec_destroy(&r);
                status = EXIT_CHECK;
                break;
            }
            if (rc == -1)
                continue;
        }
        if (r->type == REC_SAMPLE) {
            counts->samples++;
            int t = fn(arg, r, why);
            if (t < 0) {
                log_error("out of memory");
                rec_destroy(&r);
                status = EXIT_FATAL;
                break;
            }
            if (t > 0) {
                char id[128];
                log_error("%s: %s", rec_id(r, id, sizeof id), why);
                rec_t *rj = rec_new_reject(r, st->name, why);
                rec_destroy(&r);
                if (!rj) {
                    log_error("out of memory");
                    status = EXIT_FATAL;
                    break;
                }
                r = rj;
                counts->rejects++;
                if (st->strict) {
                    rec_destroy(&r);
                    status = EXIT_CHECK;
                    break;
                }
            }
        } else if (r->type == REC_REJECT) {
            counts->rejects++;
        }
        rc = wr_put(w, r, err);
        rec_destroy(&r);
        if (rc) {
            log_error("%s", err);
            status = EXIT_FATAL;
            break;
        }
        rd_stats_t s = rd_stats(rd);
        progress_update(prog, s.records, s.bytes, counts->rejects);
    }
done:
    // a failed run leaves no partial output file behind
    if (status == EXIT_FATAL)
        wr_abort(&w);
    else if (w && wr_close(&w, err)) {
        log_error("%s", err);
        status = EXIT_FATAL;
    }
    progress_done(&prog);
    rd_close(&rd);
    return status;
}
