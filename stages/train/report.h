/* report.h — report.html of a run directory: loss curves (total, CE, MSE,
 * validation) as inline SVG, drawn from metrics.jsonl, so that a run can be
 * looked at with nothing but a browser. */
#ifndef BAGEL_TRAIN_REPORT_H
#define BAGEL_TRAIN_REPORT_H

#include <stddef.h>

/* Reads run_dir/metrics.jsonl, writes run_dir/report.html (tmp + rename).
 * 0, or -1 with err. */
int report_write(const char *run_dir, const char *title, char *err, size_t errlen);

#endif
