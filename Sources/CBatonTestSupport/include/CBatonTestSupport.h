// System calls the integration tests need and Baton does not. Every function returns 0
// on success or a positive errno value.
#pragma once

#include <sys/types.h>

/// Moves the calling thread into the network namespace of process `pid` (setns), so
/// that the sockets it opens are that namespace's. For tests that reach a service
/// running in a namespace of its own.
int baton_enter_network_namespace(pid_t pid);
