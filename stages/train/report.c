/* report.c — see report.h. */
#include "report.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct series {
    const char *key, *color;
    int n, cap;
    double *x, *y;
} series_t;

static void push(series_t *s, double x, double y)
{
    if (!isfinite(y))
        return;
    if (s->n == s->cap) {
        int c = s->cap ? 2 * s->cap : 256;
        double *nx = realloc(s->x, (size_t)c * sizeof(double)), *ny = realloc(s->y, (size_t)c * sizeof(double));
        if (!nx || !ny) {
            free(nx ? nx : s->x);
            s->x = NULL;
            free(ny ? ny : s->y);
            s->y = NULL;
            s->n = s->cap = 0;
            return;
        }
        s->x = nx, s->y = ny, s->cap = c;
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
}

/* one chart: the series on shared axes */
static void chart(FILE *f, const char *title, series_t *s, int ns)
{
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            x0 = fmin(x0, s[k].x[i]), x1 = fmax(x1, s[k].x[i]);
            y0 = fmin(y0, s[k].y[i]), y1 = fmax(y1, s[k].y[i]);
        }
    fprintf(f, "<h2>%s</h2>\n", title);
    if (!isfinite(x0)) {
        fprintf(f, "<p>no data yet</p>\n");
        return;
    }
    if (x1 == x0)
        x1 = x0 + 1;
    if (y1 == y0)
        y1 = y0 + 1;
    y0 = fmin(y0, 0);
    const int W = 720, H = 300, L = 60, B = 30;
    fprintf(f, "<svg width=\"%d\" height=\"%d\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">\n", W + L + 10,
            H + B + 10);
    fprintf(f, "<rect x=\"%d\" y=\"5\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", L, W, H);
    for (int t = 0; t <= 4; t++) {
        double v = y0 + (y1 - y0) * t / 4;
        int y = 5 + H - H * t / 4;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3g</text>\n", L - 4, y + 4, v);
        double xv = x0 + (x1 - x0) * t / 4;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%.0f</text>\n", L + W * t / 4, H + 20, xv);
    }
    for (int k = 0; k < ns; k++) {
        if (!s[k].n)
            continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", s[k].color);
        for (int i = 0; i < s[k].n; i++)
            fprintf(f, "%.1f,%.1f ", L + W * (s[k].x[i] - x0) / (x1 - x0), 5 + H - H * (s[k].y[i] - y0) / (y1 - y0));
        fprintf(f, "\"/>\n<text x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>\n", L + 8 + 90 * k, 18, s[k].color, s[k].key);
    }
    fprintf(f, "</svg>\n");
}

#define NS        8
#define MAX_TASKS 8
static const char *const task_colors[8] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                           "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

/* text for HTML */
static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* samples/index.jsonl (sample.h) as one table a prompt: the prompt, what it
 * should give, and what each sampled step gave */
static void samples_section(FILE *f, const char *run_dir)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/samples/index.jsonl", run_dir);
    FILE *in = fopen(path, "r");
    if (!in)
        return;
    json_t *rows = json_array();
    char *line = NULL;
    size_t cap = 0;
    int kmax = -1;
    while (getline(&line, &cap, in) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j)
            continue;
        int k = (int)json_integer_value(json_object_get(j, "k"));
        kmax = k > kmax ? k : kmax;
        json_array_append_new(rows, j);
    }
    free(line);
    fclose(in);
    fprintf(f, "<h2>Samples</h2>\n<p>Generated from held-out prompts with the EMA weights as training went "
               "(--sample-every); the latest step is on the right.</p>\n");
    for (int k = 0; k <= kmax; k++) {
        json_t *first = NULL, *j;
        size_t i;
        json_array_foreach(rows, i, j) if (json_integer_value(json_object_get(j, "k")) == k)
        {
            first = j;
            break;
        }
        if (!first)
            continue;
        const char *kind = json_string_value(json_object_get(first, "kind"));
        fprintf(f, "<h3>%d. %s</h3>\n<p><b>prompt:</b> ", k + 1, kind ? kind : "");
        esc(f, json_string_value(json_object_get(first, "prompt")));
        char in_png[1200];
        snprintf(in_png, sizeof in_png, "%s/samples/in-%d.png", run_dir, k);
        FILE *t = fopen(in_png, "r");
        if (t) {
            fclose(t);
            fprintf(f, " <img src=\"samples/in-%d.png\" height=\"96\" style=\"vertical-align:middle\">", k);
        }
        const char *ref = json_string_value(json_object_get(first, "reference"));
        const char *ref_img = json_string_value(json_object_get(first, "ref_image"));
        if (ref || ref_img) {
            fprintf(f, "<br><b>reference:</b> ");
            if (ref)
                esc(f, ref);
            if (ref_img) {
                fprintf(f, "<img src=\"");
                esc(f, ref_img);
                fprintf(f, "\" height=\"96\" style=\"vertical-align:middle\">");
            }
        }
        fprintf(f, "</p>\n<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\"><tr>");
        json_array_foreach(rows, i, j) if (json_integer_value(json_object_get(j, "k")) == k) fprintf(
            f, "<th>step %lld</th>", (long long)json_integer_value(json_object_get(j, "step")));
        fprintf(f, "</tr><tr>");
        json_array_foreach(rows, i, j) if (json_integer_value(json_object_get(j, "k")) == k)
        {
            const char *img = json_string_value(json_object_get(j, "image"));
            const char *txt = json_string_value(json_object_get(j, "text"));
            const char *er = json_string_value(json_object_get(j, "error"));
            fprintf(f, "<td style=\"vertical-align:top; max-width:16em\">");
            if (img) {
                fprintf(f, "<img src=\"");
                esc(f, img);
                fprintf(f, "\" height=\"128\">");
            } else if (txt) {
                esc(f, txt);
            } else if (er) {
                fprintf(f, "<i>");
                esc(f, er);
                fprintf(f, "</i>");
            }
            fprintf(f, "</td>");
        }
        fprintf(f, "</tr></table>\n");
    }
    json_decref(rows);
}

