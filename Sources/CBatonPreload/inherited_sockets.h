// What the two halves of the library share: the inherited sockets it recorded at load
// time (preload.c) and the C library's own functions, which the drain grace (drain.c)
// calls too. Hidden, so that a server sees no symbol of the library but the ones it
// interposes.
#pragma once

#include "address_match.h"

#include <sys/socket.h>

#define BATON_PRELOAD_HIDDEN __attribute__((visibility("hidden")))

typedef int (*baton_bind_function)(int, const struct sockaddr *, socklen_t);
typedef int (*baton_listen_function)(int, int);

// The C library's bind() and listen(), resolved at load time.
BATON_PRELOAD_HIDDEN extern baton_bind_function baton_next_bind;
BATON_PRELOAD_HIDDEN extern baton_listen_function baton_next_listen;

// The next definition of `name` after this library's: the C library's.
BATON_PRELOAD_HIDDEN void *baton_preload_next(const char *name);

// How many inherited sockets were recorded.
BATON_PRELOAD_HIDDEN int baton_preload_inherited_count(void);

// The inherited socket `fd` refers to (any descriptor of it), or NULL.
BATON_PRELOAD_HIDDEN baton_preload_socket *baton_preload_inherited(int fd);

// Installs the drain grace when Baton asked for it (BATON_PRELOAD_DRAIN_SIGNAL), once the
// sockets are recorded.
BATON_PRELOAD_HIDDEN void baton_drain_start(void);
