/* batch.c — see batch.h. Threads take line numbers from a shared counter;
 * the caller writes the lines in order once the batch is done. */
#include "batch.h"

#include "../../ipc/stream.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const synth_ctx_t *proto;
    int f, n;
    uint64_t first;
    char **lines;
    int next;    // atomic: the next line to take, relative to first
    int failed;  // atomic: set by the first failure
    int stopped; // atomic
    char err[SYNTH_ERR_LEN];
} job_t;

static void *work(void *arg)
{
    job_t *job = arg;
    char err[SYNTH_ERR_LEN];
    synth_ctx_t c = *job->proto;
    c.rgb = malloc((size_t)c.px * c.px * 3);
    if (!c.rgb) {
        if (!__atomic_exchange_n(&job->failed, 1, __ATOMIC_SEQ_CST))
            snprintf(job->err, sizeof job->err, "out of memory for a %dx%d image", c.px, c.px);
        return NULL;
    }
    for (;;) {
        if (__atomic_load_n(&job->failed, __ATOMIC_SEQ_CST))
            break;
        if (ipc_stop_level() > 0) {
            __atomic_store_n(&job->stopped, 1, __ATOMIC_SEQ_CST);
            break;
        }
        int k = __atomic_fetch_add(&job->next, 1, __ATOMIC_SEQ_CST);
        if (k >= job->n)
            break;
        json_t *line = NULL;
        int rc = synth_formats[job->f].make(&c, job->f, job->first + (uint64_t)k, &line, err);
        if (!rc && !(job->lines[k] = json_dumps(line, JSON_COMPACT))) {
            snprintf(err, sizeof err, "out of memory");
            rc = -1;
        }
        json_decref(line);
        if (rc) {
            if (!__atomic_exchange_n(&job->failed, 1, __ATOMIC_SEQ_CST))
                snprintf(job->err, sizeof job->err, "%s line %llu: %s", synth_formats[job->f].file,
                         (unsigned long long)(job->first + (uint64_t)k), err);
            break;
        }
    }
    free(c.rgb);
    return NULL;
}

int synth_batch(const synth_ctx_t *proto, int f, uint64_t first, int n, int threads, char **lines, char *err)
{
    job_t job = {proto, f, n, first, lines, 0, 0, 0, ""};
    memset(lines, 0, sizeof(char *) * (size_t)n);
    pthread_t tid[SYNTH_MAX_THREADS];
    int started = 0;
    threads = threads < 1 ? 1 : threads > SYNTH_MAX_THREADS ? SYNTH_MAX_THREADS : threads;
    threads = threads > n ? n : threads;
    // the calling thread is one of the workers
    for (int t = 1; t < threads; t++)
        if (pthread_create(&tid[started], NULL, work, &job) == 0)
            started++;
    work(&job);
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    if (job.failed || job.stopped) {
        for (int k = 0; k < n; k++)
            free(lines[k]), lines[k] = NULL;
        if (job.failed)
            snprintf(err, SYNTH_ERR_LEN, "%s", job.err);
        return job.failed ? -1 : 1;
    }
    return 0;
}
