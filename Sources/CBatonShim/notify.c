// The client side of the sd_notify protocol (Baton reporting to systemd).
#include "CBatonShim.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int baton_notify(const char *path, const char *message, int fd) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof(address.sun_path)) return EINVAL;
    memcpy(address.sun_path, path, length);
    socklen_t address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + 1);
    if (path[0] == '@') {
        // An abstract name: a leading NUL, and no terminating one.
        address.sun_path[0] = 0;
        address_length -= 1;
    }
    int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sock < 0) return errno;
    struct iovec iov = { .iov_base = (void *)message, .iov_len = strlen(message) };
    union {
        char buffer[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr header = {
        .msg_name = &address, .msg_namelen = address_length, .msg_iov = &iov, .msg_iovlen = 1,
    };
    if (fd >= 0) {
        header.msg_control = control.buffer;
        header.msg_controllen = sizeof(control.buffer);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&header);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    }
    ssize_t sent = sendmsg(sock, &header, MSG_DONTWAIT | MSG_NOSIGNAL);
    int error = sent < 0 ? errno : 0;
    close(sock);
    return error;
}
