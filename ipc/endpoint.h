/* endpoint.h — the spellings of --in and --out (architecture.md §4).
 *
 *   -                         stdin / stdout, a msgpack stream
 *   path, or a glob           files of records (input: globs, several allowed)
 *   @tcp://HOST:5555          ZeroMQ, bind (HOST may be a star: all)
 *   >tcp://host:5555          ZeroMQ, connect (">" may be left out for
 *   tcp://host:5555            tcp://, ipc:// and inproc://)
 *   @ipc:///tmp/x, >ipc://x   ZeroMQ over a Unix socket
 *   a,b                       several ZeroMQ endpoints on one socket
 *
 * Parsing only: nothing is opened here. */
#ifndef BAGEL_ENDPOINT_H
#define BAGEL_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>

#define EP_MAX_ZMQ  16
#define EP_ADDR_MAX 256

typedef enum { EP_STDIO, EP_FILE, EP_ZMQ } ep_kind_t;

typedef struct {
    bool bind;
    char addr[EP_ADDR_MAX]; // as zmq_bind/zmq_connect take it, without @ or >
} ep_zmq_t;

typedef struct {
    ep_kind_t kind;
    char path[4096]; // EP_FILE: the path or glob as given
    bool glob;       // EP_FILE: contains glob characters
    int nzmq;        // EP_ZMQ: endpoints on the one socket
    ep_zmq_t zmq[EP_MAX_ZMQ];
} ep_t;

/* 0, or -1 with err (REC_ERR_LEN bytes) saying what is wrong in spec. */
int ep_parse(const char *spec, ep_t *ep, char *err);

/* Is this endpoint spelled as ZeroMQ? (Cheap test used before ep_parse.) */
bool ep_is_zmq(const char *spec);

#endif
