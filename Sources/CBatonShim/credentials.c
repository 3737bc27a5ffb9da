// Who is talking to Baton: the sender of a notify datagram, the peer of a control
// connection; and who may (the control socket's ACL).
#include "CBatonShim.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/xattr.h>
#include <unistd.h>

int baton_enable_credentials(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == 0 ? 0 : errno;
}

int baton_receive_with_credentials(int fd, char *buffer, size_t capacity, size_t *length, pid_t *pid) {
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 253)];
    } control;
    struct iovec vector = {.iov_base = buffer, .iov_len = capacity};
    struct msghdr message;
    memset(&message, 0, sizeof(message));
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = &control;
    message.msg_controllen = sizeof(control);

    ssize_t received;
    do {
        received = recvmsg(fd, &message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (received < 0 && errno == EINTR);
    if (received < 0) {
        return errno;
    }
    *length = (size_t)received;
    *pid = 0;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL;
         header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET) {
            continue;
        }
        if (header->cmsg_type == SCM_CREDENTIALS) {
            struct ucred credentials;
            memcpy(&credentials, CMSG_DATA(header), sizeof(credentials));
            *pid = credentials.pid;
        } else if (header->cmsg_type == SCM_RIGHTS) {
            // A worker may pass descriptors (FDSTORE=1); Baton keeps none of them.
            size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int passed[count > 0 ? count : 1];
            memcpy(passed, CMSG_DATA(header), count * sizeof(int));
            for (size_t index = 0; index < count; index++) {
                close(passed[index]);
            }
        }
    }
    return 0;
}

int baton_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred credentials;
    socklen_t size = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) {
        return errno;
    }
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}

int baton_set_group_acl(const char *path, const gid_t *groups, int group_count, int owner_group) {
    // The xattr form of an access ACL (linux/posix_acl_xattr.h): a version, then entries
    // sorted by tag and, within a tag, by id.
    enum { tag_user_obj = 0x01, tag_group_obj = 0x04, tag_group = 0x08, tag_mask = 0x10, tag_other = 0x20 };
    struct entry { uint16_t tag; uint16_t permissions; uint32_t id; };
    if (group_count < 0 || group_count > 16) return EINVAL;
    struct { uint32_t version; struct entry entries[20]; } acl;
    memset(&acl, 0, sizeof(acl));
    acl.version = 2;
    const uint32_t none = 0xFFFFFFFFu;
    const uint16_t read_write = 6;
    int count = 0;
    acl.entries[count++] = (struct entry){tag_user_obj, read_write, none};
    acl.entries[count++] = (struct entry){tag_group_obj, owner_group ? read_write : 0, none};
    gid_t sorted[16];
    memcpy(sorted, groups, sizeof(gid_t) * (size_t)group_count);
    for (int i = 1; i < group_count; i++) {
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            gid_t swap = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = swap;
        }
    }
    for (int index = 0; index < group_count; index++) {
        if (index > 0 && sorted[index] == sorted[index - 1]) continue;
        acl.entries[count++] = (struct entry){tag_group, read_write, sorted[index]};
    }
    acl.entries[count++] = (struct entry){tag_mask, read_write, none};
    acl.entries[count++] = (struct entry){tag_other, 0, none};
    size_t size = sizeof(uint32_t) + sizeof(struct entry) * (size_t)count;
    return setxattr(path, "system.posix_acl_access", &acl, size, 0) == 0 ? 0 : errno;
}
