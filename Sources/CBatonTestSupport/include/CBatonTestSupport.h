// System calls the integration tests need and Baton does not. Every function returns 0
// on success or a positive errno value, unless it says otherwise.
#pragma once

#include <sys/types.h>

/// Moves the calling thread into the network namespace of process `pid` (setns), so
/// that the sockets it opens are that namespace's. For tests that reach a service
/// running in a namespace of its own.
int baton_enter_network_namespace(pid_t pid);

/// Whether the calling process may be dumped and ptraced by its own user
/// (PR_GET_DUMPABLE): 1 normally, 0 once the kernel marked it after a credential change.
int baton_is_dumpable(void);
