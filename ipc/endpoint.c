/* endpoint.c — parse endpoint strings; see endpoint.h for the grammar. */
#include "endpoint.h"

#include "rec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static bool has_scheme(const char *s)
{
    return strncmp(s, "tcp://", 6) == 0 || strncmp(s, "ipc://", 6) == 0 || strncmp(s, "inproc://", 9) == 0;
}

bool ep_is_zmq(const char *spec) { return spec[0] == '@' || spec[0] == '>' || has_scheme(spec); }

/* tcp://HOST:PORT — HOST may be *, a name, an IPv4 address, [IPv6] or
 * iface;host for a source interface; PORT 1-65535, or * (bind only: the
 * system picks one). */
static int check_tcp(const char *a, bool bind, char *err)
{
    const char *hp = a + 6;
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp) {
        snprintf(err, REC_ERR_LEN, "endpoint \"%s\": expected tcp://HOST:PORT", a);
        return -1;
    }
    if (hp[0] == '[' && colon[-1] != ']') {
        snprintf(err, REC_ERR_LEN, "endpoint \"%s\": IPv6 host must be written [addr]:PORT", a);
        return -1;
    }
    for (const char *c = hp; c < colon; c++)
        if (*c <= ' ' || *c == '/' || *c == '@' || *c == ',' || (unsigned char)*c >= 0x7f) {
            snprintf(err, REC_ERR_LEN, "endpoint \"%s\": bad character in host", a);
            return -1;
        }
    const char *port = colon + 1;
    if (strcmp(port, "*") == 0) {
        if (!bind) {
            snprintf(err, REC_ERR_LEN, "endpoint \"%s\": a connecting endpoint needs a port number", a);
            return -1;
        }
        return 0;
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 1 || p > 65535 || port[0] == '+' || port[0] == '-' || port[0] == ' ') {
        snprintf(err, REC_ERR_LEN, "endpoint \"%s\": port must be 1-65535%s", a, bind ? " or *" : "");
        return -1;
    }
    if (!bind && strncmp(hp, "*:", 2) == 0) {
        snprintf(err, REC_ERR_LEN, "endpoint \"%s\": cannot connect to host *", a);
        return -1;
    }
    return 0;
}

static int parse_one(const char *s, size_t n, ep_zmq_t *z, char *err)
{
    if (n && (s[0] == '@' || s[0] == '>')) {
        z->bind = s[0] == '@';
        s++, n--;
    } else {
        z->bind = false;
    }
    if (n >= EP_ADDR_MAX) {
        snprintf(err, REC_ERR_LEN, "endpoint: address of %zu bytes is too long", n);
        return -1;
    }
    memcpy(z->addr, s, n);
    z->addr[n] = 0;
    if (memchr(s, 0, n)) {
        snprintf(err, REC_ERR_LEN, "endpoint: NUL byte in address");
        return -1;
    }
    const char *a = z->addr;
    if (strncmp(a, "tcp://", 6) == 0)
        return check_tcp(a, z->bind, err);
    if (strncmp(a, "ipc://", 6) == 0) {
        size_t plen = strlen(a + 6);
        if (plen == 0 || plen >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            snprintf(err, REC_ERR_LEN, "endpoint \"%s\": ipc path must be 1-%zu bytes", a,
                     sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            return -1;
        }
        return 0;
    }
    if (strncmp(a, "inproc://", 9) == 0) {
        if (!a[9]) {
            snprintf(err, REC_ERR_LEN, "endpoint \"%s\": inproc needs a name", a);
            return -1;
        }
        return 0;
    }
    snprintf(err, REC_ERR_LEN, "endpoint \"%.64s\": expected tcp://, ipc:// or inproc:// after %s", a,
             z->bind ? "@" : ">");
    return -1;
}

int ep_parse(const char *spec, ep_t *ep, char *err)
{
    memset(ep, 0, sizeof *ep);
    if (!spec || !*spec) {
        snprintf(err, REC_ERR_LEN, "endpoint: empty");
        return -1;
    }
    for (const char *c = spec; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            snprintf(err, REC_ERR_LEN, "endpoint: control character 0x%02x at offset %zu", (unsigned char)*c,
                     (size_t)(c - spec));
            return -1;
        }
    if (strcmp(spec, "-") == 0) {
        ep->kind = EP_STDIO;
        return 0;
    }
    if (!ep_is_zmq(spec)) {
        size_t n = strlen(spec);
        if (n >= sizeof ep->path) {
            snprintf(err, REC_ERR_LEN, "endpoint: path of %zu bytes is too long", n);
            return -1;
        }
        ep->kind = EP_FILE;
        memcpy(ep->path, spec, n + 1);
        ep->glob = strpbrk(spec, "*?[") != NULL;
        return 0;
    }
    ep->kind = EP_ZMQ;
    const char *s = spec;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        if (ep->nzmq == EP_MAX_ZMQ) {
            snprintf(err, REC_ERR_LEN, "endpoint: more than %d addresses on one socket", EP_MAX_ZMQ);
            return -1;
        }
        if (n == 0) {
            snprintf(err, REC_ERR_LEN, "endpoint \"%.64s\": empty address in list", spec);
            return -1;
        }
        if (parse_one(s, n, &ep->zmq[ep->nzmq], err))
            return -1;
        ep->nzmq++;
        if (!comma)
            return 0;
        s = comma + 1;
    }
}
