/* stage.h — what every stage shares: its common options, signal handling and
 * exit codes.
 *
 * Exit codes (every stage):
 *   0      success: all input read, all output written
 *   1      the input had bad records or rejects and --strict was given, or a
 *          check failed (bagel-cat --check)
 *   2      usage: a bad option or value
 *   3      fatal: I/O error, out of memory, unusable input or output
 *   128+N  stopped by signal N after flushing what it had accepted */
#ifndef BAGEL_STAGE_H
#define BAGEL_STAGE_H

#include "../../ipc/stream.h"
#include "progress.h"

#include <getopt.h>
#include <stdbool.h>

#define EXIT_OK    0
#define EXIT_CHECK 1
#define EXIT_USAGE 2
#define EXIT_FATAL 3

#define STAGE_MAX_INPUTS 256

typedef struct {
    const char *name;
    const char *inputs[STAGE_MAX_INPUTS];
    int ninputs;
    const char *output;
    stream_opts_t so;
    bool strict;
    progress_mode_t progress;
} stage_t;

/* Option codes of the common options; a stage's own use codes below 256. */
enum {
    OPT_IN = 'i',
    OPT_OUT = 'o',
    OPT_QUIET = 'q',
    OPT_HELP = 'h',
    OPT_VERSION = 256,
    OPT_HWM,
    OPT_MAX_RECORD,
    OPT_EXPECT_ENDS,
    OPT_STRICT,
    OPT_PROGRESS,
    OPT_CURVE_SERVER,
    OPT_CURVE_CLIENTS,
    OPT_ACKS_IN,
    OPT_ACKS_OUT,
    OPT_ACK_WINDOW,
    OPT_INSECURE,
};

#define STAGE_LONGOPTS                                                                                                 \
    {"in", required_argument, 0, OPT_IN}, {"out", required_argument, 0, OPT_OUT},                                      \
        {"quiet", no_argument, 0, OPT_QUIET}, {"help", no_argument, 0, OPT_HELP},                                      \
        {"version", no_argument, 0, OPT_VERSION}, {"hwm", required_argument, 0, OPT_HWM},                              \
        {"max-record-size", required_argument, 0, OPT_MAX_RECORD},                                                     \
        {"expect-ends", required_argument, 0, OPT_EXPECT_ENDS}, {"strict", no_argument, 0, OPT_STRICT},                \
        {"progress", required_argument, 0, OPT_PROGRESS},                                                              \
        {"curve-server-key", required_argument, 0, OPT_CURVE_SERVER},                                                  \
        {"curve-client-keys", required_argument, 0, OPT_CURVE_CLIENTS},                                                \
        {"acks-in", required_argument, 0, OPT_ACKS_IN}, {"acks-out", required_argument, 0, OPT_ACKS_OUT},              \
        {"ack-window", required_argument, 0, OPT_ACK_WINDOW},                                                          \
    {                                                                                                                  \
        "insecure", no_argument, 0, OPT_INSECURE                                                                       \
    }

#define STAGE_SHORTOPTS "i:o:qh"

/* The help lines of the common options, for a stage's --help. */
extern const char stage_common_help[];

/* Name the stage, set defaults, install SIGINT/SIGTERM/SIGPIPE handling. */
void stage_init(stage_t *s, const char *name);
/* Handle a common option. 1: handled; 0: not a common option; exits with
 * EXIT_USAGE on a bad value, EXIT_OK after --help / --version (help_text is
 * the stage's own part of --help). */
int stage_option(stage_t *s, int c, const char *arg, const char *help_text);
/* The exit code for a stage that ended normally with status `code`: 128+N
 * when it was stopped by signal N. */
int stage_exit(int code);
/* Parse a non-negative integer option value with an optional K/M/G suffix. */
int stage_parse_size(const char *opt, const char *arg, unsigned long long *out);
/* The same, bounded: lo <= value <= hi. Either failure logs one line. */
int stage_parse_range(const char *opt, const char *arg, unsigned long long lo, unsigned long long hi,
                      unsigned long long *out);

#endif
