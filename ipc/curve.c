/* curve.c — CURVE key files and the ZAP handler that admits listed clients. */
#include "curve.h"

#include "rec.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define Z85_KEY 40

/* The key of a line "public <Z85>" or "secret <Z85>" (which = "public" or
 * "secret"), or NULL. Lines starting with # are comments; Z85 itself uses #,
 * so a # elsewhere is part of a key. */
static const char *key_of(char *line, const char *which)
{
    char *s = line + strspn(line, " \t");
    s[strcspn(s, "\r\n")] = 0;
    size_t wl = strlen(which);
    if (s[0] == '#' || strncmp(s, which, wl) != 0 || (s[wl] != ' ' && s[wl] != '\t'))
        return NULL;
    s += wl + strspn(s + wl, " \t");
    s[strcspn(s, " \t")] = 0;
    return s;
}

static int key_read(const char *path, const char *which, char out[Z85_KEY + 1], char *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, REC_ERR_LEN, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[256];
    int found = -1;
    while (found && fgets(line, sizeof line, f)) {
        const char *k = key_of(line, which);
        uint8_t bin[32];
        if (k && strlen(k) == Z85_KEY && zmq_z85_decode(bin, k)) {
            memcpy(out, k, Z85_KEY + 1);
            found = 0;
        }
    }
    fclose(f);
    if (found)
        snprintf(err, REC_ERR_LEN, "%s: no %s key (a line \"%s <40 Z85 characters>\")", path, which, which);
    return found;
}

/* ---- ZAP handler: one per process, admitting the union of listed keys ---- */

static struct {
    uint8_t (*keys)[32];
    int n;
    bool running;
    pthread_mutex_t mu;
} allow = {.mu = PTHREAD_MUTEX_INITIALIZER};

static bool allowed(const uint8_t *key)
{
    pthread_mutex_lock(&allow.mu);
    bool ok = false;
    for (int i = 0; i < allow.n && !ok; i++)
        ok = memcmp(allow.keys[i], key, 32) == 0;
    pthread_mutex_unlock(&allow.mu);
    return ok;
}

static void *zap_main(void *sock)
{
    for (;;) {
        zmq_msg_t part[7];
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sock, 0) < 0) {
                zmq_msg_close(&m);
                if (errno == EINTR)
                    continue;
                for (int i = 0; i < n; i++)
                    zmq_msg_close(&part[i]);
                zmq_close(sock); // the context is ending
                return NULL;
            }
            more = zmq_msg_more(&m);
            if (n < 7)
                part[n++] = m;
            else
                zmq_msg_close(&m);
        }
        // version, request id, domain, address, identity, mechanism, key
        bool ok = n == 7 && zmq_msg_size(&part[5]) == 5 && memcmp(zmq_msg_data(&part[5]), "CURVE", 5) == 0 &&
                  zmq_msg_size(&part[6]) == 32 && allowed(zmq_msg_data(&part[6]));
        zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
        if (n >= 2)
            zmq_send(sock, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
        else
            zmq_send(sock, "", 0, ZMQ_SNDMORE);
        zmq_send(sock, ok ? "200" : "400", 3, ZMQ_SNDMORE);
        const char *text = ok ? "OK" : "client key not allowed";
        zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
        zmq_send(sock, "", 0, ZMQ_SNDMORE);
        zmq_send(sock, "", 0, 0);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&part[i]);
    }
}