int report_write(const char *run_dir, const char *title, char *err, size_t errlen)
{
    char path[1100], tmp[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *in = fopen(path, "r");
    if (!in) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    series_t s[NS] = {{"loss", "#1f77b4"},     {"ce", "#ff7f0e"},     {"mse", "#2ca02c"},
                      {"val loss", "#d62728"}, {"val ce", "#9467bd"}, {"val mse", "#8c564b"},
                      {"lr", "#1f77b4"},       {"tokens/s", "#2ca02c"}};
    /* per task: CE and MSE series, named by the task */
    series_t tce[MAX_TASKS] = {0}, tmse[MAX_TASKS] = {0};
    char tname[MAX_TASKS][2][40];
    int nt = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, in) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j)
            continue;
        json_t *st = json_object_get(j, "step"), *vs = json_object_get(j, "val_step");
        if (json_is_integer(st)) {
            double x = (double)json_integer_value(st);
            push(&s[0], x, json_number_value(json_object_get(j, "loss")));
            if (json_integer_value(json_object_get(j, "ce_tokens")) > 0)
                push(&s[1], x, json_number_value(json_object_get(j, "ce")));
            if (json_integer_value(json_object_get(j, "mse_tokens")) > 0)
                push(&s[2], x, json_number_value(json_object_get(j, "mse")));
            push(&s[6], x, json_number_value(json_object_get(j, "lr")));
            push(&s[7], x, json_number_value(json_object_get(j, "tokens_per_s")));
            const char *tk;
            json_t *tv;
            json_object_foreach(json_object_get(j, "tasks"), tk, tv)
            {
                int k = 0;
                while (k < nt && strcmp(tname[k][0] + 3, tk))
                    k++;
                if (k == nt) {
                    if (nt == MAX_TASKS)
                        continue;
                    snprintf(tname[k][0], sizeof tname[k][0], "ce %s", tk);
                    snprintf(tname[k][1], sizeof tname[k][1], "mse %s", tk);
                    tce[k].key = tname[k][0], tmse[k].key = tname[k][1];
                    tce[k].color = tmse[k].color = task_colors[k % 8];
                    nt++;
                }
                json_t *ce = json_object_get(tv, "ce"), *mse = json_object_get(tv, "mse");
                if (ce)
                    push(&tce[k], x, json_number_value(ce));
                if (mse)
                    push(&tmse[k], x, json_number_value(mse));
            }
        } else if (json_is_integer(vs)) {
            double x = (double)json_integer_value(vs);
            push(&s[3], x, json_number_value(json_object_get(j, "val_loss")));
            push(&s[4], x, json_number_value(json_object_get(j, "val_ce")));
            push(&s[5], x, json_number_value(json_object_get(j, "val_mse")));
        }
        json_decref(j);
    }
    free(line);
    fclose(in);
    snprintf(path, sizeof path, "%s/report.html", run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = -1;
    if (!f) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    fprintf(f,
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>%s</title></head>\n<body "
            "style=\"font-family: sans-serif\">\n<h1>%s</h1>\n<p>From metrics.jsonl; one point per logged step.</p>\n",
            title, title);
    chart(f, "Training loss (total, next-token CE, flow-matching MSE)", s, 3);
    chart(f, "Next-token CE by task", tce, nt);
    chart(f, "Flow-matching MSE by task", tmse, nt);
    chart(f, "Validation", s + 3, 3);
    chart(f, "Learning rate", s + 6, 1);
    chart(f, "Throughput (tokens/s)", s + 7, 1);
    samples_section(f, run_dir);
    fprintf(f, "</body></html>\n");
    if (fclose(f) || rename(tmp, path)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    for (int k = 0; k < NS; k++) {
        free(s[k].x);
        free(s[k].y);
    }
    for (int k = 0; k < nt; k++) {
        free(tce[k].x), free(tce[k].y);
        free(tmse[k].x), free(tmse[k].y);
    }
    return rc;
}
