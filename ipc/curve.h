/* curve.h — CURVE authentication and encryption for ZeroMQ tcp endpoints.
 *
 * Key files are text: a line "public <Z85>" and, in a secret key file, a line
 * "secret <Z85>" (40 Z85 characters each). curve_keygen writes NAME.key
 * (both, mode 0600) and NAME.pub (public only).
 *
 * Bind side: server_key is the server's secret key file; client_keys, when
 * given, is a file of allowed client public keys (lines "public <Z85>", and
 * comment lines starting with #; .pub files may be concatenated): any other
 * client is refused by a ZAP handler.
 * Connect side: server_key is the server's public key file; client_keys is
 * this client's secret key file (a fresh key pair is made when absent). */
#ifndef BAGEL_CURVE_H
#define BAGEL_CURVE_H

#include <stdbool.h>

/* ctx: the socket's context, where the ZAP handler is started. */
int curve_apply(void *ctx, void *sock, bool bind, const char *server_key, const char *client_keys, char *err);
int curve_keygen(const char *name, char *err);

#endif
