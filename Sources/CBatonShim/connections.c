// The connections a listening TCP socket's port holds, read from the kernel with
// sock_diag (inet_diag over netlink): what a leaving worker still owes an answer to.
#include "CBatonShim.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// Kernel TCP states, as inet_diag numbers them in its state mask.
enum { BATON_TCP_ESTABLISHED = 1, BATON_TCP_CLOSE_WAIT = 8 };

static int baton_diag_request(int netlink, int family, uint16_t port) {
    struct {
        struct nlmsghdr header;
        struct inet_diag_req_v2 request;
    } message;
    memset(&message, 0, sizeof(message));
    message.header.nlmsg_len = sizeof(message);
    message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    message.request.sdiag_family = (uint8_t)family;
    message.request.sdiag_protocol = IPPROTO_TCP;
    // Accepted connections still open on the worker's side, whether or not the client
    // has closed its own.
    message.request.idiag_states = (1u << BATON_TCP_ESTABLISHED) | (1u << BATON_TCP_CLOSE_WAIT);
    message.request.idiag_ext = 1u << (INET_DIAG_INFO - 1);
    message.request.id.idiag_sport = htons(port);
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    ssize_t sent = sendto(netlink, &message, sizeof(message), 0, (struct sockaddr *)&kernel, sizeof(kernel));
    return sent == (ssize_t)sizeof(message) ? 0 : errno;
}

// Fills `connection` from one inet_diag answer; false when it is not on `port`.
static bool baton_diag_connection(struct nlmsghdr *header, uint16_t port, baton_connection *connection) {
    struct inet_diag_msg *diag = NLMSG_DATA(header);
    if (ntohs(diag->id.idiag_sport) != port) {
        return false;
    }
    memset(connection, 0, sizeof(*connection));
    connection->inode = diag->idiag_inode;
    connection->unread = diag->idiag_rqueue;
    int length = (int)(header->nlmsg_len - NLMSG_LENGTH(sizeof(*diag)));
    for (struct rtattr *attribute = (struct rtattr *)(diag + 1); RTA_OK(attribute, length);
         attribute = RTA_NEXT(attribute, length)) {
        if (attribute->rta_type != INET_DIAG_INFO) {
            continue;
        }
        struct tcp_info info;
        memset(&info, 0, sizeof(info));
        size_t size = RTA_PAYLOAD(attribute) < sizeof(info) ? RTA_PAYLOAD(attribute) : sizeof(info);
        memcpy(&info, RTA_DATA(attribute), size);
        connection->bytes_received = info.tcpi_bytes_received;
        connection->bytes_sent = info.tcpi_bytes_sent;
        connection->milliseconds_since_received = info.tcpi_last_data_recv;
        // tcpi_bytes_sent is Linux >= 4.19; older kernels end the structure before it.
        connection->has_bytes_sent = size >= offsetof(struct tcp_info, tcpi_bytes_sent) + sizeof(info.tcpi_bytes_sent);
    }
    return true;
}

int baton_port_connections(int listener, baton_connection *connections, size_t capacity, size_t *count) {
    struct sockaddr_storage address;
    socklen_t length = sizeof(address);
    if (getsockname(listener, (struct sockaddr *)&address, &length) != 0) {
        return errno;
    }
    uint16_t port;
    if (address.ss_family == AF_INET) {
        port = ntohs(((struct sockaddr_in *)&address)->sin_port);
    } else if (address.ss_family == AF_INET6) {
        port = ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
    } else {
        return EAFNOSUPPORT;
    }
    int netlink = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (netlink < 0) {
        return errno;
    }
    int error = baton_diag_request(netlink, address.ss_family, port);
    size_t found = 0;
    char buffer[32768] __attribute__((aligned(NLMSG_ALIGNTO)));
    bool done = false;
    while (error == 0 && !done) {
        ssize_t received = recv(netlink, buffer, sizeof(buffer), 0);
        if (received < 0) {
            if (errno == EINTR) {
                continue;
            }
            error = errno;
            break;
        }
        if (received == 0) {
            break;
        }
        int remaining = (int)received;
        for (struct nlmsghdr *header = (struct nlmsghdr *)buffer; NLMSG_OK(header, remaining);
             header = NLMSG_NEXT(header, remaining)) {
            if (header->nlmsg_type == NLMSG_DONE) {
                done = true;
                break;
            }
            if (header->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *failure = NLMSG_DATA(header);
                error = failure->error < 0 ? -failure->error : EPROTO;
                break;
            }
            baton_connection connection;
            if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY || !baton_diag_connection(header, port, &connection)) {
                continue;
            }
            // Past the capacity only counted, so that the caller can ask again with room.
            if (found < capacity) {
                connections[found] = connection;
            }
            found++;
        }
    }
    close(netlink);
    *count = found;
    if (error == 0 && found > capacity) {
        return ENOBUFS;
    }
    return error;
}
