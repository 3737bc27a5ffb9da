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

// One dump request for `family`'s connections on any of `ports` (at least one) that are
// open on the server's side. The kernel walks its whole table of connections for every
// dump (about a millisecond on a machine with a large table), whatever the filter, so a
// caller asks once per family, never once per socket or port.
static int baton_diag_request(int netlink, int family, const uint16_t *ports, size_t port_count) {
    // The ports as inet_diag bytecode when there are several: for each port, "local port
    // equal" jumps to an unconditional jump to the end (accept), else on to the next
    // port; past the last, beyond the end (reject). One port is the request's own filter.
    size_t bytecode_length = port_count > 1 ? port_count * 12 : 0;
    size_t attribute_length = bytecode_length > 0 ? RTA_LENGTH(bytecode_length) : 0;
    if (attribute_length > UINT16_MAX) {
        return E2BIG;
    }
    size_t length = NLMSG_LENGTH(sizeof(struct inet_diag_req_v2)) + RTA_ALIGN(attribute_length);
    char message[length] __attribute__((aligned(NLMSG_ALIGNTO)));
    memset(message, 0, length);
    struct nlmsghdr *header = (struct nlmsghdr *)message;
    header->nlmsg_len = (uint32_t)length;
    header->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    header->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    struct inet_diag_req_v2 *request = NLMSG_DATA(header);
    request->sdiag_family = (uint8_t)family;
    request->sdiag_protocol = IPPROTO_TCP;
    // Accepted connections still open on the worker's side, whether or not the client
    // has closed its own.
    request->idiag_states = (1u << BATON_TCP_ESTABLISHED) | (1u << BATON_TCP_CLOSE_WAIT);
    request->idiag_ext = 1u << (INET_DIAG_INFO - 1);
    if (port_count == 1) {
        request->id.idiag_sport = htons(ports[0]);
    } else {
        struct rtattr *attribute = (struct rtattr *)(message + NLMSG_LENGTH(sizeof(*request)));
        attribute->rta_type = INET_DIAG_REQ_BYTECODE;
        attribute->rta_len = (unsigned short)attribute_length;
        struct inet_diag_bc_op *op = RTA_DATA(attribute);
        for (size_t index = 0; index < port_count; index++) {
            size_t remaining = bytecode_length - index * 12;
            // The comparison, with its port in the second op's `no`.
            op[0] = (struct inet_diag_bc_op){.code = INET_DIAG_BC_S_EQ, .yes = 8, .no = 12};
            op[1] = (struct inet_diag_bc_op){.no = ports[index]};
            if (index == port_count - 1) {
                op[0].no = (unsigned short)(remaining + 4);
            }
            op[2] = (struct inet_diag_bc_op){.code = INET_DIAG_BC_JMP, .yes = 4, .no = (unsigned short)(remaining - 8)};
            op += 3;
        }
    }
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    ssize_t sent = sendto(netlink, message, length, 0, (struct sockaddr *)&kernel, sizeof(kernel));
    return sent == (ssize_t)length ? 0 : errno;
}

// Fills `connection` from one inet_diag answer.
static void baton_diag_connection(struct nlmsghdr *header, baton_connection *connection) {
    struct inet_diag_msg *diag = NLMSG_DATA(header);
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
}

// The answers to one dump, appended to `connections` past `*found`.
static int baton_diag_receive(int netlink, baton_connection *connections, size_t capacity, size_t *found) {
    char buffer[32768] __attribute__((aligned(NLMSG_ALIGNTO)));
    while (true) {
        ssize_t received = recv(netlink, buffer, sizeof(buffer), 0);
        if (received < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        if (received == 0) {
            return 0;
        }
        int remaining = (int)received;
        for (struct nlmsghdr *header = (struct nlmsghdr *)buffer; NLMSG_OK(header, remaining);
             header = NLMSG_NEXT(header, remaining)) {
            if (header->nlmsg_type == NLMSG_DONE) {
                return 0;
            }
            if (header->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *failure = NLMSG_DATA(header);
                return failure->error < 0 ? -failure->error : EPROTO;
            }
            if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY) {
                continue;
            }
            // Past the capacity only counted, so that the caller can ask again with room.
            if (*found < capacity) {
                baton_diag_connection(header, &connections[*found]);
            }
            (*found)++;
        }
    }
}

int baton_listener_connections(const int *listeners, size_t listener_count, baton_connection *connections,
                               size_t capacity, size_t *count) {
    *count = 0;
    // The listeners' distinct ports, by family.
    uint16_t ports[2][listener_count > 0 ? listener_count : 1];
    size_t port_counts[2] = {0, 0};
    static const int families[2] = {AF_INET, AF_INET6};
    for (size_t index = 0; index < listener_count; index++) {
        struct sockaddr_storage address;
        socklen_t length = sizeof(address);
        if (getsockname(listeners[index], (struct sockaddr *)&address, &length) != 0) {
            return errno;
        }
        int family = address.ss_family == AF_INET ? 0 : address.ss_family == AF_INET6 ? 1 : -1;
        if (family < 0) {
            return EAFNOSUPPORT;
        }
        uint16_t port = ntohs(family == 0 ? ((struct sockaddr_in *)&address)->sin_port
                                          : ((struct sockaddr_in6 *)&address)->sin6_port);
        bool seen = false;
        for (size_t known = 0; known < port_counts[family] && !seen; known++) {
            seen = ports[family][known] == port;
        }
        if (!seen) {
            ports[family][port_counts[family]++] = port;
        }
    }
    size_t found = 0;
    int error = 0;
    for (int family = 0; family < 2 && error == 0; family++) {
        if (port_counts[family] == 0) {
            continue;
        }
        int netlink = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (netlink < 0) {
            return errno;
        }
        error = baton_diag_request(netlink, families[family], ports[family], port_counts[family]);
        if (error == 0) {
            error = baton_diag_receive(netlink, connections, capacity, &found);
        }
        close(netlink);
    }
    *count = found;
    if (error == 0 && found > capacity) {
        return ENOBUFS;
    }
    return error;
}
