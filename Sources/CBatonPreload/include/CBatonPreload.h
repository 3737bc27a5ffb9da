// libbaton-preload.so: loaded with LD_PRELOAD into a server that binds its own port
// and knows no socket protocol (`protocol = "preload"`).
//
// Baton places the slot's sockets at fd 3, 4, ... and sets BATON_PRELOAD_FD_COUNT to
// their number. At load time the library records each one's family, type, address
// (getsockname) and identity (device and inode). Then:
//
// - bind(fd, address) to the address of one of them (or to the wildcard address of
//   the same family and port) places that socket on the server's fd with dup3, keeping
//   the fd's close-on-exec flag, and succeeds without binding anything;
// - listen() on such a socket succeeds without touching it (Baton chose the backlog);
// - setsockopt(SO_REUSEADDR or SO_REUSEPORT) and shutdown() on it succeed without
//   touching it: shutting down a listening socket would reset its queue for every
//   holder;
// - everything else goes to the C library untouched. close() needs no help: the
//   server closes its own descriptor, never Baton's socket.
//
// - with BATON_PRELOAD_DRAIN_SIGNAL set (Baton sets it to the drain signal), that
//   signal first stops the server accepting (its descriptors of the inherited
//   sockets get a listening socket nobody connects to), and reaches the server's own
//   handler only BATON_PRELOAD_DRAIN_GRACE_MS later (default 500): what it accepted
//   is answered meanwhile, and new connections go to the next generation.
//
// Only dynamically linked programs load it; a static binary (most Go programs) does not.
#pragma once

#define BATON_PRELOAD_COUNT_VARIABLE "BATON_PRELOAD_FD_COUNT"
#define BATON_PRELOAD_FIRST_DESCRIPTOR 3
#define BATON_PRELOAD_DRAIN_SIGNAL_VARIABLE "BATON_PRELOAD_DRAIN_SIGNAL"
#define BATON_PRELOAD_DRAIN_GRACE_VARIABLE "BATON_PRELOAD_DRAIN_GRACE_MS"
