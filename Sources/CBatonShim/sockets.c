// What Baton reads of a listening socket: its accept queue and its kernel cookie.
#include "CBatonShim.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

int baton_accept_queue(int fd, uint32_t *depth, uint32_t *capacity) {
    struct tcp_info info;
    socklen_t size = sizeof(info);
    memset(&info, 0, sizeof(info));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) != 0) {
        return errno;
    }
    // On a listening socket these two fields hold the accept queue's length and limit.
    *depth = info.tcpi_unacked;
    *capacity = info.tcpi_sacked;
    return 0;
}

int baton_socket_cookie(int fd, uint64_t *cookie) {
    socklen_t size = sizeof(*cookie);
    return getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &size) == 0 ? 0 : errno;
}
