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
// The library acts only in the process Baton started: Baton sets BATON_PRELOAD_PID to
// that process's pid, as it sets LISTEN_PID for the systemd protocol, and the library
// checks it. An exec in place (`exec server` in a shell wrapper, /usr/bin/env) keeps
// the pid and so the library's help; a child of the server that inherits the
// environment does not match, finds its own fd 3 untouched and its signals delivered
// as it asked, and removes the library's variables from its environment so that they
// go no further.
//
// The grace timer runs on a thread of the C library's (a SIGEV_THREAD timer), so a
// server that blocks signals, real-time ones included, still gets its drain signal
// after the grace: the library hands the signal back to the server's own disposition
// and sends it to the process again.
//
// Only dynamically linked programs load it; a static binary (most Go programs) does not.
#pragma once

#define BATON_PRELOAD_COUNT_VARIABLE "BATON_PRELOAD_FD_COUNT"
#define BATON_PRELOAD_FIRST_DESCRIPTOR 3
#define BATON_PRELOAD_DRAIN_SIGNAL_VARIABLE "BATON_PRELOAD_DRAIN_SIGNAL"
#define BATON_PRELOAD_DRAIN_GRACE_VARIABLE "BATON_PRELOAD_DRAIN_GRACE_MS"
#define BATON_PRELOAD_PID_VARIABLE "BATON_PRELOAD_PID"
