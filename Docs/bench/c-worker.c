/*
 * A worker whose start and stop cost almost nothing, for baton-bench: with it in place of
 * baton-demo, what a reload costs clients is Baton's own work (Docs/benchmarks.md,
 * "What the close-mode p99 target asks"). Not a server to use: one connection at a
 * time, one answer per connection (Connection: close), so new-connection load only.
 *
 *   mkdir -p /tmp/c-worker && cc -O2 -o /tmp/c-worker/baton-demo Docs/bench/c-worker.c
 *   ln -sf "$PWD"/.build/release/baton /tmp/c-worker/baton
 *   .build/release/baton-bench --products /tmp/c-worker --clients 32 ...
 *
 * Its listener is fd 3 (Baton's), or with --listen HOST:PORT a SO_REUSEPORT socket of its
 * own (baton-bench's naive scenario; IPv4 only). It says READY=1 on NOTIFY_SOCKET, and
 * exits on SIGTERM once the connection in hand is answered.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t draining = 0;

static void on_sigterm(int signal) {
    (void)signal;
    draining = 1;
}

/* Binds HOST:PORT with SO_REUSEPORT at fd 3; returns 0, or -1. */
static int listen_on(const char *text) {
    char host[64];
    const char *colon = strrchr(text, ':');
    if (colon == NULL || (size_t)(colon - text) >= sizeof host) return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 128) != 0)
        return -1;
    if (fd != 3 && (dup2(fd, 3) != 3 || close(fd) != 0)) return -1;
    return 0;
}

static void notify_ready(void) {
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (path == NULL || strlen(path) >= sizeof address.sun_path) return;
    memcpy(address.sun_path, path, strlen(path));
    if (path[0] == '@') address.sun_path[0] = 0; /* abstract */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    socklen_t length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
    if (sendto(fd, "READY=1", 7, 0, (struct sockaddr *)&address, length) < 0) perror("c-worker: NOTIFY_SOCKET");
    close(fd);
}

/* Reads one request head (until a blank line, EOF or a second of silence), answers it, closes. */
static void answer(int connection, const char *response, size_t length) {
    char buffer[4096];
    size_t have = 0;
    while (have < sizeof buffer - 1) {
        ssize_t count = read(connection, buffer + have, sizeof buffer - 1 - have);
        if (count < 0 && errno == EINTR) continue;
        if (count < 0 && errno == EAGAIN) {
            struct pollfd readable = {.fd = connection, .events = POLLIN};
            if (poll(&readable, 1, 1000) <= 0) break;
            continue;
        }
        if (count <= 0) break;
        have += (size_t)count;
        buffer[have] = 0;
        if (strstr(buffer, "\r\n\r\n") != NULL) {
            (void)!write(connection, response, length);
            break;
        }
    }
    close(connection);
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "--listen") == 0 && listen_on(argv[2]) != 0) {
        fprintf(stderr, "c-worker: cannot listen on %s\n", argv[2]);
        return 1;
    }
    struct sigaction action = {.sa_handler = on_sigterm}; /* no SA_RESTART: poll returns EINTR */
    sigaction(SIGTERM, &action, NULL);
    char response[128];
    int length = snprintf(response, sizeof response,
                          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Pid: %d\r\nConnection: close\r\n\r\nok\n", (int)getpid());
    notify_ready();
    while (!draining) {
        /* The listener may be non-blocking (the flag is shared with every process that holds it). */
        struct pollfd readable = {.fd = 3, .events = POLLIN};
        if (poll(&readable, 1, -1) < 0) continue;
        int connection = accept(3, NULL, NULL);
        if (connection >= 0) {
            answer(connection, response, (size_t)length);
        } else if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
            perror("c-worker: accept");
            return 1;
        }
    }
    return 0;
}
