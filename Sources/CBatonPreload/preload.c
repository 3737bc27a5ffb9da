#include "CBatonPreload.h"
#include "inherited_sockets.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define BATON_PRELOAD_MAX_SOCKETS 256

static baton_preload_socket baton_preload_sockets[BATON_PRELOAD_MAX_SOCKETS];
static int baton_preload_socket_count;

typedef int (*baton_setsockopt_function)(int, int, int, const void *, socklen_t);
typedef int (*baton_shutdown_function)(int, int);

void *baton_preload_next(const char *name) {
    return dlsym(RTLD_NEXT, name);
}

baton_bind_function baton_next_bind;
baton_listen_function baton_next_listen;
static baton_setsockopt_function baton_next_setsockopt;
static baton_shutdown_function baton_next_shutdown;

__attribute__((constructor)) static void baton_preload_start(void) {
    // Resolved here, before the server runs threads, so that the wrappers only read them.
    baton_next_bind = (baton_bind_function)baton_preload_next("bind");
    baton_next_listen = (baton_listen_function)baton_preload_next("listen");
    baton_next_setsockopt = (baton_setsockopt_function)baton_preload_next("setsockopt");
    baton_next_shutdown = (baton_shutdown_function)baton_preload_next("shutdown");
    const char *text = getenv(BATON_PRELOAD_COUNT_VARIABLE);
    if (text == NULL) {
        return;
    }
    const char *pid_text = getenv(BATON_PRELOAD_PID_VARIABLE);
    if (pid_text == NULL || strtol(pid_text, NULL, 10) != (long)getpid()) {
        // Not the process Baton started (a child of it that inherited the environment,
        // or an older Baton that did not say): its descriptors and signals are its own.
        unsetenv(BATON_PRELOAD_COUNT_VARIABLE);
        unsetenv(BATON_PRELOAD_DRAIN_SIGNAL_VARIABLE);
        unsetenv(BATON_PRELOAD_DRAIN_GRACE_VARIABLE);
        unsetenv(BATON_PRELOAD_PID_VARIABLE);
        return;
    }
    long count = strtol(text, NULL, 10);
    if (count < 0 || count > BATON_PRELOAD_MAX_SOCKETS) {
        return;
    }
    for (int index = 0; index < count; index++) {
        baton_preload_socket *entry = &baton_preload_sockets[baton_preload_socket_count];
        int fd = BATON_PRELOAD_FIRST_DESCRIPTOR + index;
        struct stat status;
        socklen_t size = sizeof(int);
        entry->length = sizeof(entry->address);
        if (fstat(fd, &status) != 0 || !S_ISSOCK(status.st_mode)
            || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &entry->family, &size) != 0
            || getsockopt(fd, SOL_SOCKET, SO_TYPE, &entry->type, &size) != 0
            || getsockname(fd, (struct sockaddr *)&entry->address, &entry->length) != 0) {
            continue;
        }
        entry->fd = fd;
        entry->device = status.st_dev;
        entry->inode = status.st_ino;
        baton_preload_socket_count++;
    }
    baton_drain_start();
}

int baton_preload_inherited_count(void) {
    return baton_preload_socket_count;
}

baton_preload_socket *baton_preload_inherited(int fd) {
    if (baton_preload_socket_count == 0) {
        return NULL;
    }
    struct stat status;
    if (fstat(fd, &status) != 0 || !S_ISSOCK(status.st_mode)) {
        return NULL;
    }
    for (int index = 0; index < baton_preload_socket_count; index++) {
        baton_preload_socket *entry = &baton_preload_sockets[index];
        if (entry->device == status.st_dev && entry->inode == status.st_ino) {
            return entry;
        }
    }
    return NULL;
}

// Whether the recorded descriptor still holds the socket it held at load time: a
// server may have closed it and the number been reused.
static int baton_preload_still_open(const baton_preload_socket *entry) {
    struct stat status;
    return fstat(entry->fd, &status) == 0 && status.st_dev == entry->device && status.st_ino == entry->inode;
}

int bind(int fd, const struct sockaddr *address, socklen_t length) {
    baton_bind_function next = baton_next_bind;
    if (next == NULL) {
        // Called by another library's constructor before ours ran.
        next = (baton_bind_function)baton_preload_next("bind");
    }
    if (baton_preload_socket_count == 0 || address == NULL || baton_preload_inherited(fd) != NULL) {
        return next(fd, address, length);
    }
    int type = 0;
    socklen_t size = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) != 0) {
        return next(fd, address, length);
    }
    baton_preload_socket *chosen = NULL;
    for (int index = 0; index < baton_preload_socket_count; index++) {
        baton_preload_socket *entry = &baton_preload_sockets[index];
        if (entry->type != type || !baton_preload_still_open(entry)) {
            continue;
        }
        int match = baton_preload_match(entry, address, length);
        if (match == 1) {
            chosen = entry;
            break;
        }
        if (match == 2 && chosen == NULL) {
            chosen = entry;
        }
    }
    if (chosen == NULL) {
        return next(fd, address, length);
    }
    int descriptor_flags = fcntl(fd, F_GETFD);
    int status_flags = fcntl(fd, F_GETFL);
    if (descriptor_flags < 0 || status_flags < 0) {
        return -1;
    }
    // Replaces the server's fresh socket with the inherited one, on the same number.
    if (dup3(chosen->fd, fd, (descriptor_flags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
        return -1;
    }
    // A server that made its socket non-blocking expects it so. The flag belongs to
    // the socket, which other generations share, so it is only ever set, never cleared.
    if (status_flags & O_NONBLOCK) {
        int current = fcntl(fd, F_GETFL);
        if (current >= 0 && !(current & O_NONBLOCK)) {
            fcntl(fd, F_SETFL, current | O_NONBLOCK);
        }
    }
    // The server holds the socket now; the original is Baton's hand-over and should not
    // reach programs the server executes.
    int original_flags = fcntl(chosen->fd, F_GETFD);
    if (original_flags >= 0) {
        fcntl(chosen->fd, F_SETFD, original_flags | FD_CLOEXEC);
    }
    return 0;
}

int listen(int fd, int backlog) {
    baton_listen_function next = baton_next_listen;
    if (next == NULL) {
        // Called by another library's constructor before ours ran.
        next = (baton_listen_function)baton_preload_next("listen");
    }
    // Already listening, with the backlog of Baton's configuration, which a server's
    // own smaller one (Python's is 5) must not replace.
    if (baton_preload_inherited(fd) != NULL) {
        return 0;
    }
    return next(fd, backlog);
}

int setsockopt(int fd, int level, int name, const void *value, socklen_t length) {
    baton_setsockopt_function next = baton_next_setsockopt;
    if (next == NULL) {
        // Called by another library's constructor before ours ran.
        next = (baton_setsockopt_function)baton_preload_next("setsockopt");
    }
    if (level == SOL_SOCKET && (name == SO_REUSEADDR || name == SO_REUSEPORT) && baton_preload_inherited(fd) != NULL) {
        return 0;
    }
    return next(fd, level, name, value, length);
}

int shutdown(int fd, int how) {
    baton_shutdown_function next = baton_next_shutdown;
    if (next == NULL) {
        // Called by another library's constructor before ours ran.
        next = (baton_shutdown_function)baton_preload_next("shutdown");
    }
    if (baton_preload_inherited(fd) != NULL) {
        return 0;
    }
    return next(fd, how);
}
