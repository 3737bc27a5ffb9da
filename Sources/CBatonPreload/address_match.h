// An inherited socket as the preload library records it, and whether the address a
// server binds names it. Apart from the interposers so that the fuzz target
// (Tests/Fuzz/preload_match.c) compiles it alone.
#pragma once

#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

typedef struct {
    int fd;
    dev_t device;
    ino_t inode;
    int family;
    int type;
    struct sockaddr_storage address;
    socklen_t length;
} baton_preload_socket;

// 1 when `wanted` names `entry`'s address exactly, 2 when it is the wildcard address
// of the same family and port, 0 otherwise.
static inline int baton_preload_match(const baton_preload_socket *entry, const struct sockaddr *wanted, socklen_t length) {
    // An address too short to hold its family is the C library's to refuse (EINVAL).
    if (length < sizeof(sa_family_t) || entry->family != wanted->sa_family) {
        return 0;
    }
    switch (wanted->sa_family) {
    case AF_INET: {
        if (length < sizeof(struct sockaddr_in)) {
            return 0;
        }
        const struct sockaddr_in *asked = (const struct sockaddr_in *)wanted;
        const struct sockaddr_in *held = (const struct sockaddr_in *)&entry->address;
        if (asked->sin_port == 0 || asked->sin_port != held->sin_port) {
            return 0;
        }
        if (asked->sin_addr.s_addr == held->sin_addr.s_addr) {
            return 1;
        }
        return asked->sin_addr.s_addr == htonl(INADDR_ANY) ? 2 : 0;
    }
    case AF_INET6: {
        if (length < sizeof(struct sockaddr_in6)) {
            return 0;
        }
        const struct sockaddr_in6 *asked = (const struct sockaddr_in6 *)wanted;
        const struct sockaddr_in6 *held = (const struct sockaddr_in6 *)&entry->address;
        if (asked->sin6_port == 0 || asked->sin6_port != held->sin6_port) {
            return 0;
        }
        if (memcmp(&asked->sin6_addr, &held->sin6_addr, sizeof(struct in6_addr)) == 0) {
            return 1;
        }
        return memcmp(&asked->sin6_addr, &in6addr_any, sizeof(struct in6_addr)) == 0 ? 2 : 0;
    }
    case AF_UNIX: {
        size_t offset = offsetof(struct sockaddr_un, sun_path);
        if (length <= offset || entry->length <= offset) {
            return 0;
        }
        const char *asked = ((const struct sockaddr_un *)wanted)->sun_path;
        const char *held = ((const struct sockaddr_un *)&entry->address)->sun_path;
        size_t asked_length = length - offset;
        size_t held_length = entry->length - offset;
        if (asked[0] != '\0') {
            // A path: compare as strings, whatever padding the lengths include.
            asked_length = strnlen(asked, asked_length);
            held_length = strnlen(held, held_length);
        }
        return asked_length == held_length && memcmp(asked, held, asked_length) == 0 ? 1 : 0;
    }
    default:
        return 0;
    }
}
