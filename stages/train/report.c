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

int report_write(const char *run_dir, const char *title, char *err, size_t errlen)
{
    char path[1100], tmp[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *in = fopen(path, "r");
    if (!in) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    series_t s[6] = {{"loss", "#1f77b4"},     {"ce", "#ff7f0e"},     {"mse", "#2ca02c"},
                     {"val loss", "#d62728"}, {"val ce", "#9467bd"}, {"val mse", "#8c564b"}};
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
    chart(f, "Validation", s + 3, 3);
    fprintf(f, "</body></html>\n");
    if (fclose(f) || rename(tmp, path)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    for (int k = 0; k < 6; k++) {
        free(s[k].x);
        free(s[k].y);
    }
    return rc;
}