static int allow_load(void *ctx, const char *path, char *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, REC_ERR_LEN, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[256];
    int lineno = 0, rc = 0;
    pthread_mutex_lock(&allow.mu);
    while (fgets(line, sizeof line, f)) {
        lineno++;
        const char *s = key_of(line, "public");
        if (!s) {
            // only comments, blank lines and secret lines may stand beside keys
            char *t = line + strspn(line, " \t\r\n");
            if (*t && *t != '#' && strncmp(t, "secret", 6) != 0) {
                snprintf(err, REC_ERR_LEN, "%s:%d: expected \"public <40 Z85 characters>\"", path, lineno);
                rc = -1;
                break;
            }
            continue;
        }
        uint8_t key[32];
        if (strlen(s) != Z85_KEY || !zmq_z85_decode(key, s)) {
            snprintf(err, REC_ERR_LEN, "%s:%d: expected a 40-character Z85 public key", path, lineno);
            rc = -1;
            break;
        }
        uint8_t(*k)[32] = realloc(allow.keys, (size_t)(allow.n + 1) * sizeof *k);
        if (!k) {
            snprintf(err, REC_ERR_LEN, "out of memory");
            rc = -1;
            break;
        }
        allow.keys = k;
        memcpy(allow.keys[allow.n++], key, 32);
    }
    bool start = rc == 0 && !allow.running;
    if (start)
        allow.running = true;
    pthread_mutex_unlock(&allow.mu);
    fclose(f);
    if (!start)
        return rc;
    void *zap = zmq_socket(ctx, ZMQ_REP);
    if (!zap || zmq_bind(zap, "inproc://zeromq.zap.01") != 0) {
        snprintf(err, REC_ERR_LEN, "ZAP handler: %s", zmq_strerror(errno));
        if (zap)
            zmq_close(zap);
        return -1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, zap_main, zap) != 0) {
        snprintf(err, REC_ERR_LEN, "ZAP handler: cannot start a thread");
        zmq_close(zap);
        return -1;
    }
    pthread_detach(t);
    return 0;
}

int curve_apply(void *ctx, void *sock, bool bind, const char *server_key, const char *client_keys, char *err)
{
    if (!zmq_has("curve")) {
        snprintf(err, REC_ERR_LEN, "this libzmq was built without CURVE support");
        return -1;
    }
    char pub[Z85_KEY + 1], sec[Z85_KEY + 1];
    int one = 1;
    if (bind) {
        if (key_read(server_key, "secret", sec, err))
            return -1;
        if (client_keys) {
            if (allow_load(ctx, client_keys, err))
                return -1;
            zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "bagelpipe", 9);
        }
        if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, Z85_KEY)) {
            snprintf(err, REC_ERR_LEN, "CURVE server: %s", zmq_strerror(errno));
            return -1;
        }
        return 0;
    }
    char srv[Z85_KEY + 1];
    if (key_read(server_key, "public", srv, err))
        return -1;
    if (client_keys) {
        if (key_read(client_keys, "public", pub, err) || key_read(client_keys, "secret", sec, err))
            return -1;
    } else if (zmq_curve_keypair(pub, sec) != 0) {
        snprintf(err, REC_ERR_LEN, "CURVE key pair: %s", zmq_strerror(errno));
        return -1;
    }
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, srv, Z85_KEY) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, Z85_KEY) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, Z85_KEY)) {
        snprintf(err, REC_ERR_LEN, "CURVE client: %s", zmq_strerror(errno));
        return -1;
    }
    return 0;
}

static int write_key(const char *path, const char *text, mode_t mode, char *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) {
        snprintf(err, REC_ERR_LEN, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = strlen(text);
    int rc = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0 ? 0 : -1;
    if (rc)
        snprintf(err, REC_ERR_LEN, "%s: write: %s", path, strerror(errno));
    close(fd);
    return rc;
}

int curve_keygen(const char *name, char *err)
{
    char pub[Z85_KEY + 1], sec[Z85_KEY + 1];
    if (!zmq_has("curve") || zmq_curve_keypair(pub, sec) != 0) {
        snprintf(err, REC_ERR_LEN, "CURVE key pair: %s", zmq_has("curve") ? zmq_strerror(errno) : "not supported");
        return -1;
    }
    char path[4096], text[256];
    snprintf(path, sizeof path, "%s.key", name);
    snprintf(text, sizeof text, "# bagelpipe CURVE secret key: keep it private\npublic %s\nsecret %s\n", pub, sec);
    if (write_key(path, text, 0600, err))
        return -1;
    snprintf(path, sizeof path, "%s.pub", name);
    snprintf(text, sizeof text, "# bagelpipe CURVE public key\npublic %s\n", pub);
    return write_key(path, text, 0644, err);
}
