/* stage.c — see stage.h. */
#include "stage.h"

#include "../../ipc/deliver.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef BAGEL_VERSION
#define BAGEL_VERSION "dev"
#endif

const char stage_common_help[] =
    "  -i, --in EP             input endpoint: -, FILE, GLOB, @tcp://*:PORT, >tcp://HOST:PORT,\n"
    "                          @ipc:///PATH, >ipc:///PATH; repeat for several (default -)\n"
    "  -o, --out EP            output endpoint (default -)\n"
    "      --hwm N             ZeroMQ send window: messages unacknowledged, at most 64 MiB of them (default 256)\n"
    "      --max-record-size B largest record accepted, K/M/G suffixes (default 256M)\n"
    "      --expect-ends N     end ZeroMQ input once N (source, epoch) streams are complete\n"
    "      --curve-server-key F  CURVE on tcp: bind: server secret key; connect: server public key\n"
    "      --curve-client-keys F bind: allowed client public keys; connect: own secret key\n"
    "      --insecure          allow a tcp bind beyond loopback without CURVE keys\n"
    "      --acks-in EP / --acks-out EP  delivery: origin takes / sink sends acks\n"
    "      --ack-window N      origin: records unacknowledged at most (default 65536; 2 s of\n"
    "                          acknowledgements at the measured rate are used)\n"
    "      --strict            treat the first bad record or reject as fatal\n"
    "      --progress on|off   progress line on stderr (default on)\n"
    "  -q, --quiet             errors only on stderr\n"
    "  -h, --help              this help;  --version  the version\n"
    "Exit: 0 ok, 1 bad input with --strict or failed check, 2 usage, 3 fatal, 128+N signal N.\n";

static volatile sig_atomic_t last_signal;

static void on_signal(int sig)
{
    last_signal = sig;
    ipc_stop_request();
    if (ipc_stop_level() >= 3)
        _exit(128 + sig);
}

void stage_init(stage_t *s, const char *name)
{
    memset(s, 0, sizeof *s);
    s->name = name;
    stream_opts_default(&s->so);
    s->so.stage = name;
    s->progress = PROGRESS_ON;
    log_init(name);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; // no SA_RESTART: blocking reads return EINTR
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); // a closed pipe is an EPIPE error, reported
}

int stage_parse_size(const char *opt, const char *arg, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1ull << 30, end++;
    if (errno || end == arg || *end || arg[0] == '-' || v > ~0ull / mul) {
        log_error("--%s: \"%s\" is not a non-negative integer", opt, arg);
        return -1;
    }
    *out = v * mul;
    return 0;
}

int stage_parse_range(const char *opt, const char *arg, unsigned long long lo, unsigned long long hi,
                      unsigned long long *out)
{
    unsigned long long v;
    if (stage_parse_size(opt, arg, &v))
        return -1;
    if (v < lo || v > hi) {
        log_error("--%s: %s: expected %llu to %llu", opt, arg, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static void usage_fail(void) { exit(EXIT_USAGE); }

int stage_option(stage_t *s, int c, const char *arg, const char *help_text)
{
    unsigned long long v;
    switch (c) {
    case OPT_IN:
        if (s->ninputs == STAGE_MAX_INPUTS) {
            log_error("--in: more than %d inputs", STAGE_MAX_INPUTS);
            usage_fail();
        }
        s->inputs[s->ninputs++] = arg;
        return 1;
    case OPT_OUT: s->output = arg; return 1;
    case OPT_QUIET:
        log_set_quiet(true);
        s->progress = PROGRESS_OFF;
        return 1;
    case OPT_HELP:
        fputs(help_text, stdout);
        fputs(stage_common_help, stdout);
        exit(EXIT_OK);
    case OPT_VERSION: printf("%s %s\n", s->name, BAGEL_VERSION); exit(EXIT_OK);
    case OPT_HWM:
        if (stage_parse_range("hwm", arg, 1, 1000000, &v))
            usage_fail();
        s->so.hwm = (int)v;
        return 1;
    case OPT_MAX_RECORD:
        if (stage_parse_range("max-record-size", arg, 16, 4ull << 30, &v))
            usage_fail();
        s->so.limits.max_message = (size_t)v;
        return 1;
    case OPT_EXPECT_ENDS:
        if (stage_parse_range("expect-ends", arg, 0, 1000000, &v))
            usage_fail();
        s->so.expect_ends = (int)v;
        return 1;
    case OPT_STRICT: s->strict = true; return 1;
    case OPT_PROGRESS:
        if (strcmp(arg, "on") == 0)
            s->progress = PROGRESS_ON;
        else if (strcmp(arg, "off") == 0)
            s->progress = PROGRESS_OFF;
        else {
            log_error("--progress: expected on or off, got \"%s\"", arg);
            usage_fail();
        }
        return 1;
    case OPT_CURVE_SERVER: s->so.curve_server_key = arg; return 1;
    case OPT_CURVE_CLIENTS: s->so.curve_client_keys = arg; return 1;
    case OPT_ACKS_IN: s->so.acks_in = arg; return 1;
    case OPT_ACKS_OUT: s->so.acks_out = arg; return 1;
    case OPT_ACK_WINDOW:
        if (stage_parse_range("ack-window", arg, 2, DLV_WINDOW_MAX, &v))
            usage_fail();
        s->so.ack_window = (int)v;
        return 1;
    case OPT_INSECURE: s->so.insecure = true; return 1;
    case '?':
    case ':':
        log_error("see --help");
        usage_fail();
        return 1;
    default: return 0;
    }
}

int stage_exit(int code)
{
    if (last_signal && code == EXIT_OK)
        return 128 + last_signal;
    return code;
}
